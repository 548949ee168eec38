//! The HTTP surface says what it enforces (issue 11, item 11): every
//! constraint `docs/compat-openapi.yaml` states is the one the server
//! checks (read from the document, compared with the server's constants,
//! walked at its boundaries: the maximum accepted, one over refused), a
//! request valid against the document is never answered 400, every route
//! runs under a body limit, a timeout and a concurrency limit, and no
//! input is answered 5xx.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::Router;
use nodeplane_agent::http::compat::{
    check_seed, MAX_ADDRESS_LEN, MAX_JOIN_SEEDS, MAX_NODE_ID_CHARS, REPORT_STATES,
};
use nodeplane_agent::http::{router, MAX_BODY_BYTES, MAX_CONCURRENT_REQUESTS, MAX_UPDATE_STREAMS};
use nodeplane_agent::{Agent, FileConfig};
use regex_automata::meta::Regex;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::tempdir::{temp_dir, Dir};

async fn start(tag: &str) -> (Dir, Agent) {
    let dir = temp_dir("http-contract", tag);
    let config = FileConfig {
        node_id: Some("n1".into()),
        listen: Some(format!(
            "127.0.0.1:{}",
            nodeplane_agent::ports::free_port("127.0.0.1").unwrap()
        )),
        api: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.0.clone()),
        // The stub: no network, so seeds that name real hosts send nothing.
        component: Some("stub".into()),
        ..FileConfig::default()
    };
    let agent = Agent::start(config.validate().unwrap())
        .await
        .expect("agent starts");
    (dir, agent)
}

fn request(method: &str, uri: &str, body: Body) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(
        "127.0.0.1:50000".parse::<SocketAddr>().unwrap(),
    ));
    req
}

async fn send(app: &Router, method: &str, uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let resp = app
        .clone()
        .oneshot(request(method, uri, body.into()))
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

// ----- the document ---------------------------------------------------

fn document() -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/compat-openapi.yaml"),
    )
    .unwrap()
}

/// The lines of the schema `name` under `components.schemas`.
fn schema<'a>(doc: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("    {name}:");
    let mut lines = doc.lines().skip_while(|l| *l != header);
    assert!(lines.next().is_some(), "schema {name} is documented");
    lines
        .take_while(|l| l.trim().is_empty() || l.starts_with("      "))
        .collect()
}

/// The value of `key:` among `lines`.
fn value<'a>(lines: &[&'a str], key: &str) -> &'a str {
    let prefix = format!("{key}: ");
    lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{key} is documented"))
}

struct Documented {
    address: Regex,
    address_max_len: usize,
    node_id_max_len: usize,
    max_seeds: usize,
    report_states: Vec<String>,
}

fn documented() -> Documented {
    let doc = document();
    let address = schema(&doc, "Address");
    let pattern = value(&address, "pattern").trim_matches('\'');
    let seeds: Vec<&str> = doc
        .lines()
        .skip_while(|l| l.trim() != "seed_peers:")
        .take(4)
        .collect();
    let states = value(&schema(&doc, "ReportState"), "enum");
    Documented {
        address: Regex::new(pattern).expect("the Address pattern compiles"),
        address_max_len: value(&address, "maxLength").parse().unwrap(),
        node_id_max_len: value(&schema(&doc, "NodeId"), "maxLength").parse().unwrap(),
        max_seeds: value(&seeds, "maxItems").parse().unwrap(),
        report_states: states
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|s| s.trim().to_string())
            .collect(),
    }
}

#[test]
fn the_document_states_the_servers_limits() {
    let d = documented();
    assert_eq!(d.max_seeds, MAX_JOIN_SEEDS);
    assert_eq!(d.address_max_len, MAX_ADDRESS_LEN);
    assert_eq!(d.node_id_max_len, MAX_NODE_ID_CHARS);
    let server: Vec<String> = REPORT_STATES.iter().map(|s| s.to_string()).collect();
    assert_eq!(d.report_states, server);
    let doc = document();
    assert!(doc.contains(&format!("at most {MAX_BODY_BYTES} bytes")));
    assert!(doc.contains(&format!("at most {MAX_CONCURRENT_REQUESTS} requests")));
    assert!(doc.contains(&format!("at most {MAX_UPDATE_STREAMS}")));
}

/// Schema-valid addresses at the edges of the pattern.
const EDGE_ADDRESSES: &[&str] = &[
    "0.0.0.0:1",
    "1.2.3.4:9",
    "10.0.0.1:10",
    "99.199.249.255:65535",
    "255.255.255.255:65535",
    "127.0.0.1:7946",
    "[::]:1",
    "[::1]:7946",
    "[1::]:80",
    "[1:2:3:4:5:6:7::]:80",
    "[::2:3:4:5:6:7:8]:80",
    "[1:2:3:4:5:6:7:8]:80",
    "[FFFF:ffff:fFfF:ffff:ffff:ffff:ffff:ffff]:65535",
    "[0001:0002:0003:0004:0005:0006:0007:0008]:6553",
    "[fe80::1]:9",
    "[::ffff:1.2.3.4]:80",
    "[::ffff:0:255.255.255.255]:65535",
    "[::ffff:0000:255.255.255.255]:65535",
    "[::1.2.3.4]:80",
    "[1:2:3:4::255.255.255.255]:1",
    "[64:ff9b::192.0.2.33]:53",
];

/// Addresses the pattern refuses (and the server too).
const BAD_ADDRESSES: &[&str] = &[
    "",
    "1.2.3.4",
    "1.2.3.4:",
    "1.2.3.4:0",
    "1.2.3.4:65536",
    "1.2.3.4:99999",
    "256.1.1.1:1",
    "1.2.3:1",
    "1.2.3.4.5:1",
    "x:1",
    "localhost:7946",
    "::1:80",
    "[::1]",
    "[::1]:0",
    "[1:2:3:4:5:6:7:8:9]:1",
    "[:::]:1",
    "[fe80::1%eth0]:1",
    " 1.2.3.4:1",
    "1.2.3.4:1 ",
];

/// A small generator for address samples.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Random IPv4 and IPv6 addresses in many spellings, and mutations of
/// them: the pattern decides which are schema-valid.
fn samples(n: usize) -> Vec<String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    let hexdigits = b"0123456789abcdefABCDEF";
    for _ in 0..n {
        let port = match rng.below(4) {
            0 => rng.below(10).to_string(),
            1 => (65530 + rng.below(10)).to_string(),
            _ => rng.below(70000).to_string(),
        };
        let v4 = |rng: &mut Rng| {
            (0..4)
                .map(|_| match rng.below(3) {
                    0 => rng.below(10).to_string(),
                    1 => (250 + rng.below(10)).to_string(),
                    _ => rng.below(300).to_string(),
                })
                .collect::<Vec<_>>()
                .join(".")
        };
        let addr = if rng.below(2) == 0 {
            format!("{}:{port}", v4(&mut rng))
        } else {
            let mut groups: Vec<String> = (0..8)
                .map(|_| {
                    let width = 1 + rng.below(4) as usize;
                    (0..width)
                        .map(|_| hexdigits[rng.below(hexdigits.len() as u64) as usize] as char)
                        .collect()
                })
                .collect();
            let tail_v4 = rng.below(4) == 0;
            if tail_v4 {
                groups.truncate(6);
            }
            let mut text = if rng.below(3) == 0 {
                groups.join(":")
            } else {
                let len = groups.len() as u64;
                let i = rng.below(len + 1) as usize;
                let j = (i + 1 + rng.below(len - i as u64 + 1) as usize).min(groups.len());
                format!("{}::{}", groups[..i].join(":"), groups[j..].join(":"))
            };
            if tail_v4 {
                if !text.ends_with(':') {
                    text.push(':');
                }
                text.push_str(&v4(&mut rng));
            }
            format!("[{text}]:{port}")
        };
        // Mutations: a character dropped, doubled or replaced.
        let mut mutated = addr.clone().into_bytes();
        if !mutated.is_empty() {
            let at = rng.below(mutated.len() as u64) as usize;
            match rng.below(3) {
                0 => {
                    mutated.remove(at);
                }
                1 => mutated.insert(at, mutated[at]),
                _ => mutated[at] = b":.0f9["[rng.below(6) as usize],
            }
        }
        out.push(addr);
        out.push(String::from_utf8(mutated).unwrap());
    }
    out
}

#[test]
fn every_address_the_pattern_admits_the_server_accepts() {
    let d = documented();
    for ok in EDGE_ADDRESSES {
        assert!(d.address.is_match(ok), "the pattern admits {ok}");
        assert!(check_seed(ok).is_ok(), "{ok}: {:?}", check_seed(ok));
    }
    for bad in BAD_ADDRESSES {
        assert!(!d.address.is_match(bad), "the pattern refuses {bad:?}");
        assert!(check_seed(bad).is_err(), "the server refuses {bad:?}");
    }
    let mut admitted = 0;
    for sample in samples(20_000) {
        if d.address.is_match(&sample) {
            admitted += 1;
            assert!(
                sample.len() <= d.address_max_len,
                "{sample}: admitted by the pattern, longer than maxLength"
            );
            assert!(
                check_seed(&sample).is_ok(),
                "{sample}: schema-valid but refused: {:?}",
                check_seed(&sample)
            );
        }
    }
    assert!(
        admitted > 5_000,
        "only {admitted} samples were schema-valid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundaries_of_every_documented_constraint() {
    let (_dir, agent) = start("bounds").await;
    let app = router(agent.state());
    let d = documented();

    // Seeds: the most the document allows, each at an edge, is accepted;
    // one more is refused with 400.
    let mut seeds: Vec<String> = EDGE_ADDRESSES.iter().map(|s| s.to_string()).collect();
    seeds.extend(samples(2_000).into_iter().filter(|s| d.address.is_match(s)));
    for chunk in seeds.chunks(d.max_seeds) {
        let (st, body) = send(
            &app,
            "POST",
            "/v1/join",
            json!({ "seed_peers": chunk }).to_string(),
        )
        .await;
        assert_eq!(
            st,
            StatusCode::OK,
            "{} schema-valid seeds: {body}",
            chunk.len()
        );
    }
    let full: Vec<String> = (0..d.max_seeds)
        .map(|i| format!("10.1.{}.{}:7946", i / 200, i % 200 + 1))
        .collect();
    let (st, body) = send(
        &app,
        "POST",
        "/v1/join",
        json!({ "seed_peers": full }).to_string(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let over: Vec<String> = (0..=d.max_seeds)
        .map(|i| format!("10.2.{}.{}:7946", i / 200, i % 200 + 1))
        .collect();
    let (st, body) = send(
        &app,
        "POST",
        "/v1/join",
        json!({ "seed_peers": over }).to_string(),
    )
    .await;
    assert_eq!(
        (st, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("bad-message")),
        "{body}"
    );
    for bad in BAD_ADDRESSES {
        let (st, body) = send(
            &app,
            "POST",
            "/v1/join",
            json!({ "seed_peers": [bad] }).to_string(),
        )
        .await;
        assert_eq!(
            (st, &body["error"]),
            (StatusCode::BAD_REQUEST, &json!("invalid-address")),
            "{bad:?}: {body}"
        );
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
    let too_long = format!("1.2.3.4:{}", "1".repeat(d.address_max_len));
    let (st, _) = send(
        &app,
        "POST",
        "/v1/join",
        json!({ "seed_peers": [too_long] }).to_string(),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Peer ids: the longest documented id (in characters, as JSON Schema
    // counts) is a well-formed request (404: no such member), one more is
    // refused with 400.
    for id in ["x".repeat(d.node_id_max_len), "é".repeat(d.node_id_max_len)] {
        let path = format!("/v1/peers/{}/metadata", urlencode(&id));
        let (st, body) = send(&app, "GET", &path, Body::empty()).await;
        assert_eq!(
            st,
            StatusCode::NOT_FOUND,
            "{} chars: {body}",
            id.chars().count()
        );
        let path = format!("/v1/peers/{}/report", urlencode(&id));
        let (st, body) = send(&app, "POST", &path, r#"{"state":"suspect"}"#).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    }
    let long = "x".repeat(d.node_id_max_len + 1);
    let (st, body) = send(
        &app,
        "GET",
        &format!("/v1/peers/{long}/metadata"),
        Body::empty(),
    )
    .await;
    assert_eq!(
        (st, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("bad-message")),
        "{body}"
    );
    let (st, _) = send(
        &app,
        "POST",
        &format!("/v1/peers/{long}/report"),
        r#"{"state":"dead"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Report states: every documented one is well-formed (never 400);
    // `left` is refused; a report about the node itself is well-formed but
    // refused, 422.
    for state in &d.report_states {
        let (st, body) = send(
            &app,
            "POST",
            "/v1/peers/10.1.0.1:7946/report",
            json!({ "state": state }).to_string(),
        )
        .await;
        assert!(
            st.is_success() || st == StatusCode::NOT_FOUND,
            "{state}: {st} {body}"
        );
        let (st, body) = send(
            &app,
            "POST",
            "/v1/peers/n1/report",
            json!({ "state": state }).to_string(),
        )
        .await;
        assert_eq!(
            (st, &body["error"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!("invalid-report")),
            "{body}"
        );
    }
    let (st, body) = send(
        &app,
        "POST",
        "/v1/peers/10.1.0.1:7946/report",
        r#"{"state":"left"}"#,
    )
    .await;
    assert!(st.is_client_error(), "{body}");

    // Body size: a request of exactly MAX_BODY_BYTES is read, one byte
    // more is 413 with the ControlError document.
    let mut padded = String::from(r#"{"seed_peers": []}"#);
    padded.push_str(&" ".repeat(MAX_BODY_BYTES - padded.len()));
    let (st, body) = send(&app, "POST", "/v1/join", padded.clone()).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    padded.push(' ');
    let (st, body) = send(&app, "POST", "/v1/join", padded).await;
    assert_eq!(
        (st, &body["error"]),
        (StatusCode::PAYLOAD_TOO_LARGE, &json!("unavailable")),
        "{body}"
    );
    let (st, body) = send(
        &app,
        "POST",
        "/admin/faults",
        vec![b' '; MAX_BODY_BYTES + 1],
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("bytes")),
        "{body}"
    );
}

/// Percent-encodes a path segment.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_input_is_answered_5xx() {
    let (_dir, agent) = start("no5xx").await;
    let app = router(agent.state());
    let deep = "[".repeat(10_000);
    let bodies: Vec<Vec<u8>> = vec![
        vec![],
        b"{".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"x\"".to_vec(),
        b"{\"seed_peers\": null}".to_vec(),
        b"{\"seed_peers\": [1, 2]}".to_vec(),
        b"{\"seed_peers\": [\"1.2.3.4:1\"], \"extra\": 1}".to_vec(),
        b"{\"state\": 18446744073709551616}".to_vec(),
        b"{\"state\": \"\\ud800\"}".to_vec(),
        b"{\"component\": \"../../../../etc/passwd\"}".to_vec(),
        b"{\"component\": \"\"}".to_vec(),
        b"{\"drop\": 2.5, \"delay_ms\": -1}".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80],
        deep.into_bytes(),
    ];
    let routes = [
        ("POST", "/v1/join".to_string()),
        ("POST", "/v1/heartbeat".into()),
        ("GET", "/v1/members".into()),
        ("POST", "/v1/peers/n1/report".into()),
        ("POST", "/v1/peers/%FF%FE/report".into()),
        ("GET", "/v1/peers/%00/metadata".into()),
        ("POST", "/admin/faults".into()),
        ("POST", "/admin/component".into()),
        ("GET", "/ledger?from=18446744073709551615&limit=1000".into()),
        ("GET", "/ledger?author=n1&from=18446744073709551615".into()),
        ("GET", "/ledger?from=99999999999999999999".into()),
        ("GET", "/ledger?author=%FF".into()),
        ("GET", "/status".into()),
        ("DELETE", "/v1/members".into()),
        ("GET", "/nowhere".into()),
    ];
    for (method, path) in &routes {
        for body in &bodies {
            let (st, answer) = send(&app, method, path, body.clone()).await;
            assert!(
                !st.is_server_error(),
                "{method} {path} with {:?} answered {st}: {answer}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
        }
    }
    // A component that loads but fails to start is the request's fault
    // (422), not the agent's; the old component keeps serving.
    let (_, init_crash) = nodeplane_artifacts::FIXTURES
        .iter()
        .find(|(name, _)| *name == "init-crash")
        .expect("the init-crash fixture");
    let body = json!({ "component": init_crash }).to_string();
    let (st, answer) = send(&app, "POST", "/admin/component", body).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    // The node still answers.
    let (st, _) = send(&app, "GET", "/v1/members", Body::empty()).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_timeout_and_stream_limits() {
    let (_dir, agent) = start("limits").await;
    let app = router(agent.state());

    // Update streams: the limit is held while clients stay.
    let mut streams = Vec::new();
    for _ in 0..MAX_UPDATE_STREAMS {
        let resp = app
            .clone()
            .oneshot(request("GET", "/v1/updates", Body::empty()))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        streams.push(resp);
    }
    let (st, body) = send(&app, "GET", "/v1/updates", Body::empty()).await;
    assert_eq!(
        (st, &body["error"]),
        (StatusCode::TOO_MANY_REQUESTS, &json!("unavailable")),
        "{body}"
    );
    let (st, _) = send(&app, "GET", "/events", Body::empty()).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    streams.pop();
    let resp = app
        .clone()
        .oneshot(request("GET", "/events", Body::empty()))
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "a closed stream frees its slot"
    );
    drop((resp, streams));

    // Slow clients: bodies that never finish hold every request slot.
    let started = Instant::now();
    let spawn_slow = |app: &Router| {
        let app = app.clone();
        tokio::spawn(async move {
            let body =
                Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>());
            let resp = app
                .oneshot(request("POST", "/v1/join", body))
                .await
                .unwrap();
            resp.status()
        })
    };
    let mut slow: Vec<_> = (0..MAX_CONCURRENT_REQUESTS)
        .map(|_| spawn_slow(&app))
        .collect();
    // Once every slot is held, another request is refused at once with
    // 429. Polled: while the slow ones are being scheduled a probe may take
    // a slot (and a slow one be refused), so each probe answered is
    // followed by one more slow client.
    let deadline = Instant::now() + Duration::from_secs(8);
    let refused = loop {
        let (st, body) = send(&app, "GET", "/v1/members", Body::empty()).await;
        if st == StatusCode::TOO_MANY_REQUESTS {
            break body;
        }
        assert_eq!(st, StatusCode::OK);
        assert!(
            Instant::now() < deadline,
            "never refused while {MAX_CONCURRENT_REQUESTS} requests hang"
        );
        slow.push(spawn_slow(&app));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused["error"], "unavailable", "{refused}");
    // ...and each slow one holding a slot is answered 408 after the
    // timeout, freeing it; any other was refused with 429.
    let mut statuses = Vec::new();
    for task in slow {
        statuses.push(task.await.unwrap());
    }
    let count = |s: StatusCode| statuses.iter().filter(|&&x| x == s).count();
    assert_eq!(
        count(StatusCode::REQUEST_TIMEOUT),
        MAX_CONCURRENT_REQUESTS,
        "{statuses:?}"
    );
    assert_eq!(
        count(StatusCode::TOO_MANY_REQUESTS),
        statuses.len() - MAX_CONCURRENT_REQUESTS,
        "{statuses:?}"
    );
    assert!(started.elapsed() >= nodeplane_agent::http::REQUEST_TIMEOUT);
    let (st, _) = send(&app, "GET", "/v1/members", Body::empty()).await;
    assert_eq!(st, StatusCode::OK);
    let (_, metrics) = send(&app, "GET", "/metrics", Body::empty()).await;
    let text = metrics.as_str().unwrap();
    for line in [
        format!("nodeplane_http_refused_timeout_total {MAX_CONCURRENT_REQUESTS}"),
        "nodeplane_http_refused_streams_total 2".to_string(),
    ] {
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    assert!(
        !text.contains("nodeplane_http_refused_busy_total 0"),
        "{text}"
    );
}
