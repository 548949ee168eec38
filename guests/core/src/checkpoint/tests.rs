//! Tests of checkpoint records, encoding, decoding and loading.
//!
//! The equivalence property: for random entry sets and a random
//! per-author prefix cut, `load(state(cut))` + the tail equals the
//! derivation of every entry. What legitimately differs is what is read
//! at a **moot incarnation** (below the subject's `top_inc` at the cut):
//! the record drops those claims (13.2 rule 1), so `live_suspecters`,
//! `held_suspecters`, `has_verdict`, `suspect_ids`, `suspected_by`,
//! `held_by` and `announced` at such an incarnation may differ, and so may
//! `own_incarnation` of a subject whose `top_inc` holds only a `leave`
//! (it looks below `top_inc` for an `alive`). Nothing in the view, the
//! death rule or the node reads them there: the claim without verdicts
//! and the candidate verdict are read at `top_inc` only, which never goes
//! down. Claims about ids no entry can be authored under (empty, over 64
//! bytes) get no record and differ likewise; they can never take effect.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::ledger::{Entry, Insert, GENESIS_PREV};
use crate::membership::{body, ProfileBody};
use nodeplane_entry::signing::ed25519::{KeyPair, NativeVerifier};

/// Authors of the random entry sets; `twin` declares `a`'s key.
const AUTHORS: [&str; 6] = ["a", "b", "c", "d", "e", "twin"];

/// Ids claims name besides the authors: one that never writes, one no
/// entry can be authored under.
fn subjects() -> Vec<String> {
    let mut s: Vec<String> = AUTHORS.iter().map(|a| a.to_string()).collect();
    s.push("ghost".into());
    s.push("x".repeat(70));
    s
}

fn keys(author: &str) -> KeyPair {
    let name = if author == "twin" { "a" } else { author };
    KeyPair::derived(b"checkpoint-tests", name)
}

/// Signed chains built entry by entry, links kept right.
#[derive(Default)]
struct Chains {
    entries: Vec<Entry>,
    heads: BTreeMap<String, (u64, Hash)>,
    clock: u64,
    /// Each author's highest own incarnation so far (what a storm aims at).
    top: BTreeMap<String, u64>,
}

impl Chains {
    fn push(&mut self, author: &str, kind: &str, body: Vec<u8>) -> Entry {
        let (seq, prev) = self
            .heads
            .get(author)
            .map_or((1, GENESIS_PREV), |(s, id)| (s + 1, *id));
        self.clock += 1;
        let e = keys(author).sign(Entry::new(author, seq, prev, self.clock, kind, body));
        self.heads.insert(author.to_string(), (seq, e.id));
        self.entries.push(e.clone());
        e
    }

    fn profile(&mut self, author: &str, kind: &str, inc: u64, variant: u8) -> Entry {
        if kind != "metadata" {
            self.note_top(author, inc);
        }
        let key = (kind == "join").then(|| hex::encode(keys(author).public_key()));
        let meta = if variant.is_multiple_of(2) {
            vec![]
        } else {
            vec![("overlay-ip".to_string(), format!("10.1.0.{variant}"))]
        };
        let b = body(&ProfileBody {
            inc,
            addr: format!("10.0.0.{}:7946", variant % 4 + 1),
            meta,
            signing_key: key,
        });
        self.push(author, kind, b)
    }

    fn note_top(&mut self, author: &str, inc: u64) {
        let t = self.top.entry(author.to_string()).or_insert(inc);
        *t = (*t).max(inc);
    }

    /// The author's first entry is always a `join` (the only one a
    /// ledger links at seq 1).
    fn ensure(&mut self, author: &str, inc: u64) {
        if !self.heads.contains_key(author) {
            self.profile(author, "join", inc, 0);
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Join(a, inc, v) => {
                self.ensure(a, *inc);
                self.profile(a, "join", *inc, *v);
            }
            Op::Alive(a, inc, v) => {
                self.ensure(a, *inc);
                self.profile(a, "alive", *inc, *v);
            }
            Op::Metadata(a, v) => {
                self.ensure(a, 1);
                self.profile(a, "metadata", 1, *v);
            }
            Op::Leave(a, inc) => {
                self.ensure(a, *inc);
                self.note_top(a, *inc);
                self.push(a, "leave", json!({ "inc": inc }).to_string().into_bytes());
            }
            Op::Suspect(a, s, inc) => {
                self.ensure(a, 1);
                let b = json!({ "subject": s, "inc": inc });
                self.push(a, "suspect", b.to_string().into_bytes());
            }
            Op::Held(a, s, inc, long) => {
                self.ensure(a, 1);
                let held_ms = if *long { 90_000 } else { 89_999 };
                let b = json!({ "subject": s, "inc": inc, "held_ms": held_ms });
                self.push(a, "suspect-held", b.to_string().into_bytes());
            }
            Op::Storm(s, k, held, offset) => {
                // `k` others suspect `s` at its current incarnation (or
                // vote with long-held suspicions), then one of them
                // declares it dead: deaths, and lost quorums in the tail.
                let inc = self.top.get(s).copied().unwrap_or(1);
                let others: Vec<&str> = AUTHORS.iter().copied().filter(|a| a != s).collect();
                let n = others.len();
                for j in 0..usize::from(*k) {
                    let a = others[(j + usize::from(*offset)) % n];
                    if *held {
                        self.apply(&Op::Held(a.into(), s.clone(), inc, true));
                    } else {
                        self.apply(&Op::Suspect(a.into(), s.clone(), inc));
                    }
                }
                let a = others[usize::from(*offset) % n];
                self.apply(&Op::Dead(a.into(), s.clone(), inc));
            }
            Op::Dead(a, s, inc) => {
                self.ensure(a, 1);
                let b = json!({ "subject": s, "inc": inc, "evidence": [], "suspecters": 99 });
                self.push(a, "confirm-dead", b.to_string().into_bytes());
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Join(String, u64, u8),
    Alive(String, u64, u8),
    Metadata(String, u8),
    Leave(String, u64),
    Suspect(String, String, u64),
    Held(String, String, u64, bool),
    Dead(String, String, u64),
    Storm(String, u8, bool, u8),
}

fn inc() -> impl Strategy<Value = u64> {
    prop_oneof![16 => 0u64..4, 1 => Just(u64::MAX), 1 => Just(u64::MAX - 1)]
}

fn op() -> impl Strategy<Value = Op> {
    let author = proptest::sample::select(AUTHORS.to_vec()).prop_map(String::from);
    let subject = proptest::sample::select(subjects());
    prop_oneof![
        3 => (author.clone(), inc(), any::<u8>()).prop_map(|(a, i, v)| Op::Join(a, i, v)),
        3 => (author.clone(), inc(), any::<u8>()).prop_map(|(a, i, v)| Op::Alive(a, i, v)),
        1 => (author.clone(), any::<u8>()).prop_map(|(a, v)| Op::Metadata(a, v)),
        1 => (author.clone(), inc()).prop_map(|(a, i)| Op::Leave(a, i)),
        6 => (author.clone(), subject.clone(), inc()).prop_map(|(a, s, i)| Op::Suspect(a, s, i)),
        3 => (author.clone(), subject.clone(), inc(), any::<bool>())
            .prop_map(|(a, s, i, l)| Op::Held(a, s, i, l)),
        3 => (author.clone(), subject, inc()).prop_map(|(a, s, i)| Op::Dead(a, s, i)),
        3 => (author, 1u8..6, any::<bool>(), any::<u8>())
            .prop_map(|(s, k, h, o)| Op::Storm(s, k, h, o)),
    ]
}

/// A ledger of `entries`, inserted in the order given (buffered ones
/// link when their gap fills).
fn ledger_of(entries: &[Entry]) -> Ledger {
    let mut l = Ledger::new();
    for e in entries {
        let r = l.insert(e.clone(), &mut NativeVerifier);
        assert!(
            matches!(r, Ok(Insert::Linked(_) | Insert::Buffered)),
            "{r:?}"
        );
    }
    assert_eq!(l.len(), entries.len());
    l
}

/// A proptest's case count: `PROPTEST_CASES` when set (a longer run by
/// hand), else `default`. An explicit `cases` would ignore the variable.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn derive(entries: &[Entry], floor: u32) -> Derived {
    derive_sticky(entries, floor, &BTreeMap::new())
}

/// The derivation of `entries` with the sticky verdicts `sticky` (subject
/// → the incarnation it was dead at in a checkpoint, 13.8): the model of
/// a view loaded from a checkpoint whose dead members are those.
fn derive_sticky(entries: &[Entry], floor: u32, sticky: &BTreeMap<String, u64>) -> Derived {
    let mut d = Derived::with_quorum_floor(floor);
    for (id, &inc) in sticky {
        d.make_sticky(id, inc);
    }
    for e in entries {
        let _ = d.apply(e);
    }
    d
}

/// The sticky verdicts a state's records carry: dead at `top_inc`.
fn sticky_of(s: &State) -> BTreeMap<String, u64> {
    s.records
        .iter()
        .filter(|r| r.dead)
        .map(|r| (r.author.clone(), r.top_inc))
        .collect()
}

/// A deterministic permutation from a seed (xorshift Fisher-Yates).
fn shuffled<T: Clone>(v: &[T], mut seed: u64) -> Vec<T> {
    let mut out = v.to_vec();
    seed |= 1;
    for i in (1..out.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = (seed % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

/// Every accessor the view, the death rule and the node read, compared
/// at every incarnation that is not moot.
fn assert_equivalent(full: &Derived, loaded: &Derived, incs: &BTreeSet<u64>) {
    loaded.check_invariants();
    assert_eq!(full.members(), loaded.members(), "members");
    assert_eq!(full.live_count(), loaded.live_count(), "live_count");
    assert_eq!(
        full.quorum_needed(),
        loaded.quorum_needed(),
        "quorum_needed"
    );
    assert_eq!(
        full.lapse_quorum_needed(),
        loaded.lapse_quorum_needed(),
        "lapse_quorum_needed"
    );
    for id in subjects().iter().take(7) {
        assert_eq!(full.claim(id), loaded.claim(id), "claim {id}");
        assert_eq!(full.member(id), loaded.member(id), "member {id}");
        assert_eq!(
            full.entry_of(id, None),
            loaded.entry_of(id, None),
            "entry_of {id}"
        );
        let top = full.claim(id).map(|c| c.inc);
        if top.is_some_and(|t| full.announced(id, t)) {
            assert_eq!(
                full.own_incarnation(id),
                loaded.own_incarnation(id),
                "own_incarnation {id}"
            );
        }
        for &inc in incs.iter().filter(|&&i| top.is_none_or(|t| i >= t)) {
            let at = format!("{id}@{inc}");
            assert_eq!(
                full.live_suspecters(id, inc),
                loaded.live_suspecters(id, inc),
                "live_suspecters {at}"
            );
            assert_eq!(
                full.held_suspecters(id, inc),
                loaded.held_suspecters(id, inc),
                "held_suspecters {at}"
            );
            assert_eq!(
                full.has_verdict(id, inc),
                loaded.has_verdict(id, inc),
                "has_verdict {at}"
            );
            assert_eq!(
                full.suspect_ids(id, inc),
                loaded.suspect_ids(id, inc),
                "suspect_ids {at}"
            );
            assert_eq!(
                full.announced(id, inc),
                loaded.announced(id, inc),
                "announced {at}"
            );
            for a in AUTHORS {
                assert_eq!(
                    full.suspected_by(id, inc, a),
                    loaded.suspected_by(id, inc, a),
                    "suspected_by {at} {a}"
                );
                assert_eq!(
                    full.held_by(id, inc, a),
                    loaded.held_by(id, inc, a),
                    "held_by {at} {a}"
                );
            }
        }
    }
}

/// The cut of `chains`: per author, the first `len × frac / 255` entries.
fn cut_of(chains: &Chains, fracs: &[u8]) -> BTreeMap<String, u64> {
    chains
        .heads
        .iter()
        .zip(fracs.iter().cycle())
        .filter_map(|((a, (len, _)), f)| {
            let k = len * u64::from(*f) / 255;
            (k > 0).then(|| (a.clone(), k))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(96), ..ProptestConfig::default() })]

    #[test]
    fn load_of_the_cut_plus_the_tail_equals_the_whole(
        ops in proptest::collection::vec(op(), 1..70),
        fracs in proptest::collection::vec(any::<u8>(), 6),
        floor in prop_oneof![Just(0u32), Just(3u32)],
        seed in any::<u64>(),
    ) {
        let mut chains = Chains::default();
        for o in &ops {
            chains.apply(o);
        }
        let ledger = ledger_of(&chains.entries);
        let cut = cut_of(&chains, &fracs);
        let (covered, tail): (Vec<Entry>, Vec<Entry>) = chains
            .entries
            .iter()
            .cloned()
            .partition(|e| cut.get(&e.author).is_some_and(|&k| e.seq <= k));
        let heads: Vec<(String, u64, Hash)> = cut
            .iter()
            .map(|(a, &k)| (a.clone(), k, *ledger.id_at(a, k).expect("held")))
            .collect();
        let at_cut = derive(&shuffled(&covered, seed), floor);
        let state = State::first(&ledger, &heads, &at_cut).expect("state");
        // Through the wire format, as a joining node would get it.
        let enc = state.encode(1, 0, [0; 32], floor).expect("encode");
        let chunks: Vec<&[u8]> = enc.chunks.iter().map(Vec::as_slice).collect();
        let (header, decoded) = decode(&enc.header.encode(), &chunks).expect("decode");
        prop_assert_eq!(&decoded, &state);
        prop_assert_eq!(header.id(), enc.id());
        // Loading alone gives the cut's derivation.
        let incs: BTreeSet<u64> = [0, 1, 2, 3, u64::MAX - 1, u64::MAX].into();
        assert_equivalent(&at_cut, &decoded.load(floor), &incs);
        // Loading and applying the tail, in any order, gives the whole.
        let mut loaded = decoded.load(header.quorum_floor);
        for e in shuffled(&tail, seed.rotate_left(17)) {
            let _ = loaded.apply(&e);
        }
        // The deaths at the cut are sticky (13.8): the model is every
        // entry with those verdicts sticky.
        let full = derive_sticky(&chains.entries, floor, &sticky_of(&state));
        assert_equivalent(&full, &loaded, &incs);
    }

    #[test]
    fn the_id_does_not_depend_on_arrival_order(
        ops in proptest::collection::vec(op(), 1..50),
        s1 in any::<u64>(),
        s2 in any::<u64>(),
    ) {
        let mut chains = Chains::default();
        for o in &ops {
            chains.apply(o);
        }
        let id_of = |seed: u64| {
            let order = shuffled(&chains.entries, seed);
            let ledger = ledger_of(&order);
            let d = derive(&order, 0);
            let state = State::first(&ledger, &ledger.frontier(), &d).expect("state");
            state.encode(1, 0, [0; 32], 0).expect("encode").id()
        };
        prop_assert_eq!(id_of(s1), id_of(s2));
    }
}

/// A change made to a record.
type RecordChange = Box<dyn Fn(&mut Record)>;
/// A change made to a state.
type StateChange = Box<dyn Fn(&mut State)>;

/// A state exercising every field of the encoding.
fn sample_state() -> State {
    let h = |b: u8| [b; 32];
    let rec = |author: &str| Record {
        author: author.to_string(),
        head: Some(ChainHead {
            seq: 4,
            id: h(1),
            key: h(2),
        }),
        top_inc: 2,
        own_alive: Some(h(3)),
        own_leave: None,
        profile: Some(RecordProfile {
            seq: 3,
            id: None,
            addr: "10.0.0.1:7946".into(),
            meta: vec![("overlay-ip".into(), "10.1.0.100".into())],
        }),
        departed_since: None,
        dead: false,
        open: vec![],
    };
    let mut a = rec("a");
    // Dead at the cut: the sticky verdict at `top_inc` 2.
    a.departed_since = Some(1);
    a.dead = true;
    a.open = vec![
        OpenInc {
            inc: 2,
            suspecters: vec![(1, h(7)), (2, h(8))],
            held: vec![2],
            verdict: Some(h(9)),
        },
        OpenInc {
            inc: u64::MAX,
            suspecters: vec![],
            held: vec![],
            verdict: Some(h(10)),
        },
    ];
    let mut b = rec("b");
    b.own_leave = Some(h(11));
    b.departed_since = Some(1);
    if let Some(p) = b.profile.as_mut() {
        p.meta = vec![];
    }
    let c = rec("c");
    let ghost = Record {
        author: "ghost".into(),
        head: None,
        top_inc: 0,
        own_alive: None,
        own_leave: None,
        profile: None,
        departed_since: None,
        dead: false,
        open: vec![OpenInc {
            inc: 5,
            suspecters: vec![(0, h(13))],
            held: vec![],
            verdict: None,
        }],
    };
    State {
        records: vec![a, b, c, ghost],
    }
}

/// One record's encoding.
fn record_bytes(r: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_record(r, &mut out).expect("encode");
    out
}

/// A chunk of these records, encoded as they are (sorted or not).
/// A chunk of whole records starting at record 0.
fn chunk_of(records: &[Record]) -> Vec<u8> {
    let bytes: Vec<u8> = records.iter().flat_map(record_bytes).collect();
    framed(&bytes, records.len() as u32)
}

/// Raw record bytes behind a chunk prefix: first record 0, `count`.
fn framed(bytes: &[u8], count: u32) -> Vec<u8> {
    let mut out = 0u32.to_be_bytes().to_vec();
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

/// The records of a chunk of whole records (a part is an error here).
fn recs(bytes: &[u8], records: u32) -> Result<Vec<Record>, DecodeError> {
    match decode_chunk(bytes, records)? {
        Chunk::Records { records, .. } => Ok(records),
        Chunk::Part { .. } => Err(DecodeError::Chunking),
    }
}

#[test]
fn a_profile_id_is_carried_only_for_a_member_without_an_own_claim() {
    let mut state = sample_state();
    let Some(c) = state.records.get_mut(2) else {
        panic!("sample has c");
    };
    c.top_inc = 0;
    c.own_alive = None;
    if let Some(p) = c.profile.as_mut() {
        p.id = Some([12; 32]);
    }
    let enc = state.encode(1, 0, [0; 32], 0).expect("encode");
    let chunks: Vec<&[u8]> = enc.chunks.iter().map(Vec::as_slice).collect();
    let (_, back) = decode(&enc.header.encode(), &chunks).expect("decode");
    assert_eq!(back, state);
    // The same id beside an own claim is not canonical: refused.
    let mut b = state.records.get(1).cloned().expect("sample has b");
    if let Some(p) = b.profile.as_mut() {
        p.id = Some([12; 32]);
    }
    let bytes = record_bytes(&b);
    let mut one = sample_state();
    if let Some(slot) = one.records.get_mut(1) {
        *slot = b;
    }
    let enc = one.encode(1, 0, [0; 32], 0).expect("encode");
    let chunks: Vec<&[u8]> = enc.chunks.iter().map(Vec::as_slice).collect();
    assert!(
        matches!(
            decode(&enc.header.encode(), &chunks),
            Err(DecodeError::NonCanonical(1, _))
        ),
        "{} bytes",
        bytes.len()
    );
}

#[test]
fn a_state_round_trips_through_its_encoding() {
    let state = sample_state();
    let enc = state.encode(1, 3, [0; 32], 2).expect("encode");
    assert_eq!(enc.header.records, 4);
    assert_eq!(enc.header.chunks, 1);
    assert_eq!(enc.header.encode().len(), HEADER_LEN);
    let chunks: Vec<&[u8]> = enc.chunks.iter().map(Vec::as_slice).collect();
    let (h, back) = decode(&enc.header.encode(), &chunks).expect("decode");
    assert_eq!(back, state);
    assert_eq!(h, enc.header);
    assert_eq!(Header::decode(&h.encode()), Ok(h));
    // Loading it gives one derivation with the caches consistent.
    state.load(0).check_invariants();
}

#[test]
fn the_decoder_rejects_truncation_and_trailing_bytes() {
    let state = sample_state();
    let chunk = chunk_of(&state.records);
    for len in 0..chunk.len() {
        let got = recs(chunk.get(..len).expect("prefix"), 4);
        assert!(got.is_err(), "prefix of {len} bytes decoded");
    }
    let mut long = chunk.clone();
    long.push(0);
    assert_eq!(recs(&long, 4), Err(DecodeError::TrailingBytes(1)));
    let header = state
        .encode(1, 0, [0; 32], 0)
        .expect("encode")
        .header
        .encode();
    for len in 0..header.len() {
        let got = Header::decode(header.get(..len).expect("prefix"));
        assert!(
            matches!(got, Err(DecodeError::Truncated(_))),
            "{len}: {got:?}"
        );
    }
    let mut long = header.clone();
    long.extend_from_slice(&[0, 0]);
    assert_eq!(Header::decode(&long), Err(DecodeError::TrailingBytes(2)));
    let mut bad = header;
    bad[0] ^= 1;
    assert_eq!(Header::decode(&bad), Err(DecodeError::BadTag));
}

#[test]
fn the_decoder_rejects_unsorted_and_duplicate_records() {
    let s = sample_state();
    let r = &s.records;
    let swapped = chunk_of(&[r[0].clone(), r[2].clone(), r[1].clone(), r[3].clone()]);
    assert_eq!(recs(&swapped, 4), Err(DecodeError::Unsorted(2)));
    let twice = chunk_of(&[r[0].clone(), r[1].clone(), r[1].clone(), r[3].clone()]);
    assert_eq!(recs(&twice, 4), Err(DecodeError::Unsorted(2)));
    // Across chunks too: 700 records, the first of chunk 1 not after the
    // last of chunk 0 (same author length, so the boundary stays).
    let mut many: Vec<Record> = (0..700)
        .map(|i| {
            let mut x = r[2].clone();
            x.author = format!("n{i:04}");
            x
        })
        .collect();
    let enc = State {
        records: many.clone(),
    }
    .encode(2, 0, [0; 32], 0)
    .expect("encode");
    let Ok(Chunk::Records { first, .. }) = decode_chunk(&enc.chunks[1], 700) else {
        panic!("chunk 1 holds records");
    };
    let f = first as usize;
    assert!(f > 1);
    many[f].author = many[f - 1].author.clone();
    let state = State { records: many };
    let enc = state.encode(2, 0, [0; 32], 0).expect("encode");
    let chunks: Vec<&[u8]> = enc.chunks.iter().map(Vec::as_slice).collect();
    assert_eq!(
        decode(&enc.header.encode(), &chunks),
        Err(DecodeError::Unsorted(f as u64))
    );
}

#[test]
fn the_decoder_rejects_suspecter_indices_out_of_range() {
    let s = sample_state();
    for bad in [4u32, u32::MAX, 0] {
        // 0 is the record itself: a subject cannot suspect itself.
        let mut r = s.records.clone();
        r[0].open[0].suspecters[0].0 = bad;
        let got = recs(&chunk_of(&r), 4);
        assert_eq!(
            got,
            Err(DecodeError::IndexOutOfRange {
                record: 0,
                index: bad,
                count: 4
            })
        );
    }
    let mut r = s.records.clone();
    r[0].open[0].held[0] = 9;
    assert!(matches!(
        recs(&chunk_of(&r), 4),
        Err(DecodeError::IndexOutOfRange { index: 9, .. })
    ));
    // In range, but the suspecter wrote nothing (no chain): only the
    // whole state can tell.
    let mut state = s.clone();
    state.records[1].open = vec![OpenInc {
        inc: 2,
        suspecters: vec![(3, [1; 32])],
        held: vec![],
        verdict: None,
    }];
    let enc = state.encode(1, 0, [0; 32], 0).expect("encode");
    let chunks: Vec<&[u8]> = enc.chunks.iter().map(Vec::as_slice).collect();
    assert!(matches!(
        decode(&enc.header.encode(), &chunks),
        Err(DecodeError::NonCanonical(1, _))
    ));
}

#[test]
fn the_decoder_rejects_counts_larger_than_the_input() {
    // A subject without a chain, one open incarnation claiming u32::MAX
    // suspecters, and nothing after it.
    let mut bytes = vec![1, b'g'];
    bytes.extend_from_slice(&0u64.to_be_bytes()); // head seq
    bytes.extend_from_slice(&0u64.to_be_bytes()); // top_inc
    bytes.push(0); // flags
    bytes.extend_from_slice(&1u16.to_be_bytes()); // open count
    bytes.extend_from_slice(&0u64.to_be_bytes()); // inc
    bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    bytes.extend_from_slice(&[0; 13]);
    assert_eq!(
        recs(&framed(&bytes, 1), 1),
        Err(DecodeError::CountTooLarge {
            what: "suspecters",
            count: u64::from(u32::MAX)
        })
    );
    // An open count of 65 535 with a few bytes left.
    let mut bytes = vec![1, b'g'];
    bytes.extend_from_slice(&[0; 17]);
    bytes.extend_from_slice(&u16::MAX.to_be_bytes());
    bytes.extend_from_slice(&[0; 40]);
    assert!(matches!(
        recs(&framed(&bytes, 1), 1),
        Err(DecodeError::CountTooLarge {
            what: "open incarnations",
            ..
        })
    ));
    // A header announcing chunks but no records.
    let state = sample_state();
    let mut h = state.encode(1, 0, [0; 32], 0).expect("encode").header;
    h.records = 0;
    assert!(matches!(
        Header::decode(&h.encode()),
        Err(DecodeError::Counts(_))
    ));
    h.records = 4;
    h.chunks = u32::MAX;
    let enc = state.encode(1, 0, [0; 32], 0).expect("encode");
    let chunks: Vec<&[u8]> = enc.chunks.iter().map(Vec::as_slice).collect();
    assert!(matches!(
        decode(&h.encode(), &chunks),
        Err(DecodeError::Counts(_))
    ));
    // A chunk claiming 300 records and holding 4: beyond a state of 4
    // records, or more than its bytes in a state of 300.
    let body: Vec<u8> = state.records.iter().flat_map(record_bytes).collect();
    assert!(matches!(
        recs(&framed(&body, 300), 4),
        Err(DecodeError::Counts(_))
    ));
    assert!(matches!(
        recs(&framed(&body, 300), 300),
        Err(DecodeError::CountTooLarge { .. } | DecodeError::Truncated(_))
    ));
    // A chunk starting beyond the records, and one over the byte bound.
    assert!(matches!(
        recs(&chunk_of(&state.records), 0),
        Err(DecodeError::Counts(_))
    ));
    let huge = vec![0u8; crate::config::CHECKPOINT_CHUNK_BYTES + 1];
    assert_eq!(
        recs(&huge, 4),
        Err(DecodeError::ChunkTooLarge(
            crate::config::CHECKPOINT_CHUNK_BYTES + 1
        ))
    );
}

#[test]
fn the_decoder_rejects_non_canonical_records() {
    let s = sample_state();
    let cases: Vec<(&str, RecordChange)> = vec![
        ("empty open inc", Box::new(|r| r.open[1].verdict = None)),
        ("open below top", Box::new(|r| r.open[0].inc = 1)),
        ("unsorted incs", Box::new(|r| r.open.swap(0, 1))),
        (
            "unsorted suspecters",
            Box::new(|r| r.open[0].suspecters.swap(0, 1)),
        ),
        ("author too long", Box::new(|r| r.author = "a".repeat(65))),
        ("dead, no verdict", Box::new(|r| r.open[0].verdict = None)),
        ("dead, not departed", Box::new(|r| r.departed_since = None)),
        ("dead, left", Box::new(|r| r.own_leave = Some([4; 32]))),
    ];
    for (what, change) in cases {
        let mut r = s.records.clone();
        change(&mut r[0]);
        assert!(recs(&chunk_of(&r), 4).is_err(), "{what}");
    }
    // An unknown flag bit.
    let mut bytes = record_bytes(&s.records[2]);
    let flags_at = 1 + 1 + 8 + 64 + 8;
    bytes[flags_at] |= 0x80;
    assert_eq!(
        recs(&framed(&bytes, 1), 1),
        Err(DecodeError::UnknownFlags(0, bytes[flags_at]))
    );
}

#[test]
fn the_root_and_the_cut_digest_are_checked() {
    let state = sample_state();
    let enc = state.encode(1, 0, [0; 32], 0).expect("encode");
    // A chunk that still decodes, with one address digit changed.
    let mut chunk = enc.chunks[0].clone();
    let at = chunk
        .windows(13)
        .position(|w| w == b"10.0.0.1:7946")
        .expect("address");
    chunk[at + 7] = b'2';
    assert_eq!(
        decode(&enc.header.encode(), &[chunk.as_slice()]),
        Err(DecodeError::RootMismatch)
    );
    let mut h = enc.header.clone();
    h.cut = [7; 32];
    assert_eq!(
        decode(&h.encode(), &[enc.chunks[0].as_slice()]),
        Err(DecodeError::CutMismatch)
    );
}

#[test]
fn a_chunk_verifies_against_the_root_with_its_path_only() {
    for width in 1usize..=9 {
        let chunks: Vec<Vec<u8>> = (0..width).map(|i| vec![i as u8; 3]).collect();
        let leaves: Vec<Hash> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| chunk_leaf(i as u32, c))
            .collect();
        let root = merkle_root(&leaves);
        let w = width as u32;
        for (i, c) in chunks.iter().enumerate() {
            let path = chunk_proof(&leaves, i).expect("proof");
            let i = i as u32;
            assert!(verify_chunk(&root, w, i, c, &path), "{width}/{i}");
            assert!(!verify_chunk(&root, w, i, b"other", &path));
            assert!(!verify_chunk(&root, w, (i + 1) % w.max(2), c, &path) || width == 1);
            assert!(!verify_chunk(&root, w, w, c, &path));
            let mut longer = path.clone();
            longer.push([0; 32]);
            assert!(!verify_chunk(&root, w, i, c, &longer));
            if let Some(first) = path.first() {
                let mut wrong = path.clone();
                wrong[0] = [first[0] ^ 1; 32];
                assert!(!verify_chunk(&root, w, i, c, &wrong));
                assert!(!verify_chunk(&root, w, i, c, &path[1..]));
            }
        }
        assert!(chunk_proof(&leaves, width).is_none());
    }
    // A real checkpoint of 1 000 records: chunks packed up to the byte
    // bound, each starting where the previous ended.
    let mut state = sample_state();
    state.records = (0..1000)
        .map(|i| {
            let mut x = state.records[2].clone();
            x.author = format!("n{i:04}");
            x
        })
        .collect();
    let per_record = record_bytes(&state.records[0]).len();
    let fit = (crate::config::CHECKPOINT_CHUNK_BYTES - CHUNK_PREFIX) / per_record;
    let enc = state.encode(1, 0, [0; 32], 0).expect("encode");
    let w = enc.header.chunks;
    assert_eq!(w as usize, 1000usize.div_ceil(fit));
    assert!(w >= 3, "{w} chunks");
    let leaves = enc.leaves();
    let mut next = 0;
    for (i, c) in enc.chunks.iter().enumerate() {
        let path = chunk_proof(&leaves, i).expect("proof");
        assert!(verify_chunk(&enc.header.root, w, i as u32, c, &path));
        let Ok(Chunk::Records { first, records }) = decode_chunk(c, 1000) else {
            panic!("chunk {i}");
        };
        assert_eq!(first, next);
        assert_eq!(records.len(), fit.min(1000 - next as usize));
        next += records.len() as u32;
    }
    let chunks: Vec<&[u8]> = enc.chunks.iter().map(Vec::as_slice).collect();
    assert_eq!(
        decode(&enc.header.encode(), &chunks).map(|(_, s)| s),
        Ok(state)
    );
}

#[test]
fn any_change_of_a_record_changes_the_id() {
    let state = sample_state();
    let id = state.encode(1, 0, [0; 32], 0).expect("encode").id();
    let changes: Vec<StateChange> = vec![
        Box::new(|s| s.records[0].top_inc = 3),
        Box::new(|s| s.records[0].open[0].suspecters[0].1[5] ^= 1),
        Box::new(|s| s.records[0].open[0].held.clear()),
        Box::new(|s| s.records[0].open[1].inc -= 1),
        Box::new(|s| s.records[1].departed_since = Some(2)),
        Box::new(|s| s.records[0].dead = false),
        Box::new(|s| s.records[1].own_leave = None),
        Box::new(|s| s.records[2].profile.as_mut().expect("p").addr.push('1')),
        Box::new(|s| s.records[2].profile.as_mut().expect("p").meta.clear()),
        Box::new(|s| s.records[2].head.as_mut().expect("h").key[0] ^= 1),
        Box::new(|s| s.records[2].head.as_mut().expect("h").seq += 1),
        Box::new(|s| s.records[3].author = "ghosts".into()),
        Box::new(|s| {
            s.records.pop();
        }),
    ];
    let mut seen = BTreeSet::from([id]);
    for change in changes {
        let mut s = state.clone();
        change(&mut s);
        let other = s.encode(1, 0, [0; 32], 0).expect("encode").id();
        assert!(seen.insert(other), "a change left the id unchanged");
    }
    // And the header's own fields.
    for (n, round, floor) in [(2, 0, 0), (1, 1, 0), (1, 0, 1)] {
        let other = state.encode(n, round, [0; 32], floor).expect("encode").id();
        assert!(seen.insert(other));
    }
}

#[test]
fn the_record_of_the_specs_example_is_172_bytes() {
    // 8-byte id, 13-byte address, one metadata pair of 10 + 10 bytes, no
    // open claims, the profile's id not carried beside the own alive id
    // (docs/design.md §13.3).
    let r = Record {
        author: "node-001".into(),
        head: Some(ChainHead {
            seq: 1,
            id: [1; 32],
            key: [2; 32],
        }),
        top_inc: 1,
        own_alive: Some([1; 32]),
        own_leave: None,
        profile: Some(RecordProfile {
            seq: 1,
            id: None,
            addr: "10.0.0.1:7946".into(),
            meta: vec![("overlay-ip".into(), "10.1.0.100".into())],
        }),
        departed_since: None,
        dead: false,
        open: vec![],
    };
    assert_eq!(record_bytes(&r).len(), 172);
    // An open suspicion adds 36 bytes per suspecter, plus 17 for its
    // incarnation (inc, two counts, the verdict flag).
    let mut s = r.clone();
    s.open = vec![OpenInc {
        inc: 1,
        suspecters: vec![(0, [3; 32]), (2, [4; 32])],
        held: vec![],
        verdict: None,
    }];
    assert_eq!(record_bytes(&s).len(), 172 + 17 + 2 * 36);
}

#[test]
fn measured_size_per_member_at_a_thousand_members() {
    // 1 000 members that joined once (id `node-NNN`, 8 bytes; addresses
    // 12 to 15 bytes; one metadata pair `overlay-ip`), through a real
    // ledger and derivation.
    let mut chains = Chains::default();
    for i in 0..1000u32 {
        let id = format!("node{i:04}");
        let b = body(&ProfileBody {
            inc: 1,
            addr: format!("10.0.{}.{}:7946", i / 250, i % 250 + 1),
            meta: vec![(
                "overlay-ip".into(),
                format!("10.1.{}.{}", i / 250, i % 250 + 1),
            )],
            signing_key: Some(hex::encode(keys(&id).public_key())),
        });
        chains.push(&id, "join", b);
    }
    let ledger = ledger_of(&chains.entries);
    let d = derive(&chains.entries, 0);
    let state = State::first(&ledger, &ledger.frontier(), &d).expect("state");
    assert_eq!(state.records.len(), 1000);
    let enc = state.encode(1, 0, [0; 32], 0).expect("encode");
    let bytes: usize = enc.chunks.iter().map(Vec::len).sum();
    eprintln!(
        "checkpoint of 1000 members: {bytes} bytes in {} chunks, {} bytes per member, header {HEADER_LEN}",
        enc.chunks.len(),
        bytes as f64 / 1000.0
    );
    assert_eq!(enc.header.chunks, 4);
    assert!((165_000..=175_000).contains(&bytes), "{bytes}");
    assert!(enc
        .chunks
        .iter()
        .all(|c| c.len() <= crate::config::CHECKPOINT_CHUNK_BYTES));
    assert_equivalent(&d, &state.load(0), &[1].into());
}

#[test]
fn a_cut_that_is_not_the_ledgers_is_refused() {
    let mut chains = Chains::default();
    chains.apply(&Op::Join("a".into(), 1, 0));
    let ledger = ledger_of(&chains.entries);
    let d = derive(&chains.entries, 0);
    let wrong = vec![("a".to_string(), 1, [9; 32])];
    assert_eq!(
        State::first(&ledger, &wrong, &d),
        Err(StateError::HeadNotHeld {
            author: "a".into(),
            seq: 1
        })
    );
    let beyond = vec![("a".to_string(), 5, [9; 32])];
    assert!(State::first(&ledger, &beyond, &d).is_err());
    // A derivation holding a claim by an author outside the cut.
    chains.apply(&Op::Suspect("b".into(), "a".into(), 1));
    let d = derive(&chains.entries, 0);
    let ledger = ledger_of(&chains.entries);
    let only_a: Vec<_> = ledger
        .frontier()
        .into_iter()
        .filter(|(a, _, _)| a == "a")
        .collect();
    assert_eq!(
        State::first(&ledger, &only_a, &d),
        Err(StateError::AuthorNotInCut("b".into()))
    );
}

#[test]
fn a_quorum_at_the_cut_stays_a_death_after_loading() {
    // Five members, three suspect `e` and one declares it dead: `e` is
    // dead at the cut; after loading, one suspecter leaves in the tail and
    // the quorum (3 of 4 live, needs 3) is lost, but the verdict is sticky
    // (13.8): `e` stays dead, until its own alive at a higher
    // incarnation. Without the sticky verdict (the derivation of every
    // entry) it is suspect again.
    let mut c = Chains::default();
    for a in ["a", "b", "c", "d", "e"] {
        c.apply(&Op::Join(a.into(), 1, 0));
    }
    for a in ["a", "b", "c"] {
        c.apply(&Op::Suspect(a.into(), "e".into(), 1));
    }
    c.apply(&Op::Dead("a".into(), "e".into(), 1));
    let ledger = ledger_of(&c.entries);
    let d = derive(&c.entries, 0);
    assert_eq!(d.claim("e").map(|c| c.state), Some(crate::PeerState::Dead));
    let state = State::first(&ledger, &ledger.frontier(), &d).expect("state");
    let e = state.records.iter().find(|r| r.author == "e").expect("e");
    assert_eq!(e.departed_since, Some(1));
    assert!(e.dead);
    assert_eq!(state.records.iter().filter(|r| r.dead).count(), 1, "only e");
    let mut loaded = state.load(0);
    assert_eq!(loaded.claim("e"), d.claim("e"));
    let before = c.entries.len();
    c.apply(&Op::Leave("c".into(), 1));
    for t in &c.entries[before..] {
        loaded.apply(t).expect("apply");
    }
    assert_eq!(
        loaded.claim("e").map(|c| c.state),
        Some(crate::PeerState::Dead)
    );
    assert_eq!(loaded.live_count(), 3);
    assert_eq!(
        derive(&c.entries, 0).claim("e").map(|c| c.state),
        Some(crate::PeerState::Suspect)
    );
    let sticky: BTreeMap<String, u64> = [("e".to_string(), 1)].into();
    assert_equivalent(&derive_sticky(&c.entries, 0, &sticky), &loaded, &[1].into());
    loaded.check_invariants();
    // Its own alive at 2 ends it.
    let before = c.entries.len();
    c.apply(&Op::Alive("e".into(), 2, 0));
    for t in &c.entries[before..] {
        loaded.apply(t).expect("apply");
    }
    assert_eq!(
        loaded.claim("e").map(|c| (c.state, c.inc)),
        Some((crate::PeerState::Alive, 2))
    );
    assert_eq!(loaded.live_count(), 4);
    assert_equivalent(&derive(&c.entries, 0), &loaded, &[1, 2].into());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), ..ProptestConfig::default() })]

    /// Hostile bytes: arbitrary input, and a valid chunk with bytes
    /// changed, cut or inserted, decode to a typed error or to a state
    /// that re-encodes to exactly those bytes; never a panic.
    #[test]
    fn the_decoder_never_panics_and_accepts_only_canonical_bytes(
        noise in proptest::collection::vec(any::<u8>(), 0..300),
        at in any::<usize>(),
        byte in any::<u8>(),
        how in 0u8..3,
        count in 1u32..6,
    ) {
        if let Ok(c) = decode_chunk(&noise, count) {
            prop_assert_eq!(c.encode().expect("encode"), noise.clone());
        }
        let _ = Header::decode(&noise);
        let mut chunk = chunk_of(&sample_state().records);
        let i = at % chunk.len();
        match how {
            0 => chunk[i] ^= byte.max(1),
            1 => chunk.truncate(i),
            _ => chunk.insert(i, byte),
        }
        if let Ok(c) = decode_chunk(&chunk, 4) {
            prop_assert_eq!(c.encode().expect("encode"), chunk);
        }
    }
}

mod agree;
mod next;

/// 5 000 members and one subject all of them suspect: the subject's
/// record (about 180 KB) is cut into parts, and every chunk, with the
/// `checkpoint-chunk` message's framing (at most 1 067 bytes, config.rs),
/// fits `MAX_MESSAGE_BYTES`.
fn suspected_by_5000() -> State {
    let base = sample_state().records[2].clone();
    let mut records: Vec<Record> = (0..5000)
        .map(|i| {
            let mut x = base.clone();
            x.author = format!("m{i:04}");
            x
        })
        .collect();
    let mut subject = base;
    subject.author = "s".into();
    subject.open = vec![OpenInc {
        inc: subject.top_inc,
        suspecters: (0..5000u32)
            .map(|i| {
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&i.to_be_bytes());
                (i, id)
            })
            .collect(),
        held: (0..5000).step_by(7).collect(),
        verdict: Some([5; 32]),
    }];
    records.push(subject);
    State { records }
}

#[test]
fn a_subject_suspected_by_5000_members_encodes_into_chunks_that_fit() {
    let state = suspected_by_5000();
    let big = record_bytes(&state.records[5000]).len();
    assert!(big > 180_000, "{big}");
    let enc = state.encode(1, 0, [0; 32], 0).expect("encode");
    let w = enc.header.chunks;
    let leaves = enc.leaves();
    let mut parts = Vec::new();
    for (i, c) in enc.chunks.iter().enumerate() {
        assert!(c.len() <= crate::config::CHECKPOINT_CHUNK_BYTES, "{i}");
        assert!(c.len() + 1_067 <= crate::config::MAX_MESSAGE_BYTES);
        let path = chunk_proof(&leaves, i).expect("proof");
        assert!(verify_chunk(&enc.header.root, w, i as u32, c, &path));
        match decode_chunk(c, 5001).expect("chunk alone") {
            Chunk::Records { records, .. } => assert!(!records.is_empty()),
            Chunk::Part {
                record,
                part,
                parts: n,
                bytes,
            } => {
                assert_eq!(record, 5000);
                assert_eq!(part as usize, parts.len());
                assert_eq!(n as usize, big.div_ceil(PART_BODY));
                parts.push(bytes);
            }
        }
    }
    assert_eq!(parts.len(), big.div_ceil(PART_BODY));
    assert!(parts.len() >= 4);
    assert_eq!(parts.concat(), record_bytes(&state.records[5000]));
    let chunks: Vec<&[u8]> = enc.chunks.iter().map(Vec::as_slice).collect();
    let (_, back) = decode(&enc.header.encode(), &chunks).expect("decode");
    assert_eq!(back, state);
    // Parts out of order, one missing, or a part not full are refused.
    let mut swapped = chunks.clone();
    let n = swapped.len();
    swapped.swap(n - 2, n - 3);
    let mut h = enc.header.clone();
    let leaves: Vec<Hash> = swapped
        .iter()
        .zip(0u32..)
        .map(|(c, i)| chunk_leaf(i, c))
        .collect();
    h.root = merkle_root(&leaves);
    assert!(matches!(
        decode(&h.encode(), &swapped),
        Err(DecodeError::BadPart(..))
    ));
    let mut missing = chunks.clone();
    missing.remove(n - 2);
    h.chunks -= 1;
    assert!(decode(&h.encode(), &missing).is_err());
    let short = &enc.chunks[n - 4][..PART_PREFIX + 10];
    assert!(matches!(
        decode_chunk(short, 5001),
        Err(DecodeError::BadPart(5000, _))
    ));
}

#[test]
fn only_the_canonical_chunk_boundaries_are_accepted() {
    // Four small records cut into two chunks instead of one: every chunk
    // decodes and the root matches, but the boundaries are not greedy.
    let state = sample_state();
    let r = &state.records;
    let body = |rs: &[Record]| -> Vec<u8> { rs.iter().flat_map(record_bytes).collect() };
    let c0 = framed(&body(&r[..2]), 2);
    let mut c1 = 2u32.to_be_bytes().to_vec();
    c1.extend_from_slice(&2u32.to_be_bytes());
    c1.extend_from_slice(&body(&r[2..]));
    let chunks = [c0.as_slice(), c1.as_slice()];
    let mut h = state.encode(1, 0, [0; 32], 0).expect("encode").header;
    h.chunks = 2;
    h.root = merkle_root(&[chunk_leaf(0, &c0), chunk_leaf(1, &c1)]);
    assert_eq!(decode(&h.encode(), &chunks), Err(DecodeError::Chunking));
    // A small record split into parts is refused likewise.
    let bytes = record_bytes(&r[3]);
    let part = |p: u32, piece: &[u8]| {
        let mut out = Vec::new();
        for v in [3u32, 0, p, 2] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(piece);
        out
    };
    // Not full: refused by the chunk alone.
    let p0 = part(0, &bytes[..10]);
    assert!(matches!(
        decode_chunk(&p0, 4),
        Err(DecodeError::BadPart(3, _))
    ));
    let p1 = part(1, &bytes[10..]);
    assert!(decode_chunk(&p1, 4).is_ok());
    // A chunk that does not start where the previous ended.
    let h1 = {
        let mut h = h.clone();
        h.root = merkle_root(&[chunk_leaf(0, &c0), chunk_leaf(1, &c0)]);
        h
    };
    assert!(matches!(
        decode(&h1.encode(), &[c0.as_slice(), c0.as_slice()]),
        Err(DecodeError::Counts(_))
    ));
}
