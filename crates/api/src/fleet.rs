//! Fleet views: sites, racks and nodes with live allocation and power against limits.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A site with its live allocation and reserved power against its budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SiteInfo {
    /// Identity.
    pub id: String,
    /// Name.
    pub name: String,
    /// ISO country code.
    pub country: String,
    /// Region.
    pub region: String,
    /// Certifications held (`hds`, `secnumcloud`, `soc2`, ...).
    pub certifications: Vec<String>,
    /// The law the site's operator answers to (`EU`, `US`, `JP`).
    #[serde(default)]
    pub jurisdiction: String,
    /// Power usage effectiveness.
    pub pue: f64,
    /// IT power budget in force, in watts.
    pub budget_w: u64,
    /// IT power reserved by placed work (GPUs at TDP share, nodes' base power), in watts.
    pub power_w: u64,
    /// `reserved` or `oversubscribed`.
    #[serde(default)]
    pub provisioning: String,
    /// Share admitted beyond the budget at TDP (0 when reserved).
    #[serde(default)]
    pub oversubscription: f64,
    /// What placed work draws with every GPU at its lowest power limit, in watts (on an
    /// oversubscribed site this, not `power_w`, must fit the budget).
    #[serde(default)]
    pub floor_w: u64,
    /// Racks.
    pub racks: u32,
    /// Nodes.
    pub nodes: u32,
    /// Nodes down.
    pub nodes_down: u32,
    /// GPUs.
    pub gpus: u64,
    /// GPU capacity allocated, in thousandths of a GPU.
    pub gpu_allocated_milli: u64,
}

/// A rack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RackInfo {
    /// Identity.
    pub id: String,
    /// Site id.
    pub site: String,
    /// Network domain.
    pub network_domain: String,
    /// Power limit, in watts.
    pub limit_w: u64,
    /// Power reserved, in watts.
    pub power_w: u64,
    /// Nodes.
    pub nodes: u32,
    /// GPUs.
    pub gpus: u64,
    /// GPU capacity allocated, in thousandths.
    pub gpu_allocated_milli: u64,
}

/// A node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// Site id.
    pub site: String,
    /// Rack id.
    pub rack: String,
    /// GPU model, if any.
    pub gpu_model: Option<String>,
    /// Free share of each GPU, in thousandths.
    pub gpu_free_milli: Vec<u32>,
    /// GPU capacity allocated, in thousandths.
    pub gpu_allocated_milli: u64,
    /// CPU allocatable / free, in millicores.
    pub cpu_millicores: u64,
    /// CPU free, in millicores.
    pub cpu_free_millicores: u64,
    /// Memory allocatable, in MiB.
    pub memory_mib: u64,
    /// Memory free, in MiB.
    pub memory_free_mib: u64,
    /// Power reserved on it, in watts.
    pub power_w: u64,
    /// Tasks on it.
    pub tasks: u32,
    /// Whether it takes work.
    pub up: bool,
}

/// Sets a site's IT power budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBudget {
    /// The new budget in watts (for example 8000000 for 8 MW), at most 10 GW.
    #[schema(maximum = 10_000_000_000_u64)]
    pub budget_w: u64,
}

/// Takes a node out of service or brings it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetNodeState {
    /// `false` takes it down (its work is requeued), `true` brings it back.
    pub up: bool,
    /// Why, for the log (at most 512 characters).
    #[serde(default)]
    #[schema(max_length = 512)]
    pub reason: Option<String>,
}
