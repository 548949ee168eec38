//! Bounds shared by every control plane and every host.

/// Largest wire message a component may send or accept, in bytes. The
/// host drops a larger outgoing message with a logged reason, and the
/// agent's framing refuses a larger frame: a UDP datagram must fit, with
/// headroom.
pub const MAX_MESSAGE_BYTES: usize = 60_000;
