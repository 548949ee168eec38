//! Start-up, serving and shutdown of one agent: wires the store, the event
//! log, the sockets, the services, the node, its driver and the API.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodeplane_interface::{ControlError, ControlPlane};
use nodeplane_runtime::signing::NodeSigner;
use nodeplane_runtime::{Limits, Node, NodeConfig, NodeHandle, Runtime};
use serde_json::json;
use tokio::sync::broadcast;

use crate::config::Config;
use crate::driver::{self, Mailbox};
use crate::events::{EventLog, Source};
use crate::faults::Faults;
use crate::guard::Guard;
use crate::http::{blocking, router, AppState};
use crate::metrics::Metrics;
use crate::network::{self, NetContext, SenderContext};
use crate::services::{AgentServices, Timers, MAX_OUTBOX_MESSAGES};
use crate::store::{LedgerError, RedbLedger};

/// Longest shutdown waits for queued sends (the `left` announcement) to
/// leave the host.
pub const FLUSH_BOUND: Duration = Duration::from_millis(500);

/// Capacity of the membership-update fan-out to SSE clients; a client
/// further behind is told how many it missed.
pub const UPDATE_FANOUT: usize = 1024;

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("setting `data_dir`: cannot create {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The ledger store is unusable (names the first bad entry).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The event log could not be opened.
    #[error("event log {path}: {source}")]
    EventLog {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A socket could not be bound.
    #[error("setting `{setting}`: cannot bind {addr}: {source}")]
    Bind {
        /// `listen` or `api`.
        setting: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The component could not be loaded.
    #[error("setting `component`: {0}")]
    Component(String),
    /// The node's signing key file is unusable.
    #[error(transparent)]
    SigningKey(#[from] crate::identity::IdentityError),
    /// The cluster keyring file is unusable.
    #[error(transparent)]
    Keyring(#[from] crate::keyring::KeyringError),
    /// The node could not be started or joined.
    #[error("starting the node: {0}")]
    Node(#[from] ControlError),
}

/// A running agent.
pub struct Agent {
    state: Arc<AppState>,
    config: Config,
    api_listener: Option<tokio::net::TcpListener>,
    api_addr: SocketAddr,
    mailbox: Mailbox,
    driver: Option<std::thread::JoinHandle<()>>,
    pending_sends: Arc<AtomicUsize>,
    stop_forwarder: Arc<AtomicBool>,
}

/// Loads a component by built-in name or file path.
pub fn load_component(
    runtime: &Runtime,
    spec: &str,
) -> Result<nodeplane_runtime::LoadedComponent, StartError> {
    nodeplane_artifacts::load(runtime, spec).map_err(|e| StartError::Component(e.to_string()))
}

impl Agent {
    /// Starts an agent on the current (multi-threaded) tokio runtime: opens
    /// and verifies the store, binds the sockets, starts the component and
    /// joins through the configured seeds.
    pub async fn start(config: Config) -> Result<Agent, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let dir = config.data_dir.clone();
        let ledger = blocking(move || RedbLedger::open(&dir)).await?;
        let signer = Arc::new(NodeSigner::new(crate::identity::load_or_create(
            &config.data_dir,
        )?));
        let metrics = Arc::new(Metrics::default());
        let events = EventLog::open(&config.data_dir)
            .map_err(|source| StartError::EventLog {
                path: config
                    .data_dir
                    .join(crate::events::EVENTS_FILE)
                    .display()
                    .to_string(),
                source,
            })?
            .with_metrics(Arc::clone(&metrics));
        let sockets = network::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                setting: "listen",
                addr: config.listen,
                source,
            })?;
        let api_listener = tokio::net::TcpListener::bind(config.api)
            .await
            .map_err(|source| StartError::Bind {
                setting: "api",
                addr: config.api,
                source,
            })?;
        let api_addr = api_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                setting: "api",
                addr: config.api,
                source,
            })?;

        let faults = Arc::new(Faults::default());
        let keys = Arc::new(crate::keyring::ClusterKeys::start(
            &config.data_dir,
            config.cluster_key.as_ref(),
            Arc::clone(&metrics),
            &events,
        )?);
        let guard = Arc::new(Guard::new(
            &config.seeds,
            Arc::clone(&metrics),
            Some(events.clone()),
        ));
        let (outbox_tx, outbox_rx) = tokio::sync::mpsc::channel(MAX_OUTBOX_MESSAGES);
        let pending_sends = Arc::new(AtomicUsize::new(0));
        let (mailbox, mailbox_tx, mailbox_rx) = driver::mailbox(Arc::clone(&metrics));
        let timers = Timers::new(tokio::runtime::Handle::current(), mailbox_tx);
        let services = AgentServices::new(
            outbox_tx,
            Arc::clone(&pending_sends),
            timers.clone(),
            ledger.clone(),
            events.clone(),
            Arc::clone(&metrics),
            signer,
        );
        let node_config = NodeConfig {
            node_id: config.node_id.clone(),
            address: config.listen.to_string(),
            metadata: config.metadata.clone(),
            tunables: config.tunables,
        };
        let spec = config.component.clone();
        let started = Instant::now();
        let (runtime, node) = blocking(move || -> Result<_, StartError> {
            let runtime = Runtime::new(Limits::default())
                .map_err(|e| StartError::Component(format!("{e:#}")))?;
            let component = load_component(&runtime, &spec)?;
            let node = Node::start(&runtime, &component, node_config, services)?;
            Ok((runtime, NodeHandle::new(node)))
        })
        .await?;
        tracing::info!(component = %config.component, ms = started.elapsed().as_millis() as u64, entries = ledger.len_entries(), "component started");

        // The guard's member book follows the view from its own
        // subscription, taken before join so that no update is missed.
        let member_updates = {
            let node = node.clone();
            blocking(move || node.subscribe_membership_updates()).await?
        };
        guard.members().attach(member_updates);
        let ctx = NetContext {
            mailbox: mailbox.clone(),
            metrics: Arc::clone(&metrics),
            faults: Arc::clone(&faults),
            guard: Arc::clone(&guard),
            keys: Arc::clone(&keys),
        };
        network::spawn_sender(
            SenderContext {
                udp: Arc::clone(&sockets.udp),
                local: config.listen.to_string(),
                pending: Arc::clone(&pending_sends),
                metrics: Arc::clone(&metrics),
                faults: Arc::clone(&faults),
                guard: Arc::clone(&guard),
                keys: Arc::clone(&keys),
            },
            outbox_rx,
        );
        network::spawn_receivers(Arc::clone(&sockets.udp), sockets.tcp, ctx);
        let driver = driver::spawn(
            node.clone(),
            mailbox.clone(),
            mailbox_rx,
            timers,
            Arc::clone(&faults),
        );

        // Fan membership updates out to SSE clients from one subscription.
        let (updates, _) = broadcast::channel(UPDATE_FANOUT);
        let stop_forwarder = Arc::new(AtomicBool::new(false));
        let subscription = {
            let node = node.clone();
            blocking(move || node.subscribe_membership_updates()).await?
        };
        {
            let updates = updates.clone();
            let stop = Arc::clone(&stop_forwarder);
            std::thread::Builder::new()
                .name("nodeplane-updates".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(update) = subscription.recv_timeout(Duration::from_millis(200))
                        {
                            let _ = updates.send(update);
                        }
                    }
                })
                .expect("spawning the update forwarder");
        }

        let seeds: Vec<String> = config.seeds.iter().map(|s| s.to_string()).collect();
        let view = {
            let node = node.clone();
            let seeds = seeds.clone();
            blocking(move || node.join(&seeds)).await?
        };
        guard.members().set_view(&view);
        let incarnation = view.member(&config.node_id).map(|m| m.incarnation);
        tracing::info!(node = %config.node_id, listen = %config.listen, api = %api_addr, ?incarnation, seeds = ?seeds, "joined");
        events.record_value(
            Source::Agent,
            "agent-started",
            json!({
                "node_id": config.node_id, "listen": config.listen.to_string(), "api": api_addr.to_string(),
                "component": config.component, "seeds": seeds, "incarnation": incarnation,
                "ledger_entries": ledger.len_entries(),
            }),
        );

        let state = Arc::new(AppState {
            node,
            runtime,
            ledger,
            metrics,
            faults,
            events,
            updates,
            admin_token: config.admin_token.clone(),
            node_id: config.node_id.clone(),
            address: config.listen.to_string(),
            keys,
        });
        Ok(Agent {
            state,
            config,
            api_listener: Some(api_listener),
            api_addr,
            mailbox,
            driver: Some(driver),
            pending_sends,
            stop_forwarder,
        })
    }

    /// The shared state the API serves.
    pub fn state(&self) -> Arc<AppState> {
        Arc::clone(&self.state)
    }

    /// The API address actually bound.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Serves the API until `shutdown` completes, then stops gracefully.
    pub async fn serve(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let listener = self.api_listener.take().expect("serve is called once");
        let app = router(self.state()).into_make_service_with_connect_info::<SocketAddr>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await
        });
        tokio::select! {
            _ = shutdown => {}
            reason = node_failed(self.state.node.clone()) => {
                // Fail-stop: a store fault stopped the node; the process
                // exits so that it is restarted on its data directory.
                self.state.events.record_value(
                    Source::Agent,
                    "agent-failed",
                    json!({ "reason": reason }),
                );
                self.stop().await;
                let _ = stop_tx.send(());
                anyhow::bail!(
                    "the node stopped and the agent exits (fail-stop): {reason}. \
                     Nothing unsaved was published; fix the store and restart the agent on the same data directory"
                );
            }
            result = server => {
                // The server ended on its own: that is an error.
                result??;
                anyhow::bail!("the API server stopped unexpectedly");
            }
        }
        self.stop().await;
        let _ = stop_tx.send(());
        Ok(())
    }

    /// Leaves (unless `leave_on_shutdown = false` or already left), lets
    /// queued sends flush for at most [`FLUSH_BOUND`], stops the driver.
    pub async fn stop(&mut self) {
        let node = self.state.node.clone();
        if self.config.leave_on_shutdown {
            let has_left = {
                let n = node.clone();
                blocking(move || n.lock().has_left()).await
            };
            if !has_left {
                match blocking(move || node.leave()).await {
                    Ok(()) => tracing::info!("left the cluster"),
                    Err(e) => tracing::warn!(error = %e, "leave failed"),
                }
            }
        }
        let deadline = Instant::now() + FLUSH_BOUND;
        while self.pending_sends.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let unsent = self.pending_sends.load(Ordering::SeqCst);
        self.state.events.record_value(
            Source::Agent,
            "agent-stopped",
            json!({ "left": self.config.leave_on_shutdown, "unsent": unsent }),
        );
        self.stop_forwarder.store(true, Ordering::Relaxed);
        self.mailbox.stop();
        if let Some(driver) = self.driver.take() {
            let _ = blocking(move || driver.join()).await;
        }
    }
}

/// How often [`Agent::serve`] looks whether a store fault stopped the node
/// (fail-stop): the node itself publishes nothing meanwhile, so this only
/// bounds how long the process lingers.
pub const FAILURE_POLL: Duration = Duration::from_millis(200);

/// Resolves with the reason once a store fault has stopped the node.
async fn node_failed(node: NodeHandle<AgentServices>) -> String {
    loop {
        tokio::time::sleep(FAILURE_POLL).await;
        let n = node.clone();
        if let Some(reason) = blocking(move || n.lock().failure().map(str::to_string)).await {
            return reason;
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs an agent until SIGINT/SIGTERM on its own tokio runtime.
pub fn run(config: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("nodeplane-agent")
        .build()?;
    let result = rt.block_on(async move {
        let agent = Agent::start(config).await?;
        eprintln!(
            "nodeplane agent {} running: control {} (udp+tcp), api http://{}",
            agent.config.node_id,
            agent.config.listen,
            agent.api_addr()
        );
        agent.serve(shutdown_signal()).await
    });
    rt.shutdown_timeout(Duration::from_millis(200));
    result
}
