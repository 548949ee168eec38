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

/// Set (to anything), the engine writes a perf map of the compiled guest
/// code, `/tmp/perf-PID.map`, so that `perf report` names the guests'
/// functions instead of showing `[JIT]` addresses.
pub const PERF_MAP_VAR: &str = "NODEPLANE_PERF_MAP";

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
    /// The component imports something the host does not offer. Checked
    /// before compilation, from the component's import section.
    #[error("component {name}: imports {}, which the host does not provide; a control plane may import the nodeplane:control host services and the WASI 0.2 interfaces wasi:cli, wasi:clocks, wasi:io, wasi:random (deterministic: the host's clock and seeded randomness), wasi:filesystem, wasi:sockets and wasi:http (present, but every operation fails: no files, no network); see docs/interface.md §7", quoted(.imports))]
    ForbiddenImport {
        /// Name or path of the component.
        name: String,
        /// Every import the host refuses, in the component's order.
        imports: Vec<String>,
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
    /// Member values the mirrors of this runtime's nodes share.
    members: crate::mirror::MemberPool,
}

impl Runtime {
    /// A runtime with the given limits.
    pub fn new(limits: Limits) -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.consume_fuel(true);
        config.wasm_component_model(true);
        config.cache(disk_cache());
        if std::env::var_os(PERF_MAP_VAR).is_some() {
            // Names the guests' compiled functions for `perf report`
            // (`/tmp/perf-PID.map`); changes nothing a guest can observe.
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        Ok(Runtime {
            engine,
            limits,
            cache: Arc::new(Mutex::new(HashMap::new())),
            members: crate::mirror::MemberPool::new(),
        })
    }

    /// The member values the view mirrors of this runtime's nodes share.
    pub fn members(&self) -> &crate::mirror::MemberPool {
        &self.members
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
        // The imports are read from the component's import section before
        // anything is compiled: a refusal costs milliseconds, not the
        // compilation of the whole component.
        let declared = declared_imports(bytes).map_err(|reason| RuntimeError::Invalid {
            name: name.clone(),
            reason,
        })?;
        check_imports(&declared, &name)?;
        let component = Component::new(&self.engine, bytes).map_err(invalid)?;
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(import, _)| import.to_string())
            .collect();
        // What compiled must be what was checked (the section parser and
        // wasmtime agree on the names; this guards that assumption).
        check_imports(&imports, &name)?;
        let mut linker = Linker::<HostState>::new(&self.engine);
        Bindings::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(invalid)?;
        crate::wasi::define(&mut linker, &self.engine, &component).map_err(invalid)?;
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

/// The environment variable naming the directory where compiled
/// components are cached (`off` disables the cache). Unset: wasmtime's
/// per-user cache directory (`~/.cache/BytecodeAlliance/wasmtime` on
/// Linux).
pub const CACHE_DIR_ENV: &str = "NODEPLANE_CACHE_DIR";

/// wasmtime's compilation cache: a compiled component is stored under the
/// hash of its bytes and the engine's configuration, so a second load of
/// the same component (another process, a restart) does not compile it
/// again. Loading an entry goes through wasmtime's own checks (zstd frame,
/// the artifact's header naming the wasmtime version and engine settings);
/// an entry that fails them is compiled again and rewritten. The entries
/// are native code the host runs: the directory must be writable by the
/// host's user only (it is created with mode 0700 here). `Component::
/// deserialize`, the alternative, is `unsafe`, which this workspace forbids.
fn disk_cache() -> Option<wasmtime::Cache> {
    let mut config = wasmtime::CacheConfig::new();
    match std::env::var_os(CACHE_DIR_ENV) {
        Some(dir) if dir == "off" => return None,
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            if let Err(e) = private_dir(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "compilation cache disabled: cannot create its directory");
                return None;
            }
            config.with_directory(dir);
        }
        None => {}
    }
    match wasmtime::Cache::new(config) {
        Ok(cache) => Some(cache),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "compilation cache disabled");
            None
        }
    }
}

/// Creates `dir` (and its parents), readable and writable by this user only.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Most imports a component may declare. The control-plane world has 8 and
/// a toolchain adds about 30 WASI interfaces; far more is not a control
/// plane, and the list is echoed in messages.
pub const MAX_IMPORTS: usize = 256;

/// The names of the top-level imports of a component, read from its import
/// section without compiling it.
fn declared_imports(bytes: &[u8]) -> Result<Vec<String>, String> {
    use wasmparser::{Encoding, Parser, Payload};
    let mut imports = Vec::new();
    // Nesting depth: 1 inside the top-level component, more inside the
    // modules and components it defines.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| e.to_string())?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != Encoding::Component {
                    return Err(
                        "a core WebAssembly module, not a component (build it for wasm32-wasip2, or wrap it with `wasm-tools component new`)".into(),
                    );
                }
                depth = depth.saturating_add(1);
            }
            Payload::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    let import = import.map_err(|e| e.to_string())?;
                    if imports.len() >= MAX_IMPORTS {
                        return Err(format!("more than {MAX_IMPORTS} imports"));
                    }
                    imports.push(import.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(imports)
}

/// Checks that a component imports only the project's host services and
/// the WASI interfaces the host provides ([`crate::wasi`]); names every
/// other import.
fn check_imports(imports: &[String], name: &str) -> Result<(), RuntimeError> {
    let refused: Vec<String> = imports
        .iter()
        .filter(|import| !import.starts_with(OWN_INTERFACES) && !crate::wasi::is_provided(import))
        .cloned()
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(RuntimeError::ForbiddenImport {
            name: name.to_string(),
            imports: refused,
        })
    }
}

/// What a component creates when it is instantiated, counted from its
/// sections: the figures the store limits ([`crate::MAX_INSTANCES`] and
/// the others) bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Core module instances.
    pub core_instances: usize,
    /// Tables defined by its core modules.
    pub tables: usize,
    /// Linear memories defined by its core modules.
    pub memories: usize,
}

/// Counts what `bytes` (a component) creates, without compiling it.
pub fn footprint(bytes: &[u8]) -> Result<Footprint, String> {
    use wasmparser::{Parser, Payload};
    let mut counts = Footprint::default();
    for payload in Parser::new(0).parse_all(bytes) {
        let count = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        match payload.map_err(|e| e.to_string())? {
            // Only instantiations: a bag of exports creates no instance.
            Payload::InstanceSection(s) => {
                for instance in s {
                    if let wasmparser::Instance::Instantiate { .. } =
                        instance.map_err(|e| e.to_string())?
                    {
                        counts.core_instances = counts.core_instances.saturating_add(1);
                    }
                }
            }
            Payload::TableSection(s) => {
                counts.tables = counts.tables.saturating_add(count(s.count()))
            }
            Payload::MemorySection(s) => {
                counts.memories = counts.memories.saturating_add(count(s.count()))
            }
            _ => {}
        }
    }
    Ok(counts)
}

/// `"a", "b"` for a message.
fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A component importing the instance `name` (of an empty instance
    /// type), followed by a core module that does not validate: loading it
    /// must fail on the import, before anything is compiled.
    fn component_importing(name: &str) -> Vec<u8> {
        let mut bytes = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        // Type section: one instance type with no declarations.
        bytes.extend([0x07, 0x03, 0x01, 0x42, 0x00]);
        // Import section: `name`, an instance of type 0.
        let mut import = vec![0x01, 0x00, name.len() as u8];
        import.extend(name.as_bytes());
        import.extend([0x05, 0x00]);
        bytes.push(0x0a);
        bytes.push(import.len() as u8);
        bytes.extend(import);
        // A core module whose only function leaves an i32 on a () -> () stack.
        let module: &[u8] = &[
            0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00,
            0x03, 0x02, 0x01, 0x00, 0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x00, 0x0b,
        ];
        bytes.push(0x01);
        bytes.push(module.len() as u8);
        bytes.extend(module);
        bytes
    }

    #[test]
    fn imports_are_checked_before_compilation_and_the_refusal_says_what_is_allowed() {
        let runtime = Runtime::new(Limits::default()).expect("engine");
        let bytes = component_importing("wasi:keyvalue/store@0.2.0");
        assert_eq!(
            declared_imports(&bytes).expect("parses"),
            vec!["wasi:keyvalue/store@0.2.0".to_string()]
        );
        let Err(err) = runtime.load(&bytes, ComponentSource::File("kv.wasm".into())) else {
            panic!("a forbidden import must not load");
        };
        assert!(
            matches!(&err, RuntimeError::ForbiddenImport { imports, .. } if imports == &["wasi:keyvalue/store@0.2.0"]),
            "refused on the import, not on the invalid module: {err}"
        );
        let message = err.to_string();
        for allowed in [
            "nodeplane:control",
            "wasi:clocks",
            "wasi:random",
            "wasi:cli",
            "docs/interface.md §7",
        ] {
            assert!(message.contains(allowed), "{message}");
        }
        // A provided WASI interface passes the check (and then fails on the
        // invalid module, so the check did come first).
        let bytes = component_importing("wasi:clocks/monotonic-clock@0.2.9");
        let Err(err) = runtime.load(&bytes, ComponentSource::File("m.wasm".into())) else {
            panic!("the module does not validate");
        };
        assert!(matches!(err, RuntimeError::Invalid { .. }), "{err}");
        // WASI 0.3 is not provided.
        assert!(!crate::wasi::is_provided(
            "wasi:clocks/monotonic-clock@0.3.0"
        ));
    }
}
