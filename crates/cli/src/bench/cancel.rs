//! `gigawatt bench cancel`: what one cancel costs when the fleet is full and a queue
//! stands behind it.
//!
//! The fleet is filled with 8-GPU jobs, then a standing queue is submitted (single 8-GPU
//! jobs and 4-node gangs). Running jobs are then cancelled one at a time on one
//! connection. Each cancel frees a node, so the core takes a waiting job for it: the
//! latency measured is the whole path, from the request to the answer after the commit of
//! the cancel and of the placements it allowed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::load::{Latency, latency};

/// What to build and how many cancels to time.
#[derive(Debug, Clone)]
pub struct CancelSpec {
    /// The server's base URL.
    pub url: String,
    /// A tenant token.
    pub token: String,
    /// The most 8-GPU jobs the fleet could hold by its GPUs (filling stops earlier, at
    /// the first that waits: power may run out first).
    pub fill: u64,
    /// Single 8-GPU jobs left waiting.
    pub pending_singles: u64,
    /// 4-node gangs (4 × 8 GPUs) left waiting.
    pub pending_gangs: u64,
    /// Cancels to time.
    pub cancels: usize,
    /// Submissions in flight while building the queue.
    pub in_flight: usize,
}

/// What it measured.
#[derive(Debug, Clone, Serialize)]
pub struct CancelReport {
    /// Workloads running when the cancels began.
    pub running_before: u64,
    /// Workloads waiting when the cancels began.
    pub pending_before: u64,
    /// Cancels timed (answered 200).
    pub cancels: usize,
    /// Their latency.
    pub latency: Latency,
    /// Server CPU per cancel, ms (spawned servers only).
    pub server_cpu_ms_per_cancel: Option<f64>,
    /// Workloads waiting after the cancels (each cancel lets one start).
    pub pending_after: u64,
    /// Seconds it took to build the full fleet and the queue.
    pub setup_s: f64,
}

async fn submit(http: &reqwest::Client, spec: &CancelSpec, body: Value) -> anyhow::Result<(String, String)> {
    let r =
        http.post(format!("{}/v1/workloads", spec.url)).bearer_auth(&spec.token).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if status.as_u16() != 201 {
        bail!("submitting: {status} {v}");
    }
    let id = v["id"].as_str().context("no id in the answer")?.to_string();
    let state = v["state"].as_str().unwrap_or_default().to_string();
    Ok((id, state))
}

async fn submit_many(
    http: &reqwest::Client,
    spec: &CancelSpec,
    n: u64,
    body: &Value,
) -> anyhow::Result<Vec<(String, String)>> {
    let gate = Arc::new(Semaphore::new(spec.in_flight.max(1)));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let permit = gate.clone().acquire_owned().await?;
        let (http, spec, body) = (http.clone(), spec.clone(), body.clone());
        set.spawn(async move {
            let out = submit(&http, &spec, body).await;
            drop(permit);
            out
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r??);
    }
    Ok(out)
}

async fn count(http: &reqwest::Client, spec: &CancelSpec, state: &str) -> anyhow::Result<u64> {
    let mut n = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut q = vec![("state", state.to_string()), ("limit", "1000".to_string())];
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let v: Value = http
            .get(format!("{}/v1/workloads", spec.url))
            .bearer_auth(&spec.token)
            .query(&q)
            .send()
            .await?
            .json()
            .await?;
        n += v["items"].as_array().map_or(0, Vec::len) as u64;
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Ok(n),
        }
    }
}

/// Builds the full fleet and its queue, then times the cancels. `cpu` reads the server's
/// CPU seconds, when known.
pub async fn run(spec: &CancelSpec, cpu: impl Fn() -> Option<f64>) -> anyhow::Result<CancelReport> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let started = Instant::now();
    let job = |name: &str| json!({"name": name, "resources": {"gpus": 8}});
    // Fill until something waits: the fleet may run out of power before GPUs.
    let mut running: Vec<String> = Vec::new();
    let mut waiting = 0u64;
    let mut sent = 0u64;
    while waiting == 0 && sent < spec.fill.saturating_mul(2) {
        let chunk = (spec.in_flight as u64 * 4).max(1);
        for (id, state) in submit_many(&http, spec, chunk, &job("fill")).await? {
            if state == "running" {
                running.push(id);
            } else {
                waiting += 1;
            }
        }
        sent += chunk;
    }
    running.sort();
    submit_many(&http, spec, spec.pending_singles.saturating_sub(waiting), &job("waiting")).await?;
    let mut gang = job("gang");
    gang["gang"] = json!({"tasks": 4});
    submit_many(&http, spec, spec.pending_gangs, &gang).await?;
    let setup_s = started.elapsed().as_secs_f64();
    let running_before = count(&http, spec, "running").await?;
    let pending_before = count(&http, spec, "pending").await?;
    if running.len() < spec.cancels {
        bail!("only {} jobs run; the fleet is smaller than --fill says", running.len());
    }
    // Spread the cancels over the fleet, not one corner of it.
    let step = (running.len() / spec.cancels.max(1)).max(1);
    let victims: Vec<&String> = running.iter().step_by(step).take(spec.cancels).collect();
    let mut samples = Vec::with_capacity(victims.len());
    let cpu0 = cpu();
    for id in victims {
        let t = Instant::now();
        let r = http
            .post(format!("{}/v1/workloads/{id}/cancel", spec.url))
            .bearer_auth(&spec.token)
            .json(&json!({}))
            .send()
            .await?;
        let status = r.status();
        let _ = r.bytes().await?;
        if !status.is_success() {
            bail!("cancelling {id}: {status}");
        }
        samples.push(t.elapsed().as_micros() as u64);
    }
    let cpu1 = cpu();
    samples.sort_unstable();
    let n = samples.len();
    Ok(CancelReport {
        running_before,
        pending_before,
        cancels: n,
        latency: latency(&samples),
        server_cpu_ms_per_cancel: cpu1.zip(cpu0).filter(|_| n > 0).map(|(b, a)| (b - a) * 1e3 / n as f64),
        pending_after: count(&http, spec, "pending").await?,
        setup_s,
    })
}
