//! `hf-media models` (the built binary) against a wiremock Hub.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn run(args: &[&str], server: &MockServer, token: Option<&str>, home: &Path) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hf-media"));
    cmd.args(args)
        .env_remove("HF_TOKEN")
        .env_remove("HUGGING_FACE_HUB_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("RUST_LOG")
        .env("HOME", home)
        .env("HF_HOME", home.join("hf"))
        .env("HF_ENDPOINT", server.uri())
        .env("HF_ROUTER_URL", server.uri());
    if let Some(token) = token {
        cmd.env("HF_TOKEN", token);
    }
    cmd.output().await.unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}")))
        .collect()
}

fn entry(provider: &str, status: &str, task: &str) -> Value {
    json!({"provider": provider, "providerId": format!("{provider}/id"), "status": status, "task": task})
}

/// Answers the model listing of one pipeline tag.
async fn mount_list(server: &MockServer, task: &str, models: Value) {
    Mock::given(method("GET"))
        .and(path("/api/models"))
        .and(query_param("pipeline_tag", task))
        .and(query_param("expand[]", "inferenceProviderMapping"))
        .respond_with(ResponseTemplate::new(200).set_body_json(models))
        .mount(server)
        .await;
}

async fn mount_both(server: &MockServer) {
    mount_list(
        server,
        "text-to-video",
        json!([{"id": "Wan-AI/Wan2.1-T2V-14B", "inferenceProviderMapping": [
            entry("fal-ai", "live", "text-to-video"),
            entry("novita", "error", "text-to-video"),
            entry("replicate", "live", "text-to-video")
        ]}]),
    )
    .await;
    mount_list(
        server,
        "text-to-image",
        json!([
            {"id": "black-forest-labs/FLUX.1-dev", "inferenceProviderMapping": {
                "together": {"status": "staging", "providerId": "t/flux", "task": "text-to-image"},
                "replicate": {"status": "live", "providerId": "bfl/flux-dev", "task": "text-to-image"},
                "fal-ai": {"status": "live", "providerId": "fal-ai/flux/dev", "task": "text-to-image"}
            }},
            {"id": "org/staging-only", "inferenceProviderMapping": [entry("fal-ai", "staging", "text-to-image")]},
            {"id": "org/chat-only", "inferenceProviderMapping": [entry("together", "live", "conversational")]},
            {"id": "org/unmapped"}
        ]),
    )
    .await;
}

#[tokio::test]
async fn json_lines_list_videos_then_images_with_live_providers_only() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_both(&server).await;
    let output = run(&["models", "--json"], &server, None, dir.path()).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        json_lines(&output),
        [
            json!({"model": "Wan-AI/Wan2.1-T2V-14B", "task": "text-to-video", "providers": [
                {"provider": "fal-ai", "provider_id": "fal-ai/id", "task": "text-to-video"},
                {"provider": "replicate", "provider_id": "replicate/id", "task": "text-to-video"}
            ]}),
            json!({"model": "black-forest-labs/FLUX.1-dev", "task": "text-to-image", "providers": [
                {"provider": "replicate", "provider_id": "bfl/flux-dev", "task": "text-to-image"},
                {"provider": "fal-ai", "provider_id": "fal-ai/flux/dev", "task": "text-to-image"}
            ]}),
        ]
    );
    // Videos were asked first, for every provider, 50 at most; no token was found, so none was sent.
    let requests = server.received_requests().await.unwrap();
    let tags: Vec<String> = requests
        .iter()
        .map(|r| {
            let pairs: Vec<(String, String)> = r.url.query_pairs().into_owned().collect();
            assert!(
                pairs.contains(&("inference_provider".into(), "all".into())),
                "{pairs:?}"
            );
            assert!(pairs.contains(&("limit".into(), "50".into())), "{pairs:?}");
            assert!(r.headers.get("authorization").is_none());
            pairs.into_iter().find(|(k, _)| k == "pipeline_tag").unwrap().1
        })
        .collect();
    assert_eq!(tags, ["text-to-video", "text-to-image"]);
}

#[tokio::test]
async fn provider_task_and_search_filters_ask_once_with_the_discovered_token() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    Mock::given(path("/api/models"))
        .and(query_param("pipeline_tag", "text-to-image"))
        .and(query_param("inference_provider", "replicate"))
        .and(query_param("search", "flux"))
        .and(query_param("limit", "5"))
        .and(header("authorization", "Bearer hf_models_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": "black-forest-labs/FLUX.1-dev", "inferenceProviderMapping": [
                entry("fal-ai", "live", "text-to-image"),
                entry("replicate", "live", "text-to-image")
            ]},
            {"id": "org/replicate-staging", "inferenceProviderMapping": [
                entry("fal-ai", "live", "text-to-image"),
                entry("replicate", "staging", "text-to-image")
            ]}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let output = run(
        &[
            "models",
            "--task",
            "text-to-image",
            "--provider",
            "replicate",
            "--search",
            "flux",
            "--limit",
            "5",
            "--json",
        ],
        &server,
        Some("hf_models_token"),
        dir.path(),
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        json_lines(&output),
        [
            json!({"model": "black-forest-labs/FLUX.1-dev", "task": "text-to-image", "providers": [
                {"provider": "replicate", "provider_id": "replicate/id", "task": "text-to-image"}
            ]})
        ]
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains("hf_models_token"));
}

#[tokio::test]
async fn human_output_is_one_aligned_line_per_model() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_both(&server).await;
    let output = run(&["models"], &server, None, dir.path()).await;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout(&output),
        "Wan-AI/Wan2.1-T2V-14B         text-to-video  fal-ai, replicate\n\
         black-forest-labs/FLUX.1-dev  text-to-image  replicate, fal-ai\n"
    );
    // With only images asked for, the video model is not listed.
    let output = run(&["models", "--task", "text-to-image"], &server, None, dir.path()).await;
    assert_eq!(
        stdout(&output),
        "black-forest-labs/FLUX.1-dev  text-to-image  replicate, fal-ai\n"
    );
}

#[tokio::test]
async fn a_hub_error_is_exit_1_with_the_message_on_stderr() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"error": "upstream exploded"})))
        .mount(&server)
        .await;
    let output = run(&["models", "--json"], &server, Some("hf_x"), dir.path()).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("HTTP 500") && stderr.contains("upstream exploded"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_unknown_task_is_a_usage_error_and_nothing_is_sent() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let output = run(&["models", "--task", "image-to-text"], &server, None, dir.path()).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("text-to-image") && stderr.contains("text-to-video"),
        "{stderr}"
    );
}
