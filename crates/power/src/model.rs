//! The GPU power model: what a GPU draws for a kind of work, and how much slower that work
//! runs under a power limit.
//!
//! Three figures per GPU model come from the catalog (see `gigawatt_fleet::catalog`):
//! idle draw `P_idle`, the TDP `P_tdp` (the default and highest power limit) and the
//! lowest settable limit. A fourth, the DVFS exponent `α`, says how dynamic power falls
//! with the clock. Two figures per kind of work come from [`WorkProfile`]: its *activity*
//! `a` (how much of the dynamic range it draws at full speed) and its *compute-bound
//! share* `c` (the share of its time that scales with the clock).
//!
//! * **Demand**, the draw at full speed: `P_d = P_idle + a × (P_tdp − P_idle)`.
//! * **Draw** under a limit `L`: `min(P_d, L)`. The driver enforces the limit by lowering
//!   the clock; a GPU never draws more than its limit.
//! * **Clock** under the limit: dynamic power goes as `f^α`, so
//!   `f = ((L − P_idle) / (P_d − P_idle))^(1/α)` when `L < P_d`, and 1 otherwise.
//! * **Time** to do the same work: `c / f + (1 − c)`. Compute-bound work (training, LLM
//!   prefill) slows roughly with the clock; memory-bound work (LLM decode) barely slows,
//!   because HBM bandwidth does not scale with the SM clock.
//!
//! Every figure is configurable; `docs/power-model.md` gives the sources of the defaults.
//!
//! ```
//! use gigawatt_power::model::{GpuPower, PowerModel};
//! use gigawatt_units::Watts;
//! let h100 = GpuPower { idle: Watts(80), tdp: Watts(700), min_limit: Watts(200), dvfs_exponent: 2.0 };
//! let m = PowerModel::default();
//! // Prefill draws the whole TDP; capped at 450 W it runs ~1.3× longer.
//! assert_eq!(h100.demand(m.prefill.activity), Watts(700));
//! let t = h100.time_factor(&m.prefill, Watts(450));
//! assert!((1.25..1.35).contains(&t), "{t}");
//! // Decode draws far less than 450 W and does not slow at all.
//! assert_eq!(h100.time_factor(&m.decode, Watts(450)), 1.0);
//! ```

use gigawatt_fleet::GpuSpec;
use gigawatt_units::Watts;
use serde::{Deserialize, Serialize};

/// The power figures of one GPU model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GpuPower {
    /// Draw of a powered GPU doing nothing.
    pub idle: Watts,
    /// Thermal design power: the default and highest power limit.
    pub tdp: Watts,
    /// Lowest power limit the driver accepts.
    pub min_limit: Watts,
    /// `α` in "dynamic power ∝ clock^α".
    pub dvfs_exponent: f64,
}

impl From<&GpuSpec> for GpuPower {
    fn from(s: &GpuSpec) -> GpuPower {
        GpuPower { idle: s.idle, tdp: s.tdp, min_limit: s.min_power_limit, dvfs_exponent: s.dvfs_exponent }
    }
}

impl GpuPower {
    /// The draw at full speed of work with this activity (0 = idle, 1 = TDP), rounded up.
    #[must_use]
    pub fn demand(&self, activity: f64) -> Watts {
        let range = self.tdp.0.saturating_sub(self.idle.0) as f64;
        let extra = (range * activity.clamp(0.0, 1.0)).ceil() as u64;
        Watts(self.idle.0 + extra)
    }

    /// A limit the driver would accept: clamped to `[min_limit, tdp]`.
    #[must_use]
    pub fn clamp_limit(&self, limit: Watts) -> Watts {
        limit.clamp(self.min_limit, self.tdp)
    }

    /// What the GPU draws for work of this activity under `limit`.
    #[must_use]
    pub fn draw(&self, activity: f64, limit: Watts) -> Watts {
        self.demand(activity).min(self.clamp_limit(limit))
    }

    /// The clock, relative to full speed, at which the GPU runs work of this activity
    /// under `limit`: 1 when the limit is above the demand.
    #[must_use]
    pub fn clock_ratio(&self, activity: f64, limit: Watts) -> f64 {
        let demand = self.demand(activity);
        let limit = self.clamp_limit(limit);
        if limit >= demand {
            return 1.0;
        }
        let dynamic_wanted = demand.0.saturating_sub(self.idle.0) as f64;
        let dynamic_allowed = limit.0.saturating_sub(self.idle.0) as f64;
        if dynamic_wanted <= 0.0 {
            return 1.0;
        }
        let alpha =
            if self.dvfs_exponent.is_finite() && self.dvfs_exponent > 0.0 { self.dvfs_exponent } else { 1.0 };
        // A limit at (or under) idle would stop the clock; the driver's floor keeps it
        // above idle, and a tiny positive clock keeps the arithmetic finite.
        (dynamic_allowed / dynamic_wanted).max(1e-3).powf(1.0 / alpha).min(1.0)
    }

    /// How much longer work of `profile` takes under `limit` (1 = no slowdown).
    #[must_use]
    pub fn time_factor(&self, profile: &WorkProfile, limit: Watts) -> f64 {
        let f = self.clock_ratio(profile.activity, limit);
        let c = profile.compute_bound.clamp(0.0, 1.0);
        c / f + (1.0 - c)
    }

    /// Throughput under `limit` relative to full speed (the inverse of
    /// [`time_factor`](Self::time_factor)).
    #[must_use]
    pub fn throughput(&self, profile: &WorkProfile, limit: Watts) -> f64 {
        1.0 / self.time_factor(profile, limit)
    }
}

/// How a kind of work uses a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkProfile {
    /// Share of the dynamic power range (TDP − idle) drawn at full speed, 0–1.
    pub activity: f64,
    /// Share of the run time that scales with the SM clock, 0–1.
    pub compute_bound: f64,
}

/// The work profiles the simulator and the power manager use. See `docs/power-model.md`
/// for where each default comes from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowerModel {
    /// Large-model training: compute-bound, near the TDP.
    pub training: WorkProfile,
    /// LLM prefill (the prompt): compute-bound, at the TDP.
    pub prefill: WorkProfile,
    /// LLM decode (token by token): memory-bound, far below the TDP.
    pub decode: WorkProfile,
}

impl Default for PowerModel {
    fn default() -> PowerModel {
        PowerModel {
            // Assumption, stated in docs/power-model.md: a well-fed training job keeps
            // 90% activity (the agent's simulated GPUs use the same figure) and 90% of its
            // step time in compute-bound kernels (the rest: communication, data loading).
            training: WorkProfile { activity: 0.9, compute_bound: 0.9 },
            // Splitwise (Patel et al., ISCA'24): the prompt phase is compute-bound, draws
            // close to the TDP and its latency grows under power caps.
            prefill: WorkProfile { activity: 1.0, compute_bound: 1.0 },
            // Splitwise: the token phase is memory-bound and insensitive to power caps;
            // Ma et al. (arXiv 2605.11999) measured decode at 137–300 W on a 700 W H200.
            // 0.35 of the range is 297 W on an H100 (the top of that range) and 20% of its
            // time follows the clock (attention and sampling kernels).
            decode: WorkProfile { activity: 0.35, compute_bound: 0.2 },
        }
    }
}

impl PowerModel {
    /// Checks that every figure is a share in `[0, 1]`; the message names the field.
    ///
    /// # Errors
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [("training", self.training), ("prefill", self.prefill), ("decode", self.decode)] {
            for (field, v) in [("activity", p.activity), ("compute_bound", p.compute_bound)] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!("{name}.{field} must be between 0 and 1 (got {v})"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h100() -> GpuPower {
        GpuPower { idle: Watts(80), tdp: Watts(700), min_limit: Watts(200), dvfs_exponent: 2.0 }
    }

    #[test]
    fn demand_spans_idle_to_tdp() {
        let g = h100();
        assert_eq!(g.demand(0.0), Watts(80));
        assert_eq!(g.demand(1.0), Watts(700));
        assert_eq!(g.demand(0.5), Watts(390));
        assert_eq!(g.demand(7.0), Watts(700), "activity is clamped");
    }

    #[test]
    fn a_limit_above_demand_costs_nothing() {
        let g = h100();
        let m = PowerModel::default();
        assert_eq!(g.time_factor(&m.training, Watts(700)), 1.0);
        assert_eq!(g.time_factor(&m.decode, Watts(300)), 1.0);
        assert_eq!(g.draw(m.decode.activity, Watts(700)), Watts(297));
    }

    #[test]
    fn caps_slow_compute_bound_work_more_than_memory_bound_work() {
        let g = h100();
        let m = PowerModel::default();
        let prefill = g.time_factor(&m.prefill, Watts(250));
        let decode = g.time_factor(&m.decode, Watts(250));
        assert!(prefill > 1.5 && prefill < 2.0, "{prefill}");
        assert!(decode > 1.0 && decode < 1.05, "{decode}");
        // Monotone: a lower limit is never faster.
        let mut last = 1.0;
        for w in (200..=700).rev().step_by(10) {
            let t = g.time_factor(&m.training, Watts(w));
            assert!(t >= last, "{w} W");
            last = t;
        }
    }

    #[test]
    fn limits_are_clamped_to_what_the_driver_accepts() {
        let g = h100();
        assert_eq!(g.draw(1.0, Watts(50)), Watts(200));
        assert_eq!(g.draw(1.0, Watts(900)), Watts(700));
    }

    #[test]
    fn the_default_model_is_valid_and_bad_figures_are_named() {
        assert_eq!(PowerModel::default().validate(), Ok(()));
        let mut m = PowerModel::default();
        m.decode.activity = 1.5;
        assert_eq!(m.validate(), Err("decode.activity must be between 0 and 1 (got 1.5)".into()));
    }
}
