//! Invariants checked after every run. Safety ones hold for any component;
//! the convergence ones are protocol-quality checks for the node plane.
//!
//! Documented bound: once the network is healthy (no partition, block,
//! mute or isolation), every live node must see every live node `alive`
//! within [`CONVERGENCE_BOUND_MS`], and the live nodes' ledgers must reach
//! one frontier digest within [`LEDGER_BOUND_MS`] after that.

use std::time::Duration;

use nodeplane_interface::PeerState;

use crate::world::{Expect, Sim};
use crate::SimError;
use nodeplane_entry::verify_chains;

/// Healthy-network time within which views must converge.
pub const CONVERGENCE_BOUND_MS: u64 = 30_000;
/// Time after convergence within which ledgers must reach one frontier.
pub const LEDGER_BOUND_MS: u64 = 30_000;

impl Sim {
    /// Checks the invariants `expect` names; with [`Expect::Converge`] the
    /// faults are healed first and the run continues up to the documented
    /// bounds. Any violation is returned with the seed and a trace excerpt.
    pub fn check(&mut self, expect: Expect) -> Result<(), SimError> {
        let mut problems: Vec<String> = self.violations().to_vec();
        for i in 0..self.len() {
            if let Err(e) = self.node(i).with_ledger(|l| verify_chains(l.entries())) {
                problems.push(format!("n{i}: ledger chain does not verify: {e}"));
            }
        }
        if expect == Expect::Converge && problems.is_empty() {
            if !self.network.faults.is_healthy() {
                self.heal();
            }
            if self
                .run_until_converged(Duration::from_millis(CONVERGENCE_BOUND_MS))
                .is_none()
            {
                problems.push(format!(
                    "views did not converge within {} s of a healthy network: {}",
                    CONVERGENCE_BOUND_MS / 1000,
                    self.divergence_summary()
                ));
            }
            for o in self.live_nodes() {
                for s in self.live_nodes() {
                    if self.state_of(o, s) == Some(PeerState::Dead) {
                        problems.push(format!(
                            "live node n{s} is dead in n{o}'s view after the healthy bound"
                        ));
                    }
                }
            }
            if self
                .run_until_true(Duration::from_millis(LEDGER_BOUND_MS), Sim::ledgers_agree)
                .is_none()
            {
                let digests: Vec<String> = self
                    .ledger_digests()
                    .iter()
                    .take(8)
                    .map(|(i, d)| format!("n{i}:{}", &hex::encode(d)[..12]))
                    .collect();
                problems.push(format!(
                    "ledgers did not reach one frontier digest within {} s: {}",
                    LEDGER_BOUND_MS / 1000,
                    digests.join(" ")
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SimError::Invariant {
                seed: self.seed(),
                violations: problems,
                excerpt: self.trace().excerpt(),
            })
        }
    }

    /// A short account of who does not see whom as alive.
    pub fn divergence_summary(&self) -> String {
        let live = self.live_nodes();
        let mut out = Vec::new();
        for &o in &live {
            for &s in &live {
                let st = self.state_of(o, s);
                if st != Some(PeerState::Alive) {
                    out.push(format!(
                        "n{o} sees n{s} as {}",
                        st.map(|s| s.as_str()).unwrap_or("unknown")
                    ));
                }
            }
        }
        let total = out.len();
        out.truncate(6);
        format!("{total} pairs, e.g. {}", out.join("; "))
    }
}
