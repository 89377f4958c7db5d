//! The FGD paper's experiment, reproduced on the same core as production.
//!
//! Protocol (see `docs/fgd-reproduction.md` for every detail and deviation):
//! 1. inflate the pod list to 130% of the cluster's GPU capacity ([`crate::inflate`]);
//! 2. give the nodes a seeded order, which breaks ties between equal scores;
//! 3. submit the pods one at a time; a pod that does not fit is dropped, none leaves;
//! 4. after every pod record arrived %, allocated % and the fragmentation ratio;
//! 5. bucket by integer arrived % and average, per run, then across seeds.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use gigawatt_core::policy::node_fragmentation;
use gigawatt_core::{
    ClusterState, CoreError, DataClass, Decision, Event, PolicyKind, PriorityClass, Scheduler,
    SchedulerConfig, Shape, TenantId, TypicalPods, Workload, WorkloadId,
};
use gigawatt_fleet::Fleet;
use gigawatt_units::Timestamp;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::engine::Simulation;
use crate::inflate::inflate;
use crate::openb::OpenbPod;
use crate::reference;

/// RNG streams of one seed: one per purpose, so they never shift each other.
const STREAM_WORKLOAD: u64 = 1;
const STREAM_NODES: u64 = 2;
const STREAM_POLICY: u64 = 3;

/// One workload file prepared for the experiment.
#[derive(Debug, Clone)]
pub struct WorkloadFile<'a> {
    /// File stem, e.g. `openb_pod_list_default`.
    pub name: String,
    /// The original pods.
    pub pods: &'a [OpenbPod],
}

/// Parameters shared by every run.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Inflation target as a share of GPU capacity (1.3 in the paper).
    pub ratio: f64,
    /// Share of pods the typical workload must cover, in percent (95 in the paper).
    pub coverage_pct: u64,
    /// Score at most this many feasible nodes per pod (`None`: all, as the paper).
    pub max_candidates: Option<u32>,
}

impl Default for Params {
    fn default() -> Self {
        Params { ratio: 1.3, coverage_pct: 95, max_candidates: None }
    }
}

/// One point per integer arrived-% bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bucket {
    /// Arrived workload, % of GPU capacity (rounded half to even, as Python does).
    pub arrived_pct: u32,
    /// Mean allocated GPU share in the bucket, % of capacity.
    pub alloc_pct: f64,
    /// Mean fragmentation ratio in the bucket, % of idle GPU share.
    pub frag_ratio_pct: f64,
}

/// The outcome of one (workload, policy, seed) run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResult {
    /// Workload file stem.
    pub workload: String,
    /// Policy name.
    pub policy: String,
    /// Seed.
    pub seed: u64,
    /// Pods submitted (originals plus clones).
    pub pods: usize,
    /// Pods that did not fit and were dropped.
    pub failed: usize,
    /// Final arrived %, unrounded.
    pub arrived_pct_final: f64,
    /// Final allocation %, unrounded.
    pub alloc_pct_final: f64,
    /// Per-bucket means.
    pub buckets: Vec<Bucket>,
}

/// Something went wrong that is not the trace's fault.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The core refused an event (a bug, reported rather than hidden).
    #[error("core: {0}")]
    Core(#[from] CoreError),
    /// The fleet has no GPUs, so percentages are meaningless.
    #[error("the fleet has no GPUs")]
    NoGpus,
}

/// The typical workload of a pod list, with model names in catalog spelling.
#[must_use]
pub fn typical_pods(fleet: &Fleet, pods: &[OpenbPod], coverage_pct: u64) -> TypicalPods {
    TypicalPods::from_shapes(
        pods.iter().map(|p| {
            let models = p.gpu_spec.iter().map(|m| canonical(fleet, m)).collect();
            (p.cpu, p.gpu.milli_per_gpu, p.gpu.count, models)
        }),
        coverage_pct,
    )
}

fn canonical(fleet: &Fleet, model: &str) -> String {
    fleet.catalog.get(model).map_or_else(|| model.to_string(), |g| g.id.clone())
}

/// Runs one experiment.
pub fn run(
    fleet: &Fleet,
    workload: &WorkloadFile<'_>,
    policy: PolicyKind,
    seed: u64,
    params: Params,
) -> Result<RunResult, ExperimentError> {
    let start = Timestamp::EPOCH;
    // Nodes sorted by name, then shuffled: the position is the tie-breaking rank.
    let mut order: Vec<usize> = (0..fleet.node_count()).collect();
    let names: Vec<&str> = fleet.nodes().map(|(_, _, n)| n.name.as_str()).collect();
    order.sort_by(|a, b| names[*a].cmp(names[*b]));
    order.shuffle(&mut crate::rng(seed, STREAM_NODES));
    let state = ClusterState::from_fleet_ordered(fleet, start, &order)?;
    let capacity = u64::from(state.gpu_capacity().0);
    if capacity == 0 {
        return Err(ExperimentError::NoGpus);
    }
    let typical = typical_pods(fleet, workload.pods, params.coverage_pct);
    let resolved = typical.resolve(&state);
    let scheduler = Scheduler::with_state(
        state,
        fleet,
        policy.build(&typical),
        SchedulerConfig {
            drop_unschedulable: true,
            max_candidates: params.max_candidates,
            priority_preemption: false,
            fair_share: false,
            backfill: gigawatt_core::BackfillConfig::OFF,
        },
    );
    let arrivals = inflate(workload.pods, capacity, params.ratio, &mut crate::rng(seed, STREAM_WORKLOAD));
    let mut sim = Simulation::new(scheduler, crate::rng(seed, STREAM_POLICY), start);
    for (i, a) in arrivals.iter().enumerate() {
        let pod = &workload.pods[a.pod];
        let name = match a.clone {
            None => pod.name.clone(),
            Some(c) => format!("{}-tuned-{c}", pod.name),
        };
        let w = Workload {
            id: WorkloadId(i as u64),
            name,
            tenant: TenantId("openb".into()),
            priority: PriorityClass::Standard,
            data_class: DataClass::Public,
            demand: pod.demand(&|m| canonical(fleet, m)),
            shape: Shape::Single,
            duration: None,
            time_limit: None,
            pins: Default::default(),
        };
        sim.schedule(Timestamp::from_secs(i as i64), Event::Arrival(w));
    }

    // Per-node weighted fragmentation, updated only where a node changed.
    let nodes = &sim.scheduler().state().nodes;
    let mut versions: Vec<u64> = nodes.iter().map(|n| n.version).collect();
    let mut frag: Vec<u64> = nodes.iter().map(|n| resolved.node(n)).collect();
    let mut frag_sum: u64 = frag.iter().sum();
    let mut arrived: u64 = 0;
    let mut failed = 0usize;
    let mut rows: Vec<(f64, f64, f64)> = Vec::with_capacity(arrivals.len());
    let mut allocated: u64 = 0;
    sim.run(|sched, _, event, decisions| {
        if let Event::Arrival(w) = event {
            arrived += u64::from(w.demand.gpu.total().0);
        }
        for d in decisions {
            if matches!(d, Decision::Rejected { .. }) {
                failed += 1;
            }
        }
        let state = sched.state();
        allocated = 0;
        for (i, n) in state.nodes.iter().enumerate() {
            allocated += u64::from(n.gpu_allocated().0);
            if n.version != versions[i] {
                versions[i] = n.version;
                frag_sum -= frag[i];
                frag[i] = resolved.node(n);
                frag_sum += frag[i];
            }
        }
        let idle = capacity - allocated;
        let frag_milli = frag_sum as f64 / resolved.total() as f64;
        let frag_ratio = if idle == 0 { 0.0 } else { 100.0 * frag_milli / idle as f64 };
        rows.push((
            arrived as f64 * 100.0 / capacity as f64,
            allocated as f64 * 100.0 / capacity as f64,
            frag_ratio,
        ));
    })?;
    let _ = node_fragmentation;
    Ok(RunResult {
        workload: workload.name.clone(),
        policy: policy.as_str().to_string(),
        seed,
        pods: arrivals.len(),
        failed,
        arrived_pct_final: rows.last().map_or(0.0, |r| r.0),
        alloc_pct_final: rows.last().map_or(0.0, |r| r.1),
        buckets: bucketize(&rows, (params.ratio * 100.0).round() as u32),
    })
}

/// Buckets per-pod rows `(arrived %, alloc %, frag ratio %)` the way the reference's
/// analysis does: arrived % rounded half-to-even, allocation % rounded to 2 decimals,
/// mean per bucket; an empty bucket borrows the rows within ±1.
#[must_use]
pub fn bucketize(rows: &[(f64, f64, f64)], max_bucket: u32) -> Vec<Bucket> {
    let keyed: Vec<(i64, f64, f64)> = rows
        .iter()
        .map(|(a, al, f)| (a.round_ties_even() as i64, (al * 100.0).round_ties_even() / 100.0, *f))
        .collect();
    let mut out = Vec::new();
    for b in 0..=i64::from(max_bucket) {
        let mut pick: Vec<&(i64, f64, f64)> = keyed.iter().filter(|r| r.0 == b).collect();
        if pick.is_empty() {
            pick = keyed.iter().filter(|r| (r.0 - b).abs() <= 1).collect();
        }
        if pick.is_empty() {
            continue;
        }
        let n = pick.len() as f64;
        let alloc = pick.iter().map(|r| r.1).sum::<f64>() / n;
        let frag = pick.iter().map(|r| r.2).sum::<f64>() / n;
        out.push(Bucket {
            arrived_pct: b as u32,
            alloc_pct: (alloc * 100.0).round_ties_even() / 100.0,
            frag_ratio_pct: frag,
        });
    }
    out
}

/// One row of the summary: a (workload, policy, bucket) across seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryRow {
    /// Workload file stem.
    pub workload: String,
    /// Policy name.
    pub policy: String,
    /// Arrived-% bucket.
    pub arrived_pct: u32,
    /// Mean allocation % across seeds.
    pub alloc_pct_mean: f64,
    /// Sample standard deviation of allocation % across seeds (0 with one seed).
    pub alloc_pct_std: f64,
    /// Mean fragmentation ratio % across seeds.
    pub frag_ratio_pct_mean: f64,
    /// Number of seeds averaged.
    pub seeds: usize,
    /// The paper's published allocation % for this workload and policy at 130%, where
    /// one exists and this is the 130% bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_alloc_pct: Option<f64>,
}

/// Averages runs across seeds, per workload, policy and bucket, in input order of
/// workloads and policies.
#[must_use]
pub fn summarize(runs: &[RunResult]) -> Vec<SummaryRow> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in runs {
        let k = (r.workload.clone(), r.policy.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut out = Vec::new();
    for (workload, policy) in keys {
        let group: Vec<&RunResult> =
            runs.iter().filter(|r| r.workload == workload && r.policy == policy).collect();
        let mut buckets: Vec<u32> =
            group.iter().flat_map(|r| r.buckets.iter().map(|b| b.arrived_pct)).collect();
        buckets.sort_unstable();
        buckets.dedup();
        for b in buckets {
            let vals: Vec<&Bucket> =
                group.iter().filter_map(|r| r.buckets.iter().find(|x| x.arrived_pct == b)).collect();
            let n = vals.len() as f64;
            let mean = vals.iter().map(|v| v.alloc_pct).sum::<f64>() / n;
            let var = if vals.len() > 1 {
                vals.iter().map(|v| (v.alloc_pct - mean).powi(2)).sum::<f64>() / (n - 1.0)
            } else {
                0.0
            };
            let published = if b == 130 {
                policy.parse::<PolicyKind>().ok().and_then(|p| reference::published(&workload, p))
            } else {
                None
            };
            out.push(SummaryRow {
                workload: workload.clone(),
                policy: policy.clone(),
                arrived_pct: b,
                alloc_pct_mean: round4(mean),
                alloc_pct_std: round4(var.sqrt()),
                frag_ratio_pct_mean: round4(vals.iter().map(|v| v.frag_ratio_pct).sum::<f64>() / n),
                seeds: vals.len(),
                published_alloc_pct: published,
            });
        }
    }
    out
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Runs every (workload, policy, seed) combination on `threads` threads. Results come
/// back in a fixed order (workload, policy, seed) whatever the threads did, so output is
/// byte-identical from run to run. `progress` is called after each run.
pub fn run_matrix(
    fleet: &Fleet,
    workloads: &[WorkloadFile<'_>],
    policies: &[PolicyKind],
    seeds: &[u64],
    params: Params,
    threads: usize,
    progress: &(dyn Fn(&RunResult) + Sync),
) -> Result<Vec<RunResult>, ExperimentError> {
    let mut jobs = Vec::new();
    for (w, workload) in workloads.iter().enumerate() {
        for (p, policy) in policies.iter().enumerate() {
            for (s, seed) in seeds.iter().enumerate() {
                jobs.push(((w, p, s), workload, *policy, *seed));
            }
        }
    }
    let next = AtomicUsize::new(0);
    type Keyed = ((usize, usize, usize), Result<RunResult, ExperimentError>);
    let results: Mutex<Vec<Keyed>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((key, workload, policy, seed)) = jobs.get(i) else {
                        break;
                    };
                    let r = run(fleet, workload, *policy, *seed, params);
                    if let Ok(ok) = &r {
                        progress(ok);
                    }
                    if let Ok(mut guard) = results.lock() {
                        guard.push((*key, r));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    results.sort_by_key(|(k, _)| *k);
    results.into_iter().map(|(_, r)| r).collect()
}
