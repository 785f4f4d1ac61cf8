//! Secrets never leak: a provider that echoes the credentials it was sent (the HF token, a provider's own
//! key) and the server's API key back in its errors does not make the server show them, in an answer's
//! body or headers, an error, a streamed event, a video job's error, a stored file, or a log line.
//!
//! The emulator has no fault that echoes the request's `Authorization` header, so its faults carry the
//! secrets in their bodies, as such a provider's error would. This file is its own test binary: its
//! global log subscriber hears only this test's server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use hf_media::{MediaGeneratorBuilder, RetryPolicy, Secret};
use hf_media_emulator::{Emulator, Fault, FaultRule, ProviderBehaviour};
use hf_media_server::testing::TestServer;
use serde_json::{Value, json};
use support::{SCHNELL_FAL, SCHNELL_HF, VIDEO_FAL, client};

const TOKEN: &str = "hf_tokenQ7w3Zr9LmXp2Vb8NcT";
const FAL_KEY: &str = "fal-keyK4s8Hd2PqW6eRy1UzA";
const SERVER_KEY: &str = "sk-serverJ5n9Gf3TbC7xMv0LoE";
const SECRETS: [&str; 3] = [TOKEN, FAL_KEY, SERVER_KEY];

/// Every log line of the process.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // What `hf-media serve -v` logs, and more: every level of every hf-media crate but the emulator
        // (it is the provider, it may log what it was sent), and the libraries' debug lines.
        let filter = tracing_subscriber::EnvFilter::new(
            "debug,hf_media=trace,hf_media_provider=trace,hf_media_mapping=trace,hf_media_batch=trace,\
             hf_media_sink=trace,hf_media_server=trace,hf_media_emulator=off",
        );
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(|| Capture)
            .with_ansi(false)
            .init();
    });
}

/// A provider's error that repeats every credential it was sent.
fn echo(status: u16) -> FaultRule {
    FaultRule::always(Fault::Status {
        status,
        body: Some(json!({
            "error": format!(
                "invalid request from Authorization: Bearer {TOKEN}; key {FAL_KEY}; forwarded for {SERVER_KEY}"
            ),
            "detail": {"authorization": format!("Key {FAL_KEY}"), "token": TOKEN, "client": SERVER_KEY},
        })),
    })
}

/// What a client saw of one answer: its status, headers and body, as text.
struct Seen {
    status: u16,
    text: String,
}

async fn see(request: reqwest::RequestBuilder) -> Seen {
    let response = request.bearer_auth(SERVER_KEY).send().await.expect("an answer");
    let status = response.status().as_u16();
    let mut text = String::new();
    for (name, value) in response.headers() {
        text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
    }
    text.push('\n');
    text.push_str(&response.text().await.expect("a body"));
    Seen { status, text }
}

fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
        // Nor a good part of one.
        let middle = &secret[4..secret.len() - 4];
        assert!(!text.contains(middle), "{what} shows part of {secret}:\n{text}");
    }
}

/// Every file under `folder`, the job store included, as lossy text.
fn every_file(folder: &std::path::Path, found: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(folder).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            every_file(&path, found);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            found.push((path.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_credentials_never_reach_a_client_a_file_or_a_log() {
    capture_logs();
    let emulator = Emulator::new();
    let quick_retries = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    };
    let server = TestServer::start_on(
        emulator.clone(),
        |config| config.api_keys = vec![Secret::new(SERVER_KEY)],
        |builder| {
            // `emulator_url` would replace the token with the emulator's stand-in: point the Hub, the
            // router and fal-ai's own API at the emulator by hand, so that the real token is sent.
            let mut config = builder.config().clone();
            let emulator_url = config.emulator_url.take().expect("the emulator's URL");
            config.hub_url = Some(emulator_url.clone());
            config.router_url = Some(emulator_url.clone());
            config
                .provider_urls
                .insert("fal-ai".into(), format!("{emulator_url}/fal-ai"));
            MediaGeneratorBuilder::from_config(config)
                .token(TOKEN)
                .provider_key("fal-ai", FAL_KEY)
                .retry(quick_retries)
        },
    )
    .await
    .unwrap();
    let url = server.url();
    let http = client();
    let generate = |body: Value| http.post(format!("{url}/v1/images/generations")).json(&body);

    // A good generation first: its answer and its sidecar.
    let good = see(generate(
        json!({"prompt": "a fox", "model": SCHNELL_HF, "size": "64x64"}),
    ))
    .await;
    assert_eq!(good.status, 200, "{}", good.text);
    assert_clean("a good answer", &good.text);

    // hf-inference (through the router, with the token) and fal-ai (its own API, with its key) echo.
    emulator.set_behaviour("hf-inference", ProviderBehaviour::default().with_fault(echo(500)));
    emulator.set_behaviour("fal-ai", ProviderBehaviour::default().with_fault(echo(401)));
    let mut seen = Vec::new();
    let failed = see(generate(json!({"prompt": "a fox", "model": SCHNELL_HF}))).await;
    assert_eq!(failed.status, 502, "{}", failed.text);
    assert!(
        failed.text.contains("invalid request from Authorization"),
        "the provider's message is kept: {}",
        failed.text
    );
    seen.push(("a 502", failed));
    let refused = see(generate(json!({"prompt": "a fox", "model": SCHNELL_FAL}))).await;
    assert_eq!(refused.status, 401, "every provider refused the key: {}", refused.text);
    seen.push(("a provider's 401", refused));
    for model in [SCHNELL_HF, SCHNELL_FAL] {
        let streamed = see(generate(json!({"prompt": "a fox", "model": model, "stream": true}))).await;
        assert_eq!(streamed.status, 200);
        assert!(streamed.text.contains("event: error"), "{}", streamed.text);
        seen.push(("a stream's error event", streamed));
    }
    let n_failed = see(generate(
        json!({"prompt": "a fox", "model": SCHNELL_HF, "n": 2, "response_format": "b64_json"}),
    ))
    .await;
    seen.push(("a failed n=2", n_failed));

    // A video job on fal-ai fails with the echo: its stored error, as retrieved and listed.
    let created: Value = http
        .post(format!("{url}/v1/videos"))
        .bearer_auth(SERVER_KEY)
        .json(&json!({"prompt": "a fox", "model": VIDEO_FAL, "seconds": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("a video id").to_owned();
    let mut video = Value::Null;
    for _ in 0..100 {
        video = http
            .get(format!("{url}/v1/videos/{id}"))
            .bearer_auth(SERVER_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if video["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(video["status"], "failed", "{video}");
    seen.push(("a failed video", see(http.get(format!("{url}/v1/videos/{id}"))).await));
    seen.push(("the video list", see(http.get(format!("{url}/v1/videos"))).await));
    seen.push((
        "the gallery listing",
        see(http.get(format!("{url}/gallery/media"))).await,
    ));
    seen.push(("the metrics", see(http.get(format!("{url}/metrics"))).await));
    for (what, answer) in &seen {
        assert_clean(what, &answer.text);
    }

    let mut files = Vec::new();
    every_file(server.output(), &mut files);
    assert!(
        files.iter().any(|(path, _)| path.ends_with(".json")),
        "a sidecar was written"
    );
    assert!(
        files.iter().any(|(path, _)| path.contains("serve-state.sqlite")),
        "the job store was written"
    );
    for (path, text) in &files {
        assert_clean(path, text);
    }

    let log = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
    assert!(log.contains("request failed"), "the 502 was logged:\n{log}");
    assert!(log.contains("video job"), "the video job was logged:\n{log}");
    assert_clean("the log", &log);
}
