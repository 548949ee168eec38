//! One member of a membership view, and the names it is made of.

use serde::{Deserialize, Serialize};

use crate::state::PeerState;

/// Stable, self-asserted identity of a node: 1 to 64 bytes of
/// `[A-Za-z0-9._-]`.
pub type NodeId = String;

/// A control-channel address, `ip:port`.
pub type Address = String;

/// Key/value metadata a node offers to its peers.
pub type Metadata = Vec<(String, String)>;

/// One member of a membership view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's stable identity.
    pub id: NodeId,
    /// Its last known control-channel address.
    pub address: Address,
    /// Its state as this node sees it.
    pub state: PeerState,
    /// Its incarnation (of the winning claim, in the node plane).
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
