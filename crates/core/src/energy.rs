//! Energy quotas: watt-hours of reserved power per billing period, a calendar month in
//! UTC.
//!
//! A tenant's energy quota is hard, like its GPU and power quotas, so it is charged
//! before the energy is used, as Slurm charges `GrpTRESMins` with its `safe` flag: a
//! workload starts only if its whole run within the period fits what is left.
//!
//! * **At placement** each task commits its reserved power (the watts its power quota
//!   charges) times the time to the end of its time limit or of the period, whichever
//!   comes first. Work without a time limit commits to the end of the period.
//! * **At release** (completion, cancel, preemption, a lost node) the part not yet
//!   used, from now to the committed end, is given back. What stays is what the task
//!   held: reserved power times the time it held it.
//! * **At the period's end** every account starts again from what runs: each running
//!   task commits anew for the new period. A tenant whose running work commits more
//!   than its quota for the new period has its youngest work preempted (lowest
//!   priority first) until the rest fits: a hard limit stays hard. Work that should
//!   run across a month boundary under an energy quota should declare a time limit.
//!
//! Reserved, not measured, energy is charged: it is known at the instant of the
//! decision, the same on every replay of the log, and an upper bound of what the
//! GPUs draw (their power limit caps them). The measured energy is reported beside it.
//!
//! Commitments are kept for every tenant, limited or not, so that a quota set in the
//! middle of a month counts what the tenant already used in it.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use gigawatt_units::{GpuMilliTotal, Timestamp, WattHours};
use rustc_hash::FxHashMap;

use crate::event::Decision;
use crate::explain::PreemptWhy;
use crate::quota::{QuotaLimit, QuotaWhy, Quotas};
use crate::scheduler::Scheduler;
use crate::state::TaskAlloc;
use crate::workload::{PriorityClass, TenantId, WorkloadId};

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// The billing period holding `t`: the calendar month (UTC), as its first instant and the
/// first instant of the next month.
#[must_use]
pub fn billing_month(t: Timestamp) -> (Timestamp, Timestamp) {
    let (y, m, _) = civil_from_days(t.0.div_euclid(DAY_MS));
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (Timestamp(days_from_civil(y, m, 1) * DAY_MS), Timestamp(days_from_civil(ny, nm, 1) * DAY_MS))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm,
/// <https://howardhinnant.github.io/date_algorithms.html>).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (the inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The UTC date of an instant, `2027-01-01`.
#[must_use]
pub(crate) fn utc_date(t: Timestamp) -> String {
    let (y, m, d) = civil_from_days(t.0.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Watt-seconds of `watts` held from `from` to `to` (nothing if `to` is not later),
/// rounded up.
#[must_use]
pub(crate) fn watt_seconds(watts: u64, from: Timestamp, to: Timestamp) -> u64 {
    let ms = u128::try_from(to.0.saturating_sub(from.0)).unwrap_or(0);
    u64::try_from((u128::from(watts) * ms).div_ceil(1000)).unwrap_or(u64::MAX)
}

/// The same, rounded down: what a release gives back never exceeds what was charged.
#[must_use]
pub(crate) fn watt_seconds_floor(watts: u64, from: Timestamp, to: Timestamp) -> u64 {
    let ms = u128::try_from(to.0.saturating_sub(from.0)).unwrap_or(0);
    u64::try_from(u128::from(watts) * ms / 1000).unwrap_or(u64::MAX)
}

/// One task's energy commitment: its reserved watts, and until when they are committed.
pub(crate) type Commitment = (u64, Timestamp);

/// Every tenant's energy committed in the current billing period, and the limits.
#[derive(Debug, Clone, Default)]
pub(crate) struct EnergyBook {
    /// The period in force, once an event set the clock.
    period: Option<(Timestamp, Timestamp)>,
    /// Watt-seconds each limited tenant may commit per period.
    limits: FxHashMap<TenantId, u64>,
    /// Watt-seconds each tenant committed in the period.
    committed: FxHashMap<TenantId, u64>,
}

impl EnergyBook {
    /// Takes the limits of a quota configuration; what was committed stays.
    pub(crate) fn set_limits(&mut self, quotas: &Quotas) {
        self.limits = quotas
            .tenants
            .iter()
            .filter_map(|(t, q)| Some((t.clone(), q.energy?.0.saturating_mul(WattHours::SECONDS))))
            .collect();
    }

    /// The period holding `now`, and whether it is a new one (the accounts must then be
    /// counted again from what runs).
    pub(crate) fn advance(&mut self, now: Timestamp) -> bool {
        match self.period {
            Some((_, end)) if now < end => false,
            Some(_) => {
                self.period = Some(billing_month(now));
                self.committed.clear();
                true
            }
            None => {
                self.period = Some(billing_month(now));
                false
            }
        }
    }

    /// The period in force (the one holding `now` before any event).
    pub(crate) fn period(&self, now: Timestamp) -> (Timestamp, Timestamp) {
        self.period.unwrap_or_else(|| billing_month(now))
    }

    /// Until when a task started at `now` commits its power: the end of its time limit
    /// or of the period, whichever comes first.
    pub(crate) fn until(&self, now: Timestamp, ends: Option<Timestamp>) -> Timestamp {
        let end = self.period(now).1;
        ends.map_or(end, |e| e.min(end))
    }

    /// Watt-seconds `tenant` may still commit this period; `None` when unlimited.
    pub(crate) fn room(&self, tenant: &TenantId) -> Option<u64> {
        let limit = self.limits.get(tenant)?;
        Some(limit.saturating_sub(self.committed(tenant)))
    }

    /// Watt-seconds `tenant` committed this period.
    pub(crate) fn committed(&self, tenant: &TenantId) -> u64 {
        self.committed.get(tenant).copied().unwrap_or(0)
    }

    /// Its limit per period, in watt-seconds.
    pub(crate) fn limit(&self, tenant: &TenantId) -> Option<u64> {
        self.limits.get(tenant).copied()
    }

    /// Commits (`add`) or gives back watt-seconds.
    pub(crate) fn charge(&mut self, tenant: &TenantId, ws: u64, add: bool) {
        if ws == 0 {
            return;
        }
        let c = self.committed.entry(tenant.clone()).or_default();
        *c = if add { c.saturating_add(ws) } else { c.saturating_sub(ws) };
    }
}

impl Scheduler {
    /// Commits a placed task's reserved power until its time limit or the period's end.
    pub(crate) fn charge_energy(&mut self, id: WorkloadId, alloc: &TaskAlloc) {
        let Some(e) = self.workloads.get(&id) else { return };
        let w = task_watts(&self.state, alloc);
        let until = self.energy.until(self.now, e.ends());
        let ws = watt_seconds(w, self.now, until);
        let tenant = e.workload.tenant.clone();
        self.energy.charge(&tenant, ws, true);
        if let Some(e) = self.workloads.get_mut(&id) {
            e.energy.push((w, until));
        }
    }

    /// A new billing period began: every account starts again from what runs, each
    /// task committing anew from the period's start. Tenants whose running work then
    /// commits more than their quota lose their youngest work, lowest priority first,
    /// until the rest fits. Linear in the running work, once a month.
    pub(crate) fn recommit_energy(&mut self, out: &mut Vec<Decision>) {
        let (start, _) = self.energy.period(self.now);
        let mut over: BTreeSet<TenantId> = BTreeSet::new();
        let ids: Vec<WorkloadId> =
            PriorityClass::ALL.iter().flat_map(|p| self.running_of(*p).iter().copied()).collect();
        for id in &ids {
            let Some(e) = self.workloads.get(id) else { continue };
            let until = self.energy.until(start, e.ends());
            let tenant = e.workload.tenant.clone();
            let list: Vec<Commitment> = e.energy.iter().map(|(w, _)| (*w, until)).collect();
            let ws: u64 = list.iter().map(|(w, u)| watt_seconds(*w, start, *u)).sum();
            self.energy.charge(&tenant, ws, true);
            if self.energy.limit(&tenant).is_some_and(|l| self.energy.committed(&tenant) > l) {
                over.insert(tenant);
            }
            if let Some(e) = self.workloads.get_mut(id) {
                e.energy = list;
            }
        }
        for tenant in over {
            // Lowest priority first, youngest first.
            let mut victims: Vec<(PriorityClass, Reverse<u64>, WorkloadId)> = ids
                .iter()
                .filter_map(|id| self.workloads.get(id))
                .filter(|e| e.workload.tenant == tenant)
                .map(|e| (e.workload.priority, Reverse(e.placed_seq), e.workload.id))
                .collect();
            victims.sort_unstable();
            for (_, _, id) in victims {
                let (Some(limit), committed) = (self.energy.limit(&tenant), self.energy.committed(&tenant))
                else {
                    break;
                };
                if committed <= limit {
                    break;
                }
                let why = PreemptWhy::EnergyQuota {
                    tenant: tenant.0.clone(),
                    committed: WattHours::from_watt_seconds_ceil(committed),
                    limit: WattHours(limit / WattHours::SECONDS),
                };
                self.evict(id, why, out);
            }
        }
        // Every account changed: parked work may fit again.
        let usage = &self.usage;
        self.pq.wake_all(|t, p| crate::scheduler::rank_in(usage, t, p));
    }

    /// The energy part of admission: how much `tenant` may still commit, and for how
    /// long a task placed now would commit; a refusal when nothing is left.
    pub(crate) fn energy_room(&self, id: WorkloadId) -> Result<Option<(u64, i64)>, Box<QuotaWhy>> {
        let Some(e) = self.workloads.get(&id) else { return Ok(None) };
        let tenant = &e.workload.tenant;
        let Some(room) = self.energy.room(tenant) else { return Ok(None) };
        let ends = e.workload.time_limit.map(|l| self.now + l);
        let until = self.energy.until(self.now, ends);
        let ms = until.0.saturating_sub(self.now.0);
        if room == 0 {
            return Err(Box::new(self.energy_refusal(tenant)));
        }
        Ok(Some((room, ms)))
    }

    /// Whether the workload would fit some node if its energy quota did not count: then
    /// the energy quota alone holds it back.
    pub(crate) fn energy_only_refuses(&self, id: WorkloadId, need: &crate::state::Need) -> bool {
        if !self.workloads.contains_key(&id) {
            return false;
        }
        let mut free = need.clone();
        free.admit.energy_room = None;
        self.state.nodes.iter().any(|n| self.state.check(n, &free).is_ok())
    }

    /// For reports: the energy refusal, when admission passes (some room is left) but the
    /// room is too small on every node that could take the workload otherwise.
    pub(crate) fn energy_blocks(&self, id: WorkloadId, admit: crate::state::Admit) -> Option<QuotaWhy> {
        admit.energy_room?;
        let e = self.workloads.get(&id)?;
        let mut need = e.need.clone();
        need.admit = admit;
        need.admit.owner = Some(id);
        if self.state.nodes.iter().any(|n| self.state.check(n, &need).is_ok()) {
            return None;
        }
        self.energy_only_refuses(id, &need).then(|| self.energy_refusal(&e.workload.tenant))
    }

    /// Why `tenant`'s energy quota refuses its work.
    pub(crate) fn energy_refusal(&self, tenant: &TenantId) -> QuotaWhy {
        let limit = self.energy.limit(tenant).unwrap_or(0);
        QuotaWhy {
            tenant: tenant.0.clone(),
            flavour: "any".into(),
            used: GpuMilliTotal(0),
            nominal: GpuMilliTotal(0),
            may_borrow: None,
            asked: GpuMilliTotal(0),
            limit: QuotaLimit::Energy {
                committed: WattHours::from_watt_seconds_ceil(self.energy.committed(tenant)),
                limit: WattHours(limit / WattHours::SECONDS),
                period_end: self.energy.period(self.now).1,
            },
        }
    }

    /// A tenant's energy quota against what it committed, when it has one.
    #[must_use]
    pub fn energy_use(&self, tenant: &TenantId) -> Option<EnergyUse> {
        let limit = self.energy.limit(tenant)?;
        let (period_start, period_end) = self.energy.period(self.now);
        Some(EnergyUse {
            committed: WattHours::from_watt_seconds_ceil(self.energy.committed(tenant)),
            limit: WattHours(limit / WattHours::SECONDS),
            period_start,
            period_end,
        })
    }

    /// Puts back when a restored workload's tasks were placed (the log knows it; a
    /// restore counts from the restart otherwise): its time limit and its energy
    /// commitment count from there.
    pub fn restore_started(&mut self, id: WorkloadId, since: Timestamp) {
        let (start, _) = self.energy.period(self.now);
        let Some(e) = self.workloads.get_mut(&id) else { return };
        if e.started.is_none() {
            return;
        }
        e.started = Some(since.min(self.now));
        let ends = e.ends();
        let until = self.energy.until(self.now, ends);
        let from = since.max(start).min(self.now);
        let tenant = e.workload.tenant.clone();
        let (mut old, mut new) = (0u64, 0u64);
        for (w, u) in &mut e.energy {
            old += watt_seconds(*w, self.now, *u);
            new += watt_seconds(*w, from, until);
            *u = until;
        }
        self.energy.charge(&tenant, old, false);
        self.energy.charge(&tenant, new, true);
    }

    /// Adds energy a tenant's ended work used in the current billing period, as the log
    /// counts it, when the control plane rebuilds its state.
    pub fn restore_energy_used(&mut self, tenant: &TenantId, used: WattHours) {
        self.energy.charge(tenant, used.0.saturating_mul(WattHours::SECONDS), true);
    }
}

/// The reserved power a task is charged: what its tenant's power quota counts.
pub(crate) fn task_watts(state: &crate::state::ClusterState, alloc: &TaskAlloc) -> u64 {
    let node = &state.nodes[alloc.node.0 as usize];
    let gpus = alloc.gpus.len() as u32;
    let share = alloc.gpus.first().map_or(gigawatt_units::GpuMilli::ZERO, |(_, m)| *m);
    node.power_charge(gpus, share, alloc.cpu).0
}

/// A tenant's energy quota against its use, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EnergyUse {
    /// Energy committed in the billing period: used so far plus what running work has
    /// reserved until its time limit (or the period's end).
    pub committed: WattHours,
    /// The quota per period.
    pub limit: WattHours,
    /// The period's first instant.
    pub period_start: Timestamp,
    /// The next period's first instant.
    pub period_end: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(y: i64, m: u32, d: u32) -> Timestamp {
        Timestamp(days_from_civil(y, m, d) * DAY_MS)
    }

    #[test]
    fn months_are_calendar_months_in_utc() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2026-12-07 10:00 UTC lies in December; the next period starts on 1 January.
        let t = Timestamp(ts(2026, 12, 7).0 + 10 * 3_600_000);
        assert_eq!(billing_month(t), (ts(2026, 12, 1), ts(2027, 1, 1)));
        // A leap February has 29 days; the last millisecond of a month is still in it.
        let (s, e) = billing_month(ts(2028, 2, 15));
        assert_eq!((e.0 - s.0) / DAY_MS, 29);
        assert_eq!(billing_month(Timestamp(e.0 - 1)).1, e);
        assert_eq!(billing_month(e).0, e);
        // Before the epoch too.
        assert_eq!(billing_month(Timestamp(-1)), (ts(1969, 12, 1), ts(1970, 1, 1)));
        for z in [-800_000, -1, 0, 59, 60, 365, 10_957, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn watt_seconds_round_up_and_never_go_negative() {
        assert_eq!(watt_seconds(1000, Timestamp(0), Timestamp(1)), 1);
        assert_eq!(watt_seconds(700, Timestamp(0), Timestamp(3_600_000)), 700 * 3600);
        assert_eq!(watt_seconds(700, Timestamp(10), Timestamp(0)), 0);
    }
}
