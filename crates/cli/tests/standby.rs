//! A PostgreSQL leader that loses its lock to another server stands by, then leads
//! again. The test plays the other server: the moment the leader's lock connection is
//! ended, it takes the advisory lock itself and writes to the log (`gigawatt admin
//! create-token`, straight into it). Meanwhile the old leader refuses writes with the
//! reason, on `/readyz` too, and keeps answering reads; once the lock is free, it takes
//! it again, loads what was written meanwhile, and writes again.
//!
//! And two real `gigawatt serve` on one PostgreSQL log: the second waits while the first
//! leads, and leads once the first is killed, with everything the first wrote.

mod server_harness;

use std::process::Command;
use std::time::Duration;

use server_harness::{Api, Backend, Server, TestDb, gigawatt_bin, job, replay, wait_for};
use sqlx::Connection as _;

/// The leader lock's key ("gigawatt" in ASCII), as `gigawatt_store::leader` takes it.
const LOCK_KEY: i64 = 0x6769_6761_7761_7474;

#[test]
fn a_leader_that_lost_its_lock_stands_by_then_leads_again_on_postgres() {
    let Some(db) = TestDb::new(Backend::Postgres, "standby") else { return };
    let server = Server::start(&db, &[]);
    let admin = server.admin_token.clone().expect("admin token");
    let api = Api::new(&server.base);
    api.create_tenant(&admin, "acme");
    let (_, tenant) = api.issue_token(&admin, "tenant", Some("acme"));
    api.post("/v1/workloads", &tenant, &job("before", None)).expect_status(201);

    // Another server: ends the leader's lock connection and takes the lock.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut other = rt.block_on(sqlx::PgConnection::connect(&db.url)).expect("a connection");
    let took = (0..20).any(|_| {
        rt.block_on(async {
            sqlx::query(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND a.datname = current_database() AND l.pid <> pg_backend_pid()",
            )
            .fetch_all(&mut other)
            .await
            .expect("ending the lock's connection");
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(LOCK_KEY)
                .fetch_one(&mut other)
                .await
                .expect("trying the lock")
        })
    });
    assert!(took, "the other server took the lock");

    // The old leader stands by: writes refused with the reason, reads answered.
    let http = server_harness::client(Duration::from_secs(5));
    let why = wait_for("the old leader to stand by", Duration::from_secs(10), || {
        let r = http.get(format!("{}/readyz", server.base)).send().ok()?;
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().ok()?;
        // First it may say it lost its lock connection and is taking the lock again;
        // once it has tried, it names the other leader.
        let why = v["status"].as_str().unwrap_or_default().to_string();
        (status == 503 && why.contains("another gigawatt server leads")).then_some(why)
    });
    assert!(why.contains("writes are refused"), "{why}");
    let r = api.post("/v1/workloads", &tenant, &job("refused", None));
    r.expect_error(503, "unavailable");
    assert!(r.str("message").contains("another gigawatt server leads"), "{}", r.body);
    api.get("/v1/workloads", &tenant).expect_status(200);

    // The other server writes to the log, then stops leading.
    let out = Command::new(gigawatt_bin())
        .args(["admin", "create-token", "--db", &db.url, "--role", "operator", "--name", "while standing by"])
        .output()
        .expect("gigawatt admin create-token runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let operator = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("operator token: ").map(str::to_string))
        .expect("a token");
    rt.block_on(async {
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(LOCK_KEY).execute(&mut other).await.expect("unlock")
    });

    // The old leader leads again, with what was written meanwhile, and writes again.
    wait_for("the old leader to lead again", Duration::from_secs(10), || {
        http.get(format!("{}/readyz", server.base)).send().ok().filter(|r| r.status().is_success())
    });
    api.get("/v1/whoami", &operator).expect_status(200);
    api.post("/v1/workloads", &tenant, &job("after", None)).expect_status(201);
    assert_eq!(api.list_all(&tenant, "").len(), 2, "before and after; the refused one never was");
    let digest = api.digest(&admin);
    drop(server);
    assert_eq!(replay(&db), digest, "the live state equals a replay of the log");
}

#[test]
fn a_second_server_waits_for_the_first_then_leads_with_its_log_on_postgres() {
    let Some(db) = TestDb::new(Backend::Postgres, "standby_race") else { return };
    let mut first = Server::start(&db, &[]);
    let admin = first.admin_token.clone().expect("admin token");
    let api = Api::new(&first.base);
    api.create_tenant(&admin, "acme");
    let (_, tenant) = api.issue_token(&admin, "tenant", Some("acme"));
    api.post("/v1/workloads", &tenant, &job("first-1", None)).expect_status(201);

    let second = std::thread::scope(|scope| {
        // The second starts while the first leads: it waits, and serves nothing meanwhile.
        let second = scope.spawn(|| Server::start(&db, &[]));
        std::thread::sleep(Duration::from_secs(2));
        assert!(!second.is_finished(), "the second server does not lead while the first does");
        api.post("/v1/workloads", &tenant, &job("first-2", None)).expect_status(201);
        // The first dies: the second takes the lock, loads the log and serves.
        first.kill();
        second.join().expect("the second server started")
    });
    assert!(
        second.stderr_text().contains("another gigawatt server leads this PostgreSQL log"),
        "{}",
        second.stderr_text()
    );
    let api = Api::new(&second.base);
    api.post("/v1/workloads", &tenant, &job("second-1", None)).expect_status(201);
    let names: Vec<String> = api
        .list_all(&tenant, "")
        .iter()
        .map(|w| w["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for n in ["first-1", "first-2", "second-1"] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
    let digest = api.digest(&admin);
    drop(second);
    assert_eq!(replay(&db), digest, "the live state equals a replay of the log");
}
