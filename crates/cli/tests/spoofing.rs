//! The spoofing suite: each agent credential acts for its own node only.
//!
//! Two scripted agents (over real HTTP, against a real `gigawatt serve`) hold the
//! credentials of nodes X and Y; a job with a secret in its environment runs on X. Y's
//! credential then tries every agent route as X, and reports and ships output for X's
//! task; admin, tenant and join tokens try the agent routes too. Every attempt gets 403,
//! changes nothing (the job still runs on X, its secret never reaches Y), and is recorded
//! in the log with the credential and the node it tried to act for. Enrolment by
//! one-time join token, and revoking one node's credential without touching the other,
//! are checked on the way. On SQLite and PostgreSQL.

mod server_harness;

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use server_harness::{Api, Backend, Server, TestDb, heartbeat, inventory, replay, report, run_on, wait_for};

const NODES: [&str; 2] = ["valence-a001-n01", "valence-a001-n02"];

#[test]
fn agent_credentials_act_for_their_own_node_only_on_sqlite() {
    run_on(Backend::Sqlite, "spoofing", scenario);
}

#[test]
fn agent_credentials_act_for_their_own_node_only_on_postgres() {
    run_on(Backend::Postgres, "spoofing", scenario);
}

fn log_chunk(node: &str, generation: u64, a: &Value, text: &str) -> Value {
    json!({"node": node, "generation": generation,
        "key": {"workload": a["workload"], "task": a["task"], "generation": a["generation"]},
        "stream": "stdout", "offset": 0,
        "data_base64": base64::engine::general_purpose::STANDARD.encode(text.as_bytes())})
}

fn scenario(db: &TestDb) {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().to_str().expect("utf-8 path");
    let server = Server::start(
        db,
        &["--require-agents", "--heartbeat-interval", "200ms", "--lost-after", "30s", "--data-dir", logs],
    );
    let admin = server.admin_token.clone().expect("admin token");
    let api = Api::new(&server.base);
    api.create_tenant(&admin, "acme");
    let (_, tenant) = api.issue_token(&admin, "tenant", Some("acme"));

    // An agent token must name its node.
    let r = api.post("/v1/tokens", &admin, &json!({"name": "fleet-wide", "role": "agent"}));
    r.expect_error(422, "invalid-field");
    assert_eq!(r.body["field"], "node", "{}", r.body);
    api.post("/v1/tokens", &admin, &json!({"name": "x", "role": "agent", "node": "no-such-node"}))
        .expect_error(422, "invalid-field");

    // Enrolment: a one-time join token for node 0, exchanged by its agent.
    api.post(&format!("/v1/nodes/{}/enroll", NODES[0]), &tenant, &json!({})).expect_error(403, "forbidden");
    api.post(&format!("/v1/nodes/{}/enroll", NODES[0]), &admin, &json!({"ttl_s": 5}))
        .expect_error(422, "invalid-field");
    let join = api.post(&format!("/v1/nodes/{}/enroll", NODES[0]), &admin, &json!({"ttl_s": 600}));
    join.expect_status(201);
    let join = join.str("token");
    // A join token does nothing but enrol, and only its own node.
    api.post("/v1/agent/register", &join, &inventory(NODES[0], 8)).expect_error(403, "forbidden");
    api.get("/v1/workloads", &join).expect_error(403, "forbidden");
    api.post("/v1/agent/enroll", &join, &json!({"node": NODES[1]})).expect_error(403, "forbidden");
    let cred = api.post("/v1/agent/enroll", &join, &json!({"node": NODES[0]}));
    cred.expect_status(201);
    let (cred_0_id, cred_0) = (cred.str("id"), cred.str("token"));
    // Spent: it is good once.
    api.post("/v1/agent/enroll", &join, &json!({"node": NODES[0]})).expect_error(401, "unauthorized");
    let (cred_1_id, cred_1) = api.issue_agent_token(&admin, NODES[1]);
    let creds = [cred_0, cred_1];
    let cred_ids = [cred_0_id, cred_1_id];
    // Only an agent's own credential enrols: an admin token is not a join token.
    api.post("/v1/agent/enroll", &admin, &json!({"node": NODES[0]})).expect_error(403, "forbidden");

    let mut generation = [0u64; 2];
    for i in 0..2 {
        let r = api.post("/v1/agent/register", &creds[i], &inventory(NODES[i], 8));
        r.expect_status(200);
        generation[i] = r.body["generation"].as_u64().expect("generation");
    }

    // A job with a secret runs on one of the two nodes: X; the other is Y.
    let job = json!({"name": "secret", "command": ["sleep", "600"], "resources": {"gpus": 8},
                     "env": {"HF_TOKEN": "hf_secret_value"}});
    let id = api.post("/v1/workloads", &tenant, &job).expect_status(201).str("id");
    let (x, a) = wait_for("the job's assignment", Duration::from_secs(10), || {
        (0..2).find_map(|i| {
            let hb = heartbeat(&api, &creds[i], NODES[i], generation[i], &[]);
            hb.expect_status(200);
            hb.body["assignments"].as_array().and_then(|l| l.first().cloned()).map(|a| (i, a))
        })
    });
    let y = 1 - x;
    let (node_x, node_y) = (NODES[x], NODES[y]);
    assert_eq!(a["env"]["HF_TOKEN"], "hf_secret_value");
    heartbeat(&api, &creds[x], node_x, generation[x], &[report(&a, "running", None, 1.0)]).expect_status(200);
    api.post("/v1/agent/logs", &creds[x], &log_chunk(node_x, generation[x], &a, "from x\n"))
        .expect_status(200);
    let seq_before = api.read_log(&admin).last().and_then(|r| r["seq"].as_u64()).expect("a log");

    // Every attempt to act for X, or for X's task, from elsewhere.
    let as_x = |token: &str| {
        vec![
            api.post("/v1/agent/register", token, &inventory(node_x, 8)),
            heartbeat(&api, token, node_x, generation[x], &[]),
            api.get(&format!("/v1/agent/changes?node={node_x}&generation={}", generation[x]), token),
            api.post("/v1/agent/logs", token, &log_chunk(node_x, generation[x], &a, "spoofed\n")),
        ]
    };
    let mut attempts = as_x(&creds[y]);
    attempts.extend(as_x(&admin));
    attempts.extend(as_x(&tenant));
    let ghost = json!({"workload": "w-999999", "task": 0, "generation": 3, "state": "exited",
                       "pid": 1, "exit_code": 0, "signal": null, "energy_j": 1.0e9, "message": null});
    attempts.extend([
        // Y reports X's task as its own: exited with 0, or running.
        heartbeat(&api, &creds[y], node_y, generation[y], &[report(&a, "exited", Some(0), 1.0e9)]),
        heartbeat(&api, &creds[y], node_y, generation[y], &[report(&a, "running", None, 1.0)]),
        // A task that does not exist; an older copy number that never was placed.
        heartbeat(&api, &creds[y], node_y, generation[y], &[ghost]),
        heartbeat(
            &api,
            &creds[y],
            node_y,
            generation[y],
            &[{
                let mut r = report(&a, "exited", Some(0), 1.0e9);
                r["generation"] = json!(1);
                r
            }],
        ),
        // Y writes into X's task output.
        api.post("/v1/agent/logs", &creds[y], &log_chunk(node_y, generation[y], &a, "spoofed\n")),
    ]);
    for r in &attempts {
        r.expect_error(403, "forbidden");
    }
    eprintln!("{} spoofing attempts refused", attempts.len());

    // Nothing changed: the job runs on X, its output is X's, Y was never given it.
    let w = api.get(&format!("/v1/workloads/{id}"), &tenant);
    assert_eq!(w.body["state"], "running", "{}", w.body);
    assert_eq!(w.body["placement"][0]["node"], node_x, "{}", w.body);
    assert_eq!(w.body["placement"][0]["process"], "running", "{}", w.body);
    let out = api.get(&format!("/v1/workloads/{id}/logs"), &tenant);
    assert_eq!(out.body["data"], "from x\n", "{}", out.body);
    let hb = heartbeat(&api, &creds[y], node_y, generation[y], &[]);
    assert_eq!(hb.body["assignments"], json!([]), "Y gets nothing of X's: {}", hb.body);
    // The log holds only the refusals since, each naming the credential and the node.
    let log = api.read_log(&admin);
    let new: Vec<&Value> = log.iter().filter(|r| r["seq"].as_u64() > Some(seq_before)).collect();
    assert!(new.iter().all(|r| r["event"] == "agent-refused"), "only refusals were written: {new:?}");
    let text: Vec<String> = new.iter().map(|r| r["text"].as_str().unwrap_or_default().to_string()).collect();
    for what in ["registration", "heartbeat", "poll", "log chunk", "task report"] {
        assert!(
            text.iter()
                .any(|t| t.contains(&format!("credential {} refused", cred_ids[y])) && t.contains(what)),
            "a refusal of a {what} is recorded: {text:#?}"
        );
    }
    assert!(
        text.iter().any(|t| t.contains(&format!("for node {node_x}"))),
        "refusals name the node they tried to act for: {text:#?}"
    );

    // X itself goes on: its exit ends the job, and repeating it (a lost answer) is fine.
    let done = [report(&a, "exited", Some(0), 5.0)];
    heartbeat(&api, &creds[x], node_x, generation[x], &done).expect_status(200);
    heartbeat(&api, &creds[x], node_x, generation[x], &done).expect_status(200);
    let w = api.get(&format!("/v1/workloads/{id}"), &tenant);
    assert_eq!(w.body["state"], "succeeded", "{}", w.body);
    assert_eq!(w.body["energy_j"], 5.0, "{}", w.body);

    // Revoking Y's credential leaves X's working.
    api.send("DELETE", &format!("/v1/tokens/{}", cred_ids[y]), Some(&admin), None).expect_status(200);
    heartbeat(&api, &creds[y], node_y, generation[y], &[]).expect_error(401, "unauthorized");
    heartbeat(&api, &creds[x], node_x, generation[x], &[]).expect_status(200);

    let digest = api.digest(&admin);
    drop(server);
    assert_eq!(replay(db), digest, "the live state equals a replay of the log");
}
