//! The simulated network: per-message latency, loss, duplication,
//! reordering, and faults (partitions, one-way blocks, mute and isolated
//! nodes), with traffic counters.

use std::collections::BTreeSet;

use crate::rng::SimRng;

/// Default smallest one-way latency (SCENARIOS.md common setting).
pub const DEFAULT_MIN_LATENCY_MS: u64 = 1;
/// Default largest one-way latency (SCENARIOS.md common setting).
pub const DEFAULT_MAX_LATENCY_MS: u64 = 10;
/// Largest extra delay of a reordered message.
pub const REORDER_EXTRA_MS: u64 = 50;
/// Messages over this size are dropped, as the host does (`wit/control.wit`).
pub const MAX_MESSAGE_BYTES: usize = nodeplane_runtime::MAX_MESSAGE_BYTES;

/// Statistical behaviour of every link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetConfig {
    /// Smallest one-way latency, ms.
    pub min_latency_ms: u64,
    /// Largest one-way latency, ms.
    pub max_latency_ms: u64,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Probability that a message gets up to [`REORDER_EXTRA_MS`] extra delay.
    pub reorder: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            min_latency_ms: DEFAULT_MIN_LATENCY_MS,
            max_latency_ms: DEFAULT_MAX_LATENCY_MS,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
        }
    }
}

/// Link faults in force now.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Directed (from, to) pairs whose messages are dropped.
    pub blocked: BTreeSet<(usize, usize)>,
    /// Nodes whose outgoing messages are all dropped.
    pub mute: BTreeSet<usize>,
    /// Nodes whose links are all down (both directions).
    pub isolated: BTreeSet<usize>,
}

impl Faults {
    /// True when no fault is in force.
    pub fn is_healthy(&self) -> bool {
        self.blocked.is_empty() && self.mute.is_empty() && self.isolated.is_empty()
    }

    /// True when a message from `from` to `to` is dropped by a fault.
    pub fn drops(&self, from: usize, to: usize) -> bool {
        self.mute.contains(&from)
            || self.isolated.contains(&from)
            || self.isolated.contains(&to)
            || self.blocked.contains(&(from, to))
    }
}

/// Traffic counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to the network.
    pub messages: u64,
    /// Payload bytes handed to the network.
    pub bytes: u64,
    /// Messages dropped (loss, fault, oversize, unknown address).
    pub dropped: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
}

/// The network: configuration, faults and counters.
#[derive(Clone, Debug, Default)]
pub struct Network {
    /// Link behaviour.
    pub config: NetConfig,
    /// Faults in force.
    pub faults: Faults,
    /// Counters since the start (or the last reset).
    pub stats: NetStats,
}

impl Network {
    /// Decides the fate of one message of `len` bytes from `from` to `to`:
    /// the delays of its deliveries (none when dropped).
    pub fn route(&mut self, rng: &mut SimRng, from: usize, to: usize, len: usize) -> Vec<u64> {
        self.stats.messages += 1;
        self.stats.bytes += len as u64;
        // Draw every random value whatever the outcome, so that a fault
        // does not shift the random stream of unrelated messages.
        let lost = rng.chance(self.config.loss);
        let twice = rng.chance(self.config.duplicate);
        let mut delays = Vec::with_capacity(2);
        for _ in 0..2 {
            let mut delay =
                rng.range_inclusive(self.config.min_latency_ms, self.config.max_latency_ms);
            if rng.chance(self.config.reorder) {
                delay += rng.range_inclusive(1, REORDER_EXTRA_MS);
            }
            delays.push(delay);
        }
        if len > MAX_MESSAGE_BYTES || lost || self.faults.drops(from, to) {
            self.stats.dropped += 1;
            return Vec::new();
        }
        if twice {
            self.stats.duplicated += 1;
        } else {
            delays.truncate(1);
        }
        delays
    }
}
