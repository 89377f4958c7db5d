//! The state the log folds into: tenants, tokens, workloads and the fleet's operator
//! overrides (nodes down, budgets). The scheduling core's own state is rebuilt from it
//! (see the server's `engine`), so this is everything a restart needs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gigawatt_api::{GpuInventory, Role, RunSpec, WorkloadKind, WorkloadState};
use gigawatt_core::{Quotas, TaskPlacement, Workload, WorkloadId};
use gigawatt_units::{Timestamp, Watts};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::{LogEvent, Record};

/// A record the view cannot apply: the log is out of order or contradicts itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event log entry {seq} ({kind}): {message}")]
pub struct ViewError {
    /// Position of the offending entry.
    pub seq: u64,
    /// Its type.
    pub kind: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The quota configuration in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotasRecord {
    /// The configuration.
    pub quotas: Quotas,
    /// When it was set (Unix ms).
    pub set_at: i64,
    /// The token that set it.
    pub set_by: String,
}

/// The fleet facts in force (the latest `fleet-in-force` record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetRecord {
    /// Every site, in the fleet file's order.
    pub sites: Vec<crate::event::SiteFacts>,
    /// The residency rule of each data class.
    pub residency: gigawatt_fleet::ResidencyRules,
    /// Since when (Unix ms).
    pub since: i64,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Display name.
    pub name: String,
    /// When it was created (Unix ms).
    pub created_at: i64,
    /// Its residency policy, when it set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRecord>,
}

/// A tenant's residency policy in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// The rule (it narrows the operator's rule of every data class).
    pub rule: gigawatt_fleet::ResidencyRule,
    /// When it was set (Unix ms).
    pub set_at: i64,
    /// Who set it.
    pub set_by: String,
}

/// An API token (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Label.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Tenant, for tenant tokens.
    pub tenant: Option<String>,
    /// Hex SHA-256 of the secret.
    pub sha256: String,
    /// When it was issued (Unix ms).
    pub created_at: i64,
    /// Whether it was revoked.
    pub revoked: bool,
    /// The node an agent token acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// For a join token: until when it may be exchanged (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_expires_at: Option<i64>,
}

/// A node's agent, as the log knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The node's generation: bumped at each registration and each loss.
    pub generation: u64,
    /// `nvml` or `simulated`.
    pub backend: String,
    /// Where other nodes reach it.
    pub address: String,
    /// Agent version.
    pub version: String,
    /// Its GPUs.
    pub gpus: Vec<GpuInventory>,
    /// When it registered (Unix ms).
    pub registered_at: i64,
    /// Why it was lost, if it was (and has not registered since).
    pub lost: Option<String>,
}

/// A workload and everything the log says about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadRecord {
    /// The core's view of it.
    pub workload: Workload,
    /// What it is.
    pub kind: WorkloadKind,
    /// How to run it.
    pub run: RunSpec,
    /// Where it stands.
    pub state: WorkloadState,
    /// Where each task runs, `None` while it waits.
    pub tasks: Vec<Option<TaskPlacement>>,
    /// The latest decision, in words.
    pub reason: String,
    /// Log position of its submission (the queue's FIFO order, the list order).
    pub submitted_seq: u64,
    /// When it was submitted (Unix ms).
    pub submitted_at: i64,
    /// When its state last changed (Unix ms).
    pub updated_at: i64,
    /// When it last became fully placed (Unix ms), for its time limit.
    pub running_since: Option<i64>,
    /// Exit code, when its process ended it.
    pub exit_code: Option<i32>,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// What agents reported of each task's current copy (empty in logs older than the
    /// agents; see [`WorkloadRecord::run`]).
    #[serde(default)]
    pub runs: Vec<TaskRun>,
    /// Energy its tasks' GPUs used, every copy counted, from `task-exited` entries, in
    /// joules.
    #[serde(default)]
    pub energy_j: f64,
    /// Grams of CO2 of that energy, where its sites have a carbon-intensity series.
    #[serde(default)]
    pub co2_g: f64,
    /// Output tokens it reported (inference services), for energy per token.
    #[serde(default)]
    pub tokens: u64,
    /// Its carbon-aware deferral, if it was held back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferral: Option<Deferral>,
}

/// The current copy of one task, as agents reported it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskRun {
    /// The copy's generation: the log position of the placement that created it
    /// (0 while the task is not placed).
    pub generation: u64,
    /// When its process started (Unix ms), once an agent said so.
    pub started_at: Option<i64>,
    /// When the core placed it (Unix ms): its energy quota counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_at: Option<i64>,
    /// How it ended, once an agent said so.
    pub exit: Option<TaskExit>,
}

/// How a task's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskExit {
    /// Exit code, when it exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// Why it never started, if it did not.
    pub message: Option<String>,
    /// When (Unix ms).
    pub at: i64,
}

impl TaskExit {
    /// Whether the process exited by itself with code 0.
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && self.message.is_none()
    }
}

impl WorkloadRecord {
    /// The record a `workload-submitted` entry creates, or `None` for any other entry.
    #[must_use]
    pub fn submitted(r: &Record) -> Option<WorkloadRecord> {
        let LogEvent::WorkloadSubmitted { workload, kind, run, idempotency_key, .. } = &r.event else {
            return None;
        };
        Some(WorkloadRecord {
            workload: workload.clone(),
            kind: *kind,
            run: run.clone(),
            state: WorkloadState::Pending,
            tasks: vec![None; workload.shape.tasks() as usize],
            reason: "submitted".into(),
            submitted_seq: r.seq,
            submitted_at: r.at_ms,
            updated_at: r.at_ms,
            running_since: None,
            exit_code: None,
            idempotency_key: idempotency_key.clone(),
            runs: vec![TaskRun::default(); workload.shape.tasks() as usize],
            energy_j: 0.0,
            co2_g: 0.0,
            tokens: 0,
            deferral: None,
        })
    }

    /// Applies an entry about this (live) workload: placed, pending, preempted,
    /// rejected or finished. Other entries change nothing.
    pub fn apply(&mut self, r: &Record) -> Result<(), String> {
        let id = self.workload.id;
        // Processes outlive decisions (a cancelled task's process ends after the cancel),
        // so what agents report applies to ended workloads too.
        match &r.event {
            LogEvent::TaskStarted { task, generation, .. } => {
                let run = self.run_mut(*task)?;
                if run.generation == *generation {
                    run.started_at = Some(r.at_ms);
                }
                return Ok(());
            }
            LogEvent::UsageReported { tokens, .. } => {
                self.tokens = self.tokens.saturating_add(*tokens);
                return Ok(());
            }
            LogEvent::WorkloadDeferred { until_ms, deadline_ms, site, expected_g, immediate_g, .. } => {
                self.deferral = Some(Deferral {
                    until_ms: *until_ms,
                    deadline_ms: *deadline_ms,
                    site: site.clone(),
                    expected_g: *expected_g,
                    immediate_g: *immediate_g,
                });
                self.reason = format!(
                    "deferred until {} for a cleaner grid ({:.0} g CO2 saved)",
                    gigawatt_api::rfc3339(*until_ms),
                    (immediate_g - expected_g).max(0.0)
                );
                self.updated_at = r.at_ms;
                return Ok(());
            }
            LogEvent::TaskExited {
                task, generation, exit_code, signal, energy_j, message, co2_g, ..
            } => {
                self.energy_j += energy_j;
                self.co2_g += co2_g.unwrap_or(0.0);
                let run = self.run_mut(*task)?;
                if run.generation == *generation {
                    run.exit = Some(TaskExit {
                        exit_code: *exit_code,
                        signal: *signal,
                        message: message.clone(),
                        at: r.at_ms,
                    });
                }
                return Ok(());
            }
            _ => {}
        }
        if self.state.is_final() {
            return Err(format!("{id} already ended ({})", self.state.as_str()));
        }
        let ended = |w: &mut WorkloadRecord, state: WorkloadState, exit_code: Option<i32>| {
            w.state = state;
            w.tasks.iter_mut().for_each(|t| *t = None);
            w.running_since = None;
            w.exit_code = exit_code;
        };
        match &r.event {
            LogEvent::WorkloadPlaced { tasks, .. } => {
                for t in tasks {
                    let slot = self
                        .tasks
                        .get_mut(t.task as usize)
                        .ok_or_else(|| format!("{id} has no task {}", t.task))?;
                    if slot.is_some() {
                        return Err(format!("{id} task {} placed twice", t.task));
                    }
                    *slot = Some(t.clone());
                    *self.run_mut(t.task)? =
                        TaskRun { generation: r.seq, placed_at: Some(r.at_ms), ..TaskRun::default() };
                }
                if self.tasks.iter().all(Option::is_some) {
                    self.state = WorkloadState::Running;
                    self.running_since = Some(r.at_ms);
                }
            }
            LogEvent::WorkloadPending { .. } => {}
            LogEvent::WorkloadPreempted { .. } => {
                self.tasks.iter_mut().for_each(|t| *t = None);
                self.runs.iter_mut().for_each(|r| *r = TaskRun::default());
                self.state = WorkloadState::Pending;
                self.running_since = None;
            }
            LogEvent::WorkloadRejected { .. } => ended(self, WorkloadState::Rejected, None),
            LogEvent::WorkloadFinished { state, exit_code, .. } => {
                if !state.is_final() {
                    return Err(format!("{} is not a final state", state.as_str()));
                }
                ended(self, *state, *exit_code);
            }
            _ => return Ok(()),
        }
        self.reason = r.event.describe();
        self.updated_at = r.at_ms;
        Ok(())
    }

    /// The reserved energy its placed tasks held from their placement (or the start of
    /// the billing period holding `at_ms`) until `at_ms`, at most to the end of its time
    /// limit: the period's start and the watt-seconds, as the core's energy quota counts
    /// them.
    #[must_use]
    pub fn energy_held(&self, at_ms: i64) -> (i64, u64) {
        let (start, _) = gigawatt_core::billing_month(Timestamp(at_ms));
        let ws = self
            .tasks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let t = t.as_ref()?;
                let placed = self.runs.get(i).and_then(|r| r.placed_at).or(self.running_since)?;
                let to = self.workload.time_limit.map_or(at_ms, |l| at_ms.min((Timestamp(placed) + l).0));
                let ms = u128::try_from(to.saturating_sub(placed.max(start.0))).unwrap_or(0);
                u64::try_from(u128::from(t.power.0) * ms / 1000).ok()
            })
            .sum();
        (start.0, ws)
    }

    /// Rebuilds a workload from its own entries of the log (oldest first), for one that
    /// was archived out of the view. `None` if they do not start with its submission.
    #[must_use]
    pub fn from_history(records: &[Record]) -> Option<WorkloadRecord> {
        let (first, rest) = records.split_first()?;
        let mut w = WorkloadRecord::submitted(first)?;
        for r in rest {
            let late = matches!(
                r.event,
                LogEvent::TaskStarted { .. } | LogEvent::TaskExited { .. } | LogEvent::UsageReported { .. }
            );
            if w.state.is_final() && !late {
                continue;
            }
            w.apply(r).ok()?;
        }
        Some(w)
    }

    /// The current copy of task `task`.
    #[must_use]
    pub fn run(&self, task: u32) -> TaskRun {
        self.runs.get(task as usize).cloned().unwrap_or_default()
    }

    fn run_mut(&mut self, task: u32) -> Result<&mut TaskRun, String> {
        let n = self.tasks.len();
        if task as usize >= n {
            return Err(format!("{} has no task {task}", self.workload.id));
        }
        if self.runs.len() < n {
            self.runs.resize(n, TaskRun::default());
        }
        Ok(&mut self.runs[task as usize])
    }

    /// Tasks placed now.
    #[must_use]
    pub fn placed(&self) -> u32 {
        self.tasks.iter().filter(|t| t.is_some()).count() as u32
    }
}

/// The folded state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct View {
    /// Position of the last record applied.
    pub seq: u64,
    /// Key of the legacy workload id permutation (from the `initialized` record).
    pub id_key: u64,
    /// Key of the workload id cipher (from the `initialized` record), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_secret: Option<String>,
    /// Workloads submitted so far (the id counter).
    pub submitted: u64,
    /// Tenants by id.
    pub tenants: BTreeMap<String, Tenant>,
    /// Tokens by id.
    pub tokens: BTreeMap<String, Token>,
    /// Workloads by id. Each record is shared (`Arc`), so that a copy of the view for a
    /// snapshot copies the map, not every record; a change clones only the record it
    /// touches, and only while a copy still holds it.
    pub workloads: BTreeMap<WorkloadId, Arc<WorkloadRecord>>,
    /// Nodes taken down by an operator, with why.
    pub nodes_down: BTreeMap<String, String>,
    /// Site budgets set by hand through the API (they override the fleet file's phases).
    pub budgets: BTreeMap<String, Watts>,
    /// The IT budget last applied to each site, by hand or by the schedule.
    #[serde(default)]
    pub applied_budgets: BTreeMap<String, Watts>,
    /// Curtailments by number, cancelled ones included.
    #[serde(default)]
    pub curtailments: BTreeMap<u64, Curtailment>,
    /// Nodes whose agent registered at least once, with its latest registration.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentRecord>,
    /// Power limits operators set, per node and GPU index, in watts.
    #[serde(default)]
    pub power_limits: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Energy used by each tenant's tasks, in joules (archiving keeps it).
    #[serde(default)]
    pub tenant_energy: BTreeMap<String, f64>,
    /// CO2 of each tenant's tasks, in grams (archiving keeps it).
    #[serde(default)]
    pub tenant_co2: BTreeMap<String, f64>,
    /// CO2 each tenant's deferred jobs are expected to save against starting at once, in
    /// grams.
    #[serde(default)]
    pub tenant_co2_saved: BTreeMap<String, f64>,
    /// Energy (J) and CO2 (g) per site and UTC day (days since 1970-01-01): each task's
    /// energy spread evenly over the time it ran.
    #[serde(default)]
    pub site_days: BTreeMap<String, BTreeMap<i64, (f64, f64)>>,
    /// Per tenant, the energy its ended tasks held in their last billing period (a
    /// calendar month, UTC): the period's first instant (Unix ms) and watt-seconds of
    /// reserved power. A restart gives it back to the core's energy quotas.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quota_energy: BTreeMap<String, (i64, u64)>,
    /// The quota configuration in force, with when and by whom it was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<QuotasRecord>,
    /// The fleet facts in force, with since when (absent from logs written before
    /// `fleet-in-force` records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetRecord>,
    /// Token id by secret hash.
    #[serde(skip)]
    token_by_hash: HashMap<String, String>,
    /// Workload by (tenant, idempotency key).
    #[serde(skip)]
    idempotency: HashMap<(String, String), WorkloadId>,
    /// Workloads by submission position (list order and cursors).
    #[serde(skip)]
    by_seq: BTreeMap<u64, WorkloadId>,
    /// Workloads pending or running.
    #[serde(skip)]
    live: usize,
}

const DAY_MS: i64 = 86_400_000;

/// Adds `joules` and `grams` used evenly over `[start, end]` to the days they fell on.
fn spread_over_days(days: &mut BTreeMap<i64, (f64, f64)>, start: i64, end: i64, joules: f64, grams: f64) {
    let (start, end) = (start.min(end), end);
    if end == start {
        let e = days.entry(end.div_euclid(DAY_MS)).or_default();
        e.0 += joules;
        e.1 += grams;
        return;
    }
    let span = (end - start) as f64;
    let mut t = start;
    // A copy runs days, not years; bounded anyway.
    for _ in 0..4000 {
        if t >= end {
            break;
        }
        let day = t.div_euclid(DAY_MS);
        let next = ((day + 1) * DAY_MS).min(end);
        let share = (next - t) as f64 / span;
        let e = days.entry(day).or_default();
        e.0 += joules * share;
        e.1 += grams * share;
        t = next;
    }
}

/// A workload's carbon-aware deferral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deferral {
    /// When it is released to the scheduler (Unix ms).
    pub until_ms: i64,
    /// Its deadline, the latest end (Unix ms).
    pub deadline_ms: i64,
    /// The site planned on.
    pub site: String,
    /// Expected CO2 starting then, grams.
    pub expected_g: f64,
    /// Expected CO2 starting at once, grams.
    pub immediate_g: f64,
}

/// A temporary lower grid budget for a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Curtailment {
    /// Site id.
    pub site: String,
    /// The most the site may draw from the grid, facility side, in watts.
    pub to_w: u64,
    /// Start (Unix ms).
    pub from_ms: i64,
    /// End (Unix ms).
    pub until_ms: i64,
    /// Why.
    pub reason: String,
    /// Who scheduled it.
    pub by: String,
    /// Whether it was called off.
    pub cancelled: bool,
}

impl Curtailment {
    /// Whether it lowers the budget at `t`.
    #[must_use]
    pub fn active_at(&self, t: i64) -> bool {
        !self.cancelled && self.from_ms <= t && t < self.until_ms
    }
}

/// Workload ids are 52-bit, so that every id is exact in a JSON number (2^53).
const ID_BITS: u32 = 52;
const ID_MASK: u64 = (1 << ID_BITS) - 1;

/// A bijection of `0..2^52`: SplitMix64's finaliser with every step reduced mod 2^52
/// (xor-shifts and odd multipliers are invertible there), so distinct inputs give
/// distinct ids.
fn mix52(mut z: u64) -> u64 {
    z &= ID_MASK;
    z = ((z ^ (z >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9)) & ID_MASK;
    z = ((z ^ (z >> 26)).wrapping_mul(0x94d0_49bb_1331_11eb)) & ID_MASK;
    z ^ (z >> 29)
}

/// The id cipher: a balanced Feistel network on 52 bits (two 26-bit halves), 8 rounds,
/// each round's function the first 26 bits of SHA-256(key ‖ round ‖ half). Any round
/// function makes a Feistel network a permutation, so ids never collide.
fn feistel52(key: &[u8], n: u64) -> u64 {
    const HALF: u32 = ID_BITS / 2;
    const HALF_MASK: u64 = (1 << HALF) - 1;
    let (mut left, mut right) = ((n & ID_MASK) >> HALF, n & HALF_MASK);
    // The key (64 hex digits) is one SHA-256 block: hash it once, and each round costs
    // one more block.
    let mut keyed = Sha256::new();
    keyed.update(key);
    for round in 0u8..8 {
        let mut h = keyed.clone();
        h.update([round]);
        h.update(right.to_le_bytes());
        let d = h.finalize();
        let f = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) & HALF_MASK;
        (left, right) = (right, left ^ f);
    }
    (left << HALF) | right
}

impl View {
    /// Applies the next record. Records must come in order, each exactly once.
    pub fn apply(&mut self, r: &Record) -> Result<(), ViewError> {
        let fail = |message: String| ViewError { seq: r.seq, kind: r.event.kind(), message };
        if r.seq != self.seq + 1 {
            return Err(fail(format!("expected entry {}, the log is not dense", self.seq + 1)));
        }
        let at = r.at_ms;
        match &r.event {
            LogEvent::Initialized { id_key, id_secret } => {
                if id_secret
                    .as_ref()
                    .is_some_and(|k| k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()))
                {
                    return Err(fail("the id secret is not 64 hex digits".into()));
                }
                self.id_key = *id_key;
                self.id_secret.clone_from(id_secret);
            }
            LogEvent::TenantCreated { tenant, name, .. } => {
                if self.tenants.contains_key(tenant) {
                    return Err(fail(format!("tenant {tenant} exists")));
                }
                self.tenants
                    .insert(tenant.clone(), Tenant { name: name.clone(), created_at: at, policy: None });
            }
            LogEvent::TokenIssued { token_id, name, role, tenant, sha256, node, join_expires_at, .. } => {
                if self.tokens.contains_key(token_id) {
                    return Err(fail(format!("token {token_id} exists")));
                }
                self.token_by_hash.insert(sha256.clone(), token_id.clone());
                self.tokens.insert(
                    token_id.clone(),
                    Token {
                        name: name.clone(),
                        role: *role,
                        tenant: tenant.clone(),
                        sha256: sha256.clone(),
                        created_at: at,
                        revoked: false,
                        node: node.clone(),
                        join_expires_at: *join_expires_at,
                    },
                );
            }
            LogEvent::TokenRevoked { token_id, .. } => {
                let t = self.tokens.get_mut(token_id).ok_or_else(|| fail(format!("no token {token_id}")))?;
                t.revoked = true;
                self.token_by_hash.remove(&t.sha256);
            }
            // A refusal changes nothing: the record is for auditors.
            LogEvent::AgentRefused { .. } => {}
            LogEvent::WorkloadSubmitted { workload, idempotency_key, .. } => {
                let id = workload.id;
                if self.workloads.contains_key(&id) {
                    return Err(fail(format!("{id} submitted twice")));
                }
                if id != self.id_for(self.submitted) {
                    return Err(fail(format!("{id} is not the id of submission {}", self.submitted)));
                }
                self.submitted += 1;
                if let Some(k) = idempotency_key {
                    self.idempotency.insert((workload.tenant.0.clone(), k.clone()), id);
                }
                self.by_seq.insert(r.seq, id);
                self.live += 1;
                let record = WorkloadRecord::submitted(r).ok_or_else(|| fail("not a submission".into()))?;
                self.workloads.insert(id, Arc::new(record));
            }
            LogEvent::WorkloadPlaced { workload, .. }
            | LogEvent::WorkloadPending { workload, .. }
            | LogEvent::WorkloadPreempted { workload, .. }
            | LogEvent::WorkloadRejected { workload, .. }
            | LogEvent::WorkloadFinished { workload, .. } => {
                let w = self.live_workload(*workload).map_err(fail)?;
                let held = if matches!(
                    r.event,
                    LogEvent::WorkloadPlaced { .. } | LogEvent::WorkloadPending { .. }
                ) {
                    None
                } else {
                    Some((w.workload.tenant.0.clone(), w.energy_held(r.at_ms)))
                };
                w.apply(r).map_err(fail)?;
                if w.state.is_final() {
                    self.live -= 1;
                }
                if let Some((tenant, (period, ws))) = held.filter(|(_, (_, ws))| *ws > 0) {
                    let account = self.quota_energy.entry(tenant).or_insert((period, 0));
                    if account.0 != period {
                        *account = (period, 0);
                    }
                    account.1 = account.1.saturating_add(ws);
                }
            }
            LogEvent::WorkloadsArchived { workloads } => {
                for id in workloads {
                    let w = self.workloads.get(id).ok_or_else(|| fail(format!("unknown workload {id}")))?;
                    if !w.state.is_final() {
                        return Err(fail(format!(
                            "{id} is {}, only ended workloads are archived",
                            w.state.as_str()
                        )));
                    }
                    if let Some(k) = &w.idempotency_key {
                        self.idempotency.remove(&(w.workload.tenant.0.clone(), k.clone()));
                    }
                    self.by_seq.remove(&w.submitted_seq);
                    self.workloads.remove(id);
                }
            }
            LogEvent::NodeDown { node, reason, .. } => {
                self.nodes_down.insert(node.clone(), reason.clone());
            }
            LogEvent::NodeUp { node, .. } => {
                self.nodes_down.remove(node);
            }
            LogEvent::FleetInForce { sites, residency } => {
                self.fleet =
                    Some(FleetRecord { sites: sites.clone(), residency: residency.clone(), since: r.at_ms });
            }
            LogEvent::TenantPolicySet { tenant, rule, by } => {
                let Some(t) = self.tenants.get_mut(tenant) else {
                    return Err(fail(format!("tenant {tenant} does not exist")));
                };
                t.policy = (!rule.is_anywhere()).then(|| PolicyRecord {
                    rule: rule.clone(),
                    set_at: r.at_ms,
                    set_by: by.clone(),
                });
            }
            LogEvent::QuotasSet { quotas, by } => {
                self.quotas =
                    Some(QuotasRecord { quotas: quotas.clone(), set_at: r.at_ms, set_by: by.clone() });
            }
            LogEvent::BudgetChanged { site, budget, scheduled, .. } => {
                if !*scheduled {
                    self.budgets.insert(site.clone(), *budget);
                }
                self.applied_budgets.insert(site.clone(), *budget);
            }
            LogEvent::CurtailmentScheduled { id, site, to_w, from_ms, until_ms, reason, by } => {
                if self.curtailments.contains_key(id) {
                    return Err(fail(format!("curtailment {id} scheduled twice")));
                }
                self.curtailments.insert(
                    *id,
                    Curtailment {
                        site: site.clone(),
                        to_w: *to_w,
                        from_ms: *from_ms,
                        until_ms: *until_ms,
                        reason: reason.clone(),
                        by: by.clone(),
                        cancelled: false,
                    },
                );
            }
            LogEvent::CurtailmentCancelled { id, .. } => match self.curtailments.get_mut(id) {
                Some(c) => c.cancelled = true,
                None => return Err(fail(format!("curtailment {id} cancelled but never scheduled"))),
            },
            LogEvent::PowerAlert { .. } | LogEvent::PowerCapped { .. } | LogEvent::PowerUncapped { .. } => {}
            LogEvent::UsageReported { workload, .. } | LogEvent::WorkloadDeferred { workload, .. } => {
                if let LogEvent::WorkloadDeferred { expected_g, immediate_g, .. } = &r.event
                    && let Some(tenant) = &r.tenant
                {
                    *self.tenant_co2_saved.entry(tenant.clone()).or_default() +=
                        (immediate_g - expected_g).max(0.0);
                }
                if let Some(w) = self.workloads.get_mut(workload) {
                    Arc::make_mut(w).apply(r).map_err(fail)?;
                }
            }
            LogEvent::NodeRegistered { node, generation, backend, address, version, gpus } => {
                if let Some(old) = self.agents.get(node)
                    && old.generation >= *generation
                {
                    return Err(fail(format!(
                        "node {node} registered with generation {generation}, not above {}",
                        old.generation
                    )));
                }
                let agent = AgentRecord {
                    generation: *generation,
                    backend: backend.clone(),
                    address: address.clone(),
                    version: version.clone(),
                    gpus: gpus.clone(),
                    registered_at: at,
                    lost: None,
                };
                self.agents.insert(node.clone(), agent);
            }
            LogEvent::NodeLost { node, generation, reason } => {
                let agent =
                    self.agents.get_mut(node).ok_or_else(|| fail(format!("node {node} never registered")))?;
                if agent.generation >= *generation {
                    return Err(fail(format!("node {node} lost at generation {generation}, not above")));
                }
                agent.generation = *generation;
                agent.lost = Some(reason.clone());
            }
            LogEvent::TaskStarted { workload, .. } | LogEvent::TaskExited { workload, .. } => {
                if let LogEvent::TaskExited { energy_j, co2_g, site, started_ms, .. } = &r.event {
                    if let Some(tenant) = &r.tenant {
                        *self.tenant_energy.entry(tenant.clone()).or_default() += energy_j;
                        *self.tenant_co2.entry(tenant.clone()).or_default() += co2_g.unwrap_or(0.0);
                    }
                    if let Some(site) = site {
                        let days = self.site_days.entry(site.clone()).or_default();
                        spread_over_days(
                            days,
                            started_ms.unwrap_or(r.at_ms),
                            r.at_ms,
                            *energy_j,
                            co2_g.unwrap_or(0.0),
                        );
                    }
                }
                // A workload archived meanwhile has nothing left to update.
                if let Some(w) = self.workloads.get_mut(workload) {
                    Arc::make_mut(w).apply(r).map_err(fail)?;
                }
            }
            LogEvent::PowerLimitSet { node, gpus, watts, .. } => {
                let limits = self.power_limits.entry(node.clone()).or_default();
                for g in gpus {
                    match watts {
                        Some(w) => limits.insert(*g, *w),
                        None => limits.remove(g),
                    };
                }
                if limits.is_empty() {
                    self.power_limits.remove(node);
                }
            }
        }
        self.seq = r.seq;
        Ok(())
    }

    fn live_workload(&mut self, id: WorkloadId) -> Result<&mut WorkloadRecord, String> {
        match self.workloads.get_mut(&id) {
            None => Err(format!("unknown workload {id}")),
            Some(w) if w.state.is_final() => Err(format!("{id} already ended ({})", w.state.as_str())),
            Some(w) => Ok(Arc::make_mut(w)),
        }
    }

    /// A copy of what a snapshot holds, for serialising it while the view moves on.
    /// Cheap: workload records are shared, and the indexes are left out
    /// ([`View::reindex`] rebuilds them when the snapshot is loaded).
    #[must_use]
    pub fn snapshot_copy(&self) -> View {
        View {
            seq: self.seq,
            id_key: self.id_key,
            id_secret: self.id_secret.clone(),
            submitted: self.submitted,
            tenants: self.tenants.clone(),
            tokens: self.tokens.clone(),
            workloads: self.workloads.clone(),
            nodes_down: self.nodes_down.clone(),
            budgets: self.budgets.clone(),
            applied_budgets: self.applied_budgets.clone(),
            curtailments: self.curtailments.clone(),
            agents: self.agents.clone(),
            power_limits: self.power_limits.clone(),
            tenant_energy: self.tenant_energy.clone(),
            tenant_co2: self.tenant_co2.clone(),
            tenant_co2_saved: self.tenant_co2_saved.clone(),
            site_days: self.site_days.clone(),
            quota_energy: self.quota_energy.clone(),
            quotas: self.quotas.clone(),
            fleet: self.fleet.clone(),
            // Every field is named, none defaulted with `..`: a field added to the view
            // and forgotten here would be lost by every restart from a snapshot.
            token_by_hash: HashMap::new(),
            idempotency: HashMap::new(),
            by_seq: BTreeMap::new(),
            live: 0,
        }
    }

    /// Rebuilds the indexes a snapshot does not carry. Call after deserialising one.
    pub fn reindex(&mut self) {
        self.token_by_hash = self
            .tokens
            .iter()
            .filter(|(_, t)| !t.revoked)
            .map(|(id, t)| (t.sha256.clone(), id.clone()))
            .collect();
        self.idempotency.clear();
        self.by_seq.clear();
        self.live = 0;
        for (id, w) in &self.workloads {
            if let Some(k) = &w.idempotency_key {
                self.idempotency.insert((w.workload.tenant.0.clone(), k.clone()), *id);
            }
            self.by_seq.insert(w.submitted_seq, *id);
            if !w.state.is_final() {
                self.live += 1;
            }
        }
    }

    /// The live token with this secret hash.
    #[must_use]
    pub fn token_by_hash(&self, sha256: &str) -> Option<(&str, &Token)> {
        let id = self.token_by_hash.get(sha256)?;
        self.tokens.get(id).filter(|t| !t.revoked).map(|t| (id.as_str(), t))
    }

    /// The workload a tenant already submitted under this idempotency key.
    #[must_use]
    pub fn by_idempotency_key(&self, tenant: &str, key: &str) -> Option<WorkloadId> {
        self.idempotency.get(&(tenant.to_string(), key.to_string())).copied()
    }

    /// Workloads in submission order, starting after submission position `after`.
    pub fn workloads_after(&self, after: u64) -> impl Iterator<Item = &WorkloadRecord> + '_ {
        self.by_seq.range(after + 1..).filter_map(|(_, id)| self.workloads.get(id).map(Arc::as_ref))
    }

    /// Workloads pending or running.
    #[must_use]
    pub fn live(&self) -> usize {
        self.live
    }

    /// The id of the `n`th submission (from 0): `n` enciphered, so ids are unique but
    /// unpredictable and unlinkable: however many of its own ids a tenant collects, they
    /// say nothing of how many workloads others submitted. The cipher is an 8-round
    /// Feistel network on 52 bits whose round function is SHA-256 keyed with the log's
    /// 256-bit secret (FF1's construction, with SHA-256 in place of AES; by Luby and
    /// Rackoff, a pseudorandom permutation while SHA-256 is a pseudorandom function).
    /// Logs created before the secret existed keep their legacy permutation (an
    /// invertible mixer: ids stay what they were).
    #[must_use]
    pub fn id_for(&self, n: u64) -> WorkloadId {
        match self.id_secret.as_deref() {
            Some(secret) => WorkloadId(feistel52(secret.as_bytes(), n)),
            None => WorkloadId(mix52(n ^ self.id_key)),
        }
    }

    /// A digest of the whole state, to compare two folds of the same log.
    #[must_use]
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex(&Sha256::digest(&bytes))
    }
}

/// Lowercase hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_holds_everything_the_digest_covers() {
        let mut v = View { id_key: 7, seq: 3, ..View::default() };
        v.quotas = Some(QuotasRecord { quotas: Quotas::default(), set_at: 1, set_by: "admin".into() });
        v.quota_energy.insert("acme".into(), (1_764_547_200_000, 3_600));
        v.tenant_energy.insert("acme".into(), 1.0);
        let copy = v.snapshot_copy();
        assert_eq!(copy.digest(), v.digest(), "a restart from this snapshot would lose state");
        let back: View =
            serde_json::from_slice(&serde_json::to_vec(&copy).expect("serialises")).expect("loads");
        assert_eq!(back.digest(), v.digest());
    }

    #[test]
    fn enciphered_ids_are_a_permutation_and_do_not_follow_the_count() {
        let v = View { id_secret: Some("ab".repeat(32)), ..View::default() };
        let ids: Vec<u64> = (0..200_000).map(|n| v.id_for(n).0).collect();
        let set: std::collections::BTreeSet<u64> = ids.iter().copied().collect();
        assert_eq!(set.len(), 200_000);
        assert!(ids.iter().all(|id| *id <= ID_MASK));
        // Consecutive submissions' ids are far apart and ordered at random: about half
        // the successive pairs go down.
        let down = ids.windows(2).filter(|w| w[1] < w[0]).count();
        assert!((90_000..110_000).contains(&down), "{down}");
        // Another secret, other ids.
        let w = View { id_secret: Some("cd".repeat(32)), ..View::default() };
        assert!((0..100).filter(|n| v.id_for(*n) == w.id_for(*n)).count() < 2);
    }

    #[test]
    fn ids_are_a_permutation() {
        let v = View { id_key: 0x1234_5678_9abc, ..View::default() };
        let ids: std::collections::BTreeSet<u64> = (0..200_000).map(|n| v.id_for(n).0).collect();
        assert_eq!(ids.len(), 200_000);
        assert!(ids.iter().all(|id| *id <= ID_MASK));
    }
}
