//! Where the ledger reads back the entries it linked: the host's
//! `ledger-store.get` in a component, [`MemoryEntries`] natively.

use std::collections::BTreeMap;

use super::entry::Entry;

/// Reads back linked entries by author and sequence number (the
/// `ledger-store.get` host function, `docs/interface.md`).
pub trait EntryStore: std::fmt::Debug {
    /// The stored entries of `author`'s chain (the first stored at each
    /// sequence number) from `from_seq`, in sequence order, at most
    /// `limit`, stopping at the first gap. A store may answer fewer than
    /// asked (a host bounds each answer); the ledger asks again from where
    /// the answer stopped, and takes an empty answer as "not held". The
    /// answer is input: the ledger checks every entry against its chain.
    fn get(&self, author: &str, from_seq: u64, limit: u32) -> Vec<Entry>;

    /// The entries linked since the previous call, in chain order per
    /// author, whose `append` effects have now been handed to the host
    /// ([`crate::Node::drain_effects`]). A store that is the host's keeps
    /// nothing here (the default): the host has them. Called by a node's
    /// drain only for a store that [`EntryStore::keeps_linked`].
    fn linked(&mut self, entries: Vec<Entry>) {
        drop(entries);
    }

    /// Whether this store keeps what [`EntryStore::linked`] hands it
    /// (false, the default, for the host's store). A node's drain moves
    /// each entry linked during the call into its `append` effect; only
    /// for a store that keeps them does it hand the store a copy.
    fn keeps_linked(&self) -> bool {
        false
    }
}

/// An in-memory [`EntryStore`]: keeps every linked entry it is handed,
/// per author in chain order (the native test kit's, and a standalone
/// [`super::Ledger`]'s).
#[derive(Debug, Default)]
pub struct MemoryEntries {
    chains: BTreeMap<String, Vec<Entry>>,
}

impl EntryStore for MemoryEntries {
    fn get(&self, author: &str, from_seq: u64, limit: u32) -> Vec<Entry> {
        let Some(chain) = self.chains.get(author) else {
            return Vec::new();
        };
        let skip = usize::try_from(from_seq.saturating_sub(1)).unwrap_or(usize::MAX);
        if from_seq == 0 {
            return Vec::new();
        }
        chain
            .iter()
            .skip(skip)
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    fn keeps_linked(&self) -> bool {
        true
    }

    /// Keeps each entry that extends its author's chain (the first at each
    /// sequence number, as a host's store answers).
    fn linked(&mut self, entries: Vec<Entry>) {
        for e in entries {
            let chain = self.chains.entry(e.author.clone()).or_default();
            if e.seq == (chain.len() as u64).saturating_add(1) {
                chain.push(e);
            }
        }
    }
}
