//! Fault injection for tests and drills: block a peer's traffic in one or
//! both directions, or mute this node (drop all its outbound control
//! traffic while still receiving).

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

/// Which traffic a rule blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Messages from the peer.
    Inbound,
    /// Messages to the peer.
    Outbound,
    /// Both.
    Both,
}

/// Block or unblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Start dropping.
    Block,
    /// Stop dropping.
    Unblock,
}

/// The body of `POST /admin/faults`: either `peer` + `direction` +
/// `action`, or `mute` alone.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// Node id or control address of the peer.
    pub peer: Option<String>,
    /// Which traffic.
    pub direction: Option<Direction>,
    /// Block or unblock.
    pub action: Option<Action>,
    /// Mute (true) or unmute (false) this node.
    pub mute: Option<bool>,
}

/// Why a fault request is unacceptable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FaultError(pub String);

/// One peer's blocked directions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Blocked {
    /// Inbound traffic from the peer is dropped.
    pub inbound: bool,
    /// Outbound traffic to the peer is dropped.
    pub outbound: bool,
}

/// What is blocked now (the body of `GET /admin/faults`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FaultState {
    /// All outbound control traffic is dropped.
    pub mute: bool,
    /// Blocked peers (node id or address as given) and directions.
    pub blocked: BTreeMap<String, Blocked>,
}

/// The live fault rules, shared by the network tasks and the API.
#[derive(Debug, Default)]
pub struct Faults {
    state: RwLock<FaultState>,
    /// Node id → control address, refreshed from the membership view.
    book: RwLock<HashMap<String, String>>,
}

impl Faults {
    /// Applies a request; returns the new state.
    pub fn apply(&self, req: FaultRequest) -> Result<FaultState, FaultError> {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        match (req.mute, req.peer) {
            (Some(_), Some(_)) | (Some(_), None)
                if req.direction.is_some() || req.action.is_some() =>
            {
                return Err(FaultError(
                    "`mute` cannot be combined with peer, direction or action".into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(FaultError("`mute` cannot be combined with `peer`".into()))
            }
            (Some(mute), None) => state.mute = mute,
            (None, Some(peer)) => {
                let peer = peer.trim().to_string();
                if peer.is_empty() || peer.len() > 128 {
                    return Err(FaultError(
                        "`peer` must be a node id or an ip:port address".into(),
                    ));
                }
                let direction = req.direction.ok_or_else(|| {
                    FaultError("`direction` is required: inbound, outbound or both".into())
                })?;
                let action = req
                    .action
                    .ok_or_else(|| FaultError("`action` is required: block or unblock".into()))?;
                let on = action == Action::Block;
                let rule = state.blocked.entry(peer.clone()).or_default();
                if matches!(direction, Direction::Inbound | Direction::Both) {
                    rule.inbound = on;
                }
                if matches!(direction, Direction::Outbound | Direction::Both) {
                    rule.outbound = on;
                }
                if !rule.inbound && !rule.outbound {
                    state.blocked.remove(&peer);
                }
            }
            (None, None) => {
                return Err(FaultError(
                    "expected {\"peer\", \"direction\", \"action\"} or {\"mute\": true|false}"
                        .into(),
                ))
            }
        }
        Ok(state.clone())
    }

    /// The current rules.
    pub fn state(&self) -> FaultState {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the id → address book used to match rules given by id.
    pub fn set_address_book(&self, book: HashMap<String, String>) {
        *self.book.write().unwrap_or_else(|p| p.into_inner()) = book;
    }

    fn matches(&self, rule_peer: &str, addr: &str) -> bool {
        rule_peer == addr
            || self
                .book
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(rule_peer)
                .is_some_and(|a| a == addr)
    }

    /// Whether a message from `addr` must be dropped.
    pub fn blocks_inbound(&self, addr: &str) -> bool {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state
            .blocked
            .iter()
            .any(|(peer, b)| b.inbound && self.matches(peer, addr))
    }

    /// Whether a message to `addr` must be dropped (muted, or blocked).
    pub fn blocks_outbound(&self, addr: &str) -> bool {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.mute
            || state
                .blocked
                .iter()
                .any(|(peer, b)| b.outbound && self.matches(peer, addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> FaultRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn block_unblock_by_address_and_id() {
        let f = Faults::default();
        f.apply(req(
            r#"{"peer":"127.0.0.2:7001","direction":"inbound","action":"block"}"#,
        ))
        .unwrap();
        assert!(f.blocks_inbound("127.0.0.2:7001"));
        assert!(!f.blocks_outbound("127.0.0.2:7001"));
        f.apply(req(r#"{"peer":"n3","direction":"both","action":"block"}"#))
            .unwrap();
        assert!(!f.blocks_outbound("127.0.0.3:7001"));
        f.set_address_book([("n3".to_string(), "127.0.0.3:7001".to_string())].into());
        assert!(f.blocks_outbound("127.0.0.3:7001") && f.blocks_inbound("127.0.0.3:7001"));
        f.apply(req(
            r#"{"peer":"n3","direction":"both","action":"unblock"}"#,
        ))
        .unwrap();
        assert!(!f.blocks_outbound("127.0.0.3:7001"));
        assert_eq!(f.state().blocked.len(), 1);
    }

    #[test]
    fn mute_drops_outbound_only() {
        let f = Faults::default();
        f.apply(req(r#"{"mute":true}"#)).unwrap();
        assert!(f.blocks_outbound("127.0.0.9:1"));
        assert!(!f.blocks_inbound("127.0.0.9:1"));
        f.apply(req(r#"{"mute":false}"#)).unwrap();
        assert!(!f.blocks_outbound("127.0.0.9:1"));
    }

    #[test]
    fn bad_requests_are_explained() {
        let f = Faults::default();
        assert!(f.apply(req(r#"{}"#)).unwrap_err().0.contains("expected"));
        assert!(f
            .apply(req(r#"{"peer":"x"}"#))
            .unwrap_err()
            .0
            .contains("direction"));
        assert!(f
            .apply(req(r#"{"peer":"x","direction":"both"}"#))
            .unwrap_err()
            .0
            .contains("action"));
        assert!(f.apply(req(r#"{"mute":true,"peer":"x"}"#)).is_err());
        assert!(
            serde_json::from_str::<FaultRequest>(r#"{"peer":"x","direction":"sideways"}"#).is_err()
        );
    }
}
