//! The control channel of an in-process agent (stub component) over real
//! loopback sockets: malformed, truncated, oversized and wrong-version
//! datagrams and frames are rejected and counted, good ones are accepted,
//! inbound fault rules drop traffic, and the agent keeps serving.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nodeplane_agent::faults::FaultRequest;
use nodeplane_agent::framing::{encode_datagram, encode_frame, WIRE_VERSION};
use nodeplane_agent::{Agent, FileConfig};

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_traffic_is_rejected_and_counted_good_traffic_accepted() {
    let dir = Dir(std::env::temp_dir().join(format!("nodeplane-agent-net-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
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
