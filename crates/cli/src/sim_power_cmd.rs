//! `gigawatt sim power`: oversubscription with power capping, on the Azure LLM trace.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use gigawatt_core::PriorityClass;
use gigawatt_fleet::GpuCatalog;
use gigawatt_power::manager::ManagerConfig;
use gigawatt_power::model::{GpuPower, PowerModel};
use gigawatt_sim::inference::{Efficiency, LlmSpec};
use gigawatt_sim::power::{Batching, PowerExperiment, RatioResult, run_all};
use gigawatt_units::Watts;
use serde::Serialize;

use crate::paths::bundled;

/// Arguments of `gigawatt sim power`.
#[derive(Debug, Args)]
pub struct PowerArgs {
    /// Request trace (`TIMESTAMP,ContextTokens,GeneratedTokens`). Default: the bundled
    /// Azure LLM code trace.
    #[arg(long)]
    requests: Option<PathBuf>,
    /// Grid connection of the site, facility side, in MW.
    #[arg(long, default_value_t = 8.0)]
    site_mw: f64,
    /// Power usage effectiveness: the IT budget is the grid connection divided by it.
    #[arg(long, default_value_t = 1.2)]
    pue: f64,
    /// GPU model (any catalog spelling).
    #[arg(long, default_value = "h100")]
    gpu: String,
    /// Oversubscription ratios to compare, comma-separated; 0 is the `reserved` baseline.
    #[arg(long, value_delimiter = ',', default_value = "0,0.1,0.2,0.3,0.4")]
    oversubscription: Vec<f64>,
    /// GPUs per server.
    #[arg(long, default_value_t = 8)]
    gpus_per_node: u32,
    /// Server power outside its GPUs at full load, in W (DGX H100: 10,200 W − 8 × 700 W).
    #[arg(long, default_value_t = 4600)]
    node_base_w: u64,
    /// Rack power limit in kW (an air-cooled rack of four DGX H100 servers is 40.8 kW).
    #[arg(long, default_value_t = 41.0)]
    rack_kw: f64,
    /// Share of servers running replicas of the inference service.
    #[arg(long, default_value_t = 0.8)]
    inference_share: f64,
    /// Share of servers running training gangs; the rest run best-effort jobs.
    #[arg(long, default_value_t = 0.15)]
    training_share: f64,
    /// Servers per training gang.
    #[arg(long, default_value_t = 4)]
    gang_nodes: u32,
    /// GPUs per inference replica (tensor parallelism).
    #[arg(long, default_value_t = 4)]
    replica_gpus: u32,
    /// Mean requests per second per replica the trace is scaled to. At 3, a replica of the
    /// reserved baseline is busy (prefill or decode) about 60% of the time, headroom a
    /// service keeps for its bursts; see docs/power-model.md for other loads.
    #[arg(long, default_value_t = 3.0)]
    rate_per_replica: f64,
    /// SLO: time to first token, in ms.
    #[arg(long, default_value_t = 1000.0)]
    ttft_ms: f64,
    /// SLO: mean time between output tokens, in ms.
    #[arg(long, default_value_t = 100.0)]
    tbt_ms: f64,
    /// The power manager's control interval (e.g. `1s`, `500ms`).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: std::time::Duration,
    /// Replay at most this long (e.g. `10m`); default: the whole trace.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Power model overrides: a TOML file with `[training]`, `[prefill]` and `[decode]`
    /// tables of `activity` and `compute_bound` (see docs/power-model.md).
    #[arg(long)]
    power_model: Option<PathBuf>,
    /// Margin the manager adds to predicted demand (0.1 = +10%).
    #[arg(long, default_value_t = ManagerConfig::default().margin)]
    margin: f64,
    /// Seed of the trace offsets and the scheduler.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// One JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Where to write the SVG chart of draw against budget (human mode).
    #[arg(long, default_value = "gigawatt-sim-power.svg")]
    chart: PathBuf,
    /// Skip malformed trace rows instead of stopping.
    #[arg(long)]
    skip_invalid: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    experiment: Settings<'a>,
    summary: Vec<&'a gigawatt_sim::power::RatioSummary>,
    series: Vec<&'a gigawatt_sim::power::DrawSeries>,
}

#[derive(Serialize)]
struct Settings<'a> {
    trace: String,
    site_mw: f64,
    pue: f64,
    gpu: &'a str,
    node_nameplate_w: u64,
    rack_kw: f64,
    inference_share: f64,
    training_share: f64,
    model: &'a str,
    replica_gpus: u32,
    rate_per_replica: f64,
    interval_s: f64,
    power_model: &'a PowerModel,
    manager: &'a ManagerConfig,
    seed: u64,
}

fn check_share(name: &str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        bail!("--{name} must be between 0 and 1 (got {v})");
    }
    Ok(())
}

/// Runs `gigawatt sim power`.
pub fn run(args: PowerArgs) -> Result<()> {
    for (name, v) in [("inference-share", args.inference_share), ("training-share", args.training_share)] {
        check_share(name, v)?;
    }
    if args.inference_share + args.training_share > 1.0 + 1e-9 {
        bail!("--inference-share + --training-share must not exceed 1 (the rest runs best-effort jobs)");
    }
    if let Some(r) = args.oversubscription.iter().find(|r| !(0.0..=1.0).contains(*r)) {
        bail!("oversubscription ratios must be between 0 and 1 (got {r}); 0 is the reserved baseline");
    }
    if !(args.site_mw > 0.0 && args.site_mw.is_finite()) {
        bail!("--site-mw must be a positive number of MW (got {})", args.site_mw);
    }
    if !(1.0..=3.0).contains(&args.pue) {
        bail!("--pue must be between 1.0 and 3.0 (got {})", args.pue);
    }
    if args.ttft_ms <= 0.0 || args.tbt_ms <= 0.0 || args.rate_per_replica <= 0.0 {
        bail!("--ttft-ms, --tbt-ms and --rate-per-replica must be positive");
    }
    if args.replica_gpus == 0 || !args.gpus_per_node.is_multiple_of(args.replica_gpus) {
        bail!(
            "--replica-gpus ({}) must divide --gpus-per-node ({}) so that replicas fill servers",
            args.replica_gpus,
            args.gpus_per_node
        );
    }
    let catalog = GpuCatalog::builtin();
    let spec = catalog.resolve(&args.gpu)?;
    let power_model = match &args.power_model {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let m: PowerModel = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
            m.validate().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            m
        }
        None => PowerModel::default(),
    };
    let path = args
        .requests
        .clone()
        .unwrap_or_else(|| bundled("traces/azure-llm-2023/AzureLLMInferenceTrace_code.csv"));
    let (requests, skipped) = gigawatt_sim::azure::load_requests(&path, args.skip_invalid)?;
    if !skipped.is_empty() {
        eprintln!("warning: skipped {} invalid row(s) of {}", skipped.len(), path.display());
    }
    if requests.len() < 2 {
        bail!("{} holds {} request(s); the experiment needs a trace", path.display(), requests.len());
    }
    let manager = ManagerConfig { margin: args.margin, ..ManagerConfig::default() };
    let e = PowerExperiment {
        site_mw: args.site_mw,
        pue: args.pue,
        gpu_model: spec.id.clone(),
        gpu: GpuPower::from(spec),
        gpus_per_node: args.gpus_per_node,
        node_base: Watts(args.node_base_w),
        rack_kw: args.rack_kw,
        inference_share: args.inference_share,
        training_share: args.training_share,
        gang_nodes: args.gang_nodes,
        inference_priority: PriorityClass::LatencyCritical,
        replica_gpus: args.replica_gpus,
        llm: LlmSpec::llama2_70b_fp8(),
        efficiency: Efficiency::default(),
        batching: Batching::default(),
        power_model,
        manager,
        interval: args.interval.as_secs_f64(),
        rate_per_replica: args.rate_per_replica,
        duration: args.duration.map_or(f64::MAX, |d| d.as_secs_f64()),
        ttft_slo: args.ttft_ms / 1e3,
        tbt_slo: args.tbt_ms / 1e3,
        seed: args.seed,
    };
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let started = Instant::now();
    let results = run_all(&e, &requests, &args.oversubscription, threads)?;
    if args.json {
        let report = Report {
            experiment: Settings {
                trace: path.display().to_string(),
                site_mw: e.site_mw,
                pue: e.pue,
                gpu: &e.gpu_model,
                node_nameplate_w: gigawatt_sim::power::node_nameplate(&e).0,
                rack_kw: e.rack_kw,
                inference_share: e.inference_share,
                training_share: e.training_share,
                model: &e.llm.name,
                replica_gpus: e.replica_gpus,
                rate_per_replica: e.rate_per_replica,
                interval_s: e.interval,
                power_model: &e.power_model,
                manager: &e.manager,
                seed: e.seed,
            },
            summary: results.iter().map(|r| &r.summary).collect(),
            series: results.iter().map(|r| &r.series).collect(),
        };
        crate::outln!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    print_table(&e, &results)?;
    crate::chart::power(&args.chart, &results, e.site_mw)?;
    eprintln!("chart: {} ({:.1}s)", args.chart.display(), started.elapsed().as_secs_f64());
    Ok(())
}

fn print_table(e: &PowerExperiment, results: &[RatioResult]) -> Result<()> {
    let base = results.iter().find(|r| r.summary.oversubscription == 0.0).map(|r| r.summary.gpus as f64);
    crate::outln!(
        "{} MW site, PUE {}, {} servers ({} W each at full load); {} TP{} replicas, Azure code trace at {} req/s per replica",
        e.site_mw,
        e.pue,
        e.gpu_model,
        gigawatt_sim::power::node_nameplate(e).0,
        e.llm.name,
        e.replica_gpus,
        e.rate_per_replica
    );
    crate::outln!(
        "SLO: time to first token ≤ {} ms and mean time between tokens ≤ {} ms",
        e.ttft_slo * 1e3,
        e.tbt_slo * 1e3
    );
    crate::outln!(
        "{:>6} {:>15} {:>6} {:>7} {:>7} {:>7} {:>9} {:>8} {:>9} {:>8} {:>8} {:>7} {:>9} {:>8}",
        "ratio",
        "mode",
        "GPUs",
        "GPU/MW",
        "vs base",
        "SLO %",
        "TTFT p99",
        "TBT p99",
        "train -%",
        "peak MW",
        "p99 MW",
        "budget",
        "overrun s",
        "J/token"
    );
    for r in results {
        let s = &r.summary;
        let gain = base.map_or(String::from("-"), |b| format!("{:+.1}%", (s.gpus as f64 / b - 1.0) * 100.0));
        crate::outln!(
            "{:>6.2} {:>15} {:>6} {:>7.1} {:>7} {:>7.2} {:>7.0}ms {:>6.1}ms {:>9.2} {:>8.3} {:>8.3} {:>7.2} {:>9.1} {:>8.2}",
            s.oversubscription,
            s.mode,
            s.gpus,
            s.gpus_per_mw,
            gain,
            s.slo_attainment_pct,
            s.ttft_p99_ms,
            s.tbt_p99_ms,
            s.training_throughput_lost_pct,
            s.peak_draw_mw,
            s.p99_draw_mw,
            s.budget_mw,
            s.overrun_seconds,
            s.joules_per_token
        );
    }
    Ok(())
}
