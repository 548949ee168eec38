//! Reconciliation: comparing ledgers by bucket digests (`sync`), asking for
//! what is missing (`want`) and streaming entries back (`entries`), plus
//! the contact points and the low-rate anti-entropy round.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{
    validate_node_id, CONTACT_OWN_ENTRIES, ENTRY_BYTES_BUDGET, FAIR_SHARE_CAPACITY_BYTES,
    FAIR_SHARE_MIN_BYTES, FAIR_SHARE_PEERS, FAIR_SHARE_RESERVE_BYTES, FAIR_SHARE_WINDOW_MS,
    MAX_ENTRIES_PER_MESSAGE, MAX_HEADS, MAX_MESSAGE_BYTES, MAX_SYNC_DEPTH, MAX_SYNC_ITEMS,
    RECONCILE_BURST_BYTES, RECONCILE_BYTES_PER_S, STREAM_STALL_MS, SYNC_BURST_MESSAGES,
    SYNC_HELD_AUTHORS, SYNC_HELD_MS, SYNC_ITEMS_PER_MESSAGE, SYNC_LEAF_AUTHORS, SYNC_MIN_GAP_MS,
    SYNC_PUSH_AUTHORS, SYNC_SLICE_AUTHORS, SYNC_STREAMS_AT_ONCE, THROTTLE_LOG_GAP_MS,
};
use crate::effect::Effects;
use crate::ledger::Ledger;
use crate::node::{digest8, Node};
use crate::wire::{self, EntriesBuf, Message, SyncItem, WireEntry};

/// Contact points and the reconciliation streams in flight.
#[derive(Debug, Default)]
pub(crate) struct Reconciler {
    /// Seed addresses given to `join`, in the order given.
    contacts: Vec<String>,
    /// When a reconciliation towards each address last started.
    last_sync: BTreeMap<String, u64>,
    /// Authors whose entries are streaming in: author -> time of the last
    /// want sent or entries received for it (see [`STREAM_STALL_MS`]).
    incoming: BTreeMap<String, u64>,
    /// Streams going out: peer address -> author -> (time of the last
    /// entries sent, highest seq sent). Looked up by `&str` (no key
    /// allocated per author asked); the author is the ledger's shared id.
    outgoing: BTreeMap<String, BTreeMap<Arc<str>, (u64, u64)>>,
    /// No record of the three maps above lapses before this time (ms): a
    /// lower bound of their lapse times, lowered by every record written
    /// and made exact by each [`Reconciler::prune_streams`] that walks
    /// them; before it, pruning has nothing to remove and is skipped
    /// (0 at first: the first prune walks them).
    prune_due: u64,
    /// What may still be shipped in answer to reconciliation.
    budget: PushBudget,
    /// Answers to each peer's `sync` leaves held for the next gossip tick
    /// (one push and one want per descent and peer, design §6): a peer is
    /// here from its first answer, which went at once, until a tick finds
    /// nothing held for it. At most [`FAIR_SHARE_PEERS`] peers.
    held: BTreeMap<String, Held>,
    /// Authors in `held`, pushes and wants together (at most
    /// [`SYNC_HELD_AUTHORS`]; counted on adding, recounted on each flush).
    held_authors: usize,
}

/// What one peer's later `sync` leaves asked for, held until the next
/// gossip tick ships it as one push and one want.
#[derive(Debug, Default)]
struct Held {
    /// Authors the peer lacks entries of -> the seq it holds (at most
    /// [`SYNC_PUSH_AUTHORS`]). Each key is the ledger's shared id.
    push: BTreeMap<Arc<str>, u64>,
    /// Authors the peer holds more of -> the peer's head (at most
    /// [`SYNC_PUSH_AUTHORS`]; ids checked by `validate_node_id`).
    want: BTreeMap<String, u64>,
    /// When what is held is forgotten ([`SYNC_HELD_MS`] after the last
    /// `sync` that added to it).
    until_ms: u64,
    /// Streams the answers that went at once in this window sent (from
    /// [`SYNC_STREAMS_AT_ONCE`] on, later answers are held).
    streams: u64,
}

/// The token bucket of [`RECONCILE_BYTES_PER_S`]: bytes this node may
/// still ship in answer to reconciliation (entries, and the bucket digests
/// and heads of a `sync` descent), refilled with time.
#[derive(Debug)]
struct PushBudget {
    /// Bytes available now (at most [`RECONCILE_BURST_BYTES`]).
    tokens: u64,
    /// When `tokens` was last refilled (ms).
    refilled_ms: u64,
    /// Requests refused since the last `reconcile-throttled` log line.
    refused: u64,
    /// When that line was last written, if ever.
    logged_ms: Option<u64>,
    /// Each requester's part of the bucket in the current window.
    shares: Shares,
}

impl Default for PushBudget {
    fn default() -> PushBudget {
        PushBudget {
            tokens: RECONCILE_BURST_BYTES,
            refilled_ms: 0,
            refused: 0,
            logged_ms: None,
            shares: Shares::default(),
        }
    }
}

/// The requesters' fair shares of the bucket ([`FAIR_SHARE_WINDOW_MS`]):
/// within a window, a requester's share is the window's capacity
/// ([`FAIR_SHARE_CAPACITY_BYTES`]) divided by the number of requesters seen
/// in the window. A requester past its share is answered only from what
/// the bucket holds above its reserve ([`PushBudget::available`]). One
/// requester that asks far more often than the others (a faulty or hostile
/// node, or one cycling through authors) can therefore not starve them. A
/// requester alone in its window is never limited by its share (the
/// capacity is the most the bucket can give in one window).
#[derive(Debug, Default)]
struct Shares {
    /// When the current window began (ms).
    window_ms: u64,
    /// Bytes shipped to each requester in this window (0 for one that
    /// asked and got nothing), at most [`FAIR_SHARE_PEERS`] of them.
    spent: BTreeMap<String, u64>,
    /// Bytes shipped in this window to the requesters beyond
    /// [`FAIR_SHARE_PEERS`], which share one record (so the map stays
    /// bounded whatever the number of senders).
    overflow: Option<u64>,
}

impl Shares {
    /// Starts a new window if the current one is over.
    fn roll(&mut self, now_ms: u64) {
        if now_ms >= self.window_ms.saturating_add(FAIR_SHARE_WINDOW_MS) {
            self.window_ms = now_ms;
            self.spent.clear();
            self.overflow = None;
        }
    }

    /// Registers `peer` in the window; returns what it was shipped so far.
    fn register(&mut self, peer: &str) -> u64 {
        if let Some(&spent) = self.spent.get(peer) {
            return spent;
        }
        if self.spent.len() < FAIR_SHARE_PEERS {
            self.spent.insert(peer.to_string(), 0);
            0
        } else {
            *self.overflow.get_or_insert(0)
        }
    }

    /// Requesters seen in this window (the overflow record counts as one).
    fn requesters(&self) -> u64 {
        let n = self
            .spent
            .len()
            .saturating_add(usize::from(self.overflow.is_some()));
        u64::try_from(n).unwrap_or(u64::MAX).max(1)
    }

    /// What `peer` may still be shipped in this window.
    fn allowance(&mut self, now_ms: u64, peer: &str) -> u64 {
        self.roll(now_ms);
        let spent = self.register(peer);
        FAIR_SHARE_CAPACITY_BYTES
            .checked_div(self.requesters())
            .unwrap_or(FAIR_SHARE_CAPACITY_BYTES)
            .max(FAIR_SHARE_MIN_BYTES)
            .saturating_sub(spent)
    }

    /// Charges `bytes` shipped to `peer` (registered by `allowance`).
    fn charge(&mut self, peer: &str, bytes: u64) {
        match self.spent.get_mut(peer) {
            Some(spent) => *spent = spent.saturating_add(bytes),
            None => {
                if let Some(spent) = self.overflow.as_mut() {
                    *spent = spent.saturating_add(bytes);
                }
            }
        }
    }
}

impl PushBudget {
    /// The bytes `peer` may be shipped at `now_ms`. What the bucket holds
    /// above [`FAIR_SHARE_RESERVE_BYTES`] goes to any requester; the
    /// reserve only to a requester still within its fair share (and up to
    /// what is left of it). Uncontended, nothing changes: a requester gets
    /// the whole bucket. Contended, a requester past its share cannot
    /// drain the reserve, which the refill fills first, so the others are
    /// answered.
    fn available(&mut self, now_ms: u64, peer: &str) -> u64 {
        let tokens = self.refill(now_ms);
        let above_reserve = tokens.saturating_sub(FAIR_SHARE_RESERVE_BYTES);
        match self.shares.allowance(now_ms, peer) {
            0 => above_reserve,
            left => above_reserve.max(left.min(tokens)),
        }
    }

    /// The bytes in the bucket at `now_ms`, after refilling.
    fn refill(&mut self, now_ms: u64) -> u64 {
        let elapsed = now_ms.saturating_sub(self.refilled_ms);
        let earned = elapsed.saturating_mul(RECONCILE_BYTES_PER_S) / 1_000;
        self.tokens = self
            .tokens
            .saturating_add(earned)
            .min(RECONCILE_BURST_BYTES);
        self.refilled_ms = self.refilled_ms.max(now_ms);
        self.tokens
    }

    /// Takes `bytes` shipped to `peer` (the last message may overdraw: it
    /// empties the bucket).
    fn spend(&mut self, peer: &str, bytes: u64) {
        self.tokens = self.tokens.saturating_sub(bytes);
        self.shares.charge(peer, bytes);
    }

    /// Counts a refused request; logs the count at most once per
    /// [`THROTTLE_LOG_GAP_MS`].
    fn refuse(&mut self, fx: &mut Effects, now_ms: u64, peer: &str) {
        self.refused = self.refused.saturating_add(1);
        let due = self
            .logged_ms
            .is_none_or(|t| now_ms >= t.saturating_add(THROTTLE_LOG_GAP_MS));
        if due {
            fx.log(
                "reconcile-throttled",
                &[
                    ("refused", self.refused.into()),
                    ("last_peer", peer.into()),
                    ("bytes_per_s", RECONCILE_BYTES_PER_S.into()),
                    ("requesters", self.shares.requesters().into()),
                ],
            );
            self.refused = 0;
            self.logged_ms = Some(now_ms);
        }
    }
}

/// The sync item describing the ledger under `path`: the child digests, or
/// the heads themselves once few authors (or the depth limit) remain.
fn sync_item(ledger: &Ledger, path: Vec<u8>) -> SyncItem {
    let (digests, count) = ledger.child_digests(&path);
    if count <= SYNC_LEAF_AUTHORS || path.len() >= MAX_SYNC_DEPTH {
        SyncItem::Leaf {
            heads: ledger.heads_under(&path),
            path,
        }
    } else {
        SyncItem::Node {
            path,
            digests: digests.into_iter().map(digest8).collect(),
        }
    }
}

impl Reconciler {
    /// Whether this node may ship an answer to `peer` now, out of the
    /// reconciliation budget that also pays for `sync` descents and
    /// entries (docs/design.md §6): with nothing available the request is
    /// refused, counted and logged as `reconcile-throttled` like any
    /// other. The answer's bytes are then taken with
    /// [`Reconciler::spend_answer`] (it may overdraw, as a last `entries`
    /// message may). For the cut sync's `cut-heads` (§13.9), which ships
    /// heads as a descent does.
    pub(crate) fn may_answer(&mut self, fx: &mut Effects, now_ms: u64, peer: &str) -> bool {
        if self.budget.available(now_ms, peer) == 0 {
            self.budget.refuse(fx, now_ms, peer);
            return false;
        }
        true
    }

    /// Takes `bytes` shipped to `peer` in an answer allowed by
    /// [`Reconciler::may_answer`] from the budget.
    pub(crate) fn spend_answer(&mut self, peer: &str, bytes: usize) {
        self.budget
            .spend(peer, u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// Empties the budget at `now_ms` (tests: a node that has just shipped
    /// all it may).
    #[cfg(test)]
    pub(crate) fn exhaust_budget(&mut self, now_ms: u64) {
        let tokens = self.budget.refill(now_ms);
        self.budget.spend("", tokens);
    }

    /// Adds a contact point; false if it was known already.
    pub(crate) fn add_contact(&mut self, addr: &str) -> bool {
        if self.contacts.iter().any(|c| c == addr) {
            return false;
        }
        self.contacts.push(addr.to_string());
        true
    }

    /// The contact points, in the order added.
    pub(crate) fn contacts(&self) -> Vec<String> {
        self.contacts.clone()
    }

    /// Starts a reconciliation with `to` (rate-limited unless forced).
    pub(crate) fn start_sync(
        &mut self,
        ledger: &Ledger,
        fx: &mut Effects,
        now_ms: u64,
        to: &str,
        force: bool,
    ) {
        if !force
            && self
                .last_sync
                .get(to)
                .is_some_and(|&t| now_ms < t.saturating_add(SYNC_MIN_GAP_MS))
        {
            return;
        }
        self.last_sync.insert(to.to_string(), now_ms);
        self.lapses_at(now_ms.saturating_add(SYNC_MIN_GAP_MS));
        let item = sync_item(ledger, Vec::new());
        fx.send(to, &Message::Sync { items: vec![item] });
    }

    /// Sends this node's latest own entries to `addr`, then reconciles.
    pub(crate) fn contact(
        &mut self,
        ledger: &Ledger,
        fx: &mut Effects,
        now_ms: u64,
        self_id: &str,
        addr: &str,
    ) {
        let head = ledger.head_seq(self_id);
        let from = head
            .saturating_sub((CONTACT_OWN_ENTRIES as u64).saturating_sub(1))
            .max(1);
        let own_tail: Vec<WireEntry> = ledger
            .entries(self_id, from, CONTACT_OWN_ENTRIES)
            .iter()
            .map(WireEntry::from)
            .collect();
        fx.send(addr, &Message::Gossip { entries: own_tail });
        self.start_sync(ledger, fx, now_ms, addr, true);
    }

    /// Answers a `sync`: descends into differing buckets, pushes what the
    /// peer lacks and wants what it has beyond our heads.
    pub(crate) fn on_sync(
        &mut self,
        ledger: &Ledger,
        fx: &mut Effects,
        now_ms: u64,
        from: &str,
        items: Vec<SyncItem>,
    ) {
        let mut replies = Vec::new();
        // The ledger's shared ids: no allocation per author pushed.
        let mut push: Vec<(Arc<str>, u64)> = Vec::new();
        // (author, the peer's head) of each author the peer is ahead in.
        let mut want: Vec<(String, u64)> = Vec::new();
        // Out of budget: neither a descent nor entries for this peer now,
        // so the heads it lacks are not even looked up (a seed answering
        // thousands of joiners would otherwise walk its whole ledger for
        // each, and hand its uplink every joiner's descent). What this
        // node lacks itself is still asked for: a `want` is small and
        // spends the peer's budget, not this node's.
        let can_answer = self.budget.available(now_ms, from) > 0;
        let mut refused = false;
        for item in items {
            match item {
                SyncItem::Node { .. } if !can_answer => refused = true,
                SyncItem::Node { path, digests } => {
                    let (mine, _) = ledger.child_digests(&path);
                    // Both hold SYNC_FANOUT digests (the decoder checks
                    // theirs): zip instead of indexing.
                    for (nib, (theirs, mine)) in digests.iter().zip(&mine).enumerate() {
                        if digest8(*mine) != *theirs {
                            let mut child = path.clone();
                            child.push(nib as u8);
                            replies.push(sync_item(ledger, child));
                        }
                    }
                }
                SyncItem::Leaf { path, heads } => {
                    let theirs: BTreeMap<String, u64> = heads.into_iter().collect();
                    if can_answer {
                        // What one burst and its `rest` can name, at most:
                        // a peer lacking more finds the others in its next
                        // round, and the answer's memory stays bounded.
                        for (author, seq) in ledger.heads_iter_under(&path) {
                            if push.len() >= SYNC_PUSH_AUTHORS {
                                break;
                            }
                            let t = theirs.get(&**author).copied().unwrap_or(0);
                            if seq > t {
                                push.push((author.clone(), t));
                            }
                        }
                    } else {
                        refused = true;
                    }
                    for (author, t) in theirs {
                        // A stream of this author already under way brings
                        // the entries; asking again would ship them twice.
                        if validate_node_id(&author).is_ok()
                            && ledger.head_seq(&author) < t
                            && !self.streaming_in(&author, now_ms)
                        {
                            want.push((author, t));
                        }
                    }
                }
            }
        }
        // The descent's answer comes out of the same budget as entries
        // (design §6): at a mass start it is what grows with N × joiners.
        let mut descent: u64 = 0;
        for chunk in replies.chunks(SYNC_ITEMS_PER_MESSAGE.min(MAX_SYNC_ITEMS)) {
            let bytes = fx.send_counted(
                from,
                &Message::Sync {
                    items: chunk.to_vec(),
                },
            );
            descent = descent.saturating_add(bytes as u64);
        }
        self.budget.spend(from, descent);
        if !self.hold(now_ms, from, &mut push, &mut want) {
            let before = fx.streams_sent();
            self.ship_want(ledger, fx, now_ms, from, want, MAX_HEADS);
            if !push.is_empty() {
                self.send_entries(ledger, fx, now_ms, from, &push);
            }
            let streams = fx.streams_sent().saturating_sub(before);
            if let Some(held) = self.held.get_mut(from) {
                held.streams = held.streams.saturating_add(streams);
            }
        }
        if refused {
            self.budget.refuse(fx, now_ms, from);
        }
    }

    /// Holds the push and want of a `sync` from `from` for the next gossip
    /// tick once the answers to `from` since the last tick sent
    /// [`SYNC_STREAMS_AT_ONCE`] streams (one push and one want per descent
    /// and peer: a large descent's leaves arrive in many `sync` messages,
    /// and an `entries` stream each overran the transport, which drops
    /// sends beyond 32 in flight). False, with the peer's window opened,
    /// if this answer is to go at once: one of the first of a window (a
    /// small descent, a join's, waits for nothing), or one that the bounds
    /// on what is held leave out. What
    /// goes beyond a peer's [`SYNC_PUSH_AUTHORS`] is dropped: its next
    /// round finds it.
    fn hold(
        &mut self,
        now_ms: u64,
        from: &str,
        push: &mut Vec<(Arc<str>, u64)>,
        want: &mut Vec<(String, u64)>,
    ) -> bool {
        if push.is_empty() && want.is_empty() {
            return true;
        }
        let adding = push.len().saturating_add(want.len());
        let room = self.held_authors.saturating_add(adding) <= SYNC_HELD_AUTHORS;
        match self.held.get_mut(from) {
            Some(held) if held.streams < SYNC_STREAMS_AT_ONCE => false,
            Some(held) if room => {
                for (author, have) in push.drain(..) {
                    if held.push.len() < SYNC_PUSH_AUTHORS || held.push.contains_key(&*author) {
                        held.push.insert(author, have);
                    }
                }
                for (author, head) in want.drain(..) {
                    if held.want.len() < SYNC_PUSH_AUTHORS || held.want.contains_key(&author) {
                        held.want.insert(author, head);
                    }
                }
                held.until_ms = now_ms.saturating_add(SYNC_HELD_MS);
                self.held_authors = self.held_authors.saturating_add(adding);
                true
            }
            Some(_) => false,
            None => {
                if self.held.len() < FAIR_SHARE_PEERS {
                    let held = Held {
                        until_ms: now_ms.saturating_add(SYNC_HELD_MS),
                        ..Held::default()
                    };
                    self.held.insert(from.to_string(), held);
                }
                false
            }
        }
    }

    /// Asks `from` for each (author, the peer's head) of `want` still
    /// lacked and not streaming in, in messages of at most `per_message`
    /// authors (and [`MAX_HEADS`]).
    fn ship_want(
        &mut self,
        ledger: &Ledger,
        fx: &mut Effects,
        now_ms: u64,
        from: &str,
        want: Vec<(String, u64)>,
        per_message: usize,
    ) {
        let want: Vec<(String, u64)> = want
            .into_iter()
            .filter(|(a, t)| ledger.head_seq(a) < *t && !self.streaming_in(a, now_ms))
            .map(|(a, _)| {
                let have = ledger.head_seq(&a);
                (a, have)
            })
            .collect();
        if want.is_empty() {
            return;
        }
        for (a, _) in &want {
            self.incoming.insert(a.clone(), now_ms);
        }
        self.lapses_at(now_ms.saturating_add(STREAM_STALL_MS));
        for chunk in want.chunks(per_message.clamp(1, MAX_HEADS)) {
            send_want(fx, from, chunk);
        }
    }

    /// The gossip tick's part of reconciliation: ships what is held for
    /// each peer in slices of [`SYNC_SLICE_AUTHORS`]: wants (as many as
    /// the peer's answers, a burst each, keep within
    /// [`SYNC_STREAMS_AT_ONCE`]) and pushes (a burst each, its `rest`
    /// naming the slice's remainder, while this tick's streams to the
    /// peer stay within [`SYNC_STREAMS_AT_ONCE`]), keeping what neither
    /// covered for the next tick; closes the window
    /// of a peer with nothing held, and forgets what was held past
    /// [`SYNC_HELD_MS`].
    pub(crate) fn flush_held(&mut self, ledger: &Ledger, fx: &mut Effects, now_ms: u64) {
        if self.held.is_empty() {
            return;
        }
        let mut held = std::mem::take(&mut self.held);
        held.retain(|_, h| now_ms < h.until_ms && !(h.push.is_empty() && h.want.is_empty()));
        // Each peer's wants and pushes go in slices of what one leaf
        // message's answer covered (so each burst's `rest`, and the `want`
        // it turns into, stay as short as an unheld answer's), as many as
        // keep the streams of this tick within SYNC_STREAMS_AT_ONCE.
        // Half the streams for this node's pushes, half for the peer's
        // answers to its wants: the peer's own flush sends it as many.
        let push_streams = SYNC_STREAMS_AT_ONCE / 2;
        let wants_per_tick = usize::try_from(push_streams)
            .unwrap_or(usize::MAX)
            .checked_div(SYNC_BURST_MESSAGES)
            .unwrap_or(1)
            .max(1);
        let ask_at_most = SYNC_SLICE_AUTHORS.saturating_mul(wants_per_tick);
        for (peer, h) in held.iter_mut() {
            // The want: what is still lacked, up to `wants_per_tick`
            // slices (each answered by at most a burst of the peer's); the
            // others wait for the next tick.
            let mut asked: Vec<(String, u64)> = Vec::new();
            h.want.retain(|a, t| {
                if ledger.head_seq(a) >= *t || self.streaming_in(a, now_ms) {
                    return false;
                }
                if asked.len() < ask_at_most {
                    asked.push((a.clone(), *t));
                    return false;
                }
                true
            });
            self.ship_want(ledger, fx, now_ms, peer, asked, SYNC_SLICE_AUTHORS);
            // The push: slices, each a burst; the authors carried to their
            // head are recorded in `outgoing`, the others stay held.
            if !h.push.is_empty() {
                let push: Vec<(Arc<str>, u64)> =
                    h.push.iter().map(|(a, s)| (a.clone(), *s)).collect();
                let before = fx.streams_sent();
                for slice in push.chunks(SYNC_SLICE_AUTHORS) {
                    if fx.streams_sent().saturating_sub(before) >= push_streams {
                        break;
                    }
                    self.send_entries(ledger, fx, now_ms, peer, slice);
                }
                let streams = self.outgoing.get(peer.as_str());
                h.push.retain(|a, have| {
                    let head = ledger.head_seq(a);
                    let sent = streams
                        .and_then(|s| s.get(&**a))
                        .map_or(0, |&(_, upto)| upto);
                    (*have).max(sent) < head
                });
            }
        }
        self.held_authors = held
            .values()
            .map(|h| h.push.len().saturating_add(h.want.len()))
            .fold(0usize, usize::saturating_add);
        self.held = held;
    }

    /// Notes that entries of `author` arrived (or were asked for) now.
    pub(crate) fn note_incoming(&mut self, author: &str, now_ms: u64) {
        if self.incoming.get(author) != Some(&now_ms) {
            self.incoming.insert(author.to_string(), now_ms);
            self.lapses_at(now_ms.saturating_add(STREAM_STALL_MS));
        }
    }

    /// Notes that a record written now lapses at `at` (ms).
    fn lapses_at(&mut self, at: u64) {
        self.prune_due = self.prune_due.min(at);
    }

    /// Whether a stream of `author`'s entries is in flight towards us.
    pub(crate) fn streaming_in(&self, author: &str, now_ms: u64) -> bool {
        self.incoming
            .get(author)
            .is_some_and(|&t| now_ms < t.saturating_add(STREAM_STALL_MS))
    }

    /// Forgets streams that stalled (bounds both maps), and the start of
    /// each reconciliation old enough no longer to hold the next one back.
    /// Every lookup treats such a record as absent, so this changes
    /// nothing but memory.
    pub(crate) fn prune_streams(&mut self, now_ms: u64) {
        // No record lapses before `prune_due`: nothing to remove.
        if now_ms < self.prune_due {
            return;
        }
        // The earliest lapse time among the records kept.
        let mut due = u64::MAX;
        let mut keep = |t: u64, gap: u64| {
            let lapse = t.saturating_add(gap);
            let kept = now_ms < lapse;
            if kept {
                due = due.min(lapse);
            }
            kept
        };
        self.last_sync.retain(|_, t| keep(*t, SYNC_MIN_GAP_MS));
        self.incoming.retain(|_, t| keep(*t, STREAM_STALL_MS));
        self.outgoing.retain(|_, streams| {
            streams.retain(|_, (t, _)| keep(*t, STREAM_STALL_MS));
            !streams.is_empty()
        });
        self.prune_due = due;
    }

    /// Sends every entry after each (author, seq), in at most
    /// [`SYNC_BURST_MESSAGES`] messages and within the reconciliation
    /// budget ([`RECONCILE_BYTES_PER_S`]). What does not fit is named in the
    /// last message's `rest`, which the receiver turns into its next want:
    /// one stream per request, nothing sent twice. With the budget spent,
    /// nothing is sent: the peer asks again on its next round.
    pub(crate) fn send_entries(
        &mut self,
        ledger: &Ledger,
        fx: &mut Effects,
        now: u64,
        to: &str,
        heads: &[(impl AsRef<str>, u64)],
    ) {
        let allowance = self.budget.available(now, to);
        if allowance == 0 {
            self.budget.refuse(fx, now, to);
            return;
        }
        // Entry bytes shipped by this call (at least one entry is, so the
        // last one may overdraw the allowance).
        let mut total: u64 = 0;
        // Each full batch but the last is sent as soon as it is full (the
        // messages and their order are as if all were sent at the end;
        // nothing else is queued meanwhile), so that one batch of entries
        // is held at a time, not the whole burst; and a batch is held
        // encoded, as the message it becomes ([`EntriesBuf`]).
        let mut batches: usize = 0;
        let mut cur = EntriesBuf::default();
        let mut used: usize = 0;
        let mut rest: Vec<(String, u64)> = Vec::new();
        // Bytes of the messages sent by this call.
        let mut shipped: usize = 0;
        // (index in `heads`, seq the peer holds) of each author begun.
        let mut sent: Vec<(usize, u64)> = Vec::new();
        let streams = self.outgoing.get(to);
        'outer: for (i, (author, have)) in heads.iter().enumerate() {
            let author = author.as_ref();
            let head = ledger.head_seq(author);
            // What a stream still in flight to this peer already carried is
            // not sent again (see STREAM_STALL_MS).
            let have = match streams.and_then(|s| s.get(author)) {
                Some(&(t, upto)) if now < t.saturating_add(STREAM_STALL_MS) => (*have).max(upto),
                _ => *have,
            };
            // `have` comes from the wire: a hostile u64::MAX must neither
            // wrap `have + 1` nor reach past the chain.
            if have >= head {
                continue;
            }
            sent.push((i, have));
            // Read back in chunks of what one message can carry; a short
            // answer (the store did not hold the chain's entry, noted by
            // the ledger) ends this author's stream.
            let mut next = have.saturating_add(1);
            let mut chunk = std::collections::VecDeque::new();
            let mut short = false;
            while next <= head {
                if chunk.is_empty() && !short {
                    let asked = usize::try_from(head.saturating_sub(next).saturating_add(1))
                        .unwrap_or(usize::MAX)
                        .min(MAX_ENTRIES_PER_MESSAGE);
                    chunk = ledger.entries(author, next, asked).into();
                    short = chunk.len() < asked;
                }
                let Some(e) = chunk.pop_front() else {
                    break;
                };
                let seq = next;
                next = next.saturating_add(1);
                let size = wire::entry_wire_size(&e);
                let over_budget = total > 0 && total.saturating_add(size as u64) > allowance;
                if over_budget
                    || used.saturating_add(size) > ENTRY_BYTES_BUDGET
                    || cur.len() >= MAX_ENTRIES_PER_MESSAGE
                {
                    let batch = std::mem::take(&mut cur);
                    batches = batches.saturating_add(1);
                    used = 0;
                    if over_budget || batches >= SYNC_BURST_MESSAGES {
                        // seq > have >= 0: the cut point is seq - 1.
                        let cut_at = seq.saturating_sub(1);
                        if let Some(last) = sent.last_mut() {
                            last.1 = cut_at;
                        }
                        rest.push((author.to_string(), cut_at));
                        // Cut by the burst limit, the peer is owed the
                        // other authors it asked for. Cut by the budget,
                        // only this author's stream goes on: naming the
                        // others would spend on `rest` what the budget
                        // refuses for entries (up to a message of names per
                        // request), and the peer's next digest comparison,
                        // with any member, finds them again.
                        if !over_budget {
                            rest.extend(
                                heads
                                    .iter()
                                    .skip(i.saturating_add(1))
                                    .take(MAX_HEADS.saturating_sub(1))
                                    .map(|(a, seq)| (a.as_ref().to_string(), *seq)),
                            );
                        }
                        cur = batch;
                        break 'outer;
                    }
                    shipped =
                        shipped.saturating_add(send_entries_fitting(fx, to, batch, Vec::new()));
                }
                used = used.saturating_add(size);
                total = total.saturating_add(size as u64);
                cur.push(&WireEntry::from(e));
            }
        }
        // Record how far each stream got: every author begun reached its
        // head, except a last one cut off by the burst limit (its entry in
        // `sent` was set to the cut point above).
        let cut = !rest.is_empty();
        let count = sent.len();
        if count > 0 {
            let streams = self.outgoing.entry(to.to_string()).or_default();
            for (k, (i, start)) in sent.into_iter().enumerate() {
                let Some((author, _)) = heads.get(i) else {
                    continue;
                };
                let author = author.as_ref();
                let upto = if cut && k.saturating_add(1) == count {
                    start
                } else {
                    ledger.head_seq(author)
                };
                match streams.get_mut(author) {
                    Some(slot) => *slot = (now, upto),
                    None => {
                        // Begun: the author's chain is held (head > have).
                        let id = ledger
                            .shared_author(author)
                            .unwrap_or_else(|| Arc::from(author));
                        streams.insert(id, (now, upto));
                    }
                }
            }
            self.lapses_at(now.saturating_add(STREAM_STALL_MS));
        }
        // The last batch: the one cut off (with `rest`), or what remained.
        if cut || !cur.is_empty() {
            shipped = shipped.saturating_add(send_entries_fitting(fx, to, cur, rest));
        }
        // The budget pays for what goes on the wire: the entries, `rest`
        // and the messages' framing.
        self.budget.spend(to, shipped as u64);
    }
}

/// Sends `want` for `heads`, split in halves until each message fits
/// [`MAX_MESSAGE_BYTES`] (ids up to 64 bytes make [`MAX_HEADS`] heads
/// larger than one message; the host drops a larger one).
fn send_want(fx: &mut Effects, to: &str, heads: &[(String, u64)]) {
    let msg = Message::Want {
        heads: heads.to_vec(),
    };
    if heads.len() <= 1 || wire::encode(&msg).len() <= MAX_MESSAGE_BYTES {
        fx.send(to, &msg);
        return;
    }
    let (a, b) = heads.split_at(heads.len() / 2);
    send_want(fx, to, a);
    send_want(fx, to, b);
}

/// Sends `entries` with as much of `rest` as fits [`MAX_MESSAGE_BYTES`]:
/// a full batch ([`ENTRY_BYTES_BUDGET`]) leaves room for only part of a
/// long `rest` (with 2 048 authors it outgrew the message, which the host
/// drops). `rest` is a hint, each pair the receiver's next `want`; what is
/// left out is found again by the next digest comparison. Returns the
/// bytes of the message sent.
fn send_entries_fitting(
    fx: &mut Effects,
    to: &str,
    entries: EntriesBuf,
    mut rest: Vec<(String, u64)>,
) -> usize {
    // The encoded size of the message with the first k pairs of `rest`,
    // computed rather than encoded (no copy of the entries or of `rest`
    // per try): the entries' part, then the length of `rest` and each pair.
    let base = ENTRIES_MESSAGE_OVERHEAD
        .saturating_add(entries.entry_bytes())
        .saturating_add(varint_len(entries.len() as u64));
    let size = |k: usize, items: usize| {
        base.saturating_add(varint_len(k as u64))
            .saturating_add(items)
    };
    let mut items: usize = 0;
    let mut fit = 0usize;
    for (k, (a, seq)) in rest.iter().enumerate() {
        let item = varint_len(a.len() as u64)
            .saturating_add(a.len())
            .saturating_add(varint_len(*seq));
        items = items.saturating_add(item);
        if size(k.saturating_add(1), items) > MAX_MESSAGE_BYTES {
            break;
        }
        fit = k.saturating_add(1);
    }
    // The longest prefix of `rest` that fits (0 always does: the entries
    // alone are within ENTRY_BYTES_BUDGET).
    rest.truncate(fit);
    fx.send_payload(to, entries.finish(&rest))
}

/// The encoded bytes of an `entries` message besides its entries and its
/// `rest`: the version byte and the variant index (8, one varint byte).
const ENTRIES_MESSAGE_OVERHEAD: usize = 2;

/// Bytes of `n` as a postcard varint (7 bits a byte).
fn varint_len(n: u64) -> usize {
    let bits = 64usize.saturating_sub(n.leading_zeros() as usize).max(1);
    bits.div_ceil(7)
}

impl Node {
    /// Starts a reconciliation with `to` (rate-limited unless forced).
    pub(crate) fn start_sync(&mut self, now_ms: u64, to: &str, force: bool) {
        self.reconcile
            .start_sync(&self.ledger, &mut self.effects, now_ms, to, force);
    }

    /// Sends this node's latest own entries to `addr`, then reconciles.
    pub(crate) fn contact(&mut self, now_ms: u64, addr: &str) {
        self.reconcile.contact(
            &self.ledger,
            &mut self.effects,
            now_ms,
            &self.cfg.node_id,
            addr,
        );
    }

    /// Handles a `sync` from `from`.
    pub(crate) fn on_sync(&mut self, from: &str, items: Vec<SyncItem>) {
        self.reconcile
            .on_sync(&self.ledger, &mut self.effects, self.now_ms, from, items);
    }

    /// Handles a `want` from `from`: streams the entries asked for.
    pub(crate) fn on_want(&mut self, from: &str, heads: Vec<(String, u64)>) {
        self.reconcile
            .send_entries(&self.ledger, &mut self.effects, self.now_ms, from, &heads);
    }

    /// Handles `entries` from `from`: takes them in without re-gossip
    /// (reconciled history is old news for the sender) and asks for the
    /// `rest` the sender could not fit.
    pub(crate) fn on_entries(
        &mut self,
        now_ms: u64,
        from: &str,
        entries: Vec<WireEntry>,
        rest: Vec<(String, u64)>,
    ) {
        for a in entries.iter().map(|e| &e.author) {
            self.reconcile.note_incoming(a, now_ms);
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
            self.reconcile.incoming.insert(a.clone(), now_ms);
        }
        self.reconcile
            .lapses_at(now_ms.saturating_add(STREAM_STALL_MS));
        if !want.is_empty() {
            self.effects.send(from, &Message::Want { heads: want });
        }
    }

    /// The anti-entropy interval with ±50 % jitter, so that nodes started
    /// together do not all ping a dead member in the same instant.
    pub(crate) fn anti_entropy_delay(&mut self) -> u64 {
        let base = u64::from(self.cfg.tunables.anti_entropy_interval_ms);
        (base / 2).saturating_add(self.rng.below(base.saturating_add(1)))
    }

    /// The anti-entropy round: contacts the seeds while alone, and pings
    /// one dead member's last address (a healed partition or a restarted
    /// node answers and reconciles).
    pub(crate) fn anti_entropy(&mut self, now_ms: u64) {
        if self.roster.live().is_empty() {
            for c in self.reconcile.contacts() {
                self.contact(now_ms, &c);
            }
        }
        let dead = self.rng.sample(self.roster.dead(), 1).pop();
        if let Some(m) = dead.and_then(|a| self.roster.get_at(self.derived.authors(), a)) {
            let seq = self.prober.fresh_seq();
            let digest = self.digest();
            self.effects.send(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GOSSIP_INTERVAL_MS;

    /// Bytes of `e` postcard-encoded (the layout [`WireEntry`] derives:
    /// strings and byte vectors with a varint length, integers as varints,
    /// arrays raw).
    fn wire_entry_size(e: &WireEntry) -> usize {
        [
            varint_len(e.author.len() as u64),
            e.author.len(),
            varint_len(e.seq),
            32,
            varint_len(e.clock),
            varint_len(e.kind.len() as u64),
            e.kind.len(),
            varint_len(e.body.len() as u64),
            e.body.len(),
            32,
            64,
        ]
        .iter()
        .fold(0usize, |acc, n| acc.saturating_add(*n))
    }

    /// (author, 0) for every author `ledger` holds: a want of everything.
    fn everything(ledger: &Ledger) -> Vec<(String, u64)> {
        ledger
            .heads_under(&[])
            .into_iter()
            .map(|(a, _)| (a, 0))
            .collect()
    }
    use crate::ledger::Entry;
    use nodeplane_types::Effect;

    fn sent(fx: &mut Effects) -> Vec<Message> {
        fx.drain()
            .into_iter()
            .filter_map(|e| match e {
                Effect::Send { payload, .. } => {
                    assert!(
                        payload.len() <= MAX_MESSAGE_BYTES,
                        "a message of {} bytes",
                        payload.len()
                    );
                    Some(wire::decode(&payload).expect("decodes"))
                }
                _ => None,
            })
            .collect()
    }

    fn entry(i: usize, body: usize) -> WireEntry {
        WireEntry {
            author: format!("author-{i}"),
            seq: 1,
            prev: [0; 32],
            clock: 1,
            kind: "join".into(),
            body: vec![b'x'; body],
            id: [1; 32],
            signature: wire::WireSignature([2; 32], [3; 32]),
        }
    }

    #[test]
    fn the_computed_size_of_an_entries_message_is_its_encoded_size() {
        for (n, body, rest_n, id_len, seq) in [
            (0usize, 0usize, 0usize, 1usize, 0u64),
            (1, 0, 1, 1, 1),
            (3, 127, 127, 60, 127),
            (200, 150, 200, 20, 128),
            (5, 20_000, 2_048, 64, u64::MAX),
        ] {
            let entries: Vec<WireEntry> = (0..n)
                .map(|i| {
                    let mut e = entry(i, body);
                    e.seq = seq;
                    e.clock = seq / 3;
                    e
                })
                .collect();
            let rest: Vec<(String, u64)> = (0..rest_n)
                .map(|i| {
                    (
                        format!("{i}{}", "x".repeat(id_len)),
                        seq.wrapping_add(i as u64),
                    )
                })
                .collect();
            let computed = entries
                .iter()
                .fold(ENTRIES_MESSAGE_OVERHEAD, |acc, e| acc + wire_entry_size(e))
                + varint_len(n as u64)
                + varint_len(rest_n as u64)
                + rest
                    .iter()
                    .map(|(a, s)| varint_len(a.len() as u64) + a.len() + varint_len(*s))
                    .sum::<usize>();
            let encoded = wire::encode(&Message::Entries { entries, rest }).len();
            assert_eq!(computed, encoded, "{n} entries of {body}, rest {rest_n}");
        }
    }

    fn buf_of(entries: &[WireEntry]) -> EntriesBuf {
        let mut buf = EntriesBuf::default();
        for e in entries {
            buf.push(e);
        }
        buf
    }

    #[test]
    fn an_entries_message_built_as_it_goes_is_the_encoded_message() {
        for (n, body, rest_n, seq) in [
            (0usize, 0usize, 0usize, 0u64),
            (1, 0, 1, 1),
            (127, 3, 0, 127),
            (128, 150, 2, 128),
            (300, 20, 300, u64::MAX),
            (130, 300, 0, 2),
            (16_384, 0, 1, 5),
        ] {
            let entries: Vec<WireEntry> = (0..n)
                .map(|i| {
                    let mut e = entry(i, body);
                    e.seq = seq;
                    e
                })
                .collect();
            let rest: Vec<(String, u64)> = (0..rest_n)
                .map(|i| (format!("r{i}"), seq.wrapping_add(i as u64)))
                .collect();
            let buf = buf_of(&entries);
            assert_eq!(buf.len(), n);
            if buf.entry_bytes() < MAX_MESSAGE_BYTES {
                // A message's buffer grows to 64 KiB at most.
                assert!(buf.capacity() <= 65_536, "{}", buf.capacity());
            }
            let built = buf.finish(&rest);
            let encoded = wire::encode(&Message::Entries { entries, rest });
            assert_eq!(built, encoded, "{n} entries of {body}, rest {rest_n}");
        }
    }

    #[test]
    fn a_full_batch_carries_only_the_part_of_rest_that_fits() {
        // Entries filling the budget, and a rest of 2 048 authors (about
        // 30 KB): together over the limit, which the host would drop.
        let entries: Vec<WireEntry> = (0..200).map(|i| entry(i, 150)).collect();
        let rest: Vec<(String, u64)> = (0..2048)
            .map(|i| (format!("an-author-with-a-longer-id-{i}"), 1_000_000))
            .collect();
        let mut fx = Effects::default();
        send_entries_fitting(&mut fx, "10.0.0.1:7946", buf_of(&entries), rest.clone());
        let msgs = sent(&mut fx);
        let [Message::Entries {
            entries: got,
            rest: kept,
        }] = msgs.as_slice()
        else {
            panic!("one entries message: {msgs:?}");
        };
        assert_eq!(got, &entries);
        assert!(
            !kept.is_empty() && kept.len() < rest.len(),
            "{}",
            kept.len()
        );
        assert_eq!(kept.as_slice(), &rest[..kept.len()]);
        // A rest that fits goes whole.
        let short: Vec<(String, u64)> = rest.iter().take(10).cloned().collect();
        send_entries_fitting(&mut fx, "10.0.0.1:7946", buf_of(&entries), short.clone());
        let msgs = sent(&mut fx);
        assert!(matches!(msgs.as_slice(), [Message::Entries { rest, .. }] if *rest == short));
    }

    /// A ledger of `authors` first joins (about 300 bytes each).
    fn ledger_of(authors: usize) -> Ledger {
        ledger_padded(authors, 100)
    }

    /// A ledger of `authors` first joins padded with `pad` bytes each.
    fn ledger_padded(authors: usize, pad: usize) -> Ledger {
        use crate::ledger::GENESIS_PREV;
        use nodeplane_entry::signing::ed25519::{key_field, KeyPair, NativeVerifier};
        let mut ledger = Ledger::new();
        for i in 0..authors {
            let name = format!("author-{i:05}");
            let k = KeyPair::derived(b"reconcile-tests", &name);
            let body = format!(
                "{{{},\"pad\":\"{}\"}}",
                key_field(&k.public_key()),
                "x".repeat(pad)
            );
            let e = k.sign(Entry::new(
                &name,
                1,
                GENESIS_PREV,
                1,
                "join",
                body.into_bytes(),
            ));
            ledger
                .insert(e, &mut NativeVerifier)
                .expect("a first join links");
        }
        ledger
    }

    /// Bytes of the `entries` messages sent, and the `reconcile-throttled`
    /// lines logged.
    fn shipped(fx: &mut Effects) -> (u64, usize) {
        let mut bytes = 0;
        let mut logged = 0;
        for e in fx.drain() {
            match e {
                Effect::Send { payload, .. } => {
                    if let Ok(Message::Entries { .. }) = wire::decode(&payload) {
                        bytes += payload.len() as u64;
                    }
                }
                Effect::Log { kind, .. } if kind == "reconcile-throttled" => logged += 1,
                _ => {}
            }
        }
        (bytes, logged)
    }

    #[test]
    fn pruning_forgets_each_record_once_it_lapses_and_no_sooner() {
        let mut r = Reconciler::default();
        let held = |r: &Reconciler| r.incoming.keys().cloned().collect::<Vec<_>>();
        r.note_incoming("a", 0);
        r.note_incoming("b", 500);
        r.prune_streams(999);
        assert_eq!(held(&r), ["a", "b"]);
        r.prune_streams(1_000);
        assert_eq!(held(&r), ["b"]);
        // A record written with an earlier lapse than the one noted is
        // still pruned on time (the bound only ever goes down on a write).
        r.note_incoming("c", 200);
        r.prune_streams(1_199);
        assert_eq!(held(&r), ["b", "c"]);
        r.prune_streams(1_200);
        assert_eq!(held(&r), ["b"]);
        r.prune_streams(1_500);
        assert!(held(&r).is_empty());
        // The other maps too: a sync start, and a stream going out.
        let ledger = ledger_of(3);
        let mut fx = Effects::default();
        r.start_sync(&ledger, &mut fx, 2_000, "10.0.0.9:1", true);
        r.send_entries(&ledger, &mut fx, 2_100, "10.0.0.9:1", &everything(&ledger));
        assert_eq!((r.last_sync.len(), r.outgoing.len()), (1, 1));
        r.prune_streams(2_999);
        assert_eq!((r.last_sync.len(), r.outgoing.len()), (1, 1));
        r.prune_streams(3_000);
        assert_eq!((r.last_sync.len(), r.outgoing.len()), (0, 1));
        r.prune_streams(3_100);
        assert_eq!((r.last_sync.len(), r.outgoing.len()), (0, 0));
    }

    #[test]
    fn what_a_node_ships_to_reconciling_peers_stays_within_its_budget() {
        // A seed holding 3 000 joins (about 0.9 MB) that 40 fresh nodes ask
        // for everything at the same instant: 36 MB wanted.
        let ledger = ledger_of(3_000);
        let everything = everything(&ledger);
        let largest = 400u64;
        let mut r = Reconciler::default();
        let mut fx = Effects::default();
        let ask_all = |r: &mut Reconciler, fx: &mut Effects, now: u64, round: usize| {
            for p in 0..40 {
                let peer = format!("10.0.{round}.{p}:7946");
                r.send_entries(&ledger, fx, now, &peer, &everything);
            }
        };
        ask_all(&mut r, &mut fx, 1_000, 0);
        let (bytes, logged) = shipped(&mut fx);
        assert!(
            bytes <= RECONCILE_BURST_BYTES + largest,
            "{bytes} bytes shipped at once"
        );
        assert!(
            bytes + largest >= RECONCILE_BURST_BYTES,
            "{bytes}: the budget is used"
        );
        assert_eq!(logged, 1, "the refusals are logged, once");
        // Within the next second: the rate's worth, not more; the refusals
        // of the same second are counted, not logged again.
        ask_all(&mut r, &mut fx, 1_250, 1);
        let (bytes, logged) = shipped(&mut fx);
        assert!(bytes <= RECONCILE_BYTES_PER_S / 4 + largest, "{bytes}");
        assert!(bytes > 0);
        assert_eq!(logged, 0);
        // An idle second later, a full bucket again, and a new log line.
        ask_all(&mut r, &mut fx, 3_000, 2);
        let (bytes, logged) = shipped(&mut fx);
        assert!(
            bytes <= RECONCILE_BURST_BYTES + largest && bytes + largest >= RECONCILE_BURST_BYTES
        );
        assert_eq!(logged, 1);
    }

    /// Bytes of the `entries` messages sent to each peer.
    fn shipped_to(fx: &mut Effects) -> BTreeMap<String, u64> {
        let mut per_peer = BTreeMap::new();
        for e in fx.drain() {
            if let Effect::Send { to, payload } = e {
                if let Ok(Message::Entries { .. }) = wire::decode(&payload) {
                    *per_peer.entry(to).or_insert(0) += payload.len() as u64;
                }
            }
        }
        per_peer
    }

    #[test]
    fn a_requester_asking_far_more_often_gets_its_share_not_the_bucket() {
        // A seed holding 4 000 joins of about 1.7 KB (6.8 MB, more than a
        // window's capacity). A greedy peer asks for everything every 5 ms,
        // an honest one every 100 ms, for two seconds.
        let ledger = ledger_padded(4_000, 1_500);
        let everything = everything(&ledger);
        let (greedy, honest) = ("10.0.0.66:7946", "10.0.0.7:7946");
        let mut r = Reconciler::default();
        let mut fx = Effects::default();
        let mut got: BTreeMap<String, u64> = BTreeMap::new();
        for now in (1_000..3_000).step_by(5) {
            r.send_entries(&ledger, &mut fx, now, greedy, &everything);
            if now % 100 == 50 {
                r.send_entries(&ledger, &mut fx, now, honest, &everything);
            }
            for (peer, bytes) in shipped_to(&mut fx) {
                *got.entry(peer).or_insert(0) += bytes;
            }
        }
        let greedy_got = got.get(greedy).copied().unwrap_or(0);
        let honest_got = got.get(honest).copied().unwrap_or(0);
        let total = greedy_got + honest_got;
        // Two windows of two requesters: past half a window's capacity,
        // the greedy peer gets only what the bucket holds above its
        // reserve, which the honest peer's asks keep drained. Without
        // shares the honest peer got what the bucket refilled in the 5 ms
        // since the greedy peer's last ask: 35 180 of 9 995 889 bytes
        // (0.35 %); with them 2 308 185 of 9 529 089 (24 %).
        assert!(
            honest_got * 5 >= total,
            "honest {honest_got} of {total} bytes"
        );
        // The bucket still bounds the total.
        assert!(
            total
                <= RECONCILE_BURST_BYTES + 2 * RECONCILE_BYTES_PER_S + 2 * MAX_MESSAGE_BYTES as u64
        );
    }

    #[test]
    fn requesters_beyond_the_tracked_ones_share_one_record() {
        let ledger = ledger_of(10);
        let everything = everything(&ledger);
        let mut r = Reconciler::default();
        let mut fx = Effects::default();
        for p in 0..FAIR_SHARE_PEERS + 500 {
            let peer = format!("10.{}.{}.{}:7946", p / 65_536, (p / 256) % 256, p % 256);
            r.send_entries(&ledger, &mut fx, 1_000, &peer, &everything);
            fx.drain();
        }
        assert_eq!(r.budget.shares.spent.len(), FAIR_SHARE_PEERS);
        assert!(r.budget.shares.overflow.is_some());
        assert_eq!(r.budget.shares.requesters(), FAIR_SHARE_PEERS as u64 + 1);
        // A new window forgets them all.
        r.send_entries(&ledger, &mut fx, 2_000, "10.9.9.9:7946", &everything);
        assert_eq!(r.budget.shares.spent.len(), 1);
        assert!(r.budget.shares.overflow.is_none());
    }

    #[test]
    fn descents_come_out_of_the_budget_and_stop_when_it_is_spent() {
        // A seed holding 3 000 joins, and 2 000 nodes holding 100 of them
        // each asking it to reconcile at the same instant: every root
        // bucket differs, so each answer is a level of the descent.
        let ledger = ledger_of(3_000);
        let root = sync_item(&ledger_of(100), Vec::new());
        assert!(matches!(root, SyncItem::Node { .. }));
        let mut r = Reconciler::default();
        let mut fx = Effects::default();
        // (descent bytes sent, peers answered, `reconcile-throttled` lines).
        let ask = |r: &mut Reconciler, fx: &mut Effects, now: u64, round: usize| {
            for p in 0..2_000 {
                let peer = format!("10.{round}.{}.{}:7946", p / 250, p % 250);
                r.on_sync(&ledger, fx, now, &peer, vec![root.clone()]);
            }
            let mut bytes = 0u64;
            let mut largest = 0u64;
            let mut answered = std::collections::BTreeSet::new();
            let mut logged = 0;
            for e in fx.drain() {
                match e {
                    Effect::Send { to, payload } => {
                        assert!(matches!(wire::decode(&payload), Ok(Message::Sync { .. })));
                        bytes += payload.len() as u64;
                        largest = largest.max(payload.len() as u64);
                        answered.insert(to);
                    }
                    Effect::Log { kind, .. } if kind == "reconcile-throttled" => logged += 1,
                    _ => {}
                }
            }
            (bytes, largest, answered.len(), logged)
        };
        let (bytes, largest, answered, logged) = ask(&mut r, &mut fx, 1_000, 0);
        assert!(
            bytes <= RECONCILE_BURST_BYTES + largest,
            "{bytes} bytes of descent at once"
        );
        assert!(
            bytes + largest >= RECONCILE_BURST_BYTES,
            "{bytes}: the budget is used"
        );
        assert!(
            answered > 0 && answered < 2_000,
            "{answered} of 2 000 answered"
        );
        assert_eq!(logged, 1, "the refusals are logged, once");
        // A quarter of a second later: a quarter of the rate, not more.
        let (bytes, largest, answered, logged) = ask(&mut r, &mut fx, 1_250, 1);
        assert!(bytes <= RECONCILE_BYTES_PER_S / 4 + largest, "{bytes}");
        assert!(answered > 0);
        assert_eq!(logged, 0);
    }

    /// The `entries` and `want` messages sent: (entries messages, the
    /// (author, seq) of each entry, `want` messages, authors wanted).
    fn answers(fx: &mut Effects) -> (usize, Vec<(String, u64)>, usize, Vec<String>) {
        let (mut entries, mut carried, mut wants, mut wanted) = (0, Vec::new(), 0, Vec::new());
        for m in sent(fx) {
            match m {
                Message::Entries { entries: es, .. } => {
                    entries += 1;
                    carried.extend(es.into_iter().map(|e| (e.author, e.seq)));
                }
                Message::Want { heads } => {
                    wants += 1;
                    wanted.extend(heads.into_iter().map(|(a, _)| a));
                }
                _ => {}
            }
        }
        (entries, carried, wants, wanted)
    }

    /// One `sync` per level-2 bucket (256), each with one leaf.
    fn leaves(heads: impl Fn(u8, u8) -> Vec<(String, u64)>) -> Vec<Vec<SyncItem>> {
        (0..16u8)
            .flat_map(|a| (0..16u8).map(move |b| (a, b)))
            .map(|(a, b)| {
                vec![SyncItem::Leaf {
                    path: vec![a, b],
                    heads: heads(a, b),
                }]
            })
            .collect()
    }

    #[test]
    fn a_descent_s_leaves_get_one_push_per_gossip_tick_not_one_each() {
        // A peer lacking all of 3 000 joins (about 1.2 MB) sends the last
        // level of its descent as 256 `sync` messages at once. Answered
        // one by one, that was 256 `entries` streams (the transport drops
        // sends beyond 32 in flight); now the first go at once until they
        // sent SYNC_STREAMS_AT_ONCE streams, and the others are held, then
        // shipped in slices on the gossip ticks.
        let ledger = ledger_padded(3_000, 100);
        let peer = "10.0.0.2:7946";
        let mut r = Reconciler::default();
        let mut fx = Effects::default();
        for items in leaves(|_, _| Vec::new()) {
            r.on_sync(&ledger, &mut fx, 1_000, peer, items);
        }
        let (messages, mut carried, _, _) = answers(&mut fx);
        assert!(
            (1..=SYNC_STREAMS_AT_ONCE as usize + SYNC_BURST_MESSAGES).contains(&messages),
            "{messages} entries messages in answer to one descent"
        );
        let mut now = 1_000;
        while now < 1_000 + SYNC_HELD_MS {
            now += GOSSIP_INTERVAL_MS;
            r.flush_held(&ledger, &mut fx, now);
            let (messages, got, _, _) = answers(&mut fx);
            assert!(
                messages <= SYNC_STREAMS_AT_ONCE as usize + SYNC_BURST_MESSAGES,
                "{messages} at {now} ms"
            );
            carried.extend(got);
        }
        // Every entry the peer lacks is shipped, each once.
        let n = carried.len();
        carried.sort();
        carried.dedup();
        assert_eq!(carried.len(), n, "an entry shipped twice");
        assert_eq!(n, 3_000);
        // Nothing is held any more, and the peer's window closed.
        assert!(r.held.is_empty(), "{:?}", r.held.keys());
        assert_eq!(r.held_authors, 0);
    }

    #[test]
    fn a_descent_s_leaves_get_one_want_per_gossip_tick_not_one_each() {
        // The peer is ahead in 200 authors under each of 32 buckets: each
        // leaf's want is a stream.
        let ledger = ledger_of(1);
        let peer = "10.0.0.2:7946";
        let mut r = Reconciler::default();
        let mut fx = Effects::default();
        let ahead = |a: u8, b: u8| {
            (0..200)
                .map(|i| (format!("ahead-{a}-{b}-{i}"), 3))
                .collect::<Vec<_>>()
        };
        let descent: Vec<_> = leaves(ahead).into_iter().take(32).collect();
        for items in descent {
            r.on_sync(&ledger, &mut fx, 1_000, peer, items);
        }
        let (_, _, wants, mut wanted) = answers(&mut fx);
        assert_eq!(
            wants, SYNC_STREAMS_AT_ONCE as usize,
            "the first leaves' wants go at once, one each"
        );
        // The others: a few wants of a slice each per tick, as many as
        // the peer's answers (a burst each) keep within the streams.
        let per_tick = SYNC_STREAMS_AT_ONCE as usize / 2 / SYNC_BURST_MESSAGES;
        for now in (1_200..=2_600).step_by(200) {
            r.flush_held(&ledger, &mut fx, now);
            let (_, _, wants, got) = answers(&mut fx);
            assert!(wants <= per_tick, "{wants} wants at {now} ms");
            assert!(got.len() <= per_tick * SYNC_SLICE_AUTHORS);
            wanted.extend(got);
        }
        wanted.sort();
        assert_eq!(wanted.len(), 32 * 200);
        wanted.dedup();
        assert_eq!(wanted.len(), 32 * 200);
    }

    #[test]
    fn what_hostile_leaves_make_a_node_hold_stays_bounded() {
        // Peers claiming MAX_HEADS made-up authors far ahead per leaf, in
        // four leaves past those answered at once, from 8 addresses; then
        // more addresses than FAIR_SHARE_PEERS with one small leaf each.
        let ledger = ledger_of(1);
        let mut r = Reconciler::default();
        let mut fx = Effects::default();
        for p in 0..8 {
            let peer = format!("10.0.1.{p}:7946");
            for k in 0..SYNC_STREAMS_AT_ONCE + 4 {
                let heads = (0..MAX_HEADS)
                    .map(|i| (format!("made-up-{p}-{k}-{i}"), u64::MAX))
                    .collect();
                let leaf = SyncItem::Leaf {
                    path: vec![(k % 16) as u8],
                    heads,
                };
                r.on_sync(&ledger, &mut fx, 1_000, &peer, vec![leaf]);
                fx.drain();
            }
        }
        let held: usize = r.held.values().map(|h| h.push.len() + h.want.len()).sum();
        assert!(held <= SYNC_HELD_AUTHORS, "{held} authors held");
        assert!(held >= SYNC_PUSH_AUTHORS, "{held}: the bound is reached");
        assert!(r.held_authors <= SYNC_HELD_AUTHORS);
        assert!(r.held.values().all(|h| h.want.len() <= SYNC_PUSH_AUTHORS));
        for p in 0..FAIR_SHARE_PEERS + 10 {
            let peer = format!("10.{}.{}.{}:7946", 1 + p / 65_536, (p / 256) % 256, p % 256);
            let leaf = SyncItem::Leaf {
                path: vec![1],
                heads: vec![(format!("x{p}"), 1)],
            };
            r.on_sync(&ledger, &mut fx, 1_000, &peer, vec![leaf]);
            fx.drain();
        }
        assert!(r.held.len() <= FAIR_SHARE_PEERS, "{} peers", r.held.len());
        // Asked for once, never re-asked however often the ticks come;
        // forgotten once SYNC_HELD_MS has passed.
        let mut now = 1_000;
        while now <= 1_000 + SYNC_HELD_MS {
            now += GOSSIP_INTERVAL_MS;
            r.flush_held(&ledger, &mut fx, now);
            fx.drain();
        }
        assert!(r.held.is_empty());
        assert_eq!(r.held_authors, 0);
    }

    #[test]
    fn a_want_of_long_ids_is_split_until_each_message_fits() {
        let long = "x".repeat(60);
        let heads: Vec<(String, u64)> = (0..MAX_HEADS)
            .map(|i| (format!("{long}{i:04}"), u64::MAX))
            .collect();
        let mut fx = Effects::default();
        send_want(&mut fx, "10.0.0.1:7946", &heads);
        let msgs = sent(&mut fx);
        assert!(msgs.len() > 1);
        let asked: Vec<(String, u64)> = msgs
            .into_iter()
            .flat_map(|m| match m {
                Message::Want { heads } => heads,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(asked, heads);
    }

    mod shares {
        use super::*;
        use proptest::prelude::*;

        /// Steps of time: none, a little, to the window's edge, past it,
        /// far past it.
        fn dts() -> BoxedStrategy<u64> {
            prop_oneof![
                Just(0u64),
                1u64..10,
                Just(FAIR_SHARE_WINDOW_MS - 1),
                Just(FAIR_SHARE_WINDOW_MS),
                Just(u64::MAX / 4),
                0u64..3_000,
            ]
            .boxed()
        }

        /// (time step, requester, bytes taken: within what is available,
        /// or an overdraw, or a flood of this many new requesters first).
        fn steps() -> BoxedStrategy<Vec<(u64, u16, u64, u16)>> {
            prop::collection::vec(
                (
                    dts(),
                    0u16..40,
                    prop_oneof![0u64..300_000, Just(u64::MAX)],
                    prop_oneof![6 => Just(0u16), 1 => 1u16..9_000],
                ),
                1..60,
            )
            .boxed()
        }

        fn peer(p: u32) -> String {
            format!("10.{}.{}.{}:7946", p >> 16, (p >> 8) & 255, p & 255)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            /// Whatever the requesters ask and however many addresses they
            /// ask from: what one may be shipped never exceeds what the
            /// bucket holds, the tracked requesters never exceed
            /// `FAIR_SHARE_PEERS`, and a new window forgets them.
            #[test]
            fn a_share_is_within_the_bucket_and_the_map_stays_bounded(steps in steps()) {
                let mut b = PushBudget::default();
                let mut now = 1_000u64;
                let mut flooded = 0u32;
                for (dt, who, take, flood) in steps {
                    now = now.saturating_add(dt);
                    let new_window = now >= b.shares.window_ms.saturating_add(FAIR_SHARE_WINDOW_MS);
                    for _ in 0..flood {
                        flooded += 1;
                        let p = peer(100_000 + flooded);
                        let got = b.available(now, &p);
                        prop_assert!(got <= b.tokens, "{got} of {}", b.tokens);
                    }
                    let p = peer(u32::from(who));
                    let got = b.available(now, &p);
                    prop_assert!(b.tokens <= RECONCILE_BURST_BYTES);
                    prop_assert!(got <= b.tokens, "{got} of {}", b.tokens);
                    prop_assert!(b.shares.spent.len() <= FAIR_SHARE_PEERS);
                    if new_window && flood == 0 {
                        prop_assert_eq!(b.shares.spent.len(), 1);
                        prop_assert!(b.shares.overflow.is_none());
                    }
                    prop_assert_eq!(
                        b.shares.requesters(),
                        (b.shares.spent.len() + usize::from(b.shares.overflow.is_some())).max(1) as u64
                    );
                    b.spend(&p, take.min(got.saturating_add(take % 2)));
                }
            }
        }
    }
}
