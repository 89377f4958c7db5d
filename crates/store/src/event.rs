//! The events of the log.

use gigawatt_api::{GpuInventory, Role, RunSpec, WorkloadKind, WorkloadState, rfc3339};
use gigawatt_core::{
    PendingWhy, PlacedWhy, PreemptWhy, Quotas, RejectWhy, TaskPlacement, Workload, WorkloadId,
};
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
    /// Who caused it: the caller whose request it answers, or `None` for what the control
    /// plane did by itself (a timer, a periodic pass, a start) and for records written
    /// before actors were logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// What happened.
    pub event: LogEvent,
}

/// Who caused a record (ISO 27001 A.8.15, SOC 2 CC7.2: who did what, when, from where).
/// Every record a request stages carries its caller, the decisions it set off included
/// (a submission's placement carries the submitter: the request caused it, the core
/// decided it, and the record's reason says why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The token's id (never its secret).
    pub token_id: String,
    /// The token's label: who it was issued to.
    pub principal: String,
    /// Its role.
    pub role: Role,
    /// Its tenant, for tenant tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Its node, for agent tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The address the request came from (`203.0.113.7:51234`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Everything that changes the control plane's state. Facts, not commands: placements
/// are recorded as decided, so replay never re-runs a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum LogEvent {
    /// The log was created. `id_key` keys the workload id permutation, so ids reveal
    /// nothing about how many workloads other tenants submitted.
    Initialized {
        /// Key of the legacy id permutation (logs that have no `id_secret`).
        id_key: u64,
        /// Secret key (64 hex digits, 256 bits) of the id cipher: ids are the submission
        /// counter enciphered (see `View::id_for`). Logs created before it keep the
        /// legacy permutation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id_secret: Option<String>,
    },
    /// A tenant was created.
    TenantCreated {
        /// Identity.
        tenant: String,
        /// Display name.
        name: String,
        /// Who did it: the token id of the caller, or what acted without one (the
        /// server's first start, `gigawatt admin create-token` on the database). Absent from
        /// records written before actors were logged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
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
        /// The one node an agent token acts for (`system:node:<name>` in Kubernetes'
        /// terms). An agent token without one (issued before node binding) acts for no
        /// node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        /// A join token: good only for exchanging, once and before this time (Unix ms),
        /// for its node's credential (`gigawatt node enroll`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        join_expires_at: Option<i64>,
        /// Who did it: the token id of the caller, or what acted without one (the
        /// server's first start, `gigawatt admin create-token` on the database). Absent from
        /// records written before actors were logged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A token was revoked.
    TokenRevoked {
        /// Token id.
        token_id: String,
        /// Who did it: the token id of the caller, or what acted without one (the
        /// server's first start, `gigawatt admin create-token` on the database). Absent from
        /// records written before actors were logged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// An agent credential tried to act outside its scope (for another node, or for a
    /// task its node does not hold) and was refused with 403. Repeats of the same refusal
    /// are recorded at most once a minute per credential and node.
    AgentRefused {
        /// The credential's token id.
        token_id: String,
        /// The node it tried to act for.
        node: String,
        /// What it tried: `registration`, `heartbeat`, `task report`, `log chunk`, `poll`,
        /// `enrolment`.
        what: String,
        /// Why it was refused.
        reason: String,
        /// How many refusals of this kind since the last record (1 for the first).
        #[serde(default = "one")]
        count: u64,
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
        /// Where its data went, and the rule it was judged by: what an auditor checks
        /// (`gigawatt audit verify`). Absent from records written before it was logged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        residency: Option<PlacedResidency>,
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
        /// Who did it: the token id of the caller, or what acted without one (the
        /// server's first start, `gigawatt admin create-token` on the database). Absent from
        /// records written before actors were logged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A node takes work again.
    NodeUp {
        /// Node name.
        node: String,
        /// Why.
        reason: String,
        /// Who did it: the token id of the caller, or what acted without one (the
        /// server's first start, `gigawatt admin create-token` on the database). Absent from
        /// records written before actors were logged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A node agent registered: the node runs work again under a new generation (an
    /// agent of an older one is fenced).
    NodeRegistered {
        /// Node name.
        node: String,
        /// The node's new generation.
        generation: u64,
        /// `nvml` or `simulated`.
        backend: String,
        /// Where other nodes reach it.
        address: String,
        /// Agent version.
        version: String,
        /// The GPUs it found.
        gpus: Vec<GpuInventory>,
    },
    /// A node's agent stopped answering (or was replaced): the node is lost, its work
    /// requeued, and its generation bumped so that the old agent is fenced.
    NodeLost {
        /// Node name.
        node: String,
        /// The node's new generation (no agent holds it until one registers).
        generation: u64,
        /// Why, in words.
        reason: String,
    },
    /// An agent started a task's process.
    TaskStarted {
        /// The workload.
        workload: WorkloadId,
        /// Task index.
        task: u32,
        /// The assignment's generation.
        generation: u64,
        /// Where.
        node: String,
        /// Process id of the group leader.
        pid: Option<u32>,
    },
    /// A task's process ended (by itself, killed, or never started).
    TaskExited {
        /// The workload.
        workload: WorkloadId,
        /// Task index.
        task: u32,
        /// The assignment's generation.
        generation: u64,
        /// Where.
        node: String,
        /// Exit code, when it exited by itself.
        exit_code: Option<i32>,
        /// The signal that killed it, if one did.
        signal: Option<i32>,
        /// Energy its GPUs used while it ran (its share), in joules.
        energy_j: f64,
        /// Why it could not start, if it never did.
        message: Option<String>,
        /// The node's site, for energy per site and day.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        site: Option<String>,
        /// When the copy started (Unix ms), to spread its energy over the days it ran.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_ms: Option<i64>,
        /// Grams of CO2 of that energy, from the site's carbon-intensity series (absent
        /// when the site has none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        co2_g: Option<f64>,
    },
    /// A deferrable workload was held back for a lower-carbon window: the core hears of it
    /// at `until_ms`.
    WorkloadDeferred {
        /// The workload.
        workload: WorkloadId,
        /// When it is released to the scheduler (Unix ms).
        until_ms: i64,
        /// Its deadline: the latest end (Unix ms).
        deadline_ms: i64,
        /// The site whose carbon-intensity series was planned on.
        site: String,
        /// Expected CO2 of the run starting then, in grams.
        expected_g: f64,
        /// Expected CO2 of the run starting at once, in grams.
        immediate_g: f64,
    },
    /// A workload reported what it produced: output tokens of an inference service, for
    /// energy per token.
    UsageReported {
        /// The workload.
        workload: WorkloadId,
        /// Tokens produced since its previous report.
        tokens: u64,
    },
    /// An operator set (or cleared, `watts = None`) the power limit of a node's GPUs.
    PowerLimitSet {
        /// Node name.
        node: String,
        /// GPU indices.
        gpus: Vec<u16>,
        /// The limit per GPU, in watts; `None` restores the default.
        watts: Option<u64>,
        /// Who (a token id).
        by: String,
    },
    /// A site's IT power budget changed.
    BudgetChanged {
        /// Site id.
        site: String,
        /// The new budget.
        budget: Watts,
        /// Who changed it: a token id, or for a scheduled change what caused it (a grid
        /// phase, a curtailment).
        by: String,
        /// Whether the budget schedule (grid phases and curtailments) made the change, as
        /// opposed to an operator setting the budget by hand (which overrides the phases).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        scheduled: bool,
    },
    /// A curtailment (a temporary lower grid budget, e.g. a grid operator's demand
    /// response) was scheduled.
    CurtailmentScheduled {
        /// Its number, from 1.
        id: u64,
        /// Site id.
        site: String,
        /// The most the site may draw from the grid meanwhile, facility side, in watts.
        to_w: u64,
        /// When it starts (Unix ms).
        from_ms: i64,
        /// When it ends (Unix ms).
        until_ms: i64,
        /// Why, in the requester's words.
        reason: String,
        /// Who (a token id).
        by: String,
    },
    /// A curtailment was called off.
    CurtailmentCancelled {
        /// Its number.
        id: u64,
        /// Who (a token id).
        by: String,
    },
    /// Something about power a person must know: a budget that leaves no room for
    /// latency-critical work, a limit no cap can meet.
    PowerAlert {
        /// Site id.
        site: String,
        /// The workload it concerns, if one.
        workload: Option<WorkloadId>,
        /// What, in words.
        message: String,
    },
    /// The fleet facts that residency is decided on, as the server put them in force: at
    /// its first start, and at every start where the fleet file changed them. Each
    /// placement that follows was judged against the latest of these records.
    FleetInForce {
        /// Every site, in the fleet file's order.
        sites: Vec<SiteFacts>,
        /// The residency rule of each data class.
        residency: gigawatt_fleet::ResidencyRules,
    },
    /// A tenant's residency policy was put in force (`anywhere` lifts it). It narrows
    /// the operator's rule of every data class for the tenant's work; work that broke it
    /// was evicted by the records that follow.
    TenantPolicySet {
        /// The tenant.
        tenant: String,
        /// The rule.
        rule: gigawatt_fleet::ResidencyRule,
        /// Who set it (token id).
        by: String,
    },
    /// An operator put a quota configuration in force (the whole document: flavours,
    /// cohorts, tenants, fair share). It replaces the one before.
    QuotasSet {
        /// The configuration, as the core holds it (GPU thousandths, watts).
        quotas: Quotas,
        /// The token that set it.
        by: String,
    },
    /// The power manager held a task's GPUs below their predicted demand.
    PowerCapped {
        /// The workload.
        workload: WorkloadId,
        /// The task.
        task: u32,
        /// Its node.
        node: String,
        /// Its power tier (`training`, `latency-critical`, ...).
        tier: String,
        /// Limit per GPU before, in watts.
        from_w: u64,
        /// Limit per GPU now.
        to_w: u64,
        /// Its predicted demand per GPU.
        wanted_w: u64,
        /// Why, in words: the rack or site that ran out and what it would have drawn.
        why: String,
    },
    /// A capped task's demand has been covered for a while again.
    PowerUncapped {
        /// The workload.
        workload: WorkloadId,
        /// The task.
        task: u32,
        /// Its node.
        node: String,
        /// Limit per GPU now, in watts.
        to_w: u64,
    },
}

/// Where a placement put a workload's data, and the effective residency policy it was
/// judged by, as the control plane saw them at that moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedResidency {
    /// The workload's data class.
    pub data_class: gigawatt_core::DataClass,
    /// The effective policy, layer by layer, operator first.
    pub policy: Vec<PolicyLayer>,
    /// For each task placed, the site and the facts it was judged by.
    pub sites: Vec<TaskSite>,
}

/// One layer of an effective residency policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyLayer {
    /// `operator` (the fleet file's rule for the class), `tenant` or `job`.
    pub source: String,
    /// The rule.
    pub rule: gigawatt_fleet::ResidencyRule,
}

/// The site one task was placed at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSite {
    /// The task.
    pub task: u32,
    /// The site and its facts.
    pub site: SiteFacts,
}

/// What residency is decided on for one site: where it is, whose law applies, what it is
/// certified for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteFacts {
    /// Site id.
    pub id: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    /// The law its operator answers to (`EU`, `US`).
    pub jurisdiction: String,
    /// Certifications it holds (`hds`, `secnumcloud`, ...), sorted.
    pub certifications: Vec<String>,
}

impl SiteFacts {
    /// The facts of a fleet's sites, in file order.
    #[must_use]
    pub fn of(fleet: &gigawatt_fleet::Fleet) -> Vec<SiteFacts> {
        fleet
            .sites
            .iter()
            .map(|s| SiteFacts {
                id: s.id.clone(),
                country: s.country.to_string(),
                jurisdiction: s.jurisdiction.clone(),
                certifications: s.certifications.iter().map(ToString::to_string).collect(),
            })
            .collect()
    }
}

impl std::fmt::Display for SiteFacts {
    /// `valence FR, EU law, hds+secnumcloud`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let certs = if self.certifications.is_empty() { "-".into() } else { self.certifications.join("+") };
        write!(f, "{} {}, {} law, {certs}", self.id, self.country, self.jurisdiction)
    }
}

/// " (by tok-…)" when the record names who acted.
fn by_text(by: &Option<String>) -> String {
    by.as_ref().map(|b| format!(" (by {b})")).unwrap_or_default()
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
            LogEvent::AgentRefused { .. } => "agent-refused",
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
            LogEvent::CurtailmentScheduled { .. } => "curtailment-scheduled",
            LogEvent::CurtailmentCancelled { .. } => "curtailment-cancelled",
            LogEvent::PowerAlert { .. } => "power-alert",
            LogEvent::PowerCapped { .. } => "power-capped",
            LogEvent::PowerUncapped { .. } => "power-uncapped",
            LogEvent::NodeRegistered { .. } => "node-registered",
            LogEvent::NodeLost { .. } => "node-lost",
            LogEvent::TaskStarted { .. } => "task-started",
            LogEvent::TaskExited { .. } => "task-exited",
            LogEvent::PowerLimitSet { .. } => "power-limit-set",
            LogEvent::UsageReported { .. } => "usage-reported",
            LogEvent::WorkloadDeferred { .. } => "workload-deferred",
            LogEvent::QuotasSet { .. } => "quotas-set",
            LogEvent::TenantPolicySet { .. } => "tenant-policy-set",
            LogEvent::FleetInForce { .. } => "fleet-in-force",
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
            | LogEvent::WorkloadFinished { workload, .. }
            | LogEvent::TaskStarted { workload, .. }
            | LogEvent::TaskExited { workload, .. }
            | LogEvent::PowerCapped { workload, .. }
            | LogEvent::UsageReported { workload, .. }
            | LogEvent::WorkloadDeferred { workload, .. }
            | LogEvent::PowerUncapped { workload, .. } => Some(*workload),
            LogEvent::PowerAlert { workload, .. } => *workload,
            _ => None,
        }
    }

    /// The event in words, for people (`explain`, the event stream).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            LogEvent::Initialized { .. } => "event log created".into(),
            LogEvent::TenantCreated { tenant, name, by } => {
                format!("tenant {tenant} ({name}) created{}", by_text(by))
            }
            LogEvent::TokenIssued { token_id, role, tenant, node, join_expires_at, by, .. } => {
                let what = match (tenant, node, join_expires_at) {
                    (Some(t), _, _) => {
                        format!("token {token_id} issued: {role:?} of tenant {t}").to_lowercase()
                    }
                    (None, Some(n), Some(_)) => {
                        format!("token {token_id} issued: one-time join token for node {n}")
                    }
                    (None, Some(n), None) => {
                        format!("token {token_id} issued: {} of node {n}", role.as_str())
                    }
                    (None, None, _) => format!("token {token_id} issued: {}", role.as_str()),
                };
                format!("{what}{}", by_text(by))
            }
            LogEvent::AgentRefused { token_id, node, what, reason, count } => {
                let times = if *count > 1 { format!(" ({count} times)") } else { String::new() };
                format!("agent credential {token_id} refused{times}: {what} for node {node}: {reason}")
            }
            LogEvent::TokenRevoked { token_id, by } => format!("token {token_id} revoked{}", by_text(by)),
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
            LogEvent::WorkloadPending { workload, why } => {
                format!("{workload} pending: {}", why.for_tenant())
            }
            LogEvent::WorkloadRejected { workload, why } => format!("{workload} rejected: {why}"),
            // Read by the preempted workload's tenant too: nothing of the other's work.
            LogEvent::WorkloadPreempted { workload, why } => {
                format!("{workload} preempted: {}", why.without_others())
            }
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
            LogEvent::NodeDown { node, reason, by } => format!("node {node} down: {reason}{}", by_text(by)),
            LogEvent::NodeUp { node, reason, by } => format!("node {node} up: {reason}{}", by_text(by)),
            LogEvent::BudgetChanged { site, budget, by, scheduled: false } => {
                format!("site {site} budget set to {budget} by token {by}")
            }
            LogEvent::BudgetChanged { site, budget, by, scheduled: true } => {
                format!("site {site} IT budget now {budget}: {by}")
            }
            LogEvent::CurtailmentScheduled { id, site, to_w, from_ms, until_ms, reason, by } => format!(
                "curtailment {id} of site {site} to {} from {} until {} scheduled by token {by}: {reason}",
                Watts(*to_w),
                rfc3339(*from_ms),
                rfc3339(*until_ms)
            ),
            LogEvent::CurtailmentCancelled { id, by } => format!("curtailment {id} cancelled by token {by}"),
            LogEvent::PowerAlert { site, message, .. } => format!("power alert at site {site}: {message}"),
            LogEvent::PowerCapped { workload, task, node, tier, from_w, to_w, wanted_w, why } => format!(
                "{workload} task {task} on {node} ({tier}) capped from {from_w} W to {to_w} W per GPU \
                 (it would draw {wanted_w} W): {why}"
            ),
            LogEvent::UsageReported { workload, tokens } => format!("{workload} reported {tokens} tokens"),
            LogEvent::WorkloadDeferred { workload, until_ms, deadline_ms, site, expected_g, immediate_g } => {
                format!(
                    "{workload} deferred until {} for a cleaner grid at site {site}: {expected_g:.0} g CO2 expected \
                 against {immediate_g:.0} g starting now, {:.0} g saved; it ends by its deadline {}",
                    rfc3339(*until_ms),
                    (immediate_g - expected_g).max(0.0),
                    rfc3339(*deadline_ms)
                )
            }
            LogEvent::PowerUncapped { workload, task, node, to_w } => {
                format!(
                    "{workload} task {task} on {node} uncapped: its demand is covered again ({to_w} W per GPU)"
                )
            }
            LogEvent::NodeRegistered { node, generation, backend, gpus, .. } => {
                format!(
                    "node {node} registered by its agent ({backend}, {} GPUs), generation {generation}",
                    gpus.len()
                )
            }
            LogEvent::NodeLost { node, generation, reason } => {
                format!(
                    "node {node} lost: {reason}; its work is requeued and its agent fenced (generation {generation})"
                )
            }
            LogEvent::TaskStarted { workload, task, generation, node, pid } => {
                let pid = pid.map(|p| format!(" as pid {p}")).unwrap_or_default();
                format!("{workload} task {task} started on {node}{pid} (generation {generation})")
            }
            LogEvent::TaskExited {
                workload,
                task,
                generation,
                node,
                exit_code,
                signal,
                energy_j,
                message,
                co2_g,
                ..
            } => {
                let how = match (exit_code, signal, message) {
                    (_, _, Some(m)) => format!("could not start: {m}"),
                    (Some(c), _, None) => format!("exited with code {c}"),
                    (None, Some(s), None) => format!("was killed by signal {s}"),
                    (None, None, None) => "ended".to_string(),
                };
                let co2 = co2_g.map(|g| format!(", {g:.1} g CO2")).unwrap_or_default();
                format!(
                    "{workload} task {task} on {node} {how} (generation {generation}, {:.1} kJ{co2})",
                    energy_j / 1e3
                )
            }
            LogEvent::FleetInForce { sites, residency } => format!(
                "fleet in force: {}; residency: public {}, personal {}, health {}, sensitive {}",
                sites.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                residency.public,
                residency.personal,
                residency.health,
                residency.sensitive
            ),
            LogEvent::TenantPolicySet { tenant, rule, by } => {
                format!("residency policy of tenant {tenant} set by token {by}: {rule}")
            }
            LogEvent::QuotasSet { quotas, by } => format!(
                "quotas set by token {by}: {} flavours, {} cohorts, {} tenants",
                quotas.flavours.len(),
                quotas.cohorts.len(),
                quotas.tenants.len()
            ),
            LogEvent::PowerLimitSet { node, gpus, watts, by } => match watts {
                Some(w) => format!("node {node} GPUs {gpus:?} capped at {w} W by token {by}"),
                None => format!("node {node} GPUs {gpus:?} back to their default power limit by token {by}"),
            },
        }
    }
}

/// Serde's default for a count that older records do not carry.
fn one() -> u64 {
    1
}
