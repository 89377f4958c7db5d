//! Bad input never panics the loader: arbitrary text, arbitrary bytes, and valid files
//! with random damage all end in `Ok` or in diagnostics.

use std::path::Path;

use gigawatt_fleet::{LoadError, parse};
use proptest::prelude::*;

const VALID: &str = r#"[[gpu_model]]
id = "G2"
vendor = "undisclosed"
tdp_w = 300
idle_w = 60
min_power_limit_w = 150
memory_gb = 32
source = "assumption"

[node_type.hgx]
gpu_model = "H100"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 4600

[[site]]
id = "valence"
country = "FR"
region = "eu-south-fr"
certifications = ["hds", "secnumcloud"]
pue = 1.2
grid = [{ from = 2026-01-01, capacity_mw = 8 }, { from = 2027-06-01, capacity_mw = 40 }]

  [[site.rack_group]]
  prefix = "valence-a"
  count = 4
  node_type = "hgx"
  nodes_per_rack = 8
  network_domain = "{site}-ib{n}"
  racks_per_domain = 2
"#;

/// Every diagnostic has a position inside the text (or is a file-level problem).
fn check(text: &str) {
    match parse(text, "p.toml", Path::new("/nonexistent")) {
        Ok(_) => {}
        Err(LoadError::Invalid(d)) => {
            assert!(!d.is_empty());
            let lines = text.lines().count().max(1) + 1;
            for x in d.iter() {
                assert!(x.line <= lines, "{x} (text has {lines} lines)");
                assert!(!x.problem.is_empty(), "{x}");
            }
        }
        Err(e) => panic!("parse() returned a non-diagnostic error: {e}"),
    }
}

/// Fragments that make damaged files interesting: numbers at the edges, wrong types,
/// placeholders, table headers, unicode.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-1".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("1e400".to_owned()),
        Just("nan".to_owned()),
        Just("inf".to_owned()),
        Just("0".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"{n}{x}{\"".to_owned()),
        Just("[[site]]".to_owned()),
        Just("[[site.rack_group]]".to_owned()),
        Just("[site.import]".to_owned()),
        Just("{ from = 1979-05-27T07:32:00Z }".to_owned()),
        Just("[1, [2, [3]]]".to_owned()),
        Just("\"Drôme 🚀\"".to_owned()),
        Just("\n".to_owned()),
        "[a-z_]{1,12}".prop_map(|s| s),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        check(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn damaged_valid_files_never_panic(
        edits in proptest::collection::vec((0usize..VALID.len(), 0usize..40, fragment()), 1..4)
    ) {
        let mut text = VALID.to_owned();
        for (at, len, with) in edits {
            let mut start = at.min(text.len());
            while !text.is_char_boundary(start) { start -= 1; }
            let mut end = (start + len).min(text.len());
            while !text.is_char_boundary(end) { end -= 1; }
            text.replace_range(start..end, &with);
        }
        check(&text);
    }

    #[test]
    fn any_value_for_any_key_never_panics(
        key in prop::sample::select(vec![
            "tdp_w", "idle_w", "memory_gb", "gpus", "cpu_millicores", "base_power_w", "country",
            "pue", "grid", "count", "nodes_per_rack", "network_domain", "racks_per_domain",
            "certifications", "prefix",
        ]),
        value in fragment(),
    ) {
        let text: String = VALID
            .lines()
            .map(|l| if l.trim_start().starts_with(&format!("{key} =")) { format!("{key} = {value}") } else { l.to_owned() })
            .collect::<Vec<_>>()
            .join("\n");
        check(&text);
    }
}
