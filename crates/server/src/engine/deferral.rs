//! Carbon-aware deferral: a deferrable job waits for the lowest-carbon window before its
//! deadline, and the core hears of it only then.
//!
//! The window is planned at submission on the carbon-intensity series of the first site
//! in fleet order that may hold the job's data and has a series (a one-week profile is
//! read as a typical week), for a run as long as its `time_limit` drawing 90% of its GPUs'
//! TDP. A plan that would start within a minute is not a deferral: the job goes to the
//! core at once. The `workload-deferred` record says when, and what it saves against
//! starting at once.

use gigawatt_api::JobSpec;
use gigawatt_core::{Event, Workload};
use gigawatt_power::carbon::{DeferralRequest, plan_start};
use gigawatt_store::LogEvent;
use gigawatt_units::{Seconds, Timestamp, Watts};

use super::Engine;
use crate::error::EngineError;

/// A plan that starts sooner than this after submission runs at once.
const MIN_DEFERRAL_MS: i64 = 60_000;

/// Candidate starts are this far apart (the series' own steps are candidates too).
const STEP_S: f64 = 300.0;

/// Share of TDP a deferred job is assumed to draw, to weigh its emissions.
const ACTIVITY: f64 = 0.9;

impl Engine {
    /// Plans a deferrable job's start, changing nothing: the `workload-deferred` record to
    /// stage after its submission when it is to be held back, `None` when it runs at once.
    /// Checked before anything is staged, so that a refused job leaves no trace.
    pub(crate) fn plan_deferral(
        &self,
        now: i64,
        spec: &JobSpec,
        workload: &Workload,
    ) -> Result<Option<LogEvent>, EngineError> {
        let Some(d) = &spec.deferrable else { return Ok(None) };
        let deadline = chrono::DateTime::parse_from_rfc3339(d.deadline.trim())
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                EngineError::field(
                    "deferrable.deadline",
                    format!(
                        "`{}` is not an RFC 3339 time ({e}); write e.g. 2026-12-06T06:00:00Z",
                        d.deadline
                    ),
                )
            })?;
        let Some(limit_s) = spec.time_limit.as_deref().and_then(|t| humantime::parse_duration(t).ok()) else {
            return Err(EngineError::field(
                "time_limit",
                "a deferrable job needs a time_limit: how long it runs decides which window fits before the deadline",
            ));
        };
        let run_ms = i64::try_from(limit_s.as_millis()).unwrap_or(i64::MAX);
        if deadline < now.saturating_add(run_ms) {
            return Err(EngineError::field(
                "deferrable.deadline",
                format!(
                    "{} leaves less than its time_limit ({}) from now: it could not end by then even starting at once",
                    d.deadline,
                    spec.time_limit.as_deref().unwrap_or("")
                ),
            ));
        }
        // The first site that may hold its data and knows its carbon intensity.
        let site = self
            .fleet
            .sites
            .iter()
            .enumerate()
            .find(|(i, s)| s.carbon.is_some() && self.scheduler.may_run_at(workload, *i));
        let Some((_, site)) = site else { return Ok(None) };
        let Some(carbon) = &site.carbon else { return Ok(None) };
        let tdp = workload
            .demand
            .gpu_models
            .first()
            .and_then(|m| self.fleet.catalog.get(m))
            .map_or(Watts(700), |g| g.tdp);
        let gpus = u64::from(workload.demand.gpu.count) * u64::from(workload.shape.tasks());
        let power = Watts((tdp.0 as f64 * ACTIVITY * gpus as f64).ceil() as u64).max(Watts(1));
        let series = carbon.series.repeated_over(Timestamp(now), Timestamp(deadline));
        let request = DeferralRequest {
            earliest: Timestamp(now),
            deadline: Timestamp(deadline),
            duration: Seconds(run_ms as f64 / 1e3),
            power,
        };
        let plan = plan_start(&series, &request, Seconds(STEP_S))
            .map_err(|e| EngineError::field("deferrable", e.to_string()))?;
        if plan.start.0 - now < MIN_DEFERRAL_MS || plan.saved.0 <= 0.0 {
            return Ok(None);
        }
        Ok(Some(LogEvent::WorkloadDeferred {
            workload: workload.id,
            until_ms: plan.start.0,
            deadline_ms: deadline,
            site: site.id.clone(),
            expected_g: plan.emissions.0,
            immediate_g: plan.immediate.0,
        }))
    }

    /// Holds a workload back as `deferred` says (a record from [`Engine::plan_deferral`]).
    pub(crate) fn hold(&mut self, now: i64, deferred: LogEvent) -> Result<(), EngineError> {
        if let LogEvent::WorkloadDeferred { workload, until_ms, .. } = &deferred {
            self.deferred.insert((*until_ms, *workload));
        }
        self.stage(now, deferred)
    }

    /// Gives the core the deferred workloads whose window has come.
    pub(crate) fn release_deferred(&mut self, now: i64) -> Result<(), EngineError> {
        while let Some(&(at, id)) = self.deferred.first() {
            if at > now {
                break;
            }
            self.deferred.pop_first();
            let Some(w) = self.view.workloads.get(&id).filter(|w| !w.state.is_final()) else { continue };
            let workload = w.workload.clone();
            self.core(now, Event::Arrival(workload))?;
        }
        Ok(())
    }
}
