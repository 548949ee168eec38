//! Errors of the node plane's operations.

/// Why an operation failed. Every message names what to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The operation needs a joined node.
    #[error("not joined: call join first")]
    NotJoined,
    /// The node has left; it accepts no further changes.
    #[error("this node has left the cluster and accepts no further changes")]
    HasLeft,
    /// An address could not be parsed as `ip:port`.
    #[error("invalid address {0:?}: expected ip:port (IPv4 or bracketed IPv6)")]
    InvalidAddress(String),
    /// No member with this id is known.
    #[error("unknown peer {0:?}")]
    UnknownPeer(String),
    /// The report is not allowed.
    #[error("invalid report: {0}")]
    InvalidReport(String),
    /// The configuration is invalid (names the setting).
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A network message was malformed, oversized or of an unknown version.
    #[error("bad message: {0}")]
    BadMessage(String),
    /// Stored ledger entries failed verification (names the entry).
    #[error("corrupt ledger: {0}")]
    CorruptLedger(String),
}
