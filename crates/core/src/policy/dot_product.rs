//! Dot-product (Tetris-like): prefer the node whose free capacity is least aligned with
//! the task's demand, which packs tasks into the nodes they fill best.
//!
//! Vectors are (CPU, GPU) normalised by (128 cores, 8 GPUs), the largest node shape of
//! the FGD experiment. Score = `trunc(100 · (1 − free·demand / 2))`, clamped to
//! [0, 100].

use super::{Policy, Scored};
use crate::CoreRng;
use crate::explain::ScoreTerm;
use crate::state::{ClusterState, Need, NodeState};

/// CPU normaliser: 128 cores, in millicores.
pub(crate) const MAX_SPEC_CPU: f64 = 128_000.0;
/// GPU normaliser: 8 GPUs, in thousandths.
pub(crate) const MAX_SPEC_GPU: f64 = 8_000.0;

/// The dot-product policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct DotProduct;

fn dot(node: &NodeState, need: &Need) -> f64 {
    let free = [node.cpu_free.0 as f64 / MAX_SPEC_CPU, f64::from(node.free_total.0) / MAX_SPEC_GPU];
    let ask = [need.cpu.0 as f64 / MAX_SPEC_CPU, f64::from(need.gpu_total().0) / MAX_SPEC_GPU];
    free[0] * ask[0] + free[1] * ask[1]
}

impl Policy for DotProduct {
    fn name(&self) -> &str {
        "dot-product"
    }

    fn score(&mut self, _state: &ClusterState, node: &NodeState, need: &Need, _rng: &mut CoreRng) -> Scored {
        let score = (100.0 * (1.0 - dot(node, need) / 2.0)) as i64;
        Scored { score: score.clamp(0, 100) as f64, gpu: None }
    }

    fn explain(
        &self,
        _state: &ClusterState,
        node: &NodeState,
        need: &Need,
        _gpu: Option<u16>,
    ) -> Vec<ScoreTerm> {
        vec![ScoreTerm { name: "free_dot_demand".into(), value: dot(node, need) }]
    }
}
