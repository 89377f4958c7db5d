//! Reaction time to a lost node: from the SIGKILL of an agent running one rank of a
//! two-node gang to the gang running again elsewhere (both ranks' processes started).
//!
//! Everything is real: a `gigawatt serve` child, three `gigawatt agent --simulate`
//! children, `sleep` processes as the gang. The timeline comes from the event log's own
//! timestamps (`node-lost`, `workload-placed`, `task-started`) against the wall-clock time
//! of the kill, all on this machine's clock. The floor is `--lost-after`: the control plane
//! must not requeue before the dead node's agent would have fenced itself.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};

use super::child::{ServeOptions, ServerProcess};

/// What to run.
#[derive(Debug, Clone)]
pub struct ReactionSpec {
    /// The fleet file.
    pub fleet: PathBuf,
    /// Heartbeat interval.
    pub interval: Duration,
    /// `--lost-after`.
    pub lost_after: Duration,
    /// How many kills to time.
    pub runs: usize,
}

/// One kill, timed.
#[derive(Debug, Clone, Serialize)]
pub struct ReactionRun {
    /// From the kill to the `node-lost` entry, ms.
    pub detected_ms: i64,
    /// From the kill to the gang placed again, ms.
    pub placed_ms: i64,
    /// From the kill to both ranks' new processes reported started, ms.
    pub running_ms: i64,
}

/// Every run.
#[derive(Debug, Clone, Serialize)]
pub struct ReactionReport {
    /// Heartbeat interval, ms.
    pub interval_ms: u64,
    /// `--lost-after`, ms.
    pub lost_after_ms: u64,
    /// The runs.
    pub runs: Vec<ReactionRun>,
}

struct Kids(Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

struct Http {
    client: reqwest::blocking::Client,
    base: String,
}

impl Http {
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().with_context(|| format!("{path}: no answer"))?;
        let status = resp.status();
        let v: Value = resp.json().unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status}: {v}");
        }
        Ok(v)
    }
    fn get(&self, path: &str, token: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, token, None)
    }
    fn post(&self, path: &str, token: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, token, Some(body))
    }
}

fn wait<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the measurement.
pub fn run(spec: &ReactionSpec) -> anyhow::Result<ReactionReport> {
    let mut runs = Vec::new();
    for i in 0..spec.runs {
        runs.push(one(spec).with_context(|| format!("run {}", i + 1))?);
    }
    Ok(ReactionReport {
        interval_ms: spec.interval.as_millis() as u64,
        lost_after_ms: spec.lost_after.as_millis() as u64,
        runs,
    })
}

fn one(spec: &ReactionSpec) -> anyhow::Result<ReactionRun> {
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let fmt = |d: Duration| format!("{}ms", d.as_millis());
    let opts = ServeOptions {
        fleet: spec.fleet.clone(),
        db: format!("sqlite://{}", dir.path().join("log.db").display()),
        durability: "full".into(),
        snapshot_every: 50_000,
        echo: false,
        extra_args: vec![
            "--require-agents".into(),
            "--heartbeat-interval".into(),
            fmt(spec.interval),
            "--lost-after".into(),
            fmt(spec.lost_after),
            "--grace".into(),
            "1s".into(),
            "--data-dir".into(),
            dir.path().to_string_lossy().into_owned(),
        ],
    };
    let mut server = ServerProcess::spawn(&opts)?;
    server.wait_ready(Duration::from_secs(60))?;
    let admin = server.admin_token().context("the fresh server printed no admin token")?;
    let http = Http { client: reqwest::blocking::Client::new(), base: server.url() };
    http.post("/v1/tenants", &admin, &json!({"id": "bench"}))?;
    let fleet = gigawatt_fleet::load(&spec.fleet).map_err(|e| anyhow::anyhow!("{e}"))?;
    let nodes: Vec<(String, String, u32)> = fleet
        .nodes()
        .filter_map(|(_, _, n)| Some((n.name.clone(), n.gpu_model.clone()?, n.gpu_count)))
        .filter(|(_, _, c)| *c > 0)
        .take(3)
        .collect();
    if nodes.len() < 3 {
        bail!("the fleet needs three GPU nodes");
    }
    // An agent token acts for one node only: one each.
    let mut tokens = Vec::with_capacity(nodes.len());
    for (node, _, _) in &nodes {
        let body = json!({"name": format!("reaction {node}"), "role": "agent", "node": node});
        let token = http.post("/v1/tokens", &admin, &body)?["token"]
            .as_str()
            .with_context(|| format!("no token in the answer for node `{node}`"))?
            .to_string();
        tokens.push(token);
    }
    let exe = std::env::current_exe()?;
    let mut kids = Kids(Vec::new());
    for ((node, model, count), token) in nodes.iter().zip(&tokens) {
        let child = Command::new(&exe)
            .args([
                "agent",
                "--server",
                &server.url(),
                "--node",
                node,
                "--simulate",
                &format!("{count}x{model}"),
            ])
            .arg("--data-dir")
            .arg(dir.path().join(node))
            .env("GIGAWATT_TOKEN", token)
            .env("GIGAWATT_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting an agent")?;
        kids.0.push(child);
    }
    wait("three agents", Duration::from_secs(60), || {
        let list = http.get("/v1/agents", &admin)?;
        let ready =
            list.as_array().map_or(0, |a| a.iter().filter(|a| a["last_heartbeat_at"].is_string()).count());
        Ok((ready == 3).then_some(()))
    })?;
    let gpus = nodes[0].2;
    let job = json!({"name": "gang", "tenant": "bench", "command": ["sleep", "100000"],
                     "resources": {"gpus": gpus}, "gang": {"tasks": 2, "topology": "any"}});
    let id = http.post("/v1/workloads", &admin, &job)?["id"].as_str().context("no id")?.to_string();
    let running = |min_gen: u64| -> anyhow::Result<Option<Vec<Value>>> {
        let w = http.get(&format!("/v1/workloads/{id}"), &admin)?;
        let p = w["placement"].as_array().cloned().unwrap_or_default();
        let ok = p.len() == 2
            && p.iter().all(|t| t["process"] == "running" && t["generation"].as_u64().unwrap_or(0) > min_gen);
        Ok(ok.then_some(p))
    };
    let placement = wait("the gang to run", Duration::from_secs(60), || running(0))?;
    let victim = placement[0]["node"].as_str().unwrap_or_default().to_string();
    let old_gen = placement[0]["generation"].as_u64().unwrap_or(0);
    let index = nodes.iter().position(|(n, _, _)| *n == victim).context("the victim's agent")?;
    let killed_at = now_ms();
    let _ = kids.0[index].kill();
    let _ = kids.0[index].wait();
    wait("the gang to run elsewhere", Duration::from_secs(120), || running(old_gen))?;
    // The timeline, from the log's own timestamps.
    let log = http.get("/v1/log?after=0&limit=1000", &admin)?;
    let entries = log.as_array().cloned().unwrap_or_default();
    let at = |e: &Value| -> i64 {
        e["at"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map_or(0, |t| t.timestamp_millis())
    };
    let after_kill: Vec<&Value> = entries.iter().filter(|e| at(e) >= killed_at - 1000).collect();
    let first = |kind: &str| after_kill.iter().find(|e| e["event"] == kind).map(|e| at(e) - killed_at);
    let detected = first("node-lost").context("no node-lost entry")?;
    let placed = after_kill
        .iter()
        .filter(|e| e["event"] == "workload-placed" && e["text"].as_str().is_some_and(|t| t.contains(&id)))
        .map(|e| at(e) - killed_at)
        .next_back()
        .context("no new placement")?;
    let started = after_kill
        .iter()
        .filter(|e| e["event"] == "task-started" && e["text"].as_str().is_some_and(|t| t.contains(&id)))
        .map(|e| at(e) - killed_at)
        .max()
        .context("no task-started entry")?;
    server.stop();
    Ok(ReactionRun { detected_ms: detected, placed_ms: placed, running_ms: started })
}
