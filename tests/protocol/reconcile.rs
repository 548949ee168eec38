//! Reconciliation cost: grows with the difference d, not with history H.

use crate::support::node::*;
use nodeplane_core::ledger::Entry;
use nodeplane_core::wire::{self, Message};
use nodeplane_core::Node;

const A_ADDR: &str = "10.1.0.1:7000";
const B_ADDR: &str = "10.1.0.2:7000";
const AUTHORS: usize = 64;

/// Shared history of `h` entries over 64 authors; each side then extends
/// its own half of the authors by `d` entries the other lacks.
fn ledgers(h: usize, d: usize) -> (Vec<Entry>, Vec<Entry>) {
    let mut b = ChainBuilder::default();
    for i in 0..h {
        b.push_object(
            &format!("a{}", i % AUTHORS),
            "note",
            serde_json::json!({ "i": i }),
        );
    }
    let shared = b.entries.clone();
    let side = |range: std::ops::Range<usize>| {
        let mut c = ChainBuilder::default();
        for e in &shared {
            c.push(&e.author, &e.kind, e.body.clone());
        }
        let start = c.entries.len();
        for i in 0..d {
            let author = format!("a{}", range.start + i % range.len());
            c.push_object(&author, "note", serde_json::json!({ "x": i }));
        }
        let mut all = c.entries[..start].to_vec();
        all.extend_from_slice(&c.entries[start..]);
        all
    };
    (side(0..AUTHORS / 2), side(AUTHORS / 2..AUTHORS))
}

struct Outcome {
    total_bytes: usize,
    entry_bytes: usize,
    round_trips: usize,
}

/// Runs A→B reconciliation until quiet.
fn reconcile(a: &mut Node, b: &mut Node) -> Outcome {
    a.reconcile_with(1, B_ADDR).unwrap();
    let mut out = Outcome {
        total_bytes: 0,
        entry_bytes: 0,
        round_trips: 0,
    };
    let mut half_trips = 0;
    let mut to_b = sends(&a.drain_checked());
    let mut to_a = Vec::new();
    while !to_b.is_empty() || !to_a.is_empty() {
        half_trips += 1;
        for (to, p) in std::mem::take(&mut to_b) {
            assert_eq!(to, B_ADDR);
            account(&mut out, &p);
            b.handle_message(2, A_ADDR, &p).unwrap();
        }
        to_a.extend(sends(&b.drain_checked()));
        for (to, p) in std::mem::take(&mut to_a) {
            assert_eq!(to, A_ADDR);
            account(&mut out, &p);
            a.handle_message(2, B_ADDR, &p).unwrap();
        }
        to_b.extend(sends(&a.drain_checked()));
        assert!(half_trips < 1000, "reconciliation does not terminate");
    }
    out.round_trips = half_trips;
    out
}

fn account(out: &mut Outcome, payload: &[u8]) {
    out.total_bytes += payload.len();
    if let Ok(Message::Entries { entries, .. } | Message::Gossip { entries }) =
        wire::decode(payload)
    {
        out.entry_bytes += entries
            .iter()
            .map(|e| {
                wire::encode(&Message::Gossip {
                    entries: vec![e.clone()],
                })
                .len()
                    - 3
            })
            .sum::<usize>();
    }
}

fn pair(h: usize, d: usize) -> (Node, Node) {
    let (la, lb) = ledgers(h, d);
    let mut a = new_node(config("na", A_ADDR), la, 1, 0).unwrap();
    let mut b = new_node(config("nb", B_ADDR), lb, 2, 0).unwrap();
    a.join(0, &[]).unwrap();
    b.join(0, &[]).unwrap();
    a.drain_checked();
    b.drain_checked();
    (a, b)
}

fn measure(h: usize, d: usize) -> Outcome {
    let (mut a, mut b) = pair(h, d);
    let out = reconcile(&mut a, &mut b);
    assert_eq!(
        a.frontier_digest(),
        b.frontier_digest(),
        "H={h} d={d}: not reconciled"
    );
    assert_eq!(a.ledger_len(), h + 2 * d + 2);
    out
}

#[test]
fn cost_grows_with_difference_not_history() {
    let mut rows = Vec::new();
    for d in [1, 100] {
        let small = measure(1_000, d);
        let large = measure(10_000, d);
        let overhead = |o: &Outcome| o.total_bytes - o.entry_bytes;
        eprintln!(
            "d={d}: H=1000 total {} overhead {} rt {}; H=10000 total {} overhead {} rt {}",
            small.total_bytes,
            overhead(&small),
            small.round_trips,
            large.total_bytes,
            overhead(&large),
            large.round_trips
        );
        // History ten times longer: overhead within a few hundred bytes.
        assert!(
            overhead(&large) <= overhead(&small) + 400,
            "d={d}: overhead grew with H"
        );
        // Far cheaper than exchanging per-author frontiers (48 B per author each way).
        assert!(
            overhead(&small) < 2 * 48 * AUTHORS,
            "d={d}: overhead {} bytes",
            overhead(&small)
        );
        rows.push((small.total_bytes, large.total_bytes));
    }
    assert!(rows[1].0 > rows[0].0 * 10, "bytes must grow with d");
}

#[test]
fn equal_ledgers_cost_one_round_trip_under_64_bytes() {
    let (mut a, mut b) = pair(1_000, 0);
    reconcile(&mut a, &mut b);
    assert_eq!(a.frontier_digest(), b.frontier_digest());
    let digest = a.ledger().root_digest().to_be_bytes();
    let ping = wire::encode(&Message::Ping {
        seq: 1,
        target: "nb".into(),
        digest,
        entries: vec![],
    });
    b.handle_message(3, A_ADDR, &ping).unwrap();
    let acks = sends(&b.drain_checked());
    assert_eq!(acks.len(), 1);
    a.handle_message(4, B_ADDR, &acks[0].1).unwrap();
    let after = sends(&a.drain_checked());
    assert!(
        after.is_empty(),
        "equal digests must end the exchange: {after:?}"
    );
    assert!(
        ping.len() + acks[0].1.len() <= 64,
        "{} + {} bytes",
        ping.len(),
        acks[0].1.len()
    );
}

#[test]
fn large_difference_streams_in_rounds() {
    // 3 000 entries each way need more than one burst of entries messages.
    let out = measure(500, 3_000);
    assert!(
        out.round_trips > 2,
        "expected several rounds, got {}",
        out.round_trips
    );
    let overhead = out.total_bytes - out.entry_bytes;
    assert!(
        overhead < out.entry_bytes / 20,
        "overhead {overhead} vs entries {}",
        out.entry_bytes
    );
}
