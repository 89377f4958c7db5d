//! The pending queue, organised so that an event's cost does not grow with its length.
//!
//! Waiting work is grouped into **classes**: workloads whose tasks need the same thing
//! from a node (GPUs, share, models, CPU, memory, data class) and have the same shape (a
//! gang's size and topology). Any two workloads of a class fit exactly the same nodes, so
//! when the best-ranked workload of a class does not fit, none of the class does: an event
//! tries the **head** of each class and stops the class at its first failure.
//!
//! Within a class, tenants are ranked by [`Rank`]: priority class first, then work that
//! stays within its tenant's nominal quota before borrowing, then the tenant's weighted
//! dominant share (fair share), then the tenant. Within one tenant, a class holds its
//! workloads by priority class, then age (oldest first).
//!
//! A tenant whose head a quota refuses is **parked** for that class, out of the ranking,
//! until its usage (or its cohort's) goes down: so quota-blocked tenants cost nothing per
//! event however many there are.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;

use crate::state::Need;
use crate::workload::{PriorityClass, Shape, TenantId, Topology, WorkloadId};

/// What makes two workloads interchangeable for placement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClassKey {
    need: Need,
    /// `None` for singles and services (each task placed on its own); `Some` for gangs.
    gang: Option<(u32, Topology)>,
}

impl ClassKey {
    /// What one task needs.
    pub(crate) fn need(&self) -> &Need {
        &self.need
    }

    /// Sets the resolved models (a model joined the fleet).
    pub(crate) fn set_models(&mut self, models: crate::state::ModelSet) {
        self.need.models = models;
    }

    /// Whether the class holds gangs.
    pub(crate) fn is_gang(&self) -> bool {
        self.gang.is_some()
    }

    pub(crate) fn of(need: &Need, shape: Shape) -> ClassKey {
        let gang = match shape {
            Shape::Gang { tasks, topology } => Some((tasks, topology)),
            Shape::Single | Shape::Service { .. } => None,
        };
        ClassKey { need: need.clone(), gang }
    }
}

/// A tenant's place in a class: higher priority first, then work within nominal quota,
/// then the lower weighted dominant share, then the tenant index.
pub(crate) type Rank = (Reverse<PriorityClass>, bool, u64, u32);

/// A workload's place within its tenant's part of a class.
pub(crate) type Slot = (Reverse<PriorityClass>, u64, WorkloadId);

#[derive(Debug, Clone)]
pub(crate) struct Class {
    pub(crate) key: ClassKey,
    /// The GPU models its workloads name, to resolve again when a new model joins.
    pub(crate) model_names: Vec<String>,
    /// Tenants with work in this class that may be tried, best first.
    pub(crate) ready: BTreeSet<Rank>,
    /// The workloads in the class (ready or parked).
    pub(crate) len: usize,
    /// Power (rack or site) turned nodes away at its last failure.
    pub(crate) power_blocked: bool,
    /// Try it on the next event whatever changed (its state of failure is unknown).
    pub(crate) retry: bool,
    /// Try it in full at the next periodic pass (a gang woken from quota).
    pub(crate) retry_at_pass: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct TenantQueue {
    pub(crate) id: TenantId,
    /// Per class: the tenant's workloads in order.
    pub(crate) by_class: BTreeMap<u32, BTreeSet<Slot>>,
    /// Per class: its rank in `Class::ready`, or `None` while parked.
    pub(crate) rank: BTreeMap<u32, Option<Rank>>,
    /// Workloads waiting.
    pub(crate) len: usize,
    /// Parked classes whose head its quota tree had nothing to lend for (the tenant
    /// would borrow): its own releases do not wake them, room freed in the tree does,
    /// in rank order.
    pub(crate) on_tree: BTreeSet<u32>,
}

/// Pending work by class and tenant.
#[derive(Debug, Clone, Default)]
pub(crate) struct Queue {
    pub(crate) classes: Vec<Class>,
    class_ids: FxHashMap<ClassKey, u32>,
    pub(crate) tenants: Vec<TenantQueue>,
    tenant_ids: BTreeMap<TenantId, u32>,
    /// Classes with at least one ready tenant.
    pub(crate) active: BTreeSet<u32>,
    /// Parked (tenant, class) pairs, per quota tree root (`u32::MAX`: ungoverned), with
    /// the rank they had, best first: a release in a tree wakes its best-ranked first.
    parked: BTreeMap<u32, BTreeSet<(Rank, u32)>>,
}

impl Queue {
    /// The class of a key, created on first use.
    pub(crate) fn class_of(&mut self, key: &ClassKey, model_names: &[String]) -> u32 {
        if let Some(c) = self.class_ids.get(key) {
            return *c;
        }
        let c = self.classes.len() as u32;
        self.classes.push(Class {
            key: key.clone(),
            model_names: model_names.to_vec(),
            ready: BTreeSet::new(),
            len: 0,
            power_blocked: false,
            retry: true,
            retry_at_pass: false,
        });
        self.class_ids.insert(key.clone(), c);
        c
    }

    /// The dense index of a tenant, created on first use.
    pub(crate) fn tenant_of(&mut self, id: &TenantId) -> u32 {
        if let Some(t) = self.tenant_ids.get(id) {
            return *t;
        }
        let t = self.tenants.len() as u32;
        self.tenants.push(TenantQueue { id: id.clone(), ..TenantQueue::default() });
        self.tenant_ids.insert(id.clone(), t);
        t
    }

    /// The dense index of a tenant, if it was ever seen.
    pub(crate) fn find_tenant(&self, id: &TenantId) -> Option<u32> {
        self.tenant_ids.get(id).copied()
    }

    /// The tenant's head in class `c`.
    pub(crate) fn head(&self, t: u32, c: u32) -> Option<Slot> {
        self.tenants[t as usize].by_class.get(&c).and_then(|s| s.first().copied())
    }

    /// The best-ranked ready tenant of class `c` and its head.
    pub(crate) fn class_head(&self, c: u32) -> Option<(Rank, Slot)> {
        let rank = *self.classes[c as usize].ready.first()?;
        Some((rank, self.head(rank.3, c)?))
    }

    /// Adds a workload; `rank` computes the tenant's rank for a head priority.
    pub(crate) fn push(&mut self, t: u32, c: u32, slot: Slot, rank: impl Fn(PriorityClass) -> Rank) {
        let tq = &mut self.tenants[t as usize];
        tq.len += 1;
        let set = tq.by_class.entry(c).or_default();
        set.insert(slot);
        let head = set.first().copied();
        self.classes[c as usize].len += 1;
        match tq.rank.get(&c).copied() {
            // Parked: stays parked; the wake-up ranks it again.
            Some(None) => {}
            Some(Some(old)) => {
                if let Some(h) = head {
                    let new = rank(h.0.0);
                    if new != old {
                        self.classes[c as usize].ready.remove(&old);
                        self.classes[c as usize].ready.insert(new);
                        self.tenants[t as usize].rank.insert(c, Some(new));
                    }
                }
            }
            None => {
                let new = rank(slot.0.0);
                self.classes[c as usize].ready.insert(new);
                self.tenants[t as usize].rank.insert(c, Some(new));
                self.active.insert(c);
            }
        }
    }

    /// Removes a workload (placed, cancelled); returns whether it was there.
    pub(crate) fn remove(
        &mut self,
        t: u32,
        c: u32,
        slot: Slot,
        rank: impl Fn(PriorityClass) -> Rank,
    ) -> bool {
        let tq = &mut self.tenants[t as usize];
        let Some(set) = tq.by_class.get_mut(&c) else { return false };
        if !set.remove(&slot) {
            return false;
        }
        tq.len -= 1;
        self.classes[c as usize].len -= 1;
        let head = set.first().copied();
        if head.is_none() {
            tq.by_class.remove(&c);
        }
        let old = tq.rank.get(&c).copied();
        match (old, head) {
            (Some(Some(r)), None) => {
                self.classes[c as usize].ready.remove(&r);
                self.tenants[t as usize].rank.remove(&c);
            }
            (Some(Some(r)), Some(h)) => {
                let new = rank(h.0.0);
                if new != r {
                    self.classes[c as usize].ready.remove(&r);
                    self.classes[c as usize].ready.insert(new);
                    self.tenants[t as usize].rank.insert(c, Some(new));
                }
            }
            (Some(None), None) => {
                self.tenants[t as usize].rank.remove(&c);
                self.drop_parked(t, c);
            }
            _ => {}
        }
        if self.classes[c as usize].ready.is_empty() {
            self.active.remove(&c);
        }
        true
    }

    /// Forgets a parked (t, c) pair in every tree.
    fn drop_parked(&mut self, t: u32, c: u32) {
        for set in self.parked.values_mut() {
            set.retain(|(r, cc)| !(*cc == c && r.3 == t));
        }
    }

    /// Takes a tenant out of a class's ranking until woken (its head exceeds its quota).
    pub(crate) fn park(&mut self, t: u32, c: u32, root: Option<u32>, on_tree: bool) {
        let Some(Some(r)) = self.tenants[t as usize].rank.get(&c).copied() else { return };
        if on_tree {
            self.tenants[t as usize].on_tree.insert(c);
        }
        self.classes[c as usize].ready.remove(&r);
        if self.classes[c as usize].ready.is_empty() {
            self.active.remove(&c);
        }
        self.tenants[t as usize].rank.insert(c, None);
        self.parked.entry(root.unwrap_or(u32::MAX)).or_default().insert((r, c));
    }

    /// Puts a parked (t, c) pair back in its class's ranking.
    fn wake(&mut self, t: u32, c: u32, rank: &impl Fn(u32, PriorityClass) -> Rank) {
        let Some(head) = self.head(t, c) else { return };
        let rank = rank(t, head.0.0);
        let tq = &mut self.tenants[t as usize];
        if tq.rank.get(&c) != Some(&None) {
            return;
        }
        tq.rank.insert(c, Some(rank));
        tq.on_tree.remove(&c);
        let class = &mut self.classes[c as usize];
        class.ready.insert(rank);
        // Its head failed on quota, not on capacity: where it fits is unknown. A single is
        // tried on the next event; a gang's full look (every group) waits for the next
        // periodic pass, which keeps gangs' wakes off the per-event path (they made the
        // event p99 at 200,000 GPUs 1.2 ms instead of 0.5 ms). Reservations are planned
        // in that pass too.
        if class.key.is_gang() {
            class.retry_at_pass = true;
        } else {
            class.retry = true;
        }
        self.active.insert(c);
    }

    /// Wakes every parked class of tenant `t` (its quota may admit it now). `rank`
    /// gives its rank in a class.
    pub(crate) fn wake_tenant(
        &mut self,
        t: u32,
        root: Option<u32>,
        rank: impl Fn(u32, PriorityClass) -> Rank,
    ) {
        self.wake_classes(t, root, false, rank);
    }

    /// Wakes the parked classes of tenant `t` that its own release may admit: those
    /// its own limits held back. A class its tree had nothing to lend for stays parked:
    /// room its release frees in the tree goes to the tree's best-ranked parked work
    /// ([`Queue::wake_tree`]), which is this tenant only if it ranks best. Otherwise a
    /// borrower preempted for fair share would take the room back at once.
    pub(crate) fn wake_own(&mut self, t: u32, root: Option<u32>, rank: impl Fn(u32, PriorityClass) -> Rank) {
        self.wake_classes(t, root, true, rank);
    }

    fn wake_classes(
        &mut self,
        t: u32,
        root: Option<u32>,
        own: bool,
        rank: impl Fn(u32, PriorityClass) -> Rank,
    ) {
        let tq = &self.tenants[t as usize];
        let parked: Vec<u32> = tq
            .rank
            .iter()
            .filter(|(c, r)| r.is_none() && !(own && tq.on_tree.contains(c)))
            .map(|(c, _)| *c)
            .collect();
        if parked.is_empty() {
            return;
        }
        if let Some(set) = self.parked.get_mut(&root.unwrap_or(u32::MAX)) {
            set.retain(|(r, c)| r.3 != t || !parked.contains(c));
        }
        for c in parked {
            self.wake(t, c, &rank);
        }
    }

    /// Wakes up to `n` parked pairs of a tree, best-ranked first (room was freed there).
    pub(crate) fn wake_tree(&mut self, root: u32, n: usize, rank: impl Fn(u32, PriorityClass) -> Rank) {
        let Some(set) = self.parked.get_mut(&root) else { return };
        let mut woken = Vec::new();
        while woken.len() < n {
            let Some(first) = set.pop_first() else { break };
            woken.push(first);
        }
        for (r, c) in woken {
            self.wake(r.3, c, &rank);
        }
    }

    /// Wakes everything parked (quotas changed).
    pub(crate) fn wake_all(&mut self, rank: impl Fn(u32, PriorityClass) -> Rank) {
        let all: Vec<(Rank, u32)> =
            std::mem::take(&mut self.parked).into_values().flat_map(BTreeSet::into_iter).collect();
        for (r, c) in all {
            self.wake(r.3, c, &rank);
        }
    }

    /// Ranks tenant `t` again in every class where it is ready (its share changed).
    pub(crate) fn rerank(&mut self, t: u32, rank: impl Fn(PriorityClass) -> Rank) {
        let entries: Vec<(u32, Rank)> =
            self.tenants[t as usize].rank.iter().filter_map(|(c, r)| r.map(|r| (*c, r))).collect();
        for (c, old) in entries {
            let Some(h) = self.head(t, c) else { continue };
            let new = rank(h.0.0);
            if new != old {
                let class = &mut self.classes[c as usize];
                class.ready.remove(&old);
                class.ready.insert(new);
                self.tenants[t as usize].rank.insert(c, Some(new));
            }
        }
    }

    /// Number of parked (tenant, class) pairs.
    pub(crate) fn parked_count(&self) -> usize {
        self.parked.values().map(BTreeSet::len).sum()
    }
}
