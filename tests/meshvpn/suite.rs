//! The Mesh VPN's integration suite, written once and run unchanged
//! against every way of providing a control plane (the stub component, a
//! cluster of node plane instances in the simulator's world, a hot swap
//! between them, an agent process over the compatibility API). What
//! differs per mode goes through [`Harness`].
//!
//! A test module, not part of the crate: `modes.rs` (modes a-c) and
//! `compat.rs` (mode d) run it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nodeplane_interface::{
    Address, ControlError, ControlPlane, MembershipView, Metadata, NodeId, PeerState, Subscription,
};

use nodeplane_meshvpn::{MeshVpn, MeshVpnConfig, MeshVpnError, PeerSet, CONFIG_FILE_NAME};

/// A peer the Mesh VPN must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedPeer {
    /// Its node id.
    pub node_id: NodeId,
    /// Its control address (the endpoint).
    pub address: Address,
    /// Its overlay IP when its metadata make it renderable; `None` when it
    /// must be kept but marked incomplete.
    pub overlay_ip: Option<IpAddr>,
}

/// A hot swap to run on another thread while the suite reads the peer set;
/// returns the swap's pause.
pub type SwapJob = Box<dyn FnOnce() -> Result<Duration, ControlError> + Send>;

/// What a mode provides to the suite.
pub trait Harness {
    /// The control plane of the node the Mesh VPN runs beside.
    type Control: ControlPlane + Clone + 'static;
    /// The mode's name, for messages.
    fn mode(&self) -> String;
    /// The control plane, already joined.
    fn control(&self) -> Self::Control;
    /// The node the Mesh VPN runs beside (never its own peer).
    fn local_id(&self) -> NodeId;
    /// Advances the world one step (virtual time, or a short real wait).
    fn step(&mut self);
    /// How many steps a condition may take before the suite fails.
    fn max_steps(&self) -> usize;
    /// The peers the Mesh VPN must hold once the world has settled.
    fn expected(&self) -> Vec<ExpectedPeer>;
    /// The peer to crash.
    fn crash_victim(&self) -> NodeId;
    /// Makes `peer` fail: as the world advances the control plane must
    /// first suspect it, then declare it dead.
    fn crash(&mut self, peer: &str);
    /// Brings a crashed peer back on a new endpoint; false when the mode
    /// cannot.
    fn revive(&mut self, _peer: &str) -> bool {
        false
    }
    /// A hot swap of the control-plane component, when the mode has one.
    /// Afterwards [`expected`](Harness::expected) describes the membership
    /// the new component settles on.
    fn hot_swap(&mut self) -> Option<SwapJob> {
        None
    }
}

/// What the suite observed.
#[derive(Clone, Debug, Default)]
pub struct SuiteReport {
    /// The serial at the end.
    pub final_serial: u64,
    /// Resyncs after a baseline other than the one after the forced
    /// outage: version gaps, or reconnects of a remote update stream.
    pub resyncs: usize,
    /// The hot swap's pause, if the mode swapped.
    pub swap_pause: Option<Duration>,
    /// Reads of the shared set served while the swap ran.
    pub reads_during_swap: usize,
}

/// A control plane that can be switched off: every call then fails with
/// `Unavailable`, as when the agent is unreachable.
#[derive(Clone)]
pub struct FaultSwitch<C> {
    inner: C,
    down: Arc<AtomicBool>,
}

impl<C: ControlPlane> FaultSwitch<C> {
    /// Wraps `inner`, initially up.
    pub fn new(inner: C) -> FaultSwitch<C> {
        FaultSwitch {
            inner,
            down: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Switches the control plane off (`true`) or on.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), ControlError> {
        if self.down.load(Ordering::SeqCst) {
            Err(ControlError::Unavailable("switched off by the test".into()))
        } else {
            Ok(())
        }
    }
}

impl<C: ControlPlane> ControlPlane for FaultSwitch<C> {
    fn join(&self, seed_peers: &[Address]) -> Result<MembershipView, ControlError> {
        self.check()?;
        self.inner.join(seed_peers)
    }
    fn leave(&self) -> Result<(), ControlError> {
        self.check()?;
        self.inner.leave()
    }
    fn get_members(&self) -> Result<MembershipView, ControlError> {
        self.check()?;
        self.inner.get_members()
    }
    fn publish_heartbeat(&self) -> Result<u64, ControlError> {
        self.check()?;
        self.inner.publish_heartbeat()
    }
    fn report_peer_state(&self, peer: &str, state: PeerState) -> Result<PeerState, ControlError> {
        self.check()?;
        self.inner.report_peer_state(peer, state)
    }
    fn subscribe_membership_updates(&self) -> Result<Subscription, ControlError> {
        self.check()?;
        self.inner.subscribe_membership_updates()
    }
    fn get_peer_metadata(&self, peer: &str) -> Result<Metadata, ControlError> {
        self.check()?;
        self.inner.get_peer_metadata(peer)
    }
}

struct Run<'h, H: Harness> {
    harness: &'h mut H,
    switch: FaultSwitch<H::Control>,
    vpn: MeshVpn<FaultSwitch<H::Control>>,
    last_serial: u64,
    resyncs: usize,
    baseline_taken: bool,
}

impl<H: Harness> Run<'_, H> {
    /// Polls once, checking the serial never falls.
    fn poll(&mut self) -> Result<(), MeshVpnError> {
        let report = self.vpn.poll()?;
        assert!(
            report.serial >= self.last_serial,
            "[{}] serial fell",
            self.harness.mode()
        );
        self.last_serial = report.serial;
        if report.resynced && self.baseline_taken {
            self.resyncs += 1;
        }
        self.baseline_taken = true;
        Ok(())
    }

    /// Polls and steps until `done` holds, failing after the mode's bound.
    fn until(&mut self, what: &str, mut done: impl FnMut(&PeerSet, &H) -> bool) {
        for _ in 0..self.harness.max_steps() {
            if let Err(e) = self.poll() {
                tracing::debug!(error = %e, "poll failed; retrying");
            }
            if done(self.vpn.peer_set(), self.harness) {
                return;
            }
            self.harness.step();
        }
        panic!(
            "[{}] timed out waiting for {what}; peer set {:#?}",
            self.harness.mode(),
            self.vpn.peer_set()
        );
    }
}

/// Whether `set` holds exactly the `expected` peers, with their endpoints
/// and overlay IPs, and incomplete ones marked so.
pub fn holds_exactly(set: &PeerSet, expected: &[ExpectedPeer]) -> bool {
    let want: BTreeMap<&str, &ExpectedPeer> =
        expected.iter().map(|p| (p.node_id.as_str(), p)).collect();
    set.peers.len() == want.len()
        && set.peers.values().all(|peer| {
            want.get(peer.node_id.as_str()).is_some_and(|e| {
                e.address == peer.address
                    && match (&peer.tunnel, e.overlay_ip) {
                        (Ok(t), Some(ip)) => t.overlay_ip == ip,
                        (Err(_), None) => true,
                        _ => false,
                    }
            })
        })
}

/// Checks the rendered configuration and the written file against `set`.
fn check_rendered<C: ControlPlane>(mode: &str, vpn: &MeshVpn<C>, expected: &[ExpectedPeer]) {
    let text = vpn.render();
    let complete: Vec<_> = expected.iter().filter(|p| p.overlay_ip.is_some()).collect();
    assert_eq!(
        text.matches("[Peer]").count(),
        complete.len(),
        "[{mode}] rendered:\n{text}"
    );
    for peer in &complete {
        let ip = peer.overlay_ip.expect("complete");
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        assert!(
            text.contains(&format!(
                "AllowedIPs = {ip}/{prefix}\nEndpoint = {}\n",
                peer.address
            )),
            "[{mode}] {} missing:\n{text}",
            peer.node_id
        );
    }
    for peer in expected.iter().filter(|p| p.overlay_ip.is_none()) {
        assert!(
            text.contains(&format!("# skipped node {:?}: ", peer.node_id)),
            "[{mode}] {} not marked skipped:\n{text}",
            peer.node_id
        );
    }
    let dir = std::env::temp_dir().join(format!(
        "meshvpn-suite-{}-{}",
        std::process::id(),
        mode.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(CONFIG_FILE_NAME);
    vpn.write_config(&path).expect("write config");
    assert_eq!(std::fs::read_to_string(&path).expect("read back"), text);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The suite: the same assertions in every mode.
///
/// 1. The peer set converges on exactly the expected peers (overlay IPs
///    from metadata; incomplete peers kept, not rendered) and renders.
/// 2. With the control plane unreachable, the set in force is kept.
/// 3. Across a hot swap (if the mode has one) the set keeps being served,
///    then holds exactly the new membership; the serial rose.
/// 4. A crashed peer is kept while `suspect`, dropped once `dead`, and (if
///    the mode can revive it) re-added with its new endpoint.
pub fn suite<H: Harness>(harness: &mut H) -> SuiteReport {
    let mode = harness.mode();
    let switch = FaultSwitch::new(harness.control());
    let vpn = MeshVpn::new(
        switch.clone(),
        MeshVpnConfig {
            local_node_id: Some(harness.local_id()),
            ..Default::default()
        },
    );
    let mut run = Run {
        harness,
        switch,
        vpn,
        last_serial: 0,
        resyncs: 0,
        baseline_taken: false,
    };
    let mut report = SuiteReport::default();

    // 1. Convergence and rendering.
    run.until("the expected peer set", |set, h| {
        holds_exactly(set, &h.expected())
    });
    assert!(
        run.vpn.serial() > 0,
        "[{mode}] the first non-empty set has a serial"
    );
    assert!(
        !run.vpn
            .peer_set()
            .peers
            .contains_key(&run.harness.local_id()),
        "[{mode}] never its own peer"
    );
    check_rendered(&mode, &run.vpn, &run.harness.expected());

    // 2. Unreachable control plane: the set in force stays.
    let before = run.vpn.peer_set().clone();
    let shared = run.vpn.shared();
    run.switch.set_down(true);
    let err = run.vpn.resync().expect_err("resync must fail while down");
    assert!(
        matches!(err, MeshVpnError::Control(ControlError::Unavailable(_))),
        "[{mode}] {err}"
    );
    assert_eq!(
        run.vpn.peer_set(),
        &before,
        "[{mode}] set kept while unreachable"
    );
    assert_eq!(*shared.current(), before, "[{mode}] readers keep the set");
    assert!(run.vpn.last_error().is_some());
    run.switch.set_down(false);
    // The resync after the outage is expected; count only later ones.
    run.baseline_taken = false;
    run.until("recovery after the outage", |set, h| {
        holds_exactly(set, &h.expected())
    });
    assert!(run.vpn.last_error().is_none(), "[{mode}] recovered");

    // 3. Hot swap.
    if let Some(job) = run.harness.hot_swap() {
        let before = run.vpn.peer_set().clone();
        let done = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicUsize::new(0));
        let reader = {
            let (done, reads, shared, before) =
                (done.clone(), reads.clone(), shared.clone(), before.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    // The data plane keeps the last applied set meanwhile.
                    assert_eq!(*shared.current(), before, "set changed while nobody polled");
                    reads.fetch_add(1, Ordering::SeqCst);
                    std::thread::yield_now();
                }
            })
        };
        while reads.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let pause = job().expect("hot swap");
        done.store(true, Ordering::SeqCst);
        reader
            .join()
            .expect("reader saw the set in force throughout");
        report.swap_pause = Some(pause);
        report.reads_during_swap = reads.load(Ordering::SeqCst);
        run.until("the membership after the swap", |set, h| {
            holds_exactly(set, &h.expected())
        });
        assert!(
            run.vpn.serial() > before.serial,
            "[{mode}] serial rose across the swap"
        );
        check_rendered(&mode, &run.vpn, &run.harness.expected());
    }

    // 4. A crashed peer: kept while suspect, dropped once dead.
    let victim = run.harness.crash_victim();
    let expected_before = run.harness.expected();
    let victim_expected = expected_before
        .iter()
        .find(|p| p.node_id == victim)
        .cloned()
        .expect("victim is expected");
    run.harness.crash(&victim);
    run.until("the victim suspected", |set, _| {
        set.peers
            .get(&victim)
            .is_some_and(|p| p.state == PeerState::Suspect)
    });
    if victim_expected.overlay_ip.is_some() {
        let text = run.vpn.render();
        assert!(
            text.contains(&format!("# node {victim:?} (suspect)\n[Peer]")),
            "[{mode}] a suspect stays rendered:\n{text}"
        );
    }
    let serial = run.vpn.serial();
    run.until("the victim dropped", |set, _| {
        !set.peers.contains_key(&victim)
    });
    assert!(run.vpn.serial() > serial, "[{mode}] serial rose on removal");
    let others: Vec<_> = expected_before
        .into_iter()
        .filter(|p| p.node_id != victim)
        .collect();
    assert!(
        holds_exactly(run.vpn.peer_set(), &others),
        "[{mode}] only the victim went: {:#?}",
        run.vpn.peer_set()
    );
    if run.harness.revive(&victim) {
        run.until("the victim back on its new endpoint", |set, h| {
            holds_exactly(set, &h.expected())
        });
        let back = &run.vpn.peer_set().peers[&victim];
        assert_ne!(
            back.address, victim_expected.address,
            "[{mode}] a new endpoint"
        );
    }

    report.final_serial = run.vpn.serial();
    report.resyncs = run.resyncs;
    report
}

/// A valid WireGuard-style public key for tests: base64 of 32 bytes `n`.
pub fn test_public_key(n: u8) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = [n; 32];
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out.push('=');
    out
}
