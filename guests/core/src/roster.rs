//! The roster: the published view (what subscribers were told), with the
//! live and dead sets the protocol samples from and the cluster size the
//! death rule and the gossip fan-out scale with.

use std::collections::BTreeMap;
use std::sync::Arc;

use nodeplane_types::{Member, MembershipUpdate, PeerState, UpdateCause};

use crate::ledger::Hash;
use crate::membership::Profile;
use crate::rng::{Permutation, Rng};

/// A set of published member ids with O(1) access by position (for
/// random sampling); each member's position is in its published record
/// (`Published::pos`), so insert, remove and lookup are one roster lookup.
/// The order of `items` depends on the history of inserts and removals,
/// which is deterministic. Ids are the shared ones (one allocation per
/// member).
#[derive(Clone, Debug, Default)]
pub(crate) struct IdSet {
    items: Vec<Arc<str>>,
}

impl IdSet {
    /// Whether the member `id`, published as `rec`, is in this set: a
    /// member is in at most one set at a time, and its `pos` is its place
    /// there.
    fn holds(&self, rec: &Published, id: &str) -> bool {
        rec.pos
            .is_some_and(|i| self.items.get(i).is_some_and(|x| **x == *id))
    }

    /// Adds `id` (published as `rec`) if absent.
    fn insert(&mut self, rec: &mut Published, id: &Arc<str>) {
        if !self.holds(rec, id) {
            rec.pos = Some(self.items.len());
            self.items.push(id.clone());
        }
    }

    /// Removes `id` if present; the member that moved into its place gets
    /// its new position.
    fn remove(&mut self, published: &mut BTreeMap<Arc<str>, Published>, id: &str) {
        let Some(rec) = published.get_mut(id) else {
            return;
        };
        if !self.holds(rec, id) {
            return;
        }
        let Some(i) = rec.pos.take() else {
            return;
        };
        self.items.swap_remove(i);
        if let Some(moved) = self.items.get(i) {
            if let Some(m) = published.get_mut(&**moved) {
                m.pos = Some(i);
            }
        }
    }

    /// The ids, in their deterministic sampling order.
    pub(crate) fn items(&self) -> &[Arc<str>] {
        &self.items
    }

    fn check(&self, published: &BTreeMap<Arc<str>, Published>) {
        for (i, id) in self.items.iter().enumerate() {
            assert_eq!(
                published.get(id).and_then(|p| p.pos),
                Some(i),
                "id set: position of {id}"
            );
        }
    }
}

/// A published member, as subscribers were last told: the address and
/// metadata are the derived view's shared profile, not a copy; the
/// [`Member`] is built when asked for.
#[derive(Clone, Debug)]
struct Published {
    profile: Arc<Profile>,
    incarnation: u64,
    state: PeerState,
    /// Its place in the live or the dead set, while it is in one.
    pos: Option<usize>,
    /// Whether it is in the probe order now (kept by `Prober`).
    queued: bool,
}

impl Published {
    /// Whether it says what `new` says.
    fn same_as(&self, new: &Published) -> bool {
        self.state == new.state
            && self.incarnation == new.incarnation
            && (Arc::ptr_eq(&self.profile, &new.profile) || self.profile == new.profile)
    }

    /// The member `id` as published.
    fn to_member(&self, id: &str) -> Member {
        Member {
            id: id.to_string(),
            address: self.profile.addr.to_string(),
            state: self.state,
            incarnation: self.incarnation,
            metadata: self.profile.meta.to_vec(),
        }
    }
}

/// A published member, borrowed (what [`Roster::sample_live`]'s test sees).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MemberRef<'a> {
    /// The member's id.
    pub(crate) id: &'a str,
    /// Its address.
    pub(crate) address: &'a str,
    /// Its state.
    pub(crate) state: PeerState,
}

/// The published view and the sets derived from it.
#[derive(Debug)]
pub(crate) struct Roster {
    self_id: String,
    /// Keyed by the member's id, allocated once (by the derived view) and
    /// shared with the live and dead sets and the probe order.
    published: BTreeMap<Arc<str>, Published>,
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

    /// One published member (built: prefer [`Roster::state`] and
    /// [`Roster::address`] where they do).
    pub(crate) fn get(&self, id: &str) -> Option<Member> {
        let (k, p) = self.published.get_key_value(id)?;
        Some(p.to_member(k))
    }

    /// Whether `id` is published.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.published.contains_key(id)
    }

    /// A published member's state and incarnation.
    pub(crate) fn state(&self, id: &str) -> Option<(PeerState, u64)> {
        self.published.get(id).map(|p| (p.state, p.incarnation))
    }

    /// A published member's address.
    pub(crate) fn address(&self, id: &str) -> Option<&str> {
        self.published.get(id).map(|p| &*p.profile.addr)
    }

    /// A published member's metadata.
    pub(crate) fn metadata(&self, id: &str) -> Option<&[(String, String)]> {
        self.published.get(id).map(|p| &*p.profile.meta)
    }

    /// Every published member, sorted by id.
    pub(crate) fn members(&self) -> Vec<Member> {
        self.published.iter().map(|(k, p)| p.to_member(k)).collect()
    }

    /// The view version: the number of updates published.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Live members other than self.
    pub(crate) fn live(&self) -> &[Arc<str>] {
        self.live.items()
    }

    /// Dead members other than self.
    pub(crate) fn dead(&self) -> &[Arc<str>] {
        self.dead.items()
    }

    /// Whether `id` is in the probe order (see `Prober`).
    pub(crate) fn queued(&self, id: &str) -> bool {
        self.published.get(id).is_some_and(|p| p.queued)
    }

    /// Records whether `id` is in the probe order (see `Prober`).
    pub(crate) fn set_queued(&mut self, id: &str, queued: bool) {
        if let Some(p) = self.published.get_mut(id) {
            p.queued = queued;
        }
    }

    /// How many published members are in the probe order.
    pub(crate) fn queued_count(&self) -> usize {
        self.published.values().filter(|p| p.queued).count()
    }

    /// Whether `id` is a published, live member.
    pub(crate) fn is_live(&self, id: &str) -> bool {
        self.published.get(id).is_some_and(|m| m.state.is_live())
    }

    /// Live members, self included (at least 1).
    pub(crate) fn cluster_size(&self) -> usize {
        self.live_count.max(1)
    }

    /// Publishes member `id` (the derived view's shared id and profile,
    /// `state` at `incarnation`) if it differs from the published one;
    /// returns the update to deliver (`entry` is the entry behind the
    /// change; the update names it in lowercase hex).
    pub(crate) fn publish(
        &mut self,
        id: &Arc<str>,
        (profile, state, incarnation): (Arc<Profile>, PeerState, u64),
        entry: Option<Hash>,
    ) -> Option<MembershipUpdate> {
        let mut new = Published {
            profile,
            incarnation,
            state,
            pos: None,
            queued: false,
        };
        let (key, old) = match self.published.get_key_value(&**id) {
            Some((k, m)) => (k.clone(), Some(m)),
            None => (id.clone(), None),
        };
        if old.is_some_and(|o| o.same_as(&new)) {
            return None;
        }
        let previous = old.map(|m| m.state);
        let cause = cause(old.map(|m| (m.state, m.incarnation)), (state, incarnation));
        if let Some(old) = old {
            (new.pos, new.queued) = (old.pos, old.queued);
        }
        self.version = self.version.saturating_add(1);
        let current = new.to_member(&key);
        self.published.insert(key.clone(), new);
        self.track_state(&key, previous, state);
        Some(MembershipUpdate {
            peer: current.id.clone(),
            previous,
            current,
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
        keep: impl Fn(&MemberRef<'_>) -> bool,
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
            let Some(p) = self.published.get(id) else {
                continue;
            };
            let m = MemberRef {
                id,
                address: &p.profile.addr,
                state: p.state,
            };
            if keep(&m) {
                out.push(id.to_string());
            }
        }
        out
    }

    /// Keeps the live and dead sets and the cluster size in step with a
    /// change of `published` (made already). Removals first: a member's
    /// one `pos` may only name a place in one set at a time.
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
        if !new.is_live() {
            self.live.remove(&mut self.published, id);
        }
        if new != PeerState::Dead {
            self.dead.remove(&mut self.published, id);
        }
        let Some(rec) = self.published.get_mut(&**id) else {
            return;
        };
        if new.is_live() {
            self.live.insert(rec, id);
        }
        if new == PeerState::Dead {
            self.dead.insert(rec, id);
        }
    }

    /// Asserts that the live and dead sets and the cluster size agree with
    /// the published members. O(n).
    pub(crate) fn check_invariants(&self) {
        self.live.check(&self.published);
        self.dead.check(&self.published);
        let mut live_count = 0usize;
        for (id, m) in &self.published {
            live_count = live_count.saturating_add(usize::from(m.state.is_live()));
            let other = **id != *self.self_id;
            assert_eq!(
                self.live.holds(m, id),
                other && m.state.is_live(),
                "roster: live set disagrees about {id}"
            );
            assert_eq!(
                self.dead.holds(m, id),
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

/// Why a member changed from `old` to `new` (state, incarnation).
fn cause(old: Option<(PeerState, u64)>, new: (PeerState, u64)) -> UpdateCause {
    match (old.map(|m| m.0), new.0) {
        (None, _) => UpdateCause::Joined,
        (Some(PeerState::Suspect), PeerState::Suspect) if old.is_some_and(|o| o.1 != new.1) => {
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

    fn member(
        id: &str,
        state: PeerState,
        incarnation: u64,
    ) -> (Arc<str>, (Arc<Profile>, PeerState, u64)) {
        let profile = Profile {
            addr: "10.0.0.1:7000".into(),
            meta: Box::default(),
        };
        (Arc::from(id), (Arc::new(profile), state, incarnation))
    }

    fn publish(
        r: &mut Roster,
        (id, m): (Arc<str>, (Arc<Profile>, PeerState, u64)),
        entry: Option<Hash>,
    ) -> Option<MembershipUpdate> {
        r.publish(&id, m, entry)
    }

    #[test]
    fn sets_follow_the_published_states() {
        let mut r = Roster::new("a");
        let u = publish(&mut r, member("a", PeerState::Alive, 1), None).unwrap();
        assert_eq!((u.cause, u.version), (UpdateCause::Joined, 1));
        publish(&mut r, member("b", PeerState::Alive, 1), None).unwrap();
        publish(&mut r, member("c", PeerState::Alive, 1), None).unwrap();
        assert!(publish(&mut r, member("c", PeerState::Alive, 1), None).is_none());
        r.check_invariants();
        assert_eq!((r.cluster_size(), r.live().len()), (3, 2));
        let u = publish(&mut r, member("b", PeerState::Dead, 1), None).unwrap();
        assert_eq!(
            (u.cause, u.previous),
            (UpdateCause::ConfirmedDead, Some(PeerState::Alive))
        );
        r.check_invariants();
        assert_eq!(
            (r.cluster_size(), r.live(), r.dead()),
            (2, &[Arc::from("c")][..], &[Arc::from("b")][..])
        );
        let u = publish(&mut r, member("b", PeerState::Alive, 2), None).unwrap();
        assert_eq!((u.cause, u.version), (UpdateCause::Recovered, 5));
        r.check_invariants();
    }
}
