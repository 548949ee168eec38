//! Conversions between the WIT bindings and the shared vocabulary
//! (`nodeplane-types`, re-exported by `nodeplane-core`): the one place where
//! WIT-generated types meet the core's.

use crate::bindings::nodeplane::control::types;
use nodeplane_core::{
    Entry, Error, Member, MembershipUpdate, MembershipView, NodeConfig, PeerState, Tunables,
    UpdateCause,
};

pub fn state_to_wit(state: PeerState) -> types::PeerState {
    match state {
        PeerState::Alive => types::PeerState::Alive,
        PeerState::Suspect => types::PeerState::Suspect,
        PeerState::Dead => types::PeerState::Dead,
        PeerState::Left => types::PeerState::Left,
    }
}

pub fn state_from_wit(state: types::PeerState) -> PeerState {
    match state {
        types::PeerState::Alive => PeerState::Alive,
        types::PeerState::Suspect => PeerState::Suspect,
        types::PeerState::Dead => PeerState::Dead,
        types::PeerState::Left => PeerState::Left,
    }
}

pub fn member_to_wit(m: &Member) -> types::Member {
    types::Member {
        id: m.id.clone(),
        address: m.address.clone(),
        state: state_to_wit(m.state),
        incarnation: m.incarnation,
        metadata: m.metadata.clone(),
    }
}

pub fn view_to_wit(v: &MembershipView) -> types::MembershipView {
    types::MembershipView {
        version: v.version,
        members: v.members.iter().map(member_to_wit).collect(),
    }
}

pub fn update_to_wit(u: &MembershipUpdate) -> types::MembershipUpdate {
    types::MembershipUpdate {
        peer: u.peer.clone(),
        previous: u.previous.map(state_to_wit),
        current: member_to_wit(&u.current),
        cause: match u.cause {
            UpdateCause::Joined => types::UpdateCause::Joined,
            UpdateCause::Suspected => types::UpdateCause::Suspected,
            UpdateCause::Refuted => types::UpdateCause::Refuted,
            UpdateCause::ConfirmedDead => types::UpdateCause::ConfirmedDead,
            UpdateCause::Recovered => types::UpdateCause::Recovered,
            UpdateCause::Left => types::UpdateCause::Left,
            UpdateCause::Changed => types::UpdateCause::Changed,
        },
        entry: u.entry.clone(),
        version: u.version,
    }
}

pub fn error_to_wit(e: Error) -> types::Error {
    match e {
        Error::NotJoined => types::Error::NotJoined,
        Error::HasLeft => types::Error::HasLeft,
        Error::InvalidAddress(a) => types::Error::InvalidAddress(a),
        Error::UnknownPeer(p) => types::Error::UnknownPeer(p),
        Error::InvalidReport(r) => types::Error::InvalidReport(r),
        Error::InvalidConfig(c) => types::Error::InvalidConfig(c),
        Error::BadMessage(m) => types::Error::BadMessage(m),
        Error::CorruptLedger(c) => types::Error::CorruptLedger(c),
    }
}

/// The configuration as passed to `init`; the core fills in the
/// tunables' defaults when it validates it.
pub fn config_from_wit(c: types::NodeConfig) -> NodeConfig {
    let t = c.tunables;
    NodeConfig {
        node_id: c.node_id,
        address: c.address,
        metadata: c.metadata,
        tunables: Tunables {
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

pub fn entry_to_wit(e: &Entry) -> types::LedgerEntry {
    types::LedgerEntry {
        author: e.author.clone(),
        seq: e.seq,
        prev: e.prev.to_vec(),
        clock: e.clock,
        kind: e.kind.clone(),
        body: e.body.clone(),
        id: e.id.to_vec(),
    }
}

pub fn entry_from_wit(e: types::LedgerEntry) -> Result<Entry, String> {
    let prev = e.prev.as_slice().try_into().map_err(|_| {
        format!(
            "entry {}#{}: prev is {} bytes, expected 32",
            e.author,
            e.seq,
            e.prev.len()
        )
    })?;
    let id = e.id.as_slice().try_into().map_err(|_| {
        format!(
            "entry {}#{}: id is {} bytes, expected 32",
            e.author,
            e.seq,
            e.id.len()
        )
    })?;
    Ok(Entry {
        author: e.author,
        seq: e.seq,
        prev,
        clock: e.clock,
        kind: e.kind,
        body: e.body,
        id,
    })
}
