//! The demo's stage: the agents, their Mesh VPN hosts, the clock the
//! timeline is told against, and the checks every act relies on.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nodeplane_compat_client::CompatClient;
use nodeplane_interface::{MembershipView, PeerState};
use nodeplane_meshvpn::MeshVpn;

use super::cluster::Agent;
use super::{POLL, STEP_DEADLINE};

/// The running demo.
pub struct Demo {
    /// When the demo started (the timeline's zero).
    pub started: Instant,
    /// The agents, node 0 first.
    pub agents: Vec<Agent>,
    /// Each agent's Mesh VPN host, attached through the compatibility API.
    pub vpns: Vec<MeshVpn<CompatClient>>,
    /// Every check that passed and how long it took.
    pub timings: Vec<(String, Duration)>,
}

impl Demo {
    /// An empty stage; the clock starts now.
    pub fn new() -> Demo {
        Demo {
            started: Instant::now(),
            agents: Vec::new(),
            vpns: Vec::new(),
            timings: Vec::new(),
        }
    }

    /// Prints a timeline line.
    pub fn say(&self, text: &str) {
        println!("[{:>6.2}s] {text}", self.started.elapsed().as_secs_f64());
    }

    /// Prints an indented detail line.
    pub fn detail(&self, text: &str) {
        println!("          {text}");
    }

    /// Node `index`'s membership view.
    pub fn view(&self, index: usize) -> Result<MembershipView> {
        self.agents[index].client().members()
    }

    /// Polls `check` until it holds or the step deadline passes.
    pub fn wait_until(
        &mut self,
        what: &str,
        mut check: impl FnMut(&mut Demo) -> Result<bool>,
    ) -> Result<Duration> {
        let started = Instant::now();
        loop {
            if check(self).unwrap_or(false) {
                let took = started.elapsed();
                self.timings.push((what.to_string(), took));
                return Ok(took);
            }
            if started.elapsed() > STEP_DEADLINE {
                self.dump_views();
                bail!("check failed: {what} did not happen within {STEP_DEADLINE:?}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Prints every reachable node's view, to show why a check failed.
    fn dump_views(&self) {
        for (i, agent) in self.agents.iter().enumerate() {
            match self.view(i) {
                Ok(v) => {
                    let states: Vec<String> = v
                        .members
                        .iter()
                        .map(|m| format!("{}={}@{}", m.id, m.state, m.incarnation))
                        .collect();
                    eprintln!("          {} sees: {}", agent.id, states.join(" "));
                }
                Err(e) => eprintln!("          {}: {e}", agent.id),
            }
        }
    }

    /// Polls every running node's Mesh VPN once.
    pub fn poll_vpns(&mut self, running: &[usize]) {
        for &i in running {
            let _ = self.vpns[i].poll();
        }
    }

    /// The state of `subject` in `observer`'s view.
    pub fn state_of(&self, observer: usize, subject: &str) -> Option<PeerState> {
        self.view(observer).ok()?.member(subject).map(|m| m.state)
    }

    /// The ledger frontier digests of `nodes`.
    pub fn digests(&self, nodes: &[usize]) -> Result<Vec<String>> {
        nodes
            .iter()
            .map(|&i| {
                let head = self.agents[i].client().ledger_head()?;
                Ok(head["digest"].as_str().unwrap_or_default().to_string())
            })
            .collect()
    }

    /// Whether `nodes` all hold one (non-empty) frontier digest.
    pub fn ledgers_agree(&self, nodes: &[usize]) -> Result<bool> {
        let digests = self.digests(nodes)?;
        Ok(digests.iter().all(|x| !x.is_empty() && *x == digests[0]))
    }

    /// Prints node `index`'s VPN peer set.
    pub fn print_vpn(&self, index: usize) {
        let set = self.vpns[index].peer_set();
        let peers: Vec<String> = set
            .peers
            .values()
            .map(|p| match &p.tunnel {
                Ok(t) => format!("{}({})", p.node_id, t.overlay_ip),
                Err(_) => format!("{}(incomplete)", p.node_id),
            })
            .collect();
        self.detail(&format!(
            "{} VPN peer set, serial {:>2}: [{}]",
            self.agents[index].id,
            set.serial,
            peers.join(", ")
        ));
    }

    /// Whether node `index`'s VPN holds exactly the `expected` nodes, each
    /// with a complete tunnel.
    pub fn vpn_has_exactly(&self, index: usize, expected: &[usize]) -> bool {
        let set = self.vpns[index].peer_set();
        let ids: Vec<&str> = set.peers.keys().map(String::as_str).collect();
        let want: Vec<String> = expected
            .iter()
            .map(|&j| self.agents[j].id.clone())
            .collect();
        ids.len() == want.len()
            && want.iter().all(|w| ids.contains(&w.as_str()))
            && set.peers.values().all(|p| p.tunnel.is_ok())
    }

    /// Whether every VPN among `running` holds exactly the other running
    /// nodes.
    pub fn vpns_hold_each_other(&self, running: &[usize]) -> bool {
        running
            .iter()
            .all(|&i| self.vpn_has_exactly(i, &all_but(i, running)))
    }
}

/// `of` without `i`.
pub fn all_but(i: usize, of: &[usize]) -> Vec<usize> {
    of.iter().copied().filter(|&j| j != i).collect()
}
