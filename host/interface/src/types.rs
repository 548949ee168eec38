//! Rust mirrors of the types in `wit/control.wit`.

use serde::{Deserialize, Serialize};

/// Stable, self-asserted identity of a node.
pub type NodeId = String;

/// A control-channel address, `ip:port`.
pub type Address = String;

/// Key/value metadata a node offers to its peers.
pub type Metadata = Vec<(String, String)>;

/// The state of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// Reachable, or no evidence to the contrary.
    Alive,
    /// Some node failed to reach it; not a verdict.
    Suspect,
    /// Declared failed under the time and quorum rules.
    Dead,
    /// Left gracefully (authored by the member itself).
    Left,
}

impl PeerState {
    /// The lowercase name used in WIT, JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Alive => "alive",
            PeerState::Suspect => "suspect",
            PeerState::Dead => "dead",
            PeerState::Left => "left",
        }
    }
}

impl std::fmt::Display for PeerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PeerState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "alive" => Ok(PeerState::Alive),
            "suspect" => Ok(PeerState::Suspect),
            "dead" => Ok(PeerState::Dead),
            "left" => Ok(PeerState::Left),
            other => Err(format!(
                "unknown peer state {other:?} (expected alive, suspect, dead or left)"
            )),
        }
    }
}

/// One member of a membership view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's stable identity.
    pub id: NodeId,
    /// Its last known control-channel address.
    pub address: Address,
    /// Its state as this node sees it.
    pub state: PeerState,
    /// Its incarnation.
    pub incarnation: u64,
    /// The metadata it offers.
    pub metadata: Metadata,
}

impl Member {
    /// The value of one metadata key, if present.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A node's membership view.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipView {
    /// Rises by exactly one with every update; 0 until the first update.
    pub version: u64,
    /// The members, sorted by id.
    pub members: Vec<Member>,
}

impl MembershipView {
    /// The member with this id, if any.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// How many members are in each state: (alive, suspect, dead, left).
    pub fn counts(&self) -> StateCounts {
        let mut counts = StateCounts::default();
        for m in &self.members {
            match m.state {
                PeerState::Alive => counts.alive += 1,
                PeerState::Suspect => counts.suspect += 1,
                PeerState::Dead => counts.dead += 1,
                PeerState::Left => counts.left += 1,
            }
        }
        counts
    }
}

/// Number of members in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// Members `alive`.
    pub alive: usize,
    /// Members `suspect`.
    pub suspect: usize,
    /// Members `dead`.
    pub dead: usize,
    /// Members `left`.
    pub left: usize,
}

/// Why a membership update happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateCause {
    /// A member appeared for the first time.
    Joined,
    /// A suspicion was raised.
    Suspected,
    /// The member refuted a suspicion.
    Refuted,
    /// The death rule was met.
    ConfirmedDead,
    /// A dead member came back with a higher incarnation.
    Recovered,
    /// The member left gracefully.
    Left,
    /// Address or metadata changed (also: the difference applied by a hot
    /// swap of the control-plane component).
    Changed,
}

/// One change of one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipUpdate {
    /// The member concerned.
    pub peer: NodeId,
    /// Its state before; `None` when it was not a member.
    pub previous: Option<PeerState>,
    /// The member after the change.
    pub current: Member,
    /// Why the change happened.
    pub cause: UpdateCause,
    /// Hex id of the ledger entry behind the change, where there is one.
    pub entry: Option<String>,
    /// The view version after this update.
    pub version: u64,
}

/// Errors of the control-plane operations (the WIT `error` variant plus
/// `Unavailable` for failures of the host around the component).
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
