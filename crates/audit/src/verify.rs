//! `gigawatt audit verify`: every integrity check and the compliance check of
//! `docs/audit.md`, in one pass over an export, offline.
//!
//! The file is read line by line and judged as it comes; the first failure ends the
//! run, and the [`Report`] names its line, the record's index, the [`Check`] that failed
//! and why. Nothing in the file is trusted before it is checked: the checkpoints'
//! signatures and the trailer's against the keys given, the consistency proofs against
//! the checkpoints' roots, each record's leaf (canonical, its `event` byte for byte, its
//! index from its `seq`) against its inclusion proof to the last checkpoint's root, and
//! the trailer's count and hash of indices against the record lines. Then the records,
//! in order, are judged for residency (the `compliance` module).
//!
//! The verifier never panics and never allocates more than a line's worth
//! ([`MAX_LINE`]) plus the compliance state, whatever the input.

use std::fmt;
use std::io::{BufRead, ErrorKind};
use std::ops::Range;

use gigawatt_transparency::{Checkpoint, Hash, Verifier, leaf_hash, open, verify_consistency};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::compliance::Compliance;
use crate::inclusion::{Inclusion, decode_hash};
use crate::leaf::{self, LeafView};
use crate::line::{self, Kind, Line};
use crate::trailer::Trailer;

/// The longest line read, in bytes (newline excluded): a longer one fails verification
/// rather than exhausting memory.
pub const MAX_LINE: usize = 64 << 20;

/// The check that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// The file could not be read, or a line is longer than [`MAX_LINE`].
    Read,
    /// A line is not one of the four kinds of export line (malformed JSON, an unknown,
    /// missing or repeated field, a number out of range).
    Json,
    /// A line is where the file's layout does not allow it, or the file ends early.
    Order,
    /// A checkpoint does not verify with the keys given, or does not parse, or does not
    /// follow the one before.
    Checkpoint,
    /// A consistency proof does not hold between its checkpoints.
    Consistency,
    /// A record's `tree_size` is not the last checkpoint's size.
    TreeSize,
    /// A record's `index` is not its leaf's `seq` − 1, or does not increase.
    Index,
    /// A record's `leaf` is not base64 of canonical JSON with a `seq` and an `event`.
    Leaf,
    /// A record's `event` is not its leaf's event.
    Event,
    /// A record's inclusion proof does not lead to the last checkpoint's root.
    Inclusion,
    /// The export trailer does not verify, or does not match the record lines.
    Trailer,
    /// A placement broke the residency rules in force, or cannot be judged.
    Compliance,
}

impl Check {
    /// The name used in reports and `--json` output (`tree-size`, `inclusion`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Read => "read",
            Check::Json => "json",
            Check::Order => "order",
            Check::Checkpoint => "checkpoint",
            Check::Consistency => "consistency",
            Check::TreeSize => "tree-size",
            Check::Index => "index",
            Check::Leaf => "leaf",
            Check::Event => "event",
            Check::Inclusion => "inclusion",
            Check::Trailer => "trailer",
            Check::Compliance => "compliance",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first check that failed, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The line, from 1 (one past the last line when the file ends early).
    pub line: u64,
    /// The record's index, on a record line that could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Which check failed.
    pub check: Check,
    /// Why, in words.
    pub message: String,
}

/// The outcome of verifying an export; its `Display` is the report for people, its JSON
/// (`serde`) the `--json` output of `docs/audit.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Whether every check passed.
    pub ok: bool,
    /// Record lines verified (all of them when `ok`).
    pub records: u64,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// The last verified checkpoint's tree size (0 before any).
    pub tree_size: u64,
    /// The first failure, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<Failure>,
    /// Placements whose residency was judged (and, when `ok`, complied).
    pub placements_checked: u64,
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", grouped(n), if n == 1 { one } else { many })
}

impl fmt::Display for Report {
    /// `verified 1,234 records against 3 checkpoints (tree size 10,000); 87 placements
    /// comply with their residency policy`, or `FAILED at line 17 (record 1,203):
    /// inclusion: …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.first_failure {
            None => write!(
                f,
                "verified {} against {} (tree size {}); {} with their residency policy",
                counted(self.records, "record", "records"),
                counted(self.checkpoints, "checkpoint", "checkpoints"),
                grouped(self.tree_size),
                if self.placements_checked == 1 {
                    "1 placement complies".to_string()
                } else {
                    format!("{} placements comply", grouped(self.placements_checked))
                },
            ),
            Some(fail) => {
                write!(f, "FAILED at line {}", grouped(fail.line))?;
                if let Some(i) = fail.index {
                    write!(f, " (record {})", grouped(i))?;
                }
                write!(f, ": {}: {}", fail.check, fail.message)
            }
        }
    }
}

/// Verifies an export file read from `input` with the log's public keys `keys` (the
/// `--key` verifier keys): every integrity check and the compliance check of
/// `docs/audit.md`, stopping at the first failure.
pub fn verify(mut input: impl BufRead, keys: &[Verifier]) -> Report {
    let mut v = Verification::new(keys);
    // A line that lies whole in the reader's buffer is read there; one that spans
    // buffers is gathered here.
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let available = match input.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                let line = v.lines + 1;
                v.failed(fail(line, Check::Read, format!("reading the file: {e}")));
                break;
            }
        };
        if available.is_empty() {
            if !pending.is_empty() {
                let _ = v.line(&pending); // the last line, without a newline
            }
            break;
        }
        let (result, used) = match memchr::memchr(b'\n', available) {
            Some(nl) if pending.len() + nl > MAX_LINE => (Err(v.too_long()), nl + 1),
            Some(nl) if pending.is_empty() => (v.line(&available[..nl]), nl + 1),
            Some(nl) => {
                pending.extend_from_slice(&available[..nl]);
                let r = v.line(&pending);
                pending.clear();
                (r, nl + 1)
            }
            None if pending.len() + available.len() > MAX_LINE => (Err(v.too_long()), available.len()),
            None => {
                pending.extend_from_slice(available);
                (Ok(()), available.len())
            }
        };
        input.consume(used);
        if result.is_err() {
            break;
        }
    }
    v.finish()
}

/// A verification in progress, fed one line at a time: what [`verify`] does over a
/// reader, for callers that hold the lines themselves or want to report progress.
///
/// `Clone` snapshots it, so a caller can try several continuations of the same prefix.
#[derive(Debug, Clone)]
pub struct Verification<'k> {
    run: Run<'k>,
    /// Lines fed so far.
    lines: u64,
    failure: Option<Failure>,
}

impl<'k> Verification<'k> {
    /// A verification against the log's public keys `keys`.
    #[must_use]
    pub fn new(keys: &'k [Verifier]) -> Self {
        Self { run: Run::new(keys), lines: 0, failure: None }
    }

    /// Verifies the next line of the file (without its newline). After a failure, lines
    /// are no longer read and the first failure is returned again.
    pub fn line(&mut self, line: &[u8]) -> Result<(), Failure> {
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        self.lines += 1;
        self.run.line(self.lines, line).inspect_err(|f| {
            self.failure = Some(f.clone());
        })
    }

    fn failed(&mut self, f: Failure) {
        self.failure.get_or_insert(f);
    }

    /// Fails the next line for being longer than [`MAX_LINE`].
    fn too_long(&mut self) -> Failure {
        let line = self.lines + 1;
        let f = fail(line, Check::Read, format!("line {line} is longer than {MAX_LINE} bytes"));
        self.failed(f.clone());
        f
    }

    /// Lines fed so far.
    #[must_use]
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The report at the end of the file: a file that ends before its trailer fails.
    #[must_use]
    pub fn finish(mut self) -> Report {
        if self.failure.is_none() {
            self.failure = self.run.end(self.lines);
        }
        self.report()
    }

    /// The report so far, as if the file went on (`ok` while nothing failed yet).
    #[must_use]
    pub fn report(&self) -> Report {
        Report {
            ok: self.failure.is_none(),
            records: self.run.records,
            checkpoints: self.run.checkpoints.len() as u64,
            tree_size: self.run.checkpoints.last().map_or(0, |c| c.size),
            first_failure: self.failure.clone(),
            placements_checked: self.run.compliance.placements_checked,
        }
    }
}

fn fail(line: u64, check: Check, message: impl Into<String>) -> Failure {
    Failure { line, index: None, check, message: message.into() }
}

/// The fields of a record line, however it was read.
pub(crate) struct RecordFields<'a, 'p> {
    /// `index`.
    pub index: u64,
    /// `tree_size`.
    pub tree_size: u64,
    /// `leaf`: base64 text.
    pub leaf: &'a [u8],
    /// `proof`: base64 texts.
    pub proof: &'p [&'a [u8]],
    /// Where `event` is in the line.
    pub event: Range<usize>,
}

/// Where the file is in its fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Checkpoints,
    Consistency,
    Records,
    /// After the trailer: nothing may follow.
    Done,
}

/// The state of one verification.
#[derive(Debug, Clone)]
struct Run<'k> {
    keys: &'k [Verifier],
    part: Part,
    checkpoints: Vec<Checkpoint>,
    /// Consistency proofs verified.
    proofs: usize,
    records: u64,
    last_index: Option<u64>,
    indices: Sha256,
    inclusion: Option<Inclusion>,
    compliance: Compliance,
    /// The current record's leaf, and where its fields are.
    leaf: Vec<u8>,
    view: LeafView,
}

impl<'k> Run<'k> {
    fn new(keys: &'k [Verifier]) -> Self {
        Self {
            keys,
            part: Part::Checkpoints,
            checkpoints: Vec::new(),
            proofs: 0,
            records: 0,
            last_index: None,
            indices: Sha256::new(),
            inclusion: None,
            compliance: Compliance::default(),
            leaf: Vec::with_capacity(4096),
            view: LeafView::default(),
        }
    }

    fn line(&mut self, n: u64, bytes: &[u8]) -> Result<(), Failure> {
        if self.part == Part::Done {
            return Err(fail(n, Check::Order, "a line after the export trailer, which must be last"));
        }
        // Record lines as the writer lays them out take the fast way; it only accepts
        // lines that pass every check (and so are valid JSON), and leaves everything
        // else, failures included, to the general reader below.
        let mut proof: [&[u8]; line::MAX_PROOF] = [&[]; line::MAX_PROOF];
        if let Some(r) = line::record_fast(bytes, &mut proof)
            && self.record(n, bytes, &r.fields(&proof)).is_ok()
        {
            return self.commit(r.index).map_err(|message| Failure {
                line: n,
                index: Some(r.index),
                check: Check::Compliance,
                message,
            });
        }
        let line =
            line::parse(bytes).map_err(|e| fail(n, Check::Json, format!("not an export line: {e}")))?;
        match line.kind {
            Kind::Checkpoint => self.checkpoint(n, &line),
            Kind::Consistency => self.consistency(n, &line),
            Kind::Record => {
                let texts: Vec<&[u8]> = line.proof.iter().map(|t| &t[..]).collect();
                let fields = RecordFields {
                    index: line.index,
                    tree_size: line.tree_size,
                    leaf: &line.leaf,
                    proof: &texts,
                    event: line.event.clone(),
                };
                let failure = |(check, message)| Failure { line: n, index: Some(line.index), check, message };
                self.record(n, bytes, &fields).map_err(failure)?;
                self.commit(line.index).map_err(|m| failure((Check::Compliance, m)))
            }
            Kind::Export => self.trailer(n, &line),
        }
    }

    /// Fails unless every consistency proof has been read, as before a record or the
    /// trailer.
    fn proofs_done(&self, n: u64, what: &str) -> Result<&Checkpoint, Failure> {
        let Some(last) = self.checkpoints.last() else {
            return Err(fail(n, Check::Order, format!("{what} before any checkpoint")));
        };
        if self.proofs + 1 < self.checkpoints.len() {
            let (a, b) = (&self.checkpoints[self.proofs], &self.checkpoints[self.proofs + 1]);
            return Err(fail(
                n,
                Check::Order,
                format!("{what} before the consistency proof from tree size {} to {}", a.size, b.size),
            ));
        }
        Ok(last)
    }

    fn checkpoint(&mut self, n: u64, line: &Line<'_>) -> Result<(), Failure> {
        if self.part != Part::Checkpoints {
            return Err(fail(n, Check::Order, "a checkpoint after the consistency proofs or records"));
        }
        let bad = |m: String| fail(n, Check::Checkpoint, m);
        let opened =
            open(&line.note, self.keys).map_err(|e| bad(format!("the signed note does not verify: {e}")))?;
        let c = Checkpoint::parse(&opened.text).map_err(|e| bad(format!("not a checkpoint: {e}")))?;
        if !opened.verified_by.contains(&c.origin) {
            return Err(bad(format!(
                "the checkpoint of log {} is signed by {}, not by the log's own key",
                c.origin,
                opened.verified_by.join(", ")
            )));
        }
        if let Some(first) = self.checkpoints.first()
            && first.origin != c.origin
        {
            return Err(bad(format!(
                "a checkpoint of log {}, the first is of log {}",
                c.origin, first.origin
            )));
        }
        if let Some(prev) = self.checkpoints.last()
            && c.size < prev.size
        {
            return Err(bad(format!(
                "tree size {} after tree size {}: checkpoints come smallest first",
                c.size, prev.size
            )));
        }
        self.checkpoints.push(c);
        Ok(())
    }

    fn consistency(&mut self, n: u64, line: &Line<'_>) -> Result<(), Failure> {
        if self.checkpoints.is_empty() || matches!(self.part, Part::Records) {
            return Err(fail(
                n,
                Check::Order,
                "a consistency proof must follow the checkpoints and precede the records",
            ));
        }
        let j = self.proofs;
        let (Some(old), Some(new)) = (self.checkpoints.get(j), self.checkpoints.get(j + 1)) else {
            return Err(fail(n, Check::Order, "more consistency proofs than pairs of checkpoints"));
        };
        let bad = |m: String| fail(n, Check::Consistency, m);
        if (line.from, line.to) != (old.size, new.size) {
            return Err(bad(format!(
                "the proof is from tree size {} to {}, but the next pair of checkpoints is {} and {}",
                line.from, line.to, old.size, new.size
            )));
        }
        let mut proof: Vec<Hash> = Vec::with_capacity(line.proof.len());
        for (k, text) in line.proof.iter().enumerate() {
            proof.push(
                decode_hash(text)
                    .ok_or_else(|| bad(format!("proof hash {k} is not the base64 of 32 bytes")))?,
            );
        }
        verify_consistency(old.size, new.size, &proof, &old.root, &new.root)
            .map_err(|e| bad(format!("from tree size {} to {}: {e}", old.size, new.size)))?;
        self.proofs += 1;
        self.part = Part::Consistency;
        Ok(())
    }

    /// The integrity checks of a record line: all but compliance. Changes nothing but
    /// the inclusion cache (which only ever holds authenticated hashes), so that a line
    /// can be checked again.
    fn record(&mut self, n: u64, bytes: &[u8], line: &RecordFields<'_, '_>) -> Result<(), (Check, String)> {
        let last = self.proofs_done(n, "a record").map_err(|f| (f.check, f.message))?;
        let (size, root) = (last.size, last.root);
        let index = line.index;
        if line.tree_size != size {
            return Err((
                Check::TreeSize,
                format!(
                    "the record is proven against tree size {}, the last checkpoint is of size {size}",
                    line.tree_size
                ),
            ));
        }
        if let Some(prev) = self.last_index
            && index <= prev
        {
            return Err((
                Check::Index,
                format!("index {index} after index {prev}: indices strictly increase"),
            ));
        }

        if !crate::b64::decode_into(line.leaf, &mut self.leaf) {
            return Err((Check::Leaf, "the leaf is not standard base64 (with padding)".into()));
        }
        let leaf = &self.leaf[..];
        leaf::scan_into(leaf, &mut self.view).map_err(|e| (Check::Leaf, format!("the leaf is {e}")))?;
        let view = &self.view;
        let seq = view
            .seq
            .filter(|s| *s > 0)
            .ok_or((Check::Leaf, "the leaf has no positive integer seq".into()))?;
        if seq - 1 != index {
            return Err((
                Check::Index,
                format!("index {index}, but the leaf's seq is {seq} (the index is seq − 1)"),
            ));
        }
        let event = view.event.clone().ok_or((Check::Leaf, "the leaf has no event".into()))?;
        if bytes.get(line.event.clone()) != Some(&leaf[event]) {
            return Err((Check::Event, "the event is not the leaf's event, byte for byte".into()));
        }

        let inclusion = self.inclusion.get_or_insert_with(|| Inclusion::new(size, root));
        inclusion
            .verify(&leaf_hash(leaf), index, line.proof)
            .map_err(|e| (Check::Inclusion, format!("in the tree of size {size}: {e}")))?;
        Ok(())
    }

    /// Takes a record whose integrity held into account: the trailer's count and hash of
    /// indices, and compliance (whose failure is the error).
    fn commit(&mut self, index: u64) -> Result<(), String> {
        self.part = Part::Records;
        self.last_index = Some(index);
        self.indices.update(index.to_be_bytes());
        self.compliance.record(&self.leaf, &self.view)?;
        self.records += 1;
        Ok(())
    }

    fn trailer(&mut self, n: u64, line: &Line<'_>) -> Result<(), Failure> {
        let last = self.proofs_done(n, "the export trailer")?;
        let bad = |m: String| fail(n, Check::Trailer, m);
        let opened =
            open(&line.note, self.keys).map_err(|e| bad(format!("the signed note does not verify: {e}")))?;
        let t = Trailer::parse(&opened.text).map_err(bad)?;
        if t.origin != last.origin {
            return Err(bad(format!(
                "the trailer is of log {}, the checkpoints of log {}",
                t.origin, last.origin
            )));
        }
        if !opened.verified_by.contains(&t.origin) {
            return Err(bad(format!(
                "the trailer is signed by {}, not by the log's own key",
                opened.verified_by.join(", ")
            )));
        }
        if t.tree_size != last.size {
            return Err(bad(format!(
                "the trailer says tree size {}, the last checkpoint {}",
                t.tree_size, last.size
            )));
        }
        if t.records != self.records {
            return Err(bad(format!(
                "the trailer says {} records, the file holds {}: a record line was removed or added",
                t.records, self.records
            )));
        }
        let indices: Hash = self.indices.clone().finalize().into();
        if t.indices != indices {
            return Err(bad(
                "the record indices are not those the trailer signed: a record line was removed, added or moved".into(),
            ));
        }
        self.part = Part::Done;
        Ok(())
    }

    /// At the end of the file (after `lines` lines): the trailer must have been read.
    fn end(&self, lines: u64) -> Option<Failure> {
        match self.part {
            Part::Done => None,
            _ if lines == 0 => Some(fail(1, Check::Order, "the file is empty")),
            _ => Some(fail(
                lines + 1,
                Check::Order,
                "the file ends without the export trailer: it was cut short",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn empty_and_garbage_inputs_fail_without_panicking() {
        let r = verify(&b""[..], &[]);
        assert!(!r.ok);
        assert_eq!(r.first_failure.as_ref().map(|f| (f.line, f.check)), Some((1, Check::Order)));
        for input in [&b"\n"[..], b"{", b"\xff\xfe", b"{\"type\":\"record\"}", b"null\n"] {
            let r = verify(input, &[]);
            assert!(!r.ok);
            assert_eq!(r.first_failure.map(|f| f.line), Some(1));
        }
    }

    /// Endless bytes without a newline, or an error after some bytes.
    struct Endless {
        fail_after: Option<usize>,
        given: usize,
    }

    impl std::io::Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.fail_after.is_some_and(|n| self.given >= n) {
                return Err(std::io::Error::other("disk on fire"));
            }
            buf.fill(b'a');
            self.given += buf.len();
            Ok(buf.len())
        }
    }

    #[test]
    fn endless_lines_and_read_errors_fail_in_bounded_memory() {
        let r = verify(std::io::BufReader::new(Endless { fail_after: None, given: 0 }), &[]);
        let f = r.first_failure.unwrap();
        assert_eq!((f.line, f.check), (1, Check::Read), "{}", f.message);
        let r = verify(std::io::BufReader::new(Endless { fail_after: Some(100_000), given: 0 }), &[]);
        let f = r.first_failure.unwrap();
        assert_eq!((f.line, f.check), (1, Check::Read));
        assert!(f.message.contains("disk on fire"), "{}", f.message);
    }

    #[test]
    fn report_texts() {
        let ok = Report {
            ok: true,
            records: 1234,
            checkpoints: 3,
            tree_size: 10_000,
            first_failure: None,
            placements_checked: 87,
        };
        assert_eq!(
            ok.to_string(),
            "verified 1,234 records against 3 checkpoints (tree size 10,000); 87 placements comply with their residency policy"
        );
        let failed = Report {
            ok: false,
            first_failure: Some(Failure {
                line: 17,
                index: Some(1203),
                check: Check::Inclusion,
                message: "root mismatch".into(),
            }),
            ..ok
        };
        assert_eq!(failed.to_string(), "FAILED at line 17 (record 1,203): inclusion: root mismatch");
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["first_failure"]["check"], "inclusion");
        assert_eq!(json["first_failure"]["index"], 1203);
        assert_eq!(json["placements_checked"], 87);
    }
}
