//! [`MeshVpn`]: keeps the desired peer set from a control plane's updates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodeplane_interface::{ControlError, ControlPlane, MembershipUpdate, NodeId, Subscription};

use crate::peer_set::{PeerSet, SharedPeerSet};
use crate::render::render_wireguard;

/// How a [`MeshVpn`] is set up.
#[derive(Clone, Debug, Default)]
pub struct MeshVpnConfig {
    /// This node's id: it is never its own peer. `None` keeps every member.
    pub local_node_id: Option<NodeId>,
    /// Rebuild the set from `get_members` at this interval even without a
    /// gap: bounds staleness after a dropped remote event stream when no
    /// further update arrives. `None` (the default) relies on gaps alone.
    pub resync_every: Option<Duration>,
}

/// Errors of the Mesh VPN. The peer set in force is kept whatever happens.
#[derive(Debug, thiserror::Error)]
pub enum MeshVpnError {
    /// The control plane could not be reached or refused; the last applied
    /// set stays in force and the next poll tries again.
    #[error("control plane: {0}")]
    Control(#[from] ControlError),
    /// The rendered configuration could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What one [`MeshVpn::poll`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Updates applied in order.
    pub applied: usize,
    /// Updates ignored because the set already covers their version.
    pub ignored: usize,
    /// Whether the set was rebuilt from `get_members` (first poll, after a
    /// version gap, or after the control plane was unreachable).
    pub resynced: bool,
    /// The serial after the poll.
    pub serial: u64,
    /// Whether the serial rose during this poll.
    pub changed: bool,
}

/// The Mesh VPN host over any control plane `C`.
///
/// Driven by [`poll`](MeshVpn::poll) (or [`poll_wait`](MeshVpn::poll_wait)):
/// subscribe first, take `get_members` as the baseline, then apply updates
/// whose version follows the last applied one; ignore versions already
/// covered; resync on a gap.
pub struct MeshVpn<C: ControlPlane> {
    control: C,
    config: MeshVpnConfig,
    subscription: Option<Subscription>,
    /// The view version the set reflects; `None` until a baseline is taken.
    applied_version: Option<u64>,
    set: PeerSet,
    shared: SharedPeerSet,
    last_error: Option<ControlError>,
    last_baseline: Option<Instant>,
}

impl<C: ControlPlane> MeshVpn<C> {
    /// A Mesh VPN over `control` with an empty set (serial 0). It connects
    /// on the first poll.
    pub fn new(control: C, config: MeshVpnConfig) -> MeshVpn<C> {
        MeshVpn {
            control,
            config,
            subscription: None,
            applied_version: None,
            set: PeerSet::default(),
            shared: SharedPeerSet::default(),
            last_error: None,
            last_baseline: None,
        }
    }

    /// The control plane (to join, leave, report).
    pub fn control(&self) -> &C {
        &self.control
    }

    /// The peer set in force.
    pub fn peer_set(&self) -> &PeerSet {
        &self.set
    }

    /// The serial of the peer set in force.
    pub fn serial(&self) -> u64 {
        self.set.serial
    }

    /// The view version the set reflects, once a baseline was taken.
    pub fn applied_version(&self) -> Option<u64> {
        self.applied_version
    }

    /// The last control-plane error, cleared by the next successful poll.
    pub fn last_error(&self) -> Option<&ControlError> {
        self.last_error.as_ref()
    }

    /// A handle readers (a data plane thread) use to get the set in force,
    /// without touching the control plane.
    pub fn shared(&self) -> SharedPeerSet {
        self.shared.clone()
    }

    /// The set in force rendered as a WireGuard-style configuration.
    pub fn render(&self) -> String {
        render_wireguard(&self.set)
    }

    /// Renders the set in force and writes it atomically to `path`
    /// (conventionally [`CONFIG_FILE_NAME`](crate::CONFIG_FILE_NAME)).
    pub fn write_config(&self, path: &Path) -> Result<(), MeshVpnError> {
        crate::render::write_atomic(path, &self.render()).map_err(|source| MeshVpnError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// Applies every update waiting now. On a control-plane error the set
    /// in force is kept and the error returned; the next poll retries.
    pub fn poll(&mut self) -> Result<PollReport, MeshVpnError> {
        self.poll_inner(None)
    }

    /// Like [`poll`](MeshVpn::poll), but first waits up to `timeout` for an
    /// update when none is waiting.
    pub fn poll_wait(&mut self, timeout: Duration) -> Result<PollReport, MeshVpnError> {
        self.poll_inner(Some(timeout))
    }

    /// Rebuilds the set from `get_members` now (keeping the subscription).
    pub fn resync(&mut self) -> Result<PollReport, MeshVpnError> {
        let before = self.set.serial;
        let mut report = PollReport::default();
        let result = self.take_baseline(&mut report);
        self.finish(result, report, before)
    }

    fn poll_inner(&mut self, wait: Option<Duration>) -> Result<PollReport, MeshVpnError> {
        let before = self.set.serial;
        let mut report = PollReport::default();
        let result = self.connect_and_apply(wait, &mut report);
        self.finish(result, report, before)
    }

    fn finish(
        &mut self,
        result: Result<(), ControlError>,
        mut report: PollReport,
        before: u64,
    ) -> Result<PollReport, MeshVpnError> {
        report.serial = self.set.serial;
        report.changed = self.set.serial != before;
        if report.changed {
            self.shared.publish(Arc::new(self.set.clone()));
            tracing::info!(
                serial = self.set.serial,
                peers = self.set.peers.len(),
                "peer set changed"
            );
        }
        match result {
            Ok(()) => {
                self.last_error = None;
                Ok(report)
            }
            Err(error) => {
                tracing::warn!(%error, serial = self.set.serial, "control plane unavailable; keeping the peer set in force");
                self.last_error = Some(error.clone());
                Err(error.into())
            }
        }
    }

    fn connect_and_apply(
        &mut self,
        wait: Option<Duration>,
        report: &mut PollReport,
    ) -> Result<(), ControlError> {
        if self.subscription.is_none() {
            // Subscribe first, then take the baseline: nothing falls between.
            self.subscription = Some(self.control.subscribe_membership_updates()?);
            self.applied_version = None;
        }
        let stale = match (self.config.resync_every, self.last_baseline) {
            (Some(every), Some(at)) => at.elapsed() >= every,
            _ => false,
        };
        if self.applied_version.is_none() || stale {
            self.take_baseline(report)?;
        }
        let Some(subscription) = &self.subscription else {
            return Ok(());
        };
        let mut updates = Vec::new();
        if let Some(timeout) = wait {
            if let Some(first) = subscription
                .try_recv()
                .or_else(|| subscription.recv_timeout(timeout))
            {
                updates.push(first);
            }
        }
        updates.extend(subscription.drain());
        for update in updates {
            self.apply(update, report)?;
        }
        Ok(())
    }

    fn apply(
        &mut self,
        update: MembershipUpdate,
        report: &mut PollReport,
    ) -> Result<(), ControlError> {
        let applied = match self.applied_version {
            Some(v) => v,
            // A failed resync earlier: rebuild before applying anything.
            None => {
                self.take_baseline(report)?;
                self.applied_version.unwrap_or(0)
            }
        };
        if update.version <= applied {
            report.ignored += 1;
            return Ok(());
        }
        if update.version != applied + 1 {
            tracing::warn!(
                expected = applied + 1,
                got = update.version,
                "membership version gap; resyncing"
            );
            return self.take_baseline(report).map(|()| {
                // The baseline may still predate this update; nothing is lost
                // either way: later updates follow it or trigger another resync.
                if self
                    .applied_version
                    .is_some_and(|v| update.version == v + 1)
                {
                    self.apply_now(&update, report);
                }
            });
        }
        self.apply_now(&update, report);
        Ok(())
    }

    fn apply_now(&mut self, update: &MembershipUpdate, report: &mut PollReport) {
        let local = self.config.local_node_id.as_deref();
        self.set.apply_member(&update.current, local);
        self.applied_version = Some(update.version);
        report.applied += 1;
        tracing::debug!(peer = %update.peer, state = %update.current.state, version = update.version, "applied membership update");
    }

    fn take_baseline(&mut self, report: &mut PollReport) -> Result<(), ControlError> {
        self.applied_version = None;
        let view = self.control.get_members()?;
        self.set
            .reset_to(&view, self.config.local_node_id.as_deref());
        self.applied_version = Some(view.version);
        self.last_baseline = Some(Instant::now());
        report.resynced = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    #[test]
    fn a_periodic_resync_repairs_a_silent_loss() {
        let fake = Arc::new(Fake::default());
        let config = MeshVpnConfig {
            resync_every: Some(Duration::ZERO),
            ..Default::default()
        };
        let mut vpn = MeshVpn::new(Arc::clone(&fake), config);
        vpn.poll().unwrap();
        fake.change("a", 1, PeerState::Alive, false); // lost, and nothing follows
        let report = vpn.poll().unwrap();
        assert!(report.resynced && report.changed);
        assert_eq!(ids(&vpn).len(), 1);
    }

    use nodeplane_interface::{
        Address, Member, MembershipView, Metadata, PeerState, SubscriptionSender, UpdateCause,
    };

    use super::*;

    /// A scripted control plane: the test sets the view and decides which
    /// updates subscribers see.
    #[derive(Default)]
    struct Fake {
        view: Mutex<MembershipView>,
        subscribers: Mutex<Vec<SubscriptionSender>>,
        down: Mutex<bool>,
    }

    impl Fake {
        /// Changes one member; `deliver` false simulates a lost update.
        fn change(&self, id: &str, port: u16, state: PeerState, deliver: bool) {
            let mut view = self.view.lock().unwrap();
            view.version += 1;
            let current = Member {
                id: id.into(),
                address: format!("127.0.0.1:{port}"),
                state,
                incarnation: 0,
                metadata: vec![],
            };
            view.members.retain(|m| m.id != id);
            view.members.push(current.clone());
            let update = MembershipUpdate {
                peer: id.into(),
                previous: None,
                current,
                cause: UpdateCause::Changed,
                entry: None,
                version: view.version,
            };
            if deliver {
                for s in self.subscribers.lock().unwrap().iter() {
                    s.send(update.clone());
                }
            }
        }

        fn check(&self) -> Result<(), ControlError> {
            if *self.down.lock().unwrap() {
                return Err(ControlError::Unavailable("down".into()));
            }
            Ok(())
        }
    }

    impl ControlPlane for Fake {
        fn join(&self, _: &[Address]) -> Result<MembershipView, ControlError> {
            unimplemented!()
        }
        fn leave(&self) -> Result<(), ControlError> {
            unimplemented!()
        }
        fn get_members(&self) -> Result<MembershipView, ControlError> {
            self.check()?;
            Ok(self.view.lock().unwrap().clone())
        }
        fn publish_heartbeat(&self) -> Result<u64, ControlError> {
            unimplemented!()
        }
        fn report_peer_state(&self, _: &str, _: PeerState) -> Result<PeerState, ControlError> {
            unimplemented!()
        }
        fn subscribe_membership_updates(&self) -> Result<Subscription, ControlError> {
            self.check()?;
            let (sender, subscription) = Subscription::channel(1, |_| {});
            self.subscribers.lock().unwrap().push(sender);
            Ok(subscription)
        }
        fn get_peer_metadata(&self, _: &str) -> Result<Metadata, ControlError> {
            unimplemented!()
        }
    }

    fn ids(vpn: &MeshVpn<Arc<Fake>>) -> Vec<(String, String)> {
        vpn.peer_set()
            .peers
            .values()
            .map(|p| (p.node_id.clone(), p.address.clone()))
            .collect()
    }

    #[test]
    fn baseline_then_updates_in_order() {
        let fake = Arc::new(Fake::default());
        fake.change("a", 1, PeerState::Alive, true);
        let mut vpn = MeshVpn::new(Arc::clone(&fake), MeshVpnConfig::default());
        let report = vpn.poll().unwrap();
        assert!(report.resynced && report.changed);
        assert_eq!(ids(&vpn), vec![("a".into(), "127.0.0.1:1".into())]);
        fake.change("b", 2, PeerState::Suspect, true);
        fake.change("a", 1, PeerState::Dead, true);
        let report = vpn.poll().unwrap();
        assert_eq!(
            (report.applied, report.resynced, report.serial),
            (2, false, 3)
        );
        assert_eq!(ids(&vpn), vec![("b".into(), "127.0.0.1:2".into())]);
        fake.change("a", 9, PeerState::Alive, true);
        vpn.poll().unwrap();
        assert_eq!(
            vpn.peer_set().peers["a"].address,
            "127.0.0.1:9",
            "back on its new endpoint"
        );
    }

    #[test]
    fn updates_covered_by_the_baseline_are_ignored() {
        let fake = Arc::new(Fake::default());
        let mut vpn = MeshVpn::new(Arc::clone(&fake), MeshVpnConfig::default());
        // Subscribe, then changes land before the baseline is taken.
        vpn.subscription = Some(fake.subscribe_membership_updates().unwrap());
        fake.change("a", 1, PeerState::Alive, true);
        fake.change("b", 2, PeerState::Alive, true);
        let report = vpn.poll().unwrap();
        assert_eq!((report.applied, report.ignored, report.serial), (0, 2, 1));
        assert_eq!(vpn.applied_version(), Some(2));
    }

    #[test]
    fn a_version_gap_resyncs() {
        let fake = Arc::new(Fake::default());
        let mut vpn = MeshVpn::new(Arc::clone(&fake), MeshVpnConfig::default());
        vpn.poll().unwrap();
        fake.change("a", 1, PeerState::Alive, false); // lost
        fake.change("b", 2, PeerState::Alive, true);
        let report = vpn.poll().unwrap();
        assert!(report.resynced);
        assert_eq!(
            ids(&vpn).len(),
            2,
            "the lost update is recovered by the resync"
        );
        assert_eq!(vpn.applied_version(), Some(2));
    }

    #[test]
    fn the_set_in_force_survives_an_outage() {
        let fake = Arc::new(Fake::default());
        fake.change("a", 1, PeerState::Alive, true);
        let mut vpn = MeshVpn::new(Arc::clone(&fake), MeshVpnConfig::default());
        vpn.poll().unwrap();
        let shared = vpn.shared();
        *fake.down.lock().unwrap() = true;
        fake.change("b", 2, PeerState::Alive, false);
        fake.change("c", 3, PeerState::Alive, true); // a gap: resync fails
        assert!(matches!(
            vpn.poll(),
            Err(MeshVpnError::Control(ControlError::Unavailable(_)))
        ));
        assert_eq!(ids(&vpn).len(), 1);
        assert_eq!(shared.current().peers.len(), 1);
        *fake.down.lock().unwrap() = false;
        let report = vpn.poll().unwrap();
        assert!(report.resynced && report.changed);
        assert_eq!(ids(&vpn).len(), 3);
        assert_eq!(shared.current().serial, vpn.serial());
    }

    #[test]
    fn an_unreachable_control_plane_at_start_is_retried() {
        let fake = Arc::new(Fake::default());
        *fake.down.lock().unwrap() = true;
        let mut vpn = MeshVpn::new(Arc::clone(&fake), MeshVpnConfig::default());
        assert!(vpn.poll().is_err());
        assert_eq!(vpn.serial(), 0);
        *fake.down.lock().unwrap() = false;
        fake.change("a", 1, PeerState::Alive, true);
        vpn.poll().unwrap();
        assert_eq!(ids(&vpn).len(), 1);
    }
}
