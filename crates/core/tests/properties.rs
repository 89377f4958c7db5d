//! Property tests of the scheduling core over random fleets and random event sequences.
//!
//! Each case writes a random fleet as fleet TOML (sites in FR/DE/US/JP with random
//! certifications, grid connections and rack power limits small enough to bind, node
//! types with GPU models from the catalog), parses it with `gigawatt_fleet::parse`, and
//! feeds a random interleaving of arrivals, completions, cancellations, node removals and
//! restorations, node additions (sometimes of a GPU model new to the fleet), budget
//! changes, tenant residency policies, restarts (some with a site that lost or gained a
//! certification) and bogus events to the scheduler, under a random policy, with or without
//! priority preemption and a bound on scored candidates. After every event the harness in
//! `common` checks the state against its own oracle; each property insists on its own
//! kind of check:
//!
//! 1. no resource or power budget is ever exceeded (and `audit` passes); on oversubscribed
//!    sites (half of them) reservations stay within what each limit admits and the floor,
//!    every allocated GPU at its lowest power limit, within the limit itself;
//! 2. gangs are all-or-nothing and hold their topology;
//! 3. no workload is placed or kept on a site its effective residency policy forbids:
//!    the operator's rule for its data class (random fleets override `personal`), its
//!    tenant's policy and its own placement pins;
//! 4. the same fleet, events and seed give the same decisions, for every policy;
//!
//! and, beyond the four: refused events change nothing; decisions agree with the
//! state they leave; no waiting task fits anywhere (work conservation); the queue lists
//! each waiting workload once, in order.

mod common;

use std::fmt::Write as _;

use common::{Harness, Kind, job};
use gigawatt_core::state::{ModelInfo, NewNode};
use gigawatt_core::{
    CoreError, DataClass, Decision, Event, PolicyKind, PriorityClass, RejectWhy, SchedulerConfig, Shape,
    Topology, WorkloadId,
};
use std::collections::BTreeSet;

use gigawatt_fleet::{Certification, GpuCatalog, ResidencyRule};
use gigawatt_units::{Mebibytes, MilliCores, Watts};
use proptest::prelude::*;

/// GPU models the random fleets use (one is missing from most fleets, so that model
/// constraints sometimes cannot be met).
const MODELS: [&str; 5] = ["H100-SXM", "A100-SXM", "T4", "B200", "MI300X"];
const COUNTRIES: [&str; 4] = ["FR", "DE", "US", "JP"];

#[derive(Debug, Clone)]
struct NodeTypeSpec {
    model: Option<&'static str>,
    gpus: u32,
    cores: u64,
    gib: u64,
    base_w: u64,
}

#[derive(Debug, Clone)]
struct RackGroupSpec {
    count: u32,
    nodes_per_rack: u32,
    node_type: usize,
    /// Where the limit sits between "every GPU at its minimum power limit" (0) and
    /// "full load" (100); above 100 the rack never binds.
    limit_pct: u64,
    /// 0: one domain per rack; 1: one domain for the group; 2: domains of two racks.
    domain: u8,
}

#[derive(Debug, Clone)]
struct SiteSpec {
    country: &'static str,
    hds: bool,
    secnumcloud: bool,
    soc2: bool,
    pue_tenths: u32,
    grid_kw: u32,
    /// Oversubscription in percent, 0 for a `reserved` site.
    oversub_pct: u32,
    /// Its operator answers to US law although the site may be in the EU.
    us_law: bool,
    groups: Vec<RackGroupSpec>,
}

#[derive(Debug, Clone)]
struct FleetSpec {
    types: Vec<NodeTypeSpec>,
    sites: Vec<SiteSpec>,
    /// The operator's rule for personal data: 0 the default, 1 France only, 2 SOC 2
    /// anywhere, 3 EU jurisdiction.
    personal_rule: u8,
}

impl FleetSpec {
    fn node_type(&self, i: usize) -> &NodeTypeSpec {
        &self.types[i % self.types.len()]
    }

    fn toml(&self) -> String {
        let catalog = GpuCatalog::builtin();
        let mut t = String::new();
        match self.personal_rule {
            1 => t.push_str("[residency.personal]\ncountries = [\"FR\"]\n\n"),
            2 => t.push_str("[residency.personal]\ncertifications = [\"soc2\"]\n\n"),
            3 => t.push_str("[residency.personal]\njurisdictions = [\"EU\"]\n\n"),
            _ => {}
        }
        for (i, nt) in self.types.iter().enumerate() {
            let _ = writeln!(t, "[node_type.t{i}]");
            if let Some(m) = nt.model {
                let _ = writeln!(t, "gpu_model = \"{m}\"\ngpus = {}", nt.gpus);
            }
            let _ = writeln!(
                t,
                "cpu_millicores = {}\nmemory_mib = {}\nbase_power_w = {}\n",
                nt.cores * 1000,
                nt.gib * 1024,
                nt.base_w
            );
        }
        for (si, s) in self.sites.iter().enumerate() {
            let mut certs = Vec::new();
            for (on, name) in [(s.hds, "hds"), (s.secnumcloud, "secnumcloud"), (s.soc2, "soc2")] {
                if on {
                    certs.push(format!("\"{name}\""));
                }
            }
            let _ = writeln!(
                t,
                "[[site]]\nid = \"s{si}\"\ncountry = \"{}\"\nregion = \"r{si}\"\ncertifications = [{}]\npue = {}.{}\ngrid = [{{ from = 2026-01-01, capacity_mw = {:.3} }}]\n",
                s.country,
                certs.join(", "),
                s.pue_tenths / 10,
                s.pue_tenths % 10,
                f64::from(s.grid_kw) / 1000.0
            );
            if s.us_law {
                let _ = writeln!(t, "jurisdiction = \"US\"\n");
            }
            if s.oversub_pct > 0 {
                let _ = writeln!(
                    t,
                    "provisioning = \"oversubscribed\"\noversubscription = {:.2}\n",
                    f64::from(s.oversub_pct) / 100.0
                );
            }
            for (gi, g) in s.groups.iter().enumerate() {
                let nt = self.node_type(g.node_type);
                let (min, tdp) = nt
                    .model
                    .and_then(|m| catalog.get(m))
                    .map_or((0, 0), |spec| (spec.min_power_limit.0, spec.tdp.0));
                let npr = u64::from(g.nodes_per_rack);
                let floor = npr * (nt.base_w + u64::from(nt.gpus) * min);
                let full = npr * (nt.base_w + u64::from(nt.gpus) * tdp);
                let limit_w = floor + (full - floor) * g.limit_pct / 100;
                let limit_kw = limit_w.div_ceil(1000).max(1);
                let domain = match g.domain {
                    0 => "network_domain = \"{rack}\"".to_string(),
                    1 => format!("network_domain = \"s{si}g{gi}-ib\""),
                    _ => format!("network_domain = \"s{si}g{gi}-ib{{n}}\"\n  racks_per_domain = 2"),
                };
                let _ = writeln!(
                    t,
                    "  [[site.rack_group]]\n  prefix = \"s{si}g{gi}-r\"\n  count = {}\n  node_type = \"t{}\"\n  nodes_per_rack = {}\n  power_limit_kw = {limit_kw}\n  {domain}\n",
                    g.count,
                    g.node_type % self.types.len(),
                    g.nodes_per_rack,
                );
            }
        }
        t
    }
}

fn node_type() -> impl Strategy<Value = NodeTypeSpec> {
    (
        prop_oneof![4 => prop::sample::select(MODELS.to_vec()).prop_map(Some), 1 => Just(None)],
        prop_oneof![Just(1u32), Just(2), Just(4), Just(8), 1u32..=8],
        prop::sample::select(vec![16u64, 64, 128, 224]),
        prop::sample::select(vec![64u64, 256, 1024]),
        300u64..=5000,
    )
        .prop_map(|(model, gpus, cores, gib, base_w)| NodeTypeSpec {
            model,
            gpus: if model.is_some() { gpus } else { 0 },
            cores,
            gib,
            base_w,
        })
}

fn rack_group() -> impl Strategy<Value = RackGroupSpec> {
    (1u32..=3, 1u32..=3, 0usize..8, prop_oneof![0u64..=100, Just(200)], 0u8..3).prop_map(
        |(count, nodes_per_rack, node_type, limit_pct, domain)| RackGroupSpec {
            count,
            nodes_per_rack,
            node_type,
            limit_pct,
            domain,
        },
    )
}

fn site() -> impl Strategy<Value = SiteSpec> {
    (
        prop::sample::select(COUNTRIES.to_vec()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        10u32..=16,
        // 5 kW to 200 kW of grid: a few busy nodes exhaust the smaller ones.
        prop_oneof![5u32..=60, 60u32..=200],
        // Half the sites oversubscribed, by 10% to 60%.
        prop_oneof![Just(0u32), 10u32..=60],
        prop::collection::vec(rack_group(), 1..=2),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(country, hds, secnumcloud, soc2, pue_tenths, grid_kw, oversub_pct, groups, us_law)| SiteSpec {
                country,
                hds,
                secnumcloud,
                soc2,
                pue_tenths,
                grid_kw,
                oversub_pct,
                us_law,
                groups,
            },
        )
}

fn fleet_spec() -> impl Strategy<Value = FleetSpec> {
    (
        prop::collection::vec(node_type(), 1..=3),
        prop::collection::vec(site(), 1..=3),
        prop_oneof![3 => Just(0u8), 1 => 1u8..=3],
    )
        .prop_map(|(types, sites, personal_rule)| FleetSpec { types, sites, personal_rule })
}

#[derive(Debug, Clone)]
enum Gpu {
    None,
    Shared(u32),
    Whole(u32),
    /// An invalid demand: several GPUs at a share each.
    Invalid,
}

#[derive(Debug, Clone)]
struct WlSpec {
    gpu: Gpu,
    models: Vec<&'static str>,
    cores: u64,
    gib: u64,
    shape: Shape,
    class: DataClass,
    prio: PriorityClass,
    /// `t0`, `t1` or `t2`.
    tenant: u8,
    /// Its placement pins (a job file's `placement`).
    pins: RuleSpec,
}

/// A residency rule to narrow with (a tenant policy or a job's pins); sites by index.
#[derive(Debug, Clone, Default)]
struct RuleSpec {
    sites: Option<Vec<usize>>,
    countries: Option<Vec<&'static str>>,
    hds: bool,
    jurisdictions: Option<Vec<&'static str>>,
}

impl RuleSpec {
    fn rule(&self, site_ids: &[String]) -> ResidencyRule {
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<BTreeSet<String>>();
        ResidencyRule {
            sites: self.sites.as_ref().map(|v| v.iter().filter_map(|i| pick(site_ids, *i)).collect()),
            countries: self.countries.as_deref().map(set),
            certifications: if self.hds { [Certification::Hds].into() } else { BTreeSet::new() },
            jurisdictions: self.jurisdictions.as_deref().map(set),
        }
    }
}

/// Pins as jobs write them (sites and countries), or a tenant policy (any term).
fn rule_spec(policy: bool) -> impl Strategy<Value = RuleSpec> {
    let places = ["FR", "DE", "US", "JP", "EU", "EEA"];
    (
        prop_oneof![2 => Just(None), 1 => prop::collection::vec(0usize..4, 0..=2).prop_map(Some)],
        prop_oneof![2 => Just(None), 1 => prop::sample::subsequence(places.to_vec(), 1..=2).prop_map(Some)],
        any::<bool>(),
        prop_oneof![2 => Just(None), 1 => prop::sample::subsequence(vec!["EU", "US"], 1..=1).prop_map(Some)],
    )
        .prop_map(move |(sites, countries, hds, jurisdictions)| RuleSpec {
            sites,
            countries,
            hds: policy && hds,
            jurisdictions: if policy { jurisdictions } else { None },
        })
}

fn topology() -> impl Strategy<Value = Topology> {
    prop::sample::select(vec![Topology::SameNode, Topology::SameRack, Topology::SameDomain, Topology::Any])
}

fn workload() -> impl Strategy<Value = WlSpec> {
    (
        prop_oneof![
            2 => Just(Gpu::None),
            3 => prop_oneof![prop::sample::select(vec![100u32, 250, 500, 750]), 1u32..=999]
                .prop_map(Gpu::Shared),
            4 => prop_oneof![Just(1u32), 1u32..=8].prop_map(Gpu::Whole),
            1 => Just(Gpu::Invalid),
        ],
        prop_oneof![
            6 => Just(Vec::new()),
            3 => prop::sample::subsequence(MODELS.to_vec(), 1..=2),
            1 => Just(vec!["K80"]),
        ],
        0u64..=32,
        0u64..=128,
        prop_oneof![
            4 => Just(Shape::Single),
            3 => (2u32..=4, topology()).prop_map(|(tasks, topology)| Shape::Gang { tasks, topology }),
            2 => (1u32..=4).prop_map(|replicas| Shape::Service { replicas }),
        ],
        prop::sample::select(DataClass::ALL.to_vec()),
        prop::sample::select(PriorityClass::ALL.to_vec()),
        0u8..3,
        prop_oneof![4 => Just(RuleSpec::default()), 1 => rule_spec(false)],
    )
        .prop_map(|(gpu, models, cores, gib, shape, class, prio, tenant, pins)| WlSpec {
            gpu,
            models,
            cores,
            gib,
            shape,
            class,
            prio,
            tenant,
            pins,
        })
}

#[derive(Debug, Clone)]
enum Op {
    Arrive(WlSpec),
    Complete(usize),
    Cancel(usize),
    Remove(usize),
    Restore(usize),
    /// New budget as a percentage of the site's budget at the start.
    Budget(usize, u64),
    /// A node of any type (its GPU model may be new to the fleet) joins a rack.
    AddNode(usize, NodeTypeSpec),
    /// An event naming something unknown, or a node that exists already.
    Bogus(u8),
    /// A workload arriving with the id of a live one.
    Duplicate(usize),
    /// A tenant's residency policy changes (`anywhere` lifts it).
    Policy(u8, RuleSpec),
    /// The control plane restarts; with `Some((site, cert))`, the fleet file then flips
    /// one certification of a site (0: HDS, 1: SecNumCloud, 2: SOC 2).
    Restart(Option<(usize, u8)>),
}

fn op() -> impl Strategy<Value = Op> {
    let idx = 0usize..1000;
    prop_oneof![
        10 => workload().prop_map(Op::Arrive),
        4 => idx.clone().prop_map(Op::Complete),
        2 => idx.clone().prop_map(Op::Cancel),
        2 => idx.clone().prop_map(Op::Remove),
        2 => idx.clone().prop_map(Op::Restore),
        3 => (idx.clone(), prop_oneof![Just(0u64), 0u64..=150]).prop_map(|(s, p)| Op::Budget(s, p)),
        2 => (idx.clone(), node_type()).prop_map(|(r, t)| Op::AddNode(r, t)),
        1 => (0u8..6).prop_map(Op::Bogus),
        1 => idx.clone().prop_map(Op::Duplicate),
        1 => (0u8..3, prop_oneof![1 => Just(RuleSpec::default()), 3 => rule_spec(true)])
            .prop_map(|(t, r)| Op::Policy(t, r)),
        1 => prop_oneof![1 => Just(None), 2 => (idx, 0u8..3).prop_map(Some)].prop_map(Op::Restart),
    ]
}

/// One random case: a fleet, operations, a seed, a policy, and the scheduler's bound on
/// scored candidates.
#[derive(Debug, Clone)]
struct Case {
    fleet: FleetSpec,
    ops: Vec<Op>,
    seed: u64,
    policy: PolicyKind,
    max_candidates: Option<u32>,
    priority_preemption: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        fleet_spec(),
        prop::collection::vec(op(), 1..=60),
        any::<u64>(),
        prop::sample::select(PolicyKind::WITH_OURS.to_vec()),
        prop_oneof![3 => Just(None), 1 => (1u32..=4).prop_map(Some)],
        prop_oneof![3 => Just(true), 1 => Just(false)],
    )
        .prop_map(|(fleet, ops, seed, policy, max_candidates, priority_preemption)| Case {
            fleet,
            ops,
            seed,
            policy,
            max_candidates,
            priority_preemption,
        })
}

fn pick<T: Clone>(items: &[T], i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[i % items.len()].clone())
}

/// Turns an abstract operation into an event against the harness's current world.
fn event_for(h: &Harness, op: &Op, next_id: &mut u64) -> Option<Event> {
    let live: Vec<WorkloadId> = h.live.keys().copied().collect();
    Some(match op {
        Op::Arrive(s) => {
            *next_id += 1;
            let mut w = job(*next_id)
                .cores(s.cores)
                .gib(s.gib)
                .models(&s.models)
                .class(s.class)
                .prio(s.prio)
                .tenant(&format!("t{}", s.tenant))
                .pins(s.pins.rule(&h.site_ids));
            w = match s.gpu {
                Gpu::None => w.gpus(0),
                Gpu::Shared(m) => w.share(m),
                Gpu::Whole(n) => w.gpus(n),
                Gpu::Invalid => w.raw_gpu(2, 500),
            };
            w.0.shape = s.shape;
            w.arrival()
        }
        Op::Complete(i) => Event::Completion(pick(&live, *i)?),
        Op::Cancel(i) => Event::Cancel(pick(&live, *i)?),
        Op::Remove(i) => Event::NodeRemoved { node: pick(&h.node_names, *i)? },
        Op::Restore(i) => {
            let down: Vec<String> = h.down.iter().cloned().collect();
            Event::NodeRestored { node: pick(&down, *i).or_else(|| pick(&h.node_names, *i))? }
        }
        Op::Budget(i, pct) => {
            let fleet_site = pick(&h.fleet.sites, *i)?;
            let start = fleet_site.it_budget_at(h.now);
            Event::BudgetChanged { site: fleet_site.id.clone(), budget: Watts(start.0 * pct / 100) }
        }
        Op::AddNode(r, nt) => {
            let catalog = GpuCatalog::builtin();
            Event::NodeAdded(NewNode {
                name: format!("added-{}", h.node_names.len()),
                rack: pick(&h.rack_ids, *r)?,
                gpu_model: nt.model.and_then(|m| catalog.get(m)).map(ModelInfo::of),
                gpu_count: nt.gpus,
                cpu: MilliCores(nt.cores * 1000),
                memory: Mebibytes(nt.gib * 1024),
                base_power: Watts(nt.base_w),
            })
        }
        Op::Bogus(k) => match k {
            0 => Event::Completion(WorkloadId(u64::MAX)),
            1 => Event::Cancel(WorkloadId(u64::MAX - 1)),
            2 => Event::NodeRemoved { node: "no-such-node".into() },
            3 => Event::NodeRestored { node: "no-such-node".into() },
            4 => Event::BudgetChanged { site: "atlantis".into(), budget: Watts(1) },
            _ => Event::NodeAdded(NewNode {
                name: pick(&h.node_names, 0)?,
                rack: pick(&h.rack_ids, 0)?,
                gpu_model: None,
                gpu_count: 0,
                cpu: MilliCores(1000),
                memory: Mebibytes(1024),
                base_power: Watts(100),
            }),
        },
        Op::Duplicate(i) => {
            let id = pick(&live, *i)?;
            Event::Arrival(job(id.0).gpus(0).cores(1).build())
        }
        Op::Policy(..) | Op::Restart(_) => return None,
    })
}

/// What a run produced: the serialised outcome of every event (decisions, or the error),
/// every violation the harness saw, and the events, for failure messages.
struct Outcome {
    log: Vec<String>,
    violations: Vec<(usize, Kind, String)>,
    story: String,
}

impl Outcome {
    /// The first violation of `kind`, with the events that led to it.
    fn first(&self, kind: Kind) -> Option<String> {
        self.violations
            .iter()
            .find(|v| v.1 == kind)
            .map(|(at, k, msg)| format!("{k:?} violated after event #{at}: {msg}\nevents:\n{}", self.story))
    }
}

/// Runs a case, checking everything after every event.
fn run(c: &Case, policy: PolicyKind) -> Outcome {
    let fleet = common::fleet(&c.fleet.toml());
    let config = SchedulerConfig {
        max_candidates: c.max_candidates,
        priority_preemption: c.priority_preemption,
        ..SchedulerConfig::default()
    };
    let mut h = Harness::configured(fleet, policy, c.seed, common::NOW, config).only_fatal(&[]);
    let mut next_id = 0;
    let mut log = Vec::new();
    let mut spec = c.fleet.clone();
    for op in &c.ops {
        match op {
            Op::Policy(t, r) => {
                let rule = r.rule(&h.site_ids);
                let d = h.set_policy(&format!("t{t}"), rule);
                log.push(serde_json::to_string(&d).expect("decisions serialise"));
                continue;
            }
            Op::Restart(flip) => {
                if let Some((i, cert)) = flip {
                    let n = spec.sites.len();
                    let s = &mut spec.sites[i % n];
                    match cert {
                        0 => s.hds = !s.hds,
                        1 => s.secnumcloud = !s.secnumcloud,
                        _ => s.soc2 = !s.soc2,
                    }
                }
                if let Some(d) = h.restart(common::fleet(&spec.toml())) {
                    log.push(serde_json::to_string(&d).expect("decisions serialise"));
                }
                continue;
            }
            _ => {}
        }
        let Some(event) = event_for(&h, op, &mut next_id) else {
            continue;
        };
        let result = h.handle(event.clone());
        // Bogus events must fail; duplicates, invalid demands and unknown models must be
        // rejected and nothing else.
        let right = match (op, &result) {
            (Op::Bogus(k), r) => matches!(
                (k, r),
                (0 | 1, Err(CoreError::UnknownWorkload(_)))
                    | (2 | 3, Err(CoreError::UnknownNode(_)))
                    | (4, Err(CoreError::UnknownSite(..)))
                    | (5, Err(CoreError::Fleet(_)))
            ),
            (Op::Duplicate(_), Ok(d)) => {
                matches!(d.as_slice(), [Decision::Rejected { why: RejectWhy::DuplicateId, .. }])
            }
            (Op::Arrive(s), Ok(d)) if matches!(s.gpu, Gpu::Invalid) => {
                matches!(d.as_slice(), [Decision::Rejected { why: RejectWhy::InvalidDemand { .. }, .. }])
            }
            (Op::Arrive(s), Ok(d)) if s.models.contains(&"K80") && !matches!(s.gpu, Gpu::None) => {
                matches!(d.as_slice(), [Decision::Rejected { why: RejectWhy::UnknownGpuModel { .. }, .. }])
            }
            (_, r) => r.is_ok(),
        };
        if !right {
            h.violations.push((
                h.history.len() - 1,
                Kind::Decisions,
                format!("{op:?} as {event:?} gave {result:?}"),
            ));
        }
        log.push(match result {
            Ok(d) => serde_json::to_string(&d).expect("decisions serialise"),
            Err(e) => format!("error: {e}"),
        });
    }
    Outcome { log, violations: h.violations.clone(), story: h.story() }
}

/// Runs a case with its own policy and fails the property on the first violation of
/// `kind`.
fn holds(c: &Case, kind: Kind) -> Result<(), TestCaseError> {
    let out = run(c, c.policy);
    match out.first(kind) {
        None => Ok(()),
        Some(msg) => Err(TestCaseError::fail(msg)),
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // Failures print the shrunk case; no regression files in the source tree.
        failure_persistence: None,
        ..ProptestConfig::with_cases(256)
    }
}

proptest! {
    #![proptest_config(config())]

    /// Property 1: after every event, no GPU is shared beyond 1000/1000, no node gives
    /// more CPU or memory than it has, no rack reserves more than its limit, no site more
    /// than its budget (also right after a cut, which sheds lowest priority, youngest
    /// first), power accounting matches the tasks, and `audit` passes.
    #[test]
    fn no_resource_or_power_budget_is_ever_exceeded(c in case()) {
        holds(&c, Kind::Budget)?;
    }

    /// Property 2: a gang has all of its tasks placed or none, inside one node, rack or
    /// network domain as it asked.
    #[test]
    fn gangs_are_all_or_nothing_within_their_topology(c in case()) {
        holds(&c, Kind::Gang)?;
    }

    /// Property 3: health data only on HDS sites in the EU/EEA, sensitive data only on
    /// SecNumCloud sites in France, personal data only in the EU/EEA.
    #[test]
    fn no_workload_lands_where_its_data_class_forbids(c in case()) {
        holds(&c, Kind::Residency)?;
    }

    /// An event the core refuses (unknown workload, node or site; a node that exists
    /// already) leaves the state, the allocations and the queue exactly as they were.
    #[test]
    fn refused_events_change_nothing(c in case()) {
        holds(&c, Kind::Unchanged)?;
    }

    /// Decisions agree with the state they leave: what is reported placed is held,
    /// statuses match allocations, removals preempt exactly the work on the node, nothing
    /// runs on a down node, bad submissions are rejected and bogus events refused.
    #[test]
    fn decisions_agree_with_the_state(c in case()) {
        holds(&c, Kind::Decisions)?;
    }

    /// No capacity is left idle: whenever a workload (other than a gang) waits, no node
    /// could take one of its tasks.
    #[test]
    fn waiting_work_fits_nowhere(c in case()) {
        holds(&c, Kind::Liveness)?;
    }

    /// The queue lists every waiting workload exactly once, highest priority first and in
    /// arrival order within a priority.
    #[test]
    fn the_queue_lists_each_waiting_workload_once_in_order(c in case()) {
        holds(&c, Kind::Queue)?;
    }
}

proptest! {
    // Twelve runs per case (six policies, twice each): fewer cases.
    #![proptest_config(ProptestConfig { cases: 64, ..config() })]

    /// Property 4: the same fleet, events and seed give the same decisions, whatever the
    /// policy.
    #[test]
    fn same_inputs_give_the_same_decisions_for_every_policy(c in case()) {
        for policy in PolicyKind::WITH_OURS {
            let first = run(&c, policy).log;
            let second = run(&c, policy).log;
            prop_assert_eq!(first, second, "policy {}", policy);
        }
    }
}

/// The generator must produce fleets the loader accepts and events that reach every kind
/// of decision and reason; a fixed sample keeps it honest.
#[test]
fn random_cases_reach_every_kind_of_decision() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner =
        TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]));
    let wanted = [
        "\"placed\"",
        "\"pending\"",
        "\"rejected\"",
        "\"preempted\"",
        "\"released\"",
        "power-budget",
        "node-lost",
        "\"priority\"",
        "duplicate-id",
        "invalid-demand",
        "unknown-gpu-model",
        "\"topology\"",
        "\"insufficient-gpu\"",
        "\"gpu-model-not-allowed\"",
        "\"site-power-budget\"",
        "\"rack-power-limit\"",
        "\"data-residency\"",
        "\"node-down\"",
        "\"residency\"",
        "no-site-allowed",
        "error:",
    ];
    let mut seen: BTreeSet<&&str> = BTreeSet::new();
    for _ in 0..512 {
        let c = case().new_tree(&mut runner).expect("a case").current();
        for line in run(&c, c.policy).log {
            seen.extend(wanted.iter().filter(|k| line.contains(*k)));
        }
    }
    let missing: Vec<_> = wanted.iter().filter(|k| !seen.contains(k)).collect();
    assert!(missing.is_empty(), "never seen in 512 random cases: {missing:?}");
}
