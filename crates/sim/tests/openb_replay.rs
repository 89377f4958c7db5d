//! The FGD experiment on the bundled Alibaba openb trace, through the public API.
//!
//! The headline check of the project: replaying `openb_pod_list_default.csv` on
//! `fleets/openb.toml`, the six policies must come out in the paper's order and each
//! within a point of the published mean (Weng et al., USENIX ATC'23). Three seeds are
//! enough for that: over seeds 42..=44 the closest pair of policies we compare is 0.78
//! points apart and the largest distance to the paper is 0.42 points, and each
//! experiment takes about a second in a test build. The matrix is computed once and
//! shared by the tests that read it.
//!
//! The readers are also fed arbitrary text (proptest): they must answer with pods or
//! with located problems, never panic.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gigawatt_core::PolicyKind;
use gigawatt_fleet::Fleet;
use gigawatt_sim::fgd::{self, Params, RunResult, WorkloadFile};
use gigawatt_sim::openb::{OpenbPod, load_pods, parse_pods};
use gigawatt_sim::{TraceError, azure, reference};
use proptest::prelude::*;

/// The workload file stem the published numbers are keyed by.
const WORKLOAD: &str = "openb_pod_list_default";
/// Seeds of the shared matrix.
const SEEDS: [u64; 3] = [42, 43, 44];
/// Worker threads of the shared matrix (the test machine has two cores).
const THREADS: usize = 2;
/// How far from the published mean each policy may land, in allocation points.
const TOLERANCE: f64 = 1.0;
/// The bucket the paper reports.
const HEADLINE_BUCKET: u32 = 130;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Bundled {
    fleet: Fleet,
    pods: Vec<OpenbPod>,
}

/// `fleets/openb.toml` and the default pod list, loaded once.
fn bundled() -> &'static Bundled {
    static BUNDLED: OnceLock<Bundled> = OnceLock::new();
    BUNDLED.get_or_init(|| {
        let fleet_path = repo().join("fleets/openb.toml");
        let fleet = gigawatt_fleet::load(&fleet_path)
            .unwrap_or_else(|e| panic!("{} does not load:\n{e}", fleet_path.display()));
        let pods_path = repo().join(format!("traces/openb/{WORKLOAD}.csv"));
        let list = load_pods(&pods_path, false)
            .unwrap_or_else(|e| panic!("{} does not load:\n{e}", pods_path.display()));
        assert!(list.skipped.is_empty(), "nothing is skipped without --skip-invalid");
        Bundled { fleet, pods: list.pods }
    })
}

fn workload(b: &Bundled) -> WorkloadFile<'_> {
    WorkloadFile { name: WORKLOAD.to_string(), pods: &b.pods }
}

/// Six policies × [`SEEDS`] on the default trace, computed once.
fn matrix() -> &'static [RunResult] {
    static MATRIX: OnceLock<Vec<RunResult>> = OnceLock::new();
    MATRIX.get_or_init(|| {
        let b = bundled();
        fgd::run_matrix(
            &b.fleet,
            &[workload(b)],
            &PolicyKind::ALL,
            &SEEDS,
            Params::default(),
            THREADS,
            &|_| {},
        )
        .unwrap_or_else(|e| panic!("the experiment failed: {e}"))
    })
}

/// The mean allocation % at the 130% bucket of one policy, from the summary.
fn headline(summary: &[fgd::SummaryRow], policy: PolicyKind) -> f64 {
    let rows: Vec<&fgd::SummaryRow> =
        summary.iter().filter(|r| r.policy == policy.as_str() && r.arrived_pct == HEADLINE_BUCKET).collect();
    assert_eq!(rows.len(), 1, "one {HEADLINE_BUCKET}% row for {policy}: {rows:#?}");
    rows[0].alloc_pct_mean
}

#[test]
fn bundled_inputs_are_the_published_cluster_and_workload() {
    let b = bundled();
    assert_eq!(b.fleet.node_count(), 1213, "openb_node_list_gpu_node.csv has 1,213 nodes");
    assert_eq!(b.fleet.gpu_count(), 6212, "and 6,212 GPUs");
    assert_eq!(b.pods.len(), 8152, "openb_pod_list_default.csv has 8,152 pods");
}

#[test]
fn policies_rank_as_in_the_paper_and_land_within_a_point_of_it() {
    let summary = fgd::summarize(matrix());
    let mean = |p| headline(&summary, p);
    let published =
        |p| reference::published(WORKLOAD, p).unwrap_or_else(|| panic!("no published number for {p}"));

    let table: String = PolicyKind::ALL
        .iter()
        .map(|&p| format!("  {:<16} {:>7.3}  paper {:>6.2}\n", p.as_str(), mean(p), published(p)))
        .collect();
    let context = format!("allocation % at {HEADLINE_BUCKET}%, mean over seeds {SEEDS:?}:\n{table}");

    // The paper's order. Packing and clustering are 0.12 apart in the paper, within
    // seed noise, so only their place relative to the others is checked.
    use PolicyKind::{BestFit, DotProduct, Fgd, GpuClustering, GpuPacking, Random};
    assert!(mean(Fgd) > mean(BestFit), "fgd must beat best-fit\n{context}");
    for middle in [GpuPacking, GpuClustering] {
        assert!(mean(BestFit) > mean(middle), "best-fit must beat {middle}\n{context}");
        assert!(mean(middle) > mean(DotProduct), "{middle} must beat dot-product\n{context}");
    }
    assert!(mean(DotProduct) > mean(Random), "dot-product must beat random\n{context}");

    let off: Vec<String> = PolicyKind::ALL
        .iter()
        .filter(|&&p| (mean(p) - published(p)).abs() > TOLERANCE)
        .map(|&p| format!("{p}: {:.3} vs paper {:.2}", mean(p), published(p)))
        .collect();
    assert!(off.is_empty(), "more than {TOLERANCE} point from the paper: {off:?}\n{context}");
}

#[test]
fn summary_rows_carry_the_seed_count_and_the_published_number() {
    let summary = fgd::summarize(matrix());
    for p in PolicyKind::ALL {
        let rows: Vec<&fgd::SummaryRow> = summary.iter().filter(|r| r.policy == p.as_str()).collect();
        let buckets: Vec<u32> = rows.iter().map(|r| r.arrived_pct).collect();
        let expected: Vec<u32> = (0..=HEADLINE_BUCKET).collect();
        assert_eq!(buckets, expected, "{p}: one row per integer bucket 0..=130, in order");
        for r in &rows {
            assert_eq!(r.workload, WORKLOAD);
            assert_eq!(r.seeds, SEEDS.len(), "{p} bucket {}: every seed reaches every bucket", r.arrived_pct);
            assert!(r.alloc_pct_std >= 0.0 && r.alloc_pct_std.is_finite(), "{r:?}");
            assert!((0.0..=100.0).contains(&r.alloc_pct_mean), "{r:?}");
            assert!((0.0..=100.0).contains(&r.frag_ratio_pct_mean), "{r:?}");
            // Nothing leaves, so at most what arrived is allocated (±1 for the bucket width).
            assert!(r.alloc_pct_mean <= f64::from(r.arrived_pct) + 1.0, "{r:?}");
            let published =
                if r.arrived_pct == HEADLINE_BUCKET { reference::published(WORKLOAD, p) } else { None };
            assert_eq!(r.published_alloc_pct, published, "{r:?}");
        }
    }
}

#[test]
fn every_run_inflates_to_130_percent_and_never_overallocates() {
    let runs = matrix();
    assert_eq!(runs.len(), PolicyKind::ALL.len() * SEEDS.len());
    let n_pods = bundled().pods.len();
    for r in runs {
        assert_eq!(r.workload, WORKLOAD);
        assert!(r.pods > n_pods, "{} {}: clones are appended to the {n_pods} originals", r.policy, r.seed);
        assert!(r.failed < r.pods, "{} {}: {} of {} pods failed", r.policy, r.seed, r.failed, r.pods);
        assert!(
            (129.0..=131.0).contains(&r.arrived_pct_final),
            "{} {}: arrived {}% at the end, expected ~130%",
            r.policy,
            r.seed,
            r.arrived_pct_final
        );
        assert!(
            r.alloc_pct_final <= 100.0 && r.alloc_pct_final <= r.arrived_pct_final,
            "{} {}: allocated {}% of capacity with {}% arrived",
            r.policy,
            r.seed,
            r.alloc_pct_final,
            r.arrived_pct_final
        );
    }
}

#[test]
fn the_matrix_comes_back_in_workload_policy_seed_order() {
    let got: Vec<(String, u64)> = matrix().iter().map(|r| (r.policy.clone(), r.seed)).collect();
    let want: Vec<(String, u64)> = PolicyKind::ALL
        .iter()
        .flat_map(|p| SEEDS.iter().map(move |&s| (p.as_str().to_string(), s)))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_seed_reproduces_its_run_exactly_and_another_seed_differs() {
    let b = bundled();
    let direct = fgd::run(&b.fleet, &workload(b), PolicyKind::Fgd, 42, Params::default())
        .unwrap_or_else(|e| panic!("fgd seed 42 failed: {e}"));
    // The matrix ran the same function on a worker thread, alongside other runs.
    let find = |seed| {
        matrix()
            .iter()
            .find(|r| r.policy == "fgd" && r.seed == seed)
            .unwrap_or_else(|| panic!("no fgd/{seed}"))
    };
    assert_eq!(&direct, find(42), "fgd::run with seed 42 must give the same result every time");
    assert_ne!(
        find(42).buckets,
        find(43).buckets,
        "seeds 42 and 43 give identical buckets: the seed is not used"
    );
}

// ----- The trace readers never panic ---------------------------------------------------

const POD_HEADER: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time";
const AZURE_HEADER: &str = "TIMESTAMP,ContextTokens,GeneratedTokens";

/// Field values that have broken CSV readers before: signs, overflow, blanks, quotes,
/// separators, non-ASCII and non-numbers.
fn nasty_field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("1000".to_string()),
        Just("1001".to_string()),
        Just("1025".to_string()),
        Just("9223372036854775807".to_string()),
        Just("9223372036854775808".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e3".to_string()),
        Just("NaN".to_string()),
        Just(" 12 ".to_string()),
        Just("\"quoted, with comma\"".to_string()),
        Just("\"unclosed".to_string()),
        Just("V100M16|T4".to_string()),
        Just("|||".to_string()),
        Just("Drôme🚀".to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z0-9|. -]{0,12}",
    ]
}

/// A line of `n`-ish fields (sometimes more, sometimes fewer: the readers are flexible).
fn nasty_row() -> impl Strategy<Value = String> {
    prop::collection::vec(nasty_field(), 0..14).prop_map(|f| f.join(","))
}

/// A timestamp in the trace's format, sometimes out of range or malformed.
fn azure_time() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..10_000, 0u32..14, 0u32..33, 0u32..25, 0u32..61, 0u32..61, 0u32..10_000_000).prop_map(
            |(y, mo, d, h, mi, s, f)| format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{f:07}")
        ),
        Just("2023-11-16 18:17:03".to_string()),
        Just("2023-11-16T18:17:03.9799600".to_string()),
        nasty_field(),
    ]
}

fn azure_row() -> impl Strategy<Value = String> {
    prop_oneof![
        (azure_time(), nasty_field(), nasty_field()).prop_map(|(t, c, g)| format!("{t},{c},{g}")),
        (azure_time(), any::<u32>(), any::<u32>()).prop_map(|(t, c, g)| format!("{t},{c},{g}")),
        nasty_row(),
    ]
}

/// `skip_invalid` only decides whether row problems fail the read: a read that succeeds
/// strictly succeeds leniently with the same pods and nothing skipped, and a strict
/// failure is either a header problem (which skipping cannot help) or exactly the
/// problems the lenient read skipped.
fn check_pod_reader(text: &str) {
    let strict = parse_pods(text, "p.csv", false);
    let lenient = parse_pods(text, "p.csv", true);
    match (&strict, &lenient) {
        (Ok(s), Ok(l)) => {
            assert!(s.skipped.is_empty(), "strict read skipped rows: {:?}", s.skipped);
            assert_eq!(s.pods, l.pods);
            assert!(l.skipped.is_empty());
        }
        (Err(TraceError::Invalid(d)), Ok(l)) => {
            assert_eq!(d.0, l.skipped, "the strict problems are the skipped ones");
            for p in &d.0 {
                assert_eq!(p.file, "p.csv");
                assert!(p.line >= 2, "a row problem is on a data line: {p}");
                assert!(!p.fix.is_empty(), "every problem says how to fix it: {p}");
            }
        }
        (Err(TraceError::Invalid(s)), Err(TraceError::Invalid(l))) => {
            assert_eq!(s, l);
            assert!(
                s.iter().all(|p| p.line == 1 && !p.fix.is_empty()),
                "only header problems fail both: {s}"
            );
        }
        other => panic!("inconsistent strict/lenient results: {other:?}"),
    }
    if let Ok(l) = lenient {
        for p in &l.pods {
            assert!(!p.name.is_empty());
            assert!(p.gpu.milli_per_gpu.0 <= 1000, "gpu_milli is clamped to one GPU: {p:?}");
        }
    }
}

fn check_azure_reader(text: &str) {
    let strict = azure::parse_requests(text, "a.csv", false);
    let lenient = azure::parse_requests(text, "a.csv", true);
    if let (Ok((s, skipped)), Ok((l, _))) = (&strict, &lenient) {
        assert!(skipped.is_empty());
        assert_eq!(s, l);
    }
    if let Ok((requests, _)) = lenient {
        assert!(requests.windows(2).all(|w| w[0].at.0 <= w[1].at.0), "arrivals are sorted");
        assert!(requests.first().is_none_or(|r| r.at.0 == 0.0), "times are relative to the first");
        let stats = azure::stats(&requests);
        assert_eq!(stats.requests, requests.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pod_reader_survives_arbitrary_text(text in any::<String>()) {
        check_pod_reader(&text);
        check_pod_reader(&format!("{POD_HEADER}\n{text}"));
    }

    #[test]
    fn pod_reader_survives_csv_like_garbage(text in "[a-z0-9_,|\"\\-\\r\\n ]{0,300}") {
        check_pod_reader(&text);
    }

    #[test]
    fn pod_reader_survives_nasty_rows(rows in prop::collection::vec(nasty_row(), 0..20), short in any::<bool>()) {
        let header = if short { "name,cpu_milli,memory_mib,num_gpu,gpu_milli" } else { POD_HEADER };
        check_pod_reader(&format!("{header}\n{}\n", rows.join("\n")));
    }

    #[test]
    fn azure_reader_survives_arbitrary_text(text in any::<String>()) {
        check_azure_reader(&text);
        check_azure_reader(&format!("{AZURE_HEADER}\n{text}"));
    }

    #[test]
    fn azure_reader_survives_nasty_rows(rows in prop::collection::vec(azure_row(), 0..20)) {
        check_azure_reader(&format!("{AZURE_HEADER}\n{}\n", rows.join("\n")));
    }
}

/// chrono reads years up to ±262,143 when they carry a sign, and two such timestamps are
/// further apart in microseconds than an `i64` holds: the reader must report or accept
/// them, not overflow.
#[test]
fn azure_reader_survives_timestamps_at_the_ends_of_the_calendar() {
    let text = format!("{AZURE_HEADER}\n+262000-01-01 00:00:00.0,1,1\n-262000-01-01 00:00:00.0,1,1\n");
    let outcome = std::panic::catch_unwind(|| {
        let _ = azure::parse_requests(&text, "a.csv", false);
        let _ = azure::parse_requests(&text, "a.csv", true);
    });
    assert!(outcome.is_ok(), "parse_requests panicked on timestamps 524,000 years apart:\n{text}");
}

#[test]
fn bad_pod_rows_are_located_and_all_reported() {
    // Line 3: a malformed number; line 5: a negative one.
    let text = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n\
                p0,1000,1024,1,500\n\
                p1,12x00,1024,1,500\n\
                p2,1000,1024,1,500\n\
                p3,1000,-5,1,500\n\
                p4,1000,1024,1,500\n";
    let Err(TraceError::Invalid(d)) = parse_pods(text, "pods.csv", false) else {
        panic!("bad rows were accepted")
    };
    let shown: Vec<String> = d.iter().map(ToString::to_string).collect();
    assert_eq!(d.len(), 2, "{shown:#?}");
    assert!(
        shown[0].starts_with("pods.csv:3: cpu_milli: `12x00`") && shown[0].contains("fix:"),
        "{shown:#?}"
    );
    assert!(shown[1].starts_with("pods.csv:5: memory_mib: `-5`") && shown[1].contains("fix:"), "{shown:#?}");
    let lenient = parse_pods(text, "pods.csv", true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lenient.pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["p0", "p2", "p4"]);
    assert_eq!(lenient.skipped, d.0);
}

/// Problems must point at the line an editor shows. A blank line, or a quoted field with
/// a line break, makes the CSV record number differ from the line number.
#[test]
fn pod_problems_point_at_the_physical_line_after_blank_lines_and_line_breaks() {
    let text = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n\
                p0,1000,1024,1,500\n\
                \n\
                p1,12x00,1024,1,500\n\
                \"p2\nsecond line\",1000,1024,1,500\n\
                p3,1000,-5,1,500\n";
    let Err(TraceError::Invalid(d)) = parse_pods(text, "pods.csv", false) else {
        panic!("bad rows were accepted")
    };
    let at: Vec<(usize, &str)> = d.iter().map(|p| (p.line, p.field.as_str())).collect();
    assert_eq!(at, [(4, "cpu_milli"), (7, "memory_mib")], "numbered lines:\n{}\n{d}", numbered(text));
}

#[test]
fn azure_problems_point_at_the_physical_line_after_blank_lines() {
    let text =
        format!("{AZURE_HEADER}\n2023-11-16 18:17:03.9799600,1,1\n\n\n2023-11-16 18:17:04.0319600,x,8\n");
    let Err(TraceError::Invalid(d)) = azure::parse_requests(&text, "a.csv", false) else {
        panic!("a bad row was accepted")
    };
    let at: Vec<(usize, &str)> = d.iter().map(|p| (p.line, p.field.as_str())).collect();
    assert_eq!(at, [(5, "ContextTokens")], "numbered lines:\n{}\n{d}", numbered(&text));
}

fn numbered(text: &str) -> String {
    text.lines().enumerate().map(|(i, l)| format!("{:>3} | {l}\n", i + 1)).collect()
}
