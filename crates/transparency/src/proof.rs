//! Stateless verification of inclusion and consistency proofs (RFC 9162 §2.1.3.2 and
//! §2.1.4.2), and the error type shared with [`Tree`](crate::Tree)'s proof generation.
//!
//! Before any hashing, a proof's length is checked against the one length the sizes
//! allow, so a malformed proof costs nothing and a wrong one is reported as such.
//!
//! A proof binds roots, not sizes: the same hashes can prove the same roots for another
//! tree size of the same shape (the proof from size 1 to 3 also verifies from 1 to 4).
//! Take sizes and roots together from signed [checkpoints](crate::Checkpoint).

use thiserror::Error;

use crate::hash::{Hash, Hex, node_hash};

/// Why a proof could not be produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree: a tree of `size` leaves has indices
    /// `0..size`.
    #[error("leaf index {index} is beyond the tree size {size}")]
    IndexBeyondSize {
        /// The leaf index asked about.
        index: u64,
        /// The tree size it was asked against.
        size: u64,
    },
    /// The proof does not have the one length that the index and sizes require.
    #[error("wrong proof length: got {got} hashes, the sizes require {want}")]
    WrongProofLength {
        /// Hashes in the proof given.
        got: usize,
        /// Hashes a valid proof for these sizes has.
        want: usize,
    },
    /// The second tree of a consistency check is smaller than the first.
    #[error("the new tree size {new} is smaller than the old tree size {old}")]
    SizeDecreased {
        /// The old (first) tree size.
        old: u64,
        /// The new (second) tree size.
        new: u64,
    },
    /// Consistency from the empty tree proves nothing (RFC 9162 requires 0 < old size).
    #[error("a consistency proof from the empty tree is meaningless (old size is 0)")]
    EmptyOldTree,
    /// Two trees of the same size are consistent only with an empty proof.
    #[error("the old and new trees have the same size, so the proof must be empty, but it has {len} hashes")]
    ProofNotEmpty {
        /// Hashes in the proof given.
        len: usize,
    },
    /// The root computed from the proof is not the root given for the (new) tree.
    #[error("root mismatch: the proof leads to {}, but the expected root is {}", Hex(.computed), Hex(.expected))]
    RootMismatch {
        /// The root the proof leads to.
        computed: Hash,
        /// The root the caller expected.
        expected: Hash,
    },
    /// The old tree's root computed from a consistency proof is not the one given.
    #[error("old root mismatch: the proof leads to {}, but the expected old root is {}", Hex(.computed), Hex(.expected))]
    OldRootMismatch {
        /// The old root the proof leads to.
        computed: Hash,
        /// The old root the caller expected.
        expected: Hash,
    },
    /// A tree was asked about a size it has not reached yet.
    #[error("tree size {size} is beyond the {tree_size} leaves the tree holds")]
    SizeBeyondTree {
        /// The size asked about.
        size: u64,
        /// The number of leaves in the tree.
        tree_size: u64,
    },
}

/// Number of bits needed to write `x` (0 for 0).
fn bit_len(x: u64) -> u32 {
    u64::BITS - x.leading_zeros()
}

/// The lengths of the two parts of an inclusion proof for leaf `index` in a tree of
/// `size` leaves (`index < size`): the `inner` part below the point where the paths to
/// `index` and to the last leaf diverge, and the `border` part above it. The proof has
/// `inner + border` hashes.
fn decompose(index: u64, size: u64) -> (usize, usize) {
    let inner = bit_len(index ^ (size - 1));
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner as usize, border as usize)
}

/// The length of a valid inclusion proof for `index < size`.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (inner, border) = decompose(index, size);
    inner + border
}

/// The length of a valid consistency proof for `0 < old < new`.
fn consistency_proof_len(old: u64, new: u64) -> usize {
    let (inner, border) = decompose(old - 1, new);
    let shift = old.trailing_zeros() as usize;
    let seed = usize::from(!old.is_power_of_two());
    seed + inner.saturating_sub(shift) + border
}

/// Computes the root of a tree of `size` leaves from the hash of leaf `index` and its
/// inclusion proof (RFC 9162 §2.1.3.2, without the final comparison).
///
/// Errors if `index >= size` or if the proof does not have the length these require.
pub fn root_from_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexBeyondSize { index, size });
    }
    let want = inclusion_proof_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength { got: proof.len(), want });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongProofLength { got: proof.len(), want });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongProofLength { got: proof.len(), want });
    }
    Ok(r)
}

/// Verifies that the leaf with hash `leaf_hash` is at `index` in the tree of `size`
/// leaves whose root is `root` (RFC 9162 §2.1.3.2).
///
/// `proof` lists sibling hashes from the leaf up, as RFC 9162 and
/// [`Tree::inclusion_proof`](crate::Tree::inclusion_proof) produce them.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion(leaf_hash, index, size, proof)?;
    if computed != *root {
        return Err(ProofError::RootMismatch { computed, expected: *root });
    }
    Ok(())
}

/// Verifies that the tree of `size1` leaves with root `root1` is a prefix of the tree of
/// `size2` leaves with root `root2` (RFC 9162 §2.1.4.2).
///
/// Equal sizes need an empty proof and equal roots. Like the transparency-dev reference
/// implementation, a proof from the empty tree (`size1 == 0`) is rejected: it would prove
/// nothing, and a caller asking for it has a bug.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size2 < size1 {
        return Err(ProofError::SizeDecreased { old: size1, new: size2 });
    }
    if size1 == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::ProofNotEmpty { len: proof.len() });
        }
        if root1 != root2 {
            return Err(ProofError::RootMismatch { computed: *root1, expected: *root2 });
        }
        return Ok(());
    }
    let want = consistency_proof_len(size1, size2);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength { got: proof.len(), want });
    }
    let wrong_length = ProofError::WrongProofLength { got: proof.len(), want };

    // Step 2: when the old tree is a perfect subtree of the new one, its root is the first
    // node of the path and the proof leaves it out.
    let (seed, rest) = if size1.is_power_of_two() {
        (root1, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (first, rest),
            None => return Err(wrong_length),
        }
    };
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if snode == 0 {
            return Err(wrong_length);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(wrong_length);
    }
    if fr != *root1 {
        return Err(ProofError::OldRootMismatch { computed: fr, expected: *root1 });
    }
    if sr != *root2 {
        return Err(ProofError::RootMismatch { computed: sr, expected: *root2 });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    #[test]
    fn single_leaf_tree_root_is_the_leaf() {
        let h = leaf_hash(b"data");
        assert_eq!(verify_inclusion(&h, 0, 1, &[], &h), Ok(()));
        assert_eq!(
            verify_inclusion(&h, 1, 1, &[], &h),
            Err(ProofError::IndexBeyondSize { index: 1, size: 1 })
        );
        assert_eq!(
            verify_inclusion(&h, 0, 1, &[h], &h),
            Err(ProofError::WrongProofLength { got: 1, want: 0 })
        );
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        let h = leaf_hash(b"x");
        for (index, size) in [(0, u64::MAX), (u64::MAX - 1, u64::MAX), (1 << 62, 1 << 63)] {
            let want = inclusion_proof_len(index, size);
            assert!(want <= 64, "{want}");
            let proof = vec![h; want];
            assert!(matches!(
                verify_inclusion(&h, index, size, &proof, &h),
                Err(ProofError::RootMismatch { .. })
            ));
        }
        for (old, new) in [(1, u64::MAX), (u64::MAX - 1, u64::MAX), (1 << 63, u64::MAX)] {
            let want = consistency_proof_len(old, new);
            assert!(want <= 65, "{want}");
            let proof = vec![h; want];
            assert!(verify_consistency(old, new, &proof, &h, &h).is_err());
        }
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let e = ProofError::WrongProofLength { got: 4, want: 3 };
        assert_eq!(e.to_string(), "wrong proof length: got 4 hashes, the sizes require 3");
        let e = ProofError::SizeDecreased { old: 5, new: 2 };
        assert_eq!(e.to_string(), "the new tree size 2 is smaller than the old tree size 5");
    }
}
