//! The Alibaba GPU-cluster 2023 "openb" pod lists (`openb_pod_list_*.csv`).
//!
//! Columns: `name,cpu_milli,memory_mib,num_gpu,gpu_milli` and, in most files,
//! `gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time`. Source and
//! attribution: `traces/README.md`.
//!
//! Reading follows the FGD simulator's conversion (see `docs/fgd-reproduction.md`):
//! `gpu_milli` is clamped to 0..=1000 and matters only when `num_gpu > 0`; a pod with
//! several GPUs takes whole GPUs; a CPU-only pod ignores `gpu_spec`.

use std::path::Path;

use gigawatt_core::{GpuDemand, TaskDemand};
use gigawatt_fleet::Diagnostic;
use gigawatt_units::{GpuMilli, Mebibytes, MilliCores};

use crate::TraceError;

/// One row of a pod list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenbPod {
    /// Pod name (unique in a file).
    pub name: String,
    /// CPU request.
    pub cpu: MilliCores,
    /// Memory request.
    pub memory: Mebibytes,
    /// GPUs: none, a share of one, or several whole ones.
    pub gpu: GpuDemand,
    /// Allowed GPU models as written in the trace (empty: any).
    pub gpu_spec: Vec<String>,
    /// Quality of service class (LS, BE, Burstable, Guaranteed), if given.
    pub qos: Option<String>,
    /// Creation time in seconds, if given.
    pub creation_time: Option<i64>,
    /// Deletion time in seconds, if given.
    pub deletion_time: Option<i64>,
}

impl OpenbPod {
    /// The per-task demand, with model names mapped through `canon` (trace spelling to
    /// catalog id).
    #[must_use]
    pub fn demand(&self, canon: &dyn Fn(&str) -> String) -> TaskDemand {
        TaskDemand {
            gpu: self.gpu,
            gpu_models: self.gpu_spec.iter().map(|m| canon(m)).collect(),
            cpu: self.cpu,
            memory: self.memory,
        }
    }
}

/// Pods read from a file, and the rows skipped with `--skip-invalid`.
#[derive(Debug, Clone, Default)]
pub struct PodList {
    /// Valid pods in file order.
    pub pods: Vec<OpenbPod>,
    /// Problems of the rows that were skipped.
    pub skipped: Vec<Diagnostic>,
}

const REQUIRED: [&str; 5] = ["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"];

/// Reads a pod list. Every bad row is reported with file, line and field; with
/// `skip_invalid` they are skipped and counted instead of failing the whole read.
pub fn load_pods(path: &Path, skip_invalid: bool) -> Result<PodList, TraceError> {
    let text = std::fs::read_to_string(path).map_err(|e| TraceError::Io(path.display().to_string(), e))?;
    parse_pods(&text, &path.display().to_string(), skip_invalid)
}

/// Like [`load_pods`], from text in memory.
pub fn parse_pods(text: &str, file: &str, skip_invalid: bool) -> Result<PodList, TraceError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| TraceError::bad(file, 1, "", e.to_string(), "the first line must be a CSV header"))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let missing: Vec<&str> = REQUIRED.iter().copied().filter(|c| col(c).is_none()).collect();
    if !missing.is_empty() {
        return Err(TraceError::bad(
            file,
            1,
            "header",
            format!("missing column(s) {}", missing.join(", ")),
            format!(
                "an openb pod list starts with `{}` (then optional gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time)",
                REQUIRED.join(",")
            ),
        ));
    }
    let idx = |name: &str| col(name);
    let (i_name, i_cpu, i_mem, i_ngpu, i_milli) =
        (idx("name"), idx("cpu_milli"), idx("memory_mib"), idx("num_gpu"), idx("gpu_milli"));
    let (i_spec, i_qos, i_create, i_delete) =
        (idx("gpu_spec"), idx("qos"), idx("creation_time"), idx("deletion_time"));
    let mut out = PodList::default();
    let mut errors = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (n, record) in reader.records().enumerate() {
        // The physical line where the record starts (blank lines and quoted newlines
        // make it differ from the record number).
        let byte = match &record {
            Ok(r) => r.position().map(|p| p.byte()),
            Err(e) => e.position().map(|p| p.byte()),
        };
        let line = byte.map_or(n + 2, |b| crate::line_at(text, b));
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(Diagnostic::new(
                    file,
                    line,
                    0,
                    "",
                    format!("unreadable CSV row: {e}"),
                    "fix the quoting or the number of fields",
                ));
                continue;
            }
        };
        let mut row_errors = Vec::new();
        let get = |i: Option<usize>| i.and_then(|i| record.get(i)).map(str::trim).unwrap_or("");
        let int = |i: Option<usize>, field: &str, row_errors: &mut Vec<Diagnostic>| -> i64 {
            let raw = get(i);
            match raw.parse::<i64>() {
                Ok(v) if v >= 0 => v,
                _ => {
                    row_errors.push(Diagnostic::new(
                        file,
                        line,
                        0,
                        field,
                        format!("`{raw}` is not a non-negative integer"),
                        format!("write {field} as a whole number, e.g. 1000"),
                    ));
                    0
                }
            }
        };
        let name = get(i_name).to_string();
        if name.is_empty() {
            row_errors.push(Diagnostic::new(
                file,
                line,
                0,
                "name",
                "empty pod name",
                "give every pod a unique name",
            ));
        } else if !names.insert(name.clone()) {
            row_errors.push(Diagnostic::new(
                file,
                line,
                0,
                "name",
                format!("duplicate pod name `{name}`"),
                "pod names must be unique",
            ));
        }
        let cpu = int(i_cpu, "cpu_milli", &mut row_errors);
        let mem = int(i_mem, "memory_mib", &mut row_errors);
        let num_gpu = int(i_ngpu, "num_gpu", &mut row_errors);
        let milli = int(i_milli, "gpu_milli", &mut row_errors);
        if num_gpu > 1024 {
            row_errors.push(Diagnostic::new(
                file,
                line,
                0,
                "num_gpu",
                format!("{num_gpu} GPUs for one pod"),
                "num_gpu is GPUs per pod, at most a few dozen",
            ));
        }
        if !row_errors.is_empty() {
            errors.extend(row_errors);
            continue;
        }
        // The FGD conversion: milli clamped to 0..=1000; a multi-GPU pod takes whole GPUs;
        // a GPU pod with no share is treated as CPU-only, as the reference filter does.
        let milli = milli.min(1000) as u32;
        let gpu = match (num_gpu, milli) {
            (0, _) | (_, 0) => GpuDemand::NONE,
            (1, m) => GpuDemand::shared(GpuMilli(m)),
            (n, _) => GpuDemand::whole(n as u32),
        };
        let gpu_spec = if gpu.count == 0 {
            Vec::new()
        } else {
            get(i_spec).split('|').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
        };
        let opt_int = |i: Option<usize>| get(i).parse::<i64>().ok();
        out.pods.push(OpenbPod {
            name,
            cpu: MilliCores(cpu as u64),
            memory: Mebibytes(mem as u64),
            gpu,
            gpu_spec,
            qos: Some(get(i_qos).to_string()).filter(|q| !q.is_empty()),
            creation_time: opt_int(i_create),
            deletion_time: opt_int(i_delete),
        });
    }
    if errors.is_empty() || skip_invalid {
        out.skipped = errors;
        Ok(out)
    } else {
        Err(TraceError::Invalid(gigawatt_fleet::Diagnostics(errors)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n";

    #[test]
    fn reads_the_fgd_conversion() {
        let text = format!("{HEAD}a,1000,10,1,460,\nb,0,0,2,500,T4|P100\nc,10,10,0,0,T4\nd,1,1,1,2000,\n");
        let list = parse_pods(&text, "p.csv", false).unwrap();
        assert_eq!(list.pods[0].gpu, GpuDemand::shared(GpuMilli(460)));
        assert_eq!(list.pods[1].gpu, GpuDemand::whole(2));
        assert_eq!(list.pods[1].gpu_spec, vec!["T4", "P100"]);
        assert!(list.pods[2].gpu_spec.is_empty(), "CPU-only pods ignore gpu_spec");
        assert_eq!(list.pods[3].gpu, GpuDemand::shared(GpuMilli(1000)));
    }

    #[test]
    fn bad_rows_name_file_line_and_field_and_all_are_reported() {
        let text = format!("{HEAD}a,x,10,1,460,\nb,1,1,1,1,\nc,1,-5,1,1,\n");
        let err = parse_pods(&text, "p.csv", false).unwrap_err().to_string();
        assert!(err.contains("p.csv:2") && err.contains("cpu_milli"), "{err}");
        assert!(err.contains("p.csv:4") && err.contains("memory_mib"), "{err}");
        let skipped = parse_pods(&text, "p.csv", true).unwrap();
        assert_eq!(skipped.pods.len(), 1);
        assert_eq!(skipped.skipped.len(), 2);
    }

    #[test]
    fn missing_columns_are_named() {
        let err = parse_pods("name,cpu_milli\n", "p.csv", false).unwrap_err().to_string();
        assert!(err.contains("memory_mib"), "{err}");
    }
}
