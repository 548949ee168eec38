//! `subscribe-membership-updates` and `unsubscribe-membership-updates`:
//! through the host (late subscribers, dropped subscriptions) and at the
//! WIT level (handle errors), where the host would otherwise hide them.

use nodeplane_interface::{ControlPlane, PeerState};
use nodeplane_runtime::{Effect, Instance};

use super::Check;
use crate::ctx::{call_ok, ensure, ensure_eq, ensure_gap_free, expect_call_error, ok, Violation};

/// `[sub-1]`
pub const LATE: Check = Check {
    name: "sub-1 a late subscriber receives only later updates, from version + 1",
    run: |ctx| {
        let pair = ctx.pair()?;
        let peer = pair.connect()?;
        let view = ok("get-members on b", pair.b.get_members())?;
        let updates = ok(
            "subscribe on b after join",
            pair.b.subscribe_membership_updates(),
        )?;
        ensure(updates.drain().is_empty(), || {
            "a new subscriber was sent past updates".into()
        })?;
        ok(
            "report-peer-state(peer, suspect)",
            pair.b.report_peer_state(&peer, PeerState::Suspect),
        )?;
        let delivered = updates.drain();
        ensure(!delivered.is_empty(), || {
            "the report's update was not delivered to the late subscriber".into()
        })?;
        ensure_gap_free(&delivered, view.version + 1)
    },
};

/// `[sub-2]`
pub const DROPPED: Check = Check {
    name: "sub-2 dropping one subscription leaves the others served",
    run: |ctx| {
        let pair = ctx.pair()?;
        let peer = pair.connect()?;
        let dropped = ok("subscribe", pair.b.subscribe_membership_updates())?;
        let kept = ok("subscribe", pair.b.subscribe_membership_updates())?;
        drop(dropped);
        ok(
            "report-peer-state(peer, suspect)",
            pair.b.report_peer_state(&peer, PeerState::Suspect),
        )?;
        ensure(!kept.drain().is_empty(), || {
            "the remaining subscriber got no update".into()
        })?;
        ok(
            "report-peer-state(peer, dead)",
            pair.b.report_peer_state(&peer, PeerState::Dead),
        )?;
        ok(
            "get-members after the dropped subscriber was pruned",
            pair.b.get_members(),
        )
        .map(|_| ())
    },
};

/// `[sub-6]`
pub const ANY_PHASE: Check = Check {
    name: "sub-6 subscribing is allowed before join and after leave",
    run: |ctx| {
        let node = ctx.node("a")?;
        let early = ok("subscribe before join", node.subscribe_membership_updates())?;
        ok("join([])", node.join(&[]))?;
        ensure(!early.drain().is_empty(), || {
            "the early subscriber got no update for join".into()
        })?;
        ok("leave", node.leave())?;
        ok("subscribe after leave", node.subscribe_membership_updates()).map(|_| ())
    },
};

/// The subscriber handles the updates in `effects` went to.
fn recipients(effects: &[Effect]) -> Vec<u64> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Update { subscriber, .. } => Some(*subscriber),
            _ => None,
        })
        .collect()
}

fn subscribe(instance: &mut Instance, handle: u64) -> Result<(), Violation> {
    call_ok(
        &format!("subscribe({handle})"),
        instance.subscribe(0, handle).0,
    )
}

/// `[sub-3]`
pub const TWICE: Check = Check {
    name: "sub-3 subscribing a handle already subscribed: invalid-subscriber",
    run: |ctx| {
        let mut instance = ctx.instance("a")?;
        subscribe(&mut instance, 7)?;
        expect_call_error(
            "second subscribe(7)",
            instance.subscribe(0, 7).0,
            "invalid-subscriber",
        )
    },
};

/// `[sub-4]`
pub const UNKNOWN: Check = Check {
    name: "sub-4 unsubscribing a handle not subscribed: invalid-subscriber",
    run: |ctx| {
        let mut instance = ctx.instance("a")?;
        expect_call_error(
            "unsubscribe(9)",
            instance.unsubscribe(0, 9).0,
            "invalid-subscriber",
        )?;
        subscribe(&mut instance, 9)?;
        call_ok("unsubscribe(9)", instance.unsubscribe(0, 9).0)?;
        expect_call_error(
            "second unsubscribe(9)",
            instance.unsubscribe(0, 9).0,
            "invalid-subscriber",
        )
    },
};

/// `[sub-5]`
pub const UNSUBSCRIBED: Check = Check {
    name: "sub-5 after unsubscribe no update goes to that handle; a re-subscribe works",
    run: |ctx| {
        let mut instance = ctx.instance("a")?;
        subscribe(&mut instance, 7)?;
        subscribe(&mut instance, 8)?;
        call_ok("unsubscribe(7)", instance.unsubscribe(0, 7).0)?;
        let (result, effects) = instance.join(0, &[]);
        call_ok("join([])", result)?;
        let to = recipients(&effects);
        ensure(!to.contains(&7), || {
            format!("updates went to unsubscribed handle 7: recipients {to:?}")
        })?;
        ensure(to.contains(&8), || {
            format!("no update went to subscribed handle 8: recipients {to:?}")
        })?;
        subscribe(&mut instance, 7)?;
        let (result, effects) = instance.leave(0);
        call_ok("leave", result)?;
        let mut to = recipients(&effects);
        to.sort();
        ensure_eq("recipients of leave's update", to, vec![7, 8])
    },
};
