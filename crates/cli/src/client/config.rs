//! Where the client finds the server and its token: flags, then the environment, then
//! the config file, then the default server (there is no default token).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// The server used when no flag, variable or config file names one: what `gigawatt
/// serve` listens on by default.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// Environment variable naming the server.
pub const ENV_SERVER: &str = "GIGAWATT_SERVER";
/// Environment variable holding the token.
pub const ENV_TOKEN: &str = "GIGAWATT_TOKEN";

/// The config file, as written by people: both keys optional, nothing else allowed (a
/// misspelt key is an error rather than a silently ignored setting).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    server: Option<String>,
    token: Option<String>,
}

/// Where a setting came from, so that errors can say which one to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// An environment variable.
    Env(&'static str),
    /// The config file.
    File(PathBuf),
    /// The built-in default.
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => write!(f, "the command line"),
            Source::Env(v) => write!(f, "${v}"),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Default => write!(f, "the default"),
        }
    }
}

/// The resolved connection settings.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Base URL, without a trailing `/`.
    pub server: String,
    /// Where the server URL came from.
    pub server_source: Source,
    /// The bearer token.
    pub token: String,
}

/// The config file path: `$XDG_CONFIG_HOME/gigawatt/config.toml` when that variable is
/// set to an absolute path (as the XDG spec asks), else `$HOME/.config/gigawatt/config.toml`.
pub fn config_path() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".config"))
    })?;
    Some(base.join("gigawatt").join("config.toml"))
}

/// How the config file path reads in messages (with `~` when it is under the home).
pub fn config_path_for_people() -> String {
    config_path().map_or_else(|| "~/.config/gigawatt/config.toml".into(), |p| p.display().to_string())
}

fn read_config(path: &Path) -> anyhow::Result<Option<ConfigFile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read the config file {}", path.display())),
    };
    let cfg: ConfigFile = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}; the file holds `server = \"http://HOST:PORT\"` and `token = \"gw_...\"`",
            path.display(),
            one_line(&e.to_string())
        )
    })?;
    Ok(Some(cfg))
}

/// Squeezes a multi-line parser message (with its source excerpt) onto one line.
pub fn one_line(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    // toml's messages are "TOML parse error at line N, column M", an excerpt of the
    // source (lines starting with a digit or `|`), then the message proper.
    let head = lines.first().copied().unwrap_or_default();
    let rest: Vec<&str> =
        lines.iter().skip(1).copied().filter(|l| !l.starts_with('|') && !is_excerpt(l)).collect();
    if rest.is_empty() { head.to_string() } else { format!("{head}: {}", rest.join(" ")) }
}

fn is_excerpt(line: &str) -> bool {
    // "2 | gpus = 3"
    line.split_once('|')
        .is_some_and(|(n, _)| !n.trim().is_empty() && n.trim().bytes().all(|b| b.is_ascii_digit()))
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Resolves the server and token: `flag_*` first, then the environment, then the config
/// file (read only when needed, so a broken file does not get in the way of flags), then
/// the default server.
pub fn resolve(flag_server: Option<String>, flag_token: Option<String>) -> anyhow::Result<Resolved> {
    let mut server = non_empty(flag_server)
        .map(|s| (s, Source::Flag))
        .or_else(|| non_empty(std::env::var(ENV_SERVER).ok()).map(|s| (s, Source::Env(ENV_SERVER))));
    let mut token = non_empty(flag_token).or_else(|| non_empty(std::env::var(ENV_TOKEN).ok()));
    if (server.is_none() || token.is_none())
        && let Some(path) = config_path()
        && let Some(cfg) = read_config(&path)?
    {
        if server.is_none() {
            server = non_empty(cfg.server).map(|s| (s, Source::File(path.clone())));
        }
        if token.is_none() {
            token = non_empty(cfg.token);
        }
    }
    let (server, server_source) = server.unwrap_or_else(|| (DEFAULT_SERVER.to_string(), Source::Default));
    let server = normalise_server(&server)
        .with_context(|| format!("the server address from {server_source} is not usable"))?;
    let Some(token) = token else {
        bail!(
            "no API token: pass --token TOKEN, set {ENV_TOKEN}, or write `token = \"gw_...\"` in {} \
             (`gigawatt serve` prints an admin token on first start; `gigawatt admin create-token` issues more)",
            config_path_for_people()
        );
    };
    if token.chars().any(|c| c.is_control() || c == ' ') {
        bail!(
            "the token contains spaces or control characters; copy it again (it looks like gw_ and 43 characters)"
        );
    }
    Ok(Resolved { server, server_source, token })
}

/// Checks a server URL and drops its trailing `/`.
pub fn normalise_server(s: &str) -> anyhow::Result<String> {
    let s = s.trim().trim_end_matches('/');
    let Some((scheme, rest)) = s.split_once("://") else {
        bail!("`{s}` has no scheme; write it as a URL such as {DEFAULT_SERVER}");
    };
    if scheme != "http" && scheme != "https" {
        bail!("`{s}` is not an http:// or https:// URL; write it such as {DEFAULT_SERVER}");
    }
    if rest.is_empty() || rest.contains(['?', '#']) {
        bail!("`{s}` names no host; write it such as {DEFAULT_SERVER}");
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_checked_and_trimmed() {
        assert_eq!(normalise_server("http://h:1/").expect("valid"), "http://h:1");
        assert!(normalise_server("h:1").is_err());
        assert!(normalise_server("ftp://h").is_err());
        assert!(normalise_server("http://").is_err());
    }

    #[test]
    fn toml_errors_fit_on_one_line() {
        let e = toml::from_str::<ConfigFile>("server = \"x\"\ntokne = \"y\"\n").expect_err("unknown key");
        let line = one_line(&e.to_string());
        assert!(line.contains("line 2") && line.contains("tokne") && !line.contains('\n'), "{line}");
    }
}
