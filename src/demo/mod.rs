//! `nodeplane demo`: a live local cluster, narrated as a timeline.
//!
//! Five agents run as separate processes on loopback, each with a Mesh VPN
//! host attached through the compatibility API (so the VPN is a client of
//! the Control Plane Interface only). The story: the VPN starts on the stub,
//! the control plane is hot-swapped to the node plane on every node, a node
//! is killed and restarted, a partition is injected and healed. Every step
//! is checked against a deadline and a failed check fails the run.
//!
//! [`cluster`] runs the agent processes, [`stage`] holds them with their
//! VPNs and the checks, [`acts`] tells the story one act at a time.

mod acts;
mod cluster;
mod stage;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use stage::Demo;

/// Agents in the demo cluster.
const NODES: usize = 5;
/// The longest any single step may take before the demo fails.
const STEP_DEADLINE: Duration = Duration::from_secs(40);
/// How often views are polled.
const POLL: Duration = Duration::from_millis(100);

/// Runs the demo; every step is checked and a failed check fails the run.
pub fn run() -> Result<()> {
    let root = std::env::temp_dir().join(format!("nodeplane-demo-{}", std::process::id()));
    std::fs::create_dir_all(&root).context("creating the demo directory")?;
    let result = story(&root);
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// The acts in order (README, "What the demo shows").
fn story(root: &Path) -> Result<()> {
    let mut demo = Demo::new();
    acts::start_on_stub(&mut demo, root)?;
    acts::hot_swap(&mut demo)?;
    acts::discovery(&mut demo)?;
    let killed = acts::kill_and_verdict(&mut demo)?;
    acts::restart(&mut demo, &killed)?;
    acts::partition_and_heal(&mut demo)?;
    acts::summary(&mut demo)
}
