//! One test per class of problem: each proves the report carries file, line, column,
//! field path, the problem and a fix, and that all problems come out of one pass.

use std::path::Path;

use gigawatt_fleet::{
    Diagnostic, Fleet, GpuCatalog, LoadError, Node, Pue, Rack, Site, load, parse, parse_with_warnings,
};
use gigawatt_units::{Mebibytes, Megawatts, MilliCores, Watts};

/// A valid fleet; tests break one thing at a time. Line numbers matter:
/// 1 `[node_type.hgx]` … 8 `[[site]]`, 12 `pue`, 13 `grid`, 15 `[[site.rack_group]]`.
const BASE: &str = r#"[node_type.hgx]
gpu_model = "H100"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 4600

[[site]]
id = "valence"
country = "FR"
region = "eu-south-fr"
pue = 1.2
grid = [{ from = 2026-01-01, capacity_mw = 8 }]

  [[site.rack_group]]
  prefix = "valence-a"
  count = 4
  node_type = "hgx"
  nodes_per_rack = 8
"#;

fn problems(text: &str) -> Vec<Diagnostic> {
    match parse(text, "t.toml", Path::new(".")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(LoadError::Invalid(d)) => d.0,
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn one(text: &str) -> Diagnostic {
    let mut p = problems(text);
    assert_eq!(p.len(), 1, "{p:#?}");
    p.remove(0)
}

fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

fn at(d: &Diagnostic, line: usize, column: usize, field: &str) {
    assert_eq!((d.file.as_str(), d.line, d.column, d.field.as_str()), ("t.toml", line, column, field), "{d}");
    assert!(!d.problem.is_empty() && !d.fix.is_empty(), "{d}");
}

#[test]
fn base_fixture_is_valid() {
    let f = parse(BASE, "t.toml", Path::new(".")).expect("valid");
    assert_eq!(f.node_count(), 32);
}

#[test]
fn toml_syntax_errors_are_located() {
    let d = one(&edit("pue = 1.2", "pue = "));
    assert_eq!((d.line, d.column, d.field.as_str()), (12, 7, ""), "{d}");
    assert!(d.problem.starts_with("TOML syntax:"), "{d}");
    assert!(!d.fix.is_empty());

    let d = one(&edit("pue = 1.2", "pue = 1.2\npue = 1.3"));
    assert_eq!(d.line, 13, "{d}");
    assert!(d.problem.contains("duplicate key") && d.fix.contains("once per table"), "{d}");

    // One unclosed bracket makes the parser complain on every later line: the first
    // error is shown, the rest counted.
    let p = problems(&edit("capacity_mw = 8 }]", "capacity_mw = 8 }"));
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!(p[0].line, 15, "{}", p[0]);
    assert!(p[0].fix.contains("left unclosed above"), "{}", p[0]);
    assert!(p[1].problem.contains("more TOML syntax error(s) from here on"), "{}", p[1]);

    let d = one(&edit(r#"country = "FR""#, "country = FR"));
    assert_eq!((d.line, d.column), (10, 11), "{d}");
    assert!(d.fix.contains("double quotes"), "{d}");
}

#[test]
fn unknown_keys_are_reported_with_a_suggestion() {
    let p = problems(&edit("count = 4", "cuont = 4"));
    assert_eq!(p.len(), 2, "{p:#?}");
    // The missing key is reported at the table header, the unknown one at itself.
    at(&p[0], 15, 3, "site[0].rack_group[0].count");
    assert!(p[0].problem.contains("missing required key `count`"), "{}", p[0]);
    at(&p[1], 17, 3, "site[0].rack_group[0].cuont");
    assert!(p[1].fix.starts_with("did you mean `count`?"), "{}", p[1]);

    let d = one(&format!("colour = \"blue\"\n{BASE}"));
    at(&d, 1, 1, "colour");
    assert!(d.problem.contains("at the top level") && d.fix.starts_with("remove it"), "{d}");
}

#[test]
fn wrong_types_say_what_was_expected() {
    let d = one(&edit("pue = 1.2", r#"pue = "1.2""#));
    at(&d, 12, 7, "site[0].pue");
    assert_eq!(d.problem, "`pue` must be a number, not a string");
    assert_eq!(d.fix, "write e.g. `pue = 1.2`");

    let d = one(&edit("count = 4", "count = 4.5"));
    at(&d, 17, 11, "site[0].rack_group[0].count");
    assert!(d.problem.contains("whole number"), "{d}");

    let d = one(&edit("count = 4", "count = -4"));
    assert!(d.problem.contains("≥ 0"), "{d}");
}

#[test]
fn missing_required_keys_point_at_their_table() {
    let d = one(&edit("region = \"eu-south-fr\"\n", ""));
    at(&d, 8, 1, "site[0].region");
    assert_eq!(d.problem, "missing required key `region` in site[0]");
    assert_eq!(d.fix, "add `region = \"eu-south-fr\"`");

    let d = one("");
    assert_eq!((d.line, d.column, d.field.as_str()), (1, 1, "site"), "{d}");
}

#[test]
fn unknown_gpu_model_lists_the_known_ones() {
    let d = one(&edit(r#"gpu_model = "H100""#, r#"gpu_model = "H10""#));
    at(&d, 2, 13, "node_type.hgx.gpu_model");
    assert!(d.problem.starts_with("unknown GPU model `H10` (did you mean `H100`?)"), "{d}");
    let known: Vec<String> = GpuCatalog::builtin().ids().map(str::to_owned).collect();
    assert!(d.problem.contains(&format!("known models: {}", known.join(", "))), "{d}");
    assert!(d.problem.contains("A10, A100-SXM, B200"), "{d}");
    assert!(d.fix.contains("[[gpu_model]]"), "{d}");
}

#[test]
fn countries_must_be_iso_codes() {
    let d = one(&edit(r#"country = "FR""#, r#"country = "France""#));
    at(&d, 10, 11, "site[0].country");
    assert_eq!(d.problem, "country `France` is not an ISO 3166-1 alpha-2 code");
    assert_eq!(d.fix, "write `FR`");

    let d = one(&edit(r#"country = "FR""#, r#"country = "fr""#));
    assert_eq!((d.problem.as_str(), d.fix.as_str()), ("country `fr` must be upper case", "write `FR`"));

    let d = one(&edit(r#"country = "FR""#, r#"country = "XX""#));
    assert!(d.fix.contains("two-letter ISO 3166-1"), "{d}");
}

#[test]
fn pue_below_one_is_refused_with_the_documented_message() {
    let d = one(&edit("pue = 1.2", "pue = 0.9"));
    assert_eq!(
        d.to_string(),
        "t.toml:12:7: site[0].pue: pue must be ≥ 1.0 (got 0.9); fix: PUE is facility power / IT power, \
         so at least 1.0; e.g. 1.2 for a new liquid-cooled site, 1.56 is the 2024 industry average"
    );
    let d = one(&edit("pue = 1.2", "pue = 120"));
    assert!(d.problem.contains("at most 3"), "{d}");
}

#[test]
fn grid_phases_must_be_in_date_order() {
    let grid = "grid = [{ from = 2026-01-01, capacity_mw = 8 }]";
    let d = one(&edit(
        grid,
        "grid = [{ from = 2027-06-01, capacity_mw = 40 }, { from = 2026-01-01, capacity_mw = 8 }]",
    ));
    at(&d, 13, 59, "site[0].grid[1].from");
    assert!(d.problem.starts_with("grid phases must be in date order"), "{d}");

    let d = one(&edit(grid, "grid = []"));
    at(&d, 13, 8, "site[0].grid");
    let d = one(&edit(grid, "grid = [{ from = 2026-02-30, capacity_mw = 8 }]"));
    assert!(d.problem.contains("TOML syntax"), "an invalid date is a TOML error: {d}");
    let d = one(&edit(grid, r#"grid = [{ from = "2026-02-30", capacity_mw = 8 }]"#));
    at(&d, 13, 18, "site[0].grid[0].from");
    let d = one(&edit(grid, "grid = [{ from = 2026-01-01, capacity_mw = 8000000 }]"));
    assert!(d.fix.contains("megawatts"), "{d}");
}

#[test]
fn duplicate_rack_names_are_reported_once_per_group() {
    let text = format!(
        "{BASE}\n  [[site.rack_group]]\n  prefix = \"valence-a\"\n  first = 3\n  count = 4\n  node_type = \"hgx\"\n  nodes_per_rack = 8\n"
    );
    let d = one(&text);
    at(&d, 22, 12, "site[0].rack_group[1].prefix");
    assert_eq!(d.problem, "rack id `valence-a03` (and 1 more) already made by site[0].rack_group[0]");
    // Continuing the numbering instead is fine.
    let ok = text.replace("first = 3", "first = 5");
    let fleet = parse(&ok, "t.toml", Path::new(".")).expect("valid");
    assert_eq!(fleet.sites[0].racks.last().map(|r| r.id.as_str()), Some("valence-a08"));

    let two_sites = format!(
        "{BASE}\n[[site]]\nid = \"valence\"\ncountry = \"FR\"\nregion = \"r\"\npue = 1.2\ngrid = [{{ from = 2026-01-01, capacity_mw = 8 }}]\n"
    );
    let d = one(&two_sites);
    at(&d, 22, 6, "site[1].id");
    assert!(d.problem.contains("already used by site[0]"), "{d}");
}

#[test]
fn racks_that_cannot_fit_are_errors_and_oversubscribed_ones_warnings() {
    // 30 × (4.6 kW + 8 × 200 W minimum) = 186 kW > 150 kW even fully capped.
    let d = one(&edit("nodes_per_rack = 8", "nodes_per_rack = 30"));
    at(&d, 15, 3, "site[0].rack_group[0].power_limit_kw");
    assert_eq!(
        d.problem,
        "rack `valence-a01` needs 186.0 kW even with every GPU at its minimum power limit, but its limit is 150.0 kW"
    );
    assert_eq!(d.fix, "put at most 24 such nodes in a rack, or raise power_limit_kw to at least 186.0");

    // 16 × 10.2 kW = 163.2 kW at full load: legal, capped, warned.
    let loaded =
        parse_with_warnings(&edit("nodes_per_rack = 8", "nodes_per_rack = 16"), "t.toml", Path::new("."))
            .expect("an oversubscribed rack is allowed");
    let w = &loaded.warnings.0;
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].field, "site[0].rack_group[0].power_limit_kw");
    assert!(w[0].problem.contains("needs 163.2 kW at full load but its limit is 150.0 kW"), "{}", w[0]);

    let d = one(&edit("nodes_per_rack = 8", "nodes_per_rack = 8\n  power_limit_kw = 0"));
    at(&d, 20, 20, "site[0].rack_group[0].power_limit_kw");
}

#[test]
fn unknown_node_type_suggests_the_closest() {
    let d = one(&edit(r#"node_type = "hgx""#, r#"node_type = "hgz""#));
    at(&d, 18, 15, "site[0].rack_group[0].node_type");
    assert_eq!(d.problem, "unknown node type `hgz`");
    assert_eq!(d.fix, "did you mean `hgx`? node types: hgx");
}

#[test]
fn network_domain_patterns_are_checked() {
    let d = one(&edit("nodes_per_rack = 8", "nodes_per_rack = 8\n  network_domain = \"ib-{x}\""));
    at(&d, 20, 20, "site[0].rack_group[0].network_domain");
    assert!(d.problem.contains("unknown placeholder `{x}`"), "{d}");
    let d = one(&edit("nodes_per_rack = 8", "nodes_per_rack = 8\n  network_domain = \"ib-{n}\""));
    assert!(d.fix.contains("racks_per_domain"), "{d}");
    let ok = edit(
        "nodes_per_rack = 8",
        "nodes_per_rack = 8\n  network_domain = \"{site}-ib{n}\"\n  racks_per_domain = 3",
    );
    let f = parse(&ok, "t.toml", Path::new(".")).expect("valid");
    let domains: Vec<&str> = f.sites[0].racks.iter().map(|r| r.network_domain.as_str()).collect();
    assert_eq!(domains, ["valence-ib01", "valence-ib01", "valence-ib01", "valence-ib02"]);
}

#[test]
fn declared_gpu_models_are_checked() {
    let decl = "[[gpu_model]]\nid = \"H100\"\nvendor = \"x\"\ntdp_w = 300\nidle_w = 30\nmin_power_limit_w = 400\nmemory_gb = 16\nsource = \"s\"\n\n";
    let p = problems(&format!("{decl}{BASE}"));
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!((p[0].line, p[0].field.as_str()), (2, "gpu_model[0].id"));
    assert!(p[0].problem.contains("already taken by built-in model `H100-SXM`"), "{}", p[0]);
    assert_eq!((p[1].line, p[1].field.as_str()), (6, "gpu_model[0].min_power_limit_w"));

    let good = decl.replace("\"H100\"", "\"G2\"").replace("400", "150");
    let with_g2 = format!("{good}{BASE}").replacen("gpu_model = \"H100\"", "gpu_model = \"g2\"", 1);
    let f = parse(&with_g2, "t.toml", Path::new(".")).expect("valid");
    assert_eq!(f.sites[0].racks[0].nodes[0].gpu_model.as_deref(), Some("G2"));
}

fn fleet_with_import(dir: &Path, csv: &str) -> String {
    std::fs::write(dir.join("nodes.csv"), csv).expect("write csv");
    format!(
        "{}\n  [site.import]\n  openb_nodes = \"nodes.csv\"\n  base_power_w = 1100\n",
        BASE.split("\n  [[site.rack_group]]").next().unwrap_or(BASE)
    )
}

#[test]
fn imported_node_lists_report_problems_in_the_csv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = fleet_with_import(
        dir.path(),
        "sn,cpu_milli,memory_mib,gpu,model\nn0,8000,61440,2,P100\nn1,8000,61440,8,G2\n",
    );
    let p = match parse(&text, "fleets/t.toml", dir.path()) {
        Err(LoadError::Invalid(d)) => d.0,
        other => panic!("{other:?}"),
    };
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!((p[0].file.as_str(), p[0].line, p[0].column), ("fleets/nodes.csv", 3, 17));
    assert!(p[0].problem.starts_with("unknown GPU model `G2`"), "{}", p[0]);
    assert!(p[0].fix.contains("[[gpu_model]]"), "{}", p[0]);

    let text = fleet_with_import(dir.path(), "sn,cpu_milli,memory_mib,gpu,model\nn0,8000,61440,2,P100\n");
    let f = parse(&text, "fleets/t.toml", dir.path()).expect("valid");
    assert_eq!(f.sites[0].racks[0].id, "valence-r01");
    assert_eq!(f.sites[0].racks[0].nodes[0].base_power, Watts(1100));

    let missing = text.replace("nodes.csv", "nope.csv");
    let p = match parse(&missing, "t.toml", dir.path()) {
        Err(LoadError::Invalid(d)) => d.0,
        other => panic!("{other:?}"),
    };
    at(&p[0], 16, 17, "site[0].import.openb_nodes");
    assert!(p[0].problem.starts_with("cannot read `nope.csv`"), "{}", p[0]);
}

#[test]
fn all_problems_come_out_of_one_pass_in_file_order() {
    let text = BASE
        .replace(r#"gpu_model = "H100""#, r#"gpu_model = "H10""#)
        .replace(r#"country = "FR""#, r#"country = "France""#)
        .replace("pue = 1.2", "pue = 0.9")
        .replace("count = 4", "count = 4\n  colour = 1")
        .replace(
            "2026-01-01, capacity_mw = 8 }]",
            "2026-01-01, capacity_mw = 8 }, { from = 2025-01-01, capacity_mw = 4 }]",
        );
    let p = problems(&text);
    let lines: Vec<(usize, &str)> = p.iter().map(|d| (d.line, d.field.as_str())).collect();
    assert_eq!(
        lines,
        [
            (2, "node_type.hgx.gpu_model"),
            (10, "site[0].country"),
            (12, "site[0].pue"),
            (13, "site[0].grid[1].from"),
            (18, "site[0].rack_group[0].colour"),
        ]
    );
    let shown = LoadError::Invalid(gigawatt_fleet::Diagnostics(p)).to_string();
    assert!(shown.ends_with("\n5 problems"), "{shown}");
    assert_eq!(shown.lines().count(), 6);
}

#[test]
fn absurd_sizes_are_refused_before_anything_is_allocated() {
    let d = one(&edit("count = 4", "count = 100000").replace("nodes_per_rack = 8", "nodes_per_rack = 256"));
    assert!(d.problem.contains("the limit is 1000000"), "{d}");
    let d = one(&edit("count = 4", "count = 99999999999"));
    assert!(d.problem.contains("count must be between 1 and 100000"), "{d}");
}

#[test]
fn load_reports_unreadable_and_non_utf8_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml");
    assert!(matches!(load(&missing), Err(LoadError::Io { .. })));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, b"a = 1\nb = \"\xff\"\n").expect("write");
    let e = load(&bad).expect_err("not UTF-8");
    let d = &e.diagnostics().expect("diagnostics").0[0];
    assert_eq!((d.line, d.column), (2, 6));
    assert!(d.problem.contains("UTF-8"));
}

#[test]
fn fleets_built_in_code_get_the_same_checks() {
    let node = |name: &str, model: &str| Node {
        name: name.into(),
        gpu_model: Some(model.into()),
        gpu_count: 2,
        cpu: MilliCores(8000),
        memory: Mebibytes(61440),
        base_power: Watts(500),
    };
    let site = |nodes: Vec<Node>| Site {
        id: "s".into(),
        name: "s".into(),
        country: gigawatt_fleet::Country("FR".into()),
        region: "r".into(),
        certifications: Default::default(),
        jurisdiction: "EU".into(),
        grid: vec![gigawatt_fleet::GridPhase {
            from: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
            capacity: Megawatts(1.0),
        }],
        pue: Pue(1.2),
        provisioning: Default::default(),
        curtailable_to: Megawatts(0.0),
        carbon: None,
        racks: vec![Rack { id: "r1".into(), power_limit: Watts(150_000), network_domain: "d".into(), nodes }],
    };
    // Aliases are rewritten to canonical ids.
    let f = Fleet::new(GpuCatalog::builtin(), vec![site(vec![node("a", "V100M16")])]).expect("valid");
    assert_eq!(f.sites[0].racks[0].nodes[0].gpu_model.as_deref(), Some("V100-SXM2-16GB"));

    let e = Fleet::new(GpuCatalog::builtin(), vec![site(vec![node("a", "P100"), node("a", "G9")])])
        .expect_err("invalid");
    let shown: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(
        shown[0].starts_with(
            "fleet (built in code): sites[0].racks[0].nodes[1].gpu_model: unknown GPU model `G9`"
        ),
        "{shown:#?}"
    );
    assert!(shown[1].contains("node name `a` is already used by sites[0].racks[0].nodes[0]"), "{shown:#?}");

    let e = Fleet::new(GpuCatalog::builtin(), vec![]).expect_err("no site");
    assert_eq!(e.0[0].problem, "a fleet needs at least one site");
}

#[test]
fn provisioning_modes_are_read_and_checked() {
    let over = edit(
        "pue = 1.2\n",
        "pue = 1.2\nprovisioning = \"oversubscribed\"\noversubscription = 0.3\ncurtailable_to_mw = 2\n",
    );
    let f = parse(&over, "t.toml", Path::new(".")).expect("valid");
    assert_eq!(f.sites[0].provisioning, gigawatt_fleet::Provisioning::Oversubscribed { ratio: 0.3 });
    assert_eq!(f.sites[0].curtailable_to, Megawatts(2.0));
    let base = parse(BASE, "t.toml", Path::new(".")).expect("valid");
    assert_eq!(base.sites[0].provisioning, gigawatt_fleet::Provisioning::Reserved);

    let d = one(&edit("pue = 1.2\n", "pue = 1.2\nprovisioning = \"oversubscribed\"\n"));
    at(&d, 13, 16, "site[0].oversubscription");
    assert!(d.fix.contains("oversubscription = 0.3"), "{d}");

    let d = one(&edit("pue = 1.2\n", "pue = 1.2\noversubscription = 0.3\n"));
    at(&d, 13, 20, "site[0].oversubscription");
    assert!(d.problem.contains("provisioned `reserved`"), "{d}");

    let d =
        one(&edit("pue = 1.2\n", "pue = 1.2\nprovisioning = \"oversubscribed\"\noversubscription = 1.5\n"));
    at(&d, 14, 20, "site[0].oversubscription");
    assert!(d.problem.contains("at most 1 (got 1.5)"), "{d}");

    let d = one(&edit("pue = 1.2\n", "pue = 1.2\nprovisioning = \"oversubscribe\"\n"));
    at(&d, 13, 16, "site[0].provisioning");
    assert_eq!(d.fix, "write `oversubscribed`");

    let d = one(&edit("pue = 1.2\n", "pue = 1.2\ncurtailable_to_mw = 9\n"));
    at(&d, 13, 21, "site[0].curtailable_to_mw");
    assert!(d.problem.contains("above the largest grid phase (8 MW)"), "{d}");
}

#[test]
fn a_carbon_series_is_read_and_a_malformed_one_is_reported_where_it_is_wrong() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("good.csv"),
        "timestamp,gco2_per_kwh\n2024-01-15T00:00:00Z,20\n2024-01-15T01:00:00Z,30\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("bad.csv"),
        "timestamp,gco2_per_kwh\n2024-01-15T00:00:00Z,20\n2024-01-15T01:00:00Z,-3\n",
    )
    .expect("write");
    let with = |file: &str| edit("pue = 1.2\n", &format!("pue = 1.2\ncarbon_intensity = \"{file}\"\n"));
    let f = parse(&with("good.csv"), "t.toml", dir.path()).expect("valid");
    let carbon = f.sites[0].carbon.as_ref().expect("a series");
    assert_eq!(carbon.file, "good.csv");
    assert_eq!(carbon.series.points().len(), 2);

    let err = match parse(&with("bad.csv"), "t.toml", dir.path()) {
        Err(LoadError::Invalid(d)) => d.0,
        other => panic!("accepted or failed otherwise: {other:?}"),
    };
    assert_eq!(err.len(), 1, "{err:#?}");
    assert!(err[0].file.ends_with("bad.csv") && err[0].line == 3, "{}", err[0]);
    assert!(err[0].problem.contains("-3"), "{}", err[0]);

    let d = match parse(&with("missing.csv"), "t.toml", dir.path()) {
        Err(LoadError::Invalid(d)) => d.0,
        other => panic!("{other:?}"),
    };
    assert_eq!(d.len(), 1, "{d:#?}");
    at(&d[0], 13, 20, "site[0].carbon_intensity");
    assert!(d[0].problem.contains("missing.csv"), "{}", d[0]);
}
