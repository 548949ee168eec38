//! `nodeplane demo`: the live demo.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use nodeplane_interface::{ControlPlane, PeerState};
use nodeplane_runtime::{MemoryServices, Node, NodeConfig, NodeHandle};

use crate::components;

fn step(started: Instant, text: &str) {
    println!("[{:>7.3}s] {text}", started.elapsed().as_secs_f64());
}

/// Runs the demo; every step is checked and a failed check fails the run.
pub fn run() -> Result<()> {
    let started = Instant::now();
    let runtime = components::runtime()?;
    let stub = components::load(&runtime, "stub")?;
    step(started, &format!("loaded the stub control plane (sha256 {})", &stub.hash_hex()[..16]));
    let config = NodeConfig {
        node_id: "demo-0".into(),
        address: "127.0.0.1:7946".into(),
        metadata: vec![("overlay-ip".into(), "100.64.0.1".into())],
        tunables: Default::default(),
    };
    let plane = NodeHandle::new(Node::start(&runtime, &stub, config, MemoryServices::new())?);
    let updates = plane.subscribe_membership_updates()?;
    let seeds = vec!["127.0.0.1:7947".to_string(), "127.0.0.1:7948".to_string()];
    let view = plane.join(&seeds).context("join")?;
    step(started, &format!("joined through {} seeds: {} members, view version {}", seeds.len(), view.members.len(), view.version));
    ensure!(view.members.len() == 3, "expected 3 members after join");
    for m in &view.members {
        println!("           {:<16} {:<16} {:<8} incarnation {}", m.id, m.address, m.state, m.incarnation);
    }
    let state = plane.report_peer_state("127.0.0.1:7947", PeerState::Dead)?;
    step(started, &format!("reported 127.0.0.1:7947 down: now {state} (a report is evidence, not a verdict)"));
    ensure!(state == PeerState::Suspect, "a first report must only raise suspicion");
    let heartbeat = plane.publish_heartbeat()?;
    step(started, &format!("published heartbeat #{heartbeat}"));
    plane.leave()?;
    step(started, "left gracefully");
    let received = updates.drain();
    step(started, &format!("subscriber received {} updates:", received.len()));
    for u in &received {
        println!(
            "           v{:<3} {:<16} {:>7} -> {:<7} ({:?})",
            u.version,
            u.peer,
            u.previous.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            u.current.state,
            u.cause
        );
    }
    ensure!(received.len() == 5, "expected 5 updates, got {}", received.len());
    step(started, "demo finished: every check passed");
    Ok(())
}
