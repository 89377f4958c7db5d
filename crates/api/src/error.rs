//! The one error shape every 4xx and 5xx answer carries.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error answer: a stable machine code, a sentence for a person, and
/// the request field at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiErrorBody {
    /// Stable, machine-readable code, e.g. `invalid-field`, `not-found`, `unauthorized`.
    pub code: String,
    /// What went wrong and what would be right, for a person.
    pub message: String,
    /// The field at fault as a dotted path (`resources.gpus`), or the header
    /// (`header:Idempotency-Key`), when the error is about one.
    #[serde(default)]
    pub field: Option<String>,
}

/// A request field that is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), message: message.into() }
    }
}
