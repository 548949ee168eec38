//! `nodeplane demo`: a live local cluster, narrated as a timeline.
//!
//! Five agents run as separate processes, each with a Mesh VPN host
//! attached through the compatibility API (so the VPN is a client of the
//! Control Plane Interface only). The story: the VPN starts on the stub,
//! the control plane is hot-swapped to the node plane on every node, a node
//! is killed and restarted, a partition is injected and healed. Every step
//! is checked against a deadline and a failed check fails the run.
//!
//! By default the agents run on loopback with the Mesh VPN hosts in this
//! process ([`cluster`]); with `--dataplane wireguard` they run on the
//! namespace test bed ([`netns`], [`wireguard`]) with real WireGuard
//! tunnels, and overlay pings are shown at each step. [`stage`] holds the
//! cluster and the checks, [`acts`] tells the story one act at a time,
//! [`commands`] are the hidden subcommands the test bed runs.

mod acts;
mod cluster;
pub mod commands;
// Shared with the `dataplane` tests (tests/support/netns.rs includes the
// file), which use parts of the bed the demo does not.
#[allow(dead_code)]
mod netns;
mod stage;
mod wireguard;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::ValueEnum;

use stage::{Cluster, Demo};

/// Agents in the demo cluster.
const NODES: usize = 5;
/// The longest any single step may take before the demo fails.
const STEP_DEADLINE: Duration = Duration::from_secs(40);
/// How often views are polled.
const POLL: Duration = Duration::from_millis(100);

/// Set by SIGINT, SIGTERM or SIGHUP during `--dataplane wireguard`: every
/// wait then fails at once, so the run unwinds and tears the bed down.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether the demo was asked to stop.
fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The data plane the demo runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Dataplane {
    /// Real WireGuard tunnels (`wireguard-go`) between network namespaces;
    /// needs root, `/dev/net/tun`, `ip`, `wireguard-go` and `ping`.
    Wireguard,
}

/// Runs the demo; every step is checked and a failed check fails the run.
pub fn run(dataplane: Option<Dataplane>) -> Result<()> {
    match dataplane {
        None => {
            let root = std::env::temp_dir().join(format!("nodeplane-demo-{}", std::process::id()));
            std::fs::create_dir_all(&root).context("creating the demo directory")?;
            let result = story(Box::new(cluster::Loopback::new(&root)));
            let _ = std::fs::remove_dir_all(&root);
            result
        }
        Some(Dataplane::Wireguard) => run_wireguard(),
    }
}

/// The demo on the namespace test bed: checks what it needs first, stops
/// cleanly on Ctrl-C, and tears the bed down on every way out (the bed's
/// `Drop` ends only the processes it started and deletes only what it
/// created).
fn run_wireguard() -> Result<()> {
    if let Some(missing) = wireguard::requirements() {
        eprintln!("{missing}");
        std::process::exit(2);
    }
    let _signals = Signals::install()?;
    let exe = std::env::current_exe().context("locating the nodeplane binary")?;
    let result = story(Box::new(wireguard::WireGuard::new(exe)));
    if interrupted() {
        eprintln!("interrupted: the test bed was torn down");
        std::process::exit(130);
    }
    result
}

/// The acts in order (README, "What the demo shows"). On a failure the
/// cluster's diagnostics (log tails, interfaces) are printed before it is
/// torn down.
fn story(cluster: Box<dyn Cluster>) -> Result<()> {
    let mut demo = Demo::new(cluster, NODES);
    let result = acts(&mut demo);
    if result.is_err() && !interrupted() {
        if let Some(diagnostics) = demo.cluster.diagnostics() {
            eprintln!("{diagnostics}");
        }
    }
    result
}

fn acts(demo: &mut Demo) -> Result<()> {
    acts::start_on_stub(demo)?;
    acts::hot_swap(demo)?;
    acts::discovery(demo)?;
    let killed = acts::kill_and_verdict(demo)?;
    acts::restart(demo, &killed)?;
    acts::partition_and_heal(demo)?;
    acts::summary(demo)
}

/// The signal watcher of the WireGuard demo: SIGINT (Ctrl-C), SIGTERM and
/// SIGHUP set [`INTERRUPTED`] instead of ending the process, so that the
/// test bed is torn down. The watcher thread lives as long as the process.
struct Signals {
    _runtime: std::thread::JoinHandle<()>,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .context("starting the signal watcher")?;
        // Registered here, before the bed exists: a signal from now on is
        // caught.
        let (mut int, mut term, mut hup) = {
            let _guard = runtime.enter();
            (
                signal(SignalKind::interrupt()).context("catching SIGINT")?,
                signal(SignalKind::terminate()).context("catching SIGTERM")?,
                signal(SignalKind::hangup()).context("catching SIGHUP")?,
            )
        };
        let thread = std::thread::Builder::new()
            .name("demo-signals".into())
            .spawn(move || {
                runtime.block_on(async {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                        _ = hup.recv() => {}
                    }
                });
                INTERRUPTED.store(true, Ordering::SeqCst);
                eprintln!("\nstopping: tearing the test bed down (only what this run created)");
            })
            .context("starting the signal watcher")?;
        Ok(Signals { _runtime: thread })
    }
}
