//! Running a [`MeshVpn`] on its own thread.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nodeplane_interface::ControlPlane;

use crate::device::{WireGuardConfig, WireGuardDevice, DEVICE_RECHECK_INTERVAL};
use crate::peer_set::SharedPeerSet;
use crate::vpn::MeshVpn;

/// How a spawned Mesh VPN runs.
#[derive(Clone, Debug)]
pub struct SpawnConfig {
    /// Longest wait for an update between polls (also the retry interval
    /// while the control plane is unreachable).
    pub poll_interval: Duration,
    /// Where to write the rendered configuration after every change.
    pub config_path: Option<PathBuf>,
}

impl Default for SpawnConfig {
    fn default() -> Self {
        SpawnConfig {
            poll_interval: Duration::from_millis(500),
            config_path: None,
        }
    }
}

/// A Mesh VPN running on its own thread; stopped and joined on drop.
pub struct RunningMeshVpn {
    shared: SharedPeerSet,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RunningMeshVpn {
    /// The set in force, as the data plane reads it.
    pub fn shared(&self) -> SharedPeerSet {
        self.shared.clone()
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningMeshVpn {
    fn drop(&mut self) {
        self.halt();
    }
}

impl<C: ControlPlane + 'static> MeshVpn<C> {
    /// Runs this Mesh VPN on a thread: polls, and after each change writes
    /// the configuration to `config.config_path` (if set). Errors are
    /// logged; the set in force stays.
    pub fn spawn(self, config: SpawnConfig) -> std::io::Result<RunningMeshVpn> {
        self.spawn_inner(config, None)
    }

    /// Like [`spawn`](MeshVpn::spawn), and also applies the set to the
    /// WireGuard interface `wireguard` after every change, and re-checks
    /// the interface every [`DEVICE_RECHECK_INTERVAL`]. A failed apply is
    /// logged and retried on the next round; the set in force stays.
    pub fn spawn_with_wireguard(
        self,
        config: SpawnConfig,
        wireguard: WireGuardConfig,
    ) -> std::io::Result<RunningMeshVpn> {
        self.spawn_inner(config, Some(wireguard))
    }

    fn spawn_inner(
        mut self,
        config: SpawnConfig,
        wireguard: Option<WireGuardConfig>,
    ) -> std::io::Result<RunningMeshVpn> {
        let shared = self.shared();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("meshvpn".into())
            .spawn(move || {
                let mut written = None;
                let mut device = wireguard.map(WireGuardDevice::new);
                let mut device_serial = None;
                let mut device_checked = std::time::Instant::now();
                while !stopping.load(Ordering::SeqCst) {
                    if let Err(error) = self.poll_wait(config.poll_interval) {
                        tracing::warn!(%error, "mesh vpn poll failed; keeping the set in force");
                        std::thread::sleep(config.poll_interval);
                    }
                    if let Some(device) = device.as_mut() {
                        let recheck = device_checked.elapsed() >= DEVICE_RECHECK_INTERVAL;
                        if device_serial != Some(self.serial()) || recheck {
                            device_checked = std::time::Instant::now();
                            match device.apply(self.peer_set()) {
                                Ok(_) => device_serial = Some(self.serial()),
                                Err(error) => {
                                    device_serial = None;
                                    tracing::error!(%error, "applying the peer set to the WireGuard interface failed; retrying")
                                }
                            }
                        }
                    }
                    let Some(path) = &config.config_path else {
                        continue;
                    };
                    if written != Some(self.serial()) {
                        match self.write_config(path) {
                            Ok(()) => written = Some(self.serial()),
                            Err(error) => {
                                tracing::error!(%error, "writing the peer configuration failed")
                            }
                        }
                    }
                }
            })?;
        Ok(RunningMeshVpn {
            shared,
            stop,
            thread: Some(thread),
        })
    }
}
