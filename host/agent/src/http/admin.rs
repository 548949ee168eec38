//! Admin: fault injection (`/admin/faults`), hot swap
//! (`/admin/component`), the cluster keyring (`/admin/keys`), and
//! [`authorize`], the rule every endpoint that
//! changes anything follows: loopback peers only, or, when `admin_token`
//! is configured, only `Authorization: Bearer <token>`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{blocking, body_or_error, AppState, HttpError};
use crate::events::Source;
use crate::faults::{FaultRequest, FaultState};
use crate::keyring::{KeyList, KeyOpRequest, KeyringError};

/// The admin routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/faults", get(list_faults).post(set_faults))
        .route("/admin/component", post(swap_component))
        .route("/admin/keys", get(list_keys).post(change_keys))
}

/// The status a keyring error answers with: 409 when the agent runs open
/// or the primary would be removed, 400 for a malformed key or operation,
/// 422 for a key that is not installed or a full keyring, 500 when the
/// keyring could not be saved (the agent's own failure; nothing changed).
fn keyring_error(e: KeyringError) -> HttpError {
    let status = match &e {
        KeyringError::Open | KeyringError::RemovePrimary(_) => StatusCode::CONFLICT,
        KeyringError::BadKey(_) => StatusCode::BAD_REQUEST,
        KeyringError::NotInstalled(_) | KeyringError::Full => StatusCode::UNPROCESSABLE_ENTITY,
        KeyringError::File { .. } | KeyringError::Save { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    HttpError::new(status, e.to_string())
}

/// `GET /admin/keys`: the installed keys' fingerprints, the primary first
/// (never key material; like `GET /admin/faults`, it needs no token).
async fn list_keys(State(s): State<Arc<AppState>>) -> Result<Json<KeyList>, HttpError> {
    s.keys.list().map(Json).map_err(keyring_error)
}

/// `POST /admin/keys` `{"op": "install"|"use"|"remove", "key": KEY}`:
/// `KEY` is the base64 key, or for `use` and `remove` its fingerprint.
async fn change_keys(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<KeyList>, HttpError> {
    authorize(&s, &headers, &ext)?;
    let body = body_or_error(body)?;
    let req: KeyOpRequest = serde_json::from_slice(&body).map_err(|e| {
        HttpError::bad_request(format!(
            "key request: {e} (expected {{\"op\": \"install\"|\"use\"|\"remove\", \"key\": \"<base64 key or fingerprint>\"}})"
        ))
    })?;
    if !matches!(req.op.as_str(), "install" | "use" | "remove") {
        return Err(HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("unknown operation {:?}: use install, use or remove", req.op),
        ));
    }
    if !s.keys.is_keyed() {
        return Err(keyring_error(KeyringError::Open));
    }
    let keys = Arc::clone(&s.keys);
    let result = blocking(move || keys.apply(&req.op, &req.key)).await;
    result.map(Json).map_err(|e| {
        tracing::warn!(error = %e, "keyring operation refused");
        keyring_error(e)
    })
}

/// Checks that a request may change something: with a token configured,
/// the bearer token must match (else 401); otherwise the peer must be on
/// loopback (else 403).
pub fn authorize(state: &AppState, headers: &HeaderMap, ext: &Extensions) -> Result<(), HttpError> {
    if let Some(token) = &state.admin_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return Err(HttpError::new(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs Authorization: Bearer <admin_token>",
            ));
        }
        return Ok(());
    }
    let loopback = ext
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback());
    if !loopback {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "this endpoint answers only to loopback peers (configure admin_token to allow others)",
        ));
    }
    Ok(())
}

async fn list_faults(State(s): State<Arc<AppState>>) -> Json<FaultState> {
    Json(s.faults.state())
}

async fn set_faults(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<FaultState>, HttpError> {
    authorize(&s, &headers, &ext)?;
    let body = body_or_error(body)?;
    let req: FaultRequest = serde_json::from_slice(&body)
        .map_err(|e| HttpError::bad_request(format!("fault request: {e}")))?;
    let state = s
        .faults
        .apply(req)
        .map_err(|e| HttpError::bad_request(e.0))?;
    tracing::info!(?state, "fault rules changed");
    s.events.record_value(
        Source::Agent,
        "faults-changed",
        serde_json::to_value(&state).unwrap_or_default(),
    );
    Ok(Json(state))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwapRequest {
    component: String,
}

async fn swap_component(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, HttpError> {
    authorize(&s, &headers, &ext)?;
    let body = body_or_error(body)?;
    let req: SwapRequest = serde_json::from_slice(&body).map_err(|e| {
        HttpError::bad_request(format!(
            "swap request: {e} (expected {{\"component\": \"stub\"|\"nodeplane\"|\"<file>\"}})"
        ))
    })?;
    let spec = req.component;
    // Neither built in nor a file: the request's fault, refused before any
    // swap is attempted.
    nodeplane_artifacts::exists(&spec).map_err(|e| HttpError::bad_request(e.to_string()))?;
    let runtime = s.runtime.clone();
    let node = s.node.clone();
    let wanted = spec.clone();
    let result = blocking(move || {
        let component = nodeplane_artifacts::load(&runtime, &wanted)
            .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
        // Not the compatibility API's mapping: a swap refused because the
        // node has left is a conflict; otherwise the component the request
        // named failed to take over (its init, its state transfer), which
        // is the request's component's fault, not the agent's: 422.
        node.lock().swap(&component).map_err(|e| {
            let status = match e {
                nodeplane_interface::ControlError::HasLeft => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            (status, e.to_string())
        })
    })
    .await;
    match result {
        Ok(report) => {
            let body = json!({
                "from": report.from,
                "to": report.to,
                "to_hash": report.to_hash,
                "pause_ms": report.pause.as_secs_f64() * 1000.0,
                "updates_emitted": report.updates_emitted,
            });
            s.events
                .record_value(Source::Agent, "swap-requested", body.clone());
            Ok(Json(body))
        }
        Err((status, message)) => {
            tracing::warn!(component = %spec, %message, "hot swap refused; the old component keeps serving");
            s.events.record_value(
                Source::Agent,
                "swap-failed",
                json!({ "component": spec, "reason": message }),
            );
            Err(HttpError::new(
                status,
                format!("swap to {spec:?} failed, the old component keeps serving: {message}"),
            ))
        }
    }
}
