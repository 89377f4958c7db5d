//! What the log keeps for tamper evidence (see `docs/audit.md`): each record's leaf hash
//! (written with the record, in the same transaction), the roots of complete blocks of
//! 256 leaves, and the signed checkpoints. The Merkle tree itself is the server's
//! (`gigawatt_transparency::PrunedTree`): it keeps the upper levels in memory and reads
//! a block's leaf hashes from here when a proof needs them.

use gigawatt_transparency::Hash;

use crate::backend::{Backend, EventRow, Store, StoreError, parse_row};
use crate::event::Record;

/// Leaves per block: the server's tree keeps in memory the roots of complete blocks of
/// this many leaves, and above.
pub const BLOCK: u64 = gigawatt_transparency::BLOCK_SIZE;

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Records covered (the tree size).
    pub size: u64,
    /// When it was signed (Unix ms).
    pub at_ms: i64,
    /// The signed note, verbatim.
    pub note: String,
}

fn hash_of(seq: i64, bytes: Option<Vec<u8>>) -> Result<Option<Hash>, StoreError> {
    match bytes {
        None => Ok(None),
        Some(b) => <Hash>::try_from(b.as_slice()).map(Some).map_err(|_| StoreError::Corrupt {
            seq: seq as u64,
            message: format!("a leaf hash of {} bytes; it is 32", b.len()),
        }),
    }
}

macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($p) => $body,
            Backend::Postgres($p) => $body,
        }
    };
}

impl Store {
    /// The leaf hashes of records `after+1 ..= after+limit`, in order; `None` for a record
    /// written before leaf hashes were (see [`Store::fill_leaf_hashes`]).
    pub async fn leaf_hashes(&self, after: u64, limit: u32) -> Result<Vec<(u64, Option<Hash>)>, StoreError> {
        let sql = "SELECT seq, leaf_hash FROM events WHERE seq > $1 ORDER BY seq LIMIT $2";
        let after = after.min(i64::MAX as u64) as i64;
        let rows: Vec<(i64, Option<Vec<u8>>)> = on_pool!(self, p => {
            sqlx::query_as(sql).bind(after).bind(i64::from(limit)).fetch_all(p).await?
        });
        rows.into_iter().map(|(seq, h)| Ok((seq as u64, hash_of(seq, h)?))).collect()
    }

    /// Computes and stores the leaf hash of up to `limit` records after `after` that lack
    /// one (a log written before they were); returns how many it filled.
    pub async fn fill_leaf_hashes(&self, after: u64, limit: u32) -> Result<u64, StoreError> {
        let records = self.read_after(after, limit).await?;
        let missing: Vec<u64> = self
            .leaf_hashes(after, limit)
            .await?
            .into_iter()
            .filter(|(_, h)| h.is_none())
            .map(|(seq, _)| seq)
            .collect();
        let mut filled = 0;
        for r in records.iter().filter(|r| missing.contains(&r.seq)) {
            let hash = gigawatt_transparency::leaf_hash(&r.leaf()).to_vec();
            let sql = "UPDATE events SET leaf_hash = $1 WHERE seq = $2 AND leaf_hash IS NULL";
            on_pool!(self, p => { sqlx::query(sql).bind(&hash).bind(r.seq as i64).execute(p).await?; });
            filled += 1;
        }
        Ok(filled)
    }

    /// The stored roots of complete blocks, by block number, in order.
    pub async fn block_roots(&self) -> Result<Vec<(u64, Hash)>, StoreError> {
        let sql = "SELECT block, hash FROM tree_blocks ORDER BY block";
        let rows: Vec<(i64, Vec<u8>)> = on_pool!(self, p => sqlx::query_as(sql).fetch_all(p).await?);
        rows.into_iter()
            .map(|(b, h)| {
                let h = hash_of(b, Some(h))?.unwrap_or_default();
                Ok((b as u64, h))
            })
            .collect()
    }

    /// Stores the root of a complete block (idempotent: a block's root never changes).
    pub async fn save_block_root(&self, block: u64, root: &Hash) -> Result<(), StoreError> {
        let sql = "INSERT INTO tree_blocks (block, hash) VALUES ($1, $2) ON CONFLICT (block) DO NOTHING";
        on_pool!(self, p => { sqlx::query(sql).bind(block as i64).bind(root.to_vec()).execute(p).await?; });
        Ok(())
    }

    /// The leaf hashes of block `block` (records `256·block+1 ..= 256·block+256`, or
    /// fewer for the last), in order. A record without a leaf hash is an error: fill
    /// them first.
    pub async fn block_leaves(&self, block: u64) -> Result<Vec<Hash>, StoreError> {
        let rows = self.leaf_hashes(block.saturating_mul(BLOCK), BLOCK as u32).await?;
        rows.into_iter()
            .map(|(seq, h)| {
                h.ok_or(StoreError::Corrupt {
                    seq,
                    message: "no leaf hash: fill the leaf hashes first".into(),
                })
            })
            .collect()
    }

    /// Stores a signed checkpoint (idempotent per size).
    pub async fn save_checkpoint(&self, size: u64, at_ms: i64, note: &str) -> Result<(), StoreError> {
        let sql =
            "INSERT INTO checkpoints (size, at_ms, note) VALUES ($1, $2, $3) ON CONFLICT (size) DO NOTHING";
        on_pool!(self, p => { sqlx::query(sql).bind(size as i64).bind(at_ms).bind(note).execute(p).await?; });
        Ok(())
    }

    /// The checkpoint covering the most records, if any.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let sql = "SELECT size, at_ms, note FROM checkpoints ORDER BY size DESC LIMIT 1";
        let row: Option<(i64, i64, String)> =
            on_pool!(self, p => sqlx::query_as(sql).fetch_optional(p).await?);
        Ok(row.map(|(size, at_ms, note)| StoredCheckpoint { size: size as u64, at_ms, note }))
    }

    /// The first checkpoint covering at least `size` records, if any.
    pub async fn checkpoint_covering(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        let sql = "SELECT size, at_ms, note FROM checkpoints WHERE size >= $1 ORDER BY size LIMIT 1";
        let size = size.min(i64::MAX as u64) as i64;
        let row: Option<(i64, i64, String)> =
            on_pool!(self, p => sqlx::query_as(sql).bind(size).fetch_optional(p).await?);
        Ok(row.map(|(size, at_ms, note)| StoredCheckpoint { size: size as u64, at_ms, note }))
    }

    /// Up to `limit` records after position `after` and up to position `upto` for an
    /// export: a tenant's own records and the `fleet-in-force` records (which name no
    /// tenant) when `tenant` is given, every record otherwise; within `from_ms ..= to_ms`.
    pub async fn export_records(
        &self,
        tenant: Option<&str>,
        (from_ms, to_ms): (i64, i64),
        (after, upto): (u64, u64),
        limit: u32,
    ) -> Result<Vec<Record>, StoreError> {
        let (after, upto) = (after.min(i64::MAX as u64) as i64, upto.min(i64::MAX as u64) as i64);
        let rows: Vec<EventRow> = match tenant {
            Some(t) => {
                let sql = "SELECT seq, at_ms, tenant, body, actor FROM events \
                           WHERE seq > $1 AND seq <= $2 AND at_ms >= $3 AND at_ms <= $4 \
                           AND (tenant = $5 OR kind = 'fleet-in-force') ORDER BY seq LIMIT $6";
                on_pool!(self, p => sqlx::query_as(sql)
                    .bind(after).bind(upto).bind(from_ms).bind(to_ms).bind(t).bind(i64::from(limit))
                    .fetch_all(p).await?)
            }
            None => {
                let sql = "SELECT seq, at_ms, tenant, body, actor FROM events \
                           WHERE seq > $1 AND seq <= $2 AND at_ms >= $3 AND at_ms <= $4 ORDER BY seq LIMIT $5";
                on_pool!(self, p => sqlx::query_as(sql)
                    .bind(after).bind(upto).bind(from_ms).bind(to_ms).bind(i64::from(limit))
                    .fetch_all(p).await?)
            }
        };
        rows.into_iter().map(parse_row).collect()
    }
}
