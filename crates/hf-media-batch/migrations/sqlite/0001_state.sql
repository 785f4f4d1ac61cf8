-- The state of resumable batch jobs (hf-media-batch), schema version 1.
-- Times are unix milliseconds from the clients' clocks; JSON is stored as text.

-- One row per batch: one batch per output location (`batch_key`) in one database.
CREATE TABLE batches (
    id          INTEGER PRIMARY KEY,
    batch_key   TEXT    NOT NULL UNIQUE,
    fingerprint TEXT    NOT NULL,
    input       TEXT    NOT NULL,
    settings    TEXT    NOT NULL,
    total       INTEGER,            -- set when every item was added
    created_at  INTEGER NOT NULL,
    loaded_at   INTEGER
);

-- One row per input line (good or bad), keyed by its 0-based position in the input.
CREATE TABLE items (
    batch_id    INTEGER NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    pos         INTEGER NOT NULL,
    item_id     TEXT    NOT NULL,
    line        INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    spec        TEXT    NOT NULL,   -- the request, JSON
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,               -- the worker id holding a running item
    lease_host  TEXT,
    lease_ns    TEXT,               -- the holder's PID namespace
    lease_pid   INTEGER,
    lease_until INTEGER,
    jobs        TEXT    NOT NULL DEFAULT '{}',  -- provider job tickets by media index, JSON object
    media       TEXT    NOT NULL DEFAULT '{}',  -- media records by media index, JSON object
    error       TEXT,               -- JSON
    error_kind  TEXT,
    provider    TEXT,
    started_at  INTEGER,
    finished_at INTEGER,
    PRIMARY KEY (batch_id, pos),
    UNIQUE (batch_id, item_id)
);

-- The claim (pending items in order, running items to check) and the counts.
CREATE INDEX items_by_state ON items (batch_id, state, pos);

-- Providers paused for a whole batch (rate limited, out of credits).
CREATE TABLE provider_pauses (
    batch_id         INTEGER NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    provider         TEXT    NOT NULL,
    until_ms         INTEGER NOT NULL,
    reason           TEXT    NOT NULL,
    concurrency_hint INTEGER,
    PRIMARY KEY (batch_id, provider)
);
