//! Residency rules: which sites may hold each data class.
//!
//! The operator sets one rule per data class in the fleet file (`[residency.health]`);
//! a class the file leaves out keeps its default. A rule is three terms, each a set that
//! a site must belong to: countries (ISO codes, or the groups `EU` and `EEA`), the
//! certifications the site must all hold, and the jurisdictions (the law the site's
//! operator answers to). A term left out does not restrict.
//!
//! The same shape narrows further: a tenant's policy (`gigawatt policy set`) and a job's
//! `placement` pins are rules too, which may also name sites. The effective policy of a
//! workload is the operator's rule for its data class, its tenant's policy and its own
//! pins, all at once: each layer can only take sites away.
//!
//! The defaults follow the rules our customers sign up to (see
//! `docs/fleet-file.md#residency`):
//!
//! | data class | default rule | why |
//! |---|---|---|
//! | `public` | anywhere | |
//! | `personal` | in the EU/EEA | GDPR, chapter V |
//! | `health` | HDS, in the EU/EEA | French HDS rules: hosting in the EEA |
//! | `sensitive` | SecNumCloud, in France, EU jurisdiction | SecNumCloud 3.2 §19.2 and §19.6 |

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Certification, Country, EU_EEA, Site};

/// The 27 EU member states, as ISO 3166-1 alpha-2 codes (European Commission, EU member
/// countries, 2024). [`EU_EEA`] adds Iceland, Liechtenstein and Norway.
pub const EU: [&str; 27] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT",
    "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];

/// Country groups a rule may name beside country codes.
pub const COUNTRY_GROUPS: [&str; 2] = ["EU", "EEA"];

/// The jurisdiction of a site whose fleet file entry names none: `EU` for a site in an
/// EU member state, else its country code (`US`, `JP`, `NO`).
#[must_use]
pub fn default_jurisdiction(country: &str) -> String {
    if EU.contains(&country) { "EU".to_string() } else { country.to_string() }
}

/// Whether a country code belongs to a rule's country entry (a code or a group).
#[must_use]
pub fn country_in(country: &str, entry: &str) -> bool {
    match entry {
        "EU" => EU.contains(&country),
        "EEA" => EU_EEA.contains(&country),
        code => code == country,
    }
}

/// What the law looks at in a site: where it is, what it is certified for, and whose
/// law its operator answers to. Rules are judged against these facts alone, so the core,
/// the log and an offline verifier judge a site the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteLaw {
    /// Site id.
    pub id: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Country,
    /// Certifications held.
    pub certifications: BTreeSet<Certification>,
    /// The law its operator answers to (`EU`, `US`).
    pub jurisdiction: String,
}

impl Site {
    /// The facts residency rules judge this site by.
    #[must_use]
    pub fn law(&self) -> SiteLaw {
        SiteLaw {
            id: self.id.clone(),
            country: self.country.clone(),
            certifications: self.certifications.clone(),
            jurisdiction: self.jurisdiction.clone(),
        }
    }
}

/// The rule for one data class, a tenant's policy or a job's pins. Each term left `None`
/// (or, for certifications, empty) does not restrict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResidencyRule {
    /// Countries (ISO codes) or groups (`EU`, `EEA`) the site must be in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countries: Option<BTreeSet<String>>,
    /// Certifications the site must all hold.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub certifications: BTreeSet<Certification>,
    /// Jurisdictions the site's operator must answer to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdictions: Option<BTreeSet<String>>,
    /// The sites themselves, by id (tenant policies and job pins; the fleet file's
    /// rules name places by country, not by site).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sites: Option<BTreeSet<String>>,
}

impl ResidencyRule {
    /// No restriction at all.
    #[must_use]
    pub fn anywhere() -> ResidencyRule {
        ResidencyRule::default()
    }

    /// Whether no term restricts.
    #[must_use]
    pub fn is_anywhere(&self) -> bool {
        *self == ResidencyRule::default()
    }

    /// Whether `site` meets every term.
    #[must_use]
    pub fn allows(&self, site: &SiteLaw) -> bool {
        self.why_not(site).is_none()
    }

    /// The first term `site` breaks, in words ("site ashburn is in US, outside EU/EEA"),
    /// or `None` when it meets them all.
    #[must_use]
    pub fn why_not(&self, site: &SiteLaw) -> Option<String> {
        if let Some(sites) = &self.sites
            && !sites.contains(&site.id)
        {
            let list = sites.iter().cloned().collect::<Vec<_>>().join(", ");
            return Some(format!(
                "site {} is not one of {}",
                site.id,
                if list.is_empty() { "no site".into() } else { list }
            ));
        }
        if let Some(countries) = &self.countries
            && !countries.iter().any(|c| country_in(&site.country.0, c))
        {
            return Some(format!("site {} is in {}, outside {}", site.id, site.country, join(countries)));
        }
        let missing: Vec<&str> = self
            .certifications
            .iter()
            .filter(|c| !site.certifications.contains(c))
            .map(|c| c.label())
            .collect();
        if !missing.is_empty() {
            return Some(format!("site {} is not {}-certified", site.id, missing.join(", ")));
        }
        if let Some(j) = &self.jurisdictions
            && !j.contains(&site.jurisdiction)
        {
            return Some(format!(
                "site {} answers to {} law, not {}",
                site.id,
                site.jurisdiction,
                j.iter().cloned().collect::<Vec<_>>().join(" or ")
            ));
        }
        None
    }
}

/// Groups first, in their usual order (`EU/EEA`), then country codes.
fn join(set: &BTreeSet<String>) -> String {
    let groups = COUNTRY_GROUPS.iter().filter(|g| set.contains(**g)).map(|g| (*g).to_string());
    let codes = set.iter().filter(|c| !COUNTRY_GROUPS.contains(&c.as_str())).cloned();
    groups.chain(codes).collect::<Vec<_>>().join("/")
}

impl fmt::Display for ResidencyRule {
    /// "HDS, in EU/EEA, EU jurisdiction", or "anywhere".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut terms: Vec<String> = Vec::new();
        if !self.certifications.is_empty() {
            terms.push(self.certifications.iter().map(|c| c.label()).collect::<Vec<_>>().join(" + "));
        }
        if let Some(c) = &self.countries {
            terms.push(format!("in {}", join(c)));
        }
        if let Some(j) = &self.jurisdictions {
            terms.push(format!("{} jurisdiction", j.iter().cloned().collect::<Vec<_>>().join(" or ")));
        }
        if let Some(s) = &self.sites {
            terms.push(format!("at {}", s.iter().cloned().collect::<Vec<_>>().join(" or ")));
        }
        if terms.is_empty() { f.write_str("anywhere") } else { f.write_str(&terms.join(", ")) }
    }
}

/// One rule per data class, as the fleet file sets them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidencyRules {
    /// `public` data.
    pub public: ResidencyRule,
    /// `personal` data (GDPR).
    pub personal: ResidencyRule,
    /// `health` data (HDS).
    pub health: ResidencyRule,
    /// `sensitive` data (SecNumCloud).
    pub sensitive: ResidencyRule,
}

/// The data classes a rule may be set for, as the fleet file and job files spell them.
pub const DATA_CLASSES: [&str; 4] = ["public", "personal", "health", "sensitive"];

impl ResidencyRules {
    /// The rule for a data class by its name (`health`); `None` for an unknown name.
    #[must_use]
    pub fn get(&self, class: &str) -> Option<&ResidencyRule> {
        match class {
            "public" => Some(&self.public),
            "personal" => Some(&self.personal),
            "health" => Some(&self.health),
            "sensitive" => Some(&self.sensitive),
            _ => None,
        }
    }

    /// The rule for a data class by its name, to change it.
    pub fn get_mut(&mut self, class: &str) -> Option<&mut ResidencyRule> {
        match class {
            "public" => Some(&mut self.public),
            "personal" => Some(&mut self.personal),
            "health" => Some(&mut self.health),
            "sensitive" => Some(&mut self.sensitive),
            _ => None,
        }
    }
}

impl Default for ResidencyRules {
    /// The documented defaults (see the module docs).
    fn default() -> Self {
        let set = |v: &[&str]| Some(v.iter().map(|s| (*s).to_string()).collect());
        let eu_eea = || set(&["EU", "EEA"]);
        ResidencyRules {
            public: ResidencyRule::anywhere(),
            personal: ResidencyRule { countries: eu_eea(), ..ResidencyRule::anywhere() },
            health: ResidencyRule {
                countries: eu_eea(),
                certifications: [Certification::Hds].into(),
                ..ResidencyRule::anywhere()
            },
            sensitive: ResidencyRule {
                countries: set(&["FR"]),
                certifications: [Certification::Secnumcloud].into(),
                jurisdictions: set(&["EU"]),
                sites: None,
            },
        }
    }
}
