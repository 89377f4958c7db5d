//! A fake control plane: just enough HTTP/1.1 and protocol to drive `gigawatt_agent::run`
//! (one request per connection, JSON bodies, the agent routes only).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gigawatt_api::ApiErrorBody;
use gigawatt_api::agent::{
    Assignment, Desired, Heartbeat, LogAck, LogChunk, LogStream, RegisterAgent, Registered, TaskKey,
    TaskState,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const TOKEN: &str = "agent-secret";

/// How the fake answers heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Answer,
    /// 409 stale-generation once, then answer with no assignment.
    StaleOnce,
    /// 503 to every heartbeat.
    Unavailable,
}

#[derive(Debug)]
pub struct State {
    pub register_error: Option<(u16, &'static str, &'static str)>,
    pub generation: u64,
    pub registrations: Vec<RegisterAgent>,
    pub heartbeats: Vec<Heartbeat>,
    pub mode: Mode,
    pub assignments: Vec<Assignment>,
    pub power_limits_w: BTreeMap<u16, u64>,
    pub fence_after_ms: u64,
    pub logs: BTreeMap<(TaskKey, &'static str), Vec<u8>>,
    /// The stdout held when a task's end was first reported.
    pub stdout_at_end: BTreeMap<TaskKey, Vec<u8>>,
}

#[derive(Clone)]
pub struct Fake {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Fake {
    pub async fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State {
            register_error: None,
            generation: 0,
            registrations: Vec::new(),
            heartbeats: Vec::new(),
            mode: Mode::Answer,
            assignments: Vec::new(),
            power_limits_w: BTreeMap::new(),
            fence_after_ms: 5_000,
            logs: BTreeMap::new(),
            stdout_at_end: BTreeMap::new(),
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Fake { url, state }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake state lock")
    }

    /// Polls `f` every 20 ms until it returns `Some`, for at most `secs`.
    pub async fn wait_for<T>(&self, secs: u64, what: &str, mut f: impl FnMut(&State) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(v) = f(&self.state()) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {:#?}",
                self.state()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

fn error(status: u16, code: &str, message: &str) -> (u16, String) {
    let body = ApiErrorBody { code: code.into(), message: message.into(), field: None };
    (status, serde_json::to_string(&body).expect("serialisable"))
}

fn ok<T: serde::Serialize>(v: &T) -> (u16, String) {
    (200, serde_json::to_string(v).expect("serialisable"))
}

fn handle(state: &Mutex<State>, path: &str, auth: Option<&str>, body: &[u8]) -> (u16, String) {
    if auth != Some(&format!("Bearer {TOKEN}")) {
        return error(401, "unauthorized", "bad token");
    }
    let mut s = state.lock().expect("fake state lock");
    match path {
        "/v1/agent/register" => {
            if let Some((status, code, message)) = s.register_error {
                return error(status, code, message);
            }
            let Ok(r) = serde_json::from_slice::<RegisterAgent>(body) else {
                return error(400, "bad", "body");
            };
            s.registrations.push(r.clone());
            s.generation += 1;
            ok(&Registered {
                node: r.node,
                generation: s.generation,
                heartbeat_interval_ms: 100,
                lost_after_ms: s.fence_after_ms * 2,
                fence_after_ms: s.fence_after_ms,
            })
        }
        "/v1/agent/heartbeat" => {
            let Ok(hb) = serde_json::from_slice::<Heartbeat>(body) else { return error(400, "bad", "body") };
            if hb.generation != s.generation {
                return error(409, "stale-generation", "stale");
            }
            match s.mode {
                Mode::Unavailable => return error(503, "unavailable", "down"),
                Mode::StaleOnce => {
                    s.mode = Mode::Answer;
                    s.assignments.clear();
                    s.generation += 1;
                    return error(409, "stale-generation", "the node was declared lost");
                }
                Mode::Answer => {}
            }
            let mut acknowledged = Vec::new();
            for t in &hb.tasks {
                let key = TaskKey { workload: t.workload.clone(), task: t.task, generation: t.generation };
                if matches!(t.state, TaskState::Exited | TaskState::FailedToStart) {
                    let held = s.logs.get(&(key.clone(), "stdout")).cloned().unwrap_or_default();
                    s.stdout_at_end.entry(key.clone()).or_insert(held);
                    acknowledged.push(key);
                }
            }
            // Ended tasks are no longer assigned.
            let ended: Vec<TaskKey> = acknowledged.clone();
            s.assignments.retain(|a| {
                !ended
                    .iter()
                    .any(|k| k.workload == a.workload && k.task == a.task && k.generation == a.generation)
            });
            s.heartbeats.push(hb);
            ok(&Desired {
                assignments: s.assignments.clone(),
                acknowledged,
                power_limits_w: s.power_limits_w.clone(),
                grace_ms: 300,
            })
        }
        "/v1/agent/logs" => {
            let Ok(c) = serde_json::from_slice::<LogChunk>(body) else { return error(400, "bad", "body") };
            if c.generation != s.generation {
                return error(409, "stale-generation", "stale");
            }
            let Ok(data) = STANDARD.decode(&c.data_base64) else { return error(400, "bad", "base64") };
            let stream = match c.stream {
                LogStream::Stdout => "stdout",
                LogStream::Stderr => "stderr",
            };
            let held = s.logs.entry((c.key, stream)).or_default();
            let have = held.len() as u64;
            if c.offset <= have {
                let skip = usize::try_from(have - c.offset).expect("small");
                held.extend(data.iter().skip(skip));
            }
            ok(&LogAck { length: held.len() as u64 })
        }
        _ => error(404, "not-found", "no such route"),
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, content_length) = loop {
        let Ok(n) = stream.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, len);
        }
    };
    while buf.len() < head_end + content_length {
        let Ok(n) = stream.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let auth = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("authorization").then(|| value.trim().to_owned())
    });
    let (status, body) = handle(&state, &path, auth.as_deref(), &buf[head_end..head_end + content_length]);
    let answer = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}
