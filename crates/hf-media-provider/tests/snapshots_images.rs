//! The submit request of each provider's image-to-image and image-to-video protocol, as it reaches the
//! wire, pinned with insta snapshots: for one input image, and for several where the provider takes a list.
//!
//! Each test drives `generate` against wiremock (through the router layout `/{provider}/…`, except the
//! OpenAI-compatible provider, which calls its own server) and snapshots the FIRST request the server
//! received (the submit): method, path, query, the protocol-relevant headers and the body. Images are small
//! fixed PNGs (and one caller URL); in a snapshot every inline image (a `data:` URL, bare base64, raw bytes,
//! a multipart file) is replaced by its length and the SHA-256 of its bytes ([`redact`]), so snapshots stay
//! small and say which image went where. Multipart bodies are shown part by part.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hf_media_provider::providers::{FalAi, HfInference, OpenAiCompatible, Replicate, Together, WaveSpeed};
use hf_media_provider::{
    AuthScheme, GenerationParams, GenerationRequest, ImageOrigin, InputImage, MediaProvider, PollConfig,
    ProviderContext, ProviderMapping, Task,
};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use url::Url;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A 2×2 red PNG (73 bytes).
const RED_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR42mO4o6EBRAwQCgAjrgSxd194GgAAAABJRU5ErkJggg==";
/// A 2×2 blue PNG (73 bytes).
const BLUE_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR42mPQ0LgDRAwQCgAeDgSxegx1QgAAAABJRU5ErkJggg==";
/// An image the caller gave as a URL: sent as that URL by every provider that takes URLs.
const CALLER_URL: &str = "https://images.example.com/cat.jpg";

/// The headers a snapshot shows, when present.
const SHOWN_HEADERS: [&str; 3] = ["content-type", "authorization", "prefer"];

fn png(base64: &str, name: &str) -> InputImage {
    let bytes = base64::engine::general_purpose::STANDARD.decode(base64).unwrap();
    InputImage::new(Bytes::from(bytes), "image/png", ImageOrigin::File(name.into()))
}

fn red() -> InputImage {
    png(RED_PNG, "red.png")
}

fn blue() -> InputImage {
    png(BLUE_PNG, "blue.png")
}

fn from_url() -> InputImage {
    InputImage::new(
        Bytes::from_static(b"\xff\xd8\xff\xe0 jpeg"),
        "image/jpeg",
        ImageOrigin::Url(Url::parse(CALLER_URL).unwrap()),
    )
}

fn image_params() -> GenerationParams {
    GenerationParams {
        width: Some(1024),
        height: Some(768),
        num_inference_steps: Some(28),
        guidance_scale: Some(2.5),
        strength: Some(0.8),
        seed: Some(42),
        ..Default::default()
    }
}

fn video_params() -> GenerationParams {
    GenerationParams {
        num_inference_steps: Some(30),
        guidance_scale: Some(5.0),
        seed: Some(42),
        num_frames: Some(81),
        ..Default::default()
    }
}

fn request(
    provider: &str,
    provider_id: &str,
    task: Task,
    images: Vec<InputImage>,
    params: GenerationParams,
) -> GenerationRequest {
    GenerationRequest {
        mapping: ProviderMapping::new(provider, provider_id, task, "org/model"),
        prompt: "make it snow".into(),
        params,
        images,
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

// ---------------------------------------------------------------------------------------------------------
// Redaction
// ---------------------------------------------------------------------------------------------------------

/// `[N bytes, sha256 <first 16 hex digits>]` of some bytes.
fn digest(bytes: &[u8]) -> String {
    let hash: String = Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{} bytes, sha256 {hash}", bytes.len())
}

/// The one redaction of inline images: a `data:` URL becomes `data:<type>;base64,[N characters: …]` and
/// bare base64 (64 characters or more) becomes `[base64, N characters: …]`, where `…` is [`digest`] of the
/// decoded bytes (which names the input image); everything else is kept as it is.
fn redact(value: &Value) -> Value {
    let decode = |text: &str| base64::engine::general_purpose::STANDARD.decode(text).ok();
    match value {
        Value::String(text) => {
            if let Some((head, data)) = text.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                if let Some(bytes) = decode(data) {
                    return Value::from(format!(
                        "data:{head};base64,[{} characters: {}]",
                        data.len(),
                        digest(&bytes)
                    ));
                }
            }
            match decode(text) {
                Some(bytes) if text.len() >= 64 => {
                    Value::from(format!("[base64, {} characters: {}]", text.len(), digest(&bytes)))
                }
                _ => value.clone(),
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), redact(v))).collect()),
        other => other.clone(),
    }
}

/// The digests the snapshots should show for the fixtures (so a reader can match them).
#[test]
fn the_fixture_digests() {
    assert_eq!(digest(red().bytes()), "73 bytes, sha256 71a448926e9ddef1");
    assert_eq!(digest(blue().bytes()), "73 bytes, sha256 e4368ffd6cf30fd1");
    assert_eq!(
        redact(&json!({"a": red().data_url(), "b": [blue().base64()], "c": "short", "d": CALLER_URL})),
        json!({"a": "data:image/png;base64,[100 characters: 73 bytes, sha256 71a448926e9ddef1]",
               "b": ["[base64, 100 characters: 73 bytes, sha256 e4368ffd6cf30fd1]"],
               "c": "short", "d": CALLER_URL})
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A multipart body, part by part: text parts as `{name, value}`, file parts as `{name, filename,
/// content_type, content: digest}`.
fn multipart_parts(content_type: &str, body: &[u8]) -> Value {
    let boundary = content_type.split("boundary=").nth(1).unwrap().trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = &body[find(body, delimiter.as_bytes()).unwrap() + delimiter.len()..];
    while !rest.starts_with(b"--") {
        let next = find(rest, delimiter.as_bytes()).unwrap();
        let part = &rest[..next];
        let part = part.strip_prefix(b"\r\n").unwrap().strip_suffix(b"\r\n").unwrap();
        let split = find(part, b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&part[..split]).unwrap();
        let content = &part[split + 4..];
        let mut shown = Map::new();
        let mut is_file = false;
        for line in head.split("\r\n") {
            let (name, value) = line.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for attribute in value.split(';').map(str::trim).skip(1) {
                        let (key, quoted) = attribute.split_once('=').unwrap();
                        is_file |= key == "filename";
                        shown.insert(key.into(), Value::from(quoted.trim_matches('"')));
                    }
                }
                "content-type" => {
                    shown.insert("content_type".into(), Value::from(value.trim()));
                }
                _ => {}
            }
        }
        let content = if is_file {
            digest(content)
        } else {
            String::from_utf8(content.to_vec()).unwrap()
        };
        shown.insert(if is_file { "content" } else { "value" }.into(), Value::from(content));
        parts.push(Value::Object(shown));
        rest = &rest[next + delimiter.len()..];
    }
    Value::Array(parts)
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
        let shown = match name {
            "authorization" => {
                assert_eq!(value, authorization);
                "Bearer [token]".to_owned()
            }
            "content-type" if value.starts_with("multipart/form-data") => {
                "multipart/form-data; boundary=[boundary]".to_owned()
            }
            _ => value.to_owned(),
        };
        headers.insert(name.into(), Value::from(shown));
    }
    assert!(headers.contains_key("authorization"), "no Authorization header");
    let content_type = first
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap())
        .unwrap_or("");
    let body = if content_type.starts_with("application/json") {
        redact(&serde_json::from_slice(&first.body).unwrap())
    } else if content_type.starts_with("multipart/form-data") {
        multipart_parts(content_type, &first.body)
    } else {
        json!({ "raw": digest(&first.body) })
    };
    json!({
        "method": first.method.as_str(),
        "path": first.url.path(),
        "query": first.url.query(),
        "headers": headers,
        "body": body,
    })
}

// ---------------------------------------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------------------------------------

/// fal's queue: the submit names job `f1` at `response_path`; status `COMPLETED`; the result is `result`.
async fn fal_answers(server: &MockServer, response_path: &str, result: Value) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "request_id": "f1", "status": "IN_QUEUE",
            "response_url": format!("https://queue.fal.run{response_path}")
        })))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("/status$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETED"})))
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(result))
        .with_priority(2)
        .mount(server)
        .await;
}

fn fal_image() -> Value {
    json!({"images": [{"url": "https://fal.media/f1.png"}]})
}

fn fal_video() -> Value {
    json!({"video": {"url": "https://fal.media/f1.mp4"}})
}

/// Answers every POST with `submit` and every GET with `result`.
async fn answer(server: &MockServer, status: u16, submit: Value, result: Value) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status).set_body_json(submit))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(result))
        .mount(server)
        .await;
}

async fn generate(provider: &dyn MediaProvider, server: &MockServer, request: GenerationRequest) -> Value {
    let ctx = routed(server, provider.name());
    provider.generate(&ctx, request).await.unwrap();
    first_request(server, "Bearer hf_test").await
}

// ---------------------------------------------------------------------------------------------------------
// fal-ai
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn fal_ai_image_to_image() {
    let server = MockServer::start().await;
    fal_answers(&server, "/fal-ai/flux-kontext/requests/f1", fal_image()).await;
    let request = request(
        "fal-ai",
        "fal-ai/flux-kontext/dev",
        Task::ImageToImage,
        vec![red()],
        image_params(),
    );
    insta::assert_json_snapshot!(generate(&FalAi, &server, request).await);
}

#[tokio::test]
async fn fal_ai_image_to_image_several() {
    let server = MockServer::start().await;
    fal_answers(&server, "/fal-ai/flux-2/requests/f1", fal_image()).await;
    let images = vec![red(), blue(), from_url()];
    let request = request(
        "fal-ai",
        "fal-ai/flux-2/edit",
        Task::ImageToImage,
        images,
        GenerationParams::default(),
    );
    insta::assert_json_snapshot!(generate(&FalAi, &server, request).await);
}

#[tokio::test]
async fn fal_ai_image_to_video() {
    let server = MockServer::start().await;
    fal_answers(&server, "/fal-ai/wan/requests/f1", fal_video()).await;
    let request = request(
        "fal-ai",
        "fal-ai/wan/v2.2-a14b/image-to-video",
        Task::ImageToVideo,
        vec![red(), blue()],
        video_params(),
    );
    insta::assert_json_snapshot!(generate(&FalAi, &server, request).await);
}

#[tokio::test]
async fn fal_ai_image_text_to_image_with_images() {
    let server = MockServer::start().await;
    fal_answers(&server, "/fal-ai/flux-2/requests/f1", fal_image()).await;
    let request = request(
        "fal-ai",
        "fal-ai/flux-2/edit",
        Task::ImageTextToImage,
        vec![red(), blue()],
        GenerationParams::default(),
    );
    insta::assert_json_snapshot!(generate(&FalAi, &server, request).await);
}

#[tokio::test]
async fn fal_ai_image_text_to_video_prompt_only() {
    let server = MockServer::start().await;
    fal_answers(&server, "/minimax/h3/requests/f1", fal_video()).await;
    let request = request(
        "fal-ai",
        "minimax/h3/image-to-video",
        Task::ImageTextToVideo,
        Vec::new(),
        GenerationParams::default(),
    );
    insta::assert_json_snapshot!(generate(&FalAi, &server, request).await);
}

// ---------------------------------------------------------------------------------------------------------
// replicate
// ---------------------------------------------------------------------------------------------------------

fn replicate_done() -> Value {
    json!({"id": "p1", "status": "succeeded", "output": "https://replicate.delivery/p1.png"})
}

#[tokio::test]
async fn replicate_image_to_image() {
    let server = MockServer::start().await;
    answer(&server, 201, replicate_done(), json!({})).await;
    let request = request(
        "replicate",
        "black-forest-labs/flux-kontext-dev",
        Task::ImageToImage,
        vec![red()],
        image_params(),
    );
    insta::assert_json_snapshot!(generate(&Replicate, &server, request).await);
}

#[tokio::test]
async fn replicate_image_to_image_several() {
    let server = MockServer::start().await;
    answer(&server, 201, replicate_done(), json!({})).await;
    let request = request(
        "replicate",
        "qwen/qwen-image-edit-plus",
        Task::ImageToImage,
        vec![red(), blue(), from_url()],
        GenerationParams::default(),
    );
    insta::assert_json_snapshot!(generate(&Replicate, &server, request).await);
}

// ---------------------------------------------------------------------------------------------------------
// together
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn together_image_to_image_kontext() {
    let server = MockServer::start().await;
    answer(&server, 200, json!({"data": [{"b64_json": "aGVsbG8="}]}), json!({})).await;
    let request = request(
        "together",
        "black-forest-labs/FLUX.1-kontext-dev",
        Task::ImageToImage,
        vec![red(), blue()],
        image_params(),
    );
    insta::assert_json_snapshot!(generate(&Together, &server, request).await);
}

#[tokio::test]
async fn together_image_to_image_reference_images() {
    let server = MockServer::start().await;
    answer(&server, 200, json!({"data": [{"b64_json": "aGVsbG8="}]}), json!({})).await;
    let request = request(
        "together",
        "black-forest-labs/FLUX.2-dev",
        Task::ImageToImage,
        vec![red(), blue(), from_url()],
        image_params(),
    );
    insta::assert_json_snapshot!(generate(&Together, &server, request).await);
}

#[tokio::test]
async fn together_image_to_video() {
    let server = MockServer::start().await;
    answer(
        &server,
        200,
        json!({"id": "v1", "status": "queued"}),
        json!({"id": "v1", "status": "completed", "outputs": {"video_url": "https://cdn.together.ai/v1.mp4"}}),
    )
    .await;
    let params = GenerationParams {
        width: Some(1920),
        height: Some(1080),
        ..video_params()
    };
    let request = request(
        "together",
        "Wan-AI/Wan2.2-I2V-A14B",
        Task::ImageToVideo,
        vec![red(), blue()],
        params,
    );
    insta::assert_json_snapshot!(generate(&Together, &server, request).await);
}

// ---------------------------------------------------------------------------------------------------------
// wavespeed
// ---------------------------------------------------------------------------------------------------------

async fn wavespeed_answers(server: &MockServer) {
    answer(
        server,
        200,
        json!({"code": 200, "data": {"id": "p1", "status": "created",
            "urls": {"get": "https://api.wavespeed.ai/api/v3/predictions/p1/result"}}}),
        json!({"code": 200, "data": {"id": "p1", "status": "completed", "outputs": ["https://d.wavespeed.ai/p1"]}}),
    )
    .await;
}

#[tokio::test]
async fn wavespeed_image_to_image() {
    let server = MockServer::start().await;
    wavespeed_answers(&server).await;
    let request = request(
        "wavespeed",
        "wavespeed-ai/flux-kontext-dev",
        Task::ImageToImage,
        vec![red()],
        image_params(),
    );
    insta::assert_json_snapshot!(generate(&WaveSpeed, &server, request).await);
}

#[tokio::test]
async fn wavespeed_image_to_image_several() {
    let server = MockServer::start().await;
    wavespeed_answers(&server).await;
    let request = request(
        "wavespeed",
        "wavespeed-ai/qwen-image/edit-plus",
        Task::ImageToImage,
        vec![red(), blue(), from_url()],
        GenerationParams::default(),
    );
    insta::assert_json_snapshot!(generate(&WaveSpeed, &server, request).await);
}

#[tokio::test]
async fn wavespeed_image_to_video() {
    let server = MockServer::start().await;
    wavespeed_answers(&server).await;
    let request = request(
        "wavespeed",
        "wavespeed-ai/wan-2.1/i2v-480p",
        Task::ImageToVideo,
        vec![red()],
        video_params(),
    );
    insta::assert_json_snapshot!(generate(&WaveSpeed, &server, request).await);
}

// ---------------------------------------------------------------------------------------------------------
// hf-inference
// ---------------------------------------------------------------------------------------------------------

async fn hf_inference_answers(server: &MockServer) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(b"\xff\xd8\xff".to_vec(), "image/jpeg"))
        .mount(server)
        .await;
}

#[tokio::test]
async fn hf_inference_image_to_image_raw() {
    let server = MockServer::start().await;
    hf_inference_answers(&server).await;
    let mut request = request(
        "hf-inference",
        "lllyasviel/sd-controlnet-canny",
        Task::ImageToImage,
        vec![red()],
        GenerationParams::default(),
    );
    request.prompt = String::new();
    insta::assert_json_snapshot!(generate(&HfInference, &server, request).await);
}

#[tokio::test]
async fn hf_inference_image_to_image_json() {
    let server = MockServer::start().await;
    hf_inference_answers(&server).await;
    let request = request(
        "hf-inference",
        "lllyasviel/sd-controlnet-canny",
        Task::ImageToImage,
        vec![red()],
        image_params(),
    );
    insta::assert_json_snapshot!(generate(&HfInference, &server, request).await);
}

// ---------------------------------------------------------------------------------------------------------
// openai-compatible
// ---------------------------------------------------------------------------------------------------------

async fn openai_edit(images: Vec<InputImage>) -> Value {
    let own = MockServer::start().await;
    answer(&own, 200, json!({"data": [{"b64_json": "aGVsbG8="}]}), json!({})).await;
    let own_url = Url::parse(&own.uri()).unwrap();
    let direct = ProviderContext::direct(
        reqwest::Client::new(),
        own_url.clone(),
        "my-images",
        Some("sk-test".to_owned().into()),
        AuthScheme::Bearer,
    );
    let params = GenerationParams {
        width: Some(1024),
        height: Some(1536),
        seed: Some(42),
        ..Default::default()
    };
    OpenAiCompatible::new("my-images", own_url)
        .generate(
            &direct,
            request("my-images", "gpt-image-1", Task::ImageToImage, images, params),
        )
        .await
        .unwrap();
    first_request(&own, "Bearer sk-test").await
}

#[tokio::test]
async fn openai_compatible_edit() {
    insta::assert_json_snapshot!(openai_edit(vec![red()]).await);
}

#[tokio::test]
async fn openai_compatible_edit_several() {
    insta::assert_json_snapshot!(openai_edit(vec![red(), blue()]).await);
}
