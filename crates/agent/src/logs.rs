//! Shipping task output to the control plane.
//!
//! A task writes straight into `stdout.log` / `stderr.log` in its directory (files, not
//! pipes: output is never lost when the agent is slow or restarts, and a task never
//! blocks on a full pipe). The agent reads what is new from the offset the control plane
//! acknowledged and posts it in chunks of at most 64 KiB; the answer says how much the
//! control plane holds, and the next chunk starts there. A lost chunk or answer is
//! therefore simply sent again, and the control plane trims the overlap.
//!
//! The bytes travel base64-encoded, exactly as written (output is not always UTF-8),
//! so offsets in the file and in the control plane's copy are the same numbers.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gigawatt_api::agent::{LogChunk, LogStream, TaskKey};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::client::{CallError, Client};

/// Largest chunk sent, in bytes.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Where one task's output stands.
#[derive(Debug, Clone)]
pub(crate) struct LogCursor {
    dir: PathBuf,
    streams: [StreamCursor; 2],
}

#[derive(Debug, Clone)]
struct StreamCursor {
    stream: LogStream,
    /// Bytes the control plane holds.
    acked: u64,
    /// The control plane refused this stream for good: stop sending it.
    abandoned: bool,
}

/// What one call needs besides the cursor.
pub(crate) struct ShipContext<'a> {
    pub client: &'a Client,
    pub node: &'a str,
    pub generation: u64,
    pub timeout: Duration,
}

impl LogCursor {
    /// A cursor at the start of the output in `dir`.
    pub fn new(dir: &Path) -> LogCursor {
        let s = |stream| StreamCursor { stream, acked: 0, abandoned: false };
        LogCursor { dir: dir.to_owned(), streams: [s(LogStream::Stdout), s(LogStream::Stderr)] }
    }

    /// Sends what is new, at most `budget` chunks (decremented). Returns whether
    /// everything written so far has been shipped.
    ///
    /// # Errors
    /// A transient failure or `409 stale-generation`; other refusals abandon the stream.
    pub async fn ship(
        &mut self,
        cx: &ShipContext<'_>,
        key: &TaskKey,
        budget: &mut usize,
    ) -> Result<bool, CallError> {
        let mut caught_up = true;
        for s in &mut self.streams {
            if s.abandoned {
                continue;
            }
            let path = self.dir.join(format!("{}.log", s.stream.as_str()));
            loop {
                let Some(data) = read_chunk(&path, s.acked).await else {
                    break; // No file: nothing written.
                };
                if data.is_empty() {
                    break;
                }
                if *budget == 0 {
                    caught_up = false;
                    break;
                }
                *budget -= 1;
                let chunk = LogChunk {
                    node: cx.node.to_owned(),
                    generation: cx.generation,
                    key: key.clone(),
                    stream: s.stream,
                    offset: s.acked,
                    data_base64: STANDARD.encode(&data),
                };
                match cx.client.logs(&chunk, cx.timeout).await {
                    Ok(ack) if ack.length == s.acked => {
                        // No progress: do not spin on it; the next tick tries again.
                        caught_up = false;
                        break;
                    }
                    Ok(ack) => s.acked = ack.length,
                    Err(e) if e.is_refusal() && !e.is_stale() && !matches!(e.status(), Some(401 | 403)) => {
                        tracing::warn!(
                            workload = %key.workload, task = key.task, stream = s.stream.as_str(),
                            "the control plane refused this task's output; no more of it will be sent: {e}"
                        );
                        s.abandoned = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(caught_up)
    }
}

/// Reads up to [`CHUNK`] bytes of `path` from `offset` (none at or past its end);
/// `None` when the file cannot be read (not created: nothing written).
async fn read_chunk(path: &Path, offset: u64) -> Option<Vec<u8>> {
    let mut file = tokio::fs::File::open(path).await.ok()?;
    let len = file.metadata().await.ok()?.len();
    if len <= offset {
        return Some(Vec::new());
    }
    file.seek(SeekFrom::Start(offset)).await.ok()?;
    let want = usize::try_from(len - offset).unwrap_or(CHUNK).min(CHUNK);
    let mut buf = vec![0; want];
    let mut got = 0;
    while got < want {
        match file.read(&mut buf[got..]).await.ok()? {
            0 => break,
            n => got += n,
        }
    }
    buf.truncate(got);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_are_bounded() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("stdout.log");
        let mut data = vec![b'a'; CHUNK - 1];
        data.extend_from_slice(b"\xff and more");
        std::fs::write(&path, &data).expect("write");
        let first = read_chunk(&path, 0).await.expect("readable");
        assert_eq!(first.len(), CHUNK);
        let second = read_chunk(&path, CHUNK as u64).await.expect("readable");
        assert_eq!(second, b" and more");
        assert_eq!(read_chunk(&path, data.len() as u64).await, Some(Vec::new()));
        assert_eq!(read_chunk(&tmp.path().join("none.log"), 0).await, None);
    }
}
