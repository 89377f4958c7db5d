//! The client verbs (`submit`, `ls`, `get`, `cancel`, `explain`, `nodes`, `sites`,
//! `top`): a `kubectl`/`sbatch`-like front end to the control plane's HTTP API.
//!
//! Every verb takes `--server`, `--token` and `-o table|json`. The server and token are
//! looked up in flags, then `$GIGAWATT_SERVER`/`$GIGAWATT_TOKEN`, then
//! `~/.config/gigawatt/config.toml` (see [`config`]); the server defaults to
//! `http://127.0.0.1:7070`. Tables are for people; `-o json` prints the API's own JSON
//! (an object for one workload, an array for lists, all pages joined) for scripts.

pub mod admin;
pub mod agents;
pub mod audit;
pub mod config;
pub mod http;
pub mod policy;
pub mod quota;
pub mod site;
pub mod table;
pub mod top;
pub mod verbs;

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, pretty-printed, for scripts and `jq`.
    Json,
}

/// Where the control plane is and who we are: on every client verb.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// Control plane URL. Default: $GIGAWATT_SERVER, then `server` in
    /// ~/.config/gigawatt/config.toml, then http://127.0.0.1:7070.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// API token. Default: $GIGAWATT_TOKEN, then `token` in ~/.config/gigawatt/config.toml.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The CA certificate (PEM) that signed an HTTPS server's certificate, when it is not
    /// a public one. Default: $GIGAWATT_CA.
    #[arg(long, value_name = "FILE", env = "GIGAWATT_CA")]
    pub ca_file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Options of `gigawatt submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The job file (TOML, see docs/job-file.md), or `-` for standard input.
    pub file: PathBuf,
    /// Makes resubmitting safe: the same key (per tenant) returns the workload the first
    /// submission created instead of creating another. Default: a fresh random key per
    /// invocation, so the client's own retries never submit twice.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// The tenant the job is for (sets or overrides `tenant` in the file). Admins and
    /// operators must give one; tenant tokens submit for their own tenant.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Check the file and print the request that would be sent, without sending it.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub conn: Conn,
}

/// Options of `gigawatt ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only these states, comma-separated (pending, running, succeeded, failed,
    /// cancelled, rejected, timed-out). Default: pending,running.
    #[arg(long, value_name = "STATES")]
    pub state: Option<String>,
    /// Include ended workloads (every state); ignored when --state is given.
    #[arg(short = 'A', long)]
    pub all: bool,
    /// Only this tenant's workloads (a tenant token sees only its own anyway).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this kind: training, inference or batch.
    #[arg(long)]
    pub kind: Option<String>,
    /// Show at most this many workloads (oldest first). Default: all that match.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Workloads asked for per request (1..=1000); pages are followed to the end.
    #[arg(long, value_name = "N", default_value_t = 1000, hide = true)]
    pub page_size: usize,
    #[command(flatten)]
    pub conn: Conn,
}

/// A verb on one workload.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// Workload id, e.g. `w-876549185872995`.
    pub id: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// Options of `gigawatt nodes`.
#[derive(Debug, Args)]
pub struct NodesArgs {
    /// Only this site.
    #[arg(long)]
    pub site: Option<String>,
    /// Only this rack.
    #[arg(long)]
    pub rack: Option<String>,
    /// Only nodes that are down.
    #[arg(long)]
    pub down: bool,
    /// Show at most this many nodes. Default: all that match.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub conn: Conn,
}

/// Options of `gigawatt sites`.
#[derive(Debug, Args)]
pub struct SitesArgs {
    #[command(flatten)]
    pub conn: Conn,
}

/// Options of `gigawatt top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Time between refreshes: `2s`, `500ms`, `1m`.
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    pub interval: String,
    /// Print one frame (without clearing the screen) and exit.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub conn: Conn,
}

/// The client verbs, flattened into the top-level command list.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Submit a job file (a training gang, an inference service or a batch job).
    Submit(SubmitArgs),
    /// List workloads (pending and running by default; -A for all).
    Ls(LsArgs),
    /// Show one workload.
    Get(IdArgs),
    /// Cancel a pending or running workload.
    Cancel(IdArgs),
    /// Say why a workload is where it is: its latest decision and its history.
    Explain(IdArgs),
    /// List nodes with free GPUs, CPU, memory and reserved power (operators).
    Nodes(NodesArgs),
    /// List sites with their allocation and power against budget.
    Sites(SitesArgs),
    /// Live power and GPU allocation per site, refreshed until Ctrl-C.
    Top(TopArgs),
    /// Print a workload's captured output (stdout; --stderr), --follow to keep reading.
    Logs(agents::LogsArgs),
    /// List node agents with their state, power and tasks (operators).
    Agents(agents::AgentsArgs),
    /// Enrol a node's agent (operators): `node enroll NODE` prints a one-time join token.
    #[command(subcommand)]
    Node(agents::NodeCommand),
    /// Cap the power of a node's GPUs, or --reset them to their default (operators).
    PowerLimit(agents::PowerLimitArgs),
    /// Energy used per tenant, in kJ and kWh.
    Energy(agents::EnergyArgs),
    /// Site power operations: curtailments (operators).
    #[command(subcommand)]
    Site(site::SiteCommand),
    /// Your quota, use, borrowed GPUs and place in line; `quota set FILE` and `quota
    /// show` for operators.
    Quota(quota::QuotaArgs),
    /// A tenant's residency policy: `policy set TENANT --countries FR`, `policy show
    /// TENANT` for the effective policy of each data class.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The signed, tamper-evident log: `audit export --out FILE`, `audit verify FILE
    /// --key VKEY` (offline), `audit key`.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Create and list tenants (admin).
    #[command(subcommand)]
    Tenant(admin::TenantCommand),
    /// Issue, list and revoke API tokens (admin).
    #[command(subcommand)]
    Token(admin::TokenCommand),
}

/// Runs a client verb.
pub fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Submit(a) => verbs::submit(&a),
        ClientCommand::Ls(a) => verbs::ls(&a),
        ClientCommand::Get(a) => verbs::get(&a),
        ClientCommand::Cancel(a) => verbs::cancel(&a),
        ClientCommand::Explain(a) => verbs::explain(&a),
        ClientCommand::Nodes(a) => verbs::nodes(&a),
        ClientCommand::Sites(a) => verbs::sites(&a),
        ClientCommand::Top(a) => top::top(&a),
        ClientCommand::Logs(a) => agents::logs(&a),
        ClientCommand::Agents(a) => agents::agents(&a),
        ClientCommand::Node(c) => agents::node(&c),
        ClientCommand::PowerLimit(a) => agents::power_limit(&a),
        ClientCommand::Energy(a) => agents::energy(&a),
        ClientCommand::Site(c) => site::site(&c),
        ClientCommand::Quota(a) => quota::quota(&a),
        ClientCommand::Policy(c) => policy::policy(&c),
        ClientCommand::Audit(c) => audit::audit(&c),
        ClientCommand::Tenant(c) => admin::tenant(&c),
        ClientCommand::Token(c) => admin::token(&c),
    }
}

/// Connects with the settings resolved from `conn`, the environment and the config file.
pub fn connect(conn: &Conn) -> anyhow::Result<http::Api> {
    http::Api::new(config::resolve(conn.server.clone(), conn.token.clone())?, conn.ca_file.as_deref())
}
