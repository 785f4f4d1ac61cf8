//! nscale, wavespeed and zai-org against wiremock, driven through the trait alone.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use hf_media_provider::providers::{Nscale, WaveSpeed, ZaiOrg};
use hf_media_provider::{
    GenerationParams, GenerationRequest, MediaBody, MediaProvider, PollConfig, ProviderContext, ProviderError,
    ProviderMapping, Task,
};
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn request(provider: &str, provider_id: &str, task: Task) -> GenerationRequest {
    GenerationRequest {
        mapping: ProviderMapping::new(provider, provider_id, task, "org/model"),
        prompt: "a fox".into(),
        params: GenerationParams {
            width: Some(1024),
            height: Some(768),
            num_inference_steps: Some(20),
            ..Default::default()
        },
        images: Vec::new(),
    }
}

fn context(server: &MockServer, provider: &str, deadline: Duration) -> ProviderContext {
    ProviderContext::routed(
        reqwest::Client::new(),
        &Url::parse(&server.uri()).unwrap(),
        provider,
        Some("hf_test".to_owned().into()),
    )
    .with_poll(PollConfig {
        interval: Duration::from_millis(5),
        deadline,
    })
}

const DEADLINE: Duration = Duration::from_secs(2);

fn url_of(body: &MediaBody) -> &str {
    match body {
        MediaBody::Url(url) => url.as_str(),
        other => panic!("expected a URL, got {other:?}"),
    }
}

// ---------------------------------------------------------------- nscale

#[tokio::test]
async fn nscale_sends_size_and_decodes_base64() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/nscale/v1/images/generations"))
        .and(header("authorization", "Bearer hf_test"))
        .and(body_partial_json(json!({
            "prompt": "a fox", "model": "stabilityai/sdxl", "response_format": "b64_json", "size": "1024x768"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": "aGVsbG8="}]})))
        .expect(1)
        .mount(&server)
        .await;
    let output = Nscale
        .generate(
            &context(&server, "nscale", DEADLINE),
            request("nscale", "stabilityai/sdxl", Task::TextToImage),
        )
        .await
        .unwrap();
    match output.body {
        MediaBody::Bytes(bytes) => assert_eq!(bytes.as_ref(), b"hello"),
        other => panic!("expected bytes, got {other:?}"),
    }
    let sent: Value = serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert!(sent.get("width").is_none() && sent.get("height").is_none(), "{sent}");
    assert!(sent.get("num_inference_steps").is_none(), "{sent}");
}

#[tokio::test]
async fn nscale_malformed_answer_is_invalid() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/nscale/v1/images/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .mount(&server)
        .await;
    let err = Nscale
        .generate(
            &context(&server, "nscale", DEADLINE),
            request("nscale", "stabilityai/sdxl", Task::TextToImage),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::InvalidResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn nscale_refuses_videos() {
    let server = MockServer::start().await;
    // The facade checks the task before it calls a provider, with the provider's facts.
    let _ = context(&server, "nscale", DEADLINE);
    let err = Nscale
        .info()
        .check_task(&request("nscale", "x", Task::TextToVideo).mapping.task)
        .unwrap_err();
    assert!(matches!(err, ProviderError::UnsupportedTask { .. }), "{err:?}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

// ---------------------------------------------------------------- wavespeed

const WS_ID: &str = "wavespeed-ai/flux-schnell";

fn ws_submit(id: &str, status: &str) -> Value {
    json!({"code": 200, "message": "success", "data": {
        "id": id, "status": status,
        "urls": {"get": format!("https://api.wavespeed.ai/api/v3/predictions/{id}/result")}
    }})
}

async fn mount_ws_submit(server: &MockServer, answer: Value) {
    Mock::given(method("POST"))
        .and(path(format!("/wavespeed/api/v3/{WS_ID}")))
        .and(header("authorization", "Bearer hf_test"))
        .and(body_partial_json(
            json!({"prompt": "a fox", "width": 1024, "height": 768}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn wavespeed_polls_the_rebased_result_url_until_completed() {
    let server = MockServer::start().await;
    mount_ws_submit(&server, ws_submit("p1", "created")).await;
    Mock::given(method("GET"))
        .and(path("/wavespeed/api/v3/predictions/p1/result"))
        .and(header("authorization", "Bearer hf_test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"code": 200, "data": {
            "id": "p1", "status": "processing", "outputs": []}})))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wavespeed/api/v3/predictions/p1/result"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"code": 200, "data": {
            "id": "p1", "status": "completed", "outputs": ["https://d.wavespeed.ai/p1.mp4"]}})))
        .mount(&server)
        .await;
    let output = WaveSpeed
        .generate(
            &context(&server, "wavespeed", DEADLINE),
            request("wavespeed", WS_ID, Task::TextToVideo),
        )
        .await
        .unwrap();
    assert_eq!(url_of(&output.body), "https://d.wavespeed.ai/p1.mp4");
    let gets = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert_eq!(gets, 3);
}

#[tokio::test]
async fn wavespeed_completed_submit_is_returned_directly() {
    let server = MockServer::start().await;
    let mut answer = ws_submit("p2", "completed");
    answer["data"]["outputs"] = json!(["https://d.wavespeed.ai/p2.png"]);
    mount_ws_submit(&server, answer).await;
    let output = WaveSpeed
        .generate(
            &context(&server, "wavespeed", DEADLINE),
            request("wavespeed", WS_ID, Task::TextToImage),
        )
        .await
        .unwrap();
    assert_eq!(url_of(&output.body), "https://d.wavespeed.ai/p2.png");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn wavespeed_failed_job_is_job_failed() {
    let server = MockServer::start().await;
    mount_ws_submit(&server, ws_submit("p3", "processing")).await;
    Mock::given(method("GET"))
        .and(path("/wavespeed/api/v3/predictions/p3/result"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"code": 200, "data": {
            "id": "p3", "status": "failed", "error": "NSFW content"}})))
        .mount(&server)
        .await;
    let err = WaveSpeed
        .generate(
            &context(&server, "wavespeed", DEADLINE),
            request("wavespeed", WS_ID, Task::TextToImage),
        )
        .await
        .unwrap_err();
    match err {
        ProviderError::JobFailed { job_id, message, .. } => {
            assert_eq!(job_id, "p3");
            assert_eq!(message, "NSFW content");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn wavespeed_submit_without_urls_is_invalid() {
    let server = MockServer::start().await;
    mount_ws_submit(&server, json!({"code": 200, "data": {"id": "p4"}})).await;
    let err = WaveSpeed
        .generate(
            &context(&server, "wavespeed", DEADLINE),
            request("wavespeed", WS_ID, Task::TextToImage),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::InvalidResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn wavespeed_endless_processing_times_out() {
    let server = MockServer::start().await;
    mount_ws_submit(&server, ws_submit("p5", "created")).await;
    Mock::given(method("GET"))
        .and(path("/wavespeed/api/v3/predictions/p5/result"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"code": 200, "data": {
            "id": "p5", "status": "processing"}})))
        .mount(&server)
        .await;
    let err = WaveSpeed
        .generate(
            &context(&server, "wavespeed", Duration::from_millis(60)),
            request("wavespeed", WS_ID, Task::TextToImage),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err:?}");
}

// ---------------------------------------------------------------- zai-org

/// Both zai extra headers, compared whole (wiremock's `header` matcher splits values on commas).
fn zai_headers(request: &Request) -> bool {
    let value = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
    value("accept-language") == Some("en-US,en") && value("x-source-channel") == Some("hugging_face")
}

const ZAI_SUBMIT: &str = "/zai-org/api/paas/v4/async/images/generations";

async fn mount_zai_submit(server: &MockServer, answer: Value) {
    Mock::given(method("POST"))
        .and(path(ZAI_SUBMIT))
        .and(header("authorization", "Bearer hf_test"))
        .and(zai_headers)
        .and(body_partial_json(
            json!({"model": "glm-image", "prompt": "a fox", "size": "1024x768"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn zai_polls_with_its_headers_until_success() {
    let server = MockServer::start().await;
    mount_zai_submit(
        &server,
        json!({"id": "t1", "request_id": "r", "task_status": "PROCESSING"}),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/zai-org/api/paas/v4/async-result/t1"))
        .and(header("authorization", "Bearer hf_test"))
        .and(zai_headers)
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "t1", "task_status": "PROCESSING"})))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/zai-org/api/paas/v4/async-result/t1"))
        .and(zai_headers)
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "t1", "task_status": "SUCCESS",
            "image_result": [{"url": "https://cdn.z.ai/t1.png"}]})),
        )
        .mount(&server)
        .await;
    let output = ZaiOrg
        .generate(
            &context(&server, "zai-org", DEADLINE),
            request("zai-org", "glm-image", Task::TextToImage),
        )
        .await
        .unwrap();
    assert_eq!(url_of(&output.body), "https://cdn.z.ai/t1.png");
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 4);
    let sent: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert!(sent.get("width").is_none() && sent.get("height").is_none(), "{sent}");
}

#[tokio::test]
async fn zai_success_on_submit_is_returned_directly() {
    let server = MockServer::start().await;
    mount_zai_submit(
        &server,
        json!({"id": "t2", "task_status": "SUCCESS",
        "image_result": [{"url": "https://cdn.z.ai/t2.png"}]}),
    )
    .await;
    let output = ZaiOrg
        .generate(
            &context(&server, "zai-org", DEADLINE),
            request("zai-org", "glm-image", Task::TextToImage),
        )
        .await
        .unwrap();
    assert_eq!(url_of(&output.body), "https://cdn.z.ai/t2.png");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn zai_fail_is_job_failed_on_submit_and_on_poll() {
    let server = MockServer::start().await;
    mount_zai_submit(&server, json!({"id": "t3", "task_status": "FAIL"})).await;
    let err = ZaiOrg
        .generate(
            &context(&server, "zai-org", DEADLINE),
            request("zai-org", "glm-image", Task::TextToImage),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::JobFailed { ref job_id, .. } if job_id == "t3"),
        "{err:?}"
    );

    let server = MockServer::start().await;
    mount_zai_submit(&server, json!({"id": "t4", "task_status": "PROCESSING"})).await;
    Mock::given(method("GET"))
        .and(path("/zai-org/api/paas/v4/async-result/t4"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "t4", "task_status": "FAIL"})))
        .mount(&server)
        .await;
    let err = ZaiOrg
        .generate(
            &context(&server, "zai-org", DEADLINE),
            request("zai-org", "glm-image", Task::TextToImage),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::JobFailed { ref job_id, .. } if job_id == "t4"),
        "{err:?}"
    );
}

#[tokio::test]
async fn zai_malformed_answers_are_invalid() {
    let server = MockServer::start().await;
    mount_zai_submit(&server, json!({"task_status": "PROCESSING"})).await;
    let err = ZaiOrg
        .generate(
            &context(&server, "zai-org", DEADLINE),
            request("zai-org", "glm-image", Task::TextToImage),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::InvalidResponse { .. }), "{err:?}");

    let server = MockServer::start().await;
    mount_zai_submit(&server, json!({"id": "t5", "task_status": "PROCESSING"})).await;
    Mock::given(method("GET"))
        .and(path("/zai-org/api/paas/v4/async-result/t5"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "t5", "task_status": "SUCCESS"})))
        .mount(&server)
        .await;
    let err = ZaiOrg
        .generate(
            &context(&server, "zai-org", DEADLINE),
            request("zai-org", "glm-image", Task::TextToImage),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::InvalidResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn zai_endless_processing_times_out() {
    let server = MockServer::start().await;
    mount_zai_submit(&server, json!({"id": "t6", "task_status": "PROCESSING"})).await;
    Mock::given(method("GET"))
        .and(path("/zai-org/api/paas/v4/async-result/t6"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "t6", "task_status": "PROCESSING"})))
        .mount(&server)
        .await;
    let err = ZaiOrg
        .generate(
            &context(&server, "zai-org", Duration::from_millis(60)),
            request("zai-org", "glm-image", Task::TextToImage),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err:?}");
}
