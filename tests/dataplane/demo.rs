//! `nodeplane demo --dataplane wireguard` end to end: the seven acts on the
//! namespace test bed, every overlay-ping check included (the demo fails
//! itself when one does not hold). One run, about 20 s.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::e2e::can_run;

/// Longest the demo may take before the test calls it hung (it takes
/// about 20 s; a cold component cache adds the compilation).
const DEMO_BOUND: Duration = Duration::from_secs(240);

#[test]
fn the_wireguard_demo_runs_every_act() {
    let _serial = crate::support::agents::SERIAL
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if !can_run("the_wireguard_demo_runs_every_act") {
        return;
    }
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodeplane"))
        .args(["demo", "--dataplane", "wireguard"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the demo");
    loop {
        if let Some(_status) = child.try_wait().expect("wait for the demo") {
            break;
        }
        if started.elapsed() > DEMO_BOUND {
            // SIGTERM: the demo tears its test bed down on it.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
            panic!("the demo did not finish within {DEMO_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("demo output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.to_lowercase().contains("ping"),
        "the demo shows no overlay ping:\n{stdout}"
    );
    eprintln!(
        "demo --dataplane wireguard: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
