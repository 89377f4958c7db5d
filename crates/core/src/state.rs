//! The cluster as the scheduler sees it: free capacity and reserved power, with dense
//! indices for speed.
//!
//! [`ClusterState`] is built from a validated [`Fleet`] and changed only through
//! [`ClusterState::allocate`] and [`ClusterState::release`], which keep every counter
//! (per-GPU free share, CPU, memory, node/rack/site power) exact. Power is integer
//! watts, so releasing a task restores the state bit for bit.
//!
//! Power model for reservations: a node that hosts at least one task reserves its base
//! power plus, for each GPU, its idle draw and the allocated share of the rest of its TDP
//! (`idle + share × (TDP − idle)`: a whole GPU reserves its TDP, a free one its idle
//! draw). Idle nodes reserve nothing: they are assumed suspended, as Slurm's power saving
//! does.
//!
//! Each site is provisioned in one of two modes (`gigawatt_fleet::Provisioning`):
//!
//! * **reserved**: the reservation of a rack or site never exceeds its limit. Since no
//!   GPU draws more than its reservation, nothing ever needs a power limit.
//! * **oversubscribed** with ratio `r`: the reservation may reach `(1 + r) ×` the limit,
//!   but the **floor** (what the same work draws with every allocated GPU at its lowest
//!   power limit) never exceeds the limit. The power manager (`gigawatt-power`) lowers
//!   GPU power limits so that the real draw stays under every limit; the floor is the
//!   proof that it always can.

use std::collections::HashMap;

use gigawatt_fleet::{Fleet, SiteLaw};
use gigawatt_units::{GpuMilli, Mebibytes, MilliCores, Timestamp, Watts};
use serde::Serialize;

use crate::error::CoreError;
use crate::explain::Reason;
use crate::index::FitIndex;
use crate::residency::{self, SiteMask};
use crate::workload::{DataClass, WorkloadId};

/// A node's position in the scheduler's order. Lower indices win ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NodeIdx(pub u32);

/// A GPU model as the core knows it: an interned id and its power figures.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// Catalog id.
    pub id: String,
    /// Thermal design power, what one fully allocated GPU reserves.
    pub tdp: Watts,
    /// Draw of a powered GPU doing nothing.
    #[serde(default)]
    pub idle: Watts,
    /// Lowest settable power limit (zero when unknown: the floor is then the TDP).
    #[serde(default)]
    pub min_limit: Watts,
}

impl ModelInfo {
    /// The figures of a catalog model.
    #[must_use]
    pub fn of(spec: &gigawatt_fleet::GpuSpec) -> ModelInfo {
        ModelInfo { id: spec.id.clone(), tdp: spec.tdp, idle: spec.idle, min_limit: spec.min_power_limit }
    }
}

/// One node's capacity and what is left of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeState {
    /// Name from the fleet.
    pub name: String,
    /// Index into [`ClusterState::sites`].
    pub site: u32,
    /// Index into [`ClusterState::racks`].
    pub rack: u32,
    /// Index into [`ClusterState::models`], `None` for CPU-only nodes.
    pub model: Option<u16>,
    /// Whether the node accepts work.
    pub up: bool,
    /// Allocatable CPU.
    pub cpu_total: MilliCores,
    /// Free CPU.
    pub cpu_free: MilliCores,
    /// Allocatable memory.
    pub mem_total: Mebibytes,
    /// Free memory.
    pub mem_free: Mebibytes,
    /// Free share of each GPU, by GPU index.
    pub gpu_free: Vec<GpuMilli>,
    /// Tasks running here.
    pub tasks: u32,
    /// Power reserved now.
    pub power: Watts,
    /// What the node draws at most with every allocated GPU at its lowest power limit.
    pub floor: Watts,
    /// Base (non-GPU) power when busy.
    pub base_power: Watts,
    /// TDP of one GPU.
    pub gpu_tdp: Watts,
    /// Idle draw of one GPU (at most the TDP).
    pub gpu_idle: Watts,
    /// Lowest power limit of one GPU (between idle and TDP).
    pub gpu_min: Watts,
    /// Number of completely free GPUs (cached).
    pub free_whole: u32,
    /// Largest free share on a single GPU (cached).
    pub max_free: GpuMilli,
    /// Total free GPU share (cached).
    pub free_total: GpuMilli,
    /// Tasks on this node by GPU shape tag (see [`shape_tag`]): `(tag, count)`, sorted.
    pub shapes: Vec<(u32, u32)>,
    /// Bumped on every change, so that policies can cache per-node work.
    pub version: u64,
    /// Hash of what scores depend on (model, free CPU, free memory, sorted free GPU
    /// shares), recomputed on every change: nodes with equal hashes score alike, which
    /// lets policies memoise across nodes.
    pub state_hash: u64,
    /// The quota flavour the node belongs to ([`NO_FLAVOUR`] when none).
    pub flavour: u8,
    /// A reservation for a gang: from when, and for which workload. Other work may use
    /// the node only if its time limit ends by then (backfill).
    pub reserved: Option<(Timestamp, WorkloadId)>,
}

/// [`NodeState::flavour`] of a node no flavour matches.
pub const NO_FLAVOUR: u8 = u8::MAX;

/// The GPU shape of a task, for policies that group alike tasks: `Some(0)` for a share
/// of one GPU, `Some(n)` for `n` whole GPUs, `None` for a task without GPU.
#[must_use]
pub fn shape_tag(gpu_count: u32, milli: GpuMilli) -> Option<u32> {
    if gpu_count == 0 || milli == GpuMilli::ZERO {
        None
    } else if gpu_count == 1 && milli < GpuMilli::WHOLE {
        Some(0)
    } else {
        Some(gpu_count)
    }
}

fn pick_tag(gpus: &GpuPick) -> Option<u32> {
    match gpus.as_slice() {
        [] => None,
        [(_, m)] => shape_tag(1, *m),
        many => Some(many.len() as u32),
    }
}

impl NodeState {
    /// An empty node. `gpu` gives the GPU model's power figures (`None` for a CPU-only
    /// node); a minimum limit of zero (unknown) is read as the TDP, and an idle draw
    /// above the TDP as the TDP, so that the floor never undercounts.
    fn new(
        name: String,
        (site, rack): (u32, u32),
        model: Option<u16>,
        gpu: Option<&ModelInfo>,
        gpu_count: u32,
        (cpu, memory): (MilliCores, Mebibytes),
        base_power: Watts,
    ) -> NodeState {
        let tdp = gpu.map_or(Watts::ZERO, |g| g.tdp);
        let idle = gpu.map_or(Watts::ZERO, |g| g.idle.min(tdp));
        let min = gpu.map_or(Watts::ZERO, |g| if g.min_limit == Watts::ZERO { tdp } else { g.min_limit });
        let mut node = NodeState {
            name,
            site,
            rack,
            model,
            up: true,
            cpu_total: cpu,
            cpu_free: cpu,
            mem_total: memory,
            mem_free: memory,
            gpu_free: vec![GpuMilli::WHOLE; gpu_count as usize],
            tasks: 0,
            power: Watts::ZERO,
            floor: Watts::ZERO,
            base_power,
            gpu_tdp: tdp,
            gpu_idle: idle,
            gpu_min: min.clamp(idle, tdp),
            free_whole: 0,
            max_free: GpuMilli::ZERO,
            free_total: GpuMilli::ZERO,
            shapes: Vec::new(),
            version: 0,
            state_hash: 0,
            flavour: NO_FLAVOUR,
            reserved: None,
        };
        node.refresh();
        node
    }

    fn add_shape(&mut self, tag: Option<u32>) {
        let Some(tag) = tag else { return };
        match self.shapes.binary_search_by_key(&tag, |(t, _)| *t) {
            Ok(i) => self.shapes[i].1 += 1,
            Err(i) => self.shapes.insert(i, (tag, 1)),
        }
    }

    fn remove_shape(&mut self, tag: Option<u32>) {
        let Some(tag) = tag else { return };
        if let Ok(i) = self.shapes.binary_search_by_key(&tag, |(t, _)| *t) {
            self.shapes[i].1 -= 1;
            if self.shapes[i].1 == 0 {
                self.shapes.remove(i);
            }
        }
    }

    /// Number of GPUs.
    #[must_use]
    pub fn gpu_count(&self) -> u32 {
        self.gpu_free.len() as u32
    }

    /// Total GPU capacity in thousandths.
    #[must_use]
    pub fn gpu_capacity(&self) -> GpuMilli {
        GpuMilli::whole(self.gpu_count())
    }

    /// GPU share allocated on this node.
    #[must_use]
    pub fn gpu_allocated(&self) -> GpuMilli {
        self.gpu_capacity() - self.free_total
    }

    fn refresh(&mut self) {
        self.free_whole = self.gpu_free.iter().filter(|g| **g == GpuMilli::WHOLE).count() as u32;
        self.max_free = self.gpu_free.iter().copied().max().unwrap_or(GpuMilli::ZERO);
        self.free_total = self.gpu_free.iter().copied().sum();
        self.version += 1;
        let mut sorted: Vec<u32> = self.gpu_free.iter().map(|g| g.0).collect();
        sorted.sort_unstable();
        let mut h = Fnv::default();
        h.write_u64(self.model.map_or(u64::MAX, u64::from));
        h.write_u64(self.cpu_free.0);
        h.write_u64(self.mem_free.0);
        for g in sorted {
            h.write_u64(u64::from(g));
        }
        self.state_hash = h.0;
    }

    /// What GPU `g` reserves with `used` of it allocated: its idle draw plus the used
    /// share of the rest of its TDP.
    fn gpu_reservation(&self, used: GpuMilli) -> Watts {
        self.gpu_idle + (self.gpu_tdp - self.gpu_idle).scaled_milli(used.0)
    }

    /// What GPU `g` draws at most with `used` of it allocated and its power limit at the
    /// lowest setting: a GPU never draws more than its limit nor more than its share.
    fn gpu_floor(&self, used: GpuMilli) -> Watts {
        if used == GpuMilli::ZERO { self.gpu_idle } else { self.gpu_reservation(used).min(self.gpu_min) }
    }

    /// `(reservation, floor)` of this node with these free shares and `tasks` tasks.
    fn power_of(&self, gpu_free: &[GpuMilli], tasks: u32) -> (Watts, Watts) {
        if tasks == 0 {
            return (Watts::ZERO, Watts::ZERO);
        }
        let mut power = self.base_power;
        let mut floor = self.base_power;
        for free in gpu_free {
            let used = GpuMilli::WHOLE - *free;
            power += self.gpu_reservation(used);
            floor += self.gpu_floor(used);
        }
        (power, floor)
    }

    /// Upper bounds of what one more task holding `gpus` GPUs of `total` thousandths in
    /// all adds to the reservation and to the floor, whichever GPUs it gets.
    fn increase_bound(&self, gpus: u32, total: GpuMilli) -> (Watts, Watts) {
        let dynamic = (self.gpu_tdp - self.gpu_idle).scaled_milli(total.0);
        let to_floor = Watts((self.gpu_min - self.gpu_idle).0.saturating_mul(u64::from(gpus)));
        let start = if self.tasks == 0 {
            self.base_power + Watts(self.gpu_idle.0.saturating_mul(u64::from(self.gpu_count())))
        } else {
            Watts::ZERO
        };
        (start + dynamic, start + dynamic.min(to_floor))
    }

    /// The power a task of `gpus` GPUs at `milli` each is charged against its tenant's
    /// power quota on this node: its GPUs' reservations plus its share of the base power
    /// (by GPUs; a task without GPUs by CPU). Depends only on the node's figures, so a
    /// release refunds exactly what the placement charged.
    #[must_use]
    pub fn power_charge(&self, gpus: u32, milli: GpuMilli, cpu: MilliCores) -> Watts {
        let gpu_part = Watts(self.gpu_reservation(milli).0.saturating_mul(u64::from(gpus)));
        let total = u64::from(self.gpu_count());
        let base = if gpus > 0 && total > 0 {
            (self.base_power.0 * u64::from(gpus)).div_ceil(total)
        } else if self.cpu_total.0 > 0 {
            (u128::from(self.base_power.0) * u128::from(cpu.0)).div_ceil(u128::from(self.cpu_total.0)) as u64
        } else {
            0
        };
        gpu_part + Watts(base)
    }
}

/// FNV-1a, 64-bit: tiny, fast and the same on every platform (std's hasher is not
/// guaranteed stable across releases).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write_u64(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A rack's power limit and reservation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RackState {
    /// Rack id.
    pub id: String,
    /// Index into [`ClusterState::sites`].
    pub site: u32,
    /// Index into [`ClusterState::domains`].
    pub domain: u32,
    /// Power limit.
    pub limit: Watts,
    /// Power reserved now.
    pub power: Watts,
    /// Sum of its nodes' floors (see [`NodeState::floor`]).
    pub floor: Watts,
}

/// A site's power budget and reservation, and what data it may hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteState {
    /// Site id.
    pub id: String,
    /// IT power budget in force.
    pub budget: Watts,
    /// Power reserved now.
    pub power: Watts,
    /// Sum of its nodes' floors (see [`NodeState::floor`]).
    pub floor: Watts,
    /// Reservations admitted beyond a limit, in thousandths: 0 for a `reserved` site, 300
    /// for one oversubscribed by 30%. Applies to the site's budget and its racks' limits.
    pub oversubscription_milli: u32,
    /// What residency rules judge the site by: country, certifications, jurisdiction.
    pub law: SiteLaw,
    /// The site's region (quota flavours select by region).
    pub region: String,
}

/// GPUs chosen on one node for one task: `(gpu index, share taken)`.
pub type GpuPick = Vec<(u16, GpuMilli)>;

/// The resources one task holds on one node; enough to release it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskAlloc {
    /// The node.
    pub node: NodeIdx,
    /// GPUs and shares.
    pub gpus: GpuPick,
    /// CPU held.
    pub cpu: MilliCores,
    /// Memory held.
    pub memory: Mebibytes,
}

/// The whole cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterState {
    /// Nodes in scheduling order.
    pub nodes: Vec<NodeState>,
    /// Racks in fleet order.
    pub racks: Vec<RackState>,
    /// Sites in fleet order.
    pub sites: Vec<SiteState>,
    /// Network domains as `site/name`: a domain never spans sites.
    pub domains: Vec<String>,
    /// GPU models present in the fleet.
    pub models: Vec<ModelInfo>,
    #[serde(skip)]
    node_index: HashMap<String, NodeIdx>,
    /// Nodes by tightness of fit, for bounded candidate search on large fleets.
    #[serde(skip)]
    pub(crate) fit: FitIndex,
}

impl ClusterState {
    /// The state of `fleet` with nothing allocated, budgets as of `now`, nodes in fleet
    /// order.
    pub fn from_fleet(fleet: &Fleet, now: Timestamp) -> Result<ClusterState, CoreError> {
        let order: Vec<usize> = (0..fleet.node_count()).collect();
        ClusterState::from_fleet_ordered(fleet, now, &order)
    }

    /// Like [`ClusterState::from_fleet`], with the nodes in a given order: `order[i]` is
    /// the fleet position of the node that gets index `i`. The order decides ties, which
    /// is how the trace replay reproduces a seeded node order.
    pub fn from_fleet_ordered(
        fleet: &Fleet,
        now: Timestamp,
        order: &[usize],
    ) -> Result<ClusterState, CoreError> {
        let mut sites = Vec::new();
        let mut racks = Vec::new();
        let mut domains: Vec<String> = Vec::new();
        let mut domain_keys: Vec<(u32, String)> = Vec::new();
        let mut models: Vec<ModelInfo> = Vec::new();
        let mut flat = Vec::new();
        if fleet.sites.len() > residency::MAX_SITES {
            return Err(CoreError::Fleet(format!(
                "the fleet has {} sites; the scheduler places on at most {}: split the fleet",
                fleet.sites.len(),
                residency::MAX_SITES
            )));
        }
        for site in &fleet.sites {
            let site_idx = sites.len() as u32;
            sites.push(SiteState {
                id: site.id.clone(),
                budget: site.it_budget_at(now),
                power: Watts::ZERO,
                floor: Watts::ZERO,
                oversubscription_milli: (site.provisioning.ratio() * 1000.0).round().clamp(0.0, 1000.0)
                    as u32,
                law: site.law(),
                region: site.region.clone(),
            });
            for rack in &site.racks {
                let rack_idx = racks.len() as u32;
                // Domains are islands of one site: two sites naming theirs alike are still
                // two islands.
                let key = (site_idx, rack.network_domain.clone());
                let domain = match domain_keys.iter().position(|d| *d == key) {
                    Some(i) => i as u32,
                    None => {
                        domain_keys.push(key);
                        domains.push(format!("{}/{}", site.id, rack.network_domain));
                        (domains.len() - 1) as u32
                    }
                };
                racks.push(RackState {
                    id: rack.id.clone(),
                    site: site_idx,
                    domain,
                    limit: rack.power_limit,
                    power: Watts::ZERO,
                    floor: Watts::ZERO,
                });
                for node in &rack.nodes {
                    let (model, info) = match &node.gpu_model {
                        Some(id) if node.gpu_count > 0 => {
                            let spec =
                                fleet.catalog.resolve(id).map_err(|e| CoreError::Fleet(e.to_string()))?;
                            let idx = match models.iter().position(|m| m.id == spec.id) {
                                Some(i) => i,
                                None => {
                                    models.push(ModelInfo::of(spec));
                                    models.len() - 1
                                }
                            };
                            let idx = u16::try_from(idx)
                                .map_err(|_| CoreError::Fleet("more than 65,535 GPU models".into()))?;
                            (Some(idx), Some(ModelInfo::of(spec)))
                        }
                        _ => (None, None),
                    };
                    let state = NodeState::new(
                        node.name.clone(),
                        (site_idx, rack_idx),
                        model,
                        info.as_ref(),
                        if model.is_some() { node.gpu_count } else { 0 },
                        (node.cpu, node.memory),
                        node.base_power,
                    );
                    flat.push(Some(state));
                }
            }
        }
        if order.len() != flat.len() {
            return Err(CoreError::Fleet(format!(
                "node order has {} entries but the fleet has {} nodes",
                order.len(),
                flat.len()
            )));
        }
        let mut nodes = Vec::with_capacity(flat.len());
        for &pos in order {
            let node = flat.get_mut(pos).and_then(Option::take).ok_or_else(|| {
                CoreError::Fleet(format!("node order is not a permutation (position {pos})"))
            })?;
            nodes.push(node);
        }
        let node_index = nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), NodeIdx(i as u32))).collect();
        let mut fit = FitIndex::default();
        for (i, n) in nodes.iter().enumerate() {
            fit.update(i, n);
        }
        Ok(ClusterState { nodes, racks, sites, domains, models, node_index, fit })
    }

    /// Looks a node up by name.
    #[must_use]
    pub fn node_by_name(&self, name: &str) -> Option<NodeIdx> {
        self.node_index.get(name).copied()
    }

    /// The node at `idx`.
    #[must_use]
    pub fn node(&self, idx: NodeIdx) -> &NodeState {
        &self.nodes[idx.0 as usize]
    }

    /// Looks a GPU model up by catalog id, case-insensitively.
    #[must_use]
    pub fn model_index(&self, id: &str) -> Option<u16> {
        self.models.iter().position(|m| m.id.eq_ignore_ascii_case(id)).map(|i| i as u16)
    }

    /// Total GPU capacity of nodes that are up.
    #[must_use]
    pub fn gpu_capacity(&self) -> GpuMilli {
        self.nodes.iter().filter(|n| n.up).map(NodeState::gpu_capacity).sum()
    }

    /// GPU share allocated across the cluster.
    #[must_use]
    pub fn gpu_allocated(&self) -> GpuMilli {
        self.nodes.iter().map(NodeState::gpu_allocated).sum()
    }

    /// The most reservation a rack or site may hold: its limit, plus the share admitted
    /// beyond it when the site is oversubscribed.
    #[must_use]
    pub fn admission_limit(&self, limit: Watts, site: usize) -> Watts {
        let milli = self.sites.get(site).map_or(0, |s| s.oversubscription_milli);
        if milli == 0 || limit.is_unlimited() {
            limit
        } else {
            limit.saturating_add(limit.scaled_milli(milli))
        }
    }

    /// Whether `site` is provisioned `oversubscribed`.
    #[must_use]
    pub fn oversubscribed(&self, site: usize) -> bool {
        self.sites.get(site).is_some_and(|s| s.oversubscription_milli > 0)
    }

    /// Checks everything but the GPU choice: whether `node` can take a task with these
    /// needs. Returns the first failing reason, in [`Reason`]'s order.
    pub fn check(&self, node: &NodeState, need: &Need) -> Result<(), Reason> {
        let rack = &self.racks[node.rack as usize];
        let site = &self.sites[node.site as usize];
        self.check_at(node, need, (rack.power, rack.floor), (site.power, site.floor))
    }

    /// Whether `node` could take a task of `need` once the tasks in `freed` (all on this
    /// node) were gone: the preemption question. Changes nothing.
    pub fn check_with_freed(
        &self,
        node: &NodeState,
        need: &Need,
        freed: &[&TaskAlloc],
    ) -> Result<(), Reason> {
        let mut hypo = node.clone();
        for a in freed {
            for (g, milli) in &a.gpus {
                if let Some(f) = hypo.gpu_free.get_mut(usize::from(*g)) {
                    *f = (*f + *milli).min(GpuMilli::WHOLE);
                }
            }
            hypo.cpu_free = (hypo.cpu_free + a.cpu).min(hypo.cpu_total);
            hypo.mem_free = (hypo.mem_free + a.memory).min(hypo.mem_total);
            hypo.tasks = hypo.tasks.saturating_sub(1);
        }
        (hypo.power, hypo.floor) = hypo.power_of(&hypo.gpu_free, hypo.tasks);
        hypo.refresh();
        let (saved, saved_floor) = (node.power - hypo.power, node.floor - hypo.floor);
        let rack = &self.racks[node.rack as usize];
        let site = &self.sites[node.site as usize];
        self.check_at(
            &hypo,
            need,
            (rack.power - saved, rack.floor - saved_floor),
            (site.power - saved, site.floor - saved_floor),
        )
    }

    fn check_at(
        &self,
        node: &NodeState,
        need: &Need,
        (rack_power, rack_floor): (Watts, Watts),
        (site_power, site_floor): (Watts, Watts),
    ) -> Result<(), Reason> {
        if !node.up {
            return Err(Reason::NodeDown);
        }
        if !need.sites.contains(node.site) {
            return Err(Reason::DataResidency);
        }
        if need.gpu_count > 0 {
            match node.model {
                Some(m) if need.models.allows(m) => {}
                _ => return Err(Reason::GpuModelNotAllowed),
            }
            let fits = if need.gpu_count == 1 {
                node.max_free >= need.milli
            } else {
                node.free_whole >= need.gpu_count
            };
            if !fits {
                return Err(Reason::InsufficientGpu);
            }
        }
        if node.cpu_free < need.cpu {
            return Err(Reason::InsufficientCpu);
        }
        if node.mem_free < need.memory {
            return Err(Reason::InsufficientMemory);
        }
        let (delta, delta_floor) = node.increase_bound(need.gpu_count, need.gpu_total());
        let site_idx = node.site as usize;
        let over = self.oversubscribed(site_idx);
        let rack = &self.racks[node.rack as usize];
        if rack_power.saturating_add(delta) > self.admission_limit(rack.limit, site_idx)
            || (over && rack_floor.saturating_add(delta_floor) > rack.limit)
        {
            return Err(Reason::RackPowerLimit);
        }
        let site = &self.sites[site_idx];
        if site_power.saturating_add(delta) > self.admission_limit(site.budget, site_idx)
            || (over && site_floor.saturating_add(delta_floor) > site.budget)
        {
            return Err(Reason::SitePowerBudget);
        }
        need.admit.check(node, need)
    }

    /// Whether `node` has the room for one task of `need`, power, reservations and
    /// quota aside: the cheap gate that tells whether a class is worth trying.
    #[must_use]
    pub fn has_room(&self, node: &NodeState, need: &Need) -> bool {
        node.up
            && need.sites.contains(node.site)
            && (need.gpu_count == 0
                || (node.model.is_some_and(|m| need.models.allows(m))
                    && if need.gpu_count == 1 {
                        node.max_free >= need.milli
                    } else {
                        node.free_whole >= need.gpu_count
                    }))
            && node.cpu_free >= need.cpu
            && node.mem_free >= need.memory
    }

    /// Takes `alloc` out of the cluster. The caller has checked that it fits
    /// ([`ClusterState::check`] and a GPU pick from a policy); this re-checks every
    /// counter and refuses, changing nothing, if any would go negative or over a limit.
    pub fn allocate(&mut self, alloc: &TaskAlloc) -> Result<Watts, CoreError> {
        let node = self
            .nodes
            .get(alloc.node.0 as usize)
            .ok_or(CoreError::Invariant("allocation on an unknown node"))?;
        for (g, milli) in &alloc.gpus {
            let free = node.gpu_free.get(usize::from(*g)).copied().unwrap_or(GpuMilli::ZERO);
            if free < *milli {
                return Err(CoreError::Invariant("GPU over-allocated"));
            }
        }
        if alloc.gpus.iter().enumerate().any(|(i, (g, _))| alloc.gpus[..i].iter().any(|(h, _)| h == g)) {
            return Err(CoreError::Invariant("the same GPU picked twice for one task"));
        }
        if node.cpu_free < alloc.cpu || node.mem_free < alloc.memory {
            return Err(CoreError::Invariant("CPU or memory over-allocated"));
        }
        let mut gpu_free = node.gpu_free.clone();
        for (g, milli) in &alloc.gpus {
            gpu_free[usize::from(*g)] -= *milli;
        }
        let (new_power, new_floor) = node.power_of(&gpu_free, node.tasks + 1);
        let (delta, delta_floor) = (new_power - node.power, new_floor - node.floor);
        let (rack_idx, site_idx) = (node.rack as usize, node.site as usize);
        let over = self.oversubscribed(site_idx);
        let rack = &self.racks[rack_idx];
        if rack.power.saturating_add(delta) > self.admission_limit(rack.limit, site_idx)
            || (over && rack.floor.saturating_add(delta_floor) > rack.limit)
        {
            return Err(CoreError::Invariant("rack power limit"));
        }
        let site = &self.sites[site_idx];
        if site.power.saturating_add(delta) > self.admission_limit(site.budget, site_idx)
            || (over && site.floor.saturating_add(delta_floor) > site.budget)
        {
            return Err(CoreError::Invariant("site power budget"));
        }
        let node = &mut self.nodes[alloc.node.0 as usize];
        node.gpu_free = gpu_free;
        node.cpu_free -= alloc.cpu;
        node.mem_free -= alloc.memory;
        node.tasks += 1;
        node.add_shape(pick_tag(&alloc.gpus));
        node.power = new_power;
        node.floor = new_floor;
        node.refresh();
        self.fit.update(alloc.node.0 as usize, node);
        self.racks[rack_idx].power += delta;
        self.racks[rack_idx].floor += delta_floor;
        self.sites[site_idx].power += delta;
        self.sites[site_idx].floor += delta_floor;
        Ok(delta)
    }

    /// Gives back what `alloc` holds. Exact inverse of [`ClusterState::allocate`].
    pub fn release(&mut self, alloc: &TaskAlloc) {
        let Some(node) = self.nodes.get_mut(alloc.node.0 as usize) else {
            return;
        };
        for (g, milli) in &alloc.gpus {
            if let Some(free) = node.gpu_free.get_mut(usize::from(*g)) {
                *free = (*free + *milli).min(GpuMilli::WHOLE);
            }
        }
        node.cpu_free = (node.cpu_free + alloc.cpu).min(node.cpu_total);
        node.mem_free = (node.mem_free + alloc.memory).min(node.mem_total);
        node.tasks = node.tasks.saturating_sub(1);
        node.remove_shape(pick_tag(&alloc.gpus));
        let (old, old_floor) = (node.power, node.floor);
        (node.power, node.floor) = node.power_of(&node.gpu_free, node.tasks);
        node.refresh();
        self.fit.update(alloc.node.0 as usize, node);
        let (delta, delta_floor) = (old - node.power, old_floor - node.floor);
        let (rack, site) = (node.rack as usize, node.site as usize);
        self.racks[rack].power -= delta;
        self.racks[rack].floor -= delta_floor;
        self.sites[site].power -= delta;
        self.sites[site].floor -= delta_floor;
    }

    /// Marks a node up or down. A down node takes no new work; the scheduler moves its
    /// work elsewhere.
    pub fn set_up(&mut self, idx: NodeIdx, up: bool) {
        if let Some(n) = self.nodes.get_mut(idx.0 as usize) {
            n.up = up;
            n.version += 1;
        }
    }

    /// Adds a node at the end of the order. Its rack must exist.
    pub fn add_node(&mut self, spec: NewNode) -> Result<NodeIdx, CoreError> {
        if self.node_index.contains_key(&spec.name) {
            return Err(CoreError::Fleet(format!("node {} already exists", spec.name)));
        }
        let rack = self
            .racks
            .iter()
            .position(|r| r.id == spec.rack)
            .ok_or_else(|| CoreError::Fleet(format!("unknown rack {}", spec.rack)))?;
        let model = match &spec.gpu_model {
            Some(m) if spec.gpu_count > 0 => Some(self.model_index(&m.id).unwrap_or_else(|| {
                self.models.push(m.clone());
                (self.models.len() - 1) as u16
            })),
            _ => None,
        };
        let node = NodeState::new(
            spec.name.clone(),
            (self.racks[rack].site, rack as u32),
            model,
            spec.gpu_model.as_ref(),
            if model.is_some() { spec.gpu_count } else { 0 },
            (spec.cpu, spec.memory),
            spec.base_power,
        );
        let idx = NodeIdx(self.nodes.len() as u32);
        self.fit.update(idx.0 as usize, &node);
        self.nodes.push(node);
        self.node_index.insert(spec.name, idx);
        Ok(idx)
    }

    /// Sets a site's IT power budget. Reservations above it are the scheduler's to shed.
    pub fn set_budget(&mut self, site: usize, budget: Watts) {
        if let Some(s) = self.sites.get_mut(site) {
            s.budget = budget;
        }
    }

    /// Checks every counter against the allocations given, for tests and debug
    /// assertions: free shares, CPU, memory and power must equal capacity minus what the
    /// allocations hold, and no limit may be exceeded.
    pub fn audit<'a>(&self, allocs: impl IntoIterator<Item = &'a TaskAlloc>) -> Result<(), String> {
        let mut gpu_used: Vec<Vec<GpuMilli>> =
            self.nodes.iter().map(|n| vec![GpuMilli::ZERO; n.gpu_free.len()]).collect();
        let mut cpu = vec![MilliCores::ZERO; self.nodes.len()];
        let mut mem = vec![Mebibytes::ZERO; self.nodes.len()];
        let mut tasks = vec![0u32; self.nodes.len()];
        for a in allocs {
            let i = a.node.0 as usize;
            for (g, m) in &a.gpus {
                gpu_used[i][usize::from(*g)] += *m;
            }
            cpu[i] += a.cpu;
            mem[i] += a.memory;
            tasks[i] += 1;
        }
        let mut rack_power = vec![Watts::ZERO; self.racks.len()];
        let mut rack_floor = vec![Watts::ZERO; self.racks.len()];
        let mut site_power = vec![Watts::ZERO; self.sites.len()];
        let mut site_floor = vec![Watts::ZERO; self.sites.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for (g, used) in gpu_used[i].iter().enumerate() {
                if *used > GpuMilli::WHOLE {
                    return Err(format!("{} GPU {g} over-allocated: {used}", n.name));
                }
                if n.gpu_free[g] + *used != GpuMilli::WHOLE {
                    return Err(format!("{} GPU {g}: free {} + used {used} != 1000", n.name, n.gpu_free[g]));
                }
            }
            if cpu[i] > n.cpu_total || n.cpu_free + cpu[i] != n.cpu_total {
                return Err(format!("{} CPU accounting off", n.name));
            }
            if mem[i] > n.mem_total || n.mem_free + mem[i] != n.mem_total {
                return Err(format!("{} memory accounting off", n.name));
            }
            if n.tasks != tasks[i] {
                return Err(format!("{} task count off", n.name));
            }
            let free: Vec<GpuMilli> = gpu_used[i].iter().map(|u| GpuMilli::WHOLE - *u).collect();
            if (n.power, n.floor) != n.power_of(&free, tasks[i]) {
                return Err(format!("{} power accounting off", n.name));
            }
            rack_power[n.rack as usize] += n.power;
            rack_floor[n.rack as usize] += n.floor;
            site_power[n.site as usize] += n.power;
            site_floor[n.site as usize] += n.floor;
        }
        for (i, r) in self.racks.iter().enumerate() {
            if (r.power, r.floor) != (rack_power[i], rack_floor[i]) {
                return Err(format!(
                    "rack {} power {} (floor {}) != sum of nodes {} (floor {})",
                    r.id, r.power, r.floor, rack_power[i], rack_floor[i]
                ));
            }
            let site = r.site as usize;
            if r.power > self.admission_limit(r.limit, site) {
                return Err(format!(
                    "rack {} reserves more than it may admit: {} > {}",
                    r.id, r.power, r.limit
                ));
            }
            if self.oversubscribed(site) && r.floor > r.limit {
                return Err(format!("rack {} floor over its limit: {} > {}", r.id, r.floor, r.limit));
            }
        }
        for (i, s) in self.sites.iter().enumerate() {
            if (s.power, s.floor) != (site_power[i], site_floor[i]) {
                return Err(format!(
                    "site {} power {} (floor {}) != sum of nodes {} (floor {})",
                    s.id, s.power, s.floor, site_power[i], site_floor[i]
                ));
            }
            // An oversubscribed site may hold more than it would admit after a budget
            // cut (only the floor is shed); the floor is what keeps the draw safe.
            let (held, what) =
                if self.oversubscribed(i) { (s.floor, "floor") } else { (s.power, "reservation") };
            if held > s.budget {
                return Err(format!("site {} {what} over its budget: {held} > {}", s.id, s.budget));
            }
        }
        Ok(())
    }
}

/// A node joining at run time.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct NewNode {
    /// Unique name.
    pub name: String,
    /// Rack id it goes into.
    pub rack: String,
    /// GPU model and its power figures.
    pub gpu_model: Option<ModelInfo>,
    /// GPU count.
    pub gpu_count: u32,
    /// Allocatable CPU.
    pub cpu: MilliCores,
    /// Allocatable memory.
    pub memory: Mebibytes,
    /// Base power.
    pub base_power: Watts,
}

/// A set of allowed GPU models as a bitmask over [`ClusterState::models`]; all bits set
/// means any model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ModelSet(pub u128);

impl ModelSet {
    /// Any model.
    pub const ANY: ModelSet = ModelSet(u128::MAX);

    /// Whether model index `m` is in the set.
    #[must_use]
    pub fn allows(self, m: u16) -> bool {
        m < 128 && self.0 & (1u128 << m) != 0
    }
}

/// What admission allows one workload on top of its needs: the quota flavours it may use,
/// its power room per site, and the reservations it may use or backfill into.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Admit {
    /// Flavours it may use (bit per flavour); `None` for any node.
    pub flavours: Option<u64>,
    /// Watts of power quota left per site index; `None` when unlimited.
    pub power_room: Option<Vec<u64>>,
    /// Watt-seconds of energy quota left, and the milliseconds a task placed now
    /// commits its reserved power for; `None` when unlimited.
    pub energy_room: Option<(u64, i64)>,
    /// Tasks still to place, which the power room must hold.
    pub tasks: u32,
    /// The workload itself, which may use its own reservation.
    pub owner: Option<WorkloadId>,
    /// When its time limit ends if started now; it may use reserved nodes whose
    /// reservation starts no earlier (backfill). `None`: no time limit, never backfills.
    pub ends_by: Option<Timestamp>,
}

impl Admit {
    /// The admission part of the node filter: reservation, then quota.
    fn check(&self, node: &NodeState, need: &Need) -> Result<(), Reason> {
        if let Some((start, owner)) = node.reserved
            && self.owner != Some(owner)
            && self.ends_by.is_none_or(|end| end > start)
        {
            return Err(Reason::Reserved);
        }
        if let Some(mask) = self.flavours
            && (node.flavour == NO_FLAVOUR || mask & (1u64 << node.flavour) == 0)
        {
            return Err(Reason::Quota);
        }
        if self.power_room.is_none() && self.energy_room.is_none() {
            return Ok(());
        }
        let watts = node
            .power_charge(need.gpu_count, need.milli, need.cpu)
            .0
            .saturating_mul(u64::from(self.tasks.max(1)));
        if let Some(room) = &self.power_room
            && watts > room.get(node.site as usize).copied().unwrap_or(u64::MAX)
        {
            return Err(Reason::Quota);
        }
        if let Some((room, ms)) = self.energy_room
            && u128::from(watts) * u128::try_from(ms).unwrap_or(0) > u128::from(room) * 1000
        {
            return Err(Reason::Quota);
        }
        Ok(())
    }
}

/// What one task needs, resolved against the cluster (model names to indices). This is
/// what the hot filter loop reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Need {
    /// Number of GPUs (0, 1 for a share, or several whole ones).
    pub gpu_count: u32,
    /// Share per GPU.
    pub milli: GpuMilli,
    /// Allowed models.
    pub models: ModelSet,
    /// CPU.
    pub cpu: MilliCores,
    /// Memory.
    pub memory: Mebibytes,
    /// Data class.
    pub data_class: DataClass,
    /// The sites its effective residency policy allows (operator, tenant and job rules
    /// at once; see [`crate::residency`]).
    pub sites: SiteMask,
    /// What admission allows (quota, reservations); the default allows everything but
    /// reserved nodes.
    pub admit: Admit,
}

impl Need {
    /// Total GPU share.
    #[must_use]
    pub fn gpu_total(&self) -> GpuMilli {
        GpuMilli(self.gpu_count.saturating_mul(self.milli.0))
    }
}
