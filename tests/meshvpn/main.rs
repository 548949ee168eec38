//! The Mesh VPN: one suite (`suite`) run against every way of providing a
//! control plane, in process (`modes`: stub, node plane cluster, hot swap)
//! and through a real agent's compatibility API (`compat`, multi-process,
//! taking `support::agents::SERIAL`).

#[path = "../support/mod.rs"]
mod support;

mod compat;
mod modes;
mod suite;
