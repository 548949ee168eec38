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
    /// The scenario: S1..S8 (see docs/scenarios.md).
    #[arg(long)]
    pub scenario: String,
    /// Number of nodes (default: 64; S6 always uses 2).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Number of seeds (runs); seeds are first-seed, first-seed+1, ...
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    /// Message loss probability (S3: the lossy window's loss, default 0.1).
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
    /// Hostile nodes sending random and crafted messages throughout the
    /// run (the honest nodes must not crash nor declare each other dead).
    #[arg(long, default_value_t = 0)]
    pub hostile: usize,
    /// Write raw figures per seed and aggregated as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the first seed's view counts over virtual time as SVG.
    #[arg(long)]
    pub svg: Option<PathBuf>,
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
        }
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
    let scenario: Scenario = args.scenario.parse()?;
    let mut runs = Vec::new();
    for k in 0..args.seeds.max(1) {
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
    let runs = run_scenario(args)?;
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
    /// Which benchmark: s1, s2, s3, s4, s5, s6, s7, s8, speed, replay or all.
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
}

/// `nodeplane bench`.
pub fn run_bench(args: &BenchArgs) -> Result<(), SimError> {
    let component = args
        .component
        .as_deref()
        .map(ComponentChoice::parse)
        .unwrap_or_default();
    let doc = bench::run(&args.only, args.seeds, args.max_nodes, &component)?;
    if let Some(path) = &args.json {
        write(
            path,
            &serde_json::to_string_pretty(&doc).unwrap_or_default(),
        )?;
    }
    Ok(())
}
