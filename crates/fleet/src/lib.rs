//! The fleet: what hardware gigawatt schedules onto, and where it is.
//!
//! A fleet is sites (one grid connection, one PUE, one jurisdiction each) holding racks
//! (one power limit and one network island each) holding nodes (servers with GPUs). This
//! crate gives
//!
//! * the validated model ([`Fleet`], [`Site`], [`Rack`], [`Node`]) the scheduling core
//!   consumes;
//! * the GPU catalog ([`GpuCatalog`]): TDP, idle draw and lowest power limit per model,
//!   each figure with its public source, and the aliases traces use (`V100M16`);
//! * the TOML fleet file ([`load`], [`parse`]) that describes thousands of nodes in a few
//!   dozen lines, and reports *every* problem with file, line, column, field and fix;
//! * [`Diagnostic`] / [`Diagnostics`], the located-problem format shared with the trace
//!   readers.
//!
//! ```
//! use gigawatt_fleet::parse;
//! use std::path::Path;
//!
//! let text = r#"
//! [node_type.hgx-h100]
//! gpu_model = "H100"
//! gpus = 8
//! cpu_millicores = 224000
//! memory_mib = 2097152
//! base_power_w = 4600
//!
//! [[site]]
//! id = "valence"
//! country = "FR"
//! region = "eu-south-fr"
//! pue = 1.2
//! grid = [{ from = 2026-01-01, capacity_mw = 8 }]
//!   [[site.rack_group]]
//!   prefix = "valence-a"
//!   count = 4
//!   node_type = "hgx-h100"
//!   nodes_per_rack = 8
//! "#;
//! let fleet = parse(text, "example.toml", Path::new(".")).expect("valid");
//! assert_eq!(fleet.node_count(), 32);
//! assert_eq!(fleet.gpu_count(), 256);
//!
//! let err = parse(&text.replace("1.2", "0.9"), "example.toml", Path::new(".")).unwrap_err();
//! assert!(err.to_string().starts_with("example.toml:13:7: site[0].pue: pue must be ≥ 1.0 (got 0.9)"));
//! ```

pub mod carbon;
pub mod catalog;
mod country;
mod diag;
pub mod file;
pub mod model;
pub mod read;
pub mod residency;
mod validate;

pub use carbon::{CARBON_CSV_HEADER, CarbonSeries, MAX_CARBON_INTENSITY, load_carbon_csv, parse_carbon_csv};
pub use catalog::{DuplicateGpuModel, GpuCatalog, GpuSpec, UnknownGpuModel};
pub use country::{ISO_3166_ALPHA2, is_iso_3166_alpha2};
pub use diag::{Diagnostic, Diagnostics, line_column};
pub use file::{
    LoadError, Loaded, json_schema, load, load_with_nodes, load_with_warnings, parse, parse_with_warnings,
};
pub use model::*;
pub use residency::{ResidencyRule, ResidencyRules, SiteLaw};
