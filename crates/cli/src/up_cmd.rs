//! `gigawatt up`: a whole cluster on one machine. It starts the control plane and one
//! simulated agent per node, each a separate process on loopback, exactly as they run
//! in production (only the GPUs are simulated), and stops them all on Ctrl-C.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::paths::bundled;
use crate::serve_cmd::{default_data_dir, parse_duration};

/// Options of `gigawatt up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The fleet file.
    #[arg(long, default_value = "fleets/france.toml")]
    pub fleet: PathBuf,
    /// How many nodes get a simulated agent: the first N GPU nodes of the fleet, in file
    /// order (the other nodes take no work).
    #[arg(long, default_value_t = 4)]
    pub agents: usize,
    /// Exactly these nodes get an agent (comma-separated names) instead of the first N.
    #[arg(long, value_delimiter = ',', conflicts_with = "agents")]
    pub nodes: Vec<String>,
    /// Address the control plane listens on (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// The event log, as for `serve`. Default: SQLite in the data directory.
    #[arg(long)]
    pub db: Option<String>,
    /// Where the log, task output and the agents' working directories live. Default:
    /// `$XDG_DATA_HOME/gigawatt` or `~/.local/share/gigawatt`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Heartbeat interval of the agents.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// Grace between SIGTERM and SIGKILL when a task is stopped.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,
}

/// A child process whose stderr is copied to ours with a prefix.
struct Proc {
    name: String,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn echo(prefix: String, from: impl Read + Send + 'static, lines: Option<mpsc::Sender<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if let Some(tx) = &lines {
                let _ = tx.send(line.clone());
            }
            // The admin token goes to stdout once, below; never twice, never to logs.
            if !line.starts_with("admin token:") {
                eprintln!("{prefix} {line}");
            }
        }
    });
}

fn terminate(p: &mut Proc) {
    if let Ok(pid) = i32::try_from(p.child.id()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
}

/// Runs the cluster until Ctrl-C or SIGTERM.
pub fn up(a: &UpArgs) -> anyhow::Result<()> {
    let fleet_path = bundled(&a.fleet.to_string_lossy());
    let fleet = gigawatt_fleet::load(&fleet_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let gpu_nodes: Vec<(String, String, u32)> = fleet
        .nodes()
        .filter_map(|(_, _, n)| Some((n.name.clone(), n.gpu_model.clone()?, n.gpu_count)))
        .filter(|(_, _, c)| *c > 0)
        .collect();
    let chosen: Vec<(String, String, u32)> = if a.nodes.is_empty() {
        if a.agents == 0 || a.agents > gpu_nodes.len() {
            bail!(
                "--agents {}: the fleet {} has 1..={} GPU nodes",
                a.agents,
                fleet_path.display(),
                gpu_nodes.len()
            );
        }
        gpu_nodes.into_iter().take(a.agents).collect()
    } else {
        a.nodes
            .iter()
            .map(|name| {
                gpu_nodes.iter().find(|(n, _, _)| n == name).cloned().with_context(|| {
                    format!("--nodes: `{name}` is not a GPU node of {}", fleet_path.display())
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let data_dir = a.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let db = match &a.db {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", data_dir.join("gigawatt.db").display()),
    };
    let exe = std::env::current_exe().context("finding the gigawatt binary")?;

    // 1. The control plane.
    let mut serve = Command::new(&exe);
    serve
        .arg("serve")
        .arg("--fleet")
        .arg(&fleet_path)
        .args(["--db", &db, "--listen", &a.listen.to_string(), "--require-agents", "--no-hints"])
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--heartbeat-interval", &humantime::format_duration(a.heartbeat_interval).to_string()])
        .args(["--grace", &humantime::format_duration(a.grace).to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = serve.spawn().context("starting `gigawatt serve`")?;
    let (tx, rx) = mpsc::channel();
    if let Some(err) = child.stderr.take() {
        echo("[serve]".into(), err, Some(tx));
    }
    let mut server = Proc { name: "serve".into(), child };
    let started = Instant::now();
    let (mut addr, mut admin_token) = (None, None);
    while addr.is_none() {
        if let Ok(Some(status)) = server.child.try_wait() {
            bail!("the control plane exited ({status}) before it listened; its messages are above");
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the control plane did not start within 2 minutes");
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(t) = line.strip_prefix("admin token: ") {
                    admin_token = Some(t.trim().to_string());
                }
                if let Some(rest) = line.strip_prefix("gigawatt control plane on ") {
                    addr = Some(rest.trim().to_string());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the control plane closed its output"),
        }
    }
    let server_url = addr.unwrap_or_default();
    // The banner ends with the admin token (a fresh log) or a note that there is none.
    let banner_end = Instant::now() + Duration::from_secs(5);
    while admin_token.is_none() && Instant::now() < banner_end {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.starts_with("admin token: ") => {
                admin_token = line.strip_prefix("admin token: ").map(|t| t.trim().to_string());
            }
            Ok(line) if line.contains("no admin token printed") => break,
            _ => {}
        }
    }

    // 2. Each agent's own credential (it acts for its node only), written straight
    // into the log.
    let mut agent_tokens = Vec::new();
    for (node, _, _) in &chosen {
        let out = Command::new(&exe)
            .args(["admin", "create-token", "--role", "agent", "--node", node])
            .args(["--name", &format!("gigawatt up: agent of {node}"), "--db", &db])
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .with_context(|| format!("issuing the credential of node {node}"))?;
        if !out.status.success() {
            bail!(
                "issuing the credential of node {node} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let token = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("agent token: ").map(str::to_string))
            .context("`admin create-token` printed no token")?;
        agent_tokens.push(token);
    }
    // The server picks up tokens written straight into the log on first use (it reads
    // the log again at most once a second): make that first use ours, before the agents.
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let known = Instant::now() + Duration::from_secs(30);
    while let Some(last) = agent_tokens.last() {
        let ok = http
            .get(format!("{server_url}/v1/whoami"))
            .bearer_auth(last)
            .send()
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        if Instant::now() > known {
            bail!("the control plane did not accept the agents' credentials within 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // 3. One agent per node.
    let mut agents = Vec::new();
    for ((node, model, count), agent_token) in chosen.iter().zip(&agent_tokens) {
        let mut cmd = Command::new(&exe);
        cmd.args(["agent", "--server", &server_url, "--node", node])
            .args(["--simulate", &format!("{count}x{model}")])
            .arg("--data-dir")
            .arg(data_dir.join("agents").join(node))
            .env("GIGAWATT_TOKEN", agent_token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting the agent of {node}"))?;
        if let Some(err) = child.stderr.take() {
            echo(format!("[agent {node}]"), err, None);
        }
        agents.push(Proc { name: format!("agent {node}"), child });
    }

    let nodes: Vec<&str> = chosen.iter().map(|(n, _, _)| n.as_str()).collect();
    println!(
        "gigawatt is up: control plane on {server_url}, {} simulated agents ({})",
        agents.len(),
        nodes.join(", ")
    );
    match &admin_token {
        Some(t) => {
            println!("admin token: {t}");
            println!();
            println!("  export GIGAWATT_SERVER={server_url}");
            println!("  export GIGAWATT_TOKEN={t}");
            println!("  gigawatt tenant create demo");
            println!("  gigawatt submit examples/jobs/hello-gang.toml --tenant demo");
            println!("  gigawatt logs <ID>          # each rank prints its rank and GPUs");
            println!("  gigawatt agents; gigawatt top");
        }
        None => {
            println!("  (an existing log: use its admin token, or `gigawatt admin create-token --db {db}`)")
        }
    }
    println!("Ctrl-C stops everything.");

    // 4. Run until interrupted, or until the control plane dies.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let serve_died = rt.block_on(async {
        let signal = crate::serve_cmd::shutdown_signal();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                () = &mut signal => return None,
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Some(status);
            }
            for p in &mut agents {
                if let Ok(Some(status)) = p.child.try_wait() {
                    eprintln!("[up] {} exited ({status}); its node will be declared lost", p.name);
                    p.name.push_str(" (exited)");
                }
            }
            agents.retain(|p| !p.name.ends_with("(exited)"));
        }
    });
    // Agents first (they stop their tasks), then the control plane.
    for p in &mut agents {
        terminate(p);
    }
    let deadline = Instant::now() + a.grace + Duration::from_secs(5);
    for p in &mut agents {
        while Instant::now() < deadline && matches!(p.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(agents);
    terminate(&mut server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && matches!(server.child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    match serve_died {
        Some(status) => bail!("the control plane exited ({status}); its messages are above"),
        None => Ok(()),
    }
}
