//! The PostgreSQL backend: tables in the schema `hf_media_batch`, claims with `FOR UPDATE SKIP LOCKED`;
//! any number of machines on one database.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use sqlx::ConnectOptions;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{
    BatchIdentity, BatchInfo, BatchState, ClaimedItem, Counts, Current, Decoder, INVALID_LINE, ItemKey, ItemRow,
    NewItem, Outcome, ProviderPause, RawClaim, RawRow, StoredBatch, WorkerId, db_int, db_keys, json_text, lease_end,
    lost, migrate_with_retry, now_ms, redact_url,
};
use crate::BatchError;

/// The PostgreSQL schema's migrations (`migrations/postgres`), embedded, recorded in
/// `hf_media_batch._sqlx_migrations` (not the database's `_sqlx_migrations`, which another application
/// may use).
pub(crate) fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("migrations/postgres");
    migrator.create_schema("hf_media_batch");
    migrator.dangerous_set_table_name("hf_media_batch._sqlx_migrations");
    migrator
}

/// The columns of an item row ([`RawRow`]), JSON as text, for `SELECT` and `RETURNING`.
macro_rules! row_columns {
    () => {
        "pos, item_id, line, n, spec::text AS spec, state, attempts, jobs::text AS jobs, media::text AS media, \
         error::text AS error, error_kind, provider, lease_owner, lease_until, started_at, finished_at"
    };
}

/// How many times an append looks for a free position again when an insert of another kind (a concurrent
/// [`BatchState::add_items`]) took the one it had chosen.
const APPEND_TRIES: usize = 5;

/// Rows per insert statement (one array a column, so any size works; this bounds the statement).
const INSERT_ROWS: usize = 5_000;

/// The state in a PostgreSQL database.
pub(crate) struct PostgresState {
    pool: PgPool,
    /// The URL, password redacted.
    location: String,
    batch: Current,
}

impl fmt::Debug for PostgresState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresState")
            .field("location", &self.location)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl PostgresState {
    pub(crate) async fn open(url: &str) -> Result<PostgresState, BatchError> {
        let location = redact_url(url);
        let options = PgConnectOptions::from_str(url)
            .map_err(|source| BatchError::State {
                location: location.clone(),
                action: "reading the URL",
                source,
            })?
            .application_name("hf-media-batch")
            .disable_statement_logging();
        // One connection first: a database that cannot be reached says why at once (the pool would retry
        // until its timeout, then say only that it timed out).
        let first = options.connect().await.map_err(|source| BatchError::State {
            location: location.clone(),
            action: "connecting",
            source,
        })?;
        let _ = sqlx::Connection::close(first).await;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|source| BatchError::State {
                location: location.clone(),
                action: "connecting",
                source,
            })?;
        let migrator = migrator();
        migrate_with_retry(&location, || migrator.run(&pool)).await?;
        Ok(PostgresState {
            pool,
            location,
            batch: Current::default(),
        })
    }

    fn failed(&self, action: &'static str) -> impl FnOnce(sqlx::Error) -> BatchError + '_ {
        move |source| BatchError::State {
            location: self.location.clone(),
            action,
            source,
        }
    }

    /// What [`BatchState::open_batch`] and [`BatchState::select_batch`] tell of a stored batch.
    async fn info(&self, stored: StoredBatch, created: bool) -> Result<BatchInfo, BatchError> {
        let total = match (stored.loaded, stored.total) {
            (true, Some(total)) => total,
            _ => sqlx::query_scalar("SELECT COUNT(*) FROM hf_media_batch.items WHERE batch_id = $1")
                .bind(stored.id)
                .fetch_one(&self.pool)
                .await
                .map_err(self.failed("counting the items"))?,
        };
        let settings = serde_json::from_str(&stored.settings).map_err(|e| BatchError::StateData {
            location: self.location.clone(),
            reason: format!("the batch settings are not JSON ({e})"),
        })?;
        Ok(BatchInfo {
            created,
            loaded: stored.loaded,
            total: u64::try_from(total).unwrap_or(0),
            settings,
        })
    }

    fn decoder(&self) -> Decoder<'_> {
        Decoder {
            location: &self.location,
        }
    }
}

#[async_trait]
impl BatchState for PostgresState {
    async fn open_batch(&self, batch: &BatchIdentity, settings: &Value) -> Result<BatchInfo, BatchError> {
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO hf_media_batch.batches (batch_key, fingerprint, input, settings, created_at) \
             VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (batch_key) DO NOTHING RETURNING id",
        )
        .bind(&batch.key)
        .bind(&batch.fingerprint)
        .bind(&batch.input)
        .bind(json_text(settings))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(self.failed("creating the batch"))?;
        let (id, fingerprint, input, settings, total, loaded_at): (
            i64,
            String,
            String,
            String,
            Option<i64>,
            Option<i64>,
        ) = sqlx::query_as(
            "SELECT id, fingerprint, input, settings::text, total, loaded_at FROM hf_media_batch.batches \
             WHERE batch_key = $1",
        )
        .bind(&batch.key)
        .fetch_one(&self.pool)
        .await
        .map_err(self.failed("opening the batch"))?;
        let stored = StoredBatch {
            id,
            fingerprint,
            input,
            settings,
            total,
            loaded: loaded_at.is_some(),
        };
        stored.check(batch, &self.location)?;
        self.batch.set(stored.id, &batch.key)?;
        self.info(stored, inserted.is_some()).await
    }

    async fn select_batch(&self, key: &str) -> Result<BatchInfo, BatchError> {
        let row: Option<(i64, String, String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT id, fingerprint, input, settings::text, total, loaded_at FROM hf_media_batch.batches WHERE batch_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.failed("opening the batch"))?;
        let Some((id, fingerprint, input, settings, total, loaded_at)) = row else {
            return Err(BatchError::UnknownBatch {
                location: self.location.clone(),
                key: key.to_owned(),
            });
        };
        let stored = StoredBatch {
            id,
            fingerprint,
            input,
            settings,
            total,
            loaded: loaded_at.is_some(),
        };
        self.batch.set(stored.id, key)?;
        self.info(stored, false).await
    }

    async fn add_items(&self, items: &[NewItem]) -> Result<(), BatchError> {
        let batch = self.batch.id()?;
        if items.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(self.failed("adding items"))?;
        for chunk in items.chunks(INSERT_ROWS) {
            let positions: Vec<i64> = chunk.iter().map(|i| db_int(i.position)).collect();
            let ids: Vec<&str> = chunk.iter().map(|i| i.id.as_str()).collect();
            let lines: Vec<i64> = chunk.iter().map(|i| db_int(i.line)).collect();
            let ns: Vec<i64> = chunk.iter().map(|i| i64::from(i.n)).collect();
            let specs: Vec<String> = chunk.iter().map(|i| json_text(&i.spec)).collect();
            let states: Vec<&str> = chunk
                .iter()
                .map(|i| if i.invalid.is_some() { "failed" } else { "pending" })
                .collect();
            let errors: Vec<Option<String>> = chunk.iter().map(|i| i.invalid.as_ref().map(json_text)).collect();
            let kinds: Vec<Option<&str>> = chunk.iter().map(|i| i.invalid.as_ref().map(|_| INVALID_LINE)).collect();
            sqlx::query(
                "INSERT INTO hf_media_batch.items (batch_id, pos, item_id, line, n, spec, state, error, error_kind) \
                 SELECT $1, u.pos, u.item_id, u.line, u.n, u.spec::jsonb, u.state, u.error::jsonb, u.error_kind \
                 FROM UNNEST($2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], \
                     $8::text[], $9::text[]) AS u (pos, item_id, line, n, spec, state, error, error_kind) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(batch)
            .bind(positions)
            .bind(ids)
            .bind(lines)
            .bind(ns)
            .bind(specs)
            .bind(states)
            .bind(errors)
            .bind(kinds)
            .execute(&mut *tx)
            .await
            .map_err(self.failed("adding items"))?;
        }
        tx.commit().await.map_err(self.failed("adding items"))
    }

    async fn mark_loaded(&self, total: u64) -> Result<(), BatchError> {
        let batch = self.batch.id()?;
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hf_media_batch.items WHERE batch_id = $1")
            .bind(batch)
            .fetch_one(&self.pool)
            .await
            .map_err(self.failed("counting the items"))?;
        if stored != db_int(total) {
            return Err(BatchError::StateData {
                location: self.location.clone(),
                reason: format!("the batch has {stored} items stored, not the {total} its input has"),
            });
        }
        sqlx::query("UPDATE hf_media_batch.batches SET total = $1, loaded_at = COALESCE(loaded_at, $2) WHERE id = $3")
            .bind(db_int(total))
            .bind(now_ms())
            .bind(batch)
            .execute(&self.pool)
            .await
            .map_err(self.failed("marking the batch loaded"))?;
        Ok(())
    }

    async fn append_item(&self, item: NewItem) -> Result<ItemKey, BatchError> {
        let batch = self.batch.id()?;
        let failed = || self.failed("appending an item");
        let (state, kind) = match item.invalid {
            Some(_) => ("failed", Some(INVALID_LINE)),
            None => ("pending", None),
        };
        for _ in 0..APPEND_TRIES {
            let mut tx = self.pool.begin().await.map_err(failed())?;
            // The batch's row, locked until the commit: appends and deletes of the batch run one at a time,
            // and each statement below sees what the previous holder committed. (NO KEY: the foreign-key
            // checks of other inserts do not wait for it.)
            let next: Option<i64> =
                sqlx::query_scalar("SELECT next_pos FROM hf_media_batch.batches WHERE id = $1 FOR NO KEY UPDATE")
                    .bind(batch)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(failed())?;
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT pos FROM hf_media_batch.items WHERE batch_id = $1 AND item_id = $2")
                    .bind(batch)
                    .bind(&item.id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(failed())?;
            if exists.is_some() {
                return Err(BatchError::DuplicateItem { id: item.id });
            }
            let stored: Option<i64> =
                sqlx::query_scalar("SELECT MAX(pos) + 1 FROM hf_media_batch.items WHERE batch_id = $1")
                    .bind(batch)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(failed())?;
            let position = next.unwrap_or(0).max(stored.unwrap_or(0));
            // A conflict here is an insert that does not take the lock (add_items) and got there first:
            // the id (found by the check of the next try) or the position (the next try takes another).
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO hf_media_batch.items (batch_id, pos, item_id, line, n, spec, state, error, error_kind) \
                 VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8::jsonb, $9) ON CONFLICT DO NOTHING RETURNING pos",
            )
            .bind(batch)
            .bind(position)
            .bind(&item.id)
            .bind(db_int(item.line))
            .bind(i64::from(item.n))
            .bind(json_text(&item.spec))
            .bind(state)
            .bind(item.invalid.as_ref().map(json_text))
            .bind(kind)
            .fetch_optional(&mut *tx)
            .await
            .map_err(failed())?;
            if inserted.is_none() {
                continue;
            }
            sqlx::query("UPDATE hf_media_batch.batches SET next_pos = $1 + 1, total = total + 1 WHERE id = $2")
                .bind(position)
                .bind(batch)
                .execute(&mut *tx)
                .await
                .map_err(failed())?;
            tx.commit().await.map_err(failed())?;
            return Ok(ItemKey(self.decoder().unsigned(position, "the position", position)?));
        }
        Err(BatchError::StateData {
            location: self.location.clone(),
            reason: format!(
                "no free position for item `{}` after {APPEND_TRIES} tries: are items added to the batch by \
                 add_items at the same time?",
                item.id
            ),
        })
    }

    async fn item(&self, id: &str) -> Result<Option<ItemRow>, BatchError> {
        let batch = self.batch.id()?;
        let raw: Option<RawRow> = sqlx::query_as(concat!(
            "SELECT ",
            row_columns!(),
            " FROM hf_media_batch.items WHERE batch_id = $1 AND item_id = $2"
        ))
        .bind(batch)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.failed("reading an item"))?;
        raw.map(|raw| self.decoder().row(raw)).transpose()
    }

    async fn items_page(
        &self,
        after: Option<&str>,
        limit: usize,
        descending: bool,
    ) -> Result<Vec<ItemRow>, BatchError> {
        let batch = self.batch.id()?;
        let from = match after {
            None => None,
            Some(id) => Some(
                sqlx::query_scalar::<_, i64>(
                    "SELECT pos FROM hf_media_batch.items WHERE batch_id = $1 AND item_id = $2",
                )
                .bind(batch)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.failed("listing items"))?
                .ok_or_else(|| BatchError::UnknownItem { id: id.to_owned() })?,
            ),
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        // A range of the primary key (batch_id, pos), read from either end.
        let (query, bound) = if descending {
            (
                concat!(
                    "SELECT ",
                    row_columns!(),
                    " FROM hf_media_batch.items WHERE batch_id = $1 AND pos < $2 ORDER BY pos DESC LIMIT $3"
                ),
                from.unwrap_or(i64::MAX),
            )
        } else {
            (
                concat!(
                    "SELECT ",
                    row_columns!(),
                    " FROM hf_media_batch.items WHERE batch_id = $1 AND pos > $2 ORDER BY pos LIMIT $3"
                ),
                from.unwrap_or(-1),
            )
        };
        let rows: Vec<RawRow> = sqlx::query_as(query)
            .bind(batch)
            .bind(bound)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(self.failed("listing items"))?;
        let decoder = self.decoder();
        rows.into_iter().map(|raw| decoder.row(raw)).collect()
    }

    async fn delete_item(&self, id: &str) -> Result<Option<ItemRow>, BatchError> {
        let batch = self.batch.id()?;
        let failed = || self.failed("deleting an item");
        let mut tx = self.pool.begin().await.map_err(failed())?;
        // The batch's row first, as an append takes it: an append of the same id waiting on this delete's
        // row while this delete waited on the append's lock would deadlock.
        sqlx::query("SELECT id FROM hf_media_batch.batches WHERE id = $1 FOR NO KEY UPDATE")
            .bind(batch)
            .execute(&mut *tx)
            .await
            .map_err(failed())?;
        let raw: Option<RawRow> = sqlx::query_as(concat!(
            "DELETE FROM hf_media_batch.items WHERE batch_id = $1 AND item_id = $2 RETURNING ",
            row_columns!()
        ))
        .bind(batch)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(failed())?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        // Its position stays taken: the next append comes after it even when it was the last.
        sqlx::query(
            "UPDATE hf_media_batch.batches SET next_pos = GREATEST(COALESCE(next_pos, 0), $1 + 1), \
                 total = total - 1 WHERE id = $2",
        )
        .bind(raw.pos)
        .bind(batch)
        .execute(&mut *tx)
        .await
        .map_err(failed())?;
        tx.commit().await.map_err(failed())?;
        self.decoder().row(raw).map(Some)
    }

    async fn claim(&self, worker: &WorkerId, limit: usize, lease: Duration) -> Result<Vec<ClaimedItem>, BatchError> {
        let batch = self.batch.id()?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = now_ms();
        // Holders on this host whose lease runs but whose process is gone (a gone process stays gone, so
        // this needs no lock).
        let holders: Vec<(String, String, Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT DISTINCT lease_owner, lease_host, lease_ns, lease_pid FROM hf_media_batch.items \
             WHERE batch_id = $1 AND state = 'running' AND lease_until >= $2 AND lease_host = $3 \
             AND lease_owner <> $4",
        )
        .bind(batch)
        .bind(now)
        .bind(&worker.host)
        .bind(&worker.id)
        .fetch_all(&self.pool)
        .await
        .map_err(self.failed("claiming items"))?;
        let gone: Vec<String> = holders
            .into_iter()
            .filter(|(_, host, ns, pid)| worker.sees_gone(host, ns.as_deref(), pid.unwrap_or(0)))
            .map(|(owner, ..)| owner)
            .collect();
        let rows: Vec<RawClaim> = sqlx::query_as(
            "WITH taken AS ( \
                 SELECT pos FROM hf_media_batch.items \
                 WHERE batch_id = $1 AND state = 'running' AND lease_owner <> $2 \
                     AND (lease_until < $3 OR lease_owner = ANY($4)) \
                 ORDER BY pos LIMIT $5 FOR UPDATE SKIP LOCKED \
             ), fresh AS ( \
                 SELECT pos FROM hf_media_batch.items WHERE batch_id = $1 AND state = 'pending' \
                 ORDER BY pos LIMIT $5 FOR UPDATE SKIP LOCKED \
             ), chosen AS ( \
                 SELECT pos FROM taken UNION ALL SELECT pos FROM fresh ORDER BY pos LIMIT $5 \
             ) \
             UPDATE hf_media_batch.items AS i SET state = 'running', lease_owner = $2, lease_host = $6, \
                 lease_ns = $7, lease_pid = $8, lease_until = $9, attempts = i.attempts + 1, \
                 started_at = COALESCE(i.started_at, $3) \
             FROM chosen WHERE i.batch_id = $1 AND i.pos = chosen.pos \
             RETURNING i.pos, i.item_id, i.line, i.n, i.spec::text AS spec, i.attempts, i.jobs::text AS jobs, \
                 i.media::text AS media",
        )
        .bind(batch)
        .bind(&worker.id)
        .bind(now)
        .bind(gone)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(&worker.host)
        .bind(&worker.pid_namespace)
        .bind(i64::from(worker.pid))
        .bind(lease_end(now, lease))
        .fetch_all(&self.pool)
        .await
        .map_err(self.failed("claiming items"))?;
        let decoder = self.decoder();
        let mut items = rows
            .into_iter()
            .map(|raw| decoder.claim(raw))
            .collect::<Result<Vec<_>, _>>()?;
        items.sort_by_key(|item| item.position);
        Ok(items)
    }

    async fn renew(&self, worker: &WorkerId, items: &[ItemKey], lease: Duration) -> Result<Vec<ItemKey>, BatchError> {
        let batch = self.batch.id()?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let kept: Vec<i64> = sqlx::query_scalar(
            "UPDATE hf_media_batch.items SET lease_until = $1 \
             WHERE batch_id = $2 AND state = 'running' AND lease_owner = $3 AND pos = ANY($4) RETURNING pos",
        )
        .bind(lease_end(now_ms(), lease))
        .bind(batch)
        .bind(&worker.id)
        .bind(db_keys(items))
        .fetch_all(&self.pool)
        .await
        .map_err(self.failed("renewing leases"))?;
        Ok(lost(items, &kept))
    }

    async fn record_job(
        &self,
        worker: &WorkerId,
        item: ItemKey,
        index: u32,
        ticket: &Value,
    ) -> Result<bool, BatchError> {
        let batch = self.batch.id()?;
        let done = sqlx::query(
            "UPDATE hf_media_batch.items SET jobs = CASE WHEN $2::jsonb = 'null'::jsonb THEN jobs - $1 \
                 ELSE jobs || jsonb_build_object($1, $2::jsonb) END \
             WHERE batch_id = $3 AND pos = $4 AND state = 'running' AND lease_owner = $5",
        )
        .bind(index.to_string())
        .bind(json_text(ticket))
        .bind(batch)
        .bind(db_int(item.0))
        .bind(&worker.id)
        .execute(&self.pool)
        .await
        .map_err(self.failed("recording a job"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_media(
        &self,
        worker: &WorkerId,
        item: ItemKey,
        index: u32,
        media: &Value,
    ) -> Result<bool, BatchError> {
        let batch = self.batch.id()?;
        let done = sqlx::query(
            "UPDATE hf_media_batch.items SET media = media || jsonb_build_object($1, $2::jsonb), jobs = jobs - $1 \
             WHERE batch_id = $3 AND pos = $4 AND state = 'running' AND lease_owner = $5",
        )
        .bind(index.to_string())
        .bind(json_text(media))
        .bind(batch)
        .bind(db_int(item.0))
        .bind(&worker.id)
        .execute(&self.pool)
        .await
        .map_err(self.failed("recording media"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish(&self, worker: &WorkerId, item: ItemKey, outcome: Outcome) -> Result<bool, BatchError> {
        let batch = self.batch.id()?;
        let (state, provider, error, kind) = match outcome {
            Outcome::Done { provider } => ("done", Some(provider), None, None),
            Outcome::Failed { kind, error } => ("failed", None, Some(json_text(&error)), Some(kind)),
        };
        let done = sqlx::query(
            "UPDATE hf_media_batch.items SET state = $1, provider = $2, error = $3::jsonb, error_kind = $4, \
                 finished_at = $5, lease_owner = NULL, lease_host = NULL, lease_ns = NULL, lease_pid = NULL, \
                 lease_until = NULL \
             WHERE batch_id = $6 AND pos = $7 AND state = 'running' AND lease_owner = $8",
        )
        .bind(state)
        .bind(provider)
        .bind(error)
        .bind(kind)
        .bind(now_ms())
        .bind(batch)
        .bind(db_int(item.0))
        .bind(&worker.id)
        .execute(&self.pool)
        .await
        .map_err(self.failed("finishing an item"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, worker: &WorkerId, items: &[ItemKey]) -> Result<(), BatchError> {
        let batch = self.batch.id()?;
        if items.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE hf_media_batch.items SET state = 'pending', attempts = GREATEST(attempts - 1, 0), \
                 lease_owner = NULL, lease_host = NULL, lease_ns = NULL, lease_pid = NULL, lease_until = NULL \
             WHERE batch_id = $1 AND state = 'running' AND lease_owner = $2 AND pos = ANY($3)",
        )
        .bind(batch)
        .bind(&worker.id)
        .bind(db_keys(items))
        .execute(&self.pool)
        .await
        .map_err(self.failed("releasing items"))?;
        Ok(())
    }

    async fn pause_provider(&self, pause: &ProviderPause) -> Result<(), BatchError> {
        let batch = self.batch.id()?;
        sqlx::query(
            "INSERT INTO hf_media_batch.provider_pauses AS p (batch_id, provider, until_ms, reason, concurrency_hint) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (batch_id, provider) DO UPDATE SET \
                 reason = CASE WHEN excluded.until_ms >= p.until_ms THEN excluded.reason ELSE p.reason END, \
                 concurrency_hint = CASE WHEN excluded.until_ms >= p.until_ms \
                     THEN COALESCE(excluded.concurrency_hint, p.concurrency_hint) ELSE p.concurrency_hint END, \
                 until_ms = GREATEST(p.until_ms, excluded.until_ms)",
        )
        .bind(batch)
        .bind(&pause.provider)
        .bind(pause.until_unix_ms)
        .bind(&pause.reason)
        .bind(pause.concurrency_hint.map(i64::from))
        .execute(&self.pool)
        .await
        .map_err(self.failed("pausing a provider"))?;
        Ok(())
    }

    async fn clear_pauses(&self, reason: &str) -> Result<u64, BatchError> {
        let batch = self.batch.id()?;
        let done = sqlx::query("DELETE FROM hf_media_batch.provider_pauses WHERE batch_id = $1 AND reason = $2")
            .bind(batch)
            .bind(reason)
            .execute(&self.pool)
            .await
            .map_err(self.failed("clearing provider pauses"))?;
        Ok(done.rows_affected())
    }

    async fn provider_pauses(&self) -> Result<Vec<ProviderPause>, BatchError> {
        let batch = self.batch.id()?;
        let rows: Vec<(String, i64, String, Option<i64>)> = sqlx::query_as(
            "SELECT provider, until_ms, reason, concurrency_hint FROM hf_media_batch.provider_pauses \
             WHERE batch_id = $1 ORDER BY provider",
        )
        .bind(batch)
        .fetch_all(&self.pool)
        .await
        .map_err(self.failed("reading provider pauses"))?;
        Ok(rows.into_iter().map(super::pause_from_row).collect())
    }

    async fn counts(&self) -> Result<Counts, BatchError> {
        let batch = self.batch.id()?;
        let rows: Vec<super::CountRow> = sqlx::query_as(
            "SELECT state, error_kind, provider, COUNT(*), MIN(started_at), MAX(finished_at) \
             FROM hf_media_batch.items WHERE batch_id = $1 GROUP BY state, error_kind, provider",
        )
        .bind(batch)
        .fetch_all(&self.pool)
        .await
        .map_err(self.failed("counting items"))?;
        super::counts_from_rows(rows, &self.decoder())
    }

    fn scan(&self) -> BoxStream<'_, Result<ItemRow, BatchError>> {
        let batch = match self.batch.id() {
            Ok(batch) => batch,
            Err(error) => return futures::stream::once(async { Err(error) }).boxed(),
        };
        sqlx::query_as::<_, RawRow>(concat!(
            "SELECT ",
            row_columns!(),
            " FROM hf_media_batch.items WHERE batch_id = $1 ORDER BY pos"
        ))
        .bind(batch)
        .fetch(&self.pool)
        .map(move |row| {
            let raw = row.map_err(self.failed("reading the items"))?;
            self.decoder().row(raw)
        })
        .boxed()
    }

    async fn retry_failed(&self) -> Result<u64, BatchError> {
        let batch = self.batch.id()?;
        let done = sqlx::query(
            "UPDATE hf_media_batch.items SET state = 'pending', error = NULL, error_kind = NULL, \
                 finished_at = NULL, attempts = 0 \
             WHERE batch_id = $1 AND state = 'failed' AND error_kind IS DISTINCT FROM $2",
        )
        .bind(batch)
        .bind(INVALID_LINE)
        .execute(&self.pool)
        .await
        .map_err(self.failed("putting failed items back"))?;
        Ok(done.rows_affected())
    }

    async fn schema_version(&self) -> Result<i64, BatchError> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM hf_media_batch._sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(self.failed("reading the schema version"))?;
        Ok(version.unwrap_or(0))
    }
}
