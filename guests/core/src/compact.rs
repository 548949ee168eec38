//! Compact containers for the many small per-member maps a node keeps.
//!
//! A `BTreeMap` allocates a whole node (room for 11 keys and values) for
//! its first element, and a `Vec` grows to 4 elements on its first push:
//! for maps that hold one or two elements per member (a subject's own
//! incarnations, its verdicts, an author's chain) that slack dominated a
//! node's memory. [`VecMap`] is a sorted vector with the same semantics as
//! the `BTreeMap` calls it replaces (iteration in key order), and
//! [`push_tight`] grows a vector by a quarter, not by double.

use std::borrow::Borrow;
use std::collections::BTreeMap;

/// Elements a [`SmallMap`] keeps in a sorted vector before it becomes a
/// `BTreeMap`.
const SMALL_MAX: usize = 16;

/// Pushes `value` onto `v`, growing its capacity by about a quarter (at
/// least one) when it is full, so a vector of one element holds one.
pub(crate) fn push_tight<T>(v: &mut Vec<T>, value: T) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 4).max(1));
    }
    v.push(value);
}

/// Inserts `value` into the sorted vector `v` at `at`, growing as
/// [`push_tight`] does.
fn insert_tight<T>(v: &mut Vec<T>, at: usize, value: T) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 4).max(1));
    }
    v.insert(at, value);
}

/// A [`SmallMap`] with the `BTreeMap` calls the per-subject maps use
/// (`get_mut`, `get_or_insert_with`, `last_key_value`, reverse
/// iteration). Keyed by incarnation, these maps are as large as the
/// incarnations entries name, which any author chooses: a vector alone
/// would make each insert O(n), so beyond [`SMALL_MAX`] elements it is a
/// `BTreeMap`. Its only element, the common case (a subject's one own
/// incarnation), is held inline, without an allocation.
#[derive(Clone, Debug)]
pub(crate) struct VecMap<K, V>(Repr<K, V>);

/// What a [`VecMap`] holds.
#[derive(Clone, Debug)]
enum Repr<K, V> {
    /// Exactly one element.
    One((K, V)),
    /// None, or more than one.
    Map(SmallMap<K, V>),
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Repr::Map(SmallMap::default()))
    }
}

impl<K: Ord, V> VecMap<K, V> {
    /// The value under `key`.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        match &self.0 {
            Repr::One((k, v)) => (k == key).then_some(v),
            Repr::Map(m) => m.get(key),
        }
    }

    /// Makes room for a key other than the inline one: an inline element
    /// moves into a vector (an empty map stays as it is).
    fn spill(&mut self, key: &K) {
        if matches!(&self.0, Repr::One((k, _)) if k != key) {
            let old = std::mem::replace(&mut self.0, Repr::Map(SmallMap::default()));
            if let (Repr::One(pair), Repr::Map(SmallMap::Small(v))) = (old, &mut self.0) {
                push_tight(v, pair);
            }
        }
    }

    /// The value under `key`, mutably.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let map = match &mut self.0 {
            Repr::One((k, v)) => return (k == key).then_some(v),
            Repr::Map(m) => m,
        };
        match map {
            SmallMap::Small(v) => {
                let i = v.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
                v.get_mut(i).map(|(_, x)| x)
            }
            SmallMap::Large(m) => m.get_mut(key),
        }
    }

    /// The value under `key`, inserted with `make` if absent.
    pub(crate) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if matches!(&self.0, Repr::Map(SmallMap::Small(v)) if v.is_empty()) {
            self.0 = Repr::One((key, make()));
            return match &mut self.0 {
                Repr::One((_, v)) => v,
                // Just set to `One`.
                Repr::Map(_) => unreachable!("vecmap: an inline element just set"),
            };
        }
        self.spill(&key);
        let map = match &mut self.0 {
            Repr::One((_, v)) => return v,
            Repr::Map(m) => m,
        };
        if let SmallMap::Small(v) = map {
            if v.len() >= SMALL_MAX && v.binary_search_by(|(k, _)| k.cmp(&key)).is_err() {
                *map = SmallMap::Large(std::mem::take(v).into_iter().collect());
            }
        }
        match map {
            SmallMap::Small(v) => {
                let i = match v.binary_search_by(|(k, _)| k.cmp(&key)) {
                    Ok(i) => i,
                    Err(i) => {
                        insert_tight(v, i, (key, make()));
                        i
                    }
                };
                let len = v.len();
                match v.get_mut(i) {
                    Some((_, x)) => x,
                    // `i` is in bounds: found, or just inserted there.
                    None => unreachable!("vecmap: index {i} of {len}"),
                }
            }
            SmallMap::Large(m) => m.entry(key).or_insert_with(make),
        }
    }

    /// Sets the value under `key`.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        if matches!(&self.0, Repr::Map(SmallMap::Small(v)) if v.is_empty()) {
            self.0 = Repr::One((key, value));
            return;
        }
        self.spill(&key);
        match &mut self.0 {
            Repr::One((_, v)) => *v = value,
            Repr::Map(m) => {
                m.insert(key, value);
            }
        }
    }

    /// Whether it holds no element.
    pub(crate) fn is_empty(&self) -> bool {
        self.last_key_value().is_none()
    }

    /// The entry with the greatest key.
    pub(crate) fn last_key_value(&self) -> Option<(&K, &V)> {
        match &self.0 {
            Repr::One((k, x)) => Some((k, x)),
            Repr::Map(SmallMap::Small(v)) => v.last().map(|(k, x)| (k, x)),
            Repr::Map(SmallMap::Large(m)) => m.last_key_value(),
        }
    }

    /// The entries in key order.
    pub(crate) fn iter(&self) -> Iter<'_, K, V> {
        match &self.0 {
            Repr::One(pair) => Iter::Small(std::slice::from_ref(pair).iter()),
            Repr::Map(m) => m.iter(),
        }
    }
}

impl<K: Ord, V: Default> VecMap<K, V> {
    /// The value under `key`, inserted as the default if absent.
    pub(crate) fn entry_or_default(&mut self, key: K) -> &mut V {
        self.get_or_insert_with(key, V::default)
    }
}

/// A map that is a sorted vector while small (the common case: one
/// suspecter, one suspicion per author) and a `BTreeMap` once it holds more
/// than 16 elements (a real failure suspected by thousands), with the
/// `BTreeMap` semantics its callers rely on: iteration in key order.
#[derive(Clone, Debug)]
pub(crate) enum SmallMap<K, V> {
    /// At most [`SMALL_MAX`] elements, sorted by key, no slack.
    Small(Vec<(K, V)>),
    /// More.
    Large(BTreeMap<K, V>),
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap::Small(Vec::new())
    }
}

/// Iterator over a [`SmallMap`] in key order.
pub(crate) enum Iter<'a, K, V> {
    /// Over the vector.
    Small(std::slice::Iter<'a, (K, V)>),
    /// Over the tree.
    Large(std::collections::btree_map::Iter<'a, K, V>),
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Small(i) => i.next().map(|(k, v)| (k, v)),
            Iter::Large(i) => i.next(),
        }
    }
}

impl<K, V> DoubleEndedIterator for Iter<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Small(i) => i.next_back().map(|(k, v)| (k, v)),
            Iter::Large(i) => i.next_back(),
        }
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    /// The value under `key`.
    pub(crate) fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        match self {
            SmallMap::Small(v) => {
                let i = v.binary_search_by(|(k, _)| k.borrow().cmp(key)).ok()?;
                v.get(i).map(|(_, x)| x)
            }
            SmallMap::Large(m) => m.get(key),
        }
    }

    /// Whether `key` is present.
    pub(crate) fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.get(key).is_some()
    }

    /// Sets the value under `key`; returns the previous one.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self {
            SmallMap::Small(v) => match v.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(i) => v
                    .get_mut(i)
                    .map(|slot| std::mem::replace(&mut slot.1, value)),
                Err(i) if v.len() < SMALL_MAX => {
                    insert_tight(v, i, (key, value));
                    None
                }
                Err(_) => {
                    let mut m: BTreeMap<K, V> = std::mem::take(v).into_iter().collect();
                    m.insert(key, value);
                    *self = SmallMap::Large(m);
                    None
                }
            },
            SmallMap::Large(m) => m.insert(key, value),
        }
    }

    /// The entries in key order.
    pub(crate) fn iter(&self) -> Iter<'_, K, V> {
        match self {
            SmallMap::Small(v) => Iter::Small(v.iter()),
            SmallMap::Large(m) => Iter::Large(m.iter()),
        }
    }

    /// The keys in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }
}

/// A set kept as a [`SmallMap`] of unit values.
#[derive(Clone, Debug)]
pub(crate) struct SmallSet<K>(SmallMap<K, ()>);

impl<K> Default for SmallSet<K> {
    fn default() -> Self {
        SmallSet(SmallMap::default())
    }
}

impl<K: Ord> SmallSet<K> {
    /// Adds `key`; true if it was not present.
    pub(crate) fn insert(&mut self, key: K) -> bool {
        self.0.insert(key, ()).is_none()
    }

    /// Whether `key` is present.
    pub(crate) fn contains<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.0.contains_key(key)
    }

    /// The elements in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &K> {
        self.0.keys()
    }
}

/// String pairs (a member's metadata) packed into one allocation: each
/// string as its byte length (LEB128) and its bytes, keys and values
/// alternating, in the order given. One block of about the strings' size,
/// where a boxed slice of `(String, String)` takes one block for the
/// slice and one per string. The encoding is prefix-free, so two packs
/// are equal exactly when their pair lists are.
///
/// A pack of at most [`PAIRS_INLINE`] bytes (a member's `overlay-ip`,
/// say) is held inline, without a block of its own: 28 bytes on wasm32,
/// so a [`crate::membership::Profile`] with its metadata is one 48-byte
/// allocator chunk where the profile and a separate pack took two of 32.
#[derive(Clone, Debug)]
pub(crate) struct Pairs(PairsRepr);

/// Bytes a [`Pairs`] holds inline.
pub(crate) const PAIRS_INLINE: usize = 26;

/// Where a [`Pairs`] keeps its bytes: inline when they fit (then exactly
/// there, the rest zero), else in one exactly sized block.
#[derive(Clone, Debug)]
enum PairsRepr {
    /// The first `len` bytes of the array.
    Inline { len: u8, bytes: [u8; PAIRS_INLINE] },
    /// More than [`PAIRS_INLINE`] bytes.
    Boxed(Box<[u8]>),
}

impl Default for Pairs {
    fn default() -> Pairs {
        Pairs(PairsRepr::Inline {
            len: 0,
            bytes: [0; PAIRS_INLINE],
        })
    }
}

impl PartialEq for Pairs {
    fn eq(&self, other: &Pairs) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for Pairs {}

/// Bytes of the LEB128 form of `n`.
fn leb_len(mut n: usize) -> usize {
    let mut len = 1usize;
    while n >= 0x80 {
        n >>= 7;
        len = len.saturating_add(1);
    }
    len
}

/// Appends `s` as its LEB128 length and its bytes.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len();
    while n >= 0x80 {
        // The low 7 bits, with the continuation bit.
        out.push(u8::try_from(n & 0x7f).unwrap_or(0) | 0x80);
        n >>= 7;
    }
    out.push(u8::try_from(n).unwrap_or(0));
    out.extend_from_slice(s.as_bytes());
}

/// Reads one string written by [`put_str`] off the front of `buf`.
fn take_str<'a>(buf: &mut &'a [u8]) -> Option<&'a str> {
    let mut len = 0usize;
    let mut shift = 0u32;
    loop {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        len |= usize::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            break;
        }
        shift = shift.checked_add(7)?;
    }
    let (s, rest) = buf.split_at_checked(len)?;
    *buf = rest;
    std::str::from_utf8(s).ok()
}

impl Pairs {
    /// The pairs `pairs`, packed (exactly sized: one allocation, no slack).
    pub(crate) fn new(pairs: &[(String, String)]) -> Pairs {
        let size = pairs.iter().fold(0usize, |n, (k, v)| {
            n.saturating_add(leb_len(k.len()))
                .saturating_add(k.len())
                .saturating_add(leb_len(v.len()))
                .saturating_add(v.len())
        });
        let mut out = Vec::with_capacity(size);
        for (k, v) in pairs {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        let mut bytes = [0; PAIRS_INLINE];
        match (u8::try_from(out.len()), bytes.get_mut(..out.len())) {
            (Ok(len), Some(head)) => {
                head.copy_from_slice(&out);
                Pairs(PairsRepr::Inline { len, bytes })
            }
            _ => Pairs(PairsRepr::Boxed(out.into_boxed_slice())),
        }
    }

    /// The packed bytes.
    fn bytes(&self) -> &[u8] {
        match &self.0 {
            PairsRepr::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(&[]),
            PairsRepr::Boxed(b) => b,
        }
    }

    /// The pairs, in their order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let mut buf: &[u8] = self.bytes();
        std::iter::from_fn(move || {
            if buf.is_empty() {
                return None;
            }
            let k = take_str(&mut buf)?;
            let v = take_str(&mut buf)?;
            Some((k, v))
        })
    }

    /// The pairs, unpacked.
    pub(crate) fn to_vec(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(self.iter().count());
        out.extend(self.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        out
    }
}

/// A `u64` kept as two 32-bit words: 4-byte aligned, so a record with
/// one needs no padding to 8 bytes on wasm32 (where a `u64` is 8-aligned,
/// unlike on i686).
/// Ordered as the number (the high word first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct U64Words([u32; 2]);

impl U64Words {
    /// `v`.
    pub(crate) fn new(v: u64) -> U64Words {
        let [a, b, c, d, e, f, g, h] = v.to_be_bytes();
        U64Words([
            u32::from_be_bytes([a, b, c, d]),
            u32::from_be_bytes([e, f, g, h]),
        ])
    }

    /// The number.
    pub(crate) fn get(self) -> u64 {
        let [hi, lo] = self.0;
        (u64::from(hi) << 32) | u64::from(lo)
    }
}

/// Elements per chunk of a [`Slots`].
const SLOTS_CHUNK: usize = 64;

/// A vector of per-author records indexed by handle, stored in chunks of
/// [`SLOTS_CHUNK`] elements allocated at their full size: growing never
/// moves (reallocates) the records already held, so a node's heap keeps
/// no freed copies of a large vector behind (a `Vec` grown to N records
/// leaves freed blocks of earlier sizes that smaller allocations only
/// partly reuse), and the slack is at most one chunk.
#[derive(Clone, Debug)]
pub(crate) struct Slots<T> {
    /// Full chunks, then the last one (never empty, at capacity
    /// [`SLOTS_CHUNK`]).
    chunks: Vec<Vec<T>>,
    /// Number of elements.
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slots<T> {
    /// The element at `i`.
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.chunks
            .get(i / SLOTS_CHUNK)
            .and_then(|c| c.get(i % SLOTS_CHUNK))
    }

    /// The element at `i`, mutably.
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks
            .get_mut(i / SLOTS_CHUNK)
            .and_then(|c| c.get_mut(i % SLOTS_CHUNK))
    }

    /// Appends an element (at index `len()`).
    pub(crate) fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < SLOTS_CHUNK => c.push(value),
            _ => {
                let mut c = Vec::with_capacity(SLOTS_CHUNK);
                c.push(value);
                push_tight(&mut self.chunks, c);
            }
        }
        self.len = self.len.saturating_add(1);
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The elements in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_sorted_map_without_slack() {
        let mut m: VecMap<u64, u32> = VecMap::default();
        for k in [5, 1, 9, 3] {
            *m.entry_or_default(k) += 1;
        }
        *m.entry_or_default(5) += 1;
        m.insert(7, 70);
        m.insert(1, 10);
        assert_eq!(
            m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
            vec![(1, 10), (3, 1), (5, 2), (7, 70), (9, 1)]
        );
        assert_eq!(m.last_key_value(), Some((&9, &1)));
        assert!(m.get(&3).is_some() && m.get(&4).is_none());
        assert_eq!(m.get(&7), Some(&70));
        let mut v = Vec::new();
        push_tight(&mut v, 1u8);
        assert_eq!(v.capacity(), 1);
    }

    #[test]
    fn small_map_matches_a_btreemap_across_its_switch() {
        let mut small: SmallMap<String, u32> = SmallMap::default();
        let mut reference = BTreeMap::new();
        for i in 0..40u32 {
            let k = format!("k{}", (i * 7) % 23);
            assert_eq!(small.insert(k.clone(), i), reference.insert(k.clone(), i));
            assert_eq!(small.get(k.as_str()), reference.get(k.as_str()));
            assert!(small
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .eq(reference.iter().map(|(k, v)| (k.clone(), *v))));
        }
        assert!(matches!(small, SmallMap::Large(_)));
        let mut set: SmallSet<u8> = SmallSet::default();
        assert!(set.insert(3) && set.insert(1) && !set.insert(3));
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert!(set.contains(&1) && !set.contains(&2));
    }

    #[test]
    fn vec_map_matches_a_btreemap_and_stops_being_a_vector_when_large() {
        // Incarnations are chosen by whoever writes an entry: many distinct
        // keys must not turn every insert into a shift of a long vector.
        let mut m: VecMap<u64, u64> = VecMap::default();
        let mut reference = BTreeMap::new();
        for i in 0..200u64 {
            let k = (i * 37) % 101;
            *m.entry_or_default(k) += i;
            *reference.entry(k).or_default() += i;
            if i % 3 == 0 {
                m.insert(k + 1000, i);
                reference.insert(k + 1000, i);
            }
            if let Some(x) = m.get_mut(&k) {
                *x += 1;
            }
            if let Some(x) = reference.get_mut(&k) {
                *x += 1;
            }
        }
        assert!(matches!(m.0, Repr::Map(SmallMap::Large(_))));
        assert!(m
            .iter()
            .map(|(k, v)| (*k, *v))
            .eq(reference.iter().map(|(k, v)| (*k, *v))));
        assert!(m
            .iter()
            .rev()
            .map(|(k, v)| (*k, *v))
            .eq(reference.iter().rev().map(|(k, v)| (*k, *v))));
        assert_eq!(m.last_key_value(), reference.last_key_value());
        assert_eq!(*m.get_or_insert_with(5000, || 9), 9);
    }

    #[test]
    fn u64_words_round_trip() {
        for v in [
            0,
            1,
            u64::from(u32::MAX),
            1 << 32,
            u64::MAX,
            0x0123_4567_89ab_cdef,
        ] {
            assert_eq!(U64Words::new(v).get(), v);
            for w in [0, 1, 1 << 32, u64::MAX, 0x0123_4567_89ab_cdef] {
                assert_eq!(U64Words::new(v).cmp(&U64Words::new(w)), v.cmp(&w));
            }
        }
        assert_eq!(std::mem::align_of::<U64Words>(), 4);
    }

    #[test]
    fn pairs_round_trip_in_order_and_compare_as_their_lists() {
        let long = "x".repeat(300);
        let lists: Vec<Vec<(String, String)>> = vec![
            vec![],
            vec![("overlay-ip".into(), "100.64.1.2".into())],
            vec![("".into(), "".into()), ("b".into(), "".into())],
            vec![(long.clone(), "é€😀".into()), ("a".into(), long.clone())],
            vec![("a".into(), "bc".into())],
            vec![("ab".into(), "c".into())],
        ];
        for (i, l) in lists.iter().enumerate() {
            let p = Pairs::new(l);
            assert_eq!(&p.to_vec(), l);
            assert_eq!(p.iter().count(), l.len());
            for (j, m) in lists.iter().enumerate() {
                assert_eq!(p == Pairs::new(m), i == j, "{l:?} against {m:?}");
            }
        }
        assert_eq!(leb_len(127), 1);
        assert_eq!(leb_len(128), 2);
        assert_eq!(
            Pairs::new(&lists[3]).bytes().len(),
            2 + 300 + 1 + 9 + 1 + 1 + 2 + 300
        );
    }

    #[test]
    fn pairs_up_to_the_inline_size_are_held_inline_and_read_back_alike() {
        // Packs of 24 to 29 bytes: inline up to `PAIRS_INLINE`, boxed
        // above; every one reads back as given, and equals only itself.
        let lists: Vec<Vec<(String, String)>> = (20..26)
            .map(|n| vec![("ab".to_string(), "v".repeat(n))])
            .collect();
        for (i, l) in lists.iter().enumerate() {
            let p = Pairs::new(l);
            let size = 1 + 2 + 1 + l[0].1.len();
            assert_eq!(p.bytes().len(), size);
            assert_eq!(
                matches!(p.0, PairsRepr::Inline { .. }),
                size <= PAIRS_INLINE
            );
            assert_eq!(&p.to_vec(), l);
            assert_eq!(p.clone(), p);
            for (j, m) in lists.iter().enumerate() {
                assert_eq!(p == Pairs::new(m), i == j);
            }
        }
        // The member metadata the simulator gives (`overlay-ip`, up to
        // 100.64.255.255) fits.
        let sim = vec![("overlay-ip".to_string(), "100.64.255.255".to_string())];
        assert!(matches!(Pairs::new(&sim).0, PairsRepr::Inline { .. }));
        assert_eq!(Pairs::default(), Pairs::new(&[]));
    }

    use proptest::prelude::*;

    fn strings() -> BoxedStrategy<String> {
        prop_oneof![
            Just(String::new()),
            "[a-z.-]{1,12}",
            "\\PC{0,40}",
            "z{120,140}",
            "w{16380,16390}",
        ]
        .boxed()
    }

    fn lists() -> BoxedStrategy<Vec<(String, String)>> {
        prop::collection::vec((strings(), strings()), 0..5).boxed()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any string pairs (empty, long, non-ASCII) unpack as given, and
        /// two packs are equal exactly when their lists are.
        #[test]
        fn pairs_unpack_as_given_and_are_equal_iff_their_lists_are(a in lists(), b in lists()) {
            let (pa, pb) = (Pairs::new(&a), Pairs::new(&b));
            prop_assert_eq!(&pa.to_vec(), &a);
            prop_assert_eq!(pa.iter().count(), a.len());
            prop_assert_eq!(&pb.to_vec(), &b);
            prop_assert_eq!(pa == pb, a == b);
            // A list and the same list with one string moved across a
            // pair boundary, or split, differ.
            if let Some((k, v)) = a.first() {
                let mut moved = a.clone();
                moved[0] = (format!("{k}{v}"), String::new());
                prop_assert_eq!(Pairs::new(&moved) == pa, moved == a);
            }
            // Exactly sized: one block of the strings and their lengths.
            let size: usize = a
                .iter()
                .map(|(k, v)| leb_len(k.len()) + k.len() + leb_len(v.len()) + v.len())
                .sum();
            prop_assert_eq!(pa.bytes().len(), size);
            prop_assert_eq!(matches!(pa.0, PairsRepr::Inline { .. }), size <= PAIRS_INLINE);
        }
    }
}
