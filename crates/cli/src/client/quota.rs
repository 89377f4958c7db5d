//! `gigawatt quota`: a tenant's own quota, use and place in line; `quota set` and
//! `quota show` for operators.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use gigawatt_api::{QuotaConfig, QuotaStatus, QuotasInForce};

use super::table::{Table, when};
use super::verbs::{emit, emit_json, typed};
use super::{Conn, Output, connect};

/// Options of `gigawatt quota`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct QuotaArgs {
    #[command(subcommand)]
    pub cmd: Option<QuotaCommand>,
    /// The tenant (operators; a tenant token sees its own).
    #[arg(long)]
    pub tenant: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `gigawatt quota …` for operators.
#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Put a quota file (TOML) in force: flavours, cohorts, tenants, fair share. It
    /// replaces the quotas before it whole (admin, operator).
    Set {
        /// The quota file; see docs/queue.md for its fields.
        file: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Every governed tenant's quota against its use (admin, operator, auditor);
    /// `--toml` prints the file in force, to edit and set again.
    Show {
        /// Print the configuration in force as a quota file.
        #[arg(long)]
        toml: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

fn gpus(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.3}") }
}

fn limit(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), gpus)
}

fn flavour_rows(t: &mut Table, s: &QuotaStatus, with_tenant: bool) {
    for f in &s.flavours {
        let mut row = Vec::new();
        if with_tenant {
            row.push(s.tenant.clone());
        }
        row.extend([
            f.flavour.clone(),
            gpus(f.used),
            gpus(f.nominal),
            gpus(f.borrowed),
            limit(f.borrowing_limit),
            limit(f.lending_limit),
        ]);
        t.row(row);
    }
}

fn status_text(s: &QuotaStatus) -> String {
    let mut out = String::new();
    if !s.governed {
        out.push_str(&format!("tenant {}: no quota; its work is not limited by quota\n", s.tenant));
    } else {
        let cohort = s.cohort.as_deref().map_or_else(|| "no cohort".to_string(), |c| format!("cohort {c}"));
        out.push_str(&format!(
            "tenant {} ({cohort}, weight {}, fair share {:.4})\n\n",
            s.tenant, s.weight, s.fair_share
        ));
        let mut t = Table::new(&["FLAVOUR", "USED", "NOMINAL", "BORROWED", "BORROW-LIMIT", "LEND-LIMIT"]);
        flavour_rows(&mut t, s, false);
        out.push_str(&t.render());
        if !s.power.is_empty() {
            out.push('\n');
            let mut p = Table::new(&["SITE", "POWER USED", "POWER LIMIT"]);
            for x in &s.power {
                p.row(vec![x.site.clone(), format!("{:.1} kW", x.used_kw), format!("{:.1} kW", x.limit_kw)]);
            }
            out.push_str(&p.render());
        }
        if let Some(e) = &s.energy {
            out.push_str(&format!(
                "\nenergy: {:.1} of {:.1} kWh committed this billing period ({} to {})\n",
                e.committed_kwh,
                e.limit_kwh,
                when(&e.period_start),
                when(&e.period_end)
            ));
        }
    }
    out.push_str(&format!("\n{} workloads waiting", s.pending));
    if s.waiting.is_empty() {
        out.push('\n');
        return out;
    }
    out.push_str(&format!("; the first {} in line:\n", s.waiting.len()));
    let mut t = Table::new(&["ID", "NAME", "AHEAD(OWN)", "TENANTS AHEAD", "EXPECTED START", "HELD BY"]);
    for w in &s.waiting {
        t.row(vec![
            w.workload.clone(),
            w.name.clone(),
            w.ahead_in_tenant.to_string(),
            w.tenants_ahead.to_string(),
            w.expected_start.as_deref().map_or_else(|| "-".to_string(), when),
            w.quota.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    out.push_str(&t.render());
    out
}

/// Runs `gigawatt quota`.
pub fn quota(a: &QuotaArgs) -> anyhow::Result<()> {
    match &a.cmd {
        None => {
            let api = connect(&a.conn)?;
            let query: Vec<(&str, String)> = a.tenant.iter().map(|t| ("tenant", t.clone())).collect();
            let s: QuotaStatus = typed(api.get("/v1/quota", &query)?, "a quota")?;
            match a.conn.output {
                Output::Json => emit_json(&s),
                Output::Table => emit(&status_text(&s)),
            }
        }
        Some(QuotaCommand::Set { file, conn }) => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let config =
                QuotaConfig::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            // The same checks the server makes on amounts and names, before sending.
            config.to_core().map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let api = connect(conn)?;
            let answer = api.put("/v1/quotas", &serde_json::to_value(&config)?)?;
            let q: QuotasInForce = typed(answer.body, "quotas")?;
            match conn.output {
                Output::Json => emit_json(&q),
                Output::Table => emit(&format!(
                    "quotas in force: {} flavours, {} cohorts, {} tenants\n",
                    q.config.flavours.len(),
                    q.config.cohorts.len(),
                    q.config.tenants.len()
                )),
            }
        }
        Some(QuotaCommand::Show { toml, conn }) => {
            let api = connect(conn)?;
            let q: QuotasInForce = typed(api.get("/v1/quotas", &[])?, "quotas")?;
            if *toml {
                return emit(&toml::to_string(&q.config)?);
            }
            match conn.output {
                Output::Json => emit_json(&q),
                Output::Table => {
                    let mut out = match (&q.set_at, &q.set_by) {
                        (Some(at), Some(by)) => format!("quotas set {} by token {by}\n\n", when(at)),
                        _ => "no quotas set: no tenant is limited\n".to_string(),
                    };
                    let mut t = Table::new(&[
                        "TENANT",
                        "FLAVOUR",
                        "USED",
                        "NOMINAL",
                        "BORROWED",
                        "BORROW-LIMIT",
                        "LEND-LIMIT",
                    ]);
                    for s in &q.tenants {
                        flavour_rows(&mut t, s, true);
                    }
                    if !q.tenants.is_empty() {
                        out.push_str(&t.render());
                    }
                    emit(&out)
                }
            }
        }
    }
}
