//! The power manager's promises: no rack or site can draw over its limit under any plan,
//! less important work is capped first, and the events tell a person what happened.

use gigawatt_core::{PriorityClass, Shape, WorkloadId};
use gigawatt_power::manager::{
    Action, Domain, Group, GroupKey, ManagerConfig, NodePicture, Picture, PowerManager, PowerTier,
    RackPicture,
};
use gigawatt_power::model::GpuPower;
use gigawatt_units::Watts;
use proptest::prelude::*;

const H100: GpuPower =
    GpuPower { idle: Watts(80), tdp: Watts(700), min_limit: Watts(200), dvfs_exponent: 2.0 };

fn group(workload: u64, node: usize, tier: PowerTier, draw: u64) -> Group {
    Group {
        key: GroupKey { workload: WorkloadId(workload), task: 0 },
        node,
        tier,
        gpus: 8,
        gpu: H100,
        limit: Watts(700),
        draw: Watts(draw),
        throttled: 0.0,
    }
}

/// One site of `nodes` 8-GPU nodes, two racks, base power 4.6 kW per node.
fn picture(site_limit: u64, rack_limit: u64, groups: Vec<Group>) -> Picture {
    let nodes = groups.iter().map(|g| g.node).max().map_or(0, |n| n + 1);
    Picture {
        sites: vec![Domain { id: "valence".into(), limit: Watts(site_limit) }],
        racks: vec![
            RackPicture { domain: Domain { id: "r1".into(), limit: Watts(rack_limit) }, site: 0 },
            RackPicture { domain: Domain { id: "r2".into(), limit: Watts(rack_limit) }, site: 0 },
        ],
        nodes: (0..nodes).map(|n| NodePicture { rack: n % 2, fixed: Watts(4600) }).collect(),
        groups,
    }
}

/// Fixed draw plus every limit × GPUs, per rack and per site, must fit.
fn assert_guarantee(p: &Picture, limits: &[Watts]) {
    let mut rack = vec![0u64; p.racks.len()];
    let mut site = vec![0u64; p.sites.len()];
    for n in &p.nodes {
        rack[n.rack] += n.fixed.0;
        site[p.racks[n.rack].site] += n.fixed.0;
    }
    for (g, l) in p.groups.iter().zip(limits) {
        assert!(*l >= g.gpu.min_limit && *l <= g.gpu.tdp, "{} outside the settable range", l);
        let r = p.nodes[g.node].rack;
        rack[r] += l.0 * u64::from(g.gpus);
        site[p.racks[r].site] += l.0 * u64::from(g.gpus);
    }
    for (i, r) in p.racks.iter().enumerate() {
        assert!(
            rack[i] <= r.domain.limit.0,
            "rack {} envelope {} > {}",
            r.domain.id,
            rack[i],
            r.domain.limit.0
        );
    }
    for (i, s) in p.sites.iter().enumerate() {
        assert!(site[i] <= s.limit.0, "site {} envelope {} > {}", s.id, site[i], s.limit.0);
    }
}

#[test]
fn with_room_to_spare_every_gpu_keeps_its_tdp() {
    let p = picture(
        200_000,
        100_000,
        vec![group(1, 0, PowerTier::Training, 640), group(2, 1, PowerTier::LatencyCritical, 700)],
    );
    let plan = PowerManager::default().plan(&p);
    assert_eq!(plan.limits, vec![Watts(700), Watts(700)]);
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_guarantee(&p, &plan.limits);
}

#[test]
fn best_effort_is_capped_before_training_and_training_before_inference() {
    // Four nodes: 18.4 kW fixed; GPUs at full demand would add 4 × 8 × 700 = 22.4 kW.
    // A 33 kW site leaves 14.6 kW for 32 GPUs over their 6.4 kW of floors.
    let groups = vec![
        group(1, 0, PowerTier::BestEffort, 700),
        group(2, 1, PowerTier::Training, 700),
        group(3, 2, PowerTier::Inference, 600),
        group(4, 3, PowerTier::LatencyCritical, 600),
    ];
    let p = picture(33_000, 100_000, groups);
    let plan = PowerManager::new(ManagerConfig { margin: 0.0, ..ManagerConfig::default() }).plan(&p);
    assert_guarantee(&p, &plan.limits);
    // 33 − 18.4 − 6.4 kW of floors leaves 8.2 kW: latency-critical and inference get their
    // demand (3.2 kW each), training the remaining 1.8 kW (225 W per GPU), best effort
    // nothing above its minimum. No slack is left for anyone.
    assert_eq!(plan.limits, vec![Watts(200), Watts(425), Watts(600), Watts(600)]);
    let capped: Vec<GroupKey> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Cap { group, .. } => Some(*group),
            _ => None,
        })
        .collect();
    assert_eq!(
        capped,
        vec![GroupKey { workload: WorkloadId(1), task: 0 }, GroupKey { workload: WorkloadId(2), task: 0 }]
    );
    let text = plan.actions[0].to_string();
    assert!(
        text.contains("site valence would draw") && text.contains("best-effort work is capped before"),
        "{text}"
    );
}

#[test]
fn a_full_rack_caps_its_own_work_only() {
    // Rack r1 (nodes 0 and 2) is tight; r2 has room.
    let groups = vec![
        group(1, 0, PowerTier::Training, 700),
        group(2, 1, PowerTier::Training, 700),
        group(3, 2, PowerTier::Inference, 700),
    ];
    let p = picture(1_000_000, 17_000, groups);
    let plan = PowerManager::default().plan(&p);
    assert_guarantee(&p, &plan.limits);
    assert_eq!(plan.limits[1], Watts(700), "r2 is not constrained");
    // r1 has 17 − 9.2 − 3.2 kW = 4.6 kW above its floors: inference takes 4 kW, training
    // the remaining 600 W (75 W per GPU above its minimum).
    assert_eq!(plan.limits[2], Watts(700));
    assert_eq!(plan.limits[0], Watts(275), "training in the full rack gives way to inference");
    let Some(Action::Cap { why, .. }) = plan.actions.first() else { panic!("{:?}", plan.actions) };
    assert_eq!(why.scope, "rack r1");
}

#[test]
fn an_impossible_limit_names_the_work_to_preempt_lowest_tier_first() {
    let groups = vec![
        group(1, 0, PowerTier::LatencyCritical, 300),
        group(2, 1, PowerTier::BestEffort, 300),
        group(3, 2, PowerTier::Training, 300),
    ];
    // Floors: 3 × (4.6 kW + 8 × 200 W) = 18.6 kW; the site may draw 13 kW.
    let p = picture(13_000, 100_000, groups);
    let plan = PowerManager::default().plan(&p);
    let Some(Action::Infeasible { scope, floor, preempt, latency_critical, .. }) = plan.actions.first()
    else {
        panic!("{:?}", plan.actions)
    };
    assert_eq!(scope, "site valence");
    assert_eq!(*floor, Watts(18_600));
    assert_eq!(preempt, &vec![WorkloadId(2)], "best effort goes first, and freeing 1.6 kW... ");
    assert!(!latency_critical);
}

#[test]
fn uncapping_waits_for_the_demand_to_stay_covered() {
    let config = ManagerConfig { restore_after: 3, margin: 0.0 };
    let mut m = PowerManager::new(config);
    let tight = picture(
        20_000,
        100_000,
        vec![group(1, 0, PowerTier::Training, 700), group(2, 1, PowerTier::Inference, 700)],
    );
    let plan = m.plan(&tight);
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::Cap { group, .. } if group.workload == WorkloadId(1)))
    );
    assert!(m.is_capped(&GroupKey { workload: WorkloadId(1), task: 0 }));
    let roomy = picture(
        100_000,
        100_000,
        vec![group(1, 0, PowerTier::Training, 700), group(2, 1, PowerTier::Inference, 700)],
    );
    for round in 1..=3 {
        let plan = m.plan(&roomy);
        let uncapped = plan.actions.iter().any(|a| matches!(a, Action::Uncap { .. }));
        assert_eq!(uncapped, round == 3, "round {round}: {:?}", plan.actions);
    }
    assert!(!m.is_capped(&GroupKey { workload: WorkloadId(1), task: 0 }));
}

#[test]
fn a_throttled_group_asks_for_its_tdp() {
    let mut g = group(1, 0, PowerTier::Training, 450);
    g.limit = Watts(450);
    g.throttled = 1.0;
    let p = picture(100_000, 100_000, vec![g]);
    let plan = PowerManager::default().plan(&p);
    assert_eq!(plan.wanted[0], Watts(700));
    assert_eq!(plan.limits[0], Watts(700));
}

#[test]
fn tiers_follow_priority_and_shape() {
    let gang = Shape::Gang { tasks: 2, topology: gigawatt_core::Topology::Any };
    let service = Shape::Service { replicas: 2 };
    assert_eq!(PowerTier::of(PriorityClass::BestEffort, service), PowerTier::BestEffort);
    assert_eq!(PowerTier::of(PriorityClass::Standard, gang), PowerTier::Training);
    assert_eq!(PowerTier::of(PriorityClass::Standard, service), PowerTier::Inference);
    assert_eq!(PowerTier::of(PriorityClass::LatencyCritical, Shape::Single), PowerTier::LatencyCritical);
}

fn tier_strategy() -> impl Strategy<Value = PowerTier> {
    prop_oneof![
        Just(PowerTier::BestEffort),
        Just(PowerTier::Training),
        Just(PowerTier::Inference),
        Just(PowerTier::LatencyCritical)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Whatever the work draws and whatever the limits, a feasible picture gets a plan
    /// whose envelope fits every rack and site, and a latency-critical group is held below
    /// its demand only when every lower tier sharing its rack or site is at its minimum.
    #[test]
    fn plans_never_exceed_a_limit_and_cap_latency_critical_work_last(
        spec in prop::collection::vec((0usize..6, tier_strategy(), 80u64..=700, 1u32..=8, 0.0f64..=1.0), 1..24),
        site_extra in 0u64..60_000,
        rack_extra in 0u64..40_000,
        rounds in 1usize..4,
    ) {
        let groups: Vec<Group> = spec
            .iter()
            .enumerate()
            .map(|(i, (node, tier, draw, gpus, throttled))| Group {
                key: GroupKey { workload: WorkloadId(i as u64), task: 0 },
                node: *node,
                tier: *tier,
                gpus: *gpus,
                gpu: H100,
                limit: Watts((*draw).max(200)),
                draw: Watts(*draw),
                throttled: *throttled,
            })
            .collect();
        // Limits just above the floors, so that plans are feasible but often tight.
        let mut p = picture(0, 0, groups);
        p.nodes = (0..6).map(|n| NodePicture { rack: n % 2, fixed: Watts(4600) }).collect();
        let floor_of = |pred: &dyn Fn(usize) -> bool| -> u64 {
            let fixed: u64 = (0..6).filter(|n| pred(*n)).map(|_| 4600).sum();
            let gpus: u64 = p.groups.iter().filter(|g| pred(g.node)).map(|g| 200 * u64::from(g.gpus)).sum();
            fixed + gpus
        };
        let r0 = floor_of(&|n| n % 2 == 0) + rack_extra;
        let r1 = floor_of(&|n| n % 2 == 1) + rack_extra;
        p.racks[0].domain.limit = Watts(r0);
        p.racks[1].domain.limit = Watts(r1);
        p.sites[0].limit = Watts(floor_of(&|_| true) + site_extra);
        let mut m = PowerManager::default();
        for _ in 0..rounds {
            let plan = m.plan(&p);
            let infeasible = plan.actions.iter().any(|a| matches!(a, Action::Infeasible { .. }));
            prop_assert!(!infeasible, "a feasible picture got {:?}", plan.actions);
            assert_guarantee(&p, &plan.limits);
            for (i, g) in p.groups.iter().enumerate() {
                if g.tier != PowerTier::LatencyCritical || plan.limits[i] >= plan.wanted[i] {
                    continue;
                }
                // Held short: every lower tier in its rack (if the rack bound) or its site
                // is at its minimum.
                let rack = p.nodes[g.node].rack;
                for (j, h) in p.groups.iter().enumerate() {
                    let same_rack = p.nodes[h.node].rack == rack;
                    if h.tier < PowerTier::LatencyCritical && same_rack {
                        prop_assert_eq!(plan.limits[j], Watts(200), "{:?} above its minimum while {:?} is short", h.key, g.key);
                    }
                }
            }
            for (g, l) in p.groups.iter_mut().zip(&plan.limits) {
                g.limit = *l;
            }
        }
    }
}

#[test]
fn a_tier_short_of_power_shares_it_evenly() {
    // Three training groups that all want their TDP on a site with 6.4 kW above the floors.
    let groups: Vec<Group> = (0..3).map(|i| group(i + 1, i as usize, PowerTier::Training, 700)).collect();
    let p = picture(25_000, 100_000, groups);
    let plan = PowerManager::default().plan(&p);
    assert_eq!(plan.limits, vec![Watts(466); 3], "6.4 kW / 24 GPUs = 266 W each above 200 W");
}
