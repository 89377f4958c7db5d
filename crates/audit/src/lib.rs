//! Offline audit of gigawatt's event log: the export file and its verifier.
//!
//! Why this crate exists: a customer's auditor (HDS, SecNumCloud, SOC 2) must be able to
//! check, without trusting us or our servers, that the control plane's record of what it
//! did with their data is complete and unaltered, and that every placement of their
//! classified data obeyed the residency rules in force. Our event log is an RFC 6962 /
//! RFC 9162 Merkle tree whose head we sign as a C2SP checkpoint — the standards of
//! Certificate Transparency — so the auditor verifies it the way browsers verify
//! certificate logs: with signatures, inclusion and consistency proofs, offline.
//!
//! `docs/audit.md` is the specification. This crate implements both ends of it:
//!
//! * [`ExportWriter`] writes the export file: signed checkpoints, the consistency proofs
//!   between them, each record's canonical leaf with its inclusion proof, and a signed
//!   trailer that commits to exactly which records the file holds ([`ExportHeader`]).
//! * [`verify()`] reads one and runs every check — integrity (signatures, proofs,
//!   canonical leaves, the trailer) and residency compliance — stopping at the first
//!   failure, and returns a [`Report`] for people (`Display`) and machines (`serde`).
//!   [`Verification`] does the same fed line by line.
//!
//! The crate does no I/O beyond the reader and writer it is handed, reads no clock, and
//! never panics on its input. Verification is one pass over the file, about 1 GB (some
//! 600,000 records) a second on one core (`tests/throughput.rs`): lines are read where
//! the reader buffered them, leaves are checked for canonical form without building a
//! JSON tree (the reference check alone would cap it near 150,000 a second), consecutive
//! inclusion proofs share the path they have in common, and placements like one already
//! judged under the same rules are not decoded again.
//!
//! Modules: [`export`] (the writer), [`verify`](mod@verify) (the verifier and its report);
//! inside, `line` reads a line, `b64` decodes base64, `leaf` checks a leaf, `inclusion`
//! checks proofs, `compliance` judges placements, and `trailer` is the trailer's text.

pub mod export;
pub mod verify;

mod b64;
mod compliance;
mod inclusion;
mod leaf;
mod line;
mod trailer;

pub use export::{ExportError, ExportHeader, ExportWriter};
pub use leaf::NotCanonical;
pub use verify::{Check, Failure, MAX_LINE, Report, Verification, verify};
