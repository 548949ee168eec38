//! Suspicions and the death rule. A suspicion is this node's record of
//! when it first held an effective `suspect` claim about one (subject,
//! incarnation); the death rule ([`judge`], a pure function) turns one
//! with enough suspecters, old enough, into a verdict. The suspecters are
//! counted by the derived view ([`Derived::live_suspecters`]), the same
//! count every receiver checks the verdict against.

use std::collections::{BTreeMap, BTreeSet};

use nodeplane_types::PeerState;

use crate::config::{Tunables, HEALTH_WITHHOLD_SUSPICION, MAX_EVIDENCE_IDS, SUSPICION_MAX_FACTOR};
use crate::membership::{body, DeadBody, Derived, SuspectBody, KIND_CONFIRM_DEAD, KIND_SUSPECT};
use crate::node::Node;

/// The suspicion of one (subject, incarnation).
#[derive(Clone, Debug)]
pub(crate) struct Suspicion {
    /// When this node first held an effective `suspect` claim about it.
    first_seen: u64,
    /// Suspecting authors seen while it was open (for
    /// [`Suspicions::suspected_by`]; the death rule counts from the
    /// derived view).
    authors: BTreeSet<String>,
    /// Random delay before this node writes the verdict.
    jitter: u64,
}

/// Every open suspicion, and the suspects this node should probe itself.
#[derive(Debug, Default)]
pub(crate) struct Suspicions {
    open: BTreeMap<(String, u64), Suspicion>,
    /// Suspected subjects this node learnt of and has not probed itself.
    confirm_queue: BTreeSet<String>,
}

impl Suspicions {
    /// Whether `author` holds a suspicion of (subject, inc).
    pub(crate) fn suspected_by(&self, subject: &str, inc: u64, author: &str) -> bool {
        self.open
            .get(&(subject.to_string(), inc))
            .is_some_and(|s| s.authors.contains(author))
    }

    /// Records that (subject, inc) is an effective `suspect` claim at
    /// `now_ms`, by `author` if the claim came with a `suspect` entry
    /// (`None`: a pending suspicion took effect when the subject announced
    /// `inc`). `jitter` is used if the suspicion is new. Subjects that
    /// `self_id` does not yet suspect join the confirm queue.
    pub(crate) fn note_suspect(
        &mut self,
        now_ms: u64,
        (subject, inc): (String, u64),
        author: Option<&str>,
        jitter: u64,
        self_id: &str,
    ) {
        let s = self
            .open
            .entry((subject.clone(), inc))
            .or_insert(Suspicion {
                first_seen: now_ms,
                authors: BTreeSet::new(),
                jitter,
            });
        // `facts` refuses a self-suspicion before it gets here.
        if let Some(a) = author.filter(|a| *a != subject) {
            s.authors.insert(a.to_string());
        }
        let mine = s.authors.contains(self_id);
        if !mine && subject != self_id {
            self.confirm_queue.insert(subject);
        }
    }

    /// Takes the confirm queue, in id order.
    pub(crate) fn take_confirm_queue(&mut self) -> Vec<String> {
        std::mem::take(&mut self.confirm_queue)
            .into_iter()
            .collect()
    }

    /// Puts a subject back in the confirm queue (for the next period).
    pub(crate) fn requeue(&mut self, subject: String) {
        self.confirm_queue.insert(subject);
    }

    /// Empties the confirm queue (suspicions replayed from the store need
    /// no fresh probe).
    pub(crate) fn clear_confirm_queue(&mut self) {
        self.confirm_queue.clear();
    }

    /// Forgets the suspicions a [`Judgement`] found stale.
    pub(crate) fn forget_stale(&mut self, j: &Judgement) {
        for key in &j.stale {
            self.open.remove(key);
        }
    }

    /// Asserts what must hold of every suspicion.
    pub(crate) fn check_invariants(&self, self_id: &str) {
        for ((subject, _), s) in &self.open {
            assert!(!s.authors.contains(subject), "{subject} suspects itself");
        }
        assert!(
            !self.confirm_queue.contains(self_id),
            "this node queued itself for a confirming probe"
        );
    }
}

/// Minimum suspicion timeout for a cluster of `cluster_size` live members.
pub(crate) fn suspicion_min_ms(cluster_size: usize, t: &Tunables) -> u64 {
    let n = cluster_size as f64;
    (f64::from(t.suspicion_multiplier)
        * f64::from(t.probe_interval_ms)
        * (n + 1.0).log10().max(1.0)) as u64
}

/// Distinct suspecting authors needed for a verdict: a strict majority of
/// the `cluster_size` live members (the subject included), or the
/// configured quorum if that is higher.
pub(crate) fn death_quorum(cluster_size: usize, t: &Tunables) -> usize {
    let floor = usize::try_from(t.death_quorum).unwrap_or(usize::MAX);
    crate::membership::death_quorum(cluster_size, floor)
}

/// What the death rule is applied with.
#[derive(Clone, Debug)]
pub(crate) struct Rule<'a> {
    /// The time now.
    pub now_ms: u64,
    /// Live members, self included.
    pub cluster_size: usize,
    /// This node's local health score.
    pub health: u32,
    /// This node's id (it never judges itself).
    pub self_id: &'a str,
    /// The tunables.
    pub tunables: &'a Tunables,
}

/// One death verdict the rule reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// The member to declare dead.
    pub subject: String,
    /// Its incarnation judged.
    pub inc: u64,
    /// Sorted hex ids of the suspicions relied on (at most
    /// [`MAX_EVIDENCE_IDS`]).
    pub evidence: Vec<String>,
    /// Distinct suspecting authors counted.
    pub suspecters: usize,
}

/// The outcome of applying the death rule once.
#[derive(Clone, Debug, Default)]
pub(crate) struct Judgement {
    /// Quorum needed this time.
    pub needed: usize,
    /// Verdicts to write.
    pub verdicts: Vec<Verdict>,
    /// Suspicions a newer claim has made moot.
    pub stale: Vec<(String, u64)>,
}

/// The death rule, a pure function of the suspicions, the derived view
/// and `rule`: a suspicion still current (the subject's winning claim is
/// `suspect` at its incarnation), with no verdict about it held yet, whose
/// live suspecters reach the quorum the derived view asks of every
/// receiver ([`Derived::quorum_needed`]) and older than its (Lifeguard)
/// timeout is a verdict, unless this node is unhealthy. A verdict written
/// this way takes effect in every view that holds the same suspicions.
pub(crate) fn judge(s: &Suspicions, derived: &Derived, rule: &Rule<'_>) -> Judgement {
    let needed = derived.quorum_needed();
    let min = suspicion_min_ms(rule.cluster_size, rule.tunables);
    let max = min.saturating_mul(SUSPICION_MAX_FACTOR);
    let mut out = Judgement {
        needed,
        ..Judgement::default()
    };
    for ((subject, inc), s) in &s.open {
        let current = derived.claim(subject);
        let still = current
            .as_ref()
            .is_some_and(|c| c.inc == *inc && c.state == PeerState::Suspect);
        if !still {
            if current
                .as_ref()
                .is_some_and(|c| c.inc > *inc || c.state != PeerState::Suspect)
            {
                out.stale.push((subject.clone(), *inc));
            }
            continue;
        }
        if subject == rule.self_id || derived.has_verdict(subject, *inc) {
            continue;
        }
        let k = derived.live_suspecters(subject, *inc);
        // Lifeguard: the timeout shrinks from max to min as independent
        // suspicions arrive; the quorum reached means min.
        let timeout = if k >= needed {
            min
        } else {
            let frac = ((k as f64).ln() / (needed as f64).ln()).clamp(0.0, 1.0);
            max.saturating_sub((max.saturating_sub(min) as f64 * frac) as u64)
        };
        let timeout = timeout.saturating_add(s.jitter).saturating_add(
            u64::from(rule.health).saturating_mul(u64::from(rule.tunables.probe_interval_ms)),
        );
        if k >= needed
            && rule.now_ms >= s.first_seen.saturating_add(timeout)
            && rule.health < HEALTH_WITHHOLD_SUSPICION
        {
            let mut evidence: Vec<String> = derived
                .suspect_ids(subject, *inc)
                .iter()
                .map(hex::encode)
                .collect();
            evidence.truncate(MAX_EVIDENCE_IDS);
            out.verdicts.push(Verdict {
                subject: subject.clone(),
                inc: *inc,
                evidence,
                suspecters: k,
            });
        }
    }
    out
}

impl Node {
    /// Distinct suspecting authors needed for a verdict: a strict majority
    /// of the live members (the subject included), or the configured
    /// quorum if that is higher.
    pub fn death_quorum_needed(&self) -> usize {
        death_quorum(self.roster.cluster_size(), &self.cfg.tunables)
    }

    /// Writes this node's suspicion of (subject, inc) unless it holds one.
    pub(crate) fn suspect(&mut self, now_ms: u64, subject: &str, inc: u64, why: &str) {
        if self
            .suspicions
            .suspected_by(subject, inc, &self.cfg.node_id)
        {
            return;
        }
        let e = self.author(
            now_ms,
            KIND_SUSPECT,
            body(&SuspectBody {
                subject: subject.to_string(),
                inc,
            }),
        );
        self.effects.log(
            "suspected",
            &[
                ("subject", subject.into()),
                ("incarnation", inc.into()),
                ("why", why.into()),
                ("entry", e.id_hex().into()),
            ],
        );
    }

    /// Applies the death rule and writes its verdicts.
    pub(crate) fn apply_death_rule(&mut self, now_ms: u64) {
        let rule = Rule {
            now_ms,
            cluster_size: self.roster.cluster_size(),
            health: self.prober.health(),
            self_id: &self.cfg.node_id,
            tunables: &self.cfg.tunables,
        };
        let j = judge(&self.suspicions, &self.derived, &rule);
        self.suspicions.forget_stale(&j);
        let needed = j.needed;
        for v in j.verdicts {
            let b = DeadBody {
                subject: v.subject.clone(),
                inc: v.inc,
                evidence: v.evidence,
                suspecters: u32::try_from(v.suspecters).unwrap_or(u32::MAX),
            };
            let e = self.author(now_ms, KIND_CONFIRM_DEAD, body(&b));
            self.effects.log(
                "confirmed-dead",
                &[
                    ("subject", v.subject.into()),
                    ("incarnation", v.inc.into()),
                    ("suspecters", v.suspecters.into()),
                    ("needed", needed.into()),
                    ("entry", e.id_hex().into()),
                ],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Entry, GENESIS_PREV};
    use crate::membership::{ProfileBody, KIND_ALIVE, KIND_JOIN};

    /// Appends entries to authors' chains.
    #[derive(Default)]
    struct Chains {
        heads: BTreeMap<String, (u64, [u8; 32])>,
        derived: Derived,
    }

    impl Chains {
        fn push(&mut self, author: &str, kind: &str, body: Vec<u8>) -> Entry {
            let (seq, prev) = self
                .heads
                .get(author)
                .map_or((1, GENESIS_PREV), |(s, id)| (s + 1, *id));
            let e = Entry::new(author, seq, prev, seq, kind, body);
            self.heads.insert(author.to_string(), (seq, e.id));
            self.derived.apply(&e).unwrap();
            self.derived.check_invariants();
            e
        }
        fn profile(&mut self, author: &str, kind: &str, inc: u64) {
            let b = body(&ProfileBody {
                inc,
                addr: "10.0.0.1:7000".into(),
                meta: vec![],
            });
            self.push(author, kind, b);
        }
        fn suspect(&mut self, author: &str, subject: &str, inc: u64) -> Entry {
            let b = body(&SuspectBody {
                subject: subject.into(),
                inc,
            });
            self.push(author, KIND_SUSPECT, b)
        }
    }

    #[test]
    fn a_quorum_after_the_timeout_is_a_verdict() {
        let t = Tunables::DEFAULTS;
        let mut c = Chains::default();
        for id in ["a", "b", "c", "x"] {
            c.profile(id, KIND_JOIN, 1);
        }
        let mut s = Suspicions::default();
        for a in ["a", "b", "c"] {
            c.suspect(a, "x", 1);
            s.note_suspect(0, ("x".into(), 1), Some(a), 0, "a");
        }
        let rule = |now_ms| Rule {
            now_ms,
            cluster_size: 4,
            health: 0,
            self_id: "a",
            tunables: &t,
        };
        let min = suspicion_min_ms(4, &t);
        assert!(judge(&s, &c.derived, &rule(min - 1)).verdicts.is_empty());
        let j = judge(&s, &c.derived, &rule(min));
        assert_eq!((j.needed, j.verdicts.len()), (3, 1));
        assert_eq!(j.verdicts[0].suspecters, 3);
        assert_eq!(j.verdicts[0].evidence.len(), 3);
        // The verdict, once held, takes effect and is not written twice.
        let b = body(&DeadBody {
            subject: "x".into(),
            inc: 1,
            evidence: vec![],
            suspecters: 0,
        });
        c.push("a", KIND_CONFIRM_DEAD, b);
        assert_eq!(c.derived.claim("x").map(|c| c.state), Some(PeerState::Dead));
        let j = judge(&s, &c.derived, &rule(min));
        assert!(j.verdicts.is_empty());
        assert_eq!(j.stale, vec![("x".to_string(), 1)]);
        s.forget_stale(&j);
        s.check_invariants("a");
        assert!(s.open.is_empty());
        // A new suspicion of the recovered member, then its refutation.
        c.profile("x", KIND_ALIVE, 2);
        c.suspect("b", "x", 2);
        s.note_suspect(0, ("x".into(), 2), Some("b"), 0, "a");
        assert!(judge(&s, &c.derived, &rule(min)).stale.is_empty());
        c.profile("x", KIND_ALIVE, 3);
        let j = judge(&s, &c.derived, &rule(min));
        assert_eq!(j.stale, vec![("x".to_string(), 2)]);
        s.forget_stale(&j);
        assert!(s.open.is_empty());
    }

    #[test]
    fn suspecters_that_are_not_members_do_not_count() {
        let t = Tunables::DEFAULTS;
        let mut c = Chains::default();
        for id in ["a", "b", "c", "x"] {
            c.profile(id, KIND_JOIN, 1);
        }
        let mut s = Suspicions::default();
        // Three authors that never joined, and one member.
        for a in ["f1", "f2", "f3", "a"] {
            c.suspect(a, "x", 1);
            s.note_suspect(0, ("x".into(), 1), Some(a), 0, "a");
        }
        let rule = Rule {
            now_ms: 1_000_000,
            cluster_size: 4,
            health: 0,
            self_id: "a",
            tunables: &t,
        };
        let j = judge(&s, &c.derived, &rule);
        assert!(j.verdicts.is_empty(), "{:?}", j.verdicts);
        assert_eq!(c.derived.live_suspecters("x", 1), 1);
    }
}
