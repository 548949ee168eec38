//! Loading a component by what a user names: a built-in component's name
//! or a component file's path. The one loader of the command line, the
//! agent, the simulator and the tests.

use std::path::Path;

use nodeplane_runtime::{ComponentSource, LoadedComponent, Runtime, RuntimeError};

use crate::{builtin, BUILTIN};

/// Why a named component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The name is neither a built-in component nor an existing file.
    #[error("component {spec:?} is neither a file nor a built-in component (built in: {})", builtin_names().join(", "))]
    Unknown {
        /// What was asked for.
        spec: String,
    },
    /// The component was found but the runtime refused it.
    #[error("loading {what} {spec}: {source}")]
    Load {
        /// `built-in component` or `component file`.
        what: &'static str,
        /// What was asked for.
        spec: String,
        /// Why the runtime refused it.
        source: RuntimeError,
    },
}

/// The names of the built-in components.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(name, _)| *name).collect()
}

/// Whether `spec` names a built-in component or an existing file, checked
/// without loading it (for validating a configuration).
pub fn exists(spec: &str) -> Result<(), LoadError> {
    if builtin(spec).is_some() || Path::new(spec).is_file() {
        Ok(())
    } else {
        Err(LoadError::Unknown { spec: spec.into() })
    }
}

/// Loads `spec` into `runtime`: the built-in component of that name if
/// there is one (`stub`, `nodeplane`), otherwise the component file at
/// that path.
pub fn load(runtime: &Runtime, spec: &str) -> Result<LoadedComponent, LoadError> {
    if let Some(bytes) = builtin(spec) {
        return runtime
            .load(bytes, ComponentSource::Builtin(spec.to_string()))
            .map_err(|source| LoadError::Load {
                what: "built-in component",
                spec: spec.into(),
                source,
            });
    }
    let path = Path::new(spec);
    if !path.exists() {
        return Err(LoadError::Unknown { spec: spec.into() });
    }
    runtime.load_file(path).map_err(|source| LoadError::Load {
        what: "component file",
        spec: spec.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodeplane_runtime::Limits;

    #[test]
    fn unknown_names_list_the_built_in_ones() {
        let runtime = Runtime::new(Limits::default()).expect("engine");
        let Err(err) = load(&runtime, "no-such-component") else {
            panic!("an unknown name must not load");
        };
        assert_eq!(
            err.to_string(),
            "component \"no-such-component\" is neither a file nor a built-in component (built in: stub, nodeplane)"
        );
        assert!(exists("stub").is_ok());
        assert!(exists("no-such-component").is_err());
    }
}
