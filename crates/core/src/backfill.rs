//! The periodic pass ([`crate::Event::Tick`]): the work that needs a wide look and so is
//! kept off the per-event path, as Slurm keeps backfill in its own thread every 30 s.
//!
//! 1. **Fair-share decay**: past use decays with the configured half-life and every
//!    tenant is ranked again.
//! 2. **Reclaim**: a tenant within its nominal quota whose cohort lent that quota out
//!    gets it back: borrowers (tenants above their nominal in that flavour) are preempted,
//!    lowest priority first, youngest first, until quota admits the owed work (in
//!    `reclaim.rs`).
//! 3. **Reservations**: the best-ranked gangs that cannot start get concrete nodes and
//!    the earliest time those nodes will be free, from the time limits of what runs on
//!    them. Reservations are planned again each pass; the start can only move earlier,
//!    since nothing may be placed on reserved nodes that would still run at the start.
//! 4. **Backfill**: waiting work whose time limit ends before a reservation starts may use
//!    reserved nodes meanwhile. The walk tries the head of each tenant in each class, in
//!    rank order, up to `depth` tries.
//! 5. **Fair-share preemption**: once the queue was retried, waiting borrowers with the
//!    lowest borrowed share may preempt the work of borrowers further above theirs (in
//!    `fair_preempt.rs`).

use std::collections::BTreeMap;

use gigawatt_units::{Seconds, Timestamp};

use crate::CoreRng;
use crate::event::Decision;
use crate::quota::QuotaLimit;
use crate::scheduler::{Entry, Reservation, Scheduler, decay};
use crate::state::{NO_FLAVOUR, NodeIdx, TaskAlloc};
use crate::workload::{Topology, WorkloadId};

impl Scheduler {
    /// The periodic pass. See the module docs.
    pub(crate) fn tick(&mut self, rng: &mut CoreRng, out: &mut Vec<Decision>) {
        self.decay_shares();
        self.age_waiting();
        self.reclaim(rng, out);
        self.plan_reservations(out);
        self.backfill(rng, out);
        for c in &mut self.pq.classes {
            if std::mem::take(&mut c.retry_at_pass) {
                c.retry = true;
            }
        }
        self.retry_pending(rng, out);
        self.fair_preempt(rng, out);
    }

    fn decay_shares(&mut self) {
        let now = self.now;
        let dt = self.last_tick.map_or(Seconds(0.0), |t| now.since(t));
        self.last_tick = Some(now);
        let d = decay(dt, self.quotas.spec.fair_share.half_life);
        for u in &mut self.usage {
            for (past, cur) in u.decayed.iter_mut().zip(&u.now) {
                *past = *past * d + *cur as f64 * (1.0 - d);
            }
        }
        for t in 0..self.pq.tenants.len() as u32 {
            if self.pq.tenants[t as usize].len > 0 {
                self.refresh_share(t);
            }
        }
    }

    /// Plans reservations for the best-ranked gangs that cannot start. A reservation
    /// stays until its gang starts or leaves (its start can only come earlier: nothing
    /// placed on its nodes runs past it), unless one of its nodes goes down. Taking one
    /// also holds the gang's quota, as Kueue's admission does before pods are placed, so
    /// that borrowers cannot take back the room the nodes free; a gang within its nominal
    /// quota whose cohort lent that quota out reclaims it first.
    fn plan_reservations(&mut self, out: &mut Vec<Decision>) {
        let max = self.config.backfill.max_reservations as usize;
        let broken: Vec<WorkloadId> = self
            .reservations
            .iter()
            .filter(|(id, r)| {
                self.workloads.get(id).is_none_or(|e| e.placed() != 0)
                    || r.nodes.iter().any(|n| !self.state.nodes[n.0 as usize].up)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in broken {
            self.unreserve(id);
        }
        if self.reservations.len() >= max {
            return;
        }
        // Every waiting gang at the head of its tenant's part of a class, ready or parked
        // on quota, best ranked first.
        let mut gangs: Vec<(crate::queue::Rank, WorkloadId)> = Vec::new();
        for (t, tq) in self.pq.tenants.iter().enumerate() {
            for (c, set) in &tq.by_class {
                if !self.pq.classes[*c as usize].key.is_gang() {
                    continue;
                }
                if let Some(head) = set.first()
                    && !self.reservations.contains_key(&head.2)
                {
                    gangs.push((crate::scheduler::rank_in(&self.usage, t as u32, head.0.0), head.2));
                }
            }
        }
        gangs.sort_unstable();
        let horizon = Seconds(self.config.backfill.horizon_s as f64);
        let mut ends = None;
        // Looked at per pass: a gang whose start is beyond the horizon is looked at again
        // next pass, so the pass stays bounded however many gangs wait.
        let mut looks = max * 4;
        // A reclaim walks every running workload and may evict thousands of tasks, and the
        // plan's view of the nodes is then built again: one per pass keeps the pass short.
        // The next gang owed a reclaim is served by the next pass.
        let mut reclaims = 1;
        for (_, id) in gangs {
            if self.reservations.len() >= max || looks == 0 {
                break;
            }
            looks -= 1;
            let ask = match self.admission(id) {
                Ok(_) => Ask::Admitted,
                Err(q) => match q.limit {
                    QuotaLimit::NothingToBorrow { within_nominal: true, .. } if reclaims > 0 => Ask::Reclaim,
                    _ => continue,
                },
            };
            let refused = ask == Ask::Reclaim;
            let plan = {
                let ends = ends.get_or_insert_with(|| self.task_ends());
                self.earliest_start(id, ends, ask)
            };
            let Some((start, nodes)) = plan else { continue };
            if start.since(self.now).0 > horizon.0 {
                continue;
            }
            if refused {
                // Reclaim only for a reservation that will be made: borrowers are not
                // preempted for a gang that could not start within the horizon anyway.
                reclaims -= 1;
                self.reclaim_quota(id, out);
                if self.admission(id).is_err() {
                    continue;
                }
                // Preemptions changed what runs where; the plan still holds (its nodes
                // can only be free earlier now).
                ends = None;
            }
            for n in &nodes {
                self.state.nodes[n.0 as usize].reserved = Some((start, id));
            }
            self.hold_quota(id, &nodes);
            self.reservations.insert(id, Reservation { start, nodes });
        }
    }

    /// Per node, the tasks on it (workload, task) with the time their workload's limit
    /// ends (`None`: no limit, never known to end), latest last.
    fn task_ends(&self) -> Vec<Vec<(Option<Timestamp>, WorkloadId, u32)>> {
        let mut ends: Vec<Vec<(Option<Timestamp>, WorkloadId, u32)>> =
            vec![Vec::new(); self.state.nodes.len()];
        for (id, e) in &self.running_entries() {
            let end = e.ends();
            for (i, t) in e.tasks.iter().enumerate() {
                if let Some(t) = t {
                    ends[t.node.0 as usize].push((end, *id, i as u32));
                }
            }
        }
        for list in &mut ends {
            list.sort_by_key(|(end, _, _)| end.map_or(i64::MAX, |t| t.0));
        }
        ends
    }

    /// Workloads holding tasks.
    fn running_entries(&self) -> Vec<(WorkloadId, &Entry)> {
        crate::workload::PriorityClass::ALL
            .iter()
            .flat_map(|p| self.running_of(*p).iter())
            .filter_map(|id| self.workloads.get(id).map(|e| (*id, e)))
            .collect()
    }

    /// The earliest time a waiting gang could start, and where: for every node, when it
    /// could take one of its tasks (as the tasks there reach their time limits), then per
    /// topology group the `k`-th earliest of its nodes.
    fn earliest_start(
        &self,
        id: WorkloadId,
        ends: &[Vec<(Option<Timestamp>, WorkloadId, u32)>],
        ask: Ask,
    ) -> Option<(Timestamp, Vec<NodeIdx>)> {
        let e = self.workloads.get(&id)?;
        let crate::workload::Shape::Gang { topology, .. } = e.workload.shape else { return None };
        if topology == Topology::SameNode {
            return None;
        }
        let mut need = e.need.clone();
        let amount = u64::from(need.gpu_total().0) * u64::from(e.workload.shape.tasks());
        let within =
            |flavours| crate::state::Admit { flavours: Some(flavours), ..crate::state::Admit::default() };
        need.admit = match ask {
            Ask::Admitted => self.admission(id).ok()?,
            Ask::Reclaim => within(self.quotas.nominal_mask(&e.workload.tenant, amount)),
        };
        need.admit.ends_by = None;
        need.admit.tasks = 1;
        let k = (e.workload.shape.tasks() - e.placed()) as usize;
        let whole_node = |n: &crate::state::NodeState| need.gpu_count > 0 && need.gpu_count == n.gpu_count();
        let mut groups: BTreeMap<u32, Vec<(i64, u32)>> = BTreeMap::new();
        for (i, node) in self.state.nodes.iter().enumerate() {
            if !node.up || !need.sites.contains(node.site) {
                continue;
            }
            if need.gpu_count > 0 && !node.model.is_some_and(|m| need.models.allows(m)) {
                continue;
            }
            if node.reserved.is_some() {
                continue;
            }
            if let Some(mask) = need.admit.flavours
                && (node.flavour == NO_FLAVOUR || mask & (1 << node.flavour) == 0)
            {
                continue;
            }
            let free_at = if self.state.check(node, &need).is_ok() {
                Some(self.now)
            } else if whole_node(node) {
                // Every task there must leave.
                // Sorted latest last, `None` (no limit) after every time.
                ends[i].last().and_then(|(end, _, _)| *end).map(|t| t.max(self.now))
            } else {
                let mut freed: Vec<&TaskAlloc> = Vec::new();
                let mut at = None;
                for (end, wid, task) in &ends[i] {
                    let Some(end) = end else { break };
                    let Some(alloc) = self
                        .workloads
                        .get(wid)
                        .and_then(|e| e.tasks.get(*task as usize))
                        .and_then(Option::as_ref)
                    else {
                        continue;
                    };
                    freed.push(alloc);
                    if self.state.check_with_freed(node, &need, &freed).is_ok() {
                        at = Some((*end).max(self.now));
                        break;
                    }
                }
                at
            };
            let Some(at) = free_at else { continue };
            let group = match topology {
                Topology::SameRack => node.rack,
                Topology::SameDomain => self.state.racks[node.rack as usize].domain,
                Topology::Any | Topology::SameNode => 0,
            };
            groups.entry(group).or_default().push((at.0, i as u32));
        }
        let mut best: Option<(i64, u32, Vec<NodeIdx>)> = None;
        for (g, mut list) in groups {
            if list.len() < k {
                continue;
            }
            list.sort_unstable();
            let start = list[k - 1].0;
            if best.as_ref().is_none_or(|(s, bg, _)| (start, g) < (*s, *bg)) {
                best = Some((start, g, list[..k].iter().map(|(_, n)| NodeIdx(*n)).collect()));
            }
        }
        best.map(|(s, _, nodes)| (Timestamp(s), nodes))
    }

    /// Lets waiting work whose time limit ends before a reservation starts use reserved
    /// nodes meanwhile: classes in order, tenants in rank order, each tenant's work in
    /// its order, up to `depth` tries (and ten times as many looked at).
    fn backfill(&mut self, rng: &mut CoreRng, out: &mut Vec<Decision>) {
        let Some(latest) = self.reservations.values().map(|r| r.start).max() else { return };
        let mut tries = self.config.backfill.depth;
        let mut looks = u64::from(tries) * 10;
        let classes: Vec<u32> = self.pq.active.iter().copied().collect();
        for c in classes {
            let ranks: Vec<crate::queue::Rank> = self.pq.classes[c as usize].ready.iter().copied().collect();
            for rank in ranks {
                let Some(list) = self.pq.tenants[rank.3 as usize].by_class.get(&c) else { continue };
                let fitting: Vec<WorkloadId> = list
                    .iter()
                    .take(usize::try_from(looks).unwrap_or(usize::MAX))
                    .filter(|slot| {
                        self.workloads
                            .get(&slot.2)
                            .and_then(|e| e.workload.time_limit)
                            .is_some_and(|l| self.now + l <= latest)
                    })
                    .map(|slot| slot.2)
                    .collect();
                looks =
                    looks.saturating_sub(list.len().min(usize::try_from(looks).unwrap_or(usize::MAX)) as u64);
                for id in fitting {
                    if tries == 0 {
                        return;
                    }
                    tries -= 1;
                    let before = out.len();
                    self.try_place_public(id, rng, out);
                    if out.len() == before {
                        // Nothing of this shape fits now: next class.
                        break;
                    }
                }
                if looks == 0 {
                    return;
                }
            }
        }
    }
}

/// What quota says of a workload a reservation is planned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// Quota admits it now: the reservation holds its quota.
    Admitted,
    /// It is within its nominal quota, lent out: borrowers are reclaimed first.
    Reclaim,
}

impl Entry {
    /// The flavours it is charged in.
    pub(crate) fn charges_flavours(&self) -> impl Iterator<Item = usize> + '_ {
        self.charges_list().iter().filter(|(f, _)| *f != NO_FLAVOUR).map(|(f, _)| *f as usize)
    }
}
