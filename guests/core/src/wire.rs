//! The wire format: one schema-version byte, then a postcard-encoded
//! [`Message`]. Every bound is checked on decode, before anything is used.

use serde::{Deserialize, Serialize};

use crate::config::{
    CUT_HEADS_PER_PAGE, MAX_ENTRIES_PER_MESSAGE, MAX_HEADS, MAX_MESSAGE_BYTES, MAX_NODE_ID_LEN,
    MAX_SYNC_DEPTH, MAX_SYNC_ITEMS, SYNC_FANOUT,
};
use crate::error::Error;
use crate::ledger::Entry;

/// The schema version this code speaks: the first byte of every message.
pub const WIRE_VERSION: u8 = 2;

/// Decoding a sequence whose length the message states: the length is a
/// number from the wire, so it is checked against the field's limit (the
/// one `check_bounds` applies) before anything is allocated for it, and
/// the elements are decoded only up to it. serde's own `Vec` decoding
/// reserves up to 1 MiB for a stated length before the first element
/// fails, and decodes every element before the limit is checked: in a
/// guest, whose heap never shrinks, one crafted message of a few KB grew
/// the node's memory by up to a MiB for good.
mod bounded {
    use std::cell::Cell;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, Error as _, SeqAccess, Visitor};

    use super::{CutHead, Digest8, SyncItem, WireEntry, MAX_HEADS_PER_MESSAGE};
    use crate::config::{
        CUT_HEADS_PER_PAGE, MAX_ENTRIES_PER_MESSAGE, MAX_HEADS, MAX_SYNC_ITEMS, SYNC_FANOUT,
    };

    /// (what, stated length, limit) of a refused sequence.
    pub(super) type Refusal = (&'static str, usize, usize);

    thread_local! {
        /// The last sequence refused, for the error [`super::decode`]
        /// reports (postcard drops the text of a custom error).
        static REFUSED: Cell<Option<Refusal>> = const { Cell::new(None) };
        /// Bytes of the message being decoded: no sequence in it can hold
        /// more elements than these bytes can encode.
        static MESSAGE_BYTES: Cell<usize> = const { Cell::new(0) };
        /// Heads decoded so far in the message, over all its head lists
        /// (a `sync` carries one per leaf): at most
        /// [`super::MAX_HEADS_PER_MESSAGE`].
        static HEADS_DECODED: Cell<usize> = const { Cell::new(0) };
    }

    /// Smallest encoding of a [`WireEntry`]: empty author, kind and body,
    /// one-byte varints, `prev` and `id` (32 bytes each) and the signature
    /// (64).
    pub(super) const MIN_ENTRY_BYTES: usize = 133;
    /// Smallest encoding of a [`SyncItem`]: its variant and two empty
    /// lists.
    pub(super) const MIN_ITEM_BYTES: usize = 3;
    /// Smallest encoding of a head: an empty id and a one-byte seq.
    pub(super) const MIN_HEAD_BYTES: usize = 2;
    /// Encoding of a digest (8 bytes, no length).
    pub(super) const DIGEST_BYTES: usize = 8;
    /// Smallest encoding of a cut head: an empty author, a one-byte seq
    /// and the 32-byte id.
    pub(super) const MIN_CUT_HEAD_BYTES: usize = 34;

    /// A message's entries: at most [`MAX_ENTRIES_PER_MESSAGE`].
    pub(super) fn entries<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<WireEntry>, D::Error> {
        vec::<MAX_ENTRIES_PER_MESSAGE, _, _>(d, "entries", MIN_ENTRY_BYTES, None)
    }

    /// A `sync`'s items: at most [`MAX_SYNC_ITEMS`].
    pub(super) fn items<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SyncItem>, D::Error> {
        vec::<MAX_SYNC_ITEMS, _, _>(d, "sync items", MIN_ITEM_BYTES, None)
    }

    /// Heads (of a `want`, a leaf or a `rest`): at most [`MAX_HEADS`] in
    /// the list, and at most [`MAX_HEADS_PER_MESSAGE`] in all the
    /// message's lists together.
    pub(super) fn heads<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, u64)>, D::Error> {
        vec::<MAX_HEADS, _, _>(d, "heads", MIN_HEAD_BYTES, Some(&HEADS_DECODED))
    }

    /// A `cut-heads` page: at most [`CUT_HEADS_PER_PAGE`] heads, counted
    /// with the message's other heads against [`MAX_HEADS_PER_MESSAGE`].
    pub(super) fn cut_heads<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<CutHead>, D::Error> {
        vec::<CUT_HEADS_PER_PAGE, _, _>(d, "cut heads", MIN_CUT_HEAD_BYTES, Some(&HEADS_DECODED))
    }

    /// A sync node's digests: at most [`SYNC_FANOUT`] (exactly that many
    /// is checked after decoding).
    pub(super) fn digests<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Digest8>, D::Error> {
        vec::<SYNC_FANOUT, _, _>(d, "digests", DIGEST_BYTES, None)
    }

    /// Starts the decode of a message of `bytes` bytes: forgets the last
    /// refusal and the heads counted.
    pub(super) fn start(bytes: usize) {
        REFUSED.with(|r| r.set(None));
        MESSAGE_BYTES.with(|b| b.set(bytes));
        HEADS_DECODED.with(|h| h.set(0));
    }

    /// The refusal of this decode, if a sequence was longer than its limit.
    pub(super) fn refused() -> Option<Refusal> {
        REFUSED.with(Cell::get)
    }

    /// A `Vec` of at most `LIMIT` elements, `what` naming them, each
    /// taking at least `min_bytes` on the wire; with `per_message`, also
    /// counted against [`MAX_HEADS_PER_MESSAGE`] over the whole message.
    fn vec<'de, const LIMIT: usize, D, T>(
        d: D,
        what: &'static str,
        min_bytes: usize,
        per_message: Option<&'static PerMessage>,
    ) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        d.deserialize_seq(BoundedVec::<LIMIT, T> {
            what,
            min_bytes,
            per_message,
            element: PhantomData,
        })
    }

    /// A count kept over one message's decode.
    type PerMessage = std::thread::LocalKey<Cell<usize>>;

    /// What refusing a sequence at `count` elements records: the list's
    /// own limit when it is the one passed, else the message's.
    fn refuse(what: &'static str, count: usize, limit: usize, message_count: usize) {
        let refusal = if count > limit {
            (what, count, limit)
        } else {
            ("heads in one message", message_count, MAX_HEADS_PER_MESSAGE)
        };
        REFUSED.with(|r| r.set(Some(refusal)));
    }

    /// The elements to reserve room for: those stated, at most what the
    /// message's bytes can hold at `min_bytes` each.
    pub(super) fn room(stated: usize, min_bytes: usize) -> usize {
        let fits = MESSAGE_BYTES
            .with(Cell::get)
            .checked_div(min_bytes)
            .unwrap_or(0);
        stated.min(fits)
    }

    struct BoundedVec<const LIMIT: usize, T> {
        what: &'static str,
        min_bytes: usize,
        per_message: Option<&'static PerMessage>,
        element: PhantomData<T>,
    }

    impl<'de, const LIMIT: usize, T: Deserialize<'de>> Visitor<'de> for BoundedVec<LIMIT, T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a sequence of at most {LIMIT} elements")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let stated = seq.size_hint().unwrap_or(0);
            // Elements of this kind decoded earlier in the message, and
            // how many more it may hold.
            let before = self.per_message.map_or(0, |c| c.with(Cell::get));
            let limit = match self.per_message {
                Some(_) => LIMIT.min(MAX_HEADS_PER_MESSAGE.saturating_sub(before)),
                None => LIMIT,
            };
            if stated > limit {
                refuse(self.what, stated, LIMIT, before.saturating_add(stated));
                return Err(A::Error::custom("sequence longer than its limit"));
            }
            // Room for what the message's bytes can hold, not for what it
            // states: a short message stating many entries reserves little.
            // (An honest message states what it holds, so its room is the
            // same as without the cap.)
            let mut out = Vec::with_capacity(room(stated, self.min_bytes));
            while let Some(element) = seq.next_element()? {
                if out.len() >= limit {
                    let seen = out.len().saturating_add(1);
                    refuse(self.what, seen, LIMIT, before.saturating_add(seen));
                    return Err(A::Error::custom("sequence longer than its limit"));
                }
                out.push(element);
            }
            if let Some(count) = self.per_message {
                count.with(|c| c.set(before.saturating_add(out.len())));
            }
            Ok(out)
        }
    }
}

/// Most heads in one message, over all its head lists: a `sync` carries
/// one list per leaf, and without this bound a 60 KB `sync` of leaves of
/// [`MAX_HEADS`] one-byte heads each decoded about 30 000 heads (a MiB or
/// more of a guest's heap, which never shrinks) before anything refused
/// it. An honest `sync` carries at most [`crate::config::SYNC_ITEMS_PER_MESSAGE`]
/// leaves of [`crate::config::SYNC_LEAF_AUTHORS`] heads (a deeper leaf
/// only for authors colliding on all 64 bits of their key); `want` and
/// `rest` have one list, already bounded by [`MAX_HEADS`].
pub const MAX_HEADS_PER_MESSAGE: usize = MAX_HEADS;

/// The short frontier digest carried in pings and acks.
pub type Digest8 = [u8; 8];

/// One author's head in a checkpoint proposal's cut: (author, head seq,
/// head id), as the cut digest (`frontier_digest`) hashes it.
pub type CutHead = (String, u64, [u8; 32]);

/// A ledger entry on the wire (hashes as raw 32 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    /// Author.
    pub author: String,
    /// Sequence number.
    pub seq: u64,
    /// Previous entry id.
    pub prev: [u8; 32],
    /// Lamport clock.
    pub clock: u64,
    /// Kind.
    pub kind: String,
    /// Body.
    pub body: Vec<u8>,
    /// Entry id, checked by the receiver.
    pub id: [u8; 32],
    /// The author's signature: exactly 64 bytes on the wire (no length).
    pub signature: WireSignature,
}

/// A 64-byte Ed25519 signature as two fixed halves (serde's arrays stop at
/// 32), so it costs exactly 64 bytes on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireSignature(pub [u8; 32], pub [u8; 32]);

impl WireSignature {
    /// The halves of a signature; all zero (never valid) when `bytes` is
    /// not 64 bytes long (an unsigned entry is never sent by this crate).
    fn from_bytes(bytes: &[u8]) -> WireSignature {
        let half = |range: std::ops::Range<usize>| {
            bytes
                .get(range)
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
                .unwrap_or([0; 32])
        };
        WireSignature(half(0..32), half(32..64))
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&self.0);
        out.extend_from_slice(&self.1);
        out
    }
}

impl From<&Entry> for WireEntry {
    fn from(e: &Entry) -> Self {
        WireEntry {
            author: e.author.clone(),
            seq: e.seq,
            prev: e.prev,
            clock: e.clock,
            kind: e.kind.clone(),
            body: e.body.clone(),
            id: e.id,
            signature: WireSignature::from_bytes(&e.signature),
        }
    }
}

impl From<Entry> for WireEntry {
    /// As from `&Entry`, moving the strings and the body.
    fn from(e: Entry) -> Self {
        WireEntry {
            signature: WireSignature::from_bytes(&e.signature),
            author: e.author,
            seq: e.seq,
            prev: e.prev,
            clock: e.clock,
            kind: e.kind,
            body: e.body,
            id: e.id,
        }
    }
}

impl From<WireEntry> for Entry {
    fn from(w: WireEntry) -> Self {
        Entry {
            author: w.author,
            seq: w.seq,
            prev: w.prev,
            clock: w.clock,
            kind: w.kind,
            body: w.body,
            id: w.id,
            signature: w.signature.to_vec(),
        }
    }
}

/// Approximate encoded size of an entry, for byte budgets.
pub fn entry_wire_size(e: &Entry) -> usize {
    [e.author.len(), e.kind.len(), e.body.len(), 64 + 64 + 20]
        .iter()
        .fold(0usize, |acc, n| acc.saturating_add(*n))
}

/// One node of the reconciliation tree over authors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncItem {
    /// The sender's digests of the 16 children of bucket `path`.
    Node {
        /// Bucket path: one nibble (0..16) of the author key per level.
        path: Vec<u8>,
        /// 16 child digests.
        #[serde(deserialize_with = "bounded::digests")]
        digests: Vec<Digest8>,
    },
    /// The sender's (author, head seq) of every author in bucket `path`.
    Leaf {
        /// Bucket path.
        path: Vec<u8>,
        /// Heads.
        #[serde(deserialize_with = "bounded::heads")]
        heads: Vec<(String, u64)>,
    },
}

/// Every message of the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A probe of `target` (empty: whoever listens), with the sender's
    /// frontier digest and piggybacked fresh entries.
    Ping {
        /// Probe sequence number, echoed in the ack.
        seq: u32,
        /// Node id the probe is for.
        target: String,
        /// Sender's frontier digest.
        digest: Digest8,
        /// Piggybacked entries.
        #[serde(deserialize_with = "bounded::entries")]
        entries: Vec<WireEntry>,
    },
    /// Answer to a ping.
    Ack {
        /// The ping's sequence number.
        seq: u32,
        /// Sender's frontier digest.
        digest: Digest8,
        /// Piggybacked entries.
        #[serde(deserialize_with = "bounded::entries")]
        entries: Vec<WireEntry>,
    },
    /// Ask the receiver to probe `target` at `address` on the sender's behalf.
    PingReq {
        /// Sender's probe sequence number.
        seq: u32,
        /// Node id to probe.
        target: String,
        /// Its address.
        address: String,
    },
    /// The target of a ping-req answered.
    IndirectAck {
        /// The requester's sequence number.
        seq: u32,
    },
    /// The target of a ping-req did not answer in time (the requester
    /// itself is reachable: Lifeguard's nack).
    Nack {
        /// The requester's sequence number.
        seq: u32,
    },
    /// A push of fresh entries.
    Gossip {
        /// Entries.
        #[serde(deserialize_with = "bounded::entries")]
        entries: Vec<WireEntry>,
    },
    /// A step of reconciliation.
    Sync {
        /// Buckets compared in this step.
        #[serde(deserialize_with = "bounded::items")]
        items: Vec<SyncItem>,
    },
    /// Ask for every entry of `author` after `seq`.
    Want {
        /// (author, seq held).
        #[serde(deserialize_with = "bounded::heads")]
        heads: Vec<(String, u64)>,
    },
    /// Entries answering a want or a leaf.
    Entries {
        /// Entries, in chain order per author.
        #[serde(deserialize_with = "bounded::entries")]
        entries: Vec<WireEntry>,
        /// (author, seq) still owed when the answer did not fit: the
        /// receiver asks for them with its next want.
        #[serde(deserialize_with = "bounded::heads")]
        rest: Vec<(String, u64)>,
    },
    /// Ask for page `page` of the cut of the proposal of checkpoint `n`,
    /// round `round`, whose cut digest is `cut` (docs/design.md §13.9, the
    /// cut sync). Added in wire version 2: an older node refuses it as
    /// undecodable (`bad-message`) and the asker moves on to another peer.
    CutGet {
        /// Checkpoint number.
        n: u64,
        /// Round.
        round: u32,
        /// The proposal's cut digest (`frontier_digest` of its heads).
        cut: [u8; 32],
        /// Page wanted, from 0.
        page: u32,
    },
    /// A page of a proposal's cut: the heads `page × CUT_HEADS_PER_PAGE`
    /// on, sorted by author, of `total` in all; `total` 0 (and no heads):
    /// the sender holds no such proposal.
    CutHeads {
        /// The proposal's cut digest, as asked.
        cut: [u8; 32],
        /// This page's number.
        page: u32,
        /// Heads in the whole cut.
        total: u32,
        /// The page's heads, at most [`CUT_HEADS_PER_PAGE`].
        #[serde(deserialize_with = "bounded::cut_heads")]
        heads: Vec<CutHead>,
    },
}

impl Message {
    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Ping { .. } => "ping",
            Message::Ack { .. } => "ack",
            Message::PingReq { .. } => "ping-req",
            Message::IndirectAck { .. } => "indirect-ack",
            Message::Nack { .. } => "nack",
            Message::Gossip { .. } => "gossip",
            Message::Sync { .. } => "sync",
            Message::Want { .. } => "want",
            Message::Entries { .. } => "entries",
            Message::CutGet { .. } => "cut-get",
            Message::CutHeads { .. } => "cut-heads",
        }
    }
}

/// Encodes a message: version byte, then postcard.
pub fn encode(msg: &Message) -> Vec<u8> {
    // postcard fails only on a full fixed buffer, a sequence of unknown
    // length or a custom serialiser's error; the derived serialisers of
    // these types into a growable Vec have none of them, whatever the
    // values (messages are built by this node, not decoded input).
    #[allow(clippy::expect_used)]
    postcard::to_extend(msg, vec![WIRE_VERSION]).expect("postcard encodes into a Vec")
}

/// Room kept before an [`EntriesBuf`]'s entries for the message's head:
/// the version byte, the variant index and the entry count (a varint of
/// at most 10 bytes).
const ENTRIES_HEAD_ROOM: usize = 12;

/// An `entries` message encoded as its entries are added: each entry is
/// written into the message at once, so a batch is held as the bytes that
/// will be sent, never as decoded entries besides. [`EntriesBuf::finish`]
/// gives exactly the bytes [`encode`] gives for the same `Message::Entries`.
#[derive(Debug)]
pub(crate) struct EntriesBuf {
    /// [`ENTRIES_HEAD_ROOM`] bytes of room, then the encoded entries.
    bytes: Vec<u8>,
    /// Entries written.
    count: usize,
}

/// The first capacity of an [`EntriesBuf`]: doubling from it ends at
/// 64 KiB, the first power of two above [`MAX_MESSAGE_BYTES`] (doubling
/// from the head room, 12 bytes, would end at 96 KiB for a full batch).
const ENTRIES_FIRST_CAPACITY: usize = 4_096;

impl Default for EntriesBuf {
    fn default() -> EntriesBuf {
        let mut bytes = Vec::with_capacity(ENTRIES_FIRST_CAPACITY);
        bytes.resize(ENTRIES_HEAD_ROOM, 0);
        EntriesBuf { bytes, count: 0 }
    }
}

impl EntriesBuf {
    /// Entries written so far.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Whether no entry was written.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the buffer holds room for.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Encoded bytes of the entries written so far.
    pub(crate) fn entry_bytes(&self) -> usize {
        self.bytes.len().saturating_sub(ENTRIES_HEAD_ROOM)
    }

    /// Writes `e` as the next entry.
    pub(crate) fn push(&mut self, e: &WireEntry) {
        put_entry(&mut self.bytes, e);
        self.count = self.count.saturating_add(1);
    }

    /// The encoded message carrying the entries written and `rest`.
    pub(crate) fn finish(self, rest: &[(String, u64)]) -> Vec<u8> {
        let EntriesBuf { mut bytes, count } = self;
        // The version byte and the variant index, as `encode` writes them
        // (an empty `entries` is those two and two zero lengths).
        let empty = encode(&Message::Entries {
            entries: Vec::new(),
            rest: Vec::new(),
        });
        let mut head: Vec<u8> = empty
            .get(..empty.len().saturating_sub(2))
            .unwrap_or_default()
            .to_vec();
        put_varint(&mut head, count as u64);
        // The head fits its room (2 + at most 10 bytes): right-align it
        // there and drop the unused front (a move, no new buffer).
        let start = ENTRIES_HEAD_ROOM.saturating_sub(head.len());
        match bytes.get_mut(start..ENTRIES_HEAD_ROOM) {
            Some(room) if room.len() == head.len() => {
                room.copy_from_slice(&head);
                bytes.drain(..start);
            }
            _ => {
                // Unreachable (the head is at most 12 bytes); kept exact.
                head.extend_from_slice(bytes.get(ENTRIES_HEAD_ROOM..).unwrap_or_default());
                bytes = head;
            }
        }
        #[allow(clippy::expect_used)]
        postcard::to_extend(rest, bytes).expect("postcard encodes into a Vec")
    }
}

/// Appends `e` exactly as postcard encodes it (`postcard::to_extend`),
/// written field by field: postcard writes each byte of the 32-byte ids
/// and of the signature through its serialiser one at a time, and every
/// entry a node ships in answer to a `want` or a leaf is encoded here
/// (docs/performance.md, "Simulator speed"). Strings and the body are a
/// length varint and their bytes; `seq` and `clock` varints; the arrays
/// their bytes, no length.
fn put_entry(out: &mut Vec<u8>, e: &WireEntry) {
    let WireEntry {
        author,
        seq,
        prev,
        clock,
        kind,
        body,
        id,
        signature: WireSignature(first, second),
    } = e;
    put_varint(out, author.len() as u64);
    out.extend_from_slice(author.as_bytes());
    put_varint(out, *seq);
    out.extend_from_slice(prev);
    put_varint(out, *clock);
    put_varint(out, kind.len() as u64);
    out.extend_from_slice(kind.as_bytes());
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
    out.extend_from_slice(id);
    out.extend_from_slice(first);
    out.extend_from_slice(second);
}

/// Appends `n` as postcard writes a length or an unsigned number: LEB128,
/// seven bits a byte, low bits first.
fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let low = u8::try_from(n & 0x7f).unwrap_or(0);
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn bad(why: String) -> Error {
    Error::BadMessage(why)
}

/// Decodes and bounds-checks a message.
pub fn decode(bytes: &[u8]) -> Result<Message, Error> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(bad(format!(
            "message of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES}",
            bytes.len()
        )));
    }
    let Some((&version, rest)) = bytes.split_first() else {
        return Err(bad("empty message".into()));
    };
    if version != WIRE_VERSION {
        return Err(bad(format!(
            "unknown schema version {version} (this node speaks {WIRE_VERSION})"
        )));
    }
    bounded::start(bytes.len());
    let (msg, tail): (Message, &[u8]) =
        postcard::take_from_bytes(rest).map_err(|e| match bounded::refused() {
            Some((what, stated, limit)) => bad(format!(
                "malformed message: {stated} {what} or more, limit {limit}"
            )),
            None => bad(format!("malformed message: {e}")),
        })?;
    if !tail.is_empty() {
        return Err(bad(format!(
            "{} trailing bytes after a {} message",
            tail.len(),
            msg.name()
        )));
    }
    check_bounds(&msg)?;
    Ok(msg)
}

fn check_entries(name: &str, entries: &[WireEntry]) -> Result<(), Error> {
    if entries.len() > MAX_ENTRIES_PER_MESSAGE {
        return Err(bad(format!(
            "{name} carries {} entries, limit {MAX_ENTRIES_PER_MESSAGE}",
            entries.len()
        )));
    }
    Ok(())
}

fn check_heads(name: &str, heads: &[(String, u64)]) -> Result<(), Error> {
    if heads.len() > MAX_HEADS {
        return Err(bad(format!(
            "{name} carries {} heads, limit {MAX_HEADS}",
            heads.len()
        )));
    }
    if let Some((a, _)) = heads
        .iter()
        .find(|(a, _)| a.is_empty() || a.len() > MAX_NODE_ID_LEN)
    {
        return Err(bad(format!("{name} names an author of {} bytes", a.len())));
    }
    Ok(())
}

fn check_path(path: &[u8]) -> Result<(), Error> {
    if path.len() > MAX_SYNC_DEPTH || path.iter().any(|&n| n as usize >= SYNC_FANOUT) {
        return Err(bad(format!(
            "sync path {path:?} is not a list of at most {MAX_SYNC_DEPTH} nibbles"
        )));
    }
    Ok(())
}

fn check_bounds(msg: &Message) -> Result<(), Error> {
    match msg {
        Message::Ping {
            target, entries, ..
        } => {
            if target.len() > MAX_NODE_ID_LEN {
                return Err(bad(format!("ping target of {} bytes", target.len())));
            }
            check_entries("ping", entries)
        }
        Message::Ack { entries, .. } => check_entries("ack", entries),
        Message::PingReq {
            target, address, ..
        } => {
            if target.is_empty()
                || target.len() > MAX_NODE_ID_LEN
                || !crate::config::is_valid_address(address)
            {
                return Err(bad(format!(
                    "ping-req for {target:?} at {address:?} is not a valid node and address"
                )));
            }
            Ok(())
        }
        Message::IndirectAck { .. } | Message::Nack { .. } => Ok(()),
        Message::Gossip { entries } => check_entries("gossip", entries),
        Message::Entries { entries, rest } => {
            check_entries("entries", entries)?;
            check_heads("entries rest", rest)
        }
        Message::Want { heads } => check_heads("want", heads),
        Message::CutGet { .. } => Ok(()),
        Message::CutHeads { total, heads, .. } => {
            if heads.len() > CUT_HEADS_PER_PAGE {
                return Err(bad(format!(
                    "cut-heads carries {} heads, limit {CUT_HEADS_PER_PAGE}",
                    heads.len()
                )));
            }
            if u64::try_from(heads.len()).unwrap_or(u64::MAX) > u64::from(*total) {
                return Err(bad(format!(
                    "cut-heads carries {} heads of {total} in all",
                    heads.len()
                )));
            }
            if let Some((a, _, _)) = heads
                .iter()
                .find(|(a, _, _)| a.is_empty() || a.len() > MAX_NODE_ID_LEN)
            {
                return Err(bad(format!(
                    "cut-heads names an author of {} bytes",
                    a.len()
                )));
            }
            Ok(())
        }
        Message::Sync { items } => {
            if items.len() > MAX_SYNC_ITEMS {
                return Err(bad(format!(
                    "sync carries {} items, limit {MAX_SYNC_ITEMS}",
                    items.len()
                )));
            }
            let heads: usize = items
                .iter()
                .map(|item| match item {
                    SyncItem::Leaf { heads, .. } => heads.len(),
                    SyncItem::Node { .. } => 0,
                })
                .fold(0, usize::saturating_add);
            if heads > MAX_HEADS_PER_MESSAGE {
                return Err(bad(format!(
                    "sync carries {heads} heads in all, limit {MAX_HEADS_PER_MESSAGE}"
                )));
            }
            for item in items {
                match item {
                    SyncItem::Node { path, digests } => {
                        check_path(path)?;
                        if digests.len() != SYNC_FANOUT {
                            return Err(bad(format!(
                                "sync node carries {} digests, expected {SYNC_FANOUT}",
                                digests.len()
                            )));
                        }
                    }
                    SyncItem::Leaf { path, heads } => {
                        check_path(path)?;
                        check_heads("sync leaf", heads)?;
                    }
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of `variant` whose first field is a sequence stating
    /// `stated` elements, followed by `body`.
    fn stating(variant: u8, stated: u64, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![WIRE_VERSION, variant];
        put_varint(&mut bytes, stated);
        bytes.extend_from_slice(body);
        bytes
    }

    /// `put_entry` writes postcard's bytes for entries whose lengths and
    /// numbers cross every varint width (one to ten bytes), and what it
    /// writes decodes back; every truncation of it is refused.
    #[test]
    fn put_entry_writes_exactly_postcards_bytes() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let numbers = [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ];
        for (i, &n) in numbers.iter().enumerate() {
            let fill = |len: usize, next: &mut dyn FnMut() -> u64| -> Vec<u8> {
                (0..len).map(|_| (next() % 251) as u8).collect()
            };
            let text = |len: usize| "é".repeat(len / 2);
            let e = WireEntry {
                author: text(i * 40),
                seq: n,
                prev: <[u8; 32]>::try_from(fill(32, &mut next)).unwrap(),
                clock: numbers[numbers.len() - 1 - i],
                kind: text(i * 20),
                body: fill([0, 5, 127, 128, 300, 4_096, 16_384, 1][i], &mut next),
                id: <[u8; 32]>::try_from(fill(32, &mut next)).unwrap(),
                signature: WireSignature(
                    <[u8; 32]>::try_from(fill(32, &mut next)).unwrap(),
                    <[u8; 32]>::try_from(fill(32, &mut next)).unwrap(),
                ),
            };
            let mut ours = vec![0xaa];
            put_entry(&mut ours, &e);
            let theirs = postcard::to_extend(&e, vec![0xaa]).unwrap();
            assert_eq!(ours, theirs, "entry {i}");
            let (back, rest): (WireEntry, &[u8]) = postcard::take_from_bytes(&ours[1..]).unwrap();
            assert_eq!((back, rest.len()), (e, 0));
            for cut in 1..ours.len() {
                assert!(
                    postcard::take_from_bytes::<WireEntry>(&ours[1..cut]).is_err(),
                    "entry {i} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn room_is_reserved_for_what_the_message_can_hold_not_what_it_states() {
        // The smallest encodings the caps assume are the real ones.
        let smallest = WireEntry {
            author: String::new(),
            seq: 0,
            prev: [0; 32],
            clock: 0,
            kind: String::new(),
            body: Vec::new(),
            id: [0; 32],
            signature: WireSignature([0; 32], [0; 32]),
        };
        let size = |v: &dyn erased::Size| v.size();
        assert_eq!(size(&smallest), bounded::MIN_ENTRY_BYTES);
        let leaf = SyncItem::Leaf {
            path: Vec::new(),
            heads: Vec::new(),
        };
        assert_eq!(size(&leaf), bounded::MIN_ITEM_BYTES);
        assert_eq!(size(&(String::new(), 0u64)), bounded::MIN_HEAD_BYTES);
        assert_eq!(size(&[0u8; 8]), bounded::DIGEST_BYTES);
        // A 1 100-byte message stating 1 024 entries reserves room for 8,
        // not 1 024 (about 180 KB in a guest); a full one for what it
        // states.
        bounded::start(1_100);
        assert_eq!(bounded::room(1_024, bounded::MIN_ENTRY_BYTES), 8);
        bounded::start(MAX_MESSAGE_BYTES);
        assert_eq!(bounded::room(300, bounded::MIN_ENTRY_BYTES), 300);
    }

    /// Encoded sizes of differently typed values.
    mod erased {
        pub(super) trait Size {
            fn size(&self) -> usize;
        }
        impl<T: serde::Serialize> Size for T {
            fn size(&self) -> usize {
                postcard::to_allocvec(self).map(|v| v.len()).unwrap_or(0)
            }
        }
    }

    #[test]
    fn a_stated_length_past_the_limit_is_refused_before_its_elements() {
        // `entries` (variant 8) stating 50 000 entries, with as many bytes
        // behind: serde's own decoding reserved 1 MiB for them first.
        let msg = stating(8, 50_000, &[0; 50_000]);
        match decode(&msg) {
            Err(Error::BadMessage(why)) => {
                assert!(why.contains("50000 entries or more, limit 1024"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // `want` (variant 7) with one well-formed head more than allowed:
        // refused at the first head past the limit.
        let head = [1, b'b', 0];
        let msg = stating(7, (MAX_HEADS + 1) as u64, &head.repeat(MAX_HEADS + 1));
        match decode(&msg) {
            Err(Error::BadMessage(why)) => {
                assert!(why.contains("2049 heads or more, limit 2048"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // At the limit it decodes.
        let msg = stating(7, MAX_HEADS as u64, &head.repeat(MAX_HEADS));
        assert!(matches!(decode(&msg), Ok(Message::Want { heads }) if heads.len() == MAX_HEADS));
        // A stated length beyond the bytes left is a plain malformed
        // message (nothing reserved either way), and a later decode does
        // not report an earlier refusal.
        match decode(&stating(5, 1_000, &[0; 4])) {
            Err(Error::BadMessage(why)) => assert!(!why.contains("limit"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_heads_of_all_a_syncs_leaves_count_against_one_limit() {
        // (path, heads) of a leaf of `n` one-byte-author heads.
        let leaf = |n: usize| SyncItem::Leaf {
            path: vec![3],
            heads: (0..n).map(|i| ("a".to_string(), i as u64 % 100)).collect(),
        };
        let sync = |leaves: &[usize]| Message::Sync {
            items: leaves.iter().map(|&n| leaf(n)).collect(),
        };
        // Each leaf within its own limit, the message at the total: kept.
        let at = sync(&[1_000, 1_000, 48]);
        assert_eq!(decode(&encode(&at)).ok(), Some(at));
        // One head more, in any leaf: refused while decoding, at the head
        // past the message's limit.
        for leaves in [[1_000, 1_000, 49], [1_500, 500, 49], [49, 1_000, 1_000]] {
            match decode(&encode(&sync(&leaves))) {
                Err(Error::BadMessage(why)) => assert!(
                    why.contains("heads in one message or more, limit 2048"),
                    "{why}"
                ),
                other => panic!("{other:?}"),
            }
        }
        // 14 leaves of 2 048 two-byte heads (an empty author, seq 0: the
        // smallest head) fit one message: refused at the second leaf,
        // where before every leaf was decoded in full (28 672 heads).
        let smallest = SyncItem::Leaf {
            path: vec![],
            heads: vec![(String::new(), 0); MAX_HEADS],
        };
        let bytes = encode(&Message::Sync {
            items: vec![smallest; 14],
        });
        assert!(bytes.len() <= MAX_MESSAGE_BYTES, "{}", bytes.len());
        match decode(&bytes) {
            Err(Error::BadMessage(why)) => {
                assert!(why.contains("4096 heads in one message or more"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // A leaf stating more than the message has left is refused as
        // stated.
        let two = encode(&sync(&[2_000, 2_000]));
        match decode(&two) {
            Err(Error::BadMessage(why)) => {
                assert!(why.contains("4000 heads in one message or more"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        // Every receiver checks it on a decoded message too.
        match check_bounds(&sync(&[1_500, 1_500])) {
            Err(Error::BadMessage(why)) => {
                assert!(
                    why.contains("sync carries 3000 heads in all, limit 2048"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        // `want` and `rest` are one list each: their limit is unchanged.
        let want = Message::Want {
            heads: (0..MAX_HEADS)
                .map(|i| ("b".to_string(), i as u64))
                .collect(),
        };
        assert_eq!(decode(&encode(&want)).ok(), Some(want));
    }

    use proptest::prelude::*;

    /// Strings of every length class a hostile sender may pick: empty,
    /// short, non-ASCII, just under and over a one-byte varint length,
    /// long.
    fn text() -> BoxedStrategy<String> {
        prop_oneof![
            Just(String::new()),
            "[a-z0-9]{1,8}",
            "\\PC{0,20}",
            "x{126,130}",
            "y{300,700}",
        ]
        .boxed()
    }

    /// 0, 1, the varint steps, the last values, or anything.
    fn num() -> BoxedStrategy<u64> {
        prop_oneof![
            Just(0u64),
            Just(127),
            Just(128),
            Just(16_383),
            Just(16_384),
            Just(u64::MAX - 1),
            Just(u64::MAX),
            any::<u64>(),
        ]
        .boxed()
    }

    fn wire_entry() -> BoxedStrategy<WireEntry> {
        let body = prop_oneof![
            Just(Vec::new()),
            prop::collection::vec(any::<u8>(), 0..200),
            prop::collection::vec(any::<u8>(), 16_380..16_390),
        ];
        (
            text(),
            num(),
            any::<[u8; 32]>(),
            num(),
            text(),
            body,
            any::<[u8; 32]>(),
            any::<([u8; 32], [u8; 32])>(),
        )
            .prop_map(
                |(author, seq, prev, clock, kind, body, id, (s0, s1))| WireEntry {
                    author,
                    seq,
                    prev,
                    clock,
                    kind,
                    body,
                    id,
                    signature: WireSignature(s0, s1),
                },
            )
            .boxed()
    }

    /// A few extreme entries, or up to 300 small ones (entry counts past
    /// the one- and two-byte varint steps).
    fn entry_lists() -> BoxedStrategy<Vec<WireEntry>> {
        prop_oneof![
            prop::collection::vec(wire_entry(), 0..6),
            (0usize..300, any::<u8>()).prop_map(|(n, b)| {
                (0..n)
                    .map(|i| WireEntry {
                        author: format!("n{i}"),
                        seq: i as u64,
                        prev: [b; 32],
                        clock: u64::MAX,
                        kind: "k".into(),
                        body: vec![b; i % 3],
                        id: [b; 32],
                        signature: WireSignature([b; 32], [0; 32]),
                    })
                    .collect()
            }),
        ]
        .boxed()
    }

    fn rests() -> BoxedStrategy<Vec<(String, u64)>> {
        prop_oneof![
            prop::collection::vec((text(), num()), 0..8),
            (0usize..300).prop_map(|n| (0..n).map(|i| (format!("r{i}"), i as u64)).collect()),
        ]
        .boxed()
    }

    /// Whether `msg` is within every limit `decode` checks, written out
    /// here rather than calling `check_bounds` (so a limit tightened
    /// there by mistake is caught).
    fn within_limits(msg: &Message, bytes: &[u8]) -> bool {
        let heads_ok = |heads: &[(String, u64)]| {
            heads.len() <= MAX_HEADS
                && heads
                    .iter()
                    .all(|(a, _)| !a.is_empty() && a.len() <= MAX_NODE_ID_LEN)
        };
        let path_ok =
            |p: &[u8]| p.len() <= MAX_SYNC_DEPTH && p.iter().all(|&n| usize::from(n) < SYNC_FANOUT);
        let entries_ok = |e: &[WireEntry]| e.len() <= MAX_ENTRIES_PER_MESSAGE;
        bytes.len() <= MAX_MESSAGE_BYTES
            && match msg {
                Message::Ping {
                    target, entries, ..
                } => target.len() <= MAX_NODE_ID_LEN && entries_ok(entries),
                Message::Ack { entries, .. } | Message::Gossip { entries } => entries_ok(entries),
                Message::Entries { entries, rest } => entries_ok(entries) && heads_ok(rest),
                Message::Want { heads } => heads_ok(heads),
                Message::Sync { items } => {
                    let all_heads: usize = items
                        .iter()
                        .map(|i| match i {
                            SyncItem::Leaf { heads, .. } => heads.len(),
                            SyncItem::Node { .. } => 0,
                        })
                        .sum();
                    items.len() <= MAX_SYNC_ITEMS
                        && all_heads <= 2_048
                        && items.iter().all(|i| match i {
                            SyncItem::Node { path, digests } => {
                                path_ok(path) && digests.len() == SYNC_FANOUT
                            }
                            SyncItem::Leaf { path, heads } => path_ok(path) && heads_ok(heads),
                        })
                }
                Message::CutHeads { total, heads, .. } => {
                    heads.len() <= CUT_HEADS_PER_PAGE
                        && heads.len() as u64 <= u64::from(*total)
                        && heads
                            .iter()
                            .all(|(a, _, _)| !a.is_empty() && a.len() <= MAX_NODE_ID_LEN)
                }
                Message::CutGet { .. } => true,
                Message::PingReq { .. } | Message::IndirectAck { .. } | Message::Nack { .. } => {
                    check_bounds(msg).is_ok()
                }
            }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// An `entries` message built entry by entry is, byte for byte,
        /// the encoded message, whatever the entries and the rest; and it
        /// decodes back when within the limits.
        #[test]
        fn entries_buf_is_the_encoded_message(entries in entry_lists(), rest in rests()) {
            let mut buf = EntriesBuf::default();
            for e in &entries {
                buf.push(e);
            }
            prop_assert_eq!(buf.len(), entries.len());
            prop_assert_eq!(buf.is_empty(), entries.is_empty());
            let built = buf.finish(&rest);
            let msg = Message::Entries { entries, rest };
            let encoded = encode(&msg);
            prop_assert_eq!(&built, &encoded);
            match decode(&built) {
                Ok(back) => {
                    prop_assert!(within_limits(&msg, &built));
                    prop_assert_eq!(back, msg);
                }
                Err(_) => prop_assert!(!within_limits(&msg, &built)),
            }
        }

        /// Any bytes: `decode` refuses or returns a message that encodes
        /// back to a message decoding to itself; it never panics. The
        /// bytes are random, or a valid message cut, extended or with one
        /// byte changed.
        #[test]
        fn decode_never_panics_and_what_it_accepts_round_trips(
            entries in entry_lists(),
            rest in rests(),
            random in prop::collection::vec(any::<u8>(), 0..300),
            at in any::<usize>(),
            byte in any::<u8>(),
            how in 0u8..4,
        ) {
            let mut bytes = encode(&Message::Entries { entries, rest });
            match how {
                0 => {
                    let i = at % bytes.len();
                    bytes[i] = byte;
                }
                1 => bytes.truncate(at % bytes.len()),
                2 => bytes.extend_from_slice(&random),
                _ => {
                    bytes = random;
                    if let Some(first) = bytes.first_mut() {
                        *first = WIRE_VERSION;
                    }
                }
            }
            if let Ok(msg) = decode(&bytes) {
                let again = encode(&msg);
                prop_assert!(within_limits(&msg, &again));
                prop_assert_eq!(decode(&again).ok(), Some(msg));
            }
        }

        /// Any message within the limits round-trips.
        #[test]
        fn a_message_within_the_limits_round_trips(
            entries in entry_lists(),
            heads in rests(),
            seq in any::<u32>(),
            digest in any::<[u8; 8]>(),
            target in text(),
            which in 0u8..5,
        ) {
            let msg = match which {
                0 => Message::Ping { seq, target, digest, entries },
                1 => Message::Ack { seq, digest, entries },
                2 => Message::Gossip { entries },
                3 => Message::Want { heads },
                _ => Message::Sync {
                    items: vec![
                        SyncItem::Leaf { path: vec![], heads },
                        SyncItem::Node { path: vec![15; MAX_SYNC_DEPTH], digests: vec![digest; SYNC_FANOUT] },
                    ],
                },
            };
            let bytes = encode(&msg);
            match decode(&bytes) {
                Ok(back) => prop_assert_eq!(back, msg),
                Err(e) => prop_assert!(!within_limits(&msg, &bytes), "{e}"),
            }
        }

        /// A stated sequence length past its field's limit, in any of the
        /// bounded fields and wherever it sits in the message, is refused
        /// naming the field, the length stated and the limit, before any
        /// element is decoded (the elements behind it are valid).
        #[test]
        fn a_stated_length_past_a_limit_names_the_field_and_the_limit(
            field in 0u8..8,
            over in prop_oneof![Just(1u64), 1u64..100, Just(1u64 << 20), Just(u64::MAX >> 1)],
        ) {
            // (message with the stated length `n` of the field, what, limit,
            // bytes of one valid element of it).
            let varint = |mut n: u64| {
                let mut out = Vec::new();
                loop {
                    let low = (n & 0x7f) as u8;
                    n >>= 7;
                    if n == 0 {
                        out.push(low);
                        return out;
                    }
                    out.push(low | 0x80);
                }
            };
            let zero_entry = [0u8; 133];
            let (prefix, what, limit, element): (Vec<u8>, &str, usize, Vec<u8>) = match field {
                // ping: seq 0, empty target, digest, then entries.
                0 => ([vec![WIRE_VERSION, 0, 0, 0], vec![0; 8]].concat(), "entries", MAX_ENTRIES_PER_MESSAGE, zero_entry.to_vec()),
                // ack: seq 0, digest, then entries.
                1 => ([vec![WIRE_VERSION, 1, 0], vec![0; 8]].concat(), "entries", MAX_ENTRIES_PER_MESSAGE, zero_entry.to_vec()),
                // gossip.
                2 => (vec![WIRE_VERSION, 5], "entries", MAX_ENTRIES_PER_MESSAGE, zero_entry.to_vec()),
                // entries: the entries.
                3 => (vec![WIRE_VERSION, 8], "entries", MAX_ENTRIES_PER_MESSAGE, zero_entry.to_vec()),
                // entries: no entries, then the rest.
                4 => (vec![WIRE_VERSION, 8, 0], "heads", MAX_HEADS, vec![1, b'a', 0]),
                // want.
                5 => (vec![WIRE_VERSION, 7], "heads", MAX_HEADS, vec![1, b'a', 0]),
                // sync: its items (each an empty root leaf).
                6 => (vec![WIRE_VERSION, 6], "sync items", MAX_SYNC_ITEMS, vec![1, 0, 0]),
                // sync: one node item at the root, then its digests.
                _ => (vec![WIRE_VERSION, 6, 1, 0, 0], "digests", SYNC_FANOUT, vec![0; 8]),
            };
            let stated = (limit as u64).saturating_add(over);
            let mut bytes = prefix;
            bytes.extend(varint(stated));
            // As many valid elements behind as fit in a message.
            let head = bytes.len();
            let fit = (MAX_MESSAGE_BYTES - head) / element.len();
            let n = usize::try_from(stated).unwrap_or(usize::MAX).min(fit);
            bytes.extend(element.repeat(n));
            // postcard states the length when the bytes left are at least
            // as many as the elements stated.
            let covered = (bytes.len() - head) as u64 >= stated;
            let reachable = limit.saturating_add(1) <= fit;
            match decode(&bytes) {
                Err(Error::BadMessage(why)) => {
                    let named = format!("{what} or more, limit {limit}");
                    if covered {
                        // The stated elements all there: refused as stated,
                        // before any element.
                        let stated_named = format!("{stated} {named}");
                        prop_assert!(why.contains(&stated_named), "{why}");
                    } else if reachable {
                        // Not covered by the bytes left (postcard gives no
                        // length then): refused at the element past the limit.
                        let seen_named = format!("{} {named}", limit + 1);
                        prop_assert!(why.contains(&seen_named), "{why}");
                    } else {
                        // The bytes end before the limit: plain malformed.
                        prop_assert!(!why.contains("limit"), "{why}");
                    }
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
