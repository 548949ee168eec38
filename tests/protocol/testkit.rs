//! Multi-node scenarios on the deterministic harness. Every assertion
//! message carries the seed, so a failure replays exactly.

use nodeplane_core::testkit::Sim;
use nodeplane_core::PeerState;

fn converged_sim(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(n, seed);
    sim.start_all();
    let t = sim.run_until_pred(100, 30_000, |s| s.converged());
    assert!(
        t.is_some(),
        "seed {seed}: {n} nodes did not converge in 30 s"
    );
    sim
}

#[test]
fn five_nodes_converge_with_identical_ledgers() {
    for seed in 1..=3 {
        let mut sim = converged_sim(5, seed);
        sim.run_for(2_000);
        assert!(sim.ledgers_identical(), "seed {seed}: ledgers differ");
        assert!(sim.false_deaths.is_empty(), "seed {seed}");
    }
}

#[test]
fn crashed_node_is_dead_on_every_survivor() {
    for seed in 1..=3 {
        let mut sim = converged_sim(5, seed);
        sim.crash(3);
        let t = sim.run_until_pred(100, 30_000, |s| s.all_see(3, PeerState::Dead));
        assert!(
            t.is_some_and(|t| t <= 15_000),
            "seed {seed}: crash detection took {t:?}"
        );
        assert!(
            sim.false_deaths.is_empty(),
            "seed {seed}: {:?}",
            sim.false_deaths
        );
        // The verdict cites a quorum of distinct suspecting authors.
        let survivor = sim.nodes[0].node.as_ref().unwrap();
        let verdict = survivor
            .ledger()
            .all_entries()
            .into_iter()
            .find(|e| e.kind == "confirm-dead")
            .expect("verdict");
        let body: nodeplane_core::membership::DeadBody =
            serde_json::from_slice(&verdict.body).unwrap();
        assert!(
            body.suspecters >= 3 && body.evidence.len() >= 3,
            "seed {seed}: {body:?}"
        );
    }
}

#[test]
fn restarted_node_comes_back_with_higher_incarnation() {
    let seed = 4;
    let mut sim = converged_sim(5, seed);
    sim.crash(2);
    sim.run_until_pred(100, 30_000, |s| s.all_see(2, PeerState::Dead))
        .expect("dead");
    sim.restart(2);
    let t = sim.run_until_pred(100, 20_000, |s| s.converged());
    assert!(
        t.is_some(),
        "seed {seed}: restarted node not alive everywhere"
    );
    let m = sim.member(0, 2).unwrap();
    assert!(
        m.incarnation >= 2,
        "seed {seed}: incarnation {}",
        m.incarnation
    );
    let causes: Vec<_> = sim.nodes[0]
        .updates
        .iter()
        .filter(|u| u.peer == "n2")
        .map(|u| u.cause)
        .collect();
    assert!(
        causes.contains(&nodeplane_core::UpdateCause::Recovered),
        "seed {seed}: {causes:?}"
    );
}

#[test]
fn false_suspicion_is_refuted() {
    let seed = 5;
    let mut sim = converged_sim(5, seed);
    let now = sim.now;
    let st = sim.nodes[1]
        .node
        .as_mut()
        .unwrap()
        .report_peer_state(now, "n2", PeerState::Dead)
        .unwrap();
    assert_eq!(st, PeerState::Suspect);
    sim.run_for(3_000);
    assert!(sim.converged(), "seed {seed}: suspicion not refuted");
    assert!(sim.member(0, 2).unwrap().incarnation >= 2, "seed {seed}");
    assert!(sim.false_deaths.is_empty(), "seed {seed}");
}

#[test]
fn leave_is_seen_as_left_everywhere_within_a_second() {
    for seed in 1..=3 {
        let mut sim = converged_sim(16, seed);
        sim.leave(5);
        let t = sim.run_until_pred(10, 5_000, |s| s.all_see(5, PeerState::Left));
        assert!(
            t.is_some_and(|t| t <= 1_000),
            "seed {seed}: left seen everywhere after {t:?} ms"
        );
        sim.run_for(20_000);
        assert!(
            sim.all_see(5, PeerState::Left),
            "seed {seed}: left did not stick"
        );
        assert!(!sim.nodes.iter().any(|n| n
            .updates
            .iter()
            .any(|u| u.peer == "n5" && u.current.state == PeerState::Dead)));
    }
}

#[test]
fn two_node_cluster_never_declares_death() {
    let seed = 6;
    let mut sim = converged_sim(2, seed);
    sim.crash(1);
    sim.run_for(60_000);
    assert_eq!(sim.state_of(0, 1), Some(PeerState::Suspect), "seed {seed}");
}

#[test]
fn partition_majority_decides_minority_stays_suspect_and_heals() {
    let seed = 7;
    let mut sim = converged_sim(5, seed);
    sim.partition(&[vec![0, 1, 2], vec![3, 4]]);
    sim.run_for(40_000);
    for i in [0, 1, 2] {
        for j in [3, 4] {
            assert_eq!(
                sim.state_of(i, j),
                Some(PeerState::Dead),
                "seed {seed}: majority side {i} about {j}"
            );
            assert_eq!(
                sim.state_of(j, i),
                Some(PeerState::Suspect),
                "seed {seed}: minority side {j} about {i}"
            );
        }
    }
    sim.false_deaths.clear();
    sim.heal();
    let t = sim.run_until_pred(100, 20_000, |s| s.converged());
    assert!(t.is_some(), "seed {seed}: no re-merge after heal");
    sim.run_for(3_000);
    assert!(
        sim.ledgers_identical(),
        "seed {seed}: ledgers differ after heal"
    );
}

#[test]
fn even_split_declares_nobody_dead() {
    let seed = 8;
    let mut sim = converged_sim(8, seed);
    sim.partition(&[vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
    sim.run_for(40_000);
    assert!(
        sim.false_deaths.is_empty(),
        "seed {seed}: {:?}",
        sim.false_deaths
    );
    assert_eq!(sim.state_of(0, 7), Some(PeerState::Suspect));
    sim.heal();
    assert!(
        sim.run_until_pred(100, 10_000, |s| s.converged()).is_some(),
        "seed {seed}"
    );
    sim.run_for(3_000);
    assert!(sim.ledgers_identical(), "seed {seed}");
}

/// Helpers on the same side answer with nacks in time, so a partition
/// does not make healthy nodes doubt themselves: over 12 seeds, at most one
/// node per run ends above health 2. (Not none: a probe whose helpers'
/// nacks arrive after the prober's period ended counts as unanswered, and a
/// few of those in a row raise one node's health. Measured over seeds
/// 1..=12: one such node in 1 run before entries were signed, in 3 runs
/// after, their larger piggybacks moving the timing; never a false death.)
#[test]
fn even_split_leaves_nearly_every_node_healthy() {
    for seed in 1..=12u64 {
        let mut sim = converged_sim(8, seed);
        sim.partition(&[vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
        sim.run_for(40_000);
        assert!(
            sim.false_deaths.is_empty(),
            "seed {seed}: {:?}",
            sim.false_deaths
        );
        let doubting: Vec<(usize, u32)> = sim
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.node.as_ref().unwrap().health()))
            .filter(|(_, h)| *h > 2)
            .collect();
        assert!(
            doubting.len() <= 1,
            "seed {seed}: nodes doubting themselves in a clean partition: {doubting:?}"
        );
    }
}

#[test]
fn mute_node_gets_no_healthy_node_declared_dead() {
    let seed = 9;
    let mut sim = converged_sim(16, seed);
    sim.set_mute(3);
    sim.run_for(40_000);
    let healthy: Vec<_> = sim.false_deaths.iter().filter(|(_, s)| *s != 3).collect();
    assert!(
        healthy.is_empty(),
        "seed {seed}: healthy nodes declared dead: {healthy:?}"
    );
    assert!(
        sim.all_see(3, PeerState::Dead),
        "seed {seed}: mute node not declared dead"
    );
    assert!(
        sim.nodes[3].node.as_ref().unwrap().health() > 0,
        "seed {seed}: mute node trusts itself"
    );
    sim.heal();
    assert!(
        sim.run_until_pred(100, 10_000, |s| s.converged()).is_some(),
        "seed {seed}: no recovery"
    );
}

#[test]
fn sixty_four_nodes_converge() {
    let seed = 10;
    let mut sim = Sim::new(64, seed);
    sim.start_all();
    let t = sim.run_until_pred(100, 20_000, |s| s.converged());
    assert!(
        t.is_some_and(|t| t <= 10_000),
        "seed {seed}: converged after {t:?} ms"
    );
    sim.run_for(5_000);
    assert!(sim.ledgers_identical(), "seed {seed}");
}

#[test]
fn lossy_network_has_no_false_deaths() {
    let seed = 11;
    let mut sim = converged_sim(24, seed);
    sim.loss = 0.2;
    sim.run_for(60_000);
    assert!(
        sim.false_deaths.is_empty(),
        "seed {seed}: false deaths {:?}",
        sim.false_deaths
    );
    sim.loss = 0.0;
    assert!(
        sim.run_until_pred(100, 10_000, |s| s.converged()).is_some(),
        "seed {seed}"
    );
}

#[test]
fn runs_are_deterministic() {
    let run = |seed| {
        let mut sim = Sim::new(8, seed);
        sim.loss = 0.05;
        sim.start_all();
        sim.run_for(15_000);
        sim.crash(3);
        sim.run_for(15_000);
        (
            sim.stats.clone(),
            sim.nodes[0].node.as_ref().unwrap().frontier_digest(),
        )
    };
    assert_eq!(run(12), run(12));
    assert_ne!(run(12).0, run(13).0);
}
