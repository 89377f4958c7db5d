//! Reading files named from outside (fleet files, node lists, carbon series): regular
//! files only, with a size limit.
//!
//! A path can name a device, a FIFO or a huge file. Reading `/dev/zero` whole never
//! ends, and a FIFO blocks until someone writes. So the file is opened, checked to be a
//! regular file on the opened handle (no window for a swap between check and read), and
//! read up to a limit.

use std::io::Read;
use std::path::Path;

/// The largest fleet file read: a fleet of 100,000 nodes fits in a few MiB of TOML.
pub const MAX_FLEET_FILE_BYTES: u64 = 16 << 20;

/// The largest data file read (a node list, a carbon series): a year of 5-minute
/// carbon rows is about 3 MiB.
pub const MAX_DATA_FILE_BYTES: u64 = 64 << 20;

/// Reads the regular file at `path`, at most `limit` bytes.
///
/// # Errors
/// The file cannot be opened or read; it is not a regular file (a directory, a device,
/// a FIFO, a socket), or it is larger than `limit`. The message says which, in words.
pub fn read_regular(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        let kind = kind_of(&meta.file_type());
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it is {kind}, not a regular file"),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(limit)).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it is larger than the limit of {} MiB", limit >> 20),
        ));
    }
    Ok(bytes)
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() { "a directory" } else { "not a regular file" }
}

/// Reads the regular file at `path` as UTF-8 text, at most `limit` bytes.
///
/// # Errors
/// As [`read_regular`], or the content is not UTF-8 (the message gives the byte offset,
/// never the content).
pub fn read_text(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_regular(path, limit)?).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_large_files_are_refused() {
        let e = read_regular(Path::new("/dev/zero"), 1 << 20).expect_err("a device");
        assert_eq!(e.to_string(), "it is a character device, not a regular file");
        let dir = tempfile::tempdir().expect("tempdir");
        let e = read_regular(dir.path(), 1 << 20).expect_err("a directory");
        assert!(e.to_string().contains("a directory"), "{e}");
        let big = dir.path().join("big.csv");
        std::fs::write(&big, vec![b'x'; 2 << 20]).expect("write");
        let e = read_regular(&big, 1 << 20).expect_err("too large");
        assert_eq!(e.to_string(), "it is larger than the limit of 1 MiB");
        assert_eq!(read_regular(&big, 2 << 20).map(|b| b.len()).ok(), Some(2 << 20));
    }
}
