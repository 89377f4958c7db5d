//! Carbon-aware deferral: when a flexible workload should start.
//!
//! A batch job that must finish by morning can often wait a few hours for a cleaner grid.
//! In France the evening peak is two to three times as carbon-intensive as the night or
//! the early afternoon, so choosing the start within the slack the user allows saves
//! emissions at no cost in capacity. [`plan_start`] makes that choice from a site's
//! [`CarbonSeries`] (a forecast, or a profile); it is pure and deterministic, so the
//! simulator and the control plane get the same answer for the same inputs.
//!
//! ```
//! use gigawatt_fleet::CarbonSeries;
//! use gigawatt_power::carbon::{DeferralRequest, plan_start};
//! use gigawatt_units::{CarbonIntensity, Seconds, Timestamp, Watts};
//!
//! let hour = |h: i64| Timestamp::from_secs(h * 3600);
//! // 40 g/kWh, except 10 g/kWh from 02:00 to 04:00.
//! let series = CarbonSeries::new(vec![
//!     (hour(0), CarbonIntensity(40.0)),
//!     (hour(2), CarbonIntensity(10.0)),
//!     (hour(4), CarbonIntensity(40.0)),
//! ])?;
//! let req = DeferralRequest {
//!     earliest: hour(0),
//!     deadline: hour(8),
//!     duration: Seconds(2.0 * 3600.0),
//!     power: Watts(10_000),
//! };
//! let plan = plan_start(&series, &req, Seconds(900.0))?;
//! assert_eq!(plan.start, hour(2));
//! assert!((plan.saved.0 - 600.0).abs() < 1e-6); // 20 kWh × (40 − 10) g/kWh
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use gigawatt_fleet::CarbonSeries;
use gigawatt_units::{CarbonIntensity, GramsCo2, Seconds, Timestamp, Watts};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The most candidate starts one plan evaluates: a year at one-minute steps fits, and a
/// mistaken one-millisecond step over a long window is an error instead of a stall.
pub const MAX_CANDIDATES: u64 = 1_000_000;

/// A workload that may start at any time in a window, as long as it ends by its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DeferralRequest {
    /// The earliest start: usually now, or when its input data is ready.
    pub earliest: Timestamp,
    /// The latest **end**: the workload must have finished by then.
    pub deadline: Timestamp,
    /// How long it runs once started.
    pub duration: Seconds,
    /// Its constant draw while it runs (IT power; multiply by the PUE beforehand to count
    /// the facility's overhead too).
    pub power: Watts,
}

/// When to start, and what that choice saves compared with starting at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StartPlan {
    /// The chosen start.
    pub start: Timestamp,
    /// When the workload ends if started at [`start`](Self::start).
    pub end: Timestamp,
    /// The emissions of the run starting at [`start`](Self::start).
    pub emissions: GramsCo2,
    /// The emissions of the run starting at the request's `earliest`, the baseline the
    /// deferral is judged against.
    pub immediate: GramsCo2,
    /// `immediate − emissions`, never negative.
    pub saved: GramsCo2,
    /// The time-weighted mean intensity over the chosen run.
    pub mean_intensity: CarbonIntensity,
    /// The deadline cannot be met even by starting at `earliest` (`deadline − duration <
    /// earliest`). The plan then starts at `earliest`, the soonest it can finish, and ends
    /// after the deadline; the caller decides whether to run it late or to refuse it.
    pub late: bool,
}

/// Why no plan could be made: a request or step that means nothing.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum DeferralError {
    /// The duration is zero, negative, not a number or below one millisecond.
    #[error("the workload's duration must be at least 1 ms (got {0}); give how long it runs, e.g. 3600 s")]
    InvalidDuration(Seconds),
    /// The candidate step is zero, negative, not a number or below one millisecond.
    #[error(
        "the step between candidate starts must be at least 1 ms (got {0}); 900 s (15 min) suits hourly data"
    )]
    InvalidStep(Seconds),
    /// The window holds more candidate starts than [`MAX_CANDIDATES`] at this step.
    #[error(
        "a window of {window} at a step of {step} gives {count} candidate starts, more than the \
         {MAX_CANDIDATES} the planner evaluates; use a step of at least {suggested}"
    )]
    TooManyCandidates {
        /// The span of possible starts, `deadline − duration − earliest`.
        window: Seconds,
        /// The step asked for.
        step: Seconds,
        /// The candidates that step would give.
        count: u64,
        /// The smallest step, in whole seconds, that fits.
        suggested: Seconds,
    },
}

/// The start in `[earliest, deadline − duration]` that minimises the emissions of running
/// `req.power` for `req.duration`, with ties going to the earliest start.
///
/// The candidates are every `step` from `earliest`, the latest start, every boundary of the
/// series inside the window, and every start that makes the run end on a boundary. Emissions
/// are piecewise linear in the start between such points, so the minimum over the whole
/// window is always among them: `step` only adds round starts, it does not limit the
/// optimum. An improvement smaller than one part in a billion counts as a tie, so that
/// floating-point rounding never moves a start. When the deadline is too close, the plan
/// starts at `earliest` with [`StartPlan::late`] set.
///
/// # Errors
/// [`DeferralError`] when the duration or the step is below 1 ms or not a number, or the
/// window holds more than [`MAX_CANDIDATES`] steps.
pub fn plan_start(
    series: &CarbonSeries,
    req: &DeferralRequest,
    step: Seconds,
) -> Result<StartPlan, DeferralError> {
    let duration_ms = whole_ms(req.duration).ok_or(DeferralError::InvalidDuration(req.duration))?;
    let step_ms = whole_ms(step).ok_or(DeferralError::InvalidStep(step))?;
    let earliest = req.earliest.0;
    let latest = req.deadline.0.saturating_sub(duration_ms);
    let cost = |start: i64| {
        series.emissions(Timestamp(start), Timestamp(start.saturating_add(duration_ms)), req.power)
    };
    let immediate = cost(earliest);

    let mut best = (earliest, immediate);
    if latest >= earliest {
        for start in candidates(series, earliest, latest, duration_ms, step_ms, step)? {
            let e = cost(start);
            if e.0 < best.1.0 - best.1.0.abs() * 1e-9 {
                best = (start, e);
            }
        }
    }
    let (start, emissions) = best;
    let end = Timestamp(start.saturating_add(duration_ms));
    Ok(StartPlan {
        start: Timestamp(start),
        end,
        emissions,
        immediate,
        saved: immediate - emissions,
        mean_intensity: series.mean_over(Timestamp(start), end),
        late: latest < earliest,
    })
}

/// Every candidate start in `[earliest, latest]` (with `earliest ≤ latest`), sorted and
/// without duplicates, so that the first of equal costs is the earliest.
fn candidates(
    series: &CarbonSeries,
    earliest: i64,
    latest: i64,
    duration_ms: i64,
    step_ms: i64,
    step: Seconds,
) -> Result<Vec<i64>, DeferralError> {
    let window_ms = i128::from(latest) - i128::from(earliest);
    let count = u64::try_from(window_ms / i128::from(step_ms) + 1).unwrap_or(u64::MAX);
    if count > MAX_CANDIDATES {
        let gaps = i128::from(MAX_CANDIDATES) - 1;
        let per_candidate = (window_ms + gaps - 1) / gaps;
        return Err(DeferralError::TooManyCandidates {
            window: Seconds(window_ms as f64 / 1e3),
            step,
            count,
            suggested: Seconds((per_candidate as f64 / 1e3).ceil()),
        });
    }
    let in_window = |t: i64| (earliest..=latest).contains(&t);
    let boundaries = series.points().iter().map(|p| p.0.0);
    let mut starts: Vec<i64> = (0..count)
        .filter_map(|k| i64::try_from(k).ok().and_then(|k| earliest.checked_add(k.checked_mul(step_ms)?)))
        .chain([latest])
        .chain(boundaries.clone().filter(|&t| in_window(t)))
        .chain(boundaries.filter_map(|t| t.checked_sub(duration_ms)).filter(|&t| in_window(t)))
        .collect();
    starts.sort_unstable();
    starts.dedup();
    Ok(starts)
}

/// A span as whole milliseconds (the resolution of [`Timestamp`]), if it is at least 1 ms.
fn whole_ms(s: Seconds) -> Option<i64> {
    let ms = (s.0 * 1e3).round();
    // `as` saturates; the upper bound keeps later additions from overflowing silently.
    (ms.is_finite() && ms >= 1.0 && ms < i64::MAX as f64).then_some(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: i64 = 3_600_000;

    fn at(h: f64) -> Timestamp {
        Timestamp((h * HOUR as f64) as i64)
    }

    /// An hourly series starting at hour 0.
    fn hourly(values: &[f64]) -> CarbonSeries {
        let points = values.iter().enumerate().map(|(h, &v)| (at(h as f64), CarbonIntensity(v))).collect();
        CarbonSeries::new(points).unwrap()
    }

    fn request(earliest: f64, deadline: f64, hours: f64) -> DeferralRequest {
        DeferralRequest {
            earliest: at(earliest),
            deadline: at(deadline),
            duration: Seconds(hours * 3600.0),
            power: Watts(1000),
        }
    }

    #[test]
    fn a_clear_low_window_is_picked() {
        let mut day = vec![50.0; 24];
        day[13] = 10.0;
        day[14] = 10.0;
        let plan = plan_start(&hourly(&day), &request(8.0, 20.0, 2.0), Seconds(900.0)).unwrap();
        assert_eq!((plan.start, plan.end, plan.late), (at(13.0), at(15.0), false));
        // 2 kWh at 10 g/kWh, against 2 kWh at 50 g/kWh from 08:00.
        assert!((plan.emissions.0 - 20.0).abs() < 1e-9, "{plan:?}");
        assert!((plan.immediate.0 - 100.0).abs() < 1e-9);
        assert!((plan.saved.0 - 80.0).abs() < 1e-9);
        assert!((plan.mean_intensity.0 - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_run_may_end_exactly_where_the_intensity_rises() {
        // Clean until 04:00, then dirty. A 90-minute run should start at 02:30, which no
        // hourly step reaches: the end-on-a-boundary candidate finds it.
        let series = hourly(&[30.0, 30.0, 20.0, 5.0, 60.0, 60.0]);
        let plan = plan_start(&series, &request(0.0, 6.0, 1.5), Seconds(3600.0)).unwrap();
        assert_eq!(plan.start, at(2.5));
        assert!((plan.emissions.0 - (0.5 * 20.0 + 1.0 * 5.0)).abs() < 1e-9);
    }

    #[test]
    fn ties_go_to_the_earliest_start() {
        let flat = hourly(&[21.7; 24]);
        let plan = plan_start(&flat, &request(3.0, 20.0, 2.5), Seconds(60.0)).unwrap();
        assert_eq!(plan.start, at(3.0));
        assert_eq!(plan.saved, GramsCo2::ZERO);
        // Two identical dips: the first one wins.
        let mut day = vec![40.0; 24];
        for h in [4, 5, 16, 17] {
            day[h] = 12.0;
        }
        let plan = plan_start(&hourly(&day), &request(0.0, 24.0, 2.0), Seconds(1800.0)).unwrap();
        assert_eq!(plan.start, at(4.0));
    }

    #[test]
    fn a_deadline_too_close_starts_at_once_and_says_so() {
        let series = hourly(&[50.0, 10.0, 10.0, 10.0]);
        let plan = plan_start(&series, &request(0.0, 1.5, 2.0), Seconds(900.0)).unwrap();
        assert!(plan.late);
        assert_eq!((plan.start, plan.end), (at(0.0), at(2.0)));
        assert_eq!(plan.emissions, plan.immediate);
        assert_eq!(plan.saved, GramsCo2::ZERO);
        // Exactly enough time is not late: the only start is the earliest.
        let plan = plan_start(&series, &request(0.0, 2.0, 2.0), Seconds(900.0)).unwrap();
        assert!(!plan.late);
        assert_eq!(plan.start, at(0.0));
    }

    #[test]
    fn meaningless_requests_are_errors_for_people() {
        let series = hourly(&[20.0]);
        let zero = plan_start(&series, &request(0.0, 5.0, 0.0), Seconds(60.0)).unwrap_err();
        assert_eq!(zero, DeferralError::InvalidDuration(Seconds(0.0)));
        assert!(zero.to_string().starts_with("the workload's duration must be at least 1 ms (got 0s)"));
        let nan = DeferralRequest { duration: Seconds(f64::NAN), ..request(0.0, 5.0, 1.0) };
        assert!(matches!(plan_start(&series, &nan, Seconds(60.0)), Err(DeferralError::InvalidDuration(_))));
        let step = plan_start(&series, &request(0.0, 5.0, 1.0), Seconds(-1.0)).unwrap_err();
        assert_eq!(step, DeferralError::InvalidStep(Seconds(-1.0)));
        // A year at a 1-ms step: refused, with a step that would work.
        let err = plan_start(&series, &request(0.0, 24.0 * 365.0, 1.0), Seconds(0.001)).unwrap_err();
        let DeferralError::TooManyCandidates { suggested, .. } = err else { panic!("{err}") };
        assert_eq!(suggested, Seconds(32.0));
        assert!(plan_start(&series, &request(0.0, 24.0 * 365.0, 1.0), suggested).is_ok());
        assert!(err.to_string().contains("use a step of at least 32s"), "{err}");
    }

    proptest! {
        #[test]
        fn the_plan_is_never_worse_than_starting_now_or_any_minute(
            values in proptest::collection::vec(0.0f64..100.0, 1..12),
            earliest_min in 0i64..300,
            slack_min in 0i64..400,
            duration_min in 1i64..300,
            step_min in 1i64..90,
        ) {
            let series = hourly(&values);
            let minute = 60_000;
            let req = DeferralRequest {
                earliest: Timestamp(earliest_min * minute),
                deadline: Timestamp((earliest_min + slack_min + duration_min) * minute),
                duration: Seconds(duration_min as f64 * 60.0),
                power: Watts(700),
            };
            let plan = plan_start(&series, &req, Seconds(step_min as f64 * 60.0)).unwrap();
            prop_assert!(!plan.late);
            prop_assert!(plan.saved.0 >= 0.0);
            prop_assert!((plan.saved.0 - (plan.immediate.0 - plan.emissions.0)).abs() < 1e-9);
            prop_assert!(req.earliest <= plan.start && plan.end <= req.deadline);
            for m in 0..=slack_min {
                let s = Timestamp((earliest_min + m) * minute);
                let e = series.emissions(s, s + req.duration, req.power);
                prop_assert!(plan.emissions.0 <= e.0 + 1e-9 * e.0.abs() + 1e-12, "start {m} min: {e} < {}", plan.emissions);
            }
        }
    }
}
