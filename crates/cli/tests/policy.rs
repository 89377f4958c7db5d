//! Tenant residency policies and job pins through the real server: a pin steers a job
//! and an unknown site is refused with its field; a tenant's policy is logged with who
//! set it, evicts the tenant's work that breaks it (with why), survives a restart, and
//! `gigawatt policy show` prints each class's effective policy with the source of each
//! term. Only the tenant itself and operators may set it; other tenants do not see it.

mod server_harness;

use std::process::Command;

use serde_json::json;
use server_harness::{Api, Backend, Server, TestDb, run_on};

fn health_job(name: &str, gpus: u32, placement: Option<serde_json::Value>) -> serde_json::Value {
    let mut j = json!({"name": name, "kind": "batch", "data_class": "health", "resources": {"gpus": gpus}});
    if let Some(p) = placement {
        j["placement"] = p;
    }
    j
}

/// A workload's state and the site of its first task.
fn where_runs(api: &Api, admin: &str, id: &str) -> (String, serde_json::Value) {
    let w = api.get(&format!("/v1/workloads/{id}"), admin);
    (w.body["state"].as_str().unwrap_or("").to_string(), w.body["placement"][0]["site"].clone())
}

/// The error names `field` and says `message`.
fn field_error(body: serde_json::Value, field: &str, message: &str) {
    assert_eq!(body["field"], field, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains(message)), "{body}");
}

fn cli(server: &str, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(server_harness::gigawatt_bin())
        .args(args)
        .args(["--server", server, "--token", token])
        .env_remove("GIGAWATT_SERVER")
        .env_remove("GIGAWATT_TOKEN")
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("gigawatt runs")
}

fn policies(db: &TestDb) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let fleet = dir.path().join("two.toml");
    std::fs::write(&fleet, server_harness::two_sites(r#"["hds"]"#, r#"["hds"]"#)).expect("fleet file");
    let mut server = Server::start_with_fleet(db, &fleet, &[]);
    let api = Api::new(&server.base);
    let admin = server.admin_token.clone().expect("the first start prints the admin token");
    api.create_tenant(&admin, "clinic");
    api.create_tenant(&admin, "other");
    let (clinic_id, clinic) = api.issue_token(&admin, "tenant", Some("clinic"));
    let (_, other) = api.issue_token(&admin, "tenant", Some("other"));
    let (_, auditor) = api.issue_token(&admin, "auditor", None);
    // A pin steers: lyon, although paris comes first and is free.
    let pinned =
        api.post("/v1/workloads", &clinic, &health_job("pinned", 4, Some(json!({"sites": ["lyon"]}))));
    pinned.expect_status(201);
    assert_eq!(where_runs(&api, &admin, &pinned.str("id")), ("running".into(), json!("lyon")));
    // A site the fleet lacks is refused with the field and the sites there are.
    let bad = api.post("/v1/workloads", &clinic, &health_job("x", 1, Some(json!({"sites": ["nice"]}))));
    bad.expect_error(422, "invalid-field");
    field_error(
        bad.body.clone(),
        "placement.sites[0]",
        "`nice` is not a site of the fleet; sites are: paris, lyon",
    );
    // Unpinned, the first site in file order takes it.
    let free = api.post("/v1/workloads", &clinic, &health_job("free", 8, None));
    free.expect_status(201);
    let free_id = free.str("id");
    assert_eq!(where_runs(&api, &admin, &free_id), ("running".into(), json!("paris")));

    // Who may set and see it.
    let body = json!({"sites": ["lyon"]});
    let path = "/v1/tenants/clinic/policy";
    api.send("PUT", path, Some(&auditor), Some(&body)).expect_status(403);
    api.send("PUT", path, Some(&other), Some(&body)).expect_error(404, "not-found");
    api.send("GET", path, Some(&other), None).expect_error(404, "not-found");
    field_error(
        api.send("PUT", path, Some(&clinic), Some(&json!({"countries": ["Europe"]})))
            .expect_error(422, "invalid-field")
            .body
            .clone(),
        "countries[0]",
        "`Europe` is not an ISO 3166-1 alpha-2 code (`FR`, `DE`) nor a group (`EU`, `EEA`)",
    );

    // The clinic keeps its data in lyon: its paris job is evicted, with why, and waits
    // (lyon has 4 GPUs free, it needs 8).
    let set = api.send("PUT", path, Some(&clinic), Some(&body));
    set.expect_status(200);
    let health =
        set.body["classes"].as_array().and_then(|c| c.iter().find(|c| c["data_class"] == "health")).cloned();
    let health = health.expect("a health class");
    assert_eq!(health["text"], "HDS, in EU/EEA (operator); at lyon (tenant)");
    assert_eq!(health["sites"], json!(["lyon"]));
    assert_eq!(health["terms"][0], json!({"source": "operator", "term": "countries", "value": "EEA/EU"}));
    assert_eq!(health["terms"][2], json!({"source": "tenant", "term": "sites", "value": "lyon"}));
    assert_eq!(where_runs(&api, &admin, &free_id).0, "pending");
    let explain = api.get(&format!("/v1/workloads/{free_id}/explain"), &clinic);
    let history = explain.body["history"].as_array().cloned().unwrap_or_default();
    let evicted = history.iter().find(|h| h["event"] == "workload-preempted").expect("an eviction");
    assert!(
        evicted["text"]
            .as_str()
            .unwrap_or("")
            .contains("tenant policy for health data (at lyon): site paris is not one of lyon"),
        "{evicted}"
    );
    let log = api.read_log(&auditor);
    let record = log.iter().find(|r| r["event"] == "tenant-policy-set").expect("the policy is logged");
    assert_eq!(record["body"]["by"], clinic_id.as_str(), "with who set it");
    assert_eq!(record["body"]["rule"], json!({"sites": ["lyon"]}));
    let set_seq = record["seq"].as_u64().unwrap_or(u64::MAX);
    let evicted_seq = evicted["seq"].as_u64().unwrap_or(0);
    assert!(set_seq < evicted_seq, "the policy first, then the eviction it caused");

    // The policy survives a restart; the waiting job still waits under it.
    server.kill();
    let server = Server::start_with_fleet(db, &fleet, &[]);
    let api = Api::new(&server.base);
    let shown = api.get(path, &auditor);
    assert_eq!(shown.body["policy"]["sites"], json!(["lyon"]));
    assert_eq!(shown.body["set_by"], clinic_id.as_str());
    assert_eq!(api.get(&format!("/v1/workloads/{free_id}"), &admin).body["state"], "pending");

    // The CLI prints each class with the source of each term.
    let out = cli(&server.base, &clinic, &["policy", "show", "clinic"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("health data: HDS, in EU/EEA (operator); at lyon (tenant)"), "{text}");
    assert!(text.contains("allowed sites: lyon"), "{text}");
    assert!(
        text.contains("excluded: tenant policy for health data (at lyon): site paris is not one of lyon"),
        "{text}"
    );
    // `--clear` lifts it; the waiting job goes back to paris.
    let out = cli(&server.base, &clinic, &["policy", "set", "clinic", "--clear"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no policy of its own"));
    assert_eq!(where_runs(&api, &admin, &free_id), ("running".into(), json!("paris")));
    // A bad flag is refused before anything is sent.
    let out = cli(&server.base, &clinic, &["policy", "set", "clinic", "--jurisdictions", "eu"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("jurisdictions[0]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server_harness::assert_digest_matches_replay(&api, db, &admin);
}

#[test]
fn tenant_policies_and_job_pins_steer_and_evict_on_sqlite() {
    run_on(Backend::Sqlite, "policies", policies);
}

#[test]
fn tenant_policies_and_job_pins_steer_and_evict_on_postgres() {
    run_on(Backend::Postgres, "policies", policies);
}
