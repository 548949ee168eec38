//! Tests of `F` for `n > 1` (13.1-13.2): the incremental state, pruning
//! rules 2 and 3, `departed_since`, and the bound of 14.2.

use super::*;
use crate::config::{CHECKPOINT_EXPIRY, CHECKPOINT_PENDING_INCS};
use nodeplane_types::PeerState;

fn heads_of(ledger: &Ledger, cut: &BTreeMap<String, u64>) -> Vec<(String, u64, Hash)> {
    cut.iter()
        .map(|(a, &k)| (a.clone(), k, *ledger.id_at(a, k).expect("held")))
        .collect()
}

/// `State::first` over exactly the entries of `cut`, with the sticky
/// verdicts `sticky` (13.8).
fn first_at(
    chains: &Chains,
    ledger: &Ledger,
    cut: &BTreeMap<String, u64>,
    floor: u32,
    sticky: &BTreeMap<String, u64>,
) -> State {
    let covered: Vec<Entry> = chains
        .entries
        .iter()
        .filter(|e| cut.get(&e.author).is_some_and(|&k| e.seq <= k))
        .cloned()
        .collect();
    let d = derive_sticky(&covered, floor, sticky);
    State::first(ledger, &heads_of(ledger, cut), &d).expect("first")
}

/// The most pending incarnations of any record (what rule 2 bounds).
fn pending_max(s: &State) -> usize {
    s.records
        .iter()
        .map(|r| {
            r.open
                .iter()
                .filter(|o| !r.has_own() || o.inc != r.top_inc)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// The records with `departed_since` reduced to whether it is set.
fn strip(s: &State) -> Vec<Record> {
    s.records
        .iter()
        .map(|r| Record {
            departed_since: r.departed_since.map(|_| 0),
            ..r.clone()
        })
        .collect()
}

fn round_trip(succ: &Successor) {
    let enc = succ.encode(0, [7; 32]).expect("encode");
    let chunks: Vec<&[u8]> = enc.chunks.iter().map(Vec::as_slice).collect();
    let (h, back) = decode(&enc.header.encode(), &chunks).expect("decode");
    assert_eq!(back, succ.state);
    assert_eq!(h.cut, succ.cut);
    assert_eq!(h.n, succ.n);
    back.load(succ.quorum_floor).check_invariants();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    /// Without anything to prune, F over state(n − 1) and the entries
    /// between the cuts gives `State::first` over the whole cut (with the
    /// deaths of the previous checkpoint sticky, 13.8), for any
    /// sequence of cuts and any order of those entries; `departed_since`
    /// is the first checkpoint of the member's current departure.
    #[test]
    fn incremental_state_equals_first_over_the_whole_cut(
        ops in proptest::collection::vec(op(), 1..70),
        steps in 2usize..6,
        fracs in proptest::collection::vec(any::<u8>(), 36),
        floor in prop_oneof![Just(0u32), Just(3u32)],
        seed in any::<u64>(),
    ) {
        let mut chains = Chains::default();
        for o in &ops {
            chains.apply(o);
        }
        let ledger = ledger_of(&chains.entries);
        let authors: Vec<(String, u64)> =
            chains.heads.iter().map(|(a, (len, _))| (a.clone(), *len)).collect();
        let cuts: Vec<BTreeMap<String, u64>> = (0..steps)
            .map(|k| {
                authors
                    .iter()
                    .enumerate()
                    .filter_map(|(j, (a, len))| {
                        let mut v: Vec<u8> = fracs[j * 6..j * 6 + steps].to_vec();
                        v.sort_unstable();
                        let s = len * u64::from(v[k]) / 255;
                        (s > 0).then(|| (a.clone(), s))
                    })
                    .collect()
            })
            .collect();
        let mut state = first_at(&chains, &ledger, &cuts[0], floor, &BTreeMap::new());
        let departed = |s: &State| -> BTreeSet<String> {
            s.records
                .iter()
                .filter(|r| r.departed_since.is_some())
                .map(|r| r.author.clone())
                .collect()
        };
        if pending_max(&state) > CHECKPOINT_PENDING_INCS {
            return Ok(());
        }
        let mut since: BTreeMap<String, u32> =
            departed(&state).into_iter().map(|a| (a, 1)).collect();
        for (k, cut) in cuts.iter().enumerate().skip(1) {
            let n = k as u64 + 1;
            let expect = first_at(&chains, &ledger, cut, floor, &sticky_of(&state));
            if pending_max(&expect) > CHECKPOINT_PENDING_INCS {
                break;
            }
            let heads = heads_of(&ledger, cut);
            let succ = state.next(n, floor, &ledger, &heads).expect("next");
            prop_assert_eq!(strip(&succ.state), strip(&expect));
            prop_assert!(succ.expired.is_empty());
            prop_assert_eq!(
                succ.cut,
                nodeplane_entry::frontier_digest(heads.iter().map(|(a, s, id)| (a.as_str(), *s, id)))
            );
            // The entries between the cuts, in another order.
            let by_head: BTreeMap<String, ChainHead> = heads
                .iter()
                .map(|(a, s, id)| {
                    let key = *ledger.bound_key(a).expect("key");
                    (a.clone(), ChainHead { seq: *s, id: *id, key })
                })
                .collect();
            let delta: Vec<Entry> = chains
                .entries
                .iter()
                .filter(|e| {
                    let before = cuts[k - 1].get(&e.author).copied().unwrap_or(0);
                    cut.get(&e.author).is_some_and(|&s| e.seq <= s) && e.seq > before
                })
                .cloned()
                .collect();
            let again = state
                .next_with(n, floor, &by_head, &shuffled(&delta, seed ^ n))
                .expect("next_with");
            prop_assert_eq!(&again, &succ);
            // departed_since: the first checkpoint of the current run.
            let now = departed(&expect);
            since.retain(|a, _| now.contains(a));
            for a in &now {
                since.entry(a.clone()).or_insert(n as u32);
            }
            for r in &succ.state.records {
                prop_assert_eq!(r.departed_since, since.get(&r.author).copied(), "{}", r.author);
            }
            round_trip(&succ);
            state = succ.state;
        }
    }

    /// The id of state(n) does not depend on the order entries arrived in
    /// (at the ledger, at the derivation of state(n − 1), or between the
    /// cuts).
    #[test]
    fn the_id_of_a_successor_does_not_depend_on_arrival_order(
        ops in proptest::collection::vec(op(), 1..50),
        fracs in proptest::collection::vec(any::<u8>(), 6),
        s1 in any::<u64>(),
        s2 in any::<u64>(),
    ) {
        let mut chains = Chains::default();
        for o in &ops {
            chains.apply(o);
        }
        let cut = cut_of(&chains, &fracs);
        let id_of = |seed: u64| {
            let order = shuffled(&chains.entries, seed);
            let ledger = ledger_of(&order);
            let covered: Vec<Entry> = order
                .iter()
                .filter(|e| cut.get(&e.author).is_some_and(|&k| e.seq <= k))
                .cloned()
                .collect();
            let prev = State::first(&ledger, &heads_of(&ledger, &cut), &derive(&covered, 0))
                .expect("first");
            let succ = prev.next(2, 0, &ledger, &ledger.frontier()).expect("next");
            succ.encode(0, [1; 32]).expect("encode").id()
        };
        prop_assert_eq!(id_of(s1), id_of(s2));
    }
}

/// A ledger grown entry by entry, with checkpoints taken over its
/// frontier minus the chains that expired (the node's ledger drops them).
struct Run {
    chains: Chains,
    ledger: Ledger,
    state: State,
    n: u64,
    expired: BTreeSet<String>,
}

impl Run {
    fn new(chains: Chains) -> Run {
        let ledger = ledger_of(&chains.entries);
        let state =
            State::first(&ledger, &ledger.frontier(), &derive(&chains.entries, 0)).expect("first");
        Run {
            chains,
            ledger,
            state,
            n: 1,
            expired: BTreeSet::new(),
        }
    }

    fn sync(&mut self) {
        let have = self.ledger.len();
        for e in self.chains.entries.iter().skip(have) {
            let r = self.ledger.insert(e.clone(), &mut NativeVerifier);
            assert!(matches!(r, Ok(Insert::Linked(_))), "{r:?}");
        }
    }

    fn cut(&self) -> Vec<(String, u64, Hash)> {
        self.ledger
            .frontier()
            .into_iter()
            .filter(|(a, _, _)| !self.expired.contains(a))
            .collect()
    }

    fn checkpoint(&mut self) -> Successor {
        self.sync();
        self.n += 1;
        let cut = self.cut();
        let succ = self
            .state
            .next(self.n, 0, &self.ledger, &cut)
            .expect("next");
        self.expired.extend(succ.expired.iter().cloned());
        self.state = succ.state.clone();
        succ
    }

    fn record(&self, id: &str) -> Option<&Record> {
        self.state.records.iter().find(|r| r.author == id)
    }
}

fn suspect(chains: &mut Chains, a: &str, s: &str, inc: u64) {
    let b = json!({ "subject": s, "inc": inc });
    chains.push(a, "suspect", b.to_string().into_bytes());
}

#[test]
fn a_departed_record_expires_at_the_sixteenth_checkpoint_and_not_before() {
    let mut c = Chains::default();
    for a in ["a", "b", "c", "d", "e", "twin"] {
        c.profile(a, "join", 1, 0);
    }
    suspect(&mut c, "d", "c", 1);
    suspect(&mut c, "d", "ghost", 0);
    suspect(&mut c, "twin", "b", 1);
    c.apply(&Op::Held("d".into(), "b".into(), 1, true));
    let mut run = Run::new(c);
    // `a` shares its key with `twin`: neither is counted live.
    assert_eq!(run.state.load(0).live_count(), 4);
    for a in ["d", "twin", "e"] {
        run.chains
            .push(a, "leave", json!({ "inc": 1 }).to_string().into_bytes());
    }
    let s2 = run.checkpoint();
    for a in ["d", "twin", "e"] {
        assert_eq!(run.record(a).and_then(|r| r.departed_since), Some(2), "{a}");
    }
    assert!(s2.expired.is_empty());
    let mut before = None;
    for n in 3..=17u64 {
        run.chains.profile("a", "metadata", 1, n as u8);
        if n == 10 {
            // `e` comes back within the 16 checkpoints.
            run.chains.profile("e", "alive", 2, 0);
        }
        let s = run.checkpoint();
        assert!(s.expired.is_empty(), "{n}");
        assert_eq!(run.record("d").and_then(|r| r.departed_since), Some(2));
        let e_since = run.record("e").and_then(|r| r.departed_since);
        assert_eq!(e_since, (n < 10).then_some(2), "{n}");
        before = Some(run.state.load(0));
    }
    let before = before.expect("loaded");
    assert_eq!(before.live_suspecters("c", 1), 0, "d left: not counted");
    assert!(before.suspected_by("c", 1, "d"));
    // 18 − 2 = 16: `d` and `twin` expire, with what they wrote.
    let s18 = run.checkpoint();
    assert_eq!(s18.expired, vec!["d".to_string(), "twin".to_string()]);
    let names: Vec<&str> = run
        .state
        .records
        .iter()
        .map(|r| r.author.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c", "e"], "ghost went with d's suspicion");
    for r in &run.state.records {
        assert!(r.open.is_empty(), "{}: {:?}", r.author, r.open);
    }
    assert_eq!(run.record("e").and_then(|r| r.departed_since), None);
    // The cut digest is the cut's, expired chains included.
    let frontier = run.ledger.frontier();
    assert_eq!(
        s18.cut,
        nodeplane_entry::frontier_digest(frontier.iter().map(|(a, s, id)| (a.as_str(), *s, id)))
    );
    assert_ne!(s18.cut, s18.state.cut_digest());
    round_trip(&s18);
    // The key index forgets `twin`: `a` is one voice again.
    let after = run.state.load(0);
    assert_eq!(before.live_count(), 3);
    assert_eq!(after.live_count(), 4);
    assert_eq!(after.claim("d"), None);
    assert_eq!(after.member("twin"), None);
    // A member back within 16 keeps its record; leaving again restarts
    // the count.
    run.chains
        .push("e", "leave", json!({ "inc": 2 }).to_string().into_bytes());
    run.checkpoint();
    assert_eq!(run.record("e").and_then(|r| r.departed_since), Some(19));
    for _ in 20..35 {
        run.checkpoint();
        assert!(run.record("e").is_some());
    }
    assert_eq!(run.checkpoint().expired, vec!["e".to_string()]);
    assert_eq!(run.n, 35);
    assert_eq!(CHECKPOINT_EXPIRY, 16);
}

#[test]
fn only_the_four_lowest_pending_incarnations_are_kept() {
    let mut c = Chains::default();
    c.profile("a", "join", 1, 0);
    c.profile("b", "join", 1, 0);
    for inc in [1, 2, 3, 5, 9, 1000, u64::MAX] {
        suspect(&mut c, "b", "a", inc);
    }
    for inc in [7, 0, 1, 2, 3] {
        suspect(&mut c, "b", "ghost", inc);
    }
    let mut run = Run::new(c);
    let incs = |run: &Run, id: &str| -> Vec<u64> {
        run.record(id)
            .map_or(vec![], |r| r.open.iter().map(|o| o.inc).collect())
    };
    // Checkpoint 1 prunes nothing (13.4).
    assert_eq!(incs(&run, "a"), [1, 2, 3, 5, 9, 1000, u64::MAX]);
    assert_eq!(incs(&run, "ghost"), [0, 1, 2, 3, 7]);
    run.checkpoint();
    // `a` announced 1: 1 is not pending, 2, 3, 5, 9 are its 4 lowest.
    assert_eq!(incs(&run, "a"), [1, 2, 3, 5, 9]);
    // `ghost` announced nothing: every incarnation is pending.
    assert_eq!(incs(&run, "ghost"), [0, 1, 2, 3]);
    // `a` refutes at 3: 1 and 2 are moot, 5 and 9 pending.
    run.chains.profile("a", "alive", 3, 0);
    run.checkpoint();
    assert_eq!(incs(&run, "a"), [3, 5, 9]);
    assert_eq!(run.record("a").map(|r| r.top_inc), Some(3));
    // Dropped claims stay dropped when `a` reaches their incarnation.
    run.chains.profile("a", "alive", 1000, 0);
    run.checkpoint();
    assert_eq!(incs(&run, "a"), Vec::<u64>::new());
    assert_eq!(
        run.state.load(0).claim("a").map(|c| c.state),
        Some(PeerState::Alive)
    );
}

#[test]
fn f_refuses_inputs_that_are_not_the_next_cut() {
    let mut c = Chains::default();
    c.profile("a", "join", 1, 0);
    c.profile("b", "join", 1, 0);
    let run = Run::new(c);
    let cut = run.ledger.frontier();
    assert_eq!(
        run.state.next(1, 0, &run.ledger, &cut),
        Err(StateError::NumberTooSmall(1))
    );
    let without_b: Vec<_> = cut.iter().filter(|(a, _, _)| a == "a").cloned().collect();
    assert!(matches!(
        run.state.next(2, 0, &run.ledger, &without_b),
        Err(StateError::CutShrinks { .. })
    ));
    // Another ledger whose `b` is another chain.
    let mut other = Chains::default();
    other.profile("a", "join", 1, 0);
    other.profile("b", "join", 1, 9);
    let l2 = ledger_of(&other.entries);
    assert!(matches!(
        run.state.next(2, 0, &l2, &l2.frontier()),
        Err(StateError::Diverged { .. })
    ));
    // Entries given twice, or missing.
    let heads: BTreeMap<String, ChainHead> = cut
        .iter()
        .map(|(a, s, id)| {
            let key = *run.ledger.bound_key(a).expect("key");
            (
                a.clone(),
                ChainHead {
                    seq: *s,
                    id: *id,
                    key,
                },
            )
        })
        .collect();
    let mut c3 = Chains::default();
    c3.profile("a", "join", 1, 0);
    c3.profile("b", "join", 1, 0);
    let e = c3.profile("a", "metadata", 1, 3);
    let l3 = ledger_of(&c3.entries);
    let mut h3 = heads.clone();
    h3.insert(
        "a".into(),
        ChainHead {
            seq: 2,
            id: e.id,
            key: *l3.bound_key("a").expect("key"),
        },
    );
    assert!(matches!(
        run.state.next_with(2, 0, &h3, &[e.clone(), e.clone()]),
        Err(StateError::Delta(_))
    ));
    assert!(matches!(
        run.state.next_with(2, 0, &h3, &[]),
        Err(StateError::Delta(_))
    ));
    assert!(run.state.next_with(2, 0, &h3, &[e]).is_ok());
}

#[derive(Clone, Debug)]
enum Ev {
    Join,
    Leave(u8),
    Kill(u8),
    Back(u8),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        3 => Just(Ev::Join),
        2 => any::<u8>().prop_map(Ev::Leave),
        3 => any::<u8>().prop_map(Ev::Kill),
        1 => any::<u8>().prop_map(Ev::Back),
    ]
}

/// Members whose claim in `d` is `alive` or `suspect`, among `ids`.
fn live_in(d: &Derived, ids: &BTreeSet<String>) -> Vec<String> {
    ids.iter()
        .filter(|id| d.claim(id).is_some_and(|c| c.state.is_live()))
        .cloned()
        .collect()
}

/// What the view after expiry is, from the entries alone: the derivation
/// of every entry except those an expired member wrote and those about
/// it. Its `confirm-dead` entries stay, as a record keeps a verdict's id
/// and not its author (13.2); they count no vote.
fn expiry_model(
    entries: &[Entry],
    expired: &BTreeSet<String>,
    sticky: &BTreeMap<String, u64>,
) -> Derived {
    let subject = |e: &Entry| -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&e.body).ok()?;
        v.get("subject")?.as_str().map(str::to_string)
    };
    let kept: Vec<Entry> = entries
        .iter()
        .filter(|e| !expired.contains(&e.author) || e.kind == "confirm-dead")
        .filter(|e| subject(e).is_none_or(|s| !expired.contains(&s)))
        .cloned()
        .collect();
    derive_sticky(&kept, 0, sticky)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(24), ..ProptestConfig::default() })]

    /// 14.2's bound: with churn (joins, leaves, deaths by quorum, returns),
    /// every checkpoint holds at most the members not departed plus those
    /// departed within the last 16 checkpoints, and every member not
    /// departed keeps its record. Here the count is exactly that (no
    /// claims about ids without a chain). Both are read from [`expiry_model`]
    /// (every entry, with what expiry removed taken out), not from the
    /// derivation of every entry: once a member expired, that derivation
    /// can disagree with the view (a verdict that loses its quorum when
    /// members join makes the expired member `suspect` there again, §5),
    /// and expiry is final (13.2). A member expires exactly when the model
    /// has had it departed for 16 checkpoints, and never comes back.
    #[test]
    fn churn_keeps_the_record_count_bounded(
        plan in proptest::collection::vec(proptest::collection::vec(ev(), 1..4), 25..60),
    ) {
        let mut c = Chains::default();
        let mut ids: BTreeSet<String> = BTreeSet::new();
        for i in 0..6 {
            let id = format!("m{i:03}");
            c.profile(&id, "join", 1, 0);
            ids.insert(id);
        }
        let mut fresh = 6;
        let mut run = Run::new(c);
        // Per id, the checkpoint its current departure began at (unpruned).
        let mut began: BTreeMap<String, u64> = BTreeMap::new();
        let mut max_records = 0;
        // The model's sticky verdicts: its dead members at the last cut.
        let mut sticky: BTreeMap<String, u64> = BTreeMap::new();
        for events in &plan {
            for e in events {
                let view = run.state.load(0);
                let mut tail = view.clone();
                for x in run.chains.entries.iter().skip(run.ledger.len()) {
                    let _ = tail.apply(x);
                }
                let live = live_in(&tail, &ids);
                match e {
                    Ev::Join => {
                        let id = format!("m{fresh:03}");
                        fresh += 1;
                        run.chains.profile(&id, "join", 1, 0);
                        ids.insert(id);
                    }
                    Ev::Leave(i) if live.len() > 4 => {
                        let id = &live[usize::from(*i) % live.len()];
                        let inc = tail.claim(id).map_or(1, |c| c.inc);
                        run.chains
                            .push(id, "leave", json!({ "inc": inc }).to_string().into_bytes());
                    }
                    Ev::Kill(i) if live.len() > 4 => {
                        let victim = live[usize::from(*i) % live.len()].clone();
                        let inc = tail.claim(&victim).map_or(1, |c| c.inc);
                        let others: Vec<&String> = live.iter().filter(|a| **a != victim).collect();
                        let quorum = tail.quorum_needed();
                        for a in others.iter().take(quorum) {
                            suspect(&mut run.chains, a, &victim, inc);
                        }
                        let b = json!({ "subject": victim, "inc": inc, "evidence": [], "suspecters": quorum });
                        run.chains.push(others[0], "confirm-dead", b.to_string().into_bytes());
                    }
                    Ev::Back(i) => {
                        // A departed member that still has a record restarts.
                        let gone: Vec<&Record> = run
                            .state
                            .records
                            .iter()
                            .filter(|r| r.departed_since.is_some())
                            .collect();
                        if !gone.is_empty() {
                            let r = gone[usize::from(*i) % gone.len()];
                            let (id, inc) = (r.author.clone(), r.top_inc.saturating_add(1));
                            run.chains.profile(&id, "alive", inc, 0);
                        }
                    }
                    _ => {}
                }
            }
            let expired_before = run.expired.clone();
            let succ = run.checkpoint();
            let n = succ.n;
            // Every entry up to the cut, less what expired before it.
            let model = expiry_model(&run.chains.entries, &expired_before, &sticky);
            sticky = ids
                .iter()
                .filter_map(|id| {
                    let c = model.claim(id)?;
                    (c.state == PeerState::Dead).then(|| (id.clone(), c.inc))
                })
                .collect();
            // The records flag exactly those, less the ones expiring now.
            let mut flagged = sticky.clone();
            flagged.retain(|id, _| !succ.expired.contains(id));
            prop_assert_eq!(&flagged, &sticky_of(&run.state), "n {}", n);
            let mut not_departed = 0usize;
            let mut recent = 0usize;
            for id in &ids {
                if expired_before.contains(id) {
                    prop_assert!(run.record(id).is_none(), "{} came back at {}", id, n);
                    continue;
                }
                let departed = model
                    .claim(id)
                    .is_some_and(|c| matches!(c.state, PeerState::Left | PeerState::Dead));
                if departed {
                    let b = *began.entry(id.clone()).or_insert(n);
                    let expires = n - b >= CHECKPOINT_EXPIRY;
                    prop_assert_eq!(succ.expired.contains(id), expires, "{} at {}", id, n);
                    if !expires {
                        recent += 1;
                    }
                } else {
                    began.remove(id);
                    not_departed += 1;
                    prop_assert!(!succ.expired.contains(id), "{} expired at {}", id, n);
                    prop_assert!(run.record(id).is_some(), "{} lost its record at {}", id, n);
                }
            }
            let records = run.state.records.len();
            // The bound, and here exactly it: no id is ever a ghost.
            prop_assert_eq!(records, not_departed + recent, "n {}", n);
            max_records = max_records.max(records);
            round_trip(&succ);
        }
        prop_assert!(max_records > 0);
    }
}

fn confirm_dead(chains: &mut Chains, a: &str, s: &str, inc: u64, suspecters: usize) {
    let b = json!({ "subject": s, "inc": inc, "evidence": [], "suspecters": suspecters });
    chains.push(a, "confirm-dead", b.to_string().into_bytes());
}

/// The case of 13.8: `x`'s death rests on exactly the quorum, one of its
/// suspecters (`y`) died earlier and so expires first. Without the sticky
/// verdict `x` would turn `suspect` when `y` expires and never expire;
/// with it `x` stays dead and expires 16 checkpoints after its death.
#[test]
fn a_death_outlives_the_expiry_of_a_suspecter_and_expires_on_time() {
    let mut c = Chains::default();
    for a in ["a", "b", "c", "d", "x", "y"] {
        c.profile(a, "join", 1, 0);
    }
    // `y` suspects `x`, then dies (4 of 6, needs 4).
    suspect(&mut c, "y", "x", 1);
    for a in ["a", "b", "c", "d"] {
        suspect(&mut c, a, "y", 1);
    }
    confirm_dead(&mut c, "a", "y", 1, 4);
    // Checkpoint 1 holds `y` dead.
    let mut run = Run::new(c);
    assert_eq!(
        run.record("y").map(|r| (r.dead, r.departed_since)),
        Some((true, Some(1)))
    );
    assert!(run.checkpoint().expired.is_empty());
    // `x` dies on exactly the quorum: y (dead, still in C), a and b are 3
    // of L = 5, which needs 3.
    suspect(&mut run.chains, "a", "x", 1);
    suspect(&mut run.chains, "b", "x", 1);
    confirm_dead(&mut run.chains, "a", "x", 1, 3);
    run.checkpoint();
    assert_eq!(
        run.record("x").map(|r| (r.dead, r.departed_since)),
        Some((true, Some(3)))
    );
    let view = run.state.load(0);
    assert_eq!(view.live_suspecters("x", 1), 3);
    assert_eq!(view.quorum_needed(), 3);
    for n in 4..=16u64 {
        run.chains.profile("a", "metadata", 1, n as u8);
        assert!(run.checkpoint().expired.is_empty(), "{n}");
    }
    // 17 − 1 = 16: `y` expires with its suspicion of `x`.
    run.chains.profile("a", "metadata", 1, 17);
    let s17 = run.checkpoint();
    assert_eq!(s17.expired, vec!["y".to_string()]);
    let view = run.state.load(0);
    view.check_invariants();
    assert_eq!(view.live_suspecters("x", 1), 2);
    // L is a, b, c and d: 3 needed, and only a and b suspect `x` now.
    assert_eq!(view.live_count(), 4);
    assert_eq!(view.quorum_needed(), 3);
    assert_eq!(view.claim("x").map(|c| c.state), Some(PeerState::Dead));
    assert_eq!(
        run.record("x").map(|r| (r.dead, r.departed_since)),
        Some((true, Some(3)))
    );
    // Without the sticky verdict it would be suspect: the model with
    // `y`'s entries taken out and no verdict sticky.
    let unsticky = expiry_model(&run.chains.entries, &run.expired, &BTreeMap::new());
    assert_eq!(
        unsticky.claim("x").map(|c| c.state),
        Some(PeerState::Suspect)
    );
    // 18: `x` is still there; 19 − 3 = 16: it expires on time.
    assert!(run.checkpoint().expired.is_empty());
    assert_eq!(
        run.state.load(0).claim("x").map(|c| c.state),
        Some(PeerState::Dead)
    );
    let s19 = run.checkpoint();
    assert_eq!(s19.expired, vec!["x".to_string()]);
    assert!(run.record("x").is_none());
    round_trip(&s19);
}
