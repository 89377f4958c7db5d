//! The job specification: what a user submits (as a TOML job file through the CLI, or
//! as JSON to `POST /v1/workloads`), and its validation into the core's [`Workload`].
//!
//! The format is documented for users in `docs/job-file.md`.

use std::collections::BTreeMap;

use gigawatt_core::{
    DataClass, GpuDemand, PriorityClass, Shape, TaskDemand, TenantId, Topology, Workload, WorkloadId,
};
use gigawatt_fleet::ResidencyRule;
use gigawatt_units::{GpuMilli, Mebibytes, MilliCores};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;

/// Longest accepted name, command line or environment, so that one request cannot
/// balloon the log.
const MAX_NAME: usize = 128;
const MAX_ARGS: usize = 256;
const MAX_ARG_LEN: usize = 4096;
const MAX_ENV: usize = 256;
/// The largest gang or service accepted (tasks).
pub const MAX_TASKS: u32 = 4096;

/// What the work is, for people and filters. It does not change how it is placed: the
/// shape and priority do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Long-running training, usually a gang.
    Training,
    /// An inference service: replicas placed independently.
    Inference,
    /// Any other batch job.
    Batch,
}

impl WorkloadKind {
    /// The API spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Training => "training",
            WorkloadKind::Inference => "inference",
            WorkloadKind::Batch => "batch",
        }
    }
}

/// What each task needs from one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Whole GPUs per task (0 for a CPU-only task). Default 1.
    #[serde(default = "one")]
    #[schema(maximum = 64)]
    pub gpus: u32,
    /// A share of one GPU in thousandths (1..=1000), instead of whole GPUs; needs
    /// `gpus = 1`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub gpu_milli: Option<u32>,
    /// Allowed GPU models (catalog ids or aliases, see `gigawatt catalog`); empty
    /// means any.
    #[serde(default)]
    pub gpu_models: Vec<String>,
    /// CPU per task in millicores (1000 = one core). Default 1000.
    #[serde(default = "thousand")]
    #[schema(minimum = 1, maximum = 100_000_000)]
    pub cpu_millicores: u64,
    /// Memory per task in MiB. Default 4096.
    #[serde(default = "four_gib")]
    #[schema(minimum = 1, maximum = 4_294_967_296_u64)]
    pub memory_mib: u64,
}

fn one() -> u32 {
    1
}
fn thousand() -> u64 {
    1000
}
fn four_gib() -> u64 {
    4096
}

impl Default for Resources {
    fn default() -> Self {
        Resources { gpus: 1, gpu_milli: None, gpu_models: vec![], cpu_millicores: 1000, memory_mib: 4096 }
    }
}

/// A gang: tasks that start together or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GangSpec {
    /// Number of tasks (ranks), 1..=4096.
    #[schema(minimum = 1, maximum = 4096)]
    pub tasks: u32,
    /// Where they must sit relative to each other: `same-node`, `same-rack`,
    /// `same-domain` or `any`. Default `same-domain`.
    #[serde(default = "same_domain")]
    #[schema(value_type = String, example = "same-domain")]
    pub topology: Topology,
}

fn same_domain() -> Topology {
    Topology::SameDomain
}

/// An inference service: independent replicas, each placed as soon as it fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Number of replicas, 1..=4096.
    #[schema(minimum = 1, maximum = 4096)]
    pub replicas: u32,
}

/// A job that may wait for cleaner electricity: it starts when the carbon intensity of
/// the grid is expected to be lowest, and still ends by its deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeferSpec {
    /// The latest time it must have ended, RFC 3339 (`2026-12-06T06:00:00Z`). Its
    /// `time_limit` is how long it is expected to run.
    pub deadline: String,
}

/// Where a job asks to run: it narrows the operator's rule for its data class and its
/// tenant's policy, never widens them. Both lists together: a site must be in both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementSpec {
    /// Site ids (`gigawatt sites` lists them); empty means any.
    #[serde(default)]
    #[schema(max_items = 128)]
    pub sites: Vec<String>,
    /// ISO 3166-1 alpha-2 country codes, or the groups `EU` and `EEA`; empty means any.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub countries: Vec<String>,
}

impl PlacementSpec {
    /// The pins as a residency rule, after checking their syntax (whether the sites exist
    /// is the control plane's check: it knows the fleet).
    ///
    /// # Errors
    /// A malformed site id or country code, or too many of them, with the field named.
    pub fn to_rule(&self) -> Result<ResidencyRule, FieldError> {
        let mut rule = ResidencyRule::anywhere();
        if self.sites.len() > 128 {
            return Err(FieldError::new("placement.sites", "give at most 128 sites"));
        }
        if self.countries.len() > 64 {
            return Err(FieldError::new("placement.countries", "give at most 64 countries"));
        }
        if !self.sites.is_empty() {
            for (i, site) in self.sites.iter().enumerate() {
                let ok = (1..=64).contains(&site.len())
                    && site
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
                if !ok {
                    return Err(FieldError::new(
                        format!("placement.sites[{i}]"),
                        format!("`{site}` is not a site id: 1..=64 lower-case letters, digits, `-` or `_`"),
                    ));
                }
            }
            rule.sites = Some(self.sites.iter().cloned().collect());
        }
        if !self.countries.is_empty() {
            for (i, c) in self.countries.iter().enumerate() {
                if !gigawatt_fleet::residency::COUNTRY_GROUPS.contains(&c.as_str())
                    && !gigawatt_fleet::is_iso_3166_alpha2(c)
                {
                    return Err(FieldError::new(
                        format!("placement.countries[{i}]"),
                        format!(
                            "`{c}` is not an ISO 3166-1 alpha-2 code (`FR`, `DE`) nor a group (`EU`, `EEA`)"
                        ),
                    ));
                }
            }
            rule.countries = Some(self.countries.iter().cloned().collect());
        }
        Ok(rule)
    }
}

/// A job as a user writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// A name for people: 1..=128 characters, not only blanks, no control characters.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// The tenant it belongs to. A tenant token may omit it (or must give its own);
    /// an admin must give it.
    #[serde(default)]
    pub tenant: Option<String>,
    /// `training`, `inference` or `batch`. Default: `training` for a gang, `inference`
    /// for a service, `batch` otherwise.
    #[serde(default)]
    pub kind: Option<WorkloadKind>,
    /// `best-effort`, `standard` (default) or `latency-critical`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "standard")]
    pub priority: Option<PriorityClass>,
    /// `public` (default), `personal` (GDPR: EU/EEA sites), `health` (HDS-certified
    /// sites) or `sensitive` (SecNumCloud sites in France).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "public")]
    pub data_class: Option<DataClass>,
    /// What each task needs.
    #[serde(default)]
    pub resources: Resources,
    /// Makes this a gang (training across nodes).
    #[serde(default)]
    pub gang: Option<GangSpec>,
    /// Makes this a service (inference replicas).
    #[serde(default)]
    pub service: Option<ServiceSpec>,
    /// The command each task runs (program and arguments), for the node agents.
    #[serde(default)]
    pub command: Vec<String>,
    /// Environment variables for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Wall-clock limit once running, e.g. `"2h"`, `"30m"`, `"90s"`; the workload ends as
    /// `timed-out` when it is reached (Slurm's `--time`). No limit by default.
    #[serde(default)]
    pub time_limit: Option<String>,
    /// Time between SIGTERM and SIGKILL when the job is stopped (preempted, reclaimed,
    /// cancelled, or at its time limit), e.g. `"2m"` for a checkpoint; the control
    /// plane's default (30 s) when absent, at most its `--max-grace`.
    #[serde(default)]
    pub grace: Option<String>,
    /// Carbon-aware deferral: the job may wait for a low-carbon window before its
    /// deadline (needs `time_limit`, and a site with a carbon-intensity series).
    #[serde(default)]
    pub deferrable: Option<DeferSpec>,
    /// Where it may run, narrowing its data class's rule and its tenant's policy:
    /// `placement = { sites = ["paris-nord"], countries = ["FR"] }`.
    #[serde(default)]
    pub placement: Option<PlacementSpec>,
}

/// What the node agents need to run a workload; kept beside the core's [`Workload`] in
/// the log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct RunSpec {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Wall-clock limit once running, in seconds.
    pub time_limit_s: Option<u64>,
    /// Time between SIGTERM and SIGKILL when it is stopped, in seconds (`None`: the
    /// control plane's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_s: Option<u64>,
}

/// A job that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidJob {
    /// The core's view of it.
    pub workload: Workload,
    /// What it is.
    pub kind: WorkloadKind,
    /// How to run it.
    pub run: RunSpec,
}

impl JobSpec {
    /// Parses a TOML job file; errors name the line and column.
    pub fn from_toml(text: &str) -> Result<JobSpec, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks every field and builds the core workload for `tenant` (already resolved
    /// from the token and `self.tenant` by the server).
    pub fn validate(&self, id: WorkloadId, tenant: &str) -> Result<ValidJob, FieldError> {
        let name = self.name.trim();
        if name.is_empty() || self.name.chars().count() > MAX_NAME {
            return Err(FieldError::new("name", format!("give a name of 1..={MAX_NAME} characters")));
        }
        if self.name.chars().any(char::is_control) {
            return Err(FieldError::new("name", "control characters are not allowed in a name"));
        }
        let r = &self.resources;
        let gpu = match r.gpu_milli {
            None => GpuDemand::whole(r.gpus),
            Some(m) if r.gpus == 1 && (1..=1000).contains(&m) => GpuDemand::shared(GpuMilli(m)),
            Some(m) if !(1..=1000).contains(&m) => {
                return Err(FieldError::new(
                    "resources.gpu_milli",
                    format!("{m} is out of range; a share of one GPU is 1..=1000 thousandths"),
                ));
            }
            Some(_) => {
                return Err(FieldError::new(
                    "resources.gpu_milli",
                    format!(
                        "a GPU share needs `gpus = 1` (got {}); ask for whole GPUs or one shared GPU",
                        r.gpus
                    ),
                ));
            }
        };
        if r.gpus > 64 {
            return Err(FieldError::new(
                "resources.gpus",
                format!("{} GPUs per task is more than any node has; use a gang for more", r.gpus),
            ));
        }
        if r.cpu_millicores == 0 || r.cpu_millicores > 100_000_000 {
            return Err(FieldError::new("resources.cpu_millicores", "give 1..=100000000 millicores"));
        }
        if r.memory_mib == 0 || r.memory_mib > 1 << 32 {
            return Err(FieldError::new("resources.memory_mib", "give 1..=4294967296 MiB"));
        }
        if r.gpu_models.len() > 32 || r.gpu_models.iter().any(|m| m.is_empty() || m.len() > 64) {
            return Err(FieldError::new(
                "resources.gpu_models",
                "give up to 32 model names of 1..=64 characters",
            ));
        }
        let shape = match (self.gang, self.service) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new("service", "a workload is a gang or a service, not both"));
            }
            (Some(g), None) => {
                if !(1..=MAX_TASKS).contains(&g.tasks) {
                    return Err(FieldError::new("gang.tasks", format!("give 1..={MAX_TASKS} tasks")));
                }
                Shape::Gang { tasks: g.tasks, topology: g.topology }
            }
            (None, Some(s)) => {
                if !(1..=MAX_TASKS).contains(&s.replicas) {
                    return Err(FieldError::new(
                        "service.replicas",
                        format!("give 1..={MAX_TASKS} replicas"),
                    ));
                }
                Shape::Service { replicas: s.replicas }
            }
            (None, None) => Shape::Single,
        };
        if self.command.len() > MAX_ARGS || self.command.iter().any(|a| a.chars().count() > MAX_ARG_LEN) {
            return Err(FieldError::new(
                "command",
                format!("give at most {MAX_ARGS} arguments of at most {MAX_ARG_LEN} characters"),
            ));
        }
        if self.env.len() > MAX_ENV {
            return Err(FieldError::new("env", format!("give at most {MAX_ENV} variables")));
        }
        for (k, v) in &self.env {
            let ok = !k.is_empty()
                && k.len() <= 256
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !k.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                return Err(FieldError::new(
                    format!("env.{k}"),
                    "a variable name is letters, digits and `_`, not starting with a digit",
                ));
            }
            if v.len() > MAX_ARG_LEN || v.contains('\0') {
                return Err(FieldError::new(
                    format!("env.{k}"),
                    "a value is at most 4096 bytes, with no NUL",
                ));
            }
            if k.starts_with("GIGAWATT_") || k == "CUDA_VISIBLE_DEVICES" {
                return Err(FieldError::new(format!("env.{k}"), "this variable is set by gigawatt itself"));
            }
        }
        let time_limit_s = match &self.time_limit {
            None => None,
            Some(t) => {
                let d = humantime::parse_duration(t).map_err(|e| {
                    FieldError::new(
                        "time_limit",
                        format!("`{t}`: {e}; write a duration such as \"2h\" or \"30m\""),
                    )
                })?;
                let s = d.as_secs();
                if s == 0 || s > 366 * 86_400 {
                    return Err(FieldError::new("time_limit", "give a limit between 1 s and 366 days"));
                }
                Some(s)
            }
        };
        let grace_s = match &self.grace {
            None => None,
            Some(g) => {
                let d = humantime::parse_duration(g).map_err(|e| {
                    FieldError::new(
                        "grace",
                        format!("`{g}`: {e}; write a duration such as \"30s\" or \"2m\""),
                    )
                })?;
                if d.as_secs() > 86_400 {
                    return Err(FieldError::new("grace", "give a grace period of at most 1 day"));
                }
                Some(d.as_secs())
            }
        };
        let kind = self.kind.unwrap_or(match shape {
            Shape::Gang { .. } => WorkloadKind::Training,
            Shape::Service { .. } => WorkloadKind::Inference,
            Shape::Single => WorkloadKind::Batch,
        });
        let workload = Workload {
            id,
            name: name.to_string(),
            tenant: TenantId(tenant.to_string()),
            priority: self.priority.unwrap_or(PriorityClass::Standard),
            data_class: self.data_class.unwrap_or(DataClass::Public),
            demand: TaskDemand {
                gpu,
                gpu_models: r.gpu_models.clone(),
                cpu: MilliCores(r.cpu_millicores),
                memory: Mebibytes(r.memory_mib),
            },
            shape,
            duration: None,
            time_limit: time_limit_s.map(|s| gigawatt_units::Seconds(s as f64)),
            pins: match &self.placement {
                Some(p) => p.to_rule()?,
                None => ResidencyRule::anywhere(),
            },
        };
        let run = RunSpec { command: self.command.clone(), env: self.env.clone(), time_limit_s, grace_s };
        Ok(ValidJob { workload, kind, run })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> JobSpec {
        JobSpec::from_toml(toml_text).expect("parses")
    }

    #[test]
    fn defaults_make_a_one_gpu_batch_job() {
        let j = spec("name = \"x\"").validate(WorkloadId(1), "acme").expect("valid");
        assert_eq!(j.kind, WorkloadKind::Batch);
        assert_eq!(j.workload.demand.gpu, GpuDemand::whole(1));
        assert_eq!(j.workload.priority, PriorityClass::Standard);
    }

    #[test]
    fn a_gang_is_training_and_a_service_is_inference() {
        let g = spec("name = \"g\"\ngang = { tasks = 4 }").validate(WorkloadId(1), "t").expect("valid");
        assert_eq!(g.kind, WorkloadKind::Training);
        assert_eq!(g.workload.shape, Shape::Gang { tasks: 4, topology: Topology::SameDomain });
        let s = spec("name = \"s\"\nservice = { replicas = 3 }").validate(WorkloadId(1), "t").expect("valid");
        assert_eq!(s.kind, WorkloadKind::Inference);
    }

    #[test]
    fn bad_fields_are_named() {
        let e = spec("name = \"x\"\n[resources]\ngpus = 2\ngpu_milli = 500")
            .validate(WorkloadId(1), "t")
            .expect_err("share of several GPUs");
        assert_eq!(e.field, "resources.gpu_milli");
        let e = spec("name = \"x\"\ntime_limit = \"soon\"").validate(WorkloadId(1), "t").expect_err("bad");
        assert_eq!(e.field, "time_limit");
        let e = spec("name = \"x\"\nenv = { CUDA_VISIBLE_DEVICES = \"0\" }")
            .validate(WorkloadId(1), "t")
            .expect_err("reserved");
        assert_eq!(e.field, "env.CUDA_VISIBLE_DEVICES");
    }

    #[test]
    fn placement_pins_narrow_and_bad_ones_are_named() {
        let j = spec("name = \"x\"\n[placement]\nsites = [\"paris-nord\"]\ncountries = [\"FR\", \"EU\"]")
            .validate(WorkloadId(1), "t")
            .expect("valid");
        assert_eq!(j.workload.pins.sites, Some(["paris-nord".to_string()].into()));
        assert_eq!(j.workload.pins.countries, Some(["EU".to_string(), "FR".to_string()].into()));
        let e = spec("name = \"x\"\nplacement = { countries = [\"France\"] }")
            .validate(WorkloadId(1), "t")
            .expect_err("not a code");
        assert_eq!(e.field, "placement.countries[0]");
        let e = spec("name = \"x\"\nplacement = { sites = [\"Paris Nord\"] }")
            .validate(WorkloadId(1), "t")
            .expect_err("not an id");
        assert_eq!(e.field, "placement.sites[0]");
        assert!(
            spec("name = \"x\"").validate(WorkloadId(1), "t").expect("valid").workload.pins.is_anywhere()
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_line() {
        let e = JobSpec::from_toml("name = \"x\"\ngpus = 3\n").expect_err("unknown field");
        assert!(e.contains("line 2") && e.contains("gpus"), "{e}");
    }
}
