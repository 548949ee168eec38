//! Counters of the agent, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters shared by the network tasks, the services and the API.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Control messages received and accepted by the wire layer.
    pub messages_in: AtomicU64,
    /// Bytes of those messages (payload).
    pub bytes_in: AtomicU64,
    /// Control messages sent.
    pub messages_out: AtomicU64,
    /// Bytes of those messages (payload).
    pub bytes_out: AtomicU64,
    /// Outbound messages that could not be sent.
    pub send_failures: AtomicU64,
    /// Cluster keys installed (0: the agent runs open, unsealed).
    pub cluster_keys: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    events: Mutex<BTreeMap<String, u64>>,
    limits: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// The latest checkpoint the component reported agreed.
    pub checkpoint: crate::checkpoints::CheckpointTracker,
}

/// Counter family of sends dropped by a bound, by reason (`amplification`,
/// `outbox-full`, `tcp-sends-full`).
pub const SENDS_DROPPED: &str = "nodeplane_sends_dropped_total";
/// Counter family of inbound TCP connections refused or closed by a bound,
/// by reason (`per-ip-limit`, `total-limit`, `idle-timeout`).
pub const CONNECTIONS_CLOSED: &str = "nodeplane_tcp_connections_closed_total";
/// Counter family of event-log rotations (reason `size`).
pub const EVENT_LOG_ROTATIONS: &str = "nodeplane_event_log_rotations_total";
/// Counter family of event-log bytes discarded with the oldest generation
/// (reason `size`).
pub const EVENT_LOG_DROPPED_BYTES: &str = "nodeplane_event_log_dropped_bytes_total";

/// The bounded-resource counter families with their help text.
const LIMIT_FAMILIES: [(&str, &str); 4] = [
    (
        SENDS_DROPPED,
        "Outbound messages dropped by a bound, by reason.",
    ),
    (
        CONNECTIONS_CLOSED,
        "Inbound TCP connections refused or closed by a bound, by reason.",
    ),
    (EVENT_LOG_ROTATIONS, "Event-log rotations."),
    (
        EVENT_LOG_DROPPED_BYTES,
        "Event-log bytes discarded with the oldest generation.",
    ),
];

/// Values read from elsewhere when rendering.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    /// Ledger entries held.
    pub ledger_entries: usize,
    /// Component crashes.
    pub crashes: u64,
    /// Hot swaps.
    pub swaps: u64,
    /// Message payloads quarantined for crashing the component twice.
    pub quarantined: u64,
    /// Deliveries dropped because their payload is quarantined.
    pub quarantine_drops: u64,
    /// Members by state: (state, count).
    pub members: Vec<(&'static str, usize)>,
}

impl Metrics {
    /// Counts a received message.
    pub fn received(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts a sent message.
    pub fn sent(&self, bytes: usize) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts a rejected message by reason.
    pub fn rejected(&self, reason: &'static str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// Rejected messages by reason.
    pub fn rejected_by_reason(&self) -> BTreeMap<&'static str, u64> {
        self.rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds `n` to a bounded-resource counter: `family` is one of
    /// [`SENDS_DROPPED`], [`CONNECTIONS_CLOSED`], [`EVENT_LOG_ROTATIONS`],
    /// [`EVENT_LOG_DROPPED_BYTES`].
    pub fn limit(&self, family: &'static str, reason: &'static str, n: u64) {
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let v = limits.entry((family, reason)).or_default();
        *v = v.saturating_add(n);
    }

    /// Counts a send dropped by a bound.
    pub fn send_dropped(&self, reason: &'static str) {
        self.limit(SENDS_DROPPED, reason, 1);
    }

    /// Counts a TCP connection refused or closed by a bound.
    pub fn connection_closed(&self, reason: &'static str) {
        self.limit(CONNECTIONS_CLOSED, reason, 1);
    }

    /// A bounded-resource counter's value.
    pub fn limit_count(&self, family: &'static str, reason: &'static str) -> u64 {
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(family, reason))
            .copied()
            .unwrap_or(0)
    }

    fn render_limits(&self, out: &mut String) {
        let limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        for (family, help) in LIMIT_FAMILIES {
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} counter");
            let mut any = false;
            for ((_, reason), n) in limits.iter().filter(|((f, _), _)| *f == family) {
                any = true;
                let _ = writeln!(out, "{family}{{reason=\"{reason}\"}} {n}");
            }
            if !any {
                let _ = writeln!(out, "{family}{{reason=\"none\"}} 0");
            }
        }
    }

    /// Counts a component log event by kind.
    pub fn event(&self, kind: &str) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        match events.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                events.insert(kind.to_string(), 1);
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "nodeplane_messages_in_total",
            "Control messages received.",
            self.messages_in.load(Ordering::Relaxed),
        );
        counter(
            "nodeplane_bytes_in_total",
            "Payload bytes received.",
            self.bytes_in.load(Ordering::Relaxed),
        );
        counter(
            "nodeplane_messages_out_total",
            "Control messages sent.",
            self.messages_out.load(Ordering::Relaxed),
        );
        counter(
            "nodeplane_bytes_out_total",
            "Payload bytes sent.",
            self.bytes_out.load(Ordering::Relaxed),
        );
        counter(
            "nodeplane_send_failures_total",
            "Messages that could not be sent.",
            self.send_failures.load(Ordering::Relaxed),
        );
        counter(
            "nodeplane_component_crashes_total",
            "Component crashes (each rebuilt from the ledger).",
            gauges.crashes,
        );
        counter(
            "nodeplane_component_swaps_total",
            "Successful hot swaps.",
            gauges.swaps,
        );
        counter(
            "nodeplane_messages_quarantined_total",
            "Message payloads quarantined for crashing the component twice.",
            gauges.quarantined,
        );
        counter(
            "nodeplane_quarantine_drops_total",
            "Messages dropped because their payload is quarantined.",
            gauges.quarantine_drops,
        );
        let _ = writeln!(out, "# HELP nodeplane_messages_rejected_total Messages rejected, by reason.\n# TYPE nodeplane_messages_rejected_total counter");
        let rejected = self.rejected_by_reason();
        if rejected.is_empty() {
            let _ = writeln!(
                out,
                "nodeplane_messages_rejected_total{{reason=\"none\"}} 0"
            );
        }
        for (reason, n) in rejected {
            let _ = writeln!(
                out,
                "nodeplane_messages_rejected_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP nodeplane_cluster_keys Cluster keys installed (0: running open, messages unsealed).\n# TYPE nodeplane_cluster_keys gauge\nnodeplane_cluster_keys {}", self.cluster_keys.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP nodeplane_ledger_entries Ledger entries held.\n# TYPE nodeplane_ledger_entries gauge\nnodeplane_ledger_entries {}", gauges.ledger_entries);
        let _ = writeln!(out, "# HELP nodeplane_members Members in the view, by state.\n# TYPE nodeplane_members gauge");
        for (state, n) in &gauges.members {
            let _ = writeln!(out, "nodeplane_members{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP nodeplane_events_total Component log events, by kind.\n# TYPE nodeplane_events_total counter");
        for (kind, n) in self.events.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "nodeplane_events_total{{kind=\"{}\"}} {n}",
                escape(kind)
            );
        }
        let checkpoint = self.checkpoint.latest();
        let _ = writeln!(out, "# HELP nodeplane_checkpoint_agreed The latest checkpoint the component agreed (0: none yet).\n# TYPE nodeplane_checkpoint_agreed gauge\nnodeplane_checkpoint_agreed {}", checkpoint.as_ref().map_or(0, |c| c.n));
        let _ = writeln!(out, "# HELP nodeplane_checkpoint_records Member records in the latest agreed checkpoint.\n# TYPE nodeplane_checkpoint_records gauge\nnodeplane_checkpoint_records {}", checkpoint.as_ref().map_or(0, |c| c.records));
        self.render_limits(&mut out);
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends the ledger store's and the HTTP API's figures to an exposition
/// ([`Metrics::render`]'s): `counters` are `(name, help, value)`, each a
/// counter; `gauges` likewise, each a gauge.
pub fn render_more(out: &mut String, counters: &[(&str, &str, u64)], gauges: &[(&str, &str, u64)]) {
    for (kind, list) in [("counter", counters), ("gauge", gauges)] {
        for (name, help, value) in list {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_labels() {
        let m = Metrics::default();
        m.received(10);
        m.sent(20);
        m.rejected("oversized");
        m.event("probe-failed");
        m.event("probe-failed");
        let text = m.render(&Gauges {
            ledger_entries: 3,
            crashes: 1,
            swaps: 2,
            quarantined: 5,
            quarantine_drops: 6,
            members: vec![("alive", 4)],
        });
        for line in [
            "nodeplane_messages_in_total 1",
            "nodeplane_bytes_out_total 20",
            "nodeplane_messages_rejected_total{reason=\"oversized\"} 1",
            "nodeplane_ledger_entries 3",
            "nodeplane_component_crashes_total 1",
            "nodeplane_component_swaps_total 2",
            "nodeplane_messages_quarantined_total 5",
            "nodeplane_quarantine_drops_total 6",
            "nodeplane_events_total{kind=\"probe-failed\"} 2",
            "nodeplane_members{state=\"alive\"} 4",
            "nodeplane_cluster_keys 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }
}
