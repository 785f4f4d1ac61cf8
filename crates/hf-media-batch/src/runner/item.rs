//! One claimed item, run to its end: the generations it still lacks, stored jobs resumed, each job's
//! ticket and each media recorded in the state the moment they are known.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use hf_media::provider::JobTicket;
use hf_media::{Error, ErrorInfo, GenerateRequest, GenerationEvent, MediaGenerator, RunOptions};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::layout::media_key;
use crate::BatchError;
use crate::state::{BatchState, ClaimedItem, Outcome, WorkerId};

/// What every item of a run shares.
pub(crate) struct ItemRun {
    pub generator: MediaGenerator,
    pub state: std::sync::Arc<dyn BatchState>,
    pub worker: WorkerId,
    pub items_per_folder: u64,
    pub max_attempts: u32,
}

/// How an item's run ended.
#[derive(Debug)]
pub(crate) enum ItemEnd {
    /// Every media is made.
    Done {
        provider: Option<String>,
        media: usize,
        elapsed: Duration,
        resumed_jobs: usize,
    },
    /// Failed for good.
    Failed { kind: String, message: String },
    /// Put back for a later try, not counted as one (rate limits, credits, a stop).
    Released { reason: String, out_of_credits: bool },
    /// Another worker owns it now.
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

/// Runs `item` until its media are made, it fails, it is put back, or `cancel` fires (then it is put
/// back: its stored jobs are resumed by the next claim).
pub(crate) async fn run_item(
    run: &ItemRun,
    item: ClaimedItem,
    cancel: CancellationToken,
) -> Result<ItemEnd, BatchError> {
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
            state.finish(&run.worker, item.key, outcome).await?;
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
        state
            .finish(
                &run.worker,
                item.key,
                Outcome::Failed {
                    kind: "too_many_attempts".into(),
                    error: json!({ "code": "too_many_attempts", "message": message }),
                },
            )
            .await?;
        return Ok(ItemEnd::Failed {
            kind: "too_many_attempts".into(),
            message,
        });
    }
    let mut options = RunOptions::default().only(missing.iter().copied()).media_key(media_key(
        &item.id,
        item.position,
        run.items_per_folder,
    ));
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
async fn record_reported(run: &ItemRun, item: &ClaimedItem, event: &GenerationEvent) -> Result<bool, BatchError> {
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
    run: &ItemRun,
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
