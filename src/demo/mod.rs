//! `nodeplane demo`: a live local cluster, narrated as a timeline.
//!
//! Five agents run as separate processes on loopback, each with a Mesh VPN
//! host attached through the compatibility API (so the VPN is a client of
//! the Control Plane Interface only). The story: the VPN starts on the stub,
//! the control plane is hot-swapped to the node plane on every node, a node
//! is killed and restarted, a partition is injected and healed. Every step
//! is checked against a deadline and a failed check fails the run.

pub mod api;
mod cluster;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nodeplane_compat_client::CompatClient;
use nodeplane_interface::{MembershipView, PeerState};
use nodeplane_meshvpn::{MeshVpn, MeshVpnConfig};
use serde_json::json;

use cluster::Agent;

/// Agents in the demo cluster.
const NODES: usize = 5;
/// The longest any single step may take before the demo fails.
const STEP_DEADLINE: Duration = Duration::from_secs(40);
/// How often views are polled.
const POLL: Duration = Duration::from_millis(100);

struct Demo {
    started: Instant,
    agents: Vec<Agent>,
    vpns: Vec<MeshVpn<CompatClient>>,
    timings: Vec<(String, Duration)>,
}

impl Demo {
    fn say(&self, text: &str) {
        println!("[{:>6.2}s] {text}", self.started.elapsed().as_secs_f64());
    }

    fn detail(&self, text: &str) {
        println!("          {text}");
    }

    fn view(&self, index: usize) -> Result<MembershipView> {
        let value = self.agents[index].get("/members")?;
        serde_json::from_value(value).context("parsing /members")
    }

    /// Polls `check` until it holds or the step deadline passes.
    fn wait_until(
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
    fn poll_vpns(&mut self, running: &[usize]) {
        for &i in running {
            let _ = self.vpns[i].poll();
        }
    }

    fn state_of(&self, observer: usize, subject: &str) -> Option<PeerState> {
        self.view(observer).ok()?.member(subject).map(|m| m.state)
    }

    fn digests(&self, nodes: &[usize]) -> Result<Vec<String>> {
        nodes
            .iter()
            .map(|&i| {
                let head = self.agents[i].get("/ledger/head")?;
                Ok(head["digest"].as_str().unwrap_or_default().to_string())
            })
            .collect()
    }

    fn print_vpn(&self, index: usize) {
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

    fn vpn_has_exactly(&self, index: usize, expected: &[usize]) -> bool {
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
}

fn all_but(i: usize, of: &[usize]) -> Vec<usize> {
    of.iter().copied().filter(|&j| j != i).collect()
}

/// Runs the demo; every step is checked and a failed check fails the run.
pub fn run() -> Result<()> {
    let root = std::env::temp_dir().join(format!("nodeplane-demo-{}", std::process::id()));
    std::fs::create_dir_all(&root).context("creating the demo directory")?;
    let result = story(&root);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn story(root: &std::path::Path) -> Result<()> {
    let mut demo = Demo {
        started: Instant::now(),
        agents: Vec::new(),
        vpns: Vec::new(),
        timings: Vec::new(),
    };
    let everyone: Vec<usize> = (0..NODES).collect();

    // 1. The Mesh VPN starts on the stub control plane.
    demo.say(&format!(
        "1. starting {NODES} agents on the stub control plane, each with a Mesh VPN host"
    ));
    let seed = Agent::plan(0, None, root)?;
    let seed_addr = seed.listen;
    demo.agents.push(seed);
    for i in 1..NODES {
        demo.agents.push(Agent::plan(i, Some(seed_addr), root)?);
    }
    for agent in demo.agents.iter_mut() {
        agent.start("stub")?;
    }
    for agent in &demo.agents {
        let vpn = MeshVpn::new(
            CompatClient::new(agent.base()),
            MeshVpnConfig {
                local_node_id: Some(agent.id.clone()),
                ..MeshVpnConfig::default()
            },
        );
        demo.vpns.push(vpn);
    }
    demo.poll_vpns(&everyone);
    for i in 0..NODES {
        demo.detail(&format!(
            "{} listens on {}, API http://{}",
            demo.agents[i].id, demo.agents[i].listen, demo.agents[i].api
        ));
    }
    demo.say("   the stub knows only its seeds, by address and without keys:");
    for i in [0, 1] {
        demo.print_vpn(i);
    }
    ensure!(
        demo.vpns[1].peer_set().peers.len() == 1,
        "node-1 on the stub should see exactly its seed"
    );

    // 2. Live swap stub -> node plane on every node.
    demo.say("2. hot-swapping every node's control plane to the node plane (no restart)");
    for i in 0..NODES {
        let report = demo.agents[i].post("/admin/component", &json!({"component": "nodeplane"}))?;
        demo.detail(&format!(
            "{}: {} -> {}, pause {:.2} ms, {} updates to subscribers",
            demo.agents[i].id,
            report["from"].as_str().unwrap_or("?"),
            report["to"].as_str().unwrap_or("?"),
            report["pause_ms"].as_f64().unwrap_or(0.0),
            report["updates_emitted"]
        ));
    }

    // 3. Membership forms through the node plane.
    demo.say("3. nodes discover each other through the node plane");
    let took = demo.wait_until("membership converged after the swap", |d| {
        d.poll_vpns(&everyone);
        Ok((0..NODES).all(|i| d.vpn_has_exactly(i, &all_but(i, &everyone))))
    })?;
    demo.say(&format!(
        "   every VPN holds the 4 other peers with keys after {:.2}s",
        took.as_secs_f64()
    ));
    for i in 0..NODES {
        demo.print_vpn(i);
    }
    demo.wait_until("ledgers reconciled", |d| {
        let digests = d.digests(&everyone)?;
        Ok(digests.iter().all(|x| !x.is_empty() && *x == digests[0]))
    })?;
    let page = demo.agents[0].get("/ledger?limit=8")?;
    let head = demo.agents[0].get("/ledger/head")?;
    demo.say(&format!(
        "   node-0's ledger: {} entries by {} authors; the first ones:",
        head["entries"],
        head["authors"].as_array().map(Vec::len).unwrap_or(0)
    ));
    for entry in page["entries"].as_array().cloned().unwrap_or_default() {
        let body: Vec<u8> = entry["body"]
            .as_array()
            .map(|b| {
                b.iter()
                    .filter_map(|x| x.as_u64().map(|v| v as u8))
                    .collect()
            })
            .unwrap_or_default();
        let id = entry["id"].as_str().unwrap_or("");
        demo.detail(&format!(
            "{}#{} {:<12} id {}… {}",
            entry["author"].as_str().unwrap_or("?"),
            entry["seq"],
            entry["kind"].as_str().unwrap_or("?"),
            &id[..id.len().min(12)],
            String::from_utf8_lossy(&body)
        ));
    }

    // 4. A node is killed.
    let victim = NODES - 1;
    let victim_id = demo.agents[victim].id.clone();
    let incarnation_before = demo
        .view(0)?
        .member(&victim_id)
        .map(|m| m.incarnation)
        .unwrap_or(0);
    let survivors = all_but(victim, &everyone);
    demo.say(&format!("4. kill -9 {victim_id} (no leave)"));
    demo.agents[victim].kill();
    let suspected = demo.wait_until("first suspicion of the killed node", |d| {
        Ok(survivors.iter().any(|&i| {
            matches!(
                d.state_of(i, &victim_id),
                Some(PeerState::Suspect | PeerState::Dead)
            )
        }))
    })?;
    demo.say(&format!(
        "   suspected after {:.2}s",
        suspected.as_secs_f64()
    ));
    let dead = demo.wait_until("every survivor marks the killed node dead", |d| {
        d.poll_vpns(&survivors);
        Ok(survivors
            .iter()
            .all(|&i| d.state_of(i, &victim_id) == Some(PeerState::Dead)))
    })?;
    demo.say(&format!(
        "   confirmed dead on every survivor {:.2}s later (timeout + quorum)",
        dead.as_secs_f64()
    ));
    demo.wait_until("VPN peer sets drop the dead node", |d| {
        d.poll_vpns(&survivors);
        Ok(survivors
            .iter()
            .all(|&i| d.vpn_has_exactly(i, &all_but(i, &survivors))))
    })?;
    demo.print_vpn(0);

    // 5. It restarts and recovers.
    demo.say(&format!("5. restart {victim_id} on its data directory"));
    demo.agents[victim].start("nodeplane")?;
    let back = demo.wait_until("every node sees the restarted node alive", |d| {
        d.poll_vpns(&everyone);
        Ok(everyone.iter().all(|&i| {
            d.view(i)
                .ok()
                .and_then(|v| v.member(&victim_id).cloned())
                .is_some_and(|m| m.state == PeerState::Alive && m.incarnation > incarnation_before)
        }))
    })?;
    let incarnation_after = demo
        .view(0)?
        .member(&victim_id)
        .map(|m| m.incarnation)
        .unwrap_or(0);
    demo.say(&format!(
        "   alive everywhere after {:.2}s, incarnation {incarnation_before} -> {incarnation_after}",
        back.as_secs_f64()
    ));
    demo.wait_until("VPN peer sets re-add the restarted node", |d| {
        d.poll_vpns(&everyone);
        Ok((0..NODES).all(|i| d.vpn_has_exactly(i, &all_but(i, &everyone))))
    })?;
    demo.print_vpn(0);

    // 6. Partition and heal.
    let majority: Vec<usize> = vec![0, 1, 2];
    let minority: Vec<usize> = vec![3, 4];
    demo.say("6. partition {node-0, node-1, node-2} | {node-3, node-4}");
    for &a in &majority {
        for &b in &minority {
            for (from, to) in [(a, b), (b, a)] {
                let peer = demo.agents[to].id.clone();
                demo.agents[from].post(
                    "/admin/faults",
                    &json!({"peer": peer, "direction": "both", "action": "block"}),
                )?;
            }
        }
    }
    demo.wait_until("the majority side declares the minority dead", |d| {
        Ok(majority.iter().all(|&i| {
            minority
                .iter()
                .all(|&j| d.state_of(i, &d.agents[j].id) == Some(PeerState::Dead))
        }))
    })?;
    let minority_view: BTreeMap<String, String> = majority
        .iter()
        .map(|&j| {
            let id = demo.agents[j].id.clone();
            let state = demo
                .state_of(3, &id)
                .map(|s| s.to_string())
                .unwrap_or_default();
            (id, state)
        })
        .collect();
    demo.detail("majority (3 of 5) met the death quorum: node-3 and node-4 are dead on its side");
    demo.detail(&format!(
        "minority (2 of 5) cannot meet it; node-3 sees the majority as {minority_view:?}"
    ));
    ensure!(
        minority_view.values().all(|s| s != "dead"),
        "the minority side must never declare the majority dead"
    );
    demo.say("   healing the partition");
    for &from in &everyone {
        for &to in &everyone {
            if from != to {
                let peer = demo.agents[to].id.clone();
                demo.agents[from].post(
                    "/admin/faults",
                    &json!({"peer": peer, "direction": "both", "action": "unblock"}),
                )?;
            }
        }
    }
    let healed = demo.wait_until("views converge after the heal", |d| {
        d.poll_vpns(&everyone);
        Ok(everyone.iter().all(|&i| {
            d.view(i)
                .map(|v| {
                    v.members.len() == NODES
                        && v.members.iter().all(|m| m.state == PeerState::Alive)
                })
                .unwrap_or(false)
        }))
    })?;
    demo.say(&format!(
        "   all {NODES} nodes alive on every node {:.2}s after the heal",
        healed.as_secs_f64()
    ));
    demo.wait_until("ledgers reconcile to one frontier digest", |d| {
        let digests = d.digests(&everyone)?;
        Ok(digests.iter().all(|x| !x.is_empty() && *x == digests[0]))
    })?;
    let digest = demo.digests(&[0])?.remove(0);
    demo.say(&format!(
        "   every node's ledger frontier digest: {}",
        &digest[..16.min(digest.len())]
    ));
    demo.wait_until("VPN peer sets consistent after the heal", |d| {
        d.poll_vpns(&everyone);
        Ok((0..NODES).all(|i| d.vpn_has_exactly(i, &all_but(i, &everyone))))
    })?;

    // 7. Summary.
    demo.say("7. summary");
    for (what, took) in &demo.timings {
        demo.detail(&format!("{what:<55} {:>6.2}s", took.as_secs_f64()));
    }
    let view = demo.view(0)?;
    for m in &view.members {
        demo.detail(&format!(
            "{:<8} {:<16} {:<7} incarnation {}",
            m.id, m.address, m.state, m.incarnation
        ));
    }
    for i in 0..NODES {
        let v = demo.view(i)?;
        ensure!(
            v.members == view.members,
            "{}'s final view differs from node-0's",
            demo.agents[i].id
        );
    }
    demo.say("   identical final view on every node; stopping the agents (graceful leave)");
    for agent in demo.agents.iter_mut() {
        agent.terminate();
    }
    demo.say(&format!(
        "demo finished in {:.1}s: every check passed",
        demo.started.elapsed().as_secs_f64()
    ));
    Ok(())
}
