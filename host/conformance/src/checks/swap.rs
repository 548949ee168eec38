//! Hot swap: host-owned subscribers survive it and see only the view
//! difference, as `changed` updates, with versions going on gap-free.

use std::collections::BTreeMap;

use nodeplane_interface::{ControlPlane, UpdateCause};

use super::updates::connect_and_suspect;
use super::Check;
use crate::ctx::{ensure, ensure_eq, ensure_gap_free, ok, Violation};

/// `[swap-1]`
pub const KEEPS_SUBSCRIBERS: Check = Check {
    name: "swap-1 hot swap keeps subscribers, emits only changed updates, versions stay gap-free",
    run: |ctx| {
        let pair = ctx.pair()?;
        let updates = ok(
            "subscribe on b before join",
            pair.b.subscribe_membership_updates(),
        )?;
        connect_and_suspect(&pair)?;
        let before = updates.drain();
        let component = ctx.component().clone();
        pair.b
            .lock()
            .swap(&component)
            .map_err(|e| Violation(format!("hot swap to the same component failed: {e}")))?;
        let during = updates.drain();
        for u in &during {
            ensure_eq(
                &format!("cause of swap update about {}", u.peer),
                u.cause,
                UpdateCause::Changed,
            )?;
        }
        ok("leave after the swap", pair.b.leave())?;
        let after = updates.drain();
        ensure(!after.is_empty(), || {
            "the subscriber got no update after the swap".into()
        })?;
        let all: Vec<_> = before
            .iter()
            .chain(&during)
            .chain(&after)
            .cloned()
            .collect();
        ensure_gap_free(&all, 1)?;
        let mut replayed = BTreeMap::new();
        for u in &all {
            replayed.insert(u.peer.clone(), u.current.clone());
        }
        let view = ok("get-members after the swap", pair.b.get_members())?;
        ensure_eq("view version", view.version, all.len() as u64)?;
        ensure_eq(
            "members replayed across the swap",
            replayed.into_values().collect::<Vec<_>>(),
            view.members,
        )
    },
};
