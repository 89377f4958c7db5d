//! The synthetic multi-tenant workload of `gigawatt sim queue`.
//!
//! Seeded and synthetic; its shapes follow what the published analyses of multi-tenant
//! GPU clusters report, its exact parameters are ours (listed here, and in
//! docs/queue.md):
//!
//! * **Job sizes.** Most jobs use one GPU and a minority are multi-GPU or multi-node,
//!   yet the multi-node minority holds most GPU time (Philly: Jeon et al., ATC'19;
//!   Helios: Hu et al., SC'21). Ours: 50% 1 GPU, 12% 2, 11% 4, 12% 8 (one task); 14% gangs
//!   of 2, 4, 8 or 16 nodes of 8 GPUs in one network domain; 1% gangs of 64 or 128 nodes.
//! * **Durations.** Heavy-tailed (both analyses): log-normal, median 1 h (σ 1.5) for
//!   single tasks, 4 h (σ 1.0) for gangs, 12 h (σ 0.7) for big gangs, at most 7 days.
//! * **Time limits.** Users overestimate them (Tsafrir, Etsion and Feitelson, IEEE TPDS
//!   2007, on supercomputer logs; the same holds for GPU clusters' `--time`): the run
//!   lasts a uniform 10–100% of its limit, and the limit is rounded up to a value a person
//!   types (1, 2, 4, 8, 12, 24, 48, 72 h or 7 days).
//! * **Tenants.** A few large and many small (Helios: a small share of users holds most
//!   GPU time): weights are Zipf-distributed (exponent 1.1). A tenant's entitlement is its
//!   weight's share of each flavour. Demand differs from entitlement: each tenant submits
//!   at its weight times a log-normal factor (σ 1), and 1 in 200 submissions is a
//!   **burst** of 200 to 2,000 jobs at once (the 6 am batch of kueue#1714).
//! * **Classes.** 10% of single tasks are best-effort (spot); the rest, standard.
//!   No tenant submits a gang larger than its nominal quota in one flavour: big gangs
//!   come from the large tenants, and smaller tenants submit the largest gang their
//!   quota holds (or a single 8-GPU task). A tenant has one big gang waiting at a time
//!   (a team's next big run waits for its current one); the loop draws again meanwhile.

use gigawatt_core::{
    DataClass, GpuDemand, PriorityClass, Shape, TaskDemand, TenantId, Topology, Workload, WorkloadId,
};
use gigawatt_units::{Mebibytes, MilliCores, Seconds};
use rand::Rng;

use gigawatt_core::CoreRng;

/// Upper bound of any duration or limit: 7 days.
pub const MAX_LIMIT_S: f64 = 7.0 * 86_400.0;

/// Limits a person types, in hours.
const ROUND_LIMITS_H: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 12.0, 24.0, 48.0, 72.0, 168.0];

/// What kind of job a submission is, for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JobKind {
    /// One task of 1 to 8 GPUs.
    Small,
    /// A gang of 2 to 16 nodes.
    Gang,
    /// A gang of 64 nodes or more.
    BigGang,
}

/// A tenant of the synthetic cloud.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Its id, `t00042`.
    pub id: TenantId,
    /// Fair-share weight (entitlement).
    pub weight: u32,
    /// How much it submits relative to the others.
    pub demand: f64,
    /// The largest gang (in GPUs) its quota in one flavour can hold.
    pub max_gang_gpus: u64,
}

/// The tenant population: Zipf weights, log-normal demand.
#[must_use]
pub fn tenants(n: usize, rng: &mut CoreRng) -> Vec<Tenant> {
    (0..n)
        .map(|i| {
            // Zipf(1.1) over ranks, scaled so the smallest has weight 1.
            let w = (1e4 / ((i + 1) as f64).powf(1.1)).max(1.0).round() as u32;
            let demand = f64::from(w) * lognormal(rng, 0.0, 1.0);
            Tenant { id: TenantId(format!("t{i:05}")), weight: w.max(1), demand, max_gang_gpus: 0 }
        })
        .collect()
}

/// A log-normal draw with median `e^mu`.
fn lognormal(rng: &mut CoreRng, mu: f64, sigma: f64) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (mu + sigma * z).exp()
}

/// One job: the workload, its kind, and how long it really runs.
#[derive(Debug, Clone)]
pub struct Job {
    /// The workload (with its time limit).
    pub workload: Workload,
    /// Its kind.
    pub kind: JobKind,
    /// How long it runs once started (at most its limit).
    pub runtime: Seconds,
}

/// Draws the next job of tenant `tenant`.
pub fn job(id: u64, tenant: &Tenant, rng: &mut CoreRng) -> Job {
    let x: f64 = rng.random();
    let (gpus, tasks, kind) = if x < 0.50 {
        (1, 1, JobKind::Small)
    } else if x < 0.62 {
        (2, 1, JobKind::Small)
    } else if x < 0.73 {
        (4, 1, JobKind::Small)
    } else if x < 0.85 {
        (8, 1, JobKind::Small)
    } else if x < 0.99 {
        let nodes: u64 = [2, 4, 8, 16][rng.random_range(0..4)];
        let nodes = nodes.min(tenant.max_gang_gpus / 8);
        if nodes >= 2 { (8, nodes as u32, JobKind::Gang) } else { (8, 1, JobKind::Small) }
    } else {
        let nodes: u64 = if rng.random_bool(0.5) { 64 } else { 128 };
        match tenant.max_gang_gpus / 8 {
            n if n >= nodes => (8, nodes as u32, JobKind::BigGang),
            n if n >= 64 => (8, 64, JobKind::BigGang),
            n if n >= 2 => (8, n.min(16) as u32, JobKind::Gang),
            _ => (8, 1, JobKind::Small),
        }
    };
    let (median_h, sigma) = match kind {
        JobKind::Small => (1.0, 1.5),
        JobKind::Gang => (4.0, 1.0),
        JobKind::BigGang => (12.0, 0.7),
    };
    let runtime = (median_h * 3600.0 * lognormal(rng, 0.0, sigma)).clamp(60.0, MAX_LIMIT_S);
    let used = rng.random_range(0.1..=1.0);
    let wanted_h = runtime / used / 3600.0;
    let limit_h = ROUND_LIMITS_H.iter().copied().find(|h| *h >= wanted_h).unwrap_or(168.0);
    let limit = (limit_h * 3600.0).max(runtime);
    let priority = if kind == JobKind::Small && rng.random_bool(0.1) {
        PriorityClass::BestEffort
    } else {
        PriorityClass::Standard
    };
    let shape =
        if tasks == 1 { Shape::Single } else { Shape::Gang { tasks, topology: Topology::SameDomain } };
    let workload = Workload {
        id: WorkloadId(id),
        name: format!("{}-{id}", tenant.id.0),
        tenant: tenant.id.clone(),
        priority,
        data_class: DataClass::Public,
        demand: TaskDemand {
            gpu: GpuDemand::whole(gpus),
            gpu_models: Vec::new(),
            // CPU and memory in proportion to GPUs: a slice of an 8-GPU server.
            cpu: MilliCores(u64::from(gpus) * 24_000),
            memory: Mebibytes(u64::from(gpus) * 120 * 1024),
        },
        shape,
        duration: Some(Seconds(runtime)),
        time_limit: Some(Seconds(limit)),
        pins: Default::default(),
    };
    Job { workload, kind, runtime: Seconds(runtime) }
}
