//! Quotas: the operator sets the whole document; tenants read their own standing.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use gigawatt_api::{ApiErrorBody, QuotaConfig, QuotaStatus, QuotasInForce, Role, rfc3339};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiJson, ApiQuery};
use crate::AppState;
use crate::auth::Caller;
use crate::engine::Engine;
use crate::http::error::ApiError;
use crate::writer::execute_as;

fn in_force(engine: &Engine) -> QuotasInForce {
    let record = engine.view.quotas.as_ref();
    let config = record.map(|r| QuotaConfig::from_core(&r.quotas)).unwrap_or_default();
    let tenants = config.tenants.keys().map(|t| engine.quota_status(t)).collect();
    QuotasInForce {
        config,
        set_at: record.map(|r| rfc3339(r.set_at)),
        set_by: record.map(|r| r.set_by.clone()),
        tenants,
    }
}

/// Put a quota configuration in force (admin, operator). It replaces the one before
/// whole; nothing running stops, but new work waits until use is back under a lowered
/// quota.
#[utoipa::path(
    put, path = "/v1/quotas", tag = "quotas",
    request_body = QuotaConfig,
    responses(
        (status = 200, description = "In force", body = QuotasInForce),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Only admins and operators set quotas", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 422, description = "A field is wrong: an unknown flavour, tenant, site or model, a cohort cycle, an amount", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn set_quotas(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(config): ApiJson<QuotaConfig>,
) -> Result<Json<QuotasInForce>, ApiError> {
    caller.require(&[Role::Admin, Role::Operator], "setting quotas")?;
    let by = caller.token_id.clone();
    let out = execute_as(&state, caller.actor(), move |engine, now| {
        engine.set_quotas(now, &config, &by)?;
        Ok(in_force(engine))
    })
    .await?;
    Ok(Json(out))
}

/// The quota configuration in force, and every governed tenant against it (admin,
/// operator, auditor).
#[utoipa::path(
    get, path = "/v1/quotas", tag = "quotas",
    responses(
        (status = 200, description = "In force", body = QuotasInForce),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Tenants read their own with GET /v1/quota", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_quotas(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<QuotasInForce>, ApiError> {
    caller.require(&[Role::Admin, Role::Operator, Role::Auditor], "reading every quota")?;
    let engine = state.engine.read().await;
    Ok(Json(in_force(&engine)))
}

/// What `GET /v1/quota` takes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QuotaQuery {
    /// The tenant; a tenant token may leave it out (it sees only its own).
    #[param(pattern = "^[a-z][a-z0-9-]{0,62}$")]
    pub tenant: Option<String>,
}

/// One tenant's quota, use, borrowed GPUs, fair share and place in line.
#[utoipa::path(
    get, path = "/v1/quota", tag = "quotas",
    params(QuotaQuery),
    responses(
        (status = 200, description = "The tenant's standing", body = QuotaStatus),
        (status = 400, description = "Malformed query", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "An agent token", body = ApiErrorBody),
        (status = 404, description = "No such tenant, or another tenant's", body = ApiErrorBody),
        (status = 422, description = "No tenant named", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_quota(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<QuotaQuery>,
) -> Result<Json<QuotaStatus>, ApiError> {
    caller.require(&[Role::Admin, Role::Operator, Role::Auditor, Role::Tenant], "reading a quota")?;
    let tenant = match (&caller.tenant, q.tenant) {
        (Some(own), None) => own.clone(),
        (Some(own), Some(t)) if &t == own => t,
        // The same answer as for a tenant that does not exist: tenants learn nothing of
        // each other.
        (Some(_), Some(t)) => return Err(ApiError::not_found("tenant", &t)),
        (None, Some(t)) => t,
        (None, None) => return Err(ApiError::field("tenant", "name the tenant: ?tenant=acme")),
    };
    let engine = state.engine.read().await;
    if !engine.view.tenants.contains_key(&tenant) {
        return Err(ApiError::not_found("tenant", &tenant));
    }
    Ok(Json(engine.quota_status(&tenant)))
}
