//! Every number an agent sends is checked before it changes anything.
//!
//! An agent is outside: a bug, a broken sensor or a stolen credential can send any
//! number. Values must be finite and non-negative, within what the node's GPU model can
//! physically do, and energy counters must only grow. A bad value is answered 422 naming
//! its field, and changes no state: no telemetry sample is kept, no task report logged.
//!
//! **Physical bounds.** A GPU draws at most [`POWER_MARGIN`] times its model's TDP (the
//! catalog's figure, which is the highest power limit NVML lets one set on the data-centre
//! parts we know; the margin covers measurement spikes). A node's GPUs draw at most the
//! sum. A task's energy is at most what its whole node could draw since its workload was
//! submitted (plus a minute of slack for clocks).

use gigawatt_api::{GpuInventory, Heartbeat, NodeTelemetry, TaskReport, parse_workload_id};
use gigawatt_units::Watts;

use crate::engine::Engine;
use crate::error::EngineError;

/// How far above TDP a GPU's measured draw may read.
pub const POWER_MARGIN: f64 = 1.5;

/// The largest energy counter a GPU may report, in joules: 10^15 J is 30 years at
/// 1 kW, far beyond any agent's life, and far from where `f64` sums lose precision.
pub const MAX_ENERGY_J: f64 = 1e15;

/// The most device memory one GPU may report, in MiB (1 TiB).
pub const MAX_GPU_MEMORY_MIB: u64 = 1 << 20;

/// The hottest a GPU may read, in °C (they shut down near 100).
pub const MAX_TEMPERATURE_C: u16 = 150;

/// The longest `message` of a task report, in characters.
const MAX_MESSAGE: usize = 2000;

/// The most one GPU of this node may draw, in watts.
fn gpu_bound_w(tdp: Watts) -> u64 {
    (tdp.0 as f64 * POWER_MARGIN).ceil() as u64
}

/// Checks a registration's inventory against the node's GPU model.
///
/// # Errors
/// The first value out of bounds, as a 422 naming its field.
pub fn check_inventory(tdp: Watts, gpus: &[GpuInventory]) -> Result<(), EngineError> {
    let bound = gpu_bound_w(tdp);
    for (i, g) in gpus.iter().enumerate() {
        let f = |name: &str| format!("gpus[{i}].{name}");
        for (name, v) in [
            ("power_limit_w", g.power_limit_w),
            ("default_power_limit_w", g.default_power_limit_w),
            ("min_power_limit_w", g.min_power_limit_w),
            ("max_power_limit_w", g.max_power_limit_w),
        ] {
            if v > bound {
                return Err(EngineError::field(
                    f(name),
                    format!("{v} W is more than this model can draw (TDP {} W); give 0..={bound}", tdp.0),
                ));
            }
        }
        if g.min_power_limit_w > g.max_power_limit_w {
            return Err(EngineError::field(
                f("min_power_limit_w"),
                format!("{} W is above the maximum limit of {} W", g.min_power_limit_w, g.max_power_limit_w),
            ));
        }
        if g.memory_mib > MAX_GPU_MEMORY_MIB {
            return Err(EngineError::field(f("memory_mib"), format!("give 0..={MAX_GPU_MEMORY_MIB} MiB")));
        }
    }
    Ok(())
}

/// Checks a heartbeat's numbers: telemetry against the node's model and its previous
/// heartbeat (`previous`, of the same registration), task reports against what their node
/// could have drawn.
///
/// # Errors
/// The first value out of bounds, as a 422 naming its field.
pub fn check_heartbeat(
    engine: &Engine,
    hb: &Heartbeat,
    previous: Option<&NodeTelemetry>,
    now_ms: i64,
) -> Result<(), EngineError> {
    let state = engine.scheduler.state();
    let Some(idx) = state.node_by_name(&hb.node) else { return Ok(()) };
    let node = state.node(idx);
    let count = node.gpu_free.len();
    let bound = gpu_bound_w(node.gpu_tdp);
    check_telemetry(&hb.telemetry, count, bound, node.gpu_tdp, previous)?;
    let node_bound = bound as f64 * count.max(1) as f64;
    for (i, r) in hb.tasks.iter().enumerate() {
        let since = parse_workload_id(&r.workload)
            .and_then(|id| engine.view.workloads.get(&id))
            .map_or(now_ms, |w| w.submitted_at);
        let seconds = ((now_ms - since).max(0) as f64 / 1000.0) + 60.0;
        check_task(i, r, node_bound * seconds)?;
    }
    Ok(())
}

fn check_telemetry(
    t: &NodeTelemetry,
    count: usize,
    bound: u64,
    tdp: Watts,
    previous: Option<&NodeTelemetry>,
) -> Result<(), EngineError> {
    if t.gpus.len() > count {
        return Err(EngineError::field(
            "telemetry.gpus",
            format!("the node has {count} GPUs, not {}", t.gpus.len()),
        ));
    }
    let total = bound.saturating_mul(count as u64);
    if t.power_w > total {
        return Err(EngineError::field(
            "telemetry.power_w",
            format!(
                "{} W is more than {count} GPUs of TDP {} W can draw; give 0..={total}",
                t.power_w, tdp.0
            ),
        ));
    }
    let mut seen = vec![false; count];
    for (i, g) in t.gpus.iter().enumerate() {
        let f = |name: &str| format!("telemetry.gpus[{i}].{name}");
        let index = usize::from(g.index);
        if index >= count || std::mem::replace(&mut seen[index], true) {
            return Err(EngineError::field(f("index"), format!("give each of 0..{count} at most once")));
        }
        for (name, v) in [("power_w", g.power_w), ("power_limit_w", g.power_limit_w)] {
            if v > bound {
                return Err(EngineError::field(
                    f(name),
                    format!("{v} W is more than this model can draw (TDP {} W); give 0..={bound}", tdp.0),
                ));
            }
        }
        if g.utilization_pct > 100 {
            return Err(EngineError::field(f("utilization_pct"), "a percentage: give 0..=100"));
        }
        if g.temperature_c > MAX_TEMPERATURE_C {
            return Err(EngineError::field(f("temperature_c"), format!("give 0..={MAX_TEMPERATURE_C} °C")));
        }
        if g.memory_used_mib > MAX_GPU_MEMORY_MIB {
            return Err(EngineError::field(
                f("memory_used_mib"),
                format!("give 0..={MAX_GPU_MEMORY_MIB} MiB"),
            ));
        }
        if !(g.energy_j.is_finite() && (0.0..=MAX_ENERGY_J).contains(&g.energy_j)) {
            return Err(EngineError::field(
                f("energy_j"),
                format!("a counter of joules: give 0..={MAX_ENERGY_J:e}"),
            ));
        }
        let before = previous.and_then(|p| p.gpus.iter().find(|p| p.index == g.index)).map(|p| p.energy_j);
        if let Some(before) = before.filter(|b| g.energy_j < *b) {
            return Err(EngineError::field(
                f("energy_j"),
                format!(
                    "the energy counter went back from {before} J to {} J; it only grows while the agent runs",
                    g.energy_j
                ),
            ));
        }
    }
    Ok(())
}

fn check_task(i: usize, r: &TaskReport, bound_j: f64) -> Result<(), EngineError> {
    let f = |name: &str| format!("tasks[{i}].{name}");
    if !(r.energy_j.is_finite() && r.energy_j >= 0.0) {
        return Err(EngineError::field(f("energy_j"), "joules: give a finite number, 0 or more"));
    }
    if r.energy_j > bound_j {
        return Err(EngineError::field(
            f("energy_j"),
            format!(
                "{} J is more than the whole node could have drawn since the workload was submitted ({bound_j:.0} J)",
                r.energy_j
            ),
        ));
    }
    if r.message.as_ref().is_some_and(|m| m.chars().count() > MAX_MESSAGE) {
        return Err(EngineError::field(f("message"), format!("at most {MAX_MESSAGE} characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use gigawatt_api::GpuTelemetry;

    use super::*;

    fn gpu(index: u16, power_w: u64, energy_j: f64) -> GpuTelemetry {
        GpuTelemetry {
            index,
            power_w,
            utilization_pct: 50,
            memory_used_mib: 1000,
            temperature_c: 60,
            power_limit_w: 700,
            energy_j,
        }
    }

    fn check(t: &NodeTelemetry, previous: Option<&NodeTelemetry>) -> Result<(), String> {
        check_telemetry(t, 8, gpu_bound_w(Watts(700)), Watts(700), previous).map_err(|e| e.to_string())
    }

    #[test]
    fn telemetry_out_of_physical_bounds_is_refused_with_its_field() {
        let ok = NodeTelemetry { power_w: 2400, gpus: vec![gpu(0, 300, 10.0), gpu(1, 300, 10.0)] };
        assert_eq!(check(&ok, None), Ok(()));
        let bad = |f: &dyn Fn(&mut NodeTelemetry)| {
            let mut t = ok.clone();
            f(&mut t);
            check(&t, None).expect_err("refused")
        };
        assert!(bad(&|t| t.gpus[1].energy_j = -1e300).starts_with("telemetry.gpus[1].energy_j"));
        assert!(bad(&|t| t.gpus[0].energy_j = 1e308).starts_with("telemetry.gpus[0].energy_j"));
        assert!(bad(&|t| t.gpus[0].energy_j = f64::NAN).starts_with("telemetry.gpus[0].energy_j"));
        assert!(bad(&|t| t.gpus[0].power_w = 5000).contains("TDP 700 W"));
        assert!(bad(&|t| t.power_w = u64::MAX).starts_with("telemetry.power_w"));
        assert!(bad(&|t| t.gpus[0].utilization_pct = 101).starts_with("telemetry.gpus[0].utilization_pct"));
        assert!(bad(&|t| t.gpus[1].index = 0).starts_with("telemetry.gpus[1].index"));
        assert!(bad(&|t| t.gpus[1].index = 8).starts_with("telemetry.gpus[1].index"));
        assert!(bad(&|t| t.gpus[0].temperature_c = 1000).starts_with("telemetry.gpus[0].temperature_c"));
        // Energy counters only grow.
        let later = NodeTelemetry { power_w: 2400, gpus: vec![gpu(0, 300, 9.0), gpu(1, 300, 20.0)] };
        assert!(check(&later, Some(&ok)).expect_err("went back").contains("went back from 10 J to 9 J"));
    }

    #[test]
    fn task_energy_must_be_finite_non_negative_and_possible() {
        let report = |energy_j: f64| TaskReport {
            workload: "w-1".into(),
            task: 0,
            generation: 1,
            state: gigawatt_api::TaskState::Exited,
            pid: None,
            exit_code: Some(0),
            signal: None,
            energy_j,
            message: None,
        };
        assert!(check_task(0, &report(1000.0), 1e6).is_ok());
        for bad in [-1.0, f64::INFINITY, 1e308, 2e6] {
            let e = check_task(3, &report(bad), 1e6).expect_err("refused");
            assert_eq!(e.field_name(), Some("tasks[3].energy_j"), "{bad}");
        }
    }

    #[test]
    fn an_inventory_beyond_its_model_is_refused() {
        let inv = |max: u64| GpuInventory {
            index: 0,
            uuid: "GPU-0".into(),
            name: "H100".into(),
            model: Some("H100-SXM".into()),
            memory_mib: 81559,
            power_limit_w: 700,
            default_power_limit_w: 700,
            min_power_limit_w: 200,
            max_power_limit_w: max,
        };
        assert!(check_inventory(Watts(700), &[inv(700)]).is_ok());
        let e = check_inventory(Watts(700), &[inv(u64::MAX)]).expect_err("refused");
        assert_eq!(e.field_name(), Some("gpus[0].max_power_limit_w"));
        let e = check_inventory(Watts(700), &[inv(100)]).expect_err("min above max");
        assert_eq!(e.field_name(), Some("gpus[0].min_power_limit_w"));
    }
}
