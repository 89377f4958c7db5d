//! The tree and the verifiers against the published transparency-dev/merkle vectors,
//! copied unchanged into `tests/vectors/` (Apache-2.0, Copyright Google LLC).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gigawatt_transparency::{
    EMPTY_ROOT, Hash, Tree, leaf_hash, root_from_inclusion, verify_consistency, verify_inclusion,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use common::{unhex, vectors_dir};

/// The `hd("…")` arguments in `src` between `start` and the next `end`, in order.
fn hd_args<'a>(src: &'a str, start: &str, end: &str) -> Vec<&'a str> {
    let from = src.find(start).unwrap_or_else(|| panic!("{start} not in constants.go"));
    let body = &src[from..];
    let body = &body[..body.find(end).unwrap_or_else(|| panic!("{end} not in constants.go"))];
    body.split("hd(\"").skip(1).map(|rest| &rest[..rest.find('"').expect("closing quote")]).collect()
}

struct Constants {
    leaves: Vec<Vec<u8>>,
    /// Roots of the trees of sizes 0..=8.
    roots: Vec<Hash>,
    /// `nodes[level][index]`: perfect subtree hashes.
    nodes: Vec<Vec<Hash>>,
}

/// Reads `merkle-testonly/constants.go` (LeafInputs, RootHashes, NodeHashes, EmptyRootHash).
fn constants() -> Constants {
    let src = fs::read_to_string(vectors_dir().join("merkle-testonly/constants.go")).expect("read");
    let leaves: Vec<Vec<u8>> = hd_args(&src, "func LeafInputs()", "\n}\n").into_iter().map(unhex).collect();
    let empty = hd_args(&src, "func EmptyRootHash()", "\n}\n");
    let root_body = hd_args(&src, "func RootHashes()", "\n}\n");
    let mut roots = vec![common::hash_hex(empty[0])];
    roots.extend(root_body.into_iter().map(common::hash_hex));
    // NodeHashes is `{{…}, {…}, …}`: one `}, {` between levels.
    let from = src.find("func NodeHashes()").expect("NodeHashes");
    let body = &src[from..from + src[from..].find("\n}\n").expect("end")];
    let nodes = body
        .split("}, {")
        .map(|level| level.split("hd(\"").skip(1).map(|r| common::hash_hex(&r[..64])).collect())
        .collect();
    Constants { leaves, roots, nodes }
}

#[test]
fn tree_matches_constants_go() {
    let c = constants();
    assert_eq!(c.leaves.len(), 8);
    assert_eq!(c.roots.len(), 9);
    assert_eq!(c.roots[0], EMPTY_ROOT);
    assert_eq!(c.nodes.iter().map(Vec::len).collect::<Vec<_>>(), [8, 4, 2, 1]);

    let mut tree = Tree::new();
    assert_eq!(tree.root(), c.roots[0]);
    for (i, leaf) in c.leaves.iter().enumerate() {
        assert_eq!(tree.push(leaf), i as u64);
        assert_eq!(tree.root(), c.roots[i + 1], "root of size {}", i + 1);
    }
    // Past roots are answered from the full tree too.
    for (size, root) in c.roots.iter().enumerate() {
        assert_eq!(tree.root_at(size as u64).unwrap(), *root, "root_at({size})");
    }
    // Every perfect subtree hash, as the root of a tree of just its leaves.
    for (level, hashes) in c.nodes.iter().enumerate() {
        for (index, want) in hashes.iter().enumerate() {
            let width = 1 << level;
            let mut sub = Tree::new();
            for leaf in &c.leaves[index * width..(index + 1) * width] {
                sub.push(leaf);
            }
            assert_eq!(sub.root(), *want, "node {level}/{index}");
        }
    }
    assert_eq!(c.nodes[0][0], leaf_hash(&c.leaves[0]));
}

/// All JSON files under `dir`, recursively, sorted.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn bytes_field(v: &Value) -> Vec<u8> {
    match v {
        Value::Null => Vec::new(),
        Value::String(s) => BASE64.decode(s).expect("base64"),
        other => panic!("not a base64 string: {other}"),
    }
}

/// A base64 JSON field as a [`Hash`].
///
/// Some vectors hold values that are not 32 bytes ("WrongRoot", "don't care 1", empty
/// garbage). Our API takes `[u8; 32]`, so such a value cannot even be passed. The Go
/// verifier refuses a leaf hash of the wrong size outright (see [`inclusion_vectors`]),
/// but compares roots and hashes proof elements whatever their size; to mirror that, we
/// map such a value to SHA-256 of a tag and its bytes, which keeps equal values equal and
/// is never a hash any real tree or proof produces.
fn hash_field(v: &Value) -> Hash {
    let bytes = bytes_field(v);
    match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(hash) => hash,
        Err(_) => {
            let mut h = Sha256::new();
            h.update(b"stand-in for a value that is not 32 bytes:");
            h.update(&bytes);
            h.finalize().into()
        }
    }
}

fn proof_field(v: &Value) -> Vec<Hash> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().map(hash_field).collect(),
        other => panic!("proof is not an array: {other}"),
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).expect("read")).expect("json")
}

fn u64_field(j: &Value, name: &str, path: &Path) -> u64 {
    j[name].as_u64().unwrap_or_else(|| panic!("{}: no u64 {name}", path.display()))
}

// The `subtreeinclusion/` and `subtreeconsistency/` directories test proofs for arbitrary
// subtrees [start, end) (fields `start`, `end`), which this crate does not implement; they
// are not read. Every file under `inclusion/` and `consistency/` is.

#[test]
fn inclusion_vectors() {
    let c = constants();
    let mut tree = Tree::new();
    for leaf in &c.leaves {
        tree.push(leaf);
    }
    let files = json_files(&vectors_dir().join("merkle-testdata/inclusion"));
    assert_eq!(files.len(), 98, "inclusion vector files");
    let (mut passes, mut failures, mut compared) = (0, 0, 0);
    for path in &files {
        let j = read_json(path);
        assert!(j.get("start").is_none(), "{}: a subtree vector", path.display());
        let index = u64_field(&j, "leafIdx", path);
        let size = u64_field(&j, "treeSize", path);
        let want_err = j["wantErr"].as_bool().expect("wantErr");
        let Ok(leaf) = Hash::try_from(bytes_field(&j["leafHash"])) else {
            // A leaf hash that is not 32 bytes is refused by the type of `verify_inclusion`'s
            // argument, as the Go verifier refuses it with an error.
            assert!(want_err, "{}: a short leaf hash that should verify", path.display());
            failures += 1;
            continue;
        };
        let root = hash_field(&j["root"]);
        let proof = proof_field(&j["proof"]);
        let got = verify_inclusion(&leaf, index, size, &proof, &root);
        assert_eq!(got.is_err(), want_err, "{}: {got:?}", path.display());
        if want_err {
            failures += 1;
        } else {
            passes += 1;
            assert_eq!(root_from_inclusion(&leaf, index, size, &proof), Ok(root));
            // The happy paths over the constants.go leaves are exactly our tree's proofs.
            if size <= tree.size() && tree.root_at(size) == Ok(root) {
                assert_eq!(tree.inclusion_proof(index, size).unwrap(), proof, "{}", path.display());
                compared += 1;
            }
        }
    }
    assert_eq!((passes, failures), (6, 92), "wantErr false / true");
    // All happy paths but the single-entry one (a leaf of its own) are over constants.go.
    assert_eq!(compared, 5, "proofs compared with the tree's");
}

#[test]
fn consistency_vectors() {
    let c = constants();
    let mut tree = Tree::new();
    for leaf in &c.leaves {
        tree.push(leaf);
    }
    let files = json_files(&vectors_dir().join("merkle-testdata/consistency"));
    assert_eq!(files.len(), 98, "consistency vector files");
    let (mut passes, mut failures, mut compared) = (0, 0, 0);
    for path in &files {
        let j = read_json(path);
        assert!(j.get("start").is_none(), "{}: a subtree vector", path.display());
        let size1 = u64_field(&j, "size1", path);
        let size2 = u64_field(&j, "size2", path);
        let (root1, root2) = (hash_field(&j["root1"]), hash_field(&j["root2"]));
        let proof = proof_field(&j["proof"]);
        let want_err = j["wantErr"].as_bool().expect("wantErr");
        let got = verify_consistency(size1, size2, &proof, &root1, &root2);
        assert_eq!(got.is_err(), want_err, "{}: {got:?}", path.display());
        if want_err {
            failures += 1;
        } else {
            passes += 1;
            if size2 <= tree.size() && tree.root_at(size2) == Ok(root2) {
                assert_eq!(tree.consistency_proof(size1, size2).unwrap(), proof, "{}", path.display());
                compared += 1;
            }
        }
    }
    assert_eq!((passes, failures), (6, 92), "wantErr false / true");
    // All happy paths but the one with "don't care" roots are over the constants.go leaves.
    assert_eq!(compared, 5, "proofs compared with the tree's");
}
