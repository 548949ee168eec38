//! `nodeplane demo --dataplane wireguard`: the demo's cluster on the
//! namespace test bed ([`netns`](super::netns)). Each node is a network
//! namespace on one bridge with a `wireguard-go` interface, a `nodeplane
//! agent` (API on the namespace's loopback) and a `nodeplane meshvpn-host`
//! applying the peer set to the interface through the UAPI. The demo reads
//! the agents through `nodeplane api-call` run in their namespaces, the
//! interfaces through their UAPI sockets, and sends overlay pings between
//! the namespaces. A partition moves the minority's bridge ports to a
//! second bridge: the kernel, not the agent, drops the packets.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::netns::{missing, NetnsApi, Testbed, API_ADDR, CONTROL_PORT};
use super::stage::{Cluster, NodeApi, ShownPeer, VpnShown};
use super::{interrupted, POLL};

/// How long an agent in a namespace may take to answer `/healthz` after it
/// was started: it compiles its component (cached after the first run)
/// while the other namespaces' agents do the same on the shared cores.
const START_DEADLINE: Duration = Duration::from_secs(60);

impl NodeApi for NetnsApi {
    fn get(&self, path: &str) -> Result<Value> {
        NetnsApi::get(self, path).map_err(|e| anyhow!(e))
    }
    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        NetnsApi::post(self, path, body).map_err(|e| anyhow!(e))
    }
}

/// What is missing for the WireGuard demo, as one message; `None` when it
/// can run.
pub fn requirements() -> Option<String> {
    let missing = missing();
    if missing.is_empty() {
        return None;
    }
    let mut text = format!(
        "`nodeplane demo --dataplane wireguard` needs what this machine lacks:\n  - {}\n",
        missing.join("\n  - ")
    );
    if missing.iter().any(|m| m.contains("Debian package")) {
        text.push_str(
            "the tools: apt-get install wireguard-go wireguard-tools iproute2 iputils-ping\n",
        );
    }
    text.push_str("(`nodeplane demo` without the flag needs none of this)");
    Some(text)
}

/// The demo's cluster on the test bed.
pub struct WireGuard {
    exe: PathBuf,
    bed: Option<Testbed>,
    apis: Vec<NetnsApi>,
}

impl WireGuard {
    /// A cluster whose agents and Mesh VPN hosts run `exe` (this binary).
    pub fn new(exe: PathBuf) -> WireGuard {
        WireGuard {
            exe,
            bed: None,
            apis: Vec::new(),
        }
    }

    fn bed(&self) -> Result<&Testbed> {
        self.bed.as_ref().context("the test bed is not up")
    }

    fn bed_mut(&mut self) -> Result<&mut Testbed> {
        self.bed.as_mut().context("the test bed is not up")
    }

    /// Waits until node `i`'s agent answers `/healthz`.
    fn wait_healthy(&self, i: usize) -> Result<()> {
        let api = self.apis.get(i).with_context(|| format!("no node {i}"))?;
        let started = Instant::now();
        loop {
            if interrupted() {
                bail!("interrupted while starting {}", self.id(i));
            }
            if NodeApi::get(api, "/healthz").is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_DEADLINE {
                bail!(
                    "agent {} did not answer /healthz within {START_DEADLINE:?}\n{}",
                    self.id(i),
                    self.diagnostics().unwrap_or_default()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl WireGuard {
    /// Waits until node `i`'s Mesh VPN host has made its first round: each
    /// round applies the set to the interface, then writes the rendered
    /// configuration, whose serial [`Testbed::rendered_serial`] reads.
    fn wait_meshvpn(&self, i: usize) -> Result<()> {
        let bed = self.bed()?;
        let started = Instant::now();
        while bed.rendered_serial(i).is_none() {
            if interrupted() {
                bail!("interrupted while starting {}'s Mesh VPN host", self.id(i));
            }
            if started.elapsed() > START_DEADLINE {
                bail!(
                    "{}'s Mesh VPN host wrote no peer set within {START_DEADLINE:?}\n{}",
                    self.id(i),
                    bed.diagnostics()
                );
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }
}

impl Cluster for WireGuard {
    fn setup(&self) -> &'static str {
        "each in its own network namespace with a WireGuard interface (wireguard-go) and a Mesh VPN host driving it"
    }

    fn prepare(&mut self, nodes: usize) -> Result<String> {
        let bed = Testbed::create(nodes, &self.exe).map_err(|e| anyhow!(e))?;
        self.apis = (0..nodes)
            .map(|i| bed.api(i).map_err(|e| anyhow!(e)))
            .collect::<Result<_>>()?;
        let fingerprint = bed.key_fingerprint.clone();
        self.bed = Some(bed);
        Ok(fingerprint)
    }

    fn id(&self, i: usize) -> String {
        self.bed
            .as_ref()
            .and_then(|b| b.nodes.get(i))
            .map_or_else(|| format!("n{}", i.saturating_add(1)), |n| n.id.clone())
    }

    fn describe(&self, i: usize) -> String {
        match self.bed.as_ref().and_then(|b| b.nodes.get(i)) {
            Some(n) => format!(
                "in namespace {}: listens on {}:{CONTROL_PORT}, API {API_ADDR} (namespace loopback), WireGuard {} {}",
                n.netns, n.underlay, n.wg_if, n.overlay
            ),
            None => String::new(),
        }
    }

    fn api(&self, i: usize) -> Result<&dyn NodeApi> {
        let api = self.apis.get(i).with_context(|| format!("no node {i}"))?;
        Ok(api)
    }

    fn start_all(&mut self, component: &str) -> Result<()> {
        let n = self.bed()?.nodes.len();
        for i in 0..n {
            self.bed_mut()?
                .start_agent(i, &["--component", component])
                .map_err(|e| anyhow!(e))?;
        }
        for i in 0..n {
            self.wait_healthy(i)?;
        }
        for i in 0..n {
            self.bed_mut()?.start_meshvpn(i).map_err(|e| anyhow!(e))?;
        }
        for i in 0..n {
            self.wait_meshvpn(i)?;
        }
        Ok(())
    }

    fn restart(&mut self, i: usize, component: &str) -> Result<()> {
        self.bed_mut()?
            .start_agent(i, &["--component", component])
            .map_err(|e| anyhow!(e))?;
        self.wait_healthy(i)
    }

    fn kill(&mut self, i: usize) {
        if let Some(bed) = self.bed.as_mut() {
            bed.kill_agent(i);
        }
    }

    fn partition(&mut self, _majority: &[usize], minority: &[usize]) -> Result<Option<String>> {
        let bed = self.bed_mut()?;
        bed.split(minority).map_err(|e| anyhow!(e))?;
        let ports: Vec<String> = minority
            .iter()
            .filter_map(|&i| bed.nodes.get(i).map(|n| n.bridge_port.clone()))
            .collect();
        Ok(Some(format!(
            "bridge ports {} moved to a second bridge {}c: the kernel drops every packet across",
            ports.join(", "),
            bed.prefix
        )))
    }

    fn heal(&mut self, _nodes: &[usize]) -> Result<()> {
        self.bed()?.heal_split().map_err(|e| anyhow!(e))
    }

    fn stop_all(&mut self) {
        if let Some(bed) = self.bed.as_mut() {
            for i in 0..bed.nodes.len() {
                bed.stop_agent(i);
            }
        }
    }

    /// The Mesh VPN hosts run on their own, in their namespaces.
    fn poll_vpns(&mut self, _running: &[usize]) {}

    fn vpn(&self, i: usize) -> VpnShown {
        let Some(bed) = self.bed.as_ref() else {
            return VpnShown {
                what: "interface".into(),
                serial: None,
                peers: Vec::new(),
            };
        };
        let what = bed
            .nodes
            .get(i)
            .map_or_else(|| "interface".into(), |n| format!("interface {}", n.wg_if));
        let mut peers: Vec<ShownPeer> = match bed.device(i) {
            Ok(device) => device
                .peers
                .iter()
                .map(|p| {
                    let node = p.public_key.as_ref().and_then(|k| bed.node_with_key(k));
                    ShownPeer {
                        id: node
                            .and_then(|j| bed.nodes.get(j))
                            .map_or_else(|| "unknown key".into(), |n| n.id.clone()),
                        overlay: p
                            .allowed_ips
                            .first()
                            .map(|ip| ip.trim_end_matches("/32").to_owned()),
                    }
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the interface failed");
                Vec::new()
            }
        };
        peers.sort_by(|a, b| a.id.cmp(&b.id));
        VpnShown {
            what,
            serial: bed.rendered_serial(i),
            peers,
        }
    }

    fn vpn_shows_incomplete(&self) -> bool {
        false
    }

    fn ping_failures(&self, pairs: &[(usize, usize)]) -> Option<Vec<(usize, usize)>> {
        self.bed.as_ref().map(|b| b.ping_pairs(pairs))
    }

    fn diagnostics(&self) -> Option<String> {
        self.bed.as_ref().map(Testbed::diagnostics)
    }
}
