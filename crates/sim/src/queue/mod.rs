//! `gigawatt sim queue`: thousands of tenants and a queue that never empties, on a
//! synthetic multi-site fleet, driven through the same scheduling core as the control
//! plane.
//!
//! Arrivals keep about `pending` workloads waiting at every instant once the fleet is
//! full; each placed workload runs for its drawn runtime (at most its time limit) on a
//! virtual clock, and the periodic pass ([`gigawatt_core::Event::Tick`]) runs every
//! `tick`. Policies compared:
//!
//! * `fifo`: today's order, priority then arrival, no quotas;
//! * `fair`: quotas (one cohort, nominal = entitlement, borrowing allowed) and fair share;
//! * `fair-backfill`: the same, with reservations for gangs and backfill into them.
//!
//! The workload is described in [`workload`]. Each core call is timed on the CPU (wall
//! time less the time the thread waited for a CPU), so a busy machine inflates nothing.

pub mod run;
pub mod workload;

use gigawatt_core::PolicyKind;
use gigawatt_units::Seconds;
use serde::Serialize;

/// The experiment's parameters.
#[derive(Debug, Clone)]
pub struct QueueParams {
    /// GPUs of the synthetic fleet (8 per server, 8 servers per rack, 16 racks per
    /// network domain, over up to 7 sites).
    pub gpus: usize,
    /// Tenants.
    pub tenants: usize,
    /// The standing queue arrivals keep up.
    pub pending: usize,
    /// Seed of everything random.
    pub seed: u64,
    /// Virtual time simulated.
    pub duration: Seconds,
    /// Interval of the periodic pass.
    pub tick: Seconds,
    /// Placement policy (which node, once admitted).
    pub placement: PolicyKind,
    /// Reservations `fair-backfill` may hold at once.
    pub reservations: u32,
    /// Fair-share preemptions per pass under `fair` and `fair-backfill` (0: none).
    pub fair_preemptions: u32,
    /// Decay of past use and its weight in the fair-share order.
    pub fair_share: gigawatt_core::quota::FairShareConfig,
}

/// A queue policy of the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QueuePolicy {
    /// Priority, then arrival.
    Fifo,
    /// Quotas and fair share.
    Fair,
    /// Quotas, fair share, reservations and backfill.
    FairBackfill,
}

impl QueuePolicy {
    /// Every policy.
    pub const ALL: [QueuePolicy; 3] = [QueuePolicy::Fifo, QueuePolicy::Fair, QueuePolicy::FairBackfill];

    /// Its name on the command line and in reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            QueuePolicy::Fifo => "fifo",
            QueuePolicy::Fair => "fair",
            QueuePolicy::FairBackfill => "fair-backfill",
        }
    }
}

impl std::str::FromStr for QueuePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        QueuePolicy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown queue policy `{s}`; use fifo, fair or fair-backfill"))
    }
}

/// One policy's results: the command's JSON contract.
#[derive(Debug, Clone, Serialize)]
pub struct QueueSummary {
    /// The policy.
    pub policy: String,
    /// Allocated GPUs over capacity, averaged after the warm-up (the first 20%).
    pub gpu_utilisation_pct: f64,
    /// Jain's index, over the tenants that had work waiting at some sample after the
    /// warm-up, of each one's use against its max-min fair entitlement (standard demand
    /// first, then best effort on what it leaves), summed over the samples where it
    /// wanted GPUs (held or waited for them).
    pub jain_fairness: f64,
    /// Waits of single-task jobs that started after the warm-up.
    pub small_wait_p50_s: f64,
    /// 99th percentile of the same.
    pub small_wait_p99_s: f64,
    /// Median wait of the single-task jobs among them that were submitted alone.
    pub small_alone_wait_p50_s: f64,
    /// Median wait of those submitted in a burst of 200 to 2,000 jobs at once, which
    /// fair share makes wait their tenant's turn (kueue#1714's 6 am batch).
    pub small_burst_wait_p50_s: f64,
    /// Median wait of the standard single-task jobs submitted while their tenant, with
    /// them, wanted no more than its fair share (the max-min level of the last sample
    /// times its weight): the jobs fair share promises a short wait.
    pub small_within_share_wait_p50_s: f64,
    /// Their part of the single-task jobs counted, %.
    pub small_within_share_pct: f64,
    /// Waits of gangs of 2 to 16 nodes.
    pub gang_wait_p50_s: f64,
    /// 99th percentile of the same.
    pub gang_wait_p99_s: f64,
    /// The longest wait of any gang of 64 nodes or more, started or still waiting.
    pub big_gang_wait_max_s: f64,
    /// Big gangs that started after the warm-up.
    pub big_gangs_started: u64,
    /// Big gangs still waiting at the end after half the run (a day at most).
    pub starved_big_gangs: u64,
    /// Of those, the ones holding a reservation at the end: nodes and a start that the
    /// time limits of the work on them guarantee (Slurm's guarantee), which may fall
    /// after the run's end since users overestimate limits.
    pub starved_big_gangs_reserved: u64,
    /// Core time per event (arrivals and completions), on the CPU: median.
    pub event_p50_us: f64,
    /// 99th percentile of the same.
    pub event_p99_us: f64,
    /// Slowest event.
    pub event_max_us: f64,
    /// Events (arrivals and completions).
    pub events: u64,
    /// Events per second of core time.
    pub events_per_s: f64,
    /// Core time in all, periodic passes included.
    pub core_cpu_s: f64,
    /// Periodic pass, median, ms on the CPU.
    pub tick_p50_ms: f64,
    /// Slowest periodic pass.
    pub tick_max_ms: f64,
    /// The periodic pass's CPU time, 99th percentile, ms.
    pub tick_p99_ms: f64,
    /// Periodic passes.
    pub ticks: u64,
    /// Workloads waiting at the end.
    pub pending_at_end: u64,
    /// Jobs started.
    pub started: u64,
    /// Preemptions (reclaims and priority).
    pub preempted: u64,
    /// Of those, reclaims of borrowed quota.
    pub reclaimed: u64,
    /// Running workloads preempted by fair sharing among borrowers.
    pub fair_preempted: u64,
    /// Rejections (none expected).
    pub rejected: u64,
    /// Queue classes created.
    pub classes: u64,
    /// Classes with work ready at the end.
    pub active_classes: u64,
    /// (tenant, class) pairs parked on quota at the end.
    pub parked_tenants: u64,
}

/// A tenant's use against its entitlement, summed over the samples where it was
/// backlogged (GPU-samples).
#[derive(Debug, Clone, Serialize)]
pub struct TenantShare {
    /// The tenant.
    pub tenant: String,
    /// Its weight.
    pub weight: u32,
    /// GPUs it held, summed over samples.
    pub used: f64,
    /// GPUs it was entitled to, summed over the same samples.
    pub entitled: f64,
}

/// One policy's run.
#[derive(Debug, Clone)]
pub struct QueueRun {
    /// The figures.
    pub summary: QueueSummary,
    /// (hours, GPU utilisation %) at each periodic pass.
    pub series: Vec<(f64, f64)>,
    /// Per tenant, use against entitlement.
    pub shares: Vec<TenantShare>,
}
