//! Carbon-aware deferral against a real `gigawatt serve` on the France fleet (whose French
//! sites carry the bundled carbon-intensity week): a deferrable job waits for its
//! low-carbon window, says what that saves, survives a restart still waiting, and can be
//! cancelled meanwhile; bad deadlines are refused with the field.

mod server_harness;

use std::time::Duration;

use serde_json::{Value, json};
use server_harness::{Api, Backend, Server, TestDb};

fn in_hours(h: u64) -> String {
    let t: chrono::DateTime<chrono::Utc> =
        (std::time::SystemTime::now() + Duration::from_secs(h * 3600)).into();
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn job(deadline: &str, time_limit: Option<&str>) -> Value {
    json!({"name": "nightly-eval", "kind": "batch", "data_class": "sensitive",
           "resources": {"gpus": 8}, "time_limit": time_limit,
           "deferrable": {"deadline": deadline}})
}

#[test]
fn a_deferrable_job_waits_for_its_low_carbon_window_and_says_what_it_saves() {
    let Some(db) = TestDb::new(Backend::Sqlite, "deferral") else { return };
    let mut server = Server::start(&db, &[]);
    let api = Api::new(&server.base);
    let admin = server.admin_token.clone().expect("admin token");
    api.create_tenant(&admin, "acme");
    let (_, tenant) = api.issue_token(&admin, "tenant", Some("acme"));

    // Refused, with the field and the fix.
    let r = api.send("POST", "/v1/workloads", Some(&tenant), Some(&job(&in_hours(1), Some("2h"))));
    r.expect_error(422, "invalid-field");
    assert_eq!(r.body["field"], "deferrable.deadline");
    let r = api.send("POST", "/v1/workloads", Some(&tenant), Some(&job(&in_hours(48), None)));
    r.expect_error(422, "invalid-field");
    assert_eq!(r.body["field"], "time_limit");
    let r = api.send("POST", "/v1/workloads", Some(&tenant), Some(&job("tomorrow", Some("2h"))));
    r.expect_error(422, "invalid-field");
    assert_eq!(r.body["field"], "deferrable.deadline");
    assert_eq!(api.list_all(&tenant, "").len(), 0, "a refused job leaves no trace");

    // Three days of slack for a two-hour run: it waits for the cleanest two hours. The
    // bundled series is a typical week on the wall clock, so when the test runs during the
    // cleanest night of the next three days, now is the best start and the job runs at
    // once: then a week of slack (whose cleanest window is Sunday night) must wait, unless
    // now is that very window, when no deferral can help.
    let mut r = api.post("/v1/workloads", &tenant, &job(&in_hours(72), Some("2h")));
    r.expect_status(201);
    if r.body["state"] == "running" {
        let first = r.str("id");
        api.send("POST", &format!("/v1/workloads/{first}/cancel"), Some(&tenant), None).expect_status(200);
        r = api.post("/v1/workloads", &tenant, &job(&in_hours(168), Some("2h")));
        r.expect_status(201);
        if r.body["state"] == "running" {
            let now: chrono::DateTime<chrono::Utc> = std::time::SystemTime::now().into();
            use chrono::{Datelike, Timelike};
            assert!(
                now.weekday() == chrono::Weekday::Sun && now.hour() <= 4,
                "a week of slack ran at once outside the week's cleanest window: {}",
                r.body
            );
            eprintln!("now is the cleanest window of the week: nothing to defer");
            return;
        }
    }
    let id = r.str("id");
    assert_eq!(r.body["state"], "pending");
    let reason = r.body["reason"].as_str().unwrap_or("");
    assert!(reason.starts_with("deferred until") && reason.contains("g CO2 saved"), "{}", r.body);
    assert!(r.body["spec"]["deferrable"]["deadline"].is_string(), "{}", r.body);
    let log = api.read_log(&admin);
    let deferred = log.iter().rev().find(|e| e["event"] == "workload-deferred").expect("a deferral record");
    let (expected, immediate) = (
        deferred["body"]["expected_g"].as_f64().unwrap_or(0.0),
        deferred["body"]["immediate_g"].as_f64().unwrap_or(0.0),
    );
    assert!(expected < immediate && expected > 0.0, "{deferred}");
    assert_eq!(deferred["body"]["site"], "valence");
    let n = server_harness::numeric_id(&id);
    assert!(
        !log.iter().any(|e| e["event"] == "workload-placed" && e["body"]["workload"] == json!(n)),
        "not placed before its window"
    );
    let explain = api.get(&format!("/v1/workloads/{id}/explain"), &tenant).body.to_string();
    assert!(explain.contains("for a cleaner grid at site valence"), "{explain}");
    let energy = api.get("/v1/energy", &tenant).expect_status(200).body.clone();
    let saved = energy[0]["co2_saved_g"].as_f64().unwrap_or(0.0);
    assert!((saved - (immediate - expected)).abs() < 1e-6 * immediate, "{energy}");

    // Still waiting after a restart.
    server.kill();
    let server = Server::start(&db, &[]);
    let api = Api::new(&server.base);
    let w = api.get(&format!("/v1/workloads/{id}"), &tenant).expect_status(200).body.clone();
    assert_eq!(w["state"], "pending", "{w}");
    assert!(w["reason"].as_str().unwrap_or("").starts_with("deferred until"), "{w}");

    // Cancelled while it waits.
    api.send("POST", &format!("/v1/workloads/{id}/cancel"), Some(&tenant), None).expect_status(200);
    assert_eq!(api.get(&format!("/v1/workloads/{id}"), &tenant).body["state"], "cancelled");
    server.assert_clean_log();
}
