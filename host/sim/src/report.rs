//! Aggregating scenario runs over seeds: the figures table (median and
//! max) and the JSON document (per seed and aggregated).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::scenarios::ScenarioRun;

/// Median and max of one figure over seeds (NaN values are "not reached"
/// and counted apart).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Aggregate {
    /// Median over the seeds that reached a value.
    pub median: f64,
    /// Max over the seeds that reached a value.
    pub max: f64,
    /// Seeds that did not reach a value.
    pub missing: usize,
}

/// Aggregates every figure of `runs`.
pub fn aggregate(runs: &[ScenarioRun]) -> BTreeMap<String, Aggregate> {
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for (name, v) in &run.figures {
            values.entry(name.clone()).or_default().push(*v);
        }
    }
    values
        .into_iter()
        .map(|(name, vs)| {
            let missing = vs.iter().filter(|v| v.is_nan()).count();
            let mut ok: Vec<f64> = vs.into_iter().filter(|v| !v.is_nan()).collect();
            ok.sort_by(|a, b| a.total_cmp(b));
            let median = if ok.is_empty() {
                f64::NAN
            } else if ok.len() % 2 == 1 {
                ok[ok.len() / 2]
            } else {
                (ok[ok.len() / 2 - 1] + ok[ok.len() / 2]) / 2.0
            };
            let max = ok.last().copied().unwrap_or(f64::NAN);
            (
                name,
                Aggregate {
                    median,
                    max,
                    missing,
                },
            )
        })
        .collect()
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The figures table as text: one row per figure, median / max over seeds.
pub fn table(title: &str, runs: &[ScenarioRun]) -> String {
    let agg = aggregate(runs);
    let width = agg.keys().map(|k| k.len()).max().unwrap_or(6).max(6);
    let mut out = format!("{title} — {} seed(s)\n", runs.len());
    out.push_str(&format!(
        "{:<width$}  {:>12}  {:>12}  {:>8}\n",
        "figure", "median", "max", "missing"
    ));
    for (name, a) in &agg {
        out.push_str(&format!(
            "{name:<width$}  {:>12}  {:>12}  {:>8}\n",
            fmt_value(a.median),
            fmt_value(a.max),
            a.missing
        ));
    }
    let violations: Vec<&ScenarioRun> = runs.iter().filter(|r| r.violation.is_some()).collect();
    if violations.is_empty() {
        out.push_str("invariants: all held\n");
    } else {
        for r in violations {
            out.push_str(&format!(
                "INVARIANT VIOLATION, seed {}:\n{}\n",
                r.seed,
                r.violation.as_deref().unwrap_or("")
            ));
        }
    }
    out
}

fn num(v: f64) -> Value {
    if v.is_nan() {
        Value::Null
    } else {
        json!(v)
    }
}

/// The JSON document: raw figures per seed and the aggregate.
pub fn to_json(runs: &[ScenarioRun]) -> Value {
    let seeds: Vec<Value> = runs
        .iter()
        .map(|r| {
            let figures: serde_json::Map<String, Value> = r
                .figures
                .iter()
                .map(|(k, v)| (k.clone(), num(*v)))
                .collect();
            json!({
                "seed": r.seed,
                "nodes": r.nodes,
                "trace_hash": r.trace_hash,
                "violation": r.violation,
                "figures": figures,
            })
        })
        .collect();
    let aggregate: serde_json::Map<String, Value> = aggregate(runs)
        .into_iter()
        .map(|(k, a)| {
            (
                k,
                json!({"median": num(a.median), "max": num(a.max), "missing": a.missing}),
            )
        })
        .collect();
    json!({
        "scenario": runs.first().map(|r| r.scenario.to_string()),
        "seeds": seeds,
        "aggregate": aggregate,
    })
}
