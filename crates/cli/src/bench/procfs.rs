//! What Linux says about a process: resident memory and CPU time, from `/proc`.
//!
//! Benchmarks report the server's own figures (not the load generator's), so they read
//! the server process's files rather than asking the allocator.

use serde::Serialize;

/// Resident memory of a process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    /// Resident set size now (`VmRSS`), in MiB.
    pub rss_mib: f64,
    /// Peak resident set size so far (`VmHWM`, the high-water mark), in MiB.
    pub peak_rss_mib: f64,
}

/// Reads `/proc/PID/status`. `None` where there is no such file (not Linux, or the
/// process has ended).
#[must_use]
pub fn memory(pid: u32) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        let n: f64 = line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(n / 1024.0)
    };
    Some(Memory { rss_mib: kib("VmRSS:")?, peak_rss_mib: kib("VmHWM:")? })
}

/// Clock ticks per second of `/proc/PID/stat`'s times: `sysconf(_SC_CLK_TCK)`, which is
/// 100 on every Linux architecture the project builds for (checked with `getconf CLK_TCK`).
const CLK_TCK: f64 = 100.0;

/// User plus system CPU time of a process (all its threads), in seconds, from
/// `/proc/PID/stat`.
#[must_use]
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

/// CPU time every process on the machine used so far (all CPUs, user + system + the
/// rest but idle and I/O wait), in seconds, from `/proc/stat`: with the server's and the
/// load generator's own, it tells how much other programs took during a benchmark.
#[must_use]
pub fn machine_busy_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is
    // already counted in user.
    let busy: f64 = v.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, x)| x).sum();
    Some(busy / CLK_TCK)
}
