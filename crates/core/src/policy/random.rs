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

    fn score(&mut self, _state: &ClusterState, _node: &NodeState, _need: &Need, rng: &mut CoreRng) -> Scored {
        // A uniform random score per feasible node makes the maximum a uniform choice
        // (ties have probability ~2^-53).
        Scored { score: rng.random::<f64>(), gpu: None }
    }

    fn bounded_search(&self) -> super::BoundedSearch {
        super::BoundedSearch::Uniform
    }

    fn pick_gpu(&mut self, node: &NodeState, need: &Need, rng: &mut CoreRng) -> Option<u16> {
        // Uniform among the GPUs that fit, drawn once for the chosen node only.
        let fitting = node.gpu_free.iter().filter(|f| **f >= need.milli).count();
        if fitting == 0 {
            return None;
        }
        let k = rng.random_range(0..fitting);
        node.gpu_free.iter().enumerate().filter(|(_, f)| **f >= need.milli).nth(k).map(|(i, _)| i as u16)
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
