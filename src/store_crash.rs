//! `nodeplane store-crash`: the ledger store under `kill -9`.
//!
//! `write` appends to one author's chain in a store as fast as the store
//! commits (continuing the chain already there) and prints `ack SEQ ID`
//! once each append has returned, i.e. once the node could publish it.
//! `loop` runs `write` again and again on one data directory, kills it
//! with SIGKILL at a random moment, reopens the store and checks that it
//! opens, verifies, holds every acknowledged entry and that the writer's
//! chain has no fork; it prints the figure docs/reliability.md records.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use nodeplane_agent::store::RedbLedger;
use nodeplane_entry::signing::ed25519::{key_field, KeyPair};
use nodeplane_entry::{Entry, GENESIS_PREV};
use nodeplane_runtime::LedgerStore;

/// The author whose chain `write` extends.
pub const WRITER: &str = "writer";
/// A second author, one entry of whose chain `write` interleaves every
/// [`PEER_EVERY`] appends, so the store holds more than one chain.
pub const PEER: &str = "peer";
/// How often `write` appends a [`PEER`] entry.
pub const PEER_EVERY: u64 = 4;

/// `nodeplane store-crash ...`.
#[derive(Args, Debug)]
pub struct StoreCrashArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: StoreCrashCommand,
}

/// The store-crash subcommands.
#[derive(Subcommand, Debug)]
pub enum StoreCrashCommand {
    /// Append to the writer's chain, printing `ack SEQ ID` after each
    /// durable append (the child `loop` kills).
    Write {
        /// The data directory holding `ledger.redb`.
        #[arg(long)]
        data_dir: PathBuf,
        /// Stop after this many appends of the writer's chain.
        #[arg(long, default_value_t = 5000)]
        count: u64,
    },
    /// Kill `write` with SIGKILL at random moments and check the store
    /// after each kill.
    Loop {
        /// Kills.
        #[arg(long, default_value_t = 200)]
        iterations: u32,
        /// The data directory (a fresh temporary one if absent).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Seed of the kill moments (from the clock if absent).
        #[arg(long)]
        seed: Option<u64>,
    },
}

/// Runs a store-crash subcommand.
pub fn run(args: StoreCrashArgs) -> Result<()> {
    match args.command {
        StoreCrashCommand::Write { data_dir, count } => write(&data_dir, count),
        StoreCrashCommand::Loop {
            iterations,
            data_dir,
            seed,
        } => {
            let dir = match data_dir {
                Some(d) => d,
                None => std::env::temp_dir()
                    .join(format!("nodeplane-store-crash-{}", std::process::id())),
            };
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let seed = seed.unwrap_or_else(clock_seed);
            let report = crash_loop(&dir, iterations, seed)?;
            println!(
                "store-crash: {} kills ({} during writes), {} acknowledged entries, all held after every kill, no fork; {} entries in the store; mean recovery (open + verify) {:.1} ms, max {:.1} ms; seed {seed}; data {}",
                report.iterations,
                report.during_writes,
                report.acknowledged,
                report.entries,
                report.mean_open_ms,
                report.max_open_ms,
                dir.display()
            );
            Ok(())
        }
    }
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1
}

/// Nanoseconds since the epoch: an entry's clock, so that a sequence
/// number written twice (a fork) gets two different ids.
fn nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The child: extends the writer's chain, acknowledging each append.
fn write(data_dir: &Path, count: u64) -> Result<()> {
    let mut store = RedbLedger::open(data_dir)?;
    let head = |store: &RedbLedger, author: &str| {
        store
            .frontier()
            .authors
            .into_iter()
            .find(|h| h.author == author)
            .map(|h| h.seq)
            .unwrap_or(0)
    };
    let prev_of = |store: &RedbLedger, author: &str, seq: u64| {
        store
            .page(Some(author), seq, 1)
            .first()
            .filter(|e| e.seq == seq)
            .map_or(GENESIS_PREV, |e| e.id)
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", head(&store, WRITER))?;
    out.flush()?;
    for i in 0..count {
        for author in [WRITER, PEER] {
            if author == PEER && i % PEER_EVERY != 0 {
                continue;
            }
            let seq = head(&store, author) + 1;
            let prev = prev_of(&store, author, seq - 1);
            // Signed as a node signs (the store checks who may write):
            // each author's first entry is a `join` binding its key.
            let keys = KeyPair::derived(b"nodeplane-store-crash", author);
            let (kind, body) = if seq == 1 {
                (
                    "join",
                    format!("{{{}}}", key_field(&keys.public_key())).into_bytes(),
                )
            } else {
                ("heartbeat", nanos().to_be_bytes().to_vec())
            };
            let entry = keys.sign(Entry::new(author, seq, prev, nanos(), kind, body));
            if let Err(first) = store.append(&entry) {
                // What the runtime does: reopen and retry once, else stop.
                eprintln!("append {author}#{seq} failed: {first}; reopening");
                store.reopen()?;
                store.append(&entry).with_context(|| {
                    format!("append {author}#{seq} failed again after a reopen")
                })?;
            }
            if author == WRITER {
                writeln!(out, "ack {seq} {}", entry.id_hex())?;
                out.flush()?;
            }
        }
    }
    Ok(())
}

/// What [`crash_loop`] measured.
pub struct LoopReport {
    /// Kills.
    pub iterations: u32,
    /// Kills that landed after the writer acknowledged at least one entry
    /// in that run.
    pub during_writes: u32,
    /// Entries acknowledged over all runs.
    pub acknowledged: usize,
    /// Entries in the store at the end.
    pub entries: usize,
    /// Mean time to open and verify the store after a kill, ms.
    pub mean_open_ms: f64,
    /// Longest such time, ms.
    pub max_open_ms: f64,
}

/// A tiny xorshift generator: the kill moments need no more.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Kills `write` `iterations` times and checks the store after each kill.
fn crash_loop(dir: &Path, iterations: u32, seed: u64) -> Result<LoopReport> {
    let exe = std::env::current_exe().context("finding this program")?;
    let mut rng = Rng(seed | 1);
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut during_writes = 0;
    let mut open_ms: Vec<f64> = Vec::new();
    for i in 0..iterations {
        let mut child = Command::new(&exe)
            .args(["store-crash", "write", "--data-dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the writer")?;
        let stdout = child.stdout.take().context("writer stdout")?;
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Four kills in five land while entries are being written (a random
        // time after the writer's first acknowledgement); one in five at a
        // random moment from the start (during open and recovery).
        let mut lines = Vec::new();
        if rng.below(5) != 0 {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !lines.iter().any(|l: &String| l.starts_with("ack ")) {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) => lines.push(line),
                    Err(_) => break,
                }
            }
            std::thread::sleep(Duration::from_micros(rng.below(150_000)));
        } else {
            std::thread::sleep(Duration::from_micros(rng.below(60_000)));
        }
        child.kill().context("SIGKILL")?;
        let status = child.wait()?;
        let _ = reader.join();
        lines.extend(rx.try_iter());
        let run_acks = parse_acks(&lines)?;
        if !run_acks.is_empty() {
            during_writes += 1;
        }
        if status.success() {
            bail!("iteration {i}: the writer finished before it was killed; raise --count");
        }
        acked.extend(run_acks);
        let started = Instant::now();
        let store = RedbLedger::open(dir)
            .with_context(|| format!("iteration {i}: the store does not reopen after kill -9"))?;
        open_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        check(&store, &acked).with_context(|| format!("iteration {i} (seed {seed})"))?;
    }
    let entries = RedbLedger::verify_offline(dir)?.entries;
    let n = open_ms.len().max(1) as f64;
    Ok(LoopReport {
        iterations,
        during_writes,
        acknowledged: acked.len(),
        entries,
        mean_open_ms: open_ms.iter().sum::<f64>() / n,
        max_open_ms: open_ms.iter().copied().fold(0.0, f64::max),
    })
}

/// The `ack SEQ ID` lines among `lines`.
fn parse_acks(lines: &[String]) -> Result<Vec<(u64, String)>> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("ack "))
        .map(|rest| {
            let (seq, id) = rest.split_once(' ').context("an ack line without an id")?;
            Ok((seq.parse()?, id.to_string()))
        })
        .collect()
}

/// The store holds every acknowledged entry of the writer and no second
/// entry at any of its sequence numbers.
pub fn check(store: &RedbLedger, acked: &[(u64, String)]) -> Result<()> {
    if let Some(e) = store.equivocations().iter().find(|e| e.author == WRITER) {
        bail!("the writer's chain forked at seq {}: {:?}", e.seq, e.ids);
    }
    for (seq, id) in acked {
        let held = store.page(Some(WRITER), *seq, 1);
        match held.first() {
            Some(e) if e.seq == *seq && e.id_hex() == *id => {}
            Some(e) if e.seq == *seq => {
                bail!(
                    "acknowledged {WRITER}#{seq} {id} was replaced by {}",
                    e.id_hex()
                )
            }
            _ => bail!("acknowledged {WRITER}#{seq} {id} is lost"),
        }
    }
    Ok(())
}
