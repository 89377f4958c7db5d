//! How the API shows workloads, their decisions and their events.

use gigawatt_core::WorkloadId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::job::{JobSpec, WorkloadKind};
use crate::quota::LinePlace;

/// Where a workload stands. `pending` and `running` are live; the rest are final and
/// never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadState {
    /// Waiting for capacity (a service may have some replicas placed).
    Pending,
    /// Every task placed on its GPUs.
    Running,
    /// Ended with exit code 0 (every task, for a gang or service). Logs written before
    /// this state was renamed say `completed`.
    #[serde(alias = "completed")]
    Succeeded,
    /// Ended with a non-zero exit code.
    Failed,
    /// Cancelled by a user or an operator.
    Cancelled,
    /// Refused: it can never run as submitted (the reason says why).
    Rejected,
    /// Ran past its time limit.
    TimedOut,
}

impl WorkloadState {
    /// Whether the state is final.
    #[must_use]
    pub fn is_final(self) -> bool {
        !matches!(self, WorkloadState::Pending | WorkloadState::Running)
    }

    /// The API spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadState::Pending => "pending",
            WorkloadState::Running => "running",
            WorkloadState::Succeeded => "succeeded",
            WorkloadState::Failed => "failed",
            WorkloadState::Cancelled => "cancelled",
            WorkloadState::Rejected => "rejected",
            WorkloadState::TimedOut => "timed-out",
        }
    }

    /// Parses the API spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<WorkloadState> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// Where one task runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskInfo {
    /// Task index (rank or replica).
    pub task: u32,
    /// Node name.
    pub node: String,
    /// Site id.
    pub site: String,
    /// GPU indices on the node.
    pub gpus: Vec<u16>,
    /// Share taken on each of those GPUs, in thousandths.
    pub gpu_milli: Vec<u32>,
    /// The copy's generation (the log position of its placement).
    #[serde(default)]
    pub generation: u64,
    /// Its process, as its agent reported it: `assigned` (not started yet), `running`
    /// or `exited`.
    #[serde(default)]
    pub process: String,
}

/// A workload as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkloadInfo {
    /// Identity, `w-` and a number.
    pub id: String,
    /// Where it stands.
    pub state: WorkloadState,
    /// Name.
    pub name: String,
    /// Owner.
    pub tenant: String,
    /// What it is.
    pub kind: WorkloadKind,
    /// Priority class.
    pub priority: String,
    /// Data class.
    pub data_class: String,
    /// Number of tasks (1, gang ranks or service replicas).
    pub tasks_total: u32,
    /// Tasks placed now.
    pub tasks_placed: u32,
    /// Where the placed tasks are.
    pub placement: Vec<TaskInfo>,
    /// The latest decision about it, in words.
    pub reason: String,
    /// When it was submitted (RFC 3339).
    pub submitted_at: String,
    /// When its state last changed (RFC 3339).
    pub updated_at: String,
    /// Exit code, once ended by its process.
    pub exit_code: Option<i32>,
    /// Energy its GPUs used so far (its share of each, every copy counted), in joules.
    #[serde(default)]
    pub energy_j: f64,
    /// The same in kilowatt-hours.
    #[serde(default)]
    pub energy_kwh: f64,
    /// Grams of CO2 of the energy of its ended copies, from the carbon intensity of the
    /// sites they ran on (absent when none has a series).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub co2_g: Option<f64>,
    /// Output tokens it reported (`POST /v1/workloads/{id}/usage`).
    #[serde(default)]
    pub tokens: u64,
    /// Energy per reported token, in joules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joules_per_token: Option<f64>,
    /// The job as submitted.
    pub spec: JobSpec,
    /// While it waits: its place in line, what quota says, and its expected start and
    /// planned nodes once a reservation holds them (as `squeue --start` shows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<LinePlace>,
}

/// One page of a list, with the cursor to the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items, oldest first.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One decision or event about a workload, from the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecisionInfo {
    /// Position in the event log.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// The event type, e.g. `workload-placed`.
    pub event: String,
    /// In words.
    pub text: String,
    /// The machine-readable reason (scores, counts of nodes turned away by cause).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Why a workload is where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Explain {
    /// The workload.
    pub id: String,
    /// Where it stands.
    pub state: WorkloadState,
    /// The latest decision, in words.
    pub summary: String,
    /// Every decision and event about it, oldest first.
    pub history: Vec<DecisionInfo>,
    /// While it waits: its place in line, quota and expected start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<LinePlace>,
}

/// Ends a running workload (sent by node agents, or an operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The process's exit code: 0 is `completed`, anything else `failed`.
    pub exit_code: i32,
}

/// One event on the `GET /v1/events` stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WatchEvent {
    /// Position in the event log (also the SSE `id`, for `Last-Event-ID`).
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// The event type, e.g. `workload-placed`.
    pub event: String,
    /// The workload it is about.
    pub workload: String,
    /// Its tenant.
    pub tenant: String,
    /// In words.
    pub text: String,
}

/// Formats a workload id the way the API writes it.
#[must_use]
pub fn format_workload_id(id: WorkloadId) -> String {
    id.to_string()
}

/// Parses `w-123` (or a bare `123`).
#[must_use]
pub fn parse_workload_id(s: &str) -> Option<WorkloadId> {
    let digits = s.strip_prefix("w-").unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(WorkloadId)
}

/// What a running workload produced since its last report (`POST
/// /v1/workloads/{id}/usage`): an inference service reports its output tokens, and the
/// control plane divides its energy by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportUsage {
    /// Output tokens produced since the previous report, at most 10^12.
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub tokens: u64,
}
