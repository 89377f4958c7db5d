#![allow(unused_qualifications)] // utoipa's `params(...)` expansion names types by full path
//! The HTTP API: routes, extractors that answer bad input with the JSON error shape, and
//! the middleware (body limit, panic guard).

pub mod admin;
pub mod agents;
pub mod audit;
mod caller;
pub mod energy;
pub mod enroll;
pub mod error;
pub mod events;
pub mod fleet;
pub mod limits;
pub mod ops;
pub mod policies;
pub mod power;
pub mod quotas;
pub mod workloads;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::http::error::ApiError;

/// The largest request body accepted (a job spec is a few KiB).
pub const MAX_BODY: usize = 256 * 1024;

/// The API's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/v1/whoami", get(admin::whoami))
        .route("/v1/tenants", post(admin::create_tenant).get(admin::list_tenants))
        .route("/v1/tenants/{tenant}/policy", put(policies::set_policy).get(policies::get_policy))
        .route("/v1/tokens", post(admin::create_token).get(admin::list_tokens))
        .route("/v1/tokens/{id}", axum::routing::delete(admin::revoke_token))
        .route("/v1/log", get(admin::read_log))
        .route("/v1/audit/key", get(audit::key))
        .route("/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/v1/audit/export", get(audit::export))
        .route("/v1/state/digest", get(admin::digest))
        .route("/v1/workloads", post(workloads::submit).get(workloads::list))
        .route("/v1/workloads/{id}", get(workloads::get_one))
        .route("/v1/workloads/{id}/cancel", post(workloads::cancel))
        .route("/v1/workloads/{id}/complete", post(workloads::complete))
        .route("/v1/workloads/{id}/explain", get(workloads::explain))
        .route("/v1/workloads/{id}/logs", get(agents::read_logs))
        .route("/v1/events", get(events::stream))
        .route("/v1/agent/register", post(agents::register))
        .route("/v1/agent/enroll", post(enroll::agent_enroll))
        .route("/v1/nodes/{name}/enroll", post(enroll::enroll_node))
        .route("/v1/agent/heartbeat", post(agents::heartbeat))
        .route("/v1/agent/logs", post(agents::ship_logs))
        .route("/v1/agent/changes", get(agents::changes))
        .route("/v1/agents", get(agents::list_agents))
        .route("/v1/energy", get(agents::energy))
        .route("/v1/energy/sites", get(energy::sites))
        .route("/v1/workloads/{id}/usage", post(energy::report_usage))
        .route("/v1/nodes/{name}/telemetry", get(agents::telemetry))
        .route("/v1/nodes/{name}/power-limit", put(agents::set_power_limit))
        .route("/v1/quotas", put(quotas::set_quotas).get(quotas::get_quotas))
        .route("/v1/quota", get(quotas::get_quota))
        .route("/v1/sites", get(fleet::list_sites))
        .route("/v1/sites/{id}", get(fleet::get_site))
        .route("/v1/sites/{id}/budget", put(fleet::set_budget))
        .route("/v1/sites/{id}/curtailments", post(power::schedule).get(power::list))
        .route("/v1/sites/{id}/curtailments/{number}", delete(power::cancel))
        .route("/v1/racks", get(fleet::list_racks))
        .route("/v1/nodes", get(fleet::list_nodes))
        .route("/v1/nodes/{name}", get(fleet::get_node))
        .route("/v1/nodes/{name}/state", put(fleet::set_node_state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .layer(axum::middleware::from_fn_with_state(state.admission.clone(), limits::limit))
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "no-route",
        message: format!("no route {}; see GET /v1/openapi.json", uri.path()),
        field: None,
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method-not-allowed",
        message: format!("{method} is not allowed on {}; see GET /v1/openapi.json", uri.path()),
        field: None,
    }
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("the request handler panicked; this is a bug in gigawatt".into()).into_response()
}

/// A JSON body whose errors are answered in the API's error shape.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json_content_type(req.headers()) {
            return Err(unsupported_media_type());
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(body_too_large()),
            Err(e) => return Err(ApiError::bad_request("invalid-body", e.body_text(), None)),
        };
        match axum::Json::<T>::from_bytes(&bytes) {
            // Every body of this API is a JSON object; serde would also read a struct
            // from an array (`[null, null]`), which is never what a client meant.
            Ok(axum::Json(v)) if starts_as_object(&bytes) => Ok(ApiJson(v)),
            Ok(_) => Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid-field",
                message: "the body must be a JSON object (`{…}`), not an array or a single value".into(),
                field: None,
            }),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

/// `application/json` or any `application/…+json`, parameters (`; charset=…`) ignored.
fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn starts_as_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn unsupported_media_type() -> ApiError {
    ApiError {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        code: "unsupported-media-type",
        message: "send the body as JSON with `Content-Type: application/json`".into(),
        field: Some("header:Content-Type".into()),
    }
}

pub(crate) fn body_too_large() -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "body-too-large",
        message: format!("the body is larger than the {MAX_BODY} bytes accepted"),
        field: None,
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // serde's message names the path, e.g. "resources.gpus: invalid type ...".
            let text = e.body_text();
            let detail = text
                .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                .unwrap_or(&text);
            let field = detail.split_once(": ").map(|(f, _)| f.to_string()).filter(|f| !f.contains(' '));
            ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid-field",
                message: detail.to_string(),
                field,
            }
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(
            "invalid-json",
            format!("the body is not valid JSON: {}", e.body_text()),
            None,
        ),
        JsonRejection::MissingJsonContentType(_) => unsupported_media_type(),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => body_too_large(),
        other => ApiError::bad_request("invalid-body", other.body_text(), None),
    }
}

/// Query parameters whose errors are answered in the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(query_error(e)),
        }
    }
}

fn query_error(e: QueryRejection) -> ApiError {
    let text = e.body_text();
    let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text).to_string();
    let field = detail.split_once(':').map(|(f, _)| f.trim().to_string()).filter(|f| !f.contains(' '));
    ApiError { status: StatusCode::BAD_REQUEST, code: "invalid-query", message: detail, field }
}

/// Checks a page size.
pub fn page_limit(limit: Option<u32>, default: u32, max: u32) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::field("limit", format!("{n} is out of range; give 1..={max}"))),
    }
}

/// Checks a log position given as `after` (positions are 63-bit, as stored).
pub fn log_position(after: Option<u64>) -> Result<u64, ApiError> {
    match after {
        None => Ok(0),
        Some(a) if a <= i64::MAX as u64 => Ok(a),
        Some(a) => Err(ApiError::field(
            "after",
            format!("{a} is past any log position; give 0..=9223372036854775807"),
        )),
    }
}

/// Parses a cursor (a position, as returned in `next_cursor`).
pub fn parse_cursor(cursor: Option<&str>) -> Result<u64, ApiError> {
    match cursor {
        None | Some("") => Ok(0),
        Some(c) => {
            c.parse().map_err(|_| ApiError::field("cursor", "pass back a `next_cursor` from a previous page"))
        }
    }
}
