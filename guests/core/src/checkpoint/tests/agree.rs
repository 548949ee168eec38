//! Tests of agreement (13.4): bodies, tallies, outcomes, proposers.

use super::*;

fn vote(c: &mut Chains, a: &str, n: u64, round: u32, id: Option<Hash>) -> Entry {
    c.push(a, KIND_CHECKPOINT_VOTE, Vote { n, round, id }.body())
}

fn voter_names(k: usize) -> Vec<String> {
    (0..k).map(|i| format!("v{i:02}")).collect()
}

/// Joins every voter (so chains start with a `join`).
fn joined(names: &[String]) -> Chains {
    let mut c = Chains::default();
    for a in names {
        c.profile(a, "join", 1, 0);
    }
    c
}

#[derive(Clone, Debug)]
enum Act {
    Vote(u8),
    Skip,
    Leave,
    OtherRound,
    Garbage,
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        4 => (0u8..3).prop_map(Act::Vote),
        2 => Just(Act::Skip),
        1 => Just(Act::Leave),
        1 => Just(Act::OtherRound),
        1 => Just(Act::Garbage),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// Safety and monotonicity: under any assignment of votes, leaves and
    /// noise, added in any interleaving of the voters' chains, at most one
    /// id is ever agreed; an agreed or void round stays so; agreed and
    /// void never hold together.
    #[test]
    fn at_most_one_agreed_and_outcomes_are_monotone(
        k in 1usize..12,
        acts in proptest::collection::vec(proptest::collection::vec(act(), 0..4), 12),
        outsiders in proptest::collection::vec(0u8..3, 0..6),
        seed in any::<u64>(),
    ) {
        let names = voter_names(k);
        let mut c = joined(&names);
        let joins = c.entries.len();
        for (a, list) in names.iter().zip(&acts) {
            for x in list {
                match x {
                    Act::Vote(i) => { vote(&mut c, a, 2, 0, Some([*i; 32])); }
                    Act::Skip => { vote(&mut c, a, 2, 0, None); }
                    Act::Leave => {
                        c.push(a, "leave", json!({ "inc": 1 }).to_string().into_bytes());
                    }
                    Act::OtherRound => { vote(&mut c, a, 2, 1, Some([0; 32])); }
                    Act::Garbage => {
                        c.push(a, KIND_CHECKPOINT_VOTE, b"{\"n\":2,\"round\":0,\"id\":\"zz\"}".to_vec());
                    }
                }
            }
        }
        // Non-voters vote too: ignored.
        for (j, i) in outsiders.iter().enumerate() {
            let a = format!("x{j}");
            c.profile(&a, "join", 1, 0);
            vote(&mut c, &a, 2, 0, Some([*i; 32]));
        }
        // A random interleaving that keeps each chain in order.
        let order = shuffled(&c.entries[joins..], seed);
        let mut by_author: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        for e in &c.entries[joins..] {
            by_author.entry(e.author.as_str()).or_default().push(e);
        }
        let mut next: BTreeMap<&str, usize> = BTreeMap::new();
        let mut held: Vec<Entry> = c.entries[..joins].to_vec();
        let mut agreed: Option<Hash> = None;
        let mut void = false;
        for pick in &order {
            let a = pick.author.as_str();
            let i = next.entry(a).or_insert(0);
            held.push(by_author[a][*i].clone());
            *i += 1;
            let t = tally(&held, &names, 2, 0);
            prop_assert_eq!(t.voters, k);
            prop_assert_eq!(
                t.votes.values().sum::<usize>() + t.skips + t.left + t.undecided,
                k
            );
            let winners = t.votes.values().filter(|&&v| 2 * v > t.d()).count();
            prop_assert!(winners <= 1);
            match t.outcome() {
                Outcome::Agreed(id) => {
                    prop_assert!(!void, "void, then agreed");
                    prop_assert!(agreed.is_none_or(|a| a == id), "two agreed");
                    agreed = Some(id);
                }
                Outcome::Void => {
                    prop_assert!(agreed.is_none(), "agreed, then void");
                    void = true;
                }
                Outcome::Open => prop_assert!(agreed.is_none() && !void, "undone"),
            }
        }
    }
}

#[test]
fn a_voters_later_vote_and_a_non_voters_vote_are_ignored() {
    let names = voter_names(3);
    let mut c = joined(&names);
    vote(&mut c, "v00", 2, 0, Some([1; 32]));
    vote(&mut c, "v00", 2, 0, Some([2; 32]));
    vote(&mut c, "v01", 2, 0, Some([2; 32]));
    c.profile("outsider", "join", 1, 0);
    vote(&mut c, "outsider", 2, 0, Some([2; 32]));
    let t = tally(&c.entries, &names, 2, 0);
    assert_eq!(t.votes.get(&[1; 32]), Some(&1));
    assert_eq!(t.votes.get(&[2; 32]), Some(&1));
    assert_eq!(t.undecided, 1);
    assert_eq!(t.outcome(), Outcome::Open);
    // Arrival order does not matter: the first in chain order counts.
    let mut rev = c.entries.clone();
    rev.reverse();
    assert_eq!(tally(&rev, &names, 2, 0), t);
    // A vote after a leave is ignored; a vote before it stands.
    c.push("v02", "leave", json!({ "inc": 1 }).to_string().into_bytes());
    vote(&mut c, "v02", 2, 0, Some([1; 32]));
    let t = tally(&c.entries, &names, 2, 0);
    assert_eq!((t.left, t.d(), t.undecided), (1, 2, 0));
    assert_eq!(t.votes.get(&[1; 32]), Some(&1));
    assert_eq!(
        t.outcome(),
        Outcome::Void,
        "split 1:1 of D = 2, nobody undecided"
    );
}

#[test]
fn void_needs_every_undecided_voter_counted() {
    let names = voter_names(5);
    let mut c = joined(&names);
    vote(&mut c, "v00", 2, 0, Some([1; 32]));
    vote(&mut c, "v01", 2, 0, Some([1; 32]));
    vote(&mut c, "v02", 2, 0, None);
    // 2 + 2 undecided could still reach 3 of 5.
    assert_eq!(tally(&c.entries, &names, 2, 0).outcome(), Outcome::Open);
    vote(&mut c, "v03", 2, 0, None);
    // 2 + 1 = 3 > 5/2: still open.
    assert_eq!(tally(&c.entries, &names, 2, 0).outcome(), Outcome::Open);
    vote(&mut c, "v04", 2, 0, Some([9; 32]));
    assert_eq!(tally(&c.entries, &names, 2, 0).outcome(), Outcome::Void);
    // Another round is counted apart.
    assert_eq!(tally(&c.entries, &names, 2, 1).undecided, 5);
    // A strict majority agrees.
    let mut c = joined(&names);
    for a in ["v00", "v01", "v02"] {
        vote(&mut c, a, 2, 0, Some([1; 32]));
    }
    assert_eq!(
        tally(&c.entries, &names, 2, 0).outcome(),
        Outcome::Agreed([1; 32])
    );
    // Leaving lowers D: 2 of D = 3 agree.
    let mut c = joined(&names);
    for a in ["v00", "v01"] {
        vote(&mut c, a, 2, 0, Some([1; 32]));
    }
    for a in ["v03", "v04"] {
        c.push(a, "leave", json!({ "inc": 1 }).to_string().into_bytes());
    }
    assert_eq!(
        tally(&c.entries, &names, 2, 0).outcome(),
        Outcome::Agreed([1; 32])
    );
}

#[test]
fn only_the_rounds_proposer_proposes() {
    let names = voter_names(4);
    let prev = [3; 32];
    let ranked = ranking(&prev, &names);
    assert_eq!(ranked.len(), 4);
    let mut sorted = ranked.clone();
    sorted.sort();
    assert_eq!(sorted, names);
    for round in 0..9u32 {
        assert_eq!(
            proposer(&prev, &names, round).as_deref(),
            ranked.get(round as usize % 4).map(String::as_str)
        );
    }
    assert_ne!(
        ranking(&[4; 32], &names),
        ranked,
        "the ranking moves with n"
    );
    assert_eq!(proposer(&prev, &[], 0), None);
    let mut c = joined(&names);
    let p = |id: u8, round: u32| Proposal {
        n: 2,
        round,
        id: [id; 32],
        prev,
        cut: [5; 32],
    };
    // Round 1's proposer writes for round 0, everyone else for round 1.
    for a in &names {
        let round = if *a == ranked[1] { 0 } else { 1 };
        c.push(a, KIND_CHECKPOINT, p(1, round).body());
    }
    assert_eq!(proposal_of(&c.entries, &names, &prev, 2, 0), None);
    assert_eq!(proposal_of(&c.entries, &names, &prev, 2, 1), None);
    c.push(&ranked[1], KIND_CHECKPOINT, p(7, 1).body());
    c.push(&ranked[1], KIND_CHECKPOINT, p(8, 1).body());
    let got = proposal_of(&c.entries, &names, &prev, 2, 1).map(|(_, p)| p);
    assert_eq!(got, Some(p(7, 1)), "its first one");
    assert_eq!(proposal_of(&c.entries, &names, &[0; 32], 2, 1), None);
}

#[test]
fn bodies_are_parsed_as_hostile_input() {
    let mut c = joined(&voter_names(1));
    let a = "v00";
    let good = Proposal {
        n: 3,
        round: 1,
        id: [0xab; 32],
        prev: [1; 32],
        cut: [2; 32],
    };
    let e = c.push(a, KIND_CHECKPOINT, good.body());
    assert_eq!(Proposal::parse(&e), Ok(good));
    let skip = c.push(
        a,
        KIND_CHECKPOINT_VOTE,
        br#"{"n":3,"round":1,"id":""}"#.to_vec(),
    );
    assert_eq!(Vote::parse(&skip).map(|v| v.id), Ok(None));
    assert!(matches!(Vote::parse(&e), Err(BodyError::Kind(..))));
    let h = "ab".repeat(32);
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (
            format!(r#"{{"n":3,"round":1,"id":"{}"}}"#, &h[..62]).into_bytes(),
            "short",
        ),
        (
            format!(r#"{{"n":3,"round":1,"id":"{}"}}"#, h.to_uppercase()).into_bytes(),
            "upper",
        ),
        (
            format!(r#"{{"n":3,"round":1,"id":"{}zz"}}"#, &h[..62]).into_bytes(),
            "not hex",
        ),
        (
            format!(r#"{{"n":0,"round":1,"id":"{h}"}}"#).into_bytes(),
            "n = 0",
        ),
        (
            format!(r#"{{"n":-1,"round":1,"id":"{h}"}}"#).into_bytes(),
            "negative",
        ),
        (
            format!(r#"{{"n":3,"round":4294967296,"id":"{h}"}}"#).into_bytes(),
            "round > u32",
        ),
        (format!(r#"{{"n":3,"id":"{h}"}}"#).into_bytes(), "missing"),
        (
            format!(r#"{{"n":3,"round":1,"id":"{h}","x":1}}"#).into_bytes(),
            "extra",
        ),
        (b"[]".to_vec(), "array"),
        (vec![b' '; MAX_AGREEMENT_BODY + 1], "too large"),
    ];
    for (body, what) in bad {
        let e = c.push(a, KIND_CHECKPOINT_VOTE, body);
        assert!(Vote::parse(&e).is_err(), "{what}");
    }
    let e = c.push(a, KIND_CHECKPOINT_VOTE, vec![b' '; MAX_AGREEMENT_BODY + 1]);
    assert_eq!(
        Vote::parse(&e),
        Err(BodyError::TooLarge(MAX_AGREEMENT_BODY + 1))
    );
}

#[test]
fn the_first_checkpoints_voters_are_its_own_states_live_members() {
    let mut c = Chains::default();
    for a in ["a", "b", "c", "d", "e", "twin"] {
        c.profile(a, "join", 1, 0);
    }
    c.push("e", "leave", json!({ "inc": 1 }).to_string().into_bytes());
    c.apply(&Op::Storm("d".into(), 4, false, 0));
    let ledger = ledger_of(&c.entries);
    let s1 = State::first(&ledger, &ledger.frontier(), &derive(&c.entries, 0)).expect("first");
    // `a` and `twin` share a key, `e` left, `d` is dead.
    assert_eq!(voters(&s1, 0), ["b", "c"]);
    let k = voters(&s1, 0).len();
    assert_eq!(trigger(k), 1024);
    assert_eq!(trigger(600), 1200);
    // The tail after checkpoint 1, its own votes not counted.
    let mut c2 = c;
    c2.profile("b", "metadata", 1, 3);
    vote(&mut c2, "c", 2, 0, None);
    c2.push("b", KIND_CHECKPOINT, b"{}".to_vec());
    assert_eq!(tail_len(&c2.entries, &s1), 1);
}
