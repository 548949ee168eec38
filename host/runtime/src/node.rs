//! A node: one component instance, the host services it uses, the
//! subscribers the host owns, crash recovery and hot swap.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nodeplane_interface::{ControlPlane, Subscription, SubscriptionSender};
use nodeplane_types::{
    Address, ControlError, Effect, Member, MembershipUpdate, MembershipView, Metadata, NodeConfig,
    PeerState, UpdateCause,
};
use serde::Serialize;

use crate::engine::{ComponentSource, LoadedComponent, Runtime};
use crate::instance::{CallError, Instance, Outcome};
use crate::services::Services;

/// The subscriber handle the host uses for its own mirror of the view.
const MIRROR: u64 = 0;

/// What a hot swap did.
#[derive(Clone, Debug, Serialize)]
pub struct SwapReport {
    /// The component replaced.
    pub from: String,
    /// The component now running.
    pub to: String,
    /// Hash of the component now running.
    pub to_hash: String,
    /// How long calls and messages waited.
    pub pause: Duration,
    /// Updates emitted to subscribers: the difference of the two views.
    pub updates_emitted: usize,
}

/// One node: a component instance driven with host services.
pub struct Node<S: Services> {
    runtime: Runtime,
    config: NodeConfig,
    instance: Instance,
    info: (String, String),
    services: S,
    subscribers: BTreeMap<u64, SubscriptionSender>,
    next_handle: u64,
    joined_seeds: Option<Vec<Address>>,
    has_left: bool,
    /// The view as subscribers have seen it (versions as served).
    mirror: BTreeMap<String, Member>,
    served_version: u64,
    /// Added to component versions to give served versions.
    version_offset: i64,
    crashes: u64,
    swaps: u64,
    started: Instant,
}

impl<S: Services> Node<S> {
    /// Instantiates `component` and initialises it from the stored ledger.
    pub fn start(
        runtime: &Runtime,
        component: &LoadedComponent,
        config: NodeConfig,
        mut services: S,
    ) -> Result<Node<S>, ControlError> {
        let (instance, info, effects) = boot(runtime, component, &config, &mut services)?;
        let mut node = Node {
            runtime: runtime.clone(),
            config,
            instance,
            info,
            services,
            subscribers: BTreeMap::new(),
            next_handle: MIRROR + 1,
            joined_seeds: None,
            has_left: false,
            mirror: BTreeMap::new(),
            served_version: 0,
            version_offset: 0,
            crashes: 0,
            swaps: 0,
            started: Instant::now(),
        };
        node.perform(effects);
        Ok(node)
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The component running now.
    pub fn component(&self) -> &LoadedComponent {
        self.instance.component()
    }

    /// Name and version the component reports.
    pub fn component_info(&self) -> (&str, &str) {
        (&self.info.0, &self.info.1)
    }

    /// The host services.
    pub fn services(&self) -> &S {
        &self.services
    }

    /// The host services, mutably (tests advance clocks through this).
    pub fn services_mut(&mut self) -> &mut S {
        &mut self.services
    }

    /// How many times the component crashed and was rebuilt.
    pub fn crashes(&self) -> u64 {
        self.crashes
    }

    /// How many hot swaps succeeded.
    pub fn swaps(&self) -> u64 {
        self.swaps
    }

    /// Time since the node started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether `join` succeeded (and `leave` has not).
    pub fn is_joined(&self) -> bool {
        self.joined_seeds.is_some() && !self.has_left
    }

    /// Whether the node has left.
    pub fn has_left(&self) -> bool {
        self.has_left
    }

    /// The view as the host's own subscriber last saw it (served versions),
    /// without calling into the component.
    pub fn mirror_view(&self) -> MembershipView {
        MembershipView {
            version: self.served_version,
            members: self.mirror.values().cloned().collect(),
        }
    }

    /// Performs effects recorded by a call.
    fn perform(&mut self, effects: Vec<Effect>) {
        let mut gone = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send { to, payload } => self.services.send(&to, payload),
                Effect::SetTimer { timer, after_ms } => self.services.set_timer(timer, after_ms),
                Effect::CancelTimer { timer } => self.services.cancel_timer(timer),
                Effect::Append(entry) => {
                    if let Err(e) = self.services.ledger().append(&entry) {
                        tracing::error!(error = %e, author = %entry.author, seq = entry.seq, "ledger append failed");
                        let detail = serde_json::json!({"author": entry.author, "seq": entry.seq, "error": e.to_string()});
                        self.services
                            .log_event("ledger-append-failed", &detail.to_string());
                    }
                }
                Effect::Update {
                    subscriber,
                    mut update,
                } => {
                    update.version = self.serve_version(update.version);
                    if subscriber == MIRROR {
                        self.apply_to_mirror(&update);
                    } else if let Some(sender) = self.subscribers.get(&subscriber) {
                        if !sender.send(update) {
                            gone.push(subscriber);
                        }
                    }
                }
                Effect::Log { kind, detail } => self.services.log_event(&kind, &detail),
            }
        }
        for handle in gone {
            self.subscribers.remove(&handle);
            let now = self.services.now_ms();
            let (_, effects) = self.instance.unsubscribe(now, handle);
            // Unsubscribing emits no updates; perform what else it recorded.
            for effect in effects {
                if let Effect::Log { kind, detail } = effect {
                    self.services.log_event(&kind, &detail);
                }
            }
        }
    }

    fn serve_version(&self, component_version: u64) -> u64 {
        (component_version as i64 + self.version_offset).max(0) as u64
    }

    fn apply_to_mirror(&mut self, update: &MembershipUpdate) {
        self.served_version = self.served_version.max(update.version);
        self.mirror
            .insert(update.current.id.clone(), update.current.clone());
    }

    /// Runs a call's outcome: performs its effects and, if the component
    /// crashed, rebuilds it from the ledger.
    fn finish<T>(&mut self, outcome: Outcome<T>) -> Result<T, ControlError> {
        let (result, effects) = outcome;
        self.perform(effects);
        if let Err(CallError::Crashed { .. }) = &result {
            self.crashes += 1;
            let detail = serde_json::json!({"reason": self.instance.crashed().unwrap_or("")});
            self.services
                .log_event("component-crashed", &detail.to_string());
            let component = self.instance.component().clone();
            if let Err(e) = self.replace(&component, "crash recovery") {
                tracing::error!(error = %e, "could not rebuild the crashed component");
            }
        }
        result.map_err(ControlError::from)
    }

    /// Delivers a message from the network.
    pub fn deliver_message(&mut self, source: &str, payload: &[u8]) -> Result<(), ControlError> {
        let now = self.services.now_ms();
        let outcome = self.instance.deliver_message(now, source, payload);
        self.finish(outcome)
    }

    /// Fires a timer the component set.
    pub fn fire_timer(&mut self, timer: u64) -> Result<(), ControlError> {
        let now = self.services.now_ms();
        let outcome = self.instance.fire_timer(now, timer);
        self.finish(outcome)
    }

    /// `join`.
    pub fn join(&mut self, seeds: &[Address]) -> Result<MembershipView, ControlError> {
        let now = self.services.now_ms();
        let outcome = self.instance.join(now, seeds);
        let mut view = self.finish(outcome)?;
        let known = self.joined_seeds.get_or_insert_with(Vec::new);
        for seed in seeds {
            if !known.contains(seed) {
                known.push(seed.clone());
            }
        }
        view.version = self.serve_version(view.version);
        Ok(view)
    }

    /// `leave`.
    pub fn leave(&mut self) -> Result<(), ControlError> {
        let now = self.services.now_ms();
        let outcome = self.instance.leave(now);
        self.finish(outcome)?;
        self.has_left = true;
        Ok(())
    }

    /// `get-members`.
    pub fn get_members(&mut self) -> Result<MembershipView, ControlError> {
        let now = self.services.now_ms();
        let outcome = self.instance.get_members(now);
        let mut view = self.finish(outcome)?;
        view.version = self.serve_version(view.version);
        Ok(view)
    }

    /// `publish-heartbeat`.
    pub fn publish_heartbeat(&mut self) -> Result<u64, ControlError> {
        let now = self.services.now_ms();
        let outcome = self.instance.publish_heartbeat(now);
        self.finish(outcome)
    }

    /// `report-peer-state`.
    pub fn report_peer_state(
        &mut self,
        peer: &str,
        state: PeerState,
    ) -> Result<PeerState, ControlError> {
        let now = self.services.now_ms();
        let outcome = self.instance.report_peer_state(now, peer, state);
        self.finish(outcome)
    }

    /// `get-peer-metadata`.
    pub fn get_peer_metadata(&mut self, peer: &str) -> Result<Metadata, ControlError> {
        let now = self.services.now_ms();
        let outcome = self.instance.get_peer_metadata(now, peer);
        self.finish(outcome)
    }

    /// `subscribe-membership-updates`: the host allocates a handle, asks the
    /// component to deliver to it, and keeps the sending half.
    pub fn subscribe(&mut self) -> Result<Subscription, ControlError> {
        let handle = self.next_handle;
        self.next_handle += 1;
        let now = self.services.now_ms();
        let outcome = self.instance.subscribe(now, handle);
        self.finish(outcome)?;
        // Dropping the subscription closes the channel; the next delivery
        // to it fails and the host unsubscribes it from the component.
        let (sender, subscription) = Subscription::channel(handle, |_| {});
        self.subscribers.insert(handle, sender);
        Ok(subscription)
    }

    /// Replaces the running component with `component` (hot swap). The new
    /// instance is initialised from the same ledger store, joined with the
    /// same seeds and given the same subscribers before the slot switches;
    /// subscribers then receive exactly the difference of the two views.
    /// On any failure the old component keeps serving.
    pub fn swap(&mut self, component: &LoadedComponent) -> Result<SwapReport, ControlError> {
        let report = self.replace(component, "hot swap")?;
        self.swaps += 1;
        Ok(report)
    }

    fn replace(
        &mut self,
        component: &LoadedComponent,
        why: &str,
    ) -> Result<SwapReport, ControlError> {
        let started = Instant::now();
        if self.has_left {
            return Err(ControlError::HasLeft);
        }
        let from = self.instance.component().source.to_string();
        let (mut fresh, info, mut pending) =
            boot(&self.runtime, component, &self.config, &mut self.services)?;
        let now = self.services.now_ms();
        let mut keep = |(result, effects): Outcome<()>, step: &str| -> Result<(), ControlError> {
            pending.extend(
                effects
                    .into_iter()
                    .filter(|e| !matches!(e, Effect::Update { .. })),
            );
            result.map_err(|e| {
                ControlError::Unavailable(format!("new component failed to {step}: {e}"))
            })
        };
        if let Some(seeds) = &self.joined_seeds {
            let (result, effects) = fresh.join(now, seeds);
            keep((result.map(|_| ()), effects), "join")?;
        }
        for handle in self.subscribers.keys() {
            keep(fresh.subscribe(now, *handle), "subscribe")?;
        }
        // Self-check: a joined node's new component must answer and list
        // us. (Before join, `get-members` answers `not-joined`: empty view.)
        let (view, effects) = fresh.get_members(now);
        let new_view = if self.joined_seeds.is_some() {
            keep((view.clone().map(|_| ()), effects), "list members")?;
            let view = view.unwrap_or_default();
            if view.member(&self.config.node_id).is_none() {
                return Err(ControlError::Unavailable(
                    "new component failed its self-check: its view does not list this node".into(),
                ));
            }
            view
        } else {
            keep((Ok(()), effects), "list members")?;
            view.unwrap_or_default()
        };

        // Switch the slot.
        self.instance = fresh;
        self.info = info;
        self.services.cancel_all_timers();
        self.perform(pending);
        let diff = view_difference(&self.mirror, &new_view);
        let emitted = diff.len();
        for (previous, current) in diff {
            self.served_version += 1;
            let update = MembershipUpdate {
                peer: current.id.clone(),
                previous,
                current,
                cause: UpdateCause::Changed,
                entry: None,
                version: self.served_version,
            };
            self.apply_to_mirror(&update);
            let mut gone = Vec::new();
            for (handle, sender) in &self.subscribers {
                if !sender.send(update.clone()) {
                    gone.push(*handle);
                }
            }
            for handle in gone {
                self.subscribers.remove(&handle);
            }
        }
        // Members the new component does not know were reported as `left`
        // above; from now on the mirror is exactly the new component's view.
        self.mirror = new_view
            .members
            .iter()
            .map(|m| (m.id.clone(), m.clone()))
            .collect();
        self.version_offset = self.served_version as i64 - new_view.version as i64;
        let to = self.instance.component().source.to_string();
        let report = SwapReport {
            from,
            to,
            to_hash: self.instance.component().hash_hex(),
            pause: started.elapsed(),
            updates_emitted: emitted,
        };
        let detail = serde_json::json!({
            "why": why, "from": report.from, "to": report.to,
            "pause_us": report.pause.as_micros() as u64, "updates": emitted,
        });
        self.services
            .log_event("component-replaced", &detail.to_string());
        tracing::info!(why, from = %report.from, to = %report.to, pause_us = report.pause.as_micros() as u64, updates = emitted, "component replaced");
        Ok(report)
    }
}

/// A freshly initialised instance, its (name, version) and the effects its
/// initialisation recorded.
type Booted = (Instance, (String, String), Vec<Effect>);

/// Instantiates and initialises a component, subscribing the host mirror.
fn boot<S: Services>(
    runtime: &Runtime,
    component: &LoadedComponent,
    config: &NodeConfig,
    services: &mut S,
) -> Result<Booted, ControlError> {
    let seed = services.seed();
    let mut instance = Instance::new(runtime, component, seed).map_err(|e| {
        ControlError::Unavailable(format!(
            "instantiating {}: {}",
            component.source,
            e.chain()
                .map(|cause| cause.to_string())
                .collect::<Vec<_>>()
                .join(": ")
        ))
    })?;
    let info = instance.info().map_err(ControlError::from)?;
    let stored = services
        .ledger()
        .load()
        .map_err(|e| ControlError::CorruptLedger(e.to_string()))?;
    let now = services.now_ms();
    let (result, mut effects) = instance.init(now, &config.into(), stored);
    result.map_err(ControlError::from)?;
    let (result, more) = instance.subscribe(now, MIRROR);
    result.map_err(ControlError::from)?;
    effects.extend(more);
    Ok((instance, info, effects))
}

/// The updates that turn view `old` into view `new`: one per member that
/// differs. A member the new view lacks is reported as `left`.
fn view_difference(
    old: &BTreeMap<String, Member>,
    new: &MembershipView,
) -> Vec<(Option<PeerState>, Member)> {
    let mut changes = Vec::new();
    let new_by_id: BTreeMap<&str, &Member> =
        new.members.iter().map(|m| (m.id.as_str(), m)).collect();
    for (id, before) in old {
        match new_by_id.get(id.as_str()) {
            Some(after) if *after == before => {}
            Some(after) => changes.push((Some(before.state), (*after).clone())),
            None if before.state == PeerState::Left => {}
            None => {
                let mut gone = before.clone();
                gone.state = PeerState::Left;
                changes.push((Some(before.state), gone));
            }
        }
    }
    for member in &new.members {
        if !old.contains_key(&member.id) {
            changes.push((None, member.clone()));
        }
    }
    changes.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    changes
}

/// A shareable node implementing the Mesh VPN's [`ControlPlane`] trait.
pub struct NodeHandle<S: Services> {
    inner: Arc<Mutex<Node<S>>>,
}

impl<S: Services> Clone for NodeHandle<S> {
    fn clone(&self) -> Self {
        NodeHandle {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Services> NodeHandle<S> {
    /// Wraps a node.
    pub fn new(node: Node<S>) -> NodeHandle<S> {
        NodeHandle {
            inner: Arc::new(Mutex::new(node)),
        }
    }

    /// Locks the node for direct use (delivering messages, firing timers,
    /// introspection). Calls are serialised by this lock.
    pub fn lock(&self) -> MutexGuard<'_, Node<S>> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Loads `component` outside the lock, then swaps it in.
    pub fn swap(
        &self,
        runtime: &Runtime,
        bytes: &[u8],
        source: ComponentSource,
    ) -> Result<SwapReport, ControlError> {
        let component = runtime
            .load(bytes, source)
            .map_err(|e| ControlError::Unavailable(e.to_string()))?;
        self.lock().swap(&component)
    }
}

impl<S: Services> ControlPlane for NodeHandle<S> {
    fn join(&self, seed_peers: &[Address]) -> Result<MembershipView, ControlError> {
        self.lock().join(seed_peers)
    }
    fn leave(&self) -> Result<(), ControlError> {
        self.lock().leave()
    }
    fn get_members(&self) -> Result<MembershipView, ControlError> {
        self.lock().get_members()
    }
    fn publish_heartbeat(&self) -> Result<u64, ControlError> {
        self.lock().publish_heartbeat()
    }
    fn report_peer_state(&self, peer: &str, state: PeerState) -> Result<PeerState, ControlError> {
        self.lock().report_peer_state(peer, state)
    }
    fn subscribe_membership_updates(&self) -> Result<Subscription, ControlError> {
        self.lock().subscribe()
    }
    fn get_peer_metadata(&self, peer: &str) -> Result<Metadata, ControlError> {
        self.lock().get_peer_metadata(peer)
    }
}
