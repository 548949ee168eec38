//! The agent's ledger store (`nodeplane_agent::RedbLedger`): a redb file
//! in a temporary directory on tmpfs, built either from rows of the
//! entries table (entries built field by field, raw row bytes, jumps in
//! the append positions), in the current compact format (a `meta` table
//! saying format 1, rows `0x01` + `encode_signed`) or in format 0 (JSON
//! rows, no `meta`: the open migrates it), or, when the first byte is odd,
//! from raw file bytes (a corrupted or truncated store), is opened. Never panics; a store that
//! opens serves its frontier, equivocations and pages, accepts or refuses
//! appends with an error, and reopens with the same frontier (what it
//! accepted on append it accepts on load).
#![no_main]

use std::path::PathBuf;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use nodeplane_agent::store::LEDGER_FILE;
use nodeplane_agent::RedbLedger;
use nodeplane_entry::signing::ed25519::{key_field, KeyPair};
use nodeplane_entry::{Entry, Hash, GENESIS_PREV};
use nodeplane_runtime::LedgerStore;
use redb::{Database, TableDefinition};

/// The store's tables, as `host/agent/src/store.rs` defines them.
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");

#[derive(Arbitrary, Debug)]
enum Seq {
    Next,
    Same,
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
enum Prev {
    Linked,
    Genesis,
    Raw([u8; 32]),
}

#[derive(Arbitrary, Debug)]
struct Spec {
    author: u8,
    seq: Seq,
    prev: Prev,
    clock: u64,
    kind: u8,
    body: Vec<u8>,
    flip_id: bool,
}

#[derive(Arbitrary, Debug)]
enum Row {
    Entry(Spec),
    /// Raw row bytes (JSON or compact, valid or not).
    Raw(Vec<u8>),
    /// Skip append positions.
    Gap(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Format 1 (compact rows, `meta` present) rather than format 0.
    compact: bool,
    rows: Vec<Row>,
    appends: Vec<Spec>,
}

fn build(spec: &Spec, built: &[Entry]) -> Entry {
    let author = format!("n{}", spec.author % 3);
    let last = built.iter().rev().find(|e| e.author == author);
    let seq = match spec.seq {
        Seq::Next => last.map_or(1, |e| e.seq.saturating_add(1)),
        Seq::Same => last.map_or(1, |e| e.seq),
        Seq::Raw(n) => n,
    };
    let prev: Hash = match spec.prev {
        Prev::Linked => last.map_or(GENESIS_PREV, |e| e.id),
        Prev::Genesis => GENESIS_PREV,
        Prev::Raw(h) => h,
    };
    let kind =
        ["join", "alive", "suspect", "confirm-dead", "leave", ""][usize::from(spec.kind % 6)];
    let keys = KeyPair::derived(b"fuzz-store-load", &author);
    // A first join declares its author's key (so that chains get past the
    // signature check); every entry is signed by its author.
    let body = if kind == "join" && seq == 1 {
        format!("{{{}}}", key_field(&keys.public_key())).into_bytes()
    } else {
        spec.body.clone()
    };
    let mut e = keys.sign(Entry::new(&author, seq, prev, spec.clock, kind, body));
    if spec.flip_id {
        e.id[0] ^= 1;
    }
    e
}

fn dir() -> &'static PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        // scripts/fuzz gives a directory it removes afterwards; else
        // tmpfs when there is one (redb writes on every input).
        let base = std::env::var_os("NODEPLANE_FUZZ_TMP")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                if std::path::Path::new("/dev/shm").is_dir() {
                    std::path::PathBuf::from("/dev/shm")
                } else {
                    std::env::temp_dir()
                }
            });
        let d = base.join(format!("nodeplane-fuzz-store-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("a temporary directory");
        d
    })
}

fn write_rows(path: &std::path::Path, compact: bool, rows: &[Row]) -> Vec<Entry> {
    let mut built = Vec::new();
    let db = Database::create(path).expect("a new redb file");
    let mut txn = db.begin_write().expect("a write transaction");
    // Only the file's contents matter, not its durability.
    let _ = txn.set_durability(redb::Durability::None);
    {
        let mut table = txn.open_table(ENTRIES).expect("the entries table");
        let mut position: u64 = 0;
        for row in rows.iter().take(64) {
            match row {
                Row::Entry(spec) => {
                    let e = build(spec, &built);
                    let row = if compact {
                        nodeplane_agent::store::encode_row(&e)
                    } else {
                        serde_json::to_vec(&e).expect("an entry serialises")
                    };
                    table.insert(position, row.as_slice()).expect("insert");
                    built.push(e);
                    position += 1;
                }
                Row::Raw(bytes) => {
                    table.insert(position, bytes.as_slice()).expect("insert");
                    position += 1;
                }
                Row::Gap(n) => position += u64::from(*n),
            }
        }
    }
    if compact {
        txn.open_table(META)
            .expect("the meta table")
            .insert("format", nodeplane_agent::store::STORE_FORMAT)
            .expect("insert");
    }
    txn.commit().expect("commit");
    built
}

/// The store turns the storage engine's panics on damaged files into
/// errors (`contain_panic` in `host/agent/src/store.rs`); libfuzzer-sys's
/// panic hook aborts on every panic before it unwinds, so it would report
/// those contained ones as crashes. This hook only prints: a panic that
/// escapes the target still aborts, since libfuzzer-sys runs the target
/// under `catch_unwind` and aborts when it returns a panic.
fn let_contained_panics_unwind() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!(
                "panic (an error if contained by the store, a crash if the run aborts): {info}"
            );
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    let_contained_panics_unwind();
    let dir = dir();
    let path = dir.join(LEDGER_FILE);
    let _ = std::fs::remove_file(&path);
    let mut built = Vec::new();
    let mut appends = Vec::new();
    match data.split_first() {
        Some((mode, raw)) if mode & 1 == 1 => {
            std::fs::write(&path, raw).expect("write the raw store");
        }
        _ => {
            let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
                return;
            };
            built = write_rows(&path, input.compact, &input.rows);
            appends = input.appends;
        }
    }
    let Ok(mut store) = RedbLedger::open(dir) else {
        return;
    };
    let _ = store.equivocations();
    let _ = store.page(None, 0, 16);
    let _ = store.page(Some("n1"), 1, 16);
    let _ = store.page(None, u64::MAX, usize::MAX);
    let loaded = store.load().expect("an open store loads");
    assert_eq!(loaded.len(), store.len_entries());
    for spec in appends.iter().take(16) {
        let mut held = loaded.clone();
        held.extend(built.iter().cloned());
        let e = build(spec, &held);
        let _ = store.append(&e);
        built.push(e);
    }
    let before = store.frontier();
    drop(store);
    let store = RedbLedger::open(dir)
        .unwrap_or_else(|e| panic!("a store that opened and took appends reopens: {e}"));
    assert_eq!(store.frontier(), before, "the frontier survives a reopen");
});
