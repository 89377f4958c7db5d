//! [`PrunedTree`]: an append-only RFC 6962 tree for logs too large to keep every leaf hash
//! in memory, and [`Prover`], which answers its roots and proofs once it is handed the
//! few leaf blocks they touch.
//!
//! # Why
//!
//! gigawatt's event log reaches 10^7..10^8 records. A [`Tree`] keeps every leaf hash and
//! every perfect subtree above them — 64 bytes per leaf, 6.4 GB for 10^8 records — which a
//! control-plane server cannot afford, and does not need: the leaf hashes are already in
//! the database, one per record. So the server keeps only:
//!
//! * the root of every complete **block** of [`BLOCK_SIZE`] = 2^[`BLOCK_LEVEL`] = 256
//!   consecutive leaves, and every perfect subtree above those (a [`Tree`] whose leaves
//!   are the block roots: about two hashes per block, 64 bytes per 256 records);
//! * the leaf hashes of the last, partial block (fewer than 256).
//!
//! For 10^8 records that is 390,625 blocks, about 781,000 hashes: 25 MB instead of
//! 6.4 GB (10^7 records: 2.5 MB). The current root never needs I/O ([`PrunedTree::root`]).
//!
//! # Why a proof needs at most two blocks from storage
//!
//! RFC 9162 builds every root and proof from subtrees `D[a:b]` whose start `a` is aligned
//! to a power of two at least `b - a`, and each such subtree is a run of perfect subtrees
//! (see [`proof`]). A perfect subtree of 256 leaves or more is a run of
//! complete blocks, whose hash is in memory. A smaller one lies inside a single block,
//! and the recursion only descends below block level towards one leaf: the leaf an
//! inclusion proof is about, or the right edge `size - 1` of a tree size involved
//! (`old - 1` and `new - 1` for a consistency proof, `size - 1` for a past root). So a
//! proof needs the leaf hashes of at most two blocks, which
//! [`PrunedTree::blocks_needed`] names; the caller fetches those 512 hashes from storage
//! and passes them to [`PrunedTree::with_blocks`], which checks them against the block
//! roots it holds before a [`Prover`] uses them. Leaf hashes altered in storage are
//! caught there, so storage need not be trusted.
//!
//! Equivalently: for `n = 256·q + r` with `0 < r < 256`, `MTH(D[0:n])` is the RFC 6962 root
//! over the `q` block roots followed by `MTH(D[256q:n])`, the partial block's root, each
//! treated as a leaf-level hash — the tree of blocks *is* the top of the tree of leaves.
//!
//! ```
//! use std::collections::BTreeMap;
//! use gigawatt_transparency::{PrunedTree, Tree, leaf_hash, verify_inclusion};
//!
//! let (mut pruned, mut full) = (PrunedTree::new(), Tree::new());
//! let mut storage = Vec::new(); // stands in for the database's leaf-hash column
//! for i in 0u32..1000 {
//!     let h = leaf_hash(&i.to_be_bytes());
//!     storage.push(h);
//!     full.push_leaf_hash(h);
//!     if let Some((block, _root)) = pruned.push_leaf_hash(h) {
//!         // The caller persists the block root (and the leaf hashes were persisted with
//!         // their records).
//!         assert!(block < 3);
//!     }
//! }
//! assert_eq!(pruned.root(), full.root());
//!
//! // Leaf 300 in the tree of 700 leaves: the proof reaches into block 1 (leaves 256..512,
//! // holding leaf 300) and block 2 (leaves 512..768, holding leaf 699).
//! let (index, size) = (300, 700);
//! let needed = pruned.blocks_needed(&[index], &[size]);
//! assert_eq!(needed, vec![1, 2]);
//! let fetched: BTreeMap<u64, Vec<_>> =
//!     needed.iter().map(|&b| (b, storage[b as usize * 256..][..256].to_vec())).collect();
//! let prover = pruned.with_blocks(fetched).unwrap();
//! let proof = prover.inclusion_proof(index, size).unwrap();
//! assert_eq!(proof, full.inclusion_proof(index, size).unwrap());
//! let root = prover.root_at(size).unwrap();
//! verify_inclusion(&storage[index as usize], index, size, &proof, &root).unwrap();
//! ```

use std::collections::BTreeMap;

use crate::hash::{EMPTY_ROOT, Hash, leaf_hash, node_hash};
use crate::proof::{self, ProofError, Subtrees, incomplete, split_point, subtree_end};
use crate::tree::Tree;

/// A block spans `2^BLOCK_LEVEL` leaves: the level of the lowest perfect subtrees a
/// [`PrunedTree`] keeps in memory.
pub const BLOCK_LEVEL: u32 = 8;

/// Leaves per block (256).
pub const BLOCK_SIZE: u64 = 1 << BLOCK_LEVEL;

/// [`BLOCK_SIZE`] as a length.
const BLOCK_LEN: usize = 1 << BLOCK_LEVEL;

/// An append-only RFC 6962 tree that keeps in memory only the roots of complete blocks
/// of [`BLOCK_SIZE`] leaves and the perfect subtrees above them, plus the leaf hashes of
/// the last, partial block: about `2n/256 + 256` hashes for `n` leaves (see the
/// [module docs](self) for why that is enough).
///
/// The current root needs no I/O. Past roots and proofs go through a [`Prover`], built
/// with [`with_blocks`](PrunedTree::with_blocks) from the complete blocks that
/// [`blocks_needed`](PrunedTree::blocks_needed) names, fetched from storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunedTree {
    /// A tree whose leaves are the roots of the complete blocks: its level `k` is level
    /// `k + BLOCK_LEVEL` of the tree of leaves.
    blocks: Tree,
    /// The leaf hashes after the last complete block (fewer than [`BLOCK_SIZE`]).
    tail: Vec<Hash>,
}

impl PrunedTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a tree from the roots of its complete blocks, in order, and the leaf hashes
    /// of the partial block after them (fewer than [`BLOCK_SIZE`]): what
    /// [`block_roots`](Self::block_roots) and [`tail`](Self::tail) returned, or what the
    /// caller persisted from [`push_leaf_hash`](Self::push_leaf_hash) and its records.
    ///
    /// Costs about one hash per block. Errors with [`ProofError::TailTooLong`] if the tail
    /// is a whole block or more.
    pub fn from_parts(block_roots: Vec<Hash>, mut tail: Vec<Hash>) -> Result<Self, ProofError> {
        if tail.len() >= BLOCK_LEN {
            return Err(ProofError::TailTooLong { len: tail.len(), max: BLOCK_LEN });
        }
        let mut blocks = Tree::with_capacity(block_roots.len());
        for root in block_roots {
            blocks.push_leaf_hash(root);
        }
        tail.reserve_exact(BLOCK_LEN - tail.len());
        Ok(Self { blocks, tail })
    }

    /// Appends a leaf (its bytes, hashed as an RFC 6962 leaf). See
    /// [`push_leaf_hash`](Self::push_leaf_hash).
    pub fn push(&mut self, leaf: &[u8]) -> Option<(u64, Hash)> {
        self.push_leaf_hash(leaf_hash(leaf))
    }

    /// Appends a leaf by its leaf hash. When this completes a block, returns the block's
    /// number and root, for the caller to persist (to rebuild the tree with
    /// [`from_parts`](Self::from_parts) after a restart).
    ///
    /// Amortised O(1): completing a block hashes its 256 leaves once (255 node hashes).
    pub fn push_leaf_hash(&mut self, hash: Hash) -> Option<(u64, Hash)> {
        self.tail.push(hash);
        if self.tail.len() < BLOCK_LEN {
            return None;
        }
        let root = mth(&self.tail);
        self.tail.clear();
        let block = self.blocks.push_leaf_hash(root);
        Some((block, root))
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        (self.blocks.size() << BLOCK_LEVEL) + self.tail.len() as u64
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.size() == 0
    }

    /// The root at the current size ([`EMPTY_ROOT`] when empty). Needs no I/O: the
    /// complete blocks' subtrees and the partial block's leaves are in memory. Costs at
    /// most 255 + 64 node hashes.
    pub fn root(&self) -> Hash {
        let prover = Prover { tree: self, blocks: BTreeMap::new() };
        // The current root is made of complete blocks' subtrees (in memory) and subtrees
        // of the partial block (in memory), so nothing can be missing.
        proof::root_at(&prover, self.size()).expect("the current root needs no fetched block")
    }

    /// The number of complete blocks.
    pub fn complete_blocks(&self) -> u64 {
        self.blocks.size()
    }

    /// The roots of the complete blocks, in order (block `b` spans leaves
    /// `256·b .. 256·(b+1)`).
    pub fn block_roots(&self) -> &[Hash] {
        self.blocks.leaf_hashes()
    }

    /// The leaf hashes of the partial block after the complete ones (fewer than 256).
    pub fn tail(&self) -> &[Hash] {
        &self.tail
    }

    /// The number of hashes held in memory: the block tree's and the partial block's
    /// (lengths; the vectors' spare capacity can add up to as much again).
    pub fn hashes_in_memory(&self) -> usize {
        self.blocks.stored_hashes() + self.tail.len()
    }

    /// The complete blocks whose leaf hashes a caller must fetch from storage and pass to
    /// [`with_blocks`](Self::with_blocks) before asking a [`Prover`] for roots and proofs
    /// about these leaf `indices` and tree `sizes`: the block of each leaf index, and the
    /// block holding leaf `size - 1` of each size that is not a multiple of 256. Blocks
    /// the tree holds in memory (the partial one) and indices or sizes beyond the tree
    /// are left out. Sorted and deduplicated; at most two blocks per proof.
    ///
    /// For [`inclusion_proof(index, size)`](Prover::inclusion_proof) pass `[index]` and
    /// `[size]`, for [`consistency_proof(old, new)`](Prover::consistency_proof) `[]` and
    /// `[old, new]`, for [`root_at(size)`](Prover::root_at) `[]` and `[size]`.
    pub fn blocks_needed(&self, indices: &[u64], sizes: &[u64]) -> Vec<u64> {
        let (size, complete) = (self.size(), self.complete_blocks());
        let leaves = indices.iter().copied().filter(|&index| index < size);
        let edges =
            sizes.iter().copied().filter(|&s| s <= size && !s.is_multiple_of(BLOCK_SIZE)).map(|s| s - 1);
        let mut blocks: Vec<u64> =
            leaves.chain(edges).map(|leaf| leaf >> BLOCK_LEVEL).filter(|&b| b < complete).collect();
        blocks.sort_unstable();
        blocks.dedup();
        blocks
    }

    /// A proof source over this tree and the leaf hashes of some complete blocks fetched
    /// from storage, keyed by block number (usually those
    /// [`blocks_needed`](Self::blocks_needed) names).
    ///
    /// Each block is checked: it must be a complete block of this tree
    /// ([`ProofError::NoSuchBlock`]), have 256 leaf hashes ([`ProofError::BlockLength`]),
    /// and hash to the block root held in memory ([`ProofError::BlockRootMismatch`]):
    /// leaf hashes altered in storage are refused here, naming the block, rather than
    /// turned into proofs that fail to verify. Costs 255 node hashes per block.
    pub fn with_blocks(&self, fetched: BTreeMap<u64, Vec<Hash>>) -> Result<Prover<'_>, ProofError> {
        let complete = self.complete_blocks();
        let mut blocks = BTreeMap::new();
        for (block, leaves) in fetched {
            let Some(expected) = self.blocks.leaf_hash(block) else {
                return Err(ProofError::NoSuchBlock { block, complete });
            };
            if leaves.len() != BLOCK_LEN {
                return Err(ProofError::BlockLength { block, len: leaves.len(), want: BLOCK_LEN });
            }
            let mut tree = Tree::with_capacity(BLOCK_LEN);
            for leaf in leaves {
                tree.push_leaf_hash(leaf);
            }
            let computed = tree.root();
            if computed != expected {
                return Err(ProofError::BlockRootMismatch { block, computed, expected });
            }
            blocks.insert(block, tree);
        }
        Ok(Prover { tree: self, blocks })
    }
}

/// Roots and proofs over a [`PrunedTree`] at any size it has reached, with the leaf
/// hashes of some of its complete blocks fetched from storage and checked
/// ([`PrunedTree::with_blocks`]).
///
/// A [`Subtrees`] source: perfect subtrees of 256 leaves or more come from the block tree
/// in memory, smaller ones from the partial block in memory or from a fetched block.
/// Asking about a subtree inside a block that was not fetched errors with
/// [`ProofError::Missing`] — never a wrong hash, never a panic.
#[derive(Debug, Clone)]
pub struct Prover<'a> {
    tree: &'a PrunedTree,
    /// The fetched complete blocks, each as a tree of its 256 leaf hashes.
    blocks: BTreeMap<u64, Tree>,
}

impl Prover<'_> {
    /// The root the tree had when it held `size` leaves. Needs the block of leaf
    /// `size - 1` unless `size` is a multiple of 256 or that block is the partial one.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        proof::root_at(self, size)
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162
    /// §2.1.3.1). Needs the blocks `blocks_needed(&[index], &[size])` names.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        proof::inclusion_proof(self, index, size)
    }

    /// The consistency proof from the tree of `old` leaves to the tree of `new` leaves
    /// (RFC 9162 §2.1.4.1). Needs the blocks `blocks_needed(&[], &[old, new])` names.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        proof::consistency_proof(self, old, new)
    }
}

impl Subtrees for Prover<'_> {
    fn size(&self) -> u64 {
        self.tree.size()
    }

    fn perfect(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        let size = self.tree.size();
        // Only subtrees complete at the current size exist; in particular a subtree of
        // 256 leaves or more is answered only if it is made of complete blocks.
        match subtree_end(level, index) {
            Some(end) if end <= size => {}
            _ => return Err(incomplete(level, index, size)),
        }
        if level >= BLOCK_LEVEL {
            return self.tree.blocks.perfect(level - BLOCK_LEVEL, index);
        }
        // Inside one block: `index` is the block number times 2^(8 - level) plus the
        // subtree's index within the block.
        let shift = BLOCK_LEVEL - level;
        let (block, within) = (index >> shift, index & ((1 << shift) - 1));
        if block == self.tree.complete_blocks() {
            let start = (within << level) as usize; // below 256
            let leaves = self.tree.tail.get(start..start + (1 << level));
            return leaves.map(mth).ok_or(ProofError::Missing { level, index });
        }
        match self.blocks.get(&block) {
            Some(tree) => tree.perfect(level, within),
            None => Err(ProofError::Missing { level, index }),
        }
    }
}

/// MTH of a few leaf hashes (RFC 9162 §2.1.1), `len - 1` node hashes.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => EMPTY_ROOT,
        [leaf] => *leaf,
        _ => {
            let (left, right) = leaves.split_at(split_point(leaves.len() as u64) as usize);
            node_hash(&mth(left), &mth(right))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u64) -> Hash {
        // Cheap distinct leaf hashes: these tests are about shape and memory.
        let mut h = [0; 32];
        h[..8].copy_from_slice(&i.to_le_bytes());
        h
    }

    #[test]
    fn mth_matches_tree() {
        for n in 0..70 {
            let leaves: Vec<Hash> = (0..n).map(leaf).collect();
            let mut tree = Tree::new();
            for h in &leaves {
                tree.push_leaf_hash(*h);
            }
            assert_eq!(mth(&leaves), tree.root(), "{n}");
        }
    }

    #[test]
    fn a_million_leaves_fit_in_a_few_thousand_hashes() {
        const N: u64 = 1_000_000;
        let mut tree = PrunedTree::new();
        let mut completed = 0;
        for i in 0..N {
            if let Some((block, _)) = tree.push_leaf_hash(leaf(i)) {
                assert_eq!(block, completed);
                completed += 1;
            }
        }
        assert_eq!(tree.size(), N);
        assert_eq!(completed, N / BLOCK_SIZE); // 3906 blocks
        assert_eq!(tree.tail().len() as u64, N % BLOCK_SIZE); // 64 leaves
        let held = tree.hashes_in_memory();
        // About 2·10^6/256 + 256 = 8,068; a full Tree would hold about 2·10^6.
        let bound = (2 * N / BLOCK_SIZE + BLOCK_SIZE) as usize;
        assert!(held <= bound, "{held} hashes held, bound {bound}");
        assert!(held < 8_000, "{held}");
    }

    #[test]
    fn tail_block_and_beyond_are_not_fetchable() {
        let mut tree = PrunedTree::new();
        for i in 0..300 {
            tree.push_leaf_hash(leaf(i));
        }
        let block1: Vec<Hash> = (256..512).map(leaf).collect();
        assert_eq!(
            tree.with_blocks(BTreeMap::from([(1, block1)])).err(),
            Some(ProofError::NoSuchBlock { block: 1, complete: 1 })
        );
        let short: Vec<Hash> = (0..255).map(leaf).collect();
        assert_eq!(
            tree.with_blocks(BTreeMap::from([(0, short)])).err(),
            Some(ProofError::BlockLength { block: 0, len: 255, want: 256 })
        );
    }

    #[test]
    fn perfect_subtrees_beyond_the_size_are_refused() {
        let mut tree = PrunedTree::new();
        for i in 0..300 {
            tree.push_leaf_hash(leaf(i));
        }
        let prover = tree.with_blocks(BTreeMap::new()).expect("no blocks to check");
        // Leaves 256..512 are not all there yet, nor 0..512.
        assert_eq!(prover.perfect(8, 1), Err(ProofError::SizeBeyondTree { size: 512, tree_size: 300 }));
        assert_eq!(prover.perfect(9, 0), Err(ProofError::SizeBeyondTree { size: 512, tree_size: 300 }));
        assert_eq!(prover.perfect(5, 9), Err(ProofError::SizeBeyondTree { size: 320, tree_size: 300 }));
        assert_eq!(prover.perfect(64, 0), Err(ProofError::SizeBeyondTree { size: u64::MAX, tree_size: 300 }));
        assert_eq!(
            prover.perfect(0, u64::MAX),
            Err(ProofError::SizeBeyondTree { size: u64::MAX, tree_size: 300 })
        );
        // Inside the partial block and at block level: in memory.
        assert_eq!(prover.perfect(0, 299), Ok(leaf(299)));
        assert_eq!(prover.perfect(8, 0), Ok(tree.block_roots()[0]));
        assert_eq!(prover.perfect(5, 8), Ok(mth(&(256..288).map(leaf).collect::<Vec<_>>())));
        // Inside complete block 0, not fetched.
        assert_eq!(prover.perfect(0, 3), Err(ProofError::Missing { level: 0, index: 3 }));
        assert_eq!(prover.perfect(7, 1), Err(ProofError::Missing { level: 7, index: 1 }));
    }
}
