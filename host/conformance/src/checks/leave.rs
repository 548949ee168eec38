//! `leave`: self becomes `left`, subscribers hear it, and every changing
//! operation afterwards returns `has-left`.

use nodeplane_interface::{ControlPlane, PeerState, UpdateCause};

use super::Check;
use crate::ctx::{ensure_eq, expect_error, member, metadata_of, ok, Ctx, TestNode, Violation};

/// A node that joined a connected pair and then left, with the peer it knew.
fn left_node(ctx: &Ctx) -> Result<(TestNode, String), Violation> {
    let pair = ctx.pair()?;
    let peer = pair.connect()?;
    ok("leave", pair.b.leave())?;
    Ok((pair.b, peer))
}

/// `[leave-1]`
pub const SHOWS_LEFT: Check = Check {
    name: "leave-1 leave lists self as left and sends subscribers a left update",
    run: |ctx| {
        let node = ctx.joined("a")?;
        let updates = ok("subscribe", node.subscribe_membership_updates())?;
        let before = ok("get-members", node.get_members())?;
        ok("leave", node.leave())?;
        let delivered = updates.drain();
        let [update] = delivered.as_slice() else {
            return Err(Violation(format!(
                "expected exactly one update for leave, got {delivered:?}"
            )));
        };
        ensure_eq("update peer", update.peer.as_str(), "a")?;
        ensure_eq("update cause", update.cause, UpdateCause::Left)?;
        ensure_eq(
            "update previous state",
            update.previous,
            Some(PeerState::Alive),
        )?;
        ensure_eq(
            "update current state",
            update.current.state,
            PeerState::Left,
        )?;
        ensure_eq("update version", update.version, before.version + 1)?;
        let after = ok("get-members after leave", node.get_members())?;
        ensure_eq(
            "own state after leave",
            member(&after, "a")?.state,
            PeerState::Left,
        )?;
        ensure_eq("view version after leave", after.version, update.version)
    },
};

/// `[leave-2]`
pub const JOIN_AFTER: Check = Check {
    name: "leave-2 join after leave: has-left",
    run: |ctx| {
        let (node, _) = left_node(ctx)?;
        expect_error("join([]) after leave", node.join(&[]), "has-left").map(|_| ())
    },
};

/// `[leave-3]`
pub const HEARTBEAT_AFTER: Check = Check {
    name: "leave-3 publish-heartbeat after leave: has-left",
    run: |ctx| {
        let (node, _) = left_node(ctx)?;
        expect_error(
            "publish-heartbeat after leave",
            node.publish_heartbeat(),
            "has-left",
        )
        .map(|_| ())
    },
};

/// `[leave-4]`
pub const REPORT_AFTER: Check = Check {
    name: "leave-4 report-peer-state after leave: has-left",
    run: |ctx| {
        let (node, peer) = left_node(ctx)?;
        expect_error(
            "report-peer-state after leave",
            node.report_peer_state(&peer, PeerState::Suspect),
            "has-left",
        )
        .map(|_| ())
    },
};

/// `[leave-5]`
pub const TWICE: Check = Check {
    name: "leave-5 leave after leave: has-left",
    run: |ctx| {
        let (node, _) = left_node(ctx)?;
        expect_error("second leave", node.leave(), "has-left").map(|_| ())
    },
};

/// `[leave-6]`
pub const READS_AFTER: Check = Check {
    name: "leave-6 get-members and get-peer-metadata still answer after leave",
    run: |ctx| {
        let (node, peer) = left_node(ctx)?;
        let view = ok("get-members after leave", node.get_members())?;
        member(&view, &peer)?;
        ensure_eq(
            "own metadata after leave",
            ok("get-peer-metadata(self)", node.get_peer_metadata("b"))?,
            metadata_of("b"),
        )
    },
};
