//! `gigawatt serve` (the control plane) and `gigawatt admin …` (break-glass actions
//! straight on the event log).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gigawatt_api::Role;
use gigawatt_core::PolicyKind;
use gigawatt_server::agents::AgentSettings;
use gigawatt_server::engine::EngineConfig;
use gigawatt_server::{Server, ServerConfig};
use gigawatt_store::{Durability, LogEvent, Record, Store, StoreError};

use crate::paths::bundled;

/// Options of `gigawatt serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The fleet file.
    #[arg(long, default_value = "fleets/france.toml")]
    pub fleet: PathBuf,
    /// The event log: `sqlite://FILE` or `postgres://USER@HOST:PORT/DB`. Default: an
    /// embedded SQLite file in the data directory.
    #[arg(long)]
    pub db: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// The Ed25519 key the log's checkpoints are signed with (a C2SP signed-note private
    /// key, one line `PRIVATE+KEY+…`); created, readable by its owner only, when missing.
    /// Default: beside the SQLite file (`gigawatt.db.audit-key`), or `audit.key` in the
    /// data directory for PostgreSQL. Keep it: it is what auditors' verifications rest on.
    #[arg(long, value_name = "FILE")]
    pub audit_key: Option<PathBuf>,
    /// The log's name (the checkpoints' origin line, the key's name) when a new key is
    /// created, e.g. `gigawatt.example.com/log`.
    #[arg(long, default_value = "gigawatt/log", value_name = "NAME")]
    pub audit_origin: String,
    /// Sign a checkpoint after this many new records.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub checkpoint_every: u64,
    /// Sign a checkpoint after this long when the log has grown.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub checkpoint_interval: std::time::Duration,
    /// Where the embedded database lives when `--db` is not given. Default:
    /// `$XDG_DATA_HOME/gigawatt` or `~/.local/share/gigawatt`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Placement policy (`gigawatt sim openb --help` lists them).
    #[arg(long, default_value = "fgd")]
    pub policy: String,
    /// Seed of the scheduling core's random stream.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How long ended workloads stay in memory, in lists and in snapshots: `24h`, `30m`,
    /// `0s`, or `forever`. Afterwards they are archived: `gigawatt get` still finds them
    /// in the event log, but their idempotency keys are forgotten.
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub keep_ended: String,
    /// Snapshot the state after this many new log records.
    #[arg(long, default_value_t = 50_000)]
    pub snapshot_every: u64,
    /// SQLite commit durability: `full` (fsync each commit; survives power loss) or
    /// `normal` (survives a crash of the process, not of the machine).
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    pub durability: String,
    /// How often node agents send heartbeats (every agent is told at registration).
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = parse_duration)]
    pub heartbeat_interval: std::time::Duration,
    /// A node whose heartbeats stop for this long is lost: its work is requeued
    /// elsewhere. Default: three heartbeat intervals. Agents stop their own work one
    /// interval earlier, so the two copies never overlap.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub lost_after: Option<std::time::Duration>,
    /// How long agents wait between SIGTERM and SIGKILL when they stop a task whose job
    /// did not set its own `grace`.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub grace: std::time::Duration,
    /// The longest `grace` a job may ask for: a preempted job keeps its GPUs this long
    /// at most after SIGTERM.
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = parse_duration)]
    pub max_grace: std::time::Duration,
    /// How often the scheduling core's periodic pass runs: reservations for big gangs,
    /// backfill into them, reclaim of lent quota, fair-share decay (Slurm's
    /// `bf_interval`).
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub pass_interval: std::time::Duration,
    /// Priority that ages with waiting: best-effort work that waited this long is ordered
    /// as standard work (it stays best-effort for preemption); `0s` never.
    #[arg(long, default_value = "1day", value_name = "DURATION", value_parser = parse_duration)]
    pub age_after: std::time::Duration,
    /// Place work only on nodes whose agent registered (as `gigawatt up` does). Without
    /// it, a node without an agent still takes work as a reservation that nothing runs.
    #[arg(long)]
    pub require_agents: bool,
    /// How often the power manager of oversubscribed sites plans GPU power limits from
    /// agent telemetry (the control interval).
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = parse_duration)]
    pub power_interval: std::time::Duration,
    /// Margin the power manager adds to each task's predicted draw (0.1 = +10%).
    #[arg(long, default_value_t = 0.1)]
    pub power_margin: f64,
    /// How long before a budget cut (a lower grid phase, a curtailment) work is shed and
    /// GPUs capped, so that the cut is met before it begins.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub budget_lead: std::time::Duration,
    /// Heartbeats of telemetry kept per node for `GET /v1/nodes/{name}/telemetry`.
    #[arg(long, default_value_t = 36)]
    pub telemetry_samples: usize,
    /// Open connections at most; more are closed as soon as accepted. Default: 4,096, or
    /// less when the limit on open files is low (this process raises its soft limit to
    /// the hard one and keeps 256 descriptors for itself).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// How long a client has to send a request's headers; a connection that idles
    /// longer between requests is closed too.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub header_read_timeout: std::time::Duration,
    /// How long a request may take (the event stream and agents' long polls excepted).
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: std::time::Duration,
    /// Requests handled at once, shared fairly between tokens (node agents have as many
    /// seats again of their own); a token with 256 requests waiting, or a request that
    /// waited 10 s, is answered 429.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub seats: usize,
    /// Serve HTTPS with this certificate chain (PEM; the server's first). Bearer tokens
    /// must never cross a network in clear text: without TLS, listen on loopback only.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Print only the banner and the admin token at start-up, not the hints that
    /// follow (for `gigawatt up`, which prints its own).
    #[arg(long, hide = true)]
    pub no_hints: bool,
}

/// Parses `5s`, `250ms`, `1m`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e}; write e.g. 5s, 250ms or 1m"))
}

/// `gigawatt admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Issue an API token by writing it straight into the event log (works with the
    /// server stopped, or running: it picks the token up on first use).
    CreateToken(CreateTokenArgs),
    /// Fold the event log from scratch and print its state digest (compare it with
    /// `GET /v1/state/digest`).
    Replay(ReplayArgs),
}

/// Options of `gigawatt admin create-token`.
#[derive(Debug, Args)]
pub struct CreateTokenArgs {
    /// The event log (as for `serve`).
    #[arg(long)]
    pub db: Option<String>,
    /// Data directory (as for `serve`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Role: admin, operator, tenant, auditor or agent.
    #[arg(long, default_value = "admin")]
    pub role: String,
    /// The tenant, for a tenant token.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The node, for an agent token: it acts for that node only.
    #[arg(long)]
    pub node: Option<String>,
    /// A label for the token.
    #[arg(long, default_value = "created with gigawatt admin create-token")]
    pub name: String,
}

/// Options of `gigawatt admin replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The event log (as for `serve`).
    #[arg(long)]
    pub db: Option<String>,
    /// Data directory (as for `serve`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Start from the newest snapshot instead of the first record.
    #[arg(long)]
    pub use_snapshot: bool,
}

/// `$XDG_DATA_HOME/gigawatt`, else `~/.local/share/gigawatt`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("gigawatt");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/gigawatt"),
        None => PathBuf::from(".gigawatt"),
    }
}

fn db_url(db: Option<&str>, data_dir: Option<&Path>) -> anyhow::Result<String> {
    if let Some(url) = db {
        return Ok(url.to_string());
    }
    let dir = data_dir.map_or_else(default_data_dir, Path::to_path_buf);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    Ok(format!("sqlite://{}", dir.join("gigawatt.db").display()))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

fn init_tracing() {
    init_tracing_for("gigawatt_server=info");
}

/// Logs to stderr: `$GIGAWATT_LOG` if set, else warnings plus `extra` (`crate=level`).
pub fn init_tracing_for(extra: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GIGAWATT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,{extra}")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the control plane until SIGINT or SIGTERM.
pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    init_tracing();

    let fleet_path = bundled(&args.fleet.to_string_lossy());
    let fleet = gigawatt_fleet::load(&fleet_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let policy: PolicyKind = args.policy.parse().map_err(|e| anyhow::anyhow!("--policy: {e}"))?;
    let url = db_url(args.db.as_deref(), args.data_dir.as_deref())?;
    let durability = if args.durability == "normal" { Durability::Normal } else { Durability::Full };
    let keep_ended_ms = match args.keep_ended.as_str() {
        "forever" => None,
        d => Some(
            humantime::parse_duration(d).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).map_err(
                |e| anyhow::anyhow!("--keep-ended `{d}`: {e}; write a duration such as 24h, or `forever`"),
            )?,
        ),
    };
    let rt = runtime()?;
    rt.block_on(async {
        // A write past a file-size limit (`ulimit -f`) must fail like a full disk, with
        // an error the writer handles, not kill the server: SIGXFSZ's default action is
        // to end the process. Once tokio listens for a signal, it does so for the life
        // of the process.
        #[cfg(unix)]
        let _xfsz = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(nix::sys::signal::Signal::SIGXFSZ as i32))
            .context("taking over SIGXFSZ")?;
        let store = Store::open_with(&url, durability).await.with_context(|| format!("opening the event log {url}"))?;
        let started = std::time::Instant::now();
        let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
        let agents = AgentSettings {
            heartbeat_interval: args.heartbeat_interval,
            lost_after: args.lost_after.unwrap_or(3 * args.heartbeat_interval),
            grace: args.grace,
            max_grace: args.max_grace,
            telemetry_samples: args.telemetry_samples,
            logs_dir: Some(data_dir.join("logs")),
        };
        agents.validate().map_err(|e| anyhow::anyhow!(e))?;
        let open_files = gigawatt_server::listen::raise_open_files_limit();
        let fits = open_files.map_or(usize::MAX, |n| usize::try_from(n.saturating_sub(256)).unwrap_or(usize::MAX));
        let max_connections = args.max_connections.unwrap_or(4096.min(fits)).max(1);
        if max_connections > fits {
            eprintln!(
                "warning: --max-connections {max_connections} is above what the limit on open files ({}) leaves; raise `ulimit -n`",
                open_files.unwrap_or(0)
            );
        }
        let key_path = args.audit_key.clone().unwrap_or_else(|| crate::audit_key::default_path(&url, &data_dir));
        let signer = crate::audit_key::load_or_create(&key_path, &args.audit_origin)?;
        let audit = gigawatt_server::audit::AuditSettings {
            signer: std::sync::Arc::new(signer),
            every: args.checkpoint_every.max(1),
            interval: args.checkpoint_interval,
        };
        let config = ServerConfig {
            audit,
            engine: EngineConfig {
                fleet: fleet.clone(),
                policy,
                seed: args.seed,
                keep_ended_ms,
                require_agents: args.require_agents,
                budget_lead_ms: i64::try_from(args.budget_lead.as_millis()).unwrap_or(i64::MAX),
                pass_interval_ms: i64::try_from(args.pass_interval.as_millis()).unwrap_or(i64::MAX),
                age_after_s: args.age_after.as_secs(),
            },
            snapshot_every: args.snapshot_every,
            agents,
            power: gigawatt_server::PowerSettings {
                interval: args.power_interval,
                manager: gigawatt_power::manager::ManagerConfig {
                    margin: args.power_margin,
                    ..gigawatt_power::manager::ManagerConfig::default()
                },
            },
            connections: gigawatt_server::listen::ConnLimits {
                max_connections,
                header_read_timeout: args.header_read_timeout,
                ..gigawatt_server::listen::ConnLimits::default()
            },
            tls: match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => {
                    Some(gigawatt_server::listen::tls_acceptor(cert, key).map_err(|e| anyhow::anyhow!(e))?)
                }
                _ => None,
            },
            requests: gigawatt_server::http::limits::RequestLimits {
                request_timeout: args.request_timeout,
                api_seats: args.seats.max(1),
                agent_seats: args.seats.max(1),
                ..gigawatt_server::http::limits::RequestLimits::default()
            },
        };
        // Lead the log (a standby waits here, not listening) before taking traffic.
        let server = Server::start(store, config).await?;
        let listener =
            gigawatt_server::listen::bind(args.listen).with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
        let r = &server.report;
        let gpus: u64 = fleet.sites.iter().flat_map(|s| &s.racks).flat_map(|r| &r.nodes).map(|n| u64::from(n.gpu_count)).sum();
        eprintln!(
            "gigawatt control plane on {scheme}://{addr}\n  fleet   {} ({} sites, {gpus} GPUs), policy {}\n  log     {url}: {} records{}, {} live workloads, loaded in {:.2} s",
            fleet_path.display(),
            fleet.sites.len(),
            policy.as_str(),
            server.state.engine.read().await.view.seq,
            r.snapshot_seq.map(|s| format!(" (snapshot at {s} + {} replayed)", r.replayed)).unwrap_or_default(),
            r.restored,
            started.elapsed().as_secs_f64(),
        );
        if scheme == "http" && !addr.ip().is_loopback() {
            eprintln!(
                "warning: serving plain HTTP on {addr}, beyond this machine: bearer tokens would cross the network in clear text; \
                 give --tls-cert and --tls-key (plain HTTP is for loopback only)"
            );
        }
        // Issued only now that the server listens, so that a failed start leaves none
        // unshown; shown once (only its hash is kept).
        match &server.first_admin_token().await? {
            Some(token) if args.no_hints => eprintln!("admin token: {token}"),
            Some(token) => {
                eprintln!("admin token: {token}");
                eprintln!("  (shown once; only its hash is stored)\n");
                eprintln!("  export GIGAWATT_SERVER={scheme}://{addr}");
                eprintln!("  export GIGAWATT_TOKEN={token}");
                eprintln!("  gigawatt tenant create demo");
                eprintln!("  gigawatt submit examples/jobs/training-gang.toml --tenant demo && gigawatt ls");
            }
            None if args.no_hints => eprintln!("  (an existing log: no admin token printed)"),
            None => eprintln!(
                "  lost the admin token? gigawatt admin create-token --db {url}"
            ),
        }
        server.serve(listener, shutdown_signal()).await
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    eprintln!("shutting down: finishing requests in flight");
}

/// Runs an admin command.
pub fn admin(cmd: &AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::CreateToken(a) => create_token(a),
        AdminCommand::Replay(a) => replay(a),
    }
}

fn create_token(a: &CreateTokenArgs) -> anyhow::Result<()> {
    let role = Role::parse(&a.role)
        .with_context(|| format!("--role `{}`: use admin, operator, tenant, auditor or agent", a.role))?;
    match (role, &a.tenant) {
        (Role::Tenant, None) => bail!("--tenant: a tenant token needs its tenant"),
        (Role::Tenant, Some(_)) => {}
        (_, Some(_)) => bail!("--tenant: only a tenant token belongs to a tenant; leave it out"),
        (_, None) => {}
    }
    match (role, &a.node) {
        (Role::Agent, None) => bail!("--node: an agent token acts for exactly one node; name it"),
        (Role::Agent, Some(n))
            if n.is_empty() || n.chars().count() > 128 || n.chars().any(char::is_control) =>
        {
            bail!("--node: give the node's name from the fleet file")
        }
        (Role::Agent, Some(_)) | (_, None) => {}
        (_, Some(_)) => bail!("--node: only an agent token belongs to a node; leave it out"),
    }
    let url = db_url(a.db.as_deref(), a.data_dir.as_deref())?;
    runtime()?.block_on(async {
        let store = Store::open(&url).await.with_context(|| format!("opening the event log {url}"))?;
        for _ in 0..20 {
            let (view, _) = gigawatt_store::fold(&store, true).await?;
            if view.seq == 0 {
                bail!("the event log {url} is empty: start `gigawatt serve` once first; it prints the first admin token");
            }
            if let Some(t) = &a.tenant
                && !view.tenants.contains_key(t) {
                    bail!("--tenant: there is no tenant `{t}`");
                }
            let (secret, event) = gigawatt_server::auth::issue(
                role,
                &a.name,
                gigawatt_server::auth::Scope { tenant: a.tenant.clone(), node: a.node.clone(), join_expires_at: None },
                "gigawatt admin create-token (on the database)",
            )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let record =
                Record { seq: view.seq + 1, at_ms: gigawatt_server::now_ms(), tenant: a.tenant.clone(), actor: None, event };
            let LogEvent::TokenIssued { token_id, .. } = &record.event else { bail!("internal: not a token event") };
            let token_id = token_id.clone();
            match store.append(std::slice::from_ref(&record)).await {
                Ok(_) => {
                    crate::outln!("token id: {token_id}");
                    crate::outln!("{} token: {secret}", role.as_str());
                    return Ok(());
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        bail!("the event log kept moving; try again")
    })
}

fn replay(a: &ReplayArgs) -> anyhow::Result<()> {
    let url = db_url(a.db.as_deref(), a.data_dir.as_deref())?;
    // A replay reads a log; it must not create one where a path has a typo.
    if let Some(path) = url.strip_prefix("sqlite://").map(|p| p.split('?').next().unwrap_or(p))
        && !Path::new(path).exists()
    {
        bail!("there is no event log at {path}: `admin replay` reads an existing log and creates none");
    }
    runtime()?.block_on(async {
        let store = Store::open(&url).await.with_context(|| format!("opening the event log {url}"))?;
        let started = std::time::Instant::now();
        let (view, report) = gigawatt_store::fold(&store, a.use_snapshot).await?;
        if view.seq == 0 {
            bail!("the event log at {url} holds no records: nothing to replay");
        }
        let took = started.elapsed().as_secs_f64();
        crate::outln!("log position: {}", view.seq);
        crate::outln!("digest: {}", view.digest());
        eprintln!(
            "folded {} records{} in {took:.2} s: {} workloads ({} live), {} tenants, {} tokens",
            report.replayed,
            report.snapshot_seq.map(|s| format!(" after the snapshot at {s}")).unwrap_or_default(),
            view.workloads.len(),
            view.live(),
            view.tenants.len(),
            view.tokens.len()
        );
        Ok(())
    })
}
