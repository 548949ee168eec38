//! `driver`: info, init validation, timers and message robustness.

use nodeplane_interface::{ControlError, ControlPlane};
use nodeplane_runtime::NodeConfig;

use super::Check;
use crate::ctx::{ensure, ensure_eq, expect_error, ok, Ctx, TestNode, Violation};

/// `[driver-1]`
pub const INFO: Check = Check {
    name: "driver-1 info names the implementation and its version",
    run: |ctx| {
        let node = ctx.node("a")?;
        let node = node.lock();
        let (name, version) = node.component_info();
        ensure(!name.is_empty() && !version.is_empty(), || {
            format!("info returned name {name:?}, version {version:?}: both must be non-empty")
        })
    },
};

/// `[driver-2]`
pub const INIT_BAD_ID: Check = Check {
    name: "driver-2 init rejects an invalid node-id with invalid-config",
    run: |ctx| {
        init_rejects(
            ctx,
            "node-id",
            &["", "has space", "slash/ed", &"x".repeat(65)],
            |config, bad| config.node_id = bad.to_string(),
        )
    },
};

/// `[driver-3]`
pub const INIT_BAD_ADDRESS: Check = Check {
    name: "driver-3 init rejects an invalid address with invalid-config",
    run: |ctx| {
        init_rejects(
            ctx,
            "address",
            &["", "localhost", "127.0.0.1", "127.0.0.1:notaport"],
            |config, bad| config.address = bad.to_string(),
        )
    },
};

/// Fails unless `init` refuses with invalid-config each configuration that
/// `set` makes by putting one of the `bad` values in `field`.
fn init_rejects(
    ctx: &Ctx,
    field: &str,
    bad: &[&str],
    set: fn(&mut NodeConfig, &str),
) -> Result<(), Violation> {
    for bad in bad {
        let mut config = ctx.config("a");
        set(&mut config, bad);
        expect_error(
            &format!("init with {field} {bad:?}"),
            ctx.start(config).map(|_| ()),
            "invalid-config",
        )?;
    }
    Ok(())
}

/// `[driver-4]`
pub const UNKNOWN_TIMER: Check = Check {
    name: "driver-4 fire-timer of a timer never set changes nothing",
    run: |ctx| {
        let node = ctx.node("a")?;
        fire(&node, 0xdead_beef)?;
        let before = ok("join([])", node.join(&[]))?;
        fire(&node, 0xdead_beef)?;
        fire(&node, u64::MAX)?;
        let after = ok("get-members", node.get_members())?;
        ensure_eq("view after firing unknown timers", after, before)
    },
};

fn fire(node: &TestNode, timer: u64) -> Result<(), Violation> {
    ok(
        &format!("fire-timer({timer})"),
        node.lock().fire_timer(timer),
    )
}

/// Payloads no correct peer sends.
fn garbage() -> Vec<Vec<u8>> {
    vec![
        b"\xff\xfe garbage \x00\x01".to_vec(),
        b"{\"not\":\"a message\"}".to_vec(),
        vec![0; 17],
        (0..=255u8).collect(),
    ]
}

/// `deliver-message` may accept and ignore a bad message or refuse it with
/// `bad-message`; nothing else.
fn deliver_tolerated(node: &TestNode, payload: &[u8]) -> Result<(), Violation> {
    match node.lock().deliver_message("127.0.0.1:9999", payload) {
        Ok(()) | Err(ControlError::BadMessage(_)) => Ok(()),
        Err(e) => Err(Violation(format!(
            "deliver-message of {} garbage bytes: expected Ok or bad-message, got {}: {e}",
            payload.len(),
            e.kind()
        ))),
    }
}

/// `[robust-1]`
pub const GARBAGE_BEFORE_JOIN: Check = Check {
    name: "robust-1 garbage message before join: ok or bad-message",
    run: |ctx| {
        let node = ctx.node("a")?;
        for payload in garbage() {
            deliver_tolerated(&node, &payload)?;
        }
        ok("join([]) after garbage", node.join(&[])).map(|_| ())
    },
};

/// `[robust-2]`
pub const GARBAGE_AFTER_JOIN: Check = Check {
    name: "robust-2 garbage message after join: ok or bad-message, view unchanged",
    run: |ctx| {
        let node = ctx.joined("a")?;
        let updates = ok("subscribe", node.subscribe_membership_updates())?;
        let before = ok("get-members", node.get_members())?;
        for payload in garbage() {
            deliver_tolerated(&node, &payload)?;
        }
        let after = ok("get-members", node.get_members())?;
        ensure_eq("view after garbage", after, before)?;
        let delivered = updates.drain();
        ensure(delivered.is_empty(), || {
            format!("garbage caused updates: {delivered:?}")
        })
    },
};

/// `[robust-3]`
pub const EMPTY_AND_OVERSIZED: Check = Check {
    name: "robust-3 empty and oversized messages: ok or bad-message",
    run: |ctx| {
        let node = ctx.joined("a")?;
        deliver_tolerated(&node, &[])?;
        deliver_tolerated(&node, &vec![0xab; 70_000])?;
        ok("get-members", node.get_members()).map(|_| ())
    },
};
