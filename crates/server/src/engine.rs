//! The engine: the folded [`View`] of the log plus the scheduling core, rebuilt from the
//! log at start-up and changed only by the writer (see `writer.rs`).
//!
//! Every command turns into log records. The engine applies them to its view at once, so
//! later commands in the same batch see them; the writer then commits the batch and only
//! afterwards answers anyone. If the commit fails, the engine is thrown away and rebuilt
//! from the log, so memory never holds what the log does not.

pub mod agents;
pub mod budgets;
mod deferral;
pub mod policies;
pub mod quotas;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use gigawatt_api::{CreateTenant, CreateToken, JobSpec, Role, WorkloadState};
use gigawatt_core::{
    CoreRng, Decision, Event, PolicyKind, PreemptWhy, Scheduler, SchedulerConfig, TypicalPods, WorkloadId,
};
use gigawatt_fleet::Fleet;
use gigawatt_store::{LogEvent, Record, Store, StoreError, View};
use gigawatt_units::Timestamp;
use rand::SeedableRng;

use crate::auth::{self, Caller};
use crate::error::EngineError;

/// What the engine needs besides the log.
#[derive(Clone)]
pub struct EngineConfig {
    /// The fleet.
    pub fleet: Fleet,
    /// The placement policy.
    pub policy: PolicyKind,
    /// Seed of the core's RNG (mixed with the log position at each start).
    pub seed: u64,
    /// How long an ended workload stays in memory (and in snapshots) before it is
    /// archived: its entries stay in the log, where `GET` still finds it. `None` keeps
    /// everything.
    pub keep_ended_ms: Option<i64>,
    /// Whether a node takes work only once its agent registered. Off, a node without an
    /// agent takes work as a reservation (nothing runs it); a node whose agent was lost
    /// never does.
    pub require_agents: bool,
    /// How long before a budget cut (a lower grid phase, a curtailment) the core starts
    /// holding it: work is shed and GPUs capped before the cut begins.
    pub budget_lead_ms: i64,
    /// How often the core's periodic pass runs: reservations for gangs, backfill,
    /// reclaim of lent quota, fair-share decay (Slurm's `bf_interval`).
    pub pass_interval_ms: i64,
    /// Best-effort work that waited this long is ordered as standard (0: never).
    pub age_after_s: u64,
}

/// The default budget lead: enough for the power manager to lower limits and for agents
/// to apply them (a few heartbeats).
pub const DEFAULT_BUDGET_LEAD_MS: i64 = 30_000;

/// What the engine keeps of a fleet node for the agent protocol.
#[derive(Debug, Clone)]
pub struct FleetNode {
    /// GPU model id.
    pub gpu_model: Option<String>,
    /// GPUs.
    pub gpu_count: u32,
    /// Settable power limits of its GPU model (catalog minimum to TDP), in watts.
    pub limit_range: Option<(u64, u64)>,
}

/// The default retention of ended workloads: a day, as long as idempotency keys are
/// commonly honoured (Stripe keeps them 24 h).
pub const DEFAULT_KEEP_ENDED_MS: i64 = 24 * 3600 * 1000;

/// The most workloads one `workloads-archived` entry names.
const ARCHIVE_BATCH: usize = 1000;

/// The folded log and the core.
pub struct Engine {
    /// Everything the log says.
    pub view: View,
    /// The scheduling core, rebuilt from the view.
    pub scheduler: Scheduler,
    /// The fleet (names, countries, certifications the core does not keep).
    pub fleet: Fleet,
    rng: CoreRng,
    /// Time limits: (deadline ms, workload), checked lazily against the view.
    timers: BTreeSet<(i64, WorkloadId)>,
    /// Deferred workloads: (release ms, workload).
    deferred: BTreeSet<(i64, WorkloadId)>,
    /// Ended workloads by when they ended, for archiving.
    ended: BTreeSet<(i64, WorkloadId)>,
    keep_ended_ms: Option<i64>,
    /// Records produced since the last commit.
    staged: Vec<Record>,
    /// Live workloads with a task on each node, for the agents' assignments.
    by_node: HashMap<String, BTreeSet<WorkloadId>>,
    /// Fleet nodes by name.
    fleet_nodes: Arc<HashMap<String, FleetNode>>,
    /// Nodes whose assignments or limits changed since the last commit: their agents
    /// are woken to send a heartbeat at once instead of at their next interval.
    touched: BTreeSet<String>,
    require_agents: bool,
    budget_lead_ms: i64,
    /// When the core's periodic pass runs next (fair-share decay, reclaim, reservations
    /// for gangs and backfill into them).
    next_tick_ms: i64,
    /// Period of the pass.
    tick_ms: i64,
    /// Who the command being run acts for: every record it stages carries it (see
    /// [`crate::writer::execute_as`]). `None` between commands and for what the control
    /// plane does by itself.
    pub(crate) actor: Option<gigawatt_store::Actor>,
}

/// How often the core's periodic pass runs by default (Slurm's `bf_interval`).
pub const DEFAULT_PASS_INTERVAL_MS: i64 = 30_000;

/// What start-up found.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Log position of the snapshot used, if any.
    pub snapshot_seq: Option<u64>,
    /// Records replayed after it.
    pub replayed: u64,
    /// Workloads put back into the core.
    pub restored: usize,
}

impl Engine {
    /// Rebuilds the engine from the newest snapshot and the log after it. Records it had to
    /// add (workloads whose node left the fleet, placements after a restart) are staged:
    /// the caller commits them with [`Engine::take_staged`].
    pub async fn load(
        store: &Store,
        config: &EngineConfig,
        now_ms: i64,
    ) -> Result<(Engine, LoadReport), anyhow::Error> {
        let (view, folded) = gigawatt_store::fold(store, true).await?;
        let mut report =
            LoadReport { snapshot_seq: folded.snapshot_seq, replayed: folded.replayed, restored: 0 };
        let engine = Engine::from_view(view, config, now_ms)?;
        report.restored = engine.view.live();
        Ok((engine, report))
    }

    /// Builds the core from a folded view.
    pub fn from_view(view: View, config: &EngineConfig, now_ms: i64) -> Result<Engine, anyhow::Error> {
        let now = Timestamp(now_ms);
        let policy = config.policy.build(&TypicalPods::default());
        let mut core_config = SchedulerConfig::default();
        core_config.backfill.age_after_s = config.age_after_s;
        let scheduler = Scheduler::new(&config.fleet, policy, core_config, now)?;
        let rng = CoreRng::seed_from_u64(config.seed ^ view.seq.rotate_left(17));
        let fleet_nodes: HashMap<String, FleetNode> = config
            .fleet
            .nodes()
            .map(|(_, _, n)| {
                let spec = n.gpu_model.as_deref().and_then(|m| config.fleet.catalog.get(m));
                let node = FleetNode {
                    gpu_model: n.gpu_model.clone(),
                    gpu_count: n.gpu_count,
                    limit_range: spec.map(|g| (g.min_power_limit.0, g.tdp.0)),
                };
                (n.name.clone(), node)
            })
            .collect();
        let mut engine = Engine {
            view,
            scheduler,
            fleet: config.fleet.clone(),
            rng,
            timers: BTreeSet::new(),
            deferred: BTreeSet::new(),
            ended: BTreeSet::new(),
            keep_ended_ms: config.keep_ended_ms,
            staged: Vec::new(),
            by_node: HashMap::new(),
            fleet_nodes: Arc::new(fleet_nodes),
            touched: BTreeSet::new(),
            require_agents: config.require_agents,
            budget_lead_ms: config.budget_lead_ms.max(0),
            next_tick_ms: next_pass(now_ms, config.pass_interval_ms.max(100)),
            tick_ms: config.pass_interval_ms.max(100),
            actor: None,
        };
        // Nodes down, lost or without their agent first (no workloads yet, so this
        // decides nothing).
        let mut unavailable: Vec<String> =
            engine.fleet_nodes.keys().filter(|n| !engine.node_schedulable(n)).cloned().collect();
        unavailable.sort();
        for node in unavailable {
            let event = Event::NodeRemoved { node: node.clone() };
            if let Err(e) = engine.scheduler.handle(now, event, &mut engine.rng) {
                tracing::warn!("node {node} is unavailable in the log but {e}; ignored");
            }
        }
        for node in engine.view.nodes_down.keys().filter(|n| !engine.fleet_nodes.contains_key(*n)) {
            tracing::warn!("node {node} is down in the log but not in the fleet; ignored");
        }
        let budgets: Vec<_> = engine.view.applied_budgets.iter().map(|(s, b)| (s.clone(), *b)).collect();
        for (site, budget) in budgets {
            let event = Event::BudgetChanged { site: site.clone(), budget };
            if let Err(e) = engine.scheduler.handle(now, event, &mut engine.rng) {
                tracing::warn!("site {site} has a budget in the log but {e}; ignored");
            }
        }
        if let Some(q) = &engine.view.quotas
            && let Err(e) = engine.scheduler.set_quotas(q.quotas.clone())
        {
            // Checked before it was logged; a core that now refuses it is a bug to see.
            tracing::error!("the quotas in the log are refused: {e}; running without quotas");
        }
        // Tenants' residency policies, before any workload is restored against them.
        let policies: Vec<(String, gigawatt_fleet::ResidencyRule)> = engine
            .view
            .tenants
            .iter()
            .filter_map(|(t, r)| r.policy.as_ref().map(|p| (t.clone(), p.rule.clone())))
            .collect();
        for (tenant, rule) in policies {
            // Nothing is restored yet: this decides nothing.
            engine.scheduler.set_tenant_policy(&gigawatt_core::TenantId(tenant), rule, &mut engine.rng);
        }
        // The fleet facts in force go into the log before any eviction they cause.
        if engine.view.seq > 0 {
            engine.record_fleet(now_ms)?;
        }
        let live: Vec<WorkloadId> =
            engine.view.workloads_after(0).filter(|w| !w.state.is_final()).map(|w| w.workload.id).collect();
        for id in live {
            let Some(w) = engine.view.workloads.get(&id) else { continue };
            // Still waiting for its low-carbon window: the core hears of it then.
            if let Some(d) =
                w.deferral.as_ref().filter(|d| d.until_ms > now_ms && w.state == WorkloadState::Pending)
            {
                engine.deferred.insert((d.until_ms, id));
                continue;
            }
            let (workload, tasks, since) = (w.workload.clone(), w.tasks.clone(), w.submitted_at);
            // The fleet changed under the log so that this work can never run (its GPU
            // model left, its gang no longer fits any group): reject it, with the reason.
            if let Err(why) = engine.scheduler.can_ever_run(&workload) {
                tracing::warn!("{id} can no longer run on this fleet: {why}; rejected");
                engine.stage(now_ms, LogEvent::WorkloadRejected { workload: id, why })?;
                continue;
            }
            if let Err(e) = engine.scheduler.restore(workload.clone(), &tasks) {
                // The fleet changed under the log (a node or rack left the file, a limit
                // shrank, a site lost a certification its data needs): requeue the
                // workload whole and say why. It is never left running where it may not.
                let why = match &e {
                    gigawatt_core::CoreError::Residency { site, why, .. } => {
                        PreemptWhy::Residency { site: site.clone(), why: why.clone() }
                    }
                    _ => PreemptWhy::NodeLost {
                        node: tasks.iter().flatten().next().map(|t| t.node.clone()).unwrap_or_default(),
                    },
                };
                tracing::warn!("{e}; requeued");
                let waiting = vec![None; tasks.len()];
                engine.scheduler.restore(workload.clone(), &waiting)?;
                engine.stage(now_ms, LogEvent::WorkloadPreempted { workload: id, why })?;
            }
            // Its priority ages from its submission, not from this start; its time limit
            // and energy count from its placement.
            engine.scheduler.restore_waiting_since(id, Timestamp(since));
            if let Some(placed) = engine
                .view
                .workloads
                .get(&id)
                .and_then(|w| w.runs.iter().filter_map(|r| r.placed_at).min().or(w.running_since))
            {
                engine.scheduler.restore_started(id, Timestamp(placed));
            }
        }
        // What ended work held in this billing period counts against energy quotas.
        let period = gigawatt_core::billing_month(Timestamp(now_ms)).0;
        for (tenant, (start, ws)) in &engine.view.quota_energy {
            if *start == period.0 {
                engine.scheduler.restore_energy_used(
                    &gigawatt_core::TenantId(tenant.clone()),
                    gigawatt_units::WattHours::from_watt_seconds_ceil(*ws),
                );
            }
        }
        for w in engine.view.workloads.values().filter(|w| !w.state.is_final()) {
            for t in w.tasks.iter().flatten() {
                engine.by_node.entry(t.node.clone()).or_default().insert(w.workload.id);
            }
        }
        let decisions = engine.scheduler.retry_all(&mut engine.rng);
        engine.stage_decisions(now_ms, decisions)?;
        engine.timers_from_view();
        Ok(engine)
    }

    fn timers_from_view(&mut self) {
        self.ended = self
            .view
            .workloads
            .values()
            .filter(|w| w.state.is_final())
            .map(|w| (w.updated_at, w.workload.id))
            .collect();
        self.timers = self
            .view
            .workloads
            .values()
            .filter_map(|w| Some((w.running_since? + w.run.time_limit_s? as i64 * 1000, w.workload.id)))
            .collect();
    }

    /// Applies a new record to the view and stages it for the next commit.
    pub(crate) fn stage(&mut self, at_ms: i64, event: LogEvent) -> Result<(), EngineError> {
        let tenant = match &event {
            LogEvent::TenantCreated { tenant, .. } => Some(tenant.clone()),
            LogEvent::TokenIssued { tenant, .. } => tenant.clone(),
            LogEvent::WorkloadSubmitted { workload, .. } => Some(workload.tenant.0.clone()),
            LogEvent::TenantPolicySet { tenant, .. } => Some(tenant.clone()),
            e => {
                e.workload().and_then(|id| self.view.workloads.get(&id)).map(|w| w.workload.tenant.0.clone())
            }
        };
        let record = Record { seq: self.view.seq + 1, at_ms, tenant, actor: self.actor.clone(), event };
        let unplaces = matches!(
            record.event,
            LogEvent::WorkloadPreempted { .. }
                | LogEvent::WorkloadFinished { .. }
                | LogEvent::WorkloadRejected { .. }
        );
        // Every node a workload's tasks are on, before and after, hears of a change to
        // it (a stopped copy frees the way for its successor on another node).
        if let Some(id) = record.event.workload()
            && let Some(w) = self.view.workloads.get(&id)
        {
            for t in w.tasks.iter().flatten() {
                self.touched.insert(t.node.clone());
                if unplaces && let Some(set) = self.by_node.get_mut(&t.node) {
                    set.remove(&id);
                }
            }
        }
        if let LogEvent::PowerLimitSet { node, .. } = &record.event {
            self.touched.insert(node.clone());
        }
        if let LogEvent::WorkloadPlaced { workload, tasks, .. } = &record.event {
            for t in tasks {
                self.by_node.entry(t.node.clone()).or_default().insert(*workload);
                self.touched.insert(t.node.clone());
            }
        }
        self.view.apply(&record).map_err(|e| EngineError::internal(format!("{e}")))?;
        if let Some(id) = record.event.workload()
            && let Some(w) = self.view.workloads.get(&id).filter(|w| w.state.is_final())
        {
            self.ended.insert((w.updated_at, id));
        }
        if let LogEvent::WorkloadPlaced { workload, .. } = &record.event
            && let Some(w) = self.view.workloads.get(workload)
            && let (Some(since), Some(limit)) = (w.running_since, w.run.time_limit_s)
        {
            self.timers.insert((since + limit as i64 * 1000, *workload));
        }
        self.staged.push(record);
        Ok(())
    }

    fn stage_decisions(&mut self, at_ms: i64, decisions: Vec<Decision>) -> Result<(), EngineError> {
        for d in decisions {
            let event = match d {
                Decision::Placed { workload, tasks, why } => {
                    let residency = self.placed_residency(workload, &tasks);
                    LogEvent::WorkloadPlaced { workload, tasks, why, residency }
                }
                Decision::Pending { workload, why } => LogEvent::WorkloadPending { workload, why },
                Decision::Rejected { workload, why } => LogEvent::WorkloadRejected { workload, why },
                Decision::Preempted { workload, why } => LogEvent::WorkloadPreempted { workload, why },
                Decision::Released { .. } => continue,
            };
            self.stage(at_ms, event)?;
        }
        Ok(())
    }

    /// Where a placement puts a workload's data and the effective policy it was judged
    /// by, for the log (`None` for a workload the view does not know: a bug).
    fn placed_residency(
        &self,
        id: WorkloadId,
        tasks: &[gigawatt_core::TaskPlacement],
    ) -> Option<gigawatt_store::PlacedResidency> {
        let w = &self.view.workloads.get(&id)?.workload;
        let policy = self.scheduler.effective_policy(w);
        let state = self.scheduler.state();
        let facts = gigawatt_store::SiteFacts::of(&self.fleet);
        let sites = tasks
            .iter()
            .filter_map(|t| {
                let node = state.node_by_name(&t.node)?;
                let site = &state.sites[state.node(node).site as usize];
                let site = facts.iter().find(|f| f.id == site.id)?.clone();
                Some(gigawatt_store::TaskSite { task: t.task, site })
            })
            .collect();
        Some(gigawatt_store::PlacedResidency {
            data_class: w.data_class,
            policy: policy
                .layers
                .into_iter()
                .map(|(source, rule)| gigawatt_store::PolicyLayer { source: source.as_str().into(), rule })
                .collect(),
            sites,
        })
    }

    /// The nodes touched since the last call, whose agents should hear of it now.
    pub fn take_touched(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.touched)
    }

    /// The records produced since the last call, for the writer to commit.
    pub fn take_staged(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.staged)
    }

    /// How many records wait to be committed.
    #[must_use]
    pub fn staged_len(&self) -> usize {
        self.staged.len()
    }

    /// Whether records wait to be committed.
    #[must_use]
    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    fn core(&mut self, now_ms: i64, event: Event) -> Result<(), EngineError> {
        let decisions = self
            .scheduler
            .handle(Timestamp(now_ms), event, &mut self.rng)
            .map_err(|e| EngineError::internal(e.to_string()))?;
        self.stage_decisions(now_ms, decisions)
    }

    /// Logs the fleet facts residency is decided on (sites' countries, jurisdictions and
    /// certifications, and the rules), when they differ from the latest logged: so that
    /// every placement in the log can be checked against the facts in force when it was
    /// made.
    pub(crate) fn record_fleet(&mut self, now_ms: i64) -> Result<(), EngineError> {
        let sites = gigawatt_store::SiteFacts::of(&self.fleet);
        let residency = self.fleet.residency.clone();
        if self.view.fleet.as_ref().is_some_and(|f| f.sites == sites && f.residency == residency) {
            return Ok(());
        }
        self.stage(now_ms, LogEvent::FleetInForce { sites, residency })
    }

    /// Writes the first record of a new log: the id key.
    pub fn initialize(&mut self, now_ms: i64) -> Result<(), EngineError> {
        let id_key = auth::random_u64()? & ((1 << 52) - 1);
        let id_secret = Some(auth::random_hex32()?);
        self.stage(now_ms, LogEvent::Initialized { id_key, id_secret })
    }

    /// Issues the first admin token, if this log never had an admin token (revoked ones
    /// count: revoking every admin token must not mint a new one at the next start).
    /// Returns its secret, to print once. `gigawatt serve` asks for it once it listens,
    /// so a start that fails earlier (a busy port) issues nothing, and the next start
    /// prints one.
    pub fn issue_first_admin(&mut self, now_ms: i64) -> Result<Option<String>, EngineError> {
        if self.view.tokens.values().any(|t| t.role == Role::Admin) {
            return Ok(None);
        }
        let (secret, event) = auth::issue(
            Role::Admin,
            "first admin (printed at first start)",
            auth::Scope::default(),
            FIRST_START,
        )?;
        self.stage(now_ms, event)?;
        Ok(Some(secret))
    }

    /// Submits a job. Returns the workload id and whether it is new (`false` when the
    /// idempotency key was seen before: nothing was created).
    pub fn submit(
        &mut self,
        now_ms: i64,
        caller: &Caller,
        spec: &JobSpec,
        idempotency_key: Option<String>,
    ) -> Result<(WorkloadId, bool), EngineError> {
        let tenant = match (caller.role, &caller.tenant, &spec.tenant) {
            (Role::Tenant, Some(own), None) => own.clone(),
            (Role::Tenant, Some(own), Some(t)) if t == own => own.clone(),
            (Role::Tenant, _, Some(t)) => {
                return Err(EngineError::field(
                    "tenant",
                    format!(
                        "this token belongs to another tenant and may not submit for `{t}`; leave `tenant` out"
                    ),
                ));
            }
            (Role::Admin | Role::Operator, _, Some(t)) => t.clone(),
            (Role::Admin | Role::Operator, _, None) => {
                return Err(EngineError::field(
                    "tenant",
                    "an admin or operator must say which tenant the job is for",
                ));
            }
            (Role::Auditor, _, _) => return Err(EngineError::forbidden("an auditor token is read-only")),
            (Role::Agent, _, _) => return Err(EngineError::forbidden("an agent token does not submit work")),
            (Role::Tenant, None, _) => {
                return Err(EngineError::internal("tenant token without a tenant".into()));
            }
        };
        if !self.view.tenants.contains_key(&tenant) {
            return Err(EngineError::field("tenant", format!("there is no tenant `{tenant}`")));
        }
        if let Some(key) = &idempotency_key
            && let Some(id) = self.view.by_idempotency_key(&tenant, key)
        {
            // The same request again: the original answer. Another request under the same
            // key is a client bug, refused as Stripe's API refuses it.
            let again = spec.validate(id, &tenant).map_err(EngineError::from)?;
            let same =
                self.view.workloads.get(&id).is_none_or(|w| {
                    w.workload == again.workload && w.run == again.run && w.kind == again.kind
                });
            if !same {
                return Err(EngineError::field(
                    "header:Idempotency-Key",
                    format!(
                        "`{key}` was used for {id} with a different request; send the same request to get its answer, or use a new key"
                    ),
                ));
            }
            return Ok((id, false));
        }
        let id = self.view.id_for(self.view.submitted);
        let job = spec.validate(id, &tenant).map_err(EngineError::from)?;
        if let Some(p) = &spec.placement {
            self.check_sites("placement.sites", &p.sites)?;
        }
        let workload = job.workload.clone();
        let deferred = self.plan_deferral(now_ms, spec, &workload)?;
        self.stage(
            now_ms,
            LogEvent::WorkloadSubmitted {
                workload: job.workload,
                kind: job.kind,
                run: job.run,
                idempotency_key,
                by: caller.token_id.clone(),
            },
        )?;
        match deferred {
            Some(d) => self.hold(now_ms, d)?,
            None => self.core(now_ms, Event::Arrival(workload))?,
        }
        Ok((id, true))
    }

    /// Ends a live workload: cancelled by a caller, completed or failed with an exit
    /// code, or timed out. Ending an ended workload is a conflict, so two concurrent
    /// ends resolve to exactly one final state.
    pub fn finish(
        &mut self,
        now_ms: i64,
        id: WorkloadId,
        state: WorkloadState,
        exit_code: Option<i32>,
        by: Option<String>,
    ) -> Result<(), EngineError> {
        let w = self
            .view
            .workloads
            .get(&id)
            .ok_or_else(|| EngineError::not_found("workload", &id.to_string()))?;
        if w.state.is_final() {
            return Err(EngineError::conflict(format!("{id} already ended: {}", w.state.as_str())));
        }
        if state != WorkloadState::Cancelled && w.state != WorkloadState::Running {
            return Err(EngineError::conflict(format!(
                "{id} is {}, not running: only cancel ends it",
                w.state.as_str()
            )));
        }
        self.end(now_ms, id, state, exit_code, by)
    }

    /// Records the end of a live workload and frees what it held.
    fn end(
        &mut self,
        now_ms: i64,
        id: WorkloadId,
        state: WorkloadState,
        exit_code: Option<i32>,
        by: Option<String>,
    ) -> Result<(), EngineError> {
        self.stage(now_ms, LogEvent::WorkloadFinished { workload: id, state, exit_code, by })?;
        // A deferred workload never reached the core.
        if let Some(&held) = self.deferred.iter().find(|(_, w)| *w == id) {
            self.deferred.remove(&held);
            return Ok(());
        }
        self.core(now_ms, Event::Cancel(id))
    }

    /// Ends every running workload past its time limit.
    pub fn expire(&mut self, now_ms: i64) -> Result<(), EngineError> {
        self.release_deferred(now_ms)?;
        while let Some(&(deadline, id)) = self.timers.first() {
            if deadline > now_ms {
                break;
            }
            self.timers.pop_first();
            let due = self.view.workloads.get(&id).is_some_and(|w| {
                w.state == WorkloadState::Running
                    && matches!((w.running_since, w.run.time_limit_s), (Some(s), Some(l)) if s + l as i64 * 1000 <= now_ms)
            });
            if due {
                self.finish(now_ms, id, WorkloadState::TimedOut, None, None)?;
            }
        }
        Ok(())
    }

    /// Archives ended workloads past the retention period (at most a few thousand per
    /// call, so that one batch never grows large).
    pub fn archive(&mut self, now_ms: i64) -> Result<(), EngineError> {
        let Some(keep) = self.keep_ended_ms else { return Ok(()) };
        for _ in 0..4 {
            let mut due = Vec::new();
            while let Some(&(at, id)) = self.ended.first() {
                if at > now_ms.saturating_sub(keep) || due.len() == ARCHIVE_BATCH {
                    break;
                }
                self.ended.pop_first();
                if self.view.workloads.get(&id).is_some_and(|w| w.state.is_final()) {
                    due.push(id);
                }
            }
            if due.is_empty() {
                break;
            }
            self.stage(now_ms, LogEvent::WorkloadsArchived { workloads: due })?;
        }
        Ok(())
    }

    /// When the next time limit, archival or budget change after `now` falls due.
    #[must_use]
    pub fn next_deadline(&self, now: i64) -> Option<i64> {
        let limit = self.timers.first().map(|(d, _)| *d);
        let archive =
            self.keep_ended_ms.and_then(|keep| self.ended.first().map(|(at, _)| at.saturating_add(keep)));
        let deferred = self.deferred.first().map(|(at, _)| *at);
        [limit, archive, deferred, self.next_budget_change(now), Some(self.next_tick_ms)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs the core's periodic pass when it is due; what it decides (placements by
    /// backfill, reclaims) is staged like any other decision. Reservations are derived
    /// state, planned again by the first pass after a restart.
    pub fn tick(&mut self, now_ms: i64) -> Result<(), EngineError> {
        if now_ms < self.next_tick_ms {
            return Ok(());
        }
        self.next_tick_ms = next_pass(now_ms, self.tick_ms);
        self.core(now_ms, Event::Tick)
    }

    /// Creates a tenant; `by` is the caller's token id (logged as the actor).
    pub fn create_tenant(&mut self, now_ms: i64, req: &CreateTenant, by: &str) -> Result<(), EngineError> {
        let id = &req.id;
        let ok = (1..=63).contains(&id.len())
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(EngineError::field(
                "id",
                "1..=63 lowercase letters, digits and `-`, starting with a letter",
            ));
        }
        if self.view.tenants.contains_key(id) {
            return Err(EngineError::conflict(format!("tenant `{id}` exists")));
        }
        let name = req.name.clone().unwrap_or_else(|| id.clone());
        if name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err(EngineError::field("name", "at most 128 characters, no control characters"));
        }
        self.stage(now_ms, LogEvent::TenantCreated { tenant: id.clone(), name, by: Some(by.to_string()) })
    }

    /// Issues a token; returns its id and secret. `by` is the caller's token id.
    pub fn issue_token(
        &mut self,
        now_ms: i64,
        req: &CreateToken,
        by: &str,
    ) -> Result<(String, String), EngineError> {
        if req.name.is_empty() || req.name.chars().count() > 128 || req.name.chars().any(char::is_control) {
            return Err(EngineError::field("name", "give a label of 1..=128 characters"));
        }
        match (req.role, &req.tenant) {
            (Role::Tenant, None) => {
                return Err(EngineError::field("tenant", "a tenant token needs its tenant"));
            }
            (Role::Tenant, Some(t)) if !self.view.tenants.contains_key(t) => {
                return Err(EngineError::field("tenant", format!("there is no tenant `{t}`")));
            }
            (Role::Admin | Role::Operator | Role::Auditor | Role::Agent, Some(_)) => {
                return Err(EngineError::field(
                    "tenant",
                    "only a tenant token belongs to a tenant; leave it out",
                ));
            }
            _ => {}
        }
        match (req.role, &req.node) {
            (Role::Agent, None) => {
                return Err(EngineError::field(
                    "node",
                    "an agent token acts for exactly one node: name it (or enrol the node: `POST /v1/nodes/{name}/enroll`)",
                ));
            }
            (Role::Agent, Some(n)) if self.scheduler.state().node_by_name(n).is_none() => {
                return Err(EngineError::field("node", format!("there is no node `{n}` in the fleet")));
            }
            (Role::Admin | Role::Operator | Role::Auditor | Role::Tenant, Some(_)) => {
                return Err(EngineError::field(
                    "node",
                    "only an agent token belongs to a node; leave it out",
                ));
            }
            _ => {}
        }
        let scope = auth::Scope { tenant: req.tenant.clone(), node: req.node.clone(), join_expires_at: None };
        self.stage_token(now_ms, req.role, &req.name, scope, by)
    }

    /// Mints a token and stages its record; returns its id and secret.
    fn stage_token(
        &mut self,
        now_ms: i64,
        role: Role,
        name: &str,
        scope: auth::Scope,
        by: &str,
    ) -> Result<(String, String), EngineError> {
        let (secret, event) = auth::issue(role, name, scope, by)?;
        let LogEvent::TokenIssued { token_id, .. } = &event else {
            return Err(EngineError::internal("token event".into()));
        };
        let token_id = token_id.clone();
        self.stage(now_ms, event)?;
        Ok((token_id, secret))
    }

    /// Issues a one-time join token for `node`'s agent, good until `expires_at`; returns
    /// its id and secret. `by` is the caller's token id.
    pub fn enroll_node(
        &mut self,
        now_ms: i64,
        node: &str,
        expires_at: i64,
        by: &str,
    ) -> Result<(String, String), EngineError> {
        if self.scheduler.state().node_by_name(node).is_none() {
            return Err(EngineError::not_found("node", node));
        }
        let scope =
            auth::Scope { tenant: None, node: Some(node.to_string()), join_expires_at: Some(expires_at) };
        self.stage_token(now_ms, Role::Agent, &format!("join token of node {node}"), scope, by)
    }

    /// Exchanges a join token for its node's credential, in one commit: the credential
    /// is issued and the join token revoked, so it is good once. Returns the
    /// credential's id and secret.
    pub fn exchange_join_token(
        &mut self,
        now_ms: i64,
        join_token_id: &str,
        node: &str,
    ) -> Result<(String, String), EngineError> {
        let Some(t) = self.view.tokens.get(join_token_id).filter(|t| !t.revoked) else {
            return Err(EngineError::unauthorized("unknown or revoked token"));
        };
        match (&t.node, t.join_expires_at) {
            (Some(n), Some(until)) if n == node && now_ms <= until => {}
            (Some(n), Some(_)) if n != node => {
                return Err(EngineError::forbidden(format!("this join token is for node {n}, not {node}")));
            }
            (Some(_), Some(_)) => {
                return Err(EngineError::unauthorized(
                    "this join token expired; issue another: `gigawatt node enroll NODE`",
                ));
            }
            _ => return Err(EngineError::forbidden("only a join token is exchanged for a node credential")),
        }
        let scope = auth::Scope { tenant: None, node: Some(node.to_string()), join_expires_at: None };
        let (token_id, secret) =
            self.stage_token(now_ms, Role::Agent, &format!("agent of node {node}"), scope, join_token_id)?;
        let by = Some(join_token_id.to_string());
        self.stage(now_ms, LogEvent::TokenRevoked { token_id: join_token_id.to_string(), by })?;
        Ok((token_id, secret))
    }

    /// Records that an agent credential was refused acting for `node` (for auditors).
    pub fn agent_refused(
        &mut self,
        now_ms: i64,
        token_id: &str,
        node: &str,
        what: &str,
        reason: &str,
        count: u64,
    ) -> Result<(), EngineError> {
        // The node name comes from outside: keep the record short and printable.
        let node: String = node.chars().filter(|c| !c.is_control()).take(128).collect();
        self.stage(
            now_ms,
            LogEvent::AgentRefused {
                token_id: token_id.to_string(),
                node,
                what: what.to_string(),
                reason: reason.to_string(),
                count,
            },
        )
    }

    /// Revokes a token; `by` is the caller's token id.
    pub fn revoke_token(&mut self, now_ms: i64, token_id: &str, by: &str) -> Result<(), EngineError> {
        match self.view.tokens.get(token_id) {
            None => Err(EngineError::not_found("token", token_id)),
            Some(t) if t.revoked => {
                Err(EngineError::conflict(format!("token {token_id} is already revoked")))
            }
            Some(_) => self.stage(
                now_ms,
                LogEvent::TokenRevoked { token_id: token_id.to_string(), by: Some(by.to_string()) },
            ),
        }
    }

    /// Takes a node down (its work is requeued) or brings it back; `by` is the caller's
    /// token id.
    pub fn set_node(
        &mut self,
        now_ms: i64,
        node: &str,
        up: bool,
        reason: String,
        by: &str,
    ) -> Result<(), EngineError> {
        let by = Some(by.to_string());
        if self.scheduler.state().node_by_name(node).is_none() {
            return Err(EngineError::not_found("node", node));
        }
        let down = self.view.nodes_down.contains_key(node);
        let was = self.node_schedulable(node);
        match (up, down) {
            (true, false) => Err(EngineError::conflict(format!("node {node} is already up"))),
            (false, true) => Err(EngineError::conflict(format!("node {node} is already down"))),
            (true, true) => {
                self.stage(now_ms, LogEvent::NodeUp { node: node.to_string(), reason, by })?;
                self.node_restored(now_ms, node, was)
            }
            (false, false) => {
                self.stage(now_ms, LogEvent::NodeDown { node: node.to_string(), reason, by })?;
                self.node_removed(now_ms, node, was)
            }
        }
    }
}

/// The actor of what the server does at its first start without a caller (the first
/// admin token).
pub const FIRST_START: &str = "the server's first start";

/// Opens the store and loads the engine, initialising an empty log. Returns the engine
/// and what loading found.
pub async fn open(
    store: &Store,
    config: &EngineConfig,
    now_ms: i64,
) -> Result<(Engine, LoadReport), anyhow::Error> {
    let (mut engine, report) = Engine::load(store, config, now_ms).await?;
    if engine.view.seq == 0 {
        engine.initialize(now_ms).map_err(|e| anyhow::anyhow!("{}", e))?;
    }
    // A no-op when loading logged it already.
    engine.record_fleet(now_ms).map_err(|e| anyhow::anyhow!("{}", e))?;
    // Phases that began and curtailments that started or ended while no server ran.
    engine.apply_budget_schedule(now_ms).map_err(|e| anyhow::anyhow!("{}", e))?;
    let staged = engine.take_staged();
    match store.append(&staged).await {
        Ok(_) => Ok((engine, report)),
        Err(StoreError::Conflict(_)) => {
            // Another process initialised the log at the same moment: load what it wrote.
            Ok(Engine::load(store, config, now_ms).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// When the pass after one at `now_ms` runs: `interval_ms` later, or at the start of the
/// next billing month if that comes first, so that energy quotas are counted again from
/// the first millisecond of the month and running work gets no uncommitted energy.
fn next_pass(now_ms: i64, interval_ms: i64) -> i64 {
    let month_end = gigawatt_core::billing_month(Timestamp(now_ms)).1.0;
    now_ms.saturating_add(interval_ms).min(month_end.max(now_ms + 1))
}
