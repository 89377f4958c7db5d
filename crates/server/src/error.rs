//! Why the engine refused a command or a query, as a typed error.
//!
//! The engine, the writer, the agent checks and the token rules return an
//! [`EngineError`]; the HTTP edge (`http/error.rs`) alone maps each kind to a status
//! and the JSON error shape. So the rules say what went wrong, and only the edge knows
//! how HTTP spells it.

/// Why a command or a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// A field of the request is wrong: which one, what is wrong, what would be right.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as the API names it (`gpus[0].power_w`, `header:Idempotency-Key`).
        field: String,
        /// What is wrong and what would be right.
        message: String,
    },
    /// No such thing, or not one the caller may see: the same answer for both, so that
    /// a tenant cannot learn what other tenants have.
    #[error("{0}")]
    NotFound(String),
    /// The caller is not known (no token, a malformed one, an unknown or revoked one).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known, but its role or its scope does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with the current state (ending what already ended).
    #[error("{0}")]
    Conflict(String),
    /// An agent spoke for an older generation of its node (fenced by a newer
    /// registration, or the node was declared lost): it must stop and register again.
    #[error("{0}")]
    StaleGeneration(String),
    /// The control plane cannot do it now (the log cannot be written or read, another
    /// server leads, shutting down); nothing was changed, and a retry may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A bug in gigawatt.
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    /// A field is wrong.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> EngineError {
        EngineError::Invalid { field: field.into(), message: message.into() }
    }

    /// No `what` named `id` that the caller may see.
    pub fn not_found(what: &str, id: &str) -> EngineError {
        EngineError::NotFound(format!("no {what} `{id}`"))
    }

    /// The caller is not known.
    pub fn unauthorized(message: impl Into<String>) -> EngineError {
        EngineError::Unauthenticated(message.into())
    }

    /// The caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> EngineError {
        EngineError::Forbidden(message.into())
    }

    /// The request conflicts with the current state.
    pub fn conflict(message: impl Into<String>) -> EngineError {
        EngineError::Conflict(message.into())
    }

    /// Not now; retry.
    pub fn unavailable(message: impl Into<String>) -> EngineError {
        EngineError::Unavailable(message.into())
    }

    /// A bug in gigawatt; logged where it is made.
    pub fn internal(message: String) -> EngineError {
        tracing::error!("internal error: {message}");
        EngineError::Internal(message)
    }

    /// The field at fault, for an [`EngineError::Invalid`].
    #[must_use]
    pub fn field_name(&self) -> Option<&str> {
        match self {
            EngineError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The same error with another message (to say more than the constructor does).
    #[must_use]
    pub fn with_message(self, message: impl Into<String>) -> EngineError {
        let message = message.into();
        match self {
            EngineError::Invalid { field, .. } => EngineError::Invalid { field, message },
            EngineError::NotFound(_) => EngineError::NotFound(message),
            EngineError::Unauthenticated(_) => EngineError::Unauthenticated(message),
            EngineError::Forbidden(_) => EngineError::Forbidden(message),
            EngineError::Conflict(_) => EngineError::Conflict(message),
            EngineError::StaleGeneration(_) => EngineError::StaleGeneration(message),
            EngineError::Unavailable(_) => EngineError::Unavailable(message),
            EngineError::Internal(_) => EngineError::Internal(message),
        }
    }
}

impl From<gigawatt_api::FieldError> for EngineError {
    fn from(e: gigawatt_api::FieldError) -> EngineError {
        EngineError::field(e.field, e.message)
    }
}
