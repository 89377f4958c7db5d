//! Tenant isolation and roles on every route of the API, on both backends, against the
//! real `gigawatt serve`.
//!
//! Two tenants A and B, each with a tenant token, plus admin, operator and auditor tokens.
//! Tenant A must never learn anything about B's workloads: every per-workload route
//! answers 404 (the same answer as for an id that does not exist, never 403), lists
//! filter B out even when asked for B, and the event stream never carries B's events.
//! Each role gets exactly what `crates/server/src/http/mod.rs` promises; no token, a
//! wrong token and a revoked token are 401 everywhere.

mod server_harness;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{Value, json};
use server_harness::{Api, Backend, Resp, Server, TestDb, client, ids, run_on};

const A: &str = "tenant-a";
const B: &str = "tenant-b";

/// The tokens of the test, by role.
struct Tokens {
    admin: String,
    operator: String,
    auditor: String,
    a: String,
    b: String,
}

impl Tokens {
    /// `(role, token)` for the four roles, tenant A standing for the tenant role.
    fn roles(&self) -> [(&'static str, &str); 4] {
        [
            ("admin", &self.admin),
            ("operator", &self.operator),
            ("tenant", &self.a),
            ("auditor", &self.auditor),
        ]
    }
}

/// Submits and returns the new workload's id.
#[track_caller]
fn submit(api: &Api, token: &str, name: &str, tenant: Option<&str>) -> String {
    let r = api.submit(token, name, tenant);
    r.expect_status(201);
    r.str("id")
}

/// Asserts `r` is the API's 404 for a workload, and that it reads exactly like the 404
/// for an id that never existed (so a tenant cannot tell the two apart).
#[track_caller]
fn assert_hidden(r: &Resp, id: &str, unknown: &Resp, unknown_id: &str) {
    r.expect_error(404, "not-found");
    let msg = r.body["message"].as_str().unwrap_or_default().replace(id, "ID");
    let other = unknown.body["message"].as_str().unwrap_or_default().replace(unknown_id, "ID");
    assert_eq!(msg, other, "{}: a hidden workload's 404 must read like an unknown id's", r.what);
    assert_eq!(r.body["field"], unknown.body["field"], "{}", r.what);
}

/// Reads `GET /v1/events?after=0` with `token` until an event's text contains `until`
/// (or the time limit ends the stream). Returns the events' JSON.
fn read_events(base: &str, token: &str, until: &str, connected: std::sync::mpsc::Sender<()>) -> Vec<Value> {
    let resp = client(Duration::from_secs(30))
        .get(format!("{base}/v1/events?after=0"))
        .bearer_auth(token)
        .send()
        .expect("the event stream opens");
    assert_eq!(resp.status().as_u16(), 200, "GET /v1/events");
    let _ = connected.send(());
    let mut events = Vec::new();
    for line in BufReader::new(resp).lines() {
        let Ok(line) = line else { break }; // the time limit ended the stream
        let Some(data) = line.strip_prefix("data:") else { continue };
        let event: Value = serde_json::from_str(data.trim()).expect("an event's data is JSON");
        let done = event["text"].as_str().is_some_and(|t| t.contains(until));
        events.push(event);
        if done {
            return events;
        }
    }
    panic!("the event stream ended before the event `{until}`; got {events:?}")
}

fn isolation(db: &TestDb) {
    let server = Server::start(db, &[]);
    let api = Api::new(&server.base);
    let admin = server.admin_token.clone().expect("the first start prints the admin token");
    api.create_tenant(&admin, A);
    api.create_tenant(&admin, B);
    let t = Tokens {
        operator: api.issue_token(&admin, "operator", None).1,
        auditor: api.issue_token(&admin, "auditor", None).1,
        a: api.issue_token(&admin, "tenant", Some(A)).1,
        b: api.issue_token(&admin, "tenant", Some(B)).1,
        admin,
    };
    let (revoked_id, revoked) = api.issue_token(&t.admin, "tenant", Some(A));
    api.send("DELETE", &format!("/v1/tokens/{revoked_id}"), Some(&t.admin), None).expect_status(200);

    // Workloads: each tenant's own, and some submitted for them by an admin / operator.
    let a1 = submit(&api, &t.a, "a-one", None);
    let a2 = submit(&api, &t.operator, "a-two", Some(A));
    let a3 = submit(&api, &t.admin, "a-three", Some(A));
    let b1 = submit(&api, &t.b, "b-one", None);
    let b2 = submit(&api, &t.admin, "b-two", Some(B));
    let b3 = submit(&api, &t.operator, "b-three", Some(B));
    api.post(&format!("/v1/workloads/{b3}/cancel"), &t.b, &json!({})).expect_status(200);
    for id in [&a1, &b1] {
        let r = api.get(&format!("/v1/workloads/{id}"), &t.admin);
        assert_eq!(r.body["state"], "running", "a one-GPU job runs at once on an idle fleet: {}", r.body);
    }
    // A tenant submits only for itself; an auditor not at all.
    api.submit(&t.a, "for b", Some(B)).expect_error(422, "invalid-field");
    api.submit(&t.auditor, "audit", Some(A)).expect_error(403, "forbidden");
    let a_ids: BTreeSet<String> = [&a1, &a2, &a3].into_iter().cloned().collect();
    let b_ids: BTreeSet<String> = [&b1, &b2, &b3].into_iter().cloned().collect();

    // --- Tenant A on B's workloads: 404, exactly as for an id that does not exist. ---
    let unknown_id = (1..)
        .map(|n: u64| format!("w-{}", 4_503_599_627_370_000 + n))
        .find(|id| !a_ids.contains(id) && !b_ids.contains(id))
        .expect("an unused id");
    for b in &b_ids {
        for (method, suffix, body) in [
            ("GET", "", None),
            ("GET", "/explain", None),
            ("POST", "/cancel", Some(json!({}))),
            ("POST", "/complete", Some(json!({"exit_code": 0}))),
        ] {
            let hidden = api.send(method, &format!("/v1/workloads/{b}{suffix}"), Some(&t.a), body.as_ref());
            let unknown =
                api.send(method, &format!("/v1/workloads/{unknown_id}{suffix}"), Some(&t.a), body.as_ref());
            assert_hidden(&hidden, b, &unknown, &unknown_id);
        }
    }
    // ... and tenant A's attempts changed nothing.
    let r = api.get(&format!("/v1/workloads/{b1}"), &t.b);
    r.expect_status(200);
    assert_eq!(r.body["state"], "running", "tenant A's cancel of B's workload must not land");
    // The other way round too.
    api.get(&format!("/v1/workloads/{a1}"), &t.b).expect_error(404, "not-found");
    // Everyone else sees both tenants' workloads.
    for token in [&t.admin, &t.operator, &t.auditor] {
        for id in a_ids.iter().chain(&b_ids) {
            api.get(&format!("/v1/workloads/{id}"), token).expect_status(200);
            api.get(&format!("/v1/workloads/{id}/explain"), token).expect_status(200);
        }
    }
    api.get(&format!("/v1/workloads/{a1}"), &t.a).expect_status(200);
    api.get(&format!("/v1/workloads/{a1}/explain"), &t.a).expect_status(200);

    // --- Lists: a tenant sees only its own, whatever it asks for. ---
    let listed = |token: &str, query: &str| -> BTreeSet<String> {
        let items = api.list_all(token, query);
        ids(&items).into_iter().collect()
    };
    assert_eq!(listed(&t.a, ""), a_ids, "tenant A lists exactly its own workloads");
    assert_eq!(listed(&t.a, &format!("tenant={B}&")), BTreeSet::new(), "?tenant=B shows A nothing");
    assert_eq!(listed(&t.a, &format!("tenant={A}&")), a_ids);
    assert_eq!(listed(&t.a, "state=cancelled&"), BTreeSet::new(), "B's cancelled workload stays hidden");
    assert_eq!(listed(&t.b, ""), b_ids, "tenant B lists exactly its own workloads");
    let all: BTreeSet<String> = a_ids.union(&b_ids).cloned().collect();
    for token in [&t.admin, &t.operator, &t.auditor] {
        assert_eq!(listed(token, ""), all, "admin, operator and auditor list everything");
        assert_eq!(listed(token, &format!("tenant={B}&")), b_ids);
    }
    let tenants = api.get("/v1/tenants", &t.a);
    tenants.expect_status(200);
    let names: Vec<&str> =
        tenants.body.as_array().expect("tenants").iter().filter_map(|x| x["id"].as_str()).collect();
    assert_eq!(names, vec![A], "a tenant lists only its own tenant");
    let tenants = api.get("/v1/tenants", &t.auditor);
    assert_eq!(tenants.body.as_array().map(Vec::len), Some(2), "the auditor lists both tenants");

    // --- The event stream: A's stream carries A's events only, old and live. ---
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = {
        let (base, token) = (server.base.clone(), t.a.clone());
        std::thread::spawn(move || read_events(&base, &token, "a-live-last", tx))
    };
    rx.recv_timeout(Duration::from_secs(30)).expect("the stream connects");
    // B's live event commits before A's, so had it leaked it would come first.
    let b_live = submit(&api, &t.b, "b-live", None);
    let a_live = submit(&api, &t.a, "a-live-last", None);
    let events = reader.join().expect("the stream reader");
    for e in &events {
        assert_eq!(e["tenant"], A, "tenant A's stream carried another tenant's event: {e}");
        let w = e["workload"].as_str().unwrap_or_default();
        assert!(a_ids.contains(w) || w == a_live, "tenant A's stream carried {w}: {e}");
        assert_ne!(w, b_live);
    }
    let streamed: BTreeSet<&str> = events.iter().filter_map(|e| e["workload"].as_str()).collect();
    for id in a_ids.iter().chain([&a_live]) {
        assert!(streamed.contains(id.as_str()), "tenant A's stream lacks its own {id}: {events:?}");
    }
    // The operator's stream, by contrast, carries both tenants.
    let (tx, rx) = std::sync::mpsc::channel();
    let events = {
        let (base, token) = (server.base.clone(), t.operator.clone());
        let reader = std::thread::spawn(move || read_events(&base, &token, "a-live-last", tx));
        rx.recv_timeout(Duration::from_secs(30)).expect("the stream connects");
        reader.join().expect("the stream reader")
    };
    let tenants: BTreeSet<&str> = events.iter().filter_map(|e| e["tenant"].as_str()).collect();
    assert_eq!(tenants, [A, B].into_iter().collect(), "the operator's stream carries both tenants");

    // --- Role matrix on the read routes. ---
    let site = api.get("/v1/sites", &t.admin).body[0]["id"].as_str().expect("a site").to_string();
    let nodes = api.get("/v1/nodes?limit=500", &t.admin);
    let idle = nodes.body["items"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["tasks"] == 0)
        .and_then(|n| n["name"].as_str())
        .expect("an idle node")
        .to_string();
    let all_roles = ["admin", "operator", "tenant", "auditor"];
    let fleet_readers = ["admin", "operator", "auditor"];
    let reads: Vec<(String, &[&str])> = vec![
        ("/v1/whoami".into(), &all_roles),
        ("/v1/tenants".into(), &all_roles),
        ("/v1/tokens".into(), &["admin", "auditor"]),
        ("/v1/log".into(), &fleet_readers),
        ("/v1/state/digest".into(), &["admin", "auditor"]),
        ("/v1/workloads".into(), &all_roles),
        ("/v1/sites".into(), &all_roles),
        (format!("/v1/sites/{site}"), &all_roles),
        ("/v1/racks".into(), &fleet_readers),
        ("/v1/nodes".into(), &fleet_readers),
        (format!("/v1/nodes/{idle}"), &fleet_readers),
    ];
    for (path, allowed) in &reads {
        for (role, token) in t.roles() {
            let r = api.get(path, token);
            if allowed.contains(&role) {
                r.expect_status(200);
            } else {
                r.expect_error(403, "forbidden");
            }
        }
    }
    // The log's first record holds the keys of the id cipher: they never leave the server,
    // whoever reads the log.
    for token in [&t.admin, &t.operator, &t.auditor] {
        let first = api.get("/v1/log?limit=1", token);
        let body = &first.body[0]["body"];
        assert_eq!(body["type"], "initialized", "{}", first.body);
        assert!(body.get("id_key").is_none() && body.get("id_secret").is_none(), "{body}");
        assert!(body["withheld"].as_str().is_some_and(|w| w.contains("never leave")), "{body}");
    }
    for (role, token) in t.roles() {
        let who = api.get("/v1/whoami", token);
        assert_eq!(who.body["role"], role, "whoami names the role");
        assert_eq!(who.body["tenant"], if role == "tenant" { json!(A) } else { Value::Null });
    }

    // --- Role matrix on the write routes: refused roles first (nothing changes), then the
    // allowed ones. ---
    let (victim_id, victim) = api.issue_token(&t.admin, "tenant", Some(B));
    let budget = api.get(&format!("/v1/sites/{site}"), &t.admin).body["budget_w"].as_u64().expect("budget_w");
    let mut admin_last = t.roles();
    admin_last.rotate_left(1);
    for (role, token) in admin_last {
        let post_tenant = api.post("/v1/tenants", token, &json!({"id": format!("new-{role}")}));
        let post_token = api.post("/v1/tokens", token, &json!({"name": "x", "role": "auditor"}));
        let delete_token = api.send("DELETE", &format!("/v1/tokens/{victim_id}"), Some(token), None);
        if role == "admin" {
            post_tenant.expect_status(201);
            post_token.expect_status(201);
            delete_token.expect_status(200);
        } else {
            post_tenant.expect_error(403, "forbidden");
            post_token.expect_error(403, "forbidden");
            delete_token.expect_error(403, "forbidden");
            api.get("/v1/whoami", &victim).expect_status(200); // not revoked by a refused call
        }
        let budget_put = api.send(
            "PUT",
            &format!("/v1/sites/{site}/budget"),
            Some(token),
            Some(&json!({"budget_w": budget})),
        );
        let node_down =
            api.send("PUT", &format!("/v1/nodes/{idle}/state"), Some(token), Some(&json!({"up": false})));
        if role == "admin" || role == "operator" {
            budget_put.expect_status(200);
            node_down.expect_status(200);
            api.send("PUT", &format!("/v1/nodes/{idle}/state"), Some(token), Some(&json!({"up": true})))
                .expect_status(200);
        } else {
            budget_put.expect_error(403, "forbidden");
            node_down.expect_error(403, "forbidden");
        }
    }
    api.get("/v1/whoami", &victim).expect_error(401, "unauthorized");
    // Ending workloads: the auditor may not; a tenant cancels its own but does not report
    // ends; the operator and the admin end anyone's.
    for (suffix, body) in [("cancel", json!({})), ("complete", json!({"exit_code": 0}))] {
        api.post(&format!("/v1/workloads/{a1}/{suffix}"), &t.auditor, &body).expect_error(403, "forbidden");
    }
    api.post(&format!("/v1/workloads/{a1}/complete"), &t.a, &json!({"exit_code": 0}))
        .expect_error(403, "forbidden");
    api.post(&format!("/v1/workloads/{a1}/cancel"), &t.a, &json!({})).expect_status(200);
    api.post(&format!("/v1/workloads/{b1}/cancel"), &t.operator, &json!({})).expect_status(200);
    api.post(&format!("/v1/workloads/{a2}/complete"), &t.operator, &json!({"exit_code": 0}))
        .expect_status(200);
    api.post(&format!("/v1/workloads/{b2}/complete"), &t.admin, &json!({"exit_code": 2})).expect_status(200);
    api.post(&format!("/v1/workloads/{a3}/cancel"), &t.admin, &json!({})).expect_status(200);
    let state = |id: &str| api.get(&format!("/v1/workloads/{id}"), &t.admin).body["state"].clone();
    assert_eq!(
        [a1.as_str(), b1.as_str(), a2.as_str(), b2.as_str(), a3.as_str()].map(state),
        ["cancelled", "cancelled", "succeeded", "failed", "cancelled"].map(Value::from)
    );
    // Submitting: tenants for themselves, admin and operator for anyone.
    submit(&api, &t.operator, "by-operator", Some(B));

    // --- 401: no token, a wrong one, a malformed header, a revoked one; on every route. ---
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/v1/whoami".into(), None),
        ("POST", "/v1/tenants".into(), Some(json!({"id": "sneaky"}))),
        ("GET", "/v1/tenants".into(), None),
        ("POST", "/v1/tokens".into(), Some(json!({"name": "x", "role": "admin"}))),
        ("GET", "/v1/tokens".into(), None),
        ("DELETE", format!("/v1/tokens/{victim_id}"), None),
        ("GET", "/v1/log".into(), None),
        ("GET", "/v1/state/digest".into(), None),
        ("POST", "/v1/workloads".into(), Some(server_harness::job("sneaky", Some(A)))),
        ("GET", "/v1/workloads".into(), None),
        ("GET", format!("/v1/workloads/{b1}"), None),
        ("POST", format!("/v1/workloads/{b1}/cancel"), Some(json!({}))),
        ("POST", format!("/v1/workloads/{b1}/complete"), Some(json!({"exit_code": 0}))),
        ("GET", format!("/v1/workloads/{b1}/explain"), None),
        ("GET", "/v1/events".into(), None),
        ("GET", "/v1/sites".into(), None),
        ("GET", format!("/v1/sites/{site}"), None),
        ("PUT", format!("/v1/sites/{site}/budget"), Some(json!({"budget_w": 1}))),
        ("GET", "/v1/racks".into(), None),
        ("GET", "/v1/nodes".into(), None),
        ("GET", format!("/v1/nodes/{idle}"), None),
        ("PUT", format!("/v1/nodes/{idle}/state"), Some(json!({"up": false}))),
    ];
    let log_before = api.digest(&t.admin);
    let raw = client(Duration::from_secs(30));
    for (method, path, body) in &routes {
        let wrong = "gw_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        for auth in [
            None,
            Some(format!("Bearer {wrong}")),
            Some(format!("Bearer {revoked}")),
            Some("Basic eDp5".into()),
            Some("Bearer ".into()),
        ] {
            let mut req = raw.request(method.parse().expect("a method"), format!("{}{path}", server.base));
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().expect("an answer");
            let status = resp.status().as_u16();
            let body: Value = resp.json().unwrap_or(Value::Null);
            let r = Resp { status, body, what: format!("{method} {path} with Authorization {auth:?}") };
            r.expect_error(401, "unauthorized");
        }
    }
    assert_eq!(api.digest(&t.admin), log_before, "unauthenticated requests changed nothing");
    for path in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"] {
        api.send("GET", path, None, None).expect_status(200);
    }

    // --- Unknown and malformed ids: the JSON 404 on every per-workload route. ---
    for id in
        [unknown_id.as_str(), "abc", "w-", "w-12x", "w--1", "-1", "w-99999999999999999999999", "%20", "W-1"]
    {
        for token in [&t.admin, &t.a] {
            for (method, suffix, body) in [
                ("GET", "", None),
                ("GET", "/explain", None),
                ("POST", "/cancel", Some(json!({}))),
                ("POST", "/complete", Some(json!({"exit_code": 0}))),
            ] {
                api.send(method, &format!("/v1/workloads/{id}{suffix}"), Some(token), body.as_ref())
                    .expect_error(404, "not-found");
            }
        }
    }
    server.assert_clean_log();
}

#[test]
fn tenants_are_isolated_and_roles_enforced_on_every_route_on_sqlite() {
    run_on(Backend::Sqlite, "isolation", isolation);
}

#[test]
fn tenants_are_isolated_and_roles_enforced_on_every_route_on_postgres() {
    run_on(Backend::Postgres, "isolation", isolation);
}
