//! The experiment's site: a fleet built for one oversubscription ratio, and the workload
//! mix placed on it by the scheduling core, under the core's own admission rules.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use gigawatt_core::state::NodeIdx;
use gigawatt_core::{
    CoreRng, DataClass, Decision, Event, GpuDemand, PolicyKind, PriorityClass, Scheduler, SchedulerConfig,
    Shape, TaskDemand, TenantId, Topology, TypicalPods, Workload, WorkloadId,
};
use gigawatt_fleet::{Country, Fleet, GpuCatalog, GridPhase, Node, Provisioning, Pue, Rack, Site};
use gigawatt_units::{Mebibytes, Megawatts, MilliCores, Timestamp, Watts};
use rand_chacha::rand_core::SeedableRng;

use super::{PowerError, PowerExperiment};
use gigawatt_power::manager::PowerTier;

/// What runs on one node's GPUs: a task of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// The workload.
    pub workload: WorkloadId,
    /// Its task.
    pub task: u32,
    /// Index of the node in [`SiteLayout::nodes`].
    pub node: usize,
    /// GPUs it holds.
    pub gpus: u32,
    /// Its power tier.
    pub tier: PowerTier,
    /// Whether it is a replica of the inference service (else a training or batch task).
    pub inference: bool,
}

/// The site as the simulation needs it.
#[derive(Debug, Clone)]
pub struct SiteLayout {
    /// The fleet (one site).
    pub fleet: Fleet,
    /// Per node: its rack index.
    pub nodes: Vec<usize>,
    /// Per rack: its limit.
    pub racks: Vec<(String, Watts)>,
    /// The site's IT budget.
    pub it_budget: Watts,
    /// Every placed task.
    pub placed: Vec<Placed>,
    /// Training gangs: the indices into `placed` of each gang's tasks.
    pub gangs: Vec<Vec<usize>>,
    /// Nodes in the site.
    pub node_count: usize,
    /// GPUs in the site.
    pub gpu_count: u64,
}

/// The power of one server at full load: base plus every GPU at its TDP.
#[must_use]
pub fn node_nameplate(e: &PowerExperiment) -> Watts {
    e.node_base + Watts(e.gpu.tdp.0 * u64::from(e.gpus_per_node))
}

/// Builds the site for `ratio` (0 = reserved) and places the mix with the core.
///
/// # Errors
/// When the mix does not fit (a configuration that asks more than the site admits).
pub fn build(e: &PowerExperiment, ratio: f64) -> Result<SiteLayout, PowerError> {
    // The core admits against the ratio in thousandths; size the site with the same
    // figure, or a ratio such as 0.13423 deploys one server the core cannot power.
    let ratio = (ratio * 1000.0).round().clamp(0.0, 1000.0) / 1000.0;
    let it_budget = Pue(e.pue).it_share(Megawatts(e.site_mw).to_watts());
    let nameplate = node_nameplate(e);
    let nodes = ((1.0 + ratio) * it_budget.0 as f64 / nameplate.0 as f64).floor() as usize;
    if nodes == 0 {
        return Err(PowerError::Config(format!(
            "a {} MW site at PUE {} cannot power a single {} server",
            e.site_mw, e.pue, nameplate
        )));
    }
    // Oversubscription stops where the servers at their GPUs' lowest limits no longer fit:
    // the core would refuse them, and no power cap could keep the site under its budget.
    let floor = e.node_base + Watts(e.gpu.min_limit.0 * u64::from(e.gpus_per_node));
    if ratio > 0.0 && nodes as u64 * floor.0 > it_budget.0 {
        let most = it_budget.0 as f64 / floor.0 as f64 * nameplate.0 as f64 / it_budget.0 as f64 - 1.0;
        return Err(PowerError::Config(format!(
            "oversubscription {ratio} deploys {nodes} servers, which draw {} even with every GPU at its lowest \
             power limit ({floor} each), over the {it_budget} IT budget: this site can be oversubscribed by at \
             most {most:.2}",
            Watts(nodes as u64 * floor.0)
        )));
    }
    let rack_limit = Watts((e.rack_kw * 1000.0).floor() as u64);
    let per_rack = (((1.0 + ratio) * rack_limit.0 as f64) / nameplate.0 as f64).floor().max(1.0) as usize;
    let mut racks = Vec::new();
    let mut node_racks = Vec::new();
    let mut fleet_racks = Vec::new();
    for r in 0..nodes.div_ceil(per_rack) {
        let id = format!("r{:03}", r + 1);
        let count = per_rack.min(nodes - r * per_rack);
        let rack_nodes = (0..count)
            .map(|n| {
                node_racks.push(r);
                Node {
                    name: format!("{id}-n{:02}", n + 1),
                    gpu_model: Some(e.gpu_model.clone()),
                    gpu_count: e.gpus_per_node,
                    cpu: MilliCores(224_000),
                    memory: Mebibytes(2 * 1024 * 1024),
                    base_power: e.node_base,
                }
            })
            .collect();
        racks.push((id.clone(), rack_limit));
        fleet_racks.push(Rack {
            id,
            power_limit: rack_limit,
            network_domain: format!("ib{}", r / 8),
            nodes: rack_nodes,
        });
    }
    let provisioning =
        if ratio > 0.0 { Provisioning::Oversubscribed { ratio } } else { Provisioning::Reserved };
    let site = Site {
        id: "site".into(),
        name: format!("{} MW site", e.site_mw),
        country: Country("FR".into()),
        region: "eu-south-fr".into(),
        certifications: BTreeSet::new(),
        jurisdiction: "EU".into(),
        grid: vec![GridPhase {
            from: NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default(),
            capacity: Megawatts(e.site_mw),
        }],
        pue: Pue(e.pue),
        provisioning,
        curtailable_to: Megawatts(0.0),
        carbon: None,
        racks: fleet_racks,
    };
    let fleet =
        Fleet::new(GpuCatalog::builtin(), vec![site]).map_err(|d| PowerError::Config(d.to_string()))?;
    let placed = place(e, &fleet, nodes)?;
    let gpu_count = fleet.gpu_count();
    let gangs = gangs_of(&placed.0);
    Ok(SiteLayout {
        fleet,
        nodes: node_racks,
        racks,
        it_budget,
        placed: placed.0,
        gangs,
        node_count: nodes,
        gpu_count,
    })
}

fn gangs_of(placed: &[Placed]) -> Vec<Vec<usize>> {
    let mut by: std::collections::BTreeMap<WorkloadId, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, p) in placed.iter().enumerate() {
        if !p.inference {
            by.entry(p.workload).or_default().push(i);
        }
    }
    by.into_values().collect()
}

/// Submits the inference service, the training gangs and the best-effort jobs, in that
/// order, and reads back where the core put every task.
fn place(e: &PowerExperiment, fleet: &Fleet, nodes: usize) -> Result<(Vec<Placed>, ()), PowerError> {
    let policy = PolicyKind::BestFit.build(&TypicalPods::default());
    let config = SchedulerConfig {
        drop_unschedulable: false,
        max_candidates: None,
        priority_preemption: false,
        fair_share: false,
        backfill: gigawatt_core::BackfillConfig::OFF,
    };
    let mut sched =
        Scheduler::new(fleet, policy, config, Timestamp(0)).map_err(|c| PowerError::Config(c.to_string()))?;
    let mut rng = CoreRng::seed_from_u64(e.seed);
    let per_node_replicas = (e.gpus_per_node / e.replica_gpus.max(1)).max(1);
    let inference_nodes = ((nodes as f64) * e.inference_share).round() as usize;
    let training_nodes =
        ((nodes as f64) * e.training_share).round().min((nodes - inference_nodes) as f64) as usize;
    let best_effort_nodes = nodes - inference_nodes - training_nodes;
    let replicas = inference_nodes as u32 * per_node_replicas;
    let demand = |gpus: u32| TaskDemand {
        gpu: GpuDemand::whole(gpus),
        gpu_models: Vec::new(),
        cpu: MilliCores(1000),
        memory: Mebibytes(1024),
    };
    let mut workloads = Vec::new();
    let mut next = 1u64;
    let mut add = |name: String, priority: PriorityClass, shape: Shape, gpus: u32| {
        workloads.push(Workload {
            id: WorkloadId(next),
            name,
            tenant: TenantId("experiment".into()),
            priority,
            data_class: DataClass::Public,
            demand: demand(gpus),
            shape,
            duration: None,
            time_limit: None,
            pins: Default::default(),
        });
        next += 1;
    };
    if replicas > 0 {
        add("code-completion".into(), e.inference_priority, Shape::Service { replicas }, e.replica_gpus);
    }
    let gang = e.gang_nodes.max(1) as usize;
    let mut left = training_nodes;
    let mut g = 0;
    while left > 0 {
        let tasks = gang.min(left) as u32;
        let shape = if tasks > 1 { Shape::Gang { tasks, topology: Topology::Any } } else { Shape::Single };
        add(format!("training-{g}"), PriorityClass::Standard, shape, e.gpus_per_node);
        left -= tasks as usize;
        g += 1;
    }
    for b in 0..best_effort_nodes {
        add(format!("batch-{b}"), PriorityClass::BestEffort, Shape::Single, e.gpus_per_node);
    }
    let kinds: Vec<(WorkloadId, PriorityClass, Shape)> =
        workloads.iter().map(|w| (w.id, w.priority, w.shape)).collect();
    for w in workloads {
        let decisions = sched
            .handle(Timestamp(0), Event::Arrival(w), &mut rng)
            .map_err(|c| PowerError::Config(c.to_string()))?;
        if decisions.iter().any(|d| matches!(d, Decision::Pending { .. } | Decision::Rejected { .. })) {
            let reason: Vec<String> = decisions.iter().map(ToString::to_string).collect();
            return Err(PowerError::Config(format!("the mix does not fit the site: {}", reason.join("; "))));
        }
    }
    let mut placed = Vec::new();
    for (w, alloc) in sched.all_allocations() {
        let Some((_, priority, shape)) = kinds.iter().find(|k| k.0 == w.id) else { continue };
        let task = sched
            .allocations(w.id)
            .and_then(|a| a.iter().position(|t| t.as_ref() == Some(alloc)))
            .unwrap_or(0) as u32;
        placed.push(Placed {
            workload: w.id,
            task,
            node: node_position(&sched, alloc.node, fleet),
            gpus: alloc.gpus.len() as u32,
            tier: PowerTier::of(*priority, *shape),
            inference: matches!(shape, Shape::Service { .. }),
        });
    }
    placed.sort_by_key(|p| (p.node, p.workload, p.task));
    Ok((placed, ()))
}

/// The fleet position of a core node index (the core keeps fleet order here).
fn node_position(sched: &Scheduler, idx: NodeIdx, fleet: &Fleet) -> usize {
    let name = &sched.state().node(idx).name;
    fleet.nodes().position(|(_, _, n)| &n.name == name).unwrap_or(idx.0 as usize)
}
