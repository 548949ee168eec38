//! The event trace: a running SHA-256 over every event of a run (two runs
//! with the same seed must produce the same hash) and a ring of the most
//! recent events, printed with any invariant violation.

use std::collections::VecDeque;
use std::fmt;

use sha2::{Digest, Sha256};

/// Events kept for the excerpt printed with a violation.
pub const TRACE_EXCERPT_EVENTS: usize = 40;

/// One traced event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// A message was delivered.
    Deliver {
        /// Sender.
        from: usize,
        /// Receiver.
        to: usize,
        /// Payload size.
        len: usize,
    },
    /// A message from a hostile node was delivered.
    HostileDeliver {
        /// The hostile node.
        hostile: usize,
        /// Receiver.
        to: usize,
        /// The attack's name.
        attack: &'static str,
        /// Payload size.
        len: usize,
    },
    /// A timer fired.
    Timer {
        /// The node.
        node: usize,
        /// Timer id.
        timer: u64,
    },
    /// A membership update was observed.
    Update {
        /// Whose view.
        observer: usize,
        /// About whom.
        subject: String,
        /// New state.
        state: &'static str,
        /// New incarnation.
        incarnation: u64,
    },
    /// The component logged an event.
    Log {
        /// The node.
        node: usize,
        /// Event kind.
        kind: String,
    },
    /// The simulator injected a fault or an operation.
    Action(String),
}

/// One traced event and its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRecord {
    /// Virtual time, ms.
    pub at: u64,
    /// What happened.
    pub event: TraceEvent,
}

impl fmt::Display for TraceRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>9.3}s ", self.at as f64 / 1000.0)?;
        match &self.event {
            TraceEvent::Deliver { from, to, len } => {
                write!(f, "deliver n{from} -> n{to} ({len} B)")
            }
            TraceEvent::HostileDeliver {
                hostile,
                to,
                attack,
                len,
            } => write!(f, "deliver h{hostile} -> n{to} ({attack}, {len} B)"),
            TraceEvent::Timer { node, timer } => write!(f, "timer n{node} #{timer}"),
            TraceEvent::Update {
                observer,
                subject,
                state,
                incarnation,
            } => {
                write!(f, "view n{observer}: {subject} {state} inc {incarnation}")
            }
            TraceEvent::Log { node, kind } => write!(f, "log n{node}: {kind}"),
            TraceEvent::Action(what) => write!(f, "ACTION {what}"),
        }
    }
}

/// Writes `event`'s derived `Debug` text into `out`: the two kinds of
/// nearly every event (deliveries and timers) as that text spelled out,
/// in a few pieces rather than a field at a time through
/// `DebugStruct`; the rest through `Debug` itself.
fn debug_text(out: &mut String, event: &TraceEvent) {
    use fmt::Write as _;
    let _ = match event {
        TraceEvent::Deliver { from, to, len } => {
            write!(out, "Deliver {{ from: {from}, to: {to}, len: {len} }}")
        }
        TraceEvent::Timer { node, timer } => {
            write!(out, "Timer {{ node: {node}, timer: {timer} }}")
        }
        other => write!(out, "{other:?}"),
    };
}

/// The running trace of a simulation.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    hasher: Sha256,
    events: u64,
    recent: VecDeque<TraceRecord>,
    /// The event's Debug text, formatted here (reused, so without an
    /// allocation per event) and hashed in one piece: a derived `Debug`
    /// writes many short pieces, and SHA-256 takes one long one faster.
    text: String,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Trace {
        Trace::default()
    }

    /// Records an event; `bytes` (a payload or detail) is hashed too.
    pub fn record(&mut self, at: u64, event: TraceEvent, bytes: &[u8]) {
        self.events += 1;
        self.hasher.update(at.to_be_bytes());
        // The event's Debug text: the same bytes as hashing
        // `format!("{event:?}")`.
        self.text.clear();
        debug_text(&mut self.text, &event);
        self.hasher.update(self.text.as_bytes());
        self.hasher.update((bytes.len() as u64).to_be_bytes());
        self.hasher.update(bytes);
        if self.recent.len() == TRACE_EXCERPT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(TraceRecord { at, event });
    }

    /// Number of events recorded.
    pub fn len(&self) -> u64 {
        self.events
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Hex SHA-256 of everything recorded so far.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// The most recent events, one per line.
    pub fn excerpt(&self) -> String {
        self.recent.iter().map(|r| format!("  {r}\n")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_events_text_is_its_debug_text() {
        let numbers = [0usize, 7, 10, 999, usize::MAX];
        let mut events = Vec::new();
        for &n in &numbers {
            for &m in &numbers {
                events.push(TraceEvent::Deliver {
                    from: n,
                    to: m,
                    len: n / 3,
                });
                events.push(TraceEvent::Timer {
                    node: n,
                    timer: m as u64,
                });
            }
        }
        events.push(TraceEvent::Timer {
            node: 1,
            timer: u64::MAX,
        });
        events.push(TraceEvent::HostileDeliver {
            hostile: 2,
            to: 3,
            attack: "flood",
            len: 4,
        });
        events.push(TraceEvent::Update {
            observer: 1,
            subject: "n\"2".into(),
            state: "alive",
            incarnation: 5,
        });
        events.push(TraceEvent::Log {
            node: 1,
            kind: "k".into(),
        });
        events.push(TraceEvent::Action("crash n1".into()));
        for event in events {
            let mut text = String::new();
            debug_text(&mut text, &event);
            assert_eq!(text, format!("{event:?}"));
        }
    }
}
