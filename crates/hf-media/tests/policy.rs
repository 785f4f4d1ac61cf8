//! The facade's policy, without HTTP: a scripted mapping source, scripted providers and a memory sink.
//! Every rule of `run.rs` and `plan.rs` has a test here: fallback, the 404 stop, retries and their
//! limits, the Hub retry, deadlines, cancellation, the order of events, seeds, sink retries, secrets.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use hf_media::mapping::{MappingError, ModelMapping};
use hf_media::provider::{GenerationRequest, MediaBody, MediaOutput, ProviderContext, ProviderInfo, ProviderStatus};
use hf_media::sink::{ByteStream, MediaRecord, StoredMedia};
use hf_media::{
    Error, GenerateRequest, GenerationEvent, GenerationParams, MappingSource, MediaGenerator, MediaInput,
    MediaProvider, MediaSink, MemorySink, ProviderError, ProviderRegistry, RetryPolicy, RetryStage, RunOptions,
    SinkError, Task,
};
use serde_json::json;

const MODEL: &str = "org/model";
const TOKEN: &str = "hf_policy_canary_token";

/// What a scripted provider does on one call.
#[derive(Debug, Clone)]
enum Step {
    /// Answers with a PNG.
    Png,
    /// Fails.
    Fail(ProviderError),
    /// Never answers (until dropped).
    Hang,
    /// Names its job (reports a status with the job's id), then fails.
    AcceptThenFail(ProviderError),
    /// Answers with a PNG as a byte stream read once.
    StreamPng,
}

/// A provider that follows a script, one step per call (the last step repeats).
#[derive(Debug)]
struct Scripted {
    info: ProviderInfo,
    script: Mutex<VecDeque<Step>>,
    calls: AtomicUsize,
    seeds: Mutex<Vec<Option<u64>>>,
    /// The SHA-256 of the images each call was given.
    images: Mutex<Vec<Vec<String>>>,
    dropped: Arc<AtomicBool>,
}

impl Scripted {
    fn new(name: &str, steps: Vec<Step>) -> Arc<Scripted> {
        Scripted::serving(name, &[Task::TextToImage], steps)
    }

    fn serving(name: &str, tasks: &[Task], steps: Vec<Step>) -> Arc<Scripted> {
        Arc::new(Scripted {
            info: ProviderInfo {
                name: Cow::Owned(name.to_owned()),
                tasks: Cow::Owned(tasks.to_vec()),
                direct: None,
                needs_hub_mapping: true,
                direct_only: false,
            },
            script: Mutex::new(steps.into()),
            calls: AtomicUsize::new(0),
            seeds: Mutex::new(Vec::new()),
            images: Mutex::new(Vec::new()),
            dropped: Arc::new(AtomicBool::new(false)),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn next(&self) -> Step {
        let mut script = self.script.lock().unwrap();
        if script.len() > 1 {
            script.pop_front().unwrap()
        } else {
            script.front().cloned().unwrap_or(Step::Png)
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
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seeds.lock().unwrap().push(request.params.seed);
        self.images
            .lock()
            .unwrap()
            .push(request.images.iter().map(|i| i.sha256().to_owned()).collect());
        match self.next() {
            Step::Png => Ok(MediaOutput::new(MediaBody::Bytes(
                hf_media::sink::conformance::tiny_png().into(),
            ))),
            Step::Fail(error) => Err(error),
            Step::Hang => {
                let _flag = DropFlag(self.dropped.clone());
                std::future::pending().await
            }
            Step::AcceptThenFail(error) => {
                ctx.report(ProviderStatus::queued("job-1"));
                Err(error)
            }
            Step::StreamPng => {
                let png = hf_media::sink::conformance::tiny_png();
                let (head, tail) = png.split_at(20);
                let chunks = vec![
                    Ok(bytes::Bytes::copy_from_slice(head)),
                    Ok(bytes::Bytes::copy_from_slice(tail)),
                ];
                Ok(MediaOutput::new(MediaBody::Stream(
                    futures::stream::iter(chunks).boxed(),
                )))
            }
        }
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

/// A Hub stand-in: fails as scripted, then answers with a live text-to-image entry per provider.
#[derive(Debug)]
struct Hub {
    /// Each provider with the task the Hub lists it for.
    providers: Vec<(String, String)>,
    failures: Mutex<VecDeque<MappingError>>,
    calls: AtomicUsize,
    delay: Mutex<Duration>,
}

impl Hub {
    fn listing(entries: &[(&str, &str)], failures: Vec<MappingError>) -> Arc<Hub> {
        Arc::new(Hub {
            providers: entries
                .iter()
                .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
                .collect(),
            failures: Mutex::new(failures.into()),
            calls: AtomicUsize::new(0),
            delay: Mutex::new(Duration::ZERO),
        })
    }
}

#[async_trait]
impl MappingSource for Hub {
    async fn mapping(&self, model: &str) -> Result<Arc<ModelMapping>, MappingError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        if let Some(error) = self.failures.lock().unwrap().pop_front() {
            return Err(error);
        }
        let field: serde_json::Map<String, serde_json::Value> = self
            .providers
            .iter()
            .map(|(p, task)| {
                (
                    p.clone(),
                    json!({"status": "live", "providerId": format!("{p}/model"), "task": task}),
                )
            })
            .collect();
        Ok(Arc::new(
            ModelMapping::from_hub_field(model, Some(&serde_json::Value::Object(field))).unwrap(),
        ))
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(1),
    }
}

struct Setup {
    generator: MediaGenerator,
    sink: MemorySink,
    hub: Arc<Hub>,
}

fn setup(providers: &[Arc<Scripted>], hub_failures: Vec<MappingError>) -> Setup {
    setup_with(providers, hub_failures, |b| b)
}

fn setup_with(
    providers: &[Arc<Scripted>],
    hub_failures: Vec<MappingError>,
    configure: impl FnOnce(hf_media::MediaGeneratorBuilder) -> hf_media::MediaGeneratorBuilder,
) -> Setup {
    let mut registry = ProviderRegistry::empty();
    for provider in providers {
        registry.register(provider.clone());
    }
    let entries: Vec<(&str, &str)> = providers
        .iter()
        .map(|p| (p.name(), p.tasks().first().map_or("text-to-image", |t| t.as_str())))
        .collect();
    let hub = Hub::listing(&entries, hub_failures);
    let sink = MemorySink::new();
    let builder = MediaGenerator::builder()
        .token(TOKEN)
        .registry(registry)
        .mapping_source(hub.clone())
        .sink(Arc::new(sink.clone()))
        .retry(fast_retries());
    Setup {
        generator: configure(builder).build().unwrap(),
        sink,
        hub,
    }
}

async fn events_of(generator: &MediaGenerator, request: GenerateRequest) -> Vec<GenerationEvent> {
    tokio::time::timeout(Duration::from_secs(10), generator.generate(request).collect::<Vec<_>>())
        .await
        .expect("the generation ends")
}

fn request() -> GenerateRequest {
    GenerateRequest::new("a lighthouse").model(MODEL)
}

/// A compact trace of the events: `attempt a`, `retry a request 503`, `fallback a 402`, `media b`, …
fn trace(events: &[GenerationEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            GenerationEvent::Attempt { provider, .. } => Some(format!("attempt {provider}")),
            GenerationEvent::Retry {
                provider,
                stage,
                status,
                ..
            } => Some(format!(
                "retry {} {stage} {}",
                provider.as_deref().unwrap_or("hub"),
                status.map_or("-".into(), |s| s.to_string())
            )),
            GenerationEvent::Fallback { provider, status, .. } => Some(format!(
                "fallback {provider} {}",
                status.map_or("-".into(), |s| s.to_string())
            )),
            GenerationEvent::Media(media) => Some(format!("media {}", media.provider)),
            GenerationEvent::Error { error, .. } => Some(format!("error {}", error.kind())),
            GenerationEvent::Done { succeeded, failed, .. } => Some(format!("done {succeeded}/{failed}")),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn refusals_fall_through_to_the_next_provider_in_order() {
    for status in [400, 401, 402] {
        let a = Scripted::new("a", vec![Step::Fail(http("a", status))]);
        let b = Scripted::new("b", vec![Step::Png]);
        let s = setup(&[a.clone(), b.clone()], vec![]);
        let events = events_of(&s.generator, request()).await;
        assert_eq!(
            trace(&events),
            [
                "attempt a",
                &format!("fallback a {status}"),
                "attempt b",
                "media b",
                "done 1/0"
            ],
            "{status}"
        );
        assert_eq!((a.calls(), b.calls()), (1, 1), "a refusal is not retried");
        assert_eq!(s.sink.len(), 1);
    }
}

#[tokio::test]
async fn other_failures_fall_through_too() {
    let failures = [
        ProviderError::JobFailed {
            provider: "a".into(),
            job_id: "j".into(),
            message: "nsfw".into(),
        },
        ProviderError::InvalidResponse {
            provider: "a".into(),
            reason: "no images".into(),
        },
        http("a", 422),
    ];
    for failure in failures {
        let a = Scripted::new("a", vec![Step::Fail(failure.clone())]);
        let b = Scripted::new("b", vec![Step::Png]);
        let s = setup(&[a.clone(), b], vec![]);
        let events = events_of(&s.generator, request()).await;
        let trace = trace(&events);
        assert_eq!(
            trace[1],
            format!("fallback a {}", failure.status().map_or("-".into(), |s| s.to_string()))
        );
        assert_eq!(trace.last().unwrap(), "done 1/0", "{failure}");
        assert_eq!(a.calls(), 1, "{failure}: not retried");
    }
}

#[tokio::test]
async fn a_404_means_the_model_is_not_supported_and_nothing_else_is_tried() {
    let a = Scripted::new("a", vec![Step::Fail(http("a", 404))]);
    let b = Scripted::new("b", vec![Step::Png]);
    let s = setup(&[a.clone(), b.clone()], vec![]);
    let events = events_of(&s.generator, request()).await;
    assert_eq!(trace(&events), ["attempt a", "error model_not_supported", "done 0/1"]);
    assert_eq!(b.calls(), 0);
    match events.iter().find_map(|e| match e {
        GenerationEvent::Error { error, .. } => Some(error),
        _ => None,
    }) {
        Some(Error::ModelNotSupported { provider, status, .. }) => {
            assert_eq!((provider.as_str(), *status), ("a", Some(404)));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn passing_failures_are_retried_on_the_same_provider_then_fall_through() {
    let a = Scripted::new(
        "a",
        vec![Step::Fail(http("a", 503)), Step::Fail(http("a", 429)), Step::Png],
    );
    let s = setup(std::slice::from_ref(&a), vec![]);
    let events = events_of(&s.generator, request()).await;
    assert_eq!(
        trace(&events),
        [
            "attempt a",
            "retry a request 503",
            "retry a request 429",
            "media a",
            "done 1/0"
        ]
    );
    assert_eq!(a.calls(), 3);

    // Tries used up: the next provider, and every try listed when all fail.
    let a = Scripted::new("a", vec![Step::Fail(http("a", 502))]);
    let b = Scripted::new("b", vec![Step::Fail(http("b", 402))]);
    let s = setup(&[a.clone(), b], vec![]);
    let events = events_of(&s.generator, request()).await;
    assert_eq!(
        trace(&events),
        [
            "attempt a",
            "retry a request 502",
            "retry a request 502",
            "fallback a 502",
            "attempt b",
            "fallback b 402",
            "error all_providers_failed",
            "done 0/1"
        ]
    );
    assert_eq!(a.calls(), 3, "max_attempts tries");
    let Some(GenerationEvent::Error {
        error: Error::AllProvidersFailed { attempts, .. },
        ..
    }) = events.iter().find(|e| matches!(e, GenerationEvent::Error { .. }))
    else {
        panic!("no error")
    };
    let statuses: Vec<(&str, Option<u16>)> = attempts.iter().map(|a| (a.provider.as_str(), a.status)).collect();
    assert_eq!(
        statuses,
        [("a", Some(502)), ("a", Some(502)), ("a", Some(502)), ("b", Some(402))]
    );
}

#[tokio::test]
async fn a_retry_after_longer_than_the_bound_is_not_waited_for() {
    let long = ProviderError::Http {
        provider: "a".into(),
        status: 429,
        message: "slow down".into(),
        retry_after: Some(Duration::from_secs(3600)),
    };
    let a = Scripted::new("a", vec![Step::Fail(long)]);
    let b = Scripted::new("b", vec![Step::Png]);
    let s = setup(&[a.clone(), b], vec![]);
    let events = events_of(&s.generator, request()).await;
    assert_eq!(
        trace(&events),
        ["attempt a", "fallback a 429", "attempt b", "media b", "done 1/0"]
    );
}

#[tokio::test]
async fn the_hub_call_is_retried_on_passing_failures_only() {
    let a = Scripted::new("a", vec![Step::Png]);
    let busy = MappingError::Http {
        model: MODEL.into(),
        status: 429,
        message: "busy".into(),
        retry_after: Some(Duration::from_millis(30)),
    };
    let s = setup(std::slice::from_ref(&a), vec![busy]);
    let events = events_of(&s.generator, request().n(3)).await;
    let retries: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::Retry {
                task, provider, stage, ..
            } => Some((*task, provider.clone(), *stage)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries,
        [(None, None, RetryStage::Mapping)],
        "one Hub retry for the whole request"
    );
    assert_eq!(s.hub.calls.load(Ordering::SeqCst), 2);
    assert_eq!(trace(&events).last().unwrap(), "done 3/0");

    let missing = MappingError::ModelNotFound { model: MODEL.into() };
    let s = setup(&[a], vec![missing]);
    let events = events_of(&s.generator, request()).await;
    assert_eq!(trace(&events), ["error model_not_found", "done 0/1"]);
    assert_eq!(
        s.hub.calls.load(Ordering::SeqCst),
        1,
        "a missing model is not asked again"
    );
}

#[tokio::test]
async fn the_deadline_ends_a_generation_with_the_tries_made_before_it() {
    let a = Scripted::new("a", vec![Step::Fail(http("a", 402)), Step::Hang]);
    let b = Scripted::new("b", vec![Step::Hang]);
    let s = setup_with(&[a, b.clone()], vec![], |builder| {
        builder.generation_timeout(Some(Duration::from_millis(200)))
    });
    let started = std::time::Instant::now();
    let events = events_of(&s.generator, request()).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        trace(&events),
        ["attempt a", "fallback a 402", "attempt b", "error timeout", "done 0/1"]
    );
    let Some(GenerationEvent::Error {
        error: Error::Timeout { attempts, .. },
        ..
    }) = events.iter().find(|e| matches!(e, GenerationEvent::Error { .. }))
    else {
        panic!("no timeout")
    };
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status, Some(402));
    assert!(b.dropped.load(Ordering::SeqCst), "the hanging call was cancelled");
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_providers_work() {
    let a = Scripted::new("a", vec![Step::Hang]);
    let s = setup(std::slice::from_ref(&a), vec![]);
    let mut events = s.generator.generate(request().n(2));
    while let Some(event) = events.next().await {
        if matches!(event, GenerationEvent::Attempt { .. }) && a.calls() == 2 {
            break;
        }
    }
    drop(events);
    for _ in 0..100 {
        if a.dropped.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(a.dropped.load(Ordering::SeqCst), "the provider's future was dropped");
    assert!(s.sink.is_empty());
}

#[tokio::test]
async fn every_generation_sends_its_own_seed_and_reports_it() {
    let a = Scripted::new("a", vec![Step::Png]);
    let s = setup(std::slice::from_ref(&a), vec![]);
    let params = GenerationParams {
        seed: Some(41),
        ..Default::default()
    };
    let events = events_of(&s.generator, request().n(3).params(params)).await;
    let mut sent = a.seeds.lock().unwrap().clone();
    sent.sort();
    assert_eq!(sent, [Some(41), Some(42), Some(43)]);
    let mut reported: Vec<(usize, Option<u64>)> = events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::Media(m) => Some((m.task, m.seed)),
            _ => None,
        })
        .collect();
    reported.sort();
    assert_eq!(reported, [(0, Some(41)), (1, Some(42)), (2, Some(43))]);
    let records: Vec<MediaRecord> = s.sink.items().into_iter().map(|m| m.record).collect();
    assert!(
        records
            .iter()
            .all(|r| r.seed.is_some() && r.parameters["seed"] == r.seed.unwrap())
    );

    // Without a seed: a random one per generation, all different, each recorded.
    let a = Scripted::new("a", vec![Step::Png]);
    let s = setup(std::slice::from_ref(&a), vec![]);
    events_of(&s.generator, request().n(4)).await;
    let mut sent: Vec<u64> = a.seeds.lock().unwrap().iter().map(|s| s.unwrap()).collect();
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), 4, "four different seeds: {sent:?}");
}

/// A sink that fails with a retryable backend error a number of times, then stores in memory. With
/// `leaves_behind`, a failed store leaves its media (a remote sink whose undo failed).
#[derive(Debug)]
struct FlakySink {
    failures: AtomicUsize,
    retryable: bool,
    inner: MemorySink,
    leaves_behind: bool,
}

#[async_trait]
impl MediaSink for FlakySink {
    async fn store(&self, media: ByteStream, record: MediaRecord) -> Result<StoredMedia, SinkError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            if self.leaves_behind {
                let _ = self.inner.store(media, record).await;
            }
            return Err(SinkError::backend("the object store answered 503", self.retryable));
        }
        self.inner.store(media, record).await
    }
}

#[tokio::test]
async fn a_retried_store_at_a_fresh_key_replaces_what_the_failed_one_left() {
    let a = Scripted::new("a", vec![Step::Png]);
    let sink = Arc::new(FlakySink {
        failures: AtomicUsize::new(1),
        retryable: true,
        inner: MemorySink::new(),
        leaves_behind: true,
    });
    let s = setup_with(std::slice::from_ref(&a), vec![], |builder| builder.sink(sink.clone()));
    let events = tokio::time::timeout(
        Duration::from_secs(10),
        s.generator
            .generate_with(request(), RunOptions::default().fresh_media_key("f"))
            .collect::<Vec<_>>(),
    )
    .await
    .expect("the generation ends");
    assert_eq!(
        trace(&events),
        ["attempt a", "retry a store -", "media a", "done 1/0"],
        "the retry is not refused as KeyTaken"
    );
    let held = sink.inner.items();
    assert_eq!(held.len(), 1, "the second store replaced what the first left");
    let key = held[0].record.key.as_ref().expect("keyed");
    assert_eq!(key.as_str(), "f-0");
    assert!(!key.is_fresh(), "the retry stored replacing");
    assert_eq!(a.calls(), 1, "one job");
}

#[tokio::test]
async fn retryable_sink_errors_are_retried_without_a_second_job() {
    let a = Scripted::new("a", vec![Step::Png]);
    let sink = Arc::new(FlakySink {
        failures: AtomicUsize::new(2),
        retryable: true,
        inner: MemorySink::new(),
        leaves_behind: false,
    });
    let s = setup_with(std::slice::from_ref(&a), vec![], |builder| builder.sink(sink.clone()));
    let events = events_of(&s.generator, request()).await;
    assert_eq!(
        trace(&events),
        ["attempt a", "retry a store -", "retry a store -", "media a", "done 1/0"]
    );
    assert_eq!(a.calls(), 1, "the media was stored again, not asked for again");
    assert_eq!(sink.inner.len(), 1);

    let a = Scripted::new("a", vec![Step::Png]);
    let sink = Arc::new(FlakySink {
        failures: AtomicUsize::new(1),
        retryable: false,
        inner: MemorySink::new(),
        leaves_behind: false,
    });
    let s = setup_with(&[a], vec![], |builder| builder.sink(sink));
    let events = events_of(&s.generator, request()).await;
    assert_eq!(trace(&events), ["attempt a", "error sink", "done 0/1"]);
}

#[tokio::test]
async fn secrets_echoed_by_a_provider_reach_no_event() {
    let echo = ProviderError::Http {
        provider: "a".into(),
        status: 401,
        message: format!("invalid credentials: Authorization: Bearer {TOKEN}"),
        retry_after: None,
    };
    let a = Scripted::new("a", vec![Step::Fail(echo)]);
    let s = setup(&[a], vec![]);
    let events = events_of(&s.generator, request()).await;
    let wire: Vec<String> = events.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    let shown: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
    for text in wire.iter().chain(&shown) {
        assert!(!text.contains(TOKEN), "{text}");
    }
    assert!(wire.iter().any(|line| line.contains("Bearer [redacted]")), "{wire:?}");
}

#[tokio::test]
async fn a_request_that_fails_its_checks_reports_once_and_never_asks_the_hub() {
    let a = Scripted::new("a", vec![Step::Png]);
    let s = setup(std::slice::from_ref(&a), vec![]);
    for bad in [
        request().n(0),
        request().concurrency(0),
        GenerateRequest::default().model(MODEL),
    ] {
        let events = events_of(&s.generator, bad).await;
        let trace = trace(&events);
        assert_eq!(trace[0], "error invalid_request", "{trace:?}");
        assert_eq!(trace.len(), 2);
    }
    assert_eq!(s.hub.calls.load(Ordering::SeqCst), 0);
    assert_eq!(a.calls(), 0);
}

#[tokio::test]
async fn a_job_the_provider_accepted_is_never_submitted_again() {
    let a = Scripted::new("a", vec![Step::AcceptThenFail(http("a", 503))]);
    let b = Scripted::new("b", vec![Step::Png]);
    let s = setup(&[a.clone(), b], vec![]);
    let events = events_of(&s.generator, request()).await;
    assert_eq!(
        trace(&events),
        ["attempt a", "fallback a 503", "attempt b", "media b", "done 1/0"]
    );
    assert_eq!(
        a.calls(),
        1,
        "the paid job is not resubmitted, the next provider is asked"
    );
}

#[tokio::test]
async fn the_hub_call_is_part_of_the_generation_deadline() {
    let a = Scripted::new("a", vec![Step::Hang]);
    let s = setup_with(std::slice::from_ref(&a), vec![], |builder| {
        builder.generation_timeout(Some(Duration::from_millis(400)))
    });
    *s.hub.delay.lock().unwrap() = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let events = events_of(&s.generator, request()).await;
    let took = started.elapsed();
    assert_eq!(trace(&events), ["attempt a", "error timeout", "done 0/1"]);
    assert!(
        took < Duration::from_millis(650),
        "one deadline for the Hub call and the generation: {took:?}"
    );

    // A Hub that takes the whole deadline is named in the error.
    *s.hub.delay.lock().unwrap() = Duration::from_secs(5);
    let events = events_of(&s.generator, request()).await;
    let Some(GenerationEvent::Error { error, task: None }) = events.first() else {
        panic!("{events:?}")
    };
    assert!(matches!(error, Error::MappingTimeout { .. }), "{error}");
    assert!(error.to_string().contains("the Hub"), "{error}");
}

#[tokio::test]
async fn a_seed_given_as_an_extra_parameter_still_gives_variations() {
    let a = Scripted::new("a", vec![Step::Png]);
    let s = setup(std::slice::from_ref(&a), vec![]);
    let mut params = GenerationParams::default();
    params.extra.insert("seed".into(), json!(5));
    events_of(&s.generator, request().n(2).params(params)).await;
    let mut sent = a.seeds.lock().unwrap().clone();
    sent.sort();
    assert_eq!(sent, [Some(5), Some(6)]);

    let mut bad = GenerationParams::default();
    bad.extra.insert("seed".into(), json!("five"));
    let events = events_of(&s.generator, request().params(bad)).await;
    assert_eq!(trace(&events), ["error invalid_request", "done 0/1"]);

    // Random seeds fit the signed 32-bit seeds some providers take.
    let a = Scripted::new("a", vec![Step::Png]);
    let s = setup(std::slice::from_ref(&a), vec![]);
    events_of(&s.generator, request().n(8)).await;
    let max = u64::try_from(i32::MAX).unwrap();
    assert!(a.seeds.lock().unwrap().iter().all(|seed| seed.unwrap() <= max));
}

#[tokio::test]
async fn a_body_read_once_is_replayed_when_the_sink_fails_for_a_passing_reason() {
    let a = Scripted::new("a", vec![Step::StreamPng]);
    let sink = Arc::new(FlakySink {
        failures: AtomicUsize::new(1),
        retryable: true,
        inner: MemorySink::new(),
        leaves_behind: false,
    });
    let s = setup_with(std::slice::from_ref(&a), vec![], |builder| builder.sink(sink.clone()));
    let events = events_of(&s.generator, request()).await;
    assert_eq!(trace(&events), ["attempt a", "retry a store -", "media a", "done 1/0"]);
    assert_eq!(a.calls(), 1, "stored again from the kept bytes, not asked again");
    assert_eq!(sink.inner.items()[0].bytes, hf_media::sink::conformance::tiny_png());
}

#[tokio::test]
async fn secrets_added_by_the_caller_are_scrubbed_too() {
    let echo = ProviderError::Http {
        provider: "a".into(),
        status: 400,
        message: "bad request from server key sk-server-key-0042".into(),
        retry_after: None,
    };
    let a = Scripted::new("a", vec![Step::Fail(echo)]);
    let s = setup_with(std::slice::from_ref(&a), vec![], |builder| {
        builder.redact("sk-server-key-0042")
    });
    let events = events_of(&s.generator, request()).await;
    let wire: String = events.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    assert!(
        !wire.contains("sk-server-key-0042") && wire.contains("[redacted]"),
        "{wire}"
    );
}

#[test]
fn settings_that_cannot_work_are_refused_when_building() {
    let zero_poll = MediaGenerator::builder().token(TOKEN).poll(hf_media::PollConfig {
        interval: Duration::ZERO,
        deadline: Duration::from_secs(1),
    });
    let err = zero_poll.build().unwrap_err().to_string();
    assert!(err.contains("poll_interval_ms"), "{err}");
    let tiny = MediaGenerator::builder()
        .token(TOKEN)
        .progress_interval(Duration::from_micros(100));
    assert!(tiny.build().is_ok(), "100 µs rounds up to 1 ms");
    let no_try = MediaGenerator::builder().token(TOKEN).retry(RetryPolicy {
        max_attempts: 0,
        ..RetryPolicy::default()
    });
    assert!(no_try.build().unwrap_err().to_string().contains("max_attempts"));
    let unknown = MediaGenerator::builder()
        .token(TOKEN)
        .provider_url("acme", "http://127.0.0.1:1");
    assert!(matches!(unknown.build(), Err(Error::UnknownProvider { .. })));
}

fn png_file(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, hf_media::sink::conformance::tiny_png()).unwrap();
    path
}

#[tokio::test]
async fn an_input_image_picks_the_providers_that_edit_and_is_shared_by_every_generation() {
    let dir = tempfile::tempdir().unwrap();
    let cat = png_file(dir.path(), "cat.png");
    // The Hub lists `t` for text-to-image and `e` for image-to-image.
    let t = Scripted::new("t", vec![Step::Png]);
    let e = Scripted::serving("e", &[Task::ImageToImage], vec![Step::Fail(http("e", 503)), Step::Png]);
    let s = setup(&[t.clone(), e.clone()], vec![]);
    let events = events_of(&s.generator, request().image(MediaInput::path(&cat)).n(2)).await;
    let steps = trace(&events);
    assert_eq!(steps.last().unwrap(), "done 2/0", "{steps:?}");
    assert_eq!(t.calls(), 0, "the text-to-image provider cannot edit");
    let seen = e.images.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two generations, one retry");
    assert!(seen.iter().all(|images| images.len() == 1 && images[0] == seen[0][0]));
    for item in s.sink.items() {
        let inputs = &item.record.inputs;
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0].source, cat.display().to_string());
        assert_eq!((inputs[0].mime.as_str(), inputs[0].sha256.len()), ("image/png", 64));
    }
    let media: Vec<&hf_media::GeneratedMedia> = events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::Media(m) => Some(m.as_ref()),
            _ => None,
        })
        .collect();
    assert!(media.iter().all(|m| m.inputs.len() == 1));

    // Without an image, the same model makes images from text on `t`.
    let events = events_of(&s.generator, request()).await;
    assert_eq!(trace(&events), ["attempt t", "media t", "done 1/0"]);
}

#[tokio::test]
async fn a_model_that_only_animates_gets_image_to_video_and_task_chooses_when_both_exist() {
    let dir = tempfile::tempdir().unwrap();
    let cat = png_file(dir.path(), "cat.png");
    let v = Scripted::serving("v", &[Task::ImageToVideo], vec![Step::Png]);
    let s = setup(std::slice::from_ref(&v), vec![]);
    let events = events_of(&s.generator, request().image(MediaInput::path(&cat))).await;
    assert_eq!(trace(&events), ["attempt v", "media v", "done 1/0"]);

    let e = Scripted::serving("e", &[Task::ImageToImage], vec![Step::Png]);
    let v = Scripted::serving("v", &[Task::ImageToVideo], vec![Step::Png]);
    let s = setup(&[e.clone(), v.clone()], vec![]);
    let events = events_of(&s.generator, request().image(MediaInput::path(&cat))).await;
    assert_eq!(trace(&events)[0], "attempt e", "an edit first");
    let events = events_of(
        &s.generator,
        request().image(MediaInput::path(&cat)).task(Task::ImageToVideo),
    )
    .await;
    assert_eq!(trace(&events), ["attempt v", "media v", "done 1/0"]);
}

#[tokio::test]
async fn no_provider_for_the_image_task_is_a_clear_error_naming_the_task_and_what_the_hub_lists() {
    let dir = tempfile::tempdir().unwrap();
    let cat = png_file(dir.path(), "cat.png");
    let t = Scripted::new("t", vec![Step::Png]);
    let s = setup(std::slice::from_ref(&t), vec![]);
    let events = events_of(&s.generator, request().image(MediaInput::path(&cat))).await;
    let Some(GenerationEvent::Error { error, task: None }) =
        events.iter().find(|e| matches!(e, GenerationEvent::Error { .. }))
    else {
        panic!("{events:?}")
    };
    let text = error.to_string();
    assert_eq!(error.kind(), "no_provider");
    for part in ["image-to-image", "image-to-video", MODEL, "t (text-to-image"] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert_eq!(t.calls(), 0);

    // Named: the provider's own tasks are said.
    let events = events_of(
        &s.generator,
        request().model(format!("{MODEL}:t")).image(MediaInput::path(&cat)),
    )
    .await;
    let text = events
        .iter()
        .find_map(|e| match e {
            GenerationEvent::Error { error, .. } => Some(error.to_string()),
            _ => None,
        })
        .unwrap();
    assert!(
        text.contains("t takes no input image for it") && text.contains("supports text-to-image"),
        "{text}"
    );
}

#[tokio::test]
async fn a_chats_images_are_left_out_with_a_warning_when_nothing_edits() {
    let t = Scripted::new("t", vec![Step::Png]);
    let s = setup(std::slice::from_ref(&t), vec![]);
    let messages: Vec<hf_media::ChatMessage> = serde_json::from_value(json!([
        {"role": "user", "content": [
            {"type": "text", "text": "a lighthouse like this one"},
            {"type": "image_url", "image_url": {"url": "https://example.invalid/l.png"}}
        ]}
    ]))
    .unwrap();
    let events = events_of(&s.generator, GenerateRequest::from_messages(messages).model(MODEL)).await;
    let warning = events
        .iter()
        .find_map(|e| match e {
            GenerationEvent::Warning { message, .. } if message.contains("left out") => Some(message.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{events:?}"));
    assert!(warning.contains("1 image"), "{warning}");
    assert_eq!(trace(&events), ["attempt t", "media t", "done 1/0"]);
    assert!(t.images.lock().unwrap()[0].is_empty());
}

#[tokio::test]
async fn a_chats_images_are_edited_when_a_provider_edits() {
    let e = Scripted::serving("e", &[Task::ImageToImage], vec![Step::Png]);
    let s = setup(std::slice::from_ref(&e), vec![]);
    let png = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        hf_media::sink::conformance::tiny_png(),
    );
    let messages: Vec<hf_media::ChatMessage> = serde_json::from_value(json!([
        {"role": "user", "content": [
            {"type": "text", "text": "make it golden"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}}
        ]}
    ]))
    .unwrap();
    let events = events_of(&s.generator, GenerateRequest::from_messages(messages).model(MODEL)).await;
    assert_eq!(trace(&events), ["attempt e", "media e", "done 1/0"]);
    assert_eq!(e.images.lock().unwrap()[0].len(), 1);
    assert_eq!(s.sink.items()[0].record.inputs[0].source, "chat image (data: URL)");
}

#[tokio::test]
async fn bad_inputs_are_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "just words, not an image").unwrap();
    let e = Scripted::serving("e", &[Task::ImageToImage], vec![Step::Png]);
    let s = setup_with(std::slice::from_ref(&e), vec![], |b| b.max_input_bytes(64));
    let big = png_file(dir.path(), "big.png");
    std::fs::write(&big, [hf_media::sink::conformance::tiny_png(), vec![0; 100]].concat()).unwrap();
    for (input, expected) in [
        (MediaInput::path(dir.path().join("missing.png")), "does not exist"),
        (MediaInput::path(&text), "not a PNG"),
        (MediaInput::path(&big), "larger than"),
        (MediaInput::url("ftp://example.invalid/x.png"), "http(s)"),
    ] {
        let events = events_of(&s.generator, request().image(input.clone())).await;
        let error = events
            .iter()
            .find_map(|e| match e {
                GenerationEvent::Error { error, task: None } => Some(error),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{input}: {events:?}"));
        assert_eq!(error.kind(), "invalid_input", "{error}");
        assert!(error.is_usage());
        assert!(error.to_string().contains(expected), "{error}");
    }
    assert_eq!(e.calls(), 0, "nothing was sent");
    let events = events_of(&s.generator, request().task(Task::ImageToVideo)).await;
    assert_eq!(
        trace(&events),
        ["error invalid_request", "done 0/1"],
        "image-to-video needs an image"
    );
}

/// A provider that sends only the first image, as one-image protocols do (with the warning).
#[derive(Debug)]
struct FirstImageOnly(ProviderInfo);

#[async_trait]
impl MediaProvider for FirstImageOnly {
    fn info(&self) -> &ProviderInfo {
        &self.0
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        ctx.warn_images_left_out(&request, 1);
        Ok(MediaOutput::new(MediaBody::Bytes(
            hf_media::sink::conformance::tiny_png().into(),
        )))
    }
}

#[tokio::test]
async fn the_record_names_only_the_images_the_provider_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (png_file(dir.path(), "a.png"), png_file(dir.path(), "b.png"));
    let one = Arc::new(FirstImageOnly(ProviderInfo {
        name: Cow::Borrowed("one"),
        tasks: Cow::Borrowed(&[Task::ImageToImage]),
        direct: None,
        needs_hub_mapping: true,
        direct_only: false,
    }));
    let mut registry = ProviderRegistry::empty();
    registry.register(one);
    let sink = MemorySink::new();
    let generator = MediaGenerator::builder()
        .token(TOKEN)
        .registry(registry)
        .mapping_source(Hub::listing(&[("one", "image-to-image")], vec![]))
        .sink(Arc::new(sink.clone()))
        .build()
        .unwrap();
    let events = events_of(
        &generator,
        request().image(MediaInput::path(&a)).image(MediaInput::path(&b)),
    )
    .await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, GenerationEvent::Warning { message, .. } if message.contains("1 more image"))),
        "{events:?}"
    );
    let inputs = &sink.items()[0].record.inputs;
    assert_eq!(inputs.len(), 1, "only the image sent is named: {inputs:?}");
    assert_eq!(inputs[0].source, a.display().to_string());
}

#[tokio::test]
async fn a_text_task_leaves_a_chats_images_out_without_fetching_them() {
    let e = Scripted::serving("e", &[Task::ImageTextToImage], vec![Step::Png]);
    let s = setup(std::slice::from_ref(&e), vec![]);
    let messages: Vec<hf_media::ChatMessage> = serde_json::from_value(json!([
        {"role": "user", "content": [
            {"type": "text", "text": "a lighthouse"},
            {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/never-fetched.png"}}
        ]}
    ]))
    .unwrap();
    let events = events_of(
        &s.generator,
        GenerateRequest::from_messages(messages)
            .model(MODEL)
            .task(Task::TextToImage),
    )
    .await;
    assert!(
        events.iter().any(
            |e| matches!(e, GenerationEvent::Warning { message, .. } if message.contains("text-to-image takes no input image"))
        ),
        "{events:?}"
    );
    assert_eq!(trace(&events), ["attempt e", "media e", "done 1/0"]);
    assert!(
        e.images.lock().unwrap()[0].is_empty(),
        "the image-text provider got no image"
    );
}

#[tokio::test]
async fn offline_no_input_url_outside_the_emulator_is_fetched() {
    let e = Scripted::serving("e", &[Task::ImageToImage], vec![Step::Png]);
    let s = setup_with(std::slice::from_ref(&e), vec![], |b| {
        b.emulator_url("http://127.0.0.1:9")
    });
    let events = events_of(
        &s.generator,
        request().image(MediaInput::url("http://127.0.0.1:1/cat.png")),
    )
    .await;
    let error = events
        .iter()
        .find_map(|e| match e {
            GenerationEvent::Error { error, .. } => Some(error.to_string()),
            _ => None,
        })
        .unwrap();
    assert!(error.contains("offline"), "{error}");
    assert_eq!(e.calls(), 0);
}
