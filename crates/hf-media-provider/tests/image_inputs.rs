//! The image-to-image and image-to-video protocols against wiremock, driven through the trait alone: each
//! provider's whole round trip (submit, poll, result), which tasks each one lists, the images a provider
//! that takes one leaves out (with a warning), and what is refused before anything is sent.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hf_media_provider::providers::{
    FalAi, HfInference, Novita, Nscale, OpenAiCompatible, Replicate, Together, WaveSpeed, ZaiOrg,
};
use hf_media_provider::{
    AuthScheme, DynMediaProvider, GenerationParams, GenerationRequest, ImageOrigin, InputImage, MediaBody,
    MediaProvider, PollConfig, ProviderContext, ProviderError, ProviderMapping, ProviderNotice, Task,
};
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const RED_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR42mO4o6EBRAwQCgAjrgSxd194GgAAAABJRU5ErkJggg==";
const BLUE_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR42mPQ0LgDRAwQCgAeDgSxegx1QgAAAABJRU5ErkJggg==";
const CALLER_URL: &str = "https://images.example.com/cat.jpg";

fn png(base64: &str) -> InputImage {
    let bytes = base64::engine::general_purpose::STANDARD.decode(base64).unwrap();
    InputImage::new(Bytes::from(bytes), "image/png", ImageOrigin::File("in.png".into()))
}

fn red() -> InputImage {
    png(RED_PNG)
}

fn blue() -> InputImage {
    png(BLUE_PNG)
}

/// An image the caller gave as an `http(s)` URL (its bytes were read by the caller, to check it).
fn from_url(bytes: Vec<u8>) -> InputImage {
    InputImage::new(
        Bytes::from(bytes),
        "image/jpeg",
        ImageOrigin::Url(Url::parse(CALLER_URL).unwrap()),
    )
}

fn request(provider: &str, provider_id: &str, task: Task, images: Vec<InputImage>) -> GenerationRequest {
    GenerationRequest {
        mapping: ProviderMapping::new(provider, provider_id, task, "org/model"),
        prompt: "make it snow".into(),
        params: GenerationParams::default(),
        images,
    }
}

type Notices = Arc<Mutex<Vec<ProviderNotice>>>;

/// A routed context whose notices are kept.
fn context(server: &MockServer, provider: &str) -> (ProviderContext, Notices) {
    let notices = Notices::default();
    let seen = Arc::clone(&notices);
    let ctx = ProviderContext::routed(
        reqwest::Client::new(),
        &Url::parse(&server.uri()).unwrap(),
        provider,
        Some("hf_test".to_owned().into()),
    )
    .with_poll(PollConfig {
        interval: Duration::from_millis(5),
        deadline: Duration::from_secs(2),
    })
    .with_reporter(Arc::new(move |notice| seen.lock().unwrap().push(notice)));
    (ctx, notices)
}

fn warnings(notices: &Notices) -> Vec<String> {
    notices
        .lock()
        .unwrap()
        .iter()
        .filter_map(|n| match n {
            ProviderNotice::Warning(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

fn url_of(body: &MediaBody) -> &str {
    match body {
        MediaBody::Url(url) => url.as_str(),
        other => panic!("expected a URL, got {other:?}"),
    }
}

async fn sent_body(server: &MockServer) -> Value {
    let received = server.received_requests().await.unwrap();
    serde_json::from_slice(&received[0].body).unwrap()
}

// ---------------------------------------------------------------- tasks

#[test]
fn each_provider_lists_the_image_tasks_it_serves_and_no_other() {
    use Task::*;
    let own = Url::parse("https://images.example.com").unwrap();
    let providers: Vec<(DynMediaProvider, Vec<Task>)> = vec![
        (
            Arc::new(FalAi),
            vec![ImageToImage, ImageToVideo, ImageTextToImage, ImageTextToVideo],
        ),
        (
            Arc::new(WaveSpeed),
            vec![ImageToImage, ImageToVideo, ImageTextToImage, ImageTextToVideo],
        ),
        (Arc::new(Together), vec![ImageToImage, ImageToVideo]),
        (Arc::new(Replicate), vec![ImageToImage]),
        (Arc::new(HfInference), vec![ImageToImage]),
        (Arc::new(OpenAiCompatible::new("my-images", own)), vec![ImageToImage]),
        (Arc::new(Novita), vec![]),
        (Arc::new(Nscale), vec![]),
        (Arc::new(ZaiOrg), vec![]),
    ];
    for (provider, serves) in providers {
        for task in [ImageToImage, ImageToVideo, ImageTextToImage, ImageTextToVideo] {
            let checked = provider.info().check_task(&task);
            if serves.contains(&task) {
                assert!(checked.is_ok(), "{} should serve {task}", provider.name());
            } else {
                assert!(
                    matches!(checked, Err(ProviderError::UnsupportedTask { .. })),
                    "{} should not serve {task}",
                    provider.name()
                );
            }
        }
    }
}

#[tokio::test]
async fn an_image_task_without_an_image_is_refused_before_anything_is_sent() {
    let own = Url::parse("http://127.0.0.1:9").unwrap();
    let cases: Vec<(DynMediaProvider, &str, Task)> = vec![
        (Arc::new(FalAi), "fal-ai", Task::ImageToImage),
        (Arc::new(WaveSpeed), "wavespeed", Task::ImageToVideo),
        (Arc::new(Together), "together", Task::ImageToVideo),
        (Arc::new(Together), "together", Task::ImageToImage),
        (Arc::new(Replicate), "replicate", Task::ImageToImage),
        (Arc::new(HfInference), "hf-inference", Task::ImageToImage),
        (
            Arc::new(OpenAiCompatible::new("my-images", own)),
            "my-images",
            Task::ImageToImage,
        ),
    ];
    for (provider, name, task) in cases {
        let server = MockServer::start().await;
        let (ctx, _) = context(&server, name);
        let err = provider
            .generate(&ctx, request(name, "org/model", task.clone(), Vec::new()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::InvalidRequest { ref reason, .. } if reason.contains("needs an input image")),
            "{name} {task}: {err:?}"
        );
        assert!(server.received_requests().await.unwrap().is_empty(), "{name}");
    }
}

// ---------------------------------------------------------------- fal-ai

/// fal's status answer and a result at `response_path`.
async fn mount_fal_job(server: &MockServer, response_path: &str, result: Value) {
    Mock::given(method("GET"))
        .and(path(format!("/fal-ai{response_path}/status")))
        .and(query_param("_subdomain", "queue"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETED"})))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/fal-ai{response_path}")))
        .and(query_param("_subdomain", "queue"))
        .respond_with(ResponseTemplate::new(200).set_body_json(result))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn fal_image_to_image_is_a_queue_job_with_the_first_image_and_all_of_them() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/fal-ai/fal-ai/flux-2/edit"))
        .and(query_param("_subdomain", "queue"))
        .and(body_partial_json(json!({
            "prompt": "make it snow",
            "image_url": red().data_url(),
            "image_urls": [red().data_url(), blue().data_url()],
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "request_id": "e1", "status": "IN_QUEUE",
            // Polled on the path fal names, shorter than the submit's.
            "response_url": "https://queue.fal.run/fal-ai/flux-2/requests/e1"
        })))
        .expect(1)
        .mount(&server)
        .await;
    mount_fal_job(
        &server,
        "/fal-ai/flux-2/requests/e1",
        json!({"images": [{"url": "https://fal.media/e1.png", "content_type": "image/png"}]}),
    )
    .await;
    let (ctx, notices) = context(&server, "fal-ai");
    let output = FalAi
        .generate(
            &ctx,
            request("fal-ai", "fal-ai/flux-2/edit", Task::ImageToImage, vec![red(), blue()]),
        )
        .await
        .unwrap();
    assert_eq!(url_of(&output.body), "https://fal.media/e1.png");
    assert_eq!(output.mime.as_deref(), Some("image/png"));
    assert!(warnings(&notices).is_empty(), "every image is sent");
}

#[tokio::test]
async fn fal_image_to_video_sends_one_image_and_warns_about_the_others() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/fal-ai/fal-ai/wan-i2v"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "request_id": "v1", "response_url": "https://queue.fal.run/fal-ai/wan-i2v/requests/v1"
        })))
        .expect(1)
        .mount(&server)
        .await;
    mount_fal_job(
        &server,
        "/fal-ai/wan-i2v/requests/v1",
        json!({"video": {"url": "https://fal.media/v1.mp4"}}),
    )
    .await;
    let (ctx, notices) = context(&server, "fal-ai");
    let images = vec![from_url(b"jpeg".to_vec()), red(), blue()];
    let output = FalAi
        .generate(&ctx, request("fal-ai", "fal-ai/wan-i2v", Task::ImageToVideo, images))
        .await
        .unwrap();
    assert_eq!(url_of(&output.body), "https://fal.media/v1.mp4");
    let body = sent_body(&server).await;
    assert_eq!(body["image_url"], CALLER_URL, "a caller's URL is passed as it is");
    assert!(
        body.get("image_urls").is_none() && body.get("aspect_ratio").is_none(),
        "{body}"
    );
    assert_eq!(
        warnings(&notices),
        ["fal-ai takes one input image for image-to-video: the first is sent, 2 more images left out of the request"]
    );
}

#[tokio::test]
async fn fal_optional_image_tasks_without_images_keep_the_path() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/fal-ai/minimax/h3/image-to-video"))
        .and(query_param("_subdomain", "queue"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "request_id": "m1", "response_url": "https://queue.fal.run/minimax/h3/requests/m1"
        })))
        .expect(1)
        .mount(&server)
        .await;
    mount_fal_job(
        &server,
        "/minimax/h3/requests/m1",
        json!({"video": {"url": "https://fal.media/m1.mp4"}}),
    )
    .await;
    let (ctx, _) = context(&server, "fal-ai");
    let output = FalAi
        .generate(
            &ctx,
            request(
                "fal-ai",
                "minimax/h3/image-to-video",
                Task::ImageTextToVideo,
                Vec::new(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(url_of(&output.body), "https://fal.media/m1.mp4");
    let body = sent_body(&server).await;
    assert!(body.get("image_url").is_none(), "{body}");
    assert_eq!(body["prompt"], "make it snow");
}

// ---------------------------------------------------------------- replicate

#[tokio::test]
async fn replicate_image_to_image_waits_and_takes_the_output() {
    let server = MockServer::start().await;
    let url = red().data_url();
    Mock::given(method("POST"))
        .and(path(
            "/replicate/v1/models/black-forest-labs/flux-kontext-dev/predictions",
        ))
        .and(header("prefer", "wait"))
        .and(body_partial_json(json!({"input": {
            "prompt": "make it snow", "image": url, "images": [url], "input_image": url, "input_images": [url]
        }})))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"id": "p1", "status": "succeeded", "output": ["https://replicate.delivery/p1.webp"]}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let (ctx, _) = context(&server, "replicate");
    let output = Replicate
        .generate(
            &ctx,
            request(
                "replicate",
                "black-forest-labs/flux-kontext-dev",
                Task::ImageToImage,
                vec![red()],
            ),
        )
        .await
        .unwrap();
    assert_eq!(url_of(&output.body), "https://replicate.delivery/p1.webp");
}

// ---------------------------------------------------------------- together

async fn mount_together_image(server: &MockServer, expected: Value) {
    Mock::given(method("POST"))
        .and(path("/together/v1/images/generations"))
        .and(body_partial_json(expected))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": "aGVsbG8="}]})))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn together_kontext_takes_image_url_and_other_models_reference_images() {
    let server = MockServer::start().await;
    mount_together_image(
        &server,
        json!({"model": "black-forest-labs/FLUX.1-kontext-pro", "response_format": "base64",
               "image_url": red().data_url(), "prompt": ""}),
    )
    .await;
    let (ctx, notices) = context(&server, "together");
    let mut kontext = request(
        "together",
        "black-forest-labs/FLUX.1-kontext-pro",
        Task::ImageToImage,
        vec![red(), blue()],
    );
    kontext.prompt = String::new();
    let output = Together.generate(&ctx, kontext).await.unwrap();
    assert!(matches!(output.body, MediaBody::Bytes(ref b) if b.as_ref() == b"hello"));
    assert!(sent_body(&server).await.get("reference_images").is_none());
    assert_eq!(
        warnings(&notices),
        ["together takes one input image for image-to-image: the first is sent, 1 more image left out of the request"]
    );

    let server = MockServer::start().await;
    mount_together_image(
        &server,
        json!({"model": "black-forest-labs/FLUX.2-dev", "reference_images": [red().data_url(), blue().data_url()]}),
    )
    .await;
    let (ctx, notices) = context(&server, "together");
    let flux2 = request(
        "together",
        "black-forest-labs/FLUX.2-dev",
        Task::ImageToImage,
        vec![red(), blue()],
    );
    Together.generate(&ctx, flux2).await.unwrap();
    assert!(sent_body(&server).await.get("image_url").is_none());
    assert!(warnings(&notices).is_empty());
}

async fn mount_together_video(server: &MockServer, input_image: &str) {
    Mock::given(method("POST"))
        .and(path("/together/v2/videos"))
        .and(body_partial_json(json!({
            "model": "Wan-AI/Wan2.2-I2V-A14B",
            "frame_images": [{"input_image": input_image, "frame": "first"}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "v1", "status": "queued"})))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/together/v2/videos/v1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "v1", "status": "completed", "outputs": {"video_url": "https://cdn.together.ai/v1.mp4"}}),
        ))
        .mount(server)
        .await;
}

#[tokio::test]
async fn together_image_to_video_is_a_polled_job_with_the_first_frame() {
    let server = MockServer::start().await;
    mount_together_video(&server, &red().data_url()).await;
    let (ctx, notices) = context(&server, "together");
    let mut req = request(
        "together",
        "Wan-AI/Wan2.2-I2V-A14B",
        Task::ImageToVideo,
        vec![red(), blue()],
    );
    req.params.aspect_ratio = Some("16:9".parse().unwrap());
    let output = Together.generate(&ctx, req).await.unwrap();
    assert_eq!(url_of(&output.body), "https://cdn.together.ai/v1.mp4");
    let body = sent_body(&server).await;
    assert!(
        body.get("aspect_ratio").is_none() && body.get("width").is_none(),
        "{body}"
    );
    let warned = warnings(&notices);
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(warned[0].contains("`aspect_ratio`"), "{warned:?}");
    assert!(warned[1].contains("1 more image left out"), "{warned:?}");
}

#[tokio::test]
async fn together_refuses_a_first_frame_over_61440_characters_before_sending_it() {
    // About 48 KB of image: its data URL is over Together's 61,440 characters.
    let big: Vec<u8> = (0..48_000u32).map(|i| (i % 251) as u8).collect();
    let inline = InputImage::new(
        Bytes::from(big.clone()),
        "image/png",
        ImageOrigin::File("big.png".into()),
    );
    let server = MockServer::start().await;
    let (ctx, _) = context(&server, "together");
    let err = Together
        .generate(
            &ctx,
            request("together", "Wan-AI/Wan2.2-I2V-A14B", Task::ImageToVideo, vec![inline]),
        )
        .await
        .unwrap_err();
    match &err {
        ProviderError::InvalidRequest { provider, reason } => {
            assert_eq!(provider, "together");
            assert!(
                reason.starts_with("the inline image is 64,022 characters, over Together's 61,440"),
                "{reason}"
            );
            assert!(reason.ends_with("pass the image as an http(s) URL instead"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.is_fallback() && !err.is_retryable());
    assert!(server.received_requests().await.unwrap().is_empty(), "nothing is sent");

    // The same image given as a URL is sent as that URL.
    let server = MockServer::start().await;
    mount_together_video(&server, CALLER_URL).await;
    let (ctx, _) = context(&server, "together");
    Together
        .generate(
            &ctx,
            request(
                "together",
                "Wan-AI/Wan2.2-I2V-A14B",
                Task::ImageToVideo,
                vec![from_url(big)],
            ),
        )
        .await
        .unwrap();
}

// ---------------------------------------------------------------- wavespeed

#[tokio::test]
async fn wavespeed_image_tasks_submit_and_poll_like_text_tasks() {
    for (task, provider_id) in [
        (Task::ImageToImage, "wavespeed-ai/qwen-image/edit-plus"),
        (Task::ImageToVideo, "wavespeed-ai/wan-2.1/i2v-480p"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!("/wavespeed/api/v3/{provider_id}")))
            .and(body_partial_json(json!({
                "prompt": "make it snow", "image": red().data_url(), "images": [red().data_url(), CALLER_URL]
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"code": 200, "data": {
                "id": "w1", "status": "created",
                "urls": {"get": "https://api.wavespeed.ai/api/v3/predictions/w1/result"}}})))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/wavespeed/api/v3/predictions/w1/result"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"code": 200, "data": {
                "id": "w1", "status": "completed", "outputs": ["https://d.wavespeed.ai/w1"]}})))
            .mount(&server)
            .await;
        let (ctx, notices) = context(&server, "wavespeed");
        let images = vec![red(), from_url(b"jpeg".to_vec())];
        let output = WaveSpeed
            .generate(&ctx, request("wavespeed", provider_id, task.clone(), images))
            .await
            .unwrap();
        assert_eq!(url_of(&output.body), "https://d.wavespeed.ai/w1", "{task}");
        assert!(warnings(&notices).is_empty(), "{task}");
        let body = sent_body(&server).await;
        assert!(
            body.get("aspect_ratio").is_none() && body.get("resolution").is_none(),
            "{body}"
        );
    }
}

// ---------------------------------------------------------------- hf-inference

const CONTROLNET: &str = "/hf-inference/models/lllyasviel/sd-controlnet-canny";

async fn mount_hf_inference(server: &MockServer, content_type: &'static str) {
    Mock::given(method("POST"))
        .and(path(CONTROLNET))
        .and(header("content-type", content_type))
        .respond_with(ResponseTemplate::new(200).set_body_raw(b"\xff\xd8\xff".to_vec(), "image/jpeg"))
        .expect(1)
        .mount(server)
        .await;
}

async fn collect(body: MediaBody) -> Vec<u8> {
    use futures::StreamExt as _;
    let MediaBody::Stream(mut stream) = body else {
        panic!("a raw answer is streamed");
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    bytes
}

#[tokio::test]
async fn hf_inference_sends_a_lone_image_raw_with_its_type() {
    let server = MockServer::start().await;
    mount_hf_inference(&server, "image/png").await;
    let (ctx, notices) = context(&server, "hf-inference");
    let mut req = request(
        "hf-inference",
        "lllyasviel/sd-controlnet-canny",
        Task::ImageToImage,
        vec![red(), blue()],
    );
    req.prompt = String::new();
    let output = HfInference.generate(&ctx, req).await.unwrap();
    assert_eq!(output.mime.as_deref(), Some("image/jpeg"));
    assert_eq!(collect(output.body).await, b"\xff\xd8\xff");
    let received = server.received_requests().await.unwrap();
    assert_eq!(
        received[0].body,
        red().bytes().as_ref(),
        "the first image's bytes, as they are"
    );
    assert_eq!(warnings(&notices).len(), 1, "the second image is left out");
}

#[tokio::test]
async fn hf_inference_sends_json_with_bare_base64_once_there_is_a_prompt() {
    let server = MockServer::start().await;
    mount_hf_inference(&server, "application/json").await;
    let (ctx, _) = context(&server, "hf-inference");
    let mut req = request(
        "hf-inference",
        "lllyasviel/sd-controlnet-canny",
        Task::ImageToImage,
        vec![red()],
    );
    req.params.guidance_scale = Some(7.0);
    let output = HfInference.generate(&ctx, req).await.unwrap();
    assert_eq!(collect(output.body).await, b"\xff\xd8\xff");
    assert_eq!(
        sent_body(&server).await,
        json!({"inputs": RED_PNG, "parameters": {"prompt": "make it snow", "guidance_scale": 7.0}})
    );
}

// ---------------------------------------------------------------- openai-compatible

async fn openai_edit(images: Vec<InputImage>) -> (MockServer, hf_media_provider::MediaOutput) {
    let own = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/edits"))
        .and(header("authorization", "Bearer sk-test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": "aGVsbG8="}]})))
        .expect(1)
        .mount(&own)
        .await;
    let own_url = Url::parse(&own.uri()).unwrap();
    let ctx = ProviderContext::direct(
        reqwest::Client::new(),
        own_url.clone(),
        "my-images",
        Some("sk-test".to_owned().into()),
        AuthScheme::Bearer,
    );
    let output = OpenAiCompatible::new("my-images", own_url)
        .generate(&ctx, request("my-images", "gpt-image-1", Task::ImageToImage, images))
        .await
        .unwrap();
    (own, output)
}

/// The received multipart body as text (binary bytes shown lossily) and its content type.
async fn multipart(own: &MockServer) -> (String, String) {
    let received = own.received_requests().await.unwrap();
    let content_type = received[0]
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    (String::from_utf8_lossy(&received[0].body).into_owned(), content_type)
}

#[tokio::test]
async fn openai_compatible_edits_send_one_image_as_image_and_several_as_image_brackets() {
    let (own, output) = openai_edit(vec![red()]).await;
    assert!(matches!(output.body, MediaBody::Bytes(ref b) if b.as_ref() == b"hello"));
    let (body, content_type) = multipart(&own).await;
    assert!(
        content_type.starts_with("multipart/form-data; boundary="),
        "{content_type}"
    );
    assert!(body.contains("name=\"prompt\"\r\n\r\nmake it snow\r\n"), "{body}");
    assert!(body.contains("name=\"model\"\r\n\r\ngpt-image-1\r\n"), "{body}");
    assert!(body.contains("name=\"n\"\r\n\r\n1\r\n"), "{body}");
    assert!(body.contains("name=\"response_format\"\r\n\r\nb64_json\r\n"), "{body}");
    assert_eq!(
        body.matches("name=\"image\"; filename=\"image.png\"").count(),
        1,
        "{body}"
    );
    assert!(!body.contains("image[]"), "{body}");
    assert!(body.contains("Content-Type: image/png"), "{body}");

    let (own, _) = openai_edit(vec![red(), blue()]).await;
    let (body, _) = multipart(&own).await;
    assert_eq!(
        body.matches("name=\"image[]\"; filename=\"image.png\"").count(),
        2,
        "{body}"
    );
    assert!(!body.contains("name=\"image\""), "{body}");
}
