//! The HTTP API on the API address, one module per job:
//! [`introspection`] (`/status`, `/members`, `/ledger/head`, `/ledger`,
//! `/events`, `/metrics`, `/healthz`), [`admin`] (`/admin/faults`,
//! `/admin/component`, and the loopback/token rule every changing endpoint
//! follows) and [`compat`] (the Control Plane Interface under `/v1`).
//!
//! This module holds what they share: the state, the one error type and
//! its statuses, the blocking-call bridge and the update stream. The
//! submodules depend on it and `compat` on `admin`'s rule; nothing depends
//! back.

pub mod admin;
pub mod compat;
pub mod introspection;

use std::convert::Infallible;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures_util::Stream;
use nodeplane_interface::{ControlError, MembershipUpdate};
use nodeplane_runtime::{NodeHandle, Runtime};
use serde_json::json;
use tokio::sync::broadcast;

use crate::events::EventLog;
use crate::faults::Faults;
use crate::metrics::Metrics;
use crate::services::AgentServices;
use crate::store::RedbLedger;

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

/// An error answer of any endpoint: a status and a body.
#[derive(Debug)]
pub struct HttpError {
    /// HTTP status.
    pub status: StatusCode,
    /// What the body says.
    pub body: ErrorBody,
}

/// The body of an error answer.
#[derive(Debug)]
pub enum ErrorBody {
    /// `{"error": message}`: introspection and admin.
    Message(String),
    /// The `ControlError` document `{"error": kind, "detail": ...}`: the
    /// compatibility API.
    Control(ControlError),
}

impl HttpError {
    /// A `{"error": message}` answer with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            body: ErrorBody::Message(message.into()),
        }
    }

    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The same answer in the compatibility API's vocabulary: a message
    /// becomes `unavailable` with that detail; the status is kept (a
    /// refused caller still gets 401/403).
    pub fn into_control(self) -> HttpError {
        match self.body {
            ErrorBody::Message(message) => HttpError {
                status: self.status,
                body: ErrorBody::Control(ControlError::Unavailable(message)),
            },
            ErrorBody::Control(_) => self,
        }
    }
}

/// A `ControlError` answered with the status the compatibility API
/// documents for it (shared with the client:
/// [`nodeplane_compat_client::errors::status_code`]).
impl From<ControlError> for HttpError {
    fn from(error: ControlError) -> Self {
        let status = StatusCode::from_u16(nodeplane_compat_client::errors::status_code(&error))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        HttpError {
            status,
            body: ErrorBody::Control(error),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        match self.body {
            ErrorBody::Message(message) => {
                (self.status, Json(json!({ "error": message }))).into_response()
            }
            ErrorBody::Control(error) => (self.status, Json(error)).into_response(),
        }
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

/// The SSE stream of membership updates (`event: update`), served by
/// `/events` and `/v1/updates`.
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

/// The whole API router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(introspection::routes())
        .merge(admin::routes())
        .nest("/v1", compat::routes())
        .fallback(|| async { HttpError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}
