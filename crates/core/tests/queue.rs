//! The queue at scale's building blocks: reservations and backfill for gangs, quotas
//! with borrowing and reclaim, fair share, time limits, determinism.

mod common;

use std::collections::BTreeMap;

use common::job;
use gigawatt_core::{
    CohortSpec, CoreRng, Decision, Event, FlavourQuota, FlavourSpec, PolicyKind, PreemptWhy, PriorityClass, Quotas,
    Scheduler, SchedulerConfig, TenantId, TenantQuota, Topology, WorkloadId, WorkloadStatus,
};
use gigawatt_units::{GpuMilli, Seconds, Timestamp};
use rand::SeedableRng;

/// Two racks of two HGX H100 nodes in one network domain.
const LAB: &str = r#"
[node_type.hgx]
gpu_model = "H100-SXM"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 4600

[[site]]
id = "lab"
country = "FR"
region = "eu-fr"
pue = 1.0
grid = [{ from = 2026-01-01, capacity_mw = 1 }]

  [[site.rack_group]]
  prefix = "lab-r"
  count = 2
  node_type = "hgx"
  nodes_per_rack = 2
  network_domain = "lab-ib"
"#;

const H: f64 = 3600.0;

struct Q {
    s: Scheduler,
    rng: CoreRng,
    now: Timestamp,
}

impl Q {
    fn new(config: SchedulerConfig) -> Q {
        let fleet = common::fleet(LAB);
        let s = Scheduler::new(&fleet, PolicyKind::BestFit.build(&common::typical_pods()), config, common::NOW)
            .expect("scheduler");
        Q { s, rng: CoreRng::seed_from_u64(3), now: common::NOW }
    }

    fn at(&mut self, secs: f64) {
        self.now = common::NOW + Seconds(secs);
    }

    fn ev(&mut self, e: Event) -> Vec<Decision> {
        let d = self.s.handle(self.now, e, &mut self.rng).expect("event applies");
        let allocs: Vec<_> = self.s.all_allocations().map(|(_, a)| a).collect();
        self.s.state().audit(allocs).expect("counters consistent");
        d
    }

    fn running(&self, id: u64) -> bool {
        self.s.status(WorkloadId(id)) == Some(WorkloadStatus::Running)
    }
}

#[test]
fn a_gang_gets_a_reservation_from_time_limits_and_starts_when_they_allow() {
    let mut q = Q::new(SchedulerConfig::default());
    // Four nodes busy until 1, 2, 3 and 4 hours by their limits.
    for (i, limit) in [1.0, 2.0, 3.0, 4.0].into_iter().enumerate() {
        q.ev(job(i as u64 + 1).gpus(8).limit(limit * H).tenant("a").arrival());
    }
    // A 4-node gang waits; so does long work of another tenant.
    let d = q.ev(job(10).gpus(8).gang(4, Topology::SameDomain).limit(H).tenant("b").arrival());
    assert!(matches!(d[..], [Decision::Pending { .. }]), "{d:?}");
    q.ev(job(11).gpus(8).limit(10.0 * H).tenant("c").arrival());
    q.ev(Event::Tick);
    let (start, nodes) = q.s.expected_start(WorkloadId(10)).expect("the gang holds a reservation");
    assert_eq!(start, common::NOW + Seconds(4.0 * H));
    assert_eq!(nodes.len(), 4);
    // The first node frees at 1 h: the 10-hour job may not take it.
    q.at(H);
    q.ev(Event::Completion(WorkloadId(1)));
    assert!(!q.running(11), "long work must not delay the reservation");
    // Work that ends before the reservation starts backfills (at once or at the pass).
    q.ev(job(12).gpus(8).limit(2.0 * H).tenant("c").arrival());
    q.ev(Event::Tick);
    assert!(q.running(12), "a 2-hour job fits before the 4-hour reservation");
    // The rest end by their limits; the gang starts no later than the reservation said.
    for (id, t) in [(2, 2.0), (3, 3.0), (12, 3.0), (4, 4.0)] {
        q.at(t * H);
        q.ev(Event::Completion(WorkloadId(id)));
    }
    assert!(q.running(10), "the gang starts when its reserved nodes are free");
    assert!(!q.running(11));
    let pos = q.s.queue_position(WorkloadId(11)).expect("waits");
    assert_eq!(pos.expected_start, None);
}
