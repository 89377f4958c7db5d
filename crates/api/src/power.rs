//! Power: curtailments (temporary lower grid budgets) and what they do.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Asks a site to draw less from the grid for a while (a grid operator's demand-response
/// signal, a failing feeder). The control plane sheds work and caps GPUs to meet it
/// before it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleCurtailment {
    /// The most the site may draw from the grid meanwhile, facility side, in MW (the IT
    /// budget is this divided by the site's PUE). At least the site's
    /// `curtailable_to_mw`.
    #[schema(minimum = 0.0, maximum = 10000.0)]
    pub to_mw: f64,
    /// Start, RFC 3339; now when absent. Not in the past.
    pub from: Option<String>,
    /// End, RFC 3339: after the start, at most 31 days later.
    pub until: String,
    /// Why, for the log and for people (e.g. "RTE demand response, EcoWatt red").
    pub reason: Option<String>,
}

/// A curtailment and what it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CurtailmentInfo {
    /// Its number.
    pub id: u64,
    /// Site id.
    pub site: String,
    /// The grid draw it allows, facility side, in MW.
    pub to_mw: f64,
    /// The site's IT budget meanwhile, in watts.
    pub it_budget_w: u64,
    /// Start, RFC 3339.
    pub from: String,
    /// End, RFC 3339.
    pub until: String,
    /// Why.
    pub reason: String,
    /// `scheduled`, `active`, `over` or `cancelled`.
    pub state: String,
    /// Workloads its start preempts as things stand, lowest priority first (only when it
    /// is scheduled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub would_preempt: Vec<String>,
    /// Set when it leaves no room for latency-critical work: it is accepted, and this
    /// says what will stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
}
