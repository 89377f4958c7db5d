//! Tenants, tokens, the caller's identity, and the raw event log for auditors.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gigawatt_api::{
    ApiErrorBody, CreateTenant, CreateToken, Role, TenantInfo, TokenCreated, TokenInfo, WhoAmI, rfc3339,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, ApiQuery, page_limit};
use crate::AppState;
use crate::auth::Caller;
use crate::convert::token_info;
use crate::error::EngineError;
use crate::http::error::ApiError;
use crate::writer::execute_as;

/// Who the token belongs to.
#[utoipa::path(
    get, path = "/v1/whoami", tag = "auth",
    responses(
        (status = 200, description = "The caller", body = WhoAmI),
        (status = 401, description = "No valid token", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        token_id: caller.token_id,
        name: caller.name,
        role: caller.role,
        tenant: caller.tenant,
        node: caller.node,
    })
}

/// Create a tenant (admin).
#[utoipa::path(
    post, path = "/v1/tenants", tag = "auth",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Created", body = TenantInfo),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Only admins create tenants", body = ApiErrorBody),
        (status = 409, description = "It exists", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 422, description = "A field is wrong", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_tenant(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<TenantInfo>), ApiError> {
    caller.require(&[Role::Admin], "creating a tenant")?;
    let by = caller.token_id.clone();
    let info = execute_as(&state, caller.actor(), move |engine, now| {
        engine.create_tenant(now, &req, &by)?;
        let t = engine
            .view
            .tenants
            .get(&req.id)
            .ok_or_else(|| EngineError::internal("tenant vanished".into()))?;
        Ok(TenantInfo { id: req.id.clone(), name: t.name.clone(), created_at: rfc3339(t.created_at) })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// List tenants (a tenant token sees only its own).
#[utoipa::path(
    get, path = "/v1/tenants", tag = "auth",
    responses(
        (status = 200, description = "Tenants", body = Vec<TenantInfo>),
        (status = 401, description = "No valid token", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_tenants(State(state): State<Arc<AppState>>, caller: Caller) -> Json<Vec<TenantInfo>> {
    let engine = state.engine.read().await;
    Json(
        engine
            .view
            .tenants
            .iter()
            .filter(|(id, _)| caller.sees_tenant(id))
            .map(|(id, t)| TenantInfo {
                id: id.clone(),
                name: t.name.clone(),
                created_at: rfc3339(t.created_at),
            })
            .collect(),
    )
}

/// Issue a token (admin). The secret is in the answer and nowhere else.
#[utoipa::path(
    post, path = "/v1/tokens", tag = "auth",
    request_body = CreateToken,
    responses(
        (status = 201, description = "Issued; keep the secret, it is shown once", body = TokenCreated),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Only admins issue tokens", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 422, description = "A field is wrong", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    caller.require(&[Role::Admin], "issuing a token")?;
    let by = caller.token_id.clone();
    let created = execute_as(&state, caller.actor(), move |engine, now| {
        let (id, token) = engine.issue_token(now, &req, &by)?;
        Ok(TokenCreated { id, token, name: req.name, role: req.role, tenant: req.tenant, node: req.node })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// List tokens, never their secrets (admin, auditor).
#[utoipa::path(
    get, path = "/v1/tokens", tag = "auth",
    responses(
        (status = 200, description = "Tokens", body = Vec<TokenInfo>),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Only admins and auditors list tokens", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_tokens(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor], "listing tokens")?;
    let engine = state.engine.read().await;
    Ok(Json(engine.view.tokens.iter().map(|(id, t)| token_info(id, t)).collect()))
}

/// Revoke a token (admin). It stops working at once.
#[utoipa::path(
    delete, path = "/v1/tokens/{id}", tag = "auth",
    params(("id" = String, Path, description = "Token id")),
    responses(
        (status = 200, description = "Revoked", body = TokenInfo),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Only admins revoke tokens", body = ApiErrorBody),
        (status = 404, description = "No such token", body = ApiErrorBody),
        (status = 409, description = "Already revoked", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    caller.require(&[Role::Admin], "revoking a token")?;
    let by = caller.token_id.clone();
    let info = execute_as(&state, caller.actor(), move |engine, now| {
        engine.revoke_token(now, &id, &by)?;
        let t = engine.view.tokens.get(&id).ok_or_else(|| EngineError::not_found("token", &id))?;
        Ok(token_info(&id, t))
    })
    .await?;
    Ok(Json(info))
}

/// Paging for the raw log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Records after this position (default 0, the start).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub after: Option<u64>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One record of the event log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogEntry {
    /// Position.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// The tenant it concerns.
    pub tenant: Option<String>,
    /// The event type.
    pub event: String,
    /// In words.
    pub text: String,
    /// The event as stored, less the keys of the id cipher (the log's first record says
    /// `withheld` in their place).
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// Who caused it: `{"token_id", "principal", "role", "tenant"?, "node"?, "source"?}`
    /// (the caller whose request it answers, with the address it came from); absent for
    /// what the control plane did by itself and in records older than actors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub actor: Option<serde_json::Value>,
}

/// Read the event log itself (admin, operator, auditor).
#[utoipa::path(
    get, path = "/v1/log", tag = "auth",
    params(LogQuery),
    responses(
        (status = 200, description = "Records, in order", body = Vec<LogEntry>),
        (status = 400, description = "Malformed query", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Tenants do not read the raw log", body = ApiErrorBody),
        (status = 422, description = "A parameter is out of range", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn read_log(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Json<Vec<LogEntry>>, ApiError> {
    caller.require(&[Role::Admin, Role::Operator, Role::Auditor], "reading the event log")?;
    let limit = page_limit(q.limit, 100, 1000)?;
    let after = super::log_position(q.after)?;
    let upto = state.engine.read().await.view.seq;
    let records = state
        .store
        .read_after(after, limit as u32)
        .await
        .map_err(|e| ApiError::unavailable(format!("the event log could not be read: {e}")))?;
    Ok(Json(
        records
            .into_iter()
            .filter(|r| r.seq <= upto)
            .map(|r| LogEntry {
                seq: r.seq,
                at: rfc3339(r.at_ms),
                tenant: r.tenant.clone(),
                event: r.event.kind().to_string(),
                text: r.event.describe(),
                body: stored_body(&r.event),
                actor: r.actor.as_ref().and_then(|a| serde_json::to_value(a).ok()),
            })
            .collect(),
    ))
}

/// An event as stored, less the secrets that must never leave the server: the keys of
/// the id cipher in the log's first record (with them, anyone could count every
/// tenant's submissions from their ids).
fn stored_body(event: &gigawatt_store::LogEvent) -> serde_json::Value {
    let mut body = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
    if matches!(event, gigawatt_store::LogEvent::Initialized { .. })
        && let Some(o) = body.as_object_mut()
    {
        o.remove("id_key");
        o.remove("id_secret");
        o.insert("withheld".into(), "the keys of the id cipher never leave the server".into());
    }
    body
}

/// A digest of the control plane's whole folded state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StateDigest {
    /// Position of the last record folded in.
    pub log_position: u64,
    /// SHA-256 of the folded state; `gigawatt admin replay` computes the same from the
    /// log alone.
    pub digest: String,
}

/// The digest of the state held in memory, to check it against a fresh replay of the
/// log (admin, auditor).
#[utoipa::path(
    get, path = "/v1/state/digest", tag = "auth",
    responses(
        (status = 200, description = "The digest", body = StateDigest),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Only admins and auditors", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn digest(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<StateDigest>, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor], "reading the state digest")?;
    let engine = state.engine.read().await;
    Ok(Json(StateDigest { log_position: engine.view.seq, digest: engine.view.digest() }))
}
