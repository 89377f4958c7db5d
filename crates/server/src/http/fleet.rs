//! Fleet views and operator actions: sites, racks, nodes, budgets, node state.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use gigawatt_api::{ApiErrorBody, NodeInfo, Page, RackInfo, Role, SetBudget, SetNodeState, SiteInfo};
use gigawatt_units::Watts;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiJson, ApiQuery, page_limit, parse_cursor};
use crate::AppState;
use crate::auth::Caller;
use crate::convert;
use crate::error::EngineError;
use crate::http::error::ApiError;
use crate::writer::execute_as;

const SEE_FLEET: [Role; 3] = [Role::Admin, Role::Operator, Role::Auditor];
const RUN_FLEET: [Role; 2] = [Role::Admin, Role::Operator];

/// List sites with live allocation and reserved power against budget. Tenants may list
/// sites too (to see regions and certifications).
#[utoipa::path(
    get, path = "/v1/sites", tag = "fleet",
    responses(
        (status = 200, description = "Every site", body = Vec<SiteInfo>),
        (status = 401, description = "No valid token", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_sites(State(state): State<Arc<AppState>>, _caller: Caller) -> Json<Vec<SiteInfo>> {
    let engine = state.engine.read().await;
    Json(convert::sites(&engine))
}

/// Get one site.
#[utoipa::path(
    get, path = "/v1/sites/{id}", tag = "fleet",
    params(("id" = String, Path, description = "Site id")),
    responses(
        (status = 200, description = "The site", body = SiteInfo),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 404, description = "No such site", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_site(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SiteInfo>, ApiError> {
    let engine = state.engine.read().await;
    convert::sites(&engine)
        .into_iter()
        .find(|s| s.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("site", &id))
}

/// Set a site's IT power budget (a grid phase, a curtailment). Work over the new
/// budget is preempted, lowest priority and youngest first.
#[utoipa::path(
    put, path = "/v1/sites/{id}/budget", tag = "fleet",
    params(("id" = String, Path, description = "Site id")),
    request_body = SetBudget,
    responses(
        (status = 200, description = "The site with its new budget", body = SiteInfo),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Only admins and operators set budgets", body = ApiErrorBody),
        (status = 404, description = "No such site", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 422, description = "A field is wrong", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn set_budget(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetBudget>,
) -> Result<Json<SiteInfo>, ApiError> {
    caller.require(&RUN_FLEET, "setting a budget")?;
    if req.budget_w > 10_000_000_000 {
        return Err(ApiError::field("budget_w", "at most 10 GW (10000000000 W)"));
    }
    let info = execute_as(&state, caller.actor(), move |engine, now| {
        engine.set_budget(now, &id, Watts(req.budget_w), &caller.token_id)?;
        convert::sites(engine)
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| EngineError::not_found("site", &id))
    })
    .await?;
    Ok(Json(info))
}

/// Filters for racks.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RackQuery {
    /// Only this site.
    pub site: Option<String>,
}

/// List racks with their power against their limits.
#[utoipa::path(
    get, path = "/v1/racks", tag = "fleet",
    params(RackQuery),
    responses(
        (status = 200, description = "Racks", body = Vec<RackInfo>),
        (status = 400, description = "Malformed query", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Tenants do not see racks", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_racks(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RackQuery>,
) -> Result<Json<Vec<RackInfo>>, ApiError> {
    caller.require(&SEE_FLEET, "seeing racks")?;
    let engine = state.engine.read().await;
    let racks = convert::racks(&engine)
        .into_iter()
        .filter(|r| q.site.as_ref().is_none_or(|s| *s == r.site))
        .collect();
    Ok(Json(racks))
}

/// Filters and paging for nodes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NodeQuery {
    /// Only this site.
    pub site: Option<String>,
    /// Only this rack.
    pub rack: Option<String>,
    /// Only nodes up (`true`) or down (`false`).
    pub up: Option<bool>,
    /// Page size, 1..=5000 (default 500).
    #[param(minimum = 1, maximum = 5000)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    #[param(pattern = "^[0-9]{0,19}$")]
    pub cursor: Option<String>,
}

/// List nodes with their free GPUs, CPU, memory and reserved power.
#[utoipa::path(
    get, path = "/v1/nodes", tag = "fleet",
    params(NodeQuery),
    responses(
        (status = 200, description = "A page of nodes", body = Page<NodeInfo>),
        (status = 400, description = "Malformed query", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Tenants do not see nodes", body = ApiErrorBody),
        (status = 422, description = "A parameter is out of range", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_nodes(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<NodeQuery>,
) -> Result<Json<Page<NodeInfo>>, ApiError> {
    caller.require(&SEE_FLEET, "seeing nodes")?;
    let limit = page_limit(q.limit, 500, 5000)?;
    let start = parse_cursor(q.cursor.as_deref())? as usize;
    let engine = state.engine.read().await;
    let cluster = engine.scheduler.state();
    let mut items = Vec::new();
    let mut next_cursor = None;
    for (i, n) in cluster.nodes.iter().enumerate().skip(start) {
        let site = &cluster.sites[n.site as usize].id;
        let rack = &cluster.racks[n.rack as usize].id;
        if q.site.as_ref().is_some_and(|s| s != site)
            || q.rack.as_ref().is_some_and(|r| r != rack)
            || q.up.is_some_and(|u| u != n.up)
        {
            continue;
        }
        if items.len() == limit {
            next_cursor = Some(i.to_string());
            break;
        }
        items.push(convert::node_info(&engine, n));
    }
    Ok(Json(Page { items, next_cursor }))
}

/// Get one node.
#[utoipa::path(
    get, path = "/v1/nodes/{name}", tag = "fleet",
    params(("name" = String, Path, description = "Node name")),
    responses(
        (status = 200, description = "The node", body = NodeInfo),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Tenants do not see nodes", body = ApiErrorBody),
        (status = 404, description = "No such node", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_node(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<NodeInfo>, ApiError> {
    caller.require(&SEE_FLEET, "seeing nodes")?;
    let engine = state.engine.read().await;
    let cluster = engine.scheduler.state();
    let idx = cluster.node_by_name(&name).ok_or_else(|| ApiError::not_found("node", &name))?;
    Ok(Json(convert::node_info(&engine, cluster.node(idx))))
}

/// Take a node out of service (its work is requeued whole and placed elsewhere) or
/// bring it back.
#[utoipa::path(
    put, path = "/v1/nodes/{name}/state", tag = "fleet",
    params(("name" = String, Path, description = "Node name")),
    request_body = SetNodeState,
    responses(
        (status = 200, description = "The node", body = NodeInfo),
        (status = 400, description = "Malformed request", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
        (status = 403, description = "Only admins and operators change nodes", body = ApiErrorBody),
        (status = 404, description = "No such node", body = ApiErrorBody),
        (status = 409, description = "It is already in that state", body = ApiErrorBody),
        (status = 415, description = "Not JSON", body = ApiErrorBody),
        (status = 422, description = "A field is wrong", body = ApiErrorBody),
        (status = 503, description = "The event log is unavailable; retry", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn set_node_state(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SetNodeState>,
) -> Result<Json<NodeInfo>, ApiError> {
    caller.require(&RUN_FLEET, "changing a node")?;
    let reason = req.reason.unwrap_or_else(|| format!("set by token {}", caller.token_id));
    if reason.chars().count() > 512 {
        return Err(ApiError::field("reason", "at most 512 characters"));
    }
    let by = caller.token_id.clone();
    let info = execute_as(&state, caller.actor(), move |engine, now| {
        engine.set_node(now, &name, req.up, reason, &by)?;
        let cluster = engine.scheduler.state();
        let idx = cluster.node_by_name(&name).ok_or_else(|| EngineError::not_found("node", &name))?;
        Ok(convert::node_info(engine, cluster.node(idx)))
    })
    .await?;
    Ok(Json(info))
}
