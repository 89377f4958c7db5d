//! Workload inflation ("tune") of the FGD experiment.
//!
//! The original pods are sorted by name and shuffled with the seed. Then, until the next
//! clone would take the total GPU demand past `ratio × cluster GPU capacity`, a pod is
//! drawn uniformly from the name-sorted originals and a clone of it is appended after all
//! the originals. The reference's overshoot test adds only the clone's *per-GPU* share
//! while the running total adds share × count; we keep that quirk so that the arrived
//! load matches the paper's.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::openb::OpenbPod;

/// One arrival of the inflated workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Index into the original pod list.
    pub pod: usize,
    /// `Some(i)` for the i-th clone, `None` for an original.
    pub clone: Option<u32>,
}

/// The arrival sequence for one seed.
#[must_use]
pub fn inflate(pods: &[OpenbPod], capacity_milli: u64, ratio: f64, rng: &mut impl Rng) -> Vec<Arrival> {
    let mut sorted: Vec<usize> = (0..pods.len()).collect();
    sorted.sort_by(|a, b| pods[*a].name.cmp(&pods[*b].name));
    let mut order = sorted.clone();
    order.shuffle(rng);
    let mut out: Vec<Arrival> = order.into_iter().map(|pod| Arrival { pod, clone: None }).collect();
    let target = ratio * capacity_milli as f64;
    let mut total: u64 = pods.iter().map(|p| u64::from(p.gpu.total().0)).sum();
    if sorted.is_empty() {
        return out;
    }
    let mut i = 0u32;
    loop {
        let pod = sorted[rng.random_range(0..sorted.len())];
        let per_gpu = u64::from(pods[pod].gpu.milli_per_gpu.0);
        if (total + per_gpu) as f64 > target {
            break;
        }
        total += u64::from(pods[pod].gpu.total().0);
        out.push(Arrival { pod, clone: Some(i) });
        i += 1;
        // A workload of CPU-only pods never reaches the target; stop at a sane size.
        if i as usize > 100 * sorted.len() + 1_000_000 {
            break;
        }
    }
    out
}
