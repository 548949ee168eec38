//! The desired peer set with its serial, and the plan of what to render.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use nodeplane_interface::{Member, MembershipView, NodeId};

use crate::peer::{Tunnel, VpnPeer};

/// The desired peer set: every `alive` or `suspect` member except this
/// node, by node id, with a serial that rises by one on every change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerSet {
    /// Rises by one on every change of `peers`; 0 for the initial empty set.
    pub serial: u64,
    /// The peers by node id.
    pub peers: BTreeMap<NodeId, VpnPeer>,
}

impl PeerSet {
    /// Applies one member as it is now; returns whether the set changed
    /// (and then the serial rose).
    pub fn apply_member(&mut self, member: &Member, local: Option<&str>) -> bool {
        if local == Some(member.id.as_str()) {
            return false;
        }
        let changed = match VpnPeer::from_member(member) {
            Some(peer) => {
                if self.peers.get(&peer.node_id) == Some(&peer) {
                    false
                } else {
                    self.peers.insert(peer.node_id.clone(), peer);
                    true
                }
            }
            None => self.peers.remove(&member.id).is_some(),
        };
        if changed {
            self.serial += 1;
        }
        changed
    }

    /// Replaces the peers with those of `view`; returns whether the set
    /// changed (and then the serial rose by one).
    pub fn reset_to(&mut self, view: &MembershipView, local: Option<&str>) -> bool {
        let peers: BTreeMap<NodeId, VpnPeer> = view
            .members
            .iter()
            .filter(|m| local != Some(m.id.as_str()))
            .filter_map(VpnPeer::from_member)
            .map(|p| (p.node_id.clone(), p))
            .collect();
        if peers == self.peers {
            return false;
        }
        self.peers = peers;
        self.serial += 1;
        true
    }

    /// Which peers to render and which to skip, with reasons. Two peers
    /// claiming the same overlay IP or public key are both skipped: the
    /// data plane cannot tell which one is genuine.
    pub fn plan(&self) -> RenderPlan<'_> {
        let mut by_ip: BTreeMap<_, Vec<&str>> = BTreeMap::new();
        let mut by_key: BTreeMap<_, Vec<&str>> = BTreeMap::new();
        for peer in self.peers.values() {
            if let Ok(t) = &peer.tunnel {
                by_ip.entry(t.overlay_ip).or_default().push(&peer.node_id);
                by_key.entry(&t.public_key).or_default().push(&peer.node_id);
            }
        }
        let mut plan = RenderPlan::default();
        for peer in self.peers.values() {
            match &peer.tunnel {
                Err(why) => plan.skipped.push((peer, why.to_string())),
                Ok(t) => {
                    let ip_owners = &by_ip[&t.overlay_ip];
                    let key_owners = &by_key[&t.public_key];
                    if ip_owners.len() > 1 {
                        let reason =
                            format!("overlay-ip {} is claimed by {:?}", t.overlay_ip, ip_owners);
                        plan.skipped.push((peer, reason));
                    } else if key_owners.len() > 1 {
                        plan.skipped
                            .push((peer, format!("public-key is claimed by {key_owners:?}")));
                    } else {
                        plan.rendered.push((peer, t));
                    }
                }
            }
        }
        plan
    }
}

/// What a configuration holds: peers with a tunnel, and peers skipped with
/// the reason.
#[derive(Debug, Default)]
pub struct RenderPlan<'a> {
    /// Peers rendered, in node id order.
    pub rendered: Vec<(&'a VpnPeer, &'a Tunnel)>,
    /// Peers kept but not rendered, in node id order, with the reason.
    pub skipped: Vec<(&'a VpnPeer, String)>,
}

/// The last applied peer set, shared with readers (a data plane thread)
/// that keep using it while the control plane is unreachable or swapped.
#[derive(Clone, Debug, Default)]
pub struct SharedPeerSet(Arc<Mutex<Arc<PeerSet>>>);

impl SharedPeerSet {
    /// The set in force now.
    pub fn current(&self) -> Arc<PeerSet> {
        Arc::clone(&self.lock())
    }

    pub(crate) fn publish(&self, set: Arc<PeerSet>) {
        *self.lock() = set;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<PeerSet>> {
        match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeplane_interface::PeerState;

    const KEY_A: &str = "YcFCSOOYGKPXKTWgh4CG5R2oBUbf3dpsl6dO5YjXpEA=";
    const KEY_B: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    fn member(id: &str, port: u16, state: PeerState, ip: &str, key: &str) -> Member {
        Member {
            id: id.into(),
            address: format!("127.0.0.1:{port}"),
            state,
            incarnation: 0,
            metadata: vec![
                ("overlay-ip".into(), ip.into()),
                ("public-key".into(), key.into()),
            ],
        }
    }

    #[test]
    fn serial_rises_only_on_change() {
        let mut set = PeerSet::default();
        assert!(set.apply_member(&member("a", 1, PeerState::Alive, "10.0.0.1", KEY_A), None));
        assert_eq!(set.serial, 1);
        assert!(!set.apply_member(&member("a", 1, PeerState::Alive, "10.0.0.1", KEY_A), None));
        assert_eq!(set.serial, 1);
        assert!(set.apply_member(&member("a", 1, PeerState::Suspect, "10.0.0.1", KEY_A), None));
        assert!(set.apply_member(&member("a", 1, PeerState::Dead, "10.0.0.1", KEY_A), None));
        assert!(set.peers.is_empty());
        assert!(!set.apply_member(&member("a", 1, PeerState::Left, "10.0.0.1", KEY_A), None));
        // A returning peer comes back with its new endpoint.
        assert!(set.apply_member(&member("a", 2, PeerState::Alive, "10.0.0.1", KEY_A), None));
        assert_eq!(set.peers["a"].address, "127.0.0.1:2");
        assert_eq!(set.serial, 4);
    }

    #[test]
    fn the_local_node_is_never_a_peer() {
        let mut set = PeerSet::default();
        assert!(!set.apply_member(
            &member("me", 1, PeerState::Alive, "10.0.0.1", KEY_A),
            Some("me")
        ));
        let view = MembershipView {
            version: 3,
            members: vec![member("me", 1, PeerState::Alive, "10.0.0.1", KEY_A)],
        };
        assert!(!set.reset_to(&view, Some("me")));
        assert_eq!(set.serial, 0);
    }

    #[test]
    fn conflicting_claims_are_skipped_on_both_sides() {
        let mut set = PeerSet::default();
        set.apply_member(&member("a", 1, PeerState::Alive, "10.0.0.1", KEY_A), None);
        set.apply_member(&member("b", 2, PeerState::Alive, "10.0.0.1", KEY_B), None);
        set.apply_member(&member("c", 3, PeerState::Alive, "10.0.0.3", KEY_B), None);
        let plan = set.plan();
        assert!(plan.rendered.is_empty(), "{plan:?}");
        assert_eq!(plan.skipped.len(), 3);
        assert!(plan.skipped[0].1.contains("overlay-ip 10.0.0.1"));
        assert!(plan.skipped[2].1.contains("public-key"));
    }
}
