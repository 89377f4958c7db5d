//! The node's credential: read from its file, or obtained once by exchanging a join
//! token (`gigawatt node enroll NODE` prints one) and then kept in that file.
//!
//! The file holds one line, the secret, and is created with mode 0600 in a directory
//! only its owner may enter; a file that others can read is refused, as `ssh` refuses a
//! private key others can read.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client::Client;

/// Why no credential could be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The file cannot be read or written.
    #[error("credential file {}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The control plane refused the join token, or could not be reached.
    #[error("enrolling node `{node}` with the join token: {message}")]
    Enrol {
        /// The node.
        node: String,
        /// What the control plane said (or why it could not be asked).
        message: String,
    },
    /// Nothing to authenticate with.
    #[error(
        "no credential for node `{node}`: {} does not exist; give a join token (`--join-token`, from `gigawatt node enroll {node}`) or a node token (`--token`)",
        path.display()
    )]
    Missing {
        /// The node.
        node: String,
        /// The credential file looked for.
        path: PathBuf,
    },
}

/// Reads the credential kept in `path`, if the file exists.
///
/// # Errors
/// The file is unreadable, readable by others, or does not hold a token.
pub fn read(path: &Path) -> Result<Option<String>, CredentialError> {
    let fail = |message: String| CredentialError::File { path: path.to_path_buf(), message };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e.to_string())),
    };
    if !meta.file_type().is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(fail(format!(
            "mode {:o} lets others read it; `chmod 600 {}`",
            meta.permissions().mode() & 0o777,
            path.display()
        )));
    }
    if meta.len() > 4096 {
        return Err(fail("larger than a token".into()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let token = text.trim();
    if !token.starts_with("gw_") || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(fail("does not hold a gigawatt token (`gw_…`)".into()));
    }
    Ok(Some(token.to_string()))
}

/// Writes the credential to `path` (mode 0600; the file must not exist yet).
fn write(path: &Path, token: &str) -> Result<(), CredentialError> {
    let fail = |message: String| CredentialError::File { path: path.to_path_buf(), message };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("creating its directory: {e}")))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| fail(e.to_string()))?;
    f.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| fail(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// The node's credential: `token` when given, else the one kept in `path`, else one
/// obtained with `join_token` from the control plane at `server` and kept in `path`.
///
/// # Errors
/// [`CredentialError`]: an unusable file, a refused join token, or nothing given.
pub async fn resolve(
    server: &str,
    node: &str,
    token: Option<&str>,
    join_token: Option<&str>,
    path: &Path,
    ca: Option<&Path>,
) -> Result<String, CredentialError> {
    if let Some(t) = token {
        return Ok(t.to_string());
    }
    if let Some(t) = read(path)? {
        return Ok(t);
    }
    let Some(join) = join_token else {
        return Err(CredentialError::Missing { node: node.to_string(), path: path.to_path_buf() });
    };
    let enrol = |message: String| CredentialError::Enrol { node: node.to_string(), message };
    let client = Client::with_ca(server, join, ca).map_err(enrol)?;
    let body = gigawatt_api::AgentEnroll { node: node.to_string() };
    let cred = client.enroll(&body, Duration::from_secs(30)).await.map_err(|e| enrol(e.to_string()))?;
    write(path, &cred.token)?;
    tracing::info!(node, credential = cred.id, file = %path.display(), "enrolled: node credential kept");
    Ok(cred.token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credential");
        write(&path, "gw_abc").unwrap();
        assert_eq!(read(&path).unwrap().as_deref(), Some("gw_abc"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "hello\n").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("does not hold a gigawatt token"));
        assert_eq!(read(&dir.path().join("absent")).unwrap(), None);
    }
}
