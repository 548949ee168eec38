//! Extreme values against the core (issue 11, items 1 and 7): every wire
//! message, with 0, 1, 2, 2^64-2 and 2^64-1 (2^32-1 for u32 fields),
//! empty, maximal and over-long strings and maximal list lengths in its
//! fields, is decoded and handed to a joined `Node`, then every timer fires,
//! at host times up to 2^64-1. Nothing may panic (the tests build with
//! overflow checks, so a wrapped `+ 1` panics here) and
//! `check_invariants` must hold after every step. Ledger entries with
//! extreme seq, Lamport clock and incarnation are offered to a `Ledger`,
//! to a joined node and to `Node::new` as stored entries.

use proptest::prelude::*;

use crate::support::node::*;
use nodeplane_core::config::{
    MAX_ENTRIES_PER_MESSAGE, MAX_EVIDENCE_IDS, MAX_HEADS, MAX_NODE_ID_LEN, MAX_SYNC_DEPTH,
    MAX_SYNC_ITEMS, SYNC_FANOUT,
};
use nodeplane_core::ledger::entry::{MAX_BODY_LEN, MAX_KIND_LEN};
use nodeplane_core::ledger::{Entry, Ledger, GENESIS_PREV};
use nodeplane_core::membership::{body, DeadBody, LeaveBody, ProfileBody, SuspectBody};
use nodeplane_core::wire::{self, Message, SyncItem, WireEntry};
use nodeplane_core::{Error, Node, Timer};

const A: &str = "10.0.0.1:7000";
const B: &str = "10.0.0.2:7000";

/// 0, 1, 2, 2^64-2, 2^64-1, or anything.
fn u64x() -> BoxedStrategy<u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(2),
        Just(u64::MAX - 1),
        Just(u64::MAX),
        any::<u64>(),
    ]
    .boxed()
}

/// 0, 1, 2, 2^32-2, 2^32-1, or anything.
fn u32x() -> BoxedStrategy<u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(u32::MAX - 1),
        Just(u32::MAX),
        any::<u32>(),
    ]
    .boxed()
}

/// Node ids: empty, this node, its peer, a stranger, the longest valid id,
/// one byte too long, invalid characters, anything short.
fn idx() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just("a".to_string()),
        Just("b".to_string()),
        Just("c".to_string()),
        Just("m".repeat(MAX_NODE_ID_LEN)),
        Just("m".repeat(MAX_NODE_ID_LEN + 1)),
        Just("a b\u{0}\u{ffff}".to_string()),
        "[a-z0-9._-]{1,8}",
        ".{0,12}",
    ]
    .boxed()
}

/// Addresses: both members', extremes of the valid forms, invalid ones.
fn addrx() -> BoxedStrategy<String> {
    prop_oneof![
        Just(A.to_string()),
        Just(B.to_string()),
        Just("0.0.0.0:0".to_string()),
        Just("255.255.255.255:65535".to_string()),
        Just("[::]:0".to_string()),
        Just("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535".to_string()),
        Just(String::new()),
        Just("10.0.0.3:99999".to_string()),
        Just("x".repeat(300)),
        ".{0,24}",
    ]
    .boxed()
}

fn kinds() -> BoxedStrategy<String> {
    prop_oneof![
        Just("join".to_string()),
        Just("alive".to_string()),
        Just("metadata".to_string()),
        Just("suspect".to_string()),
        Just("confirm-dead".to_string()),
        Just("leave".to_string()),
        Just(String::new()),
        Just("k".repeat(MAX_KIND_LEN)),
        Just("k".repeat(MAX_KIND_LEN + 1)),
    ]
    .boxed()
}

/// Entry bodies: every membership body with extreme incarnations and
/// subjects, empty, maximal and one byte too long, and garbage.
fn bodies() -> BoxedStrategy<Vec<u8>> {
    let evidence = prop_oneof![
        Just(Vec::new()),
        Just(vec!["0".repeat(64); MAX_EVIDENCE_IDS]),
        Just(vec!["f".repeat(64); MAX_EVIDENCE_IDS + 1]),
        prop::collection::vec(".{0,70}", 0..4),
    ];
    prop_oneof![
        (
            u64x(),
            addrx(),
            prop::collection::vec((".{0,8}", ".{0,8}"), 0..3)
        )
            .prop_map(|(inc, addr, meta)| {
                body(&ProfileBody {
                    inc,
                    addr,
                    meta,
                    signing_key: None,
                })
            }),
        (idx(), u64x()).prop_map(|(subject, inc)| body(&SuspectBody { subject, inc })),
        (idx(), u64x(), evidence, u32x()).prop_map(|(subject, inc, evidence, suspecters)| {
            body(&DeadBody {
                subject,
                inc,
                evidence,
                suspecters,
            })
        }),
        u64x().prop_map(|inc| body(&LeaveBody { inc })),
        Just(Vec::new()),
        Just(vec![b'x'; MAX_BODY_LEN]),
        Just(vec![b'{'; MAX_BODY_LEN + 1]),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
    .boxed()
}

/// An entry with extreme fields; its id is right (so it passes
/// verification and reaches the chain and view logic) unless `tamper`.
fn entries() -> BoxedStrategy<Entry> {
    let prev = prop_oneof![Just(GENESIS_PREV), Just([0xff; 32]), any::<[u8; 32]>()];
    // seq 1 links (with the genesis prev) for a new author: weigh it up.
    let seq = prop_oneof![3 => Just(1u64), 2 => u64x()];
    (
        idx(),
        seq,
        prev,
        u64x(),
        kinds(),
        bodies(),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(author, seq, prev, clock, kind, body, tamper)| {
            let prev = if seq == 1 && !tamper {
                GENESIS_PREV
            } else {
                prev
            };
            // A `join` object declares its author's test key, and every
            // entry is signed with it, so that extreme entries get past the
            // signature check to the chain and view logic.
            let body = if kind == "join" {
                with_test_key(&author, body)
            } else {
                body
            };
            let mut e = signed(Entry::new(&author, seq, prev, clock, &kind, body));
            if tamper {
                e.id[0] ^= 1;
            }
            e
        })
        .boxed()
}

/// `body` with `signing_key` set to `author`'s test key, when it is a
/// JSON object.
fn with_test_key(author: &str, body: Vec<u8>) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body) {
        Ok(mut map) => {
            map.insert("signing_key".into(), test_key_hex(author).into());
            serde_json::to_vec(&map).unwrap_or(body)
        }
        Err(_) => body,
    }
}

fn wire_entries() -> BoxedStrategy<Vec<WireEntry>> {
    prop::collection::vec(entries().prop_map(|e| WireEntry::from(&e)), 0..6).boxed()
}

fn heads() -> BoxedStrategy<Vec<(String, u64)>> {
    prop_oneof![
        3 => prop::collection::vec((idx(), u64x()), 0..6),
        // The most a want or leaf may carry, and one more.
        1 => (idx(), u64x()).prop_map(|h| vec![h; MAX_HEADS]),
        1 => (idx(), u64x()).prop_map(|h| vec![h; MAX_HEADS + 1]),
    ]
    .boxed()
}

fn paths() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(vec![15u8; MAX_SYNC_DEPTH]),
        Just(vec![0u8; MAX_SYNC_DEPTH]),
        Just(vec![15u8; MAX_SYNC_DEPTH + 1]),
        Just(vec![16u8]),
        Just(vec![255u8]),
        prop::collection::vec(0u8..16, 0..=MAX_SYNC_DEPTH),
    ]
    .boxed()
}

fn sync_items() -> BoxedStrategy<Vec<SyncItem>> {
    let digests = prop_oneof![
        Just(vec![[0u8; 8]; SYNC_FANOUT]),
        Just(vec![[0xffu8; 8]; SYNC_FANOUT]),
        Just(vec![[0u8; 8]; SYNC_FANOUT - 1]),
        Just(Vec::new()),
        prop::collection::vec(any::<[u8; 8]>(), SYNC_FANOUT),
    ];
    let item = prop_oneof![
        (paths(), digests).prop_map(|(path, digests)| SyncItem::Node { path, digests }),
        (paths(), heads()).prop_map(|(path, heads)| SyncItem::Leaf { path, heads }),
    ];
    prop_oneof![
        3 => prop::collection::vec(item, 0..4),
        // The most a sync may carry, and one more.
        1 => (paths(), any::<[u8; 8]>()).prop_map(|(path, d)| {
            vec![SyncItem::Node { path, digests: vec![d; SYNC_FANOUT] }; MAX_SYNC_ITEMS]
        }),
        1 => Just(vec![SyncItem::Leaf { path: vec![], heads: vec![] }; MAX_SYNC_ITEMS + 1]),
    ]
    .boxed()
}

/// Every message type with extreme fields.
fn messages() -> BoxedStrategy<Message> {
    // Each arm boxed: a union of nine unboxed arms builds value trees big
    // enough to overflow a test thread's stack in a debug build.
    let ping = (u32x(), idx(), any::<[u8; 8]>(), wire_entries())
        .prop_map(|(seq, target, digest, entries)| Message::Ping {
            seq,
            target,
            digest,
            entries,
        })
        .boxed();
    let ack = (u32x(), any::<[u8; 8]>(), wire_entries())
        .prop_map(|(seq, digest, entries)| Message::Ack {
            seq,
            digest,
            entries,
        })
        .boxed();
    let ping_req = (u32x(), idx(), addrx())
        .prop_map(|(seq, target, address)| Message::PingReq {
            seq,
            target,
            address,
        })
        .boxed();
    let indirect_ack = u32x().prop_map(|seq| Message::IndirectAck { seq }).boxed();
    let nack = u32x().prop_map(|seq| Message::Nack { seq }).boxed();
    let gossip = wire_entries()
        .prop_map(|entries| Message::Gossip { entries })
        .boxed();
    let sync = sync_items()
        .prop_map(|items| Message::Sync { items })
        .boxed();
    let want = heads().prop_map(|heads| Message::Want { heads }).boxed();
    let entries = (wire_entries(), heads())
        .prop_map(|(entries, rest)| Message::Entries { entries, rest })
        .boxed();
    prop_oneof![
        ping,
        ack,
        ping_req,
        indirect_ack,
        nack,
        gossip,
        sync,
        want,
        entries
    ]
    .boxed()
}

/// Host times: the start, ordinary, and the last representable ones.
fn nows() -> BoxedStrategy<u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(60_000),
        Just(u64::MAX - 10_000),
        Just(u64::MAX - 1),
        Just(u64::MAX),
    ]
    .boxed()
}

/// Node `a`, joined, knowing `b` (both alive), with `b`'s entries linked
/// and the protocol running (timers fired once).
fn node_with_peer() -> Node {
    let mut a = joined_node("a", A);
    let mut b = joined_node("b", B);
    let eb = b.ledger().entries("b", 1, 10);
    let msg = wire::encode(&Message::Gossip {
        entries: eb.iter().map(Into::into).collect(),
    });
    a.handle_message(1, B, &msg).unwrap();
    b.drain_checked();
    a.drain_checked();
    for t in Timer::ALL {
        a.handle_timer(2, t);
        a.drain_checked();
    }
    a
}

/// Hands `msg` to `node` at `now` from `from`, then fires every timer, at
/// `now` and at the last representable time, checking the invariants
/// after each step. A decode error is fine; a panic is not.
fn deliver(node: &mut Node, now: u64, from: &str, msg: &Message) {
    let bytes = wire::encode(msg);
    match node.handle_message(now, from, &bytes) {
        Ok(()) | Err(Error::BadMessage(_)) => {}
        Err(e) => panic!("{}: unexpected error {e}", msg.name()),
    }
    node.drain_checked();
    for t in Timer::ALL {
        node.handle_timer(now, t);
        node.drain_checked();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn extreme_messages_never_panic_nor_break_invariants(
        steps in prop::collection::vec((messages(), nows(), addrx()), 1..5)
    ) {
        let mut node = node_with_peer();
        for (msg, now, from) in &steps {
            deliver(&mut node, *now, from, msg);
        }
        // And the node still works afterwards.
        prop_assert!(node.members().is_ok());
        for t in Timer::ALL {
            node.handle_timer(u64::MAX, t);
            node.drain_checked();
        }
    }

    #[test]
    fn extreme_entries_never_panic_the_ledger(
        entries in prop::collection::vec(entries(), 1..12)
    ) {
        let mut ledger = Ledger::new();
        for e in &entries {
            let before = ledger.len();
            if ledger.insert(e.clone(), &mut NativeVerifier).is_err() {
                prop_assert_eq!(ledger.len(), before, "a rejected entry changed the ledger");
            }
        }
        for e in &entries {
            for seq in [0, 1, e.seq, u64::MAX - 1, u64::MAX] {
                let _ = ledger.get(&e.author, seq);
                let _ = ledger.entries(&e.author, seq, usize::MAX);
            }
            let _ = ledger.head_seq(&e.author);
        }
        for path in [vec![], vec![15u8; MAX_SYNC_DEPTH], vec![15u8; 40], vec![255u8; 3]] {
            let _ = ledger.child_digests(&path);
            let _ = ledger.bucket_digest(&path);
            let _ = ledger.heads_under(&path);
            let _ = ledger.authors_under(&path);
        }
        let _ = ledger.frontier_digest();
    }

    #[test]
    fn extreme_entries_never_panic_a_joined_node(
        entries in prop::collection::vec(entries(), 1..12),
        now in nows(),
    ) {
        let mut node = node_with_peer();
        let wire: Vec<WireEntry> = entries.iter().map(WireEntry::from).collect();
        for chunk in wire.chunks(4) {
            deliver(&mut node, now, B, &Message::Gossip { entries: chunk.to_vec() });
        }
        deliver(&mut node, now, B, &Message::Entries { entries: wire, rest: vec![] });
    }

    #[test]
    fn extreme_stored_entries_load_or_fail_cleanly(
        entries in prop::collection::vec(entries(), 0..8),
        now in nows(),
    ) {
        match new_node(config("a", A), entries, 1, now) {
            Ok(mut node) => {
                node.check_invariants();
                if node.join(now, &[B.to_string()]).is_ok() {
                    node.drain_checked();
                    for t in Timer::ALL {
                        node.handle_timer(now, t);
                        node.drain_checked();
                    }
                }
            }
            Err(Error::CorruptLedger(_)) => {}
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}

/// The first datagram: a want for the node's own chain after
/// 2^64-1 (`have + 1` wrapped to 0 and `expect` panicked).
#[test]
fn want_after_the_last_seq_is_answered_with_nothing() {
    let mut node = node_with_peer();
    for have in [u64::MAX, u64::MAX - 1] {
        let want = Message::Want {
            heads: vec![("a".into(), have), ("b".into(), have)],
        };
        node.handle_message(10, "10.0.0.9:7000", &wire::encode(&want))
            .unwrap();
        let fx = node.drain_checked();
        assert!(sends(&fx).is_empty(), "nothing lies after seq {have}");
    }
}

/// Timer arithmetic saturates: the host's clock at its last values.
#[test]
fn timers_at_the_end_of_time_do_not_wrap() {
    let mut node = node_with_peer();
    for now in [u64::MAX - 1_000, u64::MAX - 1, u64::MAX] {
        // A ping-req schedules a relay deadline at now + wait.
        let req = Message::PingReq {
            seq: u32::MAX,
            target: "b".into(),
            address: B.into(),
        };
        deliver(&mut node, now, B, &req);
        deliver(&mut node, now, B, &Message::Nack { seq: u32::MAX });
        node.reconcile_with(now, B).unwrap();
        node.publish_heartbeat(now).unwrap();
        node.drain_checked();
    }
}

/// Messages of the largest list lengths the decoder accepts are handled;
/// one item more is refused as a bad message, and the node is unchanged.
#[test]
fn maximal_list_lengths_are_handled_and_one_more_is_refused() {
    let mut node = node_with_peer();
    let max = [
        Message::Want {
            heads: vec![("b".into(), u64::MAX); MAX_HEADS],
        },
        Message::Entries {
            entries: vec![],
            rest: vec![("c".into(), 0); MAX_HEADS],
        },
        Message::Sync {
            items: vec![
                SyncItem::Node {
                    path: vec![15; MAX_SYNC_DEPTH],
                    digests: vec![[0xff; 8]; SYNC_FANOUT],
                };
                MAX_SYNC_ITEMS
            ],
        },
        Message::Sync {
            items: vec![SyncItem::Leaf {
                path: vec![],
                heads: vec![("b".into(), u64::MAX); MAX_HEADS],
            }],
        },
        Message::Ping {
            seq: u32::MAX,
            target: "m".repeat(MAX_NODE_ID_LEN),
            digest: [0xff; 8],
            entries: vec![],
        },
    ];
    for msg in &max {
        let bytes = wire::encode(msg);
        assert!(wire::decode(&bytes).is_ok(), "{} at its limits", msg.name());
        node.handle_message(100, B, &bytes).unwrap();
        node.drain_checked();
    }
    let over = [
        Message::Want {
            heads: vec![("b".into(), 0); MAX_HEADS + 1],
        },
        Message::Sync {
            items: vec![
                SyncItem::Leaf {
                    path: vec![],
                    heads: vec![]
                };
                MAX_SYNC_ITEMS + 1
            ],
        },
        Message::Gossip {
            entries: vec![
                WireEntry::from(&Entry::new("b", 1, GENESIS_PREV, 0, "join", vec![]));
                MAX_ENTRIES_PER_MESSAGE + 1
            ],
        },
        Message::Ping {
            seq: 0,
            target: "m".repeat(MAX_NODE_ID_LEN + 1),
            digest: [0; 8],
            entries: vec![],
        },
    ];
    let before = node.frontier_digest();
    for msg in &over {
        let r = node.handle_message(200, B, &wire::encode(msg));
        assert!(
            matches!(r, Err(Error::BadMessage(_))),
            "{}: {r:?}",
            msg.name()
        );
        let fx = node.drain_checked();
        assert!(
            sends(&fx).is_empty() && appended(&fx).is_empty() && updates(&fx).is_empty(),
            "{} changed nothing",
            msg.name()
        );
    }
    assert_eq!(node.frontier_digest(), before);
}
