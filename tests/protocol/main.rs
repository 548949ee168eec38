//! The membership protocol of the sans-IO core (`nodeplane-core`): the
//! control operations' contract, the wire format's golden vectors,
//! reconciliation cost, and multi-node scenarios on the core's
//! deterministic harness (`testkit`).

#[path = "../support/mod.rs"]
mod support;

mod api;
mod claims;
mod extremes;
mod reconcile;
mod signing;
mod testkit;
mod wire;
