//! The control operations' contract (docs/interface.md).

use crate::support::node::*;
use nodeplane_core::wire::{self, Message};
use nodeplane_core::{Effect, Error, Node, PeerState, Timer, UpdateCause};

#[test]
fn before_join_everything_is_not_joined() {
    let mut n = new_node(config("a", "10.0.0.1:7000"), vec![], 1, 0).unwrap();
    assert_eq!(n.members(), Err(Error::NotJoined));
    assert_eq!(n.leave(0), Err(Error::NotJoined));
    assert_eq!(n.publish_heartbeat(0), Err(Error::NotJoined));
    assert_eq!(
        n.report_peer_state(0, "b", PeerState::Suspect),
        Err(Error::NotJoined)
    );
    assert_eq!(n.peer_metadata("a"), Err(Error::NotJoined));
}

#[test]
fn config_is_validated() {
    let bad_id = new_node(config("a b", "10.0.0.1:7000"), vec![], 1, 0).unwrap_err();
    assert!(
        matches!(bad_id, Error::InvalidConfig(ref s) if s.contains("node_id")),
        "{bad_id}"
    );
    let bad_addr = new_node(config("a", "nowhere"), vec![], 1, 0).unwrap_err();
    assert!(
        matches!(bad_addr, Error::InvalidConfig(ref s) if s.contains("address")),
        "{bad_addr}"
    );
    let mut c = config("a", "10.0.0.1:7000");
    c.tunables.probe_timeout_ms = 5_000;
    assert!(
        matches!(new_node(c, vec![], 1, 0), Err(Error::InvalidConfig(s)) if s.contains("probe_timeout_ms"))
    );
}

#[test]
fn join_bad_seed_changes_nothing() {
    let mut n = new_node(config("a", "10.0.0.1:7000"), vec![], 1, 0).unwrap();
    let err = n
        .join(0, &["10.0.0.2:7000".into(), "bogus".into()])
        .unwrap_err();
    assert_eq!(err, Error::InvalidAddress("bogus".into()));
    assert_eq!(n.members(), Err(Error::NotJoined));
    assert!(n.drain_checked().is_empty());
}

#[test]
fn join_alone_then_again_is_idempotent() {
    let mut n = new_node(config("a", "10.0.0.1:7000"), vec![], 1, 0).unwrap();
    let v = n.join(0, &["10.0.0.1:7000".into()]).unwrap();
    assert_eq!(v.version, 1);
    assert_eq!(v.members.len(), 1);
    assert_eq!(v.members[0].state, PeerState::Alive);
    let fx = n.drain_checked();
    let ups = updates(&fx);
    assert_eq!(ups.len(), 1);
    assert_eq!(
        (
            ups[0].peer.as_str(),
            ups[0].cause,
            ups[0].previous,
            ups[0].version
        ),
        ("a", UpdateCause::Joined, None, 1)
    );
    assert!(sends(&fx).is_empty(), "own address as seed is ignored");
    assert_eq!(appended(&fx).len(), 1);
    let v2 = n.join(10, &["10.0.0.2:7000".into()]).unwrap();
    assert_eq!(v2, v);
    let fx = n.drain_checked();
    assert!(updates(&fx).is_empty());
    assert!(sends(&fx).iter().all(|(to, _)| to == "10.0.0.2:7000") && !sends(&fx).is_empty());
}

#[test]
fn heartbeats_count_up() {
    let mut n = joined_node("a", "10.0.0.1:7000");
    assert_eq!(n.publish_heartbeat(1), Ok(1));
    assert_eq!(n.publish_heartbeat(2), Ok(2));
    assert_eq!(n.publish_heartbeat(3), Ok(3));
}

/// Two nodes that know each other, without running the protocol.
fn pair() -> (Node, Node) {
    let mut a = joined_node("a", "10.0.0.1:7000");
    let mut b = joined_node("b", "10.0.0.2:7000");
    let ea = a.ledger().entries("a", 1, 10);
    let eb = b.ledger().entries("b", 1, 10);
    let wa = wire::encode(&Message::Gossip {
        entries: ea.iter().map(Into::into).collect(),
    });
    let wb = wire::encode(&Message::Gossip {
        entries: eb.iter().map(Into::into).collect(),
    });
    b.handle_message(1, "10.0.0.1:7000", &wa).unwrap();
    a.handle_message(1, "10.0.0.2:7000", &wb).unwrap();
    a.drain_checked();
    b.drain_checked();
    (a, b)
}

#[test]
fn report_peer_state_rules() {
    let (mut a, _b) = pair();
    assert!(matches!(
        a.report_peer_state(2, "a", PeerState::Suspect),
        Err(Error::InvalidReport(_))
    ));
    assert!(matches!(
        a.report_peer_state(2, "b", PeerState::Left),
        Err(Error::InvalidReport(_))
    ));
    assert_eq!(
        a.report_peer_state(2, "zz", PeerState::Suspect),
        Err(Error::UnknownPeer("zz".into()))
    );
    assert_eq!(
        a.report_peer_state(2, "b", PeerState::Alive),
        Ok(PeerState::Alive)
    );
    let v0 = a.members().unwrap().version;
    assert_eq!(
        a.report_peer_state(3, "b", PeerState::Dead),
        Ok(PeerState::Suspect),
        "never dead directly"
    );
    let fx = a.drain_checked();
    let ups = updates(&fx);
    assert_eq!(ups.len(), 1);
    assert_eq!(
        (ups[0].cause, ups[0].previous, ups[0].version),
        (UpdateCause::Suspected, Some(PeerState::Alive), v0 + 1)
    );
    let suspect = appended(&fx);
    assert_eq!(suspect.len(), 1);
    assert_eq!(
        (suspect[0].author.as_str(), suspect[0].kind.as_str()),
        ("a", "suspect")
    );
    assert_eq!(ups[0].entry, Some(suspect[0].id_hex()));
    // A second report adds nothing: this node already suspects b.
    assert_eq!(
        a.report_peer_state(4, "b", PeerState::Suspect),
        Ok(PeerState::Suspect)
    );
    assert!(appended(&a.drain_checked()).is_empty());
    // Alive does not clear a suspicion; only b itself can.
    assert_eq!(
        a.report_peer_state(5, "b", PeerState::Alive),
        Ok(PeerState::Suspect)
    );
    assert_eq!(
        a.peer_metadata("b").unwrap(),
        vec![("role".to_string(), "test".to_string())]
    );
    assert_eq!(a.peer_metadata("zz"), Err(Error::UnknownPeer("zz".into())));
}

#[test]
fn suspected_node_refutes_with_higher_incarnation() {
    let (mut a, mut b) = pair();
    a.report_peer_state(2, "b", PeerState::Suspect).unwrap();
    let s = appended(&a.drain_checked());
    let msg = wire::encode(&Message::Gossip {
        entries: s.iter().map(Into::into).collect(),
    });
    let inc0 = b.incarnation();
    b.handle_message(3, "10.0.0.1:7000", &msg).unwrap();
    assert_eq!(b.incarnation(), inc0 + 1);
    let fx = b.drain_checked();
    let alive = appended(&fx)
        .into_iter()
        .find(|e| e.kind == "alive")
        .expect("refutation");
    let msg = wire::encode(&Message::Gossip {
        entries: vec![(&alive).into()],
    });
    a.handle_message(4, "10.0.0.2:7000", &msg).unwrap();
    let ups = updates(&a.drain_checked());
    assert_eq!(
        ups.last().map(|u| (u.cause, u.current.state)),
        Some((UpdateCause::Refuted, PeerState::Alive))
    );
}

#[test]
fn leave_then_has_left() {
    let mut n = joined_node("a", "10.0.0.1:7000");
    n.leave(1).unwrap();
    let ups = updates(&n.drain_checked());
    assert_eq!(
        ups.last().map(|u| (u.cause, u.current.state)),
        Some((UpdateCause::Left, PeerState::Left))
    );
    assert_eq!(n.leave(2), Err(Error::HasLeft));
    assert_eq!(n.join(2, &[]).unwrap_err(), Error::HasLeft);
    assert_eq!(n.publish_heartbeat(2), Err(Error::HasLeft));
    assert_eq!(
        n.report_peer_state(2, "b", PeerState::Suspect),
        Err(Error::HasLeft)
    );
    let v = n.members().unwrap();
    assert_eq!(v.members[0].state, PeerState::Left);
    assert!(n.peer_metadata("a").is_ok());
}

#[test]
fn restart_raises_incarnation_and_keeps_chain() {
    let mut n = joined_node("a", "10.0.0.1:7000");
    n.leave(1).unwrap();
    let stored = appended(&{
        let mut m = new_node(config("a", "10.0.0.1:7000"), vec![], 1, 0).unwrap();
        m.join(0, &[]).unwrap();
        m.report_peer_state(0, "a", PeerState::Alive).ok();
        m.drain_checked()
    });
    let r = new_node(config("a", "10.0.0.9:7000"), stored.clone(), 2, 5).unwrap();
    assert_eq!(r.incarnation(), 2);
    let mut r = r;
    let v = r.join(5, &[]).unwrap();
    assert_eq!(v.members[0].incarnation, 2);
    assert_eq!(
        v.members[0].address, "10.0.0.9:7000",
        "new address, same identity"
    );
    assert_eq!(r.ledger_len(), 2);
}

#[test]
fn corrupt_ledger_names_first_bad_entry() {
    let mut b = ChainBuilder::default();
    b.join("x", 1);
    b.join("y", 1);
    b.suspect("x", "y", 1);
    let mut stored = b.entries.clone();
    stored[2].body[3] ^= 1;
    let err = new_node(config("a", "10.0.0.1:7000"), stored, 1, 0).unwrap_err();
    assert!(
        matches!(err, Error::CorruptLedger(ref s) if s.contains("stored entry 2") && s.contains("x#2")),
        "{err}"
    );
    let mut gap = b.entries.clone();
    gap.remove(0);
    let err = new_node(config("a", "10.0.0.1:7000"), gap, 1, 0).unwrap_err();
    assert!(
        matches!(err, Error::CorruptLedger(ref s) if s.contains("x#2")),
        "{err}"
    );
}

#[test]
fn bad_messages_are_errors_and_change_nothing() {
    let mut n = joined_node("a", "10.0.0.1:7000");
    let before = n.frontier_digest();
    let good = wire::encode(&Message::Nack { seq: 1 });
    // Version 1, before entries were signed, is no longer spoken.
    let mut wrong_version = good.clone();
    wrong_version[0] = 1;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "empty"),
        (wrong_version, "schema version 1"),
        (vec![wire::WIRE_VERSION, 200], "malformed"),
        ([good.clone(), vec![0]].concat(), "trailing"),
        (vec![1; 60_001], "exceeds"),
    ];
    for (bytes, why) in cases {
        match n.handle_message(1, "10.0.0.2:7000", &bytes) {
            Err(Error::BadMessage(s)) => assert!(s.contains(why), "{s} should mention {why}"),
            other => panic!("expected BadMessage({why}), got {other:?}"),
        }
    }
    assert_eq!(n.frontier_digest(), before);
    assert!(n.drain_checked().is_empty());
}

#[test]
fn view_version_rises_by_one_per_update() {
    let (mut a, _b) = pair();
    a.report_peer_state(1, "b", PeerState::Suspect).unwrap();
    let mut last = 0;
    let mut a2 = new_node(config("a", "10.0.0.1:7000"), a.ledger().all_entries(), 3, 0).unwrap();
    a2.join(0, &[]).unwrap();
    for e in a2.drain_checked() {
        if let Effect::Update { update: u, .. } = e {
            assert_eq!(u.version, last + 1);
            last = u.version;
        }
    }
    assert_eq!(a2.members().unwrap().version, last);
    let first = a2.members().unwrap();
    assert!(first.members.windows(2).all(|w| w[0].id < w[1].id));
}

/// Entries messages among the effects, as (destination, entry count).
fn entries_sent(effects: &[Effect<Timer, ()>]) -> Vec<(String, usize)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, payload } => match wire::decode(payload) {
                Ok(Message::Entries { entries, .. }) => Some((to.clone(), entries.len())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn a_want_beyond_every_chain_is_answered_with_nothing_and_crashes_nothing() {
    let mut n = joined_node("a", "10.0.0.1:7000");
    n.drain_checked();
    let before = n.frontier_digest();
    for have in [u64::MAX, u64::MAX - 1, 1, 1_000] {
        let want = wire::encode(&Message::Want {
            heads: vec![("a".into(), have), ("nobody".into(), have)],
        });
        n.handle_message(1, "10.0.0.2:7000", &want)
            .unwrap_or_else(|e| panic!("want after {have}: {e}"));
        let effects = n.drain_checked();
        assert_eq!(entries_sent(&effects), vec![], "want after {have}");
    }
    assert_eq!(n.frontier_digest(), before);
    // The honest request still gets the author's chain.
    let want = wire::encode(&Message::Want {
        heads: vec![("a".into(), 0)],
    });
    n.handle_message(2, "10.0.0.2:7000", &want).unwrap();
    assert_eq!(
        entries_sent(&n.drain_checked()),
        vec![("10.0.0.2:7000".to_string(), 1)]
    );
}
