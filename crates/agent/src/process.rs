//! One task = one OS process group.
//!
//! Each assignment runs as a real process, leader of its own process group, so that
//! stopping it stops everything it started (`torchrun` and its workers, a shell and
//! its pipeline): signals go to the group (`killpg`), never to the leader alone. When
//! the leader ends, whatever is left of its group is killed at once, so a task's end is
//! the end of all its processes and its GPUs are really free.
//!
//! A watcher (one tokio task per process) owns the [`tokio::process::Child`]: it alone
//! reaps the leader, so the group id cannot be reused while the watcher may still
//! signal it. The supervisor talks to it through a [`Control`] channel and hears of the
//! end through an [`Exit`] event.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use gigawatt_api::agent::{Assignment, TaskKey, env};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

/// The variable that marks every process of one agent instance (read by the guard).
pub const INSTANCE_ENV: &str = "GIGAWATT_AGENT_INSTANCE";

/// How long to wait for the rest of a group to vanish after SIGKILL.
const GROUP_GONE_WAIT: Duration = Duration::from_secs(2);

/// What the supervisor asks of a running process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// SIGTERM to the group, then SIGKILL after `grace` if it is still there.
    Stop {
        /// Time between SIGTERM and SIGKILL.
        grace: Duration,
    },
    /// SIGKILL to the group now.
    Kill,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Outcome {
    /// Exit code, when it exited by itself.
    pub code: Option<i32>,
    /// Signal, when one ended it.
    pub signal: Option<i32>,
}

impl Outcome {
    fn from_status(status: std::io::Result<ExitStatus>) -> Outcome {
        match status {
            Ok(s) => Outcome { code: s.code(), signal: s.signal() },
            // Waiting failed (it cannot, short of a kernel bug): call it killed.
            Err(_) => Outcome { code: None, signal: Some(Signal::SIGKILL as i32) },
        }
    }
}

/// A process group is gone (its leader reaped, the rest killed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    /// The supervisor's id of the process.
    pub id: u64,
    /// The process group (the leader's pid).
    pub pgid: i32,
    /// How the leader ended.
    pub outcome: Outcome,
}

/// A started process: its group and the way to stop it.
#[derive(Debug)]
pub(crate) struct Handle {
    /// Process group id (= the leader's pid).
    pub pgid: i32,
    control: mpsc::UnboundedSender<Control>,
}

impl Handle {
    /// Asks the watcher to stop or kill the group (a no-op once it has ended).
    pub fn send(&self, c: Control) {
        let _ = self.control.send(c);
    }
}

/// The directory of one task copy: `<data_dir>/tasks/<workload>-<task>-g<generation>`,
/// with anything but `[A-Za-z0-9._-]` in the workload id replaced, so that an id can
/// never name a path outside.
pub(crate) fn task_dir(data_dir: &Path, key: &TaskKey) -> PathBuf {
    let workload: String = key
        .workload
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    let workload = workload.trim_start_matches('.');
    data_dir.join("tasks").join(format!("{workload}-{}-g{}", key.task, key.generation))
}

/// The environment of a task: the agent's own minus every `GIGAWATT_*` variable (the
/// agent's token must never reach a workload), then the assignment's, then the
/// instance mark.
pub(crate) fn task_env(a: &Assignment, instance: &str) -> BTreeMap<String, String> {
    let own = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    env_from(own, a, instance)
}

fn env_from(
    own: impl Iterator<Item = (String, String)>,
    a: &Assignment,
    instance: &str,
) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = own.filter(|(k, _)| !k.starts_with("GIGAWATT_")).collect();
    vars.extend(a.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    if !a.env.contains_key(env::CUDA_VISIBLE_DEVICES) {
        let gpus: Vec<String> = a.gpus.iter().map(u16::to_string).collect();
        vars.insert(env::CUDA_VISIBLE_DEVICES.to_owned(), gpus.join(","));
    }
    vars.insert(INSTANCE_ENV.to_owned(), instance.to_owned());
    vars
}

/// Starts `a` in `dir` (created), its output in `stdout.log` / `stderr.log` there
/// (appended to), in a process group of its own, and a watcher that sends an [`Exit`]
/// with `id` on `exits` once the group is gone.
///
/// # Errors
/// A message for the task report: why it could not start, with the command.
pub(crate) fn spawn(
    id: u64,
    a: &Assignment,
    dir: &Path,
    instance: &str,
    exits: mpsc::UnboundedSender<Exit>,
) -> Result<Handle, String> {
    let shown = a.command.join(" ");
    let fail = |what: &str, e: std::io::Error| format!("cannot start `{shown}`: {what}: {e}");
    let Some((program, args)) = a.command.split_first() else {
        return Err("cannot start the task: its command is empty".to_owned());
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(&format!("creating {}", dir.display()), e))?;
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .map_err(|e| fail(&format!("opening {}", dir.join(name).display()), e))
    };
    let (stdout, stderr) = (open("stdout.log")?, open("stderr.log")?);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .envs(task_env(a, instance))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(false);
    let child = cmd.spawn().map_err(|e| format!("cannot start `{shown}`: {e}"))?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    let (control, rx) = mpsc::unbounded_channel();
    tokio::spawn(watch(id, pgid, child, rx, exits));
    Ok(Handle { pgid, control })
}

/// Sends `signal` to group `pgid`, ignoring a group that is already gone.
pub(crate) fn signal_group(pgid: i32, signal: Signal) {
    if pgid <= 1 {
        return; // Never signal our own group (0) or init (1), whatever happened.
    }
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, %signal, "cannot signal process group: {e}"),
    }
}

/// Whether any process of group `pgid` is still there (zombies included).
pub(crate) fn group_alive(pgid: i32) -> bool {
    pgid > 1 && killpg(Pid::from_raw(pgid), None) != Err(Errno::ESRCH)
}

async fn watch(
    id: u64,
    pgid: i32,
    mut child: Child,
    mut control: mpsc::UnboundedReceiver<Control>,
    exits: mpsc::UnboundedSender<Exit>,
) {
    let mut kill_at: Option<Instant> = None;
    let mut listening = true;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            () = sleep_until(kill_at.unwrap_or_else(Instant::now)), if kill_at.is_some() => {
                kill_at = None;
                signal_group(pgid, Signal::SIGKILL);
            }
            c = control.recv(), if listening => match c {
                Some(Control::Stop { grace }) => {
                    signal_group(pgid, Signal::SIGTERM);
                    let at = Instant::now() + grace;
                    kill_at = Some(kill_at.map_or(at, |k| k.min(at)));
                }
                Some(Control::Kill) => {
                    kill_at = None;
                    signal_group(pgid, Signal::SIGKILL);
                }
                None => listening = false,
            },
        }
    };
    // The leader is gone: so is the rest of its group.
    signal_group(pgid, Signal::SIGKILL);
    let deadline = Instant::now() + GROUP_GONE_WAIT;
    while group_alive(pgid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = exits.send(Exit { id, pgid, outcome: Outcome::from_status(status) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::live_members;

    fn assignment(command: &[&str]) -> Assignment {
        Assignment {
            workload: "w-42".into(),
            task: 1,
            generation: 7,
            gpus: vec![2, 3],
            gpu_milli: vec![1000, 1000],
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            env: BTreeMap::from([("GIGAWATT_RANK".to_owned(), "1".to_owned())]),
            grace_ms: None,
        }
    }

    #[test]
    fn task_dirs_are_confined() {
        let key = TaskKey { workload: "../../etc/x y".into(), task: 3, generation: 9 };
        let dir = task_dir(Path::new("/data"), &key);
        assert_eq!(dir, Path::new("/data/tasks/_.._etc_x_y-3-g9"));
    }

    #[test]
    fn env_drops_agent_variables_and_fills_cuda_devices() {
        let a = assignment(&["true"]);
        let vars = task_env(&a, "inst-1");
        assert_eq!(vars.get("CUDA_VISIBLE_DEVICES").map(String::as_str), Some("2,3"));
        assert_eq!(vars.get("GIGAWATT_RANK").map(String::as_str), Some("1"));
        assert_eq!(vars.get(INSTANCE_ENV).map(String::as_str), Some("inst-1"));
        assert!(
            vars.keys().all(|k| !k.starts_with("GIGAWATT_") || k == "GIGAWATT_RANK" || k == INSTANCE_ENV)
        );
        let own = [("GIGAWATT_TOKEN", "secret"), ("GIGAWATT_SERVER", "http://x"), ("HOME", "/root")];
        let vars = env_from(own.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())), &a, "i");
        assert_eq!(
            vars.keys().collect::<Vec<_>>(),
            ["CUDA_VISIBLE_DEVICES", INSTANCE_ENV, "GIGAWATT_RANK", "HOME"]
        );
        let mut b = a.clone();
        b.env.insert("CUDA_VISIBLE_DEVICES".into(), "5".into());
        assert_eq!(task_env(&b, "i").get("CUDA_VISIBLE_DEVICES").map(String::as_str), Some("5"));
    }

    #[tokio::test]
    async fn output_exit_code_and_environment_are_captured() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let a = assignment(&[
            "sh",
            "-c",
            "echo $CUDA_VISIBLE_DEVICES; echo rank=$GIGAWATT_RANK token=$GIGAWATT_TOKEN; pwd; echo err >&2; exit 3",
        ]);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handle = spawn(5, &a, tmp.path(), "inst", tx).expect("sh starts");
        let exit = rx.recv().await.expect("an exit event");
        assert_eq!((exit.id, exit.pgid), (5, handle.pgid));
        assert_eq!(exit.outcome, Outcome { code: Some(3), signal: None });
        let stdout = std::fs::read_to_string(tmp.path().join("stdout.log")).expect("stdout.log");
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[..2], ["2,3", "rank=1 token="]);
        let cwd = std::fs::canonicalize(tmp.path()).expect("canonical");
        assert_eq!(std::fs::canonicalize(lines[2]).ok(), Some(cwd));
        let stderr = std::fs::read_to_string(tmp.path().join("stderr.log")).expect("stderr.log");
        assert_eq!(stderr, "err\n");
    }

    #[tokio::test]
    async fn a_missing_program_fails_to_start() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let (tx, _rx) = mpsc::unbounded_channel();
        let e =
            spawn(1, &assignment(&["/no/such/program", "--x"]), tmp.path(), "i", tx).expect_err("missing");
        assert!(e.contains("/no/such/program --x") && e.contains("No such file"), "{e}");
        let e = spawn(1, &assignment(&[]), tmp.path(), "i", mpsc::unbounded_channel().0).expect_err("empty");
        assert!(e.contains("empty"), "{e}");
    }

    #[tokio::test]
    async fn stop_kills_a_group_that_ignores_sigterm() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let a = assignment(&["sh", "-c", "trap '' TERM; sleep 1000 & sleep 1000"]);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handle = spawn(1, &a, tmp.path(), "i", tx).expect("sh starts");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(live_members(handle.pgid).len() >= 2, "the shell and its sleeps run");
        let started = std::time::Instant::now();
        handle.send(Control::Stop { grace: Duration::from_millis(300) });
        let exit = rx.recv().await.expect("an exit event");
        assert!(started.elapsed() >= Duration::from_millis(300), "SIGTERM was ignored, so the grace ran out");
        assert_eq!(exit.outcome.signal, Some(9));
        assert_eq!(live_members(handle.pgid), Vec::<i32>::new());
    }

    #[tokio::test]
    async fn a_leader_exit_kills_the_rest_of_its_group() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let a = assignment(&["sh", "-c", "sleep 1000 & exit 0"]);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handle = spawn(1, &a, tmp.path(), "i", tx).expect("sh starts");
        let exit = rx.recv().await.expect("an exit event");
        assert_eq!(exit.outcome.code, Some(0));
        assert_eq!(live_members(handle.pgid), Vec::<i32>::new());
    }
}
