//! The hash-linked ledger: entries, chains, frontier and digests.
pub mod entry;
pub mod lookup;
pub mod store;
pub use entry::{entry_id, Entry, EntryError, Hash, GENESIS_PREV};
pub use lookup::{EntryStore, MemoryEntries};
pub use store::{Equivocation, Head, Insert, Ledger, Unavailable};
