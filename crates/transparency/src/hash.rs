//! RFC 6962 §2.1 hashing: SHA-256 with a one-byte domain separator, so that a leaf can
//! never be passed off as an interior node (second-preimage resistance).

use std::fmt;

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// The root of the empty tree, SHA-256 of the empty string (RFC 9162 §2.1.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27,
    0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The root of the empty tree, computed: SHA-256(""). Equal to [`EMPTY_ROOT`].
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The hash of a leaf: SHA-256(0x00 ‖ `data`).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: SHA-256(0x01 ‖ `left` ‖ `right`).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Lower-case hex for a hash, used in error messages.
pub(crate) struct Hex<'a>(pub(crate) &'a Hash);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(empty_root(), EMPTY_ROOT);
    }

    #[test]
    fn domain_separation() {
        // A leaf whose bytes are two hashes is not the node over those hashes.
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        assert_ne!(leaf_hash(&both), node_hash(&a, &b));
    }

    #[test]
    fn hex_display() {
        assert_eq!(
            Hex(&EMPTY_ROOT).to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
