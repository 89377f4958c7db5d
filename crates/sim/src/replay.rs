//! Production replay: pods arrive at their trace creation time and leave at their
//! deletion time, on the virtual clock, through the production scheduler configuration
//! (queue what does not fit, preempt lower priorities).
//!
//! Where the FGD experiment asks "how well does a policy pack?", the replay asks what a
//! user of the cluster would see: how long work waits, how much is preempted, how busy
//! the GPUs are over time. The trace's QoS classes map to priorities: LS →
//! latency-critical, Guaranteed and Burstable → standard, BE → best-effort.

use std::collections::HashMap;

use gigawatt_core::{
    CoreError, DataClass, Decision, Event, PolicyKind, PriorityClass, Scheduler, SchedulerConfig, Shape,
    TenantId, Workload, WorkloadId, WorkloadStatus,
};
use gigawatt_fleet::Fleet;
use gigawatt_units::{Seconds, Timestamp};
use serde::Serialize;

use crate::engine::Simulation;
use crate::fgd::typical_pods;
use crate::openb::OpenbPod;

/// Replay settings.
#[derive(Debug, Clone, Copy)]
pub struct ReplayParams {
    /// Placement policy.
    pub policy: PolicyKind,
    /// Seed of the core's RNG.
    pub seed: u64,
    /// Candidate search bound (`None`: exact).
    pub max_candidates: Option<u32>,
    /// Points kept in the timeline.
    pub timeline_points: usize,
    /// Arrival-rate multiplier: arrival times are divided by this, durations kept, so the
    /// offered load grows by this factor (1 = the trace as recorded).
    pub speedup: f64,
}

/// A distribution of waits, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Waits {
    /// Pods that waited at all (placed later than they arrived).
    pub waited: usize,
    /// Mean wait over all placed pods.
    pub mean_s: f64,
    /// Median wait.
    pub p50_s: f64,
    /// 99th percentile wait.
    pub p99_s: f64,
    /// Longest wait.
    pub max_s: f64,
}

/// One point of the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Virtual time, seconds from the first arrival.
    pub t_s: f64,
    /// GPU share allocated, % of capacity.
    pub alloc_pct: f64,
    /// Workloads waiting.
    pub pending: usize,
}

/// What the replay measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// Policy name.
    pub policy: String,
    /// Seed.
    pub seed: u64,
    /// Pods replayed.
    pub pods: usize,
    /// Pods skipped: no creation/deletion time, or deletion not after creation.
    pub skipped: usize,
    /// Pods rejected outright (can never fit).
    pub rejected: usize,
    /// Pods that ran to completion.
    pub completed: usize,
    /// Pods still waiting when the trace ended.
    pub never_placed: usize,
    /// Preemptions (a pod can be preempted more than once).
    pub preemptions: usize,
    /// Time from arrival to first placement.
    pub waits: Waits,
    /// Most workloads waiting at once.
    pub peak_pending: usize,
    /// Time-weighted mean GPU allocation, % of capacity, from the first arrival to the last
    /// (the window where the trace offers load; long runners drain after it).
    pub alloc_pct_mean: f64,
    /// Highest GPU allocation reached, %.
    pub alloc_pct_peak: f64,
    /// Allocation and queue over time.
    pub timeline: Vec<Sample>,
}

fn priority(qos: Option<&str>) -> PriorityClass {
    match qos {
        Some("LS") => PriorityClass::LatencyCritical,
        Some("BE") => PriorityClass::BestEffort,
        _ => PriorityClass::Standard,
    }
}

/// Replays `pods` on `fleet`.
pub fn replay(fleet: &Fleet, pods: &[OpenbPod], params: ReplayParams) -> Result<ReplayReport, CoreError> {
    let start = Timestamp::EPOCH;
    let typical = typical_pods(fleet, pods, 95);
    let config = SchedulerConfig {
        drop_unschedulable: false,
        max_candidates: params.max_candidates,
        priority_preemption: true,
        fair_share: false,
        backfill: gigawatt_core::BackfillConfig::OFF,
    };
    let scheduler = Scheduler::new(fleet, params.policy.build(&typical), config, start)?;
    let capacity = f64::from(scheduler.state().gpu_capacity().0.max(1));
    let mut sim = Simulation::new(scheduler, crate::rng(params.seed, 4), start);
    let canon = |m: &str| fleet.catalog.get(m).map_or_else(|| m.to_string(), |g| g.id.clone());
    let mut arrival: HashMap<WorkloadId, Timestamp> = HashMap::new();
    let mut skipped = 0usize;
    for (i, p) in pods.iter().enumerate() {
        let (Some(c), Some(d)) = (p.creation_time, p.deletion_time) else {
            skipped += 1;
            continue;
        };
        if d <= c {
            skipped += 1;
            continue;
        }
        let id = WorkloadId(i as u64);
        let at = Timestamp((c as f64 * 1000.0 / params.speedup.max(1e-9)).round() as i64);
        arrival.insert(id, at);
        sim.schedule(
            at,
            Event::Arrival(Workload {
                id,
                name: p.name.clone(),
                tenant: TenantId("openb".into()),
                priority: priority(p.qos.as_deref()),
                data_class: DataClass::Public,
                demand: p.demand(&canon),
                shape: Shape::Single,
                duration: Some(Seconds((d - c) as f64)),
                time_limit: None,
                pins: Default::default(),
            }),
        );
    }
    let mut waits: Vec<f64> = Vec::new();
    let (mut rejected, mut completed, mut preemptions, mut peak_pending) = (0, 0, 0, 0);
    let mut first_placed: HashMap<WorkloadId, ()> = HashMap::new();
    let mut raw: Vec<Sample> = Vec::new();
    let (mut area, mut last_t, mut last_alloc, mut peak_alloc) = (0.0f64, None::<f64>, 0.0f64, 0.0f64);
    let last_arrival = arrival.values().max().map_or(0.0, |t| t.since(start).0);
    sim.run(|sched, at, event, decisions| {
        for d in decisions {
            match d {
                Decision::Placed { workload, .. } => {
                    if sched.status(*workload) == Some(WorkloadStatus::Running)
                        && first_placed.insert(*workload, ()).is_none()
                        && let Some(a) = arrival.get(workload)
                    {
                        waits.push(at.since(*a).0);
                    }
                }
                Decision::Rejected { .. } => rejected += 1,
                Decision::Preempted { .. } => preemptions += 1,
                Decision::Released { .. } if matches!(event, Event::Completion(_)) => completed += 1,
                _ => {}
            }
        }
        let t = at.since(start).0;
        let alloc = 100.0 * f64::from(sched.state().gpu_allocated().0) / capacity;
        if let Some(lt) = last_t {
            area += last_alloc * (t.min(last_arrival) - lt.min(last_arrival)).max(0.0);
        }
        last_t = Some(t);
        last_alloc = alloc;
        peak_alloc = peak_alloc.max(alloc);
        let pending = sched.pending().count();
        peak_pending = peak_pending.max(pending);
        raw.push(Sample { t_s: t, alloc_pct: alloc, pending });
    })?;
    let first = raw.first().map_or(0.0, |s| s.t_s);
    let span = last_arrival - first;
    let never_placed = sim.scheduler().pending().count();
    waits.sort_by(f64::total_cmp);
    let pct =
        |q: f64| if waits.is_empty() { 0.0 } else { waits[((waits.len() - 1) as f64 * q).round() as usize] };
    let step = (raw.len() / params.timeline_points.max(1)).max(1);
    Ok(ReplayReport {
        policy: params.policy.as_str().to_string(),
        seed: params.seed,
        pods: pods.len() - skipped,
        skipped,
        rejected,
        completed,
        never_placed,
        preemptions,
        waits: Waits {
            waited: waits.iter().filter(|w| **w > 0.0).count(),
            mean_s: if waits.is_empty() { 0.0 } else { waits.iter().sum::<f64>() / waits.len() as f64 },
            p50_s: pct(0.5),
            p99_s: pct(0.99),
            max_s: waits.last().copied().unwrap_or(0.0),
        },
        peak_pending,
        alloc_pct_mean: if span > 0.0 { area / span } else { 0.0 },
        alloc_pct_peak: peak_alloc,
        timeline: raw.into_iter().step_by(step).collect(),
    })
}
