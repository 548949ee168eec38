//! Mesh VPN integration, mode (d): the same suite as the in-process modes
//! (`modes.rs`), now against real `nodeplane agent` processes through the
//! compatibility API and `CompatClient`: what a Mesh VPN in another process
//! sees.

use crate::suite::{suite, test_public_key, ExpectedPeer, Harness};
use crate::support::agents::{free_port, log_tails, SERIAL};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodeplane_compat_client::{CompatClient, ControlPlane};
use nodeplane_interface::{ControlError, NodeId};
use nodeplane_meshvpn::{MeshVpn, MeshVpnConfig, MeshVpnError};

/// Wait between polls of the suite (real time).
const STEP: Duration = Duration::from_millis(100);
/// Bound on any one condition: agent start-up (component compilation),
/// convergence, and the death rule on a loaded two-core machine.
const CONDITION_BOUND: Duration = Duration::from_secs(90);

/// One agent process; killed (SIGKILL) on drop.
struct Agent {
    id: &'static str,
    ip: String,
    overlay_ip: &'static str,
    key: u8,
    listen: SocketAddr,
    api: SocketAddr,
    data_dir: PathBuf,
    child: Option<Child>,
}

impl Agent {
    fn start(&mut self, seed: Option<SocketAddr>, logs: &std::path::Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(format!("{}.log", self.id)))
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodeplane"));
        cmd.args(["agent", "--node-id", self.id])
            .args(["--listen", &self.listen.to_string()])
            .args(["--api", &self.api.to_string()])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--metadata", &format!("overlay-ip={}", self.overlay_ip)])
            .args([
                "--metadata",
                &format!("public-key={}", test_public_key(self.key)),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(seed) = seed {
            cmd.args(["--seed", &seed.to_string()]);
        }
        self.child = Some(cmd.spawn().expect("spawn agent"));
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three agents running the node plane; the Mesh VPN runs beside `m1`
/// and reaches it through its compatibility API. `m2` has complete
/// metadata (and is crashed and restarted on a new port), `m3` an overlay
/// IP that is not an IP.
struct AgentHarness {
    agents: Vec<Agent>,
    root: PathBuf,
}

impl AgentHarness {
    fn new() -> AgentHarness {
        let root = std::env::temp_dir().join(format!("nodeplane-meshvpn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let specs = [("m1", "10.8.0.1"), ("m2", "10.8.0.2"), ("m3", "not-an-ip")];
        let agents = specs
            .iter()
            .enumerate()
            .map(|(i, (id, overlay_ip))| {
                let ip = format!("127.0.0.{}", 40 + i);
                Agent {
                    id,
                    listen: format!("{ip}:{}", free_port(&ip)).parse().unwrap(),
                    api: format!("{ip}:{}", free_port(&ip)).parse().unwrap(),
                    ip,
                    overlay_ip,
                    key: 40 + i as u8,
                    data_dir: root.join(id),
                    child: None,
                }
            })
            .collect();
        let mut harness = AgentHarness { agents, root };
        let seed = harness.agents[0].listen;
        for i in 0..harness.agents.len() {
            let seed = (i != 0).then_some(seed);
            let root = harness.root.clone();
            harness.agents[i].start(seed, &root);
        }
        harness
    }

    fn client(&self) -> CompatClient {
        CompatClient::new(format!("http://{}", self.agents[0].api))
    }

    fn logs(&self) -> String {
        log_tails(&self.root, self.agents.iter().map(|n| n.id), 10)
    }
}

impl Drop for AgentHarness {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            agent.kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "agent logs (kept in {}):\n{}",
                self.root.display(),
                self.logs()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

impl Harness for AgentHarness {
    type Control = CompatClient;
    fn mode(&self) -> String {
        "agent compat API".into()
    }
    fn control(&self) -> CompatClient {
        self.client()
    }
    fn local_id(&self) -> NodeId {
        "m1".into()
    }
    fn step(&mut self) {
        // A poll interval of the suite's bounded wait loops.
        std::thread::sleep(STEP);
    }
    fn max_steps(&self) -> usize {
        (CONDITION_BOUND.as_millis() / STEP.as_millis()) as usize
    }
    fn expected(&self) -> Vec<ExpectedPeer> {
        self.agents[1..]
            .iter()
            .filter(|a| a.child.is_some())
            .map(|a| ExpectedPeer {
                node_id: a.id.into(),
                address: a.listen.to_string(),
                overlay_ip: a.overlay_ip.parse().ok(),
            })
            .collect()
    }
    fn crash_victim(&self) -> NodeId {
        "m2".into()
    }
    fn crash(&mut self, peer: &str) {
        let agent = self
            .agents
            .iter_mut()
            .find(|a| a.id == peer)
            .expect("known agent");
        agent.kill();
    }
    fn revive(&mut self, peer: &str) -> bool {
        let seed = self.agents[0].listen;
        let root = self.root.clone();
        let agent = self
            .agents
            .iter_mut()
            .find(|a| a.id == peer)
            .expect("known agent");
        // Same identity and data directory, new endpoint.
        agent.listen = format!("{}:{}", agent.ip, free_port(&agent.ip))
            .parse()
            .unwrap();
        agent.start(Some(seed), &root);
        true
    }
}

#[test]
fn mode_d_agent_through_the_compat_api() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut harness = AgentHarness::new();
    let report = suite(&mut harness);
    eprintln!("suite over the compat API: {report:?}");

    // The agent itself going away: the Mesh VPN keeps its set in force.
    let mut vpn = MeshVpn::new(
        harness.client(),
        MeshVpnConfig {
            local_node_id: Some("m1".into()),
            ..Default::default()
        },
    );
    let deadline = Instant::now() + CONDITION_BOUND;
    while vpn.peer_set().peers.len() != harness.expected().len() {
        assert!(Instant::now() < deadline, "a fresh Mesh VPN converges");
        let _ = vpn.poll_wait(STEP);
    }
    let before = vpn.peer_set().clone();
    harness.agents[0].kill();
    let err = vpn.resync().expect_err("the agent is gone");
    assert!(
        matches!(err, MeshVpnError::Control(ControlError::Unavailable(_))),
        "{err}"
    );
    assert!(vpn.poll().is_ok() || vpn.last_error().is_some());
    assert_eq!(vpn.peer_set(), &before, "the set in force is kept");
    assert!(matches!(
        harness.client().get_members(),
        Err(ControlError::Unavailable(_))
    ));
}
