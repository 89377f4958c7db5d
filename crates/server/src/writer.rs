//! The single writer: it batches commands, applies them to the engine, commits the
//! resulting records in one transaction (group commit), and only then answers.
//!
//! One writer keeps the log dense and the core single-threaded, as it must be; batching
//! makes one fsync serve every request that arrived while the previous one ran.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gigawatt_store::{Record, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::AppState;
use crate::engine::Engine;
use crate::error::EngineError;

/// The most commands one commit carries.
pub const MAX_BATCH: usize = 2048;

/// Work for the engine: runs under the engine's write lock and returns what to answer
/// once the commit is known; or, while the log cannot be written, is refused unrun.
pub struct Job {
    run: Run,
    refuse: Box<dyn FnOnce(EngineError) + Send>,
}
/// Runs a command on the engine; returns how to answer it, and whether it failed after
/// staging records (see [`execute`]).
type Run = Box<dyn FnOnce(&mut Engine, i64) -> (Reply, bool) + Send>;
/// Sends the answer, given how the commit went.
pub type Reply = Box<dyn FnOnce(Result<(), EngineError>) + Send>;

/// What the writer receives.
pub enum Msg {
    /// A command.
    Job(Job),
    /// Check whether another process appended to the log and, if so, load it. Answers
    /// whether anything was loaded.
    CatchUp(oneshot::Sender<bool>),
}

/// Runs `f` on the engine through the writer and waits until its records are durable.
///
/// A command checks everything before it stages its first record, so a command that
/// fails stages nothing and the batch commits without it. Failing after staging (the
/// view refusing a record, the core failing: bugs) spoils the batch instead: nothing of
/// it is committed, the engine is rebuilt from the log, the failed command gets its
/// error and every other command of the batch a 503 to retry.
pub async fn execute<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Engine, i64) -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    let (tx, rx) = oneshot::channel::<Result<T, EngineError>>();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let send = move |tx: &std::sync::Mutex<Option<oneshot::Sender<Result<T, EngineError>>>>, v| {
        if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
            let _ = tx.send(v);
        }
    };
    let (tx_run, tx_refuse) = (tx.clone(), tx);
    let job = Job {
        run: Box::new(move |engine, now| {
            let mark = engine.staged_len();
            let result = f(engine, now);
            let spoiled = result.is_err() && engine.staged_len() != mark;
            // A command's own refusal stands whatever the commit did; a success is one
            // only once committed.
            let reply: Reply = Box::new(move |commit| send(&tx_run, result.and_then(|v| commit.map(|()| v))));
            (reply, spoiled)
        }),
        refuse: Box::new(move |e| send(&tx_refuse, Err(e))),
    };
    let gone = || EngineError::unavailable("the control plane is shutting down");
    state.writer.send(Msg::Job(job)).await.map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?
}

/// Like [`execute`], for a caller: every record the command stages names it as its
/// actor (token, role, tenant or node, source address).
pub async fn execute_as<T: Send + 'static>(
    state: &AppState,
    actor: gigawatt_store::Actor,
    f: impl FnOnce(&mut Engine, i64) -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    execute(state, move |engine, now| {
        engine.actor = Some(actor);
        let result = f(engine, now);
        engine.actor = None;
        result
    })
    .await
}

/// Why the log cannot be written now, since when, and when the writer tries again.
#[derive(Debug, Clone)]
pub struct WriteFault {
    /// The store's error.
    pub reason: String,
    /// Since when (monotonic).
    pub since: Instant,
    /// Until then, commands are refused without being run: each failed commit costs a
    /// reload of the state from the log.
    pub retry_at: Instant,
    /// Failed commits in a row.
    pub failures: u32,
}

impl WriteFault {
    /// The wait before the next attempt after `failures` failed commits: 0.5 s doubling
    /// to 4 s.
    pub(crate) fn backoff(failures: u32) -> Duration {
        Duration::from_millis(500 << failures.saturating_sub(1).min(3))
    }
}

/// The writer loop. Ends when every sender is gone.
pub async fn run(state: Arc<AppState>, mut rx: mpsc::Receiver<Msg>) {
    let mut msgs = Vec::with_capacity(MAX_BATCH);
    let mut snapshot_task: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let deadline = state.engine.read().await.next_deadline(crate::now_ms());
        let sleep = deadline.map(|d| Duration::from_millis(u64::try_from(d - crate::now_ms()).unwrap_or(0)));
        tokio::select! {
            n = rx.recv_many(&mut msgs, MAX_BATCH) => if n == 0 { break },
            () = tokio::time::sleep(sleep.unwrap_or(Duration::from_secs(3600))), if sleep.is_some() => {}
        }
        let mut catch_ups = Vec::new();
        let mut jobs = Vec::with_capacity(msgs.len());
        for m in msgs.drain(..) {
            match m {
                Msg::Job(j) => jobs.push(j),
                Msg::CatchUp(tx) => catch_ups.push(tx),
            }
        }
        let started = Instant::now();
        // While the log cannot be written, commands are refused unrun until the next
        // attempt is due: the state stays exactly the log's, and no reload is spent.
        if let Some(f) = state.write_fault().filter(|f| started < f.retry_at) {
            let answer = unwritable(&f);
            for job in jobs {
                (job.refuse)(answer.clone());
            }
            // Loading what others wrote needs no write (a server that leads the log again
            // loads it before it writes).
            if !catch_ups.is_empty() {
                let mut engine = state.engine.write().await;
                let caught = match state.store.last_seq().await {
                    Ok(seq) if seq > engine.view.seq => {
                        reload(&state, &mut engine).await;
                        true
                    }
                    _ => false,
                };
                for tx in catch_ups {
                    let _ = tx.send(caught);
                }
            }
            continue;
        }
        let mut engine = state.engine.write().await;
        let now = crate::now_ms();
        let mut spoiled = 0;
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            let (reply, spoils) = (job.run)(&mut engine, now);
            spoiled += usize::from(spoils);
            replies.push(reply);
        }
        let mut result = if spoiled > 0 {
            tracing::error!("{spoiled} command(s) failed after staging records; the batch is not committed");
            Err(EngineError::unavailable(
                "another command in the same commit failed; nothing was changed: retry (with the same Idempotency-Key)",
            ))
        } else {
            engine
                .expire(now)
                .and_then(|()| engine.archive(now))
                .and_then(|()| engine.apply_budget_schedule(now))
                .and_then(|()| engine.tick(now))
        };
        let records = engine.take_staged();
        let mut hashes = Vec::new();
        if result.is_ok() {
            result = match state.store.append(&records).await {
                Ok(h) => {
                    hashes = h;
                    Ok(())
                }
                Err(e) => {
                    let answer = match &e {
                        StoreError::Conflict(_) => EngineError::unavailable(
                            "another process wrote to the event log at the same moment; retry (with the same Idempotency-Key)",
                        ),
                        _ => EngineError::unavailable(format!("the event log could not be written: {e}")),
                    };
                    tracing::error!(
                        "commit of {} records failed: {e}; reloading from the log",
                        records.len()
                    );
                    if !matches!(e, StoreError::Conflict(_)) {
                        state.fault_writes(e.to_string());
                    }
                    reload(&state, &mut engine).await;
                    Err(answer)
                }
            };
        } else {
            reload(&state, &mut engine).await;
        }
        let touched = engine.take_touched();
        if result.is_ok() && !records.is_empty() {
            state.writes_healed();
        }
        if result.is_ok() {
            // The tree follows the log; a failure here loses nothing (the records and
            // their leaf hashes are committed): the tree reads them again on its next sync.
            let mut audit = state.audit.lock().await;
            let kept = if records.is_empty() {
                audit.maybe_sign(&state.store, now).await
            } else {
                audit.committed(&state.store, &records, &hashes, now).await
            };
            if let Err(e) = kept {
                tracing::error!("the audit trail could not follow the log: {e}");
            }
            drop(audit);
            state.metrics.observe_commit(records.len(), replies.len(), started.elapsed());
            state.after_commit(&engine, &records);
            state.agents.wake(touched);
        }
        let mut caught_up = false;
        if !catch_ups.is_empty() {
            caught_up = match state.store.last_seq().await {
                Ok(seq) if seq > engine.view.seq => {
                    reload(&state, &mut engine).await;
                    true
                }
                _ => false,
            };
        }
        // A snapshot is taken from a copy of the view, serialised and saved in the
        // background: serialising a large view takes long (about 0.4 s at 50,000
        // workloads) and would stall every request meanwhile. At most one at a time.
        let snapshot = state
            .snapshot_due(&engine)
            .filter(|_| snapshot_task.as_ref().is_none_or(tokio::task::JoinHandle::is_finished))
            .map(|seq| {
                let copying = Instant::now();
                let view = engine.view.snapshot_copy();
                (seq, view, copying.elapsed())
            });
        drop(engine);
        for reply in replies {
            reply(result.clone());
        }
        for tx in catch_ups {
            let _ = tx.send(caught_up);
        }
        broadcast(&state, records, result.is_ok());
        if let Some((seq, view, copy)) = snapshot {
            snapshot_task = Some(tokio::spawn(save_snapshot(state.clone(), view, seq, copy)));
        }
    }
}

/// Serialises `view` (the state as of log position `seq`) off the async workers and
/// saves it as a snapshot.
async fn save_snapshot(state: Arc<AppState>, view: gigawatt_store::View, seq: u64, copy: Duration) {
    let started = Instant::now();
    let bytes = match tokio::task::spawn_blocking(move || serde_json::to_vec(&view)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return tracing::warn!("snapshot at {seq} not serialised: {e}"),
        Err(e) => return tracing::warn!("snapshot at {seq} not serialised: {e}"),
    };
    match state.store.save_snapshot(seq, crate::now_ms(), &bytes).await {
        Ok(()) => {
            state.last_snapshot.store(seq, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                seq,
                bytes = bytes.len(),
                copy_ms = copy.as_millis() as u64,
                ms = started.elapsed().as_millis() as u64,
                "snapshot saved"
            );
        }
        Err(e) => tracing::warn!("snapshot at {seq} not saved: {e}"),
    }
}

/// The answer to a command refused while the log cannot be written.
fn unwritable(f: &WriteFault) -> EngineError {
    EngineError::unavailable(format!(
        "the event log cannot be written ({}), for {} s now; nothing was changed: retry (with the same Idempotency-Key)",
        f.reason,
        f.since.elapsed().as_secs()
    ))
}

fn broadcast(state: &AppState, records: Vec<Record>, committed: bool) {
    if !committed {
        return;
    }
    for r in records {
        let _ = state.events.send(Arc::new(r));
    }
}

/// Throws the engine away and loads it again from the log, retrying until the log can
/// be read (the server answers 503 on /readyz meanwhile).
async fn reload(state: &AppState, engine: &mut Engine) {
    state.set_ready(false);
    loop {
        match crate::engine::open(&state.store, &state.config, crate::now_ms()).await {
            Ok((fresh, report)) => {
                tracing::info!(
                    seq = fresh.view.seq,
                    replayed = report.replayed,
                    "state reloaded from the event log"
                );
                *engine = fresh;
                state.refresh_tokens(engine);
                state.set_ready(true);
                return;
            }
            Err(e) => {
                tracing::error!("cannot reload from the event log: {e:#}; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use gigawatt_api::CreateTenant;
    use gigawatt_core::PolicyKind;
    use gigawatt_store::Store;

    use super::*;
    use crate::engine::EngineConfig;
    use crate::{Server, ServerConfig};

    async fn server(dir: &std::path::Path) -> Server {
        let store = Store::open(&format!("sqlite://{}/log.db", dir.display())).await.expect("a log");
        let fleet = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fleets/france.toml");
        let fleet = gigawatt_fleet::file::load(std::path::Path::new(fleet)).expect("the bundled fleet");
        let signer = gigawatt_transparency::Signer::from_seed("test.example/log", [7; 32]).expect("a key");
        let config = ServerConfig {
            audit: crate::audit::AuditSettings::new(signer),
            engine: EngineConfig {
                fleet,
                policy: PolicyKind::Fgd,
                seed: 1,
                keep_ended_ms: None,
                require_agents: false,
                budget_lead_ms: crate::engine::DEFAULT_BUDGET_LEAD_MS,
                pass_interval_ms: crate::engine::DEFAULT_PASS_INTERVAL_MS,
                age_after_s: 0,
            },
            snapshot_every: 0,
            agents: crate::agents::AgentSettings::default(),
            power: crate::PowerSettings::default(),
            connections: crate::listen::ConnLimits::default(),
            requests: crate::http::limits::RequestLimits::default(),
            tls: None,
        };
        Server::start(store, config).await.expect("a server")
    }

    fn tenant(id: &str) -> CreateTenant {
        CreateTenant { id: id.into(), name: None }
    }

    /// A command refused by its checks stages nothing: the batch it shares commits
    /// without it. One that fails after staging (a bug) spoils the batch: nothing is
    /// written, memory goes back to the log, the others are told to retry.
    #[tokio::test]
    async fn a_failed_command_leaves_no_trace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = server(dir.path()).await;
        let state = &server.state;
        let seq = state.store.last_seq().await.expect("seq");

        // On the current-thread runtime both commands are queued before the writer
        // runs: they share one batch.
        let (ok, refused) = tokio::join!(
            execute(state, |e, now| e.create_tenant(now, &tenant("acme"), "tok-test")),
            execute(state, |e, now| e.create_tenant(now, &tenant("Not Valid"), "tok-test")),
        );
        assert_eq!(ok, Ok(()));
        assert!(matches!(refused, Err(EngineError::Invalid { .. })), "{refused:?}");
        assert_eq!(state.store.last_seq().await.expect("seq"), seq + 1, "one record: acme");

        let (good, bug) = tokio::join!(
            execute(state, |e, now| e.create_tenant(now, &tenant("globex"), "tok-test")),
            execute(state, |e, now| {
                e.create_tenant(now, &tenant("initech"), "tok-test")?;
                Err::<(), _>(EngineError::internal("a bug after staging".into()))
            }),
        );
        assert_eq!(bug, Err(EngineError::Internal("a bug after staging".into())));
        assert!(matches!(good, Err(EngineError::Unavailable(_))), "{good:?}");
        assert_eq!(state.store.last_seq().await.expect("seq"), seq + 1, "nothing of the spoiled batch");
        {
            let engine = state.engine.read().await;
            assert!(engine.view.tenants.contains_key("acme"));
            assert!(!engine.view.tenants.contains_key("globex"), "memory holds only what the log does");
            assert!(!engine.view.tenants.contains_key("initech"));
            assert_eq!(engine.view.seq, seq + 1);
        }
        // The retry the answer asks for goes through.
        assert_eq!(
            execute(state, |e, now| e.create_tenant(now, &tenant("globex"), "tok-test")).await,
            Ok(())
        );
        assert_eq!(state.store.last_seq().await.expect("seq"), seq + 2);
    }
}
