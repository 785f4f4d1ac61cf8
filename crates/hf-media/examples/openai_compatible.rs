//! A provider the Hub does not list, added with a few lines of configuration: any server that speaks the
//! OpenAI images API (`POST /v1/images/generations`).
//!
//! Runs offline: a local wiremock server plays the images server. The Hub is not asked, because the
//! provider is named explicitly (`model:provider`) and does not need a Hub mapping.
//!
//! ```sh
//! cargo run -p hf-media --example openai_compatible
//! ```
//! The CLI does the same with `--openai-provider my-images=URL --provider-key my-images=KEY -m model:my-images`.

use std::sync::Arc;

use base64::Engine as _;
use futures::StreamExt;
use hf_media::provider::providers::ResponseFormat;
use hf_media::{GenerateRequest, GenerationEvent, MediaGenerator, MemorySink, OpenAiProviderConfig, Secret};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let images_server = MockServer::start().await;
    let png = hf_media::sink::conformance::tiny_png();
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .and(header("authorization", "Bearer sk-example"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"b64_json": base64::engine::general_purpose::STANDARD.encode(&png)}]
        })))
        .mount(&images_server)
        .await;

    // The whole configuration: a name, a base URL, a key (sent to this server only).
    let sink = MemorySink::new();
    let generator = MediaGenerator::builder()
        .openai_provider(OpenAiProviderConfig {
            name: "my-images".into(),
            url: images_server.uri(),
            response_format: ResponseFormat::B64Json,
            key: Some(Secret::new("sk-example")),
        })
        .sink(Arc::new(sink.clone()))
        .build()?;
    let request = GenerateRequest::new("a paper boat on a pond").model("my-model:my-images");
    let mut events = generator.generate(request);
    while let Some(event) = events.next().await {
        match event {
            GenerationEvent::Attempt {
                provider, provider_id, ..
            } => println!("trying {provider} ({provider_id})"),
            GenerationEvent::Media(media) => {
                println!("made {} ({}, {} bytes)", media.location, media.mime, media.bytes)
            }
            GenerationEvent::Error { error, .. } => println!("error: {error}"),
            _ => {}
        }
    }
    println!("the memory sink holds {} media", sink.len());
    Ok(())
}
