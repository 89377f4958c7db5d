//! The GPU catalog: power and capability figures per GPU model.
//!
//! Power decisions need three figures per model: the TDP (what a busy GPU may draw), the
//! idle draw (what an allocated but quiet GPU still costs) and the lowest power limit the
//! driver accepts (how far a GPU can be capped). The catalog holds them for the models
//! gigawatt knows ([`GpuCatalog::builtin`]) plus whatever a fleet file declares, and
//! resolves the many spellings people and traces use (`H100`, `h100-sxm`, `V100M16`) to
//! one canonical id.

mod builtin;

/// The DVFS exponent of built-in models and the default for declared ones (see
/// `catalog/builtin.rs` for how it was chosen).
pub const DEFAULT_DVFS_EXPONENT: f64 = builtin::DVFS_EXPONENT;

use std::collections::BTreeMap;

use gigawatt_units::Watts;
use serde::Serialize;

use crate::diag::{did_you_mean, normalize};

/// One GPU model and the figures the scheduler and power model use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuSpec {
    /// Canonical id, e.g. `H100-SXM`: the spelling stored on nodes and shown to users.
    pub id: String,
    /// Maker, e.g. `NVIDIA`; `undisclosed` for anonymised trace models.
    pub vendor: String,
    /// Thermal design power: the most a busy GPU draws at its default power limit.
    pub tdp: Watts,
    /// Draw of a powered, allocated GPU doing nothing, for energy accounting.
    pub idle: Watts,
    /// Lowest power limit the driver accepts: the floor of power capping.
    pub min_power_limit: Watts,
    /// Device memory in GB (10^9 bytes, as datasheets count it).
    pub memory_gb: u32,
    /// Dense (no sparsity) BF16 tensor throughput in TFLOPS, `None` where the model has no
    /// BF16 tensor cores or the figure is unknown.
    pub bf16_dense_tflops: Option<f64>,
    /// Device memory bandwidth in TB/s (HBM or GDDR), `None` when unknown.
    pub hbm_tbps: Option<f64>,
    /// `α` in "dynamic power ∝ SM clock^α": how fast power falls when a power limit lowers
    /// the clock, which decides how much a cap slows compute-bound work (see
    /// `docs/power-model.md`). Lower is more pessimistic.
    pub dvfs_exponent: f64,
    /// Where the figures come from, so that every number can be checked.
    pub source: String,
    /// Whether the model ships with gigawatt (as opposed to declared in a fleet file).
    pub builtin: bool,
}

/// The known GPU models, looked up by id or alias, case- and separator-insensitively.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuCatalog {
    /// Models by canonical id (sorted, so listings are stable).
    models: BTreeMap<String, GpuSpec>,
    /// Normalised spelling (id or alias) → canonical id.
    #[serde(skip)]
    index: BTreeMap<String, String>,
    /// Alias → canonical id, as written, for listings.
    aliases: BTreeMap<String, String>,
}

/// A model name that is not in the catalog.
///
/// Its message lists every known model, because the fix is almost always "use one of
/// these" or "declare it".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown GPU model `{name}`{}; known models: {}", suggestion_text(.suggestion), .known.join(", "))]
pub struct UnknownGpuModel {
    /// The name as given.
    pub name: String,
    /// Every canonical id in the catalog, sorted.
    pub known: Vec<String>,
    /// A close spelling, if any (an id or an alias).
    pub suggestion: Option<String>,
}

fn suggestion_text(s: &Option<String>) -> String {
    s.as_ref().map_or_else(String::new, |s| format!(" (did you mean `{s}`?)"))
}

/// A model id or alias that is already taken (spellings are compared ignoring case and
/// `-`/`_`/space, since lookups do too).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GPU model name `{name}` is already taken by `{existing}`")]
pub struct DuplicateGpuModel {
    /// The name that clashed.
    pub name: String,
    /// The canonical id of the model that already holds it.
    pub existing: String,
}

impl GpuCatalog {
    /// A catalog with no models, for fleets that must not rely on built-in figures.
    #[must_use]
    pub fn empty() -> GpuCatalog {
        GpuCatalog { models: BTreeMap::new(), index: BTreeMap::new(), aliases: BTreeMap::new() }
    }

    /// The models that ship with gigawatt, with public figures (see `catalog/builtin.rs` for
    /// every source).
    #[must_use]
    pub fn builtin() -> GpuCatalog {
        let mut c = GpuCatalog::empty();
        for (spec, aliases) in builtin::models() {
            // The built-in table has no clashes; a test proves it.
            let _ = c.insert_with_aliases(spec, aliases);
        }
        c
    }

    /// The model called `name` (its id or an alias, any case, `-`/`_`/space ignored).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&GpuSpec> {
        self.index.get(&normalize(name)).and_then(|id| self.models.get(id))
    }

    /// Like [`get`](Self::get), but the error says which models exist.
    ///
    /// # Errors
    /// [`UnknownGpuModel`] when no model has that name.
    pub fn resolve(&self, name: &str) -> Result<&GpuSpec, UnknownGpuModel> {
        self.get(name).ok_or_else(|| UnknownGpuModel {
            name: name.to_owned(),
            known: self.ids().map(str::to_owned).collect(),
            suggestion: did_you_mean(name, self.index_names()).map(str::to_owned),
        })
    }

    /// Adds a model.
    ///
    /// # Errors
    /// [`DuplicateGpuModel`] when its id is already an id or alias.
    pub fn insert(&mut self, spec: GpuSpec) -> Result<(), DuplicateGpuModel> {
        self.insert_with_aliases(spec, &[])
    }

    /// Adds a model and other spellings for it, all or nothing.
    ///
    /// # Errors
    /// [`DuplicateGpuModel`] when the id or an alias is already taken, or repeated.
    pub fn insert_with_aliases(&mut self, spec: GpuSpec, aliases: &[&str]) -> Result<(), DuplicateGpuModel> {
        let mut seen = BTreeMap::new();
        for name in std::iter::once(spec.id.as_str()).chain(aliases.iter().copied()) {
            let key = normalize(name);
            let existing = self.index.get(&key).or_else(|| seen.get(&key));
            if let Some(existing) = existing {
                return Err(DuplicateGpuModel { name: name.to_owned(), existing: existing.clone() });
            }
            seen.insert(key, spec.id.clone());
        }
        self.index.extend(seen);
        for a in aliases {
            self.aliases.insert((*a).to_owned(), spec.id.clone());
        }
        self.models.insert(spec.id.clone(), spec);
        Ok(())
    }

    /// Every model, sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = &GpuSpec> {
        self.models.values()
    }

    /// Every canonical id, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// The other spellings accepted for model `id` (canonical id), sorted.
    pub fn aliases_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.aliases.iter().filter(move |(_, target)| target.as_str() == id).map(|(a, _)| a.as_str())
    }

    /// Number of models.
    #[must_use]
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether the catalog has no model.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    fn index_names(&self) -> impl Iterator<Item = &str> {
        self.ids().chain(self.aliases.keys().map(String::as_str))
    }
}

impl Default for GpuCatalog {
    fn default() -> GpuCatalog {
        GpuCatalog::builtin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_has_no_clashes_and_sane_figures() {
        let c = GpuCatalog::builtin();
        let table = builtin::models();
        assert_eq!(c.len(), table.len(), "a built-in id or alias clashes");
        for s in c.iter() {
            assert!(s.builtin);
            assert!(s.tdp > Watts::ZERO, "{}", s.id);
            assert!(s.idle < s.tdp, "{}", s.id);
            assert!(s.min_power_limit <= s.tdp, "{}", s.id);
            assert!(s.memory_gb > 0, "{}", s.id);
            assert!(!s.source.is_empty(), "{}", s.id);
        }
    }

    #[test]
    fn lookups_accept_aliases_and_any_case() {
        let c = GpuCatalog::builtin();
        for (name, id) in [
            ("H100", "H100-SXM"),
            ("h100sxm", "H100-SXM"),
            ("H100 SXM", "H100-SXM"),
            ("V100M16", "V100-SXM2-16GB"),
            ("V100-16GB", "V100-SXM2-16GB"),
            ("v100m32", "V100-SXM2-32GB"),
            ("P100", "P100-PCIE"),
            ("t4", "T4"),
            ("A10", "A10"),
            ("A100", "A100-SXM"),
        ] {
            assert_eq!(c.get(name).map(|s| s.id.as_str()), Some(id), "{name}");
        }
        assert!(c.get("H10").is_none());
    }

    #[test]
    fn unknown_model_lists_every_known_model() {
        let c = GpuCatalog::builtin();
        let Err(e) = c.resolve("H10") else { panic!("H10 resolved") };
        let msg = e.to_string();
        assert!(msg.starts_with("unknown GPU model `H10`"), "{msg}");
        assert!(msg.contains("known models: A10, A100-SXM, B200, GB200, H100-PCIE, H100-SXM"), "{msg}");
        assert_eq!(e.known.len(), c.len());
    }

    #[test]
    fn insert_refuses_taken_names() {
        let mut c = GpuCatalog::builtin();
        let Some(mut spec) = c.get("T4").cloned() else { panic!("no T4") };
        spec.id = "t-4".into();
        let err = c.insert(spec.clone());
        assert_eq!(err, Err(DuplicateGpuModel { name: "t-4".into(), existing: "T4".into() }));
        spec.id = "G2".into();
        assert!(c.insert_with_aliases(spec.clone(), &["H100"]).is_err());
        assert!(c.get("G2").is_none(), "a failed insert must not half-apply");
        assert!(c.insert(spec).is_ok());
        assert_eq!(c.get("g2").map(|s| s.id.as_str()), Some("G2"));
    }
}
