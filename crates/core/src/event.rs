//! What goes into the core and what comes out.

use gigawatt_units::Watts;
use serde::{Deserialize, Serialize};

use crate::explain::{PendingWhy, PlacedWhy, PreemptWhy, RejectWhy};
use crate::state::{GpuPick, NewNode};
use crate::workload::{Workload, WorkloadId};

/// Something that happened. The core's state is a fold of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A workload was submitted.
    Arrival(Workload),
    /// A workload finished on its own.
    Completion(WorkloadId),
    /// A user or operator cancelled a workload, running or pending.
    Cancel(WorkloadId),
    /// A node joined.
    NodeAdded(NewNode),
    /// A node was lost or removed: its work goes back to the queue.
    NodeRemoved {
        /// Node name.
        node: String,
    },
    /// A node that was removed is back and may take work.
    NodeRestored {
        /// Node name.
        node: String,
    },
    /// A site's IT power budget changed (a grid phase began, a curtailment, an
    /// operator's decision).
    BudgetChanged {
        /// Site id.
        site: String,
        /// New IT power budget.
        budget: Watts,
    },
    /// The periodic pass: fair-share decay, reclaim of lent quota, reservations for
    /// gangs and backfill into them. Drivers send it every few tens of seconds (the
    /// simulator on its virtual clock, the control plane on the wall clock).
    Tick,
}

/// Where one task of a workload was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPlacement {
    /// Task index (rank, replica).
    pub task: u32,
    /// Node name.
    pub node: String,
    /// GPUs on that node and the share taken on each.
    pub gpus: GpuPick,
    /// The reserved power its tenant is charged for it (power and energy quotas). Logs
    /// written before energy quotas lack it: 0.
    #[serde(default)]
    pub power: Watts,
}

/// What the core decided. Every variant carries its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// Tasks were placed (all of a gang's at once; some or all of a service's replicas).
    Placed {
        /// The workload.
        workload: WorkloadId,
        /// The tasks placed by this decision.
        tasks: Vec<TaskPlacement>,
        /// Why there.
        why: PlacedWhy,
    },
    /// The workload (or some of its tasks) waits for capacity.
    Pending {
        /// The workload.
        workload: WorkloadId,
        /// Why it waits.
        why: PendingWhy,
    },
    /// The workload will never run as submitted.
    Rejected {
        /// The workload.
        workload: WorkloadId,
        /// Why.
        why: RejectWhy,
    },
    /// Running work was stopped and requeued.
    Preempted {
        /// The workload.
        workload: WorkloadId,
        /// Why.
        why: PreemptWhy,
    },
    /// A workload left the system (completed or cancelled) and its resources are free.
    Released {
        /// The workload.
        workload: WorkloadId,
    },
}

impl Decision {
    /// The workload the decision is about.
    #[must_use]
    pub fn workload(&self) -> WorkloadId {
        match self {
            Decision::Placed { workload, .. }
            | Decision::Pending { workload, .. }
            | Decision::Rejected { workload, .. }
            | Decision::Preempted { workload, .. }
            | Decision::Released { workload } => *workload,
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Placed { workload, why, .. } => write!(f, "{workload} placed: {why}"),
            Decision::Pending { workload, why } => write!(f, "{workload} pending: {why}"),
            Decision::Rejected { workload, why } => write!(f, "{workload} rejected: {why}"),
            Decision::Preempted { workload, why } => write!(f, "{workload} preempted: {why}"),
            Decision::Released { workload } => write!(f, "{workload} released"),
        }
    }
}
