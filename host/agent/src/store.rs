//! The durable ledger store: every entry this node holds, in append order,
//! in a redb database (`data_dir/ledger.redb`), verified on load and on
//! append, plus the frontier digest the introspection API serves.
//!
//! Invariants the store keeps (and re-checks on load): every entry verifies
//! on its own (id and bounds); per author, sequence numbers are contiguous
//! from 1 and each entry's `prev` is the id of an entry at the previous
//! sequence number held earlier in append order. Two different entries at
//! one (author, seq) are an equivocation: both are kept as evidence and
//! reported, up to [`MAX_EQUIVOCATIONS_PER_AUTHOR`] conflicting entries per
//! author (more are dropped and counted, so a forger cannot grow the store
//! without bound by inventing conflicting entries).
//!
//! Faults are fail-stop: every backend error names the file; an append
//! whose commit failed leaves the in-memory index unchanged (the entry is
//! not held, so the node must not publish it), and
//! [`RedbLedger::reopen`] closes and reopens the database (redb refuses
//! every write after a failed commit until then) and re-verifies it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use nodeplane_entry::signing::ed25519::NativeVerifier;
use nodeplane_entry::signing::{binding_key, check_signature, PublicKey};
use nodeplane_entry::{frontier_digest, Entry, Hash, GENESIS_PREV};
use nodeplane_runtime::{EntryReader, LedgerStore, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;

/// File name of the store inside the data directory.
pub const LEDGER_FILE: &str = "ledger.redb";

/// Most conflicting entries (beyond each slot's first) kept as evidence per
/// author: the bound the node plane's ledger applies too (defined once in
/// `nodeplane-types`). Further conflicts are dropped, logged and counted
/// ([`RedbLedger::equivocations_dropped`]).
pub use nodeplane_interface::MAX_EQUIVOCATIONS_PER_AUTHOR;

/// Append position → entry as JSON.
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");

/// Why the store could not be opened or its contents are unacceptable.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database file could not be opened or read.
    #[error("ledger store {path}: {reason}")]
    Backend {
        /// The file.
        path: String,
        /// What redb said.
        reason: String,
    },
    /// A stored entry failed verification; names the first bad entry.
    #[error("ledger store {path}: entry #{position} ({what}): {problem}")]
    Corrupt {
        /// The file.
        path: String,
        /// Append position of the first bad entry (0-based).
        position: u64,
        /// `author#seq id…` where decodable.
        what: String,
        /// What is wrong.
        problem: String,
    },
}

/// Two different entries one author wrote at one sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Equivocation {
    /// The author.
    pub author: String,
    /// The sequence number written more than once.
    pub seq: u64,
    /// Ids (hex) of the entries at that slot.
    pub ids: Vec<String>,
}

/// One author's head in the frontier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuthorHead {
    /// The author.
    pub author: String,
    /// Highest sequence number held.
    pub seq: u64,
    /// Hex id of the entry at that sequence (the first stored, the chain's
    /// own, if evidence of an equivocation is held there too).
    pub head: String,
}

/// The frontier of the store and its digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Frontier {
    /// Hex [`nodeplane_entry::frontier_digest`]: SHA-256 over
    /// `nodeplane-frontier/1` then, per author in byte order, u32-BE author
    /// length, author, u64-BE head seq, 32-byte head id.
    pub digest: String,
    /// Number of entries held.
    pub entries: usize,
    /// Per-author heads, sorted by author.
    pub authors: Vec<AuthorHead>,
}

/// In-memory index of what the store holds.
#[derive(Default)]
struct Index {
    entries: Vec<Entry>,
    /// id → append position in `entries`: with `slots`, the lookup by
    /// (author, seq) that answers `ledger-store.get` (rebuilt on every
    /// open, like the rest of the index).
    ids: HashMap<Hash, usize>,
    /// (author, seq) → ids held at that slot.
    slots: HashMap<(String, u64), Vec<Hash>>,
    /// author → head seq.
    heads: BTreeMap<String, u64>,
    equivocations: Vec<(String, u64)>,
    /// author → conflicting entries held (entries beyond a slot's first).
    evidence: HashMap<String, usize>,
    /// author → the signing key its first stored entry at seq 1 bound.
    bound: HashMap<String, PublicKey>,
}

impl Index {
    /// Checks that `entry` may follow what is held; `Ok(true)` when it is
    /// new, `Ok(false)` when already held.
    fn check(&self, entry: &Entry) -> Result<bool, String> {
        entry.verify().map_err(|e| e.to_string())?;
        if self.ids.contains_key(&entry.id) {
            return Ok(false);
        }
        let held = self
            .slots
            .get(&(entry.author.clone(), entry.seq.saturating_sub(1)))
            .map_or(&[][..], Vec::as_slice);
        let head = self.heads.get(&entry.author).copied().unwrap_or(0);
        nodeplane_entry::check_link(entry, held, head).map_err(|e| e.to_string())?;
        // Who may write: a first entry binds its own key (a conflicting one
        // only needs its own, as evidence); any other is the bound key's.
        let bound = if entry.seq <= 1 {
            None
        } else {
            Some(self.bound.get(&entry.author).ok_or_else(|| {
                format!(
                    "entry {}#{}: its author's first entry is not held",
                    entry.author, entry.seq
                )
            })?)
        };
        check_signature(entry, bound, &mut NativeVerifier).map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// Whether a new, checked `entry` would be a conflicting entry beyond
    /// its author's evidence cap.
    fn over_evidence_cap(&self, entry: &Entry) -> bool {
        self.slots.contains_key(&(entry.author.clone(), entry.seq))
            && self.evidence.get(&entry.author).copied().unwrap_or(0)
                >= MAX_EQUIVOCATIONS_PER_AUTHOR
    }

    /// Adds a checked entry; returns true when it equivocates.
    fn add(&mut self, entry: Entry) -> bool {
        if entry.seq == 1 && !self.bound.contains_key(&entry.author) {
            if let Ok(key) = binding_key(&entry) {
                self.bound.insert(entry.author.clone(), key);
            }
        }
        let slot = self
            .slots
            .entry((entry.author.clone(), entry.seq))
            .or_default();
        slot.push(entry.id);
        let equivocates = slot.len() > 1;
        if equivocates {
            *self.evidence.entry(entry.author.clone()).or_insert(0) += 1;
        }
        if equivocates
            && !self
                .equivocations
                .contains(&(entry.author.clone(), entry.seq))
        {
            self.equivocations.push((entry.author.clone(), entry.seq));
        }
        let head = self.heads.entry(entry.author.clone()).or_insert(0);
        *head = (*head).max(entry.seq);
        self.ids.insert(entry.id, self.entries.len());
        self.entries.push(entry);
        equivocates
    }

    /// The entry first stored at (author, seq).
    fn first_at(&self, author: &str, seq: u64) -> Option<&Entry> {
        let id = self.slots.get(&(author.to_string(), seq))?.first()?;
        self.entries.get(*self.ids.get(id)?)
    }

    fn head_id(&self, author: &str, seq: u64) -> Hash {
        self.slots
            .get(&(author.to_string(), seq))
            .and_then(|ids| ids.first().copied())
            .unwrap_or(GENESIS_PREV)
    }
}

fn short(h: &Hash) -> String {
    hex::encode(&h[..8])
}

/// What an offline verification found.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: usize,
    /// Authors held.
    pub authors: usize,
    /// Equivocations found (kept as evidence, not an error).
    pub equivocations: Vec<Equivocation>,
    /// The frontier.
    pub frontier: Frontier,
}

/// The redb-backed ledger store. Clones share one database and index, so
/// the API reads what the node writes.
#[derive(Clone)]
pub struct RedbLedger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedbLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbLedger")
            .field("path", &self.inner.path)
            .finish()
    }
}

struct Inner {
    path: PathBuf,
    /// The open database; `None` after a reopen failed to open it again
    /// (every append then fails, naming the file, until a reopen succeeds).
    db: Mutex<Option<Database>>,
    index: RwLock<Index>,
    /// Conflicting entries not kept ([`RedbLedger::equivocations_dropped`]).
    equivocations_dropped: AtomicU64,
    /// Successful [`RedbLedger::reopen`]s.
    reopens: AtomicU64,
}

impl RedbLedger {
    /// Opens (creating if needed) `data_dir/ledger.redb` and verifies every
    /// stored entry and chain link. A corrupt store is an error naming the
    /// first bad entry.
    pub fn open(data_dir: &Path) -> Result<RedbLedger, LedgerError> {
        let path = data_dir.join(LEDGER_FILE);
        let (db, index) = open_and_load(&path)?;
        for (author, seq) in &index.equivocations {
            tracing::warn!(%author, seq, "ledger holds an equivocation: two different entries at one sequence number (kept as evidence)");
        }
        Ok(RedbLedger {
            inner: Arc::new(Inner {
                path,
                db: Mutex::new(Some(db)),
                index: RwLock::new(index),
                equivocations_dropped: AtomicU64::new(0),
                reopens: AtomicU64::new(0),
            }),
        })
    }

    /// Closes the database and opens it again, re-verifying every entry
    /// (redb refuses every write after a failed commit until the database
    /// is reopened). The in-memory index is replaced by what the file
    /// holds, so an entry whose commit failed is not held afterwards. On
    /// error the store stays closed and every append fails naming the
    /// file, until a later reopen succeeds. Clones share the reopened
    /// database.
    pub fn reopen(&self) -> Result<(), LedgerError> {
        let mut db = self.inner.db.lock().unwrap_or_else(|p| p.into_inner());
        // redb holds a lock on the file: the old handle must be gone
        // before the file is opened again.
        drop(db.take());
        let (fresh, index) = open_and_load(&self.inner.path)?;
        *db = Some(fresh);
        *self.inner.index.write().unwrap_or_else(|p| p.into_inner()) = index;
        self.inner.reopens.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(path = %self.inner.path.display(), "ledger store reopened and re-verified");
        Ok(())
    }

    /// Conflicting entries (a second entry at an occupied author and
    /// sequence) not kept: over [`MAX_EQUIVOCATIONS_PER_AUTHOR`] for their
    /// author, or not linking to the chain.
    pub fn equivocations_dropped(&self) -> u64 {
        self.inner.equivocations_dropped.load(Ordering::Relaxed)
    }

    /// Successful [`RedbLedger::reopen`]s since the store was opened.
    pub fn reopens(&self) -> u64 {
        self.inner.reopens.load(Ordering::Relaxed)
    }

    /// Verifies a stopped node's store without changing it.
    pub fn verify_offline(data_dir: &Path) -> Result<VerifyReport, LedgerError> {
        let path = data_dir.join(LEDGER_FILE);
        if !path.is_file() {
            return Err(LedgerError::Backend {
                path: path.display().to_string(),
                reason: "no such file".into(),
            });
        }
        let ledger = RedbLedger::open(data_dir)?;
        let frontier = ledger.frontier();
        Ok(VerifyReport {
            entries: frontier.entries,
            authors: frontier.authors.len(),
            equivocations: ledger.equivocations(),
            frontier,
        })
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.inner.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The frontier and its digest.
    pub fn frontier(&self) -> Frontier {
        let index = self.index();
        let heads: Vec<(&str, u64, Hash)> = index
            .heads
            .iter()
            .map(|(author, seq)| (author.as_str(), *seq, index.head_id(author, *seq)))
            .collect();
        let digest = frontier_digest(heads.iter().map(|(a, seq, id)| (*a, *seq, id)));
        Frontier {
            digest: hex::encode(digest),
            entries: index.entries.len(),
            authors: heads
                .iter()
                .map(|(author, seq, id)| AuthorHead {
                    author: author.to_string(),
                    seq: *seq,
                    head: hex::encode(id),
                })
                .collect(),
        }
    }

    /// Number of entries held.
    pub fn len_entries(&self) -> usize {
        self.index().entries.len()
    }

    /// Equivocations held.
    pub fn equivocations(&self) -> Vec<Equivocation> {
        let index = self.index();
        index
            .equivocations
            .iter()
            .map(|(author, seq)| Equivocation {
                author: author.clone(),
                seq: *seq,
                ids: index
                    .slots
                    .get(&(author.clone(), *seq))
                    .map(|ids| ids.iter().map(hex::encode).collect())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// A page of entries: with `author`, that author's entries with
    /// `seq >= from` in sequence order; without, entries from append
    /// position `from`. At most `limit` entries.
    pub fn page(&self, author: Option<&str>, from: u64, limit: usize) -> Vec<Entry> {
        let index = self.index();
        match author {
            Some(a) => {
                let mut out: Vec<Entry> = index
                    .entries
                    .iter()
                    .filter(|e| e.author == a && e.seq >= from)
                    .cloned()
                    .collect();
                out.sort_by_key(|e| (e.seq, e.id));
                out.truncate(limit);
                out
            }
            None => index
                .entries
                .iter()
                .skip(from as usize)
                .take(limit)
                .cloned()
                .collect(),
        }
    }

    /// Writes raw bytes at the next append position, bypassing every check.
    /// Only for tests that need a corrupt store.
    #[doc(hidden)]
    pub fn write_raw_for_tests(data_dir: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
        let path = data_dir.join(LEDGER_FILE);
        let backend = backend_error(&path);
        let db = Database::create(&path).map_err(|e| backend(&e))?;
        let txn = db.begin_write().map_err(|e| backend(&e))?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(|e| backend(&e))?;
            let next = table
                .last()
                .map_err(|e| backend(&e))?
                .map_or(0, |(k, _)| k.value() + 1);
            table.insert(next, bytes).map_err(|e| backend(&e))?;
        }
        txn.commit().map_err(|e| backend(&e))
    }
}

/// Makes the [`LedgerError::Backend`] error for a failure of the store
/// at `path`.
fn backend_error(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> LedgerError + '_ {
    move |e| LedgerError::Backend {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// What a panic inside the storage engine said.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Runs `f`, which calls into redb, turning a panic into an error: redb
/// panics on some damaged files (e.g. "Malformed allocator state") where
/// it should return an error, and a damaged file must be an error naming
/// it, not a crash.
fn contain_panic<T>(f: impl FnOnce() -> T, error: impl FnOnce(String) -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => error(format!(
            "the storage engine panicked on this file (damaged?): {}",
            panic_message(payload.as_ref())
        )),
    }
}

/// Opens (creating if needed) the database at `path`, makes sure its table
/// exists and loads and verifies every entry; a panic of the storage
/// engine is an error naming the file.
fn open_and_load(path: &Path) -> Result<(Database, Index), LedgerError> {
    contain_panic(
        || open_and_load_unguarded(path),
        |reason| {
            Err(LedgerError::Backend {
                path: path.display().to_string(),
                reason,
            })
        },
    )
}

fn open_and_load_unguarded(path: &Path) -> Result<(Database, Index), LedgerError> {
    let backend = backend_error(path);
    let db = Database::create(path).map_err(|e| backend(&e))?;
    let txn = db.begin_write().map_err(|e| backend(&e))?;
    txn.open_table(ENTRIES).map_err(|e| backend(&e))?;
    txn.commit().map_err(|e| backend(&e))?;
    let index = load_index(&db, path)?;
    Ok((db, index))
}

fn load_index(db: &Database, path: &Path) -> Result<Index, LedgerError> {
    let backend = backend_error(path);
    let txn = db.begin_read().map_err(|e| backend(&e))?;
    let table = txn.open_table(ENTRIES).map_err(|e| backend(&e))?;
    let mut index = Index::default();
    let corrupt = |position: u64, what: String, problem: String| LedgerError::Corrupt {
        path: path.display().to_string(),
        position,
        what,
        problem,
    };
    for (expected, item) in table.iter().map_err(|e| backend(&e))?.enumerate() {
        let (key, value) = item.map_err(|e| backend(&e))?;
        let position = key.value();
        if position != expected as u64 {
            return Err(corrupt(
                expected as u64,
                "missing".into(),
                format!("append positions jump to {position}"),
            ));
        }
        let entry: Entry = serde_json::from_slice(value.value()).map_err(|e| {
            corrupt(
                position,
                "undecodable".into(),
                format!("not a ledger entry: {e}"),
            )
        })?;
        let what = format!("{}#{} {}", entry.author, entry.seq, short(&entry.id));
        match index.check(&entry) {
            Ok(true) => {
                index.add(entry);
            }
            Ok(false) => return Err(corrupt(position, what, "stored twice".into())),
            Err(problem) => return Err(corrupt(position, what, problem)),
        }
    }
    Ok(index)
}

impl LedgerStore for RedbLedger {
    fn load(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self.index().entries.clone())
    }

    /// Verifies and durably stores `entry` (redb's default durability:
    /// the commit is on disk when this returns `Ok`). A conflicting entry
    /// over its author's evidence cap is dropped, logged and counted, and
    /// answers `Ok` (the chain itself is unaffected). A backend failure
    /// names the file and leaves the index unchanged: the entry is not
    /// held, and [`RedbLedger::reopen`] is the way back.
    fn append(&mut self, entry: &Entry) -> Result<(), StoreError> {
        let db = self.inner.db.lock().unwrap_or_else(|p| p.into_inner());
        let mut index = self.inner.index.write().unwrap_or_else(|p| p.into_inner());
        let occupied = index.slots.contains_key(&(entry.author.clone(), entry.seq));
        match index.check(entry) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            // A conflicting entry that does not even link is no evidence
            // worth keeping; refusing it must not look like a store
            // failure (which stops the node).
            Err(problem) if occupied => {
                self.inner
                    .equivocations_dropped
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(author = %entry.author, seq = entry.seq, id = %entry.id_hex(), %problem, "conflicting entry dropped: it does not link to the chain");
                return Ok(());
            }
            Err(problem) => return Err(StoreError::Invalid(problem)),
        }
        if index.over_evidence_cap(entry) {
            self.inner
                .equivocations_dropped
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(author = %entry.author, seq = entry.seq, id = %entry.id_hex(), cap = MAX_EQUIVOCATIONS_PER_AUTHOR, "conflicting entry dropped: its author already has the most equivocation evidence kept");
            return Ok(());
        }
        let path = self.inner.path.display();
        let backend = |e: &dyn std::fmt::Display| StoreError::Backend(format!("{path}: {e}"));
        let Some(db) = db.as_ref() else {
            return Err(backend(
                &"the store is closed after a failed reopen; reopen it again",
            ));
        };
        let position = index.entries.len() as u64;
        let bytes = serde_json::to_vec(entry).map_err(|e| backend(&e))?;
        contain_panic(
            || {
                let txn = db.begin_write().map_err(|e| backend(&e))?;
                {
                    let mut table = txn.open_table(ENTRIES).map_err(|e| backend(&e))?;
                    table
                        .insert(position, bytes.as_slice())
                        .map_err(|e| backend(&e))?;
                }
                txn.commit().map_err(|e| backend(&e))
            },
            |reason| Err(backend(&reason)),
        )?;
        if index.add(entry.clone()) {
            tracing::warn!(author = %entry.author, seq = entry.seq, id = %entry.id_hex(), "equivocation: a second entry at one (author, seq); both kept as evidence");
        }
        Ok(())
    }

    /// [`RedbLedger::reopen`]: closes, reopens and re-verifies the file.
    fn reopen(&mut self) -> Result<(), StoreError> {
        RedbLedger::reopen(self).map_err(|e| StoreError::Backend(e.to_string()))
    }

    fn len(&self) -> usize {
        self.index().entries.len()
    }

    /// Clones share the database and its index: the reader sees every
    /// append (and a reopen).
    fn reader(&self) -> Option<Arc<dyn EntryReader>> {
        Some(Arc::new(self.clone()))
    }
}

impl EntryReader for RedbLedger {
    /// From the in-memory index of the store (rebuilt from the file on
    /// every open): the first stored entry at each seq.
    fn chain(&self, author: &str, from_seq: u64, limit: usize) -> Vec<Entry> {
        let index = self.index();
        let mut out = Vec::new();
        let mut seq = from_seq;
        while out.len() < limit {
            let Some(e) = index.first_at(author, seq) else {
                break;
            };
            out.push(e.clone());
            let Some(next) = seq.checked_add(1) else {
                break;
            };
            seq = next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    use nodeplane_entry::signing::ed25519::{key_field, KeyPair};

    fn keys(author: &str) -> KeyPair {
        KeyPair::derived(b"store-tests", author)
    }

    /// `author`'s chain: a `join` declaring its key, then `alive` entries,
    /// all signed by it.
    fn chain(author: &str, n: u64) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map_or(GENESIS_PREV, |e| e.id);
            let e = if seq == 1 {
                let body = format!("{{{}}}", key_field(&keys(author).public_key()));
                Entry::new(author, 1, prev, 1, "join", body.into_bytes())
            } else {
                Entry::new(author, seq, prev, seq, "alive", vec![seq as u8])
            };
            out.push(keys(author).sign(e));
        }
        out
    }

    /// An entry signed by `author`'s key.
    fn signed(e: Entry) -> Entry {
        keys(&e.author.clone()).sign(e)
    }

    #[test]
    fn appends_survive_reopen_in_order() {
        let dir = TempDir::new("store-reopen");
        let mut store = RedbLedger::open(dir.path()).unwrap();
        let a = chain("a", 3);
        let b = chain("b", 2);
        for e in [&a[0], &b[0], &a[1], &b[1], &a[2], &a[2]] {
            store.append(e).unwrap();
        }
        assert_eq!(store.len(), 5, "duplicate append is a no-op");
        let digest = store.frontier().digest;
        drop(store);
        let store = RedbLedger::open(dir.path()).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(
            loaded,
            vec![
                a[0].clone(),
                b[0].clone(),
                a[1].clone(),
                b[1].clone(),
                a[2].clone()
            ]
        );
        assert_eq!(store.frontier().digest, digest);
        assert_eq!(store.frontier().authors[0].seq, 3);
    }

    #[test]
    fn digest_ignores_arrival_order() {
        let d1 = TempDir::new("store-d1");
        let d2 = TempDir::new("store-d2");
        let mut s1 = RedbLedger::open(d1.path()).unwrap();
        let mut s2 = RedbLedger::open(d2.path()).unwrap();
        let a = chain("a", 2);
        let b = chain("b", 2);
        for e in [&a[0], &a[1], &b[0], &b[1]] {
            s1.append(e).unwrap();
        }
        for e in [&b[0], &a[0], &b[1], &a[1]] {
            s2.append(e).unwrap();
        }
        assert_eq!(s1.frontier(), s2.frontier());
        s2.append(&chain("c", 1)[0]).unwrap();
        assert_ne!(s1.frontier().digest, s2.frontier().digest);
    }

    #[test]
    fn broken_entries_and_links_are_rejected_and_nothing_is_lost() {
        let dir = TempDir::new("store-reject");
        let mut store = RedbLedger::open(dir.path()).unwrap();
        let a = chain("a", 3);
        store.append(&a[0]).unwrap();
        // Gap: seq 3 before seq 2.
        let err = store.append(&a[2]).unwrap_err().to_string();
        assert!(
            err.contains("a#3") && err.contains("does not link"),
            "{err}"
        );
        // Broken hash.
        let mut bad = a[1].clone();
        bad.body.push(9);
        let err = store.append(&bad).unwrap_err().to_string();
        assert!(err.contains("id does not match"), "{err}");
        // Wrong prev.
        let forged = signed(Entry::new("a", 2, [7; 32], 2, "alive", vec![]));
        assert!(store.append(&forged).is_err());
        assert_eq!(store.len(), 1);
        store.append(&a[1]).unwrap();
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn the_reader_answers_a_chain_by_author_and_seq_first_stored_first() {
        let dir = TempDir::new("store-get");
        let mut store = RedbLedger::open(dir.path()).unwrap();
        let a = chain("a", 3);
        let b = chain("b", 1);
        let other = signed(Entry::new("a", 2, a[0].id, 9, "left", vec![]));
        for e in [&a[0], &b[0], &a[1], &other, &a[2]] {
            store.append(e).unwrap();
        }
        let reader = store.reader().expect("a reader");
        assert_eq!(reader.chain("a", 1, 10), a);
        assert_eq!(reader.chain("a", 2, 1), vec![a[1].clone()]);
        assert_eq!(reader.chain("b", 1, 10), b);
        assert!(reader.chain("a", 4, 10).is_empty());
        assert!(reader.chain("a", 0, 10).is_empty());
        assert!(reader.chain("z", 1, 10).is_empty());
        assert!(reader.chain("a", u64::MAX, 10).is_empty());
        // The index is rebuilt on open: the same answers after a reopen.
        drop(reader);
        drop(store);
        let store = RedbLedger::open(dir.path()).unwrap();
        let reader = store.reader().expect("a reader");
        assert_eq!(reader.chain("a", 1, 10), a);
        // A reader taken before an append sees it.
        let mut store = store;
        let c = chain("c", 1);
        store.append(&c[0]).unwrap();
        assert_eq!(reader.chain("c", 1, 10), c);
    }

    #[test]
    fn equivocation_is_kept_and_reported() {
        let dir = TempDir::new("store-equiv");
        let mut store = RedbLedger::open(dir.path()).unwrap();
        let a = chain("a", 2);
        let other = signed(Entry::new("a", 2, a[0].id, 9, "left", vec![]));
        store.append(&a[0]).unwrap();
        store.append(&a[1]).unwrap();
        store.append(&other).unwrap();
        assert_eq!(store.len(), 3);
        drop(store);
        let report = RedbLedger::verify_offline(dir.path()).unwrap();
        assert_eq!(report.equivocations.len(), 1);
        assert_eq!(report.equivocations[0].seq, 2);
        let min = a[1].id.min(other.id);
        assert_eq!(report.frontier.authors[0].head, hex::encode(min));
    }

    #[test]
    fn corrupt_store_names_first_bad_entry() {
        let dir = TempDir::new("store-corrupt");
        let mut store = RedbLedger::open(dir.path()).unwrap();
        let a = chain("a", 2);
        store.append(&a[0]).unwrap();
        drop(store);
        let mut bad = a[1].clone();
        bad.clock = 99; // id no longer matches
        RedbLedger::write_raw_for_tests(dir.path(), &serde_json::to_vec(&bad).unwrap()).unwrap();
        let err = RedbLedger::open(dir.path())
            .expect_err("corrupt")
            .to_string();
        assert!(
            err.contains("entry #1 (a#2") && err.contains("id does not match"),
            "{err}"
        );

        let dir = TempDir::new("store-garbage");
        RedbLedger::write_raw_for_tests(dir.path(), b"not json").unwrap();
        let err = RedbLedger::verify_offline(dir.path())
            .expect_err("corrupt")
            .to_string();
        assert!(err.contains("entry #0 (undecodable)"), "{err}");
    }

    #[test]
    fn equivocation_evidence_is_persisted_and_capped_per_author() {
        let dir = TempDir::new("store-equiv-cap");
        let mut store = RedbLedger::open(dir.path()).unwrap();
        let a = chain("a", 2);
        store.append(&a[0]).unwrap();
        store.append(&a[1]).unwrap();
        let conflict = |n: u64| {
            signed(Entry::new(
                "a",
                2,
                a[0].id,
                100 + n,
                "alive",
                n.to_be_bytes().to_vec(),
            ))
        };
        let over = MAX_EQUIVOCATIONS_PER_AUTHOR as u64 + 3;
        for n in 0..over {
            store.append(&conflict(n)).unwrap();
        }
        assert_eq!(store.len(), 2 + MAX_EQUIVOCATIONS_PER_AUTHOR);
        assert_eq!(store.equivocations_dropped(), 3);
        // Another author's evidence has its own allowance.
        let b = chain("b", 1);
        store.append(&b[0]).unwrap();
        // A first entry under another key is evidence, not a takeover; one
        // that binds no key is not even that.
        let other = keys("mallory");
        let rebind = format!("{{{}}}", key_field(&other.public_key()));
        store
            .append(&other.sign(Entry::new(
                "b",
                1,
                GENESIS_PREV,
                7,
                "join",
                rebind.into_bytes(),
            )))
            .unwrap();
        let unbound = signed(Entry::new("b", 1, GENESIS_PREV, 8, "left", vec![]));
        assert!(
            store.append(&unbound).is_ok(),
            "dropped, not a store failure"
        );
        assert_eq!(store.equivocations().len(), 2);
        drop(store);
        // Persisted: a restarted node still reports it, and the cap still
        // holds for what arrives after the restart.
        let mut store = RedbLedger::open(dir.path()).unwrap();
        let equivocations = store.equivocations();
        assert_eq!(equivocations.len(), 2, "{equivocations:?}");
        assert_eq!(equivocations[0].ids.len(), 1 + MAX_EQUIVOCATIONS_PER_AUTHOR);
        store.append(&conflict(over)).unwrap();
        assert_eq!(store.len(), 4 + MAX_EQUIVOCATIONS_PER_AUTHOR);
        assert_eq!(store.equivocations_dropped(), 1);
    }

    #[test]
    fn reopen_keeps_everything_and_appends_continue() {
        let dir = TempDir::new("store-reopen-hook");
        let mut store = RedbLedger::open(dir.path()).unwrap();
        let reader = store.clone();
        let a = chain("a", 3);
        store.append(&a[0]).unwrap();
        store.append(&a[1]).unwrap();
        store.reopen().unwrap();
        assert_eq!(store.reopens(), 1);
        assert_eq!(reader.len_entries(), 2, "clones see the reopened store");
        store.append(&a[2]).unwrap();
        store.append(&a[2]).unwrap();
        drop((store, reader));
        let report = RedbLedger::verify_offline(dir.path()).unwrap();
        assert_eq!(report.entries, 3);
    }

    #[test]
    fn truncated_or_damaged_files_are_errors_naming_the_file() {
        let dir = TempDir::new("store-truncated");
        let mut store = RedbLedger::open(dir.path()).unwrap();
        for e in chain("a", 50) {
            store.append(&e).unwrap();
        }
        drop(store);
        let path = dir.path().join(LEDGER_FILE);
        let full = std::fs::read(&path).unwrap();
        for cut in [0usize, 100, 511, 4096, full.len() / 2, full.len() - 1] {
            let cut = cut.min(full.len());
            std::fs::write(&path, &full[..cut]).unwrap();
            match RedbLedger::open(dir.path()) {
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains(&path.display().to_string()), "cut {cut}: {e}");
                }
                // redb may recover from some cuts (an empty file is a new
                // store); what it serves must still verify.
                Ok(store) => assert!(store.len() <= 50),
            }
        }
        // Damage: flip bytes across the whole file, one region at a time.
        for at in (0..full.len()).step_by(full.len() / 16 + 1) {
            let mut bad = full.clone();
            for b in bad.iter_mut().skip(at).take(64) {
                *b ^= 0xa5;
            }
            std::fs::write(&path, &bad).unwrap();
            let opened = std::panic::catch_unwind(|| RedbLedger::open(dir.path()));
            match opened {
                Err(_) => panic!("opening a store damaged at byte {at} panicked"),
                Ok(Err(e)) => {
                    let e = e.to_string();
                    assert!(e.contains(&path.display().to_string()), "at {at}: {e}");
                }
                Ok(Ok(store)) => assert!(store.len() <= 50),
            }
        }
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error() {
        let dir = TempDir::new("store-notdb");
        std::fs::write(dir.path().join(LEDGER_FILE), vec![0x5a; 4096]).unwrap();
        let err = RedbLedger::open(dir.path()).expect_err("error").to_string();
        assert!(err.contains("ledger.redb"), "{err}");
    }
}
