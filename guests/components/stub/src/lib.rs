//! The stub control plane component: simple, deterministic, no network.
//! See `plane.rs` for its rules and `docs/interface.md` for the contract.

mod bindings {
    wit_bindgen::generate!({ path: "../../../wit", world: "control-plane" });
}
mod glue;
mod plane;

const NAME: &str = "stub";
const FLAW: plane::Flaw = plane::Flaw::None;

use glue::Component;
/// The component's exports. The C ABI glue that wit-bindgen generates here
/// is the only unsafe code in the guests.
#[allow(unsafe_code)]
mod export {
    use super::{bindings, Component};
    bindings::export!(Component with_types_in bindings);
}
