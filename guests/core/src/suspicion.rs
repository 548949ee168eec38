//! Suspicions and the death rule. A suspicion gathers the distinct authors
//! of `suspect` entries about one (subject, incarnation); the death rule
//! ([`judge`], a pure function) turns enough of them, old enough, into a
//! verdict.

use std::collections::{BTreeMap, BTreeSet};

use nodeplane_types::PeerState;

use crate::config::{Tunables, HEALTH_WITHHOLD_SUSPICION, MAX_EVIDENCE_IDS, SUSPICION_MAX_FACTOR};
use crate::ledger::Hash;
use crate::membership::{body, Claim, DeadBody, SuspectBody, KIND_CONFIRM_DEAD, KIND_SUSPECT};
use crate::node::Node;

/// The suspicion of one (subject, incarnation).
#[derive(Clone, Debug)]
pub(crate) struct Suspicion {
    /// When this node first saw a `suspect` entry about it.
    first_seen: u64,
    /// Distinct suspecting authors and the id of each one's entry.
    authors: BTreeMap<String, Hash>,
    /// Random delay before this node writes the verdict.
    jitter: u64,
    /// A verdict about it exists (written here or received).
    confirmed: bool,
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
            .is_some_and(|s| s.authors.contains_key(author))
    }

    /// Records a `suspect` entry of `author` (id `entry`) about (subject,
    /// inc), seen at `now_ms`. `jitter` is used if the suspicion is new.
    /// Subjects that `self_id` does not yet suspect join the confirm queue.
    pub(crate) fn note_suspect(
        &mut self,
        now_ms: u64,
        (subject, inc): (String, u64),
        (author, entry): (&str, Hash),
        jitter: u64,
        self_id: &str,
    ) {
        // `facts` refuses a self-suspicion before it gets here.
        debug_assert_ne!(author, subject, "a self-suspicion reached the bookkeeping");
        let s = self
            .open
            .entry((subject.clone(), inc))
            .or_insert(Suspicion {
                first_seen: now_ms,
                authors: BTreeMap::new(),
                jitter,
                confirmed: false,
            });
        s.authors.insert(author.to_string(), entry);
        let mine = s.authors.contains_key(self_id);
        if !mine && subject != self_id {
            self.confirm_queue.insert(subject);
        }
    }

    /// Records that a verdict about (subject, inc) exists.
    pub(crate) fn note_verdict(&mut self, subject: String, inc: u64) {
        if let Some(s) = self.open.get_mut(&(subject, inc)) {
            s.confirmed = true;
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
        for ((subject, inc), s) in &self.open {
            assert!(
                !s.authors.is_empty(),
                "suspicion of {subject}@{inc} without an author"
            );
            assert!(
                !s.authors.contains_key(subject),
                "{subject} suspects itself"
            );
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
    (cluster_size / 2 + 1).max(t.death_quorum as usize)
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

/// The death rule, a pure function of the suspicions, the current claims
/// and `rule`: a suspicion still current, not yet confirmed, with a quorum
/// of distinct authors and older than its (Lifeguard) timeout is a verdict,
/// unless this node is unhealthy.
pub(crate) fn judge<'c>(
    s: &Suspicions,
    claim: impl Fn(&str) -> Option<&'c Claim>,
    rule: &Rule<'_>,
) -> Judgement {
    let needed = death_quorum(rule.cluster_size, rule.tunables);
    let min = suspicion_min_ms(rule.cluster_size, rule.tunables);
    let max = min * SUSPICION_MAX_FACTOR;
    let mut out = Judgement {
        needed,
        ..Judgement::default()
    };
    for ((subject, inc), s) in &s.open {
        let current = claim(subject);
        let still = current.is_some_and(|c| c.inc == *inc && c.state == PeerState::Suspect);
        if !still {
            if current.is_some_and(|c| c.inc > *inc || c.state != PeerState::Suspect) {
                out.stale.push((subject.clone(), *inc));
            }
            continue;
        }
        if s.confirmed || subject == rule.self_id {
            continue;
        }
        let k = s.authors.len();
        // Lifeguard: the timeout shrinks from max to min as independent
        // suspicions arrive; the quorum reached means min.
        let timeout = if k >= needed {
            min
        } else {
            let frac = ((k as f64).ln() / (needed as f64).ln()).clamp(0.0, 1.0);
            max - ((max - min) as f64 * frac) as u64
        };
        let timeout = timeout
            + s.jitter
            + u64::from(rule.health) * u64::from(rule.tunables.probe_interval_ms);
        if k >= needed
            && rule.now_ms >= s.first_seen + timeout
            && rule.health < HEALTH_WITHHOLD_SUSPICION
        {
            let mut evidence: Vec<String> = s.authors.values().map(hex::encode).collect();
            evidence.sort();
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
        let derived = &self.derived;
        let j = judge(&self.suspicions, |id| derived.claim(id), &rule);
        self.suspicions.forget_stale(&j);
        let needed = j.needed;
        for v in j.verdicts {
            self.suspicions.note_verdict(v.subject.clone(), v.inc);
            let b = DeadBody {
                subject: v.subject.clone(),
                inc: v.inc,
                evidence: v.evidence,
                suspecters: v.suspecters as u32,
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

    fn claim(inc: u64, state: PeerState) -> Claim {
        Claim {
            inc,
            state,
            entry: [0; 32],
        }
    }

    #[test]
    fn a_quorum_after_the_timeout_is_a_verdict() {
        let t = Tunables::DEFAULTS;
        let mut s = Suspicions::default();
        for (i, a) in ["a", "b", "c"].into_iter().enumerate() {
            s.note_suspect(0, ("x".into(), 1), (a, [i as u8; 32]), 0, "a");
        }
        let current = claim(1, PeerState::Suspect);
        let rule = |now_ms| Rule {
            now_ms,
            cluster_size: 4,
            health: 0,
            self_id: "a",
            tunables: &t,
        };
        let min = suspicion_min_ms(4, &t);
        assert!(judge(&s, |_| Some(&current), &rule(min - 1))
            .verdicts
            .is_empty());
        let j = judge(&s, |_| Some(&current), &rule(min));
        assert_eq!((j.needed, j.verdicts.len()), (3, 1));
        assert_eq!(j.verdicts[0].suspecters, 3);
        s.forget_stale(&j);
        s.note_verdict("x".into(), 1);
        assert!(judge(&s, |_| Some(&current), &rule(min))
            .verdicts
            .is_empty());
        let refuted = claim(2, PeerState::Alive);
        let j = judge(&s, |_| Some(&refuted), &rule(min));
        assert_eq!(j.stale, vec![("x".to_string(), 1)]);
        s.forget_stale(&j);
        s.check_invariants("a");
        assert!(s.open.is_empty());
    }
}
