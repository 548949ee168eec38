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

/// Longest time instantiating the component and calling `driver.info`
/// once may take before the run is abandoned: instantiation takes
/// milliseconds once compiled and `info` is bounded by the fuel of one
/// call (seconds at worst), so only a host in trouble reaches it. Apart
/// from [`Options::check_timeout`], which may be short for a test.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

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
///
/// A component that cannot be instantiated, or crashes in `driver.info`,
/// fails once with that reason ([`Report::load_failure`]) and no check is
/// run: every check would fail the same way.
pub fn run_with(runtime: &Runtime, component: &LoadedComponent, options: Options) -> Report {
    if let Some(reason) = harness::probe(runtime, component, PROBE_TIMEOUT) {
        return Report {
            checks: Vec::new(),
            load_failure: Some(reason),
        };
    }
    let checks = CHECKS
        .iter()
        .map(|check| harness::run_check(runtime, component, check, options.check_timeout))
        .collect();
    Report {
        checks,
        load_failure: None,
    }
}
