//! Compatibility mode: the Control Plane Interface over HTTP/JSON, one
//! route per WIT operation, so a Mesh VPN in another process or language
//! integrates without embedding wasmtime. Described in
//! `docs/compat-openapi.yaml`.
//!
//! Errors answer with the `ControlError` JSON (`{"error": kind, "detail":
//! ...}`): 409 for `not-joined`/`has-left`, 404 `unknown-peer`, 400
//! `invalid-*`/`bad-message`, 503 `unavailable`, 500 otherwise. Operations
//! that change anything (`join`, `leave`, `heartbeat`, `report`) are
//! guarded like the admin endpoints.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nodeplane_interface::{ControlError, ControlPlane, MembershipView, PeerState};
use serde::Deserialize;
use serde_json::json;

use crate::api::{authorize, blocking, update_stream, AppState};

/// A `ControlError` as an HTTP answer (status from [`status_of`], except
/// refused callers, who get 401/403 with an `unavailable` body).
pub struct CompatError {
    status: StatusCode,
    error: ControlError,
}

/// The HTTP status of a `ControlError`.
pub fn status_of(e: &ControlError) -> StatusCode {
    match e {
        ControlError::NotJoined | ControlError::HasLeft => StatusCode::CONFLICT,
        ControlError::UnknownPeer(_) => StatusCode::NOT_FOUND,
        ControlError::InvalidAddress(_)
        | ControlError::InvalidReport(_)
        | ControlError::InvalidSubscriber(_)
        | ControlError::InvalidConfig(_)
        | ControlError::BadMessage(_) => StatusCode::BAD_REQUEST,
        ControlError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        ControlError::CorruptLedger(_) | ControlError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl IntoResponse for CompatError {
    fn into_response(self) -> Response {
        (self.status, Json(self.error)).into_response()
    }
}

impl From<ControlError> for CompatError {
    fn from(e: ControlError) -> Self {
        CompatError {
            status: status_of(&e),
            error: e,
        }
    }
}

type Answer<T> = Result<Json<T>, CompatError>;

/// The `/v1` routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/join", post(join))
        .route("/leave", post(leave))
        .route("/members", get(members))
        .route("/heartbeat", post(heartbeat))
        .route("/peers/{id}/report", post(report))
        .route("/peers/{id}/metadata", get(metadata))
        .route("/updates", get(updates))
}

fn guard(s: &AppState, headers: &HeaderMap, ext: &Extensions) -> Result<(), CompatError> {
    authorize(s, headers, ext).map_err(|e| CompatError {
        status: e.status,
        error: ControlError::Unavailable(e.message),
    })
}

fn parse_body<T: for<'de> Deserialize<'de>>(
    body: &Bytes,
    expected: &str,
) -> Result<T, CompatError> {
    serde_json::from_slice(body).map_err(|e| {
        CompatError::from(ControlError::BadMessage(format!(
            "request body: {e} (expected {expected})"
        )))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinRequest {
    #[serde(default)]
    seed_peers: Vec<String>,
}

async fn join(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
    body: Bytes,
) -> Answer<MembershipView> {
    guard(&s, &headers, &ext)?;
    let req: JoinRequest = if body.is_empty() {
        JoinRequest {
            seed_peers: Vec::new(),
        }
    } else {
        parse_body(&body, r#"{"seed_peers": ["ip:port", ...]}"#)?
    };
    let node = s.node.clone();
    Ok(Json(blocking(move || node.join(&req.seed_peers)).await?))
}

async fn leave(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
) -> Answer<serde_json::Value> {
    guard(&s, &headers, &ext)?;
    let node = s.node.clone();
    blocking(move || node.leave()).await?;
    Ok(Json(json!({})))
}

async fn members(State(s): State<Arc<AppState>>) -> Answer<MembershipView> {
    let node = s.node.clone();
    Ok(Json(blocking(move || node.get_members()).await?))
}

async fn heartbeat(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
) -> Answer<serde_json::Value> {
    guard(&s, &headers, &ext)?;
    let node = s.node.clone();
    let n = blocking(move || node.publish_heartbeat()).await?;
    Ok(Json(json!({ "heartbeats": n })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportRequest {
    state: String,
}

async fn report(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ext: Extensions,
    body: Bytes,
) -> Answer<serde_json::Value> {
    guard(&s, &headers, &ext)?;
    let req: ReportRequest = parse_body(&body, r#"{"state": "alive|suspect|dead|left"}"#)?;
    let state: PeerState = req
        .state
        .parse()
        .map_err(|e: String| CompatError::from(ControlError::BadMessage(e)))?;
    let node = s.node.clone();
    let after = blocking(move || node.report_peer_state(&id, state)).await?;
    Ok(Json(json!({ "state": after })))
}

async fn metadata(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Answer<serde_json::Value> {
    let node = s.node.clone();
    let metadata = blocking(move || node.get_peer_metadata(&id)).await?;
    Ok(Json(json!({ "metadata": metadata })))
}

async fn updates(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    update_stream(s.updates.subscribe())
}
