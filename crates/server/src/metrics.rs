//! Prometheus metrics: counters the writer keeps, and gauges read from the engine at
//! scrape time (`GET /metrics`, text exposition format).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use gigawatt_api::TenantEnergy;

use crate::engine::Engine;

/// Metrics the writer updates as it goes.
pub struct Metrics {
    commits: Counter,
    records: Counter,
    commands: Counter,
    commit_seconds: Histogram,
    batch_size: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            commits: Counter::default(),
            records: Counter::default(),
            commands: Counter::default(),
            commit_seconds: Histogram::new([0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0]),
            batch_size: Histogram::new([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]),
        }
    }
}

type Labels = Vec<(String, String)>;
/// A labelled floating-point gauge.
type FloatGauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// Telemetry in the style of NVIDIA's DCGM exporter and Kepler: per GPU, per node, and
/// energy per tenant. Energy counters come from the agents (NVML's total energy
/// consumption, or the simulated model's integral) and restart at zero with the agent,
/// which Prometheus' `rate()` and `increase()` handle as counter resets.
fn register_agents(r: &mut Registry, agents: &crate::agents::registry::Registry, energy: &[TenantEnergy]) {
    let energy_total = Family::<Labels, Counter<f64, AtomicU64>>::default();
    let gpu: [(&str, &str, FloatGauges); 5] = [
        ("gpu_power_watts", "GPU power draw (DCGM_FI_DEV_POWER_USAGE)", Family::default()),
        (
            "gpu_power_limit_watts",
            "GPU power limit in force (DCGM_FI_DEV_POWER_MGMT_LIMIT)",
            Family::default(),
        ),
        ("gpu_utilization_ratio", "GPU utilisation, 0 to 1 (DCGM_FI_DEV_GPU_UTIL / 100)", Family::default()),
        ("gpu_memory_used_bytes", "GPU memory in use (DCGM_FI_DEV_FB_USED)", Family::default()),
        ("gpu_temperature_celsius", "GPU temperature (DCGM_FI_DEV_GPU_TEMP)", Family::default()),
    ];
    let node_power = FloatGauges::default();
    let up = Family::<Labels, Gauge>::default();
    let (ready, lost) = agents.counts();
    for (node, live) in agents.nodes() {
        let Ok(l) = live.lock() else { continue };
        up.get_or_create(&vec![("node".into(), node.clone())]).set(i64::from(!l.lost));
        let Some(t) = &l.latest else { continue };
        if l.lost {
            continue;
        }
        node_power.get_or_create(&vec![("node".into(), node.clone())]).set(t.power_w as f64);
        for g in &t.gpus {
            let labels = vec![("node".to_string(), node.clone()), ("gpu".to_string(), g.index.to_string())];
            gpu[0].2.get_or_create(&labels).set(g.power_w as f64);
            gpu[1].2.get_or_create(&labels).set(g.power_limit_w as f64);
            gpu[2].2.get_or_create(&labels).set(f64::from(g.utilization_pct) / 100.0);
            gpu[3].2.get_or_create(&labels).set(g.memory_used_mib as f64 * 1024.0 * 1024.0);
            gpu[4].2.get_or_create(&labels).set(f64::from(g.temperature_c));
            energy_total.get_or_create(&labels).inc_by(g.energy_j.max(0.0));
        }
    }
    for (name, help, family) in gpu {
        r.register(name, help, family);
    }
    // A counter (monotonic but for agent restarts), exposed as `…_joules_total`.
    r.register(
        "gpu_energy_joules",
        "GPU energy since its agent started (DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION)",
        energy_total,
    );
    r.register("node_power_watts", "Power draw of a node's GPUs, as its agent measures it", node_power);
    r.register("agent_up", "1 while the node's agent sends heartbeats, 0 once it is lost", up);
    let counts = Family::<Labels, Gauge>::default();
    counts.get_or_create(&vec![("state".into(), "ready".into())]).set(ready as i64);
    counts.get_or_create(&vec![("state".into(), "lost".into())]).set(lost as i64);
    r.register("agents", "Node agents by state", counts);
    let tenant = Family::<Labels, Counter<f64, AtomicU64>>::default();
    for t in energy {
        tenant.get_or_create(&vec![("tenant".into(), t.tenant.clone())]).inc_by(t.energy_j);
    }
    r.register("tenant_energy_joules", "Energy used by a tenant's tasks (their share of each GPU)", tenant);
}

/// The live power manager's figures per oversubscribed site, and its event counts.
fn register_power(r: &mut Registry, power: &crate::power::PowerControl) {
    let (sites, caps, uncaps) = power.figures();
    let gauges: [(&str, &str, FloatGauges); 4] = [
        (
            "site_power_envelope_watts",
            "Fixed draw plus every GPU power limit: what the power manager keeps under the budget",
            Family::default(),
        ),
        (
            "site_power_predicted_watts",
            "Draw the power manager predicts for its next interval",
            Family::default(),
        ),
        (
            "site_power_measured_watts",
            "Busy nodes' base power plus the GPU draw agents report",
            Family::default(),
        ),
        ("site_power_capped_tasks", "Tasks held below their predicted demand", Family::default()),
    ];
    for (site, f) in &sites {
        let l = vec![("site".to_string(), site.clone())];
        gauges[0].2.get_or_create(&l).set(f.envelope.0 as f64);
        gauges[1].2.get_or_create(&l).set(f.predicted.0 as f64);
        gauges[2].2.get_or_create(&l).set(f.measured.0 as f64);
        gauges[3].2.get_or_create(&l).set(f.capped as f64);
    }
    for (name, help, family) in gauges {
        r.register(name, help, family);
    }
    let counts = Family::<Labels, Gauge>::default();
    counts.get_or_create(&vec![("action".into(), "cap".into())]).set(i64::try_from(caps).unwrap_or(i64::MAX));
    counts
        .get_or_create(&vec![("action".into(), "uncap".into())])
        .set(i64::try_from(uncaps).unwrap_or(i64::MAX));
    r.register("power_actions", "Caps and uncaps decided by the power manager since start", counts);
}

impl Metrics {
    /// Records one commit.
    pub fn observe_commit(&self, records: usize, commands: usize, took: Duration) {
        self.commits.inc();
        self.records.inc_by(records as u64);
        self.commands.inc_by(commands as u64);
        self.commit_seconds.observe(took.as_secs_f64());
        self.batch_size.observe(commands as f64);
    }

    /// Renders every metric, reading live figures from `engine` and the agents.
    #[must_use]
    pub fn render(
        &self,
        engine: &Engine,
        agents: &crate::agents::registry::Registry,
        energy: &[TenantEnergy],
        power: &crate::power::PowerControl,
        connections: &crate::listen::ConnCounters,
    ) -> String {
        let mut r = Registry::with_prefix("gigawatt");
        let open = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        open.set(
            i64::try_from(connections.open.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(i64::MAX),
        );
        r.register("http_connections_open", "HTTP connections open now", open);
        let refused = Counter::<u64>::default();
        refused.inc_by(connections.refused.load(std::sync::atomic::Ordering::Relaxed));
        r.register(
            "http_connections_refused",
            "HTTP connections closed as soon as accepted: --max-connections were open",
            refused,
        );
        register_agents(&mut r, agents, energy);
        register_power(&mut r, power);
        r.register("commits", "Group commits of the event log", self.commits.clone());
        r.register("log_records", "Records appended to the event log", self.records.clone());
        r.register("commands", "Commands applied by the writer", self.commands.clone());
        r.register("commit_seconds", "Time to apply and commit one batch", self.commit_seconds.clone());
        r.register("commit_batch_commands", "Commands per group commit", self.batch_size.clone());
        let seq = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        seq.set(engine.view.seq as i64);
        r.register("log_position", "Position of the last committed log record", seq);
        let workloads = Family::<Labels, Gauge>::default();
        let mut counts = std::collections::BTreeMap::new();
        for w in engine.view.workloads.values() {
            *counts.entry(w.state.as_str()).or_insert(0i64) += 1;
        }
        for (state, n) in counts {
            workloads.get_or_create(&vec![("state".into(), state.into())]).set(n);
        }
        r.register("workloads", "Workloads by state", workloads);
        let gauges: [(&str, &str, FloatGauges); 5] = [
            ("site_power_watts", "IT power reserved by placed work", Family::default()),
            ("site_budget_watts", "IT power budget in force", Family::default()),
            ("site_gpus", "GPUs", Family::default()),
            ("site_gpus_allocated", "GPU capacity allocated, in GPUs", Family::default()),
            ("site_nodes_down", "Nodes taken out of service", Family::default()),
        ];
        for s in crate::convert::sites(engine) {
            let l = vec![("site".to_string(), s.id.clone())];
            gauges[0].2.get_or_create(&l).set(s.power_w as f64);
            gauges[1].2.get_or_create(&l).set(s.budget_w as f64);
            gauges[2].2.get_or_create(&l).set(s.gpus as f64);
            gauges[3].2.get_or_create(&l).set(s.gpu_allocated_milli as f64 / 1000.0);
            gauges[4].2.get_or_create(&l).set(f64::from(s.nodes_down));
        }
        for (name, help, family) in gauges {
            r.register(name, help, family);
        }
        let mut out = String::new();
        if encode(&mut out, &r).is_err() {
            out.clear();
        }
        out
    }
}
