//! Power and energy.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub, SubAssign};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Seconds;

/// Electrical power in whole watts.
///
/// Integer on purpose: limits are compared exactly, and sums do not depend on the order
/// in which allocations were made. One watt is far below any decision threshold
/// (a GPU draws hundreds, a rack up to 150,000).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct Watts(pub u64);

impl Watts {
    /// No power at all.
    pub const ZERO: Watts = Watts(0);
    /// No limit: the largest representable power.
    pub const UNLIMITED: Watts = Watts(u64::MAX);

    /// `self × milli / 1000`, rounded **up**, so that a reservation never undercounts.
    ///
    /// This is how a GPU share becomes a power reservation: a task holding 460/1000 of a
    /// 700 W GPU reserves 322 W.
    #[must_use]
    pub fn scaled_milli(self, milli: u32) -> Watts {
        let num = u128::from(self.0) * u128::from(milli);
        Watts(u64::try_from(num.div_ceil(1000)).unwrap_or(u64::MAX))
    }

    /// Saturating addition: an unlimited budget stays unlimited.
    #[must_use]
    pub fn saturating_add(self, rhs: Watts) -> Watts {
        Watts(self.0.saturating_add(rhs.0))
    }

    /// Saturating subtraction, never below zero.
    #[must_use]
    pub fn saturating_sub(self, rhs: Watts) -> Watts {
        Watts(self.0.saturating_sub(rhs.0))
    }

    /// This power in kilowatts, for display.
    #[must_use]
    pub fn to_kilowatts(self) -> Kilowatts {
        Kilowatts(self.0 as f64 / 1e3)
    }

    /// This power in megawatts, for display.
    #[must_use]
    pub fn to_megawatts(self) -> Megawatts {
        Megawatts(self.0 as f64 / 1e6)
    }

    /// Energy drawn at this power for `dt`.
    #[must_use]
    pub fn over(self, dt: Seconds) -> Joules {
        Joules(self.0 as f64 * dt.0)
    }

    /// Whether this is the "no limit" sentinel.
    #[must_use]
    pub fn is_unlimited(self) -> bool {
        self == Watts::UNLIMITED
    }
}

impl fmt::Display for Watts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unlimited() {
            f.write_str("unlimited")
        } else if self.0 >= 1_000_000 {
            write!(f, "{:.2} MW", self.0 as f64 / 1e6)
        } else if self.0 >= 10_000 {
            write!(f, "{:.1} kW", self.0 as f64 / 1e3)
        } else {
            write!(f, "{} W", self.0)
        }
    }
}

impl Add for Watts {
    type Output = Watts;
    fn add(self, rhs: Watts) -> Watts {
        self.saturating_add(rhs)
    }
}
impl AddAssign for Watts {
    fn add_assign(&mut self, rhs: Watts) {
        *self = *self + rhs;
    }
}
impl Sub for Watts {
    type Output = Watts;
    fn sub(self, rhs: Watts) -> Watts {
        self.saturating_sub(rhs)
    }
}
impl SubAssign for Watts {
    fn sub_assign(&mut self, rhs: Watts) {
        *self = *self - rhs;
    }
}
impl Sum for Watts {
    fn sum<I: Iterator<Item = Watts>>(iter: I) -> Watts {
        iter.fold(Watts::ZERO, Add::add)
    }
}

/// Power in kilowatts, the unit of racks and servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Kilowatts(pub f64);

impl Kilowatts {
    /// Whole watts, rounded down (a limit rounded down is never exceeded).
    #[must_use]
    pub fn to_watts(self) -> Watts {
        Watts(to_whole_watts(self.0 * 1e3))
    }
}

impl fmt::Display for Kilowatts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} kW", self.0)
    }
}

/// Power in megawatts, the unit of sites and grid connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Megawatts(pub f64);

impl Megawatts {
    /// Whole watts, rounded down (a limit rounded down is never exceeded).
    #[must_use]
    pub fn to_watts(self) -> Watts {
        Watts(to_whole_watts(self.0 * 1e6))
    }
}

impl fmt::Display for Megawatts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2} MW", self.0)
    }
}

fn to_whole_watts(w: f64) -> u64 {
    if w.is_nan() || w <= 0.0 {
        0
    } else if w >= u64::MAX as f64 {
        u64::MAX
    } else {
        // Truncation is the intent: round limits down.
        w.floor() as u64
    }
}

/// Energy in joules (watt-seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Joules(pub f64);

impl Joules {
    /// This energy in kilowatt-hours (1 kWh = 3.6 MJ).
    #[must_use]
    pub fn to_kwh(self) -> KilowattHours {
        KilowattHours(self.0 / 3.6e6)
    }
}

impl Add for Joules {
    type Output = Joules;
    fn add(self, rhs: Joules) -> Joules {
        Joules(self.0 + rhs.0)
    }
}
impl AddAssign for Joules {
    fn add_assign(&mut self, rhs: Joules) {
        self.0 += rhs.0;
    }
}

/// Energy in whole watt-hours: the unit of energy quotas, exact in integers so that a
/// refund gives back exactly what a charge took.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct WattHours(pub u64);

impl WattHours {
    /// Watt-seconds (joules) in one watt-hour.
    pub const SECONDS: u64 = 3600;

    /// The energy in kilowatt-hours.
    #[must_use]
    pub fn to_kwh(self) -> KilowattHours {
        KilowattHours(self.0 as f64 / 1000.0)
    }

    /// Whole watt-hours in `ws` watt-seconds, rounded up (a charge never rounds to zero).
    #[must_use]
    pub fn from_watt_seconds_ceil(ws: u64) -> WattHours {
        WattHours(ws.div_ceil(Self::SECONDS))
    }
}

impl fmt::Display for WattHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} kWh", self.0 as f64 / 1000.0)
    }
}

/// Energy in kilowatt-hours, the unit of electricity bills and carbon factors.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct KilowattHours(pub f64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_limits_down_and_reservations_up() {
        assert_eq!(Kilowatts(150.0).to_watts(), Watts(150_000));
        assert_eq!(Megawatts(8.0 / 1.2).to_watts(), Watts(6_666_666));
        assert_eq!(Watts(700).scaled_milli(333), Watts(234));
        assert_eq!(Watts(700).scaled_milli(1000), Watts(700));
        assert_eq!(Watts(700).scaled_milli(0), Watts(0));
        assert_eq!(Kilowatts(-1.0).to_watts(), Watts(0));
        assert_eq!(Kilowatts(f64::NAN).to_watts(), Watts(0));
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Watts::UNLIMITED + Watts(1), Watts::UNLIMITED);
        assert_eq!(Watts(1) - Watts(2), Watts::ZERO);
        assert_eq!([Watts(1), Watts(2)].into_iter().sum::<Watts>(), Watts(3));
    }

    #[test]
    fn energy() {
        let j = Watts(1000).over(Seconds(3600.0));
        assert!((j.to_kwh().0 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn display_picks_a_readable_unit() {
        assert_eq!(Watts(700).to_string(), "700 W");
        assert_eq!(Watts(150_000).to_string(), "150.0 kW");
        assert_eq!(Watts(6_666_666).to_string(), "6.67 MW");
        assert_eq!(Watts::UNLIMITED.to_string(), "unlimited");
    }
}
