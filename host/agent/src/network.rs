//! The control channel over tokio sockets: a UDP socket and a TCP listener
//! on the control address, the receive loops that validate the wire format
//! and post to the driver's mailbox, and the sender task that drains the
//! outbox (see [`crate::framing`] for the format).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::driver::Mailbox;
use crate::faults::Faults;
use crate::framing::{self, MAX_DATAGRAM_PAYLOAD};
use crate::metrics::Metrics;
use crate::services::Outgoing;

/// Longest a TCP connect or frame write may take.
pub const TCP_SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest an inbound TCP connection may sit idle between or inside frames.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most inbound TCP connections served at once; more are refused.
pub const MAX_TCP_CONNECTIONS: usize = 128;

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
}

/// Spawns the UDP receive loop and the TCP accept loop.
pub fn spawn_receivers(udp: Arc<UdpSocket>, tcp: TcpListener, ctx: NetContext) {
    let uctx = ctx.clone();
    tokio::spawn(async move { udp_loop(udp, uctx).await });
    tokio::spawn(async move { tcp_accept_loop(tcp, ctx).await });
}

fn accept(ctx: &NetContext, source: String, payload: Vec<u8>) {
    if ctx.faults.blocks_inbound(&source) {
        ctx.metrics.rejected("fault");
        return;
    }
    ctx.metrics.received(payload.len());
    ctx.mailbox.deliver(source, payload);
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
        match framing::decode_datagram(&buf[..n]) {
            Ok(payload) => accept(&ctx, from.to_string(), payload.to_vec()),
            Err(e) => {
                ctx.metrics.rejected(e.reason());
                tracing::warn!(%from, bytes = n, error = %e, "rejected a datagram");
            }
        }
    }
}

async fn tcp_accept_loop(listener: TcpListener, ctx: NetContext) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= MAX_TCP_CONNECTIONS {
            ctx.metrics.rejected("overload");
            tracing::warn!(%from, "refusing a tcp connection: too many open");
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let ctx = ctx.clone();
        let open = Arc::clone(&open);
        tokio::spawn(async move {
            serve_connection(stream, from, &ctx).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn serve_connection(mut stream: TcpStream, from: SocketAddr, ctx: &NetContext) {
    loop {
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, framing::read_frame(&mut stream)).await {
            Ok(Ok(Some((sender, payload)))) => accept(ctx, sender, payload),
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                ctx.metrics.rejected(e.reason());
                tracing::warn!(%from, error = %e, "rejected a tcp frame; closing the connection");
                return;
            }
            Err(_) => {
                tracing::debug!(%from, "closing an idle tcp connection");
                return;
            }
        }
    }
}

/// Spawns the sender task: drains the outbox, applying fault rules, as UDP
/// datagrams (small) or TCP frames (large). `pending` counts queued sends
/// so shutdown can wait for them.
pub fn spawn_sender(
    udp: Arc<UdpSocket>,
    local: String,
    mut outbox: UnboundedReceiver<Outgoing>,
    pending: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    faults: Arc<Faults>,
) {
    tokio::spawn(async move {
        while let Some(Outgoing { to, payload }) = outbox.recv().await {
            if faults.blocks_outbound(&to) {
                pending.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let Ok(addr) = to.parse::<SocketAddr>() else {
                metrics.send_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%to, "not sending to an address that is not ip:port");
                pending.fetch_sub(1, Ordering::SeqCst);
                continue;
            };
            if payload.len() <= MAX_DATAGRAM_PAYLOAD {
                let datagram = framing::encode_datagram(&payload).expect("size checked");
                match udp.send_to(&datagram, addr).await {
                    Ok(_) => metrics.sent(payload.len()),
                    Err(e) => {
                        metrics.send_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%to, error = %e, "udp send failed");
                    }
                }
                pending.fetch_sub(1, Ordering::SeqCst);
            } else {
                let (local, metrics, pending) =
                    (local.clone(), Arc::clone(&metrics), Arc::clone(&pending));
                tokio::spawn(async move {
                    let bytes = payload.len();
                    match send_frame(addr, &local, &payload).await {
                        Ok(()) => metrics.sent(bytes),
                        Err(e) => {
                            metrics.send_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%addr, error = %e, "tcp send failed");
                        }
                    }
                    pending.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
    });
}

/// Sends one frame on a fresh connection.
pub async fn send_frame(addr: SocketAddr, local: &str, payload: &[u8]) -> anyhow::Result<()> {
    let frame = framing::encode_frame(local, payload)?;
    let mut stream = tokio::time::timeout(TCP_SEND_TIMEOUT, TcpStream::connect(addr)).await??;
    tokio::time::timeout(TCP_SEND_TIMEOUT, async {
        stream.write_all(&frame).await?;
        stream.shutdown().await
    })
    .await??;
    Ok(())
}
