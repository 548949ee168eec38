//! The internal pseudo-random generator, seeded by the caller.

use std::collections::BTreeMap;

/// SplitMix64: tiny, fast, and good enough for choosing probe targets.
/// Not for cryptography; determinism is the point.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6a09_e667_f3bc_c909)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n` > 0; 0 for `n` = 0 rather than a panic).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        self.next_u64().checked_rem(n).unwrap_or(0)
    }

    /// Shuffles a slice in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below((i as u64).saturating_add(1)) as usize;
            items.swap(i, j);
        }
    }

    /// Up to `k` distinct items of `items`, in random order. Costs
    /// O(k log k) whatever the length of `items`.
    pub fn sample<T: Clone>(&mut self, items: &[T], k: usize) -> Vec<T> {
        let mut perm = Permutation::new(items.len());
        (0..k.min(items.len()))
            .filter_map(|_| perm.next(self))
            .filter_map(|i| items.get(i).cloned())
            .collect()
    }
}

/// A random permutation of `0..n` drawn one index at a time (a sparse
/// Fisher-Yates shuffle): the first k indices cost O(k log k), whatever `n`,
/// so "the first few members that pass a test, in random order" needs no
/// scan of every member. Draws the same indices as shuffling `0..n` front
/// to back would.
#[derive(Clone, Debug)]
pub struct Permutation {
    n: usize,
    i: usize,
    /// Positions at or after `i` whose content was swapped away.
    moved: BTreeMap<usize, usize>,
}

impl Permutation {
    /// A permutation of `0..n`, nothing drawn yet.
    pub fn new(n: usize) -> Permutation {
        Permutation {
            n,
            i: 0,
            moved: BTreeMap::new(),
        }
    }

    /// The next index, or `None` once all `n` were drawn.
    pub fn next(&mut self, rng: &mut Rng) -> Option<usize> {
        if self.i >= self.n {
            return None;
        }
        let i = self.i;
        // i < n here, so neither can wrap.
        let j = i.saturating_add(rng.below(self.n.saturating_sub(i) as u64) as usize);
        let at_i = self.moved.remove(&i).unwrap_or(i);
        let at_j = if j == i {
            at_i
        } else {
            let at_j = self.moved.get(&j).copied().unwrap_or(j);
            self.moved.insert(j, at_i);
            at_j
        };
        self.i = self.i.saturating_add(1);
        Some(at_j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_permutation_matches_a_full_shuffle() {
        for n in [0usize, 1, 2, 7, 100] {
            let mut a = Rng::new(n as u64);
            let mut b = Rng::new(n as u64);
            let mut idx: Vec<usize> = (0..n).collect();
            for i in 0..n {
                let j = i + a.below((n - i) as u64) as usize;
                idx.swap(i, j);
            }
            let mut p = Permutation::new(n);
            let lazy: Vec<usize> = std::iter::from_fn(|| p.next(&mut b)).collect();
            assert_eq!(lazy, idx);
        }
    }
}
