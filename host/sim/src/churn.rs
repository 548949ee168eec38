//! The churn yardstick (issue 14, item 4): a cluster of N nodes under E
//! membership events drawn by the seed, measuring what the ledger and the
//! guests keep as history grows.
//!
//! **The events.** One event every [`CHURN_STEP_MIN_MS`]..=[`CHURN_STEP_MAX_MS`]
//! of virtual time (uniform, 10 s on average: a crash's verdict forms in
//! about 7 s at N = 64, so most verdicts form before the next event). The
//! live count L stays between [`min_live`] (three quarters of N, a clear
//! majority, so that the death quorum is always reachable) and N. Each
//! event removes a live node or adds one, one half each while L is
//! strictly between the bounds (removal only at N, addition only at the
//! floor):
//!
//! - removal: a **crash** (3 in 4; the node stops, its store is kept) or a
//!   graceful **leave** (1 in 4; the node leaves and is stopped at the next
//!   event, its identity retired for good);
//! - addition: a **restart** of a crashed node on its store, with a higher
//!   incarnation (a returning node; 3 in 4 when a crashed node is `dead`
//!   in every live node's view, so that no verdict about its old life is
//!   still forming), or the **join** of a new node under a new identity
//!   (otherwise).
//!
//! Node 0, the seed every node joins through, never leaves nor crashes.
//! Once the world holds [`MAX_WORLD_NODES`] identities, no new node joins
//! and no node leaves (crashes and restarts only).
//!
//! **The figures.** After every tenth of E (checkpoint `cpKK`, KK = 01..10)
//! and at the end: per live node, the ledger entries and their wire bytes
//! in its store and its guest linear memory (mean and max); the process's
//! resident memory; and over the run, the entries every event kind caused,
//! attributed by what node 0's store gained between that event and the
//! next (so an entry written late, after the next event, counts for that
//! one: overlapping events blur the split a little, not the totals).
//! Slopes per event come from the checkpoints (least squares). The end of
//! the run is checked like every scenario's (`Expect::Converge`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nodeplane_interface::PeerState;

use crate::ledger::wire_entry_size;
use crate::node::{node_address, node_id, node_metadata, NodeSpec};
use crate::rng::SimRng;
use crate::world::Sim;
use crate::SimError;

/// Shortest virtual time between two churn events.
pub const CHURN_STEP_MIN_MS: u64 = 5_000;
/// Longest virtual time between two churn events.
pub const CHURN_STEP_MAX_MS: u64 = 15_000;
/// Default number of events (`--events`).
pub const DEFAULT_EVENTS: usize = 1_000;
/// Most events one run may have (E = 1 000 000 is issue 14's target for
/// a bounded ledger; today's unbounded one would not fit, see
/// docs/scenarios.md).
pub const MAX_EVENTS: usize = 10_000_000;
/// Checkpoints over the run (one after every tenth of the events).
pub const CHECKPOINTS: usize = 10;
/// Most identities the world holds (initial nodes and joined ones); the
/// simulator's own bookkeeping is N × N.
pub const MAX_WORLD_NODES: usize = 4_096;

/// The kinds of churn event, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChurnEvent {
    /// A live node stops without leaving (its store is kept).
    Crash,
    /// A crashed node restarts on its store and rejoins.
    Restart,
    /// A live node leaves gracefully (and stops at the next event).
    Leave,
    /// A new node joins under a new identity.
    Join,
}

impl ChurnEvent {
    /// Every kind, in report order.
    pub const ALL: [ChurnEvent; 4] = [
        ChurnEvent::Crash,
        ChurnEvent::Restart,
        ChurnEvent::Leave,
        ChurnEvent::Join,
    ];

    /// The kind's name in figure names.
    pub fn name(self) -> &'static str {
        match self {
            ChurnEvent::Crash => "crash",
            ChurnEvent::Restart => "restart",
            ChurnEvent::Leave => "leave",
            ChurnEvent::Join => "join",
        }
    }
}

/// Fewest live nodes the churn keeps: three quarters of `n`, rounded up,
/// and at least a strict majority.
pub fn min_live(n: usize) -> usize {
    (n * 3).div_ceil(4).max(n / 2 + 1)
}

/// What the churn counts per event kind.
#[derive(Default)]
struct PerKind {
    /// Events of the kind.
    events: u64,
    /// Entries node 0's store gained after them, by entry kind.
    entries: BTreeMap<String, u64>,
    /// Their wire bytes, by entry kind.
    bytes: BTreeMap<String, u64>,
}

/// The churn's bookkeeping: who is down, who left, what node 0 has seen.
struct Churn {
    rng: SimRng,
    n: usize,
    /// Crashed nodes (may restart).
    down: Vec<usize>,
    /// Nodes that left and still run (stopped at the next event).
    leaving: Vec<usize>,
    /// Entries of node 0's store already attributed.
    seen: usize,
    per_kind: BTreeMap<ChurnEvent, PerKind>,
}

impl Churn {
    /// Attributes what node 0's store gained since the last call to `kind`.
    fn attribute(&mut self, sim: &Sim, kind: Option<ChurnEvent>) {
        let gained: Vec<(String, u64)> = sim.node(0).with_ledger(|l| {
            let entries = l.entries();
            (self.seen..entries.len())
                .filter_map(|k| entries.get(k))
                .map(|e| (e.kind.clone(), wire_entry_size(e)))
                .collect()
        });
        self.seen += gained.len();
        let Some(kind) = kind else { return };
        let slot = self.per_kind.entry(kind).or_default();
        for (entry_kind, bytes) in gained {
            *slot.entries.entry(entry_kind.clone()).or_default() += 1;
            *slot.bytes.entry(entry_kind).or_default() += bytes;
        }
    }

    /// Draws and performs one event; returns its kind.
    fn event(&mut self, sim: &mut Sim) -> Result<ChurnEvent, SimError> {
        // Nodes that left at the previous event stop now (their leave has
        // had a step to spread, as an agent exits after leaving).
        for i in std::mem::take(&mut self.leaving) {
            sim.crash(i);
        }
        let live: Vec<usize> = sim.live_nodes().into_iter().filter(|&i| i != 0).collect();
        let l = live.len() + 1;
        let full = sim.len() >= MAX_WORLD_NODES;
        let remove = if l <= min_live(self.n) {
            false
        } else if l >= self.n {
            true
        } else {
            self.rng.chance(0.5)
        };
        if remove {
            let Some(&i) = live.get(self.rng.below(live.len() as u64) as usize) else {
                return Err(SimError::Usage("churn: no live node to remove".into()));
            };
            if !full && self.rng.below(4) == 0 {
                sim.leave(i)?;
                self.leaving.push(i);
                Ok(ChurnEvent::Leave)
            } else {
                sim.crash(i);
                self.down.push(i);
                Ok(ChurnEvent::Crash)
            }
        } else {
            let restart = self.rng.below(4) != 0;
            // A node returns once every live node holds it `dead` (its
            // verdict formed); a full world restarts the one down longest.
            let judged: Vec<usize> = (0..self.down.len())
                .filter(|&k| {
                    self.down.get(k).is_some_and(|&i| {
                        sim.live_nodes()
                            .into_iter()
                            .all(|o| sim.state_of(o, i) == Some(PeerState::Dead))
                    })
                })
                .collect();
            let pick = if restart && !judged.is_empty() {
                judged
                    .get(self.rng.below(judged.len() as u64) as usize)
                    .copied()
            } else if full && !self.down.is_empty() {
                Some(0)
            } else {
                None
            };
            if let Some(k) = pick {
                let i = self.down.remove(k);
                sim.restart(i)?;
                Ok(ChurnEvent::Restart)
            } else {
                let i = sim.len();
                let spec = NodeSpec::new(node_id(i), node_address(i)).metadata(node_metadata(i));
                let i = sim.add_node(spec)?;
                sim.join(i)?;
                Ok(ChurnEvent::Join)
            }
        }
    }
}

/// What every live node holds now: (entries, store wire bytes, guest
/// linear memory) per live node, as (mean, max) each.
struct Holdings {
    live: usize,
    entries: (f64, f64),
    bytes: (f64, f64),
    guest: (f64, f64),
}

fn holdings(sim: &Sim) -> Holdings {
    let live = sim.live_nodes();
    let (mut entries, mut bytes, mut guest) = (Vec::new(), Vec::new(), Vec::new());
    for &i in &live {
        let (e, b) = sim.node(i).with_ledger(|l| {
            let entries = l.entries();
            (
                entries.len() as f64,
                entries.iter().map(wire_entry_size).sum::<u64>() as f64,
            )
        });
        entries.push(e);
        bytes.push(b);
        if let Some(h) = sim.node(i).handle() {
            guest.push(h.lock().guest_memory_bytes() as f64);
        }
    }
    let stat = |v: &[f64]| {
        let max = v.iter().copied().fold(0.0, f64::max);
        (v.iter().sum::<f64>() / v.len().max(1) as f64, max)
    };
    Holdings {
        live: live.len(),
        entries: stat(&entries),
        bytes: stat(&bytes),
        guest: stat(&guest),
    }
}

/// Least-squares slope of `y` over `x` (NaN with fewer than two points).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return f64::NAN;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx == 0.0 {
        f64::NAN
    } else {
        sxy / sxx
    }
}

/// Runs `events` churn events on a converged world; sets the churn's
/// figures with `set` (see the module documentation for the names).
pub(crate) fn run_events(
    sim: &mut Sim,
    events: usize,
    set: &mut dyn FnMut(&str, f64),
) -> Result<(), SimError> {
    let started = Instant::now();
    let mut churn = Churn {
        rng: sim.rng().fork(),
        n: sim.len(),
        down: Vec::new(),
        leaving: Vec::new(),
        seen: 0,
        per_kind: BTreeMap::new(),
    };
    churn.attribute(sim, None);
    let at_start = holdings(sim);
    set("start_entries_per_node_mean", at_start.entries.0);
    set("start_store_bytes_per_node_mean", at_start.bytes.0);
    set("start_guest_memory_per_node_mean_bytes", at_start.guest.0);
    let mut points_bytes = vec![(0.0, at_start.bytes.0)];
    let mut points_entries = vec![(0.0, at_start.entries.0)];
    let mut points_guest = vec![(0.0, at_start.guest.0)];
    let mut next_cp = 1;
    for done in 1..=events {
        let kind = churn.event(sim)?;
        churn.per_kind.entry(kind).or_default().events += 1;
        let step = churn
            .rng
            .range_inclusive(CHURN_STEP_MIN_MS, CHURN_STEP_MAX_MS);
        sim.run_for(Duration::from_millis(step));
        churn.attribute(sim, Some(kind));
        if done * CHECKPOINTS >= next_cp * events {
            let h = holdings(sim);
            let cp = format!("cp{next_cp:02}");
            set(&format!("{cp}_events"), done as f64);
            set(&format!("{cp}_live_nodes"), h.live as f64);
            set(&format!("{cp}_world_nodes"), sim.len() as f64);
            set(&format!("{cp}_entries_per_node_mean"), h.entries.0);
            set(&format!("{cp}_entries_per_node_max"), h.entries.1);
            set(&format!("{cp}_store_bytes_per_node_mean"), h.bytes.0);
            set(&format!("{cp}_store_bytes_per_node_max"), h.bytes.1);
            set(&format!("{cp}_guest_memory_per_node_mean_bytes"), h.guest.0);
            set(&format!("{cp}_guest_memory_per_node_max_bytes"), h.guest.1);
            set(
                &format!("{cp}_rss_bytes"),
                crate::bench::rss_bytes().map_or(f64::NAN, |b| b as f64),
            );
            set(&format!("{cp}_wall_s"), started.elapsed().as_secs_f64());
            tracing::info!(
                checkpoint = next_cp,
                events = done,
                virtual_s = sim.now_ms() / 1000,
                live = h.live,
                entries_per_node = h.entries.0,
                store_bytes_per_node = h.bytes.0,
                guest_memory_per_node = h.guest.0,
                wall_s = started.elapsed().as_secs_f64(),
                "churn checkpoint"
            );
            points_bytes.push((done as f64, h.bytes.0));
            points_entries.push((done as f64, h.entries.0));
            points_guest.push((done as f64, h.guest.0));
            next_cp += 1;
            crate::progress::stage(format!("churn: {done} of {events} events"), None);
        }
    }
    set("events", events as f64);
    set("store_bytes_per_node_per_event", slope(&points_bytes));
    set("entries_per_node_per_event", slope(&points_entries));
    set(
        "guest_memory_per_node_per_event_bytes",
        slope(&points_guest),
    );
    for kind in ChurnEvent::ALL {
        let Some(k) = churn.per_kind.get(&kind) else {
            set(&format!("events_{}", kind.name()), 0.0);
            continue;
        };
        let name = kind.name();
        let per = |x: u64| x as f64 / k.events.max(1) as f64;
        set(&format!("events_{name}"), k.events as f64);
        set(
            &format!("per_{name}_entries"),
            per(k.entries.values().sum()),
        );
        set(&format!("per_{name}_bytes"), per(k.bytes.values().sum()));
        for (entry_kind, &count) in &k.entries {
            let entry_kind = entry_kind.replace('-', "_");
            set(&format!("per_{name}_entries_{entry_kind}"), per(count));
        }
    }
    set("churn_virtual_s", sim.now_ms() as f64 / 1000.0);
    set("churn_wall_s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Entries and wire bytes a store gained, by entry kind.
type ByKind = BTreeMap<&'static str, (u64, u64)>;

/// Holds the survivors' store lengths at a crash, to count what each
/// gained by the verdict ([`DeathEntries::gained`]).
pub(crate) struct DeathEntries {
    before: Vec<(usize, usize)>,
}

impl DeathEntries {
    /// Notes the store length of every live node but `victim`.
    pub(crate) fn at_crash(sim: &Sim, victim: usize) -> DeathEntries {
        DeathEntries {
            before: sim
                .live_nodes()
                .into_iter()
                .filter(|&i| i != victim)
                .map(|i| (i, sim.node(i).with_ledger(|l| l.entries().len())))
                .collect(),
        }
    }

    /// What the fullest survivor's store gained since the crash: total
    /// entries and wire bytes, and by entry kind (`suspect`,
    /// `confirm_dead`, `suspect_held`, `other`), as figures
    /// `entries_per_death[_KIND][_bytes]`.
    pub(crate) fn gained(&self, sim: &Sim, set: &mut dyn FnMut(&str, f64)) {
        let mut best: Option<(usize, u64, ByKind)> = None;
        for &(i, from) in &self.before {
            let by_kind = sim.node(i).with_ledger(|l| {
                let entries = l.entries();
                let mut by_kind = ByKind::new();
                for e in (from..entries.len()).filter_map(|k| entries.get(k)) {
                    let kind = match e.kind.as_str() {
                        "suspect" => "suspect",
                        "confirm-dead" => "confirm_dead",
                        "suspect-held" => "suspect_held",
                        _ => "other",
                    };
                    let slot = by_kind.entry(kind).or_default();
                    slot.0 += 1;
                    slot.1 += wire_entry_size(e);
                }
                by_kind
            });
            let total: u64 = by_kind.values().map(|v| v.0).sum();
            if best.as_ref().is_none_or(|b| total > b.1) {
                best = Some((i, total, by_kind));
            }
        }
        let (survivor, _, by_kind) = best.unwrap_or_default();
        set("entries_per_death_survivor", survivor as f64);
        let (mut entries, mut bytes) = (0, 0);
        for kind in ["suspect", "confirm_dead", "suspect_held", "other"] {
            let (e, b) = by_kind.get(kind).copied().unwrap_or((0, 0));
            set(&format!("entries_per_death_{kind}"), e as f64);
            set(&format!("entries_per_death_{kind}_bytes"), b as f64);
            entries += e;
            bytes += b;
        }
        set("entries_per_death", entries as f64);
        set("entries_per_death_bytes", bytes as f64);
    }
}
