//! Dissemination: the queue of fresh entries that ride on probes and gossip
//! pushes (piggyback), and what each peer's last frontier digest says about
//! whether it still needs them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{
    packed_v4, BROADCAST_MAX_AGE_MS, GOSSIP_FANOUT, LEAVE_FANOUT, MAX_BROADCAST_QUEUE,
    MAX_ENTRIES_PER_MESSAGE, MAX_PEER_DIGESTS, PIGGYBACK_BYTES_BUDGET,
};
use crate::ledger::{Entry, Ledger};
use crate::membership::Address;
use crate::node::Node;
use crate::paged::PagedMap;
use crate::wire::{self, Digest8, Message, WireEntry};

/// What a queued broadcast sends.
#[derive(Clone, Debug)]
pub(crate) enum Item {
    /// A linked entry, read back from the ledger (its store) when sent
    /// (chains only grow and entries never change, so it is the entry that
    /// was queued): the queue holds up to one item per member after a mass
    /// join, and an entry copy each was most of a node's peak memory.
    Linked(Arc<str>, u64),
    /// Equivocation evidence, which no chain holds: kept whole.
    Evidence(Box<Entry>),
}

impl Item {
    /// The entry to send, on the wire (`None`: the ledger's store no
    /// longer answers it as linked; the ledger noted why).
    fn wire_entry(&self, ledger: &Ledger) -> Option<WireEntry> {
        match self {
            Item::Linked(author, seq) => ledger.get(author, *seq).map(|e| WireEntry::from(&e)),
            Item::Evidence(e) => Some(WireEntry::from(&**e)),
        }
    }
}

/// An entry queued for gossip.
#[derive(Clone, Debug)]
struct Broadcast {
    item: Item,
    /// The entry's size on the wire, known when queued (so choosing what
    /// fits reads back only the entries sent).
    size: usize,
    /// Transmissions left.
    remaining: u32,
    queued_at: u64,
}

/// The dissemination queue and the digests heard from peers.
#[derive(Debug, Default)]
pub(crate) struct Gossip {
    queue: Vec<Broadcast>,
    /// Last frontier digest heard from each address (ping or ack).
    peer_digest: PeerDigests,
    /// Consecutive received digests equal to ours since our last change.
    agreeing: u32,
}

/// The last frontier digest heard from each address: a map by address
/// string, kept in two parts. An address in the canonical `a.b.c.d:port`
/// form (every member's, in practice) is keyed by its packed number
/// ([`packed_v4`], one-to-one with those strings), without a string
/// allocation; any other address by its string. Each address has one
/// place, so this is exactly a map by address, of at most
/// [`MAX_PEER_DIGESTS`] addresses.
#[derive(Debug, Default)]
struct PeerDigests {
    /// Canonical IPv4 addresses, packed (sorted pages: about 18 bytes a
    /// peer, where a `BTreeMap` took 26-30 on wasm32).
    v4: PagedMap<Digest8>,
    /// Every other address. (`Box<str>`: no capacity word.)
    other: BTreeMap<Box<str>, Digest8>,
}

impl PeerDigests {
    /// The last digest heard from `addr`.
    fn get(&self, addr: &str) -> Option<Digest8> {
        match packed_v4(addr) {
            Some(k) => self.v4.get(k),
            None => self.other.get(addr).copied(),
        }
    }

    /// Records the digest heard from `addr`. A new address at
    /// [`MAX_PEER_DIGESTS`] first makes room: the smallest non-canonical
    /// address goes, else the smallest canonical one.
    fn set(&mut self, addr: &str, digest: Digest8) {
        let key = packed_v4(addr);
        let known = match key {
            Some(k) => self.v4.contains_key(k),
            None => self.other.contains_key(addr),
        };
        if !known && self.len() >= MAX_PEER_DIGESTS && self.other.pop_first().is_none() {
            self.v4.pop_first();
        }
        match key {
            Some(k) => {
                self.v4.insert(k, digest);
            }
            None => match self.other.get_mut(addr) {
                Some(slot) => *slot = digest,
                None => {
                    self.other.insert(Box::from(addr), digest);
                }
            },
        }
    }

    /// Addresses remembered.
    fn len(&self) -> usize {
        self.v4.len().saturating_add(self.other.len())
    }
}

/// Transmissions of each entry: multiplier x log10(N+1), at least one.
pub(crate) fn retransmit_limit(cluster_size: usize, multiplier: u32) -> u32 {
    let n = cluster_size as f64;
    let limit = f64::from(multiplier) * (n + 1.0).log10();
    (limit.ceil() as u32).max(1)
}

impl Gossip {
    /// Queues an entry for `remaining` transmissions. Each entry comes here
    /// at most once: the ledger links an entry once and reports an
    /// equivocation once.
    pub(crate) fn enqueue(&mut self, item: Item, size: usize, remaining: u32, now_ms: u64) {
        assert!(remaining > 0, "gossip: an entry queued for no transmission");
        if self.queue.len() >= MAX_BROADCAST_QUEUE {
            let fewest = self
                .queue
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.remaining)
                .map(|(i, _)| i);
            if let Some(i) = fewest {
                self.queue.remove(i);
            }
        }
        self.queue.push(Broadcast {
            item,
            size,
            remaining,
            queued_at: now_ms,
        });
    }

    /// Takes the freshest queued entries that fit `budget` bytes.
    pub(crate) fn piggyback(&mut self, ledger: &Ledger, budget: usize) -> Vec<WireEntry> {
        if self.queue.is_empty() {
            return Vec::new();
        }
        let mut order: Vec<(usize, u32)> =
            self.queue.iter().map(|b| b.remaining).enumerate().collect();
        order.sort_by_key(|&(_, remaining)| std::cmp::Reverse(remaining));
        let mut used: usize = 0;
        let mut out = Vec::new();
        for (i, _) in order {
            let Some(b) = self.queue.get_mut(i) else {
                continue;
            };
            let size = b.size;
            // One entry always fits, however large (a verdict citing 40
            // suspicions is bigger than the piggyback budget).
            if (!out.is_empty() && used.saturating_add(size) > budget)
                || out.len() >= MAX_ENTRIES_PER_MESSAGE
            {
                continue;
            }
            let Some(entry) = b.item.wire_entry(ledger) else {
                // The store did not answer it as linked (logged): drop it.
                b.remaining = 0;
                continue;
            };
            used = used.saturating_add(size);
            out.push(entry);
            b.remaining = b.remaining.saturating_sub(1);
        }
        self.queue.retain(|b| b.remaining > 0);
        // Keep chain order so receivers link without buffering.
        out.sort_by(|a, b| (a.author.as_str(), a.seq).cmp(&(b.author.as_str(), b.seq)));
        out
    }

    /// Entries for a ping or ack to `addr`: none if it holds ours already.
    pub(crate) fn piggyback_for(
        &mut self,
        ledger: &Ledger,
        addr: &str,
        ours: Digest8,
    ) -> Vec<WireEntry> {
        if self.in_sync_with(addr, ours) {
            return Vec::new();
        }
        self.piggyback(ledger, PIGGYBACK_BYTES_BUDGET)
    }

    /// Records the frontier digest `from` sent; `ours` is this node's.
    pub(crate) fn note_digest(&mut self, from: &str, digest: Digest8, ours: Digest8) {
        if digest == ours {
            self.agreeing = self.agreeing.saturating_add(1);
        } else {
            self.agreeing = 0;
        }
        self.peer_digest.set(from, digest);
    }

    /// Our ledger changed: no peer is known to agree any more.
    pub(crate) fn ledger_changed(&mut self) {
        self.agreeing = 0;
    }

    /// Whether the last digest heard from `addr` equals ours: then it holds
    /// every entry we hold and gossip to it would be wasted.
    pub(crate) fn in_sync_with(&self, addr: &str, ours: Digest8) -> bool {
        self.peer_digest.get(addr) == Some(ours)
    }

    /// [`Gossip::in_sync_with`] a member's address as a profile keeps it.
    pub(crate) fn in_sync_with_member(&self, addr: &Address, ours: Digest8) -> bool {
        let heard = match addr {
            Address::V4(k) => self.peer_digest.v4.get(k.get()),
            Address::Other(s) => self.peer_digest.other.get(&**s).copied(),
        };
        heard == Some(ours)
    }

    /// Asserts the queue's bounds.
    pub(crate) fn check_invariants(&self) {
        assert!(
            self.queue.len() <= MAX_BROADCAST_QUEUE,
            "gossip: queue over its bound"
        );
        assert!(
            self.peer_digest.len() <= MAX_PEER_DIGESTS,
            "gossip: peer digests over their bound"
        );
        assert!(
            self.queue.iter().all(|b| b.remaining > 0),
            "gossip: a spent entry is still queued"
        );
    }
}

impl Node {
    /// Queues an entry for gossip, its transmissions scaled to the cluster.
    pub(crate) fn enqueue_broadcast(&mut self, entry: Entry) {
        let remaining = retransmit_limit(
            self.roster.cluster_size(),
            self.cfg.tunables.retransmit_multiplier,
        );
        let size = wire::entry_wire_size(&entry);
        let item = match self.ledger.shared_author(&entry.author) {
            Some(author) if self.ledger.links(&entry) => Item::Linked(author, entry.seq),
            _ => Item::Evidence(Box::new(entry)),
        };
        self.gossip.enqueue(item, size, remaining, self.now_ms);
    }

    /// The gossip tick: pushes queued entries to a few live peers that are
    /// not known to hold them.
    pub(crate) fn gossip_round(&mut self, now_ms: u64) {
        self.gossip
            .queue
            .retain(|b| now_ms < b.queued_at.saturating_add(BROADCAST_MAX_AGE_MS));
        if self.gossip.queue.is_empty() {
            return;
        }
        let ours = self.digest();
        let gossip = &self.gossip;
        let targets =
            self.roster
                .sample_live(self.derived.authors(), &mut self.rng, GOSSIP_FANOUT, |m| {
                    !gossip.in_sync_with_member(m.address, ours)
                });
        if targets.is_empty() {
            // Every live peer reported our digest: nothing left to spread.
            self.gossip.queue.clear();
            return;
        }
        for id in targets {
            let entries = self.gossip.piggyback(&self.ledger, PIGGYBACK_BYTES_BUDGET);
            if entries.is_empty() {
                break;
            }
            if let Some(m) = self.derived.member(&id) {
                self.effects.send(&m.address, &Message::Gossip { entries });
            }
        }
    }

    /// Sends this node's `leave` entry to a few live members.
    pub(crate) fn announce_leave(&mut self, e: &Entry) {
        for a in self.rng.sample(self.roster.live(), LEAVE_FANOUT) {
            let Some(id) = self.derived.authors().name(a) else {
                continue;
            };
            if let Some(m) = self.derived.member(id) {
                self.effects.send(
                    &m.address,
                    &Message::Gossip {
                        entries: vec![WireEntry::from(e)],
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::unpack_v4;

    #[test]
    fn peer_digests_stay_within_their_bound_keeping_the_newest() {
        // A sender cycling through source addresses, canonical and not.
        let mut d = PeerDigests::default();
        let extra = 1_000usize;
        for i in 0..MAX_PEER_DIGESTS + extra {
            let addr = if i % 2 == 0 {
                format!(
                    "10.{}.{}.{}:{}",
                    (i >> 16) & 255,
                    (i >> 8) & 255,
                    i & 255,
                    7000 + (i % 7)
                )
            } else {
                format!("host-{i}:7946")
            };
            d.set(&addr, [1u8; 8]);
            assert!(d.len() <= MAX_PEER_DIGESTS, "{} after {i}", d.len());
            assert_eq!(d.get(&addr), Some([1u8; 8]), "the newest is kept");
        }
        assert_eq!(d.len(), MAX_PEER_DIGESTS);
        // A known address is updated in place, evicting nothing.
        let last = format!("host-{}:7946", MAX_PEER_DIGESTS + extra - 1);
        d.set(&last, [2u8; 8]);
        assert_eq!(d.len(), MAX_PEER_DIGESTS);
        assert_eq!(d.get(&last), Some([2u8; 8]));
    }

    #[test]
    fn only_canonical_ipv4_addresses_are_packed_and_each_address_has_one_place() {
        assert_eq!(packed_v4("10.0.0.1:7946"), Some(0x0a00_0001_1f0a));
        assert_eq!(packed_v4("0.0.0.0:0"), Some(0));
        assert_eq!(packed_v4("255.255.255.255:65535"), Some(0xffff_ffff_ffff));
        for a in [
            "10.0.0.1:7946",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "1.20.3.40:500",
        ] {
            assert_eq!(packed_v4(a).map(unpack_v4).as_deref(), Some(a));
        }
        for other in [
            "010.0.0.1:7946",
            "10.0.0.1:07946",
            "10.0.0.256:1",
            "10.0.0.1:65536",
            "10.0.0:1",
            "10.0.0.1.2:1",
            "10.0.0.1",
            "10.0.0.1:",
            ":1",
            "[::1]:7946",
            "10.0.0.+1:1",
            "10.0.0.1:1:2",
            "a.b.c.d:1",
        ] {
            assert_eq!(packed_v4(other), None, "{other}");
        }
        let mut d = PeerDigests::default();
        d.set("10.0.0.1:7946", [1; 8]);
        d.set("010.0.0.1:7946", [2; 8]);
        d.set("10.0.0.1:7946", [3; 8]);
        assert_eq!(d.get("10.0.0.1:7946"), Some([3; 8]));
        assert_eq!(d.get("010.0.0.1:7946"), Some([2; 8]));
        assert_eq!(d.get("10.0.0.2:7946"), None);
        assert_eq!((d.v4.len(), d.other.len()), (1, 1));
    }
}
