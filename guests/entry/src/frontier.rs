//! The frontier of a ledger (every author's head) and its digest: the one
//! value two nodes compare to know they hold the same ledger. The node plane,
//! the agent's `/ledger/head` and the simulator all compute it here.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::{Entry, Hash};

/// Domain-separation prefix of the frontier digest.
pub const FRONTIER_TAG: &[u8] = b"nodeplane-frontier/1";

/// One author's head: the highest sequence number held and its entry's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The author.
    pub author: String,
    /// Highest sequence number held.
    pub seq: u64,
    /// Id of the entry at that sequence number.
    pub id: Hash,
}

/// The heads of a set of entries given in store order, sorted by author
/// (byte order). An author with two entries at its highest sequence number
/// (its chain's, and equivocation evidence stored after it) is represented
/// by the first given, its chain's, so the result is the same on every node
/// that holds the same chains, whatever evidence each kept.
pub fn frontier<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Vec<Head> {
    let mut heads: BTreeMap<&str, (u64, Hash)> = BTreeMap::new();
    for e in entries {
        let head = heads.entry(&e.author).or_insert((0, [0; 32]));
        // The first entry given at a sequence number is the chain's: a
        // store appends an author's chain in order, and a conflicting entry
        // (equivocation evidence) only after the slot was taken. Evidence
        // is held up to a cap, so which of it a node holds may differ; the
        // chain does not.
        if e.seq > head.0 {
            *head = (e.seq, e.id);
        }
    }
    heads
        .into_iter()
        .map(|(author, (seq, id))| Head {
            author: author.to_string(),
            seq,
            id,
        })
        .collect()
}

/// SHA-256 over [`FRONTIER_TAG`] then, per head in the order given (which
/// must be by author, byte order), u32-BE author length, author, u64-BE
/// head seq and the 32-byte head id. Equal iff the head sets are equal.
pub fn frontier_digest<'a>(heads: impl IntoIterator<Item = (&'a str, u64, &'a Hash)>) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(FRONTIER_TAG);
    for (author, seq, id) in heads {
        hasher.update((author.len() as u32).to_be_bytes());
        hasher.update(author.as_bytes());
        hasher.update(seq.to_be_bytes());
        hasher.update(id);
    }
    hasher.finalize().into()
}

/// The frontier digest of a set of entries ([`frontier`], then
/// [`frontier_digest`]).
pub fn digest_of<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Hash {
    let heads = frontier(entries);
    frontier_digest(heads.iter().map(|h| (h.author.as_str(), h.seq, &h.id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GENESIS_PREV;

    #[test]
    fn digest_depends_on_heads_only() {
        let a1 = Entry::new("a", 1, GENESIS_PREV, 1, "join", vec![]);
        let a2 = Entry::new("a", 2, a1.id, 2, "alive", vec![]);
        let b1 = Entry::new("b", 1, GENESIS_PREV, 1, "join", vec![]);
        let one = digest_of([&a1, &a2, &b1]);
        assert_eq!(one, digest_of([&b1, &a2, &a1]));
        assert_ne!(one, digest_of([&a1, &b1]));
        let heads = frontier([&a1, &a2, &b1]);
        assert_eq!(heads[0].seq, 2);
        assert_eq!(heads[1].author, "b");
    }

    #[test]
    fn an_equivocated_head_is_the_first_stored_one() {
        let x = Entry::new("a", 1, GENESIS_PREV, 1, "join", vec![]);
        let y = Entry::new("a", 1, GENESIS_PREV, 2, "join", vec![]);
        assert_eq!(frontier([&x, &y])[0].id, x.id);
        assert_eq!(frontier([&y, &x])[0].id, y.id);
    }

    /// Golden vector: the empty frontier is SHA-256 of the tag alone.
    #[test]
    fn empty_frontier_is_the_tag_hash() {
        let expected: Hash = Sha256::digest(FRONTIER_TAG).into();
        assert_eq!(frontier_digest([]), expected);
    }
}
