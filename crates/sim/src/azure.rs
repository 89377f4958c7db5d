//! The Azure LLM inference trace 2023 (`AzureLLMInferenceTrace_*.csv`): request arrivals.
//!
//! Columns `TIMESTAMP,ContextTokens,GeneratedTokens`; timestamps are wall-clock with up
//! to 7 decimal places. License CC-BY 4.0, attribution: Patel et al., "Splitwise:
//! Efficient generative LLM inference using phase splitting", ISCA 2024 (see
//! `traces/README.md`). For now the simulator reads arrivals and token counts; the
//! power stage turns them into inference load.

use std::path::Path;

use chrono::NaiveDateTime;
use gigawatt_fleet::Diagnostic;
use gigawatt_units::Seconds;
use serde::Serialize;

use crate::TraceError;

/// One inference request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Request {
    /// Arrival, relative to the first request of the trace.
    pub at: Seconds,
    /// Prompt length in tokens.
    pub context_tokens: u32,
    /// Output length in tokens.
    pub generated_tokens: u32,
}

/// Reads a request trace, sorted by arrival. Bad rows are reported with file, line and
/// field; with `skip_invalid` they are skipped and counted.
pub fn load_requests(path: &Path, skip_invalid: bool) -> Result<(Vec<Request>, Vec<Diagnostic>), TraceError> {
    let text = std::fs::read_to_string(path).map_err(|e| TraceError::Io(path.display().to_string(), e))?;
    parse_requests(&text, &path.display().to_string(), skip_invalid)
}

/// Like [`load_requests`], from text in memory.
pub fn parse_requests(
    text: &str,
    file: &str,
    skip_invalid: bool,
) -> Result<(Vec<Request>, Vec<Diagnostic>), TraceError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| TraceError::bad(file, 1, "", e.to_string(), "the first line must be a CSV header"))?
        .clone();
    let col = |n: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(n));
    let (Some(i_t), Some(i_c), Some(i_g)) = (col("TIMESTAMP"), col("ContextTokens"), col("GeneratedTokens"))
    else {
        return Err(TraceError::bad(
            file,
            1,
            "header",
            "missing column(s)",
            "the header must be TIMESTAMP,ContextTokens,GeneratedTokens",
        ));
    };
    let mut raw = Vec::new();
    let mut errors = Vec::new();
    for (n, rec) in reader.records().enumerate() {
        let byte = match &rec {
            Ok(r) => r.position().map(|p| p.byte()),
            Err(e) => e.position().map(|p| p.byte()),
        };
        let line = byte.map_or(n + 2, |b| crate::line_at(text, b));
        let rec = match rec {
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
        let get = |i: usize| rec.get(i).map(str::trim).unwrap_or("");
        let t = parse_time(get(i_t));
        let c = get(i_c).parse::<u32>();
        let g = get(i_g).parse::<u32>();
        match (t, c, g) {
            (Some(t), Ok(c), Ok(g)) => raw.push((t, c, g)),
            (t, c, g) => {
                if t.is_none() {
                    errors.push(Diagnostic::new(
                        file,
                        line,
                        0,
                        "TIMESTAMP",
                        format!("`{}` is not a timestamp between the years 1900 and 9999", get(i_t)),
                        "write e.g. 2023-11-16 18:15:46.6805900",
                    ));
                }
                if c.is_err() {
                    errors.push(Diagnostic::new(
                        file,
                        line,
                        0,
                        "ContextTokens",
                        format!("`{}` is not a token count", get(i_c)),
                        "a whole number ≥ 0",
                    ));
                }
                if g.is_err() {
                    errors.push(Diagnostic::new(
                        file,
                        line,
                        0,
                        "GeneratedTokens",
                        format!("`{}` is not a token count", get(i_g)),
                        "a whole number ≥ 0",
                    ));
                }
            }
        }
    }
    if !errors.is_empty() && !skip_invalid {
        return Err(TraceError::Invalid(gigawatt_fleet::Diagnostics(errors)));
    }
    raw.sort_by_key(|r| r.0);
    let first = raw.first().map_or(0, |r| r.0);
    let requests = raw
        .into_iter()
        .map(|(t, c, g)| Request {
            at: Seconds((t - first) as f64 / 1e6),
            context_tokens: c,
            generated_tokens: g,
        })
        .collect();
    Ok((requests, errors))
}

/// Microseconds since the epoch, for years 1900..=9999 (outside that a trace is wrong,
/// and differences could overflow).
fn parse_time(s: &str) -> Option<i64> {
    use chrono::Datelike;
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .filter(|t| (1900..=9999).contains(&t.year()))
        .map(|t| t.and_utc().timestamp_micros())
}

/// Arrival statistics of a request trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArrivalStats {
    /// Number of requests.
    pub requests: usize,
    /// Span from first to last arrival.
    pub span_s: f64,
    /// Mean arrival rate.
    pub mean_rps: f64,
    /// Highest number of arrivals in one second.
    pub peak_rps: u32,
    /// Median prompt tokens.
    pub context_tokens_p50: u32,
    /// 99th percentile prompt tokens.
    pub context_tokens_p99: u32,
    /// Median generated tokens.
    pub generated_tokens_p50: u32,
    /// 99th percentile generated tokens.
    pub generated_tokens_p99: u32,
}

/// Summarises arrivals.
#[must_use]
pub fn stats(requests: &[Request]) -> ArrivalStats {
    let span = requests.last().map_or(0.0, |r| r.at.0);
    let mut per_second = std::collections::BTreeMap::<u64, u32>::new();
    for r in requests {
        *per_second.entry(r.at.0.floor() as u64).or_insert(0) += 1;
    }
    let pct = |mut v: Vec<u32>, q: f64| -> u32 {
        v.sort_unstable();
        if v.is_empty() { 0 } else { v[((v.len() - 1) as f64 * q).round() as usize] }
    };
    let ctx: Vec<u32> = requests.iter().map(|r| r.context_tokens).collect();
    let gen_: Vec<u32> = requests.iter().map(|r| r.generated_tokens).collect();
    ArrivalStats {
        requests: requests.len(),
        span_s: span,
        mean_rps: if span > 0.0 { requests.len() as f64 / span } else { 0.0 },
        peak_rps: per_second.values().copied().max().unwrap_or(0),
        context_tokens_p50: pct(ctx.clone(), 0.5),
        context_tokens_p99: pct(ctx, 0.99),
        generated_tokens_p50: pct(gen_.clone(), 0.5),
        generated_tokens_p99: pct(gen_, 0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_arrivals_relative_to_the_first() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:47.5000000,10,2\n2023-11-16 18:15:46.0000000,5,1\n";
        let (r, _) = parse_requests(text, "a.csv", false).unwrap();
        assert_eq!(r[0].context_tokens, 5);
        assert_eq!(r[1].at, Seconds(1.5));
    }

    #[test]
    fn bad_rows_are_located() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,x,1\n";
        let err = parse_requests(text, "a.csv", false).unwrap_err().to_string();
        assert!(
            err.contains("a.csv:2") && err.contains("TIMESTAMP") && err.contains("ContextTokens"),
            "{err}"
        );
    }
}
