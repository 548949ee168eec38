//! The data-plane test bed: N network namespaces on one bridge, each with a
//! userspace WireGuard interface, a `nodeplane agent` and a Mesh VPN host
//! (`nodeplane meshvpn-host`). The code lives in `src/demo/netns.rs`, where
//! `nodeplane demo --dataplane wireguard` uses it too; the tests include
//! that one file.

#[path = "../../src/demo/netns.rs"]
mod bed;

// Every test binary includes the support module; only `dataplane` uses
// the bed.
#[allow(unused_imports)]
pub use bed::*;
