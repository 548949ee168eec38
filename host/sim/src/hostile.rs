//! Hostile nodes: simulated addresses that run no component but send, on a
//! seeded schedule, random bytes, garbled copies of the traffic they
//! observe, and crafted messages built with the core's wire codec
//! ([`nodeplane_core::wire`]) — forged verdicts, suspicions at incarnations
//! nobody announced, `want` at the largest sequence number, oversized
//! `sync` steps, probes toward random addresses, well-formed entries of
//! their own fresh author ids and malformed ones.
//!
//! A hostile node is all-knowing (it reads every honest node's id, address
//! and current incarnation from the world, the worst case of a sniffing
//! attacker) and sees a sample of the honest traffic on the wire
//! ([`SNIFF_CHANCE`]) plus everything sent to its own address. It draws
//! every choice from its own generator, forked from the world's seed when
//! it is added, so a seed replays its attacks exactly and a world without
//! hostile nodes draws exactly what it drew before they existed.
//!
//! The honest nodes must survive it: no component crash, no call error
//! other than the `bad-message` a malformed message earns, no honest live
//! node `dead` in any honest view, and convergence once it stops
//! ([`Sim::check`](crate::Sim::check)).

use std::collections::{BTreeMap, VecDeque};

use nodeplane_core::membership::{
    DeadBody, ProfileBody, SuspectBody, KIND_ALIVE, KIND_CONFIRM_DEAD, KIND_JOIN, KIND_LEAVE,
    KIND_METADATA, KIND_SUSPECT,
};
use nodeplane_core::wire::{self, Message, SyncItem, WireEntry, WIRE_VERSION};
use nodeplane_entry::{Entry, Hash, GENESIS_PREV, MAX_BODY_LEN};

use crate::node::SIM_PORT;
use crate::rng::SimRng;

/// Shortest gap between two sends of a hostile node's own schedule.
pub const HOSTILE_MIN_GAP_MS: u64 = 50;
/// Longest gap between two sends of a hostile node's own schedule: about
/// four messages a second, on the order of one honest node's own rate, so
/// a 300 s schedule carries over a thousand hostile messages.
pub const HOSTILE_MAX_GAP_MS: u64 = 400;
/// Payloads a hostile node keeps to garble and replay (the newest win):
/// enough variety of message kinds, bounded memory.
pub const CAPTURE_RING: usize = 64;
/// Probability that a hostile node copies one honest message in flight
/// (a sniffer on a shared segment; it keeps everything sent to itself).
pub const SNIFF_CHANCE: f64 = 0.05;
/// Longest random byte string sent (random bytes rarely decode, so long
/// ones only cost time).
pub const MAX_RANDOM_BYTES: usize = 2_048;
/// Fresh author ids a hostile node uses before it reuses (and continues
/// the chains of) the ones it has: bounds the fake members an honest view
/// accumulates in one run.
pub const MAX_FRESH_AUTHORS: usize = 48;
/// Heads per leaf of the oversized `sync` (times [`wire`]'s item limit, the
/// message stays under the host's 60 000-byte limit).
pub const HUGE_SYNC_HEADS: usize = 8;

/// The control address of hostile node `k` (outside the honest nodes'
/// `10.0.0.0/16`).
pub fn hostile_address(k: usize) -> String {
    format!("10.66.{}.{}:{SIM_PORT}", k / 256, k % 256)
}

/// The signing key of a hostile node's own author id.
fn hostile_keys(author: &str) -> nodeplane_entry::signing::ed25519::KeyPair {
    nodeplane_entry::signing::ed25519::KeyPair::derived(b"nodeplane-sim-hostile", author)
}

/// Fresh author id `j` of hostile node `k`: a valid node id no honest node
/// has.
pub fn hostile_author(k: usize, j: usize) -> String {
    format!("x{k}-{j}")
}

/// One kind of hostile message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Attack {
    /// Random bytes, sometimes behind a valid schema-version byte and
    /// message tag so that they reach the decoder's body.
    RandomBytes,
    /// A captured honest message, truncated, bit-flipped, spliced or
    /// replayed as is.
    Garbled,
    /// `want` with head sequence 2^64-1 (and 2^64-2) for honest authors.
    WantMaxSeq,
    /// `gossip` carrying a `confirm-dead` about a live honest node at
    /// incarnation 2^64-1, by a fresh author, with empty evidence.
    ForgedDeathMaxInc,
    /// `gossip` carrying one fresh author's `suspect` and `confirm-dead`
    /// about a live honest node at its current incarnation (the verdict
    /// cites that one suspicion and claims many suspecters).
    SingleAuthorDeath,
    /// `gossip` carrying only a fresh author's `confirm-dead` about a live
    /// honest node at its current incarnation, citing an evidence id
    /// nobody holds and claiming many suspecters.
    LoneVerdict,
    /// `gossip` carrying a fresh author's `suspect` about a live honest
    /// node at an incarnation that node never announced.
    SuspectUnannounced,
    /// `sync` with the most items the decoder accepts: deepest paths,
    /// random digests, leaves naming unknown authors at 2^64-1.
    HugeSync,
    /// `ping` and `ping-req` toward random addresses and node ids.
    Probes,
    /// Well-formed entries of the hostile node's own fresh authors: joins
    /// at other nodes' addresses, incarnation 2^64-1, leaves, metadata.
    FreshEntries,
    /// Malformed entries: wrong ids, broken links, seq 0, over-long
    /// fields, bodies that are not JSON, claims a node may not make.
    MalformedEntries,
    /// Unsolicited `entries`, `ack`, `indirect-ack` and `nack` with
    /// extreme fields.
    Unsolicited,
    /// Entries under a live honest node's id, signed with the hostile's
    /// own key: its next entry (a `leave`, an `alive` at 2^64-1, a verdict
    /// about another node) linked to its real head, or a second first
    /// `join` binding the id to the hostile's key.
    Impersonate,
}

impl Attack {
    /// Every attack, the mix of the random schedule.
    pub const ALL: [Attack; 13] = [
        Attack::RandomBytes,
        Attack::Garbled,
        Attack::WantMaxSeq,
        Attack::ForgedDeathMaxInc,
        Attack::SingleAuthorDeath,
        Attack::LoneVerdict,
        Attack::SuspectUnannounced,
        Attack::HugeSync,
        Attack::Probes,
        Attack::FreshEntries,
        Attack::MalformedEntries,
        Attack::Unsolicited,
        Attack::Impersonate,
    ];

    /// A short kebab-case name (reports, traces).
    pub fn name(self) -> &'static str {
        match self {
            Attack::RandomBytes => "random-bytes",
            Attack::Garbled => "garbled",
            Attack::WantMaxSeq => "want-max-seq",
            Attack::ForgedDeathMaxInc => "forged-death-max-inc",
            Attack::SingleAuthorDeath => "single-author-death",
            Attack::LoneVerdict => "lone-verdict",
            Attack::SuspectUnannounced => "suspect-unannounced",
            Attack::HugeSync => "huge-sync",
            Attack::Probes => "probes",
            Attack::FreshEntries => "fresh-entries",
            Attack::MalformedEntries => "malformed-entries",
            Attack::Unsolicited => "unsolicited",
            Attack::Impersonate => "impersonate",
        }
    }
}

/// What the hostile node knows of one honest node when it crafts.
#[derive(Clone, Debug)]
pub struct Known {
    /// The node's index in the world.
    pub index: usize,
    /// Its id.
    pub id: String,
    /// Its control address.
    pub address: String,
    /// The highest incarnation it announced.
    pub incarnation: u64,
    /// Whether it is running and has not left.
    pub live: bool,
    /// Its own chain's head in its own store, (seq, id), once every
    /// running honest node has linked its first entry (bound its id to
    /// its key); `None` before.
    pub head: Option<(u64, Hash)>,
}

/// What a hostile node did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostileStats {
    /// Messages it sent.
    pub sent_messages: u64,
    /// Bytes it sent.
    pub sent_bytes: u64,
    /// Messages honest nodes sent to its address.
    pub received_messages: u64,
    /// Bytes honest nodes sent to its address.
    pub received_bytes: u64,
    /// Honest messages it copied off the wire.
    pub sniffed: u64,
    /// Its messages a node refused with `bad-message` (expected).
    pub rejected: u64,
    /// Messages sent, by attack name.
    pub by_attack: BTreeMap<&'static str, u64>,
}

/// One hostile node.
#[derive(Clone, Debug)]
pub struct Hostile {
    /// Its index among the hostile nodes.
    pub index: usize,
    /// Its control address (the source of everything it sends).
    pub address: String,
    pub(crate) rng: SimRng,
    /// Whether its own schedule runs.
    pub(crate) active: bool,
    /// The attacks its schedule draws from.
    pub(crate) mix: Vec<Attack>,
    captured: VecDeque<Vec<u8>>,
    /// (author, head seq, head id) of each fresh author used so far.
    chains: Vec<(String, u64, Hash)>,
    clock: u64,
    /// What it did.
    pub stats: HostileStats,
}

impl Hostile {
    /// Hostile node `k`, drawing from `rng`, attacking with `mix`.
    pub fn new(k: usize, rng: SimRng, mix: Vec<Attack>) -> Hostile {
        Hostile {
            index: k,
            address: hostile_address(k),
            rng,
            active: true,
            mix,
            captured: VecDeque::new(),
            chains: Vec::new(),
            clock: 0,
            stats: HostileStats::default(),
        }
    }

    /// The gap before its next scheduled send.
    pub(crate) fn next_gap(&mut self) -> u64 {
        self.rng
            .range_inclusive(HOSTILE_MIN_GAP_MS, HOSTILE_MAX_GAP_MS)
    }

    /// Keeps a copy of an honest payload (bounded ring).
    pub(crate) fn capture(&mut self, payload: &[u8]) {
        if self.captured.len() == CAPTURE_RING {
            self.captured.pop_front();
        }
        self.captured.push_back(payload.to_vec());
    }

    /// Draws whether to sniff one honest message in flight.
    pub(crate) fn sniffs(&mut self) -> bool {
        self.rng.chance(SNIFF_CHANCE)
    }

    /// Draws an attack from its mix.
    pub(crate) fn pick_attack(&mut self) -> Attack {
        if self.mix.is_empty() {
            return Attack::RandomBytes;
        }
        let k = self.rng.below(self.mix.len() as u64) as usize;
        self.mix.get(k).copied().unwrap_or(Attack::RandomBytes)
    }

    /// Draws one of `items`.
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        items.get(self.rng.below(items.len() as u64) as usize)
    }

    fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.rng.next_u64() as u8).collect()
    }

    fn hash(&mut self) -> Hash {
        let mut h = [0u8; 32];
        for b in &mut h {
            *b = self.rng.next_u64() as u8;
        }
        h
    }

    /// A new fresh author, or (once [`MAX_FRESH_AUTHORS`] are used) one of
    /// its own, whose chain the next entry continues.
    fn author(&mut self, fresh: bool) -> usize {
        if (fresh || self.chains.is_empty()) && self.chains.len() < MAX_FRESH_AUTHORS {
            let j = self.chains.len();
            self.chains
                .push((hostile_author(self.index, j), 0, GENESIS_PREV));
            j
        } else {
            self.rng.below(self.chains.len() as u64) as usize
        }
    }

    /// The next well-formed entry of author `j`'s chain.
    fn entry(&mut self, j: usize, kind: &str, body: Vec<u8>) -> Entry {
        self.clock += 1;
        let Some((author, seq, prev)) = self.chains.get(j).cloned() else {
            return Entry::new("x", 1, GENESIS_PREV, self.clock, kind, body);
        };
        let next = seq.saturating_add(1);
        // Its own authors' entries are signed with their own keys: a
        // hostile node holding the cluster key is an insider who may join
        // fresh ids, never write under an honest node's.
        let entry =
            hostile_keys(&author).sign(Entry::new(&author, next, prev, self.clock, kind, body));
        if let Some(chain) = self.chains.get_mut(j) {
            chain.1 = next;
            chain.2 = entry.id;
        }
        entry
    }

    fn json<T: serde::Serialize>(body: &T) -> Vec<u8> {
        serde_json::to_vec(body).unwrap_or_default()
    }

    /// A live honest node to accuse (any honest node when none is live).
    fn subject<'a>(&mut self, world: &'a [Known]) -> Option<&'a Known> {
        let live: Vec<&Known> = world.iter().filter(|k| k.live).collect();
        match self.pick(&live) {
            Some(k) => Some(*k),
            None => self.pick(world),
        }
    }

    /// Some address: an honest node's, its own, or one nobody has.
    fn some_address(&mut self, world: &[Known]) -> String {
        match self.rng.below(4) {
            0 => self.address.clone(),
            1 => format!(
                "10.{}.{}.{}:{}",
                self.rng.below(256),
                self.rng.below(256),
                self.rng.below(256),
                1 + self.rng.below(65_535)
            ),
            _ => self
                .pick(world)
                .map(|k| k.address.clone())
                .unwrap_or_else(|| self.address.clone()),
        }
    }

    /// Crafts one payload of `attack`, knowing `world`.
    pub fn craft(&mut self, attack: Attack, world: &[Known]) -> Vec<u8> {
        match attack {
            Attack::RandomBytes => self.craft_random(),
            Attack::Garbled => self.craft_garbled(),
            Attack::WantMaxSeq => {
                let mut heads: Vec<(String, u64)> =
                    world.iter().map(|k| (k.id.clone(), u64::MAX)).collect();
                if let Some(k) = self.pick(world) {
                    heads.push((k.id.clone(), u64::MAX - 1));
                }
                if !self.chains.is_empty() {
                    let j = self.author(false);
                    if let Some((a, _, _)) = self.chains.get(j) {
                        heads.push((a.clone(), u64::MAX));
                    }
                }
                wire::encode(&Message::Want { heads })
            }
            Attack::ForgedDeathMaxInc => {
                let subject = self.subject(world).map(|k| k.id.clone());
                let j = self.author(true);
                let body = Self::json(&DeadBody {
                    subject: subject.unwrap_or_else(|| "n0".into()),
                    inc: u64::MAX,
                    evidence: Vec::new(),
                    suspecters: 0,
                });
                let e = self.entry(j, KIND_CONFIRM_DEAD, body);
                gossip(vec![e])
            }
            Attack::SingleAuthorDeath => {
                let (subject, inc) = self
                    .subject(world)
                    .map(|k| (k.id.clone(), k.incarnation))
                    .unwrap_or_else(|| ("n0".into(), 1));
                let j = self.author(true);
                let suspect = self.entry(
                    j,
                    KIND_SUSPECT,
                    Self::json(&SuspectBody {
                        subject: subject.clone(),
                        inc,
                    }),
                );
                let dead = self.entry(
                    j,
                    KIND_CONFIRM_DEAD,
                    Self::json(&DeadBody {
                        subject,
                        inc,
                        evidence: vec![hex::encode(suspect.id)],
                        suspecters: 1_000,
                    }),
                );
                gossip(vec![suspect, dead])
            }
            Attack::LoneVerdict => {
                let (subject, inc) = self
                    .subject(world)
                    .map(|k| (k.id.clone(), k.incarnation))
                    .unwrap_or_else(|| ("n0".into(), 1));
                let j = self.author(true);
                let evidence = vec![hex::encode(self.hash())];
                let dead = self.entry(
                    j,
                    KIND_CONFIRM_DEAD,
                    Self::json(&DeadBody {
                        subject,
                        inc,
                        evidence,
                        suspecters: 1_000,
                    }),
                );
                gossip(vec![dead])
            }
            Attack::SuspectUnannounced => {
                let (subject, inc) = self
                    .subject(world)
                    .map(|k| (k.id.clone(), k.incarnation))
                    .unwrap_or_else(|| ("n0".into(), 1));
                let unannounced = match self.rng.below(3) {
                    0 => u64::MAX,
                    1 => inc.saturating_add(1),
                    _ => inc.saturating_add(2 + self.rng.below(1_000_000)),
                };
                let j = self.author(true);
                let e = self.entry(
                    j,
                    KIND_SUSPECT,
                    Self::json(&SuspectBody {
                        subject,
                        inc: unannounced,
                    }),
                );
                gossip(vec![e])
            }
            Attack::HugeSync => self.craft_huge_sync(),
            Attack::Probes => self.craft_probe(world),
            Attack::FreshEntries => self.craft_fresh(world),
            Attack::MalformedEntries => self.craft_malformed(world),
            Attack::Unsolicited => self.craft_unsolicited(world),
            Attack::Impersonate => self.craft_impersonation(world),
        }
    }

    /// Impersonates a node every honest node has already bound to its key:
    /// what signatures guarantee is that nobody can write under an id a
    /// node has bound. (Racing a node's very first `join` to a node that
    /// has not yet linked it is identity squatting, a documented limit of
    /// first-come binding: docs/design.md §3, "Who may write".)
    fn craft_impersonation(&mut self, world: &[Known]) -> Vec<u8> {
        let bound: Vec<Known> = world.iter().filter(|k| k.head.is_some()).cloned().collect();
        let Some(victim) = self.subject(&bound).cloned() else {
            return Vec::new();
        };
        let other = self
            .pick(world)
            .map(|k| (k.id.clone(), k.incarnation))
            .unwrap_or_else(|| (victim.id.clone(), victim.incarnation));
        let keys = hostile_keys(&format!("impersonator-{}", self.index));
        self.clock += 1;
        let profile = |inc, signing_key| {
            Self::json(&ProfileBody {
                inc,
                addr: self.address.clone(),
                meta: Vec::new(),
                signing_key,
            })
        };
        // Its next entry, linked to its real head, or a second first join.
        let (seq, prev, kind, body) = match (victim.head, self.rng.below(4)) {
            (Some((seq, prev)), 0) => (
                seq.saturating_add(1),
                prev,
                KIND_LEAVE,
                Self::json(&serde_json::json!({ "inc": victim.incarnation })),
            ),
            (Some((seq, prev)), 1) => (
                seq.saturating_add(1),
                prev,
                KIND_ALIVE,
                profile(u64::MAX, None),
            ),
            (Some((seq, prev)), 2) => (
                seq.saturating_add(1),
                prev,
                KIND_CONFIRM_DEAD,
                Self::json(&DeadBody {
                    subject: other.0,
                    inc: other.1,
                    evidence: Vec::new(),
                    suspecters: 1_000,
                }),
            ),
            _ => (
                1,
                GENESIS_PREV,
                KIND_JOIN,
                profile(u64::MAX, Some(hex::encode(keys.public_key()))),
            ),
        };
        let entry = Entry::new(&victim.id, seq, prev, self.clock, kind, body);
        wire::encode(&Message::Gossip {
            entries: vec![WireEntry::from(&keys.sign(entry))],
        })
    }

    fn craft_random(&mut self) -> Vec<u8> {
        let len = self.rng.below(MAX_RANDOM_BYTES as u64 + 1) as usize;
        let mut bytes = self.random_bytes(len);
        match self.rng.below(3) {
            // Past the version check and onto a real message tag.
            0 => {
                let tag = self.rng.below(9) as u8;
                bytes.splice(0..0, [WIRE_VERSION, tag]);
            }
            1 => bytes.insert(0, WIRE_VERSION),
            _ => {}
        }
        bytes
    }

    fn craft_garbled(&mut self) -> Vec<u8> {
        let n = self.captured.len();
        if n == 0 {
            return self.craft_random();
        }
        let k = self.rng.below(n as u64) as usize;
        let mut bytes = self.captured.get(k).cloned().unwrap_or_default();
        match self.rng.below(5) {
            // Truncated.
            0 => {
                let cut = self.rng.below(bytes.len() as u64 + 1) as usize;
                bytes.truncate(cut);
            }
            // A few bytes flipped.
            1 => {
                for _ in 0..1 + self.rng.below(8) {
                    if bytes.is_empty() {
                        break;
                    }
                    let at = self.rng.below(bytes.len() as u64) as usize;
                    if let Some(b) = bytes.get_mut(at) {
                        *b ^= 1 << self.rng.below(8);
                    }
                }
            }
            // Varint bytes set to their maximum (lengths and numbers blow up).
            2 => {
                for _ in 0..1 + self.rng.below(4) {
                    if bytes.is_empty() {
                        break;
                    }
                    let at = self.rng.below(bytes.len() as u64) as usize;
                    if let Some(b) = bytes.get_mut(at) {
                        *b = 0xFF;
                    }
                }
            }
            // Random bytes spliced in.
            3 => {
                let at = self.rng.below(bytes.len() as u64 + 1) as usize;
                let extra = 1 + self.rng.below(64) as usize;
                let junk = self.random_bytes(extra);
                bytes.splice(at..at, junk);
            }
            // Replayed as is, from the wrong source.
            _ => {}
        }
        bytes
    }

    fn craft_huge_sync(&mut self) -> Vec<u8> {
        use nodeplane_core::config::{MAX_SYNC_DEPTH, MAX_SYNC_ITEMS, SYNC_FANOUT};
        let mut items = Vec::with_capacity(MAX_SYNC_ITEMS);
        for i in 0..MAX_SYNC_ITEMS {
            let path: Vec<u8> = (0..self.rng.below(MAX_SYNC_DEPTH as u64 + 1))
                .map(|_| self.rng.below(SYNC_FANOUT as u64) as u8)
                .collect();
            if i % 2 == 0 {
                let digests = (0..SYNC_FANOUT)
                    .map(|_| self.rng.next_u64().to_be_bytes())
                    .collect();
                items.push(SyncItem::Node { path, digests });
            } else {
                let heads = (0..HUGE_SYNC_HEADS)
                    .map(|h| {
                        (
                            format!("y{}-{i}-{h}", self.index),
                            u64::MAX - self.rng.below(2),
                        )
                    })
                    .collect();
                items.push(SyncItem::Leaf { path, heads });
            }
        }
        wire::encode(&Message::Sync { items })
    }

    fn craft_probe(&mut self, world: &[Known]) -> Vec<u8> {
        let target = match self.rng.below(3) {
            0 => String::new(),
            1 => hostile_author(self.index, self.rng.below(1_000) as usize),
            _ => self.pick(world).map(|k| k.id.clone()).unwrap_or_default(),
        };
        let seq = self.rng.next_u64() as u32;
        if self.rng.chance(0.5) {
            let digest = self.rng.next_u64().to_be_bytes();
            wire::encode(&Message::Ping {
                seq,
                target,
                digest,
                entries: Vec::new(),
            })
        } else {
            let target = if target.is_empty() {
                "n0".to_string()
            } else {
                target
            };
            let address = self.some_address(world);
            wire::encode(&Message::PingReq {
                seq,
                target,
                address,
            })
        }
    }

    fn craft_fresh(&mut self, world: &[Known]) -> Vec<u8> {
        let fresh = self.rng.chance(0.5);
        let j = self.author(fresh);
        let addr = self.some_address(world);
        let key = self
            .chains
            .get(j)
            .map(|(author, _, _)| hex::encode(hostile_keys(author).public_key()));
        let e = match self.rng.below(5) {
            0 => self.entry(
                j,
                KIND_JOIN,
                Self::json(&ProfileBody {
                    inc: 1,
                    addr,
                    meta: vec![("overlay-ip".into(), "100.64.0.1".into())],
                    signing_key: key,
                }),
            ),
            1 => self.entry(
                j,
                KIND_ALIVE,
                Self::json(&ProfileBody {
                    inc: u64::MAX,
                    addr,
                    meta: Vec::new(),
                    signing_key: None,
                }),
            ),
            2 => {
                let long = "m".repeat(1_000);
                let inc = self.rng.next_u64();
                self.entry(
                    j,
                    KIND_METADATA,
                    Self::json(&ProfileBody {
                        inc,
                        addr,
                        meta: vec![(long.clone(), long)],
                        signing_key: None,
                    }),
                )
            }
            3 => self.entry(
                j,
                KIND_LEAVE,
                serde_json::json!({ "inc": u64::MAX })
                    .to_string()
                    .into_bytes(),
            ),
            // A kind nobody interprets, with the largest body allowed.
            _ => {
                let body = vec![b'z'; MAX_BODY_LEN];
                self.entry(j, "x-note", body)
            }
        };
        let entries = vec![WireEntry::from(&e)];
        if self.rng.chance(0.5) {
            wire::encode(&Message::Gossip { entries })
        } else {
            wire::encode(&Message::Ping {
                seq: self.rng.next_u64() as u32,
                target: String::new(),
                digest: [0; 8],
                entries,
            })
        }
    }

    fn craft_malformed(&mut self, world: &[Known]) -> Vec<u8> {
        let j = self.author(false);
        let subject = self
            .pick(world)
            .map(|k| k.id.clone())
            .unwrap_or_else(|| "n0".into());
        let profile = Self::json(&ProfileBody {
            inc: 1,
            addr: self.address.clone(),
            meta: Vec::new(),
            signing_key: None,
        });
        let good = self.entry(j, KIND_ALIVE, profile.clone());
        let mut w = WireEntry::from(&good);
        match self.rng.below(10) {
            // Id that is not the hash of the contents.
            0 => w.id = self.hash(),
            // Broken link.
            1 => w.prev = self.hash(),
            // Seq 0, and seq 2^64-1 with a matching id.
            2 => {
                w.seq = 0;
            }
            3 => {
                let e = Entry::new(
                    &w.author,
                    u64::MAX,
                    self.hash(),
                    u64::MAX,
                    KIND_ALIVE,
                    profile,
                );
                w = WireEntry::from(&e);
            }
            // Over-long author, kind, body (ids matching).
            4 => {
                let e = Entry::new(&"a".repeat(300), 1, GENESIS_PREV, 1, KIND_JOIN, profile);
                w = WireEntry::from(&e);
            }
            5 => {
                let e = Entry::new(
                    &w.author,
                    w.seq,
                    w.prev,
                    w.clock,
                    &"k".repeat(200),
                    Vec::new(),
                );
                w = WireEntry::from(&e);
            }
            6 => {
                let body = vec![b'{'; MAX_BODY_LEN + 100];
                let e = Entry::new(&w.author, w.seq, w.prev, w.clock, KIND_ALIVE, body);
                w = WireEntry::from(&e);
            }
            // A known kind whose body is not its JSON.
            7 => {
                let body = self.random_bytes(40);
                let e = Entry::new(&w.author, w.seq, w.prev, w.clock, KIND_CONFIRM_DEAD, body);
                w = WireEntry::from(&e);
            }
            // A claim a node may not make: suspecting itself; a stranger's
            // `alive` about someone else is not a claim at all.
            8 => {
                let body = Self::json(&SuspectBody {
                    subject: w.author.clone(),
                    inc: 1,
                });
                let e = Entry::new(&w.author, w.seq, w.prev, w.clock, KIND_SUSPECT, body);
                w = WireEntry::from(&e);
            }
            // An author id with characters a node id may not have, and an
            // empty one.
            _ => {
                let author = if self.rng.chance(0.5) {
                    format!("{subject} /\u{0}")
                } else {
                    String::new()
                };
                let e = Entry::new(&author, 1, GENESIS_PREV, 1, KIND_JOIN, Vec::new());
                w = WireEntry::from(&e);
            }
        }
        wire::encode(&Message::Gossip { entries: vec![w] })
    }

    fn craft_unsolicited(&mut self, world: &[Known]) -> Vec<u8> {
        let seq = u32::MAX - self.rng.below(2) as u32;
        match self.rng.below(4) {
            0 => {
                let rest = world
                    .iter()
                    .map(|k| (k.id.clone(), u64::MAX))
                    .chain(self.chains.iter().map(|(a, _, _)| (a.clone(), u64::MAX)))
                    .collect();
                wire::encode(&Message::Entries {
                    entries: Vec::new(),
                    rest,
                })
            }
            1 => wire::encode(&Message::Ack {
                seq,
                digest: [0xFF; 8],
                entries: Vec::new(),
            }),
            2 => wire::encode(&Message::IndirectAck { seq }),
            _ => wire::encode(&Message::Nack { seq }),
        }
    }
}

fn gossip(entries: Vec<Entry>) -> Vec<u8> {
    wire::encode(&Message::Gossip {
        entries: entries.iter().map(WireEntry::from).collect(),
    })
}

// ---- the world's side -----------------------------------------------------

use crate::queue::EventKind;
use crate::trace::TraceEvent;
use crate::world::Sim;
use nodeplane_interface::ControlError;

impl Sim {
    /// Adds a hostile node that attacks with `mix` on its own seeded
    /// schedule from now on; returns its index. Its address routes to it
    /// (honest nodes that learn it send it what they send members).
    pub fn add_hostile(&mut self, mix: Vec<Attack>) -> usize {
        let k = self.hostiles.len();
        let rng = self.rng().fork();
        let hostile = Hostile::new(k, rng, mix);
        self.action(format!("add hostile h{k} at {}", hostile.address));
        self.hostile_by_address.insert(hostile.address.clone(), k);
        self.hostiles.push(hostile);
        self.hostile_generation.push(0);
        self.schedule_hostile(k);
        k
    }

    /// The hostile nodes.
    pub fn hostiles(&self) -> &[Hostile] {
        &self.hostiles
    }

    /// Stops every hostile node's own schedule (messages in flight still
    /// arrive); [`Sim::check`] does this before its convergence phase.
    pub fn silence_hostiles(&mut self) {
        for k in 0..self.hostiles.len() {
            self.set_hostile_active(k, false);
        }
    }

    /// Starts (`true`) or stops hostile node `k`'s own schedule.
    pub fn set_hostile_active(&mut self, k: usize, active: bool) {
        let Some(h) = self.hostiles.get_mut(k) else {
            return;
        };
        if h.active == active {
            return;
        }
        h.active = active;
        self.action(format!("hostile h{k} active {active}"));
        if let Some(g) = self.hostile_generation.get_mut(k) {
            *g += 1;
        }
        if active {
            self.schedule_hostile(k);
        }
    }

    fn schedule_hostile(&mut self, k: usize) {
        let Some(h) = self.hostiles.get_mut(k) else {
            return;
        };
        let gap = h.next_gap();
        let generation = self.hostile_generation.get(k).copied().unwrap_or(0);
        self.queue.push(
            self.now + gap,
            EventKind::HostileTick {
                hostile: k,
                generation,
            },
        );
    }

    /// Node `i`'s own head, once every running honest node holds its
    /// first entry.
    fn bound_head(&self, i: usize) -> Option<(u64, Hash)> {
        let id = &self.node(i).id;
        let (first, head) = self.node(i).with_ledger(|l| {
            let own = || l.entries().iter().filter(|e| &e.author == id);
            let first = own().find(|e| e.seq == 1).map(|e| e.id);
            let head = own().max_by_key(|e| e.seq).map(|e| (e.seq, e.id));
            (first, head)
        });
        let first = first?;
        let everywhere = (0..self.len()).filter(|&j| self.is_live(j)).all(|j| {
            self.node(j)
                .with_ledger(|l| l.entries().iter().any(|e| e.id == first))
        });
        everywhere.then_some(head).flatten()
    }

    /// What a hostile node knows of the honest nodes.
    fn known(&self) -> Vec<Known> {
        (0..self.len())
            .map(|i| Known {
                index: i,
                id: self.node(i).id.clone(),
                address: self.node(i).address.clone(),
                incarnation: self.views[i].max_incarnation(i),
                live: self.is_live(i),
                head: self.bound_head(i),
            })
            .collect()
    }

    /// Hostile node `k` crafts one message of `attack` and sends it to
    /// every honest node (the same bytes to each); returns its size.
    pub fn hostile_attack(&mut self, k: usize, attack: Attack) -> usize {
        let world = self.known();
        let Some(h) = self.hostiles.get_mut(k) else {
            return 0;
        };
        let payload = h.craft(attack, &world);
        let len = payload.len();
        self.action(format!(
            "hostile h{k} sends {} ({len} B) to all",
            attack.name()
        ));
        for to in 0..self.len() {
            self.hostile_send(k, to, attack, payload.clone());
        }
        len
    }

    /// Hostile node `k` sends `count` messages of its mix, each to a
    /// random honest node, now (a burst of a fault schedule).
    pub fn hostile_burst(&mut self, k: usize, count: usize) {
        self.action(format!("hostile h{k} burst of {count}"));
        for _ in 0..count {
            self.hostile_one(k);
        }
    }

    /// One message of hostile node `k`'s mix to a random honest node.
    fn hostile_one(&mut self, k: usize) {
        let n = self.len();
        let world = self.known();
        let Some(h) = self.hostiles.get_mut(k) else {
            return;
        };
        if n == 0 {
            return;
        }
        let attack = h.pick_attack();
        let to = h.rng.below(n as u64) as usize;
        let payload = h.craft(attack, &world);
        self.hostile_send(k, to, attack, payload);
    }

    pub(crate) fn hostile_tick(&mut self, k: usize, generation: u64) {
        if self.hostile_generation.get(k) != Some(&generation) {
            return;
        }
        if !self.hostiles.get(k).is_some_and(|h| h.active) {
            return;
        }
        self.hostile_one(k);
        self.schedule_hostile(k);
    }

    /// Queues one hostile message with the network's latency; hostile
    /// links have no loss or faults, and over-size messages are dropped as
    /// the host drops them.
    fn hostile_send(&mut self, k: usize, to: usize, attack: Attack, payload: Vec<u8>) {
        let (min, max) = (
            self.network.config.min_latency_ms,
            self.network.config.max_latency_ms,
        );
        let Some(h) = self.hostiles.get_mut(k) else {
            return;
        };
        let delay = h.rng.range_inclusive(min, max);
        h.stats.sent_messages += 1;
        h.stats.sent_bytes += payload.len() as u64;
        *h.stats.by_attack.entry(attack.name()).or_default() += 1;
        self.network.stats.messages += 1;
        self.network.stats.bytes += payload.len() as u64;
        if payload.len() > crate::network::MAX_MESSAGE_BYTES {
            self.network.stats.dropped += 1;
            return;
        }
        self.queue.push(
            self.now + delay,
            EventKind::HostileDeliver {
                to,
                hostile: k,
                attack,
                payload,
            },
        );
    }

    pub(crate) fn hostile_deliver(
        &mut self,
        to: usize,
        k: usize,
        attack: Attack,
        payload: Vec<u8>,
    ) {
        if !self.nodes[to].is_running() {
            self.network.stats.dropped += 1;
            return;
        }
        self.trace.record(
            self.now,
            TraceEvent::HostileDeliver {
                hostile: k,
                to,
                attack: attack.name(),
                len: payload.len(),
            },
            &payload,
        );
        let source = self
            .hostiles
            .get(k)
            .map(|h| h.address.clone())
            .unwrap_or_default();
        let what = || {
            format!(
                "deliver-message of a hostile {} message from h{k} ({} B, first bytes {})",
                attack.name(),
                payload.len(),
                hex::encode(payload.get(..32).unwrap_or(&payload))
            )
        };
        self.nodes[to].calling = Some(crate::node::Calling::Other(what()));
        let crashes = self.nodes[to].crashes;
        match self.call(to, |node| node.deliver_message(&source, &payload)) {
            // A malformed message earns `bad-message`: provoked on purpose.
            Some(Err(ControlError::BadMessage(_))) => {
                if let Some(h) = self.hostiles.get_mut(k) {
                    h.stats.rejected += 1;
                }
            }
            Some(Err(e)) => self.call_error(to, crashes, &what(), &e),
            _ => {}
        }
    }

    /// An honest node sent `payload` to hostile node `k`'s address.
    pub(crate) fn hostile_receives(&mut self, k: usize, payload: &[u8]) {
        self.network.stats.messages += 1;
        self.network.stats.bytes += payload.len() as u64;
        if let Some(h) = self.hostiles.get_mut(k) {
            h.stats.received_messages += 1;
            h.stats.received_bytes += payload.len() as u64;
            h.capture(payload);
        }
    }

    /// Every hostile node may copy an honest message in flight.
    pub(crate) fn hostiles_sniff(&mut self, payload: &[u8]) {
        for h in &mut self.hostiles {
            if h.sniffs() {
                h.stats.sniffed += 1;
                h.capture(payload);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> Vec<Known> {
        (0..3)
            .map(|i| Known {
                index: i,
                id: format!("n{i}"),
                address: format!("10.0.0.{i}:7946"),
                incarnation: 1,
                live: true,
                head: Some((1, [i as u8; 32])),
            })
            .collect()
    }

    /// Every crafted attack is a message the decoder accepts (so it reaches
    /// the protocol, not only the codec), within the host's size limit, and
    /// the same seed crafts the same bytes.
    #[test]
    fn crafted_messages_decode_and_replay() {
        let crafted = [
            Attack::WantMaxSeq,
            Attack::ForgedDeathMaxInc,
            Attack::SingleAuthorDeath,
            Attack::LoneVerdict,
            Attack::SuspectUnannounced,
            Attack::HugeSync,
            Attack::Probes,
            Attack::FreshEntries,
            Attack::MalformedEntries,
            Attack::Unsolicited,
            Attack::Impersonate,
        ];
        let w = world();
        let mut a = Hostile::new(0, SimRng::new(3), Attack::ALL.to_vec());
        let mut b = Hostile::new(0, SimRng::new(3), Attack::ALL.to_vec());
        for attack in crafted {
            for _ in 0..20 {
                let bytes = a.craft(attack, &w);
                assert_eq!(bytes, b.craft(attack, &w), "{attack:?} does not replay");
                assert!(
                    bytes.len() <= crate::network::MAX_MESSAGE_BYTES,
                    "{attack:?}"
                );
                let msg = wire::decode(&bytes)
                    .unwrap_or_else(|e| panic!("{attack:?} does not decode: {e}"));
                if attack == Attack::HugeSync {
                    let Message::Sync { items } = msg else {
                        panic!("not a sync")
                    };
                    assert_eq!(items.len(), nodeplane_core::config::MAX_SYNC_ITEMS);
                }
            }
        }
    }

    /// The entries of its own fresh authors are well formed: ids match,
    /// each chain links, and the forged verdicts say what they should.
    #[test]
    fn fresh_author_entries_are_well_formed() {
        let w = world();
        let mut h = Hostile::new(1, SimRng::new(9), Attack::ALL.to_vec());
        let mut all = Vec::new();
        for attack in [
            Attack::ForgedDeathMaxInc,
            Attack::SingleAuthorDeath,
            Attack::SuspectUnannounced,
            Attack::FreshEntries,
        ] {
            for _ in 0..10 {
                let (Message::Gossip { entries } | Message::Ping { entries, .. }) =
                    wire::decode(&h.craft(attack, &w)).expect("decodes")
                else {
                    panic!("{attack:?}: no entries");
                };
                for e in entries {
                    let e = Entry::from(e);
                    assert!(e.author.starts_with("x1-"), "{}", e.author);
                    if e.kind == KIND_CONFIRM_DEAD && attack == Attack::ForgedDeathMaxInc {
                        let body: DeadBody = serde_json::from_slice(&e.body).expect("body");
                        assert_eq!(body.inc, u64::MAX);
                        assert!(body.evidence.is_empty());
                    }
                    all.push(e);
                }
            }
        }
        all.sort_by(|a, b| (&a.author, a.seq).cmp(&(&b.author, b.seq)));
        nodeplane_entry::verify_chains(&all).expect("the hostile's own chains verify");
    }

    /// Garbled copies come from captured traffic and differ from it.
    #[test]
    fn garbled_copies_of_captured_traffic() {
        let mut h = Hostile::new(0, SimRng::new(1), vec![Attack::Garbled]);
        let real = wire::encode(&Message::Want {
            heads: vec![("n1".into(), 4)],
        });
        h.capture(&real);
        let out: Vec<Vec<u8>> = (0..50).map(|_| h.craft(Attack::Garbled, &[])).collect();
        assert!(out.iter().any(|o| o == &real), "a replay");
        assert!(out.iter().any(|o| o.len() < real.len()), "a truncation");
        assert!(
            out.iter().any(|o| o != &real && o.len() == real.len()),
            "a flip"
        );
    }
}
