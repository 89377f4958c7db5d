//! Energy quotas: kWh per billing period (a calendar month, UTC), committed at placement
//! until the time limit, given back for what was not used, counted again each month,
//! and the same after a restart.

mod common;

use common::job;
use gigawatt_core::quota::QuotaLimit;
use gigawatt_core::{
    CoreRng, Decision, EnergyUse, Event, PolicyKind, PreemptWhy, Quotas, Scheduler, SchedulerConfig,
    TaskPlacement, TenantId, TenantQuota, WorkloadId, WorkloadStatus, billing_month,
};
use gigawatt_units::{Seconds, Timestamp, WattHours};
use rand::SeedableRng;

const H: f64 = 3600.0;

fn scheduler(now: Timestamp) -> Scheduler {
    let fleet = common::fleet(common::LAB);
    Scheduler::new(
        &fleet,
        PolicyKind::BestFit.build(&common::typical_pods()),
        SchedulerConfig::default(),
        now,
    )
    .expect("scheduler")
}

fn energy_quota(tenant: &str, wh: u64) -> Quotas {
    let mut q = Quotas::default();
    q.tenants.insert(
        TenantId(tenant.into()),
        TenantQuota { weight: 1, energy: Some(WattHours(wh)), ..TenantQuota::default() },
    );
    q
}

struct E {
    s: Scheduler,
    rng: CoreRng,
    now: Timestamp,
}

impl E {
    fn new(now: Timestamp) -> E {
        E { s: scheduler(now), rng: CoreRng::seed_from_u64(5), now }
    }

    fn ev(&mut self, e: Event) -> Vec<Decision> {
        let d = self.s.handle(self.now, e, &mut self.rng).expect("event applies");
        // The hard limit: never more committed than the quota.
        for t in ["a", "b"] {
            if let Some(u) = self.s.energy_use(&TenantId(t.into())) {
                assert!(u.committed <= u.limit, "tenant {t} over its energy quota: {u:?}");
            }
        }
        d
    }

    fn running(&self, id: u64) -> bool {
        self.s.status(WorkloadId(id)) == Some(WorkloadStatus::Running)
    }

    fn used(&self, t: &str) -> EnergyUse {
        self.s.energy_use(&TenantId(t.into())).expect("tenant has an energy quota")
    }
}

#[test]
fn work_starts_only_if_its_energy_to_the_time_limit_fits_and_unused_energy_comes_back() {
    let mut e = E::new(common::NOW);
    e.s.set_quotas(energy_quota("a", 1_000_000)).expect("quotas");
    // One GPU for at most 10 h: its reserved power times 10 h is committed at once.
    e.ev(job(1).gpus(1).limit(10.0 * H).tenant("a").arrival());
    assert!(e.running(1));
    let one = e.used("a").committed.0;
    assert!(one > 5_000, "an H100 task reserves well over 500 W for 10 h: {one} Wh");
    // A quota of two and a half such jobs: a second starts, a third waits on energy.
    e.s.set_quotas(energy_quota("a", one * 5 / 2)).expect("quotas");
    e.ev(job(2).gpus(1).limit(10.0 * H).tenant("a").arrival());
    assert!(e.running(2));
    let d = e.ev(job(3).gpus(1).limit(10.0 * H).tenant("a").arrival());
    assert!(!e.running(3), "{d:?}");
    let why = e.s.queue_position(WorkloadId(3)).expect("waits").quota.expect("quota holds it back");
    assert!(matches!(why.limit, QuotaLimit::Energy { .. }), "{why:?}");
    assert!(why.to_string().contains("energy quota"), "{why}");
    // Another tenant without an energy quota is not held back by a's.
    e.ev(job(4).gpus(1).limit(10.0 * H).tenant("b").arrival());
    assert!(e.running(4));
    // Job 1 ends after 5 h: the 5 h it did not use come back, and job 3 now fits.
    e.now = common::NOW + Seconds(5.0 * H);
    e.ev(Event::Completion(WorkloadId(1)));
    assert!(e.running(3), "half of job 1's commitment came back");
    let now = e.used("a").committed.0;
    // 5 h of job 1, 10 h of job 2, 10 h of job 3.
    let expect = one / 2 + one + one;
    assert!(now.abs_diff(expect) <= 2, "{now} Wh committed, expected about {expect}");
}

#[test]
fn a_new_month_counts_again_and_stops_what_no_longer_fits() {
    // 2026-06-30 20:00 UTC: four hours before July.
    let start = common::NOW + Seconds(29.0 * 24.0 * H + 20.0 * H);
    let mut e = E::new(start);
    e.s.set_quotas(energy_quota("a", 1_000_000)).expect("quotas");
    // Without a time limit, work commits to the end of the month: 4 h here.
    e.ev(job(1).gpus(1).tenant("a").arrival());
    let four_hours = e.used("a").committed.0;
    // A quota of 100 such hours: enough for June's last four, not for all of July.
    e.s.set_quotas(energy_quota("a", four_hours * 25)).expect("quotas");
    e.ev(job(2).gpus(1).limit(2.0 * H).tenant("a").arrival());
    assert!(e.running(1) && e.running(2));
    let june = e.used("a");
    assert_eq!((june.period_start, june.period_end), billing_month(start));
    // Job 2 ends in June.
    e.now = start + Seconds(2.0 * H);
    e.ev(Event::Completion(WorkloadId(2)));
    // The first event of July: job 1 would commit all of July (744 h), over the quota.
    e.now = start + Seconds(4.0 * H + 1.0);
    let d = e.ev(Event::Tick);
    assert!(
        d.iter().any(|d| matches!(
            d,
            Decision::Preempted { workload: WorkloadId(1), why: PreemptWhy::EnergyQuota { .. } }
        )),
        "{d:?}"
    );
    let july = e.used("a");
    assert_eq!(july.period_start, billing_month(e.now).0);
    assert!(july.period_start > june.period_start);
    // It used a second of July before the event: that stays counted, nothing more.
    assert!(july.committed.0 <= 2, "{july:?}");
    assert!(!e.running(1));
    let why = e.s.queue_position(WorkloadId(1)).expect("waits").quota.expect("energy holds it");
    assert!(matches!(why.limit, QuotaLimit::Energy { .. }));
    // With a time limit that fits, work runs in July.
    e.ev(job(3).gpus(1).limit(24.0 * H).tenant("a").arrival());
    assert!(e.running(3));
    // Explained in words.
    let text = d.iter().find(|d| matches!(d, Decision::Preempted { .. })).expect("preempted").to_string();
    assert!(text.contains("billing period") && text.contains("energy quota"), "{text}");
}

#[test]
fn a_restart_counts_the_same_energy_as_the_live_run() {
    let t0 = common::NOW + Seconds(3.0 * 24.0 * H);
    let mut live = E::new(t0);
    live.s.set_quotas(energy_quota("a", 1_000_000)).expect("quotas");
    let w1 = job(1).gpus(2).limit(10.0 * H).tenant("a").build();
    live.ev(Event::Arrival(w1.clone()));
    live.ev(job(2).gpus(1).limit(10.0 * H).tenant("a").arrival());
    let both = live.used("a").committed.0;
    live.now = t0 + Seconds(2.0 * H);
    live.ev(Event::Completion(WorkloadId(2)));
    let after = live.used("a").committed.0;
    // What the ended job used (the log knows it from its placement and its end).
    let job1 = {
        let mut probe = E::new(t0);
        probe.s.set_quotas(energy_quota("a", 1_000_000)).expect("quotas");
        probe.ev(Event::Arrival(w1.clone()));
        probe.used("a").committed.0
    };
    let used_by_2 = after - job1;
    assert!(used_by_2 > 0 && used_by_2 < both - job1);
    // Three hours in, the control plane restarts and rebuilds from the log.
    let at = t0 + Seconds(3.0 * H);
    let placement: Vec<Option<TaskPlacement>> = live
        .s
        .allocations(WorkloadId(1))
        .expect("runs")
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.as_ref().map(|a| TaskPlacement {
                task: i as u32,
                node: live.s.state().node(a.node).name.clone(),
                gpus: a.gpus.clone(),
                power: gigawatt_units::Watts(0),
            })
        })
        .collect();
    let mut back = E::new(at);
    back.s.set_quotas(energy_quota("a", 1_000_000)).expect("quotas");
    back.s.restore(w1, &placement).expect("restores");
    back.s.restore_started(WorkloadId(1), t0);
    back.s.restore_energy_used(&TenantId("a".into()), WattHours(used_by_2));
    let restored = back.used("a").committed.0;
    assert!(restored.abs_diff(after) <= 2, "live {after} Wh, restored {restored} Wh");
}

mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// One step: a job arrives (GPUs, time limit in hours or none, tenant), a running job
    /// ends, the clock moves on (hours), or the periodic pass runs.
    #[derive(Debug, Clone)]
    enum Op {
        Arrive(u32, Option<u8>, bool),
        End(usize),
        Wait(u16),
        Tick,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (prop_oneof![Just(1u32), Just(2), Just(4), Just(8)], proptest::option::of(1u8..72), any::<bool>())
                .prop_map(|(g, l, t)| Op::Arrive(g, l, t)),
            3 => (0usize..64).prop_map(Op::End),
            2 => (1u16..400).prop_map(Op::Wait),
            1 => Just(Op::Tick),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(96) })]

        /// Whatever arrives, ends, waits across month boundaries or ticks, a tenant never
        /// commits more energy than its quota for the month, and a control plane restarted
        /// at any point (running work restored with its placement time, ended work's energy
        /// of the month given back as the log counts it) counts the same.
        #[test]
        fn energy_quotas_hold_and_a_restart_counts_the_same(
            limit_kwh in 5u64..2_000,
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            // 2026-06-28: month ends come within reach of the waits.
            let start = common::NOW + Seconds(27.0 * 24.0 * H);
            let mut e = E::new(start);
            e.s.set_quotas(energy_quota("a", limit_kwh * 1000)).expect("quotas");
            let mut placed: BTreeMap<u64, (Timestamp, Vec<u64>)> = BTreeMap::new();
            let mut ended: BTreeMap<i64, u64> = BTreeMap::new(); // month start → Ws of a's ended work
            let mut workloads = BTreeMap::new();
            let mut next = 1u64;
            // What the log counts of ended work: reserved power from the placement (or the
            // month's start) to the end, at most to the time limit.
            let end_energy = |placed: &mut BTreeMap<u64, (Timestamp, Vec<u64>)>,
                              ended: &mut BTreeMap<i64, u64>,
                              limit: Option<Seconds>,
                              id: u64,
                              at: Timestamp| {
                if let Some((since, watts)) = placed.remove(&id) {
                    let (month, _) = billing_month(at);
                    let from = since.max(month);
                    let to = limit.map_or(at, |l| at.min(since + l));
                    let ms = u64::try_from(to.0 - from.0).unwrap_or(0);
                    let ws: u64 = watts.iter().map(|w| w * ms / 1000).sum();
                    *ended.entry(month.0).or_default() += ws;
                }
            };
            // Follows placements and ends of tenant a's work, as the view folds the log.
            let note = |decisions: &[Decision],
                        now: Timestamp,
                        workloads: &BTreeMap<u64, gigawatt_core::Workload>,
                        placed: &mut BTreeMap<u64, (Timestamp, Vec<u64>)>,
                        ended: &mut BTreeMap<i64, u64>| {
                for d in decisions {
                    match d {
                        Decision::Placed { workload, tasks, .. } if workloads[&workload.0].tenant.0 == "a" => {
                            let entry = placed.entry(workload.0).or_insert((now, Vec::new()));
                            entry.1.extend(tasks.iter().map(|t| t.power.0));
                        }
                        Decision::Preempted { workload, .. } | Decision::Released { workload } => {
                            let limit = workloads.get(&workload.0).and_then(|w| w.time_limit);
                            end_energy(placed, ended, limit, workload.0, now);
                        }
                        _ => {}
                    }
                }
            };
            for o in ops {
                let decisions = match o {
                    Op::Arrive(gpus, limit, tenant_a) => {
                        let mut w = job(next).gpus(gpus).tenant(if tenant_a { "a" } else { "b" });
                        if let Some(h) = limit {
                            w = w.limit(f64::from(h) * H);
                        }
                        let w = w.build();
                        workloads.insert(next, w.clone());
                        next += 1;
                        e.ev(Event::Arrival(w))
                    }
                    Op::End(i) => {
                        let Some(id) = placed.keys().nth(i % placed.len().max(1)).copied() else { continue };
                        e.ev(Event::Completion(WorkloadId(id)))
                    }
                    Op::Wait(h) => {
                        // The control plane runs a pass at the first instant of each month
                        // (as `gigawatt serve` does), then at the target time.
                        let target = e.now + Seconds(f64::from(h) * H);
                        loop {
                            e.now = billing_month(e.now).1.min(target);
                            let d = e.ev(Event::Tick);
                            note(&d, e.now, &workloads, &mut placed, &mut ended);
                            if e.now >= target {
                                break;
                            }
                        }
                        Vec::new()
                    }
                    Op::Tick => e.ev(Event::Tick),
                };
                note(&decisions, e.now, &workloads, &mut placed, &mut ended);
                // The restart: what runs, from its placement time, plus this month's ended work.
                let mut back = E::new(e.now);
                back.s.set_quotas(energy_quota("a", limit_kwh * 1000)).expect("quotas");
                for (id, w) in &workloads {
                    let Some(allocs) = e.s.allocations(WorkloadId(*id)) else { continue };
                    if allocs.iter().all(Option::is_none) {
                        continue;
                    }
                    let tasks: Vec<Option<TaskPlacement>> = allocs
                        .iter()
                        .enumerate()
                        .map(|(i, a)| a.as_ref().map(|a| TaskPlacement {
                            task: i as u32,
                            node: e.s.state().node(a.node).name.clone(),
                            gpus: a.gpus.clone(),
                            power: gigawatt_units::Watts(0),
                        }))
                        .collect();
                    back.s.restore(w.clone(), &tasks).expect("restores");
                    if let Some((since, _)) = placed.get(id) {
                        back.s.restore_started(WorkloadId(*id), *since);
                    }
                }
                let month = billing_month(e.now).0;
                let used = ended.get(&month.0).copied().unwrap_or(0);
                back.s.restore_energy_used(&TenantId("a".into()), WattHours::from_watt_seconds_ceil(used));
                let live = e.used("a").committed.0;
                let restored = back.used("a").committed.0;
                // Rounding: a watt-hour per task charged, refunded or restored.
                let slack = 2 + 2 * workloads.len() as u64;
                prop_assert!(live.abs_diff(restored) <= slack, "live {} Wh, restored {} Wh", live, restored);
            }
        }
    }
}
