//! The example control planes in other languages (`examples/`): each is
//! built with its toolchain when the toolchain is installed (`.ci/run`
//! installs both), into `target/examples/`, never into the source tree,
//! and must pass the whole conformance suite unmodified. Without the
//! toolchain the test says loudly why it skipped.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::example_builds::{js_stub, python_stub};
use nodeplane_conformance::run;
use nodeplane_interface::PeerState;
use nodeplane_runtime::{
    footprint, ComponentSource, Limits, LoadedComponent, Node, NodeConfig, NodeHandle,
    RecordingServices, Runtime, MAX_INSTANCES, MAX_MEMORIES, MAX_TABLES,
};
use nodeplane_sim::component::STUB;
use nodeplane_sim::{report, ComponentChoice, Expect, Scenario, ScenarioParams, ScenarioRun, Sim};

/// One runtime per test process.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(Limits::default()).expect("engine"))
}

/// Loads a built example, printing how long the compilation took.
fn load(path: &Path) -> LoadedComponent {
    let started = Instant::now();
    let component = runtime().load_file(path).expect("the example loads");
    eprintln!(
        "loaded {} ({} MB) in {:.1} s",
        path.display(),
        std::fs::metadata(path).map(|m| m.len() >> 20).unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    component
}

/// Runs the whole suite on an example and checks that it fits the store
/// limits with room to spare.
fn passes_the_suite(name: &str, path: &Path) {
    let bytes = std::fs::read(path).expect("the built example");
    let footprint = footprint(&bytes).expect("a valid component");
    let (instances, tables, memories) = (
        footprint.core_instances,
        footprint.tables,
        footprint.memories,
    );
    eprintln!("{name}: {instances} core instances, {tables} tables, {memories} memories");
    for (what, used, limit) in [
        ("core instances", instances, MAX_INSTANCES),
        ("tables", tables, MAX_TABLES),
        ("memories", memories, MAX_MEMORIES),
    ] {
        assert!(
            used.saturating_mul(2) <= limit,
            "{name} uses {used} {what}: the limit {limit} leaves less than 2x margin"
        );
    }
    let component = load(path);
    let report = run(runtime(), &component);
    eprintln!("{}", report.render());
    assert_eq!(report.failed(), 0, "{name}:\n{}", report.render());
    assert!(report.passed() >= 30, "{}", report.render());
}

#[test]
fn python_stub_passes_the_conformance_suite() {
    if let Some(path) = python_stub() {
        passes_the_suite("python-stub", &path);
    }
}

#[test]
fn js_stub_passes_the_conformance_suite() {
    if let Some(path) = js_stub() {
        passes_the_suite("js-stub", &path);
    }
}

/// Node count of the simulator run on the Python stub: the scenario's
/// smallest useful size (a seed node, a victim, two observers).
const SIM_NODES: usize = 4;
/// Time scale of that run's long phases, as the Rust stub's scenario test
/// uses (`tests/simulation/scenarios.rs`): the stub has no protocol, so
/// longer phases would only repeat the same nothing.
const SIM_TIME_SCALE: f64 = 0.05;

/// Runs `scenario` once on `component` at [`SIM_NODES`] nodes.
fn simulate(scenario: Scenario, component: ComponentChoice) -> ScenarioRun {
    let params = ScenarioParams {
        nodes: Some(SIM_NODES),
        seed: 3,
        component,
        time_scale: SIM_TIME_SCALE,
        ..ScenarioParams::default()
    };
    nodeplane_sim::scenarios::run(scenario, &params)
        .unwrap_or_else(|e| panic!("{scenario} on {:?}: {e}", params.component))
}

/// Issue 17 item 5: the simulator runs any component that passes the
/// suite. S2 (a node crashes, then is watched for 2 × 120 virtual
/// seconds) on the Python stub file, exactly as `nodeplane sim --scenario
/// S2 --component FILE` runs it: a component other than the node plane
/// is held to the safety invariants only (as `--component stub` is: a
/// stub has no network, so nobody converges or detects the crash), and
/// any component crash or call error fails the run. Its report must be
/// the Rust stub's, figure for figure: same semantics, same outcome.
#[test]
fn the_simulator_runs_a_scenario_on_the_python_stub() {
    let Some(path) = python_stub() else {
        return;
    };
    let started = Instant::now();
    let python = simulate(
        Scenario::S2,
        ComponentChoice::File(path.display().to_string()),
    );
    eprintln!(
        "S2 at N = {SIM_NODES} on the Python stub in {:.1} s: {:?}",
        started.elapsed().as_secs_f64(),
        python.figures
    );
    assert!(
        python.violation.is_none(),
        "S2 on the Python stub: {}",
        python.violation.unwrap_or_default()
    );
    for name in ["crashes", "call_errors"] {
        assert_eq!(
            python.figures.get(name),
            Some(&0.0),
            "{name} must be 0: {:?}",
            python.figures
        );
    }
    // The same world driven by hand: every node runs the Python stub,
    // lists itself alive (the stub's `join`), survives a crash and a
    // restart on its store, and the safety invariants hold.
    let mut sim = Sim::builder()
        .nodes(SIM_NODES)
        .seed(3)
        .component(ComponentChoice::File(path.display().to_string()))
        .keep_logs(true)
        .build()
        .expect("a world of Python stubs");
    sim.run_for(Duration::from_secs(5));
    sim.crash(2);
    sim.run_for(Duration::from_secs(2));
    sim.restart(2)
        .expect("the Python stub restarts on its store");
    sim.run_for(Duration::from_secs(2));
    sim.check(Expect::Safety)
        .expect("the Python stub keeps the safety invariants");
    for i in 0..SIM_NODES {
        let node = sim.node(i).handle().expect("running");
        assert_eq!(node.lock().component_info().0, "python-stub", "n{i}");
        assert_eq!(sim.state_of(i, i), Some(PeerState::Alive), "n{i}");
    }
    // Its event log (the Python stub's own `log-event` lines): one join of
    // itself per life, the second after the restart.
    let log = sim.node(2).log();
    let own_joins: Vec<u64> = log
        .iter()
        .filter(|e| e.kind == "membership-update" && e.detail.contains("\"peer\": \"n2\""))
        .map(|e| e.at_ms)
        .collect();
    assert!(
        own_joins.len() == 2 && own_joins.iter().any(|&t| t >= 7_000),
        "n2 should have joined once per life: {log:?}"
    );

    let rust = simulate(Scenario::S2, ComponentChoice::Builtin(STUB.into()));
    let figures = |run: &ScenarioRun| {
        report::to_json(std::slice::from_ref(run))["seeds"][0]["figures"].clone()
    };
    assert_eq!(
        figures(&python),
        figures(&rust),
        "the Python stub's S2 report differs from the Rust stub's"
    );
}

fn config(id: &str, port: u16) -> NodeConfig {
    NodeConfig {
        node_id: id.into(),
        address: format!("127.0.0.1:{port}"),
        metadata: vec![("overlay-ip".into(), "10.0.0.1".into())],
        tunables: Default::default(),
    }
}

/// Issue 17 item 5: a running node swaps to the Python stub and back, and
/// its subscribers see one consistent, gap-free stream of updates.
#[test]
fn a_node_swaps_to_the_python_stub_and_back() {
    let Some(path) = python_stub() else {
        return;
    };
    let rt = runtime();
    let python = std::fs::read(&path).expect("the built example");
    let rust = rt
        .load(
            nodeplane_artifacts::STUB_BYTES,
            ComponentSource::Builtin("stub".into()),
        )
        .expect("stub");
    let node = Node::start(rt, &rust, config("a", 7001), RecordingServices::new()).expect("start");
    let plane = NodeHandle::new(node);
    let updates = plane.subscribe_membership_updates().expect("subscribe");
    use nodeplane_interface::{ControlPlane, PeerState};
    plane.join(&["127.0.0.1:7002".into()]).expect("join");
    plane
        .report_peer_state("127.0.0.1:7002", PeerState::Suspect)
        .expect("report");
    plane
        .swap(
            rt,
            &python,
            ComponentSource::File(path.display().to_string()),
        )
        .expect("swap to the Python stub");
    let name = plane.lock().component_info().0.to_string();
    assert_eq!(name, "python-stub");
    // The fresh Python stub re-joined with the same seeds: the peer is
    // alive again there, and a report works on it.
    assert_eq!(
        plane
            .report_peer_state("127.0.0.1:7002", PeerState::Dead)
            .expect("report on the Python stub"),
        PeerState::Suspect
    );
    plane
        .swap(
            rt,
            nodeplane_artifacts::STUB_BYTES,
            ComponentSource::Builtin("stub".into()),
        )
        .expect("swap back");
    let view = plane.get_members().expect("members");
    let seen = updates.drain();
    for pair in seen.windows(2) {
        assert_eq!(pair[1].version, pair[0].version + 1, "{seen:?}");
    }
    assert_eq!(seen.last().map(|u| u.version), Some(view.version));
    assert_eq!(plane.lock().crashes(), 0);
}

/// The second load of the same bytes, even by a new runtime, does not
/// compile them again (wasmtime's compilation cache).
#[test]
fn a_second_load_of_the_python_stub_is_not_compiled_again() {
    let Some(path) = python_stub() else {
        return;
    };
    let _ = load(&path);
    let fresh = Runtime::new(Limits::default()).expect("engine");
    let started = Instant::now();
    fresh.load_file(&path).expect("loads");
    let second = started.elapsed();
    eprintln!("second load (new runtime): {:.2} s", second.as_secs_f64());
    assert!(
        second.as_secs_f64() < 5.0,
        "a cached load took {:.1} s",
        second.as_secs_f64()
    );
}
