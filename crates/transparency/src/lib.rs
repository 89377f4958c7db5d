//! Transparency-log primitives: RFC 6962 / RFC 9162 Merkle trees, their proofs, and
//! C2SP signed checkpoints.
//!
//! Why this crate exists: gigawatt's event log is the record of every decision the
//! control plane took (admissions, placements, preemptions, power caps). To let a customer
//! or an auditor check that nobody rewrote that history, the log is committed to an
//! **RFC 6962 Merkle tree** — the same structure Certificate Transparency, the Go checksum
//! database and Sigstore use — and its head is published as a **C2SP `tlog-checkpoint`**
//! signed with Ed25519 as a C2SP `signed-note`. Because every format here is a published
//! standard, auditors verify our log with off-the-shelf tools (the transparency-dev Go
//! libraries, witnesses, monitors) rather than with code we wrote.
//!
//! The crate does no I/O, reads no clock and draws no randomness: callers supply bytes,
//! seeds and keys, and get back hashes, proofs, notes and typed errors. No function panics
//! on untrusted input.
//!
//! * [`hash`]: leaf and node hashing ([`leaf_hash`], [`node_hash`], [`EMPTY_ROOT`]).
//! * [`tree`]: [`Tree`], an append-only tree that answers roots and proofs for any past
//!   size in O(log n), storing about two hashes per leaf.
//! * [`pruned`]: [`PrunedTree`], the same tree keeping in memory only the roots of
//!   complete 256-leaf blocks and the subtrees above them, plus the last partial block:
//!   about two hashes per 256 leaves, so the server holds the tree of 10^8 event records
//!   in about 25 MB (a [`Tree`] would need 6.4 GB) while the leaf hashes stay in the
//!   database. Roots and proofs for past sizes go through a [`Prover`], handed the one or
//!   two blocks of leaf hashes a proof touches ([`PrunedTree::blocks_needed`]), fetched
//!   from storage and checked against the block roots in memory.
//! * [`proof`]: proof generation over any source of perfect-subtree hashes ([`Subtrees`]:
//!   [`root_at`], [`inclusion_proof`], [`consistency_proof`], shared by [`Tree`] and
//!   [`Prover`]), and stateless [`verify_inclusion`] and [`verify_consistency`] (RFC 9162
//!   §2.1.3.2 and §2.1.4.2).
//! * [`note`]: C2SP signed notes with Ed25519 ([`Signer`], [`Verifier`], [`open`]).
//! * [`checkpoint`]: the C2SP checkpoint body ([`Checkpoint`]).
//!
//! ```
//! use gigawatt_transparency::{Checkpoint, Signer, Tree, Verifier, open, verify_inclusion, leaf_hash};
//!
//! let mut tree = Tree::new();
//! for event in ["admit job-1", "place job-1 on node-7", "cap rack-3 at 120 kW"] {
//!     tree.push(event.as_bytes());
//! }
//! let root = tree.root();
//! let proof = tree.inclusion_proof(1, tree.size()).unwrap();
//! verify_inclusion(&leaf_hash(b"place job-1 on node-7"), 1, 3, &proof, &root).unwrap();
//!
//! let signer = Signer::from_seed("example.com/log", [7; 32]).unwrap();
//! let checkpoint = Checkpoint { origin: "example.com/log".into(), size: 3, root, extensions: vec![] };
//! let note = signer.sign(&checkpoint.to_text().unwrap()).unwrap();
//!
//! let verifier: Verifier = signer.verifier().to_string().parse().unwrap();
//! let opened = open(note.as_bytes(), &[verifier]).unwrap();
//! assert_eq!(Checkpoint::parse(&opened.text).unwrap(), checkpoint);
//! ```

pub mod checkpoint;
pub mod hash;
pub mod note;
pub mod proof;
pub mod pruned;
pub mod tree;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use hash::{EMPTY_ROOT, Hash, empty_root, leaf_hash, node_hash};
pub use note::{KeyError, MAX_SIGNATURES, NoteError, OpenedNote, Signer, Verifier, ed25519_key_id, open};
pub use proof::{
    ProofError, Subtrees, consistency_proof, inclusion_proof, root_at, root_from_inclusion,
    verify_consistency, verify_inclusion,
};
pub use pruned::{BLOCK_LEVEL, BLOCK_SIZE, Prover, PrunedTree};
pub use tree::Tree;
