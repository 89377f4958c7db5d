//! The events of the log.

use gigawatt_api::{Role, RunSpec, WorkloadKind, WorkloadState};
use gigawatt_core::{PendingWhy, PlacedWhy, PreemptWhy, RejectWhy, TaskPlacement, Workload, WorkloadId};
use gigawatt_units::Watts;
use serde::{Deserialize, Serialize};

/// One entry of the log: its position, when it happened, and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position, dense from 1.
    pub seq: u64,
    /// When the control plane appended it (Unix milliseconds, wall clock).
    pub at_ms: i64,
    /// The tenant it concerns, if any (used to filter event streams).
    pub tenant: Option<String>,
    /// What happened.
    pub event: LogEvent,
}

/// Everything that changes the control plane's state. Facts, not commands: placements
/// are recorded as decided, so replay never re-runs a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum LogEvent {
    /// The log was created. `id_key` keys the workload id permutation, so ids reveal
    /// nothing about how many workloads other tenants submitted.
    Initialized {
        /// Secret key for id minting.
        id_key: u64,
    },
    /// A tenant was created.
    TenantCreated {
        /// Identity.
        tenant: String,
        /// Display name.
        name: String,
    },
    /// A token was issued. Only the SHA-256 of its secret is kept.
    TokenIssued {
        /// Token id (not secret).
        token_id: String,
        /// Label.
        name: String,
        /// Role.
        role: Role,
        /// Tenant, for tenant tokens.
        tenant: Option<String>,
        /// Hex SHA-256 of the secret.
        sha256: String,
    },
    /// A token was revoked.
    TokenRevoked {
        /// Token id.
        token_id: String,
    },
    /// A workload was accepted.
    WorkloadSubmitted {
        /// The core's view of it.
        workload: Workload,
        /// What it is.
        kind: WorkloadKind,
        /// How to run it.
        run: RunSpec,
        /// The client's `Idempotency-Key`, if it sent one.
        idempotency_key: Option<String>,
        /// The token that submitted it.
        by: String,
    },
    /// Tasks were placed.
    WorkloadPlaced {
        /// The workload.
        workload: WorkloadId,
        /// The tasks placed by this decision.
        tasks: Vec<TaskPlacement>,
        /// Why there.
        why: PlacedWhy,
    },
    /// The workload waits for capacity.
    WorkloadPending {
        /// The workload.
        workload: WorkloadId,
        /// Why.
        why: PendingWhy,
    },
    /// The workload can never run as submitted.
    WorkloadRejected {
        /// The workload.
        workload: WorkloadId,
        /// Why.
        why: RejectWhy,
    },
    /// Running work was stopped and requeued.
    WorkloadPreempted {
        /// The workload.
        workload: WorkloadId,
        /// Why.
        why: PreemptWhy,
    },
    /// The workload ended: completed, failed, cancelled or timed out.
    WorkloadFinished {
        /// The workload.
        workload: WorkloadId,
        /// Its final state.
        state: WorkloadState,
        /// The exit code, when its process ended it.
        exit_code: Option<i32>,
        /// Who ended it (a token id), or `None` for the control plane itself.
        by: Option<String>,
    },
    /// Ended workloads left the control plane's memory (and its snapshots) after the
    /// retention period. Their entries stay in the log, where `GET /v1/workloads/{id}`
    /// still finds them; their idempotency keys are forgotten.
    WorkloadsArchived {
        /// The workloads, all ended.
        workloads: Vec<WorkloadId>,
    },
    /// A node stopped taking work; its work was requeued.
    NodeDown {
        /// Node name.
        node: String,
        /// Why.
        reason: String,
    },
    /// A node takes work again.
    NodeUp {
        /// Node name.
        node: String,
        /// Why.
        reason: String,
    },
    /// A site's IT power budget changed.
    BudgetChanged {
        /// Site id.
        site: String,
        /// The new budget.
        budget: Watts,
        /// Who changed it (a token id).
        by: String,
    },
}

impl LogEvent {
    /// The event type as written in the log and the API (`workload-placed`, ...).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            LogEvent::Initialized { .. } => "initialized",
            LogEvent::TenantCreated { .. } => "tenant-created",
            LogEvent::TokenIssued { .. } => "token-issued",
            LogEvent::TokenRevoked { .. } => "token-revoked",
            LogEvent::WorkloadSubmitted { .. } => "workload-submitted",
            LogEvent::WorkloadPlaced { .. } => "workload-placed",
            LogEvent::WorkloadPending { .. } => "workload-pending",
            LogEvent::WorkloadRejected { .. } => "workload-rejected",
            LogEvent::WorkloadPreempted { .. } => "workload-preempted",
            LogEvent::WorkloadFinished { .. } => "workload-finished",
            LogEvent::WorkloadsArchived { .. } => "workloads-archived",
            LogEvent::NodeDown { .. } => "node-down",
            LogEvent::NodeUp { .. } => "node-up",
            LogEvent::BudgetChanged { .. } => "budget-changed",
        }
    }

    /// The workload the event is about, if any.
    #[must_use]
    pub fn workload(&self) -> Option<WorkloadId> {
        match self {
            LogEvent::WorkloadSubmitted { workload, .. } => Some(workload.id),
            LogEvent::WorkloadPlaced { workload, .. }
            | LogEvent::WorkloadPending { workload, .. }
            | LogEvent::WorkloadRejected { workload, .. }
            | LogEvent::WorkloadPreempted { workload, .. }
            | LogEvent::WorkloadFinished { workload, .. } => Some(*workload),
            _ => None,
        }
    }

    /// The event in words, for people (`explain`, the event stream).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            LogEvent::Initialized { .. } => "event log created".into(),
            LogEvent::TenantCreated { tenant, name } => format!("tenant {tenant} ({name}) created"),
            LogEvent::TokenIssued { token_id, role, tenant, .. } => match tenant {
                Some(t) => format!("token {token_id} issued: {role:?} of tenant {t}").to_lowercase(),
                None => format!("token {token_id} issued: {}", role.as_str()),
            },
            LogEvent::TokenRevoked { token_id } => format!("token {token_id} revoked"),
            LogEvent::WorkloadSubmitted { workload, kind, .. } => format!(
                "{} submitted: {} `{}` of {}, {} × {}, {} priority, {} data",
                workload.id,
                kind.as_str(),
                workload.name,
                workload.tenant.0,
                workload.shape.tasks(),
                workload.demand.gpu,
                workload.priority,
                workload.data_class
            ),
            LogEvent::WorkloadPlaced { workload, why, .. } => format!("{workload} placed: {why}"),
            LogEvent::WorkloadPending { workload, why } => format!("{workload} pending: {why}"),
            LogEvent::WorkloadRejected { workload, why } => format!("{workload} rejected: {why}"),
            LogEvent::WorkloadPreempted { workload, why } => format!("{workload} preempted: {why}"),
            LogEvent::WorkloadFinished { workload, state, exit_code, by } => {
                let mut s = format!("{workload} {}", state.as_str());
                if let Some(c) = exit_code {
                    s.push_str(&format!(" with exit code {c}"));
                }
                if let Some(b) = by {
                    s.push_str(&format!(" by token {b}"));
                }
                s
            }
            LogEvent::WorkloadsArchived { workloads } => {
                format!("{} ended workloads archived out of memory (still in the log)", workloads.len())
            }
            LogEvent::NodeDown { node, reason } => format!("node {node} down: {reason}"),
            LogEvent::NodeUp { node, reason } => format!("node {node} up: {reason}"),
            LogEvent::BudgetChanged { site, budget, by } => {
                format!("site {site} budget set to {} by token {by}", budget)
            }
        }
    }
}
