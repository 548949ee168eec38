//! Calls before `join`: every operation but `join` and the subscriber
//! operations returns `not-joined`.

use nodeplane_interface::{ControlPlane, PeerState};

use super::Check;
use crate::ctx::expect_error;

/// `[pre-1]`
pub const MEMBERS: Check = Check {
    name: "pre-1 get-members before join: not-joined",
    run: |ctx| expect_error("get-members", ctx.node("a")?.get_members(), "not-joined").map(|_| ()),
};

/// `[pre-2]`
pub const HEARTBEAT: Check = Check {
    name: "pre-2 publish-heartbeat before join: not-joined",
    run: |ctx| {
        expect_error(
            "publish-heartbeat",
            ctx.node("a")?.publish_heartbeat(),
            "not-joined",
        )
        .map(|_| ())
    },
};

/// `[pre-3]`
pub const REPORT: Check = Check {
    name: "pre-3 report-peer-state before join: not-joined",
    run: |ctx| {
        let node = ctx.node("a")?;
        expect_error(
            "report-peer-state",
            node.report_peer_state("b", PeerState::Suspect),
            "not-joined",
        )
        .map(|_| ())
    },
};

/// `[pre-4]`
pub const METADATA: Check = Check {
    name: "pre-4 get-peer-metadata before join: not-joined",
    run: |ctx| {
        expect_error(
            "get-peer-metadata(self)",
            ctx.node("a")?.get_peer_metadata("a"),
            "not-joined",
        )
        .map(|_| ())
    },
};

/// `[pre-5]`
pub const LEAVE: Check = Check {
    name: "pre-5 leave before join: not-joined",
    run: |ctx| expect_error("leave", ctx.node("a")?.leave(), "not-joined").map(|_| ()),
};
