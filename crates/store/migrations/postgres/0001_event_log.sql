-- The event log: append-only, one row per event, `seq` dense from 1.
CREATE TABLE events (
    seq      BIGINT PRIMARY KEY,
    at_ms    BIGINT NOT NULL,
    kind     TEXT   NOT NULL,
    workload BIGINT,
    tenant   TEXT,
    body     TEXT   NOT NULL
);
CREATE INDEX events_by_workload ON events (workload) WHERE workload IS NOT NULL;

-- Snapshots of the folded state, so that start-up replays only the tail of the log.
CREATE TABLE snapshots (
    seq   BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    body  BYTEA  NOT NULL
);
