//! Units as types.
//!
//! A bare `f64` for power is a bug waiting to happen: a kilowatt added to a watt, a
//! megawatt budget compared with a per-GPU draw. Every quantity that gigawatt reasons
//! about has a newtype here, and conversions between them are explicit.
//!
//! Hard limits (rack kW, site MW, GPU shares) are checked on **integers**, so that the
//! same inputs always give the same verdict whatever the order of additions:
//!
//! * power is counted in whole [`Watts`] (`u64`); [`Kilowatts`] and [`Megawatts`] are
//!   user-facing spellings that convert to watts;
//! * GPU shares are [`GpuMilli`], thousandths of one GPU;
//! * CPU is [`MilliCores`] and memory is [`Mebibytes`].
//!
//! Energy ([`Joules`]) and spans of time ([`Seconds`]) are accounting quantities, not
//! limits, and are floating point. Instants are [`Timestamp`]s, integer milliseconds
//! since the Unix epoch, so that the scheduling core can order events exactly.
//!
//! ```
//! use gigawatt_units::{Kilowatts, Megawatts, Watts};
//! let rack = Kilowatts(150.0).to_watts();
//! assert_eq!(rack, Watts(150_000));
//! assert_eq!(Megawatts(8.0).to_watts(), Watts(8_000_000));
//! assert_eq!(Watts(700).scaled_milli(460), Watts(322));
//! ```

mod carbon;
mod power;
mod resources;
mod time;

pub use carbon::{CarbonIntensity, GramsCo2};
pub use power::{Joules, KilowattHours, Kilowatts, Megawatts, WattHours, Watts};
pub use resources::{GpuMilli, GpuMilliTotal, Mebibytes, MilliCores};
pub use time::{Seconds, Timestamp};
