//! The client verbs (`submit`, `ls`, `get`, `cancel`, `explain`, `nodes`, `sites`, `top`)
//! against the real `gigawatt serve` on `fleets/france.toml`, driven as a user drives
//! them: through `$GIGAWATT_SERVER`/`$GIGAWATT_TOKEN`, flags, or the config file.
//!
//! Each test that needs a server starts its own (SQLite in a temporary directory,
//! listening on a port the kernel picks) and kills it on drop. Every CLI run gets an
//! empty `$HOME` and no `GIGAWATT_*` variables unless the test sets them, so a
//! developer's own config file cannot change the outcome.

#[allow(dead_code)]
mod common;

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Out, repo, write};
use serde_json::{Value, json};

const EXAMPLES: [&str; 4] = ["training-gang", "inference-service", "health-data", "shared-gpu"];
/// Sites of fleets/france.toml holding the HDS certification (and in the EU).
const HDS_SITES: [&str; 3] = ["valence", "paris-nord", "paris-sud"];

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// A running `gigawatt serve`, killed on drop.
struct Server {
    child: Child,
    url: String,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts a server on a new SQLite log and waits for its admin token.
    fn start() -> Server {
        let dir = tempdir();
        let db = format!("sqlite://{}", dir.path().join("g.db").display());
        let bin = assert_cmd::cargo::cargo_bin("gigawatt");
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--durability", "normal", "--db", &db, "--fleet"])
            .arg(repo().join("fleets/france.toml"))
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gigawatt serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel::<String>();
        // Keeps draining stderr for the server's whole life so that it never blocks.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut server = Server { child, url: String::new(), admin: String::new(), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while server.admin.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("gigawatt serve printed no admin token within 60 s; it said:\n{}", seen.join("\n"))
            });
            if let Some(rest) = line.split_once("control plane on ").map(|(_, r)| r) {
                server.url = rest.trim().to_string();
            }
            if let Some(token) = line.strip_prefix("admin token: ") {
                server.admin = token.trim().to_string();
            }
            seen.push(line);
        }
        assert!(server.url.starts_with("http://127.0.0.1:"), "no listen address in:\n{}", seen.join("\n"));
        server
    }

    fn http(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder().no_proxy().build().expect("an HTTP client")
    }

    /// Creates a tenant and returns a tenant token for it.
    fn tenant(&self, id: &str) -> String {
        let c = self.http();
        let r = c
            .post(format!("{}/v1/tenants", self.url))
            .bearer_auth(&self.admin)
            .json(&json!({ "id": id, "name": id.to_uppercase() }))
            .send()
            .expect("POST /v1/tenants");
        assert!(r.status().is_success(), "creating tenant {id}: {}", r.text().unwrap_or_default());
        self.token("tenant", Some(id))
    }

    /// Issues a token with `role`.
    fn token(&self, role: &str, tenant: Option<&str>) -> String {
        let r = self
            .http()
            .post(format!("{}/v1/tokens", self.url))
            .bearer_auth(&self.admin)
            .json(&json!({ "name": format!("test {role}"), "role": role, "tenant": tenant }))
            .send()
            .expect("POST /v1/tokens");
        assert!(r.status().is_success(), "creating a {role} token: {}", r.status());
        let v: Value = r.json().expect("a token as JSON");
        v["token"].as_str().expect("`token` in the answer").to_string()
    }

    /// Runs the CLI as `token` against this server (through the environment).
    fn cli(&self, token: &str, args: &[&str]) -> Out {
        cli(&[("GIGAWATT_SERVER", &self.url), ("GIGAWATT_TOKEN", token)], args)
    }
}

/// Runs `gigawatt ARGS` with exactly `env` for gigawatt's own settings: an empty `$HOME`,
/// no `$XDG_CONFIG_HOME` unless given, no proxies.
fn cli(env: &[(&str, &str)], args: &[&str]) -> Out {
    let home = tempdir();
    cli_home(home.path(), env, args)
}

fn cli_home(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Out {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("gigawatt"));
    cmd.args(args).current_dir(repo()).env("RUST_BACKTRACE", "0").env("HOME", home).stdin(Stdio::null());
    for v in ["GIGAWATT_SERVER", "GIGAWATT_TOKEN", "XDG_CONFIG_HOME"] {
        cmd.env_remove(v);
    }
    for v in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().expect("gigawatt runs");
    Out {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        cmdline: format!("{env:?} gigawatt {}", args.join(" ")),
    }
}

fn example(name: &str) -> String {
    let p: PathBuf = repo().join("examples/jobs").join(format!("{name}.toml"));
    assert!(p.exists(), "example {} is missing", p.display());
    p.display().to_string()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("`{key}` is not a string in {v}"))
}

/// A free loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local address").port()
}

#[test]
fn a_tenant_submits_the_examples_lists_gets_explains_and_cancels() {
    let server = Server::start();
    let acme = server.tenant("acme");

    // Every example is accepted and live, with the JSON contract scripts rely on.
    let mut ids = Vec::new();
    for name in EXAMPLES {
        let out = server.cli(&acme, &["submit", &example(name), "-o", "json"]);
        out.ok();
        let w = out.json();
        let (id, state) = (str_of(&w, "id"), str_of(&w, "state"));
        assert!(id.starts_with("w-"), "{name}: id {id}");
        assert!(state == "pending" || state == "running", "{name} is {state}: {}", w["reason"]);
        assert_eq!(w["tenant"], "acme");
        if name == "health-data" {
            for p in w["placement"].as_array().expect("placement list") {
                assert!(HDS_SITES.contains(&str_of(p, "site")), "health data placed on {p}");
            }
        }
        ids.push(id.to_string());
    }

    // `ls -o json` is one array of the same objects; the default shows live work only.
    let out = server.cli(&acme, &["ls", "-o", "json"]);
    out.ok();
    let listed: Vec<String> =
        out.json().as_array().expect("an array").iter().map(|w| str_of(w, "id").into()).collect();
    assert_eq!(listed, ids, "ls lists the live workloads, oldest first");

    // Pages are followed to the end and joined.
    let out = server.cli(&acme, &["ls", "-o", "json", "--page-size", "1"]);
    out.ok();
    assert_eq!(out.json().as_array().map(Vec::len), Some(ids.len()), "pages of 1 joined");
    let out = server.cli(&acme, &["ls", "-o", "json", "--page-size", "1", "--limit", "3"]);
    assert_eq!(out.ok().json().as_array().map(Vec::len), Some(3), "--limit caps the list");
    let out = server.cli(&acme, &["ls", "-o", "json", "--kind", "inference"]);
    assert_eq!(out.ok().json().as_array().map(Vec::len), Some(1), "one inference service");

    // The table has the documented columns and a row per workload.
    let out = server.cli(&acme, &["ls"]);
    out.ok().stdout_has(&["ID", "NAME", "TENANT", "KIND", "STATE", "TASKS", "GPUS", "AGE", "REASON"]);
    out.stdout_has(&["llama-8b-pretrain", "chat-70b", "radiology-finetune", "nightly-eval", "4/4", "0.25"]);

    // `get -o json` has the same shape as `submit`'s answer.
    let gang = &ids[0];
    let out = server.cli(&acme, &["get", gang, "-o", "json"]);
    let w = out.ok().json();
    assert_eq!(str_of(&w, "id"), gang);
    assert_eq!(w["spec"]["gang"]["tasks"], 4);
    let out = server.cli(&acme, &["get", gang]);
    out.ok().stdout_has(&["ID:", gang, "State:", "gang of 4 tasks", "torchrun", "Time limit:  2d"]);

    // `explain` says where it stands and its history, in words and in JSON.
    let out = server.cli(&acme, &["explain", gang]);
    out.ok().stdout_has(&[gang, "History", "submitted"]);
    let e = server.cli(&acme, &["explain", gang, "-o", "json"]).ok().json();
    assert!(e["history"].as_array().is_some_and(|h| !h.is_empty()), "history in {e}");

    // Cancel: exit 0, the new state printed, then shown by get; ended work leaves `ls`.
    let out = server.cli(&acme, &["cancel", gang]);
    out.ok().stdout_has(&[gang, "cancelled"]);
    let w = server.cli(&acme, &["get", gang, "-o", "json"]).ok().json();
    assert_eq!(w["state"], "cancelled");
    let live = server.cli(&acme, &["ls", "-o", "json"]).ok().json();
    assert!(live.as_array().is_some_and(|a| a.iter().all(|w| w["id"] != gang.as_str())), "{live}");
    let all = server.cli(&acme, &["ls", "-A", "-o", "json"]).ok().json();
    assert_eq!(all.as_array().map(Vec::len), Some(ids.len()), "-A includes ended work");
    let only = server.cli(&acme, &["ls", "--state", "cancelled", "-o", "json"]).ok().json();
    assert_eq!(only.as_array().map(Vec::len), Some(1));

    // Cancelling twice is a conflict, said as one line.
    server.cli(&acme, &["cancel", gang]).fails().stderr_has(&["already ended"]);
    // A bad filter is the API's error with its field.
    server
        .cli(&acme, &["ls", "--state", "sleeping"])
        .fails()
        .stderr_has(&["`sleeping` is not a state", "(field: state)"]);

    // The same idempotency key twice gives the same workload, and says so.
    let args = ["submit", "--idempotency-key", "nightly-2026-11-25", "-o", "json"];
    let first = server.cli(&acme, &[&args[..], &[&example("shared-gpu")]].concat());
    let again = server.cli(&acme, &[&args[..], &[&example("shared-gpu")]].concat());
    assert_eq!(first.ok().json()["id"], again.ok().json()["id"]);
    again.stderr_has(&["already used"]);
    // The same key with another request is refused, naming the header (Stripe's rule).
    let other = server.cli(&acme, &[&args[..], &[&example("health-data")]].concat());
    other.fails().stderr_has(&["nightly-2026-11-25", "with a different request", "header:Idempotency-Key"]);
    // Without a key, each invocation is a new submission.
    let a = server.cli(&acme, &["submit", &example("shared-gpu"), "-o", "json"]).ok().json();
    let b = server.cli(&acme, &["submit", &example("shared-gpu"), "-o", "json"]).ok().json();
    assert_ne!(a["id"], b["id"]);

    // A job the fleet can never run is accepted then rejected: exit 1 for scripts, the
    // workload still printed so that its id is known.
    let dir = tempdir();
    let never = write(dir.path(), "never.toml", "name = \"never\"\n\n[resources]\ngpu_models = [\"Z9\"]\n");
    let out = server.cli(&acme, &["submit", &never.display().to_string(), "-o", "json"]);
    out.no_panic();
    assert_eq!(out.code, Some(1), "a rejected job fails\n{out:?}");
    assert_eq!(out.json()["state"], "rejected");
    out.stderr_has(&["was rejected", "unknown GPU model `Z9`"]);

    // The human form of submit names the workload.
    server.cli(&acme, &["submit", &example("health-data")]).ok().stdout_has(&[
        "w-",
        "submitted",
        "radiology-finetune",
    ]);
}

#[test]
fn operators_see_the_fleet_and_tenants_only_their_own_work() {
    let server = Server::start();
    let acme = server.tenant("acme");
    let _beta = server.tenant("beta");
    let admin = server.admin.clone();
    let operator = server.token("operator", None);

    // An admin must say the tenant; --tenant does it.
    server
        .cli(&admin, &["submit", &example("shared-gpu")])
        .fails()
        .stderr_has(&["--tenant", "(field: tenant)"]);
    let w =
        server.cli(&admin, &["submit", &example("shared-gpu"), "--tenant", "beta", "-o", "json"]).ok().json();
    assert_eq!(w["tenant"], "beta");
    let beta_id = str_of(&w, "id").to_string();

    // Another tenant's workload does not exist for acme.
    server.cli(&acme, &["get", &beta_id]).fails().stderr_has(&["no workload"]);
    server.cli(&acme, &["cancel", &beta_id]).fails().stderr_has(&["no workload"]);
    assert_eq!(server.cli(&acme, &["ls", "-A", "-o", "json"]).ok().json(), json!([]));
    // A tenant may not submit for another.
    server
        .cli(&acme, &["submit", &example("shared-gpu"), "--tenant", "beta"])
        .fails()
        .stderr_has(&["(field: tenant)"]);
    // The operator sees every tenant's work.
    let all = server.cli(&operator, &["ls", "-o", "json"]).ok().json();
    assert_eq!(all.as_array().map(Vec::len), Some(1));

    // Sites: every site, with certifications.
    let sites = server.cli(&operator, &["sites", "-o", "json"]).ok().json();
    let ids: BTreeSet<&str> = sites.as_array().expect("an array").iter().map(|s| str_of(s, "id")).collect();
    assert_eq!(ids, BTreeSet::from(["valence", "paris-nord", "paris-sud", "ashburn", "inzai"]));
    server.cli(&acme, &["sites"]).ok().stdout_has(&[
        "ID",
        "LAW",
        "CERTIFICATIONS",
        "valence",
        "hds",
        "BUDGET",
    ]);

    // Nodes: filters, limits, and the table; tenants may not see them.
    let nodes =
        server.cli(&operator, &["nodes", "--site", "paris-sud", "--limit", "10", "-o", "json"]).ok().json();
    let nodes = nodes.as_array().expect("an array");
    assert_eq!(nodes.len(), 10);
    assert!(nodes.iter().all(|n| n["site"] == "paris-sud"), "{nodes:?}");
    let rack = str_of(&nodes[0], "rack").to_string();
    let in_rack = server.cli(&operator, &["nodes", "--rack", &rack, "-o", "json"]).ok().json();
    assert_eq!(in_rack.as_array().map(Vec::len), Some(4), "4 servers per paris-sud rack");
    server.cli(&operator, &["nodes", "--rack", &rack]).ok().stdout_has(&["NAME", "GPU FREE", &rack, "up"]);
    server.cli(&acme, &["nodes"]).fails().stderr_has(&["this one is tenant"]);

    // top --once: one frame, no screen clearing; the JSON form has the sites.
    let out = server.cli(&operator, &["top", "--once"]);
    out.ok().stdout_has(&["valence", "inzai", "TOTAL", "POWER / BUDGET", "1 running"]);
    assert!(!out.stdout.contains('\x1b'), "--once does not clear the screen");
    let frame = server.cli(&admin, &["top", "--once", "-o", "json"]).ok().json();
    assert_eq!(frame["sites"].as_array().map(Vec::len), Some(5));
    assert_eq!(
        frame["workloads"]["running"].as_u64().unwrap_or(0)
            + frame["workloads"]["pending"].as_u64().unwrap_or(0),
        1
    );
    server.cli(&admin, &["top", "--once", "--interval", "soon"]).fails().stderr_has(&["--interval"]);
}

#[test]
fn settings_come_from_flags_then_environment_then_the_config_file() {
    let server = Server::start();
    let acme = server.tenant("acme");
    let home = tempdir();
    let config_dir = home.path().join(".config/gigawatt");
    std::fs::create_dir_all(&config_dir).expect("config directory");

    // The config file alone is enough.
    write(&config_dir, "config.toml", &format!("server = \"{}\"\ntoken = \"{acme}\"\n", server.url));
    cli_home(home.path(), &[], &["ls", "-o", "json"]).ok();
    // The environment beats the file: a bad token there is used, and refused.
    cli_home(home.path(), &[("GIGAWATT_TOKEN", "gw_wrong")], &["ls"])
        .fails()
        .stderr_has(&["unknown or revoked token"]);
    // A flag beats the environment.
    cli_home(home.path(), &[("GIGAWATT_TOKEN", "gw_wrong")], &["ls", "--token", &acme]).ok();
    let port = closed_port();
    let dead = format!("http://127.0.0.1:{port}");
    cli_home(home.path(), &[("GIGAWATT_SERVER", &dead)], &["ls", "--server", &server.url]).ok();
    cli_home(home.path(), &[("GIGAWATT_SERVER", &dead)], &["ls"])
        .fails()
        .stderr_has(&[&dead, "GIGAWATT_SERVER"]);

    // $XDG_CONFIG_HOME, when set, is where the file is looked for instead.
    let xdg = tempdir();
    let xdg_dir = xdg.path().join("gigawatt");
    std::fs::create_dir_all(&xdg_dir).expect("xdg directory");
    write(&xdg_dir, "config.toml", &format!("server = \"{}\"\ntoken = \"{}\"\n", server.url, server.admin));
    let xdg_path = xdg.path().display().to_string();
    let frame =
        cli_home(home.path(), &[("XDG_CONFIG_HOME", &xdg_path)], &["nodes", "--limit", "1", "-o", "json"]);
    assert_eq!(frame.ok().json().as_array().map(Vec::len), Some(1), "the admin token from $XDG_CONFIG_HOME");

    // A mistake in the file is named with its line.
    write(&config_dir, "config.toml", &format!("server = \"{}\"\ntokne = \"{acme}\"\n", server.url));
    cli_home(home.path(), &[], &["ls"]).fails().stderr_has(&["config.toml", "line 2", "tokne"]);
}

#[test]
fn mistakes_end_in_one_clear_error_without_a_server() {
    let dir = tempdir();
    let port = closed_port();
    let dead = format!("http://127.0.0.1:{port}");

    // No token anywhere: the three ways to give one.
    cli(&[("GIGAWATT_SERVER", &dead)], &["ls"]).fails().stderr_has(&[
        "no API token",
        "--token",
        "GIGAWATT_TOKEN",
        "config.toml",
    ]);
    // Nothing listening: which URL, and how to change it.
    cli(&[("GIGAWATT_SERVER", &dead), ("GIGAWATT_TOKEN", "gw_x")], &["get", "w-1"]).fails().stderr_has(&[
        "cannot reach",
        &dead,
        "--server",
        "GIGAWATT_SERVER",
    ]);
    cli(&[("GIGAWATT_TOKEN", "gw_x")], &["ls", "--server", "127.0.0.1:7070"])
        .fails()
        .stderr_has(&["http://"]);

    // A bad job file is refused before anything is sent, with its line.
    let bad = write(dir.path(), "bad.toml", "name = \"x\"\ngpus = 3\n");
    let bad = bad.display().to_string();
    cli(&[("GIGAWATT_SERVER", &dead), ("GIGAWATT_TOKEN", "gw_x")], &["submit", &bad])
        .fails()
        .stderr_has(&[&format!("{bad}:2:1"), "unknown field `gpus`"]);
    let share = write(dir.path(), "share.toml", "name = \"x\"\n\n[resources]\ngpus = 2\ngpu_milli = 500\n");
    cli(&[("GIGAWATT_SERVER", &dead), ("GIGAWATT_TOKEN", "gw_x")], &["submit", &share.display().to_string()])
        .fails()
        .stderr_has(&["(field: resources.gpu_milli)", "gpus = 1"]);
    cli(&[], &["submit", "/nonexistent/job.toml"]).fails().stderr_has(&["/nonexistent/job.toml"]);

    // --dry-run checks every example offline and prints the request body.
    for name in EXAMPLES {
        let body = cli(&[], &["submit", "--dry-run", &example(name), "--tenant", "acme"]).ok().json();
        assert_eq!(body["tenant"], "acme", "{name}");
        assert!(body["name"].is_string(), "{name}");
    }
}

#[test]
fn an_admin_creates_tenants_and_tokens_from_the_cli() {
    let server = Server::start();
    let admin = server.admin.clone();
    server
        .cli(&admin, &["tenant", "create", "clinic", "--name", "Clinique"])
        .ok()
        .stdout_has(&["tenant clinic created"]);
    server.cli(&admin, &["tenant", "create", "clinic"]).fails().stderr_has(&["exists"]);
    let listed = server.cli(&admin, &["tenant", "ls", "-o", "json"]).ok().json();
    assert_eq!(listed[0]["id"], "clinic");

    let made = server
        .cli(
            &admin,
            &["token", "create", "--role", "tenant", "--tenant", "clinic", "--name", "ci", "-o", "json"],
        )
        .ok()
        .json();
    let secret = str_of(&made, "token").to_string();
    let token_id = str_of(&made, "id").to_string();
    assert!(secret.starts_with("gw_") && secret.len() >= 46, "{secret}");
    // The new token works, for its own tenant, without --tenant.
    let w = server.cli(&secret, &["submit", &example("shared-gpu"), "-o", "json"]).ok().json();
    assert_eq!(w["tenant"], "clinic");
    // Listing never shows secrets; a tenant may not list tokens or create tenants.
    let tokens = server.cli(&admin, &["token", "ls"]);
    assert!(!tokens.ok().stdout.contains(&secret));
    tokens.stdout_has(&[&token_id, "clinic"]);
    server.cli(&secret, &["token", "ls"]).fails().stderr_has(&["admin or auditor"]);
    server.cli(&secret, &["tenant", "create", "other"]).fails().stderr_has(&["admin"]);
    server
        .cli(&admin, &["token", "create", "--role", "wizard", "--name", "x"])
        .fails()
        .stderr_has(&["--role"]);
    // Revoked: it stops working at once.
    server.cli(&admin, &["token", "revoke", &token_id]).ok().stdout_has(&["revoked"]);
    server.cli(&secret, &["ls"]).fails().stderr_has(&["unknown or revoked token"]);
}
