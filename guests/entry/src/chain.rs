//! Chain verification: each author's entries form a hash chain (seq 1, 2,
//! ...; each `prev` is the id of the previous entry). The node plane's
//! ledger, the agent's store and the simulator's end-of-run check all use
//! these checks.

use std::collections::BTreeMap;

use crate::{Entry, EntryError, Hash, GENESIS_PREV};

/// Why an entry does not fit its author's chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The entry fails on its own (id or bounds).
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// The entry's `prev` is not the id of the held previous entry.
    #[error(
        "entry {author}#{seq}: prev {} does not link to the held entry {author}#{} ({})",
        short(prev),
        seq.saturating_sub(1),
        short(held)
    )]
    Unlinked {
        /// Author of the entry.
        author: String,
        /// Sequence number of the entry.
        seq: u64,
        /// The entry's `prev`.
        prev: Hash,
        /// Id of the held entry at `seq - 1`.
        held: Hash,
    },
    /// No entry is held at `seq - 1` to link to.
    #[error(
        "entry {author}#{seq}: prev {} does not link to any held entry {author}#{} (author's head is #{head})",
        short(prev),
        seq.saturating_sub(1)
    )]
    Gap {
        /// Author of the entry.
        author: String,
        /// Sequence number of the entry.
        seq: u64,
        /// The entry's `prev`.
        prev: Hash,
        /// The author's highest sequence number held.
        head: u64,
    },
    /// Two different entries at one (author, seq).
    #[error("fork: author {author} has two entries at seq {seq}")]
    Fork {
        /// The author.
        author: String,
        /// The sequence number written twice.
        seq: u64,
    },
}

/// The first 8 bytes of a hash in hex, as error messages show it.
fn short(h: &Hash) -> String {
    hex::encode(&h[..8])
}

/// Checks that `entry` links to what its author's chain holds: `held` are
/// the ids held at `entry.seq - 1` (several when that slot equivocates;
/// ignored for seq 1, which must follow [`GENESIS_PREV`]) and `head` is the
/// author's highest sequence number held. Does not verify the entry itself
/// (see [`Entry::verify`]).
pub fn check_link(entry: &Entry, held: &[Hash], head: u64) -> Result<(), ChainError> {
    if entry.seq <= 1 {
        if entry.prev == GENESIS_PREV {
            return Ok(());
        }
        return Err(ChainError::Unlinked {
            author: entry.author.clone(),
            seq: entry.seq,
            prev: entry.prev,
            held: GENESIS_PREV,
        });
    }
    match held.iter().min() {
        None => Err(ChainError::Gap {
            author: entry.author.clone(),
            seq: entry.seq,
            prev: entry.prev,
            head,
        }),
        Some(_) if held.contains(&entry.prev) => Ok(()),
        Some(first) => Err(ChainError::Unlinked {
            author: entry.author.clone(),
            seq: entry.seq,
            prev: entry.prev,
            held: *first,
        }),
    }
}

/// Checks every entry and every author's chain: ids match contents, seqs
/// run 1..=n without gaps or forks, and each `prev` is the previous id.
/// Returns the first problem found.
pub fn verify_chains<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Result<(), ChainError> {
    let mut by_author: BTreeMap<&str, BTreeMap<u64, &Entry>> = BTreeMap::new();
    for e in entries {
        e.verify()?;
        if let Some(other) = by_author.entry(&e.author).or_default().insert(e.seq, e) {
            if other.id != e.id {
                return Err(ChainError::Fork {
                    author: e.author.clone(),
                    seq: e.seq,
                });
            }
        }
    }
    for chain in by_author.values() {
        let mut prev: Option<&Entry> = None;
        for (i, (seq, e)) in chain.iter().enumerate() {
            let head = i as u64;
            if Some(*seq) != head.checked_add(1) {
                return Err(ChainError::Gap {
                    author: e.author.clone(),
                    seq: *seq,
                    prev: e.prev,
                    head,
                });
            }
            let held: Vec<Hash> = prev.map(|p| p.id).into_iter().collect();
            check_link(e, &held, head)?;
            prev = Some(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(author: &str, n: u64) -> Vec<Entry> {
        let mut prev = GENESIS_PREV;
        (1..=n)
            .map(|seq| {
                let e = Entry::new(author, seq, prev, seq, "join", b"{}".to_vec());
                prev = e.id;
                e
            })
            .collect()
    }

    #[test]
    fn chains_verify_and_breaks_are_named() {
        let mut all = chain("a", 3);
        all.extend(chain("b", 2));
        verify_chains(&all).expect("valid chains");

        let forked = Entry::new("a", 2, GENESIS_PREV, 99, "join", vec![]);
        let mut bad = all.clone();
        bad.push(forked);
        assert!(matches!(
            verify_chains(&bad),
            Err(ChainError::Fork { seq: 2, .. })
        ));

        let gap: Vec<Entry> = chain("a", 3).into_iter().filter(|e| e.seq != 2).collect();
        assert!(matches!(
            verify_chains(&gap),
            Err(ChainError::Gap {
                seq: 3,
                head: 1,
                ..
            })
        ));
    }

    #[test]
    fn link_checks_name_the_held_entry() {
        let c = chain("a", 2);
        assert_eq!(check_link(&c[1], &[c[0].id], 1), Ok(()));
        assert_eq!(check_link(&c[0], &[], 0), Ok(()));
        let err = check_link(&c[1], &[[7; 32]], 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "entry a#2: prev {} does not link to the held entry a#1 (0707070707070707)",
                &c[0].id_hex()[..16]
            )
        );
        assert!(matches!(
            check_link(&c[1], &[], 0),
            Err(ChainError::Gap { head: 0, .. })
        ));
    }
}
