//! The node: a deterministic state machine. Inputs are API calls, messages
//! and timers, each with the current time; outputs are [`Effect`]s.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::*;
use crate::error::Error;
use crate::ledger::{Entry, Equivocation, Hash, Insert, Ledger};
use crate::membership::*;
use crate::rng::{Permutation, Rng};
use crate::wire::{self, Digest8, Message, SyncItem, WireEntry};

/// Timer: the protocol period (probe round, verdicts on the last round).
pub const TIMER_PROTOCOL: u64 = 1;
/// Timer: the direct-ack deadline of the current probe round.
pub const TIMER_PROBE_TIMEOUT: u64 = 2;
/// Timer: the gossip tick (push fresh entries, deadlines, death rule).
pub const TIMER_GOSSIP: u64 = 3;
/// Timer: low-rate anti-entropy with dead members and seeds.
pub const TIMER_ANTI_ENTROPY: u64 = 4;
/// Timer: the leaving node's second announcement.
pub const TIMER_LEAVE_REPEAT: u64 = 5;
/// Timer: the earliest deadline of an indirect probe relayed for another
/// node (a nack is due).
pub const TIMER_RELAY: u64 = 6;
/// Timer: unanswered probes ask a second set of helpers
/// ([`INDIRECT_RETRY_PERCENT`]).
pub const TIMER_INDIRECT_RETRY: u64 = 7;

/// Something the host must do for the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send `payload` to the address `to`.
    Send {
        /// Destination address.
        to: String,
        /// Encoded message.
        payload: Vec<u8>,
    },
    /// Call `handle_timer(timer)` after `after_ms`; replaces a pending one.
    SetTimer {
        /// Timer id.
        timer: u64,
        /// Delay.
        after_ms: u64,
    },
    /// Cancel a pending timer.
    CancelTimer {
        /// Timer id.
        timer: u64,
    },
    /// Persist a ledger entry (already verified and linked).
    Append(Entry),
    /// A membership update for subscribers.
    Update(Update),
    /// A line for the local event log; `detail` is a JSON object.
    Log {
        /// Short name.
        kind: String,
        /// JSON object.
        detail: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Joined,
    Left,
}

#[derive(Clone, Debug)]
struct Probe {
    target: String,
    acked: bool,
    helpers: u32,
    nacks: u32,
    /// Addresses of the helpers asked so far.
    asked: Vec<String>,
    /// Whether the second set of helpers was asked.
    retried: bool,
    /// When the probe started.
    started: u64,
    /// Failed without any answer reaching this node; judged a period later.
    deferred: bool,
}

#[derive(Clone, Debug)]
struct Relay {
    requester: String,
    requester_seq: u32,
    deadline: u64,
}

#[derive(Clone, Debug)]
struct Suspicion {
    first_seen: u64,
    authors: BTreeMap<String, Hash>,
    jitter: u64,
    confirmed: bool,
}

#[derive(Clone, Debug)]
struct Broadcast {
    entry: Entry,
    remaining: u32,
    queued_at: u64,
}

/// A set of member ids with O(log n) insert, remove and lookup and O(1)
/// access by position (for random sampling). The order of `items` depends
/// on the history of inserts and removals, which is deterministic.
#[derive(Clone, Debug, Default)]
struct IdSet {
    items: Vec<String>,
    pos: BTreeMap<String, usize>,
}

impl IdSet {
    fn insert(&mut self, id: &str) {
        if !self.pos.contains_key(id) {
            self.pos.insert(id.to_string(), self.items.len());
            self.items.push(id.to_string());
        }
    }

    fn remove(&mut self, id: &str) {
        let Some(i) = self.pos.remove(id) else {
            return;
        };
        self.items.swap_remove(i);
        if let Some(moved) = self.items.get(i) {
            self.pos.insert(moved.clone(), i);
        }
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The sans-IO node plane of one node.
#[derive(Debug)]
pub struct Node {
    cfg: Config,
    rng: Rng,
    ledger: Ledger,
    derived: Derived,
    published: BTreeMap<String, Member>,
    /// Live (alive or suspect) members of `published` other than self.
    live: IdSet,
    /// Dead members of `published` other than self.
    dead: IdSet,
    /// Live members of `published`, self included (the cluster size).
    live_count: usize,
    version: u64,
    phase: Phase,
    incarnation: u64,
    lamport: u64,
    heartbeats: u64,
    effects: Vec<Effect>,
    contacts: Vec<String>,
    probe_order: Vec<String>,
    /// The ids in `probe_order`, for an O(log n) membership test.
    in_probe_order: BTreeSet<String>,
    next_seq: u32,
    probes: BTreeMap<u32, Probe>,
    relays: BTreeMap<u32, Relay>,
    confirm_queue: BTreeSet<String>,
    health: u32,
    broadcasts: Vec<Broadcast>,
    suspicions: BTreeMap<(String, u64), Suspicion>,
    last_sync: BTreeMap<String, u64>,
    /// Authors whose entries are streaming in: author -> time of the last
    /// want sent or entries received for it (see [`STREAM_STALL_MS`]).
    incoming: BTreeMap<String, u64>,
    /// Streams going out: (peer address, author) -> (time of the last
    /// entries sent, highest seq sent).
    outgoing: BTreeMap<(String, String), (u64, u64)>,
    /// Last frontier digest heard from each address (ping or ack).
    peer_digest: BTreeMap<String, Digest8>,
    /// Time of the input being handled.
    now_ms: u64,
    /// Consecutive received digests equal to ours since our last change.
    agreeing: u32,
    /// Time left in the current period after the probe timeout.
    probe_slack_ms: u64,
    /// When this node last heard an answer to its own requests (ack,
    /// indirect ack, nack).
    last_answer_ms: Option<u64>,
}

fn json(pairs: &[(&str, serde_json::Value)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    serde_json::Value::Object(map).to_string()
}

fn digest8(d: u64) -> Digest8 {
    d.to_be_bytes()
}

impl Node {
    /// Validates the configuration, verifies and replays the stored ledger,
    /// and raises this node's incarnation above anything recorded about it.
    pub fn new(config: Config, stored: Vec<Entry>, seed: u64, now_ms: u64) -> Result<Node, Error> {
        let cfg = config.validated()?;
        let mut node = Node {
            rng: Rng::new(seed),
            ledger: Ledger::new(),
            derived: Derived::new(),
            published: BTreeMap::new(),
            live: IdSet::default(),
            dead: IdSet::default(),
            live_count: 0,
            version: 0,
            phase: Phase::Idle,
            incarnation: 0,
            lamport: 0,
            heartbeats: 0,
            effects: Vec::new(),
            contacts: Vec::new(),
            probe_order: Vec::new(),
            in_probe_order: BTreeSet::new(),
            next_seq: 0,
            probes: BTreeMap::new(),
            relays: BTreeMap::new(),
            confirm_queue: BTreeSet::new(),
            health: 0,
            broadcasts: Vec::new(),
            suspicions: BTreeMap::new(),
            last_sync: BTreeMap::new(),
            incoming: BTreeMap::new(),
            outgoing: BTreeMap::new(),
            peer_digest: BTreeMap::new(),
            now_ms,
            agreeing: 0,
            probe_slack_ms: 0,
            last_answer_ms: None,
            cfg,
        };
        let mut max_inc_about_self = None::<u64>;
        for (i, e) in stored.into_iter().enumerate() {
            let name = format!(
                "stored entry {i} ({}#{}, id {})",
                e.author,
                e.seq,
                &e.id_hex()[..16]
            );
            match node.ledger.insert(e) {
                Ok(Insert::Linked(linked)) => {
                    for e in linked {
                        node.lamport = node.lamport.max(e.clock);
                        if let Ok(facts) = facts(&e) {
                            for f in facts {
                                if let Fact::Claim { subject, inc, .. } = f {
                                    if subject == node.cfg.node_id {
                                        max_inc_about_self =
                                            Some(max_inc_about_self.unwrap_or(0).max(inc));
                                    }
                                }
                            }
                        }
                        node.fold(now_ms, &e);
                    }
                }
                Ok(Insert::Duplicate) | Ok(Insert::Equivocation(_)) => {}
                Ok(Insert::Buffered) => {
                    return Err(Error::CorruptLedger(format!(
                        "{name}: does not follow its author's previous entry"
                    )))
                }
                Err(why) => return Err(Error::CorruptLedger(format!("{name}: {why}"))),
            }
        }
        node.incarnation = max_inc_about_self.map_or(1, |i| i + 1);
        node.confirm_queue.clear();
        Ok(node)
    }

    // ----- read-only introspection -------------------------------------

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.cfg.node_id
    }

    /// One member of the current view (before join: none).
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.published.get(id)
    }

    /// Whether this node has joined (and not necessarily left since).
    pub fn has_joined(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// Whether this node has left.
    pub fn has_left(&self) -> bool {
        self.phase == Phase::Left
    }

    /// This node's current incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Number of linked ledger entries.
    pub fn ledger_len(&self) -> usize {
        self.ledger.len()
    }

    /// The ledger (read-only).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// SHA-256 over the per-author frontier.
    pub fn frontier_digest(&self) -> Hash {
        self.ledger.frontier_digest()
    }

    /// (author, head seq, head id) per author.
    pub fn frontier(&self) -> Vec<(String, u64, Hash)> {
        self.ledger.frontier()
    }

    /// Up to `limit` entries of `author` from sequence `from`.
    pub fn entries(&self, author: &str, from: u64, limit: usize) -> Vec<Entry> {
        self.ledger.entries(author, from, limit)
    }

    /// Equivocations seen (two entries at one author and sequence).
    pub fn equivocations(&self) -> &[Equivocation] {
        self.ledger.equivocations()
    }

    /// Local health score (0 healthy .. [`HEALTH_MAX`]).
    pub fn health(&self) -> u32 {
        self.health
    }

    /// The effective tunables.
    pub fn tunables(&self) -> &Tunables {
        &self.cfg.tunables
    }

    /// The view derived from the ledger (equal to `members()` after every
    /// call; available before join too).
    pub fn derived_members(&self) -> Vec<Member> {
        self.derived.members()
    }

    // ----- control operations ------------------------------------------

    /// Joins through `seeds` (empty: start a new cluster). While joined,
    /// adds the seeds as contact points and returns the current view.
    pub fn join(&mut self, now_ms: u64, seeds: &[String]) -> Result<View, Error> {
        self.now_ms = self.now_ms.max(now_ms);
        if self.phase == Phase::Left {
            return Err(Error::HasLeft);
        }
        if let Some(bad) = seeds.iter().find(|s| !is_valid_address(s)) {
            return Err(Error::InvalidAddress(bad.clone()));
        }
        let mut fresh = Vec::new();
        for s in seeds {
            if *s != self.cfg.address && !self.contacts.contains(s) {
                self.contacts.push(s.clone());
                fresh.push(s.clone());
            }
        }
        if self.phase == Phase::Idle {
            self.phase = Phase::Joined;
            let profile = ProfileBody {
                inc: self.incarnation,
                addr: self.cfg.address.clone(),
                meta: self.cfg.metadata.clone(),
            };
            let own = self.cfg.node_id.clone();
            let e = self.author(now_ms, KIND_JOIN, body(&profile));
            self.log(
                "joined",
                &[
                    ("incarnation", self.incarnation.into()),
                    ("entry", e.id_hex().into()),
                ],
            );
            // Self first, then whatever the stored ledger already knew.
            self.publish(&own);
            let others: Vec<String> = self.derived.members().into_iter().map(|m| m.id).collect();
            for id in others {
                self.publish(&id);
            }
            let first = self
                .rng
                .below(u64::from(self.cfg.tunables.probe_interval_ms).max(1));
            self.set_timer(TIMER_PROTOCOL, first);
            let gossip_phase = 1 + self.rng.below(GOSSIP_INTERVAL_MS);
            self.set_timer(TIMER_GOSSIP, gossip_phase);
            let ae = self.anti_entropy_delay();
            self.set_timer(TIMER_ANTI_ENTROPY, ae);
        }
        for s in fresh {
            self.contact(now_ms, &s);
        }
        self.members()
    }

    /// Leaves gracefully: records `left`, announces it to several members
    /// twice, then goes quiet.
    pub fn leave(&mut self, now_ms: u64) -> Result<(), Error> {
        self.now_ms = self.now_ms.max(now_ms);
        self.require_joined()?;
        self.phase = Phase::Left;
        let e = self.author(
            now_ms,
            KIND_LEAVE,
            body(&LeaveBody {
                inc: self.incarnation,
            }),
        );
        self.announce_leave(&e);
        for t in [
            TIMER_RELAY,
            TIMER_PROTOCOL,
            TIMER_PROBE_TIMEOUT,
            TIMER_INDIRECT_RETRY,
            TIMER_GOSSIP,
            TIMER_ANTI_ENTROPY,
        ] {
            self.effects.push(Effect::CancelTimer { timer: t });
        }
        self.set_timer(TIMER_LEAVE_REPEAT, LEAVE_REPEAT_MS);
        self.log("left", &[("entry", e.id_hex().into())]);
        Ok(())
    }

    /// The current view.
    pub fn members(&self) -> Result<View, Error> {
        if self.phase == Phase::Idle {
            return Err(Error::NotJoined);
        }
        Ok(View {
            version: self.version,
            members: self.published.values().cloned().collect(),
        })
    }

    /// Announces liveness now (an extra ping and gossip push); returns the
    /// number of heartbeats so far.
    pub fn publish_heartbeat(&mut self, now_ms: u64) -> Result<u64, Error> {
        self.now_ms = self.now_ms.max(now_ms);
        self.require_joined()?;
        self.heartbeats += 1;
        if let Some(target) = self.rng.sample(&self.live.items, 1).pop() {
            if let Some(m) = self.derived.member(&target) {
                let seq = self.fresh_seq();
                let entries = self.piggyback(PIGGYBACK_BYTES_BUDGET);
                let digest = digest8(self.ledger.root_digest());
                self.send(
                    &m.address,
                    &Message::Ping {
                        seq,
                        target,
                        digest,
                        entries,
                    },
                );
            }
        }
        self.gossip_round(now_ms);
        Ok(self.heartbeats)
    }

    /// Takes a Mesh VPN observation about a peer into account; returns the
    /// peer's state afterwards. Evidence, never a verdict.
    pub fn report_peer_state(
        &mut self,
        now_ms: u64,
        peer: &str,
        state: PeerState,
    ) -> Result<PeerState, Error> {
        self.require_joined()?;
        self.now_ms = self.now_ms.max(now_ms);
        if peer == self.cfg.node_id {
            return Err(Error::InvalidReport(format!(
                "cannot report on this node itself ({peer})"
            )));
        }
        if state == PeerState::Left {
            return Err(Error::InvalidReport(format!(
                "left is only ever declared by the leaving node itself, not reported about {peer}"
            )));
        }
        let Some(m) = self.published.get(peer).cloned() else {
            return Err(Error::UnknownPeer(peer.to_string()));
        };
        if matches!(state, PeerState::Suspect | PeerState::Dead) && m.state.is_live() {
            self.suspect(now_ms, peer, m.incarnation, "report");
        }
        Ok(self.published.get(peer).map_or(m.state, |m| m.state))
    }

    /// The metadata a member (or this node) offers.
    pub fn peer_metadata(&self, peer: &str) -> Result<Vec<(String, String)>, Error> {
        if self.phase == Phase::Idle {
            return Err(Error::NotJoined);
        }
        self.published
            .get(peer)
            .map(|m| m.metadata.clone())
            .ok_or_else(|| Error::UnknownPeer(peer.to_string()))
    }

    /// Handles a message from the address `from`. A malformed message is an
    /// error and changes nothing.
    pub fn handle_message(&mut self, now_ms: u64, from: &str, payload: &[u8]) -> Result<(), Error> {
        let msg = wire::decode(payload)?;
        self.now_ms = self.now_ms.max(now_ms);
        if self.phase != Phase::Joined {
            return Ok(());
        }
        match msg {
            Message::Ping {
                seq,
                target,
                digest,
                entries,
            } => {
                self.ingest(now_ms, from, entries, true);
                self.note_digest(from, digest);
                if !target.is_empty() && target != self.cfg.node_id {
                    self.log(
                        "misdirected-ping",
                        &[("from", from.into()), ("target", target.into())],
                    );
                    return Ok(());
                }
                let entries = self.piggyback_for(from);
                let digest = digest8(self.ledger.root_digest());
                self.send(
                    from,
                    &Message::Ack {
                        seq,
                        digest,
                        entries,
                    },
                );
            }
            Message::Ack {
                seq,
                digest,
                entries,
            } => {
                self.ingest(now_ms, from, entries, true);
                self.note_digest(from, digest);
                self.last_answer_ms = Some(now_ms);
                if let Some(p) = self.probes.get_mut(&seq) {
                    if !p.acked {
                        p.acked = true;
                        self.health = self.health.saturating_sub(1);
                    }
                }
                if let Some(r) = self.relays.remove(&seq) {
                    self.send(
                        &r.requester,
                        &Message::IndirectAck {
                            seq: r.requester_seq,
                        },
                    );
                }
                if digest != digest8(self.ledger.root_digest()) {
                    self.start_sync(now_ms, from, false);
                }
            }
            Message::PingReq {
                seq,
                target,
                address,
            } => {
                let my_seq = self.fresh_seq();
                // The requester decides at the end of its period, which is
                // (interval - timeout) after it asked: the nack must arrive
                // before that, or it cannot clear the requester's doubt
                // about itself.
                let t = &self.cfg.tunables;
                let wait =
                    u64::from(t.probe_interval_ms - t.probe_timeout_ms) * NACK_WAIT_PERCENT / 100;
                let deadline = now_ms + wait;
                if self.relays.values().all(|r| r.deadline > deadline) {
                    self.set_timer(TIMER_RELAY, wait);
                }
                self.relays.insert(
                    my_seq,
                    Relay {
                        requester: from.to_string(),
                        requester_seq: seq,
                        deadline,
                    },
                );
                let digest = digest8(self.ledger.root_digest());
                self.send(
                    &address,
                    &Message::Ping {
                        seq: my_seq,
                        target,
                        digest,
                        entries: Vec::new(),
                    },
                );
            }
            Message::IndirectAck { seq } => {
                self.last_answer_ms = Some(now_ms);
                if let Some(p) = self.probes.get_mut(&seq) {
                    p.acked = true;
                }
            }
            Message::Nack { seq } => {
                self.last_answer_ms = Some(now_ms);
                if let Some(p) = self.probes.get_mut(&seq) {
                    p.nacks += 1;
                }
            }
            Message::Gossip { entries } => self.ingest(now_ms, from, entries, true),
            Message::Sync { items } => self.on_sync(from, items),
            Message::Want { heads } => self.on_want(from, heads),
            Message::Entries { entries, rest } => {
                // Reconciled history is old news for the sender: no re-gossip.
                for a in entries.iter().map(|e| &e.author) {
                    if self.incoming.get(a) != Some(&now_ms) {
                        self.incoming.insert(a.clone(), now_ms);
                    }
                }
                self.ingest(now_ms, from, entries, false);
                let want: Vec<(String, u64)> = rest
                    .into_iter()
                    .filter(|(a, _)| validate_node_id(a).is_ok())
                    .map(|(a, from_seq)| {
                        let have = self.ledger.head_seq(&a).max(from_seq);
                        (a, have)
                    })
                    .collect();
                for (a, _) in &want {
                    self.incoming.insert(a.clone(), now_ms);
                }
                if !want.is_empty() {
                    self.send(from, &Message::Want { heads: want });
                }
            }
        }
        Ok(())
    }

    /// Handles a timer set through [`Effect::SetTimer`].
    pub fn handle_timer(&mut self, now_ms: u64, timer: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        match (self.phase, timer) {
            (Phase::Joined, TIMER_PROTOCOL) => self.protocol_tick(now_ms),
            (Phase::Joined, TIMER_PROBE_TIMEOUT) => self.probe_timeout(),
            (Phase::Joined, TIMER_INDIRECT_RETRY) => self.indirect_retry(),
            (Phase::Joined, TIMER_GOSSIP) => {
                self.gossip_round(now_ms);
                self.apply_death_rule(now_ms);
                self.set_timer(TIMER_GOSSIP, GOSSIP_INTERVAL_MS);
            }
            (Phase::Joined, TIMER_RELAY) => {
                self.expire_relays(now_ms);
                if let Some(next) = self.relays.values().map(|r| r.deadline).min() {
                    self.set_timer(TIMER_RELAY, next.saturating_sub(now_ms).max(1));
                }
            }
            (Phase::Joined, TIMER_ANTI_ENTROPY) => {
                self.prune_streams();
                self.anti_entropy(now_ms);
                let ae = self.anti_entropy_delay();
                self.set_timer(TIMER_ANTI_ENTROPY, ae);
            }
            (Phase::Left, TIMER_LEAVE_REPEAT) => {
                if let Some(e) = self.ledger.head(&self.cfg.node_id).cloned() {
                    self.announce_leave(&e);
                }
            }
            _ => {}
        }
    }

    /// Starts a reconciliation with the node at `address` now (the protocol
    /// also starts them by itself on a digest mismatch).
    pub fn reconcile_with(&mut self, now_ms: u64, address: &str) -> Result<(), Error> {
        self.now_ms = self.now_ms.max(now_ms);
        self.require_joined()?;
        if !is_valid_address(address) {
            return Err(Error::InvalidAddress(address.to_string()));
        }
        self.start_sync(now_ms, address, true);
        Ok(())
    }

    /// Takes every effect produced so far, in order.
    pub fn drain_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    // ----- internals: effects ------------------------------------------

    fn require_joined(&self) -> Result<(), Error> {
        match self.phase {
            Phase::Idle => Err(Error::NotJoined),
            Phase::Left => Err(Error::HasLeft),
            Phase::Joined => Ok(()),
        }
    }

    fn send(&mut self, to: &str, msg: &Message) {
        self.effects.push(Effect::Send {
            to: to.to_string(),
            payload: wire::encode(msg),
        });
    }

    fn set_timer(&mut self, timer: u64, after_ms: u64) {
        self.effects.push(Effect::SetTimer { timer, after_ms });
    }

    fn log(&mut self, kind: &str, pairs: &[(&str, serde_json::Value)]) {
        self.effects.push(Effect::Log {
            kind: kind.to_string(),
            detail: json(pairs),
        });
    }

    fn fresh_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    // ----- internals: ledger and view ------------------------------------

    /// Writes an entry of this node's own chain and takes it into account.
    fn author(&mut self, now_ms: u64, kind: &str, body: Vec<u8>) -> Entry {
        let (seq, prev) = self
            .ledger
            .head(&self.cfg.node_id)
            .map_or((1, crate::ledger::GENESIS_PREV), |h| (h.seq + 1, h.id));
        self.lamport += 1;
        let e = Entry::new(&self.cfg.node_id, seq, prev, self.lamport, kind, body);
        match self.ledger.insert(e.clone()) {
            Ok(Insert::Linked(linked)) => self.accept(now_ms, linked, true),
            other => unreachable!("own entry must link: {other:?}"),
        }
        e
    }

    /// Folds an entry into the derived view and suspicion bookkeeping.
    /// Returns the subjects touched.
    fn fold(&mut self, now_ms: u64, e: &Entry) -> Vec<String> {
        let touched = match self.derived.apply(e) {
            Ok(t) => t,
            Err(why) => {
                self.log(
                    "entry-ignored",
                    &[("entry", e.id_hex().into()), ("reason", why.into())],
                );
                return Vec::new();
            }
        };
        if e.kind == KIND_SUSPECT {
            if let Ok(b) = serde_json::from_slice::<SuspectBody>(&e.body) {
                let jitter = self.rng.below(CONFIRM_JITTER_MS + 1);
                let s = self
                    .suspicions
                    .entry((b.subject.clone(), b.inc))
                    .or_insert(Suspicion {
                        first_seen: now_ms,
                        authors: BTreeMap::new(),
                        jitter,
                        confirmed: false,
                    });
                s.authors.insert(e.author.clone(), e.id);
                let mine = s.authors.contains_key(&self.cfg.node_id);
                if !mine && b.subject != self.cfg.node_id {
                    self.confirm_queue.insert(b.subject);
                }
            }
        }
        if e.kind == KIND_CONFIRM_DEAD {
            if let Ok(b) = serde_json::from_slice::<DeadBody>(&e.body) {
                if let Some(s) = self.suspicions.get_mut(&(b.subject, b.inc)) {
                    s.confirmed = true;
                }
            }
        }
        touched
    }

    /// Takes newly linked entries into account: persist, view, gossip,
    /// updates, refutation.
    fn accept(&mut self, now_ms: u64, linked: Vec<Entry>, regossip: bool) {
        let mut touched = BTreeSet::new();
        self.agreeing = 0;
        for e in linked {
            self.lamport = self.lamport.max(e.clock);
            self.effects.push(Effect::Append(e.clone()));
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

    fn refute_if_needed(&mut self, now_ms: u64) {
        if self.phase != Phase::Joined {
            return;
        }
        let Some(c) = self.derived.claim(&self.cfg.node_id).cloned() else {
            return;
        };
        if !matches!(c.state, PeerState::Suspect | PeerState::Dead) {
            return;
        }
        self.incarnation = self.incarnation.max(c.inc + 1);
        self.health = (self.health + 1).min(HEALTH_MAX);
        let profile = ProfileBody {
            inc: self.incarnation,
            addr: self.cfg.address.clone(),
            meta: self.cfg.metadata.clone(),
        };
        let e = self.author(now_ms, KIND_ALIVE, body(&profile));
        self.log(
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
    fn publish(&mut self, id: &str) {
        let Some(new) = self.derived.member(id) else {
            return;
        };
        let old = self.published.get(id);
        if old == Some(&new) {
            return;
        }
        let previous = old.map(|m| m.state);
        let cause = match (previous, new.state) {
            (None, _) => Cause::Joined,
            (Some(PeerState::Suspect), PeerState::Suspect)
                if old.is_some_and(|o| o.incarnation != new.incarnation) =>
            {
                Cause::Suspected
            }
            (Some(p), n) if p == n => Cause::Changed,
            (_, PeerState::Left) => Cause::Left,
            (_, PeerState::Dead) => Cause::ConfirmedDead,
            (Some(PeerState::Dead), _) => Cause::Recovered,
            (Some(PeerState::Left), _) => Cause::Joined,
            (_, PeerState::Suspect) => Cause::Suspected,
            (Some(PeerState::Suspect), PeerState::Alive) => Cause::Refuted,
            (Some(_), PeerState::Alive) => Cause::Changed,
        };
        self.version += 1;
        self.track_state(id, previous, new.state);
        self.published.insert(id.to_string(), new.clone());
        self.probe_order_insert(id, new.state);
        self.effects.push(Effect::Update(Update {
            peer: id.to_string(),
            previous,
            current: new,
            cause,
            entry: self.derived.entry_of(id),
            version: self.version,
        }));
    }

    /// Verifies and inserts received entries, logging rejections.
    fn ingest(&mut self, now_ms: u64, from: &str, entries: Vec<WireEntry>, regossip: bool) {
        let mut gaps: BTreeSet<String> = BTreeSet::new();
        for w in entries {
            let e: Entry = w.into();
            let (author, id) = (e.author.clone(), e.id);
            match self.ledger.insert(e) {
                Ok(Insert::Linked(linked)) => self.accept(now_ms, linked, regossip),
                Ok(Insert::Duplicate) => {}
                Ok(Insert::Buffered) => {
                    gaps.insert(author);
                }
                Ok(Insert::Equivocation(ev)) => {
                    self.log(
                        "equivocation",
                        &[
                            ("author", ev.author.clone().into()),
                            ("seq", ev.seq.into()),
                            ("kept", hex::encode(ev.kept).into()),
                            ("conflicting", ev.conflicting.id_hex().into()),
                            ("from", from.into()),
                        ],
                    );
                    self.enqueue_broadcast(ev.conflicting);
                }
                Err(reason) => {
                    self.log(
                        "entry-rejected",
                        &[
                            ("from", from.into()),
                            ("entry", hex::encode(id).into()),
                            ("reason", reason.into()),
                        ],
                    );
                }
            }
        }
        // Ask the sender for what lies between our heads and what it sent.
        let gaps: Vec<(String, u64)> = gaps
            .into_iter()
            .map(|a| {
                let head = self.ledger.head_seq(&a);
                (a, head)
            })
            .filter(|(a, h)| self.ledger.get(a, h + 1).is_none() && !self.streaming_in(a))
            .collect();
        if !gaps.is_empty() {
            self.send(from, &Message::Want { heads: gaps });
        }
    }

    // ----- internals: dissemination --------------------------------------

    fn cluster_size(&self) -> usize {
        self.live_count.max(1)
    }

    fn retransmit_limit(&self) -> u32 {
        let n = self.cluster_size() as f64;
        let limit = f64::from(self.cfg.tunables.retransmit_multiplier) * (n + 1.0).log10();
        (limit.ceil() as u32).max(1)
    }

    /// Queues an entry for gossip. Each entry comes here at most once: the
    /// ledger links an entry once and reports an equivocation once.
    fn enqueue_broadcast(&mut self, entry: Entry) {
        if self.broadcasts.len() >= MAX_BROADCAST_QUEUE {
            if let Some(i) =
                (0..self.broadcasts.len()).min_by_key(|&i| self.broadcasts[i].remaining)
            {
                self.broadcasts.remove(i);
            }
        }
        let remaining = self.retransmit_limit();
        self.broadcasts.push(Broadcast {
            entry,
            remaining,
            queued_at: self.now_ms,
        });
    }

    /// Takes the freshest queued entries that fit `budget` bytes.
    fn piggyback(&mut self, budget: usize) -> Vec<WireEntry> {
        if self.broadcasts.is_empty() {
            return Vec::new();
        }
        let mut order: Vec<usize> = (0..self.broadcasts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.broadcasts[i].remaining));
        let mut used = 0;
        let mut out = Vec::new();
        for i in order {
            let size = wire::entry_wire_size(&self.broadcasts[i].entry);
            // One entry always fits, however large (a verdict citing 40
            // suspicions is bigger than the piggyback budget).
            if (!out.is_empty() && used + size > budget) || out.len() >= MAX_ENTRIES_PER_MESSAGE {
                continue;
            }
            used += size;
            out.push(WireEntry::from(&self.broadcasts[i].entry));
            self.broadcasts[i].remaining -= 1;
        }
        self.broadcasts.retain(|b| b.remaining > 0);
        // Keep chain order so receivers link without buffering.
        out.sort_by(|a, b| (a.author.as_str(), a.seq).cmp(&(b.author.as_str(), b.seq)));
        out
    }

    fn note_digest(&mut self, from: &str, digest: Digest8) {
        if digest == digest8(self.ledger.root_digest()) {
            self.agreeing = self.agreeing.saturating_add(1);
        } else {
            self.agreeing = 0;
        }
        self.peer_digest.insert(from.to_string(), digest);
    }

    /// Whether the last digest heard from `addr` equals ours: then it holds
    /// every entry we hold and gossip to it would be wasted.
    fn in_sync_with(&self, addr: &str) -> bool {
        self.peer_digest.get(addr) == Some(&digest8(self.ledger.root_digest()))
    }

    fn piggyback_for(&mut self, addr: &str) -> Vec<WireEntry> {
        if self.in_sync_with(addr) {
            return Vec::new();
        }
        self.piggyback(PIGGYBACK_BYTES_BUDGET)
    }

    fn gossip_round(&mut self, now_ms: u64) {
        self.broadcasts
            .retain(|b| now_ms < b.queued_at + BROADCAST_MAX_AGE_MS);
        if self.broadcasts.is_empty() {
            return;
        }
        let targets = self.sample_live(GOSSIP_FANOUT, |n, id| {
            n.published
                .get(id)
                .is_some_and(|m| !n.in_sync_with(&m.address))
        });
        if targets.is_empty() {
            // Every live peer reported our digest: nothing left to spread.
            self.broadcasts.clear();
            return;
        }
        for id in targets {
            let entries = self.piggyback(PIGGYBACK_BYTES_BUDGET);
            if entries.is_empty() {
                break;
            }
            if let Some(m) = self.derived.member(&id) {
                self.send(&m.address, &Message::Gossip { entries });
            }
        }
    }

    fn announce_leave(&mut self, e: &Entry) {
        for id in self.rng.sample(&self.live.items, LEAVE_FANOUT) {
            if let Some(m) = self.derived.member(&id) {
                self.send(
                    &m.address,
                    &Message::Gossip {
                        entries: vec![WireEntry::from(e)],
                    },
                );
            }
        }
    }

    // ----- internals: reconciliation -------------------------------------

    fn sync_item(&self, path: Vec<u8>) -> SyncItem {
        let (digests, count) = self.ledger.child_digests(&path);
        if count <= SYNC_LEAF_AUTHORS || path.len() >= MAX_SYNC_DEPTH {
            SyncItem::Leaf {
                heads: self.ledger.heads_under(&path),
                path,
            }
        } else {
            SyncItem::Node {
                path,
                digests: digests.into_iter().map(digest8).collect(),
            }
        }
    }

    /// Starts a reconciliation with `to` (rate-limited unless forced).
    fn start_sync(&mut self, now_ms: u64, to: &str, force: bool) {
        if !force
            && self
                .last_sync
                .get(to)
                .is_some_and(|&t| now_ms < t + SYNC_MIN_GAP_MS)
        {
            return;
        }
        self.last_sync.insert(to.to_string(), now_ms);
        let item = self.sync_item(Vec::new());
        self.send(to, &Message::Sync { items: vec![item] });
    }

    fn on_sync(&mut self, from: &str, items: Vec<SyncItem>) {
        let mut replies = Vec::new();
        let mut push: Vec<(String, u64)> = Vec::new();
        let mut want: Vec<(String, u64)> = Vec::new();
        for item in items {
            match item {
                SyncItem::Node { path, digests } => {
                    let (mine, _) = self.ledger.child_digests(&path);
                    for (nib, theirs) in digests.iter().enumerate() {
                        if digest8(mine[nib]) != *theirs {
                            let mut child = path.clone();
                            child.push(nib as u8);
                            replies.push(self.sync_item(child));
                        }
                    }
                }
                SyncItem::Leaf { path, heads } => {
                    let theirs: BTreeMap<String, u64> = heads.into_iter().collect();
                    for (author, seq) in self.ledger.heads_under(&path) {
                        let t = theirs.get(&author).copied().unwrap_or(0);
                        if seq > t {
                            push.push((author, t));
                        }
                    }
                    for (author, t) in theirs {
                        // A stream of this author already under way brings
                        // the entries; asking again would ship them twice.
                        if crate::config::validate_node_id(&author).is_ok()
                            && self.ledger.head_seq(&author) < t
                            && !self.streaming_in(&author)
                        {
                            want.push((author.clone(), self.ledger.head_seq(&author)));
                        }
                    }
                }
            }
        }
        for chunk in replies.chunks(SYNC_ITEMS_PER_MESSAGE.min(MAX_SYNC_ITEMS)) {
            self.send(
                from,
                &Message::Sync {
                    items: chunk.to_vec(),
                },
            );
        }
        if !want.is_empty() {
            for (a, _) in &want {
                self.incoming.insert(a.clone(), self.now_ms);
            }
            for chunk in want.chunks(MAX_HEADS) {
                self.send(
                    from,
                    &Message::Want {
                        heads: chunk.to_vec(),
                    },
                );
            }
        }
        if !push.is_empty() {
            self.send_entries(from, push);
        }
    }

    /// Whether a stream of `author`'s entries is in flight towards us.
    fn streaming_in(&self, author: &str) -> bool {
        self.incoming
            .get(author)
            .is_some_and(|&t| self.now_ms < t + STREAM_STALL_MS)
    }

    /// Forgets streams that stalled (bounds both maps).
    fn prune_streams(&mut self) {
        let now = self.now_ms;
        self.incoming.retain(|_, t| now < *t + STREAM_STALL_MS);
        self.outgoing.retain(|_, (t, _)| now < *t + STREAM_STALL_MS);
    }

    fn on_want(&mut self, from: &str, heads: Vec<(String, u64)>) {
        self.send_entries(from, heads);
    }

    /// Sends every entry after each (author, seq), in at most
    /// [`SYNC_BURST_MESSAGES`] messages. What does not fit is named in the
    /// last message's `rest`, which the receiver turns into its next want:
    /// one stream per request, nothing sent twice.
    fn send_entries(&mut self, to: &str, heads: Vec<(String, u64)>) {
        let mut batches: Vec<Vec<WireEntry>> = Vec::new();
        let mut cur = Vec::new();
        let mut used = 0;
        let mut rest: Vec<(String, u64)> = Vec::new();
        let mut sent: Vec<(String, u64)> = Vec::new();
        let now = self.now_ms;
        'outer: for (i, (author, have)) in heads.iter().enumerate() {
            let head = self.ledger.head_seq(author);
            // What a stream still in flight to this peer already carried is
            // not sent again (see STREAM_STALL_MS).
            let key = (to.to_string(), author.clone());
            let have = match self.outgoing.get(&key) {
                Some(&(t, upto)) if now < t + STREAM_STALL_MS => (*have).max(upto),
                _ => *have,
            };
            if have < head {
                sent.push((author.clone(), have));
            }
            for seq in have + 1..=head {
                let e = self.ledger.get(author, seq).expect("within chain");
                let size = wire::entry_wire_size(e);
                if used + size > ENTRY_BYTES_BUDGET || cur.len() >= MAX_ENTRIES_PER_MESSAGE {
                    batches.push(std::mem::take(&mut cur));
                    used = 0;
                    if batches.len() >= SYNC_BURST_MESSAGES {
                        if let Some(last) = sent.last_mut() {
                            last.1 = seq - 1;
                        }
                        rest.push((author.clone(), seq - 1));
                        rest.extend(heads[i + 1..].iter().take(MAX_HEADS - 1).cloned());
                        break 'outer;
                    }
                }
                used += size;
                cur.push(WireEntry::from(e));
            }
        }
        if !cur.is_empty() {
            batches.push(cur);
        }
        // Record how far each stream got: every author begun reached its
        // head, except a last one cut off by the burst limit (its entry in
        // `sent` was set to the cut point above).
        let cut = !rest.is_empty();
        let count = sent.len();
        for (k, (author, start)) in sent.into_iter().enumerate() {
            let upto = if cut && k + 1 == count {
                start
            } else {
                self.ledger.head_seq(&author)
            };
            self.outgoing.insert((to.to_string(), author), (now, upto));
        }
        let n = batches.len();
        for (i, entries) in batches.into_iter().enumerate() {
            let rest = if i + 1 == n {
                std::mem::take(&mut rest)
            } else {
                Vec::new()
            };
            self.send(to, &Message::Entries { entries, rest });
        }
    }

    fn contact(&mut self, now_ms: u64, addr: &str) {
        let head = self.ledger.head_seq(&self.cfg.node_id);
        let from = head.saturating_sub(CONTACT_OWN_ENTRIES as u64 - 1).max(1);
        let own_tail: Vec<WireEntry> = self
            .ledger
            .entries(&self.cfg.node_id, from, CONTACT_OWN_ENTRIES)
            .iter()
            .map(WireEntry::from)
            .collect();
        self.send(addr, &Message::Gossip { entries: own_tail });
        self.start_sync(now_ms, addr, true);
    }

    /// The anti-entropy interval with ±50 % jitter, so that nodes started
    /// together do not all ping a dead member in the same instant.
    fn anti_entropy_delay(&mut self) -> u64 {
        let base = u64::from(self.cfg.tunables.anti_entropy_interval_ms);
        base / 2 + self.rng.below(base + 1)
    }

    fn anti_entropy(&mut self, now_ms: u64) {
        if self.live.is_empty() {
            for c in self.contacts.clone() {
                self.contact(now_ms, &c);
            }
        }
        let dead = self.rng.sample(&self.dead.items, 1).pop();
        if let Some(m) = dead.and_then(|id| self.published.get(&id).cloned()) {
            let seq = self.fresh_seq();
            let digest = digest8(self.ledger.root_digest());
            self.send(
                &m.address,
                &Message::Ping {
                    seq,
                    target: m.id,
                    digest,
                    entries: Vec::new(),
                },
            );
        }
    }

    // ----- internals: failure detection ----------------------------------

    /// Up to `k` live peers (self excluded) that pass `keep`, in random
    /// order. Draws candidates lazily, so the cost is O(k log n) unless most
    /// peers fail the test.
    fn sample_live(&mut self, k: usize, keep: impl Fn(&Node, &str) -> bool) -> Vec<String> {
        let mut perm = Permutation::new(self.live.items.len());
        let mut out = Vec::new();
        while out.len() < k {
            let Some(i) = perm.next(&mut self.rng) else {
                break;
            };
            let id = &self.live.items[i];
            if keep(self, id) {
                out.push(id.clone());
            }
        }
        out
    }

    /// Keeps the live and dead sets and the cluster size in step with a
    /// change of `published`.
    fn track_state(&mut self, id: &str, old: Option<PeerState>, new: PeerState) {
        let was_live = old.is_some_and(PeerState::is_live);
        if was_live != new.is_live() {
            if new.is_live() {
                self.live_count += 1;
            } else {
                self.live_count -= 1;
            }
        }
        if id == self.cfg.node_id {
            return;
        }
        if new.is_live() {
            self.live.insert(id);
        } else {
            self.live.remove(id);
        }
        if new == PeerState::Dead {
            self.dead.insert(id);
        } else {
            self.dead.remove(id);
        }
    }

    fn probe_order_insert(&mut self, id: &str, state: PeerState) {
        if id == self.cfg.node_id || !state.is_live() || self.in_probe_order.contains(id) {
            return;
        }
        // A random place in O(1): append, then swap with a random slot (the
        // member that was there moves to the end, itself a random place).
        let at = self.rng.below(self.probe_order.len() as u64 + 1) as usize;
        self.probe_order.push(id.to_string());
        let last = self.probe_order.len() - 1;
        self.probe_order.swap(at, last);
        self.in_probe_order.insert(id.to_string());
    }

    fn next_probe_target(&mut self) -> Option<String> {
        while let Some(id) = self.probe_order.pop() {
            self.in_probe_order.remove(&id);
            if self.published.get(&id).is_some_and(|m| m.state.is_live()) && id != self.cfg.node_id
            {
                return Some(id);
            }
        }
        // A new round over every live peer: O(n) once per n probes.
        let mut fresh = self.live.items.clone();
        self.rng.shuffle(&mut fresh);
        let next = fresh.pop();
        self.in_probe_order = fresh.iter().cloned().collect();
        self.probe_order = fresh;
        next
    }

    fn start_probe(&mut self, target: &str) {
        let Some(m) = self.published.get(target).cloned() else {
            return;
        };
        let seq = self.fresh_seq();
        self.probes.insert(
            seq,
            Probe {
                target: target.to_string(),
                acked: false,
                helpers: 0,
                nacks: 0,
                asked: Vec::new(),
                retried: false,
                started: self.now_ms,
                deferred: false,
            },
        );
        let entries = self.piggyback_for(&m.address);
        let digest = digest8(self.ledger.root_digest());
        self.send(
            &m.address,
            &Message::Ping {
                seq,
                target: target.to_string(),
                digest,
                entries,
            },
        );
    }

    fn protocol_tick(&mut self, now_ms: u64) {
        self.finish_probes(now_ms);
        if self.live.is_empty() {
            for c in self.contacts.clone() {
                self.start_sync(now_ms, &c, false);
            }
        }
        if let Some(t) = self.next_probe_target() {
            self.start_probe(&t);
        }
        let mut confirms = 0;
        let queue: Vec<String> = std::mem::take(&mut self.confirm_queue)
            .into_iter()
            .collect();
        for subject in queue {
            let Some(m) = self.published.get(&subject).cloned() else {
                continue;
            };
            if m.state != PeerState::Suspect || self.suspects_myself(&subject, m.incarnation) {
                continue;
            }
            if self.probes.values().any(|p| p.target == subject) {
                continue;
            }
            if confirms >= CONFIRM_PROBES_PER_PERIOD {
                self.confirm_queue.insert(subject);
                continue;
            }
            confirms += 1;
            self.start_probe(&subject);
        }
        let timeout = (u64::from(self.cfg.tunables.probe_timeout_ms)
            * (1 + u64::from(self.health)))
        .min(u64::from(self.cfg.tunables.probe_interval_ms) * PROBE_TIMEOUT_CAP_PERCENT / 100);
        self.probe_slack_ms =
            u64::from(self.cfg.tunables.probe_interval_ms).saturating_sub(timeout);
        if !self.probes.is_empty() {
            self.set_timer(TIMER_PROBE_TIMEOUT, timeout);
        }
        self.set_timer(
            TIMER_PROTOCOL,
            u64::from(self.cfg.tunables.probe_interval_ms),
        );
    }

    fn probe_timeout(&mut self) {
        let k = self.cfg.tunables.indirect_probes as usize;
        let pending: Vec<(u32, String)> = self
            .probes
            .iter()
            .filter(|(_, p)| !p.acked && p.helpers == 0)
            .map(|(s, p)| (*s, p.target.clone()))
            .collect();
        for (seq, target) in pending {
            let Some(addr) = self.published.get(&target).map(|m| m.address.clone()) else {
                continue;
            };
            let helpers: Vec<String> = self
                .sample_live(k, |n, id| {
                    id != target
                        && n.published
                            .get(id)
                            .is_some_and(|m| m.state == PeerState::Alive)
                })
                .iter()
                .filter_map(|id| self.published.get(id).map(|m| m.address.clone()))
                .collect();
            // More direct pings alongside the indirect ones: under loss each
            // cuts the false-failure rate by a third for 15 bytes.
            let digest = digest8(self.ledger.root_digest());
            for _ in 0..DIRECT_RETRIES_AT_TIMEOUT {
                self.send(
                    &addr,
                    &Message::Ping {
                        seq,
                        target: target.clone(),
                        digest,
                        entries: Vec::new(),
                    },
                );
            }
            for h in &helpers {
                self.send(
                    h,
                    &Message::PingReq {
                        seq,
                        target: target.clone(),
                        address: addr.clone(),
                    },
                );
            }
            if let Some(p) = self.probes.get_mut(&seq) {
                p.helpers = helpers.len() as u32;
                p.asked = helpers;
            }
        }
        if self.probes.values().any(|p| !p.acked && p.helpers > 0) {
            let after = (self.probe_slack_ms * INDIRECT_RETRY_PERCENT / 100).max(1);
            self.set_timer(TIMER_INDIRECT_RETRY, after);
        }
    }

    /// Asks a second, disjoint set of helpers about every probe that is
    /// still unanswered: a target that some helpers cannot reach is not
    /// suspected for their sake.
    fn indirect_retry(&mut self) {
        let k = self.cfg.tunables.indirect_probes as usize;
        let pending: Vec<(u32, String, Vec<String>)> = self
            .probes
            .iter()
            .filter(|(_, p)| !p.acked && p.helpers > 0 && !p.retried)
            .map(|(s, p)| (*s, p.target.clone(), p.asked.clone()))
            .collect();
        for (seq, target, asked) in pending {
            let Some(addr) = self.published.get(&target).map(|m| m.address.clone()) else {
                continue;
            };
            let helpers: Vec<String> = self
                .sample_live(k, |n, id| {
                    id != target
                        && n.published.get(id).is_some_and(|m| {
                            m.state == PeerState::Alive && !asked.contains(&m.address)
                        })
                })
                .iter()
                .filter_map(|id| self.published.get(id).map(|m| m.address.clone()))
                .collect();
            for h in &helpers {
                self.send(
                    h,
                    &Message::PingReq {
                        seq,
                        target: target.clone(),
                        address: addr.clone(),
                    },
                );
            }
            if let Some(p) = self.probes.get_mut(&seq) {
                p.retried = true;
                p.helpers += helpers.len() as u32;
                p.asked.extend(helpers);
            }
        }
    }

    fn finish_probes(&mut self, now_ms: u64) {
        let probes = std::mem::take(&mut self.probes);
        for (seq, mut p) in probes {
            if p.acked {
                continue;
            }
            if p.helpers > 0 && p.nacks == 0 && !p.deferred {
                // Nobody answered at all: more likely our own problem.
                self.health = (self.health + 1).min(HEALTH_MAX);
            }
            let Some(m) = self.published.get(&p.target).cloned() else {
                continue;
            };
            if !m.state.is_live() {
                continue;
            }
            // Helpers were asked, yet nothing this node sent since the probe
            // started got any answer (ack, indirect ack, nack): its own
            // messages probably do not get out (a mute node). Its suspicion
            // would spread once it is heard again and make a healthy peer
            // renew its identity. Wait one more period for late answers
            // (nacks come late while local health stretches the timeout),
            // then withhold.
            let silent = p.helpers > 0 && self.last_answer_ms.is_none_or(|t| t < p.started);
            if silent && !p.deferred {
                p.deferred = true;
                p.retried = true;
                self.probes.insert(seq, p);
                continue;
            }
            if silent {
                self.log(
                    "suspicion-withheld",
                    &[
                        ("subject", p.target.clone().into()),
                        ("reason", "no answers".into()),
                    ],
                );
                continue;
            }
            if self.health >= HEALTH_WITHHOLD_SUSPICION {
                self.log(
                    "suspicion-withheld",
                    &[
                        ("subject", p.target.clone().into()),
                        ("health", self.health.into()),
                    ],
                );
                continue;
            }
            self.suspect(now_ms, &p.target, m.incarnation, "probe");
        }
    }

    fn suspects_myself(&self, subject: &str, inc: u64) -> bool {
        self.suspicions
            .get(&(subject.to_string(), inc))
            .is_some_and(|s| s.authors.contains_key(&self.cfg.node_id))
    }

    /// Writes this node's suspicion of (subject, inc) unless it holds one.
    fn suspect(&mut self, now_ms: u64, subject: &str, inc: u64, why: &str) {
        if self.suspects_myself(subject, inc) {
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
        self.log(
            "suspected",
            &[
                ("subject", subject.into()),
                ("incarnation", inc.into()),
                ("why", why.into()),
                ("entry", e.id_hex().into()),
            ],
        );
    }

    fn expire_relays(&mut self, now_ms: u64) {
        let expired: Vec<u32> = self
            .relays
            .iter()
            .filter(|(_, r)| r.deadline <= now_ms)
            .map(|(s, _)| *s)
            .collect();
        for s in expired {
            if let Some(r) = self.relays.remove(&s) {
                self.send(
                    &r.requester,
                    &Message::Nack {
                        seq: r.requester_seq,
                    },
                );
            }
        }
    }

    /// Minimum suspicion timeout for the current cluster size.
    fn suspicion_min_ms(&self) -> u64 {
        let n = self.cluster_size() as f64;
        let t = &self.cfg.tunables;
        (f64::from(t.suspicion_multiplier)
            * f64::from(t.probe_interval_ms)
            * (n + 1.0).log10().max(1.0)) as u64
    }

    /// Distinct suspecting authors needed for a verdict: a strict majority
    /// of the live members (the subject included), or the configured
    /// quorum if that is higher.
    pub fn death_quorum_needed(&self) -> usize {
        let live = self.cluster_size();
        (live / 2 + 1).max(self.cfg.tunables.death_quorum as usize)
    }

    fn apply_death_rule(&mut self, now_ms: u64) {
        let needed = self.death_quorum_needed();
        let min = self.suspicion_min_ms();
        let max = min * SUSPICION_MAX_FACTOR;
        let mut verdicts = Vec::new();
        let mut stale = Vec::new();
        for ((subject, inc), s) in &self.suspicions {
            let current = self.derived.claim(subject);
            let still = current.is_some_and(|c| c.inc == *inc && c.state == PeerState::Suspect);
            if !still {
                if current.is_some_and(|c| c.inc > *inc || c.state != PeerState::Suspect) {
                    stale.push((subject.clone(), *inc));
                }
                continue;
            }
            if s.confirmed || subject == &self.cfg.node_id {
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
                + u64::from(self.health) * u64::from(self.cfg.tunables.probe_interval_ms);
            if k >= needed
                && now_ms >= s.first_seen + timeout
                && self.health < HEALTH_WITHHOLD_SUSPICION
            {
                let mut evidence: Vec<String> = s.authors.values().map(hex::encode).collect();
                evidence.sort();
                evidence.truncate(MAX_EVIDENCE_IDS);
                verdicts.push((subject.clone(), *inc, evidence, k));
            }
        }
        for key in stale {
            self.suspicions.remove(&key);
        }
        for (subject, inc, evidence, k) in verdicts {
            if let Some(s) = self.suspicions.get_mut(&(subject.clone(), inc)) {
                s.confirmed = true;
            }
            let b = DeadBody {
                subject: subject.clone(),
                inc,
                evidence,
                suspecters: k as u32,
            };
            let e = self.author(now_ms, KIND_CONFIRM_DEAD, body(&b));
            self.log(
                "confirmed-dead",
                &[
                    ("subject", subject.into()),
                    ("incarnation", inc.into()),
                    ("suspecters", k.into()),
                    ("needed", needed.into()),
                    ("entry", e.id_hex().into()),
                ],
            );
        }
    }
}
