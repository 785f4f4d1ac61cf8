//! fal-ai's queue against wiremock, driven through the trait alone.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use hf_media_provider::providers::FalAi;
use hf_media_provider::{
    GenerationParams, GenerationRequest, MediaProvider, PollConfig, ProviderContext, ProviderError, ProviderMapping,
    Task,
};
use serde_json::json;
use url::Url;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn request() -> GenerationRequest {
    GenerationRequest {
        mapping: ProviderMapping::new(
            "fal-ai",
            "fal-ai/flux/dev",
            Task::TextToImage,
            "black-forest-labs/FLUX.1-dev",
        ),
        prompt: "a fox".into(),
        params: GenerationParams::default(),
        images: Vec::new(),
    }
}

fn context(server: &MockServer) -> ProviderContext {
    ProviderContext::routed(
        reqwest::Client::new(),
        &Url::parse(&server.uri()).unwrap(),
        "fal-ai",
        None,
    )
    .with_poll(PollConfig {
        interval: Duration::from_millis(5),
        deadline: Duration::from_secs(2),
    })
}

#[tokio::test]
async fn a_vanished_job_is_a_failed_job_not_an_unsupported_model() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/fal-ai/fal-ai/flux/dev"))
        .and(query_param("_subdomain", "queue"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "request_id": "gone1", "status": "IN_QUEUE",
            "response_url": "https://queue.fal.run/fal-ai/flux/requests/gone1"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/fal-ai/flux/requests/gone1/status"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"detail": "Request not found"})))
        .expect(1)
        .mount(&server)
        .await;
    let err = FalAi.generate(&context(&server), request()).await.unwrap_err();
    assert!(!err.is_model_not_supported(), "{err:?}");
    match err {
        ProviderError::JobFailed { job_id, message, .. } => {
            assert_eq!(job_id, "gone1");
            assert!(message.contains("Request not found"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_404_on_submit_is_model_not_supported() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_raw("404: Not Found", "text/plain"))
        .mount(&server)
        .await;
    let err = FalAi.generate(&context(&server), request()).await.unwrap_err();
    assert!(err.is_model_not_supported(), "{err:?}");
    assert_eq!(err.message(), "404: Not Found");
}

#[tokio::test]
async fn a_passing_failure_of_the_result_request_is_ridden_out_without_a_second_job() {
    use std::sync::{Arc, Mutex};

    use hf_media_provider::{MediaBody, ProviderNotice, RetryPolicy, RetryStage};

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "request_id": "r5", "response_url": "https://queue.fal.run/fal-ai/flux/requests/r5"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/fal-ai/flux/requests/r5/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETED"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/fal-ai/flux/requests/r5"))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/fal-ai/flux/requests/r5"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"images": [{"url": "https://fal.media/r5.png"}]})),
        )
        .with_priority(2)
        .expect(1)
        .mount(&server)
        .await;
    let notices = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&notices);
    // Retries off for the caller: a request of a job that is paid for still gets its tries.
    let ctx = context(&server)
        .with_retry(RetryPolicy::none())
        .with_reporter(Arc::new(move |notice| seen.lock().unwrap().push(notice)));
    let output = FalAi.generate(&ctx, request()).await.unwrap();
    assert!(matches!(output.body, MediaBody::Url(ref u) if u.as_str() == "https://fal.media/r5.png"));
    let retries: Vec<_> = notices
        .lock()
        .unwrap()
        .iter()
        .filter_map(|n| match n {
            ProviderNotice::Retry(r) => Some((r.stage, r.attempt, r.status)),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [(RetryStage::Poll, 1, Some(502))]);
}
