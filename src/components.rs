//! Choosing a component by name (built in) or by file.

use anyhow::{Context, Result};
use nodeplane_runtime::{ComponentSource, Limits, LoadedComponent, Runtime};

/// A runtime with the default limits.
pub fn runtime() -> Result<Runtime> {
    Runtime::new(Limits::default()).context("creating the wasmtime engine")
}

/// Loads `spec`: the name of a built-in component (`stub`, `nodeplane`) or
/// the path of a component file.
pub fn load(runtime: &Runtime, spec: &str) -> Result<LoadedComponent> {
    if let Some(bytes) = nodeplane_artifacts::builtin(spec) {
        return runtime
            .load(bytes, ComponentSource::Builtin(spec.to_string()))
            .with_context(|| format!("loading built-in component {spec}"));
    }
    let path = std::path::Path::new(spec);
    if !path.exists() {
        let names: Vec<&str> = nodeplane_artifacts::BUILTIN
            .iter()
            .map(|(n, _)| *n)
            .collect();
        anyhow::bail!(
            "component {spec:?} is neither a file nor a built-in component (built in: {})",
            names.join(", ")
        );
    }
    runtime
        .load_file(path)
        .with_context(|| format!("loading component file {spec}"))
}
