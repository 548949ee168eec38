//! What the world observes of its nodes: their views as their
//! subscriptions report them (with the update invariants checked on the
//! way), view-count samples, convergence and ledger agreement.

use std::collections::BTreeSet;

use nodeplane_interface::{MembershipUpdate, PeerState};

use crate::trace::TraceEvent;
use crate::views::{Sample, Transition};
use crate::world::Sim;

impl Sim {
    /// Whether every live node's view lists every live node as `alive`.
    pub fn converged(&self) -> bool {
        let live = self.live_nodes();
        let need = live.len() as u32;
        if live.iter().any(|&o| self.views[o].counts[0] < need) {
            return false;
        }
        live.iter().all(|&o| {
            live.iter()
                .all(|&s| self.views[o].state(s) == Some(PeerState::Alive))
        })
    }

    pub(crate) fn sample_until(&mut self, t: u64) {
        let Some(every) = self.sample_every_ms else {
            return;
        };
        while self.next_sample <= t {
            let counts = (0..self.nodes.len())
                .map(|i| {
                    self.nodes[i].is_running().then(|| {
                        let c = self.views[i].counts;
                        [c[0], c[1], c[2]]
                    })
                })
                .collect();
            self.samples.push(Sample {
                at: self.next_sample,
                counts,
            });
            self.next_sample += every;
        }
    }

    pub(crate) fn observe(&mut self, observer: usize, update: MembershipUpdate) {
        let Some(&subject) = self.by_id.get(&update.peer) else {
            return;
        };
        let state = update.current.state;
        let incarnation = update.current.incarnation;
        self.trace.record(
            self.now,
            TraceEvent::Update {
                observer,
                // Moved: the update is not read after this.
                subject: update.peer,
                state: state.as_str(),
                incarnation,
            },
            &[],
        );
        if state == PeerState::Left && !self.nodes[subject].left {
            self.violation(format!(
                "n{observer} shows n{subject} left, but n{subject} never called leave"
            ));
        }
        let high = self.views[observer].max_incarnation(subject);
        if incarnation < high {
            self.violation(format!(
                "n{observer} shows n{subject} at incarnation {incarnation}, below {high} seen before"
            ));
        }
        self.views[observer].set_max_incarnation(subject, high.max(incarnation));
        let from = self.views[observer].set(subject, state, incarnation);
        if from.is_some() || state != PeerState::Alive {
            self.observations.transitions.push(Transition {
                at: self.now,
                observer,
                subject,
                from,
                to: state,
                incarnation,
            });
        }
        if observer != subject
            && self.is_live(subject)
            && !self.observations.excused.contains(&subject)
        {
            match state {
                PeerState::Dead => {
                    self.observations.false_deaths.insert((observer, subject));
                    self.observations
                        .run_false_deaths
                        .insert((observer, subject));
                    self.observations.run_false_death_events += 1;
                }
                PeerState::Suspect => {
                    self.observations
                        .false_suspicions
                        .insert((observer, subject));
                }
                _ => {}
            }
        }
    }

    /// Frontier digests of the live nodes' stores, by node.
    pub fn ledger_digests(&self) -> Vec<(usize, [u8; 32])> {
        self.live_nodes()
            .into_iter()
            .map(|i| {
                (
                    i,
                    self.nodes[i].with_ledger(|l| nodeplane_entry::digest_of(l.entries())),
                )
            })
            .collect()
    }

    /// Whether every live node's store has the same frontier digest.
    pub fn ledgers_agree(&self) -> bool {
        let digests: BTreeSet<[u8; 32]> =
            self.ledger_digests().into_iter().map(|(_, d)| d).collect();
        digests.len() <= 1
    }
}
