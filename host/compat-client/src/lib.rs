//! A [`ControlPlane`] over the agent's compatibility API: the same
//! interface as loopback HTTP/JSON, membership updates as server-sent
//! events. A Mesh VPN in another process uses it exactly like an
//! in-process control plane; nothing of wasmtime is linked.
//!
//! Failures to reach the agent (refused connection, timeout, a broken
//! response) are [`ControlError::Unavailable`]; the agent's own errors come
//! back as the [`ControlError`] it sent. [`errors`] holds the error ↔
//! status mapping of the compatibility API, shared with the agent that
//! serves it.

mod client;
pub mod errors;
mod sse;

pub use client::{CompatClient, CompatClientConfig};
pub use sse::{SseEvent, SseParser};

#[doc(no_inline)]
pub use nodeplane_interface::ControlPlane;
