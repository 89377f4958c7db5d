//! Reclaim: a tenant within its nominal quota whose cohort lent that quota out gets it
//! back. Borrowers (tenants above their nominal in the flavour) are preempted, lowest
//! priority first, youngest first, read off the scheduler's youth index so that a pass
//! never sorts everything that runs. Singles reclaim in the periodic pass
//! ([`Scheduler::reclaim`]); a gang reclaims when it takes a reservation
//! ([`Scheduler::reclaim_quota`], called from `backfill.rs`).

use std::collections::BTreeMap;

use crate::CoreRng;
use crate::event::Decision;
use crate::explain::PreemptWhy;
use crate::quota::QuotaLimit;
use crate::scheduler::Scheduler;
use crate::state::{NodeIdx, TaskAlloc};
use crate::workload::WorkloadId;

/// Nodes a reclaim may clear of borrowers for one owed workload (one per task placed).
const MAX_RECLAIM_ROUNDS: usize = 8;

/// Borrowed workloads a reclaim may preempt for one gang's quota.
const MAX_RECLAIM_VICTIMS: usize = 4096;

/// Owed workloads a pass reclaims for (the best ranked); the rest wait for the next.
const MAX_OWED_PER_PASS: usize = 64;

/// Borrowers a reclaim looks at for one task.
const MAX_RECLAIM_LOOKS: usize = 256;

/// Borrowers one pass's reclaims choose from (the lowest priority, youngest first).
const MAX_BORROWERS: usize = MAX_OWED_PER_PASS * MAX_RECLAIM_LOOKS;

/// A borrowed running workload: priority, youth, id, and its quota tree.
type Borrower = (crate::workload::PriorityClass, std::cmp::Reverse<u64>, WorkloadId, Option<u32>);

impl Scheduler {
    /// Preempts borrowers for tenants refused within their nominal quota.
    pub(crate) fn reclaim(&mut self, rng: &mut CoreRng, out: &mut Vec<Decision>) {
        if self.quotas.flavours() == 0 {
            return;
        }
        // Owed heads, best ranked first: heads quota refuses although their tenant is
        // within its nominal. They are parked, or, when a release woke them but their
        // class was not tried since, ready; a ready head is only looked at while its
        // tenant uses less than its nominal in all.
        let mut owed: Vec<(crate::queue::Rank, WorkloadId)> = Vec::new();
        for (t, tq) in self.pq.tenants.iter().enumerate() {
            let under = self.usage.get(t).is_some_and(|u| !u.over);
            if tq.len == 0
                || (!under && tq.rank.values().all(Option::is_some))
                || !self.quotas.governs(&tq.id)
            {
                continue;
            }
            for (c, set) in &tq.by_class {
                if !under && tq.rank.get(c).is_some_and(Option::is_some) {
                    continue;
                }
                let Some(head) = set.first() else { continue };
                if let Err(q) = self.admission(head.2)
                    && matches!(q.limit, QuotaLimit::NothingToBorrow { within_nominal: true, .. })
                {
                    let rank = tq.rank.get(c).copied().flatten().unwrap_or(crate::scheduler::rank_in(
                        &self.usage,
                        t as u32,
                        head.0.0,
                    ));
                    owed.push((rank, head.2));
                }
            }
        }
        owed.sort_unstable();
        owed.truncate(MAX_OWED_PER_PASS);
        if owed.is_empty() {
            return;
        }
        // Borrowed running work, lowest priority first, youngest first, with its tree: the
        // first MAX_BORROWERS in that order, read off the youth index without sorting
        // what runs (the reclaims of one pass look at no more).
        let mut borrowers: Vec<Borrower> = Vec::new();
        'all: for p in crate::workload::PriorityClass::ALL {
            for (_, id) in &self.youngest[crate::scheduler::prio_index(p)] {
                let Some(e) = self.workloads.get(id) else { continue };
                if e.charges_flavours().any(|f| self.quotas.borrowing(&e.workload.tenant, f)) {
                    let root = self.quotas.root(&e.workload.tenant);
                    borrowers.push((p, std::cmp::Reverse(e.placed_seq), *id, root));
                    if borrowers.len() >= MAX_BORROWERS {
                        break 'all;
                    }
                }
            }
        }
        for (_, id) in owed {
            self.reclaim_for(id, &borrowers, rng, out);
        }
    }

    /// Frees room for one owed workload by preempting a borrower of its quota tree
    /// (lowest priority, youngest first) whose departure alone lets one of its tasks fit
    /// on a node, and places it there at once, so that borrowers cannot take the room
    /// back; again for each task still waiting. Gangs reclaim when they take a
    /// reservation (see `plan_reservations`).
    fn reclaim_for(
        &mut self,
        id: WorkloadId,
        borrowers: &[Borrower],
        rng: &mut CoreRng,
        out: &mut Vec<Decision>,
    ) {
        for _ in 0..MAX_RECLAIM_ROUNDS {
            let Some(e) = self.workloads.get(&id) else { return };
            if matches!(e.workload.shape, crate::workload::Shape::Gang { .. })
                || e.placed() == e.workload.shape.tasks()
            {
                return;
            }
            let (tenant, t, prio) = (e.workload.tenant.clone(), e.tenant, e.workload.priority);
            let Some(root) = self.quotas.root(&tenant) else { return };
            let mut need = e.need.clone();
            need.admit = crate::state::Admit {
                flavours: Some(self.quotas.nominal_mask(&tenant, u64::from(need.gpu_total().0))),
                power_room: None,
                energy_room: None,
                tasks: 1,
                owner: Some(id),
                ends_by: None,
            };
            // Borrowers gathered per node, youngest (lowest priority) first, until one
            // node's set frees room for the task and at least the quota it needs.
            let mut per_node: BTreeMap<u32, (Vec<WorkloadId>, u64)> = BTreeMap::new();
            let mut found: Option<Vec<WorkloadId>> = None;
            let mut looked = 0;
            let want = u64::from(need.gpu_total().0);
            for (p, _, vid, vroot) in borrowers {
                if *p > prio || *vroot != Some(root) {
                    continue;
                }
                let Some(v) = self.workloads.get(vid) else { continue };
                if v.tenant == t || v.placed() == 0 {
                    continue;
                }
                looked += 1;
                if looked > MAX_RECLAIM_LOOKS {
                    break;
                }
                if !v.charges_flavours().any(|f| self.quotas.borrowing(&v.workload.tenant, f)) {
                    continue;
                }
                let amount: u64 = v.charges_list().iter().map(|(_, a)| *a).sum();
                let nodes: Vec<u32> = v.tasks.iter().flatten().map(|x| x.node.0).collect();
                for n in nodes {
                    let entry = per_node.entry(n).or_default();
                    if !entry.0.contains(vid) {
                        entry.0.push(*vid);
                        entry.1 += amount;
                    }
                    if entry.1 < want {
                        continue;
                    }
                    let freed: Vec<&TaskAlloc> = entry
                        .0
                        .iter()
                        .filter_map(|w| self.workloads.get(w))
                        .flat_map(|w| w.tasks.iter().flatten())
                        .filter(|x| x.node.0 == n)
                        .collect();
                    if self.state.check_with_freed(self.state.node(NodeIdx(n)), &need, &freed).is_ok() {
                        found = Some(entry.0.clone());
                        break;
                    }
                }
                if found.is_some() {
                    break;
                }
            }
            let Some(victims) = found else { return };
            for vid in victims {
                self.evict(vid, PreemptWhy::Reclaim { by: id, tenant: tenant.0.clone() }, out);
            }
            self.try_place_public(id, rng, out);
        }
    }

    /// Preempts borrowers of a gang's quota tree (lowest priority, youngest first) until
    /// quota admits it.
    pub(crate) fn reclaim_quota(&mut self, id: WorkloadId, out: &mut Vec<Decision>) {
        let Some(e) = self.workloads.get(&id) else { return };
        let (tenant, prio) = (e.workload.tenant.clone(), e.workload.priority);
        let Some(root) = self.quotas.root(&tenant) else { return };
        // Borrowers of its tree, lowest priority first, youngest first, read off the youth
        // index until they hold twice what it needs (evictions may end another tenant's
        // borrowing before its own work goes) or MAX_RECLAIM_VICTIMS.
        let needed = u64::from(e.need.gpu_total().0) * u64::from(e.workload.shape.tasks());
        let mut victims: Vec<WorkloadId> = Vec::new();
        let mut borrowed = 0u64;
        'all: for p in crate::workload::PriorityClass::ALL.iter().filter(|p| **p <= prio) {
            for (_, vid) in &self.youngest[crate::scheduler::prio_index(*p)] {
                let Some(v) = self.workloads.get(vid) else { continue };
                if v.workload.tenant == tenant
                    || self.quotas.root(&v.workload.tenant) != Some(root)
                    || !v.charges_flavours().any(|f| self.quotas.borrowing(&v.workload.tenant, f))
                {
                    continue;
                }
                victims.push(*vid);
                borrowed += v.charges_list().iter().map(|(_, a)| *a).sum::<u64>();
                if borrowed >= needed.saturating_mul(2) || victims.len() >= MAX_RECLAIM_VICTIMS {
                    break 'all;
                }
            }
        }
        // Only if enough is borrowed to admit it: a partial reclaim would be wasted.
        if borrowed < needed {
            return;
        }
        let mut evicted = 0;
        for vid in victims {
            if evicted >= MAX_RECLAIM_VICTIMS || self.admission(id).is_ok() {
                break;
            }
            let Some(v) = self.workloads.get(&vid) else { continue };
            if !v.charges_flavours().any(|f| self.quotas.borrowing(&v.workload.tenant, f)) {
                continue;
            }
            self.evict(vid, PreemptWhy::Reclaim { by: id, tenant: tenant.0.clone() }, out);
            evicted += 1;
        }
    }
}
