//! Reads the fleet file's tables into declarations, checking each field on its own.
//!
//! Checks that need more than one field or table (does this node type exist? is this rack
//! name taken?) happen in `expand`; here every key is read, typed and range-checked, and
//! every problem is recorded.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use gigawatt_units::Watts;
use toml::de::{DeTable, DeValue};

use super::racks::{ImportDecl, RackGroupDecl, import, rack_group};
use super::reader::{Ctx, Sp, Span, Tbl};
use crate::catalog::GpuSpec;
use crate::diag::did_you_mean;
use crate::model::{Certification, Provisioning};
use crate::validate;

pub(crate) const TOP_KEYS: &[&str] = &["gpu_model", "node_type", "residency", "site"];
pub(crate) const RESIDENCY_RULE_KEYS: &[&str] = &["countries", "certifications", "jurisdictions"];
pub(crate) const GPU_MODEL_KEYS: &[&str] = &[
    "id",
    "vendor",
    "tdp_w",
    "idle_w",
    "min_power_limit_w",
    "memory_gb",
    "bf16_dense_tflops",
    "hbm_tbps",
    "dvfs_exponent",
    "aliases",
    "source",
];
pub(crate) const NODE_TYPE_KEYS: &[&str] =
    &["gpu_model", "gpus", "cpu_millicores", "memory_mib", "base_power_w"];
pub(crate) const SITE_KEYS: &[&str] = &[
    "id",
    "name",
    "country",
    "region",
    "certifications",
    "jurisdiction",
    "pue",
    "grid",
    "provisioning",
    "oversubscription",
    "curtailable_to_mw",
    "carbon_intensity",
    "rack_group",
    "import",
];
pub(crate) const GRID_KEYS: &[&str] = &["from", "capacity_mw"];
pub(super) struct Doc {
    pub gpu_models: Vec<GpuModelDecl>,
    pub node_types: Vec<NodeTypeDecl>,
    pub sites: Vec<SiteDecl>,
    pub residency: crate::residency::ResidencyRules,
}

pub(super) struct GpuModelDecl {
    pub path: String,
    pub id: Option<Sp<String>>,
    pub aliases: Vec<Sp<String>>,
    /// `None` when a required figure is missing or bad (already reported).
    pub spec: Option<GpuSpec>,
}

pub(super) struct NodeTypeDecl {
    pub name: Sp<String>,
    pub path: String,
    pub gpu_model: Option<Sp<String>>,
    pub gpus: u32,
    pub cpu_millicores: u64,
    pub memory_mib: u64,
    pub base_power: Watts,
    /// Whether every field was read without problems.
    pub ok: bool,
}

pub(super) struct SiteDecl {
    pub path: String,
    pub id: Option<Sp<String>>,
    pub name: Option<String>,
    pub country: Option<String>,
    pub region: Option<String>,
    pub certifications: BTreeSet<Certification>,
    pub jurisdiction: Option<String>,
    pub pue: Option<f64>,
    pub grid: Vec<(NaiveDate, f64)>,
    pub provisioning: Provisioning,
    pub curtailable_to_mw: f64,
    pub carbon_intensity: Option<Sp<String>>,
    pub rack_groups: Vec<RackGroupDecl>,
    pub import: Option<ImportDecl>,
    pub ok: bool,
}

pub(super) fn read(cx: &mut Ctx<'_>, root: &DeTable<'_>, root_span: &Span) -> Doc {
    let top = Tbl { t: root, span: root_span, path: "" };
    top.check_keys(cx, TOP_KEYS);
    let mut doc = Doc {
        gpu_models: Vec::new(),
        node_types: Vec::new(),
        sites: Vec::new(),
        residency: crate::residency::ResidencyRules::default(),
    };
    if let Some((t, span)) = top.table(cx, "residency", "[residency.health]") {
        residency(cx, Tbl { t, span: &span, path: "residency" }, &mut doc.residency);
    }
    if let Some((arr, _)) = top.array(cx, "gpu_model", "[[gpu_model]]") {
        for (i, v) in arr.iter().enumerate() {
            let path = format!("gpu_model[{i}]");
            if let Some(t) = as_table(cx, &path, v, "[[gpu_model]]") {
                let span = v.span();
                doc.gpu_models.push(gpu_model(cx, Tbl { t, span: &span, path: &path }));
            }
        }
    }
    if let Some((t, _)) = top.table(cx, "node_type", "[node_type.dgx-h100]") {
        for (k, v) in t.iter() {
            let path = format!("node_type.{}", k.get_ref());
            if let Some(tt) = as_table(cx, &path, v, "[node_type.dgx-h100]") {
                let span = v.span();
                let name = Sp { v: k.get_ref().to_string(), span: k.span() };
                doc.node_types.push(node_type(cx, name, Tbl { t: tt, span: &span, path: &path }));
            }
        }
    }
    match top.array(cx, "site", "[[site]]") {
        Some((arr, _)) => {
            for (i, v) in arr.iter().enumerate() {
                let path = format!("site[{i}]");
                if let Some(t) = as_table(cx, &path, v, "[[site]]") {
                    let span = v.span();
                    doc.sites.push(site(cx, Tbl { t, span: &span, path: &path }));
                }
            }
        }
        None if top.get("site").is_none() => cx.err(
            root_span,
            "site",
            "the file declares no site",
            "add a `[[site]]` table for each datacenter site",
        ),
        None => {}
    }
    doc
}

pub(super) fn as_table<'a, 'i>(
    cx: &mut Ctx<'_>,
    path: &str,
    v: &'a toml::Spanned<DeValue<'i>>,
    example: &str,
) -> Option<&'a DeTable<'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(t),
        _ => {
            cx.err(&v.span(), path, format!("{path} must be a table"), format!("write a `{example}` table"));
            None
        }
    }
}

fn gpu_model(cx: &mut Ctx<'_>, t: Tbl<'_, '_>) -> GpuModelDecl {
    t.check_keys(cx, GPU_MODEL_KEYS);
    let id = t.req_string(cx, "id", "id = \"G2\"");
    if let Some(id) = &id
        && let Some(p) = validate::id("GPU model id", &id.v)
    {
        cx.error(&id.span, &t.field("id"), p);
    }
    let vendor = t.req_string(cx, "vendor", "vendor = \"NVIDIA\"");
    let tdp = t.req_uint(cx, "tdp_w", "tdp_w = 300");
    let idle = t.req_uint(cx, "idle_w", "idle_w = 50");
    let min = t.req_uint(cx, "min_power_limit_w", "min_power_limit_w = 150");
    let memory = t.req_uint32(cx, "memory_gb", "memory_gb = 32");
    let bf16 = t.number(cx, "bf16_dense_tflops", "bf16_dense_tflops = 989.5");
    let hbm = t.number(cx, "hbm_tbps", "hbm_tbps = 3.35");
    let dvfs = t.number(cx, "dvfs_exponent", "dvfs_exponent = 2.0");
    let source = t.req_string(cx, "source", "source = \"vendor datasheet, 2024\"");
    let aliases = t.string_array(cx, "aliases", "aliases = [\"G2-32GB\"]");
    let spec = match (&id, vendor, tdp, idle, min, memory, source) {
        (Some(id), Some(vendor), Some(tdp), Some(idle), Some(min), Some(memory), Some(source)) => {
            let spec = GpuSpec {
                id: id.v.clone(),
                vendor: vendor.v,
                tdp: Watts(tdp.v),
                idle: Watts(idle.v),
                min_power_limit: Watts(min.v),
                memory_gb: memory.v,
                bf16_dense_tflops: bf16.as_ref().map(|b| b.v),
                hbm_tbps: hbm.as_ref().map(|h| h.v),
                dvfs_exponent: dvfs.as_ref().map_or(crate::catalog::DEFAULT_DVFS_EXPONENT, |d| d.v),
                source: source.v,
                builtin: false,
            };
            let span_of = |field: &str| match field {
                "tdp_w" => Some(tdp.span.clone()),
                "idle_w" => Some(idle.span.clone()),
                "min_power_limit_w" => Some(min.span.clone()),
                "memory_gb" => Some(memory.span.clone()),
                "hbm_tbps" => hbm.as_ref().map(|h| h.span.clone()),
                "dvfs_exponent" => dvfs.as_ref().map(|d| d.span.clone()),
                _ => bf16.as_ref().map(|b| b.span.clone()),
            };
            let problems = validate::gpu_spec(&spec);
            for (field, p) in &problems {
                let span = span_of(field).unwrap_or_else(|| t.span.clone());
                cx.error(&span, &t.field(field), p.clone());
            }
            problems.is_empty().then_some(spec)
        }
        _ => None,
    };
    GpuModelDecl { path: t.path.to_owned(), id, aliases, spec }
}

fn node_type(cx: &mut Ctx<'_>, name: Sp<String>, t: Tbl<'_, '_>) -> NodeTypeDecl {
    let errors_before = cx.errors.len();
    t.check_keys(cx, NODE_TYPE_KEYS);
    if let Some(p) = validate::id("node type name", &name.v) {
        cx.error(&name.span, t.path, p);
    }
    let gpu_model = t.string(cx, "gpu_model", "gpu_model = \"H100-SXM\"");
    let gpus = t.uint32(cx, "gpus", "gpus = 8");
    let cpu = t.req_uint(cx, "cpu_millicores", "cpu_millicores = 224000");
    let mem = t.req_uint(cx, "memory_mib", "memory_mib = 2097152");
    let base = t.req_uint(cx, "base_power_w", "base_power_w = 4600");
    let shape = validate::node_shape(
        gpu_model.is_some(),
        gpus.as_ref().map_or(0, |g| g.v),
        cpu.as_ref().map_or(1, |c| c.v),
        mem.as_ref().map_or(1, |m| m.v),
    );
    for (field, p) in shape {
        let span = match field {
            // Both GPU problems are about the count: point at it when written.
            "gpus" | "gpu_model" => gpus.as_ref().map(|g| g.span.clone()),
            "cpu_millicores" => cpu.as_ref().map(|c| c.span.clone()),
            _ => mem.as_ref().map(|m| m.span.clone()),
        };
        cx.error(&span.unwrap_or_else(|| t.span.clone()), &t.field(field), p);
    }
    NodeTypeDecl {
        name,
        path: t.path.to_owned(),
        gpu_model,
        gpus: gpus.map_or(0, |g| g.v),
        cpu_millicores: cpu.map_or(0, |c| c.v),
        memory_mib: mem.map_or(0, |m| m.v),
        base_power: Watts(base.map_or(0, |b| b.v)),
        ok: cx.errors.len() == errors_before,
    }
}

fn site(cx: &mut Ctx<'_>, t: Tbl<'_, '_>) -> SiteDecl {
    let errors_before = cx.errors.len();
    t.check_keys(cx, SITE_KEYS);
    let id = t.req_string(cx, "id", "id = \"valence\"");
    if let Some(id) = &id
        && let Some(p) = validate::id("site id", &id.v)
    {
        cx.error(&id.span, &t.field("id"), p);
    }
    let name = t.string(cx, "name", "name = \"Valence (Drôme) campus\"").map(|n| n.v);
    let country = t.req_string(cx, "country", "country = \"FR\"");
    if let Some(c) = &country
        && let Some(p) = validate::country(&c.v)
    {
        cx.error(&c.span, &t.field("country"), p);
    }
    let region = t.req_string(cx, "region", "region = \"eu-south-fr\"");
    if let Some(r) = region.as_ref().filter(|r| r.v.trim().is_empty()) {
        cx.err(&r.span, &t.field("region"), "region is empty", "write e.g. `region = \"eu-south-fr\"`");
    }
    let certifications = certifications(cx, t);
    let jurisdiction = t.string(cx, "jurisdiction", "jurisdiction = \"EU\"");
    if let Some(j) = &jurisdiction
        && let Some(p) = validate::jurisdiction(&j.v)
    {
        cx.error(&j.span, &t.field("jurisdiction"), p);
    }
    let pue = t.req_number(cx, "pue", "pue = 1.2");
    if let Some(p) = &pue
        && let Some(problem) = validate::pue(p.v)
    {
        cx.error(&p.span, &t.field("pue"), problem);
    }
    let grid = grid(cx, t);
    let provisioning = provisioning(cx, t);
    let curtailable_to_mw = match t.number(cx, "curtailable_to_mw", "curtailable_to_mw = 2") {
        Some(mw) => match validate::curtailable_to_mw(mw.v, &grid) {
            Some(p) => {
                cx.error(&mw.span, &t.field("curtailable_to_mw"), p);
                0.0
            }
            None => mw.v,
        },
        None => 0.0,
    };
    let carbon_intensity =
        t.string(cx, "carbon_intensity", "carbon_intensity = \"../carbon/fr-2024-example.csv\"");
    let mut rack_groups = Vec::new();
    if let Some((arr, _)) = t.array(cx, "rack_group", "[[site.rack_group]]") {
        for (i, v) in arr.iter().enumerate() {
            let path = format!("{}.rack_group[{i}]", t.path);
            if let Some(tt) = as_table(cx, &path, v, "[[site.rack_group]]") {
                let span = v.span();
                rack_groups.extend(rack_group(cx, Tbl { t: tt, span: &span, path: &path }));
            }
        }
    }
    let import = t.table(cx, "import", "[site.import]").and_then(|(tt, span)| {
        let path = t.field("import");
        import(cx, Tbl { t: tt, span: &span, path: &path })
    });
    SiteDecl {
        path: t.path.to_owned(),
        id,
        name,
        country: country.map(|c| c.v),
        region: region.map(|r| r.v),
        certifications,
        jurisdiction: jurisdiction.map(|j| j.v),
        pue: pue.map(|p| p.v),
        grid,
        provisioning,
        curtailable_to_mw,
        carbon_intensity,
        rack_groups,
        import,
        ok: cx.errors.len() == errors_before,
    }
}

/// `provisioning = "reserved"` (the default) or `"oversubscribed"` with an
/// `oversubscription` ratio.
fn provisioning(cx: &mut Ctx<'_>, t: Tbl<'_, '_>) -> Provisioning {
    let mode = t.string(cx, "provisioning", "provisioning = \"oversubscribed\"");
    let ratio = t.number(cx, "oversubscription", "oversubscription = 0.3");
    match (mode.as_ref().map(|m| m.v.as_str()), ratio) {
        (None | Some("reserved"), None) => Provisioning::Reserved,
        (None | Some("reserved"), Some(r)) => {
            cx.err(
                &r.span,
                &t.field("oversubscription"),
                "`oversubscription` is set but the site is provisioned `reserved`",
                "add `provisioning = \"oversubscribed\"`, or remove `oversubscription`",
            );
            Provisioning::Reserved
        }
        (Some("oversubscribed"), Some(r)) => match validate::oversubscription(r.v) {
            Some(p) => {
                cx.error(&r.span, &t.field("oversubscription"), p);
                Provisioning::Reserved
            }
            None => Provisioning::Oversubscribed { ratio: r.v },
        },
        (Some("oversubscribed"), None) => {
            let span = mode.as_ref().map_or_else(|| t.span.clone(), |m| m.span.clone());
            cx.err(
                &span,
                &t.field("oversubscription"),
                "an oversubscribed site needs an `oversubscription` ratio",
                "add e.g. `oversubscription = 0.3` (admit GPUs up to 130% of the budget at TDP)",
            );
            Provisioning::Reserved
        }
        (Some(other), _) => {
            let span = mode.as_ref().map_or_else(|| t.span.clone(), |m| m.span.clone());
            let fix = match did_you_mean(other, ["reserved", "oversubscribed"]) {
                Some(s) => format!("write `{s}`"),
                None => "use `reserved` or `oversubscribed`".into(),
            };
            cx.err(&span, &t.field("provisioning"), format!("unknown provisioning mode `{other}`"), fix);
            Provisioning::Reserved
        }
    }
}

/// `[residency.CLASS]` tables: each replaces the default rule of its data class whole
/// (a term it leaves out does not restrict).
fn residency(cx: &mut Ctx<'_>, t: Tbl<'_, '_>, rules: &mut crate::residency::ResidencyRules) {
    use crate::residency::{COUNTRY_GROUPS, DATA_CLASSES, ResidencyRule};
    for (k, v) in t.t.iter() {
        let class: &str = k.get_ref();
        let path = format!("residency.{class}");
        let Some(rule) = rules.get_mut(class) else {
            let fix = match did_you_mean(class, DATA_CLASSES.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? the data classes are {}", DATA_CLASSES.join(", ")),
                None => format!("the data classes are {}", DATA_CLASSES.join(", ")),
            };
            cx.err(&k.span(), &path, format!("unknown data class `{class}`"), fix);
            continue;
        };
        let Some(tt) = as_table(cx, &path, v, "[residency.health]") else { continue };
        let span = v.span();
        let rt = Tbl { t: tt, span: &span, path: &path };
        rt.check_keys(cx, RESIDENCY_RULE_KEYS);
        let mut out = ResidencyRule::anywhere();
        if rt.get("countries").is_some() {
            let mut set = BTreeSet::new();
            for (i, c) in
                rt.string_array(cx, "countries", "countries = [\"EU\", \"EEA\"]").into_iter().enumerate()
            {
                let field = format!("{path}.countries[{i}]");
                if COUNTRY_GROUPS.contains(&c.v.as_str()) {
                    set.insert(c.v);
                } else if let Some(mut p) = validate::country(&c.v) {
                    p.fix = format!("{}, or a group: {}", p.fix, COUNTRY_GROUPS.join(", "));
                    cx.error(&c.span, &field, p);
                } else {
                    set.insert(c.v);
                }
            }
            out.countries = Some(set);
        }
        out.certifications = certifications(cx, rt);
        if rt.get("jurisdictions").is_some() {
            let mut set = BTreeSet::new();
            for (i, j) in
                rt.string_array(cx, "jurisdictions", "jurisdictions = [\"EU\"]").into_iter().enumerate()
            {
                match validate::jurisdiction(&j.v) {
                    Some(p) => cx.error(&j.span, &format!("{path}.jurisdictions[{i}]"), p),
                    None => {
                        set.insert(j.v);
                    }
                }
            }
            out.jurisdictions = Some(set);
        }
        *rule = out;
    }
}

fn certifications(cx: &mut Ctx<'_>, t: Tbl<'_, '_>) -> BTreeSet<Certification> {
    let known: Vec<&str> = Certification::ALL.iter().map(|c| c.as_str()).collect();
    let mut out = BTreeSet::new();
    let list = t.string_array(cx, "certifications", "certifications = [\"hds\", \"iso27001\"]");
    for (i, c) in list.into_iter().enumerate() {
        let field = format!("{}[{i}]", t.field("certifications"));
        match Certification::parse(&c.v) {
            Some(cert) if !out.insert(cert) => {
                cx.err(
                    &c.span,
                    &field,
                    format!("certification `{}` is listed twice", c.v),
                    "remove the repeat",
                );
            }
            Some(_) => {}
            None => {
                let fix = match did_you_mean(&c.v, known.iter().copied()) {
                    Some(s) => format!("write `{s}` (known: {})", known.join(", ")),
                    None => format!("use one of: {}", known.join(", ")),
                };
                cx.err(&c.span, &field, format!("unknown certification `{}`", c.v), fix);
            }
        }
    }
    out
}

fn grid(cx: &mut Ctx<'_>, t: Tbl<'_, '_>) -> Vec<(NaiveDate, f64)> {
    let example = "grid = [{ from = 2026-01-01, capacity_mw = 8 }]";
    let Some((arr, span)) = t.array(cx, "grid", example) else {
        if t.get("grid").is_none() {
            t.missing(cx, "grid", example);
        }
        return Vec::new();
    };
    if arr.is_empty() {
        cx.error(&span, &t.field("grid"), validate::no_grid());
    }
    let mut out: Vec<(NaiveDate, f64)> = Vec::new();
    let mut last = None;
    for (i, v) in arr.iter().enumerate() {
        let path = format!("{}[{i}]", t.field("grid"));
        let Some(pt) = as_table(cx, &path, v, "{ from = 2026-01-01, capacity_mw = 8 }") else {
            continue;
        };
        let pspan = v.span();
        let p = Tbl { t: pt, span: &pspan, path: &path };
        p.check_keys(cx, GRID_KEYS);
        let from = p.req_date(cx, "from", "from = 2026-01-01");
        let mw = p.req_number(cx, "capacity_mw", "capacity_mw = 8");
        if let Some(mw) = &mw
            && let Some(problem) = validate::capacity_mw(mw.v)
        {
            cx.error(&mw.span, &p.field("capacity_mw"), problem);
        }
        if let Some(from) = &from {
            if let Some(problem) = last.and_then(|prev| validate::grid_order(prev, from.v)) {
                cx.error(&from.span, &p.field("from"), problem);
            }
            last = Some(from.v);
        }
        if let (Some(from), Some(mw)) = (from, mw) {
            out.push((from.v, mw.v));
        }
    }
    out
}
