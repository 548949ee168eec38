//! Helpers for the tests of the sans-IO core (`nodeplane-core`): node
//! configurations, hand-built ledger chains and effect filters.

#[allow(unused_imports)] // used by some of the including test binaries
pub use nodeplane_core::ledger::entry::signing::ed25519::NativeVerifier;
use nodeplane_core::ledger::{Entry, GENESIS_PREV};
use nodeplane_core::membership::{body, DeadBody, LeaveBody, ProfileBody, SuspectBody};
use nodeplane_core::testkit::{test_keys, test_signer};
use nodeplane_core::{Effect, Error, Node, NodeConfig, Timer, Tunables};

/// `Node::new` with the node's test key (`nodeplane_core::testkit::test_keys`),
/// the key hand-built chains of the same id are signed with.
pub fn new_node(
    config: NodeConfig,
    stored: Vec<Entry>,
    seed: u64,
    now_ms: u64,
) -> Result<Node, Error> {
    let signer = test_signer(&config.node_id);
    Node::new(config, stored, seed, now_ms, signer)
}

/// An entry signed with its author's test key.
pub fn signed(e: Entry) -> Entry {
    test_keys(&e.author.clone()).sign(e)
}

/// The hex of `id`'s test public key, as its `join` declares it.
pub fn test_key_hex(id: &str) -> String {
    hex::encode(test_keys(id).public_key())
}

pub fn config(id: &str, addr: &str) -> NodeConfig {
    NodeConfig {
        node_id: id.into(),
        address: addr.into(),
        metadata: vec![("role".into(), "test".into())],
        tunables: Tunables::DEFAULTS,
    }
}

/// Appends entries to authors' chains, keeping links right.
#[derive(Default)]
pub struct ChainBuilder {
    pub entries: Vec<Entry>,
    heads: std::collections::BTreeMap<String, (u64, [u8; 32])>,
    clock: u64,
}

impl ChainBuilder {
    pub fn push(&mut self, author: &str, kind: &str, body: Vec<u8>) -> Entry {
        let (seq, prev) = self
            .heads
            .get(author)
            .map_or((1, GENESIS_PREV), |(s, id)| (s + 1, *id));
        self.clock += 1;
        let e = signed(Entry::new(author, seq, prev, self.clock, kind, body));
        self.heads.insert(author.to_string(), (seq, e.id));
        self.entries.push(e.clone());
        e
    }
    /// Pushes `kind` with the JSON object `body`, except that an author's
    /// first entry becomes a `join` declaring its key (the only first
    /// entry a receiver accepts) with the same fields.
    pub fn push_object(&mut self, author: &str, kind: &str, body: serde_json::Value) -> Entry {
        if self.heads.contains_key(author) {
            return self.push(author, kind, body.to_string().into_bytes());
        }
        let mut body = body;
        if let Some(map) = body.as_object_mut() {
            map.insert("signing_key".into(), test_key_hex(author).into());
        }
        self.push(author, "join", body.to_string().into_bytes())
    }
    pub fn join(&mut self, author: &str, inc: u64) -> Entry {
        let addr = format!(
            "10.9.0.{}:7000",
            author.bytes().map(u32::from).sum::<u32>() % 250 + 1
        );
        self.push(
            author,
            "join",
            body(&ProfileBody {
                inc,
                addr,
                meta: vec![],
                signing_key: Some(test_key_hex(author)),
            }),
        )
    }
    pub fn alive(&mut self, author: &str, inc: u64) -> Entry {
        let addr = format!(
            "10.9.0.{}:7000",
            author.bytes().map(u32::from).sum::<u32>() % 250 + 1
        );
        self.push(
            author,
            "alive",
            body(&ProfileBody {
                inc,
                addr,
                meta: vec![],
                signing_key: None,
            }),
        )
    }
    pub fn suspect(&mut self, author: &str, subject: &str, inc: u64) -> Entry {
        self.push(
            author,
            "suspect",
            body(&SuspectBody {
                subject: subject.into(),
                inc,
            }),
        )
    }
    pub fn dead(&mut self, author: &str, subject: &str, inc: u64) -> Entry {
        self.push(
            author,
            "confirm-dead",
            body(&DeadBody {
                subject: subject.into(),
                inc,
                evidence: vec![],
                suspecters: 0,
            }),
        )
    }
    pub fn leave(&mut self, author: &str, inc: u64) -> Entry {
        self.push(author, "leave", body(&LeaveBody { inc }))
    }
}

pub fn sends(effects: &[Effect<Timer, ()>]) -> Vec<(String, Vec<u8>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, payload } => Some((to.clone(), payload.clone())),
            _ => None,
        })
        .collect()
}

pub fn updates(effects: &[Effect<Timer, ()>]) -> Vec<nodeplane_core::MembershipUpdate> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Update { update, .. } => Some(update.clone()),
            _ => None,
        })
        .collect()
}

pub fn appended(effects: &[Effect<Timer, ()>]) -> Vec<Entry> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Append(x) => Some(x.clone()),
            _ => None,
        })
        .collect()
}

/// Takes a node's effects after checking its invariants: the tests call
/// this after every step.
pub trait Checked {
    /// `check_invariants`, then `drain_effects`.
    fn drain_checked(&mut self) -> Vec<Effect<Timer, ()>>;
}

impl Checked for Node {
    fn drain_checked(&mut self) -> Vec<Effect<Timer, ()>> {
        self.check_invariants();
        self.drain_effects()
    }
}

pub fn joined_node(id: &str, addr: &str) -> Node {
    let mut n = new_node(config(id, addr), vec![], 1, 0).unwrap();
    n.join(0, &[]).unwrap();
    n.drain_checked();
    n
}
