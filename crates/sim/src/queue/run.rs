//! The event loop of `gigawatt sim queue`: a standing queue on a synthetic fleet.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use gigawatt_core::{
    BackfillConfig, CoreError, Decision, Event, FlavourQuota, FlavourSpec, Quotas, Scheduler,
    SchedulerConfig, TenantQuota, WorkloadId,
};
use gigawatt_units::{GpuMilliTotal, Seconds, Timestamp};
use rand::Rng;

use super::workload::{self, Job, JobKind, Tenant};
use super::{QueueParams, QueuePolicy, QueueRun, QueueSummary, TenantShare};
use crate::synthetic::{FleetSpec, RunQueueWait, START};

const STREAM_TENANTS: u64 = 40;
const STREAM_JOBS: u64 = 41;
const STREAM_CORE: u64 = 42;

/// What the loop knows of one job.
#[derive(Debug, Clone)]
struct JobState {
    tenant: u32,
    kind: JobKind,
    /// 0: standard or above; 1: best effort (entitled to nothing: see `sample_shares`).
    layer: usize,
    gpus: u64,
    submitted: Timestamp,
    runtime: Seconds,
    /// Bumped at each preemption: a completion of an older run is stale.
    generation: u32,
    running: bool,
    waited: Option<f64>,
    /// Submitted in a burst (one of 200 to 2,000 jobs at once).
    burst: bool,
    /// Standard work of a tenant that, with it, wanted no more than its fair share at
    /// the last sample: what fair share promises a short wait.
    within_share: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Tick,
    Done(u64, u32),
}

/// The flavours of the experiment: French sites and the rest of Europe.
fn flavours(fleet: &gigawatt_fleet::Fleet) -> Vec<FlavourSpec> {
    let fr: Vec<String> = fleet.sites.iter().filter(|s| s.country.0 == "FR").map(|s| s.id.clone()).collect();
    let rest: Vec<String> =
        fleet.sites.iter().filter(|s| s.country.0 != "FR").map(|s| s.id.clone()).collect();
    let mut out = Vec::new();
    if !fr.is_empty() {
        out.push(FlavourSpec { name: "gpu-fr".into(), models: vec![], sites: fr, regions: vec![] });
    }
    if !rest.is_empty() {
        out.push(FlavourSpec { name: "gpu-eu".into(), models: vec![], sites: rest, regions: vec![] });
    }
    out
}

/// Quotas: every tenant in one cohort, nominal = its weight's share of each flavour,
/// borrowing and lending unlimited (work-conserving: fairness comes from the order).
fn quotas(fleet: &gigawatt_fleet::Fleet, tenants: &mut [Tenant]) -> Quotas {
    let flavours = flavours(fleet);
    let caps: Vec<u64> = flavours
        .iter()
        .map(|f| {
            fleet
                .sites
                .iter()
                .filter(|s| f.sites.contains(&s.id))
                .flat_map(|s| s.racks.iter().flat_map(|r| r.nodes.iter()))
                .map(|n| u64::from(n.gpu_count) * 1000)
                .sum()
        })
        .collect();
    let total: u64 = tenants.iter().map(|t| u64::from(t.weight)).sum();
    let mut q = Quotas { flavours: flavours.clone(), ..Quotas::default() };
    q.cohorts.insert("cloud".into(), gigawatt_core::CohortSpec::default());
    for t in tenants.iter_mut() {
        let mut fq = BTreeMap::new();
        let mut largest = 0;
        for (f, cap) in flavours.iter().zip(&caps) {
            let nominal = cap * u64::from(t.weight) / total.max(1);
            largest = largest.max(nominal / 1000);
            fq.insert(
                f.name.clone(),
                FlavourQuota { nominal: GpuMilliTotal(nominal), ..FlavourQuota::default() },
            );
        }
        t.max_gang_gpus = largest;
        q.tenants.insert(
            t.id.clone(),
            TenantQuota {
                cohort: Some("cloud".into()),
                weight: t.weight,
                flavours: fq,
                power: BTreeMap::new(),
                energy: None,
            },
        );
    }
    q
}

/// Runs one policy.
///
/// # Errors
/// If the core refuses an event (a bug) or the fleet cannot be built.
pub fn run(params: &QueueParams, policy: QueuePolicy) -> Result<QueueRun, CoreError> {
    let racks = params.gpus.div_ceil(64).max(1);
    let spec =
        FleetSpec { seed: params.seed, sites: 7.min(racks), racks, nodes_per_rack: 8, racks_per_domain: 16 };
    let fleet = crate::synthetic::try_fleet(&spec).map_err(|d| CoreError::Fleet(d.to_string()))?;
    let mut trng = crate::rng(params.seed, STREAM_TENANTS);
    let mut tenants = workload::tenants(params.tenants.max(1), &mut trng);
    let mut quota = quotas(&fleet, &mut tenants);
    quota.fair_share = params.fair_share;
    let config = SchedulerConfig {
        drop_unschedulable: false,
        max_candidates: Some(gigawatt_core::DEFAULT_MAX_CANDIDATES),
        priority_preemption: true,
        fair_share: policy != QueuePolicy::Fifo,
        backfill: if policy == QueuePolicy::FairBackfill {
            BackfillConfig {
                max_reservations: params.reservations,
                fair_preemptions: params.fair_preemptions,
                ..BackfillConfig::default()
            }
        } else {
            BackfillConfig { fair_preemptions: params.fair_preemptions, ..BackfillConfig::OFF }
        },
    };
    let pods = crate::synthetic::typical_pods(params.seed);
    let mut sched = Scheduler::new(&fleet, params.placement.build(&pods), config, START)?;
    if policy != QueuePolicy::Fifo {
        sched.set_quotas(quota).map_err(|e| CoreError::Fleet(e.to_string()))?;
    }
    let mut sim = Sim {
        sched,
        rng: crate::rng(params.seed, STREAM_CORE),
        jrng: crate::rng(params.seed, STREAM_JOBS),
        demand_total: tenants.iter().map(|t| t.demand).sum(),
        tenants,
        jobs: HashMap::new(),
        heap: BinaryHeap::new(),
        now: START,
        next_id: 0,
        seq: 0,
        usage: Vec::new(),
        pending_gpus: Vec::new(),
        event_cpu: Vec::new(),
        tick_cpu: Vec::new(),
        waits: RunQueueWait::open(),
        preempted: 0,
        reclaimed: 0,
        fair_preempted: 0,
        big_waiting: Vec::new(),
        rejected: 0,
        started: 0,
        waits_by_kind: BTreeMap::new(),
        small_waits: [Vec::new(), Vec::new()],
        small_within_waits: Vec::new(),
        // No tenant's share is known before the first sample: the initial queue, all
        // submitted at once, counts as above it.
        level: 0.0,
        warmup: START + Seconds(params.duration.0 * 0.2),
    };
    sim.usage = vec![[0; 2]; sim.tenants.len()];
    sim.pending_gpus = vec![[0; 2]; sim.tenants.len()];
    sim.big_waiting = vec![0; sim.tenants.len()];
    let capacity = f64::from(sim.sched.state().gpu_capacity().0) / 1000.0;
    let end = START + params.duration;
    let warmup = sim.warmup;
    sim.push(START, Ev::Tick);
    sim.replenish(params.pending)?;
    let mut series = Vec::new();
    let (mut util_sum, mut util_n) = (0.0, 0u64);
    let mut used = vec![0.0f64; sim.tenants.len()];
    let mut entitled = vec![0.0f64; sim.tenants.len()];
    let mut backlogged = vec![false; sim.tenants.len()];
    while let Some(Reverse((at, _, ev))) = sim.heap.pop() {
        let at = Timestamp(at);
        if at > end {
            break;
        }
        sim.now = at;
        match ev {
            Ev::Tick => {
                let (d, cpu) = sim.handle(Event::Tick)?;
                sim.tick_cpu.push(cpu);
                sim.apply(&d);
                let util = f64::from(sim.sched.state().gpu_allocated().0) / 1000.0 / capacity;
                series.push((at.since(START).0 / 3600.0, util * 100.0));
                let count = at >= warmup;
                if count {
                    util_sum += util;
                    util_n += 1;
                }
                sim.sample_shares(capacity, count, &mut used, &mut entitled, &mut backlogged);
                sim.push(at + params.tick, Ev::Tick);
            }
            Ev::Done(id, generation) => {
                let live = sim.jobs.get(&id).is_some_and(|j| j.running && j.generation == generation);
                if !live {
                    continue;
                }
                let (d, cpu) = sim.handle(Event::Completion(WorkloadId(id)))?;
                sim.event_cpu.push(cpu);
                if let Some(j) = sim.jobs.remove(&id) {
                    sim.usage[j.tenant as usize][j.layer] -= j.gpus;
                }
                sim.apply(&d);
            }
        }
        sim.replenish(params.pending)?;
    }
    Ok(sim.finish(
        params,
        policy,
        end,
        util_sum / util_n.max(1) as f64,
        series,
        &used,
        &entitled,
        &backlogged,
    ))
}

struct Sim {
    sched: Scheduler,
    rng: gigawatt_core::CoreRng,
    jrng: gigawatt_core::CoreRng,
    tenants: Vec<Tenant>,
    demand_total: f64,
    jobs: HashMap<u64, JobState>,
    heap: BinaryHeap<Reverse<(i64, u64, Ev)>>,
    now: Timestamp,
    next_id: u64,
    seq: u64,
    /// GPUs each tenant holds, per layer (standard or above, best effort).
    usage: Vec<[u64; 2]>,
    /// GPUs each tenant has waiting, per layer.
    pending_gpus: Vec<[u64; 2]>,
    event_cpu: Vec<Duration>,
    tick_cpu: Vec<Duration>,
    waits: RunQueueWait,
    preempted: u64,
    reclaimed: u64,
    fair_preempted: u64,
    big_waiting: Vec<u32>,
    rejected: u64,
    started: u64,
    /// Waits of the jobs that started after the warm-up, by kind.
    waits_by_kind: BTreeMap<JobKind, Vec<f64>>,
    /// Waits of single-task jobs submitted alone (0) and in bursts (1).
    small_waits: [Vec<f64>; 2],
    /// Waits of single-task jobs submitted within their tenant's fair share.
    small_within_waits: Vec<f64>,
    /// The water level of the last sample: GPUs per unit of weight that every tenant
    /// wanting more is entitled to.
    level: f64,
    warmup: Timestamp,
}

impl Sim {
    fn push(&mut self, at: Timestamp, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((at.0, self.seq, ev)));
    }

    /// One core call, timed on the CPU (wall time less the wait for a CPU).
    fn handle(&mut self, event: Event) -> Result<(Vec<Decision>, Duration), CoreError> {
        let before = self.waits.read();
        let t = Instant::now();
        let d = self.sched.handle(self.now, event, &mut self.rng)?;
        let wall = t.elapsed();
        let waited = match (before, self.waits.read()) {
            (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)).min(wall),
            _ => Duration::ZERO,
        };
        Ok((d, wall - waited))
    }

    /// Submits jobs until about `target` wait.
    fn replenish(&mut self, target: usize) -> Result<(), CoreError> {
        while self.sched.pending_count() < target {
            let tenant = self.pick_tenant();
            let burst = if self.jrng.random_ratio(1, 200) { self.jrng.random_range(200..=2000) } else { 1 };
            for _ in 0..burst {
                self.submit(tenant, burst > 1)?;
            }
        }
        Ok(())
    }

    fn pick_tenant(&mut self) -> usize {
        let mut x = self.jrng.random_range(0.0..self.demand_total);
        for (i, t) in self.tenants.iter().enumerate() {
            x -= t.demand;
            if x <= 0.0 {
                return i;
            }
        }
        self.tenants.len() - 1
    }

    fn submit(&mut self, tenant: usize, burst: bool) -> Result<(), CoreError> {
        self.next_id += 1;
        // A team has one big training run waiting at a time: while it has one, it
        // submits something else.
        let mut drawn = workload::job(self.next_id, &self.tenants[tenant], &mut self.jrng);
        while drawn.kind == JobKind::BigGang && self.big_waiting[tenant] > 0 {
            drawn = workload::job(self.next_id, &self.tenants[tenant], &mut self.jrng);
        }
        let Job { workload, kind, runtime } = drawn;
        if kind == JobKind::BigGang {
            self.big_waiting[tenant] += 1;
        }
        let gpus = u64::from(workload.demand.gpu.count) * u64::from(workload.shape.tasks());
        let layer = usize::from(workload.priority == gigawatt_core::PriorityClass::BestEffort);
        let wants = (self.usage[tenant][0] + self.pending_gpus[tenant][0] + gpus) as f64;
        let within_share = layer == 0 && wants <= self.level * f64::from(self.tenants[tenant].weight);
        self.jobs.insert(
            self.next_id,
            JobState {
                tenant: tenant as u32,
                kind,
                layer,
                gpus,
                submitted: self.now,
                runtime,
                generation: 0,
                running: false,
                waited: None,
                burst,
                within_share,
            },
        );
        self.pending_gpus[tenant][layer] += gpus;
        let (d, cpu) = self.handle(Event::Arrival(workload))?;
        self.event_cpu.push(cpu);
        self.apply(&d);
        Ok(())
    }

    fn apply(&mut self, decisions: &[Decision]) {
        for d in decisions {
            match d {
                Decision::Placed { workload, .. } => {
                    let id = workload.0;
                    let Some(j) = self.jobs.get_mut(&id) else { continue };
                    if j.running {
                        continue;
                    }
                    j.running = true;
                    if j.waited.is_none() {
                        let w = self.now.since(j.submitted).0;
                        j.waited = Some(w);
                        self.started += 1;
                        if self.now >= self.warmup {
                            self.waits_by_kind.entry(j.kind).or_default().push(w);
                            if j.kind == JobKind::Small {
                                self.small_waits[usize::from(j.burst)].push(w);
                                if j.within_share {
                                    self.small_within_waits.push(w);
                                }
                            }
                        }
                    }
                    let (t, l, gpus, generation, runtime) =
                        (j.tenant as usize, j.layer, j.gpus, j.generation, j.runtime);
                    if j.kind == JobKind::BigGang && j.generation == 0 {
                        self.big_waiting[t] -= 1;
                    }
                    self.usage[t][l] += gpus;
                    self.pending_gpus[t][l] -= gpus;
                    self.push(self.now + runtime, Ev::Done(id, generation));
                }
                Decision::Preempted { workload, why } => {
                    let Some(j) = self.jobs.get_mut(&workload.0) else { continue };
                    if matches!(why, gigawatt_core::PreemptWhy::Reclaim { .. }) {
                        self.reclaimed += 1;
                    }
                    if matches!(why, gigawatt_core::PreemptWhy::FairShare { .. }) {
                        self.fair_preempted += 1;
                    }
                    if j.running {
                        j.running = false;
                        j.generation += 1;
                        self.usage[j.tenant as usize][j.layer] -= j.gpus;
                        self.pending_gpus[j.tenant as usize][j.layer] += j.gpus;
                        self.preempted += 1;
                    }
                }
                Decision::Rejected { workload, .. } => {
                    if let Some(j) = self.jobs.remove(&workload.0) {
                        self.pending_gpus[j.tenant as usize][j.layer] -= j.gpus;
                        self.rejected += 1;
                    }
                }
                Decision::Pending { .. } | Decision::Released { .. } => {}
            }
        }
    }

    /// Adds one sample of use and entitlement for every tenant that wants GPUs for
    /// standard (or latency-critical) work, holding some or waiting for some, and marks
    /// those with such work waiting as backlogged.
    ///
    /// Entitlements are max-min fair (water-filling, as in DRF): the fleet is shared by
    /// weight, a tenant never being entitled to more than it asks for (what it holds
    /// plus what it has waiting), and what it leaves goes to the others by weight. A
    /// tenant that holds more than its share without wanting more is entitled to its
    /// share only, so it counts as above it. Best-effort work is left out of both sides:
    /// it is entitled to nothing (it runs on what the rest leaves, and any standard
    /// work preempts it).
    /// Before the warm-up's end (`count` false) only the water level is kept.
    fn sample_shares(
        &mut self,
        capacity: f64,
        count: bool,
        used: &mut [f64],
        entitled: &mut [f64],
        backlogged: &mut [bool],
    ) {
        let active: Vec<usize> =
            (0..self.tenants.len()).filter(|i| self.usage[*i][0] + self.pending_gpus[*i][0] > 0).collect();
        if active.is_empty() {
            return;
        }
        let wants: Vec<f64> =
            active.iter().map(|i| (self.usage[*i][0] + self.pending_gpus[*i][0]) as f64).collect();
        let weights: Vec<f64> = active.iter().map(|i| f64::from(self.tenants[*i].weight)).collect();
        let mut fair = vec![0.0; active.len()];
        self.level = water_fill(capacity, &wants, &weights, &mut fair);
        if !count {
            return;
        }
        for (k, i) in active.into_iter().enumerate() {
            used[i] += self.usage[i][0] as f64;
            entitled[i] += fair[k];
            backlogged[i] |= self.pending_gpus[i][0] > 0;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        self,
        params: &QueueParams,
        policy: QueuePolicy,
        end: Timestamp,
        utilisation: f64,
        series: Vec<(f64, f64)>,
        used: &[f64],
        entitled: &[f64],
        backlogged: &[bool],
    ) -> QueueRun {
        let mut waits = self.waits_by_kind;
        let [mut solo, mut burst] = self.small_waits;
        let mut within = self.small_within_waits;
        let mut small = waits.remove(&JobKind::Small).unwrap_or_default();
        let mut gangs = waits.remove(&JobKind::Gang).unwrap_or_default();
        let big = waits.remove(&JobKind::BigGang).unwrap_or_default();
        let mut big_max: f64 = big.iter().copied().fold(0.0, f64::max);
        let big_started = big.len() as u64;
        let mut starved = 0;
        // A big gang still waiting at the end after half the run (a day at most) starves.
        let starve_after = (params.duration.0 / 2.0).min(86_400.0);
        let mut starved_reserved = 0;
        for (id, j) in &self.jobs {
            if j.kind == JobKind::BigGang && j.waited.is_none() {
                let w = end.since(j.submitted).0;
                big_max = big_max.max(w);
                if w >= starve_after {
                    starved += 1;
                    if self.sched.expected_start(WorkloadId(*id)).is_some() {
                        starved_reserved += 1;
                    }
                }
            }
        }
        let mut shares = Vec::new();
        let mut xs = Vec::new();
        for (i, t) in self.tenants.iter().enumerate() {
            if backlogged[i] && entitled[i] > 0.0 {
                let x = used[i] / entitled[i];
                xs.push(x);
                shares.push(TenantShare {
                    tenant: t.id.0.clone(),
                    weight: t.weight,
                    used: used[i],
                    entitled: entitled[i],
                });
            }
        }
        let jain = if xs.is_empty() {
            1.0
        } else {
            let s: f64 = xs.iter().sum();
            let s2: f64 = xs.iter().map(|x| x * x).sum();
            s * s / (xs.len() as f64 * s2.max(f64::MIN_POSITIVE))
        };
        let pct = |v: &mut Vec<f64>, q: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            v.sort_by(f64::total_cmp);
            v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
        };
        let mut ev: Vec<f64> = self.event_cpu.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        let busy: f64 = ev.iter().sum::<f64>() / 1e6;
        let mut ticks: Vec<f64> = self.tick_cpu.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        let (classes, active, parked) = self.sched.queue_stats();
        let summary = QueueSummary {
            policy: policy.as_str().to_string(),
            gpu_utilisation_pct: utilisation * 100.0,
            jain_fairness: jain,
            small_wait_p50_s: pct(&mut small, 0.5),
            small_wait_p99_s: pct(&mut small, 0.99),
            small_alone_wait_p50_s: pct(&mut solo, 0.5),
            small_burst_wait_p50_s: pct(&mut burst, 0.5),
            small_within_share_wait_p50_s: pct(&mut within, 0.5),
            small_within_share_pct: 100.0 * within.len() as f64 / small.len().max(1) as f64,
            gang_wait_p50_s: pct(&mut gangs, 0.5),
            gang_wait_p99_s: pct(&mut gangs, 0.99),
            big_gang_wait_max_s: big_max,
            big_gangs_started: big_started,
            starved_big_gangs: starved,
            starved_big_gangs_reserved: starved_reserved,
            event_p50_us: pct(&mut ev, 0.5),
            event_p99_us: pct(&mut ev, 0.99),
            event_max_us: ev.last().copied().unwrap_or(0.0),
            events: self.event_cpu.len() as u64,
            events_per_s: self.event_cpu.len() as f64 / busy.max(f64::MIN_POSITIVE),
            core_cpu_s: busy + self.tick_cpu.iter().map(Duration::as_secs_f64).sum::<f64>(),
            tick_p50_ms: pct(&mut ticks, 0.5),
            tick_p99_ms: pct(&mut ticks, 0.99),
            tick_max_ms: ticks.last().copied().unwrap_or(0.0),
            ticks: self.tick_cpu.len() as u64,
            pending_at_end: self.sched.pending_count() as u64,
            started: self.started,
            preempted: self.preempted,
            reclaimed: self.reclaimed,
            fair_preempted: self.fair_preempted,
            rejected: self.rejected,
            classes: classes as u64,
            active_classes: active as u64,
            parked_tenants: parked as u64,
        };
        QueueRun { summary, series, shares }
    }
}

/// Max-min fair entitlements (water-filling): each tenant gets `level × weight`, except
/// those that want less, which get what they want; what they leave raises the level for
/// the others. `wants[i]` and `weights[i]` are tenant `i`'s demand and weight; `out[i]`
/// receives its entitlement. `capacity` is what the tenants share. Returns the level
/// (entitlement per unit of weight of those that want more; infinite when all are
/// served).
pub(crate) fn water_fill(capacity: f64, wants: &[f64], weights: &[f64], out: &mut [f64]) -> f64 {
    let mut order: Vec<usize> = (0..wants.len()).filter(|i| weights[*i] > 0.0).collect();
    order.sort_by(|a, b| (wants[*a] / weights[*a]).total_cmp(&(wants[*b] / weights[*b])).then(a.cmp(b)));
    let mut left = capacity.max(0.0);
    let mut weight: f64 = order.iter().map(|i| weights[*i]).sum();
    for (k, &i) in order.iter().enumerate() {
        let level = left / weight;
        if wants[i] <= level * weights[i] {
            out[i] = wants[i];
            left -= wants[i];
            weight -= weights[i];
        } else {
            for &j in &order[k..] {
                out[j] = level * weights[j];
            }
            return level;
        }
    }
    f64::INFINITY
}
