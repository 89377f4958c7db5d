//! Data residency: which sites may hold which data class.
//!
//! The rules come from the sovereignty requirements our customers sign up to
//! (see `docs/` and the reference facts):
//!
//! | data class | allowed sites |
//! |---|---|
//! | `public` | any |
//! | `personal` | in the EU/EEA (GDPR) |
//! | `health` | HDS-certified, in the EU/EEA (French HDS rules: EEA hosting only) |
//! | `sensitive` | SecNumCloud-certified, in France (ANSSI SecNumCloud 3.2 §19) |
//!
//! These are hard constraints: the scheduler checks them before any other rule, and a
//! property test proves no placement ever breaks them.

use gigawatt_fleet::{Certification, Site};

use crate::DataClass;

/// Whether `site` may hold data of `class`.
#[must_use]
pub fn allows(site: &Site, class: DataClass) -> bool {
    match class {
        DataClass::Public => true,
        DataClass::Personal => site.country.is_eu_eea(),
        DataClass::Health => site.country.is_eu_eea() && site.has(Certification::Hds),
        DataClass::Sensitive => site.country.0 == "FR" && site.has(Certification::Secnumcloud),
    }
}

/// A sentence explaining why `site` may not hold `class`, for explanations.
#[must_use]
pub fn why_not(site: &Site, class: DataClass) -> Option<String> {
    if allows(site, class) {
        return None;
    }
    Some(match class {
        DataClass::Public => unreachable_public(),
        DataClass::Personal => format!("site {} is in {}, outside the EU/EEA", site.id, site.country),
        DataClass::Health => format!(
            "health data needs an HDS-certified site in the EU/EEA; site {} ({}) is not",
            site.id, site.country
        ),
        DataClass::Sensitive => format!(
            "sensitive data needs a SecNumCloud-certified site in France; site {} ({}) is not",
            site.id, site.country
        ),
    })
}

fn unreachable_public() -> String {
    // `allows` returns true for public data, so this is never reached; a string keeps
    // the function total without a panic.
    String::from("public data may go anywhere")
}
