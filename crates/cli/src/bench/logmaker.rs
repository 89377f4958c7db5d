//! Writes a realistic event log fast, through the server's own code: an in-process
//! [`Server`] whose single writer applies our commands to the engine and group-commits the
//! records, taking snapshots exactly as `gigawatt serve` does. Only HTTP is skipped: each
//! writer command carries thousands of operations, so a million records take seconds of
//! database time rather than hours of requests.
//!
//! The life it records: tenants with tokens, then a steady churn of submissions (single
//! GPUs, GPU shares, whole nodes, multi-node gangs, inference services, three priorities,
//! four data classes) that completes, fails or cancels old work to hold a target number
//! of live workloads. Placements, pending decisions and preemptions come from the real
//! scheduler.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use gigawatt_api::{
    CreateTenant, CreateToken, GangSpec, JobSpec, Resources, Role, ServiceSpec, WorkloadKind, WorkloadState,
};
use gigawatt_core::{DataClass, PolicyKind, PriorityClass, Topology, WorkloadId};
use gigawatt_fleet::Fleet;
use gigawatt_server::auth::Caller;
use gigawatt_server::engine::{Engine, EngineConfig};
use gigawatt_server::error::EngineError;
use gigawatt_server::writer::execute;
use gigawatt_server::{Server, ServerConfig};
use gigawatt_store::Store;
use serde::Serialize;

/// The actor logged for what the benchmark log maker creates.
const LOGMAKER: &str = "gigawatt bench log maker";

/// Tenants in the generated log, each with two tokens.
const TENANTS: usize = 40;

/// What to generate.
#[derive(Debug, Clone)]
pub struct LogSpec {
    /// Records to write (the log ends within one operation's records of it).
    pub events: u64,
    /// Workloads pending or running to hold (and leave at the end).
    pub live: usize,
    /// Operations per writer command (and so, roughly, per commit).
    pub batch: usize,
    /// The server's `--snapshot-every`.
    pub snapshot_every: u64,
    /// Seed of the job mix.
    pub seed: u64,
}

/// What was written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogReport {
    /// Records in the log.
    pub records: u64,
    /// Workloads submitted.
    pub submitted: u64,
    /// Workloads pending or running at the end.
    pub live: usize,
    /// Of which running.
    pub running: usize,
    /// Workloads by final state.
    pub ended: BTreeMap<String, u64>,
    /// Seconds it took.
    pub took_s: f64,
}

struct Gen {
    rng: SplitMix64,
    tenants: Vec<Caller>,
    operator: String,
    live: Vec<WorkloadId>,
    n: u64,
}

impl Gen {
    /// One operation: end a live workload if there are enough, then submit one.
    fn step(&mut self, engine: &mut Engine, now: i64, live_target: usize) -> Result<(), EngineError> {
        if self.live.len() >= live_target {
            self.end_one(engine, now)?;
        }
        let caller = &self.tenants[self.rng.below(self.tenants.len() as u64) as usize];
        let spec = job(&mut self.rng, self.n, caller.tenant.as_deref().unwrap_or_default());
        let key = (self.rng.below(2) == 0).then(|| format!("ci-{}-{:08x}", self.n, self.rng.below(1 << 32)));
        self.n += 1;
        let (id, _) = engine.submit(now, caller, &spec, key)?;
        if engine.view.workloads.get(&id).is_some_and(|w| !w.state.is_final()) {
            self.live.push(id);
        }
        Ok(())
    }

    fn end_one(&mut self, engine: &mut Engine, now: i64) -> Result<(), EngineError> {
        let i = self.rng.below(self.live.len() as u64) as usize;
        let id = self.live.swap_remove(i);
        let Some(w) = engine.view.workloads.get(&id) else { return Ok(()) };
        let (state, exit_code) = match (w.state, self.rng.below(100)) {
            (WorkloadState::Running, 0..85) => (WorkloadState::Succeeded, Some(0)),
            (WorkloadState::Running, 85..95) => (WorkloadState::Failed, Some(1)),
            (WorkloadState::Running | WorkloadState::Pending, _) => (WorkloadState::Cancelled, None),
            _ => return Ok(()),
        };
        engine.finish(now, id, state, exit_code, Some(self.operator.clone()))
    }
}

/// SplitMix64 (Steele, Lea and Flood 2014): a small seeded generator, enough for a job
/// mix that is the same on every run.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; the modulo bias is negligible for small `n`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A job from a mix of what a GPU cloud sees: 55% single GPUs, 5% GPU shares, 15% two
/// GPUs, 10% four, 10% whole 8-GPU servers, 3% gangs of 2–4 whole servers, 2% services
/// of 2–4 one-GPU replicas: 2.85 GPUs a workload on average, so 40,000 live workloads
/// hold 57% of the 200,000-GPU fleet. (Past about 80% the gangs wait, and every
/// completion retries them: a different benchmark.)
fn job(rng: &mut SplitMix64, n: u64, tenant: &str) -> JobSpec {
    let mut resources =
        Resources { gpus: 1, gpu_milli: None, gpu_models: vec![], cpu_millicores: 8000, memory_mib: 65536 };
    let (mut gang, mut service, mut kind) = (None, None, WorkloadKind::Batch);
    match rng.below(100) {
        0..55 => {}
        55..60 => {
            resources.gpu_milli = Some(if rng.below(2) == 0 { 250 } else { 500 });
            resources.cpu_millicores = 2000;
            resources.memory_mib = 16384;
            kind = WorkloadKind::Inference;
        }
        60..75 => resources.gpus = 2,
        75..85 => resources.gpus = 4,
        85..95 => {
            resources.gpus = 8;
            resources.cpu_millicores = 200_000;
            resources.memory_mib = 1_800_000;
        }
        95..98 => {
            resources.gpus = 8;
            resources.cpu_millicores = 200_000;
            resources.memory_mib = 1_800_000;
            gang = Some(GangSpec { tasks: 2 + rng.below(3) as u32, topology: Topology::SameDomain });
            kind = WorkloadKind::Training;
        }
        _ => {
            service = Some(ServiceSpec { replicas: 2 + rng.below(3) as u32 });
            kind = WorkloadKind::Inference;
        }
    }
    let priority = match rng.below(10) {
        0..2 => PriorityClass::BestEffort,
        2..9 => PriorityClass::Standard,
        _ => PriorityClass::LatencyCritical,
    };
    // Health and sensitive data may use only the one French site: no gangs there, or
    // they queue behind each other.
    let data_class = match (rng.below(100), gang.is_some()) {
        (0..80, _) => DataClass::Public,
        (80..90, _) | (_, true) => DataClass::Personal,
        (90..97, false) => DataClass::Health,
        (_, false) => DataClass::Sensitive,
    };
    let program = if kind == WorkloadKind::Inference { "serve.py" } else { "train.py" };
    JobSpec {
        name: format!("{}-{n}", kind.as_str()),
        tenant: None,
        kind: Some(kind),
        priority: Some(priority),
        data_class: Some(data_class),
        resources,
        gang,
        service,
        command: vec!["python".into(), program.into(), "--config".into(), format!("configs/run-{n}.yaml")],
        env: BTreeMap::from([("WANDB_PROJECT".to_string(), tenant.to_string())]),
        time_limit: None,
        grace: None,
        deferrable: None,
        placement: None,
    }
}

/// Fills the empty log at `store` as `spec` says, through an in-process server on
/// `fleet` (policy FGD, as `gigawatt serve`'s default).
pub async fn make_log(store: Store, fleet: Fleet, spec: &LogSpec) -> anyhow::Result<LogReport> {
    let started = Instant::now();
    let signer = gigawatt_transparency::Signer::from_seed("gigawatt/logmaker", [7; 32])
        .map_err(|e| anyhow::anyhow!("the logmaker's key: {e}"))?;
    let config = ServerConfig {
        audit: gigawatt_server::audit::AuditSettings::new(signer),
        // Ended workloads stay, as in the figures measured before retention existed.
        engine: EngineConfig {
            fleet,
            policy: PolicyKind::Fgd,
            seed: 42,
            keep_ended_ms: None,
            require_agents: false,
            budget_lead_ms: gigawatt_server::engine::DEFAULT_BUDGET_LEAD_MS,
            pass_interval_ms: gigawatt_server::engine::DEFAULT_PASS_INTERVAL_MS,
            age_after_s: 86_400,
        },
        snapshot_every: spec.snapshot_every,
        agents: gigawatt_server::agents::AgentSettings::default(),
        power: gigawatt_server::PowerSettings::default(),
        connections: gigawatt_server::listen::ConnLimits::default(),
        requests: gigawatt_server::http::limits::RequestLimits::default(),
        tls: None,
    };
    let server = Server::start(store, config).await?;
    let state = server.state.clone();
    let seq = state.engine.read().await.view.seq;
    if seq > 2 {
        bail!("the event log is not empty ({seq} records): give an empty database, or --wipe");
    }
    let err = |e: EngineError| anyhow!("{e}");
    let (tenants, operator) = execute(&state, |engine, now| {
        let mut tenants = Vec::new();
        for i in 0..TENANTS {
            let id = format!("tenant-{i:02}");
            let tenant = CreateTenant { id: id.clone(), name: Some(format!("Tenant {i}")) };
            engine.create_tenant(now, &tenant, LOGMAKER)?;
            for purpose in ["ci", "notebooks"] {
                let req = CreateToken {
                    name: format!("{id} {purpose}"),
                    role: Role::Tenant,
                    tenant: Some(id.clone()),
                    node: None,
                };
                let (token_id, _secret) = engine.issue_token(now, &req, LOGMAKER)?;
                tenants.push(Caller {
                    token_id,
                    name: req.name,
                    role: Role::Tenant,
                    tenant: Some(id.clone()),
                    node: None,
                    join_expires_at: None,
                    source: None,
                });
            }
        }
        let req = CreateToken { name: "node agents".into(), role: Role::Operator, tenant: None, node: None };
        let (operator, _) = engine.issue_token(now, &req, LOGMAKER)?;
        Ok((tenants, operator))
    })
    .await
    .map_err(err)?;

    let mut gen_state = Gen { rng: SplitMix64(spec.seed), tenants, operator, live: Vec::new(), n: 0 };
    let (target, live_target, batch) = (spec.events, spec.live, spec.batch.max(1));
    let mut next_report = 0u64;
    loop {
        let (g, done, seq) = execute(&state, move |engine, now| {
            let mut g = gen_state;
            for _ in 0..batch {
                if engine.view.seq >= target {
                    return Ok((g, true, engine.view.seq));
                }
                g.step(engine, now, live_target)?;
            }
            let seq = engine.view.seq;
            Ok((g, seq >= target, seq))
        })
        .await
        .map_err(err)
        .context("writing the log")?;
        gen_state = g;
        if seq >= next_report {
            eprintln!(
                "  {seq:>9} records, {:>7} live, {:.1} s",
                gen_state.live.len(),
                started.elapsed().as_secs_f64()
            );
            next_report = seq + target / 10;
        }
        if done {
            break;
        }
    }
    let engine = state.engine.read().await;
    let mut report = LogReport {
        records: engine.view.seq,
        submitted: engine.view.submitted,
        live: engine.view.live(),
        took_s: started.elapsed().as_secs_f64(),
        ..LogReport::default()
    };
    for w in engine.view.workloads.values() {
        if w.state == WorkloadState::Running {
            report.running += 1;
        } else if w.state.is_final() {
            *report.ended.entry(w.state.as_str().to_string()).or_insert(0) += 1;
        }
    }
    Ok(report)
}
