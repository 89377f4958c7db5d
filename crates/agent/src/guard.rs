//! The guard: kills the agent's tasks when the agent dies.
//!
//! Task processes lead process groups of their own, so when the agent is SIGKILLed (or
//! OOM-killed, or crashes) nothing stops them: they would run on as orphans while the
//! control plane, hearing no heartbeat, declares the node lost and requeues their work
//! elsewhere — the same training job twice on the same data, or two copies writing one
//! checkpoint. Self-fencing cannot help: the agent is dead.
//!
//! So the agent starts a small guard process (`gigawatt agent-guard --instance ID`) in
//! a process group of its own, and keeps the write end of a pipe to its stdin. It
//! writes `+PGID` after each task start and `-PGID` once a group is gone. The write end
//! exists only in the agent (Rust opens pipes close-on-exec, so no task inherits it),
//! hence the guard reads end-of-file exactly when the agent is gone, however it died.
//! Then it SIGKILLs every registered group still alive, and every process whose
//! environment carries `GIGAWATT_AGENT_INSTANCE=ID` (which covers a task started but
//! not yet registered, and processes that left their group), and exits.
//!
//! A guard ignores SIGINT, SIGTERM and SIGHUP: it must outlive the agent, and its own
//! process group keeps it out of a terminal's Ctrl-C anyway.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};

use crate::process::{INSTANCE_ENV, group_alive, signal_group};

/// How to start the guard process: `program args… --instance ID` (the agent appends the
/// last two), e.g. `gigawatt agent-guard`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSpawn {
    /// The executable, e.g. [`std::env::current_exe`].
    pub program: PathBuf,
    /// Arguments before `--instance ID`, e.g. `["agent-guard"]`.
    pub args: Vec<String>,
}

/// The guard's state: the process groups it must kill if its input ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    instance: String,
    groups: BTreeSet<i32>,
}

impl Guard {
    /// A guard for agent instance `instance`, with no group yet.
    #[must_use]
    pub fn new(instance: &str) -> Guard {
        Guard { instance: instance.to_owned(), groups: BTreeSet::new() }
    }

    /// The groups registered and not yet released.
    #[must_use]
    pub fn groups(&self) -> &BTreeSet<i32> {
        &self.groups
    }

    /// Applies one line of the protocol (`+PGID` or `-PGID`); anything else is ignored.
    pub fn apply(&mut self, line: &str) {
        let line = line.trim();
        let parse = |s: &str| s.parse::<i32>().ok().filter(|p| *p > 1);
        if let Some(pgid) = line.strip_prefix('+').and_then(parse) {
            self.groups.insert(pgid);
        } else if let Some(pgid) = line.strip_prefix('-').and_then(parse) {
            self.groups.remove(&pgid);
        }
    }

    /// Reads the protocol until end of input (or a read error, which means the same: the
    /// agent is gone), then [`fence`](Self::fence)s. Returns the number of processes and
    /// groups killed.
    pub fn run(&mut self, input: impl BufRead) -> usize {
        for line in input.lines() {
            match line {
                Ok(line) => self.apply(&line),
                Err(_) => break,
            }
        }
        self.fence()
    }

    /// Kills every registered group still alive and every process marked with this
    /// instance; returns how many groups and processes it signalled.
    pub fn fence(&self) -> usize {
        let mut killed = 0;
        for &pgid in &self.groups {
            if group_alive(pgid) {
                signal_group(pgid, Signal::SIGKILL);
                killed += 1;
            }
        }
        // Twice, for a process forked while the first pass ran.
        for _ in 0..2 {
            for pid in marked_processes(&self.instance) {
                if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    killed += 1;
                }
            }
        }
        killed
    }
}

/// Processes (but this one) whose environment holds `GIGAWATT_AGENT_INSTANCE=instance`.
fn marked_processes(instance: &str) -> Vec<i32> {
    let mark = format!("{INSTANCE_ENV}={instance}");
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid > 1 && pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == mark.as_bytes()))
        })
        .collect()
}

/// The body of `gigawatt agent-guard --instance ID`: guards until stdin ends, then
/// fences and returns the exit code (0).
#[must_use]
pub fn guard_main(instance: &str) -> i32 {
    // Catching a signal with a handler that nothing ever acts on ignores it, without the
    // `unsafe` of `sigaction`. The streams must live as long as the guard does.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let _enter = runtime.as_ref().ok().map(tokio::runtime::Runtime::enter);
    let _ignored: Vec<_> = [
        tokio::signal::unix::SignalKind::interrupt(),
        tokio::signal::unix::SignalKind::terminate(),
        tokio::signal::unix::SignalKind::hangup(),
    ]
    .into_iter()
    .filter_map(|kind| tokio::signal::unix::signal(kind).ok())
    .collect();
    let mut guard = Guard::new(instance);
    let killed = guard.run(std::io::stdin().lock());
    if killed > 0 {
        eprintln!("gigawatt agent-guard: the agent is gone; killed {killed} of its task processes");
    }
    0
}

/// The agent's end of the guard: the child and the pipe to its stdin.
#[derive(Debug)]
pub(crate) struct GuardHandle {
    spawn: GuardSpawn,
    instance: String,
    child: Child,
    stdin: Option<ChildStdin>,
    started: std::time::Instant,
}

impl GuardHandle {
    /// Starts the guard process.
    pub fn start(spawn: &GuardSpawn, instance: &str) -> std::io::Result<GuardHandle> {
        let mut child = Command::new(&spawn.program)
            .args(&spawn.args)
            .args(["--instance", instance])
            .env_remove(INSTANCE_ENV)
            .stdin(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false)
            .spawn()?;
        let stdin = child.stdin.take();
        let started = std::time::Instant::now();
        Ok(GuardHandle { spawn: spawn.clone(), instance: instance.to_owned(), child, stdin, started })
    }

    /// How long this guard process has run.
    pub fn age(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Registers (`+`) or releases (`-`) a group. A failed write means the guard died;
    /// [`exited`](Self::exited) reports it and the agent restarts it.
    pub async fn send(&mut self, sign: char, pgid: i32) {
        if let Some(stdin) = self.stdin.as_mut() {
            let line = format!("{sign}{pgid}\n");
            if let Err(e) = stdin.write_all(line.as_bytes()).await {
                tracing::error!("cannot write to the guard process: {e}");
                self.stdin = None;
            }
        }
    }

    /// Resolves when the guard process ends (it should not while the agent lives).
    pub async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        }
    }

    /// Starts a new guard after the old one died, and registers `groups` with it.
    pub async fn restart(&mut self, groups: impl IntoIterator<Item = i32>) -> std::io::Result<()> {
        *self = GuardHandle::start(&self.spawn, &self.instance)?;
        for pgid in groups {
            self.send('+', pgid).await;
        }
        Ok(())
    }

    /// Closes the pipe (the guard then finds nothing left to kill) and waits for it.
    pub async fn close(mut self) {
        drop(self.stdin.take());
        let wait = tokio::time::timeout(std::time::Duration::from_secs(5), self.child.wait());
        if !matches!(wait.await, Ok(Ok(_))) {
            tracing::warn!("the guard process did not end after its input closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::os::unix::process::CommandExt;
    use std::time::Duration;

    use super::*;
    use crate::testutil::live_members;

    fn sleeper(env: &[(&str, &str)]) -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("1000")
            .envs(env.iter().copied())
            .process_group(0)
            .spawn()
            .expect("sleep starts")
    }

    fn pid_of(c: &std::process::Child) -> i32 {
        i32::try_from(c.id()).expect("pid fits")
    }

    #[test]
    fn the_protocol_adds_and_removes_groups() {
        let mut g = Guard::new("x");
        for line in ["+100", "+200", "-100", "+1", "+0", "garbage", "+-5", " +300 "] {
            g.apply(line);
        }
        assert_eq!(g.groups().iter().copied().collect::<Vec<_>>(), [200, 300]);
    }

    #[test]
    fn end_of_input_kills_registered_groups() {
        let mut registered = sleeper(&[]);
        let mut released = sleeper(&[]);
        let (a, b) = (pid_of(&registered), pid_of(&released));
        let input = format!("+{a}\n+{b}\n-{b}\n");
        let killed = Guard::new("test-instance-groups").run(Cursor::new(input));
        assert_eq!(killed, 1);
        let status = registered.wait().expect("reaped");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
        assert!(live_members(a).is_empty());
        assert!(released.try_wait().expect("try_wait").is_none(), "a released group is left alone");
        let _ = released.kill();
        let _ = released.wait();
    }

    #[test]
    fn marked_processes_are_killed_even_unregistered() {
        let instance = format!("test-instance-{}", std::process::id());
        let mut marked = sleeper(&[(INSTANCE_ENV, &instance)]);
        let mut other = sleeper(&[(INSTANCE_ENV, "someone-else")]);
        std::thread::sleep(Duration::from_millis(50));
        let killed = Guard::new(&instance).run(Cursor::new(""));
        assert!(killed >= 1, "{killed}");
        let status = marked.wait().expect("reaped");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
        assert!(other.try_wait().expect("try_wait").is_none(), "another instance's task is left alone");
        let _ = other.kill();
        let _ = other.wait();
    }
}
