//! The demo's acts, one function each, in the order the README's "What
//! the demo shows" lists them. Each narrates, acts, and checks against the
//! step deadline.

use std::collections::BTreeMap;

use anyhow::{ensure, Result};
use nodeplane_interface::PeerState;
use serde_json::json;

use super::stage::{all_but, Demo};
use super::NODES;

/// Every node of the demo cluster.
fn everyone() -> Vec<usize> {
    (0..NODES).collect()
}

/// Act 1: the Mesh VPN starts on the stub control plane.
pub fn start_on_stub(demo: &mut Demo) -> Result<()> {
    let everyone = everyone();
    demo.say(&format!(
        "1. starting {NODES} agents on the stub control plane, {}",
        demo.cluster.setup()
    ));
    let fingerprint = demo.cluster.prepare(NODES)?;
    demo.say(&format!(
        "   a fresh cluster key (nodeplane keygen) seals every message between them: fingerprint {fingerprint}"
    ));
    demo.cluster.start_all("stub")?;
    demo.poll_vpns(&everyone);
    for i in 0..NODES {
        let keys = demo.cluster.api(i)?.get("/admin/keys")?;
        ensure!(
            keys["primary"] == json!(fingerprint),
            "{} does not seal with the demo's cluster key: {keys}",
            demo.id(i)
        );
        demo.detail(&format!(
            "{} {}, sealing with key {fingerprint}",
            demo.id(i),
            demo.cluster.describe(i)
        ));
    }
    demo.say("   the stub knows only its seeds, by address and without keys:");
    for i in [0, 1] {
        demo.print_vpn(i);
    }
    if !demo.cluster.vpn_shows_incomplete() {
        demo.detail("(an interface holds complete tunnels only: without keys, no tunnel)");
    }
    // The desired set holds the seed, incomplete; an interface holds only
    // complete tunnels, so none.
    let seed_only = demo.cluster.vpn(1).peers.len();
    let expected = usize::from(demo.cluster.vpn_shows_incomplete());
    ensure!(
        seed_only == expected,
        "{} on the stub should see exactly its seed, without a tunnel",
        demo.id(1)
    );
    demo.expect_pings("no overlay ping answers on the stub", &[])?;
    Ok(())
}

/// Act 2: every node's control plane is hot-swapped to the node plane,
/// live.
pub fn hot_swap(demo: &mut Demo) -> Result<()> {
    demo.say("2. hot-swapping every node's control plane to the node plane (no restart)");
    for i in 0..NODES {
        let report = demo.cluster.api(i)?.swap("nodeplane")?;
        demo.detail(&format!(
            "{}: {} -> {}, pause {:.2} ms, {} updates to subscribers",
            demo.id(i),
            report["from"].as_str().unwrap_or("?"),
            report["to"].as_str().unwrap_or("?"),
            report["pause_ms"].as_f64().unwrap_or(0.0),
            report["updates_emitted"]
        ));
    }
    Ok(())
}

/// Act 3: nodes discover each other; the ledger entries behind it are shown.
pub fn discovery(demo: &mut Demo) -> Result<()> {
    let everyone = everyone();
    demo.say("3. nodes discover each other through the node plane");
    let took = demo.wait_until("membership converged after the swap", |d| {
        d.poll_vpns(&everyone);
        Ok(d.vpns_hold_each_other(&everyone))
    })?;
    demo.say(&format!(
        "   every VPN holds the 4 other peers with keys after {:.2}s",
        took.as_secs_f64()
    ));
    for i in 0..NODES {
        demo.print_vpn(i);
    }
    demo.expect_pings("every pair pings through the tunnels", &[&everyone])?;
    demo.wait_until("ledgers reconciled", |d| d.ledgers_agree(&everyone))?;
    let client = demo.cluster.api(0)?;
    let page = client.get("/ledger?limit=8")?;
    let head = client.ledger_head()?;
    demo.say(&format!(
        "   {}'s ledger: {} entries by {} authors; the first ones:",
        demo.id(0),
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
    Ok(())
}

/// The node act 4 killed, for act 5 to restart.
pub struct Killed {
    /// Its index.
    pub index: usize,
    /// Its node id.
    pub id: String,
    /// Its incarnation before the kill.
    pub incarnation: u64,
}

/// Act 4: a node is killed with `kill -9`: suspicion, then a death verdict,
/// and the VPN peer sets drop it.
pub fn kill_and_verdict(demo: &mut Demo) -> Result<Killed> {
    let everyone = everyone();
    let victim = NODES - 1;
    let victim_id = demo.id(victim);
    let incarnation_before = demo
        .view(0)?
        .member(&victim_id)
        .map(|m| m.incarnation)
        .unwrap_or(0);
    let survivors = all_but(victim, &everyone);
    demo.say(&format!("4. kill -9 {victim_id} (no leave)"));
    demo.cluster.kill(victim);
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
        Ok(d.vpns_hold_each_other(&survivors))
    })?;
    demo.print_vpn(0);
    demo.expect_pings(
        "survivors ping each other, not the dead node",
        &[&survivors],
    )?;
    Ok(Killed {
        index: victim,
        id: victim_id,
        incarnation: incarnation_before,
    })
}

/// Act 5: the killed node restarts on its data directory with a higher
/// incarnation and is re-added.
pub fn restart(demo: &mut Demo, killed: &Killed) -> Result<()> {
    let everyone = everyone();
    let Killed {
        index: victim,
        id: victim_id,
        incarnation: incarnation_before,
    } = killed;
    demo.say(&format!("5. restart {victim_id} on its data directory"));
    demo.cluster.restart(*victim, "nodeplane")?;
    let back = demo.wait_until("every node sees the restarted node alive", |d| {
        d.poll_vpns(&everyone);
        Ok(everyone.iter().all(|&i| {
            d.view(i)
                .ok()
                .and_then(|v| v.member(victim_id).cloned())
                .is_some_and(|m| m.state == PeerState::Alive && m.incarnation > *incarnation_before)
        }))
    })?;
    let incarnation_after = demo
        .view(0)?
        .member(victim_id)
        .map(|m| m.incarnation)
        .unwrap_or(0);
    demo.say(&format!(
        "   alive everywhere after {:.2}s, incarnation {incarnation_before} -> {incarnation_after}",
        back.as_secs_f64()
    ));
    demo.wait_until("VPN peer sets re-add the restarted node", |d| {
        d.poll_vpns(&everyone);
        Ok(d.vpns_hold_each_other(&everyone))
    })?;
    demo.print_vpn(0);
    demo.expect_pings("every pair pings after the restart", &[&everyone])?;
    Ok(())
}

/// Act 6: a 3 | 2 partition is injected and healed: the majority may declare
/// the minority dead, the minority may not; after the heal every ledger
/// has one frontier digest.
pub fn partition_and_heal(demo: &mut Demo) -> Result<()> {
    let everyone = everyone();
    let majority: Vec<usize> = vec![0, 1, 2];
    let minority: Vec<usize> = vec![3, 4];
    let names = |side: &[usize]| -> Vec<String> { side.iter().map(|&i| demo.id(i)).collect() };
    let (major_ids, minor_ids) = (names(&majority), names(&minority));
    demo.say(&format!(
        "6. partition {{{}}} | {{{}}}",
        major_ids.join(", "),
        minor_ids.join(", ")
    ));
    if let Some(how) = demo.cluster.partition(&majority, &minority)? {
        demo.detail(&how);
    }
    demo.wait_until("the majority side declares the minority dead", |d| {
        Ok(majority.iter().all(|&i| {
            minority
                .iter()
                .all(|&j| d.state_of(i, &d.id(j)) == Some(PeerState::Dead))
        }))
    })?;
    let observer = minority[0];
    let minority_view: BTreeMap<String, String> = majority
        .iter()
        .map(|&j| {
            let id = demo.id(j);
            let state = demo
                .state_of(observer, &id)
                .map(|s| s.to_string())
                .unwrap_or_default();
            (id, state)
        })
        .collect();
    demo.detail(&format!(
        "majority (3 of 5) met the death quorum: {} are dead on its side",
        minor_ids.join(" and ")
    ));
    demo.detail(&format!(
        "minority (2 of 5) cannot meet it; {} sees the majority as {minority_view:?}",
        demo.id(observer)
    ));
    ensure!(
        minority_view.values().all(|s| s != "dead"),
        "the minority side must never declare the majority dead"
    );
    demo.expect_pings(
        "pings answer inside each side only",
        &[&majority, &minority],
    )?;
    demo.say("   healing the partition");
    demo.cluster.heal(&everyone)?;
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
        d.ledgers_agree(&everyone)
    })?;
    let digest = demo.digests(&[0])?.remove(0);
    demo.say(&format!(
        "   every node's ledger frontier digest: {}",
        &digest[..16.min(digest.len())]
    ));
    demo.wait_until("VPN peer sets consistent after the heal", |d| {
        d.poll_vpns(&everyone);
        Ok(d.vpns_hold_each_other(&everyone))
    })?;
    demo.expect_pings("every pair pings after the heal", &[&everyone])?;
    Ok(())
}

/// Act 7: a summary of the timings and the identical final view; the agents
/// leave gracefully.
pub fn summary(demo: &mut Demo) -> Result<()> {
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
            "{}'s final view differs from {}'s",
            demo.id(i),
            demo.id(0)
        );
    }
    demo.say("   identical final view on every node; stopping the agents (graceful leave)");
    demo.cluster.stop_all();
    demo.say(&format!(
        "demo finished in {:.1}s: every check passed",
        demo.started.elapsed().as_secs_f64()
    ));
    Ok(())
}
