//! Residency rules in the fleet file: defaults, overrides, jurisdictions, and precise
//! messages for what is wrong.

use std::path::Path;

use gigawatt_fleet::{Certification, Diagnostic, LoadError, ResidencyRule, ResidencyRules, parse};

/// One French HDS site and one US site; `RESIDENCY` is replaced by each test.
const BASE: &str = r#"RESIDENCY

[node_type.hgx]
gpu_model = "H100"
gpus = 8
cpu_millicores = 224000
memory_mib = 2097152
base_power_w = 4600

[[site]]
id = "paris"
country = "FR"
region = "eu-west-fr"
certifications = ["hds"]
pue = 1.2
grid = [{ from = 2026-01-01, capacity_mw = 8 }]

  [[site.rack_group]]
  prefix = "paris-a"
  count = 1
  node_type = "hgx"
  nodes_per_rack = 1

[[site]]
id = "ashburn"
country = "US"
region = "us-east"
certifications = ["soc2"]
jurisdiction = "US"
pue = 1.3
grid = [{ from = 2026-01-01, capacity_mw = 8 }]

  [[site.rack_group]]
  prefix = "ashburn-a"
  count = 1
  node_type = "hgx"
  nodes_per_rack = 1
"#;

fn fleet(residency: &str) -> gigawatt_fleet::Fleet {
    parse(&BASE.replace("RESIDENCY", residency), "t.toml", Path::new(".")).expect("valid")
}

fn problems(residency: &str) -> Vec<Diagnostic> {
    match parse(&BASE.replace("RESIDENCY", residency), "t.toml", Path::new(".")) {
        Ok(_) => panic!("accepted:\n{residency}"),
        Err(LoadError::Invalid(d)) => d.0,
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn defaults_are_the_documented_rules_and_jurisdiction_follows_the_country() {
    let f = fleet("");
    assert_eq!(f.residency, ResidencyRules::default());
    let (paris, ashburn) = (&f.sites[0].law(), &f.sites[1].law());
    assert_eq!(paris.jurisdiction, "EU", "an EU member state defaults to EU law");
    assert_eq!(ashburn.jurisdiction, "US");
    let r = &f.residency;
    assert!(r.public.allows(ashburn));
    assert!(r.personal.allows(paris) && !r.personal.allows(ashburn));
    assert!(r.health.allows(paris) && !r.health.allows(ashburn));
    assert!(!r.sensitive.allows(paris), "no SecNumCloud");
    assert_eq!(r.health.to_string(), "HDS, in EU/EEA");
    assert_eq!(r.sensitive.to_string(), "SecNumCloud, in FR, EU jurisdiction");
    assert_eq!(r.public.to_string(), "anywhere");
    assert_eq!(
        r.health.why_not(ashburn).as_deref(),
        Some("site ashburn is in US, outside EU/EEA"),
        "the country term is checked first"
    );
}

#[test]
fn a_rule_in_the_file_replaces_its_class_default_whole() {
    let f = fleet(
        r#"[residency.personal]
countries = ["FR"]
jurisdictions = ["EU"]

[residency.public]
certifications = ["soc2"]
"#,
    );
    let (paris, ashburn) = (&f.sites[0].law(), &f.sites[1].law());
    assert!(f.residency.personal.allows(paris));
    assert!(!f.residency.public.allows(paris), "public now needs SOC 2");
    assert!(f.residency.public.allows(ashburn));
    assert_eq!(f.residency.public.certifications, [Certification::Soc2].into());
    // Classes the file leaves out keep their default.
    assert_eq!(f.residency.health, ResidencyRules::default().health);
    // A jurisdiction term is checked against the site's declared law.
    let us_only = fleet("[residency.personal]\njurisdictions = [\"US\"]\n");
    assert_eq!(
        us_only.residency.personal.why_not(paris).as_deref(),
        Some("site paris answers to EU law, not US")
    );
}

#[test]
fn bad_rules_and_jurisdictions_are_located_with_a_fix() {
    let d = problems(
        r#"[residency.helth]
countries = ["EU"]

[residency.personal]
countries = ["Europe", "fr"]
jurisdictions = ["eu"]
certs = ["hds"]
"#,
    );
    let text: Vec<String> = d.iter().map(ToString::to_string).collect();
    let all = text.join("\n");
    assert!(
        all.contains("t.toml:1:12: residency.helth: unknown data class `helth`; fix: did you mean `health`?"),
        "{all}"
    );
    assert!(
        all.contains(
            "t.toml:5:14: residency.personal.countries[0]: country `Europe` is not an ISO 3166-1 alpha-2 code"
        ),
        "{all}"
    );
    assert!(all.contains("or a group: EU, EEA"), "{all}");
    assert!(
        all.contains("residency.personal.countries[1]: country `fr` must be upper case; fix: write `FR`"),
        "{all}"
    );
    assert!(all.contains("residency.personal.jurisdictions[0]: jurisdiction `eu` is not an upper-case code; fix: write `EU`"), "{all}");
    assert!(all.contains("residency.personal.certs: unknown key `certs` in residency.personal"), "{all}");
    assert_eq!(d.len(), 5, "{all}");
}

#[test]
fn a_rule_may_pin_sites_and_says_which() {
    let f = fleet("");
    let (paris, ashburn) = (&f.sites[0].law(), &f.sites[1].law());
    let pins = ResidencyRule { sites: Some(["paris".to_string()].into()), ..ResidencyRule::anywhere() };
    assert!(pins.allows(paris) && !pins.allows(ashburn));
    assert_eq!(pins.why_not(ashburn).as_deref(), Some("site ashburn is not one of paris"));
    assert_eq!(pins.to_string(), "at paris");
    assert!(!pins.is_anywhere() && ResidencyRule::anywhere().is_anywhere());
}
