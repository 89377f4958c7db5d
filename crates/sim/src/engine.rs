//! A discrete-event engine on a virtual clock around the scheduling core.
//!
//! Events wait in a priority queue ordered by (time, insertion order), so equal times
//! keep the order they were scheduled in and a run is reproducible. When a workload with
//! a known duration has all its tasks placed, the engine schedules its completion.
//! The core never knows whether its clock is virtual.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use gigawatt_core::{CoreError, CoreRng, Decision, Event, Scheduler, WorkloadId};
use gigawatt_units::{Seconds, Timestamp};

/// One applied event and what the core decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Virtual time of the event.
    pub at: Timestamp,
    /// The event.
    pub event: Event,
    /// The core's decisions.
    pub decisions: Vec<Decision>,
}

/// A simulation: the core, a virtual clock and the events to come.
pub struct Simulation {
    scheduler: Scheduler,
    rng: CoreRng,
    now: Timestamp,
    seq: u64,
    queue: BinaryHeap<Reverse<(Timestamp, u64)>>,
    events: HashMap<u64, Event>,
    durations: HashMap<WorkloadId, Seconds>,
    /// The completion event currently due for each running workload; an older one
    /// (scheduled before a preemption) is stale and skipped.
    due: HashMap<WorkloadId, u64>,
}

impl Simulation {
    /// A simulation starting at `start`.
    #[must_use]
    pub fn new(scheduler: Scheduler, rng: CoreRng, start: Timestamp) -> Simulation {
        Simulation {
            scheduler,
            rng,
            now: start,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            durations: HashMap::new(),
            due: HashMap::new(),
        }
    }

    /// The core being driven.
    #[must_use]
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The virtual time.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Schedules `event` at `at` (clamped to now: the past cannot be changed).
    pub fn schedule(&mut self, at: Timestamp, event: Event) {
        if let Event::Arrival(w) = &event
            && let Some(d) = w.duration
        {
            self.durations.insert(w.id, d);
        }
        self.seq += 1;
        self.queue.push(Reverse((at.max(self.now), self.seq)));
        self.events.insert(self.seq, event);
    }

    /// Whether events remain.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.queue.is_empty()
    }

    /// Applies the next event, schedules the completions it implies, and returns it with
    /// the decisions. `None` when nothing is left.
    pub fn step(&mut self) -> Option<Result<Step, CoreError>> {
        let Reverse((at, seq)) = self.queue.pop()?;
        let event = self.events.remove(&seq)?;
        self.now = at;
        if let Event::Completion(id) = &event {
            if self.due.get(id) != Some(&seq) {
                // Stale: the workload was preempted (or cancelled) after this was scheduled.
                return self.step();
            }
            self.due.remove(id);
        }
        let decisions = match self.scheduler.handle(at, event.clone(), &mut self.rng) {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        for d in &decisions {
            match d {
                Decision::Placed { workload, .. } => {
                    if self.scheduler.status(*workload) == Some(gigawatt_core::WorkloadStatus::Running)
                        && let Some(dur) = self.durations.get(workload).copied()
                    {
                        self.schedule(at + dur, Event::Completion(*workload));
                        self.due.insert(*workload, self.seq);
                    }
                }
                Decision::Preempted { workload, .. } => {
                    self.due.remove(workload);
                }
                Decision::Rejected { workload, .. } | Decision::Released { workload } => {
                    self.durations.remove(workload);
                    self.due.remove(workload);
                }
                _ => {}
            }
        }
        Some(Ok(Step { at, event, decisions }))
    }

    /// Runs to the end, handing every step to `observe`.
    pub fn run(
        &mut self,
        mut observe: impl FnMut(&Scheduler, Timestamp, &Event, &[Decision]),
    ) -> Result<(), CoreError> {
        while let Some(step) = self.step() {
            let step = step?;
            observe(&self.scheduler, step.at, &step.event, &step.decisions);
        }
        Ok(())
    }
}
