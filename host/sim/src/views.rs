//! What every node's membership view holds, as its subscription reported
//! it, plus the transitions seen and the false verdicts counted.

use std::collections::{BTreeMap, BTreeSet};

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

/// One node's view of the simulated nodes, packed: one byte of state and
/// the incarnation high-water mark (8 bytes) per node, the incarnation of
/// the state kept apart only where it is below the mark (after a
/// violation, or a restart that rebuilt an older view). N nodes' views are
/// N² pairs, so the pair is what counts.
#[derive(Clone, Debug)]
pub struct View {
    /// State of each simulated node, by index: 0 when not a member, else
    /// 1 + its position in [`PeerState::ALL`].
    states: Vec<u8>,
    /// Highest incarnation ever seen of each node (kept across restarts).
    high: Vec<u64>,
    /// The incarnation of a known state where it differs from `high`.
    lower: BTreeMap<usize, u64>,
    /// Members per state ([`state_index`]).
    pub counts: [u32; PeerState::ALL.len()],
}

fn code(state: PeerState) -> u8 {
    PeerState::ALL
        .iter()
        .position(|s| *s == state)
        .map_or(0, |i| (i as u8).saturating_add(1))
}

fn decode(code: u8) -> Option<PeerState> {
    usize::from(code)
        .checked_sub(1)
        .and_then(|i| PeerState::ALL.get(i).copied())
}

impl View {
    /// An empty view of `n` nodes.
    pub fn new(n: usize) -> View {
        View {
            states: vec![0; n],
            high: vec![0; n],
            lower: BTreeMap::new(),
            counts: [0; PeerState::ALL.len()],
        }
    }

    /// Sets a member's state; returns the previous one.
    pub fn set(&mut self, subject: usize, state: PeerState, incarnation: u64) -> Option<PeerState> {
        let previous = decode(self.states[subject]);
        if let Some(p) = previous {
            self.counts[state_index(p)] -= 1;
        }
        self.counts[state_index(state)] += 1;
        self.states[subject] = code(state);
        if incarnation == self.high[subject] {
            self.lower.remove(&subject);
        } else {
            self.lower.insert(subject, incarnation);
        }
        previous
    }

    /// Sets the incarnation high-water mark of `subject` (the incarnation
    /// of its state is unchanged).
    pub fn set_max_incarnation(&mut self, subject: usize, high: u64) {
        let old = self.high[subject];
        if old == high {
            return;
        }
        if self.states[subject] != 0 {
            self.lower.entry(subject).or_insert(old);
        }
        self.high[subject] = high;
        if self.lower.get(&subject) == Some(&high) {
            self.lower.remove(&subject);
        }
    }

    /// Highest incarnation ever seen of `subject` (kept across restarts).
    pub fn max_incarnation(&self, subject: usize) -> u64 {
        self.high[subject]
    }

    /// Resizes to a world of `n` nodes (new nodes unknown, removed ones
    /// forgotten).
    pub fn resize(&mut self, n: usize) {
        for s in self.states.iter().skip(n).filter_map(|c| decode(*c)) {
            self.counts[state_index(s)] -= 1;
        }
        self.states.resize(n, 0);
        self.high.resize(n, 0);
        self.lower.retain(|&s, _| s < n);
    }

    /// Gives back capacity beyond the world's size (views grow one node at
    /// a time while a world is built).
    pub fn shrink_to_fit(&mut self) {
        self.states.shrink_to_fit();
        self.high.shrink_to_fit();
    }

    /// Forgets everything but the incarnation high-water marks.
    pub fn clear(&mut self) {
        self.states.iter_mut().for_each(|s| *s = 0);
        self.lower.clear();
        self.counts = [0; PeerState::ALL.len()];
    }

    /// The state of a member, if known.
    pub fn state(&self, subject: usize) -> Option<PeerState> {
        decode(self.states[subject])
    }

    /// The incarnation of a member's state, if known.
    pub fn incarnation(&self, subject: usize) -> Option<u64> {
        self.state(subject)?;
        Some(
            self.lower
                .get(&subject)
                .copied()
                .unwrap_or(self.high[subject]),
        )
    }
}

/// Everything observed about views during a run.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    /// Every transition, in order, except a first appearance as `alive`
    /// (N² of them at bootstrap; no figure counts them: they are not
    /// state changes, nor deaths).
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
