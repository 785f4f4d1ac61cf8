//! The token goes to the Hub and the router only, and never shows up in events, errors or `Debug`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use hf_media::{Error, GenerateRequest, GenerationEvent, MediaGenerator, MemorySink};
use hf_media_tests::*;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CANARY: &str = "hf_canary_0123456789";

/// A generator like [`generator`] but with the canary token.
fn canary_generator(server: &MockServer) -> MediaGenerator {
    builder(server)
        .token(CANARY)
        .sink(Arc::new(MemorySink::new()))
        .build()
        .unwrap()
}

/// Checks that nothing the caller can see of `events` shows the canary: each event's `Debug` (plain and
/// pretty), and each error's `Display` with its whole source chain.
fn assert_no_canary(events: &[GenerationEvent]) {
    for event in events {
        for shown in [format!("{event:?}"), format!("{event:#?}")] {
            assert!(!shown.contains(CANARY), "the token leaked into an event: {shown}");
        }
    }
    for (_, error) in errors(events) {
        let mut source: Option<&dyn std::error::Error> = Some(error);
        while let Some(e) = source {
            let shown = e.to_string();
            assert!(!shown.contains(CANARY), "the token leaked into an error: {shown}");
            source = e.source();
        }
    }
}

/// Every request to the Hub and the router carried exactly `Bearer {CANARY}` (so the test is real).
async fn assert_canary_was_sent(server: &MockServer, route: &str) {
    let sent = requests_to(server, route).await;
    assert!(!sent.is_empty(), "nothing was sent to {route}");
    for request in &sent {
        describe_request(request, CANARY);
        assert!(request.headers.get("authorization").is_some(), "{route} got no token");
    }
}

#[tokio::test]
async fn a_provider_401_does_not_leak_the_token() {
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
    let unauthorized = ResponseTemplate::new(401)
        .insert_header("x-error-message", "Invalid credentials in Authorization header")
        .set_body_json(json!({"error": "Invalid credentials in Authorization header"}));
    for route in ["/fal-ai/fal-ai/flux/dev", "/together/v1/images/generations"] {
        Mock::given(method("POST"))
            .and(path(route))
            .respond_with(unauthorized.clone())
            .expect(1)
            .mount(&server)
            .await;
    }
    let generator = canary_generator(&server);
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;

    let error = single_error(&events);
    assert_eq!(error.kind(), "all_providers_failed");
    assert_eq!(fallbacks(&events).len(), 2);
    assert_no_canary(&events);
    assert_canary_was_sent(&server, &format!("/api/models/{MODEL}")).await;
    assert_canary_was_sent(&server, "/fal-ai/fal-ai/flux/dev").await;
    assert_canary_was_sent(&server, "/together/v1/images/generations").await;
}

#[tokio::test]
async fn a_hub_401_does_not_leak_the_token() {
    let server = start_server().await;
    Mock::given(method("GET"))
        .and(path(format!("/api/models/{MODEL}")))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("x-error-message", "Invalid credentials in Authorization header")
                .set_body_json(json!({"error": "Invalid credentials in Authorization header"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let generator = canary_generator(&server);
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;

    let all = errors(&events);
    assert_eq!(all.len(), 1);
    let (task, error) = all[0];
    assert_eq!(task, None);
    assert_eq!(error.kind(), "unauthorized");
    let shown = error.to_string();
    assert!(
        shown.contains("HTTP 401") && shown.contains("Invalid credentials"),
        "{shown}"
    );
    assert!(attempts(&events).is_empty());
    assert_no_canary(&events);
    assert_canary_was_sent(&server, &format!("/api/models/{MODEL}")).await;
}

#[tokio::test]
async fn debug_of_the_builder_and_the_generator_hides_the_token() {
    let server = start_server().await;
    let builder = builder(&server).token(CANARY);
    let shown = format!("{builder:?} {builder:#?}");
    assert!(!shown.contains(CANARY), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
    let generator = builder.build().unwrap();
    let shown = format!("{generator:?} {generator:#?} {:?}", generator.mapping_client());
    assert!(!shown.contains(CANARY), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
    let stream = generator.generate(GenerateRequest::new(PROMPT).model(MODEL));
    assert!(!format!("{stream:?}").contains(CANARY));
}

#[tokio::test]
async fn media_downloads_carry_no_token_even_on_the_router_host() {
    let server = start_server().await;
    mount_hub_mapping(
        &server,
        MODEL,
        json!({ "replicate": live("black-forest-labs/flux-dev", "text-to-image") }),
    )
    .await;
    let route = "/replicate/v1/models/black-forest-labs/flux-dev/predictions";
    // The media URL is on the very host the token is sent to.
    let cdn = format!("{}/cdn/x.png", server.uri());
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": "p", "status": "succeeded", "output": cdn})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/cdn/x.png"))
        .respond_with(bytes_response(png(), "image/png"))
        .expect(1)
        .mount(&server)
        .await;
    let generator = canary_generator(&server);
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;

    assert_eq!(single_media(&events).provider, "replicate");
    assert_no_canary(&events);
    assert_canary_was_sent(&server, route).await;
    let downloads = requests_to(&server, "/cdn/x.png").await;
    assert_eq!(downloads.len(), 1);
    assert!(
        downloads[0].headers.get("authorization").is_none(),
        "the download carried the token"
    );
    let all_headers = format!("{:?}", downloads[0].headers);
    assert!(!all_headers.contains(CANARY), "{all_headers}");
}

#[tokio::test]
async fn a_redirect_to_another_host_drops_the_token() {
    let server = start_server().await;
    let elsewhere = start_server().await;
    mount_hub_mapping(&server, MODEL, json!({ "hf-inference": live(MODEL, "text-to-image") })).await;
    Mock::given(method("POST"))
        .and(path(format!("/hf-inference/models/{MODEL}")))
        .respond_with(ResponseTemplate::new(307).insert_header("location", format!("{}/collect", elsewhere.uri())))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/collect"))
        .respond_with(bytes_response(png(), "image/png"))
        .mount(&elsewhere)
        .await;
    let generator = canary_generator(&server);
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;
    assert_no_canary(&events);
    assert_eq!(
        single_media(&events).provider,
        "hf-inference",
        "the redirect was followed"
    );

    let followed = elsewhere.received_requests().await.unwrap();
    assert_eq!(followed.len(), 1);
    for request in followed {
        assert!(
            request.headers.get("authorization").is_none(),
            "the token followed a redirect to another host"
        );
    }
}

#[tokio::test]
async fn no_token_is_a_missing_token_error_naming_hf_token() {
    let error = MediaGenerator::builder().build().unwrap_err();
    assert!(matches!(error, Error::MissingToken), "{error:?}");
    assert_eq!(error.kind(), "config");
    assert!(error.is_usage());
    let shown = error.to_string();
    assert!(shown.contains("HF_TOKEN"), "{shown}");
    assert!(shown.contains("https://huggingface.co/settings/tokens"), "{shown}");
}

#[test]
fn a_token_that_cannot_be_sent_is_refused_without_being_shown() {
    let err = hf_media::MediaGenerator::builder()
        .token("hf_secret_with\nnewline")
        .build()
        .unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("cannot be sent in an HTTP header"), "{shown}");
    assert!(!shown.contains("hf_secret"), "{shown}");
    let err = hf_media::MediaGenerator::builder()
        .token("hf_fine")
        .provider_key("fal-ai", "key\u{7f}bad")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("fal-ai"), "{err}");
}
