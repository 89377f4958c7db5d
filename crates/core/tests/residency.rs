//! The operator's residency rules (the fleet file's `[residency.*]`) in the core: they
//! steer every placement, and a restore refuses a placement the rules in force no longer
//! allow, leaving the state as it was.

mod common;

use common::{NOW, job};
use gigawatt_core::{CoreError, DataClass, Decision, PolicyKind, Scheduler, SchedulerConfig, TaskPlacement};
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
            assert_eq!(why, "health data needs HDS, in FR: site frankfurt is in DE, outside FR");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.state(), &before, "a refused restore leaves the state as it was");
    // Waiting, it restores; on an allowed site too.
    s.restore(w, &on("par01-n01")).expect("paris is allowed");
}
