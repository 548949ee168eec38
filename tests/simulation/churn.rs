//! The churn yardstick (`nodeplane sim --scenario churn`) at small scale:
//! a run of N = 16 nodes under E = 200 membership events holds every
//! invariant, and its figures are produced and consistent (history grows
//! with events, every event is counted once, crashes write verdicts).
//! S2 reports what one death writes to a survivor's store.
//!
//! Budget: the churn run is about 2 000 virtual seconds at N = 16 (about
//! a minute in debug on two shared cores); S2 at N = 8 a few seconds.

use nodeplane_sim::churn::CHECKPOINTS;
use nodeplane_sim::component::NODEPLANE;
use nodeplane_sim::{ComponentChoice, Scenario, ScenarioParams, ScenarioRun};

fn fig(run: &ScenarioRun, name: &str) -> f64 {
    *run.figures
        .get(name)
        .unwrap_or_else(|| panic!("{} has no figure {name}: {:?}", run.scenario, run.figures))
}

fn params(nodes: usize, events: Option<usize>) -> ScenarioParams {
    ScenarioParams {
        nodes: Some(nodes),
        seed: 3,
        component: ComponentChoice::Builtin(NODEPLANE.into()),
        events,
        time_scale: 0.1,
        ..ScenarioParams::default()
    }
}

#[test]
fn a_small_churn_holds_its_invariants_and_reports_consistent_figures() {
    let events = 200;
    let run = nodeplane_sim::scenarios::run(Scenario::Churn, &params(16, Some(events)))
        .expect("churn runs");
    assert!(
        run.violation.is_none(),
        "{}",
        run.violation.clone().unwrap_or_default()
    );
    for zero in ["crashes", "call_errors"] {
        assert_eq!(fig(&run, zero), 0.0, "{zero}: {:?}", run.figures);
    }
    assert_eq!(fig(&run, "events"), events as f64);
    // Every event counted once, each kind drawn at least once.
    let kinds = ["crash", "restart", "leave", "join"];
    let counted: f64 = kinds
        .iter()
        .map(|k| fig(&run, &format!("events_{k}")))
        .sum();
    assert_eq!(counted, events as f64, "{:?}", run.figures);
    for k in kinds {
        assert!(
            fig(&run, &format!("events_{k}")) > 0.0,
            "no {k}: {:?}",
            run.figures
        );
    }
    // Crashes cost verdicts; restarts and joins a `join` (a restart binds its
    // higher incarnation with one); leaves a
    // `leave` (node 0, which never leaves nor crashes, sees them all).
    assert!(
        fig(&run, "per_crash_entries_suspect") >= 1.0,
        "{:?}",
        run.figures
    );
    assert!(
        fig(&run, "per_crash_entries_confirm_dead") >= 1.0,
        "{:?}",
        run.figures
    );
    assert!(
        fig(&run, "per_restart_entries_join") >= 1.0,
        "{:?}",
        run.figures
    );
    assert!(
        fig(&run, "per_join_entries_join") >= 1.0,
        "{:?}",
        run.figures
    );
    // A node may leave before its restart's entries reached the others and
    // stop before its `leave` spread (it is then judged `dead`): most do not.
    assert!(
        fig(&run, "per_leave_entries_leave") >= 0.8,
        "{:?}",
        run.figures
    );
    // The checkpoints: one per tenth of the events, history only growing
    // (the ledger is unbounded today), live nodes within the bounds.
    let floor = nodeplane_sim::churn::min_live(16) as f64;
    let mut last = (fig(&run, "start_entries_per_node_mean"), 0.0);
    for cp in 1..=CHECKPOINTS {
        let at = |what: &str| fig(&run, &format!("cp{cp:02}_{what}"));
        assert_eq!(at("events"), (events * cp / CHECKPOINTS) as f64);
        let live = at("live_nodes");
        assert!((floor..=16.0).contains(&live), "cp{cp}: {live} live");
        let (entries, bytes) = (at("entries_per_node_mean"), at("store_bytes_per_node_mean"));
        assert!(
            entries > last.0,
            "cp{cp}: entries {entries} after {}",
            last.0
        );
        assert!(bytes > last.1, "cp{cp}: bytes {bytes} after {}", last.1);
        assert!(at("entries_per_node_max") >= entries);
        assert!(at("guest_memory_per_node_mean_bytes") > 0.0);
        last = (entries, bytes);
    }
    assert!(fig(&run, "store_bytes_per_node_per_event") > 0.0);
    assert!(fig(&run, "entries_per_node_per_event") > 0.0);
}

#[test]
fn s2_reports_the_entries_one_death_writes() {
    let run = nodeplane_sim::scenarios::run(Scenario::S2, &params(8, None)).expect("S2 runs");
    assert!(run.violation.is_none(), "{:?}", run.violation);
    let total = fig(&run, "entries_per_death");
    let parts: f64 = ["suspect", "confirm_dead", "suspect_held", "other"]
        .iter()
        .map(|k| fig(&run, &format!("entries_per_death_{k}")))
        .sum();
    assert_eq!(total, parts, "{:?}", run.figures);
    assert!(
        fig(&run, "entries_per_death_suspect") >= 1.0,
        "{:?}",
        run.figures
    );
    assert!(
        fig(&run, "entries_per_death_confirm_dead") >= 1.0,
        "{:?}",
        run.figures
    );
    assert!(
        fig(&run, "entries_per_death_bytes") > total,
        "{:?}",
        run.figures
    );
}

#[test]
fn churn_settings_are_checked() {
    let bad = |p: ScenarioParams, s: Scenario| {
        nodeplane_sim::scenarios::run(s, &p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(bad(params(16, Some(0)), Scenario::Churn).contains("--events 0"));
    assert!(bad(params(16, Some(10)), Scenario::S2).contains("only for churn"));
    assert_eq!("churn".parse::<Scenario>().ok(), Some(Scenario::Churn));
    assert!(!Scenario::ALL.contains(&Scenario::Churn));
}

/// Churn with a small checkpoint trigger (K = 64) agrees checkpoints and
/// never two ids for one number. Nodes that joined after checkpoint 1 was
/// agreed and could not recompute it used to judge its round void over
/// their own, drifted, live members, then propose and agree another
/// checkpoint 1 among themselves (the simulator's invariant caught it on
/// this seed: `first_round_void` in checkpoint_driver.rs).
#[test]
fn churn_with_checkpoints_never_agrees_two_ids_for_one_number() {
    let run = nodeplane_sim::scenarios::run(
        Scenario::Churn,
        &ScenarioParams {
            seed: 1,
            time_scale: 1.0,
            checkpoint_min_tail: Some(64),
            ..params(16, Some(200))
        },
    )
    .expect("churn runs");
    assert!(
        run.violation.is_none(),
        "{}",
        run.violation.clone().unwrap_or_default()
    );
    assert!(fig(&run, "checkpoints_agreed") >= 2.0, "{:?}", run.figures);
}
