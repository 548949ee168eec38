//! Agreement on checkpoints (docs/design.md §13.4) as pure functions of an
//! entry set: the voters, the `checkpoint` and `checkpoint-vote` bodies
//! (parsed as hostile input), each round's tally and outcome, the proposer
//! ranking, and the trigger. Nothing in the node calls them yet.
//!
//! Decisions (see /work/notes/checkpoint-state.md, "Second step"):
//!
//! - The entries given must be, per author, a prefix of its chain (what a
//!   ledger holds): "first in chain order" is then final once seen, and
//!   every outcome is monotone as entries are added.
//! - A voter's **first** entry in chain order that is either a valid
//!   `checkpoint-vote` for (n, ρ) or a `leave` decides its part in round
//!   ρ: a vote counts (skip or id), a `leave` counts it as left, and
//!   whatever follows is ignored. (A vote after its own `leave` would
//!   otherwise raise D again and could undo an agreement.)
//! - A round is **void** when no id, voted for or not, could still reach
//!   a strict majority of D: `2 × (max votes for one id + undecided) ≤ D`.
//!   Skips are votes for no id.
//! - For **n = 1** the voters are the L members of the proposal's own
//!   state, and the proposer ranking uses that set with a previous id of
//!   32 zero bytes: a proposal of checkpoint 1 is valid only if its author
//!   is round ρ's proposer in the ranking of its own state's voters.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::State;
use crate::config::{CHECKPOINT_MIN_TAIL, CHECKPOINT_TAIL_PER_MEMBER};
use crate::ledger::{Entry, Hash};
use crate::membership::KIND_LEAVE;

/// Entry kind of a checkpoint proposal.
pub const KIND_CHECKPOINT: &str = "checkpoint";
/// Entry kind of a vote on a checkpoint proposal.
pub const KIND_CHECKPOINT_VOTE: &str = "checkpoint-vote";
/// Largest body of either kind this reader accepts (a proposal is about
/// 260 bytes of JSON).
pub const MAX_AGREEMENT_BODY: usize = 512;

/// Why a `checkpoint` or `checkpoint-vote` body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The entry is not of the kind parsed.
    #[error("entry kind {0:?} is not {1:?}")]
    Kind(String, &'static str),
    /// The body is longer than [`MAX_AGREEMENT_BODY`].
    #[error("body of {0} bytes is too large")]
    TooLarge(usize),
    /// Not the JSON object of the kind (missing, extra or mistyped field).
    #[error("body: {0}")]
    Json(String),
    /// A field is not 64 lowercase hex digits (or, for a vote's id, empty).
    #[error("field {0}: not a 32-byte hex id")]
    BadId(&'static str),
    /// `n` is 0 (checkpoint 0 is the empty state; nobody proposes it).
    #[error("checkpoint number 0")]
    ZeroN,
}

/// A `checkpoint` entry's body: `{"n","round","id","prev","cut"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The checkpoint number.
    pub n: u64,
    /// The round.
    pub round: u32,
    /// The proposed checkpoint's id.
    pub id: Hash,
    /// The id of checkpoint `n − 1` (zeros for `n = 1`).
    pub prev: Hash,
    /// The cut digest.
    pub cut: Hash,
}

/// A `checkpoint-vote` entry's body: `{"n","round","id"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// The checkpoint number.
    pub n: u64,
    /// The round.
    pub round: u32,
    /// The id voted for; `None` for a skip (an empty `id`).
    pub id: Option<Hash>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProposal {
    n: u64,
    round: u32,
    id: String,
    prev: String,
    cut: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVote {
    n: u64,
    round: u32,
    id: String,
}

/// A 32-byte id from exactly 64 lowercase hex digits.
fn hex_id(s: &str, field: &'static str) -> Result<Hash, BodyError> {
    let ok = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !ok {
        return Err(BodyError::BadId(field));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| BodyError::BadId(field))?;
    Ok(out)
}

fn body_of<'a>(e: &'a Entry, kind: &'static str) -> Result<&'a [u8], BodyError> {
    if e.kind != kind {
        return Err(BodyError::Kind(e.kind.to_string(), kind));
    }
    if e.body.len() > MAX_AGREEMENT_BODY {
        return Err(BodyError::TooLarge(e.body.len()));
    }
    Ok(&e.body)
}

impl Proposal {
    /// Parses a `checkpoint` entry's body.
    pub fn parse(e: &Entry) -> Result<Proposal, BodyError> {
        let raw: RawProposal = serde_json::from_slice(body_of(e, KIND_CHECKPOINT)?)
            .map_err(|err| BodyError::Json(err.to_string()))?;
        if raw.n == 0 {
            return Err(BodyError::ZeroN);
        }
        Ok(Proposal {
            n: raw.n,
            round: raw.round,
            id: hex_id(&raw.id, "id")?,
            prev: hex_id(&raw.prev, "prev")?,
            cut: hex_id(&raw.cut, "cut")?,
        })
    }

    /// The body's encoding.
    pub fn body(&self) -> Vec<u8> {
        serde_json::json!({
            "n": self.n,
            "round": self.round,
            "id": hex::encode(self.id),
            "prev": hex::encode(self.prev),
            "cut": hex::encode(self.cut),
        })
        .to_string()
        .into_bytes()
    }
}

impl Vote {
    /// Parses a `checkpoint-vote` entry's body.
    pub fn parse(e: &Entry) -> Result<Vote, BodyError> {
        let raw: RawVote = serde_json::from_slice(body_of(e, KIND_CHECKPOINT_VOTE)?)
            .map_err(|err| BodyError::Json(err.to_string()))?;
        if raw.n == 0 {
            return Err(BodyError::ZeroN);
        }
        let id = if raw.id.is_empty() {
            None
        } else {
            Some(hex_id(&raw.id, "id")?)
        };
        Ok(Vote {
            n: raw.n,
            round: raw.round,
            id,
        })
    }

    /// The body's encoding.
    pub fn body(&self) -> Vec<u8> {
        serde_json::json!({
            "n": self.n,
            "round": self.round,
            "id": self.id.map(hex::encode).unwrap_or_default(),
        })
        .to_string()
        .into_bytes()
    }
}

/// The voters of checkpoint `n` from state(n − 1) (or, for `n = 1`, the
/// proposal's own state): its L members, loaded under `quorum_floor`,
/// sorted.
pub fn voters(state: &State, quorum_floor: u32) -> Vec<String> {
    state.load(quorum_floor).live_members()
}

/// The proposers of checkpoint `n`: `voters` ranked by SHA-256(id of
/// checkpoint `n − 1` ‖ author), ties (none in practice) by author.
pub fn ranking(prev: &Hash, voters: &[String]) -> Vec<String> {
    let mut keyed: Vec<(Hash, &String)> = voters
        .iter()
        .map(|a| {
            let mut h = Sha256::new();
            h.update(prev);
            h.update(a.as_bytes());
            (h.finalize().into(), a)
        })
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, a)| a.clone()).collect()
}

/// Round `round`'s proposer: rank `round mod |voters|`; none without
/// voters.
pub fn proposer(prev: &Hash, voters: &[String], round: u32) -> Option<String> {
    let ranked = ranking(prev, voters);
    let len = u64::try_from(ranked.len()).ok().filter(|&l| l > 0)?;
    let at = usize::try_from(u64::from(round).checked_rem(len)?).ok()?;
    ranked.get(at).cloned()
}

/// The proposal of round `round` of checkpoint `n` after the checkpoint
/// `prev`: the first valid `checkpoint` entry for (n, round, prev), in
/// chain order, of the round's proposer. Everyone else's are ignored.
pub fn proposal_of(
    entries: &[Entry],
    voters: &[String],
    prev: &Hash,
    n: u64,
    round: u32,
) -> Option<(Entry, Proposal)> {
    let who = proposer(prev, voters, round)?;
    let mut mine: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.author == who && e.kind == KIND_CHECKPOINT)
        .collect();
    mine.sort_by_key(|e| e.seq);
    mine.into_iter().find_map(|e| {
        Proposal::parse(e)
            .ok()
            .filter(|p| p.n == n && p.round == round && p.prev == *prev)
            .map(|p| (e.clone(), p))
    })
}

/// A round's count (13.4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// `|C(n − 1)|`.
    pub voters: usize,
    /// Votes per id (skips not included).
    pub votes: BTreeMap<Hash, usize>,
    /// Skips.
    pub skips: usize,
    /// Voters counted as left.
    pub left: usize,
    /// Voters that neither voted nor left.
    pub undecided: usize,
}

/// A round's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The id has a strict majority of D.
    Agreed(Hash),
    /// No id can reach one any more.
    Void,
    /// Neither yet.
    Open,
}

impl Tally {
    /// `D`: voters minus those that left.
    pub fn d(&self) -> usize {
        self.voters.saturating_sub(self.left)
    }

    /// Agreed, void or open.
    pub fn outcome(&self) -> Outcome {
        let d = self.d();
        if let Some((id, _)) = self.votes.iter().find(|(_, &v)| v.saturating_mul(2) > d) {
            return Outcome::Agreed(*id);
        }
        let best = self.votes.values().copied().max().unwrap_or(0);
        if best.saturating_add(self.undecided).saturating_mul(2) <= d {
            Outcome::Void
        } else {
            Outcome::Open
        }
    }
}

/// The tally of round `round` of checkpoint `n`: per voter (sorted,
/// unique), its first entry in chain order that is a valid vote for (n,
/// round) or a `leave`. Entries of non-voters are ignored. `entries` must
/// hold, per author, a prefix of its chain.
pub fn tally(entries: &[Entry], voters: &[String], n: u64, round: u32) -> Tally {
    let set: BTreeSet<&str> = voters.iter().map(String::as_str).collect();
    // Per voter, its deciding entry: (seq, Some(vote) | None = leave).
    let mut first: BTreeMap<&str, (u64, Option<Option<Hash>>)> = BTreeMap::new();
    for e in entries {
        if !set.contains(e.author.as_str()) {
            continue;
        }
        let what = if e.kind == KIND_LEAVE {
            None
        } else if e.kind == KIND_CHECKPOINT_VOTE {
            match Vote::parse(e) {
                Ok(v) if v.n == n && v.round == round => Some(v.id),
                _ => continue,
            }
        } else {
            continue;
        };
        let slot = first.entry(e.author.as_str()).or_insert((e.seq, what));
        if e.seq < slot.0 {
            *slot = (e.seq, what);
        }
    }
    let mut t = Tally {
        voters: set.len(),
        ..Tally::default()
    };
    for (_, what) in first.values() {
        match what {
            None => t.left = t.left.saturating_add(1),
            Some(None) => t.skips = t.skips.saturating_add(1),
            Some(Some(id)) => {
                let v = t.votes.entry(*id).or_insert(0);
                *v = v.saturating_add(1);
            }
        }
    }
    t.undecided = t.voters.saturating_sub(first.len());
    t
}

/// The trigger `K` for `voters` voters: `max(CHECKPOINT_MIN_TAIL,
/// CHECKPOINT_TAIL_PER_MEMBER × voters)`.
pub fn trigger(voters: usize) -> u64 {
    let v = u64::try_from(voters).unwrap_or(u64::MAX);
    CHECKPOINT_MIN_TAIL.max(CHECKPOINT_TAIL_PER_MEMBER.saturating_mul(v))
}

/// The tail length `T`: entries after the cut of `prev` (per author, above
/// its head there), `checkpoint` and `checkpoint-vote` entries not
/// counted. `entries` are linked entries (a ledger's).
pub fn tail_len(entries: &[Entry], prev: &State) -> u64 {
    let heads: BTreeMap<&str, u64> = prev
        .records
        .iter()
        .filter_map(|r| r.head.as_ref().map(|h| (r.author.as_str(), h.seq)))
        .collect();
    let count = entries
        .iter()
        .filter(|e| e.kind != KIND_CHECKPOINT && e.kind != KIND_CHECKPOINT_VOTE)
        .filter(|e| e.seq > heads.get(e.author.as_str()).copied().unwrap_or(0))
        .count();
    u64::try_from(count).unwrap_or(u64::MAX)
}
