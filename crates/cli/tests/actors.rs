//! Who did what: tenant and token creation, revocation and a node taken down each record
//! the token that acted (ISO 27001 A.8.15, SOC 2 CC7.2), and an operator's reason for a
//! node keeps the actor beside it. Every record a request stages names that request's
//! token, role and source address.

mod server_harness;

use serde_json::{Value, json};
use server_harness::{Api, Backend, Server, TestDb, run_on};

fn actors(db: &TestDb) {
    let server = Server::start(db, &[]);
    let api = Api::new(&server.base);
    let admin = server.admin_token.clone().expect("the first start prints the admin token");
    let admin_id = api.get("/v1/whoami", &admin).str("token_id");
    api.create_tenant(&admin, "acme");
    let (tenant_tok, _) = api.issue_token(&admin, "tenant", Some("acme"));
    let (operator_id, operator) = api.issue_token(&admin, "operator", None);
    api.send("DELETE", &format!("/v1/tokens/{tenant_tok}"), Some(&admin), None).expect_status(200);
    let node =
        api.get("/v1/nodes?limit=1", &admin).body["items"][0]["name"].as_str().expect("a node").to_string();
    let down = json!({"up": false, "reason": "fan replaced"});
    api.send("PUT", &format!("/v1/nodes/{node}/state"), Some(&operator), Some(&down)).expect_status(200);

    let log = api.read_log(&admin);
    let find = |kind: &str, pick: &dyn Fn(&Value) -> bool| -> Value {
        log.iter()
            .find(|r| r["event"] == kind && pick(&r["body"]))
            .unwrap_or_else(|| panic!("no {kind} in {log:?}"))
            .clone()
    };
    let first_admin = find("token-issued", &|b| b["role"] == "admin");
    assert_eq!(first_admin["body"]["by"], "the server's first start");
    let tenant = find("tenant-created", &|b| b["tenant"] == "acme");
    assert_eq!(tenant["body"]["by"], admin_id.as_str());
    assert!(tenant["text"].as_str().is_some_and(|t| t.ends_with(&format!("(by {admin_id})"))), "{tenant}");
    assert_eq!(
        find("token-issued", &|b| b["token_id"] == tenant_tok.as_str())["body"]["by"],
        admin_id.as_str()
    );
    assert_eq!(
        find("token-issued", &|b| b["token_id"] == operator_id.as_str())["body"]["by"],
        admin_id.as_str()
    );
    assert_eq!(
        find("token-revoked", &|b| b["token_id"] == tenant_tok.as_str())["body"]["by"],
        admin_id.as_str()
    );
    // The record-level actor: token, principal, role and the address the request came from.
    let actor = &tenant["actor"];
    assert_eq!(actor["token_id"], admin_id.as_str(), "{tenant}");
    assert_eq!(actor["role"], "admin");
    assert!(actor["source"].as_str().is_some_and(|s| s.starts_with("127.0.0.1:")), "{actor}");
    let node_down = find("node-down", &|b| b["node"] == node.as_str());
    assert_eq!(node_down["actor"]["role"], "operator");
    assert_eq!(node_down["actor"]["token_id"], operator_id.as_str());
    assert_eq!(node_down["body"]["reason"], "fan replaced", "the operator's reason is kept");
    assert_eq!(node_down["body"]["by"], operator_id.as_str(), "and so is who gave it");
}

#[test]
fn every_administrative_act_records_its_actor_on_sqlite() {
    run_on(Backend::Sqlite, "actors", actors);
}

#[test]
fn every_administrative_act_records_its_actor_on_postgres() {
    run_on(Backend::Postgres, "actors", actors);
}
