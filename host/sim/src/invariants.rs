//! Invariants checked after every run. Safety ones hold for any component;
//! the convergence ones are protocol-quality checks for the node plane.
//!
//! Safety, whatever happened: no component crashed
//! ([`Node::crashes`](nodeplane_runtime::Node::crashes) never moved) and no
//! call returned an error the run did not provoke on purpose (a hostile
//! node's malformed message earns `bad-message`; a call on a crashed node
//! is not made); chains verify; `left` only after leave; incarnations never
//! go down. Each is recorded when it happens, naming the node, the call
//! and the reason.
//!
//! Documented bound: once the network is healthy (no partition, block,
//! mute or isolation), every live node must see every live node `alive`
//! within [`CONVERGENCE_BOUND_MS`], and the live nodes' ledgers must reach
//! one frontier digest within [`LEDGER_BOUND_MS`] after that.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use nodeplane_entry::signing::{
    check_signature, verify_signatures_with, PublicKey, SignatureError, Verifier,
};
use nodeplane_entry::{verify_chains, Entry};
use nodeplane_interface::PeerState;

use crate::world::{Expect, Sim};
use crate::SimError;

/// Healthy-network time within which views must converge.
pub const CONVERGENCE_BOUND_MS: u64 = 30_000;
/// Time after convergence within which ledgers must reach one frontier.
pub const LEDGER_BOUND_MS: u64 = 30_000;

/// The keys [`check_signature`] returned, by (entry, key it was checked
/// against): the stores of a world share their entries (one `Arc` each in
/// the [`EntryPool`](nodeplane_runtime::EntryPool)), so the N stores' N
/// joins are checked (JSON of the body, signature) once each, not N
/// times. Keyed by the entry's address: valid while no store changes,
/// which is the whole of [`Sim::check`]'s loop over the stores.
type CheckedSignatures = HashMap<(usize, Option<PublicKey>), PublicKey>;

/// [`nodeplane_entry::signing::verify_signatures`] over one store, with
/// each (entry, bound key) check answered from `checked` when an earlier
/// store made it: the same rule (`verify_signatures_with`), so the same
/// answer and the same first problem. `check_signature` is a pure
/// function of the entry and the key, and `verifier` of its triple.
fn verify_store_signatures<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    verifier: &mut dyn Verifier,
    checked: &mut CheckedSignatures,
) -> Result<(), SignatureError> {
    verify_signatures_with(entries, |e, key| {
        let at = (std::ptr::from_ref(e) as usize, key.copied());
        if let Some(k) = checked.get(&at) {
            return Ok(*k);
        }
        let k = check_signature(e, key, verifier)?;
        checked.insert(at, k);
        Ok(k)
    })
}

/// The checkpoints the nodes logged as agreed (`checkpoint-agreed`), for
/// the invariant of docs/design.md §13.4 as run by the node (stage A): at
/// most one id per number across all nodes (a violation when logged).
/// Reported besides: nodes whose agreed state and tail give another view
/// than theirs, and live nodes not on the latest checkpoint once ledgers
/// agree.
#[derive(Debug, Default)]
pub struct Checkpoints {
    /// Per checkpoint number, the id first agreed and by whom.
    pub by_n: BTreeMap<u64, (String, usize)>,
    /// Per node, its latest agreed (number, id).
    pub latest: BTreeMap<usize, (u64, String)>,
    /// `checkpoint-view-differs` events: (node, detail).
    pub view_differs: Vec<(usize, String)>,
    /// Live nodes not on the latest agreed checkpoint at the end-of-run
    /// check (stage A: a node that cannot find a cut stays behind until
    /// stage C lets it fetch one; reported, not a violation).
    pub lagging: Vec<usize>,
}

/// How long the end-of-run check lets rounds finish after ledgers agree,
/// when the run agreed a checkpoint (a vote is tallied on the next gossip
/// tick, 200 ms; an adoption can take a few).
pub const CHECKPOINT_SETTLE_MS: u64 = 2_000;

impl Sim {
    /// The checkpoints logged as agreed so far.
    pub fn checkpoints(&self) -> &Checkpoints {
        &self.checkpoints
    }

    /// Takes a `checkpoint-*` event of node `i` into account: a second id
    /// for one number, or a view that differs from the one the agreed
    /// state and the tail stand for, is a violation.
    pub(crate) fn note_checkpoint(&mut self, i: usize, kind: &str, detail: &str) {
        match kind {
            "checkpoint-agreed" => {
                let v: serde_json::Value = serde_json::from_str(detail).unwrap_or_default();
                let (Some(n), Some(id)) = (v["n"].as_u64(), v["id"].as_str()) else {
                    self.violation(format!(
                        "n{i}: checkpoint-agreed without n and id: {detail}"
                    ));
                    return;
                };
                let id = id.to_string();
                match self.checkpoints.by_n.get(&n) {
                    Some((first, by)) if *first != id => {
                        let msg = format!(
                            "checkpoint {n}: n{i} agreed {id}, n{by} agreed {first} (two ids for one number)"
                        );
                        self.violation(msg);
                    }
                    Some(_) => {}
                    None => {
                        self.checkpoints.by_n.insert(n, (id.clone(), i));
                    }
                }
                self.checkpoints.latest.insert(i, (n, id));
            }
            "checkpoint-view-differs" => {
                // Stage A keeps the node's view (nothing is replaced), so
                // this is not a violation of the run; it is what stage B
                // would change, counted and reported.
                self.checkpoints.view_differs.push((i, detail.to_string()));
            }
            _ => {}
        }
    }

    /// After ledgers agree: which live nodes are not on the latest agreed
    /// checkpoint (all hold its cut; see [`Checkpoints::lagging`]). Runs
    /// the world on for [`CHECKPOINT_SETTLE_MS`], only when a checkpoint
    /// was agreed (a run without one is left exactly as it was). Two ids
    /// for one number are violations as they are logged.
    fn check_checkpoints(&mut self) {
        if self.checkpoints.by_n.is_empty() {
            return;
        }
        self.run_for(Duration::from_millis(CHECKPOINT_SETTLE_MS));
        let Some((&n, (id, _))) = self.checkpoints.by_n.last_key_value() else {
            return;
        };
        let (n, id) = (n, id.clone());
        let lagging: Vec<usize> = self
            .live_nodes()
            .into_iter()
            .filter(|i| {
                self.checkpoints
                    .latest
                    .get(i)
                    .map(|(m, x)| (*m, x.as_str()))
                    != Some((n, id.as_str()))
            })
            .collect();
        self.checkpoints.lagging = lagging;
    }

    /// Checks the invariants `expect` names; with [`Expect::Converge`] the
    /// faults are healed first and the run continues up to the documented
    /// bounds. Any violation is returned with the seed and a trace excerpt.
    pub fn check(&mut self, expect: Expect) -> Result<(), SimError> {
        // Crashes in calls made through handles and not yet performed.
        for i in 0..self.len() {
            self.note_crashes(i, None);
        }
        let mut problems: Vec<String> = self.violations().to_vec();
        let before = problems.len();
        let mut verifier = nodeplane_runtime::signing::MemoVerifier::shared();
        let mut checked = CheckedSignatures::default();
        for i in 0..self.len() {
            // Who may write: every stored entry signed by its author's
            // bound key (the receivers checked it; this checks them).
            // Through the process-wide memo the nodes' own checks filled:
            // it remembers only triples that verified natively, so the
            // answers are Ed25519's, without N stores x N entries of it.
            if let Err(e) = self
                .node(i)
                .with_ledger(|l| verify_store_signatures(l.entries(), &mut verifier, &mut checked))
            {
                problems.push(format!("n{i}: ledger signatures do not verify: {e}"));
            }
            // The chains: each slot's first stored entry (a later one at the
            // same slot is equivocation evidence, kept beside the chain).
            let chains = |entries: nodeplane_runtime::Entries<'_>| {
                let mut seen = std::collections::HashSet::new();
                let firsts: Vec<&nodeplane_entry::Entry> = entries
                    .iter()
                    .filter(|e| seen.insert((e.author.as_str(), e.seq)))
                    .collect();
                verify_chains(firsts)
            };
            if let Err(e) = self.node(i).with_ledger(|l| chains(l.entries())) {
                problems.push(format!("n{i}: ledger chain does not verify: {e}"));
            }
        }
        if expect == Expect::Converge && problems.is_empty() {
            // Hostile nodes stop with the other faults: convergence is
            // judged on a healthy network (their forged claims must have
            // left no honest node dead, checked below).
            if self.hostiles().iter().any(|h| h.active) {
                self.silence_hostiles();
            }
            if !self.network.faults.is_healthy() {
                self.heal();
            }
            if self
                .run_until_converged(Duration::from_millis(CONVERGENCE_BOUND_MS))
                .is_none()
            {
                problems.push(format!(
                    "views did not converge within {} s of a healthy network: {}",
                    CONVERGENCE_BOUND_MS / 1000,
                    self.divergence_summary()
                ));
            }
            for o in self.live_nodes() {
                for s in self.live_nodes() {
                    if self.state_of(o, s) == Some(PeerState::Dead) {
                        problems.push(format!(
                            "live node n{s} is dead in n{o}'s view after the healthy bound"
                        ));
                    }
                }
            }
            if self
                .run_until_true(Duration::from_millis(LEDGER_BOUND_MS), Sim::ledgers_agree)
                .is_none()
            {
                let digests: Vec<String> = self
                    .ledger_digests()
                    .iter()
                    .take(8)
                    .map(|(i, d)| format!("n{i}:{}", &hex::encode(d)[..12]))
                    .collect();
                problems.push(format!(
                    "ledgers did not reach one frontier digest within {} s: {}",
                    LEDGER_BOUND_MS / 1000,
                    digests.join(" ")
                ));
            } else {
                self.check_checkpoints();
            }
        }
        // The convergence checks ran the world on: what it violated then.
        problems.extend(self.violations().iter().skip(before).cloned());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SimError::Invariant {
                seed: self.seed(),
                violations: problems,
                excerpt: self.trace().excerpt(),
            })
        }
    }

    /// Component crashes over every node and life so far.
    pub fn crash_count(&self) -> u64 {
        self.nodes().iter().map(|n| n.crashes).sum()
    }

    /// Calls that returned an error the run did not provoke, over every
    /// node so far.
    pub fn call_error_count(&self) -> u64 {
        self.nodes().iter().map(|n| n.call_errors).sum()
    }

    /// A short account of who does not see whom as alive.
    pub fn divergence_summary(&self) -> String {
        let live = self.live_nodes();
        let mut out = Vec::new();
        for &o in &live {
            for &s in &live {
                let st = self.state_of(o, s);
                if st != Some(PeerState::Alive) {
                    out.push(format!(
                        "n{o} sees n{s} as {}",
                        st.map(|s| s.as_str()).unwrap_or("unknown")
                    ));
                }
            }
        }
        let total = out.len();
        out.truncate(6);
        format!("{total} pairs, e.g. {}", out.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::component::ComponentChoice;
    use crate::queue::EventKind;
    use crate::world::{Expect, Sim};

    /// A call error nobody provoked fails the check, naming node, call and
    /// reason, with the seed: here an honest node "sends" bytes that do not
    /// decode.
    #[test]
    fn an_unprovoked_call_error_fails_the_check() {
        let mut sim = Sim::builder().nodes(3).seed(11).build().expect("builds");
        sim.run_until_converged(Duration::from_secs(30));
        sim.check(Expect::Safety).expect("an honest run holds");
        let at = sim.now_ms() + 1;
        sim.queue.push(
            at,
            EventKind::Deliver {
                to: 2,
                from: 1,
                payload: vec![0xEE, 1, 2],
                depth: 0,
                stream: None,
            },
        );
        sim.run_for(Duration::from_secs(1));
        let err = sim
            .check(Expect::Safety)
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("seed 11"), "{err}");
        assert!(
            err.contains("n2: deliver-message from n1 (3 B) returned an error: bad message"),
            "{err}"
        );
        assert_eq!(sim.call_error_count(), 1);
    }

    /// The check with shared per-entry answers gives
    /// `verify_signatures`' answer for every store, first problem
    /// included, whichever store comes first: stores sharing their entries
    /// (one copy each, as a world's pool holds them), one missing an
    /// author's join, one with a replayed signature, one binding another
    /// key for an author.
    #[test]
    fn shared_checks_answer_as_verify_signatures() {
        use nodeplane_entry::signing::ed25519::{KeyPair, NativeVerifier};
        use nodeplane_entry::signing::verify_signatures;
        use nodeplane_entry::Entry;

        use super::{verify_store_signatures, CheckedSignatures};
        use crate::ledger::{ChainWriter, NOTE_KIND};

        let mut w = ChainWriter::new();
        let all: Vec<Entry> = (0..12)
            .map(|k| w.next(&format!("author-{}", k % 3), NOTE_KIND, b"{}".to_vec()))
            .collect();
        let mut forged = w.next("author-0", NOTE_KIND, b"{}".to_vec());
        forged.signature = all[0].signature.clone();
        // author-2's join signed and declared by another key.
        let other = KeyPair::derived(b"another", "author-2");
        let body = format!(
            "{{\"signing_key\":\"{}\"}}",
            hex::encode(other.public_key())
        );
        let rebound = other.sign(Entry::new(
            "author-2",
            1,
            nodeplane_entry::GENESIS_PREV,
            1,
            "join",
            body.into_bytes(),
        ));
        let whole: Vec<&Entry> = all.iter().collect();
        let no_join: Vec<&Entry> = all.iter().skip(2).collect();
        let replayed: Vec<&Entry> = all.iter().chain([&forged]).collect();
        let mut other_key: Vec<&Entry> = vec![&rebound];
        other_key.extend(all.iter().filter(|e| e.author != "author-2" || e.seq > 1));
        let stores = [whole, no_join, replayed, other_key];
        let expected: Vec<_> = stores
            .iter()
            .map(|s| verify_signatures(s.iter().copied(), &mut NativeVerifier))
            .collect();
        assert!(expected[0].is_ok());
        assert!(expected[1..].iter().all(Result::is_err), "{expected:?}");
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
            let mut checked = CheckedSignatures::default();
            for i in order {
                let got = verify_store_signatures(
                    stores[i].iter().copied(),
                    &mut NativeVerifier,
                    &mut checked,
                );
                assert_eq!(got, expected[i], "store {i} in order {order:?}");
            }
        }
    }

    /// A stored entry whose signature is not its author's fails the check,
    /// for that reason, even though the check answers through the memo the
    /// nodes filled: here n2's store gets n0's next entry carrying n0's
    /// genuine (memoised) signature of its previous entry.
    #[test]
    fn a_forged_stored_signature_fails_the_check() {
        use nodeplane_runtime::LedgerStore;
        let mut sim = Sim::builder().nodes(3).seed(12).build().expect("builds");
        sim.run_until_converged(Duration::from_secs(30));
        sim.check(Expect::Safety).expect("an honest run holds");
        let head = sim
            .node(2)
            .with_ledger(|l| l.entries().iter().rev().find(|e| e.author == "n0").cloned())
            .expect("n2 stores n0's entries");
        let mut forged = nodeplane_entry::Entry::new(
            "n0",
            head.seq + 1,
            head.id,
            head.clock + 1,
            "alive",
            b"{}".to_vec(),
        );
        forged.signature = head.signature.clone();
        let handle = sim.node(2).handle().expect("running").clone();
        handle
            .lock()
            .services_mut()
            .ledger
            .append(&forged)
            .expect("stores");
        let err = sim
            .check(Expect::Safety)
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("seed 12"), "{err}");
        assert!(
            err.contains(&format!(
                "n2: ledger signatures do not verify: entry n0#{}: signature does not verify",
                forged.seq
            )),
            "{err}"
        );
        assert!(!err.contains("chain does not verify"), "{err}");
        assert!(
            !err.contains("n0: ledger") && !err.contains("n1: ledger"),
            "{err}"
        );
    }

    /// A component crash fails the check, naming node, call and reason.
    #[test]
    fn a_crash_fails_the_check() {
        let trap = nodeplane_artifacts::FIXTURES
            .iter()
            .find(|(n, _)| *n == "trap")
            .map(|(_, p)| ComponentChoice::File(p.to_string()))
            .expect("the trap fixture is built");
        let mut sim = Sim::builder()
            .nodes(2)
            .seed(4)
            .component(trap)
            .build()
            .expect("builds");
        sim.run_for(Duration::from_secs(1));
        sim.check(Expect::Safety).expect("no crash yet");
        let out = sim.call(1, |n| n.get_peer_metadata("n0"));
        assert!(matches!(out, Some(Err(_))), "{out:?}");
        let err = sim
            .check(Expect::Safety)
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("seed 4"), "{err}");
        assert!(err.contains("n1: component crashed (1x)"), "{err}");
        assert!(err.contains("get-peer-metadata"), "{err}");
        assert_eq!(sim.crash_count(), 1);
    }
}
