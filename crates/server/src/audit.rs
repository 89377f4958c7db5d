//! The log's tamper evidence in the control plane (see `docs/audit.md`): the Merkle tree
//! over every record's leaf, the signed checkpoints, and the exports auditors verify
//! offline.
//!
//! The tree keeps in memory only the roots of complete blocks of 256 leaves and the
//! leaves of the last, partial block ([`PrunedTree`]): a few MB for 10^8 records. A proof
//! reads the leaf hashes of the blocks it touches from the store. The tree follows the
//! log: after each commit the writer adds the new records' leaves; when the log moved
//! under it (a reload, another writer), [`AuditLog::sync`] reads what it missed.
//!
//! At start the tree is rebuilt from the stored block roots and checked against the
//! latest signed checkpoint: a log changed after it was signed (records edited, deleted
//! or inserted in the database) makes the server refuse to start, naming the checkpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use gigawatt_audit::{ExportHeader, ExportWriter};
use gigawatt_store::audit::{BLOCK, StoredCheckpoint};
use gigawatt_store::{Record, Store, StoreError};
use gigawatt_transparency::{Checkpoint, Hash, PrunedTree, Signer, Verifier};

/// How the control plane signs its log.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The signing key (its name is the log's origin).
    pub signer: std::sync::Arc<Signer>,
    /// Sign a checkpoint after this many new records.
    pub every: u64,
    /// Sign one after this long, when the log has grown.
    pub interval: Duration,
}

impl AuditSettings {
    /// Checkpoints every 1,000 records or 10 s, signed by `signer`.
    #[must_use]
    pub fn new(signer: Signer) -> AuditSettings {
        AuditSettings { signer: std::sync::Arc::new(signer), every: 1000, interval: Duration::from_secs(10) }
    }
}

/// Why the audit trail cannot be kept or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The log does not match what was signed.
    #[error(
        "the event log does not match its signed checkpoint of {size} records ({why}): it was changed after it was signed; run `gigawatt audit verify` on an export to find the record"
    )]
    Tampered {
        /// The checkpoint's size.
        size: u64,
        /// What differs.
        why: String,
    },
    /// A record's bytes no longer match the leaf hash written with it.
    #[error(
        "record {seq} of the event log does not match the leaf hash written with it: the log was changed behind the server's back; run `gigawatt audit verify` on an export to see what"
    )]
    RecordChanged {
        /// The record.
        seq: u64,
    },
    /// A proof or signature could not be made (a bug).
    #[error("{0}")]
    Internal(String),
}

/// The tree, the key and what was last signed.
#[derive(Debug)]
pub struct AuditLog {
    settings: AuditSettings,
    tree: PrunedTree,
    /// Size and time (Unix ms) of the latest checkpoint.
    last: Option<(u64, i64)>,
}

fn internal(e: impl std::fmt::Display) -> AuditError {
    AuditError::Internal(e.to_string())
}

impl AuditLog {
    /// Rebuilds the tree from the store (filling the leaf hashes of records written
    /// before they were kept, and the roots of blocks not saved yet), checks every record
    /// after position `check_from` (those the server replays) against its leaf hash, and
    /// the tree against the latest signed checkpoint.
    pub async fn open(
        store: &Store,
        settings: AuditSettings,
        check_from: u64,
    ) -> Result<AuditLog, AuditError> {
        let last_seq = store.last_seq().await?;
        let mut roots: Vec<Hash> = Vec::new();
        for (block, root) in store.block_roots().await? {
            if block != roots.len() as u64 || (block + 1) * BLOCK > last_seq {
                break;
            }
            roots.push(root);
        }
        let mut after = roots.len() as u64 * BLOCK;
        let mut tree = PrunedTree::from_parts(roots, Vec::new()).map_err(internal)?;
        while after < last_seq {
            let mut hashes = store.leaf_hashes(after, 10_000).await?;
            if hashes.iter().any(|(_, h)| h.is_none()) {
                store.fill_leaf_hashes(after, 10_000).await?;
                hashes = store.leaf_hashes(after, 10_000).await?;
            }
            if hashes.is_empty() {
                break;
            }
            for (seq, h) in hashes {
                let h = h.ok_or(StoreError::Corrupt { seq, message: "no leaf hash".into() })?;
                if let Some((block, root)) = tree.push_leaf_hash(h) {
                    store.save_block_root(block, &root).await?;
                }
                after = seq;
            }
        }
        let mut after = check_from;
        loop {
            let records = store.read_after(after, 10_000).await?;
            let hashes = store.leaf_hashes(after, 10_000).await?;
            let Some(last) = records.last().map(|r| r.seq) else { break };
            for (r, (_, stored)) in records.iter().zip(&hashes) {
                if *stored != Some(gigawatt_transparency::leaf_hash(&r.leaf())) {
                    return Err(AuditError::RecordChanged { seq: r.seq });
                }
            }
            after = last;
        }
        let latest = store.latest_checkpoint().await?;
        let log = AuditLog { settings, tree, last: latest.as_ref().map(|c| (c.size, c.at_ms)) };
        if let Some(c) = latest {
            log.check(store, &c).await?;
        }
        Ok(log)
    }

    /// The public key, as a C2SP verifier key.
    #[must_use]
    pub fn verifier(&self) -> Verifier {
        self.settings.signer.verifier()
    }

    /// The log's origin (the key's name).
    #[must_use]
    pub fn origin(&self) -> &str {
        self.settings.signer.name()
    }

    /// Records the tree covers.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// Whether `c` (a stored checkpoint) matches the log: signed by this key or not, its
    /// root must be the tree's root at its size.
    async fn check(&self, store: &Store, c: &StoredCheckpoint) -> Result<(), AuditError> {
        let tampered = |why: String| AuditError::Tampered { size: c.size, why };
        let text = c.note.split("\n\n").next().map(|t| format!("{t}\n")).unwrap_or_default();
        let cp = Checkpoint::parse(&text).map_err(|e| tampered(format!("its note does not parse: {e}")))?;
        if cp.size != c.size {
            return Err(tampered(format!("its note says {} records", cp.size)));
        }
        if c.size > self.tree.size() {
            return Err(tampered(format!("the log holds only {} records", self.tree.size())));
        }
        let root = self.root_at(store, c.size).await?;
        if root != cp.root {
            return Err(tampered("the roots differ".into()));
        }
        Ok(())
    }

    async fn fetch(&self, store: &Store, blocks: Vec<u64>) -> Result<BTreeMap<u64, Vec<Hash>>, AuditError> {
        let mut fetched = BTreeMap::new();
        for b in blocks {
            fetched.insert(b, store.block_leaves(b).await?);
        }
        Ok(fetched)
    }

    async fn root_at(&self, store: &Store, size: u64) -> Result<Hash, AuditError> {
        if size == self.tree.size() {
            return Ok(self.tree.root());
        }
        let fetched = self.fetch(store, self.tree.blocks_needed(&[], &[size])).await?;
        let prover =
            self.tree.with_blocks(fetched).map_err(|e| AuditError::Tampered { size, why: e.to_string() })?;
        gigawatt_transparency::root_at(&prover, size).map_err(internal)
    }

    /// Adds the leaf hashes of records just committed, as [`Store::append`] returned
    /// them (reading from the store whatever the tree missed), and signs a checkpoint
    /// when one is due.
    pub async fn committed(
        &mut self,
        store: &Store,
        records: &[Record],
        hashes: &[Hash],
        now_ms: i64,
    ) -> Result<(), AuditError> {
        match records.first() {
            Some(first) if first.seq == self.tree.size() + 1 && hashes.len() == records.len() => {
                for h in hashes {
                    if let Some((block, root)) = self.tree.push_leaf_hash(*h) {
                        store.save_block_root(block, &root).await?;
                    }
                }
            }
            _ => self.sync(store).await?,
        }
        self.maybe_sign(store, now_ms).await
    }

    /// Reads the leaf hashes of records the tree does not cover yet.
    pub async fn sync(&mut self, store: &Store) -> Result<(), AuditError> {
        loop {
            let after = self.tree.size();
            let hashes = store.leaf_hashes(after, 10_000).await?;
            if hashes.is_empty() {
                return Ok(());
            }
            for (seq, h) in hashes {
                let h = h.ok_or(StoreError::Corrupt { seq, message: "no leaf hash".into() })?;
                if let Some((block, root)) = self.tree.push_leaf_hash(h) {
                    store.save_block_root(block, &root).await?;
                }
            }
        }
    }

    /// Signs a checkpoint if the log grew by `every` records, or grew at all and the last
    /// one is older than `interval`.
    pub async fn maybe_sign(&mut self, store: &Store, now_ms: i64) -> Result<(), AuditError> {
        let size = self.tree.size();
        let due = match self.last {
            None => size > 0,
            Some((s, at)) => {
                size > s
                    && (size - s >= self.settings.every
                        || now_ms - at
                            >= i64::try_from(self.settings.interval.as_millis()).unwrap_or(i64::MAX))
            }
        };
        if due {
            self.sign(store, now_ms).await?;
        }
        Ok(())
    }

    /// Signs and stores a checkpoint of the whole log now (unless one of this size
    /// exists), and returns it.
    pub async fn sign(&mut self, store: &Store, now_ms: i64) -> Result<StoredCheckpoint, AuditError> {
        let size = self.tree.size();
        if let Some(c) = store.checkpoint_covering(size).await?.filter(|c| c.size == size) {
            return Ok(c);
        }
        let cp = Checkpoint {
            origin: self.origin().to_string(),
            size,
            root: self.tree.root(),
            extensions: vec![],
        };
        let note = self.settings.signer.sign(&cp.to_text().map_err(internal)?).map_err(internal)?;
        store.save_checkpoint(size, now_ms, &note).await?;
        self.last = Some((size, now_ms));
        Ok(StoredCheckpoint { size, at_ms: now_ms, note })
    }

    /// Brings the tree up to the log and signs a checkpoint of all of it for an export:
    /// what [`write_export`] needs, taken under the lock, so the export itself holds
    /// nothing the writer waits for.
    pub async fn prepare_export(&mut self, store: &Store, now_ms: i64) -> Result<ExportBasis, AuditError> {
        self.sync(store).await?;
        let last = self.sign(store, now_ms).await?;
        Ok(ExportBasis { tree: self.tree.clone(), last, signer: self.settings.signer.clone() })
    }
}

/// A copy of the tree and the checkpoint an export is proven against.
#[derive(Debug)]
pub struct ExportBasis {
    tree: PrunedTree,
    last: StoredCheckpoint,
    signer: std::sync::Arc<Signer>,
}

/// Writes an export (see `docs/audit.md`) of the records of `tenant` (or all) within
/// `range` (Unix ms, inclusive), proven against the checkpoint of `basis`.
pub async fn write_export(
    store: &Store,
    basis: ExportBasis,
    tenant: Option<&str>,
    range: (i64, i64),
    header: (Option<String>, Option<String>),
) -> Result<Vec<u8>, AuditError> {
    let ExportBasis { tree, last, signer } = basis;
    let size = last.size;
    let mut records: Vec<Record> = Vec::new();
    let mut after = 0;
    loop {
        let page = store.export_records(tenant, range, (after, size), 10_000).await?;
        let Some(end) = page.last().map(|r| r.seq) else { break };
        after = end;
        records.extend(page);
    }
    // The earliest checkpoint covering the first record, then the one signed now.
    let mut checkpoints = Vec::new();
    if let Some(first) = records.first()
        && let Some(c) = store.checkpoint_covering(first.seq).await?
        && c.size < size
    {
        checkpoints.push(c);
    }
    checkpoints.push(last);
    let indices: Vec<u64> = records.iter().map(|r| r.seq - 1).collect();
    let sizes: Vec<u64> = checkpoints.iter().map(|c| c.size).collect();
    let mut fetched = BTreeMap::new();
    for b in tree.blocks_needed(&indices, &sizes) {
        fetched.insert(b, store.block_leaves(b).await?);
    }
    let prover = tree.with_blocks(fetched).map_err(|e| AuditError::Tampered { size, why: e.to_string() })?;
    let mut w = ExportWriter::new(Vec::with_capacity(records.len() * 1024));
    for c in &checkpoints {
        w.checkpoint(&c.note).map_err(internal)?;
    }
    for pair in checkpoints.windows(2) {
        let proof = gigawatt_transparency::consistency_proof(&prover, pair[0].size, pair[1].size)
            .map_err(internal)?;
        w.consistency(pair[0].size, pair[1].size, &proof).map_err(internal)?;
    }
    for r in &records {
        let proof = gigawatt_transparency::inclusion_proof(&prover, r.seq - 1, size).map_err(internal)?;
        w.record(r.seq - 1, &r.leaf(), size, &proof).map_err(internal)?;
    }
    let header = ExportHeader {
        origin: signer.name().to_string(),
        tenant: tenant.map(str::to_string),
        from: header.0,
        to: header.1,
        tree_size: size,
    };
    w.finish(&signer, &header).map_err(internal)
}
