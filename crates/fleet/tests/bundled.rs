//! The fleets shipped in `fleets/` load with no problem and have the advertised shape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use gigawatt_fleet::{Certification, Fleet, Loaded, load_with_warnings, parse};
use gigawatt_units::{Timestamp, Watts};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

fn load(rel: &str) -> Loaded {
    match load_with_warnings(&repo(rel)) {
        Ok(l) => l,
        Err(e) => panic!("{rel} does not load:\n{e}"),
    }
}

fn day(y: i32, m: u32, d: u32) -> Timestamp {
    let ts = NaiveDate::from_ymd_opt(y, m, d)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |d| d.and_utc().timestamp_millis());
    Timestamp(ts)
}

#[test]
fn france_loads_without_problems_or_warnings() {
    let loaded = load("fleets/france.toml");
    assert!(loaded.warnings.is_empty(), "{}", loaded.warnings);
    let f = &loaded.fleet;
    let ids: Vec<&str> = f.sites.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["valence", "paris-nord", "paris-sud", "ashburn", "inzai"]);
    assert_eq!(f.node_count(), 6_784);
    assert_eq!(f.gpu_count(), 47_360);

    let per_site: Vec<(usize, usize, u64)> = f
        .sites
        .iter()
        .map(|s| {
            let nodes = s.racks.iter().map(|r| r.nodes.len()).sum();
            (s.racks.len(), nodes, s.racks.iter().map(|r| r.gpu_count()).sum())
        })
        .collect();
    assert_eq!(
        per_site,
        [(400, 3_200, 25_600), (192, 2_112, 9_984), (96, 384, 3_072), (176, 704, 5_632), (96, 384, 3_072)]
    );
}

#[test]
fn france_sovereignty_attributes() {
    let f = load("fleets/france.toml").fleet;
    let valence = f.site("valence").expect("valence");
    assert!(valence.country.is_eu_eea());
    assert!(valence.has(Certification::Hds) && valence.has(Certification::Secnumcloud));
    let sud = f.site("paris-sud").expect("paris-sud");
    assert!(sud.has(Certification::Hds) && !sud.has(Certification::Secnumcloud));
    for id in ["ashburn", "inzai"] {
        let s = f.site(id).expect(id);
        assert!(!s.country.is_eu_eea());
        assert_eq!(s.certifications.iter().copied().collect::<Vec<_>>(), [Certification::Soc2]);
    }
}

#[test]
fn valence_it_budget_follows_the_grid_phases() {
    let f = load("fleets/france.toml").fleet;
    let v = f.site("valence").expect("valence");
    assert!((v.pue.0 - 1.2).abs() < 1e-12);
    // Before the first phase the site has no grid connection.
    assert_eq!(v.it_budget_at(day(2025, 12, 31)), Watts::ZERO);
    // 8 MW / 1.2, 40 MW / 1.2, 80 MW / 1.2, rounded down to whole watts.
    assert_eq!(v.it_budget_at(day(2026, 1, 1)), Watts(6_666_666));
    assert_eq!(v.it_budget_at(day(2027, 5, 31)), Watts(6_666_666));
    assert_eq!(v.it_budget_at(day(2027, 6, 1)), Watts(33_333_333));
    assert_eq!(v.it_budget_at(day(2028, 6, 1)), Watts(66_666_666));
    assert_eq!(v.it_budget_at(day(2040, 1, 1)), Watts(66_666_666));

    // Sized to the 40 MW phase: full load fits its IT budget but not the 8 MW one.
    let full: Watts = v.racks.iter().map(|r| r.full_load_power(&f.catalog)).sum();
    assert_eq!(full, Watts(32_640_000));
    assert!(full <= v.it_budget_at(day(2027, 6, 1)));
    assert!(full > v.it_budget_at(day(2026, 1, 1)));

    // Fleet-wide: Inzai only connects on 2026-07-01.
    let jan = f.it_budget_at(day(2026, 1, 2));
    let aug = f.it_budget_at(day(2026, 8, 1));
    assert_eq!(aug - jan, f.site("inzai").expect("inzai").it_budget_at(day(2026, 8, 1)));
}

#[test]
fn france_racks_are_named_and_wired_deterministically() {
    let f = load("fleets/france.toml").fleet;
    let v = f.site("valence").expect("valence");
    let first = &v.racks[0];
    assert_eq!(first.id, "valence-a001");
    assert_eq!(first.network_domain, "valence-a-ib01");
    assert_eq!(first.power_limit, Watts(150_000));
    assert_eq!(first.nodes[0].name, "valence-a001-n01");
    assert_eq!(first.nodes[0].gpu_model.as_deref(), Some("H100-SXM"));
    assert_eq!(first.full_load_power(&f.catalog), Watts(81_600));
    assert_eq!(v.racks[7].network_domain, "valence-a-ib01");
    assert_eq!(v.racks[8].network_domain, "valence-a-ib02");
    assert_eq!(v.racks[199].id, "valence-a200");
    assert_eq!(v.racks[200].id, "valence-b001");

    let nvl = &f.site("paris-nord").expect("paris-nord").racks[0];
    assert_eq!(nvl.id, "pn-nvl01");
    assert_eq!(nvl.network_domain, nvl.id, "an NVL72 rack is its own NVLink domain");
    assert_eq!(nvl.gpu_count(), 72);
    assert_eq!(nvl.full_load_power(&f.catalog), Watts(119_880));

    // Loading twice gives the same fleet.
    assert_eq!(load("fleets/france.toml").fleet, f);
}

#[test]
fn openb_is_the_published_cluster() {
    let loaded = load("fleets/openb.toml");
    assert!(loaded.warnings.is_empty(), "{}", loaded.warnings);
    let f = &loaded.fleet;
    assert_eq!(f.node_count(), 1_213);
    assert_eq!(f.gpu_count(), 6_212);
    let site = &f.sites[0];
    assert_eq!(site.id, "alibaba-openb");
    assert_eq!(site.country.0, "CN");
    assert!(site.certifications.is_empty());
    assert_eq!(site.racks.len(), 152, "1,213 nodes in racks of 8");
    assert_eq!(site.racks[0].id, "openb-r001");
    assert_eq!(site.racks[0].nodes[0].name, "openb-node-0000");
    assert_eq!(site.racks[151].nodes.len(), 5);
    assert_eq!(site.racks[151].nodes[4].name, "openb-node-1212");
    assert!(site.racks.iter().all(|r| r.network_domain == "alibaba-openb"));

    // Per-model counts from traces/README.md.
    let mut by_model: BTreeMap<&str, (u32, u64)> = BTreeMap::new();
    for (_, _, n) in f.nodes() {
        let e = by_model.entry(n.gpu_model.as_deref().unwrap_or("-")).or_default();
        e.0 += 1;
        e.1 += u64::from(n.gpu_count);
    }
    let want: BTreeMap<&str, (u32, u64)> = [
        ("A10", (2, 2)),
        ("G2", (549, 4_392)),
        ("G3", (39, 312)),
        ("P100-PCIE", (134, 265)),
        ("T4", (404, 842)),
        ("V100-SXM2-16GB", (55, 195)),
        ("V100-SXM2-32GB", (30, 204)),
    ]
    .into();
    assert_eq!(by_model, want);

    // The undisclosed models are declared, not built in.
    for id in ["G1", "G2", "G3"] {
        let spec = f.catalog.get(id).expect(id);
        assert!(!spec.builtin && spec.source.contains("assumption"), "{id}");
    }
    // Power never binds: the grid is in force from simulation time zero, with room to spare.
    let full: Watts = site.racks.iter().map(|r| r.full_load_power(&f.catalog)).sum();
    assert!(site.it_budget_at(Timestamp::EPOCH) > Watts(full.0 * 20), "{full}");
    assert!(site.racks.iter().all(|r| r.full_load_power(&f.catalog) <= r.power_limit));
}

#[test]
fn openb_all_nodes_list_imports_cpu_only_nodes_too() {
    let text = std::fs::read_to_string(repo("fleets/openb.toml")).expect("openb.toml");
    let text = text.replace("openb_node_list_gpu_node.csv", "openb_node_list_all_node.csv");
    let fleet: Fleet = parse(&text, "openb-all.toml", &repo("fleets")).expect("all-node list loads");
    assert_eq!(fleet.node_count(), 1_523);
    assert_eq!(fleet.gpu_count(), 6_212);
    let cpu_only = fleet.nodes().filter(|(_, _, n)| n.gpu_model.is_none()).count();
    assert_eq!(cpu_only, 310);
}
