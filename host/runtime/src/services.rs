//! Host services a [`Node`](crate::Node) performs effects with, and the one
//! in-memory implementation, [`RecordingServices`], that the simulator, the
//! conformance suite and in-memory tests drive nodes with (the agent brings
//! its own, with real I/O).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nodeplane_entry::signing::ed25519::KeyPair;
use nodeplane_entry::Entry;

use crate::signing::{NodeSigner, VerifyMemo, RECORDING_KEY_CONTEXT};

/// Why the ledger store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A stored or offered entry failed verification.
    #[error("ledger entry rejected: {0}")]
    Invalid(String),
    /// The storage backend failed.
    #[error("ledger storage failed: {0}")]
    Backend(String),
}

/// Most entries one `ledger-store.get` answers, whatever `limit` the
/// component asks for (`docs/interface.md`, [host-8]): one message's worth
/// (a component asks again from where an answer stopped).
pub const MAX_GET_ENTRIES: usize = 1_024;

/// Reads a store's entries by author and sequence number: what answers
/// `ledger-store.get`. Shared with the component's host state for the life
/// of an instance, so it reads the store as it is at each call.
pub trait EntryReader: Send + Sync {
    /// The stored entries of `author`'s chain (the first stored at each
    /// sequence number) from `from_seq`, in sequence order, at most
    /// `limit`, stopping at the first gap.
    fn chain(&self, author: &str, from_seq: u64, limit: usize) -> Vec<Entry>;
}

/// Durable storage of ledger entries (the union of every author's chain).
pub trait LedgerStore: Send {
    /// Every stored entry, in append order.
    fn load(&self) -> Result<Vec<Entry>, StoreError>;
    /// Stores an entry; storing one already present is a no-op. An error
    /// means the entry is not durably stored: the node retries once after
    /// [`LedgerStore::reopen`] and otherwise stops (fail-stop).
    fn append(&mut self, entry: &Entry) -> Result<(), StoreError>;
    /// Recovers the store after a failed append (for example, reopens a
    /// database that refuses every write after an I/O error), so that the
    /// append can be retried once. The default does nothing: a store with
    /// nothing to recover just sees the retry.
    fn reopen(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Number of stored entries.
    fn len(&self) -> usize;
    /// True when nothing is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A reader of this store's entries by author and sequence number,
    /// for `ledger-store.get`. Required, so that a new store cannot forget
    /// it: with `None`, `get` answers only entries appended earlier in the
    /// same call, and a component that reads entries back (the node
    /// plane) cannot ship old ones.
    fn reader(&self) -> Option<Arc<dyn EntryReader>>;
}

/// Everything a node needs from its host besides the component.
pub trait Services: Send {
    /// Current time in milliseconds (monotonic).
    fn now_ms(&mut self) -> u64;
    /// A seed for the randomness of a new instance.
    fn seed(&mut self) -> u64;
    /// Send a message (unreliable).
    fn send(&mut self, to: &str, payload: Vec<u8>);
    /// Arrange for `Node::fire_timer(timer)` after `after_ms`.
    fn set_timer(&mut self, timer: u64, after_ms: u64);
    /// Cancel a timer.
    fn cancel_timer(&mut self, timer: u64);
    /// Cancel every timer (the component is being replaced).
    fn cancel_all_timers(&mut self);
    /// The ledger store.
    fn ledger(&mut self) -> &mut dyn LedgerStore;
    /// Append a line to the node's local event log.
    fn log_event(&mut self, kind: &str, detail: &str);
    /// The signing key of node `node_id` (the `signing` host service): the
    /// same key for every instance the node starts, since its first `join`
    /// bound its id to it.
    fn signer(&mut self, node_id: &str) -> Arc<NodeSigner>;
}

/// Entries shared by the in-memory stores of one world: each distinct
/// entry is held once, by id, and every [`MemoryLedger`] made
/// [`in_pool`](MemoryLedger::in_pool) of it refers to that copy. Entries
/// are content-addressed and immutable, so sharing them changes nothing a
/// store answers; it only saves every node its own copy. Clones share the
/// pool. The pool keeps every entry it was given for as long as it lives
/// (a world's stores only grow).
#[derive(Clone, Debug, Default)]
pub struct EntryPool(Arc<Mutex<PoolEntries>>);

#[derive(Debug, Default)]
struct PoolEntries {
    /// Each entry, at its slot.
    entries: Vec<Arc<Entry>>,
    /// Slot of each entry, by id.
    slots: HashMap<[u8; 32], usize>,
    /// author -> seq -> the first slot pooled at that (author, seq).
    chains: HashMap<Arc<str>, BTreeMap<u64, usize>>,
    /// first slot at an (author, seq) -> the other slots pooled there
    /// (equivocations: rare).
    others: HashMap<usize, Vec<usize>>,
}

impl PoolEntries {
    /// The slots pooled at (author, seq), first pooled first.
    fn slots_at(&self, author: &str, seq: u64) -> impl Iterator<Item = usize> + '_ {
        let first = self.chains.get(author).and_then(|c| c.get(&seq)).copied();
        let others = first
            .and_then(|f| self.others.get(&f))
            .map_or(&[][..], Vec::as_slice);
        first.into_iter().chain(others.iter().copied())
    }
}

impl EntryPool {
    /// An empty pool.
    pub fn new() -> EntryPool {
        EntryPool::default()
    }

    /// Number of distinct entries held.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, PoolEntries> {
        lock(&self.0)
    }

    /// The slot of `entry`'s id and the shared copy of `entry` (the
    /// pooled one when equal to `entry`, else a copy of its own: two
    /// entries with one id and different signatures stay distinct).
    fn intern(&self, entry: &Entry) -> (usize, Arc<Entry>) {
        let mut pool = self.lock();
        if let Some(&slot) = pool.slots.get(&entry.id) {
            if let Some(shared) = pool.entries.get(slot) {
                if **shared == *entry {
                    return (slot, Arc::clone(shared));
                }
                return (slot, Arc::new(entry.clone()));
            }
        }
        let slot = pool.entries.len();
        let shared = Arc::new(entry.clone());
        pool.entries.push(Arc::clone(&shared));
        pool.slots.insert(entry.id, slot);
        let author = match pool.chains.get_key_value(entry.author.as_str()) {
            Some((a, _)) => Arc::clone(a),
            None => Arc::from(entry.author.as_str()),
        };
        let first = *pool
            .chains
            .entry(author)
            .or_default()
            .entry(entry.seq)
            .or_insert(slot);
        if first != slot {
            pool.others.entry(first).or_default().push(slot);
        }
        (slot, shared)
    }
}

/// Which pooled entries one [`MemoryLedger`] holds, shared with its
/// [`EntryReader`].
#[derive(Clone, Debug, Default)]
struct Held {
    /// Bit `slot` is set when the pool's entry at `slot` is stored.
    bits: Vec<u64>,
    /// Slots stored while another entry at their (author, seq) was held
    /// already: never the first stored there (equivocations: rare).
    later: BTreeSet<usize>,
    /// Stored copies that differ from the pooled entry of their slot (one
    /// id, another signature: rare).
    own: HashMap<usize, Arc<Entry>>,
}

impl Held {
    fn holds(&self, slot: usize) -> bool {
        self.bits
            .get(slot / 64)
            .is_some_and(|word| word & (1u64 << (slot % 64)) != 0)
    }

    fn mark(&mut self, slot: usize) {
        let word = slot / 64;
        if self.bits.len() <= word {
            self.bits.resize(word.saturating_add(1), 0);
        }
        if let Some(w) = self.bits.get_mut(word) {
            *w |= 1u64 << (slot % 64);
        }
    }

    /// The slot first stored at (author, seq), if any.
    fn first_at(&self, pool: &PoolEntries, author: &str, seq: u64) -> Option<usize> {
        pool.slots_at(author, seq)
            .find(|&s| self.holds(s) && !self.later.contains(&s))
    }
}

/// A [`MemoryLedger`]'s reader: its pool and what it holds.
struct MemoryReader {
    pool: EntryPool,
    held: Arc<Mutex<Held>>,
}

impl EntryReader for MemoryReader {
    fn chain(&self, author: &str, from_seq: u64, limit: usize) -> Vec<Entry> {
        let pool = self.pool.lock();
        let held = lock(&self.held);
        let mut out = Vec::new();
        let mut seq = from_seq;
        while out.len() < limit {
            let Some(slot) = held.first_at(&pool, author, seq) else {
                break;
            };
            let entry = held.own.get(&slot).or_else(|| pool.entries.get(slot));
            let Some(entry) = entry else {
                break;
            };
            out.push((**entry).clone());
            let Some(next) = seq.checked_add(1) else {
                break;
            };
            seq = next;
        }
        out
    }
}

/// Locks a mutex, taking over a poisoned one (the data stays consistent:
/// every update is a single step).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// An in-memory ledger store. Its entries live in an [`EntryPool`] (its
/// own, or one shared with the other stores of a world); the store keeps
/// their order and which ids it holds (one bit per pooled entry). It
/// answers `ledger-store.get` through the pool's index by (author, seq).
#[derive(Debug, Default)]
pub struct MemoryLedger {
    pool: EntryPool,
    entries: Vec<Arc<Entry>>,
    /// What it holds, shared with its [`EntryReader`].
    held: Arc<Mutex<Held>>,
}

/// A copy holds what the original holds, from then on apart from it.
impl Clone for MemoryLedger {
    fn clone(&self) -> MemoryLedger {
        MemoryLedger {
            pool: self.pool.clone(),
            entries: self.entries.clone(),
            held: Arc::new(Mutex::new(lock(&self.held).clone())),
        }
    }
}

impl MemoryLedger {
    /// An empty store with a pool of its own.
    pub fn new() -> MemoryLedger {
        MemoryLedger::default()
    }

    /// An empty store sharing the entries of `pool`.
    pub fn in_pool(pool: &EntryPool) -> MemoryLedger {
        MemoryLedger {
            pool: pool.clone(),
            ..MemoryLedger::default()
        }
    }

    /// The pool the entries live in.
    pub fn pool(&self) -> &EntryPool {
        &self.pool
    }

    /// Every entry, in append order.
    pub fn entries(&self) -> Entries<'_> {
        Entries(&self.entries)
    }
}

/// A [`MemoryLedger`]'s entries, in append order: iterate, count, index
/// or copy them.
#[derive(Clone, Copy, Debug)]
pub struct Entries<'a>(&'a [Arc<Entry>]);

/// Iterator over [`Entries`].
pub type EntriesIter<'a> =
    std::iter::Map<std::slice::Iter<'a, Arc<Entry>>, fn(&'a Arc<Entry>) -> &'a Entry>;

impl<'a> Entries<'a> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in order.
    pub fn iter(&self) -> EntriesIter<'a> {
        self.0.iter().map(|e| &**e)
    }

    /// The entry at `index`.
    pub fn get(&self, index: usize) -> Option<&'a Entry> {
        self.0.get(index).map(|e| &**e)
    }

    /// A copy of every entry.
    pub fn to_vec(&self) -> Vec<Entry> {
        self.iter().cloned().collect()
    }
}

impl<'a> IntoIterator for Entries<'a> {
    type Item = &'a Entry;
    type IntoIter = EntriesIter<'a>;

    fn into_iter(self) -> EntriesIter<'a> {
        self.iter()
    }
}

impl LedgerStore for MemoryLedger {
    fn load(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self.entries().to_vec())
    }

    /// Stores `entry` without hashing it again: entries reach a store only
    /// through [`Effect::Append`](crate::Effect::Append), which the runtime
    /// verified when the guest handed them over. (A durable store, which
    /// also reads entries back from disk, verifies on load.) An id already
    /// stored is a no-op, as before: the first entry stored under an id
    /// stays.
    fn append(&mut self, entry: &Entry) -> Result<(), StoreError> {
        let (slot, shared) = self.pool.intern(entry);
        let pool = self.pool.lock();
        let mut held = lock(&self.held);
        if !held.holds(slot) {
            if held.first_at(&pool, &entry.author, entry.seq).is_some() {
                held.later.insert(slot);
            }
            let pooled = pool.entries.get(slot);
            if !pooled.is_some_and(|p| Arc::ptr_eq(p, &shared)) {
                held.own.insert(slot, Arc::clone(&shared));
            }
            held.mark(slot);
            self.entries.push(shared);
        }
        Ok(())
    }

    /// Nothing to recover in memory.
    fn reopen(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn reader(&self) -> Option<Arc<dyn EntryReader>> {
        Some(Arc::new(MemoryReader {
            pool: self.pool.clone(),
            held: Arc::clone(&self.held),
        }))
    }
}

/// One line of a node's event log as [`RecordingServices`] recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// Time of the event.
    pub at_ms: u64,
    /// Event name.
    pub kind: String,
    /// JSON details.
    pub detail: String,
}

/// A virtual clock, shared by every node of one simulated world (clones
/// read and set the same time). Only its owner advances it.
#[derive(Clone, Debug, Default)]
pub struct VirtualClock(Arc<AtomicU64>);

impl VirtualClock {
    /// A clock at time 0.
    pub fn new() -> VirtualClock {
        VirtualClock::default()
    }

    /// The current time, ms.
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets the current time, ms.
    pub fn set_ms(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::Relaxed);
    }
}

/// A timer setting recorded during a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerSetting {
    /// The component's timer id.
    pub timer: u64,
    /// When it is due, ms.
    pub due_ms: u64,
    /// Which setting this is: a timer set again, or cancelled, leaves the
    /// earlier settings stale ([`RecordingServices::take_timer`]).
    pub generation: u64,
}

/// What one or more calls recorded, drained by the driver after them.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Messages sent: (address, payload), in order.
    pub outbox: Vec<(String, Vec<u8>)>,
    /// Timers set, in order.
    pub timers: Vec<TimerSetting>,
    /// Event log lines, in order.
    pub log: Vec<EventRecord>,
}

/// The in-memory host services of the deterministic driver (the simulator,
/// the conformance suite and in-memory tests; the agent performs effects
/// with real I/O instead). Nothing is performed here: messages, timer
/// settings and log lines are *recorded* during a call and drained after
/// it ([`RecordingServices::drain`]) by whoever drives the node; the
/// ledger is kept in memory; time comes from a [`VirtualClock`].
#[derive(Debug, Default)]
pub struct RecordingServices {
    /// The node's clock (shared with the other nodes of its world).
    pub clock: VirtualClock,
    /// Seed handed to every instance the node starts (so a restarted or
    /// recovered instance draws the same sequence).
    pub seed: u64,
    /// The durable store; a driver keeps it across crashes.
    pub ledger: MemoryLedger,
    recorded: Recorded,
    /// Live timers: id → the setting in force.
    active_timers: BTreeMap<u64, TimerSetting>,
    next_generation: u64,
    /// Context of the node's deterministic signing key (see
    /// [`RecordingServices::keyed`]); empty by default.
    pub key_context: Vec<u8>,
    /// The node's signer, once made.
    signer: Option<Arc<NodeSigner>>,
}

impl RecordingServices {
    /// Services at time 0 with seed 0 and an empty ledger, on their own clock.
    pub fn new() -> RecordingServices {
        RecordingServices::default()
    }

    /// Services on `clock` over `ledger`, handing `seed` to the instance.
    pub fn with(clock: VirtualClock, seed: u64, ledger: MemoryLedger) -> RecordingServices {
        RecordingServices {
            clock,
            seed,
            ledger,
            ..RecordingServices::default()
        }
    }

    /// Derives the node's signing key from `context` and its node id
    /// (the simulator passes its seed), instead of from the id alone.
    pub fn keyed(mut self, context: &[u8]) -> RecordingServices {
        self.key_context = context.to_vec();
        self.signer = None;
        self
    }

    /// The public key of the node's signer, once the node has started.
    pub fn public_key(&self) -> Option<nodeplane_entry::signing::PublicKey> {
        self.signer.as_ref().map(|s| s.public_key())
    }

    /// Takes everything recorded since the last drain.
    pub fn drain(&mut self) -> Recorded {
        std::mem::take(&mut self.recorded)
    }

    /// Messages recorded and not yet drained.
    pub fn outbox(&self) -> &[(String, Vec<u8>)] {
        &self.recorded.outbox
    }

    /// Log lines recorded and not yet drained.
    pub fn log(&self) -> &[EventRecord] {
        &self.recorded.log
    }

    /// Consumes the timer `timer` if `generation` is the setting in force
    /// (false for a timer since cancelled or set again).
    pub fn take_timer(&mut self, timer: u64, generation: u64) -> bool {
        if self
            .active_timers
            .get(&timer)
            .is_some_and(|t| t.generation == generation)
        {
            self.active_timers.remove(&timer);
            true
        } else {
            false
        }
    }

    /// When the earliest live timer is due, if any.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.active_timers.values().map(|t| t.due_ms).min()
    }

    /// Live timers due at the current time, earliest first, consumed.
    pub fn take_due_timers(&mut self) -> Vec<u64> {
        let now = self.clock.now_ms();
        let mut due: Vec<(u64, u64)> = self
            .active_timers
            .values()
            .filter(|t| t.due_ms <= now)
            .map(|t| (t.due_ms, t.timer))
            .collect();
        due.sort();
        for (_, timer) in &due {
            self.active_timers.remove(timer);
        }
        due.into_iter().map(|(_, timer)| timer).collect()
    }
}

impl Services for RecordingServices {
    fn now_ms(&mut self) -> u64 {
        self.clock.now_ms()
    }

    fn seed(&mut self) -> u64 {
        self.seed
    }

    fn send(&mut self, to: &str, payload: Vec<u8>) {
        self.recorded.outbox.push((to.to_string(), payload));
    }

    fn set_timer(&mut self, timer: u64, after_ms: u64) {
        self.next_generation += 1;
        let setting = TimerSetting {
            timer,
            due_ms: self.clock.now_ms().saturating_add(after_ms),
            generation: self.next_generation,
        };
        self.active_timers.insert(timer, setting);
        self.recorded.timers.push(setting);
    }

    fn cancel_timer(&mut self, timer: u64) {
        self.active_timers.remove(&timer);
    }

    fn cancel_all_timers(&mut self) {
        self.active_timers.clear();
    }

    fn ledger(&mut self) -> &mut dyn LedgerStore {
        &mut self.ledger
    }

    fn log_event(&mut self, kind: &str, detail: &str) {
        self.recorded.log.push(EventRecord {
            at_ms: self.clock.now_ms(),
            kind: kind.to_string(),
            detail: detail.to_string(),
        });
    }

    /// A deterministic key: [`RECORDING_KEY_CONTEXT`], the
    /// [`key_context`](RecordingServices::key_context) and the node id, so
    /// a node keeps its key across restarts; verification through the
    /// process-wide [`VerifyMemo`].
    fn signer(&mut self, node_id: &str) -> Arc<NodeSigner> {
        if let Some(signer) = &self.signer {
            return signer.clone();
        }
        let mut context = RECORDING_KEY_CONTEXT.to_vec();
        context.extend_from_slice(&self.key_context);
        let pair = KeyPair::derived(&context, node_id);
        let signer = Arc::new(NodeSigner::with_memo(pair, VerifyMemo::shared()));
        self.signer = Some(signer.clone());
        signer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeplane_entry::GENESIS_PREV;

    fn entry(author: &str, seq: u64, prev: [u8; 32], clock: u64) -> Entry {
        Entry::new(author, seq, prev, clock, "alive", b"{}".to_vec())
    }

    fn chain(author: &str, n: u64) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map_or(GENESIS_PREV, |e| e.id);
            out.push(entry(author, seq, prev, seq));
        }
        out
    }

    #[test]
    fn a_memory_ledger_answers_its_own_chain_first_stored_first() {
        let pool = EntryPool::new();
        let (mut x, mut y) = (MemoryLedger::in_pool(&pool), MemoryLedger::in_pool(&pool));
        let a = chain("a", 3);
        let other = entry("a", 2, a[0].id, 9);
        // x stores a's chain then the conflicting entry; y the other way.
        for e in [&a[0], &a[1], &other, &a[2]] {
            x.append(e).unwrap();
        }
        for e in [&a[0], &other] {
            y.append(e).unwrap();
        }
        let (rx, ry) = (x.reader().unwrap(), y.reader().unwrap());
        assert_eq!(rx.chain("a", 1, 10), a);
        assert_eq!(rx.chain("a", 2, 1), vec![a[1].clone()]);
        assert_eq!(ry.chain("a", 1, 10), vec![a[0].clone(), other.clone()]);
        assert!(rx.chain("a", 4, 10).is_empty());
        assert!(rx.chain("a", 0, 10).is_empty());
        assert!(rx.chain("b", 1, 10).is_empty());
        assert!(rx.chain("a", u64::MAX, 10).is_empty());
        // The reader follows later appends; a clone is a store of its own.
        let mut z = x.clone();
        let b = chain("b", 1);
        x.append(&b[0]).unwrap();
        assert_eq!(rx.chain("b", 1, 10), b);
        assert!(z.reader().unwrap().chain("b", 1, 10).is_empty());
        z.append(&b[0]).unwrap();
        assert_eq!(z.reader().unwrap().chain("b", 1, 10), b);
        // One id, another signature: the store answers its own copy.
        let mut resigned = a[0].clone();
        resigned.signature = vec![7; 64];
        let mut w = MemoryLedger::in_pool(&pool);
        w.append(&resigned).unwrap();
        assert_eq!(w.reader().unwrap().chain("a", 1, 10), vec![resigned]);
    }
}
