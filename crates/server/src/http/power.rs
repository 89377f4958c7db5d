//! Power routes: curtailments of a site's grid budget.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gigawatt_api::{ApiErrorBody, CurtailmentInfo, Role, ScheduleCurtailment, rfc3339};
use gigawatt_fleet::Pue;
use gigawatt_store::Curtailment;
use gigawatt_units::{Megawatts, Watts};

use super::ApiJson;
use crate::AppState;
use crate::auth::Caller;
use crate::engine::Engine;
use crate::engine::budgets::CurtailmentRequest;
use crate::error::EngineError;
use crate::http::error::ApiError;
use crate::writer::execute_as;

const RUN_POWER: [Role; 2] = [Role::Admin, Role::Operator];

/// Reads an RFC 3339 instant into Unix ms, or says what is wrong with it.
fn instant(field: &str, text: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(text.trim()).map(|t| t.timestamp_millis()).map_err(|e| {
        ApiError::field(
            field,
            format!("`{text}` is not an RFC 3339 time ({e}); write e.g. 2026-12-05T18:00:00Z"),
        )
    })
}

fn info(engine: &Engine, id: u64, c: &Curtailment, now: i64) -> CurtailmentInfo {
    let pue = engine.fleet.site(&c.site).map_or(1.0, |s| s.pue.0);
    let state = if c.cancelled {
        "cancelled"
    } else if now < c.from_ms {
        "scheduled"
    } else if now < c.until_ms {
        "active"
    } else {
        "over"
    };
    CurtailmentInfo {
        id,
        site: c.site.clone(),
        to_mw: Watts(c.to_w).to_megawatts().0,
        it_budget_w: Pue(pue).it_share(Watts(c.to_w)).0,
        from: rfc3339(c.from_ms),
        until: rfc3339(c.until_ms),
        reason: c.reason.clone(),
        state: state.to_string(),
        would_preempt: Vec::new(),
        alert: None,
    }
}

/// Curtail a site: a temporary lower grid budget (a grid operator's demand-response
/// signal). Work is shed, lowest priority first, and GPUs capped so that the site meets
/// it before it starts. One that leaves no room for latency-critical work is accepted,
/// with an alert that says what will stop.
#[utoipa::path(
    post, path = "/v1/sites/{id}/curtailments", tag = "power",
    params(("id" = String, Path, description = "Site id")),
    request_body = ScheduleCurtailment,
    responses(
        (status = 201, description = "Scheduled; what its start will preempt", body = CurtailmentInfo),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Only admins and operators curtail sites", body = ApiErrorBody),
        (status = 404, description = "No such site", body = ApiErrorBody),
        (status = 413, description = "Body too large", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 422, description = "A field is wrong: in the past, below the site's minimum, curtails nothing", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn schedule(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(site): Path<String>,
    ApiJson(req): ApiJson<ScheduleCurtailment>,
) -> Result<(StatusCode, Json<CurtailmentInfo>), ApiError> {
    caller.require(&RUN_POWER, "curtailing a site")?;
    if !(req.to_mw.is_finite() && (0.0..=10_000.0).contains(&req.to_mw)) {
        return Err(ApiError::field("to_mw", "a number of MW between 0 and 10000"));
    }
    let from = req.from.as_deref().map(|f| instant("from", f)).transpose()?;
    let until = instant("until", &req.until)?;
    let reason = req.reason.clone().unwrap_or_else(|| "curtailment".into());
    if reason.len() > 500 {
        return Err(ApiError::field("reason", "at most 500 bytes"));
    }
    let by = caller.token_id.clone();
    let to = Megawatts(req.to_mw).to_watts();
    let out = execute_as(&state, caller.actor(), move |engine, now| {
        let request = CurtailmentRequest { site, to, from_ms: from.unwrap_or(now), until_ms: until, reason };
        let outcome = engine.schedule_curtailment(now, request, &by)?;
        let c = engine
            .view
            .curtailments
            .get(&outcome.id)
            .ok_or_else(|| EngineError::internal("lost curtailment".into()))?;
        let mut i = info(engine, outcome.id, c, now);
        i.would_preempt = outcome.would_preempt.iter().map(|(w, _)| w.to_string()).collect();
        i.alert = outcome.alert;
        Ok(i)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// A site's curtailments, newest first (cancelled and past ones included).
#[utoipa::path(
    get, path = "/v1/sites/{id}/curtailments", tag = "power",
    params(("id" = String, Path, description = "Site id")),
    responses(
        (status = 200, description = "Curtailments", body = Vec<CurtailmentInfo>),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "No such site", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Path(site): Path<String>,
) -> Result<Json<Vec<CurtailmentInfo>>, ApiError> {
    let engine = state.engine.read().await;
    if engine.fleet.site(&site).is_none() {
        return Err(ApiError::not_found("site", &site));
    }
    let now = crate::now_ms();
    let out = engine
        .view
        .curtailments
        .iter()
        .rev()
        .filter(|(_, c)| c.site == site)
        .map(|(id, c)| info(&engine, *id, c, now))
        .collect();
    Ok(Json(out))
}

/// Call a curtailment off: the site's budget comes back at once.
#[utoipa::path(
    delete, path = "/v1/sites/{id}/curtailments/{number}", tag = "power",
    params(("id" = String, Path, description = "Site id"), ("number" = u64, Path, description = "Curtailment number")),
    responses(
        (status = 200, description = "Cancelled", body = CurtailmentInfo),
        (status = 400, description = "Malformed path", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Only admins and operators cancel curtailments", body = ApiErrorBody),
        (status = 404, description = "No such site or curtailment", body = ApiErrorBody),
        (status = 409, description = "Already cancelled", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((site, number)): Path<(String, String)>,
) -> Result<Json<CurtailmentInfo>, ApiError> {
    caller.require(&RUN_POWER, "cancelling a curtailment")?;
    let id: u64 = number.parse().map_err(|_| {
        ApiError::bad_request("invalid-path", format!("`{number}` is not a curtailment number"), None)
    })?;
    let by = caller.token_id.clone();
    let out = execute_as(&state, caller.actor(), move |engine, now| {
        engine.cancel_curtailment(now, &site, id, &by)?;
        let c = engine
            .view
            .curtailments
            .get(&id)
            .ok_or_else(|| EngineError::internal("lost curtailment".into()))?;
        Ok(info(engine, id, c, now))
    })
    .await?;
    Ok(Json(out))
}
