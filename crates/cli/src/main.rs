//! `gigawatt`: one binary, many subcommands, in the manner of `nomad` and `kubectl`.

mod chart;
mod fleet_cmd;
mod paths;
mod sim_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// gigawatt: the control plane of a multi-site GPU cloud, where capacity is counted in
/// megawatts.
#[derive(Debug, Parser)]
#[command(name = "gigawatt", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay production traces through the scheduling core on a virtual clock.
    #[command(subcommand)]
    Sim(sim_cmd::SimCommand),
    /// Check, summarise and describe fleet files.
    #[command(subcommand)]
    Fleet(fleet_cmd::FleetCommand),
    /// List the GPU models gigawatt knows, with their public specifications.
    Catalog(fleet_cmd::CatalogArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(cmd) => sim_cmd::run(cmd),
        Command::Fleet(cmd) => fleet_cmd::run(cmd),
        Command::Catalog(args) => fleet_cmd::catalog(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
