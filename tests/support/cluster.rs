//! A cluster of real `nodeplane agent` processes on 127.0.0.x with ports
//! the test picks, checked only through the introspection API. Bounded
//! (every wait has a deadline); children killed on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodeplane_agent::client::ApiClient;
use serde_json::Value;

use crate::support::agents::{free_port, log_tails};

/// How long a killed node may take to be declared `dead` by every survivor
/// with the default tunables (1 s probe period; suspicion timeout at most
/// 3 × 2 × log-scaled periods, plus confirmation), with slack for a loaded
/// machine.
pub const DEAD_BOUND: Duration = Duration::from_secs(20);
/// Start-up (component compilation) plus convergence of a fresh cluster.
pub const CONVERGE_BOUND: Duration = Duration::from_secs(40);

/// One agent process of a [`Cluster`].
pub struct Node {
    /// Node id.
    pub id: String,
    /// Control address.
    pub listen: SocketAddr,
    /// API address.
    pub api: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The process, while running.
    pub child: Option<Child>,
    /// `--cluster-key-file` to start it with (none: it runs open).
    pub key_file: Option<PathBuf>,
}

/// Agents that are killed (SIGKILL) and whose data is removed on drop.
pub struct Cluster {
    /// The agents.
    pub nodes: Vec<Node>,
    /// Folder of the data directories and logs.
    pub root: PathBuf,
}

impl Cluster {
    pub fn new(tag: &str, n: usize) -> Cluster {
        let root =
            std::env::temp_dir().join(format!("nodeplane-cluster-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let nodes = (0..n)
            .map(|i| {
                let ip = format!("127.0.0.{}", 20 + i);
                Node {
                    id: format!("n{}", i + 1),
                    listen: format!("{ip}:{}", free_port(&ip)).parse().unwrap(),
                    api: format!("{ip}:{}", free_port(&ip)).parse().unwrap(),
                    data_dir: root.join(format!("n{}", i + 1)),
                    child: None,
                    key_file: None,
                }
            })
            .collect();
        Cluster { nodes, root }
    }

    pub fn start(&mut self, i: usize) {
        let seed = (i != 0).then_some(self.nodes[0].listen);
        self.start_with_seed(i, seed);
    }

    /// Starts agent `i` with `seed` as its only seed (or none).
    pub fn start_with_seed(&mut self, i: usize, seed: Option<SocketAddr>) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("{}.log", node.id)))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodeplane"));
        cmd.args(["agent", "--node-id", &node.id])
            .args([
                "--listen",
                &node.listen.to_string(),
                "--api",
                &node.api.to_string(),
            ])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--metadata", &format!("overlay-ip=10.9.0.{}", i + 1)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(seed) = seed {
            cmd.args(["--seed", &seed.to_string()]);
        }
        if let Some(key_file) = &node.key_file {
            cmd.arg("--cluster-key-file").arg(key_file);
        }
        node.child = Some(cmd.spawn().expect("spawn agent"));
    }

    pub fn client(&self, i: usize) -> ApiClient {
        ApiClient::new(&self.nodes[i].api.to_string(), None)
    }

    pub fn members(&self, i: usize) -> Option<Value> {
        self.client(i).get("/members").ok()
    }

    /// (state, incarnation) of `subject` in `observer`'s view.
    pub fn seen(&self, observer: usize, subject: usize) -> Option<(String, u64)> {
        let view = self.members(observer)?;
        let id = &self.nodes[subject].id;
        view["members"]
            .as_array()?
            .iter()
            .find(|m| m["id"] == **id)
            .map(|m| {
                (
                    m["state"].as_str().unwrap_or("").to_string(),
                    m["incarnation"].as_u64().unwrap_or(0),
                )
            })
    }

    pub fn signal(&mut self, i: usize, signal: &str) -> std::process::ExitStatus {
        let child = self.nodes[i].child.as_mut().expect("running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.nodes[i].child = None;
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "agent {i} did not exit after {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        log_tails(&self.root, self.nodes.iter().map(|n| n.id.as_ref()), 15)
    }

    /// Polls `check` until it holds or `bound` passes (then panics with
    /// `what` and the agents' logs).
    pub fn wait_for(
        &self,
        what: &str,
        bound: Duration,
        mut check: impl FnMut(&Cluster) -> bool,
    ) -> Duration {
        let started = Instant::now();
        while started.elapsed() < bound {
            if check(self) {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what}: not within {bound:?}\n{}", self.logs());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Whether every running agent sees every running agent `alive`.
pub fn all_alive(c: &Cluster, running: &[usize]) -> bool {
    running.iter().all(|&o| {
        running
            .iter()
            .all(|&s| c.seen(o, s).is_some_and(|(state, _)| state == "alive"))
    })
}

/// Each running agent's frontier digest (`/ledger/head`).
pub fn digests(c: &Cluster, running: &[usize]) -> Vec<String> {
    running
        .iter()
        .map(|&i| {
            c.client(i)
                .get("/ledger/head")
                .map(|h| h["digest"].as_str().unwrap_or("").to_string())
                .unwrap_or_default()
        })
        .collect()
}
