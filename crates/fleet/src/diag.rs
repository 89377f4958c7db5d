//! Located, actionable problems in user input.
//!
//! Every input gigawatt reads (fleet files, trace CSVs) is written by a person, and a person
//! fixes problems faster when told *where* (file, line, column, field), *what* and *how to
//! fix it*, all at once rather than one per run. [`Diagnostic`] carries exactly that, and
//! [`Diagnostics`] is the "all at once" list, usable as an error.

use std::fmt;

use serde::Serialize;

/// One problem in an input file, with where it is and how to fix it.
///
/// Generic on purpose: the fleet loader and the trace readers both report through it, so a
/// user sees one format whatever file was wrong. A diagnostic with `line == 0` has no
/// position (for example a fleet built in code) and `column == 0` means the line is known
/// but not the column (a CSV row); `Display` omits what is unknown.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Diagnostic {
    /// The file as the user named it, e.g. `fleets/france.toml`.
    pub file: String,
    /// 1-based line, or 0 when there is no position.
    pub line: usize,
    /// 1-based column in characters (not bytes), or 0 when unknown.
    pub column: usize,
    /// Path of the offending field, e.g. `site[1].rack_group[0].power_limit_kw`; may be empty
    /// for problems that belong to no field (TOML syntax).
    pub field: String,
    /// What is wrong, with the offending value where it helps.
    pub problem: String,
    /// What to write instead; may be empty when there is nothing better to say.
    pub fix: String,
}

impl Diagnostic {
    /// A diagnostic at a known line and column.
    #[must_use]
    pub fn new(
        file: impl Into<String>,
        line: usize,
        column: usize,
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            file: file.into(),
            line,
            column,
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// A diagnostic at a byte offset of `text`, converted to line and column, for parsers
    /// that know offsets rather than lines.
    #[must_use]
    pub fn at_offset(
        file: impl Into<String>,
        text: &str,
        offset: usize,
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = line_column(text, offset);
        Diagnostic::new(file, line, column, field, problem, fix)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.problem)?;
        if !self.fix.is_empty() {
            write!(f, "; fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// Every problem found in one pass, in file order.
///
/// Used as the error type wherever input is validated, so that one run reports everything
/// that needs fixing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Whether no problem was found.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of problems.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Adds a problem.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Sorts by file, line and column (and then the rest, so the order is total) and drops
    /// exact duplicates, so that output is stable whatever order the checks ran in.
    pub fn sort(&mut self) {
        self.0.sort();
        self.0.dedup();
    }

    /// `Ok(value)` when there is no problem, otherwise `Err(self)`.
    ///
    /// # Errors
    /// Returns `self` when it holds at least one problem.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.is_empty() { Ok(value) } else { Err(self) }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        match self.0.len() {
            1 => f.write_str("1 problem"),
            n => write!(f, "{n} problems"),
        }
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Diagnostics {
        Diagnostics(vec![d])
    }
}

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(v: Vec<Diagnostic>) -> Diagnostics {
        Diagnostics(v)
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// 1-based line and column (in characters) of a byte offset in `text`.
///
/// An offset past the end, or inside a multi-byte character, is clamped to the nearest
/// valid position rather than panicking: positions come from parsers, and a wrong position
/// is better than no report at all.
#[must_use]
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).line_column(offset)
}

/// Start offsets of every line, so that many offsets of one text convert in `O(log n)`.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> LineIndex<'a> {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        LineIndex { text, starts }
    }

    pub(crate) fn line_column(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = self.text.get(start..offset).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }
}

/// The closest candidate to `word`, if one is close enough to be a plausible typo.
///
/// Case and separators (`-`, `_`, space) are ignored first (so `ISO-27001` finds
/// `iso27001`), then an edit distance of 1 for words of up to 3 characters, 2 up to 8 and
/// 3 beyond (so `G2` does not suggest `T4`).
pub(crate) fn did_you_mean<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let w = normalize(word);
    let limit = match w.chars().count() {
        0..=3 => 1,
        4..=8 => 2,
        _ => 3,
    };
    // Rank by distance, then prefer a candidate that extends what was typed (`H10` is more
    // likely a truncated `H100` than a mistyped `A10`).
    let mut best: Option<((usize, bool), &str)> = None;
    for c in candidates {
        let n = normalize(c);
        let rank = (levenshtein(&w, &n), !n.starts_with(&w));
        if rank.0 <= limit && best.is_none_or(|(br, _)| rank < br) {
            best = Some((rank, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Lower case without `-`, `_`, `.` or spaces: the spelling-insensitive form of a name.
pub(crate) fn normalize(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '-' | '_' | ' ' | '.')).flat_map(char::to_lowercase).collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_position_field_problem_and_fix() {
        let d = Diagnostic::new(
            "fleets/x.toml",
            12,
            5,
            "site[0].pue",
            "pue must be ≥ 1.0 (got 0.9)",
            "PUE is facility/IT power, e.g. 1.2",
        );
        assert_eq!(
            d.to_string(),
            "fleets/x.toml:12:5: site[0].pue: pue must be ≥ 1.0 (got 0.9); fix: PUE is facility/IT power, e.g. 1.2"
        );
        let unplaced = Diagnostic::new("fleet", 0, 0, "", "no sites", "");
        assert_eq!(unplaced.to_string(), "fleet: no sites");
        let row = Diagnostic::new("t.csv", 7, 0, "gpu", "bad", "fix it");
        assert_eq!(row.to_string(), "t.csv:7: gpu: bad; fix: fix it");
        let all = Diagnostics(vec![d, unplaced]);
        assert!(all.to_string().ends_with("\n2 problems"));
    }

    #[test]
    fn line_column_counts_characters_and_clamps() {
        let text = "a = 1\nname = \"Drôme\" x\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // 'x' comes after the two-byte 'ô': byte 22, character column 16.
        let x = text.find(" x").unwrap_or(0) + 1;
        assert_eq!(line_column(text, x), (2, 16));
        assert_eq!(line_column(text, 10_000), (3, 1));
        // Inside the two-byte 'ô': clamps back to its start.
        let o = text.find('ô').unwrap_or(0);
        assert_eq!(line_column(text, o + 1), line_column(text, o));
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("power_limt_kw", ["power_limit_kw", "prefix"]), Some("power_limit_kw"));
        assert_eq!(did_you_mean("ISO-27001", ["hds", "iso27001"]), Some("iso27001"));
        assert_eq!(did_you_mean("zzz", ["power_limit_kw"]), None);
        assert_eq!(did_you_mean("H10", ["A10", "H100"]), Some("H100"));
        assert_eq!(did_you_mean("G2", ["T4"]), None);
    }
}
