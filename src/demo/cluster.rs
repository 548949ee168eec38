//! A local cluster of `nodeplane agent` processes for the demo: started,
//! killed, restarted and stopped by the demo, never left behind.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// How long an agent may take to answer `/healthz` after it was started.
const START_DEADLINE: Duration = Duration::from_secs(20);

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
    seed: SocketAddr,
    exe: PathBuf,
    child: Option<Child>,
}

/// A free port on `ip` for both UDP and TCP.
fn free_port(ip: &str) -> Result<u16> {
    for _ in 0..50 {
        let tcp = TcpListener::bind((ip, 0)).context("binding a probe TCP port")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on {ip} for both UDP and TCP")
}

impl Agent {
    /// Plans agent `index`; node 0 is everybody's seed.
    pub fn plan(index: usize, seed: Option<SocketAddr>, root: &Path) -> Result<Agent> {
        let ip = "127.0.0.1";
        let listen: SocketAddr = format!("{ip}:{}", free_port(ip)?).parse()?;
        let api: SocketAddr = format!("{ip}:{}", free_port(ip)?).parse()?;
        let key_bytes = [index as u8 + 1; 32];
        Ok(Agent {
            id: format!("node-{index}"),
            listen,
            api,
            overlay_ip: format!("100.64.0.{}", index + 1),
            public_key: base64_encode(&key_bytes),
            data_dir: root.join(format!("node-{index}")),
            seed: seed.unwrap_or(listen),
            // Resolved once: a rebuild during the demo replaces the file.
            exe: std::env::current_exe().context("locating the nodeplane binary")?,
            child: None,
        })
    }

    /// The API base URL.
    pub fn base(&self) -> String {
        format!("http://{}", self.api)
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
            if crate::demo::api::get(&self.base(), "/healthz").is_ok() {
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

    /// `GET` a JSON document from this agent's API.
    pub fn get(&self, path: &str) -> Result<Value> {
        crate::demo::api::get(&self.base(), path)
    }

    /// `POST` a JSON document to this agent's API.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        crate::demo::api::post(&self.base(), path, body)
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
