//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

use gigawatt_transparency::Hash;

/// The published vectors copied into this crate (see `tests/vectors/README.md`).
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Decodes lower- or upper-case hex.
pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length: {s:?}");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect()
}

/// Hex of 32 bytes into a [`Hash`].
pub fn hash_hex(s: &str) -> Hash {
    unhex(s).try_into().expect("32 bytes")
}
