//! One leader per SQLite log, however the file is reached: by its path, through a
//! symlink, or through a hard link.

use std::time::Duration;

use gigawatt_store::Store;

/// Whether `store` becomes leader within `wait`.
async fn leads_within(store: &Store, wait: Duration) -> Option<gigawatt_store::Leadership> {
    tokio::time::timeout(wait, store.lead(|_| {})).await.ok().map(|r| r.expect("lead does not fail"))
}

#[tokio::test]
async fn no_path_symlink_or_hard_link_gives_a_sqlite_log_two_leaders() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let db = dir.path().join("log.db");
    let first = Store::open(&format!("sqlite://{}", db.display())).await.expect("opens");
    let leader = leads_within(&first, Duration::from_secs(5)).await.expect("the first server leads");

    let symlink = dir.path().join("via-symlink.db");
    std::os::unix::fs::symlink(&db, &symlink).expect("symlink");
    let sub = dir.path().join("elsewhere");
    std::fs::create_dir(&sub).expect("folder");
    let hard = sub.join("via-hard-link.db");
    std::fs::hard_link(&db, &hard).expect("hard link");
    let relative = format!("sqlite://{}/../log.db", sub.display());
    for url in [
        format!("sqlite://{}", db.display()),
        format!("sqlite://{}", symlink.display()),
        format!("sqlite://{}", hard.display()),
        relative,
    ] {
        // SQLite itself may refuse a hard link (its WAL is named after the path): then
        // there is no second server to lead.
        match Store::open(&url).await {
            Ok(other) => {
                assert!(
                    leads_within(&other, Duration::from_millis(800)).await.is_none(),
                    "{url} took the lead too"
                );
            }
            Err(e) => eprintln!("{url}: {e}"),
        }
    }

    // Giving leadership up lets a standby through another path take it, and the first
    // store still writes and reads (its SQLite locks were not disturbed).
    drop(leader);
    let standby = Store::open(&format!("sqlite://{}", symlink.display())).await.expect("opens");
    let taken = leads_within(&standby, Duration::from_secs(5)).await;
    assert!(taken.is_some(), "the standby leads once the leader gave up");
    assert_eq!(first.last_seq().await.expect("reads"), 0);
}
