//! Runs one check in isolation: its own thread, a time limit, panics
//! caught, and component crashes turned into a failure with their reason.

use std::sync::mpsc;
use std::time::Duration;

use nodeplane_runtime::{LoadedComponent, Runtime};

use crate::checks::Check;
use crate::ctx::Ctx;
use crate::report::CheckResult;

/// Runs `check` against `component`, failing it on a violation, a panic, a
/// component crash or after `timeout`.
pub(crate) fn run_check(
    runtime: &Runtime,
    component: &LoadedComponent,
    check: &Check,
    timeout: Duration,
) -> CheckResult {
    let (done, outcome) = mpsc::channel();
    let runtime = runtime.clone();
    let component = component.clone();
    let body = check.run;
    let spawned = std::thread::Builder::new()
        .name(format!("conformance {}", check.name))
        .spawn(move || {
            let ctx = Ctx::new(runtime, component);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&ctx)));
            let failure = match result {
                Ok(Ok(())) => None,
                Ok(Err(violation)) => Some(violation.to_string()),
                Err(panic) => Some(format!(
                    "the check panicked: {}",
                    panic_message(panic.as_ref())
                )),
            };
            let failure = match (ctx.crashes(), failure) {
                (crashes, failure) if crashes.is_empty() => failure,
                (crashes, None) => Some(format!("component crashed: {}", crashes.join("; "))),
                (crashes, Some(why)) => {
                    Some(format!("component crashed: {} ({why})", crashes.join("; ")))
                }
            };
            // The receiver is gone only if the harness gave up on this check.
            let _ = done.send(failure);
        });
    let failure = match spawned {
        Err(e) => Some(format!("could not start the check's thread: {e}")),
        Ok(_) => match outcome.recv_timeout(timeout) {
            Ok(failure) => failure,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Some(format!("timed out after {} s", timeout.as_secs_f64()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Some("the check's thread died without a result".into())
            }
        },
    };
    CheckResult {
        name: check.name,
        failure,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}
