//! The nodeplane agent: what an operator runs on every node.
//!
//! It loads a control-plane component into the host runtime and gives it
//! real host services: a wall clock, OS randomness, a control channel over
//! UDP (small messages) and TCP frames (large ones), tokio timers, a
//! crash-safe redb ledger store verified on load and a JSON-lines event
//! log. Every network delivery and timer goes through one driver thread,
//! so the component stays a single-threaded state machine. The host
//! guards the control channel before the component ([`guard`], [`network`]):
//! per-source rate limits, no amplification toward non-members, forged TCP
//! senders dropped, bounded connections, outbox and send tasks. With a
//! cluster key every message is sealed and opened at the host ([`seal`],
//! [`keyring`]): outsiders' bytes never reach the component.
//!
//! Around it, one axum server on the API address ([`http`]) serves
//! introspection (`/status`, `/members`, `/ledger/head`, `/ledger`,
//! `/events`, `/metrics`, `/healthz`), admin (`/admin/faults`,
//! `/admin/component`) and the compatibility mode (`/v1`, the Control
//! Plane Interface over HTTP/JSON). [`cli`] has the operator commands,
//! [`client`] the API client they and the demo use, [`ports`] the free
//! addresses tests and the demo start agents on.

pub mod agent;
pub mod checkpoints;
pub mod cli;
pub mod client;
pub mod config;
pub mod driver;
pub mod events;
pub mod faults;
pub mod framing;
pub mod guard;
pub mod http;
pub mod identity;
pub mod keyring;
pub mod metrics;
pub mod network;
pub mod ports;
pub mod seal;
pub mod services;
pub mod store;
#[cfg(test)]
mod testutil;

pub use agent::{Agent, StartError};
pub use config::{Config, ConfigError, FileConfig};
pub use store::RedbLedger;
