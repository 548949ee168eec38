//! [`CompatClient`]: the `ControlPlane` trait over HTTP/JSON.

use std::io::BufReader;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nodeplane_interface::{
    Address, ControlError, ControlPlane, MembershipView, Metadata, PeerState, Subscription,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::errors::{bad_body, from_ureq};
use crate::sse::{forward, StreamEnd};

/// How a [`CompatClient`] talks to the agent.
#[derive(Clone, Debug)]
pub struct CompatClientConfig {
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Bound on a whole request/response (not on the update stream).
    pub request_timeout: Duration,
    /// Wait before reconnecting a dropped update stream.
    pub reconnect_delay: Duration,
    /// Sent as `Authorization: Bearer <token>` when the agent has an
    /// `admin_token` (needed for join, leave, heartbeat and report from a
    /// non-loopback caller).
    pub token: Option<String>,
}

impl Default for CompatClientConfig {
    fn default() -> Self {
        CompatClientConfig {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            reconnect_delay: Duration::from_millis(250),
            token: None,
        }
    }
}

/// A control plane reached over the compatibility API at `base`
/// (e.g. `http://127.0.0.1:7400`).
#[derive(Clone)]
pub struct CompatClient {
    base: String,
    config: CompatClientConfig,
    requests: ureq::Agent,
    streams: ureq::Agent,
    next_handle: Arc<AtomicU64>,
}

impl std::fmt::Debug for CompatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompatClient")
            .field("base", &self.base)
            .finish()
    }
}

#[derive(Deserialize)]
struct Heartbeats {
    heartbeats: u64,
}

#[derive(Deserialize)]
struct StateBody {
    state: PeerState,
}

#[derive(Deserialize)]
struct MetadataBody {
    metadata: Metadata,
}

impl CompatClient {
    /// A client for the agent at `base` with default timeouts.
    pub fn new(base: impl Into<String>) -> CompatClient {
        CompatClient::with_config(base, CompatClientConfig::default())
    }

    /// A client for the agent at `base`.
    pub fn with_config(base: impl Into<String>, config: CompatClientConfig) -> CompatClient {
        let base = base.into().trim_end_matches('/').to_owned();
        let requests = ureq::AgentBuilder::new()
            .timeout_connect(config.connect_timeout)
            .timeout(config.request_timeout)
            .build();
        // The update stream is long-lived: bound the connect only.
        let streams = ureq::AgentBuilder::new()
            .timeout_connect(config.connect_timeout)
            .build();
        CompatClient {
            base,
            config,
            requests,
            streams,
            next_handle: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn authorized(&self, request: ureq::Request) -> ureq::Request {
        match &self.config.token {
            Some(token) => request.set("authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ControlError> {
        let what = format!("GET {path}");
        let response = self
            .authorized(self.requests.get(&self.url(path)))
            .call()
            .map_err(|e| from_ureq(&what, e))?;
        read_json(&what, response)
    }

    fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ControlError> {
        let what = format!("POST {path}");
        let response = self
            .authorized(self.requests.post(&self.url(path)))
            .set("content-type", "application/json")
            .send_string(&body.to_string())
            .map_err(|e| from_ureq(&what, e))?;
        read_json(&what, response)
    }
}

fn read_json<T: DeserializeOwned>(what: &str, response: ureq::Response) -> Result<T, ControlError> {
    let text = response
        .into_string()
        .map_err(|e| ControlError::Unavailable(format!("{what}: reading the response: {e}")))?;
    serde_json::from_str(&text).map_err(|e| bad_body(what, e))
}

/// Percent-encodes a peer id for one path segment.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl ControlPlane for CompatClient {
    fn join(&self, seed_peers: &[Address]) -> Result<MembershipView, ControlError> {
        self.post("/v1/join", &serde_json::json!({ "seed_peers": seed_peers }))
    }

    fn leave(&self) -> Result<(), ControlError> {
        let _: serde_json::Value = self.post("/v1/leave", &serde_json::json!({}))?;
        Ok(())
    }

    fn get_members(&self) -> Result<MembershipView, ControlError> {
        self.get("/v1/members")
    }

    fn publish_heartbeat(&self) -> Result<u64, ControlError> {
        let body: Heartbeats = self.post("/v1/heartbeat", &serde_json::json!({}))?;
        Ok(body.heartbeats)
    }

    fn report_peer_state(&self, peer: &str, state: PeerState) -> Result<PeerState, ControlError> {
        let path = format!("/v1/peers/{}/report", path_segment(peer));
        let body: StateBody = self.post(&path, &serde_json::json!({ "state": state }))?;
        Ok(body.state)
    }

    /// Opens the event stream before returning, so every update after this
    /// call is delivered. A background thread reads the stream and
    /// reconnects it when it drops (updates missed meanwhile show as a
    /// version gap to the subscriber, which then resyncs).
    fn subscribe_membership_updates(&self) -> Result<Subscription, ControlError> {
        let url = self.url("/v1/updates");
        let first = self
            .streams
            .get(&url)
            .set("accept", "text/event-stream")
            .call()
            .map_err(|e| from_ureq("GET /v1/updates", e))?;
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let stopped = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopped);
        let (sender, subscription) =
            Subscription::channel(handle, move |_| stop.store(true, Ordering::Relaxed));
        let agent = self.streams.clone();
        let delay = self.config.reconnect_delay;
        std::thread::Builder::new()
            .name(format!("compat-updates-{handle}"))
            .spawn(move || {
                let mut response = Some(first);
                while !stopped.load(Ordering::Relaxed) {
                    let current = match response.take() {
                        Some(r) => r,
                        None => match agent.get(&url).set("accept", "text/event-stream").call() {
                            Ok(r) => r,
                            Err(e) => {
                                tracing::debug!(error = %e, "update stream: reconnect failed");
                                std::thread::sleep(delay);
                                continue;
                            }
                        },
                    };
                    match forward(BufReader::new(current.into_reader()), &sender) {
                        StreamEnd::SubscriberGone => break,
                        StreamEnd::Disconnected(why) => {
                            tracing::info!(%why, "update stream dropped; reconnecting");
                            std::thread::sleep(delay);
                        }
                    }
                }
            })
            .map_err(|e| ControlError::Unavailable(format!("starting the update reader: {e}")))?;
        Ok(subscription)
    }

    fn get_peer_metadata(&self, peer: &str) -> Result<Metadata, ControlError> {
        let body: MetadataBody = self.get(&format!("/v1/peers/{}/metadata", path_segment(peer)))?;
        Ok(body.metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_are_encoded_for_the_path() {
        assert_eq!(path_segment("127.0.0.1:7001"), "127.0.0.1:7001");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn an_unreachable_agent_is_unavailable() {
        // Bind then drop a listener: the port is free and refuses connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = CompatClient::new(format!("http://127.0.0.1:{port}"));
        assert!(matches!(
            client.get_members(),
            Err(ControlError::Unavailable(_))
        ));
        assert!(matches!(
            client.subscribe_membership_updates(),
            Err(ControlError::Unavailable(_))
        ));
    }
}
