//! `F` for `n > 1` (docs/design.md §13.1-13.2): state(n) from state(n − 1)
//! and the entries in cut(n) but not in cut(n − 1). State(n − 1) is loaded
//! (13.6), those entries are applied with the ordinary `Derived::apply`,
//! the records are taken (which drops moot claims, rule 1), and then rules
//! 2 (far-future pending claims) and 3 (expiry) run, in that order.
//!
//! Decisions (see /work/notes/checkpoint-state.md, "Second step"):
//!
//! - **Pending** incarnations of a record are those the subject has not
//!   announced: above `top_inc` when it holds a claim of its own, every
//!   open incarnation when it holds none (its `top_inc` is then 0 only by
//!   convention). The `CHECKPOINT_PENDING_INCS` lowest are kept.
//! - **`departed_since`** is set to `n` when a member is `left` or `dead`
//!   at cut(n) and was not at cut(n − 1); it is carried while the member
//!   stays departed at every cut, and cleared at a cut where it is not.
//!   What happens between two cuts is not seen: a member that comes back
//!   and departs again between them keeps its old `departed_since`.
//! - **Expiry** removes the record, its own claims and profile, the
//!   claims about it, and every suspicion and long-held vote it authored
//!   (entries of other records' open incarnations; an incarnation left
//!   with nothing is dropped). Verdict ids stay: a record keeps only the
//!   smallest `confirm-dead` id, not its author, and a verdict counts no
//!   vote (the death rule counts suspecters). A record left with no chain
//!   and no open claim holds nothing and is dropped with it (a subject
//!   only an expired member wrote about). Suspecter indices are then
//!   renumbered over the records that remain.
//! - **Keys**: the key index is recomputed from the records on every load,
//!   so an expired record's key is forgotten: an author that shared it
//!   with the expired member alone is counted live again, and the id and
//!   the key are free for a new `seq` 1 `join`.
//! - The **cut digest** is over cut(n)'s heads as given, expired authors
//!   included ([`Successor::cut`]); [`Successor::encode`] puts it in the
//!   header.
//! - The cut must not hold the old chain of an author whose record expired
//!   earlier: state(n − 1) has no record of it, so its entries would be
//!   taken for a new author's. The node's ledger drops an expired chain
//!   when it adopts the checkpoint (a later step; 13.2, "its id is free").

use std::collections::{BTreeMap, BTreeSet};

use super::{ChainHead, EncodeError, Encoded, Record, State, StateError};
use crate::config::{CHECKPOINT_EXPIRY, CHECKPOINT_PENDING_INCS};
use crate::ledger::{Entry, Hash, Ledger};

/// State(n) computed by `F` from state(n − 1), with what its header and
/// the node's updates need besides the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Successor {
    /// The checkpoint number.
    pub n: u64,
    /// The `death_quorum` floor it was derived with.
    pub quorum_floor: u32,
    /// The records, pruned.
    pub state: State,
    /// The frontier digest of cut(n)'s heads, before expiry (13.3).
    pub cut: Hash,
    /// The members whose records expired at this checkpoint (the
    /// `expired` update cause), sorted.
    pub expired: Vec<String>,
}

impl Successor {
    /// Encodes it as checkpoint `n`, agreed in `round`, after the
    /// checkpoint with id `prev`, with the cut's digest in the header.
    pub fn encode(&self, round: u32, prev: Hash) -> Result<Encoded, EncodeError> {
        self.state
            .encode_with_cut(self.n, round, prev, self.quorum_floor, self.cut)
    }
}

impl State {
    /// `F` (13.1): state(n) from this state (n − 1) and the entries of
    /// `ledger` in `cut` but not in the previous cut. `cut` is per author
    /// `(author, head seq, head id)`, sorted, as [`Ledger::frontier`]
    /// gives, and must extend every chain of this state.
    pub fn next(
        &self,
        n: u64,
        quorum_floor: u32,
        ledger: &Ledger,
        cut: &[(String, u64, Hash)],
    ) -> Result<Successor, StateError> {
        let heads = super::cut_heads(ledger, cut)?;
        let prev = self.previous_heads();
        let mut delta = Vec::new();
        for (author, head) in &heads {
            let from = match prev.get(author.as_str()) {
                Some(p) => {
                    if p.seq <= head.seq && ledger.id_at(author, p.seq) != Some(&p.id) {
                        return Err(StateError::Diverged {
                            author: author.clone(),
                            seq: p.seq,
                        });
                    }
                    p.seq
                }
                None => 0,
            };
            let want = head.seq.saturating_sub(from);
            let got = ledger.entries(
                author,
                from.saturating_add(1),
                usize::try_from(want).unwrap_or(usize::MAX),
            );
            if u64::try_from(got.len()).ok() != Some(want) {
                return Err(StateError::Delta(format!(
                    "the ledger holds {} of the {want} entries of {author} after seq {from}",
                    got.len()
                )));
            }
            delta.extend(got);
        }
        self.next_with(n, quorum_floor, &heads, &delta)
    }

    /// `F` from the cut's heads (with their bound keys) and exactly the
    /// entries in cut(n) but not in cut(n − 1), in any order.
    pub fn next_with(
        &self,
        n: u64,
        quorum_floor: u32,
        heads: &BTreeMap<String, ChainHead>,
        delta: &[Entry],
    ) -> Result<Successor, StateError> {
        if n < 2 {
            return Err(StateError::NumberTooSmall(n));
        }
        let n32 = u32::try_from(n).map_err(|_| StateError::NumberTooLarge(n))?;
        let prev = self.previous_heads();
        for (author, p) in &prev {
            let Some(h) = heads.get(*author) else {
                return Err(StateError::CutShrinks {
                    author: author.to_string(),
                    prev: p.seq,
                    seq: 0,
                });
            };
            if h.seq < p.seq {
                return Err(StateError::CutShrinks {
                    author: author.to_string(),
                    prev: p.seq,
                    seq: h.seq,
                });
            }
            if h.seq == p.seq && h.id != p.id {
                return Err(StateError::Diverged {
                    author: author.to_string(),
                    seq: p.seq,
                });
            }
            if h.key != p.key {
                return Err(StateError::KeyChanged(author.to_string()));
            }
        }
        // Exactly the seqs (previous head, cut head] of every author, the
        // cut's head among them with the cut's id.
        let mut seen: BTreeSet<(&str, u64)> = BTreeSet::new();
        for e in delta {
            let Some(h) = heads.get(&e.author) else {
                return Err(StateError::Delta(format!("{} is not in the cut", e.author)));
            };
            let from = prev.get(e.author.as_str()).map_or(0, |p| p.seq);
            if e.seq <= from || e.seq > h.seq || (e.seq == h.seq && e.id != h.id) {
                return Err(StateError::Delta(format!(
                    "{}#{} is not between the cuts",
                    e.author, e.seq
                )));
            }
            if !seen.insert((e.author.as_str(), e.seq)) {
                return Err(StateError::Delta(format!(
                    "{}#{} given twice",
                    e.author, e.seq
                )));
            }
        }
        for (author, h) in heads {
            let from = prev.get(author.as_str()).map_or(0, |p| p.seq);
            let have = seen
                .range((author.as_str(), 0)..=(author.as_str(), u64::MAX))
                .count();
            if u64::try_from(have).ok() != Some(h.seq.saturating_sub(from)) {
                return Err(StateError::Delta(format!(
                    "{have} entries of {author} given, {} needed",
                    h.seq.saturating_sub(from)
                )));
            }
        }

        let mut derived = self.load(quorum_floor);
        for e in delta {
            // An entry the derivation refuses changes nothing, as when a
            // node applies it live.
            let _ = derived.apply(e);
        }
        let by_name: BTreeMap<&str, ChainHead> =
            heads.iter().map(|(a, h)| (a.as_str(), h.clone())).collect();
        let mut records = derived.checkpoint_records(&by_name, n32, None)?;
        let since: BTreeMap<&str, u32> = self
            .records
            .iter()
            .filter_map(|r| r.departed_since.map(|d| (r.author.as_str(), d)))
            .collect();
        for r in &mut records {
            if r.departed_since.is_some() {
                if let Some(&d) = since.get(r.author.as_str()) {
                    r.departed_since = Some(d);
                }
            }
        }
        let expired = prune(&mut records, n);
        let cut =
            nodeplane_entry::frontier_digest(heads.iter().map(|(a, h)| (a.as_str(), h.seq, &h.id)));
        Ok(Successor {
            n,
            quorum_floor,
            state: State { records },
            cut,
            expired,
        })
    }

    /// The heads of this state's chains, by author.
    fn previous_heads(&self) -> BTreeMap<&str, &ChainHead> {
        self.records
            .iter()
            .filter_map(|r| r.head.as_ref().map(|h| (r.author.as_str(), h)))
            .collect()
    }
}

/// Rules 2 and 3 of 13.2, in that order, on the records of checkpoint `n`
/// (rule 1 is already what a record keeps): of each record's pending
/// incarnations only the `CHECKPOINT_PENDING_INCS` lowest are kept; a
/// record departed since `d` with `n − d ≥ CHECKPOINT_EXPIRY` is removed
/// with the claims it authored, and so is a record left holding nothing.
/// Returns the expired members, sorted. Not applied at `n = 1` (13.4).
pub fn prune(records: &mut Vec<Record>, n: u64) -> Vec<String> {
    // Rule 2.
    for r in records.iter_mut() {
        let announced = r.has_own().then_some(r.top_inc);
        let mut pending = 0usize;
        r.open.retain(|o| {
            if announced == Some(o.inc) {
                return true;
            }
            pending = pending.saturating_add(1);
            pending <= CHECKPOINT_PENDING_INCS
        });
    }
    // Rule 3.
    let gone: Vec<bool> = records
        .iter()
        .map(|r| {
            r.departed_since
                .is_some_and(|d| n.saturating_sub(u64::from(d)) >= CHECKPOINT_EXPIRY)
        })
        .collect();
    if !gone.contains(&true) {
        return Vec::new();
    }
    let is_gone = |i: u32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| gone.get(i))
            .copied()
            .unwrap_or(true)
    };
    for r in records.iter_mut() {
        for o in &mut r.open {
            o.suspecters.retain(|&(i, _)| !is_gone(i));
            o.held.retain(|&i| !is_gone(i));
        }
        r.open
            .retain(|o| !o.suspecters.is_empty() || !o.held.is_empty() || o.verdict.is_some());
    }
    let remove: Vec<bool> = records
        .iter()
        .zip(&gone)
        .map(|(r, &g)| g || (r.head.is_none() && r.open.is_empty()))
        .collect();
    let mut renumber: Vec<Option<u32>> = Vec::with_capacity(records.len());
    let mut next = 0u32;
    for &rm in &remove {
        if rm {
            renumber.push(None);
        } else {
            renumber.push(Some(next));
            next = next.saturating_add(1);
        }
    }
    let new_index = |i: u32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| renumber.get(i))
            .copied()
            .flatten()
    };
    let mut expired = Vec::new();
    let mut kept = Vec::with_capacity(records.len());
    for ((mut r, rm), g) in std::mem::take(records).into_iter().zip(remove).zip(gone) {
        if g {
            expired.push(r.author);
            continue;
        }
        if rm {
            continue;
        }
        for o in &mut r.open {
            o.suspecters = o
                .suspecters
                .iter()
                .filter_map(|&(i, id)| new_index(i).map(|j| (j, id)))
                .collect();
            o.held = o.held.iter().filter_map(|&i| new_index(i)).collect();
        }
        kept.push(r);
    }
    *records = kept;
    expired
}
