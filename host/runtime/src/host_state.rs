//! The store data of one instance: implements the host imports by
//! recording effects.

use nodeplane_entry::Entry;
use wasmtime::{ResourceLimiter, StoreLimits};

use std::sync::Arc;

use crate::bindings::nodeplane::control::{
    clock, events, ledger_store, lifecycle, network, random, signing, timers, types,
};
use crate::convert;
use crate::services::{EntryReader, MAX_GET_ENTRIES};
use crate::signing::NodeSigner;
use nodeplane_types::{Effect, MAX_MESSAGE_BYTES};

/// Per-instance host state.
pub struct HostState {
    /// Time seen by the guest during the current call.
    pub now_ms: u64,
    /// SplitMix64 state, seeded by the host.
    pub rng: u64,
    /// Effects recorded during the current call.
    pub effects: Vec<Effect>,
    /// Entries returned by `ledger-store.load`.
    pub stored: Vec<Entry>,
    /// Memory limits, and the instance's linear memory size.
    pub limits: TrackedLimits,
    /// What `lifecycle.started-as` answers.
    pub start: StartMode,
    /// The node's signing key (`signing` imports).
    pub signer: Arc<NodeSigner>,
    /// The node's store, read by `ledger-store.get` (none: only entries
    /// appended earlier in the call are answered).
    pub reader: Option<Arc<dyn EntryReader>>,
}

/// How the host starts an instance: what `lifecycle.started-as` answers
/// (`wit/control.wit`, `docs/interface.md` [host-5]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartMode {
    /// A new node process, or its first start: the node announces itself
    /// at a new incarnation when it joins.
    #[default]
    Fresh,
    /// The same process rebuilding the component after a crash or a hot
    /// swap: the node continues at the incarnation it already announced.
    Resume,
}

/// The store's [`StoreLimits`], plus what they let the instance grow to:
/// the bytes of linear memory (every memory of the instance) and of
/// tables, as the figures of `nodeplane bench --only speed` report them.
pub struct TrackedLimits {
    limits: StoreLimits,
    memory_bytes: usize,
}

impl TrackedLimits {
    /// Tracks growth allowed by `limits`.
    pub fn new(limits: StoreLimits) -> TrackedLimits {
        TrackedLimits {
            limits,
            memory_bytes: 0,
        }
    }

    /// Bytes of linear memory the instance holds (all its memories).
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }
}

impl ResourceLimiter for TrackedLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes = self
                .memory_bytes
                .saturating_add(desired.saturating_sub(current));
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl HostState {
    fn reject(&mut self, kind: &str, reason: String) {
        tracing::warn!(%reason, "{kind}");
        self.effects.push(Effect::Log {
            kind: kind.to_string(),
            detail: serde_json::json!({ "reason": reason }).to_string(),
        });
    }
}

impl types::Host for HostState {}

impl clock::Host for HostState {
    fn now_ms(&mut self) -> u64 {
        self.now_ms
    }
}

impl random::Host for HostState {
    fn next_u64(&mut self) -> u64 {
        // SplitMix64: small, fast and fully determined by the seed.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl network::Host for HostState {
    fn send(&mut self, to: String, payload: Vec<u8>) {
        if payload.len() > MAX_MESSAGE_BYTES {
            let reason = format!(
                "message to {to} of {} bytes exceeds {MAX_MESSAGE_BYTES}",
                payload.len()
            );
            return self.reject("send-rejected", reason);
        }
        if to.parse::<std::net::SocketAddr>().is_err() {
            return self.reject(
                "send-rejected",
                format!("destination {to:?} is not ip:port"),
            );
        }
        self.effects.push(Effect::Send { to, payload });
    }
}

impl timers::Host for HostState {
    fn set_timer(&mut self, timer: u64, after_ms: u64) {
        self.effects.push(Effect::SetTimer { timer, after_ms });
    }

    fn cancel_timer(&mut self, timer: u64) {
        self.effects.push(Effect::CancelTimer { timer });
    }
}

impl ledger_store::Host for HostState {
    fn load(&mut self) -> Vec<types::LedgerEntry> {
        self.stored.iter().map(convert::entry_to_wit).collect()
    }

    fn append(&mut self, entry: types::LedgerEntry) {
        match convert::entry_from_wit(entry) {
            Ok(entry) => self.effects.push(Effect::Append(entry)),
            Err(reason) => self.reject("append-rejected", reason),
        }
    }

    /// The store's entries of `author` from `from_seq`, then those this
    /// call appended (recorded as effects, stored after the call), the
    /// first at each seq, stopping at the first gap; at most `limit` and
    /// [`MAX_GET_ENTRIES`].
    fn get(&mut self, author: String, from_seq: u64, limit: u32) -> Vec<types::LedgerEntry> {
        let limit = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .min(MAX_GET_ENTRIES);
        let mut out: Vec<Entry> = Vec::new();
        let mut seq = from_seq;
        while out.len() < limit && seq >= 1 {
            let stored = match &self.reader {
                Some(reader) => reader.chain(&author, seq, limit.saturating_sub(out.len())),
                None => Vec::new(),
            };
            if let Some(last) = stored.last() {
                seq = last.seq.saturating_add(1);
                out.extend(stored);
                continue;
            }
            // Not stored (yet): appended earlier in this call?
            let appended = self.effects.iter().find_map(|e| match e {
                Effect::Append(a) if a.author == author && a.seq == seq => Some(a),
                _ => None,
            });
            let Some(appended) = appended else {
                break;
            };
            out.push(appended.clone());
            let Some(next) = seq.checked_add(1) else {
                break;
            };
            seq = next;
        }
        out.into_iter().map(convert::entry_into_wit).collect()
    }
}

impl signing::Host for HostState {
    fn public_key(&mut self) -> Vec<u8> {
        self.signer.public_key().to_vec()
    }

    fn sign_entry(&mut self, id: Vec<u8>) -> Vec<u8> {
        match nodeplane_entry::hash_from_slice(&id) {
            Some(id) => self.signer.sign(&id),
            None => Vec::new(),
        }
    }

    fn verify_entry(&mut self, key: Vec<u8>, id: Vec<u8>, signature: Vec<u8>) -> bool {
        // Refused before any work: the memo would otherwise hash whatever
        // length a component hands over, outside its fuel.
        if signature.len() != nodeplane_entry::signing::SIGNATURE_LEN {
            return false;
        }
        let (Ok(key), Some(id)) = (
            <[u8; 32]>::try_from(key.as_slice()),
            nodeplane_entry::hash_from_slice(&id),
        ) else {
            return false;
        };
        self.signer.verify(&key, &id, &signature)
    }
}

impl lifecycle::Host for HostState {
    fn started_as(&mut self) -> lifecycle::StartMode {
        match self.start {
            StartMode::Fresh => lifecycle::StartMode::Fresh,
            StartMode::Resume => lifecycle::StartMode::Resume,
        }
    }
}

impl events::Host for HostState {
    fn deliver_update(&mut self, to: u64, update: types::MembershipUpdate) {
        self.effects.push(Effect::Update {
            subscriber: to,
            update: convert::update_from_wit(update),
        });
    }

    fn log_event(&mut self, kind: String, detail: String) {
        self.effects.push(Effect::Log { kind, detail });
    }
}
