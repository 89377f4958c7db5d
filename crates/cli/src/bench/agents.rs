//! The node-agent load generator of `gigawatt bench agents`: one process plays a whole
//! fleet of node agents against one control plane, to measure what their heartbeats
//! cost it.
//!
//! **What is measured.** Every simulated agent registers its node (the inventory the
//! fleet file describes) and then sends a heartbeat every `--interval`, as
//! `gigawatt agent` does: telemetry of each GPU and a report of every task it was told
//! to run. The answer (the tasks the node should run, its power limits) is read and
//! acted upon as a real agent would: new assignments are reported running in the next
//! heartbeats (with a made-up pid and a growing energy counter), tasks the answer no
//! longer names are dropped, and a `409 stale-generation` makes the agent register
//! again. Each agent speaks with its own node's token (role `agent`, bound to the node),
//! which the generator issues first with the admin token (`POST /v1/tokens`, before
//! anything is timed). One-GPU jobs are submitted first (`--jobs`), so that the
//! answers carry real assignments and the first reports of running tasks are written to
//! the log, as in production. Over the `--duration` window after `--warmup`, the report
//! gives the heartbeats sent and answered, the errors by status, the latency
//! percentiles, and the CPU time of the server (when this command spawned it), of the
//! generator and of the whole machine.
//!
//! **Open loop.** Agent `i` of `n` sends its heartbeats at `start + i × interval / n +
//! k × interval`, whether or not earlier ones were answered: 25,000 agents every 5 s are
//! one heartbeat every 200 µs, evenly spread, as real agents (which start at random
//! times) are on average. Latency runs from when a heartbeat was *due* to when its whole
//! answer was read, so a server that falls behind cannot hide it by slowing the
//! generator down (no "coordinated omission", see `load.rs`). At most `--connections`
//! requests are in flight; waiting for one counts in the latency. When the generator
//! itself falls behind its schedule (its scheduler woke late), the report says how
//! often.
//!
//! **One process plays all agents.** Spawning 25,000 `gigawatt agent` processes would
//! measure the operating system, not the control plane: here a single scheduler task
//! sends every heartbeat over one pool of keep-alive connections. The server sees the
//! same requests (same routes, bodies and tokens) but from a few hundred connections
//! rather than 25,000; connection handling is therefore cheaper than in production
//! (where a reverse proxy usually pools them anyway).
//!
//! **Same machine.** The generator and the server share the machine's CPUs: the
//! generator's own CPU time is reported so that what is left for the server is known,
//! and a latency figure taken on a loaded small machine is an upper bound.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gigawatt_api::{
    CreateToken, Desired, GpuInventory, GpuTelemetry, Heartbeat, NodeTelemetry, RegisterAgent, Registered,
    Role, TaskReport, TaskState, TokenCreated,
};
use gigawatt_fleet::GpuCatalog;
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};

use super::load::{Latency, latency};
use super::procfs;

/// A scheduler that wakes this long after a heartbeat was due counts it as a late send
/// (the timer's own resolution is 1 ms).
const LATE: Duration = Duration::from_millis(5);

/// Status recorded for a due heartbeat that was not sent: its agent was not registered.
const NOT_REGISTERED: u16 = 1;

/// Agent tokens being issued at most at once (before anything is measured).
const TOKEN_CONCURRENCY: usize = 32;

/// **Assumption**, as the simulated GPUs of `gigawatt agent`: the share of its time a
/// task keeps its GPUs busy.
const ACTIVITY: f64 = 0.9;

/// What to play, against what, for how long.
#[derive(Debug, Clone)]
pub struct AgentsSpec {
    /// The server's base URL.
    pub url: String,
    /// An admin token: it issues each simulated node its own agent token, creates the
    /// tenant and submits the jobs.
    pub admin_token: String,
    /// The tenant of the jobs.
    pub tenant: String,
    /// The fleet file the server runs.
    pub fleet: PathBuf,
    /// Agents to play: the first GPU nodes of the fleet.
    pub agents: usize,
    /// Between two heartbeats of one agent.
    pub interval: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Heartbeats before measuring (after the jobs were submitted), not counted.
    pub warmup: Duration,
    /// One-GPU jobs to submit after registration.
    pub jobs: u64,
    /// Heartbeats in flight at most.
    pub connections: usize,
    /// Registrations and submissions in flight at most.
    pub setup_connections: usize,
    /// Seed of the telemetry jitter and the GPU UUIDs.
    pub seed: u64,
    /// Makes idempotency keys unique across runs.
    pub run_id: String,
    /// The server's process id, when known (for its CPU time and memory).
    pub server_pid: Option<u32>,
    /// Print progress on stderr.
    pub progress: bool,
}

/// How the registrations went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RegistrationReport {
    /// Agents registered.
    pub registered: u64,
    /// Agents refused, by status (`0` = no answer).
    pub failed: BTreeMap<String, u64>,
    /// The first refusal's answer.
    pub first_error: Option<String>,
    /// From the first request to the last answer, s.
    pub took_s: f64,
    /// Registrations per second.
    pub per_s: f64,
    /// The heartbeat interval the server asked for, ms.
    pub heartbeat_interval_ms: Option<u64>,
    /// After this long without a heartbeat the server declares a node lost, ms.
    pub lost_after_ms: Option<u64>,
}

/// How the job submissions went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobsReport {
    /// Submissions sent.
    pub submitted: u64,
    /// Answered 201.
    pub created: u64,
    /// Other answers, by status (`0` = no answer).
    pub failed: BTreeMap<String, u64>,
    /// The first refusal's answer.
    pub first_error: Option<String>,
    /// From the first request to the last answer, s.
    pub took_s: f64,
}

/// What `bench agents` measured.
#[derive(Debug, Clone, Serialize)]
pub struct AgentsReport {
    /// The server.
    pub server: String,
    /// The fleet file.
    pub fleet: String,
    /// Agents played.
    pub agents: usize,
    /// Their GPUs.
    pub gpus: u64,
    /// Between two heartbeats of one agent, ms.
    pub interval_ms: u64,
    /// Heartbeats per second offered (agents / interval).
    pub offered_per_s: f64,
    /// Heartbeats in flight at most.
    pub connections: usize,
    /// The registrations.
    pub registration: RegistrationReport,
    /// The job submissions.
    pub jobs: JobsReport,
    /// Length of the measured window, s.
    pub window_s: f64,
    /// Heartbeats due in the window and sent.
    pub sent: u64,
    /// Of which answered 200.
    pub ok: u64,
    /// Of which answered otherwise, by status (`0` = no answer: connection error or
    /// 30 s timeout).
    pub errors: BTreeMap<String, u64>,
    /// Heartbeats due in the window but not sent: their agent was not registered
    /// (refused, or registering again after a `409`).
    pub not_sent: u64,
    /// 200 answers that arrived in the window, per second.
    pub answered_per_s: f64,
    /// Latency of the heartbeats due in the window, from due time to the end of the
    /// answer.
    pub latency: Latency,
    /// Heartbeats due in the window that the generator's scheduler sent more than 5 ms
    /// late (the generator fell behind; their latency includes the delay).
    pub late_sends: u64,
    /// The scheduler's largest delay in the window, ms.
    pub max_send_lag_ms: f64,
    /// Heartbeats due in the window that waited for a free connection (all
    /// `connections` busy).
    pub waited_for_connection: u64,
    /// Agents that registered again after a `409 stale-generation`, whole run.
    pub reregistrations: u64,
    /// Heartbeats sent in the whole run, warm-up and set-up included.
    pub total_heartbeats: u64,
    /// Tasks the simulated agents report running at the end.
    pub tasks_running: u64,
    /// CPU time the server used during the window, s (spawned servers only).
    pub server_cpu_s: Option<f64>,
    /// The same as cores busy on average (1.0 = one core all the time).
    pub server_cores: Option<f64>,
    /// CPU time this generator used during the window, s.
    pub generator_cpu_s: Option<f64>,
    /// CPU time of every process on the machine during the window, s.
    pub machine_cpu_s: Option<f64>,
    /// The server's memory at the end (spawned servers only).
    pub server_memory: Option<procfs::Memory>,
}

/// One simulated node.
struct Agent {
    node: String,
    /// This node's own token (role `agent`, bound to `node`).
    token: String,
    model: Option<String>,
    gpus: u16,
    tdp: u64,
    idle: u64,
    min_limit: u64,
    memory_mib: u64,
    uuids: Vec<String>,
    state: Mutex<AgentState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not registered yet (the set-up phase is on it).
    Waiting,
    /// A registration is in flight.
    Registering,
    /// Registered under this generation.
    Registered(u64),
    /// Refused with `409`: must register again.
    Fenced,
    /// Registration was refused: this agent stays silent.
    Refused,
}

struct AgentState {
    phase: Phase,
    rng: u64,
    energy_j: Vec<f64>,
    limits: BTreeMap<u16, u64>,
    tasks: Vec<Task>,
}

/// A task the agent was told to run (and pretends it does).
struct Task {
    workload: String,
    task: u32,
    generation: u64,
    gpus: Vec<u16>,
    milli: Vec<u32>,
    pid: u32,
    energy_j: f64,
}

impl Agent {
    fn lock(&self) -> MutexGuard<'_, AgentState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn register_body(&self) -> RegisterAgent {
        let gpus = (0..self.gpus)
            .map(|index| GpuInventory {
                index,
                uuid: self.uuids[usize::from(index)].clone(),
                name: format!("NVIDIA {} (bench)", self.model.as_deref().unwrap_or("GPU")),
                model: self.model.clone(),
                memory_mib: self.memory_mib,
                power_limit_w: self.tdp,
                default_power_limit_w: self.tdp,
                min_power_limit_w: self.min_limit,
                max_power_limit_w: self.tdp,
            })
            .collect();
        RegisterAgent {
            node: self.node.clone(),
            backend: "simulated".into(),
            address: "127.0.0.1".into(),
            version: format!("gigawatt-bench {}", env!("CARGO_PKG_VERSION")),
            gpus,
        }
    }
}

impl AgentState {
    /// Uniform in [-1, 1) (splitmix64: deterministic from the seed, and cheap).
    fn jitter(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = mix(self.rng);
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// The next heartbeat: telemetry over `dt_s` seconds and every known task, running.
    fn heartbeat(&mut self, a: &Agent, generation: u64, dt_s: f64) -> Heartbeat {
        let mut telemetry = NodeTelemetry { power_w: 0, gpus: Vec::with_capacity(usize::from(a.gpus)) };
        let mut total = 0.0;
        let mut draws = Vec::with_capacity(usize::from(a.gpus));
        for index in 0..a.gpus {
            let milli: u32 = self
                .tasks
                .iter()
                .flat_map(|t| t.gpus.iter().zip(&t.milli))
                .filter(|(g, _)| **g == index)
                .map(|(_, m)| *m)
                .sum();
            let share = (f64::from(milli) / 1000.0).min(1.0);
            let jitter = self.jitter();
            let limit = self.limits.get(&index).copied().unwrap_or(a.tdp);
            let u = if milli == 0 { 0.0 } else { (share * ACTIVITY * (1.0 + 0.03 * jitter)).min(1.0) };
            // Idle GPUs wander by a few watts too.
            let p = (a.idle as f64 * (1.0 + 0.02 * jitter) + (a.tdp.saturating_sub(a.idle)) as f64 * u)
                .min(limit as f64)
                .max(0.0);
            let e = &mut self.energy_j[usize::from(index)];
            *e += p * dt_s;
            total += p;
            draws.push(p);
            telemetry.gpus.push(GpuTelemetry {
                index,
                power_w: p.round() as u64,
                utilization_pct: (u * 100.0).round() as u8,
                memory_used_mib: (share * a.memory_mib as f64).round() as u64,
                temperature_c: (30.0 + 50.0 * p / a.tdp.max(1) as f64).round() as u16,
                power_limit_w: limit,
                energy_j: *e,
            });
        }
        telemetry.power_w = total.round() as u64;
        let tasks = self
            .tasks
            .iter_mut()
            .map(|t| {
                t.energy_j += t
                    .gpus
                    .iter()
                    .zip(&t.milli)
                    .map(|(g, m)| draws.get(usize::from(*g)).copied().unwrap_or(0.0) * f64::from(*m) / 1000.0)
                    .sum::<f64>()
                    * dt_s;
                TaskReport {
                    workload: t.workload.clone(),
                    task: t.task,
                    generation: t.generation,
                    state: TaskState::Running,
                    pid: Some(t.pid),
                    exit_code: None,
                    signal: None,
                    energy_j: t.energy_j,
                    message: None,
                }
            })
            .collect();
        Heartbeat { node: a.node.clone(), generation, telemetry, tasks }
    }

    /// Converges on the answer: keeps the tasks it names, starts the new ones, drops the
    /// rest, applies the power limits.
    fn converge(&mut self, desired: Desired, pids: &AtomicU32) {
        let mut old = std::mem::take(&mut self.tasks);
        for a in desired.assignments {
            let known = old
                .iter()
                .position(|t| t.workload == a.workload && t.task == a.task && t.generation == a.generation);
            let task = match known {
                Some(i) => old.swap_remove(i),
                None => Task {
                    workload: a.workload,
                    task: a.task,
                    generation: a.generation,
                    gpus: a.gpus,
                    milli: a.gpu_milli,
                    pid: pids.fetch_add(1, Ordering::Relaxed),
                    energy_j: 0.0,
                },
            };
            self.tasks.push(task);
        }
        self.limits = desired.power_limits_w;
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The first `n` GPU nodes of the fleet, as agents.
fn agents_of(path: &std::path::Path, n: usize, seed: u64) -> anyhow::Result<Vec<Agent>> {
    let fleet = gigawatt_fleet::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let catalog = GpuCatalog::builtin();
    let mut out = Vec::with_capacity(n);
    for (_, _, node) in fleet.nodes().filter(|(_, _, node)| node.gpu_count > 0).take(n) {
        let spec = node.gpu_model.as_deref().and_then(|m| catalog.get(m));
        // A model the catalog does not know: H100-like figures.
        let (tdp, idle, min_limit, memory_gb) = spec
            .map_or((700, 70, 200, 80), |s| (s.tdp.0, s.idle.0, s.min_power_limit.0, u64::from(s.memory_gb)));
        let gpus = u16::try_from(node.gpu_count).context("more than 65,535 GPUs on a node")?;
        let i = out.len() as u64;
        let node_seed = mix(seed ^ mix(i.wrapping_add(1)));
        let uuids = (0..u64::from(gpus))
            .map(|g| {
                let (h, l) = (mix(node_seed ^ (g + 1)), mix(node_seed.rotate_left(17) ^ (g + 1)));
                let hex = format!("{h:016x}{l:016x}");
                format!(
                    "GPU-{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                )
            })
            .collect();
        out.push(Agent {
            node: node.name.clone(),
            // Issued by `issue_tokens`, before the agents start.
            token: String::new(),
            model: spec.map(|s| s.id.clone()),
            gpus,
            tdp,
            idle,
            min_limit,
            memory_mib: memory_gb * 1_000_000_000 / (1 << 20),
            uuids,
            state: Mutex::new(AgentState {
                phase: Phase::Waiting,
                rng: node_seed,
                energy_j: vec![0.0; usize::from(gpus)],
                limits: BTreeMap::new(),
                tasks: Vec::new(),
            }),
        });
    }
    if out.len() < n {
        bail!("{} has {} GPU nodes, fewer than the {n} agents asked for", path.display(), out.len());
    }
    Ok(out)
}

/// One heartbeat due in the run.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// When it was due, µs since the start.
    due_us: u64,
    /// How late the scheduler sent it, µs.
    lag_us: u64,
    /// From due time to the end of the answer, µs.
    latency_us: u64,
    /// HTTP status; 0 when no answer came, [`NOT_REGISTERED`] when not sent.
    status: u16,
    /// Whether it waited for a free connection.
    waited: bool,
}

struct Ctx {
    client: reqwest::Client,
    register_url: String,
    heartbeat_url: String,
    agents: Vec<Agent>,
    interval: Duration,
    start: Instant,
    slots: Semaphore,
    samples: Mutex<Vec<Sample>>,
    in_flight: AtomicU64,
    sent: AtomicU64,
    stop: AtomicBool,
    stop_notify: Notify,
    pids: AtomicU32,
    reregistrations: AtomicU64,
    settings: Mutex<Option<Registered>>,
}

/// Decrements the in-flight count when a heartbeat task ends, however it ends.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Ctx {
    fn record(&self, s: Sample) {
        self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(s);
    }

    /// Registers agent `i`; updates its phase (`Fenced` on failure when `again`, to try
    /// at its next heartbeat, `Refused` otherwise). On failure, returns the status and
    /// the answer.
    async fn register(&self, i: usize, again: bool) -> Result<(), (u16, String)> {
        let a = &self.agents[i];
        a.lock().phase = Phase::Registering;
        let res =
            self.client.post(&self.register_url).bearer_auth(&a.token).json(&a.register_body()).send().await;
        let outcome = match res {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.bytes().await {
                    Ok(body) if status == 200 => serde_json::from_slice::<Registered>(&body)
                        .map_err(|e| (status, format!("bad answer: {e}"))),
                    Ok(body) => Err((status, String::from_utf8_lossy(&body).into_owned())),
                    Err(e) => Err((0, e.to_string())),
                }
            }
            Err(e) => Err((0, e.to_string())),
        };
        let mut s = a.lock();
        match outcome {
            Ok(reg) => {
                // A new generation: the node starts afresh (a real agent stops all it ran).
                s.phase = Phase::Registered(reg.generation);
                s.tasks.clear();
                let mut settings = self.settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if settings.is_none() {
                    *settings = Some(reg);
                }
                Ok(())
            }
            Err(e) => {
                s.phase = if again { Phase::Fenced } else { Phase::Refused };
                Err(e)
            }
        }
    }

    /// Sends agent `i`'s heartbeat due at `due`, the scheduler having woken `lag` late.
    async fn beat(self: Arc<Ctx>, i: usize, due: Instant, lag: Duration) {
        let _in_flight = InFlight(&self.in_flight);
        let mut sample = Sample {
            due_us: (due - self.start).as_micros() as u64,
            lag_us: lag.as_micros() as u64,
            latency_us: 0,
            status: NOT_REGISTERED,
            waited: false,
        };
        let a = &self.agents[i];
        let permit = match self.slots.try_acquire() {
            Ok(p) => p,
            Err(_) => {
                sample.waited = true;
                let Ok(p) = self.slots.acquire().await else { return };
                p
            }
        };
        let dt = self.interval.as_secs_f64();
        let (generation, body) = {
            let mut s = a.lock();
            let Phase::Registered(generation) = s.phase else {
                drop(s);
                self.record(sample);
                return;
            };
            let hb = s.heartbeat(a, generation, dt);
            (generation, serde_json::to_vec(&hb))
        };
        let Ok(body) = body else { return };
        self.sent.fetch_add(1, Ordering::Relaxed);
        let res = self
            .client
            .post(&self.heartbeat_url)
            .bearer_auth(&a.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let (status, answer) = match res {
            Ok(r) => {
                let status = r.status().as_u16();
                // Read the whole answer, as a real agent does.
                match r.bytes().await {
                    Ok(b) => (status, Some(b)),
                    Err(_) => (0, None),
                }
            }
            Err(_) => (0, None),
        };
        sample.latency_us = due.elapsed().as_micros() as u64;
        sample.status = status;
        drop(permit);
        self.record(sample);
        match (status, answer) {
            (200, Some(body)) => {
                if let Ok(desired) = serde_json::from_slice::<Desired>(&body) {
                    let mut s = a.lock();
                    if s.phase == Phase::Registered(generation) {
                        s.converge(desired, &self.pids);
                    }
                }
            }
            (409, _) => {
                let fenced = {
                    let mut s = a.lock();
                    let fenced = s.phase == Phase::Registered(generation);
                    if fenced {
                        s.phase = Phase::Fenced;
                    }
                    fenced
                };
                if fenced {
                    self.reregistrations.fetch_add(1, Ordering::Relaxed);
                    let _ = self.register(i, true).await;
                }
            }
            _ => {}
        }
    }
}

/// The open-loop scheduler: heartbeat `j` (agent `j mod n`) is due `j × interval / n`
/// after the start.
async fn schedule(ctx: Arc<Ctx>) {
    let n = ctx.agents.len() as u128;
    let interval_ns = ctx.interval.as_nanos();
    let mut j: u128 = 0;
    loop {
        if ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        let offset = u64::try_from(interval_ns * j / n).unwrap_or(u64::MAX);
        let due = ctx.start + Duration::from_nanos(offset);
        if due > Instant::now() {
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                () = ctx.stop_notify.notified() => break,
            }
        }
        let i = (j % n) as usize;
        let lag = Instant::now().saturating_duration_since(due);
        let phase = ctx.agents[i].lock().phase;
        match phase {
            Phase::Registered(_) => {
                ctx.in_flight.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(ctx.clone().beat(i, due, lag));
            }
            other => {
                ctx.record(Sample {
                    due_us: (due - ctx.start).as_micros() as u64,
                    lag_us: lag.as_micros() as u64,
                    latency_us: 0,
                    status: NOT_REGISTERED,
                    waited: false,
                });
                if other == Phase::Fenced {
                    // Its re-registration failed: a real agent tries again.
                    let ctx = ctx.clone();
                    tokio::spawn(async move { ctx.register(i, true).await });
                }
            }
        }
        j += 1;
    }
}

/// Runs `f(i)` for every `i` in `0..n`, at most `concurrency` at once; returns how long
/// it all took.
async fn for_all<F, Fut>(n: usize, concurrency: usize, f: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let fut = f(i);
        set.spawn(async move {
            fut.await;
            drop(permit);
        });
        // Reap what is done, so that the set stays small.
        while set.try_join_next().is_some() {}
    }
    while set.join_next().await.is_some() {}
    started.elapsed()
}

/// Counts answers by status and keeps the first refusal.
#[derive(Default)]
struct Tally {
    ok: u64,
    failed: BTreeMap<String, u64>,
    first_error: Option<String>,
}

impl Tally {
    fn add(&mut self, r: Result<(), (u16, String)>) {
        match r {
            Ok(()) => self.ok += 1,
            Err((status, msg)) => {
                *self.failed.entry(status.to_string()).or_insert(0) += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("{status}: {}", msg.trim()));
                }
            }
        }
    }
}

/// Sends `body` to `url` with `token`; `Ok` when the status is `want`.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &serde_json::Value,
    key: Option<String>,
    want: &[u16],
) -> Result<(), (u16, String)> {
    let mut req = client.post(url).bearer_auth(token).json(body);
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            if want.contains(&status) { Ok(()) } else { Err((status, text)) }
        }
        Err(e) => Err((0, e.to_string())),
    }
}

/// Issues every agent its own node's token (role `agent`), at most
/// [`TOKEN_CONCURRENCY`] at once; returns how long it took. The first refusal stops it
/// (the tokens not yet asked for are not asked for).
async fn issue_tokens(
    spec: &AgentsSpec,
    client: &reqwest::Client,
    agents: &mut [Agent],
) -> anyhow::Result<Duration> {
    let base = spec.url.trim_end_matches('/');
    let url = Arc::new(format!("{base}/v1/tokens"));
    let admin = Arc::new(spec.admin_token.clone());
    let nodes: Arc<Vec<String>> = Arc::new(agents.iter().map(|a| a.node.clone()).collect());
    let tokens: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; agents.len()]));
    let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let failed = Arc::new(AtomicBool::new(false));
    let took = for_all(agents.len(), TOKEN_CONCURRENCY, |i| {
        let (client, url, admin, nodes, tokens, failure, failed) = (
            client.clone(),
            url.clone(),
            admin.clone(),
            nodes.clone(),
            tokens.clone(),
            failure.clone(),
            failed.clone(),
        );
        async move {
            if failed.load(Ordering::Relaxed) {
                return;
            }
            let node = &nodes[i];
            let body = CreateToken {
                name: format!("bench agents {node}"),
                role: Role::Agent,
                tenant: None,
                node: Some(node.clone()),
            };
            let res = async {
                let r = client.post(url.as_str()).bearer_auth(admin.as_str()).json(&body).send().await?;
                let status = r.status();
                if !status.is_success() {
                    let text = r.text().await.unwrap_or_default();
                    anyhow::bail!("{} {}", status.as_u16(), text.trim());
                }
                let created: TokenCreated = r.json().await?;
                Ok(created.token)
            }
            .await;
            match res {
                Ok(t) => tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[i] = Some(t),
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get_or_insert_with(|| format!("node `{node}`: {e:#}"));
                }
            }
        }
    })
    .await;
    if let Some(e) = failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
        bail!("issuing an agent token (POST /v1/tokens): {e}");
    }
    let tokens = std::mem::take(&mut *tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    for (a, t) in agents.iter_mut().zip(tokens) {
        a.token = t.with_context(|| format!("no agent token was issued for node `{}`", a.node))?;
    }
    Ok(took)
}

/// Creates the tenant and submits the jobs.
async fn submit_jobs(spec: &AgentsSpec, client: &reqwest::Client, admin: &str) -> anyhow::Result<JobsReport> {
    let base = spec.url.trim_end_matches('/');
    let tenant = serde_json::json!({"id": spec.tenant, "name": "Benchmarks"});
    // 409: it exists already (an earlier run on the same log).
    if let Err((status, msg)) =
        post(client, &format!("{base}/v1/tenants"), admin, &tenant, None, &[200, 201, 409]).await
    {
        bail!("creating tenant `{}`: {status} {msg}", spec.tenant);
    }
    let job = Arc::new(serde_json::json!({
        "name": "bench",
        "tenant": spec.tenant,
        "resources": { "gpus": 1, "cpu_millicores": 1000, "memory_mib": 1024 },
        "command": ["sleep", "infinity"],
    }));
    let url = Arc::new(format!("{base}/v1/workloads"));
    let admin = Arc::new(admin.to_string());
    let tally = Arc::new(Mutex::new(Tally::default()));
    let n = usize::try_from(spec.jobs).unwrap_or(usize::MAX);
    let took = for_all(n, spec.setup_connections, |i| {
        let (client, url, admin, job, tally) =
            (client.clone(), url.clone(), admin.clone(), job.clone(), tally.clone());
        let key = format!("bench-agents-{}-{i}", spec.run_id);
        async move {
            let r = post(&client, &url, &admin, &job, Some(key), &[201]).await;
            tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner).add(r);
        }
    })
    .await;
    let t = std::mem::take(&mut *tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    Ok(JobsReport {
        submitted: spec.jobs,
        created: t.ok,
        failed: t.failed,
        first_error: t.first_error,
        took_s: took.as_secs_f64(),
    })
}

/// CPU times at one instant: the server's, this process's, the machine's.
fn cpu_now(server: Option<u32>) -> (Option<f64>, Option<f64>, Option<f64>) {
    (
        server.and_then(procfs::cpu_seconds),
        procfs::cpu_seconds(std::process::id()),
        procfs::machine_busy_seconds(),
    )
}

/// Plays the agents and reports.
pub async fn run(spec: &AgentsSpec) -> anyhow::Result<AgentsReport> {
    let mut agents = agents_of(&spec.fleet, spec.agents.max(1), spec.seed)?;
    let gpus: u64 = agents.iter().map(|a| u64::from(a.gpus)).sum();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(spec.connections + spec.setup_connections)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let base = spec.url.trim_end_matches('/');
    let n = agents.len();
    // One credential per node, as in production; not part of anything measured.
    if spec.progress {
        eprintln!("issuing {n} agent tokens, one per node");
    }
    let took = issue_tokens(spec, &client, &mut agents).await?;
    if spec.progress {
        eprintln!("issued {n} agent tokens in {:.1} s", took.as_secs_f64());
    }
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        register_url: format!("{base}/v1/agent/register"),
        heartbeat_url: format!("{base}/v1/agent/heartbeat"),
        agents,
        interval: spec.interval,
        start: Instant::now(),
        slots: Semaphore::new(spec.connections.max(1)),
        samples: Mutex::new(Vec::with_capacity(1 << 16)),
        in_flight: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        stop_notify: Notify::new(),
        pids: AtomicU32::new(100_000),
        reregistrations: AtomicU64::new(0),
        settings: Mutex::new(None),
    });
    // Heartbeats start at once: each agent joins its slot of the schedule as soon as it
    // is registered, so that none is declared lost while the others register and the
    // jobs are submitted.
    let scheduler = tokio::spawn(schedule(ctx.clone()));
    let stop = |ctx: &Ctx| {
        ctx.stop.store(true, Ordering::Relaxed);
        ctx.stop_notify.notify_one();
    };

    if spec.progress {
        eprintln!("registering {n} agents ({gpus} GPUs) from {}", spec.fleet.display());
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let took = for_all(n, spec.setup_connections, |i| {
        let (ctx, tally) = (ctx.clone(), tally.clone());
        async move {
            let r = ctx.register(i, false).await;
            tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner).add(r);
        }
    })
    .await;
    let t = std::mem::take(&mut *tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let settings = ctx.settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let registration = RegistrationReport {
        registered: t.ok,
        failed: t.failed,
        first_error: t.first_error,
        took_s: took.as_secs_f64(),
        per_s: t.ok as f64 / took.as_secs_f64().max(1e-9),
        heartbeat_interval_ms: settings.as_ref().map(|s| s.heartbeat_interval_ms),
        lost_after_ms: settings.as_ref().map(|s| s.lost_after_ms),
    };
    if registration.registered == 0 {
        stop(&ctx);
        bail!("no agent could register: {}", registration.first_error.as_deref().unwrap_or("(no answer)"));
    }
    if spec.progress {
        eprintln!("registered {} agents in {:.1} s", registration.registered, registration.took_s);
        if let Some(e) = &registration.first_error {
            eprintln!(
                "warning: {} registrations refused, the first: {e}",
                n as u64 - registration.registered
            );
        }
        if let Some(s) = &settings
            && u128::from(s.heartbeat_interval_ms) != spec.interval.as_millis()
        {
            eprintln!(
                "warning: the server asks for a heartbeat every {} ms, the generator sends one every {} ms",
                s.heartbeat_interval_ms,
                spec.interval.as_millis()
            );
        }
    }

    let jobs = if spec.jobs == 0 {
        JobsReport::default()
    } else {
        if spec.progress {
            eprintln!("submitting {} one-GPU jobs", spec.jobs);
        }
        let r = submit_jobs(spec, &client, &spec.admin_token).await;
        if r.is_err() {
            stop(&ctx);
        }
        let r = r?;
        if spec.progress {
            eprintln!("submitted {} jobs in {:.1} s ({} created)", r.submitted, r.took_s, r.created);
            if let Some(e) = &r.first_error {
                eprintln!("warning: {} submissions failed, the first: {e}", r.submitted - r.created);
            }
        }
        r
    };

    if spec.progress {
        eprintln!(
            "heartbeats: {:.0}/s offered, {:.1} s warm-up + {:.1} s measured",
            n as f64 / spec.interval.as_secs_f64(),
            spec.warmup.as_secs_f64(),
            spec.duration.as_secs_f64()
        );
    }
    tokio::time::sleep(spec.warmup).await;
    let cpu0 = cpu_now(spec.server_pid);
    let w0 = Instant::now();
    tokio::time::sleep(spec.duration).await;
    let cpu1 = cpu_now(spec.server_pid);
    let w1 = Instant::now();
    stop(&ctx);
    let _ = scheduler.await;
    // Wait for the heartbeats in flight (the client gives up on each after 30 s).
    let drain = Instant::now();
    while ctx.in_flight.load(Ordering::Relaxed) > 0 && drain.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let server_memory = spec.server_pid.and_then(procfs::memory);
    let tasks_running = ctx.agents.iter().map(|a| a.lock().tasks.len() as u64).sum();
    let samples = std::mem::take(&mut *ctx.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner));

    let (w0_us, w1_us) = ((w0 - ctx.start).as_micros() as u64, (w1 - ctx.start).as_micros() as u64);
    let window_s = (w1 - w0).as_secs_f64();
    let in_window = |us: u64| (w0_us..w1_us).contains(&us);
    let due: Vec<&Sample> = samples.iter().filter(|s| in_window(s.due_us)).collect();
    let sent: Vec<&Sample> = due.iter().copied().filter(|s| s.status != NOT_REGISTERED).collect();
    let mut errors = BTreeMap::new();
    for s in sent.iter().filter(|s| s.status != 200) {
        *errors.entry(s.status.to_string()).or_insert(0) += 1;
    }
    let mut lat: Vec<u64> = sent.iter().map(|s| s.latency_us).collect();
    lat.sort_unstable();
    let answered =
        samples.iter().filter(|s| s.status == 200 && in_window(s.due_us + s.latency_us)).count() as u64;
    let delta = |a: Option<f64>, b: Option<f64>| b.zip(a).map(|(b, a)| b - a);
    let server_cpu_s = delta(cpu0.0, cpu1.0);
    Ok(AgentsReport {
        server: spec.url.clone(),
        fleet: spec.fleet.display().to_string(),
        agents: n,
        gpus,
        interval_ms: spec.interval.as_millis() as u64,
        offered_per_s: n as f64 / spec.interval.as_secs_f64(),
        connections: spec.connections,
        registration,
        jobs,
        window_s,
        sent: sent.len() as u64,
        ok: sent.iter().filter(|s| s.status == 200).count() as u64,
        errors,
        not_sent: (due.len() - sent.len()) as u64,
        answered_per_s: answered as f64 / window_s.max(1e-9),
        latency: latency(&lat),
        late_sends: due.iter().filter(|s| s.lag_us > LATE.as_micros() as u64).count() as u64,
        max_send_lag_ms: due.iter().map(|s| s.lag_us).max().unwrap_or(0) as f64 / 1000.0,
        waited_for_connection: sent.iter().filter(|s| s.waited).count() as u64,
        reregistrations: ctx.reregistrations.load(Ordering::Relaxed),
        total_heartbeats: ctx.sent.load(Ordering::Relaxed),
        tasks_running,
        server_cpu_s,
        server_cores: server_cpu_s.map(|c| c / window_s.max(1e-9)),
        generator_cpu_s: delta(cpu0.1, cpu1.1),
        machine_cpu_s: delta(cpu0.2, cpu1.2),
        server_memory,
    })
}

/// Prints the report as a table.
pub fn print(r: &AgentsReport) -> anyhow::Result<()> {
    outln!("server       {}", r.server);
    outln!(
        "agents       {} ({} GPUs) from {}, a heartbeat each every {:.1} s: {:.0}/s offered, {} connections",
        r.agents,
        r.gpus,
        r.fleet,
        r.interval_ms as f64 / 1000.0,
        r.offered_per_s,
        r.connections
    );
    let g = &r.registration;
    let refused = if g.failed.is_empty() {
        String::new()
    } else {
        let f: Vec<String> = g.failed.iter().map(|(s, n)| format!("{n} × {s}")).collect();
        format!("; refused {}", f.join(", "))
    };
    outln!("registered   {} in {:.2} s ({:.0}/s){refused}", g.registered, g.took_s, g.per_s);
    if let Some(e) = &g.first_error {
        outln!("             first refusal: {e}");
    }
    let j = &r.jobs;
    if j.submitted > 0 {
        let failed = if j.failed.is_empty() {
            String::new()
        } else {
            let f: Vec<String> = j.failed.iter().map(|(s, n)| format!("{n} × {s}")).collect();
            format!("; failed {}", f.join(", "))
        };
        outln!(
            "jobs         {} created of {} in {:.2} s ({:.0}/s){failed}",
            j.created,
            j.submitted,
            j.took_s,
            j.created as f64 / j.took_s.max(1e-9)
        );
        if let Some(e) = &j.first_error {
            outln!("             first failure: {e}");
        }
    }
    outln!("tasks        {} reported running by the agents at the end", r.tasks_running);
    outln!(
        "window       {:.1} s: {} heartbeats sent, {} answered 200, {:.0}/s answered",
        r.window_s,
        r.sent,
        r.ok,
        r.answered_per_s
    );
    let t = &r.latency;
    outln!(
        "latency ms   mean {:.2}  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        t.mean_ms,
        t.p50_ms,
        t.p90_ms,
        t.p99_ms,
        t.p999_ms,
        t.max_ms
    );
    let errors: Vec<String> = r.errors.iter().map(|(s, n)| format!("{n} × {s}")).collect();
    outln!("not 200      {}", if errors.is_empty() { "none".into() } else { errors.join(", ") });
    if r.not_sent > 0 || r.reregistrations > 0 {
        outln!(
            "not sent     {} (agent not registered); {} re-registrations after a 409",
            r.not_sent,
            r.reregistrations
        );
    }
    outln!(
        "generator    {} sends more than 5 ms late (max {:.1} ms), {} waited for a connection",
        r.late_sends,
        r.max_send_lag_ms,
        r.waited_for_connection
    );
    let cpu = |c: Option<f64>| {
        c.map_or("?".into(), |c| format!("{c:.1} s ({:.0}% of one core)", 100.0 * c / r.window_s.max(1e-9)))
    };
    let others = match (r.machine_cpu_s, r.server_cpu_s, r.generator_cpu_s) {
        (Some(m), Some(s), Some(g)) => Some((m - s - g).max(0.0)),
        _ => None,
    };
    outln!(
        "CPU          server {}, generator {}, other programs {}",
        cpu(r.server_cpu_s),
        cpu(r.generator_cpu_s),
        cpu(others)
    );
    if let Some(m) = r.server_memory {
        outln!("server RSS   {:.0} MiB now, {:.0} MiB peak", m.rss_mib, m.peak_rss_mib);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Agent {
        Agent {
            node: "n".into(),
            token: "gw_n".into(),
            model: Some("H100-SXM".into()),
            gpus: 2,
            tdp: 700,
            idle: 70,
            min_limit: 200,
            memory_mib: 76_293,
            uuids: vec!["a".into(), "b".into()],
            state: Mutex::new(AgentState {
                phase: Phase::Registered(1),
                rng: 7,
                energy_j: vec![0.0; 2],
                limits: BTreeMap::new(),
                tasks: Vec::new(),
            }),
        }
    }

    #[test]
    fn telemetry_is_plausible_and_tasks_follow_the_answer() {
        let a = agent();
        let mut s = a.lock();
        let hb = s.heartbeat(&a, 1, 5.0);
        assert!(hb.tasks.is_empty());
        assert!(hb.telemetry.gpus.iter().all(|g| (60..=80).contains(&g.power_w) && g.utilization_pct == 0));
        let desired = Desired {
            assignments: vec![gigawatt_api::Assignment {
                workload: "w-1".into(),
                task: 0,
                generation: 9,
                gpus: vec![1],
                gpu_milli: vec![1000],
                command: vec![],
                env: BTreeMap::new(),
                grace_ms: None,
            }],
            ..Desired::default()
        };
        let pids = AtomicU32::new(5);
        s.converge(desired.clone(), &pids);
        s.converge(desired, &pids);
        let hb = s.heartbeat(&a, 1, 5.0);
        assert_eq!(hb.tasks.len(), 1);
        assert_eq!(hb.tasks[0].pid, Some(5), "a known task keeps its pid");
        assert!(hb.tasks[0].energy_j > 5.0 * 500.0);
        assert!(hb.telemetry.gpus[1].power_w > 600 && hb.telemetry.gpus[1].utilization_pct > 80);
        s.converge(Desired::default(), &pids);
        assert!(s.heartbeat(&a, 1, 5.0).tasks.is_empty());
    }
}
