//! The control channel of an in-process agent over real loopback sockets:
//! malformed, truncated, oversized and wrong-version datagrams and frames
//! are rejected and counted, good ones are accepted, inbound fault rules
//! drop traffic, and the agent keeps serving. Then the host's bounds
//! (issue 11, items 4 and 5): a non-member gets back no more bytes than it
//! sent, a frame with a forged sender is dropped, a flood from one source
//! is rate-limited without starving a member, slow-loris connections are
//! refused beyond the per-IP limit and closed after the idle timeout, and
//! the event log rotates by size.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodeplane_agent::events::{Source, EVENT_LOG_GENERATIONS, MAX_EVENT_LOG_BYTES};
use nodeplane_agent::faults::FaultRequest;
use nodeplane_agent::framing::{encode_datagram, encode_frame, WIRE_VERSION};
use nodeplane_agent::guard::{SOURCE_BURST, SOURCE_RATE_PER_SEC};
use nodeplane_agent::http::AppState;
use nodeplane_agent::metrics::Gauges;
use nodeplane_agent::network::{MAX_TCP_CONNECTIONS_PER_IP, TCP_IDLE_TIMEOUT};
use nodeplane_agent::{Agent, FileConfig};
use nodeplane_core::wire::{self, Message, SyncItem};

use crate::support::tempdir::Dir;

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_traffic_is_rejected_and_counted_good_traffic_accepted() {
    let dir = temp_dir("traffic");
    let port = nodeplane_agent::ports::free_port("127.0.0.1").unwrap();
    let config = FileConfig {
        node_id: Some("n1".into()),
        listen: Some(format!("127.0.0.1:{port}")),
        api: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.0.clone()),
        component: Some("stub".into()),
        ..FileConfig::default()
    }
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

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(&[], target).unwrap();
    udp.send_to(&[WIRE_VERSION], target).unwrap();
    udp.send_to(&[WIRE_VERSION + 1, 1, 2], target).unwrap();
    udp.send_to(&vec![WIRE_VERSION; 1 + 1401], target).unwrap();
    udp.send_to(&encode_datagram(b"hello").unwrap(), target)
        .unwrap();

    let frame = encode_frame("127.0.0.1:9", &vec![7u8; 5000]).unwrap();
    let mut t = TcpStream::connect(target).unwrap();
    t.write_all(&frame[..frame.len() - 10]).unwrap(); // truncated payload
    drop(t);
    let mut t = TcpStream::connect(target).unwrap();
    t.write_all(&[WIRE_VERSION, 11]).unwrap();
    t.write_all(b"127.0.0.1:9").unwrap();
    t.write_all(&(70_000u32).to_be_bytes()).unwrap(); // over MAX_MESSAGE_BYTES
    drop(t);
    let mut t = TcpStream::connect(target).unwrap();
    t.write_all(&[7, 0, 0]).unwrap(); // wrong version
    drop(t);
    let mut t = TcpStream::connect(target).unwrap();
    t.write_all(&frame).unwrap(); // two good frames on one connection
    t.write_all(&frame).unwrap();
    drop(t);

    wait_until("every bad message counted", || {
        rejected("malformed") >= 2
            && rejected("wrong-version") >= 2
            && rejected("oversized") >= 2
            && rejected("truncated") >= 1
    })
    .await;
    wait_until("good messages accepted", || {
        s.metrics.messages_in.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert_eq!(s.metrics.messages_in.load(Ordering::Relaxed), 3);

    // An inbound block drops the peer's traffic before the component.
    let me = udp.local_addr().unwrap().to_string();
    s.faults
        .apply(
            serde_json::from_value::<FaultRequest>(
                serde_json::json!({"peer": me, "direction": "inbound", "action": "block"}),
            )
            .unwrap(),
        )
        .unwrap();
    udp.send_to(&encode_datagram(b"blocked").unwrap(), target)
        .unwrap();
    wait_until("blocked message dropped", || rejected("fault") == 1).await;
    assert_eq!(s.metrics.messages_in.load(Ordering::Relaxed), 3);

    // Still serving.
    let view = {
        let node = s.node.clone();
        tokio::task::spawn_blocking(move || node.lock().mirror_view())
            .await
            .unwrap()
    };
    assert_eq!(view.members.len(), 1);
}

/// Generous bound for anything the tests below wait for.
const PATIENCE: Duration = Duration::from_secs(30);

async fn wait_for(what: &str, bound: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn temp_dir(tag: &str) -> Dir {
    crate::support::tempdir::temp_dir("agent-net", tag)
}

/// An in-process agent on 127.0.0.1 running `component`.
async fn agent(
    dir: &Dir,
    id: &str,
    component: &str,
    seeds: Vec<String>,
    metadata: BTreeMap<String, String>,
) -> Agent {
    let port = nodeplane_agent::ports::free_port("127.0.0.1").unwrap();
    let config = FileConfig {
        node_id: Some(id.into()),
        listen: Some(format!("127.0.0.1:{port}")),
        api: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.0.join(id)),
        component: Some(component.into()),
        seeds: Some(seeds),
        metadata: Some(metadata),
        ..FileConfig::default()
    }
    .validate()
    .unwrap();
    Agent::start(config).await.unwrap()
}

/// What `/metrics` serves for this agent's counters.
fn metrics_text(s: &AppState) -> String {
    s.metrics.render(&Gauges::default())
}

/// The value of one exact `/metrics` series (0 if absent).
fn series(s: &AppState, name: &str) -> u64 {
    metrics_text(s)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

fn rejected(s: &AppState, reason: &str) -> u64 {
    s.metrics
        .rejected_by_reason()
        .get(reason)
        .copied()
        .unwrap_or(0)
}

fn view(s: &AppState) -> nodeplane_interface::MembershipView {
    s.node.lock().mirror_view()
}

/// A host that is not a member: a UDP socket and, on the same port, a TCP
/// listener (large answers come as frames to the sender's address), both
/// counting every byte that arrives.
struct Stranger {
    udp: UdpSocket,
    tcp: std::net::TcpListener,
    sent: usize,
    received: usize,
}

impl Stranger {
    fn new(ip: &str) -> Stranger {
        let port = nodeplane_agent::ports::free_port(ip).unwrap();
        let udp = UdpSocket::bind((ip, port)).unwrap();
        udp.set_nonblocking(true).unwrap();
        let tcp = std::net::TcpListener::bind((ip, port)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        Stranger {
            udp,
            tcp,
            sent: 0,
            received: 0,
        }
    }

    fn send(&mut self, to: SocketAddr, payload: &[u8]) {
        let datagram = encode_datagram(payload).unwrap();
        self.sent += self.udp.send_to(&datagram, to).unwrap();
    }

    /// Reads whatever has arrived (datagrams and frames).
    fn drain(&mut self) {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, _)) = self.udp.recv_from(&mut buf) {
            self.received += n;
        }
        while let Ok((mut conn, _)) = self.tcp.accept() {
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut bytes = Vec::new();
            let _ = conn.read_to_end(&mut bytes);
            self.received += bytes.len();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_gets_back_no_more_bytes_than_it_sent() {
    let dir = temp_dir("amplify");
    // Padding in the metadata makes the node's own entry (what a want or a
    // sync would return) far larger than the requests.
    let pad: BTreeMap<String, String> = (0..3)
        .map(|i| (format!("pad{i}"), "x".repeat(200)))
        .collect();
    let a = agent(&dir, "n1", "nodeplane", vec![], pad).await;
    let s = a.state();
    let target: SocketAddr = s.address.parse().unwrap();
    let amplification =
        |s: &AppState| series(s, "nodeplane_sends_dropped_total{reason=\"amplification\"}");

    let want = wire::encode(&Message::Want {
        heads: vec![("n1".into(), 0)],
    });
    let sync = wire::encode(&Message::Sync {
        items: vec![SyncItem::Leaf {
            path: vec![],
            heads: vec![],
        }],
    });
    // One stranger asks with a sync, another with a want; each answer is
    // held back.
    let mut by_sync = Stranger::new("127.0.0.2");
    let mut by_want = Stranger::new("127.0.0.2");
    by_sync.send(target, &sync);
    by_want.send(target, &want);
    let deadline = Instant::now() + PATIENCE;
    while amplification(&s) < 2 {
        by_sync.drain();
        by_want.drain();
        if by_sync.received > by_sync.sent || by_want.received > by_want.sent {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the answers were neither sent nor dropped"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Whatever was sent has had time to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (asked, st) in [("sync", &mut by_sync), ("want", &mut by_want)] {
        st.drain();
        eprintln!("{asked}: sent {} bytes, got {} back", st.sent, st.received);
        assert!(
            st.received <= st.sent,
            "a non-member's {asked} of {} bytes got {} bytes back",
            st.sent,
            st.received
        );
    }
    let mut stranger = by_want;

    // With credit (bytes it sent that the component rejected), a ping gets
    // its ack, never more than the credit.
    let before = stranger.received;
    stranger.send(target, &[0xff; 1_400]);
    stranger.send(target, &[0xff; 1_400]);
    let ping = wire::encode(&Message::Ping {
        seq: 7,
        target: "n1".into(),
        digest: [0; 8],
        entries: vec![],
    });
    stranger.send(target, &ping);
    let deadline = Instant::now() + PATIENCE;
    while stranger.received == before {
        assert!(
            Instant::now() < deadline,
            "no ack for a ping within the credit"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
        stranger.drain();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stranger.drain();
    eprintln!(
        "ping with credit: sent {} bytes in all, got {} back",
        stranger.sent, stranger.received
    );
    assert!(
        stranger.received <= stranger.sent,
        "a non-member sent {} bytes and got {} back",
        stranger.sent,
        stranger.received
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_source_is_rate_limited_without_starving_a_member() {
    let dir = temp_dir("flood");
    let a = agent(&dir, "n1", "nodeplane", vec![], BTreeMap::new()).await;
    let sa = a.state();
    let b = agent(
        &dir,
        "n2",
        "nodeplane",
        vec![sa.address.clone()],
        BTreeMap::new(),
    )
    .await;
    let sb = b.state();
    let both_alive = |s: &AppState| {
        let v = view(s);
        v.members.len() == 2 && v.members.iter().all(|m| m.state.is_live())
    };
    wait_for("n1 and n2 to see each other", PATIENCE, || {
        both_alive(&sa) && both_alive(&sb)
    })
    .await;
    let incarnations = |s: &AppState| {
        let mut v: Vec<(String, u64, String)> = view(s)
            .members
            .into_iter()
            .map(|m| (m.id, m.incarnation, m.state.to_string()))
            .collect();
        v.sort();
        v
    };
    let before = incarnations(&sa);
    // Joining and converging dropped nothing between members.
    for s in [&sa, &sb] {
        let text = metrics_text(s);
        assert!(
            !text.contains("reason=\"amplification\"") && !text.contains("reason=\"rate-limited\""),
            "{text}"
        );
    }

    // 20 000 datagrams the component would reject, from one non-member.
    let target: SocketAddr = sa.address.parse().unwrap();
    let flood = UdpSocket::bind("127.0.0.3:0").unwrap();
    let junk = encode_datagram(&[0xee; 32]).unwrap();
    let admitted_before = rejected(&sa, "component");
    let started = Instant::now();
    for batch in 0..40 {
        for _ in 0..500 {
            let _ = flood.send_to(&junk, target);
        }
        if batch % 4 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            both_alive(&sa) && both_alive(&sb),
            "a member looked dead during the flood"
        );
    }
    let elapsed = started.elapsed();
    wait_for("the flood to be counted as rate-limited", PATIENCE, || {
        series(
            &sa,
            "nodeplane_messages_rejected_total{reason=\"rate-limited\"}",
        ) > 1_000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admitted = rejected(&sa, "component") - admitted_before;
    let allowed = SOURCE_BURST + SOURCE_RATE_PER_SEC * (elapsed.as_secs_f64() + 1.0);
    eprintln!(
        "flood: 20000 datagrams in {elapsed:?}; {admitted} reached the component (bound {allowed:.0}); rate-limited {}",
        series(&sa, "nodeplane_messages_rejected_total{reason=\"rate-limited\"}")
    );
    assert!(
        (admitted as f64) <= allowed,
        "{admitted} flood messages reached the component (at most {allowed} allowed)"
    );

    // The member kept being heard: both still see each other live, no
    // incarnation moved, and n2's traffic keeps arriving.
    let heard = sa.metrics.messages_in.load(Ordering::Relaxed);
    wait_for("n2's traffic to keep arriving", PATIENCE, || {
        sa.metrics.messages_in.load(Ordering::Relaxed) > heard + 3
    })
    .await;
    assert!(both_alive(&sa) && both_alive(&sb));
    assert_eq!(incarnations(&sa), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_senders_slow_loris_and_the_event_log_are_bounded() {
    let dir = temp_dir("bounds");
    let a = agent(&dir, "n1", "stub", vec![], BTreeMap::new()).await;
    let s = a.state();
    let target: SocketAddr = s.address.parse().unwrap();

    // A frame claiming another host's address is dropped and its
    // connection closed; one claiming the connection's own IP is accepted.
    let in_before = s.metrics.messages_in.load(Ordering::Relaxed);
    let mut t = TcpStream::connect(target).unwrap();
    t.write_all(&encode_frame("127.0.0.9:7001", &vec![1u8; 2000]).unwrap())
        .unwrap();
    wait_for("the forged frame to be dropped", PATIENCE, || {
        rejected(&s, "forged-sender") == 1
    })
    .await;
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(
        matches!(t.read(&mut [0u8; 1]), Ok(0) | Err(_)),
        "connection closed"
    );
    let mut t = TcpStream::connect(target).unwrap();
    t.write_all(&encode_frame("127.0.0.1:7001", &vec![1u8; 2000]).unwrap())
        .unwrap();
    drop(t);
    wait_for("the honest frame to be accepted", PATIENCE, || {
        s.metrics.messages_in.load(Ordering::Relaxed) == in_before + 1
    })
    .await;

    // Slow loris from one IP: connections beyond the per-IP limit are
    // refused, the rest are closed after the idle timeout.
    let loris_ip: std::net::IpAddr = "127.0.0.4".parse().unwrap();
    let connect = || {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(loris_ip, 0)).unwrap();
        sock
    };
    let mut held = Vec::new();
    for _ in 0..MAX_TCP_CONNECTIONS_PER_IP + 4 {
        let mut c = connect().connect(target).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut c, &[WIRE_VERSION])
            .await
            .unwrap();
        held.push(c);
    }
    let per_ip = |s: &AppState| {
        series(
            s,
            "nodeplane_tcp_connections_closed_total{reason=\"per-ip-limit\"}",
        )
    };
    let idle = |s: &AppState| {
        series(
            s,
            "nodeplane_tcp_connections_closed_total{reason=\"idle-timeout\"}",
        )
    };
    wait_for(
        "connections beyond the per-IP limit refused",
        PATIENCE,
        || per_ip(&s) == 4,
    )
    .await;
    let opened = Instant::now();
    // Another IP is not affected meanwhile.
    let mut t = TcpStream::connect(target).unwrap();
    t.write_all(&encode_frame("127.0.0.1:7001", b"x").unwrap())
        .unwrap();
    drop(t);
    wait_for("another IP's frame accepted", PATIENCE, || {
        s.metrics.messages_in.load(Ordering::Relaxed) == in_before + 2
    })
    .await;
    wait_for(
        "idle connections closed",
        TCP_IDLE_TIMEOUT + PATIENCE,
        || idle(&s) >= MAX_TCP_CONNECTIONS_PER_IP as u64,
    )
    .await;
    assert!(
        opened.elapsed() + Duration::from_millis(500) >= TCP_IDLE_TIMEOUT,
        "closed before the idle timeout"
    );
    for mut c in held {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut c, &mut byte),
        )
        .await
        .expect("the agent closed the connection");
        assert!(matches!(n, Ok(0) | Err(_)));
    }
    // The IP may connect again.
    let sock = connect();
    let mut c = sock.connect(target).await.unwrap();
    let frame = encode_frame("127.0.0.4:7001", b"y").unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut c, &frame)
        .await
        .unwrap();
    drop(c);
    wait_for(
        "the IP's frame accepted after its connections closed",
        PATIENCE,
        || s.metrics.messages_in.load(Ordering::Relaxed) == in_before + 3,
    )
    .await;

    // The event log rotates by size and keeps recording.
    let detail = serde_json::json!({ "filler": "z".repeat(256 * 1024) });
    let lines = (EVENT_LOG_GENERATIONS as u64 + 1) * MAX_EVENT_LOG_BYTES / (256 * 1024) + 2;
    let events = Arc::new(s.events.clone());
    {
        let events = Arc::clone(&events);
        tokio::task::spawn_blocking(move || {
            for _ in 0..lines {
                events.record_value(Source::Agent, "filler", detail.clone());
            }
        })
        .await
        .unwrap();
    }
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    assert!(size(events.path()) < MAX_EVENT_LOG_BYTES);
    for n in 1..=EVENT_LOG_GENERATIONS {
        assert!(size(&events.generation_path(n)) >= MAX_EVENT_LOG_BYTES);
    }
    assert!(!events.generation_path(EVENT_LOG_GENERATIONS + 1).exists());
    assert!(series(&s, "nodeplane_event_log_rotations_total{reason=\"size\"}") >= 3);
    assert!(
        series(
            &s,
            "nodeplane_event_log_dropped_bytes_total{reason=\"size\"}"
        ) > 0
    );
    events.record(Source::Agent, "after-rotation", "{}");
    let text = std::fs::read_to_string(events.path()).unwrap();
    assert!(text.lines().any(|l| l.contains("after-rotation")));
}
