//! The scheduler: applies one event to the state and says what it decided.
//!
//! The event path is built so that its cost does not grow with what merely waits:
//! pending work lives in classes (see [`crate::queue`]), an event tries only the head of
//! each class that the capacity it freed could help, and stops a class at its first
//! failure. Work that needs a wider look (reservations for gangs, backfill into them,
//! reclaiming lent quota, fair-share decay) happens in the periodic pass,
//! [`Event::Tick`] (see `backfill.rs`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use rustc_hash::FxHashMap;
use std::ops::Bound;

use gigawatt_fleet::{Fleet, ResidencyRule, ResidencyRules};
use gigawatt_units::{Seconds, Timestamp, Watts};
use serde::Serialize;

use crate::CoreRng;
use crate::energy::{Commitment, EnergyBook};
use crate::error::CoreError;
use crate::event::{Decision, Event, TaskPlacement};
use crate::explain::{PendingWhy, PreemptWhy, Reason, RejectWhy};
use crate::policy::{Policy, Scored};
use crate::queue::{ClassKey, Queue, Rank, Slot};
use crate::quota::{QuotaBook, QuotaWhy};
use crate::residency::SiteMask;
use crate::state::{Admit, ClusterState, ModelSet, NO_FLAVOUR, Need, NodeIdx, TaskAlloc};
use crate::workload::{PriorityClass, TenantId, Workload, WorkloadId};

/// Candidates scored per task by default: enough for FGD to keep its packing quality on
/// the openb trace (95.41% at 128 against 95.42% exact; 95.12% at 64).
pub const DEFAULT_MAX_CANDIDATES: u32 = 128;

/// Tenants of one class an event looks past when their quota flavours, not capacity,
/// turned the freed nodes away (another tenant of the class may use them).
const FLAVOUR_SKIPS: u32 = 32;

/// How the scheduler behaves where policy, not physics, decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SchedulerConfig {
    /// Drop a workload that does not fit at once instead of queueing it. This is the FGD
    /// paper's trace protocol ("a pod that does not fit is never retried"); production
    /// queues.
    pub drop_unschedulable: bool,
    /// Score only the this-many tightest feasible nodes per task, taken from the fit index
    /// (see `index.rs`), instead of every feasible node. `None` is exact and is what the
    /// trace experiments use; a limit bounds the cost of a decision on large fleets. On
    /// the openb trace FGD keeps its quality at 128 candidates (95.39% vs 95.42%).
    pub max_candidates: Option<u32>,
    /// Let a task that fits nowhere evict strictly lower-priority work (lowest priority,
    /// then youngest, first; fewest victims wins). Evicted workloads are requeued whole.
    pub priority_preemption: bool,
    /// Order pending work of different tenants by fair share (weighted dominant share
    /// with decayed past use) rather than by arrival alone.
    pub fair_share: bool,
    /// Reservations for gangs and backfill into them (see [`BackfillConfig`]).
    pub backfill: BackfillConfig,
}

/// Reservations and backfill, made by the periodic pass ([`Event::Tick`]).
///
/// The trade-off: every reservation holds nodes idle (except for backfill) until its
/// gang can start, so more reservations, or reservations further ahead, protect more
/// big gangs from starving at the price of utilisation; Slurm's `bf_window` and
/// `bf_max_job_test` make the same trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BackfillConfig {
    /// Gangs that may hold a reservation at once (0 disables reservations).
    pub max_reservations: u32,
    /// How far ahead a reservation may start, in seconds; a gang whose earliest start is
    /// later gets none yet.
    pub horizon_s: u64,
    /// Workloads the backfill walk may try per pass (Slurm's `bf_max_job_test`).
    pub depth: u32,
    /// Priority that ages with waiting: a best-effort workload that has waited this many
    /// seconds is ordered as standard work from the next pass on (0: never). It stays
    /// best-effort for preemption, and work never ages into latency-critical, so
    /// inference stays above training. Slurm's age factor plays this part.
    pub age_after_s: u64,
    /// Waiting workloads per pass that may preempt borrowers further above their fair
    /// share (0: never; see `fair_preempt.rs`). Kueue's fair sharing preempts the same
    /// way within a cohort. Each costs a bounded look at the largest borrowers.
    pub fair_preemptions: u32,
    /// A gang that quota refuses as a borrower and that waited this many seconds may
    /// clear room for itself by preempting, whole, the borrowed work of tenants further
    /// above their fair share, one gang per pass (0: never; see `fair_preempt.rs`).
    /// Such a gang gets no reservation, so without this it would wait until its cohort
    /// happens to have a gang's worth free, which at saturation is never.
    pub gang_preempt_after_s: u64,
}

/// How long a borrowing gang waits before it may preempt for fair share, by default:
/// four hours (at 20,000 GPUs it left no big gang starving; one hour preempted more and
/// made single jobs wait four times longer there).
pub const DEFAULT_GANG_PREEMPT_AFTER_S: u64 = 4 * 3600;

/// Fair-share preemptions per pass by default.
pub const DEFAULT_FAIR_PREEMPTIONS: u32 = 128;

impl BackfillConfig {
    /// No reservations, no backfill: the queue is strictly ordered.
    pub const OFF: BackfillConfig = BackfillConfig {
        max_reservations: 0,
        horizon_s: 0,
        depth: 0,
        age_after_s: 0,
        fair_preemptions: 0,
        gang_preempt_after_s: 0,
    };
}

impl Default for BackfillConfig {
    /// Four reservations at once, up to 7 days ahead, 2,000 backfill tries per pass,
    /// best-effort work ordered as standard after a day of waiting.
    fn default() -> Self {
        BackfillConfig {
            max_reservations: 4,
            horizon_s: 7 * 86_400,
            depth: 2_000,
            age_after_s: 86_400,
            fair_preemptions: DEFAULT_FAIR_PREEMPTIONS,
            gang_preempt_after_s: DEFAULT_GANG_PREEMPT_AFTER_S,
        }
    }
}

impl Default for SchedulerConfig {
    /// Production behaviour: queue what does not fit, score the 128 tightest feasible
    /// nodes (exact whenever no more than 128 fit; ~18,000 FGD decisions/s on a
    /// 25,000-node fleet), preempt lower priorities, fair share, reservations and backfill.
    fn default() -> Self {
        SchedulerConfig {
            drop_unschedulable: false,
            max_candidates: Some(DEFAULT_MAX_CANDIDATES),
            priority_preemption: true,
            fair_share: true,
            backfill: BackfillConfig::default(),
        }
    }
}

/// Where a workload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadStatus {
    /// Waiting for capacity (a service may have some replicas running).
    Pending,
    /// Every task placed.
    Running,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) workload: Workload,
    pub(crate) need: Need,
    pub(crate) tasks: Vec<Option<TaskAlloc>>,
    /// Arrival order, for FIFO within a priority class.
    pub(crate) seq: u64,
    /// When it last got tasks placed (for "youngest first" shedding).
    pub(crate) placed_seq: u64,
    /// The `placed_seq` it is filed under in `Scheduler::youngest`, while it runs.
    pub(crate) youth: Option<u64>,
    /// How many GPU models the cluster had when `need.models` was resolved; a model that
    /// joins later (with a new node) means resolving again.
    pub(crate) models_known: usize,
    /// Its class in the queue.
    pub(crate) class: u32,
    /// Its tenant's index in the queue.
    pub(crate) tenant: u32,
    /// When its tasks were last placed (time limits count from here).
    pub(crate) started: Option<Timestamp>,
    /// GPU thousandths charged per quota flavour, to refund exactly.
    pub(crate) charges: Vec<(u8, u64)>,
    /// Watts charged per site, to refund exactly.
    pub(crate) power: Vec<(u32, u64)>,
    /// Energy committed per placed task: reserved watts, and until when.
    pub(crate) energy: Vec<Commitment>,
    /// Quota held for its reservation, per flavour, until it starts or leaves.
    pub(crate) held: Vec<(u8, u64)>,
    /// Since when it waits (its latest entry into the queue).
    pub(crate) waiting_since: Timestamp,
    /// A best-effort workload that waited long enough to be ordered as standard.
    pub(crate) aged: bool,
}

impl Entry {
    pub(crate) fn placed(&self) -> u32 {
        self.tasks.iter().filter(|t| t.is_some()).count() as u32
    }

    pub(crate) fn slot(&self) -> Slot {
        (Reverse(self.queue_priority()), self.seq, self.workload.id)
    }

    /// The priority it is ordered by while it waits: its own, or standard once a
    /// best-effort workload has aged.
    pub(crate) fn queue_priority(&self) -> PriorityClass {
        match self.workload.priority {
            PriorityClass::BestEffort if self.aged => PriorityClass::Standard,
            p => p,
        }
    }

    /// What it is charged per flavour.
    pub(crate) fn charges_list(&self) -> &[(u8, u64)] {
        &self.charges
    }

    /// When its time limit ends, if it runs and has one.
    pub(crate) fn ends(&self) -> Option<Timestamp> {
        Some(self.started? + self.workload.time_limit?)
    }
}

/// A tenant's use, for fair share: GPU thousandths per resource (flavours) and watts.
#[derive(Debug, Clone, Default)]
pub(crate) struct TenantUse {
    pub(crate) now: Vec<u64>,
    pub(crate) decayed: Vec<f64>,
    pub(crate) share: u64,
    pub(crate) over: bool,
    /// Cached from the quotas: fair-share weight, nominal over all flavours, governed.
    pub(crate) weight: f64,
    pub(crate) nominal: u64,
    pub(crate) governed: bool,
}

/// A gang's reservation: nodes held for it from `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    /// When the nodes are expected to be free, from the time limits of what runs there.
    pub start: Timestamp,
    /// The nodes.
    pub nodes: Vec<NodeIdx>,
}

/// The scheduling core. Feed it events with [`Scheduler::handle`]; it returns decisions.
pub struct Scheduler {
    pub(crate) state: ClusterState,
    pub(crate) policy: Box<dyn Policy>,
    pub(crate) config: SchedulerConfig,
    pub(crate) catalog: gigawatt_fleet::GpuCatalog,
    pub(crate) workloads: BTreeMap<WorkloadId, Entry>,
    pub(crate) queue: BTreeSet<(Reverse<PriorityClass>, u64, WorkloadId)>,
    pub(crate) seq: u64,
    pub(crate) scratch: Vec<(NodeIdx, Scored)>,
    /// The largest node per site, cached with the node count it was computed at.
    pub(crate) largest: (usize, Vec<Largest>),
    /// The operator's residency rules, from the fleet file.
    pub(crate) residency: ResidencyRules,
    /// Tenants' residency policies (each narrows the operator's rules).
    pub(crate) tenant_rules: BTreeMap<TenantId, ResidencyRule>,
    /// Whether a failed bounded search scans every node to explain itself. Off while
    /// retrying the queue: those explanations were given at arrival and are not repeated.
    pub(crate) explain_failures: bool,
    /// Nodes whose free capacity grew since the queue was last retried.
    pub(crate) freed_nodes: BTreeSet<u32>,
    /// Sites where rack or site power was freed (or the budget changed) since then.
    pub(crate) freed_sites: BTreeSet<u32>,
    /// The latest time an event carried.
    pub(crate) now: Timestamp,
    pub(crate) quotas: QuotaBook,
    /// Energy committed per tenant in the billing period, and the energy quotas.
    pub(crate) energy: EnergyBook,
    /// Waiting best-effort workloads by the time they started waiting, for aging
    /// (stale marks are skipped when met).
    pub(crate) aging: BTreeSet<(Timestamp, WorkloadId)>,
    pub(crate) pq: Queue,
    pub(crate) usage: Vec<TenantUse>,
    /// Capacity per fair-share resource (flavours, then power).
    pub(crate) caps: Vec<u64>,
    /// Workloads holding at least one task, per priority class (index = class order).
    pub(crate) running: [BTreeSet<WorkloadId>; 3],
    /// The same, youngest first (by the position of their latest placement): reclaim
    /// walks borrowers in this order and stops early instead of sorting all that runs.
    pub(crate) youngest: [BTreeSet<(Reverse<u64>, WorkloadId)>; 3],
    /// Running workloads per tenant (index as in the queue), lowest priority first, then
    /// youngest first: fair-share preemption takes victims from the tenants furthest
    /// above their share without walking everything that runs.
    pub(crate) by_tenant: Vec<BTreeSet<(PriorityClass, Reverse<u64>, WorkloadId)>>,
    /// The workloads with a task on each node (by node index): a preemption judges a
    /// node by everything on it.
    pub(crate) on_node: Vec<Vec<WorkloadId>>,
    /// The most tasks of a shape one topology group holds empty, per shape, with the
    /// node count it was computed at (see `feasible.rs`).
    pub(crate) gang_room: (usize, FxHashMap<crate::feasible::FitKey, u64>),
    pub(crate) reservations: BTreeMap<WorkloadId, Reservation>,
    pub(crate) last_tick: Option<Timestamp>,
    /// Members of each rack and each network domain, with the node count they were
    /// built at (gangs look at the groups of freed nodes only).
    pub(crate) topo: (usize, Vec<Vec<u32>>, Vec<Vec<u32>>),
}

/// The most GPUs, CPU and memory one node offers (not necessarily the same node).
type Largest = (u32, gigawatt_units::MilliCores, gigawatt_units::Mebibytes);

fn largest_nodes(state: &ClusterState) -> Vec<Largest> {
    let mut out =
        vec![(0, gigawatt_units::MilliCores::ZERO, gigawatt_units::Mebibytes::ZERO); state.sites.len()];
    for n in &state.nodes {
        let l = &mut out[n.site as usize];
        *l = (l.0.max(n.gpu_count()), l.1.max(n.cpu_total), l.2.max(n.mem_total));
    }
    out
}

pub(crate) fn prio_index(p: PriorityClass) -> usize {
    p as usize
}

impl Scheduler {
    /// A scheduler for `fleet` with budgets as of `now` and nodes in fleet order.
    pub fn new(
        fleet: &Fleet,
        policy: Box<dyn Policy>,
        config: SchedulerConfig,
        now: Timestamp,
    ) -> Result<Scheduler, CoreError> {
        let mut s = Scheduler::with_state(ClusterState::from_fleet(fleet, now)?, fleet, policy, config);
        s.now = now;
        Ok(s)
    }

    /// A scheduler over a prepared state (for example with a seeded node order).
    #[must_use]
    pub fn with_state(
        state: ClusterState,
        fleet: &Fleet,
        policy: Box<dyn Policy>,
        config: SchedulerConfig,
    ) -> Scheduler {
        let mut s = Scheduler {
            state,
            policy,
            config,
            catalog: fleet.catalog.clone(),
            workloads: BTreeMap::new(),
            queue: BTreeSet::new(),
            seq: 0,
            scratch: Vec::new(),
            largest: (usize::MAX, Vec::new()),
            residency: fleet.residency.clone(),
            tenant_rules: BTreeMap::new(),
            explain_failures: true,
            freed_nodes: BTreeSet::new(),
            freed_sites: BTreeSet::new(),
            now: Timestamp(0),
            quotas: QuotaBook::default(),
            energy: EnergyBook::default(),
            aging: BTreeSet::new(),
            pq: Queue::default(),
            usage: Vec::new(),
            caps: Vec::new(),
            running: Default::default(),
            youngest: Default::default(),
            by_tenant: Vec::new(),
            on_node: Vec::new(),
            gang_room: (usize::MAX, FxHashMap::default()),
            reservations: BTreeMap::new(),
            last_tick: None,
            topo: (usize::MAX, Vec::new(), Vec::new()),
        };
        s.refresh_caps();
        s
    }

    /// The cluster state.
    #[must_use]
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// The policy's name.
    #[must_use]
    pub fn policy_name(&self) -> &str {
        self.policy.name()
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> SchedulerConfig {
        self.config
    }

    /// Where a workload stands, or `None` if unknown (never seen, finished or dropped).
    #[must_use]
    pub fn status(&self, id: WorkloadId) -> Option<WorkloadStatus> {
        self.workloads.get(&id).map(|e| {
            if e.placed() == e.workload.shape.tasks() {
                WorkloadStatus::Running
            } else {
                WorkloadStatus::Pending
            }
        })
    }

    /// The allocations of a workload, task by task.
    #[must_use]
    pub fn allocations(&self, id: WorkloadId) -> Option<&[Option<TaskAlloc>]> {
        self.workloads.get(&id).map(|e| e.tasks.as_slice())
    }

    /// Every task allocation held now.
    pub fn all_allocations(&self) -> impl Iterator<Item = (&Workload, &TaskAlloc)> {
        self.workloads.values().flat_map(|e| e.tasks.iter().flatten().map(move |t| (&e.workload, t)))
    }

    /// Workloads waiting, highest priority and oldest first.
    pub fn pending(&self) -> impl Iterator<Item = WorkloadId> + '_ {
        self.queue.iter().map(|(_, _, id)| *id)
    }

    /// Number of workloads waiting.
    #[must_use]
    pub fn pending_count(&self) -> usize {
        self.queue.len()
    }

    /// Puts a workload back as the event log recorded it, deciding nothing. The control
    /// plane calls this when it rebuilds its state from the log (the log holds the
    /// facts, placements included; policies may change between versions, facts do not).
    ///
    /// `tasks[i]` is where task `i` runs, or `None` if it waits. Workloads must be
    /// restored in submission order (that order is the queue's FIFO order). Every hard
    /// limit is checked again: a placement on a site the residency rules in force refuse
    /// is refused with [`CoreError::Residency`], one that would break any other limit
    /// with [`CoreError::Restore`], and the state is left as it was.
    pub fn restore(&mut self, workload: Workload, tasks: &[Option<TaskPlacement>]) -> Result<(), CoreError> {
        let id = workload.id;
        if self.workloads.contains_key(&id) {
            return Err(CoreError::Restore(id, "restored twice".into()));
        }
        if tasks.len() != workload.shape.tasks() as usize {
            return Err(CoreError::Restore(
                id,
                format!("{} task placements for {} tasks", tasks.len(), workload.shape.tasks()),
            ));
        }
        let need = self.resolve(&workload).map_err(|why| CoreError::Restore(id, why.to_string()))?;
        let mut allocs: Vec<Option<TaskAlloc>> = Vec::with_capacity(tasks.len());
        for t in tasks {
            let Some(p) = t else {
                allocs.push(None);
                continue;
            };
            let alloc = self.state.node_by_name(&p.node).map(|node| TaskAlloc {
                node,
                gpus: p.gpus.clone(),
                cpu: need.cpu,
                memory: need.memory,
            });
            // Residency first: a site the rules in force refuse must not keep the data,
            // whatever room it has.
            if let Some(alloc) = &alloc
                && !need.sites.contains(self.state.nodes[alloc.node.0 as usize].site)
            {
                let site = &self.state.sites[self.state.nodes[alloc.node.0 as usize].site as usize];
                let why = self.effective_policy(&workload).why_not(&site.law).unwrap_or_default();
                {
                    let site = site.id.clone();
                    for a in allocs.iter().flatten() {
                        self.state.release(a);
                    }
                    return Err(CoreError::Residency { workload: id, node: p.node.clone(), site, why });
                }
            }
            let done = match alloc {
                None => Err(format!("task {} is on unknown node `{}`", p.task, p.node)),
                Some(alloc) => match self.state.allocate(&alloc) {
                    Ok(_) => Ok(alloc),
                    Err(e) => Err(format!("task {} on `{}`: {e}", p.task, p.node)),
                },
            };
            match done {
                Ok(alloc) => allocs.push(Some(alloc)),
                Err(message) => {
                    for a in allocs.iter().flatten() {
                        self.state.release(a);
                    }
                    return Err(CoreError::Restore(id, message));
                }
            }
        }
        self.seq += 1;
        let all_placed = allocs.iter().all(Option::is_some);
        let any_placed = allocs.iter().any(Option::is_some);
        let placed: Vec<TaskAlloc> = allocs.iter().flatten().cloned().collect();
        let entry = self.new_entry(workload, need, self.seq);
        self.workloads.insert(id, entry);
        if let Some(e) = self.workloads.get_mut(&id) {
            e.tasks = allocs;
            e.placed_seq = if any_placed { e.seq } else { 0 };
            e.started = any_placed.then_some(self.now);
        }
        for a in &placed {
            self.charge_task(id, a);
            self.charge_energy(id, a);
        }
        if any_placed {
            self.note_running(id);
        }
        if !all_placed {
            self.enqueue(id);
        }
        Ok(())
    }

    /// Tries every waiting workload again against the whole fleet. The control plane
    /// calls this once after [`Scheduler::restore`]-ing its state: capacity may have
    /// changed while it was down (a new fleet file, a node back).
    pub fn retry_all(&mut self, rng: &mut CoreRng) -> Vec<Decision> {
        let mut out = Vec::new();
        self.freed_nodes.extend(0..self.state.nodes.len() as u32);
        self.freed_sites.extend(0..self.state.sites.len() as u32);
        for c in &mut self.pq.classes {
            c.retry = true;
        }
        self.retry_pending(rng, &mut out);
        out
    }

    /// Applies one event. On `Err` the state is unchanged.
    pub fn handle(
        &mut self,
        now: Timestamp,
        event: Event,
        rng: &mut CoreRng,
    ) -> Result<Vec<Decision>, CoreError> {
        self.now = self.now.max(now);
        let mut out = Vec::new();
        if self.energy.advance(self.now) {
            self.recommit_energy(&mut out);
        }
        match event {
            Event::Arrival(w) => self.arrive(w, rng, &mut out),
            Event::Completion(id) | Event::Cancel(id) => {
                if !self.workloads.contains_key(&id) {
                    return Err(CoreError::UnknownWorkload(id));
                }
                self.dequeue(id);
                self.unreserve(id);
                self.release_all(id);
                self.workloads.remove(&id);
                out.push(Decision::Released { workload: id });
                self.retry_pending(rng, &mut out);
            }
            Event::NodeAdded(node) => {
                let models_before = self.state.models.len();
                let idx = self.state.add_node(node)?;
                if self.state.models.len() != models_before {
                    // A new model: classes naming it resolve again and are tried.
                    for c in 0..self.pq.classes.len() {
                        let names = self.pq.classes[c].model_names.clone();
                        if let Ok(set) = self.model_set(&names) {
                            self.pq.classes[c].key.set_models(set);
                        }
                        self.pq.classes[c].retry = true;
                    }
                }
                let f = self.flavour_of(idx.0 as usize);
                self.state.nodes[idx.0 as usize].flavour = f;
                self.refresh_caps();
                self.freed_nodes.insert(idx.0);
                self.retry_pending(rng, &mut out);
            }
            Event::NodeRemoved { node } => {
                let idx =
                    self.state.node_by_name(&node).ok_or_else(|| CoreError::UnknownNode(node.clone()))?;
                self.state.set_up(idx, false);
                let victims: Vec<WorkloadId> = self
                    .workloads
                    .iter()
                    .filter(|(_, e)| e.tasks.iter().flatten().any(|t| t.node == idx))
                    .map(|(id, _)| *id)
                    .collect();
                for id in victims {
                    self.evict(id, PreemptWhy::NodeLost { node: node.clone() }, &mut out);
                }
                self.retry_pending(rng, &mut out);
            }
            Event::NodeRestored { node } => {
                let idx =
                    self.state.node_by_name(&node).ok_or_else(|| CoreError::UnknownNode(node.clone()))?;
                self.state.set_up(idx, true);
                self.freed_nodes.insert(idx.0);
                self.retry_pending(rng, &mut out);
            }
            Event::BudgetChanged { site, budget } => {
                let s = self.state.sites.iter().position(|s| s.id == site).ok_or_else(|| {
                    let known: Vec<&str> = self.state.sites.iter().map(|s| s.id.as_str()).collect();
                    CoreError::UnknownSite(site.clone(), known.join(", "))
                })?;
                self.state.set_budget(s, budget);
                self.freed_sites.insert(s as u32);
                self.shed_site(s, budget, &mut out);
                self.retry_pending(rng, &mut out);
            }
            Event::Tick => {
                self.tick(rng, &mut out);
            }
        }
        Ok(out)
    }

    fn new_entry(&mut self, w: Workload, need: Need, seq: u64) -> Entry {
        let class = self.pq.class_of(&ClassKey::of(&need, w.shape), &w.demand.gpu_models);
        let tenant = self.tenant_index(&w.tenant);
        Entry {
            tasks: vec![None; w.shape.tasks() as usize],
            workload: w,
            need,
            seq,
            placed_seq: 0,
            youth: None,
            models_known: self.state.models.len(),
            class,
            tenant,
            started: None,
            charges: Vec::new(),
            power: Vec::new(),
            energy: Vec::new(),
            held: Vec::new(),
            waiting_since: self.now,
            aged: false,
        }
    }

    /// Puts a workload in the queue (both the global order and its class).
    pub(crate) fn enqueue(&mut self, id: WorkloadId) {
        let now = self.now;
        let Some(e) = self.workloads.get_mut(&id) else { return };
        let (t, c, slot) = (e.tenant, e.class, e.slot());
        if !self.queue.insert(slot) {
            return;
        }
        if e.workload.priority == PriorityClass::BestEffort && !e.aged {
            e.waiting_since = now;
            self.aging.insert((now, id));
        }
        let usage = &self.usage;
        self.pq.push(t, c, slot, |p| rank_in(usage, t, p));
    }

    /// Orders as standard every best-effort workload that has waited `age_after_s`
    /// (part of the periodic pass; its cost is the number that age).
    pub(crate) fn age_waiting(&mut self) {
        let after = self.config.backfill.age_after_s;
        if after == 0 {
            return;
        }
        let cutoff = Timestamp(
            self.now.0.saturating_sub(i64::try_from(after.saturating_mul(1000)).unwrap_or(i64::MAX)),
        );
        while let Some(&(since, id)) = self.aging.first() {
            if since > cutoff {
                break;
            }
            self.aging.pop_first();
            let Some(e) = self.workloads.get(&id) else { continue };
            // Stale: it left the queue (and may have come back later, with a later mark).
            if e.aged || e.waiting_since != since || !self.queue.contains(&e.slot()) {
                continue;
            }
            let class = e.class;
            self.dequeue(id);
            if let Some(e) = self.workloads.get_mut(&id) {
                e.aged = true;
            }
            self.enqueue(id);
            self.pq.classes[class as usize].retry = true;
        }
    }

    /// Tells the core since when a restored workload has waited (the control plane
    /// knows its submission time; [`Scheduler::restore`] counts from the restore), so
    /// that its priority ages as if nothing had stopped.
    pub fn restore_waiting_since(&mut self, id: WorkloadId, since: Timestamp) {
        let Some(e) = self.workloads.get_mut(&id) else { return };
        if e.aged || e.workload.priority != PriorityClass::BestEffort || since >= e.waiting_since {
            return;
        }
        e.waiting_since = since;
        self.aging.insert((since, id));
    }

    /// Takes a workload out of the queue, if it is there.
    pub(crate) fn dequeue(&mut self, id: WorkloadId) {
        let Some(e) = self.workloads.get(&id) else { return };
        let (t, c, slot) = (e.tenant, e.class, e.slot());
        if self.queue.remove(&slot) {
            let usage = &self.usage;
            self.pq.remove(t, c, slot, |p| rank_in(usage, t, p));
        }
    }

    pub(crate) fn note_running(&mut self, id: WorkloadId) {
        if let Some(e) = self.workloads.get_mut(&id) {
            let p = prio_index(e.workload.priority);
            self.running[p].insert(id);
            let (prio, t) = (e.workload.priority, e.tenant as usize);
            if self.by_tenant.len() <= t {
                self.by_tenant.resize_with(t + 1, BTreeSet::new);
            }
            if let Some(old) = e.youth.replace(e.placed_seq) {
                self.youngest[p].remove(&(Reverse(old), id));
                self.by_tenant[t].remove(&(prio, Reverse(old), id));
            }
            self.youngest[p].insert((Reverse(e.placed_seq), id));
            self.by_tenant[t].insert((prio, Reverse(e.placed_seq), id));
            for n in e.tasks.iter().flatten().map(|a| a.node.0 as usize) {
                if self.on_node.len() <= n {
                    self.on_node.resize_with(n + 1, Vec::new);
                }
                if !self.on_node[n].contains(&id) {
                    self.on_node[n].push(id);
                }
            }
        }
    }

    /// Releases every task of a workload and refunds its charges; the tenant's parked
    /// work may fit its quota again.
    pub(crate) fn release_all(&mut self, id: WorkloadId) -> Vec<NodeIdx> {
        let Some(e) = self.workloads.get_mut(&id) else { return Vec::new() };
        let mut freed = Vec::new();
        for t in e.tasks.iter_mut() {
            if let Some(alloc) = t.take() {
                self.state.release(&alloc);
                freed.push(alloc.node);
                if let Some(on) = self.on_node.get_mut(alloc.node.0 as usize) {
                    on.retain(|w| *w != id);
                }
            }
        }
        let charges = std::mem::take(&mut e.charges);
        let power = std::mem::take(&mut e.power);
        let energy = std::mem::take(&mut e.energy);
        let tenant = e.workload.tenant.clone();
        let (t, prio) = (e.tenant, e.workload.priority);
        e.started = None;
        self.running[prio_index(prio)].remove(&id);
        if let Some(old) = e.youth.take() {
            self.youngest[prio_index(prio)].remove(&(Reverse(old), id));
            if let Some(set) = self.by_tenant.get_mut(t as usize) {
                set.remove(&(prio, Reverse(old), id));
            }
        }
        let power_r = self.caps.len() - 1;
        let mut gpu_freed = 0u64;
        for (f, milli) in charges {
            if f != NO_FLAVOUR {
                self.quotas.charge(&tenant, f as usize, milli, false);
            }
            if let Some(r) = self.resource_of(f)
                && let Some(u) = self.usage.get_mut(t as usize)
            {
                u.now[r] = u.now[r].saturating_sub(milli);
            }
            gpu_freed += milli;
        }
        // What was committed past now is given back; what stays is what it held.
        let now = self.now;
        let unused: u64 =
            energy.iter().map(|(w, until)| crate::energy::watt_seconds_floor(*w, now, *until)).sum();
        self.energy.charge(&tenant, unused, false);
        for (site, watts) in power {
            self.quotas.charge_power(&tenant, site as usize, watts, false);
            if let Some(u) = self.usage.get_mut(t as usize) {
                u.now[power_r] = u.now[power_r].saturating_sub(watts);
            }
        }
        for n in &freed {
            self.note_freed(*n);
        }
        if !freed.is_empty() {
            self.refresh_share(t);
            let root = self.quotas.root(&tenant);
            let usage = &self.usage;
            self.pq.wake_own(t, root, |t, p| rank_in(usage, t, p));
            if let Some(root) = root {
                // Room freed in the tree: wake the best-ranked parked, about as many as
                // the freed GPUs could serve.
                let n = usize::try_from(gpu_freed.div_ceil(1000)).unwrap_or(usize::MAX).clamp(1, 64);
                self.pq.wake_tree(root, n, |t, p| rank_in(usage, t, p));
            }
        }
        freed
    }

    fn arrive(&mut self, w: Workload, rng: &mut CoreRng, out: &mut Vec<Decision>) {
        let id = w.id;
        if self.workloads.contains_key(&id) {
            out.push(Decision::Rejected { workload: id, why: RejectWhy::DuplicateId });
            return;
        }
        let need = match self.resolve(&w) {
            Ok(n) => n,
            Err(why) => {
                out.push(Decision::Rejected { workload: id, why });
                return;
            }
        };
        self.seq += 1;
        let entry = self.new_entry(w, need, self.seq);
        let (t, c) = (entry.tenant, entry.class);
        self.workloads.insert(id, entry);
        self.enqueue(id);
        // A tenant parked on quota in this class: this workload may be small enough.
        if self.pq.tenants[t as usize].rank.get(&c) == Some(&None) {
            match self.admission(id) {
                Err(q) => {
                    let tasks = self.workloads.get(&id).map_or(0, |e| e.workload.shape.tasks());
                    let why = PendingWhy { quota: Some(q), tasks_pending: tasks, ..PendingWhy::default() };
                    self.wait_or_drop(id, why, out);
                    return;
                }
                Ok(_) => {
                    let root = self.workloads.get(&id).and_then(|e| self.quotas.root(&e.workload.tenant));
                    let usage = &self.usage;
                    self.pq.wake_tenant(t, root, |t, p| rank_in(usage, t, p));
                }
            }
        }
        // Work of the same class ranked ahead failed at the last event and nothing freed
        // since: this one would fail too. Wait behind it.
        if let Some((_, head)) = self.pq.class_head(c)
            && head.2 != id
            && !self.pq.classes[c as usize].retry
        {
            let tasks = self.workloads.get(&id).map_or(0, |e| e.workload.shape.tasks());
            let why = PendingWhy { behind: Some(head.2), tasks_pending: tasks, ..PendingWhy::default() };
            self.wait_or_drop(id, why, out);
            return;
        }
        let evicted_before = out.iter().filter(|d| matches!(d, Decision::Preempted { .. })).count();
        let pending = self.try_place(id, None, true, rng, out);
        match pending {
            None => {}
            Some(why) => {
                if let Some(q) = &why.quota {
                    let root = self.workloads.get(&id).and_then(|e| self.quotas.root(&e.workload.tenant));
                    self.pq.park(t, c, root, q.on_tree());
                } else if why.tasks_placed == 0 {
                    self.pq.classes[c as usize].retry = false;
                    self.pq.classes[c as usize].power_blocked = blocked_by_power(&why);
                }
                self.wait_or_drop(id, why, out);
            }
        }
        // A preemption requeued its victims: they may fit elsewhere right away.
        if out.iter().filter(|d| matches!(d, Decision::Preempted { .. })).count() > evicted_before {
            self.retry_pending(rng, out);
        }
    }

    /// Reports a workload that waits, or drops it under the trace protocol.
    fn wait_or_drop(&mut self, id: WorkloadId, why: PendingWhy, out: &mut Vec<Decision>) {
        if self.config.drop_unschedulable {
            self.dequeue(id);
            self.release_all(id);
            self.workloads.remove(&id);
            out.push(Decision::Rejected { workload: id, why: RejectWhy::Unschedulable { why } });
        } else {
            out.push(Decision::Pending { workload: id, why });
        }
    }

    /// Checks a workload against the fleet and resolves its demand.
    pub(crate) fn resolve(&mut self, w: &Workload) -> Result<Need, RejectWhy> {
        let d = &w.demand;
        if !d.gpu.is_valid() {
            return Err(RejectWhy::InvalidDemand {
                message: format!(
                    "gpu: {} GPU(s) at {}/1000 each; use 1 GPU with a share of 1..=1000, or several whole GPUs (1000 each)",
                    d.gpu.count, d.gpu.milli_per_gpu.0
                ),
            });
        }
        if w.shape.tasks() == 0 {
            return Err(RejectWhy::InvalidDemand {
                message: "shape: a workload needs at least one task".into(),
            });
        }
        if let Some(limit) = w.time_limit
            && !(limit.0.is_finite() && limit.0 > 0.0)
        {
            return Err(RejectWhy::InvalidDemand {
                message: format!("time_limit: {} s; give a positive number of seconds", limit.0),
            });
        }
        let models = self.model_set(&d.gpu_models)?;
        let policy = self.effective_policy(w);
        let sites = self.site_mask(&policy);
        if sites.is_empty() {
            return Err(RejectWhy::NoSiteAllowed {
                data_class: w.data_class.to_string(),
                policy: policy.to_string(),
                excluded: self.state.sites.iter().filter_map(|s| policy.why_not(&s.law)).collect(),
            });
        }
        self.never_fits(w, sites)?;
        let need = Need {
            gpu_count: d.gpu.count,
            milli: d.gpu.milli_per_gpu,
            models,
            cpu: d.cpu,
            memory: d.memory,
            data_class: w.data_class,
            sites,
            admit: Admit::default(),
        };
        self.check_feasible(&need, &d.gpu_models, w.shape)?;
        Ok(need)
    }

    /// Whether `w` could ever run on this fleet: the checks an arrival gets, without
    /// queueing it. A restart uses it for the work the log still holds: a fleet that
    /// changed under the log may have made some of it impossible.
    ///
    /// # Errors
    /// Why it never could, as an arrival would be rejected.
    pub fn can_ever_run(&mut self, w: &Workload) -> Result<(), RejectWhy> {
        self.resolve(w).map(|_| ())
    }

    /// Rejects a task larger than every node at the sites its data may use (more GPUs,
    /// CPU or memory than the largest node has in total), as Slurm rejects a job that
    /// can never run.
    fn never_fits(&mut self, w: &Workload, sites: SiteMask) -> Result<(), RejectWhy> {
        let d = &w.demand;
        if self.largest.0 != self.state.nodes.len() {
            self.largest = (self.state.nodes.len(), largest_nodes(&self.state));
        }
        let (mut gpus, mut cpu, mut mem) =
            (0, gigawatt_units::MilliCores::ZERO, gigawatt_units::Mebibytes::ZERO);
        for (i, l) in self.largest.1.iter().enumerate() {
            if sites.contains(i as u32) {
                (gpus, cpu, mem) = (gpus.max(l.0), cpu.max(l.1), mem.max(l.2));
            }
        }
        if d.gpu.count > gpus || d.cpu > cpu || d.memory > mem {
            return Err(RejectWhy::NeverFits {
                message: format!(
                    "one task asks for {}, {} CPU and {} memory, but the largest node where {} data may run has {} GPUs, {} CPU and {} memory; split the work into more tasks or ask for less",
                    d.gpu, d.cpu, d.memory, w.data_class, gpus, cpu, mem
                ),
            });
        }
        Ok(())
    }

    /// Resolves allowed model names (catalog ids or aliases) to the cluster's model set.
    /// A model the catalog knows but the fleet does not have yet is simply absent.
    pub(crate) fn model_set(&self, names: &[String]) -> Result<ModelSet, RejectWhy> {
        if names.is_empty() {
            return Ok(ModelSet::ANY);
        }
        let mut bits = 0u128;
        for m in names {
            let Some(spec) = self.catalog.get(m) else {
                return Err(RejectWhy::UnknownGpuModel {
                    model: m.clone(),
                    known: self.catalog.ids().map(String::from).collect(),
                });
            };
            if let Some(i) = self.state.model_index(&spec.id).filter(|i| *i < 128) {
                bits |= 1u128 << i;
            }
        }
        Ok(ModelSet(bits))
    }

    pub(crate) fn state_mut(&mut self) -> &mut ClusterState {
        &mut self.state
    }

    /// Records that a node's capacity (and its rack's and site's power) grew.
    fn note_freed(&mut self, node: NodeIdx) {
        self.freed_nodes.insert(node.0);
        if let Some(n) = self.state.nodes.get(node.0 as usize) {
            self.freed_sites.insert(n.site);
        }
    }

    /// Tries waiting work again after capacity was freed. Only placements are reported:
    /// a workload that still waits was already reported pending.
    ///
    /// After every event, the head of every class has failed against the state as it
    /// is (or was placed). A node only turns from unfit to fit when its own capacity
    /// grows, or, when power was what turned nodes away, when power is freed in its rack
    /// or site. So only the classes for which one of the freed nodes has room are tried
    /// (plus power-blocked classes when power was freed, and classes marked for a
    /// retry), best head first; each stops at its first failure. Reservation owners whose
    /// nodes were freed are tried first: their nodes wait for them.
    pub(crate) fn retry_pending(&mut self, rng: &mut CoreRng, out: &mut Vec<Decision>) {
        self.explain_failures = false;
        let dirty: Vec<u32> = std::mem::take(&mut self.freed_nodes).into_iter().collect();
        let sites = std::mem::take(&mut self.freed_sites);
        // Distinct capacity shapes among the freed nodes: the gate compares classes to
        // these, not to every node.
        let mut shapes: Vec<u32> = Vec::new();
        type Shape = (u32, Option<u16>, u32, u32, u64, u64, bool);
        let mut seen: BTreeSet<Shape> = BTreeSet::new();
        for &n in &dirty {
            let Some(node) = self.state.nodes.get(n as usize) else { continue };
            if seen.insert((
                node.site,
                node.model,
                node.free_whole,
                node.max_free.0,
                node.cpu_free.0,
                node.mem_free.0,
                node.up,
            )) {
                shapes.push(n);
            }
        }
        let owners: Vec<WorkloadId> = self
            .reservations
            .iter()
            .filter(|(_, r)| r.nodes.iter().any(|n| dirty.binary_search(&n.0).is_ok()))
            .map(|(id, _)| *id)
            .collect();
        for id in owners {
            if self.queue.contains(
                &self.workloads.get(&id).map_or((Reverse(PriorityClass::BestEffort), 0, id), Entry::slot),
            ) {
                self.try_place(id, Some(&dirty), false, rng, out);
            }
        }
        let mut candidates: Vec<(Rank, u32)> = Vec::new();
        for &c in &self.pq.active {
            let class = &self.pq.classes[c as usize];
            let go = class.retry
                || (class.power_blocked && !sites.is_empty())
                || shapes
                    .iter()
                    .any(|n| self.state.has_room(&self.state.nodes[*n as usize], class.key.need()));
            if let (true, Some(first)) = (go, class.ready.first()) {
                candidates.push((*first, c));
            }
        }
        // One line across classes: the best-ranked head of any class goes next, so a
        // class whose heads are well served cannot take freed capacity from a class whose
        // head is owed more (a whole node freed goes to the 8-GPU job of the tenant with
        // the lowest share, not to the next 1-GPU jobs of tenants with more).
        let mut line: BinaryHeap<Reverse<(Rank, u32)>> = candidates.into_iter().map(Reverse).collect();
        let mut cursors: FxHashMap<u32, Cursor> = FxHashMap::default();
        while let Some(Reverse((rank, c))) = line.pop() {
            // Placements change tenants' shares, so an entry may be stale: put it back
            // with its class's head as it ranks now.
            let cursor = cursors.get(&c).copied().unwrap_or_default();
            match self.next_head(c, &cursor) {
                None => {
                    self.pq.classes[c as usize].retry = false;
                    continue;
                }
                Some(now) if now != rank => {
                    line.push(Reverse((now, c)));
                    continue;
                }
                Some(_) => {}
            }
            let full = self.pq.classes[c as usize].retry || self.pq.classes[c as usize].power_blocked;
            let cursor = cursors.entry(c).or_default();
            let mut cur = *cursor;
            let more = self.drain_step(c, &mut cur, if full { None } else { Some(&dirty) }, rng, out);
            cursors.insert(c, cur);
            if let Some(next) = more.then(|| self.next_head(c, &cur)).flatten() {
                line.push(Reverse((next, c)));
            } else {
                self.pq.classes[c as usize].retry = false;
            }
        }
        self.explain_failures = true;
    }

    /// The rank of the next head class `c` would try from `cursor`.
    fn next_head(&self, c: u32, cursor: &Cursor) -> Option<Rank> {
        let class = &self.pq.classes[c as usize];
        match cursor.after {
            None => class.ready.first(),
            Some(r) => class.ready.range((Bound::Excluded(r), Bound::Unbounded)).next(),
        }
        .copied()
    }

    /// Tries the next head of class `c`; whether the class may go on. A head its quota
    /// refuses parks its tenant; a head whose quota flavours alone turned nodes away lets
    /// the next tenant try (a few times per event); any other failure stops the class.
    fn drain_step(
        &mut self,
        c: u32,
        cursor: &mut Cursor,
        near: Option<&[u32]>,
        rng: &mut CoreRng,
        out: &mut Vec<Decision>,
    ) -> bool {
        let Some(rank) = self.next_head(c, cursor) else { return false };
        let Some(slot) = self.pq.head(rank.3, c) else { return false };
        let id = slot.2;
        let before = self.workloads.get(&id).map_or(0, Entry::placed);
        match self.try_place(id, near, false, rng, out) {
            None => true,
            Some(PendingWhy { quota: Some(q), .. }) => {
                let root = self.workloads.get(&id).and_then(|e| self.quotas.root(&e.workload.tenant));
                self.pq.park(rank.3, c, root, q.on_tree());
                true
            }
            Some(why) => {
                let placed_some = self.workloads.get(&id).map_or(0, Entry::placed) > before;
                let by_quota = why.nodes_fit == 0 && why.rejected.contains_key(&Reason::Quota);
                if by_quota && !placed_some && cursor.skips < FLAVOUR_SKIPS {
                    cursor.skips += 1;
                    cursor.after = Some(rank);
                    return true;
                }
                self.pq.classes[c as usize].power_blocked = blocked_by_power(&why);
                false
            }
        }
    }

    /// Drops a workload's reservation and frees its nodes for others.
    pub(crate) fn unreserve(&mut self, id: WorkloadId) {
        if let Some(e) = self.workloads.get_mut(&id) {
            let held = std::mem::take(&mut e.held);
            let tenant = e.workload.tenant.clone();
            for (f, amount) in held {
                self.quotas.charge(&tenant, f as usize, amount, false);
            }
        }
        if let Some(r) = self.reservations.remove(&id) {
            for n in r.nodes {
                if let Some(node) = self.state.nodes.get_mut(n.0 as usize)
                    && node.reserved.is_some_and(|(_, o)| o == id)
                {
                    node.reserved = None;
                    self.freed_nodes.insert(n.0);
                }
            }
        }
    }

    /// Running workloads of a priority class.
    pub(crate) fn running_of(&self, p: PriorityClass) -> &BTreeSet<WorkloadId> {
        &self.running[prio_index(p)]
    }

    /// The expected start of a waiting workload and the nodes planned for it, when a
    /// reservation holds them (`squeue --start`).
    #[must_use]
    pub fn expected_start(&self, id: WorkloadId) -> Option<(Timestamp, Vec<String>)> {
        let r = self.reservations.get(&id)?;
        Some((r.start, r.nodes.iter().map(|n| self.state.node(*n).name.clone()).collect()))
    }

    /// Why a waiting workload waits, in the queue's terms: its quota, the workloads of
    /// its tenant ahead of it, and its reservation. `None` when it does not wait.
    #[must_use]
    pub fn queue_position(&self, id: WorkloadId) -> Option<QueuePosition> {
        let e = self.workloads.get(&id)?;
        let slot = e.slot();
        if !self.queue.contains(&slot) {
            return None;
        }
        let tq = &self.pq.tenants[e.tenant as usize];
        let ahead_in_tenant = tq.by_class.values().map(|s| s.range(..slot).count()).sum::<usize>() as u32;
        let class = &self.pq.classes[e.class as usize];
        let tenants_ahead = match tq.rank.get(&e.class).copied().flatten() {
            Some(r) => class.ready.range(..r).count() as u32,
            None => class.ready.len() as u32,
        };
        Some(QueuePosition {
            ahead_in_tenant,
            tenants_ahead_in_class: tenants_ahead,
            parked_on_quota: tq.rank.get(&e.class) == Some(&None),
            quota: match self.admission(id) {
                Err(q) => Some(*q),
                Ok(admit) => self.energy_blocks(id, admit),
            },
            expected_start: self.expected_start(id),
        })
    }

    /// Counts for reports: classes, active classes, parked (tenant, class) pairs.
    #[must_use]
    pub fn queue_stats(&self) -> (usize, usize, usize) {
        (self.pq.classes.len(), self.pq.active.len(), self.pq.parked_count())
    }
}

/// A waiting workload's place in line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuePosition {
    /// Workloads of the same tenant ahead of it (higher priority or older).
    pub ahead_in_tenant: u32,
    /// Tenants ranked ahead of its tenant among those waiting with the same shape.
    pub tenants_ahead_in_class: u32,
    /// Whether its tenant is parked on quota for this shape.
    pub parked_on_quota: bool,
    /// What quota says now, when it refuses.
    pub quota: Option<QuotaWhy>,
    /// Its reservation's start and nodes, if it holds one.
    pub expected_start: Option<(Timestamp, Vec<String>)>,
}

/// Where a class's drain stands within one event: after which tenant's head it goes on
/// (heads skipped because only their quota flavours turned nodes away), and how many
/// were skipped.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cursor {
    after: Option<Rank>,
    skips: u32,
}

/// A tenant's rank for a head of priority `p`.
pub(crate) fn rank_in(usage: &[TenantUse], t: u32, p: PriorityClass) -> Rank {
    let (over, share) = usage.get(t as usize).map_or((false, 0), |u| (u.over, u.share));
    (Reverse(p), over, share, t)
}

/// The decay factor of past use over `dt` with half-life `half`.
pub(crate) fn decay(dt: Seconds, half: Seconds) -> f64 {
    if half.0 <= 0.0 { 0.0 } else { 0.5f64.powf(dt.0.max(0.0) / half.0) }
}

/// What a site holds against its budget: its reservation, or on an oversubscribed site its
/// floor (the power manager caps the rest).
pub(crate) fn held(state: &ClusterState, site: usize) -> Watts {
    let s = &state.sites[site];
    if state.oversubscribed(site) { s.floor } else { s.power }
}

/// Whether power limits turned any node away.
fn blocked_by_power(why: &PendingWhy) -> bool {
    why.rejected.contains_key(&Reason::RackPowerLimit) || why.rejected.contains_key(&Reason::SitePowerBudget)
}

#[cfg(test)]
mod tests {
    use gigawatt_units::{Mebibytes, MilliCores};
    use rand::SeedableRng;

    use super::*;
    use crate::workload::{DataClass, GpuDemand, Shape, TaskDemand, TenantId};
    use crate::{PolicyKind, TypicalPods};

    fn fleet() -> Fleet {
        let text = r#"
[node_type.box]
gpu_model = "H100-SXM"
gpus = 8
cpu_millicores = 64000
memory_mib = 1048576
base_power_w = 4600

[[site]]
id = "lab"
country = "FR"
region = "eu-fr"
pue = 1.2
grid = [{ from = 2026-01-01, capacity_mw = 1 }]
  [[site.rack_group]]
  prefix = "r"
  count = 1
  node_type = "box"
  nodes_per_rack = 1
"#;
        gigawatt_fleet::parse(text, "lab.toml", std::path::Path::new(".")).expect("valid fleet")
    }

    fn job(id: u64, priority: PriorityClass, gpus: u32) -> Workload {
        Workload {
            id: WorkloadId(id),
            name: format!("job-{id}"),
            tenant: TenantId("t".into()),
            priority,
            data_class: DataClass::Public,
            demand: TaskDemand {
                gpu: GpuDemand::whole(gpus),
                gpu_models: vec![],
                cpu: MilliCores(1000),
                memory: Mebibytes(1024),
            },
            shape: Shape::Single,
            duration: None,
            time_limit: None,
            pins: Default::default(),
        }
    }

    #[test]
    fn higher_priority_evicts_the_fewest_lowest_youngest_victims() {
        let f = fleet();
        let policy = PolicyKind::BestFit.build(&TypicalPods::default());
        // 2027: the site's grid phase (from 2026-01-01) is in force.
        let t = Timestamp::from_secs(1_800_000_000);
        let mut s = Scheduler::new(&f, policy, SchedulerConfig::default(), t).expect("scheduler");
        let mut rng = CoreRng::seed_from_u64(1);
        s.handle(t, Event::Arrival(job(1, PriorityClass::Standard, 4)), &mut rng).expect("ok");
        s.handle(t, Event::Arrival(job(2, PriorityClass::BestEffort, 2)), &mut rng).expect("ok");
        s.handle(t, Event::Arrival(job(3, PriorityClass::BestEffort, 2)), &mut rng).expect("ok");
        // The node is full; a latency-critical 2-GPU task evicts one best-effort job,
        // the youngest (3), and leaves the standard one alone.
        let d = s.handle(t, Event::Arrival(job(4, PriorityClass::LatencyCritical, 2)), &mut rng).expect("ok");
        assert!(
            matches!(
                &d[0],
                Decision::Preempted { workload: WorkloadId(3), why: PreemptWhy::Priority { .. } }
            ),
            "{d:?}"
        );
        assert!(matches!(&d[1], Decision::Placed { workload: WorkloadId(4), .. }), "{d:?}");
        assert_eq!(s.status(WorkloadId(3)), Some(WorkloadStatus::Pending));
        assert_eq!(s.status(WorkloadId(1)), Some(WorkloadStatus::Running));
        // Best effort never preempts.
        let d = s.handle(t, Event::Arrival(job(5, PriorityClass::BestEffort, 8)), &mut rng).expect("ok");
        assert!(matches!(&d[0], Decision::Pending { .. }), "{d:?}");
        let allocs: Vec<&TaskAlloc> = s.all_allocations().map(|(_, a)| a).collect();
        s.state().audit(allocs).expect("counters consistent");
    }
}
