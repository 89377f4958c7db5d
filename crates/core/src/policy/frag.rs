//! GPU fragmentation, as defined by the FGD paper (Weng et al., ATC'23, §4).
//!
//! Fragmentation is measured against a *typical workload*: the task shapes that make up
//! most of the demand, each with its frequency. For a node `n` and a typical task `m`,
//! the fragment is the free GPU share of `n` that `m` could not use:
//!
//! * all of the node's free GPU share if `m` needs no GPU, may not use the node's model,
//!   or does not fit the node (GPUs or CPU);
//! * otherwise, the free share on the GPUs whose free share is below `m`'s per-GPU need.
//!
//! The node's fragmentation is the frequency-weighted sum over typical tasks. We keep the
//! weights as integer counts, so the fragmentation *times the total count* is an exact
//! integer: FGD compares differences of it, and exact differences make ties exact.

use gigawatt_units::{GpuMilli, MilliCores};
use serde::{Deserialize, Serialize};

use crate::state::{ClusterState, ModelSet, NodeState};

/// One typical task shape and how often it occurs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TypicalPod {
    /// CPU it needs.
    pub cpu: MilliCores,
    /// GPU share per GPU (0 for none).
    pub milli: GpuMilli,
    /// Number of GPUs.
    pub count: u32,
    /// Allowed GPU models; empty means any.
    pub models: Vec<String>,
    /// How many tasks of the workload had this shape.
    pub occurrences: u64,
}

/// The typical workload: task shapes with their frequencies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypicalPods {
    /// Shapes, most frequent first.
    pub pods: Vec<TypicalPod>,
}

impl TypicalPods {
    /// Builds the typical workload from task shapes the way the FGD simulator does:
    /// group identical shapes, sort by frequency (larger CPU, GPU share, GPU count and
    /// model string first on ties), and keep the most frequent ones until they cover
    /// `coverage_pct` percent of the tasks. Frequencies are renormalised over what is kept.
    #[must_use]
    pub fn from_shapes(
        shapes: impl IntoIterator<Item = (MilliCores, GpuMilli, u32, Vec<String>)>,
        coverage_pct: u64,
    ) -> TypicalPods {
        type Key = (MilliCores, GpuMilli, u32, String);
        let mut counts: std::collections::BTreeMap<Key, (Vec<String>, u64)> =
            std::collections::BTreeMap::new();
        let mut total = 0u64;
        for (cpu, milli, count, models) in shapes {
            total += 1;
            let key = (cpu, milli, count, models.join("|"));
            counts.entry(key).or_insert_with(|| (models, 0)).1 += 1;
        }
        let mut groups: Vec<_> = counts.into_iter().collect();
        // Most frequent first; ties: the larger shape first (the reference sorts by
        // "reverse Less" on CPU, GPU share, GPU count, then model string).
        groups.sort_by(|a, b| b.1.1.cmp(&a.1.1).then_with(|| b.0.cmp(&a.0)));
        let expected = coverage_pct.min(100) * total / 100;
        let mut cum = 0u64;
        let mut pods = Vec::new();
        for ((cpu, milli, count, _), (models, n)) in groups {
            if cum >= expected && !pods.is_empty() {
                break;
            }
            cum += n;
            pods.push(TypicalPod { cpu, milli, count, models, occurrences: n });
        }
        TypicalPods { pods }
    }

    /// Sum of the kept occurrences: the denominator of every frequency.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.pods.iter().map(|p| p.occurrences).sum::<u64>().max(1)
    }

    /// Resolves model names against a cluster, for fast evaluation, with the paper's
    /// fragment definition.
    #[must_use]
    pub fn resolve(&self, state: &ClusterState) -> ResolvedTypical {
        self.resolve_with(state, FragMeasure::Paper)
    }

    /// Like [`TypicalPods::resolve`], with a chosen fragment definition.
    #[must_use]
    pub fn resolve_with(&self, state: &ClusterState, measure: FragMeasure) -> ResolvedTypical {
        let pods = self
            .pods
            .iter()
            .map(|p| {
                let models = if p.models.is_empty() {
                    ModelSet::ANY
                } else {
                    let mut bits = 0u128;
                    for m in &p.models {
                        if let Some(i) = state.model_index(m).filter(|i| *i < 128) {
                            bits |= 1u128 << i;
                        }
                    }
                    ModelSet(bits)
                };
                ResolvedPod { cpu: p.cpu.0, milli: p.milli.0, count: p.count, models, weight: p.occurrences }
            })
            .collect();
        ResolvedTypical { pods, total: self.total(), model_count: state.models.len(), measure }
    }
}

/// Which GPU share of a node counts as fragment for a typical task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FragMeasure {
    /// The FGD paper's: if one task fits (GPU and CPU), the free share on GPUs too small
    /// for it; otherwise all free share.
    #[default]
    Paper,
    /// gigawatt's capacity-aware measure: as the paper's, and beyond it the GPU share that
    /// the node's free CPU could not feed. The free CPU feeds `cpu_free / task CPU` tasks;
    /// GPU share past what those tasks use is stranded and counts as fragment. For tasks
    /// on a share of one GPU the CPU is assumed to stretch by `share_slack_tenths / 10`
    /// (shares are often co-located with lighter CPU use than their request).
    CpuCapacity {
        /// Slack for GPU-sharing tasks, in tenths (13 = 1.3×).
        share_slack_tenths: u64,
    },
}

/// A typical task resolved against a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedPod {
    cpu: u64,
    milli: u32,
    count: u32,
    models: ModelSet,
    weight: u64,
}

/// [`TypicalPods`] resolved against a cluster's model list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTypical {
    pods: Vec<ResolvedPod>,
    total: u64,
    /// Number of models in the cluster when resolved; a change means re-resolve.
    pub model_count: usize,
    measure: FragMeasure,
}

impl ResolvedTypical {
    /// Total weight (divide a weighted fragmentation by this to get milli-GPUs).
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Weighted fragmentation (fragmentation × total weight, an exact integer) of a node
    /// with `cpu_free` CPU, GPU model `model` and free shares `gpu_free`.
    #[must_use]
    pub fn weighted(&self, cpu_free: u64, model: Option<u16>, gpu_free: &[GpuMilli]) -> u64 {
        let idle: u64 = gpu_free.iter().map(|g| u64::from(g.0)).sum();
        if idle == 0 {
            return 0;
        }
        let mut sum = 0u64;
        for p in &self.pods {
            // No GPU needed, model not allowed: the whole idle share is fragment for it.
            let usable_model = p.models == ModelSet::ANY || model.is_some_and(|m| p.models.allows(m));
            let frag = if p.milli == 0 || !usable_model {
                idle
            } else {
                let fitting = gpu_free.iter().filter(|g| g.0 >= p.milli).count() as u32;
                if fitting >= p.count && cpu_free >= p.cpu && model.is_some() {
                    let small: u64 = gpu_free.iter().filter(|g| g.0 < p.milli).map(|g| u64::from(g.0)).sum();
                    match self.measure {
                        FragMeasure::CpuCapacity { share_slack_tenths } if p.cpu > 0 => {
                            let tasks = cpu_free / p.cpu;
                            let slack = if p.milli >= 1000 { 10 } else { share_slack_tenths };
                            let fed =
                                tasks.saturating_mul(u64::from(p.milli) * u64::from(p.count) * slack) / 10;
                            idle - (idle - small).min(fed)
                        }
                        _ => small,
                    }
                } else {
                    idle
                }
            };
            sum += p.weight * frag;
        }
        sum
    }

    /// Weighted fragmentation of a node as it is.
    #[must_use]
    pub fn node(&self, node: &NodeState) -> u64 {
        self.weighted(node.cpu_free.0, node.model, &node.gpu_free)
    }
}

/// Fragmentation of `node` in milli-GPUs against `typical` (not weighted).
#[must_use]
pub fn node_fragmentation(typical: &ResolvedTypical, node: &NodeState) -> f64 {
    typical.node(node) as f64 / typical.total() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(list: &[(u64, u32, u32, u64)]) -> Vec<(MilliCores, GpuMilli, u32, Vec<String>)> {
        list.iter()
            .flat_map(|&(c, m, n, k)| (0..k).map(move |_| (MilliCores(c), GpuMilli(m), n, Vec::new())))
            .collect()
    }

    #[test]
    fn typical_pods_cover_the_requested_share_and_renormalise() {
        let t =
            TypicalPods::from_shapes(shapes(&[(1000, 500, 1, 90), (2000, 1000, 2, 8), (500, 0, 0, 2)]), 95);
        // 90 < 95, so the second group is added; 98 ≥ 95 stops before the third.
        assert_eq!(t.pods.len(), 2);
        assert_eq!(t.total(), 98);
        assert_eq!(t.pods[0].milli, GpuMilli(500));
    }

    #[test]
    fn fragment_counts_only_unusable_share() {
        let t = TypicalPods::from_shapes(shapes(&[(1000, 500, 1, 1)]), 100);
        let r = ResolvedTypical {
            pods: vec![ResolvedPod { cpu: 1000, milli: 500, count: 1, models: ModelSet::ANY, weight: 1 }],
            total: t.total(),
            model_count: 1,
            measure: FragMeasure::Paper,
        };
        let free = [GpuMilli(1000), GpuMilli(300), GpuMilli(0)];
        // The 300 left on GPU 1 cannot hold a 500 task: it is the fragment.
        assert_eq!(r.weighted(4000, Some(0), &free), 300);
        // Without CPU the task fits nowhere: all idle share is fragment.
        assert_eq!(r.weighted(500, Some(0), &free), 1300);
    }

    #[test]
    fn capacity_aware_measure_counts_gpu_the_cpu_cannot_feed() {
        let pod = ResolvedPod { cpu: 4000, milli: 1000, count: 1, models: ModelSet::ANY, weight: 1 };
        let r = ResolvedTypical {
            pods: vec![pod],
            total: 1,
            model_count: 1,
            measure: FragMeasure::CpuCapacity { share_slack_tenths: 13 },
        };
        let free = [GpuMilli(1000), GpuMilli(1000), GpuMilli(1000)];
        // 8 cores feed two 4-core tasks: one of the three free GPUs is stranded.
        assert_eq!(r.weighted(8000, Some(0), &free), 1000);
        // Enough CPU for all three: nothing is stranded, as in the paper's measure.
        assert_eq!(r.weighted(12_000, Some(0), &free), 0);
        let paper = ResolvedTypical { measure: FragMeasure::Paper, ..r.clone() };
        assert_eq!(paper.weighted(8000, Some(0), &free), 0);
    }
}
