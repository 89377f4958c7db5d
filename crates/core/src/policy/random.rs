//! Random-fit: any feasible node, uniformly at random; any fitting GPU, uniformly.
//!
//! The baseline every other policy must beat. Randomness comes only from the RNG the
//! caller passes in, so a seed reproduces a run exactly.

use rand::Rng;

use super::{Policy, Scored};
use crate::CoreRng;
use crate::explain::ScoreTerm;
use crate::state::{ClusterState, Need, NodeState};

/// The random-fit policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomFit;

impl Policy for RandomFit {
    fn name(&self) -> &str {
        "random"
    }

    fn score(&mut self, _state: &ClusterState, node: &NodeState, need: &Need, rng: &mut CoreRng) -> Scored {
        // A uniform random score per feasible node makes the maximum a uniform choice
        // (ties have probability ~2^-53). The GPU is drawn uniformly among those that fit.
        let gpu = if need.gpu_count == 1 && need.milli < gigawatt_units::GpuMilli::WHOLE {
            let fitting: Vec<u16> = node
                .gpu_free
                .iter()
                .enumerate()
                .filter(|(_, f)| **f >= need.milli)
                .map(|(i, _)| i as u16)
                .collect();
            if fitting.is_empty() { None } else { Some(fitting[rng.random_range(0..fitting.len())]) }
        } else {
            None
        };
        Scored { score: rng.random::<f64>(), gpu }
    }

    fn explain(
        &self,
        _state: &ClusterState,
        _node: &NodeState,
        _need: &Need,
        _gpu: Option<u16>,
    ) -> Vec<ScoreTerm> {
        vec![ScoreTerm { name: "uniform_random_draw".into(), value: 1.0 }]
    }
}
