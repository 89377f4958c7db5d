//! `Tree`'s roots and proofs against a naive transcription of RFC 9162's recursive
//! definitions (MTH §2.1.1, PATH §2.1.3.1, SUBPROOF §2.1.4.1), and against the verifiers.

use gigawatt_transparency::{
    Hash, ProofError, Tree, empty_root, leaf_hash, node_hash, verify_consistency, verify_inclusion,
};

const MAX: usize = 64;

/// The largest power of two strictly below `n` (n > 1), written the slow way.
fn k(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]).
fn mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => empty_root(),
        1 => d[0],
        n => node_hash(&mth(&d[..k(n)]), &mth(&d[k(n)..])),
    }
}

/// PATH(m, D[n]).
fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = k(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// SUBPROOF(m, D[n], b).
fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = k(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(format!("event {i}").as_bytes())).collect()
}

fn tree_of(d: &[Hash]) -> Tree {
    let mut tree = Tree::new();
    for h in d {
        tree.push_leaf_hash(*h);
    }
    tree
}

fn flip(proof: &[Hash], i: usize) -> Vec<Hash> {
    let mut bad = proof.to_vec();
    bad[i][0] ^= 1;
    bad
}

#[test]
fn roots_match_the_definition() {
    let d = leaves(MAX);
    let mut growing = Tree::new();
    let full = tree_of(&d);
    for n in 0..=MAX {
        assert_eq!(growing.root(), mth(&d[..n]), "root at size {n}");
        assert_eq!(full.root_at(n as u64).unwrap(), mth(&d[..n]), "root_at({n})");
        if n < MAX {
            growing.push_leaf_hash(d[n]);
        }
    }
}

#[test]
fn inclusion_proofs_for_every_index_and_size() {
    let d = leaves(MAX);
    let tree = tree_of(&d);
    for n in 1..=MAX {
        let root = mth(&d[..n]);
        for m in 0..n {
            let proof = tree.inclusion_proof(m as u64, n as u64).unwrap();
            assert_eq!(proof, path(m, &d[..n]), "PATH({m}, D[{n}])");
            assert_eq!(verify_inclusion(&d[m], m as u64, n as u64, &proof, &root), Ok(()));
            // Wrong leaf, wrong index, tampered proof, truncated or padded proof: all fail.
            let other = d[(m + 1) % n];
            if n > 1 {
                assert!(verify_inclusion(&other, m as u64, n as u64, &proof, &root).is_err());
                let wrong_index = (m as u64 + 1) % n as u64;
                assert!(verify_inclusion(&d[m], wrong_index, n as u64, &proof, &root).is_err());
            }
            for i in 0..proof.len() {
                assert!(matches!(
                    verify_inclusion(&d[m], m as u64, n as u64, &flip(&proof, i), &root),
                    Err(ProofError::RootMismatch { .. })
                ));
            }
            let mut longer = proof.clone();
            longer.push(root);
            assert!(matches!(
                verify_inclusion(&d[m], m as u64, n as u64, &longer, &root),
                Err(ProofError::WrongProofLength { .. })
            ));
            if let Some((_, shorter)) = proof.split_last() {
                assert!(matches!(
                    verify_inclusion(&d[m], m as u64, n as u64, shorter, &root),
                    Err(ProofError::WrongProofLength { .. })
                ));
            }
        }
    }
}

#[test]
fn consistency_proofs_for_every_pair_of_sizes() {
    let d = leaves(MAX);
    let tree = tree_of(&d);
    for n in 1..=MAX {
        let root2 = mth(&d[..n]);
        for m in 1..=n {
            let root1 = mth(&d[..m]);
            let proof = tree.consistency_proof(m as u64, n as u64).unwrap();
            assert_eq!(proof, subproof(m, &d[..n], true), "PROOF({m}, D[{n}])");
            assert_eq!(verify_consistency(m as u64, n as u64, &proof, &root1, &root2), Ok(()));
            if m == n {
                continue;
            }
            assert!(verify_consistency(m as u64, n as u64, &proof, &root2, &root1).is_err());
            for i in 0..proof.len() {
                assert!(verify_consistency(m as u64, n as u64, &flip(&proof, i), &root1, &root2).is_err());
            }
            // A different history of the same sizes is not consistent.
            let mut forked = d[..n].to_vec();
            forked[m - 1][0] ^= 1;
            assert!(verify_consistency(m as u64, n as u64, &proof, &mth(&forked[..m]), &root2).is_err());
            // A wrong old size. (A wrong *new* size can pass: the proof from 1 to 3 is
            // [d1, d2] and the one from 1 to 4 is [d1, h(d2, d3)], hashed the same way.
            // Proofs bind the roots, not the sizes; a checkpoint's signature binds those.)
            if m > 1 {
                assert!(verify_consistency(m as u64 - 1, n as u64, &proof, &root1, &root2).is_err());
            }
        }
    }
}

#[test]
fn larger_tree_spot_checks() {
    let n = 5_000;
    let d = leaves(n);
    let tree = tree_of(&d);
    for size in [1, 2, 3, 1023, 1024, 1025, 4095, 4096, 4097, 4999, 5000] {
        let root = tree.root_at(size).unwrap();
        assert_eq!(root, mth(&d[..size as usize]));
        for index in [0, size / 3, size / 2, size - 1] {
            let proof = tree.inclusion_proof(index, size).unwrap();
            assert!(proof.len() <= 13);
            assert_eq!(verify_inclusion(&d[index as usize], index, size, &proof, &root), Ok(()));
        }
        for old in [1, size / 7 + 1, size / 2 + 1, size] {
            let proof = tree.consistency_proof(old, size).unwrap();
            assert!(proof.len() <= 14);
            let root1 = tree.root_at(old).unwrap();
            assert_eq!(verify_consistency(old, size, &proof, &root1, &root), Ok(()));
        }
    }
}
