//! The canonical-JSON check of a leaf, in one pass and without building a JSON tree.
//!
//! A leaf is trusted only if it is canonical (see `docs/log-format.md`): re-encoding its
//! JSON with [`gigawatt_store::canonical::write_canonical`] gives the same bytes. That
//! reference check ([`gigawatt_store::canonical::is_canonical`]) parses the leaf into a
//! `serde_json::Value` and writes it again, some microseconds a leaf. [`scan`] decides
//! the same question directly on the bytes (keys strictly increasing, no whitespace, no
//! `null` member, strings escaped exactly as `serde_json` escapes them, numbers in the
//! one form `serde_json` writes), and on the way notes where the fields the verifier
//! reads are: `seq`, `tenant`, `event` and the event's `type`.
//!
//! The two checks agree on every input (the crate's tests compare them on generated and
//! mutated leaves); where they could differ at all — nesting deeper than [`MAX_DEPTH`] —
//! this one refuses.

use std::cmp::Ordering;
use std::ops::Range;

use thiserror::Error;

/// Nesting deeper than this is refused (`serde_json` refuses at 128).
pub const MAX_DEPTH: u32 = 100;

/// Why a leaf is not canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not canonical JSON at byte {offset}: {reason}")]
pub struct NotCanonical {
    /// Byte offset in the leaf where the problem was found.
    pub offset: usize,
    /// What is wrong there.
    pub reason: &'static str,
}

/// Where a canonical leaf keeps what the verifier reads (byte ranges into the leaf).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeafView {
    /// The top-level `seq`, when it is an unsigned integer.
    pub seq: Option<u64>,
    /// The top-level `tenant` string, quotes included, when it is a string.
    pub tenant: Option<Range<usize>>,
    /// The top-level `event` value.
    pub event: Option<Range<usize>>,
    /// The event's `type` string, without its quotes (canonical escaping is unique, so
    /// these bytes equal a type name exactly when the decoded string does).
    pub event_type: Option<Range<usize>>,
    /// The members of the `event` object.
    pub event_members: Members,
    /// The members of the event's `workload` member, when it is an object.
    pub workload_members: Members,
    /// The `task` of each element of the event's `tasks` array (a placement's tasks).
    pub tasks: Tasks,
    /// Floats already found canonical, kept from leaf to leaf.
    floats: FloatMemo,
}

/// Float tokens found canonical, in a small direct-mapped table: logs repeat the same
/// few floats (`7200.0`, `0.25`), and checking one means parsing and printing it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FloatMemo {
    /// Each slot: the token's bytes and length (0: empty).
    slots: [([u8; FloatMemo::WIDTH], u8); FloatMemo::SLOTS],
}

impl FloatMemo {
    const SLOTS: usize = 64;
    const WIDTH: usize = 24;

    fn slot(token: &[u8]) -> usize {
        let h = token.iter().fold(0u32, |h, &b| h.rotate_left(5) ^ u32::from(b)).wrapping_mul(0x9E37_79B9);
        (h >> 26) as usize % Self::SLOTS
    }

    fn contains(&self, token: &[u8]) -> bool {
        let (bytes, len) = &self.slots[Self::slot(token)];
        *len as usize == token.len() && bytes.get(..token.len()) == Some(token)
    }

    fn insert(&mut self, token: &[u8]) {
        if (1..=Self::WIDTH).contains(&token.len()) {
            let (bytes, len) = &mut self.slots[Self::slot(token)];
            bytes[..token.len()].copy_from_slice(token);
            *len = token.len() as u8;
        }
    }
}

impl Default for FloatMemo {
    fn default() -> Self {
        Self { slots: [([0; Self::WIDTH], 0); Self::SLOTS] }
    }
}

/// The most task numbers [`Tasks`] notes.
const MAX_TASKS: usize = 32;

/// The task numbers of a placement, in order, when each is a `u32` and there are at most
/// [`MAX_TASKS`]; else `overflow`, and the caller decodes the JSON instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tasks {
    items: [u32; MAX_TASKS],
    len: u8,
    /// Not all task numbers could be noted.
    pub overflow: bool,
}

impl Default for Tasks {
    fn default() -> Self {
        Self { items: [0; MAX_TASKS], len: 0, overflow: false }
    }
}

impl Tasks {
    fn push(&mut self, task: Option<u64>) {
        match task.and_then(|t| u32::try_from(t).ok()) {
            Some(t) if (self.len as usize) < MAX_TASKS => {
                self.items[self.len as usize] = t;
                self.len += 1;
            }
            _ => self.overflow = true,
        }
    }

    /// The task numbers noted.
    pub(crate) fn as_slice(&self) -> &[u32] {
        &self.items[..self.len as usize]
    }
}

/// The most members [`Members`] notes; an object with more is marked as overflowing.
const MAX_MEMBERS: usize = 16;

/// Where the members of one object are: each key (its contents, without quotes) and
/// value, as byte ranges, in the object's (canonical, sorted) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Members {
    items: [(u32, u32, u32, u32); MAX_MEMBERS],
    len: u8,
    /// More members than noted (or offsets beyond 4 GiB): look in the JSON instead.
    pub overflow: bool,
}

impl Default for Members {
    fn default() -> Self {
        Self { items: [(0, 0, 0, 0); MAX_MEMBERS], len: 0, overflow: false }
    }
}

impl Members {
    fn clear(&mut self) {
        self.len = 0;
        self.overflow = false;
    }

    fn push(&mut self, key: &Str, value: Range<usize>) {
        let fit = |n: usize| u32::try_from(n).ok();
        match (fit(key.start), fit(key.end), fit(value.start), fit(value.end)) {
            (Some(a), Some(b), Some(c), Some(d)) if (self.len as usize) < MAX_MEMBERS && !key.escaped => {
                self.items[self.len as usize] = (a, b, c, d);
                self.len += 1;
            }
            _ => self.overflow = true,
        }
    }

    /// The value of the member named `key` (escape-free), looked up in `json`.
    pub(crate) fn get<'j>(&self, json: &'j [u8], key: &[u8]) -> Option<&'j [u8]> {
        self.items[..self.len as usize]
            .iter()
            .find(|(a, b, _, _)| json.get(*a as usize..*b as usize) == Some(key))
            .and_then(|&(_, _, c, d)| json.get(c as usize..d as usize))
    }
}

/// Checks that `leaf` is canonical JSON and says where its fields are.
pub(crate) fn scan(leaf: &[u8]) -> Result<LeafView, NotCanonical> {
    let mut view = LeafView::default();
    scan_into(leaf, &mut view)?;
    Ok(view)
}

/// [`scan`] into a view the caller keeps (it is reset first), to spare copying it.
pub(crate) fn scan_into(leaf: &[u8], view: &mut LeafView) -> Result<(), NotCanonical> {
    view.seq = None;
    view.tenant = None;
    view.event = None;
    view.event_type = None;
    view.event_members.clear();
    view.workload_members.clear();
    view.tasks = Tasks::default();
    let mut s = Scanner { b: leaf, i: 0, view, error: NotCanonical { offset: 0, reason: "" } };
    if s.value(0, Role::Top).is_err() {
        return Err(s.error);
    }
    if s.i != leaf.len() {
        s.err("bytes after the JSON value");
        return Err(s.error);
    }
    Ok(())
}

/// Which object is being read, for noting the fields the verifier wants.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The leaf itself.
    Top,
    /// The leaf's `event` object.
    Event,
    /// The event's `workload` object.
    Workload,
    /// The event's `tasks` array.
    Tasks,
    /// An element of the event's `tasks` array.
    Task,
    /// Anything else.
    Other,
}

/// A string as found: its bytes without the quotes, and whether it holds an escape.
#[derive(Clone, Copy)]
struct Str {
    start: usize,
    end: usize,
    escaped: bool,
}

/// Bytes that stand for themselves inside a canonical string: printable ASCII other than
/// `"` and `\`. (Bytes from 0x80 start UTF-8 sequences and are checked apart.)
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b < 0x80 {
        t[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    t
};

struct Scanner<'a, 'v> {
    b: &'a [u8],
    i: usize,
    view: &'v mut LeafView,
    /// Why the scan stopped, once it has.
    error: NotCanonical,
}

/// The scan stopped: the reason is in [`Scanner::error`]. (A zero-sized error keeps
/// every result in registers; the scanner is the verifier's hottest code.)
struct Stop;

type Step<T = ()> = Result<T, Stop>;

impl Scanner<'_, '_> {
    #[cold]
    fn err(&mut self, reason: &'static str) -> Stop {
        self.error = NotCanonical { offset: self.i, reason };
        Stop
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self, depth: u32, role: Role) -> Step {
        match self.peek() {
            Some(b'{') => self.object(depth + 1, role),
            Some(b'[') => self.array(depth + 1, Role::Other),
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            Some(_) => Err(self.err("expected a JSON value")),
            None => Err(self.err("the leaf ends where a value should be")),
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Step {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("expected true, false or null"))
        }
    }

    fn object(&mut self, depth: u32, role: Role) -> Step {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deep"));
        }
        self.i += 1; // `{`
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let mut prev: Option<Str> = None;
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a key"));
            }
            let start = self.i + 1;
            let escaped = self.string()?;
            let key = Str { start, end: self.i - 1, escaped };
            if let Some(p) = prev
                && self.compare_keys(p, key) != Ordering::Less
            {
                self.i = key.start - 1;
                return Err(self.err("keys not in strictly increasing order"));
            }
            prev = Some(key);
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':' right after the key"));
            }
            self.i += 1;
            if self.peek() == Some(b'n') {
                return Err(self.err("a member whose value is null (canonical JSON leaves it out)"));
            }
            let start = self.i;
            if role == Role::Other {
                self.value(depth, Role::Other)?;
            } else {
                self.member(depth, role, key, start)?;
            }
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or '}' right after a member")),
            }
        }
    }

    /// The value of a member of the leaf, of its event, or of the event's workload,
    /// noting where the verifier's fields are.
    fn member(&mut self, depth: u32, role: Role, key: Str, start: usize) -> Step {
        let name = &self.b[key.start..key.end];
        match (role, name) {
            (Role::Top, b"seq") => {
                self.view.seq = self.number_or_value(depth)?;
            }
            (Role::Top, b"tenant") => {
                self.value(depth, Role::Other)?;
                if self.b[start] == b'"' {
                    self.view.tenant = Some(start..self.i);
                }
            }
            (Role::Top, b"event") => {
                self.value(depth, Role::Event)?;
                self.view.event = Some(start..self.i);
            }
            (Role::Event, b"type") => {
                self.value(depth, Role::Other)?;
                if self.b[start] == b'"' {
                    self.view.event_type = Some(start + 1..self.i - 1);
                }
            }
            (Role::Event, b"workload") => self.value(depth, Role::Workload)?,
            (Role::Event, b"tasks") => {
                if self.peek() == Some(b'[') {
                    self.array(depth + 1, Role::Tasks)?;
                } else {
                    self.view.tasks.overflow = true;
                    self.value(depth, Role::Other)?;
                }
            }
            (Role::Task, b"task") => {
                let task = self.number_or_value(depth)?;
                self.view.tasks.push(task);
            }
            _ => self.value(depth, Role::Other)?,
        }
        match role {
            Role::Event => self.view.event_members.push(&key, start..self.i),
            Role::Workload => self.view.workload_members.push(&key, start..self.i),
            Role::Top | Role::Tasks | Role::Task | Role::Other => {}
        }
        Ok(())
    }

    /// A value that is noted when it is an unsigned integer (the leaf's `seq`).
    fn number_or_value(&mut self, depth: u32) -> Step<Option<u64>> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.value(depth, Role::Other).map(|()| None),
        }
    }

    fn array(&mut self, depth: u32, role: Role) -> Step {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deep"));
        }
        self.i += 1; // `[`
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            if role == Role::Tasks {
                // Each task must say which it is.
                let noted = self.view.tasks.len;
                self.value(depth, Role::Task)?;
                if self.view.tasks.len == noted {
                    self.view.tasks.overflow = true;
                }
            } else {
                self.value(depth, Role::Other)?;
            }
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or ']' right after an element")),
            }
        }
    }

    /// A string escaped exactly as `serde_json` escapes: `\"`, `\\`, `\b`, `\t`, `\n`,
    /// `\f`, `\r`, `\u00xx` (lower-case hex) for the other control characters, and every
    /// other character as itself, in valid UTF-8.
    /// Returns whether it holds an escape; it ends just before `self.i`.
    fn string(&mut self) -> Step<bool> {
        self.i += 1; // `"`
        let mut escaped = false;
        loop {
            self.i = plain_run(self.b, self.i);
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(b) if b < 0x20 => return Err(self.err("a raw control character in a string")),
                Some(b) => {
                    // b >= 0x80: one UTF-8 sequence.
                    let len = match b {
                        0xC2..=0xDF => 2,
                        0xE0..=0xEF => 3,
                        0xF0..=0xF4 => 4,
                        _ => return Err(self.err("invalid UTF-8")),
                    };
                    match self.b.get(self.i..self.i + len) {
                        Some(seq) if std::str::from_utf8(seq).is_ok() => self.i += len,
                        _ => return Err(self.err("invalid UTF-8")),
                    }
                }
                None => return Err(self.err("unterminated string")),
            }
        }
    }

    fn escape(&mut self) -> Step {
        let bad = |s: &mut Self| Err(s.err("an escape serde_json would not write"));
        match self.b.get(self.i + 1) {
            Some(b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r') => {
                self.i += 2;
                Ok(())
            }
            Some(b'u') => {
                let Some(hex) = self.b.get(self.i + 2..self.i + 6) else { return bad(self) };
                let lower = |c: u8| matches!(c, b'0'..=b'9' | b'a'..=b'f');
                if hex[0] != b'0' || hex[1] != b'0' || !lower(hex[2]) || !lower(hex[3]) {
                    return bad(self);
                }
                let nibble = |c: u8| if c <= b'9' { c - b'0' } else { c - b'a' + 10 };
                let code = nibble(hex[2]) << 4 | nibble(hex[3]);
                // Only control characters without a short escape take the long one.
                if code >= 0x20 || matches!(code, 0x08 | 0x09 | 0x0A | 0x0C | 0x0D) {
                    return bad(self);
                }
                self.i += 6;
                Ok(())
            }
            _ => bad(self),
        }
    }

    /// Orders two keys by their decoded bytes, as `write_canonical` sorts them.
    fn compare_keys(&self, a: Str, b: Str) -> Ordering {
        if !a.escaped && !b.escaped {
            // Keys are short and differ early: a loop beats a call to memcmp.
            let (a, b) = (&self.b[a.start..a.end], &self.b[b.start..b.end]);
            for (x, y) in a.iter().zip(b) {
                if x != y {
                    return x.cmp(y);
                }
            }
            return a.len().cmp(&b.len());
        }
        unescape(&self.b[a.start..a.end]).cmp(&unescape(&self.b[b.start..b.end]))
    }

    /// A number in the one form `serde_json` writes it; returns it when it is an
    /// unsigned integer.
    fn number(&mut self) -> Step<Option<u64>> {
        let start = self.i;
        let neg = self.peek() == Some(b'-');
        if neg {
            self.i += 1;
        }
        // The integer part, its value gathered on the way (`None` beyond 64 bits).
        let mut magnitude: Option<u64> = Some(0);
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while let Some(&d) = self.b.get(self.i) {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    magnitude = magnitude.and_then(|m| m.checked_mul(10)?.checked_add(u64::from(d - b'0')));
                    self.i += 1;
                }
            }
            _ => return Err(self.err("a number without digits")),
        }
        let mut plain = true;
        if self.peek() == Some(b'.') {
            plain = false;
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err("a fraction without digits"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            plain = false;
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err("an exponent without digits"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.err("a number with a leading zero"));
        }
        if plain {
            match (neg, magnitude) {
                // serde_json reads these as integers and writes them back as they are.
                (false, Some(m)) => return Ok(Some(m)),
                (true, Some(m)) if m != 0 && m <= 1 << 63 => return Ok(None),
                // `-0` and integers beyond 64 bits are read as floats.
                _ => {}
            }
        }
        let token = &self.b[start..self.i];
        if self.view.floats.contains(token) {
            return Ok(None);
        }
        if float_is_canonical(token) {
            self.view.floats.insert(token);
            Ok(None)
        } else {
            self.i = start;
            Err(self.err("a number not in serde_json's shortest form"))
        }
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
    }
}

/// The end of the run of [`PLAIN`] bytes that starts at `i`. Eight bytes at a time: a
/// word holds no byte that ends the run when none is below 0x20, none is `"` or `\`, and
/// none has its high bit set. (In each test a borrow can only flag bytes above a flagged
/// one, so the lowest flag is exact.)
fn plain_run(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let control = x.wrapping_sub(ONES * 0x20) & !x;
        let q = x ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let e = x ^ (ONES * u64::from(b'\\'));
        let escape = e.wrapping_sub(ONES) & !e;
        let stop = (control | quote | escape | x) & HIGH;
        if stop != 0 {
            return i + (stop.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && PLAIN[b[i] as usize] {
        i += 1;
    }
    i
}

/// Whether serde_json reads `token` (valid JSON number syntax) as a finite float and
/// writes it back as the same bytes.
fn float_is_canonical(token: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(token) else { return false };
    let Ok(x) = text.parse::<f64>() else { return false };
    if !x.is_finite() {
        return false; // serde_json refuses numbers out of range
    }
    // serde_json never writes a float longer than 24 bytes (`-2.2250738585072014e-308`).
    let mut buf = [0u8; 32];
    let mut out = std::io::Cursor::new(&mut buf[..]);
    serde_json::to_writer(&mut out, &x).is_ok() && {
        let len = out.position() as usize;
        buf.get(..len) == Some(token)
    }
}

/// The bytes of a string's contents (already checked to be canonical) with its escapes
/// decoded.
fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let (byte, len) = match raw.get(i + 1) {
            Some(b'b') => (0x08, 2),
            Some(b't') => (0x09, 2),
            Some(b'n') => (0x0A, 2),
            Some(b'f') => (0x0C, 2),
            Some(b'r') => (0x0D, 2),
            Some(b'u') => {
                let hex =
                    |k: usize| raw.get(i + k).map_or(0, |c| (*c as char).to_digit(16).unwrap_or(0) as u8);
                (hex(4) << 4 | hex(5), 6)
            }
            Some(&c) => (c, 2),
            None => (b'\\', 1),
        };
        out.push(byte);
        i += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(s: &str) -> bool {
        scan(s.as_bytes()).is_ok()
    }

    #[test]
    fn agrees_with_the_reference_on_examples() {
        let cases = [
            r#"{}"#,
            r#"{"a":1,"b":[1,null,true],"c":{"d":"x"}}"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a": 1}"#,
            r#"{"a":null}"#,
            r#"[null]"#,
            r#"null"#,
            r#"{"a":1.0}"#,
            r#"{"a":1e0}"#,
            r#"{"a":1.5e-7}"#,
            r#"{"a":1e21}"#,
            r#"{"a":100000000000000000000}"#,
            r#"{"a":18446744073709551615}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":-9223372036854775808}"#,
            r#"{"a":-9223372036854775809}"#,
            r#"{"a":-0}"#,
            r#"{"a":-0.0}"#,
            r#"{"a":0.1}"#,
            r#"{"a":01}"#,
            r#"{"a":"\u001f\n\t\"\\\u0000"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"é€😀"}"#,
            r#"{"a":"\u00e9"}"#,
            "{\"a\":\"\x7f\"}",
            r#"{"\n":1,"a":2}"#,
            r#"{"a":2,"\n":1}"#,
            r#"{"a":1}x"#,
            r#"{"a":1} "#,
            r#"{"a":tru}"#,
            r#"{"a":[1,]}"#,
            r#""#,
        ];
        for case in cases {
            assert_eq!(canonical(case), gigawatt_store::canonical::is_canonical(case.as_bytes()), "{case}");
        }
    }

    #[test]
    fn finds_the_fields() {
        let leaf = br#"{"at_ms":5,"event":{"a":[{"type":"x"}],"type":"workload-placed"},"seq":18,"tenant":"acme","v":1}"#;
        let v = scan(leaf).unwrap();
        assert_eq!(v.seq, Some(18));
        assert_eq!(&leaf[v.tenant.unwrap()], br#""acme""#);
        assert_eq!(&leaf[v.event_type.unwrap()], b"workload-placed");
        assert_eq!(&leaf[v.event.unwrap()], br#"{"a":[{"type":"x"}],"type":"workload-placed"}"#);
    }

    mod generated {
        use gigawatt_store::canonical::{is_canonical, write_canonical};
        use proptest::prelude::*;
        use serde_json::Value;

        use super::super::scan;

        fn json() -> impl Strategy<Value = Value> {
            let key = prop_oneof![
                "[a-z_]{0,6}",
                "[\\x00-\\x7f]{0,4}",
                any::<String>().prop_map(|s| s.chars().take(4).collect::<String>()),
            ];
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<u64>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                (-1000i64..1000).prop_map(Value::from),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
                (-100i32..100, 0u8..4)
                    .prop_map(|(m, d)| Value::from(f64::from(m) / 10f64.powi(i32::from(d)))),
                any::<String>().prop_map(Value::String),
                "[\\x00-\\x7f]{0,8}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 48, 6, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::vec((key.clone(), inner), 0..6)
                        .prop_map(|members| Value::Object(members.into_iter().collect())),
                ]
            })
        }

        /// A byte-level change: flip, insert or delete at a position.
        fn mutate(bytes: &mut Vec<u8>, op: u8, at: usize, byte: u8) {
            if bytes.is_empty() {
                bytes.push(byte);
                return;
            }
            let at = at % bytes.len();
            match op % 4 {
                0 => bytes[at] ^= 1 << (byte % 8),
                1 => bytes[at] = byte,
                2 => bytes.insert(at, byte),
                _ => {
                    bytes.remove(at);
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            #[test]
            fn agrees_with_the_reference(v in json(), op in any::<u8>(), at in any::<usize>(), byte in any::<u8>()) {
                let mut canonical = Vec::new();
                write_canonical(&v, &mut canonical);
                prop_assert!(scan(&canonical).is_ok(), "{}", String::from_utf8_lossy(&canonical));
                let plain = serde_json::to_vec(&v).unwrap();
                prop_assert_eq!(scan(&plain).is_ok(), is_canonical(&plain));
                let pretty = serde_json::to_vec_pretty(&v).unwrap();
                prop_assert_eq!(scan(&pretty).is_ok(), is_canonical(&pretty));
                let mut changed = canonical.clone();
                mutate(&mut changed, op, at, byte);
                prop_assert_eq!(
                    scan(&changed).is_ok(),
                    is_canonical(&changed),
                    "{}", String::from_utf8_lossy(&changed)
                );
            }

            #[test]
            fn agrees_on_arbitrary_bytes(bytes in prop::collection::vec(prop_oneof![
                Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b'"'), Just(b':'), Just(b','),
                Just(b'\\'), Just(b'u'), Just(b'0'), Just(b'1'), Just(b'-'), Just(b'.'), Just(b'e'),
                Just(b'a'), Just(b'n'), Just(b' '), any::<u8>(),
            ], 0..40)) {
                prop_assert_eq!(scan(&bytes).is_ok(), is_canonical(&bytes), "{}", String::from_utf8_lossy(&bytes));
            }
        }
    }

    #[test]
    fn plain_runs_stop_at_the_first_special_byte() {
        for len in 0..40 {
            for at in 0..=len {
                for special in [0x00, 0x1f, b'"', b'\\', 0x80, 0xff] {
                    let mut b = vec![b'a'; len];
                    if at < len {
                        b[at] = special;
                    }
                    // Bytes after the special one do not matter.
                    b.extend_from_slice(b"\"\x01");
                    assert_eq!(plain_run(&b, 0), at.min(len), "{len} {at} {special}");
                    assert_eq!(plain_run(&b, at.min(len)), at.min(len));
                }
                let mut b = vec![0x20u8; len];
                b.push(0x7f);
                assert_eq!(plain_run(&b, 0), len + 1);
            }
        }
    }

    #[test]
    fn notes_the_members_of_the_event_and_its_workload() {
        let leaf = br#"{"event":{"type":"workload-submitted","workload":{"data_class":"health","id":7,"tenant":"clinic"}},"seq":1}"#;
        let v = scan(leaf).unwrap();
        assert_eq!(v.event_members.get(leaf, b"type"), Some(&br#""workload-submitted""#[..]));
        assert_eq!(v.workload_members.get(leaf, b"id"), Some(&b"7"[..]));
        assert_eq!(v.workload_members.get(leaf, b"tenant"), Some(&br#""clinic""#[..]));
        assert_eq!(v.workload_members.get(leaf, b"pins"), None);
        assert!(!v.event_members.overflow);
        let many: String = (0..20).map(|i| format!(r#""k{i:02}":{i},"#)).collect();
        let leaf = format!(r#"{{"event":{{{many}"type":"x"}},"seq":1}}"#);
        let v = scan(leaf.as_bytes()).unwrap();
        assert!(v.event_members.overflow);
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = "[".repeat(100_000);
        assert!(scan(deep.as_bytes()).is_err());
    }
}
