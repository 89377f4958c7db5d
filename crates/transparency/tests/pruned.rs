//! `PrunedTree` and its `Prover` against a full `Tree` fed the same leaves: same roots, and,
//! given the blocks `blocks_needed` names, the same past roots and proofs. Without a needed
//! block the answer is `Missing`, never a panic or a wrong answer; tampered blocks are
//! refused.

use std::collections::BTreeMap;

use gigawatt_transparency::{
    BLOCK_LEVEL, BLOCK_SIZE, Hash, ProofError, Prover, PrunedTree, Subtrees, Tree, leaf_hash, node_hash,
    verify_consistency, verify_inclusion,
};
use proptest::prelude::*;

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(format!("event {i}").as_bytes())).collect()
}

fn full_of(d: &[Hash]) -> Tree {
    let mut tree = Tree::new();
    for h in d {
        tree.push_leaf_hash(*h);
    }
    tree
}

fn pruned_of(d: &[Hash]) -> PrunedTree {
    let mut tree = PrunedTree::new();
    for h in d {
        tree.push_leaf_hash(*h);
    }
    tree
}

/// Block `b`'s leaf hashes, as storage would return them.
fn block(d: &[Hash], b: u64) -> Vec<Hash> {
    let start = (b * BLOCK_SIZE) as usize;
    d[start..start + BLOCK_SIZE as usize].to_vec()
}

fn fetch(d: &[Hash], blocks: &[u64]) -> BTreeMap<u64, Vec<Hash>> {
    blocks.iter().map(|&b| (b, block(d, b))).collect()
}

fn prover<'a>(tree: &'a PrunedTree, d: &[Hash], blocks: &[u64]) -> Prover<'a> {
    tree.with_blocks(fetch(d, blocks)).expect("blocks from the true leaves are accepted")
}

/// Whether an answer given without some needed block is acceptable: `Missing` for a
/// subtree below block level, or (when the block listed was not actually touched) the
/// right answer.
fn missing_or<T: PartialEq + std::fmt::Debug>(got: Result<T, ProofError>, want: &T) -> bool {
    match got {
        Err(ProofError::Missing { level, .. }) => level < BLOCK_LEVEL,
        Ok(v) => v == *want,
        Err(_) => false,
    }
}

/// Checks root_at(size), inclusion_proof(index, size) and consistency_proof(old, size)
/// against the full tree, with exactly the blocks needed, and with each needed block
/// left out in turn.
fn check_against_full(d: &[Hash], full: &Tree, pruned: &PrunedTree, index: u64, old: u64, size: u64) {
    // root_at(size)
    let want = full.root_at(size).expect("size within tree");
    let needed = pruned.blocks_needed(&[], &[size]);
    assert!(needed.len() <= 1, "{needed:?}");
    assert_eq!(prover(pruned, d, &needed).root_at(size), Ok(want), "root_at({size})");
    for &b in &needed {
        let fewer: Vec<u64> = needed.iter().copied().filter(|&x| x != b).collect();
        assert!(missing_or(prover(pruned, d, &fewer).root_at(size), &want), "root_at({size}) without {b}");
    }

    // inclusion_proof(index, size)
    if index < size {
        let want = full.inclusion_proof(index, size).expect("valid");
        let needed = pruned.blocks_needed(&[index], &[size]);
        assert!(needed.len() <= 2, "{needed:?}");
        let got = prover(pruned, d, &needed).inclusion_proof(index, size);
        assert_eq!(got.as_ref(), Ok(&want), "inclusion_proof({index}, {size}) with {needed:?}");
        for &b in &needed {
            let fewer: Vec<u64> = needed.iter().copied().filter(|&x| x != b).collect();
            let got = prover(pruned, d, &fewer).inclusion_proof(index, size);
            assert!(missing_or(got, &want), "inclusion_proof({index}, {size}) without {b}");
        }
    }

    // consistency_proof(old, size)
    if 0 < old && old <= size {
        let want = full.consistency_proof(old, size).expect("valid");
        let needed = pruned.blocks_needed(&[], &[old, size]);
        assert!(needed.len() <= 2, "{needed:?}");
        let got = prover(pruned, d, &needed).consistency_proof(old, size);
        assert_eq!(got.as_ref(), Ok(&want), "consistency_proof({old}, {size}) with {needed:?}");
        for &b in &needed {
            let fewer: Vec<u64> = needed.iter().copied().filter(|&x| x != b).collect();
            let got = prover(pruned, d, &fewer).consistency_proof(old, size);
            assert!(missing_or(got, &want), "consistency_proof({old}, {size}) without {b}");
        }
    }
}

#[test]
fn roots_match_the_full_tree_while_growing() {
    let d = leaves(2_100);
    let (mut full, mut pruned) = (Tree::new(), PrunedTree::new());
    assert_eq!(pruned.root(), full.root());
    for (i, h) in d.iter().enumerate() {
        full.push_leaf_hash(*h);
        let completed = pruned.push_leaf_hash(*h);
        let n = i as u64 + 1;
        assert_eq!(pruned.size(), n);
        assert_eq!(pruned.root(), full.root(), "root at size {n}");
        if n.is_multiple_of(BLOCK_SIZE) {
            let b = n / BLOCK_SIZE - 1;
            assert_eq!(completed, Some((b, full.perfect(BLOCK_LEVEL, b).expect("complete"))));
        } else {
            assert_eq!(completed, None);
        }
        assert_eq!(pruned.complete_blocks(), n / BLOCK_SIZE);
        assert_eq!(pruned.tail(), &d[(n - n % BLOCK_SIZE) as usize..(n as usize)]);
    }
}

/// The fact the design rests on: for n = 256q + r (0 < r < 256), MTH(D[0:n]) is the RFC
/// root over the q block roots followed by MTH(D[256q:n]), as if they were leaf hashes.
#[test]
fn the_tree_of_blocks_is_the_top_of_the_tree_of_leaves() {
    let d = leaves(2_000);
    let full = full_of(&d);
    for n in 1..=2_000u64 {
        let (q, r) = (n / BLOCK_SIZE, n % BLOCK_SIZE);
        let mut top = Tree::new();
        for b in 0..q {
            top.push_leaf_hash(full_of(&block(&d, b)).root());
        }
        if r > 0 {
            top.push_leaf_hash(full_of(&d[(q * BLOCK_SIZE) as usize..n as usize]).root());
        }
        assert_eq!(top.root(), full.root_at(n).expect("in tree"), "size {n}");
    }
    // And for a perfect subtree at level >= 8, it is the block tree's node.
    let mut node = full.perfect(BLOCK_LEVEL, 0).expect("complete");
    node = node_hash(&node, &full.perfect(BLOCK_LEVEL, 1).expect("complete"));
    assert_eq!(full.perfect(BLOCK_LEVEL + 1, 0), Ok(node));
}

#[test]
fn every_size_up_to_1300_against_the_full_tree() {
    // Five complete blocks and a partial one; every past size, with an index and an old
    // size that move around inside and across blocks.
    let d = leaves(1_300);
    let (full, pruned) = (full_of(&d), pruned_of(&d));
    for size in 1..=1_300u64 {
        let index = (size * 7_919) % size;
        let old = 1 + (size * 104_729) % size;
        check_against_full(&d, &full, &pruned, index, old, size);
    }
}

#[test]
fn block_edges_against_the_full_tree() {
    let d = leaves(2_000);
    let (full, pruned) = (full_of(&d), pruned_of(&d));
    let edges: Vec<u64> = [
        1, 2, 3, 127, 128, 255, 256, 257, 511, 512, 513, 767, 768, 769, 1023, 1024, 1025, 1791, 1792, 1793,
        1999, 2000,
    ]
    .into();
    for &size in &edges {
        // Every (index, size) and (old, size) pair of edges, without the cube of both.
        for (i, &index) in edges.iter().chain(&[0]).enumerate() {
            let old = edges[(i * 7) % edges.len()];
            check_against_full(&d, &full, &pruned, index, old, size);
        }
        for &old in &edges {
            check_against_full(&d, &full, &pruned, size, old, size);
        }
    }
}

fn missing<T>(r: Result<T, ProofError>) -> bool {
    matches!(r, Err(ProofError::Missing { level, .. }) if level < BLOCK_LEVEL)
}

#[test]
fn without_the_block_the_answer_is_missing() {
    let d = leaves(1_000); // blocks 0, 1, 2 complete; 232 leaves in the partial block 3
    let pruned = pruned_of(&d);
    let none = pruned.with_blocks(BTreeMap::new()).expect("nothing to check");

    // The current root and proofs confined to the partial block and whole blocks need nothing.
    assert_eq!(pruned.blocks_needed(&[999], &[1_000]), Vec::<u64>::new());
    assert_eq!(none.root_at(1_000), Ok(pruned.root()));
    assert_eq!(none.root_at(768), Ok(full_of(&d[..768]).root()));
    assert!(none.inclusion_proof(999, 1_000).is_ok());
    assert!(none.consistency_proof(512, 1_000).is_ok());

    // Past roots, proofs for leaves in complete blocks, consistency from inside a block.
    assert_eq!(pruned.blocks_needed(&[], &[300]), vec![1]);
    assert!(missing(none.root_at(300)));
    assert_eq!(pruned.blocks_needed(&[3], &[1_000]), vec![0]);
    assert!(missing(none.inclusion_proof(3, 1_000)));
    assert_eq!(pruned.blocks_needed(&[3], &[600]), vec![0, 2]);
    let only0 = prover(&pruned, &d, &[0]);
    assert!(missing(only0.inclusion_proof(3, 600)));
    assert!(missing(prover(&pruned, &d, &[2]).inclusion_proof(3, 600)));
    assert_eq!(pruned.blocks_needed(&[], &[300, 1_000]), vec![1]);
    assert!(missing(none.consistency_proof(300, 1_000)));
    assert_eq!(pruned.blocks_needed(&[], &[300, 600]), vec![1, 2]);
    assert!(missing(prover(&pruned, &d, &[1]).consistency_proof(300, 600)));
    assert!(missing(prover(&pruned, &d, &[2]).consistency_proof(300, 600)));
    assert!(prover(&pruned, &d, &[1, 2]).consistency_proof(300, 600).is_ok());

    // Requests beyond the tree are the same errors as the full tree's.
    let full = full_of(&d);
    assert_eq!(none.root_at(1_001), full.root_at(1_001));
    assert_eq!(none.inclusion_proof(1_000, 1_000), full.inclusion_proof(1_000, 1_000));
    assert_eq!(none.inclusion_proof(5, 1_001), full.inclusion_proof(5, 1_001));
    assert_eq!(none.consistency_proof(0, 10), full.consistency_proof(0, 10));
    assert_eq!(none.consistency_proof(10, 9), full.consistency_proof(10, 9));
    assert_eq!(none.consistency_proof(10, u64::MAX), full.consistency_proof(10, u64::MAX));
    assert_eq!(pruned.blocks_needed(&[1_000, u64::MAX], &[1_001, u64::MAX]), Vec::<u64>::new());
}

#[test]
fn tampered_blocks_are_refused() {
    let d = leaves(1_000);
    let pruned = pruned_of(&d);
    for b in 0..3u64 {
        for at in [0usize, 1, 100, 255] {
            let mut fetched = fetch(&d, &[0, 1, 2]);
            let leaves = fetched.get_mut(&b).expect("fetched");
            leaves[at][31] ^= 0x80;
            match pruned.with_blocks(fetched) {
                Err(ProofError::BlockRootMismatch { block, computed, expected }) => {
                    assert_eq!(block, b);
                    assert_eq!(expected, pruned.block_roots()[b as usize]);
                    assert_ne!(computed, expected);
                }
                other => panic!("block {b} altered at {at}: {other:?}"),
            }
        }
    }
    // Another block's leaves, reordered leaves, a missing or extra leaf, the partial block.
    let mut fetched = fetch(&d, &[1]);
    fetched.insert(0, block(&d, 1));
    assert!(matches!(pruned.with_blocks(fetched), Err(ProofError::BlockRootMismatch { block: 0, .. })));
    let mut swapped = block(&d, 2);
    swapped.swap(3, 4);
    assert!(matches!(
        pruned.with_blocks(BTreeMap::from([(2, swapped)])),
        Err(ProofError::BlockRootMismatch { block: 2, .. })
    ));
    let mut short = block(&d, 2);
    short.pop();
    assert_eq!(
        pruned.with_blocks(BTreeMap::from([(2, short)])).err(),
        Some(ProofError::BlockLength { block: 2, len: 255, want: 256 })
    );
    let mut long = block(&d, 2);
    long.push(d[0]);
    assert_eq!(
        pruned.with_blocks(BTreeMap::from([(2, long)])).err(),
        Some(ProofError::BlockLength { block: 2, len: 257, want: 256 })
    );
    let partial = d[768..].to_vec();
    assert_eq!(
        pruned.with_blocks(BTreeMap::from([(3, partial)])).err(),
        Some(ProofError::NoSuchBlock { block: 3, complete: 3 })
    );
    let err = pruned.with_blocks(fetch(&d, &[1]).into_values().map(|v| (0, v)).collect()).err();
    assert!(err.expect("refused").to_string().starts_with("block 0's leaf hashes hash to "));
}

#[test]
fn from_parts_round_trips() {
    let d = leaves(1_500);
    for n in [0u64, 1, 255, 256, 257, 511, 512, 1_000, 1_280, 1_500] {
        let pruned = pruned_of(&d[..n as usize]);
        let mut back = PrunedTree::from_parts(pruned.block_roots().to_vec(), pruned.tail().to_vec())
            .expect("valid parts");
        assert_eq!(back, pruned, "size {n}");
        assert_eq!(back.size(), n);
        assert_eq!(back.root(), pruned.root());
        // It keeps growing the same way as a tree that never stopped.
        let mut cont = pruned.clone();
        for h in &d[n as usize..] {
            assert_eq!(back.push_leaf_hash(*h), cont.push_leaf_hash(*h));
        }
        assert_eq!(back, cont);
        assert_eq!(back.root(), full_of(&d).root());
    }
    assert_eq!(
        PrunedTree::from_parts(vec![], d[..256].to_vec()),
        Err(ProofError::TailTooLong { len: 256, max: 256 })
    );
    // Restarting from parts persisted while pushing.
    let mut persisted = Vec::new();
    let mut pruned = PrunedTree::new();
    for h in &d {
        if let Some((b, root)) = pruned.push_leaf_hash(*h) {
            assert_eq!(b, persisted.len() as u64);
            persisted.push(root);
        }
    }
    let tail = d[persisted.len() * BLOCK_SIZE as usize..].to_vec();
    assert_eq!(PrunedTree::from_parts(persisted, tail), Ok(pruned));
}

#[test]
fn proofs_verify() {
    let d = leaves(3_000);
    let pruned = pruned_of(&d);
    let root = pruned.root();
    for (index, old) in [(0, 1), (255, 256), (256, 257), (1_000, 999), (2_999, 2_999), (1_234, 2_048)] {
        let needed = pruned.blocks_needed(&[index], &[old, 3_000]);
        let p = prover(&pruned, &d, &needed);
        let proof = p.inclusion_proof(index, 3_000).expect("needed blocks given");
        assert_eq!(verify_inclusion(&d[index as usize], index, 3_000, &proof, &root), Ok(()));
        let proof = p.consistency_proof(old, 3_000).expect("needed blocks given");
        let old_root = p.root_at(old).expect("needed blocks given");
        assert_eq!(verify_consistency(old, 3_000, &proof, &old_root, &root), Ok(()));
    }
}

fn query() -> impl Strategy<Value = (u64, Vec<(u64, u64, u64)>)> {
    (1u64..=5_000).prop_flat_map(|n| {
        let one = (1..=n).prop_flat_map(|size| (0..size, 1..=size, Just(size)));
        (Just(n), prop::collection::vec(one, 1..8))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_queries_match_the_full_tree((n, queries) in query()) {
        let d = leaves(n);
        let (full, pruned) = (full_of(&d), pruned_of(&d));
        prop_assert_eq!(pruned.root(), full.root());
        for (index, old, size) in queries {
            check_against_full(&d, &full, &pruned, index, old, size);
        }
    }

    /// Whatever blocks are fetched and whatever is asked, the answer is the full tree's or
    /// `Missing` (for in-range requests), and the full tree's error otherwise.
    #[test]
    fn any_blocks_any_question(
        n in 0u64..1_500, fetched_mask in any::<u8>(), a in 0u64..1_600, b in 0u64..1_600,
    ) {
        let d = leaves(n);
        let (full, pruned) = (full_of(&d), pruned_of(&d));
        let blocks: Vec<u64> = (0..pruned.complete_blocks()).filter(|b| fetched_mask >> b & 1 == 1).collect();
        let p = prover(&pruned, &d, &blocks);
        let agree = |got: Result<Vec<Hash>, ProofError>, want: Result<Vec<Hash>, ProofError>| match want {
            Ok(want) => missing_or(got, &want),
            Err(e) => got == Err(e),
        };
        prop_assert!(agree(p.root_at(a).map(|r| vec![r]), full.root_at(a).map(|r| vec![r])));
        prop_assert!(agree(p.inclusion_proof(a, b), full.inclusion_proof(a, b)));
        prop_assert!(agree(p.consistency_proof(a, b), full.consistency_proof(a, b)));
        let level = (a % 12) as u32;
        let index = b >> level;
        prop_assert!(agree(p.perfect(level, index).map(|h| vec![h]), full.perfect(level, index).map(|h| vec![h])));
    }
}
