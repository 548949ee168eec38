//! The data-plane test bed: N network namespaces on one bridge, each with
//! an underlay address, a userspace WireGuard interface (`wireguard-go`),
//! one `nodeplane agent` and one Mesh VPN host that applies the agent's
//! peer set to the interface through the WireGuard UAPI.
//!
//! ```text
//!  root namespace:   bridge <prefix>b ── <prefix>h1 … <prefix>hN  (bridge ports)
//!                                          │veth        │veth
//!  namespace <prefix>-1: <prefix>n1 10.77.0.1/24  …  namespace <prefix>-N
//!                        <prefix>w1 10.78.0.1/24 (WireGuard, overlay)
//!                        agent: control 10.77.0.1:7946, API 127.0.0.1:7947
//!                        Mesh VPN host: compat API → UAPI <prefix>w1.sock
//! ```
//!
//! Every run takes a fresh name prefix (`np` and four hex digits), so it
//! never touches another run's (or anyone's) namespaces and links. Teardown
//! ends only the processes the bed started, by their pids, then deletes
//! only the bridge, the namespaces and the files it created. Partitions
//! take bridge ports down, so the kernel, not the agent, drops the packets.
//!
//! Nothing is installed at run time: [`missing`] says what is lacking
//! (root, `/dev/net/tun`, `ip`, `wireguard-go`, `ping`); `.ci/run`
//! installs the Debian packages.
//!
//! The Mesh VPN host of each namespace is the `nodeplane` binary's hidden
//! `meshvpn-host` subcommand (`src/demo/commands.rs`), started inside the
//! namespace with a piped stdin: it stops when the bed closes that pipe,
//! or when the process holding the bed dies and the pipe closes with it.
//!
//! The bed is shared: `nodeplane demo --dataplane wireguard` runs on it,
//! and the `dataplane` tests include this file (`tests/support/netns.rs`).

use std::io::Read as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodeplane_meshvpn::uapi::{DeviceState, UapiClient, UAPI_SOCKET_DIR};
use nodeplane_meshvpn::{PrivateKey, PublicKey};
use serde_json::Value;

/// The agent's control port inside every namespace (each has its own
/// network stack, so every node uses the same).
pub const CONTROL_PORT: u16 = 7946;
/// The agent's API inside every namespace: loopback, reachable only by
/// that namespace's Mesh VPN host (as an operator would run it).
pub const API_ADDR: &str = "127.0.0.1:7947";
/// WireGuard's UDP port in every namespace, announced as `wg-port`.
pub const WG_PORT: u16 = 51820;
/// Underlay (bridge) addresses are `10.77.0.<i+1>/24`.
pub const UNDERLAY_NET: [u8; 3] = [10, 77, 0];
/// Overlay (WireGuard) addresses are `10.78.0.<i+1>/24`.
pub const OVERLAY_NET: [u8; 3] = [10, 78, 0];
/// Most nodes one bed runs: the last octet of both subnets, and interface
/// names within 15 characters.
pub const MAX_NODES: usize = 200;
/// How long `wireguard-go` may take to create its interface and socket.
const WIREGUARD_START_BOUND: Duration = Duration::from_secs(10);
/// How long a process asked to stop (SIGTERM, or stdin closed) may take
/// before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// How often the Mesh VPN host polls its agent (and retries an
/// unreachable one): fast enough that a verdict reaches the interface
/// within a second, cheap on a loopback API.
pub const MESHVPN_POLL: Duration = Duration::from_millis(200);
/// How often the Mesh VPN host resyncs from `GET /v1/members` even without
/// a gap: out of process, this bounds staleness after a dropped event
/// stream (docs/meshvpn.md, rule 6).
pub const MESHVPN_RESYNC: Duration = Duration::from_secs(5);

/// How much of a rendered configuration [`Testbed::rendered_serial`]
/// reads: its first line is a short comment.
const MAX_CONFIG_HEAD_BYTES: u64 = 256;

/// What this machine lacks for the test bed, one line each; empty when
/// the bed can run.
pub fn missing() -> Vec<String> {
    let mut out = Vec::new();
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned());
    if uid.as_deref() != Some("0") {
        out.push(format!(
            "root (network namespaces, bridges and TUN devices need it; running as uid {})",
            uid.as_deref().unwrap_or("?")
        ));
    }
    if !Path::new("/dev/net/tun").exists() {
        out.push("/dev/net/tun (the TUN device wireguard-go needs)".into());
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("wireguard-go", "wireguard-go"),
        ("ping", "iputils-ping"),
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
        if !found {
            out.push(format!("`{tool}` (Debian package {package})"));
        }
    }
    out
}

/// One node of the bed.
pub struct BedNode {
    /// Node id (`n1`…).
    pub id: String,
    /// Its namespace.
    pub netns: String,
    /// Its underlay address (control channel, WireGuard endpoint).
    pub underlay: Ipv4Addr,
    /// Its overlay address (on the WireGuard interface).
    pub overlay: Ipv4Addr,
    /// Its WireGuard interface (names are distinct across namespaces:
    /// the UAPI sockets share one folder).
    pub wg_if: String,
    /// Its bridge port (the root namespace's end of its veth pair).
    pub bridge_port: String,
    /// Its underlay interface (the namespace's end of the veth pair).
    pub underlay_if: String,
    /// Its WireGuard private key (the public key is its `public-key`).
    pub private_key: PrivateKey,
    /// Agent data directory.
    pub data_dir: PathBuf,
    agent: Option<Child>,
    meshvpn: Option<Child>,
    wireguard: Option<Child>,
}

impl BedNode {
    /// The agent's control address.
    pub fn control(&self) -> String {
        format!("{}:{CONTROL_PORT}", self.underlay)
    }

    /// The UAPI client of its interface.
    pub fn uapi(&self) -> UapiClient {
        UapiClient::for_interface(&self.wg_if)
    }

    /// Whether its agent runs.
    pub fn agent_running(&self) -> bool {
        self.agent.is_some()
    }
}

/// A running test bed; torn down on drop.
pub struct Testbed {
    /// This run's name prefix.
    pub prefix: String,
    /// Data directories, keys and logs.
    pub root: PathBuf,
    /// The nodes.
    pub nodes: Vec<BedNode>,
    /// The cluster key's fingerprint (every agent seals with it).
    pub key_fingerprint: String,
    bridge: Option<String>,
    side_bridge: Option<String>,
    namespaces: Vec<String>,
    key_file: PathBuf,
    exe_agent: PathBuf,
}

/// A client of one namespaced agent's API (see [`Testbed::api`]).
pub struct NetnsApi {
    netns: String,
    exe: PathBuf,
}

impl NetnsApi {
    /// `GET path` as JSON.
    pub fn get(&self, path: &str) -> Result<Value, String> {
        self.call(&["GET", path])
    }

    /// `POST path` with the JSON `body`; the answer as JSON.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call(&["POST", path, &body.to_string()])
    }

    fn call(&self, args: &[&str]) -> Result<Value, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(&self.exe)
            .args(["api-call", "--api", API_ADDR])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("api-call in {}: {e}", self.netns))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("api-call in {}: the answer is not JSON: {e}", self.netns))
    }
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Opens (appending) the log file `name` in the bed's directory.
fn log_file(root: &Path, name: &str) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join(name))
        .map_err(|e| format!("log file {name}: {e}"))
}

/// Sends `signal` to `pid` (only ever a child this bed started).
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Asks `child` to stop (SIGTERM, or `None` for "stdin already closed"),
/// waits up to [`STOP_GRACE`], then kills it.
fn stop_child(mut child: Child, term: bool) {
    if term {
        signal(child.id(), "-TERM");
    }
    let started = Instant::now();
    while started.elapsed() < STOP_GRACE {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Testbed {
    /// Creates the namespaces, bridge, links and WireGuard interfaces of
    /// `n` nodes (no agents yet: [`start_agent`](Testbed::start_agent)).
    /// On any error what was created is removed again.
    pub fn create(n: usize, agent_exe: &Path) -> Result<Testbed, String> {
        if n == 0 || n > MAX_NODES {
            return Err(format!("1..={MAX_NODES} nodes, not {n}"));
        }
        let missing = missing();
        if !missing.is_empty() {
            return Err(format!("the test bed needs: {}", missing.join("; ")));
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let prefix = format!("np{:04x}", (std::process::id() ^ nanos) & 0xffff);
        let root = std::env::temp_dir().join(format!("nodeplane-testbed-{prefix}"));
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let key_file = root.join("cluster.key");
        let key = nodeplane_agent::seal::ClusterKey::generate();
        nodeplane_agent::seal::write_key_file(&key_file, &key)
            .map_err(|e| format!("cluster key: {e}"))?;
        let mut bed = Testbed {
            prefix: prefix.clone(),
            root,
            nodes: Vec::new(),
            key_fingerprint: key.fingerprint(),
            bridge: None,
            side_bridge: None,
            namespaces: Vec::new(),
            key_file,
            exe_agent: agent_exe.to_owned(),
        };
        bed.build(n)?; // on error, drop tears down what exists
        Ok(bed)
    }

    fn build(&mut self, n: usize) -> Result<(), String> {
        let p = self.prefix.clone();
        let bridge = format!("{p}b");
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        self.bridge = Some(bridge.clone());
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..n {
            let octet = u8::try_from(i + 1).map_err(|_| "too many nodes".to_string())?;
            let netns = format!("{p}-{}", i + 1);
            ip(&["netns", "add", &netns])?;
            self.namespaces.push(netns.clone());
            let port = format!("{p}h{}", i + 1);
            let inner = format!("{p}n{}", i + 1);
            ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", &inner, "netns", &netns,
            ])?;
            ip(&["link", "set", &port, "master", &bridge, "up"])?;
            let [a, b, c] = UNDERLAY_NET;
            let underlay = Ipv4Addr::new(a, b, c, octet);
            let [a, b, c] = OVERLAY_NET;
            let overlay = Ipv4Addr::new(a, b, c, octet);
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{underlay}/24"),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &netns, "link", "set", &inner, "up"])?;
            let data_dir = self.root.join(format!("n{}", i + 1));
            std::fs::create_dir_all(&data_dir).map_err(|e| format!("{e}"))?;
            let private_key = PrivateKey::load_or_generate(&data_dir.join("wg.key"))
                .map_err(|e| e.to_string())?;
            self.nodes.push(BedNode {
                id: format!("n{}", i + 1),
                netns,
                underlay,
                overlay,
                wg_if: format!("{p}w{}", i + 1),
                bridge_port: port,
                underlay_if: inner,
                private_key,
                data_dir,
                agent: None,
                meshvpn: None,
                wireguard: None,
            });
            self.start_wireguard(i)?;
        }
        Ok(())
    }

    /// Starts `wireguard-go -f` for node `i` in its namespace and gives
    /// the interface its overlay address. The Mesh VPN host sets the key,
    /// port and peers.
    fn start_wireguard(&mut self, i: usize) -> Result<(), String> {
        let root = self.root.clone();
        let node = self.nodes.get_mut(i).ok_or("no such node")?;
        let socket = Path::new(UAPI_SOCKET_DIR).join(format!("{}.sock", node.wg_if));
        if socket.exists() {
            return Err(format!(
                "{} exists already: not ours, not touched",
                socket.display()
            ));
        }
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &node.netns,
                "wireguard-go",
                "-f",
                &node.wg_if,
            ])
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .stdin(Stdio::null())
            .stdout(log_file(&root, &format!("{}-wireguard.log", node.id))?)
            .stderr(log_file(&root, &format!("{}-wireguard.log", node.id))?)
            .spawn()
            .map_err(|e| format!("starting wireguard-go: {e}"))?;
        node.wireguard = Some(child);
        let started = Instant::now();
        while !socket.exists() {
            if started.elapsed() > WIREGUARD_START_BOUND {
                return Err(format!(
                    "wireguard-go made no {} within {WIREGUARD_START_BOUND:?}",
                    socket.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let addr = format!("{}/24", node.overlay);
        ip(&["-n", &node.netns, "addr", "add", &addr, "dev", &node.wg_if])?;
        ip(&["-n", &node.netns, "link", "set", &node.wg_if, "up"])?;
        Ok(())
    }

    /// Starts node `i`'s agent (node 1 is everyone's seed) with the bed's
    /// cluster key and its tunnel metadata; `extra` are more agent flags.
    pub fn start_agent(&mut self, i: usize, extra: &[&str]) -> Result<(), String> {
        let seed = self.nodes.first().map(BedNode::control);
        let node = self.nodes.get_mut(i).ok_or("no such node")?;
        let log = log_file(&self.root, &format!("{}.log", node.id))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &node.netns])
            .arg(&self.exe_agent)
            .args(["agent", "--node-id", &node.id, "--listen", &node.control()])
            .args(["--api", API_ADDR, "--data-dir"])
            .arg(&node.data_dir)
            .arg("--cluster-key-file")
            .arg(&self.key_file)
            .args(["--metadata", &format!("overlay-ip={}", node.overlay)])
            .args([
                "--metadata",
                &format!("public-key={}", node.private_key.public_key().as_str()),
            ])
            .args(["--metadata", &format!("wg-port={WG_PORT}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(seed) = seed.filter(|_| i != 0) {
            cmd.args(["--seed", &seed]);
        }
        node.agent = Some(cmd.spawn().map_err(|e| format!("starting agent: {e}"))?);
        Ok(())
    }

    /// Starts node `i`'s Mesh VPN host (`nodeplane meshvpn-host`) in its
    /// namespace: it follows the agent's compatibility API and applies the
    /// peer set to the node's interface until its stdin closes.
    pub fn start_meshvpn(&mut self, i: usize) -> Result<(), String> {
        let node = self.nodes.get_mut(i).ok_or("no such node")?;
        let log = log_file(&self.root, &format!("{}-meshvpn.log", node.id))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &node.netns])
            .arg(&self.exe_agent)
            .args(["meshvpn-host", "--node-id", &node.id])
            .args(["--api", &format!("http://{API_ADDR}")])
            .args(["--interface", &node.wg_if])
            .arg("--key-file")
            .arg(node.data_dir.join("wg.key"))
            .args(["--listen-port", &WG_PORT.to_string()])
            .arg("--config")
            .arg(node.data_dir.join(nodeplane_meshvpn::CONFIG_FILE_NAME))
            .args(["--poll-ms", &MESHVPN_POLL.as_millis().to_string()])
            .args(["--resync-secs", &MESHVPN_RESYNC.as_secs().to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting the Mesh VPN host: {e}"))?;
        node.meshvpn = Some(child);
        Ok(())
    }

    /// Starts every agent, then every Mesh VPN host.
    pub fn start_all(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            self.start_agent(i, &[])?;
        }
        for i in 0..self.nodes.len() {
            self.start_meshvpn(i)?;
        }
        Ok(())
    }

    /// `kill -9` node `i`'s agent (by its pid) and reaps it.
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut child) = self.nodes.get_mut(i).and_then(|n| n.agent.take()) {
            signal(child.id(), "-KILL");
            let _ = child.wait();
        }
    }

    /// Stops node `i`'s agent with SIGTERM (a graceful leave), waiting a
    /// bounded time ([`STOP_GRACE`]) before killing it.
    pub fn stop_agent(&mut self, i: usize) {
        if let Some(child) = self.nodes.get_mut(i).and_then(|n| n.agent.take()) {
            stop_child(child, true);
        }
    }

    /// The pid of node `i`'s agent, while it runs.
    pub fn agent_pid(&self, i: usize) -> Option<u32> {
        self.nodes.get(i)?.agent.as_ref().map(Child::id)
    }

    /// Loads the nftables `script` (`nft -f -`) in node `i`'s namespace;
    /// the rules go with the namespace at teardown.
    pub fn nft(&self, i: usize, script: &str) -> Result<(), String> {
        use std::io::Write as _;
        let node = self.nodes.get(i).ok_or("no such node")?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &node.netns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| format!("nft: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft in {}: {}\n{script}",
                node.netns,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Takes node `i`'s bridge port down (`up` false) or up again.
    pub fn set_link(&self, i: usize, up: bool) -> Result<(), String> {
        let node = self.nodes.get(i).ok_or("no such node")?;
        ip(&[
            "link",
            "set",
            &node.bridge_port,
            if up { "up" } else { "down" },
        ])
    }

    /// Splits the bed in two at the link layer: the bridge ports of
    /// `minority` move to a second bridge (created once, torn down with the
    /// bed), so the minority still reaches itself and the kernel drops
    /// every packet between the two sides. [`heal_split`](Testbed::heal_split)
    /// moves them back.
    pub fn split(&mut self, minority: &[usize]) -> Result<(), String> {
        let side = format!("{}c", self.prefix);
        if self.side_bridge.is_none() {
            ip(&["link", "add", &side, "type", "bridge"])?;
            self.side_bridge = Some(side.clone());
            ip(&["link", "set", &side, "up"])?;
        }
        for &i in minority {
            let node = self.nodes.get(i).ok_or("no such node")?;
            ip(&["link", "set", &node.bridge_port, "master", &side])?;
        }
        Ok(())
    }

    /// Puts every node's bridge port back on the main bridge (undoes
    /// [`split`](Testbed::split)).
    pub fn heal_split(&self) -> Result<(), String> {
        let bridge = self.bridge.as_deref().ok_or("no bridge")?;
        for node in &self.nodes {
            ip(&["link", "set", &node.bridge_port, "master", bridge])?;
        }
        Ok(())
    }

    /// One overlay ping from node `from` to node `to` (1 s deadline).
    pub fn ping(&self, from: usize, to: usize) -> bool {
        let (Some(a), Some(b)) = (self.nodes.get(from), self.nodes.get(to)) else {
            return false;
        };
        Command::new("ip")
            .args(["netns", "exec", &a.netns, "ping", "-c1", "-W1", "-q"])
            .arg(b.overlay.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Overlay pings of every ordered pair in `pairs`, run in parallel;
    /// the pairs that failed.
    pub fn ping_pairs(&self, pairs: &[(usize, usize)]) -> Vec<(usize, usize)> {
        std::thread::scope(|s| {
            let handles: Vec<_> = pairs
                .iter()
                .map(|&(a, b)| (a, b, s.spawn(move || self.ping(a, b))))
                .collect();
            handles
                .into_iter()
                .filter_map(|(a, b, h)| (!h.join().unwrap_or(false)).then_some((a, b)))
                .collect()
        })
    }

    /// Node `i`'s interface as the device reports it.
    pub fn device(&self, i: usize) -> Result<DeviceState, String> {
        let node = self.nodes.get(i).ok_or("no such node")?;
        node.uapi().get().map_err(|e| e.to_string())
    }

    /// Whether node `i`'s interface holds node `peer`'s key.
    pub fn has_peer(&self, i: usize, peer: usize) -> bool {
        let Some(key) = self.nodes.get(peer).map(|p| p.private_key.public_key()) else {
            return false;
        };
        self.device(i).is_ok_and(|d| d.peer(&key).is_some())
    }

    /// The node whose WireGuard public key is `key`.
    pub fn node_with_key(&self, key: &PublicKey) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.private_key.public_key() == *key)
    }

    /// The serial of the peer set node `i`'s Mesh VPN host last wrote (the
    /// first line of its rendered configuration), if it wrote one yet.
    pub fn rendered_serial(&self, i: usize) -> Option<u64> {
        let node = self.nodes.get(i)?;
        let path = node.data_dir.join(nodeplane_meshvpn::CONFIG_FILE_NAME);
        let mut head = String::new();
        std::io::Read::take(std::fs::File::open(path).ok()?, MAX_CONFIG_HEAD_BYTES)
            .read_to_string(&mut head)
            .ok()?;
        head.lines()
            .next()?
            .strip_prefix("# nodeplane desired peer set, serial ")?
            .trim()
            .parse()
            .ok()
    }

    /// A client of node `i`'s agent API, which listens on the namespace's
    /// loopback ([`API_ADDR`]): each request runs `nodeplane api-call` in
    /// the namespace.
    pub fn api(&self, i: usize) -> Result<NetnsApi, String> {
        let node = self.nodes.get(i).ok_or("no such node")?;
        Ok(NetnsApi {
            netns: node.netns.clone(),
            exe: self.exe_agent.clone(),
        })
    }

    /// `nodeplane members` of node `i`'s agent, run in its namespace.
    pub fn members_text(&self, i: usize) -> String {
        let Some(node) = self.nodes.get(i) else {
            return String::new();
        };
        Command::new("ip")
            .args(["netns", "exec", &node.netns])
            .arg(&self.exe_agent)
            .args(["members", "--api", API_ADDR])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The state node `observer`'s agent holds for node `subject`.
    pub fn state_of(&self, observer: usize, subject: usize) -> Option<String> {
        let id = &self.nodes.get(subject)?.id;
        self.members_text(observer).lines().find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.first() == Some(&id.as_str()))
                .then(|| cols.get(2).map(|s| s.to_string()))
                .flatten()
        })
    }

    /// Runs `nodeplane ARGS --api API` against node `i`'s agent.
    pub fn agent_command(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let node = self.nodes.get(i).ok_or("no such node")?;
        let out = Command::new("ip")
            .args(["netns", "exec", &node.netns])
            .arg(&self.exe_agent)
            .args(args)
            .args(["--api", API_ADDR])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The last lines of every log, and each node's interface and view,
    /// for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            out.push_str(&format!("=== {} ({}) ===\n", node.id, node.netns));
            out.push_str(&self.members_text(i));
            match self.device(i) {
                Ok(d) => {
                    for p in &d.peers {
                        out.push_str(&format!(
                            "  wg peer {:?} endpoint {:?} allowed {:?} handshake {}\n",
                            p.public_key.as_ref().map(|k| k.as_str().to_owned()),
                            p.endpoint,
                            p.allowed_ips,
                            p.last_handshake_time_sec
                        ));
                    }
                }
                Err(e) => out.push_str(&format!("  wg: {e}\n")),
            }
            for log in ["", "-meshvpn"] {
                let text = std::fs::read_to_string(self.root.join(format!("{}{log}.log", node.id)))
                    .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(8).collect();
                out.push_str(&format!("--- {}{log}.log ---\n", node.id));
                for line in tail.into_iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Polls `check` every 200 ms until it holds or `bound` passes; the
    /// time it took, or an error naming `what` with the diagnostics.
    pub fn wait_for(
        &self,
        what: &str,
        bound: Duration,
        mut check: impl FnMut(&Testbed) -> bool,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            if check(self) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > bound {
                return Err(format!(
                    "{what}: not within {bound:?}\n{}",
                    self.diagnostics()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn teardown(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.meshvpn.take() {
                drop(child.stdin.take()); // its signal to stop
                stop_child(child, false);
            }
            if let Some(child) = node.agent.take() {
                stop_child(child, true);
            }
            if let Some(child) = node.wireguard.take() {
                // SIGTERM: wireguard-go removes its socket and interface.
                stop_child(child, true);
            }
            let socket = Path::new(UAPI_SOCKET_DIR).join(format!("{}.sock", node.wg_if));
            let _ = std::fs::remove_file(socket); // ours: the name has our prefix
        }
        for netns in self.namespaces.drain(..) {
            if let Err(e) = ip(&["netns", "del", &netns]) {
                eprintln!("test bed teardown: {e}");
            }
        }
        for bridge in [self.side_bridge.take(), self.bridge.take()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = ip(&["link", "del", &bridge]) {
                eprintln!("test bed teardown: {e}");
            }
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.teardown();
        if std::thread::panicking() {
            eprintln!("test bed logs kept in {}", self.root.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
