//! The audit trail end to end, on the real server and the real binary: a scripted
//! scenario (health work placed, a tenant policy that evicts it, a fleet change that
//! evicts it again) is exported by an auditor and by the tenant, and `gigawatt audit
//! verify` accepts both offline; the same export edited is refused, naming the line; a
//! tenant's export holds nothing of other tenants; roles are enforced; and a record
//! edited in the database makes the server refuse to start.

mod server_harness;

use std::process::Command;

use serde_json::{Value, json};
use server_harness::{Api, Backend, Server, TestDb, run_on};

fn gigawatt(args: &[&str]) -> std::process::Output {
    Command::new(server_harness::gigawatt_bin())
        .args(args)
        .env_remove("GIGAWATT_SERVER")
        .env_remove("GIGAWATT_TOKEN")
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("gigawatt runs")
}

fn export(base: &str, token: &str, tenant: Option<&str>, out: &std::path::Path) {
    let mut args = vec!["audit", "export", "--server", base, "--token", token, "--out"];
    let out = out.to_string_lossy().to_string();
    args.push(&out);
    if let Some(t) = tenant {
        args.extend(["--tenant", t]);
    }
    let o = gigawatt(&args);
    assert!(o.status.success(), "export failed: {}", String::from_utf8_lossy(&o.stderr));
}

fn verify(file: &std::path::Path, vkey: &str) -> (bool, Value) {
    let o = gigawatt(&["audit", "verify", &file.to_string_lossy(), "--key", vkey, "--json"]);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    assert_eq!(
        o.status.success(),
        report["ok"] == true,
        "the exit status says what the report says: {report}"
    );
    (o.status.success(), report)
}

/// A record line's leaf, decoded.
fn leaf_of(line: &Value) -> Value {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line["leaf"].as_str().expect("a leaf"))
        .expect("base64");
    serde_json::from_slice(&bytes).expect("a leaf is JSON")
}

fn lines(file: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .expect("export read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn audit_trail(db: &TestDb) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let fleet_file = dir.path().join("two.toml");
    std::fs::write(&fleet_file, server_harness::two_sites(r#"["hds"]"#, r#"["hds"]"#)).expect("fleet file");
    let mut server = Server::start_with_fleet(db, &fleet_file, &[]);
    let api = Api::new(&server.base);
    let admin = server.admin_token.clone().expect("the first start prints the admin token");
    api.create_tenant(&admin, "clinic");
    api.create_tenant(&admin, "acme");
    let (_, clinic) = api.issue_token(&admin, "tenant", Some("clinic"));
    let (_, acme) = api.issue_token(&admin, "tenant", Some("acme"));
    let (_, auditor) = api.issue_token(&admin, "auditor", None);
    let (_, operator) = api.issue_token(&admin, "operator", None);
    let health = json!({"name": "scans", "data_class": "health", "resources": {"gpus": 4}});
    let scans = api.post("/v1/workloads", &clinic, &health).expect_status(201).str("id");
    api.post("/v1/workloads", &acme, &json!({"name": "web", "resources": {"gpus": 2}})).expect_status(201);
    // The clinic narrows its policy to lyon: its job leaves paris.
    let policy = json!({"sites": ["lyon"]});
    api.send("PUT", "/v1/tenants/clinic/policy", Some(&clinic), Some(&policy)).expect_status(200);
    api.send("PUT", "/v1/tenants/clinic/policy", Some(&clinic), Some(&json!({}))).expect_status(200);
    server.kill();
    // The fleet changes: lyon loses HDS; the health job goes back to paris.
    let changed = server_harness::two_sites(r#"["hds"]"#, "[]");
    std::fs::write(&fleet_file, changed).expect("fleet file");
    let mut server = Server::start_with_fleet(db, &fleet_file, &[]);
    let api = Api::new(&server.base);
    let w = api.get(&format!("/v1/workloads/{scans}"), &admin);
    assert_eq!(w.body["placement"][0]["site"], "paris", "{}", w.body);

    // The key is public.
    let key = api.send("GET", "/v1/audit/key", None, None);
    key.expect_status(200);
    let vkey = key.str("vkey");
    let o = gigawatt(&["audit", "key", "--server", &server.base, "--token", &auditor]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), vkey);

    // The auditor's full export verifies, placements of health data included.
    let full = dir.path().join("full.jsonl");
    export(&server.base, &auditor, None, &full);
    let (ok, report) = verify(&full, &vkey);
    assert!(ok, "{report}");
    assert!(report["placements_checked"].as_u64().unwrap_or(0) >= 3, "{report}");
    let evictions = lines(&full)
        .iter()
        .filter(|l| l["type"] == "record" && l["event"]["type"] == "workload-preempted")
        .count();
    assert!(evictions >= 2, "the policy change and the fleet change each evicted the health job");

    // The clinic's own export verifies and holds nothing of acme.
    let own = dir.path().join("clinic.jsonl");
    export(&server.base, &clinic, None, &own);
    let (ok, report) = verify(&own, &vkey);
    assert!(ok, "{report}");
    for l in lines(&own).iter().filter(|l| l["type"] == "record") {
        let leaf = leaf_of(l);
        assert!(
            leaf["tenant"] == "clinic" || leaf["event"]["type"] == "fleet-in-force",
            "a record that is not the clinic's: {leaf}"
        );
    }
    assert!(
        !std::fs::read_to_string(&own).expect("read").contains("acme"),
        "nothing of acme, not even its name"
    );

    // Roles: a tenant exports only its own; operators do not export.
    let o = gigawatt(&[
        "audit",
        "export",
        "--server",
        &server.base,
        "--token",
        &clinic,
        "--tenant",
        "acme",
        "--out",
        &dir.path().join("x.jsonl").to_string_lossy(),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no tenant `acme`"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    api.send("GET", "/v1/audit/export", Some(&operator), None).expect_status(403);
    api.send("GET", "/v1/audit/export?tenant=clinic", Some(&acme), None).expect_status(404);

    // The same export, edited: a placement moved to another node.
    let text = std::fs::read_to_string(&full).expect("read");
    let edited = text.replacen("paris01-n01", "lyon01-n01", 1);
    assert_ne!(edited, text);
    let bad = dir.path().join("edited.jsonl");
    std::fs::write(&bad, &edited).expect("write");
    let (ok, report) = verify(&bad, &vkey);
    assert!(!ok);
    let line = report["first_failure"]["line"].as_u64().expect("the failing line");
    let first_change =
        text.lines().zip(edited.lines()).position(|(a, b)| a != b).expect("a changed line") as u64 + 1;
    assert_eq!(line, first_change, "{report}");
    // A record removed.
    let removed: String =
        text.lines().enumerate().filter(|(i, _)| *i != 5).map(|(_, l)| format!("{l}\n")).collect();
    std::fs::write(&bad, removed).expect("write");
    assert!(!verify(&bad, &vkey).0);
    server.kill();

    // A record edited in the database (a placement moved, as the issue's probe did):
    // the server refuses to start, naming the checkpoint.
    tamper(
        &db.url,
        "UPDATE events SET body = replace(body, 'paris01-n01', 'lyon01-n01') WHERE kind = 'workload-placed'",
    );
    let mut child = Command::new(server_harness::gigawatt_bin())
        .args(["serve", "--fleet", &fleet_file.to_string_lossy(), "--db", &db.url, "--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("a status") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started on a tampered log");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success(), "a tampered log must not be served");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr read");
    assert!(err.contains("does not match the leaf hash written with it"), "{err}");
}

/// Runs one SQL statement on the test database, behind the server's back.
fn tamper(url: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        use sqlx::Connection;
        let changed = if url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(url).await.expect("the SQLite file opens");
            sqlx::query(sql).execute(&mut c).await.expect("the edit applies").rows_affected()
        } else {
            let mut c = sqlx::PgConnection::connect(url).await.expect("the database opens");
            sqlx::query(sql).execute(&mut c).await.expect("the edit applies").rows_affected()
        };
        assert!(changed > 0, "the edit changed a record");
    });
}

#[test]
fn the_audit_trail_verifies_offline_and_catches_edits_on_sqlite() {
    run_on(Backend::Sqlite, "audit_trail", audit_trail);
}

#[test]
fn the_audit_trail_verifies_offline_and_catches_edits_on_postgres() {
    run_on(Backend::Postgres, "audit_trail", audit_trail);
}
