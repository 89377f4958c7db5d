//! A synthetic but realistic event log, its Merkle tree, signed checkpoints, and exports
//! written with [`ExportWriter`], shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;

use gigawatt_api::{Role, RunSpec, WorkloadKind, WorkloadState};
use gigawatt_audit::{ExportHeader, ExportWriter, Report};
use gigawatt_core::{
    DataClass, GpuDemand, PlacedWhy, PriorityClass, ScoreTerm, Shape, TaskDemand, TaskPlacement, TaskWhy,
    TenantId, Topology, Workload, WorkloadId,
};
use gigawatt_fleet::{Certification, ResidencyRule, ResidencyRules};
use gigawatt_store::{Actor, LogEvent, PlacedResidency, PolicyLayer, Record, SiteFacts, TaskSite};
use gigawatt_transparency::{Checkpoint, Signer, Tree, Verifier};
use gigawatt_units::{GpuMilli, Mebibytes, MilliCores, Seconds, Watts};

/// The log's origin and key name.
pub const ORIGIN: &str = "test.example/log";

pub fn signer() -> Signer {
    Signer::from_seed(ORIGIN, [7; 32]).unwrap()
}

pub fn keys() -> Vec<Verifier> {
    vec![signer().verifier()]
}

/// Two EU HDS sites and one US site.
pub fn sites() -> Vec<SiteFacts> {
    let site = |id: &str, country: &str, jurisdiction: &str, certs: &[&str]| SiteFacts {
        id: id.into(),
        country: country.into(),
        jurisdiction: jurisdiction.into(),
        certifications: certs.iter().map(|c| (*c).to_string()).collect(),
    };
    vec![
        site("paris", "FR", "EU", &["secnumcloud", "hds", "iso27001"]),
        site("frankfurt", "DE", "EU", &["hds", "c5"]),
        site("ashburn", "US", "US", &["soc2"]),
    ]
}

pub fn law(s: &SiteFacts) -> gigawatt_fleet::SiteLaw {
    gigawatt_fleet::SiteLaw {
        id: s.id.clone(),
        country: gigawatt_fleet::Country(s.country.clone()),
        certifications: s.certifications.iter().map(|c| Certification::parse(c).unwrap()).collect(),
        jurisdiction: s.jurisdiction.clone(),
    }
}

pub fn rule_countries(countries: &[&str]) -> ResidencyRule {
    ResidencyRule {
        countries: Some(countries.iter().map(|c| (*c).to_string()).collect()),
        ..ResidencyRule::anywhere()
    }
}

pub fn rule_sites(sites: &[&str]) -> ResidencyRule {
    ResidencyRule {
        sites: Some(sites.iter().map(|c| (*c).to_string()).collect()),
        ..ResidencyRule::anywhere()
    }
}

/// A log being written, with the state a control plane would hold to write it.
#[derive(Debug, Clone)]
pub struct LogBuilder {
    pub records: Vec<Record>,
    pub at_ms: i64,
    pub sites: Vec<SiteFacts>,
    pub rules: ResidencyRules,
    pub policies: BTreeMap<String, ResidencyRule>,
    pub workloads: BTreeMap<u64, Workload>,
    /// The next record's `seq` (records may be taken out of `records` as they are made).
    pub next_seq: u64,
    next_id: u64,
    rng: u64,
}

impl Default for LogBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LogBuilder {
    /// A log holding its `initialized` record and its first `fleet-in-force`.
    pub fn new() -> Self {
        let mut b = LogBuilder {
            records: Vec::new(),
            at_ms: 1_796_685_756_635,
            sites: sites(),
            rules: ResidencyRules::default(),
            policies: BTreeMap::new(),
            workloads: BTreeMap::new(),
            next_seq: 1,
            next_id: 3_785_663_462_305_167,
            rng: 0x9E37_79B9_7F4A_7C15,
        };
        b.push(
            None,
            None,
            LogEvent::Initialized { id_key: 722_817_123_139_405, id_secret: Some("13".repeat(32)) },
        );
        b.fleet_in_force();
        b
    }

    /// A deterministic pseudo-random number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    pub fn actor(tenant: Option<&str>) -> Actor {
        Actor {
            token_id: format!("tok-{}", tenant.unwrap_or("admin")),
            principal: tenant.map_or("ops".into(), |t| format!("{t} ci")),
            role: if tenant.is_some() { Role::Tenant } else { Role::Admin },
            tenant: tenant.map(str::to_string),
            node: None,
            source: Some("203.0.113.7:51234".into()),
        }
    }

    /// The node agent that reports a task's start and end.
    pub fn agent(node: &str) -> Actor {
        Actor {
            token_id: "tok-agent-7f3a".into(),
            principal: format!("agent of {node}"),
            role: Role::Agent,
            tenant: None,
            node: Some(node.into()),
            source: Some("10.0.3.17:40522".into()),
        }
    }

    pub fn push(&mut self, tenant: Option<&str>, actor: Option<Actor>, event: LogEvent) -> u64 {
        self.at_ms += 1 + self.below(40) as i64;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.records.push(Record {
            seq,
            at_ms: self.at_ms,
            tenant: tenant.map(str::to_string),
            actor,
            event,
        });
        seq
    }

    pub fn fleet_in_force(&mut self) {
        let event = LogEvent::FleetInForce { sites: self.sites.clone(), residency: self.rules.clone() };
        self.push(None, None, event);
    }

    pub fn tenant_created(&mut self, tenant: &str) {
        let by = Some("tok-admin".to_string());
        let event = LogEvent::TenantCreated { tenant: tenant.into(), name: tenant.to_uppercase(), by };
        self.push(Some(tenant), Some(Self::actor(None)), event);
    }

    pub fn set_policy(&mut self, tenant: &str, rule: ResidencyRule) {
        self.policies.insert(tenant.into(), rule.clone());
        let event = LogEvent::TenantPolicySet { tenant: tenant.into(), rule, by: format!("tok-{tenant}") };
        self.push(Some(tenant), Some(Self::actor(Some(tenant))), event);
    }

    pub fn submit(&mut self, tenant: &str, class: DataClass, pins: ResidencyRule, tasks: u32) -> WorkloadId {
        self.next_id = self.next_id.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1) % (1 << 52);
        let id = WorkloadId(self.next_id);
        let shape =
            if tasks == 1 { Shape::Single } else { Shape::Gang { tasks, topology: Topology::SameDomain } };
        let workload = Workload {
            id,
            name: format!("job-{}", self.next_seq),
            tenant: TenantId(tenant.into()),
            priority: PriorityClass::Standard,
            data_class: class,
            demand: TaskDemand {
                gpu: GpuDemand::whole(8),
                gpu_models: vec![],
                cpu: MilliCores(1000),
                memory: Mebibytes(4096),
            },
            shape,
            duration: None,
            time_limit: Some(Seconds(7200.0)),
            pins,
        };
        self.workloads.insert(id.0, workload.clone());
        let event = LogEvent::WorkloadSubmitted {
            workload,
            kind: WorkloadKind::Training,
            run: RunSpec {
                command: vec!["python".into(), "train.py".into()],
                env: BTreeMap::new(),
                time_limit_s: Some(7200),
                grace_s: None,
            },
            idempotency_key: None,
            by: format!("tok-{tenant}"),
        };
        self.push(Some(tenant), Some(Self::actor(Some(tenant))), event);
        id
    }

    /// The residency record the control plane writes for placing `w` at `sites`.
    pub fn residency(&self, w: &Workload, sites: &[&str]) -> PlacedResidency {
        let mut policy = vec![PolicyLayer {
            source: "operator".into(),
            rule: self.rules.get(w.data_class.as_str()).unwrap().clone(),
        }];
        if let Some(t) = self.policies.get(&w.tenant.0).filter(|r| !r.is_anywhere()) {
            policy.push(PolicyLayer { source: "tenant".into(), rule: t.clone() });
        }
        if !w.pins.is_anywhere() {
            policy.push(PolicyLayer { source: "job".into(), rule: w.pins.clone() });
        }
        let sites = sites
            .iter()
            .enumerate()
            .map(|(task, id)| TaskSite {
                task: task as u32,
                site: self.sites.iter().find(|s| s.id == *id).unwrap().clone(),
            })
            .collect();
        PlacedResidency { data_class: w.data_class, policy, sites }
    }

    /// The sites `w` may use now, in fleet order.
    pub fn allowed_sites(&self, w: &Workload) -> Vec<String> {
        let r = self.residency(w, &[]);
        self.sites
            .iter()
            .filter(|s| r.policy.iter().all(|l| l.rule.allows(&law(s))))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Places every task of `id` at `sites` (one per task), with `residency` as given.
    pub fn place_with(&mut self, id: WorkloadId, sites: &[&str], residency: Option<PlacedResidency>) -> u64 {
        let w = self.workloads[&id.0].clone();
        let tasks: Vec<TaskPlacement> = sites
            .iter()
            .enumerate()
            .map(|(task, site)| TaskPlacement {
                task: task as u32,
                node: format!("{site}-b01-n{:02}", task + 1),
                gpus: (0..8).map(|g| (g, GpuMilli(1000))).collect(),
                power: Watts(14_300),
            })
            .collect();
        let why = PlacedWhy {
            policy: "fgd".into(),
            tasks: tasks
                .iter()
                .map(|t| TaskWhy {
                    task: t.task,
                    node: t.node.clone(),
                    gpus: t.gpus.clone(),
                    score: 50.0,
                    terms: vec![ScoreTerm { name: "fragmentation_increase_milli_gpu".into(), value: 0.25 }],
                    candidates: 31,
                    power: t.power,
                })
                .collect(),
        };
        let event = LogEvent::WorkloadPlaced { workload: id, tasks, why, residency };
        self.push(Some(&w.tenant.0), Some(Self::actor(Some(&w.tenant.0))), event)
    }

    /// Places every task of `id` on allowed sites, as the control plane would.
    pub fn place(&mut self, id: WorkloadId) -> u64 {
        let w = self.workloads[&id.0].clone();
        let allowed = self.allowed_sites(&w);
        assert!(!allowed.is_empty(), "no site for {w:?}");
        let sites: Vec<String> = (0..w.shape.tasks())
            .map(|_| allowed[self.below(allowed.len() as u64) as usize].clone())
            .collect();
        let sites: Vec<&str> = sites.iter().map(String::as_str).collect();
        let residency = self.residency(&w, &sites);
        self.place_with(id, &sites, Some(residency))
    }

    pub fn started_and_finished(&mut self, id: WorkloadId) {
        self.run(id, &[]);
    }

    /// A task's run: started, `usage` reports (output tokens), exited, finished.
    pub fn run(&mut self, id: WorkloadId, usage: &[u64]) {
        let w = self.workloads[&id.0].clone();
        let t = Some(w.tenant.0.as_str());
        let node = "paris-b01-n01".to_string();
        let e = LogEvent::TaskStarted {
            workload: id,
            task: 0,
            generation: 1,
            node: node.clone(),
            pid: Some(4242),
        };
        self.push(t, Some(Self::agent(&node)), e);
        for &tokens in usage {
            self.push(t, None, LogEvent::UsageReported { workload: id, tokens });
        }
        let e = LogEvent::TaskExited {
            workload: id,
            task: 0,
            generation: 1,
            node,
            exit_code: Some(0),
            signal: None,
            energy_j: 1.5e6,
            message: None,
            site: Some("paris".into()),
            started_ms: Some(self.at_ms - 1000),
            co2_g: Some(12.5),
        };
        self.push(t, Some(Self::agent("paris-b01-n01")), e);
        let e = LogEvent::WorkloadFinished {
            workload: id,
            state: WorkloadState::Succeeded,
            exit_code: Some(0),
            by: None,
        };
        self.push(t, None, e);
    }

    pub fn node_event(&mut self, up: bool) {
        let (node, reason, by) =
            ("ashburn-b02-n07".to_string(), "maintenance".to_string(), Some("tok-ops".into()));
        let e =
            if up { LogEvent::NodeUp { node, reason, by } } else { LogEvent::NodeDown { node, reason, by } };
        self.push(None, Some(Self::actor(None)), e);
    }
}

/// A realistic log of a few hundred records: three tenants (a clinic with health data
/// and a France-only policy, a bank with personal data and an EU policy, a start-up with
/// public data), submissions with and without pins, placements with their residency,
/// task reports, node events, a policy lifted, and a second `fleet-in-force`.
pub fn realistic_log() -> LogBuilder {
    let mut b = LogBuilder::new();
    for t in ["clinic", "bank", "acme"] {
        b.tenant_created(t);
    }
    b.set_policy("clinic", rule_countries(&["FR"]));
    b.set_policy("bank", rule_countries(&["EU"]));
    for round in 0..60 {
        let (tenant, class, pins) = match round % 4 {
            0 => ("clinic", DataClass::Health, ResidencyRule::anywhere()),
            1 => (
                "bank",
                DataClass::Personal,
                if round % 8 == 1 { rule_sites(&["frankfurt"]) } else { ResidencyRule::anywhere() },
            ),
            2 => ("acme", DataClass::Public, ResidencyRule::anywhere()),
            _ => ("clinic", DataClass::Health, rule_sites(&["paris"])),
        };
        let tasks = 1 + (round % 3) as u32;
        let id = b.submit(tenant, class, pins, tasks);
        b.place(id);
        b.started_and_finished(id);
        if round % 5 == 0 {
            b.node_event(round % 10 == 0);
        }
        if round == 30 {
            // The bank lifts its policy; the operator adds a rule; the fleet is re-read.
            b.set_policy("bank", ResidencyRule::anywhere());
            b.rules.personal.jurisdictions = Some(["EU".to_string()].into());
            b.fleet_in_force();
        }
    }
    b
}

/// A log with its tree and leaves.
pub struct Log {
    pub records: Vec<Record>,
    pub leaves: Vec<Vec<u8>>,
    pub tree: Tree,
}

impl Log {
    pub fn new(records: Vec<Record>) -> Self {
        let leaves: Vec<Vec<u8>> = records.iter().map(Record::leaf).collect();
        let mut tree = Tree::with_capacity(leaves.len());
        for l in &leaves {
            tree.push(l);
        }
        Log { records, leaves, tree }
    }

    /// The signed checkpoint of the tree at `size`.
    pub fn checkpoint(&self, signer: &Signer, size: u64) -> String {
        let c = Checkpoint {
            origin: signer.name().into(),
            size,
            root: self.tree.root_at(size).unwrap(),
            extensions: vec![],
        };
        signer.sign(&c.to_text().unwrap()).unwrap()
    }

    /// The export of the records `keep` selects, against checkpoints at `sizes` (the last
    /// is the size every proof is against).
    pub fn export_with(
        &self,
        signer: &Signer,
        sizes: &[u64],
        tenant: Option<&str>,
        keep: impl Fn(&Record) -> bool,
    ) -> Vec<u8> {
        let size = *sizes.last().unwrap();
        let mut w = ExportWriter::new(Vec::new());
        for &s in sizes {
            w.checkpoint(&self.checkpoint(signer, s)).unwrap();
        }
        for pair in sizes.windows(2) {
            w.consistency(pair[0], pair[1], &self.tree.consistency_proof(pair[0], pair[1]).unwrap()).unwrap();
        }
        for (i, r) in self.records.iter().enumerate().take(size as usize) {
            if keep(r) {
                let proof = self.tree.inclusion_proof(i as u64, size).unwrap();
                w.record(i as u64, &self.leaves[i], size, &proof).unwrap();
            }
        }
        let header = ExportHeader {
            origin: signer.name().into(),
            tenant: tenant.map(str::to_string),
            from: None,
            to: Some("2026-12-31T23:59:59.999Z".into()),
            tree_size: size,
        };
        w.finish(signer, &header).unwrap()
    }

    /// Three checkpoints: at a third, two thirds and all of the log.
    pub fn sizes(&self) -> Vec<u64> {
        let n = self.records.len() as u64;
        vec![n / 3, 2 * n / 3, n]
    }

    /// The whole log's export.
    pub fn full_export(&self) -> Vec<u8> {
        self.export_with(&signer(), &self.sizes(), None, |_| true)
    }

    /// A tenant's export: its records and the `fleet-in-force` records.
    pub fn tenant_export(&self, tenant: &str) -> Vec<u8> {
        self.export_with(&signer(), &self.sizes(), Some(tenant), |r| {
            r.tenant.as_deref() == Some(tenant) || matches!(r.event, LogEvent::FleetInForce { .. })
        })
    }
}

pub fn verify(file: &[u8]) -> Report {
    gigawatt_audit::verify(file, &keys())
}

/// The file's lines, each with its newline.
pub fn lines(file: &[u8]) -> Vec<&[u8]> {
    file.split_inclusive(|&b| b == b'\n').collect()
}
