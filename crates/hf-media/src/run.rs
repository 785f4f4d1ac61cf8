//! The run of one generation: the candidates in turn, with the fallback rules, inside the deadline.
//!
//! - A passing failure (408, 429, 5xx, a broken connection, an HTTP timeout) is tried again on the same
//!   provider ([`RetryPolicy::run`](hf_media_provider::RetryPolicy::run)); after the last try, the next
//!   provider is asked.
//! - A 404 from a provider's submit route means the model is not supported: nothing else is tried.
//! - Any other provider failure (400, 401, 402, a failed job, an invalid answer, …) falls through to the
//!   next provider.
//! - A media that was made but could not be downloaded (after its own retries) is not asked for again:
//!   the next provider is tried.
//! - The sink failing for good (disk full) stops the generation.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hf_media_provider::{GenerationRequest, ProviderError, RetryStage, Retryable, Transience};

use crate::emitter::Emitter;
use crate::fetch::deliver;
use crate::generator::Inner;
use crate::plan::{Candidate, Plan};
use crate::record::Made;
use crate::{Error, GeneratedMedia, ProviderAttempt};

/// The failed tries of one generation, kept outside its future so that an expired deadline can still
/// list them.
#[derive(Default)]
pub(crate) struct Tries(Mutex<Vec<ProviderAttempt>>);

impl Tries {
    pub(crate) fn push_error(&self, error: &ProviderError) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ProviderAttempt::from_error(error));
    }

    fn snapshot(&self) -> Vec<ProviderAttempt> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Why one attempt on one provider failed.
pub(crate) enum AttemptFailure {
    /// The provider failed; trying it again may help if the failure is passing.
    Provider(ProviderError),
    /// The provider made the media, but it could not be fetched even with retries: the next provider is
    /// tried, this one is not asked for a second (paid) job.
    Delivered(ProviderError),
    /// Nothing else should be tried.
    Fatal(Error),
}

impl Retryable for AttemptFailure {
    fn transience(&self) -> Transience {
        match self {
            AttemptFailure::Provider(error) => error.transience(),
            AttemptFailure::Delivered(_) | AttemptFailure::Fatal(_) => Transience::Final,
        }
    }

    fn retry_status(&self) -> Option<u16> {
        match self {
            AttemptFailure::Provider(error) | AttemptFailure::Delivered(error) => error.status(),
            AttemptFailure::Fatal(_) => None,
        }
    }

    fn retry_message(&self) -> String {
        match self {
            AttemptFailure::Provider(error) | AttemptFailure::Delivered(error) => error.message(),
            AttemptFailure::Fatal(error) => error.to_string(),
        }
    }
}

/// Runs generation `task` of `plan` to its media or its error, within the generation deadline.
pub(crate) async fn generation(
    inner: &Inner,
    plan: &Plan,
    task: usize,
    emitter: &Emitter,
) -> Result<GeneratedMedia, Error> {
    let tries = Tries::default();
    let work = try_candidates(inner, plan, task, emitter, &tries);
    match inner.generation_timeout {
        Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(Error::Timeout {
                after: limit,
                attempts: tries.snapshot(),
            })
        }),
        None => work.await,
    }
}

async fn try_candidates(
    inner: &Inner,
    plan: &Plan,
    task: usize,
    emitter: &Emitter,
    tries: &Tries,
) -> Result<GeneratedMedia, Error> {
    let started = Instant::now();
    for candidate in &plan.candidates {
        let provider = candidate.mapping.provider.as_str();
        emitter.attempt(provider, &candidate.mapping.provider_id);
        let outcome = inner
            .retry
            .run(
                RetryStage::Request,
                |_| attempt(inner, plan, candidate, task, emitter, tries, started),
                |notice, failure| {
                    if let AttemptFailure::Provider(error) = failure {
                        tries.push_error(error);
                    }
                    emitter.retry(Some(provider), notice);
                },
            )
            .await;
        let error = match outcome {
            Ok(media) => return Ok(media),
            Err(AttemptFailure::Fatal(error)) => return Err(error),
            Err(AttemptFailure::Provider(error)) if error.is_model_not_supported() => {
                return Err(Error::ModelNotSupported {
                    model: plan.model.clone(),
                    provider: provider.to_owned(),
                    status: error.status(),
                    message: error.message(),
                });
            }
            Err(AttemptFailure::Provider(error) | AttemptFailure::Delivered(error)) => error,
        };
        tries.push_error(&error);
        emitter.fallback(&error);
    }
    Err(Error::AllProvidersFailed {
        model: plan.model.clone(),
        attempts: tries.snapshot(),
    })
}

/// One provider, from request to stored media.
async fn attempt(
    inner: &Inner,
    plan: &Plan,
    candidate: &Candidate,
    task: usize,
    emitter: &Emitter,
    tries: &Tries,
    started: Instant,
) -> Result<GeneratedMedia, AttemptFailure> {
    let provider = candidate.mapping.provider.as_str();
    let ctx = candidate.context.clone().with_reporter(emitter.reporter(provider));
    let params = plan.params_for(task);
    let seed_sent = params.seed;
    let request = GenerationRequest {
        mapping: candidate.mapping.clone(),
        prompt: plan.prompt.clone(),
        params,
        images: Vec::new(),
    };
    let asked = Instant::now();
    let output = candidate
        .provider
        .generate(&ctx, request)
        .await
        .map_err(|error| AttemptFailure::Provider(inner.secrets.scrub_error(error)))?;
    let mut provider_response = output.provider_response;
    if let Some(response) = &mut provider_response {
        inner.secrets.scrub_json(response);
    }
    let made = Made {
        plan,
        candidate,
        task,
        started,
        generation_ms: millis(asked.elapsed()),
        seed: output.seed.or(seed_sent),
        mime: output.mime,
        provider_response,
    };
    deliver(inner, &made, output.body, emitter, tries).await
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
