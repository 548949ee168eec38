//! The conformance suite of the Control Plane Interface (`docs/interface.md`).
//!
//! Every check is named after the spec item it verifies (`[join-1]` in the
//! spec is the check `join-1 ...`), builds fresh nodes of the component under
//! test in a world of the simulator (`nodeplane-sim`: recording host
//! services, messages and timers in virtual time, one seed), and uses only
//! the interface (plus the driver calls the spec covers). Checks run one
//! at a time, each isolated: a panic, a timeout or a component crash fails
//! that check and the run goes on.

mod checks;
mod ctx;
mod harness;
mod report;

use std::time::Duration;

use nodeplane_runtime::{LoadedComponent, Runtime};

pub use checks::{Check, CHECKS};
pub use ctx::{Ctx, Violation};
pub use report::{CheckResult, Report};

/// How a run is carried out.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Longest time one check may take before it is reported as timed out
    /// (its thread is then abandoned).
    pub check_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            check_timeout: Duration::from_secs(60),
        }
    }
}

/// Runs every check against `component` with the default [`Options`].
pub fn run(runtime: &Runtime, component: &LoadedComponent) -> Report {
    run_with(runtime, component, Options::default())
}

/// Runs every check against `component`.
pub fn run_with(runtime: &Runtime, component: &LoadedComponent, options: Options) -> Report {
    let checks = CHECKS
        .iter()
        .map(|check| harness::run_check(runtime, component, check, options.check_timeout))
        .collect();
    Report { checks }
}
