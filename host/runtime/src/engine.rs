//! The wasmtime engine, component loading, import validation and caching.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::{ControlPlane as Bindings, ControlPlanePre};
use crate::host_state::HostState;

/// Interfaces a component may import: the project's own host services.
const OWN_INTERFACES: &str = "nodeplane:control/";

/// WASI interfaces that Rust's standard library links only to print a panic
/// message. They are provided as traps (a panic is a crash anyway), so they
/// give a guest no clock, randomness or I/O.
const PANIC_ONLY_WASI: &[&str] = &[
    "wasi:cli/stderr",
    "wasi:cli/stdout",
    "wasi:cli/stdin",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/streams",
    "wasi:io/poll",
];

/// Resource limits applied to every instance.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) for one call.
    pub fuel_per_call: u64,
    /// Fuel for `driver.init`, which replays the whole ledger.
    pub fuel_for_init: u64,
    /// Largest linear memory of an instance, in bytes.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel_per_call: 2_000_000_000,
            fuel_for_init: 50_000_000_000,
            memory_bytes: 512 << 20,
        }
    }
}

/// Errors of loading and instantiating components.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bytes are not a valid component.
    #[error("component {name}: not a valid WebAssembly component: {reason}")]
    Invalid {
        /// Name or path of the component.
        name: String,
        /// What wasmtime said.
        reason: String,
    },
    /// The component imports something the host does not offer.
    #[error("component {name}: imports {import:?}, but a control plane may import only nodeplane:control host services")]
    ForbiddenImport {
        /// Name or path of the component.
        name: String,
        /// The offending import.
        import: String,
    },
    /// The component does not export the control-plane world.
    #[error("component {name}: does not implement the control-plane world: {reason}")]
    WrongWorld {
        /// Name or path of the component.
        name: String,
        /// What is missing.
        reason: String,
    },
    /// Reading a component file failed.
    #[error("reading component {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where a component comes from, for messages and introspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComponentSource {
    /// Built into the binary under this name.
    Builtin(String),
    /// Read from this file.
    File(String),
}

impl std::fmt::Display for ComponentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComponentSource::Builtin(name) => write!(f, "builtin:{name}"),
            ComponentSource::File(path) => f.write_str(path),
        }
    }
}

/// A compiled, validated component, ready to instantiate cheaply.
#[derive(Clone)]
pub struct LoadedComponent {
    pub(crate) pre: ControlPlanePre<HostState>,
    /// SHA-256 of the component bytes.
    pub hash: [u8; 32],
    /// Where it came from.
    pub source: ComponentSource,
    /// The imports it declares.
    pub imports: Vec<String>,
}

impl LoadedComponent {
    /// The hash as lowercase hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }
}

/// One wasmtime engine with a cache of compiled components.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
    cache: Arc<Mutex<HashMap<[u8; 32], LoadedComponent>>>,
}

impl Runtime {
    /// A runtime with the given limits.
    pub fn new(limits: Limits) -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.consume_fuel(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        Ok(Runtime {
            engine,
            limits,
            cache: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The limits applied to instances.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Reads, compiles and validates a component file.
    pub fn load_file(&self, path: &std::path::Path) -> Result<LoadedComponent, RuntimeError> {
        let bytes = std::fs::read(path).map_err(|source| RuntimeError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load(&bytes, ComponentSource::File(path.display().to_string()))
    }

    /// Compiles and validates a component; compiled once per distinct bytes.
    pub fn load(
        &self,
        bytes: &[u8],
        source: ComponentSource,
    ) -> Result<LoadedComponent, RuntimeError> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(hit) = self.cache.lock().expect("cache lock").get(&hash) {
            let mut hit = hit.clone();
            hit.source = source;
            return Ok(hit);
        }
        let name = source.to_string();
        // The component is not valid Wasm, or does not link.
        let invalid = |e: wasmtime::Error| RuntimeError::Invalid {
            name: name.clone(),
            reason: error_chain(&e),
        };
        // The component does not implement the control-plane world.
        let wrong_world = |e: wasmtime::Error| RuntimeError::WrongWorld {
            name: name.clone(),
            reason: error_chain(&e),
        };
        let component = Component::new(&self.engine, bytes).map_err(invalid)?;
        let imports = validate_imports(&self.engine, &component, &name)?;
        let mut linker = Linker::<HostState>::new(&self.engine);
        Bindings::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(invalid)?;
        define_panic_only_wasi_as_traps(&mut linker, &self.engine, &component).map_err(invalid)?;
        let instance_pre = linker.instantiate_pre(&component).map_err(wrong_world)?;
        let pre = ControlPlanePre::new(instance_pre).map_err(wrong_world)?;
        let loaded = LoadedComponent {
            pre,
            hash,
            source,
            imports,
        };
        self.cache
            .lock()
            .expect("cache lock")
            .insert(hash, loaded.clone());
        Ok(loaded)
    }
}

/// Checks that a component imports only the project's host services (and
/// the panic-only WASI interfaces, provided as traps). Returns the imports.
fn validate_imports(
    engine: &Engine,
    component: &Component,
    name: &str,
) -> Result<Vec<String>, RuntimeError> {
    let mut imports = Vec::new();
    for (import, _) in component.component_type().imports(engine) {
        let unversioned = import.split('@').next().unwrap_or(import);
        let allowed = import.starts_with(OWN_INTERFACES) || PANIC_ONLY_WASI.contains(&unversioned);
        if !allowed {
            return Err(RuntimeError::ForbiddenImport {
                name: name.to_string(),
                import: import.to_string(),
            });
        }
        imports.push(import.to_string());
    }
    Ok(imports)
}

/// Defines the panic-only WASI interfaces `component` imports as traps.
///
/// Only those: wasmtime's `define_unknown_imports_as_traps` would also
/// define the project's own interfaces imported at an older, compatible
/// version (`nodeplane:control/clock@0.1.0` on this 0.1.1 host) as traps
/// under their exact names, and those would win over the semver-compatible
/// match with the host's real definitions.
fn define_panic_only_wasi_as_traps(
    linker: &mut Linker<HostState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    use wasmtime::component::ResourceType;
    for (import, item) in component.component_type().imports(engine) {
        let unversioned = import.split('@').next().unwrap_or(import);
        if !PANIC_ONLY_WASI.contains(&unversioned) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let mut stubs = linker.instance(import)?;
        for (name, export) in instance.exports(engine) {
            match export.ty {
                ComponentItem::ComponentFunc(_) => {
                    let full = format!("{import}#{name}");
                    stubs.func_new(name, move |_, _, _, _| {
                        wasmtime::bail!(
                            "unknown import: `{full}` has not been defined (a control plane has no WASI I/O)"
                        )
                    })?;
                }
                ComponentItem::Resource(_) => {
                    stubs.resource(name, ResourceType::host::<()>(), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// An error and its causes on one line, `outer: inner: ...`, whitespace
/// collapsed (some parser errors pretty-print byte arrays over many lines).
pub(crate) fn error_chain(error: &wasmtime::Error) -> String {
    error
        .chain()
        .map(|cause| cause.to_string())
        .collect::<Vec<_>>()
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
