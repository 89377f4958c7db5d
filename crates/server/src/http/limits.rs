//! Bounds on requests, in front of every route:
//!
//! * a body whose declared length is over [`super::MAX_BODY`] is answered 413 before
//!   anything of it is read, and before the token is even looked at;
//! * every request but the long-lived ones (the event stream, agents' long polls) has a
//!   deadline;
//! * handlers run on a bounded number of **seats**, shared fairly between callers, in the
//!   manner of the Kubernetes API server's priority and fairness: two priority levels
//!   with their own seats, one for node agents and one for everything else, so that an
//!   overloaded API never delays heartbeats until nodes look lost. Within a level each
//!   token is a flow with its own queue; a freed seat goes to the next flow in turn, so
//!   one tenant flooding the API gets its turn like the others and no more. A flow whose
//!   queue is full, or a request that waited too long, is answered 429 with
//!   `Retry-After`.
//!
//! Health, readiness, metrics and the API document take no seat: they must answer
//! whatever the load.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use crate::http::error::ApiError;

/// Bounds on requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// How long a request may take (streams and long polls excepted).
    pub request_timeout: Duration,
    /// Handlers running at once for everything but agents.
    pub api_seats: usize,
    /// Handlers running at once for node agents.
    pub agent_seats: usize,
    /// Requests of one token waiting for a seat, at most; more are answered 429.
    pub queue_per_flow: usize,
    /// How long a request waits for a seat before it is answered 429.
    pub queue_wait: Duration,
}

impl Default for RequestLimits {
    /// 60 s per request; 256 seats per level; 256 waiting per token, for at most 10 s.
    fn default() -> RequestLimits {
        RequestLimits {
            request_timeout: Duration::from_secs(60),
            api_seats: 256,
            agent_seats: 256,
            queue_per_flow: 256,
            queue_wait: Duration::from_secs(10),
        }
    }
}

/// Which seats a request takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Node agents (`/v1/agent/…`).
    Agents = 0,
    /// Everything else.
    Api = 1,
}

/// One priority level: free seats and, per flow, the requests waiting for one.
#[derive(Debug, Default)]
struct Seats {
    free: usize,
    waiting: HashMap<u64, VecDeque<oneshot::Sender<()>>>,
    /// Flows with waiting requests, in turn.
    turn: VecDeque<u64>,
}

/// The seats of both levels.
#[derive(Debug)]
pub struct Admission {
    limits: RequestLimits,
    levels: [Mutex<Seats>; 2],
}

/// Why a request got no seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    /// Its flow has `queue_per_flow` requests waiting already.
    QueueFull,
    /// It waited `queue_wait`.
    Waited,
}

/// A seat, given back on drop (to the next flow in turn, if any waits).
struct Seat<'a> {
    level: &'a Mutex<Seats>,
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        let Ok(mut s) = self.level.lock() else { return };
        while let Some(flow) = s.turn.pop_front() {
            let Some(queue) = s.waiting.get_mut(&flow) else { continue };
            let next = queue.pop_front();
            if queue.is_empty() {
                s.waiting.remove(&flow);
            } else {
                s.turn.push_back(flow);
            }
            // A waiter that gave up has dropped its receiver: try the next one.
            if let Some(tx) = next
                && tx.send(()).is_ok()
            {
                return;
            }
        }
        s.free += 1;
    }
}

impl Admission {
    /// Seats as `limits` say.
    #[must_use]
    pub fn new(limits: RequestLimits) -> Admission {
        let level = |n: usize| Mutex::new(Seats { free: n.max(1), ..Seats::default() });
        Admission { limits, levels: [level(limits.agent_seats), level(limits.api_seats)] }
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> RequestLimits {
        self.limits
    }

    async fn seat(&self, level: Level, flow: u64) -> Result<Seat<'_>, Busy> {
        let mutex = &self.levels[level as usize];
        let rx = {
            let Ok(mut s) = mutex.lock() else { return Err(Busy::QueueFull) };
            if s.free > 0 && s.turn.is_empty() {
                s.free -= 1;
                return Ok(Seat { level: mutex });
            }
            let queue = s.waiting.entry(flow).or_default();
            if queue.len() >= self.limits.queue_per_flow {
                return Err(Busy::QueueFull);
            }
            let (tx, rx) = oneshot::channel();
            queue.push_back(tx);
            if queue.len() == 1 {
                s.turn.push_back(flow);
            }
            rx
        };
        match tokio::time::timeout(self.limits.queue_wait, rx).await {
            Ok(Ok(())) => Ok(Seat { level: mutex }),
            _ => Err(Busy::Waited),
        }
    }
}

/// The level a path takes seats in; `None` for what takes none (health, metrics, the
/// API document) and for long-lived requests (the event stream, agents' long polls),
/// which are bounded by the connection cap instead.
fn level_of(path: &str) -> Option<Level> {
    match path {
        "/healthz" | "/readyz" | "/metrics" | "/v1/openapi.json" | "/v1/events" | "/v1/agent/changes" => None,
        p if p.starts_with("/v1/agent/") => Some(Level::Agents),
        _ => Some(Level::Api),
    }
}

/// The flow of a request: its bearer token (hashed; never looked up here), or the
/// anonymous flow.
fn flow_of(req: &Request) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes).hash(&mut h);
    h.finish()
}

/// The middleware: see the module docs.
pub async fn limit(State(admission): State<Arc<Admission>>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > super::MAX_BODY as u64) {
        return super::body_too_large().into_response();
    }
    let Some(level) = level_of(req.uri().path()) else { return next.run(req).await };
    let seat = match admission.seat(level, flow_of(&req)).await {
        Ok(seat) => seat,
        Err(why) => return too_many(why, level),
    };
    let limits = admission.limits();
    let answer = tokio::time::timeout(limits.request_timeout, next.run(req)).await;
    drop(seat);
    answer.unwrap_or_else(|_| {
        ApiError::unavailable(format!(
            "the request took longer than {} s and was abandoned; a change it made may still have been kept: \
             look before retrying, or retry with the same Idempotency-Key",
            limits.request_timeout.as_secs()
        ))
        .into_response()
    })
}

fn too_many(why: Busy, level: Level) -> Response {
    let whose = match level {
        Level::Agents => "node agents",
        Level::Api => "the API",
    };
    let message = match why {
        Busy::QueueFull => format!(
            "this token has too many requests waiting for {whose}; other callers are served in turn: retry after a second"
        ),
        Busy::Waited => {
            format!("{whose} is busy; this request waited its turn too long: retry after a second")
        }
    };
    let mut r =
        ApiError { status: StatusCode::TOO_MANY_REQUESTS, code: "too-many-requests", message, field: None }
            .into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(seats: usize, queue: usize) -> Admission {
        Admission::new(RequestLimits {
            api_seats: seats,
            agent_seats: seats,
            queue_per_flow: queue,
            queue_wait: Duration::from_millis(500),
            ..RequestLimits::default()
        })
    }

    #[tokio::test]
    async fn a_freed_seat_goes_to_the_next_flow_in_turn() {
        let a = Arc::new(admission(1, 8));
        let held = a.seat(Level::Api, 1).await.expect("a free seat");
        // Flow 1 queues three requests, then flow 2 one: flow 2 is served second.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, flow) in [1u64, 1, 1, 2].into_iter().enumerate() {
            let (a, order) = (a.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let seat = a.seat(Level::Api, flow).await.expect("a seat in turn");
                order.lock().expect("lock").push(flow);
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(seat);
            }));
            tokio::time::sleep(Duration::from_millis(5 + i as u64)).await;
        }
        drop(held);
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(*order.lock().expect("lock"), vec![1, 2, 1, 1]);
        // Agents have seats of their own.
        let _api = a.seat(Level::Api, 3).await.expect("api seat");
        assert!(a.seat(Level::Agents, 3).await.is_ok(), "the agents' level is not the API's");
    }

    #[tokio::test]
    async fn a_full_queue_or_a_long_wait_is_refused() {
        let a = admission(1, 1);
        let _held = a.seat(Level::Api, 1).await.expect("a free seat");
        let waiting = a.seat(Level::Api, 2);
        let full = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            a.seat(Level::Api, 2).await.err()
        };
        let (waited, full) = tokio::join!(waiting, full);
        assert_eq!(full, Some(Busy::QueueFull));
        assert_eq!(waited.err(), Some(Busy::Waited));
    }

    #[test]
    fn health_streams_and_long_polls_take_no_seat() {
        assert_eq!(level_of("/healthz"), None);
        assert_eq!(level_of("/v1/events"), None);
        assert_eq!(level_of("/v1/agent/changes"), None);
        assert_eq!(level_of("/v1/agent/heartbeat"), Some(Level::Agents));
        assert_eq!(level_of("/v1/workloads"), Some(Level::Api));
    }
}
