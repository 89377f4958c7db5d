//! One replica of an LLM service: a queue, continuous batching, and work that stretches
//! when a power limit lowers the clock.
//!
//! The replica runs one operation at a time, as vLLM does without chunked prefill:
//!
//! * a **prefill** of the waiting prompts (up to a token budget), which puts out each
//!   request's first token; waiting prompts go first, so running decodes pause for it;
//! * a **decode run**: decode steps of every running request, back to back, until the
//!   first of them finishes or a new prompt arrives (the run then ends at the next step
//!   boundary). One event per run instead of one per token keeps an hour of a whole
//!   site's traffic fast to simulate; the steps of a run take the time of the step at the
//!   run's middle context.
//!
//! An operation's time is `max(compute / clock, memory) + overhead` (see
//! [`crate::inference`]); when the power limit changes the clock mid-operation, the part
//! not yet done is stretched or shrunk.

use std::collections::VecDeque;

use crate::inference::{LatencyModel, PrefillBatch, Roofline};

/// A request on a replica.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Req {
    /// Arrival time, seconds.
    pub arrived: f64,
    /// Prompt tokens.
    pub prompt: u32,
    /// Output tokens still to produce.
    pub left: u32,
    /// Output tokens in all.
    pub output: u32,
    /// When its first token came out (after its prefill).
    pub first_token: f64,
}

/// A finished request: what the SLO is judged on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Done {
    /// Time to first token, seconds.
    pub ttft: f64,
    /// Mean time between tokens, seconds (0 for a one-token answer).
    pub tbt: f64,
    /// Output tokens.
    pub tokens: u32,
}

/// What the replica's GPUs are doing, which decides what they draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing to do.
    Idle,
    /// A prefill batch: compute-bound.
    Prefill,
    /// Decode steps: memory-bound.
    Decode,
}

#[derive(Debug, Clone)]
enum Op {
    Idle,
    Prefill { batch: Vec<Req> },
    Decode { steps: u32 },
}

/// The time terms of the operation in progress, at full clock.
#[derive(Debug, Clone, Copy)]
struct Terms {
    compute: f64,
    memory: f64,
    overhead: f64,
}

impl Terms {
    fn of(r: Roofline) -> Terms {
        Terms { compute: r.compute.0, memory: r.memory.0, overhead: r.overhead.0 }
    }

    fn duration(&self, clock: f64) -> f64 {
        (self.compute / clock.max(1e-3)).max(self.memory) + self.overhead
    }
}

/// One replica.
#[derive(Debug, Clone)]
pub struct Replica {
    waiting: VecDeque<Req>,
    running: Vec<Req>,
    op: Op,
    terms: Terms,
    /// Share of the operation done at `mark`.
    done: f64,
    mark: f64,
    clock: f64,
    /// Bumped at every new end time, so that stale end events are recognised.
    pub generation: u64,
    /// When the operation in progress ends (if any).
    pub ends_at: Option<f64>,
    /// Whether a prompt arrived during a decode run, which then ends at its next step.
    cut_pending: bool,
}

/// How a replica batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batching {
    /// Most prompt tokens in one prefill (at least one prompt goes in, however long).
    pub max_prefill_tokens: u32,
    /// Most requests decoding at once.
    pub max_running: u32,
    /// Most steps in one decode run (bounds the error of the run's mean step time).
    pub max_run_steps: u32,
}

impl Default for Batching {
    /// vLLM's defaults of the time: 8,192 batched tokens, 256 sequences.
    fn default() -> Batching {
        Batching { max_prefill_tokens: 8192, max_running: 256, max_run_steps: 32 }
    }
}

impl Replica {
    /// An idle replica at full clock.
    #[must_use]
    pub fn new() -> Replica {
        Replica {
            waiting: VecDeque::new(),
            running: Vec::new(),
            op: Op::Idle,
            terms: Terms { compute: 0.0, memory: 0.0, overhead: 0.0 },
            done: 0.0,
            mark: 0.0,
            clock: 1.0,
            generation: 0,
            ends_at: None,
            cut_pending: false,
        }
    }

    /// What the GPUs are doing.
    #[must_use]
    pub fn phase(&self) -> Phase {
        match self.op {
            Op::Idle => Phase::Idle,
            Op::Prefill { .. } => Phase::Prefill,
            Op::Decode { .. } => Phase::Decode,
        }
    }

    /// Requests waiting, in a prefill, or decoding.
    #[must_use]
    pub fn outstanding(&self) -> usize {
        let in_prefill = match &self.op {
            Op::Prefill { batch } => batch.len(),
            _ => 0,
        };
        self.waiting.len() + self.running.len() + in_prefill
    }

    /// A request arrives at `now`. Returns whether the end time changed (a new operation
    /// started, or a decode run was cut short).
    pub fn arrive(&mut self, now: f64, prompt: u32, output: u32, model: &LatencyModel, b: &Batching) -> bool {
        self.waiting.push_back(Req { arrived: now, prompt, left: output, output, first_token: 0.0 });
        match self.op {
            Op::Idle => {
                self.start_next(now, model, b);
                true
            }
            Op::Decode { steps } if !self.cut_pending => {
                // End the run at the next step boundary.
                self.advance(now);
                let done_steps = (self.done * f64::from(steps) - 1e-9).ceil().max(1.0).min(f64::from(steps));
                let new_steps = done_steps as u32;
                if new_steps < steps {
                    // Keep the per-step time: the run's terms shrink with its step count.
                    let scale = f64::from(new_steps) / f64::from(steps);
                    self.done /= scale;
                    self.terms = Terms {
                        compute: self.terms.compute * scale,
                        memory: self.terms.memory * scale,
                        overhead: self.terms.overhead * scale,
                    };
                    self.op = Op::Decode { steps: new_steps };
                    self.reschedule(now);
                    self.cut_pending = true;
                    return true;
                }
                self.cut_pending = true;
                false
            }
            _ => false,
        }
    }

    /// The clock changes at `now` (a new power limit): the rest of the operation takes
    /// longer or shorter. Returns whether the end time changed.
    pub fn set_clock(&mut self, now: f64, clock: f64) -> bool {
        let clock = clock.clamp(1e-3, 1.0);
        if (clock - self.clock).abs() < 1e-12 {
            return false;
        }
        self.advance(now);
        self.clock = clock;
        if matches!(self.op, Op::Idle) {
            return false;
        }
        self.reschedule(now);
        true
    }

    /// The clock in force.
    #[must_use]
    pub fn clock(&self) -> f64 {
        self.clock
    }

    /// The operation in progress ended at `now`: finished requests are returned in `out`
    /// and the next operation starts.
    pub fn finish(&mut self, now: f64, model: &LatencyModel, b: &Batching, out: &mut Vec<Done>) {
        match std::mem::replace(&mut self.op, Op::Idle) {
            Op::Idle => {}
            Op::Prefill { batch } => {
                for mut r in batch {
                    r.first_token = now;
                    r.left = r.left.saturating_sub(1);
                    if r.left == 0 {
                        out.push(Done { ttft: now - r.arrived, tbt: 0.0, tokens: r.output });
                    } else {
                        self.running.push(r);
                    }
                }
            }
            Op::Decode { steps } => {
                let mut i = 0;
                while i < self.running.len() {
                    let r = &mut self.running[i];
                    r.left = r.left.saturating_sub(steps);
                    if r.left == 0 {
                        let r = self.running.swap_remove(i);
                        let tbt = (now - r.first_token) / f64::from(r.output.saturating_sub(1).max(1));
                        out.push(Done { ttft: r.first_token - r.arrived, tbt, tokens: r.output });
                    } else {
                        i += 1;
                    }
                }
            }
        }
        self.start_next(now, model, b);
    }

    fn start_next(&mut self, now: f64, model: &LatencyModel, b: &Batching) {
        self.cut_pending = false;
        self.done = 0.0;
        self.mark = now;
        let room = (b.max_running as usize).saturating_sub(self.running.len());
        if !self.waiting.is_empty() && room > 0 {
            let mut batch = Vec::new();
            let mut tokens = 0u64;
            let mut pb = PrefillBatch::default();
            while let Some(r) = self.waiting.front() {
                let t = u64::from(r.prompt);
                if !batch.is_empty() && (tokens + t > u64::from(b.max_prefill_tokens) || batch.len() >= room)
                {
                    break;
                }
                tokens += t;
                pb.add_prompt(t);
                if let Some(r) = self.waiting.pop_front() {
                    batch.push(r);
                }
            }
            self.terms = Terms::of(model.prefill_terms(&pb, 1.0));
            self.op = Op::Prefill { batch };
        } else if !self.running.is_empty() {
            let steps =
                self.running.iter().map(|r| r.left).min().unwrap_or(1).clamp(1, b.max_run_steps.max(1));
            let batch = self.running.len() as u32;
            let context: u64 = self.running.iter().map(|r| u64::from(r.prompt + (r.output - r.left))).sum();
            // The run's middle context: every running request grows by one token a step.
            let mid = context + u64::from(batch) * u64::from(steps) / 2;
            let step = Terms::of(model.decode_terms(batch, mid, 1.0));
            let k = f64::from(steps);
            self.terms =
                Terms { compute: step.compute * k, memory: step.memory * k, overhead: step.overhead * k };
            self.op = Op::Decode { steps };
        } else {
            self.op = Op::Idle;
            self.ends_at = None;
            self.generation += 1;
            return;
        }
        self.reschedule(now);
    }

    /// Counts the work done since `mark` at the current clock.
    fn advance(&mut self, now: f64) {
        let d = self.terms.duration(self.clock);
        if d > 0.0 {
            self.done = (self.done + (now - self.mark) / d).min(1.0);
        }
        self.mark = now;
    }

    fn reschedule(&mut self, now: f64) {
        let d = self.terms.duration(self.clock);
        self.ends_at = Some(now + (1.0 - self.done).max(0.0) * d);
        self.generation += 1;
    }
}

impl Default for Replica {
    fn default() -> Replica {
        Replica::new()
    }
}

#[cfg(test)]
mod tests {
    use gigawatt_fleet::GpuCatalog;

    use super::*;
    use crate::inference::{Efficiency, LlmSpec, Precision, ReplicaSpec};

    fn model() -> LatencyModel {
        let catalog = GpuCatalog::builtin();
        let Some(h100) = catalog.get("H100") else { panic!("no H100") };
        let Ok(replica) = ReplicaSpec::new(h100, Precision::Fp8, 4) else { panic!("replica") };
        let Ok(m) = LatencyModel::new(LlmSpec::llama2_70b_fp8(), replica, Efficiency::default()) else {
            panic!("model")
        };
        m
    }

    #[test]
    fn a_lone_request_takes_its_unloaded_latency() {
        let m = model();
        let b = Batching::default();
        let mut r = Replica::new();
        assert!(r.arrive(0.0, 2048, 3, &m, &b));
        assert_eq!(r.phase(), Phase::Prefill);
        let mut done = Vec::new();
        let end = r.ends_at.unwrap_or_default();
        assert!((end - m.ttft_unloaded(2048).0).abs() < 1e-9);
        r.finish(end, &m, &b, &mut done);
        assert_eq!(r.phase(), Phase::Decode);
        let end2 = r.ends_at.unwrap_or_default();
        r.finish(end2, &m, &b, &mut done);
        assert_eq!(done.len(), 1);
        assert!((done[0].ttft - end).abs() < 1e-9);
        assert!(done[0].tbt > 0.005 && done[0].tbt < 0.05, "{:?}", done[0]);
        assert_eq!(r.phase(), Phase::Idle);
    }

    #[test]
    fn a_lower_clock_stretches_the_rest_of_a_prefill() {
        let m = model();
        let b = Batching::default();
        let mut r = Replica::new();
        r.arrive(0.0, 4096, 1, &m, &b);
        let full = r.ends_at.unwrap_or_default();
        assert!(r.set_clock(full / 2.0, 0.5));
        let stretched = r.ends_at.unwrap_or_default();
        assert!(stretched > full * 1.3 && stretched < full * 1.6, "{full} → {stretched}");
    }

    #[test]
    fn an_arrival_cuts_a_decode_run_at_its_next_step() {
        let m = model();
        let b = Batching::default();
        let mut r = Replica::new();
        r.arrive(0.0, 100, 30, &m, &b);
        let mut done = Vec::new();
        let t = r.ends_at.unwrap_or_default();
        r.finish(t, &m, &b, &mut done);
        let run_end = r.ends_at.unwrap_or_default();
        assert!(r.arrive(t + (run_end - t) * 0.1, 100, 1, &m, &b));
        let cut = r.ends_at.unwrap_or_default();
        assert!(cut < run_end, "the run ends early");
        r.finish(cut, &m, &b, &mut done);
        assert_eq!(r.phase(), Phase::Prefill, "the waiting prompt goes next");
        assert_eq!(r.outstanding(), 2);
    }
}
