//! A small blocking HTTP client for the operator commands.

use std::time::Duration;

use anyhow::{bail, Context, Result};

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

    fn finish(
        &self,
        what: &str,
        result: Result<ureq::Response, ureq::Error>,
    ) -> Result<serde_json::Value> {
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
                let message = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                    .unwrap_or(body);
                bail!("{what}: HTTP {code}: {message}")
            }
            Err(e) => bail!("{what}: cannot reach the agent at {}: {e}", self.base),
        }
    }

    /// `GET path` as JSON.
    pub fn get(&self, path: &str) -> Result<serde_json::Value> {
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
    pub fn post(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
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
}
