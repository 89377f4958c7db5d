//! The agent protocol's routes (`/v1/agent/…`, see `gigawatt_api::agent`) and what
//! people read from it: agents, telemetry, power limits, task output, energy.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use base64::Engine as _;
use gigawatt_api::{
    AgentInfo, ApiErrorBody, Desired, Heartbeat, LogAck, LogChunk, LogSlice, LogStream, RegisterAgent,
    Registered, Role, SetPowerLimit, TaskKey, TaskReport, TaskState, TelemetrySample, TelemetrySeries,
    TenantEnergy, parse_workload_id, rfc3339,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiJson, ApiQuery};
use crate::AppState;
use crate::agents::scope;
use crate::auth::Caller;
use crate::engine::Engine;
use crate::engine::agents::stale_generation;
use crate::error::EngineError;
use crate::http::error::ApiError;
use crate::writer::execute_as;

const SEE_FLEET: [Role; 3] = [Role::Admin, Role::Operator, Role::Auditor];

/// The most task reports one heartbeat may carry.
const MAX_REPORTS: usize = 4096;

/// Logs a refused agent request (an operator must see a misconfigured agent) and
/// passes the error on.
fn refused(node: &str, what: &str, e: impl Into<ApiError>) -> ApiError {
    let e = e.into();
    tracing::warn!(node, code = e.code, "agent {what} refused: {}", e.message);
    e
}

/// Register a node agent. The node's generation is bumped: an older agent of the same
/// node is fenced (its next heartbeat is refused and it stops its work).
#[utoipa::path(
    post, path = "/v1/agent/register", tag = "agents",
    request_body = RegisterAgent,
    responses(
        (status = 200, description = "Registered: the node's generation and the intervals to keep", body = Registered),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 413, description = "Body too large", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Not this node's own agent credential (the refusal is recorded)", body = ApiErrorBody),
        (status = 404, description = "The node is not in the fleet", body = ApiErrorBody),
        (status = 422, description = "The inventory does not match the fleet", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn register(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<RegisterAgent>,
) -> Result<Json<Registered>, ApiError> {
    let node = req.node.clone();
    scope::check_node(&state, &caller, &node, "registration").await?;
    let generation = execute_as(&state, caller.actor(), move |e, now| e.register_node(now, &req))
        .await
        .map_err(|e| refused(&node, "registration", e))?;
    state.agents.registered(&node, generation);
    tracing::info!(node, generation, "agent registered");
    let s = &state.agents.settings;
    Ok(Json(Registered {
        node,
        generation,
        heartbeat_interval_ms: s.heartbeat_interval.as_millis() as u64,
        lost_after_ms: s.lost_after.as_millis() as u64,
        fence_after_ms: s.fence_after().as_millis() as u64,
    }))
}

/// Checks that `node` is held by `generation` (authoritative: the engine's view).
fn check_generation(engine: &Engine, node: &str, generation: u64) -> Result<(), EngineError> {
    if !engine_has_node(engine, node) {
        return Err(EngineError::not_found("node", node));
    }
    if engine.live_generation(node) != Some(generation) {
        return Err(stale_generation(node, generation, engine.view.agents.get(node).map(|a| a.generation)));
    }
    Ok(())
}

fn engine_has_node(engine: &Engine, node: &str) -> bool {
    engine.scheduler.state().node_by_name(node).is_some()
}

/// The reports that change the log: a first report of a current copy running, and
/// exits not recorded yet.
fn to_record(
    engine: &Engine,
    recorded: &std::collections::HashSet<TaskKey>,
    tasks: &[TaskReport],
) -> Vec<TaskReport> {
    tasks
        .iter()
        .filter(|r| {
            let Some(id) = parse_workload_id(&r.workload) else { return false };
            let Some(w) = engine.view.workloads.get(&id) else { return false };
            let run = w.run(r.task);
            let current = run.generation == r.generation && run.generation != 0;
            match r.state {
                TaskState::Running | TaskState::Stopping => current && run.started_at.is_none(),
                TaskState::Exited | TaskState::FailedToStart => {
                    if current {
                        run.exit.is_none()
                    } else {
                        !recorded.contains(&key(r))
                    }
                }
            }
        })
        .cloned()
        .collect()
}

fn key(r: &TaskReport) -> TaskKey {
    TaskKey { workload: r.workload.clone(), task: r.task, generation: r.generation }
}

/// A node's heartbeat: telemetry and the state of its task processes. The answer is
/// everything the node should run now.
#[utoipa::path(
    post, path = "/v1/agent/heartbeat", tag = "agents",
    request_body = Heartbeat,
    responses(
        (status = 200, description = "What the node should run and the power limits to apply", body = Desired),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 413, description = "Body too large", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Not this node's own agent credential, or a task copy not placed on this node (the refusal is recorded)", body = ApiErrorBody),
        (status = 404, description = "The node is not in the fleet", body = ApiErrorBody),
        (status = 409, description = "`stale-generation`: the agent was fenced; stop everything and register again", body = ApiErrorBody),
        (status = 422, description = "A field is wrong", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn heartbeat(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> Result<Json<Desired>, ApiError> {
    let node = hb.node.clone();
    scope::check_node(&state, &caller, &node, "heartbeat").await?;
    if hb.tasks.len() > MAX_REPORTS {
        return Err(ApiError::field("tasks", format!("at most {MAX_REPORTS} task reports per heartbeat")));
    }
    let keys: Vec<TaskKey> = hb.tasks.iter().map(key).collect();
    scope::check_copies(&state, &caller, &node, "task report", &keys).await?;
    let now = crate::now_ms();
    let generation = hb.generation;
    let (live, to_record) = {
        let engine = state.engine.read().await;
        check_generation(&engine, &node, generation).map_err(|e| refused(&node, "heartbeat", e))?;
        let live = match state.agents.get(&node) {
            Some(l) => l,
            None => {
                state.agents.registered(&node, generation);
                state.agents.get(&node).ok_or_else(|| ApiError::internal("registry entry vanished".into()))?
            }
        };
        let (recorded, previous) =
            live.lock().map(|l| (l.recorded.clone(), l.latest.clone())).unwrap_or_default();
        crate::agents::validate::check_heartbeat(&engine, &hb, previous.as_ref(), now)
            .map_err(|e| refused(&node, "heartbeat", e))?;
        (live, to_record(&engine, &recorded, &hb.tasks))
    };
    let exited: Vec<TaskKey> = hb
        .tasks
        .iter()
        .filter(|r| matches!(r.state, TaskState::Exited | TaskState::FailedToStart))
        .map(key)
        .collect();
    state.agents.heard(&node, &live, now, hb.telemetry, hb.tasks);
    if !to_record.is_empty() {
        let n = node.clone();
        let reports = to_record.clone();
        execute_as(&state, caller.actor(), move |e, now| e.agent_reports(now, &n, generation, &reports))
            .await
            .map_err(|e| refused(&node, "task report", e))?;
        if let Ok(mut l) = live.lock() {
            l.recorded.extend(
                to_record
                    .iter()
                    .filter(|r| matches!(r.state, TaskState::Exited | TaskState::FailedToStart))
                    .map(key),
            );
            // Keep only what the agent may still repeat.
            let still: std::collections::HashSet<TaskKey> = exited.iter().cloned().collect();
            l.recorded.retain(|k| still.contains(k));
        }
    }
    let running: std::collections::HashSet<TaskKey> = live
        .lock()
        .map(|l| {
            l.tasks
                .iter()
                .filter(|t| matches!(t.state, TaskState::Running | TaskState::Stopping))
                .map(key)
                .collect()
        })
        .unwrap_or_default();
    let synced = state.agents.synced();
    let engine = state.engine.read().await;
    let core = engine.scheduler.state();
    let oversubscribed =
        core.node_by_name(&node).is_some_and(|i| core.oversubscribed(core.node(i).site as usize));
    let assignments = engine
        .assignments(&node)
        .into_iter()
        .filter(|a| {
            let k = TaskKey { workload: a.workload.clone(), task: a.task, generation: a.generation };
            if running.contains(&k) {
                return true;
            }
            // A new copy waits until every agent's state is known again after a restart,
            // and until the previous copy of the same task stopped.
            let id = parse_workload_id(&a.workload);
            let older = id.is_some_and(|id| state.agents.older_copy_alive(id, a.task, a.generation));
            // On an oversubscribed site, until the power manager made room for it.
            let powered =
                !oversubscribed || id.is_some_and(|id| state.power.admitted(id, a.task, a.generation));
            synced && !older && powered
        })
        .collect();
    // The lower of an operator's limit and the power manager's, per GPU.
    let mut power_limits_w = engine.power_limits(&node);
    for (gpu, w) in state.power.limits(&node) {
        let e = power_limits_w.entry(gpu).or_insert(w);
        *e = (*e).min(w);
    }
    drop(engine);
    Ok(Json(Desired {
        assignments,
        acknowledged: exited,
        power_limits_w,
        grace_ms: state.agents.settings.grace.as_millis() as u64,
    }))
}

/// What `GET /v1/agent/changes` takes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    /// The node.
    pub node: String,
    /// Its generation.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub generation: u64,
    /// The version last seen; absent: answer the current one at once.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub seen: Option<u64>,
}

/// How long a long poll waits at most before answering anyway.
const LONG_POLL: std::time::Duration = std::time::Duration::from_secs(25);

/// Waits until the node's assignments or power limits change (a long poll), so that
/// its agent sends a heartbeat at once.
#[utoipa::path(
    get, path = "/v1/agent/changes", tag = "agents",
    params(ChangesQuery),
    responses(
        (status = 200, description = "The node's change counter, once it differs from `seen` (or after 25 s)", body = gigawatt_api::AgentChanges),
        (status = 400, description = "A query parameter is wrong", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Not this node's own agent credential (the refusal is recorded)", body = ApiErrorBody),
        (status = 404, description = "No such node", body = ApiErrorBody),
        (status = 409, description = "`stale-generation`: the agent was fenced", body = ApiErrorBody),
        (status = 422, description = "A number is out of range", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn changes(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> Result<Json<gigawatt_api::AgentChanges>, ApiError> {
    scope::check_node(&state, &caller, &q.node, "poll").await?;
    for (field, v) in [("generation", Some(q.generation)), ("seen", q.seen)] {
        if let Some(v) = v.filter(|v| i64::try_from(*v).is_err()) {
            return Err(ApiError::field(field, format!("{v} is out of range; give 0..=9223372036854775807")));
        }
    }
    {
        let engine = state.engine.read().await;
        check_generation(&engine, &q.node, q.generation).map_err(|e| refused(&q.node, "poll", e))?;
    }
    let mut rx = state.agents.changes(&q.node);
    let current = *rx.borrow_and_update();
    if q.seen != Some(current) {
        return Ok(Json(gigawatt_api::AgentChanges { version: current }));
    }
    let _ = tokio::time::timeout(LONG_POLL, rx.changed()).await;
    let version = *rx.borrow();
    Ok(Json(gigawatt_api::AgentChanges { version }))
}

/// Output of one of the node's tasks, appended at its offset.
#[utoipa::path(
    post, path = "/v1/agent/logs", tag = "agents",
    request_body = LogChunk,
    responses(
        (status = 200, description = "How many bytes of the stream the control plane holds", body = LogAck),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 413, description = "Body too large", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Not this node's own agent credential, or a task copy not placed on this node (the refusal is recorded)", body = ApiErrorBody),
        (status = 404, description = "No such workload or node, or output is not kept", body = ApiErrorBody),
        (status = 409, description = "`stale-generation`: the agent was fenced", body = ApiErrorBody),
        (status = 422, description = "A field is wrong", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn ship_logs(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(chunk): ApiJson<LogChunk>,
) -> Result<Json<LogAck>, ApiError> {
    let node = chunk.node.clone();
    scope::check_node(&state, &caller, &node, "log chunk").await?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(chunk.data_base64.as_bytes())
        .map_err(|e| ApiError::field("data_base64", format!("not base64: {e}")))?;
    let id = parse_workload_id(&chunk.key.workload)
        .ok_or_else(|| ApiError::field("key.workload", "a workload id, `w-` and a number"))?;
    scope::check_copies(&state, &caller, &node, "log chunk", std::iter::once(&chunk.key)).await?;
    {
        let engine = state.engine.read().await;
        check_generation(&engine, &node, chunk.generation).map_err(|e| refused(&node, "log chunk", e))?;
        let w = engine
            .view
            .workloads
            .get(&id)
            .ok_or_else(|| ApiError::not_found("workload", &chunk.key.workload))?;
        if chunk.key.task as usize >= w.tasks.len() {
            return Err(ApiError::field("key.task", format!("{id} has {} tasks", w.tasks.len())));
        }
    }
    let Some(logs) = &state.logs else {
        return Ok(Json(LogAck { length: chunk.offset.saturating_add(data.len() as u64) }));
    };
    let length = logs
        .append(id, chunk.key.task, chunk.key.generation, chunk.stream, chunk.offset, &data)
        .await
        .map_err(|e| ApiError::unavailable(format!("the output could not be stored: {e}")))?;
    Ok(Json(LogAck { length }))
}

fn agent_info(engine: &Engine, state: &AppState, node: &str) -> Option<AgentInfo> {
    let a = engine.view.agents.get(node)?;
    let live = state.agents.get(node);
    let (last, running, telemetry) = live
        .and_then(|l| {
            let l = l.lock().ok()?;
            let running = l.tasks.iter().filter(|t| t.state == TaskState::Running).count() as u32;
            Some((l.last_seen_ms, running, l.latest.clone()))
        })
        .unwrap_or((None, 0, None));
    let sched = engine.scheduler.state();
    let site = sched
        .node_by_name(node)
        .map(|i| sched.sites[sched.node(i).site as usize].id.clone())
        .unwrap_or_default();
    Some(AgentInfo {
        node: node.to_string(),
        site,
        state: if a.lost.is_some() { "lost".into() } else { "ready".into() },
        generation: a.generation,
        backend: a.backend.clone(),
        address: a.address.clone(),
        version: a.version.clone(),
        registered_at: rfc3339(a.registered_at),
        last_heartbeat_at: last.map(rfc3339),
        tasks_running: running,
        gpus: a.gpus.clone(),
        telemetry,
    })
}

/// Every node agent that ever registered, with its latest telemetry.
#[utoipa::path(
    get, path = "/v1/agents", tag = "agents",
    responses(
        (status = 200, description = "Agents by node name", body = Vec<AgentInfo>),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Tenants do not see the fleet's agents", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_agents(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<AgentInfo>>, ApiError> {
    caller.require(&SEE_FLEET, "listing agents")?;
    let engine = state.engine.read().await;
    Ok(Json(engine.view.agents.keys().filter_map(|n| agent_info(&engine, &state, n)).collect()))
}

/// Recent telemetry of one node: the window the control plane keeps, oldest first.
#[utoipa::path(
    get, path = "/v1/nodes/{name}/telemetry", tag = "agents",
    params(("name" = String, Path, description = "Node name")),
    responses(
        (status = 200, description = "The samples kept", body = TelemetrySeries),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Tenants do not see node telemetry", body = ApiErrorBody),
        (status = 404, description = "No such node, or its agent never registered", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn telemetry(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TelemetrySeries>, ApiError> {
    caller.require(&SEE_FLEET, "reading telemetry")?;
    let live = state.agents.get(&name).ok_or_else(|| ApiError::not_found("node agent", &name))?;
    let samples = live
        .lock()
        .map(|l| l.samples())
        .unwrap_or_default()
        .into_iter()
        .map(|(at, telemetry)| TelemetrySample { at: rfc3339(at), telemetry })
        .collect();
    Ok(Json(TelemetrySeries { node: name, samples }))
}

/// Cap the power of a node's GPUs (or restore their default limit with `watts: null`).
/// The node's agent applies it at its next heartbeat and reports the limit in force.
#[utoipa::path(
    put, path = "/v1/nodes/{name}/power-limit", tag = "agents",
    params(("name" = String, Path, description = "Node name")),
    request_body = SetPowerLimit,
    responses(
        (status = 200, description = "The limits now asked of the node, per GPU index (a decimal string)", body = std::collections::BTreeMap<String, u64>),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 413, description = "Body too large", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Only admins and operators cap power", body = ApiErrorBody),
        (status = 404, description = "No such node", body = ApiErrorBody),
        (status = 422, description = "A field is wrong (GPU index, limit out of range)", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn set_power_limit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SetPowerLimit>,
) -> Result<Json<std::collections::BTreeMap<u16, u64>>, ApiError> {
    caller.require(&[Role::Admin, Role::Operator], "capping power")?;
    let by = caller.token_id.clone();
    let n = name.clone();
    execute_as(&state, caller.actor(), move |e, now| e.set_power_limit(now, &n, req.gpus, req.watts, &by))
        .await?;
    Ok(Json(state.engine.read().await.power_limits(&name)))
}

/// What `GET /v1/workloads/{id}/logs` takes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Task index (default 0).
    pub task: Option<u32>,
    /// `stdout` (default) or `stderr`.
    pub stream: Option<LogStream>,
    /// Byte offset to read from (default 0).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub offset: Option<u64>,
    /// The most bytes to return (default and maximum 1 MiB).
    pub limit: Option<u32>,
}

/// A task's captured output (the newest copy that has any), read from `offset`.
#[utoipa::path(
    get, path = "/v1/workloads/{id}/logs", tag = "workloads",
    params(("id" = String, Path, description = "Workload id"), LogQuery),
    responses(
        (status = 200, description = "Part of the output", body = LogSlice),
        (status = 400, description = "A query parameter is wrong", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "No such workload (or another tenant's)", body = ApiErrorBody),
        (status = 422, description = "No such task", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn read_logs(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Json<LogSlice>, ApiError> {
    let task = q.task.unwrap_or(0);
    let stream = q.stream.unwrap_or(LogStream::Stdout);
    let offset = q.offset.unwrap_or(0);
    if i64::try_from(offset).is_err() {
        return Err(ApiError::field(
            "offset",
            format!("{offset} is out of range; give 0..=9223372036854775807"),
        ));
    }
    let limit = match q.limit {
        None => 1 << 20,
        Some(n) if (1..=1 << 20).contains(&n) => n as usize,
        Some(n) => return Err(ApiError::field("limit", format!("{n} is out of range; give 1..=1048576"))),
    };
    let (wid, final_state, tasks, exited, updated_at) = {
        let engine = state.engine.read().await;
        match super::workloads::visible(&engine, &caller, &id) {
            Ok(w) => {
                let run = w.run(task);
                (w.workload.id, w.state.is_final(), w.tasks.len(), run.exit.is_some(), w.updated_at)
            }
            Err(e) => {
                drop(engine);
                let (w, _) = super::workloads::archived(&state, &caller, &id).await.map_err(|_| e)?;
                (w.workload.id, true, w.tasks.len(), true, w.updated_at)
            }
        }
    };
    if task as usize >= tasks {
        return Err(ApiError::field("task", format!("{id} has tasks 0..{tasks}")));
    }
    let Some(logs) = &state.logs else {
        return Err(ApiError::not_found("logs of", &id).with_message(
            "this control plane keeps no task output (it was started without a data directory)",
        ));
    };
    let generation = logs.newest_generation(wid, task).await;
    let (bytes, size) = match generation {
        Some(g) => logs
            .read(wid, task, g, stream, offset, limit)
            .await
            .map_err(|e| ApiError::unavailable(format!("the output could not be read: {e}")))?,
        None => (Vec::new(), 0),
    };
    let next_offset = offset.saturating_add(bytes.len() as u64);
    // Agents ship all of a task's output before they report its exit; a task whose
    // agent died never reports one, so an ended workload counts as complete a while
    // after it ended.
    let settled = crate::now_ms() - updated_at > 2 * state.agents.settings.lost_after.as_millis() as i64;
    let complete = final_state && (exited || settled) && next_offset >= size;
    Ok(Json(LogSlice {
        workload: wid.to_string(),
        task,
        generation,
        stream,
        offset,
        data: String::from_utf8_lossy(&bytes).into_owned(),
        next_offset,
        complete,
    }))
}

/// Energy used per tenant (ended task copies plus what live ones counted so far). A
/// tenant sees its own.
#[utoipa::path(
    get, path = "/v1/energy", tag = "agents",
    responses(
        (status = 200, description = "Energy per tenant", body = Vec<TenantEnergy>),
        (status = 401, description = "No valid token", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn energy(State(state): State<Arc<AppState>>, caller: Caller) -> Json<Vec<TenantEnergy>> {
    let engine = state.engine.read().await;
    Json(tenant_energy(&engine, &state).into_iter().filter(|t| caller.sees_tenant(&t.tenant)).collect())
}

/// Energy per tenant: what the log recorded plus what live copies counted so far.
#[must_use]
pub fn tenant_energy(engine: &Engine, state: &AppState) -> Vec<TenantEnergy> {
    let mut joules: std::collections::BTreeMap<String, (f64, u64)> =
        engine.view.tenants.keys().map(|t| (t.clone(), (0.0, 0))).collect();
    for (t, j) in &engine.view.tenant_energy {
        joules.entry(t.clone()).or_default().0 += j;
    }
    for w in engine.view.workloads.values().filter(|w| w.energy_j > 0.0) {
        joules.entry(w.workload.tenant.0.clone()).or_default().1 += 1;
    }
    for (id, j) in state.agents.live_energy_all() {
        if let Some(w) = engine.view.workloads.get(&id) {
            let e = joules.entry(w.workload.tenant.0.clone()).or_default();
            e.0 += j;
            if w.energy_j == 0.0 {
                e.1 += 1;
            }
        }
    }
    joules
        .into_iter()
        .map(|(tenant, (j, n))| {
            let co2_g = engine.view.tenant_co2.get(&tenant).copied().unwrap_or(0.0);
            let co2_saved_g = engine.view.tenant_co2_saved.get(&tenant).copied().unwrap_or(0.0);
            TenantEnergy { tenant, workloads: n, energy_j: j, energy_kwh: j / 3.6e6, co2_g, co2_saved_g }
        })
        .collect()
}
