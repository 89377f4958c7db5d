//! `GET /v1/events`: a Server-Sent Events stream of workload events, filtered to what
//! the caller may see. Resumable: send `Last-Event-ID` (or `?after=`) and the stream
//! replays from the log what was missed, then follows live commits.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use gigawatt_api::{ApiErrorBody, WatchEvent, rfc3339};
use gigawatt_store::{Record, Store};
use serde::Deserialize;
use tokio::sync::broadcast;
use utoipa::IntoParams;

use super::ApiQuery;
use crate::AppState;
use crate::auth::Caller;
use crate::http::error::ApiError;

/// Where to start.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Replay events after this log position first (the `Last-Event-ID` header wins).
    /// Default: only new events.
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub after: Option<u64>,
}

/// Follow workload events as they are committed (`text/event-stream`; each event's
/// `data` is a JSON [`WatchEvent`], its `id` the log position).
#[utoipa::path(
    get, path = "/v1/events", tag = "workloads",
    params(EventsQuery, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this position")),
    responses(
        (status = 200, description = "An endless event stream", content_type = "text/event-stream", body = WatchEvent),
        (status = 400, description = "Malformed query", body = ApiErrorBody),
        (status = 401, description = "No valid token", body = ApiErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stream(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let rx = state.events.subscribe();
    let from_header = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()).ok_or_else(|| {
            ApiError::bad_request(
                "invalid-header",
                "Last-Event-ID must be a log position (a number)",
                Some("header:Last-Event-ID".into()),
            )
        })?),
    };
    let after_query = super::log_position(q.after)?;
    let head = state.engine.read().await.view.seq;
    let after = from_header.or(q.after.map(|_| after_query)).unwrap_or(head).min(head);
    let follow = Follow {
        state: state.clone(),
        store: state.store.clone(),
        rx,
        caller,
        last: after,
        backlog: VecDeque::new(),
        catching_up: after < head,
    };
    let events = futures::stream::unfold(follow, |mut f| async move {
        let record = f.next().await?;
        Some((Ok(to_sse(&record)), f))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn to_sse(r: &Record) -> Event {
    let w = WatchEvent {
        seq: r.seq,
        at: rfc3339(r.at_ms),
        event: r.event.kind().to_string(),
        workload: r.event.workload().map(|w| w.to_string()).unwrap_or_default(),
        tenant: r.tenant.clone().unwrap_or_default(),
        text: r.event.describe(),
    };
    let data = serde_json::to_string(&w).unwrap_or_else(|_| "{}".into());
    Event::default().id(r.seq.to_string()).event(r.event.kind()).data(data)
}

struct Follow {
    state: Arc<AppState>,
    store: Store,
    rx: broadcast::Receiver<Arc<Record>>,
    caller: Caller,
    last: u64,
    backlog: VecDeque<Record>,
    catching_up: bool,
}

impl Follow {
    fn visible(&self, r: &Record) -> bool {
        r.event.workload().is_some() && r.tenant.as_deref().is_some_and(|t| self.caller.sees_tenant(t))
    }

    /// The next visible record, or `None` when the stream ends (also when the caller's
    /// token is revoked: a stream never outlives the right to read it).
    async fn next(&mut self) -> Option<Record> {
        loop {
            if !self.state.token_is_live(&self.caller.token_id) {
                return None;
            }
            while let Some(r) = self.backlog.pop_front() {
                if r.seq > self.last {
                    self.last = r.seq;
                    if self.visible(&r) {
                        return Some(r);
                    }
                }
            }
            if self.catching_up {
                match self.store.read_after(self.last, 1000).await {
                    Ok(records) if records.is_empty() => self.catching_up = false,
                    Ok(records) => self.backlog.extend(records),
                    Err(e) => {
                        tracing::warn!("event stream cannot read the log: {e}");
                        return None;
                    }
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(r) => {
                    if r.seq > self.last + 1 {
                        // Commits we did not see (subscribed late): read them from the log.
                        self.catching_up = true;
                        continue;
                    }
                    self.backlog.push_back((*r).clone());
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.catching_up = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
