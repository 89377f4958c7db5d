//! HTTPS with the operator's certificates, through the real TLS path: a CA and a server
//! certificate made here with rcgen; `gigawatt serve --tls-cert --tls-key`; the CLI and a
//! node agent that verify the server against the CA file (`--ca-file`), and refuse it
//! without; and the warning a server gives when it would serve plain HTTP beyond loopback.

mod server_harness;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use server_harness::{Backend, Server, TestDb, gigawatt_bin, wait_for};

/// Writes `ca.pem`, `server.pem` and `server.key` (for `localhost` and 127.0.0.1) to `dir`.
fn certificates(dir: &std::path::Path) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "gigawatt test CA");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params");
    let key = rcgen::KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server certificate");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("ca.pem");
    std::fs::write(dir.join("server.pem"), cert.pem()).expect("server.pem");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("server.key");
}

fn cli(args: &[&str], token: &str) -> std::process::Output {
    Command::new(gigawatt_bin())
        .args(args)
        .env("GIGAWATT_TOKEN", token)
        .env_remove("GIGAWATT_CA")
        .env_remove("GIGAWATT_SERVER")
        .output()
        .expect("gigawatt runs")
}

#[test]
fn the_api_serves_https_and_clients_verify_it_against_the_ca() {
    let Some(db) = TestDb::new(Backend::Sqlite, "tls") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    certificates(dir.path());
    let path = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let (cert, key, ca) = (path("server.pem"), path("server.key"), path("ca.pem"));
    let server = Server::start(&db, &["--require-agents", "--tls-cert", &cert, "--tls-key", &key]);
    assert!(server.base.starts_with("https://127.0.0.1:"), "{}", server.base);
    let admin = server.admin_token.clone().expect("admin token");

    // The CLI verifies the server against the CA.
    let out = cli(&["nodes", "-o", "json", "--server", &server.base, "--ca-file", &ca], &admin);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Without the CA, the certificate is not trusted, and no token is sent.
    let out = cli(&["nodes", "--server", &server.base], &admin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.to_lowercase().contains("certificate"), "{err}");
    // Plain HTTP to the HTTPS port gets no answer.
    let plain = server.base.replacen("https://", "http://", 1);
    let r = server_harness::client(Duration::from_secs(5)).get(format!("{plain}/healthz")).send();
    assert!(r.is_err() || !r.is_ok_and(|r| r.status().is_success()), "plain HTTP was served");

    // A node agent enrols and registers over HTTPS, trusting the CA.
    let pem = std::fs::read(&ca).expect("ca.pem");
    let https = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client");
    let node = "valence-a001-n01";
    let join: Value = https
        .post(format!("{}/v1/nodes/{node}/enroll", server.base))
        .bearer_auth(&admin)
        .json(&json!({}))
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("a join token");
    let mut agent = Command::new(gigawatt_bin())
        .args(["agent", "--server", &server.base, "--node", node, "--simulate", "8xH100", "--ca-file", &ca])
        .arg("--data-dir")
        .arg(dir.path().join("agent"))
        .env("GIGAWATT_JOIN_TOKEN", join["token"].as_str().expect("token"))
        .env_remove("GIGAWATT_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gigawatt agent starts");
    wait_for("the agent to register over HTTPS", Duration::from_secs(20), || {
        let agents: Value =
            https.get(format!("{}/v1/agents", server.base)).bearer_auth(&admin).send().ok()?.json().ok()?;
        agents.as_array()?.iter().any(|a| a["node"] == node && a["state"] == "ready").then_some(())
    });
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn bad_certificates_are_refused_and_plain_http_beyond_loopback_is_warned_about() {
    let Some(db) = TestDb::new(Backend::Sqlite, "tls_bad") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    certificates(dir.path());
    let path = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    // A key that is not the certificate's, and a file that holds no certificate.
    let other = tempfile::tempdir().expect("tempdir");
    certificates(other.path());
    let other_key = other.path().join("server.key").to_string_lossy().into_owned();
    for (cert, key, says) in [
        (path("server.pem"), other_key, "do not go together"),
        (path("server.key"), path("server.key"), "--tls-cert"),
    ] {
        let out = Command::new(gigawatt_bin())
            .args([
                "serve",
                "--db",
                &db.url,
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
            ])
            .output()
            .expect("gigawatt serve runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{err}");
    }
    let server = Server::start(&db, &["--listen", "0.0.0.0:0"]);
    assert!(server.stderr_text().contains("serving plain HTTP"), "{}", server.stderr_text());
}
