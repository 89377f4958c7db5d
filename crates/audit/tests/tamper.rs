//! Any change to an export makes it fail verification, and the failure names the line
//! that was changed.
//!
//! Byte changes are tried at every position of every line of a tenant's export (and at
//! sampled positions of the full export). To keep that affordable in a debug build,
//! each try resumes from a snapshot of the verification before the changed line
//! ([`Verification`] is `Clone`), instead of verifying the unchanged prefix again; a
//! sample of tries also runs the plain [`gigawatt_audit::verify`] on the whole file.
//!
//! The one byte change that verifies: the file's very last byte, its final newline,
//! turned into other JSON whitespace (space, tab, carriage return). That is whitespace
//! after the trailer's closing brace — outside every `leaf`, `proof` and `note` string
//! and outside the signed content — and a JSON reader reads the same line either way.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{Log, keys, lines, realistic_log, verify};
use gigawatt_audit::{Check, Report, Verification};
use gigawatt_transparency::Verifier;

/// The verification state after each line: `states[i]` has read lines `0..i`.
fn snapshots<'k>(file: &[u8], keys: &'k [Verifier]) -> Vec<Verification<'k>> {
    let mut v = Verification::new(keys);
    let mut states = vec![v.clone()];
    for line in lines(file) {
        v.line(line.strip_suffix(b"\n").unwrap_or(line)).unwrap();
        states.push(v.clone());
    }
    states
}

/// Verifies `head` then `tail` (the file from some line on, split anywhere) starting
/// from a snapshot.
fn resume(mut v: Verification<'_>, head: &[u8], tail: &[u8]) -> Report {
    let mut pending: Vec<u8> = Vec::new();
    for part in [head, tail] {
        for piece in lines(part) {
            pending.extend_from_slice(piece);
            if !pending.ends_with(b"\n") {
                continue; // joins the next piece
            }
            let done = v.line(&pending[..pending.len() - 1]).is_err();
            pending.clear();
            if done {
                return v.finish();
            }
        }
    }
    if !pending.is_empty() {
        let _ = v.line(&pending);
    }
    v.finish()
}

/// A tiny deterministic generator.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Whether changing the byte at `pos` of `file` into `to` may verify: only the final
/// newline turned into JSON whitespace (see the module docs).
fn harmless(file: &[u8], pos: usize, to: u8) -> bool {
    pos == file.len() - 1 && matches!(to, b' ' | b'\t' | b'\r')
}

/// Changes the byte at each of `positions` of line `l` into each of `variants(byte)`, and
/// checks that the file then fails at line `l + 1` (1-based).
fn tamper_line(
    file: &[u8],
    states: &[Verification<'_>],
    l: usize,
    positions: impl Iterator<Item = usize>,
    variants: &dyn Fn(u8, &mut Rng) -> Vec<u8>,
    rng: &mut Rng,
) -> usize {
    let starts: Vec<usize> = std::iter::once(0)
        .chain(lines(file).iter().scan(0, |at, l| {
            *at += l.len();
            Some(*at)
        }))
        .collect();
    let (start, end) = (starts[l], starts[l + 1]);
    let mut tried = 0;
    for offset in positions {
        let pos = start + offset;
        assert!(pos < end);
        for to in variants(file[pos], rng) {
            if to == file[pos] {
                continue;
            }
            let mut changed = file[start..end].to_vec();
            changed[offset] = to;
            let report = resume(states[l].clone(), &changed, &file[end..]);
            tried += 1;
            if harmless(file, pos, to) {
                continue;
            }
            let line = || String::from_utf8_lossy(&file[start..end]).into_owned();
            let f = report.first_failure.unwrap_or_else(|| {
                panic!(
                    "changing byte {offset} of line {} from {:?} to {to:?} still verifies: {}",
                    l + 1,
                    file[pos] as char,
                    line()
                )
            });
            assert_eq!(
                f.line,
                l as u64 + 1,
                "changing byte {offset} of line {} to {to:?}: {} ({})",
                l + 1,
                f.message,
                line()
            );
        }
    }
    tried
}

/// Each byte flipped in its lowest bit, and for one byte in four, also replaced by a
/// random byte.
fn flips(b: u8, rng: &mut Rng) -> Vec<u8> {
    let mut v = vec![b ^ 0x01];
    if rng.below(4) == 0 {
        v.push(rng.below(256) as u8);
    }
    v
}

fn one_flip(b: u8, _: &mut Rng) -> Vec<u8> {
    vec![b ^ 0x01]
}

#[test]
fn every_byte_of_a_tenant_export_matters() {
    let log = Log::new(realistic_log().records);
    let file = log.tenant_export("acme");
    let keys = keys();
    let states = snapshots(&file, &keys);
    let all = lines(&file);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut tried = 0;
    for (l, line) in all.iter().enumerate() {
        let signed = l < 3 || l == all.len() - 1;
        if signed {
            // Checkpoints and the trailer: each try checks an Ed25519 signature (slow in
            // a debug build), so one change per byte of the first checkpoint and of the
            // trailer, and a sample of the others.
            let every = l == 0 || l == all.len() - 1;
            let positions: Vec<usize> = if every {
                (0..line.len()).collect()
            } else {
                (0..40).map(|_| rng.below(line.len() as u64) as usize).collect()
            };
            tried += tamper_line(&file, &states, l, positions.into_iter(), &one_flip, &mut rng);
        } else {
            tried += tamper_line(&file, &states, l, 0..line.len(), &flips, &mut rng);
        }
    }
    assert!(tried > file.len(), "{tried}");
}

#[test]
fn sampled_bytes_of_the_full_export_matter() {
    let log = Log::new(realistic_log().records);
    let file = log.full_export();
    let keys = keys();
    let states = snapshots(&file, &keys);
    let all = lines(&file);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Every byte of a placement line (the richest record), and random bytes elsewhere.
    let placement = all.iter().position(|l| l.windows(17).any(|w| w == b"\"workload-placed\"")).unwrap();
    tamper_line(&file, &states, placement, 0..all[placement].len(), &flips, &mut rng);
    for _ in 0..3000 {
        let l = 3 + rng.below(all.len() as u64 - 4) as usize; // consistency and record lines
        let offset = rng.below(all[l].len() as u64) as usize;
        tamper_line(&file, &states, l, std::iter::once(offset), &flips, &mut rng);
    }
    // The plain verifier on whole files, for a sample.
    let starts: Vec<usize> = all
        .iter()
        .scan(0, |at, l| {
            let s = *at;
            *at += l.len();
            Some(s)
        })
        .collect();
    for _ in 0..40 {
        let l = rng.below(all.len() as u64) as usize;
        let pos = starts[l] + rng.below(all[l].len() as u64) as usize;
        let mut changed = file.clone();
        changed[pos] ^= 0x04;
        let f = verify(&changed).first_failure.unwrap();
        assert_eq!(f.line, l as u64 + 1, "{}", f.message);
    }
}

#[test]
fn the_final_newline_is_the_only_harmless_byte() {
    let log = Log::new(realistic_log().records);
    let file = log.tenant_export("bank");
    for to in [b' ', b'\t', b'\r'] {
        let mut changed = file.clone();
        *changed.last_mut().unwrap() = to;
        assert!(verify(&changed).ok);
    }
    let mut changed = file.clone();
    *changed.last_mut().unwrap() = b'x';
    assert_eq!(verify(&changed).first_failure.map(|f| f.check), Some(Check::Json));
    // Without the final newline, the file is the same JSON Lines.
    assert!(verify(&file[..file.len() - 1]).ok);
}

#[test]
fn removing_duplicating_swapping_and_truncating_lines_fail() {
    let log = Log::new(realistic_log().records);
    let file = log.tenant_export("clinic");
    let keys = keys();
    let states = snapshots(&file, &keys);
    let all = lines(&file);
    let n = all.len();
    // The file with lines `from..` replaced by `lines`, verified from the snapshot at
    // `from` (the lines before are unchanged).
    let try_lines = |from: usize, lines: &[&[u8]], what: &str| {
        let r = resume(states[from].clone(), &lines.concat(), b"");
        assert!(!r.ok, "{what} still verifies");
        r.first_failure.unwrap()
    };

    // Removing any one line.
    for l in 0..n {
        let rest: Vec<&[u8]> = all[l + 1..].to_vec();
        let f = try_lines(l, &rest, &format!("removing line {}", l + 1));
        // Removing a record is caught at the trailer at the latest.
        assert!(f.line as usize <= n, "{f:?}");
    }
    // Duplicating any line.
    for l in 0..n {
        let rest: Vec<&[u8]> = std::iter::once(all[l]).chain(all[l..].iter().copied()).collect();
        let f = try_lines(l, &rest, &format!("duplicating line {}", l + 1));
        if l >= 3 {
            assert_eq!(f.line as usize, l + 2, "{f:?}");
        }
    }
    // Swapping two record lines: neighbours, and far apart.
    for a in 5..n - 2 {
        let mut rest: Vec<&[u8]> = all[a..].to_vec();
        rest.swap(0, 1);
        let f = try_lines(a, &rest, &format!("swapping lines {} and {}", a + 1, a + 2));
        assert_eq!((f.line as usize, f.check), (a + 2, Check::Index), "{f:?}");
    }
    for (a, b) in [(5, n - 2), (6, n / 2), (n / 3, 2 * n / 3)] {
        let mut rest: Vec<&[u8]> = all[a..].to_vec();
        rest.swap(0, b - a);
        try_lines(a, &rest, &format!("swapping lines {} and {}", a + 1, b + 1));
    }
    // Swapping checkpoints, and moving the trailer.
    let mut ls = all.clone();
    ls.swap(0, 1);
    try_lines(0, &ls, "swapping checkpoints");
    let mut ls = all.clone();
    let trailer = ls.pop().unwrap();
    ls.insert(n / 2, trailer);
    try_lines(0, &ls, "moving the trailer");

    // Truncating at every line boundary, and inside every line.
    for l in 0..n {
        let f = states[l].clone().finish().first_failure.unwrap();
        assert_eq!((f.line as usize, f.check), (l + 1, Check::Order), "cutting after line {l}: {f:?}");
        let half = &all[l][..all[l].len() / 2];
        let f = try_lines(l, &[half], &format!("cutting inside line {}", l + 1));
        assert_eq!(f.line as usize, l + 1, "{f:?}");
    }

    // The same, for a sample, with the plain verifier over whole files.
    let join = |ls: &[&[u8]]| ls.concat();
    for l in [0, 3, 5, n / 2, n - 1] {
        let mut ls = all.clone();
        ls.remove(l);
        assert!(!verify(&join(&ls)).ok, "removing line {}", l + 1);
        let mut ls = all.clone();
        ls.insert(l, all[l]);
        assert!(!verify(&join(&ls)).ok, "duplicating line {}", l + 1);
        let r = verify(&join(&all[..l]));
        assert_eq!(r.first_failure.map(|f| (f.line as usize, f.check)), Some((l + 1, Check::Order)));
    }
    let mut ls = all.clone();
    ls.swap(n / 2, n / 2 + 1);
    assert_eq!(verify(&join(&ls)).first_failure.map(|f| f.line as usize), Some(n / 2 + 2));
}
