//! `MappingClient::list_models` against a wiremock Hub: query, pagination, limits, origin checks, errors.
#![allow(clippy::unwrap_used)]

use hf_media_mapping::{MappingClient, MappingError, MappingStatus, ModelQuery, Task};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(hub: &str) -> MappingClient {
    MappingClient::builder()
        .hub_url(hub)
        .token("hf_list_token")
        .build()
        .unwrap()
}

/// A listed model in the list form the models listing uses.
fn model(id: &str, provider: &str, status: &str, task: &str) -> Value {
    json!({"_id": "x", "id": id, "inferenceProviderMapping": [
        {"provider": provider, "providerId": format!("{provider}/{id}"), "status": status, "task": task}
    ]})
}

fn page(ids: &[&str]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| model(id, "fal-ai", "live", "text-to-image"))
            .collect(),
    )
}

fn ids(models: &[hf_media_mapping::ModelMapping]) -> Vec<&str> {
    models.iter().map(|m| m.model_id.as_str()).collect()
}

fn next(url: &str) -> (&'static str, String) {
    ("link", format!("<{url}>; rel=\"next\""))
}

#[tokio::test]
async fn sends_the_documented_query_and_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/models"))
        .and(query_param("inference_provider", "fal-ai"))
        .and(query_param("pipeline_tag", "text-to-video"))
        .and(query_param("expand[]", "inferenceProviderMapping"))
        .and(query_param("limit", "20"))
        .and(query_param("search", "wan 2.1"))
        .and(header("authorization", "Bearer hf_list_token"))
        .and(header("accept", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            model("Wan-AI/Wan2.1-T2V-14B", "fal-ai", "live", "text-to-video"),
            {"id": "org/object-form", "inferenceProviderMapping": {
                "replicate": {"status": "staging", "providerId": "o/m", "task": "text-to-video"}
            }},
            {"id": "org/unmapped"}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let query = ModelQuery::new()
        .task(Task::TextToVideo)
        .provider("fal-ai")
        .search("wan 2.1")
        .limit(20);
    let models = client(&server.uri()).list_models(&query).await.unwrap();
    assert_eq!(
        ids(&models),
        ["Wan-AI/Wan2.1-T2V-14B", "org/object-form", "org/unmapped"]
    );
    let wan = &models[0].entries[0];
    assert_eq!(
        (wan.provider.as_str(), wan.provider_id.as_str(), &wan.task, &wan.status),
        (
            "fal-ai",
            "fal-ai/Wan-AI/Wan2.1-T2V-14B",
            &Task::TextToVideo,
            &MappingStatus::Live
        )
    );
    assert_eq!(wan.hf_model_id, "Wan-AI/Wan2.1-T2V-14B");
    assert_eq!(models[1].entries[0].provider, "replicate");
    assert_eq!(models[1].entries[0].status, MappingStatus::Staging);
    assert!(models[2].entries.is_empty());
}

#[tokio::test]
async fn defaults_ask_every_provider_and_task_without_a_token_when_none_is_set() {
    let server = MockServer::start().await;
    Mock::given(path("/api/models"))
        .and(query_param("inference_provider", "all"))
        .and(query_param("limit", "100"))
        .and(query_param_is_missing("pipeline_tag"))
        .and(query_param_is_missing("search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(&["a/one"])))
        .expect(1)
        .mount(&server)
        .await;
    let anonymous = MappingClient::builder().hub_url(server.uri()).build().unwrap();
    let models = anonymous.list_models(&ModelQuery::default()).await.unwrap();
    assert_eq!(ids(&models), ["a/one"]);
    let requests = server.received_requests().await.unwrap();
    assert!(requests[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn follows_next_links_across_three_pages_with_the_token() {
    let server = MockServer::start().await;
    let uri = server.uri();
    Mock::given(path("/api/models"))
        .and(query_param_is_missing("cursor"))
        .and(query_param("limit", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(page(&["p1/a", "p1/b"]))
                .insert_header(
                    "link",
                    format!("<{uri}/api/models?cursor=two&limit=2>; rel=\"next\"").as_str(),
                ),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/models"))
        .and(query_param("cursor", "two"))
        .and(header("authorization", "Bearer hf_list_token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(page(&["p2/a", "p2/b"]))
                // Another relation first, then next: only `next` is followed.
                .insert_header(
                    "link",
                    format!("<{uri}/api/models>; rel=\"first\", <{uri}/api/models?cursor=three&limit=2>; rel=\"next\"")
                        .as_str(),
                ),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/models"))
        .and(query_param("cursor", "three"))
        .and(header("authorization", "Bearer hf_list_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(&["p3/a"])))
        .expect(1)
        .mount(&server)
        .await;
    let models = client(&uri).list_models(&ModelQuery::new().page_size(2)).await.unwrap();
    assert_eq!(ids(&models), ["p1/a", "p1/b", "p2/a", "p2/b", "p3/a"]);
}

#[tokio::test]
async fn stops_once_the_limit_is_reached() {
    let server = MockServer::start().await;
    let uri = server.uri();
    let (name, value) = next(&format!("{uri}/api/models?cursor=two"));
    Mock::given(query_param_is_missing("cursor"))
        .and(query_param("limit", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(page(&["p1/a", "p1/b"]))
                .insert_header(name, value.as_str()),
        )
        .expect(2) // by the first two list calls below
        .mount(&server)
        .await;
    let (name, value) = next(&format!("{uri}/api/models?cursor=three"));
    Mock::given(query_param("cursor", "two"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(page(&["p2/a", "p2/b"]))
                .insert_header(name, value.as_str()),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(query_param("cursor", "three"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(&["p3/a"])))
        .expect(0)
        .mount(&server)
        .await;
    let c = client(&uri);
    let models = c.list_models(&ModelQuery::new().limit(3).page_size(2)).await.unwrap();
    assert_eq!(ids(&models), ["p1/a", "p1/b", "p2/a"]);
    // A page size above the limit is lowered to it (one page of 2 is enough)...
    let models = c.list_models(&ModelQuery::new().limit(2)).await.unwrap();
    assert_eq!(ids(&models), ["p1/a", "p1/b"]);
    // ... and a limit of zero asks nothing.
    assert!(c.list_models(&ModelQuery::new().limit(0)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_next_link_to_another_origin_is_ignored_and_gets_no_token() {
    let hub = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(page(&["evil/model"])))
        .expect(0)
        .mount(&elsewhere)
        .await;
    let (name, value) = next(&format!("{}/api/models?cursor=two", elsewhere.uri()));
    Mock::given(path("/api/models"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(page(&["hub/a"]))
                .insert_header(name, value.as_str()),
        )
        .expect(1)
        .mount(&hub)
        .await;
    let models = client(&hub.uri()).list_models(&ModelQuery::new()).await.unwrap();
    assert_eq!(ids(&models), ["hub/a"]);
}

#[tokio::test]
async fn a_hub_with_a_base_path_follows_its_absolute_next_links() {
    let server = MockServer::start().await;
    let uri = server.uri();
    let (name, value) = next(&format!("{uri}/mirror/api/models?cursor=two"));
    Mock::given(path("/mirror/api/models"))
        .and(query_param_is_missing("cursor"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(page(&["m/one"]))
                .insert_header(name, value.as_str()),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/mirror/api/models"))
        .and(query_param("cursor", "two"))
        .and(header("authorization", "Bearer hf_list_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(&["m/two"])))
        .expect(1)
        .mount(&server)
        .await;
    let models = client(&format!("{uri}/mirror/"))
        .list_models(&ModelQuery::new())
        .await
        .unwrap();
    assert_eq!(ids(&models), ["m/one", "m/two"]);
}

#[tokio::test]
async fn a_link_loop_stops_after_fifty_pages() {
    let server = MockServer::start().await;
    let (name, value) = next(&format!("{}/api/models?cursor=again", server.uri()));
    Mock::given(path("/api/models"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(page(&["loop/model"]))
                .insert_header(name, value.as_str()),
        )
        .expect(50)
        .mount(&server)
        .await;
    let models = client(&server.uri())
        .list_models(&ModelQuery::new().limit(1000))
        .await
        .unwrap();
    assert_eq!(models.len(), 50);
}

#[tokio::test]
async fn malformed_answers_are_invalid_responses_with_a_reason() {
    for (body, expected, named) in [
        (json!({"id": "not/a/list"}), "not a JSON list", "/api/models?"),
        (json!([1]), "model #0 is not a JSON object", "/api/models?"),
        (json!([{"inferenceProviderMapping": []}]), "no `id`", "/api/models?"),
        (
            json!([{"id": "org/bad", "inferenceProviderMapping": [{"provider": "fal-ai", "status": "live"}]}]),
            "fal-ai",
            "org/bad",
        ),
        (
            json!([{"id": "org/bad", "inferenceProviderMapping": 3}]),
            "a number",
            "org/bad",
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(path("/api/models"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body.clone()))
            .mount(&server)
            .await;
        match client(&server.uri()).list_models(&ModelQuery::new()).await {
            Err(MappingError::InvalidResponse { model, reason }) => {
                assert!(reason.contains(expected), "{body}: {reason}");
                assert!(model.starts_with(named), "{body}: {model}");
            }
            other => panic!("{body}: unexpected {other:?}"),
        }
    }
    let server = MockServer::start().await;
    Mock::given(path("/api/models"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>"))
        .mount(&server)
        .await;
    let err = client(&server.uri()).list_models(&ModelQuery::new()).await.unwrap_err();
    assert!(
        matches!(&err, MappingError::InvalidResponse { reason, .. } if reason.contains("not JSON")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_401_is_unauthorized_with_the_hub_message_and_a_500_is_http() {
    let server = MockServer::start().await;
    Mock::given(path("/api/models"))
        .and(query_param("pipeline_tag", "text-to-image"))
        .respond_with(ResponseTemplate::new(401).insert_header("x-error-message", "Invalid credentials"))
        .mount(&server)
        .await;
    Mock::given(path("/api/models"))
        .and(query_param("pipeline_tag", "text-to-video"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error": "upstream exploded"})))
        .mount(&server)
        .await;
    let c = client(&server.uri());
    let err = c
        .list_models(&ModelQuery::new().task(Task::TextToImage))
        .await
        .unwrap_err();
    match &err {
        MappingError::Unauthorized { model, status, message } => {
            assert_eq!((*status, message.as_str()), (401, "Invalid credentials"));
            assert!(
                model.starts_with("/api/models?") && model.contains("pipeline_tag=text-to-image"),
                "{model}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("HF_TOKEN"));
    assert!(!err.to_string().contains("hf_list_token"));
    let err = c
        .list_models(&ModelQuery::new().task(Task::TextToVideo))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MappingError::Http { status: 500, message, .. } if message == "upstream exploded"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unreachable_hub_is_a_network_error() {
    let c = MappingClient::builder().hub_url("http://127.0.0.1:1").build().unwrap();
    assert!(matches!(
        c.list_models(&ModelQuery::new()).await,
        Err(MappingError::Network { .. })
    ));
}
