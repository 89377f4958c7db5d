//! The state the log folds into: tenants, tokens, workloads and the fleet's operator
//! overrides (nodes down, budgets). The scheduling core's own state is rebuilt from it
//! (see the server's `engine`), so this is everything a restart needs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gigawatt_api::{Role, RunSpec, WorkloadKind, WorkloadState};
use gigawatt_core::{TaskPlacement, Workload, WorkloadId};
use gigawatt_units::Watts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::{LogEvent, Record};

/// A record the view cannot apply: the log is out of order or contradicts itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event log entry {seq} ({kind}): {message}")]
pub struct ViewError {
    /// Position of the offending entry.
    pub seq: u64,
    /// Its type.
    pub kind: &'static str,
    /// What is wrong.
    pub message: String,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Display name.
    pub name: String,
    /// When it was created (Unix ms).
    pub created_at: i64,
}

/// An API token (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Label.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Tenant, for tenant tokens.
    pub tenant: Option<String>,
    /// Hex SHA-256 of the secret.
    pub sha256: String,
    /// When it was issued (Unix ms).
    pub created_at: i64,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// A workload and everything the log says about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadRecord {
    /// The core's view of it.
    pub workload: Workload,
    /// What it is.
    pub kind: WorkloadKind,
    /// How to run it.
    pub run: RunSpec,
    /// Where it stands.
    pub state: WorkloadState,
    /// Where each task runs, `None` while it waits.
    pub tasks: Vec<Option<TaskPlacement>>,
    /// The latest decision, in words.
    pub reason: String,
    /// Log position of its submission (the queue's FIFO order, the list order).
    pub submitted_seq: u64,
    /// When it was submitted (Unix ms).
    pub submitted_at: i64,
    /// When its state last changed (Unix ms).
    pub updated_at: i64,
    /// When it last became fully placed (Unix ms), for its time limit.
    pub running_since: Option<i64>,
    /// Exit code, when its process ended it.
    pub exit_code: Option<i32>,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
}

impl WorkloadRecord {
    /// Tasks placed now.
    #[must_use]
    pub fn placed(&self) -> u32 {
        self.tasks.iter().filter(|t| t.is_some()).count() as u32
    }
}

/// The folded state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct View {
    /// Position of the last record applied.
    pub seq: u64,
    /// Key of the workload id permutation (from the `initialized` record).
    pub id_key: u64,
    /// Workloads submitted so far (the id counter).
    pub submitted: u64,
    /// Tenants by id.
    pub tenants: BTreeMap<String, Tenant>,
    /// Tokens by id.
    pub tokens: BTreeMap<String, Token>,
    /// Workloads by id. Each record is shared (`Arc`), so that a copy of the view for a
    /// snapshot copies the map, not every record; a change clones only the record it
    /// touches, and only while a copy still holds it.
    pub workloads: BTreeMap<WorkloadId, Arc<WorkloadRecord>>,
    /// Nodes taken down by an operator, with why.
    pub nodes_down: BTreeMap<String, String>,
    /// Site budgets set through the API (they override the fleet file's phases).
    pub budgets: BTreeMap<String, Watts>,
    /// Token id by secret hash.
    #[serde(skip)]
    token_by_hash: HashMap<String, String>,
    /// Workload by (tenant, idempotency key).
    #[serde(skip)]
    idempotency: HashMap<(String, String), WorkloadId>,
    /// Workloads by submission position (list order and cursors).
    #[serde(skip)]
    by_seq: BTreeMap<u64, WorkloadId>,
    /// Workloads pending or running.
    #[serde(skip)]
    live: usize,
}

/// Workload ids are 52-bit, so that every id is exact in a JSON number (2^53).
const ID_BITS: u32 = 52;
const ID_MASK: u64 = (1 << ID_BITS) - 1;

/// A bijection of `0..2^52`: SplitMix64's finaliser with every step reduced mod 2^52
/// (xor-shifts and odd multipliers are invertible there), so distinct inputs give
/// distinct ids.
fn mix52(mut z: u64) -> u64 {
    z &= ID_MASK;
    z = ((z ^ (z >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9)) & ID_MASK;
    z = ((z ^ (z >> 26)).wrapping_mul(0x94d0_49bb_1331_11eb)) & ID_MASK;
    z ^ (z >> 29)
}

impl View {
    /// Applies the next record. Records must come in order, each exactly once.
    pub fn apply(&mut self, r: &Record) -> Result<(), ViewError> {
        let fail = |message: String| ViewError { seq: r.seq, kind: r.event.kind(), message };
        if r.seq != self.seq + 1 {
            return Err(fail(format!("expected entry {}, the log is not dense", self.seq + 1)));
        }
        let at = r.at_ms;
        match &r.event {
            LogEvent::Initialized { id_key } => self.id_key = *id_key,
            LogEvent::TenantCreated { tenant, name } => {
                if self.tenants.contains_key(tenant) {
                    return Err(fail(format!("tenant {tenant} exists")));
                }
                self.tenants.insert(tenant.clone(), Tenant { name: name.clone(), created_at: at });
            }
            LogEvent::TokenIssued { token_id, name, role, tenant, sha256 } => {
                if self.tokens.contains_key(token_id) {
                    return Err(fail(format!("token {token_id} exists")));
                }
                self.token_by_hash.insert(sha256.clone(), token_id.clone());
                self.tokens.insert(
                    token_id.clone(),
                    Token {
                        name: name.clone(),
                        role: *role,
                        tenant: tenant.clone(),
                        sha256: sha256.clone(),
                        created_at: at,
                        revoked: false,
                    },
                );
            }
            LogEvent::TokenRevoked { token_id } => {
                let t = self.tokens.get_mut(token_id).ok_or_else(|| fail(format!("no token {token_id}")))?;
                t.revoked = true;
                self.token_by_hash.remove(&t.sha256);
            }
            LogEvent::WorkloadSubmitted { workload, kind, run, idempotency_key, .. } => {
                let id = workload.id;
                if self.workloads.contains_key(&id) {
                    return Err(fail(format!("{id} submitted twice")));
                }
                if id != self.id_for(self.submitted) {
                    return Err(fail(format!("{id} is not the id of submission {}", self.submitted)));
                }
                self.submitted += 1;
                let tasks = vec![None; workload.shape.tasks() as usize];
                if let Some(k) = idempotency_key {
                    self.idempotency.insert((workload.tenant.0.clone(), k.clone()), id);
                }
                self.by_seq.insert(r.seq, id);
                self.live += 1;
                self.workloads.insert(
                    id,
                    Arc::new(WorkloadRecord {
                        workload: workload.clone(),
                        kind: *kind,
                        run: run.clone(),
                        state: WorkloadState::Pending,
                        tasks,
                        reason: "submitted".into(),
                        submitted_seq: r.seq,
                        submitted_at: at,
                        updated_at: at,
                        running_since: None,
                        exit_code: None,
                        idempotency_key: idempotency_key.clone(),
                    }),
                );
            }
            LogEvent::WorkloadPlaced { workload, tasks, .. } => {
                let w = self.live_workload(*workload).map_err(fail)?;
                for t in tasks {
                    let slot = w
                        .tasks
                        .get_mut(t.task as usize)
                        .ok_or_else(|| fail(format!("{workload} has no task {}", t.task)))?;
                    if slot.is_some() {
                        return Err(fail(format!("{workload} task {} placed twice", t.task)));
                    }
                    *slot = Some(t.clone());
                }
                w.reason = r.event.describe();
                w.updated_at = at;
                if w.tasks.iter().all(Option::is_some) {
                    w.state = WorkloadState::Running;
                    w.running_since = Some(at);
                }
            }
            LogEvent::WorkloadPending { workload, .. } => {
                let w = self.live_workload(*workload).map_err(fail)?;
                w.reason = r.event.describe();
                w.updated_at = at;
            }
            LogEvent::WorkloadPreempted { workload, .. } => {
                let w = self.live_workload(*workload).map_err(fail)?;
                w.tasks.iter_mut().for_each(|t| *t = None);
                w.state = WorkloadState::Pending;
                w.running_since = None;
                w.reason = r.event.describe();
                w.updated_at = at;
            }
            LogEvent::WorkloadRejected { workload, .. } => {
                self.finish(*workload, WorkloadState::Rejected, None, r).map_err(fail)?;
            }
            LogEvent::WorkloadFinished { workload, state, exit_code, .. } => {
                if !state.is_final() {
                    return Err(fail(format!("{} is not a final state", state.as_str())));
                }
                self.finish(*workload, *state, *exit_code, r).map_err(fail)?;
            }
            LogEvent::NodeDown { node, reason } => {
                self.nodes_down.insert(node.clone(), reason.clone());
            }
            LogEvent::NodeUp { node, .. } => {
                self.nodes_down.remove(node);
            }
            LogEvent::BudgetChanged { site, budget, .. } => {
                self.budgets.insert(site.clone(), *budget);
            }
        }
        self.seq = r.seq;
        Ok(())
    }

    fn live_workload(&mut self, id: WorkloadId) -> Result<&mut WorkloadRecord, String> {
        match self.workloads.get_mut(&id) {
            None => Err(format!("unknown workload {id}")),
            Some(w) if w.state.is_final() => Err(format!("{id} already ended ({})", w.state.as_str())),
            Some(w) => Ok(Arc::make_mut(w)),
        }
    }

    fn finish(
        &mut self,
        id: WorkloadId,
        state: WorkloadState,
        exit_code: Option<i32>,
        r: &Record,
    ) -> Result<(), String> {
        let w = self.live_workload(id)?;
        w.state = state;
        w.tasks.iter_mut().for_each(|t| *t = None);
        w.running_since = None;
        w.exit_code = exit_code;
        w.reason = r.event.describe();
        w.updated_at = r.at_ms;
        self.live -= 1;
        Ok(())
    }

    /// A copy of what a snapshot holds, for serialising it while the view moves on.
    /// Cheap: workload records are shared, and the indexes are left out
    /// ([`View::reindex`] rebuilds them when the snapshot is loaded).
    #[must_use]
    pub fn snapshot_copy(&self) -> View {
        View {
            seq: self.seq,
            id_key: self.id_key,
            submitted: self.submitted,
            tenants: self.tenants.clone(),
            tokens: self.tokens.clone(),
            workloads: self.workloads.clone(),
            nodes_down: self.nodes_down.clone(),
            budgets: self.budgets.clone(),
            ..View::default()
        }
    }

    /// Rebuilds the indexes a snapshot does not carry. Call after deserialising one.
    pub fn reindex(&mut self) {
        self.token_by_hash = self
            .tokens
            .iter()
            .filter(|(_, t)| !t.revoked)
            .map(|(id, t)| (t.sha256.clone(), id.clone()))
            .collect();
        self.idempotency.clear();
        self.by_seq.clear();
        self.live = 0;
        for (id, w) in &self.workloads {
            if let Some(k) = &w.idempotency_key {
                self.idempotency.insert((w.workload.tenant.0.clone(), k.clone()), *id);
            }
            self.by_seq.insert(w.submitted_seq, *id);
            if !w.state.is_final() {
                self.live += 1;
            }
        }
    }

    /// The live token with this secret hash.
    #[must_use]
    pub fn token_by_hash(&self, sha256: &str) -> Option<(&str, &Token)> {
        let id = self.token_by_hash.get(sha256)?;
        self.tokens.get(id).filter(|t| !t.revoked).map(|t| (id.as_str(), t))
    }

    /// The workload a tenant already submitted under this idempotency key.
    #[must_use]
    pub fn by_idempotency_key(&self, tenant: &str, key: &str) -> Option<WorkloadId> {
        self.idempotency.get(&(tenant.to_string(), key.to_string())).copied()
    }

    /// Workloads in submission order, starting after submission position `after`.
    pub fn workloads_after(&self, after: u64) -> impl Iterator<Item = &WorkloadRecord> + '_ {
        self.by_seq.range(after + 1..).filter_map(|(_, id)| self.workloads.get(id).map(Arc::as_ref))
    }

    /// Workloads pending or running.
    #[must_use]
    pub fn live(&self) -> usize {
        self.live
    }

    /// The id of the `n`th submission (from 0): a keyed permutation of `n`, so ids are
    /// unique but say nothing about how many workloads other tenants submitted.
    #[must_use]
    pub fn id_for(&self, n: u64) -> WorkloadId {
        WorkloadId(mix52(n ^ self.id_key))
    }

    /// A digest of the whole state, to compare two folds of the same log.
    #[must_use]
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex(&Sha256::digest(&bytes))
    }
}

/// Lowercase hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_a_permutation() {
        let v = View { id_key: 0x1234_5678_9abc, ..View::default() };
        let ids: std::collections::BTreeSet<u64> = (0..200_000).map(|n| v.id_for(n).0).collect();
        assert_eq!(ids.len(), 200_000);
        assert!(ids.iter().all(|id| *id <= ID_MASK));
    }
}
