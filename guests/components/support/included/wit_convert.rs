//! Conversions between the WIT bindings and the shared membership
//! vocabulary of `nodeplane-types`, written once for every guest component.
//!
//! Not a module of `guest-support`: each component generates its own
//! bindings (wit-bindgen, in `crate::bindings`), so each includes this file
//! with `#[path]` and it converts to that crate's generated types.

use crate::bindings::nodeplane::control::types;
use nodeplane_types::{Member, MembershipUpdate, MembershipView, PeerState, UpdateCause};

/// A peer state as WIT names it.
pub fn state_to_wit(state: PeerState) -> types::PeerState {
    match state {
        PeerState::Alive => types::PeerState::Alive,
        PeerState::Suspect => types::PeerState::Suspect,
        PeerState::Dead => types::PeerState::Dead,
        PeerState::Left => types::PeerState::Left,
    }
}

/// A peer state from WIT.
pub fn state_from_wit(state: types::PeerState) -> PeerState {
    match state {
        types::PeerState::Alive => PeerState::Alive,
        types::PeerState::Suspect => PeerState::Suspect,
        types::PeerState::Dead => PeerState::Dead,
        types::PeerState::Left => PeerState::Left,
    }
}

/// A member as WIT describes it.
pub fn member_to_wit(member: &Member) -> types::Member {
    types::Member {
        id: member.id.clone(),
        address: member.address.clone(),
        state: state_to_wit(member.state),
        incarnation: member.incarnation,
        metadata: member.metadata.clone(),
    }
}

/// A membership view as WIT describes it.
pub fn view_to_wit(view: &MembershipView) -> types::MembershipView {
    types::MembershipView {
        version: view.version,
        members: view.members.iter().map(member_to_wit).collect(),
    }
}

/// An update cause as WIT names it.
pub fn cause_to_wit(cause: UpdateCause) -> types::UpdateCause {
    match cause {
        UpdateCause::Joined => types::UpdateCause::Joined,
        UpdateCause::Suspected => types::UpdateCause::Suspected,
        UpdateCause::Refuted => types::UpdateCause::Refuted,
        UpdateCause::ConfirmedDead => types::UpdateCause::ConfirmedDead,
        UpdateCause::Recovered => types::UpdateCause::Recovered,
        UpdateCause::Left => types::UpdateCause::Left,
        UpdateCause::Changed => types::UpdateCause::Changed,
    }
}

/// A membership update as WIT describes it.
pub fn update_to_wit(update: &MembershipUpdate) -> types::MembershipUpdate {
    types::MembershipUpdate {
        peer: update.peer.clone(),
        previous: update.previous.map(state_to_wit),
        current: member_to_wit(&update.current),
        cause: cause_to_wit(update.cause),
        entry: update.entry.clone(),
        version: update.version,
    }
}
