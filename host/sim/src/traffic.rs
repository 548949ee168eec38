//! What the nodes' messages carry, by message type and purpose: an
//! opt-in count ([`SimBuilder::count_traffic`](crate::SimBuilder::count_traffic))
//! that decodes every message sent, for the scenarios that report where
//! their bytes go (S6). Off by default: decoding every message would slow
//! the large runs for a breakdown they do not report.

use std::collections::{BTreeMap, HashSet};

use nodeplane_core::wire::{self, Message, WireEntry};

/// (messages or entries, bytes) of one class.
pub type Tally = (u64, u64);

/// The breakdown of the messages sent in a run.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    /// Per message type (`ping`, `sync`, `entries`, ...): messages, bytes
    /// (whole payloads).
    pub by_type: BTreeMap<&'static str, Tally>,
    /// Entries carried by any message, per entry kind (`note`, `join`,
    /// `checkpoint`, ...): entries, their wire bytes.
    pub entries_by_kind: BTreeMap<String, Tally>,
    /// Entries a node sent to a peer that it had already sent the same
    /// peer (same id), per entry kind: entries, their wire bytes.
    pub duplicates_by_kind: BTreeMap<String, Tally>,
    /// (sender, receiver, entry id) of every entry sent, for the count
    /// above.
    seen: HashSet<(usize, usize, [u8; 32])>,
    /// Messages that did not decode (a hostile node's, or a bug).
    pub undecodable: Tally,
}

impl Traffic {
    /// Counts one message of `payload` sent by `from` to `to` (node
    /// indices; `usize::MAX` for an address no node has).
    pub fn count(&mut self, from: usize, to: usize, payload: &[u8]) {
        let bytes = payload.len() as u64;
        let Ok(msg) = wire::decode(payload) else {
            add(&mut self.undecodable, 1, bytes);
            return;
        };
        add(self.by_type.entry(msg.name()).or_default(), 1, bytes);
        let entries: &[WireEntry] = match &msg {
            Message::Ping { entries, .. }
            | Message::Ack { entries, .. }
            | Message::Gossip { entries }
            | Message::Entries { entries, .. } => entries,
            _ => &[],
        };
        for e in entries {
            let size = entry_bytes(e);
            add(
                self.entries_by_kind.entry(e.kind.clone()).or_default(),
                1,
                size,
            );
            if !self.seen.insert((from, to, e.id)) {
                add(
                    self.duplicates_by_kind.entry(e.kind.clone()).or_default(),
                    1,
                    size,
                );
            }
        }
    }

    /// Bytes of all entries carried (every kind, duplicates included).
    pub fn entry_bytes(&self) -> u64 {
        self.entries_by_kind.values().map(|t| t.1).sum()
    }

    /// Bytes of the first copy each peer was sent of every entry whose
    /// kind is not `kind`: in S6, the entries the nodes wrote during the
    /// run (their joins, checkpoint proposals and votes), which are not
    /// the difference being reconciled.
    pub fn first_copy_bytes_except(&self, kind: &str) -> u64 {
        self.entries_by_kind
            .iter()
            .filter(|(k, _)| k.as_str() != kind)
            .map(|(k, t)| {
                let dup = self.duplicates_by_kind.get(k).map_or(0, |d| d.1);
                t.1.saturating_sub(dup)
            })
            .sum()
    }

    /// Figures for a report: `traffic_<type>_messages` / `_bytes` per
    /// message type, `traffic_kind_<kind>` / `_bytes` per entry kind,
    /// `traffic_kind_<kind>_repeated` / `_repeated_bytes` (copies sent
    /// again to the same peer), and
    /// `traffic_framing_bytes`: the bytes of every message besides the
    /// entries it carries.
    pub fn figures(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for (name, (m, b)) in &self.by_type {
            out.push((format!("traffic_{name}_messages"), *m as f64));
            out.push((format!("traffic_{name}_bytes"), *b as f64));
        }
        for (kind, (n, b)) in &self.entries_by_kind {
            out.push((format!("traffic_kind_{kind}"), *n as f64));
            out.push((format!("traffic_kind_{kind}_bytes"), *b as f64));
            let (dn, db) = self
                .duplicates_by_kind
                .get(kind)
                .copied()
                .unwrap_or_default();
            out.push((format!("traffic_kind_{kind}_repeated"), dn as f64));
            out.push((format!("traffic_kind_{kind}_repeated_bytes"), db as f64));
        }
        let all: u64 = self.by_type.values().map(|t| t.1).sum();
        out.push((
            "traffic_framing_bytes".into(),
            all.saturating_sub(self.entry_bytes()) as f64,
        ));
        out
    }
}

fn add(t: &mut Tally, n: u64, bytes: u64) {
    t.0 += n;
    t.1 += bytes;
}

/// Postcard bytes of `e` inside a message (as [`crate::ledger::wire_entry_size`]).
fn entry_bytes(e: &WireEntry) -> u64 {
    crate::ledger::entry_size_of(e.author.len(), e.seq, e.clock, e.kind.len(), e.body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_types_kinds_and_repeats() {
        let e = WireEntry {
            author: "a".into(),
            seq: 1,
            prev: [0; 32],
            clock: 1,
            kind: "note".into(),
            body: b"{}".to_vec(),
            id: [7; 32],
            signature: wire::WireSignature([0; 32], [0; 32]),
        };
        let msg = Message::Gossip {
            entries: vec![e.clone()],
        };
        let bytes = wire::encode(&msg);
        let mut t = Traffic::default();
        t.count(0, 1, &bytes);
        t.count(0, 1, &bytes);
        t.count(1, 0, &bytes);
        assert_eq!(t.by_type["gossip"], (3, 3 * bytes.len() as u64));
        assert_eq!(t.entries_by_kind["note"].0, 3);
        assert_eq!(t.duplicates_by_kind["note"].0, 1);
        assert_eq!(t.first_copy_bytes_except("join"), 2 * entry_bytes(&e));
        // Version byte, variant, entry count: the rest is the entry.
        assert_eq!(entry_bytes(&e) + 3, bytes.len() as u64);
    }
}
