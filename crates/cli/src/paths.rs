//! Where the bundled fleets and traces are.
//!
//! Bundled files are looked up relative to the current directory first (the README's
//! commands run from the repository root), then relative to the repository this binary
//! was built from, so `cargo run` works from any subdirectory.

use std::path::{Path, PathBuf};

/// Resolves a bundled file such as `traces/openb/openb_node_list_gpu_node.csv`.
pub fn bundled(rel: &str) -> PathBuf {
    let here = Path::new(rel);
    if here.exists() {
        return here.to_path_buf();
    }
    // crates/cli → the repository root, without `..` in what users see.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap_or(Path::new("."));
    let built = root.join(rel);
    if built.exists() { built } else { here.to_path_buf() }
}

/// The stem of a file name, e.g. `openb_pod_list_default` for its CSV.
pub fn stem(p: &Path) -> String {
    p.file_stem().map_or_else(|| p.display().to_string(), |s| s.to_string_lossy().into_owned())
}
