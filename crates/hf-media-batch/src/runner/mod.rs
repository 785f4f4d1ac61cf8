//! Running a batch: the input checked and loaded into the state once, items claimed with leases and run
//! through the generator (`concurrency` at a time, paced per provider), each provider job's ticket stored
//! the moment the provider accepts it, media stored at keys derived from the item, results rebuilt from
//! the state. A crash, a kill or Ctrl-C loses nothing: the same command carries on, polling stored jobs
//! instead of submitting them again.

mod item;
mod layout;
mod output;
mod pace;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hf_media::{GenerateRequest, MediaGeneratorBuilder};
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::state::{
    BatchIdentity, BatchState, ClaimedItem, Counts, ItemKey, NewItem, StateLocation, WorkerId, open_state,
};
use crate::{BatchError, Format, LineError, ReadOptions, read_file};

pub use layout::{MAX_FILES_PER_FOLDER, folder, items_per_folder, media_key};
pub use output::{
    BatchOutput, ERRORS_FILE, METADATA_FILE, RESULTS_FILE, Written, is_object_url, remove_leftovers, write_outputs,
};
pub use pace::{FIRST_PAUSE, MAX_PAUSE, OUT_OF_CREDITS, Pace, PaceNotice, ProviderRate, RATE_LIMITED};

pub use item::{ItemEnd, ItemObserver, ItemRunner, MediaLayout};

/// The default number of items in flight.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// The default lease of a claimed item.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The default grace period after a first Ctrl-C.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// How many times an item is claimed before it is failed for good (a crash loop, a job that never ends).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Where the state of a folder output lives, inside it.
pub const STATE_FILE: &str = ".hf-media/batch-state.sqlite";
/// How many items are written to the state at once while loading.
const LOAD_CHUNK: usize = 1_000;

/// A batch to run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BatchJob {
    /// The input file (JSONL or CSV).
    pub input: PathBuf,
    /// Its format (default: from the extension).
    pub format: Option<Format>,
    /// How it is read (prompt column, strict mode).
    pub read: ReadOptions,
    /// What lines that do not say get (`-m` and the generation flags).
    pub defaults: GenerateRequest,
    /// Where the media and result files go.
    pub output: BatchOutput,
    /// Where the state is (default: [`default_state`]).
    pub state: Option<StateLocation>,
    /// Items in flight at once (and the ceiling of each provider's adaptive limit).
    pub concurrency: usize,
    /// The lease of a claimed item (renewed while it runs).
    pub lease: Duration,
    /// How long running items may finish after a first stop.
    pub grace: Duration,
    /// Per-provider rates.
    pub rates: Vec<ProviderRate>,
    /// Failed items are tried again (`--retry-failed`).
    pub retry_failed: bool,
    /// Claims of one item before it fails for good.
    pub max_attempts: u32,
    /// The largest media accepted.
    pub max_media_bytes: u64,
}

impl BatchJob {
    /// A job with every default, reading `input` into `output`.
    pub fn new(input: impl Into<PathBuf>, output: BatchOutput) -> Self {
        BatchJob {
            input: input.into(),
            format: None,
            read: ReadOptions::default(),
            defaults: GenerateRequest::default(),
            output,
            state: None,
            concurrency: DEFAULT_CONCURRENCY,
            lease: DEFAULT_LEASE,
            grace: DEFAULT_GRACE,
            rates: Vec::new(),
            retry_failed: false,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_media_bytes: hf_media::sink::DEFAULT_MAX_BYTES,
        }
    }
}

/// The state a batch uses when none is given: a SQLite file inside a folder output
/// ([`STATE_FILE`]); for an object-store output, a SQLite file in the user's cache folder
/// (`$XDG_CACHE_HOME` or `~/.cache`, `hf-media/batches/`) named after the output's URI.
pub fn default_state(output: &BatchOutput) -> StateLocation {
    match output {
        BatchOutput::Dir(dir) => StateLocation::Sqlite(dir.join(STATE_FILE)),
        BatchOutput::Object(_) => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
                .unwrap_or_else(std::env::temp_dir);
            let uri = output.key();
            let digest = sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), uri.as_bytes()));
            let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
            let readable: String = uri
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .take(60)
                .collect();
            StateLocation::Sqlite(
                cache
                    .join("hf-media")
                    .join("batches")
                    .join(format!("{readable}-{hash}.sqlite")),
            )
        }
    }
}

/// Stops a running batch: [`BatchControl::stop`] stops claiming and lets running items finish for the
/// grace period; [`BatchControl::stop_now`] leaves them at once (their jobs are resumed by the next run).
#[derive(Debug, Clone, Default)]
pub struct BatchControl {
    stop: CancellationToken,
    now: CancellationToken,
}

impl BatchControl {
    /// A control that has not stopped.
    pub fn new() -> Self {
        BatchControl::default()
    }

    /// Stops claiming; running items get the grace period.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Stops at once.
    pub fn stop_now(&self) {
        self.stop.cancel();
        self.now.cancel();
    }

    /// Whether a stop was asked.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// What a batch reports while it runs (one JSON object a line with `--json`; `"event"` names the kind).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BatchEvent {
    /// The batch is ready to run.
    Started {
        /// The input.
        input: String,
        /// The output.
        output: String,
        /// The state, its password hidden.
        state: String,
        /// Whether the state is new (false: a resume).
        resumed: bool,
        /// Items in the input (bad lines included).
        total: u64,
        /// Bad lines (written as failed items).
        invalid: u64,
        /// Items already finished.
        finished: u64,
        /// Temporary files a killed process had left, removed.
        leftovers_removed: usize,
    },
    /// A bad line of the input.
    BadLine {
        /// Its line number.
        line: u64,
        /// Its `custom_id`, if it had one.
        custom_id: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// An item made all its media.
    ItemDone {
        /// Its id.
        id: String,
        /// The provider that made its (last) media.
        provider: Option<String>,
        /// Media made in this run.
        media: usize,
        /// How long it took, in milliseconds.
        elapsed_ms: u64,
        /// Whether a stored provider job was resumed instead of submitted.
        resumed_jobs: usize,
    },
    /// An item failed for good.
    ItemFailed {
        /// Its id.
        id: String,
        /// The error's kind.
        kind: String,
        /// What happened.
        message: String,
    },
    /// An item was put back for later (providers rate-limited or out of credits, a stop).
    ItemReleased {
        /// Its id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A provider answered 429 and is paused.
    ProviderPaused {
        /// The provider.
        provider: String,
        /// For how long, in milliseconds.
        pause_ms: u64,
        /// Its new limit of calls in flight.
        limit: usize,
    },
    /// A provider answered 402 and is held back for the rest of the run.
    ProviderOutOfCredits {
        /// The provider.
        provider: String,
    },
    /// Where the batch stands.
    Progress(Progress),
    /// A stop was asked; running items get the grace period.
    Stopping {
        /// Items still running.
        running: usize,
        /// The grace period, in milliseconds.
        grace_ms: u64,
    },
    /// The batch run ended.
    Finished(Box<BatchSummary>),
}

/// Where a batch stands.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Progress {
    /// Items in the input.
    pub total: u64,
    /// Items done (all runs).
    pub done: u64,
    /// Items failed for good (all runs).
    pub failed: u64,
    /// Items running (every worker).
    pub running: u64,
    /// Items waiting.
    pub pending: u64,
    /// Items finished by this run.
    pub finished_this_run: u64,
    /// Items per second in this run.
    pub items_per_second: f64,
    /// Seconds left at this run's pace, when it can be told.
    pub eta_seconds: Option<f64>,
}

impl Progress {
    fn of(counts: &Counts, finished_this_run: u64, elapsed: Duration) -> Progress {
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            finished_this_run as f64 / secs
        } else {
            0.0
        };
        let left = counts.pending + counts.running;
        Progress {
            total: counts.pending + counts.running + counts.done + counts.failed,
            done: counts.done,
            failed: counts.failed,
            running: counts.running,
            pending: counts.pending,
            finished_this_run,
            items_per_second: rate,
            eta_seconds: (rate > 0.0).then(|| left as f64 / rate),
        }
    }
}

/// Why a run ended before every item was finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Stopped {
    /// A stop was asked (Ctrl-C).
    Asked,
    /// Every provider an item could use is out of credits.
    OutOfCredits {
        /// The providers that answered 402.
        providers: Vec<String>,
    },
}

/// The end of a batch run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchSummary {
    /// Where the batch stands.
    pub progress: Progress,
    /// Failed items by error kind.
    pub failed_by_kind: BTreeMap<String, u64>,
    /// Done items by provider.
    pub done_by_provider: BTreeMap<String, u64>,
    /// How long this run took, in milliseconds.
    pub elapsed_ms: u64,
    /// Why the run stopped early, if it did.
    pub stopped: Option<Stopped>,
    /// What the result files hold.
    pub results: u64,
    /// Lines of the errors file.
    pub errors: u64,
    /// Media listed in the metadata file.
    pub media: u64,
}

impl BatchSummary {
    /// Whether every item is finished (done or failed).
    pub fn is_complete(&self) -> bool {
        self.progress.pending == 0 && self.progress.running == 0
    }
}

/// What loading the input found.
struct Loaded {
    total: u64,
    invalid: u64,
    fingerprint: String,
    max_n: u64,
}

/// Reads the input once to check every line (strict mode refuses a bad file here, before anything is
/// sent) and to learn its fingerprint and its largest `n`.
fn check_input(job: &BatchJob, events: &mpsc::UnboundedSender<BatchEvent>) -> Result<Loaded, BatchError> {
    // Every line is read even in strict mode, so that a refusal names all the bad lines.
    let lenient = job.read.clone().strict(false);
    let mut items = read_file(&job.input, job.format, &job.defaults, &lenient)?;
    let (mut total, mut invalid, mut max_n) = (0u64, 0u64, 1u64);
    let mut bad: Vec<LineError> = Vec::new();
    for item in &mut items {
        total += 1;
        match item {
            Ok(item) => max_n = max_n.max(item.request.n.max(1) as u64),
            Err(error) if error.is_fatal() => return Err(BatchError::Unreadable(Box::new(error))),
            Err(error) => {
                invalid += 1;
                let _ = events.send(BatchEvent::BadLine {
                    line: error.line as u64,
                    custom_id: error.custom_id.clone(),
                    message: error.error.to_string(),
                });
                if bad.len() < crate::REFUSED_LISTED {
                    bad.push(error);
                }
            }
        }
    }
    if job.read.strict && !bad.is_empty() {
        return Err(BatchError::Refused {
            bad,
            total: usize::try_from(invalid).unwrap_or(usize::MAX),
        });
    }
    Ok(Loaded {
        total,
        invalid,
        fingerprint: items.fingerprint(),
        max_n,
    })
}

/// Reads the input again, streaming, into the state.
async fn load(job: &BatchJob, state: &dyn BatchState) -> Result<(), BatchError> {
    let items = read_file(&job.input, job.format, &job.defaults, &job.read)?;
    let mut chunk = Vec::with_capacity(LOAD_CHUNK);
    for (position, item) in items.enumerate() {
        let position = position as u64;
        let new = match item {
            Ok(item) => NewItem {
                position,
                id: item.id,
                line: item.line as u64,
                n: u32::try_from(item.request.n.max(1)).unwrap_or(u32::MAX),
                spec: serde_json::to_value(&item.request).map_err(|e| BatchError::Usage(e.to_string()))?,
                invalid: None,
            },
            Err(error) if error.is_fatal() => return Err(BatchError::Unreadable(Box::new(error))),
            Err(error) => NewItem {
                position,
                // A bad line's own id: its custom_id may be a duplicate (or another line's), and ids are
                // unique in the state. The custom_id it gave is kept with its error.
                id: format!("line-{:06}-invalid", error.line),
                line: error.line as u64,
                n: 0,
                spec: json!({}),
                invalid: Some(json!({
                    "code": error.error.code(),
                    "message": error.error.to_string(),
                    // A duplicate's custom_id is the other item's: the results keep ids unique.
                    "custom_id": error.custom_id.as_ref().filter(|_| !matches!(error.error, BatchError::DuplicateId { .. })),
                })),
            },
        };
        chunk.push(new);
        if chunk.len() == LOAD_CHUNK {
            state.add_items(&chunk).await?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        state.add_items(&chunk).await?;
    }
    Ok(())
}

/// Runs `job` with a generator from `generator` (its configuration: token, emulator, timeouts; the sink
/// and the gate are the batch's), reporting to `events`, until every item is finished, a stop is asked,
/// or every provider is out of credits. The result files are rewritten at the end in every case.
pub async fn run_batch(
    job: BatchJob,
    generator: MediaGeneratorBuilder,
    control: BatchControl,
    events: mpsc::UnboundedSender<BatchEvent>,
) -> Result<BatchSummary, BatchError> {
    let started = Instant::now();
    let loaded = check_input(&job, &events)?;
    job.output.check().await?;
    let location = job.state.clone().unwrap_or_else(|| default_state(&job.output));
    let state = open_state(&location).await?;
    let identity = BatchIdentity {
        key: job.output.key(),
        fingerprint: loaded.fingerprint.clone(),
        input: job.input.display().to_string(),
    };
    let settings = json!({ "items_per_folder": items_per_folder(loaded.max_n) });
    let info = state.open_batch(&identity, &settings).await?;
    let per_folder = info
        .settings
        .get("items_per_folder")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| items_per_folder(loaded.max_n));
    if !info.loaded {
        load(&job, &*state).await?;
        state.mark_loaded(loaded.total).await?;
    }
    if job.retry_failed {
        state.retry_failed().await?;
    }
    // Credits may have been topped up since an earlier run stopped for them.
    state.clear_pauses(OUT_OF_CREDITS).await?;
    let leftovers_removed = remove_leftovers(&job.output, job.lease.max(Duration::from_secs(60)));
    let counts = state.counts().await?;
    let _ = events.send(BatchEvent::Started {
        input: job.input.display().to_string(),
        output: job.output.display(),
        state: location.to_string(),
        resumed: !info.created,
        total: loaded.total,
        invalid: loaded.invalid,
        finished: counts.done + counts.failed,
        leftovers_removed,
    });

    let (pace_tx, mut pace_rx) = mpsc::unbounded_channel();
    let pace = Pace::new(job.concurrency, job.rates.clone(), Some(state.clone()), Some(pace_tx));
    pace.apply(&state.provider_pauses().await?);
    let _follow = AbortOnDrop(pace.follow_state(Duration::from_secs(1)));
    let generator = generator
        .sink(job.output.sink(job.max_media_bytes))
        .gate(pace.clone())
        .build()
        .map_err(|e| BatchError::Generator(e.to_string()))?;
    let worker = WorkerId::current();
    let run = Arc::new(
        ItemRunner::new(
            generator,
            state.clone(),
            worker.clone(),
            MediaLayout::Folders {
                items_per_folder: per_folder,
            },
        )
        .max_attempts(job.max_attempts),
    );

    let mut tasks: JoinSet<(ItemKey, String, Result<ItemEnd, BatchError>)> = JoinSet::new();
    let mut owned: HashMap<ItemKey, CancellationToken> = HashMap::new();
    let mut renew = tokio::time::interval(job.lease / 3);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut report = tokio::time::interval(Duration::from_secs(1));
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next_claim = tokio::time::Instant::now();
    let mut finished_this_run = 0u64;
    let mut stopped: Option<Stopped> = None;
    let mut grace_ends: Option<tokio::time::Instant> = None;
    let idle = Duration::from_millis(250).min(job.lease / 4);
    let outcome: Result<(), BatchError> = loop {
        let claiming = stopped.is_none() && !control.is_stopping();
        if !claiming && owned.is_empty() {
            break Ok(());
        }
        if claiming && owned.len() < job.concurrency && tokio::time::Instant::now() >= next_claim {
            let want = job.concurrency - owned.len();
            let claimed = match state.claim(&worker, want, job.lease).await {
                Ok(claimed) => claimed,
                Err(error) => break Err(error),
            };
            if claimed.len() < want {
                next_claim = tokio::time::Instant::now() + idle;
            }
            if claimed.is_empty() && owned.is_empty() {
                match state.counts().await {
                    Ok(counts) if counts.pending == 0 && counts.running == 0 => break Ok(()),
                    Ok(_) => {}
                    Err(error) => break Err(error),
                }
            }
            for item in claimed {
                let cancel = CancellationToken::new();
                owned.insert(item.key, cancel.clone());
                let (run, id, key) = (run.clone(), item.id.clone(), item.key);
                tasks.spawn(async move { (key, id, run.run(item_of(item), cancel).await) });
            }
            continue;
        }
        tokio::select! {
            biased;
            () = control.now.cancelled(), if !owned.is_empty() => {
                pace.close();
                for cancel in owned.values() {
                    cancel.cancel();
                }
                stopped.get_or_insert(Stopped::Asked);
                grace_ends = Some(tokio::time::Instant::now());
            }
            () = control.stop.cancelled(), if grace_ends.is_none() => {
                stopped.get_or_insert(Stopped::Asked);
                grace_ends = Some(tokio::time::Instant::now() + job.grace);
                let _ = events.send(BatchEvent::Stopping { running: owned.len(), grace_ms: millis(job.grace) });
            }
            () = sleep_until(grace_ends), if grace_ends.is_some() && !owned.is_empty() => {
                pace.close();
                for cancel in owned.values() {
                    cancel.cancel();
                }
                grace_ends = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
            }
            Some(joined) = tasks.join_next() => {
                let (key, id, end) = match joined {
                    Ok(done) => done,
                    Err(join_error) => break Err(BatchError::Generator(format!("an item task ended abnormally: {join_error}"))),
                };
                owned.remove(&key);
                next_claim = tokio::time::Instant::now();
                match end {
                    Err(error) => break Err(error),
                    Ok(ItemEnd::Done { provider, media, elapsed, resumed_jobs }) => {
                        finished_this_run += 1;
                        let _ = events.send(BatchEvent::ItemDone { id, provider, media, elapsed_ms: millis(elapsed), resumed_jobs });
                    }
                    Ok(ItemEnd::Failed { kind, message }) => {
                        finished_this_run += 1;
                        let _ = events.send(BatchEvent::ItemFailed { id, kind, message });
                    }
                    Ok(ItemEnd::Released { reason, out_of_credits }) => {
                        let _ = events.send(BatchEvent::ItemReleased { id, reason });
                        if out_of_credits && stopped.is_none() {
                            stopped = Some(Stopped::OutOfCredits { providers: pace.out_of_credits() });
                        }
                    }
                    Ok(ItemEnd::Lost) => {
                        let _ = events.send(BatchEvent::ItemReleased { id, reason: "another worker took the item over (its lease expired)".into() });
                    }
                }
            }
            Some(notice) = pace_rx.recv() => {
                let event = match notice {
                    PaceNotice::RateLimited { provider, pause, limit } => BatchEvent::ProviderPaused { provider, pause_ms: millis(pause), limit },
                    PaceNotice::OutOfCredits { provider } => BatchEvent::ProviderOutOfCredits { provider },
                };
                let _ = events.send(event);
            }
            _ = renew.tick() => {
                if owned.is_empty() {
                    continue;
                }
                let keys: Vec<ItemKey> = owned.keys().copied().collect();
                match state.renew(&worker, &keys, job.lease).await {
                    Ok(lost) => {
                        for key in lost {
                            if let Some(cancel) = owned.get(&key) {
                                cancel.cancel();
                            }
                        }
                    }
                    Err(error) => break Err(error),
                }
            }
            _ = report.tick() => {
                if let Ok(counts) = state.counts().await {
                    let _ = events.send(BatchEvent::Progress(Progress::of(&counts, finished_this_run, started.elapsed())));
                }
            }
            () = tokio::time::sleep_until(next_claim), if claiming && owned.len() < job.concurrency => {}
        }
    };
    // Whatever ended the run, items still held go back for the next one (their tickets stay stored); no
    // new call starts as their cancelled calls give their slots back.
    pace.close();
    for cancel in owned.values() {
        cancel.cancel();
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok((key, _, _)) = joined {
            owned.remove(&key);
        }
    }
    let leftover: Vec<ItemKey> = owned.keys().copied().collect();
    if !leftover.is_empty() {
        let _ = state.release(&worker, &leftover).await;
    }
    outcome?;
    // The providers out of credits by now, not only those the first item held back had met.
    if let Some(Stopped::OutOfCredits { providers }) = &mut stopped {
        *providers = pace.out_of_credits();
    }
    let written = write_outputs(&job.output, &*state, &identity.key).await?;
    let counts = state.counts().await?;
    if counts.pending == 0 && counts.running == 0 {
        remove_media_leftovers(&job.output);
    }
    let summary = BatchSummary {
        progress: Progress::of(&counts, finished_this_run, started.elapsed()),
        failed_by_kind: counts.failed_by_kind.clone(),
        done_by_provider: counts.done_by_provider.clone(),
        elapsed_ms: millis(started.elapsed()),
        stopped,
        results: written.results,
        errors: written.errors,
        media: written.media,
    };
    let _ = events.send(BatchEvent::Finished(Box::new(summary.clone())));
    Ok(summary)
}

/// Where a batch stands, as `hf-media batch status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchStatus {
    /// The output.
    pub output: String,
    /// The state, its password hidden.
    pub state: String,
    /// Counts by state.
    pub progress: Progress,
    /// Failed items by error kind.
    pub failed_by_kind: BTreeMap<String, u64>,
    /// Done items by provider.
    pub done_by_provider: BTreeMap<String, u64>,
    /// Providers paused now (rate limits, credits).
    pub paused: Vec<String>,
}

impl BatchStatus {
    /// The status as lines of text.
    pub fn text(&self) -> String {
        let p = &self.progress;
        let mut text = format!(
            "{}\n  state: {}\n  {} items: {} done, {} failed, {} running, {} pending",
            self.output, self.state, p.total, p.done, p.failed, p.running, p.pending
        );
        if p.items_per_second > 0.0 {
            text.push_str(&format!("\n  throughput: {:.2} items/s", p.items_per_second));
            if let Some(eta) = p.eta_seconds {
                text.push_str(&format!(", ETA {:.0}s", eta));
            }
        }
        for (kind, count) in &self.failed_by_kind {
            text.push_str(&format!("\n  failed ({kind}): {count}"));
        }
        for (provider, count) in &self.done_by_provider {
            text.push_str(&format!("\n  done by {provider}: {count}"));
        }
        for paused in &self.paused {
            text.push_str(&format!("\n  paused: {paused}"));
        }
        text
    }
}

/// Where the batch writing to `output` stands, read from its state without running anything (`hf-media
/// batch status`). Throughput is over the batch's whole life (first start to last finish).
pub async fn batch_status(output: &BatchOutput, state: Option<StateLocation>) -> Result<BatchStatus, BatchError> {
    let location = state.unwrap_or_else(|| default_state(output));
    if let StateLocation::Sqlite(path) = &location
        && !path.exists()
    {
        return Err(BatchError::NoState {
            output: output.display(),
            state: path.display().to_string(),
        });
    }
    let state = open_state(&location).await?;
    state.select_batch(&output.key()).await?;
    let counts = state.counts().await?;
    let finished = counts.done + counts.failed;
    let span = match (counts.first_started_at, counts.last_finished_at) {
        (Some(first), Some(last)) if last > first => Duration::from_millis(u64::try_from(last - first).unwrap_or(0)),
        _ => Duration::ZERO,
    };
    let progress = Progress::of(&counts, finished, span);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    let paused = state
        .provider_pauses()
        .await?
        .into_iter()
        .filter(|p| p.reason == OUT_OF_CREDITS || p.until_unix_ms > now)
        .map(|p| format!("{} ({})", p.provider, p.reason))
        .collect();
    Ok(BatchStatus {
        output: output.display(),
        state: location.to_string(),
        progress,
        failed_by_kind: counts.failed_by_kind.clone(),
        done_by_provider: counts.done_by_provider.clone(),
        paused,
    })
}

/// Once every item of the batch is finished, no worker writes media for it any more: a media's temporary
/// file (`.hf-media-*.part`) left in a folder output is a killed process's, however young (at the start of
/// a run only those older than the lease are removed, since live workers may be writing theirs). The
/// result files' temporaries (`.jsonl.part`) are left alone: another worker may be publishing its own.
fn remove_media_leftovers(output: &BatchOutput) -> usize {
    let Some(dir) = output.dir() else { return 0 };
    let mut removed = 0;
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                folders.push(entry.path());
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let media_temporary =
                name.starts_with(".hf-media-") && name.ends_with(".part") && !name.ends_with(".jsonl.part");
            if kind.is_file() && media_temporary && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed the temporary media files killed runs had left");
    }
    removed
}

fn item_of(item: ClaimedItem) -> ClaimedItem {
    item
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
