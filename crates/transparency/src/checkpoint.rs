//! The C2SP `tlog-checkpoint` note text (<https://c2sp.org/tlog-checkpoint>): the log's
//! origin, its size and its root, which the log signs as a [signed note](crate::note).
//!
//! ```text
//! example.com/behind-the-sofa
//! 20852163
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use thiserror::Error;

use crate::hash::Hash;

/// A log's signed statement of its tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Identifies the log, e.g. `example.com/log42`. Non-empty.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 root of the tree at `size`.
    pub root: Hash,
    /// Opaque extension lines, each non-empty (their use is NOT RECOMMENDED by the spec).
    pub extensions: Vec<String>,
}

/// Why a checkpoint text was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    /// The text does not end with a newline.
    #[error("the checkpoint text must end with a newline")]
    MissingFinalNewline,
    /// Fewer than the three mandatory lines.
    #[error("a checkpoint has at least 3 lines (origin, size, root), this one has {0}")]
    TooFewLines(usize),
    /// The origin line is empty.
    #[error("the origin (line 1) is empty")]
    EmptyOrigin,
    /// The size line is not a decimal number without leading zeros that fits in 64 bits.
    #[error(
        "the tree size (line 2) {0:?} is not a decimal number without leading zeros that fits in 64 bits"
    )]
    BadSize(String),
    /// The root line is not standard padded base64.
    #[error("the root hash (line 3) {0:?} is not standard padded base64")]
    BadRootEncoding(String),
    /// The root line decodes to something other than 32 bytes.
    #[error("the root hash (line 3) is {0} bytes, a SHA-256 root is 32")]
    BadRootLength(usize),
    /// An extension line is empty.
    #[error("extension line {line} is empty")]
    EmptyExtension {
        /// 1-based line number in the text.
        line: usize,
    },
    /// A line holds an ASCII control character (other than the newlines between lines).
    #[error("line {line} holds control character 0x{byte:02x}")]
    ControlCharacter {
        /// 1-based line number in the text.
        line: usize,
        /// The offending byte.
        byte: u8,
    },
}

fn check_line(line: &str, number: usize) -> Result<(), CheckpointError> {
    match line.bytes().find(|&b| b < 0x20) {
        Some(byte) => Err(CheckpointError::ControlCharacter { line: number, byte }),
        None => Ok(()),
    }
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n`, then one line per extension.
    ///
    /// Errors if the origin or an extension is empty or holds a newline or other control
    /// character, since the text would then not parse back to this checkpoint.
    pub fn to_text(&self) -> Result<String, CheckpointError> {
        if self.origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        check_line(&self.origin, 1)?;
        for (i, ext) in self.extensions.iter().enumerate() {
            let line = i + 4;
            if ext.is_empty() {
                return Err(CheckpointError::EmptyExtension { line });
            }
            check_line(ext, line)?;
        }
        let mut text = format!("{}\n{}\n{}\n", self.origin, self.size, BASE64.encode(self.root));
        for ext in &self.extensions {
            text.push_str(ext);
            text.push('\n');
        }
        Ok(text)
    }

    /// Parses a checkpoint note text, for example the
    /// [`text`](crate::OpenedNote::text) of a note that [`open`](crate::open) verified.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError::MissingFinalNewline)?;
        let lines: Vec<&str> = body.split('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            check_line(line, i + 1)?;
        }
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines(lines.len()));
        };
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(size).ok_or_else(|| CheckpointError::BadSize((*size).to_owned()))?;
        let decoded =
            BASE64.decode(root).map_err(|_| CheckpointError::BadRootEncoding((*root).to_owned()))?;
        let root: Hash =
            decoded.as_slice().try_into().map_err(|_| CheckpointError::BadRootLength(decoded.len()))?;
        for (i, ext) in extensions.iter().enumerate() {
            if ext.is_empty() {
                return Err(CheckpointError::EmptyExtension { line: i + 4 });
            }
        }
        Ok(Self {
            origin: (*origin).to_owned(),
            size,
            root,
            extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
        })
    }
}

/// ASCII decimal, no sign, no leading zero unless the number is 0, at most `u64::MAX`.
fn parse_size(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    #[test]
    fn spec_example_round_trips() {
        let c = Checkpoint::parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(c.origin, "example.com/behind-the-sofa");
        assert_eq!(c.size, 20_852_163);
        assert!(c.extensions.is_empty());
        assert_eq!(c.to_text().unwrap(), SPEC_EXAMPLE);
    }

    #[test]
    fn extensions_round_trip() {
        let text = format!("{SPEC_EXAMPLE}ext one\next two\n");
        let c = Checkpoint::parse(&text).unwrap();
        assert_eq!(c.extensions, ["ext one", "ext two"]);
        assert_eq!(c.to_text().unwrap(), text);
    }

    #[test]
    fn precise_errors() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let check = |text: String, want: CheckpointError| {
            assert_eq!(Checkpoint::parse(&text), Err(want), "{text:?}");
        };
        check(format!("o\n1\n{root}"), CheckpointError::MissingFinalNewline);
        check("o\n1\n".into(), CheckpointError::TooFewLines(2));
        check(format!("\n1\n{root}\n"), CheckpointError::EmptyOrigin);
        for size in ["01", "+1", "-1", "", "1 ", "0x1", "18446744073709551616"] {
            check(format!("o\n{size}\n{root}\n"), CheckpointError::BadSize(size.into()));
        }
        assert_eq!(Checkpoint::parse(&format!("o\n0\n{root}\n")).unwrap().size, 0);
        assert_eq!(Checkpoint::parse(&format!("o\n18446744073709551615\n{root}\n")).unwrap().size, u64::MAX);
        let unpadded = root.trim_end_matches('=');
        check(format!("o\n1\n{unpadded}\n"), CheckpointError::BadRootEncoding(unpadded.into()));
        let url_safe = "CsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=";
        check(format!("o\n1\n{url_safe}\n"), CheckpointError::BadRootEncoding(url_safe.into()));
        check("o\n1\nAAAA\n".into(), CheckpointError::BadRootLength(3));
        check(format!("o\n1\n{root}\n\n"), CheckpointError::EmptyExtension { line: 4 });
        check(format!("o\r\n1\n{root}\n"), CheckpointError::ControlCharacter { line: 1, byte: b'\r' });
    }

    #[test]
    fn to_text_refuses_what_would_not_parse_back() {
        let mut c = Checkpoint::parse(SPEC_EXAMPLE).unwrap();
        c.origin = "a\nb".into();
        assert_eq!(c.to_text(), Err(CheckpointError::ControlCharacter { line: 1, byte: b'\n' }));
        c.origin = String::new();
        assert_eq!(c.to_text(), Err(CheckpointError::EmptyOrigin));
        c.origin = "o".into();
        c.extensions = vec![String::new()];
        assert_eq!(c.to_text(), Err(CheckpointError::EmptyExtension { line: 4 }));
    }
}
