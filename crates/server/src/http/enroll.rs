//! Enrolling a node's agent: an operator asks for a one-time join token bound to the
//! node (`gigawatt node enroll NODE`); the agent exchanges it, once and before it
//! expires, for its own credential, which acts for that node only (see
//! `agents::scope`). As with `kubeadm join`, the long-lived secret is only ever
//! handed to the agent itself.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gigawatt_api::{AgentEnroll, ApiErrorBody, EnrollNode, JoinToken, NodeCredential, Role, rfc3339};

use super::ApiJson;
use crate::AppState;
use crate::agents::scope;
use crate::auth::Caller;
use crate::http::error::ApiError;
use crate::writer::execute_as;

/// The join token's life when the request names none.
const DEFAULT_TTL_S: u64 = 3600;
/// Its shortest and longest life.
const TTL_S: std::ops::RangeInclusive<u64> = 60..=7 * 86_400;

/// Issue a one-time join token for a node's agent (admin, operator).
#[utoipa::path(
    post, path = "/v1/nodes/{name}/enroll", tag = "agents",
    params(("name" = String, Path, description = "Node name, as in the fleet file")),
    request_body = EnrollNode,
    responses(
        (status = 201, description = "The join token, shown once", body = JoinToken),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 413, description = "Body too large", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Only admins and operators enrol nodes", body = ApiErrorBody),
        (status = 404, description = "The node is not in the fleet", body = ApiErrorBody),
        (status = 422, description = "`ttl_s` is out of range", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn enroll_node(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<EnrollNode>,
) -> Result<(StatusCode, Json<JoinToken>), ApiError> {
    caller.require(&[Role::Admin, Role::Operator], "enrolling a node")?;
    let ttl = req.ttl_s.unwrap_or(DEFAULT_TTL_S);
    if !TTL_S.contains(&ttl) {
        return Err(ApiError::field(
            "ttl_s",
            format!("{ttl} s is out of range; give {}..={} seconds", TTL_S.start(), TTL_S.end()),
        ));
    }
    let node = name.clone();
    let by = caller.token_id.clone();
    let (id, token, expires_at) = execute_as(&state, caller.actor(), move |e, now| {
        let expires_at = now.saturating_add(i64::try_from(ttl * 1000).unwrap_or(i64::MAX));
        let (id, token) = e.enroll_node(now, &node, expires_at, &by)?;
        Ok((id, token, expires_at))
    })
    .await?;
    tracing::info!(node = name, token = id, "join token issued");
    Ok((StatusCode::CREATED, Json(JoinToken { id, token, node: name, expires_at: rfc3339(expires_at) })))
}

/// Exchange a join token for the node's own credential (the agent, with the join token
/// as bearer). The join token is spent.
#[utoipa::path(
    post, path = "/v1/agent/enroll", tag = "agents",
    request_body = AgentEnroll,
    responses(
        (status = 201, description = "The node's credential, shown once", body = NodeCredential),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 413, description = "Body too large", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 422, description = "A field is missing or wrong", body = ApiErrorBody),
        (status = 401, description = "No valid token, or the join token expired or was spent", body = ApiErrorBody),
        (status = 403, description = "Not a join token, or one for another node (the refusal is recorded)", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn agent_enroll(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<AgentEnroll>,
) -> Result<(StatusCode, Json<NodeCredential>), ApiError> {
    let node = req.node.clone();
    match (&caller.node, caller.join_expires_at) {
        (Some(n), Some(_)) if *n == node => {}
        (Some(n), Some(_)) => {
            let why = format!("this join token is for node {n}");
            return Err(scope::refuse(&state, &caller, &node, "enrolment", why).await.into());
        }
        _ => {
            let why = "only a join token is exchanged for a node credential (`gigawatt node enroll NODE`)"
                .to_string();
            return Err(scope::refuse(&state, &caller, &node, "enrolment", why).await.into());
        }
    }
    let join = caller.token_id.clone();
    let n = node.clone();
    let (id, token) =
        execute_as(&state, caller.actor(), move |e, now| e.exchange_join_token(now, &join, &n)).await?;
    tracing::info!(node, token = id, "node enrolled");
    Ok((StatusCode::CREATED, Json(NodeCredential { id, token, node })))
}
