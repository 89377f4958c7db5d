//! `/v1/workloads`: submit, list, get, cancel, complete, explain.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use gigawatt_api::{
    ApiErrorBody, CompleteRequest, Explain, JobSpec, Page, Role, WorkloadInfo, WorkloadKind, WorkloadState,
    parse_workload_id,
};
use gigawatt_core::WorkloadId;
use gigawatt_store::WorkloadRecord;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiJson, ApiQuery, page_limit, parse_cursor};
use crate::AppState;
use crate::auth::Caller;
use crate::convert::{decision_info, workload_info};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::http::error::ApiError;
use crate::writer::execute_as;

/// Finds a workload the caller may see; anything else is the same 404, so that a tenant
/// cannot tell another tenant's workload from one that does not exist.
pub fn visible<'a>(engine: &'a Engine, caller: &Caller, id: &str) -> Result<&'a WorkloadRecord, EngineError> {
    parse_workload_id(id)
        .and_then(|wid| engine.view.workloads.get(&wid).map(Arc::as_ref))
        .filter(|w| caller.sees_tenant(&w.workload.tenant.0))
        .ok_or_else(|| EngineError::not_found("workload", id))
}

/// A workload archived out of memory (ended past the retention period), rebuilt from its
/// own entries in the log if the caller may see it. Same 404 as [`visible`] otherwise.
pub(crate) async fn archived(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(WorkloadRecord, u64), ApiError> {
    let missing = || ApiError::not_found("workload", id);
    let wid = parse_workload_id(id).ok_or_else(missing)?;
    let records = state
        .store
        .workload_history(wid)
        .await
        .map_err(|e| ApiError::unavailable(format!("the event log could not be read: {e}")))?;
    let upto = state.engine.read().await.view.seq;
    let records: Vec<_> = records.into_iter().filter(|r| r.seq <= upto).collect();
    let w = WorkloadRecord::from_history(&records).ok_or_else(missing)?;
    if !caller.sees_tenant(&w.workload.tenant.0) {
        return Err(missing());
    }
    Ok((w, upto))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let bad = || {
        ApiError::bad_request(
            "invalid-header",
            "Idempotency-Key must be 1..=255 printable ASCII characters (a UUID is a good choice)",
            Some("header:Idempotency-Key".into()),
        )
    };
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(bad());
    }
    Ok(Some(s.to_string()))
}

/// Submit a training job, gang or inference service.
///
/// With an `Idempotency-Key` header, a retry returns the workload the first request
/// created (status 200) instead of creating another.
#[utoipa::path(
    post, path = "/v1/workloads", tag = "workloads",
    request_body = JobSpec,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes retries safe: the same key returns the same workload (1..=255 printable ASCII characters)")),
    responses(
        (status = 201, description = "Created", body = WorkloadInfo),
        (status = 200, description = "Already submitted under this Idempotency-Key", body = WorkloadInfo),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "The token's role may not submit", body = ApiErrorBody),
        (status = 413, description = "Body too large", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 422, description = "A field is wrong", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn submit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(spec): ApiJson<JobSpec>,
) -> Result<(StatusCode, Json<WorkloadInfo>), ApiError> {
    caller.require(&[Role::Admin, Role::Operator, Role::Tenant], "submitting work")?;
    let key = idempotency_key(&headers)?;
    if let Some(g) = spec.grace.as_deref().and_then(|g| humantime::parse_duration(g).ok())
        && g > state.agents.settings.max_grace
    {
        return Err(ApiError::field(
            "grace",
            format!(
                "{} is above this control plane's longest grace, {}; ask for less",
                humantime::format_duration(g),
                humantime::format_duration(state.agents.settings.max_grace)
            ),
        ));
    }
    let (info, created) = execute_as(&state, caller.actor(), move |engine, now| {
        let (id, created) = engine.submit(now, &caller, &spec, key)?;
        let w =
            engine.view.workloads.get(&id).ok_or_else(|| EngineError::internal(format!("{id} vanished")))?;
        Ok((workload_info(engine, w), created))
    })
    .await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(info)))
}

/// Filters and paging for the workload list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only these states, comma-separated (`pending,running`): pending, running,
    /// completed, failed, cancelled, rejected, timed-out.
    #[param(
        pattern = "^(pending|running|completed|failed|cancelled|rejected|timed-out)(,(pending|running|completed|failed|cancelled|rejected|timed-out))*$"
    )]
    pub state: Option<String>,
    /// Only this tenant (a tenant token sees only its own anyway).
    pub tenant: Option<String>,
    /// Only this kind.
    pub kind: Option<WorkloadKind>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    #[param(pattern = "^[0-9]{0,19}$")]
    pub cursor: Option<String>,
}

/// List workloads, oldest first, with filters and cursor pagination.
#[utoipa::path(
    get, path = "/v1/workloads", tag = "workloads",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of workloads", body = Page<WorkloadInfo>),
        (status = 400, description = "Malformed query", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 422, description = "A parameter is out of range", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<WorkloadInfo>>, ApiError> {
    let limit = page_limit(q.limit, 100, 1000)?;
    let after = parse_cursor(q.cursor.as_deref())?;
    let states: Option<Vec<WorkloadState>> = match &q.state {
        None => None,
        Some(s) => Some(
            s.split(',')
                .map(|p| {
                    WorkloadState::parse(p.trim()).ok_or_else(|| {
                        ApiError::field(
                            "state",
                            format!("`{p}` is not a state; use pending, running, completed, failed, cancelled, rejected or timed-out"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let engine = state.engine.read().await;
    let mut items = Vec::with_capacity(limit.min(256));
    let mut next_cursor = None;
    for w in engine.view.workloads_after(after) {
        let tenant = &w.workload.tenant.0;
        if !caller.sees_tenant(tenant)
            || q.tenant.as_ref().is_some_and(|t| t != tenant)
            || q.kind.is_some_and(|k| k != w.kind)
            || states.as_ref().is_some_and(|s| !s.contains(&w.state))
        {
            continue;
        }
        if items.len() == limit {
            next_cursor = items.last().map(|(seq, _): &(u64, WorkloadInfo)| seq.to_string());
            break;
        }
        items.push((w.submitted_seq, workload_info(&engine, w)));
    }
    Ok(Json(Page { items: items.into_iter().map(|(_, w)| w).collect(), next_cursor }))
}

/// Get one workload.
#[utoipa::path(
    get, path = "/v1/workloads/{id}", tag = "workloads",
    params(("id" = String, Path, description = "Workload id, `w-` and a number")),
    responses(
        (status = 200, description = "The workload", body = WorkloadInfo),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "No such workload (or not yours)", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WorkloadInfo>, ApiError> {
    {
        let engine = state.engine.read().await;
        if let Ok(w) = visible(&engine, &caller, &id) {
            let mut info = workload_info(&engine, w);
            // Add what live copies counted since their last recorded exit.
            info.energy_j += state.agents.live_energy(w.workload.id);
            info.energy_kwh = info.energy_j / 3.6e6;
            if info.tokens > 0 {
                info.joules_per_token = Some(info.energy_j / info.tokens as f64);
            }
            info.queue = engine.line_place(w.workload.id);
            return Ok(Json(info));
        }
    }
    let (w, _) = archived(&state, &caller, &id).await?;
    Ok(Json(workload_info(&*state.engine.read().await, &w)))
}

/// Checks that the caller may see the workload; an archived one has ended long ago, which
/// is a conflict for anything that would end it.
async fn ensure_known(state: &AppState, caller: &Caller, id: &str) -> Result<(), ApiError> {
    if visible(&*state.engine.read().await, caller, id).is_ok() {
        return Ok(());
    }
    let (w, _) = archived(state, caller, id).await?;
    Err(ApiError::conflict(format!("{id} already ended: {} (archived)", w.state.as_str())))
}

fn end(
    engine: &mut Engine,
    now: i64,
    caller: &Caller,
    id: &str,
    to: WorkloadState,
    exit_code: Option<i32>,
) -> Result<WorkloadInfo, EngineError> {
    let wid: WorkloadId = visible(engine, caller, id)?.workload.id;
    if to != WorkloadState::Cancelled {
        caller.require(&[Role::Admin, Role::Operator], "reporting a workload's end")?;
    }
    engine.finish(now, wid, to, exit_code, Some(caller.token_id.clone()))?;
    let w =
        engine.view.workloads.get(&wid).ok_or_else(|| EngineError::internal(format!("{wid} vanished")))?;
    Ok(workload_info(engine, w))
}

/// Cancel a workload, pending or running. Cancelling an ended workload is a conflict.
#[utoipa::path(
    post, path = "/v1/workloads/{id}/cancel", tag = "workloads",
    params(("id" = String, Path, description = "Workload id")),
    responses(
        (status = 200, description = "Cancelled", body = WorkloadInfo),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "The token's role may not cancel", body = ApiErrorBody),
        (status = 404, description = "No such workload (or not yours)", body = ApiErrorBody),
        (status = 409, description = "It already ended", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WorkloadInfo>, ApiError> {
    ensure_known(&state, &caller, &id).await?;
    caller.require(&[Role::Admin, Role::Operator, Role::Tenant], "cancelling")?;
    let info = execute_as(&state, caller.actor(), move |engine, now| {
        end(engine, now, &caller, &id, WorkloadState::Cancelled, None)
    })
    .await?;
    Ok(Json(info))
}

/// Report that a running workload ended (node agents and operators): exit code 0 is
/// `completed`, anything else `failed`.
#[utoipa::path(
    post, path = "/v1/workloads/{id}/complete", tag = "workloads",
    params(("id" = String, Path, description = "Workload id")),
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "Ended", body = WorkloadInfo),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Only admins and operators report ends", body = ApiErrorBody),
        (status = 404, description = "No such workload (or not yours)", body = ApiErrorBody),
        (status = 409, description = "It already ended, or is not running", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 422, description = "A field is wrong", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn complete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> Result<Json<WorkloadInfo>, ApiError> {
    ensure_known(&state, &caller, &id).await?;
    caller.require(&[Role::Admin, Role::Operator], "reporting a workload's end")?;
    let to = if req.exit_code == 0 { WorkloadState::Succeeded } else { WorkloadState::Failed };
    let info = execute_as(&state, caller.actor(), move |engine, now| {
        end(engine, now, &caller, &id, to, Some(req.exit_code))
    })
    .await?;
    Ok(Json(info))
}

/// Why a workload is where it is: its latest decision and its whole history from the
/// event log, each with a machine-readable reason.
#[utoipa::path(
    get, path = "/v1/workloads/{id}/explain", tag = "workloads",
    params(("id" = String, Path, description = "Workload id")),
    responses(
        (status = 200, description = "Its decisions", body = Explain),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "No such workload (or not yours)", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn explain(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Explain>, ApiError> {
    let live = {
        let engine = state.engine.read().await;
        visible(&engine, &caller, &id).map(|w| {
            (w.workload.id, w.state, w.reason.clone(), engine.view.seq, engine.line_place(w.workload.id))
        })
    };
    let (wid, wstate, summary, upto, queue) = match live {
        Ok(found) => found,
        Err(_) => {
            let (w, upto) = archived(&state, &caller, &id).await?;
            (w.workload.id, w.state, w.reason.clone(), upto, None)
        }
    };
    let records = state
        .store
        .workload_history(wid)
        .await
        .map_err(|e| ApiError::unavailable(format!("the event log could not be read: {e}")))?;
    let history = records.iter().filter(|r| r.seq <= upto).map(|r| decision_info(r, &caller)).collect();
    Ok(Json(Explain { id: wid.to_string(), state: wstate, summary, history, queue }))
}
