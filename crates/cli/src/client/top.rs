//! `gigawatt top`: live GPU allocation and reserved power against budget per site, and
//! the live workloads, redrawn in place every interval (like `top` or `nvidia-smi -l`).

use std::time::{Duration, Instant};

use anyhow::bail;
use gigawatt_api::{AgentInfo, SiteInfo, WorkloadInfo, WorkloadState};
use serde::Serialize;
use serde_json::Value;

use super::http::Api;
use super::table::{Table, age, bar, pct, truncate, watts};
use super::verbs::{all_pages, emit, fetch_sites, typed};
use super::{Output, TopArgs, connect};

/// Live workloads counted per frame at most (a frame must stay cheap on a busy server).
const MAX_LIVE: usize = 20_000;
/// Pending workloads listed by name (the oldest).
const SHOW_PENDING: usize = 5;
/// ANSI: cursor home, then clear the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Parses an interval: `2s`, `500ms`, `1m`, or a bare number of seconds.
pub fn parse_interval(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = match num.parse() {
        Ok(n) => n,
        Err(_) => bail!("--interval `{s}` is not a duration; write it such as 2s, 500ms or 1m"),
    };
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        other => bail!("--interval `{s}`: unknown unit `{other}`; use ms, s or m (2s, 500ms, 1m)"),
    };
    if !(0.1..=3600.0).contains(&secs) {
        bail!("--interval `{s}` is out of range; give 100ms to 1h");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Nodes listed with their measured draw (the busiest).
const SHOW_NODES: usize = 10;

/// What one frame shows.
struct Frame {
    sites: Vec<SiteInfo>,
    /// Node agents with their latest telemetry (`None`: this token may not see them).
    agents: Option<Vec<AgentInfo>>,
    live: Vec<WorkloadInfo>,
    live_capped: bool,
}

/// A frame as `-o json` prints it.
#[derive(Serialize)]
struct FrameJson<'a> {
    server: &'a str,
    /// When the frame was fetched (RFC 3339).
    at: String,
    sites: &'a [SiteInfo],
    agents: Option<&'a [AgentInfo]>,
    workloads: LiveJson<'a>,
}

#[derive(Serialize)]
struct LiveJson<'a> {
    running: usize,
    pending: usize,
    /// Whether counting stopped at the cap (the counts are then lower bounds).
    capped: bool,
    oldest_pending: Vec<PendingJson<'a>>,
}

#[derive(Serialize)]
struct PendingJson<'a> {
    id: &'a str,
    name: &'a str,
    tenant: &'a str,
    submitted_at: &'a str,
    reason: &'a str,
}

fn fetch(api: &Api) -> anyhow::Result<Frame> {
    let sites = fetch_sites(api)?;
    let live = all_pages(api, "/v1/workloads", &[("state", "pending,running".into())], 1000, Some(MAX_LIVE))?;
    let live_capped = live.len() >= MAX_LIVE;
    let live: Vec<WorkloadInfo> = typed(Value::Array(live), "a workload list")?;
    // Tenants may not see the fleet's agents: their frame simply has no telemetry.
    let agents = api.get("/v1/agents", &[]).ok().and_then(|v| typed(v, "a list of agents").ok());
    Ok(Frame { sites, agents, live, live_capped })
}

fn count(live: &[WorkloadInfo], state: WorkloadState) -> usize {
    live.iter().filter(|w| w.state == state).count()
}

fn render(api: &Api, f: &Frame, interval: Option<Duration>) -> String {
    let now = chrono::DateTime::from_timestamp_millis(super::table::now_ms())
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    let mut out = format!("gigawatt top  {}  {now}", api.server());
    if let Some(i) = interval {
        out.push_str(&format!("  every {}  (Ctrl-C quits)", humanise(i)));
    }
    out.push_str("\n\n");
    let mut t = Table::new(&[
        "SITE",
        "COUNTRY",
        ">NODES",
        ">DOWN",
        ">GPUS",
        ">USED",
        "GPU ALLOCATED",
        ">",
        "POWER / BUDGET",
        ">",
        ">",
    ]);
    let (mut gpus, mut alloc, mut power, mut budget, mut nodes, mut down) =
        (0u64, 0u64, 0u64, 0u64, 0u32, 0u32);
    for s in &f.sites {
        let a = pct(s.gpu_allocated_milli, s.gpus * 1000);
        let p = pct(s.power_w, s.budget_w);
        t.row(vec![
            s.id.clone(),
            s.country.clone(),
            s.nodes.to_string(),
            s.nodes_down.to_string(),
            s.gpus.to_string(),
            super::table::gpus_milli(s.gpu_allocated_milli),
            bar(a, 20),
            format!("{a:.1}%"),
            format!("{} / {}", watts(s.power_w), watts(s.budget_w)),
            bar(p, 20),
            format!("{p:.1}%"),
        ]);
        gpus += s.gpus;
        alloc += s.gpu_allocated_milli;
        power += s.power_w;
        budget += s.budget_w;
        nodes += s.nodes;
        down += s.nodes_down;
    }
    let (a, p) = (pct(alloc, gpus * 1000), pct(power, budget));
    t.row(vec![
        "TOTAL".into(),
        String::new(),
        nodes.to_string(),
        down.to_string(),
        gpus.to_string(),
        super::table::gpus_milli(alloc),
        bar(a, 20),
        format!("{a:.1}%"),
        format!("{} / {}", watts(power), watts(budget)),
        bar(p, 20),
        format!("{p:.1}%"),
    ]);
    out.push_str(&t.render());
    if let Some(agents) = f.agents.as_deref().filter(|a| !a.is_empty()) {
        out.push_str(&measured(agents));
    }
    let more = if f.live_capped { "+" } else { "" };
    let pending: Vec<&WorkloadInfo> = f.live.iter().filter(|w| w.state == WorkloadState::Pending).collect();
    out.push_str(&format!(
        "\nWorkloads: {}{more} running, {}{more} pending\n",
        count(&f.live, WorkloadState::Running),
        pending.len()
    ));
    if !pending.is_empty() {
        out.push_str("\nOldest pending:\n");
        let mut t = Table::new(&["ID", "NAME", "TENANT", ">AGE", "REASON"]);
        for w in pending.iter().take(SHOW_PENDING) {
            t.row(vec![
                w.id.clone(),
                truncate(&w.name, 24),
                w.tenant.clone(),
                age(&w.submitted_at),
                truncate(super::verbs::short_reason(&w.id, &w.reason), 70),
            ]);
        }
        for line in t.render().lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// What the agents measure: per site, and the busiest nodes.
fn measured(agents: &[AgentInfo]) -> String {
    let ready = agents.iter().filter(|a| a.state == "ready").count();
    let mut out = format!("\nAgents: {ready} ready, {} lost. Measured GPU draw:\n", agents.len() - ready);
    let mut by_site: std::collections::BTreeMap<&str, (u64, u64, usize)> = std::collections::BTreeMap::new();
    for a in agents.iter().filter(|a| a.state == "ready") {
        let e = by_site.entry(a.site.as_str()).or_default();
        if let Some(t) = &a.telemetry {
            e.0 += t.power_w;
            e.1 += t.gpus.iter().map(|g| g.power_limit_w).sum::<u64>();
        }
        e.2 += 1;
    }
    let mut t = Table::new(&["SITE", ">AGENTS", ">DRAW", ">LIMITS"]);
    for (site, (draw, limits, n)) in &by_site {
        t.row(vec![site.to_string(), n.to_string(), watts(*draw), watts(*limits)]);
    }
    for line in t.render().lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    let mut busiest: Vec<&AgentInfo> = agents.iter().filter(|a| a.telemetry.is_some()).collect();
    busiest.sort_by_key(|a| std::cmp::Reverse(a.telemetry.as_ref().map_or(0, |t| t.power_w)));
    let mut t = Table::new(&["NODE", "STATE", ">DRAW", ">UTIL", ">TEMP", ">TASKS"]);
    for a in busiest.iter().take(SHOW_NODES) {
        let Some(tel) = &a.telemetry else { continue };
        let n = tel.gpus.len().max(1) as f64;
        let util = tel.gpus.iter().map(|g| f64::from(g.utilization_pct)).sum::<f64>() / n;
        let temp = tel.gpus.iter().map(|g| g.temperature_c).max().unwrap_or(0);
        t.row(vec![
            a.node.clone(),
            a.state.clone(),
            watts(tel.power_w),
            format!("{util:.0}%"),
            format!("{temp}°C"),
            a.tasks_running.to_string(),
        ]);
    }
    out.push_str("\nBusiest nodes:\n");
    for line in t.render().lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn frame_json<'a>(api: &'a Api, f: &'a Frame) -> FrameJson<'a> {
    let pending: Vec<&WorkloadInfo> = f.live.iter().filter(|w| w.state == WorkloadState::Pending).collect();
    FrameJson {
        server: api.server(),
        at: gigawatt_api::rfc3339(super::table::now_ms()),
        sites: &f.sites,
        agents: f.agents.as_deref(),
        workloads: LiveJson {
            running: count(&f.live, WorkloadState::Running),
            pending: pending.len(),
            capped: f.live_capped,
            oldest_pending: pending
                .iter()
                .take(SHOW_PENDING)
                .map(|w| PendingJson {
                    id: &w.id,
                    name: &w.name,
                    tenant: &w.tenant,
                    submitted_at: &w.submitted_at,
                    reason: &w.reason,
                })
                .collect(),
        },
    }
}

fn humanise(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

/// `gigawatt top`.
pub fn top(a: &TopArgs) -> anyhow::Result<()> {
    let interval = parse_interval(&a.interval)?;
    let api = connect(&a.conn)?;
    if a.once {
        let f = fetch(&api)?;
        return match a.conn.output {
            Output::Json => emit(&format!("{}\n", serde_json::to_string_pretty(&frame_json(&api, &f))?)),
            Output::Table => emit(&render(&api, &f, None)),
        };
    }
    // The first frame must work (a wrong server or token is an error, not a blank
    // screen); later failures are shown in place and retried at the next tick.
    let mut result: anyhow::Result<Frame> = Ok(fetch(&api)?);
    loop {
        let started = Instant::now();
        match (&result, a.conn.output) {
            (Ok(f), Output::Json) => emit(&format!("{}\n", serde_json::to_string(&frame_json(&api, f))?))?,
            (Ok(f), Output::Table) => emit(&format!("{CLEAR}{}", render(&api, f, Some(interval))))?,
            (Err(e), Output::Json) => eprintln!("error: {e:#}"),
            (Err(e), Output::Table) => emit(&format!(
                "{CLEAR}gigawatt top  {}\n\nrefresh failed: {e:#}\nretrying every {}…\n",
                api.server(),
                humanise(interval)
            ))?,
        }
        std::thread::sleep(interval.saturating_sub(started.elapsed()));
        result = fetch(&api);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval("2s").expect("valid"), Duration::from_secs(2));
        assert_eq!(parse_interval("500ms").expect("valid"), Duration::from_millis(500));
        assert_eq!(parse_interval("1m").expect("valid"), Duration::from_secs(60));
        assert_eq!(parse_interval("3").expect("valid"), Duration::from_secs(3));
        assert!(parse_interval("soon").is_err());
        assert!(parse_interval("1h").is_err());
        assert!(parse_interval("0s").is_err());
    }
}
