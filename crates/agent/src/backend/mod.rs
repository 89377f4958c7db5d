//! Where the GPUs come from: the driver (NVML) or a simulation.
//!
//! Both backends sit behind one trait, [`GpuBackend`], and produce the same wire types
//! ([`GpuInventory`], [`NodeTelemetry`]), so the control plane cannot tell them apart:
//! a laptop with `--simulate 8xH100` exercises exactly the code paths of a real HGX
//! server, apart from the few lines that talk to the driver.

mod nvml;
mod sim;

use gigawatt_api::agent::{GpuInventory, NodeTelemetry};
use gigawatt_units::Watts;

pub use nvml::{NvmlBackend, match_model};
pub use sim::{ACTIVITY, SimBackend, SimSpec, parse_simulate};

/// The load the agent's tasks put on one GPU: the share of it held by running tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuLoad {
    /// GPU index on the node.
    pub index: u16,
    /// Sum of the shares held, in thousandths (1000 = the whole GPU).
    pub milli: u32,
}

/// A GPU operation that failed; the message says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

impl BackendError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> BackendError {
        BackendError(message.into())
    }
}

/// A source of GPUs: discovery, measurements and power limits.
pub trait GpuBackend: Send {
    /// `nvml` or `simulated`, as registration reports it.
    fn kind(&self) -> &'static str;

    /// The GPUs, in index order.
    ///
    /// # Errors
    /// When the GPUs cannot be enumerated.
    fn inventory(&mut self) -> Result<Vec<GpuInventory>, BackendError>;

    /// Measures every GPU now. `load` gives, per GPU index, the share held by the
    /// agent's running tasks; the simulation draws power from it, NVML ignores it (the
    /// driver measures the real thing).
    ///
    /// # Errors
    /// When a GPU cannot be read.
    fn sample(&mut self, load: &[GpuLoad]) -> Result<NodeTelemetry, BackendError>;

    /// Sets GPU `index`'s power limit (`None` restores the default) and returns the
    /// limit now in force.
    ///
    /// # Errors
    /// When the limit is outside the settable range, the GPU does not exist, or the
    /// driver refuses (setting limits needs root).
    fn set_power_limit(&mut self, index: u16, limit: Option<Watts>) -> Result<Watts, BackendError>;
}

/// Which backend to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChoice {
    /// The real GPUs, through the NVIDIA driver.
    Nvml,
    /// Simulated GPUs (`--simulate 8xH100`).
    Simulated(SimSpec),
}

/// Opens the chosen backend for node `node` (the simulation seeds its jitter from it).
///
/// # Errors
/// When NVML cannot be loaded, or the simulated model is not in the catalog.
pub fn open_backend(choice: &BackendChoice, node: &str) -> Result<Box<dyn GpuBackend>, BackendError> {
    match choice {
        BackendChoice::Nvml => Ok(Box::new(NvmlBackend::open()?)),
        BackendChoice::Simulated(spec) => Ok(Box::new(SimBackend::new(spec, node)?)),
    }
}
