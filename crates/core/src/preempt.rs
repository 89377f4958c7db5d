//! Preemption and shedding: which running work makes way, and how it goes back in line.
//!
//! Preemption only ever goes down in priority: an arrival of a higher class may stop
//! lower-class work (the fewest, lowest, youngest victims on one node). A budget cut sheds
//! work at a site, lowest priority and youngest first, until what is left fits. Either
//! way the victim is requeued whole, with a reason. Reclaim of lent quota, which also
//! preempts, is in `backfill.rs`.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use gigawatt_units::Watts;

use crate::error::CoreError;
use crate::event::Decision;
use crate::explain::PreemptWhy;
use crate::scheduler::{Entry, Scheduler, held, prio_index};
use crate::state::{Need, NodeIdx, TaskAlloc};
use crate::workload::{PriorityClass, WorkloadId};

/// Running workloads per priority class that a preemption looks at (the youngest).
const MAX_VICTIM_LOOKS: usize = 512;

impl Scheduler {
    /// Frees room for one task of `id` by evicting strictly lower-priority workloads from
    /// the single node where the fewest (then the least important) victims suffice.
    /// Returns whether anything was evicted. Looks only at running work of lower
    /// priority classes.
    pub(crate) fn preempt_for(&mut self, id: WorkloadId, need: &Need, out: &mut Vec<Decision>) -> bool {
        let Some(priority) = self.workloads.get(&id).map(|e| e.workload.priority) else { return false };
        if priority == PriorityClass::BestEffort {
            return false;
        }
        let victims =
            self.victims_on_nodes(need, |wid, e| e.workload.priority < priority && wid != id, priority);
        let Some(victims) = victims else { return false };
        for v in victims {
            self.evict(v, PreemptWhy::Priority { by: id, class: priority }, out);
        }
        true
    }

    /// The fewest running workloads, taken from those `eligible` accepts (lowest
    /// priority, then youngest, first), whose eviction from one node lets a task of
    /// `need` fit there. Only classes up to `max` are looked at.
    pub(crate) fn victims_on_nodes(
        &self,
        need: &Need,
        eligible: impl Fn(WorkloadId, &Entry) -> bool,
        max: PriorityClass,
    ) -> Option<Vec<WorkloadId>> {
        // Victim tasks per node: (priority, youngest first, workload, alloc).
        type Victim<'a> = (PriorityClass, Reverse<u64>, WorkloadId, &'a TaskAlloc);
        let mut per_node: BTreeMap<u32, Vec<Victim<'_>>> = BTreeMap::new();
        for p in PriorityClass::ALL.iter().filter(|p| **p <= max) {
            // The youngest submitted first, a bounded number: the cost of an arrival must
            // not grow with what runs.
            for wid in self.running[prio_index(*p)].iter().rev().take(MAX_VICTIM_LOOKS) {
                let Some(e) = self.workloads.get(wid) else { continue };
                if !eligible(*wid, e) {
                    continue;
                }
                for t in e.tasks.iter().flatten() {
                    per_node.entry(t.node.0).or_default().push((
                        e.workload.priority,
                        Reverse(e.placed_seq),
                        *wid,
                        t,
                    ));
                }
            }
        }
        // (victim count, highest victim priority, oldest victim youngest, node) → victims.
        type Key = (usize, PriorityClass, u64, u32);
        let mut best: Option<(Key, Vec<WorkloadId>)> = None;
        for (node_idx, mut victims) in per_node {
            victims.sort_by_key(|v| (v.0, v.1, v.2));
            let node = self.state.node(NodeIdx(node_idx));
            let mut chosen: Vec<WorkloadId> = Vec::new();
            let mut freed: Vec<&TaskAlloc> = Vec::new();
            let mut top = PriorityClass::BestEffort;
            let mut oldest = u64::MAX;
            for (p, Reverse(seq), wid, alloc) in &victims {
                freed.push(alloc);
                if !chosen.contains(wid) {
                    chosen.push(*wid);
                }
                top = top.max(*p);
                oldest = oldest.min(*seq);
                if self.state.check_with_freed(node, need, &freed).is_ok() {
                    let key = (chosen.len(), top, u64::MAX - oldest, node_idx);
                    if best.as_ref().is_none_or(|(k, _)| key < *k) {
                        best = Some((key, chosen.clone()));
                    }
                    break;
                }
            }
        }
        best.map(|(_, v)| v)
    }

    /// Stops a workload everywhere and puts it back in the queue.
    pub(crate) fn evict(&mut self, id: WorkloadId, why: PreemptWhy, out: &mut Vec<Decision>) {
        if !self.workloads.contains_key(&id) {
            return;
        }
        self.release_all(id);
        self.enqueue(id);
        if let Some(c) = self.workloads.get(&id).map(|e| e.class) {
            // It has not failed anywhere yet.
            self.pq.classes[c as usize].retry = true;
        }
        out.push(Decision::Preempted { workload: id, why });
    }

    /// Brings a site's reservation under its budget (on an oversubscribed site, its floor:
    /// the power manager caps the rest): lowest priority first, youngest first within a
    /// priority.
    pub(crate) fn shed_site(&mut self, site: usize, budget: Watts, out: &mut Vec<Decision>) {
        let at_minimum = self.state.oversubscribed(site);
        let reserved = held(&self.state, site);
        if reserved <= budget {
            return;
        }
        let site_id = self.state.sites[site].id.clone();
        for id in self.shed_order(site) {
            if held(&self.state, site) <= budget {
                break;
            }
            let why = PreemptWhy::PowerBudget { site: site_id.clone(), budget, reserved, at_minimum };
            self.evict(id, why, out);
        }
    }

    /// The workloads with a task on `site`, in the order a budget cut preempts them.
    pub(crate) fn shed_order(&self, site: usize) -> Vec<WorkloadId> {
        let mut victims: Vec<(PriorityClass, Reverse<u64>, WorkloadId)> = self
            .workloads
            .iter()
            .filter(|(_, e)| e.tasks.iter().flatten().any(|t| self.state.node(t.node).site as usize == site))
            .map(|(id, e)| (e.workload.priority, Reverse(e.placed_seq), *id))
            .collect();
        victims.sort();
        victims.into_iter().map(|v| v.2).collect()
    }

    /// What cutting `site`'s IT budget to `budget` would preempt, in order, with each
    /// workload's priority. Changes nothing: this is how a curtailment is judged before
    /// it is accepted.
    ///
    /// # Errors
    /// [`CoreError::UnknownSite`] for a site the fleet does not have.
    pub fn would_shed(
        &self,
        site: &str,
        budget: Watts,
    ) -> Result<Vec<(WorkloadId, PriorityClass)>, CoreError> {
        let s = self.state.sites.iter().position(|x| x.id == site).ok_or_else(|| {
            let known: Vec<&str> = self.state.sites.iter().map(|s| s.id.as_str()).collect();
            CoreError::UnknownSite(site.to_string(), known.join(", "))
        })?;
        if held(&self.state, s) <= budget {
            return Ok(Vec::new());
        }
        let mut state = self.state.clone();
        let mut out = Vec::new();
        for id in self.shed_order(s) {
            if held(&state, s) <= budget {
                break;
            }
            if let Some(e) = self.workloads.get(&id) {
                for t in e.tasks.iter().flatten() {
                    state.release(t);
                }
                out.push((id, e.workload.priority));
            }
        }
        Ok(out)
    }
}
