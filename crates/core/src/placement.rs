//! Placement: where the waiting tasks of one workload go.
//!
//! `try_place` takes what quota and reservations allow (`admission`), asks the policy to
//! score the feasible nodes (all of them, or the tightest K from the fit index), places a
//! gang all or nothing in one topology group, and preempts lower priorities when that is
//! the only way. It reports why tasks still wait, from the evaluation it really did. The
//! event loop that calls it is in `scheduler.rs`.

use gigawatt_units::{GpuMilli, Watts};
use rand::Rng;

use crate::event::{Decision, TaskPlacement};
use crate::explain::{PendingWhy, PlacedWhy, TaskWhy};
use crate::policy::{BoundedSearch, Scored, tightest_gpu};
use crate::scheduler::Scheduler;
use crate::state::{GpuPick, Need, NodeIdx, NodeState, TaskAlloc};
use crate::workload::{Shape, WorkloadId};
use crate::{CoreRng, gang, index};

/// Draws a uniform bounded search makes before falling back to a full scan.
const UNIFORM_DRAWS: usize = 512;

impl Scheduler {
    /// Tries to place the unplaced tasks of `id`. Returns why some still wait, if any.
    /// Placing every task takes it out of the queue and charges its tenant. `near`
    /// restricts a gang to the topology groups of these nodes (the ones freed).
    pub(crate) fn try_place(
        &mut self,
        id: WorkloadId,
        near: Option<&[u32]>,
        preempt: bool,
        rng: &mut CoreRng,
        out: &mut Vec<Decision>,
    ) -> Option<PendingWhy> {
        let models_now = self.state.models.len();
        let stale = self.workloads.get(&id).is_some_and(|e| e.models_known != models_now);
        if stale {
            let names =
                self.workloads.get(&id).map(|e| e.workload.demand.gpu_models.clone()).unwrap_or_default();
            if let Ok(set) = self.model_set(&names)
                && let Some(e) = self.workloads.get_mut(&id)
            {
                e.need.models = set;
                e.models_known = models_now;
            }
        }
        let admit = match self.admission(id) {
            Ok(a) => a,
            Err(q) => {
                let tasks = self.workloads.get(&id).map_or(0, |e| e.workload.shape.tasks() - e.placed());
                return Some(PendingWhy { quota: Some(q), tasks_pending: tasks, ..PendingWhy::default() });
            }
        };
        let entry = self.workloads.get(&id)?;
        let mut need = entry.need.clone();
        need.admit = admit;
        let shape = entry.workload.shape;
        let todo: Vec<u32> =
            entry.tasks.iter().enumerate().filter(|(_, t)| t.is_none()).map(|(i, _)| i as u32).collect();
        let placed_before = entry.placed();
        let (placed, pending) = match shape {
            Shape::Gang { topology, .. } => {
                let members = near.map(|n| self.group_members(n, topology));
                match gang::place(self, &need, topology, todo.len() as u32, members.as_deref(), rng) {
                    Ok(list) => (todo.iter().copied().zip(list).collect::<Vec<_>>(), None),
                    Err(why) => (Vec::new(), Some(why)),
                }
            }
            Shape::Single | Shape::Service { .. } => {
                let mut placed = Vec::new();
                let mut pending = None;
                for &task in &todo {
                    need.admit.tasks = (todo.len() - placed.len()) as u32;
                    let mut result = self.place_one(&need, None, rng);
                    if result.is_err()
                        && preempt
                        && self.config.priority_preemption
                        && self.preempt_for(id, &need, out)
                    {
                        result = self.place_one(&need, None, rng);
                    }
                    match result {
                        Ok(p) => placed.push((task, p)),
                        Err(mut why) => {
                            why.tasks_placed = placed_before + placed.len() as u32;
                            why.tasks_pending = (todo.len() - placed.len()) as u32;
                            pending = Some(why);
                            break;
                        }
                    }
                }
                (placed, pending)
            }
        };
        // Every node turned away by quota while the energy quota is what limits: the
        // tenant's energy is the refusal (its work waits parked, not its class).
        let pending = match pending {
            Some(mut why)
                if need.admit.energy_room.is_some()
                    && why.nodes_fit == 0
                    && why.quota.is_none()
                    && why.rejected.contains_key(&crate::explain::Reason::Quota)
                    && self.energy_only_refuses(id, &need) =>
            {
                let tenant = self.workloads.get(&id).map(|e| e.workload.tenant.clone())?;
                why.quota = Some(Box::new(self.energy_refusal(&tenant)));
                Some(why)
            }
            other => other,
        };
        if !placed.is_empty() {
            self.seq += 1;
            let seq = self.seq;
            let now = self.now;
            let mut tasks = Vec::with_capacity(placed.len());
            let mut whys = Vec::with_capacity(placed.len());
            let mut allocs = Vec::with_capacity(placed.len());
            let all = pending.is_none();
            if all {
                self.dequeue(id);
            }
            let entry = self.workloads.get_mut(&id)?;
            entry.placed_seq = seq;
            entry.started = Some(now);
            for (task, (alloc, mut why)) in placed {
                why.task = task;
                tasks.push(TaskPlacement {
                    task,
                    node: self.state.node(alloc.node).name.clone(),
                    gpus: alloc.gpus.clone(),
                    power: Watts(crate::energy::task_watts(&self.state, &alloc)),
                });
                whys.push(why);
                entry.tasks[task as usize] = Some(alloc.clone());
                allocs.push(alloc);
            }
            let t = entry.tenant;
            for a in &allocs {
                self.charge_task(id, a);
                self.charge_energy(id, a);
            }
            self.note_running(id);
            if all {
                self.unreserve(id);
            }
            self.refresh_share(t);
            out.push(Decision::Placed {
                workload: id,
                tasks,
                why: PlacedWhy { policy: self.policy.name().to_string(), tasks: whys },
            });
        }
        pending
    }

    /// The members of the topology groups (racks, domains) of `nodes`, in node order.
    pub(crate) fn group_members(&mut self, nodes: &[u32], topology: crate::workload::Topology) -> Vec<u32> {
        use crate::workload::Topology;
        if self.topo.0 != self.state.nodes.len() {
            let mut racks = vec![Vec::new(); self.state.racks.len()];
            let mut domains = vec![Vec::new(); self.state.domains.len()];
            for (i, n) in self.state.nodes.iter().enumerate() {
                racks[n.rack as usize].push(i as u32);
                domains[self.state.racks[n.rack as usize].domain as usize].push(i as u32);
            }
            self.topo = (self.state.nodes.len(), racks, domains);
        }
        let mut out: Vec<u32> = match topology {
            Topology::SameNode => nodes.to_vec(),
            Topology::SameRack | Topology::SameDomain => {
                let mut groups: Vec<u32> = nodes
                    .iter()
                    .filter_map(|n| self.state.nodes.get(*n as usize))
                    .map(|n| {
                        if topology == Topology::SameRack {
                            n.rack
                        } else {
                            self.state.racks[n.rack as usize].domain
                        }
                    })
                    .collect();
                groups.sort_unstable();
                groups.dedup();
                let lists = if topology == Topology::SameRack { &self.topo.1 } else { &self.topo.2 };
                groups.iter().flat_map(|g| lists[*g as usize].iter().copied()).collect()
            }
            Topology::Any => (0..self.state.nodes.len() as u32).collect(),
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Places one task: filter, score, pick the best node, pick GPUs, allocate.
    /// `within` restricts the nodes considered to a list in node order (for gangs).
    ///
    /// With [`SchedulerConfig::max_candidates`], candidates come from the fit index,
    /// tightest first, and only that many feasible nodes are scored. Ties go to the lowest
    /// node index.
    pub(crate) fn place_one(
        &mut self,
        need: &Need,
        within: Option<&[u32]>,
        rng: &mut CoreRng,
    ) -> Result<(TaskAlloc, TaskWhy), PendingWhy> {
        let mut why = PendingWhy::default();
        let mut scored = std::mem::take(&mut self.scratch);
        scored.clear();
        let search = self.policy.bounded_search();
        let bounded = self.config.max_candidates.is_some() && within.is_none();
        if let (Some(_), None, BoundedSearch::Uniform) = (self.config.max_candidates, within, search) {
            // Uniform over feasible nodes without a full scan: draw, accept the first that
            // fits. The bound keeps a nearly full cluster from spinning; then the full
            // scan below decides exactly.
            let n = self.state.nodes.len();
            for _ in 0..(4 * n).min(UNIFORM_DRAWS) {
                let i = rng.random_range(0..n);
                let node = &self.state.nodes[i];
                if self.state.check(node, need).is_ok() {
                    why.nodes_total += 1;
                    scored.push((NodeIdx(i as u32), Scored { score: 0.0, gpu: None }));
                    break;
                }
            }
        } else if let (Some(limit), None, BoundedSearch::Tightest) =
            (self.config.max_candidates, within, search)
        {
            // Bounded: the tightest feasible nodes from the fit index.
            let state = &self.state;
            let eligible = |site: u32, model: Option<u16>| {
                need.sites.contains(site)
                    && (need.gpu_count == 0 || model.is_some_and(|m| need.models.allows(m)))
            };
            for n in state.fit.candidates(index::order_for(need.gpu_count, need.milli), eligible) {
                let node = &state.nodes[n as usize];
                why.nodes_total += 1;
                match state.check(node, need) {
                    Ok(()) => {
                        scored.push((NodeIdx(n), Scored { score: 0.0, gpu: None }));
                        if scored.len() >= limit.max(1) as usize {
                            break;
                        }
                    }
                    Err(r) => why.count(r),
                }
            }
            // Score in node order, so that ties go to the lowest index as in a full scan.
            scored.sort_by_key(|(i, _)| *i);
        }
        // Exact: every node. Also after a bounded search that found none: sampling may
        // have missed the few nodes that fit, and the explanation needs every node; the
        // tightest-first search has seen every eligible node, so a retry of the queue
        // (whose explanation nobody reads) skips it.
        let exhaustive = bounded && search == BoundedSearch::Tightest;
        if scored.is_empty() && (!exhaustive || self.explain_failures) {
            why = PendingWhy::default();
            let all = 0..self.state.nodes.len() as u32;
            let nodes: Box<dyn Iterator<Item = u32>> = match within {
                Some(list) => Box::new(list.iter().copied()),
                None => Box::new(all),
            };
            for i in nodes {
                let Some(node) = self.state.nodes.get(i as usize) else { continue };
                why.nodes_total += 1;
                match self.state.check(node, need) {
                    Ok(()) => scored.push((NodeIdx(i), Scored { score: 0.0, gpu: None })),
                    Err(r) => why.count(r),
                }
            }
        }
        why.nodes_fit = scored.len() as u32;
        if scored.is_empty() {
            self.scratch = scored;
            return Err(why);
        }
        for (idx, s) in scored.iter_mut() {
            *s = self.policy.score(&self.state, &self.state.nodes[idx.0 as usize], need, rng);
        }
        let mut just_scores: Vec<Scored> = scored.iter().map(|(_, s)| *s).collect();
        self.policy.normalize(&mut just_scores);
        let mut best = 0usize;
        for (i, s) in just_scores.iter().enumerate() {
            if s.score > just_scores[best].score {
                best = i;
            }
        }
        let (idx, chosen) = (scored[best].0, just_scores[best]);
        let candidates = scored.len() as u32;
        self.scratch = scored;
        let node = &self.state.nodes[idx.0 as usize];
        let preferred = if chosen.gpu.is_none() && need.gpu_count == 1 && need.milli < GpuMilli::WHOLE {
            self.policy.pick_gpu(node, need, rng)
        } else {
            chosen.gpu
        };
        let gpus = pick_gpus(node, need, preferred);
        let alloc = TaskAlloc { node: idx, gpus, cpu: need.cpu, memory: need.memory };
        let terms = self.policy.explain(&self.state, node, need, alloc.gpus.first().map(|(g, _)| *g));
        let node_name = node.name.clone();
        match self.state.allocate(&alloc) {
            Ok(power) => Ok((
                alloc.clone(),
                TaskWhy {
                    task: 0,
                    node: node_name,
                    gpus: alloc.gpus,
                    score: chosen.score,
                    terms,
                    candidates,
                    power,
                },
            )),
            // The filter and the allocator disagree: refuse rather than corrupt.
            Err(_) => {
                why.nodes_fit = 0;
                Err(why)
            }
        }
    }

    /// Tries to place a waiting workload now, without preempting (the backfill walk).
    pub(crate) fn try_place_public(&mut self, id: WorkloadId, rng: &mut CoreRng, out: &mut Vec<Decision>) {
        self.try_place(id, None, false, rng, out);
    }
}

/// GPUs for a task on its chosen node: the policy's choice for a share of one GPU (or
/// the tightest fitting GPU), the lowest-index free GPUs for whole GPUs.
pub(crate) fn pick_gpus(node: &NodeState, need: &Need, preferred: Option<u16>) -> GpuPick {
    if need.gpu_count == 0 || need.milli == GpuMilli::ZERO {
        return Vec::new();
    }
    if need.gpu_count == 1 && need.milli < GpuMilli::WHOLE {
        let ok = preferred.filter(|g| node.gpu_free.get(usize::from(*g)).is_some_and(|f| *f >= need.milli));
        return ok
            .or_else(|| tightest_gpu(node, need.milli))
            .map(|g| vec![(g, need.milli)])
            .unwrap_or_default();
    }
    node.gpu_free
        .iter()
        .enumerate()
        .filter(|(_, f)| **f == GpuMilli::WHOLE)
        .take(need.gpu_count as usize)
        .map(|(i, _)| (i as u16, GpuMilli::WHOLE))
        .collect()
}
