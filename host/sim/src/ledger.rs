//! Ledger fixtures: building stores pre-filled with valid entries, and the
//! wire size of an entry. (The frontier digest and chain verification are
//! the entry format's own: [`nodeplane_entry::digest_of`],
//! [`nodeplane_entry::verify_chains`].)

use std::collections::BTreeMap;

use nodeplane_entry::signing::ed25519::KeyPair;
use nodeplane_entry::{Entry, Hash, GENESIS_PREV};
use nodeplane_runtime::{LedgerStore, MemoryLedger};

/// Entry kind of the filler entries of [`fill_notes`]: a kind the node
/// plane does not interpret, so it replicates them without any membership
/// effect (no probes of made-up authors).
pub const NOTE_KIND: &str = "sim-note";

/// Per-author chain builder for fixtures.
#[derive(Clone, Debug, Default)]
pub struct ChainWriter {
    heads: BTreeMap<String, (u64, Hash)>,
    clock: u64,
}

impl ChainWriter {
    /// A writer with no chains.
    pub fn new() -> ChainWriter {
        ChainWriter::default()
    }

    /// Appends the next entry of `author`'s chain, signed with the
    /// author's fixture key ([`fixture_keys`]). An author's first entry must
    /// bind its key: when it is not already a `join`, it becomes one, with
    /// the same JSON fields plus `signing_key` (a body that is not a
    /// profile stays without membership effect).
    pub fn next(&mut self, author: &str, kind: &str, body: Vec<u8>) -> Entry {
        self.clock += 1;
        let keys = fixture_keys(author);
        let (seq, prev) = self.heads.get(author).copied().unwrap_or((0, GENESIS_PREV));
        let (kind, body) = if seq == 0 {
            let mut object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&body).unwrap_or_default();
            object.insert("signing_key".into(), hex::encode(keys.public_key()).into());
            (
                "join",
                serde_json::Value::Object(object).to_string().into_bytes(),
            )
        } else {
            (kind, body)
        };
        let entry = keys.sign(Entry::new(author, seq + 1, prev, self.clock, kind, body));
        self.heads.insert(author.to_string(), (entry.seq, entry.id));
        entry
    }
}

/// The signing key of fixture author `author`.
pub fn fixture_keys(author: &str) -> KeyPair {
    KeyPair::derived(b"nodeplane-sim-fixtures", author)
}

/// Name of fixture author `i`.
pub fn fixture_author(i: usize) -> String {
    format!("author-{i}")
}

/// Appends `count` note entries round-robin over `authors` (indices in
/// `authors`), continuing the chains in `writer`, to every store in `into`.
pub fn fill_notes(
    writer: &mut ChainWriter,
    authors: &[usize],
    count: usize,
    into: &mut [&mut MemoryLedger],
) {
    for k in 0..count {
        let author = fixture_author(authors[k % authors.len()]);
        let body = format!("{{\"n\":{k}}}").into_bytes();
        let entry = writer.next(&author, NOTE_KIND, body);
        for store in into.iter_mut() {
            store.append(&entry).expect("fixture entries are valid");
        }
    }
}

/// A store of `count` membership entries from `authors` authors: each
/// author's `join`, then `alive` entries with rising incarnations (what a
/// long-lived cluster's ledger is mostly made of).
pub fn membership_history(authors: usize, count: usize) -> MemoryLedger {
    let mut writer = ChainWriter::new();
    let mut store = MemoryLedger::new();
    let mut incarnation = vec![0u64; authors];
    for k in 0..count {
        let a = k % authors;
        let author = fixture_author(a);
        let kind = if incarnation[a] == 0 { "join" } else { "alive" };
        incarnation[a] += 1;
        let body = serde_json::json!({
            "inc": incarnation[a],
            "addr": format!("10.9.{}.{}:7946", a / 256, a % 256),
            "meta": [],
        });
        let entry = writer.next(&author, kind, body.to_string().into_bytes());
        store.append(&entry).expect("fixture entries are valid");
    }
    store
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Size of an entry in the node plane's wire encoding (postcard: varint
/// lengths and integers, raw 32-byte hashes, the 64-byte signature as two
/// fixed halves): what shipping the entry
/// itself costs, apart from any protocol overhead.
pub fn wire_entry_size(e: &Entry) -> u64 {
    entry_size_of(e.author.len(), e.seq, e.clock, e.kind.len(), e.body.len())
}

/// [`wire_entry_size`] of an entry given by its lengths and numbers (the
/// simulator's traffic count reads them off decoded messages).
pub(crate) fn entry_size_of(
    author_len: usize,
    seq: u64,
    clock: u64,
    kind_len: usize,
    body_len: usize,
) -> u64 {
    let bytes = |len: usize| varint_len(len as u64) + len;
    (bytes(author_len)
        + varint_len(seq)
        + 32
        + varint_len(clock)
        + bytes(kind_len)
        + bytes(body_len)
        + 32
        + nodeplane_entry::signing::SIGNATURE_LEN) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeplane_entry::{digest_of as frontier_digest, verify_chains};

    #[test]
    fn digest_depends_on_heads_only_and_chains_verify() {
        let mut w = ChainWriter::new();
        let (mut a, mut b) = (MemoryLedger::new(), MemoryLedger::new());
        fill_notes(&mut w, &[0, 1, 2], 30, &mut [&mut a, &mut b]);
        assert_eq!(frontier_digest(a.entries()), frontier_digest(b.entries()));
        fill_notes(&mut w, &[0], 1, &mut [&mut a]);
        assert_ne!(frontier_digest(a.entries()), frontier_digest(b.entries()));
        verify_chains(a.entries()).expect("fixture chains verify");
        let mut forked = a.entries().to_vec();
        forked.push(Entry::new(
            "author-0",
            2,
            GENESIS_PREV,
            99,
            NOTE_KIND,
            vec![],
        ));
        assert!(verify_chains(&forked).is_err());
    }
}
