//! Failure detection: the probe round (SWIM with Lifeguard's refinements),
//! the indirect probes this node relays for others, and local health.

use std::collections::BTreeMap;

use nodeplane_types::PeerState;

use crate::authors::{AuthorId, Authors};
use crate::config::{
    CONFIRM_PROBES_PER_PERIOD, DIRECT_RETRIES_AT_TIMEOUT, HEALTH_MAX, HEALTH_WITHHOLD_SUSPICION,
    INDIRECT_RETRY_PERCENT, NACK_WAIT_PERCENT, PROBE_TIMEOUT_CAP_PERCENT,
};
use crate::effect::Timer;
use crate::node::Node;
use crate::rng::Rng;
use crate::roster::Roster;
use crate::wire::{Digest8, Message, WireEntry};

/// One probe this node started.
#[derive(Clone, Debug)]
struct Probe {
    target: String,
    acked: bool,
    /// Helpers asked to probe indirectly.
    helpers: u32,
    /// Nacks received from helpers.
    nacks: u32,
    /// Addresses of the helpers asked so far.
    asked: Vec<String>,
    /// Whether the second set of helpers was asked.
    retried: bool,
    /// When the probe started.
    started: u64,
    /// The target's incarnation when the probe started: a probe that
    /// fails after a newer one was learnt is about a process that has
    /// since restarted or refuted (see [`Node::finish_probes`]).
    incarnation: u64,
    /// Failed without any answer reaching this node; judged a period later.
    deferred: bool,
}

/// An indirect probe this node relays for another.
#[derive(Clone, Debug)]
struct Relay {
    requester: String,
    requester_seq: u32,
    deadline: u64,
}

/// The probe state: the round-robin order, probes in flight, relays, and
/// this node's own health.
#[derive(Debug, Default)]
pub(crate) struct Prober {
    /// Members still to probe this round; the next one is at the end
    /// (the roster's shared ids; whether a member is here is its roster
    /// record's `queued` flag, an O(log n) test without a second set).
    order: Vec<AuthorId>,
    next_seq: u32,
    probes: BTreeMap<u32, Probe>,
    relays: BTreeMap<u32, Relay>,
    /// Local health score (0 healthy .. [`HEALTH_MAX`]).
    health: u32,
    /// Time left in the current period after the probe timeout.
    slack_ms: u64,
    /// When this node last heard an answer to its own requests (ack,
    /// indirect ack, nack).
    last_answer_ms: Option<u64>,
}

impl Prober {
    /// Local health score (0 healthy .. [`HEALTH_MAX`]).
    pub(crate) fn health(&self) -> u32 {
        self.health
    }

    /// One more sign of trouble on this node's side.
    pub(crate) fn worsen_health(&mut self) {
        self.health = self.health.saturating_add(1).min(HEALTH_MAX);
    }

    /// A fresh sequence number for a ping or relayed probe.
    pub(crate) fn fresh_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    /// Puts a newly published member at a random place in the probe order
    /// if it is a live peer not already there.
    pub(crate) fn order_insert(
        &mut self,
        rng: &mut Rng,
        roster: &mut Roster,
        (a, id, state): (AuthorId, &str, PeerState),
        self_id: &str,
    ) {
        if *id == *self_id || !state.is_live() || roster.queued(a) {
            return;
        }
        // A random place in O(1): append, then swap with a random slot (the
        // member that was there moves to the end, itself a random place).
        let at = rng.below((self.order.len() as u64).saturating_add(1)) as usize;
        self.order.push(a);
        let last = self.order.len().saturating_sub(1);
        self.order.swap(at, last);
        roster.set_queued(a, true);
    }

    /// The next live peer to probe; a fresh shuffled round once the order
    /// is used up.
    fn next_target(
        &mut self,
        rng: &mut Rng,
        (roster, authors): (&mut Roster, &Authors),
        self_id: &str,
    ) -> Option<String> {
        while let Some(a) = self.order.pop() {
            roster.set_queued(a, false);
            let Some(id) = authors.name(a) else {
                continue;
            };
            if roster.is_live(a) && **id != *self_id {
                return Some(id.to_string());
            }
        }
        // A new round over every live peer: O(n) once per n probes.
        let mut fresh = roster.live().to_vec();
        rng.shuffle(&mut fresh);
        let next = fresh.pop();
        for &a in &fresh {
            roster.set_queued(a, true);
        }
        self.order = fresh;
        next.and_then(|a| authors.name(a)).map(|id| id.to_string())
    }

    /// Asserts what must hold of the probe state. The order need not hold
    /// every live member nor only live ones: a member that dies stays in
    /// the order until it is popped (and skipped), and one that becomes
    /// live again is added when it is next published. So the check is the
    /// weaker one that always holds: no duplicates, no self, no unknown id.
    pub(crate) fn check_invariants(&self, roster: &Roster, authors: &Authors, self_id: &str) {
        assert_eq!(
            self.order.len(),
            roster.queued_count(),
            "probe order holds a member twice"
        );
        for &a in &self.order {
            let id = authors.name(a).map_or("?", |n| &**n);
            assert!(roster.queued(a), "probe order index misses {id}");
            assert!(*id != *self_id, "this node is in its own probe order");
            assert!(
                roster.contains(authors, id),
                "probe order names unknown {id}"
            );
        }
        assert!(self.health <= HEALTH_MAX, "health over its bound");
        for p in self.probes.values() {
            assert!(p.helpers as usize >= p.asked.len(), "probe helpers count");
        }
    }
}

impl Node {
    /// The protocol period: judges the last round, starts the next probe
    /// and a few confirming probes of suspects learnt from others.
    pub(crate) fn protocol_tick(&mut self, now_ms: u64) {
        self.finish_probes(now_ms);
        if self.roster.live().is_empty() {
            for c in self.reconcile.contacts() {
                self.start_sync(now_ms, &c, false);
            }
        }
        let target = self.prober.next_target(
            &mut self.rng,
            (&mut self.roster, self.derived.authors()),
            &self.cfg.node_id,
        );
        if let Some(t) = target {
            self.start_probe(&t);
        }
        let mut confirms = 0;
        for subject in self.suspicions.take_confirm_queue() {
            let Some((state, incarnation)) = self.roster.state(self.derived.authors(), &subject)
            else {
                continue;
            };
            if state != PeerState::Suspect
                || self
                    .suspicions
                    .suspected_by(&subject, incarnation, &self.cfg.node_id)
            {
                continue;
            }
            if self.prober.probes.values().any(|p| p.target == subject) {
                continue;
            }
            if confirms >= CONFIRM_PROBES_PER_PERIOD {
                self.suspicions.requeue(subject);
                continue;
            }
            confirms = confirms.saturating_add(1);
            self.start_probe(&subject);
        }
        let t = &self.cfg.tunables;
        let timeout = u64::from(t.probe_timeout_ms)
            .saturating_mul(u64::from(self.prober.health).saturating_add(1))
            .min(u64::from(t.probe_interval_ms).saturating_mul(PROBE_TIMEOUT_CAP_PERCENT) / 100);
        self.prober.slack_ms = u64::from(t.probe_interval_ms).saturating_sub(timeout);
        let interval = u64::from(t.probe_interval_ms);
        if !self.prober.probes.is_empty() {
            self.effects.set_timer(Timer::ProbeTimeout, timeout);
        }
        self.effects.set_timer(Timer::Protocol, interval);
    }

    /// Pings `target` directly, with fresh entries piggybacked.
    fn start_probe(&mut self, target: &str) {
        let Some(address) = self.roster.address(self.derived.authors(), target) else {
            return;
        };
        let incarnation = self
            .roster
            .state(self.derived.authors(), target)
            .map_or(0, |(_, inc)| inc);
        let seq = self.prober.fresh_seq();
        self.prober.probes.insert(
            seq,
            Probe {
                target: target.to_string(),
                acked: false,
                helpers: 0,
                nacks: 0,
                asked: Vec::new(),
                retried: false,
                started: self.now_ms,
                incarnation,
                deferred: false,
            },
        );
        let digest = self.digest();
        let entries = self.gossip.piggyback_for(&self.ledger, &address, digest);
        self.effects.send(
            &address,
            &Message::Ping {
                seq,
                target: target.to_string(),
                digest,
                entries,
            },
        );
    }

    /// The direct-ack deadline: unanswered probes are retried directly and
    /// through `indirect_probes` helpers.
    pub(crate) fn probe_timeout(&mut self) {
        let k = self.cfg.tunables.indirect_probes as usize;
        let pending: Vec<(u32, String)> = self
            .prober
            .probes
            .iter()
            .filter(|(_, p)| !p.acked && p.helpers == 0)
            .map(|(s, p)| (*s, p.target.clone()))
            .collect();
        for (seq, target) in pending {
            let Some(addr) = self.roster.address(self.derived.authors(), &target) else {
                continue;
            };
            let helpers = self.helpers(k, &target, &[]);
            // More direct pings alongside the indirect ones: under loss each
            // cuts the false-failure rate by a third for 15 bytes.
            let digest = self.digest();
            for _ in 0..DIRECT_RETRIES_AT_TIMEOUT {
                self.effects.send(
                    &addr,
                    &Message::Ping {
                        seq,
                        target: target.clone(),
                        digest,
                        entries: Vec::new(),
                    },
                );
            }
            self.ask_helpers(seq, &target, &addr, &helpers);
            if let Some(p) = self.prober.probes.get_mut(&seq) {
                p.helpers = helpers.len() as u32;
                p.asked = helpers;
            }
        }
        if self
            .prober
            .probes
            .values()
            .any(|p| !p.acked && p.helpers > 0)
        {
            let after = (self.prober.slack_ms.saturating_mul(INDIRECT_RETRY_PERCENT) / 100).max(1);
            self.effects.set_timer(Timer::IndirectRetry, after);
        }
    }

    /// Asks a second, disjoint set of helpers about every probe that is
    /// still unanswered: a target that some helpers cannot reach is not
    /// suspected for their sake.
    pub(crate) fn indirect_retry(&mut self) {
        let k = self.cfg.tunables.indirect_probes as usize;
        let pending: Vec<(u32, String, Vec<String>)> = self
            .prober
            .probes
            .iter()
            .filter(|(_, p)| !p.acked && p.helpers > 0 && !p.retried)
            .map(|(s, p)| (*s, p.target.clone(), p.asked.clone()))
            .collect();
        for (seq, target, asked) in pending {
            let Some(addr) = self.roster.address(self.derived.authors(), &target) else {
                continue;
            };
            let helpers = self.helpers(k, &target, &asked);
            self.ask_helpers(seq, &target, &addr, &helpers);
            if let Some(p) = self.prober.probes.get_mut(&seq) {
                p.retried = true;
                p.helpers = p.helpers.saturating_add(helpers.len() as u32);
                p.asked.extend(helpers);
            }
        }
    }

    /// Addresses of up to `k` alive peers other than `target` whose address
    /// is not in `asked`.
    fn helpers(&mut self, k: usize, target: &str, asked: &[String]) -> Vec<String> {
        self.roster
            .sample_live(self.derived.authors(), &mut self.rng, k, |m| {
                m.id != target
                    && m.state == PeerState::Alive
                    && !asked.iter().any(|a| m.address.is(a))
            })
            .iter()
            .filter_map(|id| self.roster.address(self.derived.authors(), id))
            .collect()
    }

    /// Sends a `ping-req` about `target` (at `addr`) to each helper.
    fn ask_helpers(&mut self, seq: u32, target: &str, addr: &str, helpers: &[String]) {
        for h in helpers {
            self.effects.send(
                h,
                &Message::PingReq {
                    seq,
                    target: target.to_string(),
                    address: addr.to_string(),
                },
            );
        }
    }

    /// Judges the probes of the period that ends: an unanswered probe of a
    /// live member is a suspicion, unless this node is the likelier culprit.
    fn finish_probes(&mut self, now_ms: u64) {
        let probes = std::mem::take(&mut self.prober.probes);
        for (seq, mut p) in probes {
            if p.acked {
                continue;
            }
            if p.helpers > 0 && p.nacks == 0 && !p.deferred {
                // Nobody answered at all: more likely our own problem.
                self.prober.worsen_health();
            }
            let Some((state, incarnation)) = self.roster.state(self.derived.authors(), &p.target)
            else {
                continue;
            };
            if !state.is_live() {
                continue;
            }
            // The target wrote a newer incarnation since the probe began
            // (it restarted, or refuted another suspicion): the probe may
            // have gone to the process that stopped, and the new
            // incarnation is newer news than its silence. The next
            // period probes it afresh.
            if incarnation > p.incarnation {
                self.effects.log(
                    "suspicion-withheld",
                    &[
                        ("subject", p.target.clone().into()),
                        ("reason", "newer incarnation".into()),
                    ],
                );
                continue;
            }
            // Helpers were asked, yet nothing this node sent since the probe
            // started got any answer (ack, indirect ack, nack): its own
            // messages probably do not get out (a mute node). Its suspicion
            // would spread once it is heard again and make a healthy peer
            // renew its identity. Wait one more period for late answers
            // (nacks come late while local health stretches the timeout),
            // then withhold.
            let silent = p.helpers > 0 && self.prober.last_answer_ms.is_none_or(|t| t < p.started);
            if silent && !p.deferred {
                p.deferred = true;
                p.retried = true;
                self.prober.probes.insert(seq, p);
                continue;
            }
            if silent {
                self.effects.log(
                    "suspicion-withheld",
                    &[
                        ("subject", p.target.clone().into()),
                        ("reason", "no answers".into()),
                    ],
                );
                continue;
            }
            if self.prober.health >= HEALTH_WITHHOLD_SUSPICION {
                self.effects.log(
                    "suspicion-withheld",
                    &[
                        ("subject", p.target.clone().into()),
                        ("health", self.prober.health.into()),
                    ],
                );
                continue;
            }
            self.suspect(now_ms, &p.target, incarnation, "probe");
        }
    }

    /// The relay timer: answers `nack` for every relayed probe past its
    /// deadline, then waits for the next deadline.
    pub(crate) fn relay_timer(&mut self, now_ms: u64) {
        let expired: Vec<u32> = self
            .prober
            .relays
            .iter()
            .filter(|(_, r)| r.deadline <= now_ms)
            .map(|(s, _)| *s)
            .collect();
        for s in expired {
            if let Some(r) = self.prober.relays.remove(&s) {
                self.effects.send(
                    &r.requester,
                    &Message::Nack {
                        seq: r.requester_seq,
                    },
                );
            }
        }
        if let Some(next) = self.prober.relays.values().map(|r| r.deadline).min() {
            self.effects
                .set_timer(Timer::Relay, next.saturating_sub(now_ms).max(1));
        }
    }

    /// A `ping`: take its entries in, then ack unless it was meant for
    /// another node (an old address).
    pub(crate) fn on_ping(
        &mut self,
        now_ms: u64,
        from: &str,
        (seq, target): (u32, String),
        digest: Digest8,
        entries: Vec<WireEntry>,
    ) {
        self.ingest(now_ms, from, entries, true);
        self.note_digest(from, digest);
        if !target.is_empty() && target != self.cfg.node_id {
            self.effects.log(
                "misdirected-ping",
                &[("from", from.into()), ("target", target.into())],
            );
            return;
        }
        let ours = self.digest();
        let entries = self.gossip.piggyback_for(&self.ledger, from, ours);
        let digest = self.digest();
        self.effects.send(
            from,
            &Message::Ack {
                seq,
                digest,
                entries,
            },
        );
    }

    /// An `ack`: settles our probe or a probe we relay, and reconciles if
    /// the sender's ledger differs.
    pub(crate) fn on_ack(
        &mut self,
        now_ms: u64,
        from: &str,
        seq: u32,
        digest: Digest8,
        entries: Vec<WireEntry>,
    ) {
        self.ingest(now_ms, from, entries, true);
        self.note_digest(from, digest);
        self.prober.last_answer_ms = Some(now_ms);
        if let Some(p) = self.prober.probes.get_mut(&seq) {
            if !p.acked {
                p.acked = true;
                self.prober.health = self.prober.health.saturating_sub(1);
            }
        }
        if let Some(r) = self.prober.relays.remove(&seq) {
            self.effects.send(
                &r.requester,
                &Message::IndirectAck {
                    seq: r.requester_seq,
                },
            );
        }
        if digest != self.digest() {
            self.start_sync(now_ms, from, false);
        }
    }

    /// A `ping-req`: probe `target` at `address` for the requester, and
    /// owe it a nack if no ack comes in time.
    pub(crate) fn on_ping_req(
        &mut self,
        now_ms: u64,
        from: &str,
        seq: u32,
        target: String,
        address: String,
    ) {
        let my_seq = self.prober.fresh_seq();
        // The requester decides at the end of its period, which is
        // (interval - timeout) after it asked: the nack must arrive
        // before that, or it cannot clear the requester's doubt
        // about itself.
        let t = &self.cfg.tunables;
        // Validated tunables keep the timeout below the interval; `now_ms`
        // comes from the host and saturates rather than wraps.
        let wait = u64::from(t.probe_interval_ms.saturating_sub(t.probe_timeout_ms))
            .saturating_mul(NACK_WAIT_PERCENT)
            / 100;
        let deadline = now_ms.saturating_add(wait);
        if self.prober.relays.values().all(|r| r.deadline > deadline) {
            self.effects.set_timer(Timer::Relay, wait);
        }
        self.prober.relays.insert(
            my_seq,
            Relay {
                requester: from.to_string(),
                requester_seq: seq,
                deadline,
            },
        );
        let digest = self.digest();
        self.effects.send(
            &address,
            &Message::Ping {
                seq: my_seq,
                target,
                digest,
                entries: Vec::new(),
            },
        );
    }

    /// An `indirect-ack`: a helper reached our probe's target.
    pub(crate) fn on_indirect_ack(&mut self, now_ms: u64, seq: u32) {
        self.prober.last_answer_ms = Some(now_ms);
        if let Some(p) = self.prober.probes.get_mut(&seq) {
            p.acked = true;
        }
    }

    /// A `nack`: a helper could not reach our probe's target, but we heard
    /// the helper (so this node is not the silent one).
    pub(crate) fn on_nack(&mut self, now_ms: u64, seq: u32) {
        self.prober.last_answer_ms = Some(now_ms);
        if let Some(p) = self.prober.probes.get_mut(&seq) {
            p.nacks = p.nacks.saturating_add(1);
        }
    }
}
