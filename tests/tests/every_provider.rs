//! Every registered provider, for every task it serves, makes the right bytes in the sink through the
//! whole `MediaGenerator`: Hub mapping → the provider's protocol (with its pending states) → download →
//! `MemorySink`, against a wiremock server speaking that provider's protocol.
//!
//! Each case is declarative ([`Case`]): which provider and task, the mocks of its protocol, the bytes it
//! serves and what the media must come out as. [`check`] runs one case and checks the outcome; the
//! [`every_registered_provider_and_task_has_a_case`] test keeps the case list in step with the registry.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use hf_media::{GenerateRequest, GenerationEvent, MediaKind, MediaLocation, MemorySink, ProviderRegistry};
use hf_media_tests::*;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, headers, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

/// One provider × task round trip.
struct Case {
    /// The provider's Hub name (the mapping key and the router prefix).
    provider: &'static str,
    /// The mapping entry's task.
    task: &'static str,
    /// The mapping entry's `providerId`.
    provider_id: &'static str,
    /// The mocks of the provider's protocol, given the absolute URL of the media on the mock CDN and the
    /// media bytes (for answers that carry them inline). The CDN itself is mounted by [`check`].
    mocks: fn(cdn_url: &str, media: &[u8]) -> Vec<Mock>,
    /// The served media.
    media: fn() -> Vec<u8>,
    /// Where the media is downloaded from (`None`: the bytes come in the provider's answer), and the
    /// `Content-Type` it is served with there (deliberately unreliable: the bytes decide).
    cdn: Option<(&'static str, &'static str)>,
    /// What the media must come out as.
    kind: MediaKind,
    mime: &'static str,
    /// Whether the provider goes through pending states (and so reports provider statuses).
    pending: bool,
}

/// A JSON answer.
fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

/// Polling answers, in turn (the last one repeats).
fn in_turn(bodies: Vec<Value>) -> Sequence {
    Sequence::new(bodies.into_iter().map(ok).collect())
}

/// Runs `case` end to end and checks everything it promises.
async fn check(case: &Case) {
    let server = start_server().await;
    let expected = (case.media)();
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ case.provider: live(case.provider_id, case.task) }),
    )
    .await;
    let cdn_url = case
        .cdn
        .map(|(p, _)| format!("{}{p}", server.uri()))
        .unwrap_or_default();
    for mock in (case.mocks)(&cdn_url, &expected) {
        mock.mount(&server).await;
    }
    if let Some((cdn_path, served_as)) = case.cdn {
        Mock::given(method("GET"))
            .and(path(cdn_path))
            .respond_with(bytes_response(expected.clone(), served_as))
            .expect(1)
            .named(format!("{} CDN download", case.provider))
            .mount(&server)
            .await;
    }

    let sink = MemorySink::new();
    let generator = builder(&server).sink(Arc::new(sink.clone())).build().unwrap();
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;
    let label = format!("{} {}", case.provider, case.task);

    // The generation: one attempt, no fallback, no error, one media.
    assert_eq!(attempts(&events), [case.provider], "{label}: {events:#?}");
    assert!(
        fallbacks(&events).is_empty(),
        "{label}: no fallback expected: {events:#?}"
    );
    assert!(errors(&events).is_empty(), "{label}: no error expected: {events:#?}");
    assert_eq!(done(&events), (1, 0), "{label}");
    assert!(
        warnings(&events).is_empty(),
        "{label}: no warning expected: {:?}",
        warnings(&events)
    );
    let media = single_media(&events);
    assert_eq!(media.provider, case.provider, "{label}");
    assert_eq!(media.provider_id, case.provider_id, "{label}");
    assert_eq!(media.model, MODEL, "{label}");
    assert_eq!(media.kind, case.kind, "{label}");
    assert_eq!(media.mime, case.mime, "{label}: the MIME type comes from the bytes");
    assert_eq!(media.bytes, expected.len() as u64, "{label}");
    assert_eq!(media.location, MediaLocation::Memory { id: 0 }, "{label}");
    assert_eq!(
        media.source_url.as_deref(),
        case.cdn.map(|_| cdn_url.as_str()),
        "{label}: the source URL is the CDN URL, if any"
    );

    // The sink holds exactly the served bytes.
    let stored = sink.items();
    assert_eq!(stored.len(), 1, "{label}: the sink must hold one media");
    assert_eq!(
        stored[0].bytes.as_ref(),
        expected.as_slice(),
        "{label}: wrong bytes in the sink"
    );
    assert_eq!(stored[0].format.kind, case.kind, "{label}");
    assert_eq!(stored[0].format.mime, case.mime, "{label}");

    // Pending states come out as provider statuses, before the media, named after the provider.
    let statuses: Vec<_> = events
        .iter()
        .enumerate()
        .filter_map(|(at, e)| match e {
            GenerationEvent::ProviderStatus { provider, status, .. } => Some((at, provider.as_str(), status)),
            _ => None,
        })
        .collect();
    if case.pending {
        assert!(!statuses.is_empty(), "{label}: expected provider statuses: {events:#?}");
        let media_at = events
            .iter()
            .position(|e| matches!(e, GenerationEvent::Media(_)))
            .unwrap();
        for (at, provider, status) in &statuses {
            assert_eq!(*provider, case.provider, "{label}");
            assert!(*at < media_at, "{label}: status {status:?} after the media");
        }
    } else {
        assert!(
            statuses.is_empty(),
            "{label}: a synchronous answer has no status: {events:#?}"
        );
    }

    // Credentials: the token on every router call, never on the media download.
    let received = server.received_requests().await.unwrap();
    let cdn_path = case.cdn.map(|(p, _)| p);
    let mut router_calls = 0;
    for request in &received {
        let route = request.url.path();
        if Some(route) == cdn_path {
            assert!(
                request.headers.get("authorization").is_none(),
                "{label}: the CDN download must not carry the token"
            );
        } else if route.starts_with(&format!("/{}/", case.provider)) {
            router_calls += 1;
            assert_eq!(
                request.headers.get("authorization").map(|v| v.to_str().unwrap()),
                Some(format!("Bearer {TOKEN}").as_str()),
                "{label}: {} {route} must carry the token",
                request.method
            );
        } else {
            assert!(
                route.starts_with("/api/models/"),
                "{label}: unexpected request {} {route}",
                request.method
            );
        }
    }
    assert!(router_calls > 0, "{label}: no router call");
    if let Some(cdn_path) = cdn_path {
        assert_eq!(requests_to(&server, cdn_path).await.len(), 1, "{label}: one download");
    }
    // Dropping the server verifies every mock's expected call count.
}

#[test]
fn every_registered_provider_and_task_has_a_case() {
    let mut registered: Vec<(String, String)> = ProviderRegistry::with_defaults()
        .iter()
        .flat_map(|p| p.tasks().iter().map(|t| (p.name().to_owned(), t.to_string())))
        .collect();
    registered.sort();
    let mut covered: Vec<(String, String)> = CASES
        .iter()
        .map(|c| (c.provider.to_owned(), c.task.to_owned()))
        .collect();
    covered.sort();
    assert_eq!(covered, registered, "one case per registered provider and task");
}

const CASES: &[Case] = &[
    FAL_AI_IMAGE,
    FAL_AI_VIDEO,
    HF_INFERENCE_IMAGE,
    REPLICATE_IMAGE,
    REPLICATE_VIDEO,
    TOGETHER_IMAGE,
    TOGETHER_VIDEO,
    NSCALE_IMAGE,
    WAVESPEED_IMAGE,
    WAVESPEED_VIDEO,
    ZAI_ORG_IMAGE,
    NOVITA_VIDEO,
];

// --- fal-ai: queue (`?_subdomain=queue`), statuses at `{response_path}/status`, result at `{response_path}`.

/// fal's queue for `provider_id`, whose `response_url` path is `response_path`: IN_QUEUE → IN_PROGRESS →
/// COMPLETED, then `result`.
fn fal_queue(provider_id: &str, response_path: &str, result: Value) -> Vec<Mock> {
    vec![
        Mock::given(method("POST"))
            .and(path(format!("/fal-ai/{provider_id}")))
            .and(query_param("_subdomain", "queue"))
            .and(body_partial_json(json!({ "prompt": PROMPT })))
            .respond_with(ok(json!({
                "request_id": "fal-1",
                "status": "IN_QUEUE",
                "queue_position": 3,
                "response_url": format!("https://queue.fal.run{response_path}"),
                "status_url": format!("https://queue.fal.run{response_path}/status"),
                "cancel_url": format!("https://queue.fal.run{response_path}/cancel"),
            })))
            .expect(1),
        Mock::given(method("GET"))
            .and(path(format!("/fal-ai{response_path}/status")))
            .and(query_param("_subdomain", "queue"))
            .respond_with(in_turn(vec![
                json!({"status": "IN_QUEUE", "queue_position": 1, "request_id": "fal-1"}),
                json!({"status": "IN_PROGRESS", "request_id": "fal-1", "logs": []}),
                json!({"status": "COMPLETED", "request_id": "fal-1"}),
            ]))
            .expect(3),
        Mock::given(method("GET"))
            .and(path(format!("/fal-ai{response_path}")))
            .and(query_param("_subdomain", "queue"))
            .respond_with(ok(result))
            .expect(1),
    ]
}

const FAL_AI_IMAGE: Case = Case {
    provider: "fal-ai",
    task: "text-to-image",
    provider_id: "fal-ai/flux/dev",
    mocks: |cdn, _| {
        fal_queue(
            "fal-ai/flux/dev",
            "/fal-ai/flux/requests/fal-1",
            json!({"images": [{"url": cdn, "content_type": "image/jpeg"}], "seed": 42}),
        )
    },
    media: png,
    cdn: Some(("/cdn/fal/image.png", "image/jpeg")),
    kind: MediaKind::Image,
    mime: "image/png",
    pending: true,
};

const FAL_AI_VIDEO: Case = Case {
    provider: "fal-ai",
    task: "text-to-video",
    provider_id: "fal-ai/wan/v2.2-a14b/text-to-video",
    mocks: |cdn, _| {
        fal_queue(
            "fal-ai/wan/v2.2-a14b/text-to-video",
            "/fal-ai/wan/requests/fal-1",
            json!({"video": {"url": cdn, "content_type": "video/mp4"}, "seed": 3}),
        )
    },
    media: mp4,
    cdn: Some(("/cdn/fal/video.mp4", "application/octet-stream")),
    kind: MediaKind::Video,
    mime: "video/mp4",
    pending: true,
};

#[tokio::test]
async fn fal_ai_text_to_image() {
    check(&FAL_AI_IMAGE).await;
}

#[tokio::test]
async fn fal_ai_text_to_video() {
    check(&FAL_AI_VIDEO).await;
}

// --- hf-inference: the POST answers the raw bytes.

const HF_INFERENCE_IMAGE: Case = Case {
    provider: "hf-inference",
    task: "text-to-image",
    provider_id: MODEL,
    mocks: |_, media| {
        vec![
            Mock::given(method("POST"))
                .and(path(format!("/hf-inference/models/{MODEL}")))
                .and(body_partial_json(json!({ "inputs": PROMPT })))
                .respond_with(bytes_response(media.to_vec(), "image/jpeg"))
                .expect(1),
        ]
    },
    media: png,
    cdn: None,
    kind: MediaKind::Image,
    mime: "image/png",
    pending: false,
};

#[tokio::test]
async fn hf_inference_text_to_image() {
    check(&HF_INFERENCE_IMAGE).await;
}

// --- replicate: 201 with the prediction; polled at `/v1/predictions/{id}` when it has no output yet.

/// A replicate prediction object.
fn prediction(id: &str, status: &str, output: Value) -> Value {
    json!({
        "id": id,
        "status": status,
        "input": {"prompt": PROMPT},
        "output": output,
        "error": null,
        "logs": "",
        "urls": {
            "get": format!("https://api.replicate.com/v1/predictions/{id}"),
            "cancel": format!("https://api.replicate.com/v1/predictions/{id}/cancel"),
        },
    })
}

/// The create-prediction mock of `owner/name`, answering `answer` with 201.
fn replicate_create(model: &str, answer: Value) -> Mock {
    Mock::given(method("POST"))
        .and(path(format!("/replicate/v1/models/{model}/predictions")))
        .and(header("prefer", "wait"))
        .and(body_partial_json(json!({ "input": { "prompt": PROMPT } })))
        .respond_with(ResponseTemplate::new(201).set_body_json(answer))
        .expect(1)
}

const REPLICATE_IMAGE: Case = Case {
    provider: "replicate",
    task: "text-to-image",
    provider_id: "black-forest-labs/flux-dev",
    mocks: |cdn, _| {
        vec![replicate_create(
            "black-forest-labs/flux-dev",
            prediction(
                "rp-1",
                "processing",
                json!([cdn, "https://replicate.delivery/out-1.webp"]),
            ),
        )]
    },
    media: webp,
    cdn: Some(("/cdn/replicate/out-0.webp", "application/octet-stream")),
    kind: MediaKind::Image,
    mime: "image/webp",
    pending: false,
};

const REPLICATE_VIDEO: Case = Case {
    provider: "replicate",
    task: "text-to-video",
    provider_id: "wan-video/wan-2.2-t2v-fast",
    mocks: |cdn, _| {
        vec![
            replicate_create(
                "wan-video/wan-2.2-t2v-fast",
                prediction("rp-2", "starting", Value::Null),
            ),
            Mock::given(method("GET"))
                .and(path("/replicate/v1/predictions/rp-2"))
                .respond_with(in_turn(vec![
                    prediction("rp-2", "processing", Value::Null),
                    prediction("rp-2", "succeeded", json!(cdn)),
                ]))
                .expect(2),
        ]
    },
    media: mp4,
    cdn: Some(("/cdn/replicate/output.mp4", "video/mp4")),
    kind: MediaKind::Video,
    mime: "video/mp4",
    pending: true,
};

#[tokio::test]
async fn replicate_text_to_image() {
    check(&REPLICATE_IMAGE).await;
}

#[tokio::test]
async fn replicate_text_to_video() {
    check(&REPLICATE_VIDEO).await;
}

// --- together: images in base64; videos as a `/v2/videos` job polled at `/v2/videos/{id}`.

const TOGETHER_IMAGE: Case = Case {
    provider: "together",
    task: "text-to-image",
    provider_id: "black-forest-labs/FLUX.1-dev",
    mocks: |_, media| {
        vec![
            Mock::given(method("POST"))
                .and(path("/together/v1/images/generations"))
                .and(body_partial_json(json!({
                    "prompt": PROMPT,
                    "model": "black-forest-labs/FLUX.1-dev",
                    "response_format": "base64",
                })))
                .respond_with(ok(json!({
                    "id": "tg-1",
                    "object": "list",
                    "data": [{"index": 0, "b64_json": base64(media)}],
                })))
                .expect(1),
        ]
    },
    media: png,
    cdn: None,
    kind: MediaKind::Image,
    mime: "image/png",
    pending: false,
};

const TOGETHER_VIDEO: Case = Case {
    provider: "together",
    task: "text-to-video",
    provider_id: "Wan-AI/Wan2.2-T2V-A14B",
    mocks: |cdn, _| {
        vec![
            Mock::given(method("POST"))
                .and(path("/together/v2/videos"))
                .and(body_partial_json(
                    json!({ "prompt": PROMPT, "model": "Wan-AI/Wan2.2-T2V-A14B" }),
                ))
                .respond_with(ok(json!({"id": "tv-1", "object": "video", "status": "queued"})))
                .expect(1),
            Mock::given(method("GET"))
                .and(path("/together/v2/videos/tv-1"))
                .respond_with(in_turn(vec![
                    json!({"id": "tv-1", "status": "queued"}),
                    json!({"id": "tv-1", "status": "in_progress"}),
                    json!({"id": "tv-1", "status": "completed", "outputs": {"video_url": cdn, "cost": 0.2}}),
                ]))
                .expect(3),
        ]
    },
    media: mp4,
    cdn: Some(("/cdn/together/video.mp4", "video/mp4")),
    kind: MediaKind::Video,
    mime: "video/mp4",
    pending: true,
};

#[tokio::test]
async fn together_text_to_image() {
    check(&TOGETHER_IMAGE).await;
}

#[tokio::test]
async fn together_text_to_video() {
    check(&TOGETHER_VIDEO).await;
}

// --- nscale: images in base64 (OpenAI images shape).

const NSCALE_IMAGE: Case = Case {
    provider: "nscale",
    task: "text-to-image",
    provider_id: "stabilityai/stable-diffusion-xl-base-1.0",
    mocks: |_, media| {
        vec![
            Mock::given(method("POST"))
                .and(path("/nscale/v1/images/generations"))
                .and(body_partial_json(json!({
                    "prompt": PROMPT,
                    "model": "stabilityai/stable-diffusion-xl-base-1.0",
                    "response_format": "b64_json",
                })))
                .respond_with(ok(json!({"created": 1, "data": [{"b64_json": base64(media)}]})))
                .expect(1),
        ]
    },
    media: png,
    cdn: None,
    kind: MediaKind::Image,
    mime: "image/png",
    pending: false,
};

#[tokio::test]
async fn nscale_text_to_image() {
    check(&NSCALE_IMAGE).await;
}

// --- wavespeed: submit → `data.urls.get` on WaveSpeed's host, polled on the router under `/wavespeed`.

/// WaveSpeed's submit for `provider_id` (job `id`, `created`) and its result polls: created →
/// processing → completed with `data.outputs[0] = cdn`.
fn wavespeed(provider_id: &str, id: &str, cdn: &str) -> Vec<Mock> {
    let data = |status: &str, outputs: Value| {
        json!({
            "code": 200,
            "message": "success",
            "data": {
                "id": id,
                "model": provider_id,
                "status": status,
                "outputs": outputs,
                "urls": {"get": format!("https://api.wavespeed.ai/api/v3/predictions/{id}/result")},
                "has_nsfw_contents": [],
                "error": "",
            },
        })
    };
    vec![
        Mock::given(method("POST"))
            .and(path(format!("/wavespeed/api/v3/{provider_id}")))
            .and(body_partial_json(json!({ "prompt": PROMPT })))
            .respond_with(ok(data("created", json!([]))))
            .expect(1),
        Mock::given(method("GET"))
            .and(path(format!("/wavespeed/api/v3/predictions/{id}/result")))
            .respond_with(in_turn(vec![
                data("created", json!([])),
                data("processing", json!([])),
                data("completed", json!([cdn])),
            ]))
            .expect(3),
    ]
}

const WAVESPEED_IMAGE: Case = Case {
    provider: "wavespeed",
    task: "text-to-image",
    provider_id: "wavespeed-ai/flux-dev",
    mocks: |cdn, _| wavespeed("wavespeed-ai/flux-dev", "ws-img-1", cdn),
    media: png,
    cdn: Some(("/cdn/wavespeed/image.png", "image/png")),
    kind: MediaKind::Image,
    mime: "image/png",
    pending: true,
};

const WAVESPEED_VIDEO: Case = Case {
    provider: "wavespeed",
    task: "text-to-video",
    provider_id: "wavespeed-ai/wan-2.1/t2v-480p",
    mocks: |cdn, _| wavespeed("wavespeed-ai/wan-2.1/t2v-480p", "ws-vid-1", cdn),
    media: mp4,
    cdn: Some(("/cdn/wavespeed/video.mp4", "video/mp4")),
    kind: MediaKind::Video,
    mime: "video/mp4",
    pending: true,
};

#[tokio::test]
async fn wavespeed_text_to_image() {
    check(&WAVESPEED_IMAGE).await;
}

#[tokio::test]
async fn wavespeed_text_to_video() {
    check(&WAVESPEED_VIDEO).await;
}

// --- zai-org: async image task, polled at `/api/paas/v4/async-result/{id}`, with zai's extra headers.

const ZAI_ORG_IMAGE: Case = Case {
    provider: "zai-org",
    task: "text-to-image",
    provider_id: "glm-image",
    mocks: |cdn, _| {
        vec![
            Mock::given(method("POST"))
                .and(path("/zai-org/api/paas/v4/async/images/generations"))
                .and(header("x-source-channel", "hugging_face"))
                .and(headers("accept-language", vec!["en-US", "en"]))
                .and(body_partial_json(json!({ "model": "glm-image", "prompt": PROMPT })))
                .respond_with(ok(json!({
                    "model": "glm-image",
                    "id": "zt-1",
                    "request_id": "req-1",
                    "task_status": "PROCESSING",
                })))
                .expect(1),
            Mock::given(method("GET"))
                .and(path("/zai-org/api/paas/v4/async-result/zt-1"))
                .and(header("x-source-channel", "hugging_face"))
                .and(headers("accept-language", vec!["en-US", "en"]))
                .respond_with(in_turn(vec![
                    json!({"id": "zt-1", "task_status": "PROCESSING"}),
                    json!({"id": "zt-1", "task_status": "SUCCESS", "image_result": [{"url": cdn}]}),
                ]))
                .expect(2),
        ]
    },
    media: png,
    cdn: Some(("/cdn/zai/image.png", "image/jpeg")),
    kind: MediaKind::Image,
    mime: "image/png",
    pending: true,
};

#[tokio::test]
async fn zai_org_text_to_image() {
    check(&ZAI_ORG_IMAGE).await;
}

// --- novita: `/v3/async/{providerId}` → task id; polled at `/v3/async/task-result?task_id=…`.

const NOVITA_VIDEO: Case = Case {
    provider: "novita",
    task: "text-to-video",
    provider_id: "wan-t2v",
    mocks: |cdn, _| {
        let task = |status: &str| json!({"task": {"task_id": "nv-1", "status": status, "progress_percent": 0}});
        let mut done = task("TASK_STATUS_SUCCEED");
        done["videos"] = json!([{"video_url": cdn, "video_url_ttl": "3600", "video_type": "mp4"}]);
        vec![
            Mock::given(method("POST"))
                .and(path("/novita/v3/async/wan-t2v"))
                .and(body_partial_json(json!({ "prompt": PROMPT })))
                .respond_with(ok(json!({"task_id": "nv-1"})))
                .expect(1),
            Mock::given(method("GET"))
                .and(path("/novita/v3/async/task-result"))
                .and(query_param("task_id", "nv-1"))
                .respond_with(in_turn(vec![
                    task("TASK_STATUS_QUEUED"),
                    task("TASK_STATUS_PROCESSING"),
                    done,
                ]))
                .expect(3),
        ]
    },
    media: mp4,
    cdn: Some(("/cdn/novita/video.mp4", "application/octet-stream")),
    kind: MediaKind::Video,
    mime: "video/mp4",
    pending: true,
};

#[tokio::test]
async fn novita_text_to_video() {
    check(&NOVITA_VIDEO).await;
}
