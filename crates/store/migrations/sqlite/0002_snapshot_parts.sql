-- Large snapshots are written in parts of 1 MiB, each in its own short transaction, and
-- the `snapshots` row (whose body then names the parts) last. SQLite has one writer at a
-- time: a whole snapshot in one transaction (hundreds of MB for a large state) kept every
-- append waiting for as long as it took to write.
CREATE TABLE snapshot_parts (
    seq  INTEGER NOT NULL,
    part INTEGER NOT NULL,
    body BLOB    NOT NULL,
    PRIMARY KEY (seq, part)
);
