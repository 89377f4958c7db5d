//! The first admin token is shown once the server listens. A first start that fails
//! before (its port is taken) leaves a log without one, and the next start shows it;
//! after that no start shows one.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `gigawatt serve` on `db` and `listen` until it prints the line that says whether
/// it has an admin token to show; returns that token (or `None`) and stops the server.
fn start(db: &str, listen: &str) -> Option<String> {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("gigawatt"))
        .args(["serve", "--listen", listen, "--durability", "normal", "--no-hints", "--db", db, "--fleet"])
        .arg(repo().join("fleets/france.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gigawatt serve starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let token = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line =
            rx.recv_timeout(left).unwrap_or_else(|_| panic!("no verdict in 60 s:\n{}", seen.join("\n")));
        if let Some(t) = line.strip_prefix("admin token: ") {
            break Some(t.trim().to_string());
        }
        if line.contains("no admin token printed") {
            break None;
        }
        seen.push(line);
    };
    let _ = child.kill();
    let _ = child.wait();
    token
}

#[test]
fn a_first_start_that_cannot_listen_leaves_the_admin_token_to_the_next() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let db = format!("sqlite://{}", dir.path().join("g.db").display());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to take");
    let busy = taken.local_addr().expect("its address").to_string();

    let out = Command::new(assert_cmd::cargo::cargo_bin("gigawatt"))
        .args(["serve", "--listen", &busy, "--durability", "normal", "--db", &db, "--fleet"])
        .arg(repo().join("fleets/france.toml"))
        .stdin(Stdio::null())
        .output()
        .expect("gigawatt serve runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve on a taken port must fail:\n{said}");
    assert!(said.contains("listening on"), "{said}");
    assert!(!said.contains("admin token:"), "a token no client can use was shown:\n{said}");
    drop(taken);

    let token = start(&db, "127.0.0.1:0").expect("the next start shows the first admin token");
    assert!(token.len() > 20, "{token}");
    assert_eq!(start(&db, "127.0.0.1:0"), None, "the token is shown once");
}
