//! The component the command line runs: a built-in name or a file path,
//! loaded by the one loader ([`nodeplane_artifacts::load`]).

use anyhow::{Context, Result};
use nodeplane_runtime::{Limits, LoadedComponent, Runtime};

/// A runtime with the default limits.
pub fn runtime() -> Result<Runtime> {
    Runtime::new(Limits::default()).context("creating the wasmtime engine")
}

/// Loads `spec`: the name of a built-in component (`stub`, `nodeplane`) or
/// the path of a component file.
pub fn load(runtime: &Runtime, spec: &str) -> Result<LoadedComponent> {
    Ok(nodeplane_artifacts::load(runtime, spec)?)
}
