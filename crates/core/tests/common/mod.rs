//! Shared helpers for the core's integration tests: fleets from TOML text, a workload
//! builder, and a harness that feeds events to a [`Scheduler`] and, after every event,
//! checks the core's promises against an oracle of its own.
//!
//! The oracle does not trust the core's bookkeeping: it reads capacities, power limits,
//! budgets, countries and certifications from the [`Fleet`], tracks node up/down and
//! budget changes from the events it saw, re-derives usage and power from
//! [`Scheduler::all_allocations`], and applies the data-residency rules from their
//! definition. [`ClusterState::audit`] is run as well.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use gigawatt_core::state::{NewNode, TaskAlloc};
use gigawatt_core::{
    ClusterState, CoreError, CoreRng, DataClass, Decision, Event, GpuDemand, PolicyKind, PreemptWhy,
    PriorityClass, Scheduler, SchedulerConfig, Shape, TaskDemand, TaskPlacement, TenantId, Topology,
    TypicalPod, TypicalPods, Workload, WorkloadId, WorkloadStatus,
};
use gigawatt_fleet::{Certification, Fleet, GpuCatalog, ResidencyRule};
use gigawatt_units::{GpuMilli, Mebibytes, MilliCores, Timestamp, Watts};
use rand::SeedableRng;

/// 2026-06-01T00:00:00Z: every grid phase of the test fleets (from 2026-01-01) is in force.
pub const NOW: Timestamp = Timestamp(1_780_272_000_000);

/// 2026-09-01T00:00:00Z: every site of `fleets/france.toml` is connected (Inzai's grid
/// phase starts on 2026-07-01).
pub const FRANCE_NOW: Timestamp = Timestamp(1_788_220_800_000);

/// Parses fleet TOML, panicking with every diagnostic if it is invalid.
pub fn fleet(text: &str) -> Fleet {
    match gigawatt_fleet::parse(text, "test.toml", Path::new(".")) {
        Ok(f) => f,
        Err(e) => panic!("test fleet does not parse:\n{e}\n--- fleet ---\n{text}"),
    }
}

/// One French site (HDS and SecNumCloud), 2 racks of 2 HGX H100 nodes in one InfiniBand
/// island, 1 MW of grid at PUE 1.0: `lab-r01-n01`, `lab-r01-n02`, `lab-r02-n01`,
/// `lab-r02-n02`.
pub const LAB: &str = r#"
[node_type.hgx]
gpu_model = "H100-SXM"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 4600

[[site]]
id = "lab"
country = "FR"
region = "eu-fr"
certifications = ["hds", "secnumcloud"]
pue = 1.0
grid = [{ from = 2026-01-01, capacity_mw = 1 }]

  [[site.rack_group]]
  prefix = "lab-r"
  count = 2
  node_type = "hgx"
  nodes_per_rack = 2
  network_domain = "lab-ib"
"#;

/// The bundled French fleet.
pub fn france() -> Fleet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fleets/france.toml");
    gigawatt_fleet::load(&path).expect("fleets/france.toml loads")
}

/// A typical workload for FGD: a mix of whole-GPU, shared-GPU and CPU-only tasks.
pub fn typical_pods() -> TypicalPods {
    let pod = |cpu: u64, milli: u32, count: u32, occurrences: u64| TypicalPod {
        cpu: MilliCores(cpu),
        milli: GpuMilli(milli),
        count,
        models: Vec::new(),
        occurrences,
    };
    TypicalPods {
        pods: vec![
            pod(8_000, 1000, 1, 40),
            pod(4_000, 500, 1, 25),
            pod(16_000, 1000, 4, 15),
            pod(2_000, 250, 1, 10),
            pod(4_000, 0, 0, 10),
        ],
    }
}

/// A workload under construction; [`job`] starts one.
#[derive(Debug, Clone)]
pub struct W(pub Workload);

/// A standard-priority, public, single-task workload asking for one whole GPU of any
/// model, 4 cores and 16 GiB.
pub fn job(id: u64) -> W {
    W(Workload {
        id: WorkloadId(id),
        name: format!("job-{id}"),
        tenant: TenantId("acme".into()),
        priority: PriorityClass::Standard,
        data_class: DataClass::Public,
        demand: TaskDemand {
            gpu: GpuDemand::whole(1),
            gpu_models: Vec::new(),
            cpu: MilliCores(4_000),
            memory: Mebibytes(16_384),
        },
        shape: Shape::Single,
        duration: None,
        time_limit: None,
        pins: Default::default(),
    })
}

impl W {
    /// A time limit, in seconds.
    pub fn limit(mut self, secs: f64) -> W {
        self.0.time_limit = Some(gigawatt_units::Seconds(secs));
        self
    }

    /// Another tenant.
    pub fn tenant(mut self, t: &str) -> W {
        self.0.tenant = TenantId(t.into());
        self
    }

    /// `n` whole GPUs per task (0: none).
    pub fn gpus(mut self, n: u32) -> W {
        self.0.demand.gpu = GpuDemand::whole(n);
        self
    }
    /// A share of one GPU per task, in thousandths.
    pub fn share(mut self, milli: u32) -> W {
        self.0.demand.gpu = GpuDemand::shared(GpuMilli(milli));
        self
    }
    /// A GPU demand exactly as given, valid or not.
    pub fn raw_gpu(mut self, count: u32, milli: u32) -> W {
        self.0.demand.gpu = GpuDemand { count, milli_per_gpu: GpuMilli(milli) };
        self
    }
    /// Allowed GPU models.
    pub fn models(mut self, models: &[&str]) -> W {
        self.0.demand.gpu_models = models.iter().map(|m| (*m).to_string()).collect();
        self
    }
    /// CPU per task, in whole cores.
    pub fn cores(mut self, n: u64) -> W {
        self.0.demand.cpu = MilliCores(n * 1000);
        self
    }
    /// Memory per task, in GiB.
    pub fn gib(mut self, n: u64) -> W {
        self.0.demand.memory = Mebibytes(n * 1024);
        self
    }
    /// A gang of `tasks` under `topology`.
    pub fn gang(mut self, tasks: u32, topology: Topology) -> W {
        self.0.shape = Shape::Gang { tasks, topology };
        self
    }
    /// A service of `replicas`.
    pub fn service(mut self, replicas: u32) -> W {
        self.0.shape = Shape::Service { replicas };
        self
    }
    /// Data class.
    pub fn class(mut self, c: DataClass) -> W {
        self.0.data_class = c;
        self
    }
    /// Placement pins (a job file's `placement`).
    pub fn pins(mut self, pins: ResidencyRule) -> W {
        self.0.pins = pins;
        self
    }
    /// Priority class.
    pub fn prio(mut self, p: PriorityClass) -> W {
        self.0.priority = p;
        self
    }
    /// The workload.
    pub fn build(self) -> Workload {
        self.0
    }
    /// Its arrival event.
    pub fn arrival(self) -> Event {
        Event::Arrival(self.0)
    }
}

/// What a check is about, so that each property can insist on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// GPU/CPU/memory capacity, rack limits, site budgets, power accounting, `audit`,
    /// and shedding order after a budget cut.
    Budget,
    /// Gangs: all tasks placed or none, inside their topology group.
    Gang,
    /// Data residency.
    Residency,
    /// The queue: each waiting workload listed once, in priority then arrival order.
    Queue,
    /// A failed event leaves everything as it was.
    Unchanged,
    /// Decisions agree with the state they leave behind (statuses, placements, victims).
    Decisions,
    /// No capacity is left idle: a waiting task that is not part of a gang fits on no
    /// node (the core retries the queue whenever capacity is freed).
    Liveness,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 7] = [
        Kind::Budget,
        Kind::Gang,
        Kind::Residency,
        Kind::Queue,
        Kind::Unchanged,
        Kind::Decisions,
        Kind::Liveness,
    ];
}

#[derive(Debug, Clone)]
struct NodeInfo {
    site: usize,
    rack: String,
    domain: String,
    model: Option<String>,
    gpus: u32,
    cpu: MilliCores,
    memory: Mebibytes,
    base: Watts,
    tdp: Watts,
    idle: Watts,
    /// Lowest power limit of its GPUs (between idle and TDP).
    min: Watts,
}

impl NodeInfo {
    /// What the node draws at most with every allocated GPU at its lowest power limit
    /// (a GPU never draws more than its limit, nor more than its share).
    fn floor(&self, tasks: u32, used: &BTreeMap<u16, u32>) -> Watts {
        if tasks == 0 {
            return Watts::ZERO;
        }
        let per_gpu = |g: u32| {
            let milli = used.get(&(g as u16)).copied().unwrap_or(0);
            if milli == 0 {
                self.idle
            } else {
                (self.idle + (self.tdp - self.idle).scaled_milli(milli)).min(self.min)
            }
        };
        self.base + (0..self.gpus).map(per_gpu).sum::<Watts>()
    }

    /// The most one more task of `count` GPUs and `total` thousandths may add to the floor.
    fn floor_increase_bound(&self, tasks: u32, count: u32, total: u32) -> Watts {
        let start =
            if tasks == 0 { self.base + Watts(self.idle.0 * u64::from(self.gpus)) } else { Watts::ZERO };
        let to_min = Watts((self.min - self.idle).0 * u64::from(count));
        start + (self.tdp - self.idle).scaled_milli(total).min(to_min)
    }

    /// The reservation rule, written independently of the core: base power while busy,
    /// and per GPU its idle draw plus its allocated share of the rest of its TDP.
    fn reservation(&self, tasks: u32, used: &BTreeMap<u16, u32>) -> Watts {
        if tasks == 0 {
            return Watts::ZERO;
        }
        let per_gpu = |g: u32| {
            let milli = used.get(&(g as u16)).copied().unwrap_or(0);
            self.idle + (self.tdp - self.idle).scaled_milli(milli)
        };
        self.base + (0..self.gpus).map(per_gpu).sum::<Watts>()
    }

    /// The most one more task of `total` thousandths may add, whichever GPUs it gets.
    fn increase_bound(&self, tasks: u32, total: u32) -> Watts {
        let start =
            if tasks == 0 { self.base + Watts(self.idle.0 * u64::from(self.gpus)) } else { Watts::ZERO };
        start + (self.tdp - self.idle).scaled_milli(total)
    }
}

#[derive(Debug, Clone)]
struct SiteInfo {
    id: String,
    country: String,
    certs: BTreeSet<Certification>,
    jurisdiction: String,
    budget: Watts,
    /// Reservations admitted beyond a limit, in thousandths (0: reserved).
    over_milli: u64,
}

impl SiteInfo {
    /// The most reservation a limit of this site admits.
    fn admits(&self, limit: Watts) -> Watts {
        if self.over_milli == 0 { limit } else { limit + limit.scaled_milli(self.over_milli as u32) }
    }
}

/// The 27 EU member states plus Iceland, Liechtenstein and Norway, written out here
/// rather than taken from the fleet crate, so that the oracle is independent.
const EU_EEA: [&str; 30] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT",
    "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

/// The residency rules, from their definition.
pub fn residency_allows(country: &str, certs: &BTreeSet<Certification>, class: DataClass) -> bool {
    let eu = EU_EEA.contains(&country);
    match class {
        DataClass::Public => true,
        DataClass::Personal => eu,
        DataClass::Health => eu && certs.contains(&Certification::Hds),
        DataClass::Sensitive => country == "FR" && certs.contains(&Certification::Secnumcloud),
    }
}

/// Whether a site meets a residency rule, written independently of the fleet crate.
fn rule_allows(r: &ResidencyRule, s: &SiteInfo) -> bool {
    let in_group = |c: &str| match c {
        "EEA" => EU_EEA.contains(&s.country.as_str()),
        "EU" => EU_EEA.contains(&s.country.as_str()) && !["IS", "LI", "NO"].contains(&s.country.as_str()),
        code => code == s.country,
    };
    r.sites.as_ref().is_none_or(|v| v.contains(&s.id))
        && r.countries.as_ref().is_none_or(|v| v.iter().any(|c| in_group(c)))
        && r.certifications.iter().all(|c| s.certs.contains(c))
        && r.jurisdictions.as_ref().is_none_or(|v| v.contains(&s.jurisdiction))
}

/// Everything a failed event must leave untouched.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    state: ClusterState,
    allocs: Vec<(WorkloadId, TaskAlloc)>,
    pending: Vec<WorkloadId>,
}

/// A scheduler plus the oracle that checks it after every event.
pub struct Harness {
    /// The fleet it was built from.
    pub fleet: Fleet,
    /// The scheduler under test.
    pub sched: Scheduler,
    /// Its randomness.
    pub rng: CoreRng,
    /// The time handed to every event.
    pub now: Timestamp,
    /// Kinds of violation that panic at once; the others are only recorded.
    pub fatal: BTreeSet<Kind>,
    /// Every violation seen: event number, kind, description.
    pub violations: Vec<(usize, Kind, String)>,
    /// Every event handled (and every policy change or restart), for failure messages.
    pub history: Vec<String>,
    /// Tenants' residency policies in force.
    pub tenant_rules: BTreeMap<String, ResidencyRule>,
    /// Workloads the scheduler holds (arrived, not rejected, not released), by id.
    pub live: BTreeMap<WorkloadId, Workload>,
    /// Node names in scheduler order (the fleet's, then added ones).
    pub node_names: Vec<String>,
    /// Rack ids in fleet order.
    pub rack_ids: Vec<String>,
    /// Site ids in fleet order.
    pub site_ids: Vec<String>,
    /// Nodes that are down now.
    pub down: BTreeSet<String>,
    /// Whether the scheduler may preempt for priority.
    preemption: bool,
    policy: PolicyKind,
    config: SchedulerConfig,
    catalog: GpuCatalog,
    nodes: BTreeMap<String, NodeInfo>,
    racks: BTreeMap<String, (usize, String, Watts)>,
    sites: Vec<SiteInfo>,
    arrival_seq: BTreeMap<WorkloadId, u64>,
    placed_seq: BTreeMap<WorkloadId, u64>,
    counter: u64,
}

impl Harness {
    /// A harness over `fleet` with `policy` (FGD gets [`typical_pods`]), seeded RNG,
    /// budgets as of [`NOW`].
    pub fn new(fleet: Fleet, policy: PolicyKind, seed: u64) -> Harness {
        Harness::at(fleet, policy, seed, NOW)
    }

    /// Like [`Harness::new`] at a given time.
    pub fn at(fleet: Fleet, policy: PolicyKind, seed: u64, now: Timestamp) -> Harness {
        Harness::configured(fleet, policy, seed, now, SchedulerConfig::default())
    }

    /// Like [`Harness::at`] with a scheduler configuration.
    pub fn configured(
        fleet: Fleet,
        policy: PolicyKind,
        seed: u64,
        now: Timestamp,
        config: SchedulerConfig,
    ) -> Harness {
        let sched =
            Scheduler::new(&fleet, policy.build(&typical_pods()), config, now).expect("scheduler builds");
        let mut nodes = BTreeMap::new();
        let mut racks = BTreeMap::new();
        let mut sites = Vec::new();
        let mut node_names = Vec::new();
        let mut rack_ids = Vec::new();
        for (si, site) in fleet.sites.iter().enumerate() {
            sites.push(SiteInfo {
                id: site.id.clone(),
                country: site.country.0.clone(),
                certs: site.certifications.clone(),
                jurisdiction: site.jurisdiction.clone(),
                budget: site.it_budget_at(now),
                over_milli: (site.provisioning.ratio() * 1000.0).round() as u64,
            });
            for rack in &site.racks {
                rack_ids.push(rack.id.clone());
                racks.insert(rack.id.clone(), (si, rack.network_domain.clone(), rack.power_limit));
                for node in &rack.nodes {
                    let spec = node.gpu_model.as_deref().and_then(|m| fleet.catalog.get(m));
                    node_names.push(node.name.clone());
                    nodes.insert(
                        node.name.clone(),
                        NodeInfo {
                            site: si,
                            rack: rack.id.clone(),
                            domain: rack.network_domain.clone(),
                            model: spec.map(|s| s.id.clone()),
                            gpus: node.gpu_count,
                            cpu: node.cpu,
                            memory: node.memory,
                            base: node.base_power,
                            tdp: spec.map_or(Watts::ZERO, |s| s.tdp),
                            idle: spec.map_or(Watts::ZERO, |s| s.idle),
                            min: spec
                                .map_or(Watts::ZERO, |s| s.min_power_limit.clamp(s.idle.min(s.tdp), s.tdp)),
                        },
                    );
                }
            }
        }
        let site_ids = sites.iter().map(|s| s.id.clone()).collect();
        Harness {
            catalog: fleet.catalog.clone(),
            fleet,
            sched,
            rng: CoreRng::seed_from_u64(seed),
            now,
            fatal: Kind::ALL.into_iter().collect(),
            violations: Vec::new(),
            history: Vec::new(),
            tenant_rules: BTreeMap::new(),
            live: BTreeMap::new(),
            node_names,
            rack_ids,
            site_ids,
            down: BTreeSet::new(),
            preemption: config.priority_preemption,
            policy,
            config,
            nodes,
            racks,
            sites,
            arrival_seq: BTreeMap::new(),
            placed_seq: BTreeMap::new(),
            counter: 0,
        }
    }

    /// A harness over fleet TOML with best-fit and seed 7.
    pub fn toml(text: &str) -> Harness {
        Harness::new(fleet(text), PolicyKind::BestFit, 7)
    }

    /// Only these kinds panic; the others are recorded in `violations`.
    pub fn only_fatal(mut self, kinds: &[Kind]) -> Harness {
        self.fatal = kinds.iter().copied().collect();
        self
    }

    /// Every check panics at once except `kind`, which the test asserts itself.
    pub fn fatal_except(self, kind: Kind) -> Harness {
        let rest: Vec<Kind> = Kind::ALL.into_iter().filter(|k| *k != kind).collect();
        self.only_fatal(&rest)
    }

    /// The IT budget the oracle expects for a site.
    pub fn budget(&self, site: &str) -> Watts {
        self.sites.iter().find(|s| s.id == site).map_or(Watts::ZERO, |s| s.budget)
    }

    /// Applies an event and checks everything; panics on a violation of a fatal kind.
    pub fn handle(&mut self, event: Event) -> Result<Vec<Decision>, CoreError> {
        let before = self.snapshot();
        let shed_order = match &event {
            Event::BudgetChanged { site, .. } => Some(self.shed_order(site)),
            _ => None,
        };
        let on_node: Option<BTreeSet<WorkloadId>> = match &event {
            Event::NodeRemoved { node } => Some(self.workloads_on(|n, _| n == node)),
            _ => None,
        };
        let site_power_before: Option<Watts> = match &event {
            Event::BudgetChanged { site, .. } => {
                let state = self.sched.state();
                let i = state.sites.iter().position(|s| s.id == *site);
                // An oversubscribed site holds its floor against the budget.
                i.map(|i| if state.oversubscribed(i) { state.sites[i].floor } else { state.sites[i].power })
            }
            _ => None,
        };
        self.history.push(format!("{event:?}"));
        let result = self.sched.handle(self.now, event.clone(), &mut self.rng);
        match &result {
            Err(_) => {
                let after = self.snapshot();
                if after != before {
                    self.report(Kind::Unchanged, "a failed event changed the state".into());
                }
            }
            Ok(decisions) => {
                self.learn(&event, decisions);
                self.check_decisions(&event, decisions, on_node, shed_order, site_power_before);
            }
        }
        self.check_state();
        result
    }

    /// Applies an event that must succeed.
    pub fn ok(&mut self, event: Event) -> Vec<Decision> {
        let shown = format!("{event:?}");
        match self.handle(event) {
            Ok(d) => d,
            Err(e) => panic!("event {shown} failed: {e}"),
        }
    }

    /// Submits a workload.
    pub fn arrive(&mut self, w: W) -> Vec<Decision> {
        self.ok(w.arrival())
    }

    /// Nodes holding tasks of `id`, task by task (`None` for a waiting task).
    pub fn placement(&self, id: u64) -> Vec<Option<String>> {
        self.sched
            .allocations(WorkloadId(id))
            .unwrap_or_default()
            .iter()
            .map(|t| t.as_ref().map(|a| self.sched.state().node(a.node).name.clone()))
            .collect()
    }

    /// The rack of a node.
    pub fn rack_of(&self, node: &str) -> String {
        self.nodes[node].rack.clone()
    }

    /// The network domain of a node.
    pub fn domain_of(&self, node: &str) -> String {
        self.nodes[node].domain.clone()
    }

    /// The site id of a node.
    pub fn site_of(&self, node: &str) -> String {
        self.sites[self.nodes[node].site].id.clone()
    }

    /// Power reserved at a site, as the core counts it.
    pub fn site_power(&self, site: &str) -> Watts {
        self.sched.state().sites.iter().find(|s| s.id == site).map_or(Watts::ZERO, |s| s.power)
    }

    /// Whether `w` may be at `site` under the operator's rule for its class (the
    /// documented defaults, checked from their definition, when the fleet keeps them),
    /// its tenant's policy and its own pins.
    fn allowed(&self, w: &Workload, site: &SiteInfo) -> bool {
        let operator = match w.data_class {
            DataClass::Public => &self.fleet.residency.public,
            DataClass::Personal => &self.fleet.residency.personal,
            DataClass::Health => &self.fleet.residency.health,
            DataClass::Sensitive => &self.fleet.residency.sensitive,
        };
        let defaults = self.fleet.residency == gigawatt_fleet::ResidencyRules::default();
        (!defaults || residency_allows(&site.country, &site.certs, w.data_class))
            && rule_allows(operator, site)
            && self.tenant_rules.get(&w.tenant.0).is_none_or(|r| rule_allows(r, site))
            && rule_allows(&w.pins, site)
    }

    /// Puts a tenant's residency policy in force and checks everything: only that
    /// tenant's work is evicted (for residency) or rejected, and nothing is left outside
    /// its new effective policy.
    pub fn set_policy(&mut self, tenant: &str, rule: ResidencyRule) -> Vec<Decision> {
        self.history.push(format!("set policy of {tenant}: {rule:?}"));
        let decisions = self.sched.set_tenant_policy(&TenantId(tenant.into()), rule.clone(), &mut self.rng);
        if rule.is_anywhere() {
            self.tenant_rules.remove(tenant);
        } else {
            self.tenant_rules.insert(tenant.to_string(), rule);
        }
        for d in &decisions {
            let owner = |id: &WorkloadId| self.live.get(id).map(|w| w.tenant.0.clone());
            match d {
                Decision::Preempted { workload, why } => {
                    let residency = matches!(why, PreemptWhy::Residency { .. });
                    // Priority preemption by work placed in the same pass is fine.
                    if residency && owner(workload).as_deref() != Some(tenant) {
                        self.report(Kind::Decisions, format!("{workload} of another tenant evicted: {d}"));
                    }
                }
                Decision::Rejected { workload, .. } => {
                    if owner(workload).as_deref() != Some(tenant) {
                        self.report(Kind::Decisions, format!("{workload} of another tenant rejected: {d}"));
                    }
                    self.live.remove(workload);
                }
                Decision::Placed { workload, .. } => {
                    self.counter += 1;
                    self.placed_seq.insert(*workload, self.counter);
                }
                _ => {}
            }
        }
        self.check_state();
        decisions
    }

    /// Restarts the scheduler on `fleet` (the same nodes; certifications may differ), as
    /// the control plane does: policies, nodes down and budgets first, then every live
    /// workload restored in submission order where the log placed it, or requeued whole
    /// when the fleet no longer allows it there; then the queue is retried. `None` (and
    /// nothing done) when nodes were added since the start.
    pub fn restart(&mut self, fleet: Fleet) -> Option<Vec<Decision>> {
        let names: BTreeSet<String> = fleet.nodes().map(|(_, _, n)| n.name.clone()).collect();
        if names.len() != self.node_names.len() || self.node_names.iter().any(|n| !names.contains(n)) {
            return None;
        }
        self.history.push("restart".into());
        let mut sched = Scheduler::new(&fleet, self.policy.build(&typical_pods()), self.config, self.now)
            .expect("scheduler builds");
        for (t, r) in &self.tenant_rules {
            sched.set_tenant_policy(&TenantId(t.clone()), r.clone(), &mut self.rng);
        }
        for node in &self.down {
            sched
                .handle(self.now, Event::NodeRemoved { node: node.clone() }, &mut self.rng)
                .expect("known node");
        }
        for (i, site) in fleet.sites.iter().enumerate() {
            if site.it_budget_at(self.now) != self.sites[i].budget {
                let event = Event::BudgetChanged { site: site.id.clone(), budget: self.sites[i].budget };
                sched.handle(self.now, event, &mut self.rng).expect("known site");
            }
        }
        let mut order: Vec<(u64, WorkloadId)> =
            self.live.keys().map(|id| (self.arrival_seq.get(id).copied().unwrap_or(0), *id)).collect();
        order.sort_unstable();
        let state = self.sched.state();
        let mut out = Vec::new();
        for (_, id) in order {
            let w = self.live[&id].clone();
            let tasks: Vec<Option<TaskPlacement>> = self
                .sched
                .allocations(id)
                .unwrap_or(&[])
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    a.as_ref().map(|a| TaskPlacement {
                        task: i as u32,
                        node: state.node(a.node).name.clone(),
                        gpus: a.gpus.clone(),
                        power: Watts::ZERO,
                    })
                })
                .collect();
            // As the control plane does: work the new fleet never allows is rejected.
            if let Err(why) = sched.can_ever_run(&w) {
                self.live.remove(&id);
                out.push(Decision::Rejected { workload: id, why });
                continue;
            }
            match sched.restore(w.clone(), &tasks) {
                Ok(()) => {
                    if tasks.iter().any(Option::is_some) {
                        self.counter += 1;
                        self.placed_seq.insert(id, self.counter);
                    }
                }
                Err(e) => {
                    if let CoreError::Residency { .. } = e {
                        out.push(Decision::Preempted {
                            workload: id,
                            why: PreemptWhy::NodeLost { node: String::new() },
                        });
                    }
                    let waiting = vec![None; tasks.len()];
                    sched.restore(w, &waiting).expect("a waiting workload restores");
                }
            }
        }
        self.sched = sched;
        for (i, site) in fleet.sites.iter().enumerate() {
            self.sites[i].certs = site.certifications.clone();
            self.sites[i].jurisdiction = site.jurisdiction.clone();
        }
        self.fleet = fleet;
        let decisions = self.sched.retry_all(&mut self.rng);
        for d in &decisions {
            if let Decision::Placed { workload, .. } = d {
                self.counter += 1;
                self.placed_seq.insert(*workload, self.counter);
            }
        }
        out.extend(decisions);
        self.check_state();
        Some(out)
    }

    /// A readable account of the events so far.
    pub fn story(&self) -> String {
        let mut s = String::new();
        for (i, e) in self.history.iter().enumerate() {
            let _ = writeln!(s, "  #{i}: {e}");
        }
        s
    }

    fn report(&mut self, kind: Kind, msg: String) {
        let at = self.history.len().saturating_sub(1);
        if self.fatal.contains(&kind) {
            panic!("{kind:?} violated after event #{at}: {msg}\nevents:\n{}", self.story());
        }
        self.violations.push((at, kind, msg));
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.sched.state().clone(),
            allocs: self.sched.all_allocations().map(|(w, a)| (w.id, a.clone())).collect(),
            pending: self.sched.pending().collect(),
        }
    }

    /// Live workloads with a task on a node matching `pred(name, info)`.
    fn workloads_on(&self, pred: impl Fn(&str, &NodeInfo) -> bool) -> BTreeSet<WorkloadId> {
        self.sched
            .all_allocations()
            .filter(|(_, a)| {
                let name = &self.sched.state().node(a.node).name;
                self.nodes.get(name).is_some_and(|info| pred(name, info))
            })
            .map(|(w, _)| w.id)
            .collect()
    }

    /// The order in which a budget cut at `site` must shed: workloads with a task there,
    /// lowest priority first, most recently placed first within a priority.
    fn shed_order(&self, site: &str) -> Vec<WorkloadId> {
        let Some(si) = self.sites.iter().position(|s| s.id == site) else {
            return Vec::new();
        };
        let mut v: Vec<(PriorityClass, Reverse<u64>, WorkloadId)> = self
            .workloads_on(|_, info| info.site == si)
            .into_iter()
            .map(|id| (self.live[&id].priority, Reverse(self.placed_seq.get(&id).copied().unwrap_or(0)), id))
            .collect();
        v.sort();
        v.into_iter().map(|(_, _, id)| id).collect()
    }

    /// Updates the oracle's view of the world from a successful event.
    fn learn(&mut self, event: &Event, decisions: &[Decision]) {
        match event {
            Event::Arrival(w) => {
                let rejected = decisions
                    .iter()
                    .any(|d| matches!(d, Decision::Rejected { workload, .. } if *workload == w.id));
                if !rejected {
                    self.counter += 1;
                    self.live.insert(w.id, w.clone());
                    self.arrival_seq.insert(w.id, self.counter);
                }
            }
            Event::Completion(id) | Event::Cancel(id) => {
                self.live.remove(id);
            }
            Event::NodeAdded(n) => self.learn_node(n),
            Event::NodeRemoved { node } => {
                self.down.insert(node.clone());
            }
            Event::NodeRestored { node } => {
                self.down.remove(node);
            }
            Event::BudgetChanged { site, budget } => {
                if let Some(s) = self.sites.iter_mut().find(|s| s.id == *site) {
                    s.budget = *budget;
                }
            }
            Event::Tick => {}
        }
        for d in decisions {
            if let Decision::Placed { workload, .. } = d {
                self.counter += 1;
                self.placed_seq.insert(*workload, self.counter);
            }
        }
    }

    fn learn_node(&mut self, n: &NewNode) {
        let Some((site, domain, _)) = self.racks.get(&n.rack).cloned() else {
            return;
        };
        let spec = n
            .gpu_model
            .as_ref()
            .filter(|_| n.gpu_count > 0)
            .map(|m| (m.id.clone(), m.tdp, m.idle, m.min_limit));
        self.node_names.push(n.name.clone());
        self.nodes.insert(
            n.name.clone(),
            NodeInfo {
                site,
                rack: n.rack.clone(),
                domain,
                model: spec.as_ref().map(|s| s.0.clone()),
                gpus: n.gpu_count,
                cpu: n.cpu,
                memory: n.memory,
                base: n.base_power,
                tdp: spec.as_ref().map_or(Watts::ZERO, |s| s.1),
                idle: spec.as_ref().map_or(Watts::ZERO, |s| s.2),
                min: spec.as_ref().map_or(Watts::ZERO, |s| {
                    let min = if s.3 == Watts::ZERO { s.1 } else { s.3 };
                    min.clamp(s.2.min(s.1), s.1)
                }),
            },
        );
    }

    fn check_decisions(
        &mut self,
        event: &Event,
        decisions: &[Decision],
        on_node: Option<BTreeSet<WorkloadId>>,
        shed_order: Option<Vec<WorkloadId>>,
        site_power_before: Option<Watts>,
    ) {
        let mut problems: Vec<(Kind, String)> = Vec::new();
        // Priority preemptions may follow any event that places work: each must be for a
        // workload of a strictly higher class (never best effort) that this event places.
        let is_priority =
            |d: &Decision| matches!(d, Decision::Preempted { why: PreemptWhy::Priority { .. }, .. });
        for (i, d) in decisions.iter().enumerate() {
            let Decision::Preempted { workload, why: PreemptWhy::Priority { by, class } } = d else {
                continue;
            };
            let victim = self.live.get(workload).map(|w| w.priority);
            let preemptor = self.live.get(by).map(|w| w.priority);
            let placed_after =
                decisions[i..].iter().any(|d| matches!(d, Decision::Placed { workload: w, .. } if w == by));
            let ok = self.preemption
                && preemptor == Some(*class)
                && *class > PriorityClass::BestEffort
                && victim.is_some_and(|v| v < *class)
                && placed_after;
            if !ok {
                problems.push((
                    Kind::Decisions,
                    format!(
                        "{workload} ({victim:?}) preempted for {by} ({class}, known as {preemptor:?}); \
                         {by} placed afterwards in this event: {placed_after}; preemption enabled: {}",
                        self.preemption
                    ),
                ));
            }
        }
        // What each kind of event may say, priority preemptions aside.
        let own: Vec<&Decision> = decisions.iter().filter(|d| !is_priority(d)).collect();
        let only_placements = |ds: &[&Decision]| ds.iter().all(|d| matches!(d, Decision::Placed { .. }));
        match event {
            Event::Arrival(w) => {
                // Decisions about the arriving workload, then, after a preemption, the
                // victims placed again elsewhere (placements only).
                let (mine, others): (Vec<&Decision>, Vec<&Decision>) =
                    own.iter().copied().partition(|d| d.workload() == w.id);
                let shape: Vec<&str> = mine
                    .iter()
                    .map(|d| match d {
                        Decision::Placed { .. } => "placed",
                        Decision::Pending { .. } => "pending",
                        Decision::Rejected { .. } => "rejected",
                        Decision::Preempted { .. } => "preempted",
                        Decision::Released { .. } => "released",
                    })
                    .collect();
                let ok = matches!(
                    shape.as_slice(),
                    ["placed"] | ["pending"] | ["rejected"] | ["placed", "pending"]
                );
                if !ok || !only_placements(&others) {
                    problems.push((Kind::Decisions, format!("arrival of {} decided {decisions:?}", w.id)));
                }
            }
            Event::Completion(id) | Event::Cancel(id) => {
                if !matches!(own.first(), Some(Decision::Released { workload }) if workload == id)
                    || !only_placements(&own[1..])
                {
                    problems.push((Kind::Decisions, format!("release of {id} decided {decisions:?}")));
                }
            }
            Event::Tick => {
                // Reclaims first, then placements.
                let n = own
                    .iter()
                    .take_while(|d| matches!(d, Decision::Preempted { why: PreemptWhy::Reclaim { .. }, .. }))
                    .count();
                if !only_placements(&own[n..]) {
                    problems.push((Kind::Decisions, format!("tick decided {decisions:?}")));
                }
            }
            Event::NodeAdded(_) | Event::NodeRestored { .. } => {
                if !only_placements(&own) {
                    problems.push((Kind::Decisions, format!("{event:?} decided {decisions:?}")));
                }
            }
            Event::NodeRemoved { node } => {
                let n = own.iter().take_while(|d| matches!(d, Decision::Preempted { .. })).count();
                let victims: BTreeSet<WorkloadId> = own[..n].iter().map(|d| d.workload()).collect();
                let right_reason = own[..n]
                    .iter()
                    .all(|d| matches!(d, Decision::Preempted { why: PreemptWhy::NodeLost { node: x }, .. } if x == node));
                if !right_reason || !only_placements(&own[n..]) {
                    problems.push((Kind::Decisions, format!("removal of {node} decided {decisions:?}")));
                }
                if Some(&victims) != on_node.as_ref() {
                    problems.push((
                        Kind::Decisions,
                        format!("removal of {node} preempted {victims:?}, but {on_node:?} ran there"),
                    ));
                }
            }
            Event::BudgetChanged { site, budget } => {
                let n = own.iter().take_while(|d| matches!(d, Decision::Preempted { .. })).count();
                let victims: Vec<WorkloadId> = own[..n].iter().map(|d| d.workload()).collect();
                for d in &own[..n] {
                    let right = matches!(d, Decision::Preempted { why: PreemptWhy::PowerBudget { site: s, budget: b, reserved, .. }, .. }
                        if s == site && b == budget && Some(*reserved) == site_power_before);
                    if !right {
                        problems.push((
                            Kind::Budget,
                            format!(
                                "on a cut of {site} to {budget} (reserved before: {site_power_before:?}): {d:?}"
                            ),
                        ));
                    }
                }
                if !only_placements(&own[n..]) {
                    problems.push((Kind::Decisions, format!("{event:?} decided {decisions:?}")));
                }
                let order = shed_order.unwrap_or_default();
                if !order.starts_with(&victims) {
                    problems.push((
                        Kind::Budget,
                        format!(
                            "budget cut of {site} to {budget} shed {victims:?}; expected a prefix of {order:?} (lowest priority, youngest first)"
                        ),
                    ));
                }
                if site_power_before.is_some_and(|p| p <= *budget) && !victims.is_empty() {
                    problems.push((
                        Kind::Budget,
                        format!("{site} was within {budget} but {victims:?} were preempted"),
                    ));
                }
            }
        }
        // Placements reported are placements held.
        for d in decisions {
            let Decision::Placed { workload, tasks, why } = d else {
                continue;
            };
            let Some(w) = self.live.get(workload) else {
                problems.push((Kind::Decisions, format!("{workload} placed but not known")));
                continue;
            };
            if matches!(w.shape, Shape::Gang { .. }) && tasks.len() != w.shape.tasks() as usize {
                problems.push((
                    Kind::Gang,
                    format!("gang {workload} placed {} of {} tasks", tasks.len(), w.shape.tasks()),
                ));
            }
            if why.tasks.len() != tasks.len() {
                problems.push((
                    Kind::Decisions,
                    format!("{workload}: {} tasks but {} explanations", tasks.len(), why.tasks.len()),
                ));
            }
            let allocs = self.sched.allocations(*workload).unwrap_or_default();
            for (t, tw) in tasks.iter().zip(&why.tasks) {
                let held = allocs.get(t.task as usize).and_then(Option::as_ref);
                let matches =
                    held.is_some_and(|a| self.sched.state().node(a.node).name == t.node && a.gpus == t.gpus);
                if !matches || tw.task != t.task || tw.node != t.node || tw.gpus != t.gpus {
                    problems.push((
                        Kind::Decisions,
                        format!(
                            "{workload} task {} reported on {} {:?} but holds {held:?}",
                            t.task, t.node, t.gpus
                        ),
                    ));
                }
            }
        }
        for (k, m) in problems {
            self.report(k, m);
        }
    }

    /// Checks the whole state against the oracle.
    fn check_state(&mut self) {
        let mut problems: Vec<(Kind, String)> = Vec::new();
        let state = self.sched.state();
        if let Err(e) = state.audit(self.sched.all_allocations().map(|(_, a)| a)) {
            problems.push((Kind::Budget, format!("audit: {e}")));
        }
        // Usage per node, from the allocations alone.
        #[derive(Default)]
        struct Use {
            gpu: BTreeMap<u16, u32>,
            cpu: u64,
            mem: u64,
            tasks: u32,
        }
        let mut used: BTreeMap<String, Use> = BTreeMap::new();
        for (w, a) in self.sched.all_allocations() {
            let node = state.node(a.node);
            let Some(info) = self.nodes.get(&node.name) else {
                problems.push((Kind::Budget, format!("{} on unknown node {}", w.id, node.name)));
                continue;
            };
            let u = used.entry(node.name.clone()).or_default();
            u.cpu += a.cpu.0;
            u.mem += a.memory.0;
            u.tasks += 1;
            for (g, m) in &a.gpus {
                *u.gpu.entry(*g).or_default() += m.0;
                if u32::from(*g) >= info.gpus {
                    problems.push((
                        Kind::Budget,
                        format!("{} holds GPU {g} of {} which has {}", w.id, node.name, info.gpus),
                    ));
                }
            }
            if self.down.contains(&node.name) || !node.up {
                problems.push((Kind::Decisions, format!("{} holds a task on down node {}", w.id, node.name)));
            }
            // The task holds what it asked for.
            let d = &w.demand;
            let mut distinct: Vec<u16> = a.gpus.iter().map(|(g, _)| *g).collect();
            distinct.sort_unstable();
            distinct.dedup();
            let gpus_right = a.gpus.len() == d.gpu.count as usize
                && distinct.len() == a.gpus.len()
                && a.gpus.iter().all(|(_, m)| *m == d.gpu.milli_per_gpu);
            if !gpus_right || a.cpu != d.cpu || a.memory != d.memory {
                problems.push((Kind::Budget, format!("{} asked for {:?} but holds {a:?}", w.id, d)));
            }
            if d.gpu.count > 0 && !d.gpu_models.is_empty() {
                let allowed = info.model.as_ref().is_some_and(|m| {
                    d.gpu_models.iter().any(|want| self.catalog.get(want).is_some_and(|s| s.id == *m))
                });
                if !allowed {
                    problems.push((
                        Kind::Budget,
                        format!(
                            "{} allows {:?} but runs on {} ({:?})",
                            w.id, d.gpu_models, node.name, info.model
                        ),
                    ));
                }
            }
            let site = &self.sites[info.site];
            if !self.allowed(w, site) {
                problems.push((
                    Kind::Residency,
                    format!(
                        "{} ({} data) runs on {} at site {} ({}, {:?})",
                        w.id, w.data_class, node.name, site.id, site.country, site.certs
                    ),
                ));
            }
        }
        // Capacity and power, per node, rack and site.
        struct NodeFree {
            name: String,
            up: bool,
            gpu_free: Vec<u32>,
            cpu_free: u64,
            mem_free: u64,
            milli: u32,
            tasks: u32,
            power: Watts,
        }
        let mut free: Vec<NodeFree> = Vec::new();
        let mut rack_power: BTreeMap<String, Watts> = BTreeMap::new();
        let mut rack_floor: BTreeMap<String, Watts> = BTreeMap::new();
        let mut site_power = vec![Watts::ZERO; self.sites.len()];
        let mut site_floor = vec![Watts::ZERO; self.sites.len()];
        for node in &state.nodes {
            let Some(info) = self.nodes.get(&node.name) else {
                problems.push((Kind::Budget, format!("node {} unknown to the oracle", node.name)));
                continue;
            };
            if node.up == self.down.contains(&node.name) {
                problems.push((
                    Kind::Decisions,
                    format!("node {} up = {} but the events say otherwise", node.name, node.up),
                ));
            }
            let u = used.remove(&node.name).unwrap_or_default();
            for (g, m) in &u.gpu {
                if *m > 1000 {
                    problems.push((Kind::Budget, format!("{} GPU {g} allocated {m}/1000", node.name)));
                }
            }
            if u.cpu > info.cpu.0 || u.mem > info.memory.0 {
                problems.push((
                    Kind::Budget,
                    format!(
                        "{} over capacity: CPU {}/{}, memory {}/{}",
                        node.name, u.cpu, info.cpu.0, u.mem, info.memory.0
                    ),
                ));
            }
            let milli: u32 = u.gpu.values().sum();
            let power = info.reservation(u.tasks, &u.gpu);
            free.push(NodeFree {
                name: node.name.clone(),
                up: !self.down.contains(&node.name),
                gpu_free: (0..info.gpus)
                    .map(|g| 1000u32.saturating_sub(u.gpu.get(&(g as u16)).copied().unwrap_or(0)))
                    .collect(),
                cpu_free: info.cpu.0.saturating_sub(u.cpu),
                mem_free: info.memory.0.saturating_sub(u.mem),
                milli,
                tasks: u.tasks,
                power,
            });
            if power != node.power {
                problems.push((
                    Kind::Budget,
                    format!("{} reserves {} but its tasks need {power}", node.name, node.power),
                ));
            }
            let floor = info.floor(u.tasks, &u.gpu);
            if floor != node.floor {
                problems.push((
                    Kind::Budget,
                    format!("{} floor is {} but its tasks make it {floor}", node.name, node.floor),
                ));
            }
            *rack_power.entry(info.rack.clone()).or_default() += power;
            *rack_floor.entry(info.rack.clone()).or_default() += floor;
            site_power[info.site] += power;
            site_floor[info.site] += floor;
        }
        for (rack, p) in &rack_power {
            let (site, _, limit) = &self.racks[rack];
            let s = &self.sites[*site];
            if *p > s.admits(*limit) {
                problems.push((Kind::Budget, format!("rack {rack} reserves {p}, over what {limit} admits")));
            }
            let floor = rack_floor.get(rack).copied().unwrap_or_default();
            if s.over_milli > 0 && floor > *limit {
                problems.push((Kind::Budget, format!("rack {rack} floor {floor}, over its limit {limit}")));
            }
        }
        for (i, s) in self.sites.iter().enumerate() {
            // Oversubscribed: the floor is what must fit (a cut may leave more reserved).
            let (held, what) =
                if s.over_milli > 0 { (site_floor[i], "floor") } else { (site_power[i], "reservation") };
            if held > s.budget {
                problems.push((
                    Kind::Budget,
                    format!("site {} {what} {held}, over its budget {}", s.id, s.budget),
                ));
            }
            let core = &state.sites[i];
            if core.floor != site_floor[i] {
                problems.push((
                    Kind::Budget,
                    format!("site {}: core floor {}, oracle {}", s.id, core.floor, site_floor[i]),
                ));
            }
            if core.budget != s.budget || core.power != site_power[i] {
                problems.push((
                    Kind::Budget,
                    format!(
                        "site {}: core says {} of {}, oracle {} of {}",
                        s.id, core.power, core.budget, site_power[i], s.budget
                    ),
                ));
            }
        }
        // Work conservation: a waiting task that is not part of a gang fits nowhere.
        for (id, w) in &self.live {
            if matches!(w.shape, Shape::Gang { .. })
                || self.sched.status(*id) != Some(WorkloadStatus::Pending)
            {
                continue;
            }
            let d = &w.demand;
            for n in &free {
                let info = &self.nodes[&n.name];
                let site = &self.sites[info.site];
                let model_ok = d.gpu.count == 0
                    || (info.gpus > 0
                        && (d.gpu_models.is_empty()
                            || info.model.as_ref().is_some_and(|m| {
                                d.gpu_models
                                    .iter()
                                    .any(|want| self.catalog.get(want).is_some_and(|s| s.id == *m))
                            })));
                let gpu_ok = match d.gpu.count {
                    0 => true,
                    1 => n.gpu_free.iter().any(|f| *f >= d.gpu.milli_per_gpu.0),
                    c => n.gpu_free.iter().filter(|f| **f == 1000).count() >= c as usize,
                };
                let delta = info.increase_bound(n.tasks, d.gpu.total().0);
                let fdelta = info.floor_increase_bound(n.tasks, d.gpu.count, d.gpu.total().0);
                let over = site.over_milli > 0;
                let rack_limit = self.racks[&info.rack].2;
                let rack_ok = rack_power.get(&info.rack).copied().unwrap_or_default() + delta
                    <= site.admits(rack_limit)
                    && (!over
                        || rack_floor.get(&info.rack).copied().unwrap_or_default() + fdelta <= rack_limit);
                let site_ok = site_power[info.site] + delta <= site.admits(site.budget)
                    && (!over || site_floor[info.site] + fdelta <= site.budget);
                if n.up
                    && self.allowed(w, site)
                    && model_ok
                    && gpu_ok
                    && n.cpu_free >= d.cpu.0
                    && n.mem_free >= d.memory.0
                    && rack_ok
                    && site_ok
                {
                    problems.push((
                        Kind::Liveness,
                        format!("{id} waits, but node {} could take one of its tasks now", n.name),
                    ));
                    break;
                }
            }
        }
        // Workloads: statuses, gangs.
        for (id, w) in &self.live {
            let Some(allocs) = self.sched.allocations(*id) else {
                problems.push((Kind::Decisions, format!("{id} is live but unknown to the core")));
                continue;
            };
            let placed: Vec<&TaskAlloc> = allocs.iter().flatten().collect();
            let want =
                if placed.len() == allocs.len() { WorkloadStatus::Running } else { WorkloadStatus::Pending };
            if allocs.len() != w.shape.tasks() as usize || self.sched.status(*id) != Some(want) {
                problems.push((
                    Kind::Decisions,
                    format!(
                        "{id}: {} of {} task slots placed, status {:?}",
                        placed.len(),
                        allocs.len(),
                        self.sched.status(*id)
                    ),
                ));
            }
            if let Shape::Gang { topology, .. } = w.shape {
                if !placed.is_empty() && placed.len() != allocs.len() {
                    problems.push((
                        Kind::Gang,
                        format!("gang {id} has {} of {} tasks placed", placed.len(), allocs.len()),
                    ));
                }
                let group: BTreeSet<String> = placed
                    .iter()
                    .map(|a| {
                        let name = &state.node(a.node).name;
                        match (topology, self.nodes.get(name)) {
                            (Topology::SameNode, _) => name.clone(),
                            (Topology::SameRack, Some(i)) => i.rack.clone(),
                            (Topology::SameDomain, Some(i)) => i.domain.clone(),
                            _ => String::new(),
                        }
                    })
                    .collect();
                if group.len() > 1 {
                    problems.push((Kind::Gang, format!("gang {id} ({topology}) spread over {group:?}")));
                }
            }
        }
        for (w, _) in self.sched.all_allocations() {
            if !self.live.contains_key(&w.id) {
                problems.push((Kind::Decisions, format!("{} holds resources but is gone", w.id)));
            }
        }
        // The queue.
        let pending: Vec<WorkloadId> = self.sched.pending().collect();
        let listed: BTreeSet<WorkloadId> = pending.iter().copied().collect();
        let waiting: BTreeSet<WorkloadId> = self
            .live
            .keys()
            .copied()
            .filter(|id| self.sched.status(*id) == Some(WorkloadStatus::Pending))
            .collect();
        if listed.len() != pending.len() {
            problems.push((Kind::Queue, format!("pending() lists a workload more than once: {pending:?}")));
        }
        if listed != waiting {
            problems.push((Kind::Queue, format!("pending() lists {listed:?} but {waiting:?} are waiting")));
        }
        let keys: Vec<(Reverse<PriorityClass>, u64)> = pending
            .iter()
            .filter_map(|id| Some((Reverse(self.live.get(id)?.priority), *self.arrival_seq.get(id)?)))
            .collect();
        if keys.windows(2).any(|p| p[0] > p[1]) {
            problems
                .push((Kind::Queue, format!("pending() is not in priority then arrival order: {pending:?}")));
        }
        for (k, m) in problems {
            self.report(k, m);
        }
    }
}
