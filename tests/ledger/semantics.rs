//! Ledger semantics: transition table, replay order, merge, tamper evidence.

use crate::support::node::*;
use nodeplane_core::ledger::{Entry, Insert, Ledger};
use nodeplane_core::membership::{derive_view, Derived};
use nodeplane_core::wire::{self, Message};
use nodeplane_core::{Member, PeerState};
use proptest::prelude::*;

use PeerState::*;

/// Brings subject `s` to `state` at incarnation 5 (observer `o`, helper
/// `h`; `s` announced 1 and 5). Three members are counted live, so a
/// verdict needs two suspecters (one while `s` has left).
fn start(state: PeerState) -> ChainBuilder {
    let mut b = ChainBuilder::default();
    b.join("o", 1);
    b.join("h", 1);
    b.join("s", 1);
    b.alive("s", 5);
    match state {
        Alive => {}
        Suspect => {
            b.suspect("o", "s", 5);
        }
        Dead => {
            b.suspect("o", "s", 5);
            b.suspect("h", "s", 5);
            b.dead("o", "s", 5);
        }
        Left => {
            b.leave("s", 5);
        }
    }
    b
}

#[derive(Clone, Copy, Debug)]
enum Evidence {
    AliveSame,
    AliveHigher,
    /// `alive 4` after `alive 5`.
    AliveLower,
    SuspectSame,
    /// `suspect 6`, an incarnation `s` never announced.
    SuspectUnannounced,
    /// `alive 6` by `s`, then `suspect 6`.
    SuspectAnnounced,
    /// Two suspecters at 5 and a verdict.
    DeadQuorum,
    /// A verdict at 5 alone.
    DeadNoQuorum,
    /// A verdict at 2^64 - 1 alone.
    DeadUnannounced,
    LeftSame,
    LeftHigher,
    /// `suspect 1` and a quorum's `dead 1`: an announced but older
    /// incarnation.
    Lower,
}

fn add(b: &mut ChainBuilder, ev: Evidence) {
    match ev {
        Evidence::AliveSame => {
            b.alive("s", 5);
        }
        Evidence::AliveHigher => {
            b.alive("s", 6);
        }
        Evidence::AliveLower => {
            b.alive("s", 4);
        }
        Evidence::SuspectSame => {
            b.suspect("h", "s", 5);
        }
        Evidence::SuspectUnannounced => {
            b.suspect("h", "s", 6);
        }
        Evidence::SuspectAnnounced => {
            b.alive("s", 6);
            b.suspect("h", "s", 6);
        }
        Evidence::DeadQuorum => {
            b.suspect("o", "s", 5);
            b.suspect("h", "s", 5);
            b.dead("h", "s", 5);
        }
        Evidence::DeadNoQuorum => {
            b.dead("h", "s", 5);
        }
        Evidence::DeadUnannounced => {
            b.dead("h", "s", u64::MAX);
        }
        Evidence::LeftSame => {
            b.leave("s", 5);
        }
        Evidence::LeftHigher => {
            b.leave("s", 6);
        }
        Evidence::Lower => {
            b.suspect("o", "s", 1);
            b.suspect("h", "s", 1);
            b.dead("h", "s", 1);
        }
    }
}

fn state_of(entries: &[Entry], id: &str) -> (PeerState, u64) {
    let m = derive_view(entries)
        .into_iter()
        .find(|m| m.id == id)
        .expect("member");
    (m.state, m.incarnation)
}

/// The transition table of docs/design.md §2, row by row.
#[test]
fn transition_table() {
    use Evidence::*;
    // (state at inc 5, evidence, resulting state, resulting incarnation)
    let table = [
        (Alive, AliveSame, Alive, 5),
        (Alive, AliveHigher, Alive, 6),
        (Alive, AliveLower, Alive, 5),
        (Alive, SuspectSame, Suspect, 5),
        (Alive, SuspectUnannounced, Alive, 5),
        (Alive, SuspectAnnounced, Suspect, 6),
        (Alive, DeadQuorum, Dead, 5),
        (Alive, DeadNoQuorum, Alive, 5),
        (Alive, DeadUnannounced, Alive, 5),
        (Alive, LeftSame, Left, 5),
        (Alive, LeftHigher, Left, 6),
        (Alive, Lower, Alive, 5),
        (Suspect, AliveSame, Suspect, 5),
        (Suspect, AliveHigher, Alive, 6),
        (Suspect, AliveLower, Suspect, 5),
        (Suspect, SuspectSame, Suspect, 5),
        (Suspect, SuspectUnannounced, Suspect, 5),
        (Suspect, SuspectAnnounced, Suspect, 6),
        (Suspect, DeadQuorum, Dead, 5),
        (Suspect, DeadNoQuorum, Suspect, 5),
        (Suspect, DeadUnannounced, Suspect, 5),
        (Suspect, LeftSame, Left, 5),
        (Suspect, LeftHigher, Left, 6),
        (Suspect, Lower, Suspect, 5),
        (Dead, AliveSame, Dead, 5),
        (Dead, AliveHigher, Alive, 6),
        (Dead, AliveLower, Dead, 5),
        (Dead, SuspectSame, Dead, 5),
        (Dead, SuspectUnannounced, Dead, 5),
        (Dead, SuspectAnnounced, Suspect, 6),
        (Dead, DeadQuorum, Dead, 5),
        (Dead, DeadNoQuorum, Dead, 5),
        (Dead, DeadUnannounced, Dead, 5),
        (Dead, LeftSame, Left, 5),
        (Dead, LeftHigher, Left, 6),
        (Dead, Lower, Dead, 5),
        (Left, AliveSame, Left, 5),
        (Left, AliveHigher, Alive, 6),
        (Left, AliveLower, Left, 5),
        (Left, SuspectSame, Left, 5),
        (Left, SuspectUnannounced, Left, 5),
        (Left, SuspectAnnounced, Suspect, 6),
        (Left, DeadQuorum, Left, 5),
        (Left, DeadNoQuorum, Left, 5),
        (Left, DeadUnannounced, Left, 5),
        (Left, LeftSame, Left, 5),
        (Left, LeftHigher, Left, 6),
        (Left, Lower, Left, 5),
    ];
    for (from, ev, to, inc) in table {
        let mut b = start(from);
        assert_eq!(state_of(&b.entries, "s"), (from, 5), "setup {from:?}");
        add(&mut b, ev);
        assert_eq!(state_of(&b.entries, "s"), (to, inc), "{from:?} + {ev:?}");
    }
}

#[test]
fn only_the_subject_speaks_for_alive_and_left() {
    // By construction `join`, `alive` and `leave` claim their author; a node
    // cannot suspect or declare itself dead.
    let mut b = ChainBuilder::default();
    b.join("s", 1);
    let own = b.suspect("s", "s", 1);
    let mut d = Derived::new();
    d.apply(&b.entries[0]).unwrap();
    assert!(d.apply(&own).unwrap_err().contains("cannot suspect itself"));
}

/// A random but valid multi-author entry set.
fn arbitrary_entries(seed: u64, n: usize) -> Vec<Entry> {
    let authors = ["a", "b", "c", "d", "e"];
    let mut b = ChainBuilder::default();
    for a in authors {
        b.join(a, 1);
    }
    let mut x = seed;
    let mut next = |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    for _ in 0..n {
        let author = authors[next(5) as usize];
        let subject = authors[next(5) as usize];
        let inc = 1 + next(4);
        match next(5) {
            0 => b.alive(author, inc),
            1 if subject != author => b.suspect(author, subject, inc),
            2 if subject != author => b.dead(author, subject, inc),
            3 => b.leave(author, inc),
            _ => b.push(author, "note", b"{}".to_vec()),
        };
    }
    b.entries
}

fn view_by_inserting(entries: &[Entry]) -> (Vec<Member>, [u8; 32]) {
    let mut l = Ledger::new();
    let mut d = Derived::new();
    for e in entries {
        if let Ok(Insert::Linked(linked)) = l.insert(e.clone(), &mut NativeVerifier) {
            for x in linked {
                let _ = d.apply(&x);
            }
        }
    }
    assert_eq!(l.pending_len(), 0);
    (d.members(), l.frontier_digest())
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
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_order_gives_the_same_view(seed in any::<u64>(), n in 0usize..60, order in any::<u64>()) {
        let entries = arbitrary_entries(seed, n);
        let reference = view_by_inserting(&entries);
        prop_assert_eq!(view_by_inserting(&shuffled(&entries, order)), reference.clone());
        prop_assert_eq!(view_by_inserting(&shuffled(&entries, order.rotate_left(17))), reference);
    }

    #[test]
    fn merge_is_commutative_associative_idempotent(seed in any::<u64>(), n in 0usize..60, cut in any::<u64>()) {
        let all = arbitrary_entries(seed, n);
        // Three overlapping subsets of one entry set.
        let pick = |k: u64| -> Vec<Entry> {
            all.iter().enumerate().filter(|(i, _)| (cut.rotate_left(*i as u32 % 64) >> k) & 3 != 0).map(|(_, e)| e.clone()).collect()
        };
        let (x, y, z) = (pick(0), pick(1), pick(2));
        let merge = |parts: &[&Vec<Entry>]| -> Vec<Member> {
            let mut d = Derived::new();
            let mut l = Ledger::new();
            for p in parts { for e in p.iter() {
                if let Ok(Insert::Linked(ls)) = l.insert(e.clone(), &mut NativeVerifier) { for e in ls { let _ = d.apply(&e); } }
            }}
            d.members()
        };
        prop_assert_eq!(merge(&[&x, &y]), merge(&[&y, &x]));
        prop_assert_eq!(merge(&[&x, &y, &z]), merge(&[&z, &y, &x]));
        prop_assert_eq!(merge(&[&x, &y, &z]), merge(&[&y, &z, &x]));
        prop_assert_eq!(merge(&[&x, &x]), merge(&[&x]));
    }
}

/// Flips byte `k` of one field; false when the field has no byte `k`.
type Mutation = Box<dyn Fn(&mut Entry, usize) -> bool>;

#[test]
fn every_flipped_byte_is_detected_on_load() {
    let entries = arbitrary_entries(7, 6);
    for (i, e) in entries.iter().enumerate() {
        let mut fields: Vec<Mutation> = Vec::new();
        fields.push(Box::new(|e, k| flip(&mut e.author, k)));
        fields.push(Box::new(|e, k| {
            k < 8 && {
                e.seq ^= 1 << (k * 8);
                true
            }
        }));
        fields.push(Box::new(|e, k| {
            k < 32 && {
                e.prev[k] ^= 0x40;
                true
            }
        }));
        fields.push(Box::new(|e, k| {
            k < 8 && {
                e.clock ^= 1 << (k * 8);
                true
            }
        }));
        fields.push(Box::new(|e, k| flip(&mut e.kind, k)));
        fields.push(Box::new(|e, k| {
            k < e.body.len() && {
                e.body[k] ^= 0x01;
                true
            }
        }));
        fields.push(Box::new(|e, k| {
            k < 32 && {
                e.id[k] ^= 0x80;
                true
            }
        }));
        for f in &fields {
            for k in 0..64 {
                let mut stored = entries.clone();
                if !f(&mut stored[i], k) {
                    break;
                }
                let res = new_node(config("z", "10.0.0.1:7000"), stored, 1, 0);
                assert!(
                    matches!(res, Err(nodeplane_core::Error::CorruptLedger(_))),
                    "tampered entry {i} ({}#{}) byte {k} went unnoticed",
                    e.author,
                    e.seq
                );
            }
        }
    }
}

fn flip(s: &mut String, k: usize) -> bool {
    if k >= s.len() {
        return false;
    }
    let mut b = s.clone().into_bytes();
    b[k] ^= 0x20;
    match String::from_utf8(b) {
        Ok(t) => {
            *s = t;
            true
        }
        Err(_) => false,
    }
}

#[test]
fn every_flipped_byte_is_detected_on_receipt() {
    let entries = arbitrary_entries(11, 3);
    let victim = entries.last().unwrap().clone();
    let msg = wire::encode(&Message::Gossip {
        entries: vec![(&victim).into()],
    });
    // The entry occupies everything after version, variant tag and count.
    for k in 3..msg.len() {
        let mut n = joined_node("z", "10.0.0.1:7000");
        let good: Vec<_> = entries[..entries.len() - 1]
            .iter()
            .map(Into::into)
            .collect();
        n.handle_message(
            1,
            "10.0.0.2:7000",
            &wire::encode(&Message::Gossip { entries: good }),
        )
        .unwrap();
        n.drain_checked();
        let before = n.frontier_digest();
        let mut bad = msg.clone();
        bad[k] ^= 0x01;
        match n.handle_message(2, "10.0.0.2:7000", &bad) {
            Err(nodeplane_core::Error::BadMessage(_)) => {}
            Ok(()) => {
                let fx = n.drain_checked();
                let logged = fx.iter().any(|e| matches!(e, nodeplane_core::Effect::Log { kind, .. } if kind == "entry-rejected"));
                assert!(
                    logged || n.ledger().pending_len() > 0 && n.frontier_digest() == before,
                    "byte {k}: accepted silently"
                );
                assert!(
                    n.ledger()
                        .get(&victim.author, victim.seq)
                        .is_none_or(|e| e.id == victim.id),
                    "byte {k}"
                );
                assert_eq!(
                    n.frontier_digest(),
                    before,
                    "byte {k}: tampered entry entered the ledger"
                );
            }
            Err(e) => panic!("byte {k}: unexpected {e}"),
        }
    }
}
