//! The control plane's shared vocabulary, defined once.
//!
//! Every crate that speaks about membership uses these types: the sans-IO
//! core (`guests/core`), the stub component, the host runtime, the Control
//! Plane Interface (`host/interface` re-exports this crate whole) and the
//! simulator. The WIT-generated types (`wit/control.wit`) are converted to
//! these once, at the component boundary.
//!
//! One module per concept:
//! - [`state`]: [`PeerState`], a member's state, with its precedence;
//! - [`member`]: [`Member`] and its [`NodeId`], [`Address`], [`Metadata`];
//! - [`view`]: [`MembershipView`] and its [`StateCounts`];
//! - [`update`]: [`MembershipUpdate`] and its [`UpdateCause`];
//! - [`error`]: [`ControlError`], the errors of the operations;
//! - [`tunables`]: [`Tunables`] and [`NodeConfig`], what a host passes to a
//!   component at init;
//! - [`effect`]: [`Effect`], what a control plane asks its host to do;
//! - [`limits`]: [`MAX_MESSAGE_BYTES`], the largest wire message.
//!
//! The serde representation of each type is part of the compatibility API
//! and the agent's event log: it is pinned by this crate's tests.
//!
//! The crate is small and plain on purpose: it builds for the host and for
//! `wasm32-wasip2` alike and depends on serde, thiserror and the entry
//! format only.
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

pub mod effect;
pub mod error;
pub mod limits;
pub mod member;
pub mod state;
pub mod transport;
pub mod tunables;
pub mod update;
pub mod view;

pub use effect::Effect;
pub use error::ControlError;
pub use limits::{MAX_EQUIVOCATIONS_PER_AUTHOR, MAX_MESSAGE_BYTES};
pub use member::{Address, Member, Metadata, NodeId};
pub use state::{PeerState, UnknownPeerState};
pub use tunables::{NodeConfig, Tunables};
pub use update::{MembershipUpdate, UpdateCause};
pub use view::{MembershipView, StateCounts};
