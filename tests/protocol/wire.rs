//! Golden vectors of the wire format: a change here is a format change and
//! must come with a new schema version.

use nodeplane_core::ledger::{Entry, GENESIS_PREV};
use nodeplane_core::wire::{self, Message, SyncItem};

fn small() -> Entry {
    Entry::new("n1", 1, GENESIS_PREV, 1, "leave", br#"{"inc":1}"#.to_vec())
}

const SMALL_ENTRY: &str = "026e3101000000000000000000000000000000000000000000000000000000000000000001056c65617665097b22696e63223a317da574bf6ebe85ed4f0968ed818e969e46b90b1c36ec917d79d9619f5399719e74\
00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

fn golden() -> Vec<(Message, String)> {
    vec![
        (
            Message::Ping {
                seq: 7,
                target: "n2".into(),
                digest: [1, 2, 3, 4, 5, 6, 7, 8],
                entries: vec![],
            },
            "020007026e32010203040506070800".into(),
        ),
        (
            Message::Ack {
                seq: 7,
                digest: [8, 7, 6, 5, 4, 3, 2, 1],
                entries: vec![],
            },
            "020107080706050403020100".into(),
        ),
        (
            Message::PingReq {
                seq: 9,
                target: "n3".into(),
                address: "10.0.0.3:7000".into(),
            },
            "020209026e330d31302e302e302e333a37303030".into(),
        ),
        (Message::IndirectAck { seq: 9 }, "020309".into()),
        (Message::Nack { seq: 9 }, "020409".into()),
        (
            Message::Gossip {
                entries: vec![(&small()).into()],
            },
            format!("020501{SMALL_ENTRY}"),
        ),
        (
            Message::Sync {
                items: vec![
                    SyncItem::Node {
                        path: vec![],
                        digests: vec![[0; 8]; 16],
                    },
                    SyncItem::Leaf {
                        path: vec![3, 15],
                        heads: vec![("n1".into(), 4)],
                    },
                ],
            },
            format!("0206020000{}{}", "10", "00".repeat(128)) + "0102030f01026e3104",
        ),
        (
            Message::Want {
                heads: vec![("n1".into(), 2)],
            },
            "020701026e3102".into(),
        ),
        (
            Message::Entries {
                entries: vec![(&small()).into()],
                rest: vec![("n1".into(), 1)],
            },
            format!("020801{SMALL_ENTRY}01026e3101"),
        ),
        (
            Message::CutGet {
                n: 1,
                round: 0,
                cut: [0xab; 32],
                page: 2,
            },
            format!("02090100{}02", "ab".repeat(32)),
        ),
        (
            Message::CutHeads {
                cut: [0xab; 32],
                page: 0,
                total: 1,
                heads: vec![("n1".into(), 3, [0xcd; 32])],
            },
            format!("020a{}000101026e3103{}", "ab".repeat(32), "cd".repeat(32)),
        ),
    ]
}

#[test]
fn every_message_type_matches_its_golden_bytes() {
    let vectors = golden();
    assert_eq!(vectors.len(), 11, "one vector per message type");
    for (msg, hex_bytes) in vectors {
        assert_eq!(hex::encode(wire::encode(&msg)), hex_bytes, "{}", msg.name());
        assert_eq!(
            wire::decode(&hex::decode(&hex_bytes).unwrap()).unwrap(),
            msg,
            "{}",
            msg.name()
        );
    }
}

#[test]
fn steady_state_probe_messages_are_small() {
    let ping = wire::encode(&Message::Ping {
        seq: 70_000,
        target: "node-0123".into(),
        digest: [9; 8],
        entries: vec![],
    });
    let ack = wire::encode(&Message::Ack {
        seq: 70_000,
        digest: [9; 8],
        entries: vec![],
    });
    assert!(
        ping.len() <= 30 && ack.len() <= 20,
        "ping {} ack {}",
        ping.len(),
        ack.len()
    );
}

#[test]
fn bounds_are_enforced() {
    let many = Message::Want {
        heads: (0..3000).map(|i| (format!("n{i}"), 1)).collect(),
    };
    assert!(
        matches!(wire::decode(&wire::encode(&many)), Err(nodeplane_core::Error::BadMessage(s)) if s.contains("heads"))
    );
    let deep = Message::Sync {
        items: vec![SyncItem::Leaf {
            path: vec![16],
            heads: vec![],
        }],
    };
    assert!(wire::decode(&wire::encode(&deep)).is_err());
    let short = Message::Sync {
        items: vec![SyncItem::Node {
            path: vec![],
            digests: vec![[0; 8]; 3],
        }],
    };
    assert!(wire::decode(&wire::encode(&short)).is_err());
    let req = Message::PingReq {
        seq: 1,
        target: "n".into(),
        address: "not-an-address".into(),
    };
    assert!(wire::decode(&wire::encode(&req)).is_err());
    // Every truncation of a valid message fails cleanly.
    let full = wire::encode(&golden()[5].0);
    for k in 0..full.len() {
        assert!(
            wire::decode(&full[..k]).is_err(),
            "prefix of {k} bytes decoded"
        );
    }
}
