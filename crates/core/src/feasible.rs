//! Refusing at submission what can never run, as `sbatch` answers "Requested node
//! configuration is not available": a GPU model no node of the fleet has, and a gang
//! whose topology no node, rack or network domain can hold even empty.
//!
//! The gang check sums, per topology group, how many of the gang's tasks each eligible
//! node could hold when empty (eligible: at a site the data class may use, of an
//! allowed model). Its result depends only on the fleet and the task's shape, so it is
//! kept per shape and computed again only when nodes join or leave: an arrival costs a
//! hash lookup, not a walk of the fleet.

use gigawatt_units::GpuMilli;

use crate::explain::RejectWhy;
use crate::scheduler::Scheduler;
use crate::state::{ModelSet, Need, NodeState};
use crate::workload::{Shape, Topology};

/// A task's shape as far as fitting an empty node goes, with the topology asked.
pub(crate) type FitKey = (u32, u32, u64, u64, u128, u128, Topology);

/// How many tasks of `need` an empty `node` holds.
fn tasks_on(node: &NodeState, need: &Need) -> u64 {
    let by_gpu = match (need.gpu_count, need.milli) {
        (0, _) => u64::MAX,
        (_, m) if m == GpuMilli::ZERO => u64::MAX,
        (1, m) if m < GpuMilli::WHOLE => u64::from(node.gpu_count()) * u64::from(1000 / m.0.max(1)),
        (g, _) => u64::from(node.gpu_count() / g),
    };
    let by_cpu = node.cpu_total.0.checked_div(need.cpu.0).unwrap_or(u64::MAX);
    let by_mem = node.mem_total.0.checked_div(need.memory.0).unwrap_or(u64::MAX);
    by_gpu.min(by_cpu).min(by_mem)
}

impl Scheduler {
    /// Refuses work that asks only for GPU models no node of the fleet has, or a gang
    /// that no group of its topology could hold even empty.
    pub(crate) fn check_feasible(
        &mut self,
        need: &Need,
        names: &[String],
        shape: Shape,
    ) -> Result<(), RejectWhy> {
        if !names.is_empty() && need.gpu_count > 0 && need.models.0 == 0 {
            return Err(RejectWhy::ModelNotInFleet {
                models: names.to_vec(),
                fleet: self.state.models.iter().map(|m| m.id.clone()).collect(),
            });
        }
        let Shape::Gang { tasks, topology } = shape else { return Ok(()) };
        let key: FitKey =
            (need.gpu_count, need.milli.0, need.cpu.0, need.memory.0, need.sites.0, need.models.0, topology);
        if self.gang_room.0 != self.state.nodes.len() {
            self.gang_room = (self.state.nodes.len(), rustc_hash::FxHashMap::default());
        }
        let most = match self.gang_room.1.get(&key) {
            Some(m) => *m,
            None => {
                let m = self.most_tasks(need, topology);
                self.gang_room.1.insert(key, m);
                m
            }
        };
        if u64::from(tasks) <= most {
            return Ok(());
        }
        let group = match topology {
            Topology::SameNode => "node",
            Topology::SameRack => "rack",
            Topology::SameDomain => "network domain",
            Topology::Any => "fleet",
        };
        Err(RejectWhy::NeverFits {
            message: format!(
                "a gang of {tasks} tasks ({} GPU(s) each) on the {topology}: the {group} that holds the most \
                 where {} data may run holds {most} such tasks even empty; ask for fewer tasks or a looser topology",
                need.gpu_count, need.data_class
            ),
        })
    }

    /// The most tasks of `need` one group of `topology` holds when empty.
    fn most_tasks(&self, need: &Need, topology: Topology) -> u64 {
        let models: ModelSet = need.models;
        let mut per_group: rustc_hash::FxHashMap<u32, u64> = rustc_hash::FxHashMap::default();
        let mut best = 0u64;
        for (i, n) in self.state.nodes.iter().enumerate() {
            if !need.sites.contains(n.site) {
                continue;
            }
            if need.gpu_count > 0 && !n.model.is_some_and(|m| models.allows(m)) {
                continue;
            }
            let t = tasks_on(n, need);
            let group = match topology {
                Topology::SameNode => i as u32,
                Topology::SameRack => n.rack,
                Topology::SameDomain => self.state.racks[n.rack as usize].domain,
                Topology::Any => 0,
            };
            let sum = per_group.entry(group).or_default();
            *sum = sum.saturating_add(t);
            best = best.max(*sum);
        }
        best
    }
}
