//! `nodeplane`: the command-line program of the nodeplane control plane.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod components;

mod demo;
mod store_crash;

/// Counts heap bytes, for `nodeplane bench --only speed`'s measured memory
/// breakdown (`nodeplane_sim::memory`): mimalloc, with a count (the
/// simulator's per-message, per-entry and per-update allocations run
/// faster on it than on the system allocator).
#[global_allocator]
static ALLOCATOR: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

/// nodeplane: a decentralized, ledger-backed control plane for a mesh VPN,
/// run as WebAssembly components.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the live demo: five agents with Mesh VPN hosts on loopback; live
    /// swap stub -> node plane, a kill, a restart, a partition and its heal,
    /// every step checked.
    Demo {
        /// Run the same acts on real tunnels: `wireguard` puts each node in
        /// a network namespace with a wireguard-go interface and shows
        /// overlay pings at each step (needs root, /dev/net/tun, ip,
        /// wireguard-go, ping).
        #[arg(long, value_enum)]
        dataplane: Option<demo::Dataplane>,
    },
    /// Check a component against the interface specification.
    Conformance {
        /// A component file, or the name of a built-in component
        /// (`stub`, `nodeplane`).
        component: String,
    },
    /// Run the agent on this node (see `nodeplane agent --help`).
    Agent(nodeplane_agent::cli::AgentArgs),
    /// List a running agent's members.
    Members(nodeplane_agent::cli::ApiArgs),
    /// Show a running agent's status.
    Status(nodeplane_agent::cli::ApiArgs),
    /// Inspect a ledger: `head` of a running agent, `verify` a stopped store.
    Ledger(nodeplane_agent::cli::LedgerArgs),
    /// Hot-swap a running agent's component.
    Swap(nodeplane_agent::cli::SwapArgs),
    /// List or change a running agent's fault injection rules.
    Faults(nodeplane_agent::cli::FaultsArgs),
    /// Print a fresh cluster key (base64 of 32 random bytes) for
    /// `cluster_key_file`.
    Keygen,
    /// A running agent's cluster keyring: list, install, use, remove.
    Keys(nodeplane_agent::cli::KeysArgs),
    /// Run a membership scenario (S1..S8) in the deterministic simulator.
    Sim(nodeplane_sim::cli::SimArgs),
    /// Run the simulator benchmarks behind docs/performance.md.
    Bench(nodeplane_sim::cli::BenchArgs),
    /// The ledger store under `kill -9`: `loop --iterations N` kills a
    /// writer at random moments and checks the store after each kill.
    StoreCrash(store_crash::StoreCrashArgs),
    /// A Mesh VPN host applying an agent's peer set to a WireGuard
    /// interface until stdin closes (run by the data-plane test bed).
    #[command(hide = true)]
    MeshvpnHost(demo::commands::MeshvpnHostArgs),
    /// One request to an agent's API, the JSON answer on stdout (run by the
    /// data-plane test bed inside a namespace).
    #[command(hide = true)]
    ApiCall(demo::commands::ApiCallArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The agent is a long-running service: it logs its decisions by default.
    let default_filter = if matches!(cli.command, Command::Agent(_) | Command::MeshvpnHost(_)) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Demo { dataplane } => demo::run(dataplane),
        Command::Conformance { component } => {
            let runtime = components::runtime()?;
            let loaded = components::load(&runtime, &component)?;
            let report = nodeplane_conformance::run(&runtime, &loaded);
            print!("{}", report.render());
            if report.failed() > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Agent(args) => nodeplane_agent::cli::run_agent(args),
        Command::Members(args) => nodeplane_agent::cli::run_members(args),
        Command::Status(args) => nodeplane_agent::cli::run_status(args),
        Command::Ledger(args) => nodeplane_agent::cli::run_ledger(args),
        Command::Swap(args) => nodeplane_agent::cli::run_swap(args),
        Command::Faults(args) => nodeplane_agent::cli::run_faults(args),
        Command::Keygen => nodeplane_agent::cli::run_keygen(),
        Command::Keys(args) => nodeplane_agent::cli::run_keys(args),
        Command::Sim(args) => Ok(nodeplane_sim::cli::run(&args)?),
        Command::Bench(args) => {
            nodeplane_sim::memory::set_heap_probe(|| ALLOCATOR.allocated());
            Ok(nodeplane_sim::cli::run_bench(&args)?)
        }
        Command::StoreCrash(args) => store_crash::run(args),
        Command::MeshvpnHost(args) => demo::commands::run_meshvpn_host(args),
        Command::ApiCall(args) => demo::commands::run_api_call(args),
    }
}
