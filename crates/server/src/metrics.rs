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

impl Metrics {
    /// Records one commit.
    pub fn observe_commit(&self, records: usize, commands: usize, took: Duration) {
        self.commits.inc();
        self.records.inc_by(records as u64);
        self.commands.inc_by(commands as u64);
        self.commit_seconds.observe(took.as_secs_f64());
        self.batch_size.observe(commands as f64);
    }

    /// Renders every metric, reading live figures from `engine`.
    #[must_use]
    pub fn render(&self, engine: &Engine) -> String {
        let mut r = Registry::with_prefix("gigawatt");
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
