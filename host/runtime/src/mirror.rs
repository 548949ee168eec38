//! The host's mirror of a node's view, cheap per node: the members are
//! interned in a [`MemberPool`] shared by every node of a [`Runtime`]
//! (crate::Runtime), so N nodes that see the same N members hold each
//! distinct member value once, and each node's mirror is a sorted set of
//! pointers.

use std::borrow::Borrow;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use nodeplane_types::{Member, MembershipView};

/// Interned member values (see the module documentation). Clones share
/// the pool. Values no mirror holds any more are pruned when the pool has
/// doubled since the last pruning (amortised O(1) per interning).
#[derive(Clone, Debug, Default)]
pub struct MemberPool(Arc<Mutex<Interned>>);

#[derive(Debug, Default)]
struct Interned {
    /// Members by the hash of their value.
    by_hash: HashMap<u64, Vec<Arc<Member>>>,
    /// Members held.
    len: usize,
    /// `len` after the last pruning.
    kept: usize,
}

fn value_hash(member: &Member) -> u64 {
    let mut h = DefaultHasher::new();
    member.id.hash(&mut h);
    member.address.hash(&mut h);
    member.state.hash(&mut h);
    member.incarnation.hash(&mut h);
    member.metadata.hash(&mut h);
    h.finish()
}

/// Pool size below which no pruning happens.
const PRUNE_FLOOR: usize = 1024;

impl MemberPool {
    /// An empty pool.
    pub fn new() -> MemberPool {
        MemberPool::default()
    }

    fn lock(&self) -> MutexGuard<'_, Interned> {
        match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The shared copy of `member`.
    pub fn intern(&self, member: &Member) -> Arc<Member> {
        let hash = value_hash(member);
        let mut pool = self.lock();
        if let Some(found) = pool
            .by_hash
            .get(&hash)
            .and_then(|bucket| bucket.iter().find(|m| ***m == *member))
        {
            return Arc::clone(found);
        }
        let shared = Arc::new(member.clone());
        pool.by_hash
            .entry(hash)
            .or_default()
            .push(Arc::clone(&shared));
        pool.len = pool.len.saturating_add(1);
        if pool.len > pool.kept.saturating_mul(2).max(PRUNE_FLOOR) {
            pool.by_hash.retain(|_, bucket| {
                bucket.retain(|m| Arc::strong_count(m) > 1);
                !bucket.is_empty()
            });
            pool.len = pool.by_hash.values().map(Vec::len).sum();
            pool.kept = pool.len;
        }
        shared
    }

    /// Number of distinct member values held.
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// True when no value is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A member in a [`Mirror`], ordered by id.
#[derive(Clone, Debug)]
struct ById(Arc<Member>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

/// One node's mirror of its view: at most one member per id, in id order.
#[derive(Clone, Debug, Default)]
pub struct Mirror {
    members: BTreeSet<ById>,
}

impl Mirror {
    /// An empty mirror.
    pub fn new() -> Mirror {
        Mirror::default()
    }

    /// Sets the member with `member`'s id to `member`.
    pub fn set(&mut self, member: Arc<Member>) {
        self.members.replace(ById(member));
    }

    /// The member with id `id`.
    pub fn get(&self, id: &str) -> Option<&Member> {
        self.members.get(id).map(|m| &*m.0)
    }

    /// Whether a member has id `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.members.contains(id)
    }

    /// The members, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().map(|m| &*m.0)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The mirror of `view`'s members, interned in `pool`.
    pub fn of_view(view: &MembershipView, pool: &MemberPool) -> Mirror {
        let mut mirror = Mirror::new();
        for member in &view.members {
            mirror.set(pool.intern(member));
        }
        mirror
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeplane_types::PeerState;

    fn member(id: &str, incarnation: u64) -> Member {
        Member {
            id: id.into(),
            address: format!("{id}:1"),
            state: PeerState::Alive,
            incarnation,
            metadata: vec![],
        }
    }

    #[test]
    fn equal_members_are_shared_and_the_mirror_keeps_one_per_id() {
        let pool = MemberPool::new();
        let (a, b) = (pool.intern(&member("a", 1)), pool.intern(&member("a", 1)));
        assert!(Arc::ptr_eq(&a, &b));
        let mut mirror = Mirror::new();
        mirror.set(a);
        mirror.set(pool.intern(&member("b", 1)));
        mirror.set(pool.intern(&member("a", 2)));
        let ids: Vec<(&str, u64)> = mirror
            .iter()
            .map(|m| (m.id.as_str(), m.incarnation))
            .collect();
        assert_eq!(ids, vec![("a", 2), ("b", 1)]);
        assert_eq!(mirror.get("a").map(|m| m.incarnation), Some(2));
    }

    #[test]
    fn unused_values_are_pruned() {
        let pool = MemberPool::new();
        let kept = pool.intern(&member("kept", 0));
        for i in 0..(3 * PRUNE_FLOOR as u64) {
            drop(pool.intern(&member("x", i)));
        }
        assert!(pool.len() <= 2 * PRUNE_FLOOR + 1, "{}", pool.len());
        assert!(Arc::ptr_eq(&kept, &pool.intern(&member("kept", 0))));
    }
}
