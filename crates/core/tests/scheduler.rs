//! Scenario tests of the scheduling core: one behaviour each, on small fleets written as
//! fleet TOML (and on the bundled `fleets/france.toml`), asserting on decisions and on
//! their explanations. Every event goes through the harness in `common`, which also
//! checks every invariant (budgets, gangs, residency, queue, work conservation, decisions
//! against state) after each one.

mod common;

use std::collections::BTreeSet;

use common::{FRANCE_NOW, Harness, Kind, LAB, france, job};
use gigawatt_core::state::{ModelInfo, NewNode};
use gigawatt_core::{
    ClusterState, CoreError, CoreRng, DataClass, Decision, Event, PendingWhy, PolicyKind, PreemptWhy,
    PriorityClass, Reason, RejectWhy, Scheduler, SchedulerConfig, TaskPlacement, Topology, WorkloadId,
    WorkloadStatus,
};
use gigawatt_units::{GpuMilli, Mebibytes, MilliCores, Watts};
use rand::SeedableRng;

/// One rack with one HGX H100 node, `one-r01-n01`.
const ONE: &str = r#"
[node_type.hgx]
gpu_model = "H100-SXM"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 4600

[[site]]
id = "one"
country = "FR"
region = "eu-fr"
pue = 1.0
grid = [{ from = 2026-01-01, capacity_mw = 1 }]

  [[site.rack_group]]
  prefix = "one-r"
  count = 1
  node_type = "hgx"
  nodes_per_rack = 1
"#;

/// Four racks of one HGX H100 node each, in two islands of two racks:
/// `pod-r01`/`pod-r02` in `pod-ib01`, `pod-r03`/`pod-r04` in `pod-ib02`.
const POD: &str = r#"
[node_type.hgx]
gpu_model = "H100-SXM"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 4600

[[site]]
id = "pod"
country = "DE"
region = "eu-de"
pue = 1.0
grid = [{ from = 2026-01-01, capacity_mw = 1 }]

  [[site.rack_group]]
  prefix = "pod-r"
  count = 4
  node_type = "hgx"
  nodes_per_rack = 1
  network_domain = "pod-ib{n}"
  racks_per_domain = 2
"#;

/// Fifteen nodes, each turned away from a 4 × H100, personal-data task for a different
/// reason: 2 in the US (data residency), 3 with A100s (model), 4 with only 2 GPUs
/// (insufficient GPU), 1 in a 7 kW rack (a busy node with 4 GPUs needs 7.4 kW), 5 at a
/// site with a 7 kW budget.
const REASONS: &str = r#"
[node_type.h100x8]
gpu_model = "H100-SXM"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 4600

[node_type.h100x2]
gpu_model = "H100-SXM"
gpus = 2
cpu_millicores = 64000
memory_mib = 524288
base_power_w = 1000

[node_type.a100x8]
gpu_model = "A100-SXM"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 3000

[[site]]
id = "us-east"
country = "US"
region = "us-east"
certifications = ["soc2"]
pue = 1.0
grid = [{ from = 2026-01-01, capacity_mw = 1 }]

  [[site.rack_group]]
  prefix = "us-h"
  count = 1
  node_type = "h100x8"
  nodes_per_rack = 2

[[site]]
id = "fr-main"
country = "FR"
region = "eu-fr"
pue = 1.0
grid = [{ from = 2026-01-01, capacity_mw = 1 }]

  [[site.rack_group]]
  prefix = "fr-a"
  count = 1
  node_type = "a100x8"
  nodes_per_rack = 3

  [[site.rack_group]]
  prefix = "fr-small"
  count = 1
  node_type = "h100x2"
  nodes_per_rack = 4

  [[site.rack_group]]
  prefix = "fr-tight"
  count = 1
  node_type = "h100x8"
  nodes_per_rack = 1
  power_limit_kw = 7

[[site]]
id = "fr-edge"
country = "FR"
region = "eu-fr"
pue = 1.0
grid = [{ from = 2026-01-01, capacity_mw = 0.007 }]

  [[site.rack_group]]
  prefix = "fr-edge"
  count = 1
  node_type = "h100x8"
  nodes_per_rack = 5
"#;

fn id(n: u64) -> WorkloadId {
    WorkloadId(n)
}

fn pending_why(d: &[Decision]) -> &PendingWhy {
    d.iter()
        .find_map(|d| match d {
            Decision::Pending { why, .. } => Some(why),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no pending decision in {d:?}"))
}

fn placed_tasks(d: &Decision) -> &[TaskPlacement] {
    match d {
        Decision::Placed { tasks, .. } => tasks,
        other => panic!("expected a placement, got {other}"),
    }
}

/// Free capacity and power of every node, rack and site, without the cache versions.
fn usage(s: &ClusterState) -> String {
    let mut out = String::new();
    for n in &s.nodes {
        out += &format!(
            "{} up={} gpu={:?} cpu={} mem={} tasks={} power={}\n",
            n.name, n.up, n.gpu_free, n.cpu_free, n.mem_free, n.tasks, n.power
        );
    }
    for r in &s.racks {
        out += &format!("{} {}\n", r.id, r.power);
    }
    for site in &s.sites {
        out += &format!("{} {} / {}\n", site.id, site.power, site.budget);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Explanations
// ---------------------------------------------------------------------------------------

#[test]
fn pending_explanation_counts_each_reason_per_node() {
    let mut h = Harness::toml(REASONS);
    let w = || job(1).gpus(4).models(&["H100-SXM"]).cores(8).gib(64).class(DataClass::Personal);
    let d = h.arrive(w());
    let why = pending_why(&d);
    assert_eq!(why.nodes_total, 15);
    assert_eq!(why.nodes_fit, 0);
    let counts: Vec<(Reason, u32)> = why.rejected.iter().map(|(r, n)| (*r, *n)).collect();
    assert_eq!(
        counts,
        vec![
            (Reason::DataResidency, 2),
            (Reason::GpuModelNotAllowed, 3),
            (Reason::InsufficientGpu, 4),
            (Reason::RackPowerLimit, 1),
            (Reason::SitePowerBudget, 5),
        ]
    );
    assert_eq!(why.top_reason(), Some(Reason::SitePowerBudget));
    assert_eq!(
        d[0].to_string(),
        "w-1 pending: 0/15 nodes fit: 5 site power budget, 4 insufficient GPU, \
         3 GPU model not allowed, 2 data residency, 1 rack power limit"
    );
    assert_eq!(h.sched.pending().collect::<Vec<_>>(), vec![id(1)]);

    // A node that goes down is counted as such, not under its old reason.
    h.ok(Event::Cancel(id(1)));
    h.ok(Event::NodeRemoved { node: "fr-a01-n02".into() });
    let mut second = w();
    second.0.id = id(2);
    let d = h.arrive(second);
    assert_eq!(
        d[0].to_string(),
        "w-2 pending: 0/15 nodes fit: 5 site power budget, 4 insufficient GPU, \
         2 data residency, 2 GPU model not allowed, 1 node down, 1 rack power limit"
    );
}

#[test]
fn pending_explanation_counts_cpu_memory_and_down_nodes() {
    let mut h = Harness::toml(LAB);
    h.arrive(job(1).gpus(0).cores(220));
    h.arrive(job(2).gpus(0).cores(220));
    h.arrive(job(3).gpus(0).cores(8).gib(2000));
    assert_eq!(h.placement(1), vec![Some("lab-r01-n01".into())]);
    assert_eq!(h.placement(2), vec![Some("lab-r01-n02".into())]);
    assert_eq!(h.placement(3), vec![Some("lab-r02-n01".into())]);
    h.ok(Event::NodeRemoved { node: "lab-r02-n02".into() });
    let d = h.arrive(job(4).gpus(1).cores(8).gib(100));
    let why = pending_why(&d);
    assert_eq!(why.rejected.get(&Reason::InsufficientCpu), Some(&2));
    assert_eq!(why.rejected.get(&Reason::InsufficientMemory), Some(&1));
    assert_eq!(why.rejected.get(&Reason::NodeDown), Some(&1));
    assert_eq!(
        d[0].to_string(),
        "w-4 pending: 0/4 nodes fit: 2 insufficient CPU, 1 node down, 1 insufficient memory"
    );
}

#[test]
fn placement_explanation_names_node_gpus_and_score_terms() {
    let mut h = Harness::toml(LAB);
    let d = h.arrive(job(1).gpus(2).cores(4).gib(16));
    let [Decision::Placed { workload, tasks, why }] = d.as_slice() else {
        panic!("expected one placement, got {d:?}");
    };
    assert_eq!(*workload, id(1));
    let two_gpus = vec![(0, GpuMilli::WHOLE), (1, GpuMilli::WHOLE)];
    assert_eq!(
        tasks,
        &vec![TaskPlacement {
            task: 0,
            node: "lab-r01-n01".into(),
            gpus: two_gpus.clone(),
            power: tasks[0].power
        }]
    );
    assert_eq!(why.policy, "best-fit");
    let t = &why.tasks[0];
    assert_eq!((t.task, t.node.as_str(), &t.gpus), (0, "lab-r01-n01", &two_gpus));
    assert_eq!(t.candidates, 4);
    // An idle node starts: base power plus two 700 W GPUs and six idle ones (80 W each).
    assert_eq!(t.power, Watts(4600 + 2 * 700 + 6 * 80));
    let names: Vec<&str> = t.terms.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["normalised_leftover"]);
    // Leftover after placement: 220 of 128 reference cores and 6 of 8 reference GPUs.
    let expected = 0.5 * 220_000.0 / 128_000.0 + 0.5 * 6_000.0 / 8_000.0;
    assert!((t.terms[0].value - expected).abs() < 1e-9, "{:?}", t.terms);
    assert_eq!(
        d[0].to_string(),
        "w-1 placed: task 0 on lab-r01-n01 (GPUs [0, 1]) by best-fit: score 0.000 among 4 candidates"
    );

    // A share of one GPU goes to the tightest GPU that fits: the one already shared.
    h.arrive(job(2).share(600));
    let d = h.arrive(job(3).share(300));
    let t = &placed_tasks(&d[0])[0];
    assert_eq!(t.node, "lab-r01-n01");
    assert_eq!(t.gpus, vec![(2, GpuMilli(300))]);
}

#[test]
fn fgd_explanation_reports_fragmentation_terms() {
    let mut h = Harness::new(common::fleet(LAB), PolicyKind::Fgd, 1);
    let d = h.arrive(job(1).share(500));
    let Decision::Placed { why, .. } = &d[0] else {
        panic!("expected a placement, got {d:?}");
    };
    assert_eq!(why.policy, "fgd");
    let names: Vec<&str> = why.tasks[0].terms.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "fragmentation_before_milli_gpu",
            "fragmentation_after_milli_gpu",
            "fragmentation_increase_milli_gpu"
        ]
    );
    let v: Vec<f64> = why.tasks[0].terms.iter().map(|t| t.value).collect();
    assert!((v[1] - v[0] - v[2]).abs() < 1e-9, "{v:?}");
    assert!(d[0].to_string().contains("by fgd"), "{}", d[0]);
}

// ---------------------------------------------------------------------------------------
// Gangs and services
// ---------------------------------------------------------------------------------------

#[test]
fn gang_is_placed_whole_within_one_rack() {
    let mut h = Harness::toml(LAB);
    // Rack 1 keeps 2 + 8 free GPUs: room for two 4-GPU ranks, not three.
    h.arrive(job(1).gpus(6));
    let d = h.arrive(job(2).gpus(4).gang(3, Topology::SameRack));
    assert_eq!(d.len(), 1, "{d:?}");
    let tasks = placed_tasks(&d[0]);
    assert_eq!(tasks.iter().map(|t| t.task).collect::<Vec<_>>(), vec![0, 1, 2]);
    let racks: BTreeSet<String> = tasks.iter().map(|t| h.rack_of(&t.node)).collect();
    assert_eq!(racks, BTreeSet::from(["lab-r02".to_string()]));
    assert_eq!(h.sched.status(id(2)), Some(WorkloadStatus::Running));
}

#[test]
fn gang_is_placed_whole_within_one_network_domain() {
    let mut h = Harness::toml(POD);
    h.arrive(job(1).gpus(8));
    let d = h.arrive(job(2).gpus(8).gang(2, Topology::SameDomain));
    let tasks = placed_tasks(&d[0]);
    let nodes: Vec<&str> = tasks.iter().map(|t| t.node.as_str()).collect();
    assert_eq!(nodes, vec!["pod-r03-n01", "pod-r04-n01"]);
    assert!(tasks.iter().all(|t| h.domain_of(&t.node) == "pod-ib02"));
}

#[test]
fn gang_on_one_node_shares_that_node() {
    let mut h = Harness::toml(POD);
    h.arrive(job(1).gpus(4));
    let d = h.arrive(job(2).gpus(2).gang(3, Topology::SameNode));
    let tasks = placed_tasks(&d[0]);
    assert_eq!(tasks.len(), 3);
    let nodes: BTreeSet<&str> = tasks.iter().map(|t| t.node.as_str()).collect();
    assert_eq!(nodes.len(), 1, "{tasks:?}");
    // Six whole GPUs, all distinct.
    let gpus: BTreeSet<u16> = tasks.iter().flat_map(|t| t.gpus.iter().map(|g| g.0)).collect();
    assert_eq!(gpus.len(), 6);
}

#[test]
fn gang_that_no_group_can_hold_waits_with_a_topology_reason_and_holds_nothing() {
    let mut h = Harness::toml(LAB);
    // One 4-GPU, 120-core task per node: every node keeps 4 GPUs and 104 cores.
    for n in 1..=4 {
        h.arrive(job(n).gpus(4).cores(120));
    }
    let before = usage(h.sched.state());
    let d = h.arrive(job(9).gpus(4).gang(2, Topology::SameNode));
    let why = pending_why(&d);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(why.nodes_fit, 4);
    assert_eq!(why.rejected.get(&Reason::Topology), Some(&4));
    assert_eq!(why.tasks_pending, 2);
    assert_eq!(d[0].to_string(), "w-9 pending: 4/4 nodes fit: 4 gang topology");
    assert_eq!(h.placement(9), vec![None, None]);
    assert_eq!(usage(h.sched.state()), before);
    assert_eq!(h.sched.status(id(9)), Some(WorkloadStatus::Pending));
}

#[test]
fn gang_rolled_back_midway_by_a_rack_limit_leaves_nothing_behind() {
    // Each node fits one 8-GPU rank on its own (10.2 kW), but the 15 kW rack cannot run
    // both: the first rank is placed, the second refused, and the first given back.
    let mut h = Harness::toml(
        r#"
[node_type.hgx]
gpu_model = "H100-SXM"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 4600

[[site]]
id = "hot"
country = "FR"
region = "eu-fr"
pue = 1.0
grid = [{ from = 2026-01-01, capacity_mw = 1 }]

  [[site.rack_group]]
  prefix = "hot-r"
  count = 1
  node_type = "hgx"
  nodes_per_rack = 2
  power_limit_kw = 15
"#,
    );
    let before = usage(h.sched.state());
    let d = h.arrive(job(1).gpus(8).gang(2, Topology::SameRack));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].to_string(), "w-1 pending: 2/2 nodes fit: 2 gang topology");
    assert_eq!(h.placement(1), vec![None, None]);
    assert_eq!(usage(h.sched.state()), before);
    // A single rank still fits.
    let d = h.arrive(job(2).gpus(8));
    assert!(matches!(d[0], Decision::Placed { .. }), "{d:?}");
}

#[test]
fn same_domain_gang_stays_on_one_site_when_two_sites_name_their_islands_alike() {
    // Two sites, each with one 8-GPU node in an island both happen to call "ib". An
    // InfiniBand island cannot span two sites hundreds of kilometres apart, so a 2-node
    // same-domain gang has no island that can hold it.
    let mut h = Harness::toml(
        r#"
[node_type.hgx]
gpu_model = "H100-SXM"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 4600

[[site]]
id = "paris"
country = "FR"
region = "eu-fr"
pue = 1.0
grid = [{ from = 2026-01-01, capacity_mw = 1 }]

  [[site.rack_group]]
  prefix = "par-r"
  count = 1
  node_type = "hgx"
  nodes_per_rack = 1
  network_domain = "ib"

[[site]]
id = "frankfurt"
country = "DE"
region = "eu-de"
pue = 1.0
grid = [{ from = 2026-01-01, capacity_mw = 1 }]

  [[site.rack_group]]
  prefix = "fra-r"
  count = 1
  node_type = "hgx"
  nodes_per_rack = 1
  network_domain = "ib"
"#,
    );
    let d = h.arrive(job(1).gpus(8).gang(2, Topology::SameDomain));
    let sites: BTreeSet<String> = h.placement(1).iter().flatten().map(|n| h.site_of(n)).collect();
    assert!(sites.len() <= 1, "a same-domain gang was spread over sites {sites:?}: {}", d[0]);
}

#[test]
fn service_replicas_are_placed_individually_and_partially() {
    let mut h = Harness::toml(ONE);
    let d = h.arrive(job(1).gpus(4).service(3));
    assert_eq!(d.len(), 2, "{d:?}");
    let first = placed_tasks(&d[0]);
    assert_eq!(first.iter().map(|t| t.task).collect::<Vec<_>>(), vec![0, 1]);
    let why = pending_why(&d);
    assert_eq!((why.tasks_placed, why.tasks_pending), (2, 1));
    assert_eq!(d[1].to_string(), "w-1 pending: 0/1 nodes fit: 1 insufficient GPU (2 of 3 tasks placed)");
    assert_eq!(h.sched.status(id(1)), Some(WorkloadStatus::Pending));
    assert_eq!(h.placement(1), vec![Some("one-r01-n01".into()), Some("one-r01-n01".into()), None]);

    // A node joins: the missing replica lands there, the others stay put.
    let d = h.ok(Event::NodeAdded(NewNode {
        name: "one-r01-n02".into(),
        rack: "one-r01".into(),
        gpu_model: Some(ModelInfo {
            id: "H100-SXM".into(),
            tdp: Watts(700),
            idle: Watts(80),
            min_limit: Watts(200),
        }),
        gpu_count: 8,
        cpu: MilliCores(224_000),
        memory: Mebibytes(2_097_152),
        base_power: Watts(4600),
    }));
    assert_eq!(d.len(), 1, "{d:?}");
    let t = placed_tasks(&d[0]);
    assert_eq!((t[0].task, t[0].node.as_str()), (2, "one-r01-n02"));
    assert_eq!(h.sched.status(id(1)), Some(WorkloadStatus::Running));
    assert_eq!(h.sched.pending().count(), 0);
}

// ---------------------------------------------------------------------------------------
// The queue
// ---------------------------------------------------------------------------------------

#[test]
fn completion_frees_resources_and_places_the_queue_by_priority_then_arrival() {
    // Without priority preemption, so that the latency-critical job waits its turn too.
    let config = SchedulerConfig { priority_preemption: false, ..SchedulerConfig::default() };
    let mut h = Harness::configured(common::fleet(ONE), PolicyKind::BestFit, 7, common::NOW, config);
    h.arrive(job(1).gpus(8));
    for (n, p) in [
        (2, PriorityClass::BestEffort),
        (3, PriorityClass::Standard),
        (4, PriorityClass::Standard),
        (5, PriorityClass::LatencyCritical),
    ] {
        let d = h.arrive(job(n).gpus(8).prio(p));
        assert!(matches!(d[..], [Decision::Pending { .. }]), "{d:?}");
    }
    assert_eq!(h.sched.pending().collect::<Vec<_>>(), vec![id(5), id(3), id(4), id(2)]);
    let freed = |h: &Harness| h.sched.state().nodes[0].free_whole;
    assert_eq!(freed(&h), 0);
    let next = |h: &mut Harness, done: u64| -> Vec<WorkloadId> {
        let d = h.ok(Event::Completion(id(done)));
        assert_eq!(d[0], Decision::Released { workload: id(done) });
        d.iter().map(Decision::workload).collect()
    };
    assert_eq!(next(&mut h, 1), vec![id(1), id(5)]);
    assert_eq!(next(&mut h, 5), vec![id(5), id(3)]);
    assert_eq!(next(&mut h, 3), vec![id(3), id(4)]);
    assert_eq!(next(&mut h, 4), vec![id(4), id(2)]);
    assert_eq!(next(&mut h, 2), vec![id(2)]);
    assert_eq!(freed(&h), 8);
    assert_eq!(h.sched.state().nodes[0].power, Watts::ZERO);
    assert_eq!(h.site_power("one"), Watts::ZERO);
}

#[test]
fn cancelling_a_waiting_workload_takes_it_off_the_queue() {
    let mut h = Harness::toml(ONE);
    h.arrive(job(1).gpus(8));
    h.arrive(job(2).gpus(8));
    h.arrive(job(3).gpus(8));
    assert_eq!(h.ok(Event::Cancel(id(2))), vec![Decision::Released { workload: id(2) }]);
    assert_eq!(h.sched.pending().collect::<Vec<_>>(), vec![id(3)]);
    assert_eq!(h.sched.status(id(2)), None);
    let d = h.ok(Event::Completion(id(1)));
    assert_eq!(d.iter().map(Decision::workload).collect::<Vec<_>>(), vec![id(1), id(3)]);
}

#[test]
fn partially_placed_service_is_listed_once_in_the_queue_after_eviction() {
    // Every check but the queue's panics at once; the queue is asserted below.
    let mut h = Harness::toml(ONE).only_fatal(&[
        Kind::Budget,
        Kind::Gang,
        Kind::Residency,
        Kind::Unchanged,
        Kind::Decisions,
        Kind::Liveness,
    ]);
    let d = h.arrive(job(1).gpus(4).service(3));
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(h.sched.pending().collect::<Vec<_>>(), vec![id(1)]);
    // Its node goes away: the service is requeued whole and still waits.
    let d = h.ok(Event::NodeRemoved { node: "one-r01-n01".into() });
    assert!(matches!(d[..], [Decision::Preempted { workload, .. }] if workload == id(1)), "{d:?}");
    assert_eq!(h.sched.status(id(1)), Some(WorkloadStatus::Pending));
    assert_eq!(
        h.sched.pending().collect::<Vec<_>>(),
        vec![id(1)],
        "pending() must list a waiting workload once"
    );
}

#[test]
fn work_asking_for_a_model_no_node_has_is_refused_at_submission_until_one_joins() {
    let mut h = Harness::toml(ONE);
    // No T4 in the fleet: refused at once, with what the fleet has, as sbatch refuses
    // a node configuration that is not available.
    let d = h.arrive(job(1).models(&["T4"]));
    assert!(matches!(&d[..], [Decision::Rejected { why: RejectWhy::ModelNotInFleet { .. }, .. }]), "{d:?}");
    assert!(d[0].to_string().contains("no node of this fleet has a GPU of model T4; it has"), "{}", d[0]);
    let t4 = NewNode {
        name: "one-r01-t4".into(),
        rack: "one-r01".into(),
        gpu_model: Some(ModelInfo { id: "T4".into(), tdp: Watts(70), idle: Watts(20), min_limit: Watts(60) }),
        gpu_count: 4,
        cpu: MilliCores(64_000),
        memory: Mebibytes(262_144),
        base_power: Watts(800),
    };
    h.ok(Event::NodeAdded(t4));
    h.arrive(job(2).models(&["T4"]));
    assert_eq!(h.placement(2), vec![Some("one-r01-t4".to_string())]);
}

#[test]
fn a_gang_no_group_of_its_topology_could_hold_is_refused_at_submission() {
    let mut h = Harness::toml(LAB);
    // Two 8-GPU tasks on one 8-GPU node: never.
    let d = h.arrive(job(1).gpus(8).gang(2, Topology::SameNode));
    let [Decision::Rejected { why: RejectWhy::NeverFits { message }, .. }] = &d[..] else { panic!("{d:?}") };
    assert!(message.contains("holds 1 such tasks even empty"), "{message}");
    // More 8-GPU tasks than the fleet has nodes, anywhere: never.
    let d = h.arrive(job(2).gpus(8).gang(5, Topology::Any));
    assert!(matches!(&d[..], [Decision::Rejected { why: RejectWhy::NeverFits { .. }, .. }]), "{d:?}");
    // What fits an empty group waits or runs as before.
    let d = h.arrive(job(3).gpus(4).gang(2, Topology::SameNode));
    assert!(matches!(&d[..], [Decision::Placed { .. }]), "{d:?}");
}

/// Every node of LAB keeps 2 free GPUs: `lab-r01-n01` holds a best-effort 2-GPU job (w-4)
/// and a standard 4-GPU one (w-6); the three others a standard 6-GPU job each (w-1..w-3).
fn lab_with_two_free_gpus_everywhere() -> Harness {
    let mut h = Harness::toml(LAB);
    h.arrive(job(4).gpus(2).prio(PriorityClass::BestEffort));
    h.arrive(job(6).gpus(4));
    for n in 1..=3 {
        h.arrive(job(n).gpus(6));
    }
    for (w, node) in
        [(4, "lab-r01-n01"), (6, "lab-r01-n01"), (1, "lab-r01-n02"), (2, "lab-r02-n01"), (3, "lab-r02-n02")]
    {
        assert_eq!(h.placement(w), vec![Some(node.to_string())], "w-{w}");
    }
    h
}

#[test]
fn higher_priority_work_preempts_the_least_important_work_and_says_why() {
    let mut h = lab_with_two_free_gpus_everywhere().fatal_except(Kind::Liveness);
    // Best effort never preempts. A standard job needing 6 GPUs would have to evict
    // standard work too, which it may not: evicting the best-effort job alone frees only 4.
    let d = h.arrive(job(7).gpus(4).prio(PriorityClass::BestEffort));
    assert!(matches!(d[..], [Decision::Pending { .. }]), "{d:?}");
    let d = h.arrive(job(8).gpus(6));
    assert!(matches!(d[..], [Decision::Pending { .. }]), "{d:?}");
    h.ok(Event::Cancel(id(7)));
    h.ok(Event::Cancel(id(8)));

    // A latency-critical job needs 4 GPUs: one best-effort victim on lab-r01-n01 suffices.
    let d = h.arrive(job(5).gpus(4).prio(PriorityClass::LatencyCritical));
    assert_eq!(
        d[0],
        Decision::Preempted {
            workload: id(4),
            why: PreemptWhy::Priority { by: id(5), class: PriorityClass::LatencyCritical }
        }
    );
    assert_eq!(d[0].to_string(), "w-4 preempted: preempted for w-5 (latency-critical)");
    assert_eq!(placed_tasks(&d[1])[0].node, "lab-r01-n01");
    for w in [1, 2, 3, 6] {
        assert_eq!(h.sched.status(id(w)), Some(WorkloadStatus::Running), "w-{w}");
    }
}

#[test]
fn preempted_workload_is_placed_again_where_it_still_fits() {
    // Every check but work conservation panics at once; that one is asserted below.
    let mut h = lab_with_two_free_gpus_everywhere().fatal_except(Kind::Liveness);
    let d = h.arrive(job(5).gpus(4).prio(PriorityClass::LatencyCritical));
    assert!(matches!(d[0], Decision::Preempted { workload, .. } if workload == id(4)), "{d:?}");
    // w-4 needs 2 GPUs; three nodes had 2 free each, and it takes one of them in the
    // same event.
    assert_eq!(
        h.sched.status(id(4)),
        Some(WorkloadStatus::Running),
        "the preempted best-effort job waits although nodes have room for it; decisions: {d:?}"
    );
    assert!(matches!(d.last(), Some(Decision::Placed { workload, .. }) if *workload == id(4)), "{d:?}");
    let free_elsewhere = h.sched.state().nodes.iter().filter(|n| n.free_whole >= 2).count();
    assert_eq!(free_elsewhere, 2, "w-4 used one of the three nodes with room");
}

// ---------------------------------------------------------------------------------------
// Nodes and power
// ---------------------------------------------------------------------------------------

#[test]
fn node_removal_requeues_the_whole_gang_and_it_lands_elsewhere() {
    let mut h = Harness::toml(LAB);
    let d = h.arrive(job(1).gpus(8).gang(2, Topology::SameRack));
    let first: Vec<String> = placed_tasks(&d[0]).iter().map(|t| t.node.clone()).collect();
    assert_eq!(first, vec!["lab-r01-n01", "lab-r01-n02"]);

    let d = h.ok(Event::NodeRemoved { node: "lab-r01-n02".into() });
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(
        d[0],
        Decision::Preempted { workload: id(1), why: PreemptWhy::NodeLost { node: "lab-r01-n02".into() } }
    );
    assert_eq!(d[0].to_string(), "w-1 preempted: node lab-r01-n02 was lost; requeued whole");
    let again = placed_tasks(&d[1]);
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|t| h.rack_of(&t.node) == "lab-r02"), "{again:?}");
    // Nothing is left on the healthy node of rack 1.
    assert_eq!(h.sched.state().nodes[0].tasks, 0);
    assert_eq!(h.sched.state().nodes[0].power, Watts::ZERO);

    // The node is back, and takes work again.
    assert!(h.ok(Event::NodeRestored { node: "lab-r01-n02".into() }).is_empty());
    let d = h.arrive(job(2).gpus(8).gang(2, Topology::SameRack));
    let nodes: Vec<&str> = placed_tasks(&d[0]).iter().map(|t| t.node.as_str()).collect();
    assert_eq!(nodes, vec!["lab-r01-n01", "lab-r01-n02"]);
}

#[test]
fn budget_cut_preempts_lowest_priority_then_youngest_and_ends_under_budget() {
    let mut h = Harness::toml(LAB);
    for (n, p) in [
        (1, PriorityClass::LatencyCritical),
        (2, PriorityClass::Standard),
        (3, PriorityClass::Standard),
        (4, PriorityClass::BestEffort),
    ] {
        h.arrive(job(n).gpus(8).prio(p));
    }
    // Four busy nodes at 4.6 kW + 8 × 700 W.
    assert_eq!(h.site_power("lab"), Watts(4 * 10_200));

    let d = h.ok(Event::BudgetChanged { site: "lab".into(), budget: Watts(25_000) });
    let why = PreemptWhy::PowerBudget {
        site: "lab".into(),
        budget: Watts(25_000),
        reserved: Watts(40_800),
        at_minimum: false,
    };
    assert_eq!(
        d,
        vec![
            Decision::Preempted { workload: id(4), why: why.clone() },
            Decision::Preempted { workload: id(3), why },
        ]
    );
    assert_eq!(
        d[0].to_string(),
        "w-4 preempted: site lab power budget cut to 25.0 kW while 40.8 kW was reserved; \
         lowest priority preempted first"
    );
    assert_eq!(h.site_power("lab"), Watts(20_400));
    assert!(h.site_power("lab") <= Watts(25_000));
    assert_eq!(h.sched.status(id(1)), Some(WorkloadStatus::Running));
    assert_eq!(h.sched.status(id(2)), Some(WorkloadStatus::Running));
    assert_eq!(h.sched.pending().collect::<Vec<_>>(), vec![id(3), id(4)]);

    // What still waits says why: work of the same shape is ahead of it and did not fit.
    let d = h.arrive(job(5).gpus(8));
    assert_eq!(
        d[0].to_string(),
        "w-5 pending: waiting behind w-3, which asks for the same and is ahead in line"
    );

    // The budget comes back: the queue is placed in priority order (the younger standard
    // workload before the older best-effort one, which then finds no room).
    let d = h.ok(Event::BudgetChanged { site: "lab".into(), budget: Watts(1_000_000) });
    assert_eq!(d.iter().map(Decision::workload).collect::<Vec<_>>(), vec![id(3), id(5)]);
    assert_eq!(h.sched.pending().collect::<Vec<_>>(), vec![id(4)]);
}

#[test]
fn budget_cut_to_zero_sheds_everything_at_that_site_only() {
    let mut h = Harness::toml(REASONS);
    h.arrive(job(1).gpus(8).models(&["A100-SXM"]));
    h.arrive(job(2).gpus(8).models(&["H100-SXM"]));
    let us = h.placement(2)[0].clone().expect("placed");
    assert_eq!(h.site_of(&us), "us-east");
    let d = h.ok(Event::BudgetChanged { site: "fr-main".into(), budget: Watts::ZERO });
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(matches!(d[0], Decision::Preempted { workload, .. } if workload == id(1)));
    assert_eq!(h.site_power("fr-main"), Watts::ZERO);
    assert_eq!(h.sched.status(id(2)), Some(WorkloadStatus::Running));
}

// ---------------------------------------------------------------------------------------
// What is rejected, and what is an error
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_gpu_model_is_rejected_listing_the_known_models() {
    let mut h = Harness::toml(LAB);
    let d = h.arrive(job(1).models(&["H100-SXM", "H100X"]));
    let [Decision::Rejected { workload, why: RejectWhy::UnknownGpuModel { model, known } }] = d.as_slice()
    else {
        panic!("expected a rejection, got {d:?}");
    };
    assert_eq!((*workload, model.as_str()), (id(1), "H100X"));
    let catalog: Vec<String> = h.fleet.catalog.ids().map(str::to_string).collect();
    assert_eq!(known, &catalog);
    assert!(known.iter().any(|m| m == "H100-SXM") && known.len() >= 12);
    assert_eq!(
        d[0].to_string(),
        format!("w-1 rejected: unknown GPU model `H100X`; this fleet has: {}", catalog.join(", "))
    );
    assert_eq!(h.sched.status(id(1)), None);
    assert_eq!(h.sched.all_allocations().count(), 0);

    // Model ids are matched without regard to case.
    let d = h.arrive(job(2).models(&["h100-sxm"]));
    assert!(matches!(d[0], Decision::Placed { .. }), "{d:?}");
}

#[test]
fn invalid_demand_is_rejected_with_a_message_saying_what_is_right() {
    let mut h = Harness::toml(LAB);
    for (n, count, milli) in [(1, 2, 500), (2, 1, 0), (3, 1, 1001), (4, 0, 300), (5, 3, 999)] {
        let d = h.arrive(job(n).raw_gpu(count, milli));
        let [Decision::Rejected { why: RejectWhy::InvalidDemand { message }, .. }] = d.as_slice() else {
            panic!("{count} GPUs at {milli}: expected a rejection, got {d:?}");
        };
        assert!(
            message.contains(&format!("{count} GPU(s) at {milli}/1000"))
                && message.contains("use 1 GPU with a share of 1..=1000, or several whole GPUs (1000 each)"),
            "{message}"
        );
        assert!(d[0].to_string().starts_with(&format!("w-{n} rejected: invalid demand: gpu: ")));
    }
    let d = h.arrive(job(6).gang(0, Topology::Any));
    assert_eq!(d[0].to_string(), "w-6 rejected: invalid demand: shape: a workload needs at least one task");
    let d = h.arrive(job(7).service(0));
    assert!(matches!(d[0], Decision::Rejected { why: RejectWhy::InvalidDemand { .. }, .. }));
    assert_eq!(h.sched.all_allocations().count(), 0);
    assert_eq!(h.sched.pending().count(), 0);
}

#[test]
fn data_class_no_site_may_hold_is_rejected() {
    let mut h = Harness::toml(ONE);
    let d = h.arrive(job(1).class(DataClass::Health));
    assert!(
        matches!(&d[..], [Decision::Rejected { workload, why: RejectWhy::NoSiteAllowed { data_class, .. } }]
            if *workload == id(1) && data_class == "health"),
        "{d:?}"
    );
    // It names the rule, its source, and why each site fails it.
    assert_eq!(
        d[0].to_string(),
        "w-1 rejected: no site in the fleet may hold health data under HDS, in EU/EEA (operator): \
         operator rule for health data (HDS, in EU/EEA): site one is not HDS-certified"
    );
    // Personal data may stay in France.
    let d = h.arrive(job(2).class(DataClass::Personal));
    assert!(matches!(d[0], Decision::Placed { .. }), "{d:?}");
}

#[test]
fn duplicate_id_is_rejected_and_the_original_is_untouched() {
    let mut h = Harness::toml(LAB);
    h.arrive(job(1).gpus(2));
    let held: Vec<_> = h.sched.allocations(id(1)).expect("known").to_vec();
    let d = h.arrive(job(1).gpus(0).cores(1));
    assert_eq!(d, vec![Decision::Rejected { workload: id(1), why: RejectWhy::DuplicateId }]);
    assert_eq!(d[0].to_string(), "w-1 rejected: a workload with this id already exists");
    assert_eq!(h.sched.allocations(id(1)).expect("known"), held.as_slice());
    assert_eq!(h.sched.status(id(1)), Some(WorkloadStatus::Running));
    // The id is free again once the first one is gone.
    h.ok(Event::Completion(id(1)));
    let d = h.arrive(job(1).gpus(1));
    assert!(matches!(d[0], Decision::Placed { .. }), "{d:?}");
}

#[test]
fn unknown_workload_node_or_site_is_an_error_and_changes_nothing() {
    let mut h = Harness::toml(LAB);
    h.arrive(job(1).gpus(8));
    h.arrive(job(2).gpus(8).gang(4, Topology::SameDomain));
    let state = h.sched.state().clone();
    let pending: Vec<_> = h.sched.pending().collect();

    let err = |h: &mut Harness, e: Event| h.handle(e).expect_err("must fail");
    assert_eq!(err(&mut h, Event::Completion(id(77))), CoreError::UnknownWorkload(id(77)));
    assert_eq!(err(&mut h, Event::Cancel(id(78))).to_string(), "unknown workload w-78");
    assert_eq!(
        err(&mut h, Event::NodeRemoved { node: "lab-r09-n01".into() }).to_string(),
        "unknown node `lab-r09-n01`"
    );
    assert_eq!(
        err(&mut h, Event::NodeRestored { node: "nope".into() }),
        CoreError::UnknownNode("nope".into())
    );
    assert_eq!(
        err(&mut h, Event::BudgetChanged { site: "mars".into(), budget: Watts(0) }).to_string(),
        "unknown site `mars`; known sites: lab"
    );
    let node = |name: &str, rack: &str| NewNode {
        name: name.into(),
        rack: rack.into(),
        gpu_model: None,
        gpu_count: 0,
        cpu: MilliCores(1000),
        memory: Mebibytes(1024),
        base_power: Watts(100),
    };
    assert!(matches!(
        err(&mut h, Event::NodeAdded(node("lab-r01-n01", "lab-r01"))),
        CoreError::Fleet(m) if m.contains("already exists")
    ));
    assert!(matches!(
        err(&mut h, Event::NodeAdded(node("new", "lab-r99"))),
        CoreError::Fleet(m) if m.contains("unknown rack lab-r99")
    ));

    assert_eq!(h.sched.state(), &state);
    assert_eq!(h.sched.pending().collect::<Vec<_>>(), pending);
    assert_eq!(h.sched.status(id(1)), Some(WorkloadStatus::Running));
    assert_eq!(h.sched.status(id(2)), Some(WorkloadStatus::Pending));
}

#[test]
fn drop_unschedulable_rejects_instead_of_queueing_and_keeps_nothing() {
    let fleet = common::fleet(ONE);
    let now = common::NOW;
    let mut s = Scheduler::new(
        &fleet,
        PolicyKind::BestFit.build(&common::typical_pods()),
        SchedulerConfig { drop_unschedulable: true, ..SchedulerConfig::default() },
        now,
    )
    .expect("scheduler");
    let mut rng = CoreRng::seed_from_u64(3);
    let d = s.handle(now, job(1).gpus(4).service(3).arrival(), &mut rng).expect("arrival");
    assert!(matches!(d[0], Decision::Placed { .. }), "{d:?}");
    assert!(
        matches!(&d[1], Decision::Rejected { why: RejectWhy::Unschedulable { why }, .. } if why.tasks_placed == 2),
        "{d:?}"
    );
    assert!(d[1].to_string().starts_with("w-1 rejected: unschedulable, dropped: 0/1 nodes fit"));
    assert_eq!(s.status(id(1)), None);
    assert_eq!(s.all_allocations().count(), 0);
    assert_eq!(s.pending().count(), 0);
    assert_eq!(s.state().nodes[0].free_whole, 8);
    assert_eq!(s.state().audit(std::iter::empty()), Ok(()));
}

// ---------------------------------------------------------------------------------------
// Data residency on the bundled French fleet
// ---------------------------------------------------------------------------------------

#[test]
fn french_fleet_keeps_regulated_data_in_france_and_lets_public_data_travel() {
    let fleet = france();
    assert_eq!(fleet.node_count(), 6784);
    let mut h = Harness::at(fleet, PolicyKind::Random, 2026, FRANCE_NOW);
    let sites = |h: &mut Harness, first: u64, class: DataClass| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        for n in first..first + 24 {
            let d = h.arrive(job(n).gpus(1).class(class));
            assert!(matches!(d[..], [Decision::Placed { .. }]), "{d:?}");
            let node = h.placement(n)[0].clone().expect("placed");
            seen.insert(h.site_of(&node));
        }
        seen
    };
    let health = sites(&mut h, 100, DataClass::Health);
    let sensitive = sites(&mut h, 200, DataClass::Sensitive);
    let personal = sites(&mut h, 300, DataClass::Personal);
    let public = sites(&mut h, 400, DataClass::Public);
    let eu_hds = BTreeSet::from(["valence", "paris-nord", "paris-sud"].map(String::from));
    let snc = BTreeSet::from(["valence", "paris-nord"].map(String::from));
    assert!(health.is_subset(&eu_hds), "health on {health:?}");
    assert!(sensitive.is_subset(&snc), "sensitive on {sensitive:?}");
    assert!(personal.is_subset(&eu_hds), "personal on {personal:?}");
    assert!(
        public.contains("ashburn") || public.contains("inzai"),
        "public data never left Europe: {public:?}"
    );
}

#[test]
fn french_fleet_with_european_sites_dark_runs_only_public_data_abroad() {
    let mut h = Harness::at(france(), PolicyKind::BestFit, 1, FRANCE_NOW);
    for site in ["valence", "paris-nord", "paris-sud"] {
        h.ok(Event::BudgetChanged { site: site.into(), budget: Watts::ZERO });
    }
    let d = h.arrive(job(1).gpus(4));
    let node = placed_tasks(&d[0])[0].node.clone();
    assert!(["ashburn", "inzai"].contains(&h.site_of(&node).as_str()), "{node}");

    // 3,200 + 2,112 + 384 nodes in the three dark EU sites; 704 + 384 abroad.
    let d = h.arrive(job(2).gpus(4).class(DataClass::Health));
    assert_eq!(
        d[0].to_string(),
        "w-2 pending: 0/6784 nodes fit: 5696 site power budget, 1088 data residency"
    );
    let d = h.arrive(job(3).gpus(4).class(DataClass::Personal));
    assert_eq!(
        d[0].to_string(),
        "w-3 pending: 0/6784 nodes fit: 5696 site power budget, 1088 data residency"
    );
    // Paris Sud holds HDS but not SecNumCloud.
    let d = h.arrive(job(4).gpus(4).class(DataClass::Sensitive));
    assert_eq!(
        d[0].to_string(),
        "w-4 pending: 0/6784 nodes fit: 5312 site power budget, 1472 data residency"
    );

    // Power back at Paris Sud: health data goes there, sensitive data still waits.
    let d = h.ok(Event::BudgetChanged { site: "paris-sud".into(), budget: Watts(4_000_000) });
    let placed: Vec<WorkloadId> = d.iter().map(Decision::workload).collect();
    assert_eq!(placed, vec![id(2), id(3)]);
    assert_eq!(h.site_of(h.placement(2)[0].as_deref().expect("placed")), "paris-sud");
    assert_eq!(h.sched.pending().collect::<Vec<_>>(), vec![id(4)]);
}

// ---------------------------------------------------------------------------------------
// Restoring the state the control plane's event log recorded
// ---------------------------------------------------------------------------------------

fn lab_scheduler(fleet: &gigawatt_fleet::Fleet) -> Scheduler {
    Scheduler::new(
        fleet,
        PolicyKind::Fgd.build(&common::typical_pods()),
        SchedulerConfig::default(),
        common::NOW,
    )
    .expect("scheduler")
}

#[test]
fn restore_puts_back_exactly_what_was_placed_and_queues_the_rest() {
    let fleet = common::fleet(LAB);
    let now = common::NOW;
    let mut rng = CoreRng::seed_from_u64(5);
    // Decide on one scheduler...
    let mut live = lab_scheduler(&fleet);
    let gang = job(1).gpus(8).gang(2, Topology::SameDomain).build();
    let share = job(2).share(500).build();
    let big = job(3).gpus(8).gang(3, Topology::SameDomain).build();
    let mut placed = Vec::new();
    for w in [gang.clone(), share.clone(), big.clone()] {
        let d = live.handle(now, Event::Arrival(w.clone()), &mut rng).expect("arrival");
        let mut tasks = vec![None; w.shape.tasks() as usize];
        for p in d.iter().filter(|d| d.workload() == w.id).flat_map(|d| match d {
            Decision::Placed { tasks, .. } => tasks.clone(),
            _ => vec![],
        }) {
            let i = p.task as usize;
            tasks[i] = Some(p);
        }
        placed.push((w, tasks));
    }
    // ...and restore the facts on another: the same allocations, power and queue.
    let mut restored = lab_scheduler(&fleet);
    for (w, tasks) in &placed {
        restored.restore(w.clone(), tasks).expect("restores");
    }
    assert_eq!(usage(restored.state()), usage(live.state()));
    assert_eq!(restored.state().sites[0].power, live.state().sites[0].power);
    assert_eq!(restored.status(id(1)), Some(WorkloadStatus::Running));
    assert_eq!(
        restored.status(id(3)),
        Some(WorkloadStatus::Pending),
        "a 3-node gang cannot fit one 2-node rack"
    );
    assert_eq!(restored.pending().collect::<Vec<_>>(), vec![id(3)]);
    let allocs: Vec<_> = restored.all_allocations().map(|(_, a)| a.clone()).collect();
    assert_eq!(restored.state().audit(allocs.iter()), Ok(()));
    // Restoring twice, or onto an unknown node, or past a limit, is refused whole.
    let before = usage(restored.state());
    assert!(matches!(restored.restore(gang.clone(), &placed[0].1), Err(CoreError::Restore(..))));
    let mut elsewhere = placed[0].1.clone();
    if let Some(Some(t)) = elsewhere.get_mut(1) {
        t.node = "nowhere".into();
    }
    let mut other = gang.clone();
    other.id = id(9);
    assert!(matches!(restored.restore(other.clone(), &elsewhere), Err(CoreError::Restore(..))));
    // The same GPUs a second time: over-allocation.
    assert!(matches!(restored.restore(other, &placed[0].1), Err(CoreError::Restore(..))));
    assert_eq!(usage(restored.state()), before, "a refused restore leaves the state as it was");
    // Once restored, the core goes on deciding: freeing the gang lets nothing else in
    // (the big gang still needs 3 nodes of one rack), and completing works.
    let d = restored.handle(now, Event::Completion(id(1)), &mut rng).expect("completion");
    assert!(d.iter().any(|d| matches!(d, Decision::Released { workload } if *workload == id(1))));
    assert!(restored.retry_all(&mut rng).is_empty());
}

/// `LAB` with a 25 kW grid connection, reserved or oversubscribed by 50%.
fn lab_at_25kw(oversubscribed: bool) -> String {
    let grid = LAB.replace("capacity_mw = 1 }]", "capacity_mw = 0.025 }]");
    if oversubscribed {
        grid.replace("pue = 1.0\n", "pue = 1.0\nprovisioning = \"oversubscribed\"\noversubscription = 0.5\n")
    } else {
        grid
    }
}

#[test]
fn an_oversubscribed_site_admits_beyond_its_tdp_sum_while_its_floor_fits() {
    // Reserved: two 10.2 kW servers fit 25 kW, the third waits.
    let mut h = Harness::toml(&lab_at_25kw(false));
    for n in 1..=3 {
        h.arrive(job(n).gpus(8));
    }
    assert_eq!(h.sched.pending().collect::<Vec<_>>(), vec![id(3)]);

    // Oversubscribed by 50%: 37.5 kW admitted at TDP, the floor (4.6 kW + 8 × 200 W each)
    // within 25 kW: three run (30.6 kW at TDP, 18.6 kW at the floor), the fourth waits.
    let mut h = Harness::toml(&lab_at_25kw(true));
    for n in 1..=4 {
        h.arrive(job(n).gpus(8));
    }
    assert_eq!(h.sched.pending().collect::<Vec<_>>(), vec![id(4)]);
    let site = &h.sched.state().sites[0];
    assert_eq!((site.power, site.floor), (Watts(30_600), Watts(18_600)));

    // A cut to 15 kW sheds by the floor: one server goes (floor 12.4 kW), not two.
    let d = h.ok(Event::BudgetChanged { site: "lab".into(), budget: Watts(15_000) });
    let preempted: Vec<WorkloadId> =
        d.iter().filter(|x| matches!(x, Decision::Preempted { .. })).map(Decision::workload).collect();
    assert_eq!(preempted, vec![id(3)]);
    assert!(d[0].to_string().contains("even with every GPU at its lowest power limit"), "{}", d[0]);
    assert_eq!(h.sched.state().sites[0].floor, Watts(12_400));
}
