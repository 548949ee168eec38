//! One component instance in its own store: every call runs with a fuel
//! budget and returns its result together with the effects it recorded.

use nodeplane_entry::Entry;
use nodeplane_types::{ControlError, Effect, MembershipView, Metadata, PeerState};
use wasmtime::{Store, StoreLimitsBuilder};

use crate::bindings::nodeplane::control::types as wit;
use crate::bindings::ControlPlane as Bindings;
use crate::convert;
use crate::engine::{LoadedComponent, Runtime};
use crate::host_state::{HostState, StartMode, TrackedLimits};
use crate::services::EntryReader;
use crate::signing::{NodeSigner, VerifyMemo, RECORDING_KEY_CONTEXT};
use nodeplane_entry::signing::ed25519::KeyPair;
use std::sync::Arc;

/// Most core WebAssembly instances one component instance may create.
/// Measured (`tests/interface/examples.rs`, which checks a 2x margin): the
/// Rust stub 3, ComponentizeJS output 4, componentize-py output 14, and 38
/// when built with `--stub-wasi` (issue 17). 256 leaves a margin of more
/// than 6x over the largest; each costs a few KiB of host bookkeeping
/// beyond the memories and tables bounded below.
pub const MAX_INSTANCES: usize = 256;

/// Most tables one component instance may create: one per core module
/// that defines a function table (2 for each toolchain measured), bounded
/// like [`MAX_INSTANCES`].
pub const MAX_TABLES: usize = 256;

/// Most linear memories one component instance may create. Toolchains use
/// one (each measured) or two (a program's and an adapter's); every memory is bounded by
/// [`Limits::memory_bytes`](crate::Limits) on its own, so this only keeps
/// a component from multiplying that bound: 16 memories at most.
pub const MAX_MEMORIES: usize = 16;

/// Why a call into a component did not produce a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The component returned an error of the interface.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The component trapped (panic, out of fuel, memory limit, bad
    /// import call). The instance is unusable afterwards.
    #[error("component crashed in {call}: {reason}")]
    Crashed {
        /// The call that crashed.
        call: &'static str,
        /// What wasmtime reported.
        reason: String,
    },
}

impl From<CallError> for ControlError {
    fn from(e: CallError) -> ControlError {
        match e {
            CallError::Control(c) => c,
            crashed @ CallError::Crashed { .. } => ControlError::Unavailable(crashed.to_string()),
        }
    }
}

/// The result of one call and the effects it recorded.
pub type Outcome<T> = (Result<T, CallError>, Vec<Effect>);

/// A running component instance.
pub struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
    component: LoadedComponent,
    fuel_per_call: u64,
    fuel_for_init: u64,
    crashed: Option<String>,
    /// Fault injection: the next call gets no fuel, so it traps.
    starve_next_call: bool,
}

impl Instance {
    /// Instantiates `component` for a fresh start; `seed` seeds the host
    /// randomness it sees and names its deterministic signing key (for
    /// tests and the conformance suite; a node's host passes its own key to
    /// [`Instance::with_start`]).
    pub fn new(
        runtime: &Runtime,
        component: &LoadedComponent,
        seed: u64,
    ) -> anyhow::Result<Instance> {
        let pair = KeyPair::derived(RECORDING_KEY_CONTEXT, &format!("instance-{seed}"));
        let signer = Arc::new(NodeSigner::with_memo(pair, VerifyMemo::shared()));
        Instance::with_start(runtime, component, seed, StartMode::Fresh, signer)
    }

    /// Instantiates `component`, telling it through `lifecycle.started-as`
    /// how it is started; `signer` holds the node's signing key.
    pub fn with_start(
        runtime: &Runtime,
        component: &LoadedComponent,
        seed: u64,
        start: StartMode,
        signer: Arc<NodeSigner>,
    ) -> anyhow::Result<Instance> {
        let limits = runtime.limits();
        let state = HostState {
            now_ms: 0,
            rng: seed,
            effects: Vec::new(),
            appended: Default::default(),
            stored: Vec::new(),
            limits: TrackedLimits::new(
                StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .instances(MAX_INSTANCES)
                    .tables(MAX_TABLES)
                    .memories(MAX_MEMORIES)
                    // Growing past the limit traps with a reason naming memory,
                    // rather than handing the guest a failed `memory.grow` it
                    // would turn into an anonymous abort.
                    .trap_on_grow_failure(true)
                    .build(),
            ),
            start,
            signer,
            reader: None,
        };
        let mut store = Store::new(&runtime.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_fuel(limits.fuel_for_init)?;
        let bindings = component.pre.instantiate(&mut store)?;
        Ok(Instance {
            store,
            bindings,
            component: component.clone(),
            fuel_per_call: limits.fuel_per_call,
            fuel_for_init: limits.fuel_for_init,
            crashed: None,
            starve_next_call: false,
        })
    }

    /// Lets `ledger-store.get` read the node's store through `reader`
    /// (set before `init`; without one, `get` answers only entries
    /// appended earlier in the same call).
    pub fn set_entry_reader(&mut self, reader: Option<Arc<dyn EntryReader>>) {
        self.store.data_mut().reader = reader;
    }

    /// The component this instance runs.
    pub fn component(&self) -> &LoadedComponent {
        &self.component
    }

    /// Fault injection: the next call into the component gets no fuel, so
    /// it traps exactly as a runaway call does. Tests and the conformance
    /// suite use it to drive crash recovery through the real path.
    pub fn starve_next_call(&mut self) {
        self.starve_next_call = true;
    }

    /// Bytes of linear memory the instance has grown to.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limits.memory_bytes()
    }

    /// Why the instance crashed, if it did.
    pub fn crashed(&self) -> Option<&str> {
        self.crashed.as_deref()
    }

    fn call<T>(
        &mut self,
        name: &'static str,
        now_ms: u64,
        fuel: u64,
        f: impl FnOnce(&Bindings, &mut Store<HostState>) -> wasmtime::Result<Result<T, wit::Error>>,
    ) -> Outcome<T> {
        if let Some(reason) = &self.crashed {
            return (
                Err(CallError::Crashed {
                    call: name,
                    reason: format!("instance crashed earlier: {reason}"),
                }),
                Vec::new(),
            );
        }
        self.store.data_mut().begin_call(now_ms);
        let fuel = if std::mem::take(&mut self.starve_next_call) {
            0
        } else {
            fuel
        };
        if let Err(e) = self.store.set_fuel(fuel) {
            return (
                Err(CallError::Crashed {
                    call: name,
                    reason: format!("setting fuel: {e}"),
                }),
                Vec::new(),
            );
        }
        let result = f(&self.bindings, &mut self.store);
        let effects = self.store.data_mut().take_effects();
        match result {
            Ok(Ok(value)) => (Ok(value), effects),
            Ok(Err(error)) => (
                Err(CallError::Control(convert::error_from_wit(error))),
                effects,
            ),
            Err(trap) => {
                // A crashed call's state changes are discarded (it did not
                // complete); its event-log lines are kept, and a panic the
                // guest reported names the cause.
                let logs: Vec<Effect> = effects
                    .into_iter()
                    .filter(|e| matches!(e, Effect::Log { .. }))
                    .collect();
                let mut reason = describe_trap(&trap);
                if let Some(message) = logs.iter().find_map(panic_message) {
                    reason = format!("guest panicked: {message} ({reason})");
                }
                tracing::error!(call = name, component = %self.component.source, %reason, "component crashed");
                self.crashed = Some(reason.clone());
                (Err(CallError::Crashed { call: name, reason }), logs)
            }
        }
    }

    /// `driver.info`: (name, version).
    pub fn info(&mut self) -> Result<(String, String), CallError> {
        let fuel = self.fuel_per_call;
        self.call("info", 0, fuel, |b, s| {
            b.nodeplane_control_driver()
                .call_info(s)
                .map(|i| Ok((i.name, i.version)))
        })
        .0
    }

    /// `driver.init` with the stored ledger.
    pub fn init(
        &mut self,
        now_ms: u64,
        config: &wit::NodeConfig,
        stored: Vec<Entry>,
    ) -> Outcome<()> {
        self.store.data_mut().stored = stored;
        let fuel = self.fuel_for_init;
        let outcome = self.call("init", now_ms, fuel, |b, s| {
            b.nodeplane_control_driver().call_init(s, config)
        });
        self.store.data_mut().stored = Vec::new();
        outcome
    }

    /// `driver.deliver-message`.
    pub fn deliver_message(&mut self, now_ms: u64, source: &str, payload: &[u8]) -> Outcome<()> {
        let fuel = self.fuel_per_call;
        self.call("deliver-message", now_ms, fuel, |b, s| {
            b.nodeplane_control_driver()
                .call_deliver_message(s, &source.to_string(), payload)
        })
    }

    /// `driver.fire-timer`.
    pub fn fire_timer(&mut self, now_ms: u64, timer: u64) -> Outcome<()> {
        let fuel = self.fuel_per_call;
        self.call("fire-timer", now_ms, fuel, |b, s| {
            b.nodeplane_control_driver()
                .call_fire_timer(s, timer)
                .map(Ok)
        })
    }

    /// `control.join`.
    pub fn join(&mut self, now_ms: u64, seeds: &[String]) -> Outcome<MembershipView> {
        let fuel = self.fuel_per_call;
        let (result, effects) = self.call("join", now_ms, fuel, |b, s| {
            b.nodeplane_control_control().call_join(s, seeds)
        });
        (result.map(convert::view_from_wit), effects)
    }

    /// `control.leave`.
    pub fn leave(&mut self, now_ms: u64) -> Outcome<()> {
        let fuel = self.fuel_per_call;
        self.call("leave", now_ms, fuel, |b, s| {
            b.nodeplane_control_control().call_leave(s)
        })
    }

    /// `control.get-members`.
    pub fn get_members(&mut self, now_ms: u64) -> Outcome<MembershipView> {
        let fuel = self.fuel_per_call;
        let (result, effects) = self.call("get-members", now_ms, fuel, |b, s| {
            b.nodeplane_control_control().call_get_members(s)
        });
        (result.map(convert::view_from_wit), effects)
    }

    /// `control.publish-heartbeat`.
    pub fn publish_heartbeat(&mut self, now_ms: u64) -> Outcome<u64> {
        let fuel = self.fuel_per_call;
        self.call("publish-heartbeat", now_ms, fuel, |b, s| {
            b.nodeplane_control_control().call_publish_heartbeat(s)
        })
    }

    /// `control.report-peer-state`.
    pub fn report_peer_state(
        &mut self,
        now_ms: u64,
        peer: &str,
        state: PeerState,
    ) -> Outcome<PeerState> {
        let fuel = self.fuel_per_call;
        let (result, effects) = self.call("report-peer-state", now_ms, fuel, |b, s| {
            b.nodeplane_control_control().call_report_peer_state(
                s,
                &peer.to_string(),
                convert::state_to_wit(state),
            )
        });
        (result.map(convert::state_from_wit), effects)
    }

    /// `control.subscribe-membership-updates`.
    pub fn subscribe(&mut self, now_ms: u64, handler: u64) -> Outcome<()> {
        let fuel = self.fuel_per_call;
        self.call("subscribe-membership-updates", now_ms, fuel, |b, s| {
            b.nodeplane_control_control()
                .call_subscribe_membership_updates(s, handler)
        })
    }

    /// `control.unsubscribe-membership-updates`.
    pub fn unsubscribe(&mut self, now_ms: u64, handler: u64) -> Outcome<()> {
        let fuel = self.fuel_per_call;
        self.call("unsubscribe-membership-updates", now_ms, fuel, |b, s| {
            b.nodeplane_control_control()
                .call_unsubscribe_membership_updates(s, handler)
        })
    }

    /// `control.get-peer-metadata`.
    pub fn get_peer_metadata(&mut self, now_ms: u64, peer: &str) -> Outcome<Metadata> {
        let fuel = self.fuel_per_call;
        self.call("get-peer-metadata", now_ms, fuel, |b, s| {
            b.nodeplane_control_control()
                .call_get_peer_metadata(s, &peer.to_string())
        })
    }
}

/// The message of a `panic` event-log line, if `effect` is one.
fn panic_message(effect: &Effect) -> Option<String> {
    match effect {
        Effect::Log { kind, detail } if kind == "panic" => {
            let value: serde_json::Value = serde_json::from_str(detail).ok()?;
            value["message"].as_str().map(str::to_string)
        }
        _ => None,
    }
}

fn describe_trap(error: &wasmtime::Error) -> String {
    let grew_too_far = error.chain().any(|cause| {
        cause
            .to_string()
            .contains("forcing trap when growing memory")
    });
    if grew_too_far {
        return format!(
            "exceeded the memory limit (linear memory grown past the host's limit): {}",
            crate::engine::error_chain(error)
        );
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        match trap {
            wasmtime::Trap::OutOfFuel => {
                "ran out of fuel (the call exceeded its instruction budget)".to_string()
            }
            other => format!("trap: {other}"),
        }
    } else {
        format!("{error:#}")
    }
}
