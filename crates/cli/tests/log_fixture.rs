//! The scenario behind `crates/store/tests/fixtures/log-v1.jsonl`: a log written by the
//! real server in format version 1 (tenants, tokens, quotas, a tenant policy, pinned and
//! health work, a gang, a cancellation, a node taken down and back), which
//! `crates/store/tests/log_format.rs` replays forever after.
//!
//! The test runs the scenario on today's server and checks it still writes the same
//! kinds of records in the same order as the fixture: when it does not, the log's shape
//! changed, and a new format version needs its own fixture beside this one. It writes the
//! fixture only when asked, for a new format version (never to refresh this one: the
//! point is that old logs keep reading):
//!
//! ```text
//! GIGAWATT_WRITE_LOG_FIXTURE=1 cargo test -p gigawatt --test log_fixture
//! ```

mod server_harness;

use serde_json::json;
use server_harness::{Api, Backend, Server, TestDb};

#[test]
fn the_fixture_scenario_still_writes_the_same_kinds_of_records() {
    let db = TestDb::new(Backend::Sqlite, "log_fixture").expect("a SQLite database");
    let mut server = Server::start(&db, &[]);
    let api = Api::new(&server.base);
    let admin = server.admin_token.clone().expect("the first start prints the admin token");
    api.create_tenant(&admin, "acme");
    api.create_tenant(&admin, "clinic");
    let (_, acme) = api.issue_token(&admin, "tenant", Some("acme"));
    let (_, clinic) = api.issue_token(&admin, "tenant", Some("clinic"));
    let (_, operator) = api.issue_token(&admin, "operator", None);
    let quotas = json!({
        "flavours": [{"name": "any"}],
        "tenants": {"acme": {"flavours": {"any": {"nominal": 64}}}, "clinic": {"flavours": {"any": {"nominal": 32}}}}
    });
    api.send("PUT", "/v1/quotas", Some(&operator), Some(&quotas)).expect_status(200);
    api.send("PUT", "/v1/tenants/clinic/policy", Some(&clinic), Some(&json!({"countries": ["FR"]})))
        .expect_status(200);
    let gang = json!({"name": "llm", "gang": {"tasks": 2}, "resources": {"gpus": 8}, "time_limit": "2h"});
    api.post("/v1/workloads", &acme, &gang).expect_status(201);
    let scans = json!({"name": "scans", "data_class": "health", "resources": {"gpus": 4},
                       "placement": {"sites": ["valence"]}});
    api.post("/v1/workloads", &clinic, &scans).expect_status(201);
    let batch = api.post("/v1/workloads", &acme, &json!({"name": "batch", "resources": {"gpus": 1}}));
    batch.expect_status(201);
    api.post(&format!("/v1/workloads/{}/cancel", batch.str("id")), &acme, &json!({})).expect_status(200);
    let node =
        api.get("/v1/nodes?limit=1", &admin).body["items"][0]["name"].as_str().expect("a node").to_string();
    let state = |up: bool| json!({"up": up, "reason": "fixture"});
    api.send("PUT", &format!("/v1/nodes/{node}/state"), Some(&operator), Some(&state(false)))
        .expect_status(200);
    api.send("PUT", &format!("/v1/nodes/{node}/state"), Some(&operator), Some(&state(true)))
        .expect_status(200);
    server.kill();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let records = rt.block_on(async {
        let store = gigawatt_store::Store::open(&db.url).await.expect("the log opens");
        store.read_after(0, 100_000).await.expect("the log reads")
    });
    let dir = server_harness::repo().join("crates/store/tests/fixtures");
    if std::env::var_os("GIGAWATT_WRITE_LOG_FIXTURE").is_some() {
        let mut out = String::new();
        for r in &records {
            out.push_str(&serde_json::to_string(r).expect("a record serialises"));
            out.push('\n');
        }
        std::fs::write(dir.join("log-v1.jsonl"), out).expect("fixture written");
        println!("wrote {} records", records.len());
    }
    let fixture = std::fs::read_to_string(dir.join("log-v1.jsonl")).expect("the fixture");
    let kinds_then: Vec<String> = fixture
        .lines()
        .map(|l| {
            let r: gigawatt_store::Record = serde_json::from_str(l).expect("a fixture record");
            r.event.kind().to_string()
        })
        .collect();
    let kinds_now: Vec<String> = records.iter().map(|r| r.event.kind().to_string()).collect();
    assert_eq!(
        kinds_now, kinds_then,
        "the scenario's log changed shape: a new format version needs its own fixture"
    );
    for r in &records {
        assert!(gigawatt_store::canonical::is_canonical(&r.leaf()), "record {}", r.seq);
    }
}
