//! Real agents: a `gigawatt serve` and several `gigawatt agent --simulate` processes on
//! loopback, running real commands. Checked through the API, the event log and the
//! machine's process table (`/proc`), which is the only witness that cannot lie about
//! two copies of a task running at once.

mod server_harness;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server_harness::{Api, Backend, Server, TestDb, gigawatt_bin, wait_for};

const NODES: [&str; 3] = ["valence-a001-n01", "valence-a001-n02", "valence-a001-n03"];

/// A `gigawatt agent` process, killed on drop.
struct Agent {
    child: Child,
    node: String,
}

impl Agent {
    fn start(base: &str, token: &str, node: &str, dir: &Path) -> Agent {
        Agent { child: server_harness::spawn_agent(base, token, node, dir), node: node.to_string() }
    }

    /// SIGKILL, as a machine dying would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A process of some task, from the process table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TaskProcess {
    pid: u32,
    rank: String,
    generation: String,
}

/// Every live (non-zombie) process whose environment says it belongs to `workload`.
fn processes_of(workload: &str) -> Vec<TaskProcess> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        if matches!(state, Some('Z' | 'X') | None) {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        let env: BTreeMap<String, String> = environ
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        if env.get("GIGAWATT_WORKLOAD_ID").map(String::as_str) == Some(workload) {
            out.push(TaskProcess {
                pid,
                rank: env.get("GIGAWATT_RANK").cloned().unwrap_or_default(),
                generation: env.get("GIGAWATT_GENERATION").cloned().unwrap_or_default(),
            });
        }
    }
    out
}

/// At most one copy of each rank in the process table: copies of one task are told
/// apart by generation, and a rank may have several processes (a shell and its child)
/// of the same generation.
#[track_caller]
fn assert_one_copy_per_rank(workload: &str) {
    let mut gens: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for p in processes_of(workload) {
        gens.entry(p.rank).or_default().insert(p.generation);
    }
    for (rank, g) in gens {
        assert!(g.len() <= 1, "{workload} rank {rank} runs as two copies at once: generations {g:?}");
    }
}

struct Cluster {
    server: Server,
    api: Api,
    admin: String,
    tenant: String,
    agents: Vec<Agent>,
    dir: tempfile::TempDir,
}

fn server_args(dir: &Path, listen: Option<&str>, lost_after: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "--require-agents",
        "--heartbeat-interval",
        "200ms",
        "--lost-after",
        lost_after,
        "--grace",
        "1s",
        "--data-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(dir.to_string_lossy().into_owned());
    if let Some(l) = listen {
        a.push("--listen".into());
        a.push(l.into());
    }
    a
}

fn cluster(db: &TestDb, agents: usize, listen: Option<&str>, lost_after: &str) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = server_args(dir.path(), listen, lost_after);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(db, &args);
    let admin = server.admin_token.clone().expect("admin token");
    let api = Api::new(&server.base);
    api.create_tenant(&admin, "acme");
    let (_, tenant) = api.issue_token(&admin, "tenant", Some("acme"));
    let agents: Vec<Agent> = NODES[..agents]
        .iter()
        .map(|n| Agent::start(&server.base, &api.issue_agent_token(&admin, n).1, n, dir.path()))
        .collect();
    wait_for("every agent to register and report", Duration::from_secs(60), || {
        let list = api.get("/v1/agents", &admin).body;
        let ready = list
            .as_array()?
            .iter()
            .filter(|a| a["state"] == "ready" && a["last_heartbeat_at"].is_string())
            .count();
        (ready == agents.len()).then_some(())
    });
    Cluster { server, api, admin, tenant, agents, dir }
}

impl Cluster {
    fn submit(&self, job: &Value) -> String {
        self.api.post("/v1/workloads", &self.tenant, job).expect_status(201).str("id")
    }

    fn get(&self, id: &str) -> Value {
        self.api.get(&format!("/v1/workloads/{id}"), &self.tenant).body
    }

    fn wait_state(&self, id: &str, state: &str) -> Value {
        wait_for(&format!("{id} to be {state}"), Duration::from_secs(60), || {
            let w = self.get(id);
            (w["state"] == state).then_some(w)
        })
    }

    /// Waits until every task of `id` reports a running process; returns the placement.
    fn wait_running(&self, id: &str) -> Vec<Value> {
        wait_for(&format!("{id}'s processes to run"), Duration::from_secs(60), || {
            let w = self.get(id);
            let p = w["placement"].as_array()?.clone();
            let all = !p.is_empty()
                && p.len() as u64 == w["tasks_total"].as_u64()?
                && p.iter().all(|t| t["process"] == "running");
            all.then_some(p)
        })
    }

    fn logs(&self, id: &str, task: u32) -> String {
        let r = self.api.get(&format!("/v1/workloads/{id}/logs?task={task}"), &self.tenant);
        r.expect_status(200);
        r.body["data"].as_str().unwrap_or_default().to_string()
    }

    fn log_kinds(&self) -> Vec<Value> {
        self.api.read_log(&self.admin)
    }
}

fn sh(name: &str, script: &str, gpus: u32, tasks: u32) -> Value {
    let mut j = json!({"name": name, "command": ["sh", "-c", script], "resources": {"gpus": gpus}});
    if tasks > 1 {
        j["gang"] = json!({"tasks": tasks, "topology": "any"});
    }
    j
}

#[test]
fn agents_run_real_commands() {
    let Some(db) = TestDb::new(Backend::Sqlite, "agents_run") else { return };
    let c = cluster(&db, 3, None, "1s");

    // Output, exit code 0, and the GPUs each process saw.
    let id = c.submit(&sh("env", "echo gpus=$CUDA_VISIBLE_DEVICES rank=$GIGAWATT_RANK; sleep 1", 2, 1));
    let w = c.wait_state(&id, "succeeded");
    assert_eq!(w["exit_code"], 0);
    let out = c.logs(&id, 0);
    assert!(out.starts_with("gpus=") && out.ends_with(" rank=0\n"), "{out:?}");
    let seen: Vec<&str> =
        out.trim_start_matches("gpus=").split(' ').next().unwrap_or("").split(',').collect();
    assert_eq!(seen.len(), 2, "two GPUs visible: {out:?}");
    assert!(w["energy_j"].as_f64().is_some_and(|e| e > 0.0), "a second on two GPUs used energy: {w}");

    // `gigawatt logs --follow` prints output as it comes and ends with the workload.
    let id = c.submit(&sh("follow", "for i in 1 2 3; do echo line $i; sleep 0.3; done", 1, 1));
    let follow = Command::new(gigawatt_bin())
        .args(["logs", &id, "--follow", "--server", &c.server.base, "--token", &c.tenant])
        .output()
        .expect("gigawatt logs runs");
    assert!(follow.status.success(), "{}", String::from_utf8_lossy(&follow.stderr));
    assert_eq!(String::from_utf8_lossy(&follow.stdout), "line 1\nline 2\nline 3\n");
    assert_eq!(c.get(&id)["state"], "succeeded");

    // A non-zero exit fails the workload with its code.
    let id = c.submit(&sh("fail", "echo oops >&2; exit 7", 1, 1));
    let w = c.wait_state(&id, "failed");
    assert_eq!(w["exit_code"], 7);
    let err = c.api.get(&format!("/v1/workloads/{id}/logs?stream=stderr"), &c.tenant);
    assert_eq!(err.body["data"], "oops\n");

    // A three-rank gang across the three nodes: each rank saw its own GPUs.
    let id = c.submit(&sh(
        "gang",
        "echo rank=$GIGAWATT_RANK/$GIGAWATT_WORLD_SIZE gpus=$CUDA_VISIBLE_DEVICES",
        8,
        3,
    ));
    c.wait_state(&id, "succeeded");
    for task in 0..3 {
        let out = c.logs(&id, task);
        assert_eq!(out, format!("rank={task}/3 gpus=0,1,2,3,4,5,6,7\n"), "rank {task}");
    }

    // A command that does not exist fails to start, and says so.
    let id = c.submit(&json!({"name": "nope", "command": ["/no/such/program"], "resources": {"gpus": 1}}));
    c.wait_state(&id, "failed");
    let explain = c.api.get(&format!("/v1/workloads/{id}/explain"), &c.tenant);
    assert!(explain.body.to_string().contains("could not start"), "{}", explain.body);

    // Cancel a process tree that ignores SIGTERM: gone after the grace period (1 s).
    let id = c.submit(&sh("stubborn", "trap '' TERM; sleep 1000 & sleep 1000", 1, 1));
    c.wait_running(&id);
    assert!(!processes_of(&id).is_empty(), "the tree runs");
    let cancelled = Instant::now();
    c.api.post(&format!("/v1/workloads/{id}/cancel"), &c.tenant, &json!({})).expect_status(200);
    wait_for("the stubborn tree to be killed", Duration::from_secs(10), || {
        processes_of(&id).is_empty().then_some(())
    });
    let took = cancelled.elapsed();
    assert!(took >= Duration::from_millis(900), "SIGKILL only after the grace period ({took:?})");
    assert_eq!(c.get(&id)["state"], "cancelled");
    c.server.assert_clean_log();
}

#[test]
fn a_killed_agent_gang_restarts_elsewhere_and_never_runs_twice() {
    let Some(db) = TestDb::new(Backend::Sqlite, "agents_failover") else { return };
    let mut c = cluster(&db, 3, None, "1s");
    // Two ranks of 8 GPUs: two of the three nodes.
    let id = c.submit(&sh("gang", "sleep 1000", 8, 2));
    let before = c.wait_running(&id);
    let victim = before[0]["node"].as_str().expect("node").to_string();
    let old_gen = before[0]["generation"].as_u64().expect("generation");
    let killed = Instant::now();
    c.agents.iter_mut().find(|a| a.node == victim).expect("the victim's agent").kill();
    let after = wait_for("the gang to run again elsewhere", Duration::from_secs(30), || {
        assert_one_copy_per_rank(&id);
        let w = c.get(&id);
        let p = w["placement"].as_array()?.clone();
        let moved = p.len() == 2
            && p.iter().all(|t| t["process"] == "running" && t["generation"].as_u64() > Some(old_gen));
        moved.then_some(p)
    });
    let reaction = killed.elapsed();
    assert!(after.iter().all(|t| t["node"] != victim.as_str()), "not on the dead node: {after:?}");
    // Keep watching a while: still one copy per rank, exactly two ranks alive.
    for _ in 0..20 {
        assert_one_copy_per_rank(&id);
        std::thread::sleep(Duration::from_millis(50));
    }
    let ranks: std::collections::BTreeSet<String> = processes_of(&id).into_iter().map(|p| p.rank).collect();
    assert_eq!(ranks.len(), 2, "both ranks run");
    let log = c.log_kinds();
    let kinds: Vec<&str> = log.iter().filter_map(|r| r["event"].as_str()).collect();
    assert!(kinds.contains(&"node-lost") && kinds.contains(&"workload-preempted"), "{kinds:?}");
    eprintln!("reaction time from SIGKILL to the gang running elsewhere: {reaction:?}");
    c.server.assert_clean_log();
}

#[test]
fn control_plane_restart_adopts_running_work() {
    let Some(db) = TestDb::new(Backend::Sqlite, "agents_restart") else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let listen = format!("127.0.0.1:{port}");
    let mut c = cluster(&db, 3, Some(&listen), "6s");
    let single = c.submit(&sh("single", "sleep 1000", 1, 1));
    let gang = c.submit(&sh("gang", "sleep 1000", 8, 2));
    c.wait_running(&single);
    c.wait_running(&gang);
    let pids = |id: &str| -> Vec<u32> {
        let mut p: Vec<u32> = processes_of(id).into_iter().map(|p| p.pid).collect();
        p.sort_unstable();
        p
    };
    let (single_pids, gang_pids) = (pids(&single), pids(&gang));
    let seq_before = c.log_kinds().len();

    c.server.kill();
    let args = server_args(c.dir.path(), Some(&listen), "6s");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.server = Server::start(&db, &args);
    // Several heartbeats after the restart.
    std::thread::sleep(Duration::from_secs(2));
    wait_for("the agents to report to the new control plane", Duration::from_secs(20), || {
        let list = c.api.get("/v1/agents", &c.admin).body;
        let fresh = list
            .as_array()?
            .iter()
            .filter(|a| a["state"] == "ready" && a["last_heartbeat_at"].is_string())
            .count();
        (fresh == 3).then_some(())
    });
    assert_eq!(pids(&single), single_pids, "the single task's processes were not restarted");
    assert_eq!(pids(&gang), gang_pids, "the gang's processes were not restarted");
    for id in [&single, &gang] {
        assert_eq!(c.get(id)["state"], "running");
    }
    let log = c.log_kinds();
    let new: Vec<&str> = log[seq_before..].iter().filter_map(|r| r["event"].as_str()).collect();
    assert!(
        !new.iter()
            .any(|k| matches!(*k, "task-started" | "node-lost" | "workload-preempted" | "workload-placed")),
        "nothing was started, lost or moved: {new:?}"
    );
    c.server.assert_clean_log();
}

#[test]
fn an_agent_refused_at_registration_says_why() {
    let Some(db) = TestDb::new(Backend::Sqlite, "agents_refused") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&db, &["--require-agents"]);
    let admin = server.admin_token.clone().expect("admin token");
    let api = Api::new(&server.base);
    let (_, agent) = api.issue_agent_token(&admin, NODES[0]);
    let run = |token: &str, node: &str| {
        let out = Command::new(gigawatt_bin())
            .args(["agent", "--server", &server.base, "--node", node, "--simulate", "8xH100"])
            .arg("--data-dir")
            .arg(dir.path())
            .env("GIGAWATT_TOKEN", token)
            .output()
            .expect("gigawatt agent runs");
        assert!(!out.status.success(), "the agent must stop");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&agent, "no-such-node");
    assert!(err.contains("403") && err.contains(&format!("node {}'s", NODES[0])), "{err}");
    // No credential at all: the agent says how to get one.
    let out = Command::new(gigawatt_bin())
        .args(["agent", "--server", &server.base, "--node", NODES[0], "--simulate", "8xH100"])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("GIGAWATT_TOKEN")
        .output()
        .expect("gigawatt agent runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("gigawatt node enroll"), "{err}");
    let err = run("gw_not_a_token", NODES[0]);
    assert!(err.contains("unknown or revoked token"), "{err}");
    let out = Command::new(gigawatt_bin())
        .args(["agent", "--server", &server.base, "--node", NODES[0], "--simulate", "8xQ9000"])
        .env("GIGAWATT_TOKEN", &agent)
        .output()
        .expect("gigawatt agent runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("H100"), "lists the known models");
}

#[test]
fn an_agent_enrols_once_with_a_join_token_and_keeps_its_credential() {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(db) = TestDb::new(Backend::Sqlite, "agents_enrol") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&db, &["--require-agents", "--heartbeat-interval", "200ms"]);
    let admin = server.admin_token.clone().expect("admin token");
    let api = Api::new(&server.base);
    // The operator's side: `gigawatt node enroll NODE` prints a one-time join token.
    let out = Command::new(gigawatt_bin())
        .args(["node", "enroll", NODES[0], "--ttl", "10m", "-o", "json", "--server", &server.base])
        .env("GIGAWATT_TOKEN", &admin)
        .output()
        .expect("gigawatt node enroll runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let join: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(join["node"], NODES[0]);
    let join = join["token"].as_str().expect("token").to_string();
    let agent_dir = dir.path().join("node-0");
    let start = |join: Option<&str>| {
        let mut cmd = Command::new(gigawatt_bin());
        cmd.args(["agent", "--server", &server.base, "--node", NODES[0], "--simulate", "8xH100"])
            .arg("--data-dir")
            .arg(&agent_dir)
            .env_remove("GIGAWATT_TOKEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        match join {
            Some(j) => cmd.env("GIGAWATT_JOIN_TOKEN", j),
            None => cmd.env_remove("GIGAWATT_JOIN_TOKEN"),
        };
        Agent { child: cmd.spawn().expect("gigawatt agent starts"), node: NODES[0].to_string() }
    };
    let generation = |api: &Api| -> Option<u64> {
        let agents = api.get("/v1/agents", &admin);
        agents.body.as_array()?.iter().find(|a| a["node"] == NODES[0] && a["state"] == "ready")?["generation"]
            .as_u64()
    };
    // The agent's side: the join token is exchanged at the first start, and the node's
    // credential kept, readable by its owner only.
    let mut first = start(Some(&join));
    let g1 = wait_for("the enrolled agent to register", Duration::from_secs(20), || generation(&api));
    let cred = agent_dir.join("credential");
    let mode = std::fs::metadata(&cred).expect("the credential file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    first.kill();
    // The join token is spent; the restarted agent needs only its credential file.
    api.post("/v1/agent/enroll", &join, &json!({"node": NODES[0]})).expect_error(401, "unauthorized");
    let _second = start(None);
    wait_for("the agent to register again from its credential file", Duration::from_secs(20), || {
        generation(&api).filter(|g| *g > g1)
    });
    let tokens = api.get("/v1/tokens", &admin);
    let of_node: Vec<&Value> =
        tokens.body.as_array().expect("tokens").iter().filter(|t| t["node"] == NODES[0]).collect();
    assert_eq!(of_node.len(), 2, "a join token and a credential: {of_node:?}");
    assert!(of_node.iter().any(|t| t["join_expires_at"].is_string() && t["revoked"] == true), "{of_node:?}");
    assert!(of_node.iter().any(|t| t["role"] == "agent" && t["revoked"] == false), "{of_node:?}");
}
