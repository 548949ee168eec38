//! Building the example control planes of `examples/` with their
//! toolchains, into `target/examples/`, never into the source tree; when a
//! toolchain is missing, a loud SKIPPED banner says why and the caller
//! skips. Shared by the `interface` binary (conformance suite, simulator)
//! and the `agent` binary (a live swap of a real agent), which includes
//! this file with `#[path]`.
#![allow(dead_code)] // each including test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Where the examples are built: `target/examples/<name>/`.
fn out_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("target"));
    let dir = target.join("examples").join(name);
    std::fs::create_dir_all(&dir).expect("creating the examples' build directory");
    dir
}

/// Prints why an example was not built, where a CI log shows it (each
/// test that skips prints it).
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

/// Builds an example once per test process (tests run on several threads
/// and would otherwise run the toolchain side by side, each writing the
/// same output file); `None`, after the SKIPPED banner, when its
/// toolchain is missing.
fn once(
    example: &str,
    cell: &'static OnceLock<Result<PathBuf, &'static str>>,
    build: fn() -> Result<PathBuf, &'static str>,
) -> Option<PathBuf> {
    match cell.get_or_init(build) {
        Ok(path) => Some(path.clone()),
        Err(why) => {
            skip(example, why);
            None
        }
    }
}

/// `examples/python-stub` built with componentize-py, if it is installed
/// (`$NODEPLANE_COMPONENTIZE_PY`, `target/tools/py/bin/componentize-py`
/// as `.ci/run` installs it, or `PATH`).
pub fn python_stub() -> Option<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, &'static str>> = OnceLock::new();
    once("python-stub", &BUILT, build_python_stub)
}

/// `examples/js-stub` built with ComponentizeJS (jco's componentizer), if
/// `npm ci` was run in its folder.
pub fn js_stub() -> Option<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, &'static str>> = OnceLock::new();
    once("js-stub", &BUILT, build_js_stub)
}

fn build_python_stub() -> Result<PathBuf, &'static str> {
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
        return Err("componentize-py is not installed (pip install componentize-py==0.25.1)");
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
    Ok(output)
}

fn build_js_stub() -> Result<PathBuf, &'static str> {
    let source = Path::new(ROOT).join("examples/js-stub");
    let tool = source.join("node_modules/.bin/componentize-js");
    if !tool.is_file() {
        return Err("its toolchain is not installed (cd examples/js-stub && npm ci)");
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
    Ok(output)
}
