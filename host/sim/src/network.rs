//! The simulated network: the agent's transport model (datagrams and
//! streams, decided by [`nodeplane_interface::transport`], the code the
//! agent itself uses), per-node uplink bandwidth, latency, loss,
//! duplication, reordering, and faults (partitions, one-way blocks, mute
//! and isolated nodes), with traffic counters.
//!
//! - **Datagrams** (payload ≤ [`MAX_DATAGRAM_BYTES`]): one loss draw each,
//!   may be duplicated or reordered, no retransmission.
//! - **Streams** (larger payloads; the agent sends them over a fresh TCP
//!   connection each): a handshake (SYN and SYN-ACK, each lost with the
//!   loss rate; a lost one is retried after [`SYN_RTO_MS`], doubling, and
//!   the connection fails if it is not up within
//!   [`STREAM_CONNECT_TIMEOUT_MS`], the agent's `TCP_SEND_TIMEOUT`); then
//!   the payload in [`STREAM_SEGMENT_BYTES`] segments, each lost with the
//!   loss rate and resent after a retransmission timeout ([`DATA_RTO_MS`],
//!   doubling per consecutive loss of that segment). The message arrives
//!   whole when its last segment has; the receiver gives up on a frame
//!   that takes longer than [`STREAM_IDLE_TIMEOUT_MS`] (the agent's
//!   `TCP_IDLE_TIMEOUT`). At most [`MAX_STREAMS_IN_FLIGHT`] connections
//!   per sender are being set up at once (the agent's `MAX_TCP_SENDS`);
//!   more are dropped. A stream is cut if a fault separates the two nodes
//!   or either crashes before it arrives. No duplicates, no reordering
//!   within a stream.
//! - **Uplink**: every message, datagram or stream, occupies its sender's
//!   uplink for `bytes × 8 / bandwidth` ([`NetConfig::bandwidth_bps`]).
//!   Streams are served first come first served, so a node that ships
//!   megabytes delays its own later streams. Datagrams wait only for the
//!   datagrams queued before them, and take their time from the streams:
//!   the flow queuing of Linux's default queueing discipline (`fq_codel`,
//!   and `fq`), which serves a sparse flow such as a probe or its ack
//!   ahead of a bulk transfer's backlog instead of behind it. (A single
//!   first-come-first-served queue held a busy seed's acks behind
//!   hundreds of megabytes of join entries at N = 1 024, which no host
//!   with a flow-queuing qdisc does.)

use std::collections::BTreeSet;

use nodeplane_interface::transport::{
    stream_segments, Transport, MAX_DATAGRAM_BYTES, STREAM_SEGMENT_BYTES,
};

use crate::rng::SimRng;

/// Default smallest one-way latency (SCENARIOS.md common setting).
pub const DEFAULT_MIN_LATENCY_MS: u64 = 1;
/// Default largest one-way latency (SCENARIOS.md common setting).
pub const DEFAULT_MAX_LATENCY_MS: u64 = 10;
/// Largest extra delay of a reordered message.
pub const REORDER_EXTRA_MS: u64 = 50;
/// Messages over this size are dropped, as the host does (`wit/control.wit`).
pub const MAX_MESSAGE_BYTES: usize = nodeplane_runtime::MAX_MESSAGE_BYTES;
/// Default per-node uplink bandwidth: 100 Mbit/s (issue 13), a modest
/// data-centre or good home uplink.
pub const DEFAULT_BANDWIDTH_BPS: u64 = 100_000_000;
/// Initial retransmission timeout of a lost SYN or SYN-ACK: Linux's
/// `TCP_TIMEOUT_INIT` (1 s, RFC 6298).
pub const SYN_RTO_MS: u64 = 1_000;
/// Retransmission timeout of a lost data segment on a fresh connection
/// with a 1–10 ms RTT: Linux's floor `TCP_RTO_MIN` (200 ms), doubled per
/// consecutive loss of the same segment.
pub const DATA_RTO_MS: u64 = 200;
/// Longest a connection may take to come up: the agent's
/// `TCP_SEND_TIMEOUT` (2 s), after which it gives the send up.
pub const STREAM_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Longest one frame may take to arrive whole once connected: the agent's
/// `TCP_IDLE_TIMEOUT` (5 s), after which the receiver closes it.
pub const STREAM_IDLE_TIMEOUT_MS: u64 = 5_000;
/// Connections one sender sets up at once: the agent's `MAX_TCP_SENDS`
/// (32); a send beyond it is dropped (`tcp-sends-full`).
pub const MAX_STREAMS_IN_FLIGHT: usize = 32;
/// Most retransmissions of one segment before the stream is given up
/// (Linux's `tcp_retries2` is 15; the idle timeout cuts far earlier, this
/// only bounds the loop at loss rates close to 1).
pub const MAX_SEGMENT_RETRIES: u32 = 15;

/// Statistical behaviour of every link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetConfig {
    /// Smallest one-way latency, ms.
    pub min_latency_ms: u64,
    /// Largest one-way latency, ms.
    pub max_latency_ms: u64,
    /// Probability that a datagram (or a stream's segment) is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a datagram gets up to [`REORDER_EXTRA_MS`] extra delay.
    pub reorder: f64,
    /// Each node's uplink bandwidth, bits per second (0: unlimited).
    pub bandwidth_bps: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            min_latency_ms: DEFAULT_MIN_LATENCY_MS,
            max_latency_ms: DEFAULT_MAX_LATENCY_MS,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            bandwidth_bps: DEFAULT_BANDWIDTH_BPS,
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
    /// Messages dropped (loss, fault, oversize, unknown address, a stream
    /// that failed or was cut).
    pub dropped: u64,
    /// Datagrams delivered twice.
    pub duplicated: u64,
    /// Messages sent as streams.
    pub streams: u64,
    /// Payload bytes sent as streams.
    pub stream_bytes: u64,
    /// Streams that never arrived (connect or idle timeout, too many in
    /// flight, cut by a fault or a crash).
    pub streams_failed: u64,
    /// Stream segments (and SYN/SYN-ACKs) retransmitted after a loss.
    pub retransmissions: u64,
}

/// The fate of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// Delays (ms from now) of its deliveries: none when dropped, two
    /// when a datagram is duplicated.
    pub delays: Vec<u64>,
    /// Whether it travels as a stream (cut if a fault or a crash comes
    /// before it arrives).
    pub stream: bool,
}

/// Per-node transport state.
#[derive(Clone, Debug, Default)]
struct Uplink {
    /// When (µs) the uplink has sent everything queued on it.
    busy_until_us: u64,
    /// When (µs) it has sent the datagrams queued on it (they go ahead of
    /// the streams' backlog: flow queuing).
    datagrams_until_us: u64,
    /// When (ms) each connection being set up is up (or given up).
    connecting: Vec<u64>,
}

/// The network: configuration, faults, counters and each node's uplink.
#[derive(Clone, Debug, Default)]
pub struct Network {
    /// Link behaviour.
    pub config: NetConfig,
    /// Faults in force.
    pub faults: Faults,
    /// Counters since the start (or the last reset).
    pub stats: NetStats,
    uplinks: Vec<Uplink>,
}

/// Microseconds `bytes` take on an uplink of `bps` bits per second.
fn transmit_us(bytes: usize, bps: u64) -> u64 {
    if bps == 0 {
        return 0;
    }
    let bits = (bytes as u128).saturating_mul(8).saturating_mul(1_000_000);
    u64::try_from(bits.div_ceil(u128::from(bps))).unwrap_or(u64::MAX)
}

impl Network {
    /// A healthy network with `config`, nothing sent yet.
    pub fn new(config: NetConfig) -> Network {
        Network {
            config,
            ..Network::default()
        }
    }

    fn uplink(&mut self, node: usize) -> &mut Uplink {
        if self.uplinks.len() <= node {
            self.uplinks.resize_with(node + 1, Uplink::default);
        }
        &mut self.uplinks[node]
    }

    /// Reserves `bytes` on `from`'s uplink at `now_ms`; returns when (µs)
    /// the reservation starts.
    fn reserve(&mut self, now_ms: u64, from: usize, bytes: usize) -> u64 {
        let bps = self.config.bandwidth_bps;
        let up = self.uplink(from);
        let start = up.busy_until_us.max(now_ms.saturating_mul(1000));
        up.busy_until_us = start.saturating_add(transmit_us(bytes, bps));
        start
    }

    /// Reserves `bytes` of a datagram on `from`'s uplink at `now_ms`:
    /// behind earlier datagrams only, and taken from the streams' time.
    /// Returns when (µs) it starts.
    fn reserve_datagram(&mut self, now_ms: u64, from: usize, bytes: usize) -> u64 {
        let t = transmit_us(bytes, self.config.bandwidth_bps);
        let up = self.uplink(from);
        let start = up.datagrams_until_us.max(now_ms.saturating_mul(1000));
        up.datagrams_until_us = start.saturating_add(t);
        up.busy_until_us = up
            .busy_until_us
            .max(now_ms.saturating_mul(1000))
            .saturating_add(t);
        start
    }

    fn latency(&self, rng: &mut SimRng) -> u64 {
        rng.range_inclusive(self.config.min_latency_ms, self.config.max_latency_ms)
    }

    /// Consecutive losses of one transmission before it gets through
    /// (`None`: more than `max`).
    fn losses(&mut self, rng: &mut SimRng, max: u32) -> Option<u32> {
        let mut k = 0;
        while rng.chance(self.config.loss) {
            k += 1;
            if k > max {
                return None;
            }
        }
        self.stats.retransmissions += u64::from(k);
        Some(k)
    }

    /// Decides the fate of one message of `len` bytes from `from` to `to`
    /// sent at `now_ms`: how it travels and the delays of its deliveries.
    pub fn route(
        &mut self,
        rng: &mut SimRng,
        now_ms: u64,
        from: usize,
        to: usize,
        len: usize,
    ) -> Route {
        self.stats.messages += 1;
        self.stats.bytes += len as u64;
        match Transport::for_len(len) {
            Transport::Datagram => Route {
                delays: self.datagram(rng, now_ms, from, to, len),
                stream: false,
            },
            Transport::Stream => {
                self.stats.streams += 1;
                self.stats.stream_bytes += len as u64;
                let delay = self.stream(rng, now_ms, from, to, len);
                if delay.is_none() {
                    self.stats.dropped += 1;
                    self.stats.streams_failed += 1;
                }
                Route {
                    delays: delay.into_iter().collect(),
                    stream: true,
                }
            }
        }
    }

    fn datagram(
        &mut self,
        rng: &mut SimRng,
        now_ms: u64,
        from: usize,
        to: usize,
        len: usize,
    ) -> Vec<u64> {
        debug_assert!(len <= MAX_DATAGRAM_BYTES);
        // Draw every random value whatever the outcome, so that a fault
        // does not shift the random stream of unrelated messages.
        let lost = rng.chance(self.config.loss);
        let twice = rng.chance(self.config.duplicate);
        let mut delays = Vec::with_capacity(2);
        for _ in 0..2 {
            let mut delay = self.latency(rng);
            if rng.chance(self.config.reorder) {
                delay += rng.range_inclusive(1, REORDER_EXTRA_MS);
            }
            delays.push(delay);
        }
        if lost || self.faults.drops(from, to) {
            self.stats.dropped += 1;
            return Vec::new();
        }
        // On the wire after the datagrams queued before it.
        let start = self.reserve_datagram(now_ms, from, len);
        let sent = (start + transmit_us(len, self.config.bandwidth_bps)).div_ceil(1000);
        let wait = sent.saturating_sub(now_ms);
        if twice {
            self.stats.duplicated += 1;
        } else {
            delays.truncate(1);
        }
        delays.iter().map(|d| d + wait).collect()
    }

    /// The delay until a stream arrives whole, or `None` when it fails.
    fn stream(
        &mut self,
        rng: &mut SimRng,
        now_ms: u64,
        from: usize,
        to: usize,
        len: usize,
    ) -> Option<u64> {
        if len > MAX_MESSAGE_BYTES || self.faults.drops(from, to) {
            return None;
        }
        let connecting = {
            let up = self.uplink(from);
            up.connecting.retain(|&t| t > now_ms);
            up.connecting.len()
        };
        if connecting >= MAX_STREAMS_IN_FLIGHT {
            return None;
        }
        // Handshake: SYN then SYN-ACK, each retried after SYN_RTO_MS,
        // doubling; the agent gives up after STREAM_CONNECT_TIMEOUT_MS.
        let mut up_at = 0u64;
        for _ in 0..2 {
            let k = self.losses(rng, MAX_SEGMENT_RETRIES)?;
            up_at += SYN_RTO_MS * ((1u64 << k) - 1) + self.latency(rng);
        }
        let gave_up = up_at > STREAM_CONNECT_TIMEOUT_MS;
        self.uplink(from)
            .connecting
            .push(now_ms + up_at.min(STREAM_CONNECT_TIMEOUT_MS));
        if gave_up {
            return None;
        }
        // Data: every segment through the uplink, then the path; a lost
        // segment waits DATA_RTO_MS (doubling) and is sent again. The
        // frame is whole when its last segment is in.
        let start_us = self
            .reserve(now_ms, from, len)
            .max((now_ms + up_at).saturating_mul(1000));
        let one_way = self.latency(rng);
        let bps = self.config.bandwidth_bps;
        let mut done_us = start_us;
        let segments = stream_segments(len);
        for s in 0..segments {
            let sent = ((s + 1) * STREAM_SEGMENT_BYTES).min(len);
            let k = self.losses(rng, MAX_SEGMENT_RETRIES)?;
            let at = start_us
                + transmit_us(sent, bps)
                + (DATA_RTO_MS * ((1u64 << k) - 1) + one_way) * 1000;
            done_us = done_us.max(at);
        }
        let connected_us = (now_ms + up_at) * 1000;
        if done_us.saturating_sub(connected_us) > STREAM_IDLE_TIMEOUT_MS * 1000 {
            return None;
        }
        Some(done_us.div_ceil(1000).saturating_sub(now_ms).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(loss: f64, bandwidth_bps: u64) -> Network {
        Network {
            config: NetConfig {
                loss,
                bandwidth_bps,
                ..NetConfig::default()
            },
            ..Network::default()
        }
    }

    #[test]
    fn small_messages_are_datagrams_and_large_ones_streams() {
        let mut n = net(0.0, DEFAULT_BANDWIDTH_BPS);
        let mut rng = SimRng::new(1);
        let r = n.route(&mut rng, 0, 0, 1, MAX_DATAGRAM_BYTES);
        assert!(!r.stream);
        assert_eq!(r.delays.len(), 1);
        let r = n.route(&mut rng, 0, 0, 1, MAX_DATAGRAM_BYTES + 1);
        assert!(r.stream);
        assert_eq!(n.stats.streams, 1);
        // A handshake and a one-way trip: at least three latencies.
        assert!(r.delays[0] >= 3 * DEFAULT_MIN_LATENCY_MS);
    }

    #[test]
    fn the_uplink_delays_streams_behind_a_large_message_but_not_datagrams() {
        // 1 Mbit/s: 50 000 bytes take 400 ms.
        let mut n = net(0.0, 1_000_000);
        let mut rng = SimRng::new(1);
        let big = n.route(&mut rng, 0, 0, 1, 50_000);
        assert!(big.delays[0] >= 400, "{big:?}");
        // Another stream waits for the first one's backlog.
        let next = n.route(&mut rng, 0, 0, 2, 20_000);
        assert!(next.delays[0] >= 400 + 160, "{next:?}");
        // A datagram (a probe, an ack) goes ahead of the backlog, as flow
        // queuing serves it, and waits only for the datagrams before it.
        let small = n.route(&mut rng, 0, 0, 2, 100);
        assert!(small.delays[0] <= DEFAULT_MAX_LATENCY_MS + 2, "{small:?}");
        let burst: Vec<u64> = (0..10)
            .map(|_| n.route(&mut rng, 0, 0, 2, 1_250).delays[0])
            .collect();
        // 1 250 bytes take 10 ms: the tenth waits for nine before it.
        assert!(burst[9] >= 90, "{burst:?}");
        // Datagrams take their time from the streams: a stream sent now
        // starts after the backlog plus the datagrams' 100.8 ms.
        let after = n.route(&mut rng, 0, 0, 1, 1_500);
        assert!(after.delays[0] >= 400 + 160 + 100, "{after:?}");
        // Another sender's uplink is free.
        let other = n.route(&mut rng, 0, 3, 2, 100);
        assert!(other.delays[0] <= DEFAULT_MAX_LATENCY_MS + 1, "{other:?}");
    }

    #[test]
    fn streams_pay_for_loss_with_retransmission_timeouts_not_loss() {
        let mut n = net(0.3, DEFAULT_BANDWIDTH_BPS);
        let mut rng = SimRng::new(7);
        let (mut arrived, mut slow) = (0, 0);
        for i in 0..200 {
            let r = n.route(&mut rng, i * 10_000, 0, 1, 20_000);
            if let Some(&d) = r.delays.first() {
                arrived += 1;
                if d >= DATA_RTO_MS {
                    slow += 1;
                }
            }
        }
        // Most arrive: about 78 % get their handshake through within the
        // connect timeout at 30 % loss (SYN and SYN-ACK both first time,
        // or one of them once retried after 1 s); nearly all of those
        // wait for at least one retransmission timeout.
        assert!(arrived > 130, "{arrived}");
        assert!(slow * 10 > arrived * 9, "{slow} of {arrived}");
        assert!(n.stats.retransmissions > 0);
    }

    #[test]
    fn total_loss_fails_every_stream_and_faults_cut_them() {
        let mut n = net(1.0, DEFAULT_BANDWIDTH_BPS);
        let mut rng = SimRng::new(1);
        assert!(n.route(&mut rng, 0, 0, 1, 5_000).delays.is_empty());
        let mut n = net(0.0, DEFAULT_BANDWIDTH_BPS);
        n.faults.isolated.insert(1);
        assert!(n.route(&mut rng, 0, 0, 1, 5_000).delays.is_empty());
        assert_eq!(n.stats.streams_failed, 1);
    }

    #[test]
    fn a_sender_sets_up_a_bounded_number_of_connections_at_once() {
        let mut n = net(0.0, DEFAULT_BANDWIDTH_BPS);
        let mut rng = SimRng::new(1);
        let sent: usize = (0..MAX_STREAMS_IN_FLIGHT + 5)
            .filter(|_| !n.route(&mut rng, 0, 0, 1, 5_000).delays.is_empty())
            .count();
        assert_eq!(sent, MAX_STREAMS_IN_FLIGHT);
        // Later, the connections are up and new ones may start.
        assert!(!n.route(&mut rng, 1_000, 0, 1, 5_000).delays.is_empty());
    }
}
