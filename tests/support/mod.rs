//! Helpers shared by the test binaries; each binary includes this module
//! with `#[path = "../support/mod.rs"]` and uses the part it needs.
#![allow(dead_code)] // each including test binary uses part of it

pub mod agents;
pub mod cluster;
pub mod netns;
pub mod node;
pub mod tempdir;
