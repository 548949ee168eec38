//! The operator commands of the `nodeplane` program: `agent`, `members`,
//! `status`, `ledger head|verify`, `swap`, `faults`, `keygen`,
//! `keys list|install|use|remove`. Clap argument structs
//! and their `run` functions; `src/main.rs` only dispatches.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::ApiClient;
use crate::config::FileConfig;
use crate::store::{RedbLedger, STORE_FORMAT};

/// Writes to stdout; a closed pipe (`nodeplane members | head`) ends the
/// output quietly instead of panicking.
fn emit(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

macro_rules! out {
    ($($arg:tt)*) => { emit(&format!($($arg)*)) };
}

macro_rules! outln {
    ($($arg:tt)*) => { emit(&format!("{}\n", format!($($arg)*))) };
}

/// `nodeplane agent`: run the agent on this node.
#[derive(Args, Debug, Default)]
pub struct AgentArgs {
    /// TOML configuration file (flags override its settings).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Stable node identity (`node_id`).
    #[arg(long)]
    pub node_id: Option<String>,
    /// Control-channel address, UDP and TCP (`listen`).
    #[arg(long)]
    pub listen: Option<String>,
    /// HTTP API address (`api`).
    #[arg(long)]
    pub api: Option<String>,
    /// A seed control address; repeat for several (`seeds`).
    #[arg(long = "seed")]
    pub seeds: Vec<String>,
    /// Data directory for the ledger and the event log (`data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// `nodeplane` (default), `stub` or a component file (`component`).
    #[arg(long)]
    pub component: Option<String>,
    /// Metadata `key=value`; repeat for several (`metadata`).
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,
    /// Whether to leave gracefully on SIGTERM/SIGINT (`leave_on_shutdown`).
    #[arg(long)]
    pub leave_on_shutdown: Option<bool>,
    /// Bearer token admin endpoints require (`admin_token`).
    #[arg(long)]
    pub admin_token: Option<String>,
    /// File with the cluster key, base64 of 32 bytes from `nodeplane
    /// keygen`, mode 0600 (`cluster_key_file`).
    #[arg(long)]
    pub cluster_key_file: Option<PathBuf>,
}

impl AgentArgs {
    /// The file's settings overridden by the flags, validated.
    pub fn config(&self) -> Result<crate::Config> {
        let file = match &self.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let mut metadata = std::collections::BTreeMap::new();
        for kv in &self.metadata {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("setting `metadata`: {kv:?} is not key=value"))?;
            metadata.insert(k.to_string(), v.to_string());
        }
        let flags = FileConfig {
            node_id: self.node_id.clone(),
            listen: self.listen.clone(),
            api: self.api.clone(),
            seeds: (!self.seeds.is_empty()).then(|| self.seeds.clone()),
            data_dir: self.data_dir.clone(),
            component: self.component.clone(),
            metadata: (!metadata.is_empty()).then_some(metadata),
            tunables: None,
            leave_on_shutdown: self.leave_on_shutdown,
            admin_token: self.admin_token.clone(),
            cluster_key_file: self.cluster_key_file.clone(),
        };
        Ok(file.overridden_by(flags).validate()?)
    }
}

/// Runs `nodeplane agent` until SIGINT/SIGTERM.
pub fn run_agent(args: AgentArgs) -> Result<()> {
    let config = args.config()?;
    crate::agent::run(config)
}

/// Where an agent's API is.
#[derive(Args, Debug)]
pub struct ApiArgs {
    /// The agent's API address (`ip:port`).
    #[arg(long, default_value = "127.0.0.1:7947")]
    pub api: String,
    /// Bearer token, where the agent has `admin_token` set.
    #[arg(long)]
    pub token: Option<String>,
}

impl ApiArgs {
    fn client(&self) -> ApiClient {
        ApiClient::new(&self.api, self.token.clone())
    }
}

/// Formats rows as left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Renders a `/members` answer like `serf members`.
pub fn render_members(view: &Value) -> String {
    let rows: Vec<Vec<String>> = view["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    let metadata = m["metadata"]
                        .as_array()
                        .map(|kv| {
                            kv.iter()
                                .filter_map(|p| {
                                    Some(format!("{}={}", p.get(0)?.as_str()?, p.get(1)?.as_str()?))
                                })
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default();
                    vec![
                        text(&m["id"]),
                        text(&m["address"]),
                        text(&m["state"]),
                        text(&m["incarnation"]),
                        metadata,
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &["NODE", "ADDRESS", "STATE", "INCARNATION", "METADATA"],
        &rows,
    )
}

/// `nodeplane members`.
pub fn run_members(args: ApiArgs) -> Result<()> {
    out!("{}", render_members(&args.client().get("/members")?));
    Ok(())
}

/// One line for `/status`'s `checkpoint`: its number, id prefix and
/// records, or `none` before the first one.
fn render_checkpoint(c: &serde_json::Value) -> String {
    match c["n"].as_u64() {
        None => "none agreed yet".to_string(),
        Some(n) => {
            let id = c["id"].as_str().unwrap_or("");
            format!(
                "{n} ({}…, {} records, round {})",
                id.get(..12).unwrap_or(id),
                text(&c["records"]),
                text(&c["round"])
            )
        }
    }
}

/// `nodeplane status`.
pub fn run_status(args: ApiArgs) -> Result<()> {
    let s = args.client().get("/status")?;
    let c = &s["component"];
    let n = &s["counts"];
    let rows = [
        ("node", text(&s["node_id"])),
        ("address", text(&s["address"])),
        ("state", text(&s["state"])),
        ("incarnation", text(&s["incarnation"])),
        (
            "component",
            format!(
                "{} {} ({})",
                text(&c["name"]),
                text(&c["version"]),
                text(&c["source"])
            ),
        ),
        ("component hash", text(&c["hash"])),
        (
            "uptime",
            format!("{:.0}s", s["uptime_s"].as_f64().unwrap_or(0.0)),
        ),
        (
            "members",
            format!(
                "{} alive, {} suspect, {} dead, {} left",
                n["alive"], n["suspect"], n["dead"], n["left"]
            ),
        ),
        ("ledger entries", text(&s["ledger_entries"])),
        ("checkpoint", render_checkpoint(&s["checkpoint"])),
        ("crashes", text(&s["crashes"])),
        ("swaps", text(&s["swaps"])),
    ];
    for (k, v) in rows {
        outln!("{:<16}{v}", format!("{k}:"));
    }
    Ok(())
}

/// `nodeplane ledger ...`.
#[derive(Args, Debug)]
pub struct LedgerArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LedgerCommand,
}

/// The ledger subcommands.
#[derive(Subcommand, Debug)]
pub enum LedgerCommand {
    /// Show a running agent's ledger frontier and digest.
    Head(ApiArgs),
    /// Verify a stopped node's ledger store offline.
    Verify {
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// Runs a ledger subcommand.
pub fn run_ledger(args: LedgerArgs) -> Result<()> {
    match args.command {
        LedgerCommand::Head(api) => {
            let head = api.client().ledger_head()?;
            outln!("digest:  {}", text(&head["digest"]));
            outln!("entries: {}", text(&head["entries"]));
            let rows: Vec<Vec<String>> = head["authors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|h| vec![text(&h["author"]), text(&h["seq"]), text(&h["head"])])
                        .collect()
                })
                .unwrap_or_default();
            out!("{}", table(&["AUTHOR", "SEQ", "HEAD"], &rows));
            Ok(())
        }
        LedgerCommand::Verify { data_dir } => {
            let report = RedbLedger::verify_offline(&data_dir)?;
            outln!(
                "ok: {} entries from {} authors verified (ids and chain links); frontier digest {}",
                report.entries,
                report.authors,
                report.frontier.digest
            );
            let per_entry = report
                .row_bytes
                .checked_div(report.entries as u64)
                .map(|b| format!(", {b} bytes per entry"))
                .unwrap_or_default();
            outln!(
                "store: format {}{}; {} bytes on disk, {} bytes of entry rows{}",
                report.format,
                if report.format < STORE_FORMAT {
                    format!(" (the next open migrates it to format {STORE_FORMAT})")
                } else {
                    String::new()
                },
                report.file_bytes,
                report.row_bytes,
                per_entry
            );
            for e in &report.equivocations {
                outln!(
                    "equivocation: {} wrote {} different entries at seq {}: {}",
                    e.author,
                    e.ids.len(),
                    e.seq,
                    e.ids.join(", ")
                );
            }
            Ok(())
        }
    }
}

/// `nodeplane swap`.
#[derive(Args, Debug)]
pub struct SwapArgs {
    /// The agent.
    #[command(flatten)]
    pub api: ApiArgs,
    /// `stub`, `nodeplane` or a component file path (as the agent sees it).
    #[arg(long)]
    pub component: String,
}

/// Hot-swaps a running agent's component.
pub fn run_swap(args: SwapArgs) -> Result<()> {
    let component = match std::path::Path::new(&args.component).canonicalize() {
        Ok(p) if nodeplane_artifacts::builtin(&args.component).is_none() => p.display().to_string(),
        _ => args.component.clone(),
    };
    // A swap compiles the component first (tens of seconds for a large
    // one on a cold cache): wait as long as the agent allows a swap.
    let r = args
        .api
        .client()
        .with_timeout(crate::http::SWAP_TIMEOUT)
        .swap(&component)?;
    outln!(
        "swapped {} -> {} in {:.2} ms ({} updates emitted); hash {}",
        text(&r["from"]),
        text(&r["to"]),
        r["pause_ms"].as_f64().unwrap_or(0.0),
        text(&r["updates_emitted"]),
        text(&r["to_hash"])
    );
    Ok(())
}

/// `nodeplane faults`: without an action, lists what is blocked.
#[derive(Args, Debug)]
pub struct FaultsArgs {
    /// The agent.
    #[command(flatten)]
    pub api: ApiArgs,
    /// Peer (node id or control address) to block.
    #[arg(long, conflicts_with_all = ["unblock", "mute", "unmute"])]
    pub block: Option<String>,
    /// Peer (node id or control address) to unblock.
    #[arg(long, conflicts_with_all = ["mute", "unmute"])]
    pub unblock: Option<String>,
    /// inbound, outbound or both.
    #[arg(long, default_value = "both")]
    pub direction: String,
    /// Drop all outbound control traffic (still receive).
    #[arg(long, conflicts_with = "unmute")]
    pub mute: bool,
    /// Stop dropping outbound traffic.
    #[arg(long)]
    pub unmute: bool,
}

/// Changes or lists fault rules.
pub fn run_faults(args: FaultsArgs) -> Result<()> {
    let client = args.api.client();
    let body = match (&args.block, &args.unblock, args.mute, args.unmute) {
        (Some(p), None, false, false) => {
            Some(json!({"peer": p, "direction": args.direction, "action": "block"}))
        }
        (None, Some(p), false, false) => {
            Some(json!({"peer": p, "direction": args.direction, "action": "unblock"}))
        }
        (None, None, true, false) => Some(json!({"mute": true})),
        (None, None, false, true) => Some(json!({"mute": false})),
        (None, None, false, false) => None,
        _ => bail!("give one of --block, --unblock, --mute, --unmute (or none to list)"),
    };
    let state = match body {
        Some(b) => client.set_faults(&b)?,
        None => client.get("/admin/faults")?,
    };
    outln!("mute: {}", state["mute"].as_bool().unwrap_or(false));
    let rows: Vec<Vec<String>> = state["blocked"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(peer, b)| vec![peer.clone(), text(&b["inbound"]), text(&b["outbound"])])
                .collect()
        })
        .unwrap_or_default();
    out!("{}", table(&["PEER", "INBOUND", "OUTBOUND"], &rows));
    Ok(())
}

/// `nodeplane keygen`: prints a fresh cluster key (base64 of 32 bytes of
/// OS randomness).
pub fn run_keygen() -> Result<()> {
    outln!("{}", crate::seal::ClusterKey::generate().to_base64());
    Ok(())
}

/// `nodeplane keys ...`: a running agent's cluster keyring.
#[derive(Args, Debug)]
pub struct KeysArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// A key given on the command line or in a file.
#[derive(Args, Debug)]
pub struct KeyArg {
    /// The key (base64), or for `use` and `remove` its fingerprint as
    /// `keys list` shows it. A key on the command line is visible to other
    /// local users in the process list: prefer --key-file.
    #[arg(required_unless_present = "key_file", conflicts_with = "key_file")]
    pub key: Option<String>,
    /// A file holding the key (as `nodeplane keygen` wrote it).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

impl KeyArg {
    fn text(&self) -> Result<String> {
        match (&self.key, &self.key_file) {
            (Some(k), _) => Ok(k.clone()),
            (None, Some(path)) => {
                let key = crate::seal::read_key_file(path).map_err(anyhow::Error::msg)?;
                Ok(key.to_base64())
            }
            (None, None) => bail!("give a key, a fingerprint or --key-file"),
        }
    }
}

/// The keyring subcommands (as `serf keys`).
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List the installed keys' fingerprints; the primary is marked.
    List(ApiArgs),
    /// Install a key (it opens messages; the primary still seals them).
    Install {
        /// The agent.
        #[command(flatten)]
        api: ApiArgs,
        /// The key.
        #[command(flatten)]
        key: KeyArg,
    },
    /// Make an installed key the primary (messages are sealed with it).
    Use {
        /// The agent.
        #[command(flatten)]
        api: ApiArgs,
        /// The key or its fingerprint.
        #[command(flatten)]
        key: KeyArg,
    },
    /// Remove an installed key that is not the primary.
    Remove {
        /// The agent.
        #[command(flatten)]
        api: ApiArgs,
        /// The key or its fingerprint.
        #[command(flatten)]
        key: KeyArg,
    },
}

/// Renders a `/admin/keys` answer.
pub fn render_keys(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list["keys"]
        .as_array()
        .map(|ks| {
            ks.iter()
                .map(|k| {
                    let primary = if k["primary"].as_bool() == Some(true) {
                        "primary"
                    } else {
                        ""
                    };
                    vec![text(&k["fingerprint"]), primary.to_string()]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["FINGERPRINT", "ROLE"], &rows)
}

/// Runs a keys subcommand.
pub fn run_keys(args: KeysArgs) -> Result<()> {
    let (api, op, key) = match &args.command {
        KeysCommand::List(api) => {
            out!("{}", render_keys(&api.client().get("/admin/keys")?));
            return Ok(());
        }
        KeysCommand::Install { api, key } => (api, "install", key),
        KeysCommand::Use { api, key } => (api, "use", key),
        KeysCommand::Remove { api, key } => (api, "remove", key),
    };
    let list = api
        .client()
        .post("/admin/keys", &json!({ "op": op, "key": key.text()? }))?;
    if list["changed"].as_bool() == Some(false) {
        outln!("{op}: nothing to change");
    } else {
        outln!("{op}: done");
    }
    out!("{}", render_keys(&list));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_checkpoint_line_shows_number_id_prefix_and_records() {
        assert_eq!(render_checkpoint(&Value::Null), "none agreed yet");
        let c = json!({"n": 3, "round": 1, "id": "ab".repeat(32), "records": 64});
        assert_eq!(
            render_checkpoint(&c),
            "3 (abababababab…, 64 records, round 1)"
        );
    }

    #[test]
    fn members_render_as_a_table() {
        let view = json!({"version": 3, "members": [
            {"id": "n1", "address": "127.0.0.1:7001", "state": "alive", "incarnation": 2, "metadata": [["zone", "a"]]},
            {"id": "node-two", "address": "127.0.0.2:7001", "state": "dead", "incarnation": 1, "metadata": []},
        ]});
        let out = render_members(&view);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "NODE      ADDRESS         STATE  INCARNATION  METADATA"
        );
        assert_eq!(
            lines[1],
            "n1        127.0.0.1:7001  alive  2            zone=a"
        );
        assert_eq!(lines[2], "node-two  127.0.0.2:7001  dead   1            ");
    }
}
