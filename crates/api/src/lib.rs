//! The control plane's wire types: what clients send and what the API answers.
//!
//! One crate holds them so that the server, the CLI client and the OpenAPI document
//! (`GET /v1/openapi.json`, generated from these types with `utoipa`) can never drift
//! apart. Field names are the API's, in `snake_case`; enums are `kebab-case`.

pub mod agent;
pub mod error;
pub mod fleet;
pub mod job;
pub mod power;
pub mod quota;
pub mod residency;
pub mod tokens;
pub mod workload;

pub use agent::{
    AgentChanges, AgentInfo, Assignment, Desired, GpuInventory, GpuTelemetry, Heartbeat, LogAck, LogChunk,
    LogSlice, LogStream, NodeTelemetry, RegisterAgent, Registered, SetPowerLimit, SiteEnergy, TaskKey,
    TaskReport, TaskState, TelemetrySample, TelemetrySeries, TenantEnergy,
};
pub use error::{ApiErrorBody, FieldError};
pub use fleet::{NodeInfo, RackInfo, SetBudget, SetNodeState, SiteInfo};
pub use job::{
    DeferSpec, GangSpec, JobSpec, PlacementSpec, Resources, RunSpec, ServiceSpec, ValidJob, WorkloadKind,
};
pub use power::{CurtailmentInfo, ScheduleCurtailment};
pub use quota::{
    CohortConfig, EnergyQuotaStatus, FairShareSpec, FlavourConfig, FlavourLimits, FlavourStatus, LinePlace,
    PowerQuotaStatus, QuotaConfig, QuotaStatus, QuotasInForce, TenantQuotaConfig,
};
pub use residency::{ClassPolicy, PolicySpec, PolicyTerm, TenantPolicy};
pub use tokens::{
    AgentEnroll, CreateTenant, CreateToken, EnrollNode, JoinToken, NodeCredential, Role, TenantInfo,
    TokenCreated, TokenInfo, WhoAmI,
};
pub use workload::{
    CompleteRequest, DecisionInfo, Explain, Page, ReportUsage, TaskInfo, WatchEvent, WorkloadInfo,
    WorkloadState, format_workload_id, parse_workload_id,
};

/// The API version prefix every route but the health and metrics endpoints lives under.
pub const API_PREFIX: &str = "/v1";

/// Formats a millisecond timestamp as RFC 3339 UTC (`2026-11-25T10:00:00.123Z`), the
/// way every time in the API is written.
#[must_use]
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let time = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0))
        + std::time::Duration::from_millis(millis as u64);

    humantime::format_rfc3339_millis(time).to_string()
}
