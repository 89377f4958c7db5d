//! A fleet file edited under a log: work the new fleet can never run is rejected at the
//! next start, with the reason, instead of waiting forever (or failing the start); work
//! on a site that may no longer hold its data is evicted, with the reason, and placed
//! again where it may.

mod server_harness;

use serde_json::json;
use server_harness::{Api, Backend, Server, TestDb, run_on};

/// One H100 server (`HGX`: the harness's) and one T4 server; `T4_RACK` is cut out to
/// remove the T4s.
const FLEET: &str = r#"
HGX

[node_type.t4]
gpu_model = "T4"
gpus = 4
cpu_millicores = 64000
memory_mib = 262144
base_power_w = 800

[[site]]
id = "lab"
country = "FR"
region = "eu-west-fr"
pue = 1.0
grid = [{ from = 2020-01-01, capacity_mw = 0.05 }]

  [[site.rack_group]]
  prefix = "lab-h"
  count = 1
  node_type = "hgx"
  nodes_per_rack = 1
T4_RACK
"#;

const T4_RACK: &str = r#"
  [[site.rack_group]]
  prefix = "lab-t"
  count = 1
  node_type = "t4"
  nodes_per_rack = 1
"#;

/// The fleet file, with `t4_rack` in place of `T4_RACK`.
fn fleet_file(t4_rack: &str) -> String {
    FLEET.replace("HGX", server_harness::HGX_NODE_TYPE).replace("T4_RACK", t4_rack)
}

fn t4_job(name: &str) -> serde_json::Value {
    json!({"name": name, "kind": "batch", "resources": {"gpus": 4, "gpu_models": ["T4"]}})
}

fn fleet_change(db: &TestDb) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let fleet = dir.path().join("lab.toml");
    std::fs::write(&fleet, fleet_file(T4_RACK)).expect("fleet file");
    let mut server = Server::start_with_fleet(db, &fleet, &[]);
    let api = Api::new(&server.base);
    let admin = server.admin_token.clone().expect("the first start prints the admin token");
    api.create_tenant(&admin, "acme");
    let running = api.post("/v1/workloads", &admin, &{
        let mut j = t4_job("first");
        j["tenant"] = json!("acme");
        j
    });
    running.expect_status(201);
    let waiting = api.post("/v1/workloads", &admin, &{
        let mut j = t4_job("second");
        j["tenant"] = json!("acme");
        j
    });
    waiting.expect_status(201);
    let (running, waiting) = (running.str("id"), waiting.str("id"));
    assert_eq!(api.get(&format!("/v1/workloads/{waiting}"), &admin).body["state"], "pending");
    server.kill();

    // The T4 rack leaves the fleet file.
    std::fs::write(&fleet, fleet_file("")).expect("fleet file");
    let server = Server::start_with_fleet(db, &fleet, &[]);
    let api = Api::new(&server.base);
    for id in [&running, &waiting] {
        let w = api.get(&format!("/v1/workloads/{id}"), &admin);
        assert_eq!(w.body["state"], "rejected", "{id}: {}", w.body);
        let reason = w.body["reason"].as_str().unwrap_or("");
        assert!(reason.contains("no node of this fleet has a GPU of model T4; it has H100-SXM"), "{reason}");
    }
    // The log and a fresh fold of it agree.
    let (_, digest) = server_harness::replay(db);
    assert_eq!(api.get("/v1/state/digest", &admin).body["digest"].as_str().unwrap_or(""), digest);
}

fn two_sites(paris_certs: &str) -> String {
    server_harness::two_sites(paris_certs, r#"["hds"]"#)
}

/// The issue's probe: `hds` is removed from a site that runs health work, and the server
/// restarted. The work must not keep running there: it is evicted with a residency
/// reason and placed on the other HDS site.
fn decertified(db: &TestDb) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let fleet = dir.path().join("two.toml");
    std::fs::write(&fleet, two_sites(r#"["hds", "iso27001"]"#)).expect("fleet file");
    let mut server = Server::start_with_fleet(db, &fleet, &[]);
    let api = Api::new(&server.base);
    let admin = server.admin_token.clone().expect("the first start prints the admin token");
    api.create_tenant(&admin, "clinic");
    let job = json!({"name": "scans", "kind": "batch", "tenant": "clinic", "data_class": "health",
                     "resources": {"gpus": 8}});
    let w = api.post("/v1/workloads", &admin, &job);
    w.expect_status(201);
    let id = w.str("id");
    let node = |api: &Api| {
        let w = api.get(&format!("/v1/workloads/{id}"), &admin);
        assert_eq!(w.body["state"], "running", "{}", w.body);
        w.body["placement"][0]["node"].as_str().unwrap_or("").to_string()
    };
    assert!(node(&api).starts_with("paris"), "the first site in file order takes it");
    let facts = |api: &Api| -> Vec<(u64, serde_json::Value)> {
        api.read_log(&admin)
            .into_iter()
            .filter(|r| r["event"] == "fleet-in-force")
            .map(|r| (r["seq"].as_u64().unwrap_or(0), r["body"].clone()))
            .collect()
    };
    let first = facts(&api);
    assert_eq!(first.len(), 1, "the first start logs the fleet in force");
    assert_eq!(first[0].1["sites"][0]["certifications"], json!(["hds", "iso27001"]));
    assert_eq!(first[0].1["sites"][0]["jurisdiction"], "EU");
    assert_eq!(first[0].1["residency"]["health"]["certifications"], json!(["hds"]));
    server.kill();
    // An unchanged fleet logs nothing new.
    let mut server = Server::start_with_fleet(db, &fleet, &[]);
    assert_eq!(facts(&Api::new(&server.base)), first);
    server.kill();

    // paris loses its HDS certification.
    std::fs::write(&fleet, two_sites(r#"["iso27001"]"#)).expect("fleet file");
    let server = Server::start_with_fleet(db, &fleet, &[]);
    let api = Api::new(&server.base);
    assert!(node(&api).starts_with("lyon"), "moved to the site still certified");
    let explain = api.get(&format!("/v1/workloads/{id}/explain"), &admin);
    let history = explain.body["history"].as_array().cloned().unwrap_or_default();
    let evicted = history
        .iter()
        .find(|h| h["event"] == "workload-preempted")
        .unwrap_or_else(|| panic!("no preemption in {history:?}"));
    let text = evicted["text"].as_str().unwrap_or("");
    assert!(
        text.contains("site paris may no longer hold its data")
            && text
                .contains("operator rule for health data (HDS, in EU/EEA): site paris is not HDS-certified"),
        "{text}"
    );
    assert_eq!(evicted["detail"]["why"]["kind"], "residency", "{}", evicted["detail"]);
    // The changed facts were logged, before the eviction they caused.
    let now = facts(&api);
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(now[1].1["sites"][0]["certifications"], json!(["iso27001"]));
    assert!(now[1].0 < evicted["seq"].as_u64().unwrap_or(0), "facts first, then the eviction");
    // The log and a fresh fold of it agree.
    let (_, digest) = server_harness::replay(db);
    assert_eq!(api.get("/v1/state/digest", &admin).body["digest"].as_str().unwrap_or(""), digest);
}

#[test]
fn health_work_on_a_decertified_site_is_evicted_and_placed_again_on_sqlite() {
    run_on(Backend::Sqlite, "decertified", decertified);
}

#[test]
fn health_work_on_a_decertified_site_is_evicted_and_placed_again_on_postgres() {
    run_on(Backend::Postgres, "decertified", decertified);
}

#[test]
fn work_a_changed_fleet_can_never_run_is_rejected_at_the_next_start_on_sqlite() {
    run_on(Backend::Sqlite, "fleet_change", fleet_change);
}

#[test]
fn work_a_changed_fleet_can_never_run_is_rejected_at_the_next_start_on_postgres() {
    run_on(Backend::Postgres, "fleet_change", fleet_change);
}
