//! Fair-share preemption among borrowers, as Kueue's fair sharing preempts within a
//! cohort (its `LessThanOrEqualToFinalShare` strategy).
//!
//! Reclaim (`reclaim.rs`) serves tenants within their nominal quota. It does nothing for
//! a tenant whose waiting work needs more than its nominal, for example a small tenant
//! with a nominal of two GPUs and one 8-GPU job: at saturation its cohort never has 8 GPUs
//! free, so quota refuses it as a borrower on every event, while tenants that borrowed
//! hundreds of GPUs while the fleet filled keep them for days. Without preemption such a
//! tenant gets nothing, whatever the order of the queue.
//!
//! So the periodic pass lets waiting borrowers take room from running borrowers of the
//! same quota tree that are further above their share. A tenant's **borrowed share** is
//! its dominant share of what it uses above its nominal quota, over the flavours, divided
//! by its weight: `max_f (max(0, used_f − nominal_f) / capacity_f) / weight`. A workload
//! of tenant A may preempt a running workload of tenant B only when
//!
//! * B's priority class is not above the workload's,
//! * both are in the same quota tree and B borrows,
//! * A's borrowed share with the workload placed stays **below** B's borrowed share with
//!   the victim (and every other victim of B looked at for it) gone.
//!
//! The last rule is what keeps it stable: after the preemption A's share is below B's,
//! so B's requeued work cannot take the room back, and equals never preempt each other.
//!
//! Victims come from the tenants with the largest borrowed share first, and within a
//! tenant lowest priority first, then youngest first (`Scheduler::by_tenant`), gathered
//! per node until one node's set frees room for a task and quota then admits it there.
//! A gang is a victim too, whole: at 200,000 GPUs the tenants furthest above their share
//! hold their borrowed room in gangs, and leaving gangs alone kept Jain's index at 0.80
//! (0.92 with them, 0.98 with 128 preemptors per pass). The share rule counts all of the
//! gang, and of the nodes that would do, the one whose victims hold the fewest GPUs in
//! all is cleared, so a single goes before a gang. Reclaim still takes singles only.
//! The preemptor is placed at once so that others cannot take the room back. The cost of
//! a pass is bounded: at most `BackfillConfig::fair_preemptions` workloads, each looking
//! at a bounded number of victims; tenants are read, not sorted, apart from those that
//! run borrowed work.
//!
//! A waiting gang that would borrow, and that waited `gang_preempt_after_s`, may clear a
//! whole topology group for itself under the same rule (`gang_fair_preempt`), one gang
//! per pass: it has no reservation and no reclaim to wait for. That pass looks at every
//! node once.

use std::cmp::Reverse;

use crate::CoreRng;
use crate::event::Decision;
use crate::explain::PreemptWhy;
use crate::quota::QuotaLimit;
use crate::scheduler::Scheduler;
use crate::state::{Admit, NO_FLAVOUR, NodeIdx, TaskAlloc};
use crate::workload::{Shape, TenantId, WorkloadId};

/// Nodes one preemptor may look at (those of the largest borrowers' work). 128 kept
/// the pass at 200,000 GPUs under 70 ms with 128 preemptors (512 took it to 187 ms, for
/// the same fairness).
const MAX_LOOKS: usize = 128;

/// Nodes that would do compared before the cheapest is cleared.
const NODES_COMPARED: usize = 8;

/// Tenant-relative shares are compared with this slack, so that rounding never lets
/// two tenants with the same share preempt each other.
const EPSILON: f64 = 1e-12;

/// A victim's place in line: its tenant's borrowed share (largest first), the tenant,
/// its priority (lowest first), youth (youngest first), and its id.
type VictimKey = (Reverse<OrdF64>, u32, crate::PriorityClass, Reverse<u64>, WorkloadId);

/// A waiting workload that may preempt: its borrowed share once placed, then its id.
type Candidate = (f64, WorkloadId);

impl Scheduler {
    /// The borrowed share of tenant `t` (queue index) with `delta` GPU thousandths
    /// added to (or, negative, taken from) its use of each flavour.
    fn borrowed_share(&self, t: u32, tenant: &TenantId, delta: &dyn Fn(usize) -> i64) -> f64 {
        let weight = self.usage.get(t as usize).map_or(1.0, |u| u.weight).max(f64::MIN_POSITIVE);
        let mut share = 0.0f64;
        for f in 0..self.quotas.flavours() {
            let Some((used, nominal, _)) = self.quotas.account(tenant, f) else { continue };
            let used = (used as i64 + delta(f)).max(0) as u64;
            let cap = self.resource_of(f as u8).and_then(|r| self.caps.get(r)).copied().unwrap_or(1);
            share = share.max(used.saturating_sub(nominal) as f64 / cap.max(1) as f64);
        }
        share / weight
    }

    /// The borrowed share of tenant `t` once `amount` GPU thousandths more run, in the
    /// flavour where that share is lowest.
    fn share_once_placed(&self, t: u32, tenant: &TenantId, amount: i64) -> f64 {
        (0..self.quotas.flavours())
            .map(|f| self.borrowed_share(t, tenant, &|g| if g == f { amount } else { 0 }))
            .fold(f64::INFINITY, f64::min)
    }

    /// The periodic pass's fair-share preemptions. See the module docs.
    pub(crate) fn fair_preempt(&mut self, rng: &mut CoreRng, out: &mut Vec<Decision>) {
        let budget = self.config.backfill.fair_preemptions as usize;
        if budget == 0 || !self.config.fair_share || self.quotas.flavours() == 0 {
            return;
        }
        self.gang_fair_preempt(rng, out);
        let candidates = self.fair_candidates(budget);
        if candidates.is_empty() {
            return;
        }
        let victims = self.borrowers_by_share();
        for (share, id) in candidates {
            self.free_node_for(id, Some(share), &victims, rng, out);
        }
    }

    /// One waiting gang per pass that quota refuses as a borrower, the one with the
    /// lowest borrowed share once placed, may clear nodes for itself in one topology
    /// group by preempting, whole, the borrowed work there of tenants whose borrowed share
    /// stays above its own with that work gone (the rule singles follow). Without it
    /// such a gang never starts at saturation: its tree never has a gang's worth free,
    /// and it gets no reservation, since it would borrow.
    fn gang_fair_preempt(&mut self, rng: &mut CoreRng, out: &mut Vec<Decision>) {
        let after = self.config.backfill.gang_preempt_after_s;
        if after == 0 {
            return;
        }
        let mut best: Option<Candidate> = None;
        for (t, tq) in self.pq.tenants.iter().enumerate() {
            if tq.len == 0 || !self.quotas.governs(&tq.id) {
                continue;
            }
            for (c, set) in &tq.by_class {
                if !self.pq.classes[*c as usize].key.is_gang() {
                    continue;
                }
                let Some(head) = set.first() else { continue };
                let Some(e) = self.workloads.get(&head.2) else { continue };
                if e.placed() > 0 || self.reservations.contains_key(&head.2) {
                    continue;
                }
                match self.admission(head.2) {
                    Err(q)
                        if matches!(q.limit, QuotaLimit::NothingToBorrow { within_nominal: false, .. }) => {}
                    _ => continue,
                }
                let amount = i64::from(e.need.gpu_total().0) * i64::from(e.workload.shape.tasks());
                let share = self.share_once_placed(t as u32, &tq.id, amount);
                // Only a gang that waited long: most start sooner by themselves, and
                // each clearing preempts a gang's worth of work.
                if self.now.since(e.waiting_since).0 < after as f64 {
                    continue;
                }
                if share.is_finite() && best.is_none_or(|b| (share, head.2) < b) {
                    best = Some((share, head.2));
                }
            }
        }
        let Some((floor, id)) = best else { return };
        if let Some(plan) = self.gang_clearing(id, floor) {
            let tenant = self.workloads.get(&id).map(|e| e.workload.tenant.0.clone()).unwrap_or_default();
            for vid in plan {
                self.evict(vid, PreemptWhy::FairShare { by: id, tenant: tenant.clone() }, out);
            }
            self.try_place_public(id, rng, out);
        }
    }

    /// The workloads to preempt so that gang `id` fits one topology group whole, each
    /// of a tenant whose borrowed share stays above `floor` with all of its chosen
    /// work gone; the cheapest such set in GPUs, or `None`.
    fn gang_clearing(&self, id: WorkloadId, floor: f64) -> Option<Vec<WorkloadId>> {
        let e = self.workloads.get(&id)?;
        let Shape::Gang { tasks, topology } = e.workload.shape else { return None };
        if topology == crate::workload::Topology::SameNode {
            return None;
        }
        let (t, prio) = (e.tenant, e.workload.priority);
        let root = self.quotas.root(&e.workload.tenant)?;
        let mut need = e.need.clone();
        need.admit = Admit { tasks: 1, ..Admit::default() };
        // Per tenant (queue index): the flavours where its borrowed work may go (none
        // when it is in another tree or its share is not above `floor`).
        let mut may_go: rustc_hash::FxHashMap<u32, u64> = rustc_hash::FxHashMap::default();
        let nf = self.quotas.flavours();
        let mut groups: std::collections::BTreeMap<u32, Vec<(u64, u32, Vec<WorkloadId>)>> =
            std::collections::BTreeMap::new();
        'nodes: for (i, node) in self.state.nodes.iter().enumerate() {
            if !node.up
                || node.reserved.is_some()
                || node.flavour == NO_FLAVOUR
                || !need.sites.contains(node.site)
                || (need.gpu_count > 0 && !node.model.is_some_and(|m| need.models.allows(m)))
            {
                continue;
            }
            let mut victims: Vec<WorkloadId> = Vec::new();
            let mut freed: Vec<&TaskAlloc> = Vec::new();
            let mut cost = 0;
            for vid in self.on_node.get(i).into_iter().flatten() {
                let Some(w) = self.workloads.get(vid) else { continue };
                let ok = w.tenant != t && w.workload.priority <= prio && {
                    let mask = *may_go.entry(w.tenant).or_insert_with(|| {
                        let vt = &w.workload.tenant;
                        if self.quotas.root(vt) != Some(root)
                            || self.borrowed_share(w.tenant, vt, &|_| 0) <= floor + EPSILON
                        {
                            return 0;
                        }
                        (0..nf).filter(|f| self.quotas.borrowing(vt, *f)).fold(0, |m, f| m | (1 << f))
                    });
                    mask != 0 && w.charges_flavours().any(|f| mask & (1 << f) != 0)
                };
                if !ok {
                    continue 'nodes;
                }
                victims.push(*vid);
                freed.extend(w.tasks.iter().flatten().filter(|x| x.node.0 == i as u32));
                cost += w.charges_list().iter().map(|(_, a)| a).sum::<u64>();
            }
            if self.state.check_with_freed(node, &need, &freed).is_err() {
                continue;
            }
            let group = match topology {
                crate::workload::Topology::SameRack => node.rack,
                crate::workload::Topology::SameDomain => self.state.racks[node.rack as usize].domain,
                _ => 0,
            };
            groups.entry(group).or_default().push((cost, i as u32, victims));
        }
        let k = (tasks - e.placed()) as usize;
        let mut best: Option<(u64, Vec<WorkloadId>)> = None;
        for (_, mut list) in groups {
            if list.len() < k {
                continue;
            }
            list.sort_unstable_by_key(|(cost, n, _)| (*cost, *n));
            let mut chosen: Vec<WorkloadId> =
                list[..k].iter().flat_map(|(_, _, v)| v.iter().copied()).collect();
            chosen.sort_unstable();
            chosen.dedup();
            let cost: u64 = chosen
                .iter()
                .filter_map(|v| self.workloads.get(v))
                .map(|w| w.charges_list().iter().map(|(_, a)| a).sum::<u64>())
                .sum();
            if best.as_ref().is_some_and(|(c, _)| *c <= cost) {
                continue;
            }
            // Each victim's tenant stays above `floor` with all of its chosen work gone.
            let mut gone: rustc_hash::FxHashMap<u32, Vec<u64>> = rustc_hash::FxHashMap::default();
            for w in chosen.iter().filter_map(|v| self.workloads.get(v)) {
                let sum = gone.entry(w.tenant).or_insert_with(|| vec![0; nf]);
                for (f, a) in w.charges_list() {
                    if *f != NO_FLAVOUR {
                        sum[*f as usize] += a;
                    }
                }
            }
            let stays_above = gone.iter().all(|(u, sum)| {
                self.pq
                    .tenants
                    .get(*u as usize)
                    .is_some_and(|q| self.borrowed_share(*u, &q.id, &|f| -(sum[f] as i64)) > floor + EPSILON)
            });
            if stays_above {
                best = Some((cost, chosen));
            }
        }
        best.map(|(_, v)| v)
    }

    /// Tenants running borrowed work, by borrowed share, largest first.
    pub(crate) fn borrowers_by_share(&self) -> Vec<(Reverse<OrdF64>, u32)> {
        let mut victims: Vec<(Reverse<OrdF64>, u32)> = Vec::new();
        for (t, set) in self.by_tenant.iter().enumerate() {
            let Some(tq) = self.pq.tenants.get(t) else { continue };
            if set.is_empty() || !self.quotas.governs(&tq.id) {
                continue;
            }
            let s = self.borrowed_share(t as u32, &tq.id, &|_| 0);
            if s > 0.0 {
                victims.push((Reverse(OrdF64(s)), t as u32));
            }
        }
        victims.sort_unstable();
        victims
    }

    /// Waiting single workloads that quota refuses as borrowers (their cohort has nothing
    /// free), or that quota admits but no node takes; the `budget` with the lowest
    /// borrowed share once placed.
    fn fair_candidates(&self, budget: usize) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = Vec::new();
        for (t, tq) in self.pq.tenants.iter().enumerate() {
            if tq.len == 0 || !self.quotas.governs(&tq.id) {
                continue;
            }
            for (c, set) in &tq.by_class {
                if self.pq.classes[*c as usize].key.is_gang() {
                    continue;
                }
                let Some(head) = set.first() else { continue };
                let Some(e) = self.workloads.get(&head.2) else { continue };
                if e.placed() > 0 || !matches!(e.workload.shape, Shape::Single) {
                    continue;
                }
                match self.admission(head.2) {
                    Ok(_) => {}
                    Err(q)
                        if matches!(q.limit, QuotaLimit::NothingToBorrow { within_nominal: false, .. }) => {}
                    Err(_) => continue,
                }
                let share = self.share_once_placed(t as u32, &tq.id, i64::from(e.need.gpu_total().0));
                if share.is_finite() {
                    out.push((share, head.2));
                }
            }
        }
        out.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out.truncate(budget);
        out
    }

    /// Frees one node for a task of `id` by preempting running borrowers of its quota
    /// tree, those with the largest borrowed share first, and places `id` at once so
    /// that others cannot take the room back. With `share` (fair-share preemption), only
    /// borrowers whose share stays above it with their preempted work gone are taken;
    /// without (a reclaim for a tenant within its nominal quota), any borrower is.
    /// Whether it preempted.
    pub(crate) fn free_node_for(
        &mut self,
        id: WorkloadId,
        share: Option<f64>,
        victims: &[(Reverse<OrdF64>, u32)],
        rng: &mut CoreRng,
        out: &mut Vec<Decision>,
    ) -> bool {
        let Some(e) = self.workloads.get(&id) else { return false };
        if e.placed() == e.workload.shape.tasks() {
            return false;
        }
        let floor = share.unwrap_or(f64::NEG_INFINITY);
        let (tenant, t, prio) = (e.workload.tenant.clone(), e.tenant, e.workload.priority);
        let Some(root) = self.quotas.root(&tenant) else { return false };
        let Ok(energy_room) = self.energy_room(id) else { return false };
        let amount = u64::from(e.need.gpu_total().0);
        let mut need = e.need.clone();
        need.admit = Admit {
            flavours: None,
            power_room: self.quotas.power_room(&tenant),
            energy_room,
            tasks: 1,
            owner: Some(id),
            ends_by: e.workload.time_limit.map(|l| self.now + l),
        };
        // Nodes where the largest borrowers run, in the order of their shares, each
        // judged with everything on it (`on_node`). Of the first few
        // nodes that would do, the one whose victims hold the fewest GPUs is cleared.
        // On each node only the victims needed go, in order (see `node_victims`).
        let mut seen: rustc_hash::FxHashSet<u32> = rustc_hash::FxHashSet::default();
        let mut best: Option<(u64, usize, u32, Vec<WorkloadId>)> = None;
        let mut fits = 0;
        let mut looks = 0;
        'tenants: for (Reverse(OrdF64(before)), v) in victims {
            if *before <= floor + EPSILON {
                break;
            }
            if *v == t {
                continue;
            }
            let Some(vq) = self.pq.tenants.get(*v as usize) else { continue };
            if self.quotas.root(&vq.id) != Some(root) {
                continue;
            }
            let nodes: Vec<u32> = self
                .by_tenant
                .get(*v as usize)
                .into_iter()
                .flatten()
                .take_while(|(vprio, _, _)| *vprio <= prio)
                .take(MAX_LOOKS.saturating_sub(looks))
                .filter_map(|(_, _, vid)| self.workloads.get(vid))
                .flat_map(|w| w.tasks.iter().flatten().map(|x| x.node.0))
                .collect();
            for n in nodes {
                looks += 1;
                if looks > MAX_LOOKS {
                    break 'tenants;
                }
                if !seen.insert(n) {
                    continue;
                }
                // Ties go to the node met first: the largest borrower's youngest work.
                let k = seen.len();
                // The shortest run of the node's victims, in order, that frees room.
                let order = self.node_victims(n, t, prio, root, floor);
                let mut cost = 0;
                let mut chosen: Vec<WorkloadId> = Vec::new();
                for (vid, held) in order {
                    cost += held;
                    chosen.push(vid);
                    if best.as_ref().is_some_and(|b| (b.0, b.1) <= (cost, k)) {
                        break;
                    }
                    if self.frees_room(n, &need, &chosen, &tenant, amount) {
                        best = Some((cost, k, n, std::mem::take(&mut chosen)));
                        fits += 1;
                        break;
                    }
                }
                if fits >= NODES_COMPARED {
                    break 'tenants;
                }
            }
        }
        let found = best.map(|(_, _, n, on)| (n, on));
        let Some((_, chosen)) = found else { return false };
        for vid in chosen {
            let why = if share.is_some() {
                PreemptWhy::FairShare { by: id, tenant: tenant.0.clone() }
            } else {
                PreemptWhy::Reclaim { by: id, tenant: tenant.0.clone() }
            };
            self.evict(vid, why, out);
        }
        self.try_place_public(id, rng, out);
        true
    }

    /// The work on node `n` that may be preempted for a workload of tenant `t` (queue
    /// index) at priority `prio` in quota tree `root`, in the order it would go: the
    /// tenant with the largest borrowed share first, then lowest priority, then
    /// youngest. Each is a workload of another tenant of the tree, at `prio` or below,
    /// borrowing, and (with a finite `floor`, fair share) its tenant's borrowed share
    /// stays above `floor` with it and the tenant's work before it in that order gone.
    /// Without a floor (reclaim) only single-task workloads go; with one, gangs go too,
    /// whole. With each, the GPU thousandths it holds in all.
    fn node_victims(
        &self,
        n: u32,
        t: u32,
        prio: crate::PriorityClass,
        root: u32,
        floor: f64,
    ) -> Vec<(WorkloadId, u64)> {
        let Some(on) = self.on_node.get(n as usize) else { return Vec::new() };
        // (share before, tenant, priority, youth, id, held per flavour)
        let mut eligible: Vec<VictimKey> = Vec::new();
        for vid in on {
            let Some(w) = self.workloads.get(vid) else { continue };
            let vt = &w.workload.tenant;
            if w.tenant == t
                || (w.tasks.len() != 1 && !floor.is_finite())
                || w.workload.priority > prio
                || self.quotas.root(vt) != Some(root)
                || !w.charges_flavours().any(|f| self.quotas.borrowing(vt, f))
            {
                continue;
            }
            let before = self.borrowed_share(w.tenant, vt, &|_| 0);
            eligible.push((
                Reverse(OrdF64(before)),
                w.tenant,
                w.workload.priority,
                Reverse(w.placed_seq),
                *vid,
            ));
        }
        eligible.sort_unstable();
        let nf = self.quotas.flavours();
        let mut gone: Vec<(u32, Vec<u64>)> = Vec::new();
        let mut out = Vec::with_capacity(eligible.len());
        for (_, u, _, _, vid) in eligible {
            let Some(w) = self.workloads.get(&vid) else { continue };
            let i = match gone.iter().position(|(g, _)| *g == u) {
                Some(i) => i,
                None => {
                    gone.push((u, vec![0; nf]));
                    gone.len() - 1
                }
            };
            let mut sum = gone[i].1.clone();
            let mut held = 0;
            for (f, a) in w.charges_list() {
                if *f != NO_FLAVOUR {
                    sum[*f as usize] += a;
                }
                held += a;
            }
            if floor.is_finite() {
                let Some(id) = self.pq.tenants.get(u as usize).map(|q| &q.id) else { continue };
                if self.borrowed_share(u, id, &|f| -(sum[f] as i64)) <= floor + EPSILON {
                    continue;
                }
            }
            gone[i].1 = sum;
            out.push((vid, held));
        }
        out
    }

    /// Whether evicting `victims` lets a task of `need` fit node `n` and quota then admit
    /// `amount` of `tenant` in the node's flavour.
    fn frees_room(
        &mut self,
        n: u32,
        need: &crate::state::Need,
        victims: &[WorkloadId],
        tenant: &TenantId,
        amount: u64,
    ) -> bool {
        let node = self.state.node(NodeIdx(n));
        let f = node.flavour;
        if f == NO_FLAVOUR {
            return false;
        }
        let freed: Vec<&TaskAlloc> = victims
            .iter()
            .filter_map(|w| self.workloads.get(w))
            .flat_map(|w| w.tasks.iter().flatten())
            .filter(|x| x.node.0 == n)
            .collect();
        if self.state.check_with_freed(node, need, &freed).is_err() {
            return false;
        }
        // Quota with the victims' charges given back, then charged again.
        let charges: Vec<(TenantId, u8, u64)> = victims
            .iter()
            .filter_map(|w| self.workloads.get(w))
            .flat_map(|w| w.charges_list().iter().map(move |(g, a)| (w.workload.tenant.clone(), *g, *a)))
            .filter(|(_, g, _)| *g != NO_FLAVOUR)
            .collect();
        for (v, g, a) in &charges {
            self.quotas.charge(v, *g as usize, *a, false);
        }
        let ok = self.quotas.admits(tenant, f as usize, amount).is_ok();
        for (v, g, a) in &charges {
            self.quotas.charge(v, *g as usize, *a, true);
        }
        ok
    }
}

/// An `f64` with a total order (shares are finite and non-negative).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OrdF64(pub(crate) f64);

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
