//! together's asynchronous videos API against wiremock.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use hf_media_provider::providers::Together;
use hf_media_provider::{
    GenerationParams, GenerationRequest, MediaBody, MediaProvider, PollConfig, ProviderContext, ProviderError,
    ProviderMapping, Task,
};
use serde_json::json;
use url::Url;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn request() -> GenerationRequest {
    GenerationRequest {
        mapping: ProviderMapping::new(
            "together",
            "Wan-AI/Wan2.2-T2V-A14B",
            Task::TextToVideo,
            "Wan-AI/Wan2.2-T2V-A14B",
        ),
        prompt: "a fox running".into(),
        params: GenerationParams::default(),
        images: Vec::new(),
    }
}

fn context(server: &MockServer, deadline: Duration) -> ProviderContext {
    ProviderContext::routed(
        reqwest::Client::new(),
        &Url::parse(&server.uri()).unwrap(),
        "together",
        Some("hf_test".to_owned().into()),
    )
    .with_poll(PollConfig {
        interval: Duration::from_millis(5),
        deadline,
    })
}

async fn mount_submit(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/together/v2/videos"))
        .and(header("authorization", "Bearer hf_test"))
        .and(body_partial_json(
            json!({"model": "Wan-AI/Wan2.2-T2V-A14B", "prompt": "a fox running"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "v1", "status": "queued"})))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_video_job_is_polled_until_completed() {
    let server = MockServer::start().await;
    mount_submit(&server).await;
    Mock::given(method("GET"))
        .and(path("/together/v2/videos/v1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "v1", "status": "in_progress"})))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/together/v2/videos/v1"))
        .and(header("authorization", "Bearer hf_test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "v1", "status": "completed", "outputs": {"video_url": "https://cdn.together.ai/v1.mp4"}}),
        ))
        .with_priority(2)
        .mount(&server)
        .await;
    let output = Together
        .generate(&context(&server, Duration::from_secs(2)), request())
        .await
        .unwrap();
    assert!(matches!(output.body, MediaBody::Url(ref u) if u.as_str() == "https://cdn.together.ai/v1.mp4"));
    let polls = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert_eq!(polls, 3);
}

#[tokio::test]
async fn a_failed_video_job_is_a_typed_failure_and_a_stuck_one_times_out() {
    let server = MockServer::start().await;
    mount_submit(&server).await;
    Mock::given(method("GET"))
        .and(path("/together/v2/videos/v1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "v1", "status": "failed", "error": {"message": "content policy"}})),
        )
        .mount(&server)
        .await;
    let err = Together
        .generate(&context(&server, Duration::from_secs(2)), request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::JobFailed { ref message, .. } if message == "content policy"),
        "{err:?}"
    );

    let stuck = MockServer::start().await;
    mount_submit(&stuck).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "v1", "status": "queued"})))
        .mount(&stuck)
        .await;
    let err = Together
        .generate(&context(&stuck, Duration::from_millis(100)), request())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn large_answers_are_parsed_whole_and_large_garbage_is_a_typed_error() {
    use base64::Engine as _;
    let server = MockServer::start().await;
    let image: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&image);
    Mock::given(method("POST"))
        .and(path("/together/v1/images/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": encoded}]})))
        .mount(&server)
        .await;
    let request = GenerationRequest {
        mapping: ProviderMapping::new("together", "black-forest-labs/FLUX.1-schnell", Task::TextToImage, "m/x"),
        prompt: "a fox".into(),
        params: GenerationParams::default(),
        images: Vec::new(),
    };
    let output = Together
        .generate(&context(&server, Duration::from_secs(2)), request.clone())
        .await
        .unwrap();
    assert!(matches!(output.body, MediaBody::Bytes(ref b) if b.as_ref() == image.as_slice()));

    let garbage = MockServer::start().await;
    let mut body = b"{\"data\": [".to_vec();
    body.resize(2 * 1024 * 1024, b' ');
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .mount(&garbage)
        .await;
    let err = Together
        .generate(&context(&garbage, Duration::from_secs(2)), request)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::InvalidResponse { ref provider, .. } if provider == "together"),
        "{err:?}"
    );
}
