//! Conversions between the WIT bindings and the shared types of
//! `nodeplane-types`: the one place where the runtime touches both.

use nodeplane_types as api;

use crate::bindings::nodeplane::control::types as wit;

pub fn state_to_wit(state: api::PeerState) -> wit::PeerState {
    match state {
        api::PeerState::Alive => wit::PeerState::Alive,
        api::PeerState::Suspect => wit::PeerState::Suspect,
        api::PeerState::Dead => wit::PeerState::Dead,
        api::PeerState::Left => wit::PeerState::Left,
    }
}

pub fn state_from_wit(state: wit::PeerState) -> api::PeerState {
    match state {
        wit::PeerState::Alive => api::PeerState::Alive,
        wit::PeerState::Suspect => api::PeerState::Suspect,
        wit::PeerState::Dead => api::PeerState::Dead,
        wit::PeerState::Left => api::PeerState::Left,
    }
}

pub fn member_from_wit(m: wit::Member) -> api::Member {
    api::Member {
        id: m.id,
        address: m.address,
        state: state_from_wit(m.state),
        incarnation: m.incarnation,
        metadata: m.metadata,
    }
}

pub fn view_from_wit(v: wit::MembershipView) -> api::MembershipView {
    api::MembershipView {
        version: v.version,
        members: v.members.into_iter().map(member_from_wit).collect(),
    }
}

pub fn cause_from_wit(c: wit::UpdateCause) -> api::UpdateCause {
    match c {
        wit::UpdateCause::Joined => api::UpdateCause::Joined,
        wit::UpdateCause::Suspected => api::UpdateCause::Suspected,
        wit::UpdateCause::Refuted => api::UpdateCause::Refuted,
        wit::UpdateCause::ConfirmedDead => api::UpdateCause::ConfirmedDead,
        wit::UpdateCause::Recovered => api::UpdateCause::Recovered,
        wit::UpdateCause::Left => api::UpdateCause::Left,
        wit::UpdateCause::Changed => api::UpdateCause::Changed,
    }
}

pub fn update_from_wit(u: wit::MembershipUpdate) -> api::MembershipUpdate {
    api::MembershipUpdate {
        peer: u.peer,
        previous: u.previous.map(state_from_wit),
        current: member_from_wit(u.current),
        cause: cause_from_wit(u.cause),
        entry: u.entry,
        version: u.version,
    }
}

pub fn error_from_wit(e: wit::Error) -> api::ControlError {
    match e {
        wit::Error::NotJoined => api::ControlError::NotJoined,
        wit::Error::HasLeft => api::ControlError::HasLeft,
        wit::Error::InvalidAddress(a) => api::ControlError::InvalidAddress(a),
        wit::Error::UnknownPeer(p) => api::ControlError::UnknownPeer(p),
        wit::Error::InvalidReport(r) => api::ControlError::InvalidReport(r),
        wit::Error::InvalidSubscriber(s) => api::ControlError::InvalidSubscriber(s),
        wit::Error::InvalidConfig(c) => api::ControlError::InvalidConfig(c),
        wit::Error::BadMessage(m) => api::ControlError::BadMessage(m),
        wit::Error::CorruptLedger(c) => api::ControlError::CorruptLedger(c),
        wit::Error::Internal(i) => api::ControlError::Internal(i),
    }
}

/// The configuration a host hands to `driver.init`.
impl From<&api::NodeConfig> for wit::NodeConfig {
    fn from(config: &api::NodeConfig) -> wit::NodeConfig {
        let t = &config.tunables;
        wit::NodeConfig {
            node_id: config.node_id.clone(),
            address: config.address.clone(),
            metadata: config.metadata.clone(),
            tunables: wit::Tunables {
                probe_interval_ms: t.probe_interval_ms,
                probe_timeout_ms: t.probe_timeout_ms,
                indirect_probes: t.indirect_probes,
                suspicion_multiplier: t.suspicion_multiplier,
                death_quorum: t.death_quorum,
                anti_entropy_interval_ms: t.anti_entropy_interval_ms,
                retransmit_multiplier: t.retransmit_multiplier,
            },
        }
    }
}

pub fn entry_to_wit(e: &nodeplane_entry::Entry) -> wit::LedgerEntry {
    wit::LedgerEntry {
        author: e.author.clone(),
        seq: e.seq,
        prev: e.prev.to_vec(),
        clock: e.clock,
        kind: e.kind.clone(),
        body: e.body.clone(),
        id: e.id.to_vec(),
        signature: e.signature.clone(),
    }
}

/// [`entry_to_wit`] of an entry the caller owns: its strings and bytes
/// move instead of being copied (`ledger-store.get` answers copies of
/// stored entries).
pub fn entry_into_wit(e: nodeplane_entry::Entry) -> wit::LedgerEntry {
    wit::LedgerEntry {
        author: e.author,
        seq: e.seq,
        prev: e.prev.to_vec(),
        clock: e.clock,
        kind: e.kind,
        body: e.body,
        id: e.id.to_vec(),
        signature: e.signature,
    }
}

/// Converts and verifies an entry handed over by a guest.
pub fn entry_from_wit(e: wit::LedgerEntry) -> Result<nodeplane_entry::Entry, String> {
    use nodeplane_entry::hash_from_slice;
    let prev = hash_from_slice(&e.prev).ok_or_else(|| {
        format!(
            "entry {}#{}: prev is {} bytes, expected 32",
            e.author,
            e.seq,
            e.prev.len()
        )
    })?;
    let id = hash_from_slice(&e.id).ok_or_else(|| {
        format!(
            "entry {}#{}: id is {} bytes, expected 32",
            e.author,
            e.seq,
            e.id.len()
        )
    })?;
    let entry = nodeplane_entry::Entry {
        author: e.author,
        seq: e.seq,
        prev,
        clock: e.clock,
        kind: e.kind,
        body: e.body,
        id,
        signature: e.signature,
    };
    entry.verify().map_err(|err| err.to_string())?;
    Ok(entry)
}
