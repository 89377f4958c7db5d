//! Human output: aligned tables in the manner of `kubectl get`, and the small formatters
//! they use (ages, watts, GPU counts, truncated reasons).

use std::time::{SystemTime, UNIX_EPOCH};

/// A table of text cells, aligned on render; the last column is not padded.
#[derive(Debug)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    /// A table with these column titles. A title starting with `>` is right-aligned
    /// (numbers); the `>` is not shown.
    pub fn new(header: &[&str]) -> Table {
        let right = header.iter().map(|h| h.starts_with('>')).collect();
        let header = header.iter().map(|h| h.trim_start_matches('>').to_string()).collect();
        Table { header, rows: Vec::new(), right }
    }

    /// Adds a row (missing cells are blank, extra ones dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as text, one line per row, columns separated by two spaces.
    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut width = vec![0usize; n];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                let pad = width[i].saturating_sub(c.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    if i + 1 < n {
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Cuts `s` to `max` characters, ending with `…` when cut; newlines become spaces.
pub fn truncate(s: &str, max: usize) -> String {
    let s = s.replace(['\n', '\r', '\t'], " ");
    if s.chars().count() <= max {
        return s;
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Milliseconds since the epoch of an API time (`2026-11-25T10:00:00.123Z`).
pub fn parse_time_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis())
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How long ago an API time was, `kubectl`-style: `42s`, `5m`, `3h`, `2d`.
pub fn age(at: &str) -> String {
    match parse_time_ms(at) {
        Some(t) => duration_short((now_ms() - t).max(0) / 1000),
        None => "?".into(),
    }
}

/// A number of seconds as `42s`, `5m`, `3h12m`, `2d`.
pub fn duration_short(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 10 * 3600 => {
            let m = (s % 3600) / 60;
            if m == 0 { format!("{}h", s / 3600) } else { format!("{}h{m}m", s / 3600) }
        }
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// An API time for people: `2026-11-25 10:00:00 UTC`.
pub fn when(at: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(at) {
        Ok(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => at.to_string(),
    }
}

/// Watts in the unit that reads best: `850 W`, `12.5 kW`, `6.67 MW`.
pub fn watts(w: u64) -> String {
    let f = w as f64;
    if w >= 1_000_000 {
        format!("{:.2} MW", f / 1e6)
    } else if w >= 1_000 {
        format!("{:.1} kW", f / 1e3)
    } else {
        format!("{w} W")
    }
}

/// Thousandths of a GPU as a GPU count: `16`, `0.5`, `2.25`.
pub fn gpus_milli(milli: u64) -> String {
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        let s = format!("{:.3}", milli as f64 / 1000.0);
        s.trim_end_matches('0').to_string()
    }
}

/// `part / whole` as a percentage with one decimal (0 when `whole` is 0).
pub fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

/// A bar of `width` cells filled to `pct` percent: `[#####.....]`.
pub fn bar(pct: f64, width: usize) -> String {
    let filled = ((pct.clamp(0.0, 100.0) / 100.0) * width as f64).round() as usize;
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled.min(width)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&["ID", ">N", "NOTE"]);
        t.row(vec!["a".into(), "1".into(), "x".into()]);
        t.row(vec!["bbbb".into(), "100".into(), "y".into()]);
        assert_eq!(t.render(), "ID      N  NOTE\na       1  x\nbbbb  100  y\n");
    }

    #[test]
    fn small_formatters() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(duration_short(59), "59s");
        assert_eq!(duration_short(3 * 3600 + 120), "3h2m");
        assert_eq!(duration_short(3 * 86_400), "3d");
        assert_eq!(watts(6_666_666), "6.67 MW");
        assert_eq!(watts(14_300), "14.3 kW");
        assert_eq!(gpus_milli(16_000), "16");
        assert_eq!(gpus_milli(500), "0.5");
        assert_eq!(bar(50.0, 4), "[##..]");
        assert_eq!(parse_time_ms("1970-01-01T00:00:01.500Z"), Some(1500));
    }
}
