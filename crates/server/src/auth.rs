//! Bearer tokens: minting, hashing, and the [`Caller`] every request resolves to.
//!
//! A token is `gw_` followed by 32 random bytes in base64url (256 bits from the
//! operating system's generator). The log keeps only its SHA-256, so neither the
//! database nor a backup can be replayed into a working token.

use base64::Engine as _;
use gigawatt_api::Role;
use gigawatt_store::{LogEvent, hex};
use sha2::{Digest, Sha256};

use crate::error::EngineError;

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
    /// Node, for agent tokens (and join tokens).
    pub node: Option<String>,
    /// For a join token: until when it may be exchanged (Unix ms).
    pub join_expires_at: Option<i64>,
    /// The address the request came from, when it came over the network.
    pub source: Option<String>,
}

impl Caller {
    /// The caller as the log records it.
    #[must_use]
    pub fn actor(&self) -> gigawatt_store::Actor {
        gigawatt_store::Actor {
            token_id: self.token_id.clone(),
            principal: self.name.clone(),
            role: self.role,
            tenant: self.tenant.clone(),
            node: self.node.clone(),
            source: self.source.clone(),
        }
    }

    /// Whether the caller may see workloads of `tenant`.
    #[must_use]
    pub fn sees_tenant(&self, tenant: &str) -> bool {
        match self.role {
            Role::Tenant => self.tenant.as_deref() == Some(tenant),
            Role::Admin | Role::Operator | Role::Auditor => true,
            Role::Agent => false,
        }
    }

    /// Why the caller may not act for `node` on the agent protocol, if it may not: only
    /// the credential of that very node may (an admin may not either: Kubernetes binds
    /// each kubelet to its node the same way).
    pub fn refuses_node(&self, node: &str) -> Option<String> {
        match (self.role, &self.node, self.join_expires_at) {
            (Role::Agent, Some(n), None) if n == node => None,
            (Role::Agent, Some(n), None) => Some(format!("this credential is node {n}'s")),
            (Role::Agent, Some(n), Some(_)) => {
                Some(format!("a join token (for node {n}) is only good for `POST /v1/agent/enroll`"))
            }
            (Role::Agent, None, _) => Some(
                "this agent token is bound to no node (issued before node binding); enrol the node: `gigawatt node enroll NODE`"
                    .into(),
            ),
            (role, _, _) => Some(format!("only the node's own agent credential acts for it; this token is {}", role.as_str())),
        }
    }

    /// Refuses unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), EngineError> {
        if self.join_expires_at.is_some() {
            return Err(EngineError::forbidden(format!(
                "{what}: a join token is only good for `POST /v1/agent/enroll`"
            )));
        }
        if roles.contains(&self.role) {
            Ok(())
        } else {
            let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(EngineError::forbidden(format!(
                "{what} needs a token with role {}; this one is {}",
                allowed.join(" or "),
                self.role.as_str()
            )))
        }
    }
}

/// Random bytes from the operating system.
fn random<const N: usize>() -> Result<[u8; N], EngineError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)
        .map_err(|e| EngineError::internal(format!("no randomness from the OS: {e}")))?;
    Ok(buf)
}

/// A random 64-bit number from the operating system.
pub fn random_u64() -> Result<u64, EngineError> {
    Ok(u64::from_le_bytes(random::<8>()?))
}

/// 256 random bits from the operating system, as 64 hex digits (a key).
pub fn random_hex32() -> Result<String, EngineError> {
    Ok(hex(&random::<32>()?))
}

/// Hex SHA-256 of a token secret.
#[must_use]
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// What a token acts for, beyond its role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The tenant of a tenant token.
    pub tenant: Option<String>,
    /// The node of an agent token.
    pub node: Option<String>,
    /// A join token: exchangeable once, until then (Unix ms).
    pub join_expires_at: Option<i64>,
}

impl Scope {
    /// A tenant token's scope.
    #[must_use]
    pub fn tenant(tenant: Option<String>) -> Scope {
        Scope { tenant, ..Scope::default() }
    }
}

/// Mints a token: its secret and the log event that records its hash and who issued it
/// (`by`: the issuer's token id, or what issued it without one).
pub fn issue(role: Role, name: &str, scope: Scope, by: &str) -> Result<(String, LogEvent), EngineError> {
    let secret = format!("gw_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>()?));
    let token_id = format!("tok-{}", hex(&random::<6>()?));
    let event = LogEvent::TokenIssued {
        token_id,
        name: name.to_string(),
        role,
        tenant: scope.tenant,
        sha256: hash(&secret),
        node: scope.node,
        join_expires_at: scope.join_expires_at,
        by: Some(by.to_string()),
    };
    Ok((secret, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, node: Option<&str>, join: bool) -> Caller {
        Caller {
            token_id: "tok-1".into(),
            name: "t".into(),
            role,
            tenant: None,
            node: node.map(str::to_string),
            join_expires_at: join.then_some(1),
            source: None,
        }
    }

    #[test]
    fn only_a_nodes_own_credential_acts_for_it() {
        assert_eq!(caller(Role::Agent, Some("n1"), false).refuses_node("n1"), None);
        let why = |c: Caller| c.refuses_node("n1").expect("refused");
        assert!(why(caller(Role::Agent, Some("n2"), false)).contains("node n2's"));
        assert!(why(caller(Role::Agent, Some("n1"), true)).contains("join token"));
        // An agent token from before node binding acts for no node.
        assert!(why(caller(Role::Agent, None, false)).contains("gigawatt node enroll"));
        for role in [Role::Admin, Role::Operator, Role::Tenant, Role::Auditor] {
            assert!(why(caller(role, None, false)).contains(role.as_str()));
        }
        // A join token is good for nothing else either.
        assert!(caller(Role::Agent, Some("n1"), true).require(&[Role::Agent], "listing").is_err());
    }
}
