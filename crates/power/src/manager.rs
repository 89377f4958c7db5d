//! The power manager: GPU power limits that keep every rack and site under its limit.
//!
//! An oversubscribed site admits more GPUs than its budget covers at TDP (see
//! `gigawatt_core::state`). The manager makes that safe. Every control interval it takes a
//! [`Picture`] of the site (what each node draws outside its GPUs, and for each group of
//! GPUs that share a limit: their class, the limit in force, what they drew and whether
//! the limit held them back) and returns a [`Plan`]: a power limit for every group.
//!
//! ## The guarantee
//!
//! A GPU never draws more than its power limit: the driver enforces it. The plan keeps,
//! for every rack and every site,
//!
//! ```text
//! Σ fixed draw of its busy nodes  +  Σ over its GPU groups (limit × GPUs)  ≤  its limit
//! ```
//!
//! so the real draw cannot exceed the limit at any instant, whatever the work does between
//! two plans. The core admits work only while the same sum with every limit at its
//! minimum (the *floor*) fits, so a plan always exists; when a budget cut makes it
//! impossible, the plan says so ([`Action::Infeasible`]) and names the work to preempt.
//!
//! ## How the headroom is shared
//!
//! Every group starts at its minimum limit. The headroom left above the floors is then
//! handed out in two passes, each going down the [`PowerTier`]s from latency-critical
//! inference to best effort:
//!
//! 1. up to each group's **predicted demand** one interval ahead: its mean draw over the
//!    last intervals plus a margin, counting the time its limit held it back at its TDP;
//! 2. then up to its TDP, so that bursts within the interval are not clipped.
//!
//! So when the predicted draw approaches a limit, best effort is capped first, then
//! training, then standard inference, and latency-critical inference last: a
//! latency-critical group gets less than its demand only once every lower tier in the
//! same rack or site is at its minimum. Within a tier, groups get the same share of what
//! they asked for.
//!
//! ## Events
//!
//! Limits change every interval; what is worth telling a person is when a group starts
//! being held below its predicted demand (**capped**) and when it stops (**uncapped**).
//! Uncapping has hysteresis: a group must have had its demand covered for
//! [`ManagerConfig::restore_after`] consecutive plans.

use std::collections::BTreeMap;
use std::fmt;

use gigawatt_core::{PriorityClass, Shape, WorkloadId};
use gigawatt_units::Watts;
use serde::{Deserialize, Serialize};

use crate::model::GpuPower;

/// How important work is when power is short. Lower tiers are capped first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PowerTier {
    /// Best-effort work of any kind: capped first, preempted in an emergency.
    BestEffort,
    /// Standard batch work: training, fine-tuning, batch jobs.
    Training,
    /// Standard inference services.
    Inference,
    /// Latency-critical work: capped last.
    LatencyCritical,
}

impl PowerTier {
    /// Every tier, most important first (the order headroom is handed out in).
    pub const TOP_DOWN: [PowerTier; 4] =
        [PowerTier::LatencyCritical, PowerTier::Inference, PowerTier::Training, PowerTier::BestEffort];

    /// The tier of a workload: its priority class, and for standard work whether it is a
    /// service (inference) or a job (training and batch).
    #[must_use]
    pub fn of(priority: PriorityClass, shape: Shape) -> PowerTier {
        match (priority, shape) {
            (PriorityClass::BestEffort, _) => PowerTier::BestEffort,
            (PriorityClass::LatencyCritical, _) => PowerTier::LatencyCritical,
            (PriorityClass::Standard, Shape::Service { .. }) => PowerTier::Inference,
            (PriorityClass::Standard, _) => PowerTier::Training,
        }
    }

    /// The spelling used in events, metrics and the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PowerTier::BestEffort => "best-effort",
            PowerTier::Training => "training",
            PowerTier::Inference => "inference",
            PowerTier::LatencyCritical => "latency-critical",
        }
    }
}

impl fmt::Display for PowerTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which GPUs share one power limit: the GPUs of one task of one workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupKey {
    /// The workload.
    pub workload: WorkloadId,
    /// The task (rank, replica).
    pub task: u32,
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} task {}", self.workload, self.task)
    }
}

/// A rack or a site and its power limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// Rack or site id.
    pub id: String,
    /// The most it may draw (a site's IT budget in force, a rack's limit).
    pub limit: Watts,
}

/// A rack, and the site it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RackPicture {
    /// The rack and its limit.
    pub domain: Domain,
    /// Index into [`Picture::sites`].
    pub site: usize,
}

/// What a node draws outside the GPU groups: its base power and its free GPUs' idle draw
/// while it hosts work, its measured draw otherwise (zero when suspended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePicture {
    /// Index into [`Picture::racks`].
    pub rack: usize,
    /// Draw the manager cannot cap.
    pub fixed: Watts,
}

/// GPUs that share one power limit, and what was seen of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Which task's GPUs.
    pub key: GroupKey,
    /// Index into [`Picture::nodes`].
    pub node: usize,
    /// How important the work is.
    pub tier: PowerTier,
    /// Number of GPUs.
    pub gpus: u32,
    /// Their power figures.
    pub gpu: GpuPower,
    /// The limit in force, per GPU.
    pub limit: Watts,
    /// What one GPU drew on average over the last interval.
    pub draw: Watts,
    /// Share of the interval (0–1) during which the limit held the GPUs back: their
    /// demand was higher than the limit (NVML's "SW power cap" throttle reason).
    pub throttled: f64,
}

/// Everything the manager looks at, at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Picture {
    /// Sites and their IT budgets in force (the lowest budget until the next plan, so that
    /// a cut is met before it starts).
    pub sites: Vec<Domain>,
    /// Racks.
    pub racks: Vec<RackPicture>,
    /// Nodes that draw power.
    pub nodes: Vec<NodePicture>,
    /// GPU groups, in any order (the plan follows it).
    pub groups: Vec<Group>,
}

/// How the manager behaves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagerConfig {
    /// Margin on the predicted demand, as a share (0.1 = +10%).
    pub margin: f64,
    /// Plans in a row with its demand covered before a capped group counts as uncapped.
    pub restore_after: u32,
}

impl Default for ManagerConfig {
    fn default() -> ManagerConfig {
        ManagerConfig { margin: 0.1, restore_after: 3 }
    }
}

/// Why a group was capped: the rack or site whose headroom ran out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapWhy {
    /// `site valence` or `rack valence-a001`.
    pub scope: String,
    /// Its limit.
    pub limit: Watts,
    /// What it would draw with every group at its predicted demand.
    pub predicted: Watts,
    /// The tier of the capped group.
    pub tier: PowerTier,
}

impl fmt::Display for CapWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} would draw {} against its limit of {}; {} work is capped before more important work",
            self.scope, self.predicted, self.limit, self.tier
        )
    }
}

/// Something worth telling a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// A group is now held below its predicted demand.
    Cap {
        /// The group.
        group: GroupKey,
        /// Its tier.
        tier: PowerTier,
        /// The limit per GPU before.
        from: Watts,
        /// The limit per GPU now.
        to: Watts,
        /// Its predicted demand per GPU.
        wanted: Watts,
        /// Why.
        why: CapWhy,
    },
    /// A capped group has had its demand covered for a while again.
    Uncap {
        /// The group.
        group: GroupKey,
        /// The limit per GPU now.
        to: Watts,
    },
    /// Even with every GPU at its minimum a rack or site would exceed its limit: the
    /// work listed (lowest tier first, then youngest) must stop for the limit to hold.
    Infeasible {
        /// `site valence` or `rack valence-a001`.
        scope: String,
        /// Its limit.
        limit: Watts,
        /// What its work draws at the minimum limits.
        floor: Watts,
        /// Workloads to preempt, in order, until the floor fits.
        preempt: Vec<WorkloadId>,
        /// Whether latency-critical work is among them.
        latency_critical: bool,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Cap { group, to, wanted, why, .. } => {
                write!(f, "{group} capped to {to} per GPU (it would draw {wanted}): {why}")
            }
            Action::Uncap { group, to } => {
                write!(f, "{group} uncapped: its demand is covered again ({to} per GPU)")
            }
            Action::Infeasible { scope, limit, floor, preempt, latency_critical } => {
                let list: Vec<String> = preempt.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "{scope} needs {floor} with every GPU at its lowest power limit but may draw only {limit}; \
                     preempting {}",
                    list.join(", ")
                )?;
                if *latency_critical {
                    f.write_str(" (latency-critical work among them: the limit leaves no room to run it)")?;
                }
                Ok(())
            }
        }
    }
}

/// What the manager decided.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The limit per GPU of each group, in the picture's order.
    pub limits: Vec<Watts>,
    /// The predicted demand per GPU of each group.
    pub wanted: Vec<Watts>,
    /// Whether each group is counted as capped (with hysteresis).
    pub capped: Vec<bool>,
    /// What changed, for the event log.
    pub actions: Vec<Action>,
    /// Per site: the sum the guarantee bounds (fixed draw plus every limit).
    pub site_envelope: Vec<Watts>,
    /// Per site: the draw predicted for the next interval.
    pub site_predicted: Vec<Watts>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Memory {
    /// The demand seen over the previous interval (per GPU), for the trend.
    last: Watts,
    capped: bool,
    covered: u32,
}

/// The power manager. Keep one per control plane (or simulation) and call
/// [`PowerManager::plan`] every control interval, and whenever work starts or stops.
#[derive(Debug, Clone, Default)]
pub struct PowerManager {
    config: ManagerConfig,
    memory: BTreeMap<GroupKey, Memory>,
}

impl PowerManager {
    /// A manager with this behaviour.
    #[must_use]
    pub fn new(config: ManagerConfig) -> PowerManager {
        PowerManager { config, memory: BTreeMap::new() }
    }

    /// Its behaviour.
    #[must_use]
    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// Whether this group is counted as capped now.
    #[must_use]
    pub fn is_capped(&self, key: &GroupKey) -> bool {
        self.memory.get(key).is_some_and(|m| m.capped)
    }

    /// Plans the limits for the next interval. Groups absent from the picture are
    /// forgotten.
    pub fn plan(&mut self, picture: &Picture) -> Plan {
        let wanted: Vec<Watts> = picture.groups.iter().map(|g| self.predict(g)).collect();
        let mut fill = Fill::new(picture);
        let infeasible = fill.infeasible(picture);
        // Pass 1: up to the predicted demand; pass 2: up to the TDP.
        let mut binding: Vec<Option<(bool, usize)>> = vec![None; picture.groups.len()];
        for tier in PowerTier::TOP_DOWN {
            fill.pass(picture, tier, &wanted, &mut binding);
        }
        let tdp: Vec<Watts> = picture.groups.iter().map(|g| g.gpu.tdp).collect();
        let mut unused = vec![None; picture.groups.len()];
        for tier in PowerTier::TOP_DOWN {
            fill.pass(picture, tier, &tdp, &mut unused);
        }
        let limits = fill.limits;
        let site_predicted = site_sums(picture, |i, g| Watts(wanted[i].min(limits[i]).0 * u64::from(g.gpus)));
        let site_envelope = site_sums(picture, |i, g| Watts(limits[i].0 * u64::from(g.gpus)));
        let mut actions = infeasible;
        let mut capped = Vec::with_capacity(picture.groups.len());
        let mut seen = BTreeMap::new();
        for (i, g) in picture.groups.iter().enumerate() {
            let m = self.memory.entry(g.key).or_default();
            let short = limits[i] < wanted[i];
            if short && !m.capped {
                let why = match binding[i] {
                    Some((true, r)) => cap_why(
                        format!("rack {}", picture.racks[r].domain.id),
                        picture.racks[r].domain.limit,
                        rack_predicted(picture, r, &wanted),
                        g.tier,
                    ),
                    Some((false, s)) => cap_why(
                        format!("site {}", picture.sites[s].id),
                        picture.sites[s].limit,
                        site_predicted_wanted(picture, s, &wanted),
                        g.tier,
                    ),
                    None => cap_why("its node".into(), Watts::ZERO, Watts::ZERO, g.tier),
                };
                actions.push(Action::Cap {
                    group: g.key,
                    tier: g.tier,
                    from: g.limit,
                    to: limits[i],
                    wanted: wanted[i],
                    why,
                });
                m.capped = true;
                m.covered = 0;
            } else if short {
                m.covered = 0;
            } else if m.capped {
                m.covered += 1;
                if m.covered >= self.config.restore_after.max(1) {
                    m.capped = false;
                    m.covered = 0;
                    actions.push(Action::Uncap { group: g.key, to: limits[i] });
                }
            }
            capped.push(m.capped);
            seen.insert(g.key, ());
        }
        self.memory.retain(|k, _| seen.contains_key(k));
        Plan { limits, wanted, capped, actions, site_envelope, site_predicted }
    }

    /// The mean draw per GPU predicted for the next interval.
    ///
    /// The demand seen over the last interval is the mean draw, plus, for the share of the
    /// interval the limit held the group back, the rest of the way to the TDP (its real
    /// demand was unknown then; asking for everything is how it is found out). A rise
    /// since the interval before is assumed to go on for one more interval; a fall is not.
    /// The margin comes on top.
    fn predict(&mut self, g: &Group) -> Watts {
        let m = self.memory.entry(g.key).or_default();
        let share = if g.throttled.is_finite() { g.throttled.clamp(0.0, 1.0) } else { 1.0 };
        let hidden = g.gpu.tdp.0.saturating_sub(g.limit.0.min(g.gpu.tdp.0)) as f64 * share;
        let seen = Watts((g.draw.0 as f64 + hidden).ceil() as u64);
        let rise = if m.last == Watts::ZERO { Watts::ZERO } else { seen - m.last };
        m.last = seen;
        let ahead = seen + rise;
        let with_margin = (ahead.0 as f64 * (1.0 + self.config.margin.max(0.0))).ceil() as u64;
        g.gpu.clamp_limit(Watts(with_margin))
    }
}

fn cap_why(scope: String, limit: Watts, predicted: Watts, tier: PowerTier) -> CapWhy {
    CapWhy { scope, limit, predicted, tier }
}

/// Per site: fixed draw of its nodes plus `per_group(i, g)` over its groups.
fn site_sums(picture: &Picture, per_group: impl Fn(usize, &Group) -> Watts) -> Vec<Watts> {
    let mut out = vec![Watts::ZERO; picture.sites.len()];
    for n in &picture.nodes {
        if let Some(r) = picture.racks.get(n.rack) {
            out[r.site] += n.fixed;
        }
    }
    for (i, g) in picture.groups.iter().enumerate() {
        if let Some(site) = site_of(picture, g.node) {
            out[site] += per_group(i, g);
        }
    }
    out
}

fn site_of(picture: &Picture, node: usize) -> Option<usize> {
    picture.nodes.get(node).and_then(|n| picture.racks.get(n.rack)).map(|r| r.site)
}

fn rack_predicted(picture: &Picture, rack: usize, wanted: &[Watts]) -> Watts {
    let fixed: Watts = picture.nodes.iter().filter(|n| n.rack == rack).map(|n| n.fixed).sum();
    let groups: Watts = picture
        .groups
        .iter()
        .enumerate()
        .filter(|(_, g)| picture.nodes.get(g.node).is_some_and(|n| n.rack == rack))
        .map(|(i, g)| Watts(wanted[i].0 * u64::from(g.gpus)))
        .sum();
    fixed + groups
}

fn site_predicted_wanted(picture: &Picture, site: usize, wanted: &[Watts]) -> Watts {
    site_sums(picture, |i, g| Watts(wanted[i].0 * u64::from(g.gpus))).get(site).copied().unwrap_or_default()
}

/// The headroom of every rack and site, handed out pass by pass.
struct Fill {
    /// Per rack and per site: what is left under the limit (negative when the floor
    /// does not fit).
    rack_left: Vec<i128>,
    site_left: Vec<i128>,
    /// Domains whose headroom ran out while a more important tier still wanted more:
    /// nothing more is given in them.
    rack_done: Vec<bool>,
    site_done: Vec<bool>,
    limits: Vec<Watts>,
}

/// Rounds of proportional sharing per tier and pass: a group held back by its rack in one
/// round leaves site headroom that others can take in the next.
const ROUNDS: usize = 4;

impl Fill {
    /// Every group at its minimum limit.
    fn new(picture: &Picture) -> Fill {
        let mut rack_left: Vec<i128> = picture.racks.iter().map(|r| i128::from(r.domain.limit.0)).collect();
        let mut site_left: Vec<i128> = picture.sites.iter().map(|s| i128::from(s.limit.0)).collect();
        for n in &picture.nodes {
            if let Some(r) = picture.racks.get(n.rack) {
                rack_left[n.rack] -= i128::from(n.fixed.0);
                site_left[r.site] -= i128::from(n.fixed.0);
            }
        }
        let mut limits = Vec::with_capacity(picture.groups.len());
        for g in &picture.groups {
            let floor = g.gpu.clamp_limit(g.gpu.min_limit);
            limits.push(floor);
            if let Some(n) = picture.nodes.get(g.node)
                && let Some(r) = picture.racks.get(n.rack)
            {
                let w = i128::from(floor.0) * i128::from(g.gpus);
                rack_left[n.rack] -= w;
                site_left[r.site] -= w;
            }
        }
        let rack_done = vec![false; rack_left.len()];
        let site_done = vec![false; site_left.len()];
        Fill { rack_left, site_left, rack_done, site_done, limits }
    }

    /// Racks and sites whose floor exceeds their limit, with the work to preempt.
    fn infeasible(&self, picture: &Picture) -> Vec<Action> {
        let mut out = Vec::new();
        let scopes = self
            .site_left
            .iter()
            .enumerate()
            .filter(|(_, left)| **left < 0)
            .map(|(s, left)| (false, s, *left))
            .chain(
                self.rack_left
                    .iter()
                    .enumerate()
                    .filter(|(_, left)| **left < 0)
                    .map(|(r, left)| (true, r, *left)),
            );
        for (is_rack, idx, left) in scopes {
            let in_scope = |g: &Group| {
                picture.nodes.get(g.node).is_some_and(|n| {
                    if is_rack {
                        n.rack == idx
                    } else {
                        picture.racks.get(n.rack).is_some_and(|r| r.site == idx)
                    }
                })
            };
            // Lowest tier first; within a tier, the latest workload (highest id) first.
            let mut victims: Vec<(PowerTier, std::cmp::Reverse<WorkloadId>)> = picture
                .groups
                .iter()
                .filter(|g| in_scope(g))
                .map(|g| (g.tier, std::cmp::Reverse(g.key.workload)))
                .collect();
            victims.sort();
            victims.dedup();
            // What stopping a workload frees here: its GPUs' floors, and the fixed draw of
            // every node it leaves empty.
            let mut left_on_node: BTreeMap<usize, usize> = BTreeMap::new();
            for g in picture.groups.iter().filter(|g| in_scope(g)) {
                *left_on_node.entry(g.node).or_default() += 1;
            }
            let mut missing = -left;
            let mut preempt = Vec::new();
            let mut latency_critical = false;
            for (tier, std::cmp::Reverse(w)) in victims {
                if missing <= 0 {
                    break;
                }
                for g in picture.groups.iter().filter(|g| g.key.workload == w && in_scope(g)) {
                    missing -= i128::from(g.gpu.clamp_limit(g.gpu.min_limit).0) * i128::from(g.gpus);
                    if let Some(count) = left_on_node.get_mut(&g.node) {
                        *count -= 1;
                        if *count == 0 {
                            missing -= picture.nodes.get(g.node).map_or(0, |n| i128::from(n.fixed.0));
                        }
                    }
                }
                latency_critical |= tier == PowerTier::LatencyCritical;
                preempt.push(w);
            }
            let (scope, limit) = if is_rack {
                (format!("rack {}", picture.racks[idx].domain.id), picture.racks[idx].domain.limit)
            } else {
                (format!("site {}", picture.sites[idx].id), picture.sites[idx].limit)
            };
            let floor = Watts(u64::try_from(i128::from(limit.0) - left).unwrap_or(u64::MAX));
            out.push(Action::Infeasible { scope, limit, floor, preempt, latency_critical });
        }
        out
    }

    /// Raises the limits of `tier`'s groups towards `target` per GPU, sharing the headroom
    /// of each rack and site in proportion to what each group asks for. Records, for a
    /// group left short, the domain that bound it.
    fn pass(
        &mut self,
        picture: &Picture,
        tier: PowerTier,
        target: &[Watts],
        binding: &mut [Option<(bool, usize)>],
    ) {
        let members: Vec<(usize, usize, usize)> = picture
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.tier == tier)
            .filter_map(|(i, g)| {
                let n = picture.nodes.get(g.node)?;
                let r = picture.racks.get(n.rack)?;
                Some((i, n.rack, r.site))
            })
            .collect();
        if members.is_empty() {
            return;
        }
        for _ in 0..ROUNDS {
            // What each group still asks for, in watts (all its GPUs).
            let ask: Vec<i128> = members
                .iter()
                .map(|&(i, r, s)| {
                    let g = &picture.groups[i];
                    let want = target[i].max(self.limits[i]).min(g.gpu.tdp);
                    let per_gpu = i128::from(want.0) - i128::from(self.limits[i].0);
                    if self.rack_done[r] || self.site_done[s] { 0 } else { per_gpu * i128::from(g.gpus) }
                })
                .collect();
            let mut rack_ask = vec![0i128; self.rack_left.len()];
            let mut site_ask = vec![0i128; self.site_left.len()];
            for (k, &(_, r, s)) in members.iter().enumerate() {
                rack_ask[r] += ask[k];
                site_ask[s] += ask[k];
            }
            if ask.iter().all(|a| *a <= 0) {
                break;
            }
            let share = |left: i128, asked: i128| -> f64 {
                if asked <= 0 || left <= 0 {
                    if asked <= 0 { 1.0 } else { 0.0 }
                } else {
                    (left as f64 / asked as f64).min(1.0)
                }
            };
            // Every group of the round gets the same share of what it asks in its rack and
            // site, computed before anyone is served.
            let rack_share: Vec<f64> =
                (0..self.rack_left.len()).map(|r| share(self.rack_left[r], rack_ask[r])).collect();
            let site_share: Vec<f64> =
                (0..self.site_left.len()).map(|s| share(self.site_left[s], site_ask[s])).collect();
            let mut granted_any = false;
            for (k, &(i, r, s)) in members.iter().enumerate() {
                if ask[k] <= 0 {
                    continue;
                }
                let g = &picture.groups[i];
                let theta = rack_share[r].min(site_share[s]);
                let per_gpu = ((ask[k] as f64 * theta) / f64::from(g.gpus.max(1))).floor() as i128;
                let per_gpu = per_gpu.min(self.rack_left[r].max(0) / i128::from(g.gpus.max(1)));
                let per_gpu = per_gpu.min(self.site_left[s].max(0) / i128::from(g.gpus.max(1)));
                if per_gpu <= 0 {
                    continue;
                }
                let total = per_gpu * i128::from(g.gpus);
                self.limits[i] = Watts(self.limits[i].0 + u64::try_from(per_gpu).unwrap_or(0));
                self.rack_left[r] -= total;
                self.site_left[s] -= total;
                granted_any = true;
            }
            if !granted_any {
                break;
            }
        }
        // Whoever is still short was bound by its rack or its site: nothing more goes to
        // less important work there.
        for &(i, r, s) in &members {
            let g = &picture.groups[i];
            let want = target[i].min(g.gpu.tdp);
            if self.limits[i] < want {
                let gpus = i128::from(g.gpus.max(1));
                let rack_out = self.rack_left[r] < gpus || self.rack_done[r];
                let site_out = self.site_left[s] < gpus || self.site_done[s];
                if rack_out && !site_out {
                    self.rack_done[r] = true;
                    binding[i].get_or_insert((true, r));
                } else {
                    self.site_done[s] = true;
                    binding[i].get_or_insert((false, s));
                }
            }
        }
    }
}
