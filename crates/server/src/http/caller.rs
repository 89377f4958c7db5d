//! Who is calling: the bearer token of a request, looked up among the log's tokens.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::AppState;
use crate::auth::{Caller, hash};
use crate::http::error::ApiError;

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Caller, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("send `Authorization: Bearer <token>`"))?;
        let value =
            header.to_str().map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII"))?;
        let secret = value
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let digest = hash(secret);
        let mut found = state.lookup_token(&digest).await;
        // A token may have been issued straight into the log (`gigawatt admin
        // create-token`): catch up with the log, at most once a second, and look again.
        if found.is_none() && state.catch_up().await {
            found = state.lookup_token(&digest).await;
        }
        if let Some(mut caller) = found {
            caller.source = parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.to_string());
            if let Some(until) = caller.join_expires_at {
                if parts.uri.path() != "/v1/agent/enroll" {
                    return Err(ApiError::forbidden("a join token is only good for `POST /v1/agent/enroll`"));
                }
                if crate::now_ms() > until {
                    return Err(ApiError::unauthorized(
                        "this join token expired; issue another: `gigawatt node enroll NODE`",
                    ));
                }
            }
            return Ok(caller);
        }
        if parts.uri.path().starts_with("/v1/agent/") {
            tracing::warn!(path = parts.uri.path(), "agent request refused: unknown or revoked token");
        }
        Err(ApiError::unauthorized("unknown or revoked token"))
    }
}
