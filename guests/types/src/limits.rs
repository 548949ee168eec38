//! Bounds shared by every control plane and every host.

/// Largest wire message a component may send or accept, in bytes. The
/// host drops a larger outgoing message with a logged reason, and the
/// agent's framing refuses a larger frame: a UDP datagram must fit, with
/// headroom.
pub const MAX_MESSAGE_BYTES: usize = 60_000;

/// Most conflicting entries (equivocation evidence) kept per author, by the
/// node plane's ledger and by the agent's store alike. Evidence proves an
/// equivocation with one conflicting entry; a few more show its extent.
/// Without a cap, anyone could grow every node's memory and disk by
/// writing new conflicting entries under any author's name.
pub const MAX_EQUIVOCATIONS_PER_AUTHOR: usize = 8;
