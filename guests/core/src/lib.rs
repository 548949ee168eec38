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
//! 1. `Node::new(config, stored_entries, seed, now_ms, signer)` with every
//!    entry the store holds, in the order they were appended, and the
//!    node's [`Signer`] (the host's signing service: it signs this node's
//!    entries and checks everyone's); then `join`.
//! 2. After **every** call (API, `handle_message`, `handle_timer`), call
//!    [`Node::drain_effects`] and perform the [`Effect`]s in order:
//!    - `Send { to, payload }`: send one datagram to the address `to`;
//!    - `SetTimer { timer, after_ms }`: call `handle_timer(now, timer)` once
//!      after `after_ms`; setting a pending timer replaces it;
//!    - `CancelTimer { timer }`: forget a pending timer (if none: no-op);
//!    - `Append(entry)`: persist the entry (already verified and linked);
//!    - `Update { update, .. }`: deliver to every subscriber, in order;
//!    - `Log { kind, detail }`: write to the local event log (`detail` is a
//!      JSON object).
//! 3. Pass the source address of every datagram to `handle_message`; an
//!    `Err(BadMessage)` is worth a log line and nothing else (the node's
//!    state is untouched).
//!
//! Timers are the [`Timer`] enum. Across WIT a timer is its
//! [`Timer::id`] (1..=7, stable); a shell passes ids through
//! [`Timer::from_id`] and must not interpret them otherwise. `now_ms` must
//! never go backwards.
//!
//! # Vocabulary
//!
//! The membership types ([`PeerState`], [`Member`], [`MembershipView`],
//! [`MembershipUpdate`], [`UpdateCause`]), the configuration
//! ([`NodeConfig`], [`Tunables`]) and [`Effect`] come from
//! `nodeplane-types`, the one definition every crate of the workspace
//! shares; they are re-exported here. The core names its timers with
//! [`Timer`] and emits each update once for all subscribers, hence
//! `Effect<Timer, ()>`.
//!
//! # Layout: one concept per module, each owning its state
//!
//! - [`node`]: the public API of [`Node`] and the dispatch of messages and
//!   timers to the modules below;
//! - `roster`: the published view, the live and dead sets, the cluster size;
//! - `probe`: probe rounds, indirect probes relayed for others, local
//!   health;
//! - `suspicion`: suspicions, and the death rule as a pure function;
//! - `gossip`: the dissemination queue and piggybacking;
//! - `reconcile`: sync, want and entry streams, contacts, anti-entropy;
//! - `view`: from linked ledger entries to updates (authoring, ingesting,
//!   folding, publishing, refuting);
//! - [`effect`]: [`Timer`] and the effect queue;
//! - [`membership`]: entry bodies and the view as a function of the
//!   entries; [`ledger`]: entries, chains, digests; [`wire`]: the codec;
//!   [`config`]: every bound with its reason; [`rng`]: the seeded generator;
//! - [`checkpoint`]: checkpoint records, their encoding and id, and the
//!   derivation a checkpoint loads into (docs/design.md §13);
//!   `checkpoint_driver`: proposals, votes and agreement run by the node
//!   (stage A: agreed, nothing pruned).
//!
//! # Invariants
//!
//! [`Node::check_invariants`] asserts what must always hold (the live and
//! dead sets agree with the published view, which equals the view derived
//! from the ledger; the probe order holds known peers only, each once;
//! health, queues and suspicions stay within their bounds). The test kit
//! and the tests call it after every step; cheap checks are also `assert!`s
//! on the paths themselves, on in every build. No input reaches them:
//! malformed input is an [`Error`], never a panic.
//!
//! See `docs/design.md` for the protocol and its guarantees.
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod authors;
pub mod checkpoint;
mod checkpoint_driver;
mod compact;
pub mod config;
pub mod effect;
pub mod error;
mod gossip;
pub mod ledger;
pub mod membership;
pub mod node;
mod paged;
mod probe;
mod reconcile;
pub mod rng;
mod roster;
mod suspicion;
#[cfg(feature = "testkit")]
pub mod testkit;
mod view;
pub mod wire;

pub use checkpoint_driver::CheckpointStatus;
pub use effect::{EffectSink, Timer};
pub use error::Error;
pub use ledger::{Entry, Hash};
pub use node::Node;
pub use nodeplane_entry::signing::{PublicKey, Signer, Verifier};
pub use nodeplane_types::{
    Effect, Member, MembershipUpdate, MembershipView, NodeConfig, PeerState, Tunables, UpdateCause,
};
