//! The committed JSON Schema must be the one the code generates.

use std::path::PathBuf;

use gigawatt_fleet::json_schema;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fleets/fleet.schema.json")
}

#[test]
fn committed_schema_is_up_to_date() {
    let generated = format!("{:#}\n", json_schema());
    let path = committed_path();
    if std::env::var_os("GIGAWATT_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write fleets/fleet.schema.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "fleets/fleet.schema.json is out of date with the fleet-file structs; regenerate it with \
         `GIGAWATT_BLESS=1 cargo test -p gigawatt-fleet --test schema` and commit the result"
    );
}

#[test]
fn schema_describes_the_format() {
    let s = json_schema();
    assert_eq!(s["title"], "gigawatt fleet file");
    assert_eq!(s["required"], serde_json::json!(["site"]));
    assert_eq!(s["$defs"]["Site"]["properties"]["pue"]["minimum"], 1.0);
    assert_eq!(s["$defs"]["GridPhase"]["properties"]["from"]["format"], "date");
    let certs = &s["$defs"]["Certification"];
    assert!(certs.to_string().contains("secnumcloud"), "{certs}");
}
