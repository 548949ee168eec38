//! The store data of one instance: implements the host imports by
//! recording effects.

use nodeplane_entry::Entry;
use wasmtime::{ResourceLimiter, StoreLimits};

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
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
    /// Where this call's `Append` effects are, by (author, seq), so that
    /// `ledger-store.get` finds them without scanning every effect.
    pub(crate) appended: AppendIndex,
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

/// The position in a call's effects of the first `Append` of each
/// (author, seq), keyed by a 64-bit hash of the pair. A lookup checks the
/// effect it finds; on a hash collision (two pairs, one key) it falls back
/// to scanning, so answers never depend on the hash.
#[derive(Default)]
pub(crate) struct AppendIndex(HashMap<u64, usize>);

impl AppendIndex {
    fn key(author: &str, seq: u64) -> u64 {
        let mut h = DefaultHasher::new();
        author.hash(&mut h);
        seq.hash(&mut h);
        h.finish()
    }

    /// Notes that `effects[at]` appends `(author, seq)`; an earlier append
    /// of the same key keeps its place (the first at each seq is answered).
    fn note(&mut self, author: &str, seq: u64, at: usize) {
        self.0.entry(Self::key(author, seq)).or_insert(at);
    }

    /// Forgets every position, and the table's memory with them: most
    /// calls append nothing, and a table kept at the size of the largest
    /// call would be cleared (every control byte written) on each call
    /// and held by every instance.
    fn forget(&mut self) {
        if !self.0.is_empty() {
            self.0 = HashMap::new();
        }
    }

    /// The first entry of `effects` appending `(author, seq)`.
    fn find<'a>(&self, effects: &'a [Effect], author: &str, seq: u64) -> Option<&'a Entry> {
        let appends = |e: &'a Effect| match e {
            Effect::Append(a) if a.author == author && a.seq == seq => Some(a),
            _ => None,
        };
        let at = self.0.get(&Self::key(author, seq))?;
        effects
            .get(*at)
            .and_then(appends)
            .or_else(|| effects.iter().find_map(appends))
    }
}

impl HostState {
    /// Starts a call at `now_ms`, with no effects recorded.
    pub fn begin_call(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.effects.clear();
        self.appended.forget();
    }

    /// The effects the call recorded, in order, leaving none.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        self.appended.forget();
        std::mem::take(&mut self.effects)
    }
}

impl ledger_store::Host for HostState {
    fn load(&mut self) -> Vec<types::LedgerEntry> {
        self.stored.iter().map(convert::entry_to_wit).collect()
    }

    fn append(&mut self, entry: types::LedgerEntry) {
        match convert::entry_from_wit(entry) {
            Ok(entry) => {
                self.appended
                    .note(&entry.author, entry.seq, self.effects.len());
                self.effects.push(Effect::Append(entry));
            }
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
            let appended = self.appended.find(&self.effects, &author, seq);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn append(author: &str, seq: u64, clock: u64) -> Effect {
        Effect::Append(Entry::new(author, seq, [0; 32], clock, "join", Vec::new()))
    }

    fn indexed(effects: &[Effect]) -> AppendIndex {
        let mut index = AppendIndex::default();
        for (at, e) in effects.iter().enumerate() {
            if let Effect::Append(a) = e {
                index.note(&a.author, a.seq, at);
            }
        }
        index
    }

    #[test]
    fn finds_the_first_append_of_each_author_and_seq() {
        let effects = vec![
            append("a", 1, 10),
            Effect::Log {
                kind: "k".into(),
                detail: String::new(),
            },
            append("b", 1, 20),
            append("a", 2, 30),
            append("a", 1, 40),
        ];
        let index = indexed(&effects);
        let clock = |author, seq| index.find(&effects, author, seq).map(|e| e.clock);
        assert_eq!(clock("a", 1), Some(10), "the first append at a seq");
        assert_eq!(clock("a", 2), Some(30));
        assert_eq!(clock("b", 1), Some(20));
        assert_eq!(clock("b", 2), None);
        assert_eq!(clock("c", 1), None);
    }

    #[test]
    fn a_key_pointing_elsewhere_falls_back_to_the_scan() {
        // A collision: ("b", 1)'s key holds the position of ("a", 1).
        let effects = vec![append("a", 1, 10), append("b", 1, 20)];
        let mut index = AppendIndex::default();
        index.0.insert(AppendIndex::key("b", 1), 0);
        assert_eq!(index.find(&effects, "b", 1).map(|e| e.clock), Some(20));
        // A position past the effects is no answer by itself either.
        index.0.insert(AppendIndex::key("a", 1), 7);
        assert_eq!(index.find(&effects, "a", 1).map(|e| e.clock), Some(10));
    }
}
