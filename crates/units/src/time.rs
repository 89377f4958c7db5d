//! Instants and spans of time.

use std::fmt;
use std::ops::{Add, Sub};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An instant: integer milliseconds since the Unix epoch (UTC).
///
/// The scheduling core never reads a clock. The server hands it wall-clock timestamps and
/// the simulator hands it virtual ones; both are this type, so the core cannot tell them
/// apart.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The Unix epoch, which is also time zero of a simulation.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From whole seconds since the epoch.
    #[must_use]
    pub fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(1000))
    }

    /// The span from `earlier` to `self` (negative if `earlier` is later).
    #[must_use]
    pub fn since(self, earlier: Timestamp) -> Seconds {
        Seconds(self.0.saturating_sub(earlier.0) as f64 / 1e3)
    }
}

#[allow(clippy::suspicious_arithmetic_impl)] // seconds → milliseconds
impl Add<Seconds> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Seconds) -> Timestamp {
        Timestamp(self.0.saturating_add((rhs.0 * 1e3).round() as i64))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={}.{:03}s", self.0.div_euclid(1000), self.0.rem_euclid(1000))
    }
}

/// A span of time in seconds, for durations and energy integration.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Seconds(pub f64);

impl Add for Seconds {
    type Output = Seconds;
    fn add(self, rhs: Seconds) -> Seconds {
        Seconds(self.0 + rhs.0)
    }
}
impl Sub for Seconds {
    type Output = Seconds;
    fn sub(self, rhs: Seconds) -> Seconds {
        Seconds(self.0 - rhs.0)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_add_seconds_to_the_millisecond() {
        let t = Timestamp::from_secs(10) + Seconds(1.25);
        assert_eq!(t, Timestamp(11_250));
        assert_eq!(Timestamp(2500).since(Timestamp(1000)), Seconds(1.5));
        assert_eq!(Timestamp(-1).to_string(), "t=-1.999s");
    }
}
