//! The real data plane (issue 16): `nodeplane agent`s and Mesh VPN hosts
//! in network namespaces driving userspace WireGuard interfaces, with
//! faults made by the kernel (a killed process, bridge ports taken down).
//! Needs root, `/dev/net/tun`, `ip`, `wireguard-go` and `ping`; without
//! them each test says what is missing and passes, unless
//! `NODEPLANE_REQUIRE_DATAPLANE=1` (set by `.ci/run` when it could install
//! them) makes a missing requirement a failure.

#[path = "../support/mod.rs"]
mod support;

mod demo;
mod e2e;
mod figures;

/// Not a test: `scripts/testbed` brings a bed up with
/// `NODEPLANE_TESTBED_NODES` nodes (default 4), prints how to reach it,
/// and tears it down when stdin closes or a line is entered.
#[test]
#[ignore = "interactive: run through scripts/testbed"]
fn testbed_hold() {
    use std::io::BufRead as _;
    let missing = support::netns::missing();
    assert!(
        missing.is_empty(),
        "the test bed needs: {}",
        missing.join("; ")
    );
    let n: usize = std::env::var("NODEPLANE_TESTBED_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut bed =
        support::netns::Testbed::create(n, std::path::Path::new(env!("CARGO_BIN_EXE_nodeplane")))
            .unwrap_or_else(|e| panic!("{e}"));
    bed.start_all().unwrap_or_else(|e| panic!("{e}"));
    let all: Vec<usize> = (0..n).collect();
    let converged = bed.wait_for(
        "every interface holds every peer",
        std::time::Duration::from_secs(120),
        |b| {
            all.iter()
                .all(|&i| all.iter().all(|&p| p == i || b.has_peer(i, p)))
        },
    );
    match converged {
        Ok(took) => println!(
            "test bed {} up; converged in {:.1}s",
            bed.prefix,
            took.as_secs_f64()
        ),
        Err(e) => println!("test bed {} up, NOT converged: {e}", bed.prefix),
    }
    println!("logs and data: {}", bed.root.display());
    println!("NODE  NAMESPACE  UNDERLAY  OVERLAY  WG IF  BRIDGE PORT");
    for node in &bed.nodes {
        println!(
            "{}  {}  {}  {}  {}  {}",
            node.id, node.netns, node.underlay, node.overlay, node.wg_if, node.bridge_port
        );
    }
    if let (Some(a), Some(b)) = (bed.nodes.first(), bed.nodes.get(1)) {
        println!("try:  ip netns exec {} ping {}", a.netns, b.overlay);
        println!("      wg show {}", a.wg_if);
        println!(
            "      ip netns exec {} {} members --api {}",
            a.netns,
            env!("CARGO_BIN_EXE_nodeplane"),
            support::netns::API_ADDR
        );
        println!(
            "      ip link set {} down   # cut {} off the bridge",
            b.bridge_port, b.id
        );
    }
    println!("press Enter (or close stdin) to tear the test bed down");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}
