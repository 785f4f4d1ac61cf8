//! Every registered provider, for every task it serves, makes the right bytes in the sink through the
//! whole `MediaGenerator`: Hub mapping → the provider's protocol (with its pending states) → download →
//! `MemorySink`, against a wiremock server speaking that provider's protocol.
//!
//! Each case is declarative ([`Case`]): which provider and task, what the request carries (an input
//! image for the image tasks), the mocks of its protocol (which check that the image arrives in the
//! provider's own field), the bytes it serves and what the media must come out as. [`check`] runs one case and checks the outcome; the
//! [`every_registered_provider_and_task_has_a_case`] test keeps the case list in step with the registry.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use hf_media::sink::InputRecord;
use hf_media::{GenerateRequest, GenerationEvent, MediaInput, MediaKind, MediaLocation, MemorySink, ProviderRegistry};
use hf_media_tests::*;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, headers, method, path, query_param};
use wiremock::{Mock, MockBuilder, ResponseTemplate};

/// What a request carries besides the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Nothing (the text tasks).
    None,
    /// [`input_png`] as `MediaInput::bytes`: providers that take URLs get its `data:` URL.
    Bytes,
    /// [`input_png`] served by the mock server at [`INPUT_PATH`], given as that `http(s)` URL: providers
    /// that take URLs get it unchanged, and the facade downloads it once, without credentials.
    Url,
}

/// Where the mock server serves the input image of [`Input::Url`] cases.
const INPUT_PATH: &str = "/inputs/fox.png";

/// What a case's mocks are built from.
struct Served<'a> {
    /// The absolute URL of the media on the mock CDN (empty when the bytes come in the answer).
    cdn: &'a str,
    /// The media bytes (for answers that carry them inline).
    media: &'a [u8],
    /// The input image as a provider that takes URLs must receive it: the caller's URL as it is, or the
    /// `data:` URL of the bytes (empty without an input).
    image: &'a str,
}

/// What a submitted JSON body must hold beyond `body_partial_json`: exact values at JSON pointers
/// (arrays in full) and pointers that must be absent.
#[derive(Default)]
struct Body {
    at: Vec<(&'static str, Value)>,
    absent: Vec<&'static str>,
}

impl Body {
    fn at(mut self, pointer: &'static str, value: impl Into<Value>) -> Self {
        self.at.push((pointer, value.into()));
        self
    }

    fn lacks(mut self, pointer: &'static str) -> Self {
        self.absent.push(pointer);
        self
    }

    /// `builder` with a matcher per expectation.
    fn on(self, mut builder: MockBuilder) -> MockBuilder {
        for (pointer, value) in self.at {
            builder = builder.and(json_at(pointer, value));
        }
        for pointer in self.absent {
            builder = builder.and(json_lacks(pointer));
        }
        builder
    }
}

/// One provider × task round trip.
struct Case {
    /// The provider's Hub name (the mapping key and the router prefix).
    provider: &'static str,
    /// The mapping entry's task.
    task: &'static str,
    /// The mapping entry's `providerId`.
    provider_id: &'static str,
    /// What the request carries besides the prompt.
    input: Input,
    /// The mocks of the provider's protocol, given what is served and sent ([`Served`]). The CDN and the
    /// input image's URL are mounted by [`check`].
    mocks: fn(&Served) -> Vec<Mock>,
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
    let input = input_png();
    let input_url = format!("{}{INPUT_PATH}", server.uri());
    // What providers that take URLs must get, the request, and where the record says the input came from.
    let (image, request, source) = match case.input {
        Input::None => (String::new(), GenerateRequest::new(PROMPT), None),
        Input::Bytes => (
            data_url("image/png", &input),
            GenerateRequest::new(PROMPT).image(MediaInput::bytes(input.clone())),
            Some("bytes".to_owned()),
        ),
        Input::Url => (
            input_url.clone(),
            GenerateRequest::new(PROMPT).image(MediaInput::url(&input_url)),
            Some(input_url.clone()),
        ),
    };
    let request = request.model(MODEL);
    // The input's record: its source, and the hash, size and type of the PNG, computed here.
    let expected_inputs: Vec<InputRecord> = source
        .into_iter()
        .map(|source| InputRecord {
            source,
            sha256: sha256_hex(&input),
            bytes: input.len() as u64,
            mime: "image/png".into(),
        })
        .collect();
    let served = Served {
        cdn: &cdn_url,
        media: &expected,
        image: &image,
    };
    for mock in (case.mocks)(&served) {
        mock.mount(&server).await;
    }
    if case.input == Input::Url {
        Mock::given(method("GET"))
            .and(path(INPUT_PATH))
            .respond_with(bytes_response(input.clone(), "image/png"))
            .expect(1)
            .named("the input image's URL")
            .mount(&server)
            .await;
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
    let events = collect(generator.generate(request)).await;
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
    assert_eq!(
        media.inputs, expected_inputs,
        "{label}: the media names the input image it was made from"
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
    assert_eq!(
        stored[0].record.inputs, expected_inputs,
        "{label}: the sink's record names the input image"
    );

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
        } else if case.input == Input::Url && route == INPUT_PATH {
            assert!(
                request.headers.get("authorization").is_none(),
                "{label}: the input image's URL is fetched without credentials"
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
    if case.input == Input::Url {
        assert_eq!(
            requests_to(&server, INPUT_PATH).await.len(),
            1,
            "{label}: the input image is downloaded once"
        );
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
    FAL_AI_EDIT,
    FAL_AI_ANIMATE,
    FAL_AI_IMAGE_TEXT_IMAGE,
    FAL_AI_IMAGE_TEXT_VIDEO,
    HF_INFERENCE_IMAGE,
    HF_INFERENCE_EDIT,
    REPLICATE_IMAGE,
    REPLICATE_VIDEO,
    REPLICATE_EDIT,
    TOGETHER_IMAGE,
    TOGETHER_VIDEO,
    TOGETHER_EDIT,
    TOGETHER_ANIMATE,
    NSCALE_IMAGE,
    WAVESPEED_IMAGE,
    WAVESPEED_VIDEO,
    WAVESPEED_EDIT,
    WAVESPEED_ANIMATE,
    WAVESPEED_IMAGE_TEXT_IMAGE,
    WAVESPEED_IMAGE_TEXT_VIDEO,
    ZAI_ORG_IMAGE,
    NOVITA_VIDEO,
];

// --- fal-ai: queue (`?_subdomain=queue`), statuses at `{response_path}/status`, result at `{response_path}`.

/// fal's queue for `provider_id`, whose `response_url` path is `response_path`: the submit must hold the
/// prompt and `body`; IN_QUEUE → IN_PROGRESS → COMPLETED, then `result`.
fn fal_queue(provider_id: &str, response_path: &str, body: Body, result: Value) -> Vec<Mock> {
    vec![
        body.on(Mock::given(method("POST"))
            .and(path(format!("/fal-ai/{provider_id}")))
            .and(query_param("_subdomain", "queue"))
            .and(body_partial_json(json!({ "prompt": PROMPT }))))
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

/// A text task's fal body: no image field.
fn fal_no_image() -> Body {
    Body::default().lacks("/image_url").lacks("/image_urls")
}

/// A fal image's body: the image as `image_url` and as the one item of `image_urls`.
fn fal_image_fields(image: &str) -> Body {
    Body::default()
        .at("/image_url", image)
        .at("/image_urls", json!([image]))
}

/// A fal video's body: the image as `image_url` only (a video takes one image).
fn fal_video_fields(image: &str) -> Body {
    Body::default().at("/image_url", image).lacks("/image_urls")
}

const FAL_AI_IMAGE: Case = Case {
    provider: "fal-ai",
    task: "text-to-image",
    provider_id: "fal-ai/flux/dev",
    input: Input::None,
    mocks: |s| {
        fal_queue(
            "fal-ai/flux/dev",
            "/fal-ai/flux/requests/fal-1",
            fal_no_image(),
            json!({"images": [{"url": s.cdn, "content_type": "image/jpeg"}], "seed": 42}),
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
    input: Input::None,
    mocks: |s| {
        fal_queue(
            "fal-ai/wan/v2.2-a14b/text-to-video",
            "/fal-ai/wan/requests/fal-1",
            fal_no_image(),
            json!({"video": {"url": s.cdn, "content_type": "video/mp4"}, "seed": 3}),
        )
    },
    media: mp4,
    cdn: Some(("/cdn/fal/video.mp4", "application/octet-stream")),
    kind: MediaKind::Video,
    mime: "video/mp4",
    pending: true,
};

const FAL_AI_EDIT: Case = Case {
    provider: "fal-ai",
    task: "image-to-image",
    provider_id: "fal-ai/flux-kontext/dev",
    input: Input::Bytes,
    mocks: |s| {
        fal_queue(
            "fal-ai/flux-kontext/dev",
            "/fal-ai/flux-kontext/requests/fal-1",
            fal_image_fields(s.image),
            json!({"images": [{"url": s.cdn, "content_type": "image/png"}], "seed": 5}),
        )
    },
    media: png,
    cdn: Some(("/cdn/fal/edit.png", "application/octet-stream")),
    kind: MediaKind::Image,
    mime: "image/png",
    pending: true,
};

const FAL_AI_ANIMATE: Case = Case {
    provider: "fal-ai",
    task: "image-to-video",
    provider_id: "fal-ai/wan/v2.2-a14b/image-to-video",
    input: Input::Bytes,
    mocks: |s| {
        fal_queue(
            "fal-ai/wan/v2.2-a14b/image-to-video",
            "/fal-ai/wan/requests/fal-1",
            fal_video_fields(s.image),
            json!({"video": {"url": s.cdn, "content_type": "video/mp4"}}),
        )
    },
    media: mp4,
    cdn: Some(("/cdn/fal/animated.mp4", "video/mp4")),
    kind: MediaKind::Video,
    mime: "video/mp4",
    pending: true,
};

const FAL_AI_IMAGE_TEXT_IMAGE: Case = Case {
    provider: "fal-ai",
    task: "image-text-to-image",
    provider_id: "fal-ai/flux-2/edit",
    input: Input::Bytes,
    mocks: |s| {
        fal_queue(
            "fal-ai/flux-2/edit",
            "/fal-ai/flux-2/requests/fal-1",
            fal_image_fields(s.image),
            json!({"images": [{"url": s.cdn}]}),
        )
    },
    media: webp,
    cdn: Some(("/cdn/fal/flux-2.webp", "image/png")),
    kind: MediaKind::Image,
    mime: "image/webp",
    pending: true,
};

const FAL_AI_IMAGE_TEXT_VIDEO: Case = Case {
    provider: "fal-ai",
    task: "image-text-to-video",
    provider_id: "minimax/h3/image-to-video",
    input: Input::Bytes,
    mocks: |s| {
        fal_queue(
            "minimax/h3/image-to-video",
            "/minimax/h3/requests/fal-1",
            fal_video_fields(s.image),
            json!({"video": {"url": s.cdn}}),
        )
    },
    media: mp4,
    cdn: Some(("/cdn/fal/h3.mp4", "application/octet-stream")),
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

#[tokio::test]
async fn fal_ai_image_to_image() {
    check(&FAL_AI_EDIT).await;
}

#[tokio::test]
async fn fal_ai_image_to_video() {
    check(&FAL_AI_ANIMATE).await;
}

#[tokio::test]
async fn fal_ai_image_text_to_image() {
    check(&FAL_AI_IMAGE_TEXT_IMAGE).await;
}

#[tokio::test]
async fn fal_ai_image_text_to_video() {
    check(&FAL_AI_IMAGE_TEXT_VIDEO).await;
}

// --- hf-inference: the POST answers the raw bytes.

const HF_INFERENCE_IMAGE: Case = Case {
    provider: "hf-inference",
    task: "text-to-image",
    provider_id: MODEL,
    input: Input::None,
    mocks: |s| {
        vec![
            Mock::given(method("POST"))
                .and(path(format!("/hf-inference/models/{MODEL}")))
                .and(body_partial_json(json!({ "inputs": PROMPT })))
                .respond_with(bytes_response(s.media.to_vec(), "image/jpeg"))
                .expect(1),
        ]
    },
    media: png,
    cdn: None,
    kind: MediaKind::Image,
    mime: "image/png",
    pending: false,
};

/// With a prompt, the image goes as bare base64 in JSON `inputs` and the prompt in `parameters`.
const HF_INFERENCE_EDIT: Case = Case {
    provider: "hf-inference",
    task: "image-to-image",
    provider_id: "timbrooks/instruct-pix2pix",
    input: Input::Bytes,
    mocks: |s| {
        vec![
            Body::default()
                .at("/inputs", base64(&data_url_bytes(s.image)))
                .at("/parameters/prompt", PROMPT)
                .on(Mock::given(method("POST"))
                    .and(path("/hf-inference/models/timbrooks/instruct-pix2pix"))
                    .and(header("content-type", "application/json")))
                .respond_with(bytes_response(s.media.to_vec(), "image/jpeg"))
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

#[tokio::test]
async fn hf_inference_image_to_image() {
    check(&HF_INFERENCE_EDIT).await;
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

/// The create-prediction mock of `owner/name`, whose body must hold the prompt and `body`, answering
/// `answer` with 201.
fn replicate_create(model: &str, body: Body, answer: Value) -> Mock {
    body.on(Mock::given(method("POST"))
        .and(path(format!("/replicate/v1/models/{model}/predictions")))
        .and(header("prefer", "wait"))
        .and(body_partial_json(json!({ "input": { "prompt": PROMPT } }))))
        .respond_with(ResponseTemplate::new(201).set_body_json(answer))
        .expect(1)
}

/// A text task's replicate body: none of the four image keys.
fn replicate_no_image() -> Body {
    Body::default()
        .lacks("/input/image")
        .lacks("/input/images")
        .lacks("/input/input_image")
        .lacks("/input/input_images")
}

const REPLICATE_IMAGE: Case = Case {
    provider: "replicate",
    task: "text-to-image",
    provider_id: "black-forest-labs/flux-dev",
    input: Input::None,
    mocks: |s| {
        vec![replicate_create(
            "black-forest-labs/flux-dev",
            replicate_no_image(),
            prediction(
                "rp-1",
                "processing",
                json!([s.cdn, "https://replicate.delivery/out-1.webp"]),
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
    input: Input::None,
    mocks: |s| {
        vec![
            replicate_create(
                "wan-video/wan-2.2-t2v-fast",
                replicate_no_image(),
                prediction("rp-2", "starting", Value::Null),
            ),
            Mock::given(method("GET"))
                .and(path("/replicate/v1/predictions/rp-2"))
                .respond_with(in_turn(vec![
                    prediction("rp-2", "processing", Value::Null),
                    prediction("rp-2", "succeeded", json!(s.cdn)),
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

/// The image under all four keys models name it by: `image` and `input_image`, `images` and
/// `input_images`.
const REPLICATE_EDIT: Case = Case {
    provider: "replicate",
    task: "image-to-image",
    provider_id: "black-forest-labs/flux-kontext-dev",
    input: Input::Bytes,
    mocks: |s| {
        vec![replicate_create(
            "black-forest-labs/flux-kontext-dev",
            Body::default()
                .at("/input/image", s.image)
                .at("/input/images", json!([s.image]))
                .at("/input/input_image", s.image)
                .at("/input/input_images", json!([s.image])),
            prediction("rp-3", "succeeded", json!(s.cdn)),
        )]
    },
    media: png,
    cdn: Some(("/cdn/replicate/edit.png", "image/webp")),
    kind: MediaKind::Image,
    mime: "image/png",
    pending: false,
};

#[tokio::test]
async fn replicate_text_to_image() {
    check(&REPLICATE_IMAGE).await;
}

#[tokio::test]
async fn replicate_text_to_video() {
    check(&REPLICATE_VIDEO).await;
}

#[tokio::test]
async fn replicate_image_to_image() {
    check(&REPLICATE_EDIT).await;
}

// --- together: images in base64; videos as a `/v2/videos` job polled at `/v2/videos/{id}`.

/// Together's image route, whose body must hold the prompt, `model`, `response_format: base64` and
/// `body`, answering `media` in base64.
fn together_images(model: &str, body: Body, media: &[u8]) -> Mock {
    body.on(Mock::given(method("POST"))
        .and(path("/together/v1/images/generations"))
        .and(body_partial_json(json!({
            "prompt": PROMPT,
            "model": model,
            "response_format": "base64",
        }))))
    .respond_with(ok(json!({
        "id": "tg-1",
        "object": "list",
        "data": [{"index": 0, "b64_json": base64(media)}],
    })))
    .expect(1)
}

/// Together's video job: created with the prompt, `model` and `body`, then queued → in progress →
/// completed at `cdn`.
fn together_video(model: &str, body: Body, cdn: &str) -> Vec<Mock> {
    vec![
        body.on(Mock::given(method("POST"))
            .and(path("/together/v2/videos"))
            .and(body_partial_json(json!({ "prompt": PROMPT, "model": model }))))
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
}

const TOGETHER_IMAGE: Case = Case {
    provider: "together",
    task: "text-to-image",
    provider_id: "black-forest-labs/FLUX.1-dev",
    input: Input::None,
    mocks: |s| {
        vec![together_images(
            "black-forest-labs/FLUX.1-dev",
            Body::default().lacks("/image_url").lacks("/reference_images"),
            s.media,
        )]
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
    input: Input::None,
    mocks: |s| together_video("Wan-AI/Wan2.2-T2V-A14B", Body::default().lacks("/frame_images"), s.cdn),
    media: mp4,
    cdn: Some(("/cdn/together/video.mp4", "video/mp4")),
    kind: MediaKind::Video,
    mime: "video/mp4",
    pending: true,
};

/// FLUX.1 Kontext takes its image as `image_url` (every other model as `reference_images`, see
/// `image_inputs.rs`).
const TOGETHER_EDIT: Case = Case {
    provider: "together",
    task: "image-to-image",
    provider_id: "black-forest-labs/FLUX.1-kontext-dev",
    input: Input::Bytes,
    mocks: |s| {
        vec![together_images(
            "black-forest-labs/FLUX.1-kontext-dev",
            Body::default().at("/image_url", s.image).lacks("/reference_images"),
            s.media,
        )]
    },
    media: png,
    cdn: None,
    kind: MediaKind::Image,
    mime: "image/png",
    pending: false,
};

/// The input image as an `http(s)` URL: Together gets that URL as the first frame, unchanged.
const TOGETHER_ANIMATE: Case = Case {
    provider: "together",
    task: "image-to-video",
    provider_id: "Wan-AI/Wan2.2-I2V-A14B",
    input: Input::Url,
    mocks: |s| {
        together_video(
            "Wan-AI/Wan2.2-I2V-A14B",
            Body::default().at("/frame_images", json!([{"input_image": s.image, "frame": "first"}])),
            s.cdn,
        )
    },
    media: mp4,
    cdn: Some(("/cdn/together/animated.mp4", "application/octet-stream")),
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

#[tokio::test]
async fn together_image_to_image() {
    check(&TOGETHER_EDIT).await;
}

#[tokio::test]
async fn together_image_to_video() {
    check(&TOGETHER_ANIMATE).await;
}

// --- nscale: images in base64 (OpenAI images shape).

const NSCALE_IMAGE: Case = Case {
    provider: "nscale",
    task: "text-to-image",
    provider_id: "stabilityai/stable-diffusion-xl-base-1.0",
    input: Input::None,
    mocks: |s| {
        vec![
            Mock::given(method("POST"))
                .and(path("/nscale/v1/images/generations"))
                .and(body_partial_json(json!({
                    "prompt": PROMPT,
                    "model": "stabilityai/stable-diffusion-xl-base-1.0",
                    "response_format": "b64_json",
                })))
                .respond_with(ok(json!({"created": 1, "data": [{"b64_json": base64(s.media)}]})))
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

/// WaveSpeed's submit for `provider_id` (job `id`, `created`), whose body must hold the prompt and
/// `body`, and its result polls: created → processing → completed with `data.outputs[0] = cdn`.
fn wavespeed(provider_id: &str, id: &str, body: Body, cdn: &str) -> Vec<Mock> {
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
        body.on(Mock::given(method("POST"))
            .and(path(format!("/wavespeed/api/v3/{provider_id}")))
            .and(body_partial_json(json!({ "prompt": PROMPT }))))
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

/// A text task's WaveSpeed body: no image field.
fn wavespeed_no_image() -> Body {
    Body::default().lacks("/image").lacks("/images")
}

/// An image task's WaveSpeed body: the image as `image` and as the one item of `images`.
fn wavespeed_image_fields(image: &str) -> Body {
    Body::default().at("/image", image).at("/images", json!([image]))
}

const WAVESPEED_IMAGE: Case = Case {
    provider: "wavespeed",
    task: "text-to-image",
    provider_id: "wavespeed-ai/flux-dev",
    input: Input::None,
    mocks: |s| wavespeed("wavespeed-ai/flux-dev", "ws-img-1", wavespeed_no_image(), s.cdn),
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
    input: Input::None,
    mocks: |s| wavespeed("wavespeed-ai/wan-2.1/t2v-480p", "ws-vid-1", wavespeed_no_image(), s.cdn),
    media: mp4,
    cdn: Some(("/cdn/wavespeed/video.mp4", "video/mp4")),
    kind: MediaKind::Video,
    mime: "video/mp4",
    pending: true,
};

const WAVESPEED_EDIT: Case = Case {
    provider: "wavespeed",
    task: "image-to-image",
    provider_id: "wavespeed-ai/qwen-image/edit-plus",
    input: Input::Bytes,
    mocks: |s| {
        wavespeed(
            "wavespeed-ai/qwen-image/edit-plus",
            "ws-edit-1",
            wavespeed_image_fields(s.image),
            s.cdn,
        )
    },
    media: png,
    cdn: Some(("/cdn/wavespeed/edit.png", "image/jpeg")),
    kind: MediaKind::Image,
    mime: "image/png",
    pending: true,
};

const WAVESPEED_ANIMATE: Case = Case {
    provider: "wavespeed",
    task: "image-to-video",
    provider_id: "wavespeed-ai/wan-2.1/i2v-480p",
    input: Input::Bytes,
    mocks: |s| {
        wavespeed(
            "wavespeed-ai/wan-2.1/i2v-480p",
            "ws-anim-1",
            wavespeed_image_fields(s.image),
            s.cdn,
        )
    },
    media: mp4,
    cdn: Some(("/cdn/wavespeed/animated.mp4", "video/mp4")),
    kind: MediaKind::Video,
    mime: "video/mp4",
    pending: true,
};

const WAVESPEED_IMAGE_TEXT_IMAGE: Case = Case {
    provider: "wavespeed",
    task: "image-text-to-image",
    provider_id: "wavespeed-ai/flux-2-dev/edit",
    input: Input::Bytes,
    mocks: |s| {
        wavespeed(
            "wavespeed-ai/flux-2-dev/edit",
            "ws-it2i-1",
            wavespeed_image_fields(s.image),
            s.cdn,
        )
    },
    media: webp,
    cdn: Some(("/cdn/wavespeed/flux-2.webp", "application/octet-stream")),
    kind: MediaKind::Image,
    mime: "image/webp",
    pending: true,
};

const WAVESPEED_IMAGE_TEXT_VIDEO: Case = Case {
    provider: "wavespeed",
    task: "image-text-to-video",
    provider_id: "wavespeed-ai/ltx-video",
    input: Input::Bytes,
    mocks: |s| {
        wavespeed(
            "wavespeed-ai/ltx-video",
            "ws-it2v-1",
            wavespeed_image_fields(s.image),
            s.cdn,
        )
    },
    media: mp4,
    cdn: Some(("/cdn/wavespeed/ltx.mp4", "video/mp4")),
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

#[tokio::test]
async fn wavespeed_image_to_image() {
    check(&WAVESPEED_EDIT).await;
}

#[tokio::test]
async fn wavespeed_image_to_video() {
    check(&WAVESPEED_ANIMATE).await;
}

#[tokio::test]
async fn wavespeed_image_text_to_image() {
    check(&WAVESPEED_IMAGE_TEXT_IMAGE).await;
}

#[tokio::test]
async fn wavespeed_image_text_to_video() {
    check(&WAVESPEED_IMAGE_TEXT_VIDEO).await;
}

// --- zai-org: async image task, polled at `/api/paas/v4/async-result/{id}`, with zai's extra headers.

const ZAI_ORG_IMAGE: Case = Case {
    provider: "zai-org",
    task: "text-to-image",
    provider_id: "glm-image",
    input: Input::None,
    mocks: |s| {
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
                    json!({"id": "zt-1", "task_status": "SUCCESS", "image_result": [{"url": s.cdn}]}),
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
    input: Input::None,
    mocks: |s| {
        let task = |status: &str| json!({"task": {"task_id": "nv-1", "status": status, "progress_percent": 0}});
        let mut done = task("TASK_STATUS_SUCCEED");
        done["videos"] = json!([{"video_url": s.cdn, "video_url_ttl": "3600", "video_type": "mp4"}]);
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
