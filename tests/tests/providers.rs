//! Full round trips through each provider, against a wiremock Hub + router: the request each provider
//! sends (pinned by a snapshot), its answer shapes, and the file the `FileSink` writes.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use hf_media::{AspectRatio, FileSink, GenerateRequest, GenerationParams, MediaKind, ProviderAttempt};
use hf_media_tests::*;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Runs `request` into a `FileSink` on a fresh temporary folder; returns the events and the folder.
async fn run_to_files(
    server: &MockServer,
    request: GenerateRequest,
) -> (Vec<hf_media::GenerationEvent>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let generator = generator(server, Arc::new(FileSink::new(dir.path())));
    let events = collect(generator.generate(request)).await;
    (events, dir)
}

/// Every request received on `/cdn/…` carries no `Authorization` header.
async fn assert_cdn_without_credentials(server: &MockServer, cdn_path: &str) {
    let downloads = requests_to(server, cdn_path).await;
    assert_eq!(downloads.len(), 1, "the media must be downloaded once");
    assert!(
        downloads[0].headers.get("authorization").is_none(),
        "the CDN download must not carry the token"
    );
    assert!(downloads[0].headers.get("x-hf-bill-to").is_none());
}

#[tokio::test]
async fn hf_inference_text_to_image_raw_bytes() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, json!({ "hf-inference": live(MODEL, "text-to-image") })).await;
    // PNG bytes served as JPEG: the extension comes from the bytes.
    Mock::given(method("POST"))
        .and(path(format!("/hf-inference/models/{MODEL}")))
        .respond_with(bytes_response(png(), "image/jpeg"))
        .expect(1)
        .mount(&server)
        .await;
    let params = GenerationParams {
        negative_prompt: Some("blurry".into()),
        width: Some(512),
        height: Some(768),
        num_inference_steps: Some(20),
        guidance_scale: Some(3.5),
        seed: Some(7),
        ..GenerationParams::default()
    };
    let request = GenerateRequest::new(PROMPT).model(MODEL).params(params);
    let (events, dir) = run_to_files(&server, request).await;

    assert_eq!(attempts(&events), ["hf-inference"]);
    let media = single_media(&events);
    assert_eq!(media.provider, "hf-inference");
    assert_eq!(media.provider_id, MODEL);
    assert_eq!(media.model, MODEL);
    assert_eq!(media.kind, MediaKind::Image);
    assert_eq!(media.mime, "image/png");
    assert_eq!(media.seed, Some(7), "the seed that was sent is reported");
    assert_eq!(media.source_url, None, "raw bytes have no source URL");
    let sidecar = check_stored_file(media, dir.path(), &png(), "png");
    assert_eq!(sidecar["prompt"], PROMPT);
    assert_eq!(sidecar["model"], MODEL);
    assert_eq!(sidecar["provider"], "hf-inference");
    assert_eq!(sidecar["provider_id"], MODEL);
    assert_eq!(sidecar["task"], "text-to-image");
    assert_eq!(sidecar["seed"], 7);
    assert_eq!(done(&events), (1, 0));

    insta::assert_json_snapshot!(
        "hf_inference_request",
        captured_request(&server, &format!("/hf-inference/models/{MODEL}")).await
    );
    // The Hub call: the documented route and query, with the same token.
    insta::assert_json_snapshot!(
        "hub_mapping_request",
        captured_request(&server, &format!("/api/models/{MODEL}")).await
    );
}

/// Mounts fal's queue for `provider_id`, whose `response_url` path is `response_path`, answering the
/// result `result` after `IN_QUEUE` (position 2), `IN_PROGRESS`, `COMPLETED`.
async fn mount_fal_queue(server: &MockServer, provider_id: &str, response_path: &str, result: Value) {
    Mock::given(method("POST"))
        .and(path(format!("/fal-ai/{provider_id}")))
        .and(query_param("_subdomain", "queue"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "request_id": "abc",
            "status": "IN_QUEUE",
            "queue_position": 5,
            "response_url": format!("https://queue.fal.run{response_path}"),
            "status_url": format!("https://queue.fal.run{response_path}/status"),
            "cancel_url": format!("https://queue.fal.run{response_path}/cancel"),
        })))
        .expect(1)
        .mount(server)
        .await;
    let statuses = Sequence::new(vec![
        ResponseTemplate::new(200)
            .set_body_json(json!({"status": "IN_QUEUE", "queue_position": 2, "request_id": "abc"})),
        ResponseTemplate::new(200).set_body_json(json!({"status": "IN_PROGRESS", "request_id": "abc", "logs": []})),
        ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETED", "request_id": "abc"})),
    ]);
    Mock::given(method("GET"))
        .and(path(format!("/fal-ai{response_path}/status")))
        .and(query_param("_subdomain", "queue"))
        .respond_with(statuses)
        .expect(3)
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
async fn fal_ai_text_to_image_through_the_queue() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ "fal-ai": live("fal-ai/flux/dev", "text-to-image") }),
    )
    .await;
    let cdn = format!("{}/cdn/a.png", server.uri());
    mount_fal_queue(
        &server,
        "fal-ai/flux/dev",
        "/fal-ai/flux/requests/abc",
        json!({
            "images": [{"url": cdn, "width": 1024, "height": 576, "content_type": "image/jpeg"}],
            "timings": {"inference": 0.35},
            "seed": 42,
            "has_nsfw_concepts": [false],
            "prompt": PROMPT,
        }),
    )
    .await;
    // fal's recorded `.png` downloads come back as image/jpeg: the bytes decide.
    Mock::given(method("GET"))
        .and(path("/cdn/a.png"))
        .respond_with(bytes_response(png(), "image/jpeg"))
        .expect(1)
        .mount(&server)
        .await;
    let params = GenerationParams {
        aspect_ratio: Some(AspectRatio::WIDESCREEN),
        num_inference_steps: Some(28),
        ..GenerationParams::default()
    };
    let (events, dir) = run_to_files(&server, GenerateRequest::new(PROMPT).model(MODEL).params(params)).await;

    let media = single_media(&events);
    assert_eq!(
        (media.provider.as_str(), media.provider_id.as_str()),
        ("fal-ai", "fal-ai/flux/dev")
    );
    assert_eq!(media.kind, MediaKind::Image);
    assert_eq!(media.mime, "image/png");
    assert_eq!(media.seed, Some(42), "the seed comes from fal's result");
    assert_eq!(media.source_url.as_deref(), Some(cdn.as_str()));
    let sidecar = check_stored_file(media, dir.path(), &png(), "png");
    assert_eq!(sidecar["provider"], "fal-ai");
    assert_eq!(sidecar["provider_id"], "fal-ai/flux/dev");
    assert_eq!(sidecar["prompt"], PROMPT);
    assert_eq!(sidecar["model"], MODEL);
    assert_eq!(sidecar["seed"], 42);
    assert_eq!(sidecar["source_url"], cdn.as_str());
    assert_eq!(sidecar["provider_response"]["has_nsfw_concepts"], json!([false]));

    // The queue's states come out as ProviderStatus events, in order, with fal's request id.
    let statuses: Vec<(&str, Option<u64>)> = provider_statuses(&events)
        .iter()
        .map(|s| (s.state.as_str(), s.queue_position))
        .collect();
    assert_eq!(
        statuses,
        [("queued", Some(5)), ("queued", Some(2)), ("in_progress", None)]
    );
    assert!(
        provider_statuses(&events)
            .iter()
            .all(|s| s.job_id.as_deref() == Some("abc"))
    );
    let first_status = events
        .iter()
        .position(|e| matches!(e, hf_media::GenerationEvent::ProviderStatus { .. }))
        .unwrap();
    let media_at = events
        .iter()
        .position(|e| matches!(e, hf_media::GenerationEvent::Media(_)))
        .unwrap();
    assert!(first_status < media_at, "statuses come before the media");

    assert_cdn_without_credentials(&server, "/cdn/a.png").await;
    insta::assert_json_snapshot!(
        "fal_ai_text_to_image_requests",
        random_seeds_redacted(captured_router_requests(&server).await)
    );
}

#[tokio::test]
async fn fal_ai_text_to_video_through_the_queue() {
    let server = start_server().await;
    let model = "Wan-AI/Wan2.2-T2V-A14B";
    mount_hub_mapping(
        &server,
        model,
        json!({ "fal-ai": live("fal-ai/wan/v2.2-a14b/text-to-video", "text-to-video") }),
    )
    .await;
    let cdn = format!("{}/cdn/v.mp4", server.uri());
    mount_fal_queue(
        &server,
        "fal-ai/wan/v2.2-a14b/text-to-video",
        // fal's response_url may have fewer segments than the provider id.
        "/fal-ai/wan/requests/abc",
        json!({ "video": {"url": cdn, "content_type": "video/mp4", "file_size": 132}, "seed": 3 }),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/cdn/v.mp4"))
        .respond_with(bytes_response(mp4(), "application/octet-stream"))
        .expect(1)
        .mount(&server)
        .await;
    let (events, dir) = run_to_files(&server, GenerateRequest::new("A cat surfing a wave").model(model)).await;

    let media = single_media(&events);
    assert_eq!(media.provider, "fal-ai");
    assert_eq!(media.model, model);
    assert_eq!(media.kind, MediaKind::Video);
    assert_eq!(media.mime, "video/mp4");
    assert_eq!(media.seed, Some(3));
    let sidecar = check_stored_file(media, dir.path(), &mp4(), "mp4");
    assert_eq!(sidecar["task"], "text-to-video");
    assert_eq!(sidecar["provider_id"], "fal-ai/wan/v2.2-a14b/text-to-video");
    assert_eq!(sidecar["prompt"], "A cat surfing a wave");
    assert!(provider_statuses(&events).iter().any(|s| s.state == "in_progress"));

    assert_cdn_without_credentials(&server, "/cdn/v.mp4").await;
    insta::assert_json_snapshot!(
        "fal_ai_text_to_video_requests",
        random_seeds_redacted(captured_router_requests(&server).await)
    );
}

/// A replicate prediction object (201 answer) with `output`.
fn prediction(id: &str, status: &str, output: Value) -> Value {
    json!({
        "id": id,
        "model": "black-forest-labs/flux-dev",
        "version": "dp-4d0b",
        "input": {"prompt": PROMPT},
        "logs": "",
        "output": output,
        "data_removed": false,
        "error": null,
        "status": status,
        "created_at": "2025-01-23T15:47:32.383Z",
        "urls": {
            "cancel": format!("https://api.replicate.com/v1/predictions/{id}/cancel"),
            "get": format!("https://api.replicate.com/v1/predictions/{id}"),
        },
    })
}

const REPLICATE_ROUTE: &str = "/replicate/v1/models/black-forest-labs/flux-dev/predictions";

#[tokio::test]
async fn replicate_text_to_image_with_an_output_string() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ "replicate": live("black-forest-labs/flux-dev", "text-to-image") }),
    )
    .await;
    let cdn = format!("{}/cdn/out.png", server.uri());
    Mock::given(method("POST"))
        .and(path(REPLICATE_ROUTE))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction("p1", "processing", json!(cdn))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/cdn/out.png"))
        .respond_with(bytes_response(png(), "image/jpeg"))
        .expect(1)
        .mount(&server)
        .await;
    let params = GenerationParams {
        width: Some(1024),
        height: Some(1024),
        seed: Some(11),
        ..GenerationParams::default()
    };
    let (events, dir) = run_to_files(&server, GenerateRequest::new(PROMPT).model(MODEL).params(params)).await;

    let media = single_media(&events);
    assert_eq!(media.provider, "replicate");
    assert_eq!(media.provider_id, "black-forest-labs/flux-dev");
    assert_eq!((media.kind, media.mime.as_str()), (MediaKind::Image, "image/png"));
    assert_eq!(media.source_url.as_deref(), Some(cdn.as_str()));
    let sidecar = check_stored_file(media, dir.path(), &png(), "png");
    assert_eq!(sidecar["provider"], "replicate");
    assert_eq!(sidecar["provider_id"], "black-forest-labs/flux-dev");
    assert_eq!(sidecar["provider_response"]["id"], "p1");
    assert!(
        provider_statuses(&events).is_empty(),
        "a filled output needs no polling"
    );

    assert_cdn_without_credentials(&server, "/cdn/out.png").await;
    insta::assert_json_snapshot!("replicate_request", captured_request(&server, REPLICATE_ROUTE).await);
}

#[tokio::test]
async fn replicate_text_to_image_with_an_output_list_of_webp() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ "replicate": live("black-forest-labs/flux-dev", "text-to-image") }),
    )
    .await;
    let cdn = format!("{}/cdn/out-0.webp", server.uri());
    Mock::given(method("POST"))
        .and(path(REPLICATE_ROUTE))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(
            "p1",
            "processing",
            json!([cdn, format!("{}/cdn/out-1.webp", server.uri())]),
        )))
        .expect(1)
        .mount(&server)
        .await;
    // Replicate's delivery served `.webp` as application/octet-stream in the tapes.
    Mock::given(method("GET"))
        .and(path("/cdn/out-0.webp"))
        .respond_with(bytes_response(webp(), "application/octet-stream"))
        .expect(1)
        .mount(&server)
        .await;
    let (events, dir) = run_to_files(&server, GenerateRequest::new(PROMPT).model(MODEL)).await;

    let media = single_media(&events);
    assert_eq!((media.kind, media.mime.as_str()), (MediaKind::Image, "image/webp"));
    assert_eq!(
        media.source_url.as_deref(),
        Some(cdn.as_str()),
        "the first output is taken"
    );
    check_stored_file(media, dir.path(), &webp(), "webp");
    assert!(requests_to(&server, "/cdn/out-1.webp").await.is_empty());
    assert_cdn_without_credentials(&server, "/cdn/out-0.webp").await;
}

#[tokio::test]
async fn replicate_pinned_version_uses_the_predictions_route() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ "replicate": live("owner/name:abc123", "text-to-image") }),
    )
    .await;
    let cdn = format!("{}/cdn/out.png", server.uri());
    Mock::given(method("POST"))
        .and(path("/replicate/v1/predictions"))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction("p1", "succeeded", json!([cdn]))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/cdn/out.png"))
        .respond_with(bytes_response(png(), "image/png"))
        .expect(1)
        .mount(&server)
        .await;
    let (events, dir) = run_to_files(&server, GenerateRequest::new(PROMPT).model(MODEL)).await;

    let media = single_media(&events);
    assert_eq!(media.provider_id, "owner/name:abc123");
    let sidecar = check_stored_file(media, dir.path(), &png(), "png");
    assert_eq!(sidecar["provider_id"], "owner/name:abc123");
    let sent = captured_request(&server, "/replicate/v1/predictions").await;
    assert_eq!(sent["body"]["version"], "abc123");
    insta::assert_json_snapshot!("replicate_pinned_request", random_seeds_redacted(sent));
}

#[tokio::test]
async fn replicate_polls_a_prediction_that_outlives_the_wait() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ "replicate": live("black-forest-labs/flux-dev", "text-to-image") }),
    )
    .await;
    let cdn = format!("{}/cdn/out.png", server.uri());
    Mock::given(method("POST"))
        .and(path(REPLICATE_ROUTE))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction("p2", "starting", Value::Null)))
        .expect(1)
        .mount(&server)
        .await;
    let polls = Sequence::new(vec![
        ResponseTemplate::new(200).set_body_json(prediction("p2", "processing", Value::Null)),
        ResponseTemplate::new(200).set_body_json(prediction("p2", "succeeded", json!([cdn]))),
    ]);
    Mock::given(method("GET"))
        .and(path("/replicate/v1/predictions/p2"))
        .respond_with(polls)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/cdn/out.png"))
        .respond_with(bytes_response(png(), "image/png"))
        .expect(1)
        .mount(&server)
        .await;
    let (events, dir) = run_to_files(&server, GenerateRequest::new(PROMPT).model(MODEL)).await;

    let media = single_media(&events);
    check_stored_file(media, dir.path(), &png(), "png");
    let statuses: Vec<(&str, Option<&str>)> = provider_statuses(&events)
        .iter()
        .map(|s| (s.state.as_str(), s.job_id.as_deref()))
        .collect();
    assert_eq!(statuses, [("queued", Some("p2")), ("in_progress", Some("p2"))]);
    assert_cdn_without_credentials(&server, "/cdn/out.png").await;
    insta::assert_json_snapshot!(
        "replicate_polling_requests",
        random_seeds_redacted(captured_router_requests(&server).await)
    );
}

#[tokio::test]
async fn replicate_polling_404_is_a_job_failure_naming_the_wait_window() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ "replicate": live("black-forest-labs/flux-dev", "text-to-image") }),
    )
    .await;
    Mock::given(method("POST"))
        .and(path(REPLICATE_ROUTE))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction("p3", "starting", Value::Null)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/replicate/v1/predictions/p3"))
        .respond_with(ResponseTemplate::new(404).set_body_string("404: Not Found"))
        .expect(1)
        .mount(&server)
        .await;
    let (events, dir) = run_to_files(&server, GenerateRequest::new(PROMPT).model(MODEL)).await;

    assert!(media(&events).is_empty());
    let error = single_error(&events);
    let hf_media::Error::AllProvidersFailed { attempts, model } = error else {
        panic!("expected AllProvidersFailed, got {error:?}");
    };
    assert_eq!(model, MODEL);
    assert_eq!(attempts.len(), 1);
    let ProviderAttempt {
        provider,
        status,
        kind,
        message,
    } = &attempts[0];
    assert_eq!((provider.as_str(), *status, *kind), ("replicate", None, "job_failed"));
    assert!(message.contains("p3") && message.contains("wait window"), "{message}");
    assert!(!message.contains(TOKEN));
    assert_eq!(done(&events), (0, 1));
    assert!(dir_files(dir.path()).is_empty(), "a failed generation leaves no file");
}

#[tokio::test]
async fn together_text_to_image_base64() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ "together": live("black-forest-labs/FLUX.1-dev", "text-to-image") }),
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/together/v1/images/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "8ff4-CDG",
            "model": "black-forest-labs/FLUX.1-dev",
            "object": "list",
            "data": [{"timings": {"inference": 4445}, "index": 0, "b64_json": base64(&png())}],
        })))
        .expect(1)
        .mount(&server)
        .await;
    let params = GenerationParams {
        width: Some(1024),
        height: Some(768),
        num_inference_steps: Some(28),
        guidance_scale: Some(3.5),
        seed: Some(9),
        negative_prompt: Some("blurry".into()),
        ..GenerationParams::default()
    };
    let (events, dir) = run_to_files(&server, GenerateRequest::new(PROMPT).model(MODEL).params(params)).await;

    let media = single_media(&events);
    assert_eq!(media.provider, "together");
    assert_eq!((media.kind, media.mime.as_str()), (MediaKind::Image, "image/png"));
    assert_eq!(media.seed, Some(9));
    assert_eq!(media.source_url, None, "base64 media have no source URL");
    let sidecar = check_stored_file(media, dir.path(), &png(), "png");
    assert_eq!(sidecar["provider"], "together");
    assert_eq!(sidecar["provider_id"], "black-forest-labs/FLUX.1-dev");
    assert_eq!(sidecar["provider_response"]["id"], "8ff4-CDG");

    insta::assert_json_snapshot!(
        "together_request",
        captured_request(&server, "/together/v1/images/generations").await
    );
}

#[tokio::test]
async fn together_base64_media_is_not_copied_into_the_sidecar() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ "together": live("black-forest-labs/FLUX.1-dev", "text-to-image") }),
    )
    .await;
    let encoded = base64(&png());
    Mock::given(method("POST"))
        .and(path("/together/v1/images/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"index": 0, "b64_json": encoded}]})))
        .mount(&server)
        .await;
    let (events, dir) = run_to_files(&server, GenerateRequest::new(PROMPT).model(MODEL)).await;

    let media = single_media(&events);
    let sidecar = check_stored_file(media, dir.path(), &png(), "png");
    let kept = sidecar["provider_response"].to_string();
    assert!(
        !kept.contains(&encoded),
        "the media's base64 must be replaced by a placeholder: {kept}"
    );
    let in_event = media.provider_response.as_ref().unwrap().to_string();
    assert!(!in_event.contains(&encoded), "{in_event}");
}

#[tokio::test]
async fn bill_to_is_sent_on_router_calls_only() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ "replicate": live("black-forest-labs/flux-dev", "text-to-image") }),
    )
    .await;
    let cdn = format!("{}/cdn/out.png", server.uri());
    Mock::given(method("POST"))
        .and(path(REPLICATE_ROUTE))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction("p4", "starting", Value::Null)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/replicate/v1/predictions/p4"))
        .respond_with(ResponseTemplate::new(200).set_body_json(prediction("p4", "succeeded", json!(cdn))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/cdn/out.png"))
        .respond_with(bytes_response(png(), "image/png"))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let generator = builder(&server)
        .bill_to("my-org")
        .sink(Arc::new(FileSink::new(dir.path())))
        .build()
        .unwrap();
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;
    check_stored_file(single_media(&events), dir.path(), &png(), "png");

    for route in [REPLICATE_ROUTE, "/replicate/v1/predictions/p4"] {
        let sent = requests_to(&server, route).await;
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].headers.get("x-hf-bill-to").unwrap(), "my-org", "{route}");
    }
    assert_cdn_without_credentials(&server, "/cdn/out.png").await;
    insta::assert_json_snapshot!(
        "bill_to_requests",
        random_seeds_redacted(captured_router_requests(&server).await)
    );
}

#[tokio::test]
async fn fal_ai_synchronous_answer_with_a_data_url() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ "fal-ai": live("fal-ai/flux/schnell", "text-to-image") }),
    )
    .await;
    // Older fal deployments answer the result at once, with the media inlined as a `data:` URL that
    // claims JPEG although the bytes are PNG.
    let data_url = format!("data:image/jpeg;base64,{}", base64(&png()));
    Mock::given(method("POST"))
        .and(path("/fal-ai/fal-ai/flux/schnell"))
        .and(query_param("_subdomain", "queue"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "images": [{"url": data_url, "width": 1, "height": 1, "content_type": "image/jpeg"}],
            "seed": 2463045738u64,
        })))
        .expect(1)
        .mount(&server)
        .await;
    let (events, dir) = run_to_files(&server, GenerateRequest::new(PROMPT).model(MODEL)).await;

    let media = single_media(&events);
    assert_eq!(media.mime, "image/png");
    assert_eq!(media.seed, Some(2_463_045_738));
    assert_eq!(media.source_url, None, "a data: URL is not a source URL");
    let sidecar = check_stored_file(media, dir.path(), &png(), "png");
    let url = sidecar["provider_response"]["images"][0]["url"].as_str().unwrap();
    assert!(
        url.starts_with("data:…"),
        "the inlined media is replaced by a placeholder: {url}"
    );
    assert!(provider_statuses(&events).is_empty(), "no queue, no status");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        2,
        "the Hub and the submit only"
    );
}
