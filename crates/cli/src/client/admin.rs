//! `gigawatt tenant …` and `gigawatt token …`: the admin's verbs, over the API.

use clap::{Args, Subcommand};
use gigawatt_api::{CreateTenant, CreateToken, Role, TenantInfo, TokenCreated, TokenInfo};

use super::http::Retry;
use super::table::{Table, when};
use super::verbs::{emit, emit_json, seg, typed};
use super::{Conn, Output, connect};

/// `gigawatt tenant …`.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (admin).
    Create {
        /// Identity: lowercase letters, digits and `-`, starting with a letter.
        id: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List tenants (a tenant token sees its own).
    Ls {
        #[command(flatten)]
        conn: Conn,
    },
}

/// Options of `gigawatt token create`.
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// Role: admin, operator, tenant, auditor or agent.
    #[arg(long)]
    pub role: String,
    /// The tenant, for a tenant token.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The node, for an agent token (it acts for that node only). `gigawatt node enroll`
    /// is the better way: the secret then never leaves the node.
    #[arg(long)]
    pub node: Option<String>,
    /// A label: who or what uses the token.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// `gigawatt token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token (admin). The secret is printed once and stored nowhere.
    Create(TokenCreateArgs),
    /// List tokens, never their secrets (admin, auditor).
    Ls {
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a token (admin); it stops working at once.
    Revoke {
        /// Token id (`tok-…`, from `gigawatt token ls`).
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs a tenant verb.
pub fn tenant(cmd: &TenantCommand) -> anyhow::Result<()> {
    match cmd {
        TenantCommand::Create { id, name, conn } => {
            let api = connect(conn)?;
            let body = serde_json::to_value(CreateTenant { id: id.clone(), name: name.clone() })?;
            let answer = api.post("/v1/tenants", &body, &[], Retry::ConnectOnly)?;
            let t: TenantInfo = typed(answer.body, "tenant")?;
            match conn.output {
                Output::Json => emit_json(&t),
                Output::Table => emit(&format!("tenant {} created ({})\n", t.id, t.name)),
            }
        }
        TenantCommand::Ls { conn } => {
            let api = connect(conn)?;
            let list: Vec<TenantInfo> = typed(api.get("/v1/tenants", &[])?, "tenants")?;
            match conn.output {
                Output::Json => emit_json(&list),
                Output::Table => {
                    let mut t = Table::new(&["ID", "NAME", "CREATED"]);
                    for x in &list {
                        t.row(vec![x.id.clone(), x.name.clone(), when(&x.created_at)]);
                    }
                    emit(&t.render())
                }
            }
        }
    }
}

/// Runs a token verb.
pub fn token(cmd: &TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create(a) => {
            let role = Role::parse(&a.role).ok_or_else(|| {
                anyhow::anyhow!("--role `{}`: use admin, operator, tenant, auditor or agent", a.role)
            })?;
            let api = connect(&a.conn)?;
            let body = serde_json::to_value(CreateToken {
                name: a.name.clone(),
                role,
                tenant: a.tenant.clone(),
                node: a.node.clone(),
            })?;
            let answer = api.post("/v1/tokens", &body, &[], Retry::ConnectOnly)?;
            let t: TokenCreated = typed(answer.body, "token")?;
            match a.conn.output {
                Output::Json => emit_json(&t),
                Output::Table => emit(&format!(
                    "token id: {}\n{} token: {}\n(shown once; only its hash is stored)\n",
                    t.id,
                    t.role.as_str(),
                    t.token
                )),
            }
        }
        TokenCommand::Ls { conn } => {
            let api = connect(conn)?;
            let list: Vec<TokenInfo> = typed(api.get("/v1/tokens", &[])?, "tokens")?;
            match conn.output {
                Output::Json => emit_json(&list),
                Output::Table => {
                    let mut t = Table::new(&["ID", "ROLE", "TENANT", "NAME", "CREATED", "REVOKED"]);
                    for x in &list {
                        t.row(vec![
                            x.id.clone(),
                            x.role.as_str().into(),
                            x.tenant.clone().unwrap_or_else(|| "-".into()),
                            x.name.clone(),
                            when(&x.created_at),
                            if x.revoked { "yes".into() } else { "-".into() },
                        ]);
                    }
                    emit(&t.render())
                }
            }
        }
        TokenCommand::Revoke { id, conn } => {
            let api = connect(conn)?;
            let answer = api.delete(&format!("/v1/tokens/{}", seg(id)))?;
            let t: TokenInfo = typed(answer.body, "token")?;
            match conn.output {
                Output::Json => emit_json(&t),
                Output::Table => emit(&format!("token {} revoked\n", t.id)),
            }
        }
    }
}
