//! Typed, located access to a parsed TOML table that records problems instead of stopping.
//!
//! serde stops at the first error; a person fixing a fleet file wants all of them. So the
//! loader walks the span-preserving [`DeTable`] itself: every getter either returns the
//! value with its span or records a [`Diagnostic`] (missing key, wrong type, out of range)
//! and returns `None`, and the walk goes on.

use std::ops::Range;

use chrono::NaiveDate;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use crate::diag::{Diagnostic, Diagnostics, LineIndex, did_you_mean};
use crate::validate::Problem;

/// Byte range in the fleet file.
pub(super) type Span = Range<usize>;

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Sp<T> {
    pub v: T,
    pub span: Span,
}

/// Where problems go while one file is read.
pub(super) struct Ctx<'t> {
    pub file: String,
    lines: LineIndex<'t>,
    pub errors: Diagnostics,
    pub warnings: Diagnostics,
}

impl<'t> Ctx<'t> {
    pub(super) fn new(file: &str, text: &'t str) -> Ctx<'t> {
        Ctx {
            file: file.to_owned(),
            lines: LineIndex::new(text),
            errors: Diagnostics::default(),
            warnings: Diagnostics::default(),
        }
    }

    pub(super) fn diagnostic(&self, span: &Span, field: &str, p: Problem) -> Diagnostic {
        let (line, column) = self.lines.line_column(span.start);
        Diagnostic::new(&self.file, line, column, field, p.problem, p.fix)
    }

    pub(super) fn error(&mut self, span: &Span, field: &str, p: Problem) {
        let d = self.diagnostic(span, field, p);
        self.errors.push(d);
    }

    pub(super) fn warn(&mut self, span: &Span, field: &str, p: Problem) {
        let d = self.diagnostic(span, field, p);
        self.warnings.push(d);
    }

    pub(super) fn err(
        &mut self,
        span: &Span,
        field: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.error(span, field, crate::validate::problem(problem, fix));
    }
}

/// A TOML table being read, with its path (`site[1].rack_group[0]`) for messages.
#[derive(Clone, Copy)]
pub(super) struct Tbl<'a, 'i> {
    pub t: &'a DeTable<'i>,
    pub span: &'a Span,
    pub path: &'a str,
}

/// Renders an example for a fix text: `pue = 1.2` → "write `pue = 1.2`".
fn write(example: &str) -> String {
    format!("write e.g. `{example}`")
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date/time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

impl<'a, 'i> Tbl<'a, 'i> {
    /// The path of one of this table's keys.
    pub(super) fn field(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.t.get(key)
    }

    /// Reports every key not in `known`, with the closest known key as a suggestion.
    pub(super) fn check_keys(&self, cx: &mut Ctx<'_>, known: &[&str]) {
        for (k, _) in self.t.iter() {
            let key: &str = k.get_ref();
            if known.contains(&key) {
                continue;
            }
            let list = known.join(", ");
            let fix = match did_you_mean(key, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? known keys here: {list}"),
                None => format!("remove it; known keys here: {list}"),
            };
            let place = if self.path.is_empty() {
                "at the top level".to_owned()
            } else {
                format!("in {}", self.path)
            };
            cx.err(&k.span(), &self.field(key), format!("unknown key `{key}` {place}"), fix);
        }
    }

    /// Records that a required key is missing (at the table's header).
    pub(super) fn missing(&self, cx: &mut Ctx<'_>, key: &str, example: &str) {
        let place = if self.path.is_empty() { "the file".to_owned() } else { self.path.to_owned() };
        cx.err(
            self.span,
            &self.field(key),
            format!("missing required key `{key}` in {place}"),
            format!("add `{example}`"),
        );
    }

    fn wrong_type(&self, cx: &mut Ctx<'_>, key: &str, v: &Spanned<DeValue<'_>>, want: &str, example: &str) {
        cx.err(
            &v.span(),
            &self.field(key),
            format!("`{key}` must be {want}, not {}", type_name(v.get_ref())),
            write(example),
        );
    }

    pub(super) fn string(&self, cx: &mut Ctx<'_>, key: &str, example: &str) -> Option<Sp<String>> {
        let v = self.get(key)?;
        value_string(cx, &self.field(key), v, example, key)
    }

    pub(super) fn req_string(&self, cx: &mut Ctx<'_>, key: &str, example: &str) -> Option<Sp<String>> {
        if self.get(key).is_none() {
            self.missing(cx, key, example);
        }
        self.string(cx, key, example)
    }

    /// A non-negative integer.
    pub(super) fn uint(&self, cx: &mut Ctx<'_>, key: &str, example: &str) -> Option<Sp<u64>> {
        let v = self.get(key)?;
        value_uint(cx, &self.field(key), v, example, key)
    }

    pub(super) fn req_uint(&self, cx: &mut Ctx<'_>, key: &str, example: &str) -> Option<Sp<u64>> {
        if self.get(key).is_none() {
            self.missing(cx, key, example);
        }
        self.uint(cx, key, example)
    }

    /// An integer that must fit `u32`.
    pub(super) fn uint32(&self, cx: &mut Ctx<'_>, key: &str, example: &str) -> Option<Sp<u32>> {
        let v = self.uint(cx, key, example)?;
        match u32::try_from(v.v) {
            Ok(n) => Some(Sp { v: n, span: v.span }),
            Err(_) => {
                cx.err(&v.span, &self.field(key), format!("`{key}` = {} is too large", v.v), write(example));
                None
            }
        }
    }

    pub(super) fn req_uint32(&self, cx: &mut Ctx<'_>, key: &str, example: &str) -> Option<Sp<u32>> {
        if self.get(key).is_none() {
            self.missing(cx, key, example);
        }
        self.uint32(cx, key, example)
    }

    /// A number, integer or float (`capacity_mw = 8` and `= 8.5` both work).
    pub(super) fn number(&self, cx: &mut Ctx<'_>, key: &str, example: &str) -> Option<Sp<f64>> {
        let v = self.get(key)?;
        value_number(cx, &self.field(key), v, example, key)
    }

    pub(super) fn req_number(&self, cx: &mut Ctx<'_>, key: &str, example: &str) -> Option<Sp<f64>> {
        if self.get(key).is_none() {
            self.missing(cx, key, example);
        }
        self.number(cx, key, example)
    }

    /// A calendar date: a bare TOML date (`2026-01-01`) or the same in quotes.
    pub(super) fn req_date(&self, cx: &mut Ctx<'_>, key: &str, example: &str) -> Option<Sp<NaiveDate>> {
        let Some(v) = self.get(key) else {
            self.missing(cx, key, example);
            return None;
        };
        let field = self.field(key);
        let span = v.span();
        let bad_date = |cx: &mut Ctx<'_>, what: String| {
            cx.err(&span, &field, what, format!("{}; dates are year-month-day", write(example)));
            None
        };
        match v.get_ref() {
            DeValue::Datetime(dt) => match (dt.date, dt.time, dt.offset) {
                (Some(d), None, None) => {
                    match NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day)) {
                        Some(n) => Some(Sp { v: n, span }),
                        None => bad_date(cx, format!("`{key}` = {dt} is not a calendar date")),
                    }
                }
                _ => bad_date(cx, format!("`{key}` = {dt} must be a date without a time")),
            },
            DeValue::String(s) => match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                Ok(n) => Some(Sp { v: n, span }),
                Err(_) => bad_date(cx, format!("`{key}` = \"{s}\" is not a date")),
            },
            _ => {
                self.wrong_type(cx, key, v, "a date", example);
                None
            }
        }
    }

    pub(super) fn array(
        &self,
        cx: &mut Ctx<'_>,
        key: &str,
        example: &str,
    ) -> Option<(&'a DeArray<'i>, Span)> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Array(a) => Some((a, v.span())),
            _ => {
                self.wrong_type(cx, key, v, "an array", example);
                None
            }
        }
    }

    pub(super) fn table(
        &self,
        cx: &mut Ctx<'_>,
        key: &str,
        example: &str,
    ) -> Option<(&'a DeTable<'i>, Span)> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some((t, v.span())),
            _ => {
                self.wrong_type(cx, key, v, "a table", example);
                None
            }
        }
    }

    /// An array of strings; bad elements are reported and skipped.
    pub(super) fn string_array(&self, cx: &mut Ctx<'_>, key: &str, example: &str) -> Vec<Sp<String>> {
        let Some((arr, _)) = self.array(cx, key, example) else {
            return Vec::new();
        };
        arr.iter()
            .enumerate()
            .filter_map(|(i, v)| value_string(cx, &format!("{}[{i}]", self.field(key)), v, example, key))
            .collect()
    }
}

fn value_string(
    cx: &mut Ctx<'_>,
    field: &str,
    v: &Spanned<DeValue<'_>>,
    example: &str,
    key: &str,
) -> Option<Sp<String>> {
    match v.get_ref() {
        DeValue::String(s) => Some(Sp { v: s.to_string(), span: v.span() }),
        other => {
            cx.err(
                &v.span(),
                field,
                format!("`{key}` must be a string, not {}", type_name(other)),
                write(example),
            );
            None
        }
    }
}

fn value_uint(
    cx: &mut Ctx<'_>,
    field: &str,
    v: &Spanned<DeValue<'_>>,
    example: &str,
    key: &str,
) -> Option<Sp<u64>> {
    let span = v.span();
    match v.get_ref() {
        DeValue::Integer(i) => {
            let text = i.as_str();
            if text.starts_with('-') {
                cx.err(&span, field, format!("`{key}` must be ≥ 0 (got {i})"), write(example));
                return None;
            }
            match u64::from_str_radix(text.trim_start_matches('+'), i.radix()) {
                Ok(n) => Some(Sp { v: n, span }),
                Err(_) => {
                    cx.err(&span, field, format!("`{key}` = {i} is too large"), write(example));
                    None
                }
            }
        }
        DeValue::Float(f) => {
            cx.err(&span, field, format!("`{key}` must be a whole number (got {f})"), write(example));
            None
        }
        other => {
            cx.err(
                &span,
                field,
                format!("`{key}` must be an integer, not {}", type_name(other)),
                write(example),
            );
            None
        }
    }
}

fn value_number(
    cx: &mut Ctx<'_>,
    field: &str,
    v: &Spanned<DeValue<'_>>,
    example: &str,
    key: &str,
) -> Option<Sp<f64>> {
    let span = v.span();
    let parsed = match v.get_ref() {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok().map(|n| n as f64),
        DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
        other => {
            cx.err(
                &span,
                field,
                format!("`{key}` must be a number, not {}", type_name(other)),
                write(example),
            );
            return None;
        }
    };
    match parsed {
        Some(x) if x.is_finite() => Some(Sp { v: x, span }),
        _ => {
            cx.err(&span, field, format!("`{key}` must be a finite number"), write(example));
            None
        }
    }
}
