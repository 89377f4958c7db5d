//! Data residency: which sites may hold which data class.
//!
//! The operator's rules come from the fleet file (`[residency.*]`, see
//! [`gigawatt_fleet::residency`] for the documented defaults: `health` needs HDS in the
//! EU/EEA, `sensitive` SecNumCloud in France under EU jurisdiction, `personal` the
//! EU/EEA, `public` goes anywhere). The state caches, per site, which classes it may hold;
//! every placement, retry, preemption and restore reads that cache.
//!
//! These are hard constraints: the scheduler checks them before any other rule, a
//! restore refuses a placement that breaks them, and a property test proves no placement
//! ever breaks them.

use gigawatt_fleet::{ResidencyRule, ResidencyRules, Site};

use crate::DataClass;

/// The operator's rule for a data class.
#[must_use]
pub fn rule(rules: &ResidencyRules, class: DataClass) -> &ResidencyRule {
    match class {
        DataClass::Public => &rules.public,
        DataClass::Personal => &rules.personal,
        DataClass::Health => &rules.health,
        DataClass::Sensitive => &rules.sensitive,
    }
}

/// Whether `site` may hold data of `class` under `rules`.
#[must_use]
pub fn allows(rules: &ResidencyRules, site: &Site, class: DataClass) -> bool {
    rule(rules, class).allows(site)
}

/// A sentence explaining why `site` may not hold `class`, for explanations: "health data
/// needs HDS, in EU/EEA: site ashburn is in US, outside EU/EEA".
#[must_use]
pub fn why_not(rules: &ResidencyRules, site: &Site, class: DataClass) -> Option<String> {
    let r = rule(rules, class);
    r.why_not(site).map(|why| format!("{} data needs {r}: {why}", class.as_str()))
}
