//! Bounded resources against real slow clients: thousands of connections that never
//! finish their headers (and some that send nothing) do not stop the server from
//! answering `/healthz` and an authenticated request within a second; the server closes
//! them after `--header-read-timeout`; and a body declared too large is answered 413 at
//! once, before it is sent.

mod server_harness;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use server_harness::{Api, Backend, Server, TestDb};

/// Idle connections opened (fewer if this process may not open that many files).
const IDLE: usize = 3000;

/// Raises this process's soft limit on open files to the hard one; returns the soft
/// limit in force.
fn open_files() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

#[test]
fn idle_connections_do_not_starve_the_api_and_are_closed_after_the_header_timeout() {
    let Some(db) = TestDb::new(Backend::Sqlite, "slow_clients") else { return };
    let server = Server::start(&db, &["--header-read-timeout", "3s"]);
    let admin = server.admin_token.clone().expect("admin token");
    let api = Api::new(&server.base);
    let addr = server.base.trim_start_matches("http://").to_string();
    let n = IDLE.min(usize::try_from(open_files().saturating_sub(200)).unwrap_or(IDLE));
    assert!(n >= 900, "this machine lets a process open too few files for the test: {n}");

    let opened = Instant::now();
    let mut idle = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect(&addr).expect("connect");
        // Half never finish their headers; half send nothing at all.
        if i % 2 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: ").expect("partial headers");
        }
        idle.push(s);
    }
    let opened = opened.elapsed();

    // The API still answers, at once.
    let http = server_harness::client(Duration::from_secs(5));
    let t = Instant::now();
    let health = http.get(format!("{}/healthz", server.base)).send().expect("healthz answers");
    let health_took = t.elapsed();
    assert!(health.status().is_success(), "{}", health.status());
    let t = Instant::now();
    let list = http.get(format!("{}/v1/workloads", server.base)).bearer_auth(&admin).send().expect("answers");
    let list_took = t.elapsed();
    assert!(list.status().is_success(), "{}", list.status());
    eprintln!(
        "{n} idle connections opened in {:.2} s; /healthz in {:.1} ms, an authenticated list in {:.1} ms",
        opened.as_secs_f64(),
        health_took.as_secs_f64() * 1e3,
        list_took.as_secs_f64() * 1e3
    );
    assert!(health_took < Duration::from_secs(1), "/healthz took {health_took:?}");
    assert!(list_took < Duration::from_secs(1), "the authenticated request took {list_took:?}");

    // After the header timeout, the server has closed them: reads see the end.
    std::thread::sleep(Duration::from_secs(4));
    let mut closed = 0;
    for s in idle.iter_mut().step_by(97) {
        s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let mut buf = [0u8; 512];
        // hyper may answer 408 before closing; either way the connection ends.
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    closed += 1;
                    break;
                }
                Err(e) => panic!("connection still open after the header timeout: {e}"),
            }
        }
    }
    assert_eq!(closed, idle.iter().step_by(97).count());
    drop(idle);
    api.get("/v1/workloads", &admin).expect_status(200);
}

#[test]
fn a_body_declared_too_large_is_refused_before_it_is_sent() {
    let Some(db) = TestDb::new(Backend::Sqlite, "slow_clients_413") else { return };
    let server = Server::start(&db, &[]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    // No token, and no byte of the 100 MB body: the answer comes from the headers alone.
    s.write_all(
        b"POST /v1/workloads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n",
    )
    .expect("headers");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("body-too-large") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => answer.extend_from_slice(&buf[..k]),
            Err(e) => panic!("no answer before the body was sent: {e}"),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body-too-large"), "{answer}");
}

#[test]
fn past_the_connection_cap_new_connections_are_closed_at_once_and_counted() {
    let Some(db) = TestDb::new(Backend::Sqlite, "slow_clients_cap") else { return };
    let server = Server::start(&db, &["--max-connections", "50", "--header-read-timeout", "2s"]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let held: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(&addr).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(200));
    // The 51st is accepted and closed: its read ends at once, with no answer.
    let mut extra = TcpStream::connect(&addr).expect("connect");
    extra.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    match extra.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the connection past the cap was served: {other:?}"),
    }
    // Once the idle ones time out, the server serves again, and says what it refused.
    drop(held);
    let http = server_harness::client(Duration::from_secs(5));
    let metrics = server_harness::wait_for("the server to serve again", Duration::from_secs(10), || {
        http.get(format!("{}/metrics", server.base)).send().ok().and_then(|r| r.text().ok())
    });
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gigawatt_http_connections_refused_total "))
        .and_then(|v| v.parse().ok())
        .expect("the refused-connections counter");
    assert!(refused >= 1.0, "{metrics}");
}
