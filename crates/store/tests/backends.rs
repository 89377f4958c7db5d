//! The event log's contract, checked once per backend: every scenario here runs on a
//! fresh SQLite file and on a fresh PostgreSQL database, so the two can never drift.
//!
//! PostgreSQL is `postgres://postgres@127.0.0.1:5432/test`, or `GIGAWATT_TEST_PG`; when it
//! cannot be reached the PostgreSQL half says so on stderr and passes, so a laptop without
//! it still runs the SQLite half, unless `GIGAWATT_TEST_PG` is set: then it fails (CI sets
//! it). Each test creates its own database (`gw_test_…`) because
//! the store uses fixed table names, and drops it at the end.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use gigawatt_api::{JobSpec, Role, WorkloadState};
use gigawatt_core::WorkloadId;
use gigawatt_store::{LogEvent, Record, Store, StoreError, View, fold};
use sqlx::Connection;

mod pg_door;

use pg_door::{pg_admin_url, pg_unreachable, pg_url_of};

/// A database for one test: a SQLite file in a temporary folder, or a PostgreSQL
/// database created for it and dropped when this is dropped.
struct TestDb {
    url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}", dir.path().join("log.db").display());
        TestDb { url, pg_name: None, _dir: Some(dir) }
    }

    /// A fresh PostgreSQL database, or `None` (after saying why) when PostgreSQL is
    /// unreachable.
    async fn postgres(test: &str) -> Option<TestDb> {
        let door = pg_admin_url();
        let mut admin = match sqlx::PgConnection::connect(&door).await {
            Ok(c) => c,
            Err(e) => {
                pg_unreachable(test, &door, &e);
                return None;
            }
        };
        let name = unique_db_name();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE for the test");
        let _ = admin.close().await;
        Some(TestDb { url: pg_url_of(&door, &name), pg_name: Some(name), _dir: None })
    }
}

impl Drop for TestDb {
    /// Drops the PostgreSQL database, even when the test failed: on a thread of its own
    /// with its own runtime, since `drop` cannot await.
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&pg_admin_url()).await.ok()?;
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let done = sqlx::query(&drop).execute(&mut admin).await;
                let _ = admin.close().await;
                done.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: could not drop a test database (gw_test_*); drop it by hand");
        }
    }
}

/// `gw_test_<pid>_<nanos>_<n>`: unique across the tests of this process and across
/// concurrent test processes.
fn unique_db_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("gw_test_{}_{nanos}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Runs `scenario` on SQLite, then on PostgreSQL (unless unreachable).
async fn on_both<F, Fut>(test: &str, scenario: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TestDb::sqlite();
    scenario(db.url.clone()).await;
    drop(db);
    if let Some(db) = TestDb::postgres(test).await {
        scenario(db.url.clone()).await;
        drop(db);
    }
}

fn rec(seq: u64, tenant: Option<&str>, event: LogEvent) -> Record {
    Record {
        seq,
        at_ms: 1_700_000_000_000 + seq as i64,
        tenant: tenant.map(str::to_string),
        actor: None,
        event,
    }
}

/// A small valid log: the header, two tenants, a token, and `workloads` submissions
/// (ids minted the way the server does), every third one cancelled. Positions from 1.
fn sample_log(workloads: u64) -> Vec<Record> {
    let mut view = View::default();
    let mut out = Vec::new();
    let mut push = |view: &mut View, tenant: Option<&str>, event: LogEvent| {
        let r = rec(view.seq + 1, tenant, event);
        view.apply(&r).expect("the sample log is valid");
        out.push(r);
    };
    push(&mut view, None, LogEvent::Initialized { id_key: 0x0bad_cafe_f00d, id_secret: None });
    for t in ["acme", "globex"] {
        push(
            &mut view,
            Some(t),
            LogEvent::TenantCreated {
                tenant: t.into(),
                name: t.to_uppercase(),
                by: Some("tok-admin".into()),
            },
        );
    }
    push(
        &mut view,
        Some("acme"),
        LogEvent::TokenIssued {
            token_id: "tok-1".into(),
            name: "ci".into(),
            role: Role::Tenant,
            tenant: Some("acme".into()),
            sha256: "ab".repeat(32),
            node: None,
            join_expires_at: None,
            by: Some("tok-admin".into()),
        },
    );
    let spec: JobSpec = serde_json::from_value(serde_json::json!({"name": "train"})).expect("a job spec");
    for n in 0..workloads {
        let tenant = if n % 2 == 0 { "acme" } else { "globex" };
        let id = view.id_for(view.submitted);
        let job = spec.validate(id, tenant).expect("a valid job");
        push(
            &mut view,
            Some(tenant),
            LogEvent::WorkloadSubmitted {
                workload: job.workload,
                kind: job.kind,
                run: job.run,
                idempotency_key: Some(format!("key-{n}")),
                by: "tok-1".into(),
            },
        );
        if n % 3 == 0 {
            push(
                &mut view,
                Some(tenant),
                LogEvent::WorkloadFinished {
                    workload: id,
                    state: WorkloadState::Cancelled,
                    exit_code: None,
                    by: Some("tok-1".into()),
                },
            );
        }
    }
    out
}

async fn basic_append_and_read(url: String) {
    let store = Store::open(&url).await.expect("opens");
    assert_eq!(store.last_seq().await.expect("last_seq"), 0, "a new log is empty");
    assert!(store.read_after(0, 10).await.expect("read").is_empty());
    assert!(store.ping().await);

    let log = sample_log(10);
    store.append(&log[..5]).await.expect("append the first five");
    store.append(&[]).await.expect("an empty batch is a no-op");
    store.append(&log[5..]).await.expect("append the rest");
    let last = log.len() as u64;
    assert_eq!(store.last_seq().await.expect("last_seq"), last);

    let all = store.read_after(0, 10_000).await.expect("read all");
    assert_eq!(all, log, "{url}: what was appended reads back the same, in order");
    let page = store.read_after(3, 4).await.expect("read a page");
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![4, 5, 6, 7]);
    assert!(store.read_after(last, 10).await.expect("read past the end").is_empty());

    // One workload's history: its submission and, for every third, its end.
    let first = match &log[4].event {
        LogEvent::WorkloadSubmitted { workload, .. } => workload.id,
        other => panic!("expected a submission at 5, found {other:?}"),
    };
    let history = store.workload_history(first).await.expect("history");
    assert_eq!(
        history.iter().map(|r| r.event.kind()).collect::<Vec<_>>(),
        vec!["workload-submitted", "workload-finished"],
        "{url}: workload 0 was submitted and cancelled"
    );
    assert!(history.iter().all(|r| r.event.workload() == Some(first)));
    assert!(store.workload_history(WorkloadId(123_456_789)).await.expect("history").is_empty());
}

#[tokio::test]
async fn append_read_last_seq_and_history() {
    on_both("append_read_last_seq_and_history", basic_append_and_read).await;
}

async fn conflicts(url: String) {
    let store = Store::open(&url).await.expect("opens");
    let log = sample_log(4);
    store.append(&log[..3]).await.expect("append");
    // A batch starting at a taken position fails whole: nothing of it is written.
    let err = store.append(&log[2..5]).await.expect_err("position 3 is taken");
    assert!(matches!(err, StoreError::Conflict(3)), "{url}: expected Conflict(3), got {err:?}");
    assert_eq!(store.last_seq().await.expect("last_seq"), 3, "{url}: a failed batch writes nothing");

    // Two writers race for the same positions: exactly one wins, the other conflicts.
    for round in 0..10u64 {
        let base = store.last_seq().await.expect("last_seq");
        let a = vec![rec(
            base + 1,
            None,
            LogEvent::NodeDown { node: format!("a{round}"), reason: "a".into(), by: None },
        )];
        let b = vec![
            rec(
                base + 1,
                None,
                LogEvent::NodeDown { node: format!("b{round}"), reason: "b".into(), by: None },
            ),
            rec(base + 2, None, LogEvent::NodeUp { node: format!("b{round}"), reason: "b".into(), by: None }),
        ];
        let other = Store::open(&url).await.expect("a second writer opens");
        let (ra, rb) = tokio::join!(
            tokio::spawn({
                let s = store.clone();
                async move { s.append(&a).await }
            }),
            tokio::spawn(async move { other.append(&b).await }),
        );
        let (ra, rb) = (ra.expect("task a"), rb.expect("task b"));
        let won = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "{url} round {round}: exactly one writer wins: {ra:?} / {rb:?}");
        let loser = if ra.is_ok() { &rb } else { &ra };
        assert!(
            matches!(loser, Err(StoreError::Conflict(s)) if *s == base + 1),
            "{url} round {round}: the loser gets Conflict({}), not {loser:?}",
            base + 1
        );
        let expected = if ra.is_ok() { base + 1 } else { base + 2 };
        assert_eq!(
            store.last_seq().await.expect("last_seq"),
            expected,
            "{url}: only the winner's batch is written"
        );
    }
    // The log stayed dense through the races.
    let seqs: Vec<u64> = store.read_after(0, 10_000).await.expect("read").iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{url}: the log is dense");
}

#[tokio::test]
async fn a_taken_position_conflicts_and_exactly_one_racer_wins() {
    on_both("a_taken_position_conflicts_and_exactly_one_racer_wins", conflicts).await;
}

async fn snapshots(url: String) {
    let store = Store::open(&url).await.expect("opens");
    assert_eq!(store.latest_snapshot().await.expect("latest"), None, "{url}: no snapshot yet");
    store.save_snapshot(10, 1, b"ten").await.expect("save");
    store.save_snapshot(30, 2, b"thirty").await.expect("save");
    store.save_snapshot(20, 3, b"twenty").await.expect("save");
    assert_eq!(store.latest_snapshot().await.expect("latest"), Some((30, b"thirty".to_vec())));
    // Saving the same position twice keeps the first.
    store.save_snapshot(30, 4, b"again").await.expect("save twice");
    assert_eq!(store.latest_snapshot().await.expect("latest"), Some((30, b"thirty".to_vec())));
    store.save_snapshot(40, 5, b"forty").await.expect("save");
    assert_eq!(store.latest_snapshot().await.expect("latest"), Some((40, b"forty".to_vec())));
    // Only the two newest are kept; an older one saved now is pruned at once.
    store.save_snapshot(5, 6, b"five").await.expect("save an old one");
    assert_eq!(snapshot_count(&url).await, 2, "{url}: snapshots are pruned to the two newest");
    assert_eq!(store.latest_snapshot().await.expect("latest"), Some((40, b"forty".to_vec())));
}

/// How many snapshot rows the database holds (straight from the table: the store keeps
/// only the newest two, and that is what this checks).
async fn snapshot_count(url: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM snapshots";
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("sqlite connects");
        sqlx::query_scalar(sql).fetch_one(&mut c).await.expect("count")
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.expect("postgres connects");
        sqlx::query_scalar(sql).fetch_one(&mut c).await.expect("count")
    }
}

#[tokio::test]
async fn snapshots_save_latest_and_prune_to_two() {
    on_both("snapshots_save_latest_and_prune_to_two", snapshots).await;
}

async fn fold_with_and_without_snapshot(url: String) {
    let store = Store::open(&url).await.expect("opens");
    let (empty, report) = fold(&store, true).await.expect("folds an empty log");
    assert_eq!((empty.seq, report.replayed, report.snapshot_seq), (0, 0, None));

    let log = sample_log(60);
    let cut = 40;
    store.append(&log[..cut]).await.expect("append");
    let (at_cut, _) = fold(&store, false).await.expect("fold");
    assert_eq!(at_cut.seq, cut as u64);
    let bytes = serde_json::to_vec(&at_cut).expect("a view serialises");
    store.save_snapshot(at_cut.seq, 0, &bytes).await.expect("save");
    store.append(&log[cut..]).await.expect("append the rest");

    let (full, full_report) = fold(&store, false).await.expect("fold from scratch");
    let (snap, snap_report) = fold(&store, true).await.expect("fold from the snapshot");
    assert_eq!(full_report.snapshot_seq, None);
    assert_eq!(full_report.replayed, log.len() as u64);
    assert_eq!(snap_report.snapshot_seq, Some(cut as u64), "{url}: the snapshot was used");
    assert_eq!(snap_report.replayed, (log.len() - cut) as u64, "{url}: only the tail was replayed");
    assert_eq!(full.seq, log.len() as u64);
    assert_eq!(full.digest(), snap.digest(), "{url}: both folds reach the same state");
    assert_eq!(full, snap);
    // The indexes a snapshot does not carry were rebuilt.
    assert_eq!(snap.by_idempotency_key("acme", "key-0"), full.by_idempotency_key("acme", "key-0"));
    assert!(snap.by_idempotency_key("acme", "key-0").is_some());
    assert_eq!(snap.live(), full.live());

    // A snapshot that does not match its position is ignored, not trusted.
    store.save_snapshot(log.len() as u64 + 100, 0, b"{not a view").await.expect("save junk");
    let (after_junk, junk_report) = fold(&store, true).await.expect("fold past junk");
    assert_eq!(junk_report.snapshot_seq, None, "{url}: an unreadable snapshot is skipped");
    assert_eq!(after_junk.digest(), full.digest());
}

#[tokio::test]
async fn fold_gives_the_same_digest_with_and_without_a_snapshot() {
    on_both("fold_gives_the_same_digest_with_and_without_a_snapshot", fold_with_and_without_snapshot).await;
}

async fn migrations_are_idempotent(url: String) {
    let first = Store::open(&url).await.expect("opens");
    let log = sample_log(3);
    first.append(&log).await.expect("append");
    let second = Store::open(&url).await.expect("opens again: migrations run twice");
    let third = Store::open(&url).await.expect("and a third time");
    assert_eq!(
        second.last_seq().await.expect("last_seq"),
        log.len() as u64,
        "{url}: reopening keeps the log"
    );
    assert_eq!(third.read_after(0, 100).await.expect("read"), log);
    assert_eq!(first.backend_name(), if url.starts_with("sqlite:") { "sqlite" } else { "postgres" });
}

#[tokio::test]
async fn migrations_are_idempotent_on_reopen() {
    on_both("migrations_are_idempotent_on_reopen", migrations_are_idempotent).await;
}
