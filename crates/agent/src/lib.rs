//! gigawatt's node agent (`gigawatt agent`): the control plane's hands on a GPU server.
//!
//! The agent registers its node, then every heartbeat interval reports what it measures
//! (power, utilisation, energy per GPU) and which task processes it runs, and receives
//! the complete set of tasks the node should run and the power limits to apply. It
//! converges on that set: starts the missing tasks as process groups, stops the
//! unwanted ones, caps the GPUs, and ships the tasks' output.
//!
//! # Design
//!
//! * **Level-triggered**, like Kubernetes' kubelet: every answer is the whole desired
//!   state, so a lost message or a restart on either side heals at the next heartbeat.
//!   Nothing is "sent once".
//! * **At most one copy of a task.** When the control plane stops hearing from a node
//!   it requeues the node's work elsewhere after `lost_after_ms`. Before that can
//!   happen, the agent must have stopped everything: after `fence_after_ms` (shorter)
//!   without an answered heartbeat it SIGKILLs all its tasks (*self-fencing*); told that
//!   its generation is stale (`409`), it kills them at once and registers anew; and if
//!   the agent itself dies, a separate guard process kills them (see [`guard_main`]).
//! * **One backend trait** ([`backend::GpuBackend`]) for real GPUs (NVML) and simulated
//!   ones, so the control plane cannot tell them apart and every path is testable on a
//!   laptop.
//! * **Output is complete before an end is reported**: a task's exit reaches the control
//!   plane only after all its stdout and stderr did, so `gigawatt logs` of a finished
//!   workload is never truncated.

pub mod backend;
pub mod credential;
pub mod guard;

mod agent;
mod client;
mod logs;
mod process;
mod supervisor;

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;

pub use backend::{BackendChoice, BackendError, SimSpec, parse_simulate};
pub use guard::{GuardSpawn, guard_main};
pub use process::INSTANCE_ENV;

/// Everything `gigawatt agent` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The control plane's base URL, e.g. `http://127.0.0.1:7070`.
    pub server: String,
    /// This node's own credential: a token of role `agent` bound to it (see
    /// [`credential::resolve`]).
    pub token: String,
    /// The CA certificate (PEM) that signed the control plane's certificate, when it is
    /// not a public one.
    pub ca_file: Option<PathBuf>,
    /// This node's name in the fleet.
    pub node: String,
    /// Real GPUs or simulated ones.
    pub backend: BackendChoice,
    /// Where task directories (`tasks/<workload>-<task>-g<generation>/`) go.
    pub data_dir: PathBuf,
    /// The host other nodes reach this one at (a gang's `GIGAWATT_MASTER_ADDR`).
    pub address: String,
    /// How to start the guard process; `None` runs without one (tests), and then the
    /// tasks outlive an agent that is killed.
    pub guard: Option<GuardSpawn>,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is unusable (e.g. the server URL).
    #[error("{0}")]
    Config(String),
    /// The GPUs cannot be used.
    #[error("GPU backend: {0}")]
    Backend(#[from] BackendError),
    /// The data directory cannot be created.
    #[error("cannot create the data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The guard process cannot be started.
    #[error("cannot start the guard process {}: {source}", program.display())]
    Guard {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The control plane refused the registration (bad token, wrong role, unknown node,
    /// inventory not matching the fleet): a configuration error, not retried.
    #[error("the control plane refused to register node `{node}` ({status} {code}): {message}")]
    Refused {
        /// The node.
        node: String,
        /// HTTP status.
        status: u16,
        /// The error code (`unauthorized`, `not-found`, …).
        code: String,
        /// The control plane's explanation.
        message: String,
    },
}

/// Runs the agent until `shutdown` resolves, then stops its tasks (SIGTERM, the grace
/// period, SIGKILL) and returns `Ok`.
///
/// Connection failures never end it (it retries with backoff and self-fences when the
/// control plane stays silent); only a refused first registration or a local problem
/// does.
///
/// # Errors
/// [`AgentError`]: the first registration refused, no usable GPU backend, an unusable
/// data directory or guard program.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let client = client::Client::with_ca(&config.server, &config.token, config.ca_file.as_deref())
        .map_err(AgentError::Config)?;
    let mut backend = backend::open_backend(&config.backend, &config.node)?;
    let inventory = backend.inventory()?;
    let tasks = config.data_dir.join("tasks");
    std::fs::create_dir_all(&tasks).map_err(|source| AgentError::DataDir { path: tasks, source })?;
    let instance = instance_id();
    let guard = match &config.guard {
        Some(g) => Some(
            guard::GuardHandle::start(g, &instance)
                .map_err(|source| AgentError::Guard { program: g.program.clone(), source })?,
        ),
        None => None,
    };
    tracing::info!(node = %config.node, backend = backend.kind(), gpus = inventory.len(), instance,
        guard = guard.is_some(), "agent starting");
    let (exits_tx, exits) = tokio::sync::mpsc::unbounded_channel();
    let supervisor = supervisor::Supervisor::new(config.data_dir.clone(), &instance, exits_tx);
    let mut agent = agent::Agent::new(config, client, backend, inventory, supervisor, exits, guard);
    let result = agent.main_loop(shutdown).await;
    agent.wind_down().await;
    result
}

/// A random id for this agent process (16 hex digits), from the OS-seeded keys of the
/// standard library's hasher, the pid and the clock.
fn instance_id() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    h.write_u128(now.as_nanos());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod testutil {
    /// Processes of group `pgid` that are not zombies (a container's init may be slow
    /// to reap orphans).
    pub(crate) fn live_members(pgid: i32) -> Vec<i32> {
        let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
                // pid (comm) state ppid pgrp …; comm may hold spaces, so split after ')'.
                let Some((_, rest)) = stat.rsplit_once(')') else { return false };
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields.first() != Some(&"Z") && fields.get(2).and_then(|g| g.parse().ok()) == Some(pgid)
            })
            .collect()
    }

    #[test]
    fn instance_ids_differ() {
        assert_ne!(super::instance_id(), super::instance_id());
        assert_eq!(super::instance_id().len(), 16);
    }
}
