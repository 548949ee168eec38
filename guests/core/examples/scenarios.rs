//! Measures SCENARIOS.md-like figures on the native harness.
//! `cargo run --release --example scenarios -- [s1|s2|s3|s4|s7|s8b] [N] [seeds]`

use nodeplane_core::testkit::Sim;
use nodeplane_core::PeerState;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// S6: two nodes with a shared history of `h` entries over `a` authors plus
/// `d` entries each that the other lacks. Returns (total bytes, bytes of
/// the entries themselves, round trips).
fn s6(h: usize, d: usize, a: usize) -> (usize, usize, usize) {
    use nodeplane_core::ledger::{Entry, GENESIS_PREV};
    use nodeplane_core::wire::{self, Message};
    use nodeplane_core::{Effect, Node, NodeConfig, Tunables};
    use std::collections::BTreeMap;
    let mut heads: BTreeMap<String, (u64, [u8; 32])> = BTreeMap::new();
    fn push(
        heads: &mut BTreeMap<String, (u64, [u8; 32])>,
        out: &mut Vec<Entry>,
        author: String,
        i: usize,
    ) {
        let (seq, prev) = heads
            .get(&author)
            .map_or((1, GENESIS_PREV), |(s, id)| (s + 1, *id));
        let keys = nodeplane_core::testkit::test_keys(&author);
        // An author's first entry is a `join` declaring its key.
        let (kind, body) = if seq == 1 {
            (
                "join",
                format!(
                    "{{\"i\":{i},\"signing_key\":\"{}\"}}",
                    hex::encode(keys.public_key())
                ),
            )
        } else {
            ("note", format!("{{\"i\":{i}}}"))
        };
        let e = keys.sign(Entry::new(
            &author,
            seq,
            prev,
            i as u64,
            kind,
            body.into_bytes(),
        ));
        heads.insert(author, (seq, e.id));
        out.push(e);
    }
    let mut shared = Vec::new();
    for i in 0..h {
        push(&mut heads, &mut shared, format!("a{}", i % a), i);
    }
    let base = heads.clone();
    let mut la = shared.clone();
    for i in 0..d {
        push(
            &mut heads,
            &mut la,
            format!("a{}", i % a.div_ceil(2)),
            h + i,
        );
    }
    heads = base;
    let mut lb = shared;
    for i in 0..d {
        push(
            &mut heads,
            &mut lb,
            format!("a{}", a.div_ceil(2) + i % (a / 2).max(1)),
            h + d + i,
        );
    }
    let cfg = |id: &str, addr: &str| NodeConfig {
        node_id: id.into(),
        address: addr.into(),
        metadata: vec![],
        tunables: Tunables::DEFAULTS,
    };
    use nodeplane_core::testkit::test_signer;
    let mut na = Node::new(cfg("na", "10.1.0.1:7000"), la, 1, 0, test_signer("na")).unwrap();
    let mut nb = Node::new(cfg("nb", "10.1.0.2:7000"), lb, 2, 0, test_signer("nb")).unwrap();
    na.join(0, &[]).unwrap();
    nb.join(0, &[]).unwrap();
    na.drain_effects();
    nb.drain_effects();
    na.reconcile_with(1, "10.1.0.2:7000").unwrap();
    let sends = |n: &mut Node| -> Vec<Vec<u8>> {
        n.drain_effects()
            .into_iter()
            .filter_map(|e| {
                if let Effect::Send { payload, .. } = e {
                    Some(payload)
                } else {
                    None
                }
            })
            .collect()
    };
    let (mut total, mut entry_bytes, mut rounds) = (0, 0, 0);
    let mut to_b = sends(&mut na);
    while !to_b.is_empty() {
        rounds += 1;
        let mut to_a = Vec::new();
        for p in to_b.drain(..) {
            total += p.len();
            if let Ok(Message::Entries { entries, .. }) = wire::decode(&p) {
                entry_bytes += entries
                    .iter()
                    .map(|e| {
                        wire::encode(&Message::Gossip {
                            entries: vec![e.clone()],
                        })
                        .len()
                            - 3
                    })
                    .sum::<usize>();
            }
            nb.handle_message(2, "10.1.0.1:7000", &p).unwrap();
            to_a.extend(sends(&mut nb));
        }
        for p in to_a {
            total += p.len();
            if let Ok(Message::Entries { entries, .. }) = wire::decode(&p) {
                entry_bytes += entries
                    .iter()
                    .map(|e| {
                        wire::encode(&Message::Gossip {
                            entries: vec![e.clone()],
                        })
                        .len()
                            - 3
                    })
                    .sum::<usize>();
            }
            na.handle_message(3, "10.1.0.2:7000", &p).unwrap();
            to_b.extend(sends(&mut na));
        }
    }
    assert_eq!(na.frontier_digest(), nb.frontier_digest());
    (total, entry_bytes, rounds)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("s1");
    if which == "s6" {
        for a in [2usize, 64, 1024] {
            for h in [1_000usize, 100_000] {
                for d in [1usize, 100, 10_000] {
                    let (total, entries, rounds) = s6(h, d, a);
                    println!(
                        "A={a} H={h} d={d}: overhead {} B (total {total} B), {rounds} round trips",
                        total - entries
                    );
                }
            }
        }
        return;
    }
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let seeds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut results = Vec::new();
    for seed in 1..=seeds {
        let mut sim = Sim::new(n, seed);
        match which {
            "s1" => {
                let wall0 = std::time::Instant::now();
                sim.start_all();
                let t = sim.run_until_pred(100, 120_000, |s| s.converged());
                let conv = t.map_or(f64::NAN, |t| t as f64 / 1000.0);
                let wall1 = std::time::Instant::now();
                let b0 = sim.stats.clone();
                println!("bootstrap traffic: {:?}", b0.by_type);
                let mut last = sim.stats.bytes;
                let mut profile = Vec::new();
                for _ in 0..12 {
                    sim.run_for(5_000);
                    profile.push((sim.stats.bytes - last) / n as u64 / 5);
                    last = sim.stats.bytes;
                }
                let steady = wall1.elapsed().as_secs_f64();
                println!(
                    "wall: bootstrap {:.2} s, steady 60 s in {steady:.2} s = {:.0} node-s per wall s",
                    (wall1 - wall0).as_secs_f64(),
                    60.0 * n as f64 / steady
                );
                println!("B/node/s per 5 s window: {profile:?}");
                for (k, (m, b)) in &sim.stats.by_type {
                    let (m0, b0) = b0.by_type.get(k).copied().unwrap_or_default();
                    print!("{k}: {} msgs {} B; ", m - m0, b - b0);
                }
                println!();
                let bytes = (sim.stats.bytes - b0.bytes) as f64 / n as f64 / 60.0;
                let msgs = (sim.stats.messages - b0.messages) as f64 / n as f64 / 60.0;
                println!("seed {seed}: converge {conv:.1} s, steady {bytes:.1} B/node/s, {msgs:.2} msg/node/s, identical {}", sim.ledgers_identical());
                results.push(conv);
            }
            "s2" => {
                sim.start_all();
                sim.run_until_pred(100, 120_000, |s| s.converged());
                sim.run_for(5_000);
                let victim = n / 2;
                sim.crash(victim);
                let first = sim.run_until_pred(50, 60_000, |s| s.any_sees(victim, PeerState::Dead));
                let t0 = first.unwrap_or(0);
                let all = sim.run_until_pred(50, 60_000, |s| s.all_see(victim, PeerState::Dead));
                let all = all.map_or(f64::NAN, |t| (t + t0) as f64 / 1000.0);
                println!(
                    "seed {seed}: first dead {:.2} s, all dead {all:.2} s, false deaths {}",
                    t0 as f64 / 1000.0,
                    sim.false_deaths.len()
                );
                results.push(all);
            }
            "s3" => {
                let loss: f64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0.2);
                sim.start_all();
                sim.run_until_pred(100, 120_000, |s| s.converged());
                sim.loss = loss;
                let secs: u64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(600);
                sim.run_for(secs * 1000);
                let fs = sim.log_count("suspected");
                println!("seed {seed}: loss {loss}: false deaths {}, suspicions written {fs}, refutations {}", sim.false_deaths.len(), sim.log_count("refuted"));
                results.push(sim.false_deaths.len() as f64);
            }
            "s4" => {
                sim.start_all();
                sim.run_until_pred(100, 120_000, |s| s.converged());
                let a: Vec<usize> = (0..n / 2).collect();
                let b: Vec<usize> = (n / 2..n).collect();
                sim.partition(&[a, b]);
                sim.run_for(60_000);
                let dead = (0..n).filter(|&j| sim.any_sees(j, PeerState::Dead)).count();
                sim.heal();
                let t = sim.run_until_pred(100, 120_000, |s| s.converged());
                let t = t.map_or(f64::NAN, |t| t as f64 / 1000.0);
                sim.run_for(3_000);
                println!(
                    "seed {seed}: dead during split {dead}, heal->converged {t:.1} s, identical {}",
                    sim.ledgers_identical()
                );
                results.push(t);
            }
            "s7" => {
                sim.start_all();
                sim.run_until_pred(100, 120_000, |s| s.converged());
                let leaver = n / 3;
                sim.leave(leaver);
                let t = sim.run_until_pred(10, 30_000, |s| s.all_see(leaver, PeerState::Left));
                let t = t.map_or(f64::NAN, |t| t as f64 / 1000.0);
                println!(
                    "seed {seed}: left everywhere {t:.2} s, ever dead {}",
                    sim.false_deaths.len()
                );
                results.push(t);
            }
            "s8b" => {
                sim.start_all();
                sim.run_until_pred(100, 120_000, |s| s.converged());
                let m = n / 4;
                sim.set_mute(m);
                sim.run_for(120_000);
                let mute_dead = sim.all_see(m, PeerState::Dead);
                let healthy_dead: usize = sim.false_deaths.iter().filter(|(_, s)| *s != m).count();
                let refuters_mute: Vec<usize> = (0..n)
                    .filter(|&i| i != m && sim.nodes[i].logs.iter().any(|(k, _)| k == "refuted"))
                    .collect();
                let suspecters: Vec<usize> = (0..n)
                    .filter(|&i| sim.nodes[i].logs.iter().any(|(k, _)| k == "suspected"))
                    .collect();
                sim.heal();
                let t = sim.run_until_pred(100, 120_000, |s| s.converged());
                sim.run_for(10_000);
                let refuters: Vec<usize> = (0..n)
                    .filter(|&i| i != m && sim.nodes[i].logs.iter().any(|(k, _)| k == "refuted"))
                    .collect();
                println!("seed {seed}: mute n{m}; suspecters {suspecters:?}; healthy refuting during mute {refuters_mute:?}, by the end {refuters:?}");
                println!("seed {seed}: mute dead everywhere {mute_dead}, healthy declared dead {healthy_dead}, restore->converged {:?} ms", t);
                results.push(healthy_dead as f64);
            }
            "s5" => {
                sim.start_all();
                sim.run_until_pred(100, 120_000, |s| s.converged());
                let r = n / 5;
                let inc0 = sim.member(0, r).unwrap().incarnation;
                sim.crash(r);
                sim.run_for(30_000);
                sim.restart(r);
                let t = sim.run_until_pred(50, 60_000, |s| s.all_see(r, PeerState::Alive));
                let t = t.map_or(f64::NAN, |t| t as f64 / 1000.0);
                let inc = sim.member(0, r).unwrap().incarnation;
                println!("seed {seed}: alive everywhere {t:.2} s after restart, incarnation {inc0} -> {inc}, false deaths {}", sim.false_deaths.len());
                results.push(t);
            }
            "s8a" => {
                sim.start_all();
                sim.run_until_pred(100, 120_000, |s| s.converged());
                let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                let mut blocked = 0;
                for a in 0..n {
                    for b in a + 1..n {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if x % 10 == 0 {
                            sim.block_pair(a, b);
                            blocked += 1;
                        }
                    }
                }
                let s0 = sim.log_count("suspected");
                sim.run_for(300_000);
                println!(
                    "seed {seed}: {blocked} blocked pairs: false deaths {}, suspicions written {}",
                    sim.false_deaths.len(),
                    sim.log_count("suspected") - s0
                );
                results.push(sim.false_deaths.len() as f64);
            }
            "s8c" => {
                sim.start_all();
                sim.run_until_pred(100, 120_000, |s| s.converged());
                let f = n / 6;
                let u0: Vec<usize> = sim.nodes.iter().map(|x| x.updates.len()).collect();
                for k in 0..60 {
                    if k % 2 == 0 {
                        sim.partition(&[vec![f]]);
                    } else {
                        sim.heal();
                    }
                    sim.run_for(2_000);
                }
                sim.heal();
                let settle = sim
                    .run_until_pred(100, 60_000, |s| s.converged())
                    .map_or(f64::NAN, |t| t as f64 / 1000.0);
                let mut changes: Vec<usize> = (0..n)
                    .filter(|&i| i != f)
                    .map(|i| {
                        sim.nodes[i].updates[u0[i]..]
                            .iter()
                            .filter(|u| {
                                u.peer == format!("n{f}")
                                    && (u.current.state == PeerState::Dead
                                        || u.previous == Some(PeerState::Dead))
                            })
                            .count()
                    })
                    .collect();
                changes.sort();
                let others: usize = sim.false_deaths.iter().filter(|(_, s)| *s != f).count();
                println!("seed {seed}: dead-changes per observer median {} max {}, false deaths of others {others}, settle {settle:.1} s", changes[changes.len() / 2], changes[changes.len() - 1]);
                results.push(changes[changes.len() - 1] as f64);
            }
            _ => panic!("unknown scenario"),
        }
    }
    println!(
        "{which} N={n}: median {:.2} max {:.2}",
        median(&mut results.clone()),
        results.iter().cloned().fold(f64::NAN, f64::max)
    );
}

#[allow(dead_code)]
fn debug_leave() {}
