//! Exports of a realistic log verify, and hold what they should.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{Log, lines, realistic_log, verify};
use gigawatt_audit::Check;

#[test]
fn the_full_export_verifies() {
    let b = realistic_log();
    assert!(b.records.len() > 300, "{}", b.records.len());
    let log = Log::new(b.records);
    let file = log.full_export();
    let report = verify(&file);
    assert!(report.ok, "{report}");
    let n = log.records.len() as u64;
    assert_eq!((report.records, report.checkpoints, report.tree_size), (n, 3, n));
    // 60 placements, each judged.
    assert_eq!(report.placements_checked, 60);
    assert_eq!(
        report.to_string(),
        format!(
            "verified {n} records against 3 checkpoints (tree size {n}); 60 placements comply with their residency policy"
        )
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["ok"], true);
    assert!(json.get("first_failure").is_none());

    // The layout of docs/audit.md: 3 checkpoints, 2 consistency proofs, the records, the
    // trailer; record lines start as the CLI counts them.
    let l = lines(&file);
    assert_eq!(l.len() as u64, 3 + 2 + n + 1);
    assert!(l[..3].iter().all(|l| l.starts_with(br#"{"type":"checkpoint","note":""#)));
    assert!(l[3..5].iter().all(|l| l.starts_with(br#"{"type":"consistency","from":"#)));
    assert!(l[5..l.len() - 1].iter().all(|l| l.starts_with(br#"{"type":"record","index":"#)));
    assert!(l[l.len() - 1].starts_with(
        br#"{"type":"export","note":"gigawatt audit export\norigin test.example/log\ntenant *\n"#
    ));

    // Each record line's event is the leaf decoded.
    for (i, line) in l[5..l.len() - 1].iter().enumerate() {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert_eq!(v["index"], i as u64);
        let leaf: serde_json::Value = serde_json::from_slice(&log.leaves[i]).unwrap();
        assert_eq!(v["event"], leaf["event"]);
        assert!(gigawatt_store::canonical::is_canonical(&log.leaves[i]));
    }
}

#[test]
fn a_tenant_export_holds_its_records_and_the_fleet_facts_only() {
    let log = Log::new(realistic_log().records);
    for tenant in ["clinic", "bank", "acme"] {
        let file = log.tenant_export(tenant);
        let report = verify(&file);
        assert!(report.ok, "{tenant}: {report}");
        let mut fleet = 0;
        let mut own = 0;
        for line in lines(&file) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            if v["type"] != "record" {
                continue;
            }
            let leaf: serde_json::Value = serde_json::from_slice(
                &base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    v["leaf"].as_str().unwrap(),
                )
                .unwrap(),
            )
            .unwrap();
            if v["event"]["type"] == "fleet-in-force" {
                fleet += 1;
                assert!(leaf.get("tenant").is_none());
            } else {
                own += 1;
                assert_eq!(leaf["tenant"], tenant, "{leaf}");
            }
        }
        assert_eq!(fleet, 2);
        let expected = log.records.iter().filter(|r| r.tenant.as_deref() == Some(tenant)).count();
        assert_eq!(own, expected);
        assert_eq!(report.records as usize, own + fleet);
        let placements = if tenant == "clinic" { 30 } else { 15 };
        assert_eq!(report.placements_checked, placements, "{tenant}");
        let trailer = lines(&file).last().unwrap().to_vec();
        assert!(String::from_utf8(trailer).unwrap().contains(&format!("\\ntenant {tenant}\\n")));
    }
}

#[test]
fn the_wrong_key_fails_on_the_first_checkpoint() {
    let log = Log::new(realistic_log().records);
    let file = log.full_export();
    let other = gigawatt_transparency::Signer::from_seed(common::ORIGIN, [8; 32]).unwrap();
    for keys in [vec![other.verifier()], vec![]] {
        let report = gigawatt_audit::verify(&file[..], &keys);
        assert!(!report.ok);
        let f = report.first_failure.unwrap();
        assert_eq!((f.line, f.check, f.index), (1, Check::Checkpoint, None), "{}", f.message);
        assert_eq!(report.checkpoints, 0);
    }
    // A file signed entirely by another key of the same name fails too.
    let forged = log.export_with(&other, &log.sizes(), None, |_| true);
    let report = verify(&forged);
    assert_eq!(report.first_failure.map(|f| (f.line, f.check)), Some((1, Check::Checkpoint)));
}

#[test]
fn an_export_of_one_checkpoint_and_no_record_verifies() {
    let log = Log::new(realistic_log().records);
    let n = log.records.len() as u64;
    let file = log.export_with(&common::signer(), &[n], Some("nobody"), |_| false);
    let report = verify(&file);
    assert!(report.ok, "{report}");
    assert_eq!((report.records, report.checkpoints, report.placements_checked), (0, 1, 0));
}

#[test]
fn windows_and_reformatted_lines() {
    let log = Log::new(realistic_log().records);
    // A window of the log: the fleet facts in force, and the records after the middle.
    let n = log.records.len() as u64;
    let window = log.export_with(&common::signer(), &[n / 2, n], None, |r| {
        r.seq > n / 2 || matches!(r.event, gigawatt_store::LogEvent::FleetInForce { .. })
    });
    let report = verify(&window);
    assert!(report.ok, "{report}");
    // Without the fleet facts, placements cannot be judged.
    let unjudged = log.export_with(&common::signer(), &[n / 2, n], None, |r| r.seq > n / 2 + 20);
    let f = verify(&unjudged).first_failure.unwrap();
    assert_eq!(f.check, Check::Compliance);
    assert!(f.message.contains("no fleet-in-force before this placement"), "{}", f.message);

    // Whitespace between JSON tokens outside strings, and another key order, are JSON
    // too: a verifier reads them (strings and the event are compared byte for byte).
    let mut spaced = Vec::new();
    for line in lines(&window) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        if v["type"] == "record" {
            // Keep the event's bytes: it must be the leaf's, byte for byte.
            let text = std::str::from_utf8(line).unwrap().trim_end();
            let at = text.find(",\"event\":").unwrap();
            let (head, event) = text.split_at(at);
            let event = event.strip_suffix('}').unwrap();
            let head: serde_json::Value = serde_json::from_str(&format!("{head}}}")).unwrap();
            let mut pretty = serde_json::to_string_pretty(&head).unwrap();
            pretty.pop(); // `}`
            pretty = pretty.replace('\n', " ");
            spaced.extend_from_slice(format!("{} {event} }}\r\n", pretty.trim_end()).as_bytes());
        } else {
            spaced
                .extend_from_slice(serde_json::to_string_pretty(&v).unwrap().replace('\n', "\t").as_bytes());
            spaced.push(b'\n');
        }
    }
    let report = verify(&spaced);
    assert!(report.ok, "{report}");
}
