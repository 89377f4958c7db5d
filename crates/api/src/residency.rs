//! Residency policies over the API: a tenant's policy as it is set
//! (`PUT /v1/tenants/{tenant}/policy`), and the effective policy of each data class as
//! `gigawatt policy show` prints it, each term with its source.

use gigawatt_core::EffectivePolicy;
use gigawatt_fleet::residency::COUNTRY_GROUPS;
use gigawatt_fleet::{Certification, ResidencyRule};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;

/// The most entries one list of a policy may hold.
const MAX_ENTRIES: usize = 128;

/// A tenant's residency policy. It only narrows: a site must meet the operator's rule
/// for the data class **and** every term given here. A list left empty does not
/// restrict; a policy with every list empty lifts the tenant's policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// ISO 3166-1 alpha-2 codes (`FR`), or the groups `EU` and `EEA`.
    #[serde(default)]
    #[schema(max_items = 128)]
    pub countries: Vec<String>,
    /// Jurisdictions: the law the site's operator answers to (`EU`, `US`).
    #[serde(default)]
    #[schema(max_items = 128)]
    pub jurisdictions: Vec<String>,
    /// Certifications every site must hold (`hds`, `secnumcloud`, `soc2`, `c5`,
    /// `iso27001`).
    #[serde(default)]
    #[schema(max_items = 128)]
    pub certifications: Vec<String>,
    /// Site ids (`gigawatt sites` lists them).
    #[serde(default)]
    #[schema(max_items = 128)]
    pub sites: Vec<String>,
}

impl PolicySpec {
    /// The policy as a residency rule, after checking each entry's syntax (whether the
    /// sites exist is the control plane's check: it knows the fleet).
    ///
    /// # Errors
    /// The first malformed entry, with its field (`countries[1]`) and what would be right.
    pub fn to_rule(&self) -> Result<ResidencyRule, FieldError> {
        for (name, list) in [
            ("countries", &self.countries),
            ("jurisdictions", &self.jurisdictions),
            ("certifications", &self.certifications),
            ("sites", &self.sites),
        ] {
            if list.len() > MAX_ENTRIES {
                return Err(FieldError::new(name, format!("give at most {MAX_ENTRIES} entries")));
            }
        }
        let mut rule = ResidencyRule::anywhere();
        for (i, c) in self.countries.iter().enumerate() {
            if !COUNTRY_GROUPS.contains(&c.as_str()) && !gigawatt_fleet::is_iso_3166_alpha2(c) {
                return Err(FieldError::new(
                    format!("countries[{i}]"),
                    format!("`{c}` is not an ISO 3166-1 alpha-2 code (`FR`, `DE`) nor a group (`EU`, `EEA`)"),
                ));
            }
        }
        for (i, j) in self.jurisdictions.iter().enumerate() {
            if !(2..=8).contains(&j.len()) || !j.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(FieldError::new(
                    format!("jurisdictions[{i}]"),
                    format!("`{j}` is not a jurisdiction: 2..=8 upper-case letters, such as `EU` or `US`"),
                ));
            }
        }
        for (i, c) in self.certifications.iter().enumerate() {
            match Certification::parse(c) {
                Some(cert) => {
                    rule.certifications.insert(cert);
                }
                None => {
                    let known: Vec<&str> = Certification::ALL.iter().map(|c| c.as_str()).collect();
                    return Err(FieldError::new(
                        format!("certifications[{i}]"),
                        format!("`{c}` is not a certification; known: {}", known.join(", ")),
                    ));
                }
            }
        }
        for (i, s) in self.sites.iter().enumerate() {
            let ok = (1..=64).contains(&s.len())
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !ok {
                return Err(FieldError::new(
                    format!("sites[{i}]"),
                    format!("`{s}` is not a site id: 1..=64 lower-case letters, digits, `-` or `_`"),
                ));
            }
        }
        let set = |v: &[String]| (!v.is_empty()).then(|| v.iter().cloned().collect());
        rule.countries = set(&self.countries);
        rule.jurisdictions = set(&self.jurisdictions);
        rule.sites = set(&self.sites);
        Ok(rule)
    }

    /// The spec of a rule (the inverse of [`PolicySpec::to_rule`]).
    #[must_use]
    pub fn from_rule(rule: &ResidencyRule) -> PolicySpec {
        let list = |v: &Option<std::collections::BTreeSet<String>>| v.iter().flatten().cloned().collect();
        PolicySpec {
            countries: list(&rule.countries),
            jurisdictions: list(&rule.jurisdictions),
            certifications: rule.certifications.iter().map(|c| c.as_str().to_string()).collect(),
            sites: list(&rule.sites),
        }
    }
}

/// One term of an effective policy, with who set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyTerm {
    /// `operator` (the fleet file's rule for the data class), `tenant` or `job`.
    pub source: String,
    /// `countries`, `certifications`, `jurisdictions` or `sites`.
    pub term: String,
    /// What it asks, in words (`EU/EEA`, `HDS`, `EU`).
    pub value: String,
}

/// The effective policy of one data class for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClassPolicy {
    /// The data class.
    pub data_class: String,
    /// The whole policy in words: "HDS, in EU/EEA (operator); in FR (tenant)".
    pub text: String,
    /// Every term, with its source.
    pub terms: Vec<PolicyTerm>,
    /// The sites it allows now, in fleet order.
    pub sites: Vec<String>,
    /// For each site it refuses, why (the first term the site breaks).
    pub excluded: Vec<String>,
}

impl ClassPolicy {
    /// The effective policy of a class, against the fleet's sites (`allowed` and
    /// `refused` as the caller computed them from the same policy).
    #[must_use]
    pub fn of(policy: &EffectivePolicy, allowed: Vec<String>, refused: Vec<String>) -> ClassPolicy {
        let mut terms = Vec::new();
        for (source, rule) in &policy.layers {
            let source = source.as_str().to_string();
            let mut push = |term: &str, value: String| {
                terms.push(PolicyTerm { source: source.clone(), term: term.into(), value });
            };
            if let Some(c) = &rule.countries {
                push("countries", c.iter().cloned().collect::<Vec<_>>().join("/"));
            }
            if !rule.certifications.is_empty() {
                push(
                    "certifications",
                    rule.certifications.iter().map(|c| c.label()).collect::<Vec<_>>().join(" + "),
                );
            }
            if let Some(j) = &rule.jurisdictions {
                push("jurisdictions", j.iter().cloned().collect::<Vec<_>>().join(" or "));
            }
            if let Some(s) = &rule.sites {
                push("sites", s.iter().cloned().collect::<Vec<_>>().join(", "));
            }
        }
        ClassPolicy {
            data_class: policy.class.as_str().to_string(),
            text: policy.to_string(),
            terms,
            sites: allowed,
            excluded: refused,
        }
    }
}

/// A tenant's policy and what it makes of each data class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantPolicy {
    /// The tenant.
    pub tenant: String,
    /// Its own policy (every list empty: none).
    pub policy: PolicySpec,
    /// When it was set (RFC 3339), if ever.
    pub set_at: Option<String>,
    /// Who set it (token id).
    pub set_by: Option<String>,
    /// The effective policy of each data class: the operator's rule and the tenant's.
    pub classes: Vec<ClassPolicy>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_becomes_a_rule_and_back() {
        let spec = PolicySpec {
            countries: vec!["FR".into()],
            jurisdictions: vec!["EU".into()],
            certifications: vec!["hds".into()],
            sites: vec![],
        };
        let rule = spec.to_rule().expect("valid");
        assert_eq!(rule.to_string(), "HDS, in FR, EU jurisdiction");
        assert_eq!(PolicySpec::from_rule(&rule), spec);
        assert!(PolicySpec::default().to_rule().expect("valid").is_anywhere());
    }

    #[test]
    fn bad_entries_are_named() {
        let bad = |spec: PolicySpec| spec.to_rule().expect_err("refused").field;
        assert_eq!(
            bad(PolicySpec { countries: vec!["FR".into(), "Europe".into()], ..PolicySpec::default() }),
            "countries[1]"
        );
        assert_eq!(
            bad(PolicySpec { jurisdictions: vec!["eu".into()], ..PolicySpec::default() }),
            "jurisdictions[0]"
        );
        assert_eq!(
            bad(PolicySpec { certifications: vec!["iso".into()], ..PolicySpec::default() }),
            "certifications[0]"
        );
        assert_eq!(bad(PolicySpec { sites: vec!["Paris".into()], ..PolicySpec::default() }), "sites[0]");
    }
}
