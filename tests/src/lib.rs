//! Shared helpers of the end-to-end tests.
//!
//! Every test starts one wiremock [`MockServer`] that plays both the Hugging Face Hub (the
//! `GET /api/models/{model}?expand[]=inferenceProviderMapping` mapping call) and the router (every
//! `/{provider}/…` route), and points a [`MediaGenerator`] at it with [`generator`]. The helpers below
//! mount Hub answers, collect a generation's events, pick events apart, and turn the requests the
//! server received into deterministic JSON for insta snapshots (no port, no token).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use hf_media::provider::ProviderStatus;
use hf_media::sink::DynMediaSink;
use hf_media::{
    Error, GeneratedMedia, GenerationEvent, GenerationStream, MediaGenerator, MediaGeneratorBuilder, PollConfig,
};
use serde_json::{Map, Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockBuilder, MockServer, Request, Respond, ResponseTemplate};

/// The token every test generator sends (never shown in snapshots).
pub const TOKEN: &str = "hf_test_token";

/// The Hub model most tests generate with.
pub const MODEL: &str = "black-forest-labs/FLUX.1-dev";

/// The prompt most tests generate with.
pub const PROMPT: &str = "A red fox at dawn";

/// The longest [`collect`] waits for a generation to finish before failing the test.
pub const COLLECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a mock server that acts as both the Hub and the router.
pub async fn start_server() -> MockServer {
    MockServer::start().await
}

/// A live mapping entry (`{"status": "live", "providerId", "task"}`) for the Hub's dict form.
pub fn live(provider_id: &str, task: &str) -> Value {
    json!({ "status": "live", "providerId": provider_id, "task": task })
}

/// A mapping entry with any status.
pub fn entry(status: &str, provider_id: &str, task: &str) -> Value {
    json!({ "status": status, "providerId": provider_id, "task": task })
}

/// The Hub's model-info answer carrying `field` as its `inferenceProviderMapping`.
pub fn hub_answer(model: &str, field: Value) -> Value {
    json!({ "_id": "0123456789abcdef", "id": model, "inferenceProviderMapping": field })
}

/// A mock of the Hub's mapping call for `model` (`GET /api/models/{model}?expand[]=inferenceProviderMapping`)
/// answering `field` as the `inferenceProviderMapping`. Not mounted: add expectations, then mount it.
pub fn hub_mapping(model: &str, field: Value) -> Mock {
    hub_route(model).respond_with(ResponseTemplate::new(200).set_body_json(hub_answer(model, field)))
}

/// The matchers of the Hub's mapping call for `model`, without a response (for custom answers).
pub fn hub_route(model: &str) -> MockBuilder {
    Mock::given(method("GET"))
        .and(path(format!("/api/models/{model}")))
        .and(query_param("expand[]", "inferenceProviderMapping"))
}

/// Mounts [`hub_mapping`] for `model`, expecting exactly one Hub call (the mapping is cached).
pub async fn mount_hub_mapping(server: &MockServer, model: &str, field: Value) {
    hub_mapping(model, field).expect(1).mount(server).await;
}

/// A builder pointed at `server` for both the Hub and the router, with [`TOKEN`], fast polling
/// (every 10 ms, for at most 5 s) and a 50 ms progress tick.
pub fn builder(server: &MockServer) -> MediaGeneratorBuilder {
    MediaGenerator::builder()
        .token(TOKEN)
        .hub_url(server.uri())
        .router_url(server.uri())
        .poll(PollConfig {
            interval: Duration::from_millis(10),
            deadline: Duration::from_secs(5),
        })
        .progress_interval(Duration::from_millis(50))
        .retry(fast_retry())
}

/// Three tries with millisecond backoff: retries are exercised without slowing the tests.
pub fn fast_retry() -> hf_media::RetryPolicy {
    hf_media::RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(2),
    }
}

/// [`builder`] with `sink`, built.
pub fn generator(server: &MockServer, sink: DynMediaSink) -> MediaGenerator {
    builder(server).sink(sink).build().unwrap()
}

/// Reads every event of a generation, checking that the stream ends (within [`COLLECT_TIMEOUT`]) and
/// that its last event is [`GenerationEvent::Done`].
pub async fn collect(stream: GenerationStream) -> Vec<GenerationEvent> {
    let events: Vec<GenerationEvent> = tokio::time::timeout(COLLECT_TIMEOUT, stream.collect())
        .await
        .expect("the generation did not finish in time");
    assert!(
        matches!(events.last(), Some(GenerationEvent::Done { .. })),
        "the last event must be Done: {events:#?}"
    );
    events
}

/// The media of [`GenerationEvent::Media`] events, in order.
pub fn media(events: &[GenerationEvent]) -> Vec<&GeneratedMedia> {
    events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::Media(m) => Some(&**m),
            _ => None,
        })
        .collect()
}

/// The only media of a generation (panics, showing the events, when there is not exactly one).
pub fn single_media(events: &[GenerationEvent]) -> &GeneratedMedia {
    let all = media(events);
    assert_eq!(all.len(), 1, "expected exactly one media: {events:#?}");
    all[0]
}

/// The `(task, error)` of [`GenerationEvent::Error`] events, in order.
pub fn errors(events: &[GenerationEvent]) -> Vec<(Option<usize>, &Error)> {
    events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::Error { task, error } => Some((*task, error)),
            _ => None,
        })
        .collect()
}

/// The only error of a generation (panics, showing the events, when there is not exactly one).
pub fn single_error(events: &[GenerationEvent]) -> &Error {
    let all = errors(events);
    assert_eq!(all.len(), 1, "expected exactly one error: {events:#?}");
    all[0].1
}

/// The `(provider, status, message)` of [`GenerationEvent::Fallback`] events, in order.
pub fn fallbacks(events: &[GenerationEvent]) -> Vec<(&str, Option<u16>, &str)> {
    events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::Fallback {
                provider,
                status,
                message,
                ..
            } => Some((provider.as_str(), *status, message.as_str())),
            _ => None,
        })
        .collect()
}

/// The providers of [`GenerationEvent::Attempt`] events, in order.
pub fn attempts(events: &[GenerationEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::Attempt { provider, .. } => Some(provider.as_str()),
            _ => None,
        })
        .collect()
}

/// The messages of [`GenerationEvent::Warning`] events, in order.
pub fn warnings(events: &[GenerationEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::Warning { message, .. } => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

/// The statuses of [`GenerationEvent::ProviderStatus`] events, in order.
pub fn provider_statuses(events: &[GenerationEvent]) -> Vec<&ProviderStatus> {
    events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::ProviderStatus { status, .. } => Some(status),
            _ => None,
        })
        .collect()
}

/// The `(done, total)` of [`GenerationEvent::Progress`] events, in order.
pub fn progress(events: &[GenerationEvent]) -> Vec<(usize, usize)> {
    events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::Progress { done, total, .. } => Some((*done, *total)),
            _ => None,
        })
        .collect()
}

/// The `(succeeded, failed)` of the final [`GenerationEvent::Done`].
pub fn done(events: &[GenerationEvent]) -> (usize, usize) {
    match events.last() {
        Some(GenerationEvent::Done { succeeded, failed, .. }) => (*succeeded, *failed),
        other => panic!("the last event must be Done, got {other:?}"),
    }
}

/// The requests the server received on `path` (any method, any query), in order.
pub async fn requests_to(server: &MockServer, path: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
        .into_iter()
        .filter(|r| r.url.path() == path)
        .collect()
}

/// The headers kept in snapshots, in this order.
const SNAPSHOT_HEADERS: &[&str] = &["accept", "authorization", "content-type", "prefer", "x-hf-bill-to"];

/// A received request as deterministic JSON: `{method, path, query, headers, body}`.
///
/// `headers` keeps only `accept`, `authorization`, `content-type`, `prefer` and `x-hf-bill-to`. The
/// authorization header is checked to be exactly `Bearer {token}` and shown as `Bearer [token]`. A JSON
/// body is parsed; any other body is shown as its length.
pub fn describe_request(request: &Request, token: &str) -> Value {
    let mut headers = Map::new();
    for name in SNAPSHOT_HEADERS {
        let Some(value) = request.headers.get(*name) else {
            continue;
        };
        let value = value.to_str().expect("header is text");
        let shown = if *name == "authorization" {
            assert_eq!(
                value,
                format!("Bearer {token}"),
                "wrong authorization on {} {}",
                request.method,
                request.url.path()
            );
            "Bearer [token]".to_owned()
        } else {
            value.to_owned()
        };
        headers.insert((*name).to_owned(), Value::String(shown));
    }
    let body = if request.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&request.body).unwrap_or_else(|_| json!({ "non_json_bytes": request.body.len() }))
    };
    json!({
        "method": request.method.to_string(),
        "path": request.url.path(),
        "query": request.url.query(),
        "headers": headers,
        "body": body,
    })
}

/// `value` with every `seed` number replaced by `"[random seed]"`: a request that sets no seed gets a
/// random one per generation (so that `n` generations differ and each can be made again).
pub fn random_seeds_redacted(value: impl Into<Value>) -> Value {
    fn redact(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if key == "seed" && v.is_number() {
                        *v = Value::String("[random seed]".into());
                    } else {
                        redact(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(redact),
            _ => {}
        }
    }
    let mut value = value.into();
    redact(&mut value);
    value
}

/// The one request received on `path`, as [`describe_request`] JSON (with [`TOKEN`]); panics when the
/// server received none or several.
pub async fn captured_request(server: &MockServer, path: &str) -> Value {
    let requests = requests_to(server, path).await;
    assert_eq!(
        requests.len(),
        1,
        "expected exactly one request on {path}, got {}",
        requests.len()
    );
    describe_request(&requests[0], TOKEN)
}

/// Every request the server received except the Hub's mapping calls, in order, as [`describe_request`]
/// JSON (with [`TOKEN`]).
pub async fn captured_router_requests(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
        .iter()
        .filter(|r| !r.url.path().starts_with("/api/models/"))
        .map(|r| describe_request(r, TOKEN))
        .collect()
}

/// A response that serves `bytes` with the given `Content-Type`.
pub fn bytes_response(bytes: Vec<u8>, content_type: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(bytes, content_type)
}

/// A responder that answers its templates in turn, repeating the last one forever (for polling:
/// `IN_QUEUE`, then `IN_PROGRESS`, then `COMPLETED`…). Clones share the position.
#[derive(Clone)]
pub struct Sequence {
    templates: Arc<Vec<ResponseTemplate>>,
    next: Arc<AtomicUsize>,
}

impl Sequence {
    /// A responder answering `templates` in order (at least one).
    pub fn new(templates: Vec<ResponseTemplate>) -> Self {
        assert!(!templates.is_empty(), "a sequence needs at least one response");
        Sequence {
            templates: Arc::new(templates),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many requests were answered.
    pub fn answered(&self) -> usize {
        self.next.load(Ordering::SeqCst)
    }
}

impl Respond for Sequence {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let i = self.next.fetch_add(1, Ordering::SeqCst);
        self.templates[i.min(self.templates.len() - 1)].clone()
    }
}

/// The names of the entries of `dir` (hidden temporary files included), sorted; empty when `dir` does
/// not exist.
pub fn dir_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Checks a media stored by a [`hf_media::FileSink`] writing into `dir`: the file holds exactly
/// `expected`, its extension is `ext`, its size is reported, the sidecar sits next to it with the same
/// stem, and `dir` holds nothing else (no temporary file). Returns the sidecar's JSON.
pub fn check_stored_file(media: &GeneratedMedia, dir: &Path, expected: &[u8], ext: &str) -> Value {
    let hf_media::MediaLocation::File(file) = &media.location else {
        panic!("expected a file, got {:?}", media.location);
    };
    assert_eq!(file.parent(), Some(dir), "the media must be in the sink's folder");
    assert_eq!(
        file.extension().and_then(|e| e.to_str()),
        Some(ext),
        "wrong extension: {}",
        file.display()
    );
    assert_eq!(
        std::fs::read(file).unwrap(),
        expected,
        "the file must hold exactly the served bytes"
    );
    assert_eq!(media.bytes, expected.len() as u64);
    let sidecar = media
        .sidecar
        .as_ref()
        .and_then(|location| location.as_path())
        .expect("a FileSink writes a sidecar file");
    assert_eq!(
        sidecar.with_extension(ext),
        *file,
        "the sidecar must share the media's stem"
    );
    let mut expected_names = vec![
        file.file_name().unwrap().to_string_lossy().into_owned(),
        sidecar.file_name().unwrap().to_string_lossy().into_owned(),
    ];
    expected_names.sort();
    assert_eq!(
        dir_files(dir),
        expected_names,
        "the folder must hold the media and its sidecar only"
    );
    read_json(sidecar)
}

/// Reads a JSON sidecar.
pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A real 1×1 PNG ([`hf_media_sink::conformance::tiny_png`]).
pub fn png() -> Vec<u8> {
    hf_media_sink::conformance::tiny_png()
}

/// An MP4 head ([`hf_media_sink::conformance::tiny_mp4_head`]) followed by 100 zero bytes.
pub fn mp4() -> Vec<u8> {
    let mut bytes = hf_media_sink::conformance::tiny_mp4_head();
    bytes.extend_from_slice(&[0u8; 100]);
    bytes
}

/// The start of a lossless WebP file (`RIFF` … `WEBPVP8L`): enough to be sniffed as WebP.
pub fn webp() -> Vec<u8> {
    let mut bytes = b"RIFF".to_vec();
    bytes.extend_from_slice(&34u32.to_le_bytes());
    bytes.extend_from_slice(b"WEBPVP8L");
    bytes.extend_from_slice(&22u32.to_le_bytes());
    bytes.extend_from_slice(&[0x2f, 0x00, 0x00, 0x00, 0x00]);
    bytes.extend_from_slice(&[0u8; 17]);
    bytes
}

/// Standard base64 with padding (as providers send `b64_json`).
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A small PNG (3×2, coloured pixels) to send as an input image: a real image, different from [`png`]
/// (the media the mocks serve), so that an input can never pass for an output.
pub fn input_png() -> Vec<u8> {
    let pixels = [
        [200u8, 30, 30],
        [30, 200, 30],
        [30, 30, 200],
        [250, 250, 0],
        [0, 250, 250],
        [9, 9, 9],
    ];
    encode_png(3, 2, |x, y| pixels[(y * 3 + x) as usize])
}

/// Another small input PNG (2×2), different from [`input_png`], for multi-image requests.
pub fn second_input_png() -> Vec<u8> {
    encode_png(2, 2, |x, y| {
        [u8::try_from(x * 100).unwrap(), u8::try_from(y * 100).unwrap(), 77]
    })
}

/// A `width`×`height` PNG of deterministic noise: it does not compress, so it weighs about
/// `3 × width × height` bytes (for the limits on inline images).
pub fn noisy_png(width: u32, height: u32) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    let mut next = move || {
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state.to_le_bytes()
    };
    encode_png(width, height, |_, _| {
        let [r, g, b, _] = next();
        [r, g, b]
    })
}

fn encode_png(width: u32, height: u32, mut pixel: impl FnMut(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb(pixel(x, y)));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// `bytes` as a `data:` URL labelled `mime` (what URL-taking providers are sent for bytes and files).
pub fn data_url(mime: &str, bytes: &[u8]) -> String {
    format!("data:{mime};base64,{}", base64(bytes))
}

/// Decodes standard base64 (panics on anything else).
pub fn unbase64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

/// The bytes of a `data:…;base64,…` URL (panics on anything else).
pub fn data_url_bytes(url: &str) -> Vec<u8> {
    let (head, payload) = url
        .split_once(";base64,")
        .unwrap_or_else(|| panic!("not a base64 data: URL: {}", url.get(..40).unwrap_or(url)));
    assert!(head.starts_with("data:"), "not a data: URL: {head}");
    unbase64(payload)
}

/// The SHA-256 of `bytes` in lower-case hexadecimal, computed here (FIPS 180-4) and not by the library
/// under test, so that the hashes the library reports are checked against an independent value.
pub fn sha256_hex(bytes: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ];
    let mut message = bytes.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((bytes.len() as u64) * 8).to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (state, value) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *state = state.wrapping_add(value);
        }
    }
    h.iter().map(|word| format!("{word:08x}")).collect()
}

/// `value` with every inline image replaced by its length and the SHA-256 of its bytes, for snapshots:
/// a `data:…;base64,…` string becomes `"[data:image/png;base64: 412 chars, sha256 …]"`, and a bare base64
/// string of at least 64 characters (hf-inference's `inputs`) `"[base64: 412 chars, sha256 …]"`.
pub fn inline_images_redacted(value: impl Into<Value>) -> Value {
    fn bare_base64(text: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        if text.len() < 64 {
            return None;
        }
        base64::engine::general_purpose::STANDARD.decode(text).ok()
    }
    fn redact(value: &mut Value) {
        match value {
            Value::String(text) => {
                if let Some((head, payload)) = text.split_once(";base64,")
                    && head.starts_with("data:")
                {
                    let bytes = unbase64(payload);
                    *text = format!(
                        "[{head};base64: {} chars, sha256 {}]",
                        payload.len(),
                        sha256_hex(&bytes)
                    );
                } else if let Some(bytes) = bare_base64(text) {
                    *text = format!("[base64: {} chars, sha256 {}]", text.len(), sha256_hex(&bytes));
                }
            }
            Value::Object(map) => map.values_mut().for_each(redact),
            Value::Array(items) => items.iter_mut().for_each(redact),
            _ => {}
        }
    }
    let mut value = value.into();
    redact(&mut value);
    value
}

/// A wiremock matcher: the request's JSON body holds exactly `expected` at `pointer` (a JSON pointer
/// such as `/frame_images/0/input_image`). Unlike `body_partial_json`, arrays must match in full.
pub fn json_at(pointer: &str, expected: Value) -> impl Fn(&Request) -> bool + Send + Sync + 'static {
    let pointer = pointer.to_owned();
    move |request: &Request| {
        serde_json::from_slice::<Value>(&request.body)
            .ok()
            .is_some_and(|body| body.pointer(&pointer) == Some(&expected))
    }
}

/// A wiremock matcher: the request's JSON body has nothing at `pointer`.
pub fn json_lacks(pointer: &str) -> impl Fn(&Request) -> bool + Send + Sync + 'static {
    let pointer = pointer.to_owned();
    move |request: &Request| {
        serde_json::from_slice::<Value>(&request.body)
            .ok()
            .is_some_and(|body| body.pointer(&pointer).is_none())
    }
}

/// The JSON body of a received request (panics when it is not JSON).
pub fn json_body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON body")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"hello"), "aGVsbG8=");
    }

    #[test]
    fn sha256_matches_known_values() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            sha256_hex(&[b'a'; 1000]),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
        );
    }

    #[test]
    fn input_images_are_distinct_real_pngs() {
        let (a, b, noisy) = (input_png(), second_input_png(), noisy_png(64, 64));
        for image in [&a, &b, &noisy] {
            assert_eq!(hf_media_sink::sniff(image).unwrap().mime, "image/png");
        }
        assert!(a != png() && a != b && b != png());
        assert!(noisy.len() > 3 * 64 * 64, "noise does not compress: {}", noisy.len());
    }

    #[test]
    fn inline_images_are_redacted_to_length_and_hash() {
        let a = input_png();
        let redacted = inline_images_redacted(json!({
            "url": data_url("image/png", &a),
            "bare": [base64(&a)],
            "prompt": "A red fox at dawn",
            "short": "aGVsbG8=",
        }));
        let hash = sha256_hex(&a);
        let chars = base64(&a).len();
        assert_eq!(
            redacted,
            json!({
                "url": format!("[data:image/png;base64: {chars} chars, sha256 {hash}]"),
                "bare": [format!("[base64: {chars} chars, sha256 {hash}]")],
                "prompt": "A red fox at dawn",
                "short": "aGVsbG8=",
            })
        );
        assert_eq!(data_url_bytes(&data_url("image/png", &a)), a);
    }

    #[test]
    fn sample_media_are_sniffed_as_intended() {
        assert_eq!(hf_media_sink::sniff(&png()).unwrap().extension, "png");
        assert_eq!(hf_media_sink::sniff(&mp4()).unwrap().extension, "mp4");
        assert_eq!(hf_media_sink::sniff(&webp()).unwrap().extension, "webp");
    }
}
