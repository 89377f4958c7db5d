-- Tamper evidence (see docs/audit.md): each record's leaf hash, SHA-256(0x00 || its
-- canonical bytes); the roots of complete blocks of 256 leaves, so the server keeps only
-- the upper levels of the Merkle tree in memory; the signed checkpoints; and an index
-- for a tenant's export.
ALTER TABLE events ADD COLUMN leaf_hash BLOB;
CREATE INDEX events_by_tenant ON events (tenant, seq) WHERE tenant IS NOT NULL;
CREATE TABLE tree_blocks (
    block INTEGER PRIMARY KEY,
    hash  BLOB    NOT NULL
);
CREATE TABLE checkpoints (
    size  INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    note  TEXT    NOT NULL
);
