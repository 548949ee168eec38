//! Membership updates: gap-free versions, the same order for every
//! subscriber, and a stream that reproduces the view.

use std::collections::BTreeMap;

use nodeplane_interface::{ControlPlane, MembershipUpdate, PeerState};

use super::Check;
use crate::ctx::{ensure, ensure_eq, ensure_gap_free, ok, Ctx, Pair, Violation};

/// Subscribes twice on `b` before anything happens, connects the pair,
/// reports the peer suspect then dead, and returns both update streams
/// with `b`'s final view version.
fn scenario(ctx: &Ctx) -> Result<(Vec<MembershipUpdate>, Vec<MembershipUpdate>, Pair), Violation> {
    let pair = ctx.pair()?;
    let first = ok(
        "subscribe on b before join",
        pair.b.subscribe_membership_updates(),
    )?;
    let second = ok(
        "second subscribe on b before join",
        pair.b.subscribe_membership_updates(),
    )?;
    let peer = connect_and_suspect(&pair)?;
    ok(
        "report-peer-state(peer, dead)",
        pair.b.report_peer_state(&peer, PeerState::Dead),
    )?;
    Ok((first.drain(), second.drain(), pair))
}

/// Connects `pair` ([`Pair::connect`]) and reports the peer `b` knows
/// suspect on `b`: the steps that make updates flow. Returns the peer.
pub(super) fn connect_and_suspect(pair: &Pair) -> Result<String, Violation> {
    let peer = pair.connect()?;
    ok(
        "report-peer-state(peer, suspect)",
        pair.b.report_peer_state(&peer, PeerState::Suspect),
    )?;
    Ok(peer)
}

/// `[updates-1]`
pub const GAP_FREE: Check = Check {
    name: "updates-1 versions rise by exactly one per update, through join and reports",
    run: |ctx| {
        let (updates, _, pair) = scenario(ctx)?;
        ensure_gap_free(&updates, 1)?;
        let view = ok("get-members on b", pair.b.get_members())?;
        ensure_eq(
            "view version (= last update's version)",
            view.version,
            updates.len() as u64,
        )
    },
};

/// `[updates-2]`
pub const SAME_ORDER: Check = Check {
    name: "updates-2 every subscriber receives every update, in the same order",
    run: |ctx| {
        let (first, second, _) = scenario(ctx)?;
        ensure(!first.is_empty(), || {
            "no updates were delivered at all".into()
        })?;
        ensure_eq("second subscriber's updates", second, first)
    },
};

/// `[updates-3]`
pub const REPLAY: Check = Check {
    name:
        "updates-3 updates applied in order reproduce get-members, each naming its previous state",
    run: |ctx| {
        let (updates, _, pair) = scenario(ctx)?;
        let mut replayed = BTreeMap::new();
        for u in &updates {
            ensure_eq(
                "update peer (= current.id)",
                u.peer.as_str(),
                u.current.id.as_str(),
            )?;
            let previous = replayed
                .get(&u.peer)
                .map(|m: &nodeplane_interface::Member| m.state);
            ensure_eq(
                &format!("previous state in update version {}", u.version),
                u.previous,
                previous,
            )?;
            replayed.insert(u.peer.clone(), u.current.clone());
        }
        let view = ok("get-members on b", pair.b.get_members())?;
        let replayed: Vec<_> = replayed.into_values().collect();
        ensure_eq("members replayed from the updates", replayed, view.members)
    },
};

/// `[updates-4]`
pub const ENTRY_IDS: Check = Check {
    name: "updates-4 an update's entry, where present, is a 64-digit lowercase hex id",
    run: |ctx| {
        let (updates, _, pair) = scenario(ctx)?;
        let leaving = ok("subscribe on b", pair.b.subscribe_membership_updates())?;
        ok("leave on b", pair.b.leave())?;
        for u in updates.iter().chain(&leaving.drain()) {
            if let Some(entry) = &u.entry {
                ensure(
                    entry.len() == 64
                        && entry
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                    || {
                        format!(
                            "update version {} ({:?} about {}) names entry {entry:?}",
                            u.version, u.cause, u.peer
                        )
                    },
                )?;
            }
        }
        Ok(())
    },
};
