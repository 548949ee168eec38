//! The state of a member.

use serde::{Deserialize, Serialize};

/// The state of a member, as in WIT (`peer-state`), JSON and logs.
///
/// The derived order (`alive < suspect < dead < left`) is also the
/// tie-break [`precedence`](PeerState::precedence) at equal incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// Reachable, or no evidence to the contrary.
    Alive,
    /// Some node failed to reach it; not a verdict.
    Suspect,
    /// Declared failed under the time and quorum rules (the death rule).
    Dead,
    /// Left gracefully (authored by the member itself).
    Left,
}

impl PeerState {
    /// Every state, in precedence order.
    pub const ALL: [PeerState; 4] = [
        PeerState::Alive,
        PeerState::Suspect,
        PeerState::Dead,
        PeerState::Left,
    ];

    /// The lowercase name used in WIT, JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Alive => "alive",
            PeerState::Suspect => "suspect",
            PeerState::Dead => "dead",
            PeerState::Left => "left",
        }
    }

    /// Tie-break precedence at equal incarnation: left > dead > suspect >
    /// alive. It is the declaration order, so a new state is ranked by where
    /// it is declared; it also indexes per-state tables (0..[`Self::ALL`]`.len()`).
    pub fn precedence(self) -> u8 {
        self as u8
    }

    /// Whether the member counts towards quorums and is probed.
    pub fn is_live(self) -> bool {
        matches!(self, PeerState::Alive | PeerState::Suspect)
    }
}

impl std::fmt::Display for PeerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a peer state (see [`PeerState`]'s `FromStr`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown peer state {0:?} (expected alive, suspect, dead or left)")]
pub struct UnknownPeerState(pub String);

impl std::str::FromStr for PeerState {
    type Err = UnknownPeerState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PeerState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownPeerState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in PeerState::ALL {
            assert_eq!(state.as_str().parse::<PeerState>(), Ok(state));
            assert_eq!(state.to_string(), state.as_str());
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
        }
        let err = "gone".parse::<PeerState>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown peer state \"gone\" (expected alive, suspect, dead or left)"
        );
    }

    #[test]
    fn precedence_follows_the_order() {
        for pair in PeerState::ALL.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].precedence() < pair[1].precedence());
        }
        assert!(PeerState::Alive.is_live() && PeerState::Suspect.is_live());
        assert!(!PeerState::Dead.is_live() && !PeerState::Left.is_live());
    }
}
