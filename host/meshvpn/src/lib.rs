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
//!   value, is kept but not rendered, with the reason. `wg-port`
//!   ([`WG_PORT_KEY`]) gives the tunnel endpoint's port.
//! - [`WireGuardDevice`] applies the rendered set to a real interface
//!   through the WireGuard UAPI ([`uapi`]), sending only the difference.
//! - The set carries a `serial` that rises by one on every change.
//! - The last applied set stays in force while the control plane is
//!   unreachable or being swapped; updates are applied in version order,
//!   a gap triggers a resync from `get_members`.
//!
//! The written guide is `docs/meshvpn.md`.

mod device;
mod keys;
mod peer;
mod peer_set;
mod render;
mod spawn;
pub mod uapi;
mod vpn;

pub use device::{
    ApplyReport, DeviceStats, WireGuardConfig, WireGuardDevice, DEVICE_RECHECK_INTERVAL,
};
pub use keys::{KeyError, PrivateKey, MAX_KEY_FILE_BYTES};
pub use peer::{
    Incomplete, PublicKey, Tunnel, VpnPeer, OVERLAY_IP_KEY, PUBLIC_KEY_KEY, WG_PORT_KEY,
};
pub use peer_set::{PeerSet, RenderPlan, SharedPeerSet};
pub use render::{render_wireguard, write_atomic, CONFIG_FILE_NAME};
pub use spawn::{RunningMeshVpn, SpawnConfig};
pub use vpn::{MeshVpn, MeshVpnConfig, MeshVpnError, PollReport};
