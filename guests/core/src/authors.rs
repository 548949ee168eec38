//! Author handles: each author id a structure keeps for good is interned
//! once ([`Authors::intern`]) and named by a dense [`AuthorId`] from then
//! on, so per-author records live in vectors indexed by handle and a
//! lookup by string is one hash plus an integer index, not a B-tree
//! search comparing strings behind pointers.
//!
//! Handles are issued in arrival order, which is not author order: where
//! an order is observable (digests, answers, views, logs), the owner keeps
//! a sorted index or sorts by [`Authors::name`].
//!
//! Hostile input: [`Authors::find`] never interns, so a lookup of an
//! unknown author (straight from the wire) grows nothing; only code that
//! stores the author for good (a linked chain, a subject record) calls
//! [`Authors::intern`].

use std::cell::Cell;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::compact::Slots;

/// A dense handle of an author interned in one [`Authors`] table: its
/// index there. Only [`Authors`] makes one, so a handle names an interned
/// author of the table that issued it; the vectors indexed by handle are
/// still read with `get` (a handle of another table is a bug, not a panic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct AuthorId(u32);

impl AuthorId {
    /// The index this handle stands for.
    pub(crate) fn index(self) -> usize {
        // u32 -> usize: lossless on every target this crate builds for
        // (wasm32 and 64-bit hosts).
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

/// The interning table: author ids by handle, and a hash index from id to
/// handle (a fixed-seed hash: deterministic, no random state).
#[derive(Clone, Debug, Default)]
pub(crate) struct Authors {
    /// Each interned id, at its handle's index.
    names: Slots<Arc<str>>,
    /// Handles, found by the hash of their id.
    index: HashTable<AuthorId>,
    /// The handle [`Authors::find`] last found: one entry is handled by
    /// several lookups of its author in a row, and comparing one id is
    /// cheaper than hashing it (ids are unique in the table, so an equal
    /// id is that handle).
    last: Cell<Option<AuthorId>>,
}

/// The hash of an author id in the index: foldhash with a fixed seed
/// (deterministic, fast on short strings; like any fixed-key hash, an
/// author who grinds ids can collide them, which costs lookups time, not
/// correctness: an index entry is confirmed by comparing the id).
fn hash_of(name: &str) -> u64 {
    use std::hash::BuildHasher as _;
    foldhash::fast::FixedState::with_seed(0x6e6f_6465_706c_616e).hash_one(name)
}

impl Authors {
    /// The handle of `name`, if interned. Never interns.
    pub(crate) fn find(&self, name: &str) -> Option<AuthorId> {
        let names = &self.names;
        if let Some(last) = self.last.get() {
            if names.get(last.index()).is_some_and(|n| **n == *name) {
                return Some(last);
            }
        }
        let found = self
            .index
            .find(hash_of(name), |a| {
                names.get(a.index()).is_some_and(|n| **n == *name)
            })
            .copied();
        if found.is_some() {
            self.last.set(found);
        }
        found
    }

    /// The handle of `name`, interned (allocating its id) if new.
    /// `None` only once 2^32 authors are interned (unreachable: that
    /// takes more memory than a node has).
    pub(crate) fn intern(&mut self, name: &str) -> Option<AuthorId> {
        self.intern_with(name, || Arc::from(name))
    }

    /// [`Authors::intern`], sharing `shared` (an equal id allocated
    /// elsewhere) rather than allocating a copy if the author is new.
    pub(crate) fn intern_shared(&mut self, shared: &Arc<str>) -> Option<AuthorId> {
        self.intern_with(shared, || shared.clone())
    }

    /// The handle of `name`, interned with the id `make` gives if new.
    fn intern_with(&mut self, name: &str, make: impl FnOnce() -> Arc<str>) -> Option<AuthorId> {
        let hash = hash_of(name);
        let names = &self.names;
        if let Some(a) = self
            .index
            .find(hash, |a| names.get(a.index()).is_some_and(|n| **n == *name))
        {
            return Some(*a);
        }
        let id = AuthorId(u32::try_from(self.names.len()).ok()?);
        self.names.push(make());
        let names = &self.names;
        self.index
            .insert_unique(hash, id, |a| names.get(a.index()).map_or(0, |n| hash_of(n)));
        Some(id)
    }

    /// The id a handle stands for (`None` for a handle of another table).
    pub(crate) fn name(&self, id: AuthorId) -> Option<&Arc<str>> {
        self.names.get(id.index())
    }

    /// Number of interned authors.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// Every handle with its id, in handle (arrival) order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (AuthorId, &Arc<str>)> + '_ {
        // Every index below `names.len()` was issued, so fits a u32.
        self.names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((AuthorId(u32::try_from(i).ok()?), n)))
    }

    /// Every handle, sorted by id (author byte order): for the rare
    /// readers whose order is observable and that keep no sorted index.
    pub(crate) fn sorted(&self) -> Vec<AuthorId> {
        let mut out: Vec<(AuthorId, &Arc<str>)> = self.iter().collect();
        out.sort_unstable_by(|a, b| a.1.cmp(b.1));
        out.into_iter().map(|(a, _)| a).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_idempotent_and_finding_never_interns() {
        let mut t = Authors::default();
        assert_eq!(t.find("a"), None);
        assert_eq!(t.len(), 0);
        let a = t.intern("a").unwrap();
        let b = t.intern_shared(&Arc::from("b")).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.intern("a"), Some(a));
        assert_eq!(t.find("b"), Some(b));
        assert_eq!(t.name(a).map(|n| &**n), Some("a"));
        for i in 0..1000 {
            t.intern(&format!("n{i}"));
        }
        assert_eq!(t.find("a"), Some(a));
        assert_eq!(
            t.find("n999").and_then(|h| t.name(h)).map(|n| &**n),
            Some("n999")
        );
        assert_eq!(t.len(), 1002);
        // Repeated and alternating lookups (the last one found is kept):
        // each name still gives its own handle, an unknown one none.
        for _ in 0..2 {
            assert_eq!(t.find("a"), Some(a));
            assert_eq!(t.find("a"), Some(a));
            assert_eq!(t.find("b"), Some(b));
            assert_eq!(t.find("zz"), None);
            assert_eq!(t.find(""), None);
        }
        let sorted = t.sorted();
        let names: Vec<&str> = sorted
            .iter()
            .filter_map(|&h| t.name(h))
            .map(|n| &**n)
            .collect();
        let mut expected = names.clone();
        expected.sort_unstable();
        assert_eq!(names, expected);
    }
}
