//! Helpers for driving the real `gigawatt` binary: where the bundled files are, running a
//! command and capturing what it said, small input files, and the checks every failing
//! command must pass (a clean error, never a panic).

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// A bundled file, e.g. `traces/openb/openb_pod_list_default.csv`, which must exist.
pub fn bundled(rel: &str) -> PathBuf {
    let p = repo().join(rel);
    assert!(p.exists(), "bundled file {} is missing", p.display());
    p
}

/// What a finished command said.
pub struct Out {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for failure messages.
    pub cmdline: String,
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = |s: &str| -> String {
            if s.chars().count() > 4000 {
                format!("{}…", s.chars().take(4000).collect::<String>())
            } else {
                s.into()
            }
        };
        write!(
            f,
            "`{}` exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.code,
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }
}

impl Out {
    /// Asserts exit code 0 and no panic.
    #[track_caller]
    pub fn ok(&self) -> &Out {
        self.no_panic();
        assert_eq!(self.code, Some(0), "expected success\n{self:?}");
        self
    }

    /// Asserts a clean failure: exit code 1 (ours, not clap's 2 or a panic's 101), an
    /// `error:` on stderr, and no result on stdout.
    #[track_caller]
    pub fn fails(&self) -> &Out {
        self.no_panic();
        assert_eq!(self.code, Some(1), "expected a clean failure (exit code 1)\n{self:?}");
        assert!(self.stderr.contains("error:"), "a failure says `error:`\n{self:?}");
        assert!(self.stdout.trim().is_empty(), "a failure prints no results on stdout\n{self:?}");
        self
    }

    /// Asserts that nothing panicked.
    #[track_caller]
    pub fn no_panic(&self) -> &Out {
        assert!(
            !self.stderr.contains("panicked") && self.code != Some(101) && self.code.is_some(),
            "the command panicked or crashed\n{self:?}"
        );
        self
    }

    /// Asserts that stderr contains every one of `needles`.
    #[track_caller]
    pub fn stderr_has(&self, needles: &[&str]) -> &Out {
        let missing: Vec<&&str> = needles.iter().filter(|n| !self.stderr.contains(**n)).collect();
        assert!(missing.is_empty(), "stderr lacks {missing:?}\n{self:?}");
        self
    }

    /// Asserts that stdout contains every one of `needles`.
    #[track_caller]
    pub fn stdout_has(&self, needles: &[&str]) -> &Out {
        let missing: Vec<&&str> = needles.iter().filter(|n| !self.stdout.contains(**n)).collect();
        assert!(missing.is_empty(), "stdout lacks {missing:?}\n{self:?}");
        self
    }

    /// Stdout parsed as exactly one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}\n{self:?}"))
    }
}

/// Runs `gigawatt ARGS` from the test's working directory (the crate directory, where no
/// bundled file resolves relative to the current directory).
pub fn gigawatt<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(None, args)
}

/// Runs `gigawatt ARGS` with `dir` as the current directory.
pub fn gigawatt_in<I, S>(dir: &Path, args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Some(dir), args)
}

fn run<I, S>(dir: Option<&Path>, args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut cmd = Command::cargo_bin("gigawatt").expect("the gigawatt binary is built for integration tests");
    cmd.args(&args).env("RUST_BACKTRACE", "0");
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let output = cmd.output().expect("gigawatt runs");
    Out {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        cmdline: std::iter::once("gigawatt".to_string())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write a test input");
    p
}

/// A two-node, 16-GPU cluster in the openb node-list format: experiments on it take
/// milliseconds.
pub const TINY_NODES: &str = "sn,cpu_milli,memory_mib,gpu,model\n\
                              t0,64000,262144,8,T4\n\
                              t1,64000,262144,8,T4\n";

/// Ten single-GPU sharing pods of 10..=100 thousandths of a GPU: inflating them moves
/// the arrived load on [`TINY_NODES`] in steps under 1%, so every bucket is filled.
pub fn tiny_pods() -> String {
    let mut s = String::from("name,cpu_milli,memory_mib,num_gpu,gpu_milli\n");
    for i in 1..=10 {
        s.push_str(&format!("p{i:02},1000,1024,1,{}\n", i * 10));
    }
    s
}
