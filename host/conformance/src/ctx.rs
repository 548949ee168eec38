//! What a check works with: fresh nodes of the component under test on
//! in-memory host services, a deterministic two-node cluster, and small
//! assertion helpers that produce a [`Violation`].

use std::cell::RefCell;
use std::fmt::Debug;

use nodeplane_interface::{
    ControlError, ControlPlane, Member, MembershipUpdate, MembershipView, Metadata,
};
use nodeplane_runtime::bindings::nodeplane::control::types as wit;
use nodeplane_runtime::{
    CallError, Instance, LoadedComponent, MemoryServices, Node, NodeConfig, NodeHandle, Runtime,
};

/// A node of the component under test on in-memory services.
pub type TestNode = NodeHandle<MemoryServices>;

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

/// Largest number of clock advances while waiting for a cluster to settle.
const MAX_ROUNDS: usize = 400;
/// Largest number of message hand-overs between two clock advances.
const MAX_HANDOVERS: usize = 200;

/// The configured metadata of node `id`.
pub fn metadata_of(id: &str) -> Metadata {
    vec![
        ("overlay-ip".into(), format!("10.99.0.{}", id.len())),
        ("public-key".into(), format!("pk-{id}")),
    ]
}

/// The per-check environment: the component under test and every node the
/// check started (inspected for crashes afterwards).
pub struct Ctx {
    runtime: Runtime,
    component: LoadedComponent,
    nodes: RefCell<Vec<TestNode>>,
    next_port: RefCell<u16>,
}

impl Ctx {
    /// A context for one check.
    pub fn new(runtime: Runtime, component: LoadedComponent) -> Ctx {
        Ctx {
            runtime,
            component,
            nodes: RefCell::new(Vec::new()),
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

    /// Starts a node with `config` (the result of `driver.init`).
    pub fn start(&self, config: NodeConfig) -> Result<TestNode, ControlError> {
        let node = Node::start(
            &self.runtime,
            &self.component,
            config,
            MemoryServices::new(),
        )?;
        let handle = NodeHandle::new(node);
        self.nodes.borrow_mut().push(handle.clone());
        Ok(handle)
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

    /// Two fresh, unjoined nodes `a` and `b` (connect them with [`Pair::connect`]).
    pub fn pair(&self) -> Result<Pair, Violation> {
        Ok(Pair {
            a: self.node("a")?,
            b: self.node("b")?,
        })
    }

    /// A raw, initialised instance of the component (for the subscriber
    /// handle operations the host normally hides).
    pub fn instance(&self, id: &str) -> Result<Instance, Violation> {
        let config = self.config(id);
        let mut instance = Instance::new(&self.runtime, &self.component, 1)
            .map_err(|e| Violation(format!("instantiating the component: {e:#}")))?;
        let wit_config = wit::NodeConfig {
            node_id: config.node_id,
            address: config.address,
            metadata: config.metadata,
            tunables: wit::Tunables {
                probe_interval_ms: 0,
                probe_timeout_ms: 0,
                indirect_probes: 0,
                suspicion_multiplier: 0,
                death_quorum: 0,
                anti_entropy_interval_ms: 0,
                retransmit_multiplier: 0,
            },
        };
        let (result, _) = instance.init(0, &wit_config, Vec::new());
        call_ok("driver.init", result)?;
        Ok(instance)
    }

    /// Why each node of this check crashed, if any did.
    pub fn crashes(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        for node in self.nodes.borrow().iter() {
            let node = node.lock();
            if node.crashes() == 0 {
                continue;
            }
            for event in node
                .services()
                .events
                .iter()
                .filter(|e| e.kind == "component-crashed")
            {
                let reason = serde_json::from_str::<serde_json::Value>(&event.detail)
                    .ok()
                    .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string))
                    .unwrap_or_else(|| event.detail.clone());
                reasons.push(format!("node {}: {reason}", node.config().node_id));
            }
        }
        reasons
    }
}

/// Two nodes of the component under test whose messages the check carries.
pub struct Pair {
    /// The node that starts the cluster.
    pub a: TestNode,
    /// The node that joins through `a`.
    pub b: TestNode,
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

    /// Carries messages between the two nodes and fires due timers,
    /// advancing both virtual clocks together, until `done` holds. Fails if
    /// it does not hold within a bounded number of rounds or nothing is
    /// left to happen.
    pub fn run_until(
        &self,
        mut done: impl FnMut() -> Result<bool, Violation>,
    ) -> Result<(), Violation> {
        let nodes = [&self.a, &self.b];
        for _ in 0..MAX_ROUNDS {
            self.hand_over_messages()?;
            if done()? {
                return Ok(());
            }
            let next = nodes
                .iter()
                .filter_map(|n| n.lock().services().timers.values().min().copied())
                .min();
            let Some(next) = next else {
                return Err(Violation(
                    "the condition was not reached and no timer is pending".into(),
                ));
            };
            for node in nodes {
                let mut node = node.lock();
                let now = node.services().now_ms.max(next);
                node.services_mut().now_ms = now;
                for timer in node.services_mut().take_due_timers() {
                    ok("driver.fire-timer", node.fire_timer(timer))?;
                }
            }
        }
        Err(Violation(format!(
            "the condition was not reached within {MAX_ROUNDS} timer rounds"
        )))
    }

    /// Delivers every message either node sent to the other, until none is
    /// in flight. Messages to other addresses are dropped.
    fn hand_over_messages(&self) -> Result<(), Violation> {
        let nodes = [&self.a, &self.b];
        for _ in 0..MAX_HANDOVERS {
            let mut moved = false;
            for (i, from) in nodes.iter().enumerate() {
                let (source, outbox) = {
                    let mut node = from.lock();
                    let source = node.config().address.clone();
                    (source, std::mem::take(&mut node.services_mut().outbox))
                };
                let to = nodes[1 - i];
                let target = to.lock().config().address.clone();
                for (_, payload) in outbox.into_iter().filter(|(a, _)| *a == target) {
                    moved = true;
                    // A message a correct peer sent is never refused; an
                    // error here is the component's own business.
                    let _ = to.lock().deliver_message(&source, &payload);
                }
            }
            if !moved {
                return Ok(());
            }
        }
        Err(Violation(format!(
            "messages still in flight after {MAX_HANDOVERS} hand-overs"
        )))
    }
}
