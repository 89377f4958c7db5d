//! Task output kept by the control plane: agents ship each task's stdout and stderr
//! (`POST /v1/agent/logs`), and `gigawatt logs` reads it back, also once the task, its
//! agent or its node is gone.
//!
//! One file per stream of each task copy: `DIR/w-ID/TASK.GENERATION.STREAM.log`. Appends
//! are idempotent by offset, so an agent that resends after a lost answer changes
//! nothing. A stream stops growing at [`MAX_STREAM`]; what comes after is acknowledged
//! and dropped, and the file ends with a note saying so.

use std::path::{Path, PathBuf};

use gigawatt_api::LogStream;
use gigawatt_core::WorkloadId;
use tokio::io::AsyncWriteExt;

/// The most bytes kept of one stream of one task copy.
pub const MAX_STREAM: u64 = 64 * 1024 * 1024;

/// The log files under one directory.
pub struct Logs {
    dir: PathBuf,
    /// Appends are serialised: agents send little, and one writer per file is simplest.
    lock: tokio::sync::Mutex<()>,
}

impl Logs {
    /// Logs kept under `dir` (created when first written).
    #[must_use]
    pub fn new(dir: PathBuf) -> Logs {
        Logs { dir, lock: tokio::sync::Mutex::new(()) }
    }

    fn path(&self, id: WorkloadId, task: u32, generation: u64, stream: LogStream) -> PathBuf {
        self.dir.join(id.to_string()).join(format!("{task}.{generation}.{}.log", stream.as_str()))
    }

    /// Appends `data`, which starts at byte `offset` of the stream; returns how many
    /// bytes of the stream are now accounted for.
    pub async fn append(
        &self,
        id: WorkloadId,
        task: u32,
        generation: u64,
        stream: LogStream,
        offset: u64,
        data: &[u8],
    ) -> std::io::Result<u64> {
        let _guard = self.lock.lock().await;
        let path = self.path(id, task, generation, stream);
        let have = match tokio::fs::metadata(&path).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        let end = offset.saturating_add(data.len() as u64);
        if have >= MAX_STREAM {
            return Ok(end.max(have));
        }
        if offset > have {
            // A gap: the agent must resend from what is here.
            return Ok(have);
        }
        let skip = usize::try_from(have - offset).unwrap_or(usize::MAX).min(data.len());
        let mut fresh = &data[skip..];
        if fresh.is_empty() {
            return Ok(have.max(end));
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await?;
        let room = usize::try_from(MAX_STREAM - have).unwrap_or(usize::MAX);
        let truncated = fresh.len() > room;
        if truncated {
            fresh = &fresh[..room];
        }
        file.write_all(fresh).await?;
        if truncated {
            file.write_all(b"\n[gigawatt: output truncated at 64 MiB]\n").await?;
        }
        file.flush().await?;
        Ok(if truncated { end } else { have + fresh.len() as u64 })
    }

    /// The newest copy of `task` that has output, as its generation.
    pub async fn newest_generation(&self, id: WorkloadId, task: u32) -> Option<u64> {
        let mut entries = tokio::fs::read_dir(self.dir.join(id.to_string())).await.ok()?;
        let mut best = None;
        while let Ok(Some(e)) = entries.next_entry().await {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let mut parts = name.split('.');
            let (Some(t), Some(g)) = (parts.next(), parts.next()) else { continue };
            if t.parse::<u32>().ok() == Some(task)
                && let Ok(g) = g.parse::<u64>()
            {
                best = best.max(Some(g));
            }
        }
        best
    }

    /// Up to `limit` bytes of a stream from `offset`, and the stream's size.
    pub async fn read(
        &self,
        id: WorkloadId,
        task: u32,
        generation: u64,
        stream: LogStream,
        offset: u64,
        limit: usize,
    ) -> std::io::Result<(Vec<u8>, u64)> {
        read_range(&self.path(id, task, generation, stream), offset, limit).await
    }
}

async fn read_range(path: &Path, offset: u64, limit: usize) -> std::io::Result<(Vec<u8>, u64)> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let size = file.metadata().await?.len();
    if offset >= size {
        return Ok((Vec::new(), size));
    }
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let want = usize::try_from(size - offset).unwrap_or(usize::MAX).min(limit);
    let mut buf = vec![0; want];
    file.read_exact(&mut buf).await?;
    Ok((buf, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_are_idempotent_by_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = Logs::new(dir.path().to_path_buf());
        let id = WorkloadId(7);
        assert_eq!(logs.append(id, 0, 3, LogStream::Stdout, 0, b"hello ").await.expect("append"), 6);
        // A resend of the same bytes, and an overlapping chunk.
        assert_eq!(logs.append(id, 0, 3, LogStream::Stdout, 0, b"hello ").await.expect("append"), 6);
        assert_eq!(logs.append(id, 0, 3, LogStream::Stdout, 3, b"lo world").await.expect("append"), 11);
        // A gap is refused: resend from 11.
        assert_eq!(logs.append(id, 0, 3, LogStream::Stdout, 20, b"x").await.expect("append"), 11);
        let (data, size) = logs.read(id, 0, 3, LogStream::Stdout, 0, 1 << 20).await.expect("read");
        assert_eq!((data.as_slice(), size), (&b"hello world"[..], 11));
        assert_eq!(logs.newest_generation(id, 0).await, Some(3));
        assert_eq!(logs.newest_generation(id, 1).await, None);
    }
}
