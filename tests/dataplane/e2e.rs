//! End to end on the test bed: four namespaces, overlay pings between every
//! pair; a `kill -9`, a restart, a 3 | 1 partition made by taking a bridge
//! port down, and a live hot swap, each checked on the WireGuard
//! interfaces themselves (UAPI get) and by overlay pings.

use std::time::{Duration, Instant};

use crate::support::agents::SERIAL;
use crate::support::netns::{missing, Testbed};

/// Nodes in the bed: a 3 | 1 split leaves a strict majority.
const NODES: usize = 4;
/// Start-up (each agent compiles its component, on two cores shared with
/// the other namespaces' processes) plus convergence and first handshakes.
const CONVERGE_BOUND: Duration = Duration::from_secs(120);
/// A killed or cut-off node declared dead by every survivor with the
/// default tunables (about 10 s unloaded: docs/performance.md) and removed
/// from every interface, with slack for a loaded machine.
const DEATH_BOUND: Duration = Duration::from_secs(60);
/// A restarted or healed node back on every interface, pings resumed.
const RETURN_BOUND: Duration = Duration::from_secs(90);
/// Pings that must keep working get this long to answer once: one lost
/// ping on a loaded machine (each waits 1 s) is not a broken tunnel.
const KEEPS_WORKING_BOUND: Duration = Duration::from_secs(10);
/// Interval of the continuous pings that measure a gap during a swap.
const PING_EVERY: Duration = Duration::from_millis(200);

/// Skips (with the reason) when the machine lacks what the bed needs,
/// unless `NODEPLANE_REQUIRE_DATAPLANE=1`; true when the test may run.
pub(crate) fn can_run(test: &str) -> bool {
    let missing = missing();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "{test}: the data-plane test bed needs {}; `.ci/run` installs the packages when run as root",
        missing.join("; ")
    );
    assert!(
        std::env::var("NODEPLANE_REQUIRE_DATAPLANE").as_deref() != Ok("1"),
        "{why} (NODEPLANE_REQUIRE_DATAPLANE=1)"
    );
    eprintln!("SKIPPED {why}");
    false
}

fn pairs(nodes: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for &a in nodes {
        for &b in nodes {
            if a != b {
                out.push((a, b));
            }
        }
    }
    out
}

/// Whether every node of `on` has exactly the peers `peers` (minus itself)
/// on its interface.
fn interfaces_hold(bed: &Testbed, on: &[usize], peers: &[usize]) -> bool {
    on.iter().all(|&i| {
        let want: Vec<usize> = peers.iter().copied().filter(|&p| p != i).collect();
        bed.device(i).is_ok_and(|d| d.peers.len() == want.len())
            && want.iter().all(|&p| bed.has_peer(i, p))
    })
}

fn ok<T>(result: Result<T, String>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn wireguard_follows_membership_through_kill_restart_and_partition() {
    if !can_run("dataplane::e2e") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let mut bed = ok(Testbed::create(
        NODES,
        std::path::Path::new(env!("CARGO_BIN_EXE_nodeplane")),
    ));
    eprintln!("test bed {} in {}", bed.prefix, bed.root.display());
    ok(bed.start_all());
    let all: Vec<usize> = (0..NODES).collect();

    // 1. Every interface holds every other node; overlay pings between every pair.
    let took = ok(
        bed.wait_for("every interface holds every peer", CONVERGE_BOUND, |b| {
            interfaces_hold(b, &all, &all)
        }),
    );
    eprintln!("peers on every interface after {:.1}s", took.as_secs_f64());
    let took = ok(
        bed.wait_for("overlay ping between every pair", CONVERGE_BOUND, |b| {
            b.ping_pairs(&pairs(&all)).is_empty()
        }),
    );
    eprintln!("every pair pings after {:.1}s more", took.as_secs_f64());

    // 2. kill -9 one agent: after the death verdict its peer leaves every
    //    survivor's interface; pings to it stop, the others keep working.
    let victim = 3;
    let survivors: Vec<usize> = vec![0, 1, 2];
    let killed = Instant::now();
    bed.kill_agent(victim);
    ok(bed.wait_for(
        "the killed node leaves every survivor's interface",
        DEATH_BOUND,
        |b| survivors.iter().all(|&i| !b.has_peer(i, victim)),
    ));
    let removed_after = killed.elapsed();
    for &i in &survivors {
        assert_eq!(
            bed.state_of(i, victim).as_deref(),
            Some("dead"),
            "a peer leaves an interface only after the death verdict\n{}",
            bed.diagnostics()
        );
    }
    eprintln!(
        "kill -9 -> peer removed from every interface in {:.1}s",
        removed_after.as_secs_f64()
    );
    let to_victim: Vec<(usize, usize)> = survivors.iter().map(|&i| (i, victim)).collect();
    assert_eq!(
        bed.ping_pairs(&to_victim),
        to_victim,
        "no overlay ping reaches the dead node\n{}",
        bed.diagnostics()
    );
    ok(bed.wait_for(
        "the survivors keep pinging each other",
        KEEPS_WORKING_BOUND,
        |b| b.ping_pairs(&pairs(&survivors)).is_empty(),
    ));

    // 3. Restart on the same data directory: re-added, pings resume.
    let restarted = Instant::now();
    ok(bed.start_agent(victim, &[]));
    ok(bed.wait_for(
        "the restarted node is back on every interface",
        RETURN_BOUND,
        |b| interfaces_hold(b, &all, &all),
    ));
    ok(
        bed.wait_for("every pair pings after the restart", RETURN_BOUND, |b| {
            b.ping_pairs(&pairs(&all)).is_empty()
        }),
    );
    eprintln!(
        "restart -> every pair pings in {:.1}s",
        restarted.elapsed().as_secs_f64()
    );

    // 4. Partition {n1, n2, n3} | {n4} by taking n4's bridge port down:
    //    the majority may declare n4 dead (and drops its peer); the
    //    minority may not declare anyone dead, so n4 keeps every peer.
    let minority = 3;
    let majority: Vec<usize> = vec![0, 1, 2];
    let cut = Instant::now();
    ok(bed.set_link(minority, false));
    ok(
        bed.wait_for("the majority drops the minority", DEATH_BOUND, |b| {
            majority.iter().all(|&i| {
                !b.has_peer(i, minority) && b.state_of(i, minority).as_deref() == Some("dead")
            })
        }),
    );
    eprintln!(
        "partition -> majority dropped the minority in {:.1}s",
        cut.elapsed().as_secs_f64()
    );
    let minority_view: Vec<Option<String>> = majority
        .iter()
        .map(|&j| bed.state_of(minority, j))
        .collect();
    assert!(
        minority_view.iter().all(|s| s.as_deref() != Some("dead")),
        "the minority never declares the majority dead: {minority_view:?}\n{}",
        bed.diagnostics()
    );
    assert!(
        interfaces_hold(&bed, &[minority], &all),
        "the minority keeps every peer (suspect is not a verdict)\n{}",
        bed.diagnostics()
    );
    ok(bed.wait_for(
        "the majority keeps pinging inside its side",
        KEEPS_WORKING_BOUND,
        |b| b.ping_pairs(&pairs(&majority)).is_empty(),
    ));
    let healed = Instant::now();
    ok(bed.set_link(minority, true));
    ok(bed.wait_for(
        "every interface holds every peer after the heal",
        RETURN_BOUND,
        |b| interfaces_hold(b, &all, &all),
    ));
    ok(
        bed.wait_for("every pair pings after the heal", RETURN_BOUND, |b| {
            b.ping_pairs(&pairs(&all)).is_empty()
        }),
    );
    eprintln!(
        "heal -> every pair pings in {:.1}s",
        healed.elapsed().as_secs_f64()
    );

    // 5. Hot swap every node's component (node plane -> node plane, live)
    //    while n1 pings n2 continuously: the interfaces keep their peers
    //    and the longest gap between answered pings is measured.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let longest_gap = std::thread::scope(|s| {
        let pinger = s.spawn(|| {
            let mut last_ok = Instant::now();
            let mut longest = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let tick = Instant::now();
                if bed.ping(0, 1) {
                    longest = longest.max(last_ok.elapsed());
                    last_ok = Instant::now();
                }
                std::thread::sleep(PING_EVERY.saturating_sub(tick.elapsed()));
            }
            longest.max(last_ok.elapsed())
        });
        for i in 0..NODES {
            if let Err(e) = bed.agent_command(i, &["swap", "--component", "nodeplane"]) {
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
                panic!("swap on node {i}: {e}");
            }
        }
        let settle = Instant::now();
        while settle.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(PING_EVERY);
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        pinger.join().unwrap_or(Duration::MAX)
    });
    assert!(
        interfaces_hold(&bed, &all, &all),
        "a hot swap changes no interface\n{}",
        bed.diagnostics()
    );
    eprintln!(
        "hot swap on every node: longest gap between answered n1 -> n2 pings {:.2}s (pinging every {:?})",
        longest_gap.as_secs_f64(),
        PING_EVERY
    );
    assert!(
        longest_gap < Duration::from_secs(3),
        "the data plane keeps working through a hot swap: gap {longest_gap:?}"
    );
    eprintln!("whole test {:.1}s", started.elapsed().as_secs_f64());
}
