//! The submit request of each provider, as it reaches the wire, pinned with insta snapshots.
//!
//! Each test drives `generate` against wiremock (through the router layout `/{provider}/…`, except the
//! OpenAI-compatible provider, which calls its own server), takes the FIRST request the server received
//! (the submit), and snapshots its method, path, query, the protocol-relevant headers and the JSON body.
//! The `Authorization` value is checked in code, then written as `Bearer [token]`; nothing in a snapshot
//! depends on the mock server's port.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use hf_media_provider::providers::{Novita, Nscale, OpenAiCompatible, Together, WaveSpeed, ZaiOrg};
use hf_media_provider::{
    AuthScheme, GenerationParams, GenerationRequest, MediaProvider, PollConfig, ProviderContext, ProviderMapping, Task,
};
use serde_json::{Map, Value, json};
use url::Url;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The headers a snapshot shows, when present.
const SHOWN_HEADERS: [&str; 5] = [
    "content-type",
    "authorization",
    "prefer",
    "accept-language",
    "x-source-channel",
];

fn image_params() -> GenerationParams {
    GenerationParams {
        width: Some(1024),
        height: Some(768),
        num_inference_steps: Some(20),
        guidance_scale: Some(3.5),
        seed: Some(42),
        negative_prompt: Some("blurry".into()),
        ..Default::default()
    }
}

fn video_params() -> GenerationParams {
    GenerationParams {
        num_inference_steps: Some(20),
        guidance_scale: Some(5.0),
        seed: Some(42),
        negative_prompt: Some("blurry".into()),
        num_frames: Some(81),
        ..Default::default()
    }
}

fn request(provider: &str, provider_id: &str, task: Task, params: GenerationParams) -> GenerationRequest {
    GenerationRequest {
        mapping: ProviderMapping::new(provider, provider_id, task, "org/model"),
        prompt: "a red fox in the snow".into(),
        params,
        images: Vec::new(),
    }
}

fn routed(server: &MockServer, provider: &str) -> ProviderContext {
    ProviderContext::routed(
        reqwest::Client::new(),
        &Url::parse(&server.uri()).unwrap(),
        provider,
        Some("hf_test".to_owned().into()),
    )
    .with_poll(PollConfig {
        interval: Duration::from_millis(5),
        deadline: Duration::from_secs(2),
    })
}

/// Answers every POST with `submit` and every GET with `result`.
async fn answer(server: &MockServer, submit: Value, result: Value) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(submit))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(result))
        .mount(server)
        .await;
}

/// The first request `server` received, in snapshot form; its `Authorization` must be `authorization`.
async fn first_request(server: &MockServer, authorization: &str) -> Value {
    let received = server.received_requests().await.unwrap();
    let first = received.first().expect("the server received a request");
    let mut headers = Map::new();
    for name in SHOWN_HEADERS {
        let Some(value) = first.headers.get(name) else {
            continue;
        };
        let value = value.to_str().unwrap();
        let shown = if name == "authorization" {
            assert_eq!(value, authorization);
            "Bearer [token]"
        } else {
            value
        };
        headers.insert(name.into(), Value::from(shown));
    }
    assert!(headers.contains_key("authorization"), "no Authorization header");
    let body: Value = serde_json::from_slice(&first.body).unwrap();
    json!({
        "method": first.method.as_str(),
        "path": first.url.path(),
        "query": first.url.query(),
        "headers": headers,
        "body": body,
    })
}

#[tokio::test]
async fn nscale_image() {
    let server = MockServer::start().await;
    answer(&server, json!({"data": [{"b64_json": "aGVsbG8="}]}), json!({})).await;
    Nscale
        .generate(
            &routed(&server, "nscale"),
            request("nscale", "stabilityai/sdxl", Task::TextToImage, image_params()),
        )
        .await
        .unwrap();
    insta::assert_json_snapshot!(first_request(&server, "Bearer hf_test").await);
}

fn wavespeed_answers() -> (Value, Value) {
    (
        json!({"code": 200, "data": {"id": "p1", "status": "created",
            "urls": {"get": "https://api.wavespeed.ai/api/v3/predictions/p1/result"}}}),
        json!({"code": 200, "data": {"id": "p1", "status": "completed", "outputs": ["https://d.wavespeed.ai/p1"]}}),
    )
}

#[tokio::test]
async fn wavespeed_image() {
    let server = MockServer::start().await;
    let (submit, result) = wavespeed_answers();
    answer(&server, submit, result).await;
    WaveSpeed
        .generate(
            &routed(&server, "wavespeed"),
            request("wavespeed", "wavespeed-ai/flux-dev", Task::TextToImage, image_params()),
        )
        .await
        .unwrap();
    insta::assert_json_snapshot!(first_request(&server, "Bearer hf_test").await);
}

#[tokio::test]
async fn wavespeed_video() {
    let server = MockServer::start().await;
    let (submit, result) = wavespeed_answers();
    answer(&server, submit, result).await;
    WaveSpeed
        .generate(
            &routed(&server, "wavespeed"),
            request(
                "wavespeed",
                "wavespeed-ai/wan-2.1/t2v-480p",
                Task::TextToVideo,
                video_params(),
            ),
        )
        .await
        .unwrap();
    insta::assert_json_snapshot!(first_request(&server, "Bearer hf_test").await);
}

#[tokio::test]
async fn zai_org_image() {
    let server = MockServer::start().await;
    answer(
        &server,
        json!({"id": "t1", "task_status": "PROCESSING"}),
        json!({"id": "t1", "task_status": "SUCCESS", "image_result": [{"url": "https://cdn.z.ai/t1.png"}]}),
    )
    .await;
    ZaiOrg
        .generate(
            &routed(&server, "zai-org"),
            request("zai-org", "glm-image", Task::TextToImage, image_params()),
        )
        .await
        .unwrap();
    insta::assert_json_snapshot!(first_request(&server, "Bearer hf_test").await);
}

#[tokio::test]
async fn together_video() {
    let server = MockServer::start().await;
    answer(
        &server,
        json!({"id": "v1", "status": "queued"}),
        json!({"id": "v1", "status": "completed", "outputs": {"video_url": "https://cdn.together.ai/v1.mp4"}}),
    )
    .await;
    let params = GenerationParams {
        width: Some(832),
        height: Some(480),
        ..video_params()
    };
    Together
        .generate(
            &routed(&server, "together"),
            request("together", "Wan-AI/Wan2.2-T2V-A14B", Task::TextToVideo, params),
        )
        .await
        .unwrap();
    insta::assert_json_snapshot!(first_request(&server, "Bearer hf_test").await);
}

#[tokio::test]
async fn novita_video() {
    let server = MockServer::start().await;
    answer(
        &server,
        json!({"task_id": "t1"}),
        json!({"task": {"task_id": "t1", "status": "TASK_STATUS_SUCCEED"},
               "videos": [{"video_url": "https://faas-output.novita.ai/t1.mp4"}]}),
    )
    .await;
    Novita
        .generate(
            &routed(&server, "novita"),
            request("novita", "wan-t2v", Task::TextToVideo, video_params()),
        )
        .await
        .unwrap();
    insta::assert_json_snapshot!(first_request(&server, "Bearer hf_test").await);
}

#[tokio::test]
async fn openai_compatible_image() {
    let own = MockServer::start().await;
    let router = MockServer::start().await;
    answer(&own, json!({"data": [{"b64_json": "aGVsbG8="}]}), json!({})).await;
    // Like every provider called with its own key, it is handed a direct context by its caller.
    let own_url = Url::parse(&own.uri()).unwrap();
    let direct = ProviderContext::direct(
        reqwest::Client::new(),
        own_url.clone(),
        "my-images",
        Some("sk-test".to_owned().into()),
        AuthScheme::Bearer,
    );
    let _ = routed(&router, "my-images");
    OpenAiCompatible::new("my-images", own_url)
        .generate(
            &direct,
            request("my-images", "flux-dev", Task::TextToImage, image_params()),
        )
        .await
        .unwrap();
    assert!(router.received_requests().await.unwrap().is_empty());
    insta::assert_json_snapshot!(first_request(&own, "Bearer sk-test").await);
}
