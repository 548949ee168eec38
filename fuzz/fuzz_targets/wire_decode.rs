//! `nodeplane_core::wire::decode` on arbitrary bytes: never panics, and a
//! message it accepts re-encodes to bytes that decode to the same message
//! (what the node relays is what it understood).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodeplane_core::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = wire::decode(data) {
        let bytes = wire::encode(&msg);
        let again = wire::decode(&bytes).expect("a re-encoded accepted message decodes");
        assert_eq!(again, msg, "decode(encode(m)) == m");
        // Convert every entry the way the node does (wire → ledger entry).
        let entries = match msg {
            wire::Message::Ping { entries, .. }
            | wire::Message::Ack { entries, .. }
            | wire::Message::Gossip { entries }
            | wire::Message::Entries { entries, .. } => entries,
            _ => Vec::new(),
        };
        for e in entries {
            let entry: nodeplane_core::Entry = e.into();
            let _ = entry.verify();
            let _ = nodeplane_core::wire::entry_wire_size(&entry);
        }
    }
});
