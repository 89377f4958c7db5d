//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys.
//!
//! A note is a text ending in a newline, a blank line, then signature lines
//! `— <key name> <base64(key id ‖ signature)>`. Keys are named; a key id is the first
//! four bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key). Key strings use the formats
//! of `golang.org/x/mod/sumdb/note`:
//!
//! * verifier key: `<name>+<key id, 8 hex digits>+<base64(0x01 ‖ public key)>`;
//! * signer key: `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ 32-byte seed)>`, for an
//!   operator to keep in a file.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Signature lines beyond this many make [`open`] reject the note (the spec requires
/// accepting at least 16; 100 is the Go implementation's limit).
pub const MAX_SIGNATURES: usize = 100;

/// The signature type byte C2SP assigns to Ed25519.
const ALG_ED25519: u8 = 0x01;

/// Starts every signature line: U+2014 EM DASH, then a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// The prefix of a signer (private) key string.
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

/// Why a key name or key string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// Key names must be non-empty and hold no Unicode space and no `+`.
    #[error("invalid key name {0:?}: it must be non-empty, without spaces or '+'")]
    InvalidName(String),
    /// The string does not have the `name+keyid+key` shape.
    #[error("malformed key string: {0}")]
    Malformed(&'static str),
    /// The key id field is not exactly 8 hex digits.
    #[error("key id {0:?} is not 8 hex digits")]
    BadKeyId(String),
    /// The key field is not standard padded base64.
    #[error("the key field is not valid standard base64")]
    BadBase64,
    /// The key is of a signature type this crate does not handle (only Ed25519, 0x01).
    #[error("unsupported signature type 0x{0:02x} (only Ed25519, 0x01, is supported)")]
    UnknownAlgorithm(u8),
    /// The key material has the wrong length.
    #[error("the key is {got} bytes long, Ed25519 keys are 32")]
    WrongKeyLength {
        /// Bytes after the type byte.
        got: usize,
    },
    /// The key id written in the string is not the one the name and key give.
    #[error("key id {stated:08x} does not match the name and key, which give {computed:08x}")]
    KeyIdMismatch {
        /// The key id written in the string.
        stated: u32,
        /// The key id computed from the name and public key.
        computed: u32,
    },
    /// The public key is not a usable Ed25519 point (invalid or of small order).
    #[error("the public key is not a valid Ed25519 key")]
    InvalidPublicKey,
}

/// Why a note could not be signed or opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteError {
    /// The note is not valid UTF-8.
    #[error("the note is not valid UTF-8 (at byte {offset})")]
    NotUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The note or text holds an ASCII control character other than newline.
    #[error("control character 0x{byte:02x} at byte {offset} (only newline is allowed)")]
    ControlCharacter {
        /// The offending byte.
        byte: u8,
        /// Its byte offset.
        offset: usize,
    },
    /// The text to sign does not end with a newline.
    #[error("the note text must end with a newline")]
    TextMissingFinalNewline,
    /// There is no blank line between the text and the signatures.
    #[error("no blank line separates the text from the signatures")]
    NoSignatureBlock,
    /// The blank line is followed by no signature line.
    #[error("the note has no signature lines after the blank line")]
    NoSignatures,
    /// The signature block does not end with a newline.
    #[error("the last signature line does not end with a newline")]
    UnterminatedSignature,
    /// A signature line is not `— <name> <base64(key id ‖ signature)>`.
    #[error("malformed signature line {line}: {reason}")]
    MalformedSignatureLine {
        /// 1-based line number within the note.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// More signature lines than [`MAX_SIGNATURES`].
    #[error("too many signatures (more than {max})")]
    TooManySignatures {
        /// The limit.
        max: usize,
    },
    /// Two different known keys share this name and key id, so a signature cannot be
    /// attributed.
    #[error("ambiguous verifiers: several known keys are named {name} with key id {key_id:08x}")]
    AmbiguousVerifier {
        /// The shared key name.
        name: String,
        /// The shared key id.
        key_id: u32,
    },
    /// A signature by a known key does not verify: the note was altered or forged.
    #[error("invalid signature by known key {name}+{key_id:08x}")]
    InvalidSignature {
        /// The key name.
        name: String,
        /// The key id.
        key_id: u32,
    },
    /// No signature is by a known key.
    #[error("no signature from a known key ({unknown} signatures from unknown keys)")]
    NoVerifiedSignature {
        /// Signature lines from keys not in the verifier list.
        unknown: usize,
    },
}

/// A note that [`open`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    /// The signed text, including its final newline.
    pub text: String,
    /// Names of the known keys whose signatures verified, in order of first appearance.
    pub verified_by: Vec<String>,
    /// Signature lines from keys not in the verifier list, which were ignored.
    pub unknown_signatures: usize,
}

/// Whether `name` may name a key: non-empty, no Unicode space, no `+`.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == '+')
}

fn check_name(name: &str) -> Result<(), KeyError> {
    if is_valid_name(name) { Ok(()) } else { Err(KeyError::InvalidName(name.to_owned())) }
}

/// The key id of an Ed25519 key: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[..4], big-endian.
pub fn ed25519_key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(public_key);
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Parses `<key id>+<base64(0x01 ‖ 32 bytes)>`, the tail of both key strings.
fn parse_id_and_key(rest: &str) -> Result<(u32, [u8; 32]), KeyError> {
    let (id_hex, key64) =
        rest.split_once('+').ok_or(KeyError::Malformed("expected <key id>+<base64 key> after the name"))?;
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyError::BadKeyId(id_hex.to_owned()));
    }
    let key_id = u32::from_str_radix(id_hex, 16).map_err(|_| KeyError::BadKeyId(id_hex.to_owned()))?;
    let raw = BASE64.decode(key64).map_err(|_| KeyError::BadBase64)?;
    let (&alg, key) = raw.split_first().ok_or(KeyError::WrongKeyLength { got: 0 })?;
    if alg != ALG_ED25519 {
        return Err(KeyError::UnknownAlgorithm(alg));
    }
    let key: [u8; 32] = key.try_into().map_err(|_| KeyError::WrongKeyLength { got: key.len() })?;
    Ok((key_id, key))
}

/// `0x01 ‖ key`, base64.
fn encode_key(key: &[u8; 32]) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(ALG_ED25519);
    raw.extend_from_slice(key);
    BASE64.encode(raw)
}

/// A named Ed25519 public key that checks note signatures.
///
/// Its string form ([`Display`](fmt::Display) / [`FromStr`]) is the verifier key
/// `<name>+<key id>+<base64(0x01 ‖ public key)>` that auditors configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl Verifier {
    /// A verifier for the Ed25519 `public_key` named `name`.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, KeyError> {
        check_name(name)?;
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| KeyError::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(KeyError::InvalidPublicKey);
        }
        Ok(Self { name: name.to_owned(), key_id: ed25519_key_id(name, public_key), key })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id: the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key).
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Whether `signature` is this key's signature of `text`.
    fn verifies(&self, text: &[u8], signature: &[u8]) -> bool {
        match Signature::from_slice(signature) {
            Ok(sig) => self.key.verify_strict(text, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, encode_key(self.key.as_bytes()))
    }
}

impl FromStr for Verifier {
    type Err = KeyError;

    /// Parses a verifier key `<name>+<key id>+<base64(0x01 ‖ public key)>`, checking that
    /// the key id matches the name and key.
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let (name, rest) =
            s.split_once('+').ok_or(KeyError::Malformed("expected <name>+<key id>+<base64 key>"))?;
        check_name(name)?;
        let (stated, key) = parse_id_and_key(rest)?;
        let verifier = Self::new(name, &key)?;
        if verifier.key_id != stated {
            return Err(KeyError::KeyIdMismatch { stated, computed: verifier.key_id });
        }
        Ok(verifier)
    }
}

/// A named Ed25519 private key that signs notes.
///
/// Its key string ([`Signer::to_key_string`] / [`FromStr`]) is
/// `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ seed)>`, the format of
/// `golang.org/x/mod/sumdb/note`. `Debug` never prints the key.
#[derive(Clone)]
pub struct Signer {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl Signer {
    /// The signer named `name` whose Ed25519 private key is `seed` (RFC 8032's 32-byte
    /// secret key).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let key_id = ed25519_key_id(name, key.verifying_key().as_bytes());
        Ok(Self { name: name.to_owned(), key_id, key })
    }

    /// A new signer from 32 uniformly random bytes the caller drew (for example with
    /// `getrandom`); the library itself never touches OS randomness. The bytes become
    /// the secret seed, so they must come from a cryptographic source and stay secret.
    pub fn generate(name: &str, random_bytes: [u8; 32]) -> Result<Self, KeyError> {
        Self::from_seed(name, random_bytes)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier, to publish.
    pub fn verifier(&self) -> Verifier {
        Verifier { name: self.name.clone(), key_id: self.key_id, key: self.key.verifying_key() }
    }

    /// The private key string `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ seed)>`.
    /// It holds the secret key: store it like one.
    pub fn to_key_string(&self) -> String {
        format!("{PRIVATE_PREFIX}{}+{:08x}+{}", self.name, self.key_id, encode_key(self.key.as_bytes()))
    }

    /// Signs `text` and returns the note: the text, a blank line and one signature line.
    ///
    /// The text must end with a newline and hold no ASCII control character other than
    /// newline, or no verifier could open the note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text.as_bytes())?;
        if !text.ends_with('\n') {
            return Err(NoteError::TextMissingFinalNewline);
        }
        let signature = self.key.sign(text.as_bytes()).to_bytes();
        let mut blob = Vec::with_capacity(4 + signature.len());
        blob.extend_from_slice(&self.key_id.to_be_bytes());
        blob.extend_from_slice(&signature);
        Ok(format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, BASE64.encode(blob)))
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl FromStr for Signer {
    type Err = KeyError;

    /// Parses a private key string `PRIVATE+KEY+<name>+<key id>+<base64(0x01 ‖ seed)>`,
    /// checking that the key id matches the name and the derived public key.
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let rest = s
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or(KeyError::Malformed("a private key string starts with PRIVATE+KEY+"))?;
        let (name, rest) = rest
            .split_once('+')
            .ok_or(KeyError::Malformed("expected PRIVATE+KEY+<name>+<key id>+<base64 key>"))?;
        check_name(name)?;
        let (stated, seed) = parse_id_and_key(rest)?;
        let signer = Self::from_seed(name, seed)?;
        if signer.key_id != stated {
            return Err(KeyError::KeyIdMismatch { stated, computed: signer.key_id });
        }
        Ok(signer)
    }
}

/// Checks that `bytes` are UTF-8 without ASCII control characters other than newline.
fn check_text(bytes: &[u8]) -> Result<&str, NoteError> {
    let text = std::str::from_utf8(bytes).map_err(|e| NoteError::NotUtf8 { offset: e.valid_up_to() })?;
    if let Some(offset) = bytes.iter().position(|&b| b < 0x20 && b != b'\n') {
        return Err(NoteError::ControlCharacter { byte: bytes[offset], offset });
    }
    Ok(text)
}

/// Opens a signed note: checks its format, verifies every signature by a key in
/// `verifiers`, and returns the text.
///
/// Following the spec: signatures by unknown keys (name and key id not both matching a
/// verifier) are ignored; a signature by a known key that fails to verify rejects the
/// whole note; and at least one known key must have signed. Notes with more than
/// [`MAX_SIGNATURES`] signature lines are rejected.
pub fn open(note: &[u8], verifiers: &[Verifier]) -> Result<OpenedNote, NoteError> {
    let note = check_text(note)?;
    // The text is separated from the signatures by the last blank line.
    let split = note.rfind("\n\n").ok_or(NoteError::NoSignatureBlock)?;
    let (text, sigs) = (&note[..=split], &note[split + 2..]);
    if sigs.is_empty() {
        return Err(NoteError::NoSignatures);
    }
    if !sigs.ends_with('\n') {
        return Err(NoteError::UnterminatedSignature);
    }
    let first_sig_line = text.matches('\n').count() + 2;

    let mut verified_by: Vec<String> = Vec::new();
    let mut unknown = 0;
    for (i, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
        let line_no = first_sig_line + i;
        let malformed = |reason| NoteError::MalformedSignatureLine { line: line_no, reason };
        if i >= MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures { max: MAX_SIGNATURES });
        }
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or_else(|| malformed("it does not start with an em dash and a space"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| malformed("expected a key name, a space and a base64 signature"))?;
        if !is_valid_name(name) {
            return Err(malformed("invalid key name"));
        }
        let blob = BASE64.decode(b64).map_err(|_| malformed("the signature is not valid base64"))?;
        let (id, signature) = match blob.split_first_chunk::<4>() {
            Some((id, signature)) if !signature.is_empty() => (u32::from_be_bytes(*id), signature),
            _ => return Err(malformed("the signature is shorter than a key id and one byte")),
        };

        let mut known = verifiers.iter().filter(|v| v.name == name && v.key_id == id);
        let Some(verifier) = known.next() else {
            unknown += 1;
            continue;
        };
        if known.any(|other| other.key != verifier.key) {
            return Err(NoteError::AmbiguousVerifier { name: name.to_owned(), key_id: id });
        }
        if !verifier.verifies(text.as_bytes(), signature) {
            return Err(NoteError::InvalidSignature { name: name.to_owned(), key_id: id });
        }
        if !verified_by.iter().any(|n| n == name) {
            verified_by.push(name.to_owned());
        }
    }
    if verified_by.is_empty() {
        return Err(NoteError::NoVerifiedSignature { unknown });
    }
    Ok(OpenedNote { text: text.to_owned(), verified_by, unknown_signatures: unknown })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::from_seed("example.com/log", [42; 32]).unwrap()
    }

    #[test]
    fn names() {
        assert!(is_valid_name("example.com/log"));
        for bad in ["", "a b", "a+b", "a\u{a0}b", "a\tb", "a\u{3000}b"] {
            assert!(!is_valid_name(bad), "{bad:?}");
            assert_eq!(Signer::from_seed(bad, [1; 32]).unwrap_err(), KeyError::InvalidName(bad.to_owned()));
        }
    }

    #[test]
    fn sign_refuses_bad_text() {
        let s = signer();
        assert_eq!(s.sign("no newline"), Err(NoteError::TextMissingFinalNewline));
        assert_eq!(s.sign(""), Err(NoteError::TextMissingFinalNewline));
        assert_eq!(s.sign("tab\there\n"), Err(NoteError::ControlCharacter { byte: b'\t', offset: 3 }));
    }

    #[test]
    fn text_with_blank_lines_round_trips() {
        let s = signer();
        for text in ["\n", "a\n\nb\n", "a\n\n", "a\n\n\n"] {
            let note = s.sign(text).unwrap();
            let opened = open(note.as_bytes(), &[s.verifier()]).unwrap();
            assert_eq!(opened.text, text);
        }
    }

    #[test]
    fn format_errors() {
        let s = signer();
        let v = [s.verifier()];
        let note = s.sign("hello\n").unwrap();
        assert_eq!(open(b"hello\n", &v), Err(NoteError::NoSignatureBlock));
        assert_eq!(open(b"hello\n\n", &v), Err(NoteError::NoSignatures));
        assert_eq!(open(note.trim_end_matches('\n').as_bytes(), &v), Err(NoteError::UnterminatedSignature));
        assert_eq!(
            open(note.replace('\u{2014}', "-").as_bytes(), &v),
            Err(NoteError::MalformedSignatureLine {
                line: 3,
                reason: "it does not start with an em dash and a space"
            })
        );
        assert_eq!(open(b"a\r\n\n", &v), Err(NoteError::ControlCharacter { byte: b'\r', offset: 1 }));
        assert_eq!(open(b"a\xff\n\n", &v), Err(NoteError::NotUtf8 { offset: 1 }));
    }

    #[test]
    fn debug_hides_the_secret() {
        let s = signer();
        let debug = format!("{s:?}");
        assert!(debug.contains("example.com/log"));
        let secret = s.to_key_string();
        let seed64 = secret.rsplit('+').next().unwrap();
        assert!(!debug.contains(seed64));
    }
}
