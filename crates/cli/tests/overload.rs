//! Heartbeats have their own budget: with every API seat held and other callers queued
//! behind them, an agent's heartbeats are still answered at once, and its node is never
//! declared lost. Without that budget, the heartbeats would wait with everything else
//! and the node would be lost after `--lost-after`.

mod server_harness;

use std::io::Write as _;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use server_harness::{Api, Backend, Server, TestDb, heartbeat};

const NODE: &str = "valence-a001-n01";

/// The API's seats (agents have as many of their own).
const SEATS: usize = 4;

#[test]
fn heartbeats_are_answered_while_the_api_is_saturated() {
    let Some(db) = TestDb::new(Backend::Sqlite, "overload") else { return };
    let seats = SEATS.to_string();
    let server =
        Server::start(&db, &["--seats", &seats, "--heartbeat-interval", "250ms", "--lost-after", "1s"]);
    let admin = server.admin_token.clone().expect("admin token");
    let api = Api::new(&server.base);
    api.create_tenant(&admin, "acme");
    let (_, tenant) = api.issue_token(&admin, "tenant", Some("acme"));
    let (agent, generation) = api.register_agent(&admin, NODE);

    // The agent beats every 100 ms from now on, timing each answer.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let beater = {
        let (api, agent, stop) = (Api::new(&server.base), agent.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut took = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let status = heartbeat(&api, &agent, NODE, generation, &[]).status;
                took.push((Instant::now(), status, t.elapsed()));
                std::thread::sleep(Duration::from_millis(100));
            }
            took
        })
    };

    // A tenant holds every API seat, and more: submissions whose declared body never
    // comes hold their seat until the request deadline.
    let addr = server.base.trim_start_matches("http://").to_string();
    let held: Vec<TcpStream> = (0..SEATS * 2)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).expect("connect");
            write!(
                s,
                "POST /v1/workloads HTTP/1.1\r\nHost: flood\r\nAuthorization: Bearer {tenant}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
            )
            .expect("headers");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let saturated = Instant::now();

    // The API is saturated: another caller's request waits for a seat.
    let impatient = server_harness::client(Duration::from_secs(1));
    let queued = impatient.get(format!("{}/v1/workloads", server.base)).bearer_auth(&admin).send();
    assert!(queued.is_err(), "every API seat is taken, so this waits: {queued:?}");

    // Heartbeats meanwhile, for three times `--lost-after`: every one answered at once.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let beats = beater.join().expect("the agent thread");
    let during: Vec<_> = beats.iter().filter(|(at, _, _)| *at > saturated).collect();
    let slowest = during.iter().map(|(_, _, took)| *took).max().unwrap_or_default();
    eprintln!("{} heartbeats with every API seat held; the slowest took {slowest:?}", during.len());
    assert!(during.len() >= 20, "the agent kept beating: {}", during.len());
    assert!(beats.iter().all(|(_, status, _)| *status == 200), "every heartbeat answered 200: {beats:?}");
    assert!(slowest < Duration::from_millis(500), "the slowest heartbeat took {slowest:?}");

    // Seats back: the node was never lost.
    drop(held);
    let agents = server_harness::wait_for("the API to answer again", Duration::from_secs(10), || {
        let r = api.get("/v1/agents", &admin);
        (r.status == 200).then_some(r)
    });
    let mine = agents.body.as_array().expect("agents").iter().find(|a| a["node"] == NODE).cloned();
    assert_eq!(mine.as_ref().and_then(|a| a["state"].as_str()), Some("ready"), "{mine:?}");
    let log = api.read_log(&admin);
    assert!(!log.iter().any(|r| r["event"] == "node-lost"), "no node-lost record");
}
