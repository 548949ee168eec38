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
