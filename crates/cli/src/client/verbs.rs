//! The verbs on workloads and the fleet: each calls the API and prints a table for people
//! or the API's JSON for scripts.

use std::io::{Read as _, Write as _};
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use gigawatt_api::{Explain, JobSpec, NodeInfo, SiteInfo, WorkloadInfo, WorkloadState};
use gigawatt_core::WorkloadId;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::http::{Api, Retry};
use super::table::{Table, age, duration_short, gpus_milli, pct, truncate, watts, when};
use super::{IdArgs, LsArgs, NodesArgs, Output, SitesArgs, SubmitArgs, connect};

/// The widest reason shown in a list; `get` and `explain` show it whole.
const REASON_WIDTH: usize = 60;

/// Writes `text` to stdout (a broken pipe is an error `main` treats as a normal end).
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Prints a value as JSON, pretty, with a final newline. Values are printed from the
/// API's types (not passed through as parsed JSON) so that fields keep the API's order,
/// `id` first.
pub fn emit_json<T: serde::Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    emit(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

/// Reads an API answer into its type, for the tables.
pub fn typed<T: DeserializeOwned>(v: Value, what: &str) -> anyhow::Result<T> {
    serde_json::from_value(v).map_err(|e| {
        anyhow!(
            "the server answered {what} this client cannot read ({e}); \
             is the client the same version as the server? (`gigawatt --version`)"
        )
    })
}

/// One path segment, percent-encoded, so that an id with `/` or `?` cannot change the
/// route.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Follows `next_cursor` through every page of a list, stopping at `limit` items.
pub fn all_pages(
    api: &Api,
    path: &str,
    query: &[(&str, String)],
    page_max: usize,
    limit: Option<usize>,
) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let want = limit.map_or(page_max, |l| l.saturating_sub(items.len()).clamp(1, page_max));
        let mut q: Vec<(&str, String)> = query.to_vec();
        q.push(("limit", want.to_string()));
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let page = api.get(path, &q)?;
        let Some(page_items) = page.get("items").and_then(Value::as_array) else {
            bail!("the server's answer to {path} has no `items` list; is it a gigawatt server?");
        };
        items.extend(page_items.iter().cloned());
        if limit.is_some_and(|l| items.len() >= l) {
            items.truncate(limit.unwrap_or(usize::MAX));
            break;
        }
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(c) if !c.is_empty() && Some(c) != cursor.as_deref() => cursor = Some(c.to_string()),
            _ => break,
        }
    }
    Ok(items)
}

// ----- submit ---------------------------------------------------------------------------

/// Reads and checks a job file: TOML errors name `file:line:column`, field errors the
/// file and the field, before anything is sent.
pub fn read_job(path: &Path) -> anyhow::Result<JobSpec> {
    let (text, shown) = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read the job from standard input")?;
        (s, "<stdin>".to_string())
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the job file {}", path.display()))?;
        (text, path.display().to_string())
    };
    let spec = JobSpec::from_toml(&text).map_err(|e| anyhow!(located(&shown, &e)))?;
    // The server checks again; checking here names the file and works offline.
    spec.validate(WorkloadId(0), spec.tenant.as_deref().unwrap_or("local"))
        .map_err(|e| anyhow!("{shown}: {} (field: {})", e.message, e.field))?;
    Ok(spec)
}

/// Turns toml's "TOML parse error at line N, column M / excerpt / message" into
/// `file:N:M: message`.
fn located(file: &str, err: &str) -> String {
    let mut lines = err.lines();
    let head = lines.next().unwrap_or_default();
    let pos = head.split_once("at line ").and_then(|(_, rest)| {
        let (line, col) = rest.split_once(", column ")?;
        Some((line.trim().parse::<u32>().ok()?, col.trim().parse::<u32>().ok()?))
    });
    let message: Vec<&str> = lines
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('|')
                && !l.split_once('|').is_some_and(|(n, _)| {
                    !n.trim().is_empty() && n.trim().bytes().all(|b| b.is_ascii_digit())
                })
        })
        .collect();
    let message = if message.is_empty() { head.to_string() } else { message.join(" ") };
    match pos {
        Some((l, c)) => format!("{file}:{l}:{c}: {message}; see docs/job-file.md"),
        None => format!("{file}: {message}; see docs/job-file.md"),
    }
}

/// A fresh idempotency key: 128 bits from the standard library's randomly keyed hasher
/// (seeded from the operating system), the time and the process id. One per invocation
/// makes the client's retries safe without a dependency on a random-number crate.
pub fn fresh_key() -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut halves = [0u64; 2];
    for (i, h) in halves.iter_mut().enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.write_usize(i);
        *h = hasher.finish();
    }
    format!("cli-{:016x}{:016x}", halves[0], halves[1])
}

/// `gigawatt submit FILE`.
pub fn submit(a: &SubmitArgs) -> anyhow::Result<()> {
    let mut spec = read_job(&a.file)?;
    if let Some(t) = &a.tenant {
        spec.tenant = Some(t.clone());
    }
    let body = serde_json::to_value(&spec)?;
    if a.dry_run {
        eprintln!("the job file is valid; this is what would be sent to POST /v1/workloads:");
        return emit_json(&spec);
    }
    let api = connect(&a.conn)?;
    let given = a.idempotency_key.clone();
    let key = given.clone().unwrap_or_else(fresh_key);
    let answer =
        api.post("/v1/workloads", &body, &[("Idempotency-Key", &key)], Retry::Safe).map_err(|e| {
            if a.tenant.is_none() && e.to_string().contains("(field: tenant)") {
                anyhow!("{e}; pass --tenant TENANT (admin and operator tokens must say which tenant)")
            } else {
                e
            }
        })?;
    if answer.status == reqwest::StatusCode::OK && given.is_some() {
        eprintln!(
            "note: idempotency key `{key}` was already used for {}; nothing new was submitted",
            answer.body.get("id").and_then(Value::as_str).unwrap_or("a workload")
        );
    }
    let rejected = (answer.body.get("state").and_then(Value::as_str) == Some("rejected")).then(|| {
        let id = answer.body.get("id").and_then(Value::as_str).unwrap_or("the workload").to_string();
        let reason = answer.body.get("reason").and_then(Value::as_str).unwrap_or_default();
        let reason = short_reason(&id, reason);
        let reason = reason.strip_prefix("rejected: ").unwrap_or(reason).to_string();
        (id, reason)
    });
    let w: WorkloadInfo = typed(answer.body, "a workload")?;
    match a.conn.output {
        Output::Json => emit_json(&w)?,
        Output::Table => {
            emit(&format!(
                "{} submitted: {} `{}` for {}, {}, {}/{} tasks placed\n  {}\n",
                w.id,
                w.kind.as_str(),
                w.name,
                w.tenant,
                w.state.as_str(),
                w.tasks_placed,
                w.tasks_total,
                w.reason
            ))?;
        }
    }
    // Accepted by the API but never runnable: a failure for scripts (`&&`), with the
    // workload still printed above so that its id is known.
    if let Some((id, reason)) = rejected {
        bail!("{id} was rejected and will never run as submitted: {reason}");
    }
    Ok(())
}

// ----- ls / get -------------------------------------------------------------------------

/// GPUs a workload asks for in all, in thousandths.
pub fn workload_gpu_milli(w: &WorkloadInfo) -> u64 {
    let per_task = match w.spec.resources.gpu_milli {
        Some(m) => u64::from(m),
        None => u64::from(w.spec.resources.gpus) * 1000,
    };
    per_task * u64::from(w.tasks_total)
}

/// A reason without the workload id it starts with (the table's first column says it).
pub fn short_reason<'a>(id: &str, reason: &'a str) -> &'a str {
    reason.strip_prefix(id).map_or(reason, str::trim_start)
}

/// The workload table `ls` prints.
pub fn workload_table(items: &[WorkloadInfo]) -> Table {
    let mut t = Table::new(&["ID", "NAME", "TENANT", "KIND", "STATE", ">TASKS", ">GPUS", ">AGE", "REASON"]);
    for w in items {
        t.row(vec![
            w.id.clone(),
            truncate(&w.name, 32),
            w.tenant.clone(),
            w.kind.as_str().into(),
            w.state.as_str().into(),
            format!("{}/{}", w.tasks_placed, w.tasks_total),
            gpus_milli(workload_gpu_milli(w)),
            age(&w.submitted_at),
            truncate(short_reason(&w.id, &w.reason), REASON_WIDTH),
        ]);
    }
    t
}

/// `gigawatt ls`.
pub fn ls(a: &LsArgs) -> anyhow::Result<()> {
    if a.limit == Some(0) {
        bail!("--limit 0 would show nothing; give 1 or more, or leave it out to show all");
    }
    if !(1..=1000).contains(&a.page_size) {
        bail!("--page-size {} is out of range; give 1..=1000", a.page_size);
    }
    let api = connect(&a.conn)?;
    let mut q: Vec<(&str, String)> = Vec::new();
    match (&a.state, a.all) {
        (Some(s), _) => q.push(("state", s.clone())),
        (None, false) => q.push(("state", "pending,running".into())),
        (None, true) => {}
    }
    if let Some(t) = &a.tenant {
        q.push(("tenant", t.clone()));
    }
    if let Some(k) = &a.kind {
        q.push(("kind", k.clone()));
    }
    let items = all_pages(&api, "/v1/workloads", &q, a.page_size, a.limit)?;
    let items: Vec<WorkloadInfo> = typed(Value::Array(items), "a workload list")?;
    match a.conn.output {
        Output::Json => emit_json(&items),
        Output::Table => {
            if items.is_empty() {
                let what = if a.state.is_none() && !a.all {
                    "No live workloads (-A shows ended ones too)."
                } else {
                    "No workloads match."
                };
                eprintln!("{what}");
                return Ok(());
            }
            emit(&workload_table(&items).render())
        }
    }
}

/// `gigawatt get ID`.
pub fn get(a: &IdArgs) -> anyhow::Result<()> {
    let api = connect(&a.conn)?;
    let v = api.get(&format!("/v1/workloads/{}", seg(&a.id)), &[])?;
    let w: WorkloadInfo = typed(v, "a workload")?;
    match a.conn.output {
        Output::Json => emit_json(&w),
        Output::Table => emit(&describe(&w)),
    }
}

/// A workload in full, one field a line, with its placement.
pub fn describe(w: &WorkloadInfo) -> String {
    let r = &w.spec.resources;
    let per_task = match r.gpu_milli {
        Some(m) => format!("{} of one GPU", gpus_milli(u64::from(m))),
        None => format!("{} GPU{}", r.gpus, if r.gpus == 1 { "" } else { "s" }),
    };
    let models = if r.gpu_models.is_empty() { "any model".to_string() } else { r.gpu_models.join(", ") };
    let shape = match (&w.spec.gang, &w.spec.service) {
        (Some(g), _) => format!("gang of {} tasks, {}", g.tasks, topology(g.topology)),
        (_, Some(s)) => format!("service of {} replicas", s.replicas),
        _ => "single task".to_string(),
    };
    let mut lines: Vec<(&str, String)> = vec![
        ("ID", w.id.clone()),
        ("Name", w.name.clone()),
        ("Tenant", w.tenant.clone()),
        ("Kind", format!("{} ({shape})", w.kind.as_str())),
        ("State", w.state.as_str().into()),
        ("Priority", w.priority.clone()),
        ("Data class", w.data_class.clone()),
        ("Tasks", format!("{}/{} placed", w.tasks_placed, w.tasks_total)),
        ("Per task", format!("{per_task} ({models}), {} CPU, {} MiB", cpu(r.cpu_millicores), r.memory_mib)),
        ("GPUs in all", gpus_milli(workload_gpu_milli(w))),
        ("Submitted", format!("{} ({} ago)", when(&w.submitted_at), age(&w.submitted_at))),
        ("Updated", format!("{} ({} ago)", when(&w.updated_at), age(&w.updated_at))),
    ];
    if let Some(c) = w.exit_code {
        lines.push(("Exit code", c.to_string()));
    }
    if w.energy_j > 0.0 {
        lines.push(("Energy", format!("{:.1} kJ ({:.4} kWh)", w.energy_j / 1e3, w.energy_kwh)));
    }
    if let Some(t) = &w.spec.time_limit {
        lines.push(("Time limit", time_limit(t)));
    }
    if !w.spec.command.is_empty() {
        lines.push(("Command", shell_words(&w.spec.command)));
    }
    if !w.spec.env.is_empty() {
        let env: Vec<String> = w.spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        lines.push(("Env", env.join(" ")));
    }
    if let Some(g) = &w.spec.grace {
        lines.push(("Grace", time_limit(g)));
    }
    lines.push(("Reason", w.reason.clone()));
    if let Some(q) = &w.queue {
        lines.extend(line_place(q));
    }
    let mut out = String::new();
    for (k, v) in lines {
        out.push_str(&format!("{:<12} {v}\n", format!("{k}:")));
    }
    if !w.placement.is_empty() {
        out.push_str("Placement:\n");
        let mut t = Table::new(&[">TASK", "NODE", "SITE", "GPUS", "PROCESS", ">GEN"]);
        for p in &w.placement {
            let gpus: Vec<String> = p
                .gpus
                .iter()
                .zip(p.gpu_milli.iter().copied().chain(std::iter::repeat(1000)))
                .map(
                    |(g, m)| {
                        if m == 1000 { g.to_string() } else { format!("{g}({})", gpus_milli(u64::from(m))) }
                    },
                )
                .collect();
            t.row(vec![
                p.task.to_string(),
                p.node.clone(),
                p.site.clone(),
                gpus.join(","),
                p.process.clone(),
                p.generation.to_string(),
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

fn topology(t: gigawatt_core::Topology) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{t:?}"))
}

/// A time limit as people write it: the API may answer `172800s` for `48h`.
fn time_limit(t: &str) -> String {
    match t.strip_suffix('s').and_then(|n| n.parse::<i64>().ok()) {
        Some(secs) if secs % 86_400 == 0 => format!("{}d", secs / 86_400),
        Some(secs) if secs % 3600 == 0 => format!("{}h", secs / 3600),
        Some(secs) if secs % 60 == 0 => format!("{}m", secs / 60),
        _ => t.to_string(),
    }
}

fn cpu(millicores: u64) -> String {
    if millicores.is_multiple_of(1000) { format!("{}", millicores / 1000) } else { format!("{millicores}m") }
}

/// A command line as a shell would need it typed.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ----- cancel / explain -----------------------------------------------------------------

/// `gigawatt cancel ID`.
pub fn cancel(a: &IdArgs) -> anyhow::Result<()> {
    let api = connect(&a.conn)?;
    let answer =
        api.post(&format!("/v1/workloads/{}/cancel", seg(&a.id)), &Value::Null, &[], Retry::ConnectOnly)?;
    let w: WorkloadInfo = typed(answer.body, "a workload")?;
    match a.conn.output {
        Output::Json => emit_json(&w),
        Output::Table => emit(&format!("{} {}\n", w.id, w.state.as_str())),
    }
}

/// `gigawatt explain ID`.
pub fn explain(a: &IdArgs) -> anyhow::Result<()> {
    let api = connect(&a.conn)?;
    let v = api.get(&format!("/v1/workloads/{}/explain", seg(&a.id)), &[])?;
    let e: Explain = typed(v, "an explanation")?;
    match a.conn.output {
        Output::Json => emit_json(&e),
        Output::Table => emit(&explain_text(&e)),
    }
}

/// A waiting workload's place in line, as `describe` lines.
fn line_place(q: &gigawatt_api::LinePlace) -> Vec<(&'static str, String)> {
    let mut lines = vec![(
        "In line",
        format!(
            "{} of its tenant's workloads ahead of it; {} tenants ranked ahead for the same shape",
            q.ahead_in_tenant, q.tenants_ahead
        ),
    )];
    if let Some(quota) = &q.quota {
        lines.push(("Quota", quota.clone()));
    }
    match &q.expected_start {
        Some(at) => {
            let left =
                super::table::parse_time_ms(at).map_or(0, |t| (t - super::table::now_ms()).max(0) / 1000);
            let nodes = q.planned_nodes.join(", ");
            lines.push(("Expected", format!("start {} (in {}) on {nodes}", when(at), duration_short(left))));
        }
        None => lines.push(("Expected", "no reservation yet: it starts when capacity frees".to_string())),
    }
    lines
}

/// An explanation in words: where it stands and why, then what happened, oldest first.
pub fn explain_text(e: &Explain) -> String {
    let mut out = format!("{} is {}.\n", e.id, e.state.as_str());
    let hint = match e.state {
        WorkloadState::Pending => Some("It waits for capacity; the latest attempt to place it said:"),
        WorkloadState::Rejected => Some("It can never run as submitted:"),
        _ => None,
    };
    if let Some(h) = hint {
        out.push_str(h);
        out.push('\n');
    }
    out.push_str(&format!("  {}\n", e.summary));
    if let Some(q) = &e.queue {
        out.push_str(&format!("  {}\n", q.text));
        for (k, v) in line_place(q) {
            out.push_str(&format!("  {:<12} {v}\n", format!("{k}:")));
        }
    }
    if e.history.is_empty() {
        return out;
    }
    out.push_str("\nHistory (oldest first):\n");
    let mut t = Table::new(&[">SEQ", "AT", "EVENT", "WHAT"]);
    for d in &e.history {
        let event = d.event.strip_prefix("workload-").unwrap_or(&d.event).to_string();
        t.row(vec![format!("#{}", d.seq), when(&d.at), event, d.text.clone()]);
    }
    for line in t.render().lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

// ----- nodes / sites --------------------------------------------------------------------

/// `gigawatt nodes`.
pub fn nodes(a: &NodesArgs) -> anyhow::Result<()> {
    if a.limit == Some(0) {
        bail!("--limit 0 would show nothing; give 1 or more, or leave it out to show all");
    }
    let api = connect(&a.conn)?;
    let mut q: Vec<(&str, String)> = Vec::new();
    if let Some(s) = &a.site {
        q.push(("site", s.clone()));
    }
    if let Some(r) = &a.rack {
        q.push(("rack", r.clone()));
    }
    if a.down {
        q.push(("up", "false".into()));
    }
    let items = all_pages(&api, "/v1/nodes", &q, 5000, a.limit)?;
    let items: Vec<NodeInfo> = typed(Value::Array(items), "a node list")?;
    match a.conn.output {
        Output::Json => emit_json(&items),
        Output::Table => {
            if items.is_empty() {
                eprintln!("No nodes match.");
                return Ok(());
            }
            let mut t = Table::new(&[
                "NAME",
                "SITE",
                "RACK",
                "MODEL",
                ">GPU FREE",
                ">CPU FREE",
                ">MEM FREE",
                ">POWER",
                ">TASKS",
                "STATE",
            ]);
            for n in &items {
                let total = n.gpu_free_milli.len() as u64 * 1000;
                let free: u64 = n.gpu_free_milli.iter().map(|&m| u64::from(m)).sum();
                t.row(vec![
                    n.name.clone(),
                    n.site.clone(),
                    n.rack.clone(),
                    n.gpu_model.clone().unwrap_or_else(|| "-".into()),
                    format!("{}/{}", gpus_milli(free), gpus_milli(total)),
                    format!("{}/{}", cpu(n.cpu_free_millicores), cpu(n.cpu_millicores)),
                    format!("{}/{} GiB", n.memory_free_mib / 1024, n.memory_mib / 1024),
                    watts(n.power_w),
                    n.tasks.to_string(),
                    if n.up { "up".into() } else { "down".into() },
                ]);
            }
            emit(&t.render())
        }
    }
}

/// Fetches every site.
pub fn fetch_sites(api: &Api) -> anyhow::Result<Vec<SiteInfo>> {
    typed(api.get("/v1/sites", &[])?, "a site list")
}

/// `gigawatt sites`.
pub fn sites(a: &SitesArgs) -> anyhow::Result<()> {
    let api = connect(&a.conn)?;
    let sites = fetch_sites(&api)?;
    match a.conn.output {
        Output::Json => emit_json(&sites),
        Output::Table => {
            let mut t = Table::new(&[
                "ID",
                "COUNTRY",
                "REGION",
                "LAW",
                "CERTIFICATIONS",
                ">NODES",
                ">DOWN",
                ">GPUS",
                ">ALLOC",
                ">POWER",
                ">BUDGET",
                ">PUE",
            ]);
            for s in &sites {
                t.row(vec![
                    s.id.clone(),
                    s.country.clone(),
                    s.region.clone(),
                    s.jurisdiction.clone(),
                    if s.certifications.is_empty() { "-".into() } else { s.certifications.join(",") },
                    s.nodes.to_string(),
                    s.nodes_down.to_string(),
                    s.gpus.to_string(),
                    format!("{:.1}%", pct(s.gpu_allocated_milli, s.gpus * 1000)),
                    watts(s.power_w),
                    watts(s.budget_w),
                    format!("{:.2}", s.pue),
                ]);
            }
            emit(&t.render())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_errors_name_file_line_and_column() {
        let e = JobSpec::from_toml("name = \"x\"\ngpus = 3\n").expect_err("unknown field");
        let s = located("job.toml", &e);
        assert!(s.starts_with("job.toml:2:1: ") && s.contains("gpus") && !s.contains('\n'), "{s}");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("w-12"), "w-12");
        assert_eq!(seg("a/b?c"), "a%2Fb%3Fc");
    }

    #[test]
    fn keys_differ() {
        assert_ne!(fresh_key(), fresh_key());
        assert_eq!(fresh_key().len(), 36);
    }

    #[test]
    fn commands_are_quoted_for_a_shell() {
        let args = ["torchrun".to_string(), "--nproc=8".into(), "a b".into(), "it's".into()];
        assert_eq!(shell_words(&args), "torchrun --nproc=8 'a b' 'it'\\''s'");
    }
}
