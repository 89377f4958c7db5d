//! The `gigawatt` binary, driven as a user drives it: the FGD experiment and its JSON
//! contract, determinism, every kind of bad input (which must end in a located, fixable
//! error and never in a panic), and the fleet, catalog and Azure commands.
//!
//! Experiments on the bundled trace take about a second per (policy, seed) in a test
//! build, `random` three to four; the bad-input tests use a 16-GPU cluster
//! ([`common::TINY_NODES`]) on which a run takes milliseconds.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;

use common::{Out, TINY_NODES, bundled, gigawatt, gigawatt_in, repo, tiny_pods, write};
use serde_json::Value;

const DEFAULT_PODS: &str = "traces/openb/openb_pod_list_default.csv";
const GPU_NODES: &str = "traces/openb/openb_node_list_gpu_node.csv";
const AZURE_TRACE: &str = "traces/azure-llm-2023/AzureLLMInferenceTrace_code.csv";

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// The summary rows of one policy at one arrived-% bucket.
fn rows<'a>(doc: &'a Value, policy: &str, bucket: u64) -> Vec<&'a Value> {
    doc["summary"]
        .as_array()
        .map(|a| a.iter().filter(|r| r["policy"] == policy && r["arrived_pct"] == bucket).collect())
        .unwrap_or_default()
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

// ----- Determinism ----------------------------------------------------------------------

const DETERMINISM_ARGS: [&str; 7] = ["sim", "openb", "--policy", "fgd,random", "--seeds", "42..43", "--json"];

/// `gigawatt sim openb --policy fgd,random --seeds 42..43 --json --threads 1`, run once
/// and shared.
fn determinism_reference() -> &'static Out {
    static OUT: OnceLock<Out> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = gigawatt(DETERMINISM_ARGS.iter().chain(&["--threads", "1"]));
        out.ok();
        out
    })
}

#[test]
fn the_same_seeds_give_byte_identical_json_whatever_the_thread_count() {
    let first = determinism_reference();
    let second = gigawatt(DETERMINISM_ARGS.iter().chain(&["--threads", "2"]));
    second.ok();
    assert!(
        first.stdout == second.stdout,
        "two runs of `{}` differ:\n--- first ---\n{}\n--- second ---\n{}",
        DETERMINISM_ARGS.join(" "),
        first.stdout,
        second.stdout
    );
}

#[test]
fn another_seed_gives_another_result() {
    let reference = determinism_reference().json();
    let other = gigawatt(["sim", "openb", "--policy", "fgd,random", "--seeds", "44", "--json"]);
    other.ok();
    assert_ne!(other.stdout, determinism_reference().stdout);
    let other = other.json();
    for policy in ["fgd", "random"] {
        let curve = |doc: &Value| -> Vec<f64> {
            doc["summary"]
                .as_array()
                .map(|a| {
                    a.iter().filter(|r| r["policy"] == policy).map(|r| num(r, "alloc_pct_mean")).collect()
                })
                .unwrap_or_default()
        };
        assert!(!curve(&other).is_empty(), "no {policy} rows in {other}");
        assert_ne!(curve(&reference), curve(&other), "{policy}: seed 44 gives the curve of seeds 42..43");
    }
}

// ----- The JSON contract and the human table ------------------------------------------

const CONTRACT_POLICIES: [&str; 3] = ["fgd", "best-fit", "random"];

/// `gigawatt sim openb --nodes NODES.csv --pods PODS.csv --policy fgd,best-fit,random
/// --seeds 42..43 --json` with the bundled CSVs, run once and shared.
fn contract_output() -> &'static Out {
    static OUT: OnceLock<Out> = OnceLock::new();
    OUT.get_or_init(|| {
        let nodes = bundled(GPU_NODES).display().to_string();
        let pods = bundled(DEFAULT_PODS).display().to_string();
        gigawatt([
            "sim",
            "openb",
            "--nodes",
            &nodes,
            "--pods",
            &pods,
            "--policy",
            &CONTRACT_POLICIES.join(","),
            "--seeds",
            "42..43",
            "--json",
        ])
    })
}

#[test]
fn json_output_is_one_document_with_the_documented_summary() {
    let policies = CONTRACT_POLICIES;
    let out = contract_output();
    out.ok();
    assert!(out.stderr.trim().is_empty(), "--json keeps stderr quiet (no progress bar)\n{out:?}");
    let doc = out.json();

    assert_eq!(doc["policies"], serde_json::json!(policies), "requested order is kept");
    assert_eq!(doc["seeds"], serde_json::json!([42, 43]));
    assert_eq!(doc["workloads"], serde_json::json!(["openb_pod_list_default"]));
    assert_eq!(doc["nodes"], 1213);
    assert_eq!(doc["gpus"], 6212);

    let summary = doc["summary"].as_array().unwrap_or_else(|| panic!("`summary` is not a list: {doc}"));
    assert!(!summary.is_empty());
    for r in summary {
        assert!(r.is_object(), "{r}");
        assert!(r["policy"].is_string(), "`policy` is a string: {r}");
        assert!(r["arrived_pct"].is_u64(), "`arrived_pct` is an integer: {r}");
        for key in ["alloc_pct_mean", "alloc_pct_std", "frag_ratio_pct_mean"] {
            let v = num(r, key);
            assert!(v.is_finite() && (0.0..=100.0).contains(&v), "`{key}` = {v} is not a percentage: {r}");
        }
        assert_eq!(r["seeds"], 2, "{r}");
    }
    for policy in policies {
        let at130 = rows(&doc, policy, 130);
        assert_eq!(at130.len(), 1, "one {policy} row at arrived_pct 130 in {doc}");
        let published = num(at130[0], "published_alloc_pct");
        let mean = num(at130[0], "alloc_pct_mean");
        assert!((mean - published).abs() <= 1.0, "{policy}: {mean} vs paper {published}");
        let buckets: Vec<u64> = summary
            .iter()
            .filter(|r| r["policy"] == policy)
            .filter_map(|r| r["arrived_pct"].as_u64())
            .collect();
        assert_eq!(buckets, (0..=130).collect::<Vec<u64>>(), "{policy}: one row per bucket, in order");
    }
    let mean = |p| num(rows(&doc, p, 130)[0], "alloc_pct_mean");
    assert!(mean("fgd") > mean("best-fit") && mean("best-fit") > mean("random"), "paper order\n{doc:#}");

    let headline = doc["headline"].as_array().unwrap_or_else(|| panic!("`headline` is not a list: {doc}"));
    let headline_policies: Vec<&Value> = headline.iter().map(|r| &r["policy"]).collect();
    assert_eq!(headline_policies, policies, "the headline is the 130% rows, in requested order");
    assert!(headline.iter().all(|r| r["arrived_pct"] == 130));
    assert!(doc["runs"].is_null(), "runs are only included with --runs");
}

/// `--nodes` with the bundled node list builds the same cluster as the fleet file's own
/// import, so the policies both runs share give the same numbers.
#[test]
fn the_bundled_node_list_via_nodes_gives_the_fleet_files_results() {
    let via_nodes = contract_output();
    via_nodes.ok();
    let via_fleet = determinism_reference();
    let (a, b) = (via_nodes.json(), via_fleet.json());
    for policy in ["fgd", "random"] {
        let rows = |doc: &Value| -> Vec<Value> {
            doc["summary"]
                .as_array()
                .map(|s| s.iter().filter(|r| r["policy"] == policy).cloned().collect())
                .unwrap_or_default()
        };
        assert!(!rows(&a).is_empty(), "no {policy} rows");
        assert!(rows(&a) == rows(&b), "{policy}: --nodes {GPU_NODES} and fleets/openb.toml disagree");
    }
}

#[test]
fn human_mode_prints_the_table_and_writes_the_chart() {
    let dir = tempdir();
    let out =
        gigawatt_in(dir.path(), ["sim", "openb", "--seeds", "42", "--policy", "fgd", "--chart", "chart.svg"]);
    out.ok();
    out.stdout_has(&[
        "openb_pod_list_default: GPU allocation at 130% arrived workload",
        "alloc %",
        "paper %",
        "chart: chart.svg",
    ]);
    let row =
        out.stdout.lines().find(|l| l.starts_with("fgd ")).unwrap_or_else(|| panic!("no fgd row\n{out:?}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells.len(), 7, "policy, alloc, std, paper, Δ, frag@90, failed: {row}");
    let alloc: f64 = cells[1].parse().unwrap_or_else(|_| panic!("alloc `{}` in {row}", cells[1]));
    assert!((alloc - 95.39).abs() <= 1.0, "fgd seed 42 allocates {alloc}%: {row}");
    assert_eq!(cells[2], "0.00", "one seed has no spread: {row}");
    assert_eq!(cells[3], "95.39", "the paper's number: {row}");
    assert_eq!(cells[4], format!("{:+.2}", alloc - 95.39), "Δ = alloc − paper: {row}");

    let chart = dir.path().join("chart.svg");
    let svg = std::fs::read_to_string(&chart).unwrap_or_else(|e| panic!("{}: {e}\n{out:?}", chart.display()));
    assert!(svg.starts_with("<svg"), "not an SVG: {}", &svg[..svg.len().min(200)]);
    assert!(svg.contains("fgd ("), "the legend names the policy");
    let written: Vec<String> = std::fs::read_dir(dir.path())
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert_eq!(written, ["chart.svg"], "nothing but the chart is written to the current directory");
}

/// A chart path in a folder that does not exist: either the folder is created, or the
/// command refuses before it spends minutes on the experiment, naming the folder.
#[test]
fn a_chart_in_a_missing_folder_is_written_or_refused_up_front() {
    let dir = tempdir();
    write(dir.path(), "nodes.csv", TINY_NODES);
    write(dir.path(), "pods.csv", &tiny_pods());
    let out = gigawatt_in(
        dir.path(),
        [
            "sim",
            "openb",
            "--nodes",
            "nodes.csv",
            "--pods",
            "pods.csv",
            "--policy",
            "fgd",
            "--seeds",
            "42",
            "--chart",
            "no/such/folder/chart.svg",
        ],
    );
    if out.code == Some(0) {
        let svg = std::fs::read_to_string(dir.path().join("no/such/folder/chart.svg")).unwrap_or_default();
        assert!(svg.starts_with("<svg"), "success, but no chart was written\n{out:?}");
    } else {
        out.fails().stderr_has(&["no/such/folder"]);
    }
}

// ----- Bad input: located, fixable, never a panic --------------------------------------

const POD_HEADER: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n";

/// Line 3: a malformed `cpu_milli`; line 5: a negative `memory_mib`.
fn bad_pods() -> String {
    format!(
        "{POD_HEADER}p0,1000,1024,1,500,\np1,12x00,1024,1,500,\np2,1000,1024,1,500,\np3,1000,-5,1,500,\np4,1000,1024,1,500,\n"
    )
}

#[test]
fn bad_pod_rows_are_all_reported_with_file_line_field_and_fix() {
    let dir = tempdir();
    write(dir.path(), "pods.csv", &bad_pods());
    let out =
        gigawatt_in(dir.path(), ["sim", "openb", "--pods", "pods.csv", "--policy", "fgd", "--seeds", "42"]);
    out.fails().stderr_has(&[
        "pods.csv:3: cpu_milli: `12x00` is not a non-negative integer; fix:",
        "pods.csv:5: memory_mib: `-5` is not a non-negative integer; fix:",
        "2 problems",
    ]);
}

#[test]
fn skip_invalid_runs_the_valid_rows_and_counts_the_rest_on_stderr() {
    let dir = tempdir();
    write(dir.path(), "nodes.csv", TINY_NODES);
    write(dir.path(), "pods.csv", &bad_pods());
    let out = gigawatt_in(
        dir.path(),
        [
            "sim",
            "openb",
            "--nodes",
            "nodes.csv",
            "--pods",
            "pods.csv",
            "--skip-invalid",
            "--policy",
            "fgd",
            "--seeds",
            "42",
            "--json",
        ],
    );
    out.ok().stderr_has(&["pods.csv", "skipped 2 invalid row(s)", "pods.csv:3: cpu_milli"]);
    let doc = out.json();
    assert_eq!(doc["gpus"], 16);
    assert!(doc["summary"].as_array().is_some_and(|s| !s.is_empty()), "the valid rows were run: {doc}");
}

#[test]
fn a_pod_list_without_a_required_column_is_refused_naming_it() {
    let dir = tempdir();
    write(dir.path(), "pods.csv", "name,cpu_milli,num_gpu,gpu_milli\np0,1000,1,500\n");
    let out =
        gigawatt_in(dir.path(), ["sim", "openb", "--pods", "pods.csv", "--policy", "fgd", "--seeds", "42"]);
    out.fails().stderr_has(&[
        "pods.csv:1: header: missing column(s) memory_mib",
        "fix:",
        "name,cpu_milli,memory_mib",
    ]);
}

#[test]
fn an_unknown_gpu_model_in_a_node_list_is_refused_listing_the_known_ones() {
    let dir = tempdir();
    let nodes = write(
        dir.path(),
        "nodes.csv",
        "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\nn1,64000,262144,8,Z900\n",
    );
    let out = gigawatt(["sim", "openb", "--nodes", &nodes.display().to_string()]);
    out.fails().stderr_has(&[
        "nodes.csv:3:19: model: unknown GPU model `Z900`",
        "known models:",
        "H100-SXM",
        "B200",
        "MI300X",
        "T4",
        "G2",
        "fix: declare `Z900` in a [[gpu_model]] table",
    ]);
}

#[test]
fn a_bad_node_row_is_refused_with_file_line_column_and_field() {
    let dir = tempdir();
    let nodes = write(
        dir.path(),
        "nodes.csv",
        "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\nn1,64k,262144,8,T4\n",
    );
    let out = gigawatt(["sim", "openb", "--nodes", &nodes.display().to_string()]);
    out.fails().stderr_has(&["nodes.csv:3:4: cpu_milli: `64k` is not a whole number; fix:"]);
}

/// `Diagnostic::file` is "the file as the user named it"; the node list is reported
/// under its canonical absolute path instead.
#[test]
fn node_list_problems_name_the_file_as_the_user_typed_it() {
    let dir = tempdir();
    write(dir.path(), "nodes.csv", "sn,cpu_milli,memory_mib,gpu,model\nn0,64k,262144,8,T4\n");
    let out = gigawatt_in(dir.path(), ["sim", "openb", "--nodes", "nodes.csv"]);
    out.fails().stderr_has(&["error: nodes.csv:2:4: cpu_milli"]);
}

#[test]
fn a_node_list_without_gpus_is_refused_naming_the_file() {
    let dir = tempdir();
    write(dir.path(), "nodes.csv", "sn,cpu_milli,memory_mib,gpu,model\nc0,32000,262144,0,\n");
    let out =
        gigawatt_in(dir.path(), ["sim", "openb", "--nodes", "nodes.csv", "--policy", "fgd", "--seeds", "42"]);
    out.fails().stderr_has(&["nodes.csv"]);
}

#[test]
fn an_unknown_policy_is_refused_listing_the_known_ones() {
    let out = gigawatt(["sim", "openb", "--policy", "fgd,fdg", "--seeds", "42"]);
    out.fails().stderr_has(&[
        "--policy",
        "`fdg`",
        "random",
        "dot-product",
        "gpu-packing",
        "gpu-clustering",
        "best-fit",
        "fgd",
    ]);
}

#[test]
fn bad_seeds_and_ratios_are_refused_with_an_example() {
    for (args, needles) in [
        (&["--seeds", "4x"][..], &["--seeds", "`4x`", "e.g. 42..51"][..]),
        (&["--seeds", "51..42"], &["--seeds", "51..42", "e.g. 42..51"]),
        (&["--seeds", ""], &["--seeds", "e.g. 42..51"]),
        (&["--seeds", "42.."], &["--seeds", "e.g. 42..51"]),
        (&["--seeds", "1,,2"], &["--seeds", "e.g. 42..51"]),
        (&["--seeds", "-3"], &["--seeds", "e.g. 42..51"]),
        (&["--seeds", "0..20000"], &["--seeds", "at most 10,000"]),
        (&["--ratio", "0"], &["--ratio", "1.3"]),
        (&["--ratio", "NaN"], &["--ratio", "1.3"]),
    ] {
        let out = gigawatt(["sim", "openb", "--policy", "fgd"].iter().chain(args));
        // `-3` looks like a flag to clap (exit 2); everything else is ours (exit 1).
        if out.code == Some(2) {
            out.no_panic().stderr_has(&["error:"]);
        } else {
            out.fails().stderr_has(needles);
        }
    }
}

/// `b - a + 1` in the "too many seeds" message overflows for the widest range.
#[test]
fn the_widest_seed_range_is_refused_without_overflowing() {
    let out = gigawatt(["sim", "openb", "--policy", "fgd", "--seeds", "0..18446744073709551615"]);
    out.fails().stderr_has(&["--seeds", "at most 10,000"]);
}

/// `--policy fgd,best-fit,fgd` ran fgd twice per seed and reported it as two seeds with
/// a standard deviation of 0; `--seeds 42,42` likewise. Duplicates must be merged or
/// refused.
#[test]
fn duplicate_policies_and_seeds_are_not_counted_twice() {
    let dir = tempdir();
    write(dir.path(), "nodes.csv", TINY_NODES);
    write(dir.path(), "pods.csv", &tiny_pods());
    let mut problems = Vec::new();
    for (policy, seeds, dup) in [("fgd,best-fit,fgd", "42", "fgd"), ("fgd", "42,42", "42")] {
        let out = gigawatt_in(
            dir.path(),
            [
                "sim",
                "openb",
                "--nodes",
                "nodes.csv",
                "--pods",
                "pods.csv",
                "--policy",
                policy,
                "--seeds",
                seeds,
                "--json",
            ],
        );
        out.no_panic();
        if out.code != Some(0) {
            out.fails().stderr_has(&[dup]);
            continue;
        }
        let doc = out.json();
        let listed = |key: &str| -> Vec<String> {
            let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), String::from);
            doc[key].as_array().map(|a| a.iter().map(text).collect()).unwrap_or_default()
        };
        for key in ["policies", "seeds"] {
            let mut unique = listed(key);
            unique.sort();
            unique.dedup();
            if unique.len() != listed(key).len() {
                problems.push(format!("--policy {policy} --seeds {seeds}: `{key}` is {:?}", listed(key)));
            }
        }
        let counts: Vec<String> = doc["summary"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|r| r["seeds"] != 1)
                    .map(|r| format!("{} at {}%: {} seeds", r["policy"], r["arrived_pct"], r["seeds"]))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(first) = counts.first() {
            problems.push(format!("--policy {policy} --seeds {seeds}: one seed per policy, but {first}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn missing_files_are_named() {
    let dir = tempdir();
    for args in [
        &["sim", "openb", "--pods", "nope.csv", "--policy", "fgd", "--seeds", "42"][..],
        &["sim", "openb", "--nodes", "nope.csv", "--policy", "fgd", "--seeds", "42"],
        &["sim", "openb", "--fleet", "nope.toml", "--policy", "fgd", "--seeds", "42"],
        &["sim", "azure", "--trace", "nope.csv"],
        &["fleet", "check", "nope.toml"],
        &["fleet", "show", "nope.toml"],
    ] {
        let out = gigawatt_in(dir.path(), args);
        out.no_panic();
        assert_eq!(out.code, Some(1), "{out:?}");
        out.stderr_has(&["nope.", "No such file or directory"]);
    }
}

/// The I/O error is both in the message and its `source`, and `{:#}` prints the chain:
/// "cannot read nope.csv: No such file or directory (os error 2): No such file or
/// directory (os error 2)".
#[test]
fn a_missing_file_is_reported_without_repeating_the_os_error() {
    let dir = tempdir();
    let mut repeated = Vec::new();
    for args in [
        &["sim", "openb", "--pods", "nope.csv", "--policy", "fgd", "--seeds", "42"][..],
        &["sim", "azure", "--trace", "nope.csv"],
        &["fleet", "show", "nope.toml"],
    ] {
        let out = gigawatt_in(dir.path(), args);
        out.fails();
        if out.stderr.matches("No such file or directory").count() != 1 {
            repeated.push(format!("gigawatt {}: {}", args.join(" "), out.stderr.trim()));
        }
    }
    assert!(repeated.is_empty(), "the OS error is repeated:\n{}", repeated.join("\n"));
}

#[test]
fn an_empty_pod_list_does_not_panic() {
    let dir = tempdir();
    write(dir.path(), "empty.csv", POD_HEADER);
    write(dir.path(), "zero.csv", "");
    for args in [
        &["sim", "openb", "--pods", "empty.csv", "--policy", "fgd", "--seeds", "42", "--json"][..],
        &["sim", "openb", "--pods", "empty.csv", "--policy", "all", "--seeds", "42", "--chart", "c.svg"],
        &["sim", "openb", "--pods", "zero.csv", "--policy", "fgd", "--seeds", "42", "--json"],
    ] {
        let out = gigawatt_in(dir.path(), args);
        out.no_panic();
        assert!(matches!(out.code, Some(0 | 1)), "{out:?}");
        if out.code == Some(0) && args.contains(&"--json") {
            out.json();
        }
    }
}

/// A header-only pod list runs nothing and prints an empty table: the user must be told.
#[test]
fn an_empty_pod_list_is_reported_not_silently_run() {
    let dir = tempdir();
    write(dir.path(), "empty.csv", POD_HEADER);
    let out =
        gigawatt_in(dir.path(), ["sim", "openb", "--pods", "empty.csv", "--policy", "fgd", "--seeds", "42"]);
    out.no_panic().stderr_has(&["empty.csv"]);
}

#[test]
fn bad_azure_rows_are_refused_with_file_line_field_and_fix() {
    let dir = tempdir();
    write(
        dir.path(),
        "bad.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,x,10\n",
    );
    gigawatt_in(dir.path(), ["sim", "azure", "--trace", "bad.csv"])
        .fails()
        .stderr_has(&["bad.csv:2: ContextTokens: `x` is not a token count; fix:"]);
    gigawatt_in(dir.path(), ["sim", "azure", "--trace", "bad.csv", "--skip-invalid", "--json"])
        .ok()
        .stderr_has(&["skipped 1 invalid row(s)"]);
}

/// chrono reads signed years up to ±262,143; the microseconds between two such
/// timestamps overflow an `i64` (`crates/sim/src/azure.rs`, `t - first`).
#[test]
fn azure_timestamps_at_the_ends_of_the_calendar_do_not_panic() {
    let dir = tempdir();
    write(
        dir.path(),
        "far.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n+262000-01-01 00:00:00.0,1,1\n-262000-01-01 00:00:00.0,1,1\n",
    );
    let out = gigawatt_in(dir.path(), ["sim", "azure", "--trace", "far.csv", "--json"]);
    out.no_panic();
}

/// `gigawatt fleet schema | head` must not panic when the reader goes away. The pipe's
/// read end is closed before the command starts, so every write fails with EPIPE.
#[test]
fn a_closed_stdout_does_not_panic() {
    for args in [&["fleet", "schema"][..], &["catalog", "--json"], &["sim", "azure", "--json"]] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_gigawatt"))
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("gigawatt runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("panicked") && output.status.code() != Some(101),
            "`gigawatt {}` with stdout closed: {:?}\n{stderr}",
            args.join(" "),
            output.status
        );
    }
}

/// `admin replay` reads a log: a path with a typo is an error, and no empty log is left
/// behind for the next command to trust.
#[test]
fn replaying_a_log_that_does_not_exist_is_an_error_and_creates_nothing() {
    let dir = tempdir();
    let path = dir.path().join("typo.db");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gigawatt"))
        .args(["admin", "replay", "--db", &format!("sqlite://{}", path.display())])
        .output()
        .expect("gigawatt runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("there is no event log at") && stderr.contains("typo.db"), "{stderr}");
    assert!(!path.exists(), "the replay created {}", path.display());
}

// ----- Fleet files ----------------------------------------------------------------------

/// Four problems at once: an unknown GPU model in a node type (line 2), a country name
/// instead of a code (line 10), a PUE below 1 (line 12), a misspelt key (line 20).
const BROKEN_FLEET: &str = r#"[node_type.hgx-h100]
gpu_model = "H10"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 4600

[[site]]
id = "valence"
country = "France"
region = "eu-south-fr"
pue = 0.9
grid = [{ from = 2026-01-01, capacity_mw = 8 }]

  [[site.rack_group]]
  prefix = "valence-a"
  count = 40
  node_type = "hgx-h100"
  nodes_per_rack = 8
  power_limt_kw = 150
"#;

/// `FILE:LINE:COLUMN: ` at the start of a diagnostic line, as numbers.
fn position(line: &str, file: &str) -> Option<(usize, usize)> {
    let rest = line.strip_prefix(file)?.strip_prefix(':')?;
    let mut parts = rest.splitn(3, ':');
    let l = parts.next()?.parse().ok()?;
    let c = parts.next()?.parse().ok()?;
    parts.next()?.strip_prefix(' ')?;
    Some((l, c))
}

#[test]
fn fleet_check_reports_every_problem_with_file_line_and_column() {
    let dir = tempdir();
    write(dir.path(), "fleet.toml", BROKEN_FLEET);
    let out = gigawatt_in(dir.path(), ["fleet", "check", "fleet.toml"]);
    out.no_panic();
    assert_eq!(out.code, Some(1), "{out:?}");
    out.stderr_has(&[
        "fleet.toml:2:13: node_type.hgx-h100.gpu_model: unknown GPU model `H10` (did you mean `H100`?); known models: A10,",
        "fleet.toml:10:11: site[0].country: country `France` is not an ISO 3166-1 alpha-2 code; fix: write `FR`",
        "fleet.toml:12:7: site[0].pue: pue must be ≥ 1.0 (got 0.9); fix:",
        "fleet.toml:20:3: site[0].rack_group[0].power_limt_kw: unknown key `power_limt_kw`",
        "did you mean `power_limit_kw`?",
        "4 problems",
        "error: 1 of 1 fleet file(s) have problems",
    ]);
    let problems: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("fleet.toml")).collect();
    assert_eq!(problems.len(), 4, "{out:?}");
    for p in problems {
        assert!(position(p, "fleet.toml").is_some(), "no file:line:column in `{p}`");
        assert!(p.contains("; fix: "), "no fix in `{p}`");
    }
}

#[test]
fn fleet_check_accepts_the_bundled_fleets() {
    let out = gigawatt_in(&repo(), ["fleet", "check", "fleets/france.toml", "fleets/openb.toml"]);
    out.ok().stdout_has(&[
        "fleets/france.toml: ok (5 sites, 6784 nodes, 47360 GPUs)",
        "fleets/openb.toml: ok (1 sites, 1213 nodes, 6212 GPUs)",
    ]);
}

#[test]
fn fleet_check_of_a_good_and_a_bad_file_reports_both_and_fails() {
    let dir = tempdir();
    let bad = write(dir.path(), "fleet.toml", BROKEN_FLEET);
    let good = bundled("fleets/france.toml");
    let out = gigawatt(["fleet", "check", &good.display().to_string(), &bad.display().to_string()]);
    out.no_panic();
    assert_eq!(out.code, Some(1), "{out:?}");
    out.stdout_has(&["france.toml: ok"])
        .stderr_has(&["4 problems", "error: 1 of 2 fleet file(s) have problems"]);
}

/// The block of `fleet show` output about one site.
fn site_block<'a>(out: &'a Out, site: &str) -> &'a str {
    out.stdout
        .split("\n\n")
        .find(|b| b.starts_with(&format!("{site} — ")))
        .unwrap_or_else(|| panic!("no `{site}` block\n{out:?}"))
}

#[test]
fn fleet_show_gives_the_it_budget_of_the_grid_phase_in_force() {
    let france = bundled("fleets/france.toml").display().to_string();
    let show = |date: &str| {
        let out = gigawatt(["fleet", "show", &france, "--at", date]);
        out.ok();
        out
    };
    let out = show("2027-06-01");
    out.stdout_has(&["5 sites, 960 racks, 6784 nodes, 47360 GPUs"]);
    let valence = site_block(&out, "valence");
    assert!(valence.contains("Valence (Drôme) campus") && valence.contains("PUE 1.2"), "{valence}");
    assert!(valence.contains("grid 40.00 MW → IT budget 33.33 MW"), "the 40 MW phase at PUE 1.2:\n{valence}");
    // The day before, the 8 MW phase is still in force.
    let before = show("2027-05-31");
    let valence = site_block(&before, "valence");
    assert!(valence.contains("grid 8.00 MW → IT budget 6.67 MW"), "the 8 MW phase:\n{valence}");

    let all = gigawatt(["fleet", "show", &france]);
    all.ok();
    let valence = site_block(&all, "valence");
    for phase in [
        "from 2026-01-01: grid 8.00 MW → IT budget 6.67 MW",
        "from 2027-06-01: grid 40.00 MW → IT budget 33.33 MW",
        "from 2028-06-01: grid 80.00 MW → IT budget 66.67 MW",
    ] {
        assert!(valence.contains(phase), "without --at every phase is listed; missing `{phase}`:\n{valence}");
    }

    gigawatt(["fleet", "show", &france, "--at", "2027-13-01"]).fails().stderr_has(&[
        "--at",
        "2027-13-01",
        "e.g. 2027-06-01",
    ]);
}

#[test]
fn fleet_schema_prints_the_bundled_json_schema() {
    let out = gigawatt(["fleet", "schema"]);
    out.ok();
    let schema = out.json();
    assert_eq!(schema["title"], "gigawatt fleet file");
    assert!(schema["properties"]["site"].is_object(), "the schema describes `site`");
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(bundled("fleets/fleet.schema.json")).unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    assert_eq!(schema, committed, "`gigawatt fleet schema` and fleets/fleet.schema.json differ");
}

// ----- Catalog, Azure, help ---------------------------------------------------------------

#[test]
fn catalog_lists_the_gpu_models_with_their_sources() {
    let out = gigawatt(["catalog"]);
    out.ok();
    let models: Vec<&str> = out.stdout.lines().filter_map(|l| l.split_whitespace().next()).collect();
    for m in
        ["A100-SXM", "H100-SXM", "H100-PCIE", "H200-SXM", "B200", "GB200", "MI300X", "T4", "V100-SXM2-16GB"]
    {
        assert!(models.contains(&m), "catalog lacks {m}\n{out:?}");
    }
    let json = gigawatt(["catalog", "--json"]);
    json.ok();
    let doc = json.json();
    let models = doc["models"].as_object().unwrap_or_else(|| panic!("no `models` map: {doc}"));
    assert!(models.len() >= 12, "{} models", models.len());
    for (id, m) in models {
        assert!(m["source"].as_str().is_some_and(|s| !s.is_empty()), "{id} has no source");
        let (tdp, idle, min) = (num(m, "tdp"), num(m, "idle"), num(m, "min_power_limit"));
        assert!(0.0 < idle && idle < tdp && min <= tdp, "{id}: idle {idle}, min {min}, tdp {tdp}");
    }
}

/// Character offsets at which each whitespace-separated token of `line` ends.
fn token_ends(line: &str) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut in_token = false;
    for (i, c) in line.chars().enumerate() {
        if c.is_whitespace() {
            if in_token {
                ends.push(i);
            }
            in_token = false;
        } else {
            in_token = true;
        }
    }
    if in_token {
        ends.push(line.chars().count());
    }
    ends
}

/// The model column is 12 wide, but `V100-SXM2-16GB` has 14 characters, which pushes
/// the rest of its row (and the 32GB row) two columns right.
#[test]
fn catalog_table_columns_line_up() {
    let out = gigawatt(["catalog"]);
    out.ok();
    let mut lines = out.stdout.lines();
    let header = lines.next().unwrap_or_default();
    // model | vendor | TDP W | …: the TDP column ends where the header's `TDP W` ends.
    let tdp_end = token_ends(header).get(3).copied();
    let misaligned: Vec<&str> = lines
        .take_while(|l| !l.trim().is_empty())
        .filter(|row| token_ends(row).get(2).copied() != tdp_end)
        .collect();
    assert!(
        misaligned.is_empty(),
        "rows whose TDP column does not line up with the header:\n{header}\n{}",
        misaligned.join("\n")
    );
}

#[test]
fn azure_json_summarises_the_bundled_trace() {
    let out = gigawatt(["sim", "azure", "--json"]);
    out.ok();
    let s = out.json();
    assert_eq!(s["requests"], 8819, "{s}");
    let span = num(&s, "span_s");
    assert!(span > 3000.0 && span < 4000.0, "the trace spans about an hour: {s}");
    let mean = num(&s, "mean_rps");
    assert!((mean * span - 8819.0).abs() < 1.0, "mean rate × span = requests: {s}");
    assert!(num(&s, "peak_rps") >= mean, "{s}");
    assert!(num(&s, "context_tokens_p50") <= num(&s, "context_tokens_p99"), "{s}");
    assert!(num(&s, "generated_tokens_p50") <= num(&s, "generated_tokens_p99"), "{s}");

    let human = gigawatt(["sim", "azure", "--trace", &bundled(AZURE_TRACE).display().to_string()]);
    human.ok().stdout_has(&["8819 requests", "arrival rate", "prompt tokens", "generated tokens"]);
}

#[test]
fn help_describes_the_commands_and_the_experiment_flags() {
    gigawatt(["--help"]).ok().stdout_has(&["Usage: gigawatt", "sim", "fleet", "catalog"]);
    gigawatt(["--version"]).ok().stdout_has(&["gigawatt "]);
    gigawatt(["sim", "openb", "--help"]).ok().stdout_has(&[
        "--nodes",
        "--pods",
        "--policy",
        "--seeds",
        "--json",
        "--chart",
        "--skip-invalid",
        "random, dot-product, gpu-packing, gpu-clustering, best-fit, fgd",
        "[default: 42..51]",
    ]);
    gigawatt(["fleet", "--help"]).ok().stdout_has(&["check", "show", "schema"]);
    // No command, or an unknown flag: clap's usage error, exit code 2, no panic.
    for args in [&[] as &[&str], &["sim", "openb", "--bogus"]] {
        let out = gigawatt(args);
        out.no_panic();
        assert_eq!(out.code, Some(2), "{out:?}");
        out.stderr_has(&["Usage:"]);
    }
}

/// The README runs the experiment from the repository root with bundled relative paths;
/// from elsewhere the bundled files are still found (the tests above run from
/// `crates/cli`, a temporary directory and the root).
#[test]
fn bundled_paths_resolve_from_the_repository_root() {
    let root = repo();
    assert!(Path::new(&root).join(DEFAULT_PODS).exists());
    let out = gigawatt_in(&root, ["fleet", "show", "fleets/openb.toml", "--at", "2026-01-01"]);
    out.ok().stdout_has(&["1 sites, 152 racks, 1213 nodes, 6212 GPUs", "alibaba-openb"]);
}
