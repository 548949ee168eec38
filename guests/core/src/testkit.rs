//! A deterministic in-memory harness for many nodes: virtual clock, one
//! event queue, per-message latency, loss, partitions, mute nodes, crash
//! and restart. Everything random comes from the seed, so a failing run
//! replays exactly.
//!
//! ```
//! use nodeplane_core::testkit::Sim;
//! let mut sim = Sim::new(5, 7);
//! sim.start_all();
//! sim.run_for(10_000);
//! assert!(sim.converged());
//! ```

// A test harness: it drives honest nodes from test code with indices and
// times the tests choose, is never built into the component (the guest
// turns the `testkit` feature off) and reads no network input; a misuse is
// a test bug and panics loudly. The crate's input-hardening lints
// (lib.rs) therefore do not apply here.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use nodeplane_types::{Effect, Member, MembershipUpdate, NodeConfig, PeerState, Tunables};

use crate::effect::Timer;
use crate::ledger::Entry;
use crate::node::Node;
use crate::rng::Rng;
use nodeplane_entry::signing::ed25519::KeyPair;
use nodeplane_entry::signing::Signer;

/// Context of [`test_keys`]: the keys of native tests, never a real node's.
const TEST_KEY_CONTEXT: &[u8] = b"nodeplane-core-testkit";

/// The deterministic key pair of node `id` in native tests: every test
/// that writes entries by hand for `id` signs them with this, and every
/// node the test kit starts signs with it, so hand-made and node-made
/// entries agree.
pub fn test_keys(id: &str) -> KeyPair {
    KeyPair::derived(TEST_KEY_CONTEXT, id)
}

/// [`test_keys`] as the signer [`Node::new`] takes.
pub fn test_signer(id: &str) -> Box<dyn Signer> {
    Box::new(test_keys(id))
}

/// Smallest one-way latency, ms.
pub const MIN_LATENCY_MS: u64 = 1;
/// Largest one-way latency, ms.
pub const MAX_LATENCY_MS: u64 = 10;

/// The id of node `i` in a simulation.
pub fn node_id(i: usize) -> String {
    format!("n{i}")
}

/// The address of node `i` in a simulation.
pub fn node_address(i: usize) -> String {
    format!("10.{}.{}.{}:7000", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Deliver {
        to: usize,
        from: String,
        payload: Vec<u8>,
    },
    Timer {
        node: usize,
        timer: Timer,
        generation: u64,
    },
}

/// One simulated node: its instance (when running), store and timers.
#[derive(Debug)]
pub struct SimNode {
    /// The running instance, `None` while crashed.
    pub node: Option<Node>,
    /// The durable store: every appended entry, in order.
    pub store: Vec<Entry>,
    /// Every update emitted, across restarts.
    pub updates: Vec<MembershipUpdate>,
    /// Every log line (kind, detail).
    pub logs: Vec<(String, String)>,
    timers: BTreeMap<Timer, u64>,
    /// The view version last seen (it never goes down).
    version: u64,
    generation: u64,
    restarts: u64,
}

/// One traced message: (time, from, to, message type, bytes).
pub type TraceRecord = (u64, usize, usize, &'static str, usize);

/// Counters of the simulated network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to the network.
    pub messages: u64,
    /// Payload bytes handed to the network.
    pub bytes: u64,
    /// Messages dropped (loss, partition, crash, mute).
    pub dropped: u64,
    /// (messages, bytes) per message type.
    pub by_type: BTreeMap<&'static str, (u64, u64)>,
}

/// The simulation.
#[derive(Debug)]
pub struct Sim {
    /// The nodes, by index.
    pub nodes: Vec<SimNode>,
    /// Virtual time, ms.
    pub now: u64,
    /// Network counters.
    pub stats: NetStats,
    /// Probability of losing each message, 0.0..=1.0.
    pub loss: f64,
    /// Tunables given to every node.
    pub tunables: Tunables,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    counter: u64,
    rng: Rng,
    seed: u64,
    by_addr: BTreeMap<String, usize>,
    group: Vec<u32>,
    blocked_pairs: BTreeSet<(usize, usize)>,
    mute: BTreeSet<usize>,
    /// When `Some`, every message sent is recorded as
    /// (time, from, to, message type, bytes).
    pub trace: Option<Vec<TraceRecord>>,
    /// (observer, subject) pairs where a node that was running was marked
    /// `dead` by an observer.
    pub false_deaths: BTreeSet<(usize, usize)>,
    /// When true, nodes started from now on perform their effects through
    /// an effect sink during each call ([`Node::set_effect_sink`], as the
    /// component does), rather than only at the drain.
    pub effect_sinks: bool,
    /// What the sinks performed since the last flush, in order.
    sunk: std::rc::Rc<std::cell::RefCell<Vec<Effect<Timer, ()>>>>,
}

impl Sim {
    /// `n` nodes (not yet started) with default tunables.
    pub fn new(n: usize, seed: u64) -> Sim {
        Sim {
            nodes: (0..n)
                .map(|_| SimNode {
                    node: None,
                    store: Vec::new(),
                    updates: Vec::new(),
                    logs: Vec::new(),
                    timers: BTreeMap::new(),
                    version: 0,
                    generation: 0,
                    restarts: 0,
                })
                .collect(),
            now: 0,
            stats: NetStats::default(),
            loss: 0.0,
            tunables: Tunables::DEFAULTS,
            queue: BinaryHeap::new(),
            counter: 0,
            rng: Rng::new(seed ^ 0x5eed),
            seed,
            by_addr: (0..n).map(|i| (node_address(i), i)).collect(),
            group: vec![0; n],
            blocked_pairs: BTreeSet::new(),
            mute: BTreeSet::new(),
            false_deaths: BTreeSet::new(),
            effect_sinks: false,
            sunk: Default::default(),
            trace: None,
        }
    }

    /// The seed of this run (print it in failure messages).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn config(&self, i: usize) -> NodeConfig {
        NodeConfig {
            node_id: node_id(i),
            address: node_address(i),
            metadata: vec![(
                "overlay-ip".into(),
                format!("100.64.{}.{}", (i >> 8) & 255, i & 255),
            )],
            tunables: self.tunables,
        }
    }

    /// Starts node `i` from its store and joins through node 0 (node 0
    /// itself starts a new cluster).
    pub fn start(&mut self, i: usize) {
        let stored = self.nodes[i].store.clone();
        let seed = self
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(i as u64 * 7919 + self.nodes[i].restarts);
        let id = self.config(i).node_id;
        let mut node = Node::new(self.config(i), stored, seed, self.now, test_signer(&id))
            .expect("valid config and store");
        if self.effect_sinks {
            let sunk = std::rc::Rc::clone(&self.sunk);
            node.set_effect_sink(crate::EffectSink(Box::new(move |e| {
                sunk.borrow_mut().push(e)
            })));
        }
        let seeds = if i == 0 {
            vec![]
        } else {
            vec![node_address(0)]
        };
        node.join(self.now, &seeds).expect("join");
        self.nodes[i].node = Some(node);
        self.nodes[i].timers.clear();
        self.nodes[i].version = 0;
        self.flush(i);
    }

    /// Starts every node at the current time.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// Stops node `i` without a goodbye; its store survives.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].node = None;
        self.nodes[i].timers.clear();
        self.nodes[i].generation += 1;
    }

    /// Restarts a crashed node from its store.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restarts += 1;
        self.start(i);
    }

    /// Node `i` leaves gracefully.
    pub fn leave(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].node.as_mut() {
            n.leave(self.now).expect("leave");
        }
        self.flush(i);
    }

    /// Splits the nodes: messages pass only within a group.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        for (g, members) in groups.iter().enumerate() {
            for &i in members {
                self.group[i] = g as u32 + 1;
            }
        }
    }

    /// Removes every partition, blocked pair and mute node.
    pub fn heal(&mut self) {
        self.group.iter_mut().for_each(|g| *g = 0);
        self.blocked_pairs.clear();
        self.mute.clear();
    }

    /// Node `i` still receives but everything it sends is lost.
    pub fn set_mute(&mut self, i: usize) {
        self.mute.insert(i);
    }

    /// Blocks direct messages between `a` and `b`, both ways.
    pub fn block_pair(&mut self, a: usize, b: usize) {
        self.blocked_pairs.insert((a.min(b), a.max(b)));
    }

    fn push(&mut self, at: u64, ev: Event) {
        self.counter += 1;
        self.queue.push(Reverse((at, self.counter, ev)));
    }

    /// Checks node `i`'s invariants, then performs its effects.
    fn flush(&mut self, i: usize) {
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        node.check_invariants();
        let version = node.view_version();
        let drained = node.drain_effects();
        let mut effects = std::mem::take(&mut *self.sunk.borrow_mut());
        effects.extend(drained);
        for eff in effects {
            match eff {
                Effect::Send { to, payload } => {
                    self.stats.messages += 1;
                    self.stats.bytes += payload.len() as u64;
                    if let Ok(m) = crate::wire::decode(&payload) {
                        let slot = self.stats.by_type.entry(m.name()).or_default();
                        slot.0 += 1;
                        slot.1 += payload.len() as u64;
                        if let (Some(t), Some(&j)) = (self.trace.as_mut(), self.by_addr.get(&to)) {
                            t.push((self.now, i, j, m.name(), payload.len()));
                        }
                    }
                    let Some(&j) = self.by_addr.get(&to) else {
                        self.stats.dropped += 1;
                        continue;
                    };
                    let lost = self.loss > 0.0
                        && (self.rng.next_u64() as f64 / u64::MAX as f64) < self.loss;
                    let cut = self.group[i] != self.group[j]
                        || self.blocked_pairs.contains(&(i.min(j), i.max(j)))
                        || self.mute.contains(&i);
                    if lost || cut {
                        self.stats.dropped += 1;
                        continue;
                    }
                    let latency =
                        MIN_LATENCY_MS + self.rng.below(MAX_LATENCY_MS - MIN_LATENCY_MS + 1);
                    self.push(
                        self.now + latency,
                        Event::Deliver {
                            to: j,
                            from: node_address(i),
                            payload,
                        },
                    );
                }
                Effect::SetTimer { timer, after_ms } => {
                    let generation = self.nodes[i].generation;
                    self.nodes[i].timers.insert(timer, self.now + after_ms);
                    self.push(
                        self.now + after_ms,
                        Event::Timer {
                            node: i,
                            timer,
                            generation,
                        },
                    );
                }
                Effect::CancelTimer { timer } => {
                    self.nodes[i].timers.remove(&timer);
                }
                Effect::Append(e) => self.nodes[i].store.push(e),
                Effect::Update { update: u, .. } => {
                    assert_eq!(
                        u.version,
                        self.nodes[i].version + 1,
                        "node {i}: view versions rise by one per update (seed {})",
                        self.seed
                    );
                    self.nodes[i].version = u.version;
                    if u.current.state == PeerState::Dead {
                        if let Some(j) = self.index_of(&u.peer) {
                            if self.nodes[j].node.is_some() {
                                self.false_deaths.insert((i, j));
                            }
                        }
                    }
                    self.nodes[i].updates.push(u);
                }
                Effect::Log { kind, detail } => self.nodes[i].logs.push((kind, detail)),
            }
        }
        assert_eq!(
            self.nodes[i].version, version,
            "node {i}: an update went missing (seed {})",
            self.seed
        );
    }

    /// The index of a node id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        id.strip_prefix('n')?
            .parse()
            .ok()
            .filter(|&i: &usize| i < self.nodes.len())
    }

    /// Runs one event; false when the queue is empty or past `until`.
    fn step(&mut self, until: u64) -> bool {
        let Some(Reverse((at, _, _))) = self.queue.peek() else {
            return false;
        };
        if *at > until {
            return false;
        }
        let Reverse((at, _, ev)) = self.queue.pop().expect("peeked");
        self.now = at;
        match ev {
            Event::Deliver { to, from, payload } => {
                if let Some(n) = self.nodes[to].node.as_mut() {
                    n.handle_message(at, &from, &payload)
                        .expect("well-formed message");
                    self.flush(to);
                } else {
                    self.stats.dropped += 1;
                }
            }
            Event::Timer {
                node,
                timer,
                generation,
            } => {
                let sn = &mut self.nodes[node];
                if sn.generation != generation || sn.timers.get(&timer) != Some(&at) {
                    return true;
                }
                sn.timers.remove(&timer);
                if let Some(n) = sn.node.as_mut() {
                    n.handle_timer(at, timer);
                    self.flush(node);
                }
            }
        }
        true
    }

    /// Runs until virtual time `t`.
    pub fn run_until(&mut self, t: u64) {
        while self.step(t) {}
        self.now = self.now.max(t);
    }

    /// Runs for `ms` more.
    pub fn run_for(&mut self, ms: u64) {
        self.run_until(self.now + ms);
    }

    /// Runs in steps of `step_ms` until `pred` holds or `limit_ms` passes;
    /// returns the time it took, if it held.
    pub fn run_until_pred(
        &mut self,
        step_ms: u64,
        limit_ms: u64,
        mut pred: impl FnMut(&Sim) -> bool,
    ) -> Option<u64> {
        let start = self.now;
        while self.now < start + limit_ms {
            if pred(self) {
                return Some(self.now - start);
            }
            self.run_for(step_ms);
        }
        pred(self).then(|| self.now - start)
    }

    /// Indices of running nodes that have not left.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i]
                    .node
                    .as_ref()
                    .is_some_and(|n| !n.has_left() && n.has_joined())
            })
            .collect()
    }

    /// Node `i`'s view of `subject`.
    pub fn state_of(&self, i: usize, subject: usize) -> Option<PeerState> {
        self.nodes[i]
            .node
            .as_ref()?
            .member(&node_id(subject))
            .map(|m| m.state)
    }

    /// Node `i`'s view of a member.
    pub fn member(&self, i: usize, subject: usize) -> Option<Member> {
        self.nodes[i].node.as_ref()?.member(&node_id(subject))
    }

    /// Every running node sees every running node `alive` and no running
    /// node `suspect` or `dead`.
    pub fn converged(&self) -> bool {
        let live = self.running();
        live.iter().all(|&i| {
            live.iter()
                .all(|&j| self.state_of(i, j) == Some(PeerState::Alive))
        })
    }

    /// Every running node (other than `subject`) sees `subject` in `state`.
    pub fn all_see(&self, subject: usize, state: PeerState) -> bool {
        self.running()
            .into_iter()
            .filter(|&i| i != subject)
            .all(|i| self.state_of(i, subject) == Some(state))
    }

    /// Whether any running node sees `subject` in `state`.
    pub fn any_sees(&self, subject: usize, state: PeerState) -> bool {
        self.running()
            .into_iter()
            .filter(|&i| i != subject)
            .any(|i| self.state_of(i, subject) == Some(state))
    }

    /// Whether every running node holds the same frontier.
    pub fn ledgers_identical(&self) -> bool {
        let live = self.running();
        let mut digests = live.iter().map(|&i| {
            self.nodes[i]
                .node
                .as_ref()
                .expect("running")
                .frontier_digest()
        });
        let first = digests.next();
        digests.all(|d| Some(d) == first)
    }

    /// Number of log lines of a kind, over all nodes.
    pub fn log_count(&self, kind: &str) -> usize {
        self.nodes
            .iter()
            .map(|n| n.logs.iter().filter(|(k, _)| k == kind).count())
            .sum()
    }
}
