//! Carbon: how dirty a grid's electricity is, and how much CO2 a quantity of energy emits.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Joules;

/// Joules in one kilowatt-hour, the unit carbon intensities are published per.
const JOULES_PER_KWH: f64 = 3.6e6;

/// Carbon intensity of electricity, in grams of CO2-equivalent per kilowatt-hour.
///
/// This is the unit grid operators publish (RTE's eco2mix, Electricity Maps), so a series
/// read from their exports needs no conversion. It varies by hour and by site, which is
/// what makes *when* and *where* a workload runs a carbon decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct CarbonIntensity(pub f64);

impl CarbonIntensity {
    /// The emissions of `energy` drawn from a grid at this intensity (1 kWh = 3.6 MJ).
    ///
    /// ```
    /// use gigawatt_units::{CarbonIntensity, Joules};
    /// let g = CarbonIntensity(21.7).of(Joules(3.6e6));
    /// assert!((g.0 - 21.7).abs() < 1e-12);
    /// ```
    #[must_use]
    pub fn of(self, energy: Joules) -> GramsCo2 {
        GramsCo2(self.0 * energy.0 / JOULES_PER_KWH)
    }
}

impl fmt::Display for CarbonIntensity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} gCO2/kWh", self.0)
    }
}

/// A mass of CO2-equivalent in grams, the result of carbon accounting.
///
/// Grams because one GPU-hour in France emits a few grams; `Display` switches to kilograms
/// and tonnes for fleets and years.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct GramsCo2(pub f64);

impl GramsCo2 {
    /// No emissions.
    pub const ZERO: GramsCo2 = GramsCo2(0.0);
}

impl fmt::Display for GramsCo2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.0;
        if g.abs() >= 1e6 {
            write!(f, "{:.1} t CO2", g / 1e6)
        } else if g.abs() >= 1e3 {
            write!(f, "{:.2} kg CO2", g / 1e3)
        } else {
            write!(f, "{g:.1} g CO2")
        }
    }
}

impl Add for GramsCo2 {
    type Output = GramsCo2;
    fn add(self, rhs: GramsCo2) -> GramsCo2 {
        GramsCo2(self.0 + rhs.0)
    }
}
impl AddAssign for GramsCo2 {
    fn add_assign(&mut self, rhs: GramsCo2) {
        self.0 += rhs.0;
    }
}
impl Sub for GramsCo2 {
    type Output = GramsCo2;
    /// Plain subtraction (it may go negative): "saved" is a difference of emissions.
    fn sub(self, rhs: GramsCo2) -> GramsCo2 {
        GramsCo2(self.0 - rhs.0)
    }
}
impl Sum for GramsCo2 {
    fn sum<I: Iterator<Item = GramsCo2>>(iter: I) -> GramsCo2 {
        iter.fold(GramsCo2::ZERO, Add::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Seconds, Watts};

    #[test]
    fn one_kilowatt_hour_emits_the_intensity() {
        let kwh = Watts(1000).over(Seconds(3600.0));
        assert!((CarbonIntensity(48.0).of(kwh).0 - 48.0).abs() < 1e-9);
        assert_eq!(CarbonIntensity(0.0).of(kwh), GramsCo2::ZERO);
    }

    #[test]
    fn grams_add_and_sum() {
        let mut g = GramsCo2(1.5) + GramsCo2(2.0);
        g += GramsCo2(0.5);
        assert_eq!(g, GramsCo2(4.0));
        assert_eq!([GramsCo2(1.0), GramsCo2(2.0)].into_iter().sum::<GramsCo2>(), GramsCo2(3.0));
        assert_eq!(GramsCo2(1.0) - GramsCo2(3.0), GramsCo2(-2.0));
    }

    #[test]
    fn display_picks_a_readable_unit() {
        assert_eq!(CarbonIntensity(21.7).to_string(), "21.7 gCO2/kWh");
        assert_eq!(GramsCo2(512.34).to_string(), "512.3 g CO2");
        assert_eq!(GramsCo2(1234.0).to_string(), "1.23 kg CO2");
        assert_eq!(GramsCo2(2.5e6).to_string(), "2.5 t CO2");
        assert_eq!(GramsCo2(-1500.0).to_string(), "-1.50 kg CO2");
    }
}
