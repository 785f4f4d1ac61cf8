//! One claimed item, run to its end: the generations it still lacks, stored jobs resumed, each job's
//! ticket and each media recorded in the state the moment they are known.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use hf_media::provider::JobTicket;
use hf_media::{Error, ErrorInfo, GenerateRequest, GenerationEvent, MediaGenerator, RunOptions};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::DEFAULT_MAX_ATTEMPTS;
use super::layout::{media_key, safe_name};
use crate::BatchError;
use crate::state::{BatchState, ClaimedItem, ItemKey, Outcome, WorkerId};

/// Called with every event of an item's generation (see [`ItemRunner::observer`]).
pub type ItemObserver = Arc<dyn Fn(ItemKey, &GenerationEvent) + Send + Sync>;

/// Where an item's media go in the sink: the key prefix of its generations (generation `i` is stored at
/// `{prefix}-{i}`, plus the media's extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaLayout {
    /// A batch's folders: `{folder}/{name}`, the folder from the item's position
    /// ([`media_key`](super::media_key)), so that no folder holds more than
    /// [`MAX_FILES_PER_FOLDER`](super::MAX_FILES_PER_FOLDER) files.
    Folders {
        /// How many items share a folder ([`items_per_folder`](super::items_per_folder)).
        items_per_folder: u64,
    },
    /// Every media at the top of the sink: `{name}` (a server's videos, `video_1f…-0.mp4`).
    Flat,
}

impl MediaLayout {
    /// The key prefix of the item `id` at `position`. Its name is the id itself when the id is made of
    /// `[a-z0-9._-]`, starts with neither `.` nor `_` and has at most 80 characters (`video_1f0c…`); else
    /// the id made safe for every file system and object store, followed by 8 hex digits of its SHA-256
    /// (see [`media_key`](super::media_key)).
    pub fn prefix(&self, id: &str, position: u64) -> String {
        match self {
            MediaLayout::Folders { items_per_folder } => media_key(id, position, *items_per_folder),
            MediaLayout::Flat => safe_name(id),
        }
    }
}

/// Runs claimed items ([`BatchState::claim`]) to their end: the generations they still lack (their
/// stored media are kept), their stored job tickets resumed rather than submitted again, each job's ticket
/// and each media recorded in the state the moment it is known, the outcome written with
/// [`BatchState::finish`] — or the item [released](BatchState::release) when its providers are
/// rate-limited or out of credits, or when the run is cancelled. This is what the batch runner runs each
/// item with; a server that keeps its jobs in a [`BatchState`] runs them with it too.
///
/// The runner does not renew leases: its caller does ([`BatchState::renew`]) while items run, and
/// cancels the run of an item it lost.
pub struct ItemRunner {
    generator: MediaGenerator,
    state: Arc<dyn BatchState>,
    worker: WorkerId,
    layout: MediaLayout,
    max_attempts: u32,
    observer: Option<ItemObserver>,
}

impl fmt::Debug for ItemRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemRunner")
            .field("state", &self.state)
            .field("worker", &self.worker)
            .field("layout", &self.layout)
            .field("max_attempts", &self.max_attempts)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl ItemRunner {
    /// A runner of the items `worker` claims from `state`, generating with `generator` (its sink holds
    /// the media, at the keys `layout` gives), giving an item up after
    /// [`DEFAULT_MAX_ATTEMPTS`](super::DEFAULT_MAX_ATTEMPTS) claims, with no observer.
    pub fn new(generator: MediaGenerator, state: Arc<dyn BatchState>, worker: WorkerId, layout: MediaLayout) -> Self {
        ItemRunner {
            generator,
            state,
            worker,
            layout,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            observer: None,
        }
    }

    /// Fails an item for good (kind `too_many_attempts`) when it is claimed more than `max_attempts`
    /// times without an outcome (a crash loop, a job that never ends).
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Calls `observer` with every event of each item's generation (queued, accepted with its job ticket,
    /// progress, media, retries, errors, done), in order, as the generation sends it and before the
    /// runner records it in the state; also the events taken from a cancelled generation. An item that
    /// ends without a generation (its media were all made by an earlier run, its stored request cannot be
    /// read back, too many attempts) sends none. Called on the item's task: keep it quick, and never block
    /// in it.
    pub fn observer(mut self, observer: ItemObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The worker the items are claimed for: the one whose leases the caller renews.
    pub fn worker(&self) -> &WorkerId {
        &self.worker
    }

    /// The state the items are recorded in.
    pub fn state(&self) -> &Arc<dyn BatchState> {
        &self.state
    }

    /// The layout of the media.
    pub fn layout(&self) -> MediaLayout {
        self.layout
    }

    /// Runs `item`, claimed by [`worker`](ItemRunner::worker), until its media are made, it fails, it is
    /// put back, it is lost, or `cancel` fires (then it is released: its stored jobs are resumed by the
    /// next claim). The state has the outcome when this returns: see [`ItemEnd`]. An `Err` is the state
    /// failing: the item is left as the state has it (running, held by this worker, its tickets and media
    /// as recorded so far), to be [released](BatchState::release) or taken over once its lease ends.
    pub async fn run(&self, item: ClaimedItem, cancel: CancellationToken) -> Result<ItemEnd, BatchError> {
        run_item(self, item, cancel).await
    }

    fn observe(&self, key: ItemKey, event: &GenerationEvent) {
        if let Some(observer) = &self.observer {
            observer(key, event);
        }
    }
}

/// How an item's run ([`ItemRunner::run`]) ended, and what the state says of it now.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ItemEnd {
    /// Every media is made and recorded; the item is done.
    Done {
        /// The provider that made its (last) media, when the records say.
        provider: Option<String>,
        /// How many media this run made (0: they were all made by an earlier run, which died before
        /// finishing the item).
        media: usize,
        /// How long this run took.
        elapsed: Duration,
        /// How many stored provider jobs this run resumed instead of submitting them again.
        resumed_jobs: usize,
    },
    /// The item failed for good; the state has its error.
    Failed {
        /// The error's kind: the generation error's (`provider_error`, `timeout`, `content_filtered`,
        /// …), or `invalid_state` (the stored request cannot be read back), or `too_many_attempts`.
        kind: String,
        /// What happened.
        message: String,
    },
    /// The item was put back, pending, for a later claim; not counted as an attempt. Its job tickets and
    /// media stay stored.
    Released {
        /// Why: every provider it can use is rate-limited or out of credits, the run was cancelled, or the
        /// generation ended without an outcome.
        reason: String,
        /// Whether the providers it can use are out of credits (402): claiming more items is useless
        /// until credits are topped up.
        out_of_credits: bool,
    },
    /// The worker no longer holds the item: another worker took it over (its lease ran out), or it was
    /// [deleted](BatchState::delete_item). Nothing more was written.
    Lost,
}

/// The seed of an item that sets none: from its id, so that every run (and a resumed one) sends the
/// same seeds.
fn item_seed(id: &str) -> u64 {
    let digest = Sha256::digest(id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes) & 0x7fff_ffff
}

/// Whether a failure is the pace's, not the item's: every provider tried was rate-limited (429), out of
/// credits (402), or held back by the pace. `Some(out_of_credits)` then.
fn held_back(error: &Error) -> Option<bool> {
    let attempts = match error {
        Error::AllProvidersFailed { attempts, .. } | Error::Timeout { attempts, .. } => attempts,
        _ => return None,
    };
    if attempts.is_empty() {
        return None;
    }
    let pace_only = attempts
        .iter()
        .all(|a| matches!(a.status, Some(429 | 402)) || a.kind == "held");
    pace_only.then(|| attempts.iter().any(|a| a.status == Some(402)))
}

/// Runs `item` (see [`ItemRunner::run`]).
async fn run_item(run: &ItemRunner, item: ClaimedItem, cancel: CancellationToken) -> Result<ItemEnd, BatchError> {
    let started = Instant::now();
    let state = &*run.state;
    let mut request: GenerateRequest = match serde_json::from_value(item.spec.clone()) {
        Ok(request) => request,
        Err(error) => {
            let message = format!("the stored item cannot be read back ({error}); run the batch into a new output");
            let outcome = Outcome::Failed {
                kind: "invalid_state".into(),
                error: json!({ "code": "invalid_state", "message": message }),
            };
            if !state.finish(&run.worker, item.key, outcome).await? {
                return Ok(ItemEnd::Lost);
            }
            return Ok(ItemEnd::Failed {
                kind: "invalid_state".into(),
                message,
            });
        }
    };
    if request.params.seed.is_none() {
        request.params.seed = Some(item_seed(&item.id));
    }
    let n = request.n.max(1);
    let mut made: BTreeMap<u32, Value> = item.media.clone();
    let missing: Vec<usize> = (0..n).filter(|i| !made.contains_key(&(*i as u32))).collect();
    if missing.is_empty() {
        // The media were stored, the worker died before finishing: done, rebuilt from the state.
        let provider = last_provider(&made);
        return finish_done(run, &item, provider, 0, started, 0).await;
    }
    if item.attempts > run.max_attempts {
        let message = format!(
            "gave up after {} runs of this item without an outcome (crashes, or a job that never ends)",
            item.attempts - 1
        );
        let outcome = Outcome::Failed {
            kind: "too_many_attempts".into(),
            error: json!({ "code": "too_many_attempts", "message": message }),
        };
        if !state.finish(&run.worker, item.key, outcome).await? {
            return Ok(ItemEnd::Lost);
        }
        return Ok(ItemEnd::Failed {
            kind: "too_many_attempts".into(),
            message,
        });
    }
    let mut options = RunOptions::default()
        .only(missing.iter().copied())
        .media_key(run.layout.prefix(&item.id, item.position));
    let mut resumed_jobs = 0;
    for (index, ticket) in &item.jobs {
        if made.contains_key(index) {
            continue;
        }
        match serde_json::from_value::<JobTicket>(ticket.clone()) {
            Ok(job) => {
                options = options.resume(*index as usize, job);
                resumed_jobs += 1;
            }
            Err(error) => tracing::warn!(
                item = %item.id, index, %error,
                "a stored job ticket cannot be read back: a new job is submitted for this media"
            ),
        }
    }
    let mut events = run.generator.generate_with(request, options);
    let mut errors: Vec<(Option<usize>, Error)> = Vec::new();
    let mut made_now = 0;
    loop {
        let event = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                // What the generation already reported is kept before it is dropped: a ticket left in the
                // channel would be lost, and its job paid for again by the next run.
                let mut drained = 0;
                while let Some(Some(event)) = events.next().now_or_never() {
                    drained += 1;
                    run.observe(item.key, &event);
                    if !record_reported(run, &item, &event).await? {
                        return Ok(ItemEnd::Lost);
                    }
                    if drained >= MAX_DRAINED {
                        break;
                    }
                }
                drop(events);
                state.release(&run.worker, &[item.key]).await?;
                return Ok(ItemEnd::Released { reason: "stopped; its jobs are resumed by the next run".into(), out_of_credits: false });
            }
            event = events.next() => event,
        };
        let Some(event) = event else { break };
        run.observe(item.key, &event);
        if matches!(event, GenerationEvent::Accepted { .. }) {
            if !record_reported(run, &item, &event).await? {
                return Ok(ItemEnd::Lost);
            }
            continue;
        }
        match event {
            GenerationEvent::Media(media) => {
                let record = serde_json::to_value(&*media).unwrap_or(Value::Null);
                if !state
                    .record_media(&run.worker, item.key, media.task as u32, &record)
                    .await?
                {
                    return Ok(ItemEnd::Lost);
                }
                made.insert(media.task as u32, record);
                made_now += 1;
            }
            GenerationEvent::Error { task, error } => errors.push((task, error)),
            GenerationEvent::Done { .. } => break,
            _ => {}
        }
    }
    if errors.is_empty() && (0..n).all(|i| made.contains_key(&(i as u32))) {
        let provider = last_provider(&made);
        return finish_done(run, &item, provider, made_now, started, resumed_jobs).await;
    }
    if !errors.is_empty() && errors.iter().all(|(_, e)| held_back(e).is_some()) {
        let out_of_credits = errors.iter().any(|(_, e)| held_back(e) == Some(true));
        state.release(&run.worker, &[item.key]).await?;
        let reason = if out_of_credits {
            "every provider it can use is out of credits or paused".to_owned()
        } else {
            "its providers are rate-limited; it is tried again after the pause".to_owned()
        };
        return Ok(ItemEnd::Released { reason, out_of_credits });
    }
    let (task, error) = match errors.into_iter().find(|(_, e)| held_back(e).is_none()) {
        Some(found) => found,
        None => {
            state.release(&run.worker, &[item.key]).await?;
            return Ok(ItemEnd::Released {
                reason: "the generation ended without an outcome".into(),
                out_of_credits: false,
            });
        }
    };
    let info = ErrorInfo::from(&error);
    let mut body = json!({ "code": info.kind, "message": info.message, "status": error.http_status() });
    if let Some(task) = task {
        body["index"] = json!(task);
    }
    if let Some(attempts) = &info.attempts {
        body["attempts"] = serde_json::to_value(attempts).unwrap_or(Value::Null);
    }
    if made.len() < n && !made.is_empty() {
        body["message"] = json!(format!("{} ({} of {n} media were made)", info.message, made.len()));
    }
    let kind = info.kind.clone();
    let message = body["message"].as_str().unwrap_or_default().to_owned();
    if !state
        .finish(
            &run.worker,
            item.key,
            Outcome::Failed {
                kind: kind.clone(),
                error: body,
            },
        )
        .await?
    {
        return Ok(ItemEnd::Lost);
    }
    Ok(ItemEnd::Failed { kind, message })
}

/// The most events taken from a stopped generation's channel before it is dropped.
const MAX_DRAINED: usize = 1_000;

/// Records what `event` tells the state must keep (a job's ticket, a stored media); other events are
/// ignored. Returns whether the worker still holds the item.
async fn record_reported(run: &ItemRunner, item: &ClaimedItem, event: &GenerationEvent) -> Result<bool, BatchError> {
    match event {
        GenerationEvent::Accepted { task, job, .. } => {
            let ticket = serde_json::to_value(job).unwrap_or(Value::Null);
            run.state.record_job(&run.worker, item.key, *task as u32, &ticket).await
        }
        GenerationEvent::Media(media) => {
            let record = serde_json::to_value(&**media).unwrap_or(Value::Null);
            run.state
                .record_media(&run.worker, item.key, media.task as u32, &record)
                .await
        }
        _ => Ok(true),
    }
}

fn last_provider(made: &BTreeMap<u32, Value>) -> Option<String> {
    made.values()
        .last()
        .and_then(|record| record.get("provider"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

async fn finish_done(
    run: &ItemRunner,
    item: &ClaimedItem,
    provider: Option<String>,
    media: usize,
    started: Instant,
    resumed_jobs: usize,
) -> Result<ItemEnd, BatchError> {
    let outcome = Outcome::Done {
        provider: provider.clone().unwrap_or_default(),
    };
    if !run.state.finish(&run.worker, item.key, outcome).await? {
        return Ok(ItemEnd::Lost);
    }
    Ok(ItemEnd::Done {
        provider,
        media,
        elapsed: started.elapsed(),
        resumed_jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hf_media::ProviderAttempt;

    #[test]
    fn seeds_are_stable_and_fit_31_bits() {
        assert_eq!(item_seed("a"), item_seed("a"));
        assert_ne!(item_seed("a"), item_seed("b"));
        assert!(item_seed("anything") < (1 << 31));
    }

    fn failed(statuses: &[(Option<u16>, &'static str)]) -> Error {
        Error::AllProvidersFailed {
            model: "m/x".into(),
            attempts: statuses
                .iter()
                .map(|(status, kind)| ProviderAttempt {
                    provider: "p".into(),
                    status: *status,
                    kind,
                    message: "m".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn rate_limits_and_credits_are_not_item_failures() {
        assert_eq!(held_back(&failed(&[(Some(429), "http")])), Some(false));
        assert_eq!(
            held_back(&failed(&[(Some(429), "http"), (Some(402), "http")])),
            Some(true)
        );
        assert_eq!(held_back(&failed(&[(Some(402), "held")])), Some(true));
        assert_eq!(held_back(&failed(&[(None, "held")])), Some(false));
        assert_eq!(held_back(&failed(&[(Some(429), "http"), (Some(400), "http")])), None);
        assert_eq!(held_back(&failed(&[])), None);
        assert_eq!(held_back(&Error::InvalidRequest("x".into())), None);
    }
}
