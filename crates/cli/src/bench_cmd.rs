//! `gigawatt bench …`: the control plane's performance figures, each measured the way an
//! operator would meet it, against the real `gigawatt serve` binary.
//!
//! * `submit`: sustained submissions per second over HTTP, with latency percentiles.
//! * `cold-start`: a million-record log written through the server's own writer, then the
//!   time from spawning `gigawatt serve` to its first `200` on `/readyz`, with snapshots
//!   and by full replay.
//! * `memory`: the server's resident memory holding N live workloads.
//! * `agents`: one server answering the heartbeats of thousands of simulated node
//!   agents: its CPU use and the heartbeat latency.
//! * `cancel`: the latency of cancelling running work on a full fleet with a standing
//!   queue behind it.
//!
//! Results and how they were taken: docs/control-plane-benchmarks.md.

#[path = "bench/agents.rs"]
mod agents;
#[path = "bench/cancel.rs"]
mod cancel;
#[path = "bench/child.rs"]
mod child;
#[path = "bench/load.rs"]
mod load;
#[path = "bench/logmaker.rs"]
mod logmaker;
#[path = "bench/procfs.rs"]
mod procfs;
#[path = "bench/reaction.rs"]
mod reaction;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gigawatt_store::{Durability, Store};
use serde::Serialize;

use crate::paths::bundled;
use child::{ServeOptions, ServerProcess};

/// `gigawatt bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Sustained submissions per second over HTTP, with latency percentiles (against a
    /// running server, or one this command starts with `--spawn`).
    Submit(SubmitArgs),
    /// Write a realistic event log of N records, then time `gigawatt serve` from spawn to
    /// ready: from snapshots, and by full replay.
    ColdStart(ColdStartArgs),
    /// Resident memory of a server holding N live workloads submitted over HTTP.
    Memory(MemoryArgs),
    /// One server answering the heartbeats of many simulated node agents (one process
    /// plays them all, open loop): its CPU use and the heartbeat latency.
    Agents(AgentsArgs),
    /// Time from the SIGKILL of an agent running one rank of a two-node gang to the gang
    /// running again elsewhere (a real server and three real agents).
    Reaction(ReactionArgs),
    /// Cancels of running work on a full fleet with a standing queue (single jobs and
    /// 4-node gangs): their latency and the server's CPU per cancel.
    Cancel(CancelArgs),
}

/// Options of `gigawatt bench cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub serve: SpawnArgs,
    /// Single 8-GPU jobs left waiting.
    #[arg(long, default_value_t = 4000)]
    pub pending_singles: u64,
    /// 4-node gangs left waiting.
    #[arg(long, default_value_t = 1000)]
    pub pending_gangs: u64,
    /// Cancels to time, one at a time.
    #[arg(long, default_value_t = 500)]
    pub cancels: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn bench_cancel(a: &CancelArgs) -> anyhow::Result<()> {
    let rt = runtime(2)?;
    let mut tmp = None;
    let db = db_or_temp(a.serve.db.as_deref(), &mut tmp, "bench.db")?;
    rt.block_on(prepare_log(&db, a.serve.wipe))?;
    let opts = serve_options(&a.serve, db);
    let fleet = gigawatt_fleet::load(&opts.fleet).map_err(|e| anyhow::anyhow!("{e}"))?;
    // As many 8-GPU jobs as the fleet holds: the fleet is full once they run.
    let fill: u64 = fleet.nodes().map(|(_, _, n)| u64::from(n.gpu_count / 8)).sum();
    let (server, token) = spawn_with_tenant(&opts, &rt)?;
    let spec = cancel::CancelSpec {
        url: server.url(),
        token,
        fill,
        pending_singles: a.pending_singles,
        pending_gangs: a.pending_gangs,
        cancels: a.cancels,
        in_flight: 32,
    };
    if !a.json {
        eprintln!(
            "filling {} with up to {fill} jobs of 8 GPUs (until one waits), then {} waiting jobs and {} 4-node gangs; {} cancels",
            opts.fleet.display(),
            a.pending_singles,
            a.pending_gangs,
            a.cancels
        );
    }
    let pid = server.pid();
    let r = rt.block_on(cancel::run(&spec, || procfs::cpu_seconds(pid)))?;
    if a.json {
        return crate::client::verbs::emit_json(&r);
    }
    let t = &r.latency;
    println!(
        "fleet        {}: {} running, {} waiting before",
        opts.fleet.display(),
        r.running_before,
        r.pending_before
    );
    println!("set-up       {:.1} s", r.setup_s);
    println!(
        "cancel ms    mean {:.2}  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  ({} cancels)",
        t.mean_ms, t.p50_ms, t.p90_ms, t.p99_ms, t.max_ms, r.cancels
    );
    if let Some(c) = r.server_cpu_ms_per_cancel {
        println!("server CPU   {c:.2} ms per cancel");
    }
    println!("waiting      {} after", r.pending_after);
    Ok(())
}

/// Options of `gigawatt bench reaction`.
#[derive(Debug, Args)]
pub struct ReactionArgs {
    /// The fleet file (its first three GPU nodes get agents).
    #[arg(long, default_value = "fleets/france.toml")]
    pub fleet: PathBuf,
    /// Heartbeat interval.
    #[arg(long, default_value = "5s", value_parser = crate::serve_cmd::parse_duration)]
    pub interval: Duration,
    /// `--lost-after` of the server. Default: three intervals.
    #[arg(long, value_parser = crate::serve_cmd::parse_duration)]
    pub lost_after: Option<Duration>,
    /// Kills to time.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn bench_reaction(a: &ReactionArgs) -> anyhow::Result<()> {
    let spec = reaction::ReactionSpec {
        fleet: bundled(&a.fleet.to_string_lossy()),
        interval: a.interval,
        lost_after: a.lost_after.unwrap_or(3 * a.interval),
        runs: a.runs,
    };
    let report = reaction::run(&spec)?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    crate::outln!(
        "agent SIGKILLed while running one rank of a 2-node gang; heartbeat {} ms, lost after {} ms",
        report.interval_ms,
        report.lost_after_ms
    );
    crate::outln!("{:>4} {:>14} {:>14} {:>20}", "run", "node lost", "gang placed", "gang running again");
    for (i, r) in report.runs.iter().enumerate() {
        crate::outln!("{:>4} {:>11} ms {:>11} ms {:>17} ms", i + 1, r.detected_ms, r.placed_ms, r.running_ms);
    }
    Ok(())
}

/// A server this command starts itself.
#[derive(Debug, Args)]
pub struct SpawnArgs {
    /// The event log for the spawned server: `sqlite://FILE` or `postgres://…`. It must be
    /// empty (see `--wipe`). Default: a new SQLite file in a temporary directory, removed
    /// afterwards.
    #[arg(long)]
    pub db: Option<String>,
    /// Empty the event log (`--db`) first. Everything in it is lost.
    #[arg(long)]
    pub wipe: bool,
    /// The fleet file.
    #[arg(long, default_value = "fleets/bench-200k.toml")]
    pub fleet: PathBuf,
    /// SQLite commit durability of the spawned server: `full` or `normal`.
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    pub durability: String,
    /// The spawned server's `--snapshot-every`.
    #[arg(long, default_value_t = 50_000)]
    pub snapshot_every: u64,
    /// Copy the spawned server's log lines to stderr.
    #[arg(long)]
    pub echo_server: bool,
}

/// Options of `gigawatt bench submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Start a server (`gigawatt serve` on a free port, on `--db`) instead of using
    /// `--server` (ignored then, as is `--token`); it creates a tenant and token itself.
    #[arg(long)]
    pub spawn: bool,
    /// The server to load (with `--token`).
    #[arg(long, env = "GIGAWATT_SERVER", required_unless_present = "spawn")]
    pub server: Option<String>,
    /// A token that may submit: a tenant token, or an admin/operator token with `--tenant`.
    #[arg(long, env = "GIGAWATT_TOKEN", required_unless_present = "spawn", hide_env_values = true)]
    pub token: Option<String>,
    /// The tenant each job names (needed with an admin or operator token).
    #[arg(long)]
    pub tenant: Option<String>,
    #[command(flatten)]
    pub serve: SpawnArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How hard to load the server.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Concurrent keep-alive connections (the most requests in flight).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Measured time, e.g. `20s`, `500ms`, `2m`.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load before measuring, not counted.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open loop at this many requests per second; without it, a closed loop (each
    /// connection sends as soon as it is answered).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop after this many requests instead of after `--warmup` + `--duration` (the
    /// window is then the whole run).
    #[arg(long)]
    pub requests: Option<u64>,
    /// GPUs per submitted job.
    #[arg(long, default_value_t = 1)]
    pub gpus: u32,
    /// Threads of the load generator (it shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Write every request (`sent_ms,latency_ms,status`) to this CSV file, to plot.
    #[arg(long)]
    pub samples: Option<PathBuf>,
}

/// Options of `gigawatt bench memory`.
#[derive(Debug, Args)]
pub struct MemoryArgs {
    #[command(flatten)]
    pub serve: SpawnArgs,
    /// Live workloads to submit (1 GPU each by default; the fleet must hold them).
    #[arg(long, default_value_t = 100_000)]
    pub workloads: u64,
    /// Concurrent connections submitting them.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// GPUs per job.
    #[arg(long, default_value_t = 1)]
    pub gpus: u32,
    /// Also restart the server on that log and read its memory again.
    #[arg(long)]
    pub restart: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `gigawatt bench agents`.
#[derive(Debug, Args)]
pub struct AgentsArgs {
    /// Start a server (`gigawatt serve --require-agents` on a free port, on `--db`)
    /// instead of using `--server` (ignored then, as is `--admin-token`); it uses the
    /// admin token the new server prints.
    #[arg(long)]
    pub spawn: bool,
    /// The server to load (with `--admin-token`). It must run the fleet `--fleet`.
    #[arg(long, env = "GIGAWATT_SERVER", required_unless_present = "spawn")]
    pub server: Option<String>,
    /// An admin token (required without `--spawn`). With it the bench issues each
    /// simulated node its own agent token (`POST /v1/tokens` with the node, before
    /// anything is measured), creates tenant `bench` and submits the `--jobs`.
    #[arg(long, required_unless_present = "spawn")]
    pub admin_token: Option<String>,
    #[command(flatten)]
    pub serve: SpawnArgs,
    /// Agents to play: the first GPU nodes of the fleet.
    #[arg(long, default_value_t = 25_000)]
    pub agents: usize,
    /// Between two heartbeats of one agent (and the spawned server's
    /// `--heartbeat-interval`).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Measured time.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Heartbeats after the jobs were submitted and before measuring, not counted.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// One-GPU jobs (`sleep infinity`) to submit once the agents registered.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: u64,
    /// Heartbeats in flight at most (keep-alive connections).
    #[arg(long, default_value_t = 256)]
    pub connections: usize,
    /// Registrations and job submissions in flight at most.
    #[arg(long, default_value_t = 64)]
    pub setup_connections: usize,
    /// Threads of the load generator (it shares the machine with the server).
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Seed of the simulated telemetry and GPU UUIDs.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `gigawatt bench cold-start`.
#[derive(Debug, Args)]
pub struct ColdStartArgs {
    /// The event log to write and start from: `sqlite://FILE` or `postgres://…`. It must
    /// be empty (see `--wipe`). Default: a new SQLite file in a temporary directory,
    /// removed afterwards.
    #[arg(long)]
    pub db: Option<String>,
    /// Empty `--db` (and `--replay-db`) first. Everything in them is lost.
    #[arg(long)]
    pub wipe: bool,
    /// The fleet file.
    #[arg(long, default_value = "fleets/bench-200k.toml")]
    pub fleet: PathBuf,
    /// Records to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Workloads pending or running to hold while writing, and to leave at the end.
    #[arg(long, default_value_t = 40_000)]
    pub live: usize,
    /// `--snapshot-every` of the writing server and of the timed one.
    #[arg(long, default_value_t = 50_000)]
    pub snapshot_every: u64,
    /// Operations per writer command while writing.
    #[arg(long, default_value_t = 2_000)]
    pub batch: usize,
    /// Seed of the job mix.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Timed starts of each kind.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Where to copy the log without its snapshots, to time a full replay. Default: a
    /// SQLite file beside `--db` (for PostgreSQL give another database, or the full
    /// replay is skipped).
    #[arg(long)]
    pub replay_db: Option<String>,
    /// Skip the full-replay comparison.
    #[arg(long)]
    pub no_full_replay: bool,
    /// Use an existing log at `--db` as it is (written by an earlier run) instead of
    /// writing one.
    #[arg(long, conflicts_with = "wipe")]
    pub reuse: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `20s`, `500ms`, `2m`, `1h` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("`{s}`: give a duration such as 20s, 500ms or 2m"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("`{s}`: unknown unit `{u}`; use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

/// Runs a bench command.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Submit(a) => submit(&a),
        BenchCommand::ColdStart(a) => cold_start(&a),
        BenchCommand::Memory(a) => memory(&a),
        BenchCommand::Agents(a) => bench_agents(&a),
        BenchCommand::Reaction(a) => bench_reaction(&a),
        BenchCommand::Cancel(a) => bench_cancel(&a),
    }
}

/// A temporary directory this command made (and removes when dropped).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("gigawatt-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The log URL to use: `--db`, or a new SQLite file in `tmp`.
fn db_or_temp(db: Option<&str>, tmp: &mut Option<TempDir>, file: &str) -> anyhow::Result<String> {
    if let Some(url) = db {
        return Ok(url.to_string());
    }
    let dir = TempDir::new()?;
    let url = format!("sqlite://{}", dir.0.join(file).display());
    *tmp = Some(dir);
    Ok(url)
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    b.enable_all().build().context("starting the async runtime")
}

/// Empties the log at `url` when asked; otherwise checks it is empty.
async fn prepare_log(url: &str, wipe: bool) -> anyhow::Result<()> {
    let store = Store::open(url).await.with_context(|| format!("opening the event log {url}"))?;
    if wipe {
        store.wipe_for_tests().await?;
    } else {
        let seq = store.last_seq().await?;
        if seq > 0 {
            bail!(
                "the event log {url} is not empty ({seq} records): give an empty one, or --wipe to empty it"
            );
        }
    }
    Ok(())
}

fn serve_options(a: &SpawnArgs, db: String) -> ServeOptions {
    ServeOptions {
        fleet: bundled(&a.fleet.to_string_lossy()),
        db,
        durability: a.durability.clone(),
        snapshot_every: a.snapshot_every,
        echo: a.echo_server,
        extra_args: vec![],
    }
}

/// Starts a server on an empty log and makes a tenant `bench` with a token. Returns the
/// server and the tenant token.
fn spawn_with_tenant(
    opts: &ServeOptions,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<(ServerProcess, String)> {
    let mut server = ServerProcess::spawn(opts)?;
    server.wait_ready(Duration::from_secs(600))?;
    let admin =
        server.admin_token().context("the spawned server printed no admin token (was the log empty?)")?;
    let url = server.url();
    let token = rt.block_on(async {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{url}/v1/tenants"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"id": "bench", "name": "Benchmarks"}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("creating tenant `bench`: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
        let r = http
            .post(format!("{url}/v1/tokens"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"name": "bench load generator", "role": "tenant", "tenant": "bench"}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("creating a token: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
        let v: serde_json::Value = r.json().await?;
        v["token"].as_str().map(str::to_string).context("no `token` in the answer to POST /v1/tokens")
    })?;
    Ok((server, token))
}

/// What the server's `/metrics` says: workloads by state, and its group commits.
#[derive(Debug, Default, Serialize)]
struct ServerMetrics {
    /// Workloads by state.
    workloads: std::collections::BTreeMap<String, u64>,
    /// Group commits so far.
    commits: u64,
    /// Mean commands per commit.
    mean_batch: f64,
    /// Mean time to apply and commit one batch, ms.
    mean_commit_ms: f64,
}

async fn server_metrics(url: &str) -> anyhow::Result<ServerMetrics> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    let mut out = ServerMetrics::default();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("gigawatt_workloads{state=\"")
            && let Some((state, n)) = rest.split_once("\"} ")
        {
            out.workloads.insert(state.to_string(), n.trim().parse().unwrap_or(0));
        }
    }
    let commits = value("gigawatt_commit_seconds_count");
    out.commits = commits as u64;
    if commits > 0.0 {
        out.mean_commit_ms = 1000.0 * value("gigawatt_commit_seconds_sum") / commits;
        out.mean_batch = value("gigawatt_commit_batch_commands_sum") / commits;
    }
    Ok(out)
}

/// What `bench submit` reports.
#[derive(Debug, Serialize)]
struct SubmitReport {
    server: String,
    backend: Option<String>,
    durability: Option<String>,
    fleet: Option<String>,
    #[serde(flatten)]
    load: load::LoadReport,
    /// CPU time the server used during the window, s (spawned servers only).
    server_cpu_s: Option<f64>,
    /// The same per answered request, ms: what one submission costs the control plane.
    server_cpu_ms_per_request: Option<f64>,
    /// CPU time every process on the machine used during the window, s: what is not the
    /// server's or the load generator's is other programs' (the machine is shared).
    machine_cpu_s: Option<f64>,
    /// The server's memory at the end (spawned servers only).
    server_memory: Option<procfs::Memory>,
    /// Workloads by state and group commits at the end (from `/metrics`; the commits
    /// count the whole run).
    metrics: ServerMetrics,
}

fn submit(a: &SubmitArgs) -> anyhow::Result<()> {
    let rt = runtime(a.load.client_threads)?;
    let mut tmp = None;
    let run_id = format!("{:x}", unique());
    let (server, url, token, tenant) = if a.spawn {
        let db = db_or_temp(a.serve.db.as_deref(), &mut tmp, "bench.db")?;
        rt.block_on(prepare_log(&db, a.serve.wipe))?;
        let opts = serve_options(&a.serve, db);
        let (server, token) = spawn_with_tenant(&opts, &rt)?;
        let url = server.url();
        (Some((server, opts)), url, token, None)
    } else {
        let url = a.server.clone().context("--server: give the server's URL, or --spawn")?;
        let token = a.token.clone().context("--token: give a token, or --spawn")?;
        (None, url, token, a.tenant.clone())
    };
    let spec = load::LoadSpec {
        url: url.clone(),
        token,
        tenant,
        connections: a.load.connections.max(1),
        duration: a.load.duration,
        warmup: if a.load.requests.is_some() { Duration::ZERO } else { a.load.warmup },
        rate: a.load.rate,
        requests: a.load.requests,
        gpus: a.load.gpus,
        run_id,
        samples_csv: a.load.samples.clone(),
    };
    let pid = server.as_ref().map(|(s, _)| s.pid());
    let mut server_cpu = (None, None);
    let mut machine_cpu = (None, None);
    if !a.json {
        eprintln!(
            "loading {url}: {} connections, {}, {} warm-up + {}",
            spec.connections,
            spec.rate.map_or("closed loop".to_string(), |r| format!("open loop at {r}/s")),
            humanize(spec.warmup),
            spec.requests.map_or(humanize(spec.duration), |n| format!("{n} requests")),
        );
    }
    let report = rt.block_on(load::run(&spec, |open| {
        let cpu = pid.and_then(procfs::cpu_seconds);
        let all = procfs::machine_busy_seconds();
        if open {
            (server_cpu.0, machine_cpu.0) = (cpu, all);
        } else {
            (server_cpu.1, machine_cpu.1) = (cpu, all);
        }
    }))?;
    let metrics = rt.block_on(server_metrics(&url)).unwrap_or_default();
    let backend = rt.block_on(async {
        let v: serde_json::Value = reqwest::get(format!("{url}/healthz")).await.ok()?.json().await.ok()?;
        v["backend"].as_str().map(str::to_string)
    });
    let answered = report.requests;
    let out = SubmitReport {
        server: url,
        durability: server
            .as_ref()
            .filter(|_| backend.as_deref() == Some("sqlite"))
            .map(|(_, o)| o.durability.clone()),
        backend,
        fleet: server.as_ref().map(|(_, o)| o.fleet.display().to_string()),
        load: report,
        server_cpu_s: server_cpu.1.zip(server_cpu.0).map(|(b, a)| b - a),
        server_cpu_ms_per_request: server_cpu
            .1
            .zip(server_cpu.0)
            .filter(|_| answered > 0)
            .map(|(b, a)| (b - a) * 1e3 / answered as f64),
        machine_cpu_s: machine_cpu.1.zip(machine_cpu.0).map(|(b, a)| b - a),
        server_memory: pid.and_then(procfs::memory),
        metrics,
    };
    if let Some((s, _)) = server {
        s.stop();
    }
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_submit(&out)?;
    }
    Ok(())
}

fn humanize(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// A number unique to this run (for idempotency keys).
fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        ^ u128::from(std::process::id())
}

fn print_submit(r: &SubmitReport) -> anyhow::Result<()> {
    let l = &r.load;
    let backend = match (&r.backend, &r.durability) {
        (Some(b), Some(d)) => format!("{b}, durability {d}"),
        (Some(b), None) => b.clone(),
        _ => "?".into(),
    };
    outln!("server       {} ({backend})", r.server);
    outln!(
        "load         {} loop, {} connections{}",
        l.mode,
        l.connections,
        l.offered_per_s.map(|r| format!(", offered {r:.0}/s")).unwrap_or_default()
    );
    outln!("window       {:.1} s: {} answers, {} created", l.window_s, l.requests, l.created);
    outln!("throughput   {:.0} submissions/s", l.achieved_per_s);
    let t = &l.latency;
    outln!(
        "latency ms   mean {:.2}  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        t.mean_ms,
        t.p50_ms,
        t.p90_ms,
        t.p99_ms,
        t.p999_ms,
        t.max_ms
    );
    let errors: Vec<String> = l.errors.iter().map(|(s, n)| format!("{n} × {s}")).collect();
    outln!("not 201      {}", if errors.is_empty() { "none".into() } else { errors.join(", ") });
    let cpu = |c: Option<f64>| {
        c.map_or("?".into(), |c| format!("{c:.1} s ({:.0}% of one core)", 100.0 * c / l.window_s))
    };
    let others = match (r.machine_cpu_s, r.server_cpu_s, l.client_cpu_s) {
        (Some(m), Some(s), Some(c)) => Some((m - s - c).max(0.0)),
        _ => None,
    };
    outln!(
        "CPU          server {}, load generator {}, other programs {}",
        cpu(r.server_cpu_s),
        cpu(l.client_cpu_s),
        cpu(others)
    );
    if let Some(ms) = r.server_cpu_ms_per_request {
        outln!("server CPU   {ms:.3} ms per answered request");
    }
    if let Some(m) = r.server_memory {
        outln!("server RSS   {:.0} MiB now, {:.0} MiB peak", m.rss_mib, m.peak_rss_mib);
    }
    let m = &r.metrics;
    if !m.workloads.is_empty() {
        let w: Vec<String> = m.workloads.iter().map(|(s, n)| format!("{s} {n}")).collect();
        outln!("workloads    {}", w.join(", "));
    }
    if m.commits > 0 {
        outln!(
            "commits      {} in all, {:.1} commands and {:.2} ms each on average",
            m.commits,
            m.mean_batch,
            m.mean_commit_ms
        );
    }
    Ok(())
}

/// What `bench memory` reports.
#[derive(Debug, Serialize)]
struct MemoryReport {
    fleet: String,
    db: String,
    workloads_submitted: u64,
    submit_s: f64,
    workloads: std::collections::BTreeMap<String, u64>,
    /// Right after the last submission was answered.
    after_fill: Option<procfs::Memory>,
    /// After a restart on the same log (`--restart`).
    after_restart: Option<procfs::Memory>,
    restart_ready_s: Option<f64>,
    restart_load_line: Option<String>,
}

fn memory(a: &MemoryArgs) -> anyhow::Result<()> {
    let rt = runtime(1)?;
    let mut tmp = None;
    let db = db_or_temp(a.serve.db.as_deref(), &mut tmp, "bench.db")?;
    rt.block_on(prepare_log(&db, a.serve.wipe))?;
    let opts = serve_options(&a.serve, db.clone());
    let (server, token) = spawn_with_tenant(&opts, &rt)?;
    let spec = load::LoadSpec {
        url: server.url(),
        token,
        tenant: None,
        connections: a.connections.max(1),
        duration: Duration::ZERO,
        warmup: Duration::ZERO,
        rate: None,
        requests: Some(a.workloads),
        gpus: a.gpus,
        run_id: format!("{:x}", unique()),
        samples_csv: None,
    };
    if !a.json {
        eprintln!("submitting {} workloads to {} ({})", a.workloads, server.url(), opts.fleet.display());
    }
    let started = Instant::now();
    let load = rt.block_on(load::run(&spec, |_| {}))?;
    let submit_s = started.elapsed().as_secs_f64();
    if load.created != a.workloads {
        eprintln!(
            "warning: {} of {} submissions were created; not 201: {:?}",
            load.created, a.workloads, load.errors
        );
    }
    let workloads = rt.block_on(server_metrics(&server.url())).unwrap_or_default().workloads;
    let after_fill = procfs::memory(server.pid());
    server.stop();
    let (mut after_restart, mut restart_ready_s, mut restart_load_line) = (None, None, None);
    if a.restart {
        let mut again = ServerProcess::spawn(&opts)?;
        restart_ready_s = Some(again.wait_ready(Duration::from_secs(600))?.as_secs_f64());
        after_restart = procfs::memory(again.pid());
        restart_load_line = again.load_line();
        again.stop();
    }
    let r = MemoryReport {
        fleet: opts.fleet.display().to_string(),
        db,
        workloads_submitted: load.created,
        submit_s,
        workloads,
        after_fill,
        after_restart,
        restart_ready_s,
        restart_load_line,
    };
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    outln!("fleet        {}", r.fleet);
    outln!(
        "submitted    {} workloads in {:.1} s ({:.0}/s)",
        r.workloads_submitted,
        r.submit_s,
        r.workloads_submitted as f64 / r.submit_s
    );
    let w: Vec<String> = r.workloads.iter().map(|(s, n)| format!("{s} {n}")).collect();
    outln!("workloads    {}", w.join(", "));
    let mem = |m: Option<procfs::Memory>| {
        m.map_or("?".into(), |m| format!("RSS {:.0} MiB, peak {:.0} MiB", m.rss_mib, m.peak_rss_mib))
    };
    outln!("after fill   {}", mem(r.after_fill));
    if a.restart {
        outln!("restarted    ready in {:.2} s, {}", r.restart_ready_s.unwrap_or(0.0), mem(r.after_restart));
        if let Some(l) = &r.restart_load_line {
            outln!("             {l}");
        }
    }
    Ok(())
}

/// What `bench agents` reports: the generator's figures and the server's.
#[derive(Debug, Serialize)]
struct AgentsOut {
    #[serde(flatten)]
    report: agents::AgentsReport,
    backend: Option<String>,
    /// SQLite durability of a spawned server.
    durability: Option<String>,
    /// Workloads by state and group commits at the end (from `/metrics`).
    metrics: ServerMetrics,
}

fn bench_agents(a: &AgentsArgs) -> anyhow::Result<()> {
    let rt = runtime(a.client_threads)?;
    let mut tmp = None;
    let fleet = bundled(&a.serve.fleet.to_string_lossy());
    let (server, url, admin_token) = if a.spawn {
        let db = db_or_temp(a.serve.db.as_deref(), &mut tmp, "bench.db")?;
        rt.block_on(prepare_log(&db, a.serve.wipe))?;
        let mut opts = serve_options(&a.serve, db);
        opts.extra_args = vec![
            "--heartbeat-interval".into(),
            format!("{}ms", a.interval.as_millis().max(1)),
            "--require-agents".into(),
        ];
        let mut server = ServerProcess::spawn(&opts)?;
        server.wait_ready(Duration::from_secs(600))?;
        let admin =
            server.admin_token().context("the spawned server printed no admin token (was the log empty?)")?;
        let url = server.url();
        (Some((server, opts)), url, admin)
    } else {
        let url = a.server.clone().context("--server: give the server's URL, or --spawn")?;
        let admin = a.admin_token.clone().context("--admin-token: give an admin token, or --spawn")?;
        (None, url, admin)
    };
    let spec = agents::AgentsSpec {
        url: url.clone(),
        admin_token,
        tenant: "bench".into(),
        fleet,
        agents: a.agents,
        interval: a.interval,
        duration: a.duration,
        warmup: a.warmup,
        jobs: a.jobs,
        connections: a.connections.max(1),
        setup_connections: a.setup_connections.max(1),
        seed: a.seed,
        run_id: format!("{:x}", unique()),
        server_pid: server.as_ref().map(|(s, _)| s.pid()),
        progress: !a.json,
    };
    let result = rt.block_on(agents::run(&spec));
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some((s, _)) = &server {
                eprintln!("the server's last lines:\n{}", s.stderr_tail(20));
            }
            return Err(e);
        }
    };
    let metrics = rt.block_on(server_metrics(&url)).unwrap_or_default();
    let backend = rt.block_on(async {
        let v: serde_json::Value = reqwest::get(format!("{url}/healthz")).await.ok()?.json().await.ok()?;
        v["backend"].as_str().map(str::to_string)
    });
    let out = AgentsOut {
        report,
        durability: server
            .as_ref()
            .filter(|_| backend.as_deref() == Some("sqlite"))
            .map(|(_, o)| o.durability.clone()),
        backend,
        metrics,
    };
    if let Some((s, _)) = server {
        s.stop();
    }
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    agents::print(&out.report)?;
    let backend = match (&out.backend, &out.durability) {
        (Some(b), Some(d)) => format!("{b}, durability {d}"),
        (Some(b), None) => b.clone(),
        _ => "?".into(),
    };
    outln!("log          {backend}");
    let m = &out.metrics;
    if !m.workloads.is_empty() {
        let w: Vec<String> = m.workloads.iter().map(|(s, n)| format!("{s} {n}")).collect();
        outln!("workloads    {}", w.join(", "));
    }
    if m.commits > 0 {
        outln!(
            "commits      {} in all, {:.1} commands and {:.2} ms each on average",
            m.commits,
            m.mean_batch,
            m.mean_commit_ms
        );
    }
    Ok(())
}

/// One timed start.
#[derive(Debug, Serialize)]
struct StartRun {
    /// Spawn to first 200 on `/readyz`, s.
    ready_s: f64,
    /// The server's own start-up line.
    load_line: Option<String>,
    memory: Option<procfs::Memory>,
}

/// What `bench cold-start` reports.
#[derive(Debug, Serialize)]
struct ColdStartReport {
    db: String,
    fleet: String,
    log: Option<logmaker::LogReport>,
    with_snapshots: Vec<StartRun>,
    full_replay_db: Option<String>,
    full_replay: Vec<StartRun>,
}

fn cold_start(a: &ColdStartArgs) -> anyhow::Result<()> {
    let mut tmp = None;
    let db = db_or_temp(a.db.as_deref(), &mut tmp, "log.db")?;
    let fleet_path = bundled(&a.fleet.to_string_lossy());
    let fleet = gigawatt_fleet::load(&fleet_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let replay_db = match (&a.replay_db, a.no_full_replay) {
        (_, true) => None,
        (Some(u), false) => Some(u.clone()),
        (None, false) => sqlite_sibling(&db, "-full-replay"),
    };
    let rt = runtime(2)?;
    let log = if a.reuse {
        None
    } else {
        if !a.json {
            eprintln!(
                "writing {} records to {db} ({} live workloads, fleet {})",
                a.events,
                a.live,
                fleet_path.display()
            );
        }
        let spec = logmaker::LogSpec {
            events: a.events,
            live: a.live,
            batch: a.batch,
            snapshot_every: a.snapshot_every,
            seed: a.seed,
        };
        let report = rt.block_on(async {
            // How fast the log is written does not matter here, only what it holds.
            let store =
                Store::open_with(&db, Durability::Normal).await.with_context(|| format!("opening {db}"))?;
            if a.wipe {
                store.wipe_for_tests().await?;
            }
            logmaker::make_log(store, fleet.clone(), &spec).await
        })?;
        Some(report)
    };
    if let Some(rdb) = &replay_db {
        if !a.json {
            eprintln!("copying the log without its snapshots to {rdb}");
        }
        rt.block_on(copy_events(&db, rdb, a.wipe || a.replay_db.is_none()))?;
    }
    drop(rt);
    let opts = ServeOptions {
        fleet: fleet_path.clone(),
        db: db.clone(),
        durability: "full".into(),
        snapshot_every: a.snapshot_every,
        echo: false,
        extra_args: vec![],
    };
    let with_snapshots = timed_starts(&opts, a.runs, a.json, "from snapshots")?;
    let mut full_replay = Vec::new();
    if let Some(rdb) = &replay_db {
        // A huge --snapshot-every, so that the server does not write a snapshot before
        // it answers: this times the replay alone.
        let o = ServeOptions { db: rdb.clone(), snapshot_every: u64::MAX / 4, ..opts.clone() };
        full_replay = timed_starts(&o, a.runs, a.json, "full replay")?;
    }
    let r = ColdStartReport {
        db,
        fleet: fleet_path.display().to_string(),
        log,
        with_snapshots,
        full_replay_db: replay_db,
        full_replay,
    };
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    if let Some(l) = &r.log {
        let ended: Vec<String> = l.ended.iter().map(|(s, n)| format!("{s} {n}")).collect();
        outln!(
            "log          {} records in {:.1} s: {} workloads submitted, {} live ({} running); ended: {}",
            l.records,
            l.took_s,
            l.submitted,
            l.live,
            l.running,
            ended.join(", ")
        );
    }
    for (what, runs) in [("snapshots", &r.with_snapshots), ("full replay", &r.full_replay)] {
        for (i, run) in runs.iter().enumerate() {
            let mem = run.memory.map_or(String::new(), |m| {
                format!(", RSS {:.0} MiB (peak {:.0})", m.rss_mib, m.peak_rss_mib)
            });
            outln!("{what:<12} run {}: ready in {:.2} s{mem}", i + 1, run.ready_s);
            if let Some(line) = &run.load_line {
                outln!("             {line}");
            }
        }
    }
    Ok(())
}

/// `sqlite://DIR/NAME.db` → `sqlite://DIR/NAME{suffix}.db`; `None` for other URLs.
fn sqlite_sibling(url: &str, suffix: &str) -> Option<String> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let p = Path::new(path.split('?').next()?);
    let stem = p.file_stem()?.to_string_lossy();
    let ext = p.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    Some(format!("sqlite://{}", p.with_file_name(format!("{stem}{suffix}{ext}")).display()))
}

/// Copies every record of `from` to the empty log `to` (snapshots stay behind).
async fn copy_events(from: &str, to: &str, wipe: bool) -> anyhow::Result<()> {
    let src = Store::open(from).await.with_context(|| format!("opening {from}"))?;
    let dst = Store::open_with(to, Durability::Normal).await.with_context(|| format!("opening {to}"))?;
    prepare_log(to, wipe).await?;
    let mut after = 0;
    loop {
        let records = src.read_after(after, 20_000).await?;
        let Some(last) = records.last() else { break };
        after = last.seq;
        dst.append(&records).await?;
    }
    Ok(())
}

fn timed_starts(opts: &ServeOptions, runs: usize, quiet: bool, what: &str) -> anyhow::Result<Vec<StartRun>> {
    let mut out = Vec::new();
    for i in 0..runs.max(1) {
        let mut s = ServerProcess::spawn(opts)?;
        let ready = s.wait_ready(Duration::from_secs(600))?;
        let run = StartRun {
            ready_s: ready.as_secs_f64(),
            load_line: s.load_line(),
            memory: procfs::memory(s.pid()),
        };
        s.stop();
        if !quiet {
            eprintln!("  {what}, run {}: ready in {:.2} s", i + 1, run.ready_s);
        }
        out.push(run);
    }
    Ok(out)
}
