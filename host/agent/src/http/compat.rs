//! Compatibility mode: the Control Plane Interface over HTTP/JSON, one
//! route per WIT operation under `/v1`, so a Mesh VPN in another process
//! or language integrates without embedding wasmtime. Described in
//! `docs/compat-openapi.yaml`; `nodeplane-compat-client` is its client.
//!
//! Errors answer with the `ControlError` document (`{"error": kind,
//! "detail": ...}`) and the status
//! [`nodeplane_compat_client::errors::status_code`] gives it (409
//! `not-joined`/`has-left`, 404 `unknown-peer`, 422 `invalid-report`, 400
//! the other `invalid-*` and `bad-message`, 503 `unavailable`, 500
//! otherwise).
//!
//! Every constraint checked here is stated in the OpenAPI document (seed
//! form and count, node id length, the states a report may carry), so a
//! request valid against the document is never answered 400; 400 means
//! the request broke the document. Operations that change
//! anything (`join`, `leave`, `heartbeat`, `report`) follow the admin rule
//! ([`authorize`]); a refused caller gets 401/403 with an `unavailable`
//! document.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use nodeplane_interface::{ControlError, ControlPlane, MembershipView, PeerState};
use nodeplane_runtime::NodeHandle;
use serde::Deserialize;
use serde_json::json;

use super::admin::authorize;
use super::{blocking, body_or_error, update_stream, AppState, HttpError, Limits};
use crate::services::AgentServices;

/// Most seeds one `join` may name (`maxItems` of `seed_peers`). A node
/// needs one reachable seed; a few cover seeds that are down. Each seed
/// becomes a contact the node keeps and may sync with, so the list is
/// bounded.
pub const MAX_JOIN_SEEDS: usize = 64;

/// Longest seed address in bytes (`maxLength` of `Address`): the longest
/// `[IPv6]:port`, `[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535`.
pub const MAX_ADDRESS_LEN: usize = 53;

/// Longest peer id in a path, in characters (`maxLength` of `NodeId`, which
/// counts characters): node ids are at most
/// [`nodeplane_entry::MAX_AUTHOR_LEN`] bytes, so no longer id can name a
/// member.
pub const MAX_NODE_ID_CHARS: usize = nodeplane_entry::MAX_AUTHOR_LEN;

/// The states a report may carry (the `ReportState` enum): `left` is only
/// ever declared by the leaving node itself.
pub const REPORT_STATES: [PeerState; 3] = [PeerState::Alive, PeerState::Suspect, PeerState::Dead];

/// Checks a seed against the document's `Address`: `ip:port` or
/// `[ipv6]:port`, port 1..=65535, at most [`MAX_ADDRESS_LEN`] bytes. The
/// document's pattern describes a subset of what this accepts (it spells
/// IPv4 octets and ports without leading zeros).
pub fn check_seed(seed: &str) -> Result<SocketAddr, String> {
    if seed.len() > MAX_ADDRESS_LEN {
        return Err(format!(
            "seed of {} bytes: an address is at most {MAX_ADDRESS_LEN}",
            seed.len()
        ));
    }
    let addr: SocketAddr = seed
        .parse()
        .map_err(|_| format!("seed {seed:?} is not ip:port or [ipv6]:port"))?;
    if addr.port() == 0 {
        return Err(format!(
            "seed {seed:?}: port 0 is not a port a node listens on"
        ));
    }
    Ok(addr)
}

/// Checks a peer id from a path against the document's `NodeId`.
fn check_peer_id(id: &str) -> Result<(), HttpError> {
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_NODE_ID_CHARS {
        return Err(ControlError::BadMessage(format!(
            "peer id of {chars} characters: a node id has 1..={MAX_NODE_ID_CHARS}"
        ))
        .into());
    }
    Ok(())
}

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
    body: Result<Bytes, BytesRejection>,
) -> Answer<MembershipView> {
    guard(&s, &headers, &ext)?;
    let body = body_or_error(body).map_err(HttpError::into_control)?;
    let req: JoinRequest = if body.is_empty() {
        JoinRequest {
            seed_peers: Vec::new(),
        }
    } else {
        parse_body(&body, r#"{"seed_peers": ["ip:port", ...]}"#)?
    };
    if req.seed_peers.len() > MAX_JOIN_SEEDS {
        return Err(ControlError::BadMessage(format!(
            "{} seed_peers: at most {MAX_JOIN_SEEDS}",
            req.seed_peers.len()
        ))
        .into());
    }
    for seed in &req.seed_peers {
        check_seed(seed).map_err(|why| HttpError::from(ControlError::InvalidAddress(why)))?;
    }
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
    body: Result<Bytes, BytesRejection>,
) -> Answer<serde_json::Value> {
    guard(&s, &headers, &ext)?;
    check_peer_id(&id)?;
    let body = body_or_error(body).map_err(HttpError::into_control)?;
    let req: ReportRequest = parse_body(&body, r#"{"state": "alive|suspect|dead"}"#)?;
    let state = req
        .state
        .parse::<PeerState>()
        .map_err(|e| HttpError::from(ControlError::BadMessage(e.to_string())))?;
    if !REPORT_STATES.contains(&state) {
        return Err(ControlError::InvalidReport(format!(
            "a report carries alive, suspect or dead, not {}: left is only ever declared by the leaving node itself",
            req.state
        ))
        .into());
    }
    let after = on_node(&s, move |node| node.report_peer_state(&id, state)).await?;
    Ok(Json(json!({ "state": after })))
}

async fn metadata(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Answer<serde_json::Value> {
    check_peer_id(&id)?;
    let metadata = on_node(&s, move |node| node.get_peer_metadata(&id)).await?;
    Ok(Json(json!({ "metadata": metadata })))
}

async fn updates(
    State(s): State<Arc<AppState>>,
    Extension(limits): Extension<Limits>,
) -> Result<impl IntoResponse, HttpError> {
    let slot = limits.stream_slot().map_err(HttpError::into_control)?;
    Ok(update_stream(s.updates.subscribe(), slot))
}
