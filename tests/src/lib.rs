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
    fn sample_media_are_sniffed_as_intended() {
        assert_eq!(hf_media_sink::sniff(&png()).unwrap().extension, "png");
        assert_eq!(hf_media_sink::sniff(&mp4()).unwrap().extension, "mp4");
        assert_eq!(hf_media_sink::sniff(&webp()).unwrap().extension, "webp");
    }
}
