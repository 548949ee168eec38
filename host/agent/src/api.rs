//! The HTTP API on the API address: introspection (`/status`, `/members`,
//! `/ledger/head`, `/ledger`, `/events`, `/metrics`, `/healthz`), admin
//! (`/admin/faults`, `/admin/component`) and the compatibility mode under
//! `/v1` (see [`crate::compat`]).
//!
//! Endpoints that change anything answer only to loopback peers, or, when
//! `admin_token` is configured, only to `Authorization: Bearer <token>`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use nodeplane_interface::MembershipUpdate;
use nodeplane_runtime::{ComponentSource, NodeHandle, Runtime};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;

use crate::events::{EventLog, Source};
use crate::faults::{FaultRequest, Faults};
use crate::metrics::{Gauges, Metrics};
use crate::services::AgentServices;
use crate::store::RedbLedger;

/// Largest page of `GET /ledger`.
pub const MAX_LEDGER_PAGE: usize = 1000;
/// Page size of `GET /ledger` when `limit` is absent.
pub const DEFAULT_LEDGER_PAGE: usize = 100;

/// Everything the handlers share.
pub struct AppState {
    /// The node.
    pub node: NodeHandle<AgentServices>,
    /// The runtime (to load components for a swap).
    pub runtime: Runtime,
    /// The ledger store (read without locking the node).
    pub ledger: RedbLedger,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Fault rules.
    pub faults: Arc<Faults>,
    /// The event log (for agent decisions).
    pub events: EventLog,
    /// Membership updates fanned out to SSE clients.
    pub updates: broadcast::Sender<MembershipUpdate>,
    /// Bearer token admin endpoints require, if configured.
    pub admin_token: Option<String>,
    /// This node's id.
    pub node_id: String,
    /// This node's control address.
    pub address: String,
}

/// An error answer: `{"error": message}` with a status.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// Runs `f` on the blocking pool (node calls may take a while and must not
/// stall the async workers).
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Checks that a request may change something: with a token configured,
/// the bearer token must match; otherwise the peer must be on loopback.
pub fn authorize(state: &AppState, headers: &HeaderMap, ext: &Extensions) -> Result<(), ApiError> {
    if let Some(token) = &state.admin_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                message: "this endpoint needs Authorization: Bearer <admin_token>".into(),
            });
        }
        return Ok(());
    }
    let loopback = ext
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback());
    if !loopback {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: "this endpoint answers only to loopback peers (configure admin_token to allow others)".into(),
        });
    }
    Ok(())
}

/// The whole API router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/members", get(members))
        .route("/ledger/head", get(ledger_head))
        .route("/ledger", get(ledger_page))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/admin/faults", get(list_faults).post(set_faults))
        .route("/admin/component", post(swap_component))
        .nest("/v1", crate::compat::routes())
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                message: "no such endpoint".into(),
            }
        })
        .with_state(state)
}

async fn status(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let node = s.node.clone();
    let (view, name, version, hash, source, uptime, crashes, swaps) = blocking(move || {
        let n = node.lock();
        let (name, version) = n.component_info();
        (
            n.mirror_view(),
            name.to_string(),
            version.to_string(),
            n.component().hash_hex(),
            n.component().source.to_string(),
            n.uptime(),
            n.crashes(),
            n.swaps(),
        )
    })
    .await;
    let incarnation = view.member(&s.node_id).map(|m| m.incarnation);
    let state = view.member(&s.node_id).map(|m| m.state);
    Json(json!({
        "node_id": s.node_id,
        "incarnation": incarnation,
        "state": state,
        "address": s.address,
        "component": { "name": name, "version": version, "hash": hash, "source": source },
        "uptime_s": uptime.as_secs_f64(),
        "view_version": view.version,
        "counts": view.counts(),
        "members": view.members.len(),
        "ledger_entries": s.ledger.len_entries(),
        "equivocations": s.ledger.equivocations().len(),
        "crashes": crashes,
        "swaps": swaps,
    }))
}

async fn members(State(s): State<Arc<AppState>>) -> Json<nodeplane_interface::MembershipView> {
    let node = s.node.clone();
    Json(blocking(move || node.lock().mirror_view()).await)
}

async fn ledger_head(State(s): State<Arc<AppState>>) -> Json<crate::store::Frontier> {
    Json(s.ledger.frontier())
}

async fn ledger_page(
    State(s): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut author = None;
    let mut from = None;
    let mut limit = DEFAULT_LEDGER_PAGE;
    for (key, value) in &params {
        match key.as_str() {
            "author" => {
                if value.is_empty() || value.len() > nodeplane_entry::MAX_AUTHOR_LEN {
                    return Err(ApiError::bad_request(format!(
                        "author: {value:?} is not a node id"
                    )));
                }
                author = Some(value.clone());
            }
            "from" => {
                from = Some(value.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("from: {value:?} is not a non-negative integer"))
                })?)
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_LEDGER_PAGE).contains(l))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit: {value:?} must be 1..={MAX_LEDGER_PAGE}"
                        ))
                    })?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?} (expected author, from, limit)"
                )))
            }
        }
    }
    // With an author, `from` is a sequence number (first is 1); without,
    // an append position (first is 0).
    let from = from.unwrap_or(if author.is_some() { 1 } else { 0 });
    let entries = s.ledger.page(author.as_deref(), from, limit);
    let next = match (&author, entries.last()) {
        (_, None) => None,
        (Some(_), Some(last)) if entries.len() == limit => Some(last.seq + 1),
        (None, Some(_)) if entries.len() == limit => Some(from + limit as u64),
        _ => None,
    };
    Ok(Json(
        json!({ "author": author, "from": from, "entries": entries, "next": next }),
    ))
}

/// The SSE stream of membership updates (`event: update`).
pub fn update_stream(
    rx: broadcast::Receiver<MembershipUpdate>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(update) => {
                let event = Event::default()
                    .event("update")
                    .json_data(&update)
                    .unwrap_or_else(|_| Event::default().event("error"));
                Some((Ok(event), rx))
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "an SSE client fell behind; updates skipped");
                Some((
                    Ok(Event::default().event("lagged").data(missed.to_string())),
                    rx,
                ))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn events(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    update_stream(s.updates.subscribe())
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let node = s.node.clone();
    let (view, crashes, swaps) = blocking(move || {
        let n = node.lock();
        (n.mirror_view(), n.crashes(), n.swaps())
    })
    .await;
    let c = view.counts();
    let gauges = Gauges {
        ledger_entries: s.ledger.len_entries(),
        crashes,
        swaps,
        members: vec![
            ("alive", c.alive),
            ("suspect", c.suspect),
            ("dead", c.dead),
            ("left", c.left),
        ],
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(&gauges),
    )
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn list_faults(State(s): State<Arc<AppState>>) -> Json<crate::faults::FaultState> {
    Json(s.faults.state())
}

async fn set_faults(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
    body: Bytes,
) -> Result<Json<crate::faults::FaultState>, ApiError> {
    authorize(&s, &headers, &ext)?;
    let req: FaultRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("fault request: {e}")))?;
    let state = s
        .faults
        .apply(req)
        .map_err(|e| ApiError::bad_request(e.0))?;
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
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&s, &headers, &ext)?;
    let req: SwapRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "swap request: {e} (expected {{\"component\": \"stub\"|\"nodeplane\"|\"<file>\"}})"
        ))
    })?;
    let spec = req.component;
    let (bytes, source) = match nodeplane_artifacts::builtin(&spec) {
        Some(b) => (b.to_vec(), ComponentSource::Builtin(spec.clone())),
        None => {
            let path = spec.clone();
            let bytes = blocking(move || std::fs::read(path)).await.map_err(|e| {
                ApiError::bad_request(format!(
                    "component {spec:?} is not built in and cannot be read as a file: {e}"
                ))
            })?;
            (bytes, ComponentSource::File(spec.clone()))
        }
    };
    let runtime = s.runtime.clone();
    let node = s.node.clone();
    let result = blocking(move || {
        let component = runtime
            .load(&bytes, source)
            .map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
        node.lock().swap(&component).map_err(|e| {
            let status = match e {
                nodeplane_interface::ControlError::HasLeft => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
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
            Err(ApiError {
                status,
                message: format!(
                    "swap to {spec:?} failed, the old component keeps serving: {message}"
                ),
            })
        }
    }
}
