//! gigawatt's own policy, capacity-aware FGD, must beat the paper's FGD on the bundled
//! openb trace and each of its variants (the "go beyond" target). The full
//! 10-seed figures are in docs/fgd-reproduction.md; three seeds keep this test short.

use std::path::{Path, PathBuf};

use gigawatt_core::PolicyKind;
use gigawatt_sim::fgd::{self, Params, WorkloadFile};
use gigawatt_sim::openb::load_pods;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

#[test]
fn capacity_aware_fgd_beats_fgd_on_every_bundled_workload() {
    let fleet = gigawatt_fleet::load(&repo("fleets/openb.toml")).expect("bundled fleet");
    let names = [
        "openb_pod_list_default",
        "openb_pod_list_gpushare100",
        "openb_pod_list_multigpu20",
        "openb_pod_list_gpuspec10",
    ];
    let lists: Vec<(String, Vec<_>)> = names
        .iter()
        .map(|n| {
            let pods = load_pods(&repo(&format!("traces/openb/{n}.csv")), false).expect("bundled pods").pods;
            ((*n).to_string(), pods)
        })
        .collect();
    let workloads: Vec<WorkloadFile<'_>> =
        lists.iter().map(|(name, pods)| WorkloadFile { name: name.clone(), pods }).collect();
    let runs = fgd::run_matrix(
        &fleet,
        &workloads,
        &[PolicyKind::Fgd, PolicyKind::CaFgd],
        &[42, 43, 44],
        Params::default(),
        2,
        &|_| {},
    )
    .expect("runs");
    let summary = fgd::summarize(&runs);
    for name in names {
        let at = |p: &str| {
            summary
                .iter()
                .find(|r| r.workload == name && r.policy == p && r.arrived_pct == 130)
                .map(|r| r.alloc_pct_mean)
                .expect("a 130% bucket")
        };
        let (ours, theirs) = (at("cafgd"), at("fgd"));
        assert!(ours > theirs, "{name}: cafgd {ours:.2}% vs fgd {theirs:.2}%");
    }
}
