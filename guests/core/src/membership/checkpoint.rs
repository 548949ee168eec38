//! From a [`Derived`] to checkpoint records and back (docs/design.md
//! §13.1 and 13.6): the part of checkpoints that needs `Derived`'s private
//! fields. The records and their encoding are `crate::checkpoint`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{
    keep_min, resolve, Address, AliveId, Derived, Flags, KeyIndex, Own, PeerState, Profile, Subject,
};
use crate::authors::AuthorId;
use crate::checkpoint::{ChainHead, OpenInc, Record, RecordProfile, StateError};
use crate::compact::{Pairs, U64Words};
use crate::ledger::Ledger;
use nodeplane_entry::signing::PublicKey;
use nodeplane_entry::MAX_AUTHOR_LEN;

/// Whether an entry could ever be authored under `id` (the entry format's
/// author bounds): claims about any other subject can never take effect.
fn can_author(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_AUTHOR_LEN
}

impl Derived {
    /// The sticky verdicts that hold now (§13.8): each subject loaded
    /// `dead` at incarnation `i` whose claim without verdicts is still
    /// `alive` or `suspect` at `i`, with the verdict at `i` held. `V`
    /// starts from them; the death rule adds the rest.
    pub(super) fn sticky_dead(&self) -> BTreeSet<String> {
        self.sticky
            .iter()
            .filter(|(id, &inc)| {
                self.subject(id).is_some_and(|s| {
                    s.base_claim()
                        .is_some_and(|c| c.inc == inc && c.state.is_live())
                        && s.verdict(inc).is_some()
                })
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Makes `id`'s verdict at `inc` sticky, as loading a record flagged
    /// `dead` does (13.8), and recomputes `V`: the tests' model of a view
    /// loaded from a checkpoint.
    #[cfg(test)]
    pub(crate) fn make_sticky(&mut self, id: &str, inc: u64) {
        self.sticky.insert(id.to_string(), inc);
        self.recheck = true;
        self.settle(&mut BTreeSet::new());
    }

    /// The `L` members of the death rule, sorted: counted live (`C`: a
    /// profile, not `left`, a key of their own) and not in the dead set
    /// `V`. The voters of the next checkpoint when `self` is loaded from a
    /// checkpoint state (13.4).
    pub(crate) fn live_members(&self) -> Vec<String> {
        self.sorted_subjects()
            .filter(|&(a, id)| self.counted(a) && !self.dead.contains(&**id))
            .map(|(_, id)| id.to_string())
            .collect()
    }

    /// The records of checkpoint 1 (13.1): one per author of `heads` and
    /// per subject this derivation holds, sorted by author. `self` must be
    /// the derivation of exactly the entries up to `heads`; members `left`
    /// or `dead` get `departed_since = n`. `ledger`: the one a node's
    /// derivation got its entries with (its own entries' ids are there).
    pub(crate) fn checkpoint_records(
        &self,
        heads: &BTreeMap<&str, ChainHead>,
        n: u32,
        ledger: Option<&Ledger>,
    ) -> Result<Vec<Record>, StateError> {
        let names: BTreeSet<&str> = heads
            .keys()
            .copied()
            .chain(
                self.authors
                    .iter()
                    .filter(|&(a, _)| self.subject_at(a).is_some())
                    .map(|(_, k)| &**k),
            )
            .filter(|id| can_author(id))
            .collect();
        let names: Vec<&str> = names.into_iter().collect();
        if u32::try_from(names.len()).is_err() {
            return Err(StateError::TooManyRecords(names.len()));
        }
        let index_of = |author: &str| -> Result<u32, StateError> {
            names
                .binary_search(&author)
                .ok()
                .filter(|_| heads.contains_key(author))
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| StateError::AuthorNotInCut(author.to_string()))
        };
        let mut out = Vec::with_capacity(names.len());
        for &name in &names {
            let s = self.subject(name);
            let own = s.and_then(|s| s.own.last_key_value());
            let top_inc = own.map_or(0, |(inc, _)| inc.get());
            let profile = s
                .and_then(|s| Some((s, s.profile.as_ref()?)))
                .map(|(s, p)| RecordProfile {
                    seq: s.profile_seq(),
                    // Only without an own claim, whatever the arrival order
                    // left in the derivation (`entry_of` reads it only then).
                    id: s
                        .others
                        .as_ref()
                        .and_then(|o| o.profile_entry.as_deref().copied())
                        .filter(|_| own.is_none()),
                    addr: p.addr.to_string(),
                    meta: p.meta.to_vec(),
                });
            let departed = self
                .claim(name)
                .is_some_and(|c| matches!(c.state, PeerState::Left | PeerState::Dead));
            let mut open: BTreeMap<u64, OpenInc> = BTreeMap::new();
            let blank = |inc: u64| OpenInc {
                inc,
                suspecters: Vec::new(),
                held: Vec::new(),
                verdict: None,
            };
            if let Some(o) = s.and_then(|s| s.others.as_ref()) {
                for (&inc, sus) in o.suspects.iter().filter(|(&i, _)| i >= top_inc) {
                    let slot = open.entry(inc).or_insert_with(|| blank(inc));
                    let name_of = |a: &AuthorId| self.authors.name(*a).map_or("", |n| &**n);
                    for (a, id) in sus.authors.iter() {
                        slot.suspecters.push((index_of(name_of(a))?, *id));
                    }
                    for a in sus.held.iter() {
                        slot.held.push(index_of(name_of(a))?);
                    }
                    slot.suspecters.sort_unstable_by_key(|(i, _)| *i);
                    slot.held.sort_unstable();
                }
                for (&inc, id) in o.verdicts.iter().filter(|(&i, _)| i >= top_inc) {
                    open.entry(inc).or_insert_with(|| blank(inc)).verdict = Some(*id);
                }
            }
            out.push(Record {
                author: name.to_string(),
                head: heads.get(name).cloned(),
                top_inc,
                own_alive: own
                    .and_then(|(_, o)| o.alive.as_ref())
                    .and_then(|a| resolve(a.entry(), name, ledger)),
                own_leave: own.and(s).and_then(|s| s.left(top_inc).copied()),
                profile,
                departed_since: departed.then_some(n),
                dead: self.dead.contains(name),
                open: open
                    .into_values()
                    .filter(|o| {
                        !o.suspecters.is_empty() || !o.held.is_empty() || o.verdict.is_some()
                    })
                    .collect(),
            });
        }
        Ok(out)
    }

    /// The derivation `records` stand for (13.6, `G`'s start), with the
    /// quorum floor `floor`: subjects, own claims at `top_inc`, profiles,
    /// open claims and keys loaded, then `counted_live`, `key_shared`, the
    /// suspecters' live counts, `by_author`, the candidates and the dead
    /// set recomputed exactly as [`Derived::apply`] keeps them. Indices
    /// that name no record are skipped (a decoded state has none).
    pub(crate) fn from_checkpoint(records: &[Record], floor: u32) -> Derived {
        let mut d = Derived::with_quorum_floor(floor);
        // A handle per record, in record (author) order.
        let handles: Vec<Option<AuthorId>> = records.iter().map(|r| d.handle(&r.author)).collect();
        let handle = |i: u32| {
            usize::try_from(i)
                .ok()
                .and_then(|i| handles.get(i).copied().flatten())
        };
        let mut keys: BTreeMap<PublicKey, Vec<Arc<str>>> = BTreeMap::new();
        for (r, &h) in records.iter().zip(&handles) {
            let Some(h) = h else { continue };
            let mut s = Subject::default();
            let mut flags = Flags(Flags::FILED);
            if r.has_own() {
                s.own.insert(
                    U64Words::new(r.top_inc),
                    Own {
                        alive: r.own_alive.map(|id| AliveId::Id(Box::new(id))),
                    },
                );
                if let Some(leave) = r.own_leave {
                    s.others_mut()
                        .left
                        .get_or_insert_with(Box::default)
                        .insert(r.top_inc, leave);
                }
            }
            if let Some(p) = &r.profile {
                s.set_profile_seq(p.seq);
                s.profile = Some(Arc::new(Profile {
                    addr: Address::new(p.addr.clone()),
                    meta: Pairs::new(&p.meta),
                }));
                if let Some(id) = p.id {
                    s.others_mut().profile_entry = Some(Box::new(id));
                }
            }
            for o in &r.open {
                if !o.suspecters.is_empty() || !o.held.is_empty() {
                    let sus = s.others_mut().suspects.entry_or_default(o.inc);
                    for &(i, entry) in &o.suspecters {
                        let Some(a) = handle(i) else { continue };
                        sus.authors.insert(a, entry);
                        keep_min(&mut sus.first, entry);
                        d.by_author.entry(a).or_default().insert((h, o.inc));
                    }
                    for &i in &o.held {
                        let Some(a) = handle(i) else { continue };
                        sus.held.insert(a);
                        d.by_author.entry(a).or_default().insert((h, o.inc));
                    }
                }
                if let Some(v) = o.verdict {
                    s.others_mut().verdicts.insert(o.inc, v);
                }
            }
            if r.dead {
                d.sticky.insert(r.author.clone(), r.top_inc);
            }
            if let Some(head) = &r.head {
                flags.set(Flags::KEY_SEEN, true);
                if let Some(id) = d.authors.name(h) {
                    keys.entry(head.key).or_default().push(id.clone());
                }
            }
            if let Some(slot) = d.subjects.get_mut(h.index()) {
                *slot = s;
            }
            if let Some(slot) = d.flags.get_mut(h.index()) {
                *slot = flags;
            }
        }
        // Records are sorted by author, so each key's authors are too.
        for (key, authors) in keys {
            if let Some(first) = authors.first().and_then(|a| d.authors.find(a)) {
                if let KeyIndex::Own(keys) = &mut d.authors_of_key {
                    keys.insert(key, first);
                }
            }
            if authors.len() >= 2 {
                for a in &authors {
                    if let Some(h) = d.authors.find(a) {
                        if d.file(h).is_some() {
                            d.set_flag(h, Flags::KEY_SHARED, true);
                        }
                    }
                }
                d.shared_keys.insert(key, authors);
            }
        }
        // Everyone starts not counted live; `refresh` counts each subject
        // in (and its suspicions of others), then places the candidates.
        for h in handles.iter().flatten() {
            d.refresh_at(*h);
        }
        d.settle(&mut BTreeSet::new());
        d
    }
}
