//! Building a [`Sim`]: the world's size, seed, network, component and what
//! it records.

use nodeplane_runtime::{LoadedComponent, MemoryLedger, Runtime, Tunables};

use crate::component::{self, ComponentChoice};
use crate::network::NetConfig;
use crate::node::{node_address, node_id, node_metadata, NodeSpec};
use crate::world::Sim;
use crate::SimError;

/// Builds a [`Sim`].
#[derive(Clone)]
pub struct SimBuilder {
    nodes: usize,
    seed: u64,
    net: NetConfig,
    component: ComponentChoice,
    compiled: Option<(Runtime, LoadedComponent)>,
    tunables: Tunables,
    sample_every_ms: Option<u64>,
    join: bool,
    observe: bool,
    keep_logs: bool,
    ledgers: Vec<MemoryLedger>,
    hostiles: usize,
    checkpoint_min_tail: Option<u64>,
    count_traffic: bool,
}

impl Default for SimBuilder {
    fn default() -> Self {
        SimBuilder {
            nodes: 5,
            seed: 0,
            net: NetConfig::default(),
            component: ComponentChoice::default(),
            compiled: None,
            tunables: Tunables::default(),
            sample_every_ms: None,
            join: true,
            observe: true,
            keep_logs: false,
            ledgers: Vec::new(),
            hostiles: 0,
            checkpoint_min_tail: None,
            count_traffic: false,
        }
    }
}

impl std::fmt::Debug for SimBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBuilder")
            .field("nodes", &self.nodes)
            .field("seed", &self.seed)
            .field("net", &self.net)
            .field("component", &self.component)
            .field("tunables", &self.tunables)
            .field("join", &self.join)
            .field("observe", &self.observe)
            .field("hostiles", &self.hostiles)
            .field("checkpoint_min_tail", &self.checkpoint_min_tail)
            .finish_non_exhaustive()
    }
}

impl SimBuilder {
    /// Number of nodes started by [`build`](SimBuilder::build) (`n0`, `n1`,
    /// ...); 0 for a world whose nodes are added with [`Sim::add_node`].
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
    /// Each node's uplink bandwidth, bits per second (0: unlimited;
    /// default [`DEFAULT_BANDWIDTH_BPS`](crate::network::DEFAULT_BANDWIDTH_BPS)).
    pub fn bandwidth(mut self, bps: u64) -> Self {
        self.net.bandwidth_bps = bps;
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
    /// The component to run (a built-in name or a file).
    pub fn component(mut self, choice: ComponentChoice) -> Self {
        self.component = choice;
        self
    }
    /// Runs this already compiled component, in its runtime (the
    /// conformance suite's component under test).
    pub fn compiled(mut self, runtime: Runtime, component: LoadedComponent) -> Self {
        self.component = ComponentChoice::of(&component);
        self.compiled = Some((runtime, component));
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
    /// Whether the world subscribes to every node to observe its view and
    /// check the update invariants (on by default). Off, the nodes see no
    /// host subscriber but the test's own.
    pub fn observe(mut self, observe: bool) -> Self {
        self.observe = observe;
        self
    }
    /// Whether every node's event log is kept ([`SimNode::log`](crate::SimNode::log));
    /// otherwise log lines only enter the trace.
    pub fn keep_logs(mut self, keep: bool) -> Self {
        self.keep_logs = keep;
        self
    }
    /// Pre-filled stores, by node index (missing ones start empty).
    pub fn ledgers(mut self, ledgers: Vec<MemoryLedger>) -> Self {
        self.ledgers = ledgers;
        self
    }

    /// Adds `k` hostile nodes ([`crate::hostile`]) once the honest nodes
    /// are started and joined, each sending every kind of
    /// [`Attack`](crate::Attack) on its own seeded schedule.
    pub fn hostile(mut self, k: usize) -> Self {
        self.hostiles = k;
        self
    }

    /// The checkpoint trigger `K` of every node started by
    /// [`build`](SimBuilder::build), through the node plane's test knob
    /// (`nodeplane.checkpoint-min-tail` in its metadata, taken out by the
    /// component: docs/design.md §13.9); `None`: the default `K`.
    pub fn checkpoint_min_tail(mut self, k: Option<u64>) -> Self {
        self.checkpoint_min_tail = k;
        self
    }

    /// Whether every message sent is decoded and counted by type and
    /// purpose ([`crate::traffic`], [`Sim::traffic`]); off by default.
    pub fn count_traffic(mut self, on: bool) -> Self {
        self.count_traffic = on;
        self
    }

    /// Starts every node (and joins them, unless told not to).
    pub fn build(mut self) -> Result<Sim, SimError> {
        let (runtime, loaded) = match self.compiled.take() {
            Some(compiled) => compiled,
            None => component::load(&self.component)?,
        };
        let n = self.nodes;
        let mut sim = Sim::empty(
            self.seed,
            self.net,
            (runtime, loaded, self.component.clone()),
            self.tunables,
            self.sample_every_ms,
            (self.observe, self.keep_logs),
        );
        sim.checkpoint_min_tail = self.checkpoint_min_tail;
        if self.count_traffic {
            sim.traffic = Some(Default::default());
        }
        for i in 0..n {
            let ledger = if i < self.ledgers.len() {
                std::mem::take(&mut self.ledgers[i])
            } else {
                MemoryLedger::in_pool(&sim.pool)
            };
            let mut metadata = node_metadata(i);
            sim.add_knobs(&mut metadata);
            let spec = NodeSpec::new(node_id(i), node_address(i)).metadata(metadata);
            let i = sim.push_node(spec, None, ledger);
            sim.boot(i)?;
            crate::progress::tick(0, 1);
        }
        for view in &mut sim.views {
            view.shrink_to_fit();
        }
        if self.join {
            for i in 0..n {
                sim.join(i)?;
            }
        }
        for _ in 0..self.hostiles {
            sim.add_hostile(crate::hostile::Attack::ALL.to_vec());
        }
        Ok(sim)
    }
}
