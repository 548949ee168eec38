//! The Mesh VPN host: the desired peer set of a WireGuard-style data plane,
//! kept from any [`ControlPlane`](nodeplane_interface::ControlPlane).
//!
//! Principles:
//! - This crate depends on the Control Plane Interface alone; it cannot
//!   reach around it into wasmtime, the runtime or the node plane.
//! - The peer set is *derived*: members `alive` or `suspect` (a suspicion is
//!   not a verdict) are peers, `dead` and `left` members are not. Peer
//!   metadata `overlay-ip` and `public-key` ([`OVERLAY_IP_KEY`],
//!   [`PUBLIC_KEY_KEY`]) give the tunnel; a peer lacking them, or with a bad
//!   value, is kept but not rendered, with the reason.
//! - The set carries a `serial` that rises by one on every change.
//! - The last applied set stays in force while the control plane is
//!   unreachable or being swapped; updates are applied in version order,
//!   a gap triggers a resync from `get_members`.
//!
//! The written guide is `docs/meshvpn.md`.

mod peer;
mod peer_set;
mod render;
mod spawn;
mod vpn;

pub use peer::{Incomplete, PublicKey, Tunnel, VpnPeer, OVERLAY_IP_KEY, PUBLIC_KEY_KEY};
pub use peer_set::{PeerSet, RenderPlan, SharedPeerSet};
pub use render::{render_wireguard, write_atomic, CONFIG_FILE_NAME};
pub use spawn::{RunningMeshVpn, SpawnConfig};
pub use vpn::{MeshVpn, MeshVpnConfig, MeshVpnError, PollReport};
