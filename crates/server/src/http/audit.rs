//! The audit trail over HTTP: the public key that verifies the log's checkpoints, the
//! latest checkpoint, and exports for auditors (see `docs/audit.md`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use gigawatt_api::{ApiErrorBody, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiQuery;
use crate::AppState;
use crate::auth::Caller;
use crate::http::error::ApiError;

/// The log's verifier key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditKey {
    /// A C2SP verifier key: `name+keyid+base64(0x01 ‖ Ed25519 public key)`; the name is
    /// the log's origin.
    pub vkey: String,
}

/// The key that verifies the log's signed checkpoints and exports (no token needed: it
/// is public, and auditors fetch it before they trust anything else).
#[utoipa::path(
    get, path = "/v1/audit/key", tag = "audit",
    responses((status = 200, description = "The verifier key", body = AuditKey)),
)]
pub async fn key(State(state): State<Arc<AppState>>) -> Json<AuditKey> {
    Json(AuditKey { vkey: state.audit.lock().await.verifier().to_string() })
}

/// The latest signed checkpoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LatestCheckpoint {
    /// The signed note, verbatim (C2SP tlog-checkpoint in a signed note).
    pub note: String,
}

/// The latest signed checkpoint of the log (any token but an agent's).
#[utoipa::path(
    get, path = "/v1/audit/checkpoint", tag = "audit",
    responses(
        (status = 200, description = "The checkpoint", body = LatestCheckpoint),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "Nothing signed yet", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn checkpoint(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<LatestCheckpoint>, ApiError> {
    caller.require(&[Role::Admin, Role::Operator, Role::Auditor, Role::Tenant], "reading the checkpoint")?;
    match state.store.latest_checkpoint().await {
        Ok(Some(c)) => Ok(Json(LatestCheckpoint { note: c.note })),
        Ok(None) => Err(ApiError::not_found("checkpoint", "latest")),
        Err(e) => Err(ApiError::unavailable(format!("the event log could not be read: {e}"))),
    }
}

/// What `GET /v1/audit/export` takes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Only this tenant's records (a tenant token: its own, whether named or not).
    pub tenant: Option<String>,
    /// From this instant, RFC 3339.
    pub from: Option<String>,
    /// Up to this instant, RFC 3339.
    pub to: Option<String>,
}

fn instant(field: &str, v: Option<&String>, default: i64) -> Result<i64, ApiError> {
    match v {
        None => Ok(default),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_millis()).map_err(|e| {
            ApiError::field(field, format!("`{s}`: {e}; write an RFC 3339 time such as 2026-12-01T00:00:00Z"))
        }),
    }
}

/// The log's records with their Merkle inclusion proofs, the signed checkpoints they are
/// proven against (one signed now covers them all), and a signed trailer listing what
/// the export holds: JSON Lines, verified offline by `gigawatt audit verify` (auditor and
/// admin; a tenant token gets its own records only, and nothing of other tenants).
#[utoipa::path(
    get, path = "/v1/audit/export", tag = "audit",
    params(ExportQuery),
    responses(
        (status = 200, description = "The export: JSON Lines, one object per line (docs/audit.md)", body = String, content_type = "application/x-ndjson"),
        (status = 400, description = "Malformed query", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Operators and agents do not export", body = ApiErrorBody),
        (status = 404, description = "No such tenant, or another tenant's", body = ApiErrorBody),
        (status = 422, description = "A time that does not parse", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn export(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor, Role::Tenant], "exporting the audit trail")?;
    let tenant = match (&caller.tenant, q.tenant) {
        (Some(own), None) => Some(own.clone()),
        (Some(own), Some(t)) if &t == own => Some(t),
        // The same answer as for a tenant that does not exist.
        (Some(_), Some(t)) => return Err(ApiError::not_found("tenant", &t)),
        (None, t) => t,
    };
    if let Some(t) = &tenant
        && !state.engine.read().await.view.tenants.contains_key(t)
    {
        return Err(ApiError::not_found("tenant", t));
    }
    let from = instant("from", q.from.as_ref(), i64::MIN)?;
    let to = instant("to", q.to.as_ref(), i64::MAX)?;
    let failed =
        |e: crate::audit::AuditError| ApiError::unavailable(format!("the export could not be made: {e}"));
    let basis =
        state.audit.lock().await.prepare_export(&state.store, crate::now_ms()).await.map_err(failed)?;
    let bytes =
        crate::audit::write_export(&state.store, basis, tenant.as_deref(), (from, to), (q.from, q.to))
            .await
            .map_err(failed)?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], bytes).into_response())
}
