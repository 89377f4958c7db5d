//! The agent protocol driven with arbitrary input: whatever an agent sends, the server
//! answers 200 or a 4xx that names what is wrong (never a 5xx, never a crash), no
//! number it refuses reaches the state, `/metrics` never shows a non-finite value, and
//! the live state digest equals `gigawatt admin replay` of the log.
//!
//! One real `gigawatt serve` for all cases; proptest draws the heartbeats (telemetry,
//! task reports for the node's real assignment and for others) and log chunks.

mod server_harness;

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use server_harness::{Api, Backend, Server, TestDb, replay, wait_for};

const NODE: &str = "valence-a001-n01";

/// A number as an agent might send it: ordinary, huge, negative or tiny.
fn any_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0..5000.0f64,
        Just(-1e300),
        Just(1e308),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        proptest::num::f64::NORMAL,
    ]
}

fn any_unsigned() -> impl Strategy<Value = u64> {
    prop_oneof![0..2000u64, Just(u64::MAX), Just(i64::MAX as u64), any::<u64>()]
}

fn gpu() -> impl Strategy<Value = Value> {
    (0..10u16, any_unsigned(), 0..=255u8, any_unsigned(), 0..400u16, any_unsigned(), any_number()).prop_map(
        |(index, power_w, utilization_pct, memory_used_mib, temperature_c, power_limit_w, energy_j)| {
            json!({"index": index, "power_w": power_w, "utilization_pct": utilization_pct,
                   "memory_used_mib": memory_used_mib, "temperature_c": temperature_c,
                   "power_limit_w": power_limit_w, "energy_j": energy_j})
        },
    )
}

/// A task report: about the real task or a made-up one, task, generation (made-up
/// ones), state, exit code, energy.
type Report = (bool, u32, u64, &'static str, Option<i32>, f64);

/// What a case sends: telemetry, and reports about the real task or made-up ones.
#[derive(Debug, Clone)]
struct Case {
    power_w: u64,
    gpus: Vec<Value>,
    reports: Vec<Report>,
    chunk: Option<(u64, String)>,
}

fn case() -> impl Strategy<Value = Case> {
    let report = (
        any::<bool>(),
        0..3u32,
        prop_oneof![Just(0u64), 1..50u64, any::<u64>()],
        prop_oneof![Just("running"), Just("stopping"), Just("exited"), Just("failed-to-start")],
        proptest::option::of(any::<i32>()),
        any_number(),
    );
    (
        any_unsigned(),
        proptest::collection::vec(gpu(), 0..10),
        proptest::collection::vec(report, 0..4),
        proptest::option::of((any_unsigned(), "[a-z\\n]{0,20}")),
    )
        .prop_map(|(power_w, gpus, reports, chunk)| Case { power_w, gpus, reports, chunk })
}

#[test]
fn arbitrary_agent_input_never_corrupts_the_state() {
    let Some(db) = TestDb::new(Backend::Sqlite, "agent_fuzz") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let server = Server::start(&db, &["--require-agents", "--lost-after", "60s", "--data-dir", data]);
    let admin = server.admin_token.clone().expect("admin token");
    let api = Api::new(&server.base);
    api.create_tenant(&admin, "acme");
    let (_, tenant) = api.issue_token(&admin, "tenant", Some("acme"));
    let (agent, generation) = api.register_agent(&admin, NODE);
    let job = json!({"name": "fuzzed", "command": ["sleep", "600"], "resources": {"gpus": 2}, "gang": {"tasks": 2}});
    api.post("/v1/workloads", &tenant, &job).expect_status(201);
    let empty =
        json!({"node": NODE, "generation": generation, "telemetry": {"power_w": 0, "gpus": []}, "tasks": []});
    let assignment = wait_for("the assignment", Duration::from_secs(10), || {
        let hb = api.post("/v1/agent/heartbeat", &agent, &empty);
        hb.body["assignments"].as_array().and_then(|a| a.first().cloned())
    });

    let mut runner = TestRunner::new(Config { cases: 96, failure_persistence: None, ..Config::default() });
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u32>::new());
    runner
        .run(&case(), |c| {
            let tasks: Vec<Value> = c
                .reports
                .iter()
                .map(|(real, task, g, state, exit_code, energy_j)| {
                    let (workload, generation) = if *real {
                        (assignment["workload"].clone(), assignment["generation"].clone())
                    } else {
                        (json!("w-12345"), json!(g))
                    };
                    json!({"workload": workload, "task": task, "generation": generation, "state": state,
                           "pid": 7, "exit_code": exit_code, "signal": null, "energy_j": energy_j,
                           "message": null})
                })
                .collect();
            let hb = json!({"node": NODE, "generation": generation,
                            "telemetry": {"power_w": c.power_w, "gpus": c.gpus}, "tasks": tasks});
            let mut answers = vec![api.post("/v1/agent/heartbeat", &agent, &hb)];
            if let Some((offset, text)) = &c.chunk {
                use base64::Engine as _;
                let chunk = json!({"node": NODE, "generation": generation,
                    "key": {"workload": assignment["workload"], "task": assignment["task"],
                            "generation": assignment["generation"]},
                    "stream": "stdout", "offset": offset,
                    "data_base64": base64::engine::general_purpose::STANDARD.encode(text.as_bytes())});
                answers.push(api.post("/v1/agent/logs", &agent, &chunk));
            }
            for a in answers {
                *statuses.borrow_mut().entry(a.status).or_default() += 1;
                prop_assert!(
                    matches!(a.status, 200 | 403 | 409 | 422),
                    "answered {} to {hb}: {}",
                    a.status,
                    a.body
                );
                if a.status == 422 {
                    prop_assert!(a.body["field"].is_string(), "a 422 names its field: {}", a.body);
                }
            }
            Ok(())
        })
        .expect("every answer is 200 or a 4xx naming the problem");
    let statuses = statuses.into_inner();
    eprintln!("answers by status: {statuses:?}");
    assert!(statuses.get(&422).is_some_and(|n| *n > 0), "some input was refused: {statuses:?}");
    assert!(statuses.get(&200).is_some_and(|n| *n > 0), "some input was taken: {statuses:?}");

    let metrics = server_harness::client(Duration::from_secs(10))
        .get(format!("{}/metrics", server.base))
        .send()
        .and_then(reqwest::blocking::Response::text)
        .expect("metrics");
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok_and(f64::is_finite), "a finite value: {line}");
    }
    let energy = api.get("/v1/energy", &admin);
    assert!(
        energy.body.as_array().is_some_and(|l| l.iter().all(|t| t["energy_j"].is_number())),
        "{}",
        energy.body
    );
    let digest = api.digest(&admin);
    drop(server);
    assert_eq!(replay(&db), digest, "the live state equals a replay of the log");
}
