//! Signed entries: whatever a component hands to the ledger store is
//! signed by its author under the key the author's first `join` bound, and
//! a node's own chain is bound to the key its host holds.

use std::collections::BTreeMap;

use nodeplane_entry::signing::ed25519::NativeVerifier;
use nodeplane_entry::signing::{binding_key, verify_signatures, PublicKey};
use nodeplane_interface::ControlPlane;

use super::Check;
use crate::ctx::{ensure, ok, TestNode, Violation};

/// Checks every entry `node`'s store holds: ids, links (via the host's
/// store) and signatures; returns how many entries it checked.
fn check_store(name: &str, node: &TestNode) -> Result<usize, Violation> {
    let n = node.lock();
    let id = n.config().node_id.clone();
    let host_key = n.services().public_key();
    let entries = n.services().ledger.entries().to_vec();
    drop(n);
    verify_signatures(&entries, &mut NativeVerifier).map_err(|why| {
        Violation(format!(
            "{name}'s store holds an entry that is not signed as [ledger-3] asks: {why}"
        ))
    })?;
    let mut bound: BTreeMap<String, PublicKey> = BTreeMap::new();
    for e in &entries {
        if e.seq == 1 && !bound.contains_key(&e.author) {
            let key = binding_key(e).map_err(|why| Violation(why.to_string()))?;
            if e.author == id {
                ensure(Some(key) == host_key, || {
                    format!(
                        "{name}'s first join declares signing_key {} but its host's signing.public-key is {}",
                        hex::encode(key),
                        host_key.map(hex::encode).unwrap_or_else(|| "unknown".into())
                    )
                })?;
            }
            bound.insert(e.author.clone(), key);
        }
    }
    Ok(entries.len())
}

/// `[ledger-3]`
pub const SIGNED_ENTRIES: Check = Check {
    name: "ledger-3 every stored entry is signed by its author under the key its first join bound",
    run: |ctx| {
        let pair = ctx.pair()?;
        pair.connect()?;
        let a_knew_b = ok("get-members on a", pair.a.get_members())?
            .member("b")
            .is_some();
        ok("leave on b", pair.b.leave())?;
        if a_knew_b {
            // b's `left` reaches a's ledger as b's own signed entry.
            pair.run_until(|| {
                let view = ok("get-members on a", pair.a.get_members())?;
                Ok(view
                    .member("b")
                    .is_none_or(|m| m.state == nodeplane_interface::PeerState::Left))
            })?;
        }
        check_store("a", &pair.a)?;
        check_store("b", &pair.b)?;
        Ok(())
    },
};
