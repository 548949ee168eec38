//! Choosing and loading the component simulated nodes run, with a
//! process-wide runtime and cache so that many runs compile each component
//! once (and components of one process can be hot-swapped into each other's
//! nodes). Loading itself is [`nodeplane_artifacts::load`].

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use nodeplane_runtime::{ComponentSource, Limits, LoadedComponent, Runtime};

use crate::SimError;

/// Name of the real node plane component among the built-in components.
pub const NODEPLANE: &str = "nodeplane";
/// Name of the stub component among the built-in components.
pub const STUB: &str = "stub";

/// The component to simulate: a built-in name or a file path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ComponentChoice {
    /// A component built into the binary (`stub`, `nodeplane`).
    Builtin(String),
    /// A component file.
    File(String),
}

impl ComponentChoice {
    /// Parses `stub`, `nodeplane` or a file path.
    pub fn parse(spec: &str) -> ComponentChoice {
        if nodeplane_artifacts::builtin(spec).is_some() || spec == NODEPLANE || spec == STUB {
            ComponentChoice::Builtin(spec.to_string())
        } else {
            ComponentChoice::File(spec.to_string())
        }
    }

    /// The choice a compiled component was loaded from.
    pub fn of(component: &LoadedComponent) -> ComponentChoice {
        match &component.source {
            ComponentSource::Builtin(name) => ComponentChoice::Builtin(name.clone()),
            ComponentSource::File(path) => ComponentChoice::File(path.clone()),
        }
    }

    /// True for the node plane component (protocol-quality checks apply).
    pub fn is_nodeplane(&self) -> bool {
        matches!(self, ComponentChoice::Builtin(n) if n == NODEPLANE)
    }

    /// A short name for reports.
    pub fn name(&self) -> &str {
        match self {
            ComponentChoice::Builtin(n) | ComponentChoice::File(n) => n,
        }
    }
}

impl Default for ComponentChoice {
    /// The node plane when it is built in, otherwise the stub.
    fn default() -> Self {
        if nodeplane_available() {
            ComponentChoice::Builtin(NODEPLANE.into())
        } else {
            ComponentChoice::Builtin(STUB.into())
        }
    }
}

/// Whether the node plane component is built in.
pub fn nodeplane_available() -> bool {
    nodeplane_artifacts::builtin(NODEPLANE).is_some()
}

/// The runtime every simulation of this process shares.
pub fn shared_runtime() -> Result<Runtime, SimError> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.clone());
    }
    let runtime =
        Runtime::new(Limits::default()).map_err(|e| SimError::Component(format!("{e:#}")))?;
    Ok(RUNTIME.get_or_init(|| runtime).clone())
}

/// Loads `choice` into `runtime` (built-in name or file path).
pub fn load_in(runtime: &Runtime, choice: &ComponentChoice) -> Result<LoadedComponent, SimError> {
    nodeplane_artifacts::load(runtime, choice.name())
        .map_err(|e| SimError::Component(e.to_string()))
}

/// The shared runtime and the compiled component, compiled once per process.
pub fn load(choice: &ComponentChoice) -> Result<(Runtime, LoadedComponent), SimError> {
    static CACHE: OnceLock<Mutex<HashMap<ComponentChoice, LoadedComponent>>> = OnceLock::new();
    let runtime = shared_runtime()?;
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(hit) = cache.get(choice) {
        return Ok((runtime, hit.clone()));
    }
    let loaded = load_in(&runtime, choice)?;
    cache.insert(choice.clone(), loaded.clone());
    Ok((runtime, loaded))
}
