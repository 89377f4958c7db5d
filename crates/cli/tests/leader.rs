//! One server leads a log at a time: a second `gigawatt serve` on the same log stands by
//! (not listening) until the first dies, then takes over with the same state. On both
//! backends: an exclusive lock file next to a SQLite database, a PostgreSQL advisory lock.

mod server_harness;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use server_harness::{Api, Backend, Server, TestDb, gigawatt_bin, repo, run_on};

struct Standby(std::process::Child);

impl Drop for Standby {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn standby_takes_over(db: &TestDb) {
    let mut leader = Server::start(db, &[]);
    let admin = leader.admin_token.clone().expect("a fresh log prints the admin token");
    let api = Api::new(&leader.base);
    api.create_tenant(&admin, "acme");
    let before = api.get("/v1/state/digest", &admin).body;

    let mut child = Command::new(gigawatt_bin())
        .arg("serve")
        .arg("--fleet")
        .arg(repo().join("fleets/france.toml"))
        .args(["--db", &db.url, "--listen", "127.0.0.1:0"])
        .env("GIGAWATT_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the standby starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let _standby = Standby(child);
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // It says it stands by, and does not serve while the leader lives.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut said = Vec::new();
    while !said.iter().any(|l: &String| l.contains("standing by")) {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|_| {
            panic!("the standby never said it stands by:\n{}", said.join("\n"));
        });
        assert!(!line.starts_with("gigawatt control plane on"), "two servers lead one log:\n{line}");
        said.push(line);
    }
    std::thread::sleep(Duration::from_millis(700));
    while let Ok(line) = rx.try_recv() {
        assert!(!line.starts_with("gigawatt control plane on"), "two servers lead one log:\n{line}");
    }

    // The leader dies; the standby takes over with the same state.
    leader.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    let base = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the standby took over within 30 s");
        if let Some(rest) = line.strip_prefix("gigawatt control plane on ") {
            break rest.trim().to_string();
        }
    };
    let api = Api::new(&base);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline
        && !api.try_send("GET", "/readyz", None, None, &[]).is_ok_and(|r| r.status == 200)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(api.get("/v1/state/digest", &admin).body, before, "the new leader holds the same state");
    api.create_tenant(&admin, "beta");
}

#[test]
fn a_second_server_stands_by_until_the_leader_dies() {
    for backend in Backend::ALL {
        run_on(backend, "leader", standby_takes_over);
    }
}
