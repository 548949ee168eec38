//! The roster: the published view (what subscribers were told), with the
//! live and dead sets the protocol samples from and the cluster size the
//! death rule and the gossip fan-out scale with.
//!
//! Members are named by their handle in the derived view's table
//! ([`crate::membership::Derived::authors`]): the records are a slot per
//! handle, the sets hold handles. A lookup by id goes through that table
//! (passed in), which never interns.

use std::sync::Arc;

use nodeplane_types::{Member, MembershipUpdate, PeerState, UpdateCause};

use crate::authors::{AuthorId, Authors};
use crate::compact::Slots;
use crate::ledger::Hash;
use crate::membership::{Address, Profile};
use crate::rng::{Permutation, Rng};

/// A set of published members with O(1) access by position (for random
/// sampling); each member's position is in its published record
/// (`Published::pos`), so insert, remove and lookup are one slot access.
/// The order of `items` depends on the history of inserts and removals,
/// which is deterministic.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdSet {
    items: Vec<AuthorId>,
}

impl IdSet {
    /// Whether the member `a`, published as `rec`, is in this set: a
    /// member is in at most one set at a time, and its `pos` is its place
    /// there.
    fn holds(&self, rec: &Published, a: AuthorId) -> bool {
        rec.tags
            .pos()
            .is_some_and(|i| self.items.get(i) == Some(&a))
    }

    /// Adds `a` (published as `rec`) if absent. A set already holding
    /// [`Tags::MAX_POS`] members takes no more (unreachable: that is 2^28
    /// members, more than a node's memory holds records for).
    fn insert(&mut self, rec: &mut Published, a: AuthorId) {
        if !self.holds(rec, a) && rec.tags.set_pos(Some(self.items.len())) {
            self.items.push(a);
        }
    }

    /// Removes `a` if present; the member that moved into its place gets
    /// its new position.
    fn remove(&mut self, published: &mut Slots<Option<Published>>, a: AuthorId) {
        let Some(rec) = published.get_mut(a.index()).and_then(Option::as_mut) else {
            return;
        };
        if !self.holds(rec, a) {
            return;
        }
        let Some(i) = rec.tags.pos() else {
            return;
        };
        rec.tags.set_pos(None);
        self.items.swap_remove(i);
        if let Some(moved) = self.items.get(i) {
            if let Some(m) = published.get_mut(moved.index()).and_then(Option::as_mut) {
                // `i` held a member already, so it fits.
                m.tags.set_pos(Some(i));
            }
        }
    }

    /// The members, in their deterministic sampling order.
    pub(crate) fn items(&self) -> &[AuthorId] {
        &self.items
    }

    fn check(&self, published: &Slots<Option<Published>>, authors: &Authors) {
        for (i, a) in self.items.iter().enumerate() {
            assert_eq!(
                published
                    .get(a.index())
                    .and_then(Option::as_ref)
                    .and_then(|p| p.tags.pos()),
                Some(i),
                "id set: position of {:?}",
                authors.name(*a)
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
    /// Its state, whether it is in the probe order, and its place in the
    /// live or dead set (one word: the record is 16 bytes, not 24).
    tags: Tags,
}

/// A published member's state, whether it is in the probe order now
/// (kept by `Prober`), and its place in the live or the dead set while
/// it is in one, packed in 32 bits: the state in bits 0-1, the probe
/// order in bit 2, and the place plus one (0: in no set) in bits 4-31.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tags(u32);

impl Tags {
    /// Bit of the probe order.
    const QUEUED: u32 = 1 << 2;
    /// Shift of the place plus one.
    const POS_SHIFT: u32 = 4;
    /// The largest place a record holds (2^28 − 2).
    const MAX_POS: usize = (1 << 28) - 2;

    /// A member in `state`, not queued, in no set.
    fn new(state: PeerState) -> Tags {
        let bits = match state {
            PeerState::Alive => 0,
            PeerState::Suspect => 1,
            PeerState::Dead => 2,
            PeerState::Left => 3,
        };
        Tags(bits)
    }

    /// The state.
    fn state(self) -> PeerState {
        match self.0 & 3 {
            0 => PeerState::Alive,
            1 => PeerState::Suspect,
            2 => PeerState::Dead,
            _ => PeerState::Left,
        }
    }

    /// Whether it is in the probe order.
    fn queued(self) -> bool {
        self.0 & Tags::QUEUED != 0
    }

    /// Records whether it is in the probe order.
    fn set_queued(&mut self, queued: bool) {
        if queued {
            self.0 |= Tags::QUEUED;
        } else {
            self.0 &= !Tags::QUEUED;
        }
    }

    /// Its place in the live or dead set, if in one.
    fn pos(self) -> Option<usize> {
        let p = self.0 >> Tags::POS_SHIFT;
        usize::try_from(p).ok()?.checked_sub(1)
    }

    /// Sets its place (`None`: in no set); false, changing nothing, if
    /// the place is above [`Tags::MAX_POS`].
    fn set_pos(&mut self, pos: Option<usize>) -> bool {
        let stored = match pos {
            None => 0,
            Some(p) if p <= Tags::MAX_POS => match u32::try_from(p) {
                Ok(p) => p.saturating_add(1),
                Err(_) => return false,
            },
            Some(_) => return false,
        };
        self.0 = (self.0 & ((1 << Tags::POS_SHIFT) - 1)) | (stored << Tags::POS_SHIFT);
        true
    }
}

impl Published {
    /// Its state.
    fn state(&self) -> PeerState {
        self.tags.state()
    }

    /// Whether it says what `new` says.
    fn same_as(&self, new: &Published) -> bool {
        self.state() == new.state()
            && self.incarnation == new.incarnation
            && (Arc::ptr_eq(&self.profile, &new.profile) || self.profile == new.profile)
    }

    /// The member `id` as published.
    fn to_member(&self, id: &str) -> Member {
        Member {
            id: id.to_string(),
            address: self.profile.addr.text(),
            state: self.state(),
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
    pub(crate) address: &'a Address,
    /// Its state.
    pub(crate) state: PeerState,
}

/// The published view and the sets derived from it.
#[derive(Debug)]
pub(crate) struct Roster {
    self_id: String,
    /// Each published member's record, at its handle's index (`None`: a
    /// handle not published).
    published: Slots<Option<Published>>,
    /// Number of published members.
    published_len: usize,
    /// Live (alive or suspect) published members other than self.
    live: IdSet,
    /// Dead published members other than self.
    dead: IdSet,
    /// Live published members, self included (the cluster size).
    live_count: usize,
    /// Rises by one per update published.
    version: u64,
}

impl Roster {
    /// An empty roster of the node `self_id`.
    pub(crate) fn new(self_id: &str) -> Roster {
        Roster {
            self_id: self_id.to_string(),
            published: Slots::default(),
            published_len: 0,
            live: IdSet::default(),
            dead: IdSet::default(),
            live_count: 0,
            version: 0,
        }
    }

    /// The record of a handle, if published.
    fn rec(&self, a: AuthorId) -> Option<&Published> {
        self.published.get(a.index())?.as_ref()
    }

    /// The record of a handle, if published, mutably.
    fn rec_mut(&mut self, a: AuthorId) -> Option<&mut Published> {
        self.published.get_mut(a.index())?.as_mut()
    }

    /// The record of `id` (found in `authors`, never interning).
    fn find(&self, authors: &Authors, id: &str) -> Option<&Published> {
        self.rec(authors.find(id)?)
    }

    /// One published member (built: prefer [`Roster::state`] and
    /// [`Roster::address`] where they do).
    pub(crate) fn get(&self, authors: &Authors, id: &str) -> Option<Member> {
        let a = authors.find(id)?;
        let p = self.rec(a)?;
        Some(p.to_member(authors.name(a)?))
    }

    /// [`Roster::get`] of a handle.
    pub(crate) fn get_at(&self, authors: &Authors, a: AuthorId) -> Option<Member> {
        Some(self.rec(a)?.to_member(authors.name(a)?))
    }

    /// Whether `id` is published.
    pub(crate) fn contains(&self, authors: &Authors, id: &str) -> bool {
        self.find(authors, id).is_some()
    }

    /// A published member's state and incarnation.
    pub(crate) fn state(&self, authors: &Authors, id: &str) -> Option<(PeerState, u64)> {
        self.find(authors, id).map(|p| (p.state(), p.incarnation))
    }

    /// A published member's address.
    pub(crate) fn address(&self, authors: &Authors, id: &str) -> Option<String> {
        self.find(authors, id).map(|p| p.profile.addr.text())
    }

    /// A published member's metadata.
    pub(crate) fn metadata(&self, authors: &Authors, id: &str) -> Option<Vec<(String, String)>> {
        self.find(authors, id).map(|p| p.profile.meta.to_vec())
    }

    /// Every published member, sorted by id.
    pub(crate) fn members(&self, authors: &Authors) -> Vec<Member> {
        authors
            .sorted()
            .into_iter()
            .filter_map(|a| self.get_at(authors, a))
            .collect()
    }

    /// The view version: the number of updates published.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Live members other than self.
    pub(crate) fn live(&self) -> &[AuthorId] {
        self.live.items()
    }

    /// Dead members other than self.
    pub(crate) fn dead(&self) -> &[AuthorId] {
        self.dead.items()
    }

    /// Whether `a` is in the probe order (see `Prober`).
    pub(crate) fn queued(&self, a: AuthorId) -> bool {
        self.rec(a).is_some_and(|p| p.tags.queued())
    }

    /// Records whether `a` is in the probe order (see `Prober`).
    pub(crate) fn set_queued(&mut self, a: AuthorId, queued: bool) {
        if let Some(p) = self.rec_mut(a) {
            p.tags.set_queued(queued);
        }
    }

    /// How many published members are in the probe order.
    pub(crate) fn queued_count(&self) -> usize {
        self.published
            .iter()
            .flatten()
            .filter(|p| p.tags.queued())
            .count()
    }

    /// Whether `a` is a published, live member.
    pub(crate) fn is_live(&self, a: AuthorId) -> bool {
        self.rec(a).is_some_and(|m| m.state().is_live())
    }

    /// Live members, self included (at least 1).
    pub(crate) fn cluster_size(&self) -> usize {
        self.live_count.max(1)
    }

    /// Publishes member `id` (handle `a`; the derived view's shared
    /// profile, `state` at `incarnation`) if it differs from the
    /// published one; returns the update to deliver (`entry` is the entry
    /// behind the change; the update names it in lowercase hex).
    pub(crate) fn publish(
        &mut self,
        (a, id): (AuthorId, &str),
        (profile, state, incarnation): (Arc<Profile>, PeerState, u64),
        entry: Option<Hash>,
    ) -> Option<MembershipUpdate> {
        let mut new = Published {
            profile,
            incarnation,
            tags: Tags::new(state),
        };
        let old = self.rec(a);
        if old.is_some_and(|o| o.same_as(&new)) {
            return None;
        }
        let previous = old.map(Published::state);
        let cause = cause(
            old.map(|m| (m.state(), m.incarnation)),
            (state, incarnation),
        );
        if let Some(old) = old {
            // The state is the new one; the place and the probe order
            // carry over.
            new.tags = Tags((old.tags.0 & !3) | (new.tags.0 & 3));
        }
        let current = new.to_member(id);
        while self.published.len() <= a.index() {
            self.published.push(None);
        }
        let slot = self.published.get_mut(a.index())?;
        if slot.is_none() {
            self.published_len = self.published_len.saturating_add(1);
        }
        *slot = Some(new);
        self.version = self.version.saturating_add(1);
        self.track_state((a, id), previous, state);
        Some(MembershipUpdate {
            peer: current.id.clone(),
            previous,
            current,
            cause,
            entry: entry.as_ref().map(hex_id),
            version: self.version,
        })
    }

    /// Up to `k` live peers (self excluded) that pass `keep`, in random
    /// order. Draws candidates lazily, so the cost is O(k log n) unless most
    /// peers fail the test.
    pub(crate) fn sample_live(
        &self,
        authors: &Authors,
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
            let Some(&a) = self.live.items.get(i) else {
                break;
            };
            let (Some(p), Some(id)) = (self.rec(a), authors.name(a)) else {
                continue;
            };
            let m = MemberRef {
                id,
                address: &p.profile.addr,
                state: p.state(),
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
    fn track_state(&mut self, (a, id): (AuthorId, &str), old: Option<PeerState>, new: PeerState) {
        let was_live = old.is_some_and(PeerState::is_live);
        if was_live != new.is_live() {
            self.live_count = if new.is_live() {
                self.live_count.saturating_add(1)
            } else {
                self.live_count.saturating_sub(1)
            };
        }
        if *id == *self.self_id {
            return;
        }
        if !new.is_live() {
            self.live.remove(&mut self.published, a);
        }
        if new != PeerState::Dead {
            self.dead.remove(&mut self.published, a);
        }
        let Some(rec) = self.published.get_mut(a.index()).and_then(Option::as_mut) else {
            return;
        };
        if new.is_live() {
            self.live.insert(rec, a);
        }
        if new == PeerState::Dead {
            self.dead.insert(rec, a);
        }
    }

    /// Slots held, published or not (test hook): one per handle up to
    /// the largest published one.
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.published.len()
    }

    /// Asserts that the live and dead sets and the cluster size agree with
    /// the published members. O(n).
    pub(crate) fn check_invariants(&self, authors: &Authors) {
        self.live.check(&self.published, authors);
        self.dead.check(&self.published, authors);
        let mut live_count = 0usize;
        let mut published = 0usize;
        for (a, id) in authors.iter() {
            let Some(m) = self.rec(a) else {
                continue;
            };
            published = published.saturating_add(1);
            live_count = live_count.saturating_add(usize::from(m.state().is_live()));
            let other = **id != *self.self_id;
            assert_eq!(
                self.live.holds(m, a),
                other && m.state().is_live(),
                "roster: live set disagrees about {id}"
            );
            assert_eq!(
                self.dead.holds(m, a),
                other && m.state() == PeerState::Dead,
                "roster: dead set disagrees about {id}"
            );
        }
        assert_eq!(published, self.published_len, "roster: published count");
        assert_eq!(
            self.published.iter().flatten().count(),
            self.published_len,
            "roster: a record at a handle not issued"
        );
        assert!(
            self.live.items.len().saturating_add(self.dead.items.len()) <= self.published_len,
            "roster: live or dead set names a member not published"
        );
        assert_eq!(self.live_count, live_count, "roster: cluster size");
        assert!(
            self.version >= self.published_len as u64,
            "roster: every member was published by an update"
        );
    }
}

/// Why a member changed from `old` to `new` (state, incarnation).
/// An entry id in lowercase hex, as `hex::encode` writes it (which builds
/// the string a `char` at a time; every update a node publishes carries
/// the id of the entry behind it).
fn hex_id(id: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(id.len().saturating_mul(2));
    for &b in id {
        for nibble in [b >> 4, b & 0xf] {
            out.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

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
    use crate::compact::Pairs;

    #[test]
    fn tags_keep_state_queue_and_place_apart() {
        for state in PeerState::ALL {
            let mut t = Tags::new(state);
            assert_eq!((t.state(), t.queued(), t.pos()), (state, false, None));
            for pos in [0, 1, 5, Tags::MAX_POS] {
                assert!(t.set_pos(Some(pos)));
                t.set_queued(true);
                assert_eq!((t.state(), t.queued(), t.pos()), (state, true, Some(pos)));
                t.set_queued(false);
                assert_eq!((t.state(), t.queued(), t.pos()), (state, false, Some(pos)));
            }
            assert!(!t.set_pos(Some(Tags::MAX_POS + 1)));
            assert_eq!(t.pos(), Some(Tags::MAX_POS));
            assert!(t.set_pos(None));
            assert_eq!((t.state(), t.pos()), (state, None));
        }
        assert_eq!(std::mem::size_of::<Tags>(), 4);
    }

    fn member(
        authors: &mut Authors,
        id: &str,
        state: PeerState,
        incarnation: u64,
    ) -> (AuthorId, Arc<str>, (Arc<Profile>, PeerState, u64)) {
        let profile = Profile {
            addr: Address::new("10.0.0.1:7000".into()),
            meta: Pairs::default(),
        };
        let a = authors.intern(id).unwrap();
        (a, Arc::from(id), (Arc::new(profile), state, incarnation))
    }

    fn publish(
        r: &mut Roster,
        (a, id, m): (AuthorId, Arc<str>, (Arc<Profile>, PeerState, u64)),
        entry: Option<Hash>,
    ) -> Option<MembershipUpdate> {
        r.publish((a, &id), m, entry)
    }

    #[test]
    fn entry_ids_are_written_as_hex_encode_writes_them() {
        let mut id = [0u8; 32];
        for round in 0..=255u8 {
            for (i, b) in id.iter_mut().enumerate() {
                *b = round.wrapping_mul(31).wrapping_add(i as u8 * 8);
            }
            assert_eq!(hex_id(&id), hex::encode(id));
        }
    }

    #[test]
    fn sets_follow_the_published_states() {
        let mut t = Authors::default();
        let mut r = Roster::new("a");
        let u = publish(&mut r, member(&mut t, "a", PeerState::Alive, 1), None).unwrap();
        assert_eq!((u.cause, u.version), (UpdateCause::Joined, 1));
        publish(&mut r, member(&mut t, "b", PeerState::Alive, 1), None).unwrap();
        publish(&mut r, member(&mut t, "c", PeerState::Alive, 1), None).unwrap();
        assert!(publish(&mut r, member(&mut t, "c", PeerState::Alive, 1), None).is_none());
        r.check_invariants(&t);
        assert_eq!((r.cluster_size(), r.live().len()), (3, 2));
        let u = publish(&mut r, member(&mut t, "b", PeerState::Dead, 1), None).unwrap();
        assert_eq!(
            (u.cause, u.previous),
            (UpdateCause::ConfirmedDead, Some(PeerState::Alive))
        );
        r.check_invariants(&t);
        let (b, c) = (t.find("b").unwrap(), t.find("c").unwrap());
        assert_eq!(
            (r.cluster_size(), r.live(), r.dead()),
            (2, &[c][..], &[b][..])
        );
        let u = publish(&mut r, member(&mut t, "b", PeerState::Alive, 2), None).unwrap();
        assert_eq!((u.cause, u.version), (UpdateCause::Recovered, 5));
        r.check_invariants(&t);
        assert_eq!(
            r.members(&t)
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }
}
