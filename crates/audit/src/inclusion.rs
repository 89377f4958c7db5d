//! Inclusion proofs against one tree head, many of them in index order, fast.
//!
//! Every record of an export is proven against the same signed root. Checked one by one,
//! each proof costs a hash per level (20 for a million leaves), about a microsecond.
//! But once a proof has led to the signed root, every node it computed and every hash it
//! supplied is known to be *the* hash of that subtree (short of a SHA-256 collision). The
//! next leaf's path joins the previous one after a level or two; from there, its proof
//! must repeat the hashes already authenticated, which is a comparison, not a hash. So
//! [`Inclusion`] keeps the last authenticated path and, for the next proof, hashes only
//! up to where the paths meet and compares the rest — the same verdict as
//! [`gigawatt_transparency::verify_inclusion`], at a tenth of the cost. Whenever the
//! short way cannot decide (no meeting point, a hash that differs), the full RFC 9162
//! algorithm decides, and errors are always the reference's.

use gigawatt_transparency::{Hash, ProofError, node_hash, verify_inclusion};
use thiserror::Error;

/// Why an inclusion proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum InclusionError {
    /// A proof element is not the base64 of 32 bytes.
    #[error("proof hash {position} is not the base64 of 32 bytes")]
    BadHash {
        /// Its position in the proof, from 0.
        position: usize,
    },
    /// The proof does not lead to the root.
    #[error("{0}")]
    Proof(#[from] ProofError),
}

/// The base64 text of a hash: 44 characters with padding.
const TEXT_LEN: usize = 44;

/// Decodes the base64 text of a hash (strict: equal hashes have equal text).
pub(crate) fn decode_hash(text: &[u8]) -> Option<Hash> {
    crate::b64::decode_hash(text)
}

/// A set of leaves `lo..hi` (u128 so that no arithmetic on hostile sizes overflows).
type Span = (u128, u128);

/// One level of an authenticated path: the node, and the sibling the proof supplied.
#[derive(Debug, Clone, Copy)]
struct Step {
    node: Span,
    node_hash: Hash,
    sibling: Span,
    sibling_hash: Hash,
    /// The sibling's base64 text as it appeared in a proof, when it did, to compare
    /// later proofs' text without decoding them.
    sibling_text: Option<[u8; TEXT_LEN]>,
}

/// Verifies inclusion proofs against one tree head, remembering the last path.
#[derive(Debug, Clone)]
pub(crate) struct Inclusion {
    size: u64,
    root: Hash,
    /// The last authenticated path, leaf level first.
    path: Vec<Step>,
    /// The path being computed.
    scratch: Vec<Step>,
}

impl Inclusion {
    /// Proofs against the tree of `size` leaves whose root is `root`.
    pub(crate) fn new(size: u64, root: Hash) -> Self {
        Self { size, root, path: Vec::with_capacity(64), scratch: Vec::with_capacity(64) }
    }

    /// Verifies that `leaf` (a leaf hash) is at `index`, given the proof's base64 texts.
    pub(crate) fn verify(&mut self, leaf: &Hash, index: u64, proof: &[&[u8]]) -> Result<(), InclusionError> {
        match self.walk(leaf, index, proof) {
            Some(()) => Ok(()),
            None => self.reference(leaf, index, proof),
        }
    }

    /// The short way; `None` when it cannot vouch for the proof.
    fn walk(&mut self, leaf: &Hash, index: u64, proof: &[&[u8]]) -> Option<()> {
        if index >= self.size {
            return None;
        }
        self.scratch.clear();
        let size = u128::from(self.size);
        let (mut fnode, mut snode) = (index, self.size - 1);
        let mut level: u32 = 0;
        let mut r = *leaf;
        let mut span: Span = (u128::from(index), u128::from(index) + 1);
        for (t, text) in proof.iter().enumerate() {
            if let Some(done) = self.meets_path(t, span, &r, proof) {
                return done;
            }
            if snode == 0 {
                return None;
            }
            let p = decode_hash(text)?;
            let sibling;
            let parent;
            if fnode & 1 == 1 || fnode == snode {
                if fnode & 1 == 0 {
                    while fnode & 1 == 0 && fnode != 0 {
                        fnode >>= 1;
                        snode >>= 1;
                        level += 1;
                    }
                }
                let lo = (u128::from(fnode).checked_sub(1)?) << level;
                sibling = (lo, u128::from(fnode) << level);
                parent = (lo, span.1);
                self.scratch.push(step(span, r, sibling, p, text));
                r = node_hash(&p, &r);
            } else {
                let hi = ((u128::from(fnode) + 2) << level).min(size);
                sibling = ((u128::from(fnode) + 1) << level, hi);
                parent = (span.0, hi);
                self.scratch.push(step(span, r, sibling, p, text));
                r = node_hash(&r, &p);
            }
            span = parent;
            fnode >>= 1;
            snode >>= 1;
            level += 1;
        }
        if snode != 0 || r != self.root {
            return None;
        }
        std::mem::swap(&mut self.path, &mut self.scratch);
        Some(())
    }

    /// At step `t` of a walk, where the node `span` has hash `r`: whether the node is on
    /// (or beside) the last authenticated path, and if so whether the rest of `proof`
    /// repeats it (`Some(Some(()))`) or not (`Some(None)`: let the reference decide).
    fn meets_path(&mut self, t: usize, span: Span, r: &Hash, proof: &[&[u8]]) -> Option<Option<()>> {
        let k = self.path.iter().position(|s| s.node == span || s.sibling == span)?;
        let s = self.path[k];
        let rest = &proof[t..];
        if rest.len() != self.path.len() - k {
            return Some(None);
        }
        if s.node == span {
            // On the path: the rest of the proof is the path's siblings from here.
            if s.node_hash != *r || !self.repeats(rest, k) {
                return Some(None);
            }
            self.path.splice(0..k, self.scratch.drain(..));
        } else {
            // Beside it: the proof's next hash is the path's node here, then its siblings.
            if s.sibling_hash != *r
                || decode_hash(rest[0]) != Some(s.node_hash)
                || !self.repeats(&rest[1..], k + 1)
            {
                return Some(None);
            }
            self.path[k] = step(span, *r, s.node, s.node_hash, rest[0]);
            self.path.splice(0..k, self.scratch.drain(..));
        }
        Some(Some(()))
    }

    /// Whether `texts` are the siblings of the path from level `k` up.
    fn repeats(&self, texts: &[&[u8]], k: usize) -> bool {
        texts.iter().zip(&self.path[k..]).all(|(text, s)| {
            let same_text = match (&s.sibling_text, <&[u8; TEXT_LEN]>::try_from(*text)) {
                (Some(known), Ok(text)) => known == text,
                _ => false,
            };
            same_text || decode_hash(text) == Some(s.sibling_hash)
        })
    }

    /// The reference algorithm, for proofs the short way could not vouch for.
    fn reference(&mut self, leaf: &Hash, index: u64, proof: &[&[u8]]) -> Result<(), InclusionError> {
        let hashes = proof
            .iter()
            .enumerate()
            .map(|(position, text)| decode_hash(text).ok_or(InclusionError::BadHash { position }))
            .collect::<Result<Vec<Hash>, _>>()?;
        verify_inclusion(leaf, index, self.size, &hashes, &self.root)?;
        // Valid after all: start afresh from the next proof.
        self.path.clear();
        Ok(())
    }
}

fn step(node: Span, node_hash: Hash, sibling: Span, sibling_hash: Hash, text: &[u8]) -> Step {
    Step { node, node_hash, sibling, sibling_hash, sibling_text: text.try_into().ok() }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use gigawatt_transparency::{Tree, leaf_hash};

    use super::*;

    fn texts(proof: &[Hash]) -> Vec<Vec<u8>> {
        proof.iter().map(|h| BASE64.encode(h).into_bytes()).collect()
    }

    fn refs(texts: &[Vec<u8>]) -> Vec<&[u8]> {
        texts.iter().map(Vec::as_slice).collect()
    }

    #[test]
    fn agrees_with_the_reference_for_every_leaf_of_many_sizes() {
        let mut tree = Tree::new();
        for size in 1u64..=70 {
            tree.push(&size.to_be_bytes());
            let root = tree.root();
            // In order, every other leaf, and in reverse: the cache meets paths at
            // every level.
            for order in
                [(0..size).collect::<Vec<_>>(), (0..size).step_by(3).collect(), (0..size).rev().collect()]
            {
                let mut inc = Inclusion::new(size, root);
                for &i in &order {
                    let leaf = leaf_hash(&(i + 1).to_be_bytes());
                    let proof = tree.inclusion_proof(i, size).unwrap();
                    assert_eq!(inc.verify(&leaf, i, &refs(&texts(&proof))), Ok(()), "{i} of {size}");
                    // Every wrong variant fails, and does not poison the cache.
                    let wrong_leaf = leaf_hash(b"other");
                    assert!(inc.verify(&wrong_leaf, i, &refs(&texts(&proof))).is_err());
                    for j in 0..proof.len() {
                        let mut bad = proof.clone();
                        bad[j][0] ^= 1;
                        assert!(
                            inc.verify(&leaf, i, &refs(&texts(&bad))).is_err(),
                            "{i} of {size}, hash {j}"
                        );
                    }
                    if !proof.is_empty() {
                        assert!(inc.verify(&leaf, i, &refs(&texts(&proof[1..]))).is_err());
                    }
                    let mut longer = proof.clone();
                    longer.push(root);
                    assert!(inc.verify(&leaf, i, &refs(&texts(&longer))).is_err());
                    if i + 1 < size {
                        assert!(inc.verify(&leaf, i + 1, &refs(&texts(&proof))).is_err());
                    }
                }
            }
        }
    }

    #[test]
    fn huge_indices_and_sizes_do_not_overflow() {
        let h = [7u8; 32];
        for (index, size) in [(u64::MAX - 1, u64::MAX), (0, u64::MAX), (1 << 63, u64::MAX), (5, 3)] {
            let mut inc = Inclusion::new(size, h);
            for len in [0, 1, 63, 64, 65] {
                assert!(inc.verify(&h, index, &refs(&texts(&vec![h; len]))).is_err());
            }
        }
    }
}
