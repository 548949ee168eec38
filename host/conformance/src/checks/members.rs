//! `get-members`: agrees with `join` and changes nothing.

use nodeplane_interface::ControlPlane;

use super::Check;
use crate::ctx::{ensure, ensure_eq, ok};

/// `[members-1]`
pub const EQUALS_JOIN: Check = Check {
    name: "members-1 get-members right after join equals the view join returned",
    run: |ctx| {
        let node = ctx.node("a")?;
        let joined = ok("join([])", node.join(&[]))?;
        ensure_eq(
            "get-members after join",
            ok("get-members", node.get_members())?,
            joined,
        )
    },
};

/// `[members-2]`
pub const READ_ONLY: Check = Check {
    name: "members-2 get-members is read-only: repeated calls agree and emit nothing",
    run: |ctx| {
        let pair = ctx.pair()?;
        pair.connect()?;
        let updates = ok("subscribe", pair.b.subscribe_membership_updates())?;
        let first = ok("get-members", pair.b.get_members())?;
        let second = ok("get-members again", pair.b.get_members())?;
        ensure_eq("second get-members", second, first)?;
        let delivered = updates.drain();
        ensure(delivered.is_empty(), || {
            format!("get-members emitted updates: {delivered:?}")
        })
    },
};
