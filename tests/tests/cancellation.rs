//! Cancellation and deadlines (nothing left on disk), and custom providers registered next to the
//! built-in ones.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use hf_media::provider::{GenerationRequest, MediaBody, MediaOutput, ProviderContext, ProviderInfo, http};
use hf_media::{
    Error, FileSink, GenerateRequest, GenerationEvent, GenerationParams, MediaProvider, MemorySink, ProviderError,
    ProviderRegistry, ProviderStatus, Task,
};
use hf_media_tests::*;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A provider whose media stream yields a PNG head and 2 MiB of data (more than the sink keeps in memory,
/// so a temporary file exists), then never ends (a stalled download). `dropped` turns true once the stream
/// is dropped.
#[derive(Debug, Default)]
struct StallingProvider {
    dropped: Arc<AtomicBool>,
}

#[async_trait]
impl MediaProvider for StallingProvider {
    fn info(&self) -> &ProviderInfo {
        static INFO: ProviderInfo = ProviderInfo::routed("stalling", &[Task::TextToImage]);
        &INFO
    }

    async fn generate(
        &self,
        _ctx: &ProviderContext,
        _request: GenerationRequest,
    ) -> Result<MediaOutput, ProviderError> {
        let guard = DropFlag(self.dropped.clone());
        let mut head = png()[..40].to_vec();
        head.resize(2 * 1024 * 1024, 0);
        let head = Bytes::from(head);
        let stream = futures::stream::once(async move { Ok(head) })
            .chain(futures::stream::pending())
            .map(move |chunk| {
                let _keep = &guard;
                chunk
            })
            .boxed();
        Ok(MediaOutput::new(MediaBody::Stream(stream)))
    }
}

/// A generator whose registry has the defaults plus `provider`, and whose Hub lists it (live) for
/// [`MODEL`].
async fn generator_with(
    server: &wiremock::MockServer,
    provider: Arc<dyn MediaProvider>,
    sink: hf_media::sink::DynMediaSink,
    timeout: Option<Duration>,
) -> hf_media::MediaGenerator {
    let name = provider.name().to_owned();
    mount_hub_mapping(
        server,
        MODEL,
        json!({
            "fal-ai": live("fal-ai/flux/dev", "text-to-image"),
            name: live("custom/flux-dev", "text-to-image"),
        }),
    )
    .await;
    let mut registry = ProviderRegistry::with_defaults();
    assert!(registry.register(provider).is_none(), "a new name replaces nothing");
    builder(server)
        .registry(registry)
        .sink(sink)
        .generation_timeout(timeout)
        .build()
        .unwrap()
}

/// Waits (at most 2 s) until `dir` holds a hidden `.part` file.
async fn wait_for_part_file(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !dir_files(dir).iter().any(|n| n.ends_with(".part")) {
        assert!(
            Instant::now() < deadline,
            "the sink never started writing: {:?}",
            dir_files(dir)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn dropping_the_stream_cancels_and_leaves_no_file() {
    let server = start_server().await;
    let provider = Arc::new(StallingProvider::default());
    let dropped = provider.dropped.clone();
    let dir = tempfile::tempdir().unwrap();
    let generator = generator_with(&server, provider, Arc::new(FileSink::new(dir.path())), None).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;

    let mut stream = generator.generate(GenerateRequest::new(PROMPT).model(format!("{MODEL}:stalling")));
    loop {
        let event = tokio::time::timeout(Duration::from_secs(2), stream.next())
            .await
            .expect("an Attempt event comes quickly")
            .expect("the stream does not end before the Attempt");
        if let GenerationEvent::Attempt { provider, .. } = event {
            assert_eq!(provider, "stalling");
            break;
        }
    }
    // The sink is writing the partial media…
    wait_for_part_file(dir.path()).await;
    assert!(!dropped.load(Ordering::SeqCst));
    // …until the caller gives up.
    drop(stream);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "dropping the events must drop the provider's stream"
    );
    assert_eq!(
        dir_files(dir.path()),
        Vec::<String>::new(),
        "no .part file, no media, no sidecar"
    );
}

#[tokio::test]
async fn the_generation_timeout_stops_a_stalled_download_and_cleans_up() {
    let server = start_server().await;
    let provider = Arc::new(StallingProvider::default());
    let dropped = provider.dropped.clone();
    let dir = tempfile::tempdir().unwrap();
    let limit = Duration::from_millis(300);
    let generator = generator_with(&server, provider, Arc::new(FileSink::new(dir.path())), Some(limit)).await;

    let started = Instant::now();
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(format!("{MODEL}:stalling")))).await;
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    let error = single_error(&events);
    assert!(
        matches!(error, Error::Timeout { after, .. } if *after == limit),
        "{error:?}"
    );
    assert_eq!(error.kind(), "timeout");
    assert_eq!(done(&events), (0, 1));
    assert!(dropped.load(Ordering::SeqCst));
    assert_eq!(dir_files(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn the_generation_timeout_stops_a_provider_that_never_answers() {
    let server = start_server().await;
    mount_hub_mapping(&server, MODEL, json!({ "hf-inference": live(MODEL, "text-to-image") })).await;
    Mock::given(method("POST"))
        .and(path(format!("/hf-inference/models/{MODEL}")))
        .respond_with(bytes_response(png(), "image/png").set_delay(Duration::from_secs(30)))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let generator = builder(&server)
        .generation_timeout(Some(Duration::from_millis(200)))
        .sink(Arc::new(FileSink::new(dir.path())))
        .build()
        .unwrap();

    let started = Instant::now();
    let events = collect(generator.generate(GenerateRequest::new(PROMPT).model(MODEL))).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(1),
        "{elapsed:?}"
    );
    let error = single_error(&events);
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert_eq!(error.kind(), "timeout");
    assert!(error.to_string().contains("0.2s"), "{error}");
    assert_eq!(attempts(&events), ["hf-inference"]);
    assert!(
        fallbacks(&events).is_empty(),
        "the deadline covers the whole generation: no fallback"
    );
    assert_eq!(done(&events), (0, 1));
    assert!(dir_files(dir.path()).is_empty());
}

/// A custom provider speaking its own protocol through the router with the shared helpers:
/// `POST {base}/render/{providerId}` with `{"text": prompt, "seed"}`, answered with raw bytes.
#[derive(Debug, Default)]
struct RenderProvider {
    seen: Mutex<Vec<(String, String, GenerationParams, String)>>,
}

#[async_trait]
impl MediaProvider for RenderProvider {
    fn info(&self) -> &ProviderInfo {
        static INFO: ProviderInfo = ProviderInfo::routed("my-provider", &[Task::TextToImage]);
        &INFO
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        self.seen.lock().unwrap().push((
            request.prompt.clone(),
            request.mapping.provider_id.clone(),
            request.params.clone(),
            ctx.base_url().to_string(),
        ));
        ctx.report(ProviderStatus::new("rendering"));
        let url = ctx.url(&format!("/render/{}", request.mapping.provider_id))?;
        let body = json!({ "text": request.prompt, "seed": request.params.seed });
        let response = http::send(ctx, ctx.request(reqwest::Method::POST, url).json(&body)).await?;
        let mut output = MediaOutput::new(MediaBody::Stream(http::body_stream(ctx.provider(), response)));
        output.seed = request.params.seed;
        Ok(output)
    }
}

#[tokio::test]
async fn a_registered_custom_provider_works_end_to_end() {
    let server = start_server().await;
    let provider = Arc::new(RenderProvider::default());
    let sink = MemorySink::new();
    let generator = generator_with(&server, provider.clone(), Arc::new(sink.clone()), None).await;
    assert!(generator.registry().get("my-provider").is_some());
    Mock::given(method("POST"))
        .and(path("/my-provider/render/custom/flux-dev"))
        .respond_with(bytes_response(png(), "application/octet-stream"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/fal-ai/fal-ai/flux/dev"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let params = GenerationParams {
        seed: Some(1234),
        ..GenerationParams::default()
    };
    let request = GenerateRequest::new(PROMPT)
        .model(format!("{MODEL}:my-provider"))
        .params(params.clone());
    let events = collect(generator.generate(request)).await;

    assert_eq!(attempts(&events), ["my-provider"]);
    let media = single_media(&events);
    assert_eq!(
        (media.provider.as_str(), media.provider_id.as_str()),
        ("my-provider", "custom/flux-dev")
    );
    assert_eq!(media.mime, "image/png");
    assert_eq!(media.seed, Some(1234));
    assert_eq!(media.location, hf_media::MediaLocation::Memory { id: 0 });
    assert!(media.sidecar.is_none());
    let items = sink.items();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].bytes.as_ref(), png().as_slice());
    assert_eq!(items[0].record.provider, "my-provider");
    assert_eq!(items[0].record.provider_id, "custom/flux-dev");
    assert_eq!(items[0].record.prompt, PROMPT);
    assert_eq!(items[0].record.seed, Some(1234));

    let statuses = provider_statuses(&events);
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].state, "rendering");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, GenerationEvent::ProviderStatus { provider, .. } if provider == "my-provider"))
    );

    let seen = provider.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, PROMPT);
    assert_eq!(seen[0].1, "custom/flux-dev");
    assert_eq!(seen[0].2, params);
    assert_eq!(
        seen[0].3,
        format!("{}/my-provider", server.uri()),
        "routed under the provider's name"
    );

    insta::assert_json_snapshot!(
        "custom_provider_request",
        captured_request(&server, "/my-provider/render/custom/flux-dev").await
    );
}
