//! Deterministic simulation of many nodeplane control-plane components.
//!
//! N instances of one component file run in one process, single-threaded,
//! in virtual time: one event queue ordered by (time, insertion sequence),
//! a simulated network (latency, loss, duplication, reordering,
//! partitions, one-way blocks), crashes that keep the store, restarts on
//! the same store, and one seeded random generator. The same seed gives a
//! byte-identical event trace ([`Sim::trace_hash`]) and report.
//!
//! Modules, one job each: [`rng`], [`queue`], [`network`], [`services`],
//! [`world`] (the [`Sim`] and its builder), [`views`], [`trace`],
//! [`invariants`], [`ledger`], [`scenarios`], [`report`], [`svg`],
//! [`bench`] and [`cli`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod chaos;
pub mod cli;
pub mod component;
pub mod invariants;
pub mod ledger;
pub mod network;
pub mod queue;
pub mod report;
pub mod rng;
pub mod scenarios;
pub mod services;
pub mod svg;
pub mod trace;
pub mod views;
pub mod world;

pub use component::ComponentChoice;
pub use network::{NetConfig, NetStats};
pub use scenarios::{Scenario, ScenarioParams, ScenarioRun};
pub use world::{node_address, node_id, Expect, Sim, SimBuilder};

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The component could not be loaded.
    #[error("loading the component: {0}")]
    Component(String),
    /// A node could not be started or refused an operation.
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
