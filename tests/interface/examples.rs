//! The example control planes in other languages (`examples/`): each is
//! built with its toolchain when the toolchain is installed (`.ci/run`
//! installs both), into `target/examples/`, never into the source tree,
//! and must pass the whole conformance suite unmodified. Without the
//! toolchain the test says loudly why it skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use nodeplane_conformance::run;
use nodeplane_runtime::{
    footprint, ComponentSource, Limits, LoadedComponent, Node, NodeConfig, NodeHandle,
    RecordingServices, Runtime, MAX_INSTANCES, MAX_MEMORIES, MAX_TABLES,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One runtime per test process.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(Limits::default()).expect("engine"))
}

/// Where the examples are built: `target/examples/<name>/`.
fn out_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("target"));
    let dir = target.join("examples").join(name);
    std::fs::create_dir_all(&dir).expect("creating the examples' build directory");
    dir
}

/// Prints why an example was not built, where a CI log shows it.
fn skip(example: &str, why: &str) {
    let banner = "!".repeat(72);
    eprintln!("{banner}\nSKIPPED: {example} not built: {why}\n(.ci/run installs the toolchain; see examples/{example}/README.md)\n{banner}");
}

/// Whether `output` is newer than every input (then it is not rebuilt).
fn up_to_date(output: &Path, inputs: &[PathBuf]) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(output) else {
        return false;
    };
    inputs
        .iter()
        .all(|input| modified(input).is_some_and(|m| m < built))
}

/// Runs `command`, panicking with its output if it fails.
fn build(example: &str, mut command: Command) {
    let started = Instant::now();
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "building {example} failed: {command:?}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "built {example} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The first existing file among `candidates`.
fn first_existing(candidates: Vec<PathBuf>) -> Option<PathBuf> {
    candidates.into_iter().find(|p| p.is_file())
}

/// A program on `PATH`.
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `examples/python-stub` built with componentize-py, if it is installed
/// (`$NODEPLANE_COMPONENTIZE_PY`, `target/tools/py/bin/componentize-py`
/// as `.ci/run` installs it, or `PATH`).
fn python_stub() -> Option<PathBuf> {
    let source = Path::new(ROOT).join("examples/python-stub");
    let tool = std::env::var_os("NODEPLANE_COMPONENTIZE_PY")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| {
            let target = out_dir("python-stub");
            let tools = target
                .parent()?
                .parent()?
                .join("tools/py/bin/componentize-py");
            first_existing(vec![tools])
        })
        .or_else(|| on_path("componentize-py"));
    let Some(tool) = tool else {
        skip(
            "python-stub",
            "componentize-py is not installed (pip install componentize-py==0.25.1)",
        );
        return None;
    };
    let output = out_dir("python-stub").join("stub.wasm");
    let inputs = vec![
        source.join("app.py"),
        Path::new(ROOT).join("wit/control.wit"),
    ];
    if !up_to_date(&output, &inputs) {
        let mut command = Command::new(tool);
        command
            .current_dir(&source)
            // Python would write __pycache__ into the source tree.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .args([
                "-d",
                "../../wit",
                "-w",
                "control-plane",
                "componentize",
                "app",
                "-o",
            ])
            .arg(&output);
        build("python-stub", command);
    }
    Some(output)
}

/// `examples/js-stub` built with ComponentizeJS (jco's componentizer), if
/// `npm ci` was run in its folder.
fn js_stub() -> Option<PathBuf> {
    let source = Path::new(ROOT).join("examples/js-stub");
    let tool = source.join("node_modules/.bin/componentize-js");
    if !tool.is_file() {
        skip(
            "js-stub",
            "its toolchain is not installed (cd examples/js-stub && npm ci)",
        );
        return None;
    }
    let output = out_dir("js-stub").join("stub.wasm");
    let inputs = vec![
        source.join("app.js"),
        source.join("package-lock.json"),
        Path::new(ROOT).join("wit/control.wit"),
    ];
    if !up_to_date(&output, &inputs) {
        let mut command = Command::new(tool);
        command
            .current_dir(&source)
            .args(["--wit", "../../wit", "-n", "control-plane", "app.js", "-o"])
            .arg(&output);
        build("js-stub", command);
    }
    Some(output)
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
