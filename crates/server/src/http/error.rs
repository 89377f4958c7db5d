//! The API's errors: every one a status and a JSON body `{code, message, field}`.
//!
//! The only place where an [`EngineError`] becomes an HTTP status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gigawatt_api::{ApiErrorBody, FieldError};

use crate::error::EngineError;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// For a person.
    pub message: String,
    /// The field at fault.
    pub field: Option<String>,
}

impl ApiError {
    /// 422: a field is wrong.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid-field",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(code: &'static str, message: impl Into<String>, field: Option<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, code, message: message.into(), field }
    }

    /// 404: no such thing, or not one the caller may see (the same answer, so that a
    /// tenant cannot learn what other tenants have).
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not-found",
            message: format!("no {what} `{id}`"),
            field: None,
        }
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: message.into(),
            field: Some("header:Authorization".into()),
        }
    }

    /// The same error with another message (to say more than the constructor does).
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> ApiError {
        self.message = message.into();
        self
    }

    /// 403: the caller is known but its role may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::FORBIDDEN, code: "forbidden", message: message.into(), field: None }
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::CONFLICT, code: "conflict", message: message.into(), field: None }
    }

    /// 503: the control plane cannot serve the request now (the log is unreachable).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: message.into(),
            field: None,
        }
    }

    /// 500: a bug in gigawatt.
    pub fn internal(message: String) -> ApiError {
        tracing::error!("internal error: {message}");
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "internal", message, field: None }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let (status, code, field) = match &e {
            EngineError::Invalid { field, .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid-field", Some(field.clone()))
            }
            EngineError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", None),
            EngineError::Unauthenticated(_) => {
                (StatusCode::UNAUTHORIZED, "unauthorized", Some("header:Authorization".to_string()))
            }
            EngineError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            EngineError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            EngineError::StaleGeneration(_) => (StatusCode::CONFLICT, "stale-generation", None),
            EngineError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            EngineError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        };
        let message = match e {
            EngineError::Invalid { message, .. } => message,
            EngineError::NotFound(m)
            | EngineError::Unauthenticated(m)
            | EngineError::Forbidden(m)
            | EngineError::Conflict(m)
            | EngineError::StaleGeneration(m)
            | EngineError::Unavailable(m)
            | EngineError::Internal(m) => m,
        };
        ApiError { status, code, message, field }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> ApiError {
        ApiError::field(e.field, e.message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ApiErrorBody { code: self.code.to_string(), message: self.message, field: self.field };
        let mut r = (self.status, Json(body)).into_response();
        // Every 503 is a passing state (the log unwritable, a reload, a deadline): say
        // when to come back.
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        r
    }
}
