//! Quotas as the operator writes them and as tenants see them.
//!
//! The operator sends one document, [`QuotaConfig`] (`PUT /v1/quotas`, or
//! `gigawatt quota set quotas.toml`), with amounts in GPUs and kW. The control plane
//! checks it against the fleet and the tenants it knows, logs it as a `quotas-set`
//! event, and puts it in force. [`QuotaStatus`] is what a tenant sees of its own quota
//! (`GET /v1/quota`, `gigawatt quota`), with its place in line.
//!
//! ```toml
//! [[flavours]]
//! name = "h100-eu"
//! models = ["H100"]
//! regions = ["eu-west-fr", "eu-south-fr"]
//!
//! [cohorts.research]
//!
//! [tenants.acme]
//! cohort = "research"
//! weight = 2
//! flavours.h100-eu = { nominal = 64, borrowing_limit = 32 }
//! power_kw = { valence = 150 }
//! energy_kwh = 200000
//! ```

use std::collections::BTreeMap;

use gigawatt_core::{
    CohortSpec, FairShareConfig, FlavourQuota, FlavourSpec, FlavourUse, Quotas, TenantId, TenantQuota,
    TenantQuotaUse,
};
use gigawatt_units::{GpuMilliTotal, Seconds, WattHours, Watts};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;

/// Every quota of the cloud (`PUT /v1/quotas`): flavours, cohorts, tenants and fair share.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Flavours, in matching order: a node belongs to the first one that matches it.
    #[serde(default)]
    pub flavours: Vec<FlavourConfig>,
    /// Cohorts by name: groups of tenants that share unused quota; they may nest.
    #[serde(default)]
    pub cohorts: BTreeMap<String, CohortConfig>,
    /// Quotas by tenant id. A tenant without an entry is not limited.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantQuotaConfig>,
    /// How fair share weighs past use.
    #[serde(default)]
    pub fair_share: Option<FairShareSpec>,
}

/// A set of nodes sold as one thing, chosen by GPU model, site and region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlavourConfig {
    /// Name used in quotas, e.g. `h100-eu`.
    pub name: String,
    /// GPU models (catalog ids, as `gigawatt catalog` lists them); empty: any.
    #[serde(default)]
    pub models: Vec<String>,
    /// Site ids; empty: any.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Regions; empty: any.
    #[serde(default)]
    pub regions: Vec<String>,
}

/// A quota in one flavour, in GPUs (fractions down to a thousandth).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlavourLimits {
    /// Guaranteed GPUs (ignored for a cohort, which owns the sum of its members').
    #[serde(default)]
    pub nominal: f64,
    /// How many GPUs above nominal it may borrow; absent: as many as the cohort lends.
    #[serde(default)]
    pub borrowing_limit: Option<f64>,
    /// How many of its unused nominal GPUs others may borrow; absent: all of them.
    #[serde(default)]
    pub lending_limit: Option<f64>,
}

/// A cohort.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CohortConfig {
    /// The cohort it belongs to.
    #[serde(default)]
    pub parent: Option<String>,
    /// Its borrowing and lending limits towards its parent, per flavour.
    #[serde(default)]
    pub flavours: BTreeMap<String, FlavourLimits>,
}

/// One tenant's quotas.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantQuotaConfig {
    /// The cohort it shares unused quota with; absent: it uses only its own nominal.
    #[serde(default)]
    pub cohort: Option<String>,
    /// Fair-share weight, 1 or more (default 1).
    #[serde(default)]
    pub weight: Option<u32>,
    /// Quota per flavour name.
    #[serde(default)]
    pub flavours: BTreeMap<String, FlavourLimits>,
    /// kW of reserved power it may hold, per site id.
    #[serde(default)]
    pub power_kw: BTreeMap<String, f64>,
    /// kWh it may commit per billing period (a calendar month, UTC): reserved power times
    /// the time to each workload's time limit (or the period's end), given back for the
    /// part not used. Absent: no energy quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_kwh: Option<f64>,
}

/// Fair share's memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FairShareSpec {
    /// Half-life of past use, e.g. `24h` (Slurm's `PriorityDecayHalfLife`).
    pub half_life: String,
    /// Weight of decayed past use against current use, 0 to 1.
    pub history_weight: f64,
}

/// The most flavours, cohorts or tenants one document may name.
const MAX_ENTRIES: usize = 100_000;

fn gpus(field: &str, v: f64) -> Result<GpuMilliTotal, FieldError> {
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err(FieldError::new(field, format!("{v} GPUs: give a number of GPUs from 0 to 1e9")));
    }
    let milli = v * 1000.0;
    if (milli - milli.round()).abs() > 1e-6 {
        return Err(FieldError::new(field, format!("{v} GPUs: quotas count thousandths of a GPU at most")));
    }
    Ok(GpuMilliTotal(milli.round() as u64))
}

fn limits(field: &str, l: &FlavourLimits) -> Result<FlavourQuota, FieldError> {
    Ok(FlavourQuota {
        nominal: gpus(&format!("{field}.nominal"), l.nominal)?,
        borrowing_limit: l
            .borrowing_limit
            .map(|b| gpus(&format!("{field}.borrowing_limit"), b))
            .transpose()?,
        lending_limit: l.lending_limit.map(|b| gpus(&format!("{field}.lending_limit"), b)).transpose()?,
    })
}

fn to_gpus(m: GpuMilliTotal) -> f64 {
    m.0 as f64 / 1000.0
}

fn back(q: &FlavourQuota) -> FlavourLimits {
    FlavourLimits {
        nominal: to_gpus(q.nominal),
        borrowing_limit: q.borrowing_limit.map(to_gpus),
        lending_limit: q.lending_limit.map(to_gpus),
    }
}

impl QuotaConfig {
    /// Parses a TOML quota file; errors name the line and column.
    ///
    /// # Errors
    /// The parser's message.
    pub fn from_toml(text: &str) -> Result<QuotaConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks amounts and names, and builds the core's configuration. What the fleet
    /// knows (models, sites, regions, tenants) is checked by the server.
    ///
    /// # Errors
    /// The first wrong field, as a dotted path (`tenants.acme.flavours.h100-eu.nominal`).
    pub fn to_core(&self) -> Result<Quotas, FieldError> {
        if self.flavours.len() > MAX_ENTRIES
            || self.cohorts.len() > MAX_ENTRIES
            || self.tenants.len() > MAX_ENTRIES
        {
            return Err(FieldError::new("", format!("at most {MAX_ENTRIES} flavours, cohorts or tenants")));
        }
        let mut q = Quotas::default();
        for f in &self.flavours {
            q.flavours.push(FlavourSpec {
                name: f.name.clone(),
                models: f.models.clone(),
                sites: f.sites.clone(),
                regions: f.regions.clone(),
            });
        }
        for (name, c) in &self.cohorts {
            let mut spec = CohortSpec { parent: c.parent.clone(), flavours: BTreeMap::new() };
            for (f, l) in &c.flavours {
                spec.flavours.insert(f.clone(), limits(&format!("cohorts.{name}.flavours.{f}"), l)?);
            }
            q.cohorts.insert(name.clone(), spec);
        }
        for (id, t) in &self.tenants {
            let mut spec = TenantQuota {
                cohort: t.cohort.clone(),
                weight: t.weight.unwrap_or(1),
                flavours: BTreeMap::new(),
                power: BTreeMap::new(),
                energy: None,
            };
            if let Some(kwh) = t.energy_kwh {
                if !kwh.is_finite() || !(0.0..=1e10).contains(&kwh) {
                    return Err(FieldError::new(
                        format!("tenants.{id}.energy_kwh"),
                        format!("{kwh} kWh: give an energy per month from 0 to 1e10 kWh"),
                    ));
                }
                // A limit: round down to whole watt-hours.
                spec.energy = Some(WattHours((kwh * 1000.0).floor() as u64));
            }
            if spec.weight == 0 || spec.weight > 1_000_000 {
                return Err(FieldError::new(
                    format!("tenants.{id}.weight"),
                    "give a weight from 1 to 1000000",
                ));
            }
            for (f, l) in &t.flavours {
                spec.flavours.insert(f.clone(), limits(&format!("tenants.{id}.flavours.{f}"), l)?);
            }
            for (site, kw) in &t.power_kw {
                if !kw.is_finite() || *kw < 0.0 || *kw > 1e7 {
                    return Err(FieldError::new(
                        format!("tenants.{id}.power_kw.{site}"),
                        format!("{kw} kW: give a power from 0 to 1e7 kW"),
                    ));
                }
                // kW become a limit: round down, like every user-facing power limit.
                spec.power.insert(site.clone(), Watts((kw * 1000.0).floor() as u64));
            }
            q.tenants.insert(TenantId(id.clone()), spec);
        }
        if let Some(fs) = &self.fair_share {
            let half = humantime::parse_duration(&fs.half_life).map_err(|e| {
                FieldError::new(
                    "fair_share.half_life",
                    format!("`{}`: {e}; write a duration such as `24h`", fs.half_life),
                )
            })?;
            if !(0.0..=1.0).contains(&fs.history_weight) {
                return Err(FieldError::new(
                    "fair_share.history_weight",
                    format!("{}: give a weight from 0 to 1", fs.history_weight),
                ));
            }
            q.fair_share =
                FairShareConfig { half_life: Seconds(half.as_secs_f64()), history_weight: fs.history_weight };
        }
        q.validate().map_err(|e| FieldError::new("", e.0))?;
        Ok(q)
    }

    /// The document for a configuration in force.
    #[must_use]
    pub fn from_core(q: &Quotas) -> QuotaConfig {
        QuotaConfig {
            flavours: q
                .flavours
                .iter()
                .map(|f| FlavourConfig {
                    name: f.name.clone(),
                    models: f.models.clone(),
                    sites: f.sites.clone(),
                    regions: f.regions.clone(),
                })
                .collect(),
            cohorts: q
                .cohorts
                .iter()
                .map(|(n, c)| {
                    (
                        n.clone(),
                        CohortConfig {
                            parent: c.parent.clone(),
                            flavours: c.flavours.iter().map(|(f, l)| (f.clone(), back(l))).collect(),
                        },
                    )
                })
                .collect(),
            tenants: q
                .tenants
                .iter()
                .map(|(id, t)| {
                    (
                        id.0.clone(),
                        TenantQuotaConfig {
                            cohort: t.cohort.clone(),
                            weight: Some(t.weight),
                            flavours: t.flavours.iter().map(|(f, l)| (f.clone(), back(l))).collect(),
                            power_kw: t.power.iter().map(|(s, w)| (s.clone(), w.0 as f64 / 1000.0)).collect(),
                            energy_kwh: t.energy.map(|e| e.to_kwh().0),
                        },
                    )
                })
                .collect(),
            fair_share: Some(FairShareSpec {
                half_life: humantime::format_duration(std::time::Duration::from_secs_f64(
                    q.fair_share.half_life.0.max(0.0),
                ))
                .to_string(),
                history_weight: q.fair_share.history_weight,
            }),
        }
    }
}

/// The quotas in force (`GET /v1/quotas`), with who set them and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuotasInForce {
    /// The document.
    pub config: QuotaConfig,
    /// When it was set (RFC 3339), absent while no quota was ever set.
    pub set_at: Option<String>,
    /// The token that set it.
    pub set_by: Option<String>,
    /// Every tenant with a quota entry, against its use.
    pub tenants: Vec<QuotaStatus>,
}

/// One tenant's quota against its use, and its place in line (`GET /v1/quota`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuotaStatus {
    /// The tenant.
    pub tenant: String,
    /// Whether it has a quota entry (a tenant without one is not limited).
    pub governed: bool,
    /// The cohort it shares with.
    pub cohort: Option<String>,
    /// Fair-share weight.
    pub weight: u32,
    /// Per flavour.
    pub flavours: Vec<FlavourStatus>,
    /// Per site with a power quota.
    pub power: Vec<PowerQuotaStatus>,
    /// Its energy quota for the billing period, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<EnergyQuotaStatus>,
    /// Weighted dominant share of use (decayed past and current, over the fleet, divided
    /// by the weight): among tenants over their nominal, the lower goes first.
    pub fair_share: f64,
    /// Its workloads waiting.
    pub pending: u64,
    /// The first of them in the order they would go, with their place in line.
    pub waiting: Vec<LinePlace>,
}

/// One flavour of a tenant's quota.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlavourStatus {
    /// The flavour.
    pub flavour: String,
    /// GPUs it holds.
    pub used: f64,
    /// Its nominal (guaranteed) GPUs.
    pub nominal: f64,
    /// GPUs held above nominal: borrowed from its cohort, and reclaimable.
    pub borrowed: f64,
    /// How far above nominal it may go; absent: as far as its cohort lends.
    pub borrowing_limit: Option<f64>,
    /// How much of its unused nominal others may borrow; absent: all of it.
    pub lending_limit: Option<f64>,
}

/// A tenant's power quota at one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PowerQuotaStatus {
    /// The site.
    pub site: String,
    /// Reserved power held, kW.
    pub used_kw: f64,
    /// The limit, kW.
    pub limit_kw: f64,
}

/// A tenant's energy quota for the billing period (a calendar month, UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnergyQuotaStatus {
    /// kWh committed: reserved power times the time held so far, plus what running work
    /// has reserved until its time limit (or the period's end).
    pub committed_kwh: f64,
    /// The quota per period, kWh.
    pub limit_kwh: f64,
    /// The period's first instant, RFC 3339.
    pub period_start: String,
    /// The next period's first instant, RFC 3339: the account starts again then.
    pub period_end: String,
}

/// Where one waiting workload stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LinePlace {
    /// All of it in plain words: what quota says, who is ahead, and the expected start.
    pub text: String,
    /// Workload id.
    pub workload: String,
    /// Its name.
    pub name: String,
    /// Workloads of the same tenant ahead of it (higher priority, or older).
    pub ahead_in_tenant: u32,
    /// Tenants ranked ahead of this one among those waiting for the same shape.
    pub tenants_ahead: u32,
    /// What quota says, when it holds it back.
    pub quota: Option<String>,
    /// When it is expected to start (its reservation), RFC 3339.
    pub expected_start: Option<String>,
    /// The nodes planned for it.
    #[serde(default)]
    pub planned_nodes: Vec<String>,
}

impl QuotaStatus {
    /// A tenant's report from the core's figures; `waiting` is filled by the caller.
    #[must_use]
    pub fn from_core(tenant: &str, u: &TenantQuotaUse) -> QuotaStatus {
        QuotaStatus {
            tenant: tenant.to_string(),
            governed: u.governed,
            cohort: u.cohort.clone(),
            weight: u.weight,
            flavours: u.flavours.iter().map(flavour_status).collect(),
            power: u
                .power
                .iter()
                .map(|(site, used, limit)| PowerQuotaStatus {
                    site: site.clone(),
                    used_kw: used.0 as f64 / 1000.0,
                    limit_kw: limit.0 as f64 / 1000.0,
                })
                .collect(),
            energy: u.energy.map(|e| EnergyQuotaStatus {
                committed_kwh: e.committed.to_kwh().0,
                limit_kwh: e.limit.to_kwh().0,
                period_start: crate::rfc3339(e.period_start.0),
                period_end: crate::rfc3339(e.period_end.0),
            }),
            fair_share: u.share,
            pending: u.pending as u64,
            waiting: Vec::new(),
        }
    }
}

impl LinePlace {
    /// The sentence of [`LinePlace::text`] for a workload of `tenant`.
    #[must_use]
    pub fn sentence(
        tenant: &str,
        quota: Option<&str>,
        ahead_in_tenant: u32,
        tenants_ahead: u32,
        start: Option<(&str, &[String])>,
    ) -> String {
        let mut parts = vec![match quota {
            Some(q) => format!("waiting: {q}"),
            None => "waiting for capacity".to_string(),
        }];
        match ahead_in_tenant {
            0 => {}
            1 => parts.push(format!("1 workload of {tenant} is ahead of it")),
            n => parts.push(format!("{n} workloads of {tenant} are ahead of it")),
        }
        match tenants_ahead {
            0 => {}
            1 => parts.push("1 tenant with a smaller fair share is ahead for the same shape".to_string()),
            n => parts.push(format!("{n} tenants with smaller fair shares are ahead for the same shape")),
        }
        parts.push(match start {
            Some((at, nodes)) => {
                let more =
                    if nodes.len() > 3 { format!(" and {} more", nodes.len() - 3) } else { String::new() };
                let shown: Vec<&str> = nodes.iter().take(3).map(String::as_str).collect();
                format!(
                    "expected start {at} on {}{more} (reserved: work placed there meanwhile ends before)",
                    shown.join(", ")
                )
            }
            None => "no reservation yet: it starts when capacity frees".to_string(),
        });
        parts.join("; ")
    }
}

fn flavour_status(f: &FlavourUse) -> FlavourStatus {
    FlavourStatus {
        flavour: f.flavour.clone(),
        used: to_gpus(f.used),
        nominal: to_gpus(f.nominal),
        borrowed: to_gpus(f.used.saturating_sub(f.nominal)),
        borrowing_limit: f.borrowing_limit.map(to_gpus),
        lending_limit: f.lending_limit.map(to_gpus),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[flavours]]
name = "h100-eu"
models = ["H100"]

[cohorts.research]

[tenants.acme]
cohort = "research"
weight = 2
flavours.h100-eu = { nominal = 64, borrowing_limit = 32.5 }
power_kw = { valence = 150.9 }

[tenants.beta]
cohort = "research"
flavours.h100-eu = { nominal = 16, lending_limit = 8 }

[fair_share]
half_life = "12h"
history_weight = 0.25
"#;

    #[test]
    fn a_file_becomes_the_core_configuration_and_back() {
        let c = QuotaConfig::from_toml(FILE).expect("parses");
        let q = c.to_core().expect("valid");
        let acme = &q.tenants[&TenantId("acme".into())];
        assert_eq!(acme.flavours["h100-eu"].nominal, GpuMilliTotal(64_000));
        assert_eq!(acme.flavours["h100-eu"].borrowing_limit, Some(GpuMilliTotal(32_500)));
        assert_eq!(acme.power["valence"], Watts(150_900));
        assert_eq!(q.fair_share.half_life, Seconds(43_200.0));
        let again = QuotaConfig::from_core(&q).to_core().expect("round trip");
        assert_eq!(again, q);
    }

    #[test]
    fn a_wrong_amount_names_its_field() {
        let text = FILE.replace("nominal = 64", "nominal = 64.0001");
        let e = QuotaConfig::from_toml(&text).expect("parses").to_core().expect_err("too fine");
        assert_eq!(e.field, "tenants.acme.flavours.h100-eu.nominal");
        let text = FILE.replace("lending_limit = 8", "lending_limit = 17");
        let e = QuotaConfig::from_toml(&text).expect("parses").to_core().expect_err("lends more than it has");
        assert!(e.message.contains("lending limit 17 GPUs above nominal 16"), "{e}");
        let text = FILE.replace("cohort = \"research\"\nweight", "cohort = \"reserch\"\nweight");
        let e = QuotaConfig::from_toml(&text).expect("parses").to_core().expect_err("typo");
        assert!(e.message.contains("cohort `reserch` is not defined"), "{e}");
    }

    #[test]
    fn a_place_in_line_reads_as_one_sentence() {
        let nodes: Vec<String> = (1..=5).map(|i| format!("valence-a012-n0{i}")).collect();
        let s = LinePlace::sentence(
            "acme",
            Some(
                "tenant acme uses 64 of its 64 h100-eu nominal quota GPUs and may borrow 32 more, but cohort research has none free",
            ),
            2,
            1,
            Some(("2026-12-07T14:20:00.000Z", &nodes)),
        );
        assert_eq!(
            s,
            "waiting: tenant acme uses 64 of its 64 h100-eu nominal quota GPUs and may borrow 32 more, but cohort \
             research has none free; 2 workloads of acme are ahead of it; 1 tenant with a smaller fair share is \
             ahead for the same shape; expected start 2026-12-07T14:20:00.000Z on valence-a012-n01, \
             valence-a012-n02, valence-a012-n03 and 2 more (reserved: work placed there meanwhile ends before)"
        );
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        let e = QuotaConfig::from_toml("[tenants.acme]\nnominal = 3\n").expect_err("unknown key");
        assert!(e.contains("line 2") && e.contains("nominal"), "{e}");
    }
}
