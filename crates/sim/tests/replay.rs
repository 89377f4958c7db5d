//! The production replay: real arrival and departure times through the queueing,
//! preempting production configuration of the core.

use std::path::{Path, PathBuf};

use gigawatt_core::PolicyKind;
use gigawatt_sim::openb::load_pods;
use gigawatt_sim::replay::{ReplayParams, replay};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

fn params(policy: PolicyKind, speedup: f64) -> ReplayParams {
    ReplayParams { policy, seed: 42, max_candidates: Some(128), timeline_points: 50, speedup }
}

#[test]
fn every_pod_is_accounted_for_and_runs_are_deterministic() {
    let fleet = gigawatt_fleet::load(&repo("fleets/openb.toml")).expect("bundled fleet");
    let pods = load_pods(&repo("traces/openb/openb_pod_list_default.csv"), false).expect("bundled pods").pods;
    let a = replay(&fleet, &pods, params(PolicyKind::Fgd, 3000.0)).expect("replay");
    assert_eq!(a.pods + a.skipped, pods.len());
    assert_eq!(a.skipped, 1, "one pod of the trace has deletion_time == creation_time");
    // Every pod ran to completion, was rejected, or still waits at the end.
    assert_eq!(a.completed + a.rejected + a.never_placed, a.pods, "{a:?}");
    assert!(a.alloc_pct_peak > a.alloc_pct_mean && a.alloc_pct_peak <= 100.0);
    assert!(!a.timeline.is_empty() && a.timeline.len() <= 60);
    let b = replay(&fleet, &pods, params(PolicyKind::Fgd, 3000.0)).expect("replay");
    assert_eq!(a, b, "same inputs and seed, same report");
}

#[test]
fn under_pressure_fgd_keeps_the_queue_shorter_than_random() {
    let fleet = gigawatt_fleet::load(&repo("fleets/openb.toml")).expect("bundled fleet");
    let pods = load_pods(&repo("traces/openb/openb_pod_list_default.csv"), false).expect("bundled pods").pods;
    let fgd = replay(&fleet, &pods, params(PolicyKind::Fgd, 30_000.0)).expect("replay");
    let random = replay(&fleet, &pods, params(PolicyKind::Random, 30_000.0)).expect("replay");
    assert!(random.peak_pending > 0, "30,000x must saturate the cluster: {random:?}");
    assert!(
        fgd.peak_pending < random.peak_pending,
        "fgd {} vs random {}",
        fgd.peak_pending,
        random.peak_pending
    );
    assert!(fgd.preemptions < random.preemptions);
}
