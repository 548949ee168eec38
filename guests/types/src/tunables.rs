//! What a host passes to a component at init: the node's configuration and
//! its protocol tunables.

use serde::{Deserialize, Serialize};

use crate::member::{Address, Metadata, NodeId};

/// Default protocol period: one probe per second (SWIM, memberlist LAN).
pub const DEFAULT_PROBE_INTERVAL_MS: u32 = 1_000;
/// Default direct-ack wait before indirect probes: half a period, so the
/// indirect round still fits inside the period.
pub const DEFAULT_PROBE_TIMEOUT_MS: u32 = 500;
/// Default number of helpers asked to probe indirectly (memberlist: 3).
pub const DEFAULT_INDIRECT_PROBES: u32 = 3;
/// Default suspicion multiplier: minimum suspicion timeout =
/// multiplier x period x log10(N+1) (3.6 s at N = 64).
pub const DEFAULT_SUSPICION_MULTIPLIER: u32 = 2;
/// Default death quorum: 0 means "strict majority of the non-dead,
/// non-left members"; a configured value can only raise that floor.
pub const DEFAULT_DEATH_QUORUM: u32 = 0;
/// Default interval of the low-rate anti-entropy round with the last known
/// addresses of `dead` members (and the seeds while alone).
pub const DEFAULT_ANTI_ENTROPY_INTERVAL_MS: u32 = 2_000;
/// Default gossip retransmissions = multiplier x log10(N+1) (memberlist: 4).
pub const DEFAULT_RETRANSMIT_MULTIPLIER: u32 = 4;

/// Protocol tunables, as in WIT (`tunables`). A zero field means "use the
/// component's documented default" ([`Tunables::DEFAULTS`]), so
/// [`Tunables::default()`] (all zero) is what a host passes when nothing
/// is configured. In a configuration file every field is optional and an
/// unknown field is an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tunables {
    /// Protocol period: one probe per period, in ms.
    pub probe_interval_ms: u32,
    /// Direct-ack wait before indirect probes, in ms.
    pub probe_timeout_ms: u32,
    /// Members asked to probe indirectly.
    pub indirect_probes: u32,
    /// Minimum suspicion timeout = multiplier x period x log10(N+1).
    pub suspicion_multiplier: u32,
    /// Distinct suspecting authors needed for a death verdict (raises the
    /// strict-majority floor, never lowers it).
    pub death_quorum: u32,
    /// Interval of anti-entropy with dead members' last addresses, in ms.
    pub anti_entropy_interval_ms: u32,
    /// Gossip retransmissions = multiplier x log10(N+1).
    pub retransmit_multiplier: u32,
}

impl Tunables {
    /// The documented defaults that zero fields stand for.
    pub const DEFAULTS: Tunables = Tunables {
        probe_interval_ms: DEFAULT_PROBE_INTERVAL_MS,
        probe_timeout_ms: DEFAULT_PROBE_TIMEOUT_MS,
        indirect_probes: DEFAULT_INDIRECT_PROBES,
        suspicion_multiplier: DEFAULT_SUSPICION_MULTIPLIER,
        death_quorum: DEFAULT_DEATH_QUORUM,
        anti_entropy_interval_ms: DEFAULT_ANTI_ENTROPY_INTERVAL_MS,
        retransmit_multiplier: DEFAULT_RETRANSMIT_MULTIPLIER,
    };

    /// Replaces every zero field by its default. (`death_quorum` is kept
    /// as it is: its default is zero, the majority rule alone.)
    pub fn with_defaults(self) -> Tunables {
        let d = Tunables::DEFAULTS;
        let pick = |v: u32, dv: u32| if v == 0 { dv } else { v };
        Tunables {
            probe_interval_ms: pick(self.probe_interval_ms, d.probe_interval_ms),
            probe_timeout_ms: pick(self.probe_timeout_ms, d.probe_timeout_ms),
            indirect_probes: pick(self.indirect_probes, d.indirect_probes),
            suspicion_multiplier: pick(self.suspicion_multiplier, d.suspicion_multiplier),
            death_quorum: self.death_quorum,
            anti_entropy_interval_ms: pick(
                self.anti_entropy_interval_ms,
                d.anti_entropy_interval_ms,
            ),
            retransmit_multiplier: pick(self.retransmit_multiplier, d.retransmit_multiplier),
        }
    }
}

/// A node's local configuration, as in WIT (`node-config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// This node's stable identity: 1 to 64 bytes of `[A-Za-z0-9._-]`.
    pub node_id: NodeId,
    /// This node's control-channel address, `ip:port`.
    pub address: Address,
    /// Metadata offered to peers.
    pub metadata: Metadata,
    /// Protocol tunables (zero fields take their defaults).
    pub tunables: Tunables,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_fields_take_defaults() {
        assert_eq!(Tunables::default().with_defaults(), Tunables::DEFAULTS);
        let t = Tunables {
            probe_interval_ms: 2000,
            death_quorum: 5,
            ..Tunables::default()
        };
        let t = t.with_defaults();
        assert_eq!(t.probe_interval_ms, 2000);
        assert_eq!(t.death_quorum, 5);
        assert_eq!(t.probe_timeout_ms, DEFAULT_PROBE_TIMEOUT_MS);
    }

    #[test]
    fn configured_fields_are_optional_and_checked() {
        let t: Tunables = serde_json::from_str(r#"{"probe_interval_ms": 700}"#).unwrap();
        assert_eq!(
            t,
            Tunables {
                probe_interval_ms: 700,
                ..Tunables::default()
            }
        );
        assert!(serde_json::from_str::<Tunables>(r#"{"probe_interval": 700}"#).is_err());
    }
}
