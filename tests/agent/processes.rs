//! Real processes: several `nodeplane agent`s on 127.0.0.x with ports the
//! test picks, checked only through the introspection API. Serial (one
//! shared lock), bounded (every wait has a deadline), children killed on
//! drop.

use crate::support::agents::{free_port, SERIAL};
use crate::support::cluster::{all_alive, digests, Cluster, CONVERGE_BOUND, DEAD_BOUND};
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn five_agents_converge_detect_a_kill_and_readmit_the_restart() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = Cluster::new("five", 5);
    for i in 0..5 {
        c.start(i);
    }
    let all: Vec<usize> = (0..5).collect();
    let took = c.wait_for("5 agents converge on one view", CONVERGE_BOUND, |c| {
        all_alive(c, &all)
    });
    eprintln!("converged in {took:?}");
    let before = c.seen(0, 4).unwrap().1;

    // kill -9 one: every survivor marks it dead.
    c.signal(4, "-KILL");
    let survivors: Vec<usize> = (0..4).collect();
    let took = c.wait_for("survivors mark the killed node dead", DEAD_BOUND, |c| {
        survivors
            .iter()
            .all(|&o| c.seen(o, 4).is_some_and(|(s, _)| s == "dead"))
    });
    eprintln!("declared dead in {took:?}");

    // Restart on the same data dir: alive again with a higher incarnation.
    c.start(4);
    let took = c.wait_for(
        "restarted node alive with a higher incarnation everywhere",
        CONVERGE_BOUND,
        |c| {
            all.iter().all(|&o| {
                c.seen(o, 4)
                    .is_some_and(|(s, inc)| s == "alive" && inc > before)
            })
        },
    );
    eprintln!("readmitted in {took:?}");
    let status = c.client(4).get("/status").unwrap();
    assert!(status["incarnation"].as_u64().unwrap() > before, "{status}");
    assert!(
        status["ledger_entries"].as_u64().unwrap() > 0,
        "restart reloaded the ledger: {status}"
    );

    // Equal ledgers everywhere after convergence.
    c.wait_for(
        "all ledger frontier digests equal",
        Duration::from_secs(15),
        |c| {
            let d = digests(c, &all);
            !d[0].is_empty() && d.iter().all(|x| *x == d[0])
        },
    );
}

#[test]
fn graceful_leave_shows_left_and_bad_input_is_rejected() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = Cluster::new("leave", 3);
    for i in 0..3 {
        c.start(i);
    }
    let all: Vec<usize> = (0..3).collect();
    c.wait_for("3 agents converge", CONVERGE_BOUND, |c| all_alive(c, &all));

    // Malformed, wrong-version, oversized and truncated traffic: rejected,
    // counted, and the agent keeps serving.
    let target = c.nodes[0].listen;
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(&[], target).unwrap();
    udp.send_to(&[9, 1, 2, 3], target).unwrap();
    udp.send_to(&[1, 0xff, 0xfe, 0x00], target).unwrap();
    udp.send_to(&vec![1u8; 4000], target).unwrap();
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(target).unwrap();
        s.write_all(&[1, 14]).unwrap();
        s.write_all(b"127.0.0.1:9").unwrap(); // truncated address, then EOF
        drop(s);
        let mut s = std::net::TcpStream::connect(target).unwrap();
        s.write_all(&[1, 11]).unwrap();
        s.write_all(b"127.0.0.1:9").unwrap();
        s.write_all(&u32::MAX.to_be_bytes()).unwrap(); // oversized
        drop(s);
    }
    c.wait_for("rejections counted", Duration::from_secs(5), |c| {
        let text = c.client(0).get_text("/metrics").ok();
        text.is_some_and(|t| {
            ["wrong-version", "oversized", "truncated", "component"]
                .iter()
                .all(|r| t.contains(&format!("reason=\"{r}\"")))
        })
    });
    assert!(
        all_alive(&c, &all),
        "still serving and converged after bad input"
    );

    // SIGTERM: the node leaves; the others show `left`, never `dead`.
    let status = c.signal(2, "-TERM");
    assert!(status.success(), "graceful exit: {status:?}");
    c.wait_for(
        "others see the leaver as left",
        Duration::from_secs(10),
        |c| (0..2).all(|o| c.seen(o, 2).is_some_and(|(s, _)| s == "left")),
    );
    // The stopped node's store verifies offline; corrupted, it fails the
    // check and stops the agent's start-up, both naming the bad entry.
    let dir = c.nodes[2].data_dir.clone();
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_nodeplane"))
            .args(["ledger", "verify", "--data-dir"])
            .arg(&dir)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap()
    };
    let ok = verify();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ok: "));
    let entries = c.client(0).get("/ledger/head").unwrap()["entries"]
        .as_u64()
        .unwrap();
    nodeplane_agent::RedbLedger::write_raw_for_tests(&dir, b"{\"author\": \"forged\"}").unwrap();
    let bad = verify();
    let stderr = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(!bad.status.success());
    assert!(
        stderr.contains("ledger.redb: entry #") && stderr.contains("undecodable"),
        "{stderr}"
    );
    let node = &c.nodes[2];
    let refused = Command::new(env!("CARGO_BIN_EXE_nodeplane"))
        .args([
            "agent",
            "--node-id",
            &node.id,
            "--listen",
            &node.listen.to_string(),
        ])
        .args(["--api", &node.api.to_string(), "--data-dir"])
        .arg(&dir)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("entry #"), "{stderr}");
    assert!(entries > 0);

    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        for o in 0..2 {
            let (state, _) = c.seen(o, 2).unwrap();
            assert_eq!(state, "left", "observer {o} must keep the leaver left");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Scenario S8b with real processes: a node that hears but cannot speak is
/// declared `dead` by the others under the usual rules, its own failing
/// probes never get a healthy node declared `dead` anywhere, and once it can
/// speak again it refutes and returns `alive` with a higher incarnation.
#[test]
fn a_mute_node_is_declared_dead_condemns_nobody_and_returns() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = Cluster::new("mute", 5);
    for i in 0..5 {
        c.start(i);
    }
    let all: Vec<usize> = (0..5).collect();
    c.wait_for("5 agents converge on one view", CONVERGE_BOUND, |c| {
        all_alive(c, &all)
    });
    let mute = 4;
    let healthy: Vec<usize> = (0..4).collect();
    let before = c.seen(0, mute).unwrap().1;
    let no_healthy_node_dead = |c: &Cluster| {
        for &observer in &all {
            for &subject in &healthy {
                if let Some((state, _)) = c.seen(observer, subject) {
                    assert_ne!(
                        state,
                        "dead",
                        "{} declared healthy {} dead while {} was mute\n{}",
                        c.nodes[observer].id,
                        c.nodes[subject].id,
                        c.nodes[mute].id,
                        c.logs()
                    );
                }
            }
        }
    };

    c.client(mute)
        .post("/admin/faults", &serde_json::json!({"mute": true}))
        .expect("mute");
    let took = c.wait_for("the others declare the mute node dead", DEAD_BOUND, |c| {
        no_healthy_node_dead(c);
        healthy
            .iter()
            .all(|&o| c.seen(o, mute).is_some_and(|(s, _)| s == "dead"))
    });
    eprintln!("mute node declared dead in {took:?}");
    // Stay mute a while longer: the mute node's own probes keep failing, and
    // still nobody healthy may be condemned, by it or by anyone else.
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_secs(5) {
        no_healthy_node_dead(&c);
        std::thread::sleep(Duration::from_millis(200));
    }

    c.client(mute)
        .post("/admin/faults", &serde_json::json!({"mute": false}))
        .expect("unmute");
    let took = c.wait_for(
        "the mute node returns alive with a higher incarnation",
        DEAD_BOUND,
        |c| {
            no_healthy_node_dead(c);
            all_alive(c, &all)
                && healthy
                    .iter()
                    .all(|&o| c.seen(o, mute).is_some_and(|(_, inc)| inc > before))
        },
    );
    eprintln!("mute node back in {took:?}");
}

/// A node restarted on a new address, with no seed at all, keeps its
/// identity and history: it rejoins through the members its ledger knows,
/// and every node sees it `alive` at the new address with a higher
/// incarnation.
#[test]
fn a_node_restarted_on_a_new_address_without_seeds_keeps_its_identity() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut c = Cluster::new("moved", 3);
    for i in 0..3 {
        c.start(i);
    }
    let all: Vec<usize> = (0..3).collect();
    c.wait_for("3 agents converge on one view", CONVERGE_BOUND, |c| {
        all_alive(c, &all)
    });
    let moved = 2;
    let before = c.seen(0, moved).unwrap().1;
    c.signal(moved, "-KILL");
    let ip = c.nodes[moved].listen.ip().to_string();
    c.nodes[moved].listen = format!("{ip}:{}", free_port(&ip)).parse().unwrap();
    let new_address = c.nodes[moved].listen.to_string();
    c.start_with_seed(moved, None);
    c.wait_for(
        "every node sees the moved node alive at its new address",
        DEAD_BOUND,
        |c| {
            all.iter().all(|&o| {
                let Some(view) = c.members(o) else {
                    return false;
                };
                view["members"].as_array().is_some_and(|ms| {
                    ms.iter().any(|m| {
                        m["id"] == c.nodes[moved].id.as_str()
                            && m["state"] == "alive"
                            && m["address"] == new_address.as_str()
                            && m["incarnation"].as_u64().is_some_and(|inc| inc > before)
                    })
                })
            })
        },
    );
}
