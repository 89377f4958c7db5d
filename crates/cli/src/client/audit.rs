//! `gigawatt audit`: the signed, tamper-evident log for auditors (see `docs/audit.md`).
//! `export` asks the control plane for a file of records with their proofs; `verify`
//! checks such a file offline, with no server and no database; `key` prints the key
//! to verify with.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::verbs::{emit, emit_json};
use super::{Conn, Output, connect};

/// `gigawatt audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write the log's records with their Merkle proofs and signed checkpoints to a file
    /// (auditor, admin; a tenant token exports its own records only).
    Export(ExportArgs),
    /// Check an export offline: every signature, proof and record, and that every
    /// placement of classified data respected the policy in force. Exits non-zero on
    /// the first failure.
    Verify(VerifyArgs),
    /// Print the control plane's verifier key (`GET /v1/audit/key`).
    Key {
        #[command(flatten)]
        conn: Conn,
    },
}

/// Options of `gigawatt audit export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only this tenant's records (and the fleet facts they are judged against).
    #[arg(long)]
    pub tenant: Option<String>,
    /// From this instant (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Up to this instant (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// The file to write (JSON Lines).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub conn: Conn,
}

/// Options of `gigawatt audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The export file.
    pub file: PathBuf,
    /// The log's verifier key (`name+keyid+base64`, from `gigawatt audit key` or
    /// `GET /v1/audit/key`); repeat it for a log whose key changed.
    #[arg(long = "key", value_name = "VKEY", required = true)]
    pub keys: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `gigawatt audit`.
pub fn audit(cmd: &AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Export(a) => {
            let api = connect(&a.conn)?;
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(t) = &a.tenant {
                query.push(("tenant", t.clone()));
            }
            if let Some(f) = &a.from {
                query.push(("from", f.clone()));
            }
            if let Some(t) = &a.to {
                query.push(("to", t.clone()));
            }
            let text = api.get_text("/v1/audit/export", &query)?;
            std::fs::write(&a.out, &text).with_context(|| format!("writing {}", a.out.display()))?;
            let records = text.lines().filter(|l| l.starts_with("{\"type\":\"record\"")).count();
            emit(&format!("wrote {} ({records} records)\n", a.out.display()))
        }
        AuditCommand::Verify(a) => {
            let keys = a
                .keys
                .iter()
                .map(|k| k.parse().map_err(|e| anyhow::anyhow!("--key `{k}`: {e}")))
                .collect::<anyhow::Result<Vec<gigawatt_transparency::Verifier>>>()?;
            let file =
                std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?;
            let report = gigawatt_audit::verify(std::io::BufReader::new(file), &keys);
            if a.json {
                emit_json(&report)?;
            } else {
                emit(&format!("{report}\n"))?;
            }
            if report.ok {
                Ok(())
            } else {
                // The report said why; the exit status says that it failed.
                std::process::exit(1)
            }
        }
        AuditCommand::Key { conn } => {
            let api = connect(conn)?;
            let body = api.get("/v1/audit/key", &[])?;
            let vkey = body["vkey"].as_str().unwrap_or_default().to_string();
            match conn.output {
                Output::Json => emit_json(&body),
                Output::Table => emit(&format!("{vkey}\n")),
            }
        }
    }
}
