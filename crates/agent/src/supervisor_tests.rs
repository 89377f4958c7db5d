//! Tests of the supervisor with real processes (no control plane: log shipping is
//! marked done by hand where a test needs an end to be visible).

use std::collections::BTreeMap;

use gigawatt_api::agent::GpuTelemetry;
use tokio::sync::mpsc::{self, UnboundedReceiver};

use super::*;
use crate::testutil::live_members;

fn assignment(workload: &str, gpus: &[u16], milli: &[u32], command: &[&str]) -> Assignment {
    Assignment {
        workload: workload.into(),
        task: 0,
        generation: 1,
        gpus: gpus.to_vec(),
        gpu_milli: milli.to_vec(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        env: BTreeMap::new(),
        grace_ms: None,
    }
}

fn desired(assignments: &[&Assignment], acknowledged: &[TaskKey]) -> Desired {
    Desired {
        assignments: assignments.iter().map(|a| (*a).clone()).collect(),
        acknowledged: acknowledged.to_vec(),
        power_limits_w: BTreeMap::new(),
        grace_ms: 300,
    }
}

fn setup() -> (tempfile::TempDir, Supervisor, UnboundedReceiver<Exit>) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (tx, rx) = mpsc::unbounded_channel();
    let sup = Supervisor::new(tmp.path().to_owned(), "test-supervisor", tx);
    (tmp, sup, rx)
}

const GRACE: Duration = Duration::from_millis(300);

async fn next_exit(sup: &mut Supervisor, rx: &mut UnboundedReceiver<Exit>) -> bool {
    let exit = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("an exit in time");
    sup.on_exit(exit.expect("the channel is open"))
}

fn mark_flushed(sup: &mut Supervisor) {
    for t in sup.tasks.values_mut().filter(|t| !t.alive()) {
        t.flushed = true;
    }
}

#[tokio::test]
async fn a_task_runs_ends_is_acknowledged_and_never_reruns() {
    let (_tmp, mut sup, mut rx) = setup();
    let a = assignment("w-1", &[0], &[1000], &["sh", "-c", "echo hi; exit 3"]);
    let key = key_of(&a);
    assert!(sup.converge(&desired(&[&a], &[]), GRACE), "a start is reported at once");
    assert_eq!(sup.reports()[0].state, TaskState::Running);
    let pgid = sup.reports()[0].pid.and_then(|p| i32::try_from(p).ok()).expect("a pid");
    assert!(next_exit(&mut sup, &mut rx).await);
    assert_eq!(sup.take_guard_updates(), [('+', pgid), ('-', pgid)]);

    // The end is hidden until the output is shipped.
    let r = &sup.reports()[0];
    assert_eq!((r.state, r.exit_code), (TaskState::Running, None));
    mark_flushed(&mut sup);
    let r = &sup.reports()[0];
    assert_eq!((r.state, r.exit_code, r.signal, r.pid), (TaskState::Exited, Some(3), None, None));

    // Still assigned but ended: not restarted.
    assert!(!sup.converge(&desired(&[&a], &[]), GRACE));
    assert_eq!(sup.alive(), 0);
    // Acknowledged: forgotten, and a late duplicate is ignored.
    sup.converge(&desired(&[&a], std::slice::from_ref(&key)), GRACE);
    assert!(sup.reports().is_empty());
    sup.converge(&desired(&[&a], &[]), GRACE);
    assert!(sup.reports().is_empty());
    assert_eq!(sup.alive(), 0);
}

#[tokio::test]
async fn a_missing_program_is_reported_failed_to_start() {
    let (_tmp, mut sup, _rx) = setup();
    let a = assignment("w-2", &[1], &[1000], &["/nonexistent/trainer", "--epochs", "3"]);
    assert!(sup.converge(&desired(&[&a], &[]), GRACE), "a failed start asks for a heartbeat");
    let r = &sup.reports()[0];
    assert_eq!((r.state, r.exit_code, r.pid), (TaskState::FailedToStart, None, None));
    let message = r.message.as_deref().unwrap_or_default();
    assert!(message.contains("/nonexistent/trainer --epochs 3"), "{message}");
    sup.converge(&desired(&[], &[key_of(&a)]), GRACE);
    assert!(sup.reports().is_empty());
}

#[tokio::test]
async fn a_new_task_waits_for_a_stopping_one_on_its_gpus() {
    let (_tmp, mut sup, mut rx) = setup();
    let old =
        assignment("w-old", &[0, 1], &[1000, 1000], &["sh", "-c", "trap '' TERM; sleep 1000 & sleep 1000"]);
    let new = assignment("w-new", &[1], &[1000], &["sleep", "1000"]);
    let other = assignment("w-other", &[2], &[1000], &["sleep", "1000"]);
    sup.converge(&desired(&[&old], &[]), GRACE);
    let old_pgid = sup.live_groups()[0];
    tokio::time::sleep(Duration::from_millis(100)).await;

    sup.converge(&desired(&[&new, &other], &[]), GRACE);
    let states: BTreeMap<String, TaskState> =
        sup.reports().into_iter().map(|r| (r.workload, r.state)).collect();
    assert_eq!(
        states,
        BTreeMap::from([("w-old".into(), TaskState::Stopping), ("w-other".into(), TaskState::Running)]),
        "w-new waits for GPU 1"
    );
    let started = std::time::Instant::now();
    while !sup.tasks.contains_key(&key_of(&new)) {
        next_exit(&mut sup, &mut rx).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(250), "the old task ignored SIGTERM for the grace");
    assert!(live_members(old_pgid).is_empty());
    assert_eq!(sup.reports().iter().filter(|r| r.state == TaskState::Running).count(), 2);

    // Fenced by the control plane: everything killed and forgotten.
    assert_eq!(sup.fence_and_forget(), 2);
    assert!(sup.reports().is_empty());
    while sup.alive() > 0 {
        next_exit(&mut sup, &mut rx).await;
    }
    // A copy that ran is never started again, even if an answer still lists it.
    sup.converge(&desired(&[&new, &other], &[]), GRACE);
    assert!(sup.reports().is_empty() && sup.alive() == 0);
}

#[tokio::test]
async fn energy_is_split_by_share() {
    let (_tmp, mut sup, mut rx) = setup();
    let a = assignment("w-a", &[0], &[500], &["sleep", "1000"]);
    let b = assignment("w-b", &[0, 1], &[250, 1000], &["sleep", "1000"]);
    sup.converge(&desired(&[&a, &b], &[]), GRACE);
    let loads = sup.loads();
    assert_eq!(loads, [GpuLoad { index: 0, milli: 750 }, GpuLoad { index: 1, milli: 1000 }]);
    let sample = |e0: f64, e1: f64| NodeTelemetry {
        power_w: 0,
        gpus: vec![
            GpuTelemetry { index: 0, energy_j: e0, ..GpuTelemetry::default() },
            GpuTelemetry { index: 1, energy_j: e1, ..GpuTelemetry::default() },
        ],
    };
    sup.attribute_energy(&sample(1000.0, 10.0)); // The first sample only sets the base.
    sup.attribute_energy(&sample(1100.0, 30.0));
    let energy: BTreeMap<String, f64> = sup.reports().into_iter().map(|r| (r.workload, r.energy_j)).collect();
    assert_eq!(energy, BTreeMap::from([("w-a".into(), 50.0), ("w-b".into(), 45.0)]));
    sup.stop_all(Duration::from_millis(100));
    while sup.alive() > 0 {
        next_exit(&mut sup, &mut rx).await;
    }
}

#[tokio::test]
async fn self_fencing_kills_and_reports_signal_9() {
    let (_tmp, mut sup, mut rx) = setup();
    let a = assignment("w-f", &[0], &[1000], &["sh", "-c", "trap '' TERM; sleep 1000"]);
    sup.converge(&desired(&[&a], &[]), GRACE);
    let pgid = sup.live_groups()[0];
    assert!(sup.has_unfenced());
    assert_eq!(sup.self_fence("self-fenced: no answer from the control plane for 3s"), 1);
    assert!(!sup.has_unfenced());
    next_exit(&mut sup, &mut rx).await;
    assert!(live_members(pgid).is_empty());
    mark_flushed(&mut sup);
    let r = &sup.reports()[0];
    assert_eq!((r.state, r.exit_code, r.signal), (TaskState::Exited, None, Some(9)));
    assert_eq!(r.message.as_deref(), Some("self-fenced: no answer from the control plane for 3s"));
}
