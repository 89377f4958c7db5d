//! The fleet file's JSON Schema, for editors (taplo / Even Better TOML read
//! `#:schema ./fleet.schema.json`) and for tools that generate fleet files.
//!
//! These structs describe the format; the loader does not deserialize into them (serde
//! stops at the first error, the loader reports them all). Tests keep the two in step: the
//! key lists the loader accepts must equal the properties here, and the bundled fleets
//! must deserialize into these structs.

#![allow(dead_code, reason = "fields are read by serde in tests and by schemars, never in code")]

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::model::Certification;

/// A gigawatt fleet file: GPU models, reusable server types and the sites that hold them.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "gigawatt fleet file")]
pub(crate) struct FleetFile {
    /// GPU models that are not in the built-in catalog (e.g. the undisclosed G1/G2/G3 of
    /// the Alibaba trace). Every figure needs a source.
    #[serde(default)]
    gpu_model: Vec<GpuModel>,
    /// Reusable server types, by name: `[node_type.dgx-h100]`.
    #[serde(default)]
    node_type: BTreeMap<String, NodeType>,
    /// Which sites may hold each data class: `[residency.health]`. A class given here
    /// replaces its default rule whole; a class left out keeps it (docs/fleet-file.md).
    #[serde(default)]
    residency: Residency,
    /// Datacenter sites, in scheduling tie-break order.
    site: Vec<Site>,
}

/// One rule per data class.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
struct Residency {
    /// Default: anywhere.
    public: Option<ResidencyRule>,
    /// Default: in the EU/EEA (GDPR).
    personal: Option<ResidencyRule>,
    /// Default: HDS-certified, in the EU/EEA.
    health: Option<ResidencyRule>,
    /// Default: SecNumCloud-certified, in France, EU jurisdiction.
    sensitive: Option<ResidencyRule>,
}

/// A residency rule: a site must meet every term given; a term left out does not
/// restrict.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ResidencyRule {
    /// ISO 3166-1 alpha-2 codes, or the groups `EU` and `EEA`.
    countries: Option<Vec<String>>,
    /// Certifications the site must all hold.
    #[serde(default)]
    certifications: Vec<Certification>,
    /// Jurisdictions (the law the site's operator answers to), e.g. `EU`.
    jurisdictions: Option<Vec<String>>,
}

/// A GPU model declared in the file. Figures are per GPU.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GpuModel {
    /// Canonical id, e.g. `G2`. Must not clash with a built-in id or alias.
    id: String,
    /// Maker, or `undisclosed`.
    vendor: String,
    /// Thermal design power in watts.
    #[schemars(range(min = 1))]
    tdp_w: u64,
    /// Idle draw in watts (≤ tdp_w).
    idle_w: u64,
    /// Lowest settable power limit in watts (≤ tdp_w).
    min_power_limit_w: u64,
    /// Device memory in GB.
    #[schemars(range(min = 1))]
    memory_gb: u32,
    /// Dense BF16 tensor TFLOPS, if known.
    bf16_dense_tflops: Option<f64>,
    /// Memory bandwidth in TB/s, if known.
    hbm_tbps: Option<f64>,
    /// `α` in "dynamic power ∝ clock^α" (default 2.0): how much a power cap slows
    /// compute-bound work. Lower is more pessimistic.
    #[schemars(range(min = 0.5, max = 8.0))]
    dvfs_exponent: Option<f64>,
    /// Other spellings that resolve to this model.
    #[serde(default)]
    aliases: Vec<String>,
    /// Where the figures come from (datasheet, measurement, stated assumption).
    #[schemars(length(min = 1))]
    source: String,
}

/// A server type. CPU and memory are what Kubernetes would call allocatable.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NodeType {
    /// GPU model id or alias; leave out for a CPU-only server.
    gpu_model: Option<String>,
    /// GPUs per server (0 for CPU-only).
    #[serde(default)]
    #[schemars(range(max = 64))]
    gpus: u32,
    /// Logical CPUs × 1000.
    #[schemars(range(min = 1))]
    cpu_millicores: u64,
    /// Memory in MiB.
    #[schemars(range(min = 1))]
    memory_mib: u64,
    /// Busy power of everything but the GPUs (CPUs, NICs, fans, drives), in watts.
    base_power_w: u64,
}

/// A datacenter site: one grid connection, one PUE, one jurisdiction.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Site {
    /// Short unique id, e.g. `valence`.
    id: String,
    /// Human name; defaults to the id.
    name: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. `FR`.
    #[schemars(regex(pattern = r"^[A-Z]{2}$"))]
    country: String,
    /// Operator region, e.g. `eu-south-fr`.
    region: String,
    /// Certifications held by the site.
    #[serde(default)]
    certifications: Vec<Certification>,
    /// The law the site's operator answers to, an upper-case code (`EU`, `US`, `JP`).
    /// Default: `EU` in an EU member state, else the country code.
    #[schemars(regex(pattern = r"^[A-Z]{2,8}$"))]
    jurisdiction: Option<String>,
    /// Power usage effectiveness: facility power / IT power.
    #[schemars(range(min = 1.0, max = 3.0))]
    pue: f64,
    /// Grid capacity phases, in date order.
    #[schemars(length(min = 1))]
    grid: Vec<GridPhase>,
    /// `reserved` (default): every allocated GPU counts at its TDP. `oversubscribed`:
    /// admit GPUs up to `(1 + oversubscription) ×` the budget at TDP and let the power
    /// manager cap GPU power limits to keep the real draw under every limit.
    provisioning: Option<ProvisioningMode>,
    /// Share admitted beyond the budget when `oversubscribed`, e.g. 0.3 for 130%.
    #[schemars(range(min = 0.0, max = 1.0))]
    oversubscription: Option<f64>,
    /// The lowest facility draw, in MW, that a curtailment may ask of the site (default 0).
    #[schemars(range(min = 0.0))]
    curtailable_to_mw: Option<f64>,
    /// A CSV of the carbon intensity of the site's electricity (`timestamp,gco2_per_kwh`),
    /// relative to the fleet file: energy is turned into grams of CO2 with it.
    carbon_intensity: Option<String>,
    /// Groups of identical racks.
    #[serde(default)]
    rack_group: Vec<RackGroup>,
    /// Nodes imported from a trace's node list.
    import: Option<Import>,
}

/// How a site counts the power of the GPUs it admits.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum ProvisioningMode {
    /// Every allocated GPU counts at its TDP; never oversubscribed.
    Reserved,
    /// Admit beyond the TDP sum; the power manager caps GPUs to stay under every limit.
    Oversubscribed,
}

/// From `from` on, the site may draw `capacity_mw` from the grid.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GridPhase {
    /// First day of the phase (a TOML date, `2026-01-01`).
    #[schemars(with = "String", extend("format" = "date"))]
    from: toml::value::Datetime,
    /// Facility-side capacity in MW.
    #[schemars(range(min = 0.0, max = 10000.0))]
    capacity_mw: f64,
}

/// `count` racks named `{prefix}{NN}`, each with `nodes_per_rack` servers of `node_type`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RackGroup {
    /// Rack id prefix; racks are `{prefix}01`, `{prefix}02`, …
    prefix: String,
    /// Number of the first rack (default 1), to continue a row in another group.
    #[schemars(range(min = 1))]
    first: Option<u64>,
    /// Number of racks.
    #[schemars(range(min = 1, max = 100000))]
    count: u64,
    /// A `[node_type.NAME]` of this file.
    node_type: String,
    /// Servers per rack.
    #[schemars(range(min = 1, max = 256))]
    nodes_per_rack: u32,
    /// Rack power limit in kW (default 150).
    #[schemars(range(min = 0.0, max = 1000.0))]
    power_limit_kw: Option<f64>,
    /// Network island name; `{site}`, `{rack}` and `{n}` are replaced (default `{rack}`).
    network_domain: Option<String>,
    /// Racks per island when `network_domain` uses `{n}`.
    #[schemars(range(min = 1))]
    racks_per_domain: Option<u64>,
}

/// Nodes from an Alibaba openb node list, grouped into racks in file order.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Import {
    /// Path of the CSV, relative to the fleet file.
    openb_nodes: String,
    /// Busy non-GPU power of every imported node, in watts (the CSV has none).
    base_power_w: u64,
    /// Rack id prefix (default `{site id}-r`).
    rack_prefix: Option<String>,
    /// Nodes per rack (default 8).
    #[schemars(range(min = 1, max = 256))]
    nodes_per_rack: Option<u32>,
    /// Rack power limit in kW (default 150).
    #[schemars(range(min = 0.0, max = 1000.0))]
    power_limit_kw: Option<f64>,
    /// As for rack groups (default `{rack}`).
    network_domain: Option<String>,
    /// As for rack groups.
    #[schemars(range(min = 1))]
    racks_per_domain: Option<u64>,
}

/// The JSON Schema of the fleet file format.
pub(crate) fn json_schema() -> serde_json::Value {
    let mut v = schemars::schema_for!(FleetFile).to_value();
    drop_null(&mut v);
    v
}

/// TOML has no null: an optional key is simply absent. schemars renders `Option<T>` as
/// `"type": [T, "null"]` or `"anyOf": [T, null]`; this turns both back into `T` so
/// editors do not suggest `null`.
fn drop_null(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            if let Some(serde_json::Value::Array(types)) = o.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    o.insert("type".into(), only);
                }
            }
            if let Some(serde_json::Value::Array(any)) = o.get_mut("anyOf") {
                any.retain(|t| t.get("type").is_none_or(|t| t != "null"));
                if let [serde_json::Value::Object(only)] = any.as_slice() {
                    let only = only.clone();
                    o.remove("anyOf");
                    o.extend(only);
                }
            }
            o.values_mut().for_each(drop_null);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_null),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::file::{decl, racks};

    fn keys(v: &serde_json::Value) -> BTreeSet<String> {
        v.get("properties")
            .and_then(|p| p.as_object())
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn loader_keys_match_schema_properties() {
        let s = json_schema();
        let defs = &s["$defs"];
        for (v, known) in [
            (&s, decl::TOP_KEYS),
            (&defs["GpuModel"], decl::GPU_MODEL_KEYS),
            (&defs["NodeType"], decl::NODE_TYPE_KEYS),
            (&defs["Site"], decl::SITE_KEYS),
            (&defs["GridPhase"], decl::GRID_KEYS),
            (&defs["RackGroup"], racks::RACK_GROUP_KEYS),
            (&defs["Import"], racks::IMPORT_KEYS),
            (&defs["ResidencyRule"], decl::RESIDENCY_RULE_KEYS),
        ] {
            let want: BTreeSet<String> = known.iter().map(|k| (*k).to_owned()).collect();
            assert_eq!(keys(v), want);
        }
    }

    #[test]
    fn bundled_fleets_fit_the_schema_structs() {
        for f in ["france.toml", "openb.toml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fleets").join(f);
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let parsed: Result<FleetFile, _> = toml::from_str(&text);
            assert!(parsed.is_ok(), "{f}: {:?}", parsed.err());
        }
    }
}
