//! Where the log lives: an embedded SQLite file (WAL mode) or a PostgreSQL database.
//!
//! Both hold the same two tables (see `migrations/`): `events`, append-only with a dense
//! `seq`, and `snapshots`. Appends are optimistic: a batch is written at the positions
//! the writer expects, in one transaction, and a position already taken (another writer,
//! such as `gigawatt admin create-token` run against the same database) fails the whole
//! batch with [`StoreError::Conflict`], so the writer can catch up and retry.

use std::str::FromStr;
use std::time::Duration;

use gigawatt_core::WorkloadId;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row};

use crate::event::{LogEvent, Record};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Rows per INSERT statement (8 bound values each; both databases allow 32,766+).
const ROWS_PER_INSERT: usize = 1000;

/// Why the log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite://…` nor `postgres://…`, or is malformed.
    #[error("database URL `{url}`: {message}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// Another writer appended at a position this batch expected to take.
    #[error("event log position {0} is already taken: another writer appended to the log")]
    Conflict(u64),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored record does not parse: the log was edited by hand or by a newer version.
    #[error("event log entry {seq} does not parse: {message}")]
    Corrupt {
        /// Position.
        seq: u64,
        /// Why.
        message: String,
    },
}

/// How durable a SQLite commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync on every commit: survives power loss (SQLite `synchronous=FULL`).
    #[default]
    Full,
    /// fsync at checkpoints only: survives a crash of the process, not of the machine
    /// (SQLite `synchronous=NORMAL` in WAL mode).
    Normal,
}

#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The event log and its snapshots.
#[derive(Clone)]
pub struct Store {
    pub(crate) backend: Backend,
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend_name()).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the log at `url` and brings its schema up to date.
    ///
    /// * `sqlite://path/to/file.db` (or `sqlite:file.db`): an embedded file, created if
    ///   missing, in WAL mode.
    /// * `postgres://user@host:port/db` (or `postgresql://`).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, Durability::default()).await
    }

    /// [`Store::open`] with a chosen SQLite durability (PostgreSQL always commits
    /// durably).
    pub async fn open_with(url: &str, durability: Durability) -> Result<Store, StoreError> {
        let bad = |message: String| StoreError::Url { url: url.to_string(), message };
        let backend = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| bad(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(match durability {
                    Durability::Full => SqliteSynchronous::Full,
                    Durability::Normal => SqliteSynchronous::Normal,
                })
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(false);
            let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
            SQLITE_MIGRATIONS.run(&pool).await?;
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).map_err(|e| bad(e.to_string()))?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            Backend::Postgres(pool)
        } else {
            return Err(bad("use sqlite://FILE or postgres://USER@HOST:PORT/DATABASE".into()));
        };
        Ok(Store { backend, url: url.to_string() })
    }

    /// `sqlite` or `postgres`.
    #[must_use]
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The URL it was opened with.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Appends `records` (whose `seq`s must follow the log's last one, densely) in one
    /// transaction: all or none. Returns their leaf hashes, as written beside them, so
    /// the audit trail need not encode each record a second time.
    pub async fn append(&self, records: &[Record]) -> Result<Vec<gigawatt_transparency::Hash>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows = Vec::with_capacity(records.len());
        let mut hashes = Vec::with_capacity(records.len());
        for r in records {
            let corrupt = |e: serde_json::Error| StoreError::Corrupt { seq: r.seq, message: e.to_string() };
            let body = serde_json::to_string(&r.event).map_err(corrupt)?;
            let actor = r.actor.as_ref().map(serde_json::to_string).transpose().map_err(corrupt)?;
            let hash = gigawatt_transparency::leaf_hash(&r.leaf());
            hashes.push(hash);
            let leaf = hash.to_vec();
            rows.push((
                r.seq as i64,
                r.at_ms,
                r.event.kind(),
                r.event.workload().map(|w| w.0 as i64),
                r.tenant.as_deref(),
                body,
                actor,
                leaf,
            ));
        }
        let first = records[0].seq;
        let conflict = |e: sqlx::Error| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(first),
            _ => StoreError::Database(e),
        };
        macro_rules! insert {
            ($pool:expr) => {{
                let mut conn = $pool.acquire().await?;
                let written = async {
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    for chunk in rows.chunks(ROWS_PER_INSERT) {
                        let mut q = QueryBuilder::new(
                            "INSERT INTO events (seq, at_ms, kind, workload, tenant, body, actor, leaf_hash) ",
                        );
                        q.push_values(chunk, |mut b, row| {
                            b.push_bind(row.0)
                                .push_bind(row.1)
                                .push_bind(row.2)
                                .push_bind(row.3)
                                .push_bind(row.4)
                                .push_bind(&row.5)
                                .push_bind(&row.6)
                                .push_bind(&row.7);
                        });
                        q.build().execute(&mut *tx).await.map_err(conflict)?;
                    }
                    tx.commit().await.map_err(conflict)
                }
                .await;
                if written.is_err() {
                    // A write that failed (a full disk, a dropped connection), even at
                    // its commit, may leave the connection inside its transaction,
                    // holding the write lock: on SQLite every other connection then
                    // reads "database is locked" until the pool happens to hand this one
                    // out again (the full-disk test healed after 12 s, or not in 30).
                    // It is closed, never returned to the pool.
                    conn.close_on_drop();
                }
                written?;
            }};
        }
        match &self.backend {
            Backend::Sqlite(pool) => insert!(pool),
            Backend::Postgres(pool) => insert!(pool),
        }
        Ok(hashes)
    }

    /// The last position written (0 for an empty log).
    pub async fn last_seq(&self) -> Result<u64, StoreError> {
        let sql = "SELECT COALESCE(MAX(seq), 0) FROM events";
        let n: i64 = match &self.backend {
            Backend::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
            Backend::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
        };
        Ok(n as u64)
    }

    /// Up to `limit` records after position `after`, in order.
    pub async fn read_after(&self, after: u64, limit: u32) -> Result<Vec<Record>, StoreError> {
        // Positions are stored as BIGINT: anything past i64::MAX is past the end.
        let after = after.min(i64::MAX as u64);
        let sql = "SELECT seq, at_ms, tenant, body, actor FROM events WHERE seq > $1 ORDER BY seq LIMIT $2";
        let rows: Vec<EventRow> = match &self.backend {
            Backend::Sqlite(p) => {
                sqlx::query_as(sql).bind(after as i64).bind(i64::from(limit)).fetch_all(p).await?
            }
            Backend::Postgres(p) => {
                sqlx::query_as(sql).bind(after as i64).bind(i64::from(limit)).fetch_all(p).await?
            }
        };
        rows.into_iter().map(parse_row).collect()
    }

    /// Every record about one workload, in order.
    pub async fn workload_history(&self, id: WorkloadId) -> Result<Vec<Record>, StoreError> {
        let sql = "SELECT seq, at_ms, tenant, body, actor FROM events WHERE workload = $1 ORDER BY seq";
        let rows: Vec<EventRow> = match &self.backend {
            Backend::Sqlite(p) => sqlx::query_as(sql).bind(id.0 as i64).fetch_all(p).await?,
            Backend::Postgres(p) => sqlx::query_as(sql).bind(id.0 as i64).fetch_all(p).await?,
        };
        rows.into_iter().map(parse_row).collect()
    }

    /// Saves a snapshot of the state as of position `seq`, keeping the two newest.
    pub async fn save_snapshot(&self, seq: u64, at_ms: i64, body: &[u8]) -> Result<(), StoreError> {
        let insert =
            "INSERT INTO snapshots (seq, at_ms, body) VALUES ($1, $2, $3) ON CONFLICT (seq) DO NOTHING";
        let prune =
            "DELETE FROM snapshots WHERE seq NOT IN (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT 2)";
        match &self.backend {
            Backend::Sqlite(p) => sqlite_save_snapshot(p, seq, at_ms, body).await?,
            Backend::Postgres(p) => {
                sqlx::query(insert).bind(seq as i64).bind(at_ms).bind(body).execute(p).await?;
                sqlx::query(prune).execute(p).await?;
            }
        }
        Ok(())
    }

    /// The newest snapshot: its position and bytes.
    pub async fn latest_snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let sql = "SELECT seq, body FROM snapshots ORDER BY seq DESC LIMIT 1";
        let row = match &self.backend {
            Backend::Sqlite(p) => {
                match sqlx::query(sql)
                    .fetch_optional(p)
                    .await?
                    .map(|r| (r.get::<i64, _>(0), r.get::<Vec<u8>, _>(1)))
                {
                    Some((seq, body)) => Some((seq, sqlite_join_parts(p, seq, body).await?)),
                    None => None,
                }
            }
            Backend::Postgres(p) => sqlx::query(sql)
                .fetch_optional(p)
                .await?
                .map(|r| (r.get::<i64, _>(0), r.get::<Vec<u8>, _>(1))),
        };
        Ok(row.map(|(s, b)| (s as u64, b)))
    }

    /// Deletes everything (tests and benchmarks only: the log is append-only).
    pub async fn wipe_for_tests(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => {
                sqlx::query("DELETE FROM events").execute(p).await?;
                sqlx::query("DELETE FROM snapshots").execute(p).await?;
                sqlx::query("DELETE FROM snapshot_parts").execute(p).await?;
            }
            Backend::Postgres(p) => {
                sqlx::query("TRUNCATE events, snapshots").execute(p).await?;
            }
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.is_ok(),
            Backend::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.is_ok(),
        }
    }
}

/// Size of one part of a large SQLite snapshot: each part is one short transaction, so
/// appends wait a few milliseconds at most behind a snapshot being saved.
const SNAPSHOT_PART: usize = 1 << 20;

/// Starts the `snapshots` body of a snapshot saved in parts; `PARTS LENGTH` follow. No
/// snapshot body starts with a NUL byte (they are JSON).
const PARTS_MARK: &[u8] = b"\0gigawatt-snapshot-parts\0";

/// Saves a SQLite snapshot and prunes old ones. A large one is saved in parts, each in its
/// own transaction, then the `snapshots` row naming them, so that it is whole or absent.
///
/// Parts are written and deleted with `synchronous=NORMAL` (no fsync each; WAL mode stays
/// consistent, and checkpoints still sync), and the `snapshots` rows with the store's own
/// setting: with `FULL`, the row's fsync makes the parts before it durable too. An fsync
/// per part would queue with the writer's commits.
async fn sqlite_save_snapshot(p: &SqlitePool, seq: u64, at_ms: i64, body: &[u8]) -> Result<(), StoreError> {
    let insert = "INSERT INTO snapshots (seq, at_ms, body) VALUES ($1, $2, $3) ON CONFLICT (seq) DO NOTHING";
    let prune =
        "DELETE FROM snapshots WHERE seq NOT IN (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT 2)";
    let mut conn = p.acquire().await?;
    let result = async {
        let exists = sqlx::query("SELECT 1 FROM snapshots WHERE seq = $1")
            .bind(seq as i64)
            .fetch_optional(&mut *conn)
            .await?;
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await?;
        let relaxed = "PRAGMA synchronous = NORMAL";
        let restore = format!("PRAGMA synchronous = {sync}");
        if exists.is_none() {
            let mut row = body;
            let mark;
            if body.len() > SNAPSHOT_PART {
                sqlx::query(relaxed).execute(&mut *conn).await?;
                // Leftovers of an interrupted save at this position.
                sqlx::query("DELETE FROM snapshot_parts WHERE seq = $1")
                    .bind(seq as i64)
                    .execute(&mut *conn)
                    .await?;
                let mut parts = 0i64;
                for chunk in body.chunks(SNAPSHOT_PART) {
                    sqlx::query("INSERT INTO snapshot_parts (seq, part, body) VALUES ($1, $2, $3)")
                        .bind(seq as i64)
                        .bind(parts)
                        .bind(chunk)
                        .execute(&mut *conn)
                        .await?;
                    parts += 1;
                }
                sqlx::query(&restore).execute(&mut *conn).await?;
                mark = [PARTS_MARK, format!("{parts} {}", body.len()).as_bytes()].concat();
                row = &mark;
            }
            sqlx::query(insert).bind(seq as i64).bind(at_ms).bind(row).execute(&mut *conn).await?;
        }
        sqlx::query(prune).execute(&mut *conn).await?;
        // The parts of snapshots no longer kept, and of interrupted saves older than the
        // newest snapshot, one part per transaction.
        let orphans: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT seq, part FROM snapshot_parts WHERE seq NOT IN (SELECT seq FROM snapshots) \
             AND seq < (SELECT COALESCE(MAX(seq), 0) FROM snapshots)",
        )
        .fetch_all(&mut *conn)
        .await?;
        if !orphans.is_empty() {
            sqlx::query(relaxed).execute(&mut *conn).await?;
            for (seq, part) in orphans {
                sqlx::query("DELETE FROM snapshot_parts WHERE seq = $1 AND part = $2")
                    .bind(seq)
                    .bind(part)
                    .execute(&mut *conn)
                    .await?;
            }
            sqlx::query(&restore).execute(&mut *conn).await?;
        }
        Ok::<(), StoreError>(())
    }
    .await;
    if result.is_err() {
        // It may be left committing without fsync: never give it back to the pool.
        drop(conn.detach());
    }
    result
}

/// The bytes of the SQLite snapshot at `seq` whose `snapshots` body is `body`: the body
/// itself, or its parts joined. Missing parts give empty bytes, which do not parse: the
/// snapshot is then ignored and the log replayed, as for any unreadable snapshot.
async fn sqlite_join_parts(p: &SqlitePool, seq: i64, body: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let Some(rest) = body.strip_prefix(PARTS_MARK) else { return Ok(body) };
    let text = String::from_utf8_lossy(rest);
    let mut it = text.split(' ').map(str::parse::<usize>);
    let (Some(Ok(parts)), Some(Ok(len))) = (it.next(), it.next()) else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(len);
    for part in 0..parts {
        let chunk: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT body FROM snapshot_parts WHERE seq = $1 AND part = $2")
                .bind(seq)
                .bind(part as i64)
                .fetch_optional(p)
                .await?;
        match chunk {
            Some(c) => out.extend_from_slice(&c),
            None => return Ok(Vec::new()),
        }
    }
    if out.len() != len {
        return Ok(Vec::new());
    }
    Ok(out)
}

/// `events` as read: seq, at_ms, tenant, body, actor.
pub(crate) type EventRow = (i64, i64, Option<String>, String, Option<String>);

pub(crate) fn parse_row((seq, at_ms, tenant, body, actor): EventRow) -> Result<Record, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt { seq: seq as u64, message: e.to_string() };
    let event: LogEvent = serde_json::from_str(&body).map_err(corrupt)?;
    let actor = actor.as_deref().map(serde_json::from_str).transpose().map_err(corrupt)?;
    Ok(Record { seq: seq as u64, at_ms, tenant, actor, event })
}

/// What [`fold`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoldReport {
    /// Log position of the snapshot started from, if one was used.
    pub snapshot_seq: Option<u64>,
    /// Records replayed on top of it.
    pub replayed: u64,
}

/// Why the log could not be folded.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    /// Reading failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record contradicts the ones before it.
    #[error(transparent)]
    View(#[from] crate::view::ViewError),
}

/// Folds the whole log into a [`crate::View`]: from the newest readable snapshot (unless
/// `use_snapshot` is false) and then every record after it, in chunks.
pub async fn fold(store: &Store, use_snapshot: bool) -> Result<(crate::View, FoldReport), FoldError> {
    let mut report = FoldReport::default();
    let mut view = crate::View::default();
    if use_snapshot && let Some((seq, bytes)) = store.latest_snapshot().await? {
        match serde_json::from_slice::<crate::View>(&bytes) {
            Ok(mut v) if v.seq == seq => {
                v.reindex();
                report.snapshot_seq = Some(seq);
                view = v;
            }
            _ => {}
        }
    }
    loop {
        let records = store.read_after(view.seq, 20_000).await?;
        if records.is_empty() {
            break;
        }
        for r in &records {
            view.apply(r)?;
        }
        report.replayed += records.len() as u64;
    }
    Ok((view, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot larger than a part is saved in parts, read back whole, and its parts go
    /// when it is pruned.
    #[tokio::test]
    async fn large_sqlite_snapshots_round_trip_in_parts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("log.db").display());
        let store = Store::open(&url).await.expect("opens");
        let Backend::Sqlite(pool) = &store.backend else { panic!("sqlite") };
        let big = |n: u8| -> Vec<u8> { (0..SNAPSHOT_PART * 5 / 2).map(|i| (i % 251) as u8 ^ n).collect() };
        let parts = || async {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM snapshot_parts")
                .fetch_one(pool)
                .await
                .expect("count");
            n
        };
        store.save_snapshot(10, 1, &big(1)).await.expect("save");
        assert_eq!(parts().await, 3, "2.5 MiB in 1 MiB parts");
        assert_eq!(store.latest_snapshot().await.expect("latest"), Some((10, big(1))));
        // Saving the same position again keeps the first.
        store.save_snapshot(10, 2, &big(2)).await.expect("save again");
        assert_eq!(store.latest_snapshot().await.expect("latest"), Some((10, big(1))));
        store.save_snapshot(20, 3, b"small").await.expect("save small");
        store.save_snapshot(30, 4, &big(3)).await.expect("save");
        assert_eq!(store.latest_snapshot().await.expect("latest"), Some((30, big(3))));
        assert_eq!(parts().await, 3, "the parts of the pruned snapshot at 10 are gone");
        // A snapshot row whose parts are missing reads as unreadable (empty), not an error.
        sqlx::query("DELETE FROM snapshot_parts WHERE seq = 30 AND part = 1")
            .execute(pool)
            .await
            .expect("delete");
        assert_eq!(store.latest_snapshot().await.expect("latest"), Some((30, Vec::new())));
    }
}
