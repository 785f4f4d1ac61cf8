//! The state store of resumable batch jobs: which items are pending, running (and by whom, until when),
//! done or failed, with the provider job tickets and the media records each item has so far, so that a
//! restarted or second worker loses nothing and pays for nothing twice.
//!
//! One trait, [`BatchState`], two backends: SQLite (an embedded file, for one machine, any number of
//! processes) and PostgreSQL (for several machines). [`open_state`] connects and brings the schema up to
//! date (versioned migrations embedded in the binary). See the crate README, section "State", for the
//! schema, the leases and the clock assumption.

mod postgres;
mod process;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{BatchError, BatchItem, LineError};

pub use process::WorkerId;

/// The error kind of an item that was bad in the input: stored failed by [`BatchState::add_items`], never
/// claimed, never retried.
pub const INVALID_LINE: &str = "invalid_line";

/// The schema version the embedded migrations bring a database to (the same for both backends).
pub const SCHEMA_VERSION: i64 = 2;

/// Where the state lives: the `--state` value.
///
/// Parses from `sqlite:PATH`, `sqlite://PATH` (so `sqlite:///abs/path` is an absolute path),
/// `postgres://…` and `postgresql://…`. The PostgreSQL URL's password never shows: [`Display`](fmt::Display)
/// and [`Debug`] print it as `***` (also a `password=` query parameter).
#[derive(Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// An SQLite database file (created when missing, with its folder).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://user:password@host:port/database?sslmode=require`).
    Postgres(String),
}

impl StateLocation {
    /// The location as it may be shown: the path, or the URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        match self {
            StateLocation::Sqlite(path) => format!("sqlite:{}", path.display()),
            StateLocation::Postgres(url) => redact_url(url),
        }
    }
}

impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLocation::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StateLocation::Postgres(url) => f.debug_tuple("Postgres").field(&redact_url(url)).finish(),
        }
    }
}

impl FromStr for StateLocation {
    type Err = BatchError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let bad = |reason: &str| BatchError::StateLocation {
            given: redact_url(trimmed),
            reason: reason.to_owned(),
        };
        let lower = trimmed.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(StateLocation::Postgres(trimmed.to_owned()));
        }
        if lower.starts_with("sqlite:") {
            let rest = &trimmed["sqlite:".len()..];
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(bad("no file after `sqlite:`: give sqlite:PATH, e.g. sqlite:state.db"));
            }
            if path.starts_with(':') {
                return Err(bad(
                    "an in-memory database would lose the state when the process ends: give a file, e.g. sqlite:state.db",
                ));
            }
            return Ok(StateLocation::Sqlite(PathBuf::from(path)));
        }
        Err(bad(
            "use sqlite:PATH (a file on this machine) or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
        ))
    }
}

/// The URL with the password (of the user info, and of a `password=` query parameter) replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let start = scheme_end + 3;
        // The user info ends at the last `@` before the query: a password may hold `/` or `@` unescaped.
        let authority_end = out[start..].find(['?', '#']).map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..authority_end].rfind('@') {
            let at = start + at;
            if let Some(colon) = out[start..at].find(':') {
                out.replace_range(start + colon + 1..at, "***");
            }
        }
    }
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
}

/// Connects to the state at `location` and brings its schema up to date. Any number of processes (and
/// machines, for PostgreSQL) may open the same state at once.
pub async fn open_state(location: &StateLocation) -> Result<Arc<dyn BatchState>, BatchError> {
    match location {
        StateLocation::Sqlite(path) => Ok(Arc::new(sqlite::SqliteState::open(path).await?)),
        StateLocation::Postgres(url) => Ok(Arc::new(postgres::PostgresState::open(url).await?)),
    }
}

/// Which batch of the state: one batch per output location (`key`) in one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchIdentity {
    /// The output location (`/abs/dataset`, `s3://bucket/prefix`): one batch per key in one database.
    pub key: String,
    /// The fingerprint of the input's items (see [`Items::fingerprint`](crate::Items::fingerprint)): the
    /// same key with another fingerprint is refused ([`BatchError::DifferentBatch`]).
    pub fingerprint: String,
    /// The input's name (its path), for messages.
    pub input: String,
}

/// What [`BatchState::open_batch`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchInfo {
    /// The batch was created by this call (else it existed: a resume).
    pub created: bool,
    /// All the batch's items were added ([`BatchState::mark_loaded`] was called).
    pub loaded: bool,
    /// How many items: the total given to [`BatchState::mark_loaded`] once loaded, else how many are
    /// stored so far.
    pub total: u64,
    /// The settings as first stored (by the call that created the batch): a resume keeps them (e.g. the
    /// number of items per output folder), whatever this call passed.
    pub settings: Value,
}

/// An item, as [`BatchState::claim`], [`BatchState::renew`], [`BatchState::finish`] … name it: its
/// position in the input (0-based), unique in its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemKey(pub u64);

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// An item to store ([`BatchState::add_items`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewItem {
    /// Its 0-based order in the input, bad lines included: the order of [`BatchState::scan`] and of
    /// [`BatchState::claim`]. Becomes its [`ItemKey`]. Ignored by [`BatchState::append_item`], which
    /// allocates the position itself.
    pub position: u64,
    /// Its id (the `custom_id` or the stable id), unique in the batch.
    pub id: String,
    /// Its line number in the input (from 1).
    pub line: u64,
    /// How many media it asks for (the request's `n`): its media and job tickets are indexed `0..n`.
    pub n: u32,
    /// The request ([`GenerateRequest`](hf_media::GenerateRequest)) as JSON; `null` for a bad line.
    pub spec: Value,
    /// For a bad line: the error (`{"code", "message"}`), stored as a failed item of kind
    /// [`INVALID_LINE`], never claimed.
    pub invalid: Option<Value>,
}

impl NewItem {
    /// A good item of the input, at `position`.
    pub fn from_item(position: u64, item: &BatchItem) -> NewItem {
        NewItem {
            position,
            id: item.id.clone(),
            line: item.line as u64,
            n: u32::try_from(item.request.n).unwrap_or(u32::MAX),
            spec: serde_json::to_value(&item.request).unwrap_or(Value::Null),
            invalid: None,
        }
    }

    /// A bad line of the input, at `position`: stored failed with `{"code", "message"}`. Its id is its
    /// `custom_id`, else (or when the error is that the id is a duplicate) `line-<line, 6 digits>`.
    pub fn from_line_error(position: u64, error: &LineError) -> NewItem {
        let id = match (&error.custom_id, &error.error) {
            (Some(id), e) if !matches!(e, BatchError::DuplicateId { .. }) => id.clone(),
            _ => format!("line-{:06}", error.line),
        };
        NewItem {
            position,
            id,
            line: error.line as u64,
            n: 0,
            spec: Value::Null,
            invalid: Some(serde_json::json!({
                "code": error.error.code(),
                "message": error.error.to_string(),
            })),
        }
    }
}

/// An item a worker claimed ([`BatchState::claim`]): what to generate, and what earlier attempts left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimedItem {
    /// Its key.
    pub key: ItemKey,
    /// Its id.
    pub id: String,
    /// Its line in the input.
    pub line: u64,
    /// Its position in the input.
    pub position: u64,
    /// How many media it asks for.
    pub n: u32,
    /// The request, as JSON.
    pub spec: Value,
    /// How many times it was claimed, this claim included (a [`release`](BatchState::release) does not
    /// count): 1 on a first try.
    pub attempts: u32,
    /// The provider job tickets recorded by earlier attempts and not yet turned into media, by media
    /// index: resume these (poll them) rather than submitting again.
    pub jobs: BTreeMap<u32, Value>,
    /// The media recorded by earlier attempts, by media index: these are done.
    pub media: BTreeMap<u32, Value>,
}

/// The state of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    /// Not started, or released, or back for a retry.
    Pending,
    /// Claimed by a worker (see [`ItemRow::lease_owner`]).
    Running,
    /// Finished with its media.
    Done,
    /// Finished with an error (see [`ItemRow::error`]), or a bad input line.
    Failed,
}

impl ItemState {
    /// Its name in the database and in JSON: `pending`, `running`, `done`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Pending => "pending",
            ItemState::Running => "running",
            ItemState::Done => "done",
            ItemState::Failed => "failed",
        }
    }

    fn parse(name: &str) -> Option<ItemState> {
        match name {
            "pending" => Some(ItemState::Pending),
            "running" => Some(ItemState::Running),
            "done" => Some(ItemState::Done),
            "failed" => Some(ItemState::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for ItemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything stored about an item ([`BatchState::scan`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRow {
    /// Its key.
    pub key: ItemKey,
    /// Its id.
    pub id: String,
    /// Its line in the input.
    pub line: u64,
    /// Its position in the input.
    pub position: u64,
    /// How many media it asks for.
    pub n: u32,
    /// The request, as JSON (`null` for a bad line).
    pub spec: Value,
    /// Its state.
    pub state: ItemState,
    /// How many times it was claimed (releases not counted).
    pub attempts: u32,
    /// The provider job tickets not yet turned into media, by media index.
    pub jobs: BTreeMap<u32, Value>,
    /// The media records, by media index.
    pub media: BTreeMap<u32, Value>,
    /// The error of a failed item.
    pub error: Option<Value>,
    /// The error kind of a failed item ([`INVALID_LINE`] for a bad input line).
    pub error_kind: Option<String>,
    /// The provider that made a done item's media.
    pub provider: Option<String>,
    /// The worker holding a running item.
    pub lease_owner: Option<String>,
    /// Until when (unix ms) the worker holds it.
    pub lease_until: Option<i64>,
    /// When it was first claimed (unix ms).
    pub started_at: Option<i64>,
    /// When it finished (unix ms).
    pub finished_at: Option<i64>,
}

/// How a worker finished an item ([`BatchState::finish`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    /// All its media are there (recorded by [`BatchState::record_media`]).
    Done {
        /// The provider that made them.
        provider: String,
    },
    /// It failed.
    Failed {
        /// A short stable kind (`provider_error`, `timeout`, `content_filtered`, …), counted in
        /// [`Counts::failed_by_kind`].
        kind: String,
        /// The error, as JSON (`{"code", "message", …}`).
        error: Value,
    },
}

/// How many items are in each state ([`BatchState::counts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Pending items.
    pub pending: u64,
    /// Running items.
    pub running: u64,
    /// Done items.
    pub done: u64,
    /// Failed items (bad input lines included).
    pub failed: u64,
    /// Failed items by error kind.
    pub failed_by_kind: BTreeMap<String, u64>,
    /// Done items by provider.
    pub done_by_provider: BTreeMap<String, u64>,
    /// When the first item was first claimed (unix ms), for the throughput.
    pub first_started_at: Option<i64>,
    /// When the last item finished (unix ms), for the throughput.
    pub last_finished_at: Option<i64>,
}

impl Counts {
    /// All items.
    pub fn total(&self) -> u64 {
        self.pending + self.running + self.done + self.failed
    }

    /// Items that are done or failed.
    pub fn finished(&self) -> u64 {
        self.done + self.failed
    }
}

/// A provider told to wait ([`BatchState::pause_provider`]): every worker of the batch holds its
/// requests to it until `until_unix_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderPause {
    /// The provider (`fal-ai`, `replicate`, …).
    pub provider: String,
    /// Until when (unix ms).
    pub until_unix_ms: i64,
    /// Why: `rate_limited` or `out_of_credits`.
    pub reason: String,
    /// How many requests at once the provider seems to take, when known.
    pub concurrency_hint: Option<u32>,
}

/// The state of batches: one database (an SQLite file or a PostgreSQL database) holds any number of
/// batches, one per [`BatchIdentity::key`]; a handle serves the one [`open_batch`](BatchState::open_batch)
/// opened, and every other method fails with [`BatchError::NoBatch`] before it.
///
/// Every change an item's worker makes ([`renew`](BatchState::renew),
/// [`record_job`](BatchState::record_job), [`record_media`](BatchState::record_media),
/// [`finish`](BatchState::finish), [`release`](BatchState::release)) applies only while that worker still
/// holds the item: after a takeover the old worker's writes are dropped and it is told (`false`, or the key
/// in the lost list).
///
/// Times are unix milliseconds from the calling machine's clock, leases included: the machines sharing a
/// state must have clocks that agree to well within a lease (NTP does).
#[async_trait]
pub trait BatchState: Send + Sync + fmt::Debug {
    /// Creates the batch, or opens the existing one of the same key: the same key with a different
    /// fingerprint is refused ([`BatchError::DifferentBatch`], naming both inputs). `settings` are stored
    /// when the batch is created; [`BatchInfo::settings`] gives back the first ones.
    async fn open_batch(&self, batch: &BatchIdentity, settings: &Value) -> Result<BatchInfo, BatchError>;

    /// Opens the existing batch of `key`, whatever its items (to read where it stands: `batch status`);
    /// [`BatchError::UnknownBatch`] when the state holds none.
    async fn select_batch(&self, key: &str) -> Result<BatchInfo, BatchError>;

    /// Stores items, pending (or failed, for bad lines). Idempotent: an item whose id or position is
    /// already stored is left as it is. One transaction, multi-row inserts: call it with chunks of a
    /// thousand or so.
    async fn add_items(&self, items: &[NewItem]) -> Result<(), BatchError>;

    /// Marks the batch loaded: all `total` items were added. Fails when the number stored is not `total`.
    async fn mark_loaded(&self, total: u64) -> Result<(), BatchError>;

    /// Stores one item at the batch's next position and returns its key: for items that come one at a
    /// time (a server's jobs) rather than from an input file.
    ///
    /// The position is allocated atomically: one more than the largest the batch ever held (stored, or
    /// held by an item since [deleted](BatchState::delete_item): a position is never handed out twice, so
    /// a deleted item's late writes can never land on another item). Appends from any number of handles,
    /// processes and machines at once all succeed, each with its own position, and
    /// [`claim`](BatchState::claim) hands them out in that order. On SQLite the append runs inside
    /// `BEGIN IMMEDIATE`; on PostgreSQL it locks the batch's row for the transaction.
    ///
    /// The given [`NewItem::position`] is ignored; everything else is stored as
    /// [`add_items`](BatchState::add_items) stores it: pending, or failed with kind [`INVALID_LINE`] when
    /// it has an `invalid` error. An id the batch already holds is refused with
    /// [`BatchError::DuplicateItem`] and nothing is stored (unlike `add_items`, which leaves such an item
    /// out silently). When the batch was [marked loaded](BatchState::mark_loaded) its total grows by one.
    async fn append_item(&self, item: NewItem) -> Result<ItemKey, BatchError>;

    /// The item of id `id`, whatever its state (bad input lines included); `None` when the batch holds
    /// none.
    async fn item(&self, id: &str) -> Result<Option<ItemRow>, BatchError>;

    /// A page of items, for listing them a page at a time: up to `limit` items in position order,
    /// ascending (oldest first) or, with `descending`, newest first. Without `after` the page starts at
    /// the first item (the last one when descending); with it, right after the item of id `after` in that
    /// order (that item excluded). An `after` the batch does not hold (never did, or deleted since) is
    /// [`BatchError::UnknownItem`].
    ///
    /// Every item counts, bad input lines included. A page shorter than `limit` (possibly empty) is the
    /// end of the list; `limit` 0 gives an empty page (once `after` is checked). Each page is read on its
    /// own: an item appended while a listing goes on comes at the end of an ascending listing and is not
    /// seen by a descending one that is past it; a deleted item is not seen by the pages read after.
    async fn items_page(&self, after: Option<&str>, limit: usize, descending: bool)
    -> Result<Vec<ItemRow>, BatchError>;

    /// Removes the item of id `id` and returns it as it was, its media records included (so that the
    /// caller can remove their files); `None` when the batch holds none. Its job tickets and media records
    /// go with it; its position is never handed out again (see [`append_item`](BatchState::append_item)).
    /// When the batch was [marked loaded](BatchState::mark_loaded) its total shrinks by one.
    ///
    /// Any item may be deleted, a running one too: its holder is not told at once but at its next write,
    /// which writes nothing — [`renew`](BatchState::renew) lists the item as lost, and
    /// [`record_job`](BatchState::record_job), [`record_media`](BatchState::record_media) and
    /// [`finish`](BatchState::finish) return `false` ([`release`](BatchState::release) does nothing). The
    /// holder's provider job is not cancelled by this, and a media it stores before it notices is in the
    /// sink but in no record: stop the holder's run, and remove what it stored once it ended.
    async fn delete_item(&self, id: &str) -> Result<Option<ItemRow>, BatchError>;

    /// Claims up to `limit` items for `worker`, for `lease`, exactly once across every worker of every
    /// process: pending items in input order, and running items of another worker whose lease has
    /// expired or whose process is gone (same host and PID namespace, no `/proc/{pid}`, on Linux) —
    /// taken over at once, with their job tickets and media. Each becomes running, held by `worker` until
    /// now + `lease`, its attempts one more. An item `worker` already holds is never handed to it again.
    async fn claim(&self, worker: &WorkerId, limit: usize, lease: Duration) -> Result<Vec<ClaimedItem>, BatchError>;

    /// Extends `worker`'s hold on `items` to now + `lease`; returns the keys it no longer holds (taken
    /// over, or finished): stop working on those.
    async fn renew(&self, worker: &WorkerId, items: &[ItemKey], lease: Duration) -> Result<Vec<ItemKey>, BatchError>;

    /// Records the provider job ticket of media `index` of `item` (the moment the provider accepted the
    /// job, before waiting for it), so that a later attempt resumes it rather than paying again. A `null`
    /// ticket removes the stored one (the job cannot be resumed). Returns whether `worker` still holds the
    /// item (nothing is written if not).
    async fn record_job(
        &self,
        worker: &WorkerId,
        item: ItemKey,
        index: u32,
        ticket: &Value,
    ) -> Result<bool, BatchError>;

    /// Records media `index` of `item` (where it was stored, …) and removes that index's job ticket.
    /// Returns whether `worker` still holds the item (nothing is written if not).
    async fn record_media(
        &self,
        worker: &WorkerId,
        item: ItemKey,
        index: u32,
        media: &Value,
    ) -> Result<bool, BatchError>;

    /// Finishes `item`: done or failed, lease cleared. Returns whether `worker` still held it (nothing is
    /// written if not: whoever took it over finishes it).
    async fn finish(&self, worker: &WorkerId, item: ItemKey, outcome: Outcome) -> Result<bool, BatchError>;

    /// Gives items back (on a clean stop): pending again, lease cleared, job tickets and media kept, and
    /// the claim not counted as an attempt. Items `worker` no longer holds are left alone.
    async fn release(&self, worker: &WorkerId, items: &[ItemKey]) -> Result<(), BatchError>;

    /// Pauses a provider for the whole batch. An existing pause of the provider keeps the later `until`
    /// (and the reason and hint that came with it).
    async fn pause_provider(&self, pause: &ProviderPause) -> Result<(), BatchError>;

    /// Removes the batch's provider pauses given for `reason` (`out_of_credits` at the start of a run:
    /// credits may have been topped up since); returns how many.
    async fn clear_pauses(&self, reason: &str) -> Result<u64, BatchError>;

    /// The batch's provider pauses, ended ones included (compare `until_unix_ms` with the clock), by
    /// provider.
    async fn provider_pauses(&self) -> Result<Vec<ProviderPause>, BatchError>;

    /// How many items are in each state.
    async fn counts(&self) -> Result<Counts, BatchError>;

    /// Every item, in input order, streamed from the database (not loaded in memory): to write the result
    /// files.
    fn scan(&self) -> BoxStream<'_, Result<ItemRow, BatchError>>;

    /// Puts the failed items back to pending, bad input lines excepted (for `--retry-failed`): error
    /// cleared, attempts back to 0, job tickets and media kept. Returns how many.
    async fn retry_failed(&self) -> Result<u64, BatchError>;

    /// The schema version of the database (the latest migration applied): [`SCHEMA_VERSION`] once opened.
    async fn schema_version(&self) -> Result<i64, BatchError>;
}

/// The clock: unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// now + `lease`, in unix ms.
pub(crate) fn lease_end(now: i64, lease: Duration) -> i64 {
    now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

/// An item row as both backends read it (JSON as text).
#[derive(sqlx::FromRow)]
pub(crate) struct RawRow {
    pos: i64,
    item_id: String,
    line: i64,
    n: i64,
    spec: String,
    state: String,
    attempts: i64,
    jobs: String,
    media: String,
    error: Option<String>,
    error_kind: Option<String>,
    provider: Option<String>,
    lease_owner: Option<String>,
    lease_until: Option<i64>,
    started_at: Option<i64>,
    finished_at: Option<i64>,
}

/// A claimed row as both backends read it.
#[derive(sqlx::FromRow)]
pub(crate) struct RawClaim {
    pos: i64,
    item_id: String,
    line: i64,
    n: i64,
    spec: String,
    attempts: i64,
    jobs: String,
    media: String,
}

/// Reads what a backend stored, or says it is unreadable.
pub(crate) struct Decoder<'a> {
    pub location: &'a str,
}

impl Decoder<'_> {
    fn bad(&self, what: String) -> BatchError {
        BatchError::StateData {
            location: self.location.to_owned(),
            reason: what,
        }
    }

    fn json(&self, text: &str, what: &str, pos: i64) -> Result<Value, BatchError> {
        serde_json::from_str(text).map_err(|e| self.bad(format!("item #{pos}: {what} is not JSON ({e})")))
    }

    fn indexed(&self, text: &str, what: &str, pos: i64) -> Result<BTreeMap<u32, Value>, BatchError> {
        let map: serde_json::Map<String, Value> = serde_json::from_str(text)
            .map_err(|e| self.bad(format!("item #{pos}: {what} is not a JSON object ({e})")))?;
        map.into_iter()
            .map(|(k, v)| {
                k.parse::<u32>()
                    .map(|k| (k, v))
                    .map_err(|_| self.bad(format!("item #{pos}: {what} has a key `{k}` that is not a media index")))
            })
            .collect()
    }

    fn unsigned(&self, value: i64, what: &str, pos: i64) -> Result<u64, BatchError> {
        u64::try_from(value).map_err(|_| self.bad(format!("item #{pos}: {what} is negative ({value})")))
    }

    fn small(&self, value: i64, what: &str, pos: i64) -> Result<u32, BatchError> {
        u32::try_from(value).map_err(|_| self.bad(format!("item #{pos}: {what} is out of range ({value})")))
    }

    pub(crate) fn row(&self, raw: RawRow) -> Result<ItemRow, BatchError> {
        let pos = raw.pos;
        let position = self.unsigned(pos, "the position", pos)?;
        let state = ItemState::parse(&raw.state)
            .ok_or_else(|| self.bad(format!("item #{pos}: unknown state `{}`", raw.state)))?;
        Ok(ItemRow {
            key: ItemKey(position),
            id: raw.item_id,
            line: self.unsigned(raw.line, "the line", pos)?,
            position,
            n: self.small(raw.n, "n", pos)?,
            spec: self.json(&raw.spec, "the request", pos)?,
            state,
            attempts: self.small(raw.attempts, "attempts", pos)?,
            jobs: self.indexed(&raw.jobs, "the job tickets", pos)?,
            media: self.indexed(&raw.media, "the media", pos)?,
            error: raw
                .error
                .as_deref()
                .map(|e| self.json(e, "the error", pos))
                .transpose()?,
            error_kind: raw.error_kind,
            provider: raw.provider,
            lease_owner: raw.lease_owner,
            lease_until: raw.lease_until,
            started_at: raw.started_at,
            finished_at: raw.finished_at,
        })
    }

    pub(crate) fn claim(&self, raw: RawClaim) -> Result<ClaimedItem, BatchError> {
        let pos = raw.pos;
        let position = self.unsigned(pos, "the position", pos)?;
        Ok(ClaimedItem {
            key: ItemKey(position),
            id: raw.item_id,
            line: self.unsigned(raw.line, "the line", pos)?,
            position,
            n: self.small(raw.n, "n", pos)?,
            spec: self.json(&raw.spec, "the request", pos)?,
            attempts: self.small(raw.attempts, "attempts", pos)?,
            jobs: self.indexed(&raw.jobs, "the job tickets", pos)?,
            media: self.indexed(&raw.media, "the media", pos)?,
        })
    }
}

/// A row of the counts query: state, error kind, provider, count, first start, last finish.
pub(crate) type CountRow = (String, Option<String>, Option<String>, i64, Option<i64>, Option<i64>);

/// The counts from the rows of the counts query.
pub(crate) fn counts_from_rows(rows: Vec<CountRow>, decoder: &Decoder<'_>) -> Result<Counts, BatchError> {
    let mut counts = Counts::default();
    for (state, kind, provider, count, started, finished) in rows {
        let state = ItemState::parse(&state).ok_or_else(|| decoder.bad(format!("unknown item state `{state}`")))?;
        let count = u64::try_from(count).unwrap_or(0);
        match state {
            ItemState::Pending => counts.pending += count,
            ItemState::Running => counts.running += count,
            ItemState::Done => {
                counts.done += count;
                if let Some(provider) = provider {
                    *counts.done_by_provider.entry(provider).or_default() += count;
                }
            }
            ItemState::Failed => {
                counts.failed += count;
                let kind = kind.unwrap_or_else(|| "unknown".into());
                *counts.failed_by_kind.entry(kind).or_default() += count;
            }
        }
        counts.first_started_at = match (counts.first_started_at, started) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        counts.last_finished_at = counts.last_finished_at.max(finished);
    }
    Ok(counts)
}

/// A provider pause from its row: provider, until, reason, hint.
pub(crate) fn pause_from_row(
    (provider, until_unix_ms, reason, hint): (String, i64, String, Option<i64>),
) -> ProviderPause {
    ProviderPause {
        provider,
        until_unix_ms,
        reason,
        concurrency_hint: hint.and_then(|h| u32::try_from(h).ok()),
    }
}

/// A database value from an unsigned one (positions, lines: far below `i64::MAX`).
pub(crate) fn db_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The keys as database integers.
pub(crate) fn db_keys(items: &[ItemKey]) -> Vec<i64> {
    items.iter().map(|k| db_int(k.0)).collect()
}

/// The keys of `asked` not in `kept`, in the order asked.
pub(crate) fn lost(asked: &[ItemKey], kept: &[i64]) -> Vec<ItemKey> {
    let kept: std::collections::HashSet<i64> = kept.iter().copied().collect();
    asked.iter().copied().filter(|k| !kept.contains(&db_int(k.0))).collect()
}

/// JSON text of a value.
pub(crate) fn json_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// What [`BatchState::open_batch`] does with a stored batch row of the same key.
pub(crate) struct StoredBatch {
    pub id: i64,
    pub fingerprint: String,
    pub input: String,
    pub settings: String,
    pub total: Option<i64>,
    pub loaded: bool,
}

impl StoredBatch {
    /// Refuses a different input for the same key.
    pub(crate) fn check(&self, batch: &BatchIdentity, location: &str) -> Result<(), BatchError> {
        if self.fingerprint == batch.fingerprint {
            return Ok(());
        }
        Err(BatchError::DifferentBatch(Box::new(crate::error::DifferentBatch {
            location: location.to_owned(),
            key: batch.key.clone(),
            stored_input: self.input.clone(),
            stored_fingerprint: self.fingerprint.clone(),
            input: batch.input.clone(),
            fingerprint: batch.fingerprint.clone(),
        })))
    }
}

/// The batch a handle serves, once [`BatchState::open_batch`] opened it.
#[derive(Debug, Default)]
pub(crate) struct Current(std::sync::OnceLock<(i64, String)>);

impl Current {
    pub(crate) fn id(&self) -> Result<i64, BatchError> {
        self.0.get().map(|(id, _)| *id).ok_or(BatchError::NoBatch)
    }

    /// Remembers the batch; a handle serves one batch.
    pub(crate) fn set(&self, id: i64, key: &str) -> Result<(), BatchError> {
        let (held, held_key) = self.0.get_or_init(|| (id, key.to_owned()));
        if *held != id {
            return Err(BatchError::OtherBatch {
                open: held_key.clone(),
                asked: key.to_owned(),
            });
        }
        Ok(())
    }
}

/// Runs the migrations, again when a concurrent opener of the same new database got in the way (SQLite
/// takes no migration lock: two processes creating the same file race; the loser finds the work done on
/// its next try).
pub(crate) async fn migrate_with_retry<F, Fut>(location: &str, mut run: F) -> Result<(), BatchError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), sqlx::migrate::MigrateError>>,
{
    let mut tries = 0;
    loop {
        match run().await {
            Ok(()) => return Ok(()),
            Err(error) => {
                tries += 1;
                let retry = tries < 5
                    && !matches!(
                        error,
                        sqlx::migrate::MigrateError::VersionMissing(_)
                            | sqlx::migrate::MigrateError::VersionMismatch(_)
                            | sqlx::migrate::MigrateError::VersionTooOld(..)
                            | sqlx::migrate::MigrateError::VersionTooNew(..)
                    );
                if !retry {
                    return Err(BatchError::StateMigrate {
                        location: location.to_owned(),
                        source: error,
                    });
                }
                tokio::time::sleep(Duration::from_millis(50 * tries + fastrand::u64(0..50))).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let parse = |s: &str| s.parse::<StateLocation>();
        assert_eq!(
            parse("sqlite:state.db").unwrap(),
            StateLocation::Sqlite("state.db".into())
        );
        assert_eq!(
            parse("sqlite://state.db").unwrap(),
            StateLocation::Sqlite("state.db".into())
        );
        assert_eq!(
            parse("sqlite:///var/x.db").unwrap(),
            StateLocation::Sqlite("/var/x.db".into())
        );
        assert_eq!(
            parse("postgres://u:p@h/db").unwrap(),
            StateLocation::Postgres("postgres://u:p@h/db".into())
        );
        assert!(matches!(
            parse("postgresql://h/db").unwrap(),
            StateLocation::Postgres(_)
        ));
        for bad in ["state.db", "mysql://x", "sqlite:", "sqlite::memory:", ""] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains("sqlite:"), "{bad}: {error}");
        }
        let error = parse("mysql://root:hunter2@h/db").unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://h/db?sslmode=require"),
            "postgres://h/db?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=secret&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(redact_url("postgres://u:p%40ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u:p/s@s@h/db"), "postgres://u:***@h/db");
        let location = StateLocation::Postgres("postgres://u:secret@h/db".into());
        assert!(!format!("{location:?} {location}").contains("secret"));
    }

    #[test]
    fn bad_lines_as_items() {
        let error = |custom_id: Option<&str>, error| LineError {
            line: 7,
            custom_id: custom_id.map(str::to_owned),
            error,
        };
        let item = NewItem::from_line_error(3, &error(Some("cat"), BatchError::NoPrompt));
        assert_eq!((item.position, item.id.as_str(), item.line, item.n), (3, "cat", 7, 0));
        assert_eq!(
            item.invalid.as_ref().and_then(|e| e.get("code")),
            Some(&Value::from("missing_prompt"))
        );
        // A duplicate's id belongs to the first line that used it.
        let duplicate = BatchError::DuplicateId {
            id: "cat".into(),
            first: 1,
        };
        assert_eq!(
            NewItem::from_line_error(4, &error(Some("cat"), duplicate)).id,
            "line-000007"
        );
        assert_eq!(
            NewItem::from_line_error(5, &error(None, BatchError::NoPrompt)).id,
            "line-000007"
        );
    }

    #[test]
    fn schema_version_is_the_last_migration() {
        assert_eq!(sqlite::MIGRATOR.iter().map(|m| m.version).max(), Some(SCHEMA_VERSION));
        assert_eq!(
            postgres::migrator().iter().map(|m| m.version).max(),
            Some(SCHEMA_VERSION)
        );
    }
}
