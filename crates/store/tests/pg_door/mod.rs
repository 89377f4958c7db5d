//! The PostgreSQL server the database tests use, shared by the store's backend tests and
//! the control-plane harness (`#[path]`-included there): `GIGAWATT_TEST_PG` names it, or
//! the machine's default. With `GIGAWATT_TEST_PG` set, PostgreSQL is required: a test
//! that cannot reach it fails instead of passing on its SQLite half alone.
#![allow(dead_code)] // each test binary uses a different part

/// The PostgreSQL server CI provides; its `test` database is only the door through which
/// each test creates its own.
pub const PG_DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL door the tests use: `GIGAWATT_TEST_PG` when set, else [`PG_DEFAULT_URL`].
/// With `GIGAWATT_TEST_PG` set, PostgreSQL is required: a test that cannot reach it
/// fails instead of skipping its PostgreSQL half (CI sets it).
pub fn pg_admin_url() -> String {
    std::env::var("GIGAWATT_TEST_PG")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| PG_DEFAULT_URL.to_string())
}

/// Whether `GIGAWATT_TEST_PG` makes PostgreSQL required.
pub fn pg_required() -> bool {
    std::env::var("GIGAWATT_TEST_PG").is_ok_and(|u| !u.is_empty())
}

/// The URL of database `name` on the server of the door `admin`.
pub fn pg_url_of(admin: &str, name: &str) -> String {
    let base = admin.split(['?', '#']).next().unwrap_or(admin);
    match base.rfind('/') {
        Some(i) if i > "postgres://".len() => format!("{}/{name}", &base[..i]),
        _ => format!("{base}/{name}"),
    }
}

/// Skips the PostgreSQL half of `test` (saying why), or fails it when PostgreSQL is
/// required.
pub fn pg_unreachable(test: &str, admin: &str, e: &dyn std::fmt::Display) {
    let why = format!("{test} on PostgreSQL: cannot create a database through {admin} ({e})");
    assert!(!pg_required(), "GIGAWATT_TEST_PG is set, so PostgreSQL is required: {why}");
    eprintln!("SKIPPED: {why}; start PostgreSQL there (or set GIGAWATT_TEST_PG) to run this half");
}
