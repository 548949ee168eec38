//! Runs one check in isolation: its own thread, a time limit, panics
//! caught, and component crashes turned into a failure with their reason.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use nodeplane_runtime::{Instance, LoadedComponent, Runtime};

use crate::checks::Check;
use crate::ctx::Ctx;
use crate::report::CheckResult;

/// Instantiates `component` once and calls `driver.info`: `Some(reason)`
/// if that fails, on one line (then every check would fail the same way).
pub(crate) fn probe(
    runtime: &Runtime,
    component: &LoadedComponent,
    timeout: Duration,
) -> Option<String> {
    let (done, outcome) = mpsc::channel();
    let runtime = runtime.clone();
    let component = component.clone();
    let started = Instant::now();
    let spawned = std::thread::Builder::new()
        .name("conformance probe".into())
        .spawn(move || {
            let failure = match Instance::new(&runtime, &component, 1) {
                Err(e) => Some(format!(
                    "instantiating it failed: {}",
                    root_cause(&format!("{e:#}"))
                )),
                Ok(mut instance) => instance
                    .info()
                    .err()
                    .map(|e| format!("driver.info failed: {e}")),
            };
            let _ = done.send((failure, Instant::now()));
        });
    let failure = match spawned {
        Err(e) => Some(format!("could not start the probe's thread: {e}")),
        Ok(_) => match receive_within(&outcome, started, timeout) {
            Ok(failure) => failure,
            Err(mpsc::RecvTimeoutError::Timeout) => Some(format!(
                "instantiating it and calling driver.info took over {} s",
                timeout.as_secs_f64()
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Some("the probe's thread died without a result".into())
            }
        },
    };
    failure.map(|why| one_line(&why))
}

/// The useful part of a wasmtime error chain: without the `error while
/// executing at wasm backtrace:` preamble, whose frames [`one_line`] folds.
fn root_cause(text: &str) -> String {
    text.replace("error while executing at wasm backtrace:", "")
        .trim()
        .to_string()
}

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
    let started = Instant::now();
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
            let crashes = ctx.crashes();
            let failure = if crashes.is_empty() {
                failure
            } else {
                Some(crashed(&crashes, failure))
            };
            // The receiver is gone only if the harness gave up on this check.
            let _ = done.send((failure, Instant::now()));
        });
    let failure = match spawned {
        Err(e) => Some(format!("could not start the check's thread: {e}")),
        Ok(_) => match receive_within(&outcome, started, timeout) {
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
        failure: failure.map(|why| root_cause(&one_line(&why))),
    }
}

/// The worker's result if it finished within `timeout` of `started`, by the
/// worker's own clock; a result that arrives late counts as a timeout.
///
/// `recv_timeout` alone is not enough: a harness thread that a loaded
/// machine wakes late finds the message already queued and would take it,
/// so a check that outlived its limit would pass or fail on its own
/// merits depending on scheduling.
fn receive_within<T>(
    outcome: &mpsc::Receiver<(T, Instant)>,
    started: Instant,
    timeout: Duration,
) -> Result<T, mpsc::RecvTimeoutError> {
    let (result, finished) = outcome.recv_timeout(timeout)?;
    match finished.saturating_duration_since(started) > timeout {
        true => Err(mpsc::RecvTimeoutError::Timeout),
        false => Ok(result),
    }
}

/// The failure of a check during which the component crashed: the crash
/// reasons first, then what the check saw (without repeating the reason).
fn crashed(reasons: &[String], failure: Option<String>) -> String {
    let reasons = reasons.join("; ");
    match failure {
        None => format!("component crashed: {reasons}"),
        Some(why) => {
            let seen = why
                .split(": control plane unavailable")
                .next()
                .unwrap_or(&why);
            format!("component crashed: {reasons} (the check saw: {seen})")
        }
    }
}

/// `text` on one line, without wasm backtrace frames, so that the report
/// keeps one line per check.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter_map(|line| match is_backtrace_frame(line) {
            // The last frame carries the rest of the message after `>: `.
            true => line.split_once(">: ").map(|(_, rest)| rest),
            false => Some(line),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A line such as `3:   0xe0c2 - <unknown>!<wasm function 204>`.
fn is_backtrace_frame(line: &str) -> bool {
    let Some((index, rest)) = line.split_once(':') else {
        return false;
    };
    !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) && rest.contains(" - ")
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

#[cfg(test)]
mod tests {
    use super::{mpsc, one_line, receive_within, Duration, Instant};

    #[test]
    fn backtraces_fold_into_one_line_keeping_the_message() {
        let reason = "error while executing at wasm backtrace:\n    0:  0x136a9 - <unknown>!<wasm function 5>\n   11:   0x55c0 - <unknown>!<wasm function 75>: unknown import: `x` has not been defined";
        assert_eq!(
            one_line(reason),
            "error while executing at wasm backtrace: unknown import: `x` has not been defined"
        );
        assert_eq!(one_line("a\nb: c"), "a b: c");
    }

    #[test]
    fn a_result_that_finished_after_the_limit_is_a_timeout_even_if_already_queued() {
        let started = Instant::now();
        let limit = Duration::from_millis(1);
        let (done, outcome) = mpsc::channel();
        // Already queued when the harness looks, as when a loaded machine
        // wakes the harness late; the worker's clock says it ran 50 ms.
        done.send(("finished", started + Duration::from_millis(50)))
            .expect("queued");
        assert_eq!(
            receive_within(&outcome, started, limit),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        done.send(("finished", started)).expect("queued");
        assert_eq!(receive_within(&outcome, started, limit), Ok("finished"));
    }
}
