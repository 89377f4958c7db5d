//! The log format is kept forever: a log written by format version 1 (by the real
//! server; see `crates/cli/tests/log_fixture.rs`) is committed under `fixtures/`, and
//! every later version must read it, fold it to the same state, and give each record the
//! same canonical bytes (its Merkle leaf), byte for byte.

use gigawatt_store::canonical::is_canonical;
use gigawatt_store::{Record, View};
use sha2::{Digest, Sha256};

const LOG_V1: &str = include_str!("fixtures/log-v1.jsonl");

/// The SHA-256 of the fixture's leaf hashes (SHA-256(0x00 ‖ leaf)) one after the other,
/// computed when the fixture was written; never to be changed.
const V1_LEAVES: &str = "d9a4cad95522c5ac45e3b19f2100cfdd75a023ce990d237518859301ebc7875c";

fn records() -> Vec<Record> {
    LOG_V1
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("fixtures/log-v1.jsonl line {}: {e}", i + 1))
        })
        .collect()
}

#[test]
fn a_version_1_log_still_folds_to_the_same_state() {
    let mut view = View::default();
    for r in records() {
        view.apply(&r).unwrap_or_else(|e| panic!("record {}: {e}", r.seq));
    }
    // What the scenario did, as the state says it (not a digest of the state, whose
    // shape may grow: the log must keep reading, the state may hold more).
    assert_eq!(view.seq, 21);
    assert_eq!(view.tenants.keys().collect::<Vec<_>>(), ["acme", "clinic"]);
    let policy = view.tenants["clinic"].policy.as_ref().expect("clinic's policy");
    assert_eq!(policy.rule.countries, Some(["FR".to_string()].into()));
    assert_eq!(view.tokens.len(), 4);
    assert!(view.quotas.is_some());
    let mut states: Vec<(String, &str)> =
        view.workloads.values().map(|w| (w.workload.name.clone(), w.state.as_str())).collect();
    states.sort();
    assert_eq!(
        states,
        [("batch".into(), "cancelled"), ("llm".into(), "running"), ("scans".into(), "running")]
    );
    let scans = view.workloads.values().find(|w| w.workload.name == "scans").expect("scans");
    assert_eq!(scans.workload.pins.sites, Some(["valence".to_string()].into()));
    assert!(
        scans.tasks.iter().all(|t| t.as_ref().is_some_and(|t| t.node.starts_with("val"))),
        "{:?}",
        scans.tasks
    );
    assert!(view.nodes_down.is_empty());
    // Placements carry where the data went and the policy they were judged by.
    let health = records()
        .into_iter()
        .find_map(|r| match r.event {
            gigawatt_store::LogEvent::WorkloadPlaced { residency: Some(p), .. }
                if p.data_class == gigawatt_core::DataClass::Health =>
            {
                Some(p)
            }
            _ => None,
        })
        .expect("a placement of health data");
    let layers: Vec<&str> = health.policy.iter().map(|l| l.source.as_str()).collect();
    assert_eq!(layers, ["operator", "tenant", "job"]);
    assert_eq!(health.sites[0].site.id, "valence");
    assert_eq!(health.sites[0].site.jurisdiction, "EU");
}

#[test]
fn a_version_1_log_keeps_its_canonical_bytes() {
    let mut all = Sha256::new();
    for r in records() {
        let leaf = r.leaf();
        assert!(is_canonical(&leaf), "record {}", r.seq);
        let text = String::from_utf8(leaf.clone()).expect("utf-8");
        assert!(text.ends_with(r#","v":1}"#), "record {}: {text}", r.seq);
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(&leaf);
        all.update(h.finalize());
    }
    assert_eq!(gigawatt_store::hex(&all.finalize()), V1_LEAVES);
}
