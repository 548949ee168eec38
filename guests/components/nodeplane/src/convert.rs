//! Conversions between the WIT bindings and the shared vocabulary
//! (`nodeplane-types`, re-exported by `nodeplane-core`): the one place where
//! WIT-generated types meet the core's. The membership types convert as
//! in every guest (`support/included/wit_convert.rs`); the node plane's
//! own (errors, configuration, ledger entries) are here.

use crate::bindings::nodeplane::control::types;
use nodeplane_core::{Entry, Error, Member, MembershipUpdate, NodeConfig, Tunables};

#[path = "../../support/included/wit_convert.rs"]
// `update_to_wit` (by reference) is the stub's: this component hands
// updates over by value (`update_into_wit`).
#[allow(dead_code)]
mod membership;
pub use membership::{state_from_wit, state_to_wit, view_to_wit};

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

/// An entry as the host's `ledger-store.append` takes it; the entry is
/// no longer needed, so its strings and bytes move rather than being
/// copied.
pub fn entry_into_wit(e: Entry) -> types::LedgerEntry {
    types::LedgerEntry {
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
        signature: e.signature,
    })
}

/// A membership update as WIT describes it (`update_to_wit` of the shared
/// conversions), for an update no longer needed: its strings move rather
/// than being copied.
pub fn update_into_wit(update: MembershipUpdate) -> types::MembershipUpdate {
    let Member {
        id,
        address,
        state,
        incarnation,
        metadata,
    } = update.current;
    types::MembershipUpdate {
        peer: update.peer,
        previous: update.previous.map(state_to_wit),
        current: types::Member {
            id,
            address,
            state: state_to_wit(state),
            incarnation,
            metadata,
        },
        cause: membership::cause_to_wit(update.cause),
        entry: update.entry,
        version: update.version,
    }
}
