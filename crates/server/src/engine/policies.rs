//! Tenants' residency policies in the control plane: a policy is checked against the
//! fleet, logged as `tenant-policy-set`, and put in force in the core, which evicts the
//! tenant's work that breaks it (each eviction logged with why); the effective policy of
//! each data class is shown with the source of each term.

use gigawatt_api::{ClassPolicy, PolicySpec, TenantPolicy, rfc3339};
use gigawatt_core::{DataClass, EffectivePolicy, TenantId};
use gigawatt_store::LogEvent;

use super::Engine;
use crate::error::EngineError;

impl Engine {
    /// Puts `spec` in force as `tenant`'s residency policy (every list empty lifts it).
    ///
    /// # Errors
    /// An unknown tenant, a malformed entry or a site the fleet does not have, with the
    /// field named; the log being unavailable.
    pub fn set_tenant_policy(
        &mut self,
        now_ms: i64,
        tenant: &str,
        spec: &PolicySpec,
        by: &str,
    ) -> Result<(), EngineError> {
        if !self.view.tenants.contains_key(tenant) {
            return Err(EngineError::not_found("tenant", tenant));
        }
        let rule = spec.to_rule().map_err(EngineError::from)?;
        self.check_sites("sites", &spec.sites)?;
        self.stage(
            now_ms,
            LogEvent::TenantPolicySet { tenant: tenant.to_string(), rule: rule.clone(), by: by.to_string() },
        )?;
        let decisions = self.scheduler.set_tenant_policy(&TenantId(tenant.to_string()), rule, &mut self.rng);
        self.stage_decisions(now_ms, decisions)
    }

    /// Refuses a site the fleet does not have, naming the field (`sites[1]`) and the
    /// sites there are.
    pub(crate) fn check_sites(&self, field: &str, sites: &[String]) -> Result<(), EngineError> {
        for (i, s) in sites.iter().enumerate() {
            if !self.fleet.sites.iter().any(|f| f.id == *s) {
                let known: Vec<&str> = self.fleet.sites.iter().map(|f| f.id.as_str()).collect();
                return Err(EngineError::field(
                    format!("{field}[{i}]"),
                    format!("`{s}` is not a site of the fleet; sites are: {}", known.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// `tenant`'s policy and the effective policy of each data class for it, or `None`
    /// for an unknown tenant.
    #[must_use]
    pub fn tenant_policy(&self, tenant: &str) -> Option<TenantPolicy> {
        let record = self.view.tenants.get(tenant)?;
        let own = self.scheduler.tenant_policy(&TenantId(tenant.to_string()));
        let anywhere = gigawatt_fleet::ResidencyRule::anywhere();
        let classes = DataClass::ALL
            .into_iter()
            .map(|class| {
                let policy = EffectivePolicy::of(&self.fleet.residency, class, own, &anywhere);
                let (mut allowed, mut refused) = (Vec::new(), Vec::new());
                for site in &self.fleet.sites {
                    match policy.why_not(&site.law()) {
                        None => allowed.push(site.id.clone()),
                        Some(why) => refused.push(why),
                    }
                }
                ClassPolicy::of(&policy, allowed, refused)
            })
            .collect();
        let policy = record.policy.as_ref();
        Some(TenantPolicy {
            tenant: tenant.to_string(),
            policy: policy.map(|p| PolicySpec::from_rule(&p.rule)).unwrap_or_default(),
            set_at: policy.map(|p| rfc3339(p.set_at)),
            set_by: policy.map(|p| p.set_by.clone()),
            classes,
        })
    }
}
