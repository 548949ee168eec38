//! Crash recovery: a rebuild of the component by the same process resumes
//! at the node's incarnation and writes nothing.

use nodeplane_interface::{ControlPlane, PeerState};

use super::Check;
use crate::ctx::{ensure, ensure_eq, member, ok, TestNode, Violation};

/// Entries of `node`'s own chain in its ledger store.
fn own_entries(node: &TestNode) -> usize {
    let n = node.lock();
    let id = n.config().node_id.clone();
    n.services()
        .ledger
        .entries()
        .iter()
        .filter(|e| e.author == id)
        .count()
}

/// `[host-5]`
pub const RESUME: Check = Check {
    name: "host-5 a rebuild from the ledger (crash recovery) keeps the incarnation and writes no entry",
    run: |ctx| {
        let pair = ctx.pair()?;
        pair.connect()?;
        let before = ok("get-members on b", pair.b.get_members())?;
        let incarnation = member(&before, "b")?.incarnation;
        let entries = own_entries(&pair.b);
        for round in 1..=3 {
            pair.b.lock().rebuild().map_err(|e| {
                Violation(format!(
                    "rebuild {round} of b from its ledger (as after a crash) failed: {e}"
                ))
            })?;
            let after = ok("get-members on b after the rebuild", pair.b.get_members())?;
            let me = member(&after, "b")?;
            ensure_eq(
                &format!("b's state after rebuild {round}"),
                me.state,
                PeerState::Alive,
            )?;
            ensure(me.incarnation == incarnation, || {
                format!(
                    "rebuild {round} raised b's incarnation from {incarnation} to {}: a crash recovery must resume at the incarnation already announced (lifecycle.started-as = resume); only a new process raises it",
                    me.incarnation
                )
            })?;
            let now = own_entries(&pair.b);
            ensure(now == entries, || {
                format!(
                    "rebuild {round} made b write {} ledger entries of its own: a resumed node rejoins without an entry",
                    now.saturating_sub(entries)
                )
            })?;
        }
        // A peer that knew b (a node plane peer does; the network-free
        // stub does not) still sees it alive at the same incarnation.
        let a_knew_b = ok("get-members on a", pair.a.get_members())?
            .member("b")
            .is_some();
        if !a_knew_b {
            return Ok(());
        }
        pair.run_until(|| {
            let view = ok("get-members on a", pair.a.get_members())?;
            Ok(view
                .member("b")
                .is_some_and(|m| m.state == PeerState::Alive && m.incarnation == incarnation))
        })
    },
};
