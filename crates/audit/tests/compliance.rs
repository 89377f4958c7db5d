//! Placements that break residency fail the compliance check, even though every record
//! is correctly signed and proven (integrity passes): a record cannot vouch for itself.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{Log, LogBuilder, rule_countries, rule_sites, signer, verify};
use gigawatt_audit::{Check, Report};
use gigawatt_core::{DataClass, WorkloadId};
use gigawatt_fleet::ResidencyRule;
use gigawatt_store::{LogEvent, PolicyLayer};

/// A small log: three tenants, the clinic restricted to France, one good placement.
fn base() -> (LogBuilder, WorkloadId) {
    let mut b = LogBuilder::new();
    for t in ["clinic", "bank", "acme"] {
        b.tenant_created(t);
    }
    b.set_policy("clinic", rule_countries(&["FR"]));
    let good = b.submit("clinic", DataClass::Health, ResidencyRule::anywhere(), 1);
    b.place(good);
    let id = b.submit("clinic", DataClass::Health, ResidencyRule::anywhere(), 2);
    (b, id)
}

/// Exports the whole log against one checkpoint and verifies it.
fn check(b: &LogBuilder) -> Report {
    let log = Log::new(b.records.clone());
    let n = log.records.len() as u64;
    verify(&log.export_with(&signer(), &[n], None, |_| true))
}

/// The log fails compliance exactly at record `seq`, with a message containing `why`.
fn fails_at(mut b: LogBuilder, seq: u64, why: &str) {
    // A record after the bad one, so that the failure is not merely the last line.
    b.node_event(true);
    let report = check(&b);
    let f = report.first_failure.clone().unwrap_or_else(|| panic!("still complies: {report}"));
    assert_eq!(f.check, Check::Compliance, "{}", f.message);
    assert_eq!((f.line, f.index), (seq + 1, Some(seq - 1)), "{}", f.message);
    assert!(f.message.contains(why), "{:?} does not say {why:?}", f.message);
    // Integrity held for every record before it.
    assert_eq!(report.records, seq - 1);
    // The tenant's own export catches it too.
    let log = Log::new(b.records.clone());
    let r = verify(&log.tenant_export("clinic"));
    assert_eq!(r.first_failure.map(|f| f.check), Some(Check::Compliance));
}

#[test]
fn the_base_log_complies() {
    let (mut b, id) = base();
    b.place(id);
    let r = check(&b);
    assert!(r.ok, "{r}");
    assert_eq!(r.placements_checked, 2);
}

#[test]
fn a_site_that_breaks_the_policy() {
    let (mut b, id) = base();
    // Truthful facts and layers, but the US site cannot hold health data.
    let w = b.workloads[&id.0].clone();
    let residency = b.residency(&w, &["paris", "ashburn"]);
    let seq = b.place_with(id, &["paris", "ashburn"], Some(residency));
    fails_at(b, seq, "task 1 breaks the operator layer for health data");
}

#[test]
fn a_site_that_breaks_only_the_tenant_policy() {
    let (mut b, id) = base();
    // Frankfurt is HDS in the EU (the operator's rule allows it) but not in France.
    let w = b.workloads[&id.0].clone();
    let residency = b.residency(&w, &["frankfurt", "paris"]);
    let seq = b.place_with(id, &["frankfurt", "paris"], Some(residency));
    fails_at(b, seq, "task 0 breaks the tenant layer");
}

#[test]
fn site_facts_that_differ_from_the_fleet_in_force() {
    let (mut b, id) = base();
    // The placement claims Ashburn is an HDS site in France.
    let w = b.workloads[&id.0].clone();
    let mut residency = b.residency(&w, &["paris", "ashburn"]);
    residency.sites[1].site.country = "FR".into();
    residency.sites[1].site.jurisdiction = "EU".into();
    residency.sites[1].site.certifications = vec!["hds".into()];
    let seq = b.place_with(id, &["paris", "ashburn"], Some(residency));
    fails_at(b, seq, "but the fleet in force says ashburn US, US law, soc2");
}

#[test]
fn the_tenant_layer_left_out() {
    let (mut b, id) = base();
    let w = b.workloads[&id.0].clone();
    let mut residency = b.residency(&w, &["paris", "paris"]);
    residency.policy.retain(|l| l.source != "tenant");
    let seq = b.place_with(id, &["paris", "paris"], Some(residency));
    fails_at(b, seq, "omits tenant clinic's policy");
}

#[test]
fn a_weaker_tenant_layer() {
    let (mut b, id) = base();
    let w = b.workloads[&id.0].clone();
    let mut residency = b.residency(&w, &["frankfurt", "paris"]);
    residency.policy[1].rule = rule_countries(&["EU"]);
    let seq = b.place_with(id, &["frankfurt", "paris"], Some(residency));
    fails_at(b, seq, "the tenant layer says in EU, but tenant clinic's policy is in FR");
}

#[test]
fn a_health_placement_without_its_residency_record() {
    let (mut b, id) = base();
    let seq = b.place_with(id, &["paris", "paris"], None);
    fails_at(b, seq, "placement of health data without its residency record");
}

#[test]
fn a_weaker_operator_layer() {
    let (mut b, id) = base();
    let w = b.workloads[&id.0].clone();
    let mut residency = b.residency(&w, &["paris", "paris"]);
    residency.policy[0].rule = ResidencyRule::anywhere();
    let seq = b.place_with(id, &["paris", "paris"], Some(residency));
    fails_at(b, seq, "the operator layer says anywhere, but the fleet in force says HDS, in EU/EEA");
}

#[test]
fn a_lie_about_the_data_class() {
    let (mut b, id) = base();
    let w = b.workloads[&id.0].clone();
    let mut residency = b.residency(&w, &["ashburn", "ashburn"]);
    residency.data_class = DataClass::Public;
    residency.policy = vec![PolicyLayer { source: "operator".into(), rule: ResidencyRule::anywhere() }];
    let seq = b.place_with(id, &["ashburn", "ashburn"], Some(residency));
    fails_at(b, seq, "the placement records public data, but workload");
}

#[test]
fn the_job_pins_left_out() {
    let (mut b, _) = base();
    let id = b.submit("clinic", DataClass::Health, rule_sites(&["paris"]), 1);
    let w = b.workloads[&id.0].clone();
    let mut residency = b.residency(&w, &["paris"]);
    assert_eq!(residency.policy.len(), 3);
    residency.policy.pop();
    let seq = b.place_with(id, &["paris"], Some(residency));
    fails_at(b, seq, "omits the workload's pins (at paris)");
}

#[test]
fn a_task_without_a_site() {
    let (mut b, id) = base();
    let w = b.workloads[&id.0].clone();
    let mut residency = b.residency(&w, &["paris", "paris"]);
    residency.sites.pop();
    let seq = b.place_with(id, &["paris", "paris"], Some(residency));
    fails_at(b, seq, "task 1 has no site in the residency record");
}

#[test]
fn facts_that_changed_since_the_placement_was_judged() {
    let (mut b, id) = base();
    // The fleet file changes: Paris loses HDS. A placement judged by the old facts fails.
    let w = b.workloads[&id.0].clone();
    let stale = b.residency(&w, &["paris", "paris"]);
    b.sites[0].certifications = vec!["secnumcloud".into(), "iso27001".into()];
    b.fleet_in_force();
    let seq = b.place_with(id, &["paris", "paris"], Some(stale));
    fails_at(b, seq, "the fleet in force says paris FR, EU law, secnumcloud+iso27001");
}

#[test]
fn an_unknown_certification_cannot_be_judged() {
    let (mut b, id) = base();
    b.sites[0].certifications.push("fedramp".into());
    b.fleet_in_force();
    let w = b.workloads[&id.0].clone();
    let residency = b.residency(&w, &["paris", "paris"]);
    let seq = b.place_with(id, &["paris", "paris"], Some(residency));
    fails_at(b, seq, "unknown certification \"fedramp\"");
}

#[test]
fn a_lifted_policy_no_longer_applies() {
    let (mut b, id) = base();
    b.set_policy("clinic", ResidencyRule::anywhere());
    // Frankfurt is fine for health data once the France-only policy is lifted.
    let w = b.workloads[&id.0].clone();
    let residency = b.residency(&w, &["frankfurt", "paris"]);
    assert_eq!(residency.policy.len(), 1);
    b.place_with(id, &["frankfurt", "paris"], Some(residency.clone()));
    let r = check(&b);
    assert!(r.ok, "{r}");
    // But a placement that still records the lifted policy as a layer does not match it.
    let mut stale = residency;
    stale.policy.push(PolicyLayer { source: "tenant".into(), rule: rule_countries(&["FR"]) });
    let id = b.submit("clinic", DataClass::Health, ResidencyRule::anywhere(), 1);
    let seq = b.place_with(id, &["paris"], Some(stale));
    fails_at(b, seq, "the tenant layer says in FR, but tenant clinic's policy is anywhere");
}

#[test]
fn public_placements_without_residency_and_unjudgeable_layers_pass() {
    let (mut b, id) = base();
    b.place(id);
    let public = b.submit("acme", DataClass::Public, ResidencyRule::anywhere(), 1);
    b.place_with(public, &["ashburn"], None);
    let r = check(&b);
    assert!(r.ok, "{r}");
    assert_eq!(r.placements_checked, 2);

    // A window without the submissions: the job layer is taken as recorded, and the
    // data class as the placement says (the site still must meet every layer).
    let pinned = b.submit("clinic", DataClass::Health, rule_sites(&["paris"]), 1);
    b.place(pinned);
    let log = Log::new(b.records.clone());
    let n = log.records.len() as u64;
    let window =
        log.export_with(&signer(), &[n], None, |r| !matches!(r.event, LogEvent::WorkloadSubmitted { .. }));
    let r = verify(&window);
    assert!(r.ok, "{r}");
    assert_eq!(r.placements_checked, 3);
}

#[test]
fn a_placement_like_a_compliant_one_is_judged_again_under_new_rules() {
    // The verifier remembers compliant placements by their bytes and the rules they were
    // judged under; the same bytes under other rules, or for another submission, are
    // judged afresh.
    let (mut b, id) = base();
    let w = b.workloads[&id.0].clone();
    let residency = b.residency(&w, &["paris", "paris"]);
    b.place_with(id, &["paris", "paris"], Some(residency.clone()));
    let again = b.submit("clinic", DataClass::Health, ResidencyRule::anywhere(), 2);
    b.place_with(again, &["paris", "paris"], Some(residency.clone()));
    let r = check(&b);
    assert!(r.ok, "{r}");
    assert_eq!(r.placements_checked, 3);

    // The clinic moves to Germany: the very same record no longer complies.
    let mut moved = b.clone();
    moved.set_policy("clinic", rule_countries(&["DE"]));
    let later = moved.submit("clinic", DataClass::Health, ResidencyRule::anywhere(), 2);
    let seq = moved.place_with(later, &["paris", "paris"], Some(residency.clone()));
    fails_at(moved, seq, "the tenant layer says in FR, but tenant clinic's policy is in DE");

    // A submission with pins: the same record omits its job layer.
    let pinned = b.submit("clinic", DataClass::Health, rule_sites(&["paris"]), 2);
    let seq = b.place_with(pinned, &["paris", "paris"], Some(residency));
    fails_at(b, seq, "omits the workload's pins (at paris)");
}
