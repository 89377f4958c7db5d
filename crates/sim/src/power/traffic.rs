//! A request trace scaled up to a site's load: `copies` overlaid copies of the trace, each
//! shifted in time by its own seeded offset and wrapped around the trace's span.
//!
//! One hour of the Azure code trace is 8,819 requests, 2.6 per second: a few GPUs' worth.
//! A site needs thousands of times that. Overlaying shifted copies keeps each copy's burst
//! structure and token mix and adds load the way independent users do; the copies are
//! merged lazily, so a 20-million-request hour never sits in memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::azure::Request;

/// One request of the scaled trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// Seconds since the start of the replay.
    pub at: f64,
    /// Prompt tokens.
    pub prompt: u32,
    /// Output tokens (at least one: the first token comes out of the prefill).
    pub output: u32,
}

/// The merged arrivals of every copy, in time order.
pub struct ScaledTrace<'a> {
    requests: &'a [Request],
    span: f64,
    /// Per copy: its offset and the index it starts from (the first request that wraps).
    copies: Vec<(f64, usize)>,
    /// (next arrival time in µs, copy, how many of its requests were emitted).
    heap: BinaryHeap<Reverse<(u64, u32, usize)>>,
    until: f64,
}

impl<'a> ScaledTrace<'a> {
    /// `copies` copies of `requests` (sorted by arrival, as the trace reader returns them),
    /// replayed for `until` seconds at most (or the trace's span when shorter).
    #[must_use]
    pub fn new(requests: &'a [Request], copies: u32, seed: u64, until: f64) -> ScaledTrace<'a> {
        // The span wraps: one mean inter-arrival after the last request, so that a copy's
        // last and first requests do not collide.
        let last = requests.last().map_or(0.0, |r| r.at.0);
        let span =
            if requests.len() > 1 { last * (1.0 + 1.0 / requests.len() as f64) } else { last.max(1.0) };
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7472_6166_6669_6321);
        let mut out = ScaledTrace {
            requests,
            span,
            copies: Vec::with_capacity(copies as usize),
            heap: BinaryHeap::new(),
            until: until.min(span),
        };
        for c in 0..copies {
            let offset = if c == 0 { 0.0 } else { rng.random::<f64>() * span };
            // Requests at or after `span - offset` wrap to the start.
            let start = requests.partition_point(|r| r.at.0 + offset < span);
            out.copies.push((offset, start));
            if !requests.is_empty() {
                let t = out.time_of(c as usize, 0);
                out.heap.push(Reverse((micros(t), c, 0)));
            }
        }
        out
    }

    /// The time the `k`-th request of copy `c` arrives.
    fn time_of(&self, c: usize, k: usize) -> f64 {
        let (offset, start) = self.copies[c];
        let n = self.requests.len();
        let i = (start + k) % n;
        let t = self.requests[i].at.0 + offset;
        if t >= self.span { t - self.span } else { t }
    }

    /// The replay's length in seconds.
    #[must_use]
    pub fn duration(&self) -> f64 {
        self.until
    }

    /// Mean arrival rate of the scaled trace, per second.
    #[must_use]
    pub fn mean_rate(&self) -> f64 {
        if self.span > 0.0 { self.requests.len() as f64 * self.copies.len() as f64 / self.span } else { 0.0 }
    }
}

fn micros(t: f64) -> u64 {
    (t * 1e6).round().max(0.0) as u64
}

impl Iterator for ScaledTrace<'_> {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        let Reverse((_, c, k)) = self.heap.pop()?;
        let n = self.requests.len();
        let t = self.time_of(c as usize, k);
        if t >= self.until {
            return None;
        }
        let (_, start) = self.copies[c as usize];
        let r = self.requests[(start + k) % n];
        if k + 1 < n {
            let next = self.time_of(c as usize, k + 1);
            self.heap.push(Reverse((micros(next), c, k + 1)));
        }
        Some(Arrival { at: t, prompt: r.context_tokens.max(1), output: r.generated_tokens.max(1) })
    }
}

#[cfg(test)]
mod tests {
    use gigawatt_units::Seconds;

    use super::*;

    fn trace() -> Vec<Request> {
        (0..10)
            .map(|i| Request {
                at: Seconds(f64::from(i)),
                context_tokens: 100 + i as u32,
                generated_tokens: 1,
            })
            .collect()
    }

    #[test]
    fn copies_are_merged_in_time_order_and_wrap_within_the_span() {
        let t = trace();
        let merged: Vec<Arrival> = ScaledTrace::new(&t, 5, 7, f64::MAX).collect();
        assert_eq!(merged.len(), 50);
        assert!(merged.windows(2).all(|w| w[0].at <= w[1].at));
        let span = 9.0 * 1.1;
        assert!(merged.iter().all(|a| a.at >= 0.0 && a.at < span));
        // Every copy carries every request's tokens once.
        let mut prompts: Vec<u32> = merged.iter().map(|a| a.prompt).collect();
        prompts.sort_unstable();
        assert_eq!(prompts[..5], [100; 5]);
        assert_eq!(prompts[45..], [109; 5]);
    }

    #[test]
    fn the_same_seed_gives_the_same_replay_and_until_cuts_it() {
        let t = trace();
        let a: Vec<Arrival> = ScaledTrace::new(&t, 3, 1, 4.0).collect();
        let b: Vec<Arrival> = ScaledTrace::new(&t, 3, 1, 4.0).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|x| x.at < 4.0));
        assert!(!a.is_empty());
    }
}
