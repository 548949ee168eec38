//! Who may write under an author's name: every entry carries an Ed25519
//! signature by its author, and an author's key is the one its first entry
//! (`seq` 1, a `join`) declares.
//!
//! The rule, checked by every holder of entries (each receiver and every
//! load from a store):
//! - the entry at `seq` 1 must be a `join` whose body, a JSON object,
//!   carries `"signing_key"`: 64 hex digits, the 32-byte Ed25519 public
//!   key. It *binds* the author to that key;
//! - every entry of that author, the first included, carries a 64-byte
//!   signature of [`signed_message`] (a domain tag and the entry's id)
//!   that verifies under the bound key;
//! - a later `join` that declares a key declares the bound one.
//!
//! The id does not cover the signature (it is the hash of the canonical
//! encoding), so an entry is still named by its contents alone. Ed25519
//! signatures are deterministic, so one author writing one entry gives one
//! signature, and copies of an entry are equal.
//!
//! Verification needs a [`Verifier`]: natively, [`ed25519::verify`]
//! (feature `ed25519`); in a guest, the host's `signing` service.

use crate::{Entry, Hash};

/// Length of an Ed25519 public key, in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature, in bytes.
pub const SIGNATURE_LEN: usize = 64;
/// Domain-separation prefix of what an author signs: the tag, then the
/// entry's 32-byte id. A signature of anything else cannot pass for an
/// entry's.
pub const SIGNATURE_TAG: &[u8] = b"nodeplane-entry-signature/1";
/// The entry kind whose first instance binds its author's key.
pub const BINDING_KIND: &str = "join";
/// The body field of a `join` that declares the author's key.
pub const KEY_FIELD: &str = "signing_key";

/// An Ed25519 public key.
pub type PublicKey = [u8; PUBLIC_KEY_LEN];

/// The bytes an author signs for the entry with id `id`.
pub fn signed_message(id: &Hash) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNATURE_TAG.len().saturating_add(id.len()));
    out.extend_from_slice(SIGNATURE_TAG);
    out.extend_from_slice(id);
    out
}

/// Checks signatures: given a public key, an entry id and a signature,
/// whether the signature is the key's over [`signed_message`] of the id.
pub trait Verifier {
    /// True when `signature` is valid for `id` under `key`.
    fn verify(&mut self, key: &PublicKey, id: &Hash, signature: &[u8]) -> bool;
}

/// A node's signing key, held by its host: signs the ids of the entries
/// the node writes, and verifies others' (a guest reaches both through
/// the host's `signing` service and never holds the private key).
pub trait Signer: Verifier + std::fmt::Debug {
    /// The node's public key, which its `join` entries declare.
    fn public_key(&self) -> PublicKey;
    /// The signature of the entry with id `id` ([`SIGNATURE_LEN`] bytes).
    fn sign(&mut self, id: &Hash) -> Vec<u8>;
}

/// Why an entry's signature or key declaration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The first entry of an author is not a `join` declaring a key.
    #[error("entry {author}#{seq}: an author's first entry must be a join declaring its signing_key ({problem})")]
    NoBinding {
        /// Author of the entry.
        author: String,
        /// Sequence number of the entry.
        seq: u64,
        /// What is missing or wrong.
        problem: String,
    },
    /// The signature is missing, of the wrong length or does not verify.
    #[error(
        "entry {author}#{seq}: signature does not verify under the author's key {}",
        short(key)
    )]
    BadSignature {
        /// Author of the entry.
        author: String,
        /// Sequence number of the entry.
        seq: u64,
        /// The key it was checked against.
        key: PublicKey,
    },
    /// A later `join` declares a key other than the bound one.
    #[error(
        "entry {author}#{seq}: declares signing key {} but the author is bound to {}",
        short(declared),
        short(bound)
    )]
    KeyChanged {
        /// Author of the entry.
        author: String,
        /// Sequence number of the entry.
        seq: u64,
        /// The key the entry declares.
        declared: PublicKey,
        /// The key the author's first entry bound.
        bound: PublicKey,
    },
}

/// The first 8 bytes of a key in hex, as error messages show it.
fn short(key: &PublicKey) -> String {
    hex::encode(key.get(..8).unwrap_or(&[]))
}

/// The key a `join` entry declares: `Ok(None)` for any other kind, or a
/// `join` without the field; `Err` when the field is there but is not 64
/// hex digits, or the body is not a JSON object.
pub fn declared_key(entry: &Entry) -> Result<Option<PublicKey>, String> {
    if entry.kind != BINDING_KIND {
        return Ok(None);
    }
    // The form every honest writer produces, read without `serde_json`
    // (the same answer: see `plain`); any other body below.
    if let Some(plain) = crate::plain::scan(&entry.body, |_, _| ()) {
        return plain.signing_key.map(parse_key).transpose();
    }
    let KeyField(value) = serde_json::from_slice(&entry.body)
        .map_err(|e| format!("join body is not a JSON object: {e}"))?;
    let Some(value) = value else {
        return Ok(None);
    };
    let text = value
        .as_str()
        .ok_or_else(|| format!("{KEY_FIELD} is not a string"))?;
    parse_key(text).map(Some)
}

/// The [`KEY_FIELD`] value of a JSON object, read exactly as
/// `serde_json::Map<String, Value>` reads the object (the same calls on
/// the deserializer, so the same values accepted and the same errors; a
/// repeated field's last value, as the map keeps) without building the
/// map: every join is read this way by every receiver.
struct KeyField(Option<serde_json::Value>);

impl<'de> serde::Deserialize<'de> for KeyField {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(KeyFieldVisitor)
    }
}

/// The visitor of [`KeyField`]: `serde_json::Map`'s, keeping one field.
struct KeyFieldVisitor;

impl<'de> serde::de::Visitor<'de> for KeyFieldVisitor {
    type Value = KeyField;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a map")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<KeyField, E> {
        Ok(KeyField(None))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<KeyField, A::Error> {
        let mut found = None;
        while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
            if key == KEY_FIELD {
                found = Some(value);
            }
        }
        Ok(KeyField(found))
    }
}

/// Parses a public key written as 64 hex digits.
pub fn parse_key(text: &str) -> Result<PublicKey, String> {
    // The common case, decoded in place: exactly 64 hex digits give the
    // same 32 bytes `hex::decode` gives; anything else takes the path
    // below for its error.
    if let Some(key) = key_digits(text.as_bytes()) {
        return Ok(key);
    }
    let bytes = hex::decode(text).map_err(|e| format!("{KEY_FIELD} is not hex: {e}"))?;
    PublicKey::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "{KEY_FIELD} must be {PUBLIC_KEY_LEN} bytes, got {}",
            bytes.len()
        )
    })
}

/// Exactly 64 hex digits (either case) as the 32 bytes they spell (what
/// `hex::decode` gives), by table; `None` for anything else. Every
/// receiver decodes the key of every `join` it links.
fn key_digits(text: &[u8]) -> Option<PublicKey> {
    /// Each byte's value as a hex digit; 0xff if it is not one. Built at
    /// compile time: an index out of bounds or an overflow here fails the
    /// build, never a run.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
    const DIGIT: [u8; 256] = {
        let mut t = [0xffu8; 256];
        let mut i = 0u8;
        while i < 10 {
            t[(b'0' + i) as usize] = i;
            i += 1;
        }
        let mut i = 0u8;
        while i < 6 {
            t[(b'a' + i) as usize] = 10 + i;
            t[(b'A' + i) as usize] = 10 + i;
            i += 1;
        }
        t
    };
    let pairs = text.as_chunks::<2>();
    if !pairs.1.is_empty() || pairs.0.len() != PUBLIC_KEY_LEN {
        return None;
    }
    let mut key = [0u8; PUBLIC_KEY_LEN];
    for (out, &[hi, lo]) in key.iter_mut().zip(pairs.0) {
        let (hi, lo) = (*DIGIT.get(usize::from(hi))?, *DIGIT.get(usize::from(lo))?);
        if (hi | lo) & 0xf0 != 0 {
            return None;
        }
        *out = (hi << 4) | lo;
    }
    Some(key)
}

/// The key an author's first entry binds it to. `first` must be the
/// author's entry at `seq` 1.
pub fn binding_key(first: &Entry) -> Result<PublicKey, SignatureError> {
    let no_binding = |problem: String| SignatureError::NoBinding {
        author: first.author.clone(),
        seq: first.seq,
        problem,
    };
    if first.kind != BINDING_KIND {
        return Err(no_binding(format!("kind is {:?}", first.kind)));
    }
    declared_key(first)
        .map_err(no_binding)?
        .ok_or_else(|| no_binding(format!("no {KEY_FIELD}")))
}

/// Checks an entry's signature. `bound` is the key its author is bound to,
/// or `None` when the entry is the author's first (`seq` 1), which binds
/// its own key (and is checked under it). Returns the key the entry was
/// checked under.
pub fn check_signature(
    entry: &Entry,
    bound: Option<&PublicKey>,
    verifier: &mut dyn Verifier,
) -> Result<PublicKey, SignatureError> {
    let key = match bound {
        Some(bound) => {
            let declared = declared_key(entry).map_err(|problem| SignatureError::NoBinding {
                author: entry.author.clone(),
                seq: entry.seq,
                problem,
            })?;
            if let Some(declared) = declared.filter(|d| d != bound) {
                return Err(SignatureError::KeyChanged {
                    author: entry.author.clone(),
                    seq: entry.seq,
                    declared,
                    bound: *bound,
                });
            }
            *bound
        }
        None => binding_key(entry)?,
    };
    if entry.signature.len() != SIGNATURE_LEN || !verifier.verify(&key, &entry.id, &entry.signature)
    {
        return Err(SignatureError::BadSignature {
            author: entry.author.clone(),
            seq: entry.seq,
            key,
        });
    }
    Ok(key)
}

/// Checks the signatures of a set of entries in store order (an author's
/// entry at `seq` 1 before its others, as every store appends them): the
/// first `seq` 1 of each author binds its key, a later conflicting `seq` 1
/// must be signed by the key it declares itself (evidence), and every
/// other entry by the bound key. Returns the first problem.
pub fn verify_signatures<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    verifier: &mut dyn Verifier,
) -> Result<(), SignatureError> {
    verify_signatures_with(entries, |e, bound| check_signature(e, bound, verifier))
}

/// [`verify_signatures`]' rule with the per-entry check supplied by the
/// caller: `check(entry, bound key)` must answer as [`check_signature`]
/// does (a caller sharing entries between stores may remember its
/// answers). The binding rule itself stays here, written once.
pub fn verify_signatures_with<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    mut check: impl FnMut(&'a Entry, Option<&PublicKey>) -> Result<PublicKey, SignatureError>,
) -> Result<(), SignatureError> {
    let mut bound: std::collections::BTreeMap<&str, PublicKey> = std::collections::BTreeMap::new();
    for e in entries {
        let key = if e.seq <= 1 {
            None
        } else {
            Some(
                bound
                    .get(e.author.as_str())
                    .ok_or_else(|| SignatureError::NoBinding {
                        author: e.author.clone(),
                        seq: e.seq,
                        problem: "no entry at seq 1 precedes it".into(),
                    })?,
            )
        };
        let checked = check(e, key)?;
        if e.seq <= 1 {
            bound.entry(e.author.as_str()).or_insert(checked);
        }
    }
    Ok(())
}

/// Native Ed25519 (feature `ed25519`): key pairs, signing and verification
/// with `ed25519-dalek`.
#[cfg(feature = "ed25519")]
pub mod ed25519 {
    use super::{signed_message, PublicKey, Verifier, SIGNATURE_LEN};
    use crate::{Entry, Hash};
    use ed25519_dalek::{Signer as _, SigningKey};
    use sha2::{Digest, Sha256};

    /// Domain tag of [`KeyPair::derived`] seeds.
    const DERIVED_TAG: &[u8] = b"nodeplane-derived-signing-key/1";

    /// An Ed25519 key pair: the private half never leaves the host.
    #[derive(Clone)]
    pub struct KeyPair(SigningKey);

    impl std::fmt::Debug for KeyPair {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "KeyPair({})", hex::encode(self.public_key()))
        }
    }

    impl KeyPair {
        /// The key pair of a 32-byte secret seed (RFC 8032).
        pub fn from_seed(seed: &[u8; 32]) -> KeyPair {
            KeyPair(SigningKey::from_bytes(seed))
        }

        /// A key pair derived deterministically from `context` and `name`:
        /// for the simulator (per seed and node) and tests, never for a
        /// real node, whose key comes from OS randomness.
        pub fn derived(context: &[u8], name: &str) -> KeyPair {
            let mut h = Sha256::new();
            h.update(DERIVED_TAG);
            h.update((context.len() as u64).to_be_bytes());
            h.update(context);
            h.update(name.as_bytes());
            KeyPair::from_seed(&h.finalize().into())
        }

        /// The secret seed, for storing the key pair.
        pub fn seed(&self) -> [u8; 32] {
            self.0.to_bytes()
        }

        /// The public key.
        pub fn public_key(&self) -> PublicKey {
            self.0.verifying_key().to_bytes()
        }

        /// The signature of the entry with id `id`.
        pub fn sign_id(&self, id: &Hash) -> Vec<u8> {
            self.0.sign(&signed_message(id)).to_bytes().to_vec()
        }

        /// `entry` with its signature set (its id must be final).
        pub fn sign(&self, mut entry: Entry) -> Entry {
            entry.signature = self.sign_id(&entry.id);
            entry
        }
    }

    /// Whether `signature` is `key`'s over the entry id `id` (strict RFC
    /// 8032 verification: no malleable or small-order forms).
    pub fn verify(key: &PublicKey, id: &Hash, signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; SIGNATURE_LEN]>::try_from(signature) else {
            return false;
        };
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(key) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        key.verify_strict(&signed_message(id), &signature).is_ok()
    }

    impl Verifier for KeyPair {
        fn verify(&mut self, key: &PublicKey, id: &Hash, signature: &[u8]) -> bool {
            verify(key, id, signature)
        }
    }

    impl super::Signer for KeyPair {
        fn public_key(&self) -> PublicKey {
            KeyPair::public_key(self)
        }

        fn sign(&mut self, id: &Hash) -> Vec<u8> {
            self.sign_id(id)
        }
    }

    /// [`verify`] as a [`Verifier`].
    #[derive(Clone, Copy, Debug, Default)]
    pub struct NativeVerifier;

    impl Verifier for NativeVerifier {
        fn verify(&mut self, key: &PublicKey, id: &Hash, signature: &[u8]) -> bool {
            verify(key, id, signature)
        }
    }

    /// The join body fragment that declares `key` (`"signing_key":"…"`),
    /// for tests and tools that write entries by hand.
    pub fn key_field(key: &PublicKey) -> String {
        format!("\"{}\":\"{}\"", super::KEY_FIELD, hex::encode(key))
    }
}

#[cfg(all(test, feature = "ed25519"))]
mod tests {
    use super::ed25519::{key_field, KeyPair, NativeVerifier};
    use super::*;
    use crate::GENESIS_PREV;

    fn join(pair: &KeyPair, author: &str) -> Entry {
        let body = format!("{{\"inc\":1,{}}}", key_field(&pair.public_key()));
        pair.sign(Entry::new(
            author,
            1,
            GENESIS_PREV,
            1,
            "join",
            body.into_bytes(),
        ))
    }

    #[test]
    fn first_join_binds_its_key_and_later_entries_verify_under_it() {
        let pair = KeyPair::derived(b"t", "a");
        let first = join(&pair, "a");
        let key = check_signature(&first, None, &mut NativeVerifier).unwrap();
        assert_eq!(key, pair.public_key());
        let second = pair.sign(Entry::new("a", 2, first.id, 2, "suspect", b"{}".to_vec()));
        assert_eq!(
            check_signature(&second, Some(&key), &mut NativeVerifier),
            Ok(key)
        );
    }

    #[test]
    fn another_key_cannot_write_under_a_bound_author() {
        let owner = KeyPair::derived(b"t", "a");
        let forger = KeyPair::derived(b"t", "mallory");
        let first = join(&owner, "a");
        let forged = forger.sign(Entry::new("a", 2, first.id, 2, "leave", b"{}".to_vec()));
        assert!(matches!(
            check_signature(&forged, Some(&owner.public_key()), &mut NativeVerifier),
            Err(SignatureError::BadSignature { .. })
        ));
        // A later join re-declaring another key is refused even if signed
        // by the bound key.
        let body = format!("{{\"inc\":2,{}}}", key_field(&forger.public_key()));
        let rebind = owner.sign(Entry::new("a", 2, first.id, 2, "join", body.into_bytes()));
        assert!(matches!(
            check_signature(&rebind, Some(&owner.public_key()), &mut NativeVerifier),
            Err(SignatureError::KeyChanged { .. })
        ));
    }

    #[test]
    fn unsigned_and_unbound_entries_are_refused() {
        let pair = KeyPair::derived(b"t", "a");
        let mut first = join(&pair, "a");
        first.signature.clear();
        assert!(matches!(
            check_signature(&first, None, &mut NativeVerifier),
            Err(SignatureError::BadSignature { .. })
        ));
        let no_key = pair.sign(Entry::new("a", 1, GENESIS_PREV, 1, "join", b"{}".to_vec()));
        assert!(matches!(
            check_signature(&no_key, None, &mut NativeVerifier),
            Err(SignatureError::NoBinding { .. })
        ));
        let not_join = pair.sign(Entry::new("a", 1, GENESIS_PREV, 1, "alive", b"{}".to_vec()));
        assert!(matches!(
            check_signature(&not_join, None, &mut NativeVerifier),
            Err(SignatureError::NoBinding { .. })
        ));
    }

    #[test]
    fn a_signature_over_another_id_does_not_verify() {
        let pair = KeyPair::derived(b"t", "a");
        let first = join(&pair, "a");
        let mut other = Entry::new("a", 1, GENESIS_PREV, 2, "join", first.body.clone());
        other.signature = first.signature.clone();
        assert!(check_signature(&other, None, &mut NativeVerifier).is_err());
    }
}

#[cfg(test)]
mod key_field_tests {
    use super::*;
    use crate::GENESIS_PREV;

    #[test]
    fn key_digits_decode_as_hex_does() {
        let alphabet = b"0123456789abcdefABCDEFgG :\x00\xff";
        let mut next = crate::test_rng(0x2545_f491_4f6c_dd1d);
        let (mut decoded, mut refused) = (0, 0);
        for round in 0..20_000 {
            // Mostly 64 digits, some other lengths; now and then one
            // character outside the hex digits.
            let len = [64, 64, 64, 63, 65, 0, 2][round % 7];
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    let limit = if next(8) == 0 { alphabet.len() } else { 22 };
                    alphabet[next(limit)]
                })
                .collect();
            let expected = hex::decode(&text)
                .ok()
                .and_then(|b| PublicKey::try_from(b.as_slice()).ok());
            let got = key_digits(&text);
            assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(&text));
            if got.is_some() {
                decoded += 1;
            } else {
                refused += 1;
            }
        }
        assert!(decoded > 1000 && refused > 1000, "{decoded} / {refused}");
    }

    /// `declared_key` as it was, through a whole `serde_json::Map`.
    fn through_map(entry: &Entry) -> Result<Option<PublicKey>, String> {
        let body: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&entry.body)
            .map_err(|e| format!("join body is not a JSON object: {e}"))?;
        let Some(value) = body.get(KEY_FIELD) else {
            return Ok(None);
        };
        let text = value
            .as_str()
            .ok_or_else(|| format!("{KEY_FIELD} is not a string"))?;
        let bytes = hex::decode(text).map_err(|e| format!("{KEY_FIELD} is not hex: {e}"))?;
        PublicKey::try_from(bytes.as_slice())
            .map_err(|_| {
                format!(
                    "{KEY_FIELD} must be {PUBLIC_KEY_LEN} bytes, got {}",
                    bytes.len()
                )
            })
            .map(Some)
    }

    #[test]
    fn declared_key_reads_every_body_as_the_whole_map_did() {
        let key = "ab".repeat(32);
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        let nested = format!("{{\"a\":{}1{}}}", "[".repeat(100), "]".repeat(100));
        let bodies = [
            format!("{{\"signing_key\":\"{key}\"}}"),
            format!("{{\"inc\":1,\"meta\":{{\"x\":[1,2,{{}}]}},\"signing_key\":\"{key}\"}}"),
            format!("{{\"signing_key\":\"{key}\",\"signing_key\":\"00\"}}"),
            format!("{{\"signing_key\":\"00\",\"signing_key\":\"{key}\"}}"),
            format!("{{\"signing_key\":\"{}\"}}", key.to_uppercase()),
            format!("{{\"signing_key\":\"{key}\"}} x"),
            format!("{{\"signing_key\":\"{key}\",}}"),
            format!("{{\"signing_\\u006bey\":\"{key}\"}}"),
            format!("{{\"signing_key\":\"{}\"}}", "ab".repeat(33)),
            format!("{{\"signing_key\":\"{}g\"}}", "a".repeat(63)),
            format!("{{\"signing_key\":\"{}\"}}", "a".repeat(63)),
            "{\"signing_key\":1}".into(),
            "{\"signing_key\":null}".into(),
            "{\"inc\":1e400,\"signing_key\":\"00\"}".into(),
            // Plain bodies (`plain::scan` reads them): a key, a bad key,
            // none, an upper-case one, and meta pairs.
            format!("{{\"inc\":1,\"addr\":\"10.0.0.1:1\",\"meta\":[],\"signing_key\":\"{key}\"}}"),
            "{\"inc\":1,\"addr\":\"a\",\"meta\":[],\"signing_key\":\"00\"}".into(),
            "{\"inc\":1,\"addr\":\"a\",\"meta\":[[\"k\",\"v\"]]}".into(),
            format!(
                "{{\"inc\":7,\"addr\":\"a\",\"meta\":[[\"k\",\"v\"],[\"x\",\"\"]],\"signing_key\":\"{}\"}}",
                key.to_uppercase()
            ),
            "{\"inc\":-0,\"x\":18446744073709551616}".into(),
            "{}".into(),
            "null".into(),
            "[]".into(),
            "\"x\"".into(),
            "1".into(),
            "".into(),
            "{\"a\"".into(),
            "{\"a\":\"\\ud800\"}".into(),
            "{1:2}".into(),
            deep,
            nested,
        ];
        for body in bodies {
            let e = Entry::new(
                "a",
                1,
                GENESIS_PREV,
                1,
                BINDING_KIND,
                body.clone().into_bytes(),
            );
            assert_eq!(declared_key(&e), through_map(&e), "body {body:?}");
        }
        let mut bytes = format!("{{\"signing_key\":\"{key}\",\"x\":\"").into_bytes();
        bytes.extend_from_slice(&[0xff, b'"', b'}']);
        let e = Entry::new("a", 1, GENESIS_PREV, 1, BINDING_KIND, bytes);
        assert_eq!(declared_key(&e), through_map(&e));
    }
}
