//! Which messages travel as datagrams and which as streams: the one
//! decision the agent (`host/agent`, when it sends) and the simulator
//! (`host/sim`, when it models the network) share, so that a figure the
//! simulator measures holds for the agent's network.
//!
//! A message of at most [`MAX_DATAGRAM_BYTES`] payload bytes goes as one
//! UDP datagram: lost or delivered whole, no retransmission. A larger one
//! goes over a stream (TCP): reliable and ordered, cut into segments of
//! [`STREAM_SEGMENT_BYTES`], each of which a lossy path may make wait for a
//! retransmission timeout.

/// Largest payload sent as one datagram. 1 400 bytes fits a 1 500-byte
/// Ethernet MTU with the IPv6 (40) and UDP (8) headers, the agent's
/// version byte and the sealing overhead of an authenticated cipher,
/// without IP fragmentation (a lost fragment loses the whole datagram).
/// It is also the packet size the peers in `docs/scenarios.md` were
/// measured with.
pub const MAX_DATAGRAM_BYTES: usize = 1_400;

/// Payload bytes per stream segment, for the simulator's cost model: the
/// same 1 400 bytes (a TCP segment on a 1 500-byte MTU path carries about
/// as much), so one lost segment of a stream costs what one lost datagram
/// carries.
pub const STREAM_SEGMENT_BYTES: usize = MAX_DATAGRAM_BYTES;

/// How one message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// One datagram: one loss draw, no retransmission, no ordering.
    Datagram,
    /// A stream connection: reliable, ordered, segmented.
    Stream,
}

impl Transport {
    /// How a message of `payload_len` bytes travels.
    pub const fn for_len(payload_len: usize) -> Transport {
        if payload_len <= MAX_DATAGRAM_BYTES {
            Transport::Datagram
        } else {
            Transport::Stream
        }
    }

    /// Whether it is [`Transport::Datagram`].
    pub const fn is_datagram(self) -> bool {
        matches!(self, Transport::Datagram)
    }
}

/// Segments a stream of `payload_len` bytes takes (at least one).
pub const fn stream_segments(payload_len: usize) -> usize {
    let n = payload_len.div_ceil(STREAM_SEGMENT_BYTES);
    if n == 0 {
        1
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boundary_is_inclusive_for_datagrams() {
        assert_eq!(Transport::for_len(0), Transport::Datagram);
        assert_eq!(Transport::for_len(MAX_DATAGRAM_BYTES), Transport::Datagram);
        assert_eq!(
            Transport::for_len(MAX_DATAGRAM_BYTES + 1),
            Transport::Stream
        );
        assert_eq!(Transport::for_len(usize::MAX), Transport::Stream);
    }

    #[test]
    fn segments_round_up() {
        assert_eq!(stream_segments(0), 1);
        assert_eq!(stream_segments(1), 1);
        assert_eq!(stream_segments(STREAM_SEGMENT_BYTES), 1);
        assert_eq!(stream_segments(STREAM_SEGMENT_BYTES + 1), 2);
        assert_eq!(stream_segments(60_000), 43);
        assert!(stream_segments(usize::MAX) > 0);
    }
}
