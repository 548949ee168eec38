//! Claims only about what the subject said, and verdicts every receiver
//! checks (docs/design.md §2 and §5): hostile claims leave the subject
//! alive; a verdict takes effect once its evidence is held, in any arrival
//! order; the incremental view equals a from-scratch reference.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::node::*;
use nodeplane_core::ledger::{Entry, Hash, Insert, Ledger};
use nodeplane_core::membership::{derive_view, facts, Derived, Fact};
use nodeplane_core::{Member, PeerState};
use proptest::prelude::*;

use PeerState::*;

/// Five members `a`..`e` at incarnation 1, `a` also at 2.
fn cluster() -> ChainBuilder {
    let mut b = ChainBuilder::default();
    for id in ["a", "b", "c", "d", "e"] {
        b.join(id, 1);
    }
    b.alive("a", 2);
    b
}

fn state_of(entries: &[Entry], id: &str) -> (PeerState, u64) {
    let m = derive_view(entries)
        .into_iter()
        .find(|m| m.id == id)
        .expect("member");
    (m.state, m.incarnation)
}

#[test]
fn a_verdict_at_the_largest_incarnation_from_a_fresh_author_is_inert() {
    let mut b = cluster();
    b.dead("x", "a", u64::MAX);
    assert_eq!(state_of(&b.entries, "a"), (Alive, 2));
    // Even with a quorum of suspicions at that incarnation.
    for id in ["b", "c", "d", "e"] {
        b.suspect(id, "a", u64::MAX);
    }
    assert_eq!(state_of(&b.entries, "a"), (Alive, 2));
    // And the subject can still refute anything at what it announced.
    b.suspect("b", "a", 2);
    assert_eq!(state_of(&b.entries, "a"), (Suspect, 2));
    b.alive("a", 3);
    assert_eq!(state_of(&b.entries, "a"), (Alive, 3));
}

#[test]
fn a_single_author_verdict_at_the_current_incarnation_is_inert() {
    let mut b = cluster();
    b.dead("x", "a", 2);
    assert_eq!(state_of(&b.entries, "a"), (Alive, 2));
    // A member's verdict with its own suspicion only: one of five.
    b.suspect("b", "a", 2);
    b.dead("b", "a", 2);
    assert_eq!(state_of(&b.entries, "a"), (Suspect, 2));
    // Suspicions by authors that never joined do not count either.
    for f in ["f1", "f2", "f3", "f4"] {
        b.suspect(f, "a", 2);
    }
    assert_eq!(state_of(&b.entries, "a"), (Suspect, 2));
}

#[test]
fn a_suspicion_at_an_incarnation_never_announced_is_inert() {
    let mut b = cluster();
    b.suspect("b", "a", 3);
    b.suspect("c", "a", 7);
    assert_eq!(state_of(&b.entries, "a"), (Alive, 2));
    // ... until the subject announces it.
    b.alive("a", 3);
    assert_eq!(state_of(&b.entries, "a"), (Suspect, 3));
}

#[test]
fn a_verdict_waits_for_its_evidence() {
    let mut b = cluster();
    b.dead("b", "a", 2);
    assert_eq!(state_of(&b.entries, "a"), (Alive, 2));
    b.suspect("b", "a", 2);
    b.suspect("c", "a", 2);
    assert_eq!(state_of(&b.entries, "a"), (Suspect, 2));
    // Three of five: a strict majority.
    b.suspect("d", "a", 2);
    assert_eq!(state_of(&b.entries, "a"), (Dead, 2));
}

#[test]
fn leavers_and_joiners_move_the_quorum() {
    let mut b = cluster();
    for id in ["b", "c", "d"] {
        b.suspect(id, "a", 2);
    }
    b.dead("b", "a", 2);
    assert_eq!(state_of(&b.entries, "a"), (Dead, 2));
    // Two newcomers: seven counted live, three of them are not enough.
    b.join("f", 1);
    b.join("g", 1);
    assert_eq!(state_of(&b.entries, "a"), (Suspect, 2));
    // A suspecter that leaves no longer counts.
    b.suspect("e", "a", 2);
    assert_eq!(state_of(&b.entries, "a"), (Dead, 2));
    b.leave("e", 1);
    b.leave("d", 1);
    assert_eq!(state_of(&b.entries, "a"), (Suspect, 2));
}

#[test]
fn members_declared_dead_one_after_another_lower_the_bar() {
    // Five members; e dies (four suspecters), then d (three of the four
    // left), then c: two of the three left is still a strict majority.
    let mut b = cluster();
    for id in ["a", "b", "c", "d"] {
        b.suspect(id, "e", 1);
    }
    b.dead("a", "e", 1);
    for id in ["a", "b", "c"] {
        b.suspect(id, "d", 1);
    }
    b.dead("a", "d", 1);
    for id in ["a", "b"] {
        b.suspect(id, "c", 1);
    }
    b.dead("a", "c", 1);
    let dead: Vec<_> = derive_view(&b.entries)
        .into_iter()
        .filter(|m| m.state == Dead)
        .map(|m| m.id)
        .collect();
    assert_eq!(dead, ["c", "d", "e"]);
    // Without e's and d's verdicts, two of five cannot kill c.
    let mut b2 = cluster();
    for id in ["a", "b"] {
        b2.suspect(id, "c", 1);
    }
    b2.dead("a", "c", 1);
    assert_eq!(state_of(&b2.entries, "c"), (Suspect, 1));
}

#[test]
fn the_configured_quorum_floor_is_applied_by_receivers() {
    let mut b = cluster();
    for id in ["b", "c", "d"] {
        b.suspect(id, "a", 2);
    }
    b.dead("b", "a", 2);
    let view = |floor: u32| {
        let mut d = Derived::with_quorum_floor(floor);
        for e in &b.entries {
            d.apply(e).unwrap();
        }
        d.member("a").unwrap().state
    };
    assert_eq!(view(0), Dead);
    assert_eq!(view(3), Dead);
    assert_eq!(view(4), Suspect);
}

// ----- a from-scratch reference, and the property tests ------------------

/// The view of an entry set computed from scratch, the definition of
/// docs/design.md §2 and §5 written as plainly as possible: the least `V`
/// is found by iterating from the empty set.
fn reference(entries: &[Entry]) -> Vec<Member> {
    #[derive(Default)]
    struct S {
        profile: Option<(u64, Member)>,
        alive: BTreeMap<u64, Hash>,
        left: BTreeMap<u64, Hash>,
        suspects: BTreeMap<u64, BTreeMap<String, Hash>>,
        verdicts: BTreeMap<u64, Hash>,
    }
    let mut subjects: BTreeMap<String, S> = BTreeMap::new();
    let min = |m: &mut BTreeMap<u64, Hash>, k: u64, id: Hash| {
        let v = m.entry(k).or_insert(id);
        *v = (*v).min(id);
    };
    for e in entries {
        let Ok(fs) = facts(e) else { continue };
        for f in fs {
            match f {
                Fact::Claim {
                    subject,
                    inc,
                    state,
                } => {
                    let s = subjects.entry(subject).or_default();
                    match state {
                        Alive => min(&mut s.alive, inc, e.id),
                        Left => min(&mut s.left, inc, e.id),
                        Dead => min(&mut s.verdicts, inc, e.id),
                        Suspect => {
                            let a = s.suspects.entry(inc).or_default();
                            let v = a.entry(e.author.clone()).or_insert(e.id);
                            *v = (*v).min(e.id);
                        }
                    }
                }
                Fact::Profile { addr, meta } => {
                    let s = subjects.entry(e.author.clone()).or_default();
                    if s.profile.as_ref().is_none_or(|(seq, _)| e.seq > *seq) {
                        let m = Member {
                            id: e.author.clone(),
                            address: addr,
                            state: Alive,
                            incarnation: 0,
                            metadata: meta,
                        };
                        s.profile = Some((e.seq, m));
                    }
                }
            }
        }
    }
    // Claims without verdicts.
    let base: BTreeMap<String, Option<(u64, PeerState)>> = subjects
        .iter()
        .map(|(id, s)| {
            let top = s.alive.keys().chain(s.left.keys()).max().copied();
            let claim = top.map(|i| {
                if s.left.contains_key(&i) {
                    (i, Left)
                } else if s.suspects.get(&i).is_some_and(|a| !a.is_empty()) {
                    (i, Suspect)
                } else {
                    (i, Alive)
                }
            });
            (id.clone(), claim)
        })
        .collect();
    let counted: BTreeSet<&String> = subjects
        .iter()
        .filter(|(id, s)| s.profile.is_some() && base[*id].is_none_or(|(_, st)| st != Left))
        .map(|(id, _)| id)
        .collect();
    let support = |id: &String| -> Option<usize> {
        let (inc, st) = base[id]?;
        let s = &subjects[id];
        if st == Left || !s.verdicts.contains_key(&inc) {
            return None;
        }
        Some(
            s.suspects
                .get(&inc)
                .map_or(0, |a| a.keys().filter(|x| counted.contains(x)).count()),
        )
    };
    let mut v: BTreeSet<String> = BTreeSet::new();
    loop {
        let live = counted.len() - v.len();
        let needed = live / 2 + 1;
        let next: BTreeSet<String> = subjects
            .keys()
            .filter(|id| support(id).is_some_and(|k| k >= needed))
            .cloned()
            .collect();
        if next == v {
            break;
        }
        assert!(next.is_superset(&v), "the iteration only grows");
        v = next;
    }
    subjects
        .iter()
        .filter_map(|(id, s)| {
            let (_, mut m) = s.profile.clone()?;
            if let Some((inc, st)) = base[id] {
                m.incarnation = inc;
                m.state = if v.contains(id) { Dead } else { st };
            }
            Some(m)
        })
        .collect()
}

/// A random entry set where verdicts with and without quorum, inert and
/// effective suspicions, leaves and rejoins all occur.
fn hostile_entries(seed: u64, n: usize) -> Vec<Entry> {
    let authors = ["a", "b", "c", "d", "e", "f", "g"];
    let mut b = ChainBuilder::default();
    let mut x = seed;
    let mut next = |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    for a in authors.iter().take(5) {
        b.join(a, 1);
    }
    for _ in 0..n {
        let author = authors[next(7) as usize];
        let subject = authors[next(7) as usize];
        let inc = match next(8) {
            0 => u64::MAX,
            k => 1 + k % 3,
        };
        // Every chain starts with a `join` declaring its author's key
        // (anything else at seq 1 is refused on receipt): "f" and "g"
        // join late, at whatever they write first.
        if !b.entries.iter().any(|e| e.author == author) {
            b.join(author, inc);
            continue;
        }
        match next(12) {
            0 => b.alive(author, inc),
            1 => b.join(author, inc),
            2 => b.leave(author, inc),
            3 | 4 if subject != author => b.dead(author, subject, inc),
            _ if subject != author => b.suspect(author, subject, inc),
            _ => b.push(author, "note", b"{}".to_vec()),
        };
    }
    b.entries
}

fn shuffled(entries: &[Entry], seed: u64) -> Vec<Entry> {
    let mut v = entries.to_vec();
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Inserting in any order, the incremental view equals the reference
    /// on the linked entries after every step, so a verdict takes effect
    /// exactly when its evidence is held, whatever arrived first.
    #[test]
    fn the_incremental_view_is_the_reference_after_every_step(
        seed in any::<u64>(), n in 0usize..80, order in any::<u64>()
    ) {
        let entries = hostile_entries(seed, n);
        let mut l = Ledger::new();
        let mut d = Derived::new();
        let mut linked_so_far = Vec::new();
        for e in shuffled(&entries, order) {
            if let Ok(Insert::Linked(linked)) = l.insert(e, &mut NativeVerifier) {
                for x in linked {
                    let _ = d.apply(&x);
                    linked_so_far.push(x);
                }
                d.check_invariants();
                prop_assert_eq!(d.members(), reference(&linked_so_far));
            }
        }
        prop_assert_eq!(l.pending_len(), 0);
        prop_assert_eq!(d.members(), reference(&entries));
    }

    /// One subject, a quorum of suspicions and a verdict, delivered in any
    /// order: dead exactly once the verdict and the third suspicion are
    /// both held.
    #[test]
    fn a_verdict_takes_effect_once_its_evidence_arrives(order in any::<u64>()) {
        let mut b = cluster();
        let setup = b.entries.len();
        b.dead("e", "a", 2);
        for id in ["b", "c", "d"] {
            b.suspect(id, "a", 2);
        }
        let (base, rest) = b.entries.split_at(setup);
        let mut d = Derived::new();
        for e in base {
            d.apply(e).unwrap();
        }
        let mut held = (false, 0);
        for e in shuffled(rest, order) {
            d.apply(&e).unwrap();
            if e.kind == "confirm-dead" { held.0 = true } else { held.1 += 1 }
            let expect = if held.0 && held.1 == 3 { Dead } else if held.1 > 0 { Suspect } else { Alive };
            prop_assert_eq!(d.member("a").unwrap().state, expect, "{:?}", held);
        }
    }
}

/// Found by fuzzing (fuzz/artifacts-kept/node_sequence): a profile whose
/// address is not `ip:port`, or whose author is not a valid node id, made a
/// member no receiver could probe indirectly. Such an entry stays in its
/// author's chain but says nothing about membership.
#[test]
fn a_profile_with_an_unusable_address_or_id_is_no_member() {
    let profile = |author: &str, addr: &str| {
        let body = format!(r#"{{"inc":1,"addr":"{addr}","meta":[]}}"#).into_bytes();
        Entry::new(author, 1, nodeplane_entry::GENESIS_PREV, 1, "join", body)
    };
    let good = profile("n1", "10.0.0.1:7000");
    for bad in [
        profile("n2", ""),
        profile("n2", "10.0.0.2"),
        profile("n2", "not an address"),
        profile("\u{7f}", "10.0.0.3:7000"),
        profile("", "10.0.0.3:7000"),
    ] {
        assert!(facts(&bad).is_err(), "{:?} {:?}", bad.author, bad.body);
        let view = derive_view([&good, &bad]);
        let ids: Vec<&str> = view.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["n1"], "{:?}", String::from_utf8_lossy(&bad.body));
    }
}
