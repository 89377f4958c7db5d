//! Each agent credential acts for one node only.
//!
//! An agent's token names its node (`gigawatt node enroll`), as Kubernetes binds each
//! kubelet to `system:node:<name>`. Every agent request says which node it acts for,
//! and a heartbeat or log chunk also names task copies. The server accepts it only from
//! that node's own credential, and only for task copies placed on that node. Anything
//! else is answered 403 and recorded in the log ([`gigawatt_store::LogEvent::AgentRefused`])
//! with the credential and the node it tried to act for, so that an auditor sees a
//! stolen or misused credential. Repeats are recorded at most once a minute per
//! credential, node and kind of request, with their count: a misbehaving agent cannot
//! fill the log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gigawatt_api::{TaskKey, parse_workload_id};
use gigawatt_store::LogEvent;

use crate::AppState;
use crate::auth::Caller;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::writer::execute;

/// How often one kind of refusal is recorded at most.
const RECORD_EVERY: Duration = Duration::from_secs(60);

/// Copies that no longer run (each checked against the log) in one request, at most.
const MAX_LOOKUPS: usize = 256;

/// Refusal kinds remembered at most; beyond, the oldest are forgotten (the node names
/// come from outside).
const MAX_REMEMBERED: usize = 10_000;

/// A kind of refusal: token id, node, what was tried.
type RefusalKey = (String, String, &'static str);

/// Refusals recorded lately, per kind: when last recorded and how many happened since.
#[derive(Debug, Default)]
pub struct Refusals {
    seen: Mutex<HashMap<RefusalKey, (Instant, u64)>>,
}

impl Refusals {
    /// Counts one refusal; returns the count to record now, if it is time to.
    fn count(&self, key: RefusalKey) -> Option<u64> {
        let mut seen = self.seen.lock().ok()?;
        let now = Instant::now();
        if seen.len() >= MAX_REMEMBERED && !seen.contains_key(&key) {
            seen.retain(|_, (at, _)| now.duration_since(*at) < RECORD_EVERY);
            if seen.len() >= MAX_REMEMBERED {
                return None;
            }
        }
        match seen.get_mut(&key) {
            Some((at, n)) if now.duration_since(*at) < RECORD_EVERY => {
                *n += 1;
                None
            }
            Some((at, n)) => {
                let count = *n + 1;
                (*at, *n) = (now, 0);
                Some(count)
            }
            None => {
                seen.insert(key, (now, 0));
                Some(1)
            }
        }
    }
}

/// Refuses an agent request: 403, recorded in the log (see the module docs), and
/// logged for the operator.
pub async fn refuse(
    state: &AppState,
    caller: &Caller,
    node: &str,
    what: &'static str,
    reason: String,
) -> EngineError {
    tracing::warn!(token = caller.token_id, node, "agent {what} refused: {reason}");
    let node_short: String = node.chars().take(128).collect();
    if let Some(count) = state.agents.refusals.count((caller.token_id.clone(), node_short.clone(), what)) {
        let (token, why) = (caller.token_id.clone(), reason.clone());
        // Recording is best effort: the request is refused whether or not it lands.
        if let Err(e) =
            execute(state, move |e, now| e.agent_refused(now, &token, &node_short, what, &why, count)).await
        {
            tracing::warn!(node, "the refusal could not be recorded: {}", e);
        }
    }
    EngineError::forbidden(format!("{what} for node {node} refused: {reason}"))
}

/// Refuses unless `caller` is node `node`'s own agent credential.
pub async fn check_node(
    state: &AppState,
    caller: &Caller,
    node: &str,
    what: &'static str,
) -> Result<(), EngineError> {
    match caller.refuses_node(node) {
        None => Ok(()),
        Some(reason) => Err(refuse(state, caller, node, what, reason).await),
    }
}

/// What the view says of a task copy on a node.
enum Copy {
    /// Placed on this node.
    Here,
    /// Not on this node, or no such copy.
    Elsewhere(String),
    /// An older copy: the placement record at its generation tells where it ran.
    Look,
}

fn locate(engine: &Engine, node: &str, key: &TaskKey) -> Copy {
    let Some(id) = parse_workload_id(&key.workload) else {
        return Copy::Elsewhere(format!("`{}` is not a workload id", key.workload));
    };
    let Some(w) = engine.view.workloads.get(&id) else {
        return Copy::Elsewhere(format!("there is no workload {id}"));
    };
    if key.task as usize >= w.tasks.len() {
        return Copy::Elsewhere(format!("{id} has no task {}", key.task));
    }
    if key.generation == 0 || key.generation > engine.view.seq {
        return Copy::Elsewhere(format!("{id} task {} has no copy {}", key.task, key.generation));
    }
    match w.tasks.get(key.task as usize).and_then(Option::as_ref) {
        Some(p) if w.run(key.task).generation == key.generation => {
            if p.node == node {
                Copy::Here
            } else {
                Copy::Elsewhere(format!(
                    "{id} task {} copy {} runs on another node",
                    key.task, key.generation
                ))
            }
        }
        // An older copy, or the current one once it ended: its placement record says.
        _ => Copy::Look,
    }
}

/// Refuses unless every copy in `keys` was placed on `node` (by the placement record
/// its generation names). Current copies are checked against the view; older ones (an
/// exit the agent repeats until acknowledged, output it still ships) against the log.
pub async fn check_copies<'a>(
    state: &AppState,
    caller: &Caller,
    node: &str,
    what: &'static str,
    keys: impl IntoIterator<Item = &'a TaskKey>,
) -> Result<(), EngineError> {
    let mut look: Vec<&TaskKey> = Vec::new();
    let mut refused = None;
    {
        // Not held across `refuse`: recording the refusal needs the writer.
        let engine = state.engine.read().await;
        for key in keys {
            match locate(&engine, node, key) {
                Copy::Here => {}
                Copy::Elsewhere(why) => {
                    refused = Some(why);
                    break;
                }
                Copy::Look => look.push(key),
            }
        }
    }
    if let Some(why) = refused {
        return Err(refuse(state, caller, node, what, why).await);
    }
    if look.len() > MAX_LOOKUPS {
        return Err(EngineError::field(
            "tasks",
            format!("{} copies that no longer run in one request; at most {MAX_LOOKUPS}", look.len()),
        ));
    }
    for key in look {
        let placed_here = match state.store.read_after(key.generation - 1, 1).await {
            Ok(records) => records.first().is_some_and(|r| {
                r.seq == key.generation
                    && matches!(&r.event, LogEvent::WorkloadPlaced { workload, tasks, .. }
                        if parse_workload_id(&key.workload) == Some(*workload)
                            && tasks.iter().any(|t| t.task == key.task && t.node == node))
            }),
            Err(e) => return Err(EngineError::unavailable(format!("the event log cannot be read: {e}"))),
        };
        if !placed_here {
            let why = format!(
                "{} task {} copy {} was not placed on this node",
                key.workload, key.task, key.generation
            );
            return Err(refuse(state, caller, node, what, why).await);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_refusal_is_recorded_once_a_minute_with_its_count() {
        let r = Refusals::default();
        let key = || ("tok-1".to_string(), "n1".to_string(), "heartbeat");
        assert_eq!(r.count(key()), Some(1));
        assert_eq!(r.count(key()), None);
        assert_eq!(r.count(key()), None);
        // Another node or kind is recorded at once.
        assert_eq!(r.count(("tok-1".into(), "n2".into(), "heartbeat")), Some(1));
        assert_eq!(r.count(("tok-1".into(), "n1".into(), "poll")), Some(1));
        // A minute later, the next one is recorded with the ones in between.
        if let Ok(mut seen) = r.seen.lock() {
            let at = seen.get_mut(&key()).expect("remembered");
            at.0 -= RECORD_EVERY;
        }
        assert_eq!(r.count(key()), Some(3));
    }
}
