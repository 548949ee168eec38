//! Sans-IO core of the nodeplane control plane.
//!
//! Principles, in the order they win a conflict:
//! 1. **Determinism.** No I/O, no clock, no threads, no ambient randomness:
//!    time arrives as `now_ms` on every input, randomness comes from a
//!    generator the caller seeds, and everything the node wants done leaves
//!    as an [`Effect`]. Equal inputs give equal outputs.
//! 2. **State is a function of the ledger.** Every membership change is an
//!    entry in its author's hash chain; the view is derived from the set of
//!    entries alone, so equal ledgers give equal views.
//! 3. **Death needs evidence.** `dead` is written only after a suspicion
//!    timeout and a strict-majority quorum of distinct suspecting authors.
//! 4. **Explicit limits.** Every bound is a named constant in [`config`].
//!
//! # Driving a node (what a host or guest shell does)
//!
//! 1. `Node::new(config, stored_entries, seed, now_ms)` with every entry the
//!    store holds, in the order they were appended; then `join`.
//! 2. After **every** call (API, `handle_message`, `handle_timer`), call
//!    [`Node::drain_effects`] and perform the effects in order:
//!    - `Send { to, payload }`: send one datagram to the address `to`;
//!    - `SetTimer { timer, after_ms }`: call `handle_timer(now, timer)` once
//!      after `after_ms`; setting a pending timer id replaces it;
//!    - `CancelTimer { timer }`: forget a pending timer (unknown ids: no-op);
//!    - `Append(entry)`: persist the entry (already verified and linked);
//!    - `Update(update)`: deliver to every subscriber, in order;
//!    - `Log { kind, detail }`: write to the local event log (`detail` is a
//!      JSON object).
//! 3. Pass the source address of every datagram to `handle_message`; an
//!    `Err(BadMessage)` is worth a log line and nothing else (the node's
//!    state is untouched).
//!
//! Timer ids are the `TIMER_*` constants in [`node`]; a shell must not
//! interpret them, only echo them back. `now_ms` must never go backwards.
//!
//! See `docs/design.md` for the protocol and its guarantees.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod ledger;
pub mod membership;
pub mod node;
pub mod rng;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod wire;

pub use config::{Config, Tunables};
pub use error::Error;
pub use ledger::{Entry, Hash};
pub use membership::{Cause, Member, PeerState, Update, View};
pub use node::{Effect, Node};
