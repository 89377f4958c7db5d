//! The control plane's side of the agent protocol, driven by a scripted agent over real
//! HTTP against a real `gigawatt serve`: registration and its refusals, assignments and
//! their environment, task reports ending workloads, shipped output, energy, power
//! limits, node loss with requeue, and fencing by generation.

mod server_harness;

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use server_harness::{Api, Backend, Server, TestDb, heartbeat, inventory, report};

const NODE_A: &str = "valence-a001-n01";
const NODE_B: &str = "valence-a001-n02";

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn start(db: &TestDb, dir: &std::path::Path) -> Server {
    Server::start(
        db,
        &[
            "--require-agents",
            "--heartbeat-interval",
            "200ms",
            "--lost-after",
            "1s",
            "--grace",
            "1s",
            "--data-dir",
            dir.to_str().expect("utf-8 path"),
        ],
    )
}

#[test]
fn agent_protocol_end_to_end() {
    let Some(db) = TestDb::new(Backend::Sqlite, "agent_protocol") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db, dir.path());
    let admin = server.admin_token.clone().expect("admin token");
    let api = Api::new(&server.base);
    api.create_tenant(&admin, "acme");
    let (_, tenant) = api.issue_token(&admin, "tenant", Some("acme"));
    let (_, agent) = api.issue_agent_token(&admin, NODE_A);
    let (_, agent_b) = api.issue_agent_token(&admin, NODE_B);

    // Refusals, each with a clear error.
    api.post("/v1/agent/register", "gw_wrong", &inventory(NODE_A, 8)).expect_error(401, "unauthorized");
    api.post("/v1/agent/register", &tenant, &inventory(NODE_A, 8)).expect_error(403, "forbidden");
    let r = api.post("/v1/agent/register", &agent, &inventory("no-such-node", 8));
    r.expect_error(403, "forbidden");
    assert!(r.str("message").contains(&format!("node {NODE_A}'s")), "{}", r.body);
    let r = api.post("/v1/agent/register", &agent, &inventory(NODE_A, 4));
    r.expect_error(422, "invalid-field");
    assert!(r.str("message").contains("8 GPUs in the fleet file"), "{}", r.body);
    heartbeat(&api, &agent, NODE_A, 1, &[]).expect_error(409, "stale-generation");

    // Registration; the agent role sees no workloads.
    let reg = api.post("/v1/agent/register", &agent, &inventory(NODE_A, 8));
    reg.expect_status(200);
    let gen_a = reg.body["generation"].as_u64().expect("generation");
    assert_eq!(reg.body["heartbeat_interval_ms"], 200);
    assert_eq!(reg.body["fence_after_ms"], 800);
    api.get("/v1/workloads", &agent).expect_status(200);
    let first = heartbeat(&api, &agent, NODE_A, gen_a, &[]);
    first.expect_status(200);
    assert_eq!(first.body["assignments"], json!([]));
    heartbeat(&api, &agent, NODE_A, gen_a + 7, &[]).expect_error(409, "stale-generation");

    // A two-rank gang with a command: both ranks land on the only registered node.
    let job = json!({"name": "hello", "command": ["sh", "-c", "echo hi"], "resources": {"gpus": 2},
                     "gang": {"tasks": 2}, "env": {"MY_VAR": "x"}});
    let id = api.post("/v1/workloads", &tenant, &job).expect_status(201).str("id");
    let hb = heartbeat(&api, &agent, NODE_A, gen_a, &[]);
    let assignments = hb.body["assignments"].as_array().expect("assignments").clone();
    assert_eq!(assignments.len(), 2, "{}", hb.body);
    for a in &assignments {
        let env = &a["env"];
        assert_eq!(a["workload"], id.as_str());
        assert_eq!(env["GIGAWATT_WORKLOAD_ID"], id.as_str());
        assert_eq!(env["GIGAWATT_WORLD_SIZE"], "2");
        assert_eq!(env["GIGAWATT_RANK"], a["task"].to_string().as_str());
        assert_eq!(env["GIGAWATT_MASTER_ADDR"], "127.0.0.1");
        assert_eq!(env["MY_VAR"], "x");
        let gpus: Vec<String> = a["gpus"].as_array().expect("gpus").iter().map(|g| g.to_string()).collect();
        assert_eq!(env["CUDA_VISIBLE_DEVICES"], gpus.join(",").as_str());
    }

    // Both start, output is shipped, rank 0 succeeds then rank 1: the gang succeeded.
    let running: Vec<Value> = assignments.iter().map(|a| report(a, "running", None, 10.0)).collect();
    heartbeat(&api, &agent, NODE_A, gen_a, &running).expect_status(200);
    let w = api.get(&format!("/v1/workloads/{id}"), &tenant);
    assert!(
        w.body["placement"].as_array().expect("placement").iter().all(|t| t["process"] == "running"),
        "{}",
        w.body
    );
    for a in &assignments {
        let text = format!("rank {}\n", a["task"]);
        let chunk = json!({"node": NODE_A, "generation": gen_a,
            "key": {"workload": a["workload"], "task": a["task"], "generation": a["generation"]},
            "stream": "stdout", "offset": 0,
            "data_base64": base64::engine::general_purpose::STANDARD.encode(text.as_bytes())});
        let ack = api.post("/v1/agent/logs", &agent, &chunk);
        ack.expect_status(200);
        assert_eq!(ack.body["length"], text.len());
    }
    let done: Vec<Value> = assignments.iter().map(|a| report(a, "exited", Some(0), 500.0)).collect();
    let hb = heartbeat(&api, &agent, NODE_A, gen_a, &done);
    assert_eq!(hb.body["acknowledged"].as_array().map(Vec::len), Some(2), "{}", hb.body);
    assert_eq!(hb.body["assignments"], json!([]));
    // Repeating the exits (a lost answer) changes nothing.
    heartbeat(&api, &agent, NODE_A, gen_a, &done).expect_status(200);
    let w = api.get(&format!("/v1/workloads/{id}"), &tenant);
    assert_eq!(w.body["state"], "succeeded", "{}", w.body);
    assert_eq!(w.body["exit_code"], 0);
    assert_eq!(w.body["energy_j"], 1000.0, "each exit counted once: {}", w.body);
    let logs = api.get(&format!("/v1/workloads/{id}/logs?task=1"), &tenant);
    assert_eq!(logs.body["data"], "rank 1\n", "{}", logs.body);
    assert_eq!(logs.body["complete"], true);
    let energy = api.get("/v1/energy", &tenant);
    assert_eq!(energy.body[0]["tenant"], "acme");
    assert_eq!(energy.body[0]["energy_j"], 1000.0);

    // A failing rank fails the workload at once; the other rank is no longer assigned.
    let id2 = api.post("/v1/workloads", &tenant, &job).expect_status(201).str("id");
    let hb = heartbeat(&api, &agent, NODE_A, gen_a, &[]);
    let a2 = hb.body["assignments"].as_array().expect("assignments").clone();
    let reports = vec![report(&a2[0], "exited", Some(3), 1.0), report(&a2[1], "running", None, 1.0)];
    let hb = heartbeat(&api, &agent, NODE_A, gen_a, &reports);
    assert_eq!(hb.body["assignments"], json!([]), "the surviving rank must stop: {}", hb.body);
    let w = api.get(&format!("/v1/workloads/{id2}"), &tenant);
    assert_eq!((w.body["state"].clone(), w.body["exit_code"].clone()), (json!("failed"), json!(3)));

    // Power limits: refused out of range, delivered in the answer.
    api.send("PUT", &format!("/v1/nodes/{NODE_A}/power-limit"), Some(&admin), Some(&json!({"watts": 50})))
        .expect_error(422, "invalid-field");
    api.send("PUT", &format!("/v1/nodes/{NODE_A}/power-limit"), Some(&tenant), Some(&json!({"watts": 400})))
        .expect_error(403, "forbidden");
    // serde reads a struct from an array too; the API refuses anything but an object.
    api.send("PUT", &format!("/v1/nodes/{NODE_A}/power-limit"), Some(&admin), Some(&json!([null, null])))
        .expect_error(422, "invalid-field");
    api.send(
        "PUT",
        &format!("/v1/nodes/{NODE_A}/power-limit"),
        Some(&admin),
        Some(&json!({"watts": 400, "gpus": [1]})),
    )
    .expect_status(200);
    let hb = heartbeat(&api, &agent, NODE_A, gen_a, &[]);
    assert_eq!(hb.body["power_limits_w"], json!({"1": 400}));

    // Node loss: a job on node B (the only node with room for 8 GPUs once A is full) is
    // requeued when B goes silent, and B's old agent is fenced.
    let reg_b = api.post("/v1/agent/register", &agent_b, &inventory(NODE_B, 8));
    let gen_b = reg_b.body["generation"].as_u64().expect("generation");
    heartbeat(&api, &agent_b, NODE_B, gen_b, &[]).expect_status(200);
    let big = json!({"name": "big", "command": ["sleep", "100"], "resources": {"gpus": 8}});
    let id3 = api.post("/v1/workloads", &tenant, &big).expect_status(201).str("id");
    let on = |api: &Api| -> String {
        let w = api.get(&format!("/v1/workloads/{id3}"), &tenant);
        w.body["placement"][0]["node"].as_str().unwrap_or("").to_string()
    };
    let first_node = on(&api);
    assert!(first_node == NODE_A || first_node == NODE_B, "placed on a registered node: {first_node}");
    let (alive, alive_gen, alive_token) =
        if first_node == NODE_A { (NODE_B, gen_b, &agent_b) } else { (NODE_A, gen_a, &agent) };
    let silent = first_node.clone();
    let started = Instant::now();
    wait_for("the silent node to be declared lost and the job moved", Duration::from_secs(10), || {
        heartbeat(&api, alive_token, alive, alive_gen, &[]).expect_status(200);
        std::thread::sleep(Duration::from_millis(100));
        on(&api) == alive
    });
    assert!(started.elapsed() >= Duration::from_millis(900), "not before --lost-after");
    let (silent_gen, silent_token) = if silent == NODE_A { (gen_a, &agent) } else { (gen_b, &agent_b) };
    let r = heartbeat(&api, silent_token, &silent, silent_gen, &[]);
    r.expect_error(409, "stale-generation");
    assert!(r.str("message").contains("register again"), "{}", r.body);
    let log = api.read_log(&admin);
    let kinds: Vec<&str> = log.iter().filter_map(|r| r["event"].as_str()).collect();
    for k in ["node-registered", "task-started", "task-exited", "node-lost", "power-limit-set"] {
        assert!(kinds.contains(&k), "the log has a {k} entry: {kinds:?}");
    }
    let agents = api.get("/v1/agents", &admin);
    let states: Vec<(String, String)> = agents
        .body
        .as_array()
        .expect("agents")
        .iter()
        .map(|a| {
            (a["node"].as_str().unwrap_or("").to_string(), a["state"].as_str().unwrap_or("").to_string())
        })
        .collect();
    assert!(states.contains(&(silent.clone(), "lost".into())), "{states:?}");
    // Every refusal of an agent is logged where operators look.
    let stderr = server.stderr_text();
    for needle in ["unknown or revoked token", "agent registration refused", "agent heartbeat refused"] {
        assert!(stderr.contains(needle), "the server logged `{needle}`:\n{stderr}");
    }
    let metrics = server_harness::client(Duration::from_secs(10))
        .get(format!("{}/metrics", server.base))
        .send()
        .and_then(reqwest::blocking::Response::text)
        .expect("metrics");
    assert!(metrics.contains("gigawatt_gpu_power_watts{"), "metrics has per-GPU power");
    assert!(metrics.contains("gigawatt_gpu_energy_joules_total{"), "metrics has GPU energy");
    assert!(
        metrics.contains("gigawatt_tenant_energy_joules_total{tenant=\"acme\"}"),
        "metrics has tenant energy"
    );
}
