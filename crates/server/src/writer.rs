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
use crate::error::ApiError;

/// The most commands one commit carries.
pub const MAX_BATCH: usize = 2048;

/// Work for the engine: runs under the engine's write lock and returns what to answer
/// once the commit is known; or, while the log cannot be written, is refused unrun.
pub struct Job {
    run: Run,
    refuse: Box<dyn FnOnce(ApiError) + Send>,
}
/// Runs a command on the engine; returns how to answer it.
type Run = Box<dyn FnOnce(&mut Engine, i64) -> Reply + Send>;
/// Sends the answer, given how the commit went.
pub type Reply = Box<dyn FnOnce(Result<(), ApiError>) + Send>;

/// What the writer receives.
pub enum Msg {
    /// A command.
    Job(Job),
    /// Check whether another process appended to the log and, if so, load it. Answers
    /// whether anything was loaded.
    CatchUp(oneshot::Sender<bool>),
}

/// Runs `f` on the engine through the writer and waits until its records are durable.
pub async fn execute<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Engine, i64) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel::<Result<T, ApiError>>();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let send = move |tx: &std::sync::Mutex<Option<oneshot::Sender<Result<T, ApiError>>>>, v| {
        if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
            let _ = tx.send(v);
        }
    };
    let (tx_run, tx_refuse) = (tx.clone(), tx);
    let job = Job {
        run: Box::new(move |engine, now| {
            let result = f(engine, now);
            Box::new(move |commit: Result<(), ApiError>| send(&tx_run, commit.and(result)))
        }),
        refuse: Box::new(move |e| send(&tx_refuse, Err(e))),
    };
    let gone = || ApiError::unavailable("the control plane is shutting down");
    state.writer.send(Msg::Job(job)).await.map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?
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
        let replies: Vec<Reply> = jobs.into_iter().map(|job| (job.run)(&mut engine, now)).collect();
        let mut result = engine
            .expire(now)
            .and_then(|()| engine.archive(now))
            .and_then(|()| engine.apply_budget_schedule(now))
            .and_then(|()| engine.tick(now));
        let records = engine.take_staged();
        if result.is_ok() {
            result = match state.store.append(&records).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    let answer = match &e {
                        StoreError::Conflict(_) => ApiError::unavailable(
                            "another process wrote to the event log at the same moment; retry (with the same Idempotency-Key)",
                        ),
                        _ => ApiError::unavailable(format!("the event log could not be written: {e}")),
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
fn unwritable(f: &WriteFault) -> ApiError {
    ApiError::unavailable(format!(
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
