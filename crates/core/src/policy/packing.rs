//! GPU packing: fill GPUs that are already shared, then used nodes, and open an empty
//! node last (the smaller the better).
//!
//! Scores, from the reference simulator:
//! 1. the task fits on partly used GPUs: `max(100 − Σ⌊free%⌋/10, 50)`;
//! 2. it needs fully free GPUs on a used node: `max(50 − free GPUs used, 33)`;
//! 3. the node is empty: `max(33 − GPU count, GPU count)`.
//!
//! Tasks without GPUs score 0 everywhere (node order decides).

use gigawatt_units::GpuMilli;

use super::{Policy, Scored};
use crate::CoreRng;
use crate::explain::ScoreTerm;
use crate::state::{ClusterState, Need, NodeState};

/// The GPU-packing policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuPacking;

fn packing_score(node: &NodeState, need: &Need) -> (i64, u8) {
    if need.milli == GpuMilli::ZERO {
        return (0, 0);
    }
    let gpus = i64::from(node.gpu_count());
    if i64::from(node.free_whole) == gpus {
        return ((100 / 3 - gpus).max(gpus), 3);
    }
    let mut order: Vec<usize> = (0..node.gpu_free.len()).collect();
    order.sort_by_key(|&i| node.gpu_free[i]);
    let mut wanted = need.gpu_count;
    let mut fully_free = 0i64;
    let mut used_free_pct = 0i64;
    for i in order {
        if wanted == 0 {
            break;
        }
        let left = node.gpu_free[i];
        if need.milli <= left {
            wanted -= 1;
            if left == GpuMilli::WHOLE {
                fully_free += 1;
            }
            used_free_pct += i64::from(left.0) * 100 / 1000;
        }
    }
    if fully_free > 0 {
        return ((50 - fully_free).max(33), 2);
    }
    ((100 - used_free_pct / 10).max(50), 1)
}

impl Policy for GpuPacking {
    fn name(&self) -> &str {
        "gpu-packing"
    }

    fn score(&mut self, _state: &ClusterState, node: &NodeState, need: &Need, _rng: &mut CoreRng) -> Scored {
        Scored { score: packing_score(node, need).0 as f64, gpu: None }
    }

    fn explain(
        &self,
        _state: &ClusterState,
        node: &NodeState,
        need: &Need,
        _gpu: Option<u16>,
    ) -> Vec<ScoreTerm> {
        let (_, case) = packing_score(node, need);
        vec![ScoreTerm {
            name: "packing_case (1 shared GPUs, 2 used node, 3 empty node)".into(),
            value: f64::from(case),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ModelSet;
    use crate::workload::DataClass;
    use gigawatt_units::{Mebibytes, MilliCores, Watts};

    fn node(free: &[u32]) -> NodeState {
        let gpu_free: Vec<GpuMilli> = free.iter().map(|f| GpuMilli(*f)).collect();
        NodeState {
            name: "n".into(),
            site: 0,
            rack: 0,
            model: Some(0),
            up: true,
            cpu_total: MilliCores(96_000),
            cpu_free: MilliCores(96_000),
            mem_total: Mebibytes(1),
            mem_free: Mebibytes(1),
            free_whole: gpu_free.iter().filter(|g| **g == GpuMilli::WHOLE).count() as u32,
            max_free: gpu_free.iter().copied().max().unwrap_or_default(),
            free_total: gpu_free.iter().copied().sum(),
            gpu_free,
            tasks: 0,
            power: Watts::ZERO,
            floor: Watts::ZERO,
            base_power: Watts::ZERO,
            gpu_tdp: Watts::ZERO,
            gpu_idle: Watts::ZERO,
            gpu_min: Watts::ZERO,
            shapes: Vec::new(),
            version: 0,
            state_hash: 0,
            flavour: crate::state::NO_FLAVOUR,
            reserved: None,
        }
    }

    fn share(m: u32) -> Need {
        Need {
            gpu_count: 1,
            milli: GpuMilli(m),
            models: ModelSet::ANY,
            cpu: MilliCores(0),
            memory: Mebibytes(0),
            data_class: DataClass::Public,
            sites: crate::residency::SiteMask::ALL,
            admit: crate::state::Admit::default(),
        }
    }

    #[test]
    fn the_three_cases_rank_as_documented() {
        assert_eq!(packing_score(&node(&[1000; 8]), &share(500)), (25, 3));
        assert_eq!(packing_score(&node(&[1000, 1000]), &share(500)), (31, 3));
        assert_eq!(packing_score(&node(&[0, 1000]), &share(500)), (49, 2));
        // Uses the GPU with 600 free: 100 − 60/10 = 94.
        assert_eq!(packing_score(&node(&[600, 1000]), &share(500)), (94, 1));
    }
}
