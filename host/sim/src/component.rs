//! Choosing and loading the component every simulated node runs, with a
//! process-wide cache so that many runs compile it once.

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

type Cache = Mutex<HashMap<ComponentChoice, (Runtime, LoadedComponent)>>;

/// A runtime and the compiled component, compiled once per process.
pub fn load(choice: &ComponentChoice) -> Result<(Runtime, LoadedComponent), SimError> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(hit) = cache.get(choice) {
        return Ok(hit.clone());
    }
    let runtime =
        Runtime::new(Limits::default()).map_err(|e| SimError::Component(format!("{e:#}")))?;
    let loaded = match choice {
        ComponentChoice::Builtin(name) => {
            let bytes = nodeplane_artifacts::builtin(name).ok_or_else(|| {
                SimError::Component(format!("no built-in component named {name:?}"))
            })?;
            runtime.load(bytes, ComponentSource::Builtin(name.clone()))
        }
        ComponentChoice::File(path) => runtime.load_file(std::path::Path::new(path)),
    }
    .map_err(|e| SimError::Component(e.to_string()))?;
    cache.insert(choice.clone(), (runtime.clone(), loaded.clone()));
    Ok((runtime, loaded))
}
