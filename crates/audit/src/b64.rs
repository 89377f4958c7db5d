//! Standard base64 with padding (RFC 4648 §4), decoded strictly and fast.
//!
//! Strict: the length is a multiple of 4, `=` appears only as the one or two last
//! characters, and the bits that padding leaves over are zero. So each byte string has
//! exactly one encoding, and two texts that decode to the same bytes are the same text:
//! a changed character in a `leaf` or a proof hash can never decode to the same value.
//! (This is what the `base64` crate's standard engine accepts; the tests compare them.)
//!
//! Fast: eight characters at a time, two by two through a lookup table of pairs, which
//! matters when every record's leaf is decoded.

/// Marks a byte that is not in the alphabet (its high bit is what the decoder tests).
const BAD: u8 = 0xFF;

/// Each byte's 6-bit value, or [`BAD`].
const DECODE: [u8; 256] = {
    let mut t = [BAD; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Each pair of bytes' 12-bit value (first byte high), or [`BAD2`]: halves the lookups.
static DECODE2: [u16; 65536] = {
    let mut t = [BAD2; 65536];
    let mut i = 0;
    while i < 65536 {
        let (hi, lo) = (DECODE[i >> 8], DECODE[i & 0xFF]);
        if hi != BAD && lo != BAD {
            t[i] = (hi as u16) << 6 | lo as u16;
        }
        i += 1;
    }
    t
};

/// Marks a pair that is not two alphabet characters.
const BAD2: u16 = 0x8000;

/// The length `text` decodes to, if its length and padding are well formed.
fn decoded_len(text: &[u8]) -> Option<usize> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let pad = match text {
        [.., b'=', b'='] => 2,
        [.., b'='] => 1,
        _ => 0,
    };
    Some(text.len() / 4 * 3 - pad)
}

/// Decodes `text` into `out`, which must be exactly [`decoded_len`] long.
fn decode_exact(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.is_empty() {
        return Some(());
    }
    let (body, last) = text.split_at(text.len() - 4);
    let whole = body.len() / 8;
    let (out_body, out_rest) = out.split_at_mut_checked(whole * 6)?;
    // Eight characters to six bytes; a bad character anywhere is noticed at the end.
    let mut bad = 0u16;
    for (chars, bytes) in body.chunks_exact(8).zip(out_body.chunks_exact_mut(6)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chars);
        let x = u64::from_be_bytes(word);
        let pair = |shift: u32| DECODE2[usize::from((x >> shift) as u16)];
        let (a, b, c, d) = (pair(48), pair(32), pair(16), pair(0));
        bad |= a | b | c | d;
        let n = u64::from(a) << 36 | u64::from(b) << 24 | u64::from(c) << 12 | u64::from(d);
        bytes.copy_from_slice(&n.to_be_bytes()[2..]);
    }
    if bad & BAD2 != 0 {
        return None;
    }
    let mut o = 0;
    if let Some(four) = body.get(whole * 8..whole * 8 + 4) {
        out_rest.get_mut(..3)?.copy_from_slice(&quantum(four)?[1..]);
        o = 3;
    }
    let out = out_rest;
    match last {
        [a, b, b'=', b'='] => {
            let n = quantum(&[*a, *b, b'A', b'A'])?;
            // The second character's last four bits are left over: zero.
            (n[2] == 0).then_some(())?;
            *out.get_mut(o)? = n[1];
        }
        [a, b, c, b'='] => {
            let n = quantum(&[*a, *b, *c, b'A'])?;
            // The third character's last two bits are left over: zero.
            (n[3] == 0).then_some(())?;
            out.get_mut(o..o + 2)?.copy_from_slice(&n[1..3]);
        }
        _ => out.get_mut(o..o + 3)?.copy_from_slice(&quantum(last)?[1..]),
    }
    Some(())
}

/// Four characters as a big-endian 24-bit number (in the low three bytes).
fn quantum(chars: &[u8]) -> Option<[u8; 4]> {
    let mut n: u32 = 0;
    let mut bad = 0;
    for &c in chars {
        let v = DECODE[c as usize];
        bad |= v;
        n = n << 6 | u32::from(v);
    }
    (bad & 0x80 == 0).then_some(n.to_be_bytes())
}

/// Decodes `text`, replacing the contents of `out`; `false` (with `out` unspecified)
/// when it is not strict standard base64.
pub(crate) fn decode_into(text: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(len) = decoded_len(text) else { return false };
    out.clear();
    out.resize(len, 0);
    decode_exact(text, out).is_some()
}

/// Decodes the text of a SHA-256 hash: 44 characters.
pub(crate) fn decode_hash(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 44 || decoded_len(text) != Some(32) {
        return None;
    }
    let mut out = [0u8; 32];
    decode_exact(text, &mut out)?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;

    use super::*;

    fn ours(text: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![1, 2, 3];
        decode_into(text, &mut out).then_some(out)
    }

    #[test]
    fn examples() {
        assert_eq!(ours(b""), Some(vec![]));
        assert_eq!(ours(b"Zg=="), Some(b"f".to_vec()));
        assert_eq!(ours(b"Zm8="), Some(b"fo".to_vec()));
        assert_eq!(ours(b"Zm9v"), Some(b"foo".to_vec()));
        assert_eq!(ours(b"Zm9vYmFy"), Some(b"foobar".to_vec()));
        for bad in [
            &b"Zg="[..],
            b"Zh==",
            b"Zm9=",
            b"Zg",
            b"Z===",
            b"====",
            b"Zm9v=",
            b"Zm=v",
            b"Zm9-",
            b"Zm9_",
            b"Zm9\n",
        ] {
            assert_eq!(ours(bad), None, "{}", String::from_utf8_lossy(bad));
            assert!(STANDARD.decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let h = [0xa5u8; 32];
        assert_eq!(decode_hash(STANDARD.encode(h).as_bytes()), Some(h));
        assert_eq!(decode_hash(STANDARD.encode([1u8; 31]).as_bytes()), None);
        assert_eq!(decode_hash(STANDARD.encode([1u8; 33]).as_bytes()), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        #[test]
        fn agrees_with_the_base64_crate(data in prop::collection::vec(any::<u8>(), 0..80), at in any::<usize>(), to in any::<u8>()) {
            let text = STANDARD.encode(&data);
            prop_assert_eq!(ours(text.as_bytes()), Some(data));
            // Any one character changed: both refuse it, or both decode it alike.
            let mut changed = text.into_bytes();
            if !changed.is_empty() {
                let at = at % changed.len();
                changed[at] = to;
            }
            prop_assert_eq!(ours(&changed), STANDARD.decode(&changed).ok(), "{}", String::from_utf8_lossy(&changed));
        }

        #[test]
        fn agrees_on_arbitrary_text(text in "[A-Za-z0-9+/=]{0,24}") {
            prop_assert_eq!(ours(text.as_bytes()), STANDARD.decode(&text).ok(), "{}", text);
        }
    }
}
