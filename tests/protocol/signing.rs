//! Who may write (issue 12, docs/interface.md [ledger-3], [ledger-4]):
//! every receiver checks that an entry is signed by the key its author's
//! first `join` bound; a forgery changes nothing, a second `join` under
//! another key is evidence and not a takeover, and a node refuses to run
//! with a key other than the one its own chain is bound to.

use crate::support::node::*;
use nodeplane_core::ledger::entry::signing::ed25519::{key_field, KeyPair};
use nodeplane_core::ledger::{Entry, GENESIS_PREV};
use nodeplane_core::membership::{body, DeadBody, LeaveBody, ProfileBody};
use nodeplane_core::testkit::test_signer;
use nodeplane_core::wire::{self, Message, WireEntry};
use nodeplane_core::{Effect, Error, Node, PeerState, Timer};

const A: &str = "10.0.0.1:7000";
const B: &str = "10.0.0.2:7000";
const MALLORY: &str = "10.0.0.66:7000";

fn mallory() -> KeyPair {
    KeyPair::derived(b"protocol-signing-tests", "mallory")
}

/// a and b, each holding the other's chain.
fn pair() -> (Node, Node) {
    let mut a = joined_node("a", A);
    let mut b = joined_node("b", B);
    let gossip = |n: &Node, id: &str| {
        wire::encode(&Message::Gossip {
            entries: n
                .ledger()
                .entries(id, 1, 10)
                .iter()
                .map(Into::into)
                .collect(),
        })
    };
    let (wa, wb) = (gossip(&a, "a"), gossip(&b, "b"));
    b.handle_message(1, A, &wa).unwrap();
    a.handle_message(1, B, &wb).unwrap();
    a.drain_checked();
    b.drain_checked();
    (a, b)
}

fn deliver(n: &mut Node, from: &str, entries: Vec<Entry>) -> Vec<Effect<Timer, ()>> {
    let msg = wire::encode(&Message::Gossip {
        entries: entries.iter().map(WireEntry::from).collect(),
    });
    n.handle_message(2, from, &msg).unwrap();
    n.drain_checked()
}

fn logged(effects: &[Effect<Timer, ()>], kind: &str) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Log { kind: k, detail } if k == kind => Some(detail.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_entry_forged_under_a_members_id_is_rejected_and_changes_nothing() {
    let (mut a, b) = pair();
    let head = b.ledger().head("b").unwrap();
    let before = a.members().unwrap();
    let digest = a.frontier_digest();
    // b "leaves", written by someone else with b's next seq and prev.
    let leave = body(&LeaveBody { inc: 1 });
    let forged = mallory().sign(Entry::new("b", head.seq + 1, head.id, 99, "leave", leave));
    let effects = deliver(&mut a, MALLORY, vec![forged.clone()]);
    let rejected = logged(&effects, "entry-rejected");
    assert_eq!(rejected.len(), 1, "{effects:?}");
    assert!(
        rejected[0].contains("signature does not verify"),
        "{}",
        rejected[0]
    );
    assert_eq!(a.members().unwrap(), before);
    assert_eq!(a.frontier_digest(), digest);
    // Unsigned, and signed over another id, are refused the same way.
    let mut unsigned = forged.clone();
    unsigned.signature.clear();
    let mut moved = b.ledger().head_entry("b").unwrap();
    moved.signature = forged.signature.clone();
    for e in [unsigned, moved] {
        deliver(&mut a, MALLORY, vec![e]);
    }
    assert_eq!(a.members().unwrap(), before);
    assert_eq!(a.frontier_digest(), digest);
}

#[test]
fn a_forged_verdict_about_a_member_is_rejected() {
    let (mut a, b) = pair();
    let head = b.ledger().head("b").unwrap();
    // A verdict about a, under b's name: would be b's claim if accepted.
    let verdict = body(&DeadBody {
        subject: "a".into(),
        inc: 1,
        evidence: vec![],
        suspecters: 1,
    });
    let forged = mallory().sign(Entry::new(
        "b",
        head.seq + 1,
        head.id,
        5,
        "confirm-dead",
        verdict,
    ));
    let effects = deliver(&mut a, MALLORY, vec![forged]);
    assert_eq!(logged(&effects, "entry-rejected").len(), 1);
    assert_eq!(a.ledger().head_seq("b"), head.seq);
}

#[test]
fn a_second_join_under_another_key_is_evidence_not_a_takeover() {
    let (mut a, b) = pair();
    let before = a.member("b").unwrap();
    // Someone else joins as "b", self-signed with its own key, from its
    // own address.
    let profile = ProfileBody {
        inc: 7,
        addr: MALLORY.into(),
        meta: vec![("overlay-ip".into(), "100.64.6.6".into())],
        signing_key: Some(hex::encode(mallory().public_key())),
    };
    let takeover = mallory().sign(Entry::new("b", 1, GENESIS_PREV, 1, "join", body(&profile)));
    let effects = deliver(&mut a, MALLORY, vec![takeover.clone()]);
    assert_eq!(logged(&effects, "equivocation").len(), 1, "{effects:?}");
    assert_eq!(a.equivocations().len(), 1);
    assert_eq!(a.member("b"), Some(before), "b's profile must not change");
    assert_eq!(
        a.ledger().bound_key("b"),
        Some(&test_keys_of("b")),
        "b stays bound to its own key"
    );
    // And its continuation, signed by the new key, links nowhere.
    let next = mallory().sign(Entry::new(
        "b",
        2,
        takeover.id,
        2,
        "leave",
        body(&LeaveBody { inc: 7 }),
    ));
    deliver(&mut a, MALLORY, vec![next]);
    assert_eq!(a.member("b").unwrap().state, PeerState::Alive);
    // b itself hears of it: its own id is claimed under another key.
    let mut b = b;
    let effects = deliver(&mut b, MALLORY, vec![takeover]);
    assert_eq!(
        logged(&effects, "identity-conflict").len(),
        1,
        "{effects:?}"
    );
}

fn test_keys_of(id: &str) -> [u8; 32] {
    nodeplane_core::testkit::test_keys(id).public_key()
}

#[test]
fn a_first_entry_that_binds_no_key_is_refused() {
    let (mut a, _b) = pair();
    let bare = ProfileBody {
        inc: 1,
        addr: "10.0.0.9:7000".into(),
        meta: vec![],
        signing_key: None,
    };
    let k = KeyPair::derived(b"protocol-signing-tests", "z");
    let entry = k.sign(Entry::new("z", 1, GENESIS_PREV, 1, "join", body(&bare)));
    let effects = deliver(&mut a, "10.0.0.9:7000", vec![entry]);
    let rejected = logged(&effects, "entry-rejected");
    assert!(
        rejected.iter().any(|r| r.contains("signing_key")),
        "{effects:?}"
    );
    assert!(a.member("z").is_none());
    // With its key declared, the same newcomer is accepted.
    let keyed = format!(
        "{{\"inc\":1,\"addr\":\"10.0.0.9:7000\",\"meta\":[],{}}}",
        key_field(&k.public_key())
    );
    let entry = k.sign(Entry::new(
        "z",
        1,
        GENESIS_PREV,
        1,
        "join",
        keyed.into_bytes(),
    ));
    deliver(&mut a, "10.0.0.9:7000", vec![entry]);
    assert_eq!(a.member("z").map(|m| m.state), Some(PeerState::Alive));
}

#[test]
fn a_stored_entry_that_is_not_signed_fails_the_load_naming_it() {
    let (a, _b) = pair();
    let mut stored: Vec<Entry> = a.ledger().all_entries();
    let last = stored.len() - 1;
    stored[last].signature[0] ^= 1;
    let err = new_node(config("a", A), stored, 1, 0).unwrap_err();
    assert!(
        matches!(&err, Error::CorruptLedger(s) if s.contains("signature does not verify")),
        "{err}"
    );
}

#[test]
fn a_node_refuses_to_run_with_a_key_its_chain_is_not_bound_to() {
    let a = joined_node("a", A);
    let stored: Vec<Entry> = a.ledger().all_entries();
    // The data directory's key was replaced (here: b's key for a's id).
    let err = Node::new(config("a", A), stored.clone(), 1, 0, test_signer("b")).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidConfig(s) if s.contains("signing key") && s.contains("new node id")),
        "{err}"
    );
    // With its own key it starts, at a higher incarnation.
    let restarted = new_node(config("a", A), stored, 1, 0).unwrap();
    assert_eq!(restarted.incarnation(), 2);
}
