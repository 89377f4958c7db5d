//! Simulated GPUs: catalog figures, a load-driven power model and a real energy clock.
//!
//! The simulation exists so that the whole system (control plane, agents, task
//! processes, power capping, energy accounting) can run on machines without GPUs, and
//! so that tests are reproducible: the only randomness is a small jitter drawn from a
//! ChaCha generator seeded by the node name and GPU index, never from the OS.
//!
//! Power model, per GPU, at each sample:
//!
//! * utilisation `u = min(1, load × ACTIVITY × (1 + jitter))`, where `load` is the sum
//!   of the shares held by running tasks (0–1) and `jitter` is uniform in ±3 %;
//!   `u = 0` when no task holds the GPU;
//! * draw `P = min(idle + (tdp − idle) × u, limit)`, with `tdp` and `idle` from the
//!   built-in catalog and `limit` the power limit in force (default: the TDP);
//! * energy integrates `P` over the real time elapsed between samples;
//! * temperature `≈ 30 + 50 × P / tdp` °C; memory used `= load × memory`.

use std::time::Instant;

use gigawatt_api::agent::{GpuInventory, GpuTelemetry, NodeTelemetry};
use gigawatt_fleet::GpuCatalog;
use gigawatt_units::Watts;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use super::{BackendError, GpuBackend, GpuLoad};

/// **Assumption**: the share of its time a task keeps the GPUs it holds busy. Training
/// and inference loops rarely reach 100 % (data loading, communication, host work);
/// 0.9 is a round figure for a well-fed training job, not a measurement.
pub const ACTIVITY: f64 = 0.9;

/// Relative amplitude of the deterministic jitter on utilisation (±3 %).
const JITTER: f64 = 0.03;

/// Which GPUs to simulate: `count` GPUs of catalog model `model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimSpec {
    /// Canonical catalog id (`H100-SXM`).
    pub model: String,
    /// Number of GPUs, 1–64.
    pub count: u16,
}

/// Parses `--simulate`: `COUNTxMODEL` (`8xH100`) or `MODELxCOUNT` (`H100x8`), the model
/// by any catalog spelling, the count from 1 to 64.
///
/// # Errors
/// A message for the user: the expected shape, the count range, or the known models.
pub fn parse_simulate(s: &str) -> Result<SimSpec, String> {
    let s = s.trim();
    let shape = || format!("`{s}` is not COUNTxMODEL: expected e.g. `8xH100` or `H100x8`");
    let split = |at: usize| (&s[..at], &s[at + 1..]);
    let is_count = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let (count, model) = match s.find(['x', 'X']).map(split) {
        Some((count, model)) if is_count(count) => (count, model),
        _ => match s.rfind(['x', 'X']).map(split) {
            Some((model, count)) if is_count(count) => (count, model),
            _ => return Err(shape()),
        },
    };
    if model.is_empty() {
        return Err(shape());
    }
    let count = count
        .parse::<u16>()
        .ok()
        .filter(|c| (1..=64).contains(c))
        .ok_or_else(|| format!("`{s}`: the GPU count must be between 1 and 64"))?;
    let catalog = GpuCatalog::builtin();
    let spec = catalog.resolve(model).map_err(|e| e.to_string())?;
    Ok(SimSpec { model: spec.id.clone(), count })
}

/// The draw of a GPU at utilisation `u` (0–1) under `limit`, in watts.
fn modelled_power(idle: Watts, tdp: Watts, u: f64, limit: Watts) -> f64 {
    let p = idle.0 as f64 + (tdp.0.saturating_sub(idle.0)) as f64 * u.clamp(0.0, 1.0);
    p.min(limit.0 as f64)
}

#[derive(Debug)]
struct SimGpu {
    rng: ChaCha8Rng,
    limit: Watts,
    energy_j: f64,
    uuid: String,
}

/// Simulated GPUs of one model (see the module documentation for the power model).
#[derive(Debug)]
pub struct SimBackend {
    model: String,
    tdp: Watts,
    idle: Watts,
    min_limit: Watts,
    memory_mib: u64,
    gpus: Vec<SimGpu>,
    last_sample: Instant,
}

impl SimBackend {
    /// `spec.count` GPUs of `spec.model` on node `node` (which seeds the jitter and the
    /// UUIDs, so that two simulated nodes differ and one node is the same at each run).
    ///
    /// # Errors
    /// When the model is not in the built-in catalog.
    pub fn new(spec: &SimSpec, node: &str) -> Result<SimBackend, BackendError> {
        let catalog = GpuCatalog::builtin();
        let gpu = catalog.resolve(&spec.model).map_err(|e| BackendError::new(e.to_string()))?;
        let gpus = (0..spec.count)
            .map(|index| {
                let digest = Sha256::new()
                    .chain_update(node.as_bytes())
                    .chain_update([0])
                    .chain_update(index.to_le_bytes())
                    .finalize();
                let mut seed = [0u8; 32];
                seed.copy_from_slice(&digest);
                SimGpu {
                    rng: ChaCha8Rng::from_seed(seed),
                    limit: gpu.tdp,
                    energy_j: 0.0,
                    uuid: uuid_from(&digest),
                }
            })
            .collect();
        Ok(SimBackend {
            model: gpu.id.clone(),
            tdp: gpu.tdp,
            idle: gpu.idle,
            min_limit: gpu.min_power_limit,
            // Datasheet GB (10^9 bytes) to MiB.
            memory_mib: u64::from(gpu.memory_gb) * 1_000_000_000 / (1 << 20),
            gpus,
            last_sample: Instant::now(),
        })
    }
}

/// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` from the first 16 bytes of a digest.
fn uuid_from(digest: &[u8]) -> String {
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("GPU-{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

impl GpuBackend for SimBackend {
    fn kind(&self) -> &'static str {
        "simulated"
    }

    fn inventory(&mut self) -> Result<Vec<GpuInventory>, BackendError> {
        Ok((0u16..)
            .zip(&self.gpus)
            .map(|(index, g)| GpuInventory {
                index,
                uuid: g.uuid.clone(),
                name: format!("NVIDIA {} (simulated)", self.model),
                model: Some(self.model.clone()),
                memory_mib: self.memory_mib,
                power_limit_w: g.limit.0,
                default_power_limit_w: self.tdp.0,
                min_power_limit_w: self.min_limit.0,
                max_power_limit_w: self.tdp.0,
            })
            .collect())
    }

    fn sample(&mut self, load: &[GpuLoad]) -> Result<NodeTelemetry, BackendError> {
        let now = Instant::now();
        let dt = now.duration_since(self.last_sample).as_secs_f64();
        self.last_sample = now;
        let mut telemetry = NodeTelemetry::default();
        let mut total = 0.0;
        for (index, g) in (0u16..).zip(self.gpus.iter_mut()) {
            let milli: u32 = load.iter().filter(|l| l.index == index).map(|l| l.milli).sum();
            let share = (f64::from(milli) / 1000.0).min(1.0);
            // Always draw, so that the jitter sequence depends on the sample count only.
            let jitter = (g.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            let u = if milli == 0 { 0.0 } else { (share * ACTIVITY * (1.0 + JITTER * jitter)).min(1.0) };
            let p = modelled_power(self.idle, self.tdp, u, g.limit);
            g.energy_j += p * dt;
            total += p;
            telemetry.gpus.push(GpuTelemetry {
                index,
                power_w: p.round() as u64,
                utilization_pct: (u * 100.0).round() as u8,
                memory_used_mib: (share * self.memory_mib as f64).round() as u64,
                temperature_c: (30.0 + 50.0 * p / self.tdp.0.max(1) as f64).round() as u16,
                power_limit_w: g.limit.0,
                energy_j: g.energy_j,
            });
        }
        telemetry.power_w = total.round() as u64;
        Ok(telemetry)
    }

    fn set_power_limit(&mut self, index: u16, limit: Option<Watts>) -> Result<Watts, BackendError> {
        let (min, max) = (self.min_limit, self.tdp);
        let count = self.gpus.len();
        let gpu = self
            .gpus
            .get_mut(usize::from(index))
            .ok_or_else(|| BackendError::new(format!("no GPU {index}: this node has {count} GPUs")))?;
        let limit = limit.unwrap_or(max);
        if limit < min || limit > max {
            return Err(BackendError::new(format!(
                "power limit {limit} for GPU {index} is outside the settable range {}–{} W",
                min.0, max.0
            )));
        }
        gpu.limit = limit;
        Ok(limit)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn h100(count: u16) -> SimBackend {
        SimBackend::new(&SimSpec { model: "H100-SXM".into(), count }, "node-a").expect("H100 is built in")
    }

    #[test]
    fn parse_simulate_accepts_both_orders_and_aliases() {
        let want = SimSpec { model: "H100-SXM".into(), count: 8 };
        assert_eq!(parse_simulate("8xH100"), Ok(want.clone()));
        assert_eq!(parse_simulate("H100x8"), Ok(want.clone()));
        assert_eq!(parse_simulate("8Xh100-sxm"), Ok(want));
        assert_eq!(parse_simulate("2xMI300X"), Ok(SimSpec { model: "MI300X".into(), count: 2 }));
        assert_eq!(parse_simulate("MI300Xx4"), Ok(SimSpec { model: "MI300X".into(), count: 4 }));
        assert_eq!(parse_simulate("64xT4").map(|s| s.count), Ok(64));
    }

    #[test]
    fn parse_simulate_explains_mistakes() {
        for bad in ["H100", "8x", "x8", "", "eightxH100"] {
            let e = parse_simulate(bad).expect_err(bad);
            assert!(e.contains("COUNTxMODEL"), "{bad}: {e}");
        }
        for bad in ["0xH100", "65xH100", "99999xH100"] {
            let e = parse_simulate(bad).expect_err(bad);
            assert!(e.contains("between 1 and 64"), "{bad}: {e}");
        }
        let e = parse_simulate("8xH10").expect_err("unknown model");
        assert!(e.contains("unknown GPU model `H10`") && e.contains("H100-SXM"), "{e}");
    }

    #[test]
    fn inventory_is_deterministic_and_catalog_based() {
        let inv = h100(8).inventory().expect("inventory");
        assert_eq!(inv.len(), 8);
        assert_eq!(inv, h100(8).inventory().expect("inventory"));
        let g = &inv[3];
        assert_eq!(g.index, 3);
        assert_eq!(g.model.as_deref(), Some("H100-SXM"));
        assert_eq!(g.name, "NVIDIA H100-SXM (simulated)");
        assert_eq!((g.power_limit_w, g.default_power_limit_w), (700, 700));
        assert_eq!((g.min_power_limit_w, g.max_power_limit_w), (200, 700));
        assert_eq!(g.memory_mib, 76_293);
        assert!(g.uuid.starts_with("GPU-") && g.uuid.len() == 40, "{}", g.uuid);
        assert_ne!(inv[0].uuid, inv[1].uuid);
        let other = SimBackend::new(&SimSpec { model: "H100-SXM".into(), count: 1 }, "node-b")
            .and_then(|mut b| b.inventory())
            .expect("inventory");
        assert_ne!(other[0].uuid, inv[0].uuid);
    }

    #[test]
    fn power_model_idle_full_and_capped() {
        let mut b = h100(2);
        let idle = b.sample(&[]).expect("sample");
        assert_eq!(idle.gpus[0].power_w, 80);
        assert_eq!(idle.gpus[0].utilization_pct, 0);
        assert_eq!(idle.power_w, 160);
        assert_eq!(modelled_power(Watts(80), Watts(700), 1.0, Watts(700)), 700.0);

        let full = [GpuLoad { index: 0, milli: 1000 }];
        for _ in 0..20 {
            let t = b.sample(&full).expect("sample");
            let g = &t.gpus[0];
            assert!((87..=93).contains(&g.utilization_pct), "{g:?}");
            // 80 + 620 × 0.9 × (1 ± 3 %)
            assert!((620..=660).contains(&g.power_w), "{g:?}");
            assert_eq!(g.memory_used_mib, 76_293);
            assert_eq!(t.gpus[1].power_w, 80);
        }
        assert_eq!(b.set_power_limit(0, Some(Watts(300))), Ok(Watts(300)));
        let t = b.sample(&full).expect("sample");
        assert_eq!((t.gpus[0].power_w, t.gpus[0].power_limit_w), (300, 300));
        assert_eq!(b.set_power_limit(0, None), Ok(Watts(700)));
        let half = b.sample(&[GpuLoad { index: 1, milli: 500 }]).expect("sample");
        assert!((350..=370).contains(&half.gpus[1].power_w), "{:?}", half.gpus[1]);
    }

    #[test]
    fn jitter_is_reproducible() {
        let load = [GpuLoad { index: 0, milli: 700 }];
        let run = || {
            let mut b = h100(1);
            (0..5).map(|_| b.sample(&load).map(|t| t.gpus[0].power_w)).collect::<Result<Vec<_>, _>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn energy_grows_with_time() {
        let mut b = h100(1);
        let first = b.sample(&[]).expect("sample").gpus[0].energy_j;
        std::thread::sleep(Duration::from_millis(50));
        let second = b.sample(&[]).expect("sample").gpus[0].energy_j;
        // At least 50 ms at 80 W.
        assert!(second - first >= 4.0, "{first} → {second}");
    }

    #[test]
    fn power_limit_out_of_range_is_refused() {
        let mut b = h100(1);
        let e = b.set_power_limit(0, Some(Watts(150))).expect_err("below the floor");
        assert!(e.to_string().contains("200–700 W"), "{e}");
        assert!(b.set_power_limit(0, Some(Watts(701))).is_err());
        assert!(b.set_power_limit(1, Some(Watts(300))).is_err());
        assert_eq!(b.set_power_limit(0, Some(Watts(200))), Ok(Watts(200)));
        assert_eq!(b.inventory().expect("inventory")[0].power_limit_w, 200);
    }
}
