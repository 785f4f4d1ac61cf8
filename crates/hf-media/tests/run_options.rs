//! The run options of one request ([`RunOptions`]: `only`, `resume`, `media_key`), the `accepted` event
//! and the caller's [`ProviderGate`], without HTTP: a scripted mapping source, scripted providers and a
//! memory sink.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use hf_media::mapping::{MappingError, ModelMapping};
use hf_media::provider::{GenerationRequest, MediaBody, MediaOutput, ProviderContext, ProviderInfo};
use hf_media::sink::MediaKey;
use hf_media::{
    CallOutcome, Error, GatePass, GenerateRequest, GenerationEvent, GenerationParams, Held, JobTicket, MappingSource,
    MediaGenerator, MediaGeneratorBuilder, MediaProvider, MemorySink, ProviderError, ProviderGate, ProviderRegistry,
    RetryPolicy, RunOptions, Task,
};
use serde_json::json;

const MODEL: &str = "org/model";
const TOKEN: &str = "hf_run_options_canary_token";

/// What a scripted provider does on one call of `generate` or `resume`.
#[derive(Debug, Clone)]
enum Step {
    /// Answers with a PNG.
    Png,
    /// Fails.
    Fail(ProviderError),
    /// Never answers (until dropped).
    Hang,
    /// Reports the job accepted (`ctx.report_accepted`), then answers with a PNG.
    AcceptThenPng(JobTicket),
    /// Reports the job accepted, then fails.
    AcceptThenFail(JobTicket, ProviderError),
}

/// A provider that follows a script (one step per call, the last repeats) for `generate`, and another
/// for `resume`; it records what it was given.
#[derive(Debug)]
struct Scripted {
    info: ProviderInfo,
    script: Mutex<VecDeque<Step>>,
    resume_script: Mutex<VecDeque<Step>>,
    generated: AtomicUsize,
    seeds: Mutex<Vec<Option<u64>>>,
    /// The tickets `resume` was called with.
    resumed: Mutex<Vec<JobTicket>>,
    dropped: Arc<AtomicBool>,
}

impl Scripted {
    fn new(name: &str, steps: Vec<Step>) -> Arc<Scripted> {
        Scripted::resuming(name, steps, vec![Step::Png])
    }

    fn resuming(name: &str, steps: Vec<Step>, resume: Vec<Step>) -> Arc<Scripted> {
        Arc::new(Scripted {
            info: ProviderInfo {
                name: Cow::Owned(name.to_owned()),
                tasks: Cow::Owned(vec![Task::TextToImage]),
                direct: None,
                needs_hub_mapping: true,
                direct_only: false,
            },
            script: Mutex::new(steps.into()),
            resume_script: Mutex::new(resume.into()),
            generated: AtomicUsize::new(0),
            seeds: Mutex::new(Vec::new()),
            resumed: Mutex::new(Vec::new()),
            dropped: Arc::new(AtomicBool::new(false)),
        })
    }

    fn generated(&self) -> usize {
        self.generated.load(Ordering::SeqCst)
    }

    fn resumed(&self) -> Vec<JobTicket> {
        self.resumed.lock().unwrap().clone()
    }

    async fn play(&self, ctx: &ProviderContext, script: &Mutex<VecDeque<Step>>) -> Result<MediaOutput, ProviderError> {
        let step = {
            let mut script = script.lock().unwrap();
            if script.len() > 1 {
                script.pop_front().unwrap()
            } else {
                script.front().cloned().unwrap_or(Step::Png)
            }
        };
        let png = || MediaOutput::new(MediaBody::Bytes(hf_media::sink::conformance::tiny_png().into()));
        match step {
            Step::Png => Ok(png()),
            Step::Fail(error) => Err(error),
            Step::Hang => {
                let _flag = DropFlag(self.dropped.clone());
                std::future::pending().await
            }
            Step::AcceptThenPng(job) => {
                ctx.report_accepted(&job);
                Ok(png())
            }
            Step::AcceptThenFail(job, error) => {
                ctx.report_accepted(&job);
                Err(error)
            }
        }
    }
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl MediaProvider for Scripted {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        self.generated.fetch_add(1, Ordering::SeqCst);
        self.seeds.lock().unwrap().push(request.params.seed);
        self.play(ctx, &self.script).await
    }

    async fn resume(
        &self,
        ctx: &ProviderContext,
        _request: GenerationRequest,
        job: JobTicket,
    ) -> Result<MediaOutput, ProviderError> {
        self.resumed.lock().unwrap().push(job);
        self.play(ctx, &self.resume_script).await
    }
}

fn http(provider: &str, status: u16) -> ProviderError {
    ProviderError::Http {
        provider: provider.into(),
        status,
        message: format!("scripted {status}"),
        retry_after: None,
    }
}

/// A Hub stand-in listing every provider live for text-to-image; fails as scripted first.
#[derive(Debug)]
struct Hub {
    providers: Vec<String>,
    failures: Mutex<VecDeque<MappingError>>,
    calls: AtomicUsize,
}

#[async_trait]
impl MappingSource for Hub {
    async fn mapping(&self, model: &str) -> Result<Arc<ModelMapping>, MappingError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(error) = self.failures.lock().unwrap().pop_front() {
            return Err(error);
        }
        let field: serde_json::Map<String, serde_json::Value> = self
            .providers
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    json!({"status": "live", "providerId": format!("{p}/model"), "task": "text-to-image"}),
                )
            })
            .collect();
        Ok(Arc::new(
            ModelMapping::from_hub_field(model, Some(&serde_json::Value::Object(field))).unwrap(),
        ))
    }
}

/// A gate that records every admit and every call's outcome, holds the providers it is told to, and
/// may wait before it admits.
#[derive(Debug, Default)]
struct RecordingGate {
    admits: Mutex<Vec<String>>,
    outcomes: Arc<Mutex<Vec<(String, CallOutcome)>>>,
    held: Vec<(String, Held)>,
    wait: Duration,
}

impl RecordingGate {
    fn holding(held: &[(&str, Held)]) -> Arc<RecordingGate> {
        Arc::new(RecordingGate {
            held: held.iter().map(|(p, h)| ((*p).to_owned(), h.clone())).collect(),
            ..RecordingGate::default()
        })
    }

    fn admits(&self) -> Vec<String> {
        self.admits.lock().unwrap().clone()
    }

    fn outcomes(&self) -> Vec<(String, CallOutcome)> {
        self.outcomes.lock().unwrap().clone()
    }
}

#[async_trait]
impl ProviderGate for RecordingGate {
    async fn admit(&self, provider: &str) -> Result<GatePass, Held> {
        self.admits.lock().unwrap().push(provider.to_owned());
        tokio::time::sleep(self.wait).await;
        if let Some((_, held)) = self.held.iter().find(|(p, _)| p == provider) {
            return Err(held.clone());
        }
        let (outcomes, provider) = (self.outcomes.clone(), provider.to_owned());
        Ok(GatePass::new(move |outcome| {
            outcomes.lock().unwrap().push((provider, outcome));
        }))
    }
}

fn out_of_credits(provider: &str) -> Held {
    Held {
        status: Some(402),
        reason: format!("{provider} is paused for this batch: out of credits"),
    }
}

struct Setup {
    generator: MediaGenerator,
    sink: MemorySink,
    hub: Arc<Hub>,
}

fn setup(providers: &[Arc<Scripted>]) -> Setup {
    setup_with(providers, vec![], |b| b)
}

fn setup_with(
    providers: &[Arc<Scripted>],
    hub_failures: Vec<MappingError>,
    configure: impl FnOnce(MediaGeneratorBuilder) -> MediaGeneratorBuilder,
) -> Setup {
    let mut registry = ProviderRegistry::empty();
    for provider in providers {
        registry.register(provider.clone());
    }
    let hub = Arc::new(Hub {
        providers: providers.iter().map(|p| p.name().to_owned()).collect(),
        failures: Mutex::new(hub_failures.into()),
        calls: AtomicUsize::new(0),
    });
    let sink = MemorySink::new();
    let builder = MediaGenerator::builder()
        .token(TOKEN)
        .registry(registry)
        .mapping_source(hub.clone())
        .sink(Arc::new(sink.clone()))
        .retry(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(1),
        });
    Setup {
        generator: configure(builder).build().unwrap(),
        sink,
        hub,
    }
}

fn with_gate(gate: &Arc<RecordingGate>) -> impl FnOnce(MediaGeneratorBuilder) -> MediaGeneratorBuilder {
    let gate: Arc<dyn ProviderGate> = gate.clone();
    move |builder| builder.gate(gate)
}

async fn run(generator: &MediaGenerator, request: GenerateRequest, options: RunOptions) -> Vec<GenerationEvent> {
    tokio::time::timeout(
        Duration::from_secs(10),
        generator.generate_with(request, options).collect::<Vec<_>>(),
    )
    .await
    .expect("the generation ends")
}

fn request() -> GenerateRequest {
    GenerateRequest::new("a lighthouse").model(MODEL)
}

/// A compact trace of the events: `attempt a`, `retry a 429`, `fallback a 402`, `warning`, `accepted a
/// job-7`, `media b 1`, `error timeout`, `done 1/0`.
fn trace(events: &[GenerationEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            GenerationEvent::Attempt { provider, .. } => Some(format!("attempt {provider}")),
            GenerationEvent::Retry { provider, status, .. } => Some(format!(
                "retry {} {}",
                provider.as_deref().unwrap_or("hub"),
                status.map_or("-".into(), |s| s.to_string())
            )),
            GenerationEvent::Fallback { provider, status, .. } => Some(format!(
                "fallback {provider} {}",
                status.map_or("-".into(), |s| s.to_string())
            )),
            GenerationEvent::Warning { .. } => Some("warning".into()),
            GenerationEvent::Accepted { provider, job, .. } => Some(format!("accepted {provider} {}", job.job_id)),
            GenerationEvent::Media(media) => Some(format!("media {} {}", media.provider, media.task)),
            GenerationEvent::Error { error, .. } => Some(format!("error {}", error.kind())),
            GenerationEvent::Done { succeeded, failed, .. } => Some(format!("done {succeeded}/{failed}")),
            _ => None,
        })
        .collect()
}

fn warnings(events: &[GenerationEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::Warning { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn the_error(events: &[GenerationEvent]) -> &Error {
    events
        .iter()
        .find_map(|e| match e {
            GenerationEvent::Error { error, .. } => Some(error),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no error in {events:?}"))
}

// ---- only ----------------------------------------------------------------------------------------

#[tokio::test]
async fn only_runs_the_chosen_generations_each_with_its_own_seed() {
    let a = Scripted::new("a", vec![Step::Png]);
    let s = setup(std::slice::from_ref(&a));
    let params = GenerationParams {
        seed: Some(100),
        ..Default::default()
    };
    let events = run(
        &s.generator,
        request().n(4).params(params),
        RunOptions::default().only([1, 3]),
    )
    .await;
    let mut media: Vec<(usize, Option<u64>)> = events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::Media(m) => Some((m.task, m.seed)),
            _ => None,
        })
        .collect();
    media.sort();
    assert_eq!(media, [(1, Some(101)), (3, Some(103))]);
    let mut sent = a.seeds.lock().unwrap().clone();
    sent.sort();
    assert_eq!(
        sent,
        [Some(101), Some(103)],
        "the seeds of generations 1 and 3, nothing else"
    );
    let mut stored: Vec<usize> = s.sink.items().iter().map(|m| m.record.task_index).collect();
    stored.sort();
    assert_eq!(stored, [1, 3]);
    let Some(GenerationEvent::Done { succeeded, failed, .. }) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!((*succeeded, *failed), (2, 0));
    for event in &events {
        if let GenerationEvent::Progress { total, .. } = event {
            assert_eq!(*total, 2, "progress counts the generations that run");
        }
    }
}

#[tokio::test]
async fn a_request_that_fails_its_plan_counts_only_the_generations_asked_for() {
    let a = Scripted::new("a", vec![Step::Png]);
    let missing = MappingError::ModelNotFound { model: MODEL.into() };
    let s = setup_with(std::slice::from_ref(&a), vec![missing], |b| b);
    let events = run(&s.generator, request().n(4), RunOptions::default().only([1, 3])).await;
    assert_eq!(trace(&events), ["error model_not_found", "done 0/2"]);
    assert_eq!(a.generated(), 0);
}

// ---- option checks -------------------------------------------------------------------------------

#[tokio::test]
async fn options_naming_a_generation_the_request_has_not_are_refused_before_anything_is_sent() {
    let a = Scripted::new("a", vec![Step::Png]);
    let s = setup(std::slice::from_ref(&a));
    for options in [
        RunOptions::default().only([5]),
        RunOptions::default().only([0, 2]),
        RunOptions::default().resume(2, JobTicket::new("a", "job-1")),
    ] {
        let events = run(&s.generator, request().n(2), options.clone()).await;
        assert_eq!(trace(&events), ["error invalid_request", "done 0/2"], "{options:?}");
        let Some(GenerationEvent::Error { task: None, error }) = events.first() else {
            panic!("{events:?}")
        };
        assert!(error.is_usage(), "{error}");
        assert!(error.to_string().contains("generation"), "{error}");
    }
    assert_eq!(a.generated(), 0, "the provider was never called");
    assert!(a.resumed().is_empty());
    assert_eq!(s.hub.calls.load(Ordering::SeqCst), 0, "not even the Hub was asked");
}

// ---- resume --------------------------------------------------------------------------------------

#[tokio::test]
async fn a_resumed_job_is_polled_on_its_provider_and_never_submitted_again() {
    let a = Scripted::new("a", vec![Step::Png]);
    let b = Scripted::new("b", vec![Step::Png]);
    let s = setup(&[a.clone(), b.clone()]);
    let ticket = JobTicket::new("a", "job-7").with_data(json!({"response_url": "/a/requests/job-7"}));
    let events = run(&s.generator, request(), RunOptions::default().resume(0, ticket.clone())).await;
    assert_eq!(trace(&events), ["attempt a", "media a 0", "done 1/0"]);
    assert_eq!(a.resumed(), [ticket], "resumed once, with the ticket as given");
    assert_eq!(a.generated(), 0, "nothing submitted on a");
    assert_eq!(b.generated(), 0);
    assert_eq!(s.sink.len(), 1);
}

#[tokio::test]
async fn only_the_generation_with_a_ticket_is_resumed() {
    let a = Scripted::new("a", vec![Step::Png]);
    let s = setup(std::slice::from_ref(&a));
    let params = GenerationParams {
        seed: Some(10),
        ..Default::default()
    };
    let events = run(
        &s.generator,
        request().n(2).params(params),
        RunOptions::default().resume(1, JobTicket::new("a", "job-1")),
    )
    .await;
    assert_eq!(trace(&events).last().unwrap(), "done 2/0");
    assert_eq!(a.resumed(), [JobTicket::new("a", "job-1")]);
    assert_eq!(
        *a.seeds.lock().unwrap(),
        [Some(10)],
        "generation 0 is submitted, 1 is not"
    );
}

#[tokio::test]
async fn a_resume_that_fails_falls_through_to_the_others_never_to_a_new_job_on_its_provider() {
    let failed = ProviderError::job_failed("a", "job-7", "the job expired");
    let a = Scripted::resuming("a", vec![Step::Png], vec![Step::Fail(failed)]);
    let b = Scripted::new("b", vec![Step::Png]);
    let s = setup(&[a.clone(), b.clone()]);
    let options = RunOptions::default().resume(0, JobTicket::new("a", "job-7"));
    let events = run(&s.generator, request(), options.clone()).await;
    assert_eq!(
        trace(&events),
        ["attempt a", "fallback a -", "attempt b", "media b 0", "done 1/0"]
    );
    assert_eq!(a.resumed().len(), 1);
    assert_eq!(a.generated(), 0, "no second (paid) job on a");
    assert_eq!(b.generated(), 1);

    // Everyone failing: a is listed once, for its job; it is never asked for a new one.
    let failed = ProviderError::job_failed("a", "job-7", "the job expired");
    let a = Scripted::resuming("a", vec![Step::Png], vec![Step::Fail(failed)]);
    let b = Scripted::new("b", vec![Step::Fail(http("b", 402))]);
    let s = setup(&[a.clone(), b]);
    let events = run(&s.generator, request(), options).await;
    let Error::AllProvidersFailed { attempts, .. } = the_error(&events) else {
        panic!("{events:?}")
    };
    let listed: Vec<(&str, &str, Option<u16>)> = attempts
        .iter()
        .map(|t| (t.provider.as_str(), t.kind, t.status))
        .collect();
    assert_eq!(listed, [("a", "job_failed", None), ("b", "http", Some(402))]);
    assert_eq!(a.generated(), 0);
}

#[tokio::test]
async fn a_ticket_of_a_provider_that_no_longer_serves_the_model_submits_a_new_job_with_a_warning() {
    let a = Scripted::new("a", vec![Step::Png]);
    let s = setup(std::slice::from_ref(&a));
    let options = RunOptions::default().resume(0, JobTicket::new("gone", "job-3"));
    let events = run(&s.generator, request(), options).await;
    assert_eq!(trace(&events), ["warning", "attempt a", "media a 0", "done 1/0"]);
    let warning = &warnings(&events)[0];
    assert!(
        warning.contains("job-3") && warning.contains("gone") && warning.contains("new job"),
        "{warning}"
    );
    assert_eq!(a.generated(), 1);
    assert!(a.resumed().is_empty());
}

// ---- accepted ------------------------------------------------------------------------------------

#[tokio::test]
async fn a_job_the_provider_accepts_is_reported_before_its_media() {
    let a = Scripted::new("a", vec![Step::AcceptThenPng(JobTicket::new("a", "job-7"))]);
    let s = setup(std::slice::from_ref(&a));
    let events = run(&s.generator, request().n(2), RunOptions::default().only([1])).await;
    assert_eq!(
        trace(&events),
        ["attempt a", "accepted a job-7", "media a 1", "done 1/0"]
    );
    let accepted = events
        .iter()
        .find(|e| matches!(e, GenerationEvent::Accepted { .. }))
        .unwrap();
    let GenerationEvent::Accepted { task, provider, job } = accepted else {
        unreachable!()
    };
    assert_eq!((*task, provider.as_str()), (1, "a"));
    assert_eq!(*job, JobTicket::new("a", "job-7"));
    assert_eq!(
        serde_json::to_value(accepted).unwrap(),
        json!({"event": "accepted", "task": 1, "provider": "a", "job": {"provider": "a", "job_id": "job-7"}})
    );
}

#[tokio::test]
async fn an_accepted_job_is_scrubbed_of_secrets_in_its_event() {
    let job = JobTicket::new("a", format!("job-{TOKEN}")).with_data(json!({"path": format!("/r/{TOKEN}")}));
    let a = Scripted::new("a", vec![Step::AcceptThenPng(job)]);
    let s = setup(std::slice::from_ref(&a));
    let events = run(&s.generator, request(), RunOptions::default()).await;
    let Some(GenerationEvent::Accepted { job, .. }) =
        events.iter().find(|e| matches!(e, GenerationEvent::Accepted { .. }))
    else {
        panic!("{events:?}")
    };
    assert!(
        !job.job_id.contains(TOKEN) && job.job_id.contains("[redacted]"),
        "{job:?}"
    );
    let wire: String = events.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    let shown: String = events.iter().map(|e| format!("{e:?}")).collect();
    assert!(!wire.contains(TOKEN) && !shown.contains(TOKEN), "{wire}");
}

#[tokio::test]
async fn a_job_reported_accepted_is_not_submitted_again_when_it_fails() {
    let a = Scripted::new(
        "a",
        vec![Step::AcceptThenFail(JobTicket::new("a", "job-1"), http("a", 503))],
    );
    let b = Scripted::new("b", vec![Step::Png]);
    let s = setup(&[a.clone(), b]);
    let events = run(&s.generator, request(), RunOptions::default()).await;
    assert_eq!(
        trace(&events),
        [
            "attempt a",
            "accepted a job-1",
            "fallback a 503",
            "attempt b",
            "media b 0",
            "done 1/0"
        ]
    );
    assert_eq!(
        a.generated(),
        1,
        "a passing failure after the job was accepted is not retried"
    );
}

// ---- media_key -----------------------------------------------------------------------------------

#[tokio::test]
async fn each_generation_is_stored_at_its_key() {
    let a = Scripted::new("a", vec![Step::Png]);
    let s = setup(std::slice::from_ref(&a));
    let events = run(&s.generator, request().n(2), RunOptions::default().media_key("k")).await;
    assert_eq!(trace(&events).last().unwrap(), "done 2/0");
    let mut keyed: Vec<(String, usize)> = s
        .sink
        .items()
        .iter()
        .map(|m| (m.record.key.as_ref().unwrap().as_str().to_owned(), m.record.task_index))
        .collect();
    keyed.sort();
    assert_eq!(keyed, [("k-0".to_owned(), 0), ("k-1".to_owned(), 1)]);

    // Run again at the same keys: the media are replaced, not added.
    run(&s.generator, request().n(2), RunOptions::default().media_key("k")).await;
    assert_eq!(s.sink.len(), 2);
    assert!(s.sink.get_by_key(&MediaKey::new("k-1").unwrap()).is_some());

    // Without a key, the sink names the media.
    let s = setup(std::slice::from_ref(&a));
    run(&s.generator, request(), RunOptions::default()).await;
    assert!(s.sink.items()[0].record.key.is_none());
}

#[tokio::test]
async fn a_fresh_media_key_is_created_and_never_replaces() {
    let a = Scripted::new("a", vec![Step::Png]);
    let s = setup(std::slice::from_ref(&a));
    let events = run(&s.generator, request().n(2), RunOptions::default().fresh_media_key("f")).await;
    assert_eq!(trace(&events).last().unwrap(), "done 2/0");
    let fresh: Vec<(String, bool)> = s
        .sink
        .items()
        .iter()
        .filter_map(|m| m.record.key.as_ref())
        .map(|key| (key.as_str().to_owned(), key.is_fresh()))
        .collect();
    assert_eq!(fresh.len(), 2);
    assert!(
        fresh.iter().all(|(name, is_fresh)| name.starts_with("f-") && *is_fresh),
        "{fresh:?}"
    );

    // The same fresh key again: the sink refuses it, nothing is replaced.
    let events = run(&s.generator, request(), RunOptions::default().fresh_media_key("f")).await;
    assert_eq!(trace(&events).last().unwrap(), "done 0/1", "{:?}", trace(&events));
    let error = the_error(&events).to_string();
    assert!(error.contains("already taken") && error.contains("f-0"), "{error}");
    assert_eq!(s.sink.len(), 2);

    // `media_key` after `fresh_media_key` replaces again.
    let options = RunOptions::default().fresh_media_key("f").media_key("f");
    assert!(!options.media_key_is_fresh);
    let events = run(&s.generator, request(), options).await;
    assert_eq!(trace(&events).last().unwrap(), "done 1/0");
    assert_eq!(s.sink.len(), 2);
}

#[tokio::test]
async fn a_bad_media_key_is_refused_before_anything_is_sent() {
    let a = Scripted::new("a", vec![Step::Png]);
    let s = setup(std::slice::from_ref(&a));
    for bad in ["../x", "/abs", "a b", "a//b"] {
        let events = run(&s.generator, request(), RunOptions::default().media_key(bad)).await;
        assert_eq!(trace(&events), ["error invalid_request", "done 0/1"], "{bad:?}");
        assert!(the_error(&events).to_string().contains("media key"), "{bad:?}");
    }
    assert_eq!(a.generated(), 0, "the provider was never called");
    assert_eq!(s.hub.calls.load(Ordering::SeqCst), 0);
    assert!(s.sink.is_empty());

    // A key whose first generation's name fits but a later one's does not (a segment is at most 128
    // characters: `{126 x}-9` fits, `{126 x}-10` does not) is refused too, before generation 0 is sent.
    let long = "x".repeat(126);
    let events = run(&s.generator, request().n(11), RunOptions::default().media_key(&long)).await;
    assert_eq!(trace(&events), ["error invalid_request", "done 0/11"]);
    assert_eq!(a.generated(), 0, "no generation was sent");
    // The same key is fine for the generations that fit.
    let events = run(
        &s.generator,
        request().n(11),
        RunOptions::default().media_key(&long).only([9]),
    )
    .await;
    assert_eq!(trace(&events).last().unwrap(), "done 1/0");
}

// ---- gate ----------------------------------------------------------------------------------------

#[tokio::test]
async fn the_gate_hears_a_success() {
    let a = Scripted::new("a", vec![Step::Png]);
    let gate = RecordingGate::holding(&[]);
    let s = setup_with(std::slice::from_ref(&a), vec![], with_gate(&gate));
    let events = run(&s.generator, request(), RunOptions::default()).await;
    assert_eq!(trace(&events), ["attempt a", "media a 0", "done 1/0"]);
    assert_eq!(gate.admits(), ["a"]);
    assert_eq!(gate.outcomes(), [("a".to_owned(), CallOutcome::Succeeded)]);
}

#[tokio::test]
async fn the_gate_is_passed_on_every_try_and_every_fallback_and_hears_rate_limits() {
    let limited = ProviderError::Http {
        provider: "a".into(),
        status: 429,
        message: "slow down".into(),
        retry_after: Some(Duration::from_millis(20)),
    };
    let a = Scripted::new("a", vec![Step::Fail(limited)]);
    let b = Scripted::new("b", vec![Step::Png]);
    let gate = RecordingGate::holding(&[]);
    let s = setup_with(&[a.clone(), b], vec![], |builder| {
        with_gate(&gate)(builder).retry(RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(1),
        })
    });
    let events = run(&s.generator, request(), RunOptions::default()).await;
    assert_eq!(
        trace(&events),
        [
            "attempt a",
            "retry a 429",
            "fallback a 429",
            "attempt b",
            "media b 0",
            "done 1/0"
        ]
    );
    assert_eq!(a.generated(), 2);
    assert_eq!(gate.admits(), ["a", "a", "b"]);
    let limited = CallOutcome::RateLimited {
        retry_after: Some(Duration::from_millis(20)),
    };
    assert_eq!(
        gate.outcomes(),
        [
            ("a".to_owned(), limited.clone()),
            ("a".to_owned(), limited),
            ("b".to_owned(), CallOutcome::Succeeded)
        ]
    );
}

#[tokio::test]
async fn the_gate_hears_out_of_credits_and_other_failures() {
    let a = Scripted::new("a", vec![Step::Fail(http("a", 402))]);
    let b = Scripted::new("b", vec![Step::Fail(http("b", 400))]);
    let c = Scripted::new("c", vec![Step::Png]);
    let gate = RecordingGate::holding(&[]);
    let s = setup_with(&[a, b, c], vec![], with_gate(&gate));
    let events = run(&s.generator, request(), RunOptions::default()).await;
    assert_eq!(trace(&events).last().unwrap(), "done 1/0");
    assert_eq!(
        gate.outcomes(),
        [
            ("a".to_owned(), CallOutcome::OutOfCredits),
            ("b".to_owned(), CallOutcome::Failed { status: Some(400) }),
            ("c".to_owned(), CallOutcome::Succeeded)
        ]
    );
}

#[tokio::test]
async fn the_gate_hears_a_call_cancelled_when_the_stream_is_dropped() {
    let a = Scripted::new("a", vec![Step::Hang]);
    let gate = RecordingGate::holding(&[]);
    let s = setup_with(std::slice::from_ref(&a), vec![], with_gate(&gate));
    let mut events = s.generator.generate_with(request(), RunOptions::default());
    while let Some(event) = events.next().await {
        if matches!(event, GenerationEvent::Attempt { .. }) {
            break;
        }
    }
    for _ in 0..200 {
        if a.generated() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(a.generated(), 1, "the provider is working");
    assert!(gate.outcomes().is_empty(), "nothing heard while the call runs");
    drop(events);
    for _ in 0..200 {
        if !gate.outcomes().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(gate.outcomes(), [("a".to_owned(), CallOutcome::Cancelled)]);
    assert!(a.dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_provider_the_gate_holds_is_skipped_with_a_warning() {
    let a = Scripted::new("a", vec![Step::Png]);
    let b = Scripted::new("b", vec![Step::Png]);
    let gate = RecordingGate::holding(&[("a", out_of_credits("a"))]);
    let s = setup_with(&[a.clone(), b.clone()], vec![], with_gate(&gate));
    let events = run(&s.generator, request(), RunOptions::default()).await;
    assert_eq!(
        trace(&events),
        ["attempt a", "warning", "attempt b", "media b 0", "done 1/0"]
    );
    let warning = &warnings(&events)[0];
    assert!(
        warning.starts_with("a ") && warning.contains("out of credits"),
        "{warning}"
    );
    assert_eq!((a.generated(), b.generated()), (0, 1), "a was never called");
    assert_eq!(gate.admits(), ["a", "b"]);
    assert_eq!(gate.outcomes(), [("b".to_owned(), CallOutcome::Succeeded)]);
}

#[tokio::test]
async fn every_provider_held_fails_with_held_attempts() {
    let a = Scripted::new("a", vec![Step::Png]);
    let b = Scripted::new("b", vec![Step::Png]);
    let gate = RecordingGate::holding(&[("a", out_of_credits("a")), ("b", out_of_credits("b"))]);
    let s = setup_with(&[a.clone(), b.clone()], vec![], with_gate(&gate));
    let events = run(&s.generator, request(), RunOptions::default()).await;
    assert_eq!(trace(&events).last().unwrap(), "done 0/1");
    let Error::AllProvidersFailed { attempts, .. } = the_error(&events) else {
        panic!("{events:?}")
    };
    let listed: Vec<(&str, &str, Option<u16>)> = attempts
        .iter()
        .map(|t| (t.provider.as_str(), t.kind, t.status))
        .collect();
    assert_eq!(listed, [("a", "held", Some(402)), ("b", "held", Some(402))]);
    assert!(attempts[0].message.contains("out of credits"));
    assert_eq!((a.generated(), b.generated()), (0, 0));
    assert!(gate.outcomes().is_empty());
}

#[tokio::test]
async fn a_resumed_job_passes_the_gate_and_a_held_one_is_left_for_a_later_run() {
    let a = Scripted::new("a", vec![Step::Png]);
    let b = Scripted::new("b", vec![Step::Png]);
    let gate = RecordingGate::holding(&[]);
    let s = setup_with(&[a.clone(), b.clone()], vec![], with_gate(&gate));
    let options = RunOptions::default().resume(0, JobTicket::new("a", "job-7"));
    run(&s.generator, request(), options.clone()).await;
    assert_eq!(gate.admits(), ["a"]);
    assert_eq!(gate.outcomes(), [("a".to_owned(), CallOutcome::Succeeded)]);

    // Held: the job may still finish, so no other provider is paid for another; it waits for a later run.
    let a = Scripted::new("a", vec![Step::Png]);
    let gate = RecordingGate::holding(&[("a", out_of_credits("a"))]);
    let s = setup_with(&[a.clone(), b.clone()], vec![], with_gate(&gate));
    let events = run(&s.generator, request(), options).await;
    assert_eq!(
        trace(&events),
        ["attempt a", "warning", "error all_providers_failed", "done 0/1"]
    );
    assert!(warnings(&events)[0].contains("job-7"), "{:?}", warnings(&events));
    assert!(a.resumed().is_empty() && a.generated() == 0);
    assert_eq!(b.generated(), 0);
}

#[tokio::test]
async fn the_gates_wait_counts_in_the_generation_deadline() {
    let a = Scripted::new("a", vec![Step::Png]);
    let gate = Arc::new(RecordingGate {
        wait: Duration::from_millis(200),
        ..RecordingGate::default()
    });
    let s = setup_with(std::slice::from_ref(&a), vec![], |builder| {
        with_gate(&gate)(builder).generation_timeout(Some(Duration::from_millis(100)))
    });
    let started = std::time::Instant::now();
    let events = run(&s.generator, request(), RunOptions::default()).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(trace(&events), ["attempt a", "error timeout", "done 0/1"]);
    assert_eq!(the_error(&events).kind(), "timeout");
    assert_eq!(gate.admits(), ["a"]);
    assert_eq!(a.generated(), 0, "the provider was never called");
    assert!(gate.outcomes().is_empty(), "no pass was given");
}
