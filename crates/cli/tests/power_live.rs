//! The live power manager, end to end: a `gigawatt serve` on an oversubscribed site and
//! three `gigawatt agent --simulate 8xH100` processes running real commands. Load rises
//! until the manager must cap; then a curtailment. Checked through the event log,
//! `/metrics` and the limits the agents report.

mod server_harness;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server_harness::{Api, Backend, Server, TestDb};

/// One site of three DGX H100-like servers (10.2 kW each at full load) on a 25 kW IT
/// budget: `reserved` it would take two, `oversubscribed` by 0.5 it takes three (30.6 kW at
/// TDP, 18.6 kW at the GPUs' lowest limits).
const FLEET: &str = r#"
[node_type.hgx]
gpu_model = "H100"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 4600

[[site]]
id = "lab"
country = "FR"
region = "eu-west-fr"
pue = 1.0
grid = [{ from = 2020-01-01, capacity_mw = 0.025 }]
provisioning = "oversubscribed"
oversubscription = 0.5
curtailable_to_mw = 0.019
carbon_intensity = "CARBON"

  [[site.rack_group]]
  prefix = "lab-r"
  count = 1
  node_type = "hgx"
  nodes_per_rack = 3
  power_limit_kw = 40
"#;

const INTERVAL: Duration = Duration::from_secs(1);

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent(base: &str, token: &str, node: &str, dir: &Path) -> Agent {
    Agent(server_harness::spawn_agent(base, token, node, dir))
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A gauge of `/metrics` for site `lab`.
fn gauge(base: &str, name: &str) -> Option<f64> {
    let text = reqwest::blocking::get(format!("{base}/metrics")).ok()?.text().ok()?;
    let prefix = format!("gigawatt_{name}{{site=\"lab\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

/// The power limits the node's GPUs report, from its telemetry.
fn reported_limits(api: &Api, admin: &str, node: &str) -> Vec<u64> {
    let t = api.get(&format!("/v1/nodes/{node}/telemetry"), admin).body.clone();
    let last = t["samples"].as_array().and_then(|s| s.last()).cloned().unwrap_or(Value::Null);
    last["telemetry"]["gpus"]
        .as_array()
        .map_or_else(Vec::new, |g| g.iter().map(|x| x["power_limit_w"].as_u64().unwrap_or(0)).collect())
}

/// When a log entry was appended, in Unix ms.
fn at_ms(entry: &Value) -> Option<i64> {
    let at = entry["at"].as_str()?;
    chrono::DateTime::parse_from_rfc3339(at).ok().map(|t| t.timestamp_millis())
}

fn job(name: &str) -> Value {
    json!({"name": name, "kind": "batch", "command": ["sleep", "600"],
           "resources": {"gpus": 8, "cpu_millicores": 1000, "memory_mib": 1024}})
}

#[test]
fn load_rising_is_capped_within_a_control_interval_and_a_curtailment_is_met_then_lifted() {
    let Some(db) = TestDb::new(Backend::Sqlite, "power_live") else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = dir.path().join("lab.toml");
    let carbon = server_harness::repo().join("carbon/fr-2024-example.csv");
    std::fs::write(&fleet, FLEET.replace("CARBON", &carbon.to_string_lossy())).expect("fleet file");
    let server = Server::start_with_fleet(
        &db,
        &fleet,
        &["--heartbeat-interval", "1s", "--power-interval", "1s", "--require-agents", "--budget-lead", "2s"],
    );
    let api = Api::new(&server.base);
    let admin = server.admin_token.clone().expect("admin token");
    api.create_tenant(&admin, "acme");
    let nodes: Vec<String> = api.get("/v1/nodes", &admin).body["items"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let _agents: Vec<Agent> = nodes
        .iter()
        .map(|n| agent(&server.base, &api.issue_agent_token(&admin, n).1, n, dir.path()))
        .collect();
    wait_for("three agents", 30, || {
        let agents = api.get("/v1/agents", &admin).body.clone();
        (agents.as_array().map_or(0, |a| a.iter().filter(|x| x["state"] == "ready").count()) == 3)
            .then_some(())
    });

    // The budget must hold at every instant we look, whatever happens.
    let budget = 25_000.0;
    let check = |when: &str, limit: f64| {
        if let Some(m) = gauge(&server.base, "site_power_measured_watts") {
            assert!(m <= limit, "{when}: measured draw {m} W over the {limit} W budget");
        }
        if let Some(e) = gauge(&server.base, "site_power_envelope_watts") {
            assert!(e <= limit, "{when}: envelope {e} W over the {limit} W budget");
        }
    };

    // Two jobs fit without a cap (9.7 kW each at full speed).
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        let mut body = job(name);
        body["tenant"] = json!("acme");
        let r = api.post("/v1/workloads", &admin, &body);
        r.expect_status(201);
        ids.push(r.str("id"));
    }
    wait_for("two jobs running", 30, || {
        let running =
            ids.iter().all(|id| api.get(&format!("/v1/workloads/{id}"), &admin).body["state"] == "running");
        running.then_some(())
    });
    std::thread::sleep(3 * INTERVAL);
    check("two jobs", budget);
    assert!(!api.read_log(&admin).iter().any(|r| r["event"] == "power-capped"), "nothing capped yet");

    // The third would take the site to 29.1 kW: the manager must cap.
    let mut body = job("c");
    body["tenant"] = json!("acme");
    let r = api.post("/v1/workloads", &admin, &body);
    r.expect_status(201);
    let third = r.str("id");
    let log = wait_for("a power cap", 20, || {
        let log = api.read_log(&admin);
        log.iter().any(|r| r["event"] == "power-capped").then_some(log)
    });
    let placed = log
        .iter()
        .find(|r| {
            r["event"] == "workload-placed"
                && r["body"]["workload"] == json!(server_harness::numeric_id(&third))
        })
        .and_then(at_ms)
        .unwrap_or_else(|| panic!("the third job was placed: {log:#?}"));
    let capped = log.iter().find(|r| r["event"] == "power-capped").and_then(at_ms).expect("cap");
    let within = capped - placed;
    assert!(
        (0..=(INTERVAL.as_millis() as i64) + 500).contains(&within),
        "the cap came {within} ms after the load rose; the control interval is {INTERVAL:?}"
    );
    let text =
        log.iter().find(|r| r["event"] == "power-capped").and_then(|r| r["text"].as_str()).unwrap_or("");
    assert!(text.contains("site lab would draw") && text.contains("training work is capped"), "{text}");
    // All three run, capped, and the GPUs report the limits.
    wait_for("the third job running", 30, || {
        (api.get(&format!("/v1/workloads/{third}"), &admin).body["state"] == "running").then_some(())
    });
    let capped_limits = wait_for("capped limits reported", 20, || {
        let l: Vec<Vec<u64>> = nodes.iter().map(|n| reported_limits(&api, &admin, n)).collect();
        l.iter().all(|g| g.len() == 8 && g.iter().all(|w| (200..600).contains(w))).then_some(l)
    });
    check("three jobs, capped", budget);
    assert_eq!(gauge(&server.base, "site_power_capped_tasks"), Some(3.0));
    let explain = api.get(&format!("/v1/workloads/{third}/explain"), &admin).body.to_string();
    assert!(explain.contains("power-capped"), "explain shows the cap: {explain}");

    // A curtailment to 20 kW: limits fall before it starts, and come back after it.
    let soon = |secs: u64| {
        let t: chrono::DateTime<chrono::Utc> =
            (std::time::SystemTime::now() + Duration::from_secs(secs)).into();
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let c = api.post(
        "/v1/sites/lab/curtailments",
        &admin,
        &json!({"to_mw": 0.02, "from": soon(4), "until": soon(12)}),
    );
    c.expect_status(201);
    assert_eq!(c.body["would_preempt"], json!(null), "caps meet it: {}", c.body);
    let lowered = wait_for("limits lowered for the curtailment", 15, || {
        let l: Vec<Vec<u64>> = nodes.iter().map(|n| reported_limits(&api, &admin, n)).collect();
        l.iter().all(|g| g.iter().all(|w| *w < 300)).then_some(l)
    });
    // The figures of the next plan reflect the heartbeats that reported the new limits.
    std::thread::sleep(2 * INTERVAL);
    check("curtailed", 20_000.0);
    assert!(lowered[0][0] < capped_limits[0][0]);
    // Back to an even share of the 25 kW once it ends: (25 − 13.8 − 4.8 kW) / 24 GPUs above
    // their 200 W minimum, 466 W each.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l: Vec<Vec<u64>> = nodes.iter().map(|n| reported_limits(&api, &admin, n)).collect();
        if l.iter().all(|g| g.len() == 8 && g.iter().all(|w| (430..=500).contains(w))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the limits did not come back: {l:?} (capped before the curtailment: {capped_limits:?}); site: {}\n{}",
            api.get("/v1/sites/lab", &admin).body,
            server.stderr_text().lines().rev().take(6).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    check("after the curtailment", budget);
    let log = api.read_log(&admin);
    let changes: Vec<String> = log
        .iter()
        .filter(|r| r["event"] == "budget-changed")
        .map(|r| r["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(changes.iter().any(|t| t.contains("curtailment 1")), "{changes:?}");
    assert!(changes.len() >= 2, "the cut and the return: {changes:?}");

    // Energy and carbon: the first job reports tokens, then is cancelled; its energy, CO2
    // and energy per token follow, and so do the site's figures for the day.
    let first = &ids[0];
    let tenant_token = api.issue_token(&admin, "tenant", Some("acme")).1;
    let u = api.post(&format!("/v1/workloads/{first}/usage"), &tenant_token, &json!({"tokens": 1_000_000}));
    u.expect_status(200);
    assert_eq!(u.body["tokens"], json!(1_000_000));
    api.send("POST", &format!("/v1/workloads/{first}/cancel"), Some(&admin), None).expect_status(200);
    let w = wait_for("the first job's energy", 30, || {
        let w = api.get(&format!("/v1/workloads/{first}"), &admin).body.clone();
        (w["co2_g"].as_f64().unwrap_or(0.0) > 0.0).then_some(w)
    });
    let (joules, grams) = (w["energy_j"].as_f64().unwrap_or(0.0), w["co2_g"].as_f64().unwrap_or(0.0));
    assert!(joules > 1_000.0, "{w}");
    // The French profile lies between 11 and 46 g/kWh.
    let per_kwh = grams / (joules / 3.6e6);
    assert!((10.0..50.0).contains(&per_kwh), "{per_kwh} g/kWh from {w}");
    let per_token = w["joules_per_token"].as_f64().unwrap_or(0.0);
    assert!((per_token - joules / 1e6).abs() < 1e-6 * joules, "{w}");
    let sites = api.get("/v1/energy/sites", &admin).expect_status(200).body.clone();
    let lab =
        sites.as_array().and_then(|s| s.iter().find(|x| x["site"] == "lab")).cloned().expect("lab today");
    assert!(
        lab["co2_kg"].as_f64().unwrap_or(0.0) > 0.0 && lab["energy_kwh"].as_f64().unwrap_or(0.0) > 0.0,
        "{lab}"
    );
    let tenants = api.get("/v1/energy", &admin).expect_status(200).body.clone();
    assert!(tenants.to_string().contains("co2_g"), "{tenants}");
}
