//! Real GPUs through NVML, the library behind `nvidia-smi`.
//!
//! `nvml-wrapper` loads `libnvidia-ml.so` at run time, so the agent binary builds and
//! starts on machines without the NVIDIA driver; there [`NvmlBackend::open`] fails with
//! a message pointing at `--simulate`. Every NVML error becomes a [`BackendError`]; the
//! agent never panics on driver trouble.

use std::ffi::OsStr;
use std::time::Instant;

use gigawatt_api::agent::{GpuInventory, GpuTelemetry, NodeTelemetry};
use gigawatt_fleet::GpuCatalog;
use gigawatt_units::Watts;
use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::error::NvmlError;

use super::{BackendError, GpuBackend, GpuLoad};

/// The catalog id of the GPU the driver calls `name` (`NVIDIA H100 80GB HBM3` →
/// `H100-SXM`), or `None` for a model the built-in catalog does not know.
#[must_use]
pub fn match_model(name: &str) -> Option<String> {
    let n = name.to_ascii_uppercase();
    let has = |s: &str| n.contains(s);
    let id = if has("GB200") {
        "GB200"
    } else if has("B200") {
        "B200"
    } else if has("H200") {
        // The catalog only has the SXM part; the NVL (PCIe) card draws less.
        if has("NVL") || has("PCIE") {
            return None;
        }
        "H200-SXM"
    } else if has("H100") {
        // "H100 PCIe", "H100 NVL" and "H100 80GB HBM3" (SXM) are the driver's spellings.
        if has("PCIE") || has("NVL") { "H100-PCIE" } else { "H100-SXM" }
    } else if has("A100") {
        // The catalog only has the SXM part.
        if has("PCIE") {
            return None;
        }
        "A100-SXM"
    } else if has("V100") {
        if has("32GB") { "V100-SXM2-32GB" } else { "V100-SXM2-16GB" }
    } else if has("P100") {
        "P100-PCIE"
    } else if has("MI300X") {
        "MI300X"
    } else if n.split([' ', '-']).any(|w| w == "T4") {
        "T4"
    } else if n.split([' ', '-']).any(|w| w == "A10") {
        "A10"
    } else {
        return None;
    };
    GpuCatalog::builtin().get(id).map(|s| s.id.clone())
}

/// What NVML said, as a [`BackendError`] about `what`.
fn nvml_err(what: &str, e: NvmlError) -> BackendError {
    let hint = match e {
        NvmlError::NoPermission => " (this needs root: run the agent as root or with CAP_SYS_ADMIN)",
        NvmlError::NotSupported => " (this GPU does not support it)",
        _ => "",
    };
    BackendError::new(format!("NVML: {what}: {e}{hint}"))
}

fn mw_to_w(mw: u32) -> u64 {
    u64::from(mw).div_ceil(1000)
}

/// Per-GPU state kept between samples.
#[derive(Debug)]
struct Counter {
    /// The driver's energy counter at start-up, in mJ, when the GPU has one.
    base_mj: Option<u64>,
    /// Energy since start-up, in joules.
    energy_j: f64,
}

/// The GPUs of this machine, read and capped through NVML.
pub struct NvmlBackend {
    nvml: Nvml,
    count: u32,
    counters: Vec<Counter>,
    last_sample: Instant,
}

impl std::fmt::Debug for NvmlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlBackend").field("count", &self.count).finish_non_exhaustive()
    }
}

impl NvmlBackend {
    /// Loads the driver library and counts the GPUs.
    ///
    /// # Errors
    /// When the NVIDIA driver is missing or does not answer.
    pub fn open() -> Result<NvmlBackend, BackendError> {
        // Distributions without the driver's -dev package only ship the versioned name.
        let nvml = Nvml::init()
            .or_else(|_| Nvml::builder().lib_path(OsStr::new("libnvidia-ml.so.1")).init())
            .map_err(|e| {
                BackendError::new(format!(
                    "cannot use the NVIDIA driver (NVML: {e}); on a machine without NVIDIA GPUs, \
                     simulate some with `--simulate 8xH100`"
                ))
            })?;
        let count = nvml.device_count().map_err(|e| nvml_err("counting GPUs", e))?;
        let mut counters = Vec::new();
        for i in 0..count {
            let base_mj = nvml.device_by_index(i).and_then(|d| d.total_energy_consumption()).ok();
            counters.push(Counter { base_mj, energy_j: 0.0 });
        }
        Ok(NvmlBackend { nvml, count, counters, last_sample: Instant::now() })
    }

    fn device(&self, index: u32) -> Result<nvml_wrapper::Device<'_>, BackendError> {
        self.nvml.device_by_index(index).map_err(|e| nvml_err(&format!("opening GPU {index}"), e))
    }
}

impl GpuBackend for NvmlBackend {
    fn kind(&self) -> &'static str {
        "nvml"
    }

    fn inventory(&mut self) -> Result<Vec<GpuInventory>, BackendError> {
        let mut gpus = Vec::new();
        for i in 0..self.count {
            let d = self.device(i)?;
            let what = |s: &str| format!("reading the {s} of GPU {i}");
            let name = d.name().map_err(|e| nvml_err(&what("name"), e))?;
            let memory = d.memory_info().map_err(|e| nvml_err(&what("memory"), e))?;
            let limit = d.power_management_limit().map_err(|e| nvml_err(&what("power limit"), e))?;
            let default = d.power_management_limit_default().unwrap_or(limit);
            let range = d.power_management_limit_constraints().ok();
            gpus.push(GpuInventory {
                index: u16::try_from(i).map_err(|_| BackendError::new("more than 65535 GPUs"))?,
                uuid: d.uuid().map_err(|e| nvml_err(&what("UUID"), e))?,
                model: match_model(&name),
                name,
                memory_mib: memory.total >> 20,
                power_limit_w: mw_to_w(limit),
                default_power_limit_w: mw_to_w(default),
                min_power_limit_w: range.as_ref().map_or(mw_to_w(limit), |r| mw_to_w(r.min_limit)),
                max_power_limit_w: range.as_ref().map_or(mw_to_w(limit), |r| mw_to_w(r.max_limit)),
            });
        }
        Ok(gpus)
    }

    fn sample(&mut self, _load: &[GpuLoad]) -> Result<NodeTelemetry, BackendError> {
        let now = Instant::now();
        let dt = now.duration_since(self.last_sample).as_secs_f64();
        self.last_sample = now;
        let mut telemetry = NodeTelemetry::default();
        for i in 0..self.count {
            let d = self.device(i)?;
            let what = |s: &str| format!("reading the {s} of GPU {i}");
            let power_mw = d.power_usage().map_err(|e| nvml_err(&what("power draw"), e))?;
            let util = d.utilization_rates().map(|u| u.gpu).unwrap_or(0);
            let memory = d.memory_info().map_err(|e| nvml_err(&what("memory"), e))?;
            let temperature = d.temperature(TemperatureSensor::Gpu).unwrap_or(0);
            let limit_mw = d
                .enforced_power_limit()
                .or_else(|_| d.power_management_limit())
                .map_err(|e| nvml_err(&what("power limit"), e))?;
            let total_mj = d.total_energy_consumption().ok();
            let Some(counter) = self.counters.get_mut(i as usize) else { continue };
            match (counter.base_mj, total_mj) {
                (Some(base), Some(total)) => counter.energy_j = total.saturating_sub(base) as f64 / 1000.0,
                // No energy counter on this GPU: integrate the draw instead.
                _ => counter.energy_j += f64::from(power_mw) / 1000.0 * dt,
            }
            let power_w = u64::from(power_mw).div_euclid(1000) + u64::from(power_mw % 1000 >= 500);
            telemetry.power_w += power_w;
            telemetry.gpus.push(GpuTelemetry {
                index: u16::try_from(i).unwrap_or(u16::MAX),
                power_w,
                utilization_pct: u8::try_from(util.min(100)).unwrap_or(100),
                memory_used_mib: memory.used >> 20,
                temperature_c: u16::try_from(temperature).unwrap_or(u16::MAX),
                power_limit_w: u64::from(limit_mw) / 1000,
                energy_j: counter.energy_j,
            });
        }
        Ok(telemetry)
    }

    fn set_power_limit(&mut self, index: u16, limit: Option<Watts>) -> Result<Watts, BackendError> {
        let i = u32::from(index);
        if i >= self.count {
            return Err(BackendError::new(format!("no GPU {index}: this node has {} GPUs", self.count)));
        }
        let mut d = self.device(i)?;
        let mw = match limit {
            Some(w) => u32::try_from(w.0.saturating_mul(1000))
                .map_err(|_| BackendError::new(format!("power limit {w} is out of range")))?,
            None => d
                .power_management_limit_default()
                .map_err(|e| nvml_err(&format!("reading the default power limit of GPU {index}"), e))?,
        };
        if let Ok(r) = d.power_management_limit_constraints()
            && (mw < r.min_limit || mw > r.max_limit)
        {
            return Err(BackendError::new(format!(
                "power limit {} W for GPU {index} is outside the settable range {}–{} W",
                mw / 1000,
                mw_to_w(r.min_limit),
                r.max_limit / 1000
            )));
        }
        d.set_power_management_limit(mw)
            .map_err(|e| nvml_err(&format!("setting the power limit of GPU {index}"), e))?;
        let now = d
            .power_management_limit()
            .map_err(|e| nvml_err(&format!("reading the power limit of GPU {index}"), e))?;
        Ok(Watts(u64::from(now) / 1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_match_catalog_ids() {
        for (name, id) in [
            ("NVIDIA H100 80GB HBM3", Some("H100-SXM")),
            ("NVIDIA H100 PCIe", Some("H100-PCIE")),
            ("NVIDIA H100 NVL", Some("H100-PCIE")),
            ("NVIDIA H200", Some("H200-SXM")),
            ("NVIDIA H200 NVL", None),
            ("NVIDIA B200", Some("B200")),
            ("NVIDIA GB200", Some("GB200")),
            ("NVIDIA A100-SXM4-80GB", Some("A100-SXM")),
            ("NVIDIA A100-PCIE-40GB", None),
            ("Tesla V100-SXM2-16GB", Some("V100-SXM2-16GB")),
            ("Tesla V100-SXM2-32GB", Some("V100-SXM2-32GB")),
            ("Tesla P100-PCIE-16GB", Some("P100-PCIE")),
            ("Tesla T4", Some("T4")),
            ("NVIDIA A10", Some("A10")),
            ("NVIDIA A10G", None),
            ("NVIDIA GeForce RTX 4090", None),
            ("NVIDIA H100 80GB HBM3 (simulated)", Some("H100-SXM")),
        ] {
            assert_eq!(match_model(name).as_deref(), id, "{name}");
        }
    }

    #[test]
    fn every_matched_id_is_in_the_catalog() {
        let catalog = GpuCatalog::builtin();
        for name in ["H100", "H100 PCIe", "H200", "B200", "GB200", "A100", "V100", "P100", "T4", "A10"] {
            let id = match_model(&format!("NVIDIA {name}")).expect(name);
            assert!(catalog.get(&id).is_some_and(|s| s.id == id), "{id}");
        }
    }

    #[test]
    fn open_without_a_driver_fails_cleanly() {
        // On CI machines there is no driver; where there is one, opening must succeed.
        match NvmlBackend::open() {
            Ok(mut b) => assert!(b.inventory().is_ok()),
            Err(e) => assert!(e.to_string().contains("--simulate 8xH100"), "{e}"),
        }
    }
}
