//! `nodeplane sim` and `bench` draw a progress bar only on a terminal: with
//! stderr a pipe, a run prints exactly what it prints with `--quiet`, and
//! nothing at all on stderr.

use std::process::{Command, Output};

fn nodeplane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodeplane"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("nodeplane runs")
}

#[test]
fn no_progress_output_when_stderr_is_not_a_terminal() {
    let sim = [
        "sim",
        "--scenario",
        "S1",
        "--nodes",
        "4",
        "--seeds",
        "1",
        "--time-scale",
        "0.1",
    ];
    let plain = nodeplane(&sim);
    let quiet = nodeplane(&[&sim[..], &["--quiet"]].concat());
    assert!(plain.status.success(), "{plain:?}");
    assert!(quiet.status.success(), "{quiet:?}");
    assert_eq!(
        String::from_utf8_lossy(&plain.stderr),
        "",
        "sim wrote to stderr"
    );
    assert_eq!(
        String::from_utf8_lossy(&plain.stdout),
        String::from_utf8_lossy(&quiet.stdout)
    );
    assert!(String::from_utf8_lossy(&plain.stdout).contains("S1"));

    let bench = ["bench", "--only", "s1", "--seeds", "1", "--max-nodes", "16"];
    let plain = nodeplane(&bench);
    let quiet = nodeplane(&[&bench[..], &["--quiet"]].concat());
    assert!(plain.status.success(), "{plain:?}");
    assert_eq!(
        String::from_utf8_lossy(&plain.stderr),
        "",
        "bench wrote to stderr"
    );
    // Wall-clock figures differ between two runs: compare the lines
    // without them.
    let figures = |o: &Output| -> Vec<String> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.contains("wall"))
            .map(String::from)
            .collect()
    };
    assert_eq!(figures(&plain), figures(&quiet));
}
