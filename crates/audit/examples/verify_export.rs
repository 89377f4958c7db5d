//! Verifies an export file and prints the report and the time it took:
//!
//! ```text
//! cargo run --release -p gigawatt-audit --example verify_export -- FILE VKEY [--json]
//! ```
//!
//! `VKEY` is the log's verifier key (`GET /v1/audit/key`). The CLI's `gigawatt audit
//! verify` is the tool for auditors; this is for measuring the verifier alone.

use std::io::BufReader;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(vkey)) = (args.first(), args.get(1)) else {
        eprintln!("usage: verify_export FILE VKEY [--json]");
        return ExitCode::from(2);
    };
    let key: gigawatt_transparency::Verifier = match vkey.parse() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("VKEY: {e}");
            return ExitCode::from(2);
        }
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let t0 = Instant::now();
    let report = gigawatt_audit::verify(BufReader::with_capacity(1 << 20, file), &[key]);
    let secs = t0.elapsed().as_secs_f64();
    if args.iter().any(|a| a == "--json") {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        println!("{report}");
    }
    eprintln!("{secs:.3} s, {:.0} records/s", report.records as f64 / secs);
    if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
