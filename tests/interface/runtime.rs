//! The host runtime: loading, import validation, fuel and crash handling.

use std::time::{Duration, Instant};

use nodeplane_interface::{ControlError, ControlPlane, PeerState};
use nodeplane_runtime::{
    ComponentSource, Limits, Node, NodeConfig, NodeHandle, RecordingServices, Runtime, RuntimeError,
};
use nodeplane_sim::{NodeSpec, Sim};

fn runtime() -> Runtime {
    Runtime::new(Limits {
        fuel_per_call: 200_000_000,
        ..Limits::default()
    })
    .expect("engine")
}

fn config(id: &str, port: u16) -> NodeConfig {
    NodeConfig {
        node_id: id.into(),
        address: format!("127.0.0.1:{port}"),
        metadata: vec![("overlay-ip".into(), "10.0.0.1".into())],
        tunables: Default::default(),
    }
}

fn start(rt: &Runtime, path: &str) -> NodeHandle<RecordingServices> {
    let component = rt.load_file(std::path::Path::new(path)).expect("load");
    let node =
        Node::start(rt, &component, config("a", 7001), RecordingServices::new()).expect("start");
    NodeHandle::new(node)
}

#[test]
fn stub_imports_only_host_services() {
    let rt = runtime();
    let component = rt
        .load_file(std::path::Path::new(nodeplane_artifacts::STUB_PATH))
        .expect("stub loads");
    assert!(component
        .imports
        .iter()
        .all(|i| i.starts_with("nodeplane:control/")
            || i.starts_with("wasi:cli/")
            || i.starts_with("wasi:io/")));
    assert!(!component
        .imports
        .iter()
        .any(|i| i.contains("clocks") || i.contains("random")));
}

#[test]
fn garbage_bytes_are_rejected_with_a_clear_error() {
    let rt = runtime();
    let err = rt
        .load(
            b"not wasm at all",
            ComponentSource::File("junk.wasm".into()),
        )
        .err()
        .expect("junk must not load");
    assert!(matches!(err, RuntimeError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("junk.wasm"));
}

#[test]
fn a_spinning_guest_runs_out_of_fuel_and_the_host_goes_on() {
    let rt = runtime();
    let plane = start(&rt, nodeplane_artifacts::FIXTURE_SPIN_PATH);
    plane.join(&[]).expect("join");
    let started = Instant::now();
    let err = plane.publish_heartbeat().expect_err("spin must not return");
    assert!(
        matches!(err, ControlError::Unavailable(ref m) if m.contains("fuel")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded by fuel"
    );
    // The component was rebuilt from the ledger and re-joined: it still serves.
    let view = plane.get_members().expect("serving after the crash");
    assert!(view.member("a").is_some());
    assert_eq!(plane.lock().crashes(), 1);
}

#[test]
fn a_trapping_guest_is_a_crash_of_that_component_only() {
    let rt = runtime();
    let plane = start(&rt, nodeplane_artifacts::FIXTURE_TRAP_PATH);
    plane.join(&["127.0.0.1:7002".into()]).expect("join");
    let err = plane.get_peer_metadata("a").expect_err("trap");
    assert!(
        matches!(err, ControlError::Unavailable(ref m) if m.contains("crashed")),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("deliberate trap in get-peer-metadata"),
        "the crash reason names the guest's panic: {err}"
    );
    let view = plane.get_members().expect("serving after the trap");
    assert_eq!(view.members.len(), 2);
    assert_eq!(
        plane
            .report_peer_state("127.0.0.1:7002", PeerState::Dead)
            .unwrap(),
        PeerState::Suspect
    );
}

#[test]
fn hot_swap_keeps_subscribers_and_emits_only_the_difference() {
    let rt = runtime();
    let plane = start(&rt, nodeplane_artifacts::STUB_PATH);
    let updates = plane.subscribe_membership_updates().unwrap();
    plane.join(&["127.0.0.1:7002".into()]).unwrap();
    plane
        .report_peer_state("127.0.0.1:7002", PeerState::Suspect)
        .unwrap();
    let before = updates.drain();
    assert_eq!(before.len(), 3);
    // Swap to a fresh stub: it re-joins with the same seeds, so the only
    // difference is the peer's suspicion, which the fresh stub lacks.
    let report = plane
        .swap(
            &rt,
            nodeplane_artifacts::STUB_BYTES,
            ComponentSource::Builtin("stub".into()),
        )
        .expect("swap");
    assert_eq!(report.updates_emitted, 1);
    let after = updates.drain();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].peer, "127.0.0.1:7002");
    assert_eq!(after[0].current.state, PeerState::Alive);
    assert_eq!(after[0].version, before.last().unwrap().version + 1);
    let view = plane.get_members().unwrap();
    assert_eq!(
        view.version, after[0].version,
        "versions continue across the swap"
    );
}

#[test]
fn a_broken_component_never_replaces_a_working_one() {
    let rt = runtime();
    let plane = start(&rt, nodeplane_artifacts::STUB_PATH);
    plane.join(&[]).unwrap();
    let err = plane
        .swap(
            &rt,
            b"\0asm garbage",
            ComponentSource::File("bad.wasm".into()),
        )
        .expect_err("garbage must not swap in");
    assert!(matches!(err, ControlError::Unavailable(_)));
    assert_eq!(plane.lock().component_info().0, "stub");
    assert!(plane.get_members().is_ok());
}

#[test]
fn three_real_node_plane_instances_converge_and_detect_a_crash() {
    let rt = runtime();
    let component = rt
        .load_file(std::path::Path::new(nodeplane_artifacts::NODEPLANE_PATH))
        .expect("nodeplane loads");
    assert!(!component
        .imports
        .iter()
        .any(|i| i.contains("clocks") || i.contains("random/")));
    // The simulator's world carries the messages (5 ms each) and fires the
    // timers; the nodes run the component file loaded above.
    let mut sim = Sim::builder()
        .nodes(0)
        .latency_ms(5, 5)
        .compiled(rt.clone(), component)
        .build()
        .expect("world");
    for i in 0..3 {
        let c = config(&format!("n{i}"), 7100 + i as u16);
        sim.add_node(NodeSpec::new(c.node_id, c.address).metadata(c.metadata))
            .expect("start");
    }
    for i in 0..3 {
        sim.join_with(i, &["127.0.0.1:7100".into()]).expect("join");
    }
    let nodes: Vec<_> = (0..3)
        .map(|i| sim.node(i).handle().expect("running").clone())
        .collect();
    sim.run_until_ms(10_000);
    for node in &nodes {
        let view = node.get_members().unwrap();
        let alive = view
            .members
            .iter()
            .filter(|m| m.state == PeerState::Alive)
            .count();
        assert_eq!(
            alive,
            3,
            "{} sees {:?}",
            node.lock().config().node_id,
            view.members
        );
    }
    // Crash n2: the world stops driving it and loses messages to it.
    sim.crash(2);
    sim.run_until_ms(60_000);
    for node in &nodes[..2] {
        let view = node.get_members().unwrap();
        assert_eq!(
            view.member("n2").map(|m| m.state),
            Some(PeerState::Dead),
            "{:?}",
            view.members
        );
    }
}
