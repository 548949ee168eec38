//! A node: one component instance, the host services it uses, the
//! subscribers the host owns, crash recovery and hot swap.
//!
//! Two kinds of fault are contained here (`docs/interface.md` [host-4] to
//! [host-6]):
//! - **A component crash** (a trap) is a crash of the component only. The
//!   node rebuilds it from the ledger store and the same process resumes at
//!   the incarnation it already announced (`lifecycle.started-as` is
//!   `resume`): peers see nothing. Rebuilds of a crash streak back off
//!   ([`crate::containment`]), and message bytes that crashed the
//!   component twice are quarantined.
//! - **A store fault** is fail-stop: when appending an entry fails, and
//!   fails again after [`LedgerStore::reopen`](crate::LedgerStore::reopen),
//!   nothing of that call after the entry is performed (no send can carry
//!   an entry the node did not save) and the node stops: every later call
//!   answers `unavailable` naming the store error, so the process can exit
//!   and be restarted on its data directory without forking its chain.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nodeplane_interface::{ControlPlane, Subscription, SubscriptionSender};
use nodeplane_types::{
    Address, ControlError, Effect, Member, MembershipUpdate, MembershipView, Metadata, NodeConfig,
    PeerState, UpdateCause,
};
use serde::Serialize;

use crate::containment::{payload_hash, Backoff, PayloadHash, Quarantine};
use crate::engine::{ComponentSource, LoadedComponent, Runtime};
use crate::host_state::StartMode;
use crate::instance::{CallError, Instance, Outcome};
use crate::mirror::Mirror;
use crate::services::Services;

/// The subscriber handle the host uses for its own mirror of the view.
const MIRROR: u64 = 0;

/// The timer id the host reserves for rebuilding a crashed component after
/// its back-off. It is set only while the component is down (every timer
/// of the crashed instance cancelled), so it never meets a component's own
/// timer; a component setting this id while running is still served.
pub const REBUILD_TIMER: u64 = u64::MAX;

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
    mirror: Mirror,
    served_version: u64,
    /// Added to component versions to give served versions.
    version_offset: i64,
    crashes: u64,
    swaps: u64,
    started: Instant,
    /// Whether this process stored an entry of this node's own chain:
    /// from then on a rebuild resumes rather than starts afresh.
    announced: bool,
    /// The crash streak, for the rebuild back-off.
    backoff: Backoff,
    /// When the crashed component is due to be rebuilt (virtual or wall
    /// ms of the services' clock); `None` while it runs.
    rebuild_due_ms: Option<u64>,
    /// Rebuilds after a crash that succeeded.
    rebuilds: u64,
    quarantine: Quarantine,
    /// Payloads put in quarantine.
    quarantined: u64,
    /// Deliveries dropped because their payload is quarantined.
    quarantine_drops: u64,
    /// Why the node stopped (a store fault), if it did.
    failure: Option<String>,
}

impl<S: Services> Node<S> {
    /// Instantiates `component` and initialises it from the stored ledger.
    pub fn start(
        runtime: &Runtime,
        component: &LoadedComponent,
        config: NodeConfig,
        mut services: S,
    ) -> Result<Node<S>, ControlError> {
        let (instance, info, effects) =
            boot(runtime, component, &config, &mut services, StartMode::Fresh)?;
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
            mirror: Mirror::new(),
            served_version: 0,
            version_offset: 0,
            crashes: 0,
            swaps: 0,
            started: Instant::now(),
            announced: false,
            backoff: Backoff::default(),
            rebuild_due_ms: None,
            rebuilds: 0,
            quarantine: Quarantine::default(),
            quarantined: 0,
            quarantine_drops: 0,
            failure: None,
        };
        node.perform(effects);
        if let Some(reason) = &node.failure {
            return Err(ControlError::Unavailable(format!("node stopped: {reason}")));
        }
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

    /// How many times the component crashed (each is rebuilt, after the
    /// back-off of its streak).
    pub fn crashes(&self) -> u64 {
        self.crashes
    }

    /// Bytes of linear memory the running instance has grown to.
    pub fn guest_memory_bytes(&self) -> usize {
        self.instance.memory_bytes()
    }

    /// How many times a crashed component was rebuilt successfully.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }

    /// How many distinct message payloads were quarantined for crashing
    /// the component [`QUARANTINE_AFTER_CRASHES`](crate::QUARANTINE_AFTER_CRASHES)
    /// times.
    pub fn quarantined(&self) -> u64 {
        self.quarantined
    }

    /// How many deliveries were dropped because their payload is
    /// quarantined.
    pub fn quarantine_drops(&self) -> u64 {
        self.quarantine_drops
    }

    /// When a crashed component is due to be rebuilt (ms of the services'
    /// clock), while it waits out its back-off.
    pub fn rebuild_due_ms(&self) -> Option<u64> {
        self.rebuild_due_ms
    }

    /// Why the node stopped, if a store fault stopped it (fail-stop: every
    /// call answers `unavailable` from then on).
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Fault injection: the next call into the component traps (it gets no
    /// fuel), so crash recovery runs exactly as after a real trap. For
    /// tests and fault drills.
    pub fn inject_crash(&mut self) {
        self.instance.starve_next_call();
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
            members: self.mirror.iter().cloned().collect(),
        }
    }

    /// Drops the host's mirror of the view, to measure what it held
    /// (`nodeplane bench --only speed`, at the end of a run). Nothing else
    /// changes, but a later hot swap or rebuild would report every member
    /// as new: only for a node about to be dropped.
    pub fn release_mirror(&mut self) {
        self.mirror = Mirror::new();
    }

    /// Performs effects recorded by a call, in order. Once the node has
    /// failed (an append failed twice) only event-log lines are performed:
    /// nothing after an unsaved entry may leave the node.
    fn perform(&mut self, effects: Vec<Effect>) {
        let mut gone = Vec::new();
        let mut withheld = 0usize;
        for effect in effects {
            if self.failure.is_some() {
                match effect {
                    Effect::Log { kind, detail } => self.services.log_event(&kind, &detail),
                    _ => withheld = withheld.saturating_add(1),
                }
                continue;
            }
            match effect {
                Effect::Send { to, payload } => self.services.send(&to, payload),
                Effect::SetTimer { timer, after_ms } => self.services.set_timer(timer, after_ms),
                Effect::CancelTimer { timer } => self.services.cancel_timer(timer),
                Effect::Append(entry) => self.append(&entry),
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
        if withheld > 0 {
            tracing::warn!(
                withheld,
                "effects after a failed ledger append were not performed"
            );
        }
        if self.failure.is_some() {
            return;
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

    /// Stores one entry. A failure is retried once after the store's
    /// [`reopen`](crate::LedgerStore::reopen); failing again stops the node
    /// (fail-stop, see the module documentation).
    fn append(&mut self, entry: &nodeplane_entry::Entry) {
        let first = match self.services.ledger().append(entry) {
            Ok(()) => return self.stored(entry),
            Err(e) => e.to_string(),
        };
        tracing::warn!(error = %first, author = %entry.author, seq = entry.seq, "ledger append failed; reopening the store and retrying once");
        let detail = serde_json::json!({
            "author": entry.author, "seq": entry.seq, "error": first, "retry": true,
        });
        self.services
            .log_event("ledger-append-failed", &detail.to_string());
        let ledger = self.services.ledger();
        let retried = ledger.reopen().and_then(|()| ledger.append(entry));
        match retried {
            Ok(()) => {
                let detail = serde_json::json!({"author": entry.author, "seq": entry.seq});
                self.services
                    .log_event("ledger-append-recovered", &detail.to_string());
                self.stored(entry);
            }
            Err(second) => self.fail(format!(
                "the ledger store failed to save entry {}#{}: {first}; after reopening: {second}",
                entry.author, entry.seq
            )),
        }
    }

    /// Notes an entry the store saved.
    fn stored(&mut self, entry: &nodeplane_entry::Entry) {
        if entry.author == self.config.node_id {
            self.announced = true;
        }
    }

    /// Stops the node for good: no timer fires into the component again and
    /// every later call answers `unavailable` naming `reason`.
    fn fail(&mut self, reason: String) {
        tracing::error!(%reason, "node stopped (fail-stop): it publishes nothing it has not saved");
        let detail = serde_json::json!({ "reason": reason });
        self.services.log_event("node-failed", &detail.to_string());
        self.services.cancel_all_timers();
        self.rebuild_due_ms = None;
        self.failure = Some(reason);
    }

    /// Whether the component can take a call now: not after a store fault,
    /// not while a crashed component waits out its back-off (once the wait
    /// is over, the component is rebuilt first).
    fn ready(&mut self) -> Result<(), ControlError> {
        if let Some(reason) = &self.failure {
            return Err(ControlError::Unavailable(format!("node stopped: {reason}")));
        }
        if let Some(due) = self.rebuild_due_ms {
            let now = self.services.now_ms();
            if now < due {
                return Err(ControlError::Unavailable(format!(
                    "the component crashed {} times in a row and is rebuilt in {} ms",
                    self.backoff.streak(),
                    due.saturating_sub(now)
                )));
            }
            self.rebuild_after_crash();
            if let Some(reason) = &self.failure {
                return Err(ControlError::Unavailable(format!("node stopped: {reason}")));
            }
            if let Some(due) = self.rebuild_due_ms {
                return Err(ControlError::Unavailable(format!(
                    "rebuilding the crashed component failed; next attempt in {} ms",
                    due.saturating_sub(now)
                )));
            }
        }
        if let Some(reason) = self.instance.crashed() {
            // Only a left node keeps a crashed instance (it is not rebuilt).
            return Err(ControlError::Unavailable(format!(
                "the component crashed after the node left and is not rebuilt: {reason}"
            )));
        }
        Ok(())
    }

    /// Counts a crash and rebuilds the component at once or after the
    /// back-off of the crash streak.
    fn crashed(&mut self, call: &str, reason: &str, message: Option<&PayloadHash>) {
        self.crashes = self.crashes.saturating_add(1);
        let now = self.services.now_ms();
        let delay = self.backoff.crashed(now);
        let mut detail = serde_json::json!({
            "call": call, "reason": reason, "crashes": self.crashes,
            "streak": self.backoff.streak(), "rebuild_in_ms": delay,
        });
        if let Some(hash) = message {
            detail["message_sha256"] = hex::encode(hash).into();
        }
        self.services
            .log_event("component-crashed", &detail.to_string());
        if self.has_left {
            return;
        }
        if delay == 0 {
            self.rebuild_after_crash();
        } else {
            self.schedule_rebuild(now, delay);
        }
    }

    /// Takes the crashed component down until `now + delay`: its timers are
    /// cancelled and the host's [`REBUILD_TIMER`] is set.
    fn schedule_rebuild(&mut self, now: u64, delay: u64) {
        tracing::warn!(
            delay_ms = delay,
            streak = self.backoff.streak(),
            "component down: rebuild backed off"
        );
        self.services.cancel_all_timers();
        self.rebuild_due_ms = Some(now.saturating_add(delay));
        self.services.set_timer(REBUILD_TIMER, delay);
    }

    /// Rebuilds the crashed component from the ledger; a failed rebuild
    /// counts in the streak and is retried after its back-off.
    fn rebuild_after_crash(&mut self) {
        self.rebuild_due_ms = None;
        let component = self.instance.component().clone();
        match self.replace(&component, "crash recovery") {
            Ok(_) => self.rebuilds = self.rebuilds.saturating_add(1),
            Err(e) => {
                if self.failure.is_some() {
                    return;
                }
                let now = self.services.now_ms();
                let delay = self
                    .backoff
                    .crashed(now)
                    .max(crate::containment::REBUILD_BACKOFF_BASE_MS);
                tracing::error!(error = %e, retry_in_ms = delay, "could not rebuild the crashed component");
                let detail = serde_json::json!({
                    "error": e.to_string(), "streak": self.backoff.streak(), "retry_in_ms": delay,
                });
                self.services
                    .log_event("component-rebuild-failed", &detail.to_string());
                self.schedule_rebuild(now, delay);
            }
        }
    }

    fn serve_version(&self, component_version: u64) -> u64 {
        (component_version as i64 + self.version_offset).max(0) as u64
    }

    fn apply_to_mirror(&mut self, update: &MembershipUpdate) {
        self.served_version = self.served_version.max(update.version);
        let member = self.runtime.members().intern(&update.current);
        self.mirror.set(member);
    }

    /// Runs a call's outcome: performs its effects and, if the component
    /// crashed, rebuilds it from the ledger (at once or after a back-off).
    fn finish<T>(&mut self, outcome: Outcome<T>) -> Result<T, ControlError> {
        self.finish_message(outcome, None)
    }

    /// [`Node::finish`] for a delivery, naming the message in a crash.
    fn finish_message<T>(
        &mut self,
        outcome: Outcome<T>,
        message: Option<&PayloadHash>,
    ) -> Result<T, ControlError> {
        let (result, effects) = outcome;
        self.perform(effects);
        if let Some(reason) = &self.failure {
            // The call's entry was not saved: its result must not be
            // taken as done.
            return Err(ControlError::Unavailable(format!("node stopped: {reason}")));
        }
        if let Err(CallError::Crashed { call, reason }) = &result {
            self.crashed(call, reason, message);
        }
        result.map_err(ControlError::from)
    }

    /// Delivers a message from the network. Bytes that crashed the
    /// component [`QUARANTINE_AFTER_CRASHES`](crate::QUARANTINE_AFTER_CRASHES)
    /// times are dropped before they reach it (`bad-message`).
    pub fn deliver_message(&mut self, source: &str, payload: &[u8]) -> Result<(), ControlError> {
        if let Some(hash) = self.quarantine.holds(payload) {
            self.quarantine_drops = self.quarantine_drops.saturating_add(1);
            let hash = hex::encode(hash);
            tracing::debug!(%source, sha256 = %hash, "quarantined message dropped");
            return Err(ControlError::BadMessage(format!(
                "quarantined: these bytes (sha256 {hash}) crashed the component {} times",
                crate::containment::QUARANTINE_AFTER_CRASHES
            )));
        }
        self.ready()?;
        let now = self.services.now_ms();
        let outcome = self.instance.deliver_message(now, source, payload);
        if !matches!(outcome.0, Err(CallError::Crashed { .. })) {
            return self.finish(outcome);
        }
        let hash = payload_hash(payload);
        let result = self.finish_message(outcome, Some(&hash));
        let (crashes, now_quarantined) = self.quarantine.crashed(hash);
        if now_quarantined {
            self.quarantined = self.quarantined.saturating_add(1);
            let sha256 = hex::encode(hash);
            tracing::warn!(%source, %sha256, bytes = payload.len(), crashes, "message quarantined: it crashed the component repeatedly");
            let detail = serde_json::json!({
                "sha256": sha256, "source": source, "bytes": payload.len(),
                "crashes": crashes, "quarantined": self.quarantine.len(),
            });
            self.services
                .log_event("message-quarantined", &detail.to_string());
        }
        result
    }

    /// Fires a timer the component set, or the host's [`REBUILD_TIMER`].
    pub fn fire_timer(&mut self, timer: u64) -> Result<(), ControlError> {
        if timer == REBUILD_TIMER {
            if let Some(due) = self.rebuild_due_ms {
                let now = self.services.now_ms();
                if now < due {
                    // Early (never in the simulator): wait for the rest.
                    self.services
                        .set_timer(REBUILD_TIMER, due.saturating_sub(now));
                    return Ok(());
                }
                return self.ready();
            }
        }
        self.ready()?;
        let now = self.services.now_ms();
        let outcome = self.instance.fire_timer(now, timer);
        self.finish(outcome)
    }

    /// `join`.
    pub fn join(&mut self, seeds: &[Address]) -> Result<MembershipView, ControlError> {
        self.ready()?;
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
        self.ready()?;
        let now = self.services.now_ms();
        let outcome = self.instance.leave(now);
        self.finish(outcome)?;
        self.has_left = true;
        Ok(())
    }

    /// `get-members`.
    pub fn get_members(&mut self) -> Result<MembershipView, ControlError> {
        self.ready()?;
        let now = self.services.now_ms();
        let outcome = self.instance.get_members(now);
        let mut view = self.finish(outcome)?;
        view.version = self.serve_version(view.version);
        Ok(view)
    }

    /// `publish-heartbeat`.
    pub fn publish_heartbeat(&mut self) -> Result<u64, ControlError> {
        self.ready()?;
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
        self.ready()?;
        let now = self.services.now_ms();
        let outcome = self.instance.report_peer_state(now, peer, state);
        self.finish(outcome)
    }

    /// `get-peer-metadata`.
    pub fn get_peer_metadata(&mut self, peer: &str) -> Result<Metadata, ControlError> {
        self.ready()?;
        let now = self.services.now_ms();
        let outcome = self.instance.get_peer_metadata(now, peer);
        self.finish(outcome)
    }

    /// `subscribe-membership-updates`: the host allocates a handle, asks the
    /// component to deliver to it, and keeps the sending half.
    pub fn subscribe(&mut self) -> Result<Subscription, ControlError> {
        self.ready()?;
        let handle = self.next_handle;
        self.next_handle = self.next_handle.saturating_add(1);
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
        self.swaps = self.swaps.saturating_add(1);
        self.rebuild_due_ms = None;
        Ok(report)
    }

    /// Rebuilds the running component from the ledger store exactly as
    /// crash recovery does, without a crash: a fresh instance, resumed at
    /// this node's incarnation once it has announced one, re-joined and
    /// re-subscribed (`docs/interface.md` [host-5]; the conformance suite
    /// checks a component against it).
    pub fn rebuild(&mut self) -> Result<SwapReport, ControlError> {
        let component = self.instance.component().clone();
        let report = self.replace(&component, "rebuild")?;
        self.rebuild_due_ms = None;
        Ok(report)
    }

    /// How a replacement instance starts: it resumes once this process has
    /// stored an entry of its own chain and joined, else starts afresh.
    fn start_mode(&self) -> StartMode {
        if self.announced && self.joined_seeds.is_some() {
            StartMode::Resume
        } else {
            StartMode::Fresh
        }
    }

    fn replace(
        &mut self,
        component: &LoadedComponent,
        why: &str,
    ) -> Result<SwapReport, ControlError> {
        let started = Instant::now();
        if let Some(reason) = &self.failure {
            return Err(ControlError::Unavailable(format!("node stopped: {reason}")));
        }
        if self.has_left {
            return Err(ControlError::HasLeft);
        }
        let from = self.instance.component().source.to_string();
        let start = self.start_mode();
        let (mut fresh, info, mut pending) = boot(
            &self.runtime,
            component,
            &self.config,
            &mut self.services,
            start,
        )?;
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
            self.served_version = self.served_version.saturating_add(1);
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
        self.mirror = Mirror::of_view(&new_view, self.runtime.members());
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
            "start": match start { StartMode::Fresh => "fresh", StartMode::Resume => "resume" },
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
    start: StartMode,
) -> Result<Booted, ControlError> {
    let seed = services.seed();
    let signer = services.signer(&config.node_id);
    let mut instance =
        Instance::with_start(runtime, component, seed, start, signer).map_err(|e| {
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
    instance.set_entry_reader(services.ledger().reader());
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
fn view_difference(old: &Mirror, new: &MembershipView) -> Vec<(Option<PeerState>, Member)> {
    let mut changes = Vec::new();
    let new_by_id: BTreeMap<&str, &Member> =
        new.members.iter().map(|m| (m.id.as_str(), m)).collect();
    for before in old.iter() {
        match new_by_id.get(before.id.as_str()) {
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
        if !old.contains(&member.id) {
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
