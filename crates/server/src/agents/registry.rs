//! What the control plane knows of its agents between log entries: when each was last
//! heard from, what it measures (a bounded window of telemetry) and which task copies it
//! says are alive.
//!
//! None of this is in the log: it is measured, not decided, and a restarted control
//! plane relearns it from the next heartbeat of every agent. The log holds what follows
//! from it (a node lost, a task started or exited).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use gigawatt_api::{GpuTelemetry, NodeTelemetry, TaskKey, TaskReport, TaskState, parse_workload_id};
use gigawatt_core::WorkloadId;

use super::AgentSettings;

/// One GPU in one stored sample, packed: a window of minutes for 200,000 GPUs must fit
/// in a few tens of MiB.
#[derive(Debug, Clone, Copy)]
struct GpuSample {
    power_w: u16,
    limit_w: u16,
    utilization_pct: u8,
    temperature_c: u8,
    memory_used_mib: u32,
}

/// One heartbeat's measurements, packed.
#[derive(Debug, Clone)]
struct Sample {
    at_ms: i64,
    power_w: u32,
    gpus: Box<[GpuSample]>,
}

/// What the control plane knows of one node's agent.
#[derive(Debug)]
pub struct Live {
    /// The generation its agent holds.
    pub generation: u64,
    /// When it was last heard from (monotonic).
    pub last_seen: Instant,
    /// When it was last heard from (Unix ms), `None` before its first heartbeat.
    pub last_seen_ms: Option<i64>,
    /// Whether it was declared lost.
    pub lost: bool,
    /// Its latest measurements.
    pub latest: Option<NodeTelemetry>,
    /// Task processes it reported in its latest heartbeat.
    pub tasks: Vec<TaskReport>,
    /// Exits of old copies already written to the log (an agent repeats an exit until
    /// it is acknowledged; the log must hold it once).
    pub recorded: HashSet<TaskKey>,
    samples: VecDeque<Sample>,
}

impl Live {
    fn new(generation: u64) -> Live {
        Live {
            generation,
            last_seen: Instant::now(),
            last_seen_ms: None,
            lost: false,
            latest: None,
            tasks: Vec::new(),
            recorded: HashSet::new(),
            samples: VecDeque::new(),
        }
    }

    /// The stored window, oldest first, unpacked. Only the newest sample has energy
    /// counters (the window does not keep them).
    #[must_use]
    pub fn samples(&self) -> Vec<(i64, NodeTelemetry)> {
        let n = self.samples.len();
        self.samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let gpus = s
                    .gpus
                    .iter()
                    .enumerate()
                    .map(|(g, x)| GpuTelemetry {
                        index: g as u16,
                        power_w: u64::from(x.power_w),
                        utilization_pct: x.utilization_pct,
                        memory_used_mib: u64::from(x.memory_used_mib),
                        temperature_c: u16::from(x.temperature_c),
                        power_limit_w: u64::from(x.limit_w),
                        energy_j: if i + 1 == n {
                            self.latest.as_ref().and_then(|l| l.gpus.get(g)).map_or(0.0, |l| l.energy_j)
                        } else {
                            0.0
                        },
                    })
                    .collect();
                (s.at_ms, NodeTelemetry { power_w: u64::from(s.power_w), gpus })
            })
            .collect()
    }

    /// The task copies it runs (running or stopping).
    fn alive(&self) -> impl Iterator<Item = &TaskReport> {
        self.tasks.iter().filter(|t| matches!(t.state, TaskState::Running | TaskState::Stopping))
    }
}

/// A live copy of a task somewhere: its node, task index, generation, and the energy
/// its agent counted so far.
#[derive(Debug, Clone, PartialEq)]
struct Copy {
    node: String,
    task: u32,
    generation: u64,
    energy_j: f64,
}

/// Every agent's live state.
pub struct Registry {
    /// Settings (intervals, window).
    pub settings: AgentSettings,
    nodes: RwLock<HashMap<String, Arc<Mutex<Live>>>>,
    /// Live copies by workload, from every node's latest heartbeat.
    copies: Mutex<HashMap<WorkloadId, Vec<Copy>>>,
    /// Nodes registered when this control plane started that have not sent a heartbeat
    /// since. Until they have (or could have been declared lost), no new copy is handed
    /// out: what they run is not known yet.
    unsynced: Mutex<HashSet<String>>,
    boot: Instant,
    /// A counter per node, bumped when its assignments or limits change; agents wait on
    /// it (`GET /v1/agent/changes`) to send a heartbeat at once.
    changes: Mutex<HashMap<String, tokio::sync::watch::Sender<u64>>>,
    /// Refusals of agent credentials acting outside their node, recorded lately.
    pub refusals: super::scope::Refusals,
}

/// A registry lock was poisoned (a handler panicked holding it).
fn poisoned<T>(e: std::sync::PoisonError<T>) -> T {
    e.into_inner()
}

impl Registry {
    /// A registry for a control plane that just started, with the live agents the log
    /// names: each gets a full `lost_after` to be heard from.
    #[must_use]
    pub fn new(settings: AgentSettings, live: impl IntoIterator<Item = (String, u64)>) -> Registry {
        let mut nodes = HashMap::new();
        let mut unsynced = HashSet::new();
        for (node, generation) in live {
            unsynced.insert(node.clone());
            nodes.insert(node, Arc::new(Mutex::new(Live::new(generation))));
        }
        Registry {
            settings,
            nodes: RwLock::new(nodes),
            copies: Mutex::new(HashMap::new()),
            unsynced: Mutex::new(unsynced),
            boot: Instant::now(),
            changes: Mutex::new(HashMap::new()),
            refusals: super::scope::Refusals::default(),
        }
    }

    /// Tells the agents of `nodes` that what they should run changed.
    pub fn wake(&self, nodes: impl IntoIterator<Item = String>) {
        let changes = self.changes.lock().unwrap_or_else(poisoned);
        for node in nodes {
            if let Some(tx) = changes.get(&node) {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }

    /// A receiver of `node`'s change counter.
    #[must_use]
    pub fn changes(&self, node: &str) -> tokio::sync::watch::Receiver<u64> {
        let mut changes = self.changes.lock().unwrap_or_else(poisoned);
        changes.entry(node.to_string()).or_insert_with(|| tokio::sync::watch::channel(0).0).subscribe()
    }

    /// Whether every agent's state is known since this control plane started.
    #[must_use]
    pub fn synced(&self) -> bool {
        self.boot.elapsed() > self.settings.lost_after
            || self.unsynced.lock().unwrap_or_else(poisoned).is_empty()
    }

    /// The entry of a node, if its agent registered.
    #[must_use]
    pub fn get(&self, node: &str) -> Option<Arc<Mutex<Live>>> {
        self.nodes.read().unwrap_or_else(poisoned).get(node).cloned()
    }

    /// Every node with an entry, sorted.
    #[must_use]
    pub fn nodes(&self) -> Vec<(String, Arc<Mutex<Live>>)> {
        let mut all: Vec<_> =
            self.nodes.read().unwrap_or_else(poisoned).iter().map(|(n, l)| (n.clone(), l.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// A node's agent registered under `generation`: it starts afresh.
    pub fn registered(&self, node: &str, generation: u64) {
        self.forget_copies(node);
        self.unsynced.lock().unwrap_or_else(poisoned).remove(node);
        self.nodes
            .write()
            .unwrap_or_else(poisoned)
            .insert(node.to_string(), Arc::new(Mutex::new(Live::new(generation))));
    }

    /// A node was declared lost: its agent (self-fenced by now) holds an old generation.
    pub fn lost(&self, node: &str, new_generation: u64) {
        if let Some(live) = self.get(node) {
            let mut live = live.lock().unwrap_or_else(poisoned);
            live.lost = true;
            live.generation = new_generation;
            live.tasks.clear();
        }
        self.unsynced.lock().unwrap_or_else(poisoned).remove(node);
        self.forget_copies(node);
    }

    fn forget_copies(&self, node: &str) {
        let mut copies = self.copies.lock().unwrap_or_else(poisoned);
        copies.retain(|_, v| {
            v.retain(|c| c.node != node);
            !v.is_empty()
        });
    }

    /// Stores a heartbeat: when, what it measured, which copies are alive.
    pub fn heard(
        &self,
        node: &str,
        live: &Mutex<Live>,
        now_ms: i64,
        telemetry: NodeTelemetry,
        tasks: Vec<TaskReport>,
    ) {
        let window = self.settings.telemetry_samples;
        let (before, after) = {
            let mut l = live.lock().unwrap_or_else(poisoned);
            l.last_seen = Instant::now();
            l.last_seen_ms = Some(now_ms);
            if window > 0 {
                let sat16 = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
                let gpus = telemetry
                    .gpus
                    .iter()
                    .map(|g| GpuSample {
                        power_w: sat16(g.power_w),
                        limit_w: sat16(g.power_limit_w),
                        utilization_pct: g.utilization_pct.min(100),
                        temperature_c: u8::try_from(g.temperature_c).unwrap_or(u8::MAX),
                        memory_used_mib: u32::try_from(g.memory_used_mib).unwrap_or(u32::MAX),
                    })
                    .collect();
                let power_w = u32::try_from(telemetry.power_w).unwrap_or(u32::MAX);
                if l.samples.len() == window {
                    l.samples.pop_front();
                }
                l.samples.push_back(Sample { at_ms: now_ms, power_w, gpus });
            }
            l.latest = Some(telemetry);
            let before: Vec<(String, u32, u64)> =
                l.alive().map(|t| (t.workload.clone(), t.task, t.generation)).collect();
            l.tasks = tasks;
            let after: Vec<(String, u32, u64, f64)> =
                l.alive().map(|t| (t.workload.clone(), t.task, t.generation, t.energy_j)).collect();
            (before, after)
        };
        self.unsynced.lock().unwrap_or_else(poisoned).remove(node);
        let mut copies = self.copies.lock().unwrap_or_else(poisoned);
        for (w, task, generation) in &before {
            let Some(id) = parse_workload_id(w) else { continue };
            if let Some(v) = copies.get_mut(&id) {
                v.retain(|c| !(c.node == node && c.task == *task && c.generation == *generation));
                if v.is_empty() {
                    copies.remove(&id);
                }
            }
        }
        for (w, task, generation, energy_j) in after {
            let Some(id) = parse_workload_id(&w) else { continue };
            copies.entry(id).or_default().push(Copy { node: node.to_string(), task, generation, energy_j });
        }
    }

    /// Whether a copy of task `task` of `workload` older than `generation` is still
    /// alive on some node that was not declared lost: the new copy must wait for it to
    /// stop, so that two copies of one task never run at once.
    #[must_use]
    pub fn older_copy_alive(&self, workload: WorkloadId, task: u32, generation: u64) -> bool {
        self.copies
            .lock()
            .unwrap_or_else(poisoned)
            .get(&workload)
            .is_some_and(|v| v.iter().any(|c| c.task == task && c.generation < generation))
    }

    /// Energy counted so far by the live copies of `workload`, in joules.
    #[must_use]
    pub fn live_energy(&self, workload: WorkloadId) -> f64 {
        self.copies
            .lock()
            .unwrap_or_else(poisoned)
            .get(&workload)
            .map_or(0.0, |v| v.iter().map(|c| c.energy_j).sum())
    }

    /// Energy counted so far by every live copy, per workload.
    #[must_use]
    pub fn live_energy_all(&self) -> Vec<(WorkloadId, f64)> {
        self.copies
            .lock()
            .unwrap_or_else(poisoned)
            .iter()
            .map(|(id, v)| (*id, v.iter().map(|c| c.energy_j).sum()))
            .collect()
    }

    /// Nodes not heard from for longer than `lost_after`, with their generation and
    /// silence.
    #[must_use]
    pub fn overdue(&self) -> Vec<(String, u64, Duration)> {
        let limit = self.settings.lost_after;
        let mut due = Vec::new();
        for (node, live) in self.nodes.read().unwrap_or_else(poisoned).iter() {
            let l = live.lock().unwrap_or_else(poisoned);
            let silent = l.last_seen.elapsed();
            if !l.lost && silent > limit {
                due.push((node.clone(), l.generation, silent));
            }
        }
        due.sort();
        due
    }

    /// How many agents are ready (heard from in time) and lost.
    #[must_use]
    pub fn counts(&self) -> (usize, usize) {
        let nodes = self.nodes.read().unwrap_or_else(poisoned);
        let lost = nodes.values().filter(|l| l.lock().unwrap_or_else(poisoned).lost).count();
        (nodes.len() - lost, lost)
    }
}
