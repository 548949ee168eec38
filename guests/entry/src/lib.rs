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
pub mod plain;
pub mod signing;

/// A seeded xorshift for the tests' random inputs: each call gives a
/// number below its argument (which must not be 0).
#[cfg(test)]
pub(crate) fn test_rng(seed: u64) -> impl FnMut(usize) -> usize {
    let mut state = seed;
    move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    }
}

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
    // The bytes of [`canonical_encoding`], hashed as they are produced
    // (every entry received is hashed: no buffer for its copy).
    let mut h = Sha256::new();
    h.update(ENCODING_TAG);
    h.update((author.len() as u32).to_be_bytes());
    h.update(author.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(prev);
    h.update(clock.to_be_bytes());
    h.update((kind.len() as u32).to_be_bytes());
    h.update(kind.as_bytes());
    h.update((body.len() as u32).to_be_bytes());
    h.update(body);
    h.finalize().into()
}

/// Why bytes are not a canonical encoding ([`decode_canonical`]) or a
/// signed entry ([`decode_signed`]). The bytes are treated as hostile:
/// every length is checked against the bytes left before anything is
/// allocated, and nothing may follow the last field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes do not start with [`ENCODING_TAG`].
    #[error(
        "does not start with the tag {:?}",
        String::from_utf8_lossy(ENCODING_TAG)
    )]
    Tag,
    /// A field (or its length prefix) needs more bytes than are left.
    #[error("{field}: needs {needed} bytes, {left} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs (its declared length, or its width).
        needed: u64,
        /// Bytes left in the input.
        left: usize,
    },
    /// A text field is not UTF-8.
    #[error("{field} is not UTF-8")]
    NotUtf8 {
        /// The field.
        field: &'static str,
    },
    /// Bytes follow the last field.
    #[error("{count} trailing bytes after the {after}")]
    Trailing {
        /// How many.
        count: usize,
        /// The last field read.
        after: &'static str,
    },
}

/// A cursor over hostile bytes: every read is checked against what is
/// left, and fails naming the field.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        let Some((head, rest)) = self.rest.split_at_checked(n) else {
            return Err(DecodeError::Truncated {
                field,
                needed: n as u64,
                left: self.rest.len(),
            });
        };
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(field, N)?;
        // `take` returned exactly N bytes.
        bytes.try_into().map_err(|_| DecodeError::Truncated {
            field,
            needed: N as u64,
            left: bytes.len(),
        })
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A u32-BE length, then that many bytes (checked before any copy).
    fn prefixed(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = u32::from_be_bytes(self.array(field)?);
        let needed = usize::try_from(len).map_err(|_| DecodeError::Truncated {
            field,
            needed: u64::from(len),
            left: self.rest.len(),
        })?;
        self.take(field, needed)
    }

    fn text(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let bytes = self.prefixed(field)?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| DecodeError::NotUtf8 { field })
    }

    fn end(&self, after: &'static str) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            count => Err(DecodeError::Trailing { count, after }),
        }
    }
}

/// Decodes one [`canonical_encoding`] from the front of `bytes`: the entry
/// (its id the SHA-256 of the bytes read, its signature empty) and the
/// rest of the input.
fn decode_canonical_prefix(bytes: &[u8]) -> Result<(Entry, &[u8]), DecodeError> {
    let mut cursor = Cursor { rest: bytes };
    let tag = cursor
        .take("tag", ENCODING_TAG.len())
        .map_err(|_| DecodeError::Tag)?;
    if tag != ENCODING_TAG {
        return Err(DecodeError::Tag);
    }
    let author = cursor.text("author")?;
    let seq = cursor.u64("seq")?;
    let prev = cursor.array("prev")?;
    let clock = cursor.u64("clock")?;
    let kind = cursor.text("kind")?;
    let body = cursor.prefixed("body")?.to_vec();
    let read = bytes.len().saturating_sub(cursor.rest.len());
    let canonical = bytes.get(..read).unwrap_or(bytes);
    let entry = Entry {
        author,
        seq,
        prev,
        clock,
        kind,
        body,
        id: Sha256::digest(canonical).into(),
        signature: Vec::new(),
    };
    Ok((entry, cursor.rest))
}

/// The inverse of [`canonical_encoding`]: the entry whose canonical
/// encoding is exactly `bytes`, its id computed as the SHA-256 of those
/// bytes (so it matches by construction), its signature empty. Refuses a
/// wrong tag, a length running past the end, non-UTF-8 text and trailing
/// bytes; field bounds are [`Entry::verify`]'s to check.
pub fn decode_canonical(bytes: &[u8]) -> Result<Entry, DecodeError> {
    let (entry, rest) = decode_canonical_prefix(bytes)?;
    Cursor { rest }.end("body")?;
    Ok(entry)
}

/// A signed entry as bytes: its [`canonical_encoding`], then the
/// signature with a u32-BE length prefix (like every variable-length
/// field of the encoding; an unsigned entry has length 0). The id is not
/// included: [`decode_signed`] recomputes it. The agent's store keeps each
/// entry as a format byte followed by these bytes.
pub fn encode_signed(entry: &Entry) -> Vec<u8> {
    let mut out = canonical_encoding(
        &entry.author,
        entry.seq,
        &entry.prev,
        entry.clock,
        &entry.kind,
        &entry.body,
    );
    out.reserve(entry.signature.len().saturating_add(4));
    out.extend_from_slice(&(entry.signature.len() as u32).to_be_bytes());
    out.extend_from_slice(&entry.signature);
    out
}

/// The inverse of [`encode_signed`], for hostile bytes: as
/// [`decode_canonical`], then a length-prefixed signature that must end
/// the input exactly. The signature's length is [`Entry::verify`]'s to
/// check (0 or [`signing::SIGNATURE_LEN`]).
pub fn decode_signed(bytes: &[u8]) -> Result<Entry, DecodeError> {
    let (mut entry, rest) = decode_canonical_prefix(bytes)?;
    let mut cursor = Cursor { rest };
    entry.signature = cursor.prefixed("signature")?.to_vec();
    cursor.end("signature")?;
    Ok(entry)
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

    /// Entries covering the edges of every field.
    fn samples() -> Vec<Entry> {
        let mut signed = Entry::new("node-1", 2, [7; 32], u64::MAX, "alive", vec![1, 2, 3]);
        signed.signature = vec![0xab; signing::SIGNATURE_LEN];
        vec![
            Entry::new("a", 1, GENESIS_PREV, 0, "join", Vec::new()),
            Entry::new("node-1", 1, GENESIS_PREV, 7, "join", br#"{"x":1}"#.to_vec()),
            signed,
            Entry::new(
                &"é".repeat(MAX_AUTHOR_LEN / 2),
                u64::MAX,
                [0xff; 32],
                1,
                &"k".repeat(MAX_KIND_LEN),
                vec![0; MAX_BODY_LEN],
            ),
        ]
    }

    #[test]
    fn canonical_and_signed_encodings_round_trip() {
        for e in samples() {
            let canonical =
                canonical_encoding(&e.author, e.seq, &e.prev, e.clock, &e.kind, &e.body);
            let unsigned = Entry {
                signature: Vec::new(),
                ..e.clone()
            };
            assert_eq!(decode_canonical(&canonical), Ok(unsigned));
            let bytes = encode_signed(&e);
            assert_eq!(bytes.len(), canonical.len() + 4 + e.signature.len());
            assert!(bytes.starts_with(&canonical));
            let back = decode_signed(&bytes).unwrap();
            assert_eq!(back, e);
            assert!(back.verify().is_ok());
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        for e in samples() {
            let bytes = encode_signed(&e);
            for cut in 0..bytes.len() {
                let err = decode_signed(&bytes[..cut]).expect_err("truncated");
                assert!(
                    matches!(err, DecodeError::Tag | DecodeError::Truncated { .. }),
                    "cut {cut}: {err}"
                );
            }
            let canonical = &bytes[..bytes.len() - 4 - e.signature.len()];
            for cut in 0..canonical.len() {
                assert!(decode_canonical(&canonical[..cut]).is_err(), "cut {cut}");
            }
        }
    }

    #[test]
    fn lengths_past_the_end_wrong_tags_bad_text_and_trailing_bytes_are_refused() {
        let e = &samples()[2];
        let bytes = encode_signed(e);
        let at_author = ENCODING_TAG.len();
        let at_kind = at_author + 4 + e.author.len() + 8 + 32 + 8;
        let at_body = at_kind + 4 + e.kind.len();
        let at_signature = at_body + 4 + e.body.len();
        for (at, field) in [
            (at_author, "author"),
            (at_kind, "kind"),
            (at_body, "body"),
            (at_signature, "signature"),
        ] {
            for len in [u32::MAX, 1 << 31, bytes.len() as u32] {
                let mut bad = bytes.clone();
                bad[at..at + 4].copy_from_slice(&len.to_be_bytes());
                match decode_signed(&bad) {
                    Err(DecodeError::Truncated {
                        field: f, needed, ..
                    }) => {
                        assert_eq!((f, needed), (field, u64::from(len)));
                    }
                    other => panic!("{field} length {len}: {other:?}"),
                }
            }
        }
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert_eq!(decode_signed(&bad), Err(DecodeError::Tag));
        let mut bad = bytes.clone();
        bad[at_author + 4] = 0xff;
        assert_eq!(
            decode_signed(&bad),
            Err(DecodeError::NotUtf8 { field: "author" })
        );
        let mut bad = bytes.clone();
        bad.extend_from_slice(&[0, 0]);
        assert_eq!(
            decode_signed(&bad),
            Err(DecodeError::Trailing {
                count: 2,
                after: "signature"
            })
        );
        let canonical = &bytes[..at_signature];
        let mut bad = canonical.to_vec();
        bad.push(0);
        assert_eq!(
            decode_canonical(&bad),
            Err(DecodeError::Trailing {
                count: 1,
                after: "body"
            })
        );
    }

    /// The signature's declared length is checked against the bytes left,
    /// not trusted: exactly what is left decodes (whatever the length;
    /// `verify` then refuses all but 0 and [`signing::SIGNATURE_LEN`]),
    /// one byte more is a truncation naming the declared length, one byte
    /// less leaves a trailing byte; a declared length past the input
    /// allocates nothing (the input is borrowed until the length checks).
    #[test]
    fn the_signature_length_is_checked_against_the_bytes_left() {
        let base = Entry::new("node-1", 2, [7; 32], 9, "alive", b"{}".to_vec());
        for len in [0usize, 1, 63, 64, 65, 200] {
            let e = Entry {
                signature: vec![0x5a; len],
                ..base.clone()
            };
            let bytes = encode_signed(&e);
            let at = bytes.len() - 4 - len;
            let back = decode_signed(&bytes).expect("exact length decodes");
            assert_eq!(back, e);
            assert_eq!(
                back.verify().is_ok(),
                len == 0 || len == signing::SIGNATURE_LEN,
                "{len}"
            );
            let mut more = bytes.clone();
            more[at..at + 4].copy_from_slice(&(len as u32 + 1).to_be_bytes());
            assert_eq!(
                decode_signed(&more),
                Err(DecodeError::Truncated {
                    field: "signature",
                    needed: len as u64 + 1,
                    left: len,
                })
            );
            if len > 0 {
                let mut less = bytes.clone();
                less[at..at + 4].copy_from_slice(&(len as u32 - 1).to_be_bytes());
                assert_eq!(
                    decode_signed(&less),
                    Err(DecodeError::Trailing {
                        count: 1,
                        after: "signature"
                    })
                );
            }
            // Declared lengths from one past the bytes left up to
            // u32::MAX, in big steps: each refused before any copy.
            for declared in (len as u64 + 1..=u64::from(u32::MAX)).step_by(1 << 27) {
                let mut huge = bytes.clone();
                huge[at..at + 4].copy_from_slice(&(declared as u32).to_be_bytes());
                assert!(matches!(
                    decode_signed(&huge),
                    Err(DecodeError::Truncated { field: "signature", needed, left })
                        if needed == declared && left == len
                ));
            }
        }
    }

    /// Random bytes and mutations of valid encodings: never a panic, and
    /// whatever decodes re-encodes to exactly the input (one encoding per
    /// entry).
    #[test]
    fn random_and_mutated_bytes_never_panic_and_decode_canonically() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid: Vec<Vec<u8>> = samples().iter().map(encode_signed).collect();
        let mut decoded = 0;
        for round in 0..20_000 {
            let mut bytes = if round % 4 == 0 {
                let len = (next() % 160) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                valid[(next() % valid.len() as u64) as usize].clone()
            };
            for _ in 0..=(next() % 3) {
                if bytes.is_empty() {
                    break;
                }
                let at = (next() % bytes.len() as u64) as usize;
                match next() % 4 {
                    0 => bytes[at] ^= 1 << (next() % 8),
                    1 => bytes[at] = next() as u8,
                    2 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, next() as u8),
                }
            }
            if let Ok(e) = decode_signed(&bytes) {
                decoded += 1;
                assert_eq!(encode_signed(&e), bytes);
            }
            if let Ok(e) = decode_canonical(&bytes) {
                assert_eq!(
                    canonical_encoding(&e.author, e.seq, &e.prev, e.clock, &e.kind, &e.body),
                    bytes
                );
            }
        }
        assert!(decoded > 0, "some mutations (of fixed-width fields) decode");
    }

    /// Golden vector: a change here is a change of the ledger format, and
    /// every stored ledger and every peer would disagree with it.
    #[test]
    fn golden_entry_id() {
        let e = Entry::new("node-1", 1, GENESIS_PREV, 7, "join", br#"{"x":1}"#.to_vec());
        assert_eq!(e.id_hex(), GOLDEN_ID);
    }
}
