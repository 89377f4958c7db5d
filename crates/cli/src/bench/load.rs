//! The submission load generator: many keep-alive HTTP connections posting small jobs,
//! each with its own `Idempotency-Key`, timing every request.
//!
//! Closed loop (the default): each connection sends its next request as soon as the
//! previous one is answered, which finds the most the server sustains. Open loop
//! (`--rate`): requests are due at fixed times whether or not earlier ones were answered,
//! and latency is counted from when a request was *due*, so a server that falls behind
//! cannot hide it by slowing the client down (no "coordinated omission").

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};

/// What to send, how hard, for how long.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The server's base URL.
    pub url: String,
    /// A bearer token that may submit.
    pub token: String,
    /// Tenant to name in each job (needed with an admin or operator token).
    pub tenant: Option<String>,
    /// Concurrent connections (and requests in flight at most).
    pub connections: usize,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    /// Time before measuring starts.
    pub warmup: Duration,
    /// Requests per second (open loop); `None` for a closed loop.
    pub rate: Option<f64>,
    /// Stop after this many requests (warm-up included) instead of after the duration.
    pub requests: Option<u64>,
    /// GPUs per job.
    pub gpus: u32,
    /// Makes idempotency keys unique across runs against the same log.
    pub run_id: String,
    /// Write every request (`sent_ms,latency_ms,status`) to this CSV file.
    pub samples_csv: Option<std::path::PathBuf>,
}

/// One request.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// When it was due (open loop) or sent (closed loop), µs since the start.
    at_us: u64,
    /// From then until the whole answer was read, µs.
    latency_us: u64,
    /// HTTP status; 0 when no answer came (connection error or timeout).
    status: u16,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// What a load run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Connections.
    pub connections: usize,
    /// Offered rate (open loop).
    pub offered_per_s: Option<f64>,
    /// Length of the measured window, s.
    pub window_s: f64,
    /// Requests answered inside the window.
    pub requests: u64,
    /// Of which answered 201 (created).
    pub created: u64,
    /// Successful submissions per second in the window.
    pub achieved_per_s: f64,
    /// Latency of the requests sent in the window.
    pub latency: Latency,
    /// Answers other than 201, by status (`0` = no answer), whole run.
    pub errors: BTreeMap<String, u64>,
    /// Every request sent, warm-up included.
    pub total_requests: u64,
    /// CPU time this load generator used during the window, s (it shares the machine
    /// with the server).
    pub client_cpu_s: Option<f64>,
}

/// Runs the load and reports. `on_window` is called when the measured window opens and
/// when it closes (to sample the server's CPU time).
pub async fn run(spec: &LoadSpec, mut on_window: impl FnMut(bool)) -> anyhow::Result<LoadReport> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(spec.connections)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let body = job_body(spec);
    let endpoint = format!("{}/v1/workloads", spec.url.trim_end_matches('/'));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::with_capacity(1 << 16)));
    let sent = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let window_start = start + spec.warmup;
    let end = spec.requests.map_or(Some(window_start + spec.duration), |_| None);
    let max_requests = spec.requests.unwrap_or(u64::MAX);
    let ctx =
        Arc::new(Ctx { client, endpoint, body, token: spec.token.clone(), run_id: spec.run_id.clone() });

    let window = {
        let ctx = ctx.clone();
        let samples = samples.clone();
        let sent = sent.clone();
        let spec = spec.clone();
        tokio::spawn(async move {
            match spec.rate {
                None => closed_loop(&spec, ctx, samples, sent, start, end, max_requests).await,
                Some(rate) => open_loop(&spec, rate, ctx, samples, sent, start, end, max_requests).await,
            }
        })
    };
    // The window's edges: CPU times are sampled there.
    let cpu_now = || super::procfs::cpu_seconds(std::process::id());
    let mut client_cpu = None;
    if spec.requests.is_none() {
        tokio::time::sleep_until(window_start.into()).await;
        on_window(true);
        let c0 = cpu_now();
        if let Some(e) = end {
            tokio::time::sleep_until(e.into()).await;
        }
        on_window(false);
        client_cpu = cpu_now().zip(c0).map(|(b, a)| b - a);
    } else {
        on_window(true);
    }
    window.await.context("the load generator stopped")?;
    if spec.requests.is_some() {
        on_window(false);
    }
    let finished = Instant::now();
    let mut samples = std::mem::take(&mut *samples.lock().await);
    if let Some(path) = &spec.samples_csv {
        samples.sort_unstable_by_key(|s| s.at_us);
        let mut csv = String::from("sent_ms,latency_ms,status\n");
        for s in &samples {
            csv.push_str(&format!(
                "{:.3},{:.3},{}\n",
                s.at_us as f64 / 1e3,
                s.latency_us as f64 / 1e3,
                s.status
            ));
        }
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    let total_requests = sent.load(Ordering::Relaxed).min(max_requests);
    Ok(summarise(spec, &samples, start, window_start, end.unwrap_or(finished), total_requests, client_cpu))
}

struct Ctx {
    client: reqwest::Client,
    endpoint: String,
    body: String,
    token: String,
    run_id: String,
}

impl Ctx {
    /// Sends submission `n`; returns its status (0 when no answer came).
    async fn submit(&self, n: u64) -> u16 {
        let res = self
            .client
            .post(&self.endpoint)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("bench-{}-{n}", self.run_id))
            .body(self.body.clone())
            .send()
            .await;
        match res {
            Ok(r) => {
                let status = r.status().as_u16();
                // Read the whole answer, as a real client would.
                match r.bytes().await {
                    Ok(_) => status,
                    Err(_) => 0,
                }
            }
            Err(_) => 0,
        }
    }
}

fn job_body(spec: &LoadSpec) -> String {
    let mut job = serde_json::json!({
        "name": "bench",
        "resources": { "gpus": spec.gpus, "cpu_millicores": 1000, "memory_mib": 1024 },
    });
    if let Some(t) = &spec.tenant {
        job["tenant"] = serde_json::Value::String(t.clone());
    }
    job.to_string()
}

async fn closed_loop(
    spec: &LoadSpec,
    ctx: Arc<Ctx>,
    samples: Arc<Mutex<Vec<Sample>>>,
    sent: Arc<AtomicU64>,
    start: Instant,
    end: Option<Instant>,
    max_requests: u64,
) {
    let mut tasks = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        let (ctx, samples, sent) = (ctx.clone(), samples.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(1 << 12);
            loop {
                let t0 = Instant::now();
                if end.is_some_and(|e| t0 >= e) {
                    break;
                }
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if n >= max_requests {
                    break;
                }
                let status = ctx.submit(n).await;
                mine.push(Sample {
                    at_us: (t0 - start).as_micros() as u64,
                    latency_us: t0.elapsed().as_micros() as u64,
                    status,
                });
            }
            samples.lock().await.extend(mine);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn open_loop(
    spec: &LoadSpec,
    rate: f64,
    ctx: Arc<Ctx>,
    samples: Arc<Mutex<Vec<Sample>>>,
    sent: Arc<AtomicU64>,
    start: Instant,
    end: Option<Instant>,
    max_requests: u64,
) {
    let slots = Arc::new(Semaphore::new(spec.connections));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut tasks = Vec::new();
    let mut n: u64 = 0;
    loop {
        let due = start + interval.mul_f64(n as f64);
        if end.is_some_and(|e| due >= e) || n >= max_requests {
            break;
        }
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        sent.fetch_add(1, Ordering::Relaxed);
        let (ctx, samples, slots) = (ctx.clone(), samples.clone(), slots.clone());
        tasks.push(tokio::spawn(async move {
            // Waiting for a free connection counts: latency is from when the request was due.
            let Ok(_permit) = slots.acquire_owned().await else { return };
            let status = ctx.submit(n).await;
            let s = Sample {
                at_us: (due - start).as_micros() as u64,
                latency_us: due.elapsed().as_micros() as u64,
                status,
            };
            samples.lock().await.push(s);
        }));
        n += 1;
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn summarise(
    spec: &LoadSpec,
    samples: &[Sample],
    start: Instant,
    window_start: Instant,
    window_end: Instant,
    total_requests: u64,
    client_cpu_s: Option<f64>,
) -> LoadReport {
    let (w0, w1) = ((window_start - start).as_micros() as u64, (window_end - start).as_micros() as u64);
    let window_s = (w1.saturating_sub(w0)) as f64 / 1e6;
    // Throughput: answers that arrived inside the window; latency: requests sent in it.
    let answered: Vec<&Sample> =
        samples.iter().filter(|s| (w0..w1).contains(&(s.at_us + s.latency_us))).collect();
    let created = answered.iter().filter(|s| s.status == 201).count() as u64;
    let mut lat: Vec<u64> =
        samples.iter().filter(|s| (w0..w1).contains(&s.at_us)).map(|s| s.latency_us).collect();
    lat.sort_unstable();
    let mut errors = BTreeMap::new();
    for s in samples.iter().filter(|s| s.status != 201) {
        *errors.entry(s.status.to_string()).or_insert(0) += 1;
    }
    LoadReport {
        mode: if spec.rate.is_some() { "open" } else { "closed" },
        connections: spec.connections,
        offered_per_s: spec.rate,
        window_s,
        requests: answered.len() as u64,
        created,
        achieved_per_s: if window_s > 0.0 { created as f64 / window_s } else { 0.0 },
        latency: latency(&lat),
        errors,
        total_requests,
        client_cpu_s,
    }
}

/// Percentiles of sorted microsecond latencies (nearest rank).
pub fn latency(sorted_us: &[u64]) -> Latency {
    if sorted_us.is_empty() {
        return Latency::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let rank = |q: f64| {
        let i = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len()) - 1;
        ms(sorted_us[i])
    };
    let sum: u64 = sorted_us.iter().sum();
    Latency {
        mean_ms: ms(sum) / sorted_us.len() as f64,
        p50_ms: rank(0.50),
        p90_ms: rank(0.90),
        p99_ms: rank(0.99),
        p999_ms: rank(0.999),
        max_ms: ms(sorted_us[sorted_us.len() - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        let l = latency(&v);
        assert!((l.p50_ms - 500.0).abs() < 1e-9);
        assert!((l.p99_ms - 990.0).abs() < 1e-9);
        assert!((l.max_ms - 1000.0).abs() < 1e-9);
        assert!((l.mean_ms - 500.5).abs() < 1e-9);
    }
}
