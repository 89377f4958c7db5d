//! Health, readiness, metrics and the OpenAPI document: no token needed.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;

/// Health and readiness.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or what is wrong.
    pub status: String,
    /// The event log's backend (`sqlite` or `postgres`).
    pub backend: String,
    /// Position of the last committed record.
    pub log_position: u64,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz(State(state): State<Arc<AppState>>) -> Json<Health> {
    let seq = state.engine.read().await.view.seq;
    Json(Health { status: "ok".into(), backend: state.store.backend_name().into(), log_position: seq })
}

/// Readiness: the state is loaded and the event log answers.
#[utoipa::path(
    get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready", body = Health),
    )
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Health>) {
    let seq = state.engine.read().await.view.seq;
    let backend = state.store.backend_name().to_string();
    if !state.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health { status: "reloading state from the event log".into(), backend, log_position: seq }),
        );
    }
    if let Some(f) = state.write_fault() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: format!(
                    "the event log cannot be written ({}), for {} s; writes are refused, reads work",
                    f.reason,
                    f.since.elapsed().as_secs()
                ),
                backend,
                log_position: seq,
            }),
        );
    }
    if !state.store.ping().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "the event log's database does not answer".into(),
                backend,
                log_position: seq,
            }),
        );
    }
    (StatusCode::OK, Json(Health { status: "ok".into(), backend, log_position: seq }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Metrics", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let engine = state.engine.read().await;
    let energy = super::agents::tenant_energy(&engine, &state);
    let body = state.metrics.render(&engine, &state.agents, &energy, &state.power, &state.connections);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

/// This document.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "ops",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object))
)]
pub async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}
