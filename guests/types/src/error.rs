//! The errors of the control-plane operations.

use serde::{Deserialize, Serialize};

/// Errors of the control-plane operations: the WIT `error` variant plus
/// [`Unavailable`](ControlError::Unavailable) for failures of the host
/// around the component.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", content = "detail", rename_all = "kebab-case")]
pub enum ControlError {
    /// The operation needs a joined node.
    #[error("not joined: call join first")]
    NotJoined,
    /// The node has left.
    #[error("the node has left the cluster")]
    HasLeft,
    /// An address could not be parsed.
    #[error("invalid address {0:?}: expected ip:port")]
    InvalidAddress(String),
    /// No member with this id is known.
    #[error("unknown peer {0:?}")]
    UnknownPeer(String),
    /// The report is not allowed.
    #[error("invalid report: {0}")]
    InvalidReport(String),
    /// The subscriber handle is already or not subscribed.
    #[error("invalid subscriber handle {0}")]
    InvalidSubscriber(u64),
    /// The node configuration is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A network message was rejected.
    #[error("bad message: {0}")]
    BadMessage(String),
    /// Stored ledger entries failed verification.
    #[error("corrupt ledger: {0}")]
    CorruptLedger(String),
    /// Any other failure inside the component.
    #[error("internal error: {0}")]
    Internal(String),
    /// The host could not run the call (the component trapped, ran out of
    /// fuel, is being replaced, or a remote endpoint is unreachable).
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
}

impl ControlError {
    /// The kebab-case name of the variant, as in WIT.
    pub fn kind(&self) -> &'static str {
        match self {
            ControlError::NotJoined => "not-joined",
            ControlError::HasLeft => "has-left",
            ControlError::InvalidAddress(_) => "invalid-address",
            ControlError::UnknownPeer(_) => "unknown-peer",
            ControlError::InvalidReport(_) => "invalid-report",
            ControlError::InvalidSubscriber(_) => "invalid-subscriber",
            ControlError::InvalidConfig(_) => "invalid-config",
            ControlError::BadMessage(_) => "bad-message",
            ControlError::CorruptLedger(_) => "corrupt-ledger",
            ControlError::Internal(_) => "internal",
            ControlError::Unavailable(_) => "unavailable",
        }
    }
}
