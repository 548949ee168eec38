//! The ledger: the union of every author's hash chain this node has seen,
//! with the per-author frontier and the bucketed digests reconciliation uses.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::entry::{Entry, Hash};
use crate::compact::push_tight;
use crate::config::MAX_PENDING_ENTRIES;
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

/// One author's chain and what is known of the author.
#[derive(Clone, Debug)]
struct Chain {
    /// The linked entries, seq 1 first (no growth slack: most chains hold
    /// one or two entries).
    entries: Vec<Entry>,
    /// The author's bucket key (saves a SHA-256 per linked entry).
    key: u64,
    /// The signing key the author's linked entry at seq 1 bound it to.
    bound: Option<PublicKey>,
}

/// The set of verified, linked entries plus buffered and conflicting ones.
/// Each author's id is held once ([`Arc<str>`]), shared by its chain and
/// its digest slot.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    chains: BTreeMap<Arc<str>, Chain>,
    /// (author key, author) for bucketed digests, ordered by key.
    keys: BTreeMap<(u64, Arc<str>), u64>,
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

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
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

    /// Head sequence number of an author's chain (0 when unknown).
    pub fn head_seq(&self, author: &str) -> u64 {
        self.chains
            .get(author)
            .map_or(0, |c| c.entries.len() as u64)
    }

    /// The head entry of an author's chain.
    pub fn head(&self, author: &str) -> Option<&Entry> {
        self.chains.get(author).and_then(|c| c.entries.last())
    }

    /// The entry at (author, seq).
    pub fn get(&self, author: &str, seq: u64) -> Option<&Entry> {
        let chain = &self.chains.get(author)?.entries;
        chain.get(usize::try_from(seq).ok()?.checked_sub(1)?)
    }

    /// The ledger's shared copy of a known author's id.
    pub(crate) fn shared_author(&self, author: &str) -> Option<Arc<str>> {
        self.chains.get_key_value(author).map(|(a, _)| a.clone())
    }

    /// Up to `limit` entries of `author` starting at sequence `from`.
    pub fn entries(&self, author: &str, from: u64, limit: usize) -> Vec<Entry> {
        let Some(chain) = self.chains.get(author) else {
            return Vec::new();
        };
        let start = usize::try_from(from.saturating_sub(1)).unwrap_or(usize::MAX);
        chain
            .entries
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Every linked entry, author by author in chain order.
    pub fn all_entries(&self) -> impl Iterator<Item = &Entry> {
        self.chains.values().flat_map(|c| c.entries.iter())
    }

    /// Per-author frontier: (author, head seq, head id), sorted by author.
    pub fn frontier(&self) -> Vec<(String, u64, Hash)> {
        self.chains
            .iter()
            .filter_map(|(a, c)| c.entries.last().map(|e| (a.to_string(), e.seq, e.id)))
            .collect()
    }

    /// SHA-256 over the whole frontier: equal iff the head sets are equal
    /// (the digest every holder of entries computes,
    /// [`nodeplane_entry::frontier_digest`]).
    pub fn frontier_digest(&self) -> Hash {
        nodeplane_entry::frontier_digest(
            self.chains
                .iter()
                .filter_map(|(a, c)| c.entries.last().map(|e| (&**a, e.seq, &e.id))),
        )
    }

    /// The short frontier digest carried in every ping and ack: the XOR of
    /// every author's leaf hash, so one append updates it in O(1).
    pub fn root_digest(&self) -> u64 {
        self.root
    }

    /// Number of authors in a bucket.
    pub fn authors_under(&self, path: &[u8]) -> usize {
        let (lo, hi) = path_range(path);
        self.keys
            .range((lo, Arc::from(""))..)
            .take_while(|((k, _), _)| *k <= hi)
            .count()
    }

    /// Digests of the 16 children of a bucket and its author count.
    pub fn child_digests(&self, path: &[u8]) -> (Vec<u64>, usize) {
        let mut out = vec![0u64; crate::config::SYNC_FANOUT];
        let (lo, hi) = path_range(path);
        let shift = 64u32.saturating_sub((path.len() as u32).saturating_add(1).saturating_mul(4));
        let mut count: usize = 0;
        for ((k, _), leaf) in self
            .keys
            .range((lo, Arc::from(""))..)
            .take_while(|((k, _), _)| *k <= hi)
        {
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
        self.keys
            .range((lo, Arc::from(""))..)
            .take_while(|((k, _), _)| *k <= hi)
            .fold(0, |acc, (_, leaf)| acc ^ leaf)
    }

    /// (author, head seq) of every author in a bucket.
    pub fn heads_under(&self, path: &[u8]) -> Vec<(String, u64)> {
        let (lo, hi) = path_range(path);
        self.keys
            .range((lo, Arc::from(""))..)
            .take_while(|((k, _), _)| *k <= hi)
            .map(|((_, a), _)| (a.to_string(), self.head_seq(a)))
            .collect()
    }

    /// The signing key an author's first linked entry bound it to.
    pub fn bound_key(&self, author: &str) -> Option<&PublicKey> {
        self.chains.get(author).and_then(|c| c.bound.as_ref())
    }

    /// Checks an entry's signature against its author's bound key (`seq` 1
    /// against the key it declares itself); see
    /// [`nodeplane_entry::signing`].
    fn check_signed(&self, entry: &Entry, verifier: &mut dyn Verifier) -> Result<(), String> {
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
        check_signature(entry, bound, verifier)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Verifies an entry alone, against its chain and against its author's
    /// signing key, and inserts it. `Err` carries the reason it was
    /// rejected; the ledger is then unchanged. Signatures are checked when
    /// an entry links (a buffered one when its gap is filled) or is kept
    /// as evidence: a conflicting `seq` 1 only needs to be signed by the
    /// key it declares itself (another key taking an id is evidence, not
    /// a takeover); any other conflict must be signed by the bound key.
    pub fn insert(&mut self, entry: Entry, verifier: &mut dyn Verifier) -> Result<Insert, String> {
        // A copy of a held entry (the common case under gossip) is a
        // duplicate without hashing it again: it equals a verified entry.
        if self.get(&entry.author, entry.seq) == Some(&entry) {
            return Ok(Insert::Duplicate);
        }
        entry.verify().map_err(|e| e.to_string())?;
        let head = self.head_seq(&entry.author);
        if entry.seq <= head {
            // 1 <= seq <= head (verified above): the slot is held.
            let Some(existing) = self.get(&entry.author, entry.seq) else {
                return Err(format!(
                    "entry {}#{}: not held at or below head {head}",
                    entry.author, entry.seq
                ));
            };
            if existing.id == entry.id {
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
                kept: existing.id,
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
        let held = self
            .head(&entry.author)
            .map_or(&[][..], |h| std::slice::from_ref(&h.id));
        nodeplane_entry::check_link(&entry, held, head).map_err(|e| e.to_string())?;
        self.check_signed(&entry, verifier)?;
        let author = entry.author.clone();
        self.link(entry.clone());
        let mut linked = vec![entry];
        // Unblock buffered successors.
        while let Some(next) = self.head_seq(&author).checked_add(1) {
            let Some(e) = self.unbuffer(&(author.clone(), next)) else {
                break;
            };
            if self.head(&author).map(|h| h.id) != Some(e.prev)
                || self.check_signed(&e, verifier).is_err()
            {
                // A buffered entry that does not link, or is not signed by
                // its author, is dropped; sync will fetch the right one.
                break;
            }
            self.link(e.clone());
            linked.push(e);
        }
        // Drop buffered entries the chain has overtaken.
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

    fn link(&mut self, entry: Entry) {
        let author: Arc<str> = match self.chains.get_key_value(entry.author.as_str()) {
            Some((a, _)) => a.clone(),
            None => {
                let a: Arc<str> = Arc::from(entry.author.as_str());
                let chain = Chain {
                    entries: Vec::new(),
                    key: author_key(&a),
                    bound: None,
                };
                self.chains.insert(a.clone(), chain);
                a
            }
        };
        let Some(chain) = self.chains.get_mut(&*author) else {
            return;
        };
        if entry.seq == 1 {
            // Checked before linking: a linked first entry declares a key.
            if let Ok(key) = nodeplane_entry::signing::binding_key(&entry) {
                chain.bound = Some(key);
            }
        }
        let leaf = leaf_hash(&entry.author, entry.seq);
        let slot = self.keys.entry((chain.key, author)).or_insert(0);
        self.root ^= *slot ^ leaf;
        *slot = leaf;
        push_tight(&mut chain.entries, entry);
        self.len = self.len.saturating_add(1);
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

    #[test]
    fn a_first_entry_must_declare_a_key() {
        let mut l = Ledger::new();
        let k = keys("a");
        let bare = k.sign(Entry::new("a", 1, GENESIS_PREV, 1, "join", b"{}".to_vec()));
        assert!(ins(&mut l, bare).unwrap_err().contains("signing_key"));
        assert!(l.is_empty());
    }
}
