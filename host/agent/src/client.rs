//! A small blocking client of an agent's HTTP API, for the operator
//! commands, the demo and the tests: the raw calls ([`ApiClient::get`],
//! [`ApiClient::post`]) and one method per endpoint they use.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use nodeplane_interface::MembershipView;
use serde_json::{json, Value};

/// Timeout of one operator request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of one agent's API.
pub struct ApiClient {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl ApiClient {
    /// A client for `api` (`ip:port`, `host:port` or a full `http://` URL).
    pub fn new(api: &str, token: Option<String>) -> ApiClient {
        let base = if api.starts_with("http://") || api.starts_with("https://") {
            api.trim_end_matches('/').to_string()
        } else {
            format!("http://{api}")
        };
        let agent = ureq::AgentBuilder::new().timeout(REQUEST_TIMEOUT).build();
        ApiClient { base, token, agent }
    }

    /// The same client with `timeout` (instead of [`REQUEST_TIMEOUT`]) on
    /// each request.
    pub fn with_timeout(mut self, timeout: Duration) -> ApiClient {
        self.agent = ureq::AgentBuilder::new().timeout(timeout).build();
        self
    }

    /// The base URL (`http://ip:port`).
    pub fn base(&self) -> &str {
        &self.base
    }

    fn finish(&self, what: &str, result: Result<ureq::Response, ureq::Error>) -> Result<Value> {
        match result {
            Ok(resp) => {
                let body = resp
                    .into_string()
                    .with_context(|| format!("{what}: reading the answer"))?;
                serde_json::from_str(&body)
                    .with_context(|| format!("{what}: the answer is not JSON"))
            }
            Err(ureq::Error::Status(code, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                let message = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                    .unwrap_or(body);
                bail!("{what}: HTTP {code}: {message}")
            }
            Err(e) => bail!("{what}: cannot reach the agent at {}: {e}", self.base),
        }
    }

    /// `GET path` as JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        self.finish(&format!("GET {path}"), self.agent.get(&url).call())
    }

    /// `GET path` as text (e.g. `/metrics`).
    pub fn get_text(&self, path: &str) -> Result<String> {
        let url = format!("{}{path}", self.base);
        match self.agent.get(&url).call() {
            Ok(resp) => resp
                .into_string()
                .with_context(|| format!("GET {path}: reading the answer")),
            Err(e) => bail!("GET {path}: {e}"),
        }
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .agent
            .post(&url)
            .set("Content-Type", "application/json");
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        self.finish(&format!("POST {path}"), req.send_string(&body.to_string()))
    }

    /// `GET /healthz`: succeeds once the agent serves its API.
    pub fn healthz(&self) -> Result<Value> {
        self.get("/healthz")
    }

    /// `GET /members`: the node's membership view.
    pub fn members(&self) -> Result<MembershipView> {
        serde_json::from_value(self.get("/members")?).context("parsing /members")
    }

    /// `GET /ledger/head`: the ledger frontier (`digest`, `entries`,
    /// `authors`).
    pub fn ledger_head(&self) -> Result<Value> {
        self.get("/ledger/head")
    }

    /// `POST /admin/component`: hot-swaps to `component` (`stub`,
    /// `nodeplane` or a file as the agent sees it); the swap report.
    pub fn swap(&self, component: &str) -> Result<Value> {
        self.post("/admin/component", &json!({ "component": component }))
    }

    /// `POST /admin/faults` with `request` (see
    /// [`FaultRequest`](crate::faults::FaultRequest)); the new fault state.
    pub fn set_faults(&self, request: &Value) -> Result<Value> {
        self.post("/admin/faults", request)
    }
}
