//! `gigawatt sim …`: trace replays and the FGD experiment.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use gigawatt_core::PolicyKind;
use gigawatt_sim::fgd::{self, Params, RunResult, SummaryRow};
use gigawatt_sim::openb::load_pods;
use indicatif::{ProgressBar, ProgressStyle};

use crate::paths::{bundled, stem};

/// Simulations.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// The FGD paper's experiment on the Alibaba openb trace: inflate the workload to
    /// 130%, place pods one by one, report GPU allocation and fragmentation per policy.
    Openb(OpenbArgs),
    /// Production replay of the openb trace: pods arrive at their creation time and
    /// leave at their deletion time; what does not fit waits in the queue, and QoS maps
    /// to priority (LS > Guaranteed/Burstable > BE), so preemption happens. Reports waits,
    /// preemptions and GPU allocation over time.
    Replay(ReplayArgs),
    /// Arrival statistics of the Azure LLM inference 2023 trace.
    Azure(AzureArgs),
    /// More GPUs per megawatt: a site provisioned `reserved` against the same site
    /// `oversubscribed` at increasing ratios, with the power manager capping GPU power,
    /// replaying the Azure LLM code trace with a background of training gangs. Reports GPUs
    /// per MW, SLO attainment, training throughput lost to caps, peak and p99 draw against
    /// the budget, time over any limit and energy per token.
    Power(crate::sim_power_cmd::PowerArgs),
    /// Thousands of tenants and a queue that never empties: today's priority-then-FIFO
    /// order against quotas with fair share, and against fair share with reservations
    /// and backfill. Reports utilisation, Jain's fairness, waits of small jobs and big
    /// gangs, starving gangs, and the core's cost per event.
    Queue(crate::sim_queue_cmd::QueueArgs),
}

/// Arguments of `gigawatt sim replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Node list CSV. Default: the bundled openb cluster.
    #[arg(long)]
    nodes: Option<PathBuf>,
    /// Pod list CSV with creation_time and deletion_time. Default: the bundled default list.
    #[arg(long)]
    pods: Option<PathBuf>,
    /// Fleet file declaring the trace's GPU models.
    #[arg(long, default_value = "fleets/openb.toml")]
    fleet: PathBuf,
    /// Policies, comma-separated, or `all`.
    #[arg(long, value_delimiter = ',', default_value = "fgd,best-fit,random")]
    policy: Vec<String>,
    /// Seed of the scheduler's RNG.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Arrival-rate multiplier: arrivals come this many times faster, durations are
    /// unchanged. The recorded trace loads this cluster lightly (about 0.2% of GPUs on
    /// average); 300 saturates it.
    #[arg(long, default_value_t = 1.0)]
    speedup: f64,
    /// Score at most this many of the tightest feasible nodes (default: all).
    #[arg(long)]
    max_candidates: Option<u32>,
    /// One JSON document on stdout (with a timeline of ~200 points per policy).
    #[arg(long)]
    json: bool,
    /// Skip malformed CSV rows instead of stopping.
    #[arg(long)]
    skip_invalid: bool,
}

/// Arguments of `gigawatt sim openb`.
#[derive(Debug, Args)]
pub struct OpenbArgs {
    /// Node list CSV (`sn,cpu_milli,memory_mib,gpu,model`). Default: the bundled openb cluster.
    #[arg(long)]
    nodes: Option<PathBuf>,
    /// Pod list CSV(s); repeat or separate with commas to run several workloads.
    /// Default: the bundled `openb_pod_list_default.csv`. `all` runs the four bundled lists.
    #[arg(long, value_delimiter = ',')]
    pods: Vec<String>,
    /// Fleet file declaring the trace's GPU models (G1, G2, G3 are undisclosed).
    #[arg(long, default_value = "fleets/openb.toml")]
    fleet: PathBuf,
    /// Policies, comma-separated: random, dot-product, gpu-packing, gpu-clustering, best-fit,
    /// fgd (the paper's six), cafgd (gigawatt's capacity-aware FGD), or `all`.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    policy: Vec<String>,
    /// Seeds: a range `42..51` (inclusive), a list `1,2,3`, or one seed.
    #[arg(long, default_value = "42..51")]
    seeds: String,
    /// Inflation target as a share of GPU capacity.
    #[arg(long, default_value_t = 1.3)]
    ratio: f64,
    /// Share of pods (%) the typical workload must cover, which FGD measures
    /// fragmentation against (the paper uses 95).
    #[arg(long, default_value_t = 95)]
    coverage: u64,
    /// Score at most this many feasible nodes per pod (default: all, as the paper).
    #[arg(long)]
    max_candidates: Option<u32>,
    /// Print one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Where to write the SVG chart (human mode). One file per workload; the workload
    /// name is appended when there are several.
    #[arg(long, default_value = "gigawatt-sim-openb.svg")]
    chart: PathBuf,
    /// Skip malformed CSV rows (they are counted and reported) instead of stopping.
    #[arg(long)]
    skip_invalid: bool,
    /// Worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Include every run's buckets in the JSON (large).
    #[arg(long)]
    runs: bool,
}

/// Arguments of `gigawatt sim azure`.
#[derive(Debug, Args)]
pub struct AzureArgs {
    /// Trace CSV. Default: the bundled code-completion trace.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// JSON output.
    #[arg(long)]
    json: bool,
    /// Skip malformed rows instead of stopping.
    #[arg(long)]
    skip_invalid: bool,
}

/// Runs a `sim` subcommand.
pub fn run(cmd: SimCommand) -> Result<()> {
    match cmd {
        SimCommand::Openb(args) => openb(args),
        SimCommand::Replay(args) => replay(args),
        SimCommand::Azure(args) => azure(args),
        SimCommand::Power(args) => crate::sim_power_cmd::run(args),
        SimCommand::Queue(args) => crate::sim_queue_cmd::run_cmd(args),
    }
}

const BUNDLED_WORKLOADS: [&str; 4] = [
    "openb_pod_list_default",
    "openb_pod_list_gpushare100",
    "openb_pod_list_multigpu20",
    "openb_pod_list_gpuspec10",
];

fn parse_seeds(s: &str) -> Result<Vec<u64>> {
    let s = s.trim();
    if let Some((a, b)) = s.split_once("..") {
        let a: u64 =
            a.trim().parse().with_context(|| format!("--seeds: `{a}` is not a number; write e.g. 42..51"))?;
        let b: u64 = b
            .trim_start_matches('=')
            .trim()
            .parse()
            .with_context(|| format!("--seeds: `{b}` is not a number; write e.g. 42..51"))?;
        if b < a {
            bail!("--seeds: empty range {a}..{b}; write the smaller seed first, e.g. 42..51");
        }
        if b - a >= 10_000 {
            bail!("--seeds: {a}..{b} is too many seeds; at most 10,000, e.g. 42..51");
        }
        return Ok((a..=b).collect());
    }
    let mut seeds: Vec<u64> = Vec::new();
    for x in s.split(',') {
        let seed = x
            .trim()
            .parse::<u64>()
            .with_context(|| format!("--seeds: `{x}` is not a number; write e.g. 42..51 or 1,2,3"))?;
        if !seeds.contains(&seed) {
            seeds.push(seed);
        }
    }
    Ok(seeds)
}

fn parse_policies(list: &[String]) -> Result<Vec<PolicyKind>> {
    let mut out = Vec::new();
    for p in list {
        let add: Vec<PolicyKind> = if p.trim().eq_ignore_ascii_case("all") {
            PolicyKind::WITH_OURS.to_vec()
        } else {
            vec![p.parse::<PolicyKind>().map_err(|e| anyhow::anyhow!("--policy: {e}, or `all`"))?]
        };
        for k in add {
            // The same policy twice would count as two seeds of one run.
            if !out.contains(&k) {
                out.push(k);
            }
        }
    }
    if out.is_empty() {
        bail!("--policy: no policy given; e.g. --policy fgd,best-fit,random");
    }
    Ok(out)
}

fn openb(args: OpenbArgs) -> Result<()> {
    let seeds = parse_seeds(&args.seeds)?;
    let policies = parse_policies(&args.policy)?;
    if !(args.ratio > 0.0 && args.ratio <= 10.0) {
        bail!("--ratio: {} is out of range; the paper uses 1.3 (130% of GPU capacity)", args.ratio);
    }
    if args.max_candidates == Some(0) {
        bail!(
            "--max-candidates: 0 would score no node; give at least 1 (128 keeps FGD's quality), or leave it out to score all"
        );
    }
    // Fail before minutes of simulation, not after: the chart's folder must exist.
    if !args.json
        && let Some(dir) = args.chart.parent().filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--chart: cannot create the folder {} for the chart", dir.display()))?;
    }
    let fleet = crate::fleet_cmd::openb_fleet(&bundled_or(&args.fleet), args.nodes.as_deref())?;
    if fleet.gpu_count() == 0 {
        let source = args.nodes.as_deref().unwrap_or(&args.fleet);
        bail!(
            "{}: the cluster has no GPUs (every node has gpu = 0); the experiment measures GPU allocation, so give a GPU node list such as traces/openb/openb_node_list_gpu_node.csv",
            source.display()
        );
    }
    let mut pod_files: Vec<PathBuf> = Vec::new();
    if args.pods.is_empty() {
        pod_files.push(bundled(&format!("traces/openb/{}.csv", BUNDLED_WORKLOADS[0])));
    }
    for p in &args.pods {
        if p.eq_ignore_ascii_case("all") {
            pod_files.extend(BUNDLED_WORKLOADS.iter().map(|w| bundled(&format!("traces/openb/{w}.csv"))));
        } else {
            pod_files.push(PathBuf::from(p));
        }
    }
    let mut lists = Vec::new();
    for f in &pod_files {
        let list = load_pods(f, args.skip_invalid)?;
        if !list.skipped.is_empty() {
            eprintln!(
                "warning: {}: skipped {} invalid row(s) (--skip-invalid); first: {}",
                f.display(),
                list.skipped.len(),
                list.skipped[0]
            );
        }
        if list.pods.is_empty() {
            bail!(
                "{}: no pods to simulate (the file has {} valid rows); give a pod list such as traces/openb/openb_pod_list_default.csv",
                f.display(),
                list.pods.len()
            );
        }
        lists.push((stem(f), list.pods));
    }
    let workloads: Vec<fgd::WorkloadFile<'_>> =
        lists.iter().map(|(name, pods)| fgd::WorkloadFile { name: name.clone(), pods }).collect();
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let total = (workloads.len() * policies.len() * seeds.len()) as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} runs  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = Instant::now();
    let runs = fgd::run_matrix(
        &fleet,
        &workloads,
        &policies,
        &seeds,
        Params {
            ratio: args.ratio,
            coverage_pct: args.coverage.clamp(1, 100),
            max_candidates: args.max_candidates,
        },
        threads,
        &|r: &RunResult| {
            bar.set_message(format!("{} {} seed {}", r.workload, r.policy, r.seed));
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let summary = fgd::summarize(&runs);
    let max_bucket = (args.ratio * 100.0).round() as u32;
    if args.json {
        let doc = serde_json::json!({
            "experiment": "fgd-openb",
            "ratio": args.ratio,
            "seeds": seeds,
            "policies": policies.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            "workloads": workloads.iter().map(|w| &w.name).collect::<Vec<_>>(),
            "nodes": fleet.node_count(),
            "gpus": fleet.gpu_count(),
            "summary": summary,
            "headline": headline(&summary, max_bucket),
            "runs": if args.runs { serde_json::to_value(&runs)? } else { serde_json::Value::Null },
        });
        crate::outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_table(&summary, &runs, max_bucket)?;
        for w in &workloads {
            let rows: Vec<&SummaryRow> = summary.iter().filter(|r| r.workload == w.name).collect();
            let path = if workloads.len() > 1 { suffixed(&args.chart, &w.name) } else { args.chart.clone() };
            crate::chart::write(&path, &w.name, &rows, max_bucket)?;
            crate::outln!("chart: {}", path.display());
        }
        let busy = threads.min(runs.len()).max(1);
        crate::outln!(
            "{} run{} on {} nodes / {} GPUs in {:.2}s ({:.3}s per run, {} thread{})",
            runs.len(),
            if runs.len() == 1 { "" } else { "s" },
            fleet.node_count(),
            fleet.gpu_count(),
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * busy as f64 / runs.len().max(1) as f64,
            busy,
            if busy == 1 { "" } else { "s" }
        );
    }
    if headline(&summary, max_bucket).is_empty() {
        eprintln!(
            "warning: no run reached the {max_bucket}% arrived bucket (the workload is too small for this cluster), so there is no headline figure"
        );
    }
    Ok(())
}

fn bundled_or(p: &std::path::Path) -> PathBuf {
    if p.exists() { p.to_path_buf() } else { bundled(&p.display().to_string()) }
}

fn suffixed(p: &std::path::Path, name: &str) -> PathBuf {
    let stem = p.file_stem().map_or_else(|| "chart".into(), |s| s.to_string_lossy().into_owned());
    let ext = p.extension().map_or_else(|| "svg".into(), |s| s.to_string_lossy().into_owned());
    p.with_file_name(format!("{stem}-{name}.{ext}"))
}

/// The headline rows: the last bucket per (workload, policy).
fn headline(summary: &[SummaryRow], bucket: u32) -> Vec<&SummaryRow> {
    summary.iter().filter(|r| r.arrived_pct == bucket).collect()
}

fn print_table(summary: &[SummaryRow], runs: &[RunResult], bucket: u32) -> Result<()> {
    let mut workloads: Vec<&str> = Vec::new();
    for r in summary {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    for w in workloads {
        crate::outln!("\n{w}: GPU allocation at {bucket}% arrived workload (mean ± std over seeds)");
        crate::outln!(
            "{:<16} {:>9} {:>7} {:>9} {:>7} {:>11} {:>11}",
            "policy",
            "alloc %",
            "± std",
            "paper %",
            "Δ",
            "frag@90 %",
            "failed pods"
        );
        for r in summary.iter().filter(|r| r.workload == w && r.arrived_pct == bucket) {
            let frag90 = summary
                .iter()
                .find(|x| x.workload == w && x.policy == r.policy && x.arrived_pct == 90)
                .map_or(f64::NAN, |x| x.frag_ratio_pct_mean);
            let group: Vec<&RunResult> =
                runs.iter().filter(|x| x.workload == w && x.policy == r.policy).collect();
            let failed = group.iter().map(|x| x.failed as f64).sum::<f64>() / group.len().max(1) as f64;
            let (paper, delta) = match r.published_alloc_pct {
                Some(p) => (format!("{p:.2}"), format!("{:+.2}", r.alloc_pct_mean - p)),
                None => ("-".into(), "-".into()),
            };
            crate::outln!(
                "{:<16} {:>9.2} {:>7.2} {:>9} {:>7} {:>11.2} {:>11.0}",
                r.policy,
                r.alloc_pct_mean,
                r.alloc_pct_std,
                paper,
                delta,
                frag90,
                failed
            );
        }
        let at =
            |p: &str| summary.iter().find(|r| r.workload == w && r.policy == p && r.arrived_pct == bucket);
        if let (Some(ours), Some(fgd)) = (at("cafgd"), at("fgd")) {
            crate::outln!(
                "cafgd (gigawatt's capacity-aware FGD) vs the paper's FGD: {:+.2} points",
                ours.alloc_pct_mean - fgd.alloc_pct_mean
            );
        }
    }
    crate::outln!();
    Ok(())
}

fn replay(args: ReplayArgs) -> Result<()> {
    let policies = parse_policies(&args.policy)?;
    if args.max_candidates == Some(0) {
        bail!("--max-candidates: 0 would score no node; give at least 1, or leave it out to score all");
    }
    if !(args.speedup > 0.0 && args.speedup <= 1e6) {
        bail!("--speedup: {} is out of range; give a factor above 0, e.g. 300", args.speedup);
    }
    let fleet = crate::fleet_cmd::openb_fleet(&bundled_or(&args.fleet), args.nodes.as_deref())?;
    let path =
        args.pods.clone().unwrap_or_else(|| bundled(&format!("traces/openb/{}.csv", BUNDLED_WORKLOADS[0])));
    let list = load_pods(&path, args.skip_invalid)?;
    if !list.skipped.is_empty() {
        eprintln!(
            "warning: {}: skipped {} invalid row(s) (--skip-invalid)",
            path.display(),
            list.skipped.len()
        );
    }
    if !list.pods.iter().any(|p| p.creation_time.is_some() && p.deletion_time.is_some()) {
        bail!(
            "{}: no pod has both creation_time and deletion_time, which a replay needs; use e.g. traces/openb/openb_pod_list_default.csv (sim openb needs no times)",
            path.display()
        );
    }
    let mut reports = Vec::new();
    for policy in policies {
        let params = gigawatt_sim::replay::ReplayParams {
            policy,
            seed: args.seed,
            max_candidates: args.max_candidates,
            timeline_points: 200,
            speedup: args.speedup,
        };
        reports.push(gigawatt_sim::replay::replay(&fleet, &list.pods, params)?);
    }
    if args.json {
        let doc = serde_json::json!({ "replay": stem(&path), "nodes": fleet.node_count(), "gpus": fleet.gpu_count(), "reports": reports });
        crate::outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let first = &reports[0];
    crate::outln!(
        "{}: {} pods replayed at {}× arrival rate on {} nodes / {} GPUs ({} skipped without valid times)",
        path.display(),
        first.pods,
        args.speedup,
        fleet.node_count(),
        fleet.gpu_count(),
        first.skipped
    );
    crate::outln!(
        "{:<15} {:>9} {:>9} {:>8} {:>10} {:>10} {:>10} {:>8} {:>11} {:>9}",
        "policy",
        "alloc %",
        "peak %",
        "waited",
        "wait mean",
        "wait p99",
        "wait max",
        "preempt",
        "peak queue",
        "never ran"
    );
    for r in &reports {
        crate::outln!(
            "{:<15} {:>9.2} {:>9.2} {:>8} {:>9.0}s {:>9.0}s {:>9.0}s {:>8} {:>11} {:>9}",
            r.policy,
            r.alloc_pct_mean,
            r.alloc_pct_peak,
            r.waits.waited,
            r.waits.mean_s,
            r.waits.p99_s,
            r.waits.max_s,
            r.preemptions,
            r.peak_pending,
            r.never_placed
        );
    }
    Ok(())
}

fn azure(args: AzureArgs) -> Result<()> {
    let path = args.trace.unwrap_or_else(|| bundled("traces/azure-llm-2023/AzureLLMInferenceTrace_code.csv"));
    let (requests, skipped) = gigawatt_sim::azure::load_requests(&path, args.skip_invalid)?;
    if !skipped.is_empty() {
        eprintln!("warning: skipped {} invalid row(s)", skipped.len());
    }
    let s = gigawatt_sim::azure::stats(&requests);
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        crate::outln!("{}: {} requests over {:.0}s", path.display(), s.requests, s.span_s);
        crate::outln!("  arrival rate: mean {:.2} req/s, peak {} req/s", s.mean_rps, s.peak_rps);
        crate::outln!("  prompt tokens: p50 {}, p99 {}", s.context_tokens_p50, s.context_tokens_p99);
        crate::outln!("  generated tokens: p50 {}, p99 {}", s.generated_tokens_p50, s.generated_tokens_p99);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_ranges_and_lists() {
        assert_eq!(parse_seeds("42..51").unwrap().len(), 10);
        assert_eq!(parse_seeds("42..=43").unwrap(), vec![42, 43]);
        assert_eq!(parse_seeds("1,5").unwrap(), vec![1, 5]);
        assert!(parse_seeds("51..42").is_err());
        assert!(parse_seeds("x").is_err());
    }
}
