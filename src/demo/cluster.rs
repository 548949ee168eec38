//! A local cluster of `nodeplane agent` processes for the demo: started,
//! killed, restarted and stopped by the demo, never left behind; each with
//! a Mesh VPN host in the demo's process ([`Loopback`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nodeplane_agent::client::ApiClient;
use nodeplane_agent::ports::free_port;
use nodeplane_compat_client::CompatClient;
use nodeplane_meshvpn::{MeshVpn, MeshVpnConfig};
use serde_json::json;

use super::stage::{Cluster, NodeApi, ShownPeer, VpnShown};

/// The demo's cluster key file, in its temporary directory: one key for
/// every agent, made by [`write_cluster_key`] before any agent starts.
pub const KEY_FILE: &str = "cluster.key";

/// Writes a fresh cluster key (as `nodeplane keygen` makes it) to
/// `root/`[`KEY_FILE`], mode 0600; returns its fingerprint.
pub fn write_cluster_key(root: &Path) -> Result<String> {
    let key = nodeplane_agent::seal::ClusterKey::generate();
    nodeplane_agent::seal::write_key_file(&root.join(KEY_FILE), &key)
        .context("writing the demo's cluster key")?;
    Ok(key.fingerprint())
}

/// How long an agent may take to answer `/healthz` after it was started.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// Timeout of one request to an agent's API.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One agent of the demo cluster.
pub struct Agent {
    /// Node id.
    pub id: String,
    /// Control-channel address.
    pub listen: SocketAddr,
    /// API address.
    pub api: SocketAddr,
    /// Overlay IP offered as metadata.
    pub overlay_ip: String,
    /// WireGuard-style public key offered as metadata.
    pub public_key: String,
    data_dir: PathBuf,
    key_file: PathBuf,
    seed: SocketAddr,
    exe: PathBuf,
    client: ApiClient,
    child: Option<Child>,
}

impl Agent {
    /// Plans agent `index`; node 0 is everybody's seed.
    pub fn plan(index: usize, seed: Option<SocketAddr>, root: &Path) -> Result<Agent> {
        let ip = "127.0.0.1";
        let port = || free_port(ip).context("picking a free port");
        let listen: SocketAddr = format!("{ip}:{}", port()?).parse()?;
        let api: SocketAddr = format!("{ip}:{}", port()?).parse()?;
        let key_bytes = [index as u8 + 1; 32];
        Ok(Agent {
            id: format!("node-{index}"),
            listen,
            api,
            overlay_ip: format!("100.64.0.{}", index + 1),
            public_key: base64_encode(&key_bytes),
            data_dir: root.join(format!("node-{index}")),
            key_file: root.join(KEY_FILE),
            seed: seed.unwrap_or(listen),
            // Resolved once: a rebuild during the demo replaces the file.
            exe: std::env::current_exe().context("locating the nodeplane binary")?,
            client: ApiClient::new(&api.to_string(), None).with_timeout(REQUEST_TIMEOUT),
            child: None,
        })
    }

    /// The client of this agent's API.
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    /// Starts the agent process with `component` and waits until it serves.
    pub fn start(&mut self, component: &str) -> Result<()> {
        let exe = &self.exe;
        let log = std::fs::File::create(self.data_dir.with_extension("log"))
            .context("creating the agent log file")?;
        std::fs::create_dir_all(&self.data_dir)?;
        let child = Command::new(exe)
            .arg("agent")
            .args(["--node-id", &self.id])
            .args(["--listen", &self.listen.to_string()])
            .args(["--api", &self.api.to_string()])
            .args(["--seed", &self.seed.to_string()])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--cluster-key-file")
            .arg(&self.key_file)
            .args(["--component", component])
            .args(["--metadata", &format!("overlay-ip={}", self.overlay_ip)])
            .args(["--metadata", &format!("public-key={}", self.public_key)])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting agent {}", self.id))?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < START_DEADLINE {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "agent {} exited during start-up ({status}); see {}",
                    self.id,
                    self.data_dir.with_extension("log").display()
                );
            }
            if self.client.healthz().is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "agent {} did not answer /healthz within {START_DEADLINE:?}",
            self.id
        )
    }

    /// Kills the process without warning (SIGKILL): no leave, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process with SIGTERM (graceful leave) and waits a bounded
    /// time, then kills it.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Standard base64 with padding (for the demo's public keys).
fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The default demo's cluster: agents on loopback, each with a Mesh VPN
/// host in this process attached through the compatibility API (so the VPN
/// is a client of the Control Plane Interface only).
pub struct Loopback {
    root: PathBuf,
    agents: Vec<Agent>,
    vpns: Vec<MeshVpn<CompatClient>>,
}

impl Loopback {
    /// A cluster keeping its key, data and logs under `root`.
    pub fn new(root: &Path) -> Loopback {
        Loopback {
            root: root.to_owned(),
            agents: Vec::new(),
            vpns: Vec::new(),
        }
    }

    fn agent(&self, i: usize) -> Result<&Agent> {
        self.agents.get(i).with_context(|| format!("no agent {i}"))
    }
}

impl Cluster for Loopback {
    fn setup(&self) -> &'static str {
        "each with a Mesh VPN host"
    }

    fn prepare(&mut self, nodes: usize) -> Result<String> {
        let root = &self.root;
        let fingerprint = write_cluster_key(root)?;
        let seed = Agent::plan(0, None, root)?;
        let seed_addr = seed.listen;
        self.agents.push(seed);
        for i in 1..nodes {
            self.agents.push(Agent::plan(i, Some(seed_addr), root)?);
        }
        Ok(fingerprint)
    }

    fn id(&self, i: usize) -> String {
        self.agents
            .get(i)
            .map_or_else(|| format!("node-{i}"), |a| a.id.clone())
    }

    fn describe(&self, i: usize) -> String {
        match self.agents.get(i) {
            Some(a) => format!("listens on {}, API http://{}", a.listen, a.api),
            None => String::new(),
        }
    }

    fn api(&self, i: usize) -> Result<&dyn NodeApi> {
        Ok(self.agent(i)?.client())
    }

    fn start_all(&mut self, component: &str) -> Result<()> {
        for agent in self.agents.iter_mut() {
            agent.start(component)?;
        }
        for agent in &self.agents {
            let vpn = MeshVpn::new(
                CompatClient::new(agent.client().base()),
                MeshVpnConfig {
                    local_node_id: Some(agent.id.clone()),
                    ..MeshVpnConfig::default()
                },
            );
            self.vpns.push(vpn);
        }
        Ok(())
    }

    fn restart(&mut self, i: usize, component: &str) -> Result<()> {
        self.agents
            .get_mut(i)
            .with_context(|| format!("no agent {i}"))?
            .start(component)
    }

    fn kill(&mut self, i: usize) {
        if let Some(agent) = self.agents.get_mut(i) {
            agent.kill();
        }
    }

    /// Agent-level fault injection: every link across the cut is blocked
    /// on both of its ends.
    fn partition(&mut self, majority: &[usize], minority: &[usize]) -> Result<Option<String>> {
        for &a in majority {
            for &b in minority {
                for (from, to) in [(a, b), (b, a)] {
                    self.set_link(from, to, "block")?;
                }
            }
        }
        Ok(None)
    }

    fn heal(&mut self, nodes: &[usize]) -> Result<()> {
        for &from in nodes {
            for &to in nodes {
                if from != to {
                    self.set_link(from, to, "unblock")?;
                }
            }
        }
        Ok(())
    }

    fn stop_all(&mut self) {
        for agent in self.agents.iter_mut() {
            agent.terminate();
        }
    }

    fn poll_vpns(&mut self, running: &[usize]) {
        for &i in running {
            if let Some(vpn) = self.vpns.get_mut(i) {
                let _ = vpn.poll();
            }
        }
    }

    fn vpn(&self, i: usize) -> VpnShown {
        let Some(vpn) = self.vpns.get(i) else {
            return VpnShown {
                what: "VPN peer set".into(),
                serial: None,
                peers: Vec::new(),
            };
        };
        let set = vpn.peer_set();
        VpnShown {
            what: "VPN peer set".into(),
            serial: Some(set.serial),
            peers: set
                .peers
                .values()
                .map(|p| ShownPeer {
                    id: p.node_id.clone(),
                    overlay: p.tunnel.as_ref().ok().map(|t| t.overlay_ip.to_string()),
                })
                .collect(),
        }
    }

    fn vpn_shows_incomplete(&self) -> bool {
        true
    }

    fn ping_failures(&self, _pairs: &[(usize, usize)]) -> Option<Vec<(usize, usize)>> {
        None
    }

    fn diagnostics(&self) -> Option<String> {
        None
    }
}

impl Loopback {
    /// Blocks or unblocks (`action`) all traffic between node `from` and
    /// node `to`, on `from`'s side.
    fn set_link(&self, from: usize, to: usize, action: &str) -> Result<()> {
        let peer = self.id(to);
        self.agent(from)?
            .client()
            .set_faults(&json!({"peer": peer, "direction": "both", "action": action}))?;
        Ok(())
    }
}
