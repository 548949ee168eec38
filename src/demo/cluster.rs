//! A local cluster of `nodeplane agent` processes for the demo: started,
//! killed, restarted and stopped by the demo, never left behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nodeplane_agent::client::ApiClient;
use nodeplane_agent::ports::free_port;

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
