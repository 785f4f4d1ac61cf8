//! Direct calls with a provider's own key, `download_media(false)`, parameter warnings, and the
//! "model is loading" wait of hf-inference.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use hf_media::{Error, GenerateRequest, GenerationParams, MediaGenerator, MediaLocation, MemorySink};
use hf_media_tests::*;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn a_provider_key_calls_the_provider_directly_and_only_that_provider_sees_it() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({"fal-ai": live("fal-ai/flux/dev", "text-to-image")}),
    )
    .await;
    // fal's own queue API, served under /fal-direct: no `_subdomain` query, `Authorization: Key …`.
    Mock::given(method("POST"))
        .and(path("/fal-direct/fal-ai/flux/dev"))
        .and(header("authorization", "Key fal_secret_key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "request_id": "d1", "status": "IN_QUEUE",
            "response_url": "https://queue.fal.run/fal-ai/flux/requests/d1"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-direct/fal-ai/flux/requests/d1/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETED"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-direct/fal-ai/flux/requests/d1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"images": [{"url": format!("{}/cdn/d1.png", server.uri())}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/cdn/d1.png"))
        .respond_with(bytes_response(png(), "image/png"))
        .mount(&server)
        .await;
    let sink = MemorySink::new();
    let generator = builder(&server)
        .provider_key("fal-ai", "fal_secret_key")
        .provider_url("fal-ai", format!("{}/fal-direct", server.uri()))
        .bill_to("my-org")
        .sink(Arc::new(sink.clone()))
        .build()
        .unwrap();
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;
    assert_eq!(single_media(&events).provider, "fal-ai");
    assert_eq!(sink.items()[0].bytes.as_ref(), png().as_slice());

    for request in server.received_requests().await.unwrap() {
        let auth = request
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        let path = request.url.path().to_owned();
        if path.starts_with("/api/models") {
            assert_eq!(
                auth.as_deref(),
                Some(format!("Bearer {TOKEN}").as_str()),
                "the Hub gets the HF token"
            );
        } else if path.starts_with("/fal-direct") {
            assert_eq!(auth.as_deref(), Some("Key fal_secret_key"), "{path}");
            assert!(
                request.url.query().is_none(),
                "no router query on direct calls: {}",
                request.url
            );
            assert!(
                request.headers.get("x-hf-bill-to").is_none(),
                "billing is a router matter: {path}"
            );
        } else {
            assert_eq!(auth, None, "{path} must carry no credentials");
        }
    }
}

#[tokio::test]
async fn provider_keys_are_checked_and_can_replace_the_hf_token() {
    let server = start_server().await;
    let err = MediaGenerator::builder()
        .hub_url(server.uri())
        .provider_key("hf-inference", "x")
        .build()
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("always called through the router")),
        "{err}"
    );
    let err = MediaGenerator::builder().provider_key("acme", "x").build().unwrap_err();
    assert!(matches!(err, Error::UnknownProvider { .. }), "{err}");
    let generator = MediaGenerator::builder()
        .provider_key("replicate", "r8_x")
        .build()
        .unwrap();
    let shown = format!("{generator:?}");
    assert!(shown.contains("replicate") && !shown.contains("r8_x"), "{shown}");
    assert!(matches!(MediaGenerator::builder().build(), Err(Error::MissingToken)));
}

#[tokio::test]
async fn without_download_url_answers_are_reported_not_fetched() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({"replicate": live("black-forest-labs/flux-dev", "text-to-image")}),
    )
    .await;
    let url = format!("{}/cdn/never.webp", server.uri());
    Mock::given(method("POST"))
        .and(path("/replicate/v1/models/black-forest-labs/flux-dev/predictions"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": "p", "status": "succeeded", "output": [url.clone()]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/cdn/never.webp"))
        .respond_with(bytes_response(webp(), "image/webp"))
        .expect(0)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let generator = builder(&server)
        .download_media(false)
        .sink(Arc::new(hf_media::FileSink::new(dir.path())))
        .build()
        .unwrap();
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;
    let media = single_media(&events);
    assert_eq!(media.location, MediaLocation::Url(url.clone()));
    assert_eq!(media.source_url.as_deref(), Some(url.as_str()));
    assert_eq!(media.bytes, 0);
    assert!(dir_files(dir.path()).is_empty());
}

#[tokio::test]
async fn without_download_bytes_answers_are_saved_with_a_warning() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({"together": live("black-forest-labs/FLUX.1-dev", "text-to-image")}),
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/together/v1/images/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": base64(&png())}]})))
        .mount(&server)
        .await;
    let sink = MemorySink::new();
    let generator = builder(&server)
        .download_media(false)
        .sink(Arc::new(sink.clone()))
        .build()
        .unwrap();
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;
    assert!(
        warnings(&events)
            .iter()
            .any(|w| w.contains("together") && w.contains("not a URL")),
        "{:?}",
        warnings(&events)
    );
    assert_eq!(sink.len(), 1);
}

#[tokio::test]
async fn parameters_a_provider_does_not_take_are_left_out_with_a_warning() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, json!({"nscale": live("flux-dev", "text-to-image")})).await;
    Mock::given(method("POST"))
        .and(path("/nscale/v1/images/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": base64(&png())}]})))
        .expect(1)
        .mount(&server)
        .await;
    let generator = generator(&server, Arc::new(MemorySink::new()));
    let params = GenerationParams {
        num_inference_steps: Some(30),
        width: Some(640),
        height: Some(480),
        ..Default::default()
    };
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL).params(params))).await;
    single_media(&events);
    let warning = warnings(&events).join("\n");
    assert!(
        warning.contains("nscale") && warning.contains("`num_inference_steps`"),
        "{warning}"
    );
    let body = captured_request(&server, "/nscale/v1/images/generations").await["body"].clone();
    assert_eq!(body["size"], "640x480");
    assert!(
        body.get("num_inference_steps").is_none() && body.get("steps").is_none(),
        "{body}"
    );
}

#[tokio::test]
async fn hf_inference_waits_out_a_loading_model() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, json!({"hf-inference": live(MODEL, "text-to-image")})).await;
    let loading = ResponseTemplate::new(503).set_body_json(
        json!({"error": "Model black-forest-labs/FLUX.1-dev is currently loading", "estimated_time": 0.1}),
    );
    Mock::given(method("POST"))
        .and(path(format!("/hf-inference/models/{MODEL}")))
        .respond_with(Sequence::new(vec![
            loading.clone(),
            loading,
            bytes_response(png(), "image/png"),
        ]))
        .expect(3)
        .mount(&server)
        .await;
    let generator = generator(&server, Arc::new(MemorySink::new()));
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;
    assert_eq!(single_media(&events).provider, "hf-inference");
    assert!(provider_statuses(&events).iter().any(|s| s.state == "loading"));
    assert!(fallbacks(&events).is_empty());
}

#[tokio::test]
async fn a_503_without_an_estimate_is_retried_then_a_failure_listing_every_try() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, json!({"hf-inference": live(MODEL, "text-to-image")})).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"error": "overloaded"})))
        .expect(3)
        .mount(&server)
        .await;
    let generator = generator(&server, Arc::new(MemorySink::new()));
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;
    match single_error(&events) {
        Error::AllProvidersFailed { attempts, .. } => {
            assert_eq!(attempts.len(), 3, "{attempts:?}");
            assert!(
                attempts
                    .iter()
                    .all(|a| a.provider == "hf-inference" && a.status == Some(503) && a.message == "overloaded")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let retries = events
        .iter()
        .filter(|e| matches!(e, hf_media::GenerationEvent::Retry { .. }))
        .count();
    assert_eq!(retries, 2);
}
