//! Verbs about node agents, what they run and measure: `node enroll`, `logs`, `agents`,
//! `power-limit`, `energy`.

use std::io::Write as _;
use std::time::Duration;

use clap::Args;
use gigawatt_api::{AgentInfo, LogSlice, TenantEnergy, WorkloadInfo};
use serde_json::json;

use super::table::Table;
use super::verbs::{emit, emit_json, seg, typed};
use super::{Conn, Output, connect};

/// `gigawatt node …`.
#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// Issue a one-time join token for a node's agent (admins, operators). The agent
    /// exchanges it at its first start for its own credential, which acts for that
    /// node only: `gigawatt agent --node NODE --join-token TOKEN`.
    Enroll(EnrollArgs),
}

/// Options of `gigawatt node enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The node, as named in the fleet file.
    pub node: String,
    /// How long the join token may be exchanged: 1m to 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    #[command(flatten)]
    pub conn: Conn,
}

/// Runs a node verb.
pub fn node(cmd: &NodeCommand) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::Enroll(a) => {
            let api = connect(&a.conn)?;
            let path = format!("/v1/nodes/{}/enroll", seg(&a.node));
            let body = json!({ "ttl_s": a.ttl.as_secs() });
            let answer = api.post(&path, &body, &[], super::http::Retry::ConnectOnly)?;
            let t: gigawatt_api::JoinToken = typed(answer.body, "join token")?;
            match a.conn.output {
                Output::Json => emit_json(&t),
                Output::Table => emit(&format!(
                    "join token for node {} (id {}), good once until {}:\n{}\n\non the node, run:\n  GIGAWATT_JOIN_TOKEN={} gigawatt agent --server {} --node {}\n",
                    t.node,
                    t.id,
                    t.expires_at,
                    t.token,
                    t.token,
                    api.server(),
                    t.node
                )),
            }
        }
    }
}

/// Options of `gigawatt logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Workload id.
    pub id: String,
    /// Only this task (rank or replica). Default: every task, each line prefixed with
    /// its rank when there are several.
    #[arg(long)]
    pub task: Option<u32>,
    /// Print standard error instead of standard output.
    #[arg(long)]
    pub stderr: bool,
    /// Keep printing output as it arrives, until the workload ends.
    #[arg(short, long)]
    pub follow: bool,
    #[command(flatten)]
    pub conn: Conn,
}

/// Options of `gigawatt agents`.
#[derive(Debug, Args)]
pub struct AgentsArgs {
    #[command(flatten)]
    pub conn: Conn,
}

/// Options of `gigawatt power-limit`.
#[derive(Debug, Args)]
pub struct PowerLimitArgs {
    /// Node name.
    pub node: String,
    /// The limit per GPU, in watts.
    #[arg(long, required_unless_present = "reset", conflicts_with = "reset")]
    pub watts: Option<u64>,
    /// Restore the GPUs' default limit.
    #[arg(long)]
    pub reset: bool,
    /// Only these GPU indices (repeat or comma-separate). Default: all of the node's.
    #[arg(long = "gpu", value_delimiter = ',')]
    pub gpus: Vec<u16>,
    #[command(flatten)]
    pub conn: Conn,
}

/// Options of `gigawatt energy`.
#[derive(Debug, Args)]
pub struct EnergyArgs {
    /// Per site and day instead of per tenant (operators).
    #[arg(long)]
    pub sites: bool,
    #[command(flatten)]
    pub conn: Conn,
}

/// `gigawatt logs ID`: a workload's captured output, read through the control plane.
pub fn logs(a: &LogsArgs) -> anyhow::Result<()> {
    let api = connect(&a.conn)?;
    let w: WorkloadInfo = typed(api.get(&format!("/v1/workloads/{}", seg(&a.id)), &[])?, "a workload")?;
    let tasks: Vec<u32> = match a.task {
        Some(t) => vec![t],
        None => (0..w.tasks_total).collect(),
    };
    let prefix = tasks.len() > 1;
    let stream = if a.stderr { "stderr" } else { "stdout" };
    let mut offsets = vec![0u64; tasks.len()];
    let mut done = vec![false; tasks.len()];
    let mut partial = vec![String::new(); tasks.len()];
    loop {
        for (i, task) in tasks.iter().enumerate() {
            if done[i] {
                continue;
            }
            loop {
                let query = [
                    ("task", task.to_string()),
                    ("stream", stream.to_string()),
                    ("offset", offsets[i].to_string()),
                ];
                let slice: LogSlice =
                    typed(api.get(&format!("/v1/workloads/{}/logs", seg(&a.id)), &query)?, "a log slice")?;
                let got = slice.next_offset - slice.offset;
                offsets[i] = slice.next_offset;
                write_out(&slice.data, prefix.then_some(*task), &mut partial[i])?;
                if slice.complete || !a.follow {
                    done[i] = slice.complete || !a.follow;
                }
                if got == 0 || done[i] {
                    break;
                }
            }
        }
        if done.iter().all(|d| *d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for (i, rest) in partial.iter().enumerate() {
        if !rest.is_empty() {
            let p = if prefix { format!("[rank {}] ", tasks[i]) } else { String::new() };
            crate::outln!("{p}{rest}");
        }
    }
    Ok(())
}

/// Prints `data`, holding back an unfinished last line when lines are prefixed (so
/// that two ranks' lines never mix).
fn write_out(data: &str, rank: Option<u32>, partial: &mut String) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match rank {
        None => out.write_all(data.as_bytes())?,
        Some(r) => {
            partial.push_str(data);
            while let Some(end) = partial.find('\n') {
                let line: String = partial.drain(..=end).collect();
                write!(out, "[rank {r}] {line}")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// `gigawatt agents`: every node agent, its state and what it measures.
pub fn agents(a: &AgentsArgs) -> anyhow::Result<()> {
    let api = connect(&a.conn)?;
    let list: Vec<AgentInfo> = typed(api.get("/v1/agents", &[])?, "a list of agents")?;
    if a.conn.output == Output::Json {
        return emit_json(&list);
    }
    let mut t = Table::new(&[
        "NODE",
        "STATE",
        ">GEN",
        "BACKEND",
        ">GPUS",
        ">POWER",
        ">LIMITS",
        ">UTIL",
        ">TASKS",
        "LAST HEARTBEAT",
    ]);
    for ag in &list {
        let (power, limits, util) = match &ag.telemetry {
            Some(tel) => {
                let n = tel.gpus.len().max(1) as f64;
                let limit: u64 = tel.gpus.iter().map(|g| g.power_limit_w).sum();
                let util: f64 = tel.gpus.iter().map(|g| f64::from(g.utilization_pct)).sum::<f64>() / n;
                (format!("{} W", tel.power_w), format!("{limit} W"), format!("{util:.0}%"))
            }
            None => ("-".into(), "-".into(), "-".into()),
        };
        t.row(vec![
            ag.node.clone(),
            ag.state.clone(),
            ag.generation.to_string(),
            ag.backend.clone(),
            ag.gpus.len().to_string(),
            power,
            limits,
            util,
            ag.tasks_running.to_string(),
            ag.last_heartbeat_at.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    emit(&t.render())
}

/// `gigawatt power-limit NODE --watts W`: caps a node's GPUs.
pub fn power_limit(a: &PowerLimitArgs) -> anyhow::Result<()> {
    let api = connect(&a.conn)?;
    let gpus = if a.gpus.is_empty() { None } else { Some(a.gpus.clone()) };
    let body = json!({ "watts": if a.reset { None } else { a.watts }, "gpus": gpus });
    let answer = api.put(&format!("/v1/nodes/{}/power-limit", seg(&a.node)), &body)?;
    if a.conn.output == Output::Json {
        return emit_json(&answer.body);
    }
    let limits: std::collections::BTreeMap<u16, u64> = typed(answer.body, "the node's power limits")?;
    if limits.is_empty() {
        return emit(&format!("node {}: every GPU at its default power limit\n", a.node));
    }
    let listed: Vec<String> = limits.iter().map(|(g, w)| format!("GPU {g}: {w} W")).collect();
    emit(&format!("node {}: {} (its agent applies them at its next heartbeat)\n", a.node, listed.join(", ")))
}

/// `gigawatt energy`: energy used per tenant.
pub fn energy(a: &EnergyArgs) -> anyhow::Result<()> {
    let api = connect(&a.conn)?;
    if a.sites {
        let list: Vec<gigawatt_api::SiteEnergy> =
            typed(api.get("/v1/energy/sites", &[])?, "energy per site and day")?;
        if a.conn.output == Output::Json {
            return emit_json(&list);
        }
        let mut t = Table::new(&["SITE", "DAY", ">kWh", ">kg CO2"]);
        for e in &list {
            let co2 = e.co2_kg.map_or_else(|| "-".into(), |k| format!("{k:.3}"));
            t.row(vec![e.site.clone(), e.day.clone(), format!("{:.4}", e.energy_kwh), co2]);
        }
        return emit(&t.render());
    }
    let list: Vec<TenantEnergy> = typed(api.get("/v1/energy", &[])?, "energy per tenant")?;
    if a.conn.output == Output::Json {
        return emit_json(&list);
    }
    let mut t = Table::new(&["TENANT", ">WORKLOADS", ">ENERGY (kJ)", ">kWh", ">g CO2", ">g CO2 SAVED"]);
    for e in &list {
        t.row(vec![
            e.tenant.clone(),
            e.workloads.to_string(),
            format!("{:.1}", e.energy_j / 1e3),
            format!("{:.4}", e.energy_kwh),
            format!("{:.2}", e.co2_g),
            format!("{:.0}", e.co2_saved_g),
        ]);
    }
    emit(&t.render())
}
