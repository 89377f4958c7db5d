//! Compute resources: GPU shares, CPU and memory.

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! counter {
    ($(#[$doc:meta])* $name:ident($inner:ty), $suffix:literal) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
            JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// Nothing.
            pub const ZERO: $name = $name(0);

            /// Subtraction that never goes below zero.
            #[must_use]
            pub fn saturating_sub(self, rhs: $name) -> $name {
                $name(self.0.saturating_sub(rhs.0))
            }

            /// Subtraction that reports an underflow instead of wrapping.
            #[must_use]
            pub fn checked_sub(self, rhs: $name) -> Option<$name> {
                self.0.checked_sub(rhs.0).map($name)
            }
        }

        impl Add for $name {
            type Output = $name;
            fn add(self, rhs: $name) -> $name {
                $name(self.0.saturating_add(rhs.0))
            }
        }
        impl AddAssign for $name {
            fn add_assign(&mut self, rhs: $name) {
                *self = *self + rhs;
            }
        }
        impl Sub for $name {
            type Output = $name;
            fn sub(self, rhs: $name) -> $name {
                self.saturating_sub(rhs)
            }
        }
        impl SubAssign for $name {
            fn sub_assign(&mut self, rhs: $name) {
                *self = *self - rhs;
            }
        }
        impl std::iter::Sum for $name {
            fn sum<I: Iterator<Item = $name>>(iter: I) -> $name {
                iter.fold($name::ZERO, Add::add)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", self.0, $suffix)
            }
        }
    };
}

counter!(
    /// A share of GPUs in thousandths: 1000 is one whole GPU, 460 is 46% of one.
    ///
    /// GPU-sharing tasks ask for a share of a single GPU; whole-GPU tasks ask for
    /// multiples of 1000 spread over distinct GPUs.
    GpuMilli(u32),
    "m"
);
counter!(
    /// A sum of GPU thousandths over many GPUs: a quota, or a tenant's use of a flavour.
    /// [`GpuMilli`] measures what one task asks of one node and stops at 4,294 GPUs; a
    /// tenant's quota on a 200,000-GPU fleet needs the wider type.
    GpuMilliTotal(u64),
    "m"
);
counter!(
    /// CPU in thousandths of a core, as Kubernetes counts it.
    MilliCores(u64),
    "mc"
);
counter!(
    /// Memory in mebibytes (2^20 bytes).
    Mebibytes(u64),
    "MiB"
);

impl GpuMilli {
    /// One whole GPU.
    pub const WHOLE: GpuMilli = GpuMilli(1000);

    /// `n` whole GPUs.
    #[must_use]
    pub fn whole(n: u32) -> GpuMilli {
        GpuMilli(n.saturating_mul(1000))
    }
}

impl GpuMilliTotal {
    /// `n` whole GPUs.
    #[must_use]
    pub fn whole(n: u64) -> GpuMilliTotal {
        GpuMilliTotal(n.saturating_mul(1000))
    }
}

impl From<GpuMilli> for GpuMilliTotal {
    fn from(m: GpuMilli) -> GpuMilliTotal {
        GpuMilliTotal(u64::from(m.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_never_wrap() {
        assert_eq!(GpuMilli(300) - GpuMilli(400), GpuMilli::ZERO);
        assert_eq!(GpuMilli(300).checked_sub(GpuMilli(400)), None);
        assert_eq!(GpuMilli::whole(8), GpuMilli(8000));
        assert_eq!(MilliCores(5).to_string(), "5mc");
    }
}
