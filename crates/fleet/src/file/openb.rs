//! Import of an Alibaba `openb` node list (`sn,cpu_milli,memory_mib,gpu,model`).
//!
//! The cluster trace published with "Beware of Fragmentation" (Weng et al., USENIX ATC'23)
//! describes its 1,213 GPU nodes in this CSV. Importing it rather than transcribing it
//! keeps the simulated cluster byte-for-byte the published one.
//!
//! The format has no quoting, so it is split by hand: that keeps exact line and column
//! numbers for every problem, which a CSV library would blur.

use std::collections::BTreeMap;
use std::path::Path;

use gigawatt_units::{Mebibytes, MilliCores, Watts};

use crate::catalog::GpuCatalog;
use crate::diag::{Diagnostic, Diagnostics};
use crate::model::Node;
use crate::validate;

/// The header the trace files carry, in order.
pub(crate) const HEADER: [&str; 5] = ["sn", "cpu_milli", "memory_mib", "gpu", "model"];

/// Nodes of a node-list CSV, in file order, or every problem found in it.
///
/// `file` is the name used in diagnostics; unknown GPU models are reported once per model
/// (with the number of rows), not once per row.
pub(crate) fn parse_nodes(
    text: &str,
    file: &str,
    catalog: &GpuCatalog,
    base_power: Watts,
) -> Result<Vec<Node>, Diagnostics> {
    let mut errors = Diagnostics::default();
    let mut nodes = Vec::new();
    let mut unknown: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if split(header).map(|(_, f)| f).eq(HEADER) => {}
        header => {
            let got = header.map_or("", |(_, h)| h);
            errors.push(Diagnostic::new(
                file,
                1,
                1,
                "header",
                format!("node list header must be `{}` (got `{got}`)", HEADER.join(",")),
                "use an openb node list from the Alibaba cluster-trace-gpu-v2023 (e.g. openb_node_list_gpu_node.csv)",
            ));
            return Err(errors);
        }
    }
    for (i, line) in lines {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut err = |col: usize, field: &str, problem: String, fix: &str| {
            errors.push(Diagnostic::new(file, line_no, col, field, problem, fix));
        };
        if let Some(q) = line.find('"') {
            err(q + 1, "", "quoted fields are not supported in node lists".into(), "remove the quotes");
            continue;
        }
        let fields: Vec<(usize, &str)> = split(line).collect();
        let [(_, sn), (c_cpu, cpu), (c_mem, mem), (c_gpu, gpu), (c_model, model)] = fields[..] else {
            err(
                1,
                "",
                format!("expected 5 fields ({}), found {}", HEADER.join(","), fields.len()),
                "one node per line",
            );
            continue;
        };
        let num = |s: &str| s.trim().parse::<u64>().ok();
        let (Some(cpu), Some(mem), Some(gpus)) =
            (num(cpu), num(mem), num(gpu).and_then(|g| u32::try_from(g).ok()))
        else {
            for (col, name, v) in [(c_cpu, "cpu_milli", cpu), (c_mem, "memory_mib", mem), (c_gpu, "gpu", gpu)]
            {
                if num(v).is_none() {
                    err(col, name, format!("`{v}` is not a whole number"), "write a non-negative integer");
                }
            }
            continue;
        };
        if let Some(p) = validate::id("node name", sn.trim()) {
            err(1, "sn", p.problem, &p.fix);
        }
        let model = model.trim();
        let gpu_model = if model.is_empty() {
            None
        } else {
            match catalog.resolve(model) {
                Ok(spec) => Some(spec.id.clone()),
                Err(_) => {
                    unknown.entry(model.to_owned()).or_insert((line_no, c_model, 0)).2 += 1;
                    continue;
                }
            }
        };
        for (field, p) in validate::node_shape(gpu_model.is_some(), gpus, cpu, mem) {
            let col = match field {
                "cpu_millicores" => c_cpu,
                "memory_mib" => c_mem,
                "gpu_model" => c_model,
                _ => c_gpu,
            };
            err(col, field, p.problem, &p.fix);
        }
        nodes.push(Node {
            name: sn.trim().to_owned(),
            gpu_model,
            gpu_count: gpus,
            cpu: MilliCores(cpu),
            memory: Mebibytes(mem),
            base_power,
        });
    }
    for (model, (line, col, rows)) in unknown {
        let known: Vec<&str> = catalog.ids().collect();
        errors.push(Diagnostic::new(
            file,
            line,
            col,
            "model",
            format!(
                "unknown GPU model `{model}` in {rows} row(s), the first here; known models: {}",
                known.join(", ")
            ),
            format!("declare `{model}` in a [[gpu_model]] table of the fleet file, with its figures and their source"),
        ));
    }
    errors.into_result(nodes)
}

/// Fields of a line with their 1-based character columns.
fn split(line: &str) -> impl Iterator<Item = (usize, &str)> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut col = 1;
    line.split(',').map(move |f| {
        let at = col;
        col += f.chars().count() + 1;
        (at, f)
    })
}

/// Reads and parses the node list at `path`, reporting it as `shown`.
pub(crate) fn load_nodes(
    path: &Path,
    shown: &str,
    catalog: &GpuCatalog,
    base_power: Watts,
) -> Result<Vec<Node>, Result<Diagnostics, std::io::Error>> {
    let text = crate::read::read_text(path, crate::read::MAX_DATA_FILE_BYTES).map_err(Err)?;
    parse_nodes(&text, shown, catalog, base_power).map_err(Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Node>, Diagnostics> {
        parse_nodes(text, "n.csv", &GpuCatalog::builtin(), Watts(1000))
    }

    #[test]
    fn reads_gpu_and_cpu_only_rows() {
        let nodes =
            parse("sn,cpu_milli,memory_mib,gpu,model\nn0,32000,262144,0,\nn1,64000,262144,2,P100\r\n")
                .unwrap_or_default();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].gpu_model, None);
        assert_eq!(nodes[1].gpu_model.as_deref(), Some("P100-PCIE"));
        assert_eq!(nodes[1].gpu_count, 2);
        assert_eq!(nodes[1].base_power, Watts(1000));
    }

    #[test]
    fn every_bad_row_is_reported_with_its_column() {
        let text = "sn,cpu_milli,memory_mib,gpu,model\nn0,x,262144,1,T4\nn1,1,1,1,G9\nn2,1,1,2,G9\nn3,1,1,2\nn4,1,1,0,T4\n";
        let Err(d) = parse(text) else { panic!("accepted") };
        let shown: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert!(
            shown.contains(
                &"n.csv:2:4: cpu_milli: `x` is not a whole number; fix: write a non-negative integer"
                    .to_owned()
            ),
            "{shown:#?}"
        );
        assert!(
            shown.iter().any(|s| s.starts_with(
                "n.csv:3:10: model: unknown GPU model `G9` in 2 row(s), the first here; known models: A10,"
            )),
            "{shown:#?}"
        );
        assert!(shown.iter().any(|s| s.starts_with("n.csv:5:1: expected 5 fields")), "{shown:#?}");
        assert!(
            shown.iter().any(|s| s.starts_with("n.csv:6:8: gpus: node has a GPU model but 0 GPUs")),
            "{shown:#?}"
        );
        assert_eq!(d.len(), 4);
    }

    #[test]
    fn wrong_header_is_one_clear_problem() {
        let Err(d) = parse("name,cpu\nx,1\n") else { panic!("accepted") };
        assert_eq!(d.len(), 1);
        assert!(d.0[0].problem.contains("header must be `sn,cpu_milli,memory_mib,gpu,model`"));
    }
}
