//! `gigawatt agent` (the node agent, see the `gigawatt-agent` crate) and the hidden
//! `gigawatt agent-guard` it starts to fence its tasks if it dies.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use gigawatt_agent::{AgentConfig, BackendChoice, GuardSpawn};

use crate::serve_cmd::default_data_dir;

/// Options of `gigawatt agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The control plane's URL.
    #[arg(long, env = "GIGAWATT_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// This node's own token (role `agent`, bound to this node: `gigawatt token create
    /// --role agent --node NODE`). Without it, the credential file is used, or made from
    /// a join token. Prefer the environment variable: a command line is visible to every
    /// user of the machine.
    #[arg(long, env = "GIGAWATT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A one-time join token (`gigawatt node enroll NODE` prints one): at the first
    /// start, the agent exchanges it for the node's credential and keeps that in the
    /// credential file.
    #[arg(long, env = "GIGAWATT_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Where the node's credential is kept (mode 0600). Default: `credential` in the
    /// data directory.
    #[arg(long)]
    pub credential_file: Option<PathBuf>,
    /// The CA certificate (PEM) that signed the control plane's certificate (for
    /// `https://` with a private CA).
    #[arg(long, value_name = "FILE", env = "GIGAWATT_CA")]
    pub ca_file: Option<PathBuf>,
    /// This node's name in the fleet file.
    #[arg(long)]
    pub node: String,
    /// Simulate the GPUs instead of reading them through NVML: `COUNTxMODEL`, e.g.
    /// `8xH100` (`gigawatt catalog` lists the models).
    #[arg(long, value_name = "COUNTxMODEL")]
    pub simulate: Option<String>,
    /// Where task working directories and output live. Default: the data directory's
    /// `agent/NODE`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The address other nodes reach this one at (a gang's `GIGAWATT_MASTER_ADDR`).
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
}

/// Options of the hidden `gigawatt agent-guard`.
#[derive(Debug, Args)]
pub struct GuardArgs {
    /// The agent instance whose processes to kill when it dies.
    #[arg(long)]
    pub instance: String,
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn agent(a: &AgentArgs) -> anyhow::Result<()> {
    crate::serve_cmd::init_tracing_for("gigawatt_agent=info");
    let backend = match &a.simulate {
        Some(s) => BackendChoice::Simulated(
            gigawatt_agent::parse_simulate(s).map_err(|e| anyhow::anyhow!("--simulate `{s}`: {e}"))?,
        ),
        None => BackendChoice::Nvml,
    };
    let data_dir = a.data_dir.clone().unwrap_or_else(|| default_data_dir().join("agent").join(&a.node));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let exe = std::env::current_exe().context("finding the gigawatt binary for the guard")?;
    let rt =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let server = a.server.trim_end_matches('/').to_string();
    let credential_file = a.credential_file.clone().unwrap_or_else(|| data_dir.join("credential"));
    let token = rt.block_on(gigawatt_agent::credential::resolve(
        &server,
        &a.node,
        a.token.as_deref(),
        a.join_token.as_deref(),
        &credential_file,
        a.ca_file.as_deref(),
    ))?;
    let config = AgentConfig {
        server,
        token,
        ca_file: a.ca_file.clone(),
        node: a.node.clone(),
        backend,
        data_dir,
        address: a.address.clone(),
        guard: Some(GuardSpawn { program: exe, args: vec!["agent-guard".into()] }),
    };
    rt.block_on(gigawatt_agent::run(config, crate::serve_cmd::shutdown_signal()))?;
    Ok(())
}

/// Runs the guard until its agent dies.
pub fn guard(a: &GuardArgs) -> anyhow::Result<()> {
    match gigawatt_agent::guard_main(&a.instance) {
        0 => Ok(()),
        code => anyhow::bail!("the agent guard ended with status {code}"),
    }
}
