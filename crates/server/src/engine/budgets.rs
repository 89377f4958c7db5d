//! Budgets that change: grid phases on their dates, curtailments, budgets set by hand.
//!
//! A site's IT budget at an instant is its grid phase (or the budget an operator set by
//! hand, which replaces the phases) divided by its PUE, lowered by every curtailment in
//! force. The budget the core holds is the lowest one from now until `budget_lead` ahead:
//! a cut is met (work shed, GPUs capped) **before** it starts, a rise is taken when it
//! comes. The writer applies the schedule with every batch and wakes up at the next
//! instant it changes, so a phase that begins on its date or a curtailment that starts
//! while the server runs takes effect on time, and each change is a `budget-changed`
//! record saying what caused it.

use gigawatt_api::rfc3339;
use gigawatt_core::{Event, PriorityClass};
use gigawatt_fleet::{Pue, Site};
use gigawatt_store::LogEvent;
use gigawatt_units::Watts;

use super::Engine;
use crate::error::EngineError;

/// The longest a curtailment may last: demand-response events last hours; a month is a
/// contract, not a curtailment.
const MAX_CURTAILMENT_MS: i64 = 31 * 24 * 3600 * 1000;

/// How far in the past a curtailment may start (clock skew between the requester and the
/// control plane); anything earlier is a mistake.
const PAST_SLACK_MS: i64 = 60_000;

/// A curtailment as asked for.
#[derive(Debug, Clone)]
pub struct CurtailmentRequest {
    /// Site id.
    pub site: String,
    /// The most the site may draw from the grid meanwhile, facility side.
    pub to: Watts,
    /// Start (Unix ms).
    pub from_ms: i64,
    /// End (Unix ms).
    pub until_ms: i64,
    /// Why.
    pub reason: String,
}

/// What scheduling a curtailment did.
#[derive(Debug, Clone)]
pub struct CurtailmentOutcome {
    /// Its number.
    pub id: u64,
    /// The site's IT budget while it is in force.
    pub it_budget: Watts,
    /// Work its start would preempt as things stand, in order, with priorities.
    pub would_preempt: Vec<(gigawatt_core::WorkloadId, PriorityClass)>,
    /// The alert, when latency-critical work cannot keep running.
    pub alert: Option<String>,
}

impl Engine {
    /// The IT budget of `site` at `t` and what sets it.
    #[must_use]
    pub fn budget_at(&self, site: &Site, t: i64) -> (Watts, String) {
        let (mut budget, mut cause) = match self.view.budgets.get(&site.id) {
            Some(b) => (*b, "the budget set by hand".to_string()),
            None => {
                let phase = site.grid.iter().rev().find(|p| p.from_timestamp().0 <= t);
                let cause = phase.map_or_else(
                    || "no grid phase has started".to_string(),
                    |p| format!("grid phase of {} MW from {}", p.capacity.0, p.from),
                );
                (site.it_budget_at(gigawatt_units::Timestamp(t)), cause)
            }
        };
        for (id, c) in self.view.curtailments.iter().filter(|(_, c)| c.site == site.id && c.active_at(t)) {
            let it = Pue(site.pue.0).it_share(Watts(c.to_w));
            if it < budget {
                budget = it;
                cause = format!("curtailment {id} to {} ({})", Watts(c.to_w), c.reason);
            }
        }
        (budget, cause)
    }

    /// Instants at which `site`'s budget may change: phase starts, curtailment starts and
    /// ends.
    fn budget_edges<'a>(&'a self, site: &'a Site) -> impl Iterator<Item = i64> + 'a {
        let phases = site.grid.iter().map(|p| p.from_timestamp().0);
        let curtailments = self
            .view
            .curtailments
            .values()
            .filter(move |c| c.site == site.id && !c.cancelled)
            .flat_map(|c| [c.from_ms, c.until_ms]);
        phases.chain(curtailments)
    }

    /// The budget `site` must hold at `now`: the lowest from now until the lead time ahead.
    #[must_use]
    pub fn scheduled_budget(&self, site: &Site, now: i64) -> (Watts, String) {
        let end = now.saturating_add(self.budget_lead_ms);
        let mut best = self.budget_at(site, now);
        for t in self.budget_edges(site).filter(|t| *t > now && *t <= end) {
            let b = self.budget_at(site, t);
            if b.0 < best.0 {
                best = (b.0, format!("{} (from {}, met ahead of time)", b.1, rfc3339(t)));
            }
        }
        best
    }

    /// The next instant after `now` at which a scheduled budget changes, for the
    /// writer's sleep.
    #[must_use]
    pub fn next_budget_change(&self, now: i64) -> Option<i64> {
        let lead = self.budget_lead_ms;
        self.fleet
            .sites
            .iter()
            .flat_map(|s| self.budget_edges(s).flat_map(move |t| [t.saturating_sub(lead), t]))
            .filter(|t| *t > now)
            .min()
    }

    /// Gives the core every site's scheduled budget where it differs from what the core
    /// holds (shedding work over it), with a `budget-changed` record saying why.
    ///
    /// It runs with every batch, so it looks at each site once and copies nothing of the
    /// fleet (a copy of a 200,000-GPU fleet cost 2 ms per batch).
    pub fn apply_budget_schedule(&mut self, now: i64) -> Result<(), EngineError> {
        let due: Vec<(String, Watts, String)> = self
            .fleet
            .sites
            .iter()
            .enumerate()
            .filter_map(|(i, site)| {
                let (budget, cause) = self.scheduled_budget(site, now);
                let held = self.scheduler.state().sites.get(i).map(|s| s.budget);
                (held != Some(budget)).then(|| (site.id.clone(), budget, cause))
            })
            .collect();
        for (site, budget, cause) in due {
            let shed =
                self.scheduler.would_shed(&site, budget).map_err(|e| EngineError::internal(e.to_string()))?;
            self.stage(
                now,
                LogEvent::BudgetChanged { site: site.clone(), budget, by: cause.clone(), scheduled: true },
            )?;
            self.alert_latency_critical(now, &site, budget, &cause, &shed)?;
            self.core(now, Event::BudgetChanged { site, budget })?;
        }
        Ok(())
    }

    /// One `power-alert` per latency-critical workload a budget leaves no room for.
    fn alert_latency_critical(
        &mut self,
        now: i64,
        site: &str,
        budget: Watts,
        cause: &str,
        shed: &[(gigawatt_core::WorkloadId, PriorityClass)],
    ) -> Result<Option<String>, EngineError> {
        let critical: Vec<_> =
            shed.iter().filter(|(_, p)| *p == PriorityClass::LatencyCritical).map(|(w, _)| *w).collect();
        if critical.is_empty() {
            return Ok(None);
        }
        let names: Vec<String> = critical.iter().map(ToString::to_string).collect();
        let message = format!(
            "an IT budget of {budget} at site {site} ({cause}) leaves no room for latency-critical work even \
             with everything else stopped and every GPU at its lowest power limit: {} must stop",
            names.join(", ")
        );
        for w in critical {
            self.stage(
                now,
                LogEvent::PowerAlert { site: site.to_string(), workload: Some(w), message: message.clone() },
            )?;
        }
        Ok(Some(message))
    }

    /// Schedules a curtailment after checking it: it must end in the future, last at most
    /// a month, and leave the site at least its `curtailable_to_mw`. One that leaves no
    /// room for latency-critical work is accepted, with an alert.
    pub fn schedule_curtailment(
        &mut self,
        now: i64,
        req: CurtailmentRequest,
        by: &str,
    ) -> Result<CurtailmentOutcome, EngineError> {
        let site =
            self.fleet.site(&req.site).cloned().ok_or_else(|| EngineError::not_found("site", &req.site))?;
        if req.from_ms < now - PAST_SLACK_MS {
            return Err(EngineError::field(
                "from",
                format!(
                    "{} is in the past (now is {}); give a start from now on, or leave `from` out to start now",
                    rfc3339(req.from_ms),
                    rfc3339(now)
                ),
            ));
        }
        if req.until_ms <= req.from_ms.max(now) {
            return Err(EngineError::field(
                "until",
                format!(
                    "{} is not after the start ({}); give an end in the future",
                    rfc3339(req.until_ms),
                    rfc3339(req.from_ms.max(now))
                ),
            ));
        }
        if req.until_ms - req.from_ms > MAX_CURTAILMENT_MS {
            return Err(EngineError::field("until", "a curtailment lasts at most 31 days"));
        }
        let floor = site.curtailable_to.to_watts();
        if req.to < floor {
            return Err(EngineError::field(
                "to_mw",
                format!(
                    "{} is below the site's minimum of {floor} (`curtailable_to_mw` in the fleet file): site {} \
                     cannot be curtailed further",
                    req.to, site.id
                ),
            ));
        }
        let start = req.from_ms.max(now);
        let (before, _) = self.budget_at(&site, start);
        let it_budget = Pue(site.pue.0).it_share(req.to);
        if it_budget >= before {
            return Err(EngineError::field(
                "to_mw",
                format!(
                    "{} at PUE {} is {it_budget} of IT power, not below the {before} the site has then: it would \
                     curtail nothing",
                    req.to, site.pue.0
                ),
            ));
        }
        let id = self.view.curtailments.keys().next_back().map_or(1, |k| k + 1);
        let shed = self
            .scheduler
            .would_shed(&site.id, it_budget)
            .map_err(|e| EngineError::internal(e.to_string()))?;
        self.stage(
            now,
            LogEvent::CurtailmentScheduled {
                id,
                site: site.id.clone(),
                to_w: req.to.0,
                from_ms: req.from_ms,
                until_ms: req.until_ms,
                reason: req.reason.clone(),
                by: by.to_string(),
            },
        )?;
        let cause = format!("curtailment {id} to {} from {}", req.to, rfc3339(req.from_ms));
        let alert = self.alert_latency_critical(now, &site.id, it_budget, &cause, &shed)?;
        self.apply_budget_schedule(now)?;
        Ok(CurtailmentOutcome { id, it_budget, would_preempt: shed, alert })
    }

    /// Calls a curtailment off; the site's budget comes back at once.
    pub fn cancel_curtailment(&mut self, now: i64, site: &str, id: u64, by: &str) -> Result<(), EngineError> {
        match self.view.curtailments.get(&id) {
            Some(c) if c.site == site && !c.cancelled => {}
            Some(c) if c.site == site => {
                return Err(EngineError::conflict(format!("curtailment {id} was already cancelled")));
            }
            _ => return Err(EngineError::not_found("curtailment", &format!("{site}/{id}"))),
        }
        self.stage(now, LogEvent::CurtailmentCancelled { id, by: by.to_string() })?;
        self.apply_budget_schedule(now)
    }

    /// Sets a site's IT power budget by hand: it replaces the grid phases (curtailments
    /// still lower it); work over it is preempted, lowest priority first.
    pub fn set_budget(
        &mut self,
        now_ms: i64,
        site: &str,
        budget: Watts,
        by: &str,
    ) -> Result<(), EngineError> {
        if self.fleet.site(site).is_none() {
            return Err(EngineError::not_found("site", site));
        }
        self.stage(
            now_ms,
            LogEvent::BudgetChanged { site: site.to_string(), budget, by: by.to_string(), scheduled: false },
        )?;
        // The hand-set budget, or less while a curtailment is in force.
        let held = self.scheduler.state().sites.iter().find(|s| s.id == site).map(|s| s.budget);
        let (scheduled, _) =
            self.fleet.site(site).map(|s| self.scheduled_budget(s, now_ms)).unwrap_or_default();
        let shed =
            self.scheduler.would_shed(site, scheduled).map_err(|e| EngineError::internal(e.to_string()))?;
        self.alert_latency_critical(now_ms, site, scheduled, &format!("set by token {by}"), &shed)?;
        if held != Some(scheduled) {
            self.core(now_ms, Event::BudgetChanged { site: site.to_string(), budget: scheduled })?;
        }
        if scheduled != budget {
            let cause = self.fleet.site(site).map(|s| self.scheduled_budget(s, now_ms).1).unwrap_or_default();
            self.stage(
                now_ms,
                LogEvent::BudgetChanged {
                    site: site.to_string(),
                    budget: scheduled,
                    by: cause,
                    scheduled: true,
                },
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use gigawatt_core::PolicyKind;
    use gigawatt_store::{Record, View};

    use super::*;
    use crate::engine::EngineConfig;

    fn engine(now: i64) -> Engine {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fleets/france.toml");
        let Ok(fleet) = gigawatt_fleet::load(&path) else { panic!("the France fleet loads") };
        let config = EngineConfig {
            fleet,
            policy: PolicyKind::BestFit,
            seed: 1,
            keep_ended_ms: None,
            require_agents: false,
            budget_lead_ms: 60_000,
            pass_interval_ms: crate::engine::DEFAULT_PASS_INTERVAL_MS,
            age_after_s: 86_400,
        };
        let mut view = View::default();
        let record = Record {
            seq: 1,
            at_ms: now,
            tenant: None,
            actor: None,
            event: LogEvent::Initialized { id_key: 7, id_secret: None },
        };
        assert!(view.apply(&record).is_ok());
        match Engine::from_view(view, &config, now) {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        }
    }

    fn ms(date: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(date).map_or(0, |t| t.timestamp_millis())
    }

    #[test]
    fn grid_phases_take_effect_on_their_dates() {
        let now = ms("2027-05-31T23:58:00Z");
        let mut e = engine(now);
        let Some(valence) = e.fleet.site("valence").cloned() else { panic!("valence") };
        let (before, cause) = e.budget_at(&valence, now);
        assert_eq!(before, Watts(6_666_666));
        assert!(cause.contains("8 MW from 2026-01-01"), "{cause}");
        assert_eq!(e.budget_at(&valence, ms("2027-06-01T00:00:00Z")).0, Watts(33_333_333));
        // A rise is taken when it comes, not ahead: the writer wakes at midnight.
        let Some(next) = e.next_budget_change(now) else { panic!("a change ahead") };
        assert_eq!(next, ms("2027-06-01T00:00:00Z") - 60_000, "first the lead-time edge");
        assert_eq!(e.scheduled_budget(&valence, ms("2027-05-31T23:59:30Z")).0, Watts(6_666_666));
        assert!(e.apply_budget_schedule(ms("2027-06-01T00:00:00Z")).is_ok());
        let held = e.scheduler.state().sites.iter().find(|s| s.id == "valence").map(|s| s.budget);
        assert_eq!(held, Some(Watts(33_333_333)));
        let staged = e.take_staged();
        assert!(
            staged.iter().any(|r| matches!(&r.event, LogEvent::BudgetChanged { site, scheduled: true, .. } if site == "valence")),
            "{staged:?}"
        );
    }

    #[test]
    fn a_curtailment_is_held_from_its_lead_time_until_it_ends() {
        let now = ms("2026-12-05T10:00:00Z");
        let mut e = engine(now);
        let req = CurtailmentRequest {
            site: "valence".into(),
            to: Watts(6_000_000),
            from_ms: now + 600_000,
            until_ms: now + 3_600_000,
            reason: "test".into(),
        };
        let Ok(out) = e.schedule_curtailment(now, req, "tok") else { panic!("accepted") };
        assert_eq!(out.it_budget, Watts(5_000_000));
        let Some(valence) = e.fleet.site("valence").cloned() else { panic!("valence") };
        assert_eq!(e.scheduled_budget(&valence, now).0, Watts(6_666_666), "not yet");
        assert_eq!(e.scheduled_budget(&valence, now + 540_000).0, Watts(5_000_000), "a minute ahead");
        assert_eq!(e.scheduled_budget(&valence, now + 3_600_000).0, Watts(6_666_666), "over");
        assert_eq!(e.next_budget_change(now), Some(now + 540_000));
    }
}
