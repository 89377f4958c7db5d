//! Turns declarations into the fleet model: resolves names, expands rack groups and
//! imports into racks and nodes, and checks what spans tables (uniqueness, rack fit).
//!
//! Expansion is deterministic: racks come in file order (a site's rack groups, then its
//! import), numbered `{prefix}{NN}`, and nodes `{rack}-n{NN}`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use gigawatt_units::Megawatts;

use super::decl::{GpuModelDecl, NodeTypeDecl, SiteDecl};
use super::racks::Layout;
use super::reader::{Ctx, Sp, Span};
use crate::catalog::GpuCatalog;
use crate::diag::{did_you_mean, normalize};
use crate::model::{Country, GridPhase, Node, Pue, Rack, Site};
use crate::validate::{self, problem};

/// Most nodes one fleet file may expand to: ten times the largest clusters announced
/// (~100k GPUs ≈ 12.5k servers), and a bound on memory for hostile input.
pub(crate) const MAX_FLEET_NODES: u64 = 1_000_000;

const PLACEHOLDERS: &[&str] = &["{site}", "{rack}", "{n}"];

/// Checks a `network_domain` pattern; returns whether it is usable.
pub(super) fn check_domain_pattern(
    cx: &mut Ctx<'_>,
    field: &str,
    d: &Sp<String>,
    rpd: Option<&Sp<u64>>,
) -> bool {
    let mut rest = d.v.as_str();
    let mut has_n = false;
    while let Some(open) = rest.find(['{', '}']) {
        let tail = &rest[open..];
        let Some(close) = tail.find('}').filter(|_| tail.starts_with('{')) else {
            cx.err(
                &d.span,
                field,
                format!("unbalanced brace in network_domain `{}`", d.v),
                "placeholders are {site}, {rack} and {n}",
            );
            return false;
        };
        let ph = &tail[..=close];
        if !PLACEHOLDERS.contains(&ph) {
            cx.err(
                &d.span,
                field,
                format!("unknown placeholder `{ph}` in network_domain `{}`", d.v),
                "use {site} (site id), {rack} (rack id) or {n} (island number, with racks_per_domain)",
            );
            return false;
        }
        has_n |= ph == "{n}";
        rest = &tail[close + 1..];
    }
    match (has_n, rpd) {
        (true, None) => {
            cx.err(
                &d.span,
                field,
                "network_domain uses {n} but racks_per_domain is not set",
                "add e.g. `racks_per_domain = 8` (racks per island)",
            );
            false
        }
        (false, Some(r)) => {
            cx.err(
                &r.span,
                &field.replace("network_domain", "racks_per_domain"),
                "racks_per_domain has no effect without {n} in network_domain",
                "write e.g. `network_domain = \"valence-ib-{n}\"`, or remove racks_per_domain",
            );
            false
        }
        _ => true,
    }
}

fn domain_of(layout: &Layout, site: &str, rack: &str, number: u64) -> String {
    let n = layout.racks_per_domain.map_or(1, |r| (number.saturating_sub(1)) / r.max(1) + 1);
    layout.network_domain.v.replace("{site}", site).replace("{rack}", rack).replace("{n}", &format!("{n:02}"))
}

/// Zero-padded width for numbers up to `last`: at least 2 digits.
fn width(last: u64) -> usize {
    last.to_string().len().max(2)
}

/// Builds the catalog from the built-in models and the file's declarations.
pub(super) fn catalog(cx: &mut Ctx<'_>, decls: &[GpuModelDecl]) -> (GpuCatalog, HashSet<String>) {
    let mut catalog = GpuCatalog::builtin();
    // Names of declared models whose figures were bad: references to them are not
    // reported again as "unknown".
    let mut broken = HashSet::new();
    for d in decls {
        let (Some(id), Some(spec)) = (&d.id, &d.spec) else {
            if let Some(id) = &d.id {
                if let Some(existing) = catalog.get(&id.v) {
                    let existing = existing.id.clone();
                    clash(cx, &id.span, &format!("{}.id", d.path), &id.v, &existing, &catalog);
                }
                broken.insert(normalize(&id.v));
            }
            continue;
        };
        let aliases: Vec<&str> = d.aliases.iter().map(|a| a.v.as_str()).collect();
        if let Err(e) = catalog.insert_with_aliases(spec.clone(), &aliases) {
            let span = d.aliases.iter().find(|a| a.v == e.name).map_or(&id.span, |a| &a.span);
            let field =
                if span == &id.span { format!("{}.id", d.path) } else { format!("{}.aliases", d.path) };
            clash(cx, span, &field, &e.name, &e.existing, &catalog);
            broken.insert(normalize(&id.v));
        }
    }
    (catalog, broken)
}

fn clash(cx: &mut Ctx<'_>, span: &Span, field: &str, name: &str, existing: &str, catalog: &GpuCatalog) {
    let builtin = catalog.get(existing).is_some_and(|s| s.builtin);
    cx.err(
        span,
        field,
        format!(
            "GPU model name `{name}` is already taken by {} model `{existing}`",
            if builtin { "built-in" } else { "declared" }
        ),
        format!("use `{existing}` directly (remove this declaration), or pick another name"),
    );
}

/// Node types by name, with their GPU model resolved to a canonical id; `None` for a
/// declared type with problems (reported already, so uses of it are not reported again).
pub(super) type NodeTypes<'d> = BTreeMap<&'d str, Option<(&'d NodeTypeDecl, Option<String>)>>;

/// Resolves every node type's GPU model.
pub(super) fn node_types<'d>(
    cx: &mut Ctx<'_>,
    decls: &'d [NodeTypeDecl],
    catalog: &GpuCatalog,
    broken: &HashSet<String>,
) -> NodeTypes<'d> {
    let mut out = BTreeMap::new();
    for d in decls {
        let mut ok = d.ok;
        let model = d.gpu_model.as_ref().and_then(|m| match catalog.resolve(&m.v) {
            Ok(spec) => Some(spec.id.clone()),
            Err(e) => {
                if !broken.contains(&normalize(&m.v)) {
                    cx.err(
                        &m.span,
                        &format!("{}.gpu_model", d.path),
                        e.to_string(),
                        "use one of the known models, or declare it in a [[gpu_model]] table",
                    );
                }
                ok = false;
                None
            }
        });
        out.insert(d.name.v.as_str(), ok.then_some((d, model)));
    }
    out
}

/// Where each rack id and node name was first made, to report clashes.
#[derive(Default)]
pub(super) struct Names {
    racks: HashMap<String, String>,
    nodes: HashMap<String, String>,
    total_nodes: u64,
}

impl Names {
    /// Records a group's racks; reports clashes once per group (not per rack).
    fn claim(&mut self, cx: &mut Ctx<'_>, span: &Span, field: &str, owner: &str, racks: &[Rack]) {
        let mut clashed = false;
        for (kind, ids, map) in [
            ("rack id", racks.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), &mut self.racks),
            (
                "node name",
                racks.iter().flat_map(|r| r.nodes.iter().map(|n| n.name.as_str())).collect(),
                &mut self.nodes,
            ),
        ] {
            if kind == "node name" && clashed {
                // Node names derive from rack ids: one report is enough.
                break;
            }
            let mut clashes = Vec::new();
            for id in ids {
                match map.get(id) {
                    Some(first) => clashes.push((id, first.clone())),
                    None => {
                        map.insert(id.to_owned(), owner.to_owned());
                    }
                }
            }
            clashed = !clashes.is_empty();
            if let Some((id, first)) = clashes.first() {
                let more = if clashes.len() > 1 {
                    format!(" (and {} more)", clashes.len() - 1)
                } else {
                    String::new()
                };
                cx.error(
                    span,
                    field,
                    problem(
                        format!("{kind} `{id}`{more} already made by {first}"),
                        format!("every {kind} must be unique across the fleet: change the prefix, or `first` to continue the numbering"),
                    ),
                );
            }
        }
    }
}

/// Expands every site; returns the sites that could be built completely.
pub(super) fn sites(
    cx: &mut Ctx<'_>,
    decls: &[SiteDecl],
    types: &NodeTypes<'_>,
    catalog: &GpuCatalog,
    base: &Path,
    nodes_override: Option<&Path>,
) -> Vec<Site> {
    let mut names = Names::default();
    let mut site_ids: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for s in decls {
        if let Some(id) = &s.id {
            if let Some(first) = site_ids.get(&id.v) {
                cx.error(&id.span, &format!("{}.id", s.path), validate::duplicate("site id", &id.v, first));
            } else {
                site_ids.insert(id.v.clone(), s.path.clone());
            }
        }
        let site_id = s.id.as_ref().map_or("", |i| i.v.as_str());
        let mut racks = Vec::new();
        for rg in &s.rack_groups {
            let (nt, model) = match types.get(rg.node_type.v.as_str()) {
                Some(Some(t)) => t,
                // Declared but broken: already reported.
                Some(None) => continue,
                None => {
                    unknown_node_type(cx, rg, types);
                    continue;
                }
            };
            let Some(g) = &rg.group else { continue };
            let nodes_total = g.count.saturating_mul(u64::from(g.layout.nodes_per_rack));
            if !budget(cx, &mut names, nodes_total, &rg.span, &rg.path) {
                continue;
            }
            let template = |name: String| Node {
                name,
                gpu_model: model.clone(),
                gpu_count: nt.gpus,
                cpu: gigawatt_units::MilliCores(nt.cpu_millicores),
                memory: gigawatt_units::Mebibytes(nt.memory_mib),
                base_power: nt.base_power,
            };
            let last = g.first.saturating_add(g.count - 1);
            let w = width(last);
            let group: Vec<Rack> = (g.first..=last)
                .map(|n| {
                    let id = format!("{}{n:0w$}", g.prefix.v);
                    let nodes =
                        (1..=g.layout.nodes_per_rack).map(|j| template(format!("{id}-n{j:02}"))).collect();
                    Rack {
                        network_domain: domain_of(&g.layout, site_id, &id, n),
                        power_limit: g.layout.power_limit,
                        id,
                        nodes,
                    }
                })
                .collect();
            if let Some(p) = group.first().and_then(|r| validate::id("rack id", &r.id)) {
                cx.error(&g.prefix.span, &format!("{}.prefix", rg.path), p);
                continue;
            }
            check_fit(
                cx,
                &g.layout,
                g.layout.power_limit_span.as_ref().unwrap_or(&rg.span),
                &rg.path,
                &group,
                catalog,
            );
            names.claim(cx, &g.prefix.span, &format!("{}.prefix", rg.path), &rg.path, &group);
            racks.extend(group);
        }
        let carbon = s.carbon_intensity.as_ref().and_then(|c| {
            let resolved = base.join(&c.v);
            let field = format!("{}.carbon_intensity", s.path);
            match crate::carbon::load_carbon_csv(&resolved) {
                Ok(series) => {
                    Some(crate::model::SiteCarbon { file: c.v.clone(), series: std::sync::Arc::new(series) })
                }
                // Unreadable: point at the key in the fleet file. Malformed: the CSV's own
                // lines and columns.
                Err(diags) if diags.0.iter().all(|d| d.line == 0) => {
                    let why = diags.0.first().map_or_else(String::new, |d| d.problem.clone());
                    cx.err(
                        &c.span,
                        &field,
                        format!("`{}` (resolved to `{}`): {why}", c.v, resolved.display()),
                        "the path is relative to the folder of the fleet file",
                    );
                    None
                }
                Err(diags) => {
                    cx.errors.0.extend(diags.0);
                    None
                }
            }
        });
        if let Some(imp) = &s.import {
            let (resolved, shown) = match nodes_override {
                Some(p) => (p.to_path_buf(), p.to_path_buf()),
                None => (
                    base.join(&imp.openb_nodes.v),
                    Path::new(&cx.file).parent().unwrap_or(Path::new("")).join(&imp.openb_nodes.v),
                ),
            };
            let field = format!("{}.openb_nodes", imp.path);
            match super::openb::load_nodes(&resolved, &shown.to_string_lossy(), catalog, imp.base_power) {
                Err(Err(io)) => cx.err(
                    &imp.openb_nodes.span,
                    &field,
                    format!(
                        "cannot read `{}` (resolved to `{}`): {io}",
                        imp.openb_nodes.v,
                        resolved.display()
                    ),
                    "the path is relative to the folder of the fleet file",
                ),
                Err(Ok(diags)) => cx.errors.0.extend(diags),
                Ok(nodes) if budget(cx, &mut names, nodes.len() as u64, &imp.openb_nodes.span, &field) => {
                    let prefix =
                        imp.rack_prefix.as_ref().map_or_else(|| format!("{site_id}-r"), |p| p.v.clone());
                    let npr = imp.layout.nodes_per_rack as usize;
                    let w = width(nodes.len().div_ceil(npr) as u64);
                    let group: Vec<Rack> = nodes
                        .chunks(npr)
                        .zip(1u64..)
                        .map(|(chunk, n)| {
                            let id = format!("{prefix}{n:0w$}");
                            Rack {
                                network_domain: domain_of(&imp.layout, site_id, &id, n),
                                power_limit: imp.layout.power_limit,
                                id,
                                nodes: chunk.to_vec(),
                            }
                        })
                        .collect();
                    if let Some(p) = group.first().and_then(|r| validate::id("rack id", &r.id)) {
                        let span = imp.rack_prefix.as_ref().map_or(&imp.openb_nodes.span, |p| &p.span);
                        cx.error(span, &format!("{}.rack_prefix", imp.path), p);
                    } else {
                        let span = imp.layout.power_limit_span.as_ref().unwrap_or(&imp.openb_nodes.span);
                        check_fit(cx, &imp.layout, span, &imp.path, &group, catalog);
                        names.claim(cx, &imp.openb_nodes.span, &field, &imp.path, &group);
                        racks.extend(group);
                    }
                }
                Ok(_) => {}
            }
        }
        out.extend(build_site(s, racks, carbon));
    }
    out
}

fn unknown_node_type(cx: &mut Ctx<'_>, g: &super::racks::RackGroupDecl, types: &NodeTypes<'_>) {
    let known: Vec<&str> = types.keys().copied().collect();
    let fix = match did_you_mean(&g.node_type.v, known.iter().copied()) {
        Some(s) => format!("did you mean `{s}`? node types: {}", known.join(", ")),
        None if known.is_empty() => "declare it in a [node_type.NAME] table".to_owned(),
        None => format!("use one of: {}, or declare it in a [node_type.NAME] table", known.join(", ")),
    };
    cx.err(
        &g.node_type.span,
        &format!("{}.node_type", g.path),
        format!("unknown node type `{}`", g.node_type.v),
        fix,
    );
}

/// Counts nodes against [`MAX_FLEET_NODES`]; false (and reported) when over.
fn budget(cx: &mut Ctx<'_>, names: &mut Names, n: u64, span: &Span, field: &str) -> bool {
    names.total_nodes = names.total_nodes.saturating_add(n);
    if names.total_nodes <= MAX_FLEET_NODES {
        return true;
    }
    cx.err(
        span,
        field,
        format!("the fleet would have {} nodes or more; the limit is {MAX_FLEET_NODES}", names.total_nodes),
        "check count and nodes_per_rack: they count racks and servers, not GPUs",
    );
    false
}

/// Rack-level power check on a group's first (largest) rack: an error when capping cannot
/// make it fit, a warning when it will be capped at full load.
fn check_fit(
    cx: &mut Ctx<'_>,
    layout: &Layout,
    span: &Span,
    path: &str,
    racks: &[Rack],
    catalog: &GpuCatalog,
) {
    // The hungriest rack; the first of equals, so messages name the group's first rack.
    let Some(rack) = racks.iter().rev().max_by_key(|r| r.full_load_power(catalog)) else {
        return;
    };
    let field = format!("{path}.power_limit_kw");
    if let Some(p) = validate::rack_fit(&rack.id, &rack.nodes, layout.power_limit, catalog) {
        cx.error(span, &field, p);
    } else if let Some(p) = validate::rack_oversubscribed(&rack.id, &rack.nodes, layout.power_limit, catalog)
    {
        cx.warn(span, &field, p);
    }
}

fn build_site(s: &SiteDecl, racks: Vec<Rack>, carbon: Option<crate::model::SiteCarbon>) -> Option<Site> {
    if !s.ok {
        return None;
    }
    let id = s.id.as_ref()?.v.clone();
    Some(Site {
        name: s.name.clone().unwrap_or_else(|| id.clone()),
        id,
        jurisdiction: s
            .jurisdiction
            .clone()
            .or_else(|| s.country.as_deref().map(crate::residency::default_jurisdiction))?,
        country: Country(s.country.clone()?),
        region: s.region.clone()?,
        certifications: s.certifications.clone(),
        grid: s.grid.iter().map(|&(from, mw)| GridPhase { from, capacity: Megawatts(mw) }).collect(),
        pue: Pue(s.pue?),
        provisioning: s.provisioning,
        curtailable_to: Megawatts(s.curtailable_to_mw),
        carbon,
        racks,
    })
}
