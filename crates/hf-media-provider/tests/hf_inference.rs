//! hf-inference against wiremock: raw and JSON answers, and the "model is loading" wait, which runs
//! through the one retry mechanism within the polling deadline.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hf_media_provider::providers::HfInference;
use hf_media_provider::{
    GenerationParams, GenerationRequest, MediaBody, MediaProvider, PollConfig, ProviderContext, ProviderError,
    ProviderMapping, ProviderNotice, RetryPolicy, RetryStage, Task,
};
use serde_json::json;
use url::Url;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ROUTE: &str = "/hf-inference/models/black-forest-labs/FLUX.1-dev";

fn request() -> GenerationRequest {
    GenerationRequest {
        mapping: ProviderMapping::new(
            "hf-inference",
            "black-forest-labs/FLUX.1-dev",
            Task::TextToImage,
            "black-forest-labs/FLUX.1-dev",
        ),
        prompt: "a fox".into(),
        params: GenerationParams {
            seed: Some(5),
            ..Default::default()
        },
        images: Vec::new(),
    }
}

/// A routed context whose notices are kept.
fn context(server: &MockServer, deadline: Duration) -> (ProviderContext, Arc<Mutex<Vec<ProviderNotice>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&notices);
    let ctx = ProviderContext::routed(
        reqwest::Client::new(),
        &Url::parse(&server.uri()).unwrap(),
        "hf-inference",
        Some("hf_test".to_owned().into()),
    )
    .with_poll(PollConfig {
        interval: Duration::from_millis(5),
        deadline,
    })
    .with_retry(RetryPolicy::none())
    .with_reporter(Arc::new(move |notice| seen.lock().unwrap().push(notice)));
    (ctx, notices)
}

fn loading() -> ResponseTemplate {
    ResponseTemplate::new(503).set_body_json(
        json!({"error": "Model black-forest-labs/FLUX.1-dev is currently loading", "estimated_time": 0.01}),
    )
}

#[tokio::test]
async fn raw_bytes_come_back_as_a_stream_with_the_seed_asked_for() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ROUTE))
        .and(header("authorization", "Bearer hf_test"))
        .and(body_partial_json(json!({"inputs": "a fox", "parameters": {"seed": 5}})))
        .respond_with(ResponseTemplate::new(200).set_body_raw(b"png".to_vec(), "image/png"))
        .expect(1)
        .mount(&server)
        .await;
    let (ctx, _) = context(&server, Duration::from_secs(2));
    let output = HfInference.generate(&ctx, request()).await.unwrap();
    assert!(matches!(output.body, MediaBody::Stream(_)));
    assert_eq!((output.mime.as_deref(), output.seed), (Some("image/png"), Some(5)));

    let json_server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": "aGVsbG8="}]})))
        .mount(&json_server)
        .await;
    let (ctx, _) = context(&json_server, Duration::from_secs(2));
    let output = HfInference.generate(&ctx, request()).await.unwrap();
    assert!(matches!(output.body, MediaBody::Bytes(ref b) if b.as_ref() == b"hello"));
}

#[tokio::test]
async fn a_loading_model_is_waited_for_and_each_wait_is_reported() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ROUTE))
        .respond_with(loading())
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ROUTE))
        .respond_with(ResponseTemplate::new(200).set_body_raw(b"png".to_vec(), "image/png"))
        .with_priority(2)
        .mount(&server)
        .await;
    let (ctx, notices) = context(&server, Duration::from_secs(5));
    HfInference.generate(&ctx, request()).await.unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    let notices = notices.lock().unwrap();
    let loading = notices
        .iter()
        .filter(|n| matches!(n, ProviderNotice::Status(s) if s.state == "loading"))
        .count();
    assert_eq!(loading, 2, "one `loading` status per loading answer");
    let retries: Vec<_> = notices
        .iter()
        .filter_map(|n| match n {
            ProviderNotice::Retry(r) => Some((r.stage, r.attempt, r.status, r.delay)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries,
        [
            (RetryStage::Loading, 1, Some(503), Duration::from_millis(100)),
            (RetryStage::Loading, 2, Some(503), Duration::from_millis(100)),
        ],
        "the estimate (at least 0.1 s) is the wait, whatever the retry policy's tries"
    );
}

#[tokio::test]
async fn a_model_that_never_loads_times_out_at_the_deadline() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(loading()).mount(&server).await;
    let (ctx, _) = context(&server, Duration::from_millis(350));
    let started = Instant::now();
    let err = HfInference.generate(&ctx, request()).await.unwrap_err();
    let waited = started.elapsed();
    match err {
        ProviderError::Timeout {
            ref provider,
            ref what,
            after,
        } => {
            assert_eq!(
                (provider.as_str(), what.as_str()),
                ("hf-inference", "waiting for the model to load")
            );
            assert!(after >= Duration::from_millis(350), "{after:?}");
        }
        ref other => panic!("unexpected {other:?}"),
    }
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    let tries = server.received_requests().await.unwrap().len();
    assert!(
        (3..=5).contains(&tries),
        "a try every 0.1 s until the deadline: {tries}"
    );
}

#[tokio::test]
async fn other_failures_are_left_to_the_caller() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"error": "overloaded"})))
        .mount(&server)
        .await;
    let (ctx, notices) = context(&server, Duration::from_secs(5));
    let err = HfInference.generate(&ctx, request()).await.unwrap_err();
    assert!(err.is_retryable() && err.status() == Some(503), "{err:?}");
    assert_eq!(err.message(), "overloaded");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "the caller's retry policy decides"
    );
    assert!(notices.lock().unwrap().is_empty());

    let missing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": "Model x does not exist"})))
        .mount(&missing)
        .await;
    let (ctx, _) = context(&missing, Duration::from_secs(5));
    let err = HfInference.generate(&ctx, request()).await.unwrap_err();
    assert!(err.is_model_not_supported(), "{err:?}");
    assert_eq!(err.message(), "Model x does not exist");
}
