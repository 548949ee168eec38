//! The wire format: one schema-version byte, then a postcard-encoded
//! [`Message`]. Every bound is checked on decode, before anything is used.

use serde::{Deserialize, Serialize};

use crate::config::{
    MAX_ENTRIES_PER_MESSAGE, MAX_HEADS, MAX_MESSAGE_BYTES, MAX_NODE_ID_LEN, MAX_SYNC_DEPTH,
    MAX_SYNC_ITEMS, SYNC_FANOUT,
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

    use super::{Digest8, SyncItem, WireEntry};
    use crate::config::{MAX_ENTRIES_PER_MESSAGE, MAX_HEADS, MAX_SYNC_ITEMS, SYNC_FANOUT};

    /// (what, stated length, limit) of a refused sequence.
    pub(super) type Refusal = (&'static str, usize, usize);

    thread_local! {
        /// The last sequence refused, for the error [`super::decode`]
        /// reports (postcard drops the text of a custom error).
        static REFUSED: Cell<Option<Refusal>> = const { Cell::new(None) };
    }

    /// A message's entries: at most [`MAX_ENTRIES_PER_MESSAGE`].
    pub(super) fn entries<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<WireEntry>, D::Error> {
        vec::<MAX_ENTRIES_PER_MESSAGE, _, _>(d, "entries")
    }

    /// A `sync`'s items: at most [`MAX_SYNC_ITEMS`].
    pub(super) fn items<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SyncItem>, D::Error> {
        vec::<MAX_SYNC_ITEMS, _, _>(d, "sync items")
    }

    /// Heads (of a `want`, a leaf or a `rest`): at most [`MAX_HEADS`].
    pub(super) fn heads<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, u64)>, D::Error> {
        vec::<MAX_HEADS, _, _>(d, "heads")
    }

    /// A sync node's digests: at most [`SYNC_FANOUT`] (exactly that many
    /// is checked after decoding).
    pub(super) fn digests<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Digest8>, D::Error> {
        vec::<SYNC_FANOUT, _, _>(d, "digests")
    }

    /// Forgets the last refusal (at the start of a decode).
    pub(super) fn clear() {
        REFUSED.with(|r| r.set(None));
    }

    /// The refusal of this decode, if a sequence was longer than its limit.
    pub(super) fn refused() -> Option<Refusal> {
        REFUSED.with(Cell::get)
    }

    /// A `Vec` of at most `LIMIT` elements, `what` naming them.
    fn vec<'de, const LIMIT: usize, D, T>(d: D, what: &'static str) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        d.deserialize_seq(BoundedVec::<LIMIT, T>(what, PhantomData))
    }

    struct BoundedVec<const LIMIT: usize, T>(&'static str, PhantomData<T>);

    impl<'de, const LIMIT: usize, T: Deserialize<'de>> Visitor<'de> for BoundedVec<LIMIT, T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a sequence of at most {LIMIT} elements")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let stated = seq.size_hint().unwrap_or(0);
            if stated > LIMIT {
                REFUSED.with(|r| r.set(Some((self.0, stated, LIMIT))));
                return Err(A::Error::custom("sequence longer than its limit"));
            }
            let mut out = Vec::with_capacity(stated);
            while let Some(element) = seq.next_element()? {
                if out.len() >= LIMIT {
                    let seen = out.len().saturating_add(1);
                    REFUSED.with(|r| r.set(Some((self.0, seen, LIMIT))));
                    return Err(A::Error::custom("sequence longer than its limit"));
                }
                out.push(element);
            }
            Ok(out)
        }
    }
}

/// The short frontier digest carried in pings and acks.
pub type Digest8 = [u8; 8];

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
        // As in `encode`: a derived serialiser into a growable Vec does not
        // fail, whatever the values (built by this node, not decoded).
        #[allow(clippy::expect_used)]
        let bytes = postcard::to_extend(e, std::mem::take(&mut self.bytes))
            .expect("postcard encodes into a Vec");
        self.bytes = bytes;
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
        let mut n = count as u64;
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                head.push(low);
                break;
            }
            head.push(low | 0x80);
        }
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
    bounded::clear();
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
        Message::Sync { items } => {
            if items.len() > MAX_SYNC_ITEMS {
                return Err(bad(format!(
                    "sync carries {} items, limit {MAX_SYNC_ITEMS}",
                    items.len()
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
        let mut n = stated;
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                bytes.push(low);
                break;
            }
            bytes.push(low | 0x80);
        }
        bytes.extend_from_slice(body);
        bytes
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
}
