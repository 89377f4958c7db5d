//! Quotas: what each tenant is guaranteed, how far it may borrow, and what it lends.
//!
//! The model is Kueue's, extended with power:
//!
//! * A **flavour** is a set of nodes the operator sells as one thing ("H100 in the EU",
//!   "any GPU in the US"), chosen by GPU model, site and region. A node belongs to the
//!   first flavour (in declaration order) that matches it, or to none.
//! * Each tenant has per flavour a **nominal** quota (guaranteed), a **borrowing limit**
//!   (how far above nominal it may go on others' unused quota; unlimited when absent) and
//!   a **lending limit** (how much of its unused nominal others may borrow; unlimited
//!   when absent). Quotas count GPU thousandths, so a quota of 64 GPUs is 64,000.
//! * Tenants sit in **cohorts**, which nest into trees; unused quota is shared within a
//!   tree. A cohort may carry its own borrowing and lending limits towards its parent.
//! * **Power** is a dimension too: a tenant may be limited to a number of watts reserved
//!   per site.
//!
//! # The admission rule
//!
//! Every node `x` of a tree (tenant or cohort) has per flavour a nominal `N(x)` (for a
//! cohort, the sum of its children's), a usage `U(x)`, and a guaranteed part
//! `G(x) = N(x) − lending_limit(x)` that never leaves it (0 without a lending limit).
//! Its **claim** on its parent is `E(x) = max(U(x), G(x))` for a tenant and
//! `E(C) = max(Σ E(children), G(C))` for a cohort. Adding `a` to tenant `t` is admitted
//! when, after the change,
//!
//! 1. every node on the path from `t` to the root with a borrowing limit `B` keeps
//!    `Σ E(children) ≤ N + B` (for the tenant itself, `U ≤ N + B`), and
//! 2. the root keeps `Σ E(children) ≤ N(root)`: the tree never uses more than it owns.
//!
//! A tenant outside any cohort is its own root: it may use its nominal and nothing more.
//! A tenant within its nominal can still be refused by rule 2 when borrowers hold what it
//! lent: that is the signal to **reclaim** (see the scheduler's periodic pass).
//!
//! Tenants with no quota entry are not limited: quotas are the operator's choice.

use std::collections::BTreeMap;
use std::fmt;

use gigawatt_units::{GpuMilliTotal, Seconds, WattHours, Watts};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::workload::TenantId;

/// The most flavours a fleet may define (they are a 64-bit mask in the hot filter).
pub const MAX_FLAVOURS: usize = 63;

/// A flavour: the nodes matching every non-empty selector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlavourSpec {
    /// Name used in quotas, e.g. `h100-eu`.
    pub name: String,
    /// GPU models (catalog ids); empty means any.
    #[serde(default)]
    pub models: Vec<String>,
    /// Site ids; empty means any.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Regions; empty means any.
    #[serde(default)]
    pub regions: Vec<String>,
}

/// One tenant's (or cohort's) quota in one flavour, in GPU thousandths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlavourQuota {
    /// Guaranteed.
    #[serde(default)]
    pub nominal: GpuMilliTotal,
    /// How far above nominal it may go by borrowing; `None` is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub borrowing_limit: Option<GpuMilliTotal>,
    /// How much of its unused nominal others may borrow; `None` is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lending_limit: Option<GpuMilliTotal>,
}

/// A tenant's quotas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantQuota {
    /// The cohort it shares unused quota with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    /// Fair-share weight (≥ 1): a tenant of weight 2 is entitled to twice the share of
    /// one of weight 1 when both want more than they have.
    #[serde(default = "one")]
    pub weight: u32,
    /// Quota per flavour name. A flavour not listed has a nominal of zero (it may still
    /// be borrowed in, unless `borrowing_limit` says otherwise; see `strict`).
    #[serde(default)]
    pub flavours: BTreeMap<String, FlavourQuota>,
    /// Watts of reserved power the tenant may hold per site id.
    #[serde(default)]
    pub power: BTreeMap<String, Watts>,
    /// Energy it may commit per billing period (a calendar month, UTC): reserved power
    /// times the time it is held (see the scheduler's `energy` module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<WattHours>,
}

fn one() -> u32 {
    1
}

/// A cohort: a group of tenants (and cohorts) sharing unused quota.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortSpec {
    /// The cohort it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Limits towards the parent, per flavour (the nominal is ignored: a cohort owns the
    /// sum of its members' nominal quotas).
    #[serde(default)]
    pub flavours: BTreeMap<String, FlavourQuota>,
}

/// How fair share weighs the past.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FairShareConfig {
    /// Half-life of the decayed past use (Slurm's `PriorityDecayHalfLife`, 7 days by
    /// default there; shorter here because GPU clouds turn over faster).
    pub half_life: Seconds,
    /// Weight of the decayed past use against current use, 0..=1 (0: current use only).
    pub history_weight: f64,
}

impl Default for FairShareConfig {
    fn default() -> Self {
        FairShareConfig { half_life: Seconds(86_400.0), history_weight: 0.5 }
    }
}

/// Every quota of the cloud: the operator's configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quotas {
    /// Flavours, in matching order.
    #[serde(default)]
    pub flavours: Vec<FlavourSpec>,
    /// Cohorts by name.
    #[serde(default)]
    pub cohorts: BTreeMap<String, CohortSpec>,
    /// Tenants' quotas.
    #[serde(default)]
    pub tenants: BTreeMap<TenantId, TenantQuota>,
    /// Fair share.
    #[serde(default)]
    pub fair_share: FairShareConfig,
}

/// A quota configuration the core refuses, with what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuotaError(pub String);

impl Quotas {
    /// Checks names and the cohort tree: every flavour and cohort named exists, flavour
    /// names are unique, cohorts form a tree (no cycle), at most [`MAX_FLAVOURS`].
    ///
    /// # Errors
    /// The first problem found, naming the tenant, cohort or flavour.
    pub fn validate(&self) -> Result<(), QuotaError> {
        if self.flavours.len() > MAX_FLAVOURS {
            return Err(QuotaError(format!(
                "flavours: {} defined; at most {MAX_FLAVOURS} are supported",
                self.flavours.len()
            )));
        }
        for (i, f) in self.flavours.iter().enumerate() {
            if f.name.is_empty() {
                return Err(QuotaError(format!("flavours[{i}].name: empty; give the flavour a name")));
            }
            if self.flavours[..i].iter().any(|g| g.name == f.name) {
                return Err(QuotaError(format!("flavours[{i}].name: `{}` is defined twice", f.name)));
            }
        }
        let known = |name: &str| self.flavours.iter().any(|f| f.name == name);
        let names = || self.flavours.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ");
        for (c, spec) in &self.cohorts {
            if let Some(p) = &spec.parent
                && !self.cohorts.contains_key(p)
            {
                return Err(QuotaError(format!("cohort `{c}`: parent `{p}` is not a cohort")));
            }
            for f in spec.flavours.keys() {
                if !known(f) {
                    return Err(QuotaError(format!(
                        "cohort `{c}`: unknown flavour `{f}`; flavours are: {}",
                        names()
                    )));
                }
            }
            // Walk up: a cycle revisits `c` within as many steps as there are cohorts.
            let mut at = spec.parent.as_deref();
            for _ in 0..=self.cohorts.len() {
                match at {
                    Some(p) if p == c => {
                        return Err(QuotaError(format!("cohort `{c}` is its own ancestor")));
                    }
                    Some(p) => at = self.cohorts.get(p).and_then(|s| s.parent.as_deref()),
                    None => break,
                }
            }
        }
        for (t, q) in &self.tenants {
            if let Some(c) = &q.cohort
                && !self.cohorts.contains_key(c)
            {
                return Err(QuotaError(format!("tenant `{}`: cohort `{c}` is not defined", t.0)));
            }
            if q.weight == 0 {
                return Err(QuotaError(format!("tenant `{}`: weight 0; use 1 or more", t.0)));
            }
            for (f, fq) in &q.flavours {
                if !known(f) {
                    return Err(QuotaError(format!(
                        "tenant `{}`: unknown flavour `{f}`; flavours are: {}",
                        t.0,
                        names()
                    )));
                }
                if let Some(l) = fq.lending_limit
                    && l > fq.nominal
                {
                    return Err(QuotaError(format!(
                        "tenant `{}`, flavour `{f}`: lending limit {} GPUs above nominal {}; a tenant lends at most its nominal",
                        t.0,
                        gpus(l),
                        gpus(fq.nominal)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether flavour `spec` covers a node of `model` at `site` in `region`.
    #[must_use]
    pub fn matches(spec: &FlavourSpec, model: Option<&str>, site: &str, region: &str) -> bool {
        (spec.models.is_empty() || model.is_some_and(|m| spec.models.iter().any(|x| x == m)))
            && (spec.sites.is_empty() || spec.sites.iter().any(|s| s == site))
            && (spec.regions.is_empty() || spec.regions.iter().any(|r| r == region))
    }
}

/// Why quota refuses a workload, in words and numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaWhy {
    /// The tenant.
    pub tenant: String,
    /// The flavour looked at (the one closest to admitting it).
    pub flavour: String,
    /// What it uses now, GPU thousandths.
    pub used: GpuMilliTotal,
    /// Its nominal quota.
    pub nominal: GpuMilliTotal,
    /// How much more it may borrow by its own limit (`None`: unlimited).
    pub may_borrow: Option<GpuMilliTotal>,
    /// What the workload asks for.
    pub asked: GpuMilliTotal,
    /// What refused it.
    pub limit: QuotaLimit,
}

/// Which rule refused a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum QuotaLimit {
    /// The tenant's own nominal plus borrowing limit.
    Tenant,
    /// A cohort's borrowing limit.
    Cohort {
        /// The cohort.
        cohort: String,
    },
    /// The tree has nothing left to lend (or others' guaranteed parts are all that is
    /// left); a tenant within its nominal is owed a reclaim.
    NothingToBorrow {
        /// The root cohort.
        cohort: String,
        /// Whether the tenant is within its nominal (a reclaim will free room).
        within_nominal: bool,
    },
    /// The tenant has no quota in any flavour where it could run.
    NoFlavour,
    /// The tenant's energy quota for the billing period.
    Energy {
        /// Energy it committed in the period.
        committed: WattHours,
        /// Its quota per period.
        limit: WattHours,
        /// The period's end (when the account starts again).
        period_end: gigawatt_units::Timestamp,
    },
    /// The tenant's power quota at the sites that could take it.
    Power {
        /// The site.
        site: String,
        /// Its limit there.
        limit: Watts,
    },
}

fn gpus(m: GpuMilliTotal) -> String {
    if m.0.is_multiple_of(1000) { format!("{}", m.0 / 1000) } else { format!("{:.3}", m.0 as f64 / 1000.0) }
}

impl QuotaWhy {
    /// Whether the refusal is the quota tree's (it had nothing to lend a borrower)
    /// rather than the tenant's own limit.
    pub(crate) fn on_tree(&self) -> bool {
        matches!(self.limit, QuotaLimit::NothingToBorrow { within_nominal: false, .. })
    }
}

impl fmt::Display for QuotaWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let borrow = match self.may_borrow {
            Some(b) if b.0 == 0 => "may not borrow".to_string(),
            Some(b) => format!("may borrow {} more", gpus(b)),
            None => "may borrow without limit".to_string(),
        };
        let head = format!(
            "tenant {} uses {} of its {} {} nominal quota GPUs and {borrow}",
            self.tenant,
            gpus(self.used),
            gpus(self.nominal),
            self.flavour
        );
        match &self.limit {
            QuotaLimit::Tenant => {
                write!(f, "{head}; this workload asks for {} GPUs, over its limit", gpus(self.asked))
            }
            QuotaLimit::Cohort { cohort } => {
                write!(f, "{head}, but cohort {cohort} is at its borrowing limit")
            }
            QuotaLimit::NothingToBorrow { cohort, within_nominal: false } => {
                write!(f, "{head}, but cohort {cohort} has none free")
            }
            QuotaLimit::NothingToBorrow { cohort, within_nominal: true } => write!(
                f,
                "{head}; it is within its nominal quota but cohort {cohort} has lent it out: borrowers will be reclaimed"
            ),
            QuotaLimit::NoFlavour => write!(
                f,
                "tenant {} has no quota in any flavour whose nodes could take this workload",
                self.tenant
            ),
            QuotaLimit::Energy { committed, limit, period_end } => write!(
                f,
                "tenant {} has committed {committed} of its energy quota of {limit} for this billing period, too little is left for this workload's reserved power until its time limit (or the period's end); the account starts again on {} UTC",
                self.tenant,
                crate::energy::utc_date(*period_end)
            ),
            QuotaLimit::Power { site, limit } => {
                write!(f, "tenant {} is at its power quota of {limit} at site {site}", self.tenant)
            }
        }
    }
}

/// One node of a quota tree (a tenant or a cohort), per flavour.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    parent: Option<u32>,
    cohort: bool,
    nominal: Vec<u64>,
    borrow: Vec<Option<u64>>,
    guaranteed: Vec<u64>,
    /// Tenants: usage. Cohorts: the sum of the children's claims.
    used: Vec<u64>,
}

impl Member {
    fn claim(&self, f: usize) -> u64 {
        self.used[f].max(self.guaranteed[f])
    }
}

/// The live quota accounts: the configuration resolved into a tree with usage.
#[derive(Debug, Clone, Default)]
pub(crate) struct QuotaBook {
    pub(crate) spec: Quotas,
    members: Vec<Member>,
    tenant_member: FxHashMap<TenantId, u32>,
    /// Per governed tenant: its power limit per site index (`u64::MAX` when none).
    power_limit: FxHashMap<TenantId, Vec<u64>>,
    /// Reserved power per governed tenant and site index.
    power_used: FxHashMap<TenantId, Vec<u64>>,
}

/// The flavours (bit mask) in which an amount is admitted.
pub(crate) type FlavourMask = u64;

impl QuotaBook {
    /// Builds the tree from a validated configuration; `sites` are the fleet's site ids
    /// in order (power quotas name sites).
    pub(crate) fn new(spec: Quotas, sites: &[String]) -> QuotaBook {
        let nf = spec.flavours.len();
        let fidx = |name: &str| spec.flavours.iter().position(|f| f.name == name);
        let mut members: Vec<Member> = Vec::new();
        let mut cohort_member: BTreeMap<String, u32> = BTreeMap::new();
        let blank = |name: String, cohort: bool| Member {
            name,
            parent: None,
            cohort,
            nominal: vec![0; nf],
            borrow: vec![None; nf],
            guaranteed: vec![0; nf],
            used: vec![0; nf],
        };
        for name in spec.cohorts.keys() {
            cohort_member.insert(name.clone(), members.len() as u32);
            members.push(blank(name.clone(), true));
        }
        for (name, c) in &spec.cohorts {
            let me = cohort_member[name] as usize;
            members[me].parent = c.parent.as_ref().and_then(|p| cohort_member.get(p).copied());
        }
        let mut tenant_member = FxHashMap::default();
        let mut power_limit = FxHashMap::default();
        let mut power_used = FxHashMap::default();
        for (t, q) in &spec.tenants {
            let mut m = blank(t.0.clone(), false);
            m.parent = q.cohort.as_ref().and_then(|c| cohort_member.get(c).copied());
            for (name, fq) in &q.flavours {
                let Some(f) = fidx(name) else { continue };
                m.nominal[f] = fq.nominal.0;
                m.borrow[f] = fq.borrowing_limit.map(|b| b.0);
                m.guaranteed[f] = fq.lending_limit.map_or(0, |l| fq.nominal.0.saturating_sub(l.0));
            }
            if m.parent.is_none() {
                // Alone: nothing to borrow from.
                m.borrow = vec![Some(0); nf];
            }
            tenant_member.insert(t.clone(), members.len() as u32);
            members.push(m);
            let limits: Vec<u64> = sites.iter().map(|s| q.power.get(s).map_or(u64::MAX, |w| w.0)).collect();
            power_used.insert(t.clone(), vec![0; sites.len()]);
            power_limit.insert(t.clone(), limits);
        }
        // Cohorts own the sum of their members' nominal quotas; add bottom-up by walking
        // each tenant's path.
        for t in tenant_member.values() {
            let nominal = members[*t as usize].nominal.clone();
            let mut at = members[*t as usize].parent;
            while let Some(c) = at {
                for (f, n) in nominal.iter().enumerate() {
                    members[c as usize].nominal[f] += n;
                }
                at = members[c as usize].parent;
            }
        }
        for (name, c) in &spec.cohorts {
            let me = cohort_member[name] as usize;
            for (fname, fq) in &c.flavours {
                let Some(f) = fidx(fname) else { continue };
                members[me].borrow[f] = fq.borrowing_limit.map(|b| b.0);
                members[me].guaranteed[f] =
                    fq.lending_limit.map_or(0, |l| members[me].nominal[f].saturating_sub(l.0));
            }
        }
        // Every cohort's claim starts at the sum of its children's guaranteed parts.
        let mut book = QuotaBook { spec, members, tenant_member, power_limit, power_used };
        let mut members: Vec<u32> = book.tenant_member.values().copied().collect();
        members.sort_unstable();
        for t in members {
            for f in 0..nf {
                let g = book.members[t as usize].guaranteed[f];
                if g > 0 {
                    book.propagate(t, f, 0, g);
                }
            }
        }
        book
    }

    /// Number of flavours.
    pub(crate) fn flavours(&self) -> usize {
        self.spec.flavours.len()
    }

    /// Whether the tenant is governed by quotas.
    pub(crate) fn governs(&self, tenant: &TenantId) -> bool {
        self.tenant_member.contains_key(tenant)
    }

    /// Changes a tenant's claim from `old` to `new` and carries the change up the tree.
    fn propagate(&mut self, member: u32, f: usize, old_claim: u64, new_claim: u64) {
        let (mut old, mut new) = (old_claim, new_claim);
        let mut at = self.members[member as usize].parent;
        while let Some(c) = at {
            let m = &mut self.members[c as usize];
            let before = m.claim(f);
            m.used[f] = m.used[f] + new - old;
            let after = m.claim(f);
            if before == after {
                return;
            }
            (old, new) = (before, after);
            at = m.parent;
        }
    }

    /// Whether `tenant` may add `amount` in flavour `f`; the refusal otherwise.
    pub(crate) fn admits(&self, tenant: &TenantId, f: usize, amount: u64) -> Result<(), QuotaLimit> {
        let Some(&t) = self.tenant_member.get(tenant) else { return Ok(()) };
        let m = &self.members[t as usize];
        let used = m.used[f] + amount;
        if let Some(b) = m.borrow[f]
            && used > m.nominal[f] + b
        {
            return Err(QuotaLimit::Tenant);
        }
        let (mut old, mut new) = (m.claim(f), used.max(m.guaranteed[f]));
        let mut at = m.parent;
        while let Some(c) = at {
            let cm = &self.members[c as usize];
            let sum = cm.used[f] + new - old;
            if let Some(b) = cm.borrow[f]
                && sum > cm.nominal[f] + b
            {
                return Err(QuotaLimit::Cohort { cohort: cm.name.clone() });
            }
            if cm.parent.is_none() && sum > cm.nominal[f] {
                return Err(QuotaLimit::NothingToBorrow {
                    cohort: cm.name.clone(),
                    within_nominal: used <= m.nominal[f],
                });
            }
            (old, new) = (cm.claim(f), sum.max(cm.guaranteed[f]));
            if old == new {
                return Ok(());
            }
            at = cm.parent;
        }
        Ok(())
    }

    /// The flavours in which `tenant` may add `amount`, and the refusal closest to
    /// admitting it when there is none. `usable` are the flavours whose nodes could take
    /// the workload at all.
    pub(crate) fn mask(
        &self,
        tenant: &TenantId,
        amount: u64,
        usable: FlavourMask,
    ) -> Result<FlavourMask, Box<QuotaWhy>> {
        let nf = self.flavours();
        let mut mask = 0u64;
        let mut first: Option<(usize, QuotaLimit)> = None;
        for f in 0..nf {
            if usable & (1 << f) == 0 {
                continue;
            }
            match self.admits(tenant, f, amount) {
                Ok(()) => mask |= 1 << f,
                Err(limit) => {
                    // Prefer explaining a reclaim, then the flavour with a nominal quota.
                    let better = match &first {
                        None => true,
                        Some((g, l)) => {
                            matches!(limit, QuotaLimit::NothingToBorrow { within_nominal: true, .. })
                                && !matches!(l, QuotaLimit::NothingToBorrow { within_nominal: true, .. })
                                || (self.nominal(tenant, f) > self.nominal(tenant, *g) && l == &limit)
                        }
                    };
                    if better {
                        first = Some((f, limit));
                    }
                }
            }
        }
        if mask != 0 {
            return Ok(mask);
        }
        let (f, limit) = first.unwrap_or((usize::MAX, QuotaLimit::NoFlavour));
        Err(Box::new(self.why(tenant, f, amount, limit)))
    }

    fn nominal(&self, tenant: &TenantId, f: usize) -> u64 {
        self.tenant_member.get(tenant).map_or(0, |t| self.members[*t as usize].nominal[f])
    }

    /// The numbers behind a refusal.
    pub(crate) fn why(&self, tenant: &TenantId, f: usize, amount: u64, limit: QuotaLimit) -> QuotaWhy {
        let m = self.tenant_member.get(tenant).map(|t| &self.members[*t as usize]);
        let get = |v: Option<u64>| GpuMilliTotal(v.unwrap_or(0));
        let used = m.and_then(|m| m.used.get(f).copied());
        let nominal = m.and_then(|m| m.nominal.get(f).copied());
        let may_borrow = m
            .and_then(|m| m.borrow.get(f).copied())
            .map(|b| b.map(|b| get(Some((nominal.unwrap_or(0) + b).saturating_sub(used.unwrap_or(0))))));
        QuotaWhy {
            tenant: tenant.0.clone(),
            flavour: self.spec.flavours.get(f).map_or_else(|| "any".to_string(), |s| s.name.clone()),
            used: get(used),
            nominal: get(nominal),
            may_borrow: may_borrow.unwrap_or(None),
            asked: get(Some(amount)),
            limit,
        }
    }

    /// Adds (`sign > 0`) or removes usage of `tenant` in flavour `f`.
    pub(crate) fn charge(&mut self, tenant: &TenantId, f: usize, amount: u64, add: bool) {
        let Some(&t) = self.tenant_member.get(tenant) else { return };
        let m = &mut self.members[t as usize];
        let old = m.claim(f);
        m.used[f] = if add { m.used[f] + amount } else { m.used[f].saturating_sub(amount) };
        let new = m.claim(f);
        if old != new {
            self.propagate(t, f, old, new);
        }
    }

    /// What a tenant uses, its nominal and its borrowing limit in flavour `f`.
    pub(crate) fn account(&self, tenant: &TenantId, f: usize) -> Option<(u64, u64, Option<u64>)> {
        let m = &self.members[*self.tenant_member.get(tenant)? as usize];
        Some((m.used[f], m.nominal[f], m.borrow[f]))
    }

    /// Whether `tenant` uses more than its nominal quota in flavour `f` (a borrower that
    /// a reclaim may preempt).
    pub(crate) fn borrowing(&self, tenant: &TenantId, f: usize) -> bool {
        self.account(tenant, f).is_some_and(|(u, n, _)| u > n)
    }

    /// The root of a tenant's tree (a member index), `None` when ungoverned.
    pub(crate) fn root(&self, tenant: &TenantId) -> Option<u32> {
        let mut at = *self.tenant_member.get(tenant)?;
        while let Some(p) = self.members[at as usize].parent {
            at = p;
        }
        Some(at)
    }

    /// Power room left for `tenant` per site index (`None`: no power quota).
    pub(crate) fn power_room(&self, tenant: &TenantId) -> Option<Vec<u64>> {
        let limits = self.power_limit.get(tenant)?;
        if limits.iter().all(|l| *l == u64::MAX) {
            return None;
        }
        let used = &self.power_used[tenant];
        Some(limits.iter().zip(used).map(|(l, u)| l.saturating_sub(*u)).collect())
    }

    /// Per site index: reserved power `tenant` holds and its limit (`u64::MAX`: none).
    pub(crate) fn power_use(&self, tenant: &TenantId) -> Vec<(u64, u64)> {
        match (self.power_used.get(tenant), self.power_limit.get(tenant)) {
            (Some(u), Some(l)) => u.iter().copied().zip(l.iter().copied()).collect(),
            _ => Vec::new(),
        }
    }

    /// Adds or removes reserved power of `tenant` at site index `site`.
    pub(crate) fn charge_power(&mut self, tenant: &TenantId, site: usize, watts: u64, add: bool) {
        if let Some(used) = self.power_used.get_mut(tenant).and_then(|u| u.get_mut(site)) {
            *used = if add { *used + watts } else { used.saturating_sub(watts) };
        }
    }

    /// The flavours where `amount` more stays within the tenant's nominal quota.
    pub(crate) fn nominal_mask(&self, tenant: &TenantId, amount: u64) -> FlavourMask {
        let Some(t) = self.tenant_member.get(tenant) else { return 0 };
        let m = &self.members[*t as usize];
        (0..self.flavours()).filter(|f| m.used[*f] + amount <= m.nominal[*f]).fold(0, |acc, f| acc | (1 << f))
    }

    /// The fair-share weight of a tenant (1 when ungoverned).
    pub(crate) fn weight(&self, tenant: &TenantId) -> u32 {
        self.spec.tenants.get(tenant).map_or(1, |q| q.weight.max(1))
    }

    /// A tenant's nominal over every flavour.
    pub(crate) fn nominal_total(&self, tenant: &TenantId) -> u64 {
        self.tenant_member.get(tenant).map_or(0, |t| self.members[*t as usize].nominal.iter().sum())
    }

    /// Checks that every cohort's sum matches the claims below it and that no limit is
    /// exceeded (for tests; linear in the tree).
    pub(crate) fn audit(&self) -> Result<(), String> {
        fn sum_of(book: &QuotaBook, c: usize, f: usize) -> u64 {
            book.members
                .iter()
                .enumerate()
                .filter(|(_, m)| m.parent == Some(c as u32))
                .map(|(i, m)| if m.cohort { sum_of(book, i, f).max(m.guaranteed[f]) } else { m.claim(f) })
                .sum()
        }
        for f in 0..self.flavours() {
            for (i, m) in self.members.iter().enumerate() {
                if m.cohort && sum_of(self, i, f) != m.used[f] {
                    return Err(format!("cohort {} flavour {f}: recorded {}", m.name, m.used[f]));
                }
                if m.parent.is_none() && m.cohort && m.used[f] > m.nominal[f] {
                    return Err(format!(
                        "cohort {} flavour {f}: uses {} of {}",
                        m.name, m.used[f], m.nominal[f]
                    ));
                }
                if let Some(b) = m.borrow[f]
                    && m.used[f] > m.nominal[f] + b
                {
                    return Err(format!(
                        "{} flavour {f}: uses {} over {} + {b}",
                        m.name, m.used[f], m.nominal[f]
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fq(nominal: u32, borrow: Option<u32>, lend: Option<u32>) -> FlavourQuota {
        FlavourQuota {
            nominal: GpuMilliTotal::whole(u64::from(nominal)),
            borrowing_limit: borrow.map(|b| GpuMilliTotal::whole(u64::from(b))),
            lending_limit: lend.map(|l| GpuMilliTotal::whole(u64::from(l))),
        }
    }

    fn book(tenants: &[(&str, Option<&str>, FlavourQuota)], cohorts: &[(&str, Option<&str>)]) -> QuotaBook {
        let spec = Quotas {
            flavours: vec![FlavourSpec {
                name: "h100".into(),
                models: vec![],
                sites: vec![],
                regions: vec![],
            }],
            cohorts: cohorts
                .iter()
                .map(|(c, p)| {
                    ((*c).to_string(), CohortSpec { parent: p.map(String::from), flavours: BTreeMap::new() })
                })
                .collect(),
            tenants: tenants
                .iter()
                .map(|(t, c, q)| {
                    (
                        TenantId((*t).into()),
                        TenantQuota {
                            cohort: c.map(String::from),
                            weight: 1,
                            flavours: [("h100".to_string(), *q)].into(),
                            power: BTreeMap::new(),
                            energy: None,
                        },
                    )
                })
                .collect(),
            fair_share: FairShareConfig::default(),
        };
        spec.validate().expect("valid");
        QuotaBook::new(spec, &[])
    }

    const G: u64 = 1000;

    #[test]
    fn borrowing_lending_and_reclaim() {
        let t = |s: &str| TenantId(s.into());
        let mut b = book(
            &[("a", Some("all"), fq(10, Some(6), None)), ("b", Some("all"), fq(10, None, Some(4)))],
            &[("all", None)],
        );
        // a may use its 10 and borrow up to 4 of b's (b lends at most 4), not 6.
        assert!(b.admits(&t("a"), 0, 14 * G).is_ok());
        assert!(matches!(b.admits(&t("a"), 0, 15 * G), Err(QuotaLimit::NothingToBorrow { .. })));
        assert!(matches!(b.admits(&t("a"), 0, 17 * G), Err(QuotaLimit::Tenant)));
        b.charge(&t("a"), 0, 14 * G, true);
        // b is within its nominal but 4 of it is lent out: refusal says reclaim.
        assert!(b.admits(&t("b"), 0, 6 * G).is_ok());
        assert_eq!(
            b.admits(&t("b"), 0, 7 * G),
            Err(QuotaLimit::NothingToBorrow { cohort: "all".into(), within_nominal: true })
        );
        b.audit().expect("audit");
        b.charge(&t("a"), 0, 4 * G, false);
        assert!(b.admits(&t("b"), 0, 10 * G).is_ok());
        b.audit().expect("audit");
        // Alone, a tenant never borrows.
        let lone = book(&[("c", None, fq(2, None, None))], &[]);
        assert!(lone.admits(&t("c"), 0, 2 * G).is_ok());
        assert_eq!(lone.admits(&t("c"), 0, 3 * G), Err(QuotaLimit::Tenant));
        // Ungoverned tenants are not limited.
        assert!(lone.admits(&t("zed"), 0, 1_000_000 * G).is_ok());
    }

    #[test]
    fn nested_cohorts_share_through_the_root() {
        let t = |s: &str| TenantId(s.into());
        let mut b = book(
            &[("a", Some("left"), fq(4, None, None)), ("c", Some("right"), fq(4, None, None))],
            &[("root", None), ("left", Some("root")), ("right", Some("root"))],
        );
        assert!(b.admits(&t("a"), 0, 8 * G).is_ok());
        assert!(b.admits(&t("a"), 0, 9 * G).is_err());
        b.charge(&t("a"), 0, 6 * G, true);
        assert!(b.admits(&t("c"), 0, 2 * G).is_ok());
        assert!(matches!(
            b.admits(&t("c"), 0, 3 * G),
            Err(QuotaLimit::NothingToBorrow { within_nominal: true, .. })
        ));
        b.audit().expect("audit");
        let why = b.why(
            &t("c"),
            0,
            3 * G,
            QuotaLimit::NothingToBorrow { cohort: "root".into(), within_nominal: true },
        );
        assert_eq!(
            why.to_string(),
            "tenant c uses 0 of its 4 h100 nominal quota GPUs and may borrow without limit; it is within its nominal \
             quota but cohort root has lent it out: borrowers will be reclaimed"
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let mut q = Quotas::default();
        q.tenants.insert(
            TenantId("a".into()),
            TenantQuota { cohort: Some("x".into()), weight: 1, ..TenantQuota::default() },
        );
        assert_eq!(q.validate().unwrap_err().0, "tenant `a`: cohort `x` is not defined");
        q.cohorts.insert("x".into(), CohortSpec { parent: Some("y".into()), ..CohortSpec::default() });
        q.cohorts.insert("y".into(), CohortSpec { parent: Some("x".into()), ..CohortSpec::default() });
        assert!(q.validate().unwrap_err().0.contains("its own ancestor"));
    }
}
