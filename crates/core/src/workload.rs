//! What users ask for: workloads, their demands, shapes and classes.

use std::fmt;

use gigawatt_fleet::ResidencyRule;
use gigawatt_units::{GpuMilli, Mebibytes, MilliCores, Seconds};
use serde::{Deserialize, Serialize};

/// A workload's identity, minted by whoever submits it (the API server or a trace
/// adapter). Dense integers keep the core's maps small and its ordering obvious.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkloadId(pub u64);

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w-{}", self.0)
    }
}

/// Who a workload belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub String);

/// How much a workload matters when capacity is short. Ordered: a greater class may
/// preempt a lesser one, never the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriorityClass {
    /// Spot / best-effort: runs on leftovers, first to be preempted or capped.
    BestEffort,
    /// Ordinary batch work, including training.
    Standard,
    /// Latency-critical inference: placed first, preempted last.
    LatencyCritical,
}

impl PriorityClass {
    /// Every class, lowest first.
    pub const ALL: [PriorityClass; 3] =
        [PriorityClass::BestEffort, PriorityClass::Standard, PriorityClass::LatencyCritical];

    /// The API spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PriorityClass::BestEffort => "best-effort",
            PriorityClass::Standard => "standard",
            PriorityClass::LatencyCritical => "latency-critical",
        }
    }
}

impl fmt::Display for PriorityClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of data a workload touches, which decides where it may run
/// (see [`crate::residency`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataClass {
    /// No restriction.
    Public,
    /// Personal data under GDPR: EU/EEA only.
    Personal,
    /// Health data: HDS-certified sites in the EU/EEA only.
    Health,
    /// Sensitive public-sector data: SecNumCloud-certified sites in France only.
    Sensitive,
}

impl DataClass {
    /// Every class, least restricted first.
    pub const ALL: [DataClass; 4] =
        [DataClass::Public, DataClass::Personal, DataClass::Health, DataClass::Sensitive];

    /// The API spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DataClass::Public => "public",
            DataClass::Personal => "personal",
            DataClass::Health => "health",
            DataClass::Sensitive => "sensitive",
        }
    }
}

impl fmt::Display for DataClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// GPUs one task asks for, in the shape the Alibaba trace and the FGD paper use.
///
/// * `count == 0`: no GPU.
/// * `count == 1`: a share of one GPU, `milli_per_gpu` in 1..=1000 (1000 is a whole GPU).
/// * `count > 1`: `count` whole GPUs; `milli_per_gpu` is 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GpuDemand {
    /// How many distinct GPUs.
    pub count: u32,
    /// Share of each of those GPUs.
    pub milli_per_gpu: GpuMilli,
}

impl GpuDemand {
    /// No GPU at all.
    pub const NONE: GpuDemand = GpuDemand { count: 0, milli_per_gpu: GpuMilli(0) };

    /// A share of a single GPU (1..=1000 thousandths).
    #[must_use]
    pub fn shared(milli: GpuMilli) -> GpuDemand {
        GpuDemand { count: 1, milli_per_gpu: milli }
    }

    /// `n` whole GPUs.
    #[must_use]
    pub fn whole(n: u32) -> GpuDemand {
        if n == 0 { GpuDemand::NONE } else { GpuDemand { count: n, milli_per_gpu: GpuMilli::WHOLE } }
    }

    /// Total GPU thousandths asked for.
    #[must_use]
    pub fn total(self) -> GpuMilli {
        GpuMilli(self.count.saturating_mul(self.milli_per_gpu.0))
    }

    /// Whether this is a fractional share of one GPU (the FGD paper's "sharing pod").
    #[must_use]
    pub fn is_sharing(self) -> bool {
        self.count == 1 && self.milli_per_gpu < GpuMilli::WHOLE
    }

    /// Whether the shape is one the core can place: see the type's docs.
    #[must_use]
    pub fn is_valid(self) -> bool {
        match self.count {
            0 => self.milli_per_gpu == GpuMilli::ZERO,
            1 => self.milli_per_gpu > GpuMilli::ZERO && self.milli_per_gpu <= GpuMilli::WHOLE,
            _ => self.milli_per_gpu == GpuMilli::WHOLE,
        }
    }
}

impl fmt::Display for GpuDemand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.count {
            0 => f.write_str("no GPU"),
            1 if self.is_sharing() => write!(f, "{}/1000 of a GPU", self.milli_per_gpu.0),
            1 => f.write_str("1 GPU"),
            n => write!(f, "{n} GPUs"),
        }
    }
}

/// What one task of a workload needs from a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskDemand {
    /// GPUs.
    pub gpu: GpuDemand,
    /// Allowed GPU models (catalog ids); empty means any model.
    pub gpu_models: Vec<String>,
    /// CPU.
    pub cpu: MilliCores,
    /// Memory.
    pub memory: Mebibytes,
}

/// Where the tasks of a gang must sit relative to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// All tasks on one node (NVLink within a server).
    SameNode,
    /// All tasks in one rack.
    SameRack,
    /// All tasks in one network domain (an NVLink or InfiniBand island).
    SameDomain,
    /// Anywhere the placement rules allow.
    Any,
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Topology::SameNode => "same node",
            Topology::SameRack => "same rack",
            Topology::SameDomain => "same network domain",
            Topology::Any => "anywhere",
        })
    }
}

/// How many tasks a workload has and how they relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Shape {
    /// One task.
    Single,
    /// `tasks` tasks that start together or not at all, under a topology constraint.
    Gang {
        /// Number of tasks (ranks).
        tasks: u32,
        /// Where they must sit.
        topology: Topology,
    },
    /// `replicas` independent copies of a service; each is placed as soon as it fits.
    Service {
        /// Number of replicas.
        replicas: u32,
    },
}

impl Shape {
    /// Number of tasks.
    #[must_use]
    pub fn tasks(self) -> u32 {
        match self {
            Shape::Single => 1,
            Shape::Gang { tasks, .. } => tasks,
            Shape::Service { replicas } => replicas,
        }
    }
}

/// A unit of work submitted by a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Identity.
    pub id: WorkloadId,
    /// Human name (job name, trace pod name).
    pub name: String,
    /// Owner.
    pub tenant: TenantId,
    /// Priority class.
    pub priority: PriorityClass,
    /// Data class, which decides the sites it may use.
    pub data_class: DataClass,
    /// What each task needs.
    pub demand: TaskDemand,
    /// How many tasks and how they relate.
    pub shape: Shape,
    /// How long it runs once started. Known to the simulator, `None` in production.
    pub duration: Option<Seconds>,
    /// The most it may run: it is stopped at this limit (after its grace period). The
    /// scheduler plans reservations from the limits of running work, and only work
    /// whose limit ends before a reservation starts may backfill into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<Seconds>,
    /// Where the workload itself asks to run (the job file's `placement.sites` and
    /// `placement.countries`): it narrows its tenant's policy and the operator's rule for
    /// its data class, never widens them (see [`crate::residency`]).
    #[serde(default, skip_serializing_if = "ResidencyRule::is_anywhere")]
    pub pins: ResidencyRule,
}
