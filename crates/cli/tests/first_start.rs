//! The first admin token is shown once the server listens. A first start that fails
//! before (its port is taken) leaves a log without one, and the next start shows it;
//! after that no start shows one.

mod server_harness;

use std::process::{Command, Stdio};

use server_harness::{Backend, Server, TestDb, gigawatt_bin, repo, run_on};

fn first_start(db: &TestDb) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to take");
    let busy = taken.local_addr().expect("its address").to_string();
    let out = Command::new(gigawatt_bin())
        .args(["serve", "--listen", &busy, "--durability", "normal", "--db", &db.url, "--fleet"])
        .arg(repo().join("fleets/france.toml"))
        .stdin(Stdio::null())
        .output()
        .expect("gigawatt serve runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve on a taken port must fail:\n{said}");
    assert!(said.contains("listening on"), "{said}");
    assert!(!said.contains("admin token:"), "a token no client can use was shown:\n{said}");
    drop(taken);

    let mut server = Server::start(db, &[]);
    let token = server.admin_token.clone().expect("the next start shows the first admin token");
    assert!(token.len() > 20, "{token}");
    server.kill();
    let server = Server::start(db, &[]);
    assert_eq!(server.admin_token, None, "the token is shown once");
}

#[test]
fn a_first_start_that_cannot_listen_leaves_the_admin_token_to_the_next_on_sqlite() {
    run_on(Backend::Sqlite, "first_start", first_start);
}

#[test]
fn a_first_start_that_cannot_listen_leaves_the_admin_token_to_the_next_on_postgres() {
    run_on(Backend::Postgres, "first_start", first_start);
}
