//! Ended workloads leave memory (and snapshots) after `--keep-ended`, with a
//! `workloads-archived` entry in the log; they stay in the log, where GET and explain still
//! find them (for their own tenant only), while lists and idempotency keys forget them.
//! On both backends.

mod server_harness;

use std::time::{Duration, Instant};

use serde_json::json;
use server_harness::{Api, Backend, Server, TestDb, job, replay, run_on};

fn archived_workloads_stay_readable_from_the_log(db: &TestDb) {
    let server = Server::start(db, &["--keep-ended", "1s"]);
    let admin = server.admin_token.clone().expect("a fresh log prints the admin token");
    let api = Api::new(&server.base);
    api.create_tenant(&admin, "acme");
    api.create_tenant(&admin, "globex");
    let (_, acme) = api.issue_token(&admin, "tenant", Some("acme"));
    let (_, globex) = api.issue_token(&admin, "tenant", Some("globex"));

    let key = [("Idempotency-Key", "retention-1")];
    let first = api
        .try_send("POST", "/v1/workloads", Some(&acme), Some(&job("short", None)), &key)
        .expect("the server answers");
    assert_eq!(first.status, 201, "{first:?}");
    let id = first.str("id");
    api.post(&format!("/v1/workloads/{id}/cancel"), &acme, &json!({})).expect_status(200);
    let kept = api.submit(&acme, "still-running", None);
    kept.expect_status(201);

    // Archived about a second after it ended, with no request needed to wake the server.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !api.read_log(&admin).iter().any(|r| r["event"] == "workloads-archived") {
        assert!(Instant::now() < deadline, "nothing was archived within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Gone from lists, still readable by its tenant, from the log.
    let listed = api.list_all(&admin, "");
    assert!(listed.iter().all(|w| w["id"] != id.as_str()), "an archived workload is listed");
    assert!(listed.iter().any(|w| w["id"] == kept.str("id").as_str()), "a running one is not archived");
    let got = api.get(&format!("/v1/workloads/{id}"), &acme);
    got.expect_status(200);
    assert_eq!(got.body["state"], "cancelled");
    let explained = api.get(&format!("/v1/workloads/{id}/explain"), &acme);
    explained.expect_status(200);
    assert!(explained.body["history"].as_array().is_some_and(|h| h.len() >= 2), "{explained:?}");
    // Another tenant still cannot tell it exists; ending it again is a conflict.
    api.get(&format!("/v1/workloads/{id}"), &globex).expect_error(404, "not-found");
    api.get(&format!("/v1/workloads/{id}/explain"), &globex).expect_error(404, "not-found");
    api.post(&format!("/v1/workloads/{id}/cancel"), &globex, &json!({})).expect_error(404, "not-found");
    api.post(&format!("/v1/workloads/{id}/cancel"), &acme, &json!({})).expect_error(409, "conflict");
    // Its idempotency key is forgotten with it: the same key makes a new workload.
    let again = api
        .try_send("POST", "/v1/workloads", Some(&acme), Some(&job("short", None)), &key)
        .expect("the server answers");
    assert_eq!(again.status, 201, "{again:?}");
    assert_ne!(again.str("id"), id);
    // The state is still a fold of the log.
    let (pos, digest) = api.digest(&admin);
    assert_eq!(replay(db), (pos, digest));
    server.assert_clean_log();
}

#[test]
fn ended_workloads_are_archived_but_stay_readable() {
    for backend in Backend::ALL {
        run_on(backend, "retention", archived_workloads_stay_readable_from_the_log);
    }
}
