//! The end-to-end test binary: one module per area.

mod agent;
mod meshvpn;
mod runtime;
mod support;
