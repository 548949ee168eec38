//! The Control Plane Interface: the conformance suite against the stub, the
//! broken fixtures and the node plane, and the host runtime that loads and
//! drives components (import validation, fuel, crashes, hot swap) and
//! contains their faults (crash recovery, back-off, quarantine, fail-stop
//! store faults).

mod conformance;
mod containment;
mod example_builds;
mod examples;
mod runtime;
