//! The suite against the stub (passes), each broken fixture (fails on its
//! named checks), and the node plane component when it is built.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nodeplane_conformance::{run, run_with, Options, Report, CHECKS};
use nodeplane_runtime::{Limits, Runtime};

/// One runtime per test process; a small fuel budget keeps the spinning
/// fixture's runs short.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(Limits {
            fuel_per_call: 200_000_000,
            ..Limits::default()
        })
        .expect("engine")
    })
}

fn run_file(path: &str) -> Report {
    let component = runtime()
        .load_file(std::path::Path::new(path))
        .expect("component loads");
    run(runtime(), &component)
}

fn sorted(mut names: Vec<&'static str>) -> Vec<&'static str> {
    names.sort();
    names
}

/// The names of the checks whose ids are `ids`, sorted.
fn named(ids: &[&str]) -> Vec<&'static str> {
    let names = CHECKS
        .iter()
        .map(|c| c.name)
        .filter(|n| ids.iter().any(|id| n.starts_with(&format!("{id} "))))
        .collect();
    let names = sorted(names);
    assert_eq!(names.len(), ids.len(), "every id names one check: {ids:?}");
    names
}

#[test]
fn the_suite_is_large_and_every_check_names_a_spec_id() {
    assert!(CHECKS.len() >= 30, "{} checks", CHECKS.len());
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/interface.md"))
        .expect("docs/interface.md");
    let mut ids = std::collections::BTreeSet::new();
    for check in CHECKS {
        let id = check.name.split(' ').next().expect("an id");
        assert!(ids.insert(id), "id {id} used twice");
        assert!(
            spec.contains(&format!("[{id}]")),
            "docs/interface.md has no item [{id}] for check {:?}",
            check.name
        );
    }
}

#[test]
fn every_spec_item_is_checked_or_says_why_not() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/interface.md"))
        .expect("docs/interface.md");
    let checked: Vec<&str> = CHECKS
        .iter()
        .map(|c| c.name.split(' ').next().expect("an id"))
        .collect();
    let mut items = 0;
    for item in spec.split("\n- [").skip(1) {
        let Some((id, rest)) = item.split_once(']') else {
            continue;
        };
        let paragraph = rest.split("\n\n").next().unwrap_or(rest);
        let paragraph = paragraph.split("\n- ").next().unwrap_or(paragraph);
        items += 1;
        assert!(
            checked.contains(&id)
                || paragraph.contains("*(not checked")
                || paragraph.contains("*(checked through"),
            "spec item [{id}] has no check and does not say why"
        );
    }
    assert!(items >= checked.len(), "{items} spec items");
}

#[test]
fn the_stub_passes_every_check() {
    let report = run_file(nodeplane_artifacts::STUB_PATH);
    assert_eq!(report.failed(), 0, "{}", report.render());
    assert_eq!(report.passed(), CHECKS.len());
}

#[test]
fn drops_updates_fails_the_gap_free_check() {
    let report = run_file(nodeplane_artifacts::FIXTURE_DROPS_UPDATES_PATH);
    let why = report
        .failure_of("updates-1")
        .unwrap_or_else(|| panic!("updates-1 passed:\n{}", report.render()));
    assert!(why.contains("version"), "{why}");
    // Everything it fails concerns updates caused by reports.
    let allowed = named(&[
        "report-4",
        "report-5",
        "report-7",
        "report-8",
        "report-9",
        "updates-1",
        "updates-3",
        "sub-1",
        "sub-2",
        "swap-1",
    ]);
    for failed in report.failures() {
        assert!(
            allowed.contains(&failed),
            "unexpected failure {failed}:\n{}",
            report.render()
        );
    }
}

#[test]
fn wrong_error_fails_only_the_unknown_peer_check() {
    let report = run_file(nodeplane_artifacts::FIXTURE_WRONG_ERROR_PATH);
    assert_eq!(
        sorted(report.failures()),
        named(&["report-3"]),
        "{}",
        report.render()
    );
    let why = report.failure_of("report-3").expect("failed");
    assert!(
        why.contains("expected unknown-peer, got invalid-report"),
        "{why}"
    );
}

#[test]
fn spin_fails_the_heartbeat_checks_as_crashes_in_bounded_time() {
    let started = Instant::now();
    let report = run_file(nodeplane_artifacts::FIXTURE_SPIN_PATH);
    assert_eq!(
        sorted(report.failures()),
        named(&["heartbeat-1", "heartbeat-2"]),
        "{}",
        report.render()
    );
    for id in ["heartbeat-1", "heartbeat-2"] {
        let why = report.failure_of(id).expect("failed");
        assert!(
            why.starts_with("component crashed") && why.contains("fuel"),
            "{id}: {why}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn trap_fails_the_metadata_checks_as_crashes() {
    let report = run_file(nodeplane_artifacts::FIXTURE_TRAP_PATH);
    assert_eq!(
        sorted(report.failures()),
        named(&["pre-4", "leave-6", "meta-1", "meta-2", "meta-3"]),
        "{}",
        report.render()
    );
    for id in ["pre-4", "meta-1"] {
        let why = report.failure_of(id).expect("failed");
        assert!(
            why.starts_with("component crashed") && why.contains("get-peer-metadata"),
            "{id}: {why}"
        );
    }
}

#[test]
fn a_check_that_outlives_its_time_limit_fails_and_the_run_completes() {
    let component = runtime()
        .load_file(std::path::Path::new(nodeplane_artifacts::FIXTURE_SPIN_PATH))
        .expect("component loads");
    let report = run_with(
        runtime(),
        &component,
        Options {
            check_timeout: Duration::from_millis(1),
        },
    );
    assert_eq!(report.checks.len(), CHECKS.len());
    // The spinning call burns 200 million units of fuel: far more than 1 ms.
    let why = report
        .failure_of("heartbeat-1")
        .expect("heartbeat-1 failed");
    assert!(why.starts_with("timed out after"), "{why}");
}

#[test]
fn the_rendering_is_one_line_per_check_then_the_totals() {
    // The trap fixture's crash reasons come with multi-line wasm backtraces.
    let report = run_file(nodeplane_artifacts::FIXTURE_TRAP_PATH);
    let text = report.render();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), CHECKS.len() + 1, "{text}");
    for (line, check) in lines.iter().zip(CHECKS) {
        assert!(
            line.starts_with("pass  ") || line.starts_with("FAIL  "),
            "{line}"
        );
        assert!(line.contains(check.name), "{line}");
    }
    assert_eq!(
        *lines.last().expect("a last line"),
        format!("{} passed, 5 failed", CHECKS.len() - 5)
    );
    assert!(text.ends_with(" failed\n"));
}

#[test]
fn the_node_plane_passes_every_check() {
    let report = run_file(nodeplane_artifacts::NODEPLANE_PATH);
    assert_eq!(report.failed(), 0, "{}", report.render());
}

/// A component built against `nodeplane:control@0.2.0` (the stub as built
/// before 0.2.1 added `ledger-store.get`, kept as a fixture) still links
/// against the 0.2.1 host, whose linker matches a 0.2.0 import
/// semver-compatibly, and passes the whole suite.
#[test]
fn a_0_2_0_component_loads_on_the_0_2_1_host_and_passes_the_suite() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interface/fixtures/stub-0.2.0.wasm"
    );
    let bytes = std::fs::read(path).expect("the 0.2.0 fixture");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("nodeplane:control/events@0.2.0") && !text.contains("@0.2.1"),
        "the fixture imports the 0.2.0 interfaces"
    );
    let report = run_file(path);
    assert_eq!(report.failed(), 0, "{}", report.render());
    assert!(report.passed() >= 30, "{}", report.render());
}
