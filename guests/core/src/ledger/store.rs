//! The ledger: the union of every author's hash chain this node has seen,
//! with the per-author frontier and the bucketed digests reconciliation uses.
//!
//! The ledger keeps per author what deciding needs (the id at each
//! sequence number, the bound key, the bucket key), not the entries
//! themselves: an entry linked before the current call is read back from
//! an [`EntryStore`] (in a component, the host's `ledger-store.get`), and
//! every answer is checked against the ids the ledger holds. Entries linked
//! during the current call are kept until [`Ledger::flush`] (their `append`
//! effects have not reached the host yet).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::entry::{Entry, Hash};
use super::lookup::{EntryStore, MemoryEntries};
use crate::authors::{AuthorId, Authors};
use crate::compact::{push_tight, Slots, U64Words};
use crate::config::MAX_PENDING_ENTRIES;
use crate::paged::PagedMap;
use nodeplane_entry::signing::{check_signature, PublicKey, Verifier};
use nodeplane_types::MAX_EQUIVOCATIONS_PER_AUTHOR;

/// Two different entries one author wrote at one sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Equivocation {
    /// The equivocating author.
    pub author: String,
    /// The sequence number written twice.
    pub seq: u64,
    /// Id of the entry kept in the chain (the first one seen).
    pub kept: Hash,
    /// The other entry, kept as evidence.
    pub conflicting: Entry,
}

/// What inserting one entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Insert {
    /// The entry linked; these entries (it, then any buffered successors it
    /// unblocked) joined their chains, in chain order.
    Linked(Vec<Entry>),
    /// Already held.
    Duplicate,
    /// Ahead of its chain; buffered until the gap is filled.
    Buffered,
    /// A second, different entry at an occupied (author, seq).
    Equivocation(Box<Equivocation>),
}

/// The head of an author's chain: its sequence number and id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Sequence number of the head entry.
    pub seq: u64,
    /// Id of the head entry.
    pub id: Hash,
}

/// An entry the store did not answer as the ledger expected (logged by the
/// node as `entry-unavailable`, never shipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    /// The author asked for.
    pub author: String,
    /// The sequence number asked for.
    pub seq: u64,
    /// What was wrong with the answer.
    pub reason: String,
}

/// The ids of a chain's linked entries, seq 1 first: the first inline
/// (a chain is created by linking its seq 1, so it always has one), the
/// others boxed, in a vector without growth slack, once there are any
/// (most chains hold one entry: 4 bytes inline, not a vector's 12).
#[derive(Clone, Debug)]
struct Ids {
    /// The id at seq 1.
    first: Hash,
    /// The ids from seq 2 on, once there is one.
    rest: Option<Box<RestIds>>,
}

/// The ids of a chain from seq 2 on.
#[derive(Clone, Debug, Default)]
struct RestIds(Vec<Hash>);

impl Ids {
    /// The ids of a chain holding `first` alone.
    fn new(first: Hash) -> Ids {
        Ids { first, rest: None }
    }

    /// The ids from seq 2 on.
    fn rest(&self) -> &[Hash] {
        self.rest.as_deref().map_or(&[][..], |r| r.0.as_slice())
    }

    /// Number of ids.
    fn len(&self) -> usize {
        self.rest().len().saturating_add(1)
    }

    /// The last id (always `Some`).
    fn last(&self) -> Option<&Hash> {
        Some(self.rest().last().unwrap_or(&self.first))
    }

    /// The id at index `i` (seq `i + 1`).
    fn get(&self, i: usize) -> Option<&Hash> {
        match i.checked_sub(1) {
            None => Some(&self.first),
            Some(j) => self.rest().get(j),
        }
    }

    /// Appends an id.
    fn push(&mut self, id: Hash) {
        push_tight(&mut self.rest.get_or_insert_with(Box::default).0, id);
    }
}

/// One author's chain and what is known of the author (84 bytes on
/// wasm32 and i686: its `u64`s are 4-byte aligned, see [`U64Words`]).
#[derive(Clone, Debug)]
struct Chain {
    /// The ids of the linked entries, seq 1 first.
    ids: Ids,
    /// [`fingerprint`] of the head entry: a copy of the head (the common
    /// duplicate under gossip) is recognised without hashing it again.
    head_fp: U64Words,
    /// The author's digest contribution ([`leaf_hash`] of its head).
    leaf: U64Words,
    /// The signing key the author's linked entry at seq 1 bound it to.
    bound: PublicKey,
}

/// The set of verified, linked entries plus buffered and conflicting ones.
/// Each linked author's id is held once ([`Arc<str>`], interned in
/// `authors` when its first entry links), and its chain and digest slot
/// are named by its handle.
#[derive(Debug)]
pub struct Ledger {
    /// The authors of linked chains; a handle indexes `chains`.
    authors: Authors,
    /// Each linked author's chain, at its handle's index (an author is
    /// interned exactly when its chain is created, so the two stay in
    /// step).
    chains: Slots<Chain>,
    /// Entries linked since the last [`Ledger::flush`], per author in chain
    /// order (consecutive sequence numbers up to the head).
    recent: BTreeMap<AuthorId, Vec<Entry>>,
    /// Where entries linked before the last flush are read back.
    store: Box<dyn EntryStore>,
    /// Store answers that did not match the chain, until taken.
    unavailable: RefCell<Vec<Unavailable>>,
    /// Bucketed digests: each author key with the author (of the byte-wise
    /// smallest id, should several share the key) it belongs to; the
    /// digest contribution is the author's [`Chain::leaf`].
    keys: PagedMap<AuthorId>,
    /// The other authors of a key several share (a 64-bit collision,
    /// crafted or not), sorted by id: the order is (key, author id).
    keys_more: BTreeMap<u64, Vec<AuthorId>>,
    root: u64,
    pending: BTreeMap<(String, u64), (u64, Entry)>,
    /// Buffered slots by arrival number, oldest first: a full buffer lets
    /// its oldest entry go (see [`MAX_PENDING_ENTRIES`]), so nobody can pin
    /// it with entries whose gaps are never filled.
    arrivals: BTreeMap<u64, (String, u64)>,
    /// Arrival number of the next buffered entry.
    next_arrival: u64,
    /// Buffered entries let go to make room for newer ones.
    pending_expired: u64,
    equivocations: Vec<Equivocation>,
    /// Conflicting entries not kept: their author already had
    /// [`MAX_EQUIVOCATIONS_PER_AUTHOR`] held as evidence.
    equivocations_dropped: u64,
    len: usize,
}

/// The entries a ledger linked since its last flush, taken out of it by
/// [`Ledger::take_linked`]: each goes, moved, into its `append` effect.
#[derive(Debug)]
pub(crate) struct LinkedEntries {
    /// Per author, in chain order.
    by_author: BTreeMap<Arc<str>, VecDeque<Entry>>,
    /// Whether the store keeps linked entries (it then gets a copy of each
    /// one taken).
    keep: bool,
    /// What the store gets, in chain order per author.
    kept: Vec<Entry>,
}

impl LinkedEntries {
    /// The entry linked at (author, seq), moved out; `None` if it is not
    /// held. Asked in chain order per author: an entry of `author` before
    /// `seq` that was not asked for (linked while the node started) is
    /// passed over.
    pub(crate) fn take(&mut self, author: &str, seq: u64) -> Option<Entry> {
        let q = self.by_author.get_mut(author)?;
        while q.front().is_some_and(|e| e.seq < seq) {
            if let Some(e) = q.pop_front() {
                if self.keep {
                    self.kept.push(e);
                }
            }
        }
        if q.front().is_none_or(|e| e.seq != seq) {
            return None;
        }
        let e = q.pop_front()?;
        if self.keep {
            self.kept.push(e.clone());
        }
        Some(e)
    }
}

/// A cheap 64-bit hash of every field of an entry (SipHash, fixed keys):
/// with an equal id, an equal fingerprint stands for an equal entry. A
/// crafted collision only makes a forged copy of a held entry count as a
/// duplicate instead of being rejected: dropped either way.
fn fingerprint(entry: &Entry) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    entry.hash(&mut h);
    h.finish()
}

/// The first 8 bytes of a SHA-256 digest as a big-endian number.
fn first_u64(digest: [u8; 32]) -> u64 {
    let [b0, b1, b2, b3, b4, b5, b6, b7, ..] = digest;
    u64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7])
}

/// The 64-bit bucket key of an author: the first 8 bytes of SHA-256(author).
pub fn author_key(author: &str) -> u64 {
    first_u64(Sha256::digest(author.as_bytes()).into())
}

/// The digest contribution of an author whose chain ends at `seq`.
pub fn leaf_hash(author: &str, seq: u64) -> u64 {
    let mut h = Sha256::new();
    h.update(b"nodeplane-leaf/1");
    h.update((author.len() as u32).to_be_bytes());
    h.update(author.as_bytes());
    h.update(seq.to_be_bytes());
    first_u64(h.finalize().into())
}

/// The key range of a bucket path (one nibble of the author key per level).
fn path_range(path: &[u8]) -> (u64, u64) {
    let bits = (path.len() as u32).saturating_mul(4);
    if bits == 0 {
        return (0, u64::MAX);
    }
    let mut prefix: u64 = 0;
    for &n in path {
        prefix = (prefix << 4) | u64::from(n & 0x0f);
    }
    if bits >= 64 {
        return (prefix, prefix);
    }
    // 0 < bits < 64 here: neither shift can overflow.
    let lo = prefix.checked_shl(64u32.saturating_sub(bits)).unwrap_or(0);
    (lo, lo | u64::MAX.checked_shr(bits).unwrap_or(0))
}

impl Default for Ledger {
    fn default() -> Ledger {
        Ledger::with_store(Box::<MemoryEntries>::default())
    }
}

impl Ledger {
    /// An empty ledger keeping its entries in memory ([`MemoryEntries`]).
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// An empty ledger reading entries linked before the last
    /// [`Ledger::flush`] from `store`.
    pub fn with_store(store: Box<dyn EntryStore>) -> Ledger {
        Ledger {
            authors: Authors::default(),
            chains: Slots::default(),
            recent: BTreeMap::new(),
            store,
            unavailable: RefCell::new(Vec::new()),
            keys: PagedMap::default(),
            keys_more: BTreeMap::new(),
            root: 0,
            pending: BTreeMap::new(),
            arrivals: BTreeMap::new(),
            next_arrival: 0,
            pending_expired: 0,
            equivocations: Vec::new(),
            equivocations_dropped: 0,
            len: 0,
        }
    }

    /// Replaces the store entries are read back from. Entries linked since
    /// the last [`Ledger::flush`] stay held until the next one.
    pub fn set_store(&mut self, store: Box<dyn EntryStore>) {
        self.store = store;
    }

    /// The entries linked since the last flush have been handed to the
    /// host (their `append` effects were drained): hands them to the
    /// store ([`EntryStore::linked`]) and stops holding them.
    pub fn flush(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        let recent = self.recent_by_name();
        self.store.linked(recent.into_values().flatten().collect());
    }

    /// Takes the entries linked since the last flush, by author id.
    fn recent_by_name(&mut self) -> BTreeMap<Arc<str>, Vec<Entry>> {
        let recent = std::mem::take(&mut self.recent);
        let authors = &self.authors;
        recent
            .into_iter()
            .filter_map(|(a, v)| Some((authors.name(a)?.clone(), v)))
            .collect()
    }

    /// Takes the entries linked since the last flush out of the ledger,
    /// for their `append` effects ([`LinkedEntries::take`]); hand what is
    /// left back with [`Ledger::finish_flush`]. Between the two, the
    /// ledger reads those entries from its store, like after a flush.
    pub(crate) fn take_linked(&mut self) -> LinkedEntries {
        // As `recent_by_name`, in one map (no intermediate one per flush).
        let recent = std::mem::take(&mut self.recent);
        let authors = &self.authors;
        LinkedEntries {
            by_author: recent
                .into_iter()
                .filter_map(|(a, v)| Some((authors.name(a)?.clone(), VecDeque::from(v))))
                .collect(),
            keep: self.store.keeps_linked(),
            kept: Vec::new(),
        }
    }

    /// Ends a flush begun with [`Ledger::take_linked`]: a store that keeps
    /// linked entries gets every one of them (taken or not), in chain
    /// order per author; the others are dropped.
    pub(crate) fn finish_flush(&mut self, linked: LinkedEntries) {
        let LinkedEntries {
            by_author,
            keep,
            mut kept,
        } = linked;
        if !keep {
            return;
        }
        for q in by_author.into_values() {
            kept.extend(q);
        }
        if !kept.is_empty() {
            self.store.linked(kept);
        }
    }

    /// Store answers that did not match the chain since the last call.
    pub fn take_unavailable(&mut self) -> Vec<Unavailable> {
        std::mem::take(self.unavailable.get_mut())
    }

    /// Notes a store answer that did not match the chain.
    fn unavailable(&self, author: &str, seq: u64, reason: String) {
        self.unavailable.borrow_mut().push(Unavailable {
            author: author.to_string(),
            seq,
            reason,
        });
    }

    /// Number of linked entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is linked.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of buffered (not yet linked) entries.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Buffered entries let go, oldest first, when the buffer was full.
    pub fn pending_expired(&self) -> u64 {
        self.pending_expired
    }

    /// Removes a buffered slot and its arrival record.
    fn unbuffer(&mut self, slot: &(String, u64)) -> Option<Entry> {
        let (arrival, entry) = self.pending.remove(slot)?;
        self.arrivals.remove(&arrival);
        Some(entry)
    }

    /// Every equivocation seen.
    pub fn equivocations(&self) -> &[Equivocation] {
        &self.equivocations
    }

    /// Conflicting entries dropped over the per-author evidence cap.
    pub fn equivocations_dropped(&self) -> u64 {
        self.equivocations_dropped
    }

    /// A linked author's chain.
    fn chain(&self, author: &str) -> Option<&Chain> {
        self.chains.get(self.authors.find(author)?.index())
    }

    /// The chain of a handle.
    fn chain_at(&self, a: AuthorId) -> Option<&Chain> {
        self.chains.get(a.index())
    }

    /// Head sequence number of an author's chain (0 when unknown).
    pub fn head_seq(&self, author: &str) -> u64 {
        self.chain(author).map_or(0, |c| c.ids.len() as u64)
    }

    /// The head (sequence number and id) of an author's chain.
    pub fn head(&self, author: &str) -> Option<Head> {
        let chain = self.chain(author)?;
        chain.ids.last().map(|id| Head {
            seq: chain.ids.len() as u64,
            id: *id,
        })
    }

    /// The id of the linked entry at (author, seq).
    pub fn id_at(&self, author: &str, seq: u64) -> Option<&Hash> {
        let ids = &self.chain(author)?.ids;
        ids.get(usize::try_from(seq).ok()?.checked_sub(1)?)
    }

    /// Whether `entry` is the linked entry at its (author, seq) (same id).
    pub fn links(&self, entry: &Entry) -> bool {
        self.id_at(&entry.author, entry.seq) == Some(&entry.id)
    }

    /// The head entry of an author's chain (read back from the store).
    pub fn head_entry(&self, author: &str) -> Option<Entry> {
        self.get(author, self.head_seq(author))
    }

    /// The entry at (author, seq) (read back from the store).
    pub fn get(&self, author: &str, seq: u64) -> Option<Entry> {
        self.entries(author, seq, 1).pop()
    }

    /// The ledger's shared copy of a known author's id.
    pub(crate) fn shared_author(&self, author: &str) -> Option<Arc<str>> {
        self.authors.name(self.authors.find(author)?).cloned()
    }

    /// Up to `limit` linked entries of `author` starting at sequence `from`:
    /// those linked since the last flush from memory, older ones from the
    /// store. Each answer of the store must be the chain's entry (author,
    /// sequence number and id); at the first that is not, or is missing,
    /// the result stops there and the problem is noted
    /// ([`Ledger::take_unavailable`]).
    pub fn entries(&self, author: &str, from: u64, limit: usize) -> Vec<Entry> {
        let Some(a) = self.authors.find(author) else {
            return Vec::new();
        };
        let Some(chain) = self.chain_at(a) else {
            return Vec::new();
        };
        let head = chain.ids.len() as u64;
        let from = from.max(1);
        if from > head || limit == 0 {
            return Vec::new();
        }
        // from <= head: no overflow; the count fits usize (ids is a Vec).
        let want = usize::try_from(head.saturating_sub(from).saturating_add(1))
            .unwrap_or(usize::MAX)
            .min(limit);
        let recent = self.recent.get(&a).map_or(&[][..], Vec::as_slice);
        let recent_from = recent.first().map_or(head.saturating_add(1), |e| e.seq);
        let mut out: Vec<Entry> = Vec::new();
        let mut seq = from;
        while out.len() < want && seq < recent_from {
            let ask = u64::try_from(want.saturating_sub(out.len()))
                .unwrap_or(u64::MAX)
                .min(recent_from.saturating_sub(seq));
            let ask = u32::try_from(ask).unwrap_or(u32::MAX);
            let got = self.store.get(author, seq, ask);
            if got.is_empty() {
                self.unavailable(author, seq, "not in the store".into());
                return out;
            }
            for e in got.into_iter().take(ask as usize) {
                let expected = chain
                    .ids
                    .get(usize::try_from(seq).unwrap_or(usize::MAX).saturating_sub(1));
                if e.author != author || e.seq != seq || expected != Some(&e.id) {
                    let reason = format!(
                        "the store answered {}#{} id {}",
                        e.author,
                        e.seq,
                        e.id_hex()
                    );
                    self.unavailable(author, seq, reason);
                    return out;
                }
                out.push(e);
                seq = seq.saturating_add(1);
            }
        }
        if out.len() < want {
            let skip = usize::try_from(seq.saturating_sub(recent_from)).unwrap_or(usize::MAX);
            let more = want.saturating_sub(out.len());
            out.extend(recent.iter().skip(skip).take(more).cloned());
        }
        out
    }

    /// Every linked entry, author by author in chain order (read back from
    /// the store).
    pub fn all_entries(&self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.len);
        for (author, chain) in self.sorted_chains() {
            out.extend(self.entries(author, 1, chain.ids.len()));
        }
        out
    }

    /// Every chain with its author's id, sorted by author (sorted when
    /// asked: the readers are rare, and handles go in arrival order).
    fn sorted_chains(&self) -> impl Iterator<Item = (&Arc<str>, &Chain)> + '_ {
        self.authors
            .sorted()
            .into_iter()
            .filter_map(|a| Some((self.authors.name(a)?, self.chain_at(a)?)))
    }

    /// Per-author frontier: (author, head seq, head id), sorted by author.
    pub fn frontier(&self) -> Vec<(String, u64, Hash)> {
        self.sorted_chains()
            .filter_map(|(a, c)| {
                c.ids
                    .last()
                    .map(|id| (a.to_string(), c.ids.len() as u64, *id))
            })
            .collect()
    }

    /// SHA-256 over the whole frontier: equal iff the head sets are equal
    /// (the digest every holder of entries computes,
    /// [`nodeplane_entry::frontier_digest`]).
    pub fn frontier_digest(&self) -> Hash {
        nodeplane_entry::frontier_digest(
            self.sorted_chains()
                .filter_map(|(a, c)| c.ids.last().map(|id| (&**a, c.ids.len() as u64, id))),
        )
    }

    /// (bucket key, author, digest contribution) of every author whose
    /// key is in `lo..=hi`, in (key, author id) order.
    fn keyed(&self, lo: u64, hi: u64) -> impl Iterator<Item = (u64, AuthorId, u64)> + '_ {
        self.keys.range(lo, hi).flat_map(move |(k, a)| {
            let more = if self.keys_more.is_empty() {
                None
            } else {
                self.keys_more.get(&k)
            };
            std::iter::once(a)
                .chain(more.into_iter().flatten().copied())
                .map(move |a| (k, a, self.chain_at(a).map_or(0, |c| c.leaf.get())))
        })
    }

    /// The short frontier digest carried in every ping and ack: the XOR of
    /// every author's leaf hash, so one append updates it in O(1).
    pub fn root_digest(&self) -> u64 {
        self.root
    }

    /// Number of authors in a bucket.
    pub fn authors_under(&self, path: &[u8]) -> usize {
        let (lo, hi) = path_range(path);
        self.keyed(lo, hi).count()
    }

    /// Digests of the 16 children of a bucket and its author count.
    pub fn child_digests(&self, path: &[u8]) -> (Vec<u64>, usize) {
        let mut out = vec![0u64; crate::config::SYNC_FANOUT];
        let (lo, hi) = path_range(path);
        let shift = 64u32.saturating_sub((path.len() as u32).saturating_add(1).saturating_mul(4));
        let mut count: usize = 0;
        for (k, _, leaf) in self.keyed(lo, hi) {
            let nib = if path.len() >= 16 {
                0
            } else {
                ((k >> shift) & 0x0f) as usize
            };
            if let Some(d) = out.get_mut(nib) {
                *d ^= leaf;
            }
            count = count.saturating_add(1);
        }
        (out, count)
    }

    /// The digest of one bucket.
    pub fn bucket_digest(&self, path: &[u8]) -> u64 {
        let (lo, hi) = path_range(path);
        self.keyed(lo, hi).fold(0, |acc, (_, _, leaf)| acc ^ leaf)
    }

    /// (author, head seq) of every author in a bucket.
    pub fn heads_under(&self, path: &[u8]) -> Vec<(String, u64)> {
        self.heads_iter_under(path)
            .map(|(a, seq)| (String::from(&**a), seq))
            .collect()
    }

    /// [`Ledger::heads_under`] without collecting: a reader that stops
    /// early (a bounded answer) allocates nothing for the rest, and one
    /// that keeps an author keeps the ledger's shared id (a pointer, no
    /// allocation).
    pub fn heads_iter_under<'a>(
        &'a self,
        path: &[u8],
    ) -> impl Iterator<Item = (&'a Arc<str>, u64)> + 'a {
        let (lo, hi) = path_range(path);
        self.keyed(lo, hi).filter_map(|(_, a, _)| {
            Some((
                self.authors.name(a)?,
                self.chain_at(a).map_or(0, |c| c.ids.len() as u64),
            ))
        })
    }

    /// The signing key an author's first linked entry bound it to.
    pub fn bound_key(&self, author: &str) -> Option<&PublicKey> {
        self.chain(author).map(|c| &c.bound)
    }

    /// Checks an entry's signature against its author's bound key (`seq` 1
    /// against the key it declares itself); see
    /// [`nodeplane_entry::signing`]. Returns the key it was checked under
    /// (for `seq` 1, the key it binds its author to).
    fn check_signed(
        &self,
        entry: &Entry,
        verifier: &mut dyn Verifier,
    ) -> Result<PublicKey, String> {
        let bound = if entry.seq <= 1 {
            None
        } else {
            self.bound_key(&entry.author)
        };
        if entry.seq > 1 && bound.is_none() {
            return Err(format!(
                "entry {}#{}: its author's first entry is not held",
                entry.author, entry.seq
            ));
        }
        check_signature(entry, bound, verifier).map_err(|e| e.to_string())
    }

    /// Verifies an entry alone, against its chain and against its author's
    /// signing key, and inserts it. `Err` carries the reason it was
    /// rejected; the ledger is then unchanged. Signatures are checked when
    /// an entry links (a buffered one when its gap is filled) or is kept
    /// as evidence: a conflicting `seq` 1 only needs to be signed by the
    /// key it declares itself (another key taking an id is evidence, not
    /// a takeover); any other conflict must be signed by the bound key.
    pub fn insert(&mut self, entry: Entry, verifier: &mut dyn Verifier) -> Result<Insert, String> {
        // A copy of a held entry (the common case under gossip): the id
        // at its slot is the chain's. A copy of the head with the head's
        // fingerprint is a duplicate without hashing it again; any other
        // is a duplicate if it verifies (then it is the held entry, up to
        // its signature, which the id does not cover: a duplicate too),
        // else rejected for what is wrong with it.
        // The author's chain, looked up once: its head, head id and head
        // fingerprint, and whether it links this entry (`Ledger::links`).
        let chain = self
            .authors
            .find(&entry.author)
            .and_then(|a| self.chain_at(a));
        let head = chain.map_or(0, |c| c.ids.len() as u64);
        let head_id = chain.and_then(|c| c.ids.last().copied());
        let head_fp = chain.map(|c| c.head_fp.get());
        let held_here = chain.is_some_and(|c| {
            usize::try_from(entry.seq)
                .ok()
                .and_then(|s| s.checked_sub(1))
                .and_then(|i| c.ids.get(i))
                == Some(&entry.id)
        });
        if held_here && head == entry.seq && head_fp == Some(fingerprint(&entry)) {
            return Ok(Insert::Duplicate);
        }
        entry.verify().map_err(|e| e.to_string())?;
        if held_here {
            return Ok(Insert::Duplicate);
        }
        if entry.seq <= head {
            // 1 <= seq <= head (verified above): the slot is held.
            let Some(&existing) = self.id_at(&entry.author, entry.seq) else {
                return Err(format!(
                    "entry {}#{}: not held at or below head {head}",
                    entry.author, entry.seq
                ));
            };
            if existing == entry.id {
                return Ok(Insert::Duplicate);
            }
            if self
                .equivocations
                .iter()
                .any(|e| e.conflicting.id == entry.id)
            {
                return Ok(Insert::Duplicate);
            }
            self.check_signed(&entry, verifier)?;
            let ev = Equivocation {
                author: entry.author.clone(),
                seq: entry.seq,
                kept: existing,
                conflicting: entry,
            };
            let mut held_for_author = 0usize;
            for e in &self.equivocations {
                if e.conflicting.id == ev.conflicting.id {
                    return Ok(Insert::Duplicate);
                }
                if e.author == ev.author {
                    held_for_author = held_for_author.saturating_add(1);
                }
            }
            if held_for_author >= MAX_EQUIVOCATIONS_PER_AUTHOR {
                // Evidence enough: anyone can forge conflicts under any
                // name, so more would only grow memory (and gossip).
                self.equivocations_dropped = self.equivocations_dropped.saturating_add(1);
                return Ok(Insert::Duplicate);
            }
            self.equivocations.push(ev.clone());
            return Ok(Insert::Equivocation(Box::new(ev)));
        }
        if entry.seq > head.saturating_add(1) {
            let slot = (entry.author.clone(), entry.seq);
            if self
                .pending
                .get(&slot)
                .is_some_and(|(_, e)| e.id == entry.id)
            {
                return Ok(Insert::Duplicate);
            }
            // A newer entry for the slot replaces the older one.
            self.unbuffer(&slot);
            // Full: the oldest buffered entry expires. It was the likeliest
            // to be junk (its gap never filled); an honest one is fetched
            // again by reconciliation once its chain reaches it.
            while self.pending.len() >= MAX_PENDING_ENTRIES {
                let Some((_, oldest)) = self.arrivals.pop_first() else {
                    break;
                };
                self.pending.remove(&oldest);
                self.pending_expired = self.pending_expired.saturating_add(1);
            }
            let arrival = self.next_arrival;
            self.next_arrival = self.next_arrival.saturating_add(1);
            self.arrivals.insert(arrival, slot.clone());
            self.pending.insert(slot, (arrival, entry));
            return Ok(Insert::Buffered);
        }
        let held = head_id.as_slice();
        nodeplane_entry::check_link(&entry, held, head).map_err(|e| e.to_string())?;
        let key = self.check_signed(&entry, verifier)?;
        self.link(entry.clone(), key);
        // Nothing buffered (the common case): no successor to unblock,
        // nothing stale to drop.
        if self.pending.is_empty() {
            return Ok(Insert::Linked(vec![entry]));
        }
        let author = entry.author.clone();
        let mut linked = vec![entry];
        // Unblock buffered successors.
        while let Some(next) = self
            .head_seq(&author)
            .checked_add(1)
            .filter(|_| !self.pending.is_empty())
        {
            let Some(e) = self.unbuffer(&(author.clone(), next)) else {
                break;
            };
            if self.head(&author).map(|h| h.id) != Some(e.prev) {
                // A buffered entry that does not link is dropped; sync will
                // fetch the right one.
                break;
            }
            let Ok(key) = self.check_signed(&e, verifier) else {
                // Nor one not signed by its author.
                break;
            };
            self.link(e.clone(), key);
            linked.push(e);
        }
        // Drop buffered entries the chain has overtaken.
        if self.pending.is_empty() {
            return Ok(Insert::Linked(linked));
        }
        let head = self.head_seq(&author);
        let stale: Vec<_> = self
            .pending
            .range((author.clone(), 0)..=(author.clone(), head))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.unbuffer(&k);
        }
        Ok(Insert::Linked(linked))
    }

    /// Appends a checked entry to its chain; `key` is the key its
    /// signature was checked under, which a `seq` 1 binds its author to
    /// (the key [`nodeplane_entry::signing::binding_key`] reads from it:
    /// `check_signature` returned exactly that, so the body is not parsed
    /// a second time).
    fn link(&mut self, entry: Entry, key: PublicKey) {
        let leaf = leaf_hash(&entry.author, entry.seq);
        let head_fp = fingerprint(&entry);
        let a = match self.authors.find(&entry.author) {
            Some(a) => {
                let Some(chain) = self.chains.get_mut(a.index()) else {
                    return;
                };
                self.root ^= chain.leaf.get() ^ leaf;
                chain.leaf = U64Words::new(leaf);
                chain.ids.push(entry.id);
                chain.head_fp = U64Words::new(head_fp);
                a
            }
            None => {
                // A new author's entry links at seq 1 only (`check_link`
                // against an empty chain), and `key` is the key it binds.
                let Some(a) = self.authors.intern(&entry.author) else {
                    return;
                };
                self.chains.push(Chain {
                    ids: Ids::new(entry.id),
                    head_fp: U64Words::new(head_fp),
                    leaf: U64Words::new(leaf),
                    bound: key,
                });
                self.root ^= leaf;
                self.file_key(a, &entry.author);
                a
            }
        };
        self.recent.entry(a).or_default().push(entry);
        self.len = self.len.saturating_add(1);
    }

    /// Files a new author under its bucket key, in (key, author id) order.
    fn file_key(&mut self, a: AuthorId, author: &str) {
        let key = author_key(author);
        let first = match self.keys.get(key) {
            None => {
                self.keys.insert(key, a);
                return;
            }
            Some(first) => {
                if self.authors.name(first).is_some_and(|f| **f > *author) {
                    // The newcomer sorts first: the old first moves on.
                    self.keys.insert(key, a);
                    first
                } else {
                    a
                }
            }
        };
        let authors = &self.authors;
        let Some(name) = authors.name(first) else {
            return;
        };
        let more = self.keys_more.entry(key).or_default();
        let at = more
            .binary_search_by(|&m| authors.name(m).map(|n| &**n).cmp(&Some(&**name)))
            .unwrap_or_else(|at| at);
        more.insert(at, first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::GENESIS_PREV;
    use nodeplane_entry::signing::ed25519::{key_field, KeyPair, NativeVerifier};

    fn keys(name: &str) -> KeyPair {
        KeyPair::derived(b"ledger-tests", name)
    }

    /// A `join` at seq 1 of `author`, declaring and signed by `signer`'s
    /// key, `extra` JSON fields added.
    fn first_join(author: &str, signer: &str, clock: u64, extra: &str) -> Entry {
        let k = keys(signer);
        let body = format!("{{{}{extra}}}", key_field(&k.public_key()));
        k.sign(Entry::new(
            author,
            1,
            GENESIS_PREV,
            clock,
            "join",
            body.into_bytes(),
        ))
    }

    /// `author`'s chain of `n` entries, signed by its own key.
    fn chain(author: &str, n: u64) -> Vec<Entry> {
        let mut out = vec![first_join(author, author, 1, "")];
        for seq in 2..=n {
            let prev = out.last().map(|e: &Entry| e.id).unwrap();
            out.push(keys(author).sign(Entry::new(
                author,
                seq,
                prev,
                seq,
                "alive",
                b"{}".to_vec(),
            )));
        }
        out
    }

    fn ins(l: &mut Ledger, e: Entry) -> Result<Insert, String> {
        l.insert(e, &mut NativeVerifier)
    }

    /// A store like the host's: answers nothing, keeps nothing.
    #[derive(Debug)]
    struct HostLike;

    impl EntryStore for HostLike {
        fn get(&self, _: &str, _: u64, _: u32) -> Vec<Entry> {
            Vec::new()
        }
    }

    /// Links `entries`, queueing each one's `append` (and a log line after
    /// the first), then drains: the effects and the ledger after it.
    fn link_and_drain(
        mut l: Ledger,
        entries: &[Entry],
    ) -> (
        Vec<nodeplane_types::Effect<crate::effect::Timer, ()>>,
        Ledger,
    ) {
        let mut fx = crate::effect::Effects::default();
        for (i, e) in entries.iter().enumerate() {
            let Ok(Insert::Linked(linked)) = ins(&mut l, e.clone()) else {
                panic!("{}#{} links", e.author, e.seq);
            };
            for e in linked {
                let author = l.shared_author(&e.author).expect("held");
                fx.append_linked(author, e.seq);
            }
            if i == 0 {
                fx.log("between", &[]);
            }
        }
        let mut taken = l.take_linked();
        let out = fx.drain_with(|a, seq| taken.take(a, seq));
        l.finish_flush(taken);
        (out, l)
    }

    #[test]
    fn a_drain_moves_each_linked_entry_into_its_append_in_order() {
        use nodeplane_types::Effect;
        let mut entries = chain("b", 2);
        entries.insert(1, first_join("a", "a", 1, ""));
        // A store like the host's: the entries move into the effects.
        let (out, l) = link_and_drain(Ledger::with_store(Box::new(HostLike)), &entries);
        let appended: Vec<&Entry> = out
            .iter()
            .filter_map(|e| match e {
                Effect::Append(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(appended, entries.iter().collect::<Vec<_>>());
        assert!(matches!(&out[1], Effect::Log { kind, .. } if kind == "between"));
        assert_eq!(out.len(), 4);
        assert!(l.recent.is_empty());
        // The in-memory store gets them too, and answers them afterwards.
        let (out, l) = link_and_drain(Ledger::new(), &entries);
        assert_eq!(out.len(), 4);
        for e in &entries {
            assert_eq!(l.get(&e.author, e.seq).as_ref(), Some(e));
        }
    }

    #[test]
    fn links_buffers_and_unblocks() {
        let c = chain("a", 3);
        let mut l = Ledger::new();
        assert_eq!(ins(&mut l, c[2].clone()), Ok(Insert::Buffered));
        assert_eq!(ins(&mut l, c[1].clone()), Ok(Insert::Buffered));
        assert_eq!(ins(&mut l, c[0].clone()), Ok(Insert::Linked(c.clone())));
        assert_eq!(l.head_seq("a"), 3);
        assert_eq!(l.pending_len(), 0);
        assert_eq!(ins(&mut l, c[1].clone()), Ok(Insert::Duplicate));
    }

    #[test]
    fn equivocation_is_kept_as_evidence() {
        let c = chain("a", 1);
        let mut l = Ledger::new();
        ins(&mut l, c[0].clone()).unwrap();
        // The same id with another key: evidence, not a takeover.
        let other = first_join("a", "mallory", 9, "");
        assert!(matches!(
            ins(&mut l, other.clone()),
            Ok(Insert::Equivocation(_))
        ));
        assert_eq!(l.equivocations().len(), 1);
        assert_eq!(ins(&mut l, other), Ok(Insert::Duplicate));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn unlinked_entry_is_rejected() {
        let mut l = Ledger::new();
        ins(&mut l, chain("a", 1)[0].clone()).unwrap();
        let bad = keys("a").sign(Entry::new("a", 2, [7; 32], 2, "alive", b"{}".to_vec()));
        assert!(ins(&mut l, bad).unwrap_err().contains("does not link"));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn root_digest_is_xor_of_buckets() {
        let mut l = Ledger::new();
        for a in ["a", "b", "c", "d", "e"] {
            for e in chain(a, 2) {
                ins(&mut l, e).unwrap();
            }
        }
        let (kids, n) = l.child_digests(&[]);
        assert_eq!(n, 5);
        assert_eq!(kids.iter().fold(0, |x, y| x ^ y), l.root_digest());
        assert_eq!(l.bucket_digest(&[]), l.root_digest());
        let total: usize = (0..16u8).map(|i| l.authors_under(&[i])).sum();
        assert_eq!(total, 5);
    }

    #[test]
    fn equivocation_evidence_is_capped_per_author() {
        let mut l = Ledger::new();
        ins(&mut l, chain("a", 1)[0].clone()).unwrap();
        let over = MAX_EQUIVOCATIONS_PER_AUTHOR + 4;
        for i in 0..over {
            let forged = first_join("a", "mallory", 1, &format!(",\"forged\":{i}"));
            let kept = matches!(ins(&mut l, forged), Ok(Insert::Equivocation(_)));
            assert_eq!(kept, i < MAX_EQUIVOCATIONS_PER_AUTHOR, "conflict {i}");
        }
        assert_eq!(l.equivocations().len(), MAX_EQUIVOCATIONS_PER_AUTHOR);
        assert_eq!(l.equivocations_dropped(), 4);
        // Another author's evidence has its own allowance.
        ins(&mut l, chain("b", 1)[0].clone()).unwrap();
        let forged = first_join("b", "mallory", 1, ",\"x\":1");
        assert!(matches!(ins(&mut l, forged), Ok(Insert::Equivocation(_))));
    }

    #[test]
    fn a_full_out_of_order_buffer_lets_its_oldest_entry_go() {
        let mut l = Ledger::new();
        // Entries far ahead of fresh authors' chains fill the buffer.
        for i in 0..MAX_PENDING_ENTRIES + 5 {
            let e = Entry::new(
                &format!("x{i}"),
                9,
                GENESIS_PREV,
                9,
                "alive",
                b"{}".to_vec(),
            );
            assert_eq!(ins(&mut l, e), Ok(Insert::Buffered));
        }
        assert_eq!(l.pending_len(), MAX_PENDING_ENTRIES);
        assert_eq!(l.pending_expired(), 5);
        // An honest chain arriving out of order is still buffered and linked.
        let c = chain("a", 2);
        assert_eq!(ins(&mut l, c[1].clone()), Ok(Insert::Buffered));
        assert!(matches!(ins(&mut l, c[0].clone()), Ok(Insert::Linked(v)) if v.len() == 2));
        assert_eq!(l.pending_len(), MAX_PENDING_ENTRIES - 1);
    }

    #[test]
    fn entries_not_signed_by_their_bound_author_are_refused() {
        let mut l = Ledger::new();
        let c = chain("a", 2);
        ins(&mut l, c[0].clone()).unwrap();
        // Another key writing the next entry of "a".
        let forged = keys("mallory").sign(Entry::new("a", 2, c[0].id, 2, "leave", b"{}".to_vec()));
        assert!(ins(&mut l, forged)
            .unwrap_err()
            .contains("signature does not verify"));
        // Unsigned.
        let mut unsigned = c[1].clone();
        unsigned.signature.clear();
        assert!(ins(&mut l, unsigned).is_err());
        // A conflicting seq 2 not signed by "a" is not evidence either.
        ins(&mut l, c[1].clone()).unwrap();
        let conflict =
            keys("mallory").sign(Entry::new("a", 2, c[0].id, 7, "alive", b"{}".to_vec()));
        assert!(ins(&mut l, conflict).is_err());
        assert!(l.equivocations().is_empty());
        assert_eq!(l.bound_key("a"), Some(&keys("a").public_key()));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn a_buffered_entry_with_a_bad_signature_is_dropped_when_its_gap_fills() {
        let mut l = Ledger::new();
        let c = chain("a", 3);
        let mut bad = c[1].clone();
        bad.signature = keys("mallory").sign_id(&bad.id);
        assert_eq!(ins(&mut l, bad), Ok(Insert::Buffered));
        assert_eq!(
            ins(&mut l, c[0].clone()),
            Ok(Insert::Linked(vec![c[0].clone()]))
        );
        assert_eq!(l.head_seq("a"), 1);
    }

    /// A store answering from a fixed list (what a host might answer).
    #[derive(Debug)]
    struct Answers(Vec<Entry>);

    impl EntryStore for Answers {
        fn get(&self, author: &str, from_seq: u64, limit: u32) -> Vec<Entry> {
            self.0
                .iter()
                .filter(|e| e.author == author && e.seq >= from_seq)
                .take(limit as usize)
                .cloned()
                .collect()
        }
    }

    #[test]
    fn entries_are_read_back_from_the_store_after_a_flush_and_checked() {
        let c = chain("a", 3);
        let mut l = Ledger::with_store(Box::new(Answers(Vec::new())));
        for e in &c {
            ins(&mut l, e.clone()).unwrap();
        }
        // Before the flush, from memory.
        assert_eq!(l.entries("a", 1, 10), c);
        l.flush();
        // After: the store holds nothing, so nothing is shipped, and why
        // is noted.
        assert_eq!(l.get("a", 2), None);
        assert_eq!(
            l.head("a"),
            Some(Head {
                seq: 3,
                id: c[2].id
            })
        );
        let noted = l.take_unavailable();
        assert_eq!(noted.len(), 1);
        assert_eq!((noted[0].author.as_str(), noted[0].seq), ("a", 2));
        // A store answering another entry at a slot: not shipped.
        let mut wrong = c.clone();
        wrong[1] = keys("a").sign(Entry::new("a", 2, c[0].id, 77, "alive", b"{}".to_vec()));
        l.set_store(Box::new(Answers(wrong)));
        assert_eq!(l.entries("a", 1, 10), vec![c[0].clone()]);
        assert_eq!(l.take_unavailable().len(), 1);
        // The right answers, read in one piece or from the middle.
        l.set_store(Box::new(Answers(c.clone())));
        assert_eq!(l.entries("a", 1, 10), c);
        assert_eq!(l.entries("a", 2, 1), vec![c[1].clone()]);
        assert_eq!(l.head_entry("a"), Some(c[2].clone()));
        assert!(l.entries("a", 4, 10).is_empty());
        assert!(l.entries("a", 0, usize::MAX).len() == 3);
        assert!(l.take_unavailable().is_empty());
        // A duplicate is still recognised without the entry held, and a
        // linked entry after the flush is read from memory until the next.
        assert_eq!(ins(&mut l, c[1].clone()), Ok(Insert::Duplicate));
        let next = keys("a").sign(Entry::new("a", 4, c[2].id, 4, "alive", b"{}".to_vec()));
        ins(&mut l, next.clone()).unwrap();
        assert_eq!(l.entries("a", 3, 10), vec![c[2].clone(), next]);
        assert_eq!(l.all_entries().len(), 4);
    }

    #[test]
    fn a_first_entry_must_declare_a_key() {
        let mut l = Ledger::new();
        let k = keys("a");
        let bare = k.sign(Entry::new("a", 1, GENESIS_PREV, 1, "join", b"{}".to_vec()));
        assert!(ins(&mut l, bare).unwrap_err().contains("signing_key"));
        assert!(l.is_empty());
    }
}
