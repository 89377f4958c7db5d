//! Writing the export file (`docs/audit.md`, "The export file"): JSON Lines of signed
//! checkpoints, consistency proofs, records with their inclusion proofs, and the signed
//! trailer that commits to exactly which records the file holds.
//!
//! ```
//! use gigawatt_audit::{ExportHeader, ExportWriter};
//! use gigawatt_transparency::{Checkpoint, Signer, Tree};
//!
//! let leaves: [&[u8]; 2] = [
//!     br#"{"at_ms":1,"event":{"node":"n1","reason":"ok","type":"node-up"},"seq":1,"v":1}"#,
//!     br#"{"at_ms":2,"event":{"node":"n1","reason":"disk","type":"node-down"},"seq":2,"v":1}"#,
//! ];
//! let mut tree = Tree::new();
//! for leaf in leaves {
//!     tree.push(leaf);
//! }
//! let signer = Signer::from_seed("example.com/log", [7; 32]).unwrap();
//! let head = Checkpoint { origin: "example.com/log".into(), size: 2, root: tree.root(), extensions: vec![] };
//! let note = signer.sign(&head.to_text().unwrap()).unwrap();
//!
//! let mut w = ExportWriter::new(Vec::new());
//! w.checkpoint(&note).unwrap();
//! for (i, leaf) in leaves.iter().enumerate() {
//!     w.record(i as u64, leaf, 2, &tree.inclusion_proof(i as u64, 2).unwrap()).unwrap();
//! }
//! let header = ExportHeader { origin: "example.com/log".into(), tenant: None, from: None, to: None, tree_size: 2 };
//! let file = w.finish(&signer, &header).unwrap();
//!
//! let report = gigawatt_audit::verify(&file[..], &[signer.verifier()]);
//! assert!(report.ok, "{report}");
//! assert_eq!(report.records, 2);
//! ```

use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gigawatt_transparency::{Hash, NoteError, Signer};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::leaf::{self, NotCanonical};
use crate::trailer::{self, Trailer};

/// What the trailer states about an export besides what the writer counted: the log,
/// the selection, and the tree size the records are proven against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportHeader {
    /// The log's origin: the first line of its checkpoints, and its key's name.
    pub origin: String,
    /// The tenant whose records the export holds; `None` for every tenant.
    pub tenant: Option<String>,
    /// The first instant covered, RFC 3339; `None` from the log's start.
    pub from: Option<String>,
    /// The last instant covered, RFC 3339; `None` to the log's end.
    pub to: Option<String>,
    /// The size of the tree every inclusion proof is against: the last checkpoint's.
    pub tree_size: u64,
}

/// Why an export could not be written.
#[derive(Debug, Error)]
pub enum ExportError {
    /// The output refused the bytes.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    /// A record's leaf is not canonical JSON, so no verifier would accept it.
    #[error("record {index}: the leaf is {source}")]
    NotCanonical {
        /// The record's index.
        index: u64,
        /// What is wrong with the leaf.
        source: NotCanonical,
    },
    /// A record's leaf has no `event` member.
    #[error("record {index}: the leaf has no event")]
    NoEvent {
        /// The record's index.
        index: u64,
    },
    /// Lines were handed in out of the file's order.
    #[error(
        "a {what} line after a {after} line: an export holds checkpoints, then consistency proofs, then records"
    )]
    OutOfOrder {
        /// The line handed in.
        what: &'static str,
        /// The line it may not follow.
        after: &'static str,
    },
    /// Record indices must strictly increase.
    #[error("record index {index} after {previous}: indices must strictly increase")]
    IndexNotIncreasing {
        /// The index handed in.
        index: u64,
        /// The one before it.
        previous: u64,
    },
    /// Records must all be proven against the header's tree size.
    #[error("record {index} is proven against tree size {tree_size}, but the export is against {expected}")]
    TreeSizeMismatch {
        /// The record's index.
        index: u64,
        /// The size its proof is against.
        tree_size: u64,
        /// The size of the other records, or of the header.
        expected: u64,
    },
    /// An export needs a checkpoint, and a consistency proof between each two.
    #[error("{checkpoints} checkpoints need {} consistency proofs, {proofs} were written", checkpoints.saturating_sub(1))]
    Layout {
        /// Checkpoints written.
        checkpoints: u64,
        /// Consistency proofs written.
        proofs: u64,
    },
    /// A header value cannot stand on its trailer line.
    #[error(
        "the header's {field} {value:?} cannot stand in the trailer (empty, `*`, or a control character)"
    )]
    BadHeader {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// The trailer could not be signed.
    #[error("signing the trailer: {0}")]
    Sign(#[from] NoteError),
}

/// Where the writer is in the file's fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Checkpoints,
    Consistency,
    Records,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Checkpoints => "checkpoint",
            Part::Consistency => "consistency",
            Part::Records => "record",
        }
    }
}

/// Writes an export file, line by line, to `W` (give it a `BufWriter` for a file).
///
/// Call [`checkpoint`](Self::checkpoint) for each signed checkpoint (smallest first),
/// [`consistency`](Self::consistency) for each consecutive pair, [`record`](Self::record)
/// for each record in increasing index order, then [`finish`](Self::finish), which signs
/// the trailer. Calls out of that order are refused, so a writer that succeeds wrote a
/// file that `audit verify` reads.
#[derive(Debug)]
pub struct ExportWriter<W: Write> {
    out: W,
    part: Part,
    checkpoints: u64,
    proofs: u64,
    records: u64,
    last_index: Option<u64>,
    tree_size: Option<u64>,
    indices: Sha256,
    line: Vec<u8>,
}

impl<W: Write> ExportWriter<W> {
    /// A writer of an export to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            part: Part::Checkpoints,
            checkpoints: 0,
            proofs: 0,
            records: 0,
            last_index: None,
            tree_size: None,
            indices: Sha256::new(),
            line: Vec::with_capacity(4096),
        }
    }

    fn enter(&mut self, part: Part) -> Result<(), ExportError> {
        if (part as u8) < (self.part as u8) {
            return Err(ExportError::OutOfOrder { what: part.name(), after: self.part.name() });
        }
        self.part = part;
        Ok(())
    }

    /// Writes a signed checkpoint (the C2SP signed note, verbatim).
    pub fn checkpoint(&mut self, note: &str) -> Result<(), ExportError> {
        self.enter(Part::Checkpoints)?;
        self.line.clear();
        self.line.extend_from_slice(br#"{"type":"checkpoint","note":"#);
        push_string(&mut self.line, note);
        self.line.extend_from_slice(b"}\n");
        self.out.write_all(&self.line)?;
        self.checkpoints += 1;
        Ok(())
    }

    /// Writes the consistency proof from the tree of `from` leaves to the tree of `to`
    /// leaves (RFC 9162 §2.1.4), between two consecutive checkpoints.
    pub fn consistency(&mut self, from: u64, to: u64, proof: &[Hash]) -> Result<(), ExportError> {
        self.enter(Part::Consistency)?;
        self.line.clear();
        self.line.extend_from_slice(br#"{"type":"consistency","from":"#);
        push_u64(&mut self.line, from);
        self.line.extend_from_slice(br#","to":"#);
        push_u64(&mut self.line, to);
        self.line.extend_from_slice(br#","proof":"#);
        push_proof(&mut self.line, proof);
        self.line.extend_from_slice(b"}\n");
        self.out.write_all(&self.line)?;
        self.proofs += 1;
        Ok(())
    }

    /// Writes the record whose canonical bytes are `leaf`, at tree index `index`, with
    /// its inclusion proof in the tree of `tree_size` leaves. The line's `event` is the
    /// leaf's own `event` bytes.
    pub fn record(
        &mut self,
        index: u64,
        leaf: &[u8],
        tree_size: u64,
        proof: &[Hash],
    ) -> Result<(), ExportError> {
        self.enter(Part::Records)?;
        if let Some(previous) = self.last_index
            && index <= previous
        {
            return Err(ExportError::IndexNotIncreasing { index, previous });
        }
        if let Some(expected) = self.tree_size
            && tree_size != expected
        {
            return Err(ExportError::TreeSizeMismatch { index, tree_size, expected });
        }
        let view = leaf::scan(leaf).map_err(|source| ExportError::NotCanonical { index, source })?;
        let event = view.event.ok_or(ExportError::NoEvent { index })?;
        self.line.clear();
        self.line.extend_from_slice(br#"{"type":"record","index":"#);
        push_u64(&mut self.line, index);
        self.line.extend_from_slice(br#","leaf":""#);
        push_base64(&mut self.line, leaf);
        self.line.extend_from_slice(br#"","tree_size":"#);
        push_u64(&mut self.line, tree_size);
        self.line.extend_from_slice(br#","proof":"#);
        push_proof(&mut self.line, proof);
        self.line.extend_from_slice(br#","event":"#);
        self.line.extend_from_slice(&leaf[event]);
        self.line.extend_from_slice(b"}\n");
        self.out.write_all(&self.line)?;
        self.indices.update(index.to_be_bytes());
        self.last_index = Some(index);
        self.tree_size = Some(tree_size);
        self.records += 1;
        Ok(())
    }

    /// Signs and writes the trailer, flushes, and returns the output.
    pub fn finish(mut self, signer: &Signer, header: &ExportHeader) -> Result<W, ExportError> {
        if self.checkpoints == 0 || self.proofs + 1 != self.checkpoints {
            return Err(ExportError::Layout { checkpoints: self.checkpoints, proofs: self.proofs });
        }
        if let Some(tree_size) = self.tree_size
            && tree_size != header.tree_size
        {
            return Err(ExportError::TreeSizeMismatch {
                index: self.last_index.unwrap_or_default(),
                tree_size,
                expected: header.tree_size,
            });
        }
        let fields = [
            ("origin", Some(&header.origin)),
            ("tenant", header.tenant.as_ref()),
            ("from", header.from.as_ref()),
            ("to", header.to.as_ref()),
        ];
        for (field, value) in fields {
            if let Some(v) = value
                && !trailer::valid_value(v)
            {
                return Err(ExportError::BadHeader { field, value: v.clone() });
            }
        }
        let text = Trailer {
            origin: header.origin.clone(),
            tenant: header.tenant.clone(),
            from: header.from.clone(),
            to: header.to.clone(),
            tree_size: header.tree_size,
            records: self.records,
            indices: self.indices.finalize().into(),
        }
        .to_text();
        let note = signer.sign(&text)?;
        self.line.clear();
        self.line.extend_from_slice(br#"{"type":"export","note":"#);
        push_string(&mut self.line, &note);
        self.line.extend_from_slice(b"}\n");
        self.out.write_all(&self.line)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// A JSON string, escaped as serde_json escapes.
fn push_string(out: &mut Vec<u8>, s: &str) {
    // Writing a `&str` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    let start = out.len();
    let len = base64::encoded_len(data.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    let _ = BASE64.encode_slice(data, &mut out[start..]);
}

fn push_proof(out: &mut Vec<u8>, proof: &[Hash]) {
    out.push(b'[');
    for (i, h) in proof.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        push_base64(out, h);
        out.push(b'"');
    }
    out.push(b']');
}
