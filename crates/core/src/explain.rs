//! Machine-readable reasons that a person can read.
//!
//! Every decision the core makes carries one of these. They serialise to JSON for the
//! API and print as one plain sentence for the CLI, in the manner of Kubernetes'
//! "0/N nodes are available" but with counts for every reason.

use std::collections::BTreeMap;
use std::fmt;

use gigawatt_units::{GpuMilli, Watts};
use serde::{Deserialize, Serialize};

/// Why one node cannot take one task. Declared in the order the filter checks them; a
/// node is counted under the first reason that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The node is down, drained or removed.
    NodeDown,
    /// The node's site may not hold the workload's data class.
    DataResidency,
    /// The node has no GPU of an allowed model (or no GPU at all).
    GpuModelNotAllowed,
    /// Not enough free GPU (whole GPUs, or a GPU with enough free share).
    InsufficientGpu,
    /// Not enough free CPU.
    InsufficientCpu,
    /// Not enough free memory.
    InsufficientMemory,
    /// Placing the task would take the rack over its power limit.
    RackPowerLimit,
    /// Placing the task would take the site over its IT power budget.
    SitePowerBudget,
    /// The node is reserved for a gang and the workload's time limit does not end before
    /// the reservation starts (or it has none).
    Reserved,
    /// The node's flavour (or site power) is outside what the tenant's quota admits.
    Quota,
    /// The node fits on its own, but no group of nodes satisfies the gang's topology.
    Topology,
}

impl Reason {
    /// The words used in explanations.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Reason::NodeDown => "node down",
            Reason::DataResidency => "data residency",
            Reason::GpuModelNotAllowed => "GPU model not allowed",
            Reason::InsufficientGpu => "insufficient GPU",
            Reason::InsufficientCpu => "insufficient CPU",
            Reason::InsufficientMemory => "insufficient memory",
            Reason::RackPowerLimit => "rack power limit",
            Reason::SitePowerBudget => "site power budget",
            Reason::Reserved => "reserved for a gang",
            Reason::Quota => "outside the tenant's quota",
            Reason::Topology => "gang topology",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Why a workload is still waiting: how many nodes were turned away, and for what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWhy {
    /// Nodes considered.
    pub nodes_total: u32,
    /// Nodes that could take one task on their own.
    pub nodes_fit: u32,
    /// Nodes turned away, by first failing reason (counts sum to `nodes_total - nodes_fit`,
    /// except [`Reason::Topology`], which counts nodes that fit but found no partners).
    pub rejected: BTreeMap<Reason, u32>,
    /// Tasks that were placed before the rest could not be (services only).
    pub tasks_placed: u32,
    /// Tasks still waiting.
    pub tasks_pending: u32,
    /// Quota holds it back (its tenant's, or its cohort's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Box<crate::quota::QuotaWhy>>,
    /// Work of the same shape is ahead of it in line (by priority and fair share), and
    /// that work does not fit either: it waits behind this workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<crate::WorkloadId>,
}

impl PendingWhy {
    /// Counts one rejected node.
    pub fn count(&mut self, reason: Reason) {
        *self.rejected.entry(reason).or_insert(0) += 1;
    }

    /// The fields of the detail a tenant does not see: node counts (they would tell the
    /// fleet's size) and the work ahead (it may be another tenant's).
    pub const FLEET_FIELDS: [&'static str; 4] = ["nodes_total", "nodes_fit", "rejected", "behind"];

    /// The reason as the waiting workload's tenant reads it: the reasons nodes were turned
    /// away, weightiest first, with no node counts and no id of other work. Operators read
    /// the full form (`Display`).
    #[must_use]
    pub fn for_tenant(&self) -> String {
        if let Some(q) = &self.quota {
            return format!("waiting: {q}");
        }
        if self.behind.is_some() {
            return "waiting behind work that asks for the same and is ahead in line".into();
        }
        let mut reasons: Vec<_> = self.rejected.iter().collect();
        reasons.sort_by_key(|(r, n)| (std::cmp::Reverse(**n), **r));
        let mut out = "not placed yet".to_string();
        for (i, (reason, _)) in reasons.into_iter().enumerate() {
            out.push_str(if i == 0 { ": " } else { ", " });
            out.push_str(reason.describe());
        }
        if self.tasks_placed > 0 {
            out.push_str(&format!(
                " ({} of {} tasks placed)",
                self.tasks_placed,
                self.tasks_placed + self.tasks_pending
            ));
        }
        out
    }

    /// The most common reason, if any (the one a person should look at first).
    #[must_use]
    pub fn top_reason(&self) -> Option<Reason> {
        self.rejected.iter().max_by_key(|(r, n)| (**n, std::cmp::Reverse(**r))).map(|(r, _)| *r)
    }
}

impl fmt::Display for PendingWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(q) = &self.quota {
            return write!(f, "waiting: {q}");
        }
        if let Some(b) = self.behind {
            return write!(f, "waiting behind {b}, which asks for the same and is ahead in line");
        }
        write!(f, "{}/{} nodes fit", self.nodes_fit, self.nodes_total)?;
        let mut reasons: Vec<_> = self.rejected.iter().collect();
        // Largest count first, then declaration order, so the sentence reads by importance.
        reasons.sort_by_key(|(r, n)| (std::cmp::Reverse(**n), **r));
        for (i, (reason, n)) in reasons.into_iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { ", " })?;
            write!(f, "{n} {reason}")?;
        }
        if self.tasks_placed > 0 {
            write!(f, " ({} of {} tasks placed)", self.tasks_placed, self.tasks_placed + self.tasks_pending)?;
        }
        Ok(())
    }
}

/// One term of a placement score, e.g. `fragmentation_delta = -120.5`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreTerm {
    /// What the term measures.
    pub name: String,
    /// Its value.
    pub value: f64,
}

/// Why a task landed where it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskWhy {
    /// Task index (rank for gangs, replica for services).
    pub task: u32,
    /// Chosen node.
    pub node: String,
    /// Chosen GPU indices on that node, with the share taken on each.
    pub gpus: Vec<(u16, GpuMilli)>,
    /// The winning score.
    pub score: f64,
    /// What the score is made of.
    pub terms: Vec<ScoreTerm>,
    /// How many nodes could have taken the task.
    pub candidates: u32,
    /// Power the placement reserved on the node.
    pub power: Watts,
}

/// Why a workload was placed as it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacedWhy {
    /// The policy that chose.
    pub policy: String,
    /// One entry per task placed by this decision.
    pub tasks: Vec<TaskWhy>,
}

impl fmt::Display for PlacedWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.tasks.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "task {} on {} (GPUs {:?}) by {}: score {:.3} among {} candidates",
                t.task,
                t.node,
                t.gpus.iter().map(|(g, _)| *g).collect::<Vec<_>>(),
                self.policy,
                t.score,
                t.candidates
            )?;
        }
        Ok(())
    }
}

/// Why a workload can never run as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RejectWhy {
    /// The demand is malformed (e.g. 2 GPUs at 500 thousandths each).
    InvalidDemand {
        /// What is wrong and what would be right.
        message: String,
    },
    /// An allowed GPU model is not in the fleet's catalog.
    UnknownGpuModel {
        /// The unknown name.
        model: String,
        /// Models the fleet knows.
        known: Vec<String>,
    },
    /// No node of the fleet has a GPU of any model the workload allows (the catalog
    /// knows them).
    ModelNotInFleet {
        /// The models asked for.
        models: Vec<String>,
        /// The models the fleet has.
        fleet: Vec<String>,
    },
    /// No site in the fleet may hold the data under its effective policy.
    NoSiteAllowed {
        /// The data class.
        data_class: String,
        /// The effective policy, every layer with its source ("HDS, in EU/EEA
        /// (operator); in US (tenant)").
        #[serde(default, skip_serializing_if = "String::is_empty")]
        policy: String,
        /// Why each site is excluded, one sentence per site.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        excluded: Vec<String>,
    },
    /// No node in the fleet could ever hold one task, even empty.
    NeverFits {
        /// Why, for the closest nodes.
        message: String,
    },
    /// The id is already in use.
    DuplicateId,
    /// The scheduler is configured to drop what does not fit at once (the trace replay
    /// protocol of the FGD paper), and this did not fit.
    Unschedulable {
        /// Why it did not fit.
        why: PendingWhy,
    },
}

impl fmt::Display for RejectWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectWhy::InvalidDemand { message } => write!(f, "invalid demand: {message}"),
            RejectWhy::UnknownGpuModel { model, known } => {
                write!(f, "unknown GPU model `{model}`; this fleet has: {}", known.join(", "))
            }
            RejectWhy::ModelNotInFleet { models, fleet } => write!(
                f,
                "no node of this fleet has a GPU of model {}; it has {}",
                models.join(" or "),
                if fleet.is_empty() { "no GPUs".to_string() } else { fleet.join(", ") }
            ),
            RejectWhy::NoSiteAllowed { data_class, policy, excluded } => {
                write!(f, "no site in the fleet may hold {data_class} data")?;
                if !policy.is_empty() {
                    write!(f, " under {policy}")?;
                }
                if !excluded.is_empty() {
                    write!(f, ": {}", excluded.join("; "))?;
                }
                Ok(())
            }
            RejectWhy::NeverFits { message } => write!(f, "can never fit: {message}"),
            RejectWhy::DuplicateId => f.write_str("a workload with this id already exists"),
            RejectWhy::Unschedulable { why } => write!(f, "unschedulable, dropped: {why}"),
        }
    }
}

/// Why running work was stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PreemptWhy {
    /// A site's power budget fell below what was reserved; lowest priority goes first.
    PowerBudget {
        /// The site.
        site: String,
        /// The new budget.
        budget: Watts,
        /// Power reserved before the cut (on an oversubscribed site: the floor, what its
        /// work draws with every GPU at its lowest power limit).
        reserved: Watts,
        /// Whether `reserved` is the floor of an oversubscribed site rather than TDPs.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        at_minimum: bool,
    },
    /// A node it ran on was removed or lost; the whole workload goes back to the queue.
    NodeLost {
        /// The node.
        node: String,
    },
    /// The site it ran on may no longer hold its data under the residency rules in force
    /// (a certification lost, a rule narrowed); the whole workload goes back to the queue
    /// and waits for an allowed site.
    Residency {
        /// The site.
        site: String,
        /// The rule and the term the site breaks.
        why: String,
    },
    /// Its tenant was borrowing quota that another tenant, within its nominal quota,
    /// needed back.
    Reclaim {
        /// The workload that was owed the room.
        by: crate::WorkloadId,
        /// Its tenant.
        tenant: String,
    },
    /// Its tenant borrowed more, for its weight, than the tenant of `by`, which waited
    /// as a borrower too: fair sharing moved the room (Kueue's fair-sharing preemption).
    FairShare {
        /// The workload that took the room.
        by: crate::WorkloadId,
        /// Its tenant.
        tenant: String,
    },
    /// A new billing period began and its tenant's running work commits more energy
    /// than its quota for the period: the youngest work goes until the rest fits.
    EnergyQuota {
        /// The tenant.
        tenant: String,
        /// What its running work committed for the new period, before this preemption.
        committed: gigawatt_units::WattHours,
        /// Its quota per period.
        limit: gigawatt_units::WattHours,
    },
    /// A higher-priority workload needed the room.
    Priority {
        /// The workload that took the room.
        by: crate::WorkloadId,
        /// Its class.
        class: crate::PriorityClass,
    },
}

impl PreemptWhy {
    /// The reason in words, naming nothing of another tenant: no workload id, class or
    /// tenant of whoever took the room. This is what the preempted workload's tenant
    /// reads; [`PreemptWhy::preemptor`] adds who, for operators.
    #[must_use]
    pub fn without_others(&self) -> String {
        match self {
            PreemptWhy::Priority { .. } => "preempted by higher-priority work; requeued whole".to_string(),
            PreemptWhy::FairShare { .. } => {
                "its tenant borrowed more quota, for its fair-share weight, than \
                                             another tenant waiting to borrow; requeued whole"
                    .to_string()
            }
            PreemptWhy::Reclaim { .. } => "its tenant was borrowing quota that another tenant needed back \
                                           (within its nominal quota); requeued whole"
                .to_string(),
            PreemptWhy::PowerBudget { .. }
            | PreemptWhy::NodeLost { .. }
            | PreemptWhy::Residency { .. }
            | PreemptWhy::EnergyQuota { .. } => self.to_string(),
        }
    }

    /// Who took the room, when another workload did: `w-5 (latency-critical)` or
    /// `w-5 of tenant acme`. For operators only.
    #[must_use]
    pub fn preemptor(&self) -> Option<String> {
        match self {
            PreemptWhy::Priority { by, class } => Some(format!("{by} ({class})")),
            PreemptWhy::FairShare { by, tenant } | PreemptWhy::Reclaim { by, tenant } => {
                Some(format!("{by} of tenant {tenant}"))
            }
            PreemptWhy::PowerBudget { .. }
            | PreemptWhy::NodeLost { .. }
            | PreemptWhy::Residency { .. }
            | PreemptWhy::EnergyQuota { .. } => None,
        }
    }

    /// The fields of its serialized form that describe another tenant's work (removed
    /// from what a tenant reads).
    pub const OTHERS_FIELDS: [&'static str; 3] = ["by", "class", "tenant"];
}

impl fmt::Display for PreemptWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreemptWhy::PowerBudget { site, budget, reserved, at_minimum: false } => write!(
                f,
                "site {site} power budget cut to {budget} while {reserved} was reserved; lowest priority preempted first"
            ),
            PreemptWhy::PowerBudget { site, budget, reserved, at_minimum: true } => write!(
                f,
                "site {site} power budget cut to {budget} while its work needed {reserved} even with every GPU \
                 at its lowest power limit; lowest priority preempted first"
            ),
            PreemptWhy::NodeLost { node } => write!(f, "node {node} was lost; requeued whole"),
            PreemptWhy::Residency { site, why } => {
                write!(f, "site {site} may no longer hold its data ({why}); requeued whole")
            }
            PreemptWhy::Priority { by, class } => write!(f, "preempted for {by} ({class})"),
            PreemptWhy::EnergyQuota { tenant, committed, limit } => write!(
                f,
                "a new billing period began and the running work of tenant {tenant} commits {committed}, over its energy quota of {limit}; its youngest work is requeued until the rest fits"
            ),
            PreemptWhy::FairShare { by, tenant } => write!(
                f,
                "its tenant borrowed more quota, for its fair-share weight, than tenant {tenant}, whose {by} waited for quota to borrow; requeued whole"
            ),
            PreemptWhy::Reclaim { by, tenant } => write!(
                f,
                "its tenant was borrowing quota that tenant {tenant} needs back for {by} (within its nominal quota); requeued whole"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_reads_like_a_sentence() {
        let mut why = PendingWhy { nodes_total: 1213, ..PendingWhy::default() };
        for _ in 0..812 {
            why.count(Reason::InsufficientGpu);
        }
        for _ in 0..301 {
            why.count(Reason::GpuModelNotAllowed);
        }
        for _ in 0..100 {
            why.count(Reason::RackPowerLimit);
        }
        assert_eq!(
            why.to_string(),
            "0/1213 nodes fit: 812 insufficient GPU, 301 GPU model not allowed, 100 rack power limit"
        );
        assert_eq!(why.top_reason(), Some(Reason::InsufficientGpu));
    }
}
