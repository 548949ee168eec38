//! The `nodeplane sim` and `nodeplane bench` commands.

use std::path::PathBuf;

use clap::Args;

use crate::bench;
use crate::component::ComponentChoice;
use crate::report;
use crate::scenarios::{self, S6Params, Scenario, ScenarioParams, ScenarioRun};
use crate::svg;
use crate::SimError;

/// Interval of the view samples drawn with `--svg`.
pub const SVG_SAMPLE_MS: u64 = 250;

/// `nodeplane sim`: run a scenario over several seeds and print its figures.
#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// The scenario: S1..S9, or churn (see docs/scenarios.md).
    #[arg(long)]
    pub scenario: String,
    /// Number of nodes (default: 64; S6 always uses 2).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Number of seeds (runs, at least 1); seeds are first-seed,
    /// first-seed+1, ...
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    /// Message loss probability, 0 to 1 (S3: the lossy window's loss,
    /// default 0.1).
    #[arg(long)]
    pub loss: Option<f64>,
    /// `stub`, `nodeplane` or a component file (default: nodeplane if built in).
    #[arg(long)]
    pub component: Option<String>,
    /// Factor on the scenario's long phases (1.0 = as documented).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// S6: shared history H.
    #[arg(long, default_value_t = 1_000)]
    pub history: usize,
    /// S6: entries each side lacks, d.
    #[arg(long, default_value_t = 100)]
    pub divergent: usize,
    /// S6: authors A.
    #[arg(long, default_value_t = 64)]
    pub authors: usize,
    /// Each node's uplink bandwidth, Mbit/s (default 100).
    #[arg(long)]
    pub bandwidth: Option<f64>,
    /// S4: nodes on the first side of the split (default: half).
    #[arg(long)]
    pub split: Option<usize>,
    /// S9: nodes that crash at once (default: a third).
    #[arg(long)]
    pub crash: Option<usize>,
    /// churn: membership events E (default 1 000).
    #[arg(long)]
    pub events: Option<usize>,
    /// Hostile nodes sending random and crafted messages throughout the
    /// run (the honest nodes must not crash nor declare each other dead).
    #[arg(long, default_value_t = 0)]
    pub hostile: usize,
    /// Checkpoint trigger K for tests and small runs (the node plane's
    /// test knob: K = this value, no per-member term; default
    /// max(1 024, 2 × voters)). Not for S6.
    #[arg(long)]
    pub checkpoint_min_tail: Option<u64>,
    /// Write raw figures per seed and aggregated as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the first seed's view counts over virtual time as SVG.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// No progress bar (it is shown on stderr only when stderr is a
    /// terminal).
    #[arg(long)]
    pub quiet: bool,
}

impl SimArgs {
    /// The parameters of seed `seed`.
    pub fn params(&self, seed: u64) -> ScenarioParams {
        ScenarioParams {
            nodes: self.nodes,
            loss: self.loss,
            seed,
            component: self
                .component
                .as_deref()
                .map(ComponentChoice::parse)
                .unwrap_or_default(),
            time_scale: self.time_scale,
            sample_every_ms: None,
            s6: S6Params {
                history: self.history,
                divergent: self.divergent,
                authors: self.authors,
            },
            hostiles: self.hostile,
            bandwidth_bps: self.bandwidth.map(mbit_to_bps),
            split: self.split,
            crash: self.crash,
            events: self.events,
            checkpoint_min_tail: self.checkpoint_min_tail,
        }
    }

    /// Checks every setting; the error names the setting and its range.
    pub fn validate(&self) -> Result<Scenario, SimError> {
        let scenario: Scenario = self.scenario.parse()?;
        if self.seeds == 0 || self.seeds > MAX_SEEDS {
            return Err(SimError::Usage(format!(
                "--seeds {}: must be between 1 and {MAX_SEEDS}",
                self.seeds
            )));
        }
        if self.first_seed.checked_add(self.seeds).is_none() {
            return Err(SimError::Usage(format!(
                "--first-seed {}: too large for --seeds {}",
                self.first_seed, self.seeds
            )));
        }
        check_bandwidth(self.bandwidth)?;
        self.params(self.first_seed).validate(scenario)?;
        Ok(scenario)
    }
}

/// Most seeds one command runs (a typo such as `--seeds 50000` would run
/// for days).
pub const MAX_SEEDS: u64 = 1_000;
/// Largest `--bandwidth`, Mbit/s: 1 Tbit/s, far above any NIC, so the
/// bits-per-second value cannot overflow.
pub const MAX_BANDWIDTH_MBIT: f64 = 1_000_000.0;

fn mbit_to_bps(mbit: f64) -> u64 {
    (mbit * 1_000_000.0).round() as u64
}

fn check_bandwidth(mbit: Option<f64>) -> Result<(), SimError> {
    match mbit {
        Some(m)
            if !(m.is_finite() && m > 0.0 && m <= MAX_BANDWIDTH_MBIT) || mbit_to_bps(m) == 0 =>
        {
            Err(SimError::Usage(format!(
                "--bandwidth {m}: must be above 0 and at most {MAX_BANDWIDTH_MBIT} (Mbit/s)"
            )))
        }
        _ => Ok(()),
    }
}

fn write(path: &PathBuf, contents: &str) -> Result<(), SimError> {
    std::fs::write(path, contents).map_err(|source| SimError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Runs a scenario over the seeds; returns the runs (also printed).
pub fn run_scenario(args: &SimArgs) -> Result<Vec<ScenarioRun>, SimError> {
    let scenario = args.validate()?;
    let mut runs = Vec::new();
    for k in 0..args.seeds {
        let mut params = args.params(args.first_seed + k);
        if k == 0 && args.svg.is_some() {
            params.sample_every_ms = Some(SVG_SAMPLE_MS);
        }
        let run = scenarios::run(scenario, &params)?;
        tracing::info!(seed = run.seed, trace = %run.trace_hash, "scenario run finished");
        runs.push(run);
    }
    Ok(runs)
}

/// `nodeplane sim`.
pub fn run(args: &SimArgs) -> Result<(), SimError> {
    let progress = crate::progress::Progress::start(crate::progress::wanted(args.quiet));
    let runs = run_scenario(args)?;
    drop(progress);
    let scenario: Scenario = args.scenario.parse()?;
    let component = args.params(0).component;
    let title = format!(
        "{scenario} {} — {} nodes, component {}",
        scenario.title(),
        runs.first().map(|r| r.nodes).unwrap_or(0),
        component.name()
    );
    print!("{}", report::table(&title, &runs));
    if let Some(path) = &args.json {
        let doc = serde_json::to_string_pretty(&report::to_json(&runs)).unwrap_or_default();
        write(path, &doc)?;
    }
    if let Some(path) = &args.svg {
        if let Some(first) = runs.first() {
            let title = format!(
                "{title}, seed {}: members each node's view holds, by state",
                first.seed
            );
            write(path, &svg::render(&title, &first.samples))?;
        }
    }
    if runs.iter().any(|r| r.violation.is_some()) {
        return Err(SimError::Usage(
            "an invariant was violated (see above)".into(),
        ));
    }
    Ok(())
}

/// `nodeplane bench`: the figures of docs/performance.md.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Which benchmarks: all, or a comma-separated list of s1 … s9,
    /// speed, replay.
    #[arg(long, default_value = "all")]
    pub only: String,
    /// Seeds per scenario figure.
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Largest N for S1 and the simulator speed (to bound the run time).
    #[arg(long, default_value_t = 1024)]
    pub max_nodes: usize,
    /// `stub`, `nodeplane` or a component file (default: nodeplane if built in).
    #[arg(long)]
    pub component: Option<String>,
    /// Write every figure as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Print the whole of docs/performance.md, rendered from this run, on
    /// stdout (progress goes to stderr):
    /// `nodeplane bench --markdown > docs/performance.md`.
    #[arg(long)]
    pub markdown: bool,
    /// Write the rendered docs/performance.md to this file.
    #[arg(long)]
    pub write: Option<PathBuf>,
    /// Start from the figures of a previous `--json` run: the benchmarks
    /// run now replace theirs and the rest are kept, so that one part of
    /// docs/performance.md can be measured again without the others:
    /// `nodeplane bench --only scale --max-nodes 2048 --merge docs/performance.json
    /// --json docs/performance.json --write docs/performance.md`.
    #[arg(long)]
    pub merge: Option<PathBuf>,
    /// Run nothing: render docs/performance.md from the figures a previous
    /// `--json` run wrote (for a change of the document's text alone).
    #[arg(long)]
    pub from_json: Option<PathBuf>,
    /// No progress bar (it is shown on stderr only when stderr is a
    /// terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// Reads the JSON a `nodeplane bench --json` run wrote (`flag` names the
/// option, for the error).
fn read_bench_json(flag: &str, path: &std::path::Path) -> Result<serde_json::Value, SimError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SimError::Usage(format!("{flag} {}: {e}", path.display())))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        SimError::Usage(format!(
            "{flag} {}: not the JSON of a bench run: {e}",
            path.display()
        ))
    })?;
    if !doc.is_object() {
        return Err(SimError::Usage(format!(
            "{flag} {}: not the JSON of a bench run (not an object)",
            path.display()
        )));
    }
    Ok(doc)
}

/// Puts the figures of `now` (a run of `--only only`) over `earlier`'s,
/// keeping `earlier`'s settings and noting which benchmarks were merged.
///
/// A record `now` only projects (a scale size above `--max-nodes`, marked
/// `skipped`) does not replace one `earlier` measured, nor a projection
/// from a larger measured size: re-measuring the small sizes must not
/// throw away a 30-minute N = 4 096 run or the projection made from it.
fn merge_bench(earlier: &mut serde_json::Value, now: serde_json::Value, only: &str) {
    let (Some(into), serde_json::Value::Object(now)) = (earlier.as_object_mut(), now) else {
        return;
    };
    for (k, v) in now {
        let keep_earlier = into.get(&k).is_some_and(|old| better_than(old, &v));
        if k != "settings" && !keep_earlier {
            into.insert(k, v);
        }
    }
    if let Some(settings) = into.get_mut("settings").and_then(|s| s.as_object_mut()) {
        let merged = settings
            .entry("merged")
            .or_insert_with(|| serde_json::json!([]));
        if let Some(list) = merged.as_array_mut() {
            list.push(serde_json::json!(only));
        }
    }
}

/// Whether the bench record `old` says more than `new`: `new` only
/// projects, and `old` was measured or projected from a larger size.
fn better_than(old: &serde_json::Value, new: &serde_json::Value) -> bool {
    let projected_from = |v: &serde_json::Value| {
        v.get("skipped").map(|_| {
            v.get("projected_from")
                .and_then(|m| m.as_u64())
                .unwrap_or(0)
        })
    };
    match (projected_from(old), projected_from(new)) {
        (None, Some(_)) => true,
        (Some(old_base), Some(new_base)) => old_base > new_base,
        _ => false,
    }
}

/// `nodeplane bench`.
pub fn run_bench(args: &BenchArgs) -> Result<(), SimError> {
    let component = args
        .component
        .as_deref()
        .map(ComponentChoice::parse)
        .unwrap_or_default();
    let opts = bench::Options {
        only: args.only.clone(),
        seeds: args.seeds,
        max_nodes: args.max_nodes,
        component,
        markdown: args.markdown,
    };
    let doc = match (&args.from_json, &args.merge) {
        (Some(path), _) => read_bench_json("--from-json", path)?,
        (None, Some(path)) => {
            let mut earlier = read_bench_json("--merge", path)?;
            let _progress = crate::progress::Progress::start(crate::progress::wanted(args.quiet));
            let now = bench::run_with(&opts)?;
            merge_bench(&mut earlier, now, &opts.only);
            earlier
        }
        (None, None) => {
            let _progress = crate::progress::Progress::start(crate::progress::wanted(args.quiet));
            bench::run_with(&opts)?
        }
    };
    if let Some(path) = &args.json {
        write(
            path,
            &serde_json::to_string_pretty(&doc).unwrap_or_default(),
        )?;
    }
    if args.markdown || args.write.is_some() {
        let md = crate::perfdoc::render(&doc);
        if let Some(path) = &args.write {
            write(path, &md)?;
        }
        if args.markdown {
            print!("{md}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::merge_bench;
    use serde_json::json;

    #[test]
    fn merging_keeps_a_measured_size_that_the_new_run_only_projects() {
        let mut earlier = json!({
            "settings": {"max_nodes": 4096},
            "scale_n1024": {"converged_s": 7.75},
            "scale_n4096": {"converged_s": 21.8},
            "scale_n10000": {"skipped": "projected from N = 4096", "projected_from": 4096},
        });
        let now = json!({
            "settings": {"max_nodes": 1024},
            "scale_n1024": {"converged_s": 7.5},
            "scale_n2048": {"skipped": "not run", "projected_from": 1024},
            "scale_n4096": {"skipped": "not run", "projected_from": 1024},
            "scale_n10000": {"skipped": "not run", "projected_from": 1024},
        });
        merge_bench(&mut earlier, now, "scale");
        assert_eq!(earlier["scale_n1024"], json!({"converged_s": 7.5}));
        assert_eq!(earlier["scale_n4096"], json!({"converged_s": 21.8}));
        assert_eq!(earlier["scale_n10000"]["projected_from"], json!(4096));
        // Nothing to keep: the projection goes in.
        assert_eq!(earlier["scale_n2048"]["projected_from"], json!(1024));
        // A projection from a larger measured size replaces an older one.
        let later = json!({"scale_n10000": {"skipped": "not run", "projected_from": 8192}});
        merge_bench(&mut earlier, later, "scale");
        assert_eq!(earlier["scale_n10000"]["projected_from"], json!(8192));
        assert_eq!(earlier["settings"]["max_nodes"], json!(4096));
        assert_eq!(earlier["settings"]["merged"], json!(["scale", "scale"]));
    }
}
