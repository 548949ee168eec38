//! One node of the simulated world: how it is set up ([`NodeSpec`]) and
//! what the world keeps of it ([`SimNode`]): the running instance behind a
//! [`NodeHandle`], or its parked store while it is down.

use nodeplane_interface::{Metadata, Subscription};
use nodeplane_runtime::{
    EventRecord, LoadedComponent, MemoryLedger, NodeHandle, RecordingServices, Runtime,
};

use crate::component::ComponentChoice;

/// Port of every simulated control address.
pub const SIM_PORT: u16 = 7946;

/// The id of node `i` in a world built with [`SimBuilder::nodes`](crate::SimBuilder::nodes).
pub fn node_id(i: usize) -> String {
    format!("n{i}")
}

/// The control address of node `i` in a built world (nothing is really sent).
pub fn node_address(i: usize) -> String {
    format!("10.0.{}.{}:{SIM_PORT}", i / 256, i % 256)
}

/// The metadata of node `i` in a built world.
pub fn node_metadata(i: usize) -> Metadata {
    vec![(
        "overlay-ip".into(),
        format!("100.64.{}.{}", i / 256, i % 256),
    )]
}

/// How a node added with [`Sim::add_node`](crate::Sim::add_node) is set up.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Its node id.
    pub id: String,
    /// Its control address (`ip:port`; messages to it are routed to it).
    pub address: String,
    /// Its configured metadata.
    pub metadata: Metadata,
    /// The component it runs; `None` runs the world's component.
    pub component: Option<ComponentChoice>,
}

impl NodeSpec {
    /// Node `id` at `address`, without metadata, running the world's component.
    pub fn new(id: impl Into<String>, address: impl Into<String>) -> NodeSpec {
        NodeSpec {
            id: id.into(),
            address: address.into(),
            metadata: Vec::new(),
            component: None,
        }
    }

    /// With this metadata.
    pub fn metadata(mut self, metadata: Metadata) -> NodeSpec {
        self.metadata = metadata;
        self
    }

    /// Running this component instead of the world's.
    pub fn component(mut self, choice: ComponentChoice) -> NodeSpec {
        self.component = Some(choice);
        self
    }
}

/// One simulated node.
pub struct SimNode {
    /// Its id.
    pub id: String,
    /// Its control address.
    pub address: String,
    pub(crate) metadata: Metadata,
    /// The runtime and component it boots (`None`: the world's).
    pub(crate) component: Option<(Runtime, LoadedComponent)>,
    pub(crate) node: Option<NodeHandle<RecordingServices>>,
    pub(crate) subscription: Option<Subscription>,
    /// The store while the node is down.
    pub(crate) parked: Option<MemoryLedger>,
    /// The seeds of its last `join`, used again when it restarts.
    pub(crate) seeds: Vec<String>,
    /// Its event log, when the world keeps logs.
    pub(crate) log: Vec<EventRecord>,
    /// Restart count; stale timers of earlier lives are ignored.
    pub life: u64,
    /// Whether it called `leave`.
    pub left: bool,
    /// Whether `join` was called.
    pub joined: bool,
    /// Causal depth of the latest message it received.
    pub depth: u64,
    /// Messages it sent.
    pub sent_messages: u64,
    /// Payload bytes it sent.
    pub sent_bytes: u64,
    /// The virtual second (`now / 1000`) of [`SimNode::bytes_this_second`].
    pub(crate) second: u64,
    /// Payload bytes it sent in that second.
    pub(crate) bytes_this_second: u64,
    /// Most payload bytes it sent in any one virtual second (a fixed
    /// one-second bucket), over every life.
    pub peak_bytes_per_s: u64,
    /// Guest calls that returned an error the run did not provoke on
    /// purpose (each is also an invariant violation).
    pub call_errors: u64,
    /// Component crashes over all its lives (each is also an invariant
    /// violation): what [`Node::crashes`](nodeplane_runtime::Node::crashes)
    /// counted, summed over restarts.
    pub crashes: u64,
    /// [`Node::crashes`](nodeplane_runtime::Node::crashes) of the running
    /// instance when the world last looked.
    pub(crate) crashes_seen: u64,
    /// The call being made into the node, for the violation a crash or an
    /// error raises (`None`: a call made through its handle).
    pub(crate) calling: Option<Calling>,
}

/// The call being made into a node, formatted only when a violation names
/// it (the common calls, a delivery and a timer, allocate nothing).
#[derive(Clone, Debug)]
pub(crate) enum Calling {
    /// `deliver-message` of `len` bytes from node `from`.
    Deliver {
        /// The sender.
        from: usize,
        /// Payload size.
        len: usize,
    },
    /// `fire-timer` of timer `timer`.
    Timer(u64),
    /// Anything else, described.
    Other(String),
}

impl std::fmt::Display for Calling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Calling::Deliver { from, len } => write!(f, "deliver-message from n{from} ({len} B)"),
            Calling::Timer(timer) => write!(f, "fire-timer #{timer}"),
            Calling::Other(what) => f.write_str(what),
        }
    }
}

impl SimNode {
    /// A node that is down, with `ledger` as its store.
    pub(crate) fn parked(
        spec: NodeSpec,
        component: Option<(Runtime, LoadedComponent)>,
        ledger: MemoryLedger,
    ) -> SimNode {
        SimNode {
            id: spec.id,
            address: spec.address,
            metadata: spec.metadata,
            component,
            node: None,
            subscription: None,
            parked: Some(ledger),
            seeds: Vec::new(),
            log: Vec::new(),
            life: 0,
            left: false,
            joined: false,
            depth: 0,
            sent_messages: 0,
            sent_bytes: 0,
            second: 0,
            bytes_this_second: 0,
            peak_bytes_per_s: 0,
            call_errors: 0,
            crashes: 0,
            crashes_seen: 0,
            calling: None,
        }
    }

    /// Counts `bytes` sent at virtual time `now_ms`.
    pub(crate) fn count_sent(&mut self, now_ms: u64, bytes: u64) {
        self.sent_messages += 1;
        self.sent_bytes += bytes;
        let second = now_ms / 1000;
        if second != self.second {
            self.second = second;
            self.bytes_this_second = 0;
        }
        self.bytes_this_second += bytes;
        self.peak_bytes_per_s = self.peak_bytes_per_s.max(self.bytes_this_second);
    }

    /// Whether the component is running (not crashed).
    pub fn is_running(&self) -> bool {
        self.node.is_some()
    }

    /// Runs `f` on the ledger store (running or parked).
    pub fn with_ledger<T>(&self, f: impl FnOnce(&MemoryLedger) -> T) -> T {
        match (&self.node, &self.parked) {
            (Some(node), _) => f(&node.lock().services().ledger),
            (None, Some(parked)) => f(parked),
            (None, None) => unreachable!("a node always has a running instance or a parked store"),
        }
    }

    /// The running node, if any: a [`ControlPlane`](nodeplane_interface::ControlPlane)
    /// the test can hand to a Mesh VPN. What calls through it record is
    /// performed by the world on its next step ([`Sim::flush`](crate::Sim::flush)).
    pub fn handle(&self) -> Option<&NodeHandle<RecordingServices>> {
        self.node.as_ref()
    }

    /// Its event log, oldest first (kept only when the world keeps logs,
    /// [`SimBuilder::keep_logs`](crate::SimBuilder::keep_logs)).
    pub fn log(&self) -> &[EventRecord] {
        &self.log
    }
}
