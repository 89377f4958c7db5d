//! Placement policies: given a task and a node that can take it, how good is the fit?
//!
//! Every policy sits behind [`Policy`]. The scheduler filters nodes (hard constraints
//! are never a policy's business), asks the policy to score each feasible node, lets it
//! normalise the scores across nodes if it wants to, and takes the highest score. Ties
//! go to the node that comes first in the cluster's order.
//!
//! The six policies of the FGD paper (Weng et al., USENIX ATC'23) are implemented to the
//! definitions of the paper's public simulator; `docs/fgd-reproduction.md` gives each
//! formula and every place where we deviate.

mod best_fit;
mod clustering;
mod dot_product;
mod fgd;
mod frag;
mod packing;
mod random;

use std::fmt;
use std::str::FromStr;

use gigawatt_units::GpuMilli;

pub use best_fit::BestFit;
pub use clustering::GpuClustering;
pub use dot_product::DotProduct;
pub use fgd::{CAFGD_SHARE_SLACK_TENTHS, Fgd};
pub use frag::{FragMeasure, TypicalPod, TypicalPods, node_fragmentation};
pub use packing::GpuPacking;
pub use random::RandomFit;

use crate::CoreRng;
use crate::explain::ScoreTerm;
use crate::state::{ClusterState, Need, NodeState};

/// How a bounded search picks the candidates a policy scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundedSearch {
    /// The tightest feasible nodes, from the fit index.
    Tightest,
    /// One feasible node drawn uniformly (rejection sampling: draw nodes uniformly until
    /// one fits, which is uniform over the feasible ones).
    Uniform,
}

/// A policy's verdict on one node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Higher is better.
    pub score: f64,
    /// For a task on a single GPU (a share, or one whole GPU), the GPU the policy wants.
    /// `None` lets the scheduler take the default: the fitting GPU with the least free
    /// share (lowest index on ties); several whole GPUs always take the lowest-index
    /// free ones.
    pub gpu: Option<u16>,
}

/// A placement policy. Implementations may keep caches (hence `&mut self`), but their
/// answers must depend only on the state, the task and the RNG.
pub trait Policy: Send + Sync {
    /// The name used on the command line and in explanations.
    fn name(&self) -> &str;

    /// Scores a node that passed every filter for `need`.
    fn score(&mut self, state: &ClusterState, node: &NodeState, need: &Need, rng: &mut CoreRng) -> Scored;

    /// Which nodes the policy is shown when the search is bounded
    /// ([`crate::SchedulerConfig::max_candidates`]). Policies that prefer tight fits take
    /// the tightest feasible nodes; random-fit takes one uniform draw among the feasible.
    fn bounded_search(&self) -> BoundedSearch {
        BoundedSearch::Tightest
    }

    /// Chooses the GPU for a task on a share of one GPU on the node that won, when
    /// [`Scored::gpu`] left it open. The default (`None`) lets the scheduler take the
    /// tightest fitting GPU.
    fn pick_gpu(&mut self, _node: &NodeState, _need: &Need, _rng: &mut CoreRng) -> Option<u16> {
        None
    }

    /// Adjusts the scores of all feasible nodes together (Kubernetes' `NormalizeScore`).
    /// The default leaves them alone.
    fn normalize(&self, _scores: &mut [Scored]) {}

    /// The terms behind the score of the chosen node, for the explanation.
    fn explain(
        &self,
        state: &ClusterState,
        node: &NodeState,
        need: &Need,
        gpu: Option<u16>,
    ) -> Vec<ScoreTerm>;
}

/// The policies gigawatt ships, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    /// Uniformly random feasible node.
    Random,
    /// Tetris-like alignment of free capacity with demand.
    DotProduct,
    /// Prefer partly used GPUs, then used nodes, then small empty nodes.
    GpuPacking,
    /// Keep tasks of the same GPU shape together.
    GpuClustering,
    /// Least leftover capacity.
    BestFit,
    /// Fragmentation gradient descent.
    Fgd,
    /// gigawatt's capacity-aware FGD: also counts GPU share stranded behind exhausted CPU.
    CaFgd,
}

impl PolicyKind {
    /// The paper's six policies and ours, weakest first.
    pub const WITH_OURS: [PolicyKind; 7] = [
        PolicyKind::Random,
        PolicyKind::DotProduct,
        PolicyKind::GpuClustering,
        PolicyKind::GpuPacking,
        PolicyKind::BestFit,
        PolicyKind::Fgd,
        PolicyKind::CaFgd,
    ];

    /// The paper's six policies, in the paper's order (weakest first).
    pub const ALL: [PolicyKind; 6] = {
        let w = PolicyKind::WITH_OURS;
        [w[0], w[1], w[2], w[3], w[4], w[5]]
    };

    /// The command-line name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Random => "random",
            PolicyKind::DotProduct => "dot-product",
            PolicyKind::GpuPacking => "gpu-packing",
            PolicyKind::GpuClustering => "gpu-clustering",
            PolicyKind::BestFit => "best-fit",
            PolicyKind::Fgd => "fgd",
            PolicyKind::CaFgd => "cafgd",
        }
    }

    /// Builds the policy. `typical` is the workload mix FGD measures fragmentation
    /// against; the others ignore it.
    #[must_use]
    pub fn build(self, typical: &TypicalPods) -> Box<dyn Policy> {
        match self {
            PolicyKind::Random => Box::new(RandomFit),
            PolicyKind::DotProduct => Box::new(DotProduct),
            PolicyKind::GpuPacking => Box::new(GpuPacking),
            PolicyKind::GpuClustering => Box::new(GpuClustering),
            PolicyKind::BestFit => Box::new(BestFit),
            PolicyKind::Fgd => Box::new(Fgd::new(typical.clone())),
            PolicyKind::CaFgd => Box::new(Fgd::capacity_aware(typical.clone())),
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown policy name; the message lists the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown policy `{0}`; known policies: random, dot-product, gpu-packing, gpu-clustering, best-fit, fgd, cafgd"
)]
pub struct UnknownPolicy(pub String);

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Ok(match norm.as_str() {
            "random" | "random-fit" => PolicyKind::Random,
            "dot-product" | "dotprod" | "dot" => PolicyKind::DotProduct,
            "gpu-packing" | "packing" => PolicyKind::GpuPacking,
            "gpu-clustering" | "clustering" => PolicyKind::GpuClustering,
            "best-fit" | "bestfit" => PolicyKind::BestFit,
            "fgd" => PolicyKind::Fgd,
            "cafgd" | "ca-fgd" | "capacity-aware-fgd" => PolicyKind::CaFgd,
            _ => return Err(UnknownPolicy(s.to_string())),
        })
    }
}

/// The default GPU for a single-GPU task: the fitting GPU with the least free share,
/// lowest index on ties.
#[must_use]
pub fn tightest_gpu(node: &NodeState, milli: GpuMilli) -> Option<u16> {
    node.gpu_free
        .iter()
        .enumerate()
        .filter(|(_, f)| **f >= milli)
        .min_by_key(|(i, f)| (**f, *i))
        .map(|(i, _)| i as u16)
}
