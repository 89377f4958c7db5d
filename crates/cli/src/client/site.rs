//! `gigawatt site …`: curtailments of a site's grid budget.

use clap::{Args, Subcommand};
use gigawatt_api::CurtailmentInfo;
use serde_json::json;

use super::http::Retry;
use super::table::Table;
use super::verbs::{emit, emit_json, seg, typed};
use super::{Conn, Output, connect};

/// Site power operations (operators).
#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Curtail a site: draw at most `--to` from the grid between `--from` and `--until`
    /// (a grid operator's demand-response request). Work is shed, lowest priority first,
    /// and GPUs capped so that the site meets it before it starts.
    Curtail(CurtailArgs),
    /// List a site's curtailments.
    Curtailments(SiteArgs),
    /// Call a curtailment off: the site's budget comes back at once.
    Uncurtail(UncurtailArgs),
}

/// Options of `gigawatt site curtail`.
#[derive(Debug, Args)]
pub struct CurtailArgs {
    /// Site id.
    pub site: String,
    /// The most the site may draw from the grid, facility side: `6MW`, `5500kW`, `6`
    /// (MW).
    #[arg(long)]
    pub to: String,
    /// Start: RFC 3339 (`2026-12-05T18:00:00Z`), `now` (the default), or `+30m` from now.
    #[arg(long, default_value = "now")]
    pub from: String,
    /// End: RFC 3339, or `+2h` from the start.
    #[arg(long)]
    pub until: String,
    /// Why (kept in the log).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// A site.
#[derive(Debug, Args)]
pub struct SiteArgs {
    /// Site id.
    pub site: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// Options of `gigawatt site uncurtail`.
#[derive(Debug, Args)]
pub struct UncurtailArgs {
    /// Site id.
    pub site: String,
    /// Curtailment number (see `gigawatt site curtailments`).
    pub number: u64,
    #[command(flatten)]
    pub conn: Conn,
}

/// Runs a `site` subcommand.
pub fn site(cmd: &SiteCommand) -> anyhow::Result<()> {
    match cmd {
        SiteCommand::Curtail(a) => curtail(a),
        SiteCommand::Curtailments(a) => curtailments(a),
        SiteCommand::Uncurtail(a) => uncurtail(a),
    }
}

/// `6MW`, `5500kW`, `6000000W` or a bare number of MW, as MW.
pub fn parse_power_mw(text: &str) -> anyhow::Result<f64> {
    let t = text.trim().to_ascii_lowercase().replace(' ', "");
    let (number, scale) = if let Some(n) = t.strip_suffix("mw") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("kw") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('w') {
        (n, 1e-6)
    } else {
        (t.as_str(), 1.0)
    };
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v * scale),
        _ => anyhow::bail!("`{text}` is not a power: write e.g. `6MW`, `5500kW` or `6` (MW)"),
    }
}

/// `now`, `+30m`/`+2h` after `base`, or RFC 3339, as RFC 3339 (UTC).
pub fn parse_instant(text: &str, base: chrono::DateTime<chrono::Utc>) -> anyhow::Result<String> {
    let t = text.trim();
    let at = if t.eq_ignore_ascii_case("now") {
        base
    } else if let Some(rel) = t.strip_prefix('+') {
        let d = humantime::parse_duration(rel)
            .map_err(|e| anyhow::anyhow!("`{text}`: {e}; write e.g. `+30m` or `+2h`"))?;
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| base.checked_add_signed(d))
            .ok_or_else(|| anyhow::anyhow!("`{text}` is too far ahead: give a time before the year 262143"))?
    } else {
        chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| {
                anyhow::anyhow!(
                    "`{text}` is not a time ({e}): write RFC 3339 (2026-12-05T18:00:00Z), `now` or `+30m`"
                )
            })?
            .with_timezone(&chrono::Utc)
    };
    Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn curtail(a: &CurtailArgs) -> anyhow::Result<()> {
    let to_mw = parse_power_mw(&a.to)?;
    let now: chrono::DateTime<chrono::Utc> = std::time::SystemTime::now().into();
    let from = parse_instant(&a.from, now)?;
    let start = chrono::DateTime::parse_from_rfc3339(&from).map_or(now, |t| t.with_timezone(&chrono::Utc));
    let until = parse_instant(&a.until, start)?;
    let api = connect(&a.conn)?;
    let body = json!({ "to_mw": to_mw, "from": from, "until": until, "reason": a.reason });
    // Not retried once sent: a second request would schedule a second curtailment.
    let answer =
        api.post(&format!("/v1/sites/{}/curtailments", seg(&a.site)), &body, &[], Retry::ConnectOnly)?;
    if a.conn.output == Output::Json {
        return emit_json(&answer.body);
    }
    let c: CurtailmentInfo = typed(answer.body, "the curtailment")?;
    let mut text = format!(
        "curtailment {} of site {}: at most {} MW from the grid ({:.2} MW of IT) from {} until {}\n",
        c.id,
        c.site,
        c.to_mw,
        c.it_budget_w as f64 / 1e6,
        c.from,
        c.until
    );
    if c.would_preempt.is_empty() {
        text.push_str("  no work needs to stop: GPU power caps meet it\n");
    } else {
        text.push_str(&format!("  stops, lowest priority first: {}\n", c.would_preempt.join(", ")));
    }
    if let Some(alert) = &c.alert {
        text.push_str(&format!("  ALERT: {alert}\n"));
    }
    emit(&text)
}

fn curtailments(a: &SiteArgs) -> anyhow::Result<()> {
    let api = connect(&a.conn)?;
    let list: Vec<CurtailmentInfo> =
        typed(api.get(&format!("/v1/sites/{}/curtailments", seg(&a.site)), &[])?, "the curtailments")?;
    if a.conn.output == Output::Json {
        return emit_json(&list);
    }
    let mut t = Table::new(&[">#", "STATE", ">TO (MW)", ">IT (MW)", "FROM", "UNTIL", "REASON"]);
    for c in &list {
        t.row(vec![
            c.id.to_string(),
            c.state.clone(),
            format!("{}", c.to_mw),
            format!("{:.2}", c.it_budget_w as f64 / 1e6),
            c.from.clone(),
            c.until.clone(),
            c.reason.clone(),
        ]);
    }
    emit(&t.render())
}

fn uncurtail(a: &UncurtailArgs) -> anyhow::Result<()> {
    let api = connect(&a.conn)?;
    let answer = api.delete(&format!("/v1/sites/{}/curtailments/{}", seg(&a.site), a.number))?;
    if a.conn.output == Output::Json {
        return emit_json(&answer.body);
    }
    emit(&format!("curtailment {} of site {} cancelled: its budget is back\n", a.number, a.site))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_read_with_or_without_units() {
        assert_eq!(parse_power_mw("6MW").ok(), Some(6.0));
        assert_eq!(parse_power_mw("5500 kW").ok(), Some(5.5));
        assert_eq!(parse_power_mw("6").ok(), Some(6.0));
        assert_eq!(parse_power_mw("2000000W").ok(), Some(2.0));
        assert!(parse_power_mw("six").is_err());
        assert!(parse_power_mw("-1MW").is_err());
    }

    #[test]
    fn instants_are_absolute_relative_or_now() {
        let base = chrono::DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
            .map(|t| t.with_timezone(&chrono::Utc));
        let Ok(base) = base else { panic!("base") };
        assert_eq!(parse_instant("now", base).ok().as_deref(), Some("2026-12-05T10:00:00Z"));
        assert_eq!(parse_instant("+90m", base).ok().as_deref(), Some("2026-12-05T11:30:00Z"));
        assert_eq!(
            parse_instant("2026-12-06T00:00:00+01:00", base).ok().as_deref(),
            Some("2026-12-05T23:00:00Z")
        );
        assert!(parse_instant("tomorrow", base).is_err());
        // Out of the calendar's range: an error, not a panic.
        let far = parse_instant("+99999999999h", base).map_err(|e| e.to_string());
        assert!(far.as_ref().is_err_and(|e| e.contains("too far ahead")), "{far:?}");
    }
}
