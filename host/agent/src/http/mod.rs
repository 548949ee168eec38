//! The HTTP API on the API address, one module per job:
//! [`introspection`] (`/status`, `/members`, `/ledger/head`, `/ledger`,
//! `/events`, `/metrics`, `/healthz`), [`admin`] (`/admin/faults`,
//! `/admin/component`, `/admin/keys`, and the loopback/token rule every changing endpoint
//! follows) and [`compat`] (the Control Plane Interface under `/v1`).
//!
//! This module holds what they share: the state, the one error type and
//! its statuses, the blocking-call bridge, the update stream and the limits
//! every route runs under ([`MAX_BODY_BYTES`], [`REQUEST_TIMEOUT`],
//! [`MAX_CONCURRENT_REQUESTS`], [`MAX_UPDATE_STREAMS`]). The submodules
//! depend on it and `compat` on `admin`'s rule; nothing depends back.
//!
//! No input answers 5xx: a request the server refuses gets a 4xx naming
//! what is wrong (400 malformed, 404, 405, 408 too slow, 409, 413 too
//! large, 422 well-formed but refused, 429 too many at once); 5xx are
//! left for the node's own failures (`unavailable`, `corrupt-ledger`,
//! `internal`).

pub mod admin;
pub mod compat;
pub mod introspection;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use futures_util::Stream;
use nodeplane_interface::{ControlError, MembershipUpdate};
use nodeplane_runtime::{NodeHandle, Runtime};
use serde_json::json;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};

use crate::events::EventLog;
use crate::faults::Faults;
use crate::keyring::ClusterKeys;
use crate::metrics::Metrics;
use crate::services::AgentServices;
use crate::store::RedbLedger;

/// Largest request body any route reads (413 beyond). The largest
/// documented request, a `join` with [`compat::MAX_JOIN_SEEDS`] seeds of
/// [`compat::MAX_ADDRESS_LEN`] bytes, is under 4 KiB; a fault rule or a
/// swap request is smaller still. 64 KiB leaves room for whitespace and
/// keeps a hostile client from making the agent buffer megabytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest a request may take, reading its body included, before it is
/// answered 408. Every operation but a swap answers in milliseconds; a
/// client slower than this is holding a slot others need.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a hot swap (`POST /admin/component`) may take: loading a
/// component from a file compiles it, which takes seconds on a busy host.
pub const SWAP_TIMEOUT: Duration = Duration::from_secs(120);

/// Most requests handled at once (429 beyond). Node operations take the
/// node's lock one at a time anyway; 64 covers every honest client (a
/// Mesh VPN, an operator's CLI, a metrics scraper) with room to spare and
/// bounds the blocking threads a flood can occupy.
pub const MAX_CONCURRENT_REQUESTS: usize = 64;

/// Most update streams (`/events`, `/v1/updates`) open at once (429
/// beyond). Each holds a connection and a broadcast receiver for as long
/// as the client stays; a node has one Mesh VPN and a few observers.
pub const MAX_UPDATE_STREAMS: usize = 32;

/// The concurrency budgets of one router (shared by its routes) and what
/// they refused.
#[derive(Clone, Debug)]
pub struct Limits {
    requests: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    refused: Arc<Refused>,
}

/// Requests the limits refused, by limit (`/metrics`:
/// `nodeplane_http_refused_total{limit=...}`).
#[derive(Debug, Default)]
pub struct Refused {
    /// Over [`MAX_CONCURRENT_REQUESTS`] (429).
    pub busy: AtomicU64,
    /// Over [`MAX_UPDATE_STREAMS`] (429).
    pub streams: AtomicU64,
    /// Not done within the timeout (408).
    pub timeout: AtomicU64,
    /// Over [`MAX_BODY_BYTES`] (413).
    pub too_large: AtomicU64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
            streams: Arc::new(Semaphore::new(MAX_UPDATE_STREAMS)),
            refused: Arc::default(),
        }
    }
}

impl Limits {
    /// What the limits refused so far.
    pub fn refused(&self) -> &Refused {
        &self.refused
    }

    /// A slot for one more update stream, held for the stream's life.
    pub fn stream_slot(&self) -> Result<OwnedSemaphorePermit, HttpError> {
        Arc::clone(&self.streams).try_acquire_owned().map_err(|_| {
            self.refused.streams.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                limit = MAX_UPDATE_STREAMS,
                "update stream refused: too many open"
            );
            HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many update streams open (at most {MAX_UPDATE_STREAMS}); retry later"),
            )
        })
    }
}

/// The body of a request, or the 4xx its rejection stands for (413 over
/// [`MAX_BODY_BYTES`], 400 when it could not be read).
pub fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, HttpError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body over {MAX_BODY_BYTES} bytes")
        } else {
            format!("request body: {}", rejection.body_text())
        };
        let status = if status.is_client_error() {
            status
        } else {
            StatusCode::BAD_REQUEST
        };
        HttpError::new(status, message)
    })
}

/// Runs a request under the concurrency limit and `timeout`. Its answers
/// on refusal keep the vocabulary of the API asked: the `ControlError`
/// document when `compat` (the routes under `/v1`), `{"error": message}`
/// elsewhere.
async fn limit(
    State((limits, timeout, compat)): State<(Limits, Duration, bool)>,
    request: Request,
    next: Next,
) -> Response {
    let answer = |error: HttpError| {
        if compat {
            error.into_control().into_response()
        } else {
            error.into_response()
        }
    };
    let Ok(_slot) = Arc::clone(&limits.requests).try_acquire_owned() else {
        limits.refused.busy.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(limit = MAX_CONCURRENT_REQUESTS, path = %request.uri().path(), "request refused: too many at once");
        return answer(HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many requests at once (at most {MAX_CONCURRENT_REQUESTS}); retry later"),
        ));
    };
    let path = request.uri().path().to_string();
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => {
            if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
                limits.refused.too_large.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%path, limit = MAX_BODY_BYTES, "request refused: body too large");
            }
            response
        }
        Err(_) => {
            limits.refused.timeout.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%path, timeout_s = timeout.as_secs(), "request timed out");
            answer(HttpError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("request not completed within {} s", timeout.as_secs()),
            ))
        }
    }
}

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
    /// The cluster keyring (`/admin/keys`).
    pub keys: Arc<ClusterKeys>,
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
/// `slot` ([`Limits::stream_slot`]) is held until the client goes.
pub fn update_stream(
    rx: broadcast::Receiver<MembershipUpdate>,
    slot: OwnedSemaphorePermit,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((rx, slot), |(mut rx, slot)| async move {
        match rx.recv().await {
            Ok(update) => {
                let event = Event::default()
                    .event("update")
                    .json_data(&update)
                    .unwrap_or_else(|_| Event::default().event("error"));
                Some((Ok(event), (rx, slot)))
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "an SSE client fell behind; updates skipped");
                Some((
                    Ok(Event::default().event("lagged").data(missed.to_string())),
                    (rx, slot),
                ))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The whole API router: every route under [`MAX_BODY_BYTES`],
/// [`MAX_CONCURRENT_REQUESTS`] (shared) and [`REQUEST_TIMEOUT`]
/// ([`SWAP_TIMEOUT`] for a swap); update streams also under
/// [`MAX_UPDATE_STREAMS`].
pub fn router(state: Arc<AppState>) -> Router {
    let limits = Limits::default();
    let under = |timeout: Duration, compat: bool| {
        middleware::from_fn_with_state((limits.clone(), timeout, compat), limit)
    };
    Router::new()
        .merge(introspection::routes().route_layer(under(REQUEST_TIMEOUT, false)))
        .merge(admin::routes().route_layer(under(SWAP_TIMEOUT, false)))
        .nest(
            "/v1",
            compat::routes().route_layer(under(REQUEST_TIMEOUT, true)),
        )
        .fallback(|| async { HttpError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(Extension(limits.clone()))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
