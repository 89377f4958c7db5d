//! Budgets that change, against a real `gigawatt serve`: a curtailment is checked, met
//! before it starts (work shed lowest priority first), and lifted; one that leaves no
//! room for latency-critical work is accepted with an alert that `explain` shows.

mod server_harness;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server_harness::{Api, Backend, Server, TestDb};

fn rfc3339_in(secs: i64) -> String {
    let t = std::time::SystemTime::now() + Duration::from_secs(u64::try_from(secs.max(0)).unwrap_or(0));
    let t: chrono::DateTime<chrono::Utc> = t.into();
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn valence(api: &Api, admin: &str) -> Value {
    api.get("/v1/sites/valence", admin).expect_status(200).body.clone()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn a_curtailment_is_met_before_it_starts_and_lifted_when_cancelled() {
    let Some(db) = TestDb::new(Backend::Sqlite, "curtailment") else { return };
    let server = Server::start(&db, &["--budget-lead", "3s"]);
    let api = Api::new(&server.base);
    let admin = server.admin_token.clone().expect("admin token");
    api.create_tenant(&admin, "acme");
    let (_, tenant) = api.issue_token(&admin, "tenant", Some("acme"));

    // 170 servers of latency-critical inference (1.73 MW of IT at TDP) and a standard
    // batch job, both on Valence's H100s (sensitive data: SecNumCloud sites in France, and
    // only Valence has H100s among them).
    let lc = api.post(
        "/v1/workloads",
        &tenant,
        &json!({"name": "chat", "kind": "inference", "priority": "latency-critical", "data_class": "sensitive",
                "resources": {"gpus": 8, "gpu_models": ["H100"]}, "service": {"replicas": 170}}),
    );
    lc.expect_status(201);
    let lc_id = lc.str("id");
    let batch = api.post(
        "/v1/workloads",
        &tenant,
        &json!({"name": "etl", "kind": "batch", "data_class": "sensitive", "resources": {"gpus": 8, "gpu_models": ["H100"]}}),
    );
    batch.expect_status(201);
    let batch_id = batch.str("id");
    let before = valence(&api, &admin);
    assert_eq!(before["budget_w"], json!(6_666_666));

    // Bad input: each refused with the field and what would be right.
    let site = "/v1/sites/valence/curtailments";
    let past = json!({"to_mw": 5, "from": "2020-01-01T00:00:00Z", "until": rfc3339_in(3600)});
    let r = api.send("POST", site, Some(&admin), Some(&past));
    r.expect_error(422, "invalid-field");
    assert_eq!(r.body["field"], "from");
    let below = json!({"to_mw": 1.5, "until": rfc3339_in(3600)});
    let r = api.send("POST", site, Some(&admin), Some(&below));
    r.expect_error(422, "invalid-field");
    assert!(
        r.body["message"].as_str().unwrap_or("").contains("below the site's minimum of 2.00 MW"),
        "{}",
        r.body
    );
    let backwards = json!({"to_mw": 5, "from": rfc3339_in(600), "until": rfc3339_in(60)});
    let r = api.send("POST", site, Some(&admin), Some(&backwards));
    r.expect_error(422, "invalid-field");
    assert_eq!(r.body["field"], "until");
    let nothing = json!({"to_mw": 9, "until": rfc3339_in(60)});
    api.send("POST", site, Some(&admin), Some(&nothing)).expect_error(422, "invalid-field");
    api.send("POST", site, Some(&tenant), Some(&json!({"to_mw": 5, "until": rfc3339_in(60)})))
        .expect_error(403, "forbidden");
    api.send(
        "POST",
        "/v1/sites/atlantis/curtailments",
        Some(&admin),
        Some(&json!({"to_mw": 5, "until": rfc3339_in(60)})),
    )
    .expect_error(404, "not-found");

    // Down to the site's minimum in 6 s: 1.67 MW of IT cannot hold the inference service.
    let c = api.post(
        site,
        &admin,
        &json!({"to_mw": 2, "from": rfc3339_in(6), "until": rfc3339_in(120), "reason": "RTE demand response"}),
    );
    c.expect_status(201);
    assert_eq!(c.body["state"], "scheduled");
    assert_eq!(c.body["it_budget_w"], json!(1_666_666));
    let would: Vec<String> = c.body["would_preempt"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(would.first(), Some(&batch_id), "standard work goes first: {would:?}");
    assert!(would.contains(&lc_id), "{would:?}");
    let alert = c.body["alert"].as_str().expect("an alert");
    assert!(alert.contains("leaves no room for latency-critical work") && alert.contains(&lc_id), "{alert}");
    // Accepted, with the alert in the log and in `explain`.
    let explain = api.get(&format!("/v1/workloads/{lc_id}/explain"), &tenant).expect_status(200).body.clone();
    let history = explain["history"].to_string();
    assert!(history.contains("power-alert") && history.contains("leaves no room"), "{history}");

    // Met ahead of its start (3 s of lead): the budget drops and the work is shed.
    wait_for("the cut to be held", 10, || valence(&api, &admin)["budget_w"] == json!(1_666_666));
    let batch_state = api.get(&format!("/v1/workloads/{batch_id}"), &tenant).body["state"].clone();
    assert_eq!(batch_state, "pending", "the batch job was preempted");
    let now = valence(&api, &admin);
    assert!(now["power_w"].as_u64().unwrap_or(u64::MAX) <= 1_666_666, "{now}");
    let log = api.read_log(&admin);
    let scheduled_change = log.iter().any(|r| {
        r["event"] == "budget-changed"
            && r["body"]["scheduled"] == json!(true)
            && r["text"].as_str().unwrap_or("").contains("curtailment 1")
    });
    assert!(scheduled_change, "a scheduled budget change names the curtailment");

    // Listed, then cancelled: the budget comes back and the work with it.
    let list = api.get(site, &admin).expect_status(200).body.clone();
    assert_eq!(list[0]["id"], 1);
    api.send("DELETE", "/v1/sites/valence/curtailments/1", Some(&admin), None).expect_status(200);
    api.send("DELETE", "/v1/sites/valence/curtailments/1", Some(&admin), None).expect_error(409, "conflict");
    wait_for("the budget to come back", 10, || valence(&api, &admin)["budget_w"] == json!(6_666_666));
    wait_for("the batch job to run again", 10, || {
        api.get(&format!("/v1/workloads/{batch_id}"), &tenant).body["state"] == "running"
    });
}
