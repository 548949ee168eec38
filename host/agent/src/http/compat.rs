//! Compatibility mode: the Control Plane Interface over HTTP/JSON, one
//! route per WIT operation under `/v1`, so a Mesh VPN in another process
//! or language integrates without embedding wasmtime. Described in
//! `docs/compat-openapi.yaml`; `nodeplane-compat-client` is its client.
//!
//! Errors answer with the `ControlError` document (`{"error": kind,
//! "detail": ...}`) and the status
//! [`nodeplane_compat_client::errors::status_code`] gives it (409
//! `not-joined`/`has-left`, 404 `unknown-peer`, 400 `invalid-*` and
//! `bad-message`, 503 `unavailable`, 500 otherwise). Operations that change
//! anything (`join`, `leave`, `heartbeat`, `report`) follow the admin rule
//! ([`authorize`]); a refused caller gets 401/403 with an `unavailable`
//! document.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use nodeplane_interface::{ControlError, ControlPlane, MembershipView, PeerState};
use nodeplane_runtime::NodeHandle;
use serde::Deserialize;
use serde_json::json;

use super::admin::authorize;
use super::{blocking, update_stream, AppState, HttpError};
use crate::services::AgentServices;

type Answer<T> = Result<Json<T>, HttpError>;

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

/// Runs the interface operation `op` on the node, on the blocking pool
/// ([`blocking`]); its `ControlError` becomes the error document.
async fn on_node<T: Send + 'static>(
    s: &AppState,
    op: impl FnOnce(&NodeHandle<AgentServices>) -> Result<T, ControlError> + Send + 'static,
) -> Result<T, HttpError> {
    let node = s.node.clone();
    Ok(blocking(move || op(&node)).await?)
}

fn guard(s: &AppState, headers: &HeaderMap, ext: &Extensions) -> Result<(), HttpError> {
    authorize(s, headers, ext).map_err(HttpError::into_control)
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes, expected: &str) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|e| {
        HttpError::from(ControlError::BadMessage(format!(
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
    let view = on_node(&s, move |node| node.join(&req.seed_peers)).await?;
    Ok(Json(view))
}

async fn leave(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
) -> Answer<serde_json::Value> {
    guard(&s, &headers, &ext)?;
    on_node(&s, |node| node.leave()).await?;
    Ok(Json(json!({})))
}

async fn members(State(s): State<Arc<AppState>>) -> Answer<MembershipView> {
    Ok(Json(on_node(&s, |node| node.get_members()).await?))
}

async fn heartbeat(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: Extensions,
) -> Answer<serde_json::Value> {
    guard(&s, &headers, &ext)?;
    let n = on_node(&s, |node| node.publish_heartbeat()).await?;
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
    let state = req
        .state
        .parse::<PeerState>()
        .map_err(|e| HttpError::from(ControlError::BadMessage(e.to_string())))?;
    let after = on_node(&s, move |node| node.report_peer_state(&id, state)).await?;
    Ok(Json(json!({ "state": after })))
}

async fn metadata(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Answer<serde_json::Value> {
    let metadata = on_node(&s, move |node| node.get_peer_metadata(&id)).await?;
    Ok(Json(json!({ "metadata": metadata })))
}

async fn updates(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    update_stream(s.updates.subscribe())
}
