//! Hostile claims received by a running node (docs/design.md §2 and §5):
//! a verdict at 2^64 - 1 or from a single author, and a suspicion at an
//! incarnation the subject never announced, leave the subject alive, and
//! the subject refutes a real suspicion by exactly one incarnation.

use crate::support::node::*;
use nodeplane_core::ledger::Entry;
use nodeplane_core::wire::{self, Message};
use nodeplane_core::{Node, PeerState};

const FROM: &str = "10.0.0.99:7000";

fn gossip(n: &mut Node, now: u64, entries: &[Entry]) {
    let msg = wire::encode(&Message::Gossip {
        entries: entries.iter().map(Into::into).collect(),
    });
    n.handle_message(now, FROM, &msg).expect("well-formed");
}

/// `o` joined, and has heard of `b`, `c`, `d` (all at incarnation 1).
fn observer() -> (Node, ChainBuilder) {
    let mut n = joined_node("o", "10.0.0.1:7000");
    let mut b = ChainBuilder::default();
    for id in ["b", "c", "d"] {
        b.join(id, 1);
    }
    let joins = b.entries.clone();
    gossip(&mut n, 1, &joins);
    n.drain_checked();
    (n, b)
}

fn state(n: &Node, id: &str) -> PeerState {
    n.member(id).expect("member").state
}

#[test]
fn a_verdict_at_the_largest_incarnation_changes_nothing() {
    let (mut n, mut b) = observer();
    let e = b.dead("x", "b", u64::MAX);
    gossip(&mut n, 2, &[e]);
    n.drain_checked();
    assert_eq!(state(&n, "b"), PeerState::Alive);
    // About the node itself: no refutation, no new incarnation.
    let e = b.dead("x", "o", u64::MAX);
    gossip(&mut n, 3, &[e]);
    let fx = n.drain_checked();
    assert!(appended(&fx).iter().all(|e| e.author != "o"), "{fx:?}");
    assert_eq!(n.incarnation(), 1);
    assert_eq!(state(&n, "o"), PeerState::Alive);
}

#[test]
fn a_single_author_verdict_at_the_current_incarnation_is_not_applied() {
    let (mut n, mut b) = observer();
    let e = b.dead("x", "b", 1);
    gossip(&mut n, 2, &[e]);
    n.drain_checked();
    assert_eq!(state(&n, "b"), PeerState::Alive);
    // With its author's suspicion the member is suspected, never dead.
    let s = b.suspect("c", "b", 1);
    let v = b.dead("c", "b", 1);
    gossip(&mut n, 3, &[s, v]);
    n.drain_checked();
    assert_eq!(state(&n, "b"), PeerState::Suspect);
}

#[test]
fn a_suspicion_at_an_unannounced_incarnation_is_not_applied() {
    let (mut n, mut b) = observer();
    let e = b.suspect("c", "b", 2);
    gossip(&mut n, 2, &[e]);
    n.drain_checked();
    assert_eq!(state(&n, "b"), PeerState::Alive);
    // About the node itself: nothing to refute.
    let e = b.suspect("c", "o", 9);
    gossip(&mut n, 3, &[e]);
    n.drain_checked();
    assert_eq!((n.incarnation(), state(&n, "o")), (1, PeerState::Alive));
}

#[test]
fn a_refutation_raises_the_incarnation_by_exactly_one() {
    let (mut n, mut b) = observer();
    // Claims at higher incarnations first (inert), then a real one.
    let high = b.suspect("c", "o", 1_000);
    let dead = b.dead("d", "o", 1_000);
    let real = b.suspect("b", "o", 1);
    gossip(&mut n, 2, &[high, dead, real]);
    let fx = n.drain_checked();
    let own: Vec<_> = appended(&fx)
        .into_iter()
        .filter(|e| e.author == "o")
        .collect();
    assert_eq!(own.len(), 1, "one refutation: {own:?}");
    assert_eq!(own[0].kind, "alive");
    assert_eq!(n.incarnation(), 2);
    assert_eq!(state(&n, "o"), PeerState::Alive);
}

#[test]
fn a_held_verdict_takes_effect_when_its_evidence_arrives() {
    let (mut n, mut b) = observer();
    // Four counted live (o, b, c, d): three suspecters are needed.
    let v = b.dead("c", "b", 1);
    gossip(&mut n, 2, &[v]);
    n.drain_checked();
    assert_eq!(state(&n, "b"), PeerState::Alive);
    let s1 = b.suspect("c", "b", 1);
    let s2 = b.suspect("d", "b", 1);
    gossip(&mut n, 3, &[s1, s2]);
    n.drain_checked();
    assert_eq!(state(&n, "b"), PeerState::Suspect);
    // The third suspicion is the observer's own, from a failed report.
    n.report_peer_state(4, "b", PeerState::Dead).unwrap();
    let fx = n.drain_checked();
    assert_eq!(state(&n, "b"), PeerState::Dead);
    assert!(updates(&fx)
        .iter()
        .any(|u| u.peer == "b" && u.current.state == PeerState::Dead));
}
