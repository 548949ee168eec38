//! The ledger entry format shared by the host and every guest: one entry,
//! its canonical encoding and its id, plus what every holder of entries
//! computes the same way: chain verification ([`chain`](mod@chain)) and the frontier
//! digest ([`frontier`](mod@frontier)).
//!
//! The encoding is the one documented on `ledger-entry` in `wit/control.wit`;
//! the host and every component compute ids the same way.
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod chain;
pub mod frontier;
pub mod signing;

pub use chain::{check_link, verify_chains, ChainError};
pub use frontier::{digest_of, frontier, frontier_digest, Head, FRONTIER_TAG};

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev` of an author's first entry.
pub const GENESIS_PREV: Hash = [0u8; 32];

/// Domain-separation prefix of the canonical encoding.
pub const ENCODING_TAG: &[u8] = b"nodeplane-entry/1";

/// Largest accepted author id, kind and body, in bytes.
pub const MAX_AUTHOR_LEN: usize = 64;
/// Largest accepted entry kind, in bytes.
pub const MAX_KIND_LEN: usize = 32;
/// Largest accepted entry body, in bytes.
pub const MAX_BODY_LEN: usize = 4096;

/// One immutable entry of an author's hash chain.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Entry {
    /// The node that wrote the entry.
    pub author: String,
    /// Position in the author's chain, starting at 1.
    pub seq: u64,
    /// Id of the author's previous entry ([`GENESIS_PREV`] for seq 1).
    #[serde(with = "hex_hash")]
    pub prev: Hash,
    /// Lamport clock of the author when it wrote the entry.
    pub clock: u64,
    /// Entry kind.
    pub kind: String,
    /// Kind-specific body.
    pub body: Vec<u8>,
    /// SHA-256 of the canonical encoding.
    #[serde(with = "hex_hash")]
    pub id: Hash,
    /// The author's Ed25519 signature of the id ([`signing`]); not part
    /// of the encoding the id is the hash of. Empty until signed.
    #[serde(with = "hex_bytes", default)]
    pub signature: Vec<u8>,
}

/// Why an entry failed verification on its own (without its chain).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The stored id is not the hash of the canonical encoding.
    #[error("entry {author}#{seq}: id does not match its contents")]
    IdMismatch {
        /// Author of the entry.
        author: String,
        /// Sequence number of the entry.
        seq: u64,
    },
    /// A field is out of bounds.
    #[error("entry {author}#{seq}: {problem}")]
    Malformed {
        /// Author of the entry.
        author: String,
        /// Sequence number of the entry.
        seq: u64,
        /// What is wrong.
        problem: String,
    },
}

/// The canonical encoding that an entry's id is the hash of.
pub fn canonical_encoding(
    author: &str,
    seq: u64,
    prev: &Hash,
    clock: u64,
    kind: &str,
    body: &[u8],
) -> Vec<u8> {
    // Lengths of in-memory values: the sum cannot realistically overflow,
    // but a capacity hint must never be the thing that panics.
    let capacity = [
        ENCODING_TAG.len(),
        4 + 8 + 32 + 8 + 4 + 4,
        author.len(),
        kind.len(),
        body.len(),
    ]
    .iter()
    .fold(0usize, |acc, n| acc.saturating_add(*n));
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(ENCODING_TAG);
    out.extend_from_slice(&(author.len() as u32).to_be_bytes());
    out.extend_from_slice(author.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(prev);
    out.extend_from_slice(&clock.to_be_bytes());
    out.extend_from_slice(&(kind.len() as u32).to_be_bytes());
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The id of an entry with these contents.
pub fn entry_id(author: &str, seq: u64, prev: &Hash, clock: u64, kind: &str, body: &[u8]) -> Hash {
    Sha256::digest(canonical_encoding(author, seq, prev, clock, kind, body)).into()
}

impl Entry {
    /// Builds an entry and computes its id; the signature is left empty
    /// (the author's signer sets it).
    pub fn new(author: &str, seq: u64, prev: Hash, clock: u64, kind: &str, body: Vec<u8>) -> Entry {
        let id = entry_id(author, seq, &prev, clock, kind, &body);
        Entry {
            author: author.to_string(),
            seq,
            prev,
            clock,
            kind: kind.to_string(),
            body,
            id,
            signature: Vec::new(),
        }
    }

    /// Checks field bounds and that `id` is the hash of the contents.
    /// Chain links are checked by the ledger, which knows the previous entry.
    pub fn verify(&self) -> Result<(), EntryError> {
        let malformed = |problem: String| EntryError::Malformed {
            author: self.author.clone(),
            seq: self.seq,
            problem,
        };
        if self.author.is_empty() || self.author.len() > MAX_AUTHOR_LEN {
            return Err(malformed(format!(
                "author must be 1..={MAX_AUTHOR_LEN} bytes"
            )));
        }
        if self.seq == 0 {
            return Err(malformed("seq must start at 1".into()));
        }
        if self.seq == 1 && self.prev != GENESIS_PREV {
            return Err(malformed("first entry must have an all-zero prev".into()));
        }
        if self.kind.is_empty() || self.kind.len() > MAX_KIND_LEN {
            return Err(malformed(format!("kind must be 1..={MAX_KIND_LEN} bytes")));
        }
        if !self.signature.is_empty() && self.signature.len() != signing::SIGNATURE_LEN {
            return Err(malformed(format!(
                "signature of {} bytes is not {}",
                self.signature.len(),
                signing::SIGNATURE_LEN
            )));
        }
        if self.body.len() > MAX_BODY_LEN {
            return Err(malformed(format!(
                "body of {} bytes exceeds {MAX_BODY_LEN}",
                self.body.len()
            )));
        }
        if entry_id(
            &self.author,
            self.seq,
            &self.prev,
            self.clock,
            &self.kind,
            &self.body,
        ) != self.id
        {
            return Err(EntryError::IdMismatch {
                author: self.author.clone(),
                seq: self.seq,
            });
        }
        Ok(())
    }

    /// The id as lowercase hex.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }
}

/// Converts a byte slice (as carried in WIT) into a hash, if it is 32 bytes.
pub fn hash_from_slice(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(&text).map_err(serde::de::Error::custom)
    }
}

mod hex_hash {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("hash must be 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed independently from the encoding documented in wit/control.wit.
    const GOLDEN_ID: &str = "135d1c0662fb9e559185476e678159807e4bb0d99103c2bd7ac99c8ba8ffc727";

    #[test]
    fn id_covers_every_field() {
        let base = Entry::new("a", 1, GENESIS_PREV, 1, "join", b"{}".to_vec());
        assert!(base.verify().is_ok());
        let mut changed = base.clone();
        changed.clock = 2;
        assert!(matches!(
            changed.verify(),
            Err(EntryError::IdMismatch { .. })
        ));
        let mut changed = base.clone();
        changed.body.push(b' ');
        assert!(changed.verify().is_err());
    }

    /// Golden vector: a change here is a change of the ledger format, and
    /// every stored ledger and every peer would disagree with it.
    #[test]
    fn golden_entry_id() {
        let e = Entry::new("node-1", 1, GENESIS_PREV, 7, "join", br#"{"x":1}"#.to_vec());
        assert_eq!(e.id_hex(), GOLDEN_ID);
    }
}
