//! `verify` never panics, whatever it is fed, and a changed export never verifies
//! (unless the change is only JSON whitespace outside the strings, which leaves every
//! line the same JSON: see `tamper.rs`).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{Log, LogBuilder, lines, rule_countries, verify};
use gigawatt_core::DataClass;
use gigawatt_fleet::ResidencyRule;
use proptest::prelude::*;

/// A small valid export (two checkpoints, a tenant policy, placements).
fn export() -> &'static [u8] {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        let mut b = LogBuilder::new();
        b.tenant_created("clinic");
        b.set_policy("clinic", rule_countries(&["FR"]));
        for _ in 0..3 {
            let id = b.submit("clinic", DataClass::Health, ResidencyRule::anywhere(), 2);
            b.place(id);
        }
        b.node_event(false);
        let log = Log::new(b.records);
        let n = log.records.len() as u64;
        let file = log.export_with(&common::signer(), &[n / 2, n], None, |_| true);
        assert!(verify(&file).ok);
        file
    })
}

/// Whether two files hold the same JSON, line by line.
fn same_json(a: &[u8], b: &[u8]) -> bool {
    let parse = |f: &[u8]| -> Option<Vec<serde_json::Value>> {
        f.split(|&c| c == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).ok()).collect()
    };
    matches!((parse(a), parse(b)), (Some(x), Some(y)) if x == y)
}

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    MoveLine(usize, usize),
    CopyLineOver(usize, usize),
    ReplaceLine(usize, Vec<u8>),
    InsertLine(usize, Vec<u8>),
    Truncate(usize),
    SetByte(usize, u8),
    InsertByte(usize, u8),
    DeleteByte(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let i = any::<usize>();
    let junk = prop::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        i.prop_map(Mutation::DeleteLine),
        i.prop_map(Mutation::DuplicateLine),
        (i, i).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (i, i).prop_map(|(a, b)| Mutation::MoveLine(a, b)),
        (i, i).prop_map(|(a, b)| Mutation::CopyLineOver(a, b)),
        (i, junk.clone()).prop_map(|(a, j)| Mutation::ReplaceLine(a, j)),
        (i, junk).prop_map(|(a, j)| Mutation::InsertLine(a, j)),
        i.prop_map(Mutation::Truncate),
        (i, any::<u8>()).prop_map(|(a, b)| Mutation::SetByte(a, b)),
        (i, any::<u8>()).prop_map(|(a, b)| Mutation::InsertByte(a, b)),
        i.prop_map(Mutation::DeleteByte),
    ]
}

fn apply(file: &[u8], m: &Mutation) -> Vec<u8> {
    if file.is_empty() {
        return Vec::new();
    }
    let mut ls: Vec<Vec<u8>> = lines(file).into_iter().map(<[u8]>::to_vec).collect();
    let n = ls.len();
    let mut bytes = file.to_vec();
    let len = bytes.len();
    let with_newline = |mut l: Vec<u8>| {
        l.retain(|&b| b != b'\n');
        l.push(b'\n');
        l
    };
    match m.clone() {
        Mutation::DeleteLine(a) => {
            ls.remove(a % n);
        }
        Mutation::DuplicateLine(a) => ls.insert(a % n, ls[a % n].clone()),
        Mutation::SwapLines(a, b) => ls.swap(a % n, b % n),
        Mutation::MoveLine(a, b) => {
            let l = ls.remove(a % n);
            ls.insert(b % n, l);
        }
        Mutation::CopyLineOver(a, b) => ls[b % n] = ls[a % n].clone(),
        Mutation::ReplaceLine(a, j) => ls[a % n] = with_newline(j),
        Mutation::InsertLine(a, j) => ls.insert(a % (n + 1), with_newline(j)),
        Mutation::Truncate(a) => return bytes[..a % len].to_vec(),
        Mutation::SetByte(a, b) => {
            bytes[a % len] = b;
            return bytes;
        }
        Mutation::InsertByte(a, b) => {
            bytes.insert(a % (len + 1), b);
            return bytes;
        }
        Mutation::DeleteByte(a) => {
            bytes.remove(a % len);
            return bytes;
        }
    }
    ls.concat()
}

/// Lines shaped like export lines, with random values: they get past the JSON reader and
/// reach the deeper checks.
fn plausible_line() -> impl Strategy<Value = Vec<u8>> {
    let num = prop_oneof![Just(0u64), Just(1), Just(u64::MAX), Just(1 << 63), any::<u64>(), 0u64..20];
    let b64 = prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| BASE64.encode(b));
    let leaf = prop_oneof![
        (num.clone(), "[a-z-]{0,12}")
            .prop_map(|(seq, t)| format!(r#"{{"at_ms":1,"event":{{"type":"{t}"}},"seq":{seq},"v":1}}"#)),
        ".{0,40}",
    ]
    .prop_map(|l| BASE64.encode(l));
    let proof = prop::collection::vec(b64.clone(), 0..5).prop_map(|p| serde_json::to_string(&p).unwrap());
    let note = prop_oneof![
        ".{0,80}",
        (num.clone(), b64.clone(), b64.clone()).prop_map(|(s, r, sig)| format!(
            "test.example/log\n{s}\n{r}\n\n\u{2014} test.example/log {sig}\n"
        )),
    ]
    .prop_map(|n| serde_json::to_string(&n).unwrap());
    prop_oneof![
        note.clone().prop_map(|n| format!(r#"{{"type":"checkpoint","note":{n}}}"#)),
        note.prop_map(|n| format!(r#"{{"type":"export","note":{n}}}"#)),
        (num.clone(), num.clone(), proof.clone())
            .prop_map(|(f, t, p)| format!(r#"{{"type":"consistency","from":{f},"to":{t},"proof":{p}}}"#)),
        (num.clone(), leaf, num, proof, "[{}\\[\\]\"a-z0-9:,]{0,20}").prop_map(|(i, l, s, p, e)| format!(
            r#"{{"type":"record","index":{i},"leaf":"{l}","tree_size":{s},"proof":{p},"event":{e}}}"#
        )),
    ]
    .prop_map(String::into_bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_verify_nor_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let r = verify(&bytes);
        prop_assert!(!r.ok);
        prop_assert!(r.first_failure.is_some());
    }

    #[test]
    fn plausible_lines_never_verify_nor_panic(ls in prop::collection::vec(plausible_line(), 0..8)) {
        let file = ls.join(&b'\n');
        let r = verify(&file);
        prop_assert!(!r.ok);
    }

    #[test]
    fn plausible_lines_spliced_into_a_valid_export_never_verify(at in any::<usize>(), line in plausible_line()) {
        let file = export();
        let mut ls: Vec<&[u8]> = lines(file);
        let mut line = line;
        line.push(b'\n');
        ls.insert(at % (ls.len() + 1), &line);
        let r = verify(&ls.concat());
        prop_assert!(!r.ok);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn mutated_exports_never_verify_unless_unchanged(m in mutation()) {
        let file = export();
        let changed = apply(file, &m);
        let r = verify(&changed);
        if r.ok {
            prop_assert!(
                changed == file || same_json(&changed, file),
                "{m:?} verifies: {r}"
            );
        }
    }

    #[test]
    fn twice_mutated_exports_never_panic(m1 in mutation(), m2 in mutation()) {
        let file = export();
        let changed = apply(&apply(file, &m1), &m2);
        let _ = verify(&changed);
    }
}
