//! Structure-aware sequences of inputs into one joined `Node`
//! (`nodeplane_core`): messages built from their parts (entries with
//! computed, linked, forked or forged ids, bodies with extreme
//! incarnations, sync trees, wants) or raw bytes, from member addresses, a
//! stranger and the node's own address; timers fired at their deadlines;
//! reports, heartbeats, reconciliations, joins, a leave and restarts from
//! the node's own store. After every step: `check_invariants()`, every
//! datagram the node sends decodes, every appended entry verifies, and a
//! restart from what the node appended succeeds.
//!
//! With `NODEPLANE_FUZZ_PANICS_ONLY=1`, a datagram the node cannot decode
//! itself is tolerated (to fuzz past that known finding).
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nodeplane_core::checkpoint::{Proposal, Vote, KIND_CHECKPOINT, KIND_CHECKPOINT_VOTE};
use nodeplane_core::ledger::{Entry, Hash, GENESIS_PREV};
use nodeplane_core::membership::{self, DeadBody, LeaveBody, ProfileBody, SuspectBody};
use nodeplane_core::testkit::{node_address, node_id, test_keys, test_signer};
use nodeplane_core::wire::{self, Message, SyncItem, WireEntry};
use nodeplane_core::{Effect, Node, NodeConfig, PeerState, Timer, Tunables};

/// `NODEPLANE_FUZZ_PANICS_ONLY=1` keeps fuzzing past a known property
/// failure (a datagram the node cannot decode itself): only panics of the
/// code and broken `check_invariants` fail.
fn panics_only() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("NODEPLANE_FUZZ_PANICS_ONLY").is_some())
}

/// Steps per input: long enough for probe rounds and suspicions, short
/// enough for thousands of executions per second.
const MAX_STEPS: usize = 200;
/// The node under test is `n0`; members `n1..=PEERS`.
const PEERS: u8 = 4;

#[derive(Arbitrary, Debug, Clone)]
enum Who {
    Own,
    Peer(u8),
    Fresh(u8),
    Text(String),
}

impl Who {
    fn name(&self) -> String {
        match self {
            Who::Own => node_id(0),
            Who::Peer(i) => node_id(usize::from(i % PEERS) + 1),
            Who::Fresh(i) => format!("x{}", i % 8),
            Who::Text(s) => s.clone(),
        }
    }
}

/// Control addresses a datagram may come from or a body may name.
fn address(i: u8) -> String {
    match i % 8 {
        0 => node_address(0),
        n @ 1..=4 => node_address(usize::from(n)),
        5 => "192.0.2.9:7000".into(),
        6 => "[::1]:7000".into(),
        _ => "not-an-address".into(),
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Num {
    Zero,
    One,
    Small(u8),
    /// The subject's current incarnation in the node's view, plus 0..=2.
    Current(u8),
    Max,
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum Seq {
    Next,
    Same,
    Raw(Num),
}

#[derive(Arbitrary, Debug)]
enum Prev {
    Linked,
    Genesis,
    Earlier(u8),
    Raw([u8; 32]),
}

#[derive(Arbitrary, Debug)]
enum Addr {
    /// The author's own address.
    Own,
    Index(u8),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Body {
    Join {
        inc: Num,
        addr: Addr,
        meta: Vec<(String, String)>,
    },
    Alive {
        inc: Num,
        addr: Addr,
    },
    Metadata {
        inc: Num,
        addr: Addr,
        meta: Vec<(String, String)>,
    },
    Suspect {
        subject: Who,
        inc: Num,
    },
    Dead {
        subject: Who,
        inc: Num,
        evidence: Vec<u8>,
        suspecters: u32,
    },
    Leave {
        inc: Num,
    },
    /// A `checkpoint` proposal (design §13.4, run by the node: §13.9).
    Checkpoint {
        n: Num,
        round: Num,
        /// `None`: the id of an entry seen (a plausible hash).
        id: Option<[u8; 32]>,
        prev: Option<[u8; 32]>,
        /// The node's current frontier digest, or any bytes.
        cut: Option<[u8; 32]>,
    },
    /// A `checkpoint-vote`.
    CheckpointVote {
        n: Num,
        round: Num,
        /// `None`: a skip.
        id: Option<[u8; 32]>,
    },
    Raw {
        kind: String,
        body: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum Id {
    Computed,
    Flipped(u8),
}

#[derive(Arbitrary, Debug)]
struct Spec {
    author: Who,
    seq: Seq,
    prev: Prev,
    clock: Num,
    body: Body,
    id: Id,
}

#[derive(Arbitrary, Debug)]
enum Item {
    Node {
        path: Vec<u8>,
        digests: Vec<[u8; 8]>,
    },
    Leaf {
        path: Vec<u8>,
        heads: Vec<(Who, Num)>,
    },
}

#[derive(Arbitrary, Debug)]
enum Msg {
    Ping {
        seq: u32,
        target: Option<Who>,
        digest: [u8; 8],
        entries: Vec<Spec>,
    },
    /// An ack of the node's latest ping (or of `seq`).
    Ack {
        seq: Option<u32>,
        digest: [u8; 8],
        entries: Vec<Spec>,
    },
    PingReq {
        seq: u32,
        target: Who,
        address: u8,
    },
    IndirectAck {
        seq: Option<u32>,
    },
    Nack {
        seq: Option<u32>,
    },
    Gossip {
        entries: Vec<Spec>,
    },
    Sync {
        items: Vec<Item>,
    },
    Want {
        heads: Vec<(Who, Num)>,
    },
    Entries {
        entries: Vec<Spec>,
        rest: Vec<(Who, Num)>,
    },
    /// A `cut-get` (the cut sync, design §13.9); `cut` `None`: the node's
    /// frontier digest.
    CutGet {
        n: Num,
        round: Num,
        cut: Option<[u8; 32]>,
        page: u32,
    },
    /// A `cut-heads` page; a head's id `None`: the id the node holds at
    /// that seq (a plausible head).
    CutHeads {
        cut: Option<[u8; 32]>,
        page: u32,
        total: u32,
        heads: Vec<(Who, Num, Option<[u8; 32]>)>,
    },
}

#[derive(Arbitrary, Debug)]
enum Op {
    Send {
        from: u8,
        msg: Msg,
    },
    Raw {
        from: u8,
        bytes: Vec<u8>,
    },
    /// Fire the earliest pending timer at its deadline.
    FireNext,
    /// Fire this timer (by id) at its deadline, if pending.
    Fire(u8),
    Advance(u16),
    Report {
        peer: Who,
        state: u8,
    },
    Heartbeat,
    Reconcile {
        address: u8,
    },
    Join {
        seeds: Vec<u8>,
    },
    Leave,
    /// Rebuild the node from what it appended (a crash and restart).
    Restart {
        seed: u64,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    seed: u64,
    /// Entries the store holds before the node starts (usually none).
    stored: Vec<Spec>,
    ops: Vec<Op>,
}

struct Harness {
    node: Node,
    now: u64,
    /// Every entry built so far, per author (to link, fork and cite).
    built: BTreeMap<String, Vec<Entry>>,
    all: Vec<Entry>,
    /// Pending timers: deadline.
    timers: BTreeMap<Timer, u64>,
    /// What the node appended, in order.
    store: Vec<Entry>,
    /// The latest ping sequence number the node sent.
    last_ping: u32,
}

fn config() -> NodeConfig {
    NodeConfig {
        node_id: node_id(0),
        address: node_address(0),
        // The checkpoint trigger at 4 entries (the test knob, design
        // §13.9), so that proposals, votes and agreement run within
        // `MAX_STEPS`.
        metadata: vec![
            ("overlay-ip".into(), "100.64.0.0".into()),
            ("nodeplane.checkpoint-min-tail".into(), "4".into()),
        ],
        tunables: Tunables::default(),
    }
}

impl Harness {
    fn num(&self, n: Num, subject: &str) -> u64 {
        match n {
            Num::Zero => 0,
            Num::One => 1,
            Num::Small(v) => u64::from(v),
            Num::Current(d) => self
                .node
                .member(subject)
                .map_or(1, |m| m.incarnation)
                .saturating_add(u64::from(d % 3)),
            Num::Max => u64::MAX,
            Num::Any(v) => v,
        }
    }

    /// The last entry of `author` known to the harness or the node.
    fn last(&self, author: &str) -> Option<Entry> {
        let built = self.built.get(author).and_then(|v| v.last()).cloned();
        let held = self.node.ledger().head_entry(author);
        match (built, held) {
            (Some(b), Some(h)) => Some(if h.seq > b.seq { h } else { b }),
            (b, h) => b.or(h),
        }
    }

    fn entry(&mut self, spec: &Spec) -> Entry {
        let author = spec.author.name();
        let last = self.last(&author);
        let seq = match &spec.seq {
            Seq::Next => last.as_ref().map_or(1, |e| e.seq.saturating_add(1)),
            Seq::Same => last.as_ref().map_or(1, |e| e.seq),
            Seq::Raw(n) => self.num(*n, &author),
        };
        let prev: Hash = match &spec.prev {
            Prev::Linked => last.as_ref().map_or(GENESIS_PREV, |e| e.id),
            Prev::Genesis => GENESIS_PREV,
            Prev::Earlier(i) => {
                if self.all.is_empty() {
                    GENESIS_PREV
                } else {
                    self.all[usize::from(*i) % self.all.len()].id
                }
            }
            Prev::Raw(h) => *h,
        };
        let author_addr = |a: &Addr| match a {
            Addr::Own => match &spec.author {
                Who::Peer(i) => node_address(usize::from(i % PEERS) + 1),
                Who::Own => node_address(0),
                _ => "192.0.2.9:7000".into(),
            },
            Addr::Index(i) => address(*i),
            Addr::Text(s) => s.clone(),
        };
        let (kind, body) = match &spec.body {
            Body::Join { inc, addr, meta } => (
                membership::KIND_JOIN.to_string(),
                membership::body(&ProfileBody {
                    inc: self.num(*inc, &author),
                    addr: author_addr(addr),
                    meta: meta.clone(),
                    signing_key: Some(hex::encode(test_keys(&author).public_key())),
                }),
            ),
            Body::Alive { inc, addr } => (
                membership::KIND_ALIVE.to_string(),
                membership::body(&ProfileBody {
                    inc: self.num(*inc, &author),
                    addr: author_addr(addr),
                    meta: Vec::new(),
                    signing_key: None,
                }),
            ),
            Body::Metadata { inc, addr, meta } => (
                membership::KIND_METADATA.to_string(),
                membership::body(&ProfileBody {
                    inc: self.num(*inc, &author),
                    addr: author_addr(addr),
                    meta: meta.clone(),
                    signing_key: None,
                }),
            ),
            Body::Suspect { subject, inc } => {
                let subject = subject.name();
                (
                    membership::KIND_SUSPECT.to_string(),
                    membership::body(&SuspectBody {
                        inc: self.num(*inc, &subject),
                        subject,
                    }),
                )
            }
            Body::Dead {
                subject,
                inc,
                evidence,
                suspecters,
            } => {
                let subject = subject.name();
                let evidence = evidence
                    .iter()
                    .filter(|_| !self.all.is_empty())
                    .map(|i| self.all[usize::from(*i) % self.all.len()].id_hex())
                    .collect();
                (
                    membership::KIND_CONFIRM_DEAD.to_string(),
                    membership::body(&DeadBody {
                        inc: self.num(*inc, &subject),
                        subject,
                        evidence,
                        suspecters: *suspecters,
                    }),
                )
            }
            Body::Leave { inc } => (
                membership::KIND_LEAVE.to_string(),
                membership::body(&LeaveBody {
                    inc: self.num(*inc, &author),
                }),
            ),
            Body::Checkpoint {
                n,
                round,
                id,
                prev,
                cut,
            } => {
                let some = |h: &Option<[u8; 32]>| match h {
                    Some(h) => *h,
                    None if !self.all.is_empty() => self.all[self.all.len() - 1].id,
                    None => [0; 32],
                };
                let p = Proposal {
                    n: self.num(*n, &author),
                    round: self.num(*round, &author) as u32,
                    id: some(id),
                    prev: prev.unwrap_or([0; 32]),
                    cut: cut.unwrap_or_else(|| self.node.frontier_digest()),
                };
                (KIND_CHECKPOINT.to_string(), p.body())
            }
            Body::CheckpointVote { n, round, id } => {
                let v = Vote {
                    n: self.num(*n, &author),
                    round: self.num(*round, &author) as u32,
                    id: *id,
                };
                (KIND_CHECKPOINT_VOTE.to_string(), v.body())
            }
            Body::Raw { kind, body } => (kind.clone(), body.clone()),
        };
        let clock = self.num(spec.clock, &author);
        // Signed with the author's test key (the key every node of the
        // test kit uses), so entries get past the signature check.
        let mut e = test_keys(&author).sign(Entry::new(&author, seq, prev, clock, &kind, body));
        if let Id::Flipped(bit) = spec.id {
            e.id[usize::from(bit / 8) % 32] ^= 1 << (bit % 8);
        }
        self.built.entry(author).or_default().push(e.clone());
        self.all.push(e.clone());
        e
    }

    fn entries(&mut self, specs: &[Spec]) -> Vec<WireEntry> {
        specs
            .iter()
            .take(16)
            .map(|s| WireEntry::from(&self.entry(s)))
            .collect()
    }

    fn heads(&self, heads: &[(Who, Num)]) -> Vec<(String, u64)> {
        heads
            .iter()
            .take(16)
            .map(|(w, n)| {
                let a = w.name();
                let s = self.num(*n, &a);
                (a, s)
            })
            .collect()
    }

    fn message(&mut self, msg: &Msg) -> Message {
        let seq_or_last = |s: &Option<u32>, last: u32| s.unwrap_or(last);
        match msg {
            Msg::Ping {
                seq,
                target,
                digest,
                entries,
            } => Message::Ping {
                seq: *seq,
                target: target.as_ref().map_or_else(|| node_id(0), Who::name),
                digest: *digest,
                entries: self.entries(entries),
            },
            Msg::Ack {
                seq,
                digest,
                entries,
            } => Message::Ack {
                seq: seq_or_last(seq, self.last_ping),
                digest: *digest,
                entries: self.entries(entries),
            },
            Msg::PingReq {
                seq,
                target,
                address: a,
            } => Message::PingReq {
                seq: *seq,
                target: target.name(),
                address: address(*a),
            },
            Msg::IndirectAck { seq } => Message::IndirectAck {
                seq: seq_or_last(seq, self.last_ping),
            },
            Msg::Nack { seq } => Message::Nack {
                seq: seq_or_last(seq, self.last_ping),
            },
            Msg::Gossip { entries } => Message::Gossip {
                entries: self.entries(entries),
            },
            Msg::Sync { items } => Message::Sync {
                items: items
                    .iter()
                    .take(8)
                    .map(|i| match i {
                        Item::Node { path, digests } => SyncItem::Node {
                            path: path.clone(),
                            digests: digests.clone(),
                        },
                        Item::Leaf { path, heads } => SyncItem::Leaf {
                            path: path.clone(),
                            heads: self.heads(heads),
                        },
                    })
                    .collect(),
            },
            Msg::Want { heads } => Message::Want {
                heads: self.heads(heads),
            },
            Msg::Entries { entries, rest } => Message::Entries {
                entries: self.entries(entries),
                rest: self.heads(rest),
            },
            Msg::CutGet {
                n,
                round,
                cut,
                page,
            } => Message::CutGet {
                n: self.num(*n, ""),
                round: self.num(*round, "") as u32,
                cut: cut.unwrap_or_else(|| self.node.frontier_digest()),
                page: *page,
            },
            Msg::CutHeads {
                cut,
                page,
                total,
                heads,
            } => Message::CutHeads {
                cut: cut.unwrap_or_else(|| self.node.frontier_digest()),
                page: *page,
                total: *total,
                heads: heads
                    .iter()
                    .take(300)
                    .map(|(w, n, id)| {
                        let a = w.name();
                        let s = self.num(*n, &a);
                        let id = id.unwrap_or_else(|| {
                            self.node.ledger().id_at(&a, s).copied().unwrap_or([0; 32])
                        });
                        (a, s, id)
                    })
                    .collect(),
            },
        }
    }

    /// Performs the node's effects and checks what must always hold.
    fn settle(&mut self) {
        for effect in self.node.drain_effects() {
            match effect {
                Effect::Send { to, payload } => match wire::decode(&payload) {
                    Ok(Message::Ping { seq, .. }) => self.last_ping = seq,
                    Ok(_) => {}
                    Err(e) if !panics_only() => {
                        panic!("the node sent {to} a datagram it cannot decode itself: {e}")
                    }
                    Err(_) => {}
                },
                Effect::SetTimer { timer, after_ms } => {
                    self.timers.insert(timer, self.now.saturating_add(after_ms));
                }
                Effect::CancelTimer { timer } => {
                    self.timers.remove(&timer);
                }
                Effect::Append(entry) => {
                    assert!(
                        entry.verify().is_ok(),
                        "the node appended an entry that does not verify"
                    );
                    self.store.push(entry);
                }
                Effect::Update { .. } | Effect::Log { .. } => {}
            }
        }
        self.node.check_invariants();
    }

    fn fire(&mut self, timer: Timer) {
        if let Some(at) = self.timers.remove(&timer) {
            self.now = self.now.max(at);
            self.node.handle_timer(self.now, timer);
        }
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Send { from, msg } => {
                let msg = self.message(msg);
                let bytes = wire::encode(&msg);
                let _ = self.node.handle_message(self.now, &address(*from), &bytes);
            }
            Op::Raw { from, bytes } => {
                let _ = self.node.handle_message(self.now, &address(*from), bytes);
            }
            Op::FireNext => {
                if let Some((&timer, _)) = self.timers.iter().min_by_key(|(_, at)| **at) {
                    self.fire(timer);
                }
            }
            Op::Fire(id) => {
                if let Some(timer) = Timer::from_id(u64::from(*id % 8)) {
                    self.fire(timer);
                }
            }
            Op::Advance(ms) => self.now = self.now.saturating_add(u64::from(*ms)),
            Op::Report { peer, state } => {
                let state = match state % 4 {
                    0 => PeerState::Alive,
                    1 => PeerState::Suspect,
                    2 => PeerState::Dead,
                    _ => PeerState::Left,
                };
                let _ = self.node.report_peer_state(self.now, &peer.name(), state);
            }
            Op::Heartbeat => {
                let _ = self.node.publish_heartbeat(self.now);
            }
            Op::Reconcile { address: a } => {
                let _ = self.node.reconcile_with(self.now, &address(*a));
            }
            Op::Join { seeds } => {
                let seeds: Vec<String> = seeds.iter().take(4).map(|s| address(*s)).collect();
                let _ = self.node.join(self.now, &seeds);
            }
            Op::Leave => {
                let _ = self.node.leave(self.now);
            }
            Op::Restart { seed } => {
                let _ = self.node.drain_effects();
                self.node = Node::new(config(), self.store.clone(), *seed, self.now, test_signer(&config().node_id))
                    .unwrap_or_else(|e| panic!("the node cannot restart from its own store: {e}"));
                self.timers.clear();
                // A store holding this node's own `leave` may refuse a
                // rejoin with an error; that is not a failure.
                let _ = self.node.join(self.now, &[node_address(1)]);
            }
        }
        self.settle();
    }
}

fuzz_target!(|input: Input| {
    let now = 1_000_000;
    let mut pre = Harness {
        node: match Node::new(config(), Vec::new(), input.seed, now, test_signer(&config().node_id)) {
            Ok(n) => n,
            Err(e) => panic!("a fresh node starts: {e}"),
        },
        now,
        built: BTreeMap::new(),
        all: Vec::new(),
        timers: BTreeMap::new(),
        store: Vec::new(),
        last_ping: 0,
    };
    // Entries the store holds at start: a node must start from any store
    // or refuse it with an error, never panic.
    let stored: Vec<Entry> = input.stored.iter().take(16).map(|s| pre.entry(s)).collect();
    let node = match Node::new(config(), stored.clone(), input.seed, now, test_signer(&config().node_id)) {
        Ok(n) => n,
        Err(_) => return,
    };
    let mut h = Harness {
        node,
        store: stored,
        ..pre
    };
    h.node
        .join(h.now, &[node_address(1)])
        .expect("a fresh node joins");
    h.settle();
    for op in input.ops.iter().take(MAX_STEPS) {
        h.step(op);
    }
});
