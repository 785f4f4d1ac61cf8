//! A provider the Hub does not know, plugged in with a trait impl, and media kept in memory.
//!
//! Runs offline: a local wiremock server stands in for the Hub and says that `my-org/my-model` is served
//! by the provider `my-studio`.
//!
//! ```sh
//! cargo run -p hf-media --example custom_provider
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use hf_media::provider::{GenerationRequest, MediaBody, MediaOutput, ProviderContext, ProviderInfo};
use hf_media::{
    GenerateRequest, GenerationEvent, MediaGenerator, MediaProvider, MemorySink, ProviderError, ProviderRegistry, Task,
};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A studio that renders in-process (a real provider would call its API through `ctx.request(…)`).
#[derive(Debug)]
struct MyStudio;

#[async_trait]
impl MediaProvider for MyStudio {
    fn info(&self) -> &ProviderInfo {
        static INFO: ProviderInfo = ProviderInfo::routed("my-studio", &[Task::TextToImage]);
        &INFO
    }

    async fn generate(&self, ctx: &ProviderContext, request: GenerationRequest) -> Result<MediaOutput, ProviderError> {
        println!(
            "  my-studio renders {:?} with {} (base {})",
            request.prompt,
            request.mapping.provider_id,
            ctx.base_url()
        );
        let png = hf_media::sink::conformance::tiny_png();
        Ok(MediaOutput::new(MediaBody::Bytes(png.into())))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/models/my-org/my-model"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "my-org/my-model",
            "inferenceProviderMapping": [
                {"provider": "my-studio", "providerId": "studio-v2", "status": "live", "task": "text-to-image"}
            ]
        })))
        .mount(&hub)
        .await;

    let mut registry = ProviderRegistry::with_defaults();
    registry.register(Arc::new(MyStudio));
    let sink = MemorySink::new();
    let generator = MediaGenerator::builder()
        .token("hf_example")
        .hub_url(hub.uri())
        .router_url(hub.uri())
        .registry(registry)
        .sink(Arc::new(sink.clone()))
        .build()?;

    let mut events = generator.generate(GenerateRequest::new("a paper boat").model("my-org/my-model").n(2));
    while let Some(event) = events.next().await {
        match event {
            GenerationEvent::Attempt { task, provider, .. } => println!("[{task}] trying {provider}"),
            GenerationEvent::Media(media) => println!(
                "[{}] {} {} ({} bytes)",
                media.task, media.location, media.mime, media.bytes
            ),
            GenerationEvent::Error { error, .. } => println!("error: {error}"),
            GenerationEvent::Done { succeeded, failed, .. } => println!("done: {succeeded} succeeded, {failed} failed"),
            _ => {}
        }
    }
    println!("the memory sink holds {} media", sink.len());
    Ok(())
}
