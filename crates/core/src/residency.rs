//! Data residency: which sites may hold a workload's data.
//!
//! Three layers decide, and each can only take sites away:
//!
//! 1. the **operator's rule** for the workload's data class, from the fleet file
//!    (`[residency.*]`; see [`gigawatt_fleet::residency`] for the documented defaults:
//!    `health` needs HDS in the EU/EEA, `sensitive` SecNumCloud in France under EU
//!    jurisdiction, `personal` the EU/EEA, `public` goes anywhere);
//! 2. its **tenant's policy** (`gigawatt policy set`), which applies to all its data;
//! 3. the workload's own **pins** (the job file's `placement.sites` and
//!    `placement.countries`).
//!
//! Together they are the workload's [`EffectivePolicy`]. The scheduler turns it into a
//! [`SiteMask`] once, when it resolves the workload, and every placement, retry,
//! preemption, backfill and restore reads that mask, so the same rule decides them all.
//!
//! These are hard constraints: the scheduler checks them before any other rule, a
//! restore refuses a placement that breaks them, a policy change evicts work that breaks
//! the new one, and a property test proves no placement ever breaks them.

use std::fmt;

use gigawatt_fleet::{ResidencyRule, ResidencyRules, SiteLaw};
use serde::Serialize;

use crate::DataClass;

/// The most sites a fleet may have: a [`SiteMask`] is one machine word pair.
pub const MAX_SITES: usize = 128;

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

/// Who set a term of an effective policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicySource {
    /// The operator's rule for the data class, from the fleet file.
    Operator,
    /// The tenant's policy.
    Tenant,
    /// The workload's own placement pins.
    Job,
}

impl PolicySource {
    /// The API spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PolicySource::Operator => "operator",
            PolicySource::Tenant => "tenant",
            PolicySource::Job => "job",
        }
    }

    /// In words, for sentences: "operator rule".
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            PolicySource::Operator => "operator rule",
            PolicySource::Tenant => "tenant policy",
            PolicySource::Job => "job placement",
        }
    }
}

/// Where one workload's data may be: every layer's rule at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct EffectivePolicy {
    /// The workload's data class.
    pub class: DataClass,
    /// The layers that restrict, operator first; a layer that allows anywhere is left out
    /// (the operator's always stays, to be named).
    pub layers: Vec<(PolicySource, ResidencyRule)>,
}

impl EffectivePolicy {
    /// The policy of data of `class` under the operator's `rules`, a tenant's policy and
    /// a job's pins.
    #[must_use]
    pub fn of(
        rules: &ResidencyRules,
        class: DataClass,
        tenant: Option<&ResidencyRule>,
        job: &ResidencyRule,
    ) -> EffectivePolicy {
        let mut layers = vec![(PolicySource::Operator, rule(rules, class).clone())];
        if let Some(t) = tenant.filter(|t| !t.is_anywhere()) {
            layers.push((PolicySource::Tenant, t.clone()));
        }
        if !job.is_anywhere() {
            layers.push((PolicySource::Job, job.clone()));
        }
        EffectivePolicy { class, layers }
    }

    /// Whether `site` meets every layer.
    #[must_use]
    pub fn allows(&self, site: &SiteLaw) -> bool {
        self.layers.iter().all(|(_, r)| r.allows(site))
    }

    /// Why `site` may not hold this data, naming the first layer it breaks: "operator
    /// rule for health data (HDS, in EU/EEA): site ashburn is in US, outside EU/EEA". `None` when every layer allows it.
    #[must_use]
    pub fn why_not(&self, site: &SiteLaw) -> Option<String> {
        self.layers.iter().find_map(|(source, r)| {
            r.why_not(site).map(|why| format!("{} for {} data ({r}): {why}", source.label(), self.class))
        })
    }
}

impl fmt::Display for EffectivePolicy {
    /// "HDS, in EU/EEA (operator); in FR (tenant); at paris (job)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.layers.iter().map(|(s, r)| format!("{r} ({})", s.as_str())).collect();
        f.write_str(&parts.join("; "))
    }
}

/// A set of sites by their index in the cluster state (fleet order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SiteMask(pub u128);

impl SiteMask {
    /// No site.
    pub const NONE: SiteMask = SiteMask(0);
    /// Every site.
    pub const ALL: SiteMask = SiteMask(u128::MAX);

    /// Whether site `i` is in the set.
    #[must_use]
    pub fn contains(self, i: u32) -> bool {
        i < 128 && self.0 & (1u128 << i) != 0
    }

    /// Adds site `i`.
    pub fn insert(&mut self, i: u32) {
        if i < 128 {
            self.0 |= 1u128 << i;
        }
    }

    /// Whether no site is in the set.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl crate::Scheduler {
    /// Where `w`'s data may be: the operator's rule for its class, its tenant's policy
    /// and its own pins.
    #[must_use]
    pub fn effective_policy(&self, w: &crate::Workload) -> EffectivePolicy {
        EffectivePolicy::of(&self.residency, w.data_class, self.tenant_rules.get(&w.tenant), &w.pins)
    }

    /// The sites of the cluster state that `policy` allows.
    pub(crate) fn site_mask(&self, policy: &EffectivePolicy) -> SiteMask {
        let mut mask = SiteMask::NONE;
        for (i, s) in self.state.sites.iter().enumerate() {
            if policy.allows(&s.law) {
                mask.insert(i as u32);
            }
        }
        mask
    }

    /// Whether `w` may run at the site of index `site` (fleet order) under its effective
    /// policy.
    #[must_use]
    pub fn may_run_at(&self, w: &crate::Workload, site: usize) -> bool {
        self.state.sites.get(site).is_some_and(|s| self.effective_policy(w).allows(&s.law))
    }

    /// A tenant's residency policy, if it set one.
    #[must_use]
    pub fn tenant_policy(&self, tenant: &crate::TenantId) -> Option<&ResidencyRule> {
        self.tenant_rules.get(tenant)
    }

    /// Puts a tenant's residency policy in force (`anywhere` removes it). It applies to
    /// every decision from now on: the tenant's running work that breaks it is evicted
    /// and requeued ([`crate::PreemptWhy::Residency`]), its waiting work waits under it,
    /// and work that no site may hold any more is rejected, with why. The cost is the
    /// tenant's own work, not all that exists.
    pub fn set_tenant_policy(
        &mut self,
        tenant: &crate::TenantId,
        rule: ResidencyRule,
        rng: &mut crate::CoreRng,
    ) -> Vec<crate::Decision> {
        use crate::explain::PreemptWhy;
        use crate::queue::ClassKey;
        if rule.is_anywhere() {
            self.tenant_rules.remove(tenant);
        } else {
            self.tenant_rules.insert(tenant.clone(), rule);
        }
        let mut out = Vec::new();
        let Some(t) = self.pq.find_tenant(tenant) else { return out };
        let mut ids: std::collections::BTreeSet<crate::WorkloadId> =
            self.by_tenant.get(t as usize).into_iter().flatten().map(|(_, _, id)| *id).collect();
        for set in self.pq.tenants[t as usize].by_class.values() {
            ids.extend(set.iter().map(|s| s.2));
        }
        for id in ids {
            let Some(w) = self.workloads.get(&id).map(|e| e.workload.clone()) else { continue };
            let need = match self.resolve(&w) {
                Ok(need) => need,
                Err(why) => {
                    // No site may hold it any more: stopped if it runs, then rejected.
                    if let Some(site) = self.breaking_site(id, SiteMask::NONE) {
                        let policy = self.effective_policy(&w);
                        let why = policy.why_not(&self.state.sites[site].law).unwrap_or_default();
                        let site = self.state.sites[site].id.clone();
                        out.push(crate::Decision::Preempted {
                            workload: id,
                            why: PreemptWhy::Residency { site, why },
                        });
                    }
                    self.dequeue(id);
                    self.unreserve(id);
                    self.release_all(id);
                    self.workloads.remove(&id);
                    out.push(crate::Decision::Rejected { workload: id, why });
                    continue;
                }
            };
            if let Some(site) = self.breaking_site(id, need.sites) {
                let why = self.effective_policy(&w).why_not(&self.state.sites[site].law).unwrap_or_default();
                let site = self.state.sites[site].id.clone();
                self.unreserve(id);
                self.evict(id, PreemptWhy::Residency { site, why }, &mut out);
            }
            let same = self.workloads.get(&id).is_some_and(|e| e.need.sites == need.sites);
            if !same {
                // Waiting work moves to the class of its new need.
                let was_waiting = self.workloads.get(&id).is_some_and(|e| self.queue.contains(&e.slot()));
                self.dequeue(id);
                self.unreserve(id);
                let class = self.pq.class_of(&ClassKey::of(&need, w.shape), &w.demand.gpu_models);
                if let Some(e) = self.workloads.get_mut(&id) {
                    e.need = need;
                    e.class = class;
                }
                self.pq.classes[class as usize].retry = true;
                if was_waiting {
                    self.enqueue(id);
                }
            }
        }
        self.retry_pending(rng, &mut out);
        out
    }

    /// The index of a site where `id` holds a task outside `allowed`, if any.
    fn breaking_site(&self, id: crate::WorkloadId, allowed: SiteMask) -> Option<usize> {
        let e = self.workloads.get(&id)?;
        e.tasks
            .iter()
            .flatten()
            .map(|a| self.state.nodes[a.node.0 as usize].site)
            .find(|s| !allowed.contains(*s))
            .map(|s| s as usize)
    }
}
