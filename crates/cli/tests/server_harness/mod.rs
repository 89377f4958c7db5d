//! Drives real `gigawatt serve` processes for the control-plane tests (crash, isolation,
//! concurrency): a fresh event log per test on either backend, a server on a loopback
//! port it picks itself, a small blocking HTTP client, and the checks they share.
//!
//! Every scenario is written once and run on both backends: a SQLite file in a temporary
//! folder, and a PostgreSQL database created for the test on
//! `postgres://postgres@127.0.0.1:5432/test`, or `GIGAWATT_TEST_PG` (dropped at the end).
//! When PostgreSQL is unreachable the PostgreSQL half prints why on stderr and passes,
//! unless `GIGAWATT_TEST_PG` is set: then it fails (CI sets it).
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

// The PostgreSQL door and the rule that makes it required, shared with the store's
// backend tests.
#[path = "../../../store/tests/pg_door/mod.rs"]
mod pg_door;
pub use pg_door::{pg_admin_url, pg_unreachable, pg_url_of};

/// Where the log lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

impl Backend {
    /// Both, in the order the tests run them.
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    /// `sqlite` or `postgres`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A fresh, empty event log for one test. A PostgreSQL database is dropped on drop, even
/// when the test failed; a SQLite file goes with its temporary folder.
pub struct TestDb {
    /// The `--db` URL.
    pub url: String,
    /// Which backend.
    pub backend: Backend,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh log, or `None` (having said why on stderr) when PostgreSQL is unreachable.
    pub fn new(backend: Backend, test: &str) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary folder");
                let url = format!("sqlite://{}", dir.path().join("gigawatt.db").display());
                Some(TestDb { url, backend, pg_name: None, _dir: Some(dir) })
            }
            Backend::Postgres => {
                let name = unique_db_name();
                let door = pg_admin_url();
                let created = block_on(async {
                    let mut admin = sqlx::PgConnection::connect(&door).await?;
                    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
                    admin.close().await
                });
                match created {
                    Ok(()) => Some(TestDb {
                        url: pg_url_of(&door, &name),
                        backend,
                        pg_name: Some(name),
                        _dir: None,
                    }),
                    Err(e) => {
                        pg_unreachable(test, &door, &e);
                        None
                    }
                }
            }
        }
    }
}

impl TestDb {
    /// PostgreSQL: ends every connection to this database (the server's pool and the
    /// one holding its leader lock), as a failover or a restarted database would; the
    /// number ended.
    #[allow(dead_code, reason = "not every test binary cuts connections")]
    pub fn drop_connections(&self) -> u64 {
        let ended: Vec<bool> = self.pg_admin_rows(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        );
        ended.into_iter().filter(|b| *b).count() as u64
    }
}

impl TestDb {
    /// PostgreSQL: whether a session on this database holds an advisory lock (the
    /// leader's).
    #[allow(dead_code, reason = "not every test binary looks at the leader lock")]
    pub fn leader_lock_held(&self) -> bool {
        let n: Vec<i64> = self.pg_admin_rows(
            "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND a.datname = $1",
        );
        n.first().is_some_and(|n| *n > 0)
    }

    /// PostgreSQL: runs `sql` (one column, `$1` bound to this database's name) from an
    /// admin connection; its rows.
    #[allow(dead_code, reason = "only the PostgreSQL fault and stand-by tests use it")]
    fn pg_admin_rows<T>(&self, sql: &'static str) -> Vec<T>
    where
        T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        let name = self.pg_name.clone().expect("a PostgreSQL test database");
        block_on(async {
            let mut admin = sqlx::PgConnection::connect(&pg_admin_url()).await?;
            let rows: Vec<T> = sqlx::query_scalar(sql).bind(&name).fetch_all(&mut admin).await?;
            let _ = admin.close().await;
            Ok::<Vec<T>, sqlx::Error>(rows)
        })
        .unwrap_or_else(|e| panic!("`{sql}` on the test database: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        let dropped = block_on(async {
            let mut admin = sqlx::PgConnection::connect(&pg_admin_url()).await?;
            let done = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
            let _ = admin.close().await;
            done.map(|_| ())
        });
        if let Err(e) = dropped {
            eprintln!("warning: could not drop the test database {name}: {e}");
        }
    }
}

/// Runs a future on a small runtime of its own (the tests themselves are synchronous).
fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the database set-up")
        .block_on(f)
}

/// `gw_test_<pid>_<nanos>_<n>`: unique across tests and concurrent test processes.
fn unique_db_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("gw_test_{}_{nanos}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Runs `scenario` on a fresh log of `backend`, or skips (saying so) when that backend
/// is unreachable. Prints how long it took.
pub fn run_on(backend: Backend, test: &str, scenario: impl FnOnce(&TestDb)) {
    let Some(db) = TestDb::new(backend, test) else { return };
    let started = Instant::now();
    scenario(&db);
    eprintln!("{test} on {}: {:.1} s", backend.name(), started.elapsed().as_secs_f64());
}

/// An 8-GPU H100 server type, for the small fleets tests write (`[node_type.hgx]`).
#[allow(dead_code, reason = "not every test binary writes its own fleet")]
pub const HGX_NODE_TYPE: &str = r#"
[node_type.hgx]
gpu_model = "H100"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 4600
"#;

/// Two sites in France, `paris` first in file order, one 8-GPU H100 server each
/// (`paris01-n01`, `lyon01-n01`), with the certifications given as TOML arrays
/// (`["hds"]`).
#[allow(dead_code, reason = "not every test binary writes its own fleet")]
pub fn two_sites(paris_certs: &str, lyon_certs: &str) -> String {
    let site = |id: &str, certs: &str| {
        format!(
            "[[site]]\nid = \"{id}\"\ncountry = \"FR\"\nregion = \"eu-west-fr\"\ncertifications = {certs}\npue = 1.0\n\
             grid = [{{ from = 2020-01-01, capacity_mw = 0.05 }}]\n\n  [[site.rack_group]]\n  prefix = \"{id}\"\n  \
             count = 1\n  node_type = \"hgx\"\n  nodes_per_rack = 1\n\n"
        )
    };
    format!("{HGX_NODE_TYPE}\n{}{}", site("paris", paris_certs), site("lyon", lyon_certs))
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// The `gigawatt` binary under test.
pub fn gigawatt_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("gigawatt")
}

/// A running `gigawatt serve`. Killed (SIGKILL) and reaped on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The first admin token, printed only when the log was empty.
    pub admin_token: Option<String>,
    /// The log position of the snapshot the server loaded from, as its banner says.
    pub snapshot_seq: Option<u64>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `gigawatt serve` on `db` with the France fleet, on a port the server picks
    /// (`--listen 127.0.0.1:0`, read back from its banner, so no two tests can race for a
    /// port; `extra` may name its own `--listen`), plus `extra` arguments. Returns once it answers `/readyz`.
    pub fn start(db: &TestDb, extra: &[&str]) -> Server {
        Server::start_with_fleet(db, &repo().join("fleets/france.toml"), extra)
    }

    /// Like [`Server::start`], on another fleet file.
    #[allow(dead_code, reason = "not every test binary uses its own fleet")]
    pub fn start_with_fleet(db: &TestDb, fleet: &std::path::Path, extra: &[&str]) -> Server {
        let mut child = Command::new(gigawatt_bin())
            .arg("serve")
            .arg("--fleet")
            .arg(fleet)
            .args(["--db", &db.url])
            .args(if extra.contains(&"--listen") { &[][..] } else { &["--listen", "127.0.0.1:0"][..] })
            .args(extra)
            .env("GIGAWATT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gigawatt serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        {
            let lines = lines.clone();
            // Keep draining stderr for the server's whole life, so it never blocks on a
            // full pipe; keep the lines for failure messages.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = tx.send(line.clone());
                    if let Ok(mut l) = lines.lock() {
                        l.push(line);
                    }
                }
            });
        }
        let mut server =
            Server { child, base: String::new(), admin_token: None, snapshot_seq: None, stderr: lines };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("gigawatt control plane on ") {
                        server.base = rest.trim().to_string();
                    } else if let Some((_, rest)) = line.split_once("(snapshot at ") {
                        server.snapshot_seq = rest.split_whitespace().next().and_then(|n| n.parse().ok());
                    } else if let Some(token) = line.strip_prefix("admin token: ") {
                        server.admin_token = Some(token.trim().to_string());
                        break;
                    } else if line.contains("lost the admin token?") {
                        break;
                    }
                }
                Err(_) => {
                    let status = server.child.try_wait().ok().flatten();
                    panic!(
                        "gigawatt serve on {} did not start (exit status {status:?}); stderr:\n{}",
                        db.url,
                        server.stderr_text()
                    );
                }
            }
        }
        assert!(server.base.starts_with("http"), "no address in the banner:\n{}", server.stderr_text());
        // Readiness only: an HTTPS test checks the certificate itself.
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .danger_accept_invalid_certs(server.base.starts_with("https://"))
            .build()
            .expect("an HTTP client");
        while Instant::now() < deadline {
            if client.get(format!("{}/readyz", server.base)).send().is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("gigawatt serve never became ready; stderr:\n{}", server.stderr_text());
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it.
    /// The server's process id.
    #[allow(dead_code, reason = "not every test binary signals the server")]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything the server printed on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Asserts that the server never reported a panic or an internal error.
    pub fn assert_clean_log(&self) {
        let text = self.stderr_text();
        assert!(
            !text.contains("panicked") && !text.contains("internal error"),
            "the server reported a bug:\n{text}"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking HTTP client with a total time limit per request.
/// Starts `gigawatt agent --simulate 8xH100` for `node` against the server at `base`, its
/// data under `dir/node`, quiet.
#[allow(dead_code, reason = "not every test binary runs agents")]
pub fn spawn_agent(base: &str, token: &str, node: &str, dir: &std::path::Path) -> Child {
    Command::new(gigawatt_bin())
        .args(["agent", "--server", base, "--node", node, "--simulate", "8xH100"])
        .arg("--data-dir")
        .arg(dir.join(node))
        .env("GIGAWATT_TOKEN", token)
        .env("GIGAWATT_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gigawatt agent starts")
}

/// Polls `f` every 50 ms until it gives a value, failing the test after `timeout`.
#[allow(dead_code, reason = "not every test binary waits")]
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn client(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(timeout).build().expect("an HTTP client")
}

/// An answer: its status and its body as JSON (`Null` when it is not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    /// HTTP status.
    pub status: u16,
    /// The body, parsed.
    pub body: Value,
    /// What was asked, for failure messages.
    pub what: String,
}

impl Resp {
    /// Asserts the status, showing the request and the body when it differs.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Resp {
        assert_eq!(self.status, status, "{} answered {}: {}", self.what, self.status, self.body);
        self
    }

    /// Asserts an error answer in the API's shape: `{code, message, field}` with a
    /// non-empty message and `field` present (a string or null).
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Resp {
        self.expect_status(status);
        let b = &self.body;
        assert_eq!(b["code"], code, "{}: error code in {b}", self.what);
        assert!(
            b["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: an error has a message: {b}",
            self.what
        );
        assert!(
            b.get("field").is_some_and(|f| f.is_null() || f.is_string()),
            "{}: an error has a `field` (string or null): {b}",
            self.what
        );
        self
    }

    /// A string field of the body.
    #[track_caller]
    pub fn str(&self, key: &str) -> String {
        self.body[key].as_str().unwrap_or_else(|| panic!("{}: no `{key}` in {}", self.what, self.body)).into()
    }
}

/// The API of one server, as seen by a client.
#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    client: reqwest::blocking::Client,
}

impl Api {
    /// A client of the server at `base`.
    pub fn new(base: &str) -> Api {
        Api { base: base.to_string(), client: client(Duration::from_secs(30)) }
    }

    /// Sends a request; `Err` when no answer came (the server is gone).
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, reqwest::Error> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut req = self.client.request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send()?;
        let status = resp.status().as_u16();
        let text = resp.text()?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Resp { status, body, what: format!("{method} {path}") })
    }

    /// Sends a request that must be answered.
    #[track_caller]
    pub fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Resp {
        self.try_send(method, path, token, body, &[])
            .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"))
    }

    /// `GET path`.
    #[track_caller]
    pub fn get(&self, path: &str, token: &str) -> Resp {
        self.send("GET", path, Some(token), None)
    }

    /// `POST path` with a JSON body.
    #[track_caller]
    pub fn post(&self, path: &str, token: &str, body: &Value) -> Resp {
        self.send("POST", path, Some(token), Some(body))
    }

    /// Creates a tenant (as an admin).
    #[track_caller]
    pub fn create_tenant(&self, admin: &str, id: &str) {
        self.post("/v1/tenants", admin, &json!({"id": id, "name": id.to_uppercase()})).expect_status(201);
    }

    /// Issues a token; returns its id and secret.
    #[track_caller]
    pub fn issue_token(&self, admin: &str, role: &str, tenant: Option<&str>) -> (String, String) {
        let r = self.post(
            "/v1/tokens",
            admin,
            &json!({"name": format!("test {role}"), "role": role, "tenant": tenant}),
        );
        r.expect_status(201);
        (r.str("id"), r.str("token"))
    }

    /// Issues the credential of `node`'s agent (an agent token bound to that node);
    /// returns its id and secret.
    #[track_caller]
    pub fn issue_agent_token(&self, admin: &str, node: &str) -> (String, String) {
        let r = self.post(
            "/v1/tokens",
            admin,
            &json!({"name": format!("agent of {node}"), "role": "agent", "node": node}),
        );
        r.expect_status(201);
        (r.str("id"), r.str("token"))
    }

    /// Issues `node`'s credential and registers a scripted agent of 8 H100s with it;
    /// returns the credential's secret and the node's generation.
    #[track_caller]
    pub fn register_agent(&self, admin: &str, node: &str) -> (String, u64) {
        let (_, agent) = self.issue_agent_token(admin, node);
        let r = self.post("/v1/agent/register", &agent, &inventory(node, 8));
        r.expect_status(200);
        let generation = r.body["generation"].as_u64().expect("a generation");
        (agent, generation)
    }

    /// Submits a one-GPU batch job (`tenant` for admin and operator tokens); returns the
    /// answer.
    #[track_caller]
    pub fn submit(&self, token: &str, name: &str, tenant: Option<&str>) -> Resp {
        self.post("/v1/workloads", token, &job(name, tenant))
    }

    /// Every workload the token sees (all pages), with `query` filters (`state=...&`).
    #[track_caller]
    pub fn list_all(&self, token: &str, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let r = self.get(&format!("/v1/workloads?{query}limit=1000&cursor={cursor}"), token);
            r.expect_status(200);
            out.extend(r.body["items"].as_array().expect("items").iter().cloned());
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = c.to_string(),
                None => return out,
            }
        }
    }

    /// The whole event log (all pages), as an admin, operator or auditor reads it.
    #[track_caller]
    pub fn read_log(&self, token: &str) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        loop {
            let after = out.last().and_then(|e| e["seq"].as_u64()).unwrap_or(0);
            let r = self.get(&format!("/v1/log?after={after}&limit=1000"), token);
            r.expect_status(200);
            let page = r.body.as_array().expect("a list of log entries").clone();
            if page.is_empty() {
                return out;
            }
            out.extend(page);
        }
    }

    /// `GET /v1/state/digest`: the log position and the digest of the server's state.
    #[track_caller]
    pub fn digest(&self, token: &str) -> (u64, String) {
        let r = self.get("/v1/state/digest", token);
        r.expect_status(200);
        (r.body["log_position"].as_u64().expect("log_position"), r.str("digest"))
    }
}

/// A one-GPU batch job.
pub fn job(name: &str, tenant: Option<&str>) -> Value {
    let mut j = json!({"name": name, "kind": "batch", "resources": {"gpus": 1}});
    if let Some(t) = tenant {
        j["tenant"] = json!(t);
    }
    j
}

/// Workload ids in a list of workloads.
pub fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|w| w["id"].as_str().expect("a workload id").to_string()).collect()
}

/// The numeric part of `w-123`, as the log's bodies carry it.
pub fn numeric_id(id: &str) -> u64 {
    id.strip_prefix("w-")
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("`{id}` is not a workload id"))
}

/// `gigawatt admin replay --db URL`: a fresh fold of the log, in another process.
/// Returns the log position and digest it printed.
#[track_caller]
pub fn replay(db: &TestDb) -> (u64, String) {
    let out = Command::new(gigawatt_bin())
        .args(["admin", "replay", "--db", &db.url])
        .output()
        .expect("gigawatt admin replay runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gigawatt admin replay failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no `{key}` in the replay's output:\n{stdout}"))
    };
    let position = field("log position:").parse().expect("a log position");
    (position, field("digest:"))
}

/// Asserts that the server's state digest equals a fresh replay of its log, compared at
/// the same log position (retried while the log moves, e.g. when a time limit falls due
/// in between).
#[track_caller]
pub fn assert_digest_matches_replay(api: &Api, db: &TestDb, admin: &str) {
    let mut last = None;
    for _ in 0..10 {
        let server = api.digest(admin);
        let replayed = replay(db);
        if server.0 == replayed.0 {
            assert_eq!(
                server.1,
                replayed.1,
                "{}: the server's state differs from a fresh replay of its log at position {}",
                db.backend.name(),
                server.0
            );
            return;
        }
        last = Some((server, replayed));
    }
    panic!("the log kept moving while comparing digests: {last:?}");
}

/// A small seeded random stream (SplitMix64), so that every run kills at the same
/// (relative) moments.
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Asserts that a list holds no id twice.
#[track_caller]
pub fn assert_unique(ids: &[String], what: &str) {
    let set: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "{what}: some workload is listed twice");
}

/// A scripted agent's registration of `node` with `count` H100s.
#[allow(dead_code, reason = "not every test binary scripts agents")]
pub fn inventory(node: &str, count: u16) -> Value {
    let gpus: Vec<Value> = (0..count)
        .map(|i| {
            json!({"index": i, "uuid": format!("GPU-{node}-{i}"), "name": "NVIDIA H100 80GB HBM3",
                   "model": "H100-SXM", "memory_mib": 81559, "power_limit_w": 700,
                   "default_power_limit_w": 700, "min_power_limit_w": 200, "max_power_limit_w": 700})
        })
        .collect();
    json!({"node": node, "backend": "simulated", "address": "127.0.0.1", "version": "test", "gpus": gpus})
}

/// A scripted agent's telemetry: 8 GPUs at 300 W.
#[allow(dead_code, reason = "not every test binary scripts agents")]
pub fn telemetry() -> Value {
    let gpus: Vec<Value> = (0..8)
        .map(|i| {
            json!({"index": i, "power_w": 300, "utilization_pct": 50, "memory_used_mib": 1000,
                        "temperature_c": 50, "power_limit_w": 700, "energy_j": 1000.0})
        })
        .collect();
    json!({"power_w": 2400, "gpus": gpus})
}

/// A scripted agent's heartbeat.
#[allow(dead_code, reason = "not every test binary scripts agents")]
pub fn heartbeat(api: &Api, token: &str, node: &str, generation: u64, tasks: &[Value]) -> Resp {
    api.post(
        "/v1/agent/heartbeat",
        token,
        &json!({"node": node, "generation": generation, "telemetry": telemetry(), "tasks": tasks}),
    )
}

/// A scripted agent's report of assignment `a`.
#[allow(dead_code, reason = "not every test binary scripts agents")]
pub fn report(a: &Value, state: &str, exit_code: Option<i32>, energy_j: f64) -> Value {
    json!({"workload": a["workload"], "task": a["task"], "generation": a["generation"], "state": state,
           "pid": 4242, "exit_code": exit_code, "signal": null, "energy_j": energy_j, "message": null})
}
