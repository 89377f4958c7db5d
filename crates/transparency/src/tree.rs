//! An append-only Merkle tree that answers roots and proofs for any size it has reached.
//!
//! Storage is the "level by level" layout of transparency-dev's compact ranges and tiles:
//! level 0 holds every leaf hash, and level `k` holds the hash of every *complete* perfect
//! subtree of `2^k` leaves, left to right. Level `k` has `n >> k` entries, so the whole
//! tree is about `2n` hashes (64 bytes per leaf: 640 MB for 10 million leaves).
//!
//! Any subtree RFC 9162 talks about — `D[a:b]` with `a` aligned to a power of two at
//! least `b - a` — is a run of at most 64 stored perfect subtrees, one per set bit of
//! `b - a`. Hashing them together costs O(log n), and a root or proof touches O(log n)
//! such subtrees, so nothing ever walks the leaves.

use crate::hash::{EMPTY_ROOT, Hash, leaf_hash, node_hash};
use crate::proof::ProofError;

/// An append-only RFC 6962 Merkle tree holding its leaf hashes and all complete
/// perfect-subtree hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// `levels[k][i]` is the hash of leaves `i·2^k .. (i+1)·2^k`.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty tree with room for `leaves` leaves before it reallocates.
    pub fn with_capacity(leaves: usize) -> Self {
        let mut levels = Vec::new();
        let mut n = leaves;
        while n > 0 {
            levels.push(Vec::with_capacity(n));
            n /= 2;
        }
        Self { levels }
    }

    /// Appends a leaf (its bytes, hashed as an RFC 6962 leaf) and returns its index.
    pub fn push(&mut self, leaf: &[u8]) -> u64 {
        self.push_leaf_hash(leaf_hash(leaf))
    }

    /// Appends a leaf by its already computed leaf hash and returns its index.
    ///
    /// Amortised O(1): each push completes on average one perfect subtree.
    pub fn push_leaf_hash(&mut self, hash: Hash) -> u64 {
        let index = self.size();
        let mut carry = hash;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(carry);
            let len = row.len();
            if len % 2 == 1 {
                break;
            }
            carry = node_hash(&row[len - 2], &row[len - 1]);
            level += 1;
        }
        index
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.size() == 0
    }

    /// The hash of leaf `index`, if the tree has it.
    pub fn leaf_hash(&self, index: u64) -> Option<Hash> {
        let index = usize::try_from(index).ok()?;
        self.levels.first()?.get(index).copied()
    }

    /// The root of the tree at its current size ([`EMPTY_ROOT`] when empty).
    pub fn root(&self) -> Hash {
        self.range_hash(0, self.size())
    }

    /// The root the tree had when it held `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(self.range_hash(0, size))
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162
    /// §2.1.3.1 `PATH`), sibling hashes from the leaf up. O(log n).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
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
                proof.push(self.range_hash(lo + k, hi));
                hi = lo + k;
            } else {
                proof.push(self.range_hash(lo, lo + k));
                lo += k;
                m -= k;
            }
        }
        proof.reverse();
        Ok(proof)
    }

    /// The consistency proof from the tree of `old` leaves to the tree of `new` leaves
    /// (RFC 9162 §2.1.4.1 `PROOF`). Requires `0 < old <= new <= size()`; equal sizes
    /// give the empty proof. O(log n).
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(new)?;
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
                proof.push(self.range_hash(lo + k, hi));
                hi = lo + k;
            } else {
                proof.push(self.range_hash(lo, lo + k));
                lo += k;
                m -= k;
                whole_old_tree = false;
            }
        }
        if !whole_old_tree {
            // The old tree's last subtree, which the verifier cannot know on its own.
            proof.push(self.range_hash(lo, hi));
        }
        proof.reverse();
        Ok(proof)
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        let tree_size = self.size();
        if size > tree_size {
            return Err(ProofError::SizeBeyondTree { size, tree_size });
        }
        Ok(())
    }

    /// MTH(D[start:end]) for a subtree that RFC 9162's recursion can reach: `start` is a
    /// multiple of the largest power of two not above `end - start`, and `end` is at most
    /// the tree size. Hashes the perfect subtrees the range splits into, right to left.
    fn range_hash(&self, start: u64, end: u64) -> Hash {
        let len = end - start;
        let mut acc: Option<Hash> = None;
        let mut right = end;
        for level in 0..u64::BITS {
            let width = 1u64 << level;
            if len & width == 0 {
                continue;
            }
            right -= width;
            let chunk = self.perfect(level, right >> level);
            acc = Some(match acc {
                None => chunk,
                Some(rest) => node_hash(&chunk, &rest),
            });
        }
        acc.unwrap_or(EMPTY_ROOT)
    }

    /// The stored hash of the `index`-th perfect subtree of `2^level` leaves. Callers only
    /// ask for subtrees inside the tree, which are complete and therefore stored.
    fn perfect(&self, level: u32, index: u64) -> Hash {
        // Lossless: the index is below a length of a Vec.
        self.levels[level as usize][index as usize]
    }
}

/// The largest power of two strictly below `n` (`n >= 2`): where RFC 9162 splits a tree
/// of `n` leaves.
fn split_point(n: u64) -> u64 {
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn storage_is_two_hashes_per_leaf() {
        let mut tree = Tree::new();
        for i in 0u32..1000 {
            tree.push(&i.to_be_bytes());
        }
        let stored: usize = tree.levels.iter().map(Vec::len).sum();
        assert!(stored < 2 * 1000, "{stored}");
        // Level k holds exactly the complete subtrees.
        for (k, row) in tree.levels.iter().enumerate() {
            assert_eq!(row.len(), 1000 >> k);
        }
    }

    #[test]
    fn requests_beyond_the_tree_are_errors() {
        let mut tree = Tree::new();
        tree.push(b"a");
        tree.push(b"b");
        assert_eq!(tree.root_at(3), Err(ProofError::SizeBeyondTree { size: 3, tree_size: 2 }));
        assert_eq!(tree.inclusion_proof(2, 2), Err(ProofError::IndexBeyondSize { index: 2, size: 2 }));
        assert_eq!(tree.consistency_proof(0, 2), Err(ProofError::EmptyOldTree));
        assert_eq!(tree.consistency_proof(2, 1), Err(ProofError::SizeDecreased { old: 2, new: 1 }));
        assert_eq!(tree.consistency_proof(2, 2), Ok(vec![]));
        assert_eq!(tree.root_at(0), Ok(EMPTY_ROOT));
        assert_eq!(tree.leaf_hash(1), Some(leaf_hash(b"b")));
        assert_eq!(tree.leaf_hash(2), None);
    }

    #[test]
    fn with_capacity_changes_nothing_observable() {
        let (mut a, mut b) = (Tree::new(), Tree::with_capacity(100));
        for i in 0u8..37 {
            a.push(&[i]);
            b.push(&[i]);
        }
        assert_eq!(a.root(), b.root());
        assert_eq!(a.inclusion_proof(5, 37), b.inclusion_proof(5, 37));
    }
}
