//! `report-peer-state`: evidence, never a verdict.

use nodeplane_interface::{ControlPlane, MembershipUpdate, PeerState, Subscription, UpdateCause};

use super::Check;
use crate::ctx::{ensure, ensure_eq, expect_error, member, ok, Ctx, Pair, Violation};

/// A connected pair, the peer `b` knows, and a subscription on `b` taken
/// after connecting.
struct Setup {
    pair: Pair,
    peer: String,
    updates: Subscription,
}

fn setup(ctx: &Ctx) -> Result<Setup, Violation> {
    let pair = ctx.pair()?;
    let peer = pair.connect()?;
    let updates = ok("subscribe on b", pair.b.subscribe_membership_updates())?;
    Ok(Setup {
        pair,
        peer,
        updates,
    })
}

impl Setup {
    /// Reports `state` about the peer; checks that the returned state is
    /// the one the view then lists, and returns it with the updates the
    /// report caused.
    fn report(&self, state: PeerState) -> Result<(PeerState, Vec<MembershipUpdate>), Violation> {
        let before = ok("get-members", self.pair.b.get_members())?;
        let after_state = ok(
            &format!("report-peer-state({}, {state})", self.peer),
            self.pair.b.report_peer_state(&self.peer, state),
        )?;
        let after = ok("get-members", self.pair.b.get_members())?;
        ensure_eq(
            &format!("the peer's state in the view after reporting {state}"),
            member(&after, &self.peer)?.state,
            after_state,
        )?;
        let updates = self.updates.drain();
        ensure_eq(
            &format!("view version after reporting {state} (before + updates delivered)"),
            after.version,
            before.version + updates.len() as u64,
        )?;
        Ok((after_state, updates))
    }
}

/// Fails unless `updates` is exactly one update about `peer` from `previous`
/// with `cause` and state `current`.
fn ensure_one_update(
    updates: &[MembershipUpdate],
    peer: &str,
    previous: PeerState,
    current: PeerState,
    cause: UpdateCause,
) -> Result<(), Violation> {
    let [update] = updates else {
        return Err(Violation(format!(
            "expected exactly one update ({cause:?} about {peer}), got {}: {updates:?}",
            updates.len()
        )));
    };
    ensure_eq("update peer", update.peer.as_str(), peer)?;
    ensure_eq("update previous state", update.previous, Some(previous))?;
    ensure_eq("update current state", update.current.state, current)?;
    ensure_eq("update cause", update.cause, cause)
}

/// Reports `reported` about an alive peer and fails unless the peer is
/// then suspect, with exactly one `suspected` update (`[report-4]`,
/// `[report-5]`: a report is evidence, never a verdict).
fn alive_becomes_suspect(ctx: &Ctx, reported: PeerState) -> Result<(), Violation> {
    let s = setup(ctx)?;
    let (state, updates) = s.report(reported)?;
    ensure_eq("returned state", state, PeerState::Suspect)?;
    ensure_one_update(
        &updates,
        &s.peer,
        PeerState::Alive,
        PeerState::Suspect,
        UpdateCause::Suspected,
    )
}

/// `[report-1]`
pub const ABOUT_SELF: Check = Check {
    name: "report-1 a report about the node itself: invalid-report",
    run: |ctx| {
        let node = ctx.joined("a")?;
        for state in [PeerState::Alive, PeerState::Suspect, PeerState::Dead] {
            expect_error(
                &format!("report-peer-state(self, {state})"),
                node.report_peer_state("a", state),
                "invalid-report",
            )?;
        }
        Ok(())
    },
};

/// `[report-2]`
pub const LEFT: Check = Check {
    name: "report-2 reporting left: invalid-report",
    run: |ctx| {
        let s = setup(ctx)?;
        expect_error(
            "report-peer-state(peer, left)",
            s.pair.b.report_peer_state(&s.peer, PeerState::Left),
            "invalid-report",
        )?;
        let view = ok("get-members", s.pair.b.get_members())?;
        ensure_eq(
            "the peer's state after the refused report",
            member(&view, &s.peer)?.state,
            PeerState::Alive,
        )
    },
};

/// `[report-3]`
pub const UNKNOWN_PEER: Check = Check {
    name: "report-3 a report about an unknown peer: unknown-peer naming it",
    run: |ctx| {
        let node = ctx.joined("a")?;
        let error = expect_error(
            "report-peer-state(nobody, suspect)",
            node.report_peer_state("nobody", PeerState::Suspect),
            "unknown-peer",
        )?;
        ensure(error.to_string().contains("nobody"), || {
            format!("unknown-peer must name the peer, got {error}")
        })
    },
};

/// `[report-4]`
pub const SUSPECT_ALIVE: Check = Check {
    name: "report-4 suspect about an alive peer makes it suspect at once, one update",
    run: |ctx| alive_becomes_suspect(ctx, PeerState::Suspect),
};

/// `[report-5]`
pub const DEAD_ALIVE: Check = Check {
    name: "report-5 dead about an alive peer makes it suspect, never dead",
    run: |ctx| alive_becomes_suspect(ctx, PeerState::Dead),
};

/// `[report-6]`
pub const ALIVE_ALIVE: Check = Check {
    name: "report-6 alive about an alive peer changes nothing",
    run: |ctx| {
        let s = setup(ctx)?;
        let (state, updates) = s.report(PeerState::Alive)?;
        ensure_eq("returned state", state, PeerState::Alive)?;
        ensure(updates.is_empty(), || {
            format!("an alive report about an alive peer emitted {updates:?}")
        })
    },
};

/// `[report-7]`
pub const SUSPECT_SUSPECT: Check = Check {
    name: "report-7 suspect about a suspect peer changes nothing",
    run: |ctx| {
        let s = setup(ctx)?;
        s.report(PeerState::Suspect)?;
        let (state, updates) = s.report(PeerState::Suspect)?;
        ensure_eq("returned state", state, PeerState::Suspect)?;
        ensure(updates.is_empty(), || {
            format!("a repeated suspect report emitted {updates:?}")
        })
    },
};

/// `[report-8]`
pub const DEAD_SUSPECT: Check = Check {
    name: "report-8 dead about a suspect peer: suspect or dead, never alive or left",
    run: |ctx| {
        let s = setup(ctx)?;
        s.report(PeerState::Suspect)?;
        let (state, updates) = s.report(PeerState::Dead)?;
        match state {
            PeerState::Suspect => ensure(updates.is_empty(), || {
                format!("the peer stayed suspect yet updates were emitted: {updates:?}")
            }),
            PeerState::Dead => ensure_one_update(
                &updates,
                &s.peer,
                PeerState::Suspect,
                PeerState::Dead,
                UpdateCause::ConfirmedDead,
            ),
            other => Err(Violation(format!(
                "dead about a suspect peer returned {other}"
            ))),
        }
    },
};

/// `[report-9]`
pub const NO_REVIVAL: Check = Check {
    name: "report-9 alive never revives a dead or left peer",
    run: |ctx| {
        let s = setup(ctx)?;
        s.report(PeerState::Suspect)?;
        let (state, _) = s.report(PeerState::Dead)?;
        if state == PeerState::Dead {
            let (state, updates) = s.report(PeerState::Alive)?;
            ensure_eq(
                "state after alive about a dead peer",
                state,
                PeerState::Dead,
            )?;
            return ensure(updates.is_empty(), || {
                format!("alive about a dead peer emitted {updates:?}")
            });
        }
        // Reports did not reach a verdict here (death needs a quorum): use a
        // peer that left instead, where the implementation shows it.
        let s = setup(ctx)?;
        ok("leave on a", s.pair.a.leave())?;
        let left = s.pair.run_until(|| {
            let view = ok("get-members on b", s.pair.b.get_members())?;
            Ok(member(&view, &s.peer)?.state == PeerState::Left)
        });
        if left.is_err() {
            // Neither a verdict nor a departure is observable through this
            // implementation's interface alone: nothing to check.
            return Ok(());
        }
        s.updates.drain();
        for reported in [PeerState::Alive, PeerState::Suspect, PeerState::Dead] {
            let (state, updates) = s.report(reported)?;
            ensure_eq(
                &format!("state after {reported} about a left peer"),
                state,
                PeerState::Left,
            )?;
            ensure(updates.is_empty(), || {
                format!("{reported} about a left peer emitted {updates:?}")
            })?;
        }
        Ok(())
    },
};
