//! One ratio of the power experiment, on a virtual clock.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use gigawatt_fleet::GpuCatalog;
use gigawatt_power::manager::{
    Action, Domain, Group, GroupKey, NodePicture, Picture, PowerManager, PowerTier, RackPicture,
};
use gigawatt_power::model::GpuPower;
use gigawatt_units::Watts;

use super::replica::{Done, Phase, Replica};
use super::site::{self, SiteLayout};
use super::traffic::{Arrival, ScaledTrace};
use super::{DrawSeries, PowerError, PowerExperiment, RatioResult, RatioSummary, Slo};
use crate::azure::Request;
use crate::inference::{LatencyModel, Precision, ReplicaSpec};

/// Runs one ratio (0 = the reserved baseline).
///
/// # Errors
/// When the site or the mix is impossible, or the model does not fit the replica.
pub fn run_ratio(e: &PowerExperiment, requests: &[Request], ratio: f64) -> Result<RatioResult, PowerError> {
    let layout = site::build(e, ratio)?;
    let catalog = GpuCatalog::builtin();
    let spec = catalog.resolve(&e.gpu_model).map_err(|u| PowerError::Config(u.to_string()))?;
    let replica = ReplicaSpec::new(spec, Precision::Fp8, e.replica_gpus)
        .map_err(|x| PowerError::Config(x.to_string()))?;
    let model = LatencyModel::new(e.llm.clone(), replica, e.efficiency)
        .map_err(|x| PowerError::Config(x.to_string()))?;
    let mut sim = Sim::new(e, &layout, model, ratio > 0.0);
    let replicas = sim.replicas.len();
    let trace_rate = crate::azure::stats(requests).mean_rps;
    let copies = if replicas == 0 || trace_rate <= 0.0 {
        0
    } else {
        (e.rate_per_replica * replicas as f64 / trace_rate).round().max(1.0) as u32
    };
    let trace = ScaledTrace::new(requests, copies, e.seed, e.duration);
    let offered = trace.mean_rate();
    sim.run(trace);
    Ok(sim.result(e, &layout, ratio, offered))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    OpEnd { replica: u32, generation: u64 },
    Tick,
}

#[derive(Debug, Clone)]
struct GroupRt {
    key: GroupKey,
    node: usize,
    rack: usize,
    gpus: u32,
    tier: PowerTier,
    replica: Option<usize>,
    limit: Watts,
    demand: Watts,
    draw: Watts,
    /// Since the last control tick: energy per GPU (J) and seconds held back by the limit.
    tick_j: f64,
    tick_throttled: f64,
    capped: bool,
}

/// Log-spaced histogram of latencies (1% bins from 100 µs), for exact-enough percentiles
/// over tens of millions of requests.
struct LogHist {
    bins: Vec<u64>,
    count: u64,
}

impl LogHist {
    const MIN: f64 = 1e-4;
    const STEP: f64 = 0.01;

    fn new() -> LogHist {
        LogHist { bins: vec![0; 2000], count: 0 }
    }

    fn add(&mut self, v: f64) {
        let i = if v <= Self::MIN { 0 } else { ((v / Self::MIN).ln() / Self::STEP.ln_1p()).ceil() as usize };
        let last = self.bins.len() - 1;
        self.bins[i.min(last)] += 1;
        self.count += 1;
    }

    fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.bins.iter().enumerate() {
            seen += b;
            if seen >= rank {
                return Self::MIN * (1.0 + Self::STEP).powi(i as i32);
            }
        }
        Self::MIN * (1.0 + Self::STEP).powi(self.bins.len() as i32)
    }
}

struct Sim<'a> {
    e: &'a PowerExperiment,
    model: LatencyModel,
    gpu: GpuPower,
    replicas: Vec<Replica>,
    replica_group: Vec<usize>,
    scheduled: Vec<u64>,
    groups: Vec<GroupRt>,
    gangs: Vec<(PowerTier, Vec<usize>)>,
    gang_work: Vec<f64>,
    node_fixed: Vec<Watts>,
    node_rack: Vec<usize>,
    rack_limit: Vec<Watts>,
    rack_ids: Vec<String>,
    site_limit: Watts,
    manager: Option<PowerManager>,
    // Draw, exact at every change.
    site_draw: u64,
    rack_draw: Vec<u64>,
    over: u32,
    t_last: f64,
    overrun: f64,
    energy_j: f64,
    group_energy: Vec<f64>,
    group_last: Vec<f64>,
    site_peak: u64,
    rack_peak_pct: f64,
    tick_peak: u64,
    hist_kw: Vec<f64>,
    series_t: Vec<f64>,
    series_w: Vec<u64>,
    // Scheduling.
    router: BTreeSet<(usize, usize)>,
    heap: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    last_tick: f64,
    // Results.
    ttft: LogHist,
    tbt: LogHist,
    requests: u64,
    met: u64,
    tokens: u64,
    cap_events: u64,
    capped_time: [f64; 4],
    tier_time: [f64; 4],
    done: Vec<Done>,
}

fn tier_index(t: PowerTier) -> usize {
    match t {
        PowerTier::LatencyCritical => 0,
        PowerTier::Inference => 1,
        PowerTier::Training => 2,
        PowerTier::BestEffort => 3,
    }
}

fn nanos(t: f64) -> u64 {
    (t * 1e9).round().max(0.0) as u64
}

impl<'a> Sim<'a> {
    fn new(e: &'a PowerExperiment, layout: &SiteLayout, model: LatencyModel, managed: bool) -> Sim<'a> {
        let gpu = e.gpu;
        let mut replicas = Vec::new();
        let mut replica_group = Vec::new();
        let mut groups = Vec::new();
        let mut held = vec![0u32; layout.node_count];
        let start_limit = if managed { gpu.min_limit } else { gpu.tdp };
        for p in &layout.placed {
            held[p.node] += p.gpus;
            let replica = p.inference.then(|| {
                replicas.push(Replica::new());
                replica_group.push(groups.len());
                replicas.len() - 1
            });
            let demand =
                if p.inference { gpu.demand(0.0) } else { gpu.demand(e.power_model.training.activity) };
            groups.push(GroupRt {
                key: GroupKey { workload: p.workload, task: p.task },
                node: p.node,
                rack: layout.nodes[p.node],
                gpus: p.gpus,
                tier: p.tier,
                replica,
                limit: start_limit,
                demand,
                draw: Watts::ZERO,
                tick_j: 0.0,
                tick_throttled: 0.0,
                capped: false,
            });
        }
        let node_fixed: Vec<Watts> = (0..layout.node_count)
            .map(|n| {
                if held[n] == 0 {
                    Watts::ZERO
                } else {
                    e.node_base + Watts(gpu.idle.0 * u64::from(e.gpus_per_node.saturating_sub(held[n])))
                }
            })
            .collect();
        let gangs: Vec<(PowerTier, Vec<usize>)> =
            layout.gangs.iter().map(|members| (layout.placed[members[0]].tier, members.clone())).collect();
        let rack_count = layout.racks.len();
        let router = (0..replicas.len()).map(|r| (0usize, r)).collect();
        let mut sim = Sim {
            e,
            model,
            gpu,
            scheduled: vec![0; replicas.len()],
            replicas,
            replica_group,
            groups,
            gang_work: vec![0.0; gangs.len()],
            gangs,
            node_fixed,
            node_rack: layout.nodes.clone(),
            rack_limit: layout.racks.iter().map(|r| r.1).collect(),
            rack_ids: layout.racks.iter().map(|r| r.0.clone()).collect(),
            site_limit: layout.it_budget,
            manager: managed.then(|| PowerManager::new(e.manager)),
            site_draw: 0,
            rack_draw: vec![0; rack_count],
            over: 0,
            t_last: 0.0,
            overrun: 0.0,
            energy_j: 0.0,
            group_energy: Vec::new(),
            group_last: Vec::new(),
            site_peak: 0,
            rack_peak_pct: 0.0,
            tick_peak: 0,
            hist_kw: vec![0.0; (layout.it_budget.0 / 1000 * 2 + 2) as usize],
            series_t: Vec::new(),
            series_w: Vec::new(),
            router,
            heap: BinaryHeap::new(),
            seq: 0,
            last_tick: 0.0,
            ttft: LogHist::new(),
            tbt: LogHist::new(),
            requests: 0,
            met: 0,
            tokens: 0,
            cap_events: 0,
            capped_time: [0.0; 4],
            tier_time: [0.0; 4],
            done: Vec::new(),
        };
        sim.group_energy = vec![0.0; sim.groups.len()];
        sim.group_last = vec![0.0; sim.groups.len()];
        // Fixed draw, then every group at its starting draw.
        for n in 0..sim.node_fixed.len() {
            let w = sim.node_fixed[n].0;
            sim.add_draw(sim.node_rack[n], w as i64);
        }
        for g in 0..sim.groups.len() {
            let draw = sim.groups[g].demand.min(sim.groups[g].limit);
            sim.set_draw(g, draw, 0.0);
        }
        sim
    }

    fn push(&mut self, t: f64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((nanos(t), self.seq, ev)));
    }

    /// Integrates the draw up to `t`.
    fn account(&mut self, t: f64) {
        let dt = t - self.t_last;
        if dt <= 0.0 {
            return;
        }
        let bin = ((self.site_draw / 1000) as usize).min(self.hist_kw.len() - 1);
        self.hist_kw[bin] += dt;
        self.energy_j += self.site_draw as f64 * dt;
        if self.over > 0 {
            self.overrun += dt;
        }
        self.t_last = t;
    }

    fn add_draw(&mut self, rack: usize, delta: i64) {
        let before_rack = self.rack_draw[rack] > self.rack_limit[rack].0;
        let before_site = self.site_draw > self.site_limit.0;
        self.rack_draw[rack] = self.rack_draw[rack].saturating_add_signed(delta);
        self.site_draw = self.site_draw.saturating_add_signed(delta);
        let after_rack = self.rack_draw[rack] > self.rack_limit[rack].0;
        let after_site = self.site_draw > self.site_limit.0;
        self.over = self.over + u32::from(after_rack) + u32::from(after_site);
        self.over -= u32::from(before_rack) + u32::from(before_site);
        self.site_peak = self.site_peak.max(self.site_draw);
        self.tick_peak = self.tick_peak.max(self.site_draw);
        let limit = self.rack_limit[rack].0.max(1) as f64;
        self.rack_peak_pct = self.rack_peak_pct.max(self.rack_draw[rack] as f64 / limit * 100.0);
    }

    /// Integrates a group's draw and throttling up to `t`, before anything about it changes.
    fn touch(&mut self, g: usize, t: f64) {
        let dt = t - self.group_last[g];
        if dt <= 0.0 {
            return;
        }
        let grp = &mut self.groups[g];
        self.group_energy[g] += (grp.draw.0 * u64::from(grp.gpus)) as f64 * dt;
        grp.tick_j += grp.draw.0 as f64 * dt;
        if grp.demand > grp.limit {
            grp.tick_throttled += dt;
        }
        self.group_last[g] = t;
    }

    /// Sets a group's per-GPU draw at `t` (after [`Sim::account`]).
    fn set_draw(&mut self, g: usize, draw: Watts, t: f64) {
        self.touch(g, t);
        let old = self.groups[g].draw;
        let gpus = u64::from(self.groups[g].gpus);
        self.groups[g].draw = draw;
        if draw != old {
            let delta = (draw.0 as i64 - old.0 as i64) * gpus as i64;
            let rack = self.groups[g].rack;
            self.add_draw(rack, delta);
        }
    }

    fn activity(&self, phase: Phase) -> f64 {
        match phase {
            Phase::Idle => 0.0,
            Phase::Prefill => self.e.power_model.prefill.activity,
            Phase::Decode => self.e.power_model.decode.activity,
        }
    }

    /// After a replica's phase or limit changed: its draw, its clock, its end event.
    fn sync_replica(&mut self, r: usize, t: f64) {
        let g = self.replica_group[r];
        self.touch(g, t);
        let activity = self.activity(self.replicas[r].phase());
        let limit = self.groups[g].limit;
        let demand = self.gpu.demand(activity);
        self.groups[g].demand = demand;
        self.set_draw(g, demand.min(limit), t);
        let clock = self.gpu.clock_ratio(activity, limit);
        self.replicas[r].set_clock(t, clock);
        self.schedule_end(r);
    }

    fn schedule_end(&mut self, r: usize) {
        let generation = self.replicas[r].generation;
        if self.scheduled[r] != generation
            && let Some(end) = self.replicas[r].ends_at
        {
            self.scheduled[r] = generation;
            self.push(end, Ev::OpEnd { replica: r as u32, generation });
        }
    }

    fn route(&mut self, r: usize, before: usize) {
        self.router.remove(&(before, r));
        self.router.insert((self.replicas[r].outstanding(), r));
    }

    fn arrive(&mut self, a: Arrival) {
        self.account(a.at);
        let Some(&(out, r)) = self.router.first() else { return };
        self.requests += 1;
        let changed = self.replicas[r].arrive(a.at, a.prompt, a.output, &self.model, &self.e.batching);
        self.route(r, out);
        if changed {
            self.sync_replica(r, a.at);
        }
    }

    fn finish(&mut self, r: usize, t: f64) {
        self.account(t);
        let before = self.replicas[r].outstanding();
        let mut done = std::mem::take(&mut self.done);
        self.replicas[r].finish(t, &self.model, &self.e.batching, &mut done);
        for d in done.drain(..) {
            self.ttft.add(d.ttft);
            if d.tokens > 1 {
                self.tbt.add(d.tbt);
            }
            self.tokens += u64::from(d.tokens);
            if d.ttft <= self.e.ttft_slo && d.tbt <= self.e.tbt_slo {
                self.met += 1;
            }
        }
        self.done = done;
        self.route(r, before);
        self.sync_replica(r, t);
    }

    fn tick(&mut self, t: f64) {
        self.account(t);
        let dt = t - self.last_tick;
        self.last_tick = t;
        // Training progress since the last tick, at the pace of each gang's slowest task.
        for (i, (_, members)) in self.gangs.iter().enumerate() {
            let rate = members
                .iter()
                .map(|&m| self.gpu.throughput(&self.e.power_model.training, self.groups[m].limit))
                .fold(1.0, f64::min);
            self.gang_work[i] += rate * dt;
        }
        for g in &self.groups {
            let tier = tier_index(g.tier);
            self.tier_time[tier] += dt * f64::from(g.gpus);
            if g.capped {
                self.capped_time[tier] += dt * f64::from(g.gpus);
            }
        }
        self.series_t.push(t);
        self.series_w.push(self.tick_peak);
        self.tick_peak = self.site_draw;
        for g in 0..self.groups.len() {
            self.touch(g, t);
        }
        if self.manager.is_some() && dt > 0.0 {
            self.plan(t, dt);
        } else if self.manager.is_some() {
            self.plan(t, 1.0);
        }
        for g in &mut self.groups {
            g.tick_j = 0.0;
            g.tick_throttled = 0.0;
        }
    }

    fn picture(&self, dt: f64) -> Picture {
        let sites = vec![Domain { id: "site".into(), limit: self.site_limit }];
        let racks = self
            .rack_ids
            .iter()
            .zip(&self.rack_limit)
            .map(|(id, limit)| RackPicture { domain: Domain { id: id.clone(), limit: *limit }, site: 0 })
            .collect();
        let nodes = self
            .node_fixed
            .iter()
            .zip(&self.node_rack)
            .map(|(f, r)| NodePicture { rack: *r, fixed: *f })
            .collect();
        let groups = self
            .groups
            .iter()
            .map(|g| Group {
                key: g.key,
                node: g.node,
                tier: g.tier,
                gpus: g.gpus,
                gpu: self.gpu,
                limit: g.limit,
                // At the first plan nothing has run yet: what the group draws now.
                draw: if dt > 0.0 && g.tick_j > 0.0 { Watts((g.tick_j / dt).round() as u64) } else { g.draw },
                throttled: if dt > 0.0 && g.tick_j > 0.0 {
                    g.tick_throttled / dt
                } else {
                    f64::from(u8::from(g.demand > g.limit))
                },
            })
            .collect();
        Picture { sites, racks, nodes, groups }
    }

    fn plan(&mut self, t: f64, dt: f64) {
        let picture = self.picture(dt);
        let Some(manager) = self.manager.as_mut() else { return };
        let plan = manager.plan(&picture);
        self.cap_events += plan.actions.iter().filter(|a| matches!(a, Action::Cap { .. })).count() as u64;
        // Lower limits first, then raise: the draw never passes a limit, not even for an
        // instant between two changes.
        let mut order: Vec<usize> = (0..self.groups.len()).collect();
        order.sort_by_key(|&g| (plan.limits[g] > self.groups[g].limit, g));
        for g in order {
            self.groups[g].capped = plan.capped[g];
            let limit = plan.limits[g];
            if limit == self.groups[g].limit {
                continue;
            }
            self.touch(g, t);
            self.groups[g].limit = limit;
            match self.groups[g].replica {
                Some(r) => self.sync_replica(r, t),
                None => {
                    let draw = self.groups[g].demand.min(limit);
                    self.set_draw(g, draw, t);
                }
            }
        }
    }

    fn run(&mut self, mut trace: ScaledTrace<'_>) {
        let interval = self.e.interval.max(1e-3);
        self.push(0.0, Ev::Tick);
        let mut next = trace.next();
        loop {
            let heap_t = self.heap.peek().map(|Reverse((t, _, _))| *t);
            match (next, heap_t) {
                (Some(a), Some(h)) if nanos(a.at) <= h => {
                    self.arrive(a);
                    next = trace.next();
                }
                (Some(a), None) => {
                    self.arrive(a);
                    next = trace.next();
                }
                (_, Some(_)) => {
                    let Some(Reverse((ns, _, ev))) = self.heap.pop() else { break };
                    let t = ns as f64 / 1e9;
                    match ev {
                        Ev::Tick => {
                            self.tick(t);
                            let drained =
                                next.is_none() && self.replicas.iter().all(|r| r.phase() == Phase::Idle);
                            if drained && t >= trace.duration() {
                                break;
                            }
                            self.push(t + interval, Ev::Tick);
                        }
                        Ev::OpEnd { replica, generation } => {
                            let r = replica as usize;
                            if self.replicas[r].generation == generation {
                                self.finish(r, t);
                            }
                        }
                    }
                }
                (None, None) => break,
            }
        }
        let t = self.t_last.max(self.last_tick);
        self.account(t);
        for g in 0..self.groups.len() {
            let draw = self.groups[g].draw;
            self.set_draw(g, draw, t);
        }
    }

    fn result(&self, e: &PowerExperiment, layout: &SiteLayout, ratio: f64, offered: f64) -> RatioResult {
        let pue = e.pue;
        let end = self.t_last.max(1e-9);
        let mw = |w: u64| w as f64 / 1e6 * pue;
        let total: f64 = self.hist_kw.iter().sum();
        let p99_kw = {
            let mut acc = 0.0;
            let mut out = 0;
            for (kw, dt) in self.hist_kw.iter().enumerate().rev() {
                acc += dt;
                if acc >= 0.01 * total {
                    out = kw;
                    break;
                }
            }
            out
        };
        let lost = |tier: PowerTier| {
            let (mut work, mut ideal) = (0.0, 0.0);
            for (i, (t, _)) in self.gangs.iter().enumerate() {
                if *t == tier {
                    work += self.gang_work[i];
                    ideal += self.last_tick;
                }
            }
            if ideal > 0.0 { (1.0 - work / ideal) * 100.0 } else { 0.0 }
        };
        let gpus_of = |pred: &dyn Fn(&GroupRt) -> bool| -> u64 {
            self.groups.iter().filter(|g| pred(g)).map(|g| u64::from(g.gpus)).sum()
        };
        let inference_gpus = gpus_of(&|g| g.replica.is_some());
        // Inference energy: its GPUs, and its servers' fixed draw in proportion to GPUs.
        let mut inference_j: f64 = self
            .groups
            .iter()
            .zip(&self.group_energy)
            .filter(|(g, _)| g.replica.is_some())
            .map(|(_, j)| j)
            .sum();
        for (n, fixed) in self.node_fixed.iter().enumerate() {
            let on_node: u32 = self.groups.iter().filter(|g| g.node == n).map(|g| g.gpus).sum();
            let inf: u32 =
                self.groups.iter().filter(|g| g.node == n && g.replica.is_some()).map(|g| g.gpus).sum();
            if on_node > 0 {
                inference_j += fixed.0 as f64 * end * f64::from(inf) / f64::from(on_node);
            }
        }
        let pct = |x: f64, y: f64| if y > 0.0 { x / y * 100.0 } else { 0.0 };
        let summary = RatioSummary {
            oversubscription: ratio,
            mode: if ratio > 0.0 { "oversubscribed" } else { "reserved" },
            nodes: layout.node_count,
            gpus: layout.gpu_count,
            gpus_per_mw: layout.gpu_count as f64 / e.site_mw,
            replicas: self.replicas.len(),
            inference_gpus,
            training_gpus: gpus_of(&|g| g.tier == PowerTier::Training),
            best_effort_gpus: gpus_of(&|g| g.tier == PowerTier::BestEffort),
            requests: self.requests,
            offered_rps: offered,
            slo_attainment_pct: pct(self.met as f64, self.requests as f64),
            ttft_p50_ms: self.ttft.quantile(0.5) * 1e3,
            ttft_p99_ms: self.ttft.quantile(0.99) * 1e3,
            tbt_p50_ms: self.tbt.quantile(0.5) * 1e3,
            tbt_p99_ms: self.tbt.quantile(0.99) * 1e3,
            training_throughput_lost_pct: lost(PowerTier::Training),
            best_effort_throughput_lost_pct: lost(PowerTier::BestEffort),
            peak_draw_mw: mw(self.site_peak),
            p99_draw_mw: mw(p99_kw as u64 * 1000 + 1000),
            mean_draw_mw: self.energy_j / end / 1e6 * pue,
            budget_mw: e.site_mw,
            it_peak_draw_mw: self.site_peak as f64 / 1e6,
            it_budget_mw: self.site_limit.0 as f64 / 1e6,
            overrun_seconds: self.overrun,
            rack_peak_pct: self.rack_peak_pct,
            joules_per_token: if self.tokens > 0 { inference_j / self.tokens as f64 } else { 0.0 },
            tokens: self.tokens,
            it_energy_mwh: self.energy_j / 3.6e9,
            cap_events: self.cap_events,
            capped_time_pct: [0, 1, 2, 3].map(|i| pct(self.capped_time[i], self.tier_time[i])),
            slo: Slo { ttft_ms: e.ttft_slo * 1e3, tbt_ms: e.tbt_slo * 1e3 },
            simulated_seconds: end,
        };
        let series = DrawSeries {
            oversubscription: ratio,
            t: self.series_t.clone(),
            draw_mw: self.series_w.iter().map(|w| mw(*w)).collect(),
        };
        RatioResult { summary, series }
    }
}
