//! Best-fit: the node left with the least free capacity after placement, CPU and GPU
//! weighted equally and normalised by (128 cores, 8 GPUs).
//!
//! Raw score = `trunc(100 · (1 − leftover))`; the scores of all feasible nodes are then
//! min-max normalised to 0..=100 with integer division, as the reference simulator's
//! `NormalizeScore` does (which creates ties, broken by node order).

use super::dot_product::{MAX_SPEC_CPU, MAX_SPEC_GPU};
use super::{Policy, Scored};
use crate::CoreRng;
use crate::explain::ScoreTerm;
use crate::state::{ClusterState, Need, NodeState};

/// The best-fit policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct BestFit;

fn leftover(node: &NodeState, need: &Need) -> f64 {
    let cpu = node.cpu_free.0 as f64 - need.cpu.0 as f64;
    let gpu = f64::from(node.free_total.0) - f64::from(need.gpu_total().0);
    0.5 * cpu / MAX_SPEC_CPU + 0.5 * gpu / MAX_SPEC_GPU
}

impl Policy for BestFit {
    fn name(&self) -> &str {
        "best-fit"
    }

    fn score(&mut self, _state: &ClusterState, node: &NodeState, need: &Need, _rng: &mut CoreRng) -> Scored {
        Scored { score: ((1.0 - leftover(node, need)) * 100.0) as i64 as f64, gpu: None }
    }

    fn normalize(&self, scores: &mut [Scored]) {
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for s in scores.iter() {
            lo = lo.min(s.score as i64);
            hi = hi.max(s.score as i64);
        }
        for s in scores.iter_mut() {
            s.score = if hi == lo { 0.0 } else { ((s.score as i64 - lo) * 100 / (hi - lo)) as f64 };
        }
    }

    fn explain(
        &self,
        _state: &ClusterState,
        node: &NodeState,
        need: &Need,
        _gpu: Option<u16>,
    ) -> Vec<ScoreTerm> {
        vec![ScoreTerm { name: "normalised_leftover".into(), value: leftover(node, need) }]
    }
}
