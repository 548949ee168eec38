//! The node's driver: one thread that owns the mailbox and makes every
//! network delivery and timer firing a serialised call into the node, so
//! the component stays single-threaded and no async task blocks on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use nodeplane_interface::ControlError;
use nodeplane_runtime::NodeHandle;

use crate::faults::Faults;
use crate::metrics::Metrics;
use crate::services::{AgentServices, Input, Timers};

/// Most network messages waiting in the mailbox; more are dropped (and
/// counted as rejected with reason `overload`).
pub const MAX_QUEUED_MESSAGES: usize = 4096;

/// How often the fault rules' id → address book is refreshed.
const BOOK_REFRESH: Duration = Duration::from_secs(1);

/// The sending half of the mailbox with its message gauge.
#[derive(Clone)]
pub struct Mailbox {
    sender: mpsc::Sender<Input>,
    queued: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Mailbox {
    /// Posts a network message; false (and counted) if the mailbox is full.
    pub fn deliver(&self, source: String, payload: Vec<u8>) -> bool {
        if self.queued.load(Ordering::Relaxed) >= MAX_QUEUED_MESSAGES {
            self.metrics.rejected("overload");
            return false;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self
            .sender
            .send(Input::Message { source, payload })
            .is_err()
        {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Asks the driver to stop.
    pub fn stop(&self) {
        let _ = self.sender.send(Input::Stop);
    }
}

/// A mailbox: its sending half and the receiver for [`run`].
pub fn mailbox(metrics: Arc<Metrics>) -> (Mailbox, mpsc::Sender<Input>, mpsc::Receiver<Input>) {
    let (sender, receiver) = mpsc::channel();
    let mailbox = Mailbox {
        sender: sender.clone(),
        queued: Arc::default(),
        metrics,
    };
    (mailbox, sender, receiver)
}

/// Runs the driver loop on a new thread until [`Input::Stop`].
pub fn spawn(
    node: NodeHandle<AgentServices>,
    mailbox: Mailbox,
    receiver: mpsc::Receiver<Input>,
    timers: Timers,
    faults: Arc<Faults>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("nodeplane-driver".into())
        .spawn(move || run(node, mailbox, receiver, timers, faults))
        .expect("spawning the driver thread")
}

fn run(
    node: NodeHandle<AgentServices>,
    mailbox: Mailbox,
    receiver: mpsc::Receiver<Input>,
    timers: Timers,
    faults: Arc<Faults>,
) {
    let mut last_refresh = Instant::now() - BOOK_REFRESH;
    let mut book_version = u64::MAX;
    for input in receiver {
        match input {
            Input::Stop => break,
            Input::Message { source, payload } => {
                mailbox.queued.fetch_sub(1, Ordering::Relaxed);
                let result = node.lock().deliver_message(&source, &payload);
                match result {
                    Ok(()) => {}
                    Err(ControlError::BadMessage(reason)) => {
                        mailbox.metrics.rejected("component");
                        tracing::debug!(%source, %reason, "component rejected a message");
                    }
                    Err(e) => tracing::warn!(%source, error = %e, "delivering a message failed"),
                }
            }
            Input::Timer { id, generation } => {
                if timers.take_if_current(id, generation) {
                    if let Err(e) = node.lock().fire_timer(id) {
                        tracing::warn!(timer = id, error = %e, "firing a timer failed");
                    }
                }
            }
        }
        if last_refresh.elapsed() >= BOOK_REFRESH {
            last_refresh = Instant::now();
            let view = node.lock().mirror_view();
            if view.version != book_version {
                book_version = view.version;
                let book: HashMap<String, String> = view
                    .members
                    .into_iter()
                    .map(|m| (m.id, m.address))
                    .collect();
                faults.set_address_book(book);
            }
        }
    }
    tracing::debug!("driver stopped");
}
