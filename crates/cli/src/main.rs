//! `gigawatt`: one binary, many subcommands, in the manner of `nomad` and `kubectl`.

/// `println!` that returns an error instead of panicking when stdout is closed
/// (`gigawatt fleet schema | head`); `main` treats a broken pipe as a normal end.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}
pub(crate) use outln;

mod agent_cmd;
mod bench_cmd;
mod chart;
mod client;
mod fleet_cmd;
mod paths;
mod serve_cmd;
mod sim_cmd;
mod sim_power_cmd;
mod sim_queue_cmd;
mod up_cmd;

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
    /// Run the control plane: the HTTP API on the event log (SQLite or PostgreSQL).
    Serve(serve_cmd::ServeArgs),
    /// Start the control plane and N simulated node agents, each its own process on
    /// loopback: a whole cluster on this machine, until Ctrl-C.
    Up(up_cmd::UpArgs),
    /// Run a node agent: register the node, report telemetry, run the processes the
    /// control plane assigns (NVML GPUs, or --simulate 8xH100).
    Agent(agent_cmd::AgentArgs),
    /// Kills a dead agent's task processes (started by `gigawatt agent` itself).
    #[command(hide = true)]
    AgentGuard(agent_cmd::GuardArgs),
    /// Break-glass actions straight on the event log.
    #[command(subcommand)]
    Admin(serve_cmd::AdminCommand),
    /// The client verbs: submit, ls, get, cancel, explain, nodes, sites, top.
    #[command(flatten)]
    Client(client::ClientCommand),
    /// Measure the control plane: submissions/s over HTTP, cold start, memory.
    #[command(subcommand)]
    Bench(bench_cmd::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(cmd) => sim_cmd::run(cmd),
        Command::Fleet(cmd) => fleet_cmd::run(cmd),
        Command::Catalog(args) => fleet_cmd::catalog(&args),
        Command::Serve(args) => serve_cmd::serve(&args),
        Command::Up(args) => up_cmd::up(&args),
        Command::Agent(args) => agent_cmd::agent(&args),
        Command::AgentGuard(args) => agent_cmd::guard(&args),
        Command::Admin(cmd) => serve_cmd::admin(&cmd),
        Command::Client(cmd) => client::run(cmd),
        Command::Bench(cmd) => bench_cmd::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Whether the error is stdout being closed by the reader (e.g. `| head`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
