//! The agent's main loop: register, heartbeat, converge, ship output, fence.
//!
//! One loop, one owner of all state: it waits for the next thing to do (a heartbeat
//! due, a task that ended, output to ship, a fence deadline, the guard dying, shutdown)
//! and does it. Every request has a timeout well under `fence_after_ms`, so the loop is
//! never held long enough to miss a self-fence.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use gigawatt_api::agent::{Desired, GpuInventory, Heartbeat, NodeTelemetry, RegisterAgent, Registered};
use gigawatt_units::Watts;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::backend::GpuBackend;
use crate::client::{CallError, Client};
use crate::guard::GuardHandle;
use crate::logs::ShipContext;
use crate::process::Exit;
use crate::supervisor::Supervisor;
use crate::{AgentConfig, AgentError};

/// Grace between SIGTERM and SIGKILL until the control plane says otherwise.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(10);
const LOG_INTERVAL: Duration = Duration::from_millis(500);
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Log chunks per shipping round (64 KiB each).
const LOG_BUDGET: usize = 32;
/// A guard that ends sooner than this after its start died "at once"…
const GUARD_MIN_LIFE: Duration = Duration::from_secs(1);
/// …and after this many such deaths in a row, the agent stops restarting it.
const GUARD_QUICK_DEATHS: u32 = 5;

/// What woke the loop.
enum Wake {
    Shutdown,
    Exit(Exit),
    GuardDied(String),
    Fence,
    Register,
    Heartbeat,
    Logs,
    /// The control plane says the node's assignments changed.
    Changed,
}

/// Long-polls `GET /v1/agent/changes` and signals `wake` whenever the node's
/// assignments or power limits change, so that the agent sends a heartbeat at once:
/// work placed on this node starts, and work taken from it stops, without waiting for
/// the next interval. Ends when the agent drops `session`.
async fn watch_changes(
    client: Client,
    node: String,
    mut session: watch::Receiver<Option<u64>>,
    wake: UnboundedSender<()>,
) {
    let mut seen: Option<u64> = None;
    loop {
        let Some(generation) = *session.borrow_and_update() else {
            if session.changed().await.is_err() {
                return;
            }
            seen = None;
            continue;
        };
        tokio::select! {
            answer = client.changes(&node, generation, seen, Duration::from_secs(40)) => match answer {
                Ok(c) => {
                    tracing::debug!(version = c.version, ?seen, "change poll answered");
                    if seen.is_some_and(|s| s != c.version) && wake.send(()).is_err() {
                        return;
                    }
                    seen = Some(c.version);
                }
                Err(e) => {
                    tracing::debug!("change poll failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            changed = session.changed() => {
                if changed.is_err() {
                    return;
                }
                seen = None;
            }
        }
    }
}

/// The agent's state between two wake-ups.
pub(crate) struct Agent {
    pub config: AgentConfig,
    pub client: Client,
    pub backend: Box<dyn GpuBackend>,
    pub inventory: Vec<GpuInventory>,
    pub supervisor: Supervisor,
    pub exits: UnboundedReceiver<Exit>,
    pub guard: Option<GuardHandle>,
    guard_quick_deaths: u32,
    session: Option<Registered>,
    ever_registered: bool,
    backoff: Duration,
    next_register: Instant,
    next_heartbeat: Instant,
    heartbeat_now: bool,
    next_logs: Instant,
    /// When the last answered heartbeat (or registration) was sent.
    last_answer: Option<Instant>,
    fence_after: Duration,
    self_fenced: bool,
    grace: Duration,
    /// Power limit last applied per GPU (`None`: the default).
    applied: BTreeMap<u16, Option<u64>>,
    /// The generation held, for the change watcher.
    session_tx: watch::Sender<Option<u64>>,
    /// Signals from the change watcher.
    changed: UnboundedReceiver<()>,
}

impl Agent {
    pub fn new(
        config: AgentConfig,
        client: Client,
        backend: Box<dyn GpuBackend>,
        inventory: Vec<GpuInventory>,
        supervisor: Supervisor,
        exits: UnboundedReceiver<Exit>,
        guard: Option<GuardHandle>,
    ) -> Agent {
        let applied = inventory
            .iter()
            .map(|g| (g.index, (g.power_limit_w != g.default_power_limit_w).then_some(g.power_limit_w)))
            .collect();
        let now = Instant::now();
        let (session_tx, session_rx) = watch::channel(None);
        let (wake_tx, changed) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(watch_changes(client.clone(), config.node.clone(), session_rx, wake_tx));
        Agent {
            config,
            client,
            backend,
            inventory,
            supervisor,
            exits,
            guard,
            guard_quick_deaths: 0,
            session: None,
            ever_registered: false,
            backoff: BACKOFF_MIN,
            next_register: now,
            next_heartbeat: now,
            heartbeat_now: false,
            next_logs: now,
            last_answer: None,
            fence_after: Duration::from_secs(30),
            self_fenced: false,
            grace: DEFAULT_GRACE,
            applied,
            session_tx,
            changed,
        }
    }

    /// Runs until `shutdown` resolves (then `Ok`) or the first registration is refused.
    pub async fn main_loop(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        tokio::pin!(shutdown);
        loop {
            let fence_at = self
                .last_answer
                .filter(|_| !self.self_fenced && self.supervisor.has_unfenced())
                .map(|t| t + self.fence_after);
            let registered = self.session.is_some();
            let heartbeat_at = if self.heartbeat_now { Instant::now() } else { self.next_heartbeat };
            let guard = self.guard.as_mut();
            let wake = tokio::select! {
                biased;
                () = &mut shutdown => Wake::Shutdown,
                Some(exit) = self.exits.recv() => Wake::Exit(exit),
                status = async { match guard { Some(g) => g.exited().await, None => std::future::pending().await } } => {
                    Wake::GuardDied(status)
                }
                () = sleep_until(fence_at.unwrap_or_else(Instant::now)), if fence_at.is_some() => Wake::Fence,
                () = sleep_until(self.next_register), if !registered => Wake::Register,
                () = sleep_until(heartbeat_at), if registered => Wake::Heartbeat,
                () = sleep_until(self.next_logs), if registered => Wake::Logs,
                Some(()) = self.changed.recv() => Wake::Changed,
            };
            match wake {
                Wake::Shutdown => return Ok(()),
                Wake::Exit(exit) => {
                    let mut ended = self.supervisor.on_exit(exit);
                    while let Ok(exit) = self.exits.try_recv() {
                        ended |= self.supervisor.on_exit(exit);
                    }
                    self.heartbeat_now |= ended;
                }
                Wake::GuardDied(status) => self.restart_guard(&status).await,
                Wake::Fence => self.self_fence(),
                Wake::Register => self.register().await?,
                Wake::Heartbeat => self.heartbeat().await,
                Wake::Logs => {
                    self.next_logs = Instant::now() + LOG_INTERVAL;
                    self.ship_logs(false).await;
                }
                Wake::Changed => self.heartbeat_now = registered,
            }
            let generation = self.session.as_ref().map(|s| s.generation);
            self.session_tx.send_if_modified(|g| {
                let changed = *g != generation;
                *g = generation;
                changed
            });
            self.forward_guard_updates().await;
        }
    }

    /// Timeout of heartbeat and log requests: short enough never to delay a self-fence
    /// by much.
    fn request_timeout(&self) -> Duration {
        (self.fence_after / 4).clamp(Duration::from_millis(250), Duration::from_secs(10))
    }

    async fn register(&mut self) -> Result<(), AgentError> {
        let gpus = self.backend.inventory().unwrap_or_else(|_| self.inventory.clone());
        let body = RegisterAgent {
            node: self.config.node.clone(),
            backend: self.backend.kind().to_owned(),
            address: self.config.address.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            gpus,
        };
        let sent = Instant::now();
        // Once tasks may run, no request may hold the loop past a self-fence.
        let timeout = if self.ever_registered { self.request_timeout() } else { REGISTER_TIMEOUT };
        match self.client.register(&body, timeout).await {
            Ok(r) => {
                tracing::info!(node = %r.node, generation = r.generation, heartbeat_ms = r.heartbeat_interval_ms,
                    fence_after_ms = r.fence_after_ms, backend = body.backend, gpus = body.gpus.len(),
                    "registered with the control plane");
                self.fence_after = Duration::from_millis(r.fence_after_ms.max(100));
                self.session = Some(r);
                self.ever_registered = true;
                self.backoff = BACKOFF_MIN;
                self.last_answer = Some(sent);
                self.heartbeat_now = true;
            }
            Err(CallError::Status { status, body })
                if (400..500).contains(&status) && !self.ever_registered =>
            {
                return Err(AgentError::Refused {
                    node: self.config.node.clone(),
                    status,
                    code: body.code,
                    message: body.message,
                });
            }
            Err(e) => {
                if e.is_refusal() {
                    tracing::error!(node = %self.config.node, "the control plane refuses registration: {e}; retrying in {:?}", self.backoff);
                } else {
                    tracing::warn!(
                        "cannot register with the control plane: {e}; retrying in {:?}",
                        self.backoff
                    );
                }
                self.next_register = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
        Ok(())
    }

    async fn heartbeat(&mut self) {
        let Some(session) = self.session.clone() else { return };
        self.heartbeat_now = false;
        self.next_heartbeat = Instant::now() + Duration::from_millis(session.heartbeat_interval_ms.max(50));
        // Ended tasks' output first, so that their end is reported after all of it.
        if !self.ship_logs(true).await {
            return; // Fenced.
        }
        let telemetry = match self.backend.sample(&self.supervisor.loads()) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("cannot measure the GPUs: {e}");
                NodeTelemetry::default()
            }
        };
        self.supervisor.attribute_energy(&telemetry);
        let body = Heartbeat {
            node: self.config.node.clone(),
            generation: session.generation,
            telemetry,
            tasks: self.supervisor.reports(),
        };
        let sent = Instant::now();
        tracing::debug!(tasks = body.tasks.len(), "heartbeat");
        match self.client.heartbeat(&body, self.request_timeout()).await {
            Ok(desired) => {
                self.last_answer = Some(sent);
                if self.self_fenced {
                    tracing::info!("the control plane answers again");
                    self.self_fenced = false;
                }
                self.apply(&desired);
            }
            Err(e) if e.is_stale() => self.fenced_by_control_plane(&e),
            Err(e) if matches!(e.status(), Some(401 | 403 | 404)) => {
                tracing::error!("the control plane refuses this agent's heartbeats: {e}; registering again");
                self.session = None;
                self.next_register = Instant::now() + self.backoff;
            }
            Err(e) => tracing::warn!("heartbeat failed: {e}"),
        }
    }

    fn apply(&mut self, desired: &Desired) {
        self.grace = Duration::from_millis(desired.grace_ms);
        for g in &self.inventory {
            let want = desired.power_limits_w.get(&g.index).copied();
            if self.applied.get(&g.index) == Some(&want) {
                continue;
            }
            match self.backend.set_power_limit(g.index, want.map(Watts)) {
                Ok(now) => tracing::info!(gpu = g.index, "power limit set to {now}"),
                Err(e) => tracing::error!(gpu = g.index, "cannot set the power limit: {e}"),
            }
            self.applied.insert(g.index, want);
        }
        self.heartbeat_now |= self.supervisor.converge(desired, self.grace);
    }

    /// Ships new output (of ended tasks only, or of all); returns false when that found
    /// the agent fenced. Bounded by one request timeout in all, so that heartbeats are
    /// never held up for long.
    async fn ship_logs(&mut self, ended_only: bool) -> bool {
        let Some(session) = &self.session else { return true };
        let timeout = self.request_timeout();
        let cx = ShipContext {
            client: &self.client,
            node: &self.config.node,
            generation: session.generation,
            timeout,
        };
        let shipping = self.supervisor.ship_logs(&cx, ended_only, LOG_BUDGET);
        let result = tokio::time::timeout(timeout, shipping).await;
        match result {
            Ok(Ok(completed)) => self.heartbeat_now |= completed,
            Ok(Err(e)) if e.is_stale() => {
                self.fenced_by_control_plane(&e);
                return false;
            }
            Ok(Err(e)) => tracing::warn!("cannot ship task output: {e}"),
            Err(_) => tracing::warn!("shipping task output timed out; continuing later"),
        }
        true
    }

    fn fenced_by_control_plane(&mut self, e: &CallError) {
        let killed = self.supervisor.fence_and_forget();
        tracing::error!(killed, "fenced by the control plane ({e}): killed every task; registering again");
        self.session = None;
        self.backoff = BACKOFF_MIN;
        self.next_register = Instant::now();
    }

    fn self_fence(&mut self) {
        let ms = self.fence_after.as_millis();
        let secs = if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{:.1}s", ms as f64 / 1e3)
        };
        let message = format!("self-fenced: no answer from the control plane for {secs}");
        let killed = self.supervisor.self_fence(&message);
        tracing::error!(killed, "{message}; killed every task");
        self.self_fenced = true;
    }

    async fn restart_guard(&mut self, status: &str) {
        let Some(g) = self.guard.as_mut() else { return };
        // A guard that dies right after its start will not do better the next time.
        self.guard_quick_deaths = if g.age() < GUARD_MIN_LIFE { self.guard_quick_deaths + 1 } else { 0 };
        if self.guard_quick_deaths > GUARD_QUICK_DEATHS {
            tracing::error!(
                "the guard process keeps ending at once ({status}); running without one: \
                tasks will outlive a crash of this agent"
            );
            self.guard = None;
            return;
        }
        tracing::error!("the guard process ended unexpectedly ({status}); starting a new one");
        if let Err(e) = g.restart(self.supervisor.live_groups()).await {
            tracing::error!(
                "cannot restart the guard process: {e}; tasks will outlive a crash of this agent"
            );
            self.guard = None;
        }
    }

    async fn forward_guard_updates(&mut self) {
        for (sign, pgid) in self.supervisor.take_guard_updates() {
            if let Some(g) = self.guard.as_mut() {
                g.send(sign, pgid).await;
            }
        }
    }

    /// Stops every task (SIGTERM, grace, SIGKILL), ships what output it can, and
    /// releases the guard.
    pub async fn wind_down(mut self) {
        if self.supervisor.alive() > 0 {
            tracing::info!(tasks = self.supervisor.alive(), "stopping every task");
        }
        self.supervisor.stop_all(self.grace);
        let deadline = Instant::now() + self.grace + Duration::from_secs(5);
        while self.supervisor.alive() > 0 {
            tokio::select! {
                Some(exit) = self.exits.recv() => { self.supervisor.on_exit(exit); }
                () = sleep_until(deadline) => {
                    tracing::error!("some task processes did not end");
                    break;
                }
            }
            self.forward_guard_updates().await;
        }
        if self.session.is_some() {
            self.ship_logs(false).await;
        }
        if let Some(g) = self.guard.take() {
            g.close().await;
        }
    }
}
