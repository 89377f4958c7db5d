//! The key the control plane signs its log's checkpoints with: a C2SP signed-note
//! private key (`PRIVATE+KEY+<name>+<key id>+<base64>`) in a file the operator controls,
//! created on first start (readable by its owner only) when missing.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gigawatt_transparency::Signer;

/// Where the key lives when `--audit-key` is not given: beside the SQLite file
/// (`gigawatt.db.audit-key`), or `audit.key` in the data directory for PostgreSQL.
#[must_use]
pub fn default_path(db_url: &str, data_dir: &Path) -> PathBuf {
    match db_url.strip_prefix("sqlite://").or_else(|| db_url.strip_prefix("sqlite:")) {
        Some(file) => {
            let file = file.split('?').next().unwrap_or(file);
            PathBuf::from(format!("{file}.audit-key"))
        }
        None => data_dir.join("audit.key"),
    }
}

/// Reads the key at `path`, or creates one named `origin` there (mode 0600, written
/// whole before it appears, so two servers starting at once agree on one key).
///
/// # Errors
/// The file cannot be read or written, or does not hold a key.
pub fn load_or_create(path: &Path, origin: &str) -> anyhow::Result<Signer> {
    if !path.exists() {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness for a new audit key: {e}"))?;
        let signer = Signer::generate(origin, seed).map_err(|e| {
            anyhow::anyhow!("--audit-origin `{origin}`: {e}; use a name such as gigawatt.example/log")
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            writeln!(f, "{}", signer.to_key_string())
                .with_context(|| format!("writing {}", tmp.display()))?;
            f.sync_all().with_context(|| format!("writing {}", tmp.display()))?;
        }
        // A hard link never replaces: if another server created the key meanwhile, its
        // key stands and this one is thrown away.
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => eprintln!("created the audit key {} (keep it: it signs the log)", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the audit key {}", path.display()))?;
    text.trim().parse::<Signer>().map_err(|e| {
        anyhow::anyhow!("{}: not an audit key ({e}); it holds one line `PRIVATE+KEY+…`", path.display())
    })
}
