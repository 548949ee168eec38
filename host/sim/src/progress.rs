//! Progress of long runs (`nodeplane sim`, `nodeplane bench`) on stderr,
//! when stderr is a terminal: what runs (scenario, seed, N), the virtual
//! time reached (of the target when known), events per second and the
//! process's resident memory.
//!
//! Progress is outside the run: it adds no event, draws no random number
//! and writes nothing to the trace. The event loop counts events and looks
//! at the wall clock only every [`CHECK_EVERY_EVENTS`] events; the bar is
//! redrawn at most every [`REDRAW_EVERY`]. Nothing is drawn unless a
//! [`Progress`] guard is alive on the thread (the CLI makes one when
//! stderr is a terminal and `--quiet` is not given), so library users and
//! tests never see it.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Events the event loop runs between two looks at the wall clock.
pub const CHECK_EVERY_EVENTS: u64 = 4096;
/// Least wall time between two redraws of the bar.
pub const REDRAW_EVERY: Duration = Duration::from_millis(250);

/// The bar of this thread's run.
struct Active {
    bar: ProgressBar,
    /// What runs now.
    label: String,
    /// The virtual time the stage runs to, ms, when known.
    target_ms: Option<u64>,
    /// Virtual time reached, ms.
    now_ms: u64,
    /// Events run since the last redraw.
    events: u64,
    /// When the bar was last redrawn.
    last: Instant,
    /// Events per wall second at the last redraw.
    rate: f64,
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
}

/// Whether to show progress: stderr is a terminal and `quiet` is false.
pub fn wanted(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// Shows progress on stderr while it lives (see the module documentation).
pub struct Progress {
    shown: bool,
}

impl Progress {
    /// Starts showing progress on this thread when `show` is true (see
    /// [`wanted`]); otherwise a guard that shows nothing.
    pub fn start(show: bool) -> Progress {
        if show {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            ACTIVE.with(|a| {
                *a.borrow_mut() = Some(Active {
                    bar,
                    label: String::new(),
                    target_ms: None,
                    now_ms: 0,
                    events: 0,
                    last: Instant::now(),
                    rate: 0.0,
                })
            });
        }
        Progress { shown: show }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.shown {
            if let Some(active) = ACTIVE.with(|a| a.borrow_mut().take()) {
                active.bar.finish_and_clear();
            }
        }
    }
}

/// Names what runs from now on (`label`: scenario, seed, N...) and the
/// virtual time it runs to, ms, when known. Does nothing without a bar.
pub fn stage(label: impl Into<String>, target_ms: Option<u64>) {
    ACTIVE.with(|a| {
        if let Some(active) = a.borrow_mut().as_mut() {
            active.label = label.into();
            active.target_ms = target_ms;
            active.now_ms = 0;
            active.rate = 0.0;
            active.events = 0;
            active.last = Instant::now();
            draw(active);
        }
    });
}

/// Notes `events` more events run, virtual time `now_ms` reached; redraws
/// when [`REDRAW_EVERY`] has passed. Called by the event loop every
/// [`CHECK_EVERY_EVENTS`] events, and by the builder per node started.
pub(crate) fn tick(now_ms: u64, events: u64) {
    ACTIVE.with(|a| {
        if let Some(active) = a.borrow_mut().as_mut() {
            active.now_ms = now_ms;
            active.events = active.events.saturating_add(events);
            let elapsed = active.last.elapsed();
            if elapsed >= REDRAW_EVERY {
                active.rate = active.events as f64 / elapsed.as_secs_f64();
                active.events = 0;
                active.last = Instant::now();
                draw(active);
            }
        }
    });
}

/// Runs `f` (which prints) with the bar hidden, so that output does not
/// tear it.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE.with(|a| a.borrow().as_ref().map(|active| active.bar.clone()));
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

fn draw(active: &Active) {
    let rss = crate::bench::rss_bytes()
        .map(|b| format!("{:.2} GB", b as f64 / 1e9))
        .unwrap_or_else(|| "?".into());
    let t = active.now_ms as f64 / 1000.0;
    let time = match active.target_ms {
        Some(target) => format!("t = {t:.1} of {:.1} s virtual", target as f64 / 1000.0),
        None => format!("t = {t:.1} s virtual"),
    };
    let message = format!(
        "{} · {time} · {:.0} events/s · RSS {rss}",
        active.label, active.rate
    );
    match active.target_ms {
        Some(target) => {
            if active.bar.length() != Some(target) {
                active.bar.set_style(
                    ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                active.bar.set_length(target);
            }
            active.bar.set_position(active.now_ms.min(target));
        }
        None => {
            if active.bar.length().is_some() {
                active.bar.unset_length();
            }
            active.bar.set_style(
                ProgressStyle::with_template("[{elapsed_precise}] {spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
        }
    }
    active.bar.set_message(message);
}
