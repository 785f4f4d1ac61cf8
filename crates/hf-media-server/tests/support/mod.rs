//! What the tests of bad inputs, attacks, limits and reliability share: a client, the OpenAI error
//! shape, raw HTTP exchanges, small images, and what an output folder holds.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use hf_media_emulator::{Emulator, ProviderBehaviour};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// FLUX.1-schnell pinned to hf-inference (a synchronous provider: one submit, the image in the answer).
pub const SCHNELL_HF: &str = "black-forest-labs/FLUX.1-schnell:hf-inference";
/// FLUX.1-schnell pinned to fal-ai (a queue: submit, polls, a download).
pub const SCHNELL_FAL: &str = "black-forest-labs/FLUX.1-schnell:fal-ai";
/// A video model pinned to fal-ai (a queue: the job ticket is recorded and can be resumed).
pub const VIDEO_FAL: &str = "Wan-AI/Wan2.2-T2V-A14B:fal-ai";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a client")
}

/// An emulator whose `provider` takes `latency` for each generation.
pub fn slow(provider: &str, latency: Duration) -> Emulator {
    let emulator = Emulator::new();
    emulator.set_behaviour(provider, ProviderBehaviour::default().with_latency(latency));
    emulator
}

/// A request's status, headers and JSON body.
pub async fn send(request: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("a JSON body ({e}): {text}"));
    (status, headers, body)
}

/// Checks that `body` is OpenAI's error object, `{"error": {"message", "type", "param", "code"}}`, with
/// this `param` and `code`; returns the message.
pub fn openai_error<'a>(body: &'a Value, param: Option<&str>, code: &str) -> &'a str {
    let object = body.as_object().unwrap_or_else(|| panic!("an object: {body}"));
    assert_eq!(object.len(), 1, "only `error` at the top: {body}");
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("an error object: {body}"));
    for key in ["message", "type", "param", "code"] {
        assert!(error.contains_key(key), "`{key}` in {body}");
    }
    assert!(error["type"].is_string(), "{body}");
    assert_eq!(error["param"].as_str(), param, "param of {body}");
    assert_eq!(error["code"].as_str(), Some(code), "code of {body}");
    let message = error["message"].as_str().unwrap_or_else(|| panic!("a message: {body}"));
    assert!(!message.is_empty(), "{body}");
    message
}

/// The PNG bytes of a small image.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).expect("a PNG");
    bytes.into_inner()
}

/// The size of an encoded image.
pub fn decode(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(bytes).expect("an image");
    (image.width(), image.height())
}

/// Every file under `output` (`/`-separated, relative), the job store's `.hf-media` folder left out.
pub fn stored_files(output: &Path) -> Vec<String> {
    fn walk(root: &Path, folder: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(folder).expect("a readable folder").flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            if relative == ".hf-media" {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, found);
            } else {
                found.push(relative);
            }
        }
    }
    let mut found = Vec::new();
    walk(output, output, &mut found);
    found.sort();
    found
}

/// The sink's temporary files under `output` (`.hf-media-*.part`), anywhere.
pub fn temporaries(output: &Path) -> Vec<String> {
    stored_files(output)
        .into_iter()
        .filter(|name| {
            let file = name.rsplit('/').next().unwrap_or(name);
            file.ends_with(".part") || file.starts_with(".hf-media-")
        })
        .collect()
}

/// Sends `request` as is on a new connection and reads the answer until the server closes it (send
/// `Connection: close`); the status code and the whole answer.
pub async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("a connection");
    stream.write_all(request).await.expect("sent");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {answer:?}"));
    (status, answer)
}

/// A raw answer's JSON body.
pub fn raw_body(answer: &str) -> Value {
    let (_, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("a JSON body ({e}): {body:?}"))
}

/// Waits until `done` holds, checking every 20 ms, for at most `within`.
pub async fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < until {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// The `/healthz` answer.
pub async fn health(url: &str) -> Value {
    client()
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect("an answer")
        .json()
        .await
        .expect("JSON")
}
