//! The benchmarks behind `docs/performance.md`: the scenarios at the
//! documented sizes, the simulator's own speed and memory, and ledger
//! replay speed. Not timed tests: they print figures (and the command that
//! reproduces each) and return them as JSON.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::component::{self, ComponentChoice};
use crate::ledger::membership_history;
use crate::report;
use crate::scenarios::{self, S6Params, Scenario, ScenarioParams};
use crate::world::Sim;
use crate::SimError;

/// S1 node counts.
pub const S1_SIZES: [usize; 4] = [16, 64, 256, 1024];
/// S2 node counts.
pub const S2_SIZES: [usize; 2] = [64, 256];
/// S3 loss rates (30 % and 40 %: the congestion-collapse rows).
pub const S3_LOSSES: [f64; 6] = [0.0, 0.05, 0.10, 0.20, 0.30, 0.40];
/// S4 uneven split: the first side's size at N = 64 (40 | 24).
pub const S4_UNEVEN_SPLIT: usize = 40;
/// S9: nodes of N = 64 that crash at once: a third, and a half.
pub const S9_CRASHES: [usize; 2] = [21, 32];
/// Benchmarks `--only` accepts (besides `all`).
pub const NAMES: [&str; 12] = [
    "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "speed", "replay", "scale",
];
/// S6 shared history sizes.
pub const S6_HISTORIES: [usize; 2] = [1_000, 100_000];
/// S6 divergence sizes.
pub const S6_DIVERGENCES: [usize; 3] = [1, 100, 10_000];
/// S6 author counts.
pub const S6_AUTHORS: [usize; 3] = [2, 64, 1024];
/// S6 author count of the large cells (issue 14: reconciliation at 10 000
/// authors), run at the larger history only: with H = 1 000 there would
/// be fewer entries than authors.
pub const S6_MANY_AUTHORS: usize = 10_000;
/// Node counts of the scale figures (`--only scale`), up to `--max-nodes`.
pub const SCALE_SIZES: [usize; 4] = [1024, 2048, 4096, 10_000];
/// Simulator speed: node count.
pub const SPEED_NODES: usize = 1024;
/// Simulator speed: virtual seconds.
pub const SPEED_VIRTUAL_S: u64 = 120;
/// Ledger replay: entries.
pub const REPLAY_ENTRIES: usize = 100_000;
/// Ledger replay: authors.
pub const REPLAY_AUTHORS: usize = 1024;

/// Prints progress: to stdout, or to stderr when stdout carries the
/// Markdown document.
fn say(to_stderr: bool, text: &str) {
    crate::progress::suspend(|| {
        if to_stderr {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    });
}

/// What one scenario figure is run with.
#[derive(Clone, Debug, Default)]
struct Cell {
    nodes: Option<usize>,
    loss: Option<f64>,
    split: Option<usize>,
    crash: Option<usize>,
    s6: Option<S6Params>,
}

/// Runs one scenario figure; a run that fails (a node refuses to start,
/// a setting is refused) is recorded as `{"command", "error"}`, so that
/// the document shows the failure instead of the whole run stopping.
fn scenario(s: Scenario, cell: Cell, seeds: u64, opts: &Options) -> Result<Value, SimError> {
    let cmd = command(s, &cell, seeds);
    match scenario_runs(s, &cell, seeds, opts, &cmd) {
        Err(SimError::Usage(why)) => Err(SimError::Usage(why)),
        other => Ok(recorded(opts, cmd, other)),
    }
}

/// A benchmark's figures, or its failure as `{"command", "error"}` (so the
/// document shows it instead of the whole run stopping).
fn recorded(opts: &Options, cmd: String, result: Result<Value, SimError>) -> Value {
    result.unwrap_or_else(|e| {
        say(opts.markdown, &format!("$ {cmd}\nFAILED: {e}\n\n"));
        json!({"command": cmd, "error": e.to_string()})
    })
}

fn command(s: Scenario, cell: &Cell, seeds: u64) -> String {
    let mut cmd = format!("nodeplane sim --scenario {s} --seeds {seeds}");
    if let Some(n) = cell.nodes {
        cmd.push_str(&format!(" --nodes {n}"));
    }
    if let Some(p) = cell.loss {
        cmd.push_str(&format!(" --loss {p}"));
    }
    if let Some(k) = cell.split {
        cmd.push_str(&format!(" --split {k}"));
    }
    if let Some(k) = cell.crash {
        cmd.push_str(&format!(" --crash {k}"));
    }
    if let Some(s6) = cell.s6 {
        cmd.push_str(&format!(
            " --history {} --divergent {} --authors {}",
            s6.history, s6.divergent, s6.authors
        ));
    }
    cmd
}

fn scenario_runs(
    s: Scenario,
    cell: &Cell,
    seeds: u64,
    opts: &Options,
    cmd: &str,
) -> Result<Value, SimError> {
    let started = Instant::now();
    let mut runs = Vec::new();
    for seed in 1..=seeds.max(1) {
        let params = ScenarioParams {
            nodes: cell.nodes,
            loss: cell.loss,
            seed,
            component: opts.component.clone(),
            s6: cell.s6.unwrap_or_default(),
            split: cell.split,
            crash: cell.crash,
            ..ScenarioParams::default()
        };
        runs.push(scenarios::run(s, &params)?);
    }
    let wall = started.elapsed().as_secs_f64();
    say(
        opts.markdown,
        &format!(
            "$ {cmd}\n{}(wall {wall:.1} s)\n\n",
            report::table(&format!("{s} {}", s.title()), &runs)
        ),
    );
    let mut doc = report::to_json(&runs);
    doc["command"] = json!(cmd);
    doc["wall_s"] = json!(wall);
    Ok(doc)
}

/// The process's resident set size (Linux: `VmRSS` of /proc/self/status).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The process's peak resident set size (Linux: `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Simulator speed and memory at `nodes` nodes over [`SPEED_VIRTUAL_S`].
pub fn sim_speed(nodes: usize, component: &ComponentChoice) -> Result<Value, SimError> {
    sim_speed_to(nodes, component, false)
}

fn sim_speed_to(nodes: usize, component: &ComponentChoice, quiet: bool) -> Result<Value, SimError> {
    component::load(component)?;
    let before = rss_bytes().unwrap_or(0);
    let heap_before = crate::memory::heap_bytes();
    // From an empty memo, so that every signature's first check is an
    // Ed25519 verification inside this run.
    nodeplane_runtime::signing::VerifyMemo::shared().clear();
    let signing_before = nodeplane_runtime::signing::stats();
    crate::progress::stage(
        format!("simulator speed · N = {nodes}"),
        Some(SPEED_VIRTUAL_S * 1000),
    );
    let started = Instant::now();
    let mut sim = Sim::builder()
        .nodes(nodes)
        .seed(1)
        .component(component.clone())
        .build()?;
    let built = started.elapsed();
    let after_build = rss_bytes().unwrap_or(0);
    let converged = sim.run_until_converged(Duration::from_secs(SPEED_VIRTUAL_S));
    let converged_wall = started.elapsed().as_secs_f64();
    // S1's steady figure: bytes per live node per second over the
    // window after convergence (when the run leaves room for it).
    let steady_ms = scenarios::S1_STEADY_S * 1000;
    let steady =
        (converged.is_some() && sim.now_ms() + steady_ms <= SPEED_VIRTUAL_S * 1000).then(|| {
            let (_, b0) = sim.sent_totals();
            sim.run_for(Duration::from_millis(steady_ms));
            let (_, b1) = sim.sent_totals();
            let node_s = sim.live_nodes().len() as f64 * scenarios::S1_STEADY_S as f64;
            b1.saturating_sub(b0) as f64 / node_s.max(1.0)
        });
    let remaining = SPEED_VIRTUAL_S * 1000 - sim.now_ms().min(SPEED_VIRTUAL_S * 1000);
    sim.run_for(Duration::from_millis(remaining));
    let wall = started.elapsed().as_secs_f64();
    let after = rss_bytes().unwrap_or(0);
    let guest_memory: usize = sim
        .nodes()
        .iter()
        .filter_map(|n| n.handle().map(|h| h.lock().guest_memory_bytes()))
        .sum();
    let stored_entries: usize = sim
        .nodes()
        .iter()
        .map(|n| n.with_ledger(|l| l.entries().len()))
        .sum();
    let signing = nodeplane_runtime::signing::stats();
    let signing_s = signing.nanos.saturating_sub(signing_before.nanos) as f64 / 1e9;
    let node_s = nodes as f64 * SPEED_VIRTUAL_S as f64;
    let v = json!({
        "command": format!("nodeplane bench --only speed --max-nodes {nodes}"),
        "nodes": nodes,
        "virtual_s": SPEED_VIRTUAL_S,
        "wall_s": wall,
        "build_wall_s": built.as_secs_f64(),
        "node_seconds_per_wall_s": node_s / wall,
        "memory_per_node_bytes": after.saturating_sub(before) / nodes as u64,
        "guest_memory_per_node_bytes": guest_memory / nodes,
        "stored_entries_per_node": stored_entries / nodes,
        "memory_per_node_after_build_bytes": after_build.saturating_sub(before) / nodes as u64,
        "time_to_converge_s": converged.map(|d| d.as_secs_f64()),
        "converge_wall_s": converged_wall,
        "steady_bytes_per_node_s": steady,
        "events": sim.trace().len(),
        // The host's signing service during the run: entries signed,
        // signatures checked (and how many a shared memo answered), and
        // the wall time spent in it, as a share of the whole run.
        "entries_signed": signing.signed.saturating_sub(signing_before.signed),
        "signatures_checked": signing.verified.saturating_sub(signing_before.verified),
        "signature_memo_hits": signing.memo_hits.saturating_sub(signing_before.memo_hits),
        "signing_wall_s": signing_s,
        "signing_share_of_wall": signing_s / wall,
        // Peak resident memory of the whole process so far (VmHWM).
        "peak_rss_bytes": peak_rss_bytes(),
    });
    let mut v = v;
    let heap_end = crate::memory::heap_bytes();
    v["heap_growth_per_node_bytes"] = json!(heap_before
        .zip(heap_end)
        .map(|(b, a)| a.saturating_sub(b) / nodes));
    // What each part held, measured by dropping it (crate::memory).
    v["memory_breakdown"] = sim.dismantle();
    say(
        quiet,
        &format!(
            "simulator speed: {}\n",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        ),
    );
    Ok(v)
}

/// Bytes of memory the kernel says are available (`MemAvailable`).
fn available_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What a size not run would take, extrapolated from the sizes measured
/// before it.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    /// The measured sizes it rests on (one or two).
    pub from: Vec<usize>,
    /// Projected peak RSS, bytes.
    pub peak_bytes: f64,
    /// Projected wall time, seconds.
    pub wall_s: f64,
    /// How it was computed, for the document.
    pub method: String,
}

/// Projects peak RSS and wall time at `n` nodes from measured `(nodes,
/// peak RSS bytes, wall s)` runs, smallest first. With two or more, the
/// last two: memory as `a·N + b·N²` through both points (a part per node,
/// the instance and its fixed heap, and a part per node and member, the
/// membership each node holds; both must come out non-negative, else
/// the quadratic rule below), wall time as `N^k` with the exponent `k`
/// the two points give, at least 2 (every node ingests every `join`):
/// measured, it grows faster than N² at large N. With one run, both as
/// N². `None` with no run.
pub fn project(measured: &[(usize, u64, f64)], n: usize) -> Option<Projection> {
    let nf = n as f64;
    let &(m2, peak2, wall2) = measured.last()?;
    let quadratic = |m: usize, peak: u64, wall: f64| {
        let ratio = (nf / m as f64).powi(2);
        Projection {
            from: vec![m],
            peak_bytes: peak as f64 * ratio,
            wall_s: wall * ratio,
            method: format!("× (N/{m})²"),
        }
    };
    let Some(&(m1, peak1, wall1)) = measured.len().checked_sub(2).and_then(|i| measured.get(i))
    else {
        return Some(quadratic(m2, peak2, wall2));
    };
    let (x1, x2) = (m1 as f64, m2 as f64);
    let (y1, y2) = (peak1 as f64, peak2 as f64);
    // y = a·x + b·x²: b from the two equations divided by x.
    let b = (y2 / x2 - y1 / x1) / (x2 - x1);
    let a = y1 / x1 - b * x1;
    if !(m2 > m1 && a >= 0.0 && b >= 0.0 && wall1 > 0.0 && wall2 > 0.0) {
        return Some(quadratic(m2, peak2, wall2));
    }
    let k = ((wall2 / wall1).ln() / (x2 / x1).ln()).max(2.0);
    Some(Projection {
        from: vec![m1, m2],
        peak_bytes: a * nf + b * nf * nf,
        wall_s: wall2 * (nf / x2).powf(k),
        method: format!(
            "memory a·N + b·N² through both: {:.0} KB per node and {:.0} B per node and member; wall × (N/{m2})^{k:.2}",
            a / 1e3,
            b
        ),
    })
}

/// The scale figures: the speed run ([`sim_speed_to`]) at each of
/// [`SCALE_SIZES`] up to `--max-nodes`, smallest first. A size above
/// `--max-nodes`, or whose memory, projected from the sizes measured
/// before it ([`project`]), exceeds what the machine has available, is
/// not started: it is recorded with the projection instead, so that the
/// document says why it is missing and what it would take.
fn scale(opts: &Options, out: &mut serde_json::Map<String, Value>) {
    let mut measured: Vec<(usize, u64, f64)> = Vec::new();
    for n in SCALE_SIZES {
        let cmd = format!("nodeplane bench --only scale --max-nodes {n}");
        let base = rss_bytes().unwrap_or(0);
        let projection = project(&measured, n);
        let describe = |p: &Projection| {
            let from = p
                .from
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" and ");
            format!(
                "projected from N = {from} ({}): about {:.1} GiB peak and {:.0} min wall",
                p.method,
                p.peak_bytes / GIB,
                p.wall_s / 60.0
            )
        };
        let skip = if n > opts.max_nodes {
            Some(format!(
                "not run (above --max-nodes {}){}",
                opts.max_nodes,
                projection
                    .as_ref()
                    .map_or(String::new(), |p| format!("; {}", describe(p)))
            ))
        } else {
            match (&projection, available_memory_bytes()) {
                (Some(p), Some(available))
                    if p.peak_bytes > available.saturating_add(base) as f64 =>
                {
                    Some(format!(
                        "not run: {}, more than the {:.1} GiB available",
                        describe(p),
                        available as f64 / GIB
                    ))
                }
                _ => None,
            }
        };
        if let Some(why) = skip {
            say(opts.markdown, &format!("$ {cmd}\n{why}\n\n"));
            out.insert(
                format!("scale_n{n}"),
                json!({
                    "command": cmd,
                    "nodes": n,
                    "skipped": why,
                    "projected_from": projection.as_ref().and_then(|p| p.from.last()),
                }),
            );
            continue;
        }
        // The peak of this size alone: the high-water mark is the process's,
        // and every smaller size ran before.
        let result = sim_speed_to(n, &opts.component, opts.markdown).map(|mut v| {
            v["command"] = json!(cmd);
            v
        });
        let v = recorded(opts, cmd, result);
        let peak = v.get("peak_rss_bytes").and_then(Value::as_u64);
        let wall = v.get("wall_s").and_then(Value::as_f64);
        if let (Some(peak), Some(wall)) = (peak, wall) {
            measured.push((n, peak, wall));
        }
        out.insert(format!("scale_n{n}"), v);
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// How fast a node rebuilds its view from [`REPLAY_ENTRIES`] stored entries.
pub fn replay_speed(component: &ComponentChoice) -> Result<Value, SimError> {
    replay_speed_to(component, false)
}

fn replay_speed_to(component: &ComponentChoice, quiet: bool) -> Result<Value, SimError> {
    component::load(component)?;
    let store = membership_history(REPLAY_AUTHORS, REPLAY_ENTRIES);
    let started = Instant::now();
    let sim = Sim::builder()
        .nodes(1)
        .seed(1)
        .component(component.clone())
        .join(false)
        .ledgers(vec![store])
        .build()?;
    let wall = started.elapsed().as_secs_f64();
    let members = sim
        .node(0)
        .handle()
        .map(|n| n.lock().mirror_view().members.len())
        .unwrap_or(0);
    let v = json!({
        "command": "nodeplane bench --only replay",
        "entries": REPLAY_ENTRIES,
        "authors": REPLAY_AUTHORS,
        "wall_s": wall,
        "entries_per_s": REPLAY_ENTRIES as f64 / wall,
        "members_rebuilt": members,
    });
    say(
        quiet,
        &format!(
            "ledger replay: {}\n",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        ),
    );
    Ok(v)
}

/// How `nodeplane bench` runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Which benchmarks: `all`, or a comma-separated list of [`NAMES`].
    pub only: String,
    /// Seeds per scenario figure.
    pub seeds: u64,
    /// Largest N for S1, S2 and the simulator speed.
    pub max_nodes: usize,
    /// The component.
    pub component: ComponentChoice,
    /// Progress goes to stderr (stdout carries the Markdown document).
    pub markdown: bool,
}

impl Options {
    /// Checks `only`, `seeds` and `max_nodes`; the error names the flag.
    pub fn validate(&self) -> Result<(), SimError> {
        for name in self.only.split(',') {
            if name != "all" && !NAMES.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                return Err(SimError::Usage(format!(
                    "--only {name:?}: not a benchmark (all, {})",
                    NAMES.join(", ")
                )));
            }
        }
        if self.seeds == 0 || self.seeds > crate::cli::MAX_SEEDS {
            return Err(SimError::Usage(format!(
                "--seeds {}: must be between 1 and {}",
                self.seeds,
                crate::cli::MAX_SEEDS
            )));
        }
        if !(scenarios::MIN_NODES..=scenarios::MAX_NODES).contains(&self.max_nodes) {
            return Err(SimError::Usage(format!(
                "--max-nodes {}: must be between {} and {}",
                self.max_nodes,
                scenarios::MIN_NODES,
                scenarios::MAX_NODES
            )));
        }
        Ok(())
    }
}

/// Runs the benchmark(s) named `only` and returns every figure.
pub fn run(
    only: &str,
    seeds: u64,
    max_nodes: usize,
    component: &ComponentChoice,
) -> Result<Value, SimError> {
    run_with(&Options {
        only: only.into(),
        seeds,
        max_nodes,
        component: component.clone(),
        markdown: false,
    })
}

/// Runs the benchmarks `opts` names and returns every figure (the
/// document [`crate::perfdoc::render`] turns into docs/performance.md).
pub fn run_with(opts: &Options) -> Result<Value, SimError> {
    opts.validate()?;
    let only = opts.only.as_str();
    let want = |name: &str| only == "all" || only.split(',').any(|x| x.eq_ignore_ascii_case(name));
    let (seeds, max_nodes) = (opts.seeds, opts.max_nodes);
    let mut out = serde_json::Map::new();
    let n64 = Some(scenarios::DEFAULT_NODES);
    let at = |nodes: Option<usize>| Cell {
        nodes,
        ..Cell::default()
    };
    if want("s1") {
        for n in S1_SIZES.into_iter().filter(|&n| n <= max_nodes) {
            out.insert(
                format!("s1_n{n}"),
                scenario(Scenario::S1, at(Some(n)), seeds, opts)?,
            );
        }
    }
    if want("s2") {
        for n in S2_SIZES.into_iter().filter(|&n| n <= max_nodes) {
            out.insert(
                format!("s2_n{n}"),
                scenario(Scenario::S2, at(Some(n)), seeds, opts)?,
            );
        }
    }
    if want("s3") {
        for p in S3_LOSSES {
            let cell = Cell {
                loss: Some(p),
                ..at(n64)
            };
            out.insert(
                format!("s3_loss{}", (p * 100.0).round() as u32),
                scenario(Scenario::S3, cell, seeds, opts)?,
            );
        }
    }
    if want("s4") {
        out.insert("s4".into(), scenario(Scenario::S4, at(n64), seeds, opts)?);
        let cell = Cell {
            split: Some(S4_UNEVEN_SPLIT),
            ..at(n64)
        };
        out.insert(
            "s4_uneven".into(),
            scenario(Scenario::S4, cell, seeds, opts)?,
        );
    }
    for (name, s) in [
        ("s5", Scenario::S5),
        ("s7", Scenario::S7),
        ("s8", Scenario::S8),
    ] {
        if want(name) {
            out.insert(name.into(), scenario(s, at(n64), seeds, opts)?);
        }
    }
    if want("s9") {
        for k in S9_CRASHES {
            let cell = Cell {
                crash: Some(k),
                ..at(n64)
            };
            out.insert(
                format!("s9_crash{k}"),
                scenario(Scenario::S9, cell, seeds, opts)?,
            );
        }
    }
    if want("s6") {
        let many = [(S6_HISTORIES[1], S6_MANY_AUTHORS)];
        let cells = S6_HISTORIES
            .into_iter()
            .flat_map(|h| S6_AUTHORS.into_iter().map(move |a| (h, a)))
            .chain(many);
        for (history, authors) in cells {
            for divergent in S6_DIVERGENCES {
                {
                    let cell = Cell {
                        s6: Some(S6Params {
                            history,
                            divergent,
                            authors,
                        }),
                        ..Cell::default()
                    };
                    out.insert(
                        format!("s6_h{history}_d{divergent}_a{authors}"),
                        scenario(Scenario::S6, cell, 1, opts)?,
                    );
                }
            }
        }
    }
    if want("speed") {
        let n = SPEED_NODES.min(max_nodes);
        let cmd = format!("nodeplane bench --only speed --max-nodes {n}");
        let v = recorded(opts, cmd, sim_speed_to(n, &opts.component, opts.markdown));
        out.insert("speed".into(), v);
    }
    if want("scale") {
        scale(opts, &mut out);
    }
    if want("replay") {
        let cmd = "nodeplane bench --only replay".to_string();
        let v = recorded(opts, cmd, replay_speed_to(&opts.component, opts.markdown));
        out.insert("replay".into(), v);
    }
    out.insert(
        "settings".into(),
        json!({
            "only": opts.only,
            "seeds": seeds,
            "max_nodes": max_nodes,
            "component": opts.component.name(),
        }),
    );
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB_U64: u64 = 1 << 30;

    #[test]
    fn two_sizes_give_a_per_node_and_a_per_member_part_and_the_measured_exponent() {
        // The scale runs of docs/performance.md at c6c1896.
        let measured = [
            (2048, 1.90 * GIB_U64 as f64, 104.5),
            (4096, 6.32 * GIB_U64 as f64, 507.6),
        ]
        .map(|(n, peak, wall)| (n, peak as u64, wall));
        let p = project(&measured, 10_000).expect("a projection");
        assert_eq!(p.from, vec![2048, 4096]);
        // Through both points: a·N + b·N² reproduces them.
        let again = project(&measured, 4096).expect("a projection");
        assert!((again.peak_bytes / GIB - 6.32).abs() < 0.01);
        // Below the quadratic rule's 37.7 GiB (the per-node part grows
        // linearly), above 30.
        let gib = p.peak_bytes / GIB;
        assert!((30.0..37.0).contains(&gib), "{gib}");
        // Wall time grew by 4.86 for twice the nodes: N^2.28, more than
        // the quadratic rule's 50 min.
        let min = p.wall_s / 60.0;
        assert!((60.0..70.0).contains(&min), "{min}");
        assert!(p.method.contains("^2.28"), "{}", p.method);
    }

    #[test]
    fn one_size_or_a_fit_without_meaning_falls_back_to_the_square() {
        let one = project(&[(1024, GIB_U64, 30.0)], 2048).expect("a projection");
        assert_eq!(one.from, vec![1024]);
        assert!((one.peak_bytes / GIB - 4.0).abs() < 1e-9);
        assert!((one.wall_s - 120.0).abs() < 1e-9);
        // Memory per node that fell with N makes `b` negative: the square.
        let odd = project(
            &[(1024, 4 * GIB_U64, 30.0), (2048, 5 * GIB_U64, 60.0)],
            4096,
        )
        .expect("a projection");
        assert_eq!(odd.from, vec![2048]);
        assert!((odd.peak_bytes / GIB - 20.0).abs() < 1e-9);
        // Wall time that grew slower than N² still projects as N².
        let slow = project(&[(1024, GIB_U64, 30.0), (2048, 4 * GIB_U64, 60.0)], 4096)
            .expect("a projection");
        assert!((slow.wall_s - 240.0).abs() < 1e-9);
        assert!(project(&[], 10).is_none());
    }
}
