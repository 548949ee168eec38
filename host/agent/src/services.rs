//! The agent's host services: wall clock, OS randomness, the control
//! channel (through an outbox the sender task drains), tokio timers, the
//! redb ledger store and the JSON-lines event log.
//!
//! `Node` performs effects through these services while it is locked, so
//! nothing here calls back into the node: sends go to a channel, timers
//! post to the driver's mailbox when due.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nodeplane_runtime::signing::NodeSigner;
use nodeplane_runtime::{LedgerStore, Services};
use rand::RngCore;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;

use crate::events::{epoch_ms, EventLog, Source};
use crate::metrics::Metrics;
use crate::store::RedbLedger;

/// Most messages waiting in the outbox for the sender task; a send beyond
/// is dropped and counted (`nodeplane_sends_dropped_total{reason=
/// "outbox-full"}`). The sender drains thousands of datagrams a second, so
/// a full outbox means the host is overloaded or a flood is being answered;
/// 1024 covers a leave announcement to a large cluster plus a gossip round
/// while bounding the queued bytes to 1024 messages (at most 64 MiB).
pub const MAX_OUTBOX_MESSAGES: usize = 1024;

/// One message for the sender task.
#[derive(Debug)]
pub struct Outgoing {
    /// Destination control address.
    pub to: String,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Work for the node's driver thread (its mailbox).
#[derive(Debug)]
pub enum Input {
    /// A message from the network.
    Message {
        /// Sender's control address.
        source: String,
        /// The payload.
        payload: Vec<u8>,
    },
    /// A timer came due.
    Timer {
        /// The component's timer id.
        id: u64,
        /// The arming it belongs to (stale firings are ignored).
        generation: u64,
    },
    /// Stop the driver.
    Stop,
}

/// Timers armed through tokio; a due timer posts [`Input::Timer`] to the
/// driver's mailbox, which fires it only if it is still armed.
#[derive(Clone)]
pub struct Timers {
    runtime: tokio::runtime::Handle,
    mailbox: mpsc::Sender<Input>,
    armed: Arc<Mutex<HashMap<u64, (u64, tokio::task::AbortHandle)>>>,
    next_generation: Arc<AtomicU64>,
}

impl Timers {
    /// Timers spawning on `runtime` and posting to `mailbox`.
    pub fn new(runtime: tokio::runtime::Handle, mailbox: mpsc::Sender<Input>) -> Timers {
        Timers {
            runtime,
            mailbox,
            armed: Arc::default(),
            next_generation: Arc::new(AtomicU64::new(1)),
        }
    }

    fn arm(&self, id: u64, after_ms: u64) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let mailbox = self.mailbox.clone();
        let task = self.runtime.spawn(async move {
            tokio::time::sleep(Duration::from_millis(after_ms)).await;
            let _ = mailbox.send(Input::Timer { id, generation });
        });
        if let Some((_, old)) = self.lock().insert(id, (generation, task.abort_handle())) {
            old.abort();
        }
    }

    fn cancel(&self, id: u64) {
        if let Some((_, task)) = self.lock().remove(&id) {
            task.abort();
        }
    }

    fn cancel_all(&self) {
        for (_, (_, task)) in self.lock().drain() {
            task.abort();
        }
    }

    /// Called by the driver when a firing arrives: true (and disarmed) if
    /// that arming is still current.
    pub fn take_if_current(&self, id: u64, generation: u64) -> bool {
        let mut armed = self.lock();
        if armed.get(&id).is_some_and(|(g, _)| *g == generation) {
            armed.remove(&id);
            true
        } else {
            false
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (u64, tokio::task::AbortHandle)>> {
        self.armed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The real host services of an agent.
pub struct AgentServices {
    epoch_at_start: u64,
    started: Instant,
    outbox: Sender<Outgoing>,
    pending_sends: Arc<AtomicUsize>,
    timers: Timers,
    ledger: RedbLedger,
    events: EventLog,
    metrics: Arc<Metrics>,
    signer: Arc<NodeSigner>,
}

impl AgentServices {
    /// Services sending through `outbox` (counting queued sends in
    /// `pending_sends`), with the given timers, store, log and counters.
    pub fn new(
        outbox: Sender<Outgoing>,
        pending_sends: Arc<AtomicUsize>,
        timers: Timers,
        ledger: RedbLedger,
        events: EventLog,
        metrics: Arc<Metrics>,
        signer: Arc<NodeSigner>,
    ) -> AgentServices {
        AgentServices {
            signer,
            epoch_at_start: epoch_ms(),
            started: Instant::now(),
            outbox,
            pending_sends,
            timers,
            ledger,
            events,
            metrics,
        }
    }

    /// The event log.
    pub fn events(&self) -> &EventLog {
        &self.events
    }
}

impl Services for AgentServices {
    /// Wall-clock milliseconds, anchored at start and advanced by a
    /// monotonic clock (never goes backwards).
    fn now_ms(&mut self) -> u64 {
        self.epoch_at_start + self.started.elapsed().as_millis() as u64
    }

    fn seed(&mut self) -> u64 {
        rand::rngs::OsRng.next_u64()
    }

    fn send(&mut self, to: &str, payload: Vec<u8>) {
        self.pending_sends.fetch_add(1, Ordering::SeqCst);
        let outgoing = Outgoing {
            to: to.to_string(),
            payload,
        };
        match self.outbox.try_send(outgoing) {
            Ok(()) => {}
            Err(TrySendError::Full(o)) => {
                self.pending_sends.fetch_sub(1, Ordering::SeqCst);
                self.metrics.send_dropped("outbox-full");
                tracing::debug!(to = %o.to, bytes = o.payload.len(), "outbox full: send dropped");
            }
            Err(TrySendError::Closed(_)) => {
                self.pending_sends.fetch_sub(1, Ordering::SeqCst);
                self.metrics.send_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn set_timer(&mut self, timer: u64, after_ms: u64) {
        self.timers.arm(timer, after_ms);
    }

    fn cancel_timer(&mut self, timer: u64) {
        self.timers.cancel(timer);
    }

    fn cancel_all_timers(&mut self) {
        self.timers.cancel_all();
    }

    fn ledger(&mut self) -> &mut dyn LedgerStore {
        &mut self.ledger
    }

    /// The key of this node's data directory ([`crate::identity`]).
    fn signer(&mut self, _node_id: &str) -> Arc<NodeSigner> {
        Arc::clone(&self.signer)
    }

    fn log_event(&mut self, kind: &str, detail: &str) {
        self.metrics.event(kind);
        tracing::debug!(kind, detail, "component event");
        if kind == crate::checkpoints::AGREED_EVENT {
            if let Err(e) = self.metrics.checkpoint.note_agreed(detail, epoch_ms()) {
                tracing::warn!(error = %e, detail, "component event not shown in /status");
            }
        }
        self.events.record(Source::Component, kind, detail);
    }
}
