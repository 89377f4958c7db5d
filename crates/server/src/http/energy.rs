//! Energy and carbon: tokens reported by services, energy and CO2 per site and day.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use gigawatt_api::{ApiErrorBody, ReportUsage, Role, SiteEnergy, WorkloadInfo};
use gigawatt_store::LogEvent;

use super::ApiJson;
use super::workloads::visible;
use crate::AppState;
use crate::auth::Caller;
use crate::convert::workload_info;
use crate::error::EngineError;
use crate::http::error::ApiError;
use crate::writer::execute_as;

/// Report what a workload produced since its last report: an inference service's output
/// tokens. Its energy per token follows (`joules_per_token`).
#[utoipa::path(
    post, path = "/v1/workloads/{id}/usage", tag = "workloads",
    params(("id" = String, Path, description = "Workload id")),
    request_body = ReportUsage,
    responses(
        (status = 200, description = "The workload with its totals", body = WorkloadInfo),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Auditors and agents do not report usage", body = ApiErrorBody),
        (status = 404, description = "No such workload (or not yours)", body = ApiErrorBody),
        (status = 409, description = "It already ended", body = ApiErrorBody),
        (status = 413, description = "Body too large", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 422, description = "A field is wrong", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn report_usage(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReportUsage>,
) -> Result<Json<WorkloadInfo>, ApiError> {
    caller.require(&[Role::Admin, Role::Operator, Role::Tenant], "reporting usage")?;
    if req.tokens > 1_000_000_000_000 {
        return Err(ApiError::field("tokens", "at most 10^12 tokens a report"));
    }
    let info = execute_as(&state, caller.actor(), move |engine, now| {
        let w = visible(engine, &caller, &id)?;
        if w.state.is_final() {
            return Err(EngineError::conflict(format!("{id} already ended ({})", w.state.as_str())));
        }
        let workload = w.workload.id;
        engine.stage(now, LogEvent::UsageReported { workload, tokens: req.tokens })?;
        let w = visible(engine, &caller, &id)?;
        Ok(workload_info(engine, w))
    })
    .await?;
    Ok(Json(info))
}

/// Energy and CO2 per site and UTC day, from the tasks that ended (each one's energy spread
/// over the time it ran). Operators, admins and auditors.
#[utoipa::path(
    get, path = "/v1/energy/sites", tag = "agents",
    responses(
        (status = 200, description = "Per site and day, oldest first", body = Vec<SiteEnergy>),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Tenants do not see the fleet's energy", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn sites(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<SiteEnergy>>, ApiError> {
    caller.require(&[Role::Admin, Role::Operator, Role::Auditor], "reading energy per site")?;
    let engine = state.engine.read().await;
    let mut out = Vec::new();
    for (site, days) in &engine.view.site_days {
        let carbon = engine.fleet.site(site).and_then(|s| s.carbon.as_ref()).is_some();
        for (day, (joules, grams)) in days {
            let date = chrono::DateTime::from_timestamp(day * 86_400, 0)
                .map_or_else(|| day.to_string(), |d| d.format("%Y-%m-%d").to_string());
            out.push(SiteEnergy {
                site: site.clone(),
                day: date,
                energy_kwh: joules / 3.6e6,
                co2_kg: carbon.then_some(grams / 1e3),
            });
        }
    }
    Ok(Json(out))
}
