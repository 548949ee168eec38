//! `get-peer-metadata`.

use nodeplane_interface::ControlPlane;

use super::Check;
use crate::ctx::{ensure, ensure_eq, expect_error, member, metadata_of, ok};

/// `[meta-1]`
pub const OWN: Check = Check {
    name: "meta-1 own metadata is the configured metadata",
    run: |ctx| {
        let node = ctx.joined("a")?;
        ensure_eq(
            "get-peer-metadata(self)",
            ok("get-peer-metadata(self)", node.get_peer_metadata("a"))?,
            metadata_of("a"),
        )
    },
};

/// `[meta-2]`
pub const UNKNOWN_PEER: Check = Check {
    name: "meta-2 metadata of an unknown peer: unknown-peer naming it",
    run: |ctx| {
        let node = ctx.joined("a")?;
        let error = expect_error(
            "get-peer-metadata(nobody)",
            node.get_peer_metadata("nobody"),
            "unknown-peer",
        )?;
        ensure(error.to_string().contains("nobody"), || {
            format!("unknown-peer must name the peer, got {error}")
        })
    },
};

/// `[meta-3]`
pub const PEER: Check = Check {
    name: "meta-3 a peer's metadata is what its view entry carries",
    run: |ctx| {
        let pair = ctx.pair()?;
        let peer = pair.connect()?;
        let view = ok("get-members on b", pair.b.get_members())?;
        let listed = member(&view, &peer)?.metadata.clone();
        ensure_eq(
            &format!("get-peer-metadata({peer})"),
            ok("get-peer-metadata(peer)", pair.b.get_peer_metadata(&peer))?,
            listed,
        )
    },
};
