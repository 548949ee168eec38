//! The cluster key (issue 12, items 1, 2 and 4): an in-process keyed agent
//! takes sealed datagrams and frames and drops, counts and logs everything
//! else before the component (plain, another key, a removed key, tampered,
//! stale, replayed); `/admin/keys` lists, installs, uses and removes keys
//! under the admin rule; bad key files are start-up errors naming the
//! setting; and a five-agent cluster of real processes rotates its key one
//! node at a time with no false suspicion, after which an agent still on
//! the removed key cannot join.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use nodeplane_agent::events::epoch_ms;
use nodeplane_agent::framing::{encode_datagram, encode_frame, encode_sealed_frame};
use nodeplane_agent::http::{router, AppState};
use nodeplane_agent::metrics::Gauges;
use nodeplane_agent::seal::{self, write_key_file, ClusterKey, REPLAY_WINDOW_MS};
use nodeplane_agent::{Agent, FileConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::agents::SERIAL;
use crate::support::cluster::{all_alive, digests, Cluster, CONVERGE_BOUND};

use crate::support::tempdir::Dir;

fn temp_dir(tag: &str) -> Dir {
    crate::support::tempdir::temp_dir("agent-keys", tag)
}

/// Writes `key` to `dir/name` (mode 0600) and returns the path.
fn key_file(dir: &Path, name: &str, key: &ClusterKey) -> PathBuf {
    let path = dir.join(name);
    write_key_file(&path, key).unwrap();
    path
}

fn config(dir: &Dir, key_file: Option<PathBuf>) -> FileConfig {
    FileConfig {
        node_id: Some("n1".into()),
        listen: Some(format!(
            "127.0.0.1:{}",
            nodeplane_agent::ports::free_port("127.0.0.1").unwrap()
        )),
        api: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.0.join("data")),
        component: Some("stub".into()),
        cluster_key_file: key_file,
        ..FileConfig::default()
    }
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn call(
    state: &Arc<AppState>,
    method: &str,
    body: Option<Value>,
    peer: &str,
) -> (StatusCode, Value) {
    let body = body
        .map(|b| Body::from(b.to_string()))
        .unwrap_or_else(Body::empty);
    let mut req = Request::builder()
        .method(method)
        .uri("/admin/keys")
        .body(body)
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    let resp = router(Arc::clone(state)).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

const LOOPBACK: &str = "127.0.0.1:50000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_agent_takes_only_fresh_messages_sealed_with_an_installed_key() {
    let dir = temp_dir("traffic");
    let k = ClusterKey::generate();
    let config = config(&dir, Some(key_file(&dir.0, "cluster.key", &k)))
        .validate()
        .unwrap();
    let target = config.listen;
    let agent = Agent::start(config).await.unwrap();
    let s = agent.state();
    let rejected = |reason: &str| {
        s.metrics
            .rejected_by_reason()
            .get(reason)
            .copied()
            .unwrap_or(0)
    };
    let accepted = || s.metrics.messages_in.load(Ordering::Relaxed);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sealed = |key: &ClusterKey, sent_ms: u64| {
        seal::seal(key, sent_ms, &encode_datagram(b"hello").unwrap())
    };

    // A sealed datagram is taken; the same bytes again are a replay.
    let captured = sealed(&k, epoch_ms());
    udp.send_to(&captured, target).unwrap();
    wait_until("a sealed datagram accepted", || accepted() == 1).await;
    udp.send_to(&captured, target).unwrap();
    wait_until("the replay dropped", || rejected("replayed") == 1).await;

    // Plain, another key's, stale, from the future, tampered.
    udp.send_to(&encode_datagram(b"hello").unwrap(), target)
        .unwrap();
    udp.send_to(&sealed(&ClusterKey::generate(), epoch_ms()), target)
        .unwrap();
    udp.send_to(&sealed(&k, epoch_ms() - 2 * REPLAY_WINDOW_MS), target)
        .unwrap();
    udp.send_to(&sealed(&k, epoch_ms() + 2 * REPLAY_WINDOW_MS), target)
        .unwrap();
    let mut tampered = sealed(&k, epoch_ms());
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    udp.send_to(&tampered, target).unwrap();
    wait_until("every bad datagram counted", || {
        rejected("unsealed") == 1
            && rejected("unknown-key") == 1
            && rejected("stale") == 2
            && rejected("unauthenticated") == 1
    })
    .await;

    // A second key opens once installed and no longer once removed.
    let k2 = ClusterKey::generate();
    let (st, list) = call(
        &s,
        "POST",
        Some(json!({"op": "install", "key": k2.to_base64()})),
        LOOPBACK,
    )
    .await;
    assert_eq!(
        (st, list["keys"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(2)),
        "{list}"
    );
    udp.send_to(&sealed(&k2, epoch_ms()), target).unwrap();
    wait_until("sealed with an installed key: accepted", || accepted() == 2).await;
    let (st, _) = call(
        &s,
        "POST",
        Some(json!({"op": "remove", "key": k2.fingerprint()})),
        LOOPBACK,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    udp.send_to(&sealed(&k2, epoch_ms()), target).unwrap();
    wait_until("sealed with a removed key: dropped", || {
        rejected("unknown-key") == 2
    })
    .await;

    // TCP: a sealed frame is taken, a plain one refused.
    let frame = encode_frame("127.0.0.1:9", &vec![7u8; 5000]).unwrap();
    let mut t = TcpStream::connect(target).unwrap();
    t.write_all(&encode_sealed_frame(&seal::seal(&k, epoch_ms(), &frame)).unwrap())
        .unwrap();
    drop(t);
    wait_until("a sealed frame accepted", || accepted() == 3).await;
    let mut t = TcpStream::connect(target).unwrap();
    t.write_all(&frame).unwrap();
    drop(t);
    wait_until("a plain frame dropped", || rejected("unsealed") == 2).await;

    assert_eq!(accepted(), 3, "nothing else reached the component");
    let text = s.metrics.render(&Gauges::default());
    for line in [
        "nodeplane_messages_rejected_total{reason=\"replayed\"} 1",
        "nodeplane_messages_rejected_total{reason=\"unknown-key\"} 2",
        "nodeplane_messages_rejected_total{reason=\"unsealed\"} 2",
        "nodeplane_cluster_keys 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
    let log = std::fs::read_to_string(s.events.path()).unwrap();
    assert!(log.contains("\"kind\":\"cluster-key-on\""), "{log}");
    assert!(log.contains("\"kind\":\"cluster-key-rejected\""), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_keys_list_install_use_remove_under_the_admin_rule() {
    let dir = temp_dir("admin");
    let (a, b) = (ClusterKey::generate(), ClusterKey::generate());
    let agent = Agent::start(
        config(&dir, Some(key_file(&dir.0, "a.key", &a)))
            .validate()
            .unwrap(),
    )
    .await
    .unwrap();
    let s = agent.state();
    let (st, list) = call(&s, "GET", None, LOOPBACK).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["primary"], json!(a.fingerprint()));
    assert!(
        !list.to_string().contains(&a.to_base64()),
        "never key material"
    );

    let post = |body: Value, peer: &'static str| {
        let s = Arc::clone(&s);
        async move { call(&s, "POST", Some(body), peer).await }
    };
    let install_b = json!({"op": "install", "key": b.to_base64()});
    assert_eq!(
        post(install_b.clone(), "10.0.0.1:1").await.0,
        StatusCode::FORBIDDEN
    );
    let (st, list) = post(install_b.clone(), LOOPBACK).await;
    assert_eq!((st, list["changed"].clone()), (StatusCode::OK, json!(true)));
    assert_eq!(post(install_b, LOOPBACK).await.1["changed"], json!(false));
    let (st, e) = post(json!({"op": "remove", "key": a.to_base64()}), LOOPBACK).await;
    assert_eq!(st, StatusCode::CONFLICT, "the primary cannot go: {e}");
    assert!(e["error"].as_str().unwrap().contains("primary"), "{e}");
    let (st, e) = post(json!({"op": "rotate", "key": a.to_base64()}), LOOPBACK).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["error"].as_str().unwrap().contains("rotate"), "{e}");
    assert_eq!(
        post(json!({"op": "use", "key": "nope"}), LOOPBACK).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(json!({"op": "use"}), LOOPBACK).await.0,
        StatusCode::BAD_REQUEST
    );
    let stranger = ClusterKey::generate().fingerprint();
    assert_eq!(
        post(json!({"op": "use", "key": stranger}), LOOPBACK)
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (st, list) = post(json!({"op": "use", "key": b.fingerprint()}), LOOPBACK).await;
    assert_eq!(
        (st, list["primary"].clone()),
        (StatusCode::OK, json!(b.fingerprint()))
    );
    let (st, list) = post(json!({"op": "remove", "key": a.fingerprint()}), LOOPBACK).await;
    assert_eq!(
        (st, list["keys"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );

    // Persisted, private, primary first; a restart keeps it even though
    // the configuration still names the old key.
    let file = dir
        .0
        .join("data")
        .join(nodeplane_agent::keyring::KEYRING_FILE);
    let saved: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved, vec![b.to_base64()]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // An agent without a key has no keyring to manage: 409, clearly.
    let open_dir = temp_dir("admin-open");
    let open = Agent::start(config(&open_dir, None).validate().unwrap())
        .await
        .unwrap();
    let o = open.state();
    for (method, body) in [
        ("GET", None),
        ("POST", Some(json!({"op": "install", "key": a.to_base64()}))),
    ] {
        let (st, e) = call(&o, method, body, LOOPBACK).await;
        assert_eq!(st, StatusCode::CONFLICT, "{method}: {e}");
        assert!(
            e["error"]
                .as_str()
                .unwrap()
                .contains("without a cluster key"),
            "{e}"
        );
    }
    let log = std::fs::read_to_string(o.events.path()).unwrap();
    assert_eq!(log.matches("\"kind\":\"running-open\"").count(), 1, "{log}");
    assert!(o
        .metrics
        .render(&Gauges::default())
        .contains("nodeplane_cluster_keys 0"));
}

#[test]
fn bad_key_files_are_start_up_errors_naming_the_setting() {
    let dir = temp_dir("config");
    let write = |name: &str, text: &str, mode: u32| {
        let path = dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
        path
    };
    let good = ClusterKey::generate().to_base64();
    let mut cases = vec![
        ("missing", dir.0.join("no-such.key"), "No such file"),
        (
            "not base64",
            write("junk.key", "this is not base64!", 0o600),
            "not base64",
        ),
        (
            "16 bytes",
            write("short.key", "AAAAAAAAAAAAAAAAAAAAAA==", 0o600),
            "16 bytes",
        ),
        ("a directory", dir.0.clone(), "not a regular file"),
    ];
    #[cfg(unix)]
    cases.push((
        "world-readable",
        write("open.key", &good, 0o644),
        "readable by everyone",
    ));
    for (case, path, says) in cases {
        let err = config(&dir, Some(path)).validate().unwrap_err().to_string();
        assert!(
            err.starts_with("setting `cluster_key_file`"),
            "{case}: {err}"
        );
        assert!(err.contains(says), "{case}: {err}");
    }
    let ok = write("good.key", &good, 0o600);
    assert!(config(&dir, Some(ok))
        .validate()
        .unwrap()
        .cluster_key
        .is_some());
}

/// A value of a counter line in a `/metrics` text (0 when absent).
fn counter(metrics: &str, line_prefix: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
        .unwrap_or(0)
}

fn metrics(c: &Cluster, i: usize) -> String {
    c.client(i).get_text("/metrics").unwrap_or_default()
}

/// Rejections for reasons that mean "a member's message did not open".
fn key_drops(c: &Cluster, i: usize) -> u64 {
    let m = metrics(c, i);
    [
        "unknown-key",
        "unauthenticated",
        "unsealed",
        "sealed",
        "stale",
        "replayed",
    ]
    .iter()
    .map(|r| {
        counter(
            &m,
            &format!("nodeplane_messages_rejected_total{{reason=\"{r}\"}}"),
        )
    })
    .sum()
}

/// Panics if any agent's view shows a running member other than alive.
fn assert_no_suspicion(c: &Cluster, running: &[usize]) {
    for &o in running {
        for &s in running {
            if let Some((state, _)) = c.seen(o, s) {
                assert_eq!(
                    state,
                    "alive",
                    "{} sees {} {state} during the rotation\n{}",
                    c.nodes[o].id,
                    c.nodes[s].id,
                    c.logs()
                );
            }
        }
    }
}

#[test]
fn a_five_agent_cluster_rotates_its_key_one_node_at_a_time_without_false_suspicion() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = Cluster::new("keys", 6);
    let (old, new) = (ClusterKey::generate(), ClusterKey::generate());
    let old_file = key_file(&c.root, "old.key", &old);
    let running: Vec<usize> = (0..5).collect();
    for &i in &running {
        c.nodes[i].key_file = Some(old_file.clone());
        c.start(i);
    }
    let took = c.wait_for("a keyed cluster converges", CONVERGE_BOUND, |c| {
        all_alive(c, &running)
    });
    eprintln!("a keyed cluster converged in {took:?}");

    // Each step lets traffic flow under the new state: every agent must
    // send this many more messages before the next step.
    let traffic = |c: &Cluster| -> Vec<u64> {
        running
            .iter()
            .map(|&i| counter(&metrics(c, i), "nodeplane_messages_out_total "))
            .collect()
    };
    let flow = |c: &Cluster, what: &str| {
        let before = traffic(c);
        let took = c.wait_for(what, CONVERGE_BOUND, |c| {
            assert_no_suspicion(c, &running);
            traffic(c)
                .iter()
                .zip(&before)
                .all(|(now, then)| *now >= then + 10)
        });
        eprintln!("{what}: {took:?}");
    };
    let keys = |c: &Cluster, i: usize, op: &str, key: &ClusterKey| {
        let list = c
            .client(i)
            .post("/admin/keys", &json!({"op": op, "key": key.to_base64()}))
            .unwrap_or_else(|e| panic!("{op} on {}: {e:#}", c.nodes[i].id));
        assert_eq!(
            list["changed"],
            json!(true),
            "{op} on {}: {list}",
            c.nodes[i].id
        );
        list
    };

    for &i in &running {
        keys(&c, i, "install", &new);
    }
    flow(&c, "traffic with the new key installed everywhere");
    for &i in &running {
        let list = keys(&c, i, "use", &new);
        assert_eq!(list["primary"], json!(new.fingerprint()));
        flow(
            &c,
            &format!("traffic after {} seals with the new key", c.nodes[i].id),
        );
    }
    for &i in &running {
        let list = keys(&c, i, "remove", &old);
        assert_eq!(list["keys"].as_array().map(Vec::len), Some(1));
    }
    flow(&c, "traffic with the old key removed everywhere");
    assert!(all_alive(&c, &running), "{}", c.logs());
    c.wait_for("one frontier digest", CONVERGE_BOUND, |c| {
        let d = digests(c, &running);
        d.iter().all(|x| !x.is_empty() && *x == d[0])
    });
    for &i in &running {
        assert_eq!(
            key_drops(&c, i),
            0,
            "{} dropped a member's message\n{}",
            c.nodes[i].id,
            metrics(&c, i)
        );
        let log = std::fs::read_to_string(c.nodes[i].data_dir.join("events.jsonl")).unwrap();
        for kind in ["suspected", "confirmed-dead"] {
            assert!(
                !log.contains(&format!("\"kind\":\"{kind}\"")),
                "{} logged {kind} during the rotation",
                c.nodes[i].id
            );
        }
    }

    // An agent still configured with the removed key cannot join: the seed
    // drops (and counts) everything it sends, nobody ever lists it.
    c.nodes[5].key_file = Some(old_file);
    c.start(5);
    c.wait_for(
        "the seed counts the old key's messages",
        CONVERGE_BOUND,
        |c| {
            counter(
                &metrics(c, 0),
                "nodeplane_messages_rejected_total{reason=\"unknown-key\"} ",
            ) >= 3
        },
    );
    for &i in &running {
        let view = c.members(i).unwrap_or_default().to_string();
        assert!(
            !view.contains("\"n6\""),
            "{} lists the outsider: {view}",
            c.nodes[i].id
        );
    }
    let outsider = c.members(5).unwrap_or_default();
    assert_eq!(
        outsider["members"].as_array().map(Vec::len),
        Some(1),
        "the outsider learned nobody: {outsider}"
    );
}
