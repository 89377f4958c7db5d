//! `gigawatt fleet …` and `gigawatt catalog`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use gigawatt_fleet::{Fleet, GpuCatalog};
use gigawatt_units::Timestamp;

/// Fleet files.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Validate fleet files and report every problem with file, line, field and fix.
    Check {
        /// Fleet files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Summarise a fleet: sites, racks, nodes, GPUs and power budgets.
    Show {
        /// Fleet file (TOML).
        file: PathBuf,
        /// Date at which to evaluate grid phases (YYYY-MM-DD); default: every phase.
        #[arg(long)]
        at: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the fleet file format.
    Schema,
}

/// Arguments of `gigawatt catalog`.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// Runs a `fleet` subcommand.
pub fn run(cmd: FleetCommand) -> Result<()> {
    match cmd {
        FleetCommand::Check { files } => {
            let mut failed = 0;
            for f in &files {
                match gigawatt_fleet::load(f) {
                    Ok(fleet) => crate::outln!(
                        "{}: ok ({} sites, {} nodes, {} GPUs)",
                        f.display(),
                        fleet.sites.len(),
                        fleet.node_count(),
                        fleet.gpu_count()
                    ),
                    Err(e) => {
                        failed += 1;
                        eprintln!("{:#}", anyhow::Error::from(e));
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} fleet file(s) have problems", files.len());
            }
            Ok(())
        }
        FleetCommand::Show { file, at, json } => show(&file, at.as_deref(), json),
        FleetCommand::Schema => {
            crate::outln!("{}", serde_json::to_string_pretty(&gigawatt_fleet::json_schema())?);
            Ok(())
        }
    }
}

fn show(file: &Path, at: Option<&str>, json: bool) -> Result<()> {
    let fleet = gigawatt_fleet::load(file)?;
    let at = at
        .map(|d| {
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .with_context(|| format!("--at: `{d}` is not a date; write e.g. 2027-06-01"))
                .map(|d| Timestamp(d.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp_millis())))
        })
        .transpose()?;
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&fleet)?);
        return Ok(());
    }
    crate::outln!(
        "{}: {} sites, {} racks, {} nodes, {} GPUs",
        file.display(),
        fleet.sites.len(),
        fleet.sites.iter().map(|s| s.racks.len()).sum::<usize>(),
        fleet.node_count(),
        fleet.gpu_count()
    );
    for s in &fleet.sites {
        let nodes: usize = s.racks.iter().map(|r| r.nodes.len()).sum();
        let gpus: u64 = s.racks.iter().flat_map(|r| &r.nodes).map(|n| u64::from(n.gpu_count)).sum();
        let certs: Vec<&str> = s.certifications.iter().map(|c| c.as_str()).collect();
        crate::outln!(
            "\n{} — {} ({}, {}, {} law)  certifications: [{}]  PUE {}",
            s.id,
            s.name,
            s.country,
            s.region,
            s.jurisdiction,
            certs.join(", "),
            s.pue.0
        );
        crate::outln!("  {} racks, {} nodes, {} GPUs", s.racks.len(), nodes, gpus);
        match at {
            Some(t) => crate::outln!("  grid {} → IT budget {}", s.grid_capacity_at(t), s.it_budget_at(t)),
            None => {
                for p in &s.grid {
                    let t = p.from_timestamp();
                    crate::outln!("  from {}: grid {} → IT budget {}", p.from, p.capacity, s.it_budget_at(t));
                }
            }
        }
    }
    Ok(())
}

/// Lists the catalog.
pub fn catalog(args: &CatalogArgs) -> Result<()> {
    let cat = GpuCatalog::builtin();
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&cat)?);
        return Ok(());
    }
    let w = cat.iter().map(|g| g.id.len()).max().unwrap_or(5).max(5);
    let v = cat.iter().map(|g| g.vendor.len()).max().unwrap_or(6).max(6);
    crate::outln!(
        "{:<w$} {:<v$} {:>7} {:>7} {:>9} {:>8} {:>8}",
        "model",
        "vendor",
        "TDP W",
        "idle W",
        "min cap W",
        "mem GB",
        "BF16 TF"
    );
    for g in cat.iter() {
        crate::outln!(
            "{:<w$} {:<v$} {:>7} {:>7} {:>9} {:>8} {:>8}",
            g.id,
            g.vendor,
            g.tdp.0,
            g.idle.0,
            g.min_power_limit.0,
            g.memory_gb,
            g.bf16_dense_tflops.map_or_else(|| "-".into(), |t| format!("{t:.0}"))
        );
    }
    crate::outln!("\nSources: `gigawatt catalog --json` lists the source of every figure.");
    Ok(())
}

/// The openb fleet: the fleet file's model declarations and site, with its node list
/// replaced by `nodes` when given.
pub fn openb_fleet(fleet_file: &Path, nodes: Option<&Path>) -> Result<Fleet> {
    let loaded = match nodes {
        None => gigawatt_fleet::load(fleet_file),
        Some(n) => gigawatt_fleet::load_with_nodes(fleet_file, n),
    };
    loaded.map_err(anyhow::Error::from)
}
