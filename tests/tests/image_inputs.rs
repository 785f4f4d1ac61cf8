//! Input images through the whole `MediaGenerator`, against wiremock providers: the same image bytes
//! handed to the next provider on a fallback, multi-image edits (and providers that take one image),
//! a chat's image parts, an input URL that does not answer, and Together's limit on inline first frames.
//!
//! Every expected image value is computed here from the PNG bytes the test made ([`data_url`],
//! [`sha256_hex`]), never read back from the library.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use hf_media::sink::InputRecord;
use hf_media::{ChatMessage, GenerateRequest, GenerationEvent, MediaInput, MemorySink};
use hf_media_tests::*;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Where the mock server serves input images given as URLs.
const INPUT_PATH: &str = "/inputs/fox.png";

/// A JSON answer.
fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

/// The record of an input image of `bytes` (a PNG) from `source`, computed here.
fn record(source: &str, bytes: &[u8]) -> InputRecord {
    InputRecord {
        source: source.to_owned(),
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
        mime: "image/png".into(),
    }
}

/// Mounts the media download at `cdn_path`, expected once, and returns its absolute URL.
async fn mount_cdn(server: &MockServer, cdn_path: &str, media: Vec<u8>) -> String {
    Mock::given(method("GET"))
        .and(path(cdn_path))
        .respond_with(bytes_response(media, "application/octet-stream"))
        .expect(1)
        .named("media download")
        .mount(server)
        .await;
    format!("{}{cdn_path}", server.uri())
}

/// Serves `bytes` as an input image at [`INPUT_PATH`], expected `times` times; returns its URL.
async fn mount_input(server: &MockServer, bytes: Vec<u8>, times: u64) -> String {
    Mock::given(method("GET"))
        .and(path(INPUT_PATH))
        .respond_with(bytes_response(bytes, "image/png"))
        .expect(times)
        .named("input image URL")
        .mount(server)
        .await;
    format!("{}{INPUT_PATH}", server.uri())
}

/// Runs `request` on a generator pointed at `server`, with a fresh memory sink.
async fn run(server: &MockServer, request: GenerateRequest) -> (Vec<GenerationEvent>, MemorySink) {
    let sink = MemorySink::new();
    let events = collect(generator(server, Arc::new(sink.clone())).generate(request)).await;
    (events, sink)
}

/// The one request received on `route`, its JSON body.
async fn body_on(server: &MockServer, route: &str) -> Value {
    let requests = requests_to(server, route).await;
    assert_eq!(requests.len(), 1, "expected one request on {route}");
    json_body(&requests[0])
}

/// The one request received on `route`, as snapshot JSON: seeds and inline images redacted.
async fn snapshot_of(server: &MockServer, route: &str) -> Value {
    inline_images_redacted(random_seeds_redacted(captured_request(server, route).await))
}

/// Checks that every request to [`INPUT_PATH`] went without credentials, and returns how many there were.
async fn input_downloads(server: &MockServer) -> usize {
    let downloads = requests_to(server, INPUT_PATH).await;
    for request in &downloads {
        assert!(
            request.headers.get("authorization").is_none(),
            "the input image's URL must be fetched without credentials"
        );
    }
    downloads.len()
}

/// `n` with thousands separators (`61,440`).
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[tokio::test]
async fn a_provider_that_refuses_hands_the_same_image_bytes_to_the_next_one() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({
            "fal-ai": live("fal-ai/flux-kontext/dev", "image-to-image"),
            "replicate": live("black-forest-labs/flux-kontext-dev", "image-to-image"),
        }),
    )
    .await;
    let fal_route = "/fal-ai/fal-ai/flux-kontext/dev";
    let replicate_route = "/replicate/v1/models/black-forest-labs/flux-kontext-dev/predictions";
    Mock::given(method("POST"))
        .and(path(fal_route))
        .respond_with(ResponseTemplate::new(402).set_body_json(json!({"detail": "Exhausted balance"})))
        .expect(1)
        .mount(&server)
        .await;
    let cdn = mount_cdn(&server, "/cdn/replicate/edit.png", png()).await;
    Mock::given(method("POST"))
        .and(path(replicate_route))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": "rp-1", "status": "succeeded", "output": cdn, "error": null,
        })))
        .expect(1)
        .mount(&server)
        .await;

    let image = input_png();
    let request = GenerateRequest::new(PROMPT)
        .model(MODEL)
        .image(MediaInput::bytes(image.clone()));
    let (events, sink) = run(&server, request).await;

    assert_eq!(attempts(&events), ["fal-ai", "replicate"], "{events:#?}");
    let fallen = fallbacks(&events);
    assert_eq!(fallen.len(), 1, "{events:#?}");
    assert_eq!((fallen[0].0, fallen[0].1), ("fal-ai", Some(402)));
    assert_eq!(done(&events), (1, 0));
    let media = single_media(&events);
    assert_eq!(media.provider, "replicate");
    assert_eq!(media.inputs, [record("bytes", &image)]);
    assert_eq!(sink.items()[0].record.inputs, [record("bytes", &image)]);

    // Both providers got the same data: URL of the same bytes, in their own fields.
    let expected = data_url("image/png", &image);
    let fal = body_on(&server, fal_route).await;
    let replicate = body_on(&server, replicate_route).await;
    assert_eq!(fal["image_url"], expected);
    assert_eq!(fal["image_urls"], json!([expected]));
    for key in ["image", "input_image"] {
        assert_eq!(replicate["input"][key], expected, "replicate input.{key}");
    }
    for key in ["images", "input_images"] {
        assert_eq!(replicate["input"][key], json!([expected]), "replicate input.{key}");
    }
    let sent_to_fal = data_url_bytes(fal["image_url"].as_str().unwrap());
    let sent_to_replicate = data_url_bytes(replicate["input"]["image"].as_str().unwrap());
    assert_eq!(sent_to_fal, image);
    assert_eq!(sha256_hex(&sent_to_replicate), media.inputs[0].sha256);

    insta::assert_json_snapshot!(
        "fallback_requests",
        json!([
            snapshot_of(&server, fal_route).await,
            snapshot_of(&server, replicate_route).await,
        ])
    );
}

/// One provider serving `model` for image-to-image (`provider: providerId`), asked to edit `images`.
struct Edit {
    provider: &'static str,
    provider_id: &'static str,
    /// The route the edit is posted to.
    route: &'static str,
    /// The provider's answer, given the media bytes and the CDN URL.
    answer: fn(media: &[u8], cdn: &str) -> ResponseTemplate,
}

/// Runs `edit` with the two input images on a fresh server; returns the events, the sink and the server.
async fn multi_image(edit: &Edit, first: &[u8], second: &[u8]) -> (Vec<GenerationEvent>, MemorySink, MockServer) {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ edit.provider: live(edit.provider_id, "image-to-image") }),
    )
    .await;
    let cdn = format!("{}/cdn/out.png", server.uri());
    let answer = (edit.answer)(&png(), &cdn);
    Mock::given(method("POST"))
        .and(path(edit.route))
        .respond_with(answer)
        .expect(1)
        .mount(&server)
        .await;
    // Served for the providers that answer a URL; not every one downloads it.
    Mock::given(method("GET"))
        .and(path("/cdn/out.png"))
        .respond_with(bytes_response(png(), "image/png"))
        .mount(&server)
        .await;
    let request = GenerateRequest::new(PROMPT)
        .model(MODEL)
        .image(MediaInput::bytes(first.to_vec()))
        .image(MediaInput::bytes(second.to_vec()));
    let (events, sink) = run(&server, request).await;
    assert_eq!(attempts(&events), [edit.provider], "{events:#?}");
    assert_eq!(done(&events), (1, 0), "{}: {events:#?}", edit.provider);
    assert_eq!(sink.items()[0].bytes.as_ref(), png().as_slice());
    (events, sink, server)
}

const FAL_EDIT: Edit = Edit {
    provider: "fal-ai",
    provider_id: "fal-ai/flux-2/edit",
    route: "/fal-ai/fal-ai/flux-2/edit",
    // A synchronous deployment answers the result at once.
    answer: |_, cdn| ok(json!({"images": [{"url": cdn}]})),
};

const TOGETHER_FLUX2_EDIT: Edit = Edit {
    provider: "together",
    provider_id: "black-forest-labs/FLUX.2-dev",
    route: "/together/v1/images/generations",
    answer: |media, _| ok(json!({"data": [{"b64_json": base64(media)}]})),
};

const TOGETHER_KONTEXT_EDIT: Edit = Edit {
    provider: "together",
    provider_id: "black-forest-labs/FLUX.1-kontext-pro",
    route: "/together/v1/images/generations",
    answer: |media, _| ok(json!({"data": [{"b64_json": base64(media)}]})),
};

const HF_INFERENCE_EDIT: Edit = Edit {
    provider: "hf-inference",
    provider_id: "timbrooks/instruct-pix2pix",
    route: "/hf-inference/models/timbrooks/instruct-pix2pix",
    answer: |media, _| bytes_response(media.to_vec(), "image/jpeg"),
};

#[tokio::test]
async fn a_multi_image_edit_reaches_providers_that_take_several_images_in_order() {
    let (a, b) = (input_png(), second_input_png());
    let (url_a, url_b) = (data_url("image/png", &a), data_url("image/png", &b));
    let both = [record("bytes", &a), record("bytes", &b)];

    let (events, sink, fal_server) = multi_image(&FAL_EDIT, &a, &b).await;
    assert!(warnings(&events).is_empty(), "fal takes both: {:?}", warnings(&events));
    let fal = body_on(&fal_server, FAL_EDIT.route).await;
    assert_eq!(fal["image_url"], url_a, "the first image");
    assert_eq!(fal["image_urls"], json!([url_a, url_b]), "every image, in order");
    assert_eq!(single_media(&events).inputs, both);
    assert_eq!(sink.items()[0].record.inputs, both);

    let (events, sink, server) = multi_image(&TOGETHER_FLUX2_EDIT, &a, &b).await;
    assert!(
        warnings(&events).is_empty(),
        "FLUX.2 on together takes both: {:?}",
        warnings(&events)
    );
    let together = body_on(&server, TOGETHER_FLUX2_EDIT.route).await;
    assert_eq!(together["reference_images"], json!([url_a, url_b]));
    assert!(together.get("image_url").is_none(), "{together}");
    assert_eq!(single_media(&events).inputs, both);
    assert_eq!(sink.items()[0].record.inputs, both);

    // Providers that take one image get the first, and say what they left out.
    let (events, _, hf_server) = multi_image(&HF_INFERENCE_EDIT, &a, &b).await;
    let hf = body_on(&hf_server, HF_INFERENCE_EDIT.route).await;
    assert_eq!(hf["inputs"], base64(&a), "the first image, in bare base64");
    assert_eq!(hf["parameters"]["prompt"], PROMPT);
    assert_eq!(
        warnings(&events),
        [
            "hf-inference takes one input image for image-to-image: the first is sent, 1 more image left out of \
          the request"
        ]
    );

    let (events, _, server) = multi_image(&TOGETHER_KONTEXT_EDIT, &a, &b).await;
    let kontext = body_on(&server, TOGETHER_KONTEXT_EDIT.route).await;
    assert_eq!(kontext["image_url"], url_a);
    assert!(kontext.get("reference_images").is_none(), "{kontext}");
    assert_eq!(
        warnings(&events),
        [
            "together takes one input image for image-to-image: the first is sent, 1 more image left out of the \
          request"
        ]
    );

    insta::assert_json_snapshot!(
        "multi_image_requests",
        json!([
            snapshot_of(&fal_server, FAL_EDIT.route).await,
            snapshot_of(&hf_server, HF_INFERENCE_EDIT.route).await,
        ])
    );
}

/// A user message of `text` and one `image_url` part per URL.
fn chat(text: &str, image_urls: &[&str]) -> Vec<ChatMessage> {
    let mut content = vec![json!({"type": "text", "text": text})];
    content.extend(
        image_urls
            .iter()
            .map(|url| json!({"type": "image_url", "image_url": {"url": url}})),
    );
    serde_json::from_value(json!([
        {"role": "system", "content": "You make pictures."},
        {"role": "user", "content": content},
    ]))
    .unwrap()
}

#[tokio::test]
async fn a_chats_image_parts_are_edited_when_a_provider_edits() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ "fal-ai": live("fal-ai/flux-2/edit", "image-to-image") }),
    )
    .await;
    let (a, b) = (input_png(), second_input_png());
    let url = mount_input(&server, a.clone(), 1).await;
    let cdn = mount_cdn(&server, "/cdn/fal/edit.png", png()).await;
    Mock::given(method("POST"))
        .and(path(FAL_EDIT.route))
        .respond_with(ok(json!({"images": [{"url": cdn}]})))
        .expect(1)
        .mount(&server)
        .await;
    let inline = data_url("image/png", &b);
    let request = GenerateRequest::from_messages(chat("Make the fox golden", &[&url, &inline])).model(MODEL);
    let (events, sink) = run(&server, request).await;

    assert_eq!(attempts(&events), ["fal-ai"], "{events:#?}");
    assert_eq!(done(&events), (1, 0));
    assert!(warnings(&events).is_empty(), "{:?}", warnings(&events));
    let body = body_on(&server, FAL_EDIT.route).await;
    assert_eq!(body["prompt"], "Make the fox golden", "the chat's text is the prompt");
    assert_eq!(body["image_url"], url, "the chat's http(s) URL, unchanged");
    assert_eq!(body["image_urls"], json!([url, inline]));
    assert_eq!(input_downloads(&server).await, 1, "the chat's URL is read once");
    let expected = [record(&url, &a), record("chat image (data: URL)", &b)];
    assert_eq!(single_media(&events).inputs, expected);
    assert_eq!(sink.items()[0].record.inputs, expected);
}

#[tokio::test]
async fn a_chats_image_parts_are_left_out_with_a_warning_when_the_model_only_makes_images_from_text() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, json!({ "hf-inference": live(MODEL, "text-to-image") })).await;
    let url = mount_input(&server, input_png(), 0).await;
    let route = format!("/hf-inference/models/{MODEL}");
    Mock::given(method("POST"))
        .and(path(&route))
        .respond_with(bytes_response(png(), "image/png"))
        .expect(1)
        .mount(&server)
        .await;
    let request = GenerateRequest::from_messages(chat("Make the fox golden", &[&url])).model(MODEL);
    let (events, sink) = run(&server, request).await;

    assert_eq!(attempts(&events), ["hf-inference"], "{events:#?}");
    assert_eq!(done(&events), (1, 0));
    let warned = warnings(&events);
    assert_eq!(warned.len(), 1, "{warned:?}");
    for part in ["chat's 1 image", "left out", MODEL] {
        assert!(warned[0].contains(part), "{part}: {}", warned[0]);
    }
    // The warning comes before the attempt: it is about the whole request.
    let warned_at = events
        .iter()
        .position(|e| matches!(e, GenerationEvent::Warning { task: None, .. }))
        .unwrap_or_else(|| panic!("a request-wide warning: {events:#?}"));
    let attempt_at = events
        .iter()
        .position(|e| matches!(e, GenerationEvent::Attempt { .. }))
        .unwrap();
    assert!(warned_at < attempt_at);

    let body = body_on(&server, &route).await;
    assert_eq!(body["inputs"], "Make the fox golden", "a text-to-image request");
    assert!(body["parameters"].get("prompt").is_none(), "{body}");
    assert_eq!(input_downloads(&server).await, 0, "a left-out image is not fetched");
    assert!(single_media(&events).inputs.is_empty());
    assert!(sink.items()[0].record.inputs.is_empty());
}

#[tokio::test]
async fn an_input_url_that_answers_404_is_a_clear_error_and_no_provider_is_called() {
    let server = start_server().await;
    // Whether the Hub is asked before the input is read is the facade's business: either way, no
    // provider may be.
    hub_mapping(
        MODEL,
        json!({ "fal-ai": live("fal-ai/flux-kontext/dev", "image-to-image") }),
    )
    .mount(&server)
    .await;
    Mock::given(method("GET"))
        .and(path(INPUT_PATH))
        .respond_with(ResponseTemplate::new(404).set_body_string("Not Found"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path_regex("^/fal-ai/"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .named("fal-ai routes")
        .mount(&server)
        .await;
    let url = format!("{}{INPUT_PATH}", server.uri());
    let request = GenerateRequest::new(PROMPT).model(MODEL).image(MediaInput::url(&url));
    let (events, sink) = run(&server, request).await;

    let error = single_error(&events);
    assert_eq!(error.kind(), "invalid_input", "{error}");
    assert!(error.is_usage(), "{error}");
    let text = error.to_string();
    assert!(text.contains(&url), "the error names the URL: {text}");
    assert!(text.contains("404"), "the error says what the URL answered: {text}");
    assert!(attempts(&events).is_empty(), "{events:#?}");
    assert!(media(&events).is_empty());
    assert_eq!(done(&events).0, 0);
    assert!(sink.items().is_empty());
    assert_eq!(input_downloads(&server).await, 1);
    let routes: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_owned())
        .filter(|p| !p.starts_with("/api/models/") && p != INPUT_PATH)
        .collect();
    assert!(routes.is_empty(), "nothing but the Hub and the input URL: {routes:?}");
}

#[tokio::test]
async fn together_refuses_a_large_inline_first_frame_and_takes_the_same_image_as_a_url() {
    let big = noisy_png(160, 160);
    let inline = data_url("image/png", &big);
    assert!(
        inline.len() > 61_440,
        "the test image must be over the limit: {}",
        inline.len()
    );

    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ "together": live("Wan-AI/Wan2.2-I2V-A14B", "image-to-video") }),
    )
    .await;
    let videos = Mock::given(method("POST"))
        .and(path("/together/v2/videos"))
        .respond_with(ok(json!({"id": "tv-1", "status": "queued"})))
        .named("together's video route")
        .expect(0)
        .mount_as_scoped(&server)
        .await;
    // One generator for both requests: the Hub's mapping is asked once.
    let sink = MemorySink::new();
    let generator = generator(&server, Arc::new(sink.clone()));
    let request = GenerateRequest::new(PROMPT)
        .model(MODEL)
        .image(MediaInput::bytes(big.clone()));
    let events = collect(generator.generate(request)).await;
    let error = single_error(&events);
    let text = error.to_string();
    for part in [
        "together",
        &format!("{} characters", grouped(inline.len())),
        "61,440",
        "http(s) URL",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert!(media(&events).is_empty());
    assert_eq!(done(&events), (0, 1));
    assert!(
        requests_to(&server, "/together/v2/videos").await.is_empty(),
        "nothing was sent to together"
    );
    drop(videos);

    // The same image as an http(s) URL goes as that URL.
    let url = mount_input(&server, big.clone(), 1).await;
    let cdn = mount_cdn(&server, "/cdn/together/video.mp4", mp4()).await;
    Mock::given(method("POST"))
        .and(path("/together/v2/videos"))
        .and(json_at(
            "/frame_images",
            json!([{"input_image": url, "frame": "first"}]),
        ))
        .respond_with(ok(json!({"id": "tv-2", "status": "queued"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/together/v2/videos/tv-2"))
        .respond_with(ok(
            json!({"id": "tv-2", "status": "completed", "outputs": {"video_url": cdn}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let request = GenerateRequest::new(PROMPT).model(MODEL).image(MediaInput::url(&url));
    let events = collect(generator.generate(request)).await;
    assert_eq!(done(&events), (1, 0), "{events:#?}");
    assert_eq!(single_media(&events).inputs, [record(&url, &big)]);
    assert_eq!(sink.items()[0].bytes.as_ref(), mp4().as_slice());
    assert_eq!(input_downloads(&server).await, 1);
}
