//! The built `hf-media` binary against a wiremock Hub and router.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MODEL: &str = "black-forest-labs/FLUX.1-schnell";

async fn run(args: &[&str], server: &MockServer, token: Option<&str>, home: &Path) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hf-media"));
    cmd.args(args)
        .env_remove("HF_TOKEN")
        .env_remove("HUGGING_FACE_HUB_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("RUST_LOG")
        .env_remove("FAL_KEY")
        .env_remove("REPLICATE_API_TOKEN")
        .env_remove("TOGETHER_API_KEY")
        .env_remove("NSCALE_API_KEY")
        .env_remove("WAVESPEED_API_KEY")
        .env_remove("ZAI_API_KEY")
        .env_remove("NOVITA_API_KEY")
        .env("HOME", home)
        .env("HF_HOME", home.join("hf"))
        .env("HF_ENDPOINT", server.uri())
        .env("HF_ROUTER_URL", server.uri());
    if let Some(token) = token {
        cmd.env("HF_TOKEN", token);
    }
    cmd.output().await.unwrap()
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}")))
        .collect()
}

async fn mount_mapping(server: &MockServer, mapping: Value) {
    Mock::given(method("GET"))
        .and(path(format!("/api/models/{MODEL}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": MODEL, "inferenceProviderMapping": mapping})),
        )
        .mount(server)
        .await;
}

#[tokio::test]
async fn generate_json_lines_and_files_through_a_fallback() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_mapping(
        &server,
        json!({
            "together": {"status": "live", "providerId": "black-forest-labs/FLUX.1-schnell-Free", "task": "text-to-image"},
            "hf-inference": {"status": "live", "providerId": MODEL, "task": "text-to-image"}
        }),
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/together/v1/images/generations"))
        .respond_with(
            ResponseTemplate::new(402)
                .set_body_json(json!({"error": "You have exceeded your monthly included credits"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/hf-inference/models/{MODEL}")))
        .and(header("authorization", "Bearer hf_cli_token"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(hf_media_sink::conformance::tiny_png(), "image/jpeg"))
        .expect(2)
        .mount(&server)
        .await;
    let out_dir = dir.path().join("out");
    let output = run(
        &[
            "generate",
            "a fox running",
            "-n",
            "2",
            "-o",
            out_dir.to_str().unwrap(),
            "--json",
        ],
        &server,
        Some("hf_cli_token"),
        dir.path(),
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output);
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events.iter().filter(|e| **e == "fallback").count(), 2, "{events:?}");
    assert_eq!(events.last(), Some(&"done"));
    let fallback = lines.iter().find(|l| l["event"] == "fallback").unwrap();
    assert_eq!(fallback["provider"], "together");
    assert_eq!(fallback["status"], 402);
    assert!(
        fallback["message"]
            .as_str()
            .unwrap()
            .contains("monthly included credits")
    );
    let media: Vec<&Value> = lines.iter().filter(|l| l["event"] == "media").collect();
    assert_eq!(media.len(), 2);
    for m in &media {
        assert_eq!(m["provider"], "hf-inference");
        assert_eq!(m["model"], MODEL);
        assert_eq!(m["kind"], "image");
        assert_eq!(m["mime"], "image/png");
        let path = Path::new(m["path"].as_str().unwrap());
        assert_eq!(path.extension().unwrap(), "png");
        assert_eq!(std::fs::read(path).unwrap(), hf_media_sink::conformance::tiny_png());
        assert_eq!(m["bytes"].as_u64().unwrap(), std::fs::metadata(path).unwrap().len());
    }
    assert_ne!(media[0]["path"], media[1]["path"]);
    let done = lines.last().unwrap();
    assert_eq!(
        (done["succeeded"].as_u64(), done["failed"].as_u64()),
        (Some(2), Some(0))
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains("hf_cli_token"));
}

#[tokio::test]
async fn human_output_names_the_saved_file() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_mapping(
        &server,
        json!({"hf-inference": {"status": "live", "providerId": MODEL, "task": "text-to-image"}}),
    )
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(hf_media_sink::conformance::tiny_png(), "image/png"))
        .mount(&server)
        .await;
    let out_dir = dir.path().join("media");
    let output = run(
        &[
            "generate",
            "a lighthouse",
            "-m",
            "flux-schnell:hf-inference",
            "-o",
            out_dir.to_str().unwrap(),
        ],
        &server,
        Some("hf_x"),
        dir.path(),
    )
    .await;
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("→ trying hf-inference"), "{stdout}");
    assert!(
        stdout.contains("✓ saved") && stdout.contains(out_dir.to_str().unwrap()),
        "{stdout}"
    );
    assert!(stdout.contains("done: 1 succeeded, 0 failed"), "{stdout}");
}

#[tokio::test]
async fn messages_file_gives_the_prompt() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_mapping(
        &server,
        json!({"hf-inference": {"status": "live", "providerId": MODEL, "task": "text-to-image"}}),
    )
    .await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::body_partial_json(
            json!({"inputs": "a red fox\nin the snow"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_raw(hf_media_sink::conformance::tiny_png(), "image/png"))
        .expect(1)
        .mount(&server)
        .await;
    let messages = dir.path().join("chat.json");
    std::fs::write(
        &messages,
        r#"[{"role":"user","content":"old"},{"role":"assistant","content":"ok"},
            {"role":"user","content":"a red fox"},{"role":"user","content":[{"type":"text","text":"in the snow"}]}]"#,
    )
    .unwrap();
    let output = run(
        &[
            "generate",
            "--messages",
            messages.to_str().unwrap(),
            "-o",
            dir.path().join("o").to_str().unwrap(),
            "--json",
        ],
        &server,
        Some("hf_x"),
        dir.path(),
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn no_token_is_exit_2_naming_hf_token_and_nothing_is_sent() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let output = run(&["generate", "a fox"], &server, None, dir.path()).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("HF_TOKEN") && stderr.contains("huggingface.co/settings/tokens"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_token_file_under_hf_home_is_used() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("hf")).unwrap();
    std::fs::write(dir.path().join("hf").join("token"), "hf_from_file\n").unwrap();
    mount_mapping(
        &server,
        json!({"hf-inference": {"status": "live", "providerId": MODEL, "task": "text-to-image"}}),
    )
    .await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer hf_from_file"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(hf_media_sink::conformance::tiny_png(), "image/png"))
        .expect(1)
        .mount(&server)
        .await;
    let output = run(
        &["generate", "x", "-o", dir.path().join("o").to_str().unwrap(), "--json"],
        &server,
        None,
        dir.path(),
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn usage_errors_are_exit_2_with_a_clear_message() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (vec!["generate", "x", "--aspect-ratio", "7:5"], "unknown aspect ratio"),
        (vec!["generate"], "give a PROMPT"),
        (vec!["generate", "x", "--param", "novalue"], "KEY=VALUE"),
        (vec!["generate", "x", "--width", "0", "--height", "10"], "`width`"),
        (vec!["generate", "x", "-n", "0"], "0"),
        (vec!["generate", "x", "--timeout", "1e20"], "--timeout"),
        (vec!["generate", "x", "--timeout", "0"], "--timeout"),
    ] {
        let output = run(&args, &server, Some("hf_x"), dir.path()).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // A model id that cannot exist is refused before anything is sent.
    let output = run(
        &["generate", "x", "-m", "not a model", "--json"],
        &server,
        Some("hf_x"),
        dir.path(),
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    let lines = json_lines(&output);
    assert_eq!(lines[0]["kind"], "invalid_request");
}

#[tokio::test]
async fn a_failed_generation_is_exit_1_with_a_typed_error_line() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_mapping(
        &server,
        json!({"hf-inference": {"status": "live", "providerId": MODEL, "task": "text-to-image"}}),
    )
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": "Model does not exist"})))
        .mount(&server)
        .await;
    let output = run(
        &["generate", "x", "-o", dir.path().join("o").to_str().unwrap(), "--json"],
        &server,
        Some("hf_x"),
        dir.path(),
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&output);
    let error = lines.iter().find(|l| l["event"] == "error").unwrap();
    assert_eq!(error["kind"], "model_not_supported");
    assert_eq!(error["provider"], "hf-inference");
    assert_eq!(error["status"], 404);

    let missing = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&missing)
        .await;
    let output = run(&["generate", "x", "--json"], &missing, Some("hf_x"), dir.path()).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json_lines(&output)[0]["kind"], "model_not_found");
}

#[tokio::test]
async fn a_video_end_to_end_through_fal_queue() {
    const VIDEO_MODEL: &str = "Wan-AI/Wan2.1-T2V-14B";
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    Mock::given(method("GET"))
        .and(path(format!("/api/models/{VIDEO_MODEL}")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": VIDEO_MODEL, "inferenceProviderMapping": {
                "fal-ai": {"status": "live", "providerId": "fal-ai/wan-t2v", "task": "text-to-video"}
            }})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/fal-ai/fal-ai/wan-t2v"))
        .and(wiremock::matchers::query_param("_subdomain", "queue"))
        .and(wiremock::matchers::body_partial_json(
            json!({"prompt": "a fox running", "aspect_ratio": "16:9", "resolution": "480p"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "request_id": "v1", "status": "IN_QUEUE", "queue_position": 0,
            "response_url": "https://queue.fal.run/fal-ai/wan-t2v/requests/v1"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/fal-ai/wan-t2v/requests/v1/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETED"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/fal-ai/wan-t2v/requests/v1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"video": {"url": format!("{}/cdn/v1.mp4", server.uri())}, "seed": 7})),
        )
        .mount(&server)
        .await;
    let mp4 = hf_media_sink::conformance::tiny_mp4_head();
    Mock::given(method("GET"))
        .and(path("/cdn/v1.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(mp4.clone(), "application/octet-stream"))
        .mount(&server)
        .await;
    let out_dir = dir.path().join("videos");
    let output = run(
        &[
            "generate",
            "a fox running",
            "-m",
            VIDEO_MODEL,
            "-o",
            out_dir.to_str().unwrap(),
            "--json",
        ],
        &server,
        Some("hf_x"),
        dir.path(),
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output);
    let media = lines.iter().find(|l| l["event"] == "media").unwrap();
    assert_eq!(media["kind"], "video");
    assert_eq!(media["mime"], "video/mp4");
    assert_eq!(media["seed"], 7);
    assert_eq!(media["provider_response"]["seed"], 7);
    let file = Path::new(media["path"].as_str().unwrap());
    assert_eq!(file.extension().unwrap(), "mp4");
    assert_eq!(std::fs::read(file).unwrap(), mp4);
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "provider_status" && l["state"] == "queued")
    );
}

#[tokio::test]
async fn provider_keys_and_no_download_from_the_command_line() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_mapping(&server, json!({"replicate": {"status": "live", "providerId": "black-forest-labs/flux-schnell", "task": "text-to-image"}})).await;
    let url = format!("{}/cdn/out.webp", server.uri());
    Mock::given(method("POST"))
        .and(path("/replicate/v1/models/black-forest-labs/flux-schnell/predictions"))
        .and(header("authorization", "Bearer r8_cli_key"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": "p", "status": "succeeded", "output": url})),
        )
        .expect(1)
        .mount(&server)
        .await;
    // No HF token at all: the Hub is asked without one, and replicate is called with its own key on its
    // "own API", which --provider-url points at the mock server.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hf-media"));
    let output = cmd
        .args([
            "generate",
            "x",
            "--provider-key",
            "replicate=r8_cli_key",
            "--no-download",
            "--json",
        ])
        .arg("--provider-url")
        .arg(format!("replicate={}/replicate", server.uri()))
        .env_remove("HF_TOKEN")
        .env_remove("HUGGING_FACE_HUB_TOKEN")
        .env_remove("REPLICATE_API_TOKEN")
        .env("HOME", dir.path())
        .env("HF_HOME", dir.path().join("hf"))
        .env("HF_ENDPOINT", server.uri())
        .env("HF_ROUTER_URL", server.uri())
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output);
    let media = lines.iter().find(|l| l["event"] == "media").unwrap();
    assert_eq!(media["path"], url.as_str());
    assert_eq!(media["bytes"], 0);
    let hub = server.received_requests().await.unwrap();
    let hub_call = hub.iter().find(|r| r.url.path().starts_with("/api/models")).unwrap();
    assert!(hub_call.headers.get("authorization").is_none());
}

#[tokio::test]
async fn an_openai_compatible_provider_from_the_command_line() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let png = hf_media_sink::conformance::tiny_png();
    Mock::given(method("POST"))
        .and(path("/openai/v1/images/generations"))
        .and(header("authorization", "Bearer sk-own-key"))
        .and(wiremock::matchers::body_partial_json(
            json!({"model": "my-model", "prompt": "a fox", "response_format": "b64_json", "size": "1024x576"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"b64_json": base64(&png)}]})))
        .expect(1)
        .mount(&server)
        .await;
    let out_dir = dir.path().join("o");
    let openai = format!("my-images={}/openai", server.uri());
    let output = run(
        &[
            "generate",
            "a fox",
            "-m",
            "my-model:my-images",
            "--openai-provider",
            &openai,
            "--provider-key",
            "my-images=sk-own-key",
            "--aspect-ratio",
            "16:9",
            "-o",
            out_dir.to_str().unwrap(),
            "--json",
        ],
        &server,
        Some("hf_never_sent"),
        dir.path(),
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output);
    let media = lines.iter().find(|l| l["event"] == "media").unwrap();
    assert_eq!(media["provider"], "my-images");
    assert_eq!(std::fs::read(media["path"].as_str().unwrap()).unwrap(), png);
    for request in server.received_requests().await.unwrap() {
        assert!(
            !request.url.path().starts_with("/api/models"),
            "the Hub is not asked for an unlisted provider"
        );
        let auth = request
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_ne!(auth.as_deref(), Some("Bearer hf_never_sent"));
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A provider that echoes the request's headers back: in a 401 error body (together), and inside a
/// successful answer (fal-ai's result, which travels into the media event and the sidecar).
struct EchoHeaders {
    status: u16,
    media: bool,
}

impl wiremock::Respond for EchoHeaders {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let headers: serde_json::Map<String, Value> = request
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or_default())))
            .collect();
        let authorization = headers.get("authorization").cloned().unwrap_or_default();
        let body = if self.media {
            let png = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                hf_media_sink::conformance::tiny_png(),
            );
            json!({"images": [{"url": format!("data:image/png;base64,{png}")}], "echo": headers,
                   "note": format!("you sent {}", authorization.as_str().unwrap_or_default())})
        } else {
            json!({"error": format!("invalid credentials: {}", authorization.as_str().unwrap_or_default()),
                   "headers": headers})
        };
        ResponseTemplate::new(self.status).set_body_json(body)
    }
}

#[tokio::test]
async fn a_provider_echoing_the_token_never_gets_it_shown() {
    const CANARY: &str = "hf_canary_echo_4f2a9c";
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    mount_mapping(
        &server,
        json!({
            "together": {"status": "live", "providerId": "black-forest-labs/FLUX.1-schnell-Free", "task": "text-to-image"},
            "fal-ai": {"status": "live", "providerId": "fal-ai/flux/schnell", "task": "text-to-image"}
        }),
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/together/v1/images/generations"))
        .respond_with(EchoHeaders {
            status: 401,
            media: false,
        })
        .mount(&server)
        .await;
    // fal answers synchronously with the result (no queue), echoing the headers in it.
    Mock::given(method("POST"))
        .and(path("/fal-ai/fal-ai/flux/schnell"))
        .respond_with(EchoHeaders {
            status: 200,
            media: true,
        })
        .mount(&server)
        .await;
    let out_dir = dir.path().join("out");
    let output = run(
        &["generate", "a fox", "-o", out_dir.to_str().unwrap(), "--json", "-v"],
        &server,
        Some(CANARY),
        dir.path(),
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("Bearer [redacted]"),
        "the echo is kept, scrubbed: {stdout}"
    );
    assert!(!stdout.contains(CANARY), "stdout: {stdout}");
    assert!(!stderr.contains(CANARY), "stderr: {stderr}");
    let mut sidecars = 0;
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            sidecars += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains(CANARY), "{}: {text}", path.display());
            assert!(text.contains("[redacted]"), "{text}");
        }
    }
    assert_eq!(sidecars, 1);
}

#[tokio::test]
async fn models_lists_the_emulators_catalogue_offline() {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hf-media"))
        .args(["models", "--emulator", "--json"])
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("HOME", dir.path())
        .env("HF_HOME", dir.path().join("hf"))
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output);
    let models: Vec<&str> = lines.iter().map(|l| l["model"].as_str().unwrap()).collect();
    assert!(models.contains(&"black-forest-labs/FLUX.1-schnell"), "{models:?}");
    assert!(models.contains(&"Wan-AI/Wan2.1-T2V-14B"), "{models:?}");
    assert!(
        lines.iter().all(|l| !l["providers"].as_array().unwrap().is_empty()),
        "only models with a live provider: {lines:?}"
    );
}

#[tokio::test]
async fn a_bad_input_image_is_a_usage_error_and_nothing_is_sent() {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "words, not pixels").unwrap();
    let missing = dir.path().join("missing.png");
    for (image, expected) in [
        (missing.to_str().unwrap(), "does not exist"),
        (text.to_str().unwrap(), "not a PNG, JPEG, WebP or GIF"),
    ] {
        let output = run(
            &["generate", "make it gold", "--image", image, "--json"],
            &server,
            Some("hf_cli_token"),
            dir.path(),
        )
        .await;
        assert_eq!(output.status.code(), Some(2), "{image}");
        let lines = json_lines(&output);
        let error = lines.iter().find(|l| l["event"] == "error").unwrap();
        assert_eq!(error["kind"], "invalid_input");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(image) && message.contains(expected), "{message}");
    }
}

#[tokio::test]
async fn models_lists_image_tasks_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hf-media"))
        .args(["models", "--emulator", "--task", "image-to-image", "--json"])
        .env("HOME", dir.path())
        .env("HF_HOME", dir.path().join("hf"))
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output);
    assert!(lines.iter().all(|l| l["task"] == "image-to-image"), "{lines:?}");
    let models: Vec<&str> = lines.iter().map(|l| l["model"].as_str().unwrap()).collect();
    assert!(models.contains(&"black-forest-labs/FLUX.1-Kontext-dev"), "{models:?}");
}
