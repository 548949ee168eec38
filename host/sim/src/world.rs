//! The simulated world: N nodes running the same component, one event
//! queue in virtual time, the network, faults, and the observed views.
//!
//! ```no_run
//! use std::time::Duration;
//! use nodeplane_sim::Sim;
//! let mut sim = Sim::builder().nodes(8).seed(7).loss(0.05).build()?;
//! sim.run_until_converged(Duration::from_secs(30));
//! sim.crash(3);
//! sim.run_for(Duration::from_secs(20));
//! sim.restart(3)?;
//! sim.check(nodeplane_sim::Expect::Converge)?;
//! # Ok::<(), nodeplane_sim::SimError>(())
//! ```

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use nodeplane_interface::{MembershipUpdate, PeerState, Subscription};
use nodeplane_runtime::{LoadedComponent, MemoryLedger, Node, NodeConfig, Runtime, Tunables};

use crate::component::{self, ComponentChoice};
use crate::network::{NetConfig, NetStats, Network};
use crate::queue::{EventKind, EventQueue};
use crate::rng::SimRng;
use crate::services::SimServices;
use crate::trace::{Trace, TraceEvent};
use crate::views::{Observations, Sample, Transition, View};
use crate::SimError;

/// How often the run loops test a convergence or other predicate.
pub const CHECK_INTERVAL_MS: u64 = 50;
/// Port of every simulated control address.
pub const SIM_PORT: u16 = 7946;

/// The id of node `i`.
pub fn node_id(i: usize) -> String {
    format!("n{i}")
}

/// The control address of node `i` (nothing is really sent).
pub fn node_address(i: usize) -> String {
    format!("10.0.{}.{}:{SIM_PORT}", i / 256, i % 256)
}

/// One simulated node.
pub struct SimNode {
    /// Its id.
    pub id: String,
    /// Its address.
    pub address: String,
    node: Option<Node<SimServices>>,
    subscription: Option<Subscription>,
    /// The store while the node is down.
    parked: Option<MemoryLedger>,
    /// Restart count; stale timers of earlier lives are ignored.
    pub life: u64,
    /// Whether it called `leave`.
    pub left: bool,
    /// Whether `join` was called.
    pub joined: bool,
    /// Causal depth of the latest message it received.
    pub depth: u64,
    /// Messages it sent.
    pub sent_messages: u64,
    /// Payload bytes it sent.
    pub sent_bytes: u64,
    /// Guest calls that returned an error.
    pub call_errors: u64,
}

impl SimNode {
    /// Whether the component is running (not crashed).
    pub fn is_running(&self) -> bool {
        self.node.is_some()
    }

    /// The ledger store (running or parked).
    pub fn ledger(&self) -> &MemoryLedger {
        match (&self.node, &self.parked) {
            (Some(node), _) => &node.services().ledger,
            (None, Some(parked)) => parked,
            (None, None) => unreachable!("a node always has a running instance or a parked store"),
        }
    }

    /// The running node, if any.
    pub fn node(&self) -> Option<&Node<SimServices>> {
        self.node.as_ref()
    }
}

/// Builds a [`Sim`].
#[derive(Clone, Debug)]
pub struct SimBuilder {
    nodes: usize,
    seed: u64,
    net: NetConfig,
    component: ComponentChoice,
    tunables: Tunables,
    sample_every_ms: Option<u64>,
    join: bool,
    ledgers: Vec<MemoryLedger>,
}

impl Default for SimBuilder {
    fn default() -> Self {
        SimBuilder {
            nodes: 5,
            seed: 0,
            net: NetConfig::default(),
            component: ComponentChoice::default(),
            tunables: Tunables::default(),
            sample_every_ms: None,
            join: true,
            ledgers: Vec::new(),
        }
    }
}

impl SimBuilder {
    /// Number of nodes.
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }
    /// The seed of every random choice.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Probability that a message is lost.
    pub fn loss(mut self, p: f64) -> Self {
        self.net.loss = p;
        self
    }
    /// Probability that a message is delivered twice.
    pub fn duplicate(mut self, p: f64) -> Self {
        self.net.duplicate = p;
        self
    }
    /// Probability that a message is delayed out of order.
    pub fn reorder(mut self, p: f64) -> Self {
        self.net.reorder = p;
        self
    }
    /// One-way latency range, ms.
    pub fn latency_ms(mut self, min: u64, max: u64) -> Self {
        self.net.min_latency_ms = min;
        self.net.max_latency_ms = max;
        self
    }
    /// The component to run.
    pub fn component(mut self, choice: ComponentChoice) -> Self {
        self.component = choice;
        self
    }
    /// Protocol tunables of every node.
    pub fn tunables(mut self, t: Tunables) -> Self {
        self.tunables = t;
        self
    }
    /// Records every node's view counts every `ms` (for the SVG).
    pub fn sample_every_ms(mut self, ms: u64) -> Self {
        self.sample_every_ms = Some(ms);
        self
    }
    /// Whether nodes join at t=0 (node 0 alone, the others through node 0).
    pub fn join(mut self, join: bool) -> Self {
        self.join = join;
        self
    }
    /// Pre-filled stores, by node index (missing ones start empty).
    pub fn ledgers(mut self, ledgers: Vec<MemoryLedger>) -> Self {
        self.ledgers = ledgers;
        self
    }

    /// Starts every node (and joins them, unless told not to).
    pub fn build(mut self) -> Result<Sim, SimError> {
        let (runtime, loaded) = component::load(&self.component)?;
        let n = self.nodes;
        let mut sim = Sim {
            seed: self.seed,
            now: 0,
            rng: SimRng::new(self.seed),
            queue: EventQueue::new(),
            network: Network {
                config: self.net,
                ..Network::default()
            },
            runtime,
            loaded,
            component: self.component.clone(),
            tunables: self.tunables,
            nodes: Vec::with_capacity(n),
            by_address: HashMap::new(),
            by_id: HashMap::new(),
            views: (0..n).map(|_| View::new(n)).collect(),
            observations: Observations::default(),
            trace: Trace::new(),
            violations: Vec::new(),
            sample_every_ms: self.sample_every_ms,
            next_sample: 0,
            samples: Vec::new(),
        };
        for i in 0..n {
            let ledger = if i < self.ledgers.len() {
                std::mem::take(&mut self.ledgers[i])
            } else {
                MemoryLedger::new()
            };
            sim.by_address.insert(node_address(i), i);
            sim.by_id.insert(node_id(i), i);
            sim.nodes.push(SimNode {
                id: node_id(i),
                address: node_address(i),
                node: None,
                subscription: None,
                parked: Some(ledger),
                life: 0,
                left: false,
                joined: false,
                depth: 0,
                sent_messages: 0,
                sent_bytes: 0,
                call_errors: 0,
            });
            sim.boot(i)?;
        }
        if self.join {
            for i in 0..n {
                sim.join(i)?;
            }
        }
        Ok(sim)
    }
}

/// What the end-of-run check expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Safety only: chains verify, `left` only after leave, incarnations
    /// never go down (any component, including the stub).
    Safety,
    /// Safety, and after the network is healthy: views converge within
    /// [`crate::invariants::CONVERGENCE_BOUND_MS`], no live node is `dead`
    /// anywhere, and ledgers reach one frontier digest.
    Converge,
}

/// A deterministic simulation of many nodes.
pub struct Sim {
    seed: u64,
    now: u64,
    rng: SimRng,
    queue: EventQueue,
    /// The network (configuration, faults, counters).
    pub network: Network,
    runtime: Runtime,
    loaded: LoadedComponent,
    component: ComponentChoice,
    tunables: Tunables,
    nodes: Vec<SimNode>,
    by_address: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
    views: Vec<View>,
    /// Transitions and false verdicts observed.
    pub observations: Observations,
    trace: Trace,
    violations: Vec<String>,
    sample_every_ms: Option<u64>,
    next_sample: u64,
    samples: Vec<Sample>,
}

impl Sim {
    /// A builder with defaults (5 nodes, seed 0, no loss).
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual time, ms.
    pub fn now_ms(&self) -> u64 {
        self.now
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The component simulated.
    pub fn component(&self) -> &ComponentChoice {
        &self.component
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &SimNode {
        &self.nodes[i]
    }

    /// Every node.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// The simulator's random generator (scenarios draw their choices here).
    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.rng
    }

    /// Node `i`'s view as observed.
    pub fn view(&self, i: usize) -> &View {
        &self.views[i]
    }

    /// The state of `subject` in `observer`'s view.
    pub fn state_of(&self, observer: usize, subject: usize) -> Option<PeerState> {
        self.views[observer].state(subject)
    }

    /// The incarnation of `subject` in `observer`'s view.
    pub fn incarnation_of(&self, observer: usize, subject: usize) -> Option<u64> {
        self.views[observer].states[subject].map(|(_, inc)| inc)
    }

    /// Running and not left.
    pub fn is_live(&self, i: usize) -> bool {
        self.nodes[i].is_running() && !self.nodes[i].left
    }

    /// Indices of the live nodes.
    pub fn live_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.is_live(*i)).collect()
    }

    /// Network counters.
    pub fn net_stats(&self) -> &NetStats {
        &self.network.stats
    }

    /// The trace (hash and excerpt).
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Hex hash of the whole event trace so far.
    pub fn trace_hash(&self) -> String {
        self.trace.hash_hex()
    }

    /// The view-count samples taken (see [`SimBuilder::sample_every_ms`]).
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Safety violations recorded during the run.
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    pub(crate) fn violation(&mut self, what: String) {
        tracing::warn!(seed = self.seed, at_ms = self.now, %what, "invariant violated");
        self.violations
            .push(format!("t={:.3}s {what}", self.now as f64 / 1000.0));
    }

    fn action(&mut self, what: String) {
        tracing::debug!(at_ms = self.now, %what, "sim action");
        self.trace.record(self.now, TraceEvent::Action(what), &[]);
    }

    // ---- node lifecycle -------------------------------------------------

    fn boot(&mut self, i: usize) -> Result<(), SimError> {
        let ledger = self.nodes[i].parked.take().unwrap_or_default();
        let mut services = SimServices::new(self.rng.next_u64(), ledger);
        services.now_ms = self.now;
        let config = NodeConfig {
            node_id: node_id(i),
            address: node_address(i),
            metadata: vec![(
                "overlay-ip".into(),
                format!("100.64.{}.{}", i / 256, i % 256),
            )],
            tunables: self.tunables,
        };
        let node = match Node::start(&self.runtime, &self.loaded, config, services) {
            Ok(node) => node,
            Err(e) => {
                return Err(SimError::Node {
                    node: i,
                    reason: e.to_string(),
                })
            }
        };
        let slot = &mut self.nodes[i];
        slot.node = Some(node);
        let node = slot.node.as_mut().expect("just set");
        let subscription = node.subscribe().map_err(|e| SimError::Node {
            node: i,
            reason: e.to_string(),
        })?;
        slot.subscription = Some(subscription);
        // Start from the view the component rebuilt from its store.
        let mirror = node.mirror_view();
        self.views[i].clear();
        for m in mirror.members {
            if let Some(&s) = self.by_id.get(&m.id) {
                self.views[i].set(s, m.state, m.incarnation);
                let high = &mut self.views[i].max_incarnation[s];
                *high = (*high).max(m.incarnation);
            }
        }
        self.after_call(i);
        Ok(())
    }

    /// The seeds node `i` joins through: node 0's address (none for node 0
    /// itself, which starts the cluster).
    fn seeds_of(&self, i: usize) -> Vec<String> {
        if i == 0 {
            Vec::new()
        } else {
            vec![node_address(0)]
        }
    }

    /// Calls `join` on node `i` with its seeds.
    pub fn join(&mut self, i: usize) -> Result<(), SimError> {
        let seeds = self.seeds_of(i);
        self.action(format!("join n{i}"));
        match self.call(i, |node| node.join(&seeds).map(|_| ())) {
            Some(Ok(())) => {
                self.nodes[i].joined = true;
                Ok(())
            }
            Some(Err(e)) => Err(SimError::Node {
                node: i,
                reason: format!("join failed: {e}"),
            }),
            None => Err(SimError::Node {
                node: i,
                reason: "join on a crashed node".into(),
            }),
        }
    }

    /// Stops node `i` without leaving; its store is kept.
    pub fn crash(&mut self, i: usize) {
        self.action(format!("crash n{i}"));
        let slot = &mut self.nodes[i];
        if let Some(mut node) = slot.node.take() {
            slot.parked = Some(std::mem::take(&mut node.services_mut().ledger));
            slot.subscription = None;
            slot.life += 1;
        }
    }

    /// Restarts node `i` on its persisted store and rejoins it.
    pub fn restart(&mut self, i: usize) -> Result<(), SimError> {
        self.action(format!("restart n{i}"));
        if self.nodes[i].is_running() {
            return Ok(());
        }
        self.boot(i)?;
        if self.nodes[i].joined {
            self.join(i)?;
        }
        Ok(())
    }

    /// Node `i` leaves gracefully.
    pub fn leave(&mut self, i: usize) -> Result<(), SimError> {
        self.action(format!("leave n{i}"));
        self.nodes[i].left = true;
        match self.call(i, |node| node.leave()) {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(SimError::Node {
                node: i,
                reason: format!("leave failed: {e}"),
            }),
            None => Err(SimError::Node {
                node: i,
                reason: "leave on a crashed node".into(),
            }),
        }
    }

    // ---- faults ----------------------------------------------------------

    /// Blocks every message between the sets `a` and `b`, both ways.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        self.action(format!("partition {a:?} | {b:?}"));
        for &x in a {
            for &y in b {
                self.network.faults.blocked.insert((x, y));
                self.network.faults.blocked.insert((y, x));
            }
        }
    }

    /// Blocks messages from the set `from` to the set `to` only.
    pub fn block_one_way(&mut self, from: &[usize], to: &[usize]) {
        self.action(format!("block {from:?} -> {to:?}"));
        for &x in from {
            for &y in to {
                self.network.faults.blocked.insert((x, y));
            }
        }
    }

    /// Blocks the given pairs, both ways.
    pub fn block_pairs(&mut self, pairs: &[(usize, usize)]) {
        self.action(format!("block {} pairs", pairs.len()));
        for &(x, y) in pairs {
            self.network.faults.blocked.insert((x, y));
            self.network.faults.blocked.insert((y, x));
        }
    }

    /// Drops every message node `i` sends (it still receives).
    pub fn mute(&mut self, i: usize) {
        self.action(format!("mute n{i}"));
        self.network.faults.mute.insert(i);
    }

    /// Takes all of node `i`'s links down (`true`) or up (`false`).
    pub fn isolate(&mut self, i: usize, down: bool) {
        self.action(format!("isolate n{i} {down}"));
        if down {
            self.network.faults.isolated.insert(i);
        } else {
            self.network.faults.isolated.remove(&i);
        }
    }

    /// Removes every fault (partitions, blocks, mute, isolation).
    pub fn heal(&mut self) {
        self.action("heal".into());
        self.network.faults = Default::default();
    }

    /// Sets the loss probability of every message from now on.
    pub fn set_loss(&mut self, p: f64) {
        self.action(format!("loss {p}"));
        self.network.config.loss = p;
    }

    // ---- running ---------------------------------------------------------

    /// Runs every event due until virtual time `t` (ms), then sets the clock to `t`.
    pub fn run_until_ms(&mut self, t: u64) {
        while let Some(event) = self.queue.pop_due(t) {
            self.sample_until(event.at);
            self.now = self.now.max(event.at);
            self.dispatch(event.kind);
        }
        self.sample_until(t);
        self.now = self.now.max(t);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until_ms(self.now + d.as_millis() as u64);
    }

    /// Runs until `pred` holds (tested every [`CHECK_INTERVAL_MS`]) or
    /// `deadline` of virtual time has passed; returns how long it took.
    pub fn run_until_true(
        &mut self,
        deadline: Duration,
        mut pred: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        let end = start + deadline.as_millis() as u64;
        loop {
            if pred(self) {
                return Some(Duration::from_millis(self.now - start));
            }
            if self.now >= end {
                return None;
            }
            self.run_until_ms((self.now + CHECK_INTERVAL_MS).min(end));
        }
    }

    /// Runs until every live node sees every live node `alive` (and none
    /// `suspect` or `dead`), at most `deadline`; returns how long it took.
    pub fn run_until_converged(&mut self, deadline: Duration) -> Option<Duration> {
        self.run_until_true(deadline, Sim::converged)
    }

    /// Whether every live node's view lists every live node as `alive`.
    pub fn converged(&self) -> bool {
        let live = self.live_nodes();
        let need = live.len() as u32;
        if live.iter().any(|&o| self.views[o].counts[0] < need) {
            return false;
        }
        live.iter().all(|&o| {
            live.iter()
                .all(|&s| self.views[o].state(s) == Some(PeerState::Alive))
        })
    }

    fn sample_until(&mut self, t: u64) {
        let Some(every) = self.sample_every_ms else {
            return;
        };
        while self.next_sample <= t {
            let counts = (0..self.nodes.len())
                .map(|i| {
                    self.nodes[i].is_running().then(|| {
                        let c = self.views[i].counts;
                        [c[0], c[1], c[2]]
                    })
                })
                .collect();
            self.samples.push(Sample {
                at: self.next_sample,
                counts,
            });
            self.next_sample += every;
        }
    }

    fn dispatch(&mut self, kind: EventKind) {
        match kind {
            EventKind::Deliver {
                to,
                from,
                payload,
                depth,
            } => {
                if !self.nodes[to].is_running() {
                    self.network.stats.dropped += 1;
                    return;
                }
                self.trace.record(
                    self.now,
                    TraceEvent::Deliver {
                        from,
                        to,
                        len: payload.len(),
                    },
                    &payload,
                );
                self.nodes[to].depth = self.nodes[to].depth.max(depth);
                let source = node_address(from);
                if let Some(Err(_)) = self.call(to, |node| node.deliver_message(&source, &payload))
                {
                    self.nodes[to].call_errors += 1;
                }
            }
            EventKind::Timer {
                node,
                life,
                timer,
                generation,
            } => {
                let slot = &mut self.nodes[node];
                if slot.life != life {
                    return;
                }
                let Some(running) = slot.node.as_mut() else {
                    return;
                };
                if !running.services_mut().take_timer(timer, generation) {
                    return;
                }
                self.trace
                    .record(self.now, TraceEvent::Timer { node, timer }, &[]);
                if let Some(Err(_)) = self.call(node, |n| n.fire_timer(timer)) {
                    self.nodes[node].call_errors += 1;
                }
            }
        }
    }

    /// Calls into node `i` at the current virtual time and performs the
    /// effects it recorded. `None` when the node is down.
    pub fn call<T>(&mut self, i: usize, f: impl FnOnce(&mut Node<SimServices>) -> T) -> Option<T> {
        let now = self.now;
        let node = self.nodes[i].node.as_mut()?;
        node.services_mut().now_ms = now;
        let result = f(node);
        self.after_call(i);
        Some(result)
    }

    fn after_call(&mut self, i: usize) {
        let slot = &mut self.nodes[i];
        let Some(node) = slot.node.as_mut() else {
            return;
        };
        let services = node.services_mut();
        let outbox = std::mem::take(&mut services.outbox);
        let timers = std::mem::take(&mut services.timer_settings);
        let log = std::mem::take(&mut services.log);
        let updates: Vec<MembershipUpdate> = slot
            .subscription
            .as_ref()
            .map(|s| s.drain())
            .unwrap_or_default();
        let life = slot.life;
        let depth = slot.depth + 1;
        for (timer, at, generation) in timers {
            self.queue.push(
                at,
                EventKind::Timer {
                    node: i,
                    life,
                    timer,
                    generation,
                },
            );
        }
        for (to_address, payload) in outbox {
            self.nodes[i].sent_messages += 1;
            self.nodes[i].sent_bytes += payload.len() as u64;
            let Some(&to) = self.by_address.get(&to_address) else {
                self.network.stats.messages += 1;
                self.network.stats.bytes += payload.len() as u64;
                self.network.stats.dropped += 1;
                continue;
            };
            let delays = self.network.route(&mut self.rng, i, to, payload.len());
            let n = delays.len();
            let mut payload = Some(payload);
            for (k, delay) in delays.into_iter().enumerate() {
                let p = if k + 1 == n {
                    payload.take().unwrap_or_default()
                } else {
                    payload.clone().unwrap_or_default()
                };
                self.queue.push(
                    self.now + delay,
                    EventKind::Deliver {
                        to,
                        from: i,
                        payload: p,
                        depth,
                    },
                );
            }
        }
        for (kind, detail) in log {
            self.trace.record(
                self.now,
                TraceEvent::Log { node: i, kind },
                detail.as_bytes(),
            );
        }
        for update in updates {
            self.observe(i, update);
        }
    }

    fn observe(&mut self, observer: usize, update: MembershipUpdate) {
        let Some(&subject) = self.by_id.get(&update.peer) else {
            return;
        };
        let state = update.current.state;
        let incarnation = update.current.incarnation;
        self.trace.record(
            self.now,
            TraceEvent::Update {
                observer,
                subject: update.peer.clone(),
                state: state.as_str(),
                incarnation,
            },
            &[],
        );
        if state == PeerState::Left && !self.nodes[subject].left {
            self.violation(format!(
                "n{observer} shows n{subject} left, but n{subject} never called leave"
            ));
        }
        let high = self.views[observer].max_incarnation[subject];
        if incarnation < high {
            self.violation(format!(
                "n{observer} shows n{subject} at incarnation {incarnation}, below {high} seen before"
            ));
        }
        self.views[observer].max_incarnation[subject] = high.max(incarnation);
        let from = self.views[observer].set(subject, state, incarnation);
        self.observations.transitions.push(Transition {
            at: self.now,
            observer,
            subject,
            from,
            to: state,
            incarnation,
        });
        if observer != subject
            && self.is_live(subject)
            && !self.observations.excused.contains(&subject)
        {
            match state {
                PeerState::Dead => {
                    self.observations.false_deaths.insert((observer, subject));
                }
                PeerState::Suspect => {
                    self.observations
                        .false_suspicions
                        .insert((observer, subject));
                }
                _ => {}
            }
        }
    }

    /// Frontier digests of the live nodes' stores, by node.
    pub fn ledger_digests(&self) -> Vec<(usize, [u8; 32])> {
        self.live_nodes()
            .into_iter()
            .map(|i| {
                (
                    i,
                    crate::ledger::frontier_digest(self.nodes[i].ledger().entries()),
                )
            })
            .collect()
    }

    /// Whether every live node's store has the same frontier digest.
    pub fn ledgers_agree(&self) -> bool {
        let digests: BTreeSet<[u8; 32]> =
            self.ledger_digests().into_iter().map(|(_, d)| d).collect();
        digests.len() <= 1
    }

    /// Sent (messages, bytes) summed over all nodes.
    pub fn sent_totals(&self) -> (u64, u64) {
        self.nodes
            .iter()
            .fold((0, 0), |(m, b), n| (m + n.sent_messages, b + n.sent_bytes))
    }

    /// Queued events (messages in flight and timers).
    pub fn pending_events(&self) -> usize {
        self.queue.len()
    }
}
