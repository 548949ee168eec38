//! Small JSON-over-HTTP helpers for the demo, against an agent's API.

use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(5);

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(TIMEOUT).build()
}

fn read(result: Result<ureq::Response, ureq::Error>, what: &str) -> Result<Value> {
    match result {
        Ok(response) => Ok(response.into_json()?),
        Err(ureq::Error::Status(code, response)) => {
            let body = response.into_string().unwrap_or_default();
            Err(anyhow!("{what}: HTTP {code}: {body}"))
        }
        Err(e) => Err(anyhow!("{what}: {e}")),
    }
}

/// `GET base+path` as JSON.
pub fn get(base: &str, path: &str) -> Result<Value> {
    read(
        agent().get(&format!("{base}{path}")).call(),
        &format!("GET {base}{path}"),
    )
}

/// `POST base+path` with a JSON body; the answer as JSON.
pub fn post(base: &str, path: &str, body: &Value) -> Result<Value> {
    read(
        agent()
            .post(&format!("{base}{path}"))
            .send_json(body.clone()),
        &format!("POST {base}{path}"),
    )
}
