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
