//! The nodeplane host runtime.
//!
//! Loads control-plane components with wasmtime, runs one instance per node
//! and drives it: every call is serialised, the guest gets time, randomness,
//! timers, network and ledger storage only through host imports, and those
//! imports *record effects* that the caller performs after the call returns.
//! The same component therefore runs unchanged in the real agent (tokio
//! sockets, wall clock, durable store) and in the deterministic simulator.
//!
//! Layers, bottom up:
//! - [`Runtime`]: one wasmtime engine; compiles and caches components and
//!   validates what they import ([`LoadedComponent`]).
//! - [`Instance`]: one component instance in its own store, with fuel and
//!   memory limits; each call returns its result and the [`Effect`]s.
//! - [`Node`]: an instance plus host [`Services`], the host-owned
//!   subscribers, crash recovery and hot swap; [`NodeHandle`] implements the
//!   Mesh VPN's [`ControlPlane`](nodeplane_interface::ControlPlane) trait.
//! - Containment ([`REBUILD_BACKOFF_BASE_MS`] and the other constants): a
//!   crashing component is rebuilt from the ledger without a new
//!   incarnation, with back-off, and messages that crash it twice are
//!   quarantined; a failed ledger append stops the node (fail-stop).

mod containment;
mod convert;
mod engine;
mod host_state;
mod instance;
mod mirror;
mod node;
mod services;
pub mod signing;
pub mod wasi;

/// Bindings generated from `wit/control.wit`.
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "control-plane",
    });
}

pub use containment::{
    rebuild_delay_ms, CRASH_STREAK_RESET_MS, MAX_CRASH_SUSPECTS, MAX_QUARANTINED,
    QUARANTINE_AFTER_CRASHES, REBUILD_BACKOFF_BASE_MS, REBUILD_BACKOFF_MAX_MS,
};
pub use engine::{
    footprint, ComponentSource, Footprint, Limits, LoadedComponent, Runtime, RuntimeError,
    CACHE_DIR_ENV, MAX_IMPORTS,
};
pub use host_state::StartMode;
pub use instance::{CallError, Instance, MAX_INSTANCES, MAX_MEMORIES, MAX_TABLES};
pub use mirror::{MemberPool, Mirror};
pub use node::{Node, NodeHandle, SwapReport, REBUILD_TIMER};
/// The shared vocabulary the runtime speaks (`nodeplane-types`): what a
/// call records, the node configuration and the message-size limit.
pub use nodeplane_types::{Effect, NodeConfig, Tunables, MAX_MESSAGE_BYTES};
pub use services::{
    Entries, EntriesIter, EntryPool, EntryReader, EventRecord, LedgerStore, MemoryLedger, Recorded,
    RecordingServices, Services, StoreError, TimerSetting, VirtualClock, MAX_GET_ENTRIES,
};
