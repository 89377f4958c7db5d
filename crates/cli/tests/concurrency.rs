//! Races against the real `gigawatt serve`, on both backends: many clients ending the
//! same workload at once (exactly one wins, the rest get 409, the log says it ended
//! once), many clients submitting under the same `Idempotency-Key` at once (one
//! workload, one id), and a second process appending to the same log meanwhile.

mod server_harness;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server_harness::{Api, Backend, Resp, Server, TestDb, ids, job, numeric_id, run_on};

/// Races per scenario.
const ROUNDS: usize = 12;
/// Clients per race.
const CLIENTS: usize = 8;

/// Runs `CLIENTS` requests at once (released together by a barrier); `request(k)` is
/// client k's. Returns the answers in client order.
fn race(api: &Api, request: impl Fn(&Api, usize) -> Resp + Send + Sync + 'static) -> Vec<Resp> {
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let request = Arc::new(request);
    let threads: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (api, barrier, request) = (api.clone(), barrier.clone(), request.clone());
            std::thread::spawn(move || {
                // Warm the connection first, so the race is between requests, not handshakes.
                api.send("GET", "/healthz", None, None);
                barrier.wait();
                request(&api, k)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("a client thread")).collect()
}

/// How client `k` tries to end the workload, and the final state it would leave.
fn ending(k: usize) -> (&'static str, Value, &'static str, &'static str) {
    match k % 4 {
        0 => ("cancel", json!({}), "tenant", "cancelled"),
        1 => ("cancel", json!({}), "operator", "cancelled"),
        2 => ("complete", json!({"exit_code": 0}), "operator", "succeeded"),
        _ => ("complete", json!({"exit_code": 3}), "admin", "failed"),
    }
}

fn concurrent_ends(db: &TestDb) {
    let server = Server::start(db, &[]);
    let api = Api::new(&server.base);
    let admin = server.admin_token.clone().expect("the first start prints the admin token");
    api.create_tenant(&admin, "acme");
    let (_, tenant) = api.issue_token(&admin, "tenant", Some("acme"));
    let (_, operator) = api.issue_token(&admin, "operator", None);
    let tokens = Arc::new([("tenant", tenant.clone()), ("operator", operator), ("admin", admin.clone())]);

    let mut raced = Vec::new();
    let mut winners = [0usize; 4];
    for round in 0..ROUNDS {
        let r = api.submit(&tenant, &format!("race-{round}"), None);
        r.expect_status(201);
        let id = r.str("id");
        assert_eq!(r.body["state"], "running", "a one-GPU job runs at once on an idle fleet: {}", r.body);
        let answers = {
            let (id, tokens) = (id.clone(), tokens.clone());
            // Start each round's clients at a different offset, so every kind of ending wins
            // some races rather than whichever happens to be first in line.
            race(&api, move |api, k| {
                let (action, body, role, _) = ending(k + round);
                let token = &tokens.iter().find(|(r, _)| *r == role).expect("a token").1;
                api.post(&format!("/v1/workloads/{id}/{action}"), token, &body)
            })
        };
        let ok: Vec<usize> = (0..CLIENTS).filter(|&k| answers[k].status == 200).collect();
        assert_eq!(ok.len(), 1, "round {round}: exactly one end of {id} wins: {answers:?}");
        for (k, a) in answers.iter().enumerate() {
            if k != ok[0] {
                a.expect_error(409, "conflict");
            }
        }
        let winner = ok[0];
        winners[(winner + round) % 4] += 1;
        let expected = ending(winner + round).3;
        assert_eq!(answers[winner].body["state"], expected, "round {round}: the winner's answer");
        let now = api.get(&format!("/v1/workloads/{id}"), &admin);
        assert_eq!(now.body["state"], expected, "round {round}: the final state is the winner's");
        raced.push((id, expected));
    }

    // The log says each ended exactly once, and with the winner's state.
    let log = api.read_log(&admin);
    for (id, expected) in &raced {
        let n = numeric_id(id);
        let ends: Vec<&Value> = log
            .iter()
            .filter(|e| e["event"] == "workload-finished" && e["body"]["workload"].as_u64() == Some(n))
            .collect();
        assert_eq!(ends.len(), 1, "{id}: exactly one workload-finished record: {ends:?}");
        assert_eq!(ends[0]["body"]["state"], *expected, "{id}: the log records the winner's end");
        let explain = api.get(&format!("/v1/workloads/{id}/explain"), &tenant);
        explain.expect_status(200);
        let finished = explain.body["history"]
            .as_array()
            .expect("history")
            .iter()
            .filter(|d| d["event"] == "workload-finished")
            .count();
        assert_eq!(finished, 1, "{id}: explain shows one end: {}", explain.body);
    }
    eprintln!("concurrent ends on {}: winners by kind {winners:?}", db.backend.name());
    server_harness::assert_digest_matches_replay(&api, db, &admin);
    server.assert_clean_log();
}

fn concurrent_idempotency(db: &TestDb) {
    let server = Server::start(db, &[]);
    let api = Api::new(&server.base);
    let admin = server.admin_token.clone().expect("the first start prints the admin token");
    api.create_tenant(&admin, "acme");
    api.create_tenant(&admin, "globex");
    let (_, acme) = api.issue_token(&admin, "tenant", Some("acme"));
    let (_, globex) = api.issue_token(&admin, "tenant", Some("globex"));
    let tokens = Arc::new([acme.clone(), globex.clone()]);

    let mut acme_ids = BTreeSet::new();
    for round in 0..ROUNDS {
        let key = format!("same-key-{round}");
        // Every acme client sends the same key; one globex client sends it too (keys are
        // per tenant, so that one is a different workload).
        let answers = {
            let (key, tokens) = (key.clone(), tokens.clone());
            race(&api, move |api, k| {
                let (token, tenant) =
                    if k == CLIENTS - 1 { (&tokens[1], "globex") } else { (&tokens[0], "acme") };
                // The same request from every acme client: retries of one submission (a
                // different body under the same key is refused; see client.rs).
                let body = job(&format!("idem-{tenant}"), None);
                api.try_send("POST", "/v1/workloads", Some(token), Some(&body), &[("Idempotency-Key", &key)])
                    .expect("an answer")
            })
        };
        let (acme_answers, globex_answer) = answers.split_at(CLIENTS - 1);
        let created = acme_answers.iter().filter(|a| a.status == 201).count();
        let again = acme_answers.iter().filter(|a| a.status == 200).count();
        assert_eq!(
            (created, again),
            (1, CLIENTS - 2),
            "round {round}: one 201, the rest 200: {acme_answers:?}"
        );
        let round_ids: BTreeSet<String> = acme_answers.iter().map(|a| a.str("id")).collect();
        assert_eq!(round_ids.len(), 1, "round {round}: key {key} gave several workloads: {round_ids:?}");
        let id = round_ids.into_iter().next().expect("one id");
        globex_answer[0].expect_status(201);
        assert_ne!(globex_answer[0].str("id"), id, "another tenant's key is its own");
        // Every answer describes the same workload: the one the winner created.
        let winner = acme_answers.iter().find(|a| a.status == 201).expect("the creator");
        for a in acme_answers {
            assert_eq!(a.body["name"], winner.body["name"], "round {round}: the answers differ: {a:?}");
        }
        // A later retry finds it too; another request under the key is refused.
        let send = |name: &str| {
            api.try_send(
                "POST",
                "/v1/workloads",
                Some(&acme),
                Some(&job(name, None)),
                &[("Idempotency-Key", &key)],
            )
            .expect("an answer")
        };
        let retry = send("idem-acme");
        retry.expect_status(200);
        assert_eq!(retry.str("id"), id);
        send("late").expect_status(422);
        acme_ids.insert(id);
    }
    let listed = ids(&api.list_all(&acme, ""));
    server_harness::assert_unique(&listed, "acme");
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), acme_ids, "one acme workload per key");
    assert_eq!(api.list_all(&globex, "").len(), ROUNDS, "one globex workload per key");
    server_harness::assert_digest_matches_replay(&api, db, &admin);
    server.assert_clean_log();
}

/// Another process appends to the same log while the server takes submissions:
/// `gigawatt admin create-token`, as an operator would in an emergency. The server's
/// commits that collide are refused with 503 and retried by the clients under the same
/// `Idempotency-Key`; nothing may be lost or doubled, the server must pick the other
/// writer's tokens up, and its state must still be a fresh replay of the log.
fn second_writer(db: &TestDb) {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 30;
    const TOKENS: usize = 6;
    let server = Server::start(db, &[]);
    let api = Api::new(&server.base);
    let admin = server.admin_token.clone().expect("the first start prints the admin token");
    api.create_tenant(&admin, "acme");
    let (_, tenant) = api.issue_token(&admin, "tenant", Some("acme"));

    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            let (api, tenant) = (api.clone(), tenant.clone());
            std::thread::spawn(move || {
                let mut unavailable = 0;
                let mut ids = Vec::new();
                for i in 0..PER_THREAD {
                    let key = format!("second-writer-{t}-{i}");
                    let body = job(&format!("sw {t}/{i}"), None);
                    let mut tries = 0;
                    loop {
                        let headers = [("Idempotency-Key", key.as_str())];
                        let r = api
                            .try_send("POST", "/v1/workloads", Some(&tenant), Some(&body), &headers)
                            .expect("the server answers");
                        match r.status {
                            200 | 201 => {
                                ids.push(r.str("id"));
                                break;
                            }
                            503 => {
                                r.expect_error(503, "unavailable");
                                unavailable += 1;
                                tries += 1;
                                assert!(tries < 100, "{key}: still 503 after 100 tries: {}", r.body);
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            _ => panic!("{key}: {} {}", r.status, r.body),
                        }
                    }
                }
                (ids, unavailable)
            })
        })
        .collect();
    let mut issued = Vec::new();
    for _ in 0..TOKENS {
        let out = Command::new(server_harness::gigawatt_bin())
            .args(["admin", "create-token", "--db", &db.url, "--role", "auditor", "--name", "break-glass"])
            .output()
            .expect("gigawatt admin create-token runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "create-token failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = stdout
            .lines()
            .find_map(|l| l.strip_prefix("auditor token: "))
            .unwrap_or_else(|| panic!("no token in {stdout}"))
            .trim()
            .to_string();
        issued.push(token);
    }
    let mut ids = Vec::new();
    let mut unavailable = 0;
    for c in clients {
        let (i, u) = c.join().expect("a client thread");
        ids.extend(i);
        unavailable += u;
    }
    server_harness::assert_unique(&ids, "acknowledged");
    let listed = server_harness::ids(&api.list_all(&admin, ""));
    server_harness::assert_unique(&listed, "listed");
    assert_eq!(
        listed.iter().collect::<BTreeSet<_>>(),
        ids.iter().collect::<BTreeSet<_>>(),
        "one workload per key, every acknowledged one listed"
    );
    // Tokens written straight into the log work (the server catches up at most once a
    // second, so allow a few seconds).
    for token in &issued {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = api.send("GET", "/v1/whoami", Some(token), None);
            if r.status == 200 {
                assert_eq!(r.body["role"], "auditor");
                break;
            }
            assert!(Instant::now() < deadline, "a token from create-token never worked: {}", r.body);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    eprintln!(
        "second writer on {}: {} submissions, {unavailable} answered 503 and retried",
        db.backend.name(),
        ids.len()
    );
    server_harness::assert_digest_matches_replay(&api, db, &admin);
    server.assert_clean_log();
}

#[test]
fn a_second_writer_on_the_log_loses_and_doubles_nothing_on_sqlite() {
    run_on(Backend::Sqlite, "second_writer", second_writer);
}

#[test]
fn a_second_writer_on_the_log_loses_and_doubles_nothing_on_postgres() {
    run_on(Backend::Postgres, "second_writer", second_writer);
}

#[test]
fn concurrent_cancels_and_completes_end_a_workload_once_on_sqlite() {
    run_on(Backend::Sqlite, "concurrent_ends", concurrent_ends);
}

#[test]
fn concurrent_cancels_and_completes_end_a_workload_once_on_postgres() {
    run_on(Backend::Postgres, "concurrent_ends", concurrent_ends);
}

#[test]
fn concurrent_submissions_with_one_idempotency_key_make_one_workload_on_sqlite() {
    run_on(Backend::Sqlite, "concurrent_idempotency", concurrent_idempotency);
}

#[test]
fn concurrent_submissions_with_one_idempotency_key_make_one_workload_on_postgres() {
    run_on(Backend::Postgres, "concurrent_idempotency", concurrent_idempotency);
}
