//! The roster: the published view (what subscribers were told), with the
//! live and dead sets the protocol samples from and the cluster size the
//! death rule and the gossip fan-out scale with.

use std::collections::BTreeMap;
use std::sync::Arc;

use nodeplane_types::{Member, MembershipUpdate, PeerState, UpdateCause};

use crate::ledger::Hash;
use crate::rng::{Permutation, Rng};

/// A set of member ids with O(log n) insert, remove and lookup and O(1)
/// access by position (for random sampling). The order of `items` depends
/// on the history of inserts and removals, which is deterministic. Ids are
/// the roster's shared ones (one allocation per member).
#[derive(Clone, Debug, Default)]
pub(crate) struct IdSet {
    items: Vec<Arc<str>>,
    pos: BTreeMap<Arc<str>, usize>,
}

impl IdSet {
    fn insert(&mut self, id: &Arc<str>) {
        if !self.pos.contains_key(&**id) {
            self.pos.insert(id.clone(), self.items.len());
            self.items.push(id.clone());
        }
    }

    fn remove(&mut self, id: &str) {
        let Some(i) = self.pos.remove(id) else {
            return;
        };
        self.items.swap_remove(i);
        if let Some(moved) = self.items.get(i) {
            self.pos.insert(moved.clone(), i);
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.pos.contains_key(id)
    }

    /// The ids, in their deterministic sampling order.
    pub(crate) fn items(&self) -> &[Arc<str>] {
        &self.items
    }

    fn check(&self) {
        assert_eq!(self.items.len(), self.pos.len(), "id set: index size");
        for (id, &i) in &self.pos {
            assert_eq!(
                self.items.get(i).map(|a| &**a),
                Some(&**id),
                "id set: index of {id}"
            );
        }
    }
}

/// The published view and the sets derived from it.
#[derive(Debug)]
pub(crate) struct Roster {
    self_id: String,
    /// Keyed by the member's id, allocated once and shared with the live
    /// and dead sets and the probe order.
    published: BTreeMap<Arc<str>, Member>,
    /// Live (alive or suspect) members of `published` other than self.
    live: IdSet,
    /// Dead members of `published` other than self.
    dead: IdSet,
    /// Live members of `published`, self included (the cluster size).
    live_count: usize,
    /// Rises by one per update published.
    version: u64,
}

impl Roster {
    /// An empty roster of the node `self_id`.
    pub(crate) fn new(self_id: &str) -> Roster {
        Roster {
            self_id: self_id.to_string(),
            published: BTreeMap::new(),
            live: IdSet::default(),
            dead: IdSet::default(),
            live_count: 0,
            version: 0,
        }
    }

    /// One published member.
    pub(crate) fn get(&self, id: &str) -> Option<&Member> {
        self.published.get(id)
    }

    /// Every published member, sorted by id.
    pub(crate) fn members(&self) -> Vec<Member> {
        self.published.values().cloned().collect()
    }

    /// The view version: the number of updates published.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// The roster's shared copy of a published member's id.
    pub(crate) fn interned(&self, id: &str) -> Option<Arc<str>> {
        self.published.get_key_value(id).map(|(k, _)| k.clone())
    }

    /// Live members other than self.
    pub(crate) fn live(&self) -> &[Arc<str>] {
        self.live.items()
    }

    /// Dead members other than self.
    pub(crate) fn dead(&self) -> &[Arc<str>] {
        self.dead.items()
    }

    /// Whether `id` is a published, live member.
    pub(crate) fn is_live(&self, id: &str) -> bool {
        self.published.get(id).is_some_and(|m| m.state.is_live())
    }

    /// Live members, self included (at least 1).
    pub(crate) fn cluster_size(&self) -> usize {
        self.live_count.max(1)
    }

    /// Publishes `new` if it differs from the published member; returns the
    /// update to deliver (`entry` is the entry behind the change; the
    /// update names it in lowercase hex).
    pub(crate) fn publish(&mut self, new: Member, entry: Option<Hash>) -> Option<MembershipUpdate> {
        let (key, old) = match self.published.get_key_value(new.id.as_str()) {
            Some((k, m)) => (k.clone(), Some(m)),
            None => (Arc::from(new.id.as_str()), None),
        };
        if old == Some(&new) {
            return None;
        }
        let previous = old.map(|m| m.state);
        let cause = cause(old, &new);
        self.version = self.version.saturating_add(1);
        self.track_state(&key, previous, new.state);
        self.published.insert(key, new.clone());
        Some(MembershipUpdate {
            peer: new.id.clone(),
            previous,
            current: new,
            cause,
            entry: entry.map(hex::encode),
            version: self.version,
        })
    }

    /// Up to `k` live peers (self excluded) that pass `keep`, in random
    /// order. Draws candidates lazily, so the cost is O(k log n) unless most
    /// peers fail the test.
    pub(crate) fn sample_live(
        &self,
        rng: &mut Rng,
        k: usize,
        keep: impl Fn(&Member) -> bool,
    ) -> Vec<String> {
        let mut perm = Permutation::new(self.live.items.len());
        let mut out = Vec::new();
        while out.len() < k {
            let Some(i) = perm.next(rng) else {
                break;
            };
            let Some(id) = self.live.items.get(i) else {
                break;
            };
            if self.published.get(id).is_some_and(&keep) {
                out.push(id.to_string());
            }
        }
        out
    }

    /// Keeps the live and dead sets and the cluster size in step with a
    /// change of `published`.
    fn track_state(&mut self, id: &Arc<str>, old: Option<PeerState>, new: PeerState) {
        let was_live = old.is_some_and(PeerState::is_live);
        if was_live != new.is_live() {
            self.live_count = if new.is_live() {
                self.live_count.saturating_add(1)
            } else {
                self.live_count.saturating_sub(1)
            };
        }
        if **id == *self.self_id {
            return;
        }
        if new.is_live() {
            self.live.insert(id);
        } else {
            self.live.remove(id);
        }
        if new == PeerState::Dead {
            self.dead.insert(id);
        } else {
            self.dead.remove(id);
        }
    }

    /// Asserts that the live and dead sets and the cluster size agree with
    /// the published members. O(n).
    pub(crate) fn check_invariants(&self) {
        self.live.check();
        self.dead.check();
        let mut live_count = 0usize;
        for (id, m) in &self.published {
            assert_eq!(
                m.id.as_str(),
                &**id,
                "roster: member filed under another id"
            );
            live_count = live_count.saturating_add(usize::from(m.state.is_live()));
            let other = **id != *self.self_id;
            assert_eq!(
                self.live.contains(id),
                other && m.state.is_live(),
                "roster: live set disagrees about {id}"
            );
            assert_eq!(
                self.dead.contains(id),
                other && m.state == PeerState::Dead,
                "roster: dead set disagrees about {id}"
            );
        }
        assert!(
            self.live.items.len().saturating_add(self.dead.items.len()) <= self.published.len(),
            "roster: live or dead set names a member not published"
        );
        assert_eq!(self.live_count, live_count, "roster: cluster size");
        assert!(
            self.version >= self.published.len() as u64,
            "roster: every member was published by an update"
        );
    }
}

/// Why a member changed from `old` to `new`.
fn cause(old: Option<&Member>, new: &Member) -> UpdateCause {
    match (old.map(|m| m.state), new.state) {
        (None, _) => UpdateCause::Joined,
        (Some(PeerState::Suspect), PeerState::Suspect)
            if old.is_some_and(|o| o.incarnation != new.incarnation) =>
        {
            UpdateCause::Suspected
        }
        (Some(p), n) if p == n => UpdateCause::Changed,
        (_, PeerState::Left) => UpdateCause::Left,
        (_, PeerState::Dead) => UpdateCause::ConfirmedDead,
        (Some(PeerState::Dead), _) => UpdateCause::Recovered,
        (Some(PeerState::Left), _) => UpdateCause::Joined,
        (_, PeerState::Suspect) => UpdateCause::Suspected,
        (Some(PeerState::Suspect), PeerState::Alive) => UpdateCause::Refuted,
        (Some(_), PeerState::Alive) => UpdateCause::Changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, state: PeerState, incarnation: u64) -> Member {
        Member {
            id: id.into(),
            address: "10.0.0.1:7000".into(),
            state,
            incarnation,
            metadata: Vec::new(),
        }
    }

    #[test]
    fn sets_follow_the_published_states() {
        let mut r = Roster::new("a");
        let u = r.publish(member("a", PeerState::Alive, 1), None).unwrap();
        assert_eq!((u.cause, u.version), (UpdateCause::Joined, 1));
        r.publish(member("b", PeerState::Alive, 1), None).unwrap();
        r.publish(member("c", PeerState::Alive, 1), None).unwrap();
        assert!(r.publish(member("c", PeerState::Alive, 1), None).is_none());
        r.check_invariants();
        assert_eq!((r.cluster_size(), r.live().len()), (3, 2));
        let u = r.publish(member("b", PeerState::Dead, 1), None).unwrap();
        assert_eq!(
            (u.cause, u.previous),
            (UpdateCause::ConfirmedDead, Some(PeerState::Alive))
        );
        r.check_invariants();
        assert_eq!(
            (r.cluster_size(), r.live(), r.dead()),
            (2, &[Arc::from("c")][..], &[Arc::from("b")][..])
        );
        let u = r.publish(member("b", PeerState::Alive, 2), None).unwrap();
        assert_eq!((u.cause, u.version), (UpdateCause::Recovered, 5));
        r.check_invariants();
    }
}
