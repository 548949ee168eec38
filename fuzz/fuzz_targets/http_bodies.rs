//! The HTTP API (`nodeplane_agent::http::router`) of one in-process agent
//! running the stub component, driven with tower's `oneshot`: request
//! bodies, path parameters and query strings from fuzz bytes, to the
//! compatibility API (`/v1/join`, `/v1/peers/{id}/report`,
//! `/v1/peers/{id}/metadata`, `/v1/members`, `/v1/heartbeat`), the admin
//! fault rules (`/admin/faults`), introspection (`/ledger?…`, `/status`,
//! …) and any path. Never panics, and no request is answered 5xx (issue
//! 11, item 11; set `NODEPLANE_FUZZ_PANICS_ONLY=1` to keep fuzzing past one).
//!
//! Not fuzzed: `/admin/component` (a swap per input would load and
//! compile components, and any file path is a load), `/v1/leave` (the node
//! would have left for every later input) and the SSE streams (`/events`,
//! `/v1/updates`), which never end.
//!
//! Input: `route: u8`, `flags: u8`, then the parameter up to the first
//! zero byte, then the body. Flags: 1 = the peer is on loopback, 2 = a
//! bearer token, 4 = `content-type: application/json`.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use nodeplane_agent::http::{router, AppState};
use nodeplane_agent::{Agent, FileConfig};
use tower::ServiceExt;

/// Largest answer read back (every non-streaming answer is far smaller).
const MAX_ANSWER_BYTES: usize = 1 << 20;

struct World {
    rt: tokio::runtime::Runtime,
    state: Arc<AppState>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        // scripts/fuzz gives a directory it removes afterwards; else
        // tmpfs when there is one (redb writes on every input).
        let base = std::env::var_os("NODEPLANE_FUZZ_TMP")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                if std::path::Path::new("/dev/shm").is_dir() {
                    std::path::PathBuf::from("/dev/shm")
                } else {
                    std::env::temp_dir()
                }
            });
        let dir = base.join(format!("nodeplane-fuzz-http-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a data directory");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let port = nodeplane_agent::ports::free_port("127.0.0.1").expect("a free port");
        let config = FileConfig {
            node_id: Some("n1".into()),
            listen: Some(format!("127.0.0.1:{port}")),
            api: Some("127.0.0.1:0".into()),
            data_dir: Some(dir),
            component: Some("stub".into()),
            ..FileConfig::default()
        }
        .validate()
        .expect("a valid configuration");
        let agent: Agent = rt.block_on(Agent::start(config)).expect("the agent starts");
        let state = agent.state();
        // The agent runs for the whole fuzzing process.
        std::mem::forget(agent);
        World { rt, state }
    })
}

/// Percent-encodes every byte but ASCII letters and digits.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (*b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let [route, flags, rest @ ..] = data else {
        return;
    };
    let (param, body) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let (method, uri) = match route % 9 {
        0 => ("POST", "/v1/join".to_string()),
        1 => ("POST", format!("/v1/peers/{}/report", encode(param))),
        2 => ("GET", format!("/v1/peers/{}/metadata", encode(param))),
        3 => ("POST", "/admin/faults".to_string()),
        4 => (
            "GET",
            format!(
                "/ledger?{}",
                String::from_utf8_lossy(param).replace(['#', ' '], "")
            ),
        ),
        5 => ("GET", "/v1/members".to_string()),
        6 => ("POST", "/v1/heartbeat".to_string()),
        7 => (
            "GET",
            [
                "/status",
                "/members",
                "/ledger/head",
                "/metrics",
                "/healthz",
                "/admin/faults",
            ][param.first().map_or(0, |b| usize::from(*b) % 6)]
            .to_string(),
        ),
        _ => {
            let path = String::from_utf8_lossy(param).to_string();
            if path.contains("component")
                || path.contains("leave")
                || path.contains("events")
                || path.contains("updates")
            {
                return;
            }
            (if body.is_empty() { "GET" } else { "POST" }, path)
        }
    };
    let mut req = Request::builder().method(method).uri(uri.as_str());
    if flags & 2 != 0 {
        req = req.header("authorization", "Bearer fuzz");
    }
    if flags & 4 != 0 {
        req = req.header("content-type", "application/json");
    }
    let Ok(mut req) = req.body(Body::from(body.to_vec())) else {
        return;
    };
    let peer: SocketAddr = if flags & 1 != 0 {
        "127.0.0.1:50000".parse().expect("an address")
    } else {
        "192.0.2.7:50000".parse().expect("an address")
    };
    req.extensions_mut().insert(ConnectInfo(peer));

    let w = world();
    let (status, answer) = w.rt.block_on(async {
        let resp = router(Arc::clone(&w.state))
            .oneshot(req)
            .await
            .expect("the router answers");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), MAX_ANSWER_BYTES)
            .await
            .expect("the answer is readable");
        (status, bytes)
    });
    if status.is_server_error() && std::env::var_os("NODEPLANE_FUZZ_PANICS_ONLY").is_none() {
        panic!(
            "{method} {uri} answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
});
