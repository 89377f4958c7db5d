//! Reclaim: a tenant within its nominal quota whose cohort lent that quota out gets it
//! back. Singles reclaim in the periodic pass ([`Scheduler::reclaim`]): borrowers
//! (tenants above their nominal in the flavour) are preempted from the tenants with the
//! largest borrowed share first, as Kueue orders reclaim victims under fair sharing, and
//! within a tenant lowest priority first, youngest first (the victim search is shared
//! with fair-share preemption, in `fair_preempt.rs`). A gang reclaims when it takes a
//! reservation ([`Scheduler::reclaim_quota`], called from `backfill.rs`): borrowers,
//! lowest priority first, youngest first, read off the scheduler's youth index so that a
//! pass never sorts everything that runs.

use crate::CoreRng;
use crate::event::Decision;
use crate::explain::PreemptWhy;
use crate::quota::QuotaLimit;
use crate::scheduler::Scheduler;
use crate::workload::{Shape, WorkloadId};

/// Nodes a reclaim may clear of borrowers for one owed workload (one per task placed).
const MAX_RECLAIM_ROUNDS: usize = 8;

/// Borrowed workloads a reclaim may preempt for one gang's quota.
const MAX_RECLAIM_VICTIMS: usize = 4096;

/// Owed workloads a pass reclaims for (the best ranked); the rest wait for the next.
const MAX_OWED_PER_PASS: usize = 64;

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
        let victims = self.borrowers_by_share();
        for (_, id) in owed {
            // One node per round: a service may need several.
            for _ in 0..MAX_RECLAIM_ROUNDS {
                let single =
                    self.workloads.get(&id).is_some_and(|e| !matches!(e.workload.shape, Shape::Gang { .. }));
                if !single || !self.free_node_for(id, None, &victims, rng, out) {
                    break;
                }
            }
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
