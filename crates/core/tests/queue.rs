//! The queue at scale's building blocks: reservations and backfill for gangs, quotas
//! with borrowing and reclaim, fair share, time limits, determinism.

mod common;

use std::collections::BTreeMap;

use common::job;
use gigawatt_core::{
    CohortSpec, CoreRng, Decision, Event, FlavourQuota, FlavourSpec, PolicyKind, PreemptWhy, PriorityClass,
    Quotas, Scheduler, SchedulerConfig, TenantId, TenantQuota, Topology, WorkloadId, WorkloadStatus,
};
use gigawatt_units::{GpuMilliTotal, Seconds, Timestamp};
use rand::SeedableRng;

const H: f64 = 3600.0;

struct Q {
    s: Scheduler,
    rng: CoreRng,
    now: Timestamp,
}

impl Q {
    fn new(config: SchedulerConfig) -> Q {
        let fleet = common::fleet(common::LAB);
        let s =
            Scheduler::new(&fleet, PolicyKind::BestFit.build(&common::typical_pods()), config, common::NOW)
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

/// Tenants with the given nominal quotas (thousandths of a GPU) of flavour `h100`, all
/// in cohort `all`, with weight 1.
fn cohort_of(nominals: &[(&str, u64)]) -> Quotas {
    let mut q = Quotas {
        flavours: vec![FlavourSpec { name: "h100".into(), models: vec![], sites: vec![], regions: vec![] }],
        ..Quotas::default()
    };
    q.cohorts.insert("all".into(), CohortSpec::default());
    for (t, nominal) in nominals {
        q.tenants.insert(
            TenantId((*t).into()),
            TenantQuota {
                cohort: Some("all".into()),
                weight: 1,
                flavours: BTreeMap::from([(
                    "h100".to_string(),
                    FlavourQuota { nominal: GpuMilliTotal(*nominal), ..FlavourQuota::default() },
                )]),
                power: BTreeMap::new(),
                energy: None,
            },
        );
    }
    q
}

/// The lab with one cohort of `nominals`, tenant `c` weighing `c_weight`.
fn lab_with(nominals: &[(&str, u64)], c_weight: u32) -> Q {
    let mut quotas = cohort_of(nominals);
    quotas.tenants.get_mut(&TenantId("c".into())).expect("c").weight = c_weight;
    let mut q = Q::new(SchedulerConfig::default());
    q.s.set_quotas(quotas).expect("valid quotas");
    q
}

/// Tenants `a` and `b`, 16 GPUs of nominal each in one cohort, on the 32-GPU lab.
fn two_tenants() -> Quotas {
    cohort_of(&[("a", 16_000), ("b", 16_000)])
}

#[test]
fn a_borrower_is_reclaimed_when_the_lender_wants_its_nominal_back() {
    let mut q = Q::new(SchedulerConfig::default());
    q.s.set_quotas(two_tenants()).expect("valid quotas");
    // a borrows b's unused 16 GPUs.
    for id in 1..=4 {
        let d = q.ev(job(id).gpus(8).tenant("a").arrival());
        assert!(matches!(d[..], [Decision::Placed { .. }]), "{d:?}");
    }
    q.s.audit_quotas().expect("quota books agree");
    // b, within its nominal, waits: the quota is lent out, and it says so.
    let d = q.ev(job(5).gpus(8).tenant("b").arrival());
    let Decision::Pending { why, .. } = &d[0] else { panic!("{d:?}") };
    assert_eq!(
        why.to_string(),
        "waiting: tenant b uses 0 of its 16 h100 nominal quota GPUs and may borrow without limit; it is within \
         its nominal quota but cohort all has lent it out: borrowers will be reclaimed"
    );
    // The periodic pass reclaims: a's youngest job goes, b's starts.
    let d = q.ev(Event::Tick);
    assert!(
        matches!(&d[0], Decision::Preempted { workload: WorkloadId(4), why: PreemptWhy::Reclaim { .. } }),
        "{d:?}"
    );
    assert!(q.running(5));
    q.s.audit_quotas().expect("quota books agree");
    assert_eq!(q.s.quota_usage(&TenantId("a".into())), vec![("h100".to_string(), 24_000, 16_000, None)]);
    // a's evicted job waits: a is over its nominal and the cohort is full.
    assert_eq!(q.s.status(WorkloadId(4)), Some(WorkloadStatus::Pending));
}

/// Tenants `a`, `b` and `c` with 4 GPUs of nominal each and `d` with 20, one cohort,
/// on the 32-GPU lab.
fn small_nominals() -> Quotas {
    cohort_of(&[("a", 4_000), ("b", 4_000), ("c", 4_000), ("d", 20_000)])
}

#[test]
fn a_borrower_further_above_its_share_is_preempted_for_one_below_it_and_never_back() {
    let mut q = Q::new(SchedulerConfig::default());
    q.s.set_quotas(small_nominals()).expect("valid quotas");
    // a borrows 20 GPUs (three 8-GPU jobs), b borrows 4: the lab is full.
    for (id, t) in [(1, "a"), (2, "a"), (3, "a"), (4, "b")] {
        let d = q.ev(job(id).gpus(8).tenant(t).arrival());
        assert!(matches!(d[..], [Decision::Placed { .. }]), "{d:?}");
    }
    // c's 8-GPU job would borrow 4, less than a would still borrow without one of its
    // jobs (12): at the pass a's youngest job goes and c's starts.
    let d = q.ev(job(5).gpus(8).tenant("c").arrival());
    assert!(matches!(d[..], [Decision::Pending { .. }]), "{d:?}");
    let d = q.ev(Event::Tick);
    let Some(Decision::Preempted { workload: WorkloadId(3), why }) = d.first() else { panic!("{d:?}") };
    assert!(matches!(why, PreemptWhy::FairShare { by: WorkloadId(5), .. }), "{why:?}");
    assert_eq!(
        why.to_string(),
        "its tenant borrowed more quota, for its fair-share weight, than tenant c, whose w-5 waited for quota to \
         borrow; requeued whole"
    );
    assert!(q.running(5));
    q.s.audit_quotas().expect("quota books agree");
    // b's second job would take b to 12 borrowed, more than a keeps (4 once a job of a
    // went): no preemption. Nor does a take its room back from c: nothing moves.
    q.ev(job(6).gpus(8).tenant("b").arrival());
    for _ in 0..3 {
        let d = q.ev(Event::Tick);
        assert!(!d.iter().any(|d| matches!(d, Decision::Preempted { .. })), "{d:?}");
    }
    assert!(q.running(1) && q.running(2) && q.running(4) && q.running(5));
    assert_eq!(q.s.status(WorkloadId(3)), Some(WorkloadStatus::Pending));
    assert_eq!(q.s.status(WorkloadId(6)), Some(WorkloadStatus::Pending));
    // With fair-share preemption off, c waits.
    let mut off = Q::new(SchedulerConfig {
        backfill: gigawatt_core::BackfillConfig { fair_preemptions: 0, ..Default::default() },
        ..SchedulerConfig::default()
    });
    off.s.set_quotas(small_nominals()).expect("valid quotas");
    for (id, t) in [(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "c")] {
        off.ev(job(id).gpus(8).tenant(t).arrival());
    }
    let d = off.ev(Event::Tick);
    assert!(!d.iter().any(|d| matches!(d, Decision::Preempted { .. })), "{d:?}");
    assert!(!off.running(5));
}

/// A gang is preempted for fair share only whole, and only while its tenant still
/// borrows more than the waiting tenant would once it is gone.
#[test]
fn a_gang_far_above_its_share_is_preempted_whole_for_a_borrower_below_it() {
    let mut q = lab_with(&[("a", 0), ("b", 4_000), ("c", 4_000), ("d", 24_000)], 2);
    // a: a 2-node gang and a 4-GPU job (it borrows all 20); d: 8 GPUs within its
    // nominal; b: 4 GPUs within its nominal. The lab is full.
    let arrivals = [
        job(1).gpus(8).gang(2, Topology::SameDomain).tenant("a"),
        job(2).gpus(8).tenant("d"),
        job(4).gpus(4).tenant("b"),
        job(3).gpus(4).tenant("a"),
    ];
    for w in arrivals {
        let d = q.ev(w.arrival());
        assert!(d.iter().all(|d| matches!(d, Decision::Placed { .. })), "{d:?}");
    }
    // c's 8-GPU job borrows 4 (a share of 4/32 GPUs for weight 2). Only the gang's
    // going frees a whole node, and a still borrows 4 (weight 1) without it.
    let d = q.ev(job(5).gpus(8).tenant("c").arrival());
    assert!(matches!(d[..], [Decision::Pending { .. }]), "{d:?}");
    let d = q.ev(Event::Tick);
    let preempted: Vec<_> = d
        .iter()
        .filter_map(|d| match d {
            Decision::Preempted { workload, why: PreemptWhy::FairShare { by, .. } } => Some((*workload, *by)),
            _ => None,
        })
        .collect();
    assert_eq!(preempted, vec![(WorkloadId(1), WorkloadId(5))], "{d:?}");
    assert!(q.running(5) && q.running(2) && q.running(3) && q.running(4));
    assert_eq!(q.s.status(WorkloadId(1)), Some(WorkloadStatus::Pending));
    q.s.audit_quotas().expect("quota books agree");

    // Had a not borrowed beyond the gang, its gang would have stayed: a waiting tenant
    // never preempts to end up above the one it preempted.
    let mut q = lab_with(&[("a", 4_000), ("b", 4_000), ("c", 4_000), ("d", 20_000)], 2);
    for w in [
        job(1).gpus(8).gang(2, Topology::SameDomain).tenant("a"),
        job(2).gpus(8).tenant("d"),
        job(4).gpus(4).tenant("b"),
        job(3).gpus(4).tenant("a"),
        job(5).gpus(8).tenant("c"),
    ] {
        q.ev(w.arrival());
    }
    let d = q.ev(Event::Tick);
    assert!(!d.iter().any(|d| matches!(d, Decision::Preempted { .. })), "{d:?}");
    assert!(q.running(1) && !q.running(5));
}

/// A gang that would borrow gets no reservation; once it has waited
/// `gang_preempt_after_s`, it clears a group of nodes for itself by preempting the
/// borrowed work of tenants further above their share, and starts.
#[test]
fn a_borrowing_gang_that_waited_long_clears_room_from_tenants_above_its_share() {
    let mut q = lab_with(&[("a", 0), ("b", 8_000), ("c", 8_000), ("d", 16_000)], 4);
    // a borrows the whole lab in four 8-GPU jobs.
    for id in 1..=4 {
        let d = q.ev(job(id).gpus(8).tenant("a").arrival());
        assert!(matches!(d[..], [Decision::Placed { .. }]), "{d:?}");
    }
    // c's 2-node gang would borrow 8 GPUs over its nominal of 8: it waits, with no
    // reservation and no reclaim.
    let d = q.ev(job(5).gpus(8).gang(2, Topology::SameDomain).tenant("c").arrival());
    assert!(matches!(d[..], [Decision::Pending { .. }]), "{d:?}");
    let after = gigawatt_core::DEFAULT_GANG_PREEMPT_AFTER_S as f64;
    for at in [30.0, after / 2.0, after - 30.0] {
        q.at(at);
        let d = q.ev(Event::Tick);
        assert!(!d.iter().any(|d| matches!(d, Decision::Preempted { .. })), "{d:?}");
        assert!(!q.running(5));
    }
    // Past the wait, two of a's jobs go (a still borrows 16, c 8 for four times a's
    // weight) and the gang starts on their nodes.
    q.at(after + 30.0);
    let d = q.ev(Event::Tick);
    let preempted: Vec<WorkloadId> = d
        .iter()
        .filter_map(|d| match d {
            Decision::Preempted { workload, why: PreemptWhy::FairShare { by: WorkloadId(5), .. } } => {
                Some(*workload)
            }
            _ => None,
        })
        .collect();
    assert_eq!(preempted.len(), 2, "{d:?}");
    assert!(q.running(5));
    q.s.audit_quotas().expect("quota books agree");
    // Nothing moves back at later passes.
    for k in 2..5 {
        q.at(after + 30.0 * f64::from(k));
        let d = q.ev(Event::Tick);
        assert!(!d.iter().any(|d| matches!(d, Decision::Preempted { .. })), "{d:?}");
    }
    assert!(q.running(5));
}

#[test]
fn fair_share_serves_the_tenant_with_the_smaller_share_first() {
    let mut q = Q::new(SchedulerConfig::default());
    // a holds three nodes, b one; both wait for one more.
    for id in 1..=3 {
        q.ev(job(id).gpus(8).tenant("a").arrival());
    }
    q.ev(job(4).gpus(8).tenant("b").arrival());
    q.ev(job(5).gpus(8).tenant("a").arrival());
    q.ev(job(6).gpus(8).tenant("b").arrival());
    // A node frees: b's job goes first though a's waited longer.
    let d = q.ev(Event::Completion(WorkloadId(1)));
    assert_eq!(d.iter().map(Decision::workload).collect::<Vec<_>>(), vec![WorkloadId(1), WorkloadId(6)]);
    // Without fair share, arrival order decides.
    let mut fifo = Q::new(SchedulerConfig { fair_share: false, ..SchedulerConfig::default() });
    for (id, t) in [(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "a"), (6, "b")] {
        fifo.ev(job(id).gpus(8).tenant(t).arrival());
    }
    let d = fifo.ev(Event::Completion(WorkloadId(1)));
    assert_eq!(d.iter().map(Decision::workload).collect::<Vec<_>>(), vec![WorkloadId(1), WorkloadId(5)]);
}

#[test]
fn higher_priority_still_goes_before_fair_share() {
    let config = SchedulerConfig { priority_preemption: false, ..SchedulerConfig::default() };
    let mut q = Q::new(config);
    for id in 1..=4 {
        q.ev(job(id).gpus(8).tenant("b").arrival());
    }
    q.ev(job(5).gpus(8).tenant("a").arrival());
    q.ev(job(6).gpus(8).tenant("b").prio(PriorityClass::LatencyCritical).arrival());
    let d = q.ev(Event::Completion(WorkloadId(1)));
    assert_eq!(d.iter().map(Decision::workload).collect::<Vec<_>>(), vec![WorkloadId(1), WorkloadId(6)]);
}

#[test]
fn the_same_events_give_the_same_decisions() {
    let run = || {
        let mut q = Q::new(SchedulerConfig::default());
        q.s.set_quotas(two_tenants()).expect("valid quotas");
        let mut log = Vec::new();
        for id in 1..=30u64 {
            q.at(id as f64 * 600.0);
            let t = if id % 3 == 0 { "b" } else { "a" };
            let w = if id % 7 == 0 {
                job(id).gpus(8).gang(2, Topology::SameDomain).limit(2.0 * H).tenant(t)
            } else {
                job(id).gpus(1 + (id % 4) as u32).limit(H * (1 + id % 3) as f64).tenant(t)
            };
            log.push(serde_json::to_string(&q.ev(w.arrival())).expect("json"));
            if id % 4 == 0 {
                log.push(serde_json::to_string(&q.ev(Event::Tick)).expect("json"));
            }
            if id > 5 && q.s.status(WorkloadId(id - 5)) == Some(WorkloadStatus::Running) {
                log.push(serde_json::to_string(&q.ev(Event::Completion(WorkloadId(id - 5)))).expect("json"));
            }
            q.s.audit_quotas().expect("quota books agree");
        }
        log
    };
    assert_eq!(run(), run());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Arrive { tenant: u8, gpus: u8, gang: bool, limit_h: Option<u8> },
        Complete(u8),
        Tick,
        Later(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..3, prop_oneof![Just(1u8), Just(2), Just(4), Just(8)], any::<bool>(), proptest::option::of(1u8..6))
                .prop_map(|(tenant, gpus, gang, limit_h)| Op::Arrive { tenant, gpus, gang, limit_h }),
            3 => any::<u8>().prop_map(Op::Complete),
            2 => Just(Op::Tick),
            1 => (1u8..4).prop_map(Op::Later),
        ]
    }

    /// Three tenants with random nominal quotas, borrowing and lending limits, in one
    /// cohort (or alone).
    fn quotas() -> impl Strategy<Value = Quotas> {
        proptest::collection::vec(
            (0u32..24, proptest::option::of(0u32..16), proptest::option::of(0u32..8), any::<bool>()),
            3,
        )
        .prop_map(|ts| {
            let mut q = two_tenants();
            q.tenants.clear();
            for (i, (nominal, borrow, lend, alone)) in ts.into_iter().enumerate() {
                q.tenants.insert(
                    TenantId(format!("t{i}")),
                    TenantQuota {
                        cohort: (!alone).then(|| "all".to_string()),
                        weight: 1 + i as u32,
                        flavours: BTreeMap::from([(
                            "h100".to_string(),
                            FlavourQuota {
                                nominal: GpuMilliTotal::whole(u64::from(nominal)),
                                borrowing_limit: borrow.map(|b| GpuMilliTotal::whole(u64::from(b))),
                                lending_limit: lend.map(|l| GpuMilliTotal::whole(u64::from(l.min(nominal)))),
                            },
                        )]),
                        power: BTreeMap::new(),
                        energy: None,
                    },
                );
            }
            q
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(128) })]

        /// Borrowing never exceeds a tenant's or a cohort's limits, the cohort never uses
        /// more than it owns, and the books always match what runs, whatever arrives,
        /// ends or ticks.
        #[test]
        fn quotas_are_never_exceeded(q in quotas(), ops in proptest::collection::vec(op(), 1..80)) {
            let mut s = Q::new(SchedulerConfig::default());
            s.s.set_quotas(q).expect("valid");
            let mut clock = 0.0;
            for (n, o) in ops.into_iter().enumerate() {
                let id = n as u64 + 1;
                match o {
                    Op::Arrive { tenant, gpus, gang, limit_h } => {
                        let mut w = job(id).gpus(u32::from(gpus)).tenant(&format!("t{tenant}"));
                        if gang { w = w.gpus(8).gang(2, Topology::SameDomain); }
                        if let Some(h) = limit_h { w = w.limit(f64::from(h) * H); }
                        s.ev(w.arrival());
                    }
                    Op::Complete(k) => {
                        let running: Vec<WorkloadId> = (1..id).map(WorkloadId)
                            .filter(|w| s.s.status(*w) == Some(WorkloadStatus::Running)).collect();
                        if !running.is_empty() {
                            let w = running[usize::from(k) % running.len()];
                            s.ev(Event::Completion(w));
                        }
                    }
                    Op::Tick => { s.ev(Event::Tick); }
                    Op::Later(h) => { clock += f64::from(h) * H; s.at(clock); }
                }
                if let Err(e) = s.s.audit_quotas() {
                    return Err(TestCaseError::fail(format!("after op {n}: {e}")));
                }
            }
        }

        /// A tenant within its nominal quota gets it back within one reclaim round, however
        /// borrowers hold the lab.
        #[test]
        fn the_lender_gets_its_nominal_within_one_reclaim(sizes in proptest::collection::vec(prop_oneof![Just(1u32), Just(2), Just(4), Just(8)], 8..40), want in prop_oneof![Just(1u32), Just(2), Just(4), Just(8)]) {
            let mut s = Q::new(SchedulerConfig::default());
            s.s.set_quotas(two_tenants()).expect("valid");
            for (i, g) in sizes.into_iter().enumerate() {
                s.ev(job(i as u64 + 1).gpus(g).tenant("a").arrival());
            }
            let b = WorkloadId(1000);
            s.ev(job(1000).gpus(want).tenant("b").arrival());
            if s.s.status(b) != Some(WorkloadStatus::Running) {
                s.ev(Event::Tick);
            }
            prop_assert_eq!(s.s.status(b), Some(WorkloadStatus::Running));
            s.s.audit_quotas().map_err(TestCaseError::fail)?;
        }

        /// Backfilled work never delays a reservation: the gang runs by the time its
        /// reservation said, with every job ending exactly at its time limit (the worst
        /// case) and work of every limit arriving meanwhile.
        #[test]
        fn a_reservation_is_never_delayed_by_backfill(
            limits in proptest::collection::vec(1u8..8, 4),
            later in proptest::collection::vec((1u8..16, 1u8..12, prop_oneof![Just(1u32), Just(4), Just(8)]), 0..20),
        ) {
            let mut s = Q::new(SchedulerConfig::default());
            let mut ends: Vec<(f64, u64)> = Vec::new();
            for (i, l) in limits.iter().enumerate() {
                s.ev(job(i as u64 + 1).gpus(8).limit(f64::from(*l) * H).tenant("a").arrival());
                ends.push((f64::from(*l) * H, i as u64 + 1));
            }
            let gang = WorkloadId(100);
            s.ev(job(100).gpus(8).gang(4, Topology::SameDomain).limit(H).tenant("b").arrival());
            s.ev(Event::Tick);
            let (start, _) = s.s.expected_start(gang).expect("a reservation");
            let start_s = start.since(common::NOW).0;
            // Arrivals every half hour (with their own limits), a tick after each, and
            // completions exactly at the limits of whatever started.
            let mut limit_of: BTreeMap<u64, f64> = BTreeMap::new();
            let mut seen: std::collections::BTreeSet<u64> = (1..=4).collect();
            let mut note_starts = |s: &Q, ends: &mut Vec<(f64, u64)>, limit_of: &BTreeMap<u64, f64>, now: f64| {
                for (&id, &l) in limit_of {
                    if !seen.contains(&id) && s.s.status(WorkloadId(id)) == Some(WorkloadStatus::Running) {
                        seen.insert(id);
                        ends.push((now + l, id));
                    }
                }
            };
            let mut arrivals: Vec<(f64, u64, f64, u32)> = later
                .into_iter()
                .enumerate()
                .map(|(k, (half_hours, limit_h, gpus))| (f64::from(half_hours) * 1800.0 + k as f64, 201 + k as u64, f64::from(limit_h) * H, gpus))
                .collect();
            arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut arrivals = arrivals.into_iter().peekable();
            loop {
                ends.sort_by(|a, b| a.0.total_cmp(&b.0));
                let next_end = ends.first().map(|e| e.0);
                let next_arrival = arrivals.peek().map(|a| a.0);
                let now = match (next_end, next_arrival) {
                    (Some(e), Some(a)) if e <= a => e,
                    (Some(e), None) => e,
                    (_, Some(a)) => a,
                    (None, None) => break,
                };
                if now > start_s || s.s.status(gang) == Some(WorkloadStatus::Running) {
                    break;
                }
                s.at(now);
                if next_end == Some(now) {
                    let (_, id) = ends.remove(0);
                    if s.s.status(WorkloadId(id)) == Some(WorkloadStatus::Running) {
                        s.ev(Event::Completion(WorkloadId(id)));
                    }
                } else if let Some((_, id, limit, gpus)) = arrivals.next() {
                    limit_of.insert(id, limit);
                    s.ev(job(id).gpus(gpus).limit(limit).tenant("c").arrival());
                    note_starts(&s, &mut ends, &limit_of, now);
                    s.ev(Event::Tick);
                }
                note_starts(&s, &mut ends, &limit_of, now);
            }
            s.at(start_s);
            s.ev(Event::Tick);
            prop_assert_eq!(s.s.status(gang), Some(WorkloadStatus::Running), "reservation at {}s", start_s);
        }
    }
}

#[test]
fn best_effort_work_ages_into_standard_order_but_stays_preemptible() {
    let mut q = Q::new(SchedulerConfig::default());
    // Fill the fleet with long standard work.
    let mut fill = Vec::new();
    for id in 1..=1000u64 {
        let d = q.ev(job(id).gpus(8).limit(100.0 * H).tenant("x").arrival());
        if matches!(d[..], [Decision::Pending { .. }]) {
            q.ev(Event::Cancel(WorkloadId(id)));
            break;
        }
        fill.push(id);
    }
    assert!(fill.len() >= 3, "the lab fleet holds a few 8-GPU jobs");
    // A best-effort job waits, then a standard one of the same tenant and shape.
    q.ev(job(2001).gpus(8).limit(H).prio(PriorityClass::BestEffort).tenant("a").arrival());
    q.at(H);
    q.ev(job(2002).gpus(8).limit(H).tenant("a").arrival());
    // A node frees: standard goes first.
    q.at(2.0 * H);
    q.ev(Event::Completion(WorkloadId(fill[0])));
    assert!(q.running(2002) && !q.running(2001), "standard before best-effort");
    // A day later the best-effort job has aged; it goes before newer standard work.
    q.at(3.0 * H);
    q.ev(job(2003).gpus(8).limit(H).tenant("a").arrival());
    q.at(25.0 * H);
    q.ev(Event::Tick);
    q.ev(Event::Completion(WorkloadId(fill[1])));
    assert!(q.running(2001) && !q.running(2003), "aged best-effort before newer standard work");
    // Aging orders the queue; it grants nothing against preemption.
    q.ev(Event::Completion(WorkloadId(2002)));
    assert!(q.running(2003));
    let d = q.ev(job(2004).gpus(8).limit(H).tenant("b").arrival());
    assert!(
        d.iter().any(|d| matches!(d, Decision::Preempted { workload: WorkloadId(2001), .. })),
        "standard work preempts aged best-effort work: {d:?}"
    );
}
