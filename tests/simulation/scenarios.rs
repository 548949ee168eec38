//! Simulation tests over the real `.wasm`: every scenario at small N with
//! its invariants, random fault schedules over many seeds, determinism,
//! and the stub under the simulator (the simulator needs only the
//! interface). Protocol-quality assertions apply to the node plane only.
//!
//! Budget: the whole file runs in about 5 minutes in debug on two shared
//! cores (the two 200-seed schedules are most of it). The
//! random schedules use 5–9 nodes and [`FAULT_STEPS`] steps of 5 virtual
//! seconds (300 s of faults) plus up to 60 s of healthy-network checks.
//!
//! Every run fails on any component crash or unprovoked call error
//! (`Sim::check`). The hostile tests add a node that sends random bytes,
//! garbled copies of real traffic and crafted messages
//! (`nodeplane_sim::hostile`): no honest node may crash, none may be
//! declared dead or suspected, no incarnation may move.

use std::time::Duration;

use nodeplane_interface::PeerState;
use nodeplane_sim::chaos::random_faults;
use nodeplane_sim::component::{nodeplane_available, NODEPLANE, STUB};
use nodeplane_sim::{Attack, ComponentChoice, Expect, Scenario, ScenarioParams, Sim};

/// Seeds of the random fault schedules.
const FAULT_SEEDS: u64 = 200;
/// Fault steps per schedule (5 virtual seconds each).
const FAULT_STEPS: usize = 60;
/// Node count of the scenario tests.
const SCENARIO_NODES: usize = 8;
/// Time scale of the scenario tests' long phases.
const SCENARIO_TIME_SCALE: f64 = 0.1;

/// The node plane component; it is always built in, so its absence is a
/// build failure, not a reason to skip the protocol checks.
fn nodeplane() -> Option<ComponentChoice> {
    assert!(
        nodeplane_available(),
        "the nodeplane component is not built in"
    );
    Some(ComponentChoice::Builtin(NODEPLANE.into()))
}

fn stub() -> ComponentChoice {
    ComponentChoice::Builtin(STUB.into())
}

fn figure(run: &nodeplane_sim::ScenarioRun, name: &str) -> f64 {
    *run.figures
        .get(name)
        .unwrap_or_else(|| panic!("{} has no figure {name}", run.scenario))
}

#[test]
fn every_scenario_holds_its_invariants_at_small_n() {
    let Some(component) = nodeplane() else { return };
    for scenario in Scenario::ALL {
        for seed in 1..=2 {
            let params = ScenarioParams {
                nodes: Some(SCENARIO_NODES),
                seed,
                component: component.clone(),
                time_scale: SCENARIO_TIME_SCALE,
                ..ScenarioParams::default()
            };
            let run = nodeplane_sim::scenarios::run(scenario, &params).expect("scenario runs");
            let ctx = format!("{scenario} seed {seed}: {:?}", run.figures);
            assert!(
                run.violation.is_none(),
                "{ctx}\n{}",
                run.violation.unwrap_or_default()
            );
            let zero = |name: &str| assert_eq!(figure(&run, name), 0.0, "{name} must be 0 — {ctx}");
            zero("crashes");
            zero("call_errors");
            match scenario {
                Scenario::S6 => assert_eq!(figure(&run, "reconciled"), 1.0, "{ctx}"),
                Scenario::S8 => {
                    zero("a_false_deaths");
                    zero("b_healthy_declared_dead");
                    zero("c_false_deaths");
                }
                Scenario::S4 => zero("split_false_deaths_within_side"),
                _ => {
                    assert!(figure(&run, "time_to_converge_s") <= 20.0, "{ctx}");
                    zero("false_deaths");
                }
            }
            match scenario {
                Scenario::S2 => assert!(!figure(&run, "all_dead_s").is_nan(), "{ctx}"),
                Scenario::S4 => assert_eq!(figure(&run, "ledgers_identical"), 1.0, "{ctx}"),
                Scenario::S5 => assert!(
                    figure(&run, "incarnation_after") > figure(&run, "incarnation_before"),
                    "{ctx}"
                ),
                Scenario::S7 => {
                    zero("dead_observations");
                    assert!(!figure(&run, "time_to_left_s").is_nan(), "{ctx}");
                }
                _ => {}
            }
        }
    }
}

/// Seeds of the dedicated S8 test.
const S8_SEEDS: u64 = 12;
/// Node count of the dedicated S8 test.
const S8_NODES: usize = 10;
/// Time scale of the dedicated S8 test (S8a 75 s, S8b and S8c 30 s each).
const S8_TIME_SCALE: f64 = 0.25;

/// Scenario S8 over many seeds: a pair cut off from each other but not from
/// the rest never declares each other dead; a mute node is declared dead by
/// the others while nobody healthy is declared dead anywhere, and it comes
/// back after the restore; a flapping node changes to or from `dead` at most
/// 4 times per observer and nobody else suffers a false death.
#[test]
fn partial_and_one_way_partitions_over_many_seeds() {
    let Some(component) = nodeplane() else { return };
    for seed in 1..=S8_SEEDS {
        let params = ScenarioParams {
            nodes: Some(S8_NODES),
            seed,
            component: component.clone(),
            time_scale: S8_TIME_SCALE,
            ..ScenarioParams::default()
        };
        let run = nodeplane_sim::scenarios::run(Scenario::S8, &params).expect("S8 runs");
        let ctx = format!("S8 seed {seed}: {:?}", run.figures);
        assert!(
            run.violation.is_none(),
            "{ctx}\n{}",
            run.violation.unwrap_or_default()
        );
        assert_eq!(
            figure(&run, "a_false_deaths"),
            0.0,
            "non-transitive pairs: {ctx}"
        );
        assert_eq!(
            figure(&run, "b_healthy_declared_dead"),
            0.0,
            "mute node: {ctx}"
        );
        assert!(
            !figure(&run, "b_time_to_dead_s").is_nan(),
            "the mute node must be declared dead: {ctx}"
        );
        assert!(
            !figure(&run, "b_time_to_converge_after_restore_s").is_nan(),
            "the mute node must return after the restore: {ctx}"
        );
        assert_eq!(figure(&run, "c_false_deaths"), 0.0, "flapping node: {ctx}");
        assert!(
            figure(&run, "c_dead_changes_per_observer_max") <= 4.0,
            "flapping node: {ctx}"
        );
    }
}

/// Builds, converges, runs a random fault schedule and checks invariants.
fn fault_run(component: &ComponentChoice, seed: u64) -> Result<String, String> {
    fault_run_with(component, seed, 0)
}

/// [`fault_run`] with `hostiles` hostile nodes attacking throughout.
fn fault_run_with(
    component: &ComponentChoice,
    seed: u64,
    hostiles: usize,
) -> Result<String, String> {
    let nodes = 5 + (seed % 5) as usize;
    let mut sim = Sim::builder()
        .nodes(nodes)
        .seed(seed)
        .component(component.clone())
        .duplicate(0.02)
        .reorder(0.05)
        .hostile(hostiles)
        .build()
        .map_err(|e| format!("seed {seed}: {e}"))?;
    sim.run_until_converged(Duration::from_secs(30));
    random_faults(&mut sim, FAULT_STEPS).map_err(|e| format!("seed {seed}: {e}"))?;
    let expect = if component.is_nodeplane() {
        Expect::Converge
    } else {
        Expect::Safety
    };
    sim.check(expect).map_err(|e| e.to_string())?;
    Ok(sim.trace_hash())
}

/// Environment variable that replays one seed of the random fault
/// schedules instead of all [`FAULT_SEEDS`] (docs/testing.md).
const REPLAY_VAR: &str = "NODEPLANE_REPLAY_SEED";

/// The seeds to run: the one in [`REPLAY_VAR`] when it is set, else all.
fn fault_seeds() -> Vec<u64> {
    match std::env::var(REPLAY_VAR) {
        Ok(seed) => vec![seed
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{REPLAY_VAR}={seed:?} is not a seed (a whole number)"))],
        Err(_) => (1..=FAULT_SEEDS).collect(),
    }
}

#[test]
fn random_fault_schedules_hold_every_invariant() {
    let Some(component) = nodeplane() else { return };
    let mut failures = Vec::new();
    for seed in fault_seeds() {
        if let Err(e) = fault_run(&component, seed) {
            eprintln!(
                "FAILED seed {seed} (replay: {REPLAY_VAR}={seed} cargo test --test simulation \
                 random_fault_schedules_hold -- --nocapture):\n{e}"
            );
            failures.push(seed);
        }
    }
    assert!(
        failures.is_empty(),
        "invariants violated for seeds {failures:?}"
    );
}

/// The same random fault schedules with a hostile node sending random,
/// garbled and crafted messages throughout (and in bursts): no crash, no
/// call error but the `bad-message` its garbage earns, and after the heal
/// no honest live node dead anywhere, views and ledgers converged.
#[test]
fn random_fault_schedules_with_a_hostile_node_hold_every_invariant() {
    let Some(component) = nodeplane() else { return };
    let mut failures = Vec::new();
    for seed in fault_seeds() {
        if let Err(e) = fault_run_with(&component, seed, 1) {
            eprintln!(
                "FAILED seed {seed} (replay: {REPLAY_VAR}={seed} cargo test --test simulation \
                 random_fault_schedules_with_a_hostile -- --nocapture):\n{e}"
            );
            failures.push(seed);
        }
    }
    assert!(
        failures.is_empty(),
        "invariants violated for seeds {failures:?}"
    );
}

/// Seeds of each focused hostile test.
const ATTACK_SEEDS: u64 = 3;
/// Honest nodes of the focused hostile tests.
const ATTACK_NODES: usize = 5;
/// How long a focused attack lasts, virtual time (about 75 scheduled
/// messages, plus [`ATTACK_VOLLEYS`] sent to every node).
const ATTACK_S: u64 = 20;
/// Messages of the attack sent to every honest node at once.
const ATTACK_VOLLEYS: usize = 5;
/// Longest wait, once the hostile node is silent, for the ledgers to
/// agree before the usual bounds of `Sim::check` start: fresh authors that
/// joined at addresses that do not answer are members the honest nodes
/// must probe out, one member per protocol period each, and every verdict
/// is an entry to replicate.
const SETTLE_AFTER_ATTACK_S: u64 = 180;

/// What an attack may legitimately cause.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allowed {
    /// Nothing: no suspicion, no incarnation moves.
    Nothing,
    /// Suspicion of the subject and its refutation (the attack carries a
    /// valid `suspect` at an announced incarnation, which any author may
    /// write on an open network), but no death.
    Refutation,
}

/// A converged healthy cluster under one attack, repeated from a hostile
/// node for [`ATTACK_S`]: nobody crashes or errs, no honest node is
/// suspected or declared dead by another, no incarnation moves, and the
/// cluster still converges. Returns each seed's failures.
fn under_attack(attack: Attack, allowed: Allowed) {
    let component = nodeplane().expect("built in");
    let mut failures = Vec::new();
    for seed in 1..=ATTACK_SEEDS {
        let mut sim = Sim::builder()
            .nodes(ATTACK_NODES)
            .seed(seed)
            .component(component.clone())
            .build()
            .expect("builds");
        assert!(
            sim.run_until_converged(Duration::from_secs(30)).is_some(),
            "seed {seed}: no convergence before the attack"
        );
        let before: Vec<u64> = (0..ATTACK_NODES)
            .map(|i| sim.incarnation_of(i, i).unwrap_or(0))
            .collect();
        sim.observations.reset_counters();
        let h = sim.add_hostile(vec![attack]);
        for _ in 0..ATTACK_VOLLEYS {
            sim.hostile_attack(h, attack);
            sim.run_for(Duration::from_millis(500));
        }
        sim.run_for(Duration::from_secs(ATTACK_S));
        let mut problems: Vec<String> = sim.violations().to_vec();
        for (o, s) in &sim.observations.false_deaths {
            problems.push(format!("n{o} declared live n{s} dead"));
        }
        if allowed == Allowed::Nothing {
            for (o, s) in &sim.observations.false_suspicions {
                problems.push(format!("n{o} suspected live n{s}"));
            }
            for (i, &b) in before.iter().enumerate() {
                let now = sim.incarnation_of(i, i).unwrap_or(0);
                if now != b {
                    problems.push(format!("n{i}'s incarnation moved from {b} to {now}"));
                }
            }
        }
        sim.silence_hostiles();
        if sim
            .run_until_true(
                Duration::from_secs(SETTLE_AFTER_ATTACK_S),
                Sim::ledgers_agree,
            )
            .is_none()
        {
            problems.push(format!(
                "ledgers did not agree within {SETTLE_AFTER_ATTACK_S} s of the attack's end"
            ));
        }
        for o in 0..ATTACK_NODES {
            for s in 0..ATTACK_NODES {
                let state = sim.state_of(o, s);
                if state != Some(PeerState::Alive) {
                    problems.push(format!("at the end n{o} sees n{s} as {state:?}"));
                }
            }
        }
        let sent = sim.hostiles()[h].stats.sent_messages;
        if let Err(e) = sim.check(Expect::Converge) {
            problems.push(e.to_string());
        }
        if !problems.is_empty() {
            problems.truncate(12);
            failures.push(format!(
                "seed {seed} ({sent} hostile messages):\n  - {}",
                problems.join("\n  - ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} attack:\n{}",
        attack.name(),
        failures.join("\n")
    );
}

/// Random bytes, some behind a valid version byte and message tag.
#[test]
fn hostile_random_bytes() {
    under_attack(Attack::RandomBytes, Allowed::Nothing);
}

/// Truncated, bit-flipped, spliced and replayed copies of real traffic.
#[test]
fn hostile_garbled_copies_of_real_traffic() {
    under_attack(Attack::Garbled, Allowed::Nothing);
}

/// `want` with head sequence 2^64-1: the sender of `have + 1` must not
/// wrap (issue 11's first crash).
#[test]
fn hostile_want_at_the_largest_seq() {
    under_attack(Attack::WantMaxSeq, Allowed::Nothing);
}

/// A fresh author's `confirm-dead` about a live node at incarnation
/// 2^64-1 with empty evidence: nobody may show the node dead, and the node
/// must not crash refuting it.
#[test]
fn hostile_forged_death_at_the_largest_incarnation() {
    under_attack(Attack::ForgedDeathMaxInc, Allowed::Nothing);
}

/// One fresh author's `suspect` and `confirm-dead` at the subject's current
/// incarnation: a single writer must not decide a death (every receiver
/// checks the quorum itself). Its `suspect` is valid, so suspicion and
/// refutation are allowed.
#[test]
fn hostile_single_author_death_verdict() {
    under_attack(Attack::SingleAuthorDeath, Allowed::Refutation);
}

/// A lone `confirm-dead` at the subject's current incarnation, by a fresh
/// author, citing evidence nobody holds: inert everywhere.
#[test]
fn hostile_lone_death_verdict() {
    under_attack(Attack::LoneVerdict, Allowed::Nothing);
}

/// A `suspect` at an incarnation the subject never announced is inert:
/// no view shows it suspect, and it does not raise its incarnation.
#[test]
fn hostile_suspect_at_an_unannounced_incarnation() {
    under_attack(Attack::SuspectUnannounced, Allowed::Nothing);
}

/// `sync` with the most items the decoder accepts.
#[test]
fn hostile_huge_sync() {
    under_attack(Attack::HugeSync, Allowed::Nothing);
}

/// Pings and ping-reqs toward random node ids and addresses.
#[test]
fn hostile_pings_and_ping_reqs_toward_random_addresses() {
    under_attack(Attack::Probes, Allowed::Nothing);
}

/// Well-formed entries of fresh authors: joins at other nodes' addresses,
/// incarnation 2^64-1, leaves, maximal bodies.
#[test]
fn hostile_well_formed_fresh_entries() {
    under_attack(Attack::FreshEntries, Allowed::Nothing);
}

/// Malformed entries: wrong ids, broken links, seq 0 and 2^64-1, over-long
/// fields, bodies that are not JSON, forbidden claims.
#[test]
fn hostile_malformed_entries() {
    under_attack(Attack::MalformedEntries, Allowed::Nothing);
}

/// Unsolicited `entries` (rest at 2^64-1), `ack`, `indirect-ack`, `nack`.
#[test]
fn hostile_unsolicited_answers() {
    under_attack(Attack::Unsolicited, Allowed::Nothing);
}

/// Entries under live members' ids signed with the hostile's own key (a
/// `leave`, an `alive` at 2^64-1, a verdict in the member's name, linked
/// to its real head; a second first `join`): nobody may write under an id
/// a node has bound, so nothing changes anywhere, and every stored
/// signature still verifies at the end (`Sim::check`).
#[test]
fn hostile_impersonation_of_members() {
    under_attack(Attack::Impersonate, Allowed::Nothing);
}

#[test]
fn same_seed_same_trace_different_seed_different_trace() {
    let component = nodeplane().unwrap_or_else(stub);
    let a = fault_run(&component, 42).expect("seed 42 runs");
    let b = fault_run(&component, 42).expect("seed 42 runs again");
    assert_eq!(a, b, "seed 42 replayed with a different trace");
    let c = fault_run(&component, 43).expect("seed 43 runs");
    assert_ne!(a, c, "seeds 42 and 43 gave the same trace");

    let params = ScenarioParams {
        nodes: Some(6),
        seed: 9,
        component,
        time_scale: 0.05,
        ..ScenarioParams::default()
    };
    let x = nodeplane_sim::scenarios::run(Scenario::S3, &params).expect("runs");
    let y = nodeplane_sim::scenarios::run(Scenario::S3, &params).expect("runs");
    assert_eq!(x.trace_hash, y.trace_hash);
    assert_eq!(
        serde_json::to_string(&nodeplane_sim::report::to_json(&[x])).unwrap(),
        serde_json::to_string(&nodeplane_sim::report::to_json(&[y])).unwrap(),
        "same seed, different report"
    );
}

#[test]
fn the_stub_runs_under_the_simulator() {
    // The stub has no network protocol: only the safety invariants apply,
    // but every part of the simulator (timers, crashes, restarts, faults,
    // scenarios, report, SVG) must work with any conforming component.
    for seed in 1..=3 {
        fault_run(&stub(), seed).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut sim = Sim::builder()
        .nodes(4)
        .seed(5)
        .component(stub())
        .sample_every_ms(500)
        .build()
        .expect("stub builds");
    sim.run_for(Duration::from_secs(5));
    sim.crash(2);
    sim.run_for(Duration::from_secs(2));
    sim.restart(2).expect("stub restarts");
    sim.run_for(Duration::from_secs(2));
    sim.check(Expect::Safety)
        .expect("stub keeps the safety invariants");
    let svg = nodeplane_sim::svg::render("stub", sim.samples());
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    for scenario in [Scenario::S1, Scenario::S7] {
        let params = ScenarioParams {
            nodes: Some(4),
            component: stub(),
            time_scale: 0.05,
            ..ScenarioParams::default()
        };
        let run = nodeplane_sim::scenarios::run(scenario, &params).expect("stub scenario runs");
        assert!(run.violation.is_none(), "{:?}", run.violation);
    }
}

/// A world of a few nodes of one's own (what the conformance suite and the
/// Mesh VPN tests use): nodes added by spec and driven through their
/// handles; calls made through a handle are performed on the next step; a
/// crashed node restarts elsewhere on its store; the same seed replays.
#[test]
fn a_few_nodes_of_ones_own_driven_through_handles() {
    use nodeplane_interface::{ControlPlane, PeerState};
    use nodeplane_sim::NodeSpec;

    let run = |seed: u64| -> String {
        let mut sim = Sim::builder()
            .nodes(0)
            .seed(seed)
            .component(nodeplane().unwrap())
            .build()
            .expect("empty world");
        let addresses = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"];
        for (i, address) in addresses.iter().enumerate() {
            let spec = NodeSpec::new(format!("w{i}"), *address);
            assert_eq!(sim.add_node(spec).expect("start"), i);
        }
        // Joins through the handles: performed on the next step.
        let handles: Vec<_> = (0..3)
            .map(|i| sim.node(i).handle().expect("running").clone())
            .collect();
        handles[0].join(&[]).expect("join");
        for h in &handles[1..] {
            h.join(&[addresses[0].to_string()]).expect("join");
        }
        let all_alive = |h: &nodeplane_runtime::NodeHandle<_>| {
            h.get_members().is_ok_and(|v| {
                v.members.len() == 3 && v.members.iter().all(|m| m.state == PeerState::Alive)
            })
        };
        let formed = sim.run_until_true(Duration::from_secs(30), |_| handles.iter().all(all_alive));
        assert!(
            formed.is_some(),
            "seed {seed}: the three nodes did not converge"
        );

        sim.crash(2);
        sim.move_to(2, "127.0.0.1:7103");
        sim.run_for(Duration::from_secs(2));
        assert!(sim.restart(2).is_ok(), "seed {seed}: restart");
        // It joined through its handle, not the world: it rejoins the same way.
        let back = sim.node(2).handle().expect("running again").clone();
        back.join(&[addresses[0].to_string()]).expect("rejoin");
        let rejoined = sim.run_until_true(Duration::from_secs(60), |_| {
            handles[..2].iter().all(|h| {
                h.get_members().is_ok_and(|v| {
                    v.member("w2").is_some_and(|m| {
                        m.address == "127.0.0.1:7103" && m.state == PeerState::Alive
                    })
                })
            })
        });
        assert!(
            rejoined.is_some(),
            "seed {seed}: w2 not back on its new address"
        );
        assert!(back.lock().mirror_view().members.len() == 3);
        // A start the component refuses adds no node.
        assert!(sim
            .add_node(NodeSpec::new("bad id", "127.0.0.1:7009"))
            .is_err());
        assert_eq!(sim.len(), 3);
        sim.trace_hash()
    };
    assert_eq!(run(5), run(5), "same seed, same trace");
}
