//! Link settings of the node plane component.
//!
//! The shadow stack in linear memory is Rust's wasm32 default of 1 MiB,
//! reserved in every instance. The deepest static call path of this
//! component is about 11 KiB, plus at most about 47 KiB of JSON recursion
//! (`serde_json`'s limit of 128 levels, ≈ 370 B per level, reachable from
//! a received `join` body) and a few KiB of sorting and formatting
//! recursion: under 80 KiB in all (`/work/notes/scale-guest-round5.md`,
//! measured from the component's code). 256 KiB keeps a factor of more
//! than 3 over that bound and returns 768 KiB of linear memory per
//! instance. A stack overflow is a trap the host contains, never a silent
//! corruption: the stack is placed below the data (`--stack-first`).

/// Shadow stack size of the component, in bytes.
const STACK_BYTES: u32 = 256 * 1024;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_FAMILY").as_deref() == Ok("wasm") {
        println!("cargo:rustc-link-arg-cdylib=-zstack-size={STACK_BYTES}");
    }
}
