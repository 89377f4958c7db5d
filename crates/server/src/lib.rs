//! The control plane: the scheduling core on the wall clock, behind a multi-tenant HTTP
//! API, on the event log.
//!
//! ```text
//!  HTTP (axum) ──► handlers ──► writer (one task) ──► Engine { View, Scheduler }
//!      ▲              │            │  group commit          ▲
//!      │              │            ▼                        │ rebuilt at start
//!      └── answers ◄──┴──── Store (SQLite WAL | PostgreSQL) ─┘ (snapshot + tail)
//! ```
//!
//! Reads take the engine's read lock; every change goes through the writer
//! ([`writer::execute`]), which commits before anyone is answered. See ARCHITECTURE.md.

pub mod agents;
pub mod audit;
pub mod auth;
pub mod convert;
pub mod engine;
pub mod error;
pub mod http;
pub mod listen;
pub mod metrics;
pub mod openapi;
pub mod power;
pub mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gigawatt_store::{Record, Store};
use tokio::sync::{RwLock, broadcast, mpsc, oneshot};

use crate::auth::Caller;
use crate::engine::{Engine, EngineConfig};

pub use engine::LoadReport;

/// Unix milliseconds on the wall clock: the only clock the control plane reads.
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How the server runs.
#[derive(Clone)]
pub struct ServerConfig {
    /// Engine settings.
    pub engine: EngineConfig,
    /// Take a snapshot after this many new log records.
    pub snapshot_every: u64,
    /// Node agents: intervals, telemetry window, where task output is kept.
    pub agents: agents::AgentSettings,
    /// The power manager of oversubscribed sites: its control interval and behaviour.
    pub power: PowerSettings,
    /// Bounds on connections (how many, how long to send headers).
    pub connections: listen::ConnLimits,
    /// Bounds on requests (deadline, seats shared fairly between tokens).
    pub requests: http::limits::RequestLimits,
    /// HTTPS with the operator's certificate, or plain HTTP when `None`.
    pub tls: Option<listen::Tls>,
    /// The key the log's checkpoints are signed with, and how often.
    pub audit: audit::AuditSettings,
}

/// How the live power manager runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerSettings {
    /// Time between two plans.
    pub interval: Duration,
    /// The manager's behaviour.
    pub manager: gigawatt_power::manager::ManagerConfig,
}

impl Default for PowerSettings {
    /// A plan every 5 s (the default heartbeat interval: fresh telemetry for each plan).
    fn default() -> PowerSettings {
        PowerSettings {
            interval: Duration::from_secs(5),
            manager: gigawatt_power::manager::ManagerConfig::default(),
        }
    }
}

/// Everything the handlers share.
pub struct AppState {
    /// The engine. Read it freely; change it only through [`writer::execute`].
    pub engine: RwLock<Engine>,
    /// The log.
    pub store: Store,
    /// Engine settings (for reloads).
    pub config: EngineConfig,
    /// Committed records, for event streams.
    pub events: broadcast::Sender<Arc<Record>>,
    /// Counters and histograms.
    pub metrics: metrics::Metrics,
    /// The agents' live state (heartbeats, telemetry, live task copies).
    pub agents: agents::registry::Registry,
    /// Task output shipped by agents, when kept.
    pub logs: Option<agents::logs::Logs>,
    /// The live power manager's limits, admissions and figures.
    pub power: power::PowerControl,
    /// The log's Merkle tree and signed checkpoints.
    pub audit: tokio::sync::Mutex<audit::AuditLog>,
    /// Seats for handlers, shared fairly between tokens (`http::limits`).
    pub admission: Arc<http::limits::Admission>,
    /// What the listener refused and holds open.
    pub connections: Arc<listen::ConnCounters>,
    conn_limits: listen::ConnLimits,
    tls: Option<listen::Tls>,
    writer: mpsc::Sender<writer::Msg>,
    /// Live tokens by hash, refreshed after each commit, so that authentication never
    /// waits for a commit in flight.
    tokens: std::sync::RwLock<HashMap<String, Caller>>,
    /// Ids of the live tokens, so that long-lived streams can stop when theirs is revoked.
    live_token_ids: std::sync::RwLock<std::collections::HashSet<String>>,
    last_catch_up: Mutex<Option<Instant>>,
    ready: AtomicBool,
    /// Set while the log cannot be written (see `writer::WriteFault`).
    write_fault: Mutex<Option<writer::WriteFault>>,
    snapshot_every: u64,
    last_snapshot: AtomicU64,
}

impl AppState {
    /// The caller a token hash belongs to.
    pub async fn lookup_token(&self, sha256: &str) -> Option<Caller> {
        self.tokens.read().ok()?.get(sha256).cloned()
    }

    /// Whether the token with this id is still live (not revoked).
    #[must_use]
    pub fn token_is_live(&self, token_id: &str) -> bool {
        self.live_token_ids.read().is_ok_and(|ids| ids.contains(token_id))
    }

    /// Asks the writer to load records other processes appended, at most once a second.
    /// Returns whether anything new was loaded.
    pub async fn catch_up(&self) -> bool {
        {
            let Ok(mut last) = self.last_catch_up.lock() else { return false };
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let (tx, rx) = oneshot::channel();
        if self.writer.send(writer::Msg::CatchUp(tx)).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    fn refresh_tokens(&self, engine: &Engine) {
        let map = engine
            .view
            .tokens
            .iter()
            .filter(|(_, t)| !t.revoked)
            .map(|(id, t)| {
                let caller = Caller {
                    token_id: id.clone(),
                    name: t.name.clone(),
                    role: t.role,
                    tenant: t.tenant.clone(),
                    node: t.node.clone(),
                    join_expires_at: t.join_expires_at,
                    source: None,
                };
                (t.sha256.clone(), caller)
            })
            .collect();
        let ids = engine.view.tokens.iter().filter(|(_, t)| !t.revoked).map(|(id, _)| id.clone()).collect();
        if let Ok(mut tokens) = self.tokens.write() {
            *tokens = map;
        }
        if let Ok(mut live) = self.live_token_ids.write() {
            *live = ids;
        }
    }

    fn after_commit(&self, engine: &Engine, records: &[Record]) {
        if records.iter().any(|r| matches!(r.event.kind(), "token-issued" | "token-revoked")) {
            self.refresh_tokens(engine);
        }
    }

    fn snapshot_due(&self, engine: &Engine) -> Option<u64> {
        let seq = engine.view.seq;
        (seq >= self.last_snapshot.load(Ordering::Relaxed) + self.snapshot_every).then_some(seq)
    }

    async fn snapshot(&self, engine: &Engine, seq: u64) {
        let started = Instant::now();
        match serde_json::to_vec(&engine.view) {
            Ok(bytes) => {
                let size = bytes.len();
                match self.store.save_snapshot(seq, now_ms(), &bytes).await {
                    Ok(()) => {
                        self.last_snapshot.store(seq, Ordering::Relaxed);
                        tracing::info!(
                            seq,
                            bytes = size,
                            ms = started.elapsed().as_millis() as u64,
                            "snapshot saved"
                        );
                    }
                    Err(e) => tracing::warn!("snapshot at {seq} not saved: {e}"),
                }
            }
            Err(e) => tracing::warn!("snapshot at {seq} not serialised: {e}"),
        }
    }

    /// Whether the server is ready for traffic (its state is loaded and the log writable).
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Why the log cannot be written now, if it cannot.
    #[must_use]
    pub fn write_fault(&self) -> Option<writer::WriteFault> {
        self.write_fault.lock().ok().and_then(|f| f.clone())
    }

    /// A commit failed: refuse commands until the next attempt is due.
    fn fault_writes(&self, reason: String) {
        let Ok(mut f) = self.write_fault.lock() else { return };
        let now = Instant::now();
        let failures = f.as_ref().map_or(1, |f| f.failures + 1);
        if f.is_none() {
            tracing::error!("the event log cannot be written: {reason}; refusing writes until it can");
        }
        *f = Some(writer::WriteFault {
            reason,
            since: f.as_ref().map_or(now, |f| f.since),
            retry_at: now + writer::WriteFault::backoff(failures),
            failures,
        });
    }

    /// This server does not lead the log now: refuse every write until it does again.
    fn stand_by(&self, reason: String) {
        let Ok(mut f) = self.write_fault.lock() else { return };
        if f.as_ref().is_none_or(|f| f.reason != reason) {
            tracing::warn!("{reason}");
        }
        let now = Instant::now();
        *f = Some(writer::WriteFault {
            reason,
            since: f.as_ref().map_or(now, |f| f.since),
            retry_at: now + Duration::from_secs(86_400),
            failures: f.as_ref().map_or(0, |f| f.failures),
        });
    }

    /// A commit went through: the log is writable again.
    fn writes_healed(&self) {
        let Ok(mut f) = self.write_fault.lock() else { return };
        if let Some(was) = f.take() {
            tracing::info!(
                after_ms = was.since.elapsed().as_millis() as u64,
                failures = was.failures,
                "the event log is writable again"
            );
        }
    }

    fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

/// A control plane that has loaded its state and is ready to serve.
pub struct Server {
    /// Shared state (handlers, tests).
    pub state: Arc<AppState>,
    /// What loading found.
    pub report: LoadReport,
    writer: tokio::task::JoinHandle<()>,
    watchdog: tokio::task::JoinHandle<()>,
    power: tokio::task::JoinHandle<()>,
    leadership: gigawatt_store::Leadership,
}

impl Server {
    /// Becomes the log's leader (waiting while another server leads it: see
    /// [`gigawatt_store::Leadership`]), rebuilds the state from the log and starts the
    /// writer.
    pub async fn start(store: Store, config: ServerConfig) -> anyhow::Result<Server> {
        let leadership = store.lead(|why| tracing::warn!("standby: {why}")).await?;
        let (engine, report) = engine::open(&store, &config.engine, now_ms()).await?;
        // A log changed after it was signed is not served.
        let audit =
            audit::AuditLog::open(&store, config.audit.clone(), report.snapshot_seq.unwrap_or(0)).await?;
        let (tx, rx) = mpsc::channel(8 * writer::MAX_BATCH);
        let (events, _) = broadcast::channel(16_384);
        let seq = engine.view.seq;
        config.agents.validate().map_err(|e| anyhow::anyhow!(e))?;
        let live_agents: Vec<(String, u64)> = engine
            .view
            .agents
            .iter()
            .filter(|(_, a)| a.lost.is_none())
            .map(|(n, a)| (n.clone(), a.generation))
            .collect();
        let logs = config.agents.logs_dir.clone().map(agents::logs::Logs::new);
        let state = Arc::new(AppState {
            engine: RwLock::new(engine),
            store,
            config: config.engine,
            events,
            metrics: metrics::Metrics::default(),
            agents: agents::registry::Registry::new(config.agents, live_agents),
            logs,
            power: power::PowerControl::new(config.power.manager),
            audit: tokio::sync::Mutex::new(audit),
            admission: Arc::new(http::limits::Admission::new(config.requests)),
            connections: Arc::new(listen::ConnCounters::default()),
            conn_limits: config.connections,
            tls: config.tls,
            writer: tx,
            tokens: std::sync::RwLock::new(HashMap::new()),
            live_token_ids: std::sync::RwLock::new(std::collections::HashSet::new()),
            last_catch_up: Mutex::new(None),
            ready: AtomicBool::new(true),
            write_fault: Mutex::new(None),
            snapshot_every: config.snapshot_every.max(1),
            last_snapshot: AtomicU64::new(report.snapshot_seq.unwrap_or(0)),
        });
        state.refresh_tokens(&*state.engine.read().await);
        if seq >= report.snapshot_seq.unwrap_or(0) + state.snapshot_every {
            state.snapshot(&*state.engine.read().await, seq).await;
        }
        let writer = tokio::spawn(writer::run(state.clone(), rx));
        let watchdog = tokio::spawn(agents::watchdog(state.clone()));
        let power = tokio::spawn(power::run(state.clone(), config.power.interval));
        Ok(Server { state, report, writer, watchdog, power, leadership })
    }

    /// Issues the log's first admin token if it never had one, and returns its secret
    /// to show once. Call it once the server listens: a start that fails before (a
    /// busy port) then issues nothing, and the next start shows a token.
    ///
    /// # Errors
    /// The token could not be written to the log.
    pub async fn first_admin_token(&self) -> anyhow::Result<Option<String>> {
        writer::execute(&self.state, |engine, now| engine.issue_first_admin(now))
            .await
            .map_err(|e| anyhow::anyhow!("cannot write the first admin token: {e}"))
    }

    /// Serves HTTP on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = http::router(self.state.clone());
        // Leadership is checked every second. Lost (the PostgreSQL connection holding the
        // lock died), writes stop at once and the server takes the lock again over a new
        // connection if nobody else holds it, then loads whatever another server may have
        // written meanwhile; if another server took it, this one stands by, serving reads
        // and refusing writes, until it can lead again.
        let mut leadership = self.leadership;
        let state = self.state.clone();
        let watchdog =
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if leadership.holds().await {
                        continue;
                    }
                    state.stand_by(
                        "lost the database connection that holds the log's lock; taking it again".into(),
                    );
                    loop {
                        match leadership.regain(&state.store).await {
                            Ok(true) => break,
                            Ok(false) => state
                                .stand_by("another gigawatt server leads the log now; standing by".into()),
                            Err(e) => state
                                .stand_by(format!("cannot reach the log's database to lead it again: {e}")),
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    let (tx, rx) = oneshot::channel();
                    if state.writer.send(writer::Msg::CatchUp(tx)).await.is_err() {
                        return;
                    }
                    let _ = rx.await;
                    state.writes_healed();
                    tracing::info!("leading the event log again");
                }
            });
        let (limits, counters) = (self.state.conn_limits, self.state.connections.clone());
        listen::serve(listener, app, limits, counters, self.state.tls.clone(), shutdown).await?;
        watchdog.abort();
        self.watchdog.abort();
        self.power.abort();
        // Graceful shutdown waited for every request, so every command was answered:
        // nothing is left in the writer's queue.
        self.writer.abort();
        Ok(())
    }
}
