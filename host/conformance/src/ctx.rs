//! What a check works with: fresh nodes of the component under test in a
//! simulated world (the simulator's deterministic driver, `nodeplane-sim`,
//! on recording host services), a two-node cluster in that world, and
//! small assertion helpers that produce a [`Violation`].

use std::cell::RefCell;
use std::fmt::Debug;
use std::rc::Rc;

use nodeplane_interface::{
    ControlError, ControlPlane, Member, MembershipUpdate, MembershipView, Metadata,
};
use nodeplane_runtime::bindings::nodeplane::control::types as wit;
use nodeplane_runtime::{
    CallError, Instance, LoadedComponent, NodeConfig, NodeHandle, RecordingServices, Runtime,
};
use nodeplane_sim::{NodeSpec, Sim, SimError};

/// A node of the component under test, in the check's simulated world.
pub type TestNode = NodeHandle<RecordingServices>;

/// How a component departed from the spec, in words a developer can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

/// Fails with `message` unless `condition` holds.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), Violation> {
    if condition {
        Ok(())
    } else {
        Err(Violation(message()))
    }
}

/// Fails unless `actual == expected`, naming `what`.
pub fn ensure_eq<T: PartialEq + Debug>(
    what: &str,
    actual: T,
    expected: T,
) -> Result<(), Violation> {
    ensure(actual == expected, || {
        format!("{what}: expected {expected:?}, got {actual:?}")
    })
}

/// Unwraps the result of an operation the spec says succeeds here.
pub fn ok<T>(operation: &str, result: Result<T, ControlError>) -> Result<T, Violation> {
    result.map_err(|e| Violation(format!("{operation} failed with {}: {e}", e.kind())))
}

/// Fails unless `result` is the error of kind `kind` (`not-joined`, ...).
pub fn expect_error<T: Debug>(
    operation: &str,
    result: Result<T, ControlError>,
    kind: &str,
) -> Result<ControlError, Violation> {
    match result {
        Err(e) if e.kind() == kind => Ok(e),
        Err(e) => Err(Violation(format!(
            "{operation}: expected {kind}, got {}: {e}",
            e.kind()
        ))),
        Ok(v) => Err(Violation(format!(
            "{operation}: expected {kind}, got Ok({v:?})"
        ))),
    }
}

/// Fails unless a raw instance call returned the error of kind `kind`.
pub fn expect_call_error<T: Debug>(
    operation: &str,
    result: Result<T, CallError>,
    kind: &str,
) -> Result<(), Violation> {
    match result {
        Err(CallError::Control(e)) => expect_error::<()>(operation, Err(e), kind).map(|_| ()),
        Err(crashed @ CallError::Crashed { .. }) => {
            Err(Violation(format!("{operation}: {crashed}")))
        }
        Ok(v) => Err(Violation(format!(
            "{operation}: expected {kind}, got Ok({v:?})"
        ))),
    }
}

/// Unwraps a raw instance call the spec says succeeds here.
pub fn call_ok<T>(operation: &str, result: Result<T, CallError>) -> Result<T, Violation> {
    result.map_err(|e| match e {
        CallError::Control(c) => Violation(format!("{operation} failed with {}: {c}", c.kind())),
        crashed => Violation(format!("{operation}: {crashed}")),
    })
}

/// The member `id` of `view`, or a violation naming what was looked for.
pub fn member<'v>(view: &'v MembershipView, id: &str) -> Result<&'v Member, Violation> {
    view.member(id).ok_or_else(|| {
        Violation(format!(
            "view version {} does not list {id:?} (members: {:?})",
            view.version,
            ids(view)
        ))
    })
}

/// The ids of a view's members, in order.
pub fn ids(view: &MembershipView) -> Vec<&str> {
    view.members.iter().map(|m| m.id.as_str()).collect()
}

/// Fails unless `updates` have versions `first`, `first + 1`, ... with no gap.
pub fn ensure_gap_free(updates: &[MembershipUpdate], first: u64) -> Result<(), Violation> {
    for (i, u) in updates.iter().enumerate() {
        let expected = first + i as u64;
        ensure(u.version == expected, || {
            format!(
                "update #{} (peer {:?}, cause {:?}) has version {}, expected {expected}: versions must rise by exactly one (got {:?})",
                i + 1,
                u.peer,
                u.cause,
                u.version,
                updates.iter().map(|u| u.version).collect::<Vec<_>>()
            )
        })?;
    }
    Ok(())
}

/// Longest virtual time a condition may take to hold (a few hundred probe
/// periods of the default tunables).
const RUN_BOUND_MS: u64 = 300_000;
/// Seed of every check's world.
const WORLD_SEED: u64 = 1;

/// The configured metadata of node `id`.
pub fn metadata_of(id: &str) -> Metadata {
    vec![
        ("overlay-ip".into(), format!("10.99.0.{}", id.len())),
        ("public-key".into(), format!("pk-{id}")),
    ]
}

/// The per-check environment: the component under test and the simulated
/// world of every node the check started (inspected for crashes afterwards).
pub struct Ctx {
    runtime: Runtime,
    component: LoadedComponent,
    sim: Rc<RefCell<Sim>>,
    next_port: RefCell<u16>,
}

impl Ctx {
    /// A context for one check.
    pub fn new(runtime: Runtime, component: LoadedComponent) -> Ctx {
        // The world only carries messages and fires timers: it does not
        // subscribe to the nodes (the checks' own subscribers are the only
        // ones the component sees), and it keeps their logs for crash reports.
        let sim = Sim::builder()
            .nodes(0)
            .seed(WORLD_SEED)
            .compiled(runtime.clone(), component.clone())
            .observe(false)
            .keep_logs(true)
            .build()
            .expect("a world without nodes always builds");
        Ctx {
            runtime,
            component,
            sim: Rc::new(RefCell::new(sim)),
            next_port: RefCell::new(7001),
        }
    }

    /// The component under test.
    pub fn component(&self) -> &LoadedComponent {
        &self.component
    }

    /// A valid configuration for node `id` on the next free loopback port.
    pub fn config(&self, id: &str) -> NodeConfig {
        let mut port = self.next_port.borrow_mut();
        let address = format!("127.0.0.1:{}", *port);
        *port += 1;
        NodeConfig {
            node_id: id.into(),
            address,
            metadata: metadata_of(id),
            tunables: Default::default(),
        }
    }

    /// Starts a node with `config` (the result of `driver.init`) in the
    /// check's world. Every node runs with the default tunables.
    pub fn start(&self, config: NodeConfig) -> Result<TestNode, ControlError> {
        let spec = NodeSpec::new(config.node_id, config.address).metadata(config.metadata);
        let mut sim = self.sim.borrow_mut();
        match sim.add_node(spec) {
            Ok(i) => Ok(sim.node(i).handle().expect("just started").clone()),
            Err(SimError::Start { error, .. }) => Err(error),
            Err(other) => Err(ControlError::Unavailable(other.to_string())),
        }
    }

    /// A fresh, unjoined node `id`.
    pub fn node(&self, id: &str) -> Result<TestNode, Violation> {
        let config = self.config(id);
        ok("driver.init with a valid configuration", self.start(config))
    }

    /// A fresh node `id` that joined without seeds.
    pub fn joined(&self, id: &str) -> Result<TestNode, Violation> {
        let node = self.node(id)?;
        ok("join([])", node.join(&[]))?;
        Ok(node)
    }

    /// Two fresh, unjoined nodes `a` and `b` (connect them with `Pair::connect`).
    pub fn pair(&self) -> Result<Pair, Violation> {
        Ok(Pair {
            a: self.node("a")?,
            b: self.node("b")?,
            sim: Rc::clone(&self.sim),
        })
    }

    /// A raw, initialised instance of the component (for the subscriber
    /// handle operations the host normally hides).
    pub fn instance(&self, id: &str) -> Result<Instance, Violation> {
        let config = self.config(id);
        let mut instance = Instance::new(&self.runtime, &self.component, 1)
            .map_err(|e| Violation(format!("instantiating the component: {e:#}")))?;
        // The shared configuration converted at the WIT boundary (default
        // tunables: all zero, "use the component's defaults").
        let wit_config = wit::NodeConfig::from(&config);
        let (result, _) = instance.init(0, &wit_config, Vec::new());
        call_ok("driver.init", result)?;
        Ok(instance)
    }

    /// Why each node of this check crashed, if any did.
    pub fn crashes(&self) -> Vec<String> {
        let mut sim = self.sim.borrow_mut();
        sim.flush();
        let mut reasons = Vec::new();
        for node in sim.nodes() {
            let crashed = node.handle().is_some_and(|h| h.lock().crashes() > 0);
            if !crashed {
                continue;
            }
            for event in node.log().iter().filter(|e| e.kind == "component-crashed") {
                let reason = serde_json::from_str::<serde_json::Value>(&event.detail)
                    .ok()
                    .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string))
                    .unwrap_or_else(|| event.detail.clone());
                reasons.push(format!("node {}: {reason}", node.id));
            }
        }
        reasons
    }
}

/// Two nodes of the component under test, in the check's world.
pub struct Pair {
    /// The node that starts the cluster.
    pub a: TestNode,
    /// The node that joins through `a`.
    pub b: TestNode,
    sim: Rc<RefCell<Sim>>,
}

impl Pair {
    /// `a` joins alone, `b` joins with `a`'s address as seed; then messages
    /// and timers run until `b` lists a member other than itself that is
    /// alive. Returns that member's id (a seed-derived member for an
    /// implementation that makes seeds members, `a` for one that learns
    /// members from the protocol).
    pub fn connect(&self) -> Result<String, Violation> {
        ok("join([]) on a", self.a.join(&[]))?;
        let seed = self.a.lock().config().address.clone();
        ok("join([a]) on b", self.b.join(&[seed]))?;
        let mut found = None;
        self.run_until(|| {
            let view = ok("get-members on b", self.b.get_members())?;
            found = view
                .members
                .iter()
                .find(|m| m.id != "b" && m.state == nodeplane_interface::PeerState::Alive)
                .map(|m| m.id.clone());
            Ok(found.is_some())
        })?;
        found.ok_or_else(|| Violation("b learnt no alive peer".into()))
    }

    /// Runs the world (messages between the nodes, due timers), one instant
    /// at a time, until `done` holds. Fails if it does not hold within
    /// [`RUN_BOUND_MS`] of virtual time or nothing is left to happen.
    pub fn run_until(
        &self,
        mut done: impl FnMut() -> Result<bool, Violation>,
    ) -> Result<(), Violation> {
        let deadline = self.sim.borrow().now_ms() + RUN_BOUND_MS;
        loop {
            self.sim.borrow_mut().flush();
            if done()? {
                return Ok(());
            }
            let mut sim = self.sim.borrow_mut();
            if sim.now_ms() >= deadline {
                return Err(Violation(format!(
                    "the condition was not reached within {} s of virtual time",
                    RUN_BOUND_MS / 1000
                )));
            }
            if !sim.step() {
                return Err(Violation(
                    "the condition was not reached and nothing is pending (no message in flight, no timer set)".into(),
                ));
            }
        }
    }
}
