-- The event log: append-only, one row per event, `seq` dense from 1.
CREATE TABLE events (
    seq      INTEGER PRIMARY KEY,
    at_ms    INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    workload INTEGER,
    tenant   TEXT,
    body     TEXT    NOT NULL
);
CREATE INDEX events_by_workload ON events (workload) WHERE workload IS NOT NULL;

-- Snapshots of the folded state, so that start-up replays only the tail of the log.
CREATE TABLE snapshots (
    seq   INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    body  BLOB    NOT NULL
);
