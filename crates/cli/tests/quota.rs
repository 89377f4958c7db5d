//! Quotas live: an operator sets them with `gigawatt quota set`, a tenant reads its
//! standing with `gigawatt quota`, a borrower is reclaimed by the periodic pass for a
//! tenant within its nominal quota, and the reclaimed task is stopped by its agent with
//! SIGTERM, then SIGKILL once its job's own grace period is over. Seen through the API,
//! the event log and the machine's process table, on each storage backend.

mod server_harness;

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server_harness::{Api, Backend, Server, TestDb, gigawatt_bin, run_on, wait_for};

const NODES: [&str; 2] = ["valence-a001-n01", "valence-a001-n02"];

/// Two tenants share the GPUs of valence: 8 each, in one cohort.
const QUOTAS: &str = r#"
[[flavours]]
name = "h100-valence"
models = ["H100"]
sites = ["valence"]

[cohorts.lab]

[tenants.alpha]
cohort = "lab"
flavours.h100-valence = { nominal = 8 }

[tenants.beta]
cohort = "lab"
flavours.h100-valence = { nominal = 8 }
"#;

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cli(base: &str, token: &str, args: &[&str]) -> Output {
    Command::new(gigawatt_bin())
        .args(args)
        .args(["--server", base, "--token", token])
        .env("HOME", std::env::temp_dir())
        .env_remove("GIGAWATT_SERVER")
        .env_remove("GIGAWATT_TOKEN")
        .output()
        .expect("the gigawatt client runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn server(db: &TestDb, dir: &Path) -> Server {
    let dir = dir.to_string_lossy().into_owned();
    Server::start(
        db,
        &[
            "--require-agents",
            "--heartbeat-interval",
            "200ms",
            "--lost-after",
            "2s",
            "--pass-interval",
            "300ms",
            "--data-dir",
            &dir,
        ],
    )
}

/// A server with tenants (a token each) and agents on the first nodes of [`NODES`].
struct Lab {
    server: Server,
    api: Api,
    admin: String,
    tokens: Vec<String>,
    dir: tempfile::TempDir,
    _agents: Vec<Agent>,
}

fn lab(db: &TestDb, tenants: &[&str], agents: usize) -> Lab {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = server(db, dir.path());
    let admin = server.admin_token.clone().expect("admin token");
    let api = Api::new(&server.base);
    let tokens = tenants
        .iter()
        .map(|t| {
            api.create_tenant(&admin, t);
            api.issue_token(&admin, "tenant", Some(t)).1
        })
        .collect();
    let agents: Vec<Agent> = NODES[..agents]
        .iter()
        .map(|n| {
            Agent(server_harness::spawn_agent(
                &server.base,
                &api.issue_agent_token(&admin, n).1,
                n,
                dir.path(),
            ))
        })
        .collect();
    wait_for("every agent to report", Duration::from_secs(60), || {
        let list = api.get("/v1/agents", &admin).body;
        let ready = list.as_array()?.iter().filter(|a| a["last_heartbeat_at"].is_string()).count();
        (ready == agents.len()).then_some(())
    });
    Lab { server, api, admin, tokens, dir, _agents: agents }
}

/// Every live process whose environment names `workload`.
fn processes_of(workload: &str) -> usize {
    let needle = format!("GIGAWATT_WORKLOAD_ID={workload}");
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.flatten()
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let alive = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next()).is_some_and(|s| s != 'Z');
            alive
                && std::fs::read(e.path().join("environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
        })
        .count()
}

fn sh(name: &str, script: &str, grace: Option<&str>) -> Value {
    let mut j = json!({"name": name, "command": ["sh", "-c", script], "resources": {"gpus": 8}});
    if let Some(g) = grace {
        j["grace"] = g.into();
    }
    j
}

fn records<'a>(log: &'a [Value], kind: &str, id: &str) -> Vec<&'a Value> {
    let n = server_harness::numeric_id(id);
    log.iter().filter(|r| r["event"] == kind && r["body"]["workload"] == n).collect()
}

fn at_ms(r: &Value) -> i64 {
    let at = r["at"].as_str().unwrap_or_default();
    let t = humantime::parse_rfc3339(at).unwrap_or_else(|e| panic!("`{at}`: {e}"));
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn scenario(db: &TestDb) {
    let Lab { mut server, api, admin, tokens, dir, _agents } = lab(db, &["alpha", "beta"], NODES.len());
    let (alpha, beta) = (tokens[0].clone(), tokens[1].clone());

    // A wrong file is refused with the field at fault, and nothing is logged.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, QUOTAS.replace("[tenants.beta]", "[tenants.zed]")).expect("write");
    let out = cli(&server.base, &admin, &["quota", "set", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("tenants.zed") && text(&out).contains("no tenant `zed`"), "{}", text(&out));
    assert!(api.read_log(&admin).iter().all(|r| r["event"] != "quotas-set"));

    let file = dir.path().join("quotas.toml");
    std::fs::write(&file, QUOTAS).expect("write");
    let out = cli(&server.base, &admin, &["quota", "set", file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 flavours, 1 cohorts, 2 tenants"), "{}", text(&out));

    // alpha takes its nominal, then borrows beta's unused 8 with a job that ignores
    // SIGTERM and asks for 2 s of grace.
    let own = api.post("/v1/workloads", &alpha, &sh("own", "sleep 1000", None)).expect_status(201).str("id");
    let borrowed = api
        .post(
            "/v1/workloads",
            &alpha,
            &sh("borrowed", "trap 'echo got TERM' TERM; while :; do sleep 0.1; done", Some("2s")),
        )
        .expect_status(201)
        .str("id");
    for id in [&own, &borrowed] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let w = api.get(&format!("/v1/workloads/{id}"), &alpha).body;
            let running =
                w["placement"].as_array().is_some_and(|p| p.iter().all(|t| t["process"] == "running"));
            if running && w["state"] == "running" {
                break;
            }
            assert!(Instant::now() < deadline, "{id} does not run: {w}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let out = cli(&server.base, &alpha, &["quota", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let status: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["flavours"][0]["used"], 16.0, "{status}");
    assert_eq!(status["flavours"][0]["borrowed"], 8.0, "{status}");
    let out = cli(&server.base, &alpha, &["quota"]);
    assert!(text(&out).contains("h100-valence") && text(&out).contains("cohort lab"), "{}", text(&out));
    // A tenant sees no other tenant's quota.
    api.get("/v1/quota?tenant=beta", &alpha).expect_error(404, "not-found");

    // beta, within its nominal, asks for what alpha borrowed: the pass reclaims it.
    let owed = api.post("/v1/workloads", &beta, &sh("owed", "sleep 1000", None)).expect_status(201).str("id");
    let deadline = Instant::now() + Duration::from_secs(30);
    let reclaimed = loop {
        let log = api.read_log(&admin);
        if let Some(r) = records(&log, "workload-preempted", &borrowed).first() {
            break (*r).clone();
        }
        if Instant::now() > deadline {
            let w = api.get(&format!("/v1/workloads/{owed}"), &beta).body;
            let kinds: Vec<String> = log.iter().map(|r| r["event"].to_string()).collect();
            panic!("no reclaim; the owed job: {w}\nthe log: {kinds:?}\n{}", server.stderr_text());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(reclaimed["body"]["why"].to_string().contains("reclaim"), "{reclaimed}");
    let took = Instant::now();
    // It is still there during its grace (it ignores SIGTERM), gone after.
    std::thread::sleep(Duration::from_millis(800));
    assert!(processes_of(&borrowed) > 0, "SIGTERM alone does not stop it");
    wait_for("the grace to run out", Duration::from_secs(20), || {
        (processes_of(&borrowed) == 0).then_some(())
    });
    assert!(
        took.elapsed() >= Duration::from_millis(1200),
        "killed only after its 2 s grace: {:?}",
        took.elapsed()
    );
    let exited = wait_for("the borrower's exit to be logged", Duration::from_secs(20), || {
        let log = api.read_log(&admin);
        records(&log, "task-exited", &borrowed).last().map(|r| (*r).clone())
    });
    assert_eq!(exited["body"]["signal"], 9, "SIGKILL after the grace: {exited}");
    let gap = at_ms(&exited) - at_ms(&reclaimed);
    assert!(gap >= 2000, "SIGKILL {gap} ms after the reclaim, before the 2 s grace ran out");
    let out = api.get(&format!("/v1/workloads/{borrowed}/logs?task=0"), &alpha);
    assert!(out.body["data"].as_str().unwrap_or_default().contains("got TERM"), "{}", out.body);

    // beta's job runs where the borrower was; the borrower waits, and says why.
    wait_for("the owed job to run", Duration::from_secs(30), || {
        let w = api.get(&format!("/v1/workloads/{owed}"), &beta).body;
        (w["state"] == "running").then_some(())
    });
    let w = api.get(&format!("/v1/workloads/{borrowed}"), &alpha).body;
    assert_eq!(w["state"], "pending", "{w}");
    let log = api.read_log(&admin);
    let started = records(&log, "task-started", &owed);
    assert!(
        started.first().is_some_and(|s| s["seq"].as_u64() > exited["seq"].as_u64()),
        "the owed task started only once the borrower's GPUs were free: {started:?} vs {exited}"
    );
    let out = cli(&server.base, &alpha, &["quota", "-o", "json"]);
    let status: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["pending"], 1, "{status}");
    assert_eq!(status["waiting"][0]["workload"], borrowed.as_str(), "{status}");
    assert!(
        status["waiting"][0]["quota"].as_str().is_some_and(|q| q.contains("uses 8 of its 8")),
        "{status}"
    );
    let line = status["waiting"][0]["text"].as_str().unwrap_or_default();
    assert!(
        line.starts_with("waiting: tenant alpha uses 8 of its 8 h100-valence nominal quota GPUs")
            && line.ends_with("no reservation yet: it starts when capacity frees"),
        "{line}"
    );

    // The quotas are in the log: a restart puts them back in force.
    let before = api.get("/v1/quotas", &admin).expect_status(200).body["config"].clone();
    server.kill();
    let server = self::server(db, dir.path());
    let api = Api::new(&server.base);
    let after = api.get("/v1/quotas", &admin).expect_status(200).body.clone();
    assert_eq!(after["config"], before);
    assert_eq!(after["tenants"][0]["flavours"][0]["used"], 8.0, "{after}");
    let out = cli(&server.base, &admin, &["quota", "show"]);
    assert!(text(&out).contains("alpha") && text(&out).contains("beta"), "{}", text(&out));
    server_harness::assert_digest_matches_replay(&api, db, &admin);
    server.assert_clean_log();
}

#[test]
fn a_borrower_is_reclaimed_with_sigterm_then_sigkill_after_its_grace() {
    for backend in Backend::ALL {
        run_on(backend, "quota_reclaim", scenario);
    }
}

/// A gang that cannot start gets a reservation from the time limits of what runs: `get`
/// and `explain` show its expected start and planned nodes, as `squeue --start` does.
#[test]
fn a_waiting_gang_shows_its_expected_start_and_planned_nodes() {
    let Some(db) = TestDb::new(Backend::Sqlite, "expected_start") else { return };
    // Every field bound: a field left to `..` would be dropped here, agents and all.
    let Lab { server, api, admin: _admin, tokens, dir: _dir, _agents } = lab(&db, &["alpha"], NODES.len());
    let alpha = tokens[0].clone();
    for limit in ["1h", "2h"] {
        let mut job = sh(&format!("limit-{limit}"), "sleep 1000", None);
        job["time_limit"] = limit.into();
        let id = api.post("/v1/workloads", &alpha, &job).expect_status(201).str("id");
        wait_for(&format!("{id} to run"), Duration::from_secs(60), || {
            (api.get(&format!("/v1/workloads/{id}"), &alpha).body["state"] == "running").then_some(())
        });
    }
    let mut gang = sh("gang", "sleep 1", None);
    gang["gang"] = json!({"tasks": 2, "topology": "any"});
    let id = api.post("/v1/workloads", &alpha, &gang).expect_status(201).str("id");
    let queue = wait_for("a reservation", Duration::from_secs(30), || {
        let q = api.get(&format!("/v1/workloads/{id}"), &alpha).body["queue"].clone();
        q["expected_start"].is_string().then_some(q)
    });
    let mut nodes: Vec<&str> =
        queue["planned_nodes"].as_array().expect("nodes").iter().filter_map(Value::as_str).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, NODES, "{queue}");
    let start =
        humantime::parse_rfc3339(queue["expected_start"].as_str().unwrap_or_default()).expect("RFC 3339");
    let in_s = start.duration_since(std::time::SystemTime::now()).map_or(0, |d| d.as_secs());
    assert!((7000..=7200).contains(&in_s), "expected when the 2 h limit ends, in {in_s} s: {queue}");
    assert!(
        queue["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("waiting for capacity; expected start 20")
                && t.contains("on valence-a001-n0")),
        "{queue}"
    );
    let out = cli(&server.base, &alpha, &["get", &id]);
    assert!(text(&out).contains("Expected:") && text(&out).contains("valence-a001-n02"), "{}", text(&out));
    let out = cli(&server.base, &alpha, &["explain", &id]);
    assert!(text(&out).contains("Expected:") && text(&out).contains("(in 1h"), "{}", text(&out));
    server.assert_clean_log();
}

/// A job past its time limit is stopped like a preempted one: SIGTERM, then SIGKILL once
/// its own grace has passed, and it ends as `timed-out`.
#[test]
fn a_time_limit_ends_a_job_with_its_grace() {
    let Some(db) = TestDb::new(Backend::Sqlite, "time_limit_grace") else { return };
    let Lab { server, api, admin, tokens, dir: _dir, _agents } = lab(&db, &["alpha"], 1);
    let alpha = tokens[0].clone();
    let mut job = sh("limited", "trap 'echo got TERM' TERM; while :; do sleep 0.1; done", Some("2s"));
    job["time_limit"] = "1s".into();
    let id = api.post("/v1/workloads", &alpha, &job).expect_status(201).str("id");
    wait_for("the job to run", Duration::from_secs(60), || (processes_of(&id) > 0).then_some(()));
    let w = wait_for("the time limit", Duration::from_secs(30), || {
        let w = api.get(&format!("/v1/workloads/{id}"), &alpha).body;
        (w["state"] == "timed-out").then_some(w)
    });
    let ended = Instant::now();
    assert!(w["reason"].as_str().is_some_and(|r| r.contains("timed-out")), "{w}");
    std::thread::sleep(Duration::from_millis(800));
    assert!(processes_of(&id) > 0, "it ignores SIGTERM, so it lives through its grace");
    wait_for("SIGKILL after the grace", Duration::from_secs(20), || (processes_of(&id) == 0).then_some(()));
    assert!(
        ended.elapsed() >= Duration::from_millis(1200),
        "killed before its grace ran out: {:?}",
        ended.elapsed()
    );
    let exited = wait_for("the exit to be logged", Duration::from_secs(20), || {
        let log = api.read_log(&admin);
        records(&log, "task-exited", &id).last().map(|r| (*r).clone())
    });
    assert_eq!(exited["body"]["signal"], 9, "{exited}");
    let out = api.get(&format!("/v1/workloads/{id}/logs?task=0"), &alpha);
    assert!(out.body["data"].as_str().unwrap_or_default().contains("got TERM"), "{}", out.body);
    server.assert_clean_log();
}

/// The quota routes answer bad input and the wrong role in the API's error shape.
#[test]
fn the_quota_api_refuses_what_is_wrong_with_the_field_named() {
    let Some(db) = TestDb::new(Backend::Sqlite, "quota_api") else { return };
    let Lab { server, api, admin, tokens, dir: _dir, _agents } = lab(&db, &["alpha"], 0);
    let alpha = tokens[0].clone();
    let (_, auditor) = api.issue_token(&admin, "auditor", None);
    let put = |token: &str, body: Value| api.send("PUT", "/v1/quotas", Some(token), Some(&body));
    let flavour = json!([{"name": "h100", "models": ["H100"]}]);
    for (body, field) in [
        (json!({"flavours": [{"name": "x", "models": ["H900"]}]}), "flavours[0].models"),
        (json!({"flavours": [{"name": "x", "sites": ["mars"]}]}), "flavours[0].sites"),
        (
            json!({"flavours": flavour, "tenants": {"alpha": {"flavours": {"h100": {"nominal": -1}}}}}),
            "tenants.alpha.flavours.h100.nominal",
        ),
        (json!({"flavours": flavour, "tenants": {"alpha": {"weight": 0}}}), "tenants.alpha.weight"),
        (
            json!({"flavours": flavour, "tenants": {"alpha": {"power_kw": {"mars": 10}}}}),
            "tenants.alpha.power_kw.mars",
        ),
        (json!({"fair_share": {"half_life": "soon", "history_weight": 0.5}}), "fair_share.half_life"),
    ] {
        let r = put(&admin, body);
        r.expect_error(422, "invalid-field");
        assert_eq!(r.body["field"], field, "{}", r.body);
    }
    put(&admin, json!({"flavours": flavour, "cohorts": {"a": {"parent": "b"}, "b": {"parent": "a"}}}))
        .expect_error(422, "invalid-field");
    put(&admin, json!({"tenants": {"alpha": {"nominal": 3}}})).expect_status(422);
    put(&alpha, json!({})).expect_error(403, "forbidden");
    api.get("/v1/quotas", &alpha).expect_error(403, "forbidden");
    api.get("/v1/quotas", &auditor).expect_status(200);
    api.get("/v1/quota", &admin).expect_error(422, "invalid-field");
    api.get("/v1/quota?tenant=nobody", &admin).expect_error(404, "not-found");
    assert!(api.read_log(&admin).iter().all(|r| r["event"] != "quotas-set"), "nothing wrong was logged");
    let ok = put(
        &admin,
        json!({"flavours": flavour, "tenants": {"alpha": {"flavours": {"h100": {"nominal": 16}}}}}),
    );
    ok.expect_status(200);
    assert_eq!(ok.body["tenants"][0]["flavours"][0]["nominal"], 16.0, "{}", ok.body);
    let mine = api.get("/v1/quota", &alpha);
    mine.expect_status(200);
    assert_eq!(mine.body["tenant"], "alpha");
    server.assert_clean_log();
}

/// An energy quota in kWh per month, live: a job commits its reserved power until its
/// time limit; one that would not fit waits with the energy quota named; a cancel gives
/// back what was not used, and a restart counts the same energy as before it.
#[test]
fn an_energy_quota_holds_work_that_would_not_fit_and_survives_a_restart() {
    for backend in Backend::ALL {
        run_on(backend, "energy_quota", energy_scenario);
    }
}

fn energy_scenario(db: &TestDb) {
    let dir = tempfile::tempdir().expect("tempdir");
    // No agents: placement alone makes work run, which is all energy accounting needs.
    let start = |dir: &Path| {
        let dir = dir.to_string_lossy().into_owned();
        Server::start(db, &["--pass-interval", "300ms", "--data-dir", &dir])
    };
    let mut server = start(dir.path());
    let admin = server.admin_token.clone().expect("admin token");
    let api = Api::new(&server.base);
    api.create_tenant(&admin, "alpha");
    let alpha = api.issue_token(&admin, "tenant", Some("alpha")).1;
    let quotas = |kwh: f64| json!({"tenants": {"alpha": {"energy_kwh": kwh}}});
    api.send("PUT", "/v1/quotas", Some(&admin), Some(&quotas(1000.0))).expect_status(200);
    let energy = |api: &Api| api.get("/v1/quota", &alpha).expect_status(200).body["energy"].clone();
    assert_eq!(energy(&api)["committed_kwh"], 0.0);
    let submit = |api: &Api, name: &str, limit: &str| {
        let mut job = sh(name, "sleep 1000", None);
        job["time_limit"] = limit.into();
        api.post("/v1/workloads", &alpha, &job).expect_status(201).str("id")
    };
    // 8 H100 for at most 2 h: the node's reserved power (8 × 0.7 kW and its base power,
    // about 10 kW) for 2 h.
    let first = submit(&api, "two-hours", "2h");
    let running =
        |api: &Api, id: &str| api.get(&format!("/v1/workloads/{id}"), &alpha).body["state"] == "running";
    wait_for("the first job to run", Duration::from_secs(30), || running(&api, &first).then_some(()));
    let e = energy(&api);
    let two_hours = e["committed_kwh"].as_f64().expect("kWh");
    assert!((12.0..=30.0).contains(&two_hours), "{e}");
    assert_eq!(e["limit_kwh"], 1000.0);
    assert!(e["period_start"].as_str().is_some_and(|s| s.contains("-01T00:00:00")), "{e}");
    // Room for one more such job, not for a 100-hour one.
    api.send("PUT", "/v1/quotas", Some(&admin), Some(&quotas(two_hours * 2.5))).expect_status(200);
    let long = submit(&api, "long", "100h");
    let q = wait_for("the energy quota to hold it", Duration::from_secs(30), || {
        let q = api.get(&format!("/v1/workloads/{long}"), &alpha).body["queue"].clone();
        q["quota"].as_str().is_some_and(|t| t.contains("energy quota")).then_some(q)
    });
    assert!(q["text"].as_str().is_some_and(|t| t.contains("energy quota")), "{q}");
    let second = submit(&api, "fits", "2h");
    wait_for("the second job to run", Duration::from_secs(30), || running(&api, &second).then_some(()));
    assert!(!running(&api, &long));
    let out = cli(&server.base, &alpha, &["quota"]);
    assert!(text(&out).contains("kWh committed this billing period"), "{}", text(&out));
    // A restart counts the same: the running jobs from their placement.
    let before = energy(&api)["committed_kwh"].as_f64().expect("kWh");
    server.kill();
    let server = start(dir.path());
    let api = Api::new(&server.base);
    let after = energy(&api)["committed_kwh"].as_f64().expect("kWh");
    assert!((after - before).abs() < 0.05, "before the restart {before} kWh, after {after} kWh");
    // Cancelling the first gives back what it had not used: almost all of its 2 h.
    api.post(&format!("/v1/workloads/{first}/cancel"), &alpha, &json!({})).expect_status(200);
    let left = wait_for("the refund", Duration::from_secs(30), || {
        let e = energy(&api)["committed_kwh"].as_f64()?;
        (e < before - two_hours * 0.9).then_some(e)
    });
    assert!(left >= two_hours * 0.99, "the second job's 2 h stay committed: {left}");
    server_harness::assert_digest_matches_replay(&api, db, &admin);
    server.assert_clean_log();
}
