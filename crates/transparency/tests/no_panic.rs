//! Untrusted input never panics: random bytes and random mutations of valid inputs fed to
//! `open`, `Checkpoint::parse`, the key parsers and the proof verifiers.

use gigawatt_transparency::{
    Checkpoint, Hash, Signer, Tree, Verifier, leaf_hash, open, root_from_inclusion, verify_consistency,
    verify_inclusion,
};
use proptest::prelude::*;

fn signer() -> Signer {
    Signer::from_seed("log.example", [3; 32]).expect("valid name")
}

fn valid_note() -> Vec<u8> {
    let text = Checkpoint { origin: "log.example".into(), size: 42, root: [7; 32], extensions: vec![] }
        .to_text()
        .expect("valid checkpoint");
    signer().sign(&text).expect("valid text").into_bytes()
}

/// A random edit: overwrite, insert or delete one byte at a position taken modulo length.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), prop::sample::select(vec![b'\n', b' ', b'+', b'=', 0xe2, 0x80, 0x94, b'0']))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = bytes.len();
        match *e {
            Edit::Set(i, b) if n > 0 => bytes[i % n] = b,
            Edit::Insert(i, b) => bytes.insert(i % (n + 1), b),
            Edit::Delete(i) if n > 0 => {
                bytes.remove(i % n);
            }
            _ => {}
        }
    }
    bytes
}

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>()
}

/// Sizes and indices that hit the edges: small, powers of two and near `u64::MAX`.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..70,
        (0u32..64).prop_map(|s| 1u64 << s),
        (0u32..64).prop_map(|s| (1u64 << s).wrapping_sub(1)),
        u64::MAX - 70..=u64::MAX,
        any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn open_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = open(&bytes, &[signer().verifier()]);
    }

    #[test]
    fn open_mutated_note(edits in prop::collection::vec(edit(), 1..6)) {
        let bytes = apply(valid_note(), &edits);
        let v = [signer().verifier()];
        if let Ok(opened) = open(&bytes, &v) {
            // Anything that still opens carries a valid signature over its text.
            let _ = Checkpoint::parse(&opened.text);
        }
    }

    #[test]
    fn open_random_text(s in "(\\PC|\n){0,200}") {
        let _ = open(s.as_bytes(), &[signer().verifier()]);
        let _ = Checkpoint::parse(&s);
        let _ = s.parse::<Verifier>();
        let _ = s.parse::<Signer>();
    }

    #[test]
    fn checkpoint_mutations(edits in prop::collection::vec(edit(), 1..6)) {
        let text = "log.example\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\next\n";
        let bytes = apply(text.as_bytes().to_vec(), &edits);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(c) = Checkpoint::parse(&text) {
            // Whatever parses formats back to the very same text.
            prop_assert_eq!(c.to_text().expect("parsed checkpoints format"), text.as_ref());
        }
    }

    #[test]
    fn key_string_mutations(edits in prop::collection::vec(edit(), 1..4)) {
        let vkey = signer().verifier().to_string();
        let _ = String::from_utf8_lossy(&apply(vkey.into_bytes(), &edits)).parse::<Verifier>();
        let skey = signer().to_key_string();
        let _ = String::from_utf8_lossy(&apply(skey.into_bytes(), &edits)).parse::<Signer>();
    }

    #[test]
    fn verify_inclusion_random(
        leaf in hash(), index in size(), tree_size in size(), root in hash(),
        proof in prop::collection::vec(hash(), 0..70),
    ) {
        let _ = verify_inclusion(&leaf, index, tree_size, &proof, &root);
        let _ = root_from_inclusion(&leaf, index, tree_size, &proof);
    }

    #[test]
    fn verify_consistency_random(
        size1 in size(), size2 in size(), root1 in hash(), root2 in hash(),
        proof in prop::collection::vec(hash(), 0..70),
    ) {
        let _ = verify_consistency(size1, size2, &proof, &root1, &root2);
    }

    #[test]
    fn tree_requests_random(n in 0u64..40, a in size(), b in size()) {
        let mut tree = Tree::new();
        for i in 0..n {
            tree.push(&i.to_le_bytes());
        }
        let _ = tree.root_at(a);
        let _ = tree.leaf_hash(a);
        if let Ok(proof) = tree.inclusion_proof(a, b) {
            let root = tree.root_at(b).expect("size within tree");
            prop_assert!(verify_inclusion(&leaf_hash(&a.to_le_bytes()), a, b, &proof, &root).is_ok());
        }
        if let Ok(proof) = tree.consistency_proof(a, b) {
            let (r1, r2) = (tree.root_at(a).expect("in tree"), tree.root_at(b).expect("in tree"));
            prop_assert!(verify_consistency(a, b, &proof, &r1, &r2).is_ok());
        }
    }

    #[test]
    fn mutated_real_proofs_fail_or_are_unchanged(
        n in 2u64..40, pick in any::<u64>(), edits in prop::collection::vec((any::<usize>(), 0usize..32, 1u8..=255), 1..3),
    ) {
        let mut tree = Tree::new();
        for i in 0..n {
            tree.push(&i.to_le_bytes());
        }
        let (index, size) = (pick % n, n);
        let root = tree.root();
        let mut proof = tree.inclusion_proof(index, size).expect("valid");
        if proof.is_empty() {
            return Ok(());
        }
        let len = proof.len();
        for &(which, byte, mask) in &edits {
            proof[which % len][byte] ^= mask;
        }
        prop_assert!(verify_inclusion(&leaf_hash(&index.to_le_bytes()), index, size, &proof, &root).is_err());
    }
}
