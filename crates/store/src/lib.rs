//! The event log, gigawatt's source of truth, and the state it folds into.
//!
//! Every change to the control plane is a [`LogEvent`], appended to the log (SQLite or
//! PostgreSQL, see [`Store`]) before anyone is told about it. The control plane's state
//! is [`View::apply`] folded over the log; snapshots of the view make start-up replay
//! only the tail. The same log is the audit trail (`GET /v1/workloads/{id}/explain`
//! reads a workload's history from it) and, later, the simulator's input for what-ifs.
//!
//! ```
//! use gigawatt_store::{LogEvent, Record, View};
//!
//! let mut view = View::default();
//! let by = Some("tok-1".into()); // who acted: the caller's token id
//! let event = LogEvent::TenantCreated { tenant: "acme".into(), name: "ACME Health".into(), by };
//! view.apply(&Record { seq: 1, at_ms: 0, tenant: Some("acme".into()), actor: None, event }).expect("applies");
//! assert!(view.tenants.contains_key("acme"));
//! ```

pub mod audit;
mod backend;
pub mod canonical;
mod event;
mod leader;
mod view;

pub use backend::{Durability, FoldError, FoldReport, Store, StoreError, fold};
pub use canonical::LOG_FORMAT;
pub use event::{Actor, LogEvent, PlacedResidency, PolicyLayer, Record, SiteFacts, TaskSite};
pub use leader::Leadership;
pub use view::{
    AgentRecord, Curtailment, FleetRecord, PolicyRecord, QuotasRecord, TaskExit, TaskRun, Tenant, Token,
    View, ViewError, WorkloadRecord, hex,
};
