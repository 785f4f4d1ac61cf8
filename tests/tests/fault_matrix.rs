//! Every fault kind × every provider against the emulator, each with its expected outcome: success after a
//! retry, fallback, or a typed error. Every run must end before its deadline, leave no temporary or
//! partial file, and never show the token.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hf_media::{
    Error, FileSink, GenerateRequest, GenerationEvent, GenerationParams, MediaGenerator, PollConfig, RetryStage,
};
use hf_media_emulator::{Emulator, Fault, FaultRule, FaultTarget, ProviderBehaviour, RunningEmulator};
use hf_media_tests::{collect, fast_retry};

const CANARY: &str = "hf_canary_matrix_0123456789";
/// No run may take longer than this (the generator's own deadlines are far shorter).
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// What a run must end with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// A media, after at least one `Retry` event.
    SuccessAfterRetry,
    /// A media with no retry.
    Success,
    /// `AllProvidersFailed` with this many attempts, the last of this kind.
    Failed { attempts: usize, kind: &'static str },
    /// `ModelNotSupported`.
    NotSupported,
}

struct Case {
    fault: Fault,
    target: FaultTarget,
    times: Option<u32>,
    outcome: Outcome,
}

fn cases(provider: &str, asynchronous: bool) -> Vec<Case> {
    let case = |fault, target, times, outcome| Case {
        fault,
        target,
        times,
        outcome,
    };
    let status = |status| Fault::Status { status, body: None };
    let mut cases = vec![
        case(status(500), FaultTarget::Submit, Some(1), Outcome::SuccessAfterRetry),
        case(status(502), FaultTarget::Submit, Some(2), Outcome::SuccessAfterRetry),
        case(
            Fault::RateLimited { retry_after_secs: 0 },
            FaultTarget::Submit,
            Some(1),
            Outcome::SuccessAfterRetry,
        ),
        case(
            status(503),
            FaultTarget::Submit,
            None,
            Outcome::Failed {
                attempts: 3,
                kind: "http",
            },
        ),
        case(
            status(402),
            FaultTarget::Submit,
            None,
            Outcome::Failed {
                attempts: 1,
                kind: "http",
            },
        ),
        case(
            status(401),
            FaultTarget::Submit,
            None,
            Outcome::Failed {
                attempts: 1,
                kind: "http",
            },
        ),
        case(status(404), FaultTarget::Submit, None, Outcome::NotSupported),
        case(
            Fault::MalformedJson,
            FaultTarget::Submit,
            None,
            Outcome::Failed {
                attempts: 1,
                kind: "invalid_response",
            },
        ),
        case(
            Fault::ConnectionReset,
            FaultTarget::Submit,
            Some(1),
            Outcome::SuccessAfterRetry,
        ),
        case(
            Fault::TruncatedBody,
            FaultTarget::Submit,
            None,
            Outcome::Failed {
                attempts: 3,
                kind: "network",
            },
        ),
        case(
            Fault::Stall { secs: 5.0 },
            FaultTarget::Submit,
            None,
            Outcome::Failed {
                attempts: 3,
                kind: "timeout",
            },
        ),
        case(status(500), FaultTarget::Download, Some(1), Outcome::SuccessAfterRetry),
        case(
            Fault::ConnectionReset,
            FaultTarget::Download,
            None,
            Outcome::Failed {
                attempts: 3,
                kind: "network",
            },
        ),
    ];
    if provider == "hf-inference" {
        // hf-inference waits out a loading model without a retry, within its deadline.
        cases.push(case(
            Fault::Loading {
                estimated_time_secs: 0.05,
            },
            FaultTarget::Submit,
            Some(2),
            Outcome::Success,
        ));
    } else {
        cases.push(case(
            Fault::Loading {
                estimated_time_secs: 0.05,
            },
            FaultTarget::Submit,
            Some(1),
            Outcome::SuccessAfterRetry,
        ));
    }
    if asynchronous {
        // A running job is not given up for a passing hiccup: the polling loop rides it out.
        cases.push(case(status(500), FaultTarget::Poll, Some(2), Outcome::Success));
        cases.push(case(
            Fault::ConnectionReset,
            FaultTarget::Poll,
            Some(1),
            Outcome::Success,
        ));
        // A job whose status keeps failing is given up after the retries inside the job, then reported:
        // it is never submitted (and paid for) a second time.
        cases.push(case(
            status(503),
            FaultTarget::Poll,
            None,
            Outcome::Failed {
                attempts: 1,
                kind: "http",
            },
        ));
        // A job that is gone is the provider's failure, not "model not supported".
        cases.push(case(
            status(404),
            FaultTarget::Poll,
            None,
            Outcome::Failed {
                attempts: 1,
                kind: "job_failed",
            },
        ));
        cases.push(case(
            Fault::MalformedJson,
            FaultTarget::Poll,
            None,
            Outcome::Failed {
                attempts: 1,
                kind: "invalid_response",
            },
        ));
    }
    cases
}

/// One (model, provider, is video) per provider and task of the catalogue.
fn targets(emulator: &Emulator) -> Vec<(&'static str, &'static str, bool)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for model in emulator.catalogue() {
        for entry in model.entries.iter().filter(|e| e.status == "live") {
            let video = entry.task == "text-to-video";
            if seen.insert((entry.provider, video)) {
                out.push((model.id, entry.provider, video));
            }
        }
    }
    out
}

fn generator(running: &RunningEmulator, dir: &std::path::Path) -> MediaGenerator {
    MediaGenerator::builder()
        .token(CANARY)
        .hub_url(running.url())
        .router_url(running.url())
        .poll(PollConfig {
            interval: Duration::from_millis(10),
            deadline: Duration::from_secs(5),
        })
        .retry(fast_retry())
        .read_timeout(Duration::from_millis(300))
        .request_timeout(Duration::from_secs(5))
        .sink(Arc::new(FileSink::new(dir)))
        .build()
        .unwrap()
}

fn check(events: &[GenerationEvent], expected: Outcome, label: &str) {
    let media = events.iter().filter(|e| matches!(e, GenerationEvent::Media(_))).count();
    // Retries that asked the provider again from the start; passing failures inside a job (a status
    // request, a loading model) and downloads are retried where they happen, and reported too.
    let resubmits = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                GenerationEvent::Retry {
                    stage: RetryStage::Request,
                    ..
                }
            )
        })
        .count();
    let retries = events
        .iter()
        .filter(|e| matches!(e, GenerationEvent::Retry { .. }))
        .count();
    let error = events.iter().find_map(|e| match e {
        GenerationEvent::Error { error, .. } => Some(error),
        _ => None,
    });
    match expected {
        Outcome::Success => assert!(media == 1 && resubmits == 0, "{label}: {events:#?}"),
        Outcome::SuccessAfterRetry => assert!(media == 1 && retries >= 1, "{label}: {events:#?}"),
        Outcome::NotSupported => assert!(
            matches!(error, Some(Error::ModelNotSupported { .. })),
            "{label}: {events:#?}"
        ),
        Outcome::Failed { attempts, kind } => match error {
            Some(Error::AllProvidersFailed { attempts: tried, .. }) => {
                assert_eq!(tried.len(), attempts, "{label}: {tried:?}");
                assert_eq!(tried.last().unwrap().kind, kind, "{label}: {tried:?}");
            }
            other => panic!("{label}: expected all providers failed, got {other:?}"),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_on_every_provider_has_its_outcome() {
    let emulator = Emulator::new();
    let running = emulator.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut runs = 0;
    for (model, provider, video) in targets(&emulator) {
        // Synchronous providers answer with the media in the body (raw bytes or base64): no poll, no download.
        let synchronous = matches!(provider, "hf-inference" | "nscale") || (provider == "together" && !video);
        let asynchronous = !synchronous;
        for case in cases(provider, asynchronous) {
            if case.target == FaultTarget::Download && synchronous {
                continue;
            }
            let label = format!(
                "{provider} {} {:?} on {:?} x{:?}",
                if video { "video" } else { "image" },
                case.fault,
                case.target,
                case.times
            );
            emulator.reset();
            emulator.set_behaviour(
                provider,
                ProviderBehaviour::default().with_fault(FaultRule {
                    fault: case.fault.clone(),
                    target: case.target,
                    times: case.times,
                    probability: None,
                }),
            );
            let dir = tempfile::tempdir().unwrap();
            let params = GenerationParams {
                width: Some(64),
                height: Some(48),
                num_frames: video.then_some(3),
                ..Default::default()
            };
            let request = GenerateRequest::new("a fox")
                .model(format!("{model}:{provider}"))
                .params(params);
            let started = Instant::now();
            let events = tokio::time::timeout(RUN_LIMIT, collect(generator(&running, dir.path()).generate(request)))
                .await
                .unwrap_or_else(|_| panic!("{label}: hung past {RUN_LIMIT:?}"));
            check(&events, case.outcome, &label);
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{label}: took {:?}",
                started.elapsed()
            );
            let files: Vec<String> = std::fs::read_dir(dir.path())
                .map(|entries| {
                    entries
                        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                files.iter().all(|f| !f.contains(".part")),
                "{label}: temporary file left: {files:?}"
            );
            let media_files = files.iter().filter(|f| !f.ends_with(".json")).count();
            let expected_files = usize::from(matches!(case.outcome, Outcome::Success | Outcome::SuccessAfterRetry));
            assert_eq!(media_files, expected_files, "{label}: {files:?}");
            let shown = format!("{events:?}");
            assert!(!shown.contains(CANARY), "{label}: the token leaked into an event");
            runs += 1;
        }
    }
    assert!(runs >= 150, "only {runs} runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_deadline_is_a_typed_timeout_naming_what_timed_out() {
    let emulator = Emulator::new();
    let running = emulator.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let params = GenerationParams {
        width: Some(32),
        height: Some(32),
        ..Default::default()
    };
    let request = || {
        GenerateRequest::new("a fox")
            .model("black-forest-labs/FLUX.1-schnell:hf-inference")
            .params(params.clone())
    };
    let builder = || {
        MediaGenerator::builder()
            .token(CANARY)
            .hub_url(running.url())
            .router_url(running.url())
            .retry(fast_retry())
            .sink(Arc::new(hf_media::MemorySink::new()))
    };

    // The per-call request timeout: a provider slower than it.
    emulator.set_behaviour(
        "hf-inference",
        ProviderBehaviour::default().with_latency(Duration::from_secs(3)),
    );
    let generator = builder().request_timeout(Duration::from_millis(200)).build().unwrap();
    let events = collect(generator.generate(request())).await;
    let Some(GenerationEvent::Error {
        error: Error::AllProvidersFailed { attempts, .. },
        ..
    }) = events.iter().find(|e| matches!(e, GenerationEvent::Error { .. }))
    else {
        panic!("{events:#?}");
    };
    assert_eq!(attempts.len(), 3, "request timeouts are retried: {attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|a| a.kind == "timeout" && a.message.contains("request timeout")),
        "{attempts:?}"
    );

    // The overall deadline of a generation.
    let generator = builder()
        .generation_timeout(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    let started = Instant::now();
    let events = collect(generator.generate(request())).await;
    let error = events.iter().find_map(|e| match e {
        GenerationEvent::Error { error, .. } => Some(error),
        _ => None,
    });
    assert!(matches!(error, Some(Error::Timeout { .. })), "{events:#?}");
    assert!(error.unwrap().to_string().contains("overall deadline"));
    assert!(started.elapsed() < Duration::from_secs(2));

    // The overall deadline keeps the tries made before it.
    emulator.set_behaviour(
        "hf-inference",
        ProviderBehaviour::default()
            .with_latency(Duration::from_secs(3))
            .with_fault(FaultRule::times(
                Fault::Status {
                    status: 503,
                    body: None,
                },
                1,
            )),
    );
    let generator = builder()
        .generation_timeout(Some(Duration::from_millis(500)))
        .build()
        .unwrap();
    let events = collect(generator.generate(request())).await;
    let error = events.iter().find_map(|e| match e {
        GenerationEvent::Error { error, .. } => Some(error),
        _ => None,
    });
    match error {
        Some(Error::Timeout { attempts, .. }) => {
            assert_eq!(attempts.len(), 1, "{attempts:?}");
            assert_eq!(
                (attempts[0].provider.as_str(), attempts[0].status),
                ("hf-inference", Some(503))
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(error.unwrap().to_string().contains("hf-inference (HTTP 503)"));

    // The polling deadline of a job that never completes.
    emulator.set_behaviour("fal-ai", ProviderBehaviour::default().with_pending_polls(1000));
    let generator = builder()
        .poll(PollConfig {
            interval: Duration::from_millis(10),
            deadline: Duration::from_millis(200),
        })
        .build()
        .unwrap();
    let events = collect(
        generator.generate(
            GenerateRequest::new("a fox")
                .model("black-forest-labs/FLUX.1-schnell:fal-ai")
                .params(params.clone()),
        ),
    )
    .await;
    let Some(GenerationEvent::Error {
        error: Error::AllProvidersFailed { attempts, .. },
        ..
    }) = events.iter().find(|e| matches!(e, GenerationEvent::Error { .. }))
    else {
        panic!("{events:#?}");
    };
    assert_eq!(attempts.len(), 1, "an expired polling deadline is final: {attempts:?}");
    assert_eq!(attempts[0].kind, "timeout");
    assert!(attempts[0].message.contains("waiting for fal job"), "{attempts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_download_is_fetched_again_without_submitting_a_second_job() {
    let emulator = Emulator::new();
    let running = emulator.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    emulator.set_behaviour(
        "fal-ai",
        ProviderBehaviour::default().with_fault(
            FaultRule::times(
                Fault::Status {
                    status: 502,
                    body: None,
                },
                2,
            )
            .on(FaultTarget::Download),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let params = GenerationParams {
        width: Some(48),
        height: Some(48),
        ..Default::default()
    };
    let request = GenerateRequest::new("a fox")
        .model("black-forest-labs/FLUX.1-schnell:fal-ai")
        .params(params);
    let events = collect(generator(&running, dir.path()).generate(request)).await;
    check(&events, Outcome::SuccessAfterRetry, "download retried");
    let stats = emulator.stats();
    assert_eq!(stats.get("fal-ai submit"), Some(&1), "one paid job only: {stats:?}");
    assert_eq!(stats.get("download"), Some(&3), "{stats:?}");
}
