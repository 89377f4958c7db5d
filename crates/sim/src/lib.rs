//! The simulator: a discrete-event engine on a virtual clock that drives the very same
//! scheduling core as the control plane, plus adapters for public production traces.
//!
//! * [`engine`]: the event loop (arrivals, completions, any core event) on virtual time.
//! * [`openb`]: the Alibaba GPU-cluster 2023 pod lists.
//! * [`azure`]: the Azure LLM inference 2023 request trace (arrivals).
//! * [`fgd`]: the experiment of the FGD paper (Weng et al., ATC'23), reproduced.
//! * [`replay`]: a production replay with real arrival and departure times and a queue.
//! * [`queue`]: a standing multi-tenant queue: quotas, fair share, backfill.

pub mod azure;
pub mod engine;
pub mod fgd;
pub mod inference;
pub mod inflate;
pub mod openb;
pub mod power;
pub mod queue;
pub mod reference;
pub mod replay;
pub mod synthetic;

use gigawatt_fleet::{Diagnostic, Diagnostics};
use thiserror::Error;

/// A trace could not be read.
#[derive(Debug, Error)]
pub enum TraceError {
    /// The file could not be opened or read.
    #[error("cannot read {0}")]
    Io(String, #[source] std::io::Error),
    /// One or more rows are invalid; every problem is listed.
    #[error("{0}")]
    Invalid(Diagnostics),
}

impl TraceError {
    pub(crate) fn bad(
        file: &str,
        line: usize,
        field: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> TraceError {
        TraceError::Invalid(Diagnostics(vec![Diagnostic::new(file, line, 0, field, problem, fix)]))
    }
}

/// The 1-based line of byte offset `byte` in `text`: what an editor shows, whatever blank
/// lines or quoted line breaks came before.
pub(crate) fn line_at(text: &str, byte: u64) -> usize {
    let bytes = text.as_bytes();
    let mut end = usize::try_from(byte).unwrap_or(usize::MAX).min(bytes.len());
    // The reader reports where it resumed reading, before any blank lines it skipped.
    while end < bytes.len() && (bytes[end] == b'\n' || bytes[end] == b'\r') {
        end += 1;
    }
    bytes[..end].iter().filter(|b| **b == b'\n').count() + 1
}

/// A seeded RNG for one purpose of one run. Different `stream`s of the same seed are
/// independent, so adding draws to one purpose never shifts another.
#[must_use]
pub fn rng(seed: u64, stream: u64) -> gigawatt_core::CoreRng {
    use rand::SeedableRng;
    let mut r = gigawatt_core::CoreRng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}
