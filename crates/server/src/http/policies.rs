//! Tenants' residency policies: set by operators (or by a tenant for itself: a policy
//! only narrows), read by them and by auditors.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use gigawatt_api::{ApiErrorBody, PolicySpec, Role, TenantPolicy};

use super::ApiJson;
use crate::AppState;
use crate::auth::Caller;
use crate::http::error::ApiError;
use crate::writer::execute_as;

/// A tenant token acts on its own tenant only; to it another tenant does not exist.
fn may_act_on(caller: &Caller, tenant: &str) -> Result<(), ApiError> {
    match (&caller.role, &caller.tenant) {
        (Role::Tenant, Some(own)) if own != tenant => Err(ApiError::not_found("tenant", tenant)),
        _ => Ok(()),
    }
}

/// Put a tenant's residency policy in force (admin, operator, or the tenant itself). It
/// only narrows the operator's rule of each data class; the tenant's running work that
/// breaks it is evicted and requeued under it, with an event that says why. Every list
/// empty lifts the policy.
#[utoipa::path(
    put, path = "/v1/tenants/{tenant}/policy", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body = PolicySpec,
    responses(
        (status = 200, description = "In force", body = TenantPolicy),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Auditors and agents set no policy", body = ApiErrorBody),
        (status = 404, description = "No such tenant, or another tenant's", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 422, description = "An entry is wrong: a country code, a jurisdiction, a certification, a site the fleet lacks", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn set_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(tenant): Path<String>,
    ApiJson(spec): ApiJson<PolicySpec>,
) -> Result<Json<TenantPolicy>, ApiError> {
    caller.require(&[Role::Admin, Role::Operator, Role::Tenant], "setting a residency policy")?;
    may_act_on(&caller, &tenant)?;
    let by = caller.token_id.clone();
    let out = execute_as(&state, caller.actor(), move |engine, now| {
        engine.set_tenant_policy(now, &tenant, &spec, &by)?;
        engine.tenant_policy(&tenant).ok_or_else(|| crate::error::EngineError::not_found("tenant", &tenant))
    })
    .await?;
    Ok(Json(out))
}

/// A tenant's residency policy and the effective policy of each data class, each term
/// with its source (admin, operator, auditor, or the tenant itself).
#[utoipa::path(
    get, path = "/v1/tenants/{tenant}/policy", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The policy", body = TenantPolicy),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "An agent token", body = ApiErrorBody),
        (status = 404, description = "No such tenant, or another tenant's", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<TenantPolicy>, ApiError> {
    caller
        .require(&[Role::Admin, Role::Operator, Role::Auditor, Role::Tenant], "reading a residency policy")?;
    may_act_on(&caller, &tenant)?;
    let engine = state.engine.read().await;
    engine.tenant_policy(&tenant).map(Json).ok_or_else(|| ApiError::not_found("tenant", &tenant))
}
