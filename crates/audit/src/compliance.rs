//! Residency compliance: every placement of data put it where the rules in force allowed.
//!
//! Walking the records in order, [`Compliance`] keeps what the log says is in force —
//! the latest `fleet-in-force` (each site's facts and the operator's rule per data
//! class), each tenant's latest `tenant-policy-set`, and each workload's
//! `workload-submitted` (tenant, data class, pins) — and judges each `workload-placed`
//! by it. A placement record carries the site facts and the layered policy the scheduler
//! judged it by; none of that is taken on trust:
//!
//! 1. each task's site facts must equal the facts in force for that site;
//! 2. the `operator` layer must be the fleet's rule for the data class; the `tenant`
//!    layer the tenant's latest policy (present exactly when that policy restricts); the
//!    `job` layer the workload's pins (present exactly when they restrict). A layer the
//!    file cannot judge (the tenant never set a policy in it, the submission is not in
//!    it) is taken as recorded;
//! 3. every task's site must meet every layer.
//!
//! A placement's data class must be the one its workload was submitted with, and each of
//! its tasks must have a recorded site. A placement of classified data (`personal`,
//! `health`, `sensitive`) that carries no residency record fails: nothing would show
//! where the data went. Placements of `public` data are judged the same way.
//!
//! Only the four event types above are decoded, and of them only the members the
//! judgement reads (the leaf scan says where they are); every other record costs nothing
//! here. A placement whose residency record, tasks, workload submission and tenant are
//! byte for byte those of one already found compliant, under the same rules in force, is
//! not decoded and judged again.

use std::collections::BTreeMap;

use gigawatt_core::DataClass;
use gigawatt_fleet::{Certification, Country, ResidencyRule, ResidencyRules, SiteLaw};
use gigawatt_store::{PlacedResidency, SiteFacts};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;

use crate::leaf::{LeafView, Members};

/// Verdicts remembered before the memo is emptied (it is a cache, not a record).
const MAX_VERDICTS: usize = 1 << 16;

/// A site in force: its facts as recorded, and the law they describe (or why they
/// describe none: a certification this verifier does not know).
#[derive(Debug, Clone)]
struct Site {
    facts: SiteFacts,
    law: Result<SiteLaw, String>,
}

/// The submission facts that a placement is judged by.
#[derive(Debug, Clone)]
struct Submission {
    tenant: String,
    data_class: DataClass,
    pins: ResidencyRule,
    /// Names `pins` among the distinct pins seen, for the verdict memo.
    pins_id: u32,
}

/// What the log has put in force so far, and how many placements were judged.
#[derive(Debug, Clone, Default)]
pub(crate) struct Compliance {
    /// The sites of the latest `fleet-in-force`, by id; `None` before the first.
    sites: Option<BTreeMap<String, Site>>,
    /// The operator's rules of the latest `fleet-in-force`.
    rules: Option<ResidencyRules>,
    /// Each tenant's latest policy (an `anywhere` rule once lifted).
    tenant_policy: BTreeMap<String, ResidencyRule>,
    /// Each submitted workload, by id.
    workloads: FxHashMap<u64, Submission>,
    /// Placements judged so far.
    pub(crate) placements_checked: u64,
    /// Bumped by every `fleet-in-force` and `tenant-policy-set`: what a verdict was
    /// reached under.
    generation: u64,
    /// The distinct pins seen, numbered.
    pins_ids: FxHashMap<ResidencyRule, u32>,
    /// Placements found compliant, by everything their verdict depends on (see
    /// [`Compliance::verdict_key`]): a placement like one already judged, under the same
    /// rules, is not decoded and judged again.
    verdicts: FxHashSet<Box<[u8]>>,
    /// The key being built.
    key: Vec<u8>,
}

#[derive(Deserialize)]
struct FleetInForce {
    sites: Vec<SiteFacts>,
    residency: ResidencyRules,
}

#[derive(Deserialize)]
struct TenantPolicySet {
    tenant: String,
    rule: ResidencyRule,
}

#[derive(Deserialize)]
struct WorkloadSubmitted {
    workload: SubmittedWorkload,
}

#[derive(Deserialize)]
struct SubmittedWorkload {
    id: u64,
    tenant: String,
    data_class: DataClass,
    #[serde(default)]
    pins: ResidencyRule,
}

#[derive(Deserialize)]
struct WorkloadPlaced {
    workload: u64,
    tasks: Vec<PlacedTask>,
    #[serde(default)]
    residency: Option<PlacedResidency>,
}

#[derive(Deserialize)]
struct PlacedTask {
    task: u32,
}

fn decode<'a, T: Deserialize<'a>>(kind: &str, json: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(json).map_err(|e| format!("the {kind} record does not decode: {e}"))
}

/// A member of an event, decoded.
fn member<'a, T: Deserialize<'a>>(
    kind: &str,
    members: &Members,
    leaf: &'a [u8],
    key: &str,
) -> Result<T, String> {
    let json = members.get(leaf, key.as_bytes()).ok_or_else(|| format!("the {kind} record has no {key}"))?;
    serde_json::from_slice(json).map_err(|e| format!("the {kind} record's {key} does not decode: {e}"))
}

/// An optional member of an event, decoded.
fn optional<'a, T: Deserialize<'a>>(
    kind: &str,
    members: &Members,
    leaf: &'a [u8],
    key: &str,
) -> Result<Option<T>, String> {
    match members.get(leaf, key.as_bytes()) {
        None => Ok(None),
        Some(json) => serde_json::from_slice(json)
            .map(Some)
            .map_err(|e| format!("the {kind} record's {key} does not decode: {e}")),
    }
}

fn law_of(facts: &SiteFacts) -> Result<SiteLaw, String> {
    let certifications = facts
        .certifications
        .iter()
        .map(|c| {
            Certification::parse(c)
                .ok_or_else(|| format!("site {} holds an unknown certification {c:?}", facts.id))
        })
        .collect::<Result<_, _>>()?;
    Ok(SiteLaw {
        id: facts.id.clone(),
        country: Country(facts.country.clone()),
        certifications,
        jurisdiction: facts.jurisdiction.clone(),
    })
}

impl Compliance {
    /// Takes one record into account: `leaf` is its canonical bytes, `view` where the
    /// scan found its fields. Errors say why the record breaks residency, or why it
    /// cannot be judged. Only the members the judgement needs are decoded.
    pub(crate) fn record(&mut self, leaf: &[u8], view: &LeafView) -> Result<(), String> {
        let (Some(kind), Some(event)) = (view.event_type.clone(), view.event.clone()) else {
            return Ok(());
        };
        let event_json = &leaf[event];
        let (ev, wl) = (&view.event_members, &view.workload_members);
        match &leaf[kind] {
            b"fleet-in-force" => {
                let f: FleetInForce = decode("fleet-in-force", event_json)?;
                let sites = f
                    .sites
                    .into_iter()
                    .map(|facts| (facts.id.clone(), Site { law: law_of(&facts), facts }))
                    .collect();
                self.sites = Some(sites);
                self.rules = Some(f.residency);
                self.generation += 1;
            }
            b"tenant-policy-set" => {
                let p: TenantPolicySet = decode("tenant-policy-set", event_json)?;
                self.tenant_policy.insert(p.tenant, p.rule);
                self.generation += 1;
            }
            b"workload-submitted" => {
                const KIND: &str = "workload-submitted";
                let w = if ev.overflow || wl.overflow {
                    decode::<WorkloadSubmitted>(KIND, event_json)?.workload
                } else {
                    SubmittedWorkload {
                        id: member(KIND, wl, leaf, "id")?,
                        tenant: member(KIND, wl, leaf, "tenant")?,
                        data_class: member(KIND, wl, leaf, "data_class")?,
                        pins: optional(KIND, wl, leaf, "pins")?.unwrap_or_default(),
                    }
                };
                let pins_id = match self.pins_ids.get(&w.pins) {
                    Some(id) => *id,
                    None => {
                        let id = self.pins_ids.len() as u32;
                        self.pins_ids.insert(w.pins.clone(), id);
                        id
                    }
                };
                let submission =
                    Submission { tenant: w.tenant, data_class: w.data_class, pins: w.pins, pins_id };
                self.workloads.insert(w.id, submission);
            }
            b"workload-placed" => {
                const KIND: &str = "workload-placed";
                let tenant = view.tenant.clone().map(|t| &leaf[t]);
                if ev.overflow || view.tasks.overflow {
                    let p = decode::<WorkloadPlaced>(KIND, event_json)?;
                    let tasks: Vec<u32> = p.tasks.iter().map(|t| t.task).collect();
                    return self.placed(p.workload, &tasks, p.residency.as_ref(), tenant);
                }
                let workload: u64 = member(KIND, ev, leaf, "workload")?;
                if ev.get(leaf, b"tasks").is_none() {
                    return Err(format!("the {KIND} record has no tasks"));
                }
                let tasks = view.tasks.as_slice();
                let Some(residency) = ev.get(leaf, b"residency") else {
                    return self.placed(workload, tasks, None, tenant);
                };
                self.verdict_key(workload, tasks, residency, tenant);
                if self.verdicts.contains(&self.key[..]) {
                    self.placements_checked += 1;
                    return Ok(());
                }
                let residency: PlacedResidency = serde_json::from_slice(residency)
                    .map_err(|e| format!("the {KIND} record's residency does not decode: {e}"))?;
                self.placed(workload, tasks, Some(&residency), tenant)?;
                if self.verdicts.len() >= MAX_VERDICTS {
                    self.verdicts.clear();
                }
                self.verdicts.insert(self.key.as_slice().into());
            }
            _ => {}
        }
        Ok(())
    }

    /// Builds in `self.key` everything the verdict on a placement depends on: the rules
    /// in force (their generation), the workload's submission as the log has it (tenant,
    /// data class, pins), the record's tenant, its task numbers, and its residency record
    /// byte for byte.
    fn verdict_key(&mut self, workload: u64, tasks: &[u32], residency: &[u8], tenant: Option<&[u8]>) {
        let key = &mut self.key;
        key.clear();
        key.extend_from_slice(&self.generation.to_le_bytes());
        match self.workloads.get(&workload) {
            Some(s) => {
                key.push(s.data_class as u8);
                key.extend_from_slice(&s.pins_id.to_le_bytes());
                key.extend_from_slice(&(s.tenant.len() as u64).to_le_bytes());
                key.extend_from_slice(s.tenant.as_bytes());
            }
            None => key.push(0xFF),
        }
        let tenant = tenant.unwrap_or_default();
        key.extend_from_slice(&(tenant.len() as u64).to_le_bytes());
        key.extend_from_slice(tenant);
        key.extend_from_slice(&(tasks.len() as u64).to_le_bytes());
        for t in tasks {
            key.extend_from_slice(&t.to_le_bytes());
        }
        key.extend_from_slice(residency);
    }

    /// Judges a placement of `workload`'s `tasks`, recorded with `residency`, by a
    /// record of `tenant` (its JSON string).
    fn placed(
        &mut self,
        workload: u64,
        tasks: &[u32],
        residency: Option<&PlacedResidency>,
        tenant: Option<&[u8]>,
    ) -> Result<(), String> {
        let submission = self.workloads.get(&workload);
        let Some(res) = residency else {
            return match submission.map(|s| s.data_class) {
                Some(class) if class != DataClass::Public => Err(format!(
                    "placement of {class} data without its residency record (workload {workload})"
                )),
                _ => Ok(()),
            };
        };
        let class = res.data_class;
        if let Some(s) = submission
            && s.data_class != class
        {
            return Err(format!(
                "the placement records {class} data, but workload {workload} was submitted with {} data",
                s.data_class
            ));
        }
        let (Some(sites), Some(rules)) = (&self.sites, &self.rules) else {
            return Err("no fleet-in-force before this placement".into());
        };

        // 1. Each task's site, with the facts in force.
        for t in tasks {
            if !res.sites.iter().any(|s| s.task == *t) {
                return Err(format!("task {t} has no site in the residency record"));
            }
        }
        let mut laws: Vec<(u32, &SiteLaw)> = Vec::with_capacity(res.sites.len());
        for ts in &res.sites {
            let Some(site) = sites.get(&ts.site.id) else {
                return Err(format!(
                    "task {} is at site {}, which is not in the fleet in force",
                    ts.task, ts.site.id
                ));
            };
            if site.facts != ts.site {
                return Err(format!(
                    "task {} at site {}: the placement records {}, but the fleet in force says {}",
                    ts.task, ts.site.id, ts.site, site.facts
                ));
            }
            laws.push((ts.task, site.law.as_ref().map_err(Clone::clone)?));
        }

        // 2. The layers, against what the log put in force.
        let layer = |source: &str| res.policy.iter().find(|l| l.source == source).map(|l| &l.rule);
        for (i, l) in res.policy.iter().enumerate() {
            if !matches!(l.source.as_str(), "operator" | "tenant" | "job") {
                return Err(format!("an unknown policy layer {:?}", l.source));
            }
            if res.policy[..i].iter().any(|o| o.source == l.source) {
                return Err(format!("the {} layer appears twice", l.source));
            }
        }
        let operator =
            rules.get(class.as_str()).ok_or_else(|| format!("no operator rule for {class} data"))?;
        match layer("operator") {
            None => return Err(format!("the placement of {class} data records no operator layer")),
            Some(r) if r != operator => {
                return Err(format!(
                    "the operator layer says {r}, but the fleet in force says {operator} for {class} data"
                ));
            }
            Some(_) => {}
        }
        // The workload's tenant: as submitted, else as the record names it.
        let tenant: Option<String> = match submission {
            Some(s) => Some(s.tenant.clone()),
            None => tenant.and_then(|t| serde_json::from_slice(t).ok()),
        };
        if let Some(t) = &tenant
            && let Some(policy) = self.tenant_policy.get(t)
        {
            match layer("tenant") {
                None if !policy.is_anywhere() => {
                    return Err(format!("the placement omits tenant {t}'s policy ({policy})"));
                }
                Some(r) if r != policy => {
                    return Err(format!("the tenant layer says {r}, but tenant {t}'s policy is {policy}"));
                }
                _ => {}
            }
        }
        if let Some(s) = submission {
            match layer("job") {
                None if !s.pins.is_anywhere() => {
                    return Err(format!("the placement omits the workload's pins ({})", s.pins));
                }
                Some(r) if *r != s.pins => {
                    return Err(format!(
                        "the job layer says {r}, but the workload was submitted with {}",
                        s.pins
                    ));
                }
                _ => {}
            }
        }

        // 3. Every site meets every layer.
        for (task, law) in laws {
            for l in &res.policy {
                if let Some(why) = l.rule.why_not(law) {
                    return Err(format!(
                        "task {task} breaks the {} layer for {class} data ({}): {why}",
                        l.source, l.rule
                    ));
                }
            }
        }
        self.placements_checked += 1;
        Ok(())
    }
}
