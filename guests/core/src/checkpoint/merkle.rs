//! The binary Merkle tree over a checkpoint's chunks (13.3): a leaf is
//! SHA-256(`CHUNK_TAG` ‖ u32 chunk index ‖ the chunk's bytes), an inner
//! node SHA-256(`NODE_TAG` ‖ left ‖ right), and an odd last node of a
//! level is carried up unchanged. The root of no chunks is all zeros.

use sha2::{Digest, Sha256};

use super::{CHUNK_TAG, NODE_TAG};
use crate::ledger::Hash;

/// The leaf hash of chunk `index` with these bytes.
pub fn chunk_leaf(index: u32, bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(CHUNK_TAG);
    h.update(index.to_be_bytes());
    h.update(bytes);
    h.finalize().into()
}

/// An inner node.
fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(NODE_TAG);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The next level up: pairs hashed, an odd last node carried.
fn up(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => node(l, r),
            [one] => *one,
            _ => [0; 32],
        })
        .collect()
}

/// The root over these leaves (all zeros for none).
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = up(&level);
    }
    level.first().copied().unwrap_or([0; 32])
}

/// The inclusion path of leaf `index`: the sibling at each level that has
/// one, bottom up (a carried node has none). `None` if out of range.
pub fn chunk_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let mut level = leaves.to_vec();
    let mut i = index;
    while level.len() > 1 {
        if let Some(s) = level.get(i ^ 1) {
            path.push(*s);
        }
        level = up(&level);
        i >>= 1;
    }
    Some(path)
}

/// Whether chunk `index` of `chunk_count` with these bytes is under `root`
/// by `path` ([`chunk_proof`]). Any path of the wrong length fails.
pub fn verify_chunk(
    root: &Hash,
    chunk_count: u32,
    index: u32,
    bytes: &[u8],
    path: &[Hash],
) -> bool {
    if index >= chunk_count {
        return false;
    }
    let mut h = chunk_leaf(index, bytes);
    let mut i = index;
    let mut width = chunk_count;
    let mut siblings = path.iter();
    while width > 1 {
        if (i ^ 1) < width {
            let Some(s) = siblings.next() else {
                return false;
            };
            h = if i & 1 == 0 { node(&h, s) } else { node(s, &h) };
        }
        i >>= 1;
        width = width.div_ceil(2);
    }
    siblings.next().is_none() && h == *root
}
