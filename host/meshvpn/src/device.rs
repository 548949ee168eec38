//! Applying the peer set to a real WireGuard interface, incrementally,
//! through its UAPI socket.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::keys::PrivateKey;
use crate::peer::PublicKey;
use crate::peer_set::PeerSet;
use crate::uapi::{render_set, DeviceSettings, PeerChange, PeerConfig, UapiClient, UapiError};

/// How often the device is read back even without a change of the set.
/// A restarted `wireguard-go` comes back empty, and an operator may edit
/// the interface by hand: both are repaired within this time. A read is
/// one socket round trip, so 10 s costs nothing.
pub const DEVICE_RECHECK_INTERVAL: Duration = Duration::from_secs(10);

/// The interface a Mesh VPN drives.
#[derive(Clone, Debug)]
pub struct WireGuardConfig {
    /// The interface's UAPI socket (`UapiClient::for_interface(ifname)`
    /// gives `/var/run/wireguard/<ifname>.sock`).
    pub socket: PathBuf,
    /// This node's private key; its public key is what the node announces
    /// as `public-key` metadata.
    pub private_key: PrivateKey,
    /// The UDP port WireGuard listens on; announced as `wg-port`.
    pub listen_port: u16,
}

/// What one [`WireGuardDevice::apply`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Peers added.
    pub added: usize,
    /// Peers whose endpoint or allowed IP changed.
    pub updated: usize,
    /// Peers removed.
    pub removed: usize,
    /// Whether the device was read back first (first apply, after an
    /// error, or after [`DEVICE_RECHECK_INTERVAL`]).
    pub reread: bool,
}

impl ApplyReport {
    /// Whether anything was sent to the device.
    pub fn changed(&self) -> bool {
        self.added + self.updated + self.removed > 0
    }
}

/// Counters of a [`WireGuardDevice`] since it was made, for metrics and
/// logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Set requests the device accepted.
    pub sets: u64,
    /// Requests that failed (unreachable socket, errno, bad answer).
    pub failures: u64,
    /// Times the device was read back.
    pub reads: u64,
    /// Peers added, updated and removed in all.
    pub peer_changes: u64,
    /// Peers not applied because they announce this node's own key.
    pub own_key_refused: u64,
}

/// A WireGuard interface kept equal to the rendered part of a peer set.
///
/// The device owns the interface's peers: a peer on the interface that is
/// not in the set is removed (as wesher and innernet do). Each
/// [`apply`](WireGuardDevice::apply) sends only the difference from what
/// the device holds: removals, then additions and updates, in one UAPI set
/// request. The first apply (and every apply after an error or after
/// [`DEVICE_RECHECK_INTERVAL`]) reads the device back first and also sets
/// the private key and listen port.
#[derive(Debug)]
pub struct WireGuardDevice {
    client: UapiClient,
    config: WireGuardConfig,
    /// What the device holds, by key; `None` until read back.
    applied: Option<BTreeMap<PublicKey, PeerConfig>>,
    device_set: bool,
    last_read: Option<Instant>,
    stats: DeviceStats,
}

impl WireGuardDevice {
    /// A device over `config.socket`; nothing is sent before the first
    /// apply.
    pub fn new(config: WireGuardConfig) -> WireGuardDevice {
        WireGuardDevice {
            client: UapiClient::at(config.socket.clone()),
            config,
            applied: None,
            device_set: false,
            last_read: None,
            stats: DeviceStats::default(),
        }
    }

    /// What this device did so far.
    pub fn stats(&self) -> DeviceStats {
        self.stats
    }

    /// The UAPI client of the interface (to read it).
    pub fn client(&self) -> &UapiClient {
        &self.client
    }

    /// The peers the interface should hold for `set`: its rendered peers,
    /// except one carrying this node's own public key.
    pub fn desired(&self, set: &PeerSet) -> BTreeMap<PublicKey, PeerConfig> {
        let own = self.config.private_key.public_key();
        let plan = set.plan();
        plan.rendered
            .into_iter()
            .filter(|(peer, tunnel)| {
                let own_key = tunnel.public_key == own;
                if own_key {
                    tracing::warn!(peer = %peer.node_id, "a peer announces this node's own public key; not applied");
                }
                !own_key
            })
            .map(|(_, t)| {
                (
                    t.public_key.clone(),
                    PeerConfig {
                        public_key: t.public_key.clone(),
                        endpoint: t.endpoint,
                        overlay_ip: t.overlay_ip,
                    },
                )
            })
            .collect()
    }

    /// Makes the interface hold exactly the desired peers of `set`,
    /// sending only the difference. On an error the device is read back
    /// on the next apply, so nothing is assumed about a half-done request.
    pub fn apply(&mut self, set: &PeerSet) -> Result<ApplyReport, UapiError> {
        let mut report = ApplyReport::default();
        let stale = self
            .last_read
            .is_none_or(|at| at.elapsed() >= DEVICE_RECHECK_INTERVAL);
        if self.applied.is_none() || stale {
            self.read_back()?;
            report.reread = true;
        }
        let desired = self.desired(set);
        let own = self.config.private_key.public_key();
        let own_claims = set
            .plan()
            .rendered
            .iter()
            .filter(|(_, t)| t.public_key == own)
            .count();
        self.stats.own_key_refused = self
            .stats
            .own_key_refused
            .saturating_add(u64::try_from(own_claims).unwrap_or(u64::MAX));
        let applied = self.applied.take().unwrap_or_default();
        let mut changes = Vec::new();
        for key in applied.keys() {
            if !desired.contains_key(key) {
                changes.push(PeerChange::Remove(key.clone()));
                report.removed += 1;
            }
        }
        for (key, peer) in &desired {
            match applied.get(key) {
                Some(have) if have == peer => {}
                Some(_) => {
                    changes.push(PeerChange::Upsert(peer.clone()));
                    report.updated += 1;
                }
                None => {
                    changes.push(PeerChange::Upsert(peer.clone()));
                    report.added += 1;
                }
            }
        }
        if changes.is_empty() && self.device_set {
            self.applied = Some(applied);
            return Ok(report);
        }
        let settings = DeviceSettings {
            private_key: &self.config.private_key,
            listen_port: self.config.listen_port,
        };
        let request = render_set((!self.device_set).then_some(&settings), &changes);
        match self.client.set(&request) {
            Ok(()) => {
                self.device_set = true;
                self.applied = Some(desired);
                self.stats.sets = self.stats.sets.saturating_add(1);
                let changed = report.added + report.updated + report.removed;
                self.stats.peer_changes = self
                    .stats
                    .peer_changes
                    .saturating_add(u64::try_from(changed).unwrap_or(u64::MAX));
                if report.changed() {
                    tracing::info!(
                        serial = set.serial,
                        added = report.added,
                        updated = report.updated,
                        removed = report.removed,
                        "applied the peer set to the WireGuard interface"
                    );
                }
                Ok(report)
            }
            Err(error) => {
                // `applied` stays None: the next apply reads the device.
                self.device_set = false;
                self.stats.failures = self.stats.failures.saturating_add(1);
                Err(error)
            }
        }
    }

    /// Reads what the device holds now. A peer with other than exactly one
    /// allowed IP, or without an endpoint, is taken as differing from any
    /// desired peer (so it is rewritten).
    fn read_back(&mut self) -> Result<(), UapiError> {
        self.applied = None;
        self.stats.reads = self.stats.reads.saturating_add(1);
        let state = match self.client.get() {
            Ok(state) => state,
            Err(error) => {
                self.stats.failures = self.stats.failures.saturating_add(1);
                return Err(error);
            }
        };
        self.last_read = Some(Instant::now());
        let own_port_ok = state.listen_port == Some(self.config.listen_port);
        if !(state.has_private_key && own_port_ok) {
            self.device_set = false;
        }
        let mut applied = BTreeMap::new();
        for peer in state.peers {
            let Some(key) = peer.public_key else { continue };
            let parsed = match (peer.endpoint, peer.allowed_ips.as_slice()) {
                (Some(endpoint), [one]) => one
                    .split_once('/')
                    .and_then(|(ip, prefix)| {
                        let ip: std::net::IpAddr = ip.parse().ok()?;
                        let full = if ip.is_ipv4() { "32" } else { "128" };
                        (prefix == full).then_some(ip)
                    })
                    .map(|overlay_ip| PeerConfig {
                        public_key: key.clone(),
                        endpoint,
                        overlay_ip,
                    }),
                _ => None,
            };
            // A peer that is not in our shape gets an endpoint no desired
            // peer has, so it is rewritten or removed.
            let config = parsed.unwrap_or(PeerConfig {
                public_key: key.clone(),
                endpoint: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                overlay_ip: std::net::IpAddr::from([0, 0, 0, 0]),
            });
            applied.insert(key, config);
        }
        self.applied = Some(applied);
        Ok(())
    }

    /// Forces a read-back of the device on the next apply.
    pub fn invalidate(&mut self) {
        self.applied = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeplane_interface::{Member, PeerState};
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;
    use std::sync::{Arc, Mutex};

    /// A fake `wireguard-go`: keeps the peers it was set and answers gets,
    /// recording every request.
    struct FakeDevice {
        socket: PathBuf,
        requests: Arc<Mutex<Vec<String>>>,
        dir: PathBuf,
    }

    impl FakeDevice {
        fn start(tag: &str) -> FakeDevice {
            let dir =
                std::env::temp_dir().join(format!("meshvpn-dev-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let socket = dir.join("wgfake.sock");
            let listener = UnixListener::bind(&socket).unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let log = Arc::clone(&requests);
            std::thread::spawn(move || {
                // peers: hex key -> (endpoint, allowed ip)
                let mut peers: BTreeMap<String, (String, String)> = BTreeMap::new();
                let mut device = String::new();
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { return };
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut request = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\n" {
                            break;
                        }
                        request.push_str(&line);
                    }
                    log.lock().unwrap().push(request.clone());
                    if request == "get=1\n" {
                        let mut out = device.clone();
                        for (k, (e, a)) in &peers {
                            out.push_str(&format!(
                                "public_key={k}\nendpoint={e}\nallowed_ip={a}\n"
                            ));
                        }
                        out.push_str("errno=0\n\n");
                        let _ = stream.write_all(out.as_bytes());
                        continue;
                    }
                    let mut current = None;
                    for line in request.lines().skip(1) {
                        let (k, v) = line.split_once('=').unwrap();
                        match k {
                            "private_key" => device.push_str(&format!("private_key={v}\n")),
                            "listen_port" => device.push_str(&format!("listen_port={v}\n")),
                            "public_key" => {
                                current = Some(v.to_string());
                                peers.entry(v.to_string()).or_default();
                            }
                            "remove" => {
                                peers.remove(current.as_ref().unwrap());
                            }
                            "endpoint" => {
                                peers.get_mut(current.as_ref().unwrap()).unwrap().0 = v.into()
                            }
                            "allowed_ip" => {
                                peers.get_mut(current.as_ref().unwrap()).unwrap().1 = v.into()
                            }
                            _ => {}
                        }
                    }
                    let _ = stream.write_all(b"errno=0\n\n");
                }
            });
            FakeDevice {
                socket,
                requests,
                dir,
            }
        }

        fn sets(&self) -> Vec<String> {
            self.requests
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.starts_with("set=1"))
                .cloned()
                .collect()
        }
    }

    impl Drop for FakeDevice {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn member(id: &str, n: u8, state: PeerState) -> Member {
        let key = PublicKey::from_bytes(&[n; 32]);
        Member {
            id: id.into(),
            address: format!("10.77.0.{n}:7946"),
            state,
            incarnation: 1,
            metadata: vec![
                ("overlay-ip".into(), format!("10.78.0.{n}")),
                ("public-key".into(), key.as_str().into()),
                ("wg-port".into(), "51820".into()),
            ],
        }
    }

    #[test]
    fn peers_are_added_updated_and_removed_incrementally() {
        let fake = FakeDevice::start("incr");
        let private = PrivateKey::generate();
        let mut device = WireGuardDevice::new(WireGuardConfig {
            socket: fake.socket.clone(),
            private_key: private.clone(),
            listen_port: 51820,
        });
        let mut set = PeerSet::default();
        set.apply_member(&member("a", 1, PeerState::Alive), None);
        set.apply_member(&member("b", 2, PeerState::Alive), None);
        let report = device.apply(&set).unwrap();
        assert_eq!((report.added, report.reread), (2, true));
        let first = &fake.sets()[0];
        assert!(first.contains(&format!(
            "private_key={}\nlisten_port=51820\n",
            private.to_hex()
        )));
        assert_eq!(first.matches("public_key=").count(), 2);

        // Nothing changed: nothing sent.
        assert!(!device.apply(&set).unwrap().changed());
        assert_eq!(fake.sets().len(), 1);

        // A suspect is still a peer; a move changes its endpoint; a death removes.
        set.apply_member(&member("a", 1, PeerState::Suspect), None);
        let mut moved = member("b", 2, PeerState::Alive);
        moved.address = "10.77.0.9:7946".into();
        set.apply_member(&moved, None);
        let report = device.apply(&set).unwrap();
        assert_eq!((report.added, report.updated, report.removed), (0, 1, 0));
        let update = fake.sets()[1].clone();
        assert_eq!(
            update,
            format!(
                "set=1\npublic_key={}\nendpoint=10.77.0.9:51820\nreplace_allowed_ips=true\nallowed_ip=10.78.0.2/32\n",
                crate::uapi::public_key_hex(&PublicKey::from_bytes(&[2; 32]))
            ),
            "only the changed peer, and no device settings again"
        );
        set.apply_member(&member("a", 1, PeerState::Dead), None);
        let report = device.apply(&set).unwrap();
        assert_eq!(report.removed, 1);
        assert!(fake.sets()[2].ends_with("remove=true\n"));
        assert_eq!((device.stats().sets, device.stats().peer_changes), (3, 4));

        // Peers the device holds that are not in the set (left by a
        // previous run) are removed once the device is read back.
        device.invalidate();
        let mut fresh = WireGuardDevice::new(WireGuardConfig {
            socket: fake.socket.clone(),
            private_key: private,
            listen_port: 51820,
        });
        let empty = PeerSet::default();
        let report = fresh.apply(&empty).unwrap();
        assert_eq!((report.removed, report.reread), (1, true));
    }

    #[test]
    fn a_peer_with_this_nodes_key_is_not_applied() {
        let fake = FakeDevice::start("own");
        let private = PrivateKey::generate();
        let own = private.public_key();
        let mut device = WireGuardDevice::new(WireGuardConfig {
            socket: fake.socket.clone(),
            private_key: private,
            listen_port: 51820,
        });
        let mut impostor = member("x", 3, PeerState::Alive);
        impostor.metadata[1].1 = own.as_str().into();
        let mut set = PeerSet::default();
        set.apply_member(&impostor, None);
        assert!(device.desired(&set).is_empty());
        assert_eq!(device.apply(&set).unwrap().added, 0);
        assert_eq!(device.stats().own_key_refused, 1);
    }

    #[test]
    fn an_unreachable_device_is_an_error_and_read_back_later() {
        let mut device = WireGuardDevice::new(WireGuardConfig {
            socket: "/nonexistent/np-wg.sock".into(),
            private_key: PrivateKey::generate(),
            listen_port: 1,
        });
        assert!(matches!(
            device.apply(&PeerSet::default()),
            Err(UapiError::Io { .. })
        ));
        assert!(device.applied.is_none());
        assert_eq!(device.stats().failures, 1);
    }
}
