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
/// S3 loss rates.
pub const S3_LOSSES: [f64; 4] = [0.0, 0.05, 0.10, 0.20];
/// S6 shared history sizes.
pub const S6_HISTORIES: [usize; 2] = [1_000, 100_000];
/// S6 divergence sizes.
pub const S6_DIVERGENCES: [usize; 3] = [1, 100, 10_000];
/// S6 author counts.
pub const S6_AUTHORS: [usize; 3] = [2, 64, 1024];
/// Simulator speed: node count.
pub const SPEED_NODES: usize = 1024;
/// Simulator speed: virtual seconds.
pub const SPEED_VIRTUAL_S: u64 = 120;
/// Ledger replay: entries.
pub const REPLAY_ENTRIES: usize = 100_000;
/// Ledger replay: authors.
pub const REPLAY_AUTHORS: usize = 1024;

fn scenario(
    s: Scenario,
    nodes: Option<usize>,
    loss: Option<f64>,
    seeds: u64,
    component: &ComponentChoice,
    s6: S6Params,
) -> Result<Value, SimError> {
    let started = Instant::now();
    let mut runs = Vec::new();
    for seed in 1..=seeds.max(1) {
        let params = ScenarioParams {
            nodes,
            loss,
            seed,
            component: component.clone(),
            s6,
            ..ScenarioParams::default()
        };
        runs.push(scenarios::run(s, &params)?);
    }
    let mut cmd = format!("nodeplane sim --scenario {s} --seeds {seeds}");
    if let Some(n) = nodes {
        cmd.push_str(&format!(" --nodes {n}"));
    }
    if let Some(p) = loss {
        cmd.push_str(&format!(" --loss {p}"));
    }
    if s == Scenario::S6 {
        cmd.push_str(&format!(
            " --history {} --divergent {} --authors {}",
            s6.history, s6.divergent, s6.authors
        ));
    }
    println!("$ {cmd}");
    print!("{}", report::table(&format!("{s} {}", s.title()), &runs));
    println!("(wall {:.1} s)\n", started.elapsed().as_secs_f64());
    let mut doc = report::to_json(&runs);
    doc["command"] = json!(cmd);
    Ok(doc)
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Simulator speed and memory at `nodes` nodes over [`SPEED_VIRTUAL_S`].
pub fn sim_speed(nodes: usize, component: &ComponentChoice) -> Result<Value, SimError> {
    component::load(component)?;
    let before = rss_bytes().unwrap_or(0);
    let started = Instant::now();
    let mut sim = Sim::builder()
        .nodes(nodes)
        .seed(1)
        .component(component.clone())
        .build()?;
    let built = started.elapsed();
    let after_build = rss_bytes().unwrap_or(0);
    let converged = sim.run_until_converged(Duration::from_secs(SPEED_VIRTUAL_S));
    let remaining = SPEED_VIRTUAL_S * 1000 - sim.now_ms().min(SPEED_VIRTUAL_S * 1000);
    sim.run_for(Duration::from_millis(remaining));
    let wall = started.elapsed().as_secs_f64();
    let after = rss_bytes().unwrap_or(0);
    let node_s = nodes as f64 * SPEED_VIRTUAL_S as f64;
    let v = json!({
        "command": format!("nodeplane bench --only speed --max-nodes {nodes}"),
        "nodes": nodes,
        "virtual_s": SPEED_VIRTUAL_S,
        "wall_s": wall,
        "build_wall_s": built.as_secs_f64(),
        "node_seconds_per_wall_s": node_s / wall,
        "memory_per_node_bytes": after.saturating_sub(before) / nodes as u64,
        "memory_per_node_after_build_bytes": after_build.saturating_sub(before) / nodes as u64,
        "time_to_converge_s": converged.map(|d| d.as_secs_f64()),
        "events": sim.trace().len(),
    });
    println!(
        "simulator speed: {}",
        serde_json::to_string_pretty(&v).unwrap_or_default()
    );
    Ok(v)
}

/// How fast a node rebuilds its view from [`REPLAY_ENTRIES`] stored entries.
pub fn replay_speed(component: &ComponentChoice) -> Result<Value, SimError> {
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
    println!(
        "ledger replay: {}",
        serde_json::to_string_pretty(&v).unwrap_or_default()
    );
    Ok(v)
}

/// Runs the benchmark(s) named `only` and returns every figure.
pub fn run(
    only: &str,
    seeds: u64,
    max_nodes: usize,
    component: &ComponentChoice,
) -> Result<Value, SimError> {
    let want = |name: &str| only == "all" || only.split(',').any(|x| x.eq_ignore_ascii_case(name));
    let mut out = serde_json::Map::new();
    let d = S6Params::default();
    if want("s1") {
        for n in S1_SIZES.into_iter().filter(|&n| n <= max_nodes) {
            out.insert(
                format!("s1_n{n}"),
                scenario(Scenario::S1, Some(n), None, seeds, component, d)?,
            );
        }
    }
    if want("s2") {
        for n in S2_SIZES.into_iter().filter(|&n| n <= max_nodes) {
            out.insert(
                format!("s2_n{n}"),
                scenario(Scenario::S2, Some(n), None, seeds, component, d)?,
            );
        }
    }
    if want("s3") {
        for p in S3_LOSSES {
            out.insert(
                format!("s3_loss{}", (p * 100.0) as u32),
                scenario(Scenario::S3, Some(64), Some(p), seeds, component, d)?,
            );
        }
    }
    for (name, s) in [
        ("s4", Scenario::S4),
        ("s5", Scenario::S5),
        ("s7", Scenario::S7),
        ("s8", Scenario::S8),
    ] {
        if want(name) {
            out.insert(
                name.into(),
                scenario(s, Some(64), None, seeds, component, d)?,
            );
        }
    }
    if want("s6") {
        for history in S6_HISTORIES {
            for divergent in S6_DIVERGENCES {
                for authors in S6_AUTHORS {
                    let p = S6Params {
                        history,
                        divergent,
                        authors,
                    };
                    out.insert(
                        format!("s6_h{history}_d{divergent}_a{authors}"),
                        scenario(Scenario::S6, None, None, 1, component, p)?,
                    );
                }
            }
        }
    }
    if want("speed") {
        out.insert(
            "speed".into(),
            sim_speed(SPEED_NODES.min(max_nodes), component)?,
        );
    }
    if want("replay") {
        out.insert("replay".into(), replay_speed(component)?);
    }
    Ok(Value::Object(out))
}
