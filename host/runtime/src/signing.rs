//! The host's `signing` service: a node's Ed25519 key pair, held by the
//! host, which signs the ids of the entries the node's component writes
//! and checks everyone's signatures for it (`wit/control.wit`, interface
//! `signing`; the rule itself is `nodeplane_entry::signing`).
//!
//! The component never sees the private key. Verification is a host
//! service too: natively it is tens of microseconds, where the same code
//! compiled to WebAssembly would be several times that, and every node
//! checks every entry it links.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nodeplane_entry::signing::ed25519::{self, KeyPair};
use nodeplane_entry::signing::PublicKey;
use nodeplane_entry::Hash;
use sha2::{Digest, Sha256};

/// Context of the deterministic keys of [`RecordingServices`](crate::RecordingServices)
/// nodes (simulator, conformance, in-memory tests).
pub const RECORDING_KEY_CONTEXT: &[u8] = b"nodeplane-recording-services";

/// Most verified signatures remembered by a [`VerifyMemo`] before it
/// starts over: 32 bytes each, so at most 64 MiB. A simulated cluster of
/// 1 024 nodes links about 3 000 distinct entries per node-minute of
/// churn, far below it; starting over only costs re-verification.
pub const MAX_VERIFY_MEMO: usize = 2 << 20;

/// What the signers of this process did, for the simulator's speed
/// benchmark (the cost of signatures, measured rather than estimated).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SigningStats {
    /// Entry ids signed.
    pub signed: u64,
    /// Signatures checked (memo hits included).
    pub verified: u64,
    /// Checks answered by a [`VerifyMemo`] without Ed25519.
    pub memo_hits: u64,
    /// Wall-clock nanoseconds spent signing and verifying.
    pub nanos: u64,
}

static SIGNED: AtomicU64 = AtomicU64::new(0);
static VERIFIED: AtomicU64 = AtomicU64::new(0);
static MEMO_HITS: AtomicU64 = AtomicU64::new(0);
static NANOS: AtomicU64 = AtomicU64::new(0);

/// The counters since the process started.
pub fn stats() -> SigningStats {
    SigningStats {
        signed: SIGNED.load(Ordering::Relaxed),
        verified: VERIFIED.load(Ordering::Relaxed),
        memo_hits: MEMO_HITS.load(Ordering::Relaxed),
        nanos: NANOS.load(Ordering::Relaxed),
    }
}

/// Adds the time since `started` to the signing time.
fn clock_in(started: Instant) {
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    NANOS.fetch_add(nanos, Ordering::Relaxed);
}

/// A node's signing key as the host holds it.
#[derive(Debug)]
pub struct NodeSigner {
    pair: KeyPair,
    memo: Option<Arc<VerifyMemo>>,
}

impl NodeSigner {
    /// A signer with the key pair `pair`, verifying every signature itself.
    pub fn new(pair: KeyPair) -> NodeSigner {
        NodeSigner { pair, memo: None }
    }

    /// A signer whose verifications go through `memo`, shared by every
    /// node of one process (the simulator): a signature checked once is
    /// not checked again by the next node.
    pub fn with_memo(pair: KeyPair, memo: Arc<VerifyMemo>) -> NodeSigner {
        NodeSigner {
            pair,
            memo: Some(memo),
        }
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.pair.public_key()
    }

    /// The signature of the entry id `id`.
    pub fn sign(&self, id: &Hash) -> Vec<u8> {
        let started = Instant::now();
        let signature = self.pair.sign_id(id);
        SIGNED.fetch_add(1, Ordering::Relaxed);
        clock_in(started);
        signature
    }

    /// Whether `signature` is `key`'s over the entry id `id`.
    pub fn verify(&self, key: &PublicKey, id: &Hash, signature: &[u8]) -> bool {
        let started = Instant::now();
        let valid = match &self.memo {
            Some(memo) => memo.verify(key, id, signature),
            None => ed25519::verify(key, id, signature),
        };
        VERIFIED.fetch_add(1, Ordering::Relaxed);
        clock_in(started);
        valid
    }
}

/// Remembers (key, id, signature) triples that verified: a pure function's
/// positive answers, so sharing it changes no outcome, only the cost.
#[derive(Debug, Default)]
pub struct VerifyMemo {
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl VerifyMemo {
    /// The process-wide memo of the in-memory drivers.
    pub fn shared() -> Arc<VerifyMemo> {
        static SHARED: std::sync::OnceLock<Arc<VerifyMemo>> = std::sync::OnceLock::new();
        SHARED.get_or_init(Arc::default).clone()
    }

    /// Forgets every remembered signature (a benchmark that measures the
    /// cost of verification starts from an empty memo).
    pub fn clear(&self) {
        if let Ok(mut set) = self.verified.lock() {
            set.clear();
        }
    }

    /// Verifies, remembering a success.
    pub fn verify(&self, key: &PublicKey, id: &Hash, signature: &[u8]) -> bool {
        let mut h = Sha256::new();
        h.update(key);
        h.update(id);
        h.update(signature);
        let digest: [u8; 32] = h.finalize().into();
        let seen = |set: &HashSet<[u8; 32]>| set.contains(&digest);
        if self.verified.lock().map(|set| seen(&set)).unwrap_or(false) {
            MEMO_HITS.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if !ed25519::verify(key, id, signature) {
            return false;
        }
        if let Ok(mut set) = self.verified.lock() {
            if set.len() >= MAX_VERIFY_MEMO {
                set.clear();
            }
            set.insert(digest);
        }
        true
    }
}

/// A [`Verifier`](nodeplane_entry::signing::Verifier) answering through a
/// [`VerifyMemo`]: a check of stored entries (the simulator's end-of-run
/// invariant) then costs no Ed25519 verification for a signature a node
/// already verified, and gives the same answers as
/// [`ed25519::NativeVerifier`] (the memo only remembers triples that
/// verified natively). Not counted in [`stats`]' `verified`.
#[derive(Clone, Debug)]
pub struct MemoVerifier(pub Arc<VerifyMemo>);

impl MemoVerifier {
    /// A verifier over the process-wide memo ([`VerifyMemo::shared`]).
    pub fn shared() -> MemoVerifier {
        MemoVerifier(VerifyMemo::shared())
    }
}

impl nodeplane_entry::signing::Verifier for MemoVerifier {
    fn verify(&mut self, key: &PublicKey, id: &Hash, signature: &[u8]) -> bool {
        self.0.verify(key, id, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memo_changes_no_answer() {
        let pair = KeyPair::derived(b"memo-test", "a");
        let id = [7u8; 32];
        let good = pair.sign_id(&id);
        let mut bad = good.clone();
        bad[0] ^= 1;
        let memo = VerifyMemo::default();
        let key = pair.public_key();
        for _ in 0..2 {
            assert!(memo.verify(&key, &id, &good));
            assert!(
                !memo.verify(&key, &id, &bad),
                "a failure is never remembered as a success"
            );
        }
        memo.clear();
        assert!(memo.verify(&key, &id, &good));
    }

    /// Not a timed test: prints what one native Ed25519 verification costs
    /// here (`cargo test -p nodeplane-runtime --lib signing -- --ignored --nocapture`).
    #[test]
    #[ignore = "a measurement"]
    fn measure_one_verification() {
        let pair = KeyPair::derived(b"measure", "a");
        let ids: Vec<[u8; 32]> = (0..2_000u32)
            .map(|i| {
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&i.to_be_bytes());
                id
            })
            .collect();
        let sigs: Vec<Vec<u8>> = ids.iter().map(|id| pair.sign_id(id)).collect();
        let key = pair.public_key();
        let started = Instant::now();
        for (id, sig) in ids.iter().zip(&sigs) {
            assert!(ed25519::verify(&key, id, sig));
        }
        let per = started.elapsed().as_secs_f64() * 1e6 / ids.len() as f64;
        let started = Instant::now();
        for id in &ids {
            let _ = pair.sign_id(id);
        }
        let sign = started.elapsed().as_secs_f64() * 1e6 / ids.len() as f64;
        println!("ed25519: verify {per:.1} µs, sign {sign:.1} µs per entry id");
    }
}
