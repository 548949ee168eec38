//! The Control Plane Interface as Rust types, and the [`ControlPlane`] trait.
//!
//! This crate mirrors `wit/control.wit` one to one and depends on nothing of
//! wasmtime or of any control-plane implementation. Its types are the shared
//! vocabulary of `nodeplane-types`, re-exported whole. A Mesh VPN that depends
//! on this crate alone can, by construction, only use a control plane through
//! the interface. The written specification is `docs/interface.md`.

mod subscription;

pub use nodeplane_types::*;
pub use subscription::{Subscription, SubscriptionSender};

/// The operations a Mesh VPN uses, one to one with the WIT `control`
/// interface. Implementations serialise calls; every method may be called
/// from any thread.
pub trait ControlPlane: Send + Sync {
    /// Join the cluster through `seed_peers` (may be empty to start alone).
    fn join(&self, seed_peers: &[Address]) -> Result<MembershipView, ControlError>;
    /// Leave gracefully.
    fn leave(&self) -> Result<(), ControlError>;
    /// The current membership view.
    fn get_members(&self) -> Result<MembershipView, ControlError>;
    /// Announce liveness now; returns the heartbeat count.
    fn publish_heartbeat(&self) -> Result<u64, ControlError>;
    /// Report an observation about a peer; returns the peer's state after.
    fn report_peer_state(&self, peer: &str, state: PeerState) -> Result<PeerState, ControlError>;
    /// Subscribe to every membership update from now on. Dropping the
    /// returned [`Subscription`] unsubscribes.
    fn subscribe_membership_updates(&self) -> Result<Subscription, ControlError>;
    /// The metadata a peer (or this node) offers.
    fn get_peer_metadata(&self, peer: &str) -> Result<Metadata, ControlError>;
}

impl<T: ControlPlane + ?Sized> ControlPlane for std::sync::Arc<T> {
    fn join(&self, seed_peers: &[Address]) -> Result<MembershipView, ControlError> {
        (**self).join(seed_peers)
    }
    fn leave(&self) -> Result<(), ControlError> {
        (**self).leave()
    }
    fn get_members(&self) -> Result<MembershipView, ControlError> {
        (**self).get_members()
    }
    fn publish_heartbeat(&self) -> Result<u64, ControlError> {
        (**self).publish_heartbeat()
    }
    fn report_peer_state(&self, peer: &str, state: PeerState) -> Result<PeerState, ControlError> {
        (**self).report_peer_state(peer, state)
    }
    fn subscribe_membership_updates(&self) -> Result<Subscription, ControlError> {
        (**self).subscribe_membership_updates()
    }
    fn get_peer_metadata(&self, peer: &str) -> Result<Metadata, ControlError> {
        (**self).get_peer_metadata(peer)
    }
}
