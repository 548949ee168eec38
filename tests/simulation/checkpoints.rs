//! Checkpoints run by the node (stage A, docs/design.md §13.9) in the
//! simulator over the real `.wasm`, with a small trigger `K` through the
//! test knob (`--checkpoint-min-tail`): S1 agrees checkpoint 1 on every
//! node and then checkpoint 2 as the tail grows; a crashed proposer's
//! round is void and the next round's proposer's checkpoint is agreed; a
//! split with no majority agrees nothing. Every run also holds the
//! simulator's checkpoint invariant (`Sim::check`: at most one id per
//! number across all nodes) and, asserted here, what the simulator only
//! reports in general: every live node on the latest agreed checkpoint
//! once ledgers agree, and no node whose agreed state and tail give
//! another view than its own.

use std::time::Duration;

use nodeplane_sim::component::{nodeplane_available, NODEPLANE};
use nodeplane_sim::{node_id, ComponentChoice, Expect, Sim};

fn nodeplane() -> ComponentChoice {
    assert!(
        nodeplane_available(),
        "the nodeplane component is not built in"
    );
    ComponentChoice::Builtin(NODEPLANE.into())
}

fn world(nodes: usize, seed: u64, k: u64) -> Sim {
    let mut sim = Sim::builder()
        .nodes(nodes)
        .seed(seed)
        .component(nodeplane())
        .keep_logs(true)
        .checkpoint_min_tail(Some(k))
        .build()
        .expect("builds");
    assert!(
        sim.run_until_converged(Duration::from_secs(30)).is_some(),
        "seed {seed}: no convergence"
    );
    sim
}

/// Node `i`'s `checkpoint-*` lines of `kind`, parsed.
fn events(sim: &Sim, i: usize, kind: &str) -> Vec<serde_json::Value> {
    sim.node(i)
        .log()
        .iter()
        .filter(|r| r.kind == kind)
        .map(|r| serde_json::from_str(&r.detail).expect("json detail"))
        .collect()
}

/// After `Sim::check`: every live node on the latest agreed checkpoint,
/// and no agreement whose state and tail gave another view.
fn all_on_the_latest(sim: &Sim) {
    let ck = sim.checkpoints();
    assert!(ck.lagging.is_empty(), "behind: {:?}", ck.lagging);
    assert!(ck.view_differs.is_empty(), "{:?}", ck.view_differs);
}

/// Every live node's latest agreed checkpoint number.
fn latest(sim: &Sim) -> Vec<u64> {
    sim.live_nodes()
        .into_iter()
        .map(|i| sim.checkpoints().latest.get(&i).map_or(0, |(n, _)| *n))
        .collect()
}

#[test]
fn s1_at_64_agrees_checkpoint_1_on_every_node_then_2_as_the_tail_grows() {
    let mut sim = world(64, 1, 48);
    sim.run_for(Duration::from_secs(20));
    let after_boot = latest(&sim);
    assert!(
        after_boot.iter().all(|&n| n >= 1),
        "checkpoint 1 not agreed everywhere: {after_boot:?}"
    );
    let n1 = sim
        .checkpoints()
        .by_n
        .get(&1)
        .expect("checkpoint 1")
        .0
        .clone();
    // The tail grows: three members crash and are declared dead.
    for i in [10, 20, 30] {
        sim.crash(i);
    }
    sim.run_for(Duration::from_secs(60));
    for i in [10, 20, 30] {
        sim.restart(i).expect("restarts");
    }
    sim.run_for(Duration::from_secs(30));
    sim.check(Expect::Converge).expect("invariants");
    all_on_the_latest(&sim);
    let end = latest(&sim);
    assert!(
        end.iter().all(|&n| n >= 2),
        "checkpoint 2 not agreed: {end:?}"
    );
    assert_eq!(sim.checkpoints().by_n.get(&1).expect("1").0, n1);
    for i in sim.live_nodes() {
        assert!(events(&sim, i, "checkpoint-view-differs").is_empty());
    }
}

#[test]
fn a_crashed_proposer_voids_its_round_and_the_next_proposer_is_agreed() {
    let mut sim = world(16, 2, 16);
    sim.run_for(Duration::from_secs(20));
    let (n, _) = sim.checkpoints().latest.get(&0).cloned().expect("agreed");
    let agreed = events(&sim, 0, "checkpoint-agreed");
    let last = agreed.last().expect("an agreed line");
    let next = last["next_proposer"].as_str().expect("a next proposer");
    let p = (0..16).find(|&i| node_id(i) == next).expect("a node");
    sim.crash(p);
    sim.run_for(Duration::from_secs(60));
    sim.check(Expect::Converge).expect("invariants");
    all_on_the_latest(&sim);
    let next_n = n + 1;
    let o = if p == 0 { 1 } else { 0 };
    let voids = events(&sim, o, "checkpoint-void");
    assert!(
        voids.iter().any(|v| v["n"] == next_n && v["round"] == 0),
        "round 0 of {next_n} not void: {voids:?}"
    );
    let skips = events(&sim, o, "checkpoint-voted");
    assert!(
        skips.iter().any(|v| v["reason"] == "proposer-gone"),
        "{skips:?}"
    );
    for i in sim.live_nodes() {
        let got = events(&sim, i, "checkpoint-agreed");
        let line = got
            .iter()
            .find(|v| v["n"] == next_n)
            .unwrap_or_else(|| panic!("n{i} did not agree {next_n}: {got:?}"));
        assert_ne!(line["round"], 0, "{line}");
        assert_ne!(line["proposer"], next, "{line}");
    }
}

#[test]
fn a_split_without_a_majority_agrees_no_checkpoint() {
    let mut sim = world(16, 3, 20);
    sim.run_for(Duration::from_secs(5));
    assert!(
        sim.checkpoints().by_n.is_empty(),
        "the joins alone are below K"
    );
    let (a, b): (Vec<usize>, Vec<usize>) = (0..16).partition(|&i| i < 8);
    sim.partition(&a, &b);
    sim.run_for(Duration::from_secs(90));
    let proposed: usize = (0..16)
        .map(|i| events(&sim, i, "checkpoint-proposed").len())
        .sum();
    assert!(proposed >= 1, "the tail grew past K during the split");
    assert!(
        sim.checkpoints().by_n.is_empty(),
        "agreed during a split without a majority: {:?}",
        sim.checkpoints().by_n
    );
    sim.check(Expect::Converge)
        .expect("invariants after the heal");
}

/// The scenarios' own runs (and their end-of-run invariants) with a
/// trigger below N, so that checkpoint 1 is proposed during the mass
/// start: a member that proposed round 0 from its partial view (another
/// rightful proposal of checkpoint 1, with its own voters) still
/// recomputes the one agreed, and every live node ends on it.
#[test]
fn scenarios_with_a_trigger_below_n_hold_every_invariant() {
    for (scenario, k) in [
        (nodeplane_sim::Scenario::S1, 32),
        (nodeplane_sim::Scenario::S2, 32),
        (nodeplane_sim::Scenario::S3, 32),
    ] {
        let params = nodeplane_sim::ScenarioParams {
            nodes: Some(64),
            time_scale: 0.1,
            checkpoint_min_tail: Some(k),
            component: nodeplane(),
            ..Default::default()
        };
        let run = nodeplane_sim::scenarios::run(scenario, &params).expect("runs");
        assert_eq!(run.violation, None, "{scenario}");
        for zero in ["checkpoint_lagging_nodes", "checkpoint_view_differs"] {
            assert_eq!(run.figures.get(zero), Some(&0.0), "{scenario}: {zero}");
        }
        assert!(
            run.figures
                .get("checkpoints_agreed")
                .copied()
                .unwrap_or(0.0)
                >= 1.0,
            "{scenario}: {:?}",
            run.figures
        );
    }
}

/// Stage C part 1, the cut sync: S4's uneven split (40 | 24) at N = 64
/// with K = 32. The majority agrees checkpoints during the split; the
/// minority's own suspicions have clocks below the proposals', so its
/// guess of each cut misses. After the heal each minority node fetches
/// the cuts' heads from a proposer or a voter, checks them against the
/// proposals' digests, and agrees the same checkpoints, one after the
/// other (stage A left all 24 behind: `nodeplane sim --scenario S4
/// --nodes 64 --seeds 1 --split 40 --checkpoint-min-tail 32` on HEAD
/// 86299cc reports `checkpoint_lagging_nodes` 24). Not asserted:
/// `checkpoint_view_differs` (10 here), the sticky verdict of design
/// §13.8 seen by nodes that now adopt (a minority member dead at the cut
/// in G, suspect in the node's own derivation).
#[test]
fn an_uneven_split_heals_and_every_node_agrees_the_same_checkpoints() {
    let params = nodeplane_sim::ScenarioParams {
        nodes: Some(64),
        split: Some(40),
        checkpoint_min_tail: Some(32),
        component: nodeplane(),
        ..Default::default()
    };
    let run = nodeplane_sim::scenarios::run(nodeplane_sim::Scenario::S4, &params).expect("runs");
    assert_eq!(run.violation, None);
    let figure = |k: &str| run.figures.get(k).copied().unwrap_or(f64::NAN);
    assert!(figure("checkpoints_agreed") >= 2.0, "{:?}", run.figures);
    assert_eq!(figure("checkpoint_lagging_nodes"), 0.0, "{:?}", run.figures);
}

/// The cut sync for members that were away: four members crash while
/// the others agree two more checkpoints (their deaths fill the tail),
/// then restart on their stores. Each replays its ledger, holds the
/// proposals it missed, and (its own restart written concurrently, the
/// proposals' cuts not its guess) fetches each cut in turn and ends on
/// the latest checkpoint with everyone else.
#[test]
fn members_back_from_a_crash_catch_up_fetching_the_cuts_their_guess_misses() {
    let mut sim = world(16, 4, 16);
    sim.run_for(Duration::from_secs(20));
    assert!(latest(&sim).iter().all(|&n| n >= 1), "{:?}", latest(&sim));
    let away = [3, 6, 9, 12];
    for i in away {
        sim.crash(i);
    }
    sim.run_for(Duration::from_secs(60));
    let before = sim.checkpoints().by_n.len();
    for i in away {
        sim.restart(i).expect("restarts");
    }
    sim.run_for(Duration::from_secs(60));
    sim.check(Expect::Converge).expect("invariants");
    let ck = sim.checkpoints();
    assert!(
        before >= 2,
        "checkpoints while they were away: {:?}",
        ck.by_n
    );
    assert!(
        ck.lagging.is_empty(),
        "behind: {:?} of {:?}",
        ck.lagging,
        ck.by_n
    );
    let fetched: usize = away
        .iter()
        .map(|&i| events(&sim, i, "checkpoint-cut-fetched").len())
        .sum();
    assert!(fetched >= 1, "no cut fetched");
}
