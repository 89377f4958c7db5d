//! How carbon-intensive a site's electricity is over time, and the CSV it is read from.
//!
//! The same kilowatt-hour emits ten times more on a windless winter evening in Germany than
//! at noon in France, and several times more at a French evening peak than in the
//! early-afternoon trough. A [`CarbonSeries`] holds one site's intensity over time so that
//! accounting can turn energy into grams and planning can choose *when* to run.
//!
//! The file format is two columns, one row per time step:
//!
//! ```text
//! # France, hourly, gCO2eq/kWh
//! timestamp,gco2_per_kwh
//! 2024-01-15T00:00:00Z,17.9
//! 2024-01-15T01:00:00+01:00,17.2
//! 2024-01-15 02:00,16.8
//! ```
//!
//! Timestamps are RFC 3339 (offsets allowed) or `YYYY-MM-DD HH:MM[:SS]` in UTC, strictly
//! increasing; `#` lines and blank lines are ignored. Every problem is reported at once, each
//! with its line, column, field and fix.

use std::path::Path;

use chrono::{DateTime, NaiveDateTime, SecondsFormat};
use gigawatt_units::{CarbonIntensity, GramsCo2, Joules, Timestamp, Watts};
use serde::Serialize;

use crate::{Diagnostic, Diagnostics};

/// The header line a carbon CSV must start with (after comments).
pub const CARBON_CSV_HEADER: &str = "timestamp,gco2_per_kwh";

/// The highest intensity accepted. Lignite plants emit about 1,100 g/kWh and no grid averages
/// more than about 1,000, so a larger figure is a unit error (g/MWh, or a typo), not data.
pub const MAX_CARBON_INTENSITY: CarbonIntensity = CarbonIntensity(2000.0);

/// An example row, quoted in fixes.
const EXAMPLE_ROW: &str = "2024-01-15T13:00:00Z,21.7";

/// One site's carbon intensity over time: a step function.
///
/// A value holds from its timestamp until the next one; before the first point the first
/// value holds, after the last point the last value. Grid operators publish averages per
/// interval, and a step function integrates them without inventing anything in between.
/// Always holds at least one point, in strictly increasing time order, each finite and
/// within `0..=`[`MAX_CARBON_INTENSITY`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarbonSeries {
    points: Vec<(Timestamp, CarbonIntensity)>,
    /// `cumulative[i]` is the integral of the intensity from the first point to point `i`,
    /// in (g/kWh)·ms, so that any window integrates in `O(log n)`.
    #[serde(skip)]
    cumulative: Vec<f64>,
}

impl CarbonSeries {
    /// A series from points built in code (a forecast, a test), checked like a file would be.
    ///
    /// # Errors
    /// Every problem at once, with the offending point as `points[i]`: no point, a
    /// non-finite, negative or implausible intensity, a timestamp that is not a date, or
    /// timestamps that do not strictly increase.
    pub fn new(points: Vec<(Timestamp, CarbonIntensity)>) -> Result<CarbonSeries, Diagnostics> {
        const SOURCE: &str = "carbon series";
        let mut diags = Diagnostics::default();
        if points.is_empty() {
            diags.push(Diagnostic::new(
                SOURCE,
                0,
                0,
                "points",
                "a carbon series needs at least one point",
                "give one (timestamp, intensity) per time step",
            ));
        }
        for (i, &(t, v)) in points.iter().enumerate() {
            let field = format!("points[{i}]");
            if DateTime::from_timestamp_millis(t.0).is_none() {
                diags.push(Diagnostic::new(
                    SOURCE,
                    0,
                    0,
                    field.clone(),
                    format!("{} ms is not a representable date", t.0),
                    "use milliseconds since 1970-01-01T00:00:00Z",
                ));
            }
            if let Err((problem, fix)) = check_intensity(v.0, &v.0.to_string()) {
                diags.push(Diagnostic::new(SOURCE, 0, 0, field.clone(), problem, fix));
            }
            if i > 0 && points[i - 1].0 >= t {
                diags.push(Diagnostic::new(
                    SOURCE,
                    0,
                    0,
                    field,
                    format!("timestamp {} does not come after the previous one ({})", t.0, points[i - 1].0.0),
                    "sort the points by time with no duplicates",
                ));
            }
        }
        diags.into_result(())?;
        let mut cumulative = Vec::with_capacity(points.len());
        let mut acc = 0.0;
        for (i, &(t, _)) in points.iter().enumerate() {
            if i > 0 {
                let (prev_t, prev_v) = points[i - 1];
                acc += prev_v.0 * span_ms(prev_t, t);
            }
            cumulative.push(acc);
        }
        Ok(CarbonSeries { points, cumulative })
    }

    /// The points, in time order: what was read, for display and export.
    #[must_use]
    pub fn points(&self) -> &[(Timestamp, CarbonIntensity)] {
        &self.points
    }

    /// The intensity in force at `t`.
    #[must_use]
    pub fn intensity_at(&self, t: Timestamp) -> CarbonIntensity {
        let i = self.points.partition_point(|p| p.0 <= t).saturating_sub(1);
        self.points.get(i).map_or(CarbonIntensity(0.0), |p| p.1)
    }

    /// The time-weighted mean over the series' own span, the figure published as "the
    /// average" of a period.
    ///
    /// The last point is taken to last as long as the step before it, so that a regular
    /// hourly series of 168 points weighs its 168 hours equally. A single point is its own
    /// mean.
    #[must_use]
    pub fn mean(&self) -> CarbonIntensity {
        let n = self.points.len();
        match (self.points.first(), self.points.last()) {
            (Some(&(first, _)), Some(&(last, _))) if n >= 2 => {
                let last_step = last.0.saturating_sub(self.points[n - 2].0.0);
                self.mean_over(first, Timestamp(last.0.saturating_add(last_step)))
            }
            (_, Some(&(_, value))) => value,
            _ => CarbonIntensity(0.0),
        }
    }

    /// The time-weighted mean intensity over `[start, end)`: what a constant load running
    /// over that window is charged per kWh. An empty window gives the intensity at `start`.
    #[must_use]
    pub fn mean_over(&self, start: Timestamp, end: Timestamp) -> CarbonIntensity {
        if end <= start {
            return self.intensity_at(start);
        }
        CarbonIntensity((self.integral_to(end) - self.integral_to(start)) / span_ms(start, end))
    }

    /// The lowest intensity of the series.
    #[must_use]
    pub fn min(&self) -> CarbonIntensity {
        CarbonIntensity(self.points.iter().map(|p| p.1.0).fold(f64::INFINITY, f64::min))
    }

    /// The highest intensity of the series.
    #[must_use]
    pub fn max(&self) -> CarbonIntensity {
        CarbonIntensity(self.points.iter().map(|p| p.1.0).fold(f64::NEG_INFINITY, f64::max))
    }

    /// The emissions of drawing a constant `power` from `start` to `end`, each step of the
    /// series charged at its own intensity. Zero when `end` is not after `start`.
    #[must_use]
    pub fn emissions(&self, start: Timestamp, end: Timestamp, power: Watts) -> GramsCo2 {
        if end <= start {
            return GramsCo2::ZERO;
        }
        self.mean_over(start, end).of(power.over(end.since(start)))
    }

    /// Whether the series is one week of data (its points span between six and seven
    /// days and one step): such a profile is read as a *typical week* that repeats, which
    /// is how the bundled French example is meant to be used on any date.
    #[must_use]
    pub fn is_typical_week(&self) -> bool {
        let (Some(first), Some(last)) = (self.points.first(), self.points.last()) else { return false };
        let span = last.0.0 - first.0.0;
        (6 * DAY_MS..WEEK_MS).contains(&span)
    }

    /// Maps `t` into the series' week when it is a typical week (see
    /// [`is_typical_week`](Self::is_typical_week)); otherwise returns `t`.
    #[must_use]
    pub fn in_typical_week(&self, t: Timestamp) -> Timestamp {
        match self.points.first() {
            Some(first) if self.is_typical_week() => {
                Timestamp(first.0.0 + (t.0 - first.0.0).rem_euclid(WEEK_MS))
            }
            _ => t,
        }
    }

    /// The series over `[start, end]` with a typical week repeated to cover it (whole
    /// weeks shifted by multiples of seven days), for planning on any date; any other
    /// series as it is.
    #[must_use]
    pub fn repeated_over(&self, start: Timestamp, end: Timestamp) -> CarbonSeries {
        let Some(&(first, _)) = self.points.first() else { return self.clone() };
        if !self.is_typical_week() || end <= start {
            return self.clone();
        }
        let first_week = (start.0 - first.0).div_euclid(WEEK_MS) - 1;
        let last_week = (end.0 - first.0).div_euclid(WEEK_MS) + 1;
        let mut points = Vec::new();
        for k in first_week..=last_week.min(first_week + 520) {
            points.extend(self.points.iter().map(|&(t, v)| (Timestamp(t.0 + k * WEEK_MS), v)));
        }
        CarbonSeries::new(points).unwrap_or_else(|_| self.clone())
    }

    /// Like [`emissions`](Self::emissions), reading a typical week as repeating: the
    /// window is cut where it wraps around the week.
    #[must_use]
    pub fn emissions_repeating(&self, start: Timestamp, end: Timestamp, power: Watts) -> GramsCo2 {
        if !self.is_typical_week() || end <= start {
            return self.emissions(start, end, power);
        }
        let mut total = GramsCo2::ZERO;
        let mut t = start;
        // At most a few wraps for any real run; bounded anyway.
        for _ in 0..1_000 {
            if t >= end {
                break;
            }
            let folded = self.in_typical_week(t);
            let week_end = self.points.first().map_or(end.0, |f| f.0.0 + WEEK_MS);
            let piece = (end.0 - t.0).min(week_end - folded.0).max(1);
            total += self.emissions(folded, Timestamp(folded.0 + piece), power);
            t = Timestamp(t.0 + piece);
        }
        total
    }

    /// The emissions of `energy` drawn at instant `t`, for energy measured per interval
    /// (a task's joules from its agent) rather than as a power over a window.
    #[must_use]
    pub fn emissions_of_energy_at(&self, t: Timestamp, energy: Joules) -> GramsCo2 {
        self.intensity_at(t).of(energy)
    }

    /// The series as a carbon CSV (UTC timestamps), which [`parse_carbon_csv`] reads back
    /// to the same series.
    #[must_use]
    pub fn to_csv(&self) -> String {
        let mut out = String::from(CARBON_CSV_HEADER);
        out.push('\n');
        for &(t, v) in &self.points {
            // `new` checked that every timestamp is a date; the fallback is never taken.
            let time = DateTime::from_timestamp_millis(t.0)
                .map_or_else(|| t.0.to_string(), |d| d.to_rfc3339_opts(SecondsFormat::AutoSi, true));
            out.push_str(&format!("{time},{}\n", v.0));
        }
        out
    }

    /// The integral of the intensity from the first point to `t` (negative before it), in
    /// (g/kWh)·ms.
    fn integral_to(&self, t: Timestamp) -> f64 {
        let i = self.points.partition_point(|p| p.0 <= t);
        let j = i.saturating_sub(1);
        match (self.points.get(j), self.cumulative.get(j)) {
            (Some(&(pt, pv)), Some(&cum)) if i > 0 => cum + pv.0 * span_ms(pt, t),
            (Some(&(pt, pv)), _) => -pv.0 * span_ms(t, pt),
            _ => 0.0,
        }
    }
}

const DAY_MS: i64 = 24 * 3600 * 1000;
const WEEK_MS: i64 = 7 * DAY_MS;

/// Milliseconds from `a` to `b`, as a float for integration.
fn span_ms(a: Timestamp, b: Timestamp) -> f64 {
    b.0.saturating_sub(a.0) as f64
}

/// Reads a carbon CSV from disk. See [`parse_carbon_csv`] for the format.
///
/// # Errors
/// The file cannot be read, or any problem [`parse_carbon_csv`] reports.
pub fn load_carbon_csv(path: &Path) -> Result<CarbonSeries, Diagnostics> {
    let file = path.display().to_string();
    let text = crate::read::read_text(path, crate::read::MAX_DATA_FILE_BYTES).map_err(|e| {
        Diagnostic::new(
            file.clone(),
            0,
            0,
            "",
            format!("cannot read the carbon-intensity file: {e}"),
            "give a regular UTF-8 text file in the carbon CSV format",
        )
    })?;
    parse_carbon_csv(&text, &file)
}

/// Reads a carbon CSV (`timestamp,gco2_per_kwh`) from text; `file` names it in diagnostics.
///
/// # Errors
/// Every problem in the text, in file order: a missing or wrong header, a row without
/// exactly two fields, an unreadable timestamp, an intensity that is not a number, negative
/// or above [`MAX_CARBON_INTENSITY`], timestamps that do not strictly increase, or no data
/// row at all.
pub fn parse_carbon_csv(text: &str, file: &str) -> Result<CarbonSeries, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut points = Vec::new();
    let mut header_seen = false;
    let mut data_rows = 0usize;
    // The latest valid timestamp so far, with its line and spelling, for order errors.
    let mut latest: Option<(Timestamp, usize, &str)> = None;
    let mut last_line = 0;
    let mut foreign = false;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        last_line = line;
        let content = if index == 0 { raw.strip_prefix('\u{feff}').unwrap_or(raw) } else { raw };
        let trimmed = content.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields = split_fields(content);
        if !header_seen {
            header_seen = true;
            match check_header(&fields, file, line, &mut diags) {
                Header::Found => continue,
                Header::Missing => {}
                // Not a carbon CSV: say so, and quote none of it.
                Header::Foreign => {
                    foreign = true;
                    break;
                }
            }
        }
        data_rows += 1;
        let [(t_col, t_text), (v_col, v_text)] = fields[..] else {
            diags.push(Diagnostic::new(
                file,
                line,
                0,
                "",
                format!(
                    "expected 2 fields (timestamp, gco2_per_kwh), found {}: `{}`",
                    fields.len(),
                    excerpt(trimmed)
                ),
                field_count_fix(&fields),
            ));
            continue;
        };
        let time = match parse_timestamp(t_text) {
            Ok(t) => Some(t),
            Err((problem, fix)) => {
                diags.push(Diagnostic::new(file, line, t_col, "timestamp", problem, fix));
                None
            }
        };
        let value = match v_text.parse::<f64>() {
            Ok(v) => check_intensity(v, v_text).map(|()| CarbonIntensity(v)),
            Err(_) if v_text.is_empty() => Err((
                "missing carbon intensity".to_owned(),
                format!("write grams CO2-eq per kWh, e.g. `{EXAMPLE_ROW}`"),
            )),
            Err(_) => Err((
                format!("`{}` is not a number", excerpt(v_text)),
                "write grams CO2-eq per kWh as a plain number with a decimal point, e.g. `21.7`".to_owned(),
            )),
        };
        let value = value.map_err(|(problem, fix)| {
            diags.push(Diagnostic::new(file, line, v_col, "gco2_per_kwh", problem, fix));
        });
        let Some(t) = time else { continue };
        if let Some((prev, prev_line, prev_text)) = latest
            && t <= prev
        {
            let problem = if t == prev {
                format!("timestamp `{t_text}` is the same instant as `{prev_text}` on line {prev_line}")
            } else {
                format!("timestamp `{t_text}` is earlier than `{prev_text}` on line {prev_line}")
            };
            let fix = "sort the rows by time, oldest first, with one row per instant";
            diags.push(Diagnostic::new(file, line, t_col, "timestamp", problem, fix));
            continue;
        }
        latest = Some((t, line, t_text));
        if let Ok(v) = value {
            points.push((t, v));
        }
    }
    if !header_seen {
        diags.push(Diagnostic::new(
            file,
            last_line.max(1),
            0,
            "header",
            "the file has no header and no data (it is empty or only comments)",
            format!("start with `{CARBON_CSV_HEADER}` and add one row per time step, e.g. `{EXAMPLE_ROW}`"),
        ));
    } else if data_rows == 0 && !foreign {
        diags.push(Diagnostic::new(
            file,
            last_line,
            0,
            "",
            "no data row after the header",
            format!("add one row per time step, e.g. `{EXAMPLE_ROW}`"),
        ));
    }
    diags.sort();
    diags.into_result(())?;
    CarbonSeries::new(points)
}

/// What the first non-comment line was.
enum Header {
    /// The header (perhaps with a misspelt column): skip it.
    Found,
    /// Data: the header is missing; read the line as data.
    Missing,
    /// Neither: the file is not a carbon CSV. Nothing more of it is read or quoted.
    Foreign,
}

/// Checks the first non-comment line. A line of two fields is taken for the header even
/// with a column misspelt (each is named by position, its text is not quoted); a line
/// that reads as data is reported as a missing header and then read as data; anything
/// else means the file is not a carbon CSV, and the error quotes none of it (the path may
/// point at a file that is not meant to be shown).
fn check_header(fields: &[(usize, &str)], file: &str, line: usize, diags: &mut Diagnostics) -> Header {
    let expected = ["timestamp", "gco2_per_kwh"];
    let matches =
        fields.len() == 2 && fields.iter().zip(expected).all(|((_, f), e)| f.eq_ignore_ascii_case(e));
    if matches {
        return Header::Found;
    }
    let fix = format!("the first line that is not a comment must be `{CARBON_CSV_HEADER}`");
    if fields.first().is_some_and(|(_, f)| parse_timestamp(f).is_ok()) {
        let problem = "the header is missing: the first line is already data";
        diags.push(Diagnostic::new(
            file,
            line,
            0,
            "header",
            problem,
            format!("add the line before it; {fix}"),
        ));
        return Header::Missing;
    }
    match fields {
        [(c0, f0), (c1, f1)] => {
            for (i, ((col, name), want)) in [(c0, f0), (c1, f1)].into_iter().zip(expected).enumerate() {
                if !name.eq_ignore_ascii_case(want) {
                    let problem = format!("column {} of the header should be `{want}`", i + 1);
                    diags.push(Diagnostic::new(file, line, *col, "header", problem, fix.clone()));
                }
            }
            Header::Found
        }
        _ => {
            diags.push(Diagnostic::new(
                file,
                line,
                0,
                "header",
                format!("this is not a carbon-intensity CSV: the first line is not the header `{CARBON_CSV_HEADER}`"),
                fix,
            ));
            Header::Foreign
        }
    }
}

/// The comma-separated fields of a line, trimmed, each with its 1-based character column.
fn split_fields(line: &str) -> Vec<(usize, &str)> {
    let mut fields = Vec::new();
    let mut start = 0;
    for piece in line.split(',') {
        let lead = piece.len() - piece.trim_start().len();
        let column = line.get(..start + lead).map_or(0, |s| s.chars().count()) + 1;
        fields.push((column, piece.trim()));
        start += piece.len() + 1;
    }
    fields
}

/// A fix for a row without exactly two fields, spotting the decimal comma (`21,7`).
fn field_count_fix(fields: &[(usize, &str)]) -> String {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match fields {
        [_, (_, a), (_, b)] if digits(a) && digits(b) => {
            format!("`{a},{b}` looks like a decimal comma: write `{a}.{b}`")
        }
        _ => format!("write one timestamp and one intensity per line, e.g. `{EXAMPLE_ROW}`"),
    }
}

/// RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` as UTC. The error is (problem, fix).
fn parse_timestamp(s: &str) -> Result<Timestamp, (String, String)> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Timestamp(t.timestamp_millis()));
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(Timestamp(t.and_utc().timestamp_millis()));
        }
    }
    let local = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"];
    if local.iter().any(|f| NaiveDateTime::parse_from_str(s, f).is_ok()) {
        return Err((
            format!("`{}` has no time zone", excerpt(s)),
            format!("add `Z` for UTC (`{s}Z`) or the offset it was written in, such as `+01:00`"),
        ));
    }
    let problem = if s.is_empty() {
        "missing timestamp".to_owned()
    } else {
        format!("`{}` is not a timestamp", excerpt(s))
    };
    Err((
        problem,
        "write RFC 3339 such as `2024-01-15T13:00:00Z` or `2024-01-15T14:00:00+01:00`, \
         or `2024-01-15 13:00` for UTC"
            .to_owned(),
    ))
}

/// Whether an intensity is plausible. The error is (problem, fix).
fn check_intensity(v: f64, text: &str) -> Result<(), (String, String)> {
    if !v.is_finite() {
        Err((
            format!("`{}` is not a finite number", excerpt(text)),
            "write grams CO2-eq per kWh, e.g. `21.7`".into(),
        ))
    } else if v < 0.0 {
        Err((
            format!("negative carbon intensity {v}"),
            "intensity is ≥ 0 g/kWh; a grid never absorbs CO2 by delivering electricity".into(),
        ))
    } else if v > MAX_CARBON_INTENSITY.0 {
        Err((
            format!("{v} gCO2/kWh is more than any grid emits (at most {})", MAX_CARBON_INTENSITY),
            "the column is grams per kWh (France is ~10–60, coal-heavy grids ~700–1000); \
             divide a figure in g/MWh by 1000"
                .into(),
        ))
    } else {
        Ok(())
    }
}

/// At most 40 characters of user text, so that a mangled line does not flood the report.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod week_tests {
    use super::*;

    #[test]
    fn the_bundled_week_repeats_on_any_date() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../carbon/fr-2024-example.csv");
        let Ok(s) = load_carbon_csv(&path) else { panic!("the bundled profile loads") };
        assert!(s.is_typical_week());
        let Some(&(first, _)) = s.points().first() else { panic!("points") };
        let later = Timestamp(first.0 + 100 * WEEK_MS + 3_600_000);
        assert_eq!(s.in_typical_week(later), Timestamp(first.0 + 3_600_000));
        // Two weeks of a constant 1 kW: 336 kWh at the week's mean intensity, twice.
        let g = s.emissions_repeating(later, Timestamp(later.0 + 2 * WEEK_MS), Watts(1000));
        let week = s.emissions(first, Timestamp(first.0 + WEEK_MS), Watts(1000));
        assert!((g.0 - 2.0 * week.0).abs() < 1e-6 * g.0, "{g:?} vs 2 × {week:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        parse_timestamp(s).unwrap()
    }

    fn series(points: &[(&str, f64)]) -> CarbonSeries {
        CarbonSeries::new(points.iter().map(|&(t, v)| (ts(t), CarbonIntensity(v))).collect()).unwrap()
    }

    #[test]
    fn a_good_file_round_trips() {
        let text = "\u{feff}# France, synthetic\r\n\r\ntimestamp , GCO2_per_kWh\r\n\
                    2024-01-15T00:00:00Z,20\r\n\
                    # a comment between rows\n\
                    2024-01-15T02:00:00+01:00, 30.5\n\
                    2024-01-15 02:00,10\n\
                    2024-01-15 03:00:30,0\n";
        let s = parse_carbon_csv(text, "fr.csv").unwrap();
        let hour = 3_600_000;
        let t0 = ts("2024-01-15T00:00:00Z").0;
        let expected = [(t0, 20.0), (t0 + hour, 30.5), (t0 + 2 * hour, 10.0), (t0 + 3 * hour + 30_000, 0.0)];
        let got: Vec<(i64, f64)> = s.points().iter().map(|(t, v)| (t.0, v.0)).collect();
        assert_eq!(got, expected);
        let again = parse_carbon_csv(&s.to_csv(), "again.csv").unwrap();
        assert_eq!(again, s);
        assert!(s.to_csv().starts_with("timestamp,gco2_per_kwh\n2024-01-15T00:00:00Z,20\n"));
    }

    #[test]
    fn every_bad_line_is_reported_with_its_line_and_a_fix() {
        let text = "timestamp,gco2_per_kwh\n\
                    2024-01-15T00:00:00Z,20\n\
                    yesterday,20\n\
                    2024-01-15T02:00:00Z,abc\n\
                    2024-01-15T03:00:00Z,-5\n\
                    2024-01-15T04:00:00Z,NaN\n\
                    2024-01-15T05:00:00Z,inf\n\
                    2024-01-15T06:00:00Z,21700\n\
                    2024-01-15T06:00:00Z,20\n\
                    2024-01-15T01:00:00Z,20\n\
                    2024-01-15T08:00:00Z\n\
                    2024-01-15T09:00:00Z,21,7\n\
                    2024-01-15T10:00:00,20\n\
                    2024-01-15T11:00:00Z,\n";
        let err = parse_carbon_csv(text, "bad.csv").unwrap_err();
        let got: Vec<(usize, usize, &str)> =
            err.iter().map(|d| (d.line, d.column, d.field.as_str())).collect();
        assert_eq!(
            got,
            [
                (3, 1, "timestamp"),
                (4, 22, "gco2_per_kwh"),
                (5, 22, "gco2_per_kwh"),
                (6, 22, "gco2_per_kwh"),
                (7, 22, "gco2_per_kwh"),
                (8, 22, "gco2_per_kwh"),
                (9, 1, "timestamp"),
                (10, 1, "timestamp"),
                (11, 0, ""),
                (12, 0, ""),
                (13, 1, "timestamp"),
                (14, 22, "gco2_per_kwh"),
            ],
            "{err}"
        );
        let text_of = |line: usize| {
            err.iter().filter(|d| d.line == line).map(ToString::to_string).collect::<Vec<_>>().join("\n")
        };
        assert!(text_of(3).contains("`yesterday` is not a timestamp") && text_of(3).contains("RFC 3339"));
        assert!(text_of(4).contains("`abc` is not a number"));
        assert!(text_of(5).contains("negative"));
        assert!(text_of(6).contains("not a finite number"));
        assert!(text_of(8).contains("more than any grid") && text_of(8).contains("g/MWh"));
        assert!(text_of(9).contains("same instant as `2024-01-15T06:00:00Z` on line 8"));
        assert!(text_of(10).contains("earlier than") && text_of(10).contains("sort the rows"));
        assert!(text_of(11).contains("expected 2 fields") && text_of(11).contains(EXAMPLE_ROW));
        assert!(text_of(12).contains("decimal comma: write `21.7`"));
        assert!(text_of(13).contains("no time zone") && text_of(13).contains("`2024-01-15T10:00:00Z`"));
        assert!(text_of(14).contains("missing carbon intensity"));
        assert!(err.to_string().starts_with("bad.csv:3:1: timestamp: `yesterday` is not a timestamp"));
    }

    #[test]
    fn only_regular_files_are_read() {
        let err = load_carbon_csv(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("character device, not a regular file"), "{err}");
    }

    #[test]
    fn header_problems_are_reported() {
        let err = parse_carbon_csv("# only a comment\n\n", "empty.csv").unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err.to_string().contains("no header and no data"), "{err}");

        let err = parse_carbon_csv("timestamp,gco2_per_kwh\n", "h.csv").unwrap_err();
        assert!(err.to_string().starts_with("h.csv:1: no data row after the header"), "{err}");

        let err = parse_carbon_csv("time,gco2_per_kwh\n2024-01-15T00:00:00Z,20\n", "h.csv").unwrap_err();
        assert_eq!(
            err.to_string(),
            "h.csv:1:1: header: column 1 of the header should be `timestamp`; fix: the first line that is not a comment must be `timestamp,gco2_per_kwh`\n1 problem"
        );

        // Not a carbon CSV at all (a path pointing at the wrong file): one report, and
        // none of its content quoted.
        let err = parse_carbon_csv("root:$6$s3cr3t:19000:0:99999:7:::\ndaemon:*:19000\n", "/etc/shadow")
            .unwrap_err();
        assert_eq!(err.len(), 1, "{err}");
        assert!(err.to_string().contains("not a carbon-intensity CSV"), "{err}");
        assert!(!err.to_string().contains("s3cr3t") && !err.to_string().contains("root"), "{err}");

        // A header-less file: one report, and its rows are still checked.
        let err =
            parse_carbon_csv("2024-01-15T00:00:00Z,20\n2024-01-15T01:00:00Z,-1\n", "h.csv").unwrap_err();
        let lines: Vec<(usize, &str)> = err.iter().map(|d| (d.line, d.field.as_str())).collect();
        assert_eq!(lines, [(1, "header"), (2, "gco2_per_kwh")], "{err}");
        assert!(err.to_string().contains("the header is missing"));
    }

    #[test]
    fn the_step_function_holds_each_value_until_the_next_point() {
        let s = series(&[("2024-01-15T00:00:00Z", 10.0), ("2024-01-15T01:00:00Z", 40.0)]);
        assert_eq!(s.intensity_at(ts("2024-01-14T00:00:00Z")), CarbonIntensity(10.0));
        assert_eq!(s.intensity_at(ts("2024-01-15T00:59:59Z")), CarbonIntensity(10.0));
        assert_eq!(s.intensity_at(ts("2024-01-15T01:00:00Z")), CarbonIntensity(40.0));
        assert_eq!(s.intensity_at(ts("2030-01-01T00:00:00Z")), CarbonIntensity(40.0));
        assert_eq!((s.min(), s.max()), (CarbonIntensity(10.0), CarbonIntensity(40.0)));
        // Two hourly points: each weighs one hour.
        assert!((s.mean().0 - 25.0).abs() < 1e-12);
        let one = series(&[("2024-01-15T00:00:00Z", 7.0)]);
        assert_eq!(one.mean(), CarbonIntensity(7.0));
    }

    #[test]
    fn emissions_over_several_steps_match_a_hand_computation() {
        let s = series(&[
            ("2024-01-15T00:00:00Z", 20.0),
            ("2024-01-15T01:00:00Z", 40.0),
            ("2024-01-15T01:30:00Z", 10.0),
            ("2024-01-15T03:00:00Z", 30.0),
        ]);
        // 2 kW from 23:30 the day before to 03:15: 1.5 h at 20 (before and in the first step),
        // 0.5 h at 40, 1.5 h at 10, 0.25 h at 30 (after the last point).
        let g = s.emissions(ts("2024-01-14T23:30:00Z"), ts("2024-01-15T03:15:00Z"), Watts(2000));
        let hand = 2.0 * (1.5 * 20.0 + 0.5 * 40.0 + 1.5 * 10.0 + 0.25 * 30.0);
        assert!((g.0 - hand).abs() < 1e-9, "{g} vs {hand}");
        // A window inside one step, and an empty window.
        let g = s.emissions(ts("2024-01-15T01:40:00Z"), ts("2024-01-15T01:50:00Z"), Watts(600));
        assert!((g.0 - 0.6 * 10.0 / 6.0).abs() < 1e-12);
        assert_eq!(
            s.emissions(ts("2024-01-15T02:00:00Z"), ts("2024-01-15T01:00:00Z"), Watts(600)),
            GramsCo2::ZERO
        );
        let g = s.emissions_of_energy_at(ts("2024-01-15T01:10:00Z"), Joules(3.6e6));
        assert!((g.0 - 40.0).abs() < 1e-12);
    }

    #[test]
    fn series_built_in_code_are_checked() {
        let err = CarbonSeries::new(vec![]).unwrap_err();
        assert!(err.to_string().contains("at least one point"));
        let err = CarbonSeries::new(vec![
            (Timestamp(0), CarbonIntensity(f64::NAN)),
            (Timestamp(0), CarbonIntensity(3000.0)),
            (Timestamp(i64::MAX), CarbonIntensity(1.0)),
        ])
        .unwrap_err();
        let fields: Vec<&str> = err.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["points[0]", "points[1]", "points[1]", "points[2]"], "{err}");
    }

    #[test]
    fn the_bundled_french_example_matches_the_published_figures() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../carbon/fr-2024-example.csv");
        let s = load_carbon_csv(&path).unwrap();
        assert_eq!(s.points().len(), 168);
        let mean = s.mean().0;
        assert!((21.4..=22.0).contains(&mean), "mean {mean}");
        assert!(s.min().0 >= 11.0 && s.max().0 <= 48.0, "{} .. {}", s.min(), s.max());
        let hour = s.points().windows(2).all(|w| w[1].0.0 - w[0].0.0 == 3_600_000);
        assert!(hour, "hourly steps");
    }

    #[test]
    fn a_missing_file_is_a_diagnostic() {
        let err = load_carbon_csv(Path::new("/nonexistent/carbon.csv")).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/carbon.csv: cannot read"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn bad_input_never_panics(text in "(\\PC{0,30}[,\\n#]?){0,12}") {
            let _ = parse_carbon_csv(&text, "p.csv");
            let _ = parse_carbon_csv(&format!("timestamp,gco2_per_kwh\n{text}"), "p.csv");
        }
    }
}
