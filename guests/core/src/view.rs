//! Keeping the view in step with the ledger: writing this node's own
//! entries, taking received ones in, folding each linked entry into the
//! derived view and the suspicions, publishing the changes as updates, and
//! refuting claims about this node.

use std::collections::BTreeSet;

use nodeplane_types::{Effect, PeerState};

use crate::config::CONFIRM_JITTER_MS;
use crate::ledger::{Entry, Insert, GENESIS_PREV};
use crate::membership::{body, ProfileBody, SuspectBody, KIND_ALIVE, KIND_SUSPECT};
use crate::node::{Node, Phase};
use crate::wire::{Message, WireEntry};

impl Node {
    /// Writes an entry of this node's own chain and takes it into account.
    pub(crate) fn author(&mut self, now_ms: u64, kind: &str, body: Vec<u8>) -> Entry {
        let (seq, prev) = self
            .ledger
            .head(&self.cfg.node_id)
            .map_or((1, GENESIS_PREV), |h| (h.seq.saturating_add(1), h.id));
        // A received entry may carry any clock (up to u64::MAX): the clock
        // orders nothing this crate relies on, so it saturates.
        self.lamport = self.lamport.saturating_add(1);
        let mut e = Entry::new(&self.cfg.node_id, seq, prev, self.lamport, kind, body);
        e.signature = self.signer.sign(&e.id);
        match self.ledger.insert(e.clone(), self.signer.as_mut()) {
            Ok(Insert::Linked(linked)) => self.accept(now_ms, linked, true),
            // Our own chain, our own clock, our own key (checked against
            // the bound one at start): nothing received can make this
            // fail, only a bug in this crate or in the host's signer.
            other => unreachable!("own entry must link: {other:?}"),
        }
        e
    }

    /// Folds an entry into the derived view and suspicion bookkeeping.
    /// Returns the subjects touched.
    pub(crate) fn fold(&mut self, now_ms: u64, e: &Entry) -> Vec<String> {
        self.checkpoint_linked(now_ms, e);
        let touched = match self.derived.apply_sharing(e, &self.ledger) {
            Ok(t) => t,
            Err(why) => {
                self.effects.log(
                    "entry-ignored",
                    &[("entry", e.id_hex().into()), ("reason", why.into())],
                );
                return Vec::new();
            }
        };
        // The `suspect` entry's own (subject, inc), if it is one.
        let suspicion = (e.kind == KIND_SUSPECT)
            .then(|| serde_json::from_slice::<SuspectBody>(&e.body).ok())
            .flatten();
        // Every subject whose winning claim is now `suspect` has an open
        // suspicion: a `suspect` entry at an incarnation its subject
        // announced, or held ones that took effect when the subject
        // announced it. Inert ones (at an incarnation never announced)
        // open nothing until then.
        for id in &touched {
            let Some(c) = self.derived.claim(id) else {
                continue;
            };
            if c.state != PeerState::Suspect {
                continue;
            }
            let by = suspicion
                .as_ref()
                .filter(|b| b.subject == *id && b.inc == c.inc)
                .map(|_| e.author.as_str());
            let jitter = self.rng.below(CONFIRM_JITTER_MS.saturating_add(1));
            self.suspicions.note_suspect(
                now_ms,
                (id.clone(), c.inc),
                by,
                jitter,
                &self.cfg.node_id,
            );
        }
        touched
    }

    /// Takes newly linked entries into account: persist, view, gossip,
    /// updates, refutation.
    fn accept(&mut self, now_ms: u64, linked: Vec<Entry>, regossip: bool) {
        let mut touched = BTreeSet::new();
        self.gossip.ledger_changed();
        for e in linked {
            self.lamport = self.lamport.max(e.clock);
            // Linked just now: the ledger holds it until the drain, which
            // moves it into this `append`.
            match self.ledger.shared_author(&e.author) {
                Some(author) => self.effects.append_linked(author, e.seq),
                None => self.effects.push(Effect::Append(e.clone())),
            }
            touched.extend(self.fold(now_ms, &e));
            if regossip {
                self.enqueue_broadcast(e);
            }
        }
        if self.phase == Phase::Idle {
            return;
        }
        for id in &touched {
            self.publish(id);
        }
        self.refute_if_needed(now_ms);
    }

    /// Answers a `suspect` or `dead` claim about this node with an `alive`
    /// entry at its own incarnation plus one. A claim only takes effect at
    /// an incarnation this node announced itself, so that is always enough
    /// to beat it, and nothing a peer writes can choose the new
    /// incarnation.
    fn refute_if_needed(&mut self, now_ms: u64) {
        if self.phase != Phase::Joined {
            return;
        }
        let Some(c) = self.derived.claim(&self.cfg.node_id) else {
            return;
        };
        if !matches!(c.state, PeerState::Suspect | PeerState::Dead) || c.inc < self.incarnation {
            return;
        }
        let Some(next) = self.incarnation.checked_add(1) else {
            // Only this node's own entries can bring it here (u64::MAX
            // refutations, or a forged entry in its own name).
            self.effects.log(
                "refutation-impossible",
                &[
                    ("claim", c.state.as_str().into()),
                    ("incarnation", self.incarnation.into()),
                ],
            );
            return;
        };
        self.incarnation = next;
        self.prober.worsen_health();
        let profile = ProfileBody {
            inc: self.incarnation,
            addr: self.cfg.address.clone(),
            meta: self.cfg.metadata.clone(),
            signing_key: None,
        };
        let e = self.author(now_ms, KIND_ALIVE, body(&profile));
        self.effects.log(
            "refuted",
            &[
                ("claim", c.state.as_str().into()),
                ("claim_incarnation", c.inc.into()),
                ("incarnation", self.incarnation.into()),
                ("entry", e.id_hex().into()),
            ],
        );
    }

    /// Emits an update if the derived member differs from the published one.
    pub(crate) fn publish(&mut self, id: &str) {
        let Some((a, profile, state, inc)) = self.derived.record(id) else {
            return;
        };
        let entry = self.derived.entry_of(id, Some(&self.ledger));
        let Some(update) = self.roster.publish((a, id), (profile, state, inc), entry) else {
            return;
        };
        self.prober.order_insert(
            &mut self.rng,
            &mut self.roster,
            (a, id, state),
            &self.cfg.node_id,
        );
        self.effects.update(update);
    }

    /// Verifies and inserts received entries, logging rejections, and asks
    /// the sender for the gaps before entries that did not link.
    pub(crate) fn ingest(
        &mut self,
        now_ms: u64,
        from: &str,
        entries: Vec<WireEntry>,
        regossip: bool,
    ) {
        let mut gaps: BTreeSet<String> = BTreeSet::new();
        for w in entries {
            let e: Entry = w.into();
            let (author, id) = (e.author.clone(), e.id);
            match self.ledger.insert(e, self.signer.as_mut()) {
                Ok(Insert::Linked(linked)) => self.accept(now_ms, linked, regossip),
                Ok(Insert::Duplicate) => {}
                Ok(Insert::Buffered) => {
                    gaps.insert(author);
                }
                Ok(Insert::Equivocation(ev)) => {
                    self.effects.log(
                        "equivocation",
                        &[
                            ("author", ev.author.clone().into()),
                            ("seq", ev.seq.into()),
                            ("kept", hex::encode(ev.kept).into()),
                            ("conflicting", ev.conflicting.id_hex().into()),
                            ("from", from.into()),
                        ],
                    );
                    if ev.author == self.cfg.node_id && ev.seq == 1 {
                        // Someone joined under this node's id with another
                        // key, or this node lost its data directory (and
                        // key) and started over: either way the cluster
                        // keeps the chain it had, so say so loudly.
                        self.effects.log(
                            "identity-conflict",
                            &[
                                ("entry", ev.conflicting.id_hex().into()),
                                ("from", from.into()),
                                (
                                    "advice",
                                    "another first join of this node id exists under another key; if this node's data directory was lost, restore it or run under a new node id".into(),
                                ),
                            ],
                        );
                    }
                    // The evidence is kept by the host's store too, so it
                    // survives a restart (`/status.equivocations`).
                    self.effects.push(Effect::Append(ev.conflicting.clone()));
                    self.enqueue_broadcast(ev.conflicting);
                }
                Err(reason) => {
                    self.effects.log(
                        "entry-rejected",
                        &[
                            ("from", from.into()),
                            ("entry", hex::encode(id).into()),
                            ("reason", reason.into()),
                        ],
                    );
                }
            }
            // This entry's effects are complete: a sink takes them now.
            self.flush_point();
        }
        // Ask the sender for what lies between our heads and what it sent.
        let gaps: Vec<(String, u64)> = gaps
            .into_iter()
            .map(|a| {
                let head = self.ledger.head_seq(&a);
                (a, head)
            })
            .filter(|(a, h)| {
                self.ledger.get(a, h.saturating_add(1)).is_none()
                    && !self.reconcile.streaming_in(a, self.now_ms)
            })
            .collect();
        if !gaps.is_empty() {
            self.effects.send(from, &Message::Want { heads: gaps });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::testkit::{node_id, Sim};

    /// Everything observable of a run: messages, and each node's logs,
    /// updates and stored entries.
    fn run(sinks: bool) -> String {
        let mut sim = Sim::new(12, 5);
        sim.effect_sinks = sinks;
        sim.trace = Some(Vec::new());
        sim.start_all();
        sim.run_for(8_000);
        sim.crash(3);
        sim.run_for(12_000);
        sim.start(3);
        sim.run_for(10_000);
        let mut out = format!("{:?}\n{:?}\n", sim.stats, sim.trace);
        for n in &sim.nodes {
            out.push_str(&format!("{:?}\n{:?}\n{:?}\n", n.logs, n.updates, n.store));
        }
        out
    }

    #[test]
    fn a_node_performing_its_effects_during_each_call_does_the_same() {
        let (queued, sunk) = (run(false), run(true));
        assert!(queued.len() > 100_000, "{}", queued.len());
        assert!(queued == sunk, "the runs differ");
    }

    #[test]
    fn each_member_id_is_allocated_once_for_ledger_and_derived_view() {
        let mut sim = Sim::new(4, 7);
        sim.start_all();
        sim.run_for(5_000);
        let node = sim.nodes[0].node.as_ref().expect("running");
        for i in 0..4 {
            let id = node_id(i);
            let in_ledger = node.ledger.shared_author(&id).expect("a chain");
            let (a, ..) = node.derived.record(&id).expect("a member");
            let in_view = node.derived.authors().name(a).expect("a name");
            assert!(Arc::ptr_eq(&in_ledger, in_view), "{id} held twice");
        }
    }

    /// A subject named only in suspicions gets a handle in the derived
    /// view (its record, as before handles) and, once a later handle is
    /// published, an empty roster slot: never more slots than the derived
    /// view has handles, each of which a linked entry paid for.
    #[test]
    fn roster_slots_are_bounded_by_the_derived_views_handles() {
        use crate::membership::{body, SuspectBody, KIND_SUSPECT};

        let mut sim = Sim::new(4, 11);
        for i in 0..3 {
            sim.start(i);
        }
        sim.run_for(5_000);
        let now = sim.now;
        let writer = sim.nodes[1].node.as_mut().expect("running");
        for k in 0..40 {
            let b = body(&SuspectBody {
                subject: format!("ghost-{k:02}"),
                inc: 1,
            });
            writer.author(now, KIND_SUSPECT, b);
        }
        sim.run_for(5_000);
        sim.start(3);
        sim.run_for(10_000);
        let node = sim.nodes[0].node.as_ref().expect("running");
        let handles = node.derived.authors().len();
        assert!(
            node.derived.record("ghost-00").is_none(),
            "a ghost is no member"
        );
        assert!(
            node.derived.authors().find("ghost-39").is_some(),
            "ghosts reached node 0"
        );
        assert_eq!(node.derived.members().len(), 4);
        assert!(
            node.roster.slots() <= handles,
            "{} slots, {handles} handles",
            node.roster.slots()
        );
        // The fourth member's handle came after the ghosts': its slot
        // holds the ghosts' empty ones below it.
        assert_eq!(handles, 44);
        assert_eq!(node.roster.slots(), 44);
    }

    /// What a node performs, in order, for hostile traffic: valid entries
    /// of three authors gossiped in pieces, out of order and again, the
    /// same entries with a changed body or signature, wants and syncs
    /// from many addresses asking for everything after 2^64-1 and after
    /// 0, entries answers owing many heads, probes with odd fields, and
    /// cut or altered bytes; every timer fired after each message.
    fn hostile(sinks: bool) -> String {
        use std::cell::RefCell;
        use std::rc::Rc;

        use crate::testkit::{node_address, test_signer};
        use crate::wire::{self, Message, SyncItem, WireEntry};
        use crate::{EffectSink, NodeConfig, Timer, Tunables};
        use nodeplane_types::Effect;

        // Valid signed entries of three authors.
        let mut sim = Sim::new(3, 21);
        sim.start_all();
        sim.run_for(6_000);
        sim.crash(2);
        sim.run_for(15_000);
        let valid: Vec<WireEntry> = sim.nodes[0].store.iter().map(WireEntry::from).collect();
        assert!(valid.len() >= 5, "{}", valid.len());

        let id = node_id(7);
        let cfg = NodeConfig {
            node_id: id.clone(),
            address: node_address(7),
            metadata: vec![("overlay-ip".into(), "100.64.0.7".into())],
            tunables: Tunables::DEFAULTS,
        };
        let mut node =
            super::Node::new(cfg, Vec::new(), 77, 1_000, test_signer(&id)).expect("a node");
        let sunk: Rc<RefCell<Vec<Effect<Timer, ()>>>> = Rc::default();
        if sinks {
            let s = Rc::clone(&sunk);
            node.set_effect_sink(EffectSink(Box::new(move |e| s.borrow_mut().push(e))));
        }
        let mut out = String::new();
        let mut record = |node: &mut super::Node, what: &str| {
            node.check_invariants();
            let mut effects = std::mem::take(&mut *sunk.borrow_mut());
            effects.extend(node.drain_effects());
            out.push_str(&format!("{what}: {effects:?}\n"));
        };
        node.join(1_000, &[node_address(0)]).expect("join");
        record(&mut node, "join");

        let mut tampered = valid.clone();
        for (i, e) in tampered.iter_mut().enumerate() {
            if i % 2 == 0 {
                e.body.push(b' ');
            } else {
                e.signature.0[0] ^= 1;
            }
        }
        let mut reversed = valid.clone();
        reversed.reverse();
        let mut far = valid.clone();
        for e in &mut far {
            e.seq = e.seq.saturating_add(1_000);
        }
        let authors: Vec<String> = (0..3).map(node_id).collect();
        let everything_after = |seq: u64| -> Vec<(String, u64)> {
            authors
                .iter()
                .map(|a| (a.clone(), seq))
                .chain([(id.clone(), seq)])
                .collect()
        };
        let mut messages: Vec<(String, Message)> = vec![
            (
                node_address(1),
                Message::Gossip {
                    entries: tampered.clone(),
                },
            ),
            (node_address(2), Message::Gossip { entries: reversed }),
            (node_address(1), Message::Gossip { entries: far }),
            (
                node_address(1),
                Message::Entries {
                    entries: valid.get(..3).unwrap_or_default().to_vec(),
                    rest: everything_after(0),
                },
            ),
            (
                node_address(0),
                Message::Gossip {
                    entries: valid.clone(),
                },
            ),
            (
                node_address(0),
                Message::Gossip {
                    entries: valid.clone(),
                },
            ),
            (
                node_address(2),
                Message::Entries {
                    entries: tampered,
                    rest: (0..300).map(|i| (format!("ghost-{i}"), i)).collect(),
                },
            ),
            (
                node_address(1),
                Message::Ping {
                    seq: u32::MAX,
                    target: String::new(),
                    digest: [0xff; 8],
                    entries: valid.clone(),
                },
            ),
            (
                node_address(1),
                Message::Ack {
                    seq: 0,
                    digest: [0; 8],
                    entries: vec![],
                },
            ),
            (
                node_address(1),
                Message::PingReq {
                    seq: 1,
                    target: node_id(2),
                    address: node_address(2),
                },
            ),
            (node_address(1), Message::Nack { seq: 1 }),
            (node_address(1), Message::IndirectAck { seq: u32::MAX }),
        ];
        // A node asking from many addresses.
        for p in 0..40u32 {
            let from = format!("10.66.{}.{}:7946", p / 200, p % 200);
            let seq = if p % 2 == 0 { 0 } else { u64::MAX };
            messages.push((
                from.clone(),
                Message::Want {
                    heads: everything_after(seq),
                },
            ));
            messages.push((
                from,
                Message::Sync {
                    items: vec![
                        SyncItem::Node {
                            path: vec![],
                            digests: vec![[p as u8; 8]; 16],
                        },
                        SyncItem::Leaf {
                            path: vec![15; 3],
                            heads: everything_after(seq),
                        },
                    ],
                },
            ));
        }
        let mut now = 1_000u64;
        for (k, (from, msg)) in messages.iter().enumerate() {
            now += 37;
            let bytes = wire::encode(msg);
            let _ = node.handle_message(now, from, &bytes);
            record(&mut node, msg.name());
            // The same bytes cut, and with one byte changed.
            let _ =
                node.handle_message(now, from, bytes.get(..bytes.len() / 2).unwrap_or_default());
            let mut changed = bytes.clone();
            if let Some(b) = changed.get_mut(k % bytes.len().max(1)) {
                *b ^= 0x5a;
            }
            let _ = node.handle_message_owned(now, from, changed);
            record(&mut node, "altered");
            for t in Timer::ALL {
                node.handle_timer(now, t);
                record(&mut node, "timer");
            }
        }
        for t in Timer::ALL {
            node.handle_timer(u64::MAX, t);
            record(&mut node, "timer at the end of time");
        }
        out
    }

    #[test]
    fn under_hostile_traffic_a_node_with_a_sink_does_the_same() {
        let (queued, sunk) = (hostile(false), hostile(true));
        assert!(queued.contains("Append"), "entries were linked");
        assert!(queued.contains("Send"), "messages were sent");
        assert!(queued.len() > 100_000, "{}", queued.len());
        if queued != sunk {
            let at = queued
                .lines()
                .zip(sunk.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "the runs differ at line {at}:\n{}\n{}",
                queued
                    .lines()
                    .nth(at)
                    .unwrap_or("")
                    .chars()
                    .take(600)
                    .collect::<String>(),
                sunk.lines()
                    .nth(at)
                    .unwrap_or("")
                    .chars()
                    .take(600)
                    .collect::<String>()
            );
        }
    }
}
