//! From the engine's state to the API's shapes.

use gigawatt_api::{
    DecisionInfo, DeferSpec, GangSpec, JobSpec, NodeInfo, PlacementSpec, RackInfo, Resources, ServiceSpec,
    SiteInfo, TaskInfo, TokenInfo, WorkloadInfo, rfc3339,
};
use gigawatt_core::{NodeState, Shape};
use gigawatt_store::{Record, Token, WorkloadRecord};

use crate::engine::Engine;

/// The job spec a workload record was built from.
#[must_use]
pub fn spec_of(w: &WorkloadRecord) -> JobSpec {
    let d = &w.workload.demand;
    let shared = d.gpu.count == 1 && d.gpu.milli_per_gpu.0 < 1000;
    JobSpec {
        name: w.workload.name.clone(),
        tenant: Some(w.workload.tenant.0.clone()),
        kind: Some(w.kind),
        priority: Some(w.workload.priority),
        data_class: Some(w.workload.data_class),
        resources: Resources {
            gpus: d.gpu.count,
            gpu_milli: shared.then_some(d.gpu.milli_per_gpu.0),
            gpu_models: d.gpu_models.clone(),
            cpu_millicores: d.cpu.0,
            memory_mib: d.memory.0,
        },
        gang: match w.workload.shape {
            Shape::Gang { tasks, topology } => Some(GangSpec { tasks, topology }),
            _ => None,
        },
        service: match w.workload.shape {
            Shape::Service { replicas } => Some(ServiceSpec { replicas }),
            _ => None,
        },
        command: w.run.command.clone(),
        env: w.run.env.clone(),
        time_limit: w.run.time_limit_s.map(|s| format!("{s}s")),
        grace: w.run.grace_s.map(|s| format!("{s}s")),
        deferrable: w.deferral.as_ref().map(|d| DeferSpec { deadline: rfc3339(d.deadline_ms) }),
        placement: (!w.workload.pins.is_anywhere()).then(|| PlacementSpec {
            sites: w.workload.pins.sites.iter().flatten().cloned().collect(),
            countries: w.workload.pins.countries.iter().flatten().cloned().collect(),
        }),
    }
}

/// A workload as the API shows it.
#[must_use]
pub fn workload_info(engine: &Engine, w: &WorkloadRecord) -> WorkloadInfo {
    let state = engine.scheduler.state();
    let placement = w
        .tasks
        .iter()
        .flatten()
        .map(|t| {
            let site = state
                .node_by_name(&t.node)
                .map(|i| state.sites[state.node(i).site as usize].id.clone())
                .unwrap_or_default();
            TaskInfo {
                task: t.task,
                node: t.node.clone(),
                site,
                gpus: t.gpus.iter().map(|(g, _)| *g).collect(),
                gpu_milli: t.gpus.iter().map(|(_, m)| m.0).collect(),
                generation: w.run(t.task).generation,
                process: match w.run(t.task) {
                    r if r.exit.is_some() => "exited",
                    r if r.started_at.is_some() => "running",
                    _ => "assigned",
                }
                .to_string(),
            }
        })
        .collect();
    WorkloadInfo {
        id: w.workload.id.to_string(),
        state: w.state,
        name: w.workload.name.clone(),
        tenant: w.workload.tenant.0.clone(),
        kind: w.kind,
        priority: w.workload.priority.to_string(),
        data_class: w.workload.data_class.to_string(),
        tasks_total: w.workload.shape.tasks(),
        tasks_placed: w.placed(),
        placement,
        reason: w.reason.clone(),
        submitted_at: rfc3339(w.submitted_at),
        updated_at: rfc3339(w.updated_at),
        exit_code: w.exit_code,
        energy_j: w.energy_j,
        energy_kwh: w.energy_j / 3.6e6,
        co2_g: (w.co2_g > 0.0).then_some(w.co2_g),
        tokens: w.tokens,
        joules_per_token: (w.tokens > 0).then(|| w.energy_j / w.tokens as f64),
        spec: spec_of(w),
        queue: None,
    }
}

/// One log record about a workload, for `explain`.
#[must_use]
pub fn decision_info(r: &Record, caller: &crate::auth::Caller) -> DecisionInfo {
    let mut detail = serde_json::to_value(&r.event).unwrap_or(serde_json::Value::Null);
    let mut text = r.event.describe();
    // A preemption for another workload: its tenant learns that it happened and why,
    // never whose work it was; operators see who.
    if let gigawatt_store::LogEvent::WorkloadPreempted { why, .. } = &r.event
        && let Some(by) = why.preemptor()
    {
        if caller.role == gigawatt_api::Role::Tenant {
            if let Some(w) = detail.get_mut("why").and_then(serde_json::Value::as_object_mut) {
                for k in gigawatt_core::PreemptWhy::OTHERS_FIELDS {
                    w.remove(k);
                }
            }
        } else {
            text.push_str(&format!(" (for {by})"));
        }
    }
    // Why it waits: its tenant reads the reasons, never the fleet's node counts or the
    // work ahead of it (see `PendingWhy::for_tenant`); operators read both.
    if let gigawatt_store::LogEvent::WorkloadPending { why, .. } = &r.event {
        if caller.role == gigawatt_api::Role::Tenant {
            if let Some(w) = detail.get_mut("why").and_then(serde_json::Value::as_object_mut) {
                for k in gigawatt_core::PendingWhy::FLEET_FIELDS {
                    w.remove(k);
                }
            }
        } else if why.quota.is_none() {
            text.push_str(&format!(" ({why})"));
        }
    }
    DecisionInfo { seq: r.seq, at: rfc3339(r.at_ms), event: r.event.kind().to_string(), text, detail }
}

/// Every site with live figures.
#[must_use]
pub fn sites(engine: &Engine) -> Vec<SiteInfo> {
    let state = engine.scheduler.state();
    let mut out: Vec<SiteInfo> = engine
        .fleet
        .sites
        .iter()
        .zip(&state.sites)
        .map(|(f, s)| SiteInfo {
            id: s.id.clone(),
            name: f.name.clone(),
            country: f.country.to_string(),
            region: f.region.clone(),
            certifications: f.certifications.iter().map(ToString::to_string).collect(),
            jurisdiction: f.jurisdiction.clone(),
            pue: f.pue.0,
            budget_w: s.budget.0,
            power_w: s.power.0,
            provisioning: f.provisioning.mode().to_string(),
            oversubscription: f.provisioning.ratio(),
            floor_w: s.floor.0,
            racks: 0,
            nodes: 0,
            nodes_down: 0,
            gpus: 0,
            gpu_allocated_milli: 0,
        })
        .collect();
    for r in &state.racks {
        if let Some(s) = out.get_mut(r.site as usize) {
            s.racks += 1;
        }
    }
    for n in &state.nodes {
        if let Some(s) = out.get_mut(n.site as usize) {
            s.nodes += 1;
            s.nodes_down += u32::from(!n.up);
            s.gpus += u64::from(n.gpu_count());
            s.gpu_allocated_milli += u64::from(n.gpu_allocated().0);
        }
    }
    out
}

/// Every rack with live figures.
#[must_use]
pub fn racks(engine: &Engine) -> Vec<RackInfo> {
    let state = engine.scheduler.state();
    let mut out: Vec<RackInfo> = state
        .racks
        .iter()
        .map(|r| RackInfo {
            id: r.id.clone(),
            site: state.sites[r.site as usize].id.clone(),
            network_domain: state.domains[r.domain as usize].clone(),
            limit_w: r.limit.0,
            power_w: r.power.0,
            nodes: 0,
            gpus: 0,
            gpu_allocated_milli: 0,
        })
        .collect();
    for n in &state.nodes {
        if let Some(r) = out.get_mut(n.rack as usize) {
            r.nodes += 1;
            r.gpus += u64::from(n.gpu_count());
            r.gpu_allocated_milli += u64::from(n.gpu_allocated().0);
        }
    }
    out
}

/// One node.
#[must_use]
pub fn node_info(engine: &Engine, n: &NodeState) -> NodeInfo {
    let state = engine.scheduler.state();
    NodeInfo {
        name: n.name.clone(),
        site: state.sites[n.site as usize].id.clone(),
        rack: state.racks[n.rack as usize].id.clone(),
        gpu_model: n.model.map(|m| state.models[usize::from(m)].id.clone()),
        gpu_free_milli: n.gpu_free.iter().map(|g| g.0).collect(),
        gpu_allocated_milli: u64::from(n.gpu_allocated().0),
        cpu_millicores: n.cpu_total.0,
        cpu_free_millicores: n.cpu_free.0,
        memory_mib: n.mem_total.0,
        memory_free_mib: n.mem_free.0,
        power_w: n.power.0,
        tasks: n.tasks,
        up: n.up,
    }
}

/// A token as listed.
#[must_use]
pub fn token_info(id: &str, t: &Token) -> TokenInfo {
    TokenInfo {
        id: id.to_string(),
        name: t.name.clone(),
        role: t.role,
        tenant: t.tenant.clone(),
        created_at: rfc3339(t.created_at),
        revoked: t.revoked,
        node: t.node.clone(),
        join_expires_at: t.join_expires_at.map(rfc3339),
    }
}
