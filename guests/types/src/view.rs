//! A node's membership view.

use serde::{Deserialize, Serialize};

use crate::member::Member;
use crate::state::PeerState;

/// A node's membership view.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipView {
    /// Rises by exactly one with every update; 0 until the first update.
    pub version: u64,
    /// The members, sorted by id, this node included.
    pub members: Vec<Member>,
}

impl MembershipView {
    /// The member with this id, if any.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// How many members are in each state.
    pub fn counts(&self) -> StateCounts {
        let mut counts = StateCounts::default();
        for m in &self.members {
            match m.state {
                PeerState::Alive => counts.alive = counts.alive.saturating_add(1),
                PeerState::Suspect => counts.suspect = counts.suspect.saturating_add(1),
                PeerState::Dead => counts.dead = counts.dead.saturating_add(1),
                PeerState::Left => counts.left = counts.left.saturating_add(1),
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
