//! The published results we are judged against.
//!
//! Allocation ratio (%) at 130% arrived workload, mean over seeds 42..=51, from the FGD
//! paper's public simulator's shipped results
//! (`experiments/analysis/expected_results/analysis_allo_discrete.csv` in
//! hkust-adsl/kubernetes-scheduler-simulator), as summarised in the reference note
//! `fgd-experiment.md`.

use gigawatt_core::PolicyKind;

/// `(workload file stem, [(policy, allocation %)])`.
pub const PUBLISHED_ALLOC_AT_130: [(&str, [(PolicyKind, f64); 6]); 4] = [
    (
        "openb_pod_list_default",
        [
            (PolicyKind::Random, 87.47),
            (PolicyKind::DotProduct, 90.85),
            (PolicyKind::GpuClustering, 91.88),
            (PolicyKind::GpuPacking, 92.00),
            (PolicyKind::BestFit, 93.08),
            (PolicyKind::Fgd, 95.39),
        ],
    ),
    (
        "openb_pod_list_gpushare100",
        [
            (PolicyKind::Random, 79.44),
            (PolicyKind::DotProduct, 82.42),
            (PolicyKind::GpuClustering, 82.65),
            (PolicyKind::GpuPacking, 82.57),
            (PolicyKind::BestFit, 85.01),
            (PolicyKind::Fgd, 86.90),
        ],
    ),
    (
        "openb_pod_list_multigpu20",
        [
            (PolicyKind::Random, 88.69),
            (PolicyKind::DotProduct, 92.06),
            (PolicyKind::GpuClustering, 93.56),
            (PolicyKind::GpuPacking, 93.71),
            (PolicyKind::BestFit, 93.93),
            (PolicyKind::Fgd, 95.65),
        ],
    ),
    (
        "openb_pod_list_gpuspec10",
        [
            (PolicyKind::Random, 87.43),
            (PolicyKind::DotProduct, 90.39),
            (PolicyKind::GpuClustering, 92.18),
            (PolicyKind::GpuPacking, 92.46),
            (PolicyKind::BestFit, 93.30),
            (PolicyKind::Fgd, 94.95),
        ],
    ),
];

/// The published allocation % at 130% for a workload file stem and policy, if any.
#[must_use]
pub fn published(workload: &str, policy: PolicyKind) -> Option<f64> {
    PUBLISHED_ALLOC_AT_130
        .iter()
        .find(|(w, _)| *w == workload)
        .and_then(|(_, row)| row.iter().find(|(p, _)| *p == policy).map(|(_, v)| *v))
}
