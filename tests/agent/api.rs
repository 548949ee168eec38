//! The HTTP API of an in-process agent running the stub component, driven
//! with tower's `oneshot`: introspection, admin guard, hot swap, the
//! compatibility mode and its error mapping, and start-up refusals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use futures_util::StreamExt;
use nodeplane_agent::http::{router, AppState};
use nodeplane_agent::{Agent, FileConfig};
use nodeplane_compat_client::errors;
use nodeplane_interface::ControlError;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::tempdir::Dir;

fn temp_dir(tag: &str) -> Dir {
    crate::support::tempdir::temp_dir("agent-api", tag)
}

fn config(dir: &Dir) -> FileConfig {
    FileConfig {
        node_id: Some("n1".into()),
        listen: Some(format!(
            "127.0.0.1:{}",
            nodeplane_agent::ports::free_port("127.0.0.1").unwrap()
        )),
        api: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.0.clone()),
        component: Some("stub".into()),
        ..FileConfig::default()
    }
}

async fn start(dir: &Dir) -> Agent {
    Agent::start(config(dir).validate().unwrap())
        .await
        .expect("agent starts")
}

const LOOPBACK: &str = "127.0.0.1:50000";

/// One request through the router; `peer` is the connecting address (none
/// = unknown, as for a request that did not come over TCP).
async fn call(
    state: &Arc<AppState>,
    method: &str,
    uri: &str,
    body: Option<&str>,
    peer: Option<&str>,
) -> (StatusCode, Value) {
    let body = body
        .map(|b| Body::from(b.to_string()))
        .unwrap_or_else(Body::empty);
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(body)
        .unwrap();
    if let Some(peer) = peer {
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    }
    let resp = router(Arc::clone(state)).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_answers_and_rejects_bad_parameters() {
    let dir = temp_dir("intro");
    let agent = start(&dir).await;
    let s = agent.state();

    let (st, status) = call(&s, "GET", "/status", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(status["node_id"], "n1");
    assert_eq!(status["component"]["source"], "builtin:stub");
    assert_eq!(status["component"]["hash"].as_str().unwrap().len(), 64);
    assert!(status["incarnation"].as_u64().is_some(), "{status}");
    assert_eq!(status["counts"]["alive"], 1);
    assert_eq!(
        status["checkpoint"],
        Value::Null,
        "the stub agrees no checkpoint"
    );

    let (_, members) = call(&s, "GET", "/members", None, None).await;
    assert_eq!(members["members"][0]["id"], "n1");
    assert_eq!(members["members"][0]["state"], "alive");

    let (st, head) = call(&s, "GET", "/ledger/head", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(head["digest"].as_str().unwrap().len(), 64);
    assert!(head["authors"].is_array());

    let (st, page) = call(&s, "GET", "/ledger?author=n1&from=1&limit=10", None, None).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page["entries"].is_array());
    for bad in [
        "/ledger?limit=0",
        "/ledger?limit=1001",
        "/ledger?limit=x",
        "/ledger?from=-1",
        "/ledger?colour=red",
    ] {
        let (st, body) = call(&s, "GET", bad, None, None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad}: {body}"
        );
    }

    let (st, metrics) = call(&s, "GET", "/metrics", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let text = metrics.as_str().unwrap();
    for name in [
        "nodeplane_messages_in_total",
        "nodeplane_bytes_out_total",
        "nodeplane_messages_rejected_total",
        "nodeplane_ledger_entries",
        "nodeplane_component_crashes_total",
        "nodeplane_component_swaps_total",
        "nodeplane_events_total",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert_eq!(
        call(&s, "GET", "/healthz", None, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&s, "GET", "/nope", None, None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_is_loopback_only_and_faults_validate() {
    let dir = temp_dir("admin");
    let agent = start(&dir).await;
    let s = agent.state();
    let body = r#"{"peer":"127.0.0.9:7001","direction":"both","action":"block"}"#;
    assert_eq!(
        call(&s, "POST", "/admin/faults", Some(body), None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &s,
            "POST",
            "/admin/faults",
            Some(body),
            Some("10.1.2.3:4000")
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (st, state) = call(&s, "POST", "/admin/faults", Some(body), Some(LOOPBACK)).await;
    assert_eq!(st, StatusCode::OK, "{state}");
    assert_eq!(state["blocked"]["127.0.0.9:7001"]["inbound"], true);
    let (_, listed) = call(&s, "GET", "/admin/faults", None, None).await;
    assert_eq!(listed, state);
    for bad in [
        "not json",
        r#"{"peer":"x"}"#,
        r#"{"peer":"x","direction":"up","action":"block"}"#,
        r#"{"mute":true,"peer":"x"}"#,
    ] {
        let (st, body) = call(&s, "POST", "/admin/faults", Some(bad), Some(LOOPBACK)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (st, state) = call(
        &s,
        "POST",
        "/admin/faults",
        Some(r#"{"mute":true}"#),
        Some(LOOPBACK),
    )
    .await;
    assert_eq!((st, state["mute"].clone()), (StatusCode::OK, json!(true)));

    // With a token, only its bearer may change anything, loopback or not.
    let guarded = Arc::new(AppState {
        node: s.node.clone(),
        runtime: s.runtime.clone(),
        ledger: s.ledger.clone(),
        metrics: Arc::clone(&s.metrics),
        faults: Arc::clone(&s.faults),
        events: s.events.clone(),
        updates: s.updates.clone(),
        admin_token: Some("sesame".into()),
        node_id: s.node_id.clone(),
        address: s.address.clone(),
        keys: Arc::clone(&s.keys),
    });
    let req = |auth: Option<&str>| {
        let mut r = Request::builder().method("POST").uri("/admin/faults");
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        let mut r = r.body(Body::from(r#"{"mute":false}"#)).unwrap();
        r.extensions_mut()
            .insert(ConnectInfo(LOOPBACK.parse::<SocketAddr>().unwrap()));
        r
    };
    let resp = router(Arc::clone(&guarded))
        .oneshot(req(None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = router(Arc::clone(&guarded))
        .oneshot(req(Some("Bearer wrong")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = router(Arc::clone(&guarded))
        .oneshot(req(Some("Bearer sesame")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_reports_and_failures_keep_the_old_component() {
    let dir = temp_dir("swap");
    let agent = start(&dir).await;
    let s = agent.state();
    let garbage = dir.0.join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm not really").unwrap();
    let body = json!({ "component": garbage }).to_string();
    let (st, err) = call(&s, "POST", "/admin/component", Some(&body), Some(LOOPBACK)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("old component keeps serving"),
        "{err}"
    );
    let missing = r#"{"component":"/no/such/file.wasm"}"#;
    let (st, err) = call(
        &s,
        "POST",
        "/admin/component",
        Some(missing),
        Some(LOOPBACK),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{err}");
    let wrong = r#"{"comp":"stub"}"#;
    assert_eq!(
        call(&s, "POST", "/admin/component", Some(wrong), Some(LOOPBACK))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let (_, status) = call(&s, "GET", "/status", None, None).await;
    assert_eq!(status["component"]["source"], "builtin:stub");
    assert_eq!(status["swaps"], 0);

    let to_nodeplane = r#"{"component":"nodeplane"}"#;
    let (st, report) = call(
        &s,
        "POST",
        "/admin/component",
        Some(to_nodeplane),
        Some(LOOPBACK),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{report}");
    assert_eq!(report["to"], "builtin:nodeplane");
    assert!(report["pause_ms"].as_f64().is_some());
    let (_, status) = call(&s, "GET", "/status", None, None).await;
    assert_eq!(status["component"]["source"], "builtin:nodeplane");
    assert_eq!(status["swaps"], 1);
    assert_eq!(status["counts"]["alive"], 1, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compat_mode_maps_operations_and_errors() {
    let dir = temp_dir("compat");
    let agent = start(&dir).await;
    let s = agent.state();

    let (st, view) = call(&s, "GET", "/v1/members", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(view["members"][0]["id"], "n1");
    let (st, view) = call(
        &s,
        "POST",
        "/v1/join",
        Some(r#"{"seed_peers": []}"#),
        Some(LOOPBACK),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "join is idempotent: {view}");
    assert!(view["version"].as_u64().is_some());
    let (st, err) = call(&s, "POST", "/v1/join", Some("{"), Some(LOOPBACK)).await;
    assert_eq!(
        (st, err["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad-message"))
    );
    let (st, err) = call(&s, "POST", "/v1/join", Some("{}"), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{err}");
    assert!(err["error"].is_string());

    let (st, hb) = call(&s, "POST", "/v1/heartbeat", None, Some(LOOPBACK)).await;
    assert_eq!(st, StatusCode::OK);
    assert!(hb["heartbeats"].as_u64().is_some());

    let dead = r#"{"state":"dead"}"#;
    let (st, err) = call(
        &s,
        "POST",
        "/v1/peers/ghost/report",
        Some(dead),
        Some(LOOPBACK),
    )
    .await;
    assert_eq!(
        (st, err["error"].clone()),
        (StatusCode::NOT_FOUND, json!("unknown-peer"))
    );
    assert_eq!(err["detail"], "ghost");
    // The client reads back exactly the error the server sent, through
    // the one mapping both share.
    let sent = ControlError::UnknownPeer("ghost".into());
    assert_eq!(st.as_u16(), errors::status_code(&sent));
    assert_eq!(errors::from_response(st.as_u16(), &err.to_string()), sent);
    let zombie = r#"{"state":"zombie"}"#;
    let (st, err) = call(
        &s,
        "POST",
        "/v1/peers/n1/report",
        Some(zombie),
        Some(LOOPBACK),
    )
    .await;
    assert_eq!(
        (st, err["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad-message"))
    );
    let (st, err) = call(&s, "GET", "/v1/peers/ghost/metadata", None, None).await;
    assert_eq!(
        (st, err["error"].clone()),
        (StatusCode::NOT_FOUND, json!("unknown-peer"))
    );
    let (st, md) = call(&s, "GET", "/v1/peers/n1/metadata", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(md["metadata"].is_array());

    // Updates arrive as server-sent events.
    let req = Request::builder()
        .uri("/v1/updates")
        .body(Body::empty())
        .unwrap();
    let resp = router(Arc::clone(&s)).oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.into_body().into_data_stream();
    let current = view["members"][0].clone();
    let update = json!({"peer": "n1", "previous": "alive", "current": current,
                        "cause": "changed", "entry": null, "version": 99});
    s.updates
        .send(serde_json::from_value(update).unwrap())
        .unwrap();
    let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(
        text.contains("event: update")
            && text.contains("data: {")
            && text.contains("\"version\":99"),
        "{text}"
    );

    let (st, body) = call(&s, "POST", "/v1/leave", None, Some(LOOPBACK)).await;
    assert_eq!((st, body), (StatusCode::OK, json!({})));
    let (st, err) = call(&s, "POST", "/v1/heartbeat", None, Some(LOOPBACK)).await;
    assert_eq!(
        (st, err["error"].clone()),
        (StatusCode::CONFLICT, json!("has-left")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_or_a_taken_port_stops_start_up() {
    let dir = temp_dir("corrupt");
    nodeplane_agent::RedbLedger::write_raw_for_tests(&dir.0, br#"{"author":"x"}"#).unwrap();
    let err = Agent::start(config(&dir).validate().unwrap())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("ledger.redb") && err.contains("entry #0"),
        "{err}"
    );

    let dir = temp_dir("port");
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut c = config(&dir);
    c.listen = Some(taken.local_addr().unwrap().to_string());
    let err = Agent::start(c.validate().unwrap())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.starts_with("setting `listen`"), "{err}");
}

/// Two agents running the real component with the test knob at K = 2
/// agree checkpoint 1 on their two joins; each shows it in `/status` and
/// `/metrics`, with the same id, from the component's `checkpoint-agreed`
/// event (the interface has no call for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agreed_checkpoint_shows_in_status_and_metrics() {
    let dir = temp_dir("checkpoint");
    let start_real = |id: &str, seeds: Vec<String>| {
        let mut c = config(&dir);
        c.node_id = Some(id.into());
        c.data_dir = Some(dir.0.join(id));
        c.component = Some("nodeplane".into());
        c.seeds = Some(seeds);
        c.metadata = Some(
            [(
                nodeplane_core::config::CHECKPOINT_MIN_TAIL_KEY.to_string(),
                "2".to_string(),
            )]
            .into(),
        );
        Agent::start(c.validate().unwrap())
    };
    let a = start_real("n1", vec![]).await.expect("n1 starts");
    let sa = a.state();
    let b = start_real("n2", vec![sa.address.clone()])
        .await
        .expect("n2 starts");
    let sb = b.state();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut shown = Vec::new();
        for s in [&sa, &sb] {
            let (st, status) = call(s, "GET", "/status", None, None).await;
            assert_eq!(st, StatusCode::OK);
            shown.push(status["checkpoint"].clone());
        }
        if shown
            .iter()
            .all(|c| c["n"].as_u64().is_some_and(|n| n >= 1))
        {
            for c in &shown {
                assert_eq!(c["id"].as_str().map(str::len), Some(64), "{c}");
                assert!(c["records"].as_u64().is_some_and(|r| r >= 1), "{c}");
            }
            if shown[0]["n"] == shown[1]["n"] {
                assert_eq!(shown[0]["id"], shown[1]["id"], "one id per checkpoint");
            }
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "checkpoint 1 not shown by both within 30 s: {shown:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in [&sa, &sb] {
        let (_, metrics) = call(s, "GET", "/metrics", None, None).await;
        let text = metrics.as_str().unwrap_or_default().to_string();
        let agreed = text.lines().find_map(|l| {
            l.strip_prefix("nodeplane_checkpoint_agreed ")?
                .parse::<u64>()
                .ok()
        });
        assert!(agreed.is_some_and(|n| n >= 1), "{text}");
    }
}
