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
