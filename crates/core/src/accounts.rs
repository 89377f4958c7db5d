//! The scheduler's accounts: quotas and fair share.
//!
//! Every placed task is charged to its tenant's quota (per flavour and, for power, per
//! site) and to its fair-share use; a release refunds exactly what was charged. The
//! quota book answers admission (which flavours a workload may use, and why not), and
//! the reports (`tenant_quota`, `quota_usage`) read it. The event loop is in
//! `scheduler.rs`, the periodic pass in `backfill.rs`.

use gigawatt_units::{GpuMilli, GpuMilliTotal, Watts};
use serde::Serialize;

use crate::queue::Slot;
use crate::quota::{QuotaBook, QuotaError, QuotaWhy, Quotas};
use crate::scheduler::{Scheduler, TenantUse, rank_in};
use crate::state::{Admit, NO_FLAVOUR, NodeIdx, TaskAlloc};
use crate::workload::{TenantId, WorkloadId};

impl Scheduler {
    /// Puts in force a new quota configuration. Usage is recounted from what runs now;
    /// nothing running is stopped (like Kueue, a lowered quota stops admissions until
    /// usage is back under it), and every waiting workload is looked at again on the
    /// next event.
    ///
    /// # Errors
    /// [`QuotaError`] when the configuration is inconsistent; nothing changes then.
    pub fn set_quotas(&mut self, mut quotas: Quotas) -> Result<(), QuotaError> {
        quotas.validate()?;
        // Flavours may name a model by an alias of the catalog (`H100`); nodes carry
        // the canonical id (`H100-SXM`).
        for f in &mut quotas.flavours {
            for m in &mut f.models {
                if let Some(spec) = self.catalog.get(m) {
                    m.clone_from(&spec.id);
                }
            }
        }
        // Reservations hold quota in the old book: drop them; the next pass plans again.
        for id in self.reservations.keys().copied().collect::<Vec<_>>() {
            self.unreserve(id);
        }
        let sites: Vec<String> = self.state.sites.iter().map(|s| s.id.clone()).collect();
        self.energy.set_limits(&quotas);
        self.quotas = QuotaBook::new(quotas, &sites);
        let flavours: Vec<u8> = (0..self.state.nodes.len()).map(|i| self.flavour_of(i)).collect();
        for (n, f) in self.state.nodes.iter_mut().zip(flavours) {
            n.flavour = f;
        }
        self.refresh_caps();
        // Recount: every charge again, with the new flavours.
        let caps = self.caps.len();
        let mut usage = std::mem::take(&mut self.usage);
        for (t, u) in usage.iter_mut().enumerate() {
            u.now = vec![0; caps];
            u.decayed.resize(caps, 0.0);
            let id = self.pq.tenants[t].id.clone();
            self.cache_quota(u, &id);
        }
        self.usage = usage;
        let ids: Vec<WorkloadId> = self.workloads.keys().copied().collect();
        for id in ids {
            let Some(e) = self.workloads.get_mut(&id) else { continue };
            e.charges.clear();
            e.power.clear();
            let allocs: Vec<TaskAlloc> = e.tasks.iter().flatten().cloned().collect();
            for a in &allocs {
                self.charge_task(id, a);
            }
        }
        for t in 0..self.pq.tenants.len() as u32 {
            self.refresh_share(t);
        }
        let usage = &self.usage;
        self.pq.wake_all(|t, p| rank_in(usage, t, p));
        for c in &mut self.pq.classes {
            c.retry = true;
        }
        Ok(())
    }

    /// Re-derives every quota account from what runs and what reservations hold, and
    /// checks that no tenant or cohort is over a limit. For tests: linear in what runs.
    ///
    /// # Errors
    /// What is inconsistent or over its limit.
    pub fn audit_quotas(&self) -> Result<(), String> {
        let sites: Vec<String> = self.state.sites.iter().map(|s| s.id.clone()).collect();
        let mut fresh = QuotaBook::new(self.quotas.spec.clone(), &sites);
        for e in self.workloads.values() {
            for (f, amount) in e.charges.iter().chain(&e.held) {
                if *f != NO_FLAVOUR {
                    fresh.charge(&e.workload.tenant, *f as usize, *amount, true);
                }
            }
            let placed: u64 = e
                .tasks
                .iter()
                .flatten()
                .map(|t| t.gpus.iter().map(|(_, m)| u64::from(m.0)).sum::<u64>())
                .sum();
            let charged: u64 = e.charges.iter().map(|(_, a)| *a).sum();
            if placed != charged {
                return Err(format!(
                    "{} holds {placed} GPU thousandths but is charged {charged}",
                    e.workload.id
                ));
            }
        }
        fresh.audit()?;
        for t in self.quotas.spec.tenants.keys() {
            for f in 0..self.quotas.flavours() {
                if fresh.account(t, f) != self.quotas.account(t, f) {
                    return Err(format!("tenant {} flavour {f}: books disagree", t.0));
                }
            }
        }
        self.quotas.audit()
    }

    /// The quota configuration in force.
    #[must_use]
    pub fn quotas(&self) -> &Quotas {
        &self.quotas.spec
    }

    /// What a tenant uses, its nominal and its borrowing limit in each flavour, as GPU
    /// thousandths: `(flavour, used, nominal, borrowing limit)`.
    #[must_use]
    pub fn quota_usage(&self, tenant: &TenantId) -> Vec<(String, u64, u64, Option<u64>)> {
        self.quotas
            .spec
            .flavours
            .iter()
            .enumerate()
            .filter_map(|(f, spec)| {
                let (u, n, b) = self.quotas.account(tenant, f)?;
                Some((spec.name.clone(), u, n, b))
            })
            .collect()
    }

    /// A tenant's quotas against its use, for reports (`gigawatt quota`): per flavour
    /// and per site with a power quota, its fair share, and how much of its work waits.
    #[must_use]
    pub fn tenant_quota(&self, tenant: &TenantId) -> TenantQuotaUse {
        let spec = self.quotas.spec.tenants.get(tenant);
        let flavours = self
            .quotas
            .spec
            .flavours
            .iter()
            .enumerate()
            .filter_map(|(f, fs)| {
                let (used, nominal, borrowing_limit) = self.quotas.account(tenant, f)?;
                let lending_limit = spec.and_then(|q| q.flavours.get(&fs.name)).and_then(|q| q.lending_limit);
                Some(FlavourUse {
                    flavour: fs.name.clone(),
                    used: GpuMilliTotal(used),
                    nominal: GpuMilliTotal(nominal),
                    borrowing_limit: borrowing_limit.map(GpuMilliTotal),
                    lending_limit,
                })
            })
            .collect();
        let power = self
            .quotas
            .power_use(tenant)
            .into_iter()
            .enumerate()
            .filter(|(_, (_, limit))| *limit != u64::MAX)
            .map(|(i, (used, limit))| (self.state.sites[i].id.clone(), Watts(used), Watts(limit)))
            .collect();
        let t = self.pq.find_tenant(tenant);
        let share = t.and_then(|t| self.usage.get(t as usize)).map_or(0.0, |u| u.share as f64 / 1e12);
        let pending = t.map_or(0, |t| self.pq.tenants[t as usize].len);
        TenantQuotaUse {
            governed: spec.is_some(),
            cohort: spec.and_then(|q| q.cohort.clone()),
            weight: spec.map_or(1, |q| q.weight),
            flavours,
            power,
            share,
            pending,
            energy: self.energy_use(tenant),
        }
    }

    /// A tenant's waiting workloads in the order they would go: by priority, then age
    /// (at most `limit`, taken across its classes).
    #[must_use]
    pub fn tenant_pending(&self, tenant: &TenantId, limit: usize) -> Vec<WorkloadId> {
        let Some(t) = self.pq.find_tenant(tenant) else { return Vec::new() };
        let mut slots: Vec<Slot> = Vec::new();
        for set in self.pq.tenants[t as usize].by_class.values() {
            slots.extend(set.iter().take(limit).copied());
        }
        slots.sort_unstable();
        slots.truncate(limit);
        slots.into_iter().map(|s| s.2).collect()
    }

    /// The flavour a node belongs to under the quotas in force.
    pub(crate) fn flavour_of(&self, node: usize) -> u8 {
        let n = &self.state.nodes[node];
        let site = &self.state.sites[n.site as usize];
        let model = n.model.map(|m| self.state.models[m as usize].id.as_str());
        self.quotas
            .spec
            .flavours
            .iter()
            .position(|f| Quotas::matches(f, model, &site.id, &site.region))
            .map_or(NO_FLAVOUR, |f| f as u8)
    }

    /// Capacity per fair-share resource: GPU thousandths per flavour (one resource when
    /// there are no flavours), then the sites' power budgets.
    pub(crate) fn refresh_caps(&mut self) {
        let nf = self.quotas.flavours().max(1);
        let mut caps = vec![0u64; nf + 1];
        for n in &self.state.nodes {
            let r = if self.quotas.flavours() == 0 { 0 } else { n.flavour as usize };
            if let Some(c) = caps.get_mut(r).filter(|_| r < nf) {
                *c += u64::from(n.gpu_capacity().0);
            }
        }
        caps[nf] = self.state.sites.iter().map(|s| s.budget.0).sum();
        self.caps = caps;
    }

    /// The fair-share resource of a flavour.
    pub(crate) fn resource_of(&self, flavour: u8) -> Option<usize> {
        if self.quotas.flavours() == 0 {
            Some(0)
        } else if flavour == NO_FLAVOUR {
            None
        } else {
            Some(flavour as usize)
        }
    }

    /// The queue index of a tenant, with its fair-share account.
    pub(crate) fn tenant_index(&mut self, id: &TenantId) -> u32 {
        let t = self.pq.tenant_of(id);
        while self.usage.len() <= t as usize {
            let mut u = TenantUse {
                now: vec![0; self.caps.len()],
                decayed: vec![0.0; self.caps.len()],
                ..TenantUse::default()
            };
            self.cache_quota(&mut u, id);
            u.over = u.governed && u.nominal == 0;
            self.usage.push(u);
        }
        t
    }

    /// Copies what fair share reads of a tenant's quota.
    pub(crate) fn cache_quota(&self, u: &mut TenantUse, id: &TenantId) {
        u.weight = f64::from(self.quotas.weight(id));
        u.governed = self.quotas.governs(id);
        u.nominal = self.quotas.nominal_total(id);
    }

    /// Charges one placed task to its tenant's quota and fair-share accounts.
    pub(crate) fn charge_task(&mut self, id: WorkloadId, alloc: &TaskAlloc) {
        let Some(e) = self.workloads.get_mut(&id) else { return };
        let node = &self.state.nodes[alloc.node.0 as usize];
        let milli: u64 = alloc.gpus.iter().map(|(_, m)| u64::from(m.0)).sum();
        let gpus = alloc.gpus.len() as u32;
        let share = alloc.gpus.first().map_or(GpuMilli::ZERO, |(_, m)| *m);
        let watts = node.power_charge(gpus, share, alloc.cpu).0;
        let (flavour, site) = (node.flavour, node.site);
        e.charges.push((flavour, milli));
        e.power.push((site, watts));
        let tenant = e.workload.tenant.clone();
        let t = e.tenant as usize;
        if flavour != NO_FLAVOUR {
            self.quotas.charge(&tenant, flavour as usize, milli, true);
        }
        self.quotas.charge_power(&tenant, site as usize, watts, true);
        let r = self.resource_of(flavour);
        let power_r = self.caps.len() - 1;
        if let Some(u) = self.usage.get_mut(t) {
            if let Some(r) = r {
                u.now[r] += milli;
            }
            u.now[power_r] += watts;
        }
    }

    /// Recomputes a tenant's weighted dominant share and ranks it again in its classes.
    pub(crate) fn refresh_share(&mut self, t: u32) {
        let w = self.quotas.spec.fair_share.history_weight.clamp(0.0, 1.0);
        let Some(u) = self.usage.get_mut(t as usize) else { return };
        let (weight, governed, nominal) = (u.weight, u.governed, u.nominal);
        let mut dominant = 0.0f64;
        for (r, cap) in self.caps.iter().enumerate() {
            let eff = (1.0 - w) * u.now[r] as f64 + w * u.decayed[r];
            dominant = dominant.max(eff / (*cap).max(1) as f64);
        }
        u.share = if self.config.fair_share { (dominant / weight * 1e12) as u64 } else { 0 };
        let gpu_now: u64 = u.now[..self.caps.len() - 1].iter().sum();
        u.over = governed && gpu_now >= nominal;
        let usage = &self.usage;
        self.pq.rerank(t, |p| rank_in(usage, t, p));
    }

    /// What quota and reservations allow a workload now: the flavours where its
    /// remaining tasks fit its tenant's quota, its power room, and the reservations it
    /// may use (its own) or backfill into (those starting after its time limit ends).
    pub(crate) fn admission(&self, id: WorkloadId) -> Result<Admit, Box<QuotaWhy>> {
        let Some(e) = self.workloads.get(&id) else { return Ok(Admit::default()) };
        let remaining = e.workload.shape.tasks() - e.placed();
        let mut admit = Admit {
            flavours: None,
            power_room: None,
            energy_room: None,
            tasks: remaining,
            owner: Some(id),
            ends_by: e.workload.time_limit.map(|l| self.now + l),
        };
        let tenant = &e.workload.tenant;
        // A reservation holds its quota already.
        if self.quotas.governs(tenant) && !self.reservations.contains_key(&id) {
            if self.quotas.flavours() > 0 {
                let amount = u64::from(e.need.gpu_total().0) * u64::from(remaining);
                admit.flavours = Some(self.quotas.mask(tenant, amount, u64::MAX)?);
            }
            admit.power_room = self.quotas.power_room(tenant);
        }
        // Energy is never held by a reservation: it is committed when the work starts.
        admit.energy_room = self.energy_room(id)?;
        Ok(admit)
    }

    /// Holds quota for a gang's reservation: one task per reserved node, in the node's
    /// flavour.
    pub(crate) fn hold_quota(&mut self, id: WorkloadId, nodes: &[NodeIdx]) {
        let Some(e) = self.workloads.get(&id) else { return };
        let per_task = u64::from(e.need.gpu_total().0);
        let tenant = e.workload.tenant.clone();
        let mut held: Vec<(u8, u64)> = Vec::new();
        for n in nodes {
            let f = self.state.nodes[n.0 as usize].flavour;
            if f == NO_FLAVOUR {
                continue;
            }
            match held.iter_mut().find(|(g, _)| *g == f) {
                Some((_, a)) => *a += per_task,
                None => held.push((f, per_task)),
            }
        }
        for (f, amount) in &held {
            self.quotas.charge(&tenant, *f as usize, *amount, true);
        }
        if let Some(e) = self.workloads.get_mut(&id) {
            e.held = held;
        }
    }
}

/// A tenant's quotas against its use (see [`Scheduler::tenant_quota`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantQuotaUse {
    /// Whether it has a quota entry at all (a tenant without one is not limited).
    pub governed: bool,
    /// The cohort it shares unused quota with.
    pub cohort: Option<String>,
    /// Its fair-share weight.
    pub weight: u32,
    /// Per flavour: use, nominal and limits.
    pub flavours: Vec<FlavourUse>,
    /// Per site with a power quota: reserved power held and the limit.
    pub power: Vec<(String, Watts, Watts)>,
    /// Its weighted dominant share (decayed past use mixed with current use, over the
    /// fleet's capacity, divided by its weight); lower goes first among borrowers.
    pub share: f64,
    /// Its workloads waiting.
    pub pending: usize,
    /// Its energy quota for the billing period against what it committed, if it has one.
    pub energy: Option<crate::energy::EnergyUse>,
}

/// One flavour of a tenant's quota, against its use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlavourUse {
    /// The flavour.
    pub flavour: String,
    /// What it holds now.
    pub used: GpuMilliTotal,
    /// Its nominal (guaranteed) quota.
    pub nominal: GpuMilliTotal,
    /// How far above nominal it may go (`None`: as far as its cohort lends).
    pub borrowing_limit: Option<GpuMilliTotal>,
    /// How much of its unused nominal others may borrow (`None`: all of it).
    pub lending_limit: Option<GpuMilliTotal>,
}
