//! Power as gigawatt reasons about it.
//!
//! Energy is the bottleneck of an AI datacenter: a site's grid connection takes years to
//! grow, while its servers rarely all draw their nameplate power at once. This crate holds
//! what lets gigawatt put more GPUs under the same megawatts without ever exceeding a
//! limit:
//!
//! * [`model`]: what a GPU draws for a kind of work and how much slower the work runs
//!   under a power limit;
//! * [`manager`]: the power manager, which sets every GPU's power limit so that no rack
//!   and no site can draw more than its limit, capping the least important work first;
//! * [`carbon`]: grams of CO2 from a carbon-intensity series, and when a deferrable
//!   workload should start.
//!
//! Like the scheduling core, everything here is pure: state and measurements in, decisions
//! out, no I/O and no clock. The simulator and the control plane drive the same code.

pub mod carbon;
pub mod manager;
pub mod model;
