//! Signed notes against the `golang.org/x/mod/sumdb/note` example quoted in
//! `tests/vectors/README.md`, and round trips with generated keys.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gigawatt_transparency::{
    Checkpoint, KeyError, MAX_SIGNATURES, NoteError, Signer, Verifier, ed25519_key_id, open,
};
use sha2::{Digest, Sha256};

const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
/// The matching signer key, from the same Go package's documentation (`note.NewSigner`).
const SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const SIG_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

fn published_note() -> String {
    format!("{TEXT}\n{SIG_LINE}")
}

fn peter() -> Verifier {
    VKEY.parse().expect("published verifier key")
}

#[test]
fn published_note_opens() {
    let opened = open(published_note().as_bytes(), &[peter()]).expect("opens");
    assert_eq!(opened.text, TEXT);
    assert_eq!(opened.verified_by, ["PeterNeumann"]);
    assert_eq!(opened.unknown_signatures, 0);
}

#[test]
fn every_one_byte_change_fails() {
    let note = published_note().into_bytes();
    let v = [peter()];
    for i in 0..note.len() {
        for delta in [1u8, 0x20, 0x80] {
            let mut bad = note.clone();
            bad[i] ^= delta;
            assert!(open(&bad, &v).is_err(), "byte {i} ^ {delta:#x} still opens");
        }
    }
    // A changed text with the original signature is a bad signature, not a format error.
    let forged = published_note().replace("cryptography", "cryptographY");
    assert_eq!(
        open(forged.as_bytes(), &v),
        Err(NoteError::InvalidSignature { name: "PeterNeumann".into(), key_id: 0xc74f20a3 })
    );
}

#[test]
fn published_signer_key_reproduces_the_signature() {
    let signer: Signer = SKEY.parse().expect("published signer key");
    assert_eq!(signer.name(), "PeterNeumann");
    assert_eq!(signer.key_id(), 0xc74f20a3);
    assert_eq!(signer.verifier().to_string(), VKEY);
    assert_eq!(signer.to_key_string(), SKEY);
    // Ed25519 is deterministic: the very same note as Go's.
    assert_eq!(signer.sign(TEXT).unwrap(), published_note());
}

#[test]
fn key_id_is_sha256_of_name_newline_type_and_key() {
    let v = peter();
    let public = v.public_key();
    assert_eq!(public.to_vec(), BASE64.decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").unwrap()[1..]);
    let mut h = Sha256::new();
    h.update(b"PeterNeumann\n\x01");
    h.update(public);
    let digest = h.finalize();
    let want = u32::from_be_bytes(digest[..4].try_into().unwrap());
    assert_eq!(want, 0xc74f20a3);
    assert_eq!(v.key_id(), want);
    assert_eq!(ed25519_key_id("PeterNeumann", &public), want);
    assert_eq!(v.name(), "PeterNeumann");
    assert_eq!(v.to_string(), VKEY);
}

#[test]
fn verifier_key_parse_errors() {
    let bad = |s: &str| s.parse::<Verifier>().unwrap_err();
    assert!(matches!(bad("PeterNeumann"), KeyError::Malformed(_)));
    assert!(matches!(bad("PeterNeumann+c74f20a3"), KeyError::Malformed(_)));
    assert_eq!(
        bad("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        KeyError::KeyIdMismatch { stated: 0xc74f20a4, computed: 0xc74f20a3 }
    );
    assert_eq!(
        bad("PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        KeyError::BadKeyId("c74f20a".into())
    );
    assert_eq!(
        bad("PeterNeumann++74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        KeyError::BadKeyId(String::new())
    );
    assert_eq!(bad("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T"), KeyError::BadBase64);
    assert_eq!(
        bad("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        KeyError::InvalidName("Peter Neumann".into())
    );
    // Unknown algorithm byte (0x65) and a key of the wrong length.
    assert_eq!(
        bad("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        KeyError::UnknownAlgorithm(0x65)
    );
    assert_eq!(
        bad("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEw=="),
        KeyError::WrongKeyLength { got: 36 }
    );
    // Non-canonical base64 (non-zero bits after the last byte) is refused; Go's decoder
    // would accept it, but no conforming encoder writes it.
    assert_eq!(
        bad("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="),
        KeyError::BadBase64
    );
    // Upper-case hex in the key id is accepted, as by Go; the canonical form is lower.
    let upper: Verifier =
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW".parse().unwrap();
    assert_eq!(upper.to_string(), VKEY);
}

#[test]
fn signer_key_parse_errors() {
    let bad = |s: &str| s.parse::<Signer>().unwrap_err();
    assert!(matches!(bad(VKEY), KeyError::Malformed(_)));
    assert_eq!(
        bad("PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"),
        KeyError::KeyIdMismatch { stated: 0xc74f20a4, computed: 0xc74f20a3 }
    );
    assert_eq!(
        bad("PRIVATE+KEY+PeterNeuman+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"),
        KeyError::KeyIdMismatch {
            stated: 0xc74f20a3,
            computed: ed25519_key_id("PeterNeuman", &peter().public_key())
        }
    );
    // Every truncation of the key string is refused.
    for end in 0..SKEY.len() {
        assert!(SKEY[..end].parse::<Signer>().is_err(), "{:?}", &SKEY[..end]);
    }
}

#[test]
fn generated_key_round_trip() {
    let signer = Signer::generate("gigawatt.example/events", [0x5a; 32]).unwrap();
    let key_string = signer.to_key_string();
    assert!(key_string.starts_with("PRIVATE+KEY+gigawatt.example/events+"));
    let reloaded: Signer = key_string.parse().unwrap();
    assert_eq!(reloaded.key_id(), signer.key_id());
    assert_eq!(reloaded.verifier(), signer.verifier());

    let vkey = signer.verifier().to_string();
    let verifier: Verifier = vkey.parse().unwrap();
    assert_eq!(verifier.to_string(), vkey);
    assert_eq!(verifier, signer.verifier());

    let checkpoint = Checkpoint {
        origin: "gigawatt.example/events".into(),
        size: 123_456,
        root: [9; 32],
        extensions: vec![],
    };
    let note = signer.sign(&checkpoint.to_text().unwrap()).unwrap();
    let opened = open(note.as_bytes(), &[verifier]).unwrap();
    assert_eq!(Checkpoint::parse(&opened.text).unwrap(), checkpoint);
    // Another key of the same name is not this one: its signature is ignored, not checked.
    let stranger = Signer::generate("gigawatt.example/events", [0x33; 32]).unwrap();
    assert_eq!(
        open(note.as_bytes(), &[stranger.verifier()]),
        Err(NoteError::NoVerifiedSignature { unknown: 1 })
    );
    assert_eq!(open(note.as_bytes(), &[]), Err(NoteError::NoVerifiedSignature { unknown: 1 }));
}

#[test]
fn cosigned_note() {
    let log = Signer::from_seed("log.example", [1; 32]).unwrap();
    let witness = Signer::from_seed("witness.example", [2; 32]).unwrap();
    let text = "log.example\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    let by_log = log.sign(text).unwrap();
    let by_witness = witness.sign(text).unwrap();
    let witness_line = by_witness.strip_prefix(text).unwrap().strip_prefix('\n').unwrap();
    let both = format!("{by_log}{witness_line}");

    let all = [log.verifier(), witness.verifier()];
    let opened = open(both.as_bytes(), &all).unwrap();
    assert_eq!(opened.verified_by, ["log.example", "witness.example"]);
    // Only the log's key known: the witness line is an unknown signature, ignored.
    let opened = open(both.as_bytes(), &[log.verifier()]).unwrap();
    assert_eq!((opened.verified_by.len(), opened.unknown_signatures), (1, 1));

    // A known key whose signature is bad rejects the note even though another verifies.
    let mut blob = BASE64.decode(witness_line.trim_end().rsplit(' ').next().unwrap()).unwrap();
    blob[10] ^= 1;
    let tampered = format!("{by_log}\u{2014} witness.example {}\n", BASE64.encode(blob));
    assert_eq!(
        open(tampered.as_bytes(), &all),
        Err(NoteError::InvalidSignature { name: "witness.example".into(), key_id: witness.key_id() })
    );
}

#[test]
fn signature_count_limit() {
    let log = Signer::from_seed("log.example", [1; 32]).unwrap();
    let note = log.sign("hello\n").unwrap();
    let line = note.strip_prefix("hello\n\n").unwrap();
    let unknown_line = "\u{2014} other.example AAAAAAE=\n";
    let at_limit = format!("{note}{}", unknown_line.repeat(MAX_SIGNATURES - 1));
    assert_eq!(open(at_limit.as_bytes(), &[log.verifier()]).unwrap().unknown_signatures, 99);
    let over = format!("{note}{}", unknown_line.repeat(MAX_SIGNATURES));
    assert_eq!(
        open(over.as_bytes(), &[log.verifier()]),
        Err(NoteError::TooManySignatures { max: MAX_SIGNATURES })
    );
    // Repeated signatures by one key count once in `verified_by`.
    let twice = format!("{note}{line}");
    assert_eq!(open(twice.as_bytes(), &[log.verifier()]).unwrap().verified_by, ["log.example"]);
}

#[test]
fn malformed_signature_lines() {
    let log = Signer::from_seed("log.example", [1; 32]).unwrap();
    let v = [log.verifier()];
    let bad_line = |sig_line: &str| open(format!("hi\n\n{sig_line}\n").as_bytes(), &v);
    let reason = |r: Result<_, NoteError>| match r {
        Err(NoteError::MalformedSignatureLine { line: 3, reason }) => reason,
        other => panic!("{other:?}"),
    };
    reason(bad_line("- log.example AAAAAAE="));
    reason(bad_line("\u{2014}log.example AAAAAAE="));
    reason(bad_line("\u{2014} log.example"));
    reason(bad_line("\u{2014}  AAAAAAE="));
    reason(bad_line("\u{2014} log+example AAAAAAE="));
    reason(bad_line("\u{2014} log.example AAAAAA=="));
    reason(bad_line("\u{2014} log.example not*base64"));
    reason(bad_line("\u{2014} log.example AAAAAAE= extra"));
    reason(bad_line("\u{2014} log.example "));
}
