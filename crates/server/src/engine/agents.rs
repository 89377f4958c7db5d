//! The engine's side of the agent protocol: node registration and loss, what agents
//! report of their task processes, power limits, and the assignments each node should
//! run.
//!
//! Everything here is a fact written to the log, like any other change: a registration
//! (with the node's new generation), a loss, a task that started or exited, a power
//! limit. Telemetry is not: it is measured, not decided, and lives in the registry
//! (`crate::agents`).

use std::collections::BTreeMap;

use gigawatt_api::agent::env;
use gigawatt_api::{Assignment, RegisterAgent, TaskReport, TaskState, WorkloadState, parse_workload_id};
use gigawatt_core::{Event, WorkloadId};
use gigawatt_store::LogEvent;

use super::Engine;
use crate::error::EngineError;

/// The answer to a message from an agent of an older generation.
#[must_use]
pub fn stale_generation(node: &str, sent: u64, current: Option<u64>) -> EngineError {
    let message = match current {
        Some(c) => format!(
            "node {node} is at generation {c}, this agent sent {sent}: the node was declared lost or another \
             agent registered it since. Stop every task of this node and register again."
        ),
        None => format!("node {node} has no registered agent; register first (POST /v1/agent/register)"),
    };
    EngineError::StaleGeneration(message)
}

/// The rendezvous port of a gang: the same for every member, spread over 20000–39999 so
/// that two gangs led from one node rarely collide.
#[must_use]
pub fn master_port(id: WorkloadId) -> u16 {
    20_000 + (id.0 % 20_000) as u16
}

impl Engine {
    /// Whether the core may place work on `node`: not taken down by an operator, not
    /// lost, and (when agents are required) registered.
    #[must_use]
    pub fn node_schedulable(&self, node: &str) -> bool {
        if self.view.nodes_down.contains_key(node) {
            return false;
        }
        match self.view.agents.get(node) {
            Some(a) => a.lost.is_none(),
            None => !self.require_agents,
        }
    }

    /// The current generation of a node with a live (registered, not lost) agent.
    #[must_use]
    pub fn live_generation(&self, node: &str) -> Option<u64> {
        self.view.agents.get(node).filter(|a| a.lost.is_none()).map(|a| a.generation)
    }

    pub(super) fn node_removed(&mut self, now_ms: i64, node: &str, was: bool) -> Result<(), EngineError> {
        if was && !self.node_schedulable(node) {
            self.core(now_ms, Event::NodeRemoved { node: node.to_string() })?;
        }
        Ok(())
    }

    pub(super) fn node_restored(&mut self, now_ms: i64, node: &str, was: bool) -> Result<(), EngineError> {
        if !was && self.node_schedulable(node) {
            self.core(now_ms, Event::NodeRestored { node: node.to_string() })?;
        }
        Ok(())
    }

    /// Registers a node's agent and returns the node's new generation. An agent that
    /// registers while an older one still holds the node replaces it: the node is lost
    /// first (its work requeued), so that nothing the old agent ran is taken for running.
    pub fn register_node(&mut self, now_ms: i64, req: &RegisterAgent) -> Result<u64, EngineError> {
        let node = req.node.as_str();
        let Some(spec) = self.fleet_nodes.get(node) else {
            return Err(EngineError::not_found("node", node).with_message(format!(
                "node `{node}` is not in the fleet file the control plane runs ({} nodes); start the agent \
                 with --node set to one of the fleet's node names",
                self.fleet_nodes.len()
            )));
        };
        if req.gpus.len() != spec.gpu_count as usize {
            return Err(EngineError::field(
                "gpus",
                format!(
                    "node {node} has {} GPUs in the fleet file but the agent found {}; fix the fleet file or the agent's --simulate",
                    spec.gpu_count,
                    req.gpus.len()
                ),
            ));
        }
        if let Some(want) = &spec.gpu_model
            && let Some(bad) = req.gpus.iter().find(|g| g.model.as_ref().is_some_and(|m| m != want))
        {
            return Err(EngineError::field(
                "gpus",
                format!(
                    "node {node} has {want} GPUs in the fleet file but GPU {} is a {} ({})",
                    bad.index,
                    bad.model.as_deref().unwrap_or("?"),
                    bad.name
                ),
            ));
        }
        if let Some(idx) = self.scheduler.state().node_by_name(node) {
            crate::agents::validate::check_inventory(self.scheduler.state().node(idx).gpu_tdp, &req.gpus)?;
        }
        for (i, g) in req.gpus.iter().enumerate() {
            if usize::from(g.index) != i {
                return Err(EngineError::field(
                    format!("gpus[{i}].index"),
                    "list the GPUs in index order, 0 first",
                ));
            }
        }
        if req.address.is_empty() || req.address.len() > 255 || req.address.chars().any(char::is_whitespace) {
            return Err(EngineError::field(
                "address",
                "give a host name or IP address other nodes can reach",
            ));
        }
        let previous = self.view.agents.get(node).map(|a| (a.generation, a.lost.is_none()));
        if let Some((generation, true)) = previous {
            let was = self.node_schedulable(node);
            self.stage(
                now_ms,
                LogEvent::NodeLost {
                    node: node.to_string(),
                    generation: generation + 1,
                    reason: "a new agent registered the node (the previous one restarted or was replaced)"
                        .into(),
                },
            )?;
            self.node_removed(now_ms, node, was)?;
        }
        let generation = self.view.agents.get(node).map_or(1, |a| a.generation + 1);
        let was = self.node_schedulable(node);
        self.stage(
            now_ms,
            LogEvent::NodeRegistered {
                node: node.to_string(),
                generation,
                backend: req.backend.clone(),
                address: req.address.clone(),
                version: req.version.clone(),
                gpus: req.gpus.clone(),
            },
        )?;
        self.node_restored(now_ms, node, was)?;
        Ok(generation)
    }

    /// Declares a node lost (its heartbeats stopped). Does nothing, and answers `false`,
    /// when the node moved on meanwhile (registered again, already lost).
    pub fn node_lost(
        &mut self,
        now_ms: i64,
        node: &str,
        generation: u64,
        reason: String,
    ) -> Result<bool, EngineError> {
        if self.live_generation(node) != Some(generation) {
            return Ok(false);
        }
        let was = self.node_schedulable(node);
        self.stage(
            now_ms,
            LogEvent::NodeLost { node: node.to_string(), generation: generation + 1, reason },
        )?;
        self.node_removed(now_ms, node, was)?;
        Ok(true)
    }

    /// Records what an agent reported of its tasks: starts of current copies, and every
    /// exit not yet recorded (`stale_exits` lists the exits of older copies the caller
    /// has not recorded before). An exit may end its workload: the first failure fails
    /// it, the last success completes it.
    pub fn agent_reports(
        &mut self,
        now_ms: i64,
        node: &str,
        generation: u64,
        reports: &[TaskReport],
    ) -> Result<(), EngineError> {
        let current = self.live_generation(node);
        if current != Some(generation) {
            return Err(stale_generation(node, generation, self.view.agents.get(node).map(|a| a.generation)));
        }
        // Ends before starts: a task that took the GPUs of one that just ended is logged
        // after it, as it happened on the node (its agent starts nothing on GPUs still
        // held by a leaving process).
        let mut ordered: Vec<&TaskReport> = reports.iter().collect();
        ordered.sort_by_key(|r| matches!(r.state, TaskState::Running | TaskState::Stopping));
        for r in ordered {
            let Some(id) = parse_workload_id(&r.workload) else { continue };
            let Some(w) = self.view.workloads.get(&id) else { continue };
            let run = w.run(r.task);
            let current_copy = run.generation == r.generation && run.generation != 0;
            match r.state {
                TaskState::Running | TaskState::Stopping => {
                    if current_copy && run.started_at.is_none() {
                        self.stage(
                            now_ms,
                            LogEvent::TaskStarted {
                                workload: id,
                                task: r.task,
                                generation: r.generation,
                                node: node.to_string(),
                                pid: r.pid,
                            },
                        )?;
                    }
                }
                TaskState::Exited | TaskState::FailedToStart => {
                    if current_copy && run.exit.is_some() {
                        continue;
                    }
                    let message = match r.state {
                        TaskState::FailedToStart => {
                            Some(r.message.clone().unwrap_or_else(|| "the process could not start".into()))
                        }
                        _ => None,
                    };
                    let energy_j = if r.energy_j.is_finite() { r.energy_j.max(0.0) } else { 0.0 };
                    let started_ms = if current_copy { run.started_at } else { None };
                    let (site, co2_g) = self.carbon_of(node, started_ms.unwrap_or(now_ms), now_ms, energy_j);
                    self.stage(
                        now_ms,
                        LogEvent::TaskExited {
                            workload: id,
                            task: r.task,
                            generation: r.generation,
                            node: node.to_string(),
                            exit_code: r.exit_code,
                            signal: r.signal,
                            energy_j,
                            message,
                            site,
                            started_ms,
                            co2_g,
                        },
                    )?;
                    if current_copy {
                        self.settle(now_ms, id)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The site of `node` and the grams of CO2 of `energy_j` used evenly from `start` to
    /// `end` there, when the site has a carbon-intensity series (a one-week profile is
    /// read as a typical week).
    #[must_use]
    pub fn carbon_of(
        &self,
        node: &str,
        start: i64,
        end: i64,
        energy_j: f64,
    ) -> (Option<String>, Option<f64>) {
        let core = self.scheduler.state();
        let Some(site) =
            core.node_by_name(node).and_then(|i| self.fleet.sites.get(core.node(i).site as usize))
        else {
            return (None, None);
        };
        let co2 = site.carbon.as_ref().map(|c| {
            let (s, e) =
                (gigawatt_units::Timestamp(start.min(end)), gigawatt_units::Timestamp(end.max(start + 1)));
            // The mean intensity over the run, from a 1 MW probe over the same window.
            let probe = gigawatt_units::Watts(1_000_000);
            let hours = (e.0 - s.0) as f64 / 3.6e6;
            let per_kwh = c.series.emissions_repeating(s, e, probe).0 / (1000.0 * hours);
            per_kwh * energy_j / 3.6e6
        });
        (Some(site.id.clone()), co2)
    }

    /// Ends a live workload whose task exits decide it.
    fn settle(&mut self, now_ms: i64, id: WorkloadId) -> Result<(), EngineError> {
        let Some(w) = self.view.workloads.get(&id) else { return Ok(()) };
        if w.state.is_final() {
            return Ok(());
        }
        let runs: Vec<_> = (0..w.tasks.len() as u32).map(|t| w.run(t)).collect();
        let failed = runs.iter().filter_map(|r| r.exit.as_ref()).find(|e| !e.succeeded());
        let outcome = match failed {
            Some(e) => Some((WorkloadState::Failed, e.exit_code)),
            None if runs.iter().all(|r| r.exit.as_ref().is_some_and(|e| e.succeeded())) => {
                Some((WorkloadState::Succeeded, Some(0)))
            }
            None => None,
        };
        if let Some((state, exit_code)) = outcome {
            self.end(now_ms, id, state, exit_code, None)?;
        }
        Ok(())
    }

    /// Sets (or clears) the power limit of some of a node's GPUs.
    pub fn set_power_limit(
        &mut self,
        now_ms: i64,
        node: &str,
        gpus: Option<Vec<u16>>,
        watts: Option<u64>,
        by: &str,
    ) -> Result<(), EngineError> {
        let Some(spec) = self.fleet_nodes.get(node) else { return Err(EngineError::not_found("node", node)) };
        let count = spec.gpu_count as u16;
        if count == 0 {
            return Err(EngineError::field("gpus", format!("node {node} has no GPUs")));
        }
        let gpus = gpus.unwrap_or_else(|| (0..count).collect());
        if gpus.is_empty() {
            return Err(EngineError::field("gpus", "name at least one GPU, or leave `gpus` out for all"));
        }
        if let Some(g) = gpus.iter().find(|g| **g >= count) {
            return Err(EngineError::field(
                "gpus",
                format!("node {node} has GPUs 0..={}, not {g}", count - 1),
            ));
        }
        if let Some(w) = watts {
            // The agent reports the settable range; refuse what its GPUs cannot do.
            let range = self.view.agents.get(node).and_then(|a| {
                let lo = a.gpus.iter().map(|g| g.min_power_limit_w).max()?;
                let hi = a.gpus.iter().map(|g| g.max_power_limit_w).min()?;
                Some((lo, hi))
            });
            let (lo, hi) = range.or(spec.limit_range).unwrap_or((1, u64::MAX));
            if !(lo..=hi).contains(&w) {
                return Err(EngineError::field(
                    "watts",
                    format!("{w} W is outside what node {node}'s GPUs accept: {lo}..={hi} W"),
                ));
            }
        }
        let mut gpus = gpus;
        gpus.sort_unstable();
        gpus.dedup();
        self.stage(
            now_ms,
            LogEvent::PowerLimitSet { node: node.to_string(), gpus, watts, by: by.to_string() },
        )
    }

    /// The power limits operators set on a node, per GPU index.
    #[must_use]
    pub fn power_limits(&self, node: &str) -> BTreeMap<u16, u64> {
        self.view.power_limits.get(node).cloned().unwrap_or_default()
    }

    /// Every task copy placed on `node` that has a command to run and has not ended,
    /// with its environment.
    #[must_use]
    pub fn assignments(&self, node: &str) -> Vec<Assignment> {
        let Some(ids) = self.by_node.get(node) else { return Vec::new() };
        let mut out = Vec::new();
        for id in ids {
            let Some(w) = self.view.workloads.get(id) else { continue };
            if w.state.is_final() || w.run.command.is_empty() {
                continue;
            }
            let world = w.tasks.len();
            let master =
                w.tasks.first().and_then(Option::as_ref).map(|t| {
                    self.view.agents.get(&t.node).map_or_else(|| t.node.clone(), |a| a.address.clone())
                });
            for t in w.tasks.iter().flatten().filter(|t| t.node == node) {
                let run = w.run(t.task);
                if run.exit.is_some() || run.generation == 0 {
                    continue;
                }
                let gpus: Vec<u16> = t.gpus.iter().map(|(g, _)| *g).collect();
                let mut envs = w.run.env.clone();
                let visible = gpus.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
                envs.insert(env::CUDA_VISIBLE_DEVICES.into(), visible);
                envs.insert(env::WORKLOAD_ID.into(), id.to_string());
                envs.insert(env::RANK.into(), t.task.to_string());
                envs.insert(env::WORLD_SIZE.into(), world.to_string());
                envs.insert(env::MASTER_ADDR.into(), master.clone().unwrap_or_else(|| node.to_string()));
                envs.insert(env::MASTER_PORT.into(), master_port(*id).to_string());
                envs.insert(env::GENERATION.into(), run.generation.to_string());
                envs.insert(env::NODE.into(), node.to_string());
                out.push(Assignment {
                    workload: id.to_string(),
                    task: t.task,
                    generation: run.generation,
                    gpus,
                    gpu_milli: t.gpus.iter().map(|(_, m)| m.0).collect(),
                    command: w.run.command.clone(),
                    env: envs,
                    grace_ms: w.run.grace_s.map(|s| s.saturating_mul(1000)),
                });
            }
        }
        out
    }
}
