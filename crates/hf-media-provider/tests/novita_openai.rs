//! novita's asynchronous videos API and the configurable OpenAI-compatible images provider, against wiremock.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hf_media_provider::providers::{Novita, OpenAiCompatible, ResponseFormat};
use hf_media_provider::{
    AuthScheme, GenerationParams, GenerationRequest, MediaBody, MediaProvider, PollConfig, ProviderContext,
    ProviderError, ProviderMapping, ProviderNotice, ProviderStatus, Task,
};
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DEADLINE: Duration = Duration::from_secs(2);

fn routed(server: &MockServer, provider: &str, token: &str, deadline: Duration) -> ProviderContext {
    ProviderContext::routed(
        reqwest::Client::new(),
        &Url::parse(&server.uri()).unwrap(),
        provider,
        Some(token.to_owned().into()),
    )
    .with_poll(PollConfig {
        interval: Duration::from_millis(5),
        deadline,
    })
}

// ---------------------------------------------------------------- novita

const NOVITA_ID: &str = "wan-t2v";
const SUBMIT: &str = "/novita/v3/async/wan-t2v";
const RESULT: &str = "/novita/v3/async/task-result";

fn novita_request() -> GenerationRequest {
    GenerationRequest {
        mapping: ProviderMapping::new("novita", NOVITA_ID, Task::TextToVideo, "Wan-AI/Wan2.1-T2V-14B"),
        prompt: "a fox running".into(),
        params: GenerationParams {
            num_inference_steps: Some(20),
            ..Default::default()
        },
        images: Vec::new(),
    }
}

async fn mount_novita_submit(server: &MockServer, answer: Value) {
    Mock::given(method("POST"))
        .and(path(SUBMIT))
        .and(header("authorization", "Bearer hf_test"))
        .and(body_partial_json(json!({"prompt": "a fox running", "steps": 20})))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(1)
        .mount(server)
        .await;
}

fn task(status: &str) -> Value {
    json!({"task": {"task_id": "t1", "status": status, "reason": "", "progress_percent": 10}, "videos": []})
}

#[tokio::test]
async fn novita_task_is_polled_from_queued_to_succeeded() {
    let server = MockServer::start().await;
    mount_novita_submit(&server, json!({"task_id": "t1"})).await;
    Mock::given(method("GET"))
        .and(path(RESULT))
        .and(query_param("task_id", "t1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(task("TASK_STATUS_QUEUED")))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(RESULT))
        .and(query_param("task_id", "t1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(task("TASK_STATUS_PROCESSING")))
        .up_to_n_times(2)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(RESULT))
        .and(query_param("task_id", "t1"))
        .and(header("authorization", "Bearer hf_test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "task": {"task_id": "t1", "status": "TASK_STATUS_SUCCEED", "progress_percent": 100},
            "videos": [{"video_url": "https://faas-output.novita.ai/t1.mp4", "video_type": "mp4"}]
        })))
        .with_priority(3)
        .mount(&server)
        .await;

    let states = Arc::new(Mutex::new(Vec::<ProviderStatus>::new()));
    let seen = Arc::clone(&states);
    let ctx = routed(&server, "novita", "hf_test", DEADLINE).with_reporter(Arc::new(move |notice| {
        if let ProviderNotice::Status(status) = notice {
            seen.lock().unwrap().push(status);
        }
    }));
    let output = Novita.generate(&ctx, novita_request()).await.unwrap();
    assert!(
        matches!(output.body, MediaBody::Url(ref u) if u.as_str() == "https://faas-output.novita.ai/t1.mp4"),
        "{:?}",
        output.body
    );
    assert_eq!(
        output.provider_response.unwrap()["task"]["status"],
        json!("TASK_STATUS_SUCCEED")
    );
    let states: Vec<String> = states.lock().unwrap().iter().map(|s| s.state.clone()).collect();
    assert_eq!(states, ["queued", "in_progress"]);
    let gets = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert_eq!(gets, 4);
}

#[tokio::test]
async fn novita_failed_task_is_job_failed_with_its_reason() {
    let server = MockServer::start().await;
    mount_novita_submit(&server, json!({"task_id": "t1"})).await;
    Mock::given(method("GET"))
        .and(path(RESULT))
        .and(query_param("task_id", "t1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "task": {"task_id": "t1", "status": "TASK_STATUS_FAILED", "reason": "content moderation"}
        })))
        .mount(&server)
        .await;
    let err = Novita
        .generate(&routed(&server, "novita", "hf_test", DEADLINE), novita_request())
        .await
        .unwrap_err();
    match err {
        ProviderError::JobFailed {
            provider,
            job_id,
            message,
        } => {
            assert_eq!((provider.as_str(), job_id.as_str()), ("novita", "t1"));
            assert_eq!(message, "content moderation");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn novita_submit_without_task_id_is_invalid_and_not_polled() {
    let server = MockServer::start().await;
    mount_novita_submit(&server, json!({"message": "ok"})).await;
    let err = Novita
        .generate(&routed(&server, "novita", "hf_test", DEADLINE), novita_request())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::InvalidResponse { .. }), "{err:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn novita_endless_processing_times_out() {
    let server = MockServer::start().await;
    mount_novita_submit(&server, json!({"task_id": "t1"})).await;
    Mock::given(method("GET"))
        .and(path(RESULT))
        .respond_with(ResponseTemplate::new(200).set_body_json(task("TASK_STATUS_PROCESSING")))
        .mount(&server)
        .await;
    let err = Novita
        .generate(
            &routed(&server, "novita", "hf_test", Duration::from_millis(60)),
            novita_request(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Timeout { ref provider, .. } if provider == "novita"),
        "{err:?}"
    );
}

#[tokio::test]
async fn novita_refuses_images() {
    let server = MockServer::start().await;
    let mut request = novita_request();
    request.mapping.task = Task::TextToImage;
    // The facade checks the task before it calls a provider, with the provider's facts.
    let _ = routed(&server, "novita", "hf_test", DEADLINE);
    let err = Novita.info().check_task(&request.mapping.task).unwrap_err();
    assert!(matches!(err, ProviderError::UnsupportedTask { .. }), "{err:?}");
    assert!(Novita.info().check_task(&Task::TextToVideo).is_ok());
}

// ---------------------------------------------------------------- openai-compatible

const NAME: &str = "my-images";

fn images_request() -> GenerationRequest {
    GenerationRequest {
        mapping: ProviderMapping::new(NAME, "flux-dev", Task::TextToImage, "org/model"),
        prompt: "a fox".into(),
        params: GenerationParams {
            width: Some(1024),
            height: Some(768),
            num_inference_steps: Some(20),
            negative_prompt: Some("blurry".into()),
            ..Default::default()
        },
        images: Vec::new(),
    }
}

/// The provider points at `own` (its own server).
fn images_provider(own: &MockServer) -> OpenAiCompatible {
    OpenAiCompatible::new(NAME, Url::parse(&own.uri()).unwrap())
}

/// The context its caller hands it: a direct one, at its own base, with its own key (if any).
fn direct(own: &MockServer, key: Option<&str>) -> ProviderContext {
    ProviderContext::direct(
        reqwest::Client::new(),
        Url::parse(&own.uri()).unwrap(),
        NAME,
        key.map(|k| k.to_owned().into()),
        AuthScheme::Bearer,
    )
}

#[tokio::test]
async fn openai_compatible_calls_its_own_server_with_its_own_key() {
    let own = MockServer::start().await;
    let router = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .and(body_partial_json(json!({
            "prompt": "a fox", "model": "flux-dev", "response_format": "b64_json", "n": 1,
            "size": "1024x768", "negative_prompt": "blurry", "num_inference_steps": 20
        })))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"created": 1, "data": [{"b64_json": "aGVsbG8="}]})),
        )
        .expect(1)
        .mount(&own)
        .await;
    // The router's context (its token, its extra headers) is not the one this provider is handed: its
    // caller builds a direct one, so none of the router's must reach this server.
    let _router_ctx = routed(&router, NAME, "hf_secret", DEADLINE).with_header(
        reqwest::header::HeaderName::from_static("x-hf-bill-to"),
        reqwest::header::HeaderValue::from_static("my-org"),
    );
    let ctx = direct(&own, Some("sk-test"));
    let output = images_provider(&own).generate(&ctx, images_request()).await.unwrap();
    match output.body {
        MediaBody::Bytes(bytes) => assert_eq!(bytes.as_ref(), b"hello"),
        other => panic!("expected bytes, got {other:?}"),
    }
    assert!(router.received_requests().await.unwrap().is_empty());
    let received = own.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let authorization: Vec<_> = received[0].headers.get_all("authorization").iter().collect();
    assert_eq!(authorization, ["Bearer sk-test"]);
    for (name, value) in &received[0].headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!value.contains("hf_secret"), "the HF token leaked in {name}: {value}");
    }
    assert!(received[0].headers.get("x-hf-bill-to").is_none());
    let sent: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert!(sent.get("width").is_none() && sent.get("height").is_none(), "{sent}");
}

#[tokio::test]
async fn openai_compatible_url_answers_are_urls() {
    let own = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .and(body_partial_json(json!({"response_format": "url"})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": [{"url": "https://cdn.example.com/x.png"}]})),
        )
        .expect(1)
        .mount(&own)
        .await;
    let router = MockServer::start().await;
    let provider = images_provider(&own).with_response_format(ResponseFormat::Url);
    let output = provider
        .generate(&direct(&own, Some("sk-test")), images_request())
        .await
        .unwrap();
    assert!(router.received_requests().await.unwrap().is_empty());
    assert!(
        matches!(output.body, MediaBody::Url(ref u) if u.as_str() == "https://cdn.example.com/x.png"),
        "{:?}",
        output.body
    );
}

#[tokio::test]
async fn openai_compatible_without_a_key_sends_no_authorization() {
    let own = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": "aGVsbG8="}]})))
        .mount(&own)
        .await;
    let router = MockServer::start().await;
    let provider = OpenAiCompatible::new(NAME, Url::parse(&own.uri()).unwrap());
    provider.generate(&direct(&own, None), images_request()).await.unwrap();
    assert!(router.received_requests().await.unwrap().is_empty());
    let received = own.received_requests().await.unwrap();
    assert!(received[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn openai_compatible_400_is_http_with_the_servers_message() {
    let own = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "size must be one of 256x256, 512x512", "type": "invalid_request_error"}
        })))
        .mount(&own)
        .await;
    let router = MockServer::start().await;
    let err = images_provider(&own)
        .generate(&direct(&own, Some("sk-test")), images_request())
        .await
        .unwrap_err();
    assert!(router.received_requests().await.unwrap().is_empty());
    match err {
        ProviderError::Http {
            ref provider,
            status,
            ref message,
            ..
        } => {
            assert_eq!(provider, NAME);
            assert_eq!(status, 400);
            assert_eq!(message, "size must be one of 256x256, 512x512");
        }
        ref other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_fallback());
}
