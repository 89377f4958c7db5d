//! The validated fleet: region → site → rack → node → GPU.
//!
//! These types are what the rest of gigawatt consumes. They are always valid: the only
//! ways to get a [`Fleet`] are the fleet-file loader (which checks everything and reports
//! every problem) and [`Fleet::new`] (which runs the same checks on a model built in
//! code, for example from a trace's node list).

use std::collections::BTreeSet;
use std::fmt;

use chrono::NaiveDate;
use gigawatt_units::{Mebibytes, Megawatts, MilliCores, Timestamp, Watts};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalog::GpuCatalog;
use crate::diag::Diagnostics;

/// A whole fleet: every site the operator runs, and the GPU models they hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fleet {
    /// The built-in catalog plus the models declared in the fleet file.
    pub catalog: GpuCatalog,
    /// Sites in file order. Order matters: it is the scheduler's tie-breaking order.
    pub sites: Vec<Site>,
    /// Which sites may hold each data class (the fleet file's `[residency.*]`, else the
    /// documented defaults).
    pub residency: crate::residency::ResidencyRules,
}

impl Fleet {
    /// Builds a fleet assembled in code (for example from a trace's node list), running the
    /// same checks as the fleet-file loader so that every [`Fleet`] is valid.
    ///
    /// GPU model names on nodes may be any spelling the catalog accepts (`V100M16`); they
    /// are rewritten to the canonical id (`V100-SXM2-16GB`), so that later comparisons are
    /// plain string equality.
    ///
    /// # Errors
    /// Every problem found, as [`Diagnostics`] without file positions, with field paths
    /// such as `sites[0].racks[3].nodes[1].gpu_model`.
    pub fn new(catalog: GpuCatalog, mut sites: Vec<Site>) -> Result<Fleet, Diagnostics> {
        let diags = crate::validate::check_fleet(&catalog, &mut sites);
        diags.into_result(Fleet { catalog, sites, residency: crate::residency::ResidencyRules::default() })
    }

    /// The site with this id.
    #[must_use]
    pub fn site(&self, id: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.id == id)
    }

    /// Total IT power budget of the fleet at `t` (sum over sites).
    #[must_use]
    pub fn it_budget_at(&self, t: Timestamp) -> Watts {
        self.sites.iter().map(|s| s.it_budget_at(t)).sum()
    }

    /// Every node of the fleet with its site and rack, in fleet order.
    pub fn nodes(&self) -> impl Iterator<Item = (&Site, &Rack, &Node)> {
        self.sites
            .iter()
            .flat_map(|s| s.racks.iter().flat_map(move |r| r.nodes.iter().map(move |n| (s, r, n))))
    }

    /// Number of nodes in the fleet.
    #[must_use]
    pub fn node_count(&self) -> usize {
        self.sites.iter().flat_map(|s| &s.racks).map(|r| r.nodes.len()).sum()
    }

    /// Number of GPUs in the fleet.
    #[must_use]
    pub fn gpu_count(&self) -> u64 {
        self.nodes().map(|(_, _, n)| u64::from(n.gpu_count)).sum()
    }
}

/// A datacenter site: one grid connection, one PUE, one legal jurisdiction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Site {
    /// Short stable identifier, e.g. `valence`.
    pub id: String,
    /// Human name, e.g. `Valence (Drôme) campus`.
    pub name: String,
    /// Where the site is, which decides which data may live there.
    pub country: Country,
    /// The operator's region this site belongs to, e.g. `eu-south-fr`.
    pub region: String,
    /// Certifications held by the site.
    pub certifications: BTreeSet<Certification>,
    /// The law the site's operator answers to (`EU`, `US`, `JP`): SecNumCloud §19.6
    /// asks for immunity from non-EU law, which a country alone does not tell.
    pub jurisdiction: String,
    /// Grid capacity phases, sorted by date, dates distinct.
    pub grid: Vec<GridPhase>,
    /// Power usage effectiveness: facility power / IT power (≥ 1).
    pub pue: Pue,
    /// How the site counts the power of the GPUs it admits.
    pub provisioning: Provisioning,
    /// The lowest grid draw a curtailment (a grid operator's demand-response request) may
    /// ask of the site, facility side. Zero when the file says nothing.
    pub curtailable_to: Megawatts,
    /// The carbon intensity of the site's electricity over time, when the fleet file names
    /// a series: what energy used there costs in CO2.
    pub carbon: Option<SiteCarbon>,
    /// Racks in file order.
    pub racks: Vec<Rack>,
}

/// A site's carbon-intensity series and the file it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteCarbon {
    /// The file, as the fleet file names it.
    pub file: String,
    /// The series.
    #[serde(skip)]
    pub series: std::sync::Arc<crate::carbon::CarbonSeries>,
}

/// How a site counts the power of the GPUs it admits.
///
/// Racks and servers rarely draw their nameplate power at the same time. A `reserved`
/// site never relies on that; an `oversubscribed` one admits more GPUs than its budget
/// covers at TDP and lets the power manager keep the real draw under every limit by
/// lowering GPU power limits, least important work first (POLCA, arXiv 2308.12908).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Provisioning {
    /// Every allocated GPU counts at its TDP: the sum never exceeds a rack's or the site's
    /// limit, so no power limit is ever needed.
    #[default]
    Reserved,
    /// Admit GPUs whose TDP sum reaches `(1 + ratio) ×` each limit, as long as the
    /// allocated work at its lowest power limits still fits under the limit.
    Oversubscribed {
        /// Share admitted beyond the limit, e.g. 0.3 for 130%. Between 0 and 1.
        ratio: f64,
    },
}

impl Provisioning {
    /// The share admitted beyond the limit: 0 for `reserved`.
    #[must_use]
    pub fn ratio(self) -> f64 {
        match self {
            Provisioning::Reserved => 0.0,
            Provisioning::Oversubscribed { ratio } => ratio,
        }
    }

    /// `reserved` or `oversubscribed`, as the fleet file spells it.
    #[must_use]
    pub fn mode(self) -> &'static str {
        match self {
            Provisioning::Reserved => "reserved",
            Provisioning::Oversubscribed { .. } => "oversubscribed",
        }
    }
}

impl Site {
    /// Grid capacity in force at `t`: the latest phase that has started, or zero before the
    /// first phase (a site with no grid connection yet can run nothing).
    #[must_use]
    pub fn grid_capacity_at(&self, t: Timestamp) -> Watts {
        self.grid
            .iter()
            .rev()
            .find(|p| p.from_timestamp() <= t)
            .map_or(Watts::ZERO, |p| p.capacity.to_watts())
    }

    /// IT power budget at `t` = grid capacity(t) / PUE, rounded down.
    #[must_use]
    pub fn it_budget_at(&self, t: Timestamp) -> Watts {
        self.pue.it_share(self.grid_capacity_at(t))
    }

    /// Whether the site holds a certification.
    #[must_use]
    pub fn has(&self, c: Certification) -> bool {
        self.certifications.contains(&c)
    }
}

/// One step of a site's grid connection: from `from` on, the site may draw `capacity`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GridPhase {
    /// First day (UTC midnight) on which this capacity applies.
    pub from: NaiveDate,
    /// Grid capacity, facility side (IT plus cooling and losses).
    pub capacity: Megawatts,
}

impl GridPhase {
    /// The phase's start as a timestamp (UTC midnight).
    #[must_use]
    pub fn from_timestamp(&self) -> Timestamp {
        Timestamp(self.from.and_hms_opt(0, 0, 0).map_or(0, |d| d.and_utc().timestamp_millis()))
    }
}

/// Power usage effectiveness, ≥ 1.0. Industry average 1.56 (Uptime Institute 2024); new
/// liquid-cooled builds reach ~1.1–1.3 (see `docs/` and the reference facts).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pue(pub f64);

impl Pue {
    /// The IT share of a facility power, rounded down.
    #[must_use]
    pub fn it_share(self, facility: Watts) -> Watts {
        if facility.is_unlimited() {
            return Watts::UNLIMITED;
        }
        // PUE is validated ≥ 1, so this never grows the budget.
        Watts((facility.0 as f64 / self.0).floor() as u64)
    }
}

/// A rack: a power limit and a place in the network topology.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rack {
    /// Identifier, unique within the fleet, e.g. `valence-a01`.
    pub id: String,
    /// Power the rack's busbar and cooling allow (default 150 kW).
    pub power_limit: Watts,
    /// The NVLink or InfiniBand island the rack belongs to. Gangs that ask for
    /// `same-domain` land inside one such island.
    pub network_domain: String,
    /// Nodes in the rack.
    pub nodes: Vec<Node>,
}

impl Rack {
    /// Number of GPUs in the rack.
    #[must_use]
    pub fn gpu_count(&self) -> u64 {
        self.nodes.iter().map(|n| u64::from(n.gpu_count)).sum()
    }

    /// What the rack draws with every node busy and every GPU at its TDP: compared with
    /// [`Rack::power_limit`] it says whether the rack must be power-capped.
    #[must_use]
    pub fn full_load_power(&self, catalog: &GpuCatalog) -> Watts {
        self.nodes.iter().map(|n| n.full_load_power(catalog)).sum()
    }

    /// What the rack draws with every node busy and every GPU capped at its lowest
    /// settable limit: if this exceeds the rack limit, no capping can make the rack fit.
    #[must_use]
    pub fn min_capped_power(&self, catalog: &GpuCatalog) -> Watts {
        self.nodes.iter().map(|n| n.min_capped_power(catalog)).sum()
    }
}

impl Node {
    /// Busy draw with every GPU at its TDP (base power plus GPUs). A GPU model missing from
    /// `catalog` counts as 0 W; a validated fleet has none.
    #[must_use]
    pub fn full_load_power(&self, catalog: &GpuCatalog) -> Watts {
        self.base_power + self.gpu_power(catalog, |s| s.tdp)
    }

    /// Busy draw with every GPU capped at its lowest settable power limit.
    #[must_use]
    pub fn min_capped_power(&self, catalog: &GpuCatalog) -> Watts {
        self.base_power + self.gpu_power(catalog, |s| s.min_power_limit)
    }

    fn gpu_power(&self, catalog: &GpuCatalog, per_gpu: impl Fn(&crate::GpuSpec) -> Watts) -> Watts {
        let spec = self.gpu_model.as_deref().and_then(|m| catalog.get(m));
        spec.map_or(Watts::ZERO, |s| Watts(per_gpu(s).0.saturating_mul(u64::from(self.gpu_count))))
    }
}

/// A server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// Identifier, unique within the fleet.
    pub name: String,
    /// GPU model id in the catalog (canonical spelling), or `None` for a CPU-only node.
    pub gpu_model: Option<String>,
    /// Number of GPUs (0 for a CPU-only node).
    pub gpu_count: u32,
    /// Allocatable CPU.
    pub cpu: MilliCores,
    /// Allocatable memory.
    pub memory: Mebibytes,
    /// Power of everything but the GPUs (CPUs, NICs, fans, drives) when the node is busy.
    pub base_power: Watts,
}

/// An ISO 3166-1 alpha-2 country code, upper case, e.g. `FR`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Country(pub String);

/// The 27 EU member states plus Iceland, Liechtenstein and Norway (EEA), as ISO 3166-1
/// alpha-2 codes. Source: European Commission, EU member countries (2024); EEA Agreement.
pub const EU_EEA: [&str; 30] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT",
    "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

impl Country {
    /// Whether the country is in the EU or the EEA (which is what GDPR and HDS look at).
    #[must_use]
    pub fn is_eu_eea(&self) -> bool {
        EU_EEA.contains(&self.0.as_str())
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A certification a site holds, which decides which data classes it may host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Certification {
    /// ANSSI SecNumCloud (France): required for `sensitive` data.
    Secnumcloud,
    /// Hébergeur de Données de Santé (France): required for `health` data.
    Hds,
    /// AICPA SOC 2.
    Soc2,
    /// ISO/IEC 27001.
    Iso27001,
    /// Germany's BSI C5.
    C5,
}

impl Certification {
    /// Every certification, in a stable order.
    pub const ALL: [Certification; 5] = [
        Certification::Secnumcloud,
        Certification::Hds,
        Certification::Soc2,
        Certification::Iso27001,
        Certification::C5,
    ];

    /// The spelling used in fleet files and the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Certification::Secnumcloud => "secnumcloud",
            Certification::Hds => "hds",
            Certification::Soc2 => "soc2",
            Certification::Iso27001 => "iso27001",
            Certification::C5 => "c5",
        }
    }

    /// The name people write: `HDS`, `SecNumCloud`, `SOC 2`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Certification::Secnumcloud => "SecNumCloud",
            Certification::Hds => "HDS",
            Certification::Soc2 => "SOC 2",
            Certification::Iso27001 => "ISO 27001",
            Certification::C5 => "C5",
        }
    }

    /// Parses the fleet-file spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Certification> {
        Certification::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Certification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
