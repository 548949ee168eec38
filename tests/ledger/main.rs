//! The ledger: transition table, replay order, merge (property tests) and
//! tamper evidence.

#[path = "../support/mod.rs"]
mod support;

mod claims;
mod semantics;
