//! Gang placement: N tasks that start together or not at all, inside one topology group.
//!
//! Tasks are placed one at a time by the ordinary policy, restricted to one group (a
//! node, a rack, a network domain, or the whole cluster), and allocated as they go so
//! that every hard limit is checked against the tasks already placed. If any task does
//! not fit, everything placed for the gang is released: the state is left exactly as it
//! was.
//!
//! Groups are tried tightest first: the group with the least free GPU share that can
//! still plausibly hold the gang, which keeps large islands free for large gangs.

use std::collections::BTreeMap;

use gigawatt_units::GpuMilli;

use crate::CoreRng;
use crate::explain::{PendingWhy, Reason, TaskWhy};
use crate::scheduler::Scheduler;
use crate::state::{Need, NodeState, TaskAlloc};
use crate::workload::Topology;

/// How many tasks of `need` a node could hold on its own (GPU, CPU and memory only).
fn capacity(node: &NodeState, need: &Need) -> u64 {
    let mut cap = u64::MAX;
    if need.gpu_count > 0 {
        cap = if need.gpu_count == 1 {
            node.gpu_free.iter().map(|f| u64::from(f.0 / need.milli.0.max(1))).sum()
        } else {
            u64::from(node.free_whole / need.gpu_count)
        };
    }
    if let Some(n) = node.cpu_free.0.checked_div(need.cpu.0) {
        cap = cap.min(n);
    }
    if let Some(n) = node.mem_free.0.checked_div(need.memory.0) {
        cap = cap.min(n);
    }
    cap
}

/// The topology group of node `idx`: itself, its rack, its network domain, or the
/// single group "everywhere".
fn group_of(idx: usize, node: &NodeState, topology: Topology, rack_domain: &[u32]) -> u32 {
    match topology {
        Topology::SameNode => idx as u32,
        Topology::SameRack => node.rack,
        Topology::SameDomain => rack_domain.get(node.rack as usize).copied().unwrap_or(u32::MAX),
        Topology::Any => 0,
    }
}

/// Places `tasks` tasks of `need` under `topology`, all or nothing. `only` restricts the
/// search to these nodes (the members of the groups where capacity was freed: no other
/// group changed since the gang last failed).
pub(crate) fn place(
    sched: &mut Scheduler,
    need: &Need,
    topology: Topology,
    tasks: u32,
    only: Option<&[u32]>,
    rng: &mut CoreRng,
) -> Result<Vec<(TaskAlloc, TaskWhy)>, PendingWhy> {
    // One pass of the filter: per-node reasons for the explanation, and the groups that
    // could hold the whole gang.
    let state = sched.state();
    let rack_domain: Vec<u32> = state.racks.iter().map(|r| r.domain).collect();
    let mut why = PendingWhy::default();
    // Per group: capacity in tasks, free GPU share, and the members in node order.
    let mut groups: BTreeMap<u32, (u64, GpuMilli, Vec<u32>)> = BTreeMap::new();
    let all: Vec<u32>;
    let scan: &[u32] = match only {
        Some(list) => list,
        None => {
            all = (0..state.nodes.len() as u32).collect();
            &all
        }
    };
    for &i in scan {
        let i = i as usize;
        let Some(node) = state.nodes.get(i) else { continue };
        why.nodes_total += 1;
        if let Err(r) = state.check(node, need) {
            why.count(r);
            continue;
        }
        why.nodes_fit += 1;
        let g = groups.entry(group_of(i, node, topology, &rack_domain)).or_insert((
            0,
            GpuMilli::ZERO,
            Vec::new(),
        ));
        g.0 = g.0.saturating_add(capacity(node, need));
        g.1 += node.free_total;
        g.2.push(i as u32);
    }
    let mut candidates: Vec<(GpuMilli, u32, Vec<u32>)> = groups
        .into_iter()
        .filter(|(_, (cap, _, _))| *cap >= u64::from(tasks))
        .map(|(k, (_, free, members))| (free, k, members))
        .collect();
    candidates.sort();
    for (_, _, members) in candidates {
        let mut placed: Vec<(TaskAlloc, TaskWhy)> = Vec::with_capacity(tasks as usize);
        for _ in 0..tasks {
            // "Anywhere" is the whole cluster: the ordinary (possibly bounded) search.
            let within = if topology == Topology::Any { None } else { Some(members.as_slice()) };
            match sched.place_one(need, within, rng) {
                Ok(p) => placed.push(p),
                Err(_) => break,
            }
        }
        if placed.len() == tasks as usize {
            return Ok(placed);
        }
        for (alloc, _) in &placed {
            sched.state_mut().release(alloc);
        }
    }
    // Nodes that fit alone but found no group: the topology is what failed.
    if why.nodes_fit > 0 {
        *why.rejected.entry(Reason::Topology).or_insert(0) += why.nodes_fit;
    }
    why.tasks_pending = tasks;
    Err(why)
}
