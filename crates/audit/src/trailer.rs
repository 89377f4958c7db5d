//! The text of the export trailer, the signed note that commits to which records an
//! export holds (`docs/audit.md`, "The export file", item 4):
//!
//! ```text
//! gigawatt audit export
//! origin gigawatt.example/log
//! tenant clinic
//! from *
//! to 2026-01-31T23:59:59.999Z
//! tree_size 12345
//! records 87
//! indices 5d41402abc4b2a76b9719d911017c592…
//! ```

use std::fmt::Write as _;

use gigawatt_transparency::Hash;

/// The first line of the trailer text.
const TITLE: &str = "gigawatt audit export";

/// The trailer's statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trailer {
    /// The log's origin (its checkpoints' first line).
    pub origin: String,
    /// The tenant whose records the export holds, `None` for all (`*`).
    pub tenant: Option<String>,
    /// The first instant covered (RFC 3339), `None` for the log's start (`*`).
    pub from: Option<String>,
    /// The last instant covered (RFC 3339), `None` for the log's end (`*`).
    pub to: Option<String>,
    /// The tree size every record is proven against.
    pub tree_size: u64,
    /// How many record lines the export holds.
    pub records: u64,
    /// SHA-256 of the record indices (8 bytes big endian each), in file order.
    pub indices: Hash,
}

/// Whether `value` can stand on a trailer line: non-empty, not `*` (which means "any"),
/// and without control characters (a newline would make the text ambiguous, and a
/// signed note holds no other).
pub(crate) fn valid_value(value: &str) -> bool {
    !value.is_empty() && value != "*" && !value.chars().any(char::is_control)
}

impl Trailer {
    /// The note text, ending with a newline.
    pub(crate) fn to_text(&self) -> String {
        let or_star = |v: &Option<String>| v.clone().unwrap_or_else(|| "*".into());
        let mut hex = String::with_capacity(64);
        for b in self.indices {
            let _ = write!(hex, "{b:02x}");
        }
        format!(
            "{TITLE}\norigin {}\ntenant {}\nfrom {}\nto {}\ntree_size {}\nrecords {}\nindices {hex}\n",
            self.origin,
            or_star(&self.tenant),
            or_star(&self.from),
            or_star(&self.to),
            self.tree_size,
            self.records,
        )
    }

    /// Reads a note text as [`Trailer::to_text`] writes it, exactly.
    pub(crate) fn parse(text: &str) -> Result<Trailer, String> {
        let body = text.strip_suffix('\n').ok_or("the trailer text does not end with a newline")?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [title, origin, tenant, from, to, tree_size, records, indices] = lines.as_slice() else {
            return Err(format!("the trailer text has {} lines, not 8", lines.len()));
        };
        if *title != TITLE {
            return Err(format!("the trailer text does not start with {TITLE:?}"));
        }
        let field = |line: &str, name: &str| -> Result<String, String> {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .filter(|v| *v == "*" || valid_value(v))
                .map(str::to_string)
                .ok_or_else(|| format!("the trailer line {line:?} is not `{name} <value>`"))
        };
        let optional = |line: &str, name: &str| field(line, name).map(|v| (v != "*").then_some(v));
        let number = |line: &str, name: &str| -> Result<u64, String> {
            let v = field(line, name)?;
            let canonical = v == "0" || (!v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit()));
            v.parse()
                .ok()
                .filter(|_| canonical)
                .ok_or_else(|| format!("the trailer's {name} {v:?} is not a number"))
        };
        let origin = field(origin, "origin")?;
        if origin == "*" {
            return Err("the trailer names no origin".into());
        }
        let hex = field(indices, "indices")?;
        let indices = parse_hex(&hex)
            .ok_or_else(|| format!("the trailer's indices {hex:?} are not 64 lower-case hex digits"))?;
        Ok(Trailer {
            origin,
            tenant: optional(tenant, "tenant")?,
            from: optional(from, "from")?,
            to: optional(to, "to")?,
            tree_size: number(tree_size, "tree_size")?,
            records: number(records, "records")?,
            indices,
        })
    }
}

/// 64 lower-case hex digits as 32 bytes.
fn parse_hex(hex: &str) -> Option<Hash> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_variants() {
        let t = Trailer {
            origin: "test.example/log".into(),
            tenant: Some("clinic".into()),
            from: None,
            to: Some("2026-01-31T23:59:59.999Z".into()),
            tree_size: 12345,
            records: 0,
            indices: [0xab; 32],
        };
        let text = t.to_text();
        assert!(text.starts_with("gigawatt audit export\norigin test.example/log\ntenant clinic\nfrom *\n"));
        assert_eq!(Trailer::parse(&text), Ok(t));
        for bad in [
            text.trim_end().to_string(),
            text.replace("tree_size 12345", "tree_size 012345"),
            text.replace("records 0", "records -0"),
            text.replace("tenant clinic", "tenant\tclinic"),
            text.replace("tenant clinic", "tenant"),
            text.replace("origin test.example/log", "origin *"),
            text.replace("abab", "ABAB"),
            format!("{text}extra\n"),
            text.replace("gigawatt", "Gigawatt"),
        ] {
            assert!(Trailer::parse(&bad).is_err(), "{bad}");
        }
    }
}
