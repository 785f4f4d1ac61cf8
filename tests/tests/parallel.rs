//! `n` generations in parallel: they overlap, share one Hub call, tick progress while waiting, and are
//! counted in the final `Done`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hf_media::{Error, FileSink, GenerateRequest, MAX_GENERATIONS, MediaLocation, MemorySink};
use hf_media_tests::*;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const DELAY: Duration = Duration::from_millis(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_generations_run_at_the_same_time() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, json!({ "hf-inference": live(MODEL, "text-to-image") })).await;
    Mock::given(method("POST"))
        .and(path(format!("/hf-inference/models/{MODEL}")))
        .respond_with(bytes_response(png(), "image/png").set_delay(DELAY))
        .expect(8)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let generator = generator(&server, Arc::new(FileSink::new(dir.path())));

    let started = Instant::now();
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL).n(8))).await;
    let elapsed = started.elapsed();

    assert!(elapsed >= DELAY, "each generation waits for the provider: {elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(1800),
        "8 × {DELAY:?} in parallel took {elapsed:?}: the generations did not overlap"
    );
    let all = media(&events);
    assert_eq!(all.len(), 8);
    let tasks: BTreeSet<usize> = all.iter().map(|m| m.task).collect();
    assert_eq!(tasks, (0..8).collect(), "each task index once");
    let paths: BTreeSet<_> = all
        .iter()
        .map(|m| match &m.location {
            MediaLocation::File(path) => path.clone(),
            other => panic!("expected a file, got {other:?}"),
        })
        .collect();
    assert_eq!(paths.len(), 8, "8 distinct files");
    for path in &paths {
        assert_eq!(std::fs::read(path).unwrap(), png());
        assert!(path.with_extension("json").is_file(), "sidecar of {}", path.display());
    }
    assert_eq!(dir_files(dir.path()).len(), 16, "8 media + 8 sidecars, nothing else");

    let ticks = progress(&events);
    assert!(ticks.len() >= 3, "progress ticks every 50 ms while waiting: {ticks:?}");
    assert!(ticks.iter().all(|&(done, total)| total == 8 && done <= 8), "{ticks:?}");
    assert!(
        ticks.windows(2).all(|w| w[0].0 <= w[1].0),
        "done never goes down: {ticks:?}"
    );
    assert_eq!(ticks[0], (0, 8), "nothing is done at the first tick");
    assert_eq!(done(&events), (8, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn done_counts_successes_and_failures() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, json!({ "hf-inference": live(MODEL, "text-to-image") })).await;
    // Two slow successes, then quick 402s for the others.
    let answers = Sequence::new(vec![
        bytes_response(png(), "image/png").set_delay(Duration::from_millis(400)),
        bytes_response(png(), "image/png").set_delay(Duration::from_millis(400)),
        ResponseTemplate::new(402).set_body_json(json!({"error": "You have exceeded your monthly included credits"})),
    ]);
    Mock::given(method("POST"))
        .and(path(format!("/hf-inference/models/{MODEL}")))
        .respond_with(answers)
        .expect(4)
        .mount(&server)
        .await;
    let sink = MemorySink::new();
    let generator = generator(&server, Arc::new(sink.clone()));
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL).n(4))).await;

    assert_eq!(done(&events), (2, 2));
    assert_eq!(media(&events).len(), 2);
    assert_eq!(sink.len(), 2);
    let failed: BTreeSet<usize> = errors(&events)
        .iter()
        .map(|(task, _)| task.expect("a task's own error"))
        .collect();
    let succeeded: BTreeSet<usize> = media(&events).iter().map(|m| m.task).collect();
    assert_eq!(failed.len(), 2);
    assert!(failed.is_disjoint(&succeeded));
    for (_, error) in errors(&events) {
        assert_eq!(error.kind(), "all_providers_failed");
    }
    // The failures finish first: a tick shows them done while the successes are still pending.
    let ticks = progress(&events);
    assert!(ticks.contains(&(2, 4)), "{ticks:?}");
}

#[tokio::test]
async fn generate_all_returns_each_outcome_in_task_order() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, json!({ "hf-inference": live(MODEL, "text-to-image") })).await;
    Mock::given(method("POST"))
        .and(path(format!("/hf-inference/models/{MODEL}")))
        .respond_with(bytes_response(png(), "image/png"))
        .expect(3)
        .mount(&server)
        .await;
    let generator = generator(&server, Arc::new(MemorySink::new()));
    let outcomes = generator
        .generate_all(GenerateRequest::new(PROMPT).model(MODEL).n(3))
        .await;
    assert_eq!(outcomes.len(), 3);
    for (i, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome.as_ref().unwrap().task, i);
    }
}

#[tokio::test]
async fn the_hub_mapping_is_asked_once_per_model() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, json!({ "hf-inference": live(MODEL, "text-to-image") })).await;
    Mock::given(method("POST"))
        .and(path(format!("/hf-inference/models/{MODEL}")))
        .respond_with(bytes_response(png(), "image/png"))
        .expect(5)
        .mount(&server)
        .await;
    let sink = MemorySink::new();
    let generator = generator(&server, Arc::new(sink.clone()));
    let first = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL).n(3))).await;
    let second = collect(
        generator
            .clone()
            .generate(GenerateRequest::new("another prompt").model(MODEL).n(2)),
    )
    .await;
    assert_eq!(done(&first), (3, 0));
    assert_eq!(done(&second), (2, 0));
    assert_eq!(sink.len(), 5);
}

#[tokio::test]
async fn n_out_of_range_is_refused_before_any_call() {
    let server = start_server().await;
    let generator = generator(&server, Arc::new(MemorySink::new()));
    for n in [0, MAX_GENERATIONS + 1] {
        let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL).n(n))).await;
        let error = single_error(&events);
        assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
        assert!(error.is_usage());
        assert!(error.to_string().contains(&MAX_GENERATIONS.to_string()), "{error}");
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_one_hub_call() {
    let server = start_server().await;
    hub_route(MODEL)
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(hub_answer(
                    MODEL,
                    json!({ "hf-inference": live(MODEL, "text-to-image") }),
                ))
                .set_delay(Duration::from_millis(200)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/hf-inference/models/{MODEL}")))
        .respond_with(bytes_response(png(), "image/png"))
        .expect(4)
        .mount(&server)
        .await;
    let sink = MemorySink::new();
    let generator = generator(&server, Arc::new(sink.clone()));
    let (a, b) = tokio::join!(
        collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL).n(2))),
        collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL).n(2))),
    );
    assert_eq!(done(&a), (2, 0));
    assert_eq!(done(&b), (2, 0));
    assert_eq!(sink.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_bounds_how_many_run_at_once() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, json!({ "hf-inference": live(MODEL, "text-to-image") })).await;
    let delay = Duration::from_millis(300);
    Mock::given(method("POST"))
        .and(path(format!("/hf-inference/models/{MODEL}")))
        .respond_with(bytes_response(png(), "image/png").set_delay(delay))
        .expect(6)
        .mount(&server)
        .await;
    let generator = generator(&server, Arc::new(MemorySink::new()));
    let started = Instant::now();
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL).n(6).concurrency(2))).await;
    let elapsed = started.elapsed();
    assert_eq!(done(&events), (6, 0));
    // Three waves of two: at least 3 × the delay, well under 6 × it.
    assert!(elapsed >= delay * 3, "more than 2 ran at once: {elapsed:?}");
    assert!(elapsed < delay * 5, "the waves did not overlap pairwise: {elapsed:?}");

    let refused = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL).concurrency(0))).await;
    assert_eq!(errors(&refused)[0].1.kind(), "invalid_request");
}
