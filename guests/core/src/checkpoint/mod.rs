//! Checkpoints (docs/design.md §13.1-13.3, 13.6): the derived state of a
//! cut of the ledger as a list of records, its encoding (chunks, Merkle
//! tree, header, id), a decoder for bytes that came off the wire, and the
//! `Derived` a checkpoint loads into.
//!
//! This is the first step: the state of **checkpoint 1** (`F` over the
//! empty state; 13.2's pruning rules 2 and 3 do not apply at `n = 1`, and
//! rule 1, claims below `top_inc` dropped, is what a record keeps anyway).
//! Nothing in the node calls it yet.
//!
//! - [`State::first`]: the records of a cut, from the [`Ledger`] (heads,
//!   bound keys) and the [`Derived`] of exactly the cut's entries;
//! - [`State::encode`] / [`decode`]: the encoding of 13.3 and its hostile-
//!   input decoder; [`decode_chunk`] for one chunk fetched on its own,
//!   checked against the root with [`verify_chunk`] and a
//!   [`chunk_proof`] path;
//! - [`State::load`]: `G`'s start (13.6), a [`Derived`] from the records
//!   with every cache recomputed, on which the tail is applied with the
//!   ordinary [`Derived::apply`].

mod agree;
mod codec;
mod merkle;
mod next;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::ledger::{Hash, Ledger};
use crate::membership::Derived;
use nodeplane_entry::signing::PublicKey;

pub use agree::{
    proposal_of, proposer, ranking, tail_len, tally, trigger, voters, BodyError, Outcome, Proposal,
    Tally, Vote, KIND_CHECKPOINT, KIND_CHECKPOINT_VOTE, MAX_AGREEMENT_BODY,
};
pub use codec::{
    decode, decode_chunk, Chunk, DecodeError, EncodeError, Encoded, Header, CHUNK_PREFIX,
    HEADER_LEN, PART_BODY, PART_PREFIX,
};
pub use merkle::{chunk_leaf, chunk_proof, merkle_root, verify_chunk};
pub use next::{prune, Successor};

/// Domain tag of the checkpoint header (and so of the checkpoint id).
pub const HEADER_TAG: &[u8] = b"nodeplane-checkpoint/1";
/// Domain tag of a chunk's leaf hash.
pub const CHUNK_TAG: &[u8] = b"nodeplane-checkpoint-chunk/1";
/// Domain tag of an inner node of the Merkle tree over the chunks.
pub const NODE_TAG: &[u8] = b"nodeplane-checkpoint-node/1";

/// The head of an author's chain in the cut, and the key it is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence number of the head entry (at least 1).
    pub seq: u64,
    /// Id of the head entry: the author's next entry links to it.
    pub id: Hash,
    /// The signing key the author's `seq` 1 `join` bound it to.
    pub key: PublicKey,
}

/// A member's latest profile (`join`, `alive` or `metadata`) in the cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordProfile {
    /// Sequence number of the entry that carried it.
    pub seq: u64,
    /// That entry's id, only for a member without an own claim (the
    /// derivation keeps it only then: see `Derived::entry_of`).
    pub id: Option<Hash>,
    /// The control-channel address.
    pub addr: String,
    /// The metadata, in the entry's order.
    pub meta: Vec<(String, String)>,
}

/// Others' claims about a subject at one incarnation at or above its
/// `top_inc` (13.1, "open claims").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenInc {
    /// The incarnation.
    pub inc: u64,
    /// Each suspecting author, as an index into the records, with the
    /// smallest id of its `suspect` entries here; sorted by index.
    pub suspecters: Vec<(u32, Hash)>,
    /// The authors (record indices, sorted) of `suspect-held` votes here
    /// that reached `SUSPICION_LAPSE_MS`.
    pub held: Vec<u32>,
    /// The smallest id of the `confirm-dead` entries here.
    pub verdict: Option<Hash>,
}

/// What a checkpoint keeps of one author or subject (13.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The member's id (1..=64 bytes).
    pub author: String,
    /// Its chain's head in the cut; `None` for a subject of claims that
    /// wrote nothing in the cut (head seq 0).
    pub head: Option<ChainHead>,
    /// The highest incarnation of its own claims (`join`/`alive`/`leave`);
    /// 0 when it has none.
    pub top_inc: u64,
    /// Smallest id of its own `join`/`alive` at `top_inc`.
    pub own_alive: Option<Hash>,
    /// Smallest id of its own `leave` at `top_inc`.
    pub own_leave: Option<Hash>,
    /// Its latest profile.
    pub profile: Option<RecordProfile>,
    /// The checkpoint number since which it is `left` or `dead`.
    pub departed_since: Option<u32>,
    /// Dead (in `V`) at the cut, at `top_inc`: the sticky verdict (13.8).
    /// Loading puts it into `V` whatever the counts for as long as its
    /// claim without verdicts is still live at `top_inc`; its own `alive`
    /// at a higher incarnation ends it.
    pub dead: bool,
    /// Others' claims about it at incarnations `≥ top_inc`, by
    /// incarnation, ascending.
    pub open: Vec<OpenInc>,
}

impl Record {
    /// Whether the record holds a claim of the member's own.
    pub fn has_own(&self) -> bool {
        self.own_alive.is_some() || self.own_leave.is_some()
    }
}

/// Why a checkpoint state could not be built from a ledger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The cut is not sorted by author, or names an author twice.
    #[error("cut: author {0:?} is out of order or repeated")]
    CutUnsorted(String),
    /// A head of the cut is not an entry the ledger holds.
    #[error("cut: {author}#{seq} is not held by the ledger with that id")]
    HeadNotHeld {
        /// The author.
        author: String,
        /// The head's sequence number.
        seq: u64,
    },
    /// The ledger holds no bound key for an author of the cut.
    #[error("cut: author {0:?} has no bound signing key")]
    NoBoundKey(String),
    /// A claim's author wrote nothing in the cut (the derivation was not
    /// of exactly the cut's entries).
    #[error("author {0:?} of a claim has no chain in the cut")]
    AuthorNotInCut(String),
    /// More records than a u32 index can name.
    #[error("too many records: {0}")]
    TooManyRecords(usize),
    /// The checkpoint number does not fit `departed_since` (u32).
    #[error("checkpoint number {0} does not fit in u32")]
    NumberTooLarge(u64),
    /// `F` over a previous state needs `n ≥ 2` (checkpoint 1 is
    /// [`State::first`]).
    #[error("checkpoint number {0}: F over a previous state needs n >= 2")]
    NumberTooSmall(u64),
    /// An author of the previous state is missing from the cut, or its
    /// head in the cut is below the previous one.
    #[error("cut: {author} is at seq {seq}, below its previous head {prev}")]
    CutShrinks {
        /// The author.
        author: String,
        /// Its head seq in the previous state.
        prev: u64,
        /// Its head seq in the cut (0: absent).
        seq: u64,
    },
    /// The chain the ledger (or the cut) holds for an author is not the
    /// one the previous state covered (13.7, "different inputs").
    #[error("{author}#{seq}: not the entry the previous checkpoint covered")]
    Diverged {
        /// The author.
        author: String,
        /// The previous head's seq.
        seq: u64,
    },
    /// The cut binds an author of the previous state to another key.
    #[error("cut: {0} is bound to another key than in the previous state")]
    KeyChanged(String),
    /// The entries given are not exactly those between the two cuts.
    #[error("entries between the cuts: {0}")]
    Delta(String),
}

/// A checkpoint's state: one record per author that appears in the cut
/// (wrote an entry, or is the subject of a claim), sorted by author bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The records, sorted by author, unique.
    pub records: Vec<Record>,
}

impl State {
    /// The state of checkpoint 1 over `cut` (per author, `(author, head
    /// seq, head id)` sorted by author, as [`Ledger::frontier`] gives;
    /// each a prefix of the author's chain in `ledger`): `derived` must be
    /// the derivation of exactly the cut's entries (its quorum floor does
    /// not matter: nothing in a record depends on it but `departed_since`,
    /// which is taken from `derived`'s view). Subjects whose id no entry
    /// could ever be authored under (empty, or longer than
    /// `MAX_AUTHOR_LEN`) get no record: claims about them can never take
    /// effect.
    pub fn first(
        ledger: &Ledger,
        cut: &[(String, u64, Hash)],
        derived: &Derived,
    ) -> Result<State, StateError> {
        let owned = cut_heads(ledger, cut)?;
        let heads: BTreeMap<&str, ChainHead> =
            owned.iter().map(|(a, h)| (a.as_str(), h.clone())).collect();
        let records = derived.checkpoint_records(&heads, 1, Some(ledger))?;
        Ok(State { records })
    }

    /// The frontier digest of the records' heads: the cut digest of a
    /// checkpoint from which no record expired (always at `n = 1`).
    pub fn cut_digest(&self) -> Hash {
        nodeplane_entry::frontier_digest(
            self.records
                .iter()
                .filter_map(|r| r.head.as_ref().map(|h| (r.author.as_str(), h.seq, &h.id))),
        )
    }

    /// `G`'s start (13.6): the derivation these records stand for, with
    /// `counted_live`, `key_shared`, the suspecters' counts, the
    /// candidates and the dead set recomputed, under the quorum floor
    /// `quorum_floor`. Applying the tail's entries to it with
    /// [`Derived::apply`] gives what the derivation of every entry gives
    /// (up to moot incarnations: see the module's tests).
    pub fn load(&self, quorum_floor: u32) -> Derived {
        Derived::from_checkpoint(&self.records, quorum_floor)
    }
}

/// The heads of `cut` (per author `(author, head seq, head id)`, sorted by
/// author, as [`Ledger::frontier`] gives) with their bound keys, checked
/// against `ledger`: sorted and unique, each head an entry the ledger
/// holds with that id, each author bound to a key.
pub(crate) fn cut_heads(
    ledger: &Ledger,
    cut: &[(String, u64, Hash)],
) -> Result<BTreeMap<String, ChainHead>, StateError> {
    let mut heads = BTreeMap::new();
    let mut last: Option<&str> = None;
    for (author, seq, id) in cut {
        if last.is_some_and(|l| l >= author.as_str()) {
            return Err(StateError::CutUnsorted(author.clone()));
        }
        last = Some(author);
        if ledger.id_at(author, *seq) != Some(id) {
            return Err(StateError::HeadNotHeld {
                author: author.clone(),
                seq: *seq,
            });
        }
        let key = ledger
            .bound_key(author)
            .ok_or_else(|| StateError::NoBoundKey(author.clone()))?;
        heads.insert(
            author.clone(),
            ChainHead {
                seq: *seq,
                id: *id,
                key: *key,
            },
        );
    }
    Ok(heads)
}
