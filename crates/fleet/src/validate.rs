//! Sanity checks shared by the fleet-file loader and [`Fleet::new`](crate::Fleet::new).
//!
//! Each check returns a [`Problem`] (what is wrong and how to fix it) without a location,
//! so that the loader can attach a file position and `Fleet::new` a model path, and both
//! say the same thing in the same words.

use std::collections::HashMap;

use chrono::NaiveDate;
use gigawatt_units::Watts;

use crate::catalog::{GpuCatalog, GpuSpec};
use crate::country::{is_iso_3166_alpha2, suggest_code};
use crate::diag::{Diagnostic, Diagnostics};
use crate::model::{Node, Provisioning, Rack, Site};

/// What is wrong and how to fix it, before a location is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub problem: String,
    pub fix: String,
}

pub(crate) fn problem(problem: impl Into<String>, fix: impl Into<String>) -> Problem {
    Problem { problem: problem.into(), fix: fix.into() }
}

/// Most GPUs one server holds; more is a unit mistake (GPUs per rack, per site).
pub(crate) const MAX_GPUS_PER_NODE: u32 = 64;
/// Largest plausible rack power limit: announced designs top out around 600 kW.
pub(crate) const MAX_RACK_KW: f64 = 1000.0;
/// Largest plausible site grid connection: 10 GW. More is a unit mistake (W for MW).
pub(crate) const MAX_SITE_MW: f64 = 10_000.0;
/// PUE above this is not a real facility (the 2024 industry average is 1.56).
pub(crate) const MAX_PUE: f64 = 3.0;

pub(crate) fn id(kind: &str, s: &str) -> Option<Problem> {
    if s.is_empty() {
        return Some(problem(
            format!("{kind} is empty"),
            "give it a short name of letters, digits and `-`, e.g. `valence`",
        ));
    }
    if s.len() > 128 {
        return Some(problem(
            format!("{kind} is {} bytes long; the limit is 128", s.len()),
            "use a shorter name",
        ));
    }
    let bad = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))?;
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':') { c } else { '-' })
        .collect();
    Some(problem(
        format!("{kind} `{s}` contains {bad:?}; names may use ASCII letters, digits, `-`, `_`, `.` and `:`"),
        format!("write e.g. `{cleaned}`"),
    ))
}

pub(crate) fn country(s: &str) -> Option<Problem> {
    if is_iso_3166_alpha2(s) {
        return None;
    }
    let fix = match suggest_code(s) {
        Some(code) => format!("write `{code}`"),
        None => "write the two-letter ISO 3166-1 alpha-2 code, e.g. `FR`, `DE`, `US`, `SG`".into(),
    };
    let what = if suggest_code(s).is_some_and(|c| c.eq_ignore_ascii_case(s)) {
        format!("country `{s}` must be upper case")
    } else {
        format!("country `{s}` is not an ISO 3166-1 alpha-2 code")
    };
    Some(problem(what, fix))
}

/// A jurisdiction: the law a site's operator answers to, as an upper-case code of 2 to 8
/// letters (`EU`, `US`, `JP`).
pub(crate) fn jurisdiction(s: &str) -> Option<Problem> {
    if (2..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let upper = s.to_ascii_uppercase();
    let fix = if upper != s && (2..=8).contains(&s.len()) && upper.bytes().all(|b| b.is_ascii_uppercase()) {
        format!("write `{upper}`")
    } else {
        "write an upper-case code of 2 to 8 letters, e.g. `EU`, `US`, `JP`".to_string()
    };
    Some(problem(format!("jurisdiction `{s}` is not an upper-case code"), fix))
}

pub(crate) fn pue(v: f64) -> Option<Problem> {
    if !v.is_finite() || v < 1.0 {
        Some(problem(
            format!("pue must be ≥ 1.0 (got {v})"),
            "PUE is facility power / IT power, so at least 1.0; e.g. 1.2 for a new \
             liquid-cooled site, 1.56 is the 2024 industry average",
        ))
    } else if v > MAX_PUE {
        Some(problem(
            format!("pue must be at most {MAX_PUE} (got {v})"),
            "PUE is a ratio such as 1.2, not a percentage",
        ))
    } else {
        None
    }
}

pub(crate) fn capacity_mw(v: f64) -> Option<Problem> {
    if !v.is_finite() || v < 0.0 {
        Some(problem(
            format!("capacity_mw must be ≥ 0 (got {v})"),
            "write the facility-side grid capacity in megawatts, e.g. `capacity_mw = 40`",
        ))
    } else if v > MAX_SITE_MW {
        Some(problem(
            format!("capacity_mw {v} is more than {MAX_SITE_MW} MW (10 GW)"),
            "the value is in megawatts: 40 MW is `capacity_mw = 40`",
        ))
    } else {
        None
    }
}

pub(crate) fn no_grid() -> Problem {
    problem(
        "site has no grid phase, so its power budget would be zero forever",
        "add at least one phase, e.g. `grid = [{ from = 2026-01-01, capacity_mw = 8 }]`",
    )
}

pub(crate) fn grid_order(prev: NaiveDate, this: NaiveDate) -> Option<Problem> {
    (this <= prev).then(|| {
        problem(
            format!("grid phases must be in date order with distinct dates: {this} is not after {prev}"),
            "sort the phases by `from`, and merge phases that start on the same day",
        )
    })
}

pub(crate) fn rack_limit_kw(v: f64) -> Option<Problem> {
    if !v.is_finite() || v <= 0.0 {
        Some(problem(
            format!("power_limit_kw must be > 0 (got {v})"),
            "write the rack's busbar/cooling limit in kilowatts, e.g. `power_limit_kw = 150`",
        ))
    } else if v > MAX_RACK_KW {
        Some(problem(
            format!("power_limit_kw {v} is more than {MAX_RACK_KW} kW for one rack"),
            "the value is in kilowatts: a 150 kW rack is `power_limit_kw = 150`",
        ))
    } else {
        None
    }
}

/// Problems of a node's shape: GPU count and model agree, CPU and memory are present.
pub(crate) fn node_shape(has_model: bool, gpus: u32, cpu: u64, memory: u64) -> Vec<(&'static str, Problem)> {
    let mut out = Vec::new();
    if gpus > MAX_GPUS_PER_NODE {
        out.push((
            "gpus",
            problem(
                format!("a node with {gpus} GPUs is not one server (the limit is {MAX_GPUS_PER_NODE})"),
                "count GPUs per server: 8 for an HGX/DGX board, 4 for a GB200 compute tray",
            ),
        ));
    }
    if has_model && gpus == 0 {
        out.push((
            "gpus",
            problem(
                "node has a GPU model but 0 GPUs",
                "set `gpus` to the number of GPUs per server, or remove `gpu_model` for a CPU-only node",
            ),
        ));
    }
    if !has_model && gpus > 0 {
        out.push((
            "gpu_model",
            problem(
                format!("node has {gpus} GPUs but no GPU model"),
                "set `gpu_model`, e.g. `gpu_model = \"H100-SXM\"`",
            ),
        ));
    }
    if cpu == 0 {
        out.push((
            "cpu_millicores",
            problem(
                "cpu_millicores must be > 0",
                "1000 millicores are one logical CPU, e.g. 224000 for 224 threads",
            ),
        ));
    }
    if memory == 0 {
        out.push((
            "memory_mib",
            problem("memory_mib must be > 0", "write memory in MiB, e.g. 2097152 for 2 TiB"),
        ));
    }
    out
}

/// Whether `nodes` can run in a rack limited to `limit` even with every GPU capped.
pub(crate) fn rack_fit(rack: &str, nodes: &[Node], limit: Watts, catalog: &GpuCatalog) -> Option<Problem> {
    let floor: Watts = nodes.iter().map(|n| n.min_capped_power(catalog)).sum();
    if floor <= limit {
        return None;
    }
    let per_node = nodes.iter().map(|n| n.min_capped_power(catalog)).max().unwrap_or(Watts(1));
    let fits = limit.0.checked_div(per_node.0).unwrap_or(0);
    Some(problem(
        format!(
            "rack `{rack}` needs {floor} even with every GPU at its minimum power limit, but its limit is {limit}"
        ),
        format!(
            "put at most {fits} such nodes in a rack, or raise power_limit_kw to at least {:.1}",
            floor.0 as f64 / 1e3
        ),
    ))
}

/// Full-load draw above the rack limit: allowed (the rack will be power-capped), but worth
/// a warning.
pub(crate) fn rack_oversubscribed(
    rack: &str,
    nodes: &[Node],
    limit: Watts,
    catalog: &GpuCatalog,
) -> Option<Problem> {
    let full: Watts = nodes.iter().map(|n| n.full_load_power(catalog)).sum();
    (full > limit).then(|| {
        problem(
            format!("rack `{rack}` needs {full} at full load but its limit is {limit}; its GPUs will be power-capped"),
            "this is allowed; to avoid capping, put fewer nodes in the rack or raise power_limit_kw",
        )
    })
}

/// Problems of a GPU model's figures, by field.
pub(crate) fn gpu_spec(s: &GpuSpec) -> Vec<(&'static str, Problem)> {
    let mut out = Vec::new();
    if s.tdp == Watts::ZERO {
        out.push((
            "tdp_w",
            problem("tdp_w must be > 0", "write the board power from the datasheet, e.g. `tdp_w = 700`"),
        ));
    }
    if s.idle > s.tdp {
        out.push((
            "idle_w",
            problem(
                format!("idle_w ({}) is above tdp_w ({})", s.idle, s.tdp),
                "idle draw is a fraction of TDP, typically 10–20%",
            ),
        ));
    }
    if s.min_power_limit > s.tdp {
        out.push((
            "min_power_limit_w",
            problem(
                format!("min_power_limit_w ({}) is above tdp_w ({})", s.min_power_limit, s.tdp),
                "use the `Min Power Limit` that `nvidia-smi -q -d POWER` reports",
            ),
        ));
    }
    if s.memory_gb == 0 {
        out.push((
            "memory_gb",
            problem("memory_gb must be > 0", "write device memory in GB, e.g. `memory_gb = 80`"),
        ));
    }
    for (field, v) in [("bf16_dense_tflops", s.bf16_dense_tflops), ("hbm_tbps", s.hbm_tbps)] {
        if let Some(v) = v.filter(|v| !v.is_finite() || *v <= 0.0) {
            out.push((field, problem(format!("{field} must be > 0 (got {v})"), "leave it out when unknown")));
        }
    }
    if !(s.dvfs_exponent.is_finite() && (0.5..=8.0).contains(&s.dvfs_exponent)) {
        out.push((
            "dvfs_exponent",
            problem(
                format!("dvfs_exponent must be between 0.5 and 8 (got {})", s.dvfs_exponent),
                "leave it out for the default 2.0 (dynamic power ∝ clock²)",
            ),
        ));
    }
    out
}

/// An oversubscription ratio: more than 0, at most 1 (admitting twice the budget).
pub(crate) fn oversubscription(r: f64) -> Option<Problem> {
    (!(r.is_finite() && r > 0.0 && r <= 1.0)).then(|| {
        problem(
            format!("oversubscription must be more than 0 and at most 1 (got {r})"),
            "write the share admitted beyond the budget, e.g. `oversubscription = 0.3` for 130%",
        )
    })
}

/// The lowest grid draw a curtailment may ask: ≥ 0 and below the largest grid phase.
pub(crate) fn curtailable_to_mw(mw: f64, grid: &[(NaiveDate, f64)]) -> Option<Problem> {
    let top = grid.iter().map(|(_, c)| *c).fold(0.0, f64::max);
    if !mw.is_finite() || mw < 0.0 {
        Some(problem(format!("curtailable_to_mw must be ≥ 0 (got {mw})"), "e.g. `curtailable_to_mw = 2`"))
    } else if !grid.is_empty() && mw > top {
        Some(problem(
            format!("curtailable_to_mw ({mw}) is above the largest grid phase ({top} MW)"),
            "give the lowest facility draw a grid operator may ask for, below the grid capacity",
        ))
    } else {
        None
    }
}

const CODE: &str = "fleet (built in code)";

fn push(d: &mut Diagnostics, field: String, p: Problem) {
    d.push(Diagnostic::new(CODE, 0, 0, field, p.problem, p.fix));
}

/// Every check on a fleet built in code; rewrites node GPU models to canonical ids.
pub(crate) fn check_fleet(catalog: &GpuCatalog, sites: &mut [Site]) -> Diagnostics {
    let mut d = Diagnostics::default();
    for spec in catalog.iter() {
        for (f, p) in gpu_spec(spec) {
            push(&mut d, format!("catalog.{}.{f}", spec.id), p);
        }
    }
    if sites.is_empty() {
        push(&mut d, "sites".into(), problem("a fleet needs at least one site", "add a site"));
    }
    let mut site_ids = HashMap::new();
    let mut rack_ids = HashMap::new();
    let mut node_names = HashMap::new();
    for (si, site) in sites.iter_mut().enumerate() {
        let sp = format!("sites[{si}]");
        check_site(&mut d, &sp, site);
        if let Some(first) = site_ids.insert(site.id.clone(), si) {
            push(&mut d, format!("{sp}.id"), duplicate("site id", &site.id, &format!("sites[{first}]")));
        }
        for (ri, rack) in site.racks.iter_mut().enumerate() {
            let rp = format!("{sp}.racks[{ri}]");
            if let Some(first) = rack_ids.insert(rack.id.clone(), rp.clone()) {
                push(&mut d, format!("{rp}.id"), duplicate("rack id", &rack.id, &first));
            }
            for (ni, node) in rack.nodes.iter_mut().enumerate() {
                let np = format!("{rp}.nodes[{ni}]");
                check_node(&mut d, &np, node, catalog);
                if let Some(first) = node_names.insert(node.name.clone(), np.clone()) {
                    push(&mut d, format!("{np}.name"), duplicate("node name", &node.name, &first));
                }
            }
            check_rack(&mut d, &rp, rack, catalog);
        }
    }
    d
}

pub(crate) fn duplicate(kind: &str, name: &str, first: &str) -> Problem {
    problem(
        format!("{kind} `{name}` is already used by {first}"),
        format!("every {kind} must be unique across the fleet; rename one of them"),
    )
}

fn check_site(d: &mut Diagnostics, sp: &str, site: &Site) {
    if let Some(p) = id("site id", &site.id) {
        push(d, format!("{sp}.id"), p);
    }
    if site.region.is_empty() {
        push(
            d,
            format!("{sp}.region"),
            problem("region is empty", "name the operator region, e.g. `eu-south-fr`"),
        );
    }
    if let Some(p) = country(&site.country.0) {
        push(d, format!("{sp}.country"), p);
    }
    if let Some(p) = pue(site.pue.0) {
        push(d, format!("{sp}.pue"), p);
    }
    if site.grid.is_empty() {
        push(d, format!("{sp}.grid"), no_grid());
    }
    for (gi, phase) in site.grid.iter().enumerate() {
        if let Some(p) = capacity_mw(phase.capacity.0) {
            push(d, format!("{sp}.grid[{gi}].capacity"), p);
        }
        let prev = gi.checked_sub(1).and_then(|i| site.grid.get(i));
        if let Some(p) = prev.and_then(|prev| grid_order(prev.from, phase.from)) {
            push(d, format!("{sp}.grid[{gi}].from"), p);
        }
    }
    if let Provisioning::Oversubscribed { ratio } = site.provisioning
        && let Some(p) = oversubscription(ratio)
    {
        push(d, format!("{sp}.provisioning.ratio"), p);
    }
    let phases: Vec<(NaiveDate, f64)> = site.grid.iter().map(|g| (g.from, g.capacity.0)).collect();
    if let Some(p) = curtailable_to_mw(site.curtailable_to.0, &phases) {
        push(d, format!("{sp}.curtailable_to"), p);
    }
}

fn check_rack(d: &mut Diagnostics, rp: &str, rack: &Rack, catalog: &GpuCatalog) {
    if let Some(p) = id("rack id", &rack.id) {
        push(d, format!("{rp}.id"), p);
    }
    if rack.power_limit == Watts::ZERO {
        push(
            d,
            format!("{rp}.power_limit"),
            problem("rack power limit is 0 W", "set the busbar/cooling limit, e.g. 150 kW"),
        );
    }
    if rack.network_domain.is_empty() {
        push(
            d,
            format!("{rp}.network_domain"),
            problem("network domain is empty", "use the rack id when the rack is its own island"),
        );
    }
    if let Some(p) = rack_fit(&rack.id, &rack.nodes, rack.power_limit, catalog) {
        push(d, format!("{rp}.power_limit"), p);
    }
}

fn check_node(d: &mut Diagnostics, np: &str, node: &mut Node, catalog: &GpuCatalog) {
    if let Some(p) = id("node name", &node.name) {
        push(d, format!("{np}.name"), p);
    }
    if let Some(model) = &node.gpu_model {
        match catalog.resolve(model) {
            Ok(spec) => node.gpu_model = Some(spec.id.clone()),
            Err(e) => push(
                d,
                format!("{np}.gpu_model"),
                problem(e.to_string(), "use a catalog id, or insert the model into the catalog first"),
            ),
        }
    }
    for (f, p) in node_shape(node.gpu_model.is_some(), node.gpu_count, node.cpu.0, node.memory.0) {
        push(d, format!("{np}.{f}"), p);
    }
}
