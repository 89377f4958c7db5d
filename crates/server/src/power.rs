//! The live power manager: the same [`PowerManager`] as the simulator, fed with agent
//! telemetry every control interval, for the sites provisioned `oversubscribed`.
//!
//! Each interval it builds a [`Picture`] of every oversubscribed site (the core's budgets
//! and rack limits, each busy node's base power and idle GPUs, and for each task on a GPU
//! its tier, the limit its agent reports and what its GPUs drew since the last plan),
//! plans, and hands the limits to the agents in their heartbeat answers (the lower of the
//! manager's and an operator's). Caps, uncaps and alerts go to the event log.
//!
//! Two rules keep the draw under every limit while limits move and work starts, as the
//! fencing rules keep a task from running twice:
//!
//! * **lower first**: while any GPU of a site has not yet reported a lowered limit, no
//!   GPU of that site is given a higher one;
//! * **power before start**: a new task copy on an oversubscribed site is handed to its
//!   agent only once a plan has made room for it (its GPUs' limits come in the same
//!   answer, and the agent applies limits before it starts tasks).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gigawatt_core::WorkloadId;
use gigawatt_power::manager::{
    Action, Domain, Group, GroupKey, ManagerConfig, NodePicture, Picture, PowerManager, PowerTier,
    RackPicture,
};
use gigawatt_power::model::GpuPower;
use gigawatt_store::LogEvent;
use gigawatt_units::Watts;

use crate::AppState;
use crate::engine::Engine;
use crate::writer::execute;

/// The live manager's state, shared with the heartbeat handler and the metrics.
#[derive(Default)]
pub struct PowerControl {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    manager: PowerManager,
    /// Limits per node and GPU index, in watts, from the last plan.
    limits: HashMap<String, BTreeMap<u16, u64>>,
    /// Task copies a plan made room for: `(workload, task, generation)`.
    admitted: HashSet<(WorkloadId, u32, u64)>,
    /// When the last plan was made (Unix ms), for the telemetry window.
    last_plan_ms: i64,
    /// Per site, from the last plan.
    sites: BTreeMap<String, SiteFigures>,
    cap_events: u64,
    uncap_events: u64,
}

/// What the last plan said of a site, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SiteFigures {
    /// Fixed draw plus every GPU limit: what the guarantee bounds.
    pub envelope: Watts,
    /// The draw predicted for the next interval.
    pub predicted: Watts,
    /// The draw measured at the latest heartbeats (busy nodes' base power plus the GPU
    /// draw their agents reported).
    pub measured: Watts,
    /// Task groups held below their predicted demand.
    pub capped: u64,
}

impl PowerControl {
    /// A manager with this behaviour.
    #[must_use]
    pub fn new(config: ManagerConfig) -> PowerControl {
        PowerControl { inner: Mutex::new(Inner { manager: PowerManager::new(config), ..Inner::default() }) }
    }

    /// The manager's limits for `node`, per GPU index.
    #[must_use]
    pub fn limits(&self, node: &str) -> BTreeMap<u16, u64> {
        self.inner.lock().ok().and_then(|i| i.limits.get(node).cloned()).unwrap_or_default()
    }

    /// Whether a plan made room for this task copy.
    #[must_use]
    pub fn admitted(&self, workload: WorkloadId, task: u32, generation: u64) -> bool {
        self.inner.lock().is_ok_and(|i| i.admitted.contains(&(workload, task, generation)))
    }

    /// Per site figures of the last plan, and the cap and uncap counts so far.
    #[must_use]
    pub fn figures(&self) -> (BTreeMap<String, SiteFigures>, u64, u64) {
        self.inner.lock().map(|i| (i.sites.clone(), i.cap_events, i.uncap_events)).unwrap_or_default()
    }
}

/// Runs the manager every `interval` until the server stops.
pub async fn run(state: Arc<AppState>, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let records = plan_once(&state, crate::now_ms()).await;
        if !records.is_empty()
            && let Err(e) = execute(&state, move |engine, now| engine.record_power(now, records)).await
        {
            tracing::warn!("could not record power events: {e}");
        }
    }
}

/// One control step: plans, publishes the limits, and returns the records to log.
pub async fn plan_once(state: &AppState, now: i64) -> Vec<LogEvent> {
    let engine = state.engine.read().await;
    let since = state.power.inner.lock().map(|i| i.last_plan_ms).unwrap_or(0);
    let Some(built) = build(&engine, state, since) else {
        return Vec::new();
    };
    drop(engine);
    let Ok(mut inner) = state.power.inner.lock() else { return Vec::new() };
    let plan = inner.manager.plan(&built.picture);
    inner.last_plan_ms = now;
    // Lower first: raises are published only as far as every rack and site stays under
    // its limit with each GPU at the higher of its reported and its published limit.
    let published = transition(&built, &plan.limits);
    let mut limits: HashMap<String, BTreeMap<u16, u64>> = HashMap::new();
    let mut woken = Vec::new();
    let mut admitted = HashSet::new();
    for (i, g) in built.picture.groups.iter().enumerate() {
        let limit = published[i];
        let (node, gpus, generation) = &built.placements[i];
        let entry = limits.entry(node.clone()).or_default();
        for gpu in gpus {
            entry.insert(*gpu, limit.0);
        }
        // Power before start: a copy runs once its GPUs report a limit within the plan.
        if built.reported[i] > Watts::ZERO && built.reported[i] <= limit {
            admitted.insert((g.key.workload, g.key.task, *generation));
        }
    }
    for (node, l) in &limits {
        if inner.limits.get(node) != Some(l) {
            woken.push(node.clone());
        }
    }
    for node in inner.limits.keys() {
        if !limits.contains_key(node) {
            woken.push(node.clone());
        }
    }
    let newly: Vec<String> = admitted
        .iter()
        .filter(|k| !inner.admitted.contains(*k))
        .filter_map(|(w, t, _)| {
            built
                .placements
                .iter()
                .zip(&built.picture.groups)
                .find(|(_, g)| g.key == GroupKey { workload: *w, task: *t })
        })
        .map(|((node, _, _), _)| node.clone())
        .collect();
    woken.extend(newly);
    inner.limits = limits;
    // Copies admitted before stay admitted while they exist.
    let alive: HashSet<(WorkloadId, u32, u64)> = built
        .placements
        .iter()
        .zip(&built.picture.groups)
        .map(|((_, _, gen_), g)| (g.key.workload, g.key.task, *gen_))
        .collect();
    let previous: Vec<_> = inner.admitted.iter().filter(|k| alive.contains(*k)).copied().collect();
    inner.admitted = admitted;
    inner.admitted.extend(previous);
    // Figures for metrics.
    inner.sites.clear();
    for (s, d) in built.picture.sites.iter().enumerate() {
        let capped =
            plan.capped.iter().enumerate().filter(|(i, c)| **c && built.site_of_group[*i] == s).count()
                as u64;
        inner.sites.insert(
            d.id.clone(),
            SiteFigures {
                envelope: plan.site_envelope.get(s).copied().unwrap_or_default(),
                predicted: plan.site_predicted.get(s).copied().unwrap_or_default(),
                measured: built.measured.get(s).copied().unwrap_or_default(),
                capped,
            },
        );
    }
    let mut records = Vec::new();
    for a in &plan.actions {
        match a {
            Action::Cap { group, tier, from, to, wanted, why } => {
                inner.cap_events += 1;
                let node = built.node_of(group);
                records.push(LogEvent::PowerCapped {
                    workload: group.workload,
                    task: group.task,
                    node,
                    tier: tier.as_str().to_string(),
                    from_w: from.0,
                    to_w: to.0,
                    wanted_w: wanted.0,
                    why: why.to_string(),
                });
            }
            Action::Uncap { group, to } => {
                inner.uncap_events += 1;
                records.push(LogEvent::PowerUncapped {
                    workload: group.workload,
                    task: group.task,
                    node: built.node_of(group),
                    to_w: to.0,
                });
            }
            Action::Infeasible { scope, .. } => {
                let site = scope.strip_prefix("site ").unwrap_or(scope).to_string();
                records.push(LogEvent::PowerAlert { site, workload: None, message: a.to_string() });
            }
        }
    }
    drop(inner);
    state.agents.wake(woken);
    records
}

/// A picture of the oversubscribed sites and what it needs to publish the plan.
struct Built {
    picture: Picture,
    /// Per group: node, GPU indices, generation of the copy.
    placements: Vec<(String, Vec<u16>, u64)>,
    /// Per group: the limit its agent reports (zero when none yet).
    reported: Vec<Watts>,
    /// Per group: index of its site in the picture.
    site_of_group: Vec<usize>,
    /// Per site: measured draw.
    measured: Vec<Watts>,
}

impl Built {
    fn node_of(&self, key: &GroupKey) -> String {
        self.picture
            .groups
            .iter()
            .position(|g| g.key == *key)
            .map_or_else(String::new, |i| self.placements[i].0.clone())
    }
}

fn build(engine: &Engine, state: &AppState, since_ms: i64) -> Option<Built> {
    let core = engine.scheduler.state();
    let over: Vec<usize> = (0..core.sites.len()).filter(|s| core.oversubscribed(*s)).collect();
    if over.is_empty() {
        return None;
    }
    let site_index: HashMap<u32, usize> = over.iter().enumerate().map(|(i, s)| (*s as u32, i)).collect();
    let sites: Vec<Domain> =
        over.iter().map(|s| Domain { id: core.sites[*s].id.clone(), limit: core.sites[*s].budget }).collect();
    let mut racks = Vec::new();
    let mut rack_index: HashMap<u32, usize> = HashMap::new();
    for (r, rack) in core.racks.iter().enumerate() {
        if let Some(&s) = site_index.get(&rack.site) {
            rack_index.insert(r as u32, racks.len());
            racks.push(RackPicture { domain: Domain { id: rack.id.clone(), limit: rack.limit }, site: s });
        }
    }
    let mut nodes = Vec::new();
    let mut node_index: HashMap<&str, usize> = HashMap::new();
    let mut measured = vec![Watts::ZERO; sites.len()];
    let mut node_gpus: HashMap<&str, HashSet<u16>> = HashMap::new();
    let mut groups = Vec::new();
    let mut placements = Vec::new();
    let mut reported = Vec::new();
    let mut site_of_group = Vec::new();
    // Telemetry per node since the last plan: mean power and throttled share per GPU, and
    // the limit each GPU reports now.
    let telemetry = |node: &str| -> BTreeMap<u16, (f64, f64, u64)> {
        let Some(live) = state.agents.get(node) else { return BTreeMap::new() };
        let Ok(live) = live.lock() else { return BTreeMap::new() };
        let samples = live.samples();
        let recent: Vec<_> = samples.iter().filter(|(at, _)| *at > since_ms).collect();
        let window: Vec<_> = if recent.is_empty() { samples.iter().rev().take(1).collect() } else { recent };
        let mut out: BTreeMap<u16, (f64, f64, u64)> = BTreeMap::new();
        let n = window.len().max(1) as f64;
        for (_, t) in &window {
            for g in &t.gpus {
                let e = out.entry(g.index).or_default();
                e.0 += g.power_w as f64 / n;
                let held = g.power_w + (g.power_limit_w / 50).max(5) >= g.power_limit_w;
                e.1 += if held { 1.0 / n } else { 0.0 };
                e.2 = g.power_limit_w;
            }
        }
        out
    };
    for w in engine.view.workloads.values().filter(|w| !w.state.is_final()) {
        for t in w.tasks.iter().flatten() {
            let Some(idx) = core.node_by_name(&t.node) else { continue };
            let n = core.node(idx);
            let Some(&s) = site_index.get(&n.site) else { continue };
            let Some(&r) = rack_index.get(&n.rack) else { continue };
            let node_slot = *node_index.entry(n.name.as_str()).or_insert_with(|| {
                nodes.push(NodePicture { rack: r, fixed: n.base_power });
                nodes.len() - 1
            });
            let gpus: Vec<u16> = t.gpus.iter().map(|(g, _)| *g).collect();
            node_gpus.entry(n.name.as_str()).or_default().extend(gpus.iter().copied());
            let gpu = GpuPower { idle: n.gpu_idle, tdp: n.gpu_tdp, min_limit: n.gpu_min, dvfs_exponent: 2.0 };
            let tel = telemetry(&n.name);
            let of = |f: fn(&(f64, f64, u64)) -> f64| -> f64 {
                let v: Vec<f64> = gpus.iter().filter_map(|g| tel.get(g)).map(f).collect();
                if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
            };
            let draw = Watts(of(|x| x.0).round() as u64);
            let report = gpus.iter().filter_map(|g| tel.get(g)).map(|x| x.2).max().unwrap_or(0);
            let limit = if report == 0 { gpu.tdp } else { Watts(report) };
            let tier = PowerTier::of(w.workload.priority, w.workload.shape);
            groups.push(Group {
                key: GroupKey { workload: w.workload.id, task: t.task },
                node: node_slot,
                tier,
                gpus: gpus.len() as u32,
                gpu,
                limit,
                draw: if report == 0 { gpu.idle } else { draw },
                throttled: of(|x| x.1),
            });
            placements.push((n.name.clone(), gpus, w.run(t.task).generation));
            reported.push(Watts(report));
            site_of_group.push(s);
        }
    }
    // Busy nodes: base power plus the idle draw of GPUs no task holds; measured draw.
    for (name, slot) in &node_index {
        let Some(idx) = core.node_by_name(name) else { continue };
        let n = core.node(idx);
        let held = node_gpus.get(name).map_or(0, HashSet::len) as u64;
        let free = u64::from(n.gpu_count()).saturating_sub(held);
        nodes[*slot].fixed = n.base_power + Watts(n.gpu_idle.0 * free);
        if let Some(&s) = site_index.get(&n.site) {
            measured[s] += n.base_power + latest_gpu_draw(state, name);
        }
    }
    // Idle nodes with a live agent draw what they report (the core counts them as
    // suspended); without one, nothing.
    for n in &core.nodes {
        if node_index.contains_key(n.name.as_str()) {
            continue;
        }
        let (Some(&s), Some(&r)) = (site_index.get(&n.site), rack_index.get(&n.rack)) else { continue };
        let tel = telemetry(&n.name);
        if tel.is_empty() {
            continue;
        }
        let draw = Watts(tel.values().map(|x| x.0).sum::<f64>().round() as u64);
        nodes.push(NodePicture { rack: r, fixed: draw });
        measured[s] += latest_gpu_draw(state, &n.name);
    }
    Some(Built {
        picture: Picture { sites, racks, nodes, groups },
        placements,
        reported,
        site_of_group,
        measured,
    })
}

/// The limits to publish now on the way to `planned`: decreases at once, increases scaled
/// down (per rack and per site) so that fixed draw plus, for every group, the higher of
/// its reported and its published limit stays under the limit. Agents apply limits at
/// different moments; this bound holds whichever have applied theirs.
fn transition(built: &Built, planned: &[Watts]) -> Vec<Watts> {
    let p = &built.picture;
    let reported: Vec<u64> = built.reported.iter().map(|w| w.0).collect();
    // Per domain (racks, then sites): its limit, fixed draw and what it holds surely.
    let rack_of = |i: usize| p.nodes.get(p.groups[i].node).map(|n| n.rack);
    let domains = p.racks.len() + p.sites.len();
    let mut limit = vec![0i128; domains];
    let mut held = vec![0i128; domains];
    let mut raise = vec![0i128; domains];
    for (r, rack) in p.racks.iter().enumerate() {
        limit[r] = i128::from(rack.domain.limit.0);
    }
    for (s, site) in p.sites.iter().enumerate() {
        limit[p.racks.len() + s] = i128::from(site.limit.0);
    }
    for n in &p.nodes {
        if let Some(rack) = p.racks.get(n.rack) {
            held[n.rack] += i128::from(n.fixed.0);
            held[p.racks.len() + rack.site] += i128::from(n.fixed.0);
        }
    }
    let of = |i: usize| -> Option<(usize, usize)> {
        let r = rack_of(i)?;
        Some((r, p.racks.len() + p.racks.get(r)?.site))
    };
    for (i, g) in p.groups.iter().enumerate() {
        let Some((r, s)) = of(i) else { continue };
        let gpus = i128::from(g.gpus);
        let (base, up) = if reported[i] == 0 || reported[i] >= planned[i].0 {
            (i128::from(reported[i].max(planned[i].0)) * gpus, 0)
        } else {
            (i128::from(reported[i]) * gpus, i128::from(planned[i].0 - reported[i]) * gpus)
        };
        for d in [r, s] {
            held[d] += base;
            raise[d] += up;
        }
    }
    let theta: Vec<f64> = (0..domains)
        .map(|d| {
            if raise[d] == 0 { 1.0 } else { ((limit[d] - held[d]) as f64 / raise[d] as f64).clamp(0.0, 1.0) }
        })
        .collect();
    (0..p.groups.len())
        .map(|i| {
            if reported[i] == 0 || reported[i] >= planned[i].0 {
                return planned[i];
            }
            let t = of(i).map_or(0.0, |(r, s)| theta[r].min(theta[s]));
            let up = ((planned[i].0 - reported[i]) as f64 * t).floor() as u64;
            Watts(reported[i] + up)
        })
        .collect()
}

/// What a node's GPUs drew at its latest heartbeat.
fn latest_gpu_draw(state: &AppState, node: &str) -> Watts {
    state
        .agents
        .get(node)
        .and_then(|l| {
            l.lock().ok().and_then(|l| l.latest.as_ref().map(|t| t.gpus.iter().map(|g| g.power_w).sum()))
        })
        .map_or(Watts::ZERO, Watts)
}

impl Engine {
    /// Records what the power manager did (caps, uncaps, alerts).
    pub fn record_power(&mut self, now: i64, events: Vec<LogEvent>) -> Result<(), crate::error::EngineError> {
        for e in events {
            // A workload may have ended between the plan and this record.
            if let Some(id) = e.workload()
                && self.view.workloads.get(&id).is_none_or(|w| w.state.is_final())
            {
                continue;
            }
            self.stage(now, e)?;
        }
        Ok(())
    }
}
