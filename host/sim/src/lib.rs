//! Deterministic simulation of many nodeplane control-plane components.
//!
//! N instances of one component file run in one process, single-threaded,
//! in virtual time: one event queue ordered by (time, insertion sequence),
//! a simulated network (latency, loss, duplication, reordering,
//! partitions, one-way blocks), crashes that keep the store, restarts on
//! the same store, and one seeded random generator. The same seed gives a
//! byte-identical event trace ([`Sim::trace_hash`]) and report.
//!
//! The world is the one deterministic driver of nodeplane: the scenarios,
//! the conformance suite (`nodeplane-conformance`) and the Mesh VPN tests
//! run their nodes here, on [`RecordingServices`](nodeplane_runtime::RecordingServices)
//! (effects recorded during a call, performed by the world after it). The
//! core's own `testkit::Sim` in `guests/core` is not a second driver of
//! components: it drives the sans-IO protocol natively, below the Wasm
//! layer, to test the core on its own.
//!
//! Modules, one job each: [`rng`], [`queue`], [`network`], [`node`] (one
//! simulated node), [`builder`], [`world`] (the [`Sim`]: lifecycle and the
//! event loop), [`faults`], [`hostile`], [`observe`], [`views`], [`trace`], [`invariants`],
//! [`ledger`], [`memory`], [`component`], [`scenarios`], [`report`], [`svg`], [`traffic`], [`bench`](mod@bench), [`perfdoc`],
//! [`progress`] and [`cli`].

pub mod bench;
pub mod builder;
pub mod chaos;
pub mod churn;
pub mod cli;
pub mod component;
pub mod faults;
pub mod hostile;
pub mod invariants;
pub mod ledger;
pub mod memory;
pub mod network;
pub mod node;
pub mod observe;
pub mod perfdoc;
pub mod progress;
pub mod queue;
pub mod report;
pub mod rng;
pub mod scenarios;
pub mod svg;
pub mod trace;
pub mod traffic;
pub mod views;
pub mod world;

pub use builder::SimBuilder;
pub use component::ComponentChoice;
pub use hostile::{Attack, Hostile};
pub use network::{NetConfig, NetStats};
pub use node::{node_address, node_id, NodeSpec, SimNode};
pub use scenarios::{Scenario, ScenarioParams, ScenarioRun};
pub use world::{Expect, Sim};

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The component could not be loaded.
    #[error("loading the component: {0}")]
    Component(String),
    /// A node's component refused to start.
    #[error("node n{node}: {error}")]
    Start {
        /// The node.
        node: usize,
        /// What the component or the runtime said.
        error: nodeplane_interface::ControlError,
    },
    /// A node refused an operation.
    #[error("node n{node}: {reason}")]
    Node {
        /// The node.
        node: usize,
        /// What happened.
        reason: String,
    },
    /// An invariant was violated.
    #[error("invariant violated (seed {seed}):\n  - {}\nlast events:\n{excerpt}", violations.join("\n  - "))]
    Invariant {
        /// The seed that replays the run.
        seed: u64,
        /// What was violated.
        violations: Vec<String>,
        /// The last events of the trace.
        excerpt: String,
    },
    /// Writing an output file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Invalid arguments.
    #[error("{0}")]
    Usage(String),
}
