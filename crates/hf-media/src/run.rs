//! The run of one generation: the candidates in turn, with the fallback rules, inside the deadline.
//!
//! - A passing failure (408, 429, 5xx, a broken connection, an HTTP timeout) is tried again on the same
//!   provider ([`RetryPolicy::run`](hf_media_provider::RetryPolicy::run)); after the last try, the next
//!   provider is asked.
//! - A 404 from a provider's submit route means the model is not supported: nothing else is tried.
//! - Any other provider failure (400, 401, 402, a failed job, an invalid answer, …) falls through to the
//!   next provider.
//! - A job the provider accepted (it reported the job's id) or a media that was made is never asked for
//!   again: when it cannot be finished or fetched (after the retries inside the job), the next provider is
//!   tried.
//! - The sink failing for good (disk full) stops the generation.
//! - A job accepted in an earlier run ([`RunOptions::resume`]) is polled on its provider first, never
//!   submitted again; if it cannot be finished, the other providers are tried.
//! - The caller's [`ProviderGate`](crate::ProviderGate), when there is one, is passed before every call
//!   of a provider and hears its outcome; a provider it holds back is skipped for this try.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hf_media_provider::{
    GenerationRequest, JobTicket, NoticeReporter, ProviderError, ProviderNotice, RetryStage, Retryable, Transience,
};

use crate::config::millis;
use crate::emitter::Emitter;
use crate::fetch::deliver;
use crate::generator::Inner;
use crate::plan::{Candidate, Plan};
use crate::record::Made;
use crate::{CallOutcome, Error, GeneratedMedia, Held, ProviderAttempt, RunOptions};
use hf_media_sink::MediaKey;

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

    fn push_held(&self, provider: &str, held: &Held) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ProviderAttempt::held(provider, held));
    }

    fn snapshot(&self) -> Vec<ProviderAttempt> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Why one attempt on one provider failed.
pub(crate) enum AttemptFailure {
    /// The provider failed; trying it again may help if the failure is passing.
    Provider(ProviderError),
    /// The provider accepted the job (it reported its id) or made the media, but the job could not be
    /// finished or its media fetched, even with the retries inside the job: the next provider is tried,
    /// this one is not asked for a second (paid) job.
    NotResubmitted(ProviderError),
    /// The caller's gate held the provider back: the next provider is tried.
    Held(Held),
    /// Nothing else should be tried.
    Fatal(Error),
}

impl Retryable for AttemptFailure {
    fn transience(&self) -> Transience {
        match self {
            AttemptFailure::Provider(error) => error.transience(),
            AttemptFailure::NotResubmitted(_) | AttemptFailure::Held(_) | AttemptFailure::Fatal(_) => Transience::Final,
        }
    }

    fn retry_status(&self) -> Option<u16> {
        match self {
            AttemptFailure::Provider(error) | AttemptFailure::NotResubmitted(error) => error.status(),
            AttemptFailure::Held(held) => held.status,
            AttemptFailure::Fatal(_) => None,
        }
    }

    fn retry_message(&self) -> String {
        match self {
            AttemptFailure::Provider(error) | AttemptFailure::NotResubmitted(error) => error.message(),
            AttemptFailure::Held(held) => held.reason.clone(),
            AttemptFailure::Fatal(error) => error.to_string(),
        }
    }
}

/// Runs generation `task` of `plan` to its media or its error, within the generation deadline.
pub(crate) async fn generation(
    inner: &Inner,
    plan: &Plan,
    options: &RunOptions,
    task: usize,
    emitter: &Emitter,
) -> Result<GeneratedMedia, Error> {
    let tries = Tries::default();
    let work = try_candidates(inner, plan, options, task, emitter, &tries);
    match inner.generation_timeout {
        // What the plan's Hub call took is part of the deadline.
        Some(limit) => tokio::time::timeout(limit.saturating_sub(plan.planning), work)
            .await
            .unwrap_or_else(|_| {
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
    options: &RunOptions,
    task: usize,
    emitter: &Emitter,
    tries: &Tries,
) -> Result<GeneratedMedia, Error> {
    let started = Instant::now();
    let key = options.key_for(task)?;
    let at = Attempt {
        inner,
        plan,
        task,
        emitter,
        tries,
        started,
        key: key.as_ref(),
    };
    // A job accepted in an earlier run is finished on its provider, never submitted again.
    let mut resumed = None;
    if let Some(job) = options.resume.get(&task) {
        match plan.candidates.iter().find(|c| c.mapping.provider == job.provider) {
            Some(candidate) => {
                emitter.attempt(&job.provider, &candidate.mapping.provider_id);
                match at.call(candidate, Some(job)).await {
                    Ok(media) => return Ok(media),
                    Err(AttemptFailure::Fatal(error)) => return Err(error),
                    Err(AttemptFailure::Held(held)) => {
                        tries.push_held(&job.provider, &held);
                        emitter.warning(format!(
                            "job {} of {} is left for a later run: {}",
                            job.job_id, job.provider, held.reason
                        ));
                        return Err(Error::AllProvidersFailed {
                            model: plan.model.clone(),
                            attempts: tries.snapshot(),
                        });
                    }
                    Err(AttemptFailure::Provider(error) | AttemptFailure::NotResubmitted(error)) => {
                        tries.push_error(&error);
                        emitter.fallback(&error);
                    }
                }
                resumed = Some(job.provider.as_str());
            }
            None => emitter.warning(format!(
                "job {} of {} cannot be resumed: {} no longer serves {}; a new job is submitted",
                job.job_id, job.provider, job.provider, plan.model
            )),
        }
    }
    for candidate in plan
        .candidates
        .iter()
        .filter(|c| Some(c.mapping.provider.as_str()) != resumed)
    {
        let provider = candidate.mapping.provider.as_str();
        emitter.attempt(provider, &candidate.mapping.provider_id);
        let outcome = inner
            .retry
            .run(
                RetryStage::Request,
                |_| at.call(candidate, None),
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
            Err(AttemptFailure::Held(held)) => {
                tries.push_held(provider, &held);
                emitter.warning(format!("{provider} is skipped: {}", held.reason));
                continue;
            }
            Err(AttemptFailure::Provider(error)) if error.is_model_not_supported() => {
                return Err(Error::ModelNotSupported {
                    model: plan.model.clone(),
                    provider: provider.to_owned(),
                    status: error.status(),
                    message: error.message(),
                });
            }
            Err(AttemptFailure::Provider(error) | AttemptFailure::NotResubmitted(error)) => error,
        };
        tries.push_error(&error);
        emitter.fallback(&error);
    }
    Err(Error::AllProvidersFailed {
        model: plan.model.clone(),
        attempts: tries.snapshot(),
    })
}

/// What every call of one generation shares.
struct Attempt<'a> {
    inner: &'a Inner,
    plan: &'a Plan,
    task: usize,
    emitter: &'a Emitter,
    tries: &'a Tries,
    started: Instant,
    key: Option<&'a MediaKey>,
}

impl Attempt<'_> {
    /// One call of a provider, from request (or resumed job) to stored media, through the gate.
    async fn call(&self, candidate: &Candidate, resume: Option<&JobTicket>) -> Result<GeneratedMedia, AttemptFailure> {
        let provider = candidate.mapping.provider.as_str();
        let pass = match &self.inner.gate {
            Some(gate) => Some(gate.admit(provider).await.map_err(AttemptFailure::Held)?),
            None => None,
        };
        let (made, body) = match self.make(candidate, resume).await {
            Ok(made) => {
                if let Some(pass) = pass {
                    pass.finish(CallOutcome::Succeeded);
                }
                made
            }
            Err(failure) => {
                if let (Some(pass), AttemptFailure::Provider(error) | AttemptFailure::NotResubmitted(error)) =
                    (pass, &failure)
                {
                    pass.finish(CallOutcome::of_error(error));
                }
                return Err(failure);
            }
        };
        deliver(self.inner, &made.with(self, candidate), body, self.emitter, self.tries).await
    }

    /// Asks the provider for the media (or for the resumed job's).
    async fn make(
        &self,
        candidate: &Candidate,
        resume: Option<&JobTicket>,
    ) -> Result<(Output, hf_media_provider::MediaBody), AttemptFailure> {
        let (inner, plan, task) = (self.inner, self.plan, self.task);
        // Once the provider names its job, the job exists (and is paid for): it is never submitted again.
        let accepted = Arc::new(AtomicBool::new(resume.is_some()));
        // A provider that sends only the first images says how many: the record names those.
        let images_used = Arc::new(AtomicUsize::new(usize::MAX));
        let reporter: NoticeReporter = {
            let provider = candidate.mapping.provider.as_str();
            let (forward, accepted, used) = (self.emitter.reporter(provider), accepted.clone(), images_used.clone());
            Arc::new(move |notice| {
                if let ProviderNotice::ImagesUsed { count } = &notice {
                    used.store(*count, Ordering::SeqCst);
                }
                let names_a_job = match &notice {
                    ProviderNotice::Accepted { .. } => true,
                    ProviderNotice::Status(status) => status.job_id.is_some(),
                    _ => false,
                };
                if names_a_job {
                    accepted.store(true, Ordering::SeqCst);
                }
                forward(notice);
            })
        };
        let ctx = candidate.context.clone().with_reporter(reporter);
        let params = plan.params_for(task);
        let seed_sent = params.seed;
        let request = GenerationRequest {
            mapping: candidate.mapping.clone(),
            prompt: plan.prompt.clone(),
            params,
            images: plan.images_for(candidate),
        };
        let asked = Instant::now();
        let made = match resume {
            Some(job) => candidate.provider.resume(&ctx, request, job.clone()).await,
            None => candidate.provider.generate(&ctx, request).await,
        };
        let output = made.map_err(|error| {
            let error = inner.secrets.scrub_error(error);
            if accepted.load(Ordering::SeqCst) {
                AttemptFailure::NotResubmitted(error)
            } else {
                AttemptFailure::Provider(error)
            }
        })?;
        let mut provider_response = output.provider_response;
        if let Some(response) = &mut provider_response {
            inner.secrets.scrub_json(response);
        }
        let facts = Output {
            generation_ms: millis(asked.elapsed()),
            seed: output.seed.or(seed_sent),
            mime: output.mime,
            provider_response,
            images_used: images_used.load(Ordering::SeqCst),
        };
        Ok((facts, output.body))
    }
}

/// What the provider said of a media, before it is stored.
struct Output {
    generation_ms: u64,
    seed: Option<u64>,
    mime: Option<String>,
    provider_response: Option<serde_json::Value>,
    images_used: usize,
}

impl Output {
    fn with<'a>(self, at: &Attempt<'a>, candidate: &'a Candidate) -> Made<'a> {
        Made {
            plan: at.plan,
            candidate,
            task: at.task,
            started: at.started,
            generation_ms: self.generation_ms,
            seed: self.seed,
            mime: self.mime,
            provider_response: self.provider_response,
            images_used: self.images_used,
            key: at.key.cloned(),
        }
    }
}
