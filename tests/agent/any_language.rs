//! Issue 17 item 5: a real `nodeplane agent` process accepts any component
//! that passes the conformance suite. One agent on the built-in node plane
//! is swapped live (`POST /admin/component`, what `nodeplane swap` sends)
//! to the Python stub of `examples/python-stub`, answers with it, and is
//! swapped back. Built with componentize-py when it is installed; without
//! it the test says loudly why it skipped (like `interface::examples`).

#[path = "../interface/example_builds.rs"]
mod example_builds;

use std::time::{Duration, Instant};

use nodeplane_agent::http::SWAP_TIMEOUT;
use serde_json::Value;

use crate::support::agents::SERIAL;
use crate::support::cluster::{Cluster, CONVERGE_BOUND};

/// How long the agent may take to serve the new component's view after a
/// swap returned: the swap answers once the new component serves, so this
/// only covers a loaded machine's scheduling, with a wide margin.
const SERVE_BOUND: Duration = Duration::from_secs(30);

/// `GET /status`, if the agent answers.
fn status(c: &Cluster) -> Option<Value> {
    c.client(0).get("/status").ok()
}

/// The name of the component the agent runs (`/status`).
fn component(c: &Cluster) -> Option<String> {
    status(c).and_then(|s| s["component"]["name"].as_str().map(str::to_string))
}

/// Whether `view` (a `/members` or `/v1/members` answer) lists `id` alive.
fn lists_alive(view: &Value, id: &str) -> bool {
    view["members"]
        .as_array()
        .is_some_and(|ms| ms.iter().any(|m| m["id"] == id && m["state"] == "alive"))
}

/// The kinds of the agent's event log lines (`events.jsonl`), in order.
fn event_kinds(c: &Cluster) -> Vec<String> {
    let log = std::fs::read_to_string(c.nodes[0].data_dir.join("events.jsonl")).unwrap_or_default();
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|e| e["kind"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_running_agent_swaps_to_the_python_stub_and_back() {
    // Held while the example builds too: componentize-py takes both cores
    // for seconds, which would delay another test's agents' timers.
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(python) = example_builds::python_stub() else {
        return;
    };
    // An absolute path, as `nodeplane swap --component FILE` sends it.
    let python = python
        .canonicalize()
        .expect("the built example")
        .display()
        .to_string();
    let started = Instant::now();
    let mut c = Cluster::new("python-swap", 1);
    c.start(0);
    let id = c.nodes[0].id.clone();
    c.wait_for(
        "the agent runs the node plane and lists itself alive",
        CONVERGE_BOUND,
        |c| {
            component(c).as_deref() == Some("nodeplane")
                && c.members(0).is_some_and(|v| lists_alive(&v, &id))
        },
    );
    let before = status(&c).expect("status");
    let incarnation = before["incarnation"].as_u64().expect("an incarnation");
    let entries = before["ledger_entries"].as_u64().expect("ledger entries");
    assert!(entries > 0, "the node plane wrote its join: {before}");

    // Live swap to the Python stub (compiling 18 MB takes seconds when the
    // cache is cold: the swap's own timeout, not the client's default).
    let admin = c.client(0).with_timeout(SWAP_TIMEOUT);
    let swap_started = Instant::now();
    let report = admin
        .swap(&python)
        .unwrap_or_else(|e| panic!("swap to the Python stub: {e:#}\n{}", c.logs()));
    eprintln!(
        "swapped to the Python stub in {:.2} s (pause {} ms)",
        swap_started.elapsed().as_secs_f64(),
        report["pause_ms"]
    );
    assert_eq!(report["from"], "builtin:nodeplane", "{report}");
    assert_eq!(report["to"], python.as_str(), "{report}");
    c.wait_for("/status names the Python stub", SERVE_BOUND, |c| {
        component(c).as_deref() == Some("python-stub")
    });
    let on_stub = status(&c).expect("status");
    assert_eq!(on_stub["state"], "alive", "{on_stub}");
    assert_eq!(on_stub["swaps"], 1, "{on_stub}");
    assert_eq!(on_stub["crashes"], 0, "{on_stub}");
    assert!(on_stub["failure"].is_null(), "{on_stub}");
    // The host's mirror (`/members`) and a call into the Python stub
    // itself (`/v1/members`: its `get-members`) both list the node alive.
    let mirror = c.members(0).expect("/members");
    assert!(lists_alive(&mirror, &id), "/members on the stub: {mirror}");
    let own = c
        .client(0)
        .get("/v1/members")
        .unwrap_or_else(|e| panic!("/v1/members on the Python stub: {e:#}\n{}", c.logs()));
    assert!(lists_alive(&own, &id), "/v1/members on the stub: {own}");

    // And back to the node plane: resumed from the ledger at the same
    // incarnation, a member of itself again.
    let report = admin
        .swap("nodeplane")
        .unwrap_or_else(|e| panic!("swap back to the node plane: {e:#}\n{}", c.logs()));
    assert_eq!(report["from"], python.as_str(), "{report}");
    assert_eq!(report["to"], "builtin:nodeplane", "{report}");
    c.wait_for(
        "the agent runs the node plane again and lists itself alive",
        SERVE_BOUND,
        |c| {
            component(c).as_deref() == Some("nodeplane")
                && c.members(0).is_some_and(|v| lists_alive(&v, &id))
                && c.client(0)
                    .get("/v1/members")
                    .is_ok_and(|v| lists_alive(&v, &id))
        },
    );
    let after = status(&c).expect("status");
    assert_eq!(after["incarnation"], incarnation, "{after}");
    assert!(
        after["ledger_entries"]
            .as_u64()
            .is_some_and(|n| n >= entries),
        "the ledger shrank: {before} -> {after}"
    );
    assert_eq!(after["swaps"], 2, "{after}");
    assert_eq!(after["crashes"], 0, "{after}");
    assert!(after["failure"].is_null(), "{after}");
    assert!(
        c.nodes[0]
            .child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None))),
        "the agent exited\n{}",
        c.logs()
    );

    // Its event log: both swaps, no crash, no refused swap.
    let kinds = event_kinds(&c);
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert_eq!(count("swap-requested"), 2, "{kinds:?}");
    for kind in [
        "component-crashed",
        "component-rebuild-failed",
        "swap-failed",
    ] {
        assert_eq!(count(kind), 0, "{kind} in the event log: {kinds:?}");
    }
    eprintln!(
        "swapped to the Python stub and back in {:.1} s (agent start included)",
        started.elapsed().as_secs_f64()
    );
}
