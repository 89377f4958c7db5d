//! Synthetic fleets and workloads for benchmarks: deterministic, seeded, realistic.
//!
//! * [`fleet`] builds a multi-site fleet in code ([`Fleet::new`], so it passes the same
//!   checks as a fleet file): sites in several countries with different certifications,
//!   150 kW racks of 8-GPU servers (A100, H100, H200, B200 from the built-in catalog),
//!   grid connections with headroom. [`FleetSpec::GPUS_200K`] is the benchmark's fleet:
//!   25,000 nodes, 200,000 GPUs, 7 sites.
//! * [`WorkloadGen`] / [`workload_mix`] draw a production-like mix: shares of a GPU,
//!   1/2/4/8-GPU tasks, some CPU-only tasks, model constraints, every data class and
//!   priority, a few services and gangs, with durations.
//! * [`SteadyState`] drives a [`Scheduler`] to a target GPU fill and keeps it there
//!   (each arrival is followed by the completions that bring the fill back to target),
//!   timing every core call: the harness of `benches/placement.rs` and of the
//!   `placement_latency` example.
//!
//! The same seed gives the same fleet, the same workloads and the same decisions.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use gigawatt_core::{
    CoreError, CoreRng, DataClass, Decision, Event, GpuDemand, PolicyKind, PriorityClass, Scheduler,
    SchedulerConfig, Shape, TaskDemand, TenantId, Topology, TypicalPods, Workload, WorkloadId,
};
use gigawatt_fleet::{
    Certification, Country, Diagnostics, Fleet, GpuCatalog, GridPhase, Node, Provisioning, Pue, Rack, Site,
};
use gigawatt_units::{GpuMilli, Mebibytes, Megawatts, MilliCores, Seconds, Timestamp, Watts};
use rand::Rng;

/// RNG stream for the fleet's rack models.
const STREAM_FLEET: u64 = 10;
/// RNG stream for the workload mix.
const STREAM_WORKLOADS: u64 = 11;
/// RNG stream handed to the core (random-fit draws from it).
const STREAM_CORE: u64 = 12;

/// One GiB in MiB.
const GIB: u64 = 1024;

/// Power limit of every rack: 150 kW (liquid-cooled HGX racks).
pub const RACK_LIMIT: Watts = Watts(150_000);

/// The moment the benchmark runs at: 2026-01-01T00:00:00Z, after every grid phase began.
pub const START: Timestamp = Timestamp(1_767_225_600_000);

/// The shape of a synthetic fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSpec {
    /// Seed for the choice of server model per rack.
    pub seed: u64,
    /// Number of sites (the first seven are distinct; more repeat them with a suffix).
    pub sites: usize,
    /// Number of racks over the whole fleet, spread evenly over the sites.
    pub racks: usize,
    /// Servers per rack (8 GPUs each). At most 15 fit a 150 kW rack with B200s capped.
    pub nodes_per_rack: usize,
    /// Racks per network domain (InfiniBand island) within a site.
    pub racks_per_domain: usize,
}

impl FleetSpec {
    /// The benchmark fleet: 7 sites, 3,125 racks of 8 servers = 25,000 nodes, 200,000 GPUs,
    /// islands of 16 racks (1,024 GPUs).
    pub const GPUS_200K: FleetSpec =
        FleetSpec { seed: 42, sites: 7, racks: 3_125, nodes_per_rack: 8, racks_per_domain: 16 };

    /// A small fleet of the same kind, for tests: `racks` racks of 4 servers over 3 sites.
    #[must_use]
    pub fn small(seed: u64, racks: usize) -> FleetSpec {
        FleetSpec { seed, sites: 3, racks, nodes_per_rack: 4, racks_per_domain: 4 }
    }

    /// Number of nodes.
    #[must_use]
    pub fn nodes(&self) -> usize {
        self.racks * self.nodes_per_rack
    }

    /// Number of GPUs.
    #[must_use]
    pub fn gpus(&self) -> usize {
        self.nodes() * GPUS_PER_NODE as usize
    }
}

/// GPUs per server (HGX/DGX boards).
pub const GPUS_PER_NODE: u32 = 8;

/// The policies the placement benchmarks measure, production-relevant first.
pub const BENCH_POLICIES: [PolicyKind; 7] = [
    PolicyKind::Fgd,
    PolicyKind::CaFgd,
    PolicyKind::BestFit,
    PolicyKind::Random,
    PolicyKind::DotProduct,
    PolicyKind::GpuPacking,
    PolicyKind::GpuClustering,
];

/// A server type: catalog model plus the host around it.
struct ServerType {
    model: &'static str,
    /// Short tag used in rack and node names.
    tag: &'static str,
    cpu_millicores: u64,
    memory_mib: u64,
    base_power: Watts,
}

/// DGX/HGX-class servers. Base power = published system maximum minus 8 × GPU TDP:
/// DGX A100 6.5 kW − 3.2 kW; DGX H100/H200 10.2 kW − 5.6 kW; DGX B200 14.3 kW − 8 kW.
const SERVERS: [ServerType; 4] = [
    ServerType {
        model: "A100-SXM",
        tag: "a100",
        cpu_millicores: 256_000,
        memory_mib: 1024 * GIB,
        base_power: Watts(3_300),
    },
    ServerType {
        model: "H100-SXM",
        tag: "h100",
        cpu_millicores: 224_000,
        memory_mib: 2048 * GIB,
        base_power: Watts(4_600),
    },
    ServerType {
        model: "H200-SXM",
        tag: "h200",
        cpu_millicores: 224_000,
        memory_mib: 2048 * GIB,
        base_power: Watts(4_600),
    },
    ServerType {
        model: "B200",
        tag: "b200",
        cpu_millicores: 224_000,
        memory_mib: 4096 * GIB,
        base_power: Watts(6_300),
    },
];

/// A site template: identity, jurisdiction, certifications, PUE and the share of racks of
/// each server type (in [`SERVERS`] order: A100, H100, H200, B200).
struct SiteTemplate {
    id: &'static str,
    name: &'static str,
    country: &'static str,
    region: &'static str,
    certifications: &'static [Certification],
    pue: f64,
    mix: [u32; 4],
}

const SITES: [SiteTemplate; 7] = [
    SiteTemplate {
        id: "paris-saclay",
        name: "Paris-Saclay campus",
        country: "FR",
        region: "eu-north-fr",
        certifications: &[Certification::Secnumcloud, Certification::Hds, Certification::Iso27001],
        pue: 1.25,
        mix: [10, 45, 30, 15],
    },
    SiteTemplate {
        id: "valence",
        name: "Valence (Drôme) campus",
        country: "FR",
        region: "eu-south-fr",
        certifications: &[Certification::Hds, Certification::Iso27001],
        pue: 1.15,
        mix: [0, 40, 30, 30],
    },
    SiteTemplate {
        id: "frankfurt",
        name: "Frankfurt am Main",
        country: "DE",
        region: "eu-central-de",
        certifications: &[Certification::C5, Certification::Iso27001],
        pue: 1.3,
        mix: [20, 40, 25, 15],
    },
    SiteTemplate {
        id: "amsterdam",
        name: "Amsterdam Science Park",
        country: "NL",
        region: "eu-west-nl",
        certifications: &[Certification::Iso27001, Certification::Soc2],
        pue: 1.3,
        mix: [30, 40, 20, 10],
    },
    SiteTemplate {
        id: "oslo",
        name: "Oslo fjord",
        country: "NO",
        region: "eu-north-no",
        certifications: &[Certification::Iso27001],
        pue: 1.1,
        mix: [0, 30, 30, 40],
    },
    SiteTemplate {
        id: "ashburn",
        name: "Ashburn, Virginia",
        country: "US",
        region: "us-east",
        certifications: &[Certification::Soc2],
        pue: 1.4,
        mix: [25, 45, 15, 15],
    },
    SiteTemplate {
        id: "montreal",
        name: "Montréal",
        country: "CA",
        region: "ca-east",
        certifications: &[Certification::Soc2, Certification::Iso27001],
        pue: 1.2,
        mix: [15, 35, 25, 25],
    },
];

/// Index drawn from integer weights (which must not all be zero).
fn weighted(rng: &mut CoreRng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = rng.random_range(0..total.max(1));
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len().saturating_sub(1)
}

/// An item drawn from `(item, weight)` pairs.
fn pick<T: Copy>(rng: &mut CoreRng, items: &[(T, u32)]) -> T {
    let weights: Vec<u32> = items.iter().map(|(_, w)| *w).collect();
    items[weighted(rng, &weights)].0
}

/// Builds the fleet described by `spec`, checked by [`Fleet::new`].
///
/// # Errors
/// What [`Fleet::new`] finds wrong: no site (`sites == 0`), no rack, or racks whose
/// servers cannot fit 150 kW even power-capped (`nodes_per_rack` above 15).
pub fn try_fleet(spec: &FleetSpec) -> Result<Fleet, Diagnostics> {
    let catalog = GpuCatalog::builtin();
    let mut rng = crate::rng(spec.seed, STREAM_FLEET);
    let per_domain = spec.racks_per_domain.max(1);
    let mut sites = Vec::with_capacity(spec.sites);
    for s in 0..spec.sites {
        let t = &SITES[s % SITES.len()];
        let id = if s < SITES.len() { t.id.to_string() } else { format!("{}-{}", t.id, s / SITES.len() + 1) };
        // Racks spread evenly: the first `racks % sites` sites get one more.
        let racks_here = spec.racks / spec.sites + usize::from(s < spec.racks % spec.sites);
        let mut racks = Vec::with_capacity(racks_here);
        let mut full_load = Watts::ZERO;
        for r in 0..racks_here {
            let server = &SERVERS[weighted(&mut rng, &t.mix)];
            let rack_id = format!("{id}-{}-r{r:04}", server.tag);
            let nodes: Vec<Node> = (0..spec.nodes_per_rack)
                .map(|n| Node {
                    name: format!("{rack_id}-n{n}"),
                    gpu_model: Some(server.model.to_string()),
                    gpu_count: GPUS_PER_NODE,
                    cpu: MilliCores(server.cpu_millicores),
                    memory: Mebibytes(server.memory_mib),
                    base_power: server.base_power,
                })
                .collect();
            let rack = Rack {
                id: rack_id,
                power_limit: RACK_LIMIT,
                network_domain: format!("{id}-ib{:03}", r / per_domain),
                nodes,
            };
            full_load += rack.full_load_power(&catalog);
            racks.push(rack);
        }
        // Grid: full IT load × PUE plus 10% headroom, in whole megawatts, so that power
        // never binds before GPUs do (the benchmark measures placement, not capping).
        let capacity_mw = (full_load.0 as f64 * t.pue * 1.1 / 1e6).ceil().max(1.0);
        sites.push(Site {
            id,
            name: t.name.to_string(),
            country: Country(t.country.to_string()),
            region: t.region.to_string(),
            certifications: t.certifications.iter().copied().collect::<BTreeSet<_>>(),
            jurisdiction: gigawatt_fleet::residency::default_jurisdiction(t.country),
            grid: vec![GridPhase {
                from: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default(),
                capacity: Megawatts(capacity_mw),
            }],
            pue: Pue(t.pue),
            provisioning: Provisioning::Reserved,
            curtailable_to: Megawatts(0.0),
            carbon: None,
            racks,
        });
    }
    Fleet::new(catalog, sites)
}

/// Builds the fleet described by `spec`.
///
/// # Panics
/// If the spec cannot make a valid fleet (see [`try_fleet`]); [`FleetSpec::GPUS_200K`]
/// and [`FleetSpec::small`] always can.
#[must_use]
pub fn fleet(spec: &FleetSpec) -> Fleet {
    match try_fleet(spec) {
        Ok(f) => f,
        Err(d) => panic!("synthetic fleet spec {spec:?} is invalid: {d}"),
    }
}

/// The kind of a synthetic workload, for per-kind statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// One task on a share of one GPU.
    Sharing,
    /// One task on one whole GPU.
    Gpu1,
    /// One task on 2 GPUs.
    Gpu2,
    /// One task on 4 GPUs.
    Gpu4,
    /// One task on a whole 8-GPU server.
    Gpu8,
    /// One task without GPU.
    CpuOnly,
    /// Several replicas of an inference service.
    Service,
    /// A gang of 8-GPU training tasks under a topology constraint.
    Gang,
}

impl Kind {
    /// Every kind, in display order.
    pub const ALL: [Kind; 8] = [
        Kind::Sharing,
        Kind::Gpu1,
        Kind::Gpu2,
        Kind::Gpu4,
        Kind::Gpu8,
        Kind::CpuOnly,
        Kind::Service,
        Kind::Gang,
    ];

    /// Short name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sharing => "sharing",
            Kind::Gpu1 => "1-gpu",
            Kind::Gpu2 => "2-gpu",
            Kind::Gpu4 => "4-gpu",
            Kind::Gpu8 => "8-gpu",
            Kind::CpuOnly => "cpu-only",
            Kind::Service => "service",
            Kind::Gang => "gang",
        }
    }

    /// The kind of a workload.
    #[must_use]
    pub fn of(w: &Workload) -> Kind {
        match w.shape {
            Shape::Gang { .. } => Kind::Gang,
            Shape::Service { .. } => Kind::Service,
            Shape::Single => match w.demand.gpu.count {
                0 => Kind::CpuOnly,
                1 if w.demand.gpu.is_sharing() => Kind::Sharing,
                1 => Kind::Gpu1,
                2 => Kind::Gpu2,
                4 => Kind::Gpu4,
                _ => Kind::Gpu8,
            },
        }
    }
}

/// An endless, seeded stream of workloads with ids 0, 1, 2, …
///
/// The mix, by number of workloads: 30% shares of one GPU (0.1 to 0.75), 27% one GPU,
/// 12% two, 10% four, 10% eight (a whole server), 3% CPU-only, 6% inference services
/// (2 to 8 replicas, latency-critical) and 2% gangs (2 to 16 eight-GPU ranks, same
/// network domain, same rack or anywhere). About a quarter of whole-GPU tasks and a tenth
/// of shares name GPU models. Data: 65% public, 25% personal, 7% health, 3% sensitive.
/// CPU and memory come in a few sizes per shape (8 GiB per core), as instance types do.
/// Durations are log-uniform per kind, from minutes (shares) to weeks (services).
pub struct WorkloadGen {
    rng: CoreRng,
    next_id: u64,
}

impl WorkloadGen {
    /// The stream for `seed`.
    #[must_use]
    pub fn new(seed: u64) -> WorkloadGen {
        WorkloadGen { rng: crate::rng(seed, STREAM_WORKLOADS), next_id: 0 }
    }

    fn log_uniform(&mut self, lo_s: f64, hi_s: f64) -> Seconds {
        let x: f64 = self.rng.random();
        Seconds((lo_s.ln() + x * (hi_s.ln() - lo_s.ln())).exp().round())
    }

    fn models(&mut self, sharing: bool) -> Vec<String> {
        let p: f64 = self.rng.random();
        let options: &[&[&str]] = if sharing {
            if p >= 0.10 {
                return Vec::new();
            }
            &[&["A100-SXM"], &["H100-SXM"], &["A100-SXM", "H100-SXM"]]
        } else {
            if p >= 0.25 {
                return Vec::new();
            }
            &[
                &["H100-SXM", "H200-SXM"],
                &["H200-SXM"],
                &["B200"],
                &["H100-SXM"],
                &["A100-SXM"],
                &["H200-SXM", "B200"],
            ]
        };
        let i = self.rng.random_range(0..options.len());
        options[i].iter().map(|m| (*m).to_string()).collect()
    }

    /// A task demand of `gpu` with `cores` cores and 8 GiB of memory per core.
    fn demand(&mut self, gpu: GpuDemand, cores: u64) -> TaskDemand {
        let gpu_models = if gpu.count == 0 { Vec::new() } else { self.models(gpu.is_sharing()) };
        TaskDemand { gpu, gpu_models, cpu: MilliCores(cores * 1000), memory: Mebibytes(cores * 8 * GIB) }
    }

    fn make(&mut self) -> Workload {
        let id = WorkloadId(self.next_id);
        self.next_id += 1;
        let kind = pick(
            &mut self.rng,
            &[
                (Kind::Sharing, 30),
                (Kind::Gpu1, 27),
                (Kind::Gpu2, 12),
                (Kind::Gpu4, 10),
                (Kind::Gpu8, 10),
                (Kind::CpuOnly, 3),
                (Kind::Service, 6),
                (Kind::Gang, 2),
            ],
        );
        let rng = &mut self.rng;
        let mut priority = pick(
            rng,
            &[
                (PriorityClass::BestEffort, 20),
                (PriorityClass::Standard, 65),
                (PriorityClass::LatencyCritical, 15),
            ],
        );
        let data_class = pick(
            rng,
            &[
                (DataClass::Public, 65),
                (DataClass::Personal, 25),
                (DataClass::Health, 7),
                (DataClass::Sensitive, 3),
            ],
        );
        let tenant = TenantId(format!("tenant-{:02}", rng.random_range(0..48u32)));
        let share = |rng: &mut CoreRng| {
            GpuDemand::shared(GpuMilli(pick(
                rng,
                &[(100, 15), (200, 20), (250, 15), (300, 10), (500, 30), (750, 10)],
            )))
        };
        let (demand, shape, duration) = match kind {
            Kind::Sharing => {
                let gpu = share(rng);
                let cores = pick(rng, &[(2, 40), (4, 40), (8, 20)]);
                let d = self.demand(gpu, cores);
                (d, Shape::Single, self.log_uniform(600.0, 8.0 * 3600.0))
            }
            Kind::Gpu1 => {
                let cores = pick(rng, &[(8, 40), (12, 20), (16, 30), (24, 10)]);
                let d = self.demand(GpuDemand::whole(1), cores);
                (d, Shape::Single, self.log_uniform(1800.0, 24.0 * 3600.0))
            }
            Kind::Gpu2 | Kind::Gpu4 | Kind::Gpu8 => {
                let (n, sizes): (u32, [(u64, u32); 4]) = match kind {
                    Kind::Gpu2 => (2, [(16, 40), (24, 20), (32, 30), (48, 10)]),
                    Kind::Gpu4 => (4, [(32, 40), (48, 20), (64, 30), (96, 10)]),
                    _ => (8, [(64, 30), (96, 20), (128, 40), (192, 10)]),
                };
                let cores = pick(rng, &sizes);
                let d = self.demand(GpuDemand::whole(n), cores);
                (d, Shape::Single, self.log_uniform(3600.0, 72.0 * 3600.0))
            }
            Kind::CpuOnly => {
                let cores = pick(rng, &[(4, 40), (8, 30), (16, 20), (32, 10)]);
                let d = self.demand(GpuDemand::NONE, cores);
                (d, Shape::Single, self.log_uniform(300.0, 2.0 * 3600.0))
            }
            Kind::Service => {
                priority = PriorityClass::LatencyCritical;
                let replicas = pick(rng, &[(2, 40), (3, 25), (4, 20), (8, 15)]);
                let gpu = if rng.random_bool(0.5) { share(rng) } else { GpuDemand::whole(1) };
                let cores = pick(rng, &[(4, 40), (8, 40), (16, 20)]);
                let d = self.demand(gpu, cores);
                let dur = self.log_uniform(86_400.0, 30.0 * 86_400.0);
                (d, Shape::Service { replicas }, dur)
            }
            Kind::Gang => {
                if priority == PriorityClass::LatencyCritical {
                    priority = PriorityClass::Standard;
                }
                let tasks = pick(rng, &[(2, 40), (4, 30), (8, 20), (16, 10)]);
                let topology =
                    pick(rng, &[(Topology::SameDomain, 60), (Topology::SameRack, 30), (Topology::Any, 10)]);
                let cores = pick(rng, &[(96, 50), (128, 50)]);
                let d = self.demand(GpuDemand::whole(GPUS_PER_NODE), cores);
                let dur = self.log_uniform(6.0 * 3600.0, 14.0 * 86_400.0);
                (d, Shape::Gang { tasks, topology }, dur)
            }
        };
        Workload {
            id,
            name: format!("{}-{}", kind.as_str(), id.0),
            tenant,
            priority,
            data_class,
            demand,
            shape,
            duration: Some(duration),
            time_limit: None,
            pins: Default::default(),
        }
    }
}

impl Iterator for WorkloadGen {
    type Item = Workload;

    fn next(&mut self) -> Option<Workload> {
        Some(self.make())
    }
}

/// The first `n` workloads of the seeded mix (see [`WorkloadGen`]).
#[must_use]
pub fn workload_mix(seed: u64, n: usize) -> Vec<Workload> {
    WorkloadGen::new(seed).take(n).collect()
}

/// The typical workload FGD measures fragmentation against: the task shapes of the
/// first 20,000 workloads of the mix, covering 95% of tasks (the paper's setting).
#[must_use]
pub fn typical_pods(seed: u64) -> TypicalPods {
    let sample = workload_mix(seed, 20_000);
    TypicalPods::from_shapes(
        sample.iter().flat_map(|w| {
            let d = &w.demand;
            let shape = (d.cpu, d.gpu.milli_per_gpu, d.gpu.count, d.gpu_models.clone());
            std::iter::repeat_n(shape, w.shape.tasks() as usize)
        }),
        95,
    )
}

/// Reads how long this thread has waited runnable but not running: the second field of
/// Linux's `/proc/thread-self/schedstat` (`run_delay`, ns), which the kernel updates each
/// time the thread gets a CPU back. Wall time minus its increase over a call is the
/// call's time on the CPU, which stays meaningful on a machine shared with other work.
/// Elsewhere (or without schedstats) it reads nothing and the waits count as zero.
pub(crate) struct RunQueueWait {
    #[cfg(target_os = "linux")]
    file: Option<std::fs::File>,
}

impl RunQueueWait {
    /// Opens the counter of the calling thread.
    pub(crate) fn open() -> RunQueueWait {
        RunQueueWait {
            #[cfg(target_os = "linux")]
            file: std::fs::File::open("/proc/thread-self/schedstat").ok(),
        }
    }

    /// Nanoseconds waited so far, if known.
    pub(crate) fn read(&self) -> Option<u64> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::FileExt;
            let mut buf = [0u8; 96];
            let n = self.file.as_ref()?.read_at(&mut buf, 0).ok()?;
            let text = std::str::from_utf8(buf.get(..n)?).ok()?;
            text.split_whitespace().nth(1)?.parse().ok()
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }
}

/// What one arrival did and what it cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArrivalOutcome {
    /// Wall time of the core call alone (`Scheduler::handle` of the arrival).
    pub elapsed: Duration,
    /// Of `elapsed`, the time the thread waited for a CPU (preempted by other processes),
    /// where the OS tells (Linux schedstat); zero otherwise.
    pub waited: Duration,
    /// The workload's kind.
    pub kind: Kind,
    /// Whether every task was placed.
    pub placed: bool,
    /// Tasks the workload has.
    pub tasks: u32,
    /// Feasible nodes the first task had (0 when nothing was placed).
    pub candidates: u32,
}

impl ArrivalOutcome {
    /// Time on the CPU: wall time less the wait for a CPU.
    #[must_use]
    pub fn on_cpu(&self) -> Duration {
        self.elapsed.saturating_sub(self.waited)
    }
}

/// Counters of a [`SteadyState`] run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Arrivals submitted.
    pub arrivals: u64,
    /// Arrivals fully placed.
    pub placed: u64,
    /// Arrivals rejected (did not fit: the scheduler drops rather than queues).
    pub rejected: u64,
    /// Completions applied.
    pub completions: u64,
}

/// A scheduler held at a steady GPU fill.
///
/// Arrivals come from [`WorkloadGen`]; each placed workload runs until its duration
/// ends on a virtual clock that advances one second per arrival. The fill is held at a
/// target: [`SteadyState::complete_to_target`] completes the running workloads that end
/// first until the allocated GPU share is back at or under the target. The scheduler
/// drops what does not fit ([`SchedulerConfig::drop_unschedulable`]), so no queue builds
/// up and every completion costs only its release.
pub struct SteadyState {
    scheduler: Scheduler,
    rng: CoreRng,
    workloads: WorkloadGen,
    now: Timestamp,
    running: BinaryHeap<Reverse<(Timestamp, WorkloadId)>>,
    held: HashMap<WorkloadId, u64>,
    allocated: u64,
    capacity: u64,
    target: u64,
    counters: Counters,
    waits: RunQueueWait,
}

impl SteadyState {
    /// An empty scheduler over `fleet` with `policy`, the typical workload of `seed` for
    /// FGD, and a target fill of `target` (a fraction of GPU capacity, e.g. 0.7).
    ///
    /// # Errors
    /// If the core cannot build its state from the fleet.
    pub fn new(fleet: &Fleet, policy: PolicyKind, seed: u64, target: f64) -> Result<SteadyState, CoreError> {
        let config = SchedulerConfig {
            drop_unschedulable: true,
            max_candidates: None,
            priority_preemption: false,
            fair_share: false,
            backfill: gigawatt_core::BackfillConfig::OFF,
        };
        SteadyState::with_config(fleet, policy, seed, target, config)
    }

    /// Like [`SteadyState::new`] with a chosen scheduler configuration (for example a
    /// bounded candidate search). Keep `drop_unschedulable` on and preemption off: the
    /// bookkeeping here follows placements and completions only.
    ///
    /// # Errors
    /// If the core cannot build its state from the fleet.
    pub fn with_config(
        fleet: &Fleet,
        policy: PolicyKind,
        seed: u64,
        target: f64,
        config: SchedulerConfig,
    ) -> Result<SteadyState, CoreError> {
        let scheduler = Scheduler::new(fleet, policy.build(&typical_pods(seed)), config, START)?;
        let capacity = u64::from(scheduler.state().gpu_capacity().0);
        Ok(SteadyState {
            scheduler,
            rng: crate::rng(seed, STREAM_CORE),
            workloads: WorkloadGen::new(seed),
            now: START,
            running: BinaryHeap::new(),
            held: HashMap::new(),
            allocated: 0,
            capacity,
            target: (capacity as f64 * target.clamp(0.0, 1.0)) as u64,
            counters: Counters::default(),
            waits: RunQueueWait::open(),
        })
    }

    /// The scheduler.
    #[must_use]
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Allocated GPU share as a fraction of capacity.
    #[must_use]
    pub fn fill(&self) -> f64 {
        self.allocated as f64 / self.capacity.max(1) as f64
    }

    /// Workloads running now.
    #[must_use]
    pub fn running(&self) -> usize {
        self.held.len()
    }

    /// The counters so far.
    #[must_use]
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Submits the next workload of the mix and times the core's decision. Call it from
    /// the thread that created the state, or the CPU-wait correction is off.
    ///
    /// # Errors
    /// If the core refuses the event (a bug).
    pub fn arrive(&mut self) -> Result<ArrivalOutcome, CoreError> {
        let Some(w) = self.workloads.next() else {
            return Err(CoreError::Invariant("the workload stream ended"));
        };
        self.now = self.now + Seconds(1.0);
        let (id, kind, tasks) = (w.id, Kind::of(&w), w.shape.tasks());
        let end = self.now + w.duration.unwrap_or(Seconds(3600.0));
        let wait_before = self.waits.read();
        let t = Instant::now();
        let decisions = self.scheduler.handle(self.now, Event::Arrival(w), &mut self.rng)?;
        let elapsed = t.elapsed();
        let waited = match (wait_before, self.waits.read()) {
            (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)).min(elapsed),
            _ => Duration::ZERO,
        };
        self.counters.arrivals += 1;
        let mut milli = 0u64;
        let mut rejected = false;
        let mut candidates = 0;
        for d in &decisions {
            match d {
                Decision::Placed { tasks: placed, why, .. } => {
                    milli += placed.iter().flat_map(|t| &t.gpus).map(|(_, m)| u64::from(m.0)).sum::<u64>();
                    if candidates == 0 {
                        candidates = why.tasks.first().map_or(0, |t| t.candidates);
                    }
                }
                Decision::Rejected { .. } | Decision::Pending { .. } => rejected = true,
                _ => {}
            }
        }
        if rejected {
            self.counters.rejected += 1;
        } else {
            self.counters.placed += 1;
            self.allocated += milli;
            self.held.insert(id, milli);
            self.running.push(Reverse((end, id)));
        }
        Ok(ArrivalOutcome {
            elapsed,
            waited,
            kind,
            placed: !rejected,
            tasks,
            candidates: if rejected { 0 } else { candidates },
        })
    }

    /// Completes the running workloads that end first until the fill is at or under the
    /// target. Returns how many completed and the core's time for them.
    ///
    /// # Errors
    /// If the core refuses an event (a bug).
    pub fn complete_to_target(&mut self) -> Result<(u32, Duration), CoreError> {
        let mut n = 0;
        let mut spent = Duration::ZERO;
        while self.allocated > self.target {
            let Some(Reverse((_, id))) = self.running.pop() else {
                break;
            };
            let t = Instant::now();
            self.scheduler.handle(self.now, Event::Completion(id), &mut self.rng)?;
            spent += t.elapsed();
            self.allocated -= self.held.remove(&id).unwrap_or(0);
            self.counters.completions += 1;
            n += 1;
        }
        Ok((n, spent))
    }

    /// Submits arrivals (without completions) until the fill reaches the target, or
    /// `max_arrivals` were submitted. Returns the arrivals submitted and their core time.
    ///
    /// # Errors
    /// If the core refuses an event (a bug).
    pub fn fill_to_target(&mut self, max_arrivals: u64) -> Result<(u64, Duration), CoreError> {
        let mut n = 0;
        let mut spent = Duration::ZERO;
        while self.allocated < self.target && n < max_arrivals {
            spent += self.arrive()?.elapsed;
            n += 1;
        }
        Ok((n, spent))
    }

    /// One steady-state step: an arrival, then the completions that restore the target.
    ///
    /// # Errors
    /// If the core refuses an event (a bug).
    pub fn step(&mut self) -> Result<(ArrivalOutcome, u32, Duration), CoreError> {
        let a = self.arrive()?;
        let (n, spent) = self.complete_to_target()?;
        Ok((a, n, spent))
    }
}

/// Latency statistics of a set of timed calls.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// Number of calls.
    pub n: usize,
    /// Mean.
    pub mean: Duration,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Slowest call.
    pub max: Duration,
    /// Calls per second of busy time (`n / sum`).
    pub per_sec: f64,
}

impl Summary {
    /// Statistics of `samples` (nearest-rank percentiles); all zero when empty.
    #[must_use]
    pub fn of(samples: &[Duration]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let n = sorted.len();
        let rank = |q: f64| sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        let total: Duration = sorted.iter().sum();
        Summary {
            n,
            mean: total / n as u32,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            p999: rank(0.999),
            max: sorted[n - 1],
            per_sec: n as f64 / total.as_secs_f64().max(f64::MIN_POSITIVE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_fleet_has_the_advertised_size_and_is_valid() {
        let spec = FleetSpec::GPUS_200K;
        assert_eq!(spec.nodes(), 25_000);
        assert_eq!(spec.gpus(), 200_000);
        let f = fleet(&spec);
        assert_eq!(f.node_count(), 25_000);
        assert_eq!(f.gpu_count(), 200_000);
        assert_eq!(f.sites.len(), 7);
        let models: BTreeSet<&str> = f.nodes().filter_map(|(_, _, n)| n.gpu_model.as_deref()).collect();
        assert_eq!(models.into_iter().collect::<Vec<_>>(), ["A100-SXM", "B200", "H100-SXM", "H200-SXM"]);
        for s in &f.sites {
            assert!(s.it_budget_at(START) > Watts::ZERO, "{}", s.id);
            for r in &s.racks {
                assert!(r.full_load_power(&f.catalog) <= r.power_limit, "{}", r.id);
            }
        }
    }

    #[test]
    fn generators_are_deterministic() {
        let spec = FleetSpec::small(7, 20);
        assert_eq!(fleet(&spec), fleet(&spec));
        assert_eq!(workload_mix(3, 500), workload_mix(3, 500));
        assert_ne!(workload_mix(3, 50), workload_mix(4, 50));
        assert!(try_fleet(&FleetSpec { sites: 0, ..spec }).is_err());
    }

    #[test]
    fn the_mix_has_every_kind_and_class() {
        let mix = workload_mix(1, 5_000);
        for k in Kind::ALL {
            assert!(mix.iter().any(|w| Kind::of(w) == k), "{k:?}");
        }
        for c in DataClass::ALL {
            assert!(mix.iter().any(|w| w.data_class == c), "{c:?}");
        }
        assert!(mix.iter().any(|w| !w.demand.gpu_models.is_empty()));
        assert!(mix.iter().all(|w| w.demand.gpu.is_valid()));
    }

    #[test]
    fn steady_state_holds_the_fill_and_matches_the_core() {
        let f = fleet(&FleetSpec::small(5, 40));
        for policy in [PolicyKind::BestFit, PolicyKind::Fgd, PolicyKind::Random] {
            let mut s = SteadyState::new(&f, policy, 9, 0.7).expect("state");
            s.fill_to_target(10_000).expect("fill");
            assert!(s.fill() >= 0.69, "{policy}: {}", s.fill());
            for _ in 0..300 {
                s.step().expect("step");
                assert!(s.fill() <= 0.701, "{policy}: {}", s.fill());
            }
            let core = f64::from(s.scheduler().state().gpu_allocated().0)
                / f64::from(s.scheduler().state().gpu_capacity().0);
            assert!((core - s.fill()).abs() < 1e-9, "{policy}: {core} vs {}", s.fill());
            let c = s.counters();
            assert_eq!(c.arrivals, c.placed + c.rejected);
            assert!(c.completions > 0);
            let allocs: Vec<_> = s.scheduler().all_allocations().map(|(_, a)| a).collect();
            s.scheduler().state().audit(allocs).expect("audit");
        }
    }

    #[test]
    fn summary_uses_nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=1000).map(Duration::from_micros).collect();
        let s = Summary::of(&samples);
        assert_eq!(s.n, 1000);
        assert_eq!(s.p50, Duration::from_micros(500));
        assert_eq!(s.p99, Duration::from_micros(990));
        assert_eq!(s.p999, Duration::from_micros(999));
        assert_eq!(s.max, Duration::from_micros(1000));
        assert_eq!(Summary::of(&[]), Summary::default());
    }
}
