//! The simulated world: nodes running components, one event queue in
//! virtual time, the network, faults, and the observed views. It is the one
//! deterministic driver of nodeplane: the scenarios, the conformance suite
//! and the Mesh VPN tests all run their nodes here.
//!
//! A world built with N nodes (the scenarios):
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
//!
//! A few nodes of one's own (a test): add them, join them, drive them
//! through their [`NodeHandle`]s, run.
//!
//! ```no_run
//! use std::time::Duration;
//! use nodeplane_interface::ControlPlane;
//! use nodeplane_sim::{NodeSpec, Sim};
//! let mut sim = Sim::builder().nodes(0).build()?;
//! let a = sim.add_node(NodeSpec::new("a", "127.0.0.1:7001"))?;
//! let b = sim.add_node(NodeSpec::new("b", "127.0.0.1:7002"))?;
//! sim.join_with(a, &[])?;
//! sim.join_with(b, &["127.0.0.1:7001".into()])?;
//! let handle = sim.node(b).handle().expect("running").clone();
//! let met = sim.run_until_true(Duration::from_secs(10), |_| {
//!     handle.get_members().is_ok_and(|v| v.members.len() == 2)
//! });
//! assert!(met.is_some());
//! # Ok::<(), nodeplane_sim::SimError>(())
//! ```

use std::collections::HashMap;
use std::time::Duration;

use nodeplane_core::config::CHECKPOINT_MIN_TAIL_KEY;
use nodeplane_interface::{MembershipUpdate, PeerState};
use nodeplane_runtime::{
    EntryPool, EventRecord, LoadedComponent, MemoryLedger, Node, NodeConfig, NodeHandle,
    RecordingServices, Runtime, Tunables, VirtualClock,
};

use crate::builder::SimBuilder;
use crate::component::{self, ComponentChoice};
use crate::hostile::Hostile;
use crate::network::{NetConfig, NetStats, Network};
use crate::node::{node_address, Calling, NodeSpec, SimNode};
use crate::queue::{EventKind, EventQueue};
use crate::rng::SimRng;
use crate::trace::{Trace, TraceEvent};
use crate::views::{Observations, Sample, View};
use crate::SimError;

/// How often the run loops test a convergence or other predicate.
pub const CHECK_INTERVAL_MS: u64 = 50;

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
    pub(crate) now: u64,
    clock: VirtualClock,
    pub(crate) rng: SimRng,
    pub(crate) queue: EventQueue,
    /// The network (configuration, faults, counters).
    pub network: Network,
    runtime: Runtime,
    loaded: LoadedComponent,
    component: ComponentChoice,
    tunables: Tunables,
    pub(crate) nodes: Vec<SimNode>,
    by_address: HashMap<String, usize>,
    pub(crate) by_id: HashMap<String, usize>,
    pub(crate) views: Vec<View>,
    /// Transitions and false verdicts observed.
    pub observations: Observations,
    pub(crate) trace: Trace,
    violations: Vec<String>,
    pub(crate) sample_every_ms: Option<u64>,
    pub(crate) next_sample: u64,
    pub(crate) samples: Vec<Sample>,
    observe: bool,
    keep_logs: bool,
    /// Hostile nodes ([`Sim::add_hostile`]).
    pub(crate) hostiles: Vec<Hostile>,
    pub(crate) hostile_by_address: HashMap<String, usize>,
    /// Generation of each hostile node's schedule.
    pub(crate) hostile_generation: Vec<u64>,
    /// Events run, for [`crate::progress`] (outside the run: never traced).
    progress_events: u64,
    /// The entries of the nodes' stores, each held once.
    pub(crate) pool: EntryPool,
    /// Checkpoints the nodes logged as agreed
    /// ([`crate::invariants::Checkpoints`]).
    pub(crate) checkpoints: crate::invariants::Checkpoints,
    /// The checkpoint test knob every node of the run gets, the ones added
    /// later ([`Sim::add_node`]) included ([`SimBuilder::checkpoint_min_tail`]).
    pub(crate) checkpoint_min_tail: Option<u64>,
    /// The breakdown of the messages sent, when counted
    /// ([`SimBuilder::count_traffic`]).
    pub(crate) traffic: Option<crate::traffic::Traffic>,
}

impl Sim {
    /// A builder with defaults (5 nodes, seed 0, no loss).
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    /// A world without nodes (see [`SimBuilder::build`]).
    pub(crate) fn empty(
        seed: u64,
        net: NetConfig,
        (runtime, loaded, component): (Runtime, LoadedComponent, ComponentChoice),
        tunables: Tunables,
        sample_every_ms: Option<u64>,
        (observe, keep_logs): (bool, bool),
    ) -> Sim {
        Sim {
            seed,
            now: 0,
            clock: VirtualClock::new(),
            rng: SimRng::new(seed),
            queue: EventQueue::new(),
            network: Network::new(net),
            runtime,
            loaded,
            component,
            tunables,
            nodes: Vec::new(),
            by_address: HashMap::new(),
            by_id: HashMap::new(),
            views: Vec::new(),
            observations: Observations::default(),
            trace: Trace::new(),
            violations: Vec::new(),
            sample_every_ms,
            next_sample: 0,
            samples: Vec::new(),
            observe,
            keep_logs,
            hostiles: Vec::new(),
            hostile_by_address: HashMap::new(),
            hostile_generation: Vec::new(),
            progress_events: 0,
            pool: EntryPool::new(),
            checkpoints: Default::default(),
            checkpoint_min_tail: None,
            traffic: None,
        }
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

    /// The runtime every node runs in (load a component to hot-swap in here).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
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
        self.views[observer].incarnation(subject)
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

    pub(crate) fn action(&mut self, what: String) {
        tracing::debug!(at_ms = self.now, %what, "sim action");
        self.trace.record(self.now, TraceEvent::Action(what), &[]);
    }

    // ---- node lifecycle -------------------------------------------------

    /// Adds a node that is down, with `ledger` as its store; returns its index.
    pub(crate) fn push_node(
        &mut self,
        spec: NodeSpec,
        component: Option<(Runtime, LoadedComponent)>,
        ledger: MemoryLedger,
    ) -> usize {
        let i = self.nodes.len();
        self.by_address.insert(spec.address.clone(), i);
        self.by_id.insert(spec.id.clone(), i);
        self.nodes.push(SimNode::parked(spec, component, ledger));
        for view in &mut self.views {
            view.resize(i + 1);
        }
        self.views.push(View::new(i + 1));
        i
    }

    /// Removes the last node (one that failed to start).
    fn pop_node(&mut self) {
        let Some(slot) = self.nodes.pop() else {
            return;
        };
        let i = self.nodes.len();
        if self.by_address.get(&slot.address) == Some(&i) {
            self.by_address.remove(&slot.address);
        }
        if self.by_id.get(&slot.id) == Some(&i) {
            self.by_id.remove(&slot.id);
        }
        self.views.pop();
        for view in &mut self.views {
            view.resize(i);
        }
    }

    /// Adds a node to the world and starts it (it does not join: see
    /// [`Sim::join_with`]); returns its index. A node the component refuses
    /// to start is not added ([`SimError::Start`] carries the reason).
    pub fn add_node(&mut self, mut spec: NodeSpec) -> Result<usize, SimError> {
        self.add_knobs(&mut spec.metadata);
        let component = match &spec.component {
            Some(choice) => Some((
                self.runtime.clone(),
                component::load_in(&self.runtime, choice)?,
            )),
            None => None,
        };
        self.action(format!("add {} at {}", spec.id, spec.address));
        let ledger = MemoryLedger::in_pool(&self.pool);
        let i = self.push_node(spec, component, ledger);
        if let Err(e) = self.boot(i) {
            self.pop_node();
            return Err(e);
        }
        Ok(i)
    }

    /// Appends the run's checkpoint test knob to a node's metadata, unless
    /// the metadata already sets it.
    pub(crate) fn add_knobs(&self, metadata: &mut Vec<(String, String)>) {
        if let Some(k) = self.checkpoint_min_tail {
            if !metadata
                .iter()
                .any(|(key, _)| key == CHECKPOINT_MIN_TAIL_KEY)
            {
                metadata.push((CHECKPOINT_MIN_TAIL_KEY.into(), k.to_string()));
            }
        }
    }

    pub(crate) fn boot(&mut self, i: usize) -> Result<(), SimError> {
        let ledger = match self.nodes[i].parked.take() {
            Some(ledger) => ledger,
            None => MemoryLedger::in_pool(&self.pool),
        };
        // Each node's signing key: derived from the run's seed and its id,
        // so a restarted node keeps it and a seed replays exactly.
        let services = RecordingServices::with(self.clock.clone(), self.rng.next_u64(), ledger)
            .keyed(&self.seed.to_be_bytes());
        let slot = &self.nodes[i];
        let config = NodeConfig {
            node_id: slot.id.clone(),
            address: slot.address.clone(),
            metadata: slot.metadata.clone(),
            tunables: self.tunables,
        };
        let (runtime, loaded) = match &slot.component {
            Some((runtime, loaded)) => (runtime, loaded),
            None => (&self.runtime, &self.loaded),
        };
        let node = Node::start(runtime, loaded, config, services)
            .map_err(|error| SimError::Start { node: i, error })?;
        let slot = &mut self.nodes[i];
        let node = NodeHandle::new(node);
        slot.node = Some(node.clone());
        slot.crashes_seen = 0;
        let mut node = node.lock();
        if self.observe {
            let subscription = node
                .subscribe()
                .map_err(|error| SimError::Start { node: i, error })?;
            slot.subscription = Some(subscription);
        }
        // Start from the view the component rebuilt from its store.
        let mirror = node.mirror_view();
        drop(node);
        self.views[i].clear();
        for m in mirror.members {
            if let Some(&s) = self.by_id.get(&m.id) {
                self.views[i].set(s, m.state, m.incarnation);
                let high = self.views[i].max_incarnation(s).max(m.incarnation);
                self.views[i].set_max_incarnation(s, high);
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

    /// Calls `join` on node `i` with its seeds (node 0's address; none for
    /// node 0 itself, which starts the cluster).
    pub fn join(&mut self, i: usize) -> Result<(), SimError> {
        let seeds = self.seeds_of(i);
        self.join_with(i, &seeds)
    }

    /// Calls `join` on node `i` with `seeds`; a restart joins with them again.
    pub fn join_with(&mut self, i: usize, seeds: &[String]) -> Result<(), SimError> {
        self.action(format!("join n{i}"));
        let joined = self.call(i, |node| node.join(seeds).map(|_| ()));
        node_outcome(i, "join", joined)?;
        self.nodes[i].joined = true;
        self.nodes[i].seeds = seeds.to_vec();
        Ok(())
    }

    /// Stops node `i` without leaving; its store is kept.
    pub fn crash(&mut self, i: usize) {
        self.action(format!("crash n{i}"));
        self.note_crashes(i, None);
        let slot = &mut self.nodes[i];
        if let Some(node) = slot.node.take() {
            slot.parked = Some(std::mem::take(&mut node.lock().services_mut().ledger));
            slot.subscription = None;
            slot.life += 1;
        }
    }

    /// Restarts node `i` on its persisted store and, if the world joined it
    /// ([`Sim::join`], [`Sim::join_with`]), rejoins it with the same seeds
    /// (a node joined through its handle is rejoined by whoever joined it).
    pub fn restart(&mut self, i: usize) -> Result<(), SimError> {
        self.action(format!("restart n{i}"));
        if self.nodes[i].is_running() {
            return Ok(());
        }
        self.boot(i)?;
        if self.nodes[i].joined {
            let seeds = self.nodes[i].seeds.clone();
            self.join_with(i, &seeds)?;
        }
        Ok(())
    }

    /// Gives crashed node `i` a new control address (a restart elsewhere);
    /// messages to the old address are lost from now on.
    pub fn move_to(&mut self, i: usize, address: &str) {
        self.action(format!("move n{i} to {address}"));
        let slot = &mut self.nodes[i];
        if self.by_address.get(&slot.address) == Some(&i) {
            self.by_address.remove(&slot.address);
        }
        slot.address = address.to_string();
        self.by_address.insert(address.to_string(), i);
    }

    /// Node `i` leaves gracefully.
    pub fn leave(&mut self, i: usize) -> Result<(), SimError> {
        self.action(format!("leave n{i}"));
        self.nodes[i].left = true;
        let left = self.call(i, |node| node.leave());
        node_outcome(i, "leave", left)
    }

    // ---- running ---------------------------------------------------------

    fn set_now(&mut self, t: u64) {
        self.now = self.now.max(t);
        self.clock.set_ms(self.now);
    }

    /// Runs every event due until virtual time `t` (ms), then sets the clock to `t`.
    pub fn run_until_ms(&mut self, t: u64) {
        self.flush();
        while let Some(event) = self.queue.pop_due(t) {
            self.sample_until(event.at);
            self.set_now(event.at);
            self.dispatch(event.kind);
            self.progress_events = self.progress_events.wrapping_add(1);
            if self
                .progress_events
                .is_multiple_of(crate::progress::CHECK_EVERY_EVENTS)
            {
                crate::progress::tick(self.now, crate::progress::CHECK_EVERY_EVENTS);
            }
        }
        self.sample_until(t);
        self.set_now(t);
    }

    /// Runs the events of the next instant anything is due; false when
    /// nothing is queued.
    pub fn step(&mut self) -> bool {
        self.flush();
        match self.queue.peek_time() {
            Some(t) => {
                self.run_until_ms(t);
                true
            }
            None => false,
        }
    }

    /// Performs what calls made through node handles since the last step
    /// recorded (messages, timers, log lines, updates), at the current time.
    pub fn flush(&mut self) {
        for i in 0..self.nodes.len() {
            self.after_call(i);
        }
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

    fn dispatch(&mut self, kind: EventKind) {
        match kind {
            EventKind::Deliver {
                to,
                from,
                payload,
                depth,
                stream,
            } => {
                if !self.nodes[to].is_running() {
                    self.network.stats.dropped += 1;
                    if stream.is_some() {
                        self.network.stats.streams_failed += 1;
                    }
                    return;
                }
                if let Some(life) = stream {
                    let sender_gone =
                        self.nodes[from].life != life || !self.nodes[from].is_running();
                    if sender_gone || self.network.faults.drops(from, to) {
                        self.network.stats.dropped += 1;
                        self.network.stats.streams_failed += 1;
                        return;
                    }
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
                let source = self.nodes[from].address.clone();
                let what = Calling::Deliver {
                    from,
                    len: payload.len(),
                };
                self.nodes[to].calling = Some(what.clone());
                let crashes = self.nodes[to].crashes;
                if let Some(Err(e)) = self.call(to, |node| node.deliver_message(&source, &payload))
                {
                    self.call_error(to, crashes, &what.to_string(), &e);
                }
            }
            EventKind::HostileTick {
                hostile,
                generation,
            } => self.hostile_tick(hostile, generation),
            EventKind::HostileDeliver {
                to,
                hostile,
                attack,
                payload,
            } => self.hostile_deliver(to, hostile, attack, payload),
            EventKind::Timer {
                node,
                life,
                timer,
                generation,
            } => {
                let slot = &self.nodes[node];
                if slot.life != life {
                    return;
                }
                let Some(running) = slot.node.as_ref() else {
                    return;
                };
                if !running.lock().services_mut().take_timer(timer, generation) {
                    return;
                }
                self.trace
                    .record(self.now, TraceEvent::Timer { node, timer }, &[]);
                self.nodes[node].calling = Some(Calling::Timer(timer));
                let crashes = self.nodes[node].crashes;
                if let Some(Err(e)) = self.call(node, |n| n.fire_timer(timer)) {
                    self.call_error(node, crashes, &Calling::Timer(timer).to_string(), &e);
                }
            }
        }
    }

    /// Calls into node `i` at the current virtual time and performs the
    /// effects it recorded. `None` when the node is down.
    pub fn call<T>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Node<RecordingServices>) -> T,
    ) -> Option<T> {
        let Some(node) = self.nodes[i].node.as_ref() else {
            self.nodes[i].calling = None;
            return None;
        };
        let result = f(&mut node.lock());
        self.after_call(i);
        self.nodes[i].calling = None;
        Some(result)
    }

    /// Records the error `e` of `call` on node `i` as a violation, unless
    /// the call crashed the component (`crashes_before` is the node's
    /// crash count before the call; the crash is its own violation).
    pub(crate) fn call_error(
        &mut self,
        i: usize,
        crashes_before: u64,
        call: &str,
        e: &nodeplane_interface::ControlError,
    ) {
        if self.nodes[i].crashes > crashes_before {
            return;
        }
        self.nodes[i].call_errors += 1;
        self.violation(format!("n{i}: {call} returned an error: {e}"));
    }

    /// Records a violation for every crash of node `i`'s component the
    /// world has not seen yet (`reason`: what its event log said).
    pub(crate) fn note_crashes(&mut self, i: usize, reason: Option<String>) {
        let slot = &mut self.nodes[i];
        let Some(node) = slot.node.as_ref() else {
            return;
        };
        let now = node.lock().crashes();
        if now <= slot.crashes_seen {
            return;
        }
        let new = now - slot.crashes_seen;
        slot.crashes_seen = now;
        slot.crashes += new;
        let call = slot.calling.as_ref().map_or_else(
            || "a call made through its handle".into(),
            Calling::to_string,
        );
        let reason = reason.unwrap_or_else(|| "no reason logged".into());
        self.violation(format!(
            "n{i}: component crashed ({new}x) in {call}: {reason}"
        ));
    }

    fn after_call(&mut self, i: usize) {
        let slot = &mut self.nodes[i];
        let Some(node) = slot.node.as_ref() else {
            return;
        };
        let recorded = node.lock().services_mut().drain();
        let reasons = recorded
            .log
            .iter()
            .filter(|r| r.kind == CRASH_LOG_KIND)
            .map(|r| crash_reason(&r.detail))
            .collect::<Vec<_>>();
        self.note_crashes(i, (!reasons.is_empty()).then(|| reasons.join("; ")));
        let slot = &mut self.nodes[i];
        let updates: Vec<MembershipUpdate> = slot
            .subscription
            .as_ref()
            .map(|s| s.drain())
            .unwrap_or_default();
        let life = slot.life;
        let depth = slot.depth + 1;
        for t in recorded.timers {
            self.queue.push(
                t.due_ms,
                EventKind::Timer {
                    node: i,
                    life,
                    timer: t.timer,
                    generation: t.generation,
                },
            );
        }
        for (to_address, payload) in recorded.outbox {
            let now = self.now;
            self.nodes[i].count_sent(now, payload.len() as u64);
            if let Some(t) = self.traffic.as_mut() {
                let to = self.by_address.get(&to_address).copied();
                t.count(i, to.unwrap_or(usize::MAX), &payload);
            }
            let Some(&to) = self.by_address.get(&to_address) else {
                if let Some(&h) = self.hostile_by_address.get(&to_address) {
                    self.hostile_receives(h, &payload);
                    continue;
                }
                self.network.stats.messages += 1;
                self.network.stats.bytes += payload.len() as u64;
                self.network.stats.dropped += 1;
                continue;
            };
            let route = self
                .network
                .route(&mut self.rng, self.now, i, to, payload.len());
            let stream = route.stream.then_some(self.nodes[i].life);
            let delays = route.delays;
            if !delays.is_empty() {
                self.hostiles_sniff(&payload);
            }
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
                        stream,
                    },
                );
            }
        }
        for record in recorded.log {
            self.log_line(i, record);
        }
        for update in updates {
            self.observe(i, update);
        }
    }

    fn log_line(&mut self, i: usize, record: EventRecord) {
        if record.kind.starts_with("checkpoint-") {
            self.note_checkpoint(i, &record.kind, &record.detail);
        }
        if self.keep_logs {
            self.trace.record(
                self.now,
                TraceEvent::Log {
                    node: i,
                    kind: record.kind.clone(),
                },
                record.detail.as_bytes(),
            );
            self.nodes[i].log.push(record);
        } else {
            self.trace.record(
                self.now,
                TraceEvent::Log {
                    node: i,
                    kind: record.kind,
                },
                record.detail.as_bytes(),
            );
        }
    }

    /// The breakdown of the messages sent so far, if counted
    /// ([`SimBuilder::count_traffic`]).
    pub fn traffic(&self) -> Option<&crate::traffic::Traffic> {
        self.traffic.as_ref()
    }

    /// Sent (messages, bytes) summed over all nodes.
    pub fn sent_totals(&self) -> (u64, u64) {
        self.nodes
            .iter()
            .fold((0, 0), |(m, b), n| (m + n.sent_messages, b + n.sent_bytes))
    }

    /// The busiest node's most payload bytes sent in one virtual second
    /// (fixed one-second buckets), and that node, over the whole run.
    pub fn peak_bytes_per_s(&self) -> (u64, usize) {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.peak_bytes_per_s, i))
            .max_by_key(|&(b, i)| (b, std::cmp::Reverse(i)))
            .unwrap_or((0, 0))
    }

    /// Queued events (messages in flight and timers).
    pub fn pending_events(&self) -> usize {
        self.queue.len()
    }
}

/// The event-log kind the runtime writes when a component crashes.
pub const CRASH_LOG_KIND: &str = "component-crashed";

/// The reason in a [`CRASH_LOG_KIND`] record's detail (`{"reason": ...}`),
/// or the whole detail.
fn crash_reason(detail: &str) -> String {
    serde_json::from_str::<serde_json::Value>(detail)
        .ok()
        .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(String::from))
        .unwrap_or_else(|| detail.to_string())
}

/// The outcome of the interface operation `op` (`"join"`, `"leave"`) on
/// node `i`, as [`World::call`] returned it: a failure or a crashed node is
/// a [`SimError::Node`] naming both.
fn node_outcome<T, E: std::fmt::Display>(
    i: usize,
    op: &str,
    outcome: Option<Result<T, E>>,
) -> Result<T, SimError> {
    match outcome {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(SimError::Node {
            node: i,
            reason: format!("{op} failed: {e}"),
        }),
        None => Err(SimError::Node {
            node: i,
            reason: format!("{op} on a crashed node"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knob(sim: &Sim, i: usize) -> Vec<&str> {
        sim.nodes[i]
            .metadata
            .iter()
            .filter(|(k, _)| k == CHECKPOINT_MIN_TAIL_KEY)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn nodes_added_later_get_the_runs_checkpoint_knob_unless_they_set_it() {
        let mut sim = Sim::builder()
            .nodes(2)
            .checkpoint_min_tail(Some(8))
            .build()
            .expect("sim builds");
        assert_eq!(knob(&sim, 0), ["8"]);
        let later = sim
            .add_node(NodeSpec::new("later", "10.0.9.1:7946"))
            .expect("added");
        assert_eq!(knob(&sim, later), ["8"]);
        let own = sim
            .add_node(
                NodeSpec::new("own", "10.0.9.2:7946")
                    .metadata(vec![(CHECKPOINT_MIN_TAIL_KEY.into(), "5".into())]),
            )
            .expect("added");
        assert_eq!(knob(&sim, own), ["5"]);
        let mut plain = Sim::builder().nodes(1).build().expect("sim builds");
        let i = plain
            .add_node(NodeSpec::new("later", "10.0.9.1:7946"))
            .expect("added");
        assert!(knob(&plain, i).is_empty());
    }
}
