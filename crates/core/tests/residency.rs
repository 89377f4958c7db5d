//! Residency in the core: the operator's rules (the fleet file's `[residency.*]`), a
//! tenant's policy and a job's pins steer every placement; a policy change evicts what
//! breaks it; a restore refuses a placement the rules in force no longer allow, leaving
//! the state as it was.

mod common;

use common::{NOW, job};
use gigawatt_core::{
    CoreError, DataClass, Decision, Event, PolicyKind, PreemptWhy, RejectWhy, Scheduler, SchedulerConfig,
    TaskPlacement, TenantId, WorkloadId,
};
use gigawatt_fleet::ResidencyRule;
use rand::SeedableRng;

/// Two HDS sites, Germany first in file order, one H100 server each; `RULES` is replaced
/// by each test.
const TWO: &str = r#"
RULES

[node_type.hgx]
gpu_model = "H100-SXM"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 4600

[[site]]
id = "frankfurt"
country = "DE"
region = "eu-central"
certifications = ["hds", "c5"]
pue = 1.0
grid = [{ from = 2026-01-01, capacity_mw = 1 }]

  [[site.rack_group]]
  prefix = "fra"
  count = 1
  node_type = "hgx"
  nodes_per_rack = 1

[[site]]
id = "paris"
country = "FR"
region = "eu-west"
certifications = ["hds"]
pue = 1.0
grid = [{ from = 2026-01-01, capacity_mw = 1 }]

  [[site.rack_group]]
  prefix = "par"
  count = 1
  node_type = "hgx"
  nodes_per_rack = 1
"#;

fn scheduler(rules: &str) -> Scheduler {
    let fleet = common::fleet(&TWO.replace("RULES", rules));
    Scheduler::new(
        &fleet,
        PolicyKind::BestFit.build(&common::typical_pods()),
        SchedulerConfig::default(),
        NOW,
    )
    .expect("scheduler")
}

fn placed_on(d: &[Decision]) -> Vec<String> {
    d.iter()
        .flat_map(|d| match d {
            Decision::Placed { tasks, .. } => tasks.iter().map(|t| t.node.clone()).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_narrower_rule_in_the_fleet_file_steers_placement() {
    let health = || job(1).gpus(8).class(DataClass::Health).arrival();
    let mut rng = gigawatt_core::CoreRng::seed_from_u64(1);
    // The default (HDS in the EU/EEA): the first site in file order takes it.
    let mut s = scheduler("");
    let d = s.handle(NOW, health(), &mut rng).expect("handled");
    assert_eq!(placed_on(&d), ["fra01-n01"]);
    // Health data in France only: Frankfurt is refused whatever room it has.
    let mut s = scheduler("[residency.health]\ncountries = [\"FR\"]\ncertifications = [\"hds\"]");
    let d = s.handle(NOW, health(), &mut rng).expect("handled");
    assert_eq!(placed_on(&d), ["par01-n01"]);
    // And a second health job waits, however free Frankfurt is, and says why.
    let d = s.handle(NOW, job(2).gpus(8).class(DataClass::Health).arrival(), &mut rng).expect("handled");
    assert!(placed_on(&d).is_empty(), "{d:?}");
}

#[test]
fn restore_refuses_a_site_the_rules_in_force_refuse_and_changes_nothing() {
    let w = job(1).gpus(8).class(DataClass::Health).build();
    let on = |node: &str| {
        vec![Some(TaskPlacement {
            task: 0,
            node: node.into(),
            gpus: (0..8).map(|g| (g, gigawatt_units::GpuMilli::WHOLE)).collect(),
            power: gigawatt_units::Watts(0),
        })]
    };
    // The log placed it in Frankfurt; the fleet file now keeps health data in France.
    let mut s = scheduler("[residency.health]\ncountries = [\"FR\"]\ncertifications = [\"hds\"]");
    let before = s.state().clone();
    match s.restore(w.clone(), &on("fra01-n01")) {
        Err(CoreError::Residency { node, site, why, .. }) => {
            assert_eq!((node.as_str(), site.as_str()), ("fra01-n01", "frankfurt"));
            assert_eq!(
                why,
                "operator rule for health data (HDS, in FR): site frankfurt is in DE, outside FR"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.state(), &before, "a refused restore leaves the state as it was");
    // Waiting, it restores; on an allowed site too.
    s.restore(w, &on("par01-n01")).expect("paris is allowed");
}

fn rule(countries: &[&str]) -> ResidencyRule {
    ResidencyRule {
        countries: Some(countries.iter().map(|c| (*c).to_string()).collect()),
        ..ResidencyRule::anywhere()
    }
}

#[test]
fn job_pins_narrow_the_operator_rule() {
    let mut rng = gigawatt_core::CoreRng::seed_from_u64(1);
    let mut s = scheduler("");
    let pinned = job(1).gpus(8).class(DataClass::Health).pins(rule(&["FR"]));
    let d = s.handle(NOW, pinned.arrival(), &mut rng).expect("handled");
    assert_eq!(placed_on(&d), ["par01-n01"], "Frankfurt is first in file order, but the job pins FR");
    // Pins cannot widen: health data pinned to the US has nowhere to go, and says why.
    let d = s
        .handle(NOW, job(2).class(DataClass::Health).pins(rule(&["US"])).arrival(), &mut rng)
        .expect("handled");
    let text = d[0].to_string();
    assert!(
        text.contains(
            "no site in the fleet may hold health data under HDS, in EU/EEA (operator); in US (job)"
        ) && text.contains("job placement for health data (in US): site paris is in FR, outside US"),
        "{text}"
    );
}

#[test]
fn a_tenant_policy_evicts_what_breaks_it_and_requeues_it_under_the_policy() {
    let mut rng = gigawatt_core::CoreRng::seed_from_u64(1);
    let mut s = scheduler("");
    let acme = TenantId("acme".into());
    let d = s.handle(NOW, job(1).gpus(8).class(DataClass::Health).arrival(), &mut rng).expect("handled");
    assert_eq!(placed_on(&d), ["fra01-n01"]);
    let d = s.handle(NOW, job(2).gpus(8).tenant("other").arrival(), &mut rng).expect("handled");
    assert_eq!(placed_on(&d), ["par01-n01"]);
    // acme keeps its data in France from now on: its job leaves Frankfurt, with why, and
    // waits (Paris is full); the other tenant's job is untouched.
    let d = s.set_tenant_policy(&acme, rule(&["FR"]), &mut rng);
    assert_eq!(d.len(), 1, "{d:?}");
    match &d[0] {
        Decision::Preempted { workload, why: PreemptWhy::Residency { site, why } } => {
            assert_eq!((workload.0, site.as_str()), (1, "frankfurt"));
            assert_eq!(why, "tenant policy for health data (in FR): site frankfurt is in DE, outside FR");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.status(WorkloadId(1)), Some(gigawatt_core::WorkloadStatus::Pending));
    assert_eq!(s.tenant_policy(&acme), Some(&rule(&["FR"])));
    assert!(s.allocations(WorkloadId(2)).is_some_and(|a| a.iter().all(Option::is_some)));
    // Paris frees up: the requeued job goes there, never back to Frankfurt.
    let d = s.handle(NOW, Event::Completion(WorkloadId(2)), &mut rng).expect("handled");
    assert_eq!(placed_on(&d), ["par01-n01"]);
    // A policy no site meets: the job is stopped and rejected, with every site's reason.
    let d = s.set_tenant_policy(&acme, rule(&["JP"]), &mut rng);
    assert!(matches!(d[0], Decision::Preempted { why: PreemptWhy::Residency { .. }, .. }), "{d:?}");
    assert!(matches!(d[1], Decision::Rejected { why: RejectWhy::NoSiteAllowed { .. }, .. }), "{d:?}");
    assert_eq!(s.status(WorkloadId(1)), None);
    // Lifting the policy leaves new work free again.
    s.set_tenant_policy(&acme, ResidencyRule::anywhere(), &mut rng);
    assert_eq!(s.tenant_policy(&acme), None);
    let d = s.handle(NOW, job(3).gpus(8).class(DataClass::Health).arrival(), &mut rng).expect("handled");
    assert_eq!(placed_on(&d), ["fra01-n01"]);
}

#[test]
fn restore_checks_the_tenant_policy_too() {
    let mut rng = gigawatt_core::CoreRng::seed_from_u64(1);
    let mut s = scheduler("");
    s.set_tenant_policy(&TenantId("acme".into()), rule(&["FR"]), &mut rng);
    let w = job(1).gpus(8).class(DataClass::Health).build();
    let on_frankfurt = vec![Some(TaskPlacement {
        task: 0,
        node: "fra01-n01".into(),
        gpus: (0..8).map(|g| (g, gigawatt_units::GpuMilli::WHOLE)).collect(),
        power: gigawatt_units::Watts(0),
    })];
    match s.restore(w, &on_frankfurt) {
        Err(CoreError::Residency { site, why, .. }) => {
            assert_eq!(site, "frankfurt");
            assert!(why.starts_with("tenant policy for health data"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}
