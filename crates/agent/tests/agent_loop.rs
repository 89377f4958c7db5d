//! `gigawatt_agent::run` against a fake control plane, with real task processes.

mod fake;

use std::collections::BTreeMap;
use std::time::Duration;

use fake::{Fake, Mode, TOKEN};
use gigawatt_agent::{AgentConfig, AgentError, BackendChoice, GuardSpawn, SimSpec, guard_main};
use gigawatt_api::agent::{Assignment, TaskKey, TaskReport, TaskState};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

fn config(fake: &Fake, dir: &std::path::Path) -> AgentConfig {
    AgentConfig {
        server: fake.url.clone(),
        token: TOKEN.into(),
        ca_file: None,
        node: "node-1".into(),
        backend: BackendChoice::Simulated(SimSpec { model: "H100-SXM".into(), count: 2 }),
        data_dir: dir.to_owned(),
        address: "10.0.0.7".into(),
        guard: None,
    }
}

fn assignment(workload: &str, gpus: &[u16], command: &str) -> Assignment {
    Assignment {
        workload: workload.into(),
        task: 0,
        generation: 5,
        gpus: gpus.to_vec(),
        gpu_milli: gpus.iter().map(|_| 1000).collect(),
        command: vec!["sh".into(), "-c".into(), command.into()],
        env: BTreeMap::from([("GIGAWATT_WORKLOAD_ID".to_owned(), workload.to_owned())]),
        grace_ms: None,
    }
}

fn key(workload: &str) -> TaskKey {
    TaskKey { workload: workload.into(), task: 0, generation: 5 }
}

fn start(config: AgentConfig) -> (oneshot::Sender<()>, JoinHandle<Result<(), AgentError>>) {
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(gigawatt_agent::run(config, async {
        let _ = rx.await;
    }));
    (tx, handle)
}

async fn stop(tx: oneshot::Sender<()>, handle: JoinHandle<Result<(), AgentError>>) {
    let _ = tx.send(());
    let result = tokio::time::timeout(Duration::from_secs(10), handle).await.expect("the agent stops");
    result.expect("no panic").expect("a clean stop");
}

/// The report of `workload` in the latest heartbeat that has one in state `state`.
fn report(s: &fake::State, workload: &str, state: TaskState) -> Option<TaskReport> {
    s.heartbeats
        .iter()
        .rev()
        .flat_map(|h| &h.tasks)
        .find(|t| t.workload == workload && t.state == state)
        .cloned()
}

/// Non-zombie processes of group `pgid`.
fn live_members(pgid: i32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            let Some((_, rest)) = stat.rsplit_once(')') else { return false };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first() != Some(&"Z") && fields.get(2).and_then(|g| g.parse().ok()) == Some(pgid)
        })
        .count()
}

async fn wait_group_gone(pgid: i32, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while live_members(pgid) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "process group {pgid} still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pgid_of(r: &TaskReport) -> i32 {
    r.pid.and_then(|p| i32::try_from(p).ok()).expect("a running task has a pid")
}

#[tokio::test]
async fn a_task_runs_and_its_end_follows_all_its_output() {
    let fake = Fake::start().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let script = "echo gpus=$CUDA_VISIBLE_DEVICES id=$GIGAWATT_WORKLOAD_ID; \
                  test -n \"$GIGAWATT_AGENT_INSTANCE\" && echo marked; \
                  head -c 200000 /dev/zero | tr '\\0' x; echo; echo oops >&2; sleep 0.5; echo done; exit 0";
    fake.state().assignments.push(assignment("w-1", &[0], script));
    fake.state().power_limits_w.insert(1, 300);
    let (tx, handle) = start(config(&fake, tmp.path()));

    let full = fake.wait_for(20, "the end of w-1", |s| s.stdout_at_end.get(&key("w-1")).cloned()).await;
    let text = String::from_utf8(full).expect("text");
    assert!(text.starts_with("gpus=0 id=w-1\nmarked\nxxx"), "{}", &text[..40.min(text.len())]);
    assert!(text.ends_with("\ndone\n"), "the whole output arrived before the end was reported");
    assert_eq!(text.len(), "gpus=0 id=w-1\nmarked\n".len() + 200_001 + "done\n".len());

    {
        let s = fake.state();
        let end = report(&s, "w-1", TaskState::Exited).expect("an exit report");
        assert_eq!((end.exit_code, end.signal, end.pid), (Some(0), None, None));
        assert!(end.energy_j > 100.0, "0.5 s on a busy H100: {}", end.energy_j);
        assert_eq!(s.logs.get(&(key("w-1"), "stderr")).map(Vec::as_slice), Some(&b"oops\n"[..]));
        let reg = &s.registrations[0];
        assert_eq!(
            (reg.node.as_str(), reg.backend.as_str(), reg.address.as_str()),
            ("node-1", "simulated", "10.0.0.7")
        );
        assert_eq!(reg.gpus.len(), 2);
        let running = report(&s, "w-1", TaskState::Running).expect("a running report");
        assert!(running.pid.is_some());
    }

    // The power limit is applied, and the acknowledged task is forgotten.
    fake.wait_for(5, "the power limit and an empty report", |s| {
        let last = s.heartbeats.last()?;
        (last.telemetry.gpus.get(1)?.power_limit_w == 300 && last.tasks.is_empty()).then_some(())
    })
    .await;
    let out = tmp.path().join("tasks/w-1-0-g5/stdout.log");
    assert!(std::fs::metadata(out).is_ok_and(|m| m.len() > 200_000));
    stop(tx, handle).await;
}

#[tokio::test]
async fn a_refused_registration_ends_the_agent_with_the_servers_message() {
    let fake = Fake::start().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    fake.state().register_error = Some((404, "not-found", "node `node-1` is not in the fleet"));
    let (_tx, handle) = start(config(&fake, tmp.path()));
    let result =
        tokio::time::timeout(Duration::from_secs(10), handle).await.expect("in time").expect("no panic");
    let e = result.expect_err("refused");
    assert!(e.to_string().contains("node `node-1` is not in the fleet"), "{e}");

    let mut bad = config(&fake, tmp.path());
    bad.token = "wrong".into();
    let e = gigawatt_agent::run(bad, std::future::pending()).await.expect_err("bad token");
    assert!(matches!(e, AgentError::Refused { status: 401, .. }), "{e}");
}

#[tokio::test]
async fn a_stale_generation_kills_everything_and_registers_again() {
    let fake = Fake::start().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    fake.state().assignments.push(assignment("w-2", &[0, 1], "sleep 1000"));
    let (tx, handle) = start(config(&fake, tmp.path()));
    let running = fake.wait_for(10, "w-2 running", |s| report(s, "w-2", TaskState::Running)).await;
    let pgid = pgid_of(&running);

    fake.state().mode = Mode::StaleOnce;
    fake.wait_for(10, "a second registration", |s| (s.registrations.len() >= 2).then_some(())).await;
    wait_group_gone(pgid, 2).await;
    let before = fake.state().heartbeats.len();
    fake.wait_for(5, "heartbeats of the new generation", |s| (s.heartbeats.len() > before + 2).then_some(()))
        .await;
    assert!(fake.state().heartbeats[before..].iter().all(|h| h.generation == 3 && h.tasks.is_empty()));
    stop(tx, handle).await;
}

#[tokio::test]
async fn silence_makes_the_agent_fence_itself() {
    let fake = Fake::start().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    fake.state().fence_after_ms = 600;
    fake.state().assignments.push(assignment("w-3", &[1], "trap '' TERM; echo started; sleep 1000"));
    let (tx, handle) = start(config(&fake, tmp.path()));
    let running = fake.wait_for(10, "w-3 running", |s| report(s, "w-3", TaskState::Running)).await;
    let pgid = pgid_of(&running);

    fake.state().mode = Mode::Unavailable;
    let silent = std::time::Instant::now();
    wait_group_gone(pgid, 5).await;
    assert!(silent.elapsed() >= Duration::from_millis(300), "fenced too early: {:?}", silent.elapsed());

    fake.state().mode = Mode::Answer;
    let end = fake.wait_for(10, "the fenced end", |s| report(s, "w-3", TaskState::Exited)).await;
    assert_eq!((end.exit_code, end.signal), (None, Some(9)));
    let message = end.message.unwrap_or_default();
    assert!(message.starts_with("self-fenced: no answer from the control plane for 0.6s"), "{message}");
    assert_eq!(fake.state().stdout_at_end.get(&key("w-3")).map(Vec::as_slice), Some(&b"started\n"[..]));
    stop(tx, handle).await;
}

/// Not a test: the guard process of `a_dead_agents_tasks_are_killed_by_its_guard`
/// (this binary, re-run through `sh` with the instance in `GUARD_INSTANCE`). Run as a test
/// without that variable it does nothing and passes.
#[test]
fn guard_entry() {
    if let Ok(instance) = std::env::var("GUARD_INSTANCE") {
        std::process::exit(guard_main(&instance));
    }
}

/// Live guard processes started by this test binary (children of this process).
fn guard_pids() -> Vec<i32> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let fields: Vec<&str> =
                stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            fields.first() != Some(&"Z")
                && fields.get(1) == Some(&me.as_str())
                && environ.split(|b| *b == 0).any(|v| v.starts_with(b"GUARD_INSTANCE="))
        })
        .collect()
}

#[tokio::test]
async fn a_dead_agents_tasks_are_killed_by_its_guard() {
    let fake = Fake::start().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let me = std::env::current_exe().expect("test binary path");
    let mut cfg = config(&fake, tmp.path());
    cfg.guard = Some(GuardSpawn {
        program: "sh".into(),
        args: vec![
            "-c".into(),
            "GUARD_INSTANCE=\"$2\" exec \"$0\" guard_entry --exact --quiet >/dev/null".into(),
            me.to_string_lossy().into_owned(),
        ],
    });
    fake.state().assignments.push(assignment("w-4", &[0], "sleep 1000 & sleep 1000"));
    let (_tx, handle) = start(cfg);
    let running = fake.wait_for(10, "w-4 running", |s| report(s, "w-4", TaskState::Running)).await;
    let pgid = pgid_of(&running);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(live_members(pgid) >= 2);

    // A guard that dies is replaced.
    let first = fake.wait_for(5, "the guard", |_| guard_pids().first().copied()).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::Signal::SIGKILL)
        .expect("kill the guard");
    fake.wait_for(5, "a new guard", |_| guard_pids().into_iter().find(|p| *p != first)).await;
    assert!(live_members(pgid) >= 2, "killing the guard leaves the tasks alone");

    // The agent "dies": its future is dropped, and with it the guard's pipe.
    handle.abort();
    let _ = handle.await;
    wait_group_gone(pgid, 5).await;
}
