//! Reads rack layouts: `[[site.rack_group]]` and `[site.import]` tables.
//!
//! Both describe racks the same way (power limit, nodes per rack, network islands), so the
//! shared part is one [`Layout`].

use gigawatt_units::{Kilowatts, Watts};

use super::reader::{Ctx, Sp, Span, Tbl};
use crate::validate;

pub(crate) const RACK_GROUP_KEYS: &[&str] = &[
    "prefix",
    "first",
    "count",
    "node_type",
    "nodes_per_rack",
    "power_limit_kw",
    "network_domain",
    "racks_per_domain",
];
pub(crate) const IMPORT_KEYS: &[&str] = &[
    "openb_nodes",
    "base_power_w",
    "rack_prefix",
    "nodes_per_rack",
    "power_limit_kw",
    "network_domain",
    "racks_per_domain",
];

/// Rack power limit when a file gives none: the design density gigawatt targets.
pub(crate) const DEFAULT_RACK_KW: f64 = 150.0;
/// Racks per group, and nodes per rack, above which a value is surely a mistake; they also
/// bound memory use on hostile input.
pub(crate) const MAX_RACKS_PER_GROUP: u64 = 100_000;
pub(crate) const MAX_NODES_PER_RACK: u32 = 256;

/// How racks are laid out: shared by rack groups and imports.
pub(super) struct Layout {
    pub power_limit: Watts,
    pub power_limit_span: Option<Span>,
    pub nodes_per_rack: u32,
    pub network_domain: Sp<String>,
    pub racks_per_domain: Option<u64>,
}

pub(super) struct RackGroupDecl {
    pub path: String,
    pub span: Span,
    pub node_type: Sp<String>,
    /// `None` when a field has problems (reported): the node type reference is still
    /// checked, but no racks are made.
    pub group: Option<Group>,
}

pub(super) struct Group {
    pub prefix: Sp<String>,
    pub first: u64,
    pub count: u64,
    pub layout: Layout,
}

pub(super) struct ImportDecl {
    pub path: String,
    pub openb_nodes: Sp<String>,
    pub base_power: Watts,
    pub rack_prefix: Option<Sp<String>>,
    pub layout: Layout,
}

fn layout(cx: &mut Ctx<'_>, t: Tbl<'_, '_>, default_nodes_per_rack: Option<u32>) -> Option<Layout> {
    let kw = t.number(cx, "power_limit_kw", "power_limit_kw = 150");
    let mut ok = true;
    if let Some(k) = &kw
        && let Some(p) = validate::rack_limit_kw(k.v)
    {
        cx.error(&k.span, &t.field("power_limit_kw"), p);
        ok = false;
    }
    let npr = match default_nodes_per_rack {
        Some(d) => t.uint32(cx, "nodes_per_rack", "nodes_per_rack = 8").map_or(d, |n| n.v),
        None => t.req_uint32(cx, "nodes_per_rack", "nodes_per_rack = 8").map_or(0, |n| n.v),
    };
    if let Some(v) = t.get("nodes_per_rack")
        && !(1..=MAX_NODES_PER_RACK).contains(&npr)
    {
        cx.err(
            &v.span(),
            &t.field("nodes_per_rack"),
            format!("nodes_per_rack must be between 1 and {MAX_NODES_PER_RACK} (got {npr})"),
            "count servers per rack, e.g. 8 liquid-cooled HGX servers or 18 GB200 compute trays",
        );
        ok = false;
    }
    let domain = t
        .string(cx, "network_domain", "network_domain = \"valence-ib-{n}\"")
        .unwrap_or(Sp { v: "{rack}".into(), span: t.span.clone() });
    let rpd = t.uint(cx, "racks_per_domain", "racks_per_domain = 8");
    if let Some(r) = &rpd
        && r.v == 0
    {
        cx.err(
            &r.span,
            &t.field("racks_per_domain"),
            "racks_per_domain must be ≥ 1",
            "write e.g. `racks_per_domain = 8`",
        );
        ok = false;
    }
    ok &= super::expand::check_domain_pattern(cx, &t.field("network_domain"), &domain, rpd.as_ref());
    (ok && npr > 0).then(|| Layout {
        power_limit: Kilowatts(kw.as_ref().map_or(DEFAULT_RACK_KW, |k| k.v)).to_watts(),
        power_limit_span: kw.map(|k| k.span),
        nodes_per_rack: npr,
        network_domain: domain,
        racks_per_domain: rpd.map(|r| r.v),
    })
}

pub(super) fn rack_group(cx: &mut Ctx<'_>, t: Tbl<'_, '_>) -> Option<RackGroupDecl> {
    t.check_keys(cx, RACK_GROUP_KEYS);
    let prefix = t.req_string(cx, "prefix", "prefix = \"valence-a\"");
    let first = t.uint(cx, "first", "first = 1");
    let count = t.req_uint(cx, "count", "count = 40");
    let mut ok = true;
    if let Some(c) = &count
        && !(1..=MAX_RACKS_PER_GROUP).contains(&c.v)
    {
        cx.err(
            &c.span,
            &t.field("count"),
            format!("count must be between 1 and {MAX_RACKS_PER_GROUP} (got {})", c.v),
            "count is the number of racks in this group",
        );
        ok = false;
    }
    if let Some(f) = first.as_ref().filter(|f| f.v == 0 || f.v > MAX_RACKS_PER_GROUP * 10) {
        cx.err(
            &f.span,
            &t.field("first"),
            format!("first must be between 1 and {} (got {})", MAX_RACKS_PER_GROUP * 10, f.v),
            "first is the number of the group's first rack, e.g. `first = 41` to continue a row",
        );
        ok = false;
    }
    let node_type = t.req_string(cx, "node_type", "node_type = \"dgx-h100\"");
    let layout = layout(cx, t, None);
    Some(RackGroupDecl {
        path: t.path.to_owned(),
        span: t.span.clone(),
        node_type: node_type?,
        group: match (prefix, count, layout) {
            (Some(prefix), Some(count), Some(layout)) if ok => {
                Some(Group { prefix, first: first.map_or(1, |f| f.v), count: count.v, layout })
            }
            _ => None,
        },
    })
}

pub(super) fn import(cx: &mut Ctx<'_>, t: Tbl<'_, '_>) -> Option<ImportDecl> {
    t.check_keys(cx, IMPORT_KEYS);
    let openb =
        t.req_string(cx, "openb_nodes", "openb_nodes = \"../traces/openb/openb_node_list_gpu_node.csv\"");
    let base = t.req_uint(cx, "base_power_w", "base_power_w = 1100");
    let prefix = t.string(cx, "rack_prefix", "rack_prefix = \"openb-r\"");
    let layout = layout(cx, t, Some(8));
    Some(ImportDecl {
        path: t.path.to_owned(),
        openb_nodes: openb?,
        base_power: Watts(base?.v),
        rack_prefix: prefix,
        layout: layout?,
    })
}
