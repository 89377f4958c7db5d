//! Quotas in the control plane: an operator's document is checked against the fleet and
//! the tenants the log knows, logged as `quotas-set`, and put in force in the core; a
//! tenant reads its quota, its use and its place in line.

use std::collections::BTreeSet;

use gigawatt_api::{LinePlace, QuotaConfig, QuotaStatus, rfc3339};
use gigawatt_core::{Quotas, TenantId, WorkloadId};
use gigawatt_store::LogEvent;

use super::Engine;
use crate::error::EngineError;

/// How many waiting workloads a quota report lists.
pub const WAITING_LISTED: usize = 20;

impl Engine {
    /// Checks `config` against the fleet (models, sites, regions) and the tenants, logs
    /// it and puts it in force. Nothing running stops: a lowered quota holds new work
    /// back until use is under it again (as Kueue does).
    pub fn set_quotas(&mut self, now_ms: i64, config: &QuotaConfig, by: &str) -> Result<(), EngineError> {
        let quotas = config.to_core().map_err(|e| EngineError::field(e.field, e.message))?;
        self.check_against_fleet(&quotas)?;
        self.stage(now_ms, LogEvent::QuotasSet { quotas: quotas.clone(), by: by.to_string() })?;
        self.scheduler.set_quotas(quotas).map_err(|e| EngineError::internal(e.0))?;
        // Waiting work may fit now (or no longer): the core looks again.
        let decisions = self.scheduler.retry_all(&mut self.rng);
        self.stage_decisions(now_ms, decisions)
    }

    fn check_against_fleet(&self, q: &Quotas) -> Result<(), EngineError> {
        let sites: BTreeSet<&str> = self.fleet.sites.iter().map(|s| s.id.as_str()).collect();
        let regions: BTreeSet<&str> = self.fleet.sites.iter().map(|s| s.region.as_str()).collect();
        let list = |set: &BTreeSet<&str>| set.iter().copied().collect::<Vec<_>>().join(", ");
        for (i, f) in q.flavours.iter().enumerate() {
            for m in &f.models {
                if self.fleet.catalog.get(m).is_none() {
                    return Err(EngineError::field(
                        format!("flavours[{i}].models"),
                        format!("`{m}` is not a GPU model of the catalog; `gigawatt catalog` lists them"),
                    ));
                }
            }
            for s in &f.sites {
                if !sites.contains(s.as_str()) {
                    return Err(EngineError::field(
                        format!("flavours[{i}].sites"),
                        format!("`{s}` is not a site of the fleet; sites are: {}", list(&sites)),
                    ));
                }
            }
            for r in &f.regions {
                if !regions.contains(r.as_str()) {
                    return Err(EngineError::field(
                        format!("flavours[{i}].regions"),
                        format!("`{r}` is no site's region; regions are: {}", list(&regions)),
                    ));
                }
            }
        }
        for (t, tq) in &q.tenants {
            if !self.view.tenants.contains_key(&t.0) {
                return Err(EngineError::field(
                    format!("tenants.{}", t.0),
                    format!(
                        "there is no tenant `{}`; create it first (`gigawatt tenant create {}`)",
                        t.0, t.0
                    ),
                ));
            }
            for s in tq.power.keys() {
                if !sites.contains(s.as_str()) {
                    return Err(EngineError::field(
                        format!("tenants.{}.power_kw.{s}", t.0),
                        format!("`{s}` is not a site of the fleet; sites are: {}", list(&sites)),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A tenant's quota, use and the first of its waiting workloads with their place in
    /// line.
    #[must_use]
    pub fn quota_status(&self, tenant: &str) -> QuotaStatus {
        let id = TenantId(tenant.to_string());
        let mut status = QuotaStatus::from_core(tenant, &self.scheduler.tenant_quota(&id));
        status.waiting = self
            .scheduler
            .tenant_pending(&id, WAITING_LISTED)
            .into_iter()
            .filter_map(|w| self.line_place(w))
            .collect();
        status
    }

    /// Where a waiting workload stands in line: its tenant's work ahead of it, the
    /// tenants ranked ahead, what quota says, and its expected start and planned nodes
    /// when it holds a reservation. `None` when it does not wait in the core.
    #[must_use]
    pub fn line_place(&self, w: WorkloadId) -> Option<LinePlace> {
        let pos = self.scheduler.queue_position(w)?;
        let record = self.view.workloads.get(&w);
        let name = record.map(|r| r.workload.name.clone()).unwrap_or_default();
        let tenant = record.map(|r| r.workload.tenant.0.clone()).unwrap_or_default();
        let (start, nodes) = match pos.expected_start {
            Some((t, nodes)) => (Some(rfc3339(t.0)), nodes),
            None => (None, Vec::new()),
        };
        let quota = pos.quota.as_ref().map(ToString::to_string);
        let text = LinePlace::sentence(
            &tenant,
            quota.as_deref(),
            pos.ahead_in_tenant,
            pos.tenants_ahead_in_class,
            start.as_deref().map(|s| (s, nodes.as_slice())),
        );
        Some(LinePlace {
            text,
            workload: w.to_string(),
            name,
            ahead_in_tenant: pos.ahead_in_tenant,
            tenants_ahead: pos.tenants_ahead_in_class,
            quota,
            expected_start: start,
            planned_nodes: nodes,
        })
    }
}
