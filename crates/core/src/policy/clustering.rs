//! GPU clustering: keep tasks of the same GPU shape (a share, 1 GPU, 2 GPUs, …)
//! together, and among nodes of the same standing prefer the more allocated one.
//!
//! Score = `25 · (8000 − free GPU share) / 8000` (integer arithmetic) plus 75 if the
//! node only runs tasks of this shape, 50 if it runs this shape among others, 25 if it
//! runs no GPU task at all, 0 otherwise. Tasks without GPUs score 0 everywhere.

use super::{Policy, Scored};
use crate::CoreRng;
use crate::explain::ScoreTerm;
use crate::state::{ClusterState, Need, NodeState, shape_tag};

/// The GPU-clustering policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuClustering;

fn clustering_score(node: &NodeState, need: &Need) -> (i64, i64) {
    let Some(tag) = shape_tag(need.gpu_count, need.milli) else {
        return (0, 0);
    };
    let base = 100 / 4 * (8000 - i64::from(node.free_total.0)) / 8000;
    let same = node.shapes.iter().find(|(t, _)| *t == tag).map_or(0, |(_, n)| *n);
    let bonus = if same > 0 {
        if node.shapes.len() == 1 { 75 } else { 50 }
    } else if node.shapes.is_empty() {
        25
    } else {
        0
    };
    (base + bonus, bonus)
}

impl Policy for GpuClustering {
    fn name(&self) -> &str {
        "gpu-clustering"
    }

    fn score(&mut self, _state: &ClusterState, node: &NodeState, need: &Need, _rng: &mut CoreRng) -> Scored {
        Scored { score: clustering_score(node, need).0 as f64, gpu: None }
    }

    fn explain(
        &self,
        _state: &ClusterState,
        node: &NodeState,
        need: &Need,
        _gpu: Option<u16>,
    ) -> Vec<ScoreTerm> {
        let (score, bonus) = clustering_score(node, need);
        vec![
            ScoreTerm { name: "same_shape_bonus".into(), value: bonus as f64 },
            ScoreTerm { name: "allocation_term".into(), value: (score - bonus) as f64 },
        ]
    }
}
