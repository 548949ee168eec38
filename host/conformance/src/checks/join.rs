//! `join`: the first view, seed validation, idempotency.

use nodeplane_interface::{ControlPlane, PeerState, UpdateCause};

use super::Check;
use crate::ctx::{ensure, ensure_eq, expect_error, ids, member, metadata_of, ok};

/// `[join-1]`
pub const ALONE: Check = Check {
    name: "join-1 join without seeds returns a view listing self alive",
    run: |ctx| {
        let node = ctx.node("a")?;
        let address = node.lock().config().address.clone();
        let view = ok("join([])", node.join(&[]))?;
        let me = member(&view, "a")?;
        ensure_eq("own state", me.state, PeerState::Alive)?;
        ensure_eq("own address", me.address.as_str(), address.as_str())?;
        ensure_eq("own metadata", me.metadata.clone(), metadata_of("a"))?;
        ensure(view.version >= 1, || {
            format!(
                "view version after join is {}, expected at least 1",
                view.version
            )
        })
    },
};

/// `[join-2]`
pub const SORTED: Check = Check {
    name: "join-2 view members are sorted by id, each listed once",
    run: |ctx| {
        let pair = ctx.pair()?;
        pair.connect()?;
        let view = ok("get-members on b", pair.b.get_members())?;
        let listed = ids(&view);
        ensure(listed.windows(2).all(|w| w[0] < w[1]), || {
            format!("members not in strictly ascending id order: {listed:?}")
        })
    },
};

/// `[join-3]`
pub const BAD_SEED: Check = Check {
    name: "join-3 join with an invalid seed: invalid-address, node stays unjoined",
    run: |ctx| {
        let node = ctx.node("a")?;
        let seeds = vec!["127.0.0.1:7100".to_string(), "not an address".to_string()];
        let error = expect_error("join with a bad seed", node.join(&seeds), "invalid-address")?;
        ensure(error.to_string().contains("not an address"), || {
            format!("invalid-address must name the bad seed, got {error}")
        })?;
        expect_error(
            "get-members after the failed join",
            node.get_members(),
            "not-joined",
        )
        .map(|_| ())
    },
};

/// `[join-4]`
pub const AGAIN: Check = Check {
    name: "join-4 join again while joined returns the current view and emits nothing",
    run: |ctx| {
        let node = ctx.node("a")?;
        let first = ok("join([])", node.join(&[]))?;
        let updates = ok("subscribe", node.subscribe_membership_updates())?;
        let second = ok("second join([])", node.join(&[]))?;
        ensure_eq("view returned by the second join", &second, &first)?;
        let delivered = updates.drain();
        ensure(delivered.is_empty(), || {
            format!("a repeated join emitted updates: {delivered:?}")
        })
    },
};

/// `[join-5]`
pub const OWN_ADDRESS: Check = Check {
    name: "join-5 the node's own address as a seed is ignored",
    run: |ctx| {
        let node = ctx.node("a")?;
        let own = node.lock().config().address.clone();
        let view = ok("join([own address])", node.join(std::slice::from_ref(&own)))?;
        let at_own: Vec<&str> = view
            .members
            .iter()
            .filter(|m| m.address == own)
            .map(|m| m.id.as_str())
            .collect();
        ensure_eq("members with the node's own address", at_own, vec!["a"])
    },
};

/// `[join-6]`
pub const UNREACHABLE_SEEDS: Check = Check {
    name: "join-6 join with seeds nobody answers still returns a view with self",
    run: |ctx| {
        let node = ctx.node("a")?;
        let seeds = vec!["127.0.0.1:7900".to_string(), "[::1]:7901".to_string()];
        let view = ok("join(unanswered seeds)", node.join(&seeds))?;
        ensure_eq("own state", member(&view, "a")?.state, PeerState::Alive)?;
        let listed = ok("get-members", node.get_members())?;
        ensure_eq("get-members after join", listed, view)
    },
};

/// `[join-7]`
pub const SELF_UPDATE: Check = Check {
    name: "join-7 a subscriber from before join gets self's joined update first, version 1",
    run: |ctx| {
        let node = ctx.node("a")?;
        let updates = ok("subscribe before join", node.subscribe_membership_updates())?;
        ok("join([])", node.join(&[]))?;
        let first = updates
            .try_recv()
            .ok_or_else(|| crate::Violation("no update delivered for join".into()))?;
        ensure_eq("peer of the first update", first.peer.as_str(), "a")?;
        ensure_eq(
            "cause of the first update",
            first.cause,
            UpdateCause::Joined,
        )?;
        ensure_eq("previous state of the first update", first.previous, None)?;
        ensure_eq(
            "state in the first update",
            first.current.state,
            PeerState::Alive,
        )?;
        ensure_eq("version of the first update", first.version, 1)
    },
};
