//! The agent: its HTTP API and control channel in process, and clusters of
//! real `nodeplane agent` processes checked through the introspection API.
//! The multi-process tests take `support::agents::SERIAL`, one at a time.

#[path = "../support/mod.rs"]
mod support;

mod adversarial;
mod any_language;
mod api;
mod http_contract;
mod keys;
mod network;
mod processes;
mod store_faults;
