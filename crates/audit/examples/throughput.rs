//! How fast `verify` reads an export: an export of 1,000,000 records (a realistic mix of
//! submissions, placements with their residency, task reports and usage, ~410 bytes a
//! leaf on average) is written to a temporary file and verified. For comparison, it also
//! times the reference canonical-form check (`gigawatt_store::canonical::is_canonical`)
//! alone over the same leaves.
//!
//! A benchmark (it takes a while to build the log); run it in release:
//!
//! ```text
//! cargo run --release -p gigawatt-audit --example throughput
//! ```
//! `AUDIT_RECORDS=200000` runs it on fewer records; `AUDIT_KEEP=FILE` keeps the export
//! (for `examples/verify_export.rs`, with the verifier key printed).

#![allow(clippy::unwrap_used, missing_docs)]

// The tests' log builder (it allows its own unused parts).
#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufReader, BufWriter};
use std::time::Instant;

use common::{LogBuilder, keys, rule_countries, signer};
use gigawatt_audit::{ExportHeader, ExportWriter};
use gigawatt_core::DataClass;
use gigawatt_fleet::ResidencyRule;
use gigawatt_transparency::{Checkpoint, Tree};

/// One workload's life: submitted, placed, started, a usage report, exited, done.
fn cycle(b: &mut LogBuilder, round: u64) {
    let (tenant, class) = match round % 3 {
        0 => ("clinic", DataClass::Health),
        1 => ("bank", DataClass::Personal),
        _ => ("acme", DataClass::Public),
    };
    let id = b.submit(tenant, class, ResidencyRule::anywhere(), 1);
    b.place(id);
    b.run(id, &[25_000]);
}

fn main() {
    let n: u64 = std::env::var("AUDIT_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let t0 = Instant::now();
    let mut b = LogBuilder::new();
    for t in ["clinic", "bank", "acme"] {
        b.tenant_created(t);
    }
    b.set_policy("clinic", rule_countries(&["FR"]));
    let mut leaves: Vec<u8> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    let mut tree = Tree::with_capacity(n as usize);
    let mut round = 0;
    while (ends.len() as u64) < n {
        if round > 0 {
            cycle(&mut b, round);
        }
        round += 1;
        for r in b.records.drain(..) {
            if ends.len() as u64 == n {
                break;
            }
            let leaf = r.leaf();
            tree.push(&leaf);
            leaves.extend_from_slice(&leaf);
            ends.push(leaves.len());
        }
        b.workloads.clear();
    }
    let leaf = |i: usize| &leaves[if i == 0 { 0 } else { ends[i - 1] }..ends[i]];
    eprintln!(
        "built {n} records ({:.0} bytes a leaf on average) in {:.1?}",
        leaves.len() as f64 / n as f64,
        t0.elapsed()
    );

    let t0 = Instant::now();
    let canonical = (0..n as usize).filter(|&i| gigawatt_store::canonical::is_canonical(leaf(i))).count();
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(canonical as u64, n);
    println!("reference is_canonical alone: {:.0} leaves/s", n as f64 / secs);

    let t0 = Instant::now();
    let signer = signer();
    let sizes = [n / 3, 2 * n / 3, n];
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut w = ExportWriter::new(BufWriter::with_capacity(1 << 20, file.reopen().unwrap()));
    for &s in &sizes {
        let c = Checkpoint {
            origin: signer.name().into(),
            size: s,
            root: tree.root_at(s).unwrap(),
            extensions: vec![],
        };
        w.checkpoint(&signer.sign(&c.to_text().unwrap()).unwrap()).unwrap();
    }
    for p in sizes.windows(2) {
        w.consistency(p[0], p[1], &tree.consistency_proof(p[0], p[1]).unwrap()).unwrap();
    }
    for i in 0..n {
        w.record(i, leaf(i as usize), n, &tree.inclusion_proof(i, n).unwrap()).unwrap();
    }
    let header =
        ExportHeader { origin: signer.name().into(), tenant: None, from: None, to: None, tree_size: n };
    drop(w.finish(&signer, &header).unwrap());
    let bytes = std::fs::metadata(file.path()).unwrap().len();
    eprintln!("wrote the export ({:.0} MB) in {:.1?}", bytes as f64 / 1e6, t0.elapsed());

    if let Ok(keep) = std::env::var("AUDIT_KEEP") {
        std::fs::copy(file.path(), &keep).unwrap();
        eprintln!("kept the export as {keep}; its key is {}", signer.verifier());
    }
    let keys = keys();
    // Twice: the first read warms the page cache.
    for _ in 0..2 {
        let t0 = Instant::now();
        let report = gigawatt_audit::verify(BufReader::with_capacity(1 << 20, file.reopen().unwrap()), &keys);
        let secs = t0.elapsed().as_secs_f64();
        assert!(report.ok, "{report}");
        assert_eq!(report.records, n);
        println!(
            "verify: {n} records in {secs:.2} s = {:.0} records/s ({:.0} MB/s); {} placements checked",
            n as f64 / secs,
            bytes as f64 / 1e6 / secs,
            report.placements_checked
        );
    }
}
