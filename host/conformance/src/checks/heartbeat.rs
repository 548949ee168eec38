//! `publish-heartbeat`: a counter, not a membership change.

use nodeplane_interface::ControlPlane;

use super::Check;
use crate::ctx::{ensure, ensure_eq, ok};

/// `[heartbeat-1]`
pub const COUNTS: Check = Check {
    name: "heartbeat-1 publish-heartbeat returns 1, 2, 3 on successive calls",
    run: |ctx| {
        let node = ctx.joined("a")?;
        for expected in 1..=3u64 {
            ensure_eq(
                "heartbeat count",
                ok("publish-heartbeat", node.publish_heartbeat())?,
                expected,
            )?;
        }
        Ok(())
    },
};

/// `[heartbeat-2]`
pub const NO_VIEW_CHANGE: Check = Check {
    name: "heartbeat-2 publish-heartbeat changes no view and emits nothing",
    run: |ctx| {
        let node = ctx.joined("a")?;
        let updates = ok("subscribe", node.subscribe_membership_updates())?;
        let before = ok("get-members", node.get_members())?;
        ok("publish-heartbeat", node.publish_heartbeat())?;
        ensure_eq(
            "view after a heartbeat",
            ok("get-members", node.get_members())?,
            before,
        )?;
        let delivered = updates.drain();
        ensure(delivered.is_empty(), || {
            format!("a heartbeat emitted updates: {delivered:?}")
        })
    },
};
