-- The state of resumable batch jobs (hf-media-batch), schema version 1, in the schema `hf_media_batch`
-- (the migrator creates it, and keeps its own table there: hf_media_batch._sqlx_migrations).
-- Times are unix milliseconds from the clients' clocks; JSON is stored as jsonb.

CREATE SCHEMA IF NOT EXISTS hf_media_batch;

-- One row per batch: one batch per output location (`batch_key`) in one database.
CREATE TABLE hf_media_batch.batches (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_key   TEXT   NOT NULL UNIQUE,
    fingerprint TEXT   NOT NULL,
    input       TEXT   NOT NULL,
    settings    JSONB  NOT NULL,
    total       BIGINT,            -- set when every item was added
    created_at  BIGINT NOT NULL,
    loaded_at   BIGINT
);

-- One row per input line (good or bad), keyed by its 0-based position in the input.
CREATE TABLE hf_media_batch.items (
    batch_id    BIGINT NOT NULL REFERENCES hf_media_batch.batches (id) ON DELETE CASCADE,
    pos         BIGINT NOT NULL,
    item_id     TEXT   NOT NULL,
    line        BIGINT NOT NULL,
    n           BIGINT NOT NULL,
    spec        JSONB  NOT NULL,   -- the request
    state       TEXT   NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts    BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,              -- the worker id holding a running item
    lease_host  TEXT,
    lease_ns    TEXT,              -- the holder's PID namespace
    lease_pid   BIGINT,
    lease_until BIGINT,
    jobs        JSONB  NOT NULL DEFAULT '{}',  -- provider job tickets by media index
    media       JSONB  NOT NULL DEFAULT '{}',  -- media records by media index
    error       JSONB,
    error_kind  TEXT,
    provider    TEXT,
    started_at  BIGINT,
    finished_at BIGINT,
    PRIMARY KEY (batch_id, pos),
    UNIQUE (batch_id, item_id)
);

-- The claim (pending items in order, running items to check) and the counts.
CREATE INDEX items_by_state ON hf_media_batch.items (batch_id, state, pos);

-- Providers paused for a whole batch (rate limited, out of credits).
CREATE TABLE hf_media_batch.provider_pauses (
    batch_id         BIGINT NOT NULL REFERENCES hf_media_batch.batches (id) ON DELETE CASCADE,
    provider         TEXT   NOT NULL,
    until_ms         BIGINT NOT NULL,
    reason           TEXT   NOT NULL,
    concurrency_hint BIGINT,
    PRIMARY KEY (batch_id, provider)
);
