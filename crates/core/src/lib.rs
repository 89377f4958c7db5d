//! The scheduling core of gigawatt: cluster state plus one event in, decisions out.
//!
//! This crate is pure. It does no I/O, reads no clock and keeps no global state; its only
//! randomness is the seeded [`CoreRng`] the caller passes in. The same core runs the live
//! control plane (on wall-clock timestamps) and the trace simulator (on virtual ones),
//! so what we measure is what we ship.
//!
//! ```
//! use gigawatt_core::{Event, Scheduler, SchedulerConfig, CoreRng, PolicyKind, TypicalPods};
//! use gigawatt_core::{Workload, WorkloadId, TenantId, PriorityClass, DataClass, TaskDemand, GpuDemand, Shape};
//! use gigawatt_units::{GpuMilli, MilliCores, Mebibytes, Timestamp};
//! use rand::SeedableRng;
//!
//! let fleet = gigawatt_fleet::parse(r#"
//! [[site]]
//! id = "lab"
//! name = "Lab"
//! country = "FR"
//! region = "eu-fr"
//! pue = 1.2
//! grid = [{ from = 2026-01-01, capacity_mw = 1 }]
//!   [[site.rack_group]]
//!   prefix = "lab-r"
//!   count = 1
//!   network_domain = "lab-ib"
//!   node_type = "dgx"
//!   nodes_per_rack = 2
//! [node_type.dgx]
//! gpu_model = "H100-SXM"
//! gpus = 8
//! cpu_millicores = 224000
//! memory_mib = 2097152
//! base_power_w = 4600
//! "#, "inline.toml", std::path::Path::new(".")).expect("valid fleet");
//!
//! let policy = PolicyKind::BestFit.build(&TypicalPods::default());
//! let now = Timestamp::from_secs(1_800_000_000);
//! let mut scheduler = Scheduler::new(&fleet, policy, SchedulerConfig::default(), now).expect("scheduler");
//! let mut rng = CoreRng::seed_from_u64(42);
//! let job = Workload {
//!     id: WorkloadId(1),
//!     name: "train-llm".into(),
//!     tenant: TenantId("acme".into()),
//!     priority: PriorityClass::Standard,
//!     data_class: DataClass::Health,
//!     demand: TaskDemand { gpu: GpuDemand::whole(8), gpu_models: vec![], cpu: MilliCores(64_000), memory: Mebibytes(512_000) },
//!     shape: Shape::Single,
//!     duration: None,
//!     time_limit: None,
//!     pins: Default::default(),
//! };
//! let decisions = scheduler.handle(now, Event::Arrival(job), &mut rng).expect("event applies");
//! // The Lab site is in France but holds no HDS certification: health data may not go there,
//! // and there is no other site.
//! assert!(decisions[0].to_string().starts_with(
//!     "w-1 rejected: no site in the fleet may hold health data under HDS, in EU/EEA (operator): "
//! ));
//! ```

pub mod event;
pub mod explain;
pub mod policy;
pub mod quota;
pub mod residency;
pub mod state;

mod accounts;
mod backfill;
mod energy;
mod error;
mod fair_preempt;
mod feasible;
mod gang;
mod index;
mod placement;
mod preempt;
mod queue;
mod reclaim;
mod scheduler;
mod workload;

pub use accounts::{FlavourUse, TenantQuotaUse};
pub use energy::{EnergyUse, billing_month};
pub use error::CoreError;
pub use event::{Decision, Event, TaskPlacement};
pub use explain::{PendingWhy, PlacedWhy, PreemptWhy, Reason, RejectWhy, ScoreTerm, TaskWhy};
pub use policy::{BoundedSearch, Policy, PolicyKind, TypicalPod, TypicalPods, UnknownPolicy};
pub use quota::{
    CohortSpec, FairShareConfig, FlavourQuota, FlavourSpec, QuotaError, QuotaLimit, QuotaWhy, Quotas,
    TenantQuota,
};
pub use residency::{EffectivePolicy, PolicySource, SiteMask};
pub use scheduler::{
    BackfillConfig, DEFAULT_FAIR_PREEMPTIONS, DEFAULT_GANG_PREEMPT_AFTER_S, DEFAULT_MAX_CANDIDATES,
    QueuePosition, Reservation, Scheduler, SchedulerConfig, WorkloadStatus,
};
pub use state::{ClusterState, NodeIdx, NodeState};
pub use workload::{
    DataClass, GpuDemand, PriorityClass, Shape, TaskDemand, TenantId, Topology, Workload, WorkloadId,
};

/// The only source of randomness the core accepts: a seeded, portable ChaCha8 stream.
/// The same seed gives the same stream on every platform.
pub type CoreRng = rand_chacha::ChaCha8Rng;
