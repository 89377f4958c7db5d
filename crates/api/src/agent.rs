//! The agent protocol: what a node agent (`gigawatt agent`) and the control plane say to
//! each other, over the same HTTP API and tokens as every other client (role `agent`).
//!
//! The protocol is **level-triggered**, as Kubernetes' kubelet is: every heartbeat
//! carries what the node runs and what it measures, and every answer carries the
//! complete set of tasks the node *should* run and the power limits it should apply.
//! The agent converges on that set: it starts what is missing and stops what is not in
//! it. Nothing is lost when a message is, because the next one repeats everything.
//!
//! ```text
//! agent                                   control plane
//!   │ POST /v1/agent/register  (inventory) ─►  node generation g+1 (fences the old agent)
//!   │ ◄─ Registered { generation, intervals }
//!   │ POST /v1/agent/heartbeat (telemetry, tasks) every interval
//!   │ ◄─ Desired { assignments, power limits }
//!   │ POST /v1/agent/logs      (new output of its tasks)
//! ```
//!
//! **Generations.** A node's generation grows at each registration and when the control
//! plane declares the node lost. A heartbeat or report that carries an older one is
//! refused (`409 stale-generation`): that agent must stop everything it runs and register
//! again. Each assignment carries its own generation too (the log position of the
//! placement that created it), so a task requeued elsewhere is never confused with its
//! previous copy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/agent/register`: an agent announces its node and hardware.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegisterAgent {
    /// The node, as named in the fleet file.
    pub node: String,
    /// Where the GPUs come from: `nvml` (real GPUs) or `simulated`.
    pub backend: String,
    /// The address other nodes reach this one at (a gang's `GIGAWATT_MASTER_ADDR`).
    pub address: String,
    /// The agent's version, for operators.
    pub version: String,
    /// The GPUs found, in index order.
    pub gpus: Vec<GpuInventory>,
}

/// One GPU as the agent found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GpuInventory {
    /// Index on the node (what `CUDA_VISIBLE_DEVICES` names).
    pub index: u16,
    /// Stable identity (`GPU-…` from NVML).
    pub uuid: String,
    /// The driver's name for the model (`NVIDIA H100 80GB HBM3`).
    pub name: String,
    /// The catalog model it matches (`H100-SXM`), if any.
    pub model: Option<String>,
    /// Device memory, in MiB.
    pub memory_mib: u64,
    /// Power limit in force, in watts.
    pub power_limit_w: u64,
    /// The default (factory) power limit, in watts.
    pub default_power_limit_w: u64,
    /// Lowest settable power limit, in watts.
    pub min_power_limit_w: u64,
    /// Highest settable power limit, in watts.
    pub max_power_limit_w: u64,
}

/// The answer to a registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Registered {
    /// The node.
    pub node: String,
    /// The node's new generation: every heartbeat must carry it.
    pub generation: u64,
    /// How often to send heartbeats, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// After this long without a heartbeat the control plane declares the node lost and
    /// requeues its work, in milliseconds.
    pub lost_after_ms: u64,
    /// After this long without an answered heartbeat the agent must stop all its work on
    /// its own (self-fencing), in milliseconds. Always shorter than `lost_after_ms`, so
    /// that work requeued elsewhere never overlaps its old copy.
    pub fence_after_ms: u64,
}

/// `POST /v1/agent/heartbeat`: what the node measures and runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Heartbeat {
    /// The node.
    pub node: String,
    /// Its generation, from [`Registered`].
    pub generation: u64,
    /// Measurements.
    pub telemetry: NodeTelemetry,
    /// Every task process the agent knows about: running ones, and ended ones whose end
    /// the control plane has not yet acknowledged.
    pub tasks: Vec<TaskReport>,
}

/// One node's measurements at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeTelemetry {
    /// Total draw of the node's GPUs, in watts.
    pub power_w: u64,
    /// Per GPU, in index order.
    pub gpus: Vec<GpuTelemetry>,
}

/// One GPU's measurements.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GpuTelemetry {
    /// Index on the node.
    pub index: u16,
    /// Draw, in watts.
    pub power_w: u64,
    /// Utilisation, 0–100 %.
    pub utilization_pct: u8,
    /// Device memory in use, in MiB.
    pub memory_used_mib: u64,
    /// Temperature, in °C.
    pub temperature_c: u16,
    /// Power limit in force, in watts.
    pub power_limit_w: u64,
    /// Energy used since the agent started, in joules (a counter).
    pub energy_j: f64,
}

/// A task process as the agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskReport {
    /// Workload id (`w-…`).
    pub workload: String,
    /// Task index (rank or replica).
    pub task: u32,
    /// The assignment's generation.
    pub generation: u64,
    /// Where it stands.
    pub state: TaskState,
    /// Process id (of the group leader), while it runs.
    pub pid: Option<u32>,
    /// Exit code, once it ended by itself. `None` with `state = exited` means it was
    /// killed by a signal.
    pub exit_code: Option<i32>,
    /// Signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Energy its GPUs used while it ran (its share of each), in joules.
    pub energy_j: f64,
    /// Why it could not start, for `failed-to-start`.
    pub message: Option<String>,
}

/// The life of a task process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    /// The process runs.
    Running,
    /// The agent is stopping it (SIGTERM sent, waiting out the grace period).
    Stopping,
    /// It ended (by itself, or killed).
    Exited,
    /// It could not be started (the command does not exist, …); `message` says why.
    FailedToStart,
}

/// The answer to a heartbeat: everything the node should be doing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Desired {
    /// Every task the node should run now. Anything else the agent runs must stop.
    pub assignments: Vec<Assignment>,
    /// Ended tasks the control plane has recorded: the agent may forget them.
    pub acknowledged: Vec<TaskKey>,
    /// Power limit per GPU index, in watts; a GPU not listed runs at its default limit.
    /// (JSON object keys are strings: the index in decimal, `"0"`.)
    #[schema(value_type = BTreeMap<String, u64>)]
    pub power_limits_w: BTreeMap<u16, u64>,
    /// How long to wait between SIGTERM and SIGKILL when stopping a task whose
    /// assignment names no grace of its own, in ms.
    pub grace_ms: u64,
}

/// Names one copy of one task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
pub struct TaskKey {
    /// Workload id (`w-…`).
    pub workload: String,
    /// Task index.
    pub task: u32,
    /// Generation.
    pub generation: u64,
}

/// One task to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Assignment {
    /// Workload id (`w-…`).
    pub workload: String,
    /// Task index: the rank of a gang member, the replica of a service.
    pub task: u32,
    /// Generation of this copy (the log position of its placement).
    pub generation: u64,
    /// GPU indices on this node (`CUDA_VISIBLE_DEVICES`).
    pub gpus: Vec<u16>,
    /// Share of each of those GPUs, in thousandths (1000 = whole).
    pub gpu_milli: Vec<u32>,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Environment, including `CUDA_VISIBLE_DEVICES` and the `GIGAWATT_*` variables.
    pub env: BTreeMap<String, String>,
    /// Time between SIGTERM and SIGKILL when this task is stopped, in ms (the job's
    /// `grace`); absent: [`Desired::grace_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_ms: Option<u64>,
}

/// `GET /v1/agent/changes?node=&generation=&seen=`: a long poll that answers when the
/// node's assignments or power limits changed since version `seen` (or after about 25 s
/// anyway). The agent then sends a heartbeat at once, so that new work starts and
/// stopped work stops without waiting for the next interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentChanges {
    /// The node's change counter; pass it back as `seen`.
    pub version: u64,
}

/// `POST /v1/agent/logs`: new output of one task, appended at `offset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogChunk {
    /// The node sending it.
    pub node: String,
    /// Its generation.
    pub generation: u64,
    /// The task copy.
    pub key: TaskKey,
    /// `stdout` or `stderr`.
    pub stream: LogStream,
    /// Byte offset of `data` in the stream. A chunk that overlaps what the control plane
    /// has is trimmed, so resending is harmless.
    pub offset: u64,
    /// The bytes, base64-encoded (standard alphabet, padded): output is not always
    /// UTF-8, and offsets count bytes.
    pub data_base64: String,
}

/// Which output of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl LogStream {
    /// The API spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// The answer to a log chunk: how many bytes the control plane now holds of that stream,
/// so that the agent resumes from there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogAck {
    /// Bytes held.
    pub length: u64,
}

/// `GET /v1/workloads/{id}/logs`: part of one task's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogSlice {
    /// Workload id.
    pub workload: String,
    /// Task index.
    pub task: u32,
    /// The copy shown (the newest that has output); `null` when none has any yet.
    pub generation: Option<u64>,
    /// Which stream.
    pub stream: LogStream,
    /// Byte offset of `data`.
    pub offset: u64,
    /// The bytes, as UTF-8 (invalid sequences replaced).
    pub data: String,
    /// Where the next read starts.
    pub next_offset: u64,
    /// Whether the stream is complete: the task ended and all its output arrived.
    pub complete: bool,
}

/// `PUT /v1/nodes/{node}/power-limit`: caps a node's GPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SetPowerLimit {
    /// The limit per GPU, in watts; `null` restores the default limit.
    pub watts: Option<u64>,
    /// The GPU indices it applies to; all of the node's GPUs when absent.
    pub gpus: Option<Vec<u16>>,
}

/// An agent as the control plane knows it (`GET /v1/agents`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentInfo {
    /// The node.
    pub node: String,
    /// Its site.
    pub site: String,
    /// `ready` (heartbeats arrive) or `lost` (they stopped; its work was requeued).
    pub state: String,
    /// The node's generation.
    pub generation: u64,
    /// `nvml` or `simulated`.
    pub backend: String,
    /// Where other nodes reach it.
    pub address: String,
    /// Agent version.
    pub version: String,
    /// When it registered (RFC 3339).
    pub registered_at: String,
    /// When its last heartbeat arrived (RFC 3339).
    pub last_heartbeat_at: Option<String>,
    /// Task processes it reported running.
    pub tasks_running: u32,
    /// Its GPUs.
    pub gpus: Vec<GpuInventory>,
    /// The latest measurements.
    pub telemetry: Option<NodeTelemetry>,
}

/// Recent measurements of one node (`GET /v1/nodes/{node}/telemetry`), oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TelemetrySeries {
    /// The node.
    pub node: String,
    /// The samples kept (a bounded window: the newest few minutes).
    pub samples: Vec<TelemetrySample>,
}

/// One heartbeat's measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TelemetrySample {
    /// When it arrived (RFC 3339).
    pub at: String,
    /// What was measured.
    pub telemetry: NodeTelemetry,
}

/// Energy used by one tenant's workloads (`GET /v1/energy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantEnergy {
    /// The tenant.
    pub tenant: String,
    /// Workloads that used any energy.
    pub workloads: u64,
    /// Energy, in joules.
    pub energy_j: f64,
    /// The same in kilowatt-hours.
    pub energy_kwh: f64,
    /// Grams of CO2 of the energy of its ended tasks, on sites with a carbon-intensity
    /// series.
    #[serde(default)]
    pub co2_g: f64,
    /// Grams of CO2 its deferred jobs are expected to save against starting at once.
    #[serde(default)]
    pub co2_saved_g: f64,
}

/// Energy and CO2 of one site on one UTC day (`GET /v1/energy/sites`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SiteEnergy {
    /// The site.
    pub site: String,
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Energy of the tasks that ran there that day, in kWh.
    pub energy_kwh: f64,
    /// Its CO2, in kg; absent when the site has no carbon-intensity series.
    pub co2_kg: Option<f64>,
}

/// Environment variable names the agent sets for every task.
pub mod env {
    /// The workload id.
    pub const WORKLOAD_ID: &str = "GIGAWATT_WORKLOAD_ID";
    /// Task index (rank of a gang member, replica of a service).
    pub const RANK: &str = "GIGAWATT_RANK";
    /// Number of tasks of the workload.
    pub const WORLD_SIZE: &str = "GIGAWATT_WORLD_SIZE";
    /// Address of rank 0's node.
    pub const MASTER_ADDR: &str = "GIGAWATT_MASTER_ADDR";
    /// A port for rank 0's rendezvous, the same for every member.
    pub const MASTER_PORT: &str = "GIGAWATT_MASTER_PORT";
    /// The assignment's generation.
    pub const GENERATION: &str = "GIGAWATT_GENERATION";
    /// The node the task runs on.
    pub const NODE: &str = "GIGAWATT_NODE";
    /// The GPUs given, as CUDA sees them.
    pub const CUDA_VISIBLE_DEVICES: &str = "CUDA_VISIBLE_DEVICES";
}
