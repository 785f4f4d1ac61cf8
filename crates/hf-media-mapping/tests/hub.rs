//! The mapping client against a wiremock Hub.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use hf_media_mapping::{MappingClient, MappingError, Task};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MODEL: &str = "black-forest-labs/FLUX.1-dev";

fn client(server: &MockServer, ttl: Duration) -> MappingClient {
    MappingClient::builder()
        .hub_url(server.uri())
        .token("hf_test_token")
        .cache_ttl(ttl)
        .build()
        .unwrap()
}

fn dict_answer() -> serde_json::Value {
    json!({"_id": "x", "id": MODEL, "inferenceProviderMapping": {
        "fal-ai": {"status": "live", "providerId": "fal-ai/flux/dev", "task": "text-to-image"},
        "replicate": {"status": "live", "providerId": "black-forest-labs/flux-dev", "task": "text-to-image"}
    }})
}

#[tokio::test]
async fn asks_the_documented_route_with_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/api/models/{MODEL}")))
        .and(query_param("expand[]", "inferenceProviderMapping"))
        .and(header("authorization", "Bearer hf_test_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(dict_answer()))
        .expect(1)
        .mount(&server)
        .await;
    let mapping = client(&server, Duration::from_secs(60)).mapping(MODEL).await.unwrap();
    let providers: Vec<_> = mapping.entries.iter().map(|e| e.provider.as_str()).collect();
    assert_eq!(providers, ["fal-ai", "replicate"]);
    assert_eq!(mapping.entries[0].task, Task::TextToImage);
    assert_eq!(mapping.entries[0].provider_id, "fal-ai/flux/dev");
}

#[tokio::test]
async fn accepts_the_list_form() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": MODEL, "inferenceProviderMapping": [
                {"provider": "together", "providerId": "t/x", "status": "staging", "task": "text-to-image"},
                {"provider": "fal-ai", "providerId": "fal-ai/wan", "status": "live", "task": "text-to-video"}
            ]})),
        )
        .mount(&server)
        .await;
    let mapping = client(&server, Duration::ZERO).mapping(MODEL).await.unwrap();
    assert_eq!(mapping.entries.len(), 2);
    let live: Vec<_> = mapping.live().map(|e| e.provider.as_str()).collect();
    assert_eq!(live, ["fal-ai"]);
    assert_eq!(mapping.get("fal-ai").unwrap().task, Task::TextToVideo);
}

#[tokio::test]
async fn a_404_is_model_not_found_naming_the_model() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": "Repository not found"})))
        .mount(&server)
        .await;
    let err = client(&server, Duration::from_secs(60))
        .mapping("nobody/nothing")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        MappingError::ModelNotFound {
            model: "nobody/nothing".into()
        }
    );
    assert!(err.to_string().contains("nobody/nothing"));
}

#[tokio::test]
async fn a_401_says_to_check_the_token_and_keeps_the_hub_message() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401).insert_header("x-error-message", "Invalid credentials in Authorization header"),
        )
        .mount(&server)
        .await;
    let err = client(&server, Duration::from_secs(60))
        .mapping(MODEL)
        .await
        .unwrap_err();
    match &err {
        MappingError::Unauthorized { status, message, .. } => {
            assert_eq!(*status, 401);
            assert_eq!(message, "Invalid credentials in Authorization header");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("HF_TOKEN"));
    assert!(!err.to_string().contains("hf_test_token"));
}

#[tokio::test]
async fn other_statuses_and_malformed_answers_are_typed() {
    let server = MockServer::start().await;
    Mock::given(path("/api/models/a/busy"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
        .mount(&server)
        .await;
    Mock::given(path("/api/models/a/garbage"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{not json"))
        .mount(&server)
        .await;
    Mock::given(path("/api/models/a/list"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([1, 2])))
        .mount(&server)
        .await;
    Mock::given(path("/api/models/a/none"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "a/none"})))
        .mount(&server)
        .await;
    Mock::given(path("/api/models/a/throttled"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "2"))
        .mount(&server)
        .await;
    let c = client(&server, Duration::from_secs(60));
    assert!(
        matches!(c.mapping("a/busy").await, Err(MappingError::Http { status: 500, message, retry_after: None, .. }) if message == "upstream exploded")
    );
    assert!(matches!(
        c.mapping("a/throttled").await,
        Err(MappingError::Http { status: 429, retry_after: Some(wait), .. }) if wait == Duration::from_secs(2)
    ));
    assert!(
        matches!(c.mapping("a/garbage").await, Err(MappingError::InvalidResponse { reason, .. }) if reason.contains("not JSON"))
    );
    assert!(matches!(
        c.mapping("a/list").await,
        Err(MappingError::InvalidResponse { .. })
    ));
    assert!(c.mapping("a/none").await.unwrap().entries.is_empty());
}

#[tokio::test]
async fn an_unreachable_hub_is_a_network_error() {
    let c = MappingClient::builder().hub_url("http://127.0.0.1:1").build().unwrap();
    assert!(matches!(c.mapping(MODEL).await, Err(MappingError::Network { .. })));
}

#[tokio::test]
async fn answers_are_cached_and_concurrent_first_calls_share_one_request() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(dict_answer())
                .set_delay(Duration::from_millis(200)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server, Duration::from_secs(60));
    let calls = (0..16).map(|_| c.mapping(MODEL));
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|m| m.entries.len() == 2)));
    // A later call is served from the cache too.
    c.mapping(MODEL).await.unwrap();
}

#[tokio::test]
async fn the_cache_expires_after_its_time_to_live_and_errors_are_not_cached() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(dict_answer()))
        .expect(2)
        .mount(&server)
        .await;
    let c = client(&server, Duration::from_millis(100));
    c.mapping(MODEL).await.unwrap();
    c.mapping(MODEL).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    c.mapping(MODEL).await.unwrap();

    let failing = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&failing)
        .await;
    let c = client(&failing, Duration::from_secs(60));
    assert!(c.mapping(MODEL).await.is_err());
    assert!(c.mapping(MODEL).await.is_err());
}
