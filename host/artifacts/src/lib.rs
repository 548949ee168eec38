//! The guest components, built for wasm32-wasip2 by this crate's build
//! script: their paths (for tests and tools) and their bytes (built into
//! the `nodeplane` binary, so an operator needs no `.wasm` file), and the
//! one loader of a component by built-in name or file path ([`load`]).

include!(concat!(env!("OUT_DIR"), "/paths.rs"));

mod load;

pub use load::{builtin_names, exists, load, LoadError};

/// The components built into the binary, selectable by name.
pub const BUILTIN: &[(&str, &[u8])] = &[("stub", STUB_BYTES), ("nodeplane", NODEPLANE_BYTES)];

/// The deliberately broken fixtures of the conformance harness, by name.
pub const FIXTURES: &[(&str, &str)] = &[
    ("drops-updates", FIXTURE_DROPS_UPDATES_PATH),
    ("wrong-error", FIXTURE_WRONG_ERROR_PATH),
    ("spin", FIXTURE_SPIN_PATH),
    ("trap", FIXTURE_TRAP_PATH),
    ("init-crash", FIXTURE_INIT_CRASH_PATH),
    ("memory-hog", FIXTURE_MEMORY_HOG_PATH),
    ("poison", FIXTURE_POISON_PATH),
];

/// The bytes of a built-in component by name (`stub` or `nodeplane`).
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}
