//! A map from `u64` keys to small `Copy` values, in key order, for the
//! per-member indexes a node keeps one pair of per member: the ledger's
//! bucket-key index (author key -> author, read by range for the bucketed
//! digests) and the last frontier digest heard from each peer address.
//!
//! A `BTreeMap<u64, AuthorId>` held about 21 bytes per author for 12 of
//! payload (nodes room for 11 pairs, two thirds full after random
//! inserts, plus parent links; half full after ascending ones).
//! [`PagedMap`] keeps the same pairs in sorted pages of at most
//! [`PAGE_MAX`] pairs, each a vector grown by a quarter: about 13-14
//! bytes per pair of 12. A full page splits in two, so an insert moves at
//! most one page whatever the keys are (author keys are SHA-256 prefixes,
//! but a hostile author can grind their top bits: a skewed key set only
//! makes more, fuller pages, never a longer one).

use crate::compact::U64Words;

/// Pairs a page holds at most; one more splits it in two.
const PAGE_MAX: usize = 64;

/// Keys with their values, sorted by key, each key once. The key is kept
/// as [`U64Words`] (4-byte aligned), so a pair with a 4-byte value is 12
/// bytes and one with an 8-byte array 16.
#[derive(Clone, Debug)]
pub(crate) struct PagedMap<V> {
    /// Non-empty pages, each sorted; every key of a page is below every
    /// key of the next.
    pages: Vec<Vec<(U64Words, V)>>,
    /// Number of pairs.
    len: usize,
}

impl<V> Default for PagedMap<V> {
    fn default() -> Self {
        PagedMap {
            pages: Vec::new(),
            len: 0,
        }
    }
}

/// Inserts `value` into `v` at `at`, growing its capacity by about a
/// quarter (at least one) when full, never past one over [`PAGE_MAX`]
/// (the length at which the page splits).
fn insert_page<T>(v: &mut Vec<T>, at: usize, value: T) {
    if v.len() == v.capacity() {
        let room = PAGE_MAX.saturating_add(1).saturating_sub(v.len());
        v.reserve_exact((v.len() / 4).clamp(1, room.max(1)));
    }
    v.insert(at, value);
}

impl<V: Copy> PagedMap<V> {
    /// The page `key` is in or would go in: the last page whose first key
    /// is at most `key` (the first page if none is).
    fn page_of(&self, key: u64) -> usize {
        self.pages
            .partition_point(|p| p.first().is_some_and(|(k, _)| k.get() <= key))
            .saturating_sub(1)
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: u64) -> Option<V> {
        let page = self.pages.get(self.page_of(key))?;
        let i = page.binary_search_by(|(k, _)| k.get().cmp(&key)).ok()?;
        page.get(i).map(|&(_, a)| a)
    }

    /// Whether `key` has a value.
    pub(crate) fn contains_key(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// Sets the value of `key`.
    pub(crate) fn insert(&mut self, key: u64, a: V) {
        let at = self.page_of(key);
        let Some(page) = self.pages.get_mut(at) else {
            self.pages.push(vec![(U64Words::new(key), a)]);
            self.len = self.len.saturating_add(1);
            return;
        };
        match page.binary_search_by(|(k, _)| k.get().cmp(&key)) {
            Ok(i) => {
                if let Some(slot) = page.get_mut(i) {
                    slot.1 = a;
                }
            }
            Err(i) => {
                insert_page(page, i, (U64Words::new(key), a));
                self.len = self.len.saturating_add(1);
                if page.len() > PAGE_MAX {
                    let mut tail = page.split_off(page.len() / 2);
                    page.shrink_to_fit();
                    tail.shrink_to_fit();
                    let next = at.saturating_add(1);
                    if self.pages.len() == self.pages.capacity() {
                        self.pages.reserve_exact((self.pages.len() / 4).max(1));
                    }
                    self.pages.insert(next, tail);
                }
            }
        }
    }

    /// Removes the pair of the smallest key, if any.
    pub(crate) fn pop_first(&mut self) -> Option<(u64, V)> {
        let page = self.pages.first_mut()?;
        if page.is_empty() {
            return None;
        }
        let (k, v) = page.remove(0);
        if page.is_empty() {
            self.pages.remove(0);
        }
        self.len = self.len.saturating_sub(1);
        Some((k.get(), v))
    }

    /// Number of pairs.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The pairs whose key is in `lo..=hi`, in key order.
    pub(crate) fn range(&self, lo: u64, hi: u64) -> impl Iterator<Item = (u64, V)> + '_ {
        let at = self.page_of(lo);
        let first = self.pages.get(at).map_or(&[][..], |p| {
            let from = p.partition_point(|(k, _)| k.get() < lo);
            p.get(from..).unwrap_or(&[])
        });
        let rest = self.pages.get(at.saturating_add(1)..).unwrap_or(&[]);
        first
            .iter()
            .chain(rest.iter().flatten())
            .map(|&(k, a)| (k.get(), a))
            .take_while(move |&(k, _)| k <= hi)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::authors::{AuthorId, Authors};

    /// `n` distinct handles.
    fn handles(n: usize) -> Vec<AuthorId> {
        let mut t = Authors::default();
        (0..n).filter_map(|i| t.intern(&format!("a{i}"))).collect()
    }

    /// Checks every read of `index` against the map it should equal.
    fn same_as(index: &PagedMap<AuthorId>, reference: &BTreeMap<u64, AuthorId>, probes: &[u64]) {
        assert!(index
            .range(0, u64::MAX)
            .eq(reference.iter().map(|(&k, &a)| (k, a))));
        assert_eq!(index.len(), reference.len());
        for p in index.pages.iter() {
            assert!(!p.is_empty() && p.len() <= PAGE_MAX);
            assert!(p.capacity() <= PAGE_MAX + 1);
        }
        for &k in reference.keys().chain(probes) {
            assert_eq!(index.get(k), reference.get(&k).copied(), "get {k}");
            for &h in probes {
                let (lo, hi) = (k.min(h), k.max(h));
                assert!(
                    index
                        .range(lo, hi)
                        .eq(reference.range(lo..=hi).map(|(&k, &a)| (k, a))),
                    "range {lo}..={hi}"
                );
            }
        }
    }

    #[test]
    fn a_skewed_key_set_splits_into_bounded_pages_and_reads_as_a_map() {
        // Keys sharing their top bits (ground by a hostile author), in
        // ascending, descending and mixed order, with replacements.
        let hs = handles(4);
        for order in 0..3u64 {
            let mut index = PagedMap::default();
            let mut reference = BTreeMap::new();
            for i in 0..700u64 {
                let j = match order {
                    0 => i,
                    1 => 699 - i,
                    _ => (i * 263) % 700,
                };
                let k = 0xabcd_0000_0000_0000 | j.wrapping_mul(3);
                let a = hs[(i % 4) as usize];
                index.insert(k, a);
                reference.insert(k, a);
                if i % 5 == 0 {
                    index.insert(k, hs[0]);
                    reference.insert(k, hs[0]);
                }
            }
            assert!(index.pages.len() > 700 / PAGE_MAX);
            same_as(
                &index,
                &reference,
                &[0, 1, 0xabcd_0000_0000_0000, 0xabcd_0000_0000_0100, u64::MAX],
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn reads_as_a_btreemap_after_any_inserts(
            keys in prop::collection::vec(any::<u64>(), 0..400),
            probes in prop::collection::vec(any::<u64>(), 0..6),
        ) {
            let hs = handles(3);
            let mut index = PagedMap::default();
            let mut reference = BTreeMap::new();
            for (i, k) in keys.iter().enumerate() {
                // Every third insert repeats an earlier key (a replacement).
                let k = if i % 3 == 2 { keys[i / 2] } else { *k };
                index.insert(k, hs[i % 3]);
                reference.insert(k, hs[i % 3]);
            }
            same_as(&index, &reference, &probes);
        }
    }
}
