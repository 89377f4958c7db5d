//! Proof generation over any source of perfect-subtree hashes ([`Subtrees`]: [`root_at`],
//! [`inclusion_proof`], [`consistency_proof`], RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1),
//! stateless verification of inclusion and consistency proofs (RFC 9162 §2.1.3.2 and
//! §2.1.4.2), and the error type they share.
//!
//! Generation needs only one primitive: the hash of a complete perfect subtree. Any
//! subtree RFC 9162's recursion reaches — `D[a:b]` with `a` aligned to a power of two at
//! least `b - a` — is a run of at most 64 perfect subtrees, one per set bit of `b - a`,
//! and a root or proof touches O(log n) such subtrees. So the same code serves
//! [`Tree`](crate::Tree), which keeps every perfect subtree in memory, and
//! [`Prover`](crate::Prover), which keeps only those of 256 leaves and more and is handed
//! the few leaf blocks a proof reaches into (see [`pruned`](crate::pruned)).
//!
//! Before any hashing, a proof's length is checked against the one length the sizes
//! allow, so a malformed proof costs nothing and a wrong one is reported as such.
//!
//! A proof binds roots, not sizes: the same hashes can prove the same roots for another
//! tree size of the same shape (the proof from size 1 to 3 also verifies from 1 to 4).
//! Take sizes and roots together from signed [checkpoints](crate::Checkpoint).

use thiserror::Error;

use crate::hash::{EMPTY_ROOT, Hash, Hex, node_hash};

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
    /// A tree was asked about a size it has not reached yet (or, from
    /// [`Subtrees::perfect`], about a subtree ending at `size` that is not complete yet).
    #[error("tree size {size} is beyond the {tree_size} leaves the tree holds")]
    SizeBeyondTree {
        /// The size asked about.
        size: u64,
        /// The number of leaves in the tree.
        tree_size: u64,
    },
    /// A proof source does not hold the hash of this perfect subtree in memory: it lies
    /// inside a leaf block of a [`PrunedTree`](crate::PrunedTree) that was not fetched.
    /// [`PrunedTree::blocks_needed`](crate::PrunedTree::blocks_needed) lists the blocks
    /// to fetch.
    #[error("the hash of subtree {index} at level {level} is not available: fetch its block first")]
    Missing {
        /// The subtree's level (it spans `2^level` leaves).
        level: u32,
        /// The subtree's index at that level (it starts at leaf `index·2^level`).
        index: u64,
    },
    /// [`PrunedTree::from_parts`](crate::PrunedTree::from_parts) was given a partial
    /// block that is not partial: a block holds fewer than
    /// [`BLOCK_SIZE`](crate::pruned::BLOCK_SIZE) leaves until it is complete.
    #[error("the partial block has {len} leaf hashes, but it must have fewer than {max}")]
    TailTooLong {
        /// Leaf hashes given for the partial block.
        len: usize,
        /// The block size; the partial block must be shorter.
        max: usize,
    },
    /// Leaf hashes were supplied for a block that is not a complete block of the tree.
    #[error("block {block} is not a complete block: the tree has {complete} complete blocks")]
    NoSuchBlock {
        /// The block number given.
        block: u64,
        /// The number of complete blocks in the tree.
        complete: u64,
    },
    /// A fetched block does not have exactly one leaf hash per leaf of the block.
    #[error("block {block} has {len} leaf hashes, but a complete block has {want}")]
    BlockLength {
        /// The block number.
        block: u64,
        /// Leaf hashes given.
        len: usize,
        /// Leaf hashes a complete block has.
        want: usize,
    },
    /// A fetched block's leaf hashes do not hash to the block root the tree holds: the
    /// stored leaf hashes were altered (or belong to another block).
    #[error("block {block}'s leaf hashes hash to {}, but the tree holds the block root {}", Hex(.computed), Hex(.expected))]
    BlockRootMismatch {
        /// The block number.
        block: u64,
        /// The root the fetched leaf hashes hash to.
        computed: Hash,
        /// The block root held in memory.
        expected: Hash,
    },
}

/// A source of hashes of complete perfect subtrees, from which [`root_at`],
/// [`inclusion_proof`] and [`consistency_proof`] build roots and proofs for any size up
/// to [`size`](Subtrees::size).
///
/// Implemented by [`Tree`](crate::Tree) (every subtree in memory) and
/// [`Prover`](crate::Prover) (the subtrees of a [`PrunedTree`](crate::PrunedTree) plus
/// some fetched leaf blocks).
pub trait Subtrees {
    /// The number of leaves: roots and proofs can be asked for any size up to this.
    fn size(&self) -> u64;

    /// `perfect(level, index)` is MTH of leaves `index·2^level .. (index+1)·2^level`.
    ///
    /// Errors with [`ProofError::SizeBeyondTree`] when that subtree is not complete at
    /// [`size`](Subtrees::size), and with [`ProofError::Missing`] when the source does
    /// not hold it (it never panics).
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, ProofError>;
}

/// One past the last leaf of perfect subtree `index` at `level`, if that fits in a `u64`.
pub(crate) fn subtree_end(level: u32, index: u64) -> Option<u64> {
    let count = index.checked_add(1)?;
    if level >= u64::BITS || count > u64::MAX >> level {
        return None;
    }
    Some(count << level)
}

/// The error for a perfect subtree that is not complete in a tree of `tree_size` leaves.
pub(crate) fn incomplete(level: u32, index: u64, tree_size: u64) -> ProofError {
    ProofError::SizeBeyondTree { size: subtree_end(level, index).unwrap_or(u64::MAX), tree_size }
}

fn check_size<S: Subtrees + ?Sized>(s: &S, size: u64) -> Result<(), ProofError> {
    let tree_size = s.size();
    if size > tree_size {
        return Err(ProofError::SizeBeyondTree { size, tree_size });
    }
    Ok(())
}

/// The largest power of two strictly below `n` (`n >= 2`): where RFC 9162 splits a tree
/// of `n` leaves.
pub(crate) fn split_point(n: u64) -> u64 {
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH(D[start:end]) for a subtree that RFC 9162's recursion can reach: `start` is a
/// multiple of the largest power of two not above `end - start`, and `end` is at most
/// the tree size. Hashes the perfect subtrees the range splits into, right to left.
fn range_hash<S: Subtrees + ?Sized>(s: &S, start: u64, end: u64) -> Result<Hash, ProofError> {
    let len = end - start;
    let mut acc: Option<Hash> = None;
    let mut right = end;
    for level in 0..u64::BITS {
        let width = 1u64 << level;
        if len & width == 0 {
            continue;
        }
        right -= width;
        let chunk = s.perfect(level, right >> level)?;
        acc = Some(match acc {
            None => chunk,
            Some(rest) => node_hash(&chunk, &rest),
        });
    }
    Ok(acc.unwrap_or(EMPTY_ROOT))
}

/// The root of the tree of `size` leaves ([`EMPTY_ROOT`] for 0), RFC 9162 §2.1.1 MTH.
/// O(log n) calls to [`Subtrees::perfect`].
pub fn root_at<S: Subtrees + ?Sized>(s: &S, size: u64) -> Result<Hash, ProofError> {
    check_size(s, size)?;
    range_hash(s, 0, size)
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1
/// `PATH`), sibling hashes from the leaf up. O(log n).
pub fn inclusion_proof<S: Subtrees + ?Sized>(s: &S, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    check_size(s, size)?;
    if index >= size {
        return Err(ProofError::IndexBeyondSize { index, size });
    }
    // Walk PATH(m, D[lo:hi]) from the root down; each step contributes the sibling
    // subtree, which RFC 9162 appends after the deeper part of the path.
    let mut proof = Vec::new();
    let (mut lo, mut hi, mut m) = (0, size, index);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if m < k {
            proof.push(range_hash(s, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(s, lo, lo + k)?);
            lo += k;
            m -= k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The consistency proof from the tree of `old` leaves to the tree of `new` leaves
/// (RFC 9162 §2.1.4.1 `PROOF`). Requires `0 < old <= new <= size()`; equal sizes give
/// the empty proof. O(log n).
pub fn consistency_proof<S: Subtrees + ?Sized>(s: &S, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
    check_size(s, new)?;
    if new < old {
        return Err(ProofError::SizeDecreased { old, new });
    }
    if old == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    // Walk SUBPROOF(m, D[lo:hi], b) from the root down, as for the inclusion proof.
    let mut proof = Vec::new();
    let (mut lo, mut hi, mut m, mut whole_old_tree) = (0, new, old, true);
    while m != hi - lo {
        let k = split_point(hi - lo);
        if m <= k {
            proof.push(range_hash(s, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(s, lo, lo + k)?);
            lo += k;
            m -= k;
            whole_old_tree = false;
        }
    }
    if !whole_old_tree {
        // The old tree's last subtree, which the verifier cannot know on its own.
        proof.push(range_hash(s, lo, hi)?);
    }
    proof.reverse();
    Ok(proof)
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
    fn split_points() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn subtree_ends() {
        assert_eq!(subtree_end(0, 0), Some(1));
        assert_eq!(subtree_end(8, 3), Some(1024));
        assert_eq!(subtree_end(63, 0), Some(1 << 63));
        assert_eq!(subtree_end(63, 1), None);
        assert_eq!(subtree_end(64, 0), None);
        assert_eq!(subtree_end(0, u64::MAX), None);
        assert_eq!(subtree_end(u32::MAX, 0), None);
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let e = ProofError::Missing { level: 3, index: 17 };
        assert_eq!(
            e.to_string(),
            "the hash of subtree 17 at level 3 is not available: fetch its block first"
        );
        let e = ProofError::WrongProofLength { got: 4, want: 3 };
        assert_eq!(e.to_string(), "wrong proof length: got 4 hashes, the sizes require 3");
        let e = ProofError::SizeDecreased { old: 5, new: 2 };
        assert_eq!(e.to_string(), "the new tree size 2 is smaller than the old tree size 5");
    }
}
