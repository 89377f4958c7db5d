//! The power experiment: how many more GPUs a site can hold under the same grid
//! connection when it is oversubscribed and the power manager caps GPU power, and what it
//! costs the work.
//!
//! For each oversubscription ratio the experiment builds a site whose node count is
//! `(1 + ratio) × IT budget / server nameplate`, places a mix on it with the scheduling
//! core (replicas of an LLM inference service, training gangs, best-effort jobs), then
//! replays the Azure LLM code trace, scaled to the inference fleet, on a virtual clock:
//!
//! * every request is routed to the replica with the fewest outstanding requests, which
//!   batches prefills and decodes ([`replica`]) with the latency model of
//!   [`crate::inference`];
//! * every GPU draws what its phase demands, never more than its power limit
//!   ([`gigawatt_power::model`]); training runs flat out;
//! * every control interval the power manager ([`gigawatt_power::manager`]) sets the
//!   limits from what it saw, exactly as the control plane does from agent telemetry.
//!
//! Ratio 0 is the `reserved` baseline: no manager, every GPU at its TDP. The draw of every
//! rack and of the site is tracked exactly, event by event, and any instant above a limit
//! is counted in `overrun_seconds`.

mod replica;
mod run;
mod site;
mod traffic;

use gigawatt_core::PriorityClass;
use gigawatt_power::manager::ManagerConfig;
use gigawatt_power::model::{GpuPower, PowerModel};
use gigawatt_units::Watts;
use serde::Serialize;

pub use replica::{Batching, Done, Phase, Replica};
pub use run::run_ratio;
pub use site::{SiteLayout, build, node_nameplate};
pub use traffic::{Arrival, ScaledTrace};

use crate::azure::Request;
use crate::inference::{Efficiency, LlmSpec};

/// Everything the experiment is run with. Every figure has a flag in `gigawatt sim power`.
#[derive(Debug, Clone)]
pub struct PowerExperiment {
    /// Grid connection, facility side, MW.
    pub site_mw: f64,
    /// Power usage effectiveness.
    pub pue: f64,
    /// GPU model (catalog id).
    pub gpu_model: String,
    /// Its power figures.
    pub gpu: GpuPower,
    /// GPUs per server.
    pub gpus_per_node: u32,
    /// Server power outside its GPUs at full load.
    pub node_base: Watts,
    /// Rack limit, kW.
    pub rack_kw: f64,
    /// Share of servers running inference replicas.
    pub inference_share: f64,
    /// Share of servers running training gangs (the rest run best-effort jobs).
    pub training_share: f64,
    /// Servers per training gang.
    pub gang_nodes: u32,
    /// Priority class of the inference service.
    pub inference_priority: PriorityClass,
    /// GPUs per inference replica (tensor parallelism).
    pub replica_gpus: u32,
    /// The model served.
    pub llm: LlmSpec,
    /// Its efficiency figures.
    pub efficiency: Efficiency,
    /// How replicas batch.
    pub batching: Batching,
    /// What work draws and how caps slow it.
    pub power_model: PowerModel,
    /// The power manager's behaviour.
    pub manager: ManagerConfig,
    /// Control interval, seconds.
    pub interval: f64,
    /// Requests per second per replica the trace is scaled to (its mean).
    pub rate_per_replica: f64,
    /// Replay length cap, seconds (the trace's span when longer).
    pub duration: f64,
    /// SLO: time to first token, seconds.
    pub ttft_slo: f64,
    /// SLO: mean time between tokens, seconds.
    pub tbt_slo: f64,
    /// Seed of the trace offsets and of the core's RNG.
    pub seed: u64,
}

/// Something that stops the experiment, said for a person.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PowerError {
    /// A figure or the workload mix does not make sense.
    #[error("{0}")]
    Config(String),
}

/// The service level a request must meet.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slo {
    /// Time to first token, ms.
    pub ttft_ms: f64,
    /// Mean time between tokens, ms.
    pub tbt_ms: f64,
}

/// What one ratio gave.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatioSummary {
    /// Oversubscription ratio (0 = reserved).
    pub oversubscription: f64,
    /// `reserved` or `oversubscribed`.
    pub mode: &'static str,
    /// Servers.
    pub nodes: usize,
    /// GPUs deployed.
    pub gpus: u64,
    /// GPUs per MW of grid connection.
    pub gpus_per_mw: f64,
    /// Inference replicas.
    pub replicas: usize,
    /// GPUs running inference, training and best-effort work.
    pub inference_gpus: u64,
    /// GPUs running training.
    pub training_gpus: u64,
    /// GPUs running best-effort work.
    pub best_effort_gpus: u64,
    /// Requests replayed.
    pub requests: u64,
    /// Requests per second offered (mean).
    pub offered_rps: f64,
    /// Share of requests that met both SLO targets, %.
    pub slo_attainment_pct: f64,
    /// Time to first token percentiles, ms.
    pub ttft_p50_ms: f64,
    /// p99.
    pub ttft_p99_ms: f64,
    /// Mean time between tokens percentiles, ms.
    pub tbt_p50_ms: f64,
    /// p99.
    pub tbt_p99_ms: f64,
    /// Training throughput lost to power caps, %.
    pub training_throughput_lost_pct: f64,
    /// Best-effort throughput lost to power caps, %.
    pub best_effort_throughput_lost_pct: f64,
    /// Highest site draw, facility side (IT × PUE), MW.
    pub peak_draw_mw: f64,
    /// Site draw exceeded 1% of the time, facility side, MW.
    pub p99_draw_mw: f64,
    /// Mean site draw, facility side, MW.
    pub mean_draw_mw: f64,
    /// The grid connection, MW.
    pub budget_mw: f64,
    /// Highest IT draw, MW (the limit the manager enforces is the IT budget).
    pub it_peak_draw_mw: f64,
    /// IT budget, MW.
    pub it_budget_mw: f64,
    /// Simulated time with the draw of any rack or of the site above its limit, s.
    pub overrun_seconds: f64,
    /// Highest draw of any rack against its limit, %.
    pub rack_peak_pct: f64,
    /// IT energy per output token of the inference service (GPUs and their servers), J.
    pub joules_per_token: f64,
    /// Output tokens.
    pub tokens: u64,
    /// IT energy of the site, MWh.
    pub it_energy_mwh: f64,
    /// Groups capped (held below their predicted demand) at least once, by tier.
    pub cap_events: u64,
    /// Share of group-time spent capped, by tier: latency-critical, inference, training,
    /// best effort, %.
    pub capped_time_pct: [f64; 4],
    /// The SLO targets used.
    pub slo: Slo,
    /// Simulated seconds (the replay plus draining the last requests).
    pub simulated_seconds: f64,
}

/// The draw of the site over time, one point per control interval (the highest draw
/// within it), facility side, for the chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrawSeries {
    /// Oversubscription ratio.
    pub oversubscription: f64,
    /// Seconds since the start.
    pub t: Vec<f64>,
    /// Peak draw in each interval, MW.
    pub draw_mw: Vec<f64>,
}

/// What one ratio produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RatioResult {
    /// The figures.
    pub summary: RatioSummary,
    /// The draw over time.
    pub series: DrawSeries,
}

/// Runs every ratio on up to `threads` threads; results come back in `ratios` order.
///
/// # Errors
/// The first ratio whose site or mix is impossible.
pub fn run_all(
    e: &PowerExperiment,
    requests: &[Request],
    ratios: &[f64],
    threads: usize,
) -> Result<Vec<RatioResult>, PowerError> {
    let mut slots: Vec<Option<Result<RatioResult, PowerError>>> = vec![None; ratios.len()];
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(&mut slots);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, ratios.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&ratio) = ratios.get(i) else { break };
                    let r = run_ratio(e, requests, ratio);
                    if let Ok(mut slots) = results.lock() {
                        slots[i] = Some(r);
                    }
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|s| s.unwrap_or_else(|| Err(PowerError::Config("a ratio was not run".into()))))
        .collect()
}
