//! Latency of one placement decision on the synthetic 200,000-GPU fleet, per policy:
//! mean, p50, p90, p99, p99.9, max and decisions/s over ≥ 20,000 timed arrivals.
//!
//! `cargo run --release -p gigawatt-sim --example placement_latency`
//! `cargo run --release -p gigawatt-sim --example placement_latency -- --policies fgd,best-fit --decisions 50000 --fill 0.8`
//!
//! Protocol (the same harness as `benches/placement.rs`): fill the fleet to the target
//! share of GPU capacity with the synthetic mix, placed by the policy under test; run
//! 2,000 untimed steady-state steps; then time `--decisions` steps. A step is one arrival
//! followed by the completions (earliest end first) that bring the fill back to target.
//! Only `Scheduler::handle(Event::Arrival)` is in the decision latency; completions are
//! timed and reported apart. Seeded: the same arguments give the same decisions.
//!
//! Two tables: wall time, and time on the CPU (wall time less the time the thread waited
//! for a CPU while other processes ran, from Linux schedstat). On a dedicated core they
//! agree; on a shared machine the second is the code's own cost.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::{Duration, Instant};

use gigawatt_core::PolicyKind;
use gigawatt_sim::synthetic::{self, FleetSpec, Kind, SteadyState, Summary};

struct Args {
    policies: Vec<PolicyKind>,
    decisions: usize,
    warmup: usize,
    fill: f64,
    seed: u64,
    racks: usize,
    max_candidates: Option<u32>,
    by_kind: bool,
}

fn usage(problem: &str) -> ! {
    eprintln!("{problem}");
    eprintln!(
        "usage: placement_latency [--policies fgd,best-fit,...] [--decisions N] [--warmup N] \
         [--fill 0.7] [--seed N] [--racks N] [--max-candidates K] [--by-kind]"
    );
    std::process::exit(2);
}

fn parse<T: FromStr>(flag: &str, value: &str) -> T
where
    T::Err: Display,
{
    value.parse().unwrap_or_else(|e| usage(&format!("{flag} {value}: {e}")))
}

fn parse_args() -> Args {
    let mut args = Args {
        policies: synthetic::BENCH_POLICIES.to_vec(),
        decisions: 20_000,
        warmup: 2_000,
        fill: 0.70,
        seed: 42,
        racks: FleetSpec::GPUS_200K.racks,
        max_candidates: None,
        by_kind: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--by-kind" {
            args.by_kind = true;
            continue;
        }
        let Some(value) = it.next() else {
            usage(&format!("{flag} needs a value"));
        };
        match flag.as_str() {
            "--policies" => args.policies = value.split(',').map(|p| parse(&flag, p)).collect(),
            "--decisions" => args.decisions = parse(&flag, &value),
            "--warmup" => args.warmup = parse(&flag, &value),
            "--fill" => args.fill = parse(&flag, &value),
            "--seed" => args.seed = parse(&flag, &value),
            "--racks" => args.racks = parse(&flag, &value),
            "--max-candidates" => args.max_candidates = Some(parse(&flag, &value)),
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    args
}

fn fmt(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn main() {
    let args = parse_args();
    let spec = FleetSpec { racks: args.racks, ..FleetSpec::GPUS_200K };
    let t = Instant::now();
    let fleet = synthetic::fleet(&spec);
    eprintln!(
        "fleet: {} sites, {} nodes, {} GPUs (built in {:.2} s); target fill {:.0}%, seed {}",
        fleet.sites.len(),
        fleet.node_count(),
        fleet.gpu_count(),
        t.elapsed().as_secs_f64(),
        args.fill * 100.0,
        args.seed
    );
    let mut rows = Vec::new();
    for &policy in &args.policies {
        let t = Instant::now();
        let mut s = SteadyState::with_config(
            &fleet,
            policy,
            args.seed,
            args.fill,
            gigawatt_core::SchedulerConfig {
                drop_unschedulable: true,
                max_candidates: args.max_candidates,
                priority_preemption: false,
                fair_share: false,
                backfill: gigawatt_core::BackfillConfig::OFF,
            },
        )
        .expect("the synthetic fleet loads");
        let (filled_with, fill_core) = s.fill_to_target(1_000_000).expect("core accepts events");
        let fill_wall = t.elapsed();
        for _ in 0..args.warmup {
            s.step().expect("core accepts events");
        }
        let before = s.counters();
        let mut arrivals = Vec::with_capacity(args.decisions);
        let mut on_cpu = Vec::with_capacity(args.decisions);
        let mut preempted = 0usize;
        let mut completions = Vec::with_capacity(args.decisions);
        let mut by_kind: BTreeMap<Kind, Vec<Duration>> = BTreeMap::new();
        let mut candidates = 0u64;
        let mut min_fill = f64::MAX;
        let mut max_fill = 0.0f64;
        let t = Instant::now();
        for _ in 0..args.decisions {
            let (a, n, spent) = s.step().expect("core accepts events");
            arrivals.push(a.elapsed);
            on_cpu.push(a.on_cpu());
            preempted += usize::from(a.waited > Duration::ZERO);
            by_kind.entry(a.kind).or_default().push(a.on_cpu());
            candidates += u64::from(a.candidates);
            if n > 0 {
                completions.push(spent / n);
            }
            min_fill = min_fill.min(s.fill());
            max_fill = max_fill.max(s.fill());
        }
        let wall = t.elapsed();
        let after = s.counters();
        let summary = (Summary::of(&arrivals), Summary::of(&on_cpu));
        let placed = after.placed - before.placed;
        eprintln!(
            "[{policy}] fill: {filled_with} arrivals, {:.1} s wall, {:.0} decisions/s; \
             measured {} steps in {:.1} s wall: fill {:.1}–{:.1}%, placed {placed}, \
             rejected {}, completions {}, mean feasible nodes per placed task {:.0}, \
             completion mean {} µs, {preempted} decisions preempted",
            fill_wall.as_secs_f64(),
            filled_with as f64 / fill_core.as_secs_f64(),
            args.decisions,
            wall.as_secs_f64(),
            min_fill * 100.0,
            max_fill * 100.0,
            after.rejected - before.rejected,
            after.completions - before.completions,
            candidates as f64 / placed.max(1) as f64,
            fmt(Summary::of(&completions).mean),
        );
        if args.by_kind {
            eprintln!("    on the CPU, by kind:");
            for (kind, samples) in &by_kind {
                let k = Summary::of(samples);
                eprintln!(
                    "    {:<9} n={:<6} mean {:>8} µs  p50 {:>8} µs  p99 {:>8} µs  max {:>8} µs",
                    kind.as_str(),
                    k.n,
                    fmt(k.mean),
                    fmt(k.p50),
                    fmt(k.p99),
                    fmt(k.max)
                );
            }
        }
        rows.push((policy, summary));
    }
    for (title, on_cpu) in [("wall time", false), ("time on the CPU", true)] {
        println!(
            "\nOne placement decision (arrival only) on {} nodes at {:.0}% GPU fill, {title}, µs:",
            fleet.node_count(),
            args.fill * 100.0
        );
        println!(
            "{:<15} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
            "policy", "n", "mean", "p50", "p90", "p99", "p99.9", "max", "decisions/s"
        );
        for (policy, (wall, cpu)) in &rows {
            let s = if on_cpu { cpu } else { wall };
            println!(
                "{:<15} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12.0}",
                policy.as_str(),
                s.n,
                fmt(s.mean),
                fmt(s.p50),
                fmt(s.p90),
                fmt(s.p99),
                fmt(s.p999),
                fmt(s.max),
                s.per_sec
            );
        }
    }
    println!("target: ≥ 10,000 decisions/s (mean ≤ 100 µs) and p99 < 1,000 µs");
}
