//! The control plane's side of the node agents: their live state ([`registry`]), the
//! output of their tasks ([`logs`]), and the watchdog that declares silent nodes lost.
//!
//! The protocol itself is described in `gigawatt_api::agent`; the facts it produces are
//! written by the engine (`engine::agents`).

pub mod logs;
pub mod registry;
pub mod scope;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use crate::AppState;
use crate::writer::execute;

/// How agents are run. The control plane dictates the intervals to every agent at
/// registration, so that one setting governs the whole fleet.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// How often agents send heartbeats (default 5 s).
    pub heartbeat_interval: Duration,
    /// After this long without a heartbeat a node is lost and its work requeued
    /// (default 3 intervals).
    pub lost_after: Duration,
    /// How long an agent waits between SIGTERM and SIGKILL when it stops a task whose
    /// job set no `grace` (default 30 s).
    pub grace: Duration,
    /// The longest `grace` a job may ask for (default 10 min).
    pub max_grace: Duration,
    /// Heartbeats of telemetry kept per node (default 36: three minutes at 5 s).
    pub telemetry_samples: usize,
    /// Where task output is kept (`None`: not kept).
    pub logs_dir: Option<std::path::PathBuf>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            heartbeat_interval: Duration::from_secs(5),
            lost_after: Duration::from_secs(15),
            grace: Duration::from_secs(30),
            max_grace: Duration::from_secs(600),
            telemetry_samples: 36,
            logs_dir: None,
        }
    }
}

impl AgentSettings {
    /// How long an agent keeps its work without an answered heartbeat: one interval
    /// less than `lost_after`, so that an agent cut off from the control plane has
    /// stopped its work before that work is requeued elsewhere.
    #[must_use]
    pub fn fence_after(&self) -> Duration {
        self.lost_after.saturating_sub(self.heartbeat_interval)
    }

    /// Checks the settings make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval < Duration::from_millis(50) {
            return Err("the heartbeat interval must be at least 50 ms".into());
        }
        if self.lost_after < 2 * self.heartbeat_interval {
            return Err(format!(
                "--lost-after ({:?}) must be at least two heartbeat intervals ({:?}): agents stop their work \
                 one interval before the control plane declares them lost",
                self.lost_after,
                2 * self.heartbeat_interval
            ));
        }
        Ok(())
    }
}

/// Declares lost every node whose heartbeats stopped, until the server stops.
pub async fn watchdog(state: Arc<AppState>) {
    let period = (state.agents.settings.heartbeat_interval / 4)
        .clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (node, generation, silent) in state.agents.overdue() {
            let reason = format!(
                "no heartbeat for {:.1} s (the limit is {:.1} s)",
                silent.as_secs_f64(),
                state.agents.settings.lost_after.as_secs_f64()
            );
            tracing::warn!(node, generation, "node lost: {reason}");
            let n = node.clone();
            match execute(&state, move |e, now| e.node_lost(now, &n, generation, reason)).await {
                Ok(true) => state.agents.lost(&node, generation + 1),
                Ok(false) => {}
                Err(e) => tracing::error!(node, "could not record the loss of node: {}", e),
            }
        }
    }
}
