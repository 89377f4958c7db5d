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
mod audit_key;
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
    Serve(Box<serve_cmd::ServeArgs>),
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};
    use proptest::prelude::*;

    use super::Cli;

    /// Every subcommand path (`site curtail`, `bench submit`, …) and every flag, long and
    /// short, anywhere in the command tree: the words the fuzzer combines.
    fn vocabulary() -> (Vec<Vec<String>>, Vec<String>) {
        fn walk(
            cmd: &clap::Command,
            path: &mut Vec<String>,
            paths: &mut Vec<Vec<String>>,
            flags: &mut Vec<String>,
        ) {
            paths.push(path.clone());
            for a in cmd.get_arguments() {
                if let Some(l) = a.get_long() {
                    flags.push(format!("--{l}"));
                }
                if let Some(s) = a.get_short() {
                    flags.push(format!("-{s}"));
                }
            }
            for sub in cmd.get_subcommands() {
                path.push(sub.get_name().to_string());
                walk(sub, path, paths, flags);
                path.pop();
            }
        }
        let (mut paths, mut flags) = (Vec::new(), Vec::new());
        walk(&Cli::command(), &mut Vec::new(), &mut paths, &mut flags);
        flags.sort();
        flags.dedup();
        (paths, flags)
    }

    /// Values as a person (or a script gone wrong) might type them.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("-1".to_string()),
            Just("18446744073709551616".to_string()),
            Just("1e308".to_string()),
            Just("NaN".to_string()),
            Just("+99999999999h".to_string()),
            Just("5s".to_string()),
            Just("0".to_string()),
            Just("fleets/france.toml".to_string()),
            Just("sqlite://".to_string()),
            Just("http://[::1".to_string()),
            Just("42..7".to_string()),
            Just("8xH100".to_string()),
            Just("0xQ9000".to_string()),
            "\\PC{0,12}",
        ]
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any argument list is parsed or refused with a message: never a panic.
        #[test]
        fn arbitrary_arguments_never_panic(
            path in any::<prop::sample::Index>(),
            words in proptest::collection::vec((any::<prop::sample::Index>(), value(), 0..3u8), 0..6),
        ) {
            let (paths, flags) = vocabulary();
            let mut argv = vec!["gigawatt".to_string()];
            argv.extend(path.get(&paths).iter().cloned());
            for (flag, v, how) in words {
                match how {
                    0 => argv.push(flag.get(&flags).clone()),
                    1 => {
                        argv.push(flag.get(&flags).clone());
                        argv.push(v);
                    }
                    _ => argv.push(v),
                }
            }
            let parsed = std::panic::catch_unwind(|| Cli::try_parse_from(&argv).map(|_| ()).map_err(|e| e.to_string()));
            prop_assert!(parsed.is_ok(), "parsing {argv:?} panicked");
        }
    }
}
