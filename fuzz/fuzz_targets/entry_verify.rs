//! Entry verification (`nodeplane_entry`): an entry built field by field
//! (ids computed, flipped or raw; chains linked, forked or broken; bodies
//! of every kind with extreme incarnations), and entries decoded from raw
//! JSON, go through `Entry::verify`, `check_link`, `verify_chains`, the
//! frontier digests, the core's `Ledger::insert` and the membership
//! derivation. Nothing may panic, and:
//! - an entry that verifies has the id of its contents;
//! - `verify_chains` accepts a set only if every entry verifies alone;
//! - the view derived from the ledger's linked entries does not depend on
//!   the order they are folded in (the view is a function of the set).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nodeplane_core::ledger::{Insert, Ledger};
use nodeplane_core::membership::{self, DeadBody, LeaveBody, ProfileBody, SuspectBody};
use nodeplane_core::testkit::test_keys;
use nodeplane_entry::signing::ed25519::NativeVerifier;
use nodeplane_entry::{check_link, digest_of, entry_id, frontier, verify_chains, Entry, Hash};
use nodeplane_entry::{GENESIS_PREV, MAX_AUTHOR_LEN};

/// A few authors, so that chains form; or any string.
#[derive(Arbitrary, Debug, Clone)]
enum Author {
    Known(u8),
    Text(String),
    Long,
}

impl Author {
    fn name(&self) -> String {
        match self {
            Author::Known(i) => format!("n{}", i % 4),
            Author::Text(s) => s.clone(),
            Author::Long => "a".repeat(MAX_AUTHOR_LEN + 1),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Num {
    Zero,
    One,
    Small(u8),
    Max,
    MaxMinusOne,
    Any(u64),
}

impl Num {
    fn value(self) -> u64 {
        match self {
            Num::Zero => 0,
            Num::One => 1,
            Num::Small(n) => u64::from(n),
            Num::Max => u64::MAX,
            Num::MaxMinusOne => u64::MAX - 1,
            Num::Any(n) => n,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Seq {
    /// One past the author's last built entry.
    Next,
    /// The author's last built entry's seq again (a fork).
    Same,
    Raw(Num),
}

#[derive(Arbitrary, Debug)]
enum Prev {
    /// The id of the author's last built entry (genesis for the first).
    Linked,
    Genesis,
    /// The id of any earlier built entry.
    Earlier(u8),
    Raw([u8; 32]),
}

#[derive(Arbitrary, Debug)]
enum Body {
    Profile {
        inc: Num,
        addr: String,
        meta: Vec<(String, String)>,
    },
    Suspect {
        subject: Author,
        inc: Num,
    },
    Dead {
        subject: Author,
        inc: Num,
        /// Indices of earlier built entries, as hex ids.
        evidence: Vec<u8>,
        suspecters: u32,
    },
    Leave {
        inc: Num,
    },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Join,
    Alive,
    Metadata,
    Suspect,
    ConfirmDead,
    Leave,
    /// The kind matching the body.
    Matching,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Id {
    Computed,
    /// The computed id with one bit flipped.
    Flipped(u8),
    Raw([u8; 32]),
}

#[derive(Arbitrary, Debug)]
struct Spec {
    author: Author,
    seq: Seq,
    prev: Prev,
    clock: Num,
    kind: Kind,
    body: Body,
    id: Id,
}

#[derive(Arbitrary, Debug)]
struct Input {
    specs: Vec<Spec>,
    /// Raw JSON: one entry, or a list of entries.
    json: Vec<u8>,
}

fn build(spec: &Spec, built: &[Entry]) -> Entry {
    let author = spec.author.name();
    let last = built.iter().rev().find(|e| e.author == author);
    let seq = match &spec.seq {
        Seq::Next => last.map_or(1, |e| e.seq.saturating_add(1)),
        Seq::Same => last.map_or(1, |e| e.seq),
        Seq::Raw(n) => n.value(),
    };
    let prev: Hash = match &spec.prev {
        Prev::Linked => last.map_or(GENESIS_PREV, |e| e.id),
        Prev::Genesis => GENESIS_PREV,
        Prev::Earlier(i) => {
            if built.is_empty() {
                GENESIS_PREV
            } else {
                built[usize::from(*i) % built.len()].id
            }
        }
        Prev::Raw(h) => *h,
    };
    let (matching, body) = match &spec.body {
        Body::Profile { inc, addr, meta } => (
            membership::KIND_ALIVE,
            membership::body(&ProfileBody {
                inc: inc.value(),
                addr: addr.clone(),
                meta: meta.clone(),
                signing_key: Some(hex::encode(test_keys(&author).public_key())),
            }),
        ),
        Body::Suspect { subject, inc } => (
            membership::KIND_SUSPECT,
            membership::body(&SuspectBody {
                subject: subject.name(),
                inc: inc.value(),
            }),
        ),
        Body::Dead {
            subject,
            inc,
            evidence,
            suspecters,
        } => (
            membership::KIND_CONFIRM_DEAD,
            membership::body(&DeadBody {
                subject: subject.name(),
                inc: inc.value(),
                evidence: evidence
                    .iter()
                    .filter(|_| !built.is_empty())
                    .map(|i| built[usize::from(*i) % built.len()].id_hex())
                    .collect(),
                suspecters: *suspecters,
            }),
        ),
        Body::Leave { inc } => (
            membership::KIND_LEAVE,
            membership::body(&LeaveBody { inc: inc.value() }),
        ),
        Body::Raw(bytes) => ("alive", bytes.clone()),
    };
    let kind = match &spec.kind {
        Kind::Join => membership::KIND_JOIN.to_string(),
        Kind::Alive => membership::KIND_ALIVE.to_string(),
        Kind::Metadata => membership::KIND_METADATA.to_string(),
        Kind::Suspect => membership::KIND_SUSPECT.to_string(),
        Kind::ConfirmDead => membership::KIND_CONFIRM_DEAD.to_string(),
        Kind::Leave => membership::KIND_LEAVE.to_string(),
        Kind::Matching => matching.to_string(),
        Kind::Raw(s) => s.clone(),
    };
    let clock = spec.clock.value();
    let mut entry = test_keys(&author).sign(Entry::new(&author, seq, prev, clock, &kind, body));
    match spec.id {
        Id::Computed => {}
        Id::Flipped(bit) => entry.id[usize::from(bit / 8) % 32] ^= 1 << (bit % 8),
        Id::Raw(h) => entry.id = h,
    }
    entry
}

fn check_all(entries: &[Entry]) {
    // Each entry alone.
    for e in entries {
        if e.verify().is_ok() {
            assert_eq!(
                e.id,
                entry_id(&e.author, e.seq, &e.prev, e.clock, &e.kind, &e.body),
                "a verified entry has the id of its contents"
            );
        }
        let _ = membership::facts(e);
    }
    // Chains.
    if verify_chains(entries).is_ok() {
        assert!(
            entries.iter().all(|e| e.verify().is_ok()),
            "verify_chains accepted an entry that does not verify"
        );
    }
    let _ = frontier(entries);
    let _ = digest_of(entries);

    // Links as a store checks them, in order.
    let mut held: Vec<&Entry> = Vec::new();
    for e in entries {
        let prev_ids: Vec<Hash> = held
            .iter()
            .filter(|h| h.author == e.author && Some(h.seq) == e.seq.checked_sub(1))
            .map(|h| h.id)
            .collect();
        let head = held
            .iter()
            .filter(|h| h.author == e.author)
            .map(|h| h.seq)
            .max()
            .unwrap_or(0);
        if e.verify().is_ok() && check_link(e, &prev_ids, head).is_ok() {
            held.push(e);
        }
    }

    // The core's ledger, then the view of what linked.
    let mut ledger = Ledger::new();
    for e in entries {
        match ledger.insert(e.clone(), &mut NativeVerifier) {
            Ok(Insert::Linked(linked)) => {
                for l in linked {
                    assert!(l.verify().is_ok(), "the ledger linked an unverified entry");
                }
            }
            Ok(_) | Err(_) => {}
        }
    }
    let _ = ledger.frontier_digest();
    let _ = ledger.root_digest();
    let _ = ledger.child_digests(&[]);
    let _ = ledger.heads_under(&[]);
    let linked: Vec<Entry> = ledger.all_entries();
    assert_eq!(linked.len(), ledger.len(), "len counts linked entries");
    let forward = membership::derive_view(linked.iter());
    let backward = membership::derive_view(linked.iter().rev());
    assert_eq!(
        forward, backward,
        "the view depends on the order of the entries"
    );
}

fuzz_target!(|input: Input| {
    let mut built: Vec<Entry> = Vec::new();
    for spec in input.specs.iter().take(64) {
        let e = build(spec, &built);
        built.push(e);
    }
    check_all(&built);

    if let Ok(e) = serde_json::from_slice::<Entry>(&input.json) {
        check_all(&[e]);
    } else if let Ok(list) = serde_json::from_slice::<Vec<Entry>>(&input.json) {
        check_all(&list);
    }
});
