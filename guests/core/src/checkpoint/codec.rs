//! The checkpoint encoding of docs/design.md §13.3, and its decoder.
//!
//! Integers are big-endian and fixed-width. A record: u8 author length,
//! author; u64 head seq; when head seq ≥ 1, the head id and the key; u64
//! `top_inc`; u8 flags; the own ids the flags announce; the profile (u64
//! seq, its id only for a member without an own claim, u8 address length, address,
//! u16 metadata count, per pair u16 + key, u16 + value); u32
//! `departed_since` if departed; u16 count of open incarnations, each: u64
//! inc, u32 suspecter count and per suspecter u32 record index + 32-byte
//! id, u32 count and indices of long-held suspecters, u8 verdict flag and
//! the verdict id.
//!
//! Chunks are bounded in bytes, not records ([`CHECKPOINT_CHUNK_BYTES`],
//! its prefix included). A chunk of whole records is u32 index of its
//! first record, u32 record count (≥ 1), the records: consecutive records
//! packed greedily, a new chunk started only when the next record does not
//! fit. A record whose encoding alone does not fit a chunk is cut into
//! *parts*, each a chunk of its own: u32 record index, u32 0 (no whole
//! records), u32 part number, u32 part count (≥ 2), then the bytes; every
//! part but the last is full. A chunk of whole records decodes on its own;
//! the parts of one record decode once all of them are held (each still
//! verifies against the root on its own).
//!
//! The decoder takes its input as hostile: every read is bounds-checked, a
//! count is checked against the bytes left before anything is allocated
//! for it, and only the one canonical encoding of a state is accepted
//! (records sorted and unique, indices in range, sorted and not the
//! record's own, no empty open incarnation, no unknown flag), so a state
//! has exactly one id.

use sha2::{Digest, Sha256};

use super::merkle::{chunk_leaf, merkle_root};
use super::{ChainHead, OpenInc, Record, RecordProfile, State, HEADER_TAG};
use crate::config::CHECKPOINT_CHUNK_BYTES;
use crate::ledger::Hash;
use nodeplane_entry::MAX_AUTHOR_LEN;

/// Flag: the own `join`/`alive` id at `top_inc` follows.
const F_ALIVE: u8 = 1;
/// Flag: the own `leave` id at `top_inc` follows.
const F_LEAVE: u8 = 2;
/// Flag: a profile follows.
const F_PROFILE: u8 = 4;
/// Flag: the profile's entry id follows. Set exactly when a profile is
/// present and the member has no own claim (neither flag above): once it
/// has one, the claim's ids are what the view cites (`Derived::entry_of`),
/// and the derivation keeps no profile id (32 bytes a member).
const F_PROFILE_ID: u8 = 8;
/// Flag: `departed_since` follows.
const F_DEPARTED: u8 = 16;
/// Flag: dead at the cut, at `top_inc` (the sticky verdict, 13.8). Set
/// only with an own alive, no own leave, `departed_since`, and a verdict
/// at `top_inc`.
const F_DEAD: u8 = 32;
/// Every flag this version knows.
const F_ALL: u8 = F_ALIVE | F_LEAVE | F_PROFILE | F_PROFILE_ID | F_DEPARTED | F_DEAD;

/// Bytes of the header: tag, n, round, previous id, cut digest, quorum
/// floor, record count, chunk count, root.
pub const HEADER_LEN: usize = 22 + 8 + 4 + 32 + 32 + 4 + 4 + 4 + 32;

/// Smallest encoding of one open incarnation (no suspecters, no votes, no
/// verdict): inc, two counts, the verdict flag.
const OPEN_INC_MIN: usize = 8 + 4 + 4 + 1;
/// Bytes per suspecter: index and id.
const SUSPECTER_LEN: usize = 4 + 32;
/// Smallest encoding of one metadata pair: two empty strings.
const META_PAIR_MIN: usize = 4;
/// Smallest encoding of one record (length, a 1-byte author, seq,
/// `top_inc`, flags, open count).
const RECORD_MIN: usize = 1 + 1 + 8 + 8 + 1 + 2;
/// The prefix of a chunk of whole records: first index, record count.
pub const CHUNK_PREFIX: usize = 4 + 4;
/// The prefix of a part: record index, 0, part number, part count.
pub const PART_PREFIX: usize = 4 + 4 + 4 + 4;
/// The bytes of a record every part but the last carries.
pub const PART_BODY: usize = CHECKPOINT_CHUNK_BYTES - PART_PREFIX;

/// Why a state could not be encoded: a field longer than its length
/// prefix allows (a state built from verified entries never has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A field of the named record is too long for the encoding.
    #[error("record {author:?}: {what} is too long for the encoding")]
    TooLong {
        /// The record's author.
        author: String,
        /// Which field.
        what: &'static str,
    },
    /// More records or chunks than a u32 count holds.
    #[error("too many records for the encoding: {0}")]
    TooManyRecords(usize),
}

/// Why bytes are not a checkpoint (or a chunk, or a header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside the named field.
    #[error("truncated: input ends inside {0}")]
    Truncated(&'static str),
    /// Bytes follow the last field.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// The header does not start with the checkpoint tag.
    #[error("not a checkpoint header (tag)")]
    BadTag,
    /// A chunk is longer than `CHECKPOINT_CHUNK_BYTES`.
    #[error("chunk of {0} bytes is over the chunk bound")]
    ChunkTooLarge(usize),
    /// A part of a record is malformed (part count below 2, part number
    /// out of range, a part other than the last not full, parts out of
    /// order or missing).
    #[error("record {0}: {1}")]
    BadPart(u64, &'static str),
    /// The chunks hold the right records but not cut where the encoder
    /// cuts them (not greedy, or a record split that fits whole).
    #[error("the chunk boundaries are not the canonical ones")]
    Chunking,
    /// A count announces more items than the bytes left could hold.
    #[error("{what}: count {count} is larger than the input")]
    CountTooLarge {
        /// Which count.
        what: &'static str,
        /// Its value.
        count: u64,
    },
    /// A string is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// An author id is empty or longer than `MAX_AUTHOR_LEN`.
    #[error("record {0}: author length {1} is out of range")]
    AuthorLength(u64, usize),
    /// Records are not in strictly ascending author order (unsorted or
    /// duplicate).
    #[error("record {0}: not after the previous record (unsorted or duplicate)")]
    Unsorted(u64),
    /// A suspecter index names no record, or the record itself.
    #[error("record {record}: suspecter index {index} out of range (of {count})")]
    IndexOutOfRange {
        /// The record's index.
        record: u64,
        /// The index found.
        index: u32,
        /// How many records there are.
        count: u32,
    },
    /// Unknown flag bits are set.
    #[error("record {0}: unknown flags {1:#04x}")]
    UnknownFlags(u64, u8),
    /// The encoding is not the canonical one of any state.
    #[error("record {0}: {1}")]
    NonCanonical(u64, &'static str),
    /// The header's counts disagree with each other or with the chunks.
    #[error("header: {0}")]
    Counts(&'static str),
    /// The chunks do not hash to the header's root.
    #[error("the chunks do not match the header's Merkle root")]
    RootMismatch,
    /// The records' heads do not give the header's cut digest (checked
    /// for checkpoint 1, from which nothing expired).
    #[error("the records' heads do not match the header's cut digest")]
    CutMismatch,
}

/// A checkpoint's header (13.3); its id is SHA-256 of its encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The checkpoint number.
    pub n: u64,
    /// The round of agreement it was proposed in.
    pub round: u32,
    /// The id of checkpoint `n − 1` (zeros for `n = 1`).
    pub prev: Hash,
    /// The frontier digest of the cut's heads.
    pub cut: Hash,
    /// The `death_quorum` floor the state was derived with.
    pub quorum_floor: u32,
    /// Number of records.
    pub records: u32,
    /// Number of chunks (0 exactly when there are no records).
    pub chunks: u32,
    /// The Merkle root over the chunks.
    pub root: Hash,
}

impl Header {
    /// The encoding ([`HEADER_LEN`] bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(HEADER_TAG);
        out.extend_from_slice(&self.n.to_be_bytes());
        out.extend_from_slice(&self.round.to_be_bytes());
        out.extend_from_slice(&self.prev);
        out.extend_from_slice(&self.cut);
        out.extend_from_slice(&self.quorum_floor.to_be_bytes());
        out.extend_from_slice(&self.records.to_be_bytes());
        out.extend_from_slice(&self.chunks.to_be_bytes());
        out.extend_from_slice(&self.root);
        out
    }

    /// The checkpoint id: SHA-256 of the header's encoding.
    pub fn id(&self) -> Hash {
        Sha256::digest(self.encode()).into()
    }

    /// Decodes a header, checking its tag, its length and that the chunk
    /// count is the one the record count needs.
    pub fn decode(bytes: &[u8]) -> Result<Header, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.take(HEADER_TAG.len(), "header tag")? != HEADER_TAG {
            return Err(DecodeError::BadTag);
        }
        let h = Header {
            n: r.u64("n")?,
            round: r.u32("round")?,
            prev: r.hash("previous id")?,
            cut: r.hash("cut digest")?,
            quorum_floor: r.u32("quorum floor")?,
            records: r.u32("record count")?,
            chunks: r.u32("chunk count")?,
            root: r.hash("root")?,
        };
        r.finish()?;
        if (h.records == 0) != (h.chunks == 0) {
            return Err(DecodeError::Counts(
                "chunk count does not fit the record count",
            ));
        }
        Ok(h)
    }
}

/// An encoded checkpoint: the header and the chunks' bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// The header.
    pub header: Header,
    /// The chunks, in order.
    pub chunks: Vec<Vec<u8>>,
}

impl Encoded {
    /// The checkpoint id.
    pub fn id(&self) -> Hash {
        self.header.id()
    }

    /// The leaf hashes of the chunks.
    pub fn leaves(&self) -> Vec<Hash> {
        self.chunks
            .iter()
            .zip(0u32..)
            .map(|(c, i)| chunk_leaf(i, c))
            .collect()
    }
}

impl State {
    /// Encodes the state as checkpoint `n` (agreed in `round`, after the
    /// checkpoint with id `prev`), derived with the `death_quorum` floor
    /// `quorum_floor`. The cut digest is that of the records' heads, which
    /// is the cut's only when no record expired (always at `n = 1`); a
    /// state from [`State::next`] is encoded with [`super::Successor::encode`],
    /// which carries the cut's own digest.
    pub fn encode(
        &self,
        n: u64,
        round: u32,
        prev: Hash,
        quorum_floor: u32,
    ) -> Result<Encoded, EncodeError> {
        self.encode_with_cut(n, round, prev, quorum_floor, self.cut_digest())
    }

    /// [`State::encode`] with the header's cut digest given: the frontier
    /// digest of the cut's heads before expiry (13.3).
    pub fn encode_with_cut(
        &self,
        n: u64,
        round: u32,
        prev: Hash,
        quorum_floor: u32,
        cut: Hash,
    ) -> Result<Encoded, EncodeError> {
        let count = u32::try_from(self.records.len())
            .map_err(|_| EncodeError::TooManyRecords(self.records.len()))?;
        let chunks = chunk_records(&self.records)?;
        let chunk_count =
            u32::try_from(chunks.len()).map_err(|_| EncodeError::TooManyRecords(chunks.len()))?;
        let leaves: Vec<Hash> = chunks
            .iter()
            .zip(0u32..)
            .map(|(c, i)| chunk_leaf(i, c))
            .collect();
        let header = Header {
            n,
            round,
            prev,
            cut,
            quorum_floor,
            records: count,
            chunks: chunk_count,
            root: merkle_root(&leaves),
        };
        Ok(Encoded { header, chunks })
    }
}

/// A chunk of whole records being filled: its bytes and record count.
struct Filling {
    /// Index of its first record.
    first: u32,
    /// Records in it.
    count: u32,
    /// The records' bytes.
    bytes: Vec<u8>,
}

impl Filling {
    /// The chunk's encoding: prefix, then the records.
    fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHUNK_PREFIX.saturating_add(self.bytes.len()));
        out.extend_from_slice(&self.first.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.bytes);
        out
    }
}

/// Cuts the records into chunks: greedily packed whole records, and a
/// record too large for a chunk alone in parts.
fn chunk_records(records: &[Record]) -> Result<Vec<Vec<u8>>, EncodeError> {
    let mut chunks = Vec::new();
    let mut filling: Option<Filling> = None;
    for (rec, at) in records.iter().zip(0u32..) {
        let mut bytes = Vec::new();
        encode_record(rec, &mut bytes)?;
        if CHUNK_PREFIX.saturating_add(bytes.len()) > CHECKPOINT_CHUNK_BYTES {
            if let Some(f) = filling.take() {
                chunks.push(f.finish());
            }
            let parts = bytes.len().div_ceil(PART_BODY);
            let parts_u32: u32 = len_as(parts, rec, "parts")?;
            for (piece, p) in bytes.chunks(PART_BODY).zip(0u32..) {
                let mut out = Vec::with_capacity(PART_PREFIX.saturating_add(piece.len()));
                out.extend_from_slice(&at.to_be_bytes());
                out.extend_from_slice(&0u32.to_be_bytes());
                out.extend_from_slice(&p.to_be_bytes());
                out.extend_from_slice(&parts_u32.to_be_bytes());
                out.extend_from_slice(piece);
                chunks.push(out);
            }
            continue;
        }
        if filling.as_ref().is_some_and(|f| {
            CHUNK_PREFIX
                .saturating_add(f.bytes.len())
                .saturating_add(bytes.len())
                > CHECKPOINT_CHUNK_BYTES
        }) {
            if let Some(f) = filling.take() {
                chunks.push(f.finish());
            }
        }
        let f = filling.get_or_insert_with(|| Filling {
            first: at,
            count: 0,
            bytes: Vec::new(),
        });
        f.count = f.count.saturating_add(1);
        f.bytes.extend_from_slice(&bytes);
    }
    if let Some(f) = filling.take() {
        chunks.push(f.finish());
    }
    Ok(chunks)
}

/// A length as the `T` of its prefix, or `TooLong`.
fn len_as<T: TryFrom<usize>>(
    len: usize,
    rec: &Record,
    what: &'static str,
) -> Result<T, EncodeError> {
    T::try_from(len).map_err(|_| EncodeError::TooLong {
        author: rec.author.clone(),
        what,
    })
}

/// Appends one record's encoding.
pub(super) fn encode_record(rec: &Record, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let alen: u8 = len_as(rec.author.len(), rec, "author")?;
    out.push(alen);
    out.extend_from_slice(rec.author.as_bytes());
    match &rec.head {
        Some(h) => {
            out.extend_from_slice(&h.seq.to_be_bytes());
            out.extend_from_slice(&h.id);
            out.extend_from_slice(&h.key);
        }
        None => out.extend_from_slice(&0u64.to_be_bytes()),
    }
    out.extend_from_slice(&rec.top_inc.to_be_bytes());
    let mut flags = 0u8;
    if rec.own_alive.is_some() {
        flags |= F_ALIVE;
    }
    if rec.own_leave.is_some() {
        flags |= F_LEAVE;
    }
    if rec.profile.is_some() {
        flags |= F_PROFILE;
    }
    if rec.profile.as_ref().is_some_and(|p| p.id.is_some()) {
        flags |= F_PROFILE_ID;
    }
    if rec.departed_since.is_some() {
        flags |= F_DEPARTED;
    }
    if rec.dead {
        flags |= F_DEAD;
    }
    out.push(flags);
    if let Some(id) = &rec.own_alive {
        out.extend_from_slice(id);
    }
    if let Some(id) = &rec.own_leave {
        out.extend_from_slice(id);
    }
    if let Some(p) = &rec.profile {
        out.extend_from_slice(&p.seq.to_be_bytes());
        if let Some(id) = &p.id {
            out.extend_from_slice(id);
        }
        let len: u8 = len_as(p.addr.len(), rec, "address")?;
        out.push(len);
        out.extend_from_slice(p.addr.as_bytes());
        let count: u16 = len_as(p.meta.len(), rec, "metadata count")?;
        out.extend_from_slice(&count.to_be_bytes());
        for (k, v) in &p.meta {
            let kl: u16 = len_as(k.len(), rec, "metadata key")?;
            out.extend_from_slice(&kl.to_be_bytes());
            out.extend_from_slice(k.as_bytes());
            let vl: u16 = len_as(v.len(), rec, "metadata value")?;
            out.extend_from_slice(&vl.to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
    }
    if let Some(d) = rec.departed_since {
        out.extend_from_slice(&d.to_be_bytes());
    }
    let open: u16 = len_as(rec.open.len(), rec, "open incarnations")?;
    out.extend_from_slice(&open.to_be_bytes());
    for o in &rec.open {
        out.extend_from_slice(&o.inc.to_be_bytes());
        let n: u32 = len_as(o.suspecters.len(), rec, "suspecters")?;
        out.extend_from_slice(&n.to_be_bytes());
        for (i, id) in &o.suspecters {
            out.extend_from_slice(&i.to_be_bytes());
            out.extend_from_slice(id);
        }
        let n: u32 = len_as(o.held.len(), rec, "long-held suspecters")?;
        out.extend_from_slice(&n.to_be_bytes());
        for i in &o.held {
            out.extend_from_slice(&i.to_be_bytes());
        }
        match &o.verdict {
            Some(id) => {
                out.push(1);
                out.extend_from_slice(id);
            }
            None => out.push(0),
        }
    }
    Ok(())
}

/// A bounds-checked cursor over hostile bytes.
struct Reader<'a> {
    /// What is left to read.
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let (Some(head), Some(tail)) = (self.rest.get(..n), self.rest.get(n..)) else {
            return Err(DecodeError::Truncated(what));
        };
        self.rest = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        self.take(N, what)?
            .try_into()
            .map_err(|_| DecodeError::Truncated(what))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn hash(&mut self, what: &'static str) -> Result<Hash, DecodeError> {
        self.array(what)
    }

    /// A UTF-8 string of `len` bytes.
    fn string(&mut self, len: usize, what: &'static str) -> Result<String, DecodeError> {
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| DecodeError::NotUtf8(what))
    }

    /// Checks that `count` items of at least `min` bytes each fit in what
    /// is left, before anything is allocated for them.
    fn check_count(
        &self,
        count: u64,
        min: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let too_large = DecodeError::CountTooLarge { what, count };
        let n = usize::try_from(count).map_err(|_| too_large.clone())?;
        match n.checked_mul(min) {
            Some(bytes) if bytes <= self.rest.len() => Ok(n),
            _ => Err(too_large),
        }
    }

    /// Fails unless everything was read.
    fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.rest.len()))
        }
    }
}

/// Reads sorted, unique record indices, each below `count` and not `own`.
fn index(
    r: &mut Reader<'_>,
    last: &mut Option<u32>,
    own: u64,
    count: u32,
    what: &'static str,
) -> Result<u32, DecodeError> {
    let i = r.u32(what)?;
    if i >= count || u64::from(i) == own {
        return Err(DecodeError::IndexOutOfRange {
            record: own,
            index: i,
            count,
        });
    }
    if last.is_some_and(|l| l >= i) {
        return Err(DecodeError::NonCanonical(
            own,
            "suspecter indices not ascending",
        ));
    }
    *last = Some(i);
    Ok(i)
}

/// Decodes record number `at` of a state of `count` records.
fn decode_record(r: &mut Reader<'_>, at: u64, count: u32) -> Result<Record, DecodeError> {
    let alen = usize::from(r.u8("author length")?);
    if alen == 0 || alen > MAX_AUTHOR_LEN {
        return Err(DecodeError::AuthorLength(at, alen));
    }
    let author = r.string(alen, "author")?;
    let seq = r.u64("head seq")?;
    let head = if seq >= 1 {
        Some(ChainHead {
            seq,
            id: r.hash("head id")?,
            key: r.array("key")?,
        })
    } else {
        None
    };
    let top_inc = r.u64("top_inc")?;
    let flags = r.u8("flags")?;
    if flags & !F_ALL != 0 {
        return Err(DecodeError::UnknownFlags(at, flags));
    }
    let has = |f: u8| flags & f != 0;
    let has_own = has(F_ALIVE) || has(F_LEAVE);
    if has(F_PROFILE_ID) != (has(F_PROFILE) && !has_own) {
        return Err(DecodeError::NonCanonical(
            at,
            "a profile id without a profile, or beside an own claim",
        ));
    }
    if (has(F_ALIVE) || has(F_LEAVE) || has(F_PROFILE)) && head.is_none() {
        return Err(DecodeError::NonCanonical(at, "own entries without a chain"));
    }
    if has(F_DEAD) && !(has(F_ALIVE) && !has(F_LEAVE) && has(F_DEPARTED)) {
        return Err(DecodeError::NonCanonical(
            at,
            "dead without an own alive, or with a leave, or not departed",
        ));
    }
    if !(has(F_ALIVE) || has(F_LEAVE)) && top_inc != 0 {
        return Err(DecodeError::NonCanonical(at, "top_inc without own claims"));
    }
    let own_alive = if has(F_ALIVE) {
        Some(r.hash("alive id")?)
    } else {
        None
    };
    let own_leave = if has(F_LEAVE) {
        Some(r.hash("leave id")?)
    } else {
        None
    };
    let profile = if has(F_PROFILE) {
        let pseq = r.u64("profile seq")?;
        if pseq == 0 || head.as_ref().is_some_and(|h| pseq > h.seq) {
            return Err(DecodeError::NonCanonical(
                at,
                "profile seq outside the chain",
            ));
        }
        let id = if has(F_PROFILE_ID) {
            Some(r.hash("profile id")?)
        } else {
            None
        };
        let alen = usize::from(r.u8("address length")?);
        let addr = r.string(alen, "address")?;
        let n = {
            let c = r.u16("metadata count")?;
            r.check_count(u64::from(c), META_PAIR_MIN, "metadata count")?
        };
        let mut meta = Vec::with_capacity(n);
        for _ in 0..n {
            let kl = usize::from(r.u16("metadata key length")?);
            let k = r.string(kl, "metadata key")?;
            let vl = usize::from(r.u16("metadata value length")?);
            let v = r.string(vl, "metadata value")?;
            meta.push((k, v));
        }
        Some(RecordProfile {
            seq: pseq,
            id,
            addr,
            meta,
        })
    } else {
        None
    };
    let departed_since = if has(F_DEPARTED) {
        Some(r.u32("departed_since")?)
    } else {
        None
    };
    let n = {
        let c = r.u16("open count")?;
        r.check_count(u64::from(c), OPEN_INC_MIN, "open incarnations")?
    };
    let mut open: Vec<OpenInc> = Vec::with_capacity(n);
    for _ in 0..n {
        let inc = r.u64("open inc")?;
        if inc < top_inc {
            return Err(DecodeError::NonCanonical(at, "open claim below top_inc"));
        }
        if open.last().is_some_and(|o| o.inc >= inc) {
            return Err(DecodeError::NonCanonical(
                at,
                "open incarnations not ascending",
            ));
        }
        let k = {
            let c = r.u32("suspecter count")?;
            r.check_count(u64::from(c), SUSPECTER_LEN, "suspecters")?
        };
        let mut suspecters = Vec::with_capacity(k);
        let mut last = None;
        for _ in 0..k {
            let i = index(r, &mut last, at, count, "suspecter index")?;
            suspecters.push((i, r.hash("suspect id")?));
        }
        let k = {
            let c = r.u32("held count")?;
            r.check_count(u64::from(c), 4, "long-held suspecters")?
        };
        let mut held = Vec::with_capacity(k);
        let mut last = None;
        for _ in 0..k {
            held.push(index(r, &mut last, at, count, "held index")?);
        }
        let verdict = match r.u8("verdict flag")? {
            0 => None,
            1 => Some(r.hash("verdict id")?),
            _ => return Err(DecodeError::NonCanonical(at, "verdict flag not 0 or 1")),
        };
        if suspecters.is_empty() && held.is_empty() && verdict.is_none() {
            return Err(DecodeError::NonCanonical(at, "empty open incarnation"));
        }
        open.push(OpenInc {
            inc,
            suspecters,
            held,
            verdict,
        });
    }
    let dead = has(F_DEAD);
    if dead
        && !open
            .first()
            .is_some_and(|o| o.inc == top_inc && o.verdict.is_some())
    {
        return Err(DecodeError::NonCanonical(
            at,
            "dead without a verdict at top_inc",
        ));
    }
    Ok(Record {
        author,
        head,
        top_inc,
        own_alive,
        own_leave,
        profile,
        departed_since,
        dead,
        open,
    })
}

/// One chunk, decoded on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Whole records, the first of them record number `first`.
    Records {
        /// Index of the first record.
        first: u32,
        /// The records, sorted and unique.
        records: Vec<Record>,
    },
    /// Part `part` of `parts` of the encoding of record number `record`.
    Part {
        /// The record's index.
        record: u32,
        /// This part's number.
        part: u32,
        /// How many parts the record has.
        parts: u32,
        /// The part's bytes.
        bytes: Vec<u8>,
    },
}

impl Chunk {
    /// The chunk's encoding: decoding a chunk and encoding it again gives
    /// the same bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        match self {
            Chunk::Records { first, records } => {
                let mut bytes = Vec::new();
                for rec in records {
                    encode_record(rec, &mut bytes)?;
                }
                let count = u32::try_from(records.len())
                    .map_err(|_| EncodeError::TooManyRecords(records.len()))?;
                Ok(Filling {
                    first: *first,
                    count,
                    bytes,
                }
                .finish())
            }
            Chunk::Part {
                record,
                part,
                parts,
                bytes,
            } => {
                let mut out = Vec::with_capacity(PART_PREFIX.saturating_add(bytes.len()));
                for v in [*record, 0, *part, *parts] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                out.extend_from_slice(bytes);
                Ok(out)
            }
        }
    }
}

/// Decodes one chunk of a state of `records` records on its own (a chunk
/// fetched from a peer, after [`super::verify_chunk`]): its prefix, and
/// either whole records, sorted and unique within it, indices below
/// `records`, or one part of a record. Order across chunks, and that the
/// chunks are cut where the encoder cuts them, are checked by [`decode`].
pub fn decode_chunk(bytes: &[u8], records: u32) -> Result<Chunk, DecodeError> {
    if bytes.len() > CHECKPOINT_CHUNK_BYTES {
        return Err(DecodeError::ChunkTooLarge(bytes.len()));
    }
    let mut r = Reader::new(bytes);
    let first = r.u32("chunk's first record")?;
    let count = r.u32("chunk's record count")?;
    if first >= records {
        return Err(DecodeError::Counts(
            "chunk's first record beyond the records",
        ));
    }
    let at0 = u64::from(first);
    if count == 0 {
        let part = r.u32("part number")?;
        let parts = r.u32("part count")?;
        if parts < 2 || part >= parts {
            return Err(DecodeError::BadPart(
                at0,
                "part number or count out of range",
            ));
        }
        let rest = r.take(r.rest.len(), "part bytes")?;
        let full = part.saturating_add(1) < parts;
        if rest.is_empty() || (full && rest.len() != PART_BODY) {
            return Err(DecodeError::BadPart(
                at0,
                "a part other than the last not full",
            ));
        }
        return Ok(Chunk::Part {
            record: first,
            part,
            parts,
            bytes: rest.to_vec(),
        });
    }
    if u64::from(first).saturating_add(u64::from(count)) > u64::from(records) {
        return Err(DecodeError::Counts("chunk's records beyond the records"));
    }
    let n = r.check_count(u64::from(count), RECORD_MIN, "chunk records")?;
    let mut out: Vec<Record> = Vec::with_capacity(n);
    for k in 0..n {
        let at = at0.saturating_add(k as u64);
        let rec = decode_record(&mut r, at, records)?;
        if out
            .last()
            .is_some_and(|p| p.author.as_bytes() >= rec.author.as_bytes())
        {
            return Err(DecodeError::Unsorted(at));
        }
        out.push(rec);
    }
    r.finish()?;
    Ok(Chunk::Records {
        first,
        records: out,
    })
}

/// Appends `rec` (number `at`) to `records`, checking the order.
fn push_sorted(records: &mut Vec<Record>, rec: Record, at: u64) -> Result<(), DecodeError> {
    if records
        .last()
        .is_some_and(|p| p.author.as_bytes() >= rec.author.as_bytes())
    {
        return Err(DecodeError::Unsorted(at));
    }
    records.push(rec);
    Ok(())
}

/// Decodes a whole checkpoint: the header, then every chunk, each
/// starting where the previous ended, parts reassembled in order, checked
/// against the root, the records sorted and unique across chunks, every
/// suspecter a record with a chain, the chunks cut exactly where the
/// encoder cuts them, and for `n = 1` the cut digest.
pub fn decode(header: &[u8], chunks: &[&[u8]]) -> Result<(Header, State), DecodeError> {
    let h = Header::decode(header)?;
    if u32::try_from(chunks.len()).ok() != Some(h.chunks) {
        return Err(DecodeError::Counts("chunk count differs from the header"));
    }
    let mut leaves = Vec::with_capacity(chunks.len());
    let mut records: Vec<Record> = Vec::new();
    // The parts of a record read so far: its index, the next part number,
    // the part count, the bytes.
    let mut pending: Option<(u32, u32, u32, Vec<u8>)> = None;
    for (bytes, i) in chunks.iter().zip(0u32..) {
        leaves.push(chunk_leaf(i, bytes));
        let next = records.len() as u64;
        match decode_chunk(bytes, h.records)? {
            Chunk::Records {
                first,
                records: recs,
            } => {
                if pending.is_some() {
                    return Err(DecodeError::BadPart(next, "parts missing"));
                }
                if u64::from(first) != next {
                    return Err(DecodeError::Counts(
                        "chunk does not start where the previous ended",
                    ));
                }
                for (rec, k) in recs.into_iter().zip(0u64..) {
                    push_sorted(&mut records, rec, next.saturating_add(k))?;
                }
            }
            Chunk::Part {
                record,
                part,
                parts,
                bytes,
            } => {
                if u64::from(record) != next {
                    return Err(DecodeError::Counts(
                        "chunk does not start where the previous ended",
                    ));
                }
                let mut buf = match pending.take() {
                    None if part == 0 => Vec::new(),
                    Some((r, p, n, buf)) if r == record && p == part && n == parts => buf,
                    _ => return Err(DecodeError::BadPart(next, "parts out of order")),
                };
                buf.extend_from_slice(&bytes);
                if part.saturating_add(1) < parts {
                    pending = Some((record, part.saturating_add(1), parts, buf));
                } else {
                    let mut r = Reader::new(&buf);
                    let rec = decode_record(&mut r, next, h.records)?;
                    r.finish()?;
                    push_sorted(&mut records, rec, next)?;
                }
            }
        }
    }
    if pending.is_some() {
        return Err(DecodeError::BadPart(records.len() as u64, "parts missing"));
    }
    if records.len() as u64 != u64::from(h.records) {
        return Err(DecodeError::Counts(
            "the chunks hold fewer records than the header",
        ));
    }
    if merkle_root(&leaves) != h.root {
        return Err(DecodeError::RootMismatch);
    }
    for (at, rec) in records.iter().enumerate() {
        for o in &rec.open {
            let authors = o.suspecters.iter().map(|(i, _)| i).chain(o.held.iter());
            for &i in authors {
                let has_chain = usize::try_from(i)
                    .ok()
                    .and_then(|i| records.get(i))
                    .is_some_and(|a| a.head.is_some());
                if !has_chain {
                    return Err(DecodeError::NonCanonical(
                        at as u64,
                        "a suspecter without a chain",
                    ));
                }
            }
        }
    }
    // The chunk boundaries are canonical exactly when the encoder cuts
    // the records the same way.
    let canonical = chunk_records(&records).map_err(|_| DecodeError::Chunking)?;
    if canonical.len() != chunks.len() || canonical.iter().zip(chunks).any(|(a, b)| a != b) {
        return Err(DecodeError::Chunking);
    }
    let state = State { records };
    if h.n == 1 && state.cut_digest() != h.cut {
        return Err(DecodeError::CutMismatch);
    }
    Ok((h, state))
}
