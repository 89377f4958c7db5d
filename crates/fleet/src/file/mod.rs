//! The TOML fleet file: loading, validation and its JSON Schema.
//!
//! A fleet of thousands of servers is described by templates rather than lists: node
//! types (`[node_type.NAME]`), rack groups that stamp out `count` identical racks
//! (`[[site.rack_group]]`), and imports of a trace's node list (`[site.import]`). The
//! format is documented in `docs/fleet-file.md`.
//!
//! Validation is the point of this module. Every problem carries the file, line, column,
//! field path, what is wrong and how to fix it, and all problems are reported in one pass
//! (TOML syntax errors excepted: they stop parsing, and are reported with positions too).

mod decl;
mod expand;
mod openb;
mod racks;
mod reader;
mod schema;

use std::path::{Path, PathBuf};

use toml::de::DeTable;

use crate::diag::{Diagnostic, Diagnostics};
use crate::model::Fleet;
use reader::Ctx;

/// Why a fleet file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The fleet file itself could not be read (missing, unreadable). Problems with files
    /// it refers to are [`LoadError::Invalid`], located at the reference.
    #[error("cannot read fleet file `{}`", path.display())]
    Io {
        /// The path as given.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but has problems: all of them, in file order.
    #[error(transparent)]
    Invalid(#[from] Diagnostics),
}

impl LoadError {
    /// The problems, when the file was readable.
    #[must_use]
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        match self {
            LoadError::Invalid(d) => Some(d),
            LoadError::Io { .. } => None,
        }
    }
}

/// A loaded fleet and what is worth a look though not wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The validated fleet.
    pub fleet: Fleet,
    /// Advisories, such as racks whose full-load draw exceeds their limit (legal: they
    /// will be power-capped). Same format as errors.
    pub warnings: Diagnostics,
}

/// Loads and validates the fleet file at `path`.
///
/// Paths inside the file (node-list imports) are relative to the file's folder.
///
/// # Errors
/// [`LoadError::Io`] if the file cannot be read, [`LoadError::Invalid`] with every
/// problem otherwise.
pub fn load(path: &Path) -> Result<Fleet, LoadError> {
    load_with_warnings(path).map(|l| l.fleet)
}

/// Like [`load`], also returning the warnings.
///
/// # Errors
/// As [`load`].
pub fn load_with_warnings(path: &Path) -> Result<Loaded, LoadError> {
    load_inner(path, None)
}

/// Like [`load`], but every `[site.import]` reads the node list `nodes` instead of the one
/// the file names (`gigawatt sim openb --nodes`). Problems in the node list name `nodes`
/// exactly as given, relative to the current directory.
///
/// # Errors
/// As [`load`]; also when the fleet file imports no node list at all.
pub fn load_with_nodes(path: &Path, nodes: &Path) -> Result<Fleet, LoadError> {
    load_inner(path, Some(nodes)).map(|l| l.fleet)
}

fn load_inner(path: &Path, nodes: Option<&Path>) -> Result<Loaded, LoadError> {
    let bytes = crate::read::read_regular(path, crate::read::MAX_FLEET_FILE_BYTES)
        .map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
    let name = path.to_string_lossy();
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match String::from_utf8(bytes) {
        Ok(text) => parse_inner(&text, &name, base, nodes),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            let d = Diagnostic::at_offset(
                name,
                &prefix,
                valid,
                "",
                "the file is not valid UTF-8",
                "save the file as UTF-8",
            );
            Err(LoadError::Invalid(d.into()))
        }
    }
}

/// Validates fleet-file `text`, reporting problems against `file_name` and resolving
/// imports against `base_dir`.
///
/// # Errors
/// [`LoadError::Invalid`] with every problem found.
pub fn parse(text: &str, file_name: &str, base_dir: &Path) -> Result<Fleet, LoadError> {
    parse_with_warnings(text, file_name, base_dir).map(|l| l.fleet)
}

/// Like [`parse`], also returning the warnings.
///
/// # Errors
/// As [`parse`].
pub fn parse_with_warnings(text: &str, file_name: &str, base_dir: &Path) -> Result<Loaded, LoadError> {
    parse_inner(text, file_name, base_dir, None)
}

fn parse_inner(
    text: &str,
    file_name: &str,
    base_dir: &Path,
    nodes: Option<&Path>,
) -> Result<Loaded, LoadError> {
    let mut cx = Ctx::new(file_name, text);
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(syntax_errors(&mut cx, &syntax).into());
    }
    let doc = decl::read(&mut cx, root.get_ref(), &root.span());
    let (catalog, broken) = expand::catalog(&mut cx, &doc.gpu_models);
    let types = expand::node_types(&mut cx, &doc.node_types, &catalog, &broken);
    let sites = expand::sites(&mut cx, &doc.sites, &types, &catalog, base_dir, nodes);
    if nodes.is_some() && doc.sites.iter().all(|s| s.import.is_none()) {
        cx.errors.push(Diagnostic::new(
            file_name,
            1,
            1,
            "site.import",
            "a node list was given, but no site of this fleet file imports one",
            "use a fleet file with a `[site.import]` table, such as fleets/openb.toml",
        ));
    }
    if !cx.errors.is_empty() {
        let mut errors = std::mem::take(&mut cx.errors);
        errors.sort();
        return Err(errors.into());
    }
    // Every check has run with positions above; this re-runs the model-level checks so a
    // loader bug cannot produce an invalid fleet.
    let mut fleet = Fleet::new(catalog, sites).map_err(|d| {
        Diagnostics(d.into_iter().map(|x| Diagnostic { file: file_name.to_owned(), ..x }).collect())
    })?;
    fleet.residency = doc.residency;
    let mut warnings = std::mem::take(&mut cx.warnings);
    warnings.sort();
    Ok(Loaded { fleet, warnings })
}

/// The JSON Schema of the fleet file format (draft 2020-12), as committed in
/// `fleets/fleet.schema.json`.
#[must_use]
pub fn json_schema() -> serde_json::Value {
    schema::json_schema()
}

/// Only the first syntax error is spelled out: after it, the parser's recovery mostly
/// reports consequences of it (one unclosed bracket yields an error on every later line).
/// The rest are counted, at the position of the next one.
fn syntax_errors(cx: &mut Ctx<'_>, errors: &[toml::de::Error]) -> Diagnostics {
    let mut all = Diagnostics::default();
    for e in errors {
        let span = e.span().unwrap_or(0..0);
        let msg = e.message().trim_end_matches('\n');
        all.push(cx.diagnostic(
            &span,
            "",
            crate::validate::problem(format!("TOML syntax: {msg}"), syntax_fix(msg)),
        ));
    }
    all.sort();
    let mut shown = all.0.into_iter();
    let mut out = Diagnostics(shown.next().into_iter().collect());
    if let Some(next) = shown.next() {
        let more = shown.len() + 1;
        out.push(Diagnostic {
            problem: format!(
                "{more} more TOML syntax error(s) from here on, often consequences of the first"
            ),
            fix: "fix the first syntax error and load the file again".into(),
            ..next
        });
    }
    out
}

fn syntax_fix(msg: &str) -> &'static str {
    if msg.contains("duplicate key") {
        "a key may appear once per table; remove or rename the repeat (use [[site]] for each new site)"
    } else if msg.contains("must be quoted") || msg.contains("invalid boolean") {
        "a value is missing or unquoted here: write a number, a date, or text in double quotes (e.g. `country = \"FR\"`)"
    } else if msg.contains("missing comma") {
        "separate array elements with commas; an array or inline table left unclosed above also causes this"
    } else if msg.contains("unclosed") {
        "close the bracket, brace or quote opened here"
    } else {
        "correct the TOML syntax here (see https://toml.io/en/v1.0.0)"
    }
}
