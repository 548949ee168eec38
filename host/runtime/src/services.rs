//! Host services a [`Node`](crate::Node) performs effects with, and their
//! in-memory implementations (the agent and the simulator bring their own).

use std::collections::{BTreeMap, HashSet};

use nodeplane_entry::Entry;

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

/// Durable storage of ledger entries (the union of every author's chain).
pub trait LedgerStore: Send {
    /// Every stored entry, in append order.
    fn load(&self) -> Result<Vec<Entry>, StoreError>;
    /// Stores an entry; storing one already present is a no-op.
    fn append(&mut self, entry: &Entry) -> Result<(), StoreError>;
    /// Number of stored entries.
    fn len(&self) -> usize;
    /// True when nothing is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
}

/// An in-memory ledger store.
#[derive(Clone, Debug, Default)]
pub struct MemoryLedger {
    entries: Vec<Entry>,
    ids: HashSet<[u8; 32]>,
}

impl MemoryLedger {
    /// An empty store.
    pub fn new() -> MemoryLedger {
        MemoryLedger::default()
    }

    /// Every entry, in append order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

impl LedgerStore for MemoryLedger {
    fn load(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self.entries.clone())
    }

    /// Stores `entry` without hashing it again: entries reach a store only
    /// through [`Effect::Append`](crate::Effect::Append), which the runtime
    /// verified when the guest handed them over. (A durable store, which
    /// also reads entries back from disk, verifies on load.)
    fn append(&mut self, entry: &Entry) -> Result<(), StoreError> {
        if self.ids.insert(entry.id) {
            self.entries.push(entry.clone());
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// One line of the event log kept by [`MemoryServices`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// Time of the event.
    pub at_ms: u64,
    /// Event name.
    pub kind: String,
    /// JSON details.
    pub detail: String,
}

/// In-memory services with a manual clock: what tests and the conformance
/// harness use. Sent messages and timers are kept for inspection.
#[derive(Debug, Default)]
pub struct MemoryServices {
    /// The current time; tests advance it.
    pub now_ms: u64,
    /// Seed handed to the next instance.
    pub next_seed: u64,
    /// Messages sent, in order.
    pub outbox: Vec<(String, Vec<u8>)>,
    /// Pending timers: id → due time.
    pub timers: BTreeMap<u64, u64>,
    /// The ledger.
    pub ledger: MemoryLedger,
    /// The event log.
    pub events: Vec<EventRecord>,
}

impl MemoryServices {
    /// Fresh services at time 0.
    pub fn new() -> MemoryServices {
        MemoryServices::default()
    }

    /// Timers due at the current time, earliest first, removed from the set.
    pub fn take_due_timers(&mut self) -> Vec<u64> {
        let mut due: Vec<(u64, u64)> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= self.now_ms)
            .map(|(id, at)| (*at, *id))
            .collect();
        due.sort();
        for (_, id) in &due {
            self.timers.remove(id);
        }
        due.into_iter().map(|(_, id)| id).collect()
    }
}

impl Services for MemoryServices {
    fn now_ms(&mut self) -> u64 {
        self.now_ms
    }

    fn seed(&mut self) -> u64 {
        self.next_seed = self.next_seed.wrapping_add(1);
        self.next_seed
    }

    fn send(&mut self, to: &str, payload: Vec<u8>) {
        self.outbox.push((to.to_string(), payload));
    }

    fn set_timer(&mut self, timer: u64, after_ms: u64) {
        self.timers
            .insert(timer, self.now_ms.saturating_add(after_ms));
    }

    fn cancel_timer(&mut self, timer: u64) {
        self.timers.remove(&timer);
    }

    fn cancel_all_timers(&mut self) {
        self.timers.clear();
    }

    fn ledger(&mut self) -> &mut dyn LedgerStore {
        &mut self.ledger
    }

    fn log_event(&mut self, kind: &str, detail: &str) {
        self.events.push(EventRecord {
            at_ms: self.now_ms,
            kind: kind.to_string(),
            detail: detail.to_string(),
        });
    }
}
