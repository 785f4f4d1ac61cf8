//! The SQLite backend: one file, WAL, a busy timeout, claims inside `BEGIN IMMEDIATE`; any number of
//! processes of one machine on the same file.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, QueryBuilder, Sqlite};

use super::{
    BatchIdentity, BatchInfo, BatchState, ClaimedItem, Counts, Current, Decoder, INVALID_LINE, ItemKey, ItemRow,
    NewItem, Outcome, ProviderPause, RawClaim, RawRow, StoredBatch, WorkerId, db_int, db_keys, json_text, lease_end,
    lost, migrate_with_retry, now_ms,
};
use crate::BatchError;

/// The SQLite schema's migrations (`migrations/sqlite`), embedded.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a statement waits for another process's write to end.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Rows per insert statement (9 values a row, well under SQLite's 32,766 variables).
const INSERT_ROWS: usize = 500;

/// The state in an SQLite file.
pub(crate) struct SqliteState {
    pool: SqlitePool,
    location: String,
    batch: Current,
}

impl fmt::Debug for SqliteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteState")
            .field("location", &self.location)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// The columns of an item row ([`RawRow`]), for `SELECT` and `RETURNING`.
macro_rules! row_columns {
    () => {
        "pos, item_id, line, n, spec, state, attempts, jobs, media, error, error_kind, provider, \
         lease_owner, lease_until, started_at, finished_at"
    };
}

/// The JSON path of a media index in a jobs or media object.
fn index_path(index: u32) -> String {
    format!("$.\"{index}\"")
}

/// The keys as a JSON array, for `json_each`.
fn keys_json(items: &[ItemKey]) -> String {
    json_text(&Value::from(db_keys(items)))
}

impl SqliteState {
    pub(crate) async fn open(path: &Path) -> Result<SqliteState, BatchError> {
        let location = format!("sqlite:{}", path.display());
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| BatchError::State {
                location: location.clone(),
                action: "creating its folder",
                source: sqlx::Error::Io(e),
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL (with WAL): a transaction that returned survives a crash or a kill -9 of the process (it
            // is in the WAL, in the OS's cache), and a clean reboot; only a power cut may lose the last
            // commits. FULL would fsync every commit (~8 ms here), which keeps each job ticket unwritten for
            // that long after the provider accepted the job: a kill in that window pays for it twice, a far
            // likelier event than a power cut.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .disable_statement_logging();
        // One connection first: a database that cannot be reached says why at once (the pool would retry
        // until its timeout, then say only that it timed out).
        let first = options.connect().await.map_err(|source| BatchError::State {
            location: location.clone(),
            action: "opening",
            source,
        })?;
        let _ = sqlx::Connection::close(first).await;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|source| BatchError::State {
                location: location.clone(),
                action: "opening",
                source,
            })?;
        migrate_with_retry(&location, || MIGRATOR.run(&pool)).await?;
        Ok(SqliteState {
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
            _ => sqlx::query_scalar("SELECT COUNT(*) FROM items WHERE batch_id = ?1")
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
impl BatchState for SqliteState {
    async fn open_batch(&self, batch: &BatchIdentity, settings: &Value) -> Result<BatchInfo, BatchError> {
        let failed = self.failed("opening the batch");
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.failed("opening the batch"))?;
        let row: Option<(i64, String, String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT id, fingerprint, input, settings, total, loaded_at FROM batches WHERE batch_key = ?1",
        )
        .bind(&batch.key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(self.failed("opening the batch"))?;
        let (stored, created) = match row {
            Some((id, fingerprint, input, settings, total, loaded_at)) => (
                StoredBatch {
                    id,
                    fingerprint,
                    input,
                    settings,
                    total,
                    loaded: loaded_at.is_some(),
                },
                false,
            ),
            None => {
                let settings = json_text(settings);
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO batches (batch_key, fingerprint, input, settings, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                )
                .bind(&batch.key)
                .bind(&batch.fingerprint)
                .bind(&batch.input)
                .bind(&settings)
                .bind(now_ms())
                .fetch_one(&mut *tx)
                .await
                .map_err(self.failed("creating the batch"))?;
                let stored = StoredBatch {
                    id,
                    fingerprint: batch.fingerprint.clone(),
                    input: batch.input.clone(),
                    settings,
                    total: None,
                    loaded: false,
                };
                (stored, true)
            }
        };
        tx.commit().await.map_err(failed)?;
        stored.check(batch, &self.location)?;
        self.batch.set(stored.id, &batch.key)?;
        self.info(stored, created).await
    }

    async fn select_batch(&self, key: &str) -> Result<BatchInfo, BatchError> {
        let row: Option<(i64, String, String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT id, fingerprint, input, settings, total, loaded_at FROM batches WHERE batch_key = ?1",
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
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.failed("adding items"))?;
        for chunk in items.chunks(INSERT_ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO items (batch_id, pos, item_id, line, n, spec, state, error, error_kind) ",
            );
            insert.push_values(chunk, |mut row, item| {
                let (state, kind) = match item.invalid {
                    Some(_) => ("failed", Some(INVALID_LINE)),
                    None => ("pending", None),
                };
                row.push_bind(batch)
                    .push_bind(db_int(item.position))
                    .push_bind(item.id.clone())
                    .push_bind(db_int(item.line))
                    .push_bind(i64::from(item.n))
                    .push_bind(json_text(&item.spec))
                    .push_bind(state)
                    .push_bind(item.invalid.as_ref().map(json_text))
                    .push_bind(kind);
            });
            insert.push(" ON CONFLICT DO NOTHING");
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(self.failed("adding items"))?;
        }
        tx.commit().await.map_err(self.failed("adding items"))
    }

    async fn mark_loaded(&self, total: u64) -> Result<(), BatchError> {
        let batch = self.batch.id()?;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.failed("marking the batch loaded"))?;
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items WHERE batch_id = ?1")
            .bind(batch)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.failed("counting the items"))?;
        if stored != db_int(total) {
            return Err(BatchError::StateData {
                location: self.location.clone(),
                reason: format!("the batch has {stored} items stored, not the {total} its input has"),
            });
        }
        sqlx::query("UPDATE batches SET total = ?1, loaded_at = COALESCE(loaded_at, ?2) WHERE id = ?3")
            .bind(db_int(total))
            .bind(now_ms())
            .bind(batch)
            .execute(&mut *tx)
            .await
            .map_err(self.failed("marking the batch loaded"))?;
        tx.commit().await.map_err(self.failed("marking the batch loaded"))
    }

    async fn append_item(&self, item: NewItem) -> Result<ItemKey, BatchError> {
        let batch = self.batch.id()?;
        let failed = || self.failed("appending an item");
        // One writer at a time: the position read here is still the next one when the insert runs.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(failed())?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT pos FROM items WHERE batch_id = ?1 AND item_id = ?2")
            .bind(batch)
            .bind(&item.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(failed())?;
        if exists.is_some() {
            return Err(BatchError::DuplicateItem { id: item.id });
        }
        let position: i64 = sqlx::query_scalar(
            "SELECT MAX(COALESCE((SELECT next_pos FROM batches WHERE id = ?1), 0), \
                 COALESCE((SELECT MAX(pos) + 1 FROM items WHERE batch_id = ?1), 0))",
        )
        .bind(batch)
        .fetch_one(&mut *tx)
        .await
        .map_err(failed())?;
        let (state, kind) = match item.invalid {
            Some(_) => ("failed", Some(INVALID_LINE)),
            None => ("pending", None),
        };
        sqlx::query(
            "INSERT INTO items (batch_id, pos, item_id, line, n, spec, state, error, error_kind) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
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
        .execute(&mut *tx)
        .await
        .map_err(failed())?;
        sqlx::query("UPDATE batches SET next_pos = ?1 + 1, total = total + 1 WHERE id = ?2")
            .bind(position)
            .bind(batch)
            .execute(&mut *tx)
            .await
            .map_err(failed())?;
        tx.commit().await.map_err(failed())?;
        Ok(ItemKey(self.decoder().unsigned(position, "the position", position)?))
    }

    async fn item(&self, id: &str) -> Result<Option<ItemRow>, BatchError> {
        let batch = self.batch.id()?;
        let raw: Option<RawRow> = sqlx::query_as(concat!(
            "SELECT ",
            row_columns!(),
            " FROM items WHERE batch_id = ?1 AND item_id = ?2"
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
                sqlx::query_scalar::<_, i64>("SELECT pos FROM items WHERE batch_id = ?1 AND item_id = ?2")
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
                    " FROM items WHERE batch_id = ?1 AND pos < ?2 ORDER BY pos DESC LIMIT ?3"
                ),
                from.unwrap_or(i64::MAX),
            )
        } else {
            (
                concat!(
                    "SELECT ",
                    row_columns!(),
                    " FROM items WHERE batch_id = ?1 AND pos > ?2 ORDER BY pos LIMIT ?3"
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(failed())?;
        let raw: Option<RawRow> = sqlx::query_as(concat!(
            "DELETE FROM items WHERE batch_id = ?1 AND item_id = ?2 RETURNING ",
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
            "UPDATE batches SET next_pos = MAX(COALESCE(next_pos, 0), ?1 + 1), total = total - 1 WHERE id = ?2",
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
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.failed("claiming items"))?;
        // Holders on this host whose lease runs but whose process is gone.
        let holders: Vec<(String, String, Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT DISTINCT lease_owner, lease_host, lease_ns, lease_pid FROM items \
             WHERE batch_id = ?1 AND state = 'running' AND lease_until >= ?2 AND lease_host = ?3 \
             AND lease_owner <> ?4",
        )
        .bind(batch)
        .bind(now)
        .bind(&worker.host)
        .bind(&worker.id)
        .fetch_all(&mut *tx)
        .await
        .map_err(self.failed("claiming items"))?;
        let gone: Vec<Value> = holders
            .into_iter()
            .filter(|(_, host, ns, pid)| worker.sees_gone(host, ns.as_deref(), pid.unwrap_or(0)))
            .map(|(owner, ..)| Value::from(owner))
            .collect();
        let rows: Vec<RawClaim> = sqlx::query_as(
            "UPDATE items SET state = 'running', lease_owner = ?1, lease_host = ?2, lease_ns = ?3, lease_pid = ?4, \
                 lease_until = ?5, attempts = attempts + 1, started_at = COALESCE(started_at, ?6) \
             WHERE batch_id = ?7 AND pos IN ( \
                 SELECT pos FROM ( \
                     SELECT pos FROM items WHERE batch_id = ?7 AND state = 'running' AND lease_owner <> ?1 \
                         AND (lease_until < ?6 OR lease_owner IN (SELECT value FROM json_each(?8))) \
                     UNION ALL \
                     SELECT pos FROM (SELECT pos FROM items WHERE batch_id = ?7 AND state = 'pending' \
                         ORDER BY pos LIMIT ?9) \
                 ) ORDER BY pos LIMIT ?9) \
             RETURNING pos, item_id, line, n, spec, attempts, jobs, media",
        )
        .bind(&worker.id)
        .bind(&worker.host)
        .bind(&worker.pid_namespace)
        .bind(i64::from(worker.pid))
        .bind(lease_end(now, lease))
        .bind(now)
        .bind(batch)
        .bind(json_text(&Value::from(gone)))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(self.failed("claiming items"))?;
        tx.commit().await.map_err(self.failed("claiming items"))?;
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
            "UPDATE items SET lease_until = ?1 \
             WHERE batch_id = ?2 AND state = 'running' AND lease_owner = ?3 \
             AND pos IN (SELECT value FROM json_each(?4)) RETURNING pos",
        )
        .bind(lease_end(now_ms(), lease))
        .bind(batch)
        .bind(&worker.id)
        .bind(keys_json(items))
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
        let done = if ticket.is_null() {
            sqlx::query(
                "UPDATE items SET jobs = json_remove(jobs, ?1) \
                 WHERE batch_id = ?2 AND pos = ?3 AND state = 'running' AND lease_owner = ?4",
            )
            .bind(index_path(index))
        } else {
            sqlx::query(
                "UPDATE items SET jobs = json_set(jobs, ?1, json(?5)) \
                 WHERE batch_id = ?2 AND pos = ?3 AND state = 'running' AND lease_owner = ?4",
            )
            .bind(index_path(index))
        }
        .bind(batch)
        .bind(db_int(item.0))
        .bind(&worker.id);
        let done = if ticket.is_null() {
            done
        } else {
            done.bind(json_text(ticket))
        }
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
            "UPDATE items SET media = json_set(media, ?1, json(?2)), jobs = json_remove(jobs, ?1) \
             WHERE batch_id = ?3 AND pos = ?4 AND state = 'running' AND lease_owner = ?5",
        )
        .bind(index_path(index))
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
            "UPDATE items SET state = ?1, provider = ?2, error = ?3, error_kind = ?4, finished_at = ?5, \
                 lease_owner = NULL, lease_host = NULL, lease_ns = NULL, lease_pid = NULL, lease_until = NULL \
             WHERE batch_id = ?6 AND pos = ?7 AND state = 'running' AND lease_owner = ?8",
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
            "UPDATE items SET state = 'pending', attempts = MAX(attempts - 1, 0), \
                 lease_owner = NULL, lease_host = NULL, lease_ns = NULL, lease_pid = NULL, lease_until = NULL \
             WHERE batch_id = ?1 AND state = 'running' AND lease_owner = ?2 \
             AND pos IN (SELECT value FROM json_each(?3))",
        )
        .bind(batch)
        .bind(&worker.id)
        .bind(keys_json(items))
        .execute(&self.pool)
        .await
        .map_err(self.failed("releasing items"))?;
        Ok(())
    }

    async fn pause_provider(&self, pause: &ProviderPause) -> Result<(), BatchError> {
        let batch = self.batch.id()?;
        sqlx::query(
            "INSERT INTO provider_pauses (batch_id, provider, until_ms, reason, concurrency_hint) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (batch_id, provider) DO UPDATE SET \
                 reason = CASE WHEN excluded.until_ms >= provider_pauses.until_ms \
                     THEN excluded.reason ELSE provider_pauses.reason END, \
                 concurrency_hint = CASE WHEN excluded.until_ms >= provider_pauses.until_ms \
                     THEN COALESCE(excluded.concurrency_hint, provider_pauses.concurrency_hint) \
                     ELSE provider_pauses.concurrency_hint END, \
                 until_ms = MAX(provider_pauses.until_ms, excluded.until_ms)",
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
        let done = sqlx::query("DELETE FROM provider_pauses WHERE batch_id = ?1 AND reason = ?2")
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
            "SELECT provider, until_ms, reason, concurrency_hint FROM provider_pauses \
             WHERE batch_id = ?1 ORDER BY provider",
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
            "SELECT state, error_kind, provider, COUNT(*), MIN(started_at), MAX(finished_at) FROM items \
             WHERE batch_id = ?1 GROUP BY state, error_kind, provider",
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
            " FROM items WHERE batch_id = ?1 ORDER BY pos"
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
            "UPDATE items SET state = 'pending', error = NULL, error_kind = NULL, finished_at = NULL, attempts = 0 \
             WHERE batch_id = ?1 AND state = 'failed' AND (error_kind IS NULL OR error_kind <> ?2)",
        )
        .bind(batch)
        .bind(INVALID_LINE)
        .execute(&self.pool)
        .await
        .map_err(self.failed("putting failed items back"))?;
        Ok(done.rows_affected())
    }

    async fn schema_version(&self) -> Result<i64, BatchError> {
        let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
            .map_err(self.failed("reading the schema version"))?;
        Ok(version.unwrap_or(0))
    }
}
