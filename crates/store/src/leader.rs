//! Leadership: one control plane writes a log at a time.
//!
//! Appends are optimistic (see [`crate::Store::append`]), so two writers can never
//! corrupt a log, but they would keep forcing each other to reload. A server therefore
//! becomes the log's leader before it loads it: on PostgreSQL by holding a session-level
//! advisory lock (released by PostgreSQL the moment the leader's connection dies, so a
//! standby waiting on the same lock takes over), on SQLite by holding an exclusive `flock`
//! on the database file itself (released by the kernel when the process dies).
//!
//! The SQLite lock is on the file, not on a path: a second server that reaches the same
//! database through another path, a symlink or a hard link opens the same inode and
//! waits. It cannot disturb SQLite's own locks: SQLite locks byte ranges with `fcntl`,
//! which `flock` does not touch on Linux. One rule keeps it that way: closing any
//! descriptor of the file drops every `fcntl` lock this process holds on it, SQLite's
//! included. So the lock's descriptor is never closed; giving leadership up unlocks it
//! (`LOCK_UN`), and the descriptor lives until the process ends.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::SqliteConnectOptions;

use crate::{Store, StoreError};

/// The advisory lock key: "gigawatt" in ASCII.
const LOCK_KEY: i64 = 0x6769_6761_7761_7474;

/// Held while this process leads the log. Dropping it gives leadership up.
pub struct Leadership {
    guard: Guard,
}

enum Guard {
    /// The database file, locked; never closed (see the module docs).
    File(&'static std::fs::File),
    Postgres(PgConnection),
    Nothing,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.guard {
            Guard::File(_) => "lock file",
            Guard::Postgres(_) => "advisory lock",
            Guard::Nothing => "none",
        };
        f.debug_struct("Leadership").field("guard", &kind).finish()
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Guard::File(file) = self.guard {
            // Unlock without closing: closing would drop SQLite's fcntl locks too.
            let _ = file.unlock();
        }
    }
}

impl Leadership {
    /// Whether leadership still holds. On PostgreSQL this asks the server over the lock's
    /// own connection: if that connection is gone, so is the lock, and another server may
    /// already lead: the caller must stop writing.
    pub async fn holds(&mut self) -> bool {
        match &mut self.guard {
            Guard::Postgres(conn) => {
                let q = sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() \
                     AND ((classid::bigint << 32) | objid::bigint) = $1",
                )
                .bind(LOCK_KEY);
                matches!(tokio::time::timeout(Duration::from_secs(5), q.fetch_one(conn)).await, Ok(Ok(n)) if n > 0)
            }
            Guard::File(_) | Guard::Nothing => true,
        }
    }
}

impl Leadership {
    /// Tries once to lead again after [`Leadership::holds`] said no: on PostgreSQL,
    /// over a new connection, takes the lock if nobody else holds it. `Ok(false)`: another
    /// server leads now (stand by and try again later).
    ///
    /// # Errors
    /// The database cannot be reached.
    pub async fn regain(&mut self, store: &Store) -> Result<bool, StoreError> {
        if !matches!(self.guard, Guard::Postgres(_)) {
            return Ok(true);
        }
        let url = store.url().to_string();
        let opts = PgConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Url { url: url.clone(), message: e.to_string() })?;
        let mut conn = PgConnection::connect_with(&opts).await?;
        let got: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LOCK_KEY).fetch_one(&mut conn).await?;
        if got {
            self.guard = Guard::Postgres(conn);
        }
        Ok(got)
    }
}

impl Store {
    /// Becomes the only server writing this log, waiting as long as another holds it.
    /// `waiting` is called once, with a sentence, if it has to wait.
    pub async fn lead(&self, waiting: impl Fn(&str)) -> Result<Leadership, StoreError> {
        let url = self.url().to_string();
        let bad = |message: String| StoreError::Url { url: url.clone(), message };
        let mut told = false;
        if self.backend_name() == "postgres" {
            let opts = PgConnectOptions::from_str(&url).map_err(|e| bad(e.to_string()))?;
            let mut conn = PgConnection::connect_with(&opts).await?;
            loop {
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(LOCK_KEY)
                    .fetch_one(&mut conn)
                    .await?;
                if got {
                    return Ok(Leadership { guard: Guard::Postgres(conn) });
                }
                if !told {
                    waiting("another gigawatt server leads this PostgreSQL log; standing by until it stops");
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let opts = SqliteConnectOptions::from_str(&url).map_err(|e| bad(e.to_string()))?;
        let file = opts.get_filename();
        if file.as_os_str().is_empty() || file.to_string_lossy().contains(":memory:") {
            return Ok(Leadership { guard: Guard::Nothing });
        }
        let lock_path = file.to_path_buf();
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .open(&lock_path)
            .map_err(|e| bad(format!("cannot open {} to lock it: {e}", lock_path.to_string_lossy())))?;
        // Never closed: see the module docs.
        let lock: &'static std::fs::File = Box::leak(Box::new(lock));
        loop {
            match lock.try_lock() {
                Ok(()) => return Ok(Leadership { guard: Guard::File(lock) }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if !told {
                        waiting(&format!(
                            "another gigawatt server leads the log {}; standing by until it stops",
                            lock_path.to_string_lossy()
                        ));
                        told = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(bad(format!("cannot lock {}: {e}", lock_path.to_string_lossy())));
                }
            }
        }
    }
}
