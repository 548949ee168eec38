//! The control channel over tokio sockets: a UDP socket and a TCP listener
//! on the control address, the receive loops that validate the wire format
//! and post to the driver's mailbox, and the sender task that drains the
//! outbox (see [`crate::framing`] for the format). With a cluster key
//! ([`crate::keyring`]) every message is sealed on the way out and opened
//! on the way in, before the fault rules, the guard and the component: a
//! message that does not open, is stale or replayed is dropped, counted in
//! `nodeplane_messages_rejected_total{reason}` and logged at most once per
//! [`crate::guard::DROP_LOG_INTERVAL`] per reason.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::mpsc::Receiver;
use tokio::sync::Semaphore;

use crate::driver::Mailbox;
use crate::faults::Faults;
use crate::framing::{self, MAX_DATAGRAM_PAYLOAD};
use crate::guard::{Dropped, Guard};
use crate::keyring::ClusterKeys;
use crate::metrics::Metrics;
use crate::services::Outgoing;

/// Longest a TCP connect or frame write may take.
pub const TCP_SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest an inbound TCP connection may sit idle between frames, and
/// longest one frame may take to arrive whole (so a slow-loris client that
/// trickles bytes is cut too). An agent connects and writes a frame within
/// [`TCP_SEND_TIMEOUT`] and then closes, so 5 s (2.5 times that) never
/// cuts an honest sender; closed connections are counted as
/// `nodeplane_tcp_connections_closed_total{reason="idle-timeout"}`.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most inbound TCP connections served at once; more are refused
/// (`reason="total-limit"`). Each costs a task and a read buffer of at most
/// one frame.
pub const MAX_TCP_CONNECTIONS: usize = 128;
/// Most inbound TCP connections served at once from one IP; more are
/// refused (`reason="per-ip-limit"`), so one host holding connections open
/// cannot take them all. An agent opens one short connection per large
/// message, at most a few at a time per peer; 32 leaves room for several
/// agents sharing one IP (as on loopback) while a single host can hold at
/// most a quarter of [`MAX_TCP_CONNECTIONS`].
pub const MAX_TCP_CONNECTIONS_PER_IP: usize = 32;
/// Most outbound TCP frames being sent at once (each a task with a
/// connection); a large send beyond is dropped and counted
/// (`nodeplane_sends_dropped_total{reason="tcp-sends-full"}`): reconciliation
/// asks again. A want is answered with at most 4 frames, so 32 covers
/// several concurrent catch-ups.
pub const MAX_TCP_SENDS: usize = 32;

/// The bound control-channel sockets.
pub struct ControlSockets {
    /// UDP socket (also used to send datagrams, so their source is the
    /// control address).
    pub udp: Arc<UdpSocket>,
    /// TCP listener for frames.
    pub tcp: TcpListener,
}

/// Binds UDP and TCP on `listen`.
pub async fn bind(listen: SocketAddr) -> std::io::Result<ControlSockets> {
    let udp = UdpSocket::bind(listen).await?;
    let tcp = TcpListener::bind(listen).await?;
    Ok(ControlSockets {
        udp: Arc::new(udp),
        tcp,
    })
}

/// Shared context of the network tasks.
#[derive(Clone)]
pub struct NetContext {
    /// Where accepted messages go.
    pub mailbox: Mailbox,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Fault rules.
    pub faults: Arc<Faults>,
    /// Rate limits, member book and byte credits.
    pub guard: Arc<Guard>,
    /// The cluster keyring (or none: the agent runs open).
    pub keys: Arc<ClusterKeys>,
}

/// Counts and logs (throttled) a message the cluster key refused.
fn seal_drop(ctx: &NetContext, from: SocketAddr, reason: &'static str, detail: &str) {
    ctx.metrics.rejected(reason);
    ctx.guard
        .log_drop(Dropped::Seal(reason), &from.to_string(), detail);
}

/// A datagram's payload: opened first when the agent is keyed.
fn datagram_payload(ctx: &NetContext, from: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
    let reject = |e: framing::WireError| {
        if matches!(e.reason(), "sealed" | "unsealed") {
            seal_drop(ctx, from, e.reason(), &format!("datagram: {e}"));
        } else {
            ctx.metrics.rejected(e.reason());
            tracing::warn!(%from, bytes = datagram.len(), error = %e, "rejected a datagram");
        }
        None
    };
    if !ctx.keys.is_keyed() {
        return match framing::decode_datagram(datagram) {
            Ok(payload) => Some(payload.to_vec()),
            Err(e) => reject(e),
        };
    }
    let envelope = match framing::check_sealed_datagram(datagram) {
        Ok(envelope) => envelope,
        Err(e) => return reject(e),
    };
    let plain = match ctx.keys.open_envelope(envelope) {
        Ok(plain) => plain,
        Err(e) => {
            seal_drop(ctx, from, e.reason(), &format!("datagram: {e}"));
            return None;
        }
    };
    match framing::decode_datagram(&plain) {
        Ok(payload) => Some(payload.to_vec()),
        Err(e) => reject(e),
    }
}

/// Spawns the UDP receive loop and the TCP accept loop.
pub fn spawn_receivers(udp: Arc<UdpSocket>, tcp: TcpListener, ctx: NetContext) {
    let uctx = ctx.clone();
    tokio::spawn(async move { udp_loop(udp, uctx).await });
    tokio::spawn(async move { tcp_accept_loop(tcp, ctx).await });
}

/// Passes a decoded message from `source` (`wire_bytes` on the wire)
/// through the fault rules and the guard to the driver.
fn accept(ctx: &NetContext, source: SocketAddr, payload: Vec<u8>, wire_bytes: usize) {
    let source_text = source.to_string();
    if ctx.faults.blocks_inbound(&source_text) {
        ctx.metrics.rejected("fault");
        return;
    }
    if !ctx.guard.admit(source, wire_bytes) {
        return;
    }
    ctx.metrics.received(payload.len());
    ctx.mailbox.deliver(source_text, payload);
}

async fn udp_loop(udp: Arc<UdpSocket>, ctx: NetContext) {
    // Large enough to see (and reject) any oversized datagram whole.
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match udp.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors surface here on some platforms; keep serving.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        let datagram = buf.get(..n).unwrap_or_default();
        if let Some(payload) = datagram_payload(&ctx, from, datagram) {
            accept(&ctx, from, payload, n);
        }
    }
}

/// Open inbound TCP connections, in total and per IP.
#[derive(Debug, Default)]
struct Connections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One open connection's place in [`Connections`], given back on drop.
struct ConnectionSlot {
    table: Arc<Mutex<Connections>>,
    ip: IpAddr,
}

impl ConnectionSlot {
    /// Takes a place for a connection from `ip`, or names the limit hit.
    fn take(table: &Arc<Mutex<Connections>>, ip: IpAddr) -> Result<ConnectionSlot, &'static str> {
        let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
        if t.total >= MAX_TCP_CONNECTIONS {
            return Err("total-limit");
        }
        let n = t.per_ip.entry(ip).or_default();
        if *n >= MAX_TCP_CONNECTIONS_PER_IP {
            return Err("per-ip-limit");
        }
        *n += 1;
        t.total += 1;
        Ok(ConnectionSlot {
            table: Arc::clone(table),
            ip,
        })
    }
}

impl std::ops::Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.total = t.total.saturating_sub(1);
        if let Some(n) = t.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.per_ip.remove(&self.ip);
            }
        }
    }
}

async fn tcp_accept_loop(listener: TcpListener, ctx: NetContext) {
    let table = Arc::new(Mutex::new(Connections::default()));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match ConnectionSlot::take(&table, from.ip().to_canonical()) {
            Ok(slot) => slot,
            Err(limit) => {
                ctx.metrics.connection_closed(limit);
                ctx.guard.log_drop(
                    Dropped::ConnectionLimit,
                    &from.to_string(),
                    &format!("tcp connection refused: {limit}"),
                );
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            serve_connection(stream, from, &ctx).await;
            drop(slot);
        });
    }
}

/// Whether a frame claiming to come from `claimed` may have come over a
/// connection from `peer`: the IPs must be equal (ports differ: the
/// connection's is ephemeral).
pub fn sender_matches_peer(claimed: SocketAddr, peer: SocketAddr) -> bool {
    claimed.ip().to_canonical() == peer.ip().to_canonical()
}

/// Reads the next frame of a connection: plain, or sealed and opened when
/// the agent is keyed. A seal failure is counted and logged here and ends
/// the connection (`Err(None)`).
async fn next_frame(
    stream: &mut TcpStream,
    from: SocketAddr,
    ctx: &NetContext,
) -> Result<Option<(String, Vec<u8>)>, Option<framing::WireError>> {
    if !ctx.keys.is_keyed() {
        return framing::read_frame(stream).await.map_err(Some);
    }
    let Some(envelope) = framing::read_sealed_frame(stream).await.map_err(Some)? else {
        return Ok(None);
    };
    let plain = match ctx.keys.open_envelope(&envelope) {
        Ok(plain) => plain,
        Err(e) => {
            seal_drop(
                ctx,
                from,
                e.reason(),
                &format!("tcp frame: {e}; closing the connection"),
            );
            return Err(None);
        }
    };
    let mut inner = plain.as_slice();
    match framing::read_frame(&mut inner).await {
        Ok(Some(frame)) if inner.is_empty() => Ok(Some(frame)),
        Ok(_) => Err(Some(framing::WireError::BadAddress(
            "a sealed frame must hold exactly one frame".into(),
        ))),
        Err(e) => Err(Some(e)),
    }
}

async fn serve_connection(mut stream: TcpStream, from: SocketAddr, ctx: &NetContext) {
    loop {
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, next_frame(&mut stream, from, ctx)).await {
            Ok(Ok(Some((sender, payload)))) => {
                let claimed = match sender.parse::<SocketAddr>() {
                    Ok(a) => a,
                    Err(_) => {
                        // read_frame already checked; never trust that here.
                        ctx.metrics.rejected("malformed");
                        return;
                    }
                };
                if !sender_matches_peer(claimed, from) {
                    ctx.metrics.rejected("forged-sender");
                    ctx.guard.log_drop(
                        Dropped::ForgedSender,
                        &from.to_string(),
                        &format!("frame claims sender {claimed}; closing the connection"),
                    );
                    return;
                }
                let wire_bytes = framing::frame_len(sender.len(), payload.len());
                accept(ctx, claimed, payload, wire_bytes);
            }
            Ok(Ok(None)) | Ok(Err(None)) => return,
            Ok(Err(Some(e))) => {
                if matches!(e.reason(), "sealed" | "unsealed") {
                    seal_drop(
                        ctx,
                        from,
                        e.reason(),
                        &format!("tcp frame: {e}; closing the connection"),
                    );
                } else {
                    ctx.metrics.rejected(e.reason());
                    tracing::warn!(%from, error = %e, "rejected a tcp frame; closing the connection");
                }
                return;
            }
            Err(_) => {
                ctx.metrics.connection_closed("idle-timeout");
                ctx.guard.log_drop(
                    Dropped::IdleTimeout,
                    &from.to_string(),
                    "no whole frame within the idle timeout; closing the connection",
                );
                return;
            }
        }
    }
}

/// What the sender task needs.
pub struct SenderContext {
    /// The control socket (datagrams leave from the control address).
    pub udp: Arc<UdpSocket>,
    /// This node's control address (the sender named in frames; frames
    /// leave from its IP).
    pub local: String,
    /// Counts queued sends, so shutdown can wait for them.
    pub pending: Arc<AtomicUsize>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Fault rules.
    pub faults: Arc<Faults>,
    /// Member book and byte credits (no amplification).
    pub guard: Arc<Guard>,
    /// The cluster keyring: every datagram and frame is sealed with its
    /// primary key (none: sent plain).
    pub keys: Arc<ClusterKeys>,
}

/// Spawns the sender task: drains the outbox, applying fault rules and the
/// guard's credit rule, as UDP datagrams (small) or TCP frames (large, at
/// most [`MAX_TCP_SENDS`] at once).
pub fn spawn_sender(ctx: SenderContext, mut outbox: Receiver<Outgoing>) {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_TCP_SENDS));
        while let Some(Outgoing { to, payload }) = outbox.recv().await {
            if let Some(job) = prepare(&ctx, &slots, &to, &payload) {
                match job {
                    Job::Datagram(addr, datagram) => match ctx.udp.send_to(&datagram, addr).await {
                        Ok(_) => ctx.metrics.sent(payload.len()),
                        Err(e) => {
                            ctx.metrics.send_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%to, error = %e, "udp send failed");
                        }
                    },
                    Job::Frame(addr, frame, permit) => {
                        let (local, metrics, pending) = (
                            ctx.local.clone(),
                            Arc::clone(&ctx.metrics),
                            Arc::clone(&ctx.pending),
                        );
                        let bytes = payload.len();
                        tokio::spawn(async move {
                            match write_frame(addr, &local, &frame).await {
                                Ok(()) => metrics.sent(bytes),
                                Err(e) => {
                                    metrics.send_failures.fetch_add(1, Ordering::Relaxed);
                                    tracing::debug!(%addr, error = %e, "tcp send failed");
                                }
                            }
                            drop(permit);
                            pending.fetch_sub(1, Ordering::SeqCst);
                        });
                        continue;
                    }
                }
            }
            ctx.pending.fetch_sub(1, Ordering::SeqCst);
        }
    });
}

enum Job {
    Datagram(SocketAddr, Vec<u8>),
    Frame(SocketAddr, Vec<u8>, tokio::sync::OwnedSemaphorePermit),
}

/// Decides one send: `None` if it is dropped (fault rule, bad address,
/// no TCP slot, beyond a non-member's credit), else what to send.
fn prepare(ctx: &SenderContext, slots: &Arc<Semaphore>, to: &str, payload: &[u8]) -> Option<Job> {
    if ctx.faults.blocks_outbound(to) {
        return None;
    }
    let Ok(addr) = to.parse::<SocketAddr>() else {
        ctx.metrics.send_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%to, "not sending to an address that is not ip:port");
        return None;
    };
    // The one datagram-or-stream decision, shared with the simulator
    // (`nodeplane_types::transport`); the framing's bound must be the same.
    const _: () =
        assert!(MAX_DATAGRAM_PAYLOAD == nodeplane_interface::transport::MAX_DATAGRAM_BYTES);
    if nodeplane_interface::transport::Transport::for_len(payload.len()).is_datagram() {
        let datagram = match framing::encode_datagram(payload).map(|d| ctx.keys.seal(d)) {
            Ok(d) => d,
            Err(e) => {
                ctx.metrics.send_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%to, error = %e, "cannot encode a datagram");
                return None;
            }
        };
        return ctx
            .guard
            .may_send(addr, datagram.len())
            .then_some(Job::Datagram(addr, datagram));
    }
    let frame = match framing::encode_frame(&ctx.local, payload).and_then(|f| {
        if ctx.keys.is_keyed() {
            framing::encode_sealed_frame(&ctx.keys.seal(f))
        } else {
            Ok(f)
        }
    }) {
        Ok(f) => f,
        Err(e) => {
            ctx.metrics.send_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%to, error = %e, "cannot encode a frame");
            return None;
        }
    };
    let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
        ctx.metrics.send_dropped("tcp-sends-full");
        ctx.guard.log_drop(
            Dropped::SendOverload,
            to,
            &format!("{MAX_TCP_SENDS} tcp sends already in flight"),
        );
        return None;
    };
    ctx.guard
        .may_send(addr, frame.len())
        .then_some(Job::Frame(addr, frame, permit))
}

/// Connects to `addr` from the IP of `local` (so the connection's source IP
/// is the one the frame claims; an unspecified IP lets the OS choose).
async fn connect_from(addr: SocketAddr, local: &str) -> std::io::Result<TcpStream> {
    let ip = local
        .parse::<SocketAddr>()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == addr.is_ipv4());
    let Some(ip) = ip else {
        return TcpStream::connect(addr).await;
    };
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

async fn write_frame(addr: SocketAddr, local: &str, frame: &[u8]) -> anyhow::Result<()> {
    let mut stream = tokio::time::timeout(TCP_SEND_TIMEOUT, connect_from(addr, local)).await??;
    tokio::time::timeout(TCP_SEND_TIMEOUT, async {
        stream.write_all(frame).await?;
        stream.shutdown().await
    })
    .await??;
    Ok(())
}

/// Sends one plain (unsealed) frame from `local` (this node's control
/// address) on a fresh connection, bound to `local`'s IP.
pub async fn send_frame(addr: SocketAddr, local: &str, payload: &[u8]) -> anyhow::Result<()> {
    let frame = framing::encode_frame(local, payload)?;
    write_frame(addr, local, &frame).await
}
