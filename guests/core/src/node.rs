//! The node: a deterministic state machine. Inputs are API calls, messages
//! and timers, each with the current time; outputs are [`Effect`]s.
//!
//! This module holds the public API and the dispatch of messages and
//! timers. Each concept keeps its own state in its own (crate-private)
//! module: the published view in `roster`, probes in `probe`, suspicions
//! and the death rule in `suspicion`, dissemination in `gossip`,
//! reconciliation in `reconcile`, and the path from ledger entries to
//! updates in `view`.

use nodeplane_types::{Effect, Member, MembershipView, NodeConfig, PeerState, Tunables};

use crate::checkpoint_driver::Checkpoints;
use crate::config::*;
use crate::effect::{EffectSink, Effects, Timer};
use crate::error::Error;
use crate::gossip::Gossip;
use crate::ledger::{Entry, EntryStore, Equivocation, Hash, Insert, Ledger};
use crate::membership::*;
use crate::probe::Prober;
use crate::reconcile::Reconciler;
use crate::rng::Rng;
use crate::roster::Roster;
use crate::suspicion::Suspicions;
use crate::wire::{self, Digest8, Message};
use nodeplane_entry::signing::Signer;

/// Where a node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Created, not joined yet.
    Idle,
    /// Joined: running the protocol.
    Joined,
    /// Left: quiet but for the second leave announcement.
    Left,
}

/// The sans-IO node plane of one node.
#[derive(Debug)]
pub struct Node {
    pub(crate) cfg: NodeConfig,
    pub(crate) rng: Rng,
    pub(crate) ledger: Ledger,
    /// The view as a function of the ledger.
    pub(crate) derived: Derived,
    /// The view as published to subscribers.
    pub(crate) roster: Roster,
    pub(crate) prober: Prober,
    pub(crate) suspicions: Suspicions,
    pub(crate) gossip: Gossip,
    pub(crate) reconcile: Reconciler,
    pub(crate) effects: Effects,
    pub(crate) phase: Phase,
    pub(crate) incarnation: u64,
    /// Lamport clock: above every entry clock seen.
    pub(crate) lamport: u64,
    heartbeats: u64,
    /// Time of the input being handled.
    pub(crate) now_ms: u64,
    /// This node's signing key (held by the host) and every signature
    /// check.
    pub(crate) signer: Box<dyn Signer>,
    /// Checkpoints: the agreed chain and the open round (stage A: agreed,
    /// nothing pruned).
    pub(crate) checkpoints: Checkpoints,
}

/// The 8-byte form of a frontier or bucket digest on the wire.
pub(crate) fn digest8(d: u64) -> Digest8 {
    d.to_be_bytes()
}

/// What replaying the stored ledger found about this node itself.
#[derive(Debug, Default)]
struct Restored {
    /// The highest incarnation any stored claim names for this node.
    max_inc_about_self: Option<u64>,
    /// This node's own latest claim about itself (`join`/`alive` or
    /// `leave`): the incarnation it last announced, and in which state.
    own_claim: Option<(u64, PeerState)>,
}

impl Restored {
    /// Takes one stored claim about this node into account (`own`: this
    /// node wrote it; its chain links in order, so the last one wins).
    fn note(&mut self, own: bool, inc: u64, state: PeerState) {
        // Only this node's own entries set its incarnation: another node's
        // claim takes effect only at an incarnation this node announced
        // (docs/design.md §2), so it can never raise it.
        if own {
            self.max_inc_about_self = Some(self.max_inc_about_self.map_or(inc, |m| m.max(inc)));
            self.own_claim = Some((inc, state));
        }
    }

    /// The incarnation of a new process: above every stored claim about
    /// this node (1 when there is none).
    fn fresh_incarnation(&self) -> u64 {
        self.max_inc_about_self
            .map_or(1, |inc| inc.saturating_add(1))
    }
}

impl Node {
    /// Starts a node in a new process: validates the configuration,
    /// verifies and replays the stored ledger, and raises this node's
    /// incarnation above anything recorded about it (its `join` will
    /// announce that incarnation).
    pub fn new(
        config: NodeConfig,
        stored: Vec<Entry>,
        seed: u64,
        now_ms: u64,
        signer: Box<dyn Signer>,
    ) -> Result<Node, Error> {
        let (mut node, restored) = Node::restore(config, stored, seed, now_ms, signer)?;
        node.incarnation = restored.fresh_incarnation();
        Ok(node)
    }

    /// Rebuilds a node of the *same* process from its ledger after its
    /// previous instance crashed or was hot-swapped out (the host's
    /// `lifecycle.started-as` is `resume`). When the ledger holds this
    /// node's own announcement of an incarnation (its latest `join` or
    /// `alive`), the node continues at that incarnation and is joined at
    /// once, writing no entry: a crash is not a restart, so peers see no
    /// change. Otherwise (nothing announced yet, or the latest own entry is
    /// `leave`) it starts as [`Node::new`] does.
    pub fn resume(
        config: NodeConfig,
        stored: Vec<Entry>,
        seed: u64,
        now_ms: u64,
        signer: Box<dyn Signer>,
    ) -> Result<Node, Error> {
        let (mut node, restored) = Node::restore(config, stored, seed, now_ms, signer)?;
        match restored.own_claim {
            Some((inc, state)) if state != PeerState::Left && inc >= 1 => {
                node.incarnation = inc;
                node.phase = Phase::Joined;
                node.effects.log(
                    "resumed",
                    &[
                        ("incarnation", inc.into()),
                        ("entries", node.ledger.len().into()),
                    ],
                );
                node.start_protocol();
            }
            _ => node.incarnation = restored.fresh_incarnation(),
        }
        Ok(node)
    }

    /// Validates the configuration and verifies and replays the stored
    /// ledger; the incarnation is left for [`Node::new`] or
    /// [`Node::resume`] to set.
    fn restore(
        config: NodeConfig,
        stored: Vec<Entry>,
        seed: u64,
        now_ms: u64,
        signer: Box<dyn Signer>,
    ) -> Result<(Node, Restored), Error> {
        let mut config = config;
        let min_tail = take_checkpoint_min_tail(&mut config)?;
        let cfg = validated(config)?;
        let mut node = Node {
            signer,
            rng: Rng::new(seed),
            ledger: Ledger::new(),
            derived: Derived::for_node(cfg.tunables.death_quorum),
            roster: Roster::new(&cfg.node_id),
            prober: Prober::default(),
            suspicions: Suspicions::default(),
            gossip: Gossip::default(),
            reconcile: Reconciler::default(),
            effects: Effects::default(),
            phase: Phase::Idle,
            incarnation: 0,
            lamport: 0,
            heartbeats: 0,
            now_ms,
            cfg,
            checkpoints: Checkpoints::new(min_tail),
        };
        let mut restored = Restored::default();
        for (i, e) in stored.into_iter().enumerate() {
            let id_hex = e.id_hex();
            let name = format!(
                "stored entry {i} ({}#{}, id {})",
                e.author,
                e.seq,
                id_hex.get(..16).unwrap_or(&id_hex)
            );
            match node.ledger.insert(e, node.signer.as_mut()) {
                Ok(Insert::Linked(linked)) => {
                    for e in linked {
                        node.lamport = node.lamport.max(e.clock);
                        if let Ok(facts) = facts(&e) {
                            for f in facts {
                                if let Fact::Claim {
                                    subject,
                                    inc,
                                    state,
                                } = f
                                {
                                    if subject == node.cfg.node_id {
                                        restored.note(e.author == subject, inc, state);
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
        node.suspicions.clear_confirm_queue();
        let own_key = node.signer.public_key();
        if let Some(bound) = node.ledger.bound_key(&node.cfg.node_id) {
            if *bound != own_key {
                return Err(Error::InvalidConfig(format!(
                    "signing key {} is not the key {} this node's first join bound node id {:?} to \
                     (the data directory's signing key was replaced: restore it, or run under a new node id)",
                    hex::encode(own_key),
                    hex::encode(bound),
                    node.cfg.node_id
                )));
            }
        }
        Ok((node, restored))
    }

    // ----- read-only introspection -------------------------------------

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.cfg.node_id
    }

    /// One member of the current view (before join: none), built from the
    /// published record.
    pub fn member(&self, id: &str) -> Option<Member> {
        self.roster.get(self.derived.authors(), id)
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

    /// The view version: the number of updates emitted so far.
    pub fn view_version(&self) -> u64 {
        self.roster.version()
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
        self.prober.health()
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
    pub fn join(&mut self, now_ms: u64, seeds: &[String]) -> Result<MembershipView, Error> {
        self.now_ms = self.now_ms.max(now_ms);
        if self.phase == Phase::Left {
            return Err(Error::HasLeft);
        }
        if let Some(bad) = seeds.iter().find(|s| !is_valid_address(s)) {
            return Err(Error::InvalidAddress(bad.clone()));
        }
        let mut fresh = Vec::new();
        for s in seeds {
            if *s != self.cfg.address && self.reconcile.add_contact(s) {
                fresh.push(s.clone());
            }
        }
        if self.phase == Phase::Idle {
            self.phase = Phase::Joined;
            let profile = ProfileBody {
                inc: self.incarnation,
                addr: self.cfg.address.clone(),
                meta: self.cfg.metadata.clone(),
                signing_key: Some(hex::encode(self.signer.public_key())),
            };
            let e = self.author(now_ms, KIND_JOIN, body(&profile));
            self.effects.log(
                "joined",
                &[
                    ("incarnation", self.incarnation.into()),
                    ("entry", e.id_hex().into()),
                ],
            );
            self.start_protocol();
        }
        for s in fresh {
            self.contact(now_ms, &s);
        }
        self.members()
    }

    /// The part of joining that writes nothing: publishes the view known
    /// so far (self first, then whatever the stored ledger already knew)
    /// and sets the protocol's timers. Shared by [`Node::join`] and
    /// [`Node::resume`].
    fn start_protocol(&mut self) {
        let own = self.cfg.node_id.clone();
        self.publish(&own);
        let others: Vec<String> = self.derived.members().into_iter().map(|m| m.id).collect();
        for id in others {
            self.publish(&id);
        }
        let first = self
            .rng
            .below(u64::from(self.cfg.tunables.probe_interval_ms).max(1));
        self.effects.set_timer(Timer::Protocol, first);
        let gossip_phase = self.rng.below(GOSSIP_INTERVAL_MS).saturating_add(1);
        self.effects.set_timer(Timer::Gossip, gossip_phase);
        let ae = self.anti_entropy_delay();
        self.effects.set_timer(Timer::AntiEntropy, ae);
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
            Timer::Relay,
            Timer::Protocol,
            Timer::ProbeTimeout,
            Timer::IndirectRetry,
            Timer::Gossip,
            Timer::AntiEntropy,
        ] {
            self.effects.cancel_timer(t);
        }
        self.effects.set_timer(Timer::LeaveRepeat, LEAVE_REPEAT_MS);
        self.effects.log("left", &[("entry", e.id_hex().into())]);
        Ok(())
    }

    /// The current view.
    pub fn members(&self) -> Result<MembershipView, Error> {
        if self.phase == Phase::Idle {
            return Err(Error::NotJoined);
        }
        Ok(MembershipView {
            version: self.roster.version(),
            members: self.roster.members(self.derived.authors()),
        })
    }

    /// Announces liveness now (an extra ping and gossip push); returns the
    /// number of heartbeats so far.
    pub fn publish_heartbeat(&mut self, now_ms: u64) -> Result<u64, Error> {
        self.now_ms = self.now_ms.max(now_ms);
        self.require_joined()?;
        self.heartbeats = self.heartbeats.saturating_add(1);
        let target = self.rng.sample(self.roster.live(), 1).pop();
        let target = target.and_then(|a| self.derived.authors().name(a).cloned());
        if let Some(target) = target {
            if let Some(address) = self.derived.address(&target) {
                let target = target.to_string();
                let seq = self.prober.fresh_seq();
                let entries = self.gossip.piggyback(&self.ledger, PIGGYBACK_BYTES_BUDGET);
                let digest = self.digest();
                self.effects.send(
                    &address,
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
        let Some((current, incarnation)) = self.roster.state(self.derived.authors(), peer) else {
            return Err(Error::UnknownPeer(peer.to_string()));
        };
        if matches!(state, PeerState::Suspect | PeerState::Dead) && current.is_live() {
            self.suspect(now_ms, peer, incarnation, "report");
        }
        Ok(self
            .roster
            .state(self.derived.authors(), peer)
            .map_or(current, |m| m.0))
    }

    /// The metadata a member (or this node) offers.
    pub fn peer_metadata(&self, peer: &str) -> Result<Vec<(String, String)>, Error> {
        if self.phase == Phase::Idle {
            return Err(Error::NotJoined);
        }
        self.roster
            .metadata(self.derived.authors(), peer)
            .ok_or_else(|| Error::UnknownPeer(peer.to_string()))
    }

    /// Handles a message from the address `from`. A malformed message is an
    /// error and changes nothing.
    pub fn handle_message(&mut self, now_ms: u64, from: &str, payload: &[u8]) -> Result<(), Error> {
        let msg = wire::decode(payload)?;
        self.dispatch(now_ms, from, msg);
        Ok(())
    }

    /// [`Node::handle_message`] taking the payload: it is dropped once
    /// decoded, so a large message and what answering it allocates are not
    /// held at the same time (a component's high-water mark).
    pub fn handle_message_owned(
        &mut self,
        now_ms: u64,
        from: &str,
        payload: Vec<u8>,
    ) -> Result<(), Error> {
        let msg = wire::decode(&payload)?;
        drop(payload);
        self.dispatch(now_ms, from, msg);
        Ok(())
    }

    /// Handles a decoded message.
    fn dispatch(&mut self, now_ms: u64, from: &str, msg: Message) {
        self.now_ms = self.now_ms.max(now_ms);
        if self.phase != Phase::Joined {
            return;
        }
        match msg {
            Message::Ping {
                seq,
                target,
                digest,
                entries,
            } => self.on_ping(now_ms, from, (seq, target), digest, entries),
            Message::Ack {
                seq,
                digest,
                entries,
            } => self.on_ack(now_ms, from, seq, digest, entries),
            Message::PingReq {
                seq,
                target,
                address,
            } => self.on_ping_req(now_ms, from, seq, target, address),
            Message::IndirectAck { seq } => self.on_indirect_ack(now_ms, seq),
            Message::Nack { seq } => self.on_nack(now_ms, seq),
            Message::Gossip { entries } => self.ingest(now_ms, from, entries, true),
            Message::Sync { items } => self.on_sync(from, items),
            Message::Want { heads } => self.on_want(from, heads),
            Message::Entries { entries, rest } => self.on_entries(now_ms, from, entries, rest),
            Message::CutGet {
                n,
                round,
                cut,
                page,
            } => self.on_cut_get(now_ms, from, (n, round, cut), page),
            Message::CutHeads {
                cut,
                page,
                total,
                heads,
            } => self.on_cut_heads(now_ms, from, cut, (page, total), heads),
        }
    }

    /// Handles a timer set through [`Effect::SetTimer`].
    pub fn handle_timer(&mut self, now_ms: u64, timer: Timer) {
        self.now_ms = self.now_ms.max(now_ms);
        match (self.phase, timer) {
            (Phase::Joined, Timer::Protocol) => self.protocol_tick(now_ms),
            (Phase::Joined, Timer::ProbeTimeout) => self.probe_timeout(),
            (Phase::Joined, Timer::IndirectRetry) => self.indirect_retry(),
            (Phase::Joined, Timer::Gossip) => {
                // Stalled streams are absent to every lookup: forgetting
                // them every tick, not only on the (seconds-long)
                // anti-entropy round, bounds what a start-up leaves.
                self.reconcile.prune_streams(self.now_ms);
                self.reconcile
                    .flush_held(&self.ledger, &mut self.effects, self.now_ms);
                self.gossip_round(now_ms);
                self.apply_death_rule(now_ms);
                self.checkpoint_tick(now_ms);
                self.effects.set_timer(Timer::Gossip, GOSSIP_INTERVAL_MS);
            }
            (Phase::Joined, Timer::Relay) => self.relay_timer(now_ms),
            (Phase::Joined, Timer::AntiEntropy) => {
                self.reconcile.prune_streams(self.now_ms);
                self.anti_entropy(now_ms);
                let ae = self.anti_entropy_delay();
                self.effects.set_timer(Timer::AntiEntropy, ae);
            }
            (Phase::Left, Timer::LeaveRepeat) => {
                if let Some(e) = self.ledger.head_entry(&self.cfg.node_id) {
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

    /// Takes every effect produced so far, in order. The host performs
    /// them (the `append`s among them included) before the next call, so
    /// the ledger reads the entries linked so far back from its store from
    /// then on; store answers that did not match the chain are logged
    /// (`entry-unavailable`) at the end.
    pub fn drain_effects(&mut self) -> Vec<Effect<Timer, ()>> {
        for u in self.ledger.take_unavailable() {
            self.effects.log(
                "entry-unavailable",
                &[
                    ("author", u.author.into()),
                    ("seq", u.seq.into()),
                    ("reason", u.reason.into()),
                ],
            );
        }
        self.take_queued()
    }

    /// The queued effects, each `append` taking its entry out of the
    /// ledger (no copy held twice until the host has it); the ledger reads
    /// those entries back from its store from then on.
    fn take_queued(&mut self) -> Vec<Effect<Timer, ()>> {
        let mut linked = self.ledger.take_linked();
        let effects = self
            .effects
            .drain_with(|author, seq| linked.take(author, seq));
        self.ledger.finish_flush(linked);
        effects
    }

    /// Performs effects through `sink` during each call, as they are
    /// produced, rather than holding them until [`Node::drain_effects`]
    /// (which still returns, in order, whatever was not performed yet).
    /// The order of the effects is the same either way; what changes is
    /// that a call does not hold its whole output (the entries it linked,
    /// their updates, the messages it encoded) at once. A shell whose
    /// store is the host's ([`Node::with_entry_store`]) may install one:
    /// the entries linked so far are appended before the node reads them
    /// back.
    pub fn set_effect_sink(&mut self, sink: EffectSink) {
        self.effects.set_sink(sink);
    }

    /// With a sink installed, hands it every effect queued so far (the
    /// `append`s of the entries linked, and what came after them), as the
    /// drain would; the ledger then reads those entries from its store.
    pub(crate) fn flush_point(&mut self) {
        if !self.effects.has_queued_for_sink() {
            return;
        }
        let queued = self.take_queued();
        self.effects.hand_to_sink(queued);
    }

    /// Reads linked entries back from `store` (in a component, the host's
    /// `ledger-store.get`) rather than keeping them in memory
    /// ([`crate::ledger::MemoryEntries`], the default): the node then holds
    /// per author only its chain's ids, and an entry only until the
    /// effects of the call that linked it are drained.
    pub fn with_entry_store(mut self, store: Box<dyn EntryStore>) -> Node {
        self.ledger.set_store(store);
        self
    }

    /// Asserts the node's invariants; panics naming the first one broken.
    /// O(n) in the members: the tests and the test kit call it after every
    /// step. No input can break an invariant (malformed input is an
    /// error), so a panic here is a bug in this crate.
    pub fn check_invariants(&self) {
        let id = &self.cfg.node_id;
        self.roster.check_invariants(self.derived.authors());
        self.prober
            .check_invariants(&self.roster, self.derived.authors(), id);
        self.suspicions.check_invariants(id);
        self.gossip.check_invariants();
        assert!(self.incarnation >= 1, "incarnation starts at 1");
        if let Some(own) = self.ledger.head_entry(id) {
            assert!(self.lamport >= own.clock, "lamport clock behind own entry");
        }
        match self.phase {
            Phase::Idle => assert_eq!(self.roster.version(), 0, "updates before join"),
            Phase::Joined | Phase::Left => {
                assert!(
                    self.roster.contains(self.derived.authors(), id),
                    "a joined node is in its own view"
                );
                // The published view is the derived one: every change of
                // the derived view was published.
                assert_eq!(
                    self.roster.members(self.derived.authors()),
                    self.derived.members(),
                    "published view differs from the ledger's"
                );
            }
        }
    }

    // ----- internals ----------------------------------------------------

    fn require_joined(&self) -> Result<(), Error> {
        match self.phase {
            Phase::Idle => Err(Error::NotJoined),
            Phase::Left => Err(Error::HasLeft),
            Phase::Joined => Ok(()),
        }
    }

    /// This node's frontier digest in its 8-byte wire form.
    pub(crate) fn digest(&self) -> Digest8 {
        digest8(self.ledger.root_digest())
    }

    /// Records the frontier digest `from` sent.
    pub(crate) fn note_digest(&mut self, from: &str, digest: Digest8) {
        let ours = self.digest();
        self.gossip.note_digest(from, digest, ours);
    }
}
