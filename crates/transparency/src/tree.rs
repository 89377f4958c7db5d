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
//! such subtrees, so nothing ever walks the leaves. `Tree` is a [`Subtrees`] source, and
//! its roots and proofs are the generic ones of [`proof`].
//!
//! For logs too large to keep every leaf hash in memory, see
//! [`PrunedTree`](crate::PrunedTree), which keeps about 256 times fewer hashes.

use crate::hash::{Hash, leaf_hash, node_hash};
use crate::proof::{self, ProofError, Subtrees, incomplete};

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

    /// The root of the tree at its current size ([`EMPTY_ROOT`](crate::EMPTY_ROOT) when
    /// empty).
    pub fn root(&self) -> Hash {
        // A tree holds every complete perfect subtree, so nothing can be missing.
        proof::root_at(self, self.size()).expect("a Tree holds every subtree inside it")
    }

    /// The root the tree had when it held `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        proof::root_at(self, size)
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162
    /// §2.1.3.1 `PATH`), sibling hashes from the leaf up. O(log n).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        proof::inclusion_proof(self, index, size)
    }

    /// The consistency proof from the tree of `old` leaves to the tree of `new` leaves
    /// (RFC 9162 §2.1.4.1 `PROOF`). Requires `0 < old <= new <= size()`; equal sizes
    /// give the empty proof. O(log n).
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        proof::consistency_proof(self, old, new)
    }

    /// All leaf hashes, in order.
    pub(crate) fn leaf_hashes(&self) -> &[Hash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// The number of hashes held (all levels).
    pub(crate) fn stored_hashes(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }
}

/// Every perfect subtree inside the tree is stored, so this never answers
/// [`ProofError::Missing`]; a subtree not complete at [`Tree::size`] is
/// [`ProofError::SizeBeyondTree`].
impl Subtrees for Tree {
    fn size(&self) -> u64 {
        Tree::size(self)
    }

    fn perfect(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        let row = usize::try_from(level).ok().and_then(|level| self.levels.get(level));
        let hash = row.and_then(|row| row.get(usize::try_from(index).ok()?));
        hash.copied().ok_or_else(|| incomplete(level, index, Tree::size(self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::EMPTY_ROOT;

    #[test]
    fn storage_is_two_hashes_per_leaf() {
        let mut tree = Tree::new();
        for i in 0u32..1000 {
            tree.push(&i.to_be_bytes());
        }
        let stored = tree.stored_hashes();
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
    fn perfect_subtrees_are_stored_or_beyond_the_tree() {
        let mut tree = Tree::new();
        for i in 0u8..5 {
            tree.push(&[i]);
        }
        assert_eq!(tree.perfect(0, 4), Ok(leaf_hash(&[4])));
        assert_eq!(tree.perfect(2, 0), tree.root_at(4));
        let beyond = |size| Err(ProofError::SizeBeyondTree { size, tree_size: 5 });
        assert_eq!(tree.perfect(0, 5), beyond(6));
        assert_eq!(tree.perfect(1, 2), beyond(6));
        assert_eq!(tree.perfect(3, 0), beyond(8));
        assert_eq!(tree.perfect(64, 0), beyond(u64::MAX));
        assert_eq!(tree.perfect(u32::MAX, u64::MAX), beyond(u64::MAX));
        assert_eq!(tree.perfect(0, u64::MAX), beyond(u64::MAX));
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
