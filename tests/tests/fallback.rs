//! Provider choice and fallback: which providers are tried, in which order, what stops the chain, and
//! what the caller is told.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use std::time::Duration;

use hf_media::{Error, FileSink, GenerateRequest, GenerationEvent, MemorySink, PollConfig};
use hf_media_tests::*;
use serde_json::json;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CREDITS: &str = "You have exceeded your monthly included credits for Inference Providers. Subscribe to PRO to get 20x more monthly included credits.";

const FAL_SUBMIT: &str = "/fal-ai/fal-ai/flux/dev";
const REPLICATE_ROUTE: &str = "/replicate/v1/models/black-forest-labs/flux-dev/predictions";
const TOGETHER_ROUTE: &str = "/together/v1/images/generations";

/// fal-ai, replicate and together, all live, in this order.
fn three_live() -> serde_json::Value {
    json!({
        "fal-ai": live("fal-ai/flux/dev", "text-to-image"),
        "replicate": live("black-forest-labs/flux-dev", "text-to-image"),
        "together": live("black-forest-labs/FLUX.1-dev", "text-to-image"),
    })
}

/// Mounts a mock on `route` (POST) answering `response`, expecting `calls` requests.
async fn mount_post(server: &MockServer, route: &str, response: ResponseTemplate, calls: u64) {
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(response)
        .expect(calls)
        .mount(server)
        .await;
}

/// Mounts a together image route that succeeds once with a PNG in base64.
async fn mount_together_ok(server: &MockServer) {
    let answer = json!({"data": [{"index": 0, "b64_json": base64(&png())}]});
    mount_post(
        server,
        TOGETHER_ROUTE,
        ResponseTemplate::new(200).set_body_json(answer),
        1,
    )
    .await;
}

/// Mounts a replicate route that succeeds once, with the media on `/cdn/r.png`.
async fn mount_replicate_ok(server: &MockServer) {
    let answer = json!({"id": "p1", "status": "succeeded", "output": format!("{}/cdn/r.png", server.uri())});
    mount_post(
        server,
        REPLICATE_ROUTE,
        ResponseTemplate::new(201).set_body_json(answer),
        1,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/cdn/r.png"))
        .respond_with(bytes_response(png(), "image/png"))
        .expect(1)
        .mount(server)
        .await;
}

/// Runs `model` once into a fresh `MemorySink`.
async fn run(server: &MockServer, model: &str) -> (Vec<GenerationEvent>, MemorySink) {
    let sink = MemorySink::new();
    let generator = generator(server, Arc::new(sink.clone()));
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(model))).await;
    (events, sink)
}

#[tokio::test]
async fn a_400_401_or_402_falls_back_to_the_next_provider() {
    let cases = [
        (
            400,
            ResponseTemplate::new(400).set_body_json(json!({"detail": "Unsupported data URL"})),
            "Unsupported data URL",
        ),
        (
            401,
            ResponseTemplate::new(401)
                .insert_header("x-error-message", "Invalid credentials in Authorization header")
                .set_body_json(json!({"error": "Invalid username or password."})),
            "Invalid credentials in Authorization header",
        ),
        (
            402,
            ResponseTemplate::new(402).set_body_json(json!({"error": CREDITS})),
            CREDITS,
        ),
    ];
    for (status, response, message) in cases {
        let server = start_server().await;
        mount_hub_mapping(&server, MODEL, three_live()).await;
        mount_post(&server, FAL_SUBMIT, response, 1).await;
        mount_replicate_ok(&server).await;
        mount_post(&server, TOGETHER_ROUTE, ResponseTemplate::new(500), 0).await;
        let (events, sink) = run(&server, MODEL).await;

        assert_eq!(attempts(&events), ["fal-ai", "replicate"], "HTTP {status}");
        assert_eq!(fallbacks(&events), [("fal-ai", Some(status), message)], "HTTP {status}");
        let fallback_at = events
            .iter()
            .position(|e| matches!(e, GenerationEvent::Fallback { .. }))
            .unwrap();
        let second_attempt = events
            .iter()
            .position(|e| matches!(e, GenerationEvent::Attempt { provider, .. } if provider == "replicate"))
            .unwrap();
        assert!(
            fallback_at < second_attempt,
            "the fallback is reported before the next attempt"
        );
        let media = single_media(&events);
        assert_eq!(media.provider, "replicate", "HTTP {status}");
        assert!(errors(&events).is_empty(), "HTTP {status}: {events:#?}");
        assert_eq!(done(&events), (1, 0));
        assert_eq!(sink.items()[0].bytes.as_ref(), png().as_slice());
    }
}

#[tokio::test]
async fn a_404_stops_without_asking_the_next_provider() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, three_live()).await;
    mount_post(
        &server,
        FAL_SUBMIT,
        ResponseTemplate::new(404).set_body_raw("404: Not Found", "text/plain"),
        1,
    )
    .await;
    mount_post(&server, REPLICATE_ROUTE, ResponseTemplate::new(201), 0).await;
    mount_post(&server, TOGETHER_ROUTE, ResponseTemplate::new(200), 0).await;
    let (events, sink) = run(&server, MODEL).await;

    assert_eq!(attempts(&events), ["fal-ai"]);
    assert!(fallbacks(&events).is_empty());
    let error = single_error(&events);
    match error {
        Error::ModelNotSupported {
            model,
            provider,
            status,
            message,
        } => {
            assert_eq!(
                (model.as_str(), provider.as_str(), *status),
                (MODEL, "fal-ai", Some(404))
            );
            assert_eq!(message, "404: Not Found");
        }
        other => panic!("expected ModelNotSupported, got {other:?}"),
    }
    assert_eq!(error.kind(), "model_not_supported");
    assert_eq!(done(&events), (0, 1));
    assert!(sink.is_empty());
}

#[tokio::test]
async fn every_provider_failing_lists_each_attempt() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, three_live()).await;
    mount_post(
        &server,
        FAL_SUBMIT,
        ResponseTemplate::new(402).set_body_json(json!({"error": CREDITS})),
        1,
    )
    .await;
    mount_post(
        &server,
        REPLICATE_ROUTE,
        ResponseTemplate::new(401).set_body_json(json!({"detail": "Unauthenticated"})),
        1,
    )
    .await;
    mount_post(
        &server,
        TOGETHER_ROUTE,
        ResponseTemplate::new(400).set_body_json(
            json!({"id": "x", "error": {"message": "Invalid request", "type": "invalid_request_error"}}),
        ),
        1,
    )
    .await;
    let (events, sink) = run(&server, MODEL).await;

    assert_eq!(attempts(&events), ["fal-ai", "replicate", "together"]);
    let error = single_error(&events);
    let Error::AllProvidersFailed { model, attempts } = error else {
        panic!("expected AllProvidersFailed, got {error:?}");
    };
    assert_eq!(model, MODEL);
    let listed: Vec<(&str, Option<u16>, &str, &str)> = attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.status, a.kind, a.message.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("fal-ai", Some(402), "http", CREDITS),
            ("replicate", Some(401), "http", "Unauthenticated"),
            ("together", Some(400), "http", "Invalid request"),
        ]
    );
    assert_eq!(error.kind(), "all_providers_failed");
    let shown = error.to_string();
    for part in [
        "fal-ai (HTTP 402)",
        "replicate (HTTP 401)",
        "together (HTTP 400)",
        "monthly included credits",
    ] {
        assert!(shown.contains(part), "{part} missing from: {shown}");
    }
    assert_eq!(done(&events), (0, 1));
    assert!(sink.is_empty());
}

#[tokio::test]
async fn a_named_provider_is_the_only_one_asked() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, three_live()).await;
    mount_post(&server, FAL_SUBMIT, ResponseTemplate::new(200), 0).await;
    mount_post(&server, REPLICATE_ROUTE, ResponseTemplate::new(201), 0).await;
    mount_together_ok(&server).await;
    let (events, sink) = run(&server, &format!("{MODEL}:together")).await;

    assert_eq!(attempts(&events), ["together"]);
    assert_eq!(single_media(&events).provider, "together");
    assert_eq!(
        single_media(&events).model,
        MODEL,
        "the `:provider` suffix is not part of the model"
    );
    assert!(
        warnings(&events).is_empty(),
        "a live named provider needs no warning: {events:#?}"
    );
    assert_eq!(sink.len(), 1);
}

#[tokio::test]
async fn a_named_provider_that_fails_does_not_fall_back() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, three_live()).await;
    mount_post(&server, FAL_SUBMIT, ResponseTemplate::new(200), 0).await;
    mount_post(&server, REPLICATE_ROUTE, ResponseTemplate::new(201), 0).await;
    mount_post(
        &server,
        TOGETHER_ROUTE,
        ResponseTemplate::new(402).set_body_json(json!({"error": CREDITS})),
        1,
    )
    .await;
    let (events, _) = run(&server, &format!("{MODEL}:together")).await;

    assert_eq!(attempts(&events), ["together"]);
    let Error::AllProvidersFailed { attempts, .. } = single_error(&events) else {
        panic!("expected AllProvidersFailed: {events:#?}");
    };
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].provider.as_str(), attempts[0].status),
        ("together", Some(402))
    );
}

#[tokio::test]
async fn preferred_providers_are_tried_first() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, three_live()).await;
    mount_post(&server, FAL_SUBMIT, ResponseTemplate::new(200), 0).await;
    mount_post(&server, REPLICATE_ROUTE, ResponseTemplate::new(201), 0).await;
    mount_together_ok(&server).await;
    let sink = MemorySink::new();
    let generator = builder(&server)
        .provider_order(["together"])
        .sink(Arc::new(sink.clone()))
        .build()
        .unwrap();
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;
    assert_eq!(attempts(&events), ["together"]);
    assert_eq!(sink.len(), 1);
}

#[tokio::test]
async fn only_live_entries_are_used_unless_named() {
    let mapping = json!({
        "fal-ai": entry("staging", "fal-ai/flux/dev", "text-to-image"),
        "replicate": entry("error", "black-forest-labs/flux-dev", "text-to-image"),
        "together": live("black-forest-labs/FLUX.1-dev", "text-to-image"),
    });

    // Not named: the staging and error entries are left out.
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, mapping.clone()).await;
    mount_post(&server, FAL_SUBMIT, ResponseTemplate::new(200), 0).await;
    mount_post(&server, REPLICATE_ROUTE, ResponseTemplate::new(201), 0).await;
    mount_together_ok(&server).await;
    let (events, _) = run(&server, MODEL).await;
    assert_eq!(attempts(&events), ["together"]);
    assert_eq!(single_media(&events).provider, "together");

    // Named: the staging entry is used, with a warning.
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, mapping).await;
    mount_post(&server, TOGETHER_ROUTE, ResponseTemplate::new(200), 0).await;
    mount_replicate_ok(&server).await;
    let (events, _) = run(&server, &format!("{MODEL}:replicate")).await;
    assert_eq!(attempts(&events), ["replicate"]);
    assert_eq!(single_media(&events).provider, "replicate");
    let warned = warnings(&events);
    assert_eq!(warned.len(), 1, "{events:#?}");
    assert!(
        warned[0].contains("replicate") && warned[0].contains("health check"),
        "{}",
        warned[0]
    );
}

#[tokio::test]
async fn other_tasks_and_unknown_providers_are_skipped_with_a_warning() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({
            "hf-inference": live(MODEL, "conversational"),
            "nebius": live("black-forest-labs/flux-dev", "text-to-image"),
            "together": live("black-forest-labs/FLUX.1-dev", "text-to-image"),
        }),
    )
    .await;
    Mock::given(path_regex("^/(hf-inference|nebius)/"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    mount_together_ok(&server).await;
    let (events, sink) = run(&server, MODEL).await;

    assert_eq!(attempts(&events), ["together"]);
    assert_eq!(sink.len(), 1);
    let warned = warnings(&events);
    assert_eq!(warned.len(), 2, "{events:#?}");
    assert!(
        warned[0].contains("hf-inference") && warned[0].contains("conversational"),
        "{}",
        warned[0]
    );
    assert!(warned[1].contains("nebius"), "{}", warned[1]);
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, GenerationEvent::Warning { task: Some(_), .. })),
        "skipped entries concern the whole request"
    );
    let first_warning = events
        .iter()
        .position(|e| matches!(e, GenerationEvent::Warning { .. }))
        .unwrap();
    let first_attempt = events
        .iter()
        .position(|e| matches!(e, GenerationEvent::Attempt { .. }))
        .unwrap();
    assert!(first_warning < first_attempt);
    assert_eq!(done(&events), (1, 0));
}

#[tokio::test]
async fn an_unknown_model_on_the_hub_is_model_not_found() {
    let server = start_server().await;
    Mock::given(method("GET"))
        .and(path("/api/models/acme/no-such-model"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": "Repository not found"})))
        .expect(1)
        .mount(&server)
        .await;
    let (events, _) = run(&server, "acme/no-such-model").await;

    assert!(attempts(&events).is_empty());
    let all = errors(&events);
    assert_eq!(all.len(), 1);
    let (task, error) = all[0];
    assert_eq!(task, None, "the whole request failed before any generation started");
    assert_eq!(error.kind(), "model_not_found");
    assert!(error.to_string().contains("acme/no-such-model"), "{error}");
    assert_eq!(done(&events), (0, 1));
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1, "nothing but the Hub is asked");
}

#[tokio::test]
async fn malformed_json_falls_back_as_an_invalid_response() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({
            "together": live("black-forest-labs/FLUX.1-dev", "text-to-image"),
            "replicate": live("black-forest-labs/flux-dev", "text-to-image"),
        }),
    )
    .await;
    mount_post(
        &server,
        TOGETHER_ROUTE,
        ResponseTemplate::new(200).set_body_raw("{\"data\": [{\"b64_json\": ", "application/json"),
        1,
    )
    .await;
    mount_replicate_ok(&server).await;
    let (events, sink) = run(&server, MODEL).await;

    assert_eq!(attempts(&events), ["together", "replicate"]);
    let fell = fallbacks(&events);
    assert_eq!(fell.len(), 1);
    assert_eq!((fell[0].0, fell[0].1), ("together", None));
    assert!(
        fell[0].2.contains("invalid response") && fell[0].2.contains("not valid JSON"),
        "{}",
        fell[0].2
    );
    assert_eq!(single_media(&events).provider, "replicate");
    assert_eq!(sink.len(), 1);
}

#[tokio::test]
async fn answers_without_media_everywhere_fail_as_invalid_responses() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({
            "fal-ai": live("fal-ai/flux/dev", "text-to-image"),
            "together": live("black-forest-labs/FLUX.1-dev", "text-to-image"),
        }),
    )
    .await;
    mount_post(
        &server,
        FAL_SUBMIT,
        ResponseTemplate::new(200).set_body_json(json!({"unexpected": true})),
        1,
    )
    .await;
    mount_post(
        &server,
        TOGETHER_ROUTE,
        ResponseTemplate::new(200).set_body_json(json!({"data": []})),
        1,
    )
    .await;
    let (events, sink) = run(&server, MODEL).await;

    let Error::AllProvidersFailed { attempts, .. } = single_error(&events) else {
        panic!("expected AllProvidersFailed: {events:#?}");
    };
    let kinds: Vec<(&str, Option<u16>, &str)> = attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.status, a.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("fal-ai", None, "invalid_response"),
            ("together", None, "invalid_response")
        ]
    );
    assert!(attempts[0].message.contains("request_id"), "{}", attempts[0].message);
    assert!(sink.is_empty());
}

#[tokio::test]
async fn a_failed_fal_job_falls_back() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({
            "fal-ai": live("fal-ai/flux/dev", "text-to-image"),
            "together": live("black-forest-labs/FLUX.1-dev", "text-to-image"),
        }),
    )
    .await;
    let submit = json!({"request_id": "r9", "status": "IN_QUEUE", "response_url": "https://queue.fal.run/fal-ai/flux/requests/r9"});
    mount_post(&server, FAL_SUBMIT, ResponseTemplate::new(200).set_body_json(submit), 1).await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/fal-ai/flux/requests/r9/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "FAILED", "error": "out of memory"})))
        .expect(1)
        .mount(&server)
        .await;
    mount_together_ok(&server).await;
    let (events, _) = run(&server, MODEL).await;

    assert_eq!(attempts(&events), ["fal-ai", "together"]);
    let fell = fallbacks(&events);
    assert_eq!((fell[0].0, fell[0].1), ("fal-ai", None));
    assert!(
        fell[0].2.contains("r9") && fell[0].2.contains("out of memory"),
        "{}",
        fell[0].2
    );
    assert_eq!(single_media(&events).provider, "together");
}

const HTML: &str =
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>";

#[tokio::test]
async fn html_instead_of_an_image_falls_back_and_leaves_no_file() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({
            "hf-inference": live(MODEL, "text-to-image"),
            "together": live("black-forest-labs/FLUX.1-dev", "text-to-image"),
        }),
    )
    .await;
    let hf_route = format!("/hf-inference/models/{MODEL}");
    mount_post(
        &server,
        &hf_route,
        ResponseTemplate::new(200).set_body_raw(HTML, "text/html"),
        1,
    )
    .await;
    mount_together_ok(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let generator = generator(&server, Arc::new(FileSink::new(dir.path())));
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;

    assert_eq!(attempts(&events), ["hf-inference", "together"]);
    let fell = fallbacks(&events);
    assert_eq!(fell.len(), 1);
    assert_eq!((fell[0].0, fell[0].1), ("hf-inference", None));
    assert!(fell[0].2.contains("invalid response"), "{}", fell[0].2);
    let media = single_media(&events);
    assert_eq!(media.provider, "together");
    // Only the PNG and its sidecar: the HTML left nothing behind.
    check_stored_file(media, dir.path(), &png(), "png");
}

#[tokio::test]
async fn html_from_the_only_provider_leaves_an_empty_folder() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, json!({ "hf-inference": live(MODEL, "text-to-image") })).await;
    let hf_route = format!("/hf-inference/models/{MODEL}");
    mount_post(
        &server,
        &hf_route,
        ResponseTemplate::new(200).set_body_raw(HTML, "text/html"),
        1,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let generator = generator(&server, Arc::new(FileSink::new(dir.path())));
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;

    let Error::AllProvidersFailed { attempts, .. } = single_error(&events) else {
        panic!("expected AllProvidersFailed: {events:#?}");
    };
    assert_eq!(attempts[0].kind, "invalid_response");
    assert_eq!(
        dir_files(dir.path()),
        Vec::<String>::new(),
        "no media, no sidecar, no .part file"
    );
}

#[tokio::test]
async fn a_fal_job_stuck_in_the_queue_times_out_and_falls_back() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({
            "fal-ai": live("fal-ai/flux/dev", "text-to-image"),
            "together": live("black-forest-labs/FLUX.1-dev", "text-to-image"),
        }),
    )
    .await;
    let submit = json!({"request_id": "r5", "status": "IN_QUEUE", "response_url": "https://queue.fal.run/fal-ai/flux/requests/r5"});
    mount_post(&server, FAL_SUBMIT, ResponseTemplate::new(200).set_body_json(submit), 1).await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/fal-ai/flux/requests/r5/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "IN_QUEUE", "queue_position": 40})))
        .mount(&server)
        .await;
    mount_together_ok(&server).await;
    let sink = MemorySink::new();
    let generator = builder(&server)
        .poll(PollConfig {
            interval: Duration::from_millis(10),
            deadline: Duration::from_millis(150),
        })
        .sink(Arc::new(sink.clone()))
        .build()
        .unwrap();
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;

    assert_eq!(attempts(&events), ["fal-ai", "together"]);
    let fell = fallbacks(&events);
    assert_eq!((fell[0].0, fell[0].1), ("fal-ai", None));
    assert!(
        fell[0].2.contains("timed out") && fell[0].2.contains("r5"),
        "{}",
        fell[0].2
    );
    assert_eq!(single_media(&events).provider, "together");
    assert!(provider_statuses(&events).iter().any(|s| s.queue_position == Some(40)));
}

#[tokio::test]
async fn a_404_on_the_media_download_falls_back() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({
            "replicate": live("black-forest-labs/flux-dev", "text-to-image"),
            "together": live("black-forest-labs/FLUX.1-dev", "text-to-image"),
        }),
    )
    .await;
    let answer = json!({"id": "p1", "status": "succeeded", "output": format!("{}/cdn/gone.png", server.uri())});
    mount_post(
        &server,
        REPLICATE_ROUTE,
        ResponseTemplate::new(201).set_body_json(answer),
        1,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/cdn/gone.png"))
        .respond_with(ResponseTemplate::new(404).set_body_raw("NoSuchKey", "text/plain"))
        .expect(1)
        .mount(&server)
        .await;
    mount_together_ok(&server).await;
    let (events, sink) = run(&server, MODEL).await;

    // The provider served the model; only its media URL is gone: that is this provider's failure, and
    // the next provider may still make the media.
    assert!(
        !errors(&events)
            .iter()
            .any(|(_, e)| matches!(e, Error::ModelNotSupported { .. })),
        "a CDN 404 must not read as `model is not supported by replicate`: {events:#?}"
    );
    assert_eq!(attempts(&events), ["replicate", "together"]);
    assert_eq!(fallbacks(&events).len(), 1);
    assert_eq!(single_media(&events).provider, "together");
    assert_eq!(sink.len(), 1);
}
