//! Prints a fleet file's size and power budgets, or its problems.
//!
//! `cargo run -p gigawatt-fleet --example fleet_stats -- fleets/france.toml`

use std::path::PathBuf;

use gigawatt_fleet::load_with_warnings;
use gigawatt_units::Watts;

fn main() {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fleet_stats FLEET.toml");
        std::process::exit(2);
    };
    let loaded = match load_with_warnings(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let fleet = &loaded.fleet;
    println!(
        "{}: {} sites, {} nodes, {} GPUs",
        path.display(),
        fleet.sites.len(),
        fleet.node_count(),
        fleet.gpu_count()
    );
    for s in &fleet.sites {
        let full: Watts = s.racks.iter().map(|r| r.full_load_power(&fleet.catalog)).sum();
        let nodes: usize = s.racks.iter().map(|r| r.nodes.len()).sum();
        let gpus: u64 = s.racks.iter().map(|r| r.gpu_count()).sum();
        println!(
            "  {} ({}): {} racks, {nodes} nodes, {gpus} GPUs, full load {full}",
            s.id,
            s.country,
            s.racks.len()
        );
        for p in &s.grid {
            println!(
                "    from {}: grid {} → IT budget {}",
                p.from,
                p.capacity,
                s.it_budget_at(p.from_timestamp())
            );
        }
    }
    for w in &loaded.warnings {
        println!("warning: {w}");
    }
}
