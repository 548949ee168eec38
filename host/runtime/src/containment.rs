//! Crash containment: how long a node waits before rebuilding a component
//! that keeps crashing, and the quarantine of messages that crash it.
//!
//! A trap is a crash of the component only; the host rebuilds it from the
//! ledger. Without a bound, one hostile datagram per rebuild would keep the
//! node replaying its ledger (`init` may burn 5·10¹⁰ fuel) in a tight loop,
//! and the same bytes replayed would crash every new instance. So:
//! rebuilds of one crash streak back off exponentially up to a cap, and
//! bytes that crashed the component [`QUARANTINE_AFTER_CRASHES`] times are
//! dropped before they reach it.

use std::collections::{HashMap, HashSet, VecDeque};

use sha2::{Digest, Sha256};

/// Delay before the second rebuild of a crash streak; each further crash
/// of the streak doubles it. The first crash of a streak is rebuilt at
/// once (one fault costs one rebuild, as before), the second waits this
/// long: short enough that a rare double fault is invisible to peers (a
/// probe period is 1 s by default), long enough that a crash loop cannot
/// saturate a core with ledger replays.
pub const REBUILD_BACKOFF_BASE_MS: u64 = 100;

/// Longest wait between two rebuilds: at most two ledger replays a minute
/// under a sustained crash loop. Peers may suspect the node meanwhile (its
/// component does not answer); that is the truth, and it refutes once back.
pub const REBUILD_BACKOFF_MAX_MS: u64 = 30_000;

/// A crash more than this long after the previous one starts a new streak,
/// rebuilt at once again: a component that ran a minute without crashing
/// is taken to be healthy. Twice [`REBUILD_BACKOFF_MAX_MS`], so a loop that
/// reached the cap stays at it.
pub const CRASH_STREAK_RESET_MS: u64 = 2 * REBUILD_BACKOFF_MAX_MS;

/// Crashes the same message bytes may cause before they are quarantined:
/// one crash may be a coincidence (fuel, memory, a timer due at the same
/// time); the same bytes crashing a fresh instance again are the cause.
pub const QUARANTINE_AFTER_CRASHES: u32 = 2;

/// Distinct payloads remembered as having crashed the component once
/// (32-byte hash and a count each, oldest forgotten first). An attacker
/// varying its bytes gains nothing from evicting them: each variant still
/// pays the rebuild back-off.
pub const MAX_CRASH_SUSPECTS: usize = 256;

/// Distinct payloads held in quarantine (32 bytes each, 32 KiB in all),
/// oldest released first.
pub const MAX_QUARANTINED: usize = 1024;

/// The delay before rebuilding after the `streak`-th crash of a streak:
/// 0 for the first, then [`REBUILD_BACKOFF_BASE_MS`] doubling up to
/// [`REBUILD_BACKOFF_MAX_MS`].
pub fn rebuild_delay_ms(streak: u32) -> u64 {
    match streak {
        0 | 1 => 0,
        n => {
            let doublings = n.saturating_sub(2).min(32);
            REBUILD_BACKOFF_BASE_MS
                .saturating_mul(1u64 << doublings)
                .min(REBUILD_BACKOFF_MAX_MS)
        }
    }
}

/// The crash streak of one node.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    streak: u32,
    last_crash_ms: Option<u64>,
}

impl Backoff {
    /// Records a crash (or a failed rebuild) at `now_ms`; returns how long
    /// to wait before the next rebuild.
    pub(crate) fn crashed(&mut self, now_ms: u64) -> u64 {
        let quiet = self
            .last_crash_ms
            .is_none_or(|last| now_ms.saturating_sub(last) > CRASH_STREAK_RESET_MS);
        if quiet {
            self.streak = 0;
        }
        self.last_crash_ms = Some(now_ms);
        self.streak = self.streak.saturating_add(1);
        rebuild_delay_ms(self.streak)
    }

    /// Crashes in the current streak.
    pub(crate) fn streak(&self) -> u32 {
        self.streak
    }
}

/// SHA-256 of a message's bytes: how the quarantine and the event log name
/// a message.
pub(crate) type PayloadHash = [u8; 32];

/// Hashes a payload.
pub(crate) fn payload_hash(payload: &[u8]) -> PayloadHash {
    Sha256::digest(payload).into()
}

/// Payloads that crashed the component, and those quarantined.
#[derive(Debug, Default)]
pub(crate) struct Quarantine {
    /// Crashes per payload, below the quarantine threshold.
    suspects: HashMap<PayloadHash, u32>,
    suspect_order: VecDeque<PayloadHash>,
    quarantined: HashSet<PayloadHash>,
    quarantine_order: VecDeque<PayloadHash>,
}

impl Quarantine {
    /// The payload's hash if it is quarantined (hashes only when something
    /// is, so the common case costs nothing).
    pub(crate) fn holds(&self, payload: &[u8]) -> Option<PayloadHash> {
        if self.quarantined.is_empty() {
            return None;
        }
        let hash = payload_hash(payload);
        self.quarantined.contains(&hash).then_some(hash)
    }

    /// Records that `hash` crashed the component; returns the crashes it
    /// has caused and whether that put it in quarantine just now.
    pub(crate) fn crashed(&mut self, hash: PayloadHash) -> (u32, bool) {
        if self.quarantined.contains(&hash) {
            return (QUARANTINE_AFTER_CRASHES, false);
        }
        let count = match self.suspects.get_mut(&hash) {
            Some(count) => {
                *count = count.saturating_add(1);
                *count
            }
            None => {
                if self.suspects.len() >= MAX_CRASH_SUSPECTS {
                    if let Some(oldest) = self.suspect_order.pop_front() {
                        self.suspects.remove(&oldest);
                    }
                }
                self.suspects.insert(hash, 1);
                self.suspect_order.push_back(hash);
                1
            }
        };
        if count < QUARANTINE_AFTER_CRASHES {
            return (count, false);
        }
        self.suspects.remove(&hash);
        self.suspect_order.retain(|h| *h != hash);
        if self.quarantined.len() >= MAX_QUARANTINED {
            if let Some(oldest) = self.quarantine_order.pop_front() {
                self.quarantined.remove(&oldest);
            }
        }
        self.quarantined.insert(hash);
        self.quarantine_order.push_back(hash);
        (count, true)
    }

    /// Payloads in quarantine now.
    pub(crate) fn len(&self) -> usize {
        self.quarantined.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rebuild_is_immediate_then_doubles_up_to_the_cap() {
        assert_eq!(rebuild_delay_ms(1), 0);
        assert_eq!(rebuild_delay_ms(2), REBUILD_BACKOFF_BASE_MS);
        assert_eq!(rebuild_delay_ms(3), 2 * REBUILD_BACKOFF_BASE_MS);
        assert_eq!(rebuild_delay_ms(4), 4 * REBUILD_BACKOFF_BASE_MS);
        assert_eq!(rebuild_delay_ms(30), REBUILD_BACKOFF_MAX_MS);
        assert_eq!(rebuild_delay_ms(u32::MAX), REBUILD_BACKOFF_MAX_MS);
    }

    #[test]
    fn a_quiet_minute_starts_a_new_streak() {
        let mut b = Backoff::default();
        assert_eq!(b.crashed(1_000), 0);
        assert_eq!(b.crashed(1_010), REBUILD_BACKOFF_BASE_MS);
        assert_eq!(b.crashed(1_200), 2 * REBUILD_BACKOFF_BASE_MS);
        assert_eq!(b.streak(), 3);
        assert_eq!(b.crashed(1_200 + CRASH_STREAK_RESET_MS + 1), 0);
        assert_eq!(b.streak(), 1);
        // Time going backwards (it does not, but) never panics.
        assert_eq!(b.crashed(0), REBUILD_BACKOFF_BASE_MS);
    }

    #[test]
    fn bytes_are_quarantined_on_their_second_crash() {
        let mut q = Quarantine::default();
        let poison = payload_hash(b"poison");
        assert_eq!(q.holds(b"poison"), None);
        assert_eq!(q.crashed(poison), (1, false));
        assert_eq!(q.holds(b"poison"), None);
        assert_eq!(q.crashed(poison), (2, true));
        assert_eq!(q.holds(b"poison"), Some(poison));
        assert_eq!(q.holds(b"other"), None);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn both_tables_are_bounded() {
        let mut q = Quarantine::default();
        for i in 0..(MAX_CRASH_SUSPECTS + MAX_QUARANTINED) as u64 * 2 {
            let h = payload_hash(&i.to_be_bytes());
            q.crashed(h);
            if i % 2 == 0 {
                q.crashed(h);
            }
        }
        assert!(q.suspects.len() <= MAX_CRASH_SUSPECTS);
        assert_eq!(q.suspects.len(), q.suspect_order.len());
        assert!(q.len() <= MAX_QUARANTINED);
        assert_eq!(q.quarantined.len(), q.quarantine_order.len());
    }
}
