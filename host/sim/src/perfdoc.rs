//! docs/performance.md, rendered from one `nodeplane bench` run
//! (`nodeplane bench --markdown > docs/performance.md`): every table comes
//! from the same run's figures, and a goal the run misses says so in the
//! table. The hand-written prose that explains the figures is part of the
//! template here, so it is regenerated with them.

use serde_json::Value;

use crate::bench::{S1_SIZES, S4_UNEVEN_SPLIT, S9_CRASHES, SCALE_SIZES};
use crate::network::DEFAULT_BANDWIDTH_BPS;

/// The sections measured outside the simulator, kept verbatim (their
/// figures come from the commands they name, not from this run).
const MEASURED_SEPARATELY: &str = r#"### Hot swap pause

The pause is the time during which calls and messages wait while a node
switches components (`SwapReport.pause`: instantiate, initialise from the
ledger store, rejoin, resubscribe, self-check, switch, emit the view
difference). Compilation of the new component happens before the lock is
taken and is not part of it.

| where | median | max | command |
| --- | ---: | ---: | --- |
| in process, dev profile, 20 swaps stub ⇄ nodeplane with a subscribed Mesh VPN | 0.47–0.53 ms | 0.65 ms | `cargo test --test meshvpn measure_hot_swap_pause -- --ignored --nocapture` |
| five agent processes, release build, stub → nodeplane, as reported by `POST /admin/component` | 1.13 ms | 1.21 ms | `cargo run --release -- demo` (step 2) |

### Multi-process timings (the demo, release build)

From one run of `cargo run --release -- demo` (five agents on loopback, real
UDP/TCP and wall-clock timers): membership converged 0.2 s after the swap;
a `kill -9`'d node was first suspected after 1.4 s and `dead` on every
survivor 2.3 s later; the restarted node was `alive` everywhere 0.2 s after
it answered its API (incarnation 1 → 2); the 3-node side of a 3 | 2 split
declared the other two dead after 7 s while the 2-node side kept the
majority at `suspect`; after the heal every node saw all five `alive` within
0.5 s with one frontier digest. The whole demo takes about 16 s.

### Real data plane

Four (five for starvation) network namespaces on one bridge, each with a
`wireguard-go` interface, a `nodeplane agent` (default tunables, cluster
key) and a Mesh VPN host applying the peer set through the WireGuard
UAPI (tests/support/netns.rs, docs/meshvpn.md "Worked example"). Faults
are made by the kernel: `kill -9`, a bridge port taken down, nftables
drops in a namespace, a cgroup CPU quota. Measured on the 2-core
development machine while other builds ran; root; Debian bookworm
`wireguard-go` 0.0.20220316.

```sh
cargo test --test dataplane e2e -- --nocapture                                   # in scripts/test
cargo test --test dataplane -- figures --ignored --nocapture --test-threads=1    # figures below
```

| what | figure |
| --- | --- |
| start → every pair pings over the overlay | 0.6–19.9 s over three runs (component compile when cold, then first handshakes 0–5 s) |
| `kill -9` of an agent → its peer off every survivor's interface (death verdict first) | 3.6–4.2 s |
| restart → every pair pings again | 1.4–4.5 s |
| 3 \| 1 partition (bridge port down) → majority removes the minority's peer | 4.0–5.6 s; the minority keeps all peers, declares no one dead |
| heal → every pair pings again | 1.7–2.3 s |
| live hot swap (node plane → node plane) on all nodes: longest gap between answered overlay pings, one every 200 ms | 0.20 s (no ping lost) |
| CPU starvation: 5 agents + 2 busy loops limited to one core for 60 s | 0 verdicts, 0 suspicions, 0 / 1 200 overlay pings lost (throttled in 399 of 600 periods) |
| mute node (nftables: all its output dropped), 60 s | off every other interface 3.6 s after muting; it declares no one dead; every pair pings 2.5 s after the restore |
| non-transitive pair (nftables: n1 and n2 drop each other), 60 s | 0 verdicts, 0 suspicions; other pairs lose 0 / 600 pings |
| one-way cut (nftables: n2 → n1 dropped), 60 s | 0 verdicts, 0 suspicions; other pairs lose 0 / 600 pings |

One-way cuts use nftables (`nft` in the namespace); `iptables` is not
installed on the machine and not needed.

### Cluster key rotation (five agents)

`cargo test --test agent keys::a_five -- --nocapture`: five agents on
loopback rotate their cluster key one node at a time (install everywhere,
`use` on each in turn, remove everywhere), each step gated on at least 10
more messages sent by every agent: converged in 14.1 s, each of the 7
steps 5.2–6.1 s, no member ever seen as anything but `alive`, no
suspicion, no message dropped for a key. Sealing costs 51 bytes per
message (a full 1 400-byte datagram payload seals to 1 452 bytes)."#;

/// (median, max) of `figure` in the run `key`, if that run reported it;
/// NaN when some seed never reached it (a bound on it is then missed).
fn agg(doc: &Value, key: &str, figure: &str) -> Option<(f64, f64)> {
    if doc.get(key)?.get("error").is_some() {
        return Some((f64::NAN, f64::NAN));
    }
    let a = doc.get(key)?.get("aggregate")?.get(figure)?;
    let missing = a.get("missing").and_then(Value::as_u64).unwrap_or(0) > 0;
    let g = |k: &str| a.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    if missing {
        return Some((f64::NAN, f64::NAN));
    }
    Some((g("median"), g("max")))
}

/// A number for a table: integers plain, others with up to 3 significant
/// decimals.
fn num(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn mm(v: Option<(f64, f64)>, unit: &str) -> String {
    match v {
        Some((m, _)) if m.is_nan() => "**not reached in every seed, or the run failed**".into(),
        Some((m, x)) => format!("{}{unit} / {}{unit}", num(m), num(x)),
        None => "not measured".into(),
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

/// `Some(all ok)` over the checks that could be made, `None` if none could.
fn all(checks: &[Option<bool>]) -> Option<bool> {
    let made: Vec<bool> = checks.iter().flatten().copied().collect();
    if made.is_empty() {
        None
    } else {
        Some(made.iter().all(|&b| b))
    }
}

fn max_at_most(v: Option<(f64, f64)>, bound: f64) -> Option<bool> {
    v.map(|(_, x)| x <= bound)
}

struct Row {
    scenario: String,
    foca: &'static str,
    memberlist: &'static str,
    target: &'static str,
    ours: String,
    met: Option<bool>,
}

fn comparison(doc: &Value) -> Vec<Row> {
    let mut rows = Vec::new();
    let top = S1_SIZES
        .iter()
        .rev()
        .find(|n| doc.get(format!("s1_n{n}")).is_some());
    let scale_converged = doc
        .get("scale_n1024")
        .and_then(|v| v.get("time_to_converge_s"))
        .and_then(Value::as_f64);
    if let Some(n) = top {
        let conv = agg(doc, &format!("s1_n{n}"), "time_to_converge_s");
        rows.push(Row {
            scenario: format!("S1 N={n} full convergence"),
            foca: "N=1024: 315 s / 690 s",
            memberlist: "N=64: 77 s / 81 s; N=128: 5.1 s / 109 s",
            target: "≤ 10 s / 20 s (N=1024)",
            ours: match (*n < 1024, scale_converged) {
                (true, Some(t)) => format!(
                    "{}; N=1024 (one seed, the scale run): {} s",
                    mm(conv, " s"),
                    num(t)
                ),
                (true, None) => format!("{} (N=1024 not run)", mm(conv, " s")),
                (false, _) => mm(conv, " s"),
            },
            met: match (*n < 1024, scale_converged) {
                (true, Some(t)) => Some(t <= 10.0),
                (true, None) => None,
                (false, _) => conv.map(|(m, x)| m <= 10.0 && x <= 20.0),
            },
        });
    }
    let mut steady = Vec::new();
    let mut peaks = Vec::new();
    let mut ok = Vec::new();
    for n in S1_SIZES {
        let k = format!("s1_n{n}");
        if let Some((m, x)) = agg(doc, &k, "bytes_per_node_s") {
            steady.push(format!("{} (N={n})", num(m)));
            ok.push(Some(x <= 85.0));
        }
        if let Some((m, _)) = agg(doc, &k, "peak_node_bytes_per_s") {
            peaks.push(format!("{} (N={n})", num(m)));
        }
    }
    // The scale runs (one seed each): at most 85 and within 20 % of N = 64.
    let at64 = agg(doc, "s1_n64", "bytes_per_node_s").map(|(m, _)| m);
    for n in SCALE_SIZES {
        let steady_n = doc
            .get(format!("scale_n{n}"))
            .and_then(|v| v.get("steady_bytes_per_node_s"))
            .and_then(Value::as_f64);
        if let Some(b) = steady_n {
            steady.push(format!("{} (N={n}, one seed)", num(b)));
            ok.push(Some(b <= 85.0));
            ok.push(at64.map(|a| b <= 1.2 * a));
        }
    }
    rows.push(Row {
        scenario: "S1 steady bytes per node per s".into(),
        foca: "85 at N=1024, flat in N",
        memberlist: "≈ 130",
        target: "≤ 85, flat in N (within 20 % of N=64)",
        ours: format!(
            "{}; busiest node's peak bytes in one second, bootstrap included: {}",
            if steady.is_empty() {
                "not measured".into()
            } else {
                steady.join(", ")
            },
            if peaks.is_empty() {
                "not measured".into()
            } else {
                peaks.join(", ")
            }
        ),
        met: all(&ok),
    });
    let s2 = agg(doc, "s2_n64", "all_dead_s");
    rows.push(Row {
        scenario: "S2 N=64, every live node marks the crashed node dead".into(),
        foca: "9.7 s / 12.4 s",
        memberlist: "10.4 s / 11.3 s",
        target: "≤ 8 s / 10 s",
        ours: mm(s2, " s"),
        met: s2.map(|(m, x)| m <= 8.0 && x <= 10.0),
    });
    for (loss, foca, ml) in [
        (10, "2.5 / 63", "UDP-only: 3 / 3"),
        (20, "608 / 998", "UDP-only: 345 / 371"),
        (30, "–", "–"),
        (40, "–", "–"),
    ] {
        let k = format!("s3_loss{loss}");
        let deaths = agg(doc, &k, "run_false_deaths");
        let ratio = agg(doc, &k, "traffic_ratio");
        let bytes = agg(doc, &k, "bytes_per_node_s");
        let collapse = loss >= 30;
        rows.push(Row {
            scenario: format!("S3 N=64, {loss} % loss, 600 s: false-death pairs"),
            foca,
            memberlist: ml,
            target: if collapse {
                "0 in every seed; traffic ≤ 10× lossless"
            } else {
                "0 in every seed"
            },
            ours: format!(
                "{}; traffic {} B/node/s, {}× the lossless rate",
                mm(deaths, ""),
                bytes.map_or("–".into(), |b| num(b.0)),
                ratio.map_or("–".into(), |r| num(r.1))
            ),
            met: all(&[
                max_at_most(deaths, 0.0),
                if collapse {
                    max_at_most(ratio, 10.0)
                } else {
                    None
                },
            ]),
        });
    }
    let back = agg(doc, "s4", "time_to_reconverge_s");
    rows.push(Row {
        scenario: "S4 32/32 for 60 s, heal → converged".into(),
        foca: "99.6 s / 184 s",
        memberlist: "does not re-merge in 5 of 6 runs",
        target: "≤ 10 s, no manual step, identical ledgers, no death",
        ours: format!(
            "{}; deaths during the split {}, after the heal {}",
            mm(back, " s"),
            mm(agg(doc, "s4", "split_cross_dead_fraction"), ""),
            mm(agg(doc, "s4", "heal_false_deaths"), "")
        ),
        met: all(&[
            max_at_most(back, 10.0),
            agg(doc, "s4", "ledgers_identical").map(|(m, _)| m == 1.0),
            max_at_most(agg(doc, "s4", "split_cross_dead_fraction"), 0.0),
            max_at_most(agg(doc, "s4", "heal_false_deaths"), 0.0),
        ]),
    });
    let uneven = agg(doc, "s4_uneven", "majority_marks_minority_dead_s");
    let uneven_back = agg(doc, "s4_uneven", "time_to_reconverge_s");
    rows.push(Row {
        scenario: format!("S4 {S4_UNEVEN_SPLIT}/{} for 60 s", 64 - S4_UNEVEN_SPLIT),
        foca: "–",
        memberlist: "–",
        target: "majority marks the minority dead, never the reverse; heal ≤ 10 s",
        ours: format!(
            "majority marks the minority dead after {}; heal → converged {}; minority declared the majority dead: {}",
            mm(uneven, " s"),
            mm(uneven_back, " s"),
            mm(agg(doc, "s4_uneven", "split_minority_declared_dead"), "")
        ),
        met: all(&[
            uneven.map(|_| true),
            max_at_most(uneven_back, 10.0),
            max_at_most(agg(doc, "s4_uneven", "split_minority_declared_dead"), 0.0),
        ]),
    });
    let left = agg(doc, "s7", "time_to_left_s");
    rows.push(Row {
        scenario: "S7 leave → every node shows it".into(),
        foca: "0.48 s / 15.6 s",
        memberlist: "0.73 s / 0.76 s",
        target: "≤ 1 s max, always `left`",
        ours: format!(
            "{}; `dead` observations {}",
            mm(left, " s"),
            mm(agg(doc, "s7", "dead_observations"), "")
        ),
        met: all(&[
            max_at_most(left, 1.0),
            max_at_most(agg(doc, "s7", "dead_observations"), 0.0),
        ]),
    });
    let (cells, met) = s6_cells(doc);
    rows.push(Row {
        scenario: "S6 protocol bytes besides the 2·d entries".into(),
        foca: "negentropy 0.9–1.8 KB (d=1), 8–11 KB (d=100), 650–731 KB (d=10 000); frontiers 48 B/author each way",
        memberlist: "push/pull 3.2 MB at H=100 000",
        target: "≤ the better of those in every cell",
        ours: if cells == 0 {
            "not measured".into()
        } else {
            format!("{met} of {cells} cells within the better of negentropy's upper figure and 96 B per author (see the S6 table)")
        },
        met: (cells > 0).then_some(met == cells),
    });
    let a = agg(doc, "s8", "a_false_deaths");
    rows.push(Row {
        scenario: "S8a non-transitive pairs: false deaths".into(),
        foca: "0 / 0 (14 false suspicions)",
        memberlist: "–",
        target: "0, fewer false suspicions",
        ours: format!(
            "{}; false-suspicion pairs {}",
            mm(a, ""),
            mm(agg(doc, "s8", "a_false_suspicions"), "")
        ),
        met: max_at_most(a, 0.0),
    });
    let b = agg(doc, "s8", "b_healthy_declared_dead");
    let b_back = agg(doc, "s8", "b_time_to_converge_after_restore_s");
    rows.push(Row {
        scenario: "S8b mute node: healthy nodes declared dead (mute window and restore)".into(),
        foca: "57.5 / 63; all 63 take new identities, 56 s to converge",
        memberlist: "–",
        target: "0 anywhere; converged ≤ 10 s after restore, no identity churn",
        ours: format!(
            "{}; converged {} after restore; identity renewals {}",
            mm(b, ""),
            mm(b_back, " s"),
            mm(agg(doc, "s8", "b_identity_renewals"), "")
        ),
        met: all(&[
            max_at_most(b, 0.0),
            max_at_most(b_back, 10.0),
            max_at_most(agg(doc, "s8", "b_identity_renewals"), 0.0),
        ]),
    });
    let c = agg(doc, "s8", "c_changes_per_observer_max");
    let c_max = agg(doc, "s8", "c_changes_per_observer_median")
        .zip(c)
        .map(|(m, x)| (m.0, x.1));
    rows.push(Row {
        scenario: "S8c flapping node (2 s down/up, 120 s): changes of any kind per observer".into(),
        foca: "16.5 / 24 changes; 15 false deaths; 37 s to settle",
        memberlist: "–",
        target: "≤ 6 changes of any kind per observer, no false death, settle ≤ 10 s",
        ours: format!(
            "{} (of which to or from `suspect` {}, to or from `dead` {}); false deaths {}; settle {}",
            mm(c_max, ""),
            mm(
                agg(doc, "s8", "c_suspect_changes_per_observer_median")
                    .zip(agg(doc, "s8", "c_suspect_changes_per_observer_max"))
                    .map(|(m, x)| (m.0, x.1)),
                ""
            ),
            mm(
                agg(doc, "s8", "c_dead_changes_per_observer_median")
                    .zip(agg(doc, "s8", "c_dead_changes_per_observer_max"))
                    .map(|(m, x)| (m.0, x.1)),
                ""
            ),
            mm(agg(doc, "s8", "c_false_deaths"), ""),
            mm(agg(doc, "s8", "c_settle_s"), " s")
        ),
        met: all(&[
            max_at_most(c_max, 6.0),
            max_at_most(agg(doc, "s8", "c_false_deaths"), 0.0),
            max_at_most(agg(doc, "s8", "c_settle_s"), 10.0),
        ]),
    });
    for (k, what, bound) in [
        (S9_CRASHES[0], "a third", 10.0),
        (S9_CRASHES[1], "a half", 120.0),
    ] {
        let key = format!("s9_crash{k}");
        let t = agg(doc, &key, "all_dead_s");
        rows.push(Row {
            scenario: format!(
                "S9 N=64, {what} ({k}) crash at once: every survivor marks every crashed node dead"
            ),
            foca: "–",
            memberlist: "–",
            target: if bound > 10.0 {
                "bounded (time-based rule): ≤ 120 s; no false death"
            } else {
                "≤ 10 s; no false death"
            },
            ours: format!(
                "{}; false deaths {}",
                mm(t, " s"),
                mm(agg(doc, &key, "run_false_deaths"), "")
            ),
            met: all(&[
                max_at_most(t, bound),
                max_at_most(agg(doc, &key, "run_false_deaths"), 0.0),
            ]),
        });
    }
    // The speed at N = 1 024: the scale run's, else the speed run's.
    let speed_run = doc
        .get("scale_n1024")
        .filter(|v| v.get("node_seconds_per_wall_s").is_some())
        .or_else(|| doc.get("speed"));
    let speed = speed_run.and_then(|s| {
        Some((
            s.get("nodes")?.as_u64()?,
            s.get("node_seconds_per_wall_s")?.as_f64()?,
        ))
    });
    rows.push(Row {
        scenario: "simulator, N=1024 × 120 virtual s".into(),
        foca: "10 500 node-s per wall s (native, no Wasm)",
        memberlist: "real time only",
        target: "≥ 10 500 node-s per wall s running the real `.wasm`",
        ours: speed.map_or("not measured".into(), |(n, v)| {
            format!("{} node-s per wall s at N={n}", num(v.round()))
        }),
        met: if speed_run.is_some_and(|s| s.get("error").is_some()) {
            Some(false)
        } else {
            speed.and_then(|(n, v)| (n >= 1024).then_some(v >= 10_500.0))
        },
    });
    rows.push(scale_row(doc));
    rows
}

/// The largest N = 10 000 goal (issue 14): S1 completes in under 30
/// minutes wall with peak RSS under 20 GiB and converges within 15 virtual
/// seconds.
fn scale_row(doc: &Value) -> Row {
    let run = doc.get("scale_n10000");
    let f = |k: &str| run.and_then(|v| v.get(k)).and_then(Value::as_f64);
    let largest = SCALE_SIZES.iter().rev().find_map(|n| {
        doc.get(format!("scale_n{n}"))
            .filter(|v| v.get("wall_s").is_some())
            .map(|v| (n, v))
    });
    let ours = match (run, f("wall_s")) {
        (_, Some(wall)) => format!(
            "{} s wall, peak RSS {} GiB, converged in {} virtual s",
            num(wall.round()),
            num(f("peak_rss_bytes").unwrap_or(f64::NAN) / GIB),
            num(f("time_to_converge_s").unwrap_or(f64::NAN)),
        ),
        (Some(v), None) => {
            let why = v
                .get("skipped")
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("not run");
            let reached = largest.map_or(String::new(), |(n, l)| {
                format!(
                    "; largest run: N={n}, {} s wall, peak RSS {} GiB",
                    num(l
                        .get("wall_s")
                        .and_then(Value::as_f64)
                        .unwrap_or(f64::NAN)
                        .round()),
                    num(l
                        .get("peak_rss_bytes")
                        .and_then(Value::as_f64)
                        .unwrap_or(f64::NAN)
                        / GIB)
                )
            });
            format!("{why}{reached}")
        }
        (None, None) => "not measured".into(),
    };
    let met = match (run, f("wall_s")) {
        (_, Some(wall)) => Some(
            wall < 1800.0
                && f("peak_rss_bytes").is_some_and(|b| b < 20.0 * GIB)
                && f("time_to_converge_s").is_some_and(|t| t <= 15.0),
        ),
        (Some(_), None) => Some(false),
        (None, None) => None,
    };
    Row {
        scenario: "S1 N=10 000 on one 2-core, 24 GiB machine".into(),
        foca: "–",
        memberlist: "–",
        target: "< 30 min wall, peak RSS < 20 GiB, converged ≤ 15 virtual s",
        ours,
        met,
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The scale section: one row per size run (or skipped), with the
/// measured memory per node and where it went.
fn scale_section(out: &mut String, doc: &Value) {
    let runs: Vec<(usize, &Value)> = SCALE_SIZES
        .iter()
        .filter_map(|&n| doc.get(format!("scale_n{n}")).map(|v| (n, v)))
        .collect();
    if runs.is_empty() {
        return;
    }
    out.push_str(
        "### Scale\n\n\
Nodes start at t = 0 and run 120 virtual seconds, as in \"Simulator speed\":\n\
bootstrap, then S1's steady window of 60 s after convergence. Peak RSS is\n\
the process's high-water mark (sizes run smallest first). Memory per node:\n\
the guest's linear memory (what the component grew to), the host heap\n\
each part freed when it was dropped at the end (a counting allocator:\n\
ledger stores, the runtime's view mirror, the wasmtime instance and host\n\
services, the simulator's views), and the resident memory the process\n\
grew by. A size whose memory, projected from the sizes measured before it\n\
by `bench::project` (two sizes: memory a·N + b·N², wall N^k at the\n\
exponent they show, at least 2), exceeds what the machine has available\n\
is not started.\n\n```\n",
    );
    for (_, v) in &runs {
        if let Some(cmd) = v.get("command").and_then(Value::as_str) {
            out.push_str(&format!("$ {cmd}\n"));
        }
    }
    out.push_str(
        "```\n\n\
| N | wall s | converged (virtual s) | node-s per wall s | steady B per node per s | peak RSS GiB | RSS growth per node | guest linear memory per node | host heap per node: stores / mirror / instance and services / sim views | entries stored per node |\n\
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n",
    );
    let mut notes = String::new();
    for (n, v) in &runs {
        let f = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let b = |k: &str| {
            v.get("memory_breakdown")
                .and_then(|m| m.get(format!("{k}_heap_per_node_bytes")))
                .and_then(Value::as_f64)
                .unwrap_or(f64::NAN)
        };
        if let Some(why) = v
            .get("skipped")
            .or_else(|| v.get("error"))
            .and_then(Value::as_str)
        {
            out.push_str(&format!("| {n} | – | – | – | – | – | – | – | – | – |\n"));
            notes.push_str(&format!("- N = {n}: {why}\n"));
            continue;
        }
        out.push_str(&format!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} / {} | {} |\n",
            num(f("wall_s")),
            num(f("time_to_converge_s")),
            num(f("node_seconds_per_wall_s").round()),
            num(f("steady_bytes_per_node_s")),
            num(f("peak_rss_bytes") / GIB),
            num(f("memory_per_node_bytes")),
            num(f("guest_memory_per_node_bytes")),
            num(b("host_ledger_store")),
            num(b("host_view_mirror")),
            num(b("node_instance_and_services")),
            num(b("sim_views")),
            num(f("stored_entries_per_node")),
        ));
    }
    out.push('\n');
    out.push_str(&notes);
    if !notes.is_empty() {
        out.push('\n');
    }
}

/// Seeds of a scenario document whose run broke an invariant.
fn violated_seeds(v: &Value) -> usize {
    v.get("seeds").and_then(Value::as_array).map_or(0, |s| {
        s.iter()
            .filter(|r| r.get("violation").is_some_and(|x| !x.is_null()))
            .count()
    })
}

/// S6 cells measured and cells within the better of negentropy's upper
/// figure for that d and 96 B per author (48 B each way); a cell whose
/// run broke an invariant is never within it.
fn s6_cells(doc: &Value) -> (usize, usize) {
    let (mut cells, mut met) = (0, 0);
    let Some(obj) = doc.as_object() else {
        return (0, 0);
    };
    for (k, v) in obj {
        if !k.starts_with("s6_") {
            continue;
        }
        if v.get("error").is_some() {
            cells += 1;
            continue;
        }
        let f = |name: &str| {
            v.get("aggregate")
                .and_then(|a| a.get(name))
                .and_then(|a| a.get("median"))
                .and_then(Value::as_f64)
        };
        let (Some(d), Some(a), Some(p)) = (f("divergent"), f("authors"), f("protocol_bytes"))
        else {
            continue;
        };
        let negentropy: f64 = match d as u64 {
            0..=1 => 1_800.0,
            2..=100 => 11_000.0,
            _ => 731_000.0,
        };
        cells += 1;
        if p <= negentropy.min(96.0 * a) && violated_seeds(v) == 0 {
            met += 1;
        }
    }
    (cells, met)
}

fn figures_table(out: &mut String, title: &str, v: &Value) {
    out.push_str(&format!("### {title}\n\n"));
    if let Some(cmd) = v.get("command").and_then(Value::as_str) {
        out.push_str(&format!("```\n$ {cmd}\n```\n\n"));
    }
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        out.push_str(&format!("**The run failed**: {e}\n\n"));
        return;
    }
    out.push_str("| figure | median | max | seeds missing |\n| --- | ---: | ---: | ---: |\n");
    if let Some(a) = v.get("aggregate").and_then(Value::as_object) {
        for (name, x) in a {
            let g = |k: &str| x.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
            out.push_str(&format!(
                "| `{name}` | {} | {} | {} |\n",
                num(g("median")),
                num(g("max")),
                num(g("missing"))
            ));
        }
    }
    let seeds = v.get("seeds").and_then(Value::as_array);
    let violations = violated_seeds(v);
    out.push_str(&format!(
        "\nSeeds: {}; invariants: {}\n\n",
        seeds.map_or(0, Vec::len),
        if violations == 0 {
            "all held".to_string()
        } else {
            format!("**violated in {violations} seed(s)**")
        }
    ));
}

fn s6_table(out: &mut String, doc: &Value) {
    let Some(obj) = doc.as_object() else {
        return;
    };
    let mut rows: Vec<[f64; 9]> = obj
        .iter()
        .filter(|(k, _)| k.starts_with("s6_"))
        .filter_map(|(_, v)| {
            let f = |name: &str| v.get("aggregate")?.get(name)?.get("median")?.as_f64();
            Some([
                f("history")?,
                f("divergent")?,
                f("authors")?,
                f("bytes")?,
                f("entry_bytes")?,
                f("protocol_bytes")?,
                f("messages")?,
                f("round_trips")?,
                violated_seeds(v) as f64,
            ])
        })
        .collect();
    let failed: Vec<String> = obj
        .iter()
        .filter(|(k, v)| k.starts_with("s6_") && v.get("error").is_some())
        .map(|(k, v)| {
            format!(
                "- `{k}` **failed**: {}\n",
                v.get("error").and_then(Value::as_str).unwrap_or("?")
            )
        })
        .collect();
    if rows.is_empty() && failed.is_empty() {
        return;
    }
    rows.sort_by(|a, b| {
        (a[0], a[1], a[2])
            .partial_cmp(&(b[0], b[1], b[2]))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    out.push_str(
        "### S6 divergent ledgers\n\n```\n$ nodeplane bench --only s6      # one run per cell, e.g.\n\
         $ nodeplane sim --scenario S6 --seeds 1 --history 100000 --divergent 100 --authors 64\n```\n\n\
         | H | d | A | bytes | entry bytes (2·d) | bytes per entry | protocol bytes | messages | round trips | invariants |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            num(r[0]),
            num(r[1]),
            num(r[2]),
            num(r[3]),
            num(r[4]),
            num(r[4] / (2.0 * r[1]).max(1.0)),
            num(r[5]),
            num(r[6]),
            num(r[7]),
            if r[8] > 0.0 {
                "**violated** (not counted as within the target)"
            } else {
                "held"
            }
        ));
    }
    out.push_str(
        "\nThe protocol bytes count every byte but the 2·d entries, so also the entries \
         the two nodes write during the run: their `join`s (582 B) and, where the ledgers \
         reach the checkpoint trigger (K = 1 024 entries) and reconciling takes long \
         enough, checkpoint 1's proposal and votes (design §13.9; a checkpoint 1 needs \
         two voters, so neither node proposes before it has met the other). The JSON \
         of each cell has them as `run_entry_bytes`, the rest as \
         `protocol_bytes_besides_run_entries`, and the bytes by message type \
         (`traffic_*`), entries sent twice to the same peer and streams failed.\n",
    );
    out.push('\n');
    for f in failed {
        out.push_str(&f);
    }
    out.push('\n');
}

/// Mean wire bytes of one membership entry, from the S6 cells (their
/// `entry_bytes` over the 2·d entries shipped).
fn bytes_per_entry(doc: &Value) -> Option<f64> {
    let obj = doc.as_object()?;
    let (mut bytes, mut entries) = (0.0, 0.0);
    for (k, v) in obj {
        if !k.starts_with("s6_") {
            continue;
        }
        let f = |name: &str| v.get("aggregate")?.get(name)?.get("median")?.as_f64();
        if let (Some(b), Some(d)) = (f("entry_bytes"), f("divergent")) {
            bytes += b;
            entries += 2.0 * d;
        }
    }
    (entries > 0.0).then(|| bytes / entries)
}

fn kv_section(out: &mut String, title: &str, intro: &str, v: Option<&Value>) {
    let Some(v) = v else {
        return;
    };
    out.push_str(&format!("### {title}\n\n{intro}\n\n"));
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        out.push_str(&format!("**The run failed**: {e}\n\n"));
    }
    if let Some(cmd) = v.get("command").and_then(Value::as_str) {
        out.push_str(&format!("```\n$ {cmd}\n```\n\n"));
    }
    if let Some(o) = v.as_object() {
        for (k, x) in o {
            if k == "command" {
                continue;
            }
            let shown = x.as_f64().map_or_else(|| x.to_string(), num);
            out.push_str(&format!("- `{k}`: {shown}\n"));
        }
    }
    out.push('\n');
}

/// The whole of docs/performance.md from one `bench` document.
pub fn render(doc: &Value) -> String {
    let settings = doc.get("settings");
    let s = |k: &str| {
        settings
            .and_then(|x| x.get(k))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
            .unwrap_or_else(|| "?".into())
    };
    let merged: Vec<String> = settings
        .and_then(|x| x.get("merged"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|m| format!("`{m}`"))
                .collect()
        })
        .unwrap_or_default();
    let merged = if merged.is_empty() {
        String::new()
    } else {
        format!(
            "Parts re-measured afterwards with `nodeplane bench --only PART --merge`\n\
(each figure's command is shown with it): {}. The figures are kept in\n\
`docs/performance.json`; `nodeplane bench --from-json docs/performance.json\n\
--write docs/performance.md` renders this document from them.\n\n",
            merged.join(", ")
        )
    };
    let mut out = String::new();
    out.push_str(&format!(
        "# Performance\n\n\
<!-- Generated by `nodeplane bench --markdown > docs/performance.md`\n     \
(host/sim/src/perfdoc.rs); edit the template there, not this file. -->\n\n\
Figures of the node plane component (`guests/components/nodeplane`, the real\n\
`.wasm`) measured in the deterministic simulator (`host/sim`), all from one\n\
run of `nodeplane bench --markdown --seeds {seeds} --max-nodes {max}`\n\
(component `{component}`). Every figure is reproducible from its seed with\n\
the command shown; scenario definitions and the meaning of every figure\n\
are in `docs/scenarios.md`. Median / max over seeds.\n\n\
Setting: probe interval 1 s, probe timeout 500 ms (component defaults),\n\
one-way latency uniform 1–10 ms, each node's uplink {bw} Mbit/s; bytes are\n\
payload bytes. The network is the agent's: messages of at most 1 400 bytes\n\
are datagrams with one loss draw each, larger ones streams (handshake,\n\
segments, retransmission timeouts; docs/scenarios.md). Wall-clock figures\n\
depend on the machine and its load.\n\n\
{merged}\
## Comparison with the figures to beat\n\n\
| scenario | foca | memberlist | nodeplane target | nodeplane (ours) | verdict |\n\
| --- | --- | --- | --- | --- | --- |\n",
        seeds = s("seeds"),
        max = s("max_nodes"),
        component = s("component"),
        bw = DEFAULT_BANDWIDTH_BPS / 1_000_000,
        merged = merged,
    ));
    for r in comparison(doc) {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.foca,
            r.memberlist,
            r.target,
            r.ours,
            verdict(r.met)
        ));
    }
    out.push_str(
        "\n### Reading the figures\n\n\
- **False deaths** are (observer, subject) pairs where a live node was\n  \
marked `dead`; `run_false_deaths` counts them over the whole run, fault,\n  \
restore and heal windows included. foca's and memberlist's counts are of\n  \
the same pairs; their \"suspicions\" are probe-failure events, ours are\n  \
(observer, subject) pairs shown `suspect` (docs/scenarios.md).\n\
- **S3 traffic ratio** is bytes per node per second in the lossy window\n  \
over the same run's lossless window just before it.\n\
- **S4**: with 32/32 neither half reaches a strict majority about the\n  \
other; the time-based rule (docs/design.md, death rule) needs a suspicion\n  \
held 90 s, so a 60 s split ends with every cross-side pair `suspect`, and\n  \
the heal refutes them. With 40/24 the majority's quorum decides.\n\
- **S9**: a third crashed leaves a strict majority, which decides as in S2;\n  \
a half can never reach it, so the time-based rule decides, after the\n  \
90 s of held suspicion plus a death-rule period.\n\n",
    );
    out.push_str("## Cost of signed entries\n\n");
    out.push_str(
        "Every entry carries its author's 64-byte Ed25519 signature, encoded as\n\
two fixed 32-byte halves with no length prefix: **exactly 64 bytes more per\n\
entry on the wire** (the goal: at most 64), pinned by the golden vectors of\n\
`tests/protocol/wire.rs`. A `join` also declares its 32-byte public key as\n\
64 hex digits in its JSON body (81 bytes with the field name).\n\n",
    );
    if let Some(b) = bytes_per_entry(doc) {
        out.push_str(&format!(
            "Mean wire size of one entry in the S6 cells (`entry_bytes` / 2·d),\n\
signature included: **{} bytes**.\n\n",
            num(b)
        ));
    }
    match doc
        .get("speed")
        .filter(|s| s.get("signing_wall_s").is_some())
    {
        Some(s) => {
            let f = |k: &str| s.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            let share = f("signing_share_of_wall") * 100.0;
            out.push_str(&format!(
                "Simulator speed (the run of \"Simulator speed\" below, N = {}): the\n\
host's signing service signed {} entries and checked {} signatures ({} of\n\
them answered by the memo of verified signatures the simulated nodes\n\
share, empty at the start of the run), in **{} s of {} s wall: {} %** of\n\
the run (goal: at most 25 %). Without the memo every node would verify\n\
every entry itself, as each agent does for its own node: 40 µs per\n\
verification natively, 15 µs per signature (`cargo test -p\n\
nodeplane-runtime --lib signing -- --ignored --nocapture`), which at this N\n\
in one process would cost about as much as the rest of the run.\n\
Measured inside the service; the component's side (the host calls and\n\
copying 64 bytes more per entry) is not separated from the rest of the run.\n\n",
                num(f("nodes")),
                num(f("entries_signed")),
                num(f("signatures_checked")),
                num(f("signature_memo_hits")),
                num(f("signing_wall_s")),
                num(f("wall_s")),
                num(share),
            ));
        }
        None => out.push_str("Simulator speed not measured in this run (`--only speed`).\n\n"),
    }
    out.push_str("## All figures\n\n");
    if let Some(obj) = doc.as_object() {
        for (k, v) in obj {
            if k.starts_with("s6_")
                || k.starts_with("scale_")
                || k == "speed"
                || k == "replay"
                || k == "settings"
            {
                continue;
            }
            let scenario = v.get("scenario").and_then(Value::as_str).unwrap_or("?");
            figures_table(&mut out, &format!("{scenario} — `{k}`"), v);
        }
    }
    s6_table(&mut out, doc);
    kv_section(
        &mut out,
        "Simulator speed",
        "Nodes start at t = 0 and run 120 virtual seconds (bootstrap included).",
        doc.get("speed"),
    );
    scale_section(&mut out, doc);
    kv_section(
        &mut out,
        "Ledger replay",
        "Wall time of starting one node on a store of 100 000 membership entries\n(1 024 authors): instantiate, load, verify and replay in the component.",
        doc.get("replay"),
    );
    out.push_str("## Not produced by this command\n\n");
    out.push_str(
        "Measured with real processes and wall clocks, outside the simulator;\n\
re-measure them by hand with the commands given.\n\n",
    );
    out.push_str(MEASURED_SEPARATELY);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_s6_cell_whose_run_broke_an_invariant_is_never_within_the_target() {
        let cell = |violation: Value| {
            let m = |x: f64| json!({"median": x, "max": x, "missing": 0});
            json!({
                "aggregate": {
                    "history": m(1000.0), "divergent": m(1.0), "authors": m(64.0),
                    "bytes": m(1000.0), "entry_bytes": m(320.0),
                    "protocol_bytes": m(680.0), "messages": m(6.0), "round_trips": m(2.0)
                },
                "seeds": [{"seed": 1, "violation": violation}]
            })
        };
        let doc = json!({
            "s6_h1000_d1_a64": cell(Value::Null),
            "s6_h1000_d1_a65": cell(json!("checkpoint 1: two ids for one number")),
        });
        assert_eq!(s6_cells(&doc), (2, 1));
        let mut out = String::new();
        s6_table(&mut out, &doc);
        assert_eq!(out.matches("| held |").count(), 1, "{out}");
        assert_eq!(out.matches("**violated**").count(), 1, "{out}");
    }

    #[test]
    fn a_missed_goal_says_so_and_a_met_one_too() {
        let doc = json!({
            "s2_n64": {"aggregate": {"all_dead_s": {"median": 5.0, "max": 6.0, "missing": 0}}},
            "s3_loss40": {"aggregate": {
                "run_false_deaths": {"median": 0.0, "max": 0.0, "missing": 0},
                "traffic_ratio": {"median": 600.0, "max": 700.0, "missing": 0},
                "bytes_per_node_s": {"median": 17000.0, "max": 18000.0, "missing": 0}
            }},
            "settings": {"seeds": 5, "max_nodes": 64, "component": "nodeplane"}
        });
        let md = render(&doc);
        let line = |what: &str| {
            md.lines()
                .find(|l| l.starts_with(&format!("| {what}")))
                .unwrap_or_default()
                .to_string()
        };
        assert!(line("S2 N=64").ends_with("| met |"), "{}", line("S2 N=64"));
        assert!(
            line("S3 N=64, 40 %").ends_with("| **missed** |"),
            "{}",
            line("S3 N=64, 40 %")
        );
        assert!(line("S7").ends_with("| not measured |"), "{}", line("S7"));
    }
}
