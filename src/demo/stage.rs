//! The demo's stage: the cluster (agents with their Mesh VPN hosts, on
//! loopback or on the namespace test bed), the clock the timeline is told
//! against, and the checks every act relies on.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nodeplane_agent::client::ApiClient;
use nodeplane_interface::{MembershipView, PeerState};
use serde_json::{json, Value};

use super::{interrupted, POLL, STEP_DEADLINE};

/// The API of one agent, however the demo reaches it.
pub trait NodeApi {
    /// `GET path` as JSON.
    fn get(&self, path: &str) -> Result<Value>;
    /// `POST path` with a JSON body; the answer as JSON.
    fn post(&self, path: &str, body: &Value) -> Result<Value>;

    /// `GET /members`: the node's membership view.
    fn members(&self) -> Result<MembershipView> {
        serde_json::from_value(self.get("/members")?).context("parsing /members")
    }
    /// `GET /ledger/head`: the ledger frontier.
    fn ledger_head(&self) -> Result<Value> {
        self.get("/ledger/head")
    }
    /// `POST /admin/component`: hot-swaps to `component`; the swap report.
    fn swap(&self, component: &str) -> Result<Value> {
        self.post("/admin/component", &json!({ "component": component }))
    }
}

impl NodeApi for ApiClient {
    fn get(&self, path: &str) -> Result<Value> {
        ApiClient::get(self, path)
    }
    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        ApiClient::post(self, path, body)
    }
}

/// One peer of a node's VPN, as the demo shows it.
pub struct ShownPeer {
    /// The peer's node id.
    pub id: String,
    /// Its overlay IP, or `None` when the peer cannot be rendered.
    pub overlay: Option<String>,
}

/// A node's VPN as the demo shows it.
pub struct VpnShown {
    /// What is shown (`VPN peer set` or `interface npXXXXw1`).
    pub what: String,
    /// The peer set's serial, when known.
    pub serial: Option<u64>,
    /// The peers, by node id.
    pub peers: Vec<ShownPeer>,
}

/// The demo's cluster: where the agents and their Mesh VPN hosts run.
pub trait Cluster {
    /// How each node is set up, for act 1's first line.
    fn setup(&self) -> &'static str;
    /// Creates what the nodes need (cluster key, directories, namespaces):
    /// nothing runs yet. Returns the cluster key's fingerprint.
    fn prepare(&mut self, nodes: usize) -> Result<String>;
    /// Node `i`'s id.
    fn id(&self, i: usize) -> String;
    /// Node `i`'s addresses, for act 1.
    fn describe(&self, i: usize) -> String;
    /// Node `i`'s API.
    fn api(&self, i: usize) -> Result<&dyn NodeApi>;
    /// Starts every agent with `component`, then every Mesh VPN host.
    fn start_all(&mut self, component: &str) -> Result<()>;
    /// Starts node `i`'s agent again with `component`, on its data
    /// directory, and waits until it serves.
    fn restart(&mut self, i: usize, component: &str) -> Result<()>;
    /// `kill -9` node `i`'s agent.
    fn kill(&mut self, i: usize);
    /// Separates `majority` from `minority`; a line on how, if worth one.
    fn partition(&mut self, majority: &[usize], minority: &[usize]) -> Result<Option<String>>;
    /// Undoes [`partition`](Cluster::partition).
    fn heal(&mut self, nodes: &[usize]) -> Result<()>;
    /// Stops every agent gracefully (a leave).
    fn stop_all(&mut self);
    /// Lets the in-process Mesh VPNs of `running` catch up (no-op where
    /// they run on their own).
    fn poll_vpns(&mut self, running: &[usize]);
    /// Node `i`'s VPN.
    fn vpn(&self, i: usize) -> VpnShown;
    /// Whether [`vpn`](Cluster::vpn) shows the whole desired set
    /// (incomplete peers included) rather than an interface's tunnels.
    fn vpn_shows_incomplete(&self) -> bool;
    /// One overlay ping for each ordered pair, in parallel; the pairs that
    /// got no answer. `None` without a data plane.
    fn ping_failures(&self, pairs: &[(usize, usize)]) -> Option<Vec<(usize, usize)>>;
    /// Log tails and interface states for a failed check, where there are.
    fn diagnostics(&self) -> Option<String>;
}

/// The running demo.
pub struct Demo {
    /// When the demo started (the timeline's zero).
    pub started: Instant,
    /// The agents and their Mesh VPN hosts.
    pub cluster: Box<dyn Cluster>,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Every check that passed and how long it took.
    pub timings: Vec<(String, Duration)>,
}

impl Demo {
    /// A stage of `nodes` nodes on `cluster`; the clock starts now.
    pub fn new(cluster: Box<dyn Cluster>, nodes: usize) -> Demo {
        Demo {
            started: Instant::now(),
            cluster,
            nodes,
            timings: Vec::new(),
        }
    }

    /// Node `i`'s id.
    pub fn id(&self, i: usize) -> String {
        self.cluster.id(i)
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
        self.cluster.api(index)?.members()
    }

    /// Polls `check` until it holds or the step deadline passes; fails at
    /// once when the demo is interrupted.
    pub fn wait_until(
        &mut self,
        what: &str,
        mut check: impl FnMut(&mut Demo) -> Result<bool>,
    ) -> Result<Duration> {
        let started = Instant::now();
        loop {
            if interrupted() {
                bail!("interrupted while waiting for: {what}");
            }
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
        for i in 0..self.nodes {
            match self.view(i) {
                Ok(v) => {
                    let states: Vec<String> = v
                        .members
                        .iter()
                        .map(|m| format!("{}={}@{}", m.id, m.state, m.incarnation))
                        .collect();
                    eprintln!("          {} sees: {}", self.id(i), states.join(" "));
                }
                Err(e) => eprintln!("          {}: {e}", self.id(i)),
            }
        }
    }

    /// Lets the Mesh VPNs of `running` catch up.
    pub fn poll_vpns(&mut self, running: &[usize]) {
        self.cluster.poll_vpns(running);
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
                let head = self.cluster.api(i)?.ledger_head()?;
                Ok(head["digest"].as_str().unwrap_or_default().to_string())
            })
            .collect()
    }

    /// Whether `nodes` all hold one (non-empty) frontier digest.
    pub fn ledgers_agree(&self, nodes: &[usize]) -> Result<bool> {
        let digests = self.digests(nodes)?;
        Ok(digests
            .iter()
            .all(|x| !x.is_empty() && Some(x) == digests.first()))
    }

    /// Prints node `index`'s VPN.
    pub fn print_vpn(&self, index: usize) {
        let shown = self.cluster.vpn(index);
        let peers: Vec<String> = shown
            .peers
            .iter()
            .map(|p| match &p.overlay {
                Some(ip) => format!("{}({ip})", p.id),
                None => format!("{}(incomplete)", p.id),
            })
            .collect();
        let serial = shown
            .serial
            .map_or_else(|| " ?".to_string(), |s| format!("{s:>2}"));
        self.detail(&format!(
            "{} {}, serial {serial}: [{}]",
            self.id(index),
            shown.what,
            peers.join(", ")
        ));
    }

    /// Whether node `index`'s VPN holds exactly the `expected` nodes, each
    /// with a complete tunnel.
    pub fn vpn_has_exactly(&self, index: usize, expected: &[usize]) -> bool {
        let shown = self.cluster.vpn(index);
        let want: Vec<String> = expected.iter().map(|&j| self.id(j)).collect();
        shown.peers.len() == want.len()
            && want.iter().all(|w| shown.peers.iter().any(|p| p.id == *w))
            && shown.peers.iter().all(|p| p.overlay.is_some())
    }

    /// Whether every VPN among `running` holds exactly the other running
    /// nodes.
    pub fn vpns_hold_each_other(&self, running: &[usize]) -> bool {
        running
            .iter()
            .all(|&i| self.vpn_has_exactly(i, &all_but(i, running)))
    }

    /// Where there is a data plane: waits until overlay pings answer
    /// exactly within each of `groups` (every ordered pair inside a group
    /// answers, every other pair of nodes does not), then prints the ping
    /// matrix. Without a data plane, does nothing.
    pub fn expect_pings(&mut self, what: &str, groups: &[&[usize]]) -> Result<()> {
        let all: Vec<(usize, usize)> = (0..self.nodes)
            .flat_map(|a| {
                (0..self.nodes)
                    .filter(move |&b| b != a)
                    .map(move |b| (a, b))
            })
            .collect();
        if self.cluster.ping_failures(&[]).is_none() {
            return Ok(());
        }
        let connected =
            |a: usize, b: usize| groups.iter().any(|g| g.contains(&a) && g.contains(&b));
        let mut last = Vec::new();
        let took = self.wait_until(what, |d| {
            let failed = d.cluster.ping_failures(&all).unwrap_or_default();
            let ok = all
                .iter()
                .all(|&(a, b)| connected(a, b) != failed.contains(&(a, b)));
            last = failed;
            Ok(ok)
        });
        self.print_pings(&last);
        took.map(|_| ())
    }

    /// Prints the overlay ping matrix given the pairs that failed.
    fn print_pings(&self, failed: &[(usize, usize)]) {
        let ids: Vec<String> = (0..self.nodes).map(|i| self.id(i)).collect();
        let width = ids.iter().map(String::len).max().unwrap_or(0).max(2);
        let answered = self
            .nodes
            .saturating_mul(self.nodes.saturating_sub(1))
            .saturating_sub(failed.len());
        self.detail(&format!(
            "overlay pings through the tunnels (row pings column): {answered} pairs answer"
        ));
        let header: Vec<String> = ids.iter().map(|id| format!("{id:>width$}")).collect();
        self.detail(&format!("  {:>width$} {}", "", header.join(" ")));
        for (a, id) in ids.iter().enumerate() {
            let cells: Vec<String> = (0..self.nodes)
                .map(|b| {
                    let cell = if a == b {
                        "."
                    } else if failed.contains(&(a, b)) {
                        "--"
                    } else {
                        "ok"
                    };
                    format!("{cell:>width$}")
                })
                .collect();
            self.detail(&format!("  {id:>width$} {}", cells.join(" ")));
        }
    }
}

/// `of` without `i`.
pub fn all_but(i: usize, of: &[usize]) -> Vec<usize> {
    of.iter().copied().filter(|&j| j != i).collect()
}
