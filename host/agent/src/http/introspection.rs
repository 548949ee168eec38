//! Introspection: what the node is and sees (`/status`, `/members`,
//! `/ledger/head`, `/ledger`, `/events`, `/metrics`, `/healthz`). Read-only,
//! open to every caller.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;

use super::{blocking, update_stream, AppState, HttpError, Limits};
use crate::metrics::Gauges;

/// Largest page of `GET /ledger`.
pub const MAX_LEDGER_PAGE: usize = 1000;
/// Page size of `GET /ledger` when `limit` is absent.
pub const DEFAULT_LEDGER_PAGE: usize = 100;

/// The introspection routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/status", get(status))
        .route("/members", get(members))
        .route("/ledger/head", get(ledger_head))
        .route("/ledger", get(ledger_page))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
}

async fn status(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let node = s.node.clone();
    let (view, name, version, hash, source, uptime, (crashes, quarantined, failure), swaps) =
        blocking(move || {
            let n = node.lock();
            let (name, version) = n.component_info();
            (
                n.mirror_view(),
                name.to_string(),
                version.to_string(),
                n.component().hash_hex(),
                n.component().source.to_string(),
                n.uptime(),
                (
                    n.crashes(),
                    n.quarantined(),
                    n.failure().map(str::to_string),
                ),
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
        "quarantined": quarantined,
        "failure": failure,
        "swaps": swaps,
        "checkpoint": s.metrics.checkpoint.latest(),
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
) -> Result<Json<serde_json::Value>, HttpError> {
    let mut author = None;
    let mut from = None;
    let mut limit = DEFAULT_LEDGER_PAGE;
    for (key, value) in &params {
        match key.as_str() {
            "author" => {
                if value.is_empty() || value.len() > nodeplane_entry::MAX_AUTHOR_LEN {
                    return Err(HttpError::bad_request(format!(
                        "author: {value:?} is not a node id"
                    )));
                }
                author = Some(value.clone());
            }
            "from" => {
                from = Some(value.parse::<u64>().map_err(|_| {
                    HttpError::bad_request(format!("from: {value:?} is not a non-negative integer"))
                })?)
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_LEDGER_PAGE).contains(l))
                    .ok_or_else(|| {
                        HttpError::bad_request(format!(
                            "limit: {value:?} must be 1..={MAX_LEDGER_PAGE}"
                        ))
                    })?;
            }
            other => {
                return Err(HttpError::bad_request(format!(
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
        (Some(_), Some(last)) if entries.len() == limit => last.seq.checked_add(1),
        (None, Some(_)) if entries.len() == limit => from.checked_add(limit as u64),
        _ => None,
    };
    Ok(Json(
        json!({ "author": author, "from": from, "entries": entries, "next": next }),
    ))
}

async fn events(
    State(s): State<Arc<AppState>>,
    Extension(limits): Extension<Limits>,
) -> Result<impl IntoResponse, HttpError> {
    let slot = limits.stream_slot()?;
    Ok(update_stream(s.updates.subscribe(), slot))
}

async fn metrics(
    State(s): State<Arc<AppState>>,
    Extension(limits): Extension<Limits>,
) -> impl IntoResponse {
    let node = s.node.clone();
    let (view, crashes, swaps, quarantined, quarantine_drops) = blocking(move || {
        let n = node.lock();
        let q = (n.quarantined(), n.quarantine_drops());
        (n.mirror_view(), n.crashes(), n.swaps(), q.0, q.1)
    })
    .await;
    let c = view.counts();
    let gauges = Gauges {
        ledger_entries: s.ledger.len_entries(),
        crashes,
        swaps,
        quarantined,
        quarantine_drops,
        members: vec![
            ("alive", c.alive),
            ("suspect", c.suspect),
            ("dead", c.dead),
            ("left", c.left),
        ],
    };
    let mut text = s.metrics.render(&gauges);
    let refused = limits.refused();
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    crate::metrics::render_more(
        &mut text,
        &[
            ("nodeplane_ledger_equivocations_dropped_total", "Conflicting entries not kept as evidence (over the per-author cap, or not linking).", s.ledger.equivocations_dropped()),
            ("nodeplane_ledger_reopens_total", "Times the ledger store was reopened after a failure.", s.ledger.reopens()),
            ("nodeplane_http_refused_busy_total", "HTTP requests refused: too many at once (429).", load(&refused.busy)),
            ("nodeplane_http_refused_streams_total", "Update streams refused: too many open (429).", load(&refused.streams)),
            ("nodeplane_http_refused_timeout_total", "HTTP requests not completed in time (408).", load(&refused.timeout)),
            ("nodeplane_http_refused_too_large_total", "HTTP requests with a body over the limit (413).", load(&refused.too_large)),
        ],
        &[(
            "nodeplane_ledger_equivocations",
            "Equivocations (author, sequence number) the ledger holds evidence of.",
            s.ledger.equivocations().len() as u64,
        )],
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}
