//! Tenants learn nothing about each other's work through the control plane's answers.
//! Here: a preemption. The preempted tenant reads that higher-priority work took the
//! room, never that work's id or class, and why it waits, never the fleet's node counts;
//! an operator reads all of it.

mod server_harness;

use serde_json::{Value, json};
use server_harness::{Api, Backend, Server, TestDb, wait_for};

/// One server of 8 GPUs (`HGX`: the harness's H100 server): any 8-GPU job preempts
/// another of lower priority.
const FLEET: &str = r#"
HGX

[[site]]
id = "lab"
country = "FR"
region = "eu-west-fr"
pue = 1.0
grid = [{ from = 2020-01-01, capacity_mw = 0.025 }]

  [[site.rack_group]]
  prefix = "lab-r"
  count = 1
  node_type = "hgx"
  nodes_per_rack = 1
"#;

fn job(name: &str, priority: &str) -> Value {
    json!({"name": name, "kind": "batch", "priority": priority, "resources": {"gpus": 8}})
}

fn preemption_names_no_other_tenant(db: &TestDb) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let fleet = dir.path().join("one-node.toml");
    std::fs::write(&fleet, FLEET.replace("HGX", server_harness::HGX_NODE_TYPE)).expect("fleet file");
    let server = Server::start_with_fleet(db, &fleet, &[]);
    let api = Api::new(&server.base);
    let admin = server.admin_token.clone().expect("the first start prints the admin token");
    api.create_tenant(&admin, "a");
    api.create_tenant(&admin, "b");
    let a = api.issue_token(&admin, "tenant", Some("a")).1;
    let b = api.issue_token(&admin, "tenant", Some("b")).1;

    let r = api.post("/v1/workloads", &a, &job("train", "standard"));
    r.expect_status(201);
    let victim = r.str("id");
    let r = api.post("/v1/workloads", &b, &job("serve", "latency-critical"));
    r.expect_status(201);
    let by = r.str("id");
    wait_for("the preemption", std::time::Duration::from_secs(10), || {
        let w = api.get(&format!("/v1/workloads/{victim}"), &admin);
        (w.body["state"] == "pending").then_some(())
    });

    // Tenant a: what happened and why, in words and as data, and nothing of b's work.
    let mine = api.get(&format!("/v1/workloads/{victim}/explain"), &a);
    mine.expect_status(200);
    let history = mine.body["history"].as_array().expect("history").clone();
    let preempted =
        history.iter().find(|h| h["event"] == "workload-preempted").expect("a preemption").clone();
    assert_eq!(preempted["detail"]["why"]["kind"], "priority", "{preempted}");
    assert!(
        preempted["text"].as_str().unwrap_or("").contains("preempted by higher-priority work"),
        "{preempted}"
    );
    let said = mine.body.to_string() + &api.get(&format!("/v1/workloads/{victim}"), &a).body.to_string();
    for secret in [by.as_str(), "latency-critical", "\"b\""] {
        assert!(!said.contains(secret), "tenant a reads `{secret}` about tenant b's work:\n{said}");
    }

    // Why it waits: the reasons, never the fleet's node counts (nor whose work is ahead).
    let waits = api.post("/v1/workloads", &a, &job("more", "standard")).str("id");
    let reason =
        api.get(&format!("/v1/workloads/{waits}"), &a).body["reason"].as_str().unwrap_or("").to_string();
    let pending = api.get(&format!("/v1/workloads/{waits}/explain"), &a).body["history"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["event"] == "workload-pending"))
        .cloned()
        .expect("a pending reason");
    for text in [reason.as_str(), pending["text"].as_str().unwrap_or("")] {
        let why = text.split_once("pending: ").map_or(text, |(_, w)| w);
        assert!(!why.contains("nodes fit") && !why.contains("w-"), "{text}");
    }
    for field in ["nodes_total", "nodes_fit", "rejected", "behind"] {
        assert!(pending["detail"]["why"].get(field).is_none(), "{field}: {pending}");
    }

    // An operator reads who took the room, and the node counts.
    let theirs = api.get(&format!("/v1/workloads/{victim}/explain"), &admin);
    let entry = theirs.body["history"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["event"] == "workload-preempted"))
        .cloned()
        .expect("a preemption");
    assert_eq!(entry["detail"]["why"]["by"], json!(server_harness::numeric_id(&by)), "{entry}");
    assert!(entry["text"].as_str().unwrap_or("").contains(&by), "{entry}");
    let pending = api.get(&format!("/v1/workloads/{waits}/explain"), &admin).body["history"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["event"] == "workload-pending"))
        .cloned()
        .expect("a pending reason");
    let text = pending["text"].as_str().unwrap_or("");
    assert!(text.contains("nodes fit") || text.contains(&format!("waiting behind {victim}")), "{pending}");
    drop(b);
}

#[test]
fn a_preemption_names_no_other_tenant_on_sqlite() {
    server_harness::run_on(Backend::Sqlite, "leaks", preemption_names_no_other_tenant);
}

#[test]
fn a_preemption_names_no_other_tenant_on_postgres() {
    server_harness::run_on(Backend::Postgres, "leaks", preemption_names_no_other_tenant);
}
