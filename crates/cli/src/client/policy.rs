//! `gigawatt policy set|show`: a tenant's residency policy, which narrows the operator's
//! rule of every data class, and the effective policy of each class with the source of
//! each term.

use clap::{Args, Subcommand};
use gigawatt_api::{PolicySpec, TenantPolicy};

use super::table::{Table, when};
use super::verbs::{emit, emit_json, typed};
use super::{Conn, Output, connect};

/// `gigawatt policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Put a tenant's residency policy in force (admin, operator, or the tenant itself).
    /// It only narrows: a site must also meet the operator's rule for each data class.
    /// The tenant's running work that breaks it is evicted and waits under it. It
    /// replaces the tenant's policy before it whole; `--clear` lifts it.
    Set(SetArgs),
    /// The effective policy of each data class for a tenant, with the source of each
    /// term and the sites it allows.
    Show {
        /// The tenant.
        tenant: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Options of `gigawatt policy set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The tenant.
    pub tenant: String,
    /// Countries (ISO codes such as FR) or groups (EU, EEA), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    pub countries: Vec<String>,
    /// Jurisdictions the site's operator must answer to (EU, US), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "LAWS")]
    pub jurisdictions: Vec<String>,
    /// Certifications every site must hold (hds, secnumcloud, soc2, c5, iso27001).
    #[arg(long, value_delimiter = ',', value_name = "CERTS")]
    pub certifications: Vec<String>,
    /// Sites by id, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub sites: Vec<String>,
    /// Lift the tenant's policy (only the operator's rules remain).
    #[arg(long, conflicts_with_all = ["countries", "jurisdictions", "certifications", "sites"])]
    pub clear: bool,
    #[command(flatten)]
    pub conn: Conn,
}

/// The effective policy for people: one block per data class.
fn text(p: &TenantPolicy) -> String {
    let mut out = match (&p.set_at, &p.set_by) {
        (Some(at), Some(by)) => {
            let spec = &p.policy;
            let mut terms = Vec::new();
            for (name, v) in [
                ("countries", &spec.countries),
                ("jurisdictions", &spec.jurisdictions),
                ("certifications", &spec.certifications),
                ("sites", &spec.sites),
            ] {
                if !v.is_empty() {
                    terms.push(format!("{name} {}", v.join(",")));
                }
            }
            format!("tenant {}: policy {} (set {} by token {by})\n", p.tenant, terms.join("; "), when(at))
        }
        _ => format!("tenant {}: no policy of its own; the operator's rules apply\n", p.tenant),
    };
    for c in &p.classes {
        out.push_str(&format!("\n{} data: {}\n", c.data_class, c.text));
        let mut t = Table::new(&["TERM", "VALUE", "SOURCE"]);
        for term in &c.terms {
            t.row(vec![term.term.clone(), term.value.clone(), term.source.clone()]);
        }
        if c.terms.is_empty() {
            out.push_str("  no term restricts it\n");
        } else {
            out.push_str(&t.render());
        }
        let sites = if c.sites.is_empty() { "none".to_string() } else { c.sites.join(", ") };
        out.push_str(&format!("  allowed sites: {sites}\n"));
        for why in &c.excluded {
            out.push_str(&format!("  excluded: {why}\n"));
        }
    }
    out
}

/// Runs `gigawatt policy`.
pub fn policy(cmd: &PolicyCommand) -> anyhow::Result<()> {
    let (p, conn): (TenantPolicy, &Conn) = match cmd {
        PolicyCommand::Set(a) => {
            let spec = PolicySpec {
                countries: a.countries.clone(),
                jurisdictions: a.jurisdictions.clone(),
                certifications: a.certifications.clone(),
                sites: a.sites.clone(),
            };
            if spec == PolicySpec::default() && !a.clear {
                anyhow::bail!(
                    "give at least one of --countries, --jurisdictions, --certifications, --sites, or --clear to lift the policy"
                );
            }
            // The same syntax checks the server makes, before sending.
            spec.to_rule().map_err(|e| anyhow::anyhow!("--{e}"))?;
            let api = connect(&a.conn)?;
            let path = format!("/v1/tenants/{}/policy", a.tenant);
            (typed(api.put(&path, &serde_json::to_value(&spec)?)?.body, "a policy")?, &a.conn)
        }
        PolicyCommand::Show { tenant, conn } => {
            let api = connect(conn)?;
            (typed(api.get(&format!("/v1/tenants/{tenant}/policy"), &[])?, "a policy")?, conn)
        }
    };
    match conn.output {
        Output::Json => emit_json(&p),
        Output::Table => emit(&text(&p)),
    }
}
