//! `nodeplane`: the command-line program of the nodeplane control plane.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod components;
mod demo;

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
    /// Run the live demo: a control plane in a host, exercised through the
    /// Control Plane Interface, every step checked.
    Demo,
    /// Check a component against the interface specification.
    Conformance {
        /// A component file, or the name of a built-in component
        /// (`stub`, `nodeplane`).
        component: String,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => demo::run(),
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
    }
}
