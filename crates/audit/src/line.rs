//! One line of an export file, read as JSON: which kind it is and its fields.
//!
//! Lines are JSON objects; any key order and JSON whitespace between tokens are
//! accepted, as a JSON reader would. Unknown, duplicate and missing fields are refused,
//! as is anything after the object. Strings may use any JSON escape. The `event` value is
//! not parsed here, only delimited: the verifier requires it to be byte for byte the
//! leaf's own `event` (canonical JSON, valid by construction), which is both stricter and
//! faster than comparing parsed values.
//!
//! The reader borrows from the line and allocates only for a proof's list of hashes and
//! for strings that hold escapes; it never panics, whatever the bytes.
//!
//! Record lines laid out exactly as the writer lays them out also have a fast way in,
//! [`record_fast`], which delimits the fields without reading the strings; the verifier
//! falls back to [`parse`] for any line the fast way does not vouch for.

use std::borrow::Cow;
use std::ops::Range;

use thiserror::Error;

/// Why a line is not one of the four kinds of line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("byte {offset}: {reason}")]
pub(crate) struct LineError {
    /// Byte offset in the line.
    pub offset: usize,
    /// What is wrong.
    pub reason: Cow<'static, str>,
}

/// The kind of a line (its `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A signed checkpoint.
    Checkpoint,
    /// A consistency proof between two checkpoints.
    Consistency,
    /// A record with its inclusion proof.
    Record,
    /// The signed trailer.
    Export,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Checkpoint => "checkpoint",
            Kind::Consistency => "consistency",
            Kind::Record => "record",
            Kind::Export => "export",
        }
    }

    /// The fields a line of this kind has, besides `type`.
    fn fields(self) -> &'static [Field] {
        match self {
            Kind::Checkpoint | Kind::Export => &[Field::Note],
            Kind::Consistency => &[Field::From, Field::To, Field::Proof],
            Kind::Record => &[Field::Index, Field::Leaf, Field::TreeSize, Field::Proof, Field::Event],
        }
    }
}

/// The fields any line may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Type,
    Note,
    From,
    To,
    Index,
    Leaf,
    TreeSize,
    Proof,
    Event,
}

impl Field {
    fn of(key: &[u8]) -> Option<Field> {
        Some(match key {
            b"type" => Field::Type,
            b"note" => Field::Note,
            b"from" => Field::From,
            b"to" => Field::To,
            b"index" => Field::Index,
            b"leaf" => Field::Leaf,
            b"tree_size" => Field::TreeSize,
            b"proof" => Field::Proof,
            b"event" => Field::Event,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::Type => "type",
            Field::Note => "note",
            Field::From => "from",
            Field::To => "to",
            Field::Index => "index",
            Field::Leaf => "leaf",
            Field::TreeSize => "tree_size",
            Field::Proof => "proof",
            Field::Event => "event",
        }
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// A line's fields. Which are present follows from [`Line::kind`]: [`parse`] checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    /// The line's kind.
    pub kind: Kind,
    /// `note` (checkpoint, export): the signed note's bytes.
    pub note: Cow<'a, [u8]>,
    /// `from` (consistency).
    pub from: u64,
    /// `to` (consistency).
    pub to: u64,
    /// `index` (record).
    pub index: u64,
    /// `tree_size` (record).
    pub tree_size: u64,
    /// `leaf` (record): base64 text.
    pub leaf: Cow<'a, [u8]>,
    /// `proof` (consistency, record): base64 texts.
    pub proof: Vec<Cow<'a, [u8]>>,
    /// `event` (record): where its value is in the line.
    pub event: Range<usize>,
}

/// Reads one line (without its newline).
pub(crate) fn parse(line: &[u8]) -> Result<Line<'_>, LineError> {
    let mut c = Cursor { b: line, i: 0 };
    let mut out = Line {
        kind: Kind::Record,
        note: Cow::Borrowed(&[]),
        from: 0,
        to: 0,
        index: 0,
        tree_size: 0,
        leaf: Cow::Borrowed(&[]),
        proof: Vec::new(),
        event: 0..0,
    };
    let mut kind: Option<Kind> = None;
    let mut seen: u16 = 0;
    c.ws();
    c.expect(b'{', "a line is a JSON object: expected '{'")?;
    c.ws();
    if c.peek() == Some(b'}') {
        return Err(c.err("an empty object: no \"type\""));
    }
    loop {
        c.ws();
        let key_at = c.i;
        let key = c.string()?;
        let field = Field::of(&key).ok_or_else(|| LineError {
            offset: key_at,
            reason: format!("unknown field {}", String::from_utf8_lossy(&key)).into(),
        })?;
        if seen & field.bit() != 0 {
            return Err(LineError {
                offset: key_at,
                reason: format!("field {} appears twice", field.name()).into(),
            });
        }
        seen |= field.bit();
        c.ws();
        c.expect(b':', "expected ':' after a key")?;
        c.ws();
        match field {
            Field::Type => {
                let at = c.i;
                let name = c.string()?;
                kind = Some(match &*name {
                    b"checkpoint" => Kind::Checkpoint,
                    b"consistency" => Kind::Consistency,
                    b"record" => Kind::Record,
                    b"export" => Kind::Export,
                    _ => {
                        return Err(LineError {
                            offset: at,
                            reason: format!("unknown line type {}", String::from_utf8_lossy(&name)).into(),
                        });
                    }
                });
            }
            Field::Note => out.note = c.string()?,
            Field::From => out.from = c.u64("from")?,
            Field::To => out.to = c.u64("to")?,
            Field::Index => out.index = c.u64("index")?,
            Field::TreeSize => out.tree_size = c.u64("tree_size")?,
            Field::Leaf => out.leaf = c.string()?,
            Field::Proof => out.proof = c.string_array()?,
            Field::Event => out.event = c.skip_value()?,
        }
        c.ws();
        match c.peek() {
            Some(b',') => c.i += 1,
            Some(b'}') => {
                c.i += 1;
                break;
            }
            _ => return Err(c.err("expected ',' or '}' after a value")),
        }
    }
    c.ws();
    if c.i != line.len() {
        return Err(c.err("more after the JSON object (one object per line)"));
    }
    let kind = kind.ok_or(LineError { offset: 0, reason: "the line has no \"type\"".into() })?;
    let allowed = kind.fields().iter().fold(Field::Type.bit(), |m, f| m | f.bit());
    if let Some(f) = kind.fields().iter().find(|f| seen & f.bit() == 0) {
        return Err(LineError {
            offset: 0,
            reason: format!("a {} line needs the field {}", kind.name(), f.name()).into(),
        });
    }
    if seen & !allowed != 0 {
        let extra = [
            Field::Note,
            Field::From,
            Field::To,
            Field::Index,
            Field::Leaf,
            Field::TreeSize,
            Field::Proof,
            Field::Event,
        ]
        .into_iter()
        .find(|f| seen & !allowed & f.bit() != 0)
        .map_or("?", Field::name);
        return Err(LineError {
            offset: 0,
            reason: format!("a {} line has no field {extra}", kind.name()).into(),
        });
    }
    out.kind = kind;
    Ok(out)
}

/// The most hashes a proof can need (a tree has at most 2^64 leaves); the fast reader
/// leaves longer proofs to the general one.
pub(crate) const MAX_PROOF: usize = 64;

/// A record line read the fast way: see [`record_fast`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FastRecord<'a> {
    /// `index`.
    pub index: u64,
    /// `tree_size`.
    pub tree_size: u64,
    /// `leaf`: base64 text.
    pub leaf: &'a [u8],
    /// How many proof texts were read.
    pub proof_len: usize,
    /// Where the `event` value would be: the rest of the line but its last `}`.
    pub event: Range<usize>,
}

impl<'a> FastRecord<'a> {
    /// The line's fields, with the proof texts [`record_fast`] read into `proof`.
    pub(crate) fn fields<'p>(&self, proof: &'p [&'a [u8]; MAX_PROOF]) -> crate::verify::RecordFields<'a, 'p> {
        crate::verify::RecordFields {
            index: self.index,
            tree_size: self.tree_size,
            leaf: self.leaf,
            proof: &proof[..self.proof_len],
            event: self.event.clone(),
        }
    }
}

/// Reads a record line laid out exactly as [`ExportWriter`](crate::ExportWriter) writes
/// it — `{"type":"record","index":N,"leaf":"…","tree_size":S,"proof":["…",…],"event":…}`
/// — without looking inside its strings: `None` for any other line.
///
/// This is not a JSON reader. It assumes the `leaf` has no escape (base64 needs none),
/// that each proof hash is 44 characters, and that `event` runs to the line's last `}`.
/// Those assumptions hold — and the line is valid JSON — exactly when the leaf decodes
/// as base64, each hash as base64, and the event equals the leaf's event byte for byte,
/// which the verifier checks next. When they do not, the verifier reads the line again
/// with [`parse`], which judges it as JSON.
pub(crate) fn record_fast<'a>(line: &'a [u8], proof: &mut [&'a [u8]; MAX_PROOF]) -> Option<FastRecord<'a>> {
    let mut c = Cursor { b: line, i: 0 };
    c.literal(br#"{"type":"record","index":"#)?;
    let index = c.digits()?;
    c.literal(br#","leaf":""#)?;
    let start = c.i;
    let end = start + memchr::memchr(b'"', &line[start..])?;
    c.i = end + 1;
    c.literal(br#","tree_size":"#)?;
    let tree_size = c.digits()?;
    c.literal(br#","proof":["#)?;
    let mut len = 0;
    if c.peek() == Some(b']') {
        c.i += 1;
    } else {
        loop {
            c.literal(b"\"")?;
            let text = line.get(c.i..c.i + 44)?;
            c.i += 44;
            c.literal(b"\"")?;
            *proof.get_mut(len)? = text;
            len += 1;
            match c.peek()? {
                b',' => c.i += 1,
                b']' => {
                    c.i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    c.literal(br#","event":"#)?;
    let last = line.len().checked_sub(1)?;
    if line[last] != b'}' || last <= c.i {
        return None;
    }
    Some(FastRecord { index, tree_size, leaf: &line[start..end], proof_len: len, event: c.i..last })
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, reason: &'static str) -> LineError {
        LineError { offset: self.i, reason: reason.into() }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Steps over `bytes` if the line has them here.
    fn literal(&mut self, bytes: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + bytes.len())? == bytes {
            self.i += bytes.len();
            Some(())
        } else {
            None
        }
    }

    /// Decimal digits as JSON writes a `u64` (no leading zero, no sign), if they fit.
    fn digits(&mut self) -> Option<u64> {
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        let len = self.i - start;
        (len == 1 || (len > 1 && self.b[start] != b'0')).then_some(n)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), LineError> {
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(reason))
        }
    }

    /// A JSON string's contents, decoded; borrowed when it has no escape.
    fn string(&mut self) -> Result<Cow<'a, [u8]>, LineError> {
        self.expect(b'"', "expected a string")?;
        let start = self.i;
        let rest = &self.b[start..];
        let Some(end) = memchr::memchr2(b'"', b'\\', rest) else {
            return Err(self.err("unterminated string"));
        };
        if rest[end] == b'"' {
            let s = &rest[..end];
            if s.iter().any(|&b| b < 0x20) {
                return Err(self.err("a raw control character in a string"));
            }
            self.i = start + end + 1;
            return Ok(Cow::Borrowed(s));
        }
        // With escapes: decode into a copy.
        let mut out = rest[..end].to_vec();
        self.i = start + end;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    let esc = self.b.get(self.i + 1).copied();
                    self.i += 2;
                    match esc {
                        Some(b'"') => out.push(b'"'),
                        Some(b'\\') => out.push(b'\\'),
                        Some(b'/') => out.push(b'/'),
                        Some(b'b') => out.push(0x08),
                        Some(b'f') => out.push(0x0C),
                        Some(b'n') => out.push(b'\n'),
                        Some(b'r') => out.push(b'\r'),
                        Some(b't') => out.push(b'\t'),
                        Some(b'u') => {
                            let ch = self.unicode_escape()?;
                            let mut buf = [0; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(LineError { offset: self.i - 2, reason: "invalid escape".into() }),
                    }
                }
                Some(b) if b < 0x20 => return Err(self.err("a raw control character in a string")),
                Some(b) => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
        Ok(Cow::Owned(out))
    }

    /// The `XXXX` of a `\uXXXX` escape (the cursor is past the `u`), with a following
    /// low surrogate escape when it is a high surrogate.
    fn unicode_escape(&mut self) -> Result<char, LineError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.b.get(self.i) != Some(&b'\\') || self.b.get(self.i + 1) != Some(&b'u') {
                    return Err(self.err("a lone surrogate in a \\u escape"));
                }
                self.i += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.err("a lone surrogate in a \\u escape"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.err("a lone surrogate in a \\u escape")),
            c => c,
        };
        char::from_u32(code).ok_or_else(|| self.err("an invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, LineError> {
        let digits = self.b.get(self.i..self.i + 4).ok_or_else(|| self.err("a short \\u escape"))?;
        let mut v = 0;
        for &d in digits {
            let n = (d as char).to_digit(16).ok_or_else(|| self.err("a \\u escape that is not hex"))?;
            v = v << 4 | n;
        }
        self.i += 4;
        Ok(v)
    }

    /// A non-negative integer that fits in 64 bits, in JSON syntax.
    fn u64(&mut self, name: &'static str) -> Result<u64, LineError> {
        let start = self.i;
        let bad = || LineError {
            offset: start,
            reason: format!("{name} is not an integer from 0 to 18446744073709551615").into(),
        };
        let mut n: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            n = n.checked_mul(10).and_then(|n| n.checked_add(u64::from(d - b'0'))).ok_or_else(bad)?;
            self.i += 1;
        }
        let digits = self.i - start;
        if digits == 0
            || (digits > 1 && self.b[start] == b'0')
            || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
        {
            return Err(bad());
        }
        Ok(n)
    }

    fn string_array(&mut self) -> Result<Vec<Cow<'a, [u8]>>, LineError> {
        self.expect(b'[', "expected an array of strings")?;
        let mut out = Vec::with_capacity(32);
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(out);
        }
        loop {
            self.ws();
            out.push(self.string()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => return Err(self.err("expected ',' or ']' in an array")),
            }
        }
    }

    /// Steps over one JSON value and returns where it is. Only its extent is found (by
    /// its brackets and strings); its content is judged by whoever reads it.
    fn skip_value(&mut self) -> Result<Range<usize>, LineError> {
        let start = self.i;
        let mut depth: usize = 0;
        loop {
            match self.peek() {
                None => {
                    if depth == 0 && self.i > start {
                        break;
                    }
                    return Err(self.err("the line ends inside a value"));
                }
                Some(b'"') => {
                    self.i += 1;
                    loop {
                        let rest = &self.b[self.i..];
                        match memchr::memchr2(b'"', b'\\', rest) {
                            None => return Err(self.err("unterminated string")),
                            Some(k) if rest[k] == b'"' => {
                                self.i += k + 1;
                                break;
                            }
                            Some(k) => self.i += k + 2,
                        }
                        if self.i > self.b.len() {
                            return Err(self.err("unterminated string"));
                        }
                    }
                    if depth == 0 {
                        break;
                    }
                }
                Some(b'{' | b'[') => {
                    depth += 1;
                    self.i += 1;
                }
                Some(b'}' | b']') => {
                    if depth == 0 {
                        break;
                    }
                    depth -= 1;
                    self.i += 1;
                    if depth == 0 {
                        break;
                    }
                }
                Some(b',') if depth == 0 => break,
                Some(b' ' | b'\t' | b'\n' | b'\r') if depth == 0 => break,
                Some(_) => self.i += 1,
            }
        }
        if self.i == start {
            return Err(self.err("expected a value"));
        }
        Ok(start..self.i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_kind() {
        let l = parse(br#"{"type":"checkpoint","note":"a\nb\u2014"}"#).unwrap();
        assert_eq!(l.kind, Kind::Checkpoint);
        assert_eq!(&*l.note, "a\nb\u{2014}".as_bytes());

        let l = parse(br#" { "proof" : [ "x" , "y" ] , "to":3, "from":2,"type":"consistency" } "#).unwrap();
        assert_eq!((l.kind, l.from, l.to), (Kind::Consistency, 2, 3));
        assert_eq!(l.proof, [&b"x"[..], &b"y"[..]]);

        let line =
            br#"{"type":"record","index":0,"leaf":"e30=","tree_size":1,"proof":[],"event":{"a":[1,"]"]}}"#;
        let l = parse(line).unwrap();
        assert_eq!(&line[l.event.clone()], br#"{"a":[1,"]"]}"#);
        assert_eq!((l.index, l.tree_size, &*l.leaf), (0, 1, &b"e30="[..]));
    }

    #[test]
    fn refuses_what_is_not_a_line() {
        for bad in [
            &br#""#[..],
            br#"{}"#,
            br#"[]"#,
            br#"{"type":"checkpoint"}"#,
            br#"{"type":"checkpoint","note":"x","leaf":"y"}"#,
            br#"{"type":"checkpoint","note":"x","note":"x"}"#,
            br#"{"type":"checkpoint","note":"x","extra":1}"#,
            br#"{"type":"checkpoint","note":"x"} x"#,
            br#"{"type":"checkpoint","note":"x"}{"#,
            br#"{"type":"nope","note":"x"}"#,
            br#"{"type":"consistency","from":01,"to":2,"proof":[]}"#,
            br#"{"type":"consistency","from":-1,"to":2,"proof":[]}"#,
            br#"{"type":"consistency","from":1.0,"to":2,"proof":[]}"#,
            br#"{"type":"consistency","from":18446744073709551616,"to":2,"proof":[]}"#,
            br#"{"type":"checkpoint","note":"\ud800"}"#,
            br#"{"type":"checkpoint","note":"\x"}"#,
            br#"{"type":"checkpoint","note":"x"#,
            br#"{"type":"record","index":0,"leaf":"","tree_size":1,"proof":[],"event":{"#,
            br#"{"type":"record","index":0,"leaf":"","tree_size":1,"proof":[],"event":"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
