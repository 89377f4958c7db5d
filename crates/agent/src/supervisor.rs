//! The node's task table, and convergence on what the control plane wants.
//!
//! The supervisor is level-triggered: it is handed the complete desired set at every
//! heartbeat answer and makes reality match (start what is missing, stop what is not
//! wanted), so a lost message or a restarted control plane costs one heartbeat, never a
//! stuck task. Three rules keep a task from ever running twice or sharing a GPU beyond
//! its grant:
//!
//! * a task key that ran is never started again: an ended task stays in the table
//!   until the control plane acknowledges its end, then its key is remembered in a
//!   "done" set, so a late duplicate assignment is ignored;
//! * a new task whose GPUs are held by a process still stopping (or being killed) waits
//!   until that process group is gone;
//! * fencing (`409 stale-generation`, or no answer for `fence_after_ms`) SIGKILLs every
//!   group at once.
//!
//! The supervisor does no I/O with the control plane except log shipping; it is driven
//! by the agent loop (`agent.rs`), which also forwards its guard updates.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use gigawatt_api::agent::{Assignment, Desired, NodeTelemetry, TaskKey, TaskReport, TaskState};
use tokio::sync::mpsc::UnboundedSender;

use crate::backend::GpuLoad;
use crate::client::CallError;
use crate::logs::{LogCursor, ShipContext};
use crate::process::{self, Control, Exit, Handle, Outcome};

/// How many ended task keys are remembered after their acknowledgement.
const DONE_MEMORY: usize = 4096;

/// One task copy the agent knows about.
#[derive(Debug)]
struct Task {
    id: u64,
    gpus: Vec<u16>,
    milli: Vec<u32>,
    state: TaskState,
    /// The state reported while its output is still being shipped after its end.
    shown: TaskState,
    pid: Option<u32>,
    /// Set while the process group may still exist.
    handle: Option<Handle>,
    outcome: Outcome,
    message: Option<String>,
    energy_j: f64,
    logs: LogCursor,
    /// Every byte it wrote has been shipped (only meaningful once it ended).
    flushed: bool,
    /// Its job's own grace between SIGTERM and SIGKILL, if it set one.
    grace: Option<Duration>,
}

impl Task {
    fn alive(&self) -> bool {
        self.handle.is_some()
    }

    fn ended(&self) -> bool {
        matches!(self.state, TaskState::Exited | TaskState::FailedToStart)
    }

    /// Whether its GPUs are not to be shared with a newcomer: it is on its way out.
    fn leaving(&self) -> bool {
        self.alive() && self.state != TaskState::Running
    }

    fn report(&self, key: &TaskKey) -> TaskReport {
        let visible = !self.ended() || self.flushed;
        let state = if visible { self.state } else { self.shown };
        TaskReport {
            workload: key.workload.clone(),
            task: key.task,
            generation: key.generation,
            state,
            pid: if self.ended() && visible { None } else { self.pid },
            exit_code: if visible { self.outcome.code } else { None },
            signal: if visible { self.outcome.signal } else { None },
            energy_j: self.energy_j,
            message: if visible { self.message.clone() } else { None },
        }
    }
}

/// The tasks of this node.
#[derive(Debug)]
pub(crate) struct Supervisor {
    data_dir: PathBuf,
    instance: String,
    exits: UnboundedSender<Exit>,
    next_id: u64,
    tasks: BTreeMap<TaskKey, Task>,
    /// Assignments waiting for a leaving process to free their GPUs.
    pending: Vec<Assignment>,
    /// Groups forgotten by a fence but not yet gone: id → (group, GPUs).
    dying: BTreeMap<u64, (i32, Vec<u16>)>,
    done: VecDeque<TaskKey>,
    done_set: BTreeSet<TaskKey>,
    /// Each GPU's energy counter at the previous sample.
    last_energy: BTreeMap<u16, f64>,
    /// Lines for the guard: `('+', pgid)` after a start, `('-', pgid)` once gone.
    guard_updates: Vec<(char, i32)>,
}

impl Supervisor {
    /// An empty table; task directories go under `data_dir/tasks`, exits are sent on
    /// `exits`.
    pub fn new(data_dir: PathBuf, instance: &str, exits: UnboundedSender<Exit>) -> Supervisor {
        Supervisor {
            data_dir,
            instance: instance.to_owned(),
            exits,
            next_id: 1,
            tasks: BTreeMap::new(),
            pending: Vec::new(),
            dying: BTreeMap::new(),
            done: VecDeque::new(),
            done_set: BTreeSet::new(),
            last_energy: BTreeMap::new(),
            guard_updates: Vec::new(),
        }
    }

    /// Converges on `desired`: stops what is not in it (SIGTERM, then SIGKILL after the
    /// task's own grace, or `grace` when its job set none), starts what is new. Returns
    /// whether a task changed state (it started, or failed to) so that a heartbeat goes
    /// out now: the control plane learns of a start at once, not an interval later.
    pub fn converge(&mut self, desired: &Desired, grace: Duration) -> bool {
        let wanted: BTreeSet<TaskKey> = desired.assignments.iter().map(key_of).collect();
        for (key, t) in &mut self.tasks {
            if t.state == TaskState::Running && !wanted.contains(key) {
                tracing::info!(workload = %key.workload, task = key.task, generation = key.generation,
                    "stopping task: no longer assigned to this node");
                t.state = TaskState::Stopping;
                if let Some(h) = &t.handle {
                    h.send(Control::Stop { grace: t.grace.unwrap_or(grace) });
                }
            }
        }
        self.pending.retain(|a| wanted.contains(&key_of(a)));
        for a in &desired.assignments {
            let key = key_of(a);
            let known = self.tasks.contains_key(&key) || self.done_set.contains(&key);
            if !known && !self.pending.iter().any(|p| key_of(p) == key) {
                self.pending.push(a.clone());
            }
        }
        self.acknowledge(&desired.acknowledged);
        self.start_pending()
    }

    /// Starts the pending assignments whose GPUs are free of leaving processes.
    fn start_pending(&mut self) -> bool {
        let mut changed = false;
        let pending = std::mem::take(&mut self.pending);
        for a in pending {
            let busy: BTreeSet<u16> = self
                .tasks
                .values()
                .filter(|t| t.leaving())
                .flat_map(|t| t.gpus.iter().copied())
                .chain(self.dying.values().flat_map(|(_, gpus)| gpus.iter().copied()))
                .collect();
            if a.gpus.iter().any(|g| busy.contains(g)) {
                tracing::debug!(workload = %a.workload, task = a.task, "waiting for a stopping task to free its GPUs");
                self.pending.push(a);
                continue;
            }
            self.start(a);
            changed = true;
        }
        changed
    }

    /// Starts one assignment; returns true when it failed to start.
    fn start(&mut self, a: Assignment) -> bool {
        let key = key_of(&a);
        let id = self.next_id;
        self.next_id += 1;
        let dir = process::task_dir(&self.data_dir, &key);
        let mut task = Task {
            id,
            gpus: a.gpus.clone(),
            milli: a.gpu_milli.clone(),
            state: TaskState::Running,
            shown: TaskState::Running,
            pid: None,
            handle: None,
            outcome: Outcome::default(),
            message: None,
            energy_j: 0.0,
            logs: LogCursor::new(&dir),
            flushed: false,
            grace: a.grace_ms.map(Duration::from_millis),
        };
        let failed = match process::spawn(id, &a, &dir, &self.instance, self.exits.clone()) {
            Ok(handle) => {
                tracing::info!(workload = %key.workload, task = key.task, generation = key.generation,
                    pid = handle.pgid, gpus = ?a.gpus, "task started");
                self.guard_updates.push(('+', handle.pgid));
                task.pid = u32::try_from(handle.pgid).ok();
                task.handle = Some(handle);
                false
            }
            Err(message) => {
                tracing::warn!(workload = %key.workload, task = key.task, "{message}");
                task.state = TaskState::FailedToStart;
                task.message = Some(message);
                task.flushed = true;
                true
            }
        };
        self.tasks.insert(key, task);
        failed
    }

    /// Records that a process group is gone. Returns whether a known task ended.
    pub fn on_exit(&mut self, exit: Exit) -> bool {
        self.guard_updates.push(('-', exit.pgid));
        if self.dying.remove(&exit.id).is_some() {
            return self.start_pending();
        }
        let Some((key, t)) = self.tasks.iter_mut().find(|(_, t)| t.id == exit.id) else { return false };
        tracing::info!(workload = %key.workload, task = key.task, generation = key.generation,
            code = ?exit.outcome.code, signal = ?exit.outcome.signal, "task ended");
        t.handle = None;
        if t.state != TaskState::Exited {
            // Not already marked by a self-fence, which keeps its own account.
            t.shown = t.state;
            t.state = TaskState::Exited;
            t.outcome = exit.outcome;
        }
        self.start_pending();
        true
    }

    /// Forgets acknowledged ended tasks, remembering their keys.
    fn acknowledge(&mut self, keys: &[TaskKey]) {
        for key in keys {
            if self.tasks.get(key).is_some_and(|t| t.ended() && t.flushed && !t.alive()) {
                self.tasks.remove(key);
                self.remember(key.clone());
            }
        }
    }

    /// Remembers that `key` ran, so that it is never started again.
    fn remember(&mut self, key: TaskKey) {
        if self.done_set.insert(key.clone()) {
            self.done.push_back(key);
        }
        while self.done.len() > DONE_MEMORY {
            if let Some(old) = self.done.pop_front() {
                self.done_set.remove(&old);
            }
        }
    }

    /// Self-fencing: SIGKILLs every group now and reports the tasks as killed with
    /// `message`. Returns how many were killed.
    pub fn self_fence(&mut self, message: &str) -> usize {
        self.pending.clear();
        let mut n = 0;
        for t in self.tasks.values_mut().filter(|t| t.alive() && !t.ended()) {
            if let Some(h) = &t.handle {
                h.send(Control::Kill);
            }
            t.shown = t.state;
            t.state = TaskState::Exited;
            t.outcome = Outcome { code: None, signal: Some(nix::sys::signal::Signal::SIGKILL as i32) };
            t.message = Some(message.to_owned());
            n += 1;
        }
        n
    }

    /// Fenced by the control plane: SIGKILLs every group and forgets every task (their
    /// ends need not be reported), but remembers their keys: a copy that ran is never
    /// started again, even if an answer still lists it. Returns how many groups were
    /// killed.
    pub fn fence_and_forget(&mut self) -> usize {
        self.pending.clear();
        let mut n = 0;
        for (key, t) in std::mem::take(&mut self.tasks) {
            self.remember(key);
            if let Some(h) = t.handle {
                h.send(Control::Kill);
                self.dying.insert(t.id, (h.pgid, t.gpus));
                n += 1;
            }
        }
        n
    }

    /// Graceful stop of everything (agent shutdown).
    pub fn stop_all(&mut self, grace: Duration) {
        self.pending.clear();
        for t in self.tasks.values_mut().filter(|t| t.alive()) {
            if t.state == TaskState::Running {
                t.state = TaskState::Stopping;
            }
            if let Some(h) = &t.handle {
                h.send(Control::Stop { grace });
            }
        }
    }

    /// How many process groups may still exist.
    pub fn alive(&self) -> usize {
        self.tasks.values().filter(|t| t.alive()).count() + self.dying.len()
    }

    /// Whether a task still runs that a self-fence would have to kill.
    pub fn has_unfenced(&self) -> bool {
        self.tasks.values().any(|t| t.alive() && !t.ended())
    }

    /// Every group that may still exist (to register with a new guard).
    pub fn live_groups(&self) -> Vec<i32> {
        let tasks = self.tasks.values().filter_map(|t| t.handle.as_ref().map(|h| h.pgid));
        tasks.chain(self.dying.values().map(|(pgid, _)| *pgid)).collect()
    }

    /// Guard lines to send since the last call.
    pub fn take_guard_updates(&mut self) -> Vec<(char, i32)> {
        std::mem::take(&mut self.guard_updates)
    }

    /// Share held per GPU by live tasks, for the simulated power model.
    pub fn loads(&self) -> Vec<GpuLoad> {
        let mut per: BTreeMap<u16, u32> = BTreeMap::new();
        for t in self.tasks.values().filter(|t| t.alive()) {
            for (g, m) in t.gpus.iter().zip(&t.milli) {
                *per.entry(*g).or_default() += m;
            }
        }
        per.into_iter().map(|(index, milli)| GpuLoad { index, milli }).collect()
    }

    /// Splits each GPU's energy since the previous sample among the live tasks holding
    /// it, by their share (the unallocated rest is nobody's).
    pub fn attribute_energy(&mut self, telemetry: &NodeTelemetry) {
        for g in &telemetry.gpus {
            let before = self.last_energy.insert(g.index, g.energy_j);
            let Some(delta) = before.map(|b| g.energy_j - b).filter(|d| *d > 0.0) else { continue };
            for t in self.tasks.values_mut().filter(|t| t.alive()) {
                for (gpu, milli) in t.gpus.iter().zip(&t.milli) {
                    if *gpu == g.index {
                        t.energy_j += delta * f64::from((*milli).min(1000)) / 1000.0;
                    }
                }
            }
        }
    }

    /// What the heartbeat says about every known task. An ended task whose output is
    /// not all shipped yet is shown as it was before it ended, so that the control plane
    /// never sees an end before the complete output.
    pub fn reports(&self) -> Vec<TaskReport> {
        self.tasks.iter().map(|(k, t)| t.report(k)).collect()
    }

    /// Ships new output of every task (ended tasks first), or of the ended tasks only,
    /// `budget` chunks at most. Returns whether an ended task's output became complete
    /// (its end can now be reported).
    ///
    /// # Errors
    /// The first transient failure or `409 stale-generation`.
    pub async fn ship_logs(
        &mut self,
        cx: &ShipContext<'_>,
        ended_only: bool,
        mut budget: usize,
    ) -> Result<bool, CallError> {
        let mut completed = false;
        let passes: &[bool] = if ended_only { &[true] } else { &[true, false] };
        for &ended_pass in passes {
            for (key, t) in self.tasks.iter_mut().filter(|(_, t)| !t.flushed && t.ended() == ended_pass) {
                let caught_up = t.logs.ship(cx, key, &mut budget).await?;
                if caught_up && t.ended() && !t.alive() {
                    t.flushed = true;
                    completed = true;
                }
            }
        }
        Ok(completed)
    }
}

fn key_of(a: &Assignment) -> TaskKey {
    TaskKey { workload: a.workload.clone(), task: a.task, generation: a.generation }
}

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod tests;
