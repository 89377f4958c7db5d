//! Tenants, API tokens and roles.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything, including tenants and tokens.
    Admin,
    /// The SREs: sees the fleet and every workload, takes nodes down, sets budgets,
    /// cancels any workload.
    Operator,
    /// A customer: submits, sees and cancels only its own tenant's workloads.
    Tenant,
    /// Read-only access to everything, including the event log.
    Auditor,
    /// A node agent: registers nodes, sends heartbeats, telemetry, task reports and
    /// logs. It sees no workload through the rest of the API.
    Agent,
}

impl Role {
    /// The API spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Tenant => "tenant",
            Role::Auditor => "auditor",
            Role::Agent => "agent",
        }
    }

    /// Parses the API spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Role> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// Creates a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Identity: 1..=63 lowercase letters, digits and `-`, starting with a letter.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,62}$")]
    pub id: String,
    /// Display name (at most 128 characters, no control characters; default: the id).
    #[serde(default)]
    #[schema(max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub name: Option<String>,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantInfo {
    /// Identity.
    pub id: String,
    /// Display name.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

/// Issues a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A label for people (who or what uses it): 1..=128 characters, no control
    /// characters.
    #[schema(min_length = 1, max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$")]
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The tenant, for (and only for) the `tenant` role.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The node, for (and only for) the `agent` role: an agent token acts for exactly
    /// one node. Prefer `POST /v1/nodes/{name}/enroll`, whose one-time join token the
    /// agent exchanges for this credential itself.
    #[serde(default)]
    pub node: Option<String>,
}

/// A token just issued. The secret is shown once and never stored: only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    /// Token id (not secret), for listing and revoking.
    pub id: String,
    /// The secret bearer token: `gw_` and 43 base64url characters (256 random bits).
    pub token: String,
    /// Label.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Tenant, for tenant tokens.
    pub tenant: Option<String>,
    /// Node, for agent tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// Token id.
    pub id: String,
    /// Label.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Tenant, for tenant tokens.
    pub tenant: Option<String>,
    /// When it was issued (RFC 3339).
    pub created_at: String,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Node, for agent tokens and join tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// For a one-time join token: until when it may be exchanged (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_expires_at: Option<String>,
}

/// `POST /v1/nodes/{name}/enroll`: a one-time join token for a node's agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollNode {
    /// How long the join token may be exchanged, in seconds: 60..=604800 (a week);
    /// 3600 when absent.
    #[serde(default)]
    #[schema(minimum = 60, maximum = 604_800)]
    pub ttl_s: Option<u64>,
}

/// A one-time join token: the agent of `node` exchanges it once, before it expires,
/// for its own credential (`POST /v1/agent/enroll`). Shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinToken {
    /// Token id (not secret), for listing and revoking.
    pub id: String,
    /// The secret join token.
    pub token: String,
    /// The node it enrols.
    pub node: String,
    /// Until when it may be exchanged (RFC 3339).
    pub expires_at: String,
}

/// `POST /v1/agent/enroll`, with a join token as bearer: the node it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentEnroll {
    /// The node, as named in the fleet file; must be the join token's.
    pub node: String,
}

/// A node's own credential, issued in exchange for its join token. Shown once: the agent
/// keeps it in its credential file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeCredential {
    /// Token id (not secret), for listing and revoking.
    pub id: String,
    /// The secret bearer token of role `agent`, good for this node only.
    pub token: String,
    /// The node.
    pub node: String,
}

/// Who the caller is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// Token id.
    pub token_id: String,
    /// Token label.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Tenant, for tenant tokens.
    pub tenant: Option<String>,
    /// Node, for agent tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}
