//! What every node's membership view holds, as its subscription reported
//! it, plus the transitions seen and the false verdicts counted.

use std::collections::BTreeSet;

use nodeplane_interface::PeerState;

/// One observed change of one member in one node's view.
///
/// A *state change* is a transition whose `from` is a state different
/// from `to` (a first appearance, `from == None`, and a new incarnation in
/// the same state are not state changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Virtual time, ms.
    pub at: u64,
    /// Whose view changed.
    pub observer: usize,
    /// The member concerned.
    pub subject: usize,
    /// State before (`None`: not a member before).
    pub from: Option<PeerState>,
    /// State after.
    pub to: PeerState,
    /// Incarnation after.
    pub incarnation: u64,
}

impl Transition {
    /// Whether the member's state changed (see [`Transition`]).
    pub fn is_state_change(&self) -> bool {
        self.from.is_some_and(|f| f != self.to)
    }
}

/// Index of a state in per-state counters.
pub fn state_index(state: PeerState) -> usize {
    usize::from(state.precedence())
}

/// One node's view of the simulated nodes.
#[derive(Clone, Debug)]
pub struct View {
    /// (state, incarnation) of each simulated node, by index.
    pub states: Vec<Option<(PeerState, u64)>>,
    /// Highest incarnation ever seen of each node (kept across restarts).
    pub max_incarnation: Vec<u64>,
    /// Members per state ([`state_index`]).
    pub counts: [u32; PeerState::ALL.len()],
}

impl View {
    /// An empty view of `n` nodes.
    pub fn new(n: usize) -> View {
        View {
            states: vec![None; n],
            max_incarnation: vec![0; n],
            counts: [0; PeerState::ALL.len()],
        }
    }

    /// Sets a member's state; returns the previous one.
    pub fn set(&mut self, subject: usize, state: PeerState, incarnation: u64) -> Option<PeerState> {
        let previous = self.states[subject].map(|(s, _)| s);
        if let Some(p) = previous {
            self.counts[state_index(p)] -= 1;
        }
        self.counts[state_index(state)] += 1;
        self.states[subject] = Some((state, incarnation));
        previous
    }

    /// Resizes to a world of `n` nodes (new nodes unknown, removed ones
    /// forgotten).
    pub fn resize(&mut self, n: usize) {
        for s in self.states.iter().skip(n).flatten() {
            self.counts[state_index(s.0)] -= 1;
        }
        self.states.resize(n, None);
        self.max_incarnation.resize(n, 0);
    }

    /// Forgets everything but the incarnation high-water marks.
    pub fn clear(&mut self) {
        self.states.iter_mut().for_each(|s| *s = None);
        self.counts = [0; PeerState::ALL.len()];
    }

    /// The state of a member, if known.
    pub fn state(&self, subject: usize) -> Option<PeerState> {
        self.states[subject].map(|(s, _)| s)
    }
}

/// Everything observed about views during a run.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    /// Every transition, in order.
    pub transitions: Vec<Transition>,
    /// (observer, subject) pairs where a live, non-excused subject was
    /// marked `dead` since the last reset.
    pub false_deaths: BTreeSet<(usize, usize)>,
    /// Likewise for `suspect`.
    pub false_suspicions: BTreeSet<(usize, usize)>,
    /// Subjects whose suspicion or death is expected (a mute or flapping
    /// node): not counted as false.
    pub excused: BTreeSet<usize>,
    /// Like `false_deaths`, over the whole run (never reset): every phase,
    /// restore and heal windows included.
    pub run_false_deaths: BTreeSet<(usize, usize)>,
    /// Transitions to `dead` of a live, non-excused subject over the whole
    /// run (a pair declared dead twice counts twice).
    pub run_false_death_events: u64,
}

impl Observations {
    /// Clears the false-verdict counters (the start of a measurement).
    pub fn reset_counters(&mut self) {
        self.false_deaths.clear();
        self.false_suspicions.clear();
    }
}

/// Per-node (alive, suspect, dead) counts at one instant; `None` for a
/// node that is not running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Virtual time, ms.
    pub at: u64,
    /// Counts per node.
    pub counts: Vec<Option<[u32; 3]>>,
}
