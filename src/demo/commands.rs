//! Two hidden subcommands the data-plane test bed (`netns.rs`) runs inside
//! each network namespace, where the agent's API listens on the
//! namespace's own loopback:
//!
//! - `nodeplane meshvpn-host`: the Mesh VPN host of one node, following the
//!   agent through the compatibility API and applying its peer set to a
//!   WireGuard interface through the UAPI, until its stdin closes;
//! - `nodeplane api-call`: one request to the agent's API, the answer's
//!   JSON on stdout (how the demo, in the root namespace, reads a
//!   namespaced agent).

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use nodeplane_agent::client::ApiClient;
use nodeplane_compat_client::CompatClient;
use nodeplane_meshvpn::uapi::UapiClient;
use nodeplane_meshvpn::{MeshVpn, MeshVpnConfig, PrivateKey, SpawnConfig, WireGuardConfig};

/// Timeout of the one request `api-call` makes: the agent is on the same
/// loopback, so a slower answer means it is stuck, and the demo polling it
/// should see an error rather than wait.
const API_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `--poll-ms`: the poll interval is also the retry interval while
/// the agent is unreachable, and a minute is already useless for a VPN.
const MAX_POLL_MS: u64 = 60_000;
/// Largest `--resync-secs`: beyond an hour the periodic resync no longer
/// bounds anything an operator would wait for.
const MAX_RESYNC_SECS: u64 = 3_600;

/// `nodeplane meshvpn-host`: a Mesh VPN host driving one WireGuard
/// interface.
#[derive(Args, Debug)]
pub struct MeshvpnHostArgs {
    /// This node's id (never its own peer).
    #[arg(long)]
    pub node_id: String,
    /// The agent's compatibility API (`http://127.0.0.1:7947`).
    #[arg(long)]
    pub api: String,
    /// The WireGuard interface (its UAPI socket is
    /// `/var/run/wireguard/<interface>.sock`).
    #[arg(long)]
    pub interface: String,
    /// The WireGuard private key file (generated, mode 0600, when absent).
    #[arg(long)]
    pub key_file: PathBuf,
    /// WireGuard's UDP port.
    #[arg(long)]
    pub listen_port: u16,
    /// Where to write the rendered configuration after every change.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Longest wait for an update between polls, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub poll_ms: u64,
    /// Resync from `GET /v1/members` this often even without a gap, in
    /// seconds (0: only on a gap).
    #[arg(long, default_value_t = 5)]
    pub resync_secs: u64,
}

/// Runs the Mesh VPN host until stdin closes (end of file or an error).
pub fn run_meshvpn_host(args: MeshvpnHostArgs) -> Result<()> {
    if args.poll_ms == 0 || args.poll_ms > MAX_POLL_MS {
        bail!("--poll-ms must be 1..={MAX_POLL_MS}, not {}", args.poll_ms);
    }
    if args.resync_secs > MAX_RESYNC_SECS {
        bail!(
            "--resync-secs must be 0..={MAX_RESYNC_SECS}, not {}",
            args.resync_secs
        );
    }
    let private_key = PrivateKey::load_or_generate(&args.key_file)
        .with_context(|| format!("WireGuard key {}", args.key_file.display()))?;
    let vpn = MeshVpn::new(
        CompatClient::new(args.api.clone()),
        MeshVpnConfig {
            local_node_id: Some(args.node_id.clone()),
            resync_every: (args.resync_secs > 0).then(|| Duration::from_secs(args.resync_secs)),
        },
    );
    let running = vpn
        .spawn_with_wireguard(
            SpawnConfig {
                poll_interval: Duration::from_millis(args.poll_ms),
                config_path: args.config.clone(),
            },
            WireGuardConfig {
                socket: UapiClient::for_interface(&args.interface)
                    .socket()
                    .to_owned(),
                private_key,
                listen_port: args.listen_port,
            },
        )
        .context("starting the Mesh VPN thread")?;
    tracing::info!(
        node = %args.node_id,
        interface = %args.interface,
        api = %args.api,
        "mesh vpn host running; stops when stdin closes"
    );
    let mut sink = [0u8; 64];
    while std::io::stdin().read(&mut sink).is_ok_and(|n| n > 0) {}
    running.stop();
    tracing::info!("stdin closed; mesh vpn host stopped");
    Ok(())
}

/// The HTTP method of an `api-call`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Method {
    /// `GET PATH`.
    #[value(name = "GET")]
    Get,
    /// `POST PATH BODY`.
    #[value(name = "POST")]
    Post,
}

/// `nodeplane api-call`: one request to an agent's API.
#[derive(Args, Debug)]
pub struct ApiCallArgs {
    /// The agent's API address.
    #[arg(long)]
    pub api: String,
    /// `GET` or `POST`.
    pub method: Method,
    /// The path, e.g. `/members`.
    pub path: String,
    /// The JSON body of a `POST`.
    pub body: Option<String>,
}

/// Makes the request and prints the answer's JSON on stdout.
pub fn run_api_call(args: ApiCallArgs) -> Result<()> {
    if !args.path.starts_with('/') {
        bail!("the path must start with '/': {:?}", args.path);
    }
    let client = ApiClient::new(&args.api, None).with_timeout(API_CALL_TIMEOUT);
    let answer = match args.method {
        Method::Get => client.get(&args.path)?,
        Method::Post => {
            let body = args.body.as_deref().unwrap_or("{}");
            let body = serde_json::from_str(body).context("the POST body is not JSON")?;
            client.post(&args.path, &body)?
        }
    };
    println!("{answer}");
    Ok(())
}
