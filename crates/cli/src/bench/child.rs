//! A `gigawatt serve` child process for the benchmarks: started from this very binary on
//! a free port, its stderr watched for the first admin token and its start-up report,
//! and killed when dropped, so that a failed benchmark never leaves a server behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The fleet file.
    pub fleet: PathBuf,
    /// The event log URL.
    pub db: String,
    /// SQLite durability (`full` or `normal`).
    pub durability: String,
    /// `--snapshot-every`.
    pub snapshot_every: u64,
    /// Copy the server's stderr to ours, prefixed with `[server]`.
    pub echo: bool,
    /// More `gigawatt serve` arguments, after the others.
    pub extra_args: Vec<String>,
}

/// A running `gigawatt serve`.
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// When it was spawned.
    pub spawned: Instant,
    lines: Arc<Mutex<Vec<String>>>,
}

/// A port nobody listens on now (the kernel picks it; it stays free until the child binds
/// it, barring a race with another program doing the same).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

impl ServerProcess {
    /// Spawns `gigawatt serve` with `opts` on a free local port.
    pub fn spawn(opts: &ServeOptions) -> anyhow::Result<ServerProcess> {
        let exe = std::env::current_exe().context("finding the gigawatt binary to run `serve`")?;
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let spawned = Instant::now();
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--fleet")
            .arg(&opts.fleet)
            .arg("--db")
            .arg(&opts.db)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--durability")
            .arg(&opts.durability)
            .arg("--snapshot-every")
            .arg(opts.snapshot_every.to_string())
            .args(&opts.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting `gigawatt serve`")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let lines = lines.clone();
            let echo = opts.echo;
            // Drain stderr for the child's whole life, or it blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if echo {
                        eprintln!("[server] {line}");
                    }
                    if let Ok(mut l) = lines.lock() {
                        l.push(line);
                    }
                }
            });
        }
        Ok(ServerProcess { child, addr, spawned, lines })
    }

    /// The server's base URL.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `GET /readyz` answers 200 and returns the time from spawn to then.
    ///
    /// The server binds its port before loading the log, so a connection made early
    /// waits in the accept queue and is answered the moment it serves: polling adds
    /// almost nothing to the time measured.
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let deadline = self.spawned + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("`gigawatt serve` exited ({status}) before it was ready:\n{}", self.stderr_tail(20));
            }
            if Instant::now() > deadline {
                bail!("`gigawatt serve` was not ready after {timeout:?}:\n{}", self.stderr_tail(20));
            }
            match readyz(self.addr, deadline) {
                Ok(true) => return Ok(self.spawned.elapsed()),
                Ok(false) | Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// The first admin token, printed on stderr when the log was empty.
    #[must_use]
    pub fn admin_token(&self) -> Option<String> {
        let lines = self.lines.lock().ok()?;
        lines.iter().find_map(|l| l.strip_prefix("admin token: ").map(|t| t.trim().to_string()))
    }

    /// The start-up report line (`log … records …, loaded in … s`).
    #[must_use]
    pub fn load_line(&self) -> Option<String> {
        let lines = self.lines.lock().ok()?;
        lines.iter().find(|l| l.trim_start().starts_with("log ")).map(|l| l.trim().to_string())
    }

    /// The last `n` lines the server wrote on stderr.
    #[must_use]
    pub fn stderr_tail(&self, n: usize) -> String {
        let Ok(lines) = self.lines.lock() else { return String::new() };
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Stops it (SIGKILL: everything it answered is committed already).
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `GET /readyz` on a fresh connection: whether it answered 200.
fn readyz(addr: SocketAddr, deadline: Instant) -> std::io::Result<bool> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    s.set_read_timeout(Some(wait))?;
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    Ok(head.starts_with(b"HTTP/1.1 200"))
}
