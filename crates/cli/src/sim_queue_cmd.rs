//! `gigawatt sim queue`: quotas, fair share and backfill under a standing queue.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use gigawatt_core::PolicyKind;
use gigawatt_sim::queue::{QueueParams, QueuePolicy, QueueRun, run::run};
use gigawatt_units::Seconds;
use serde::Serialize;

/// Arguments of `gigawatt sim queue`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// GPUs of the synthetic multi-site fleet (8 per server, 64 per rack, 1,024 per
    /// network domain).
    #[arg(long, default_value_t = 200_000)]
    gpus: usize,
    /// Tenants (Zipf-sized: a few large, many small).
    #[arg(long, default_value_t = 10_000)]
    tenants: usize,
    /// The standing queue: arrivals keep about this many workloads waiting.
    #[arg(long, default_value_t = 100_000)]
    pending: usize,
    /// Seed of the fleet, the tenants, the jobs and the core.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Queue policies to compare, comma-separated: fifo, fair, fair-backfill.
    #[arg(long, value_delimiter = ',', default_value = "fifo,fair,fair-backfill")]
    policy: Vec<String>,
    /// Virtual time simulated (e.g. `24h`, `3d`); the first 20% is warm-up.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
    /// Interval of the periodic pass (fair-share decay, reclaim, reservations, backfill).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    tick: std::time::Duration,
    /// Placement policy once a workload is admitted.
    #[arg(long, default_value = "best-fit")]
    placement: String,
    /// Reservations `fair-backfill` holds at once for gangs that cannot start (see
    /// docs/queue.md for the trade-off).
    #[arg(long, default_value_t = 32)]
    reservations: u32,
    /// Waiting borrowers per periodic pass that may preempt borrowers further above
    /// their fair share, under `fair` and `fair-backfill` (0: none; see docs/queue.md).
    #[arg(long, default_value_t = gigawatt_core::DEFAULT_FAIR_PREEMPTIONS)]
    fair_preemptions: u32,
    /// Half-life of past use in the fair-share order (the quota document's
    /// `fair_share.half_life`).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    half_life: std::time::Duration,
    /// Weight of past use against current use in the fair-share order, 0 to 1 (the
    /// quota document's `fair_share.history_weight`).
    #[arg(long, default_value_t = 0.5)]
    history_weight: f64,
    /// Print one JSON document instead of the table and chart.
    #[arg(long)]
    json: bool,
    /// With --json, add `shares`: per policy, each backlogged tenant's weight, GPUs used
    /// and GPUs entitled (summed over samples), the figures Jain's index is taken from.
    #[arg(long, requires = "json")]
    shares: bool,
    /// Where to write the chart.
    #[arg(long, default_value = "gigawatt-sim-queue.svg")]
    chart: PathBuf,
}

#[derive(Serialize)]
struct Report<'a> {
    gpus: usize,
    tenants: usize,
    pending: usize,
    seed: u64,
    duration_s: f64,
    tick_s: f64,
    placement: &'a str,
    summary: Vec<&'a gigawatt_sim::queue::QueueSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shares: Option<std::collections::BTreeMap<&'a str, &'a [gigawatt_sim::queue::TenantShare]>>,
}

/// Runs the experiment.
///
/// # Errors
/// Bad arguments, or a core error (a bug).
pub fn run_cmd(args: QueueArgs) -> Result<()> {
    let placement: PolicyKind = args.placement.parse().map_err(|e| anyhow::anyhow!("--placement: {e}"))?;
    let policies: Vec<QueuePolicy> = args
        .policy
        .iter()
        .map(|p| p.parse().map_err(|e: String| anyhow::anyhow!("--policy: {e}")))
        .collect::<Result<_>>()?;
    if args.gpus < 64 {
        bail!("--gpus: {} is below one rack; give at least 64", args.gpus);
    }
    if args.tenants == 0 || args.pending == 0 {
        bail!("--tenants and --pending: give at least 1");
    }
    let params = QueueParams {
        gpus: args.gpus,
        tenants: args.tenants,
        pending: args.pending,
        seed: args.seed,
        duration: Seconds(args.duration.as_secs_f64()),
        tick: Seconds(args.tick.as_secs_f64().max(1.0)),
        placement,
        reservations: args.reservations,
        fair_preemptions: args.fair_preemptions,
        fair_share: gigawatt_core::quota::FairShareConfig {
            half_life: Seconds(args.half_life.as_secs_f64()),
            history_weight: args.history_weight,
        },
    };
    if !(0.0..=1.0).contains(&args.history_weight) {
        bail!("--history-weight: {} is outside 0 to 1", args.history_weight);
    }
    let started = Instant::now();
    let mut runs: Vec<QueueRun> = Vec::new();
    for p in policies {
        let t = Instant::now();
        let r = run(&params, p)?;
        eprintln!(
            "{}: {} events in {:.1}s of wall time ({:.1}s in the core)",
            p.as_str(),
            r.summary.events + r.summary.ticks,
            t.elapsed().as_secs_f64(),
            r.summary.core_cpu_s
        );
        runs.push(r);
    }
    if args.json {
        let report = Report {
            gpus: params.gpus,
            tenants: params.tenants,
            pending: params.pending,
            seed: params.seed,
            duration_s: params.duration.0,
            tick_s: params.tick.0,
            placement: placement.as_str(),
            summary: runs.iter().map(|r| &r.summary).collect(),
            shares: args
                .shares
                .then(|| runs.iter().map(|r| (r.summary.policy.as_str(), r.shares.as_slice())).collect()),
        };
        crate::outln!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    crate::outln!(
        "{} GPUs, {} tenants, ~{} pending, {} of virtual time, seed {}",
        params.gpus,
        params.tenants,
        params.pending,
        humantime::format_duration(args.duration),
        params.seed
    );
    crate::outln!(
        "{:<14} {:>6} {:>6} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9}",
        "policy",
        "util%",
        "Jain",
        "small p50",
        "alone p50",
        "burst p50",
        "in-share p50",
        "small p99",
        "big max",
        "big ran",
        "starved",
        "ev p50",
        "ev p99",
        "events/s",
        "pass max"
    );
    for r in &runs {
        let s = &r.summary;
        crate::outln!(
            "{:<14} {:>6.2} {:>6.3} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9} {:>6.0}µs {:>6.0}µs {:>9.0} {:>7.1}ms",
            s.policy,
            s.gpu_utilisation_pct,
            s.jain_fairness,
            hms(s.small_wait_p50_s),
            hms(s.small_alone_wait_p50_s),
            hms(s.small_burst_wait_p50_s),
            hms(s.small_within_share_wait_p50_s),
            hms(s.small_wait_p99_s),
            hms(s.big_gang_wait_max_s),
            s.big_gangs_started,
            s.starved_big_gangs,
            s.event_p50_us,
            s.event_p99_us,
            s.events_per_s,
            s.tick_max_ms
        );
    }
    crate::chart::queue(&args.chart, &runs)?;
    eprintln!("chart: {} ({:.1}s)", args.chart.display(), started.elapsed().as_secs_f64());
    Ok(())
}

/// Seconds as `1h02m` / `3m05s` / `12s`.
fn hms(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
