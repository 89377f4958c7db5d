//! Bearer tokens: minting, hashing, and the [`Caller`] every request resolves to.
//!
//! A token is `gw_` followed by 32 random bytes in base64url (256 bits from the
//! operating system's generator). The log keeps only its SHA-256, so neither the
//! database nor a backup can be replayed into a working token.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use gigawatt_api::Role;
use gigawatt_store::{LogEvent, hex};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Token id.
    pub token_id: String,
    /// Token label.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Tenant, for tenant tokens.
    pub tenant: Option<String>,
}

impl Caller {
    /// Whether the caller may see workloads of `tenant`.
    #[must_use]
    pub fn sees_tenant(&self, tenant: &str) -> bool {
        match self.role {
            Role::Tenant => self.tenant.as_deref() == Some(tenant),
            Role::Admin | Role::Operator | Role::Auditor => true,
            Role::Agent => false,
        }
    }

    /// Refuses unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::forbidden(format!(
                "{what} needs a token with role {}; this one is {}",
                allowed.join(" or "),
                self.role.as_str()
            )))
        }
    }
}

/// Random bytes from the operating system.
fn random<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| ApiError::internal(format!("no randomness from the OS: {e}")))?;
    Ok(buf)
}

/// A random 64-bit number from the operating system.
pub fn random_u64() -> Result<u64, ApiError> {
    Ok(u64::from_le_bytes(random::<8>()?))
}

/// Hex SHA-256 of a token secret.
#[must_use]
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Mints a token: its secret and the log event that records its hash.
pub fn issue(role: Role, name: &str, tenant: Option<String>) -> Result<(String, LogEvent), ApiError> {
    let secret = format!("gw_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>()?));
    let token_id = format!("tok-{}", hex(&random::<6>()?));
    let event =
        LogEvent::TokenIssued { token_id, name: name.to_string(), role, tenant, sha256: hash(&secret) };
    Ok((secret, event))
}

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
        if let Some(caller) = state.lookup_token(&digest).await {
            return Ok(caller);
        }
        // A token may have been issued straight into the log (`gigawatt admin
        // create-token`): catch up with the log, at most once a second, and look again.
        if state.catch_up().await
            && let Some(caller) = state.lookup_token(&digest).await
        {
            return Ok(caller);
        }
        if parts.uri.path().starts_with("/v1/agent/") {
            tracing::warn!(path = parts.uri.path(), "agent request refused: unknown or revoked token");
        }
        Err(ApiError::unauthorized("unknown or revoked token"))
    }
}
