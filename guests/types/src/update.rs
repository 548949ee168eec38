//! One change of one member, and why it happened.

use serde::{Deserialize, Serialize};

use crate::member::{Member, NodeId};
use crate::state::PeerState;

/// Why a membership update happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateCause {
    /// A member appeared for the first time.
    Joined,
    /// A suspicion was raised.
    Suspected,
    /// The member refuted a suspicion with a higher incarnation.
    Refuted,
    /// The death rule was met.
    ConfirmedDead,
    /// A dead member came back with a higher incarnation.
    Recovered,
    /// The member left gracefully.
    Left,
    /// Address, metadata or incarnation changed without a state change
    /// (also: the difference applied by a hot swap of the control-plane
    /// component).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ControlError, MembershipView};

    fn member() -> Member {
        Member {
            id: "n1".into(),
            address: "10.0.0.1:7946".into(),
            state: PeerState::Suspect,
            incarnation: 3,
            metadata: vec![("overlay-ip".into(), "10.1.0.1".into())],
        }
    }

    /// The JSON of the compatibility API and the agent's event log.
    #[test]
    fn serde_representation_is_pinned() {
        let update = MembershipUpdate {
            peer: "n1".into(),
            previous: Some(PeerState::Alive),
            current: member(),
            cause: UpdateCause::ConfirmedDead,
            entry: None,
            version: 7,
        };
        assert_eq!(
            serde_json::to_string(&update).unwrap(),
            r#"{"peer":"n1","previous":"alive","current":{"id":"n1","address":"10.0.0.1:7946","state":"suspect","incarnation":3,"metadata":[["overlay-ip","10.1.0.1"]]},"cause":"confirmed-dead","entry":null,"version":7}"#
        );
        let view = MembershipView {
            version: 2,
            members: vec![member()],
        };
        let json = serde_json::to_string(&view).unwrap();
        assert!(json.starts_with(r#"{"version":2,"members":[{"id":"n1""#));
        assert_eq!(serde_json::from_str::<MembershipView>(&json).unwrap(), view);
        assert_eq!(
            serde_json::to_string(&view.counts()).unwrap(),
            r#"{"alive":0,"suspect":1,"dead":0,"left":0}"#
        );
        assert_eq!(
            serde_json::to_string(&ControlError::UnknownPeer("x".into())).unwrap(),
            r#"{"error":"unknown-peer","detail":"x"}"#
        );
        assert_eq!(
            serde_json::to_string(&ControlError::NotJoined).unwrap(),
            r#"{"error":"not-joined"}"#
        );
        assert_eq!(ControlError::NotJoined.kind(), "not-joined");
    }
}
