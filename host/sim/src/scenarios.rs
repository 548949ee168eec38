//! The membership scenarios S1–S9 of `docs/scenarios.md`, each a short
//! story over a [`Sim`] that returns named figures (snake_case keys), and
//! the churn yardstick ([`Scenario::Churn`], [`crate::churn`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use nodeplane_interface::PeerState;
use nodeplane_runtime::MemoryLedger;

use crate::component::ComponentChoice;
use crate::ledger::{fill_notes, ChainWriter};
use crate::views::Sample;
use crate::world::{Expect, Sim};
use crate::SimError;

/// Longest wait for the initial convergence of a cluster.
pub const BOOT_DEADLINE_S: u64 = 120;
/// Longest wait for a detection, a re-convergence or a leave to spread.
pub const SETTLE_DEADLINE_S: u64 = 120;
/// S1: steady-state measurement window after convergence.
pub const S1_STEADY_S: u64 = 60;
/// S3: lossy window after convergence.
pub const S3_LOSSY_S: u64 = 600;
/// S4: duration of the split.
pub const S4_SPLIT_S: u64 = 60;
/// S5: how long the restarted node stays down.
pub const S5_DOWN_S: u64 = 30;
/// S8a: duration of the non-transitive pair blocks.
pub const S8A_BLOCK_S: u64 = 300;
/// S8a: fraction of node pairs blocked.
pub const S8A_PAIR_FRACTION: f64 = 0.10;
/// S8b: how long the node is mute.
pub const S8B_MUTE_S: u64 = 120;
/// S8c: how long the node flaps.
pub const S8C_FLAP_S: u64 = 120;
/// S8c: time between two link flips of the flapping node.
pub const S8C_FLIP_MS: u64 = 2_000;
/// S6: step of the loop waiting for two ledgers to match (fine-grained, so
/// few probe bytes are counted after the match).
pub const S6_STEP_MS: u64 = 5;
/// S6: longest reconciliation waited for.
pub const S6_DEADLINE_S: u64 = 600;
/// S6: most authors (the documented grid's largest is 1 024).
pub const S6_MAX_AUTHORS: usize = 65_536;
/// S6: most entries in the shared history or on each side (the documented
/// grid's largest is 100 000; 10× that still fits in memory).
pub const S6_MAX_ENTRIES: usize = 1_000_000;
/// Default node count of the scenarios that fix N = 64.
pub const DEFAULT_NODES: usize = 64;
/// S3: lossless window measured before the lossy one, the base of
/// `traffic_ratio` (as long as S1's steady window).
pub const S3_LOSSLESS_S: u64 = 60;
/// S9: longest wait for every survivor to mark every crashed node `dead`.
/// A half of N can only die by the time-based rule (docs/design.md), which
/// waits `SUSPICION_LAPSE_MS` (90 s) of held suspicion first: 300 s is
/// three times that.
pub const S9_DEADLINE_S: u64 = 300;
/// Fewest nodes a scenario runs with (a cluster of one has no peer).
pub const MIN_NODES: usize = 2;
/// Most nodes a scenario runs with: the largest N the scale figures are
/// measured at (issue 14), so that a typo (`--nodes 100000`) is an error
/// rather than hours of memory growth.
pub const MAX_NODES: usize = 10_000;

/// One of the scenarios S1–S9, or the churn yardstick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// Bootstrap.
    S1,
    /// Crash.
    S2,
    /// Lossy network.
    S3,
    /// Partition and heal.
    S4,
    /// Restart.
    S5,
    /// Divergent ledgers.
    S6,
    /// Graceful leave.
    S7,
    /// Partial and one-way partitions.
    S8,
    /// Correlated failure.
    S9,
    /// Membership churn over many events ([`crate::churn`]); not one of
    /// the documented S1–S9, so not in [`Scenario::ALL`].
    Churn,
}

impl Scenario {
    /// Every scenario S1–S9, in order (the churn yardstick apart).
    pub const ALL: [Scenario; 9] = [
        Scenario::S1,
        Scenario::S2,
        Scenario::S3,
        Scenario::S4,
        Scenario::S5,
        Scenario::S6,
        Scenario::S7,
        Scenario::S8,
        Scenario::S9,
    ];

    /// The scenario's short name.
    pub fn title(self) -> &'static str {
        match self {
            Scenario::S1 => "bootstrap",
            Scenario::S2 => "crash",
            Scenario::S3 => "lossy network",
            Scenario::S4 => "partition and heal",
            Scenario::S5 => "restart",
            Scenario::S6 => "divergent ledgers",
            Scenario::S7 => "graceful leave",
            Scenario::S8 => "partial and one-way partitions",
            Scenario::S9 => "correlated failure",
            Scenario::Churn => "membership churn",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scenario::Churn => write!(f, "churn"),
            _ => write!(f, "{self:?}"),
        }
    }
}

impl FromStr for Scenario {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .chain([Scenario::Churn])
            .find(|x| x.to_string().eq_ignore_ascii_case(s))
            .ok_or_else(|| SimError::Usage(format!("unknown scenario {s:?} (S1..S9, churn)")))
    }
}

/// S6 parameters: shared history, entries each side lacks, authors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S6Params {
    /// Shared history H.
    pub history: usize,
    /// Entries each side has that the other lacks, d.
    pub divergent: usize,
    /// Authors A.
    pub authors: usize,
}

impl Default for S6Params {
    fn default() -> Self {
        S6Params {
            history: 1_000,
            divergent: 100,
            authors: 64,
        }
    }
}

/// How to run a scenario.
#[derive(Clone, Debug)]
pub struct ScenarioParams {
    /// Node count (`None`: the scenario's default).
    pub nodes: Option<usize>,
    /// Loss probability (`None`: the scenario's default; S3 defaults to 10 %).
    pub loss: Option<f64>,
    /// The seed.
    pub seed: u64,
    /// The component.
    pub component: ComponentChoice,
    /// Factor on the long phases (S1 steady window, S3 600 s, S4 split,
    /// S5 down time, S8 windows); 1.0 is the documented scenario. Tests use
    /// less to stay fast.
    pub time_scale: f64,
    /// Record view counts every this many ms (for the SVG).
    pub sample_every_ms: Option<u64>,
    /// S6 parameters.
    pub s6: S6Params,
    /// Hostile nodes sending random and crafted messages throughout
    /// ([`crate::hostile`]); 0 in the documented scenarios.
    pub hostiles: usize,
    /// Each node's uplink bandwidth, bits per second (`None`: the
    /// default, [`crate::network::DEFAULT_BANDWIDTH_BPS`]).
    pub bandwidth_bps: Option<u64>,
    /// S4: size of the first side of the split (`None`: half).
    pub split: Option<usize>,
    /// S9: nodes that crash at once (`None`: a third of N).
    pub crash: Option<usize>,
    /// Churn: membership events (`None`: [`crate::churn::DEFAULT_EVENTS`]).
    pub events: Option<usize>,
    /// The checkpoint trigger `K` through the node plane's test knob
    /// (`None`: the default, `max(1 024, 2 × voters)`).
    pub checkpoint_min_tail: Option<u64>,
}

impl Default for ScenarioParams {
    fn default() -> Self {
        ScenarioParams {
            nodes: None,
            loss: None,
            seed: 1,
            component: ComponentChoice::default(),
            time_scale: 1.0,
            sample_every_ms: None,
            s6: S6Params::default(),
            hostiles: 0,
            bandwidth_bps: None,
            split: None,
            crash: None,
            events: None,
            checkpoint_min_tail: None,
        }
    }
}

impl ScenarioParams {
    /// Checks every setting against the scenario; the error names the
    /// setting (as its `nodeplane sim` flag) and the range it must be in.
    pub fn validate(&self, scenario: Scenario) -> Result<(), SimError> {
        let bad = |what: String| Err(SimError::Usage(what));
        let n = self.nodes.unwrap_or(DEFAULT_NODES);
        if scenario != Scenario::S6 && !(MIN_NODES..=MAX_NODES).contains(&n) {
            return bad(format!(
                "--nodes {n}: must be between {MIN_NODES} and {MAX_NODES}"
            ));
        }
        if let Some(p) = self.loss {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!(
                    "--loss {p}: must be a probability between 0 and 1 (0.1 is 10 %)"
                ));
            }
        }
        if !(self.time_scale.is_finite() && self.time_scale > 0.0 && self.time_scale <= 100.0) {
            return bad(format!(
                "--time-scale {}: must be above 0 and at most 100",
                self.time_scale
            ));
        }
        if self.bandwidth_bps == Some(0) {
            return bad("--bandwidth 0: must be above 0 (Mbit/s)".into());
        }
        if let Some(k) = self.checkpoint_min_tail {
            let (lo, hi) = nodeplane_core::config::CHECKPOINT_MIN_TAIL_RANGE;
            if !(lo..=hi).contains(&k) {
                return bad(format!(
                    "--checkpoint-min-tail {k}: must be between {lo} and {hi}"
                ));
            }
        }
        if self.hostiles > n {
            return bad(format!(
                "--hostile {}: at most as many as --nodes ({n})",
                self.hostiles
            ));
        }
        for (flag, value, only) in [
            ("--split", self.split, Scenario::S4),
            ("--crash", self.crash, Scenario::S9),
        ] {
            let Some(k) = value else { continue };
            if scenario != only {
                return bad(format!("{flag} {k}: only for {only}"));
            }
            if k == 0 || k >= n {
                return bad(format!(
                    "{flag} {k}: must be between 1 and --nodes - 1 ({})",
                    n.saturating_sub(1)
                ));
            }
        }
        if let Some(e) = self.events {
            if scenario != Scenario::Churn {
                return bad(format!("--events {e}: only for churn"));
            }
            if !(1..=crate::churn::MAX_EVENTS).contains(&e) {
                return bad(format!(
                    "--events {e}: must be between 1 and {}",
                    crate::churn::MAX_EVENTS
                ));
            }
        }
        if scenario == Scenario::Churn && self.hostiles > 0 {
            return bad("--hostile: not with churn".into());
        }
        if scenario == Scenario::S6 {
            let s6 = self.s6;
            if !(2..=S6_MAX_AUTHORS).contains(&s6.authors) {
                return bad(format!(
                    "--authors {}: must be between 2 and {S6_MAX_AUTHORS}",
                    s6.authors
                ));
            }
            if s6.history > S6_MAX_ENTRIES || s6.divergent > S6_MAX_ENTRIES {
                return bad(format!(
                    "--history {} / --divergent {}: each at most {S6_MAX_ENTRIES}",
                    s6.history, s6.divergent
                ));
            }
            if s6.divergent == 0 {
                return bad("--divergent 0: must be at least 1".into());
            }
        }
        Ok(())
    }

    fn scaled(&self, secs: u64) -> Duration {
        Duration::from_millis(((secs * 1000) as f64 * self.time_scale).max(1000.0) as u64)
    }
}

/// The outcome of one scenario run with one seed.
#[derive(Clone, Debug)]
pub struct ScenarioRun {
    /// Which scenario.
    pub scenario: Scenario,
    /// The seed.
    pub seed: u64,
    /// Node count.
    pub nodes: usize,
    /// Named figures (NaN when not reached).
    pub figures: BTreeMap<String, f64>,
    /// View-count samples, if asked for.
    pub samples: Vec<Sample>,
    /// Hash of the run's event trace.
    pub trace_hash: String,
    /// The invariant violation, if any (with seed and trace excerpt).
    pub violation: Option<String>,
}

/// Figures under construction.
#[derive(Default)]
struct Figures(BTreeMap<String, f64>);

impl Figures {
    fn set(&mut self, name: &str, value: f64) {
        self.0.insert(name.to_string(), value);
    }
    fn secs(&mut self, name: &str, d: Option<Duration>) {
        self.set(name, d.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN));
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Runs `scenario` once.
pub fn run(scenario: Scenario, params: &ScenarioParams) -> Result<ScenarioRun, SimError> {
    params.validate(scenario)?;
    if scenario == Scenario::S6 {
        crate::progress::stage(format!("{scenario} seed {}", params.seed), None);
        return run_s6(params);
    }
    let n = params.nodes.unwrap_or(DEFAULT_NODES);
    crate::progress::stage(format!("{scenario} seed {} · N = {n}", params.seed), None);
    let mut builder = Sim::builder()
        .nodes(n)
        .seed(params.seed)
        .component(params.component.clone())
        .checkpoint_min_tail(params.checkpoint_min_tail);
    if let Some(bps) = params.bandwidth_bps {
        builder = builder.bandwidth(bps);
    }
    if scenario != Scenario::S3 {
        builder = builder.loss(params.loss.unwrap_or(0.0));
    }
    if let Some(ms) = params.sample_every_ms {
        builder = builder.sample_every_ms(ms);
    }
    let mut sim = builder.hostile(params.hostiles).build()?;
    let mut f = Figures::default();
    let boot = sim.run_until_converged(secs(BOOT_DEADLINE_S));
    f.secs("time_to_converge_s", boot);
    sim.observations.reset_counters();
    match scenario {
        Scenario::S1 => s1(&mut sim, params, &mut f),
        Scenario::S2 => s2(&mut sim, &mut f),
        Scenario::S3 => s3(&mut sim, params, &mut f),
        Scenario::S4 => s4(&mut sim, params, &mut f),
        Scenario::S5 => s5(&mut sim, params, &mut f)?,
        Scenario::S7 => s7(&mut sim, &mut f)?,
        Scenario::S8 => s8(&mut sim, params, &mut f),
        Scenario::S9 => s9(&mut sim, params, &mut f),
        Scenario::Churn => {
            let events = params.events.unwrap_or(crate::churn::DEFAULT_EVENTS);
            crate::churn::run_events(&mut sim, events, &mut |k, v| f.set(k, v))?;
            false_verdicts(&sim, &mut f, "");
        }
        Scenario::S6 => unreachable!("handled above"),
    }
    run_figures(&sim, &mut f);
    let expect = if sim.component().is_nodeplane() {
        Expect::Converge
    } else {
        Expect::Safety
    };
    let violation = sim.check(expect).err().map(|e| e.to_string());
    health_figures(&sim, &mut f);
    Ok(ScenarioRun {
        scenario,
        seed: params.seed,
        nodes: n,
        figures: f.0,
        samples: sim.samples().to_vec(),
        trace_hash: sim.trace_hash(),
        violation,
    })
}

/// Figures every run reports, all expected 0 but the hostile traffic:
/// `crashes` (component crashes, every node and life), `call_errors`
/// (calls that returned an error the run did not provoke), and with
/// hostile nodes `hostile_messages`, `hostile_rejected` (refused as
/// `bad-message`) and `hostile_bytes_in_per_out` (bytes honest nodes sent
/// the hostile addresses per byte those sent); in runs that agreed a
/// checkpoint, `checkpoints_agreed` (the latest number),
/// `checkpoint_lagging_nodes` (live nodes not on it at the end) and
/// `checkpoint_view_differs` (agreements whose G differed from the view).
fn health_figures(sim: &Sim, f: &mut Figures) {
    f.set("crashes", sim.crash_count() as f64);
    f.set("call_errors", sim.call_error_count() as f64);
    // Only in runs that agreed one (a run below the trigger reports as
    // before): the latest checkpoint number any node agreed.
    if let Some((&n, _)) = sim.checkpoints().by_n.last_key_value() {
        f.set("checkpoints_agreed", n as f64);
        f.set(
            "checkpoint_lagging_nodes",
            sim.checkpoints().lagging.len() as f64,
        );
        f.set(
            "checkpoint_view_differs",
            sim.checkpoints().view_differs.len() as f64,
        );
    }
    if !sim.hostiles().is_empty() {
        let (mut sent, mut rejected, mut bytes_out, mut bytes_in) = (0, 0, 0, 0);
        for h in sim.hostiles() {
            sent += h.stats.sent_messages;
            rejected += h.stats.rejected;
            bytes_out += h.stats.sent_bytes;
            bytes_in += h.stats.received_bytes;
        }
        f.set("hostile_messages", sent as f64);
        f.set("hostile_rejected", rejected as f64);
        f.set(
            "hostile_bytes_in_per_out",
            bytes_in as f64 / bytes_out.max(1) as f64,
        );
    }
}

/// Figures over the whole run, every phase included (boot, faults,
/// restore and heal windows): `run_false_deaths` ((observer, subject)
/// pairs where a live subject not excused at the time was marked `dead`),
/// `run_false_death_events` (such transitions, repeats counted),
/// `run_state_changes` (every state change any node's view made, see
/// [`crate::views::Transition`]), and the transport's `streams` and
/// `streams_failed`.
fn run_figures(sim: &Sim, f: &mut Figures) {
    let o = &sim.observations;
    f.set("run_false_deaths", o.run_false_deaths.len() as f64);
    f.set("run_false_death_events", o.run_false_death_events as f64);
    f.set(
        "run_state_changes",
        o.transitions.iter().filter(|t| t.is_state_change()).count() as f64,
    );
    f.set("streams", sim.net_stats().streams as f64);
    f.set("streams_failed", sim.net_stats().streams_failed as f64);
}

/// Messages and bytes per live node per second over `window`.
fn traffic(sim: &mut Sim, window: Duration, f: &mut Figures) {
    let (m0, b0) = sim.sent_totals();
    sim.run_for(window);
    let (m1, b1) = sim.sent_totals();
    let node_s = sim.live_nodes().len() as f64 * window.as_secs_f64();
    f.set("msgs_per_node_s", (m1 - m0) as f64 / node_s);
    f.set("bytes_per_node_s", (b1 - b0) as f64 / node_s);
}

fn false_verdicts(sim: &Sim, f: &mut Figures, prefix: &str) {
    f.set(
        &format!("{prefix}false_deaths"),
        sim.observations.false_deaths.len() as f64,
    );
    f.set(
        &format!("{prefix}false_suspicions"),
        sim.observations.false_suspicions.len() as f64,
    );
}

/// A node other than the seed node 0, chosen by the seed.
fn victim(sim: &mut Sim) -> usize {
    let n = sim.len() as u64;
    1 + sim.rng().below(n - 1) as usize
}

fn all_others_see(sim: &Sim, subject: usize, state: PeerState) -> bool {
    sim.live_nodes()
        .into_iter()
        .filter(|&o| o != subject)
        .all(|o| sim.state_of(o, subject) == Some(state))
}

fn any_other_sees(sim: &Sim, subject: usize, state: PeerState) -> bool {
    sim.live_nodes()
        .into_iter()
        .filter(|&o| o != subject)
        .any(|o| sim.state_of(o, subject) == Some(state))
}

fn s1(sim: &mut Sim, p: &ScenarioParams, f: &mut Figures) {
    traffic(sim, p.scaled(S1_STEADY_S), f);
    false_verdicts(sim, f, "");
    // Over the whole run, bootstrap included: the seed node ships the
    // join entries of everyone.
    let (peak, node) = sim.peak_bytes_per_s();
    f.set("peak_node_bytes_per_s", peak as f64);
    f.set("peak_node", node as f64);
}

fn s2(sim: &mut Sim, f: &mut Figures) {
    let v = victim(sim);
    let death = crate::churn::DeathEntries::at_crash(sim, v);
    sim.crash(v);
    let first = sim.run_until_true(secs(SETTLE_DEADLINE_S), |s| {
        any_other_sees(s, v, PeerState::Dead)
    });
    f.secs("first_dead_s", first);
    let all = sim.run_until_true(secs(SETTLE_DEADLINE_S), |s| {
        all_others_see(s, v, PeerState::Dead)
    });
    f.secs("all_dead_s", all.zip(first).map(|(a, b)| a + b));
    // What the crash cost the ledger, by the verdict everywhere.
    death.gained(sim, &mut |k, v| f.set(k, v));
    false_verdicts(sim, f, "");
}

fn s3(sim: &mut Sim, p: &ScenarioParams, f: &mut Figures) {
    let loss = p.loss.unwrap_or(0.10);
    f.set("loss", loss);
    let mut base = Figures::default();
    traffic(sim, p.scaled(S3_LOSSLESS_S), &mut base);
    let base_bytes = base.0.get("bytes_per_node_s").copied().unwrap_or(f64::NAN);
    f.set("lossless_bytes_per_node_s", base_bytes);
    sim.observations.reset_counters();
    sim.set_loss(loss);
    traffic(sim, p.scaled(S3_LOSSY_S), f);
    let lossy = f.0.get("bytes_per_node_s").copied().unwrap_or(f64::NAN);
    f.set("traffic_ratio", lossy / base_bytes);
    false_verdicts(sim, f, "");
    sim.set_loss(0.0);
}

fn s4(sim: &mut Sim, p: &ScenarioParams, f: &mut Figures) {
    let n = sim.len();
    let k = p.split.unwrap_or(n / 2);
    let a: Vec<usize> = (0..k).collect();
    let b: Vec<usize> = (k..n).collect();
    f.set("split_a", a.len() as f64);
    f.set("split_b", b.len() as f64);
    sim.partition(&a, &b);
    let window = p.scaled(S4_SPLIT_S);
    // An uneven split: how long until every node of the larger side
    // marks every node of the smaller one `dead` (within the split).
    let (big, small) = if a.len() >= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let majority_done = if big.len() > small.len() {
        let (big, small) = (big.clone(), small.clone());
        let t = sim.run_until_true(window, |s| {
            big.iter().all(|&o| {
                small
                    .iter()
                    .all(|&x| s.state_of(o, x) == Some(PeerState::Dead))
            })
        });
        f.secs("majority_marks_minority_dead_s", t);
        t.unwrap_or(window)
    } else {
        Duration::ZERO
    };
    sim.run_for(window.saturating_sub(majority_done));
    // What each side believes of the other at the end of the split.
    let (mut dead, mut suspect, mut alive, mut pairs) = (0u64, 0u64, 0u64, 0u64);
    let (mut minority_dead, mut minority_pairs) = (0u64, 0u64);
    for (side, other) in [(&a, &b), (&b, &a)] {
        for &o in side.iter() {
            for &s in other.iter() {
                pairs += 1;
                let state = sim.state_of(o, s);
                if side.len() <= other.len() && side.len() < n - side.len() {
                    minority_pairs += 1;
                    if state == Some(PeerState::Dead) {
                        minority_dead += 1;
                    }
                }
                match state {
                    Some(PeerState::Dead) => dead += 1,
                    Some(PeerState::Suspect) => suspect += 1,
                    Some(PeerState::Alive) => alive += 1,
                    _ => {}
                }
            }
        }
    }
    f.set("split_cross_dead_fraction", dead as f64 / pairs as f64);
    f.set(
        "split_cross_suspect_fraction",
        suspect as f64 / pairs as f64,
    );
    f.set("split_cross_alive_fraction", alive as f64 / pairs as f64);
    if minority_pairs > 0 {
        // The minority must never declare the majority dead.
        f.set("split_minority_declared_dead", minority_dead as f64);
    }
    let within = sim
        .observations
        .false_deaths
        .iter()
        .filter(|(o, s)| (*o < k) == (*s < k))
        .count();
    f.set("split_false_deaths_within_side", within as f64);
    sim.heal();
    sim.observations.reset_counters();
    let back = sim.run_until_converged(secs(SETTLE_DEADLINE_S));
    f.secs("time_to_reconverge_s", back);
    let ledgers = sim.run_until_true(secs(SETTLE_DEADLINE_S), Sim::ledgers_agree);
    f.secs(
        "ledgers_identical_after_s",
        back.zip(ledgers).map(|(a, b)| a + b),
    );
    f.set(
        "ledgers_identical",
        if ledgers.is_some() { 1.0 } else { 0.0 },
    );
    // Deaths declared after the heal (none may be).
    f.set(
        "heal_false_deaths",
        sim.observations.false_deaths.len() as f64,
    );
}

fn s5(sim: &mut Sim, p: &ScenarioParams, f: &mut Figures) -> Result<(), SimError> {
    let v = victim(sim);
    f.set(
        "incarnation_before",
        sim.incarnation_of(v, v).unwrap_or(0) as f64,
    );
    sim.crash(v);
    sim.run_for(p.scaled(S5_DOWN_S));
    f.set(
        "others_seeing_dead_at_restart",
        sim.live_nodes()
            .iter()
            .filter(|&&o| sim.state_of(o, v) == Some(PeerState::Dead))
            .count() as f64,
    );
    sim.restart(v)?;
    let back = sim.run_until_true(secs(SETTLE_DEADLINE_S), |s| {
        all_others_see(s, v, PeerState::Alive)
    });
    f.secs("time_to_alive_s", back);
    f.set(
        "incarnation_after",
        sim.incarnation_of(v, v).unwrap_or(0) as f64,
    );
    false_verdicts(sim, f, "");
    Ok(())
}

fn s7(sim: &mut Sim, f: &mut Figures) -> Result<(), SimError> {
    let v = victim(sim);
    let from = sim.observations.transitions.len();
    sim.leave(v)?;
    let left = sim.run_until_true(secs(SETTLE_DEADLINE_S), |s| {
        all_others_see(s, v, PeerState::Left)
    });
    f.secs("time_to_left_s", left);
    let dead = sim.observations.transitions[from..]
        .iter()
        .filter(|t| t.subject == v && t.to == PeerState::Dead)
        .count();
    f.set("dead_observations", dead as f64);
    false_verdicts(sim, f, "");
    Ok(())
}

fn s8(sim: &mut Sim, p: &ScenarioParams, f: &mut Figures) {
    let n = sim.len();
    // (a) non-transitive pairs.
    let mut pairs = Vec::new();
    for x in 0..n {
        for y in x + 1..n {
            if sim.rng().chance(S8A_PAIR_FRACTION) {
                pairs.push((x, y));
            }
        }
    }
    f.set("a_blocked_pairs", pairs.len() as f64);
    sim.block_pairs(&pairs);
    sim.run_for(p.scaled(S8A_BLOCK_S));
    false_verdicts(sim, f, "a_");
    sim.heal();
    f.secs(
        "a_time_to_converge_s",
        sim.run_until_converged(secs(SETTLE_DEADLINE_S)),
    );

    // (b) a mute node.
    sim.observations.reset_counters();
    let mute = victim(sim);
    sim.observations.excused.insert(mute);
    let incarnations: Vec<u64> = (0..n)
        .map(|i| sim.incarnation_of(i, i).unwrap_or(0))
        .collect();
    sim.mute(mute);
    let window = p.scaled(S8B_MUTE_S);
    let dead = sim.run_until_true(window, |s| all_others_see(s, mute, PeerState::Dead));
    f.secs("b_time_to_dead_s", dead);
    let spent = dead.unwrap_or(window);
    sim.run_for(window.saturating_sub(spent));
    sim.heal();
    f.secs(
        "b_time_to_converge_after_restore_s",
        sim.run_until_converged(secs(SETTLE_DEADLINE_S)),
    );
    // Counted over the mute window and the restore until converged.
    f.set(
        "b_healthy_declared_dead",
        sim.observations.false_deaths.len() as f64,
    );
    let renewals = (0..n)
        .filter(|&i| i != mute && sim.incarnation_of(i, i).unwrap_or(0) > incarnations[i])
        .count();
    f.set("b_identity_renewals", renewals as f64);
    sim.observations.excused.remove(&mute);

    // (c) a flapping node.
    sim.observations.reset_counters();
    let flapper = victim(sim);
    sim.observations.excused.insert(flapper);
    let from = sim.observations.transitions.len();
    let end = sim.now_ms() + p.scaled(S8C_FLAP_S).as_millis() as u64;
    let mut down = true;
    while sim.now_ms() < end {
        sim.isolate(flapper, down);
        down = !down;
        sim.run_for(Duration::from_millis(S8C_FLIP_MS));
    }
    sim.heal();
    let settle = sim.run_until_converged(secs(SETTLE_DEADLINE_S));
    f.secs("c_settle_s", settle);
    // Counted from the first flip until settled, so the recovery counts.
    f.set("c_false_deaths", sim.observations.false_deaths.len() as f64);
    let (mut any, mut suspect, mut dead) = (vec![0u64; n], vec![0u64; n], vec![0u64; n]);
    for t in &sim.observations.transitions[from..] {
        if t.subject != flapper || !t.is_state_change() {
            continue;
        }
        any[t.observer] += 1;
        if t.to == PeerState::Suspect || t.from == Some(PeerState::Suspect) {
            suspect[t.observer] += 1;
        }
        if t.to == PeerState::Dead || t.from == Some(PeerState::Dead) {
            dead[t.observer] += 1;
        }
    }
    for (name, per_observer) in [
        ("changes", any),
        ("suspect_changes", suspect),
        ("dead_changes", dead),
    ] {
        let mut counts: Vec<u64> = (0..n)
            .filter(|&o| o != flapper)
            .map(|o| per_observer[o])
            .collect();
        counts.sort_unstable();
        f.set(
            &format!("c_{name}_per_observer_median"),
            counts.get(counts.len() / 2).copied().unwrap_or(0) as f64,
        );
        f.set(
            &format!("c_{name}_per_observer_max"),
            counts.last().copied().unwrap_or(0) as f64,
        );
    }
    sim.observations.excused.remove(&flapper);
}

fn s9(sim: &mut Sim, p: &ScenarioParams, f: &mut Figures) {
    let n = sim.len();
    let k = p.crash.unwrap_or(n / 3);
    // k distinct nodes other than the seed node 0, chosen by the seed.
    let mut pool: Vec<usize> = (1..n).collect();
    let mut crashed = Vec::with_capacity(k);
    while crashed.len() < k && !pool.is_empty() {
        let i = sim.rng().below(pool.len() as u64) as usize;
        crashed.push(pool.swap_remove(i));
    }
    crashed.sort_unstable();
    f.set("crashed", crashed.len() as f64);
    for &c in &crashed {
        sim.crash(c);
    }
    let first = {
        let crashed = crashed.clone();
        sim.run_until_true(secs(S9_DEADLINE_S), |s| {
            crashed
                .iter()
                .any(|&c| any_other_sees(s, c, PeerState::Dead))
        })
    };
    f.secs("first_dead_s", first);
    let all = {
        let crashed = crashed.clone();
        sim.run_until_true(secs(S9_DEADLINE_S), |s| {
            crashed
                .iter()
                .all(|&c| all_others_see(s, c, PeerState::Dead))
        })
    };
    f.secs("all_dead_s", all.zip(first).map(|(a, b)| a + b));
    false_verdicts(sim, f, "");
}

/// Builds the two S6 stores: a shared history of `history` entries, then
/// `divergent` entries only the first has (even authors) and `divergent`
/// only the second has (odd authors). Returns the stores and the wire
/// size of the 2·d divergent entries.
pub fn s6_ledgers(s6: S6Params) -> (MemoryLedger, MemoryLedger, u64) {
    let authors: Vec<usize> = (0..s6.authors.max(2)).collect();
    let even: Vec<usize> = authors.iter().copied().filter(|a| a % 2 == 0).collect();
    let odd: Vec<usize> = authors.iter().copied().filter(|a| a % 2 == 1).collect();
    let mut writer = ChainWriter::new();
    let (mut a, mut b) = (MemoryLedger::new(), MemoryLedger::new());
    fill_notes(&mut writer, &authors, s6.history, &mut [&mut a, &mut b]);
    let shared = a.entries().len();
    fill_notes(&mut writer, &even, s6.divergent, &mut [&mut a]);
    fill_notes(&mut writer, &odd, s6.divergent, &mut [&mut b]);
    let size = |l: &MemoryLedger| -> u64 {
        l.entries()
            .iter()
            .skip(shared)
            .map(crate::ledger::wire_entry_size)
            .sum()
    };
    let entry_bytes = size(&a) + size(&b);
    (a, b, entry_bytes)
}

fn run_s6(params: &ScenarioParams) -> Result<ScenarioRun, SimError> {
    let s6 = params.s6;
    let (a, b, entry_bytes) = s6_ledgers(s6);
    let target = a.entries().len() + s6.divergent;
    let mut sim = Sim::builder()
        .nodes(2)
        .seed(params.seed)
        .component(params.component.clone())
        .loss(params.loss.unwrap_or(0.0))
        .ledgers(vec![a, b])
        .count_traffic(true)
        .build()?;
    let mut f = Figures::default();
    f.set("history", s6.history as f64);
    f.set("divergent", s6.divergent as f64);
    f.set("authors", s6.authors as f64);
    let deadline = S6_DEADLINE_S * 1000;
    let matched = loop {
        let (la, lb) = (
            sim.node(0).with_ledger(|l| l.entries().len()),
            sim.node(1).with_ledger(|l| l.entries().len()),
        );
        let full = la == lb && la >= target;
        if full && sim.ledgers_agree() {
            break true;
        }
        if sim.now_ms() >= deadline {
            break false;
        }
        let next = sim.now_ms() + S6_STEP_MS;
        sim.run_until_ms(next);
    };
    let (msgs, bytes) = sim.sent_totals();
    let depth = (0..2).map(|i| sim.node(i).depth).max().unwrap_or(0);
    f.set("reconciled", if matched { 1.0 } else { 0.0 });
    f.set(
        "time_to_reconcile_s",
        if matched {
            sim.now_ms() as f64 / 1000.0
        } else {
            f64::NAN
        },
    );
    f.set("messages", msgs as f64);
    f.set("bytes", bytes as f64);
    f.set("entry_bytes", entry_bytes as f64);
    f.set("protocol_bytes", bytes as f64 - entry_bytes as f64);
    f.set("message_depth", depth as f64);
    // Where the bytes go (crate::traffic); and the first copies of the
    // entries the two nodes wrote during the run (joins, checkpoint
    // proposals and votes), which `protocol_bytes` counts although they
    // are not the difference reconciled.
    if let Some(t) = sim.traffic() {
        for (name, v) in t.figures() {
            f.set(&name, v);
        }
        let net = &sim.network.stats;
        f.set("messages_dropped", net.dropped as f64);
        f.set("streams_failed", net.streams_failed as f64);
        let written = t.first_copy_bytes_except(crate::ledger::NOTE_KIND);
        f.set("run_entry_bytes", written as f64);
        f.set(
            "protocol_bytes_besides_run_entries",
            bytes.saturating_sub(entry_bytes).saturating_sub(written) as f64,
        );
    }
    f.set("round_trips", depth.div_ceil(2) as f64);
    let expect = Expect::Safety;
    let violation = sim.check(expect).err().map(|e| e.to_string());
    health_figures(&sim, &mut f);
    Ok(ScenarioRun {
        scenario: Scenario::S6,
        seed: params.seed,
        nodes: 2,
        figures: f.0,
        samples: sim.samples().to_vec(),
        trace_hash: sim.trace_hash(),
        violation,
    })
}
