//! A three-agent cluster under attack from a host that is not a member
//! (issue 11, item 8): crafted datagrams, forged entries, a forged TCP
//! sender, a slow-loris client and a flood. After each attack no agent's
//! component has crashed, every node still sees every node `alive` at the
//! incarnation it had before, and the attacker got back no more bytes than
//! it sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use nodeplane_agent::framing::{encode_datagram, encode_frame};
use nodeplane_core::membership::{body, DeadBody, ProfileBody, SuspectBody};
use nodeplane_core::wire::{self, Message, WireEntry};
use nodeplane_entry::{Entry, GENESIS_PREV};

use crate::support::agents::SERIAL;
use crate::support::cluster::{all_alive, Cluster, CONVERGE_BOUND};
use crate::support::node::{signed, test_key_hex};

/// How long each attack's effects are watched for: several protocol
/// periods (1 s) and gossip ticks, so that a forged verdict or a crash
/// loop would show.
const WATCH: Duration = Duration::from_secs(4);
/// The attacker's address: on loopback, never a member.
const ATTACKER_IP: &str = "127.0.0.99";

/// (observer, subject) -> (state, incarnation) over every pair.
fn snapshot(c: &Cluster) -> Vec<Option<(String, u64)>> {
    let n = c.nodes.len();
    (0..n)
        .flat_map(|o| (0..n).map(move |s| (o, s)))
        .map(|(o, s)| c.seen(o, s))
        .collect()
}

/// Every agent's `crashes` counter from `/status`.
fn crashes(c: &Cluster) -> Vec<u64> {
    (0..c.nodes.len())
        .map(|i| {
            c.client(i)
                .get("/status")
                .ok()
                .and_then(|s| s["crashes"].as_u64())
                .unwrap_or(u64::MAX)
        })
        .collect()
}

/// Watches the cluster for [`WATCH`]: fails as soon as a component crashed
/// or any (observer, subject) pair differs from `before`.
fn assert_unmoved(c: &Cluster, attack: &str, before: &[Option<(String, u64)>]) {
    let started = Instant::now();
    while started.elapsed() < WATCH {
        let crashed = crashes(c);
        assert!(
            crashed.iter().all(|&n| n == 0),
            "{attack}: components crashed {crashed:?}\n{}",
            c.logs()
        );
        let now = snapshot(c);
        // A failed API read (None) during a busy moment is not a change.
        for (i, (b, a)) in before.iter().zip(&now).enumerate() {
            if a.is_some() {
                assert_eq!(
                    a,
                    b,
                    "{attack}: pair {i} (observer {}, subject {}) changed\n{}",
                    i / c.nodes.len(),
                    i % c.nodes.len(),
                    c.logs()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A non-member UDP endpoint that counts what it sends and receives.
struct Attacker {
    socket: UdpSocket,
    sent: usize,
}

impl Attacker {
    fn new() -> Attacker {
        let socket = UdpSocket::bind(format!("{ATTACKER_IP}:0")).expect("bind attacker");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Attacker { socket, sent: 0 }
    }

    fn send(&mut self, to: SocketAddr, payload: &[u8]) {
        let datagram = encode_datagram(payload).expect("fits a datagram");
        self.sent += datagram.len();
        self.socket.send_to(&datagram, to).expect("send");
    }

    /// Bytes received until nothing arrives for a second.
    fn received(&self) -> usize {
        let mut total = 0;
        let mut buf = [0u8; 65_536];
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < Duration::from_secs(1) {
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                total += n;
                quiet_since = Instant::now();
            }
        }
        total
    }
}

/// A fresh author's chain: its `join`, then `claims` (kind, body), signed
/// with a key of the attacker's own (it may mint ids, never write under a
/// member's).
fn forged_chain(author: &str, claims: &[(&str, Vec<u8>)]) -> Vec<WireEntry> {
    let join = signed(Entry::new(
        author,
        1,
        GENESIS_PREV,
        1,
        "join",
        body(&ProfileBody {
            inc: 1,
            addr: format!("{ATTACKER_IP}:9"),
            meta: vec![],
            signing_key: Some(test_key_hex(author)),
        }),
    ));
    let mut prev = join.id;
    let mut out = vec![WireEntry::from(&join)];
    for (i, (kind, b)) in claims.iter().enumerate() {
        let seq = 2 + i as u64;
        let e = signed(Entry::new(author, seq, prev, seq, kind, b.clone()));
        prev = e.id;
        out.push(WireEntry::from(&e));
    }
    out
}

fn verdict(subject: &str, inc: u64) -> (&'static str, Vec<u8>) {
    (
        "confirm-dead",
        body(&DeadBody {
            subject: subject.into(),
            inc,
            evidence: vec![],
            suspecters: 1,
        }),
    )
}

#[test]
fn a_cluster_under_attack_from_a_non_member_keeps_every_member_alive() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new("adversarial", 3);
    for i in 0..3 {
        c.start(i);
    }
    let all = [0, 1, 2];
    c.wait_for("three agents converge", CONVERGE_BOUND, |c| {
        all_alive(c, &all)
    });
    let before = snapshot(&c);
    let targets: Vec<SocketAddr> = c.nodes.iter().map(|n| n.listen).collect();
    let n1 = c.nodes[0].id.clone();
    let n1_inc = c.seen(1, 0).expect("n2 sees n1").1;

    // 1. A want for entries after sequence 2^64-1, and a 7-byte sync:
    //    answered with at most what was sent.
    let mut a = Attacker::new();
    for &to in &targets {
        a.send(
            to,
            &wire::encode(&Message::Want {
                heads: vec![(n1.clone(), u64::MAX)],
            }),
        );
        a.send(
            to,
            &wire::encode(&Message::Want {
                heads: vec![(n1.clone(), 0)],
            }),
        );
        a.send(to, &wire::encode(&Message::Sync { items: vec![] }));
    }
    let got = a.received();
    assert!(
        got <= a.sent,
        "a non-member sent {} bytes and got {got} back",
        a.sent
    );
    assert_unmoved(&c, "want 2^64-1 / sync from a non-member", &before);

    // 2. Forged verdicts: about n1 at 2^64-1 and at its current incarnation,
    //    and a suspicion at an incarnation n1 never announced, each by a
    //    single fresh author with no evidence.
    let forgeries = [
        ("evil-max", vec![verdict(&n1, u64::MAX)]),
        ("evil-now", vec![verdict(&n1, n1_inc)]),
        (
            "evil-suspect",
            vec![(
                "suspect",
                body(&SuspectBody {
                    subject: n1.clone(),
                    inc: n1_inc + 7,
                }),
            )],
        ),
    ];
    for (author, claims) in &forgeries {
        let entries = forged_chain(author, claims);
        for &to in &targets {
            a.send(
                to,
                &wire::encode(&Message::Gossip {
                    entries: entries.clone(),
                }),
            );
        }
        assert_unmoved(&c, &format!("forged entries by {author}"), &before);
    }

    // 3. A TCP frame whose claimed sender (n2's control address) is not the
    //    connection's peer (127.0.0.1).
    let forged = wire::encode(&Message::Gossip {
        entries: forged_chain("evil-tcp", &[verdict(&n1, n1_inc)]),
    });
    let frame = encode_frame(&c.nodes[1].listen.to_string(), &forged).expect("frame");
    if let Ok(mut stream) = TcpStream::connect_timeout(&targets[0], Duration::from_secs(2)) {
        let _ = stream.write_all(&frame);
    }
    assert_unmoved(&c, "forged TCP sender", &before);

    // 4. Slow loris: connections that send one byte and then hold on. The
    //    agent closes them (idle timeout) while the cluster stays healthy.
    let mut held: Vec<TcpStream> = (0..32)
        .filter_map(|_| TcpStream::connect_timeout(&targets[0], Duration::from_secs(2)).ok())
        .collect();
    for s in &mut held {
        let _ = s.write_all(&[1]);
        let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    }
    assert_unmoved(&c, "slow-loris connections", &before);
    let started = Instant::now();
    let mut open = held.len();
    while open > 0 && started.elapsed() < Duration::from_secs(60) {
        held.retain_mut(still_open);
        open = held.len();
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        open, 0,
        "held connections still open after 60 s: no idle timeout"
    );

    // 5. A flood: 10 s at about 10 000 datagrams per second from one source.
    let flood = wire::encode(&Message::Want {
        heads: vec![(n1.clone(), 0)],
    });
    let started = Instant::now();
    let mut flooder = Attacker::new();
    while started.elapsed() < Duration::from_secs(10) {
        // 12 datagrams, then about a millisecond: some 10 000 per second.
        for &to in &targets {
            for _ in 0..4 {
                flooder.send(to, &flood);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let got = flooder.received();
    assert!(
        got <= flooder.sent,
        "the flooder sent {} bytes and got {got} back",
        flooder.sent
    );
    assert_unmoved(&c, "10 s flood from one source", &before);
    assert!(all_alive(&c, &all), "{}", c.logs());
}

/// Whether the peer still holds `s` open: a read that times out means
/// open; end of stream or an error means the agent closed it.
fn still_open(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}
